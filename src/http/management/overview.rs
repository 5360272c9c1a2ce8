//! `/api/overview`: versions, node, listeners, object and queue totals, message rates.
//! A user who is neither administrator nor monitoring sees the totals of its own vhosts
//! (and its own connections), as RabbitMQ's overview counts them.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::nodes::{exchange_types, node_name};
use super::{Api, Caller};

pub(super) fn routes() -> Router<Api> {
    Router::new().route("/api/overview", get(overview))
}

/// RabbitMQ's version Warren follows (also what connection.start says).
pub(super) const RABBITMQ_VERSION: &str = "3.13.7";

pub(super) fn listeners(api: &Api) -> Value {
    let node = node_name();
    api.listeners
        .iter()
        .map(|l| {
            json!({
                "node": node,
                "protocol": l.protocol,
                "ip_address": l.addr.ip().to_string(),
                "port": l.addr.port(),
                "socket_opts": {},
            })
        })
        .collect()
}

async fn overview(c: Caller, State(api): State<Api>) -> Json<Value> {
    let vhosts: Vec<_> = c
        .broker
        .vhosts()
        .into_iter()
        .filter(|v| c.sees_vhost(&v.name))
        .collect();
    let (mut queues, mut exchanges, mut consumers) = (0u64, 0u64, 0u64);
    for v in &vhosts {
        exchanges += v.exchange_count() as u64;
        for q in v.queues() {
            queues += 1;
            consumers += u64::from(q.consumer_count());
        }
    }
    let own = c
        .broker
        .sessions
        .list()
        .into_iter()
        .filter(|l| c.sees_all() || l.info.user == c.user.name);
    let (mut connections, mut channels) = (0u64, 0u64);
    for l in own {
        connections += 1;
        channels += l.channels;
    }
    let (message_stats, queue_totals) = c.rates.overview(&vhosts);
    let (opened, closed) = c.broker.sessions.churn();
    let node = node_name();
    let warren = env!("CARGO_PKG_VERSION");
    Json(json!({
        "management_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": "Warren",
        "product_version": warren,
        "rates_mode": "basic",
        "sample_retention_policies": {"global": [600], "basic": [600], "detailed": [600]},
        "exchange_types": exchange_types(),
        "cluster_name": api.cluster_name.read().clone(),
        "node": node,
        "disable_stats": false,
        "enable_queue_totals": false,
        "statistics_db_event_queue": 0,
        "message_stats": message_stats,
        "queue_totals": queue_totals,
        "churn_rates": {
            // Counts only: their rates are not sampled (yet).
            "connection_created": opened,
            "connection_closed": closed,
        },
        "object_totals": {
            "connections": connections,
            "channels": channels,
            "exchanges": exchanges,
            "queues": queues,
            "consumers": consumers,
        },
        "listeners": listeners(&api),
        "contexts": [{
            "node": node,
            "description": "RabbitMQ Management",
            "path": "/",
            "port": api.listeners.iter().find(|l| l.protocol == "http").map(|l| l.addr.port().to_string()),
        }],
    }))
}
