//! Messages through the API: `POST /api/exchanges/{vhost}/{name}/publish` (answers
//! `{"routed": bool}`) and `POST /api/queues/{vhost}/{name}/get` (a list of messages, with
//! RabbitMQ's ack modes). Both check what basic.publish and basic.get would: write on the
//! exchange (the default one as `amq.default`), read on the queue.

use std::sync::Arc;

use amq_protocol::protocol::basic::parse_properties;
use axum::body::Bytes;
use axum::extract::Path;
use axum::Json;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::bindings::exchange_name;
use super::queues::queue;
use super::tables::{properties_from_json, properties_json};
use super::topology::{self, permit, Kind, HTTP_CONNECTION};
use super::{body, field, synced, ApiError, ApiResult, Caller};
use crate::access::grants::Perm;
use crate::error::AmqpError;
use crate::exchange::ExchangeKind;
use crate::message::Message;
use crate::queue::{Enqueued, Queue};
use crate::vhost::RouteScratch;

/// What a get does with the messages it takes.
#[derive(Clone, Copy)]
enum AckMode {
    /// Given back, marked redelivered (`ack_requeue_true`, `reject_requeue_true`).
    Requeue,
    /// Acked: gone (`ack_requeue_false`).
    Ack,
    /// Rejected: gone, dead-lettered if the queue says so (`reject_requeue_false`).
    Reject,
}

fn number(m: &Map<String, Value>, key: &str) -> Option<u64> {
    match m.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) async fn get(
    c: Caller,
    Path((vhost, name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<Json<Vec<Value>>> {
    let m = body(&raw)?;
    let count =
        number(&m, "count").ok_or_else(|| ApiError::bad_request("[{key_missing,count}]"))?;
    let mode = match field(&m, "ackmode")? {
        "ack_requeue_true" | "reject_requeue_true" => AckMode::Requeue,
        "ack_requeue_false" => AckMode::Ack,
        "reject_requeue_false" => AckMode::Reject,
        other => return Err(ApiError::bad_request(format!("unknown ackmode '{other}'"))),
    };
    let base64_only = match field(&m, "encoding")? {
        "auto" => false,
        "base64" => true,
        other => return Err(ApiError::bad_request(format!("unknown encoding '{other}'"))),
    };
    let truncate = number(&m, "truncate").map(|t| t as usize);
    let v = topology::vhost(&c, &vhost)?;
    permit(&c, &v, Perm::Read, Kind::Queue, &name)?;
    let (_, q) = queue(&c, &vhost, &name)?;
    q.check_exclusive(HTTP_CONNECTION).map_err(topology::amqp)?;
    // A get may wait for a deep queue's read from disk: off the runtime's threads.
    let got = tokio::task::spawn_blocking(move || take(&q, count, mode))
        .await
        .map_err(|_| ApiError::bad_request("get failed"))?;
    Ok(Json(
        got.iter()
            .map(|(m, redelivered, left)| describe(m, *redelivered, *left, base64_only, truncate))
            .collect(),
    ))
}

/// Takes up to `count` messages, then settles them as `mode` says.
fn take(q: &Arc<Queue>, count: u64, mode: AckMode) -> Vec<(Arc<Message>, bool, u32)> {
    let mut taken = Vec::new();
    let mut out = Vec::new();
    for _ in 0..count {
        let Some((m, left)) = q.get(!matches!(mode, AckMode::Ack)) else {
            break;
        };
        out.push((m.message.clone(), m.redelivered, left));
        taken.push(m);
    }
    match mode {
        AckMode::Requeue => q.requeue(taken),
        AckMode::Reject => q.reject(taken),
        AckMode::Ack => {}
    }
    out
}

fn describe(
    m: &Message,
    redelivered: bool,
    left: u32,
    base64_only: bool,
    truncate: Option<usize>,
) -> Value {
    let body = m.body();
    let shown = &body[..truncate.map_or(body.len(), |t| t.min(body.len()))];
    let (payload, encoding) = match std::str::from_utf8(shown) {
        Ok(s) if !base64_only => (s.to_string(), "string"),
        _ => (
            base64::engine::general_purpose::STANDARD.encode(shown),
            "base64",
        ),
    };
    let properties = parse_properties(m.properties_raw())
        .map(|(_, p)| properties_json(&p))
        .unwrap_or_else(|_| json!({}));
    json!({
        "payload_bytes": body.len(),
        "redelivered": redelivered,
        "exchange": m.exchange(),
        "routing_key": m.routing_key(),
        "message_count": left,
        "properties": properties,
        "payload": payload,
        "payload_encoding": encoding,
    })
}

pub(super) async fn publish(
    c: Caller,
    Path((vhost, name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<Json<Value>> {
    let m = body(&raw)?;
    let missing: Vec<String> = ["properties", "routing_key", "payload", "payload_encoding"]
        .iter()
        .filter(|k| !m.contains_key(**k))
        .map(|k| format!("{{key_missing,{k}}}"))
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::bad_request(format!("[{}]", missing.join(","))));
    }
    let key = field(&m, "routing_key")?;
    let payload = field(&m, "payload")?;
    let payload = match field(&m, "payload_encoding")? {
        "string" => payload.as_bytes().to_vec(),
        "base64" => base64::engine::general_purpose::STANDARD
            .decode(payload)
            .map_err(|_| ApiError::bad_request("not_base64"))?,
        other => {
            return Err(ApiError::bad_request(format!(
                "unknown payload_encoding '{other}'"
            )))
        }
    };
    let props = match m.get("properties") {
        Some(Value::Object(o)) => properties_from_json(o)?,
        _ => return Err(ApiError::bad_request("properties must be an object")),
    };
    let v = topology::vhost(&c, &vhost)?;
    let name = exchange_name(&name);
    let refuse = topology::amqp_on_publish;
    let grants = c.broker.grants(&c.user.name, &v.name);
    if !grants.allows(Perm::Write, name) {
        return Err(refuse(AmqpError::access_refused(format!(
            "access to exchange '{}' in vhost '{}' refused for user '{}'",
            crate::access::grants::resource_name(name),
            v.name,
            c.user.name
        ))));
    }
    let ex = v.exchange_or_404(name).map_err(refuse)?;
    if ex.internal {
        return Err(refuse(AmqpError::access_refused(format!(
            "cannot publish to internal exchange '{name}' in vhost '{}'",
            v.name
        ))));
    }
    if let Some(user_id) = props.user_id() {
        if user_id.as_str() != c.user.name {
            return Err(refuse(AmqpError::precondition_failed(format!(
                "user_id property set to '{}' but authenticated user was '{}'",
                user_id.as_str(),
                c.user.name
            ))));
        }
    }
    if ex.kind == ExchangeKind::Topic
        && grants.has_topic_rules(name)
        && !grants.topic_allows(Perm::Write, name, key)
    {
        return Err(refuse(AmqpError::access_refused(format!(
            "access to topic '{key}' in exchange '{name}' in vhost '{}' refused for user '{}'",
            v.name, c.user.name
        ))));
    }
    if key.len() > 255 {
        return Err(ApiError::bad_request(
            "routing_key is longer than 255 bytes",
        ));
    }
    let raw_props = warren_codec::Properties::from_amqp(&props)
        .map_err(|e| ApiError::bad_request(format!("properties: {e}")))?;
    let message = Message::from_parts(name, key, raw_props.raw(), &payload)
        .ok_or_else(|| ApiError::bad_request("properties do not encode"))?;
    let message = Arc::new(message);
    let mut scratch = RouteScratch::default();
    v.route(&ex, key, &|| message.headers(), &mut scratch);
    let message = v.route_cc(&ex, message, &mut scratch);
    let mut wrote = false;
    for q in &scratch.queues {
        wrote |= q.publish(message.clone()) == Enqueued::Written;
        q.poke();
    }
    if wrote {
        synced(&c.broker).await?;
    }
    Ok(Json(json!({"routed": !scratch.queues.is_empty()})))
}
