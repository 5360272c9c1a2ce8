//! AMQP field tables and message properties as RabbitMQ's API writes them in JSON (and
//! reads them from a publish): arguments, binding arguments, a got message's properties.

use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::types::{FieldTable, ShortString};
use serde_json::{Map, Value};

use super::{ApiError, ApiResult};

pub use crate::args::{table_json, Table};

/// A body's `arguments` object as a field table (absent: empty).
pub fn arguments(m: &Map<String, Value>) -> ApiResult<FieldTable> {
    match m.get("arguments") {
        None | Some(Value::Null) => Ok(FieldTable::default()),
        Some(Value::Object(o)) => Ok(crate::args::table_from_json(o)),
        Some(_) => Err(ApiError::bad_request("arguments must be an object")),
    }
}

/// A got message's properties, as RabbitMQ lists them (absent ones left out).
pub fn properties_json(p: &AMQPProperties) -> Value {
    let mut m = Map::new();
    let mut text = |k: &str, v: &Option<ShortString>| {
        if let Some(v) = v {
            m.insert(k.to_string(), Value::String(v.as_str().to_string()));
        }
    };
    text("content_type", p.content_type());
    text("content_encoding", p.content_encoding());
    text("correlation_id", p.correlation_id());
    text("reply_to", p.reply_to());
    text("expiration", p.expiration());
    text("message_id", p.message_id());
    text("type", p.kind());
    text("user_id", p.user_id());
    text("app_id", p.app_id());
    text("cluster_id", p.cluster_id());
    if let Some(d) = p.delivery_mode() {
        m.insert("delivery_mode".into(), Value::from(*d));
    }
    if let Some(x) = p.priority() {
        m.insert("priority".into(), Value::from(*x));
    }
    if let Some(t) = p.timestamp() {
        m.insert("timestamp".into(), Value::from(*t));
    }
    if let Some(h) = p.headers() {
        m.insert("headers".into(), table_json(h));
    }
    Value::Object(m)
}

/// A publish's `properties` object as AMQP properties (RabbitMQ's names; numbers may be
/// given as strings, as the web UI sends them).
pub fn properties_from_json(o: &Map<String, Value>) -> ApiResult<AMQPProperties> {
    let mut p = AMQPProperties::default();
    let text = |k: &str| -> ApiResult<Option<ShortString>> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.len() <= 255 => Ok(Some(ShortString::from(s.clone()))),
            Some(_) => Err(ApiError::bad_request(format!(
                "property {k} is not a short string"
            ))),
        }
    };
    let number = |k: &str| -> ApiResult<Option<u64>> {
        match o.get(k) {
            None | Some(Value::Null) => Some(None),
            Some(Value::Number(n)) => n.as_u64().map(Some),
            Some(Value::String(s)) => s.parse().ok().map(Some),
            Some(_) => None,
        }
        .ok_or_else(|| ApiError::bad_request(format!("property {k} is not a number")))
    };
    if let Some(v) = text("content_type")? {
        p = p.with_content_type(v);
    }
    if let Some(v) = text("content_encoding")? {
        p = p.with_content_encoding(v);
    }
    if let Some(v) = text("correlation_id")? {
        p = p.with_correlation_id(v);
    }
    if let Some(v) = text("reply_to")? {
        p = p.with_reply_to(v);
    }
    if let Some(v) = text("expiration")? {
        p = p.with_expiration(v);
    }
    if let Some(v) = text("message_id")? {
        p = p.with_message_id(v);
    }
    if let Some(v) = text("type")? {
        p = p.with_type(v);
    }
    if let Some(v) = text("user_id")? {
        p = p.with_user_id(v);
    }
    if let Some(v) = text("app_id")? {
        p = p.with_app_id(v);
    }
    if let Some(v) = text("cluster_id")? {
        p = p.with_cluster_id(v);
    }
    if let Some(v) = number("delivery_mode")? {
        p = p.with_delivery_mode(u8::try_from(v).map_err(|_| bad("delivery_mode"))?);
    }
    if let Some(v) = number("priority")? {
        p = p.with_priority(u8::try_from(v).map_err(|_| bad("priority"))?);
    }
    if let Some(v) = number("timestamp")? {
        p = p.with_timestamp(v);
    }
    match o.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => p = p.with_headers(crate::args::table_from_json(h)),
        Some(_) => return Err(bad("headers")),
    }
    Ok(p)
}

fn bad(k: &str) -> ApiError {
    ApiError::bad_request(format!("property {k} is out of range"))
}
