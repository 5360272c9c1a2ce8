//! `/api/policies[/{vhost}[/{name}]]` and `/api/operator-policies[/{vhost}[/{name}]]`, as
//! RabbitMQ's API serves them (checked against RabbitMQ 3.10.8): the lists show the
//! policies of the vhosts the caller may see, to any management user; one policy, and
//! changing one, needs the `policymaker` (or `administrator`) tag; operator policies are
//! changed by administrators only. A change applies to existing queues and exchanges at
//! once.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::{body, created_or_changed, field, synced, Api, ApiError, ApiResult, Caller};
use crate::access::{ADMINISTRATOR, POLICYMAKER};
use crate::broker::AdminError;
use crate::policy::{Kind, PolicyRecord};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/policies", get(list_policies))
        .route("/api/policies/{vhost}", get(list_vhost_policies))
        .route(
            "/api/policies/{vhost}/{name}",
            get(show_policy).put(put_policy).delete(delete_policy),
        )
        .route("/api/operator-policies", get(list_operator))
        .route("/api/operator-policies/{vhost}", get(list_vhost_operator))
        .route(
            "/api/operator-policies/{vhost}/{name}",
            get(show_operator).put(put_operator).delete(delete_operator),
        )
}

fn list(c: &Caller, kind: Kind, only: Option<&str>) -> ApiResult<Json<Vec<PolicyRecord>>> {
    if let Some(v) = only {
        if c.broker.vhost(v).is_none() {
            return Err(ApiError::not_found());
        }
        c.require_vhost(v)?;
    }
    let all = c.broker.policies(kind);
    Ok(Json(
        all.into_iter()
            .filter(|p| only.map_or(true, |v| p.vhost == v) && c.require_vhost(&p.vhost).is_ok())
            .collect(),
    ))
}

/// Who may look at one policy or change it.
fn require(c: &Caller, kind: Kind, vhost: &str, change: bool) -> ApiResult<()> {
    let allowed = match (kind, change) {
        (Kind::Operator, true) => c.is_admin(),
        _ => c.user.has_tag(POLICYMAKER) || c.user.has_tag(ADMINISTRATOR),
    };
    if !allowed {
        return Err(ApiError::unauthorised(
            "User not authorised to access object",
        ));
    }
    c.require_vhost(vhost)
}

fn show(c: &Caller, kind: Kind, vhost: &str, name: &str) -> ApiResult<Json<PolicyRecord>> {
    require(c, kind, vhost, false)?;
    c.broker
        .vhost(vhost)
        .and_then(|v| v.policies().list(kind).get(name).map(|p| p.record.clone()))
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// `priority`: a number, or (as RabbitMQ also takes) a string of one.
fn priority(v: Option<&Value>) -> ApiResult<i64> {
    let bad = |v: &Value| {
        ApiError::bad_request(format!(
            "Validation failed\n\npriority should be a number, actually was {}\n",
            crate::policy::definition::erlang(v)
        ))
    };
    match v {
        None => Ok(0),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| bad(&Value::Number(n.clone()))),
        Some(Value::String(s)) => s.trim().parse().map_err(|_| bad(&Value::String(s.clone()))),
        Some(other) => Err(bad(other)),
    }
}

async fn put(
    c: Caller,
    kind: Kind,
    vhost: String,
    name: String,
    raw: Bytes,
) -> ApiResult<StatusCode> {
    require(&c, kind, &vhost, true)?;
    let m = body(&raw)?;
    let pattern = field(&m, "pattern")?.to_string();
    let definition = match m.get("definition") {
        Some(Value::Object(d)) => d.clone(),
        Some(_) => return Err(ApiError::bad_request("definition must be a JSON object")),
        None => return Err(ApiError::bad_request("[{key_missing,definition}]")),
    };
    let apply_to = match m.get("apply-to") {
        None => "all".to_string(),
        Some(v) => v
            .as_str()
            .ok_or_else(|| ApiError::bad_request("apply-to must be a string"))?
            .to_string(),
    };
    let record = PolicyRecord {
        vhost: vhost.clone(),
        name,
        pattern,
        apply_to,
        definition,
        priority: priority(m.get("priority"))?,
    };
    let created = c.broker.put_policy(kind, record).map_err(|e| match e {
        AdminError::Access(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "vhost_not_found")
        }
        other => ApiError::bad_request(other.to_string()),
    })?;
    synced(&c.broker).await?;
    Ok(created_or_changed(created))
}

async fn delete(c: Caller, kind: Kind, vhost: String, name: String) -> ApiResult<StatusCode> {
    require(&c, kind, &vhost, true)?;
    match c.broker.delete_policy(kind, &vhost, &name) {
        Ok(true) => {
            synced(&c.broker).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        _ => Err(ApiError::not_found()),
    }
}

async fn list_policies(c: Caller) -> ApiResult<Json<Vec<PolicyRecord>>> {
    list(&c, Kind::Policy, None)
}

async fn list_vhost_policies(
    c: Caller,
    Path(v): Path<String>,
) -> ApiResult<Json<Vec<PolicyRecord>>> {
    list(&c, Kind::Policy, Some(&v))
}

async fn show_policy(
    c: Caller,
    Path((v, n)): Path<(String, String)>,
) -> ApiResult<Json<PolicyRecord>> {
    show(&c, Kind::Policy, &v, &n)
}

async fn put_policy(
    c: Caller,
    Path((v, n)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<StatusCode> {
    put(c, Kind::Policy, v, n, raw).await
}

async fn delete_policy(c: Caller, Path((v, n)): Path<(String, String)>) -> ApiResult<StatusCode> {
    delete(c, Kind::Policy, v, n).await
}

async fn list_operator(c: Caller) -> ApiResult<Json<Vec<PolicyRecord>>> {
    list(&c, Kind::Operator, None)
}

async fn list_vhost_operator(
    c: Caller,
    Path(v): Path<String>,
) -> ApiResult<Json<Vec<PolicyRecord>>> {
    list(&c, Kind::Operator, Some(&v))
}

async fn show_operator(
    c: Caller,
    Path((v, n)): Path<(String, String)>,
) -> ApiResult<Json<PolicyRecord>> {
    show(&c, Kind::Operator, &v, &n)
}

async fn put_operator(
    c: Caller,
    Path((v, n)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<StatusCode> {
    put(c, Kind::Operator, v, n, raw).await
}

async fn delete_operator(c: Caller, Path((v, n)): Path<(String, String)>) -> ApiResult<StatusCode> {
    delete(c, Kind::Operator, v, n).await
}
