//! `/api/vhosts[/{vhost}]`: any management user lists the vhosts it has permissions on
//! (administrator and monitoring users see all); creating and deleting is administrator
//! only. Deleting a vhost deletes everything in it and closes its connections (320).

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{body, created_or_changed, synced, Api, ApiError, ApiResult, Caller};
use crate::access::record::split_tags;
use crate::access::VhostInfo;
use crate::broker::admin::VhostChange;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/vhosts", get(list))
        .route("/api/vhosts/{vhost}", get(show).put(put).delete(delete))
}

fn describe(c: &Caller, v: &VhostInfo) -> Value {
    let (mut ready, mut unacked) = (0u64, 0u64);
    if let Some(vhost) = c.broker.vhost(&v.name) {
        for q in vhost.queues() {
            ready += u64::from(q.message_count());
            unacked += u64::from(q.unacked_count());
        }
    }
    let queue_type = v.default_queue_type.as_deref().unwrap_or("classic");
    json!({
        "name": v.name,
        "description": v.description,
        "tags": v.tags,
        "default_queue_type": queue_type,
        "metadata": {
            "description": v.description,
            "tags": v.tags,
            "default_queue_type": queue_type,
        },
        "tracing": false,
        "messages": ready + unacked,
        "messages_ready": ready,
        "messages_unacknowledged": unacked,
        "message_stats": c.broker.vhost(&v.name).map(|vh| c.rates.vhost_stats(&vh)),
    })
}

fn visible(c: &Caller) -> Vec<VhostInfo> {
    let all: Vec<VhostInfo> = c
        .broker
        .read_access(|a| a.vhosts.values().cloned().collect());
    all.into_iter()
        .filter(|v| c.require_vhost(&v.name).is_ok())
        .collect()
}

async fn list(c: Caller) -> ApiResult<Json<Vec<Value>>> {
    Ok(Json(visible(&c).iter().map(|v| describe(&c, v)).collect()))
}

async fn show(c: Caller, Path(vhost): Path<String>) -> ApiResult<Json<Value>> {
    let info = c
        .broker
        .read_access(|a| a.vhosts.get(&vhost).cloned())
        .ok_or_else(ApiError::not_found)?;
    c.require_vhost(&vhost)?;
    Ok(Json(describe(&c, &info)))
}

async fn put(c: Caller, Path(vhost): Path<String>, raw: Bytes) -> ApiResult<StatusCode> {
    c.require_admin()?;
    let m = body(&raw)?;
    let text = |k: &str| m.get(k).and_then(Value::as_str).map(str::to_string);
    let tags = match m.get("tags") {
        None => None,
        Some(Value::String(s)) => Some(split_tags(s)),
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
        ),
        Some(_) => return Err(ApiError::bad_request("tags must be a string or a list")),
    };
    let created = c.broker.put_vhost(
        &vhost,
        VhostChange {
            description: text("description"),
            tags,
            default_queue_type: text("default_queue_type"),
            limits: None,
        },
    )?;
    if created {
        // RabbitMQ gives the user who creates a vhost full permissions on it.
        c.broker
            .set_permissions(&c.user.name, &vhost, ".*", ".*", ".*")?;
    }
    synced(&c.broker).await?;
    Ok(created_or_changed(created))
}

async fn delete(c: Caller, Path(vhost): Path<String>) -> ApiResult<StatusCode> {
    c.require_admin()?;
    if c.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    // Deleting every queue can take a while: off the runtime's threads.
    let b = c.broker.clone();
    tokio::task::spawn_blocking(move || b.delete_vhost(&vhost))
        .await
        .map_err(|_| ApiError::bad_request("vhost deletion failed"))??;
    synced(&c.broker).await?;
    Ok(StatusCode::NO_CONTENT)
}
