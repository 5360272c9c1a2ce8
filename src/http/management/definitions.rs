//! `/api/definitions[/{vhost}]`: GET exports, POST imports, in RabbitMQ's definitions format
//! (`broker/export.rs`, `broker/definitions.rs`); administrator only. `?download=NAME` makes
//! the export an attachment, as the console's download link asks.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::Path;
use axum::http::Uri;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use super::listing::params;
use super::{synced, Api, ApiError, ApiResult, Caller};
use crate::broker::definitions::Definitions;

/// An import may be much bigger than other bodies (a large topology), but is bounded.
const MAX_DEFINITIONS: usize = 64 << 20;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/definitions", get(export_all).post(import_all))
        .route(
            "/api/definitions/{vhost}",
            get(export_vhost).post(import_vhost),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_DEFINITIONS))
}

fn export(c: &Caller, vhost: Option<&str>, q: &HashMap<String, String>) -> ApiResult<Response> {
    c.require_admin()?;
    let defs = c
        .broker
        .export_definitions(vhost)
        .ok_or_else(ApiError::not_found)?;
    let mut r = Json(defs).into_response();
    if let Some(name) = q.get("download") {
        let safe: String = name
            .chars()
            .filter(|ch| ch.is_ascii_alphanumeric() || "._-".contains(*ch))
            .collect();
        if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
            r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
        }
    }
    Ok(r)
}

async fn export_all(c: Caller, uri: Uri) -> ApiResult<Response> {
    export(&c, None, &params(uri.query()))
}

async fn export_vhost(c: Caller, Path(vhost): Path<String>, uri: Uri) -> ApiResult<Response> {
    export(&c, Some(&vhost), &params(uri.query()))
}

async fn import(c: Caller, vhost: Option<String>, raw: Bytes) -> ApiResult<StatusCode> {
    c.require_admin()?;
    let mut defs: Definitions = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad_request(format!("not definitions JSON: {e}")))?;
    if let Some(v) = &vhost {
        if c.broker.vhost(v).is_none() {
            return Err(ApiError::not_found());
        }
        defs.for_vhost(v);
    }
    // A big import declares thousands of objects: off the runtime's threads.
    let b = c.broker.clone();
    let done = tokio::task::spawn_blocking(move || b.import_definitions(defs))
        .await
        .map_err(|_| ApiError::bad_request("the import stopped"))?
        .map_err(ApiError::bad_request)?;
    tracing::info!(?done, user = %c.user.name, "definitions imported over the management API");
    synced(&c.broker).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn import_all(c: Caller, raw: Bytes) -> ApiResult<StatusCode> {
    import(c, None, raw).await
}

async fn import_vhost(c: Caller, Path(vhost): Path<String>, raw: Bytes) -> ApiResult<StatusCode> {
    import(c, Some(vhost), raw).await
}
