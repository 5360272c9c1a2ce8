//! `/api/exchanges[/{vhost}[/{name}]]`: exchanges listed (paged, sorted, filtered:
//! `listing`), shown, declared (PUT), deleted (`?if-unused=true`), published to
//! (`/publish`, in `messages`) and their bindings (`/bindings/source`,
//! `/bindings/destination`). The default exchange is `amq.default` in paths and `""` in
//! JSON; it and the `amq.*` exchanges cannot be declared or deleted (401 "Access
//! refused.", as RabbitMQ answers the 403 its AMQP methods meet). Message rates
//! (`message_stats`) are not shown here yet.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

use super::bindings::{exchange_name, from_source, to_destination, BindingRow};
use super::listing::{params, ListQuery, Listed};
use super::tables::{arguments, Table};
use super::topology::{self, flag, permit, Kind};
use super::{body, created_or_changed, synced, Api, ApiError, ApiResult, Caller};
use crate::access::grants::Perm;
use crate::exchange::{Destination, Exchange};
use crate::vhost::{ExchangeSpec, VHost};

pub(super) fn routes() -> Router<Api> {
    Router::new()
        .route("/api/exchanges", get(list_all))
        .route("/api/exchanges/{vhost}", get(list_vhost))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(show).put(put).delete(remove),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/publish",
            post(super::messages::publish),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(source_bindings),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(destination_bindings),
        )
}

/// An exchange as the API writes it.
#[derive(Serialize)]
struct ExchangeRow {
    #[serde(serialize_with = "arguments_of")]
    arguments: Arc<Exchange>,
    auto_delete: bool,
    durable: bool,
    internal: bool,
    name: String,
    /// The policy that applies, if one does (RabbitMQ writes the field only then).
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(serialize_with = "shared_str")]
    vhost: Arc<str>,
}

fn shared_str<S: serde::Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v)
}

fn arguments_of<S: serde::Serializer>(e: &Arc<Exchange>, s: S) -> Result<S::Ok, S::Error> {
    Table(&e.arguments).serialize(s)
}

impl Listed for ExchangeRow {
    fn name(&self) -> &str {
        &self.name
    }
    fn vhost(&self) -> &str {
        &self.vhost
    }
}

fn row(vhost: &Arc<str>, e: &Arc<Exchange>) -> ExchangeRow {
    ExchangeRow {
        arguments: e.clone(),
        auto_delete: e.auto_delete,
        durable: e.durable,
        internal: e.internal,
        name: e.name.clone(),
        policy: e.policy().policy_name().map(str::to_string),
        kind: e.kind.as_str(),
        vhost: vhost.clone(),
    }
}

fn rows_of(v: &VHost) -> Vec<ExchangeRow> {
    let name: Arc<str> = Arc::from(v.name.as_str());
    v.exchanges().iter().map(|e| row(&name, e)).collect()
}

async fn list_all(c: Caller, RawQuery(query): RawQuery) -> ApiResult<Response> {
    let list = ListQuery::parse(query.as_deref())?;
    let mut rows = Vec::new();
    for v in c.broker.vhosts() {
        if c.require_vhost(&v.name).is_ok() {
            rows.extend(rows_of(&v));
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
    list.respond(rows_of(&v))
}

fn exchange(c: &Caller, vhost: &str, name: &str) -> ApiResult<(Arc<VHost>, Arc<Exchange>)> {
    let v = topology::vhost(c, vhost)?;
    let e = v
        .exchange(exchange_name(name))
        .ok_or_else(ApiError::not_found)?;
    Ok((v, e))
}

async fn show(
    c: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<ExchangeRow>> {
    let (v, e) = exchange(&c, &vhost, &name)?;
    Ok(Json(row(&Arc::from(v.name.as_str()), &e)))
}

async fn put(
    c: Caller,
    Path((vhost, name)): Path<(String, String)>,
    raw: Bytes,
) -> ApiResult<StatusCode> {
    let m = body(&raw)?;
    let v = topology::vhost(&c, &vhost)?;
    let name = exchange_name(&name);
    let kind = match m.get("type") {
        None | Some(Value::Null) => "direct",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ApiError::bad_request("type must be a string")),
    };
    let args = arguments(&m)?;
    if !name.is_empty() {
        permit(&c, &v, Perm::Configure, Kind::Exchange, name)?;
        if let Some(ae) = crate::args::get_str(&args, "alternate-exchange") {
            let ae = String::from_utf8_lossy(ae).into_owned();
            permit(&c, &v, Perm::Read, Kind::Exchange, name)?;
            permit(&c, &v, Perm::Write, Kind::Exchange, &ae)?;
        }
    }
    let existed = v.exchange(name).is_some();
    let spec = ExchangeSpec {
        name,
        kind,
        passive: false,
        durable: flag(&m, "durable", false)?,
        auto_delete: flag(&m, "auto_delete", false)?,
        internal: flag(&m, "internal", false)?,
        arguments: args,
    };
    let e = v.declare_exchange(spec).map_err(topology::amqp)?;
    if !existed && e.durable {
        synced(&c.broker).await?;
    }
    Ok(created_or_changed(!existed))
}

async fn remove(
    c: Caller,
    Path((vhost, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<StatusCode> {
    let if_unused = params(query.as_deref())
        .get("if-unused")
        .is_some_and(|v| v == "true");
    let v = topology::vhost(&c, &vhost)?;
    let name = exchange_name(&name);
    // The default and amq.* exchanges are refused before permissions (as over AMQP).
    if !name.is_empty() && !name.starts_with("amq.") {
        permit(&c, &v, Perm::Configure, Kind::Exchange, name)?;
        if v.exchange(name).is_none() {
            return Err(ApiError::not_found());
        }
    }
    let durable = v.exchange(name).is_some_and(|e| e.durable);
    v.delete_exchange(name, if_unused).map_err(topology::amqp)?;
    if durable {
        synced(&c.broker).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn source_bindings(
    c: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<BindingRow>>> {
    let (v, e) = exchange(&c, &vhost, &name)?;
    Ok(Json(from_source(&v, &e)))
}

async fn destination_bindings(
    c: Caller,
    Path((vhost, name)): Path<(String, String)>,
) -> ApiResult<Json<Vec<BindingRow>>> {
    let (v, e) = exchange(&c, &vhost, &name)?;
    Ok(Json(to_destination(&v, &Destination::Exchange(e))))
}
