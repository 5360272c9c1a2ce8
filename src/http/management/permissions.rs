//! `/api/permissions[/{vhost}/{user}]`, `/api/topic-permissions[/{vhost}/{user}]`, and
//! each vhost's `/api/vhosts/{vhost}/permissions` and `/topic-permissions`: administrator
//! only, as in RabbitMQ.

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};

use super::{body, field, synced, Api, ApiError, ApiResult, Caller};
use crate::access::record::{PermissionRecord, TopicPermissionRecord};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/permissions", get(list))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(show).put(put).delete(delete),
        )
        .route("/api/vhosts/{vhost}/permissions", get(of_vhost))
        .route("/api/topic-permissions", get(topic_list))
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(topic_show).put(topic_put).delete(topic_delete),
        )
        .route("/api/vhosts/{vhost}/topic-permissions", get(topic_of_vhost))
}

fn permissions(c: &Caller, keep: impl Fn(&str, &str) -> bool) -> Vec<PermissionRecord> {
    c.broker.read_access(|a| {
        a.permission_list()
            .filter(|(v, u, _)| keep(v, u))
            .map(|(v, u, p)| PermissionRecord::from_permission(u, v, p))
            .collect()
    })
}

fn topics(c: &Caller, keep: impl Fn(&str, &str) -> bool) -> Vec<TopicPermissionRecord> {
    c.broker.read_access(|a| {
        a.topic_list()
            .filter(|(v, u, _)| keep(v, u))
            .map(|(v, u, t)| TopicPermissionRecord::from_topic(u, v, t))
            .collect()
    })
}

async fn list(c: Caller) -> ApiResult<Json<Vec<PermissionRecord>>> {
    c.require_admin()?;
    Ok(Json(permissions(&c, |_, _| true)))
}

async fn of_vhost(c: Caller, Path(vhost): Path<String>) -> ApiResult<Json<Vec<PermissionRecord>>> {
    c.require_admin()?;
    if c.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    Ok(Json(permissions(&c, |v, _| v == vhost)))
}

async fn show(
    c: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<PermissionRecord>> {
    c.require_admin()?;
    permissions(&c, |v, u| v == vhost && u == user)
        .pop()
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

async fn put(
    c: Caller,
    Path((vhost, user)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<StatusCode> {
    c.require_admin()?;
    let m = body(&raw)?;
    let (configure, write, read) = (
        field(&m, "configure")?,
        field(&m, "write")?,
        field(&m, "read")?,
    );
    let existed = !permissions(&c, |v, u| v == vhost && u == user).is_empty();
    c.broker
        .set_permissions(&user, &vhost, configure, write, read)?;
    synced(&c.broker).await?;
    Ok(super::created_or_changed(!existed))
}

async fn delete(c: Caller, Path((vhost, user)): Path<(String, String)>) -> ApiResult<StatusCode> {
    c.require_admin()?;
    if permissions(&c, |v, u| v == vhost && u == user).is_empty() {
        return Err(ApiError::not_found());
    }
    c.broker.clear_permissions(&user, &vhost)?;
    synced(&c.broker).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn topic_list(c: Caller) -> ApiResult<Json<Vec<TopicPermissionRecord>>> {
    c.require_admin()?;
    Ok(Json(topics(&c, |_, _| true)))
}

async fn topic_of_vhost(
    c: Caller,
    Path(vhost): Path<String>,
) -> ApiResult<Json<Vec<TopicPermissionRecord>>> {
    c.require_admin()?;
    if c.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    Ok(Json(topics(&c, |v, _| v == vhost)))
}

/// A (vhost, user)'s topic permissions: a list, one per exchange, as RabbitMQ answers.
async fn topic_show(
    c: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<Json<Vec<TopicPermissionRecord>>> {
    c.require_admin()?;
    let found = topics(&c, |v, u| v == vhost && u == user);
    if found.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Json(found))
}

async fn topic_put(
    c: Caller,
    Path((vhost, user)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<StatusCode> {
    c.require_admin()?;
    let m = body(&raw)?;
    let (exchange, write, read) = (
        field(&m, "exchange")?,
        field(&m, "write")?,
        field(&m, "read")?,
    );
    let existed = topics(&c, |v, u| v == vhost && u == user)
        .iter()
        .any(|t| t.exchange == exchange);
    c.broker
        .set_topic_permissions(&user, &vhost, exchange, write, read)?;
    synced(&c.broker).await?;
    Ok(super::created_or_changed(!existed))
}

/// Clears all of a (vhost, user)'s topic permissions (RabbitMQ's API has no per-exchange
/// delete).
async fn topic_delete(
    c: Caller,
    Path((vhost, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    c.require_admin()?;
    if topics(&c, |v, u| v == vhost && u == user).is_empty() {
        return Err(ApiError::not_found());
    }
    c.broker.clear_topic_permissions(&user, &vhost, None)?;
    synced(&c.broker).await?;
    Ok(StatusCode::NO_CONTENT)
}
