//! `/api/queues[/{vhost}[/{name}]]`: queues listed (paged, sorted, filtered: `listing`),
//! shown, declared (PUT), deleted (`?if-empty=true&if-unused=true`), purged
//! (`/contents`), read (`/get`) and their bindings (`/bindings`). Writes need the
//! caller's AMQP permission as queue.declare, queue.delete, queue.purge and basic.get do.
//!
//! A queue's counts come from [`Queue::snapshot`]: one short lock, no disk I/O. Message
//! rates (`message_stats`) are not shown here yet.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

use super::bindings::{to_destination, BindingRow};
use super::listing::{params, ListQuery, Listed};
use super::rates::Rates;
use super::tables::{arguments, Table};
use super::topology::{self, flag, permit, Kind, HTTP_CONNECTION};
use super::{body, created_or_changed, synced, Api, ApiError, ApiResult, Caller};
use crate::access::grants::Perm;
use crate::exchange::Destination;
use crate::queue::{Queue, Snapshot};
use crate::vhost::{QueueSpec, VHost};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/queues", get(list_all))
        .route("/api/queues/{vhost}", get(list_vhost))
        .route(
            "/api/queues/{vhost}/{name}",
            get(show).put(put).delete(remove),
        )
        .route("/api/queues/{vhost}/{name}/contents", delete(purge))
        .route("/api/queues/{vhost}/{name}/get", post(super::messages::get))
        .route("/api/queues/{vhost}/{name}/bindings", get(bindings))
}

/// A queue's policy fields: the policy and operator policy that apply, and what they give
/// it merged (`effective_policy_definition`).
#[derive(Serialize)]
struct PolicyFields {
    policy: Option<String>,
    operator_policy: Option<String>,
    effective_policy_definition: Value,
}

fn policy_fields(q: &Queue) -> PolicyFields {
    let a = q.policy();
    PolicyFields {
        policy: a.policy_name().map(str::to_string),
        operator_policy: a.operator_name().map(str::to_string),
        effective_policy_definition: a.definition(),
    }
}

/// A queue as the API writes it (RabbitMQ 4.x's field names).
#[derive(Serialize)]
pub(super) struct QueueRow {
    #[serde(serialize_with = "arguments_of")]
    arguments: Arc<Queue>,
    auto_delete: bool,
    consumer_capacity: f64,
    consumer_utilisation: f64,
    consumers: usize,
    durable: bool,
    exclusive: bool,
    exclusive_consumer_tag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    idle_since: Option<String>,
    memory: usize,
    message_bytes: usize,
    message_bytes_ram: usize,
    message_bytes_ready: usize,
    message_bytes_unacknowledged: usize,
    messages: usize,
    messages_ready: usize,
    messages_unacknowledged: usize,
    /// Publishes, deliveries, gets and acks, with their rates (`rates.rs`).
    message_stats: Value,
    name: String,
    node: &'static str,
    #[serde(flatten)]
    policy: PolicyFields,
    state: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(serialize_with = "shared_str")]
    vhost: Arc<str>,
}

fn shared_str<S: serde::Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

fn arguments_of<S: serde::Serializer>(q: &Arc<Queue>, s: S) -> Result<S::Ok, S::Error> {
    Table(&q.arguments).serialize(s)
}

impl Listed for QueueRow {
    fn name(&self) -> &str {
        &self.name
    }
    fn vhost(&self) -> &str {
        &self.vhost
    }
}

/// What a queue costs in RAM, roughly: the struct and its lock, its consumers, and the
/// messages it holds in RAM (their bytes and a slot each).
fn memory(s: &Snapshot) -> usize {
    const QUEUE: usize = 1024;
    const CONSUMER: usize = 256;
    QUEUE + s.consumers * CONSUMER + s.ram_bytes
}

pub(super) fn row(vhost: &Arc<str>, q: &Arc<Queue>, rates: &Rates) -> QueueRow {
    let s = q.snapshot();
    // One consumer that can take messages is all RabbitMQ needs for 1.0; Warren does not
    // measure the share of time consumers were ready, so it says 1.0 when it has any.
    let capacity = if s.consumers > 0 { 1.0 } else { 0.0 };
    QueueRow {
        arguments: q.clone(),
        auto_delete: q.auto_delete,
        consumer_capacity: capacity,
        consumer_utilisation: capacity,
        consumers: s.consumers,
        durable: q.durable,
        exclusive: q.exclusive_owner.is_some(),
        exclusive_consumer_tag: s.exclusive_consumer_tag.clone(),
        idle_since: (s.consumers == 0).then(|| topology::timestamp(s.idle_for)),
        memory: memory(&s),
        message_bytes: s.ready_bytes,
        message_bytes_ram: s.ram_bytes,
        message_bytes_ready: s.ready_bytes,
        // Unacked messages' bytes are not counted by the queue.
        message_bytes_unacknowledged: 0,
        messages: s.ready + s.unacked,
        messages_ready: s.ready,
        messages_unacknowledged: s.unacked,
        message_stats: rates.queue_stats(q),
        name: q.name.clone(),
        node: topology::node(),
        policy: policy_fields(q),
        state: "running",
        kind: "classic",
        vhost: vhost.clone(),
    }
}

fn rows_of(v: &VHost, rates: &Rates) -> Vec<QueueRow> {
    let name: Arc<str> = Arc::from(v.name.as_str());
    v.queues().iter().map(|q| row(&name, q, rates)).collect()
}

async fn list_all(c: Caller, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let list = ListQuery::parse(query.as_deref())?;
    let mut rows = Vec::new();
    for v in c.broker.vhosts() {
        if c.require_vhost(&v.name).is_ok() {
            rows.extend(rows_of(&v, &c.rates));
        }
    }
    list.respond(rows)
}

async fn list_vhost(
    c: Caller,
    Path(vhost): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let list = ListQuery::parse(query.as_deref())?;
    let v = topology::vhost(&c, &vhost)?;
    list.respond(rows_of(&v, &c.rates))
}

/// The queue of a path, in a vhost the caller may see (404 if either is missing).
pub(super) fn queue(c: &Caller, vhost: &str, name: &str) -> ApiResult<(Arc<VHost>, Arc<Queue>)> {
    let v = topology::vhost(c, vhost)?;
    let q = v.queue(name).ok_or_else(ApiError::not_found)?;
    Ok((v, q))
}

async fn show(c: Caller, Path((vhost, name)): Path<(String, String)>) -> ApiResult<Json<QueueRow>> {
    let (v, q) = queue(&c, &vhost, &name)?;
    Ok(Json(row(&Arc::from(v.name.as_str()), &q, &c.rates)))
}

async fn put(
    c: Caller,
    Path((vhost, name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<StatusCode> {
    let m = body(&raw)?;
    let v = topology::vhost(&c, &vhost)?;
    let durable = flag(&m, "durable", false)?;
    let auto_delete = flag(&m, "auto_delete", false)?;
    let mut args = arguments(&m)?;
    // RabbitMQ 4.x takes the queue type beside the arguments too.
    if let Some(kind) = m.get("type").and_then(Value::as_str) {
        if crate::args::get(&args, "x-queue-type").is_none() {
            args.insert(
                "x-queue-type".into(),
                crate::args::from_json(&Value::from(kind)),
            );
        }
    }
    if name.starts_with("amq.") {
        return Err(topology::amqp(crate::error::AmqpError::access_refused(
            "reserved prefix 'amq.*'",
        )));
    }
    permit(&c, &v, Perm::Configure, Kind::Queue, &name)?;
    if let Some(dlx) = crate::args::get_str(&args, "x-dead-letter-exchange") {
        let dlx = String::from_utf8_lossy(dlx).into_owned();
        permit(&c, &v, Perm::Read, Kind::Queue, &name)?;
        permit(&c, &v, Perm::Write, Kind::Exchange, &dlx)?;
    }
    if let Some(max) = c.broker.vhost_queue_limit(&v.name) {
        if v.queue(&name).is_none() && v.queue_count() as u64 >= max {
            return Err(ApiError::bad_request(format!(
                "cannot declare queue '{name}': queue limit in vhost '{}' ({max}) is reached",
                v.name
            )));
        }
    }
    let spec = QueueSpec {
        name,
        durable,
        exclusive: false,
        auto_delete,
        arguments: args,
    };
    let (q, created) = v
        .declare_queue(spec, false, HTTP_CONNECTION)
        .map_err(topology::amqp)?;
    if created && q.durable {
        synced(&c.broker).await?;
    }
    Ok(created_or_changed(created))
}

async fn remove(
    c: Caller,
    Path((vhost, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<StatusCode> {
    let p = params(query.as_deref());
    let on = |k: &str| p.get(k).is_some_and(|v| v == "true");
    let v = topology::vhost(&c, &vhost)?;
    permit(&c, &v, Perm::Configure, Kind::Queue, &name)?;
    let q = v.queue(&name).ok_or_else(ApiError::not_found)?;
    q.check_exclusive(HTTP_CONNECTION).map_err(topology::amqp)?;
    let s = q.snapshot();
    if on("if-unused") && s.consumers > 0 {
        return Err(ApiError::bad_request(format!(
            "queue '{name}' in vhost '{}' in use",
            v.name
        )));
    }
    if on("if-empty") && s.ready > 0 {
        return Err(ApiError::bad_request(format!(
            "queue '{name}' in vhost '{}' not empty",
            v.name
        )));
    }
    if let Some(d) = v.delete_queue(&q) {
        for consumer in d.consumers {
            consumer.outbox.cancelled(consumer.channel, &consumer.tag);
        }
    }
    if q.durable {
        synced(&c.broker).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn purge(c: Caller, Path((vhost, name)): Path<(String, String)>) -> ApiResult<StatusCode> {
    let v = topology::vhost(&c, &vhost)?;
    permit(&c, &v, Perm::Read, Kind::Queue, &name)?;
    let q = v.queue(&name).ok_or_else(ApiError::not_found)?;
    q.check_exclusive(HTTP_CONNECTION).map_err(topology::amqp)?;
    q.purge();
    if q.durable {
        synced(&c.broker).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn bindings(
    c: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<BindingRow>>> {
    let (v, q) = queue(&c, &vhost, &name)?;
    Ok(Json(to_destination(&v, &Destination::Queue(q))))
}
