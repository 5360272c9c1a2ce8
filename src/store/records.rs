//! The records' layout: keys prefixed by a kind byte, values in a small binary
//! format. Names are length-prefixed (AMQP short strings are at most 255 bytes).
//!
//! | key                                   | value                                  |
//! |---------------------------------------|----------------------------------------|
//! | `l` qid:u64 first-seq:u64             | a log segment's extent (`log::Extent`) |
//! | `a` qid:u64 first-seq:u64             | its settled seqs (`log::Settled`), count, bytes |
//! | `d` qid:u64                           | highest delivered seq (u64)            |
//! | `v` vhost                             | empty                                  |
//! | `x` eid:u64                           | exchange: vhost, name, kind, flags, args |
//! | `q` qid:u64                           | queue: vhost, name, flags, arguments   |
//! | `b` dest-kind dest-id source-id key args | empty                               |
//! | `F`                                   | the format version (u32)               |
//!
//! The `l`, `a` and `d` records are not in sled but in `logs/meta` (`log::meta`): they change
//! with every commit that settles or delivers, and sled's file never shrinks back. Messages
//! themselves are in each durable queue's log (`super::log`), whose segments the `l` and `a`
//! records describe.
//!
//! Exchanges and queues are keyed by the id of their incarnation (see below), bindings by
//! the ids of their ends, destination first (a queue's bindings go with it by prefix).
//!
//! Integers are big-endian so that keys sort numerically.

use amq_protocol::types::FieldTable;
use thiserror::Error;

use crate::message::Message;

pub const EXTENT: u8 = b'l';
pub const SETTLED: u8 = b'a';
pub const DELIVERED: u8 = b'd';
pub const VHOST: u8 = b'v';
pub const EXCHANGE: u8 = b'x';
pub const QUEUE: u8 = b'q';
pub const BINDING: u8 = b'b';
pub const FORMAT_KEY: u8 = b'F';
/// Access records (`access::record`'s JSON as the value): a user by name, a permission by
/// (vhost, user), a topic permission by (vhost, user, exchange).
pub const USER: u8 = b'u';
pub const PERMISSION: u8 = b'p';
pub const TOPIC_PERMISSION: u8 = b't';
/// A policy and an operator policy by (vhost, name), `policy::PolicyRecord`'s JSON as the
/// value.
pub const POLICY: u8 = b'y';
pub const OPERATOR_POLICY: u8 = b'o';

/// Message flag: written for durability (every logged message has it; a record without it
/// is refused).
pub const PERSISTENT: u8 = 1;
/// Message flag: an expiry time (u64 ms since the epoch) follows the flags.
pub const EXPIRES: u8 = 4;

#[derive(Debug, Error)]
#[error("malformed {what} record")]
pub struct RecordError {
    pub what: &'static str,
}

fn bad(what: &'static str) -> RecordError {
    RecordError { what }
}

/// `kind qid` (the prefix of a queue's `l` and `a` records, or its `d` record).
pub fn queue_prefix(kind: u8, qid: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = kind;
    k[1..].copy_from_slice(&qid.to_be_bytes());
    k
}

/// `kind qid first`: a log segment's `l` or `a` record.
pub fn segment_key(kind: u8, qid: u64, first: u64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&queue_prefix(kind, qid));
    k[9..].copy_from_slice(&first.to_be_bytes());
    k
}

/// `(qid, first)` of a segment key.
pub fn parse_segment_key(k: &[u8]) -> Option<(u64, u64)> {
    if k.len() != 17 {
        return None;
    }
    let qid = u64::from_be_bytes(k[1..9].try_into().ok()?);
    let first = u64::from_be_bytes(k[9..].try_into().ok()?);
    Some((qid, first))
}

pub fn delivered_key(qid: u64) -> [u8; 9] {
    queue_prefix(DELIVERED, qid)
}

fn push_name(out: &mut Vec<u8>, s: &str) {
    // Names are short strings (≤255 bytes) on the wire; vhost names come from the config.
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(b.len() as u8);
    out.extend_from_slice(b);
}

/// A key made of a kind byte and length-prefixed names.
pub fn named_key(kind: u8, names: &[&str]) -> Vec<u8> {
    let mut k = vec![kind];
    for n in names {
        push_name(&mut k, n);
    }
    k
}

/// Reads length-prefixed names from `b`.
struct Reader<'a> {
    b: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, RecordError> {
        let (&x, rest) = self.b.split_first().ok_or(bad(self.what))?;
        self.b = rest;
        Ok(x)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.b.len() < n {
            return Err(bad(self.what));
        }
        let (x, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(x)
    }

    fn name(&mut self) -> Result<String, RecordError> {
        let n = self.byte()? as usize;
        let s = self.take(n)?;
        String::from_utf8(s.to_vec()).map_err(|_| bad(self.what))
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        let b = self.take(8)?;
        Ok(u64::from_be_bytes(
            b.try_into().map_err(|_| bad(self.what))?,
        ))
    }

    fn table(&mut self) -> Result<FieldTable, RecordError> {
        // Written by us from checked tables, but a damaged record must not recurse unbounded.
        warren_codec::table::check_table(self.b).map_err(|_| bad(self.what))?;
        let (rest, t) =
            amq_protocol::types::parsing::parse_field_table(self.b).map_err(|_| bad(self.what))?;
        self.b = rest;
        Ok(t)
    }
}

fn push_table(out: &mut Vec<u8>, t: &FieldTable) {
    let ctx = amq_protocol::frame::WriteContext::from(Vec::new());
    match amq_protocol::types::generation::gen_field_table(t)(ctx) {
        Ok(ctx) => out.extend_from_slice(&ctx.into_inner().0),
        // A table that was parsed off the wire always re-encodes; keep the record readable.
        Err(_) => out.extend_from_slice(&[0, 0, 0, 0]),
    }
}

// ---- messages -------------------------------------------------------------------------

/// `flags | expiry? | exchange | routing key | properties (u32 length) | body`.
pub fn encode_message(m: &Message, flags: u8, expires_at: u64, out: &mut Vec<u8>) {
    encode_message_head(m, flags, expires_at, out);
    out.extend_from_slice(m.body());
}

/// The head of a message record (flags, expiry, names, properties): the body (or its place)
/// is appended after it by the caller, so a large one need not be copied.
pub fn encode_message_head(m: &Message, flags: u8, expires_at: u64, out: &mut Vec<u8>) {
    let props = m.properties_raw();
    out.reserve(1 + 8 + 2 + m.exchange().len() + m.routing_key().len() + 4 + props.len());
    let expires = if expires_at != 0 { EXPIRES } else { 0 };
    out.push(flags | expires);
    if expires_at != 0 {
        out.extend_from_slice(&expires_at.to_be_bytes());
    }
    push_name(out, m.exchange());
    push_name(out, m.routing_key());
    out.extend_from_slice(&(props.len() as u32).to_be_bytes());
    out.extend_from_slice(props);
}

/// A message record, decoded but for the body.
pub struct StoredMessage<'a> {
    pub flags: u8,
    /// ms since the epoch, 0 = never.
    pub expires_at: u64,
    pub exchange: String,
    pub routing_key: String,
    pub properties: &'a [u8],
    pub body: &'a [u8],
}

pub fn decode_message(v: &[u8]) -> Result<StoredMessage<'_>, RecordError> {
    let mut r = Reader {
        b: v,
        what: "message",
    };
    let flags = r.byte()?;
    let expires_at = if flags & EXPIRES != 0 { r.u64()? } else { 0 };
    let exchange = r.name()?;
    let routing_key = r.name()?;
    let plen = u32::from_be_bytes(r.take(4)?.try_into().map_err(|_| bad("message"))?);
    let properties = r.take(plen as usize)?;
    let body = r.b;
    Ok(StoredMessage {
        flags,
        expires_at,
        exchange,
        routing_key,
        properties,
        body,
    })
}

// ---- definitions ----------------------------------------------------------------------
//
// Exchanges, queues and bindings are keyed by the id of the incarnation they belong to
// (never reused), not by name: a queue deleted while another connection re-declares it has
// two incarnations, and the first one's delete can reach the store after the second one's
// put without touching it. Names live in the values.

pub struct ExchangeDef {
    pub id: u64,
    pub vhost: String,
    pub name: String,
    /// The exchange type's name (`direct`, `topic`, ...): the store does not know the types.
    pub kind: String,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

fn id_key(kind: u8, id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(9);
    k.push(kind);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The id of an `x`, `q` or `d` key.
fn key_id(k: &[u8], what: &'static str) -> Result<u64, RecordError> {
    let b: [u8; 8] = k
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .ok_or(bad(what))?;
    if k.len() != 9 {
        return Err(bad(what));
    }
    Ok(u64::from_be_bytes(b))
}

pub fn exchange_key(id: u64) -> Vec<u8> {
    id_key(EXCHANGE, id)
}

pub fn encode_exchange(
    vhost: &str,
    name: &str,
    kind: &str,
    auto_delete: bool,
    internal: bool,
    args: &FieldTable,
) -> Vec<u8> {
    let mut v = Vec::new();
    push_name(&mut v, vhost);
    push_name(&mut v, name);
    push_name(&mut v, kind);
    v.push(auto_delete as u8 | (internal as u8) << 1);
    push_table(&mut v, args);
    v
}

pub fn decode_exchange(k: &[u8], v: &[u8]) -> Result<ExchangeDef, RecordError> {
    let what = "exchange";
    let id = key_id(k, what)?;
    let mut r = Reader { b: v, what };
    let (vhost, name) = (r.name()?, r.name()?);
    let kind = r.name()?;
    let flags = r.byte()?;
    Ok(ExchangeDef {
        id,
        vhost,
        name,
        kind,
        auto_delete: flags & 1 != 0,
        internal: flags & 2 != 0,
        arguments: r.table()?,
    })
}

pub struct QueueDef {
    pub vhost: String,
    pub name: String,
    pub qid: u64,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

pub fn queue_key(qid: u64) -> Vec<u8> {
    id_key(QUEUE, qid)
}

pub fn encode_queue(vhost: &str, name: &str, auto_delete: bool, args: &FieldTable) -> Vec<u8> {
    let mut v = Vec::new();
    push_name(&mut v, vhost);
    push_name(&mut v, name);
    v.push(auto_delete as u8);
    push_table(&mut v, args);
    v
}

pub fn decode_queue(k: &[u8], v: &[u8]) -> Result<QueueDef, RecordError> {
    let what = "queue";
    let qid = key_id(k, what)?;
    let mut r = Reader { b: v, what };
    Ok(QueueDef {
        qid,
        vhost: r.name()?,
        name: r.name()?,
        auto_delete: r.byte()? & 1 != 0,
        arguments: r.table()?,
    })
}

/// Where a stored binding leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    Queue,
    Exchange,
}

fn dest_byte(k: DestKind) -> u8 {
    match k {
        DestKind::Queue => b'q',
        DestKind::Exchange => b'x',
    }
}

/// A binding, by the ids of its ends: `b` dest-kind dest-id source-id key args.
pub struct BindingDef {
    pub dest_kind: DestKind,
    pub dest: u64,
    pub source: u64,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// The key prefix of every binding to `dest` (deleted with it).
pub fn bindings_to_prefix(kind: DestKind, dest: u64) -> Vec<u8> {
    let mut k = vec![BINDING, dest_byte(kind)];
    k.extend_from_slice(&dest.to_be_bytes());
    k
}

pub fn binding_key(
    dest_kind: DestKind,
    dest: u64,
    source: u64,
    key: &str,
    args: &FieldTable,
) -> Vec<u8> {
    let mut k = bindings_to_prefix(dest_kind, dest);
    k.extend_from_slice(&source.to_be_bytes());
    push_name(&mut k, key);
    push_table(&mut k, args);
    k
}

pub fn decode_binding(k: &[u8]) -> Result<BindingDef, RecordError> {
    let what = "binding";
    let mut r = Reader {
        b: k.get(1..).ok_or(bad(what))?,
        what,
    };
    let dest_kind = match r.byte()? {
        b'q' => DestKind::Queue,
        b'x' => DestKind::Exchange,
        _ => return Err(bad(what)),
    };
    Ok(BindingDef {
        dest_kind,
        dest: r.u64()?,
        source: r.u64()?,
        routing_key: r.name()?,
        arguments: r.table()?,
    })
}

/// The store's format, in the `F` record: bumped whenever a record changes shape.
pub const FORMAT: u32 = 4;

pub fn format_key() -> Vec<u8> {
    vec![FORMAT_KEY]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_keys_sort_by_queue_then_seq() {
        assert!(segment_key(EXTENT, 1, 300) < segment_key(EXTENT, 2, 0));
        assert!(segment_key(EXTENT, 1, 255) < segment_key(EXTENT, 1, 256));
        assert_eq!(parse_segment_key(&segment_key(SETTLED, 7, 9)), Some((7, 9)));
        assert!(segment_key(SETTLED, 7, 0).starts_with(&queue_prefix(SETTLED, 7)));
    }

    #[test]
    fn definitions_round_trip() {
        let mut args = FieldTable::default();
        args.insert(
            "x-max-length".into(),
            amq_protocol::types::AMQPValue::LongInt(5),
        );
        let k = queue_key(42);
        let q = decode_queue(&k, &encode_queue("/", "orders", true, &args)).unwrap();
        assert_eq!(
            (q.vhost.as_str(), q.name.as_str(), q.qid, q.auto_delete),
            ("/", "orders", 42, true)
        );
        assert!(crate::args::tables_equivalent(&q.arguments, &args));

        let k = exchange_key(7);
        let x = decode_exchange(
            &k,
            &encode_exchange("v", "logs", "topic", false, true, &args),
        )
        .unwrap();
        assert_eq!(
            (
                x.id,
                x.name.as_str(),
                x.kind.as_str(),
                x.auto_delete,
                x.internal
            ),
            (7, "logs", "topic", false, true)
        );

        let k = binding_key(DestKind::Queue, 42, 7, "a.#", &args);
        assert!(k.starts_with(&bindings_to_prefix(DestKind::Queue, 42)));
        assert!(!k.starts_with(&bindings_to_prefix(DestKind::Exchange, 42)));
        let b = decode_binding(&k).unwrap();
        assert_eq!(
            (b.dest_kind, b.dest, b.source, b.routing_key.as_str()),
            (DestKind::Queue, 42, 7, "a.#")
        );
    }

    #[test]
    fn truncated_records_are_errors_not_panics() {
        let v = encode_queue("/", "q", false, &FieldTable::default());
        let k = queue_key(1);
        for n in 0..v.len() {
            assert!(decode_queue(&k, &v[..n]).is_err());
        }
        for n in 0..k.len() {
            let _ = decode_queue(&k[..n], &v);
        }
        for n in 0..20 {
            assert!(decode_message(&[1, 2, b'e'][..n.min(3)]).is_err());
        }
        // A message record with an expiry, cut inside its head, is an error too.
        let mut v = vec![PERSISTENT | EXPIRES];
        v.extend_from_slice(&[0u8; 8]);
        v.extend_from_slice(&[1, b'x', 1, b'k', 0, 0, 0, 2, 0x80, 0]);
        v.extend_from_slice(b"body");
        let m = decode_message(&v).unwrap();
        assert_eq!((m.exchange.as_str(), m.body), ("x", &b"body"[..]));
        for n in 0..v.len() - 4 {
            assert!(decode_message(&v[..n]).is_err());
        }
    }
}
