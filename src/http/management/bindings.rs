//! `/api/bindings[/{vhost}[/e/{source}/q|e/{destination}[/{props}]]]`: bindings listed,
//! made (POST, 201 with a `Location` naming the new binding's props key) and deleted.
//!
//! A binding is named in a path by its props key, as RabbitMQ forms it: `~` for an empty
//! routing key without arguments, else the routing key quoted (`quote_plus`, `~` as `%7E`),
//! followed by `~` and a hash of the arguments when there are any. RabbitMQ hashes the
//! arguments' Erlang term (`erlang:phash2`); Warren hashes their canonical bytes (CRC32),
//! so the keys of bindings with arguments differ between the two (each is stable).
//! The default exchange (`amq.default` in paths) has one implicit binding per queue, keyed
//! by its name; it is listed, and cannot be bound or unbound (401 "Access refused.").

use std::sync::Arc;

use amq_protocol::types::FieldTable;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde::Serialize;

use super::tables::{arguments, Table};
use super::topology::{self, permit, Kind, HTTP_CONNECTION};
use super::{body, synced, Api, ApiError, ApiResult, Caller};
use crate::access::grants::Perm;
use crate::exchange::{Binding, DestId, Destination, Exchange, ExchangeKind};
use crate::queue::Queue;
use crate::vhost::VHost;

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/bindings", get(list_all))
        .route("/api/bindings/{vhost}", get(list_vhost))
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{dest}",
            get(list_between).post(create),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{dest}/{props}",
            get(show).delete(delete),
        )
}

/// A binding as the API writes it.
#[derive(Serialize)]
pub(super) struct BindingRow {
    source: String,
    vhost: String,
    destination: String,
    destination_type: &'static str,
    routing_key: String,
    #[serde(serialize_with = "table")]
    arguments: FieldTable,
    properties_key: String,
}

fn table<S: serde::Serializer>(t: &FieldTable, s: S) -> Result<S::Ok, S::Error> {
    Table(t).serialize(s)
}

impl BindingRow {
    fn sort_key(&self) -> (&str, &str, &str, &str) {
        (
            &self.source,
            self.destination_type,
            &self.destination,
            &self.routing_key,
        )
    }
}

/// The path name of an exchange: `amq.default` is the default exchange.
pub(super) fn exchange_name(path: &str) -> &str {
    if path == "amq.default" {
        ""
    } else {
        path
    }
}

/// RabbitMQ's props key of a binding (see the module's doc).
pub(super) fn props_key(key: &str, args: &FieldTable) -> String {
    if key.is_empty() && args.inner().is_empty() {
        return "~".into();
    }
    let mut out = quote_plus(key);
    if !args.inner().is_empty() {
        let hash = crc32fast::hash(&crate::args::canonical(args));
        out.push('~');
        out.push_str(&base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash.to_be_bytes()));
    }
    out
}

/// mochiweb's `quote_plus` as RabbitMQ applies it, with `~` quoted too.
fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn row(vhost: &str, source: &Exchange, b: &Binding) -> BindingRow {
    let (destination, destination_type) = match &b.destination {
        Destination::Queue(q) => (q.name.clone(), "queue"),
        Destination::Exchange(e) => (e.name.clone(), "exchange"),
    };
    BindingRow {
        source: source.name.clone(),
        vhost: vhost.to_string(),
        destination,
        destination_type,
        routing_key: b.routing_key.clone(),
        arguments: b.arguments.clone(),
        properties_key: props_key(&b.routing_key, &b.arguments),
    }
}

/// The default exchange's implicit binding to `q`.
fn default_row(vhost: &str, q: &Queue) -> BindingRow {
    BindingRow {
        source: String::new(),
        vhost: vhost.to_string(),
        destination: q.name.clone(),
        destination_type: "queue",
        routing_key: q.name.clone(),
        arguments: FieldTable::default(),
        properties_key: quote_plus(&q.name),
    }
}

fn sorted(mut rows: Vec<BindingRow>) -> Vec<BindingRow> {
    rows.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    rows
}

/// Every binding of a vhost, the default exchange's included.
fn of_vhost(v: &VHost) -> Vec<BindingRow> {
    let mut rows: Vec<BindingRow> = v.queues().iter().map(|q| default_row(&v.name, q)).collect();
    for ex in v.exchanges() {
        rows.extend(ex.bindings().iter().map(|b| row(&v.name, &ex, b)));
    }
    sorted(rows)
}

/// The bindings from an exchange.
pub(super) fn from_source(v: &VHost, ex: &Exchange) -> Vec<BindingRow> {
    if ex.name.is_empty() {
        return sorted(v.queues().iter().map(|q| default_row(&v.name, q)).collect());
    }
    sorted(ex.bindings().iter().map(|b| row(&v.name, ex, b)).collect())
}

/// The bindings to a queue (its default binding first) or an exchange.
pub(super) fn to_destination(v: &VHost, dest: &Destination) -> Vec<BindingRow> {
    let mut rows = Vec::new();
    if let Destination::Queue(q) = dest {
        rows.push(default_row(&v.name, q));
    }
    let id: DestId = dest.id();
    rows.extend(v.bindings_to(id).iter().map(|(ex, b)| row(&v.name, ex, b)));
    sorted(rows)
}

async fn list_all(c: Caller) -> ApiResult<Json<Vec<BindingRow>>> {
    let mut rows = Vec::new();
    for v in c.broker.vhosts() {
        if c.require_vhost(&v.name).is_ok() {
            rows.extend(of_vhost(&v));
        }
    }
    Ok(Json(rows))
}

async fn list_vhost(c: Caller, Path(vhost): Path<String>) -> ApiResult<Json<Vec<BindingRow>>> {
    let v = topology::vhost(&c, &vhost)?;
    Ok(Json(of_vhost(&v)))
}

/// The two ends of a path's binding: the source exchange and the destination.
struct Ends {
    vhost: Arc<VHost>,
    source: String,
    dest: Destination,
}

type EndsPath = (String, String, String, String);

fn ends(c: &Caller, (vhost, source, kind, dest): &EndsPath) -> ApiResult<Ends> {
    let v = topology::vhost(c, vhost)?;
    let dest = match kind.as_str() {
        "q" => Destination::Queue(v.queue_or_404(dest).map_err(topology::amqp)?),
        "e" => Destination::Exchange(
            v.exchange_or_404(exchange_name(dest))
                .map_err(topology::amqp)?,
        ),
        _ => return Err(ApiError::not_found()),
    };
    let source = exchange_name(source).to_string();
    v.exchange_or_404(&source).map_err(topology::amqp)?;
    Ok(Ends {
        vhost: v,
        source,
        dest,
    })
}

fn between(e: &Ends) -> Vec<BindingRow> {
    let name = |d: &Destination| match d {
        Destination::Queue(q) => q.name.clone(),
        Destination::Exchange(x) => x.name.clone(),
    };
    let dest = name(&e.dest);
    to_destination(&e.vhost, &e.dest)
        .into_iter()
        .filter(|r| r.source == e.source && r.destination == dest)
        .collect()
}

async fn list_between(c: Caller, Path(p): Path<EndsPath>) -> ApiResult<Json<Vec<BindingRow>>> {
    let e = ends(&c, &p)?;
    Ok(Json(between(&e)))
}

fn one(c: &Caller, p: &EndsPath, props: &str) -> ApiResult<(Ends, BindingRow)> {
    let e = ends(c, p)?;
    let found = between(&e)
        .into_iter()
        .find(|r| r.properties_key == props)
        .ok_or_else(ApiError::not_found)?;
    Ok((e, found))
}

async fn show(
    c: Caller,
    Path((vhost, source, kind, dest, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<Json<BindingRow>> {
    let (_, row) = one(&c, &(vhost, source, kind, dest), &props)?;
    Ok(Json(row))
}

/// A bind or unbind needs write on the destination and read on the source (RabbitMQ).
fn permit_binding(c: &Caller, e: &Ends, key: &str) -> ApiResult<()> {
    match &e.dest {
        Destination::Queue(q) => {
            permit(c, &e.vhost, Perm::Write, Kind::Queue, &q.name)?;
            q.check_exclusive(HTTP_CONNECTION).map_err(topology::amqp)?;
        }
        Destination::Exchange(x) => permit(c, &e.vhost, Perm::Write, Kind::Exchange, &x.name)?,
    }
    permit(c, &e.vhost, Perm::Read, Kind::Exchange, &e.source)?;
    // A binding from a topic exchange needs the topic read permission on its key.
    let grants = c.broker.grants(&c.user.name, &e.vhost.name);
    let topic = e
        .vhost
        .exchange(&e.source)
        .is_some_and(|x| x.kind == ExchangeKind::Topic);
    if topic
        && grants.has_topic_rules(&e.source)
        && !grants.topic_allows(Perm::Read, &e.source, key)
    {
        return Err(topology::amqp(crate::error::AmqpError::access_refused(
            "topic",
        )));
    }
    Ok(())
}

fn durable(e: &Ends) -> bool {
    match &e.dest {
        Destination::Queue(q) => q.durable,
        Destination::Exchange(x) => x.durable,
    }
}

async fn create(c: Caller, Path(p): Path<EndsPath>, raw: Bytes) -> ApiResult<Response> {
    let m = body(&raw)?;
    let key = match m.get("routing_key") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::bad_request("routing_key must be a string")),
    };
    let args = arguments(&m)?;
    let e = ends(&c, &p)?;
    permit_binding(&c, &e, &key)?;
    let props = props_key(&key, &args);
    e.vhost
        .bind(&e.source, e.dest.clone(), &key, args)
        .map_err(topology::amqp)?;
    if durable(&e) {
        synced(&c.broker).await?;
    }
    let location = format!(
        "{}/{}",
        percent_encoding::utf8_percent_encode(&p.3, SEGMENT),
        percent_encoding::utf8_percent_encode(&props, SEGMENT)
    );
    Ok((StatusCode::CREATED, [(header::LOCATION, location)]).into_response())
}

/// What a path segment keeps unencoded (RFC 3986's unreserved characters).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

async fn delete(
    c: Caller,
    Path((vhost, source, kind, dest, props)): Path<(String, String, String, String, String)>,
) -> ApiResult<StatusCode> {
    let (e, row) = one(&c, &(vhost, source, kind, dest), &props)?;
    permit_binding(&c, &e, &row.routing_key)?;
    e.vhost
        .unbind(&e.source, e.dest.clone(), &row.routing_key, row.arguments)
        .map_err(topology::amqp)?;
    if durable(&e) {
        synced(&c.broker).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn props_keys_as_rabbitmq_forms_them() {
        let none = FieldTable::default();
        assert_eq!(props_key("", &none), "~");
        assert_eq!(props_key("a.b", &none), "a.b");
        assert_eq!(props_key("k/x y~", &none), "k%2Fx+y%7E");
        let mut args = FieldTable::default();
        args.insert("x-a".into(), amq_protocol::types::AMQPValue::Boolean(true));
        let k = props_key("", &args);
        assert!(k.starts_with('~') && k.len() == 7, "{k}");
    }
}
