//! RabbitMQ's health checks (`/api/health/checks/...`: 200 `{"status":"ok"}`, or 503
//! `{"status":"failed","reason":...}` with RabbitMQ's extra fields), the aliveness test,
//! `/api/cluster-name`, `/api/extensions` and `/api/feature-flags`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::nodes::node_name;
use super::{body, field, Api, ApiError, ApiResult, Caller};
use crate::message::Message;
use crate::vhost::QueueSpec;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/health/checks/alarms", get(alarms))
        .route("/api/health/checks/local-alarms", get(local_alarms))
        .route(
            "/api/health/checks/port-listener/{port}",
            get(port_listener),
        )
        .route(
            "/api/health/checks/protocol-listener/{protocol}",
            get(protocol_listener),
        )
        .route("/api/health/checks/virtual-hosts", get(ok))
        .route("/api/health/checks/ready-to-serve-clients", get(ready))
        .route("/api/health/checks/is-in-service", get(ready))
        .route(
            "/api/health/checks/certificate-expiration/{within}/{unit}",
            get(certificate_expiration),
        )
        .route(
            "/api/health/checks/node-is-quorum-critical",
            get(quorum_critical),
        )
        .route("/api/aliveness-test/{vhost}", get(aliveness))
        .route("/api/cluster-name", get(cluster_name).put(set_cluster_name))
        .route("/api/extensions", get(extensions))
        .route("/api/feature-flags", get(feature_flags))
}

fn failed(v: Value) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(v)).into_response()
}

async fn ok(_c: Caller) -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The alarms in effect, as RabbitMQ lists them (`resource`: memory, disk).
fn alarm_list(c: &Caller) -> Vec<Value> {
    let a = &c.broker.alarms;
    let node = node_name();
    let mut v = Vec::new();
    if a.memory_alarm() {
        v.push(json!({"node": node, "resource": "memory"}));
    }
    if a.disk_alarm() {
        v.push(json!({"node": node, "resource": "disk"}));
    }
    if v.is_empty() && a.reason().is_some() {
        // Raised by hand (`Broker::set_alarm`): no resource of RabbitMQ's names it.
        v.push(json!({"node": node, "resource": "manual"}));
    }
    v
}

fn alarms_answer(c: &Caller, reason: &str) -> Response {
    let list = alarm_list(c);
    if list.is_empty() {
        Json(json!({"status": "ok"})).into_response()
    } else {
        failed(json!({"status": "failed", "reason": reason, "alarms": list}))
    }
}

async fn alarms(c: Caller) -> Response {
    alarms_answer(&c, "There are alarms in effect in the cluster")
}

async fn local_alarms(c: Caller) -> Response {
    alarms_answer(&c, "There are alarms in effect on the node")
}

async fn port_listener(
    _c: Caller,
    State(api): State<Api>,
    Path(port): Path<String>,
) -> ApiResult<Response> {
    let port: u16 = port
        .parse()
        .map_err(|_| ApiError::bad_request(format!("Invalid port: {port}")))?;
    let ports: Vec<u16> = api.listeners.iter().map(|l| l.addr.port()).collect();
    if ports.contains(&port) {
        return Ok(Json(json!({"status": "ok", "port": port})).into_response());
    }
    Ok(failed(json!({
        "status": "failed",
        "reason": "No active listener",
        "missing": port,
        "ports": ports,
    })))
}

/// A protocol as RabbitMQ's check names it (`amqps` is the listener "amqp/ssl").
fn protocol_name(p: &str) -> String {
    match p.to_ascii_lowercase().as_str() {
        "amqp" | "amqp091" | "amqp0-9-1" | "amqp0.9.1" => "amqp".into(),
        "amqps" | "amqp/ssl" => "amqp/ssl".into(),
        "management" => "http".into(),
        other => other.to_string(),
    }
}

async fn protocol_listener(
    _c: Caller,
    State(api): State<Api>,
    Path(protocol): Path<String>,
) -> Response {
    let want = protocol_name(&protocol);
    let mut protocols: Vec<&str> = api.listeners.iter().map(|l| l.protocol).collect();
    protocols.dedup();
    if protocols.contains(&want.as_str()) {
        return Json(json!({"status": "ok", "protocol": want})).into_response();
    }
    failed(json!({
        "status": "failed",
        "reason": "No active listener",
        "missing": want,
        "protocols": protocols,
    }))
}

/// RabbitMQ 4.x: the node is booted and not in maintenance mode (Warren: not stopping).
async fn ready(c: Caller) -> Response {
    if *c.broker.shutdown_signal().borrow() {
        return failed(json!({"status": "failed", "reason": "the node is stopping"}));
    }
    Json(json!({"status": "ok"})).into_response()
}

async fn quorum_critical(_c: Caller) -> Json<Value> {
    Json(json!({"status": "ok", "reason": "single node cluster"}))
}

/// Fails if a TLS listener's certificate expires within the period (RabbitMQ's units:
/// days, weeks, months, years); ok with no TLS listener.
async fn certificate_expiration(
    c: Caller,
    Path((within, unit)): Path<(String, String)>,
) -> ApiResult<Response> {
    let n: u64 = within
        .parse()
        .map_err(|_| ApiError::bad_request(format!("Invalid period: {within}")))?;
    let day = 86_400u64;
    let per = match unit.as_str() {
        "days" => day,
        "weeks" => 7 * day,
        "months" => 30 * day,
        "years" => 365 * day,
        _ => return Err(ApiError::bad_request(format!("Invalid unit: {unit}"))),
    };
    let Some(tls) = &c.broker.config.tls else {
        return Ok(Json(json!({"status": "ok"})).into_response());
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let limit = now.saturating_add(n.saturating_mul(per).min(i64::MAX as u64) as i64);
    let ends =
        crate::tls::not_after(&tls.certfile).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if ends.iter().all(|&t| t > limit) {
        return Ok(Json(json!({"status": "ok"})).into_response());
    }
    let listeners: Vec<Value> = tls
        .listen
        .iter()
        .map(|a| json!({"node": node_name(), "protocol": "amqp/ssl", "interface": a.ip().to_string(), "port": a.port(), "certfile": tls.certfile.display().to_string()}))
        .collect();
    Ok(failed(json!({
        "status": "failed",
        "reason": "Certificates expiring",
        "expired": listeners,
    })))
}

const ALIVENESS_QUEUE: &str = "aliveness-test";

/// Declares `aliveness-test`, publishes a message to it and gets it back, as RabbitMQ's.
async fn aliveness(c: Caller, Path(vhost): Path<String>) -> ApiResult<Response> {
    let v = c.broker.vhost(&vhost).ok_or_else(ApiError::not_found)?;
    c.require_vhost(&vhost)?;
    let spec = QueueSpec {
        name: ALIVENESS_QUEUE.into(),
        durable: false,
        exclusive: false,
        auto_delete: false,
        arguments: Default::default(),
    };
    let (q, _) = v
        .declare_queue(spec, false, 0)
        .map_err(|e| ApiError::bad_request(e.text.to_string()))?;
    // No properties: flags 0.
    let body = b"test_message";
    let m = Message::from_parts("", ALIVENESS_QUEUE, &[0, 0], body)
        .ok_or_else(|| ApiError::bad_request("cannot build the test message"))?;
    q.publish(Arc::new(m));
    let got = q.get(false);
    let alive = got.is_some_and(|(m, _)| m.message.body() == body);
    if alive {
        Ok(Json(json!({"status": "ok"})).into_response())
    } else {
        Ok(failed(
            json!({"status": "failed", "reason": "the test message did not come back"}),
        ))
    }
}

async fn cluster_name(_c: Caller, State(api): State<Api>) -> Json<Value> {
    Json(json!({"name": api.cluster_name.read().clone()}))
}

async fn set_cluster_name(
    c: Caller,
    State(api): State<Api>,
    bytes: Bytes,
) -> ApiResult<StatusCode> {
    c.require_admin()?;
    let m = body(&bytes)?;
    let name = field(&m, "name")?;
    *api.cluster_name.write() = name.to_string();
    Ok(StatusCode::NO_CONTENT)
}

/// The web console's plugins' scripts: none.
async fn extensions(_c: Caller) -> Json<Value> {
    Json(json!([]))
}

/// Warren has no feature flags to enable: every behaviour it has is always on.
async fn feature_flags(c: Caller) -> ApiResult<Json<Value>> {
    c.require_admin()?;
    Ok(Json(json!([])))
}
