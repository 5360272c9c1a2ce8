//! Warren: an AMQP 0-9-1 message broker, wire-compatible with RabbitMQ.
//!
//! Module map (see ARCHITECTURE.md for the invariants):
//! - [`config`]: settings from flags, environment and a TOML file.
//! - [`alarms`]: the memory and disk alarms that block publishers.
//! - [`server`]: listeners, the accept loop, graceful shutdown.
//! - [`broker`]: the process-wide state: users, vhosts, id generation.
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

pub mod alarms;
pub mod args;
pub mod broker;
pub mod config;
pub mod connection;
pub mod error;
pub mod exchange;
pub mod http;
pub mod message;
pub mod metrics;
pub mod names;
pub mod queue;
pub mod server;
pub mod store;
pub mod vhost;
