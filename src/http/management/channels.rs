//! `/api/channels` and `/api/consumers` (and their per-vhost and per-connection forms):
//! each connection is asked for its channels (`Control::report`, answered between two of
//! its batches), so nothing is kept up to date for them on the hot path. A connection
//! that does not answer within a second (its output is backed up) is left out.

use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::connections::{named, table_json, visible};
use super::nodes::node_name;
use super::{Api, ApiError, ApiResult, Caller};
use crate::broker::sessions::{ChannelInfo, Listed};

const REPORT_WAIT: Duration = Duration::from_secs(1);

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/channels", get(list))
        .route("/api/vhosts/{vhost}/channels", get(in_vhost))
        .route("/api/channels/{name}", get(show))
        .route("/api/connections/{name}/channels", get(of_connection))
        .route("/api/consumers", get(consumers))
        .route("/api/consumers/{vhost}", get(consumers_in))
}

/// Every connection's channels, asked of all at once.
async fn reports(conns: Vec<Listed>) -> Vec<(Listed, Vec<ChannelInfo>)> {
    let asked: Vec<_> = conns
        .into_iter()
        .map(|l| {
            let (tx, rx) = tokio::sync::oneshot::channel();
            l.control.report(tx);
            (l, rx)
        })
        .collect();
    let deadline = tokio::time::Instant::now() + REPORT_WAIT;
    let mut out = Vec::with_capacity(asked.len());
    for (l, rx) in asked {
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(chs)) => out.push((l, chs)),
            _ => tracing::debug!(connection = %l.info.name(), "no channel report in time"),
        }
    }
    out
}

fn channel_name(l: &Listed, n: u16) -> String {
    format!("{} ({n})", l.info.name())
}

fn channel_json(l: &Listed, ch: &ChannelInfo) -> Value {
    let i = &l.info;
    json!({
        "name": channel_name(l, ch.number),
        "number": ch.number,
        "node": node_name(),
        "vhost": i.vhost,
        "user": i.user,
        "user_who_performed_action": i.user,
        "connection_details": {
            "name": i.name(),
            "peer_host": i.peer.ip().to_string(),
            "peer_port": i.peer.port(),
        },
        "confirm": ch.confirm,
        "transactional": ch.transactional,
        "prefetch_count": ch.prefetch_count,
        "global_prefetch_count": ch.global_prefetch_count,
        "consumer_count": ch.consumers.len(),
        "messages_unacknowledged": ch.messages_unacknowledged,
        "messages_unconfirmed": ch.messages_unconfirmed,
        "messages_uncommitted": 0,
        "acks_uncommitted": 0,
        "state": if ch.closing { "closing" } else { "running" },
    })
}

fn visible_conns(c: &Caller, pick: impl Fn(&Listed) -> bool) -> Vec<Listed> {
    c.broker
        .sessions
        .list()
        .into_iter()
        .filter(|l| visible(c, l) && pick(l))
        .collect()
}

fn channels_json(reports: &[(Listed, Vec<ChannelInfo>)]) -> Value {
    reports
        .iter()
        .flat_map(|(l, chs)| chs.iter().map(move |ch| channel_json(l, ch)))
        .collect()
}

async fn list(c: Caller) -> Json<Value> {
    Json(channels_json(&reports(visible_conns(&c, |_| true)).await))
}

async fn in_vhost(c: Caller, Path(vhost): Path<String>) -> ApiResult<Json<Value>> {
    if c.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    c.require_vhost(&vhost)?;
    let r = reports(visible_conns(&c, |l| l.info.vhost == vhost)).await;
    Ok(Json(channels_json(&r)))
}

async fn of_connection(c: Caller, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let l = named(&c, &name)?;
    Ok(Json(channels_json(&reports(vec![l]).await)))
}

/// "conn-name (N)": the connection's name and the channel's number.
fn split_name(name: &str) -> Option<(&str, u16)> {
    let (conn, rest) = name.rsplit_once(" (")?;
    let n = rest.strip_suffix(')')?.parse().ok()?;
    Some((conn, n))
}

async fn show(c: Caller, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let (conn, n) = split_name(&name).ok_or_else(ApiError::not_found)?;
    let l = named(&c, conn)?;
    let r = reports(vec![l]).await;
    r.iter()
        .find_map(|(l, chs)| {
            chs.iter()
                .find(|ch| ch.number == n)
                .map(|ch| channel_json(l, ch))
        })
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

fn consumers_json(reports: &[(Listed, Vec<ChannelInfo>)]) -> Value {
    let mut out = Vec::new();
    for (l, chs) in reports {
        let i = &l.info;
        for ch in chs {
            for k in &ch.consumers {
                out.push(json!({
                    "consumer_tag": k.tag,
                    "channel_details": {
                        "name": channel_name(l, ch.number),
                        "number": ch.number,
                        "connection_name": i.name(),
                        "peer_host": i.peer.ip().to_string(),
                        "peer_port": i.peer.port(),
                        "user": i.user,
                        "node": node_name(),
                    },
                    "queue": {"name": k.queue, "vhost": i.vhost},
                    "ack_required": k.ack_required,
                    "exclusive": k.exclusive,
                    "prefetch_count": k.prefetch_count,
                    "arguments": table_json(&k.arguments),
                    "active": true,
                    "activity_status": "up",
                }));
            }
        }
    }
    Value::Array(out)
}

/// Consumers are listed by vhost access (whoever's connection they are on).
async fn consumers(c: Caller) -> Json<Value> {
    let r = reports(
        c.broker
            .sessions
            .list()
            .into_iter()
            .filter(|l| c.sees_vhost(&l.info.vhost))
            .collect(),
    )
    .await;
    Json(consumers_json(&r))
}

async fn consumers_in(c: Caller, Path(vhost): Path<String>) -> ApiResult<Json<Value>> {
    if c.broker.vhost(&vhost).is_none() {
        return Err(ApiError::not_found());
    }
    c.require_vhost(&vhost)?;
    let conns = c
        .broker
        .sessions
        .list()
        .into_iter()
        .filter(|l| l.info.vhost == vhost)
        .collect();
    Ok(Json(consumers_json(&reports(conns).await)))
}

#[cfg(test)]
mod tests {
    use super::split_name;

    #[test]
    fn a_channel_name_is_its_connection_and_number() {
        assert_eq!(
            split_name("127.0.0.1:5000 -> 127.0.0.1:5672 (3)"),
            Some(("127.0.0.1:5000 -> 127.0.0.1:5672", 3))
        );
        assert_eq!(split_name("nope"), None);
    }
}
