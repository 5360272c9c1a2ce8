//! `/api/users`, `/api/users/{user}`, `/api/users/{user}/permissions` and
//! `/topic-permissions`: administrator only, as in RabbitMQ.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use super::{body, created_or_changed, synced, Api, ApiError, ApiResult, Caller};
use crate::access::record::{split_tags, PermissionRecord, TopicPermissionRecord, UserRecord};
use crate::broker::admin::UserChange;
use crate::password::{Algorithm, PasswordHash};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/users", get(list))
        .route("/api/users/{user}", get(show).put(put).delete(delete))
        .route("/api/users/{user}/permissions", get(permissions))
        .route(
            "/api/users/{user}/topic-permissions",
            get(topic_permissions),
        )
}

async fn list(c: Caller) -> ApiResult<Json<Vec<UserRecord>>> {
    c.require_admin()?;
    Ok(Json(c.broker.read_access(|a| {
        a.users.values().map(|u| UserRecord::from_user(u)).collect()
    })))
}

async fn show(c: Caller, Path(user): Path<String>) -> ApiResult<Json<UserRecord>> {
    c.require_admin()?;
    c.broker
        .read_access(|a| a.user(&user).map(|u| UserRecord::from_user(u)))
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

/// `tags` as a comma-separated string or a list (RabbitMQ 3.x takes the first, 4.x both).
fn tags(v: &Value) -> ApiResult<Vec<String>> {
    match v {
        Value::String(s) => Ok(split_tags(s)),
        Value::Array(a) => a
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad_request("tags must be strings"))
            })
            .collect(),
        _ => Err(ApiError::bad_request("tags must be a string or a list")),
    }
}

async fn put(c: Caller, Path(user): Path<String>, raw: Bytes) -> ApiResult<StatusCode> {
    c.require_admin()?;
    let m = body(&raw)?;
    let hash = if let Some(p) = m.get("password").and_then(Value::as_str) {
        Some(PasswordHash::new(Algorithm::Sha256, p))
    } else if let Some(h) = m.get("password_hash").and_then(Value::as_str) {
        let algorithm = m
            .get("hashing_algorithm")
            .and_then(Value::as_str)
            .unwrap_or(Algorithm::Sha256.name());
        Some(PasswordHash::parse(algorithm, h).map_err(|e| ApiError::bad_request(e.to_string()))?)
    } else {
        None
    };
    let tags = m.get("tags").map(tags).transpose()?;
    let created = c.broker.put_user(
        &user,
        UserChange {
            hash,
            tags,
            limits: None,
        },
    )?;
    synced(&c.broker).await?;
    Ok(created_or_changed(created))
}

async fn delete(c: Caller, Path(user): Path<String>) -> ApiResult<StatusCode> {
    c.require_admin()?;
    if c.broker.read_access(|a| a.user(&user).is_none()) {
        return Err(ApiError::not_found());
    }
    c.broker.delete_user(&user)?;
    synced(&c.broker).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn permissions(
    c: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Vec<PermissionRecord>>> {
    c.require_admin()?;
    c.broker.read_access(|a| {
        if a.user(&user).is_none() {
            return Err(ApiError::not_found());
        }
        Ok(Json(
            a.permission_list()
                .filter(|(_, u, _)| *u == user)
                .map(|(v, u, p)| PermissionRecord::from_permission(u, v, p))
                .collect(),
        ))
    })
}

async fn topic_permissions(
    c: Caller,
    Path(user): Path<String>,
) -> ApiResult<Json<Vec<TopicPermissionRecord>>> {
    c.require_admin()?;
    c.broker.read_access(|a| {
        if a.user(&user).is_none() {
            return Err(ApiError::not_found());
        }
        Ok(Json(
            a.topic_list()
                .filter(|(_, u, _)| *u == user)
                .map(|(v, u, t)| TopicPermissionRecord::from_topic(u, v, t))
                .collect(),
        ))
    })
}
