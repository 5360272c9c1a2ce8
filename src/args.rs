//! Helpers over AMQP field tables (arguments, headers, client properties).

use amq_protocol::types::{AMQPValue, FieldTable};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

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
#[cfg(test)]
pub fn tables_equivalent(a: &FieldTable, b: &FieldTable) -> bool {
    a.inner().len() == b.inner().len()
        && a.inner()
            .iter()
            .all(|(k, v)| b.inner().get(k).is_some_and(|w| loosely_equal(v, w)))
}

/// A table's bytes for loose equality (see [`loosely_equal`]): two tables are
/// `tables_equivalent` exactly when their canonical forms are equal, so the form can key a
/// hash map. Keys in order (a field table keeps them sorted); integers as i64, strings as
/// their bytes whatever their kind, anything else as its debug form.
pub fn canonical(t: &FieldTable) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in t.inner() {
        out.push(k.as_str().len() as u8);
        out.extend_from_slice(k.as_str().as_bytes());
        if let Some(i) = as_i64(v) {
            out.push(b'i');
            out.extend_from_slice(&i.to_be_bytes());
        } else if let Some(b) = as_bytes(v) {
            out.push(b's');
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        } else {
            let d = format!("{v:?}");
            out.push(b'o');
            out.extend_from_slice(&(d.len() as u32).to_be_bytes());
            out.extend_from_slice(d.as_bytes());
        }
    }
    out
}

/// A JSON value (a definitions file's arguments) as RabbitMQ's import types it: strings
/// long strings, integers 64-bit, other numbers doubles, lists arrays, objects tables.
pub fn from_json(v: &serde_json::Value) -> AMQPValue {
    use amq_protocol::types::{FieldArray, LongString};
    use serde_json::Value;
    match v {
        Value::Null => AMQPValue::Void,
        Value::Bool(b) => AMQPValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => AMQPValue::LongLongInt(i),
            None => AMQPValue::Double(n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
        Value::Array(a) => AMQPValue::FieldArray(FieldArray::from(
            a.iter().map(from_json).collect::<Vec<_>>(),
        )),
        Value::Object(o) => AMQPValue::FieldTable(table_from_json(o)),
    }
}

/// A JSON object as a field table (see [`from_json`]).
pub fn table_from_json(o: &serde_json::Map<String, serde_json::Value>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in o {
        t.insert(k.as_str().into(), from_json(v));
    }
    t
}

/// A field table as RabbitMQ's management API and definitions export write it: a JSON
/// object of numbers, strings (byte strings read as UTF-8, lossily), booleans, lists and
/// objects, serialised without an intermediate `Value`.
pub struct Table<'a>(pub &'a FieldTable);

impl Serialize for Table<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let inner = self.0.inner();
        let mut m = s.serialize_map(Some(inner.len()))?;
        for (k, v) in inner {
            m.serialize_entry(k.as_str(), &Amqp(v))?;
        }
        m.end()
    }
}

struct Amqp<'a>(&'a AMQPValue);

impl Serialize for Amqp<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            AMQPValue::Boolean(b) => s.serialize_bool(*b),
            AMQPValue::Float(f) => s.serialize_f32(*f),
            AMQPValue::Double(f) => s.serialize_f64(*f),
            AMQPValue::DecimalValue(d) => {
                s.serialize_f64(d.value as f64 / 10f64.powi(i32::from(d.scale)))
            }
            AMQPValue::ShortString(x) => s.serialize_str(x.as_str()),
            AMQPValue::LongString(x) => s.serialize_str(&String::from_utf8_lossy(x.as_bytes())),
            AMQPValue::ByteArray(x) => s.serialize_str(&String::from_utf8_lossy(x.as_slice())),
            AMQPValue::FieldArray(a) => {
                let mut seq = s.serialize_seq(Some(a.as_slice().len()))?;
                for v in a.as_slice() {
                    seq.serialize_element(&Amqp(v))?;
                }
                seq.end()
            }
            AMQPValue::FieldTable(t) => Table(t).serialize(s),
            AMQPValue::Void => s.serialize_unit(),
            other => match as_i64(other) {
                Some(i) => s.serialize_i64(i),
                None => s.serialize_unit(),
            },
        }
    }
}

/// A field table as a JSON value (see [`Table`]).
pub fn table_json(t: &FieldTable) -> serde_json::Value {
    serde_json::to_value(Table(t)).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::types::LongString;

    #[test]
    fn canonical_forms_agree_with_equivalence() {
        let t = |pairs: &[(&str, AMQPValue)]| {
            let mut t = FieldTable::default();
            for (k, v) in pairs {
                t.insert((*k).into(), v.clone());
            }
            t
        };
        let a = t(&[
            ("x", AMQPValue::LongInt(5)),
            ("s", AMQPValue::LongString(LongString::from("v"))),
        ]);
        let b = t(&[
            ("x", AMQPValue::LongLongInt(5)),
            ("s", AMQPValue::ShortString("v".into())),
        ]);
        let c = t(&[
            ("x", AMQPValue::LongInt(6)),
            ("s", AMQPValue::LongString(LongString::from("v"))),
        ]);
        assert!(tables_equivalent(&a, &b) && canonical(&a) == canonical(&b));
        assert!(!tables_equivalent(&a, &c) && canonical(&a) != canonical(&c));
        assert!(canonical(&FieldTable::default()).is_empty());
    }
}
