//! Dead-lettering, as RabbitMQ does it: a message rejected without requeue, expired, pushed
//! out by a length limit or past its delivery limit is republished to its queue's
//! dead-letter exchange with an `x-death` history, its `expiration` removed.
//!
//! A queue never dead-letters under its own lock: it collects [`DeadLetter`]s and hands them
//! to its [`Owner`](super::Owner) afterwards (the vhost republishes them one at a time from a
//! work list), so queues dead-lettering into each other neither deadlock nor recurse. A
//! message is dropped rather than dead-lettered into a queue it already died in, unless a
//! rejection happened since (RabbitMQ's cycle rule); its history grows each time, so every
//! chain ends.

use std::sync::Arc;

use amq_protocol::protocol::basic::{gen_properties, parse_properties, AMQPProperties};
use amq_protocol::types::{AMQPValue, FieldArray, FieldTable, LongString};

use crate::message::Message;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Rejected,
    Expired,
    Maxlen,
    DeliveryLimit,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// A message leaving `queue` for `exchange` (its dead-letter exchange).
pub struct DeadLetter {
    pub message: Arc<Message>,
    pub reason: Reason,
    pub queue: String,
    pub exchange: String,
    /// `x-dead-letter-routing-key`, else the message's own key.
    pub routing_key: Option<String>,
}

fn longstr(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

fn str_of(v: &AMQPValue) -> Option<&[u8]> {
    crate::args::as_bytes(v)
}

/// The message to publish to the dead-letter exchange; `None` if its properties don't parse
/// (they were checked on the way in, so only a stored message could be damaged).
pub fn rewrite(d: &DeadLetter, now_secs: u64) -> Option<Message> {
    let m = &d.message;
    let (_, props) = parse_properties(m.properties_raw()).ok()?;
    let mut headers = props.headers().clone().unwrap_or_default();
    let mut routing_keys = vec![longstr(m.routing_key())];
    if let Some(AMQPValue::FieldArray(cc)) = crate::args::get(&headers, "CC") {
        routing_keys.extend(cc.as_slice().iter().cloned());
    }
    let mut deaths: Vec<AMQPValue> = match crate::args::get(&headers, "x-death") {
        Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
        _ => Vec::new(),
    };
    // The same queue and reason again: count it in place and move it to the front.
    let same = deaths.iter().position(|e| match e {
        AMQPValue::FieldTable(t) => {
            crate::args::get(t, "queue").and_then(str_of) == Some(d.queue.as_bytes())
                && crate::args::get(t, "reason").and_then(str_of)
                    == Some(d.reason.as_str().as_bytes())
        }
        _ => false,
    });
    let mut entry = match same.map(|i| deaths.remove(i)) {
        Some(AMQPValue::FieldTable(t)) => t,
        _ => FieldTable::default(),
    };
    let count = crate::args::get(&entry, "count")
        .and_then(crate::args::as_i64)
        .unwrap_or(0);
    entry.insert("count".into(), AMQPValue::LongLongInt(count + 1));
    entry.insert("reason".into(), longstr(d.reason.as_str()));
    entry.insert("queue".into(), longstr(&d.queue));
    entry.insert("time".into(), AMQPValue::Timestamp(now_secs));
    entry.insert("exchange".into(), longstr(m.exchange()));
    entry.insert(
        "routing-keys".into(),
        AMQPValue::FieldArray(FieldArray::from(routing_keys)),
    );
    if let Some(exp) = props.expiration() {
        entry.insert("original-expiration".into(), longstr(exp.as_str()));
    }
    deaths.insert(0, AMQPValue::FieldTable(entry));
    headers.insert(
        "x-death".into(),
        AMQPValue::FieldArray(FieldArray::from(deaths)),
    );
    if crate::args::get(&headers, "x-first-death-queue").is_none() {
        headers.insert("x-first-death-queue".into(), longstr(&d.queue));
        headers.insert("x-first-death-reason".into(), longstr(d.reason.as_str()));
        headers.insert("x-first-death-exchange".into(), longstr(m.exchange()));
    }
    headers.insert("x-last-death-queue".into(), longstr(&d.queue));
    headers.insert("x-last-death-reason".into(), longstr(d.reason.as_str()));
    headers.insert("x-last-death-exchange".into(), longstr(m.exchange()));
    let props = without_expiration(&props).with_headers(headers);
    let ctx = amq_protocol::frame::WriteContext::from(Vec::new());
    let (raw, _) = gen_properties(&props)(ctx).ok()?.into_inner();
    let key = d.routing_key.as_deref().unwrap_or(m.routing_key());
    Message::from_parts(&d.exchange, key, &raw, m.body())
}

/// The same properties, `expiration` left out (a dead-lettered message does not expire again).
fn without_expiration(p: &AMQPProperties) -> AMQPProperties {
    let mut out = AMQPProperties::default();
    if let Some(v) = p.content_type() {
        out = out.with_content_type(v.clone());
    }
    if let Some(v) = p.content_encoding() {
        out = out.with_content_encoding(v.clone());
    }
    if let Some(v) = p.delivery_mode() {
        out = out.with_delivery_mode(*v);
    }
    if let Some(v) = p.priority() {
        out = out.with_priority(*v);
    }
    if let Some(v) = p.correlation_id() {
        out = out.with_correlation_id(v.clone());
    }
    if let Some(v) = p.reply_to() {
        out = out.with_reply_to(v.clone());
    }
    if let Some(v) = p.message_id() {
        out = out.with_message_id(v.clone());
    }
    if let Some(v) = p.timestamp() {
        out = out.with_timestamp(*v);
    }
    if let Some(v) = p.kind() {
        out = out.with_type(v.clone());
    }
    if let Some(v) = p.user_id() {
        out = out.with_user_id(v.clone());
    }
    if let Some(v) = p.app_id() {
        out = out.with_app_id(v.clone());
    }
    if let Some(v) = p.cluster_id() {
        out = out.with_cluster_id(v.clone());
    }
    out
}

/// Whether dead-lettering `headers`' message into `queue` closes a cycle with no rejection
/// in it (RabbitMQ drops such messages).
pub fn is_cycle(headers: Option<&FieldTable>, queue: &str) -> bool {
    let Some(AMQPValue::FieldArray(deaths)) = headers.and_then(|h| crate::args::get(h, "x-death"))
    else {
        return false;
    };
    for e in deaths.as_slice() {
        let AMQPValue::FieldTable(t) = e else {
            continue;
        };
        if crate::args::get(t, "reason").and_then(str_of) == Some(b"rejected") {
            return false;
        }
        if crate::args::get(t, "queue").and_then(str_of) == Some(queue.as_bytes()) {
            return true;
        }
    }
    false
}

/// Properties with an `x-delivery-count` header (set on redeliveries).
pub fn with_delivery_count(raw: &[u8], count: u32) -> Option<Vec<u8>> {
    let (_, props) = parse_properties(raw).ok()?;
    let mut headers = props.headers().clone().unwrap_or_default();
    headers.insert(
        "x-delivery-count".into(),
        AMQPValue::LongLongInt(count as i64),
    );
    let props = props.with_headers(headers);
    let ctx = amq_protocol::frame::WriteContext::from(Vec::new());
    let (raw, _) = gen_properties(&props)(ctx).ok()?.into_inner();
    Some(raw)
}
