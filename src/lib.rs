//! Warren: an AMQP 0-9-1 message broker, wire-compatible with RabbitMQ.
//!
//! Module map (see ARCHITECTURE.md for the invariants):
//! - [`config`]: settings from flags, environment and a TOML file.
//! - [`alarms`]: the memory and disk alarms that block publishers.
//! - [`server`]: listeners, the accept loop, graceful shutdown.
//! - [`broker`]: the process-wide state: vhosts, the access model and its administration,
//!   definitions import, sessions, id generation.
//! - [`vhost`]: owns exchanges, queues and bindings; routes a message to its queues.
//! - [`exchange`]: the exchange and one router per type (direct, fanout, topic, headers).
//! - [`queue`]: a queue (ready messages in RAM up to a budget, then on disk: [`queue::ready`]),
//!   its consumers and their credit, and dispatch.
//! - [`store`]: sled: definitions, persistent and paged messages, the group-commit writer,
//!   recovery at start.
//! - [`connection`]: one task per client connection: handshake, channels, methods, writer.
//! - [`message`]: a published message, shared (`Arc`) by every queue it reaches.
//! - [`error`]: AMQP errors, hard (connection) and soft (channel).
//! - [`metrics`]: metric names, the per-connection tally, the recorder.
//! - [`http`]: the HTTP endpoint (`/metrics`), gauges computed when scraped.
//! - [`offload`]: long synchronous work kept from stalling a runtime worker's other tasks.
//! - [`failed_logins`]: failed logins per address, and how long a refusal waits.
//! - [`password`]: password hashes as RabbitMQ makes them (users log in with their hash).
//! - [`access`]: users, vhosts' limits, permissions and topic permissions; one user's
//!   grants in a vhost.
//! - [`policy`]: policies and operator policies, and what applies to a queue or exchange.
//! - [`tls`]: AMQPS: PEM files to a rustls config, its reload holder, certificate login names.
//! - [`ctl`]: `warren ctl`, a rabbitmqctl-compatible client of the management HTTP API.
//!
//! Everything but `config`, `store` and what they use needs the default `server` feature; the
//! fuzz targets (fuzz/) build without it, and what only the server calls is unused there.
#![cfg_attr(not(feature = "server"), allow(dead_code, unused_imports))]

#[cfg(feature = "server")]
pub(crate) mod access;
pub(crate) mod alarms;
pub(crate) mod args;
#[cfg(feature = "server")]
pub(crate) mod broker;
pub mod config;
#[cfg(feature = "server")]
pub(crate) mod connection;
#[cfg(feature = "server")]
pub mod ctl;
#[cfg(feature = "server")]
pub(crate) mod error;
#[cfg(feature = "server")]
pub(crate) mod exchange;
#[cfg(feature = "server")]
pub(crate) mod failed_logins;
#[cfg(feature = "server")]
pub(crate) mod http;
pub(crate) mod message;
pub mod metrics;
#[cfg(feature = "server")]
pub(crate) mod names;
#[cfg(feature = "server")]
pub(crate) mod offload;
#[cfg(feature = "server")]
pub mod password;
#[cfg(feature = "server")]
pub(crate) mod policy;
#[cfg(feature = "server")]
pub(crate) mod queue;
#[cfg(feature = "server")]
pub mod server;
pub mod store;
#[cfg(feature = "server")]
pub mod tls;
#[cfg(feature = "server")]
pub(crate) mod vhost;
