//! Helpers over AMQP field tables (arguments, headers, client properties).

use amq_protocol::types::{AMQPValue, FieldTable};

/// The value as an integer if it is any integer type.
pub fn as_i64(v: &AMQPValue) -> Option<i64> {
    Some(match v {
        AMQPValue::ShortShortInt(x) => *x as i64,
        AMQPValue::ShortShortUInt(x) => *x as i64,
        AMQPValue::ShortInt(x) => *x as i64,
        AMQPValue::ShortUInt(x) => *x as i64,
        AMQPValue::LongInt(x) => *x as i64,
        AMQPValue::LongUInt(x) => *x as i64,
        AMQPValue::LongLongInt(x) => *x,
        AMQPValue::Timestamp(x) => *x as i64,
        _ => return None,
    })
}

/// The value as bytes if it is any string type.
pub fn as_bytes(v: &AMQPValue) -> Option<&[u8]> {
    match v {
        AMQPValue::ShortString(s) => Some(s.as_str().as_bytes()),
        AMQPValue::LongString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Equality as RabbitMQ users expect it: integers equal whatever their width, strings equal
/// whatever their kind.
pub fn loosely_equal(a: &AMQPValue, b: &AMQPValue) -> bool {
    if let (Some(x), Some(y)) = (as_i64(a), as_i64(b)) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (as_bytes(a), as_bytes(b)) {
        return x == y;
    }
    a == b
}

pub fn get<'a>(t: &'a FieldTable, key: &str) -> Option<&'a AMQPValue> {
    t.inner().get(key)
}

pub fn get_bool(t: &FieldTable, key: &str) -> Option<bool> {
    match get(t, key)? {
        AMQPValue::Boolean(b) => Some(*b),
        _ => None,
    }
}

/// A nested table (e.g. client-properties' `capabilities`).
pub fn get_table<'a>(t: &'a FieldTable, key: &str) -> Option<&'a FieldTable> {
    match get(t, key)? {
        AMQPValue::FieldTable(t) => Some(t),
        _ => None,
    }
}

pub fn get_str<'a>(t: &'a FieldTable, key: &str) -> Option<&'a [u8]> {
    as_bytes(get(t, key)?)
}

/// Two argument tables compared with loose equality on their values.
pub fn tables_equivalent(a: &FieldTable, b: &FieldTable) -> bool {
    a.inner().len() == b.inner().len()
        && a.inner()
            .iter()
            .all(|(k, v)| b.inner().get(k).is_some_and(|w| loosely_equal(v, w)))
}
