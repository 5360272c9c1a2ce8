//! `/api/vhost-limits[/{vhost}[/{name}]]` and `/api/user-limits[/{user}[/{name}]]`:
//! `{"value": N}` per limit, as RabbitMQ's API. Listing vhost limits shows the vhosts the
//! caller may see; changing any limit, and user limits at all, is administrator only.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{body, synced, Api, ApiError, ApiResult, Caller};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/vhost-limits", get(vhost_list))
        .route("/api/vhost-limits/{vhost}", get(vhost_show))
        .route(
            "/api/vhost-limits/{vhost}/{name}",
            put(vhost_put).delete(vhost_delete),
        )
        .route("/api/user-limits", get(user_list))
        .route("/api/user-limits/{user}", get(user_show))
        .route(
            "/api/user-limits/{user}/{name}",
            put(user_put).delete(user_delete),
        )
}

fn vhost_limits(c: &Caller, only: Option<&str>) -> Vec<Value> {
    let all: Vec<(String, BTreeMap<String, i64>)> = c.broker.read_access(|a| {
        a.vhosts
            .values()
            .filter(|v| !v.limits.0.is_empty() && only.is_none_or_eq(&v.name))
            .map(|v| (v.name.clone(), v.limits.0.clone()))
            .collect()
    });
    all.into_iter()
        .filter(|(v, _)| c.require_vhost(v).is_ok())
        .map(|(v, l)| json!({"vhost": v, "value": l}))
        .collect()
}

fn user_limits(c: &Caller, only: Option<&str>) -> Vec<Value> {
    c.broker.read_access(|a| {
        a.users
            .values()
            .filter(|u| !u.limits.0.is_empty() && only.is_none_or_eq(&u.name))
            .map(|u| json!({"user": u.name, "value": u.limits.0}))
            .collect()
    })
}

/// `Option::is_none_or` (Rust 1.82) for a name filter, on this crate's MSRV.
trait NameFilter {
    fn is_none_or_eq(&self, name: &str) -> bool;
}

impl NameFilter for Option<&str> {
    fn is_none_or_eq(&self, name: &str) -> bool {
        self.map_or(true, |o| o == name)
    }
}

fn value(raw: &[u8]) -> ApiResult<i64> {
    body(raw)?
        .get("value")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::bad_request("[{key_missing,value}]"))
}

async fn vhost_list(c: Caller) -> ApiResult<Json<Vec<Value>>> {
    Ok(Json(vhost_limits(&c, None)))
}

async fn vhost_show(c: Caller, Path(vhost): Path<String>) -> ApiResult<Json<Vec<Value>>> {
    if c.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    c.require_vhost(&vhost)?;
    Ok(Json(vhost_limits(&c, Some(&vhost))))
}

async fn user_list(c: Caller) -> ApiResult<Json<Vec<Value>>> {
    c.require_admin()?;
    Ok(Json(user_limits(&c, None)))
}

async fn user_show(c: Caller, Path(user): Path<String>) -> ApiResult<Json<Vec<Value>>> {
    c.require_admin()?;
    if c.broker.read_access(|a| a.user(&user).is_none()) {
        return Err(ApiError::not_found());
    }
    Ok(Json(user_limits(&c, Some(&user))))
}

/// Whose limits a change is about.
#[derive(Clone, Copy)]
enum Of {
    Vhost,
    User,
}

/// Reads the limits of `name`, lets `f` change them, writes them back (administrator only).
async fn change(
    c: Caller,
    of: Of,
    name: &str,
    f: impl FnOnce(&mut BTreeMap<String, i64>),
) -> ApiResult<StatusCode> {
    c.require_admin()?;
    let current = c.broker.read_access(|a| match of {
        Of::Vhost => a.vhosts.get(name).map(|v| v.limits.0.clone()),
        Of::User => a.user(name).map(|u| u.limits.0.clone()),
    });
    let mut limits = current.ok_or_else(ApiError::not_found)?;
    f(&mut limits);
    match of {
        Of::Vhost => c.broker.set_vhost_limits(name, &limits)?,
        Of::User => c.broker.set_user_limits(name, &limits)?,
    }
    synced(&c.broker).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn vhost_put(
    c: Caller,
    Path((vhost, name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<StatusCode> {
    let v = value(&raw)?;
    change(c, Of::Vhost, &vhost, |l| {
        l.insert(name, v);
    })
    .await
}

async fn vhost_delete(
    c: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    change(c, Of::Vhost, &vhost, |l| {
        l.remove(&name);
    })
    .await
}

async fn user_put(
    c: Caller,
    Path((user, name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<StatusCode> {
    let v = value(&raw)?;
    change(c, Of::User, &user, |l| {
        l.insert(name, v);
    })
    .await
}

async fn user_delete(
    c: Caller,
    Path((user, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    change(c, Of::User, &user, |l| {
        l.remove(&name);
    })
    .await
}
