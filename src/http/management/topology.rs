//! What the exchange, queue and binding endpoints share: the vhost of a path looked up and
//! checked (404, then 401 for a management user without permissions on it), the caller's
//! AMQP permissions checked as an AMQP client's would be (RabbitMQ's management plugin
//! runs these requests as AMQP methods on the user's behalf), and AMQP errors answered as
//! its API answers them.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::access::grants::{resource_name, Perm};
use crate::error::AmqpError;
use crate::vhost::VHost;

use super::{ApiError, ApiResult, Caller};
use axum::http::StatusCode;

/// The connection id the API's own declares and gets use: no AMQP connection has it, so an
/// exclusive queue refuses the API as it would another connection.
pub const HTTP_CONNECTION: u64 = u64::MAX;

/// The vhost named in a path, if the caller may look at it.
pub fn vhost(c: &Caller, name: &str) -> ApiResult<Arc<VHost>> {
    let v = c.broker.vhost(name).ok_or_else(ApiError::not_found)?;
    c.require_vhost(name)?;
    Ok(v)
}

/// A resource kind in RabbitMQ's refusal texts.
#[derive(Clone, Copy)]
pub enum Kind {
    Queue,
    Exchange,
}

/// The caller's `perm` on a queue or exchange (RabbitMQ's 403, answered as the API does).
pub fn permit(c: &Caller, vhost: &VHost, perm: Perm, kind: Kind, name: &str) -> ApiResult<()> {
    if c.broker
        .grants(&c.user.name, &vhost.name)
        .allows(perm, name)
    {
        return Ok(());
    }
    let kind = match kind {
        Kind::Queue => "queue",
        Kind::Exchange => "exchange",
    };
    Err(amqp(AmqpError::access_refused(format!(
        "access to {kind} '{}' in vhost '{}' refused for user '{}'",
        resource_name(name),
        vhost.name,
        c.user.name
    ))))
}

/// An AMQP refusal as RabbitMQ's API answers a declare, delete or bind that met it: 404 for
/// not found, 401 "Access refused." for 403, 400 with the text otherwise.
pub fn amqp(e: AmqpError) -> ApiError {
    match e.code {
        404 => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.text),
        403 => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "not_authorised",
            "Access refused.",
        ),
        _ => ApiError::bad_request(e.text),
    }
}

/// An AMQP refusal as a publish meets it (the channel closed under it): 400 with the code.
pub fn amqp_on_publish(e: AmqpError) -> ApiError {
    let name = match e.code {
        403 => "ACCESS_REFUSED",
        404 => "NOT_FOUND",
        406 => "PRECONDITION_FAILED",
        _ => "ERROR",
    };
    ApiError::bad_request(format!("{} {name} - {}", e.code, e.text))
}

/// The node name objects report (one node: this broker).
pub fn node() -> &'static str {
    static NODE: OnceLock<String> = OnceLock::new();
    NODE.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        format!("warren@{host}")
    })
}

/// `default` unless the body says otherwise; a non-boolean is a 400.
pub fn flag(
    m: &serde_json::Map<String, serde_json::Value>,
    key: &str,
    default: bool,
) -> ApiResult<bool> {
    match m.get(key) {
        None | Some(serde_json::Value::Null) => Ok(default),
        Some(serde_json::Value::Bool(b)) => Ok(*b),
        Some(serde_json::Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a boolean"))),
    }
}

/// `at` (a moment `ago` before now) as RabbitMQ writes timestamps: `2026-12-07T22:42:10.085+00:00`.
pub fn timestamp(ago: Duration) -> String {
    let at = SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(UNIX_EPOCH)
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = at.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        at.subsec_millis()
    )
}

/// Days since 1970-01-01 to a (year, month, day) (Howard Hinnant's civil_from_days).
fn civil(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1));
        assert_eq!(super::civil(20_794), (2026, 12, 7));
        assert_eq!(super::civil(11_016), (2000, 2, 29));
    }
}
