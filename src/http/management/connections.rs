//! `/api/connections` and friends: the open AMQP connections, as the broker's sessions
//! table knows them (what each was at connection.open), and their forced close (320
//! CONNECTION_FORCED with the `X-Reason` header's text, as RabbitMQ's DELETE). A user who
//! is neither administrator nor monitoring sees (and closes) only its own connections.

use amq_protocol::types::{AMQPValue, FieldTable};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::nodes::node_name;
use super::{Api, ApiError, ApiResult, Caller};
use crate::broker::sessions::Listed;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/connections", get(list))
        .route("/api/vhosts/{vhost}/connections", get(in_vhost))
        .route("/api/connections/{name}", get(show).delete(close))
        .route(
            "/api/connections/username/{user}",
            get(of_user).delete(close_user),
        )
}

/// RabbitMQ's text when the request gives no `X-Reason`.
const DEFAULT_REASON: &str = "Closed via management plugin";

/// A field table as RabbitMQ's API renders one (tables as objects, strings as strings).
pub(super) fn table_json(t: &FieldTable) -> Value {
    let mut m = Map::new();
    for (k, v) in t {
        m.insert(k.as_str().to_string(), value_json(v));
    }
    Value::Object(m)
}

fn value_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::Boolean(b) => (*b).into(),
        AMQPValue::ShortShortInt(x) => (*x).into(),
        AMQPValue::ShortShortUInt(x) => (*x).into(),
        AMQPValue::ShortInt(x) => (*x).into(),
        AMQPValue::ShortUInt(x) => (*x).into(),
        AMQPValue::LongInt(x) => (*x).into(),
        AMQPValue::LongUInt(x) => (*x).into(),
        AMQPValue::LongLongInt(x) => (*x).into(),
        AMQPValue::Timestamp(x) => (*x).into(),
        AMQPValue::Float(x) => f64::from(*x).into(),
        AMQPValue::Double(x) => (*x).into(),
        AMQPValue::DecimalValue(d) => (f64::from(d.value) / 10f64.powi(i32::from(d.scale))).into(),
        AMQPValue::ShortString(s) => s.as_str().into(),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into(),
        AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into(),
        AMQPValue::FieldArray(a) => a.as_slice().iter().map(value_json).collect(),
        AMQPValue::FieldTable(t) => table_json(t),
        AMQPValue::Void => Value::Null,
    }
}

/// Whether the caller sees connection `l` (its own, or all for monitoring/administrator).
pub(super) fn visible(c: &Caller, l: &Listed) -> bool {
    c.sees_all() || l.info.user == c.user.name
}

pub(super) fn connection_json(l: &Listed) -> Value {
    let i = &l.info;
    let ssl_null = Value::Null;
    let mut v = json!({
        "name": i.name(),
        "node": node_name(),
        "type": "network",
        "vhost": i.vhost,
        "user": i.user,
        "user_who_performed_action": i.user,
        "state": "running",
        "channels": l.channels,
        "protocol": "AMQP 0-9-1",
        "auth_mechanism": i.auth_mechanism,
        "peer_host": i.peer.ip().to_string(),
        "peer_port": i.peer.port(),
        "host": i.local.ip().to_string(),
        "port": i.local.port(),
        "ssl": i.tls,
        "ssl_protocol": ssl_null,
        "ssl_key_exchange": ssl_null,
        "ssl_cipher": ssl_null,
        "ssl_hash": ssl_null,
        "peer_cert_subject": ssl_null,
        "peer_cert_issuer": ssl_null,
        "peer_cert_validity": ssl_null,
        "connected_at": i.connected_at,
        "client_properties": table_json(&i.client_properties),
        "frame_max": i.frame_max,
        "channel_max": i.channel_max,
        "timeout": i.heartbeat,
    });
    if let Some(AMQPValue::LongString(n)) = i.client_properties.inner().get("connection_name") {
        v["user_provided_name"] = String::from_utf8_lossy(n.as_bytes()).into();
    }
    v
}

fn listed(c: &Caller, pick: impl Fn(&Listed) -> bool) -> Vec<Listed> {
    c.broker
        .sessions
        .list()
        .into_iter()
        .filter(|l| visible(c, l) && pick(l))
        .collect()
}

/// The caller's visible connection named `name` (404 otherwise, as RabbitMQ).
pub(super) fn named(c: &Caller, name: &str) -> ApiResult<Listed> {
    listed(c, |l| l.info.name() == name)
        .into_iter()
        .next()
        .ok_or_else(ApiError::not_found)
}

async fn list(c: Caller) -> Json<Value> {
    Json(listed(&c, |_| true).iter().map(connection_json).collect())
}

async fn in_vhost(c: Caller, Path(vhost): Path<String>) -> ApiResult<Json<Value>> {
    if c.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    c.require_vhost(&vhost)?;
    let v = listed(&c, |l| l.info.vhost == vhost);
    Ok(Json(v.iter().map(connection_json).collect()))
}

async fn show(c: Caller, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(connection_json(&named(&c, &name)?)))
}

fn reason(h: &HeaderMap) -> String {
    h.get("x-reason")
        .and_then(|v| v.to_str().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_REASON)
        .to_string()
}

async fn close(c: Caller, Path(name): Path<String>, h: HeaderMap) -> ApiResult<StatusCode> {
    let l = named(&c, &name)?;
    tracing::info!(connection = %name, by = %c.user.name, "closing a connection via the management API");
    l.control.force_close(reason(&h));
    Ok(StatusCode::NO_CONTENT)
}

/// Another user's connections are the administrator's (RabbitMQ's `is_authorized_user`).
fn may_see_user(c: &Caller, user: &str) -> ApiResult<()> {
    if c.is_admin() || c.user.name == user {
        Ok(())
    } else {
        Err(ApiError::unauthorised("Not_Authorised"))
    }
}

async fn of_user(c: Caller, Path(user): Path<String>) -> ApiResult<Json<Value>> {
    may_see_user(&c, &user)?;
    let v = listed(&c, |l| l.info.user == user);
    Ok(Json(v.iter().map(connection_json).collect()))
}

async fn close_user(c: Caller, Path(user): Path<String>, h: HeaderMap) -> ApiResult<StatusCode> {
    may_see_user(&c, &user)?;
    let text = reason(&h);
    for l in listed(&c, |l| l.info.user == user) {
        l.control.force_close(text.clone());
    }
    Ok(StatusCode::NO_CONTENT)
}
