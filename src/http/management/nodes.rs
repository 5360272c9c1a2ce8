//! `/api/nodes` and `/api/nodes/{name}`: the one node, with what Warren knows of itself
//! (memory and disk as the alarms measure them, file descriptors, uptime). RabbitMQ's
//! Erlang figures (`proc_used`, `run_queue`, `gc_*`, `io_*`, `mnesia_*`, `sockets_total`,
//! `context_switches`) have no counterpart and are left out rather than made up.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{Api, ApiError, ApiResult, Caller};
use crate::alarms;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/nodes", get(list))
        .route("/api/nodes/{name}", get(one))
}

/// This node's name, RabbitMQ's `rabbit@host` shape.
pub fn node_name() -> String {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("warren@{host}")
    })
    .clone()
}

/// When this process started serving the API (the uptime's origin).
pub(super) fn started() -> Instant {
    static AT: OnceLock<Instant> = OnceLock::new();
    *AT.get_or_init(Instant::now)
}

/// The soft limit on open files (`/proc/self/limits`).
fn fd_limit() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = s.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn fd_used() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64)
}

pub(super) fn exchange_types() -> Value {
    let t = |name: &str| {
        json!({
            "name": name,
            "description": format!("AMQP {name} exchange, as per the AMQP specification"),
            "enabled": true,
        })
    };
    json!([t("direct"), t("fanout"), t("headers"), t("topic")])
}

fn node(c: &Caller) -> Value {
    let b = &c.broker;
    let mut n = json!({
        "name": node_name(),
        "type": "disc",
        "running": true,
        "being_drained": false,
        "mem_used": alarms::resident_memory(),
        "mem_limit": b.alarms.memory_limit(),
        "mem_alarm": b.alarms.memory_alarm(),
        "mem_calculation_strategy": "rss",
        "disk_free_limit": b.alarms.disk_limit(),
        "disk_free_alarm": b.alarms.disk_alarm(),
        "sockets_used": b.connection_count().max(0),
        "uptime": started().elapsed().as_millis() as u64,
        "processors": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "os_pid": std::process::id().to_string(),
        "partitions": [],
        "cluster_links": [],
        "rates_mode": "basic",
        "db_dir": b.config.data_dir.display().to_string(),
        "auth_mechanisms": b.config.auth_mechanisms.iter().map(|m| json!({"name": m, "enabled": true})).collect::<Vec<_>>(),
        "exchange_types": exchange_types(),
        "net_ticktime": 60,
    });
    let extra = [
        ("disk_free", alarms::free_space(&b.config.data_dir)),
        ("fd_used", fd_used()),
        ("fd_total", fd_limit()),
    ];
    for (k, v) in extra {
        if let Some(v) = v {
            n[k] = v.into();
        }
    }
    n
}

/// Nodes are for monitoring and administrator users (RabbitMQ's `is_authorized_monitor`).
fn require_monitor(c: &Caller) -> ApiResult<()> {
    if c.sees_all() {
        Ok(())
    } else {
        Err(ApiError::unauthorised("Not monitor user"))
    }
}

async fn list(c: Caller) -> ApiResult<Json<Value>> {
    require_monitor(&c)?;
    Ok(Json(json!([node(&c)])))
}

async fn one(c: Caller, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    require_monitor(&c)?;
    if name != node_name() {
        return Err(ApiError::not_found());
    }
    Ok(Json(node(&c)))
}
