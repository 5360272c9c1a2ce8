//! The management HTTP API (`/api`), as RabbitMQ's management plugin serves it on 15672:
//! the same paths, JSON, status codes and authorisation rules, so rabbitmqadmin, scripts
//! and monitoring written for RabbitMQ work against Warren. It serves the access model
//! (`/api/whoami`, users, vhosts, permissions, topic permissions, limits) and the topology
//! (`/api/exchanges`, `/api/queues`, `/api/bindings`, publish and get).
//!
//! Every request logs in with HTTP basic auth against Warren's users (a refused login waits
//! as an AMQP one does: `failed_logins`). A user needs one of the tags `management`,
//! `policymaker`, `monitoring` or `administrator` (else 401 "Not management user"); the
//! endpoints that change or list users and permissions need `administrator` (else 401
//! "Not administrator user", RabbitMQ's 401 rather than 403). Errors are JSON
//! `{"error": ..., "reason": ...}`.
//!
//! The topology's writes need the caller's AMQP permissions, checked as the AMQP methods
//! check them (RabbitMQ's plugin runs them as AMQP methods for the user), and a management
//! user sees only the vhosts it has permissions on.
//!
//! It also serves the node's status: `/api/overview` (`overview`), `/api/nodes` (`nodes`),
//! connections (`connections`, listed from the broker's sessions table and closed through
//! it), channels and consumers (`channels`, asked of each connection), the health checks,
//! aliveness test, cluster name, extensions and feature flags (`health`), and message
//! rates (`rates`: counts sampled every `management_sample_interval`, used by the
//! overview and the queue and vhost endpoints).
//!
//! Files: this one (listener, router, login, errors), `users`, `vhosts`, `permissions`
//! (and topic permissions), `limits`, `policies` (and operator policies), `definitions`
//! (export, import); `exchanges`, `queues`, `bindings`, `messages` (publish and get),
//! `listing` (paging, sorting, filtering and columns of list endpoints), `tables` (AMQP
//! tables and properties as JSON), `topology` (what those share: vhost lookup, permission
//! checks, AMQP errors as HTTP answers); and the status files above.

mod bindings;
mod channels;
mod connections;
mod definitions;
mod exchanges;
mod health;
mod limits;
mod listing;
mod messages;
mod nodes;
mod overview;
mod permissions;
mod policies;
mod queues;
pub mod rates;
mod tables;
mod topology;
mod users;
mod vhosts;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::json;
use tracing::{info, warn};

use crate::access::{User, ADMINISTRATOR, MANAGEMENT, MONITORING, POLICYMAKER};
use crate::broker::{AdminError, Broker};

/// Request bodies larger than this are refused (definitions go through the file).
const MAX_BODY: usize = 1 << 20;

#[derive(Clone)]
struct Api {
    broker: Weak<Broker>,
    rates: Arc<rates::Rates>,
    /// The broker's listeners, this API's included (overview, health checks).
    listeners: Arc<Vec<Listener>>,
    /// `/api/cluster-name`: RabbitMQ's defaults to the node's name (kept in memory).
    cluster_name: Arc<parking_lot::RwLock<String>>,
}

/// A listener as the overview names it (`protocol`: "amqp", "amqp/ssl", "http").
#[derive(Clone, Debug)]
pub struct Listener {
    pub protocol: &'static str,
    pub addr: SocketAddr,
}

/// Binds `addr` and serves the API until the broker is gone; `listeners` are the AMQP
/// ones. Starts the rates' sampler.
pub async fn serve(
    addr: SocketAddr,
    broker: Weak<Broker>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    mut listeners: Vec<Listener>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    info!(addr = %local, "serving the management API on /api");
    listeners.push(Listener {
        protocol: "http",
        addr: local,
    });
    let interval = broker
        .upgrade()
        .map_or(std::time::Duration::from_secs(5), |b| {
            b.config.management_sample_interval
        });
    let rates = rates::Rates::new(interval);
    rates.start(broker.clone(), shutdown.clone());
    let app = router(Api {
        broker,
        rates,
        listeners: Arc::new(listeners),
        cluster_name: Arc::new(parking_lot::RwLock::new(nodes::node_name())),
    });
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, service)
            .with_graceful_shutdown(stop)
            .await
        {
            warn!("management API stopped: {e}");
        }
    });
    Ok(local)
}

fn router(api: Api) -> Router {
    Router::new()
        .route("/api/whoami", get(whoami))
        .merge(users::routes())
        .merge(vhosts::routes())
        .merge(permissions::routes())
        .merge(limits::routes())
        .merge(policies::routes())
        .merge(definitions::routes())
        .merge(exchanges::routes())
        .merge(queues::routes())
        .merge(bindings::routes())
        .merge(overview::routes())
        .merge(nodes::routes())
        .merge(connections::routes())
        .merge(channels::routes())
        .merge(health::routes())
        .fallback(|| async { ApiError::not_found() })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(api)
}

/// An error as RabbitMQ's API writes it.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    reason: String,
}

impl ApiError {
    fn new(status: StatusCode, error: &'static str, reason: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error,
            reason: reason.into(),
        }
    }

    pub fn not_found() -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "Object Not Found", "Not Found")
    }

    pub fn bad_request(reason: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", reason)
    }

    fn unauthorised(reason: &str) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "not_authorised", reason)
    }

    fn unavailable() -> ApiError {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the broker is stopping",
        )
    }
}

impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> ApiError {
        use crate::access::AccessError;
        match e {
            AdminError::Access(AccessError::NoSuchUser(_) | AccessError::NoSuchVhost(_)) => {
                ApiError::bad_request("vhost_or_user_not_found")
            }
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": self.error, "reason": self.reason}));
        if self.status == StatusCode::UNAUTHORIZED {
            let realm = [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"RabbitMQ Management\"",
            )];
            return (self.status, realm, body).into_response();
        }
        (self.status, body).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// The logged-in user of a request, with the broker.
pub struct Caller {
    pub broker: Arc<Broker>,
    pub user: Arc<User>,
    /// Message rates (see [`rates::Rates::queue_stats`]).
    pub rates: Arc<rates::Rates>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.user.has_tag(ADMINISTRATOR)
    }

    /// Whether the caller sees every vhost (administrator, monitoring).
    pub fn sees_all(&self) -> bool {
        self.is_admin() || self.user.has_tag(MONITORING)
    }

    pub fn require_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::unauthorised("Not administrator user"))
        }
    }

    /// Whether the caller may see `vhost`'s objects in a listing.
    pub fn sees_vhost(&self, vhost: &str) -> bool {
        self.sees_all() || self.broker.grants(&self.user.name, vhost).may_open()
    }

    /// A management user may look at a vhost it has permissions on (401 otherwise, as
    /// RabbitMQ answers).
    pub fn require_vhost(&self, vhost: &str) -> ApiResult<()> {
        if self.sees_all() || self.broker.grants(&self.user.name, vhost).may_open() {
            Ok(())
        } else {
            Err(ApiError::unauthorised("Not_Authorised"))
        }
    }
}

impl FromRequestParts<Api> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, api: &Api) -> Result<Caller, ApiError> {
        let broker = api.broker.upgrade().ok_or_else(ApiError::unavailable)?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        let Some((name, password)) = basic_auth(&parts.headers) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "not_authorized",
                "Login failed",
            ));
        };
        let ip = peer.unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        if broker.authenticate(&name, &password, ip).is_err() {
            let wait = broker.failed_logins.failed(ip, Instant::now());
            warn!(peer = %ip, user = ?name, "management API login refused");
            tokio::time::sleep(wait).await;
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "not_authorized",
                "Login failed",
            ));
        }
        let user = broker
            .read_access(|a| a.user(&name).cloned())
            .ok_or_else(|| {
                ApiError::new(StatusCode::UNAUTHORIZED, "not_authorized", "Login failed")
            })?;
        let management = [ADMINISTRATOR, MONITORING, POLICYMAKER, MANAGEMENT]
            .iter()
            .any(|t| user.has_tag(t));
        if !management {
            return Err(ApiError::unauthorised("Not management user"));
        }
        Ok(Caller {
            broker,
            user,
            rates: api.rates.clone(),
        })
    }
}

/// `Authorization: Basic base64(user:password)`.
fn basic_auth(h: &HeaderMap) -> Option<(String, String)> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v
        .strip_prefix("Basic ")
        .or_else(|| v.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

async fn whoami(c: Caller) -> Json<serde_json::Value> {
    Json(json!({"name": c.user.name, "tags": c.user.tags}))
}

/// A JSON body, read whatever its content type (RabbitMQ's API is lenient about it for
/// most endpoints, and curl users forget the header).
pub fn body(bytes: &[u8]) -> ApiResult<serde_json::Map<String, serde_json::Value>> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice(bytes) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("not a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("not JSON: {e}"))),
    }
}

/// A string field of a body, or `key_missing` as RabbitMQ names it.
pub fn field<'a>(
    m: &'a serde_json::Map<String, serde_json::Value>,
    key: &str,
) -> ApiResult<&'a str> {
    m.get(key)
        .and_then(|v| v.as_str())
        .ok_or_else(|| ApiError::bad_request(format!("[{{key_missing,{key}}}]")))
}

/// Makes what was changed durable before the answer (on a blocking thread: it waits for
/// the store's fsync).
pub async fn synced(broker: &Arc<Broker>) -> ApiResult<()> {
    let b = broker.clone();
    let ok = tokio::task::spawn_blocking(move || b.sync_store())
        .await
        .unwrap_or(false);
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "the store could not write the change",
        ))
    }
}

/// 201 for a created object, 204 for a changed one.
pub fn created_or_changed(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    }
}
