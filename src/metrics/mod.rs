//! Metrics: names (RabbitMQ's `rabbitmq_prometheus` names where a counterpart exists, Warren's
//! own under `warren_`), the per-connection tally flushed once per batch, and the exporter.
//!
//! Counters live in the `metrics` crate's registry (metrics-exporter-prometheus). On the hot
//! path nothing touches it: a connection counts in plain integers ([`Tally`]) and adds them
//! to the registry once per batch. Gauges (connections, queues, depths, memory, disk) are
//! computed when scraped ([`scrape`]), so they cost nothing between scrapes.

pub mod http;
pub mod scrape;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub const CONNECTIONS_OPENED: &str = "rabbitmq_connections_opened_total";
pub const CONNECTIONS_CLOSED: &str = "rabbitmq_connections_closed_total";
pub const CHANNELS_OPENED: &str = "rabbitmq_channels_opened_total";
pub const CHANNELS_CLOSED: &str = "rabbitmq_channels_closed_total";
pub const QUEUES_DECLARED: &str = "rabbitmq_queues_declared_total";
pub const QUEUES_CREATED: &str = "rabbitmq_queues_created_total";
pub const QUEUES_DELETED: &str = "rabbitmq_queues_deleted_total";
pub const RECEIVED: &str = "rabbitmq_global_messages_received_total";
pub const RECEIVED_CONFIRM: &str = "rabbitmq_global_messages_received_confirm_total";
pub const ROUTED: &str = "rabbitmq_global_messages_routed_total";
pub const UNROUTABLE_DROPPED: &str = "rabbitmq_global_messages_unroutable_dropped_total";
pub const UNROUTABLE_RETURNED: &str = "rabbitmq_global_messages_unroutable_returned_total";
pub const CONFIRMED: &str = "rabbitmq_global_messages_confirmed_total";
pub const DELIVERED: &str = "rabbitmq_global_messages_delivered_total";
pub const DELIVERED_CONSUME_AUTO_ACK: &str =
    "rabbitmq_global_messages_delivered_consume_auto_ack_total";
pub const DELIVERED_CONSUME_MANUAL_ACK: &str =
    "rabbitmq_global_messages_delivered_consume_manual_ack_total";
pub const DELIVERED_GET_AUTO_ACK: &str = "rabbitmq_global_messages_delivered_get_auto_ack_total";
pub const DELIVERED_GET_MANUAL_ACK: &str =
    "rabbitmq_global_messages_delivered_get_manual_ack_total";
pub const ACKNOWLEDGED: &str = "rabbitmq_global_messages_acknowledged_total";
pub const REDELIVERED: &str = "rabbitmq_global_messages_redelivered_total";
/// Dead-lettered messages, by reason (RabbitMQ names each reason's counter).
pub const DEAD_LETTERED: [(&str, &str); 4] = [
    (
        "rejected",
        "rabbitmq_global_messages_dead_lettered_rejected_total",
    ),
    (
        "expired",
        "rabbitmq_global_messages_dead_lettered_expired_total",
    ),
    (
        "maxlen",
        "rabbitmq_global_messages_dead_lettered_maxlen_total",
    ),
    (
        "delivery_limit",
        "rabbitmq_global_messages_dead_lettered_delivery_limit_total",
    ),
];
/// Seconds from a batch's persistent publishes to their confirms being released (the store
/// sync they wait for), a histogram.
pub const CONFIRM_LATENCY_SECONDS: &str = "warren_confirm_latency_seconds";
/// Seconds per store commit (apply + sync), a histogram.
pub const STORE_FLUSH_SECONDS: &str = "warren_store_flush_seconds";
/// Ops (message writes, deletes, definitions) the store writer committed.
pub const STORE_OPS: &str = "warren_store_ops_total";

const COUNTERS: &[&str] = &[
    CONNECTIONS_OPENED,
    CONNECTIONS_CLOSED,
    CHANNELS_OPENED,
    CHANNELS_CLOSED,
    QUEUES_DECLARED,
    QUEUES_CREATED,
    QUEUES_DELETED,
    RECEIVED,
    RECEIVED_CONFIRM,
    ROUTED,
    UNROUTABLE_DROPPED,
    UNROUTABLE_RETURNED,
    CONFIRMED,
    DELIVERED,
    DELIVERED_CONSUME_AUTO_ACK,
    DELIVERED_CONSUME_MANUAL_ACK,
    DELIVERED_GET_AUTO_ACK,
    DELIVERED_GET_MANUAL_ACK,
    ACKNOWLEDGED,
    REDELIVERED,
    STORE_OPS,
];

/// The dead-letter counter for a reason.
pub fn dead_lettered(reason: &str) -> &'static str {
    DEAD_LETTERED
        .iter()
        .find(|(r, _)| *r == reason)
        .map_or(DEAD_LETTERED[0].1, |(_, n)| n)
}

/// The process's recorder (the `metrics` registry is global: installed once, even when a
/// test process starts several brokers).
pub fn recorder() -> Result<&'static PrometheusHandle, String> {
    static HANDLE: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0,
                ])
                .map_err(|e| e.to_string())?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
            for name in COUNTERS
                .iter()
                .copied()
                .chain(DEAD_LETTERED.iter().map(|(_, n)| *n))
            {
                metrics::describe_counter!(name, name);
                // Registered at zero so the series exist (and dashboards draw) before traffic.
                metrics::counter!(name).absolute(0);
            }
            Ok(handle)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// What a connection counted since its last flush (plain integers: no atomics, no lookups).
#[derive(Default)]
pub struct Tally {
    pub received: u64,
    pub received_confirm: u64,
    pub routed: u64,
    pub unroutable_dropped: u64,
    pub unroutable_returned: u64,
    pub confirmed: u64,
    pub consume_auto_ack: u64,
    pub consume_manual_ack: u64,
    pub get_auto_ack: u64,
    pub get_manual_ack: u64,
    pub acknowledged: u64,
    pub redelivered: u64,
    pub channels_opened: u64,
    pub channels_closed: u64,
}

/// Handles on the registry's counters, looked up once (per connection) so that a flush is a
/// few atomic adds, not a hash lookup per counter.
pub struct Counters {
    handles: [metrics::Counter; 15],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            handles: [
                RECEIVED,
                RECEIVED_CONFIRM,
                ROUTED,
                UNROUTABLE_DROPPED,
                UNROUTABLE_RETURNED,
                CONFIRMED,
                DELIVERED,
                DELIVERED_CONSUME_AUTO_ACK,
                DELIVERED_CONSUME_MANUAL_ACK,
                DELIVERED_GET_AUTO_ACK,
                DELIVERED_GET_MANUAL_ACK,
                ACKNOWLEDGED,
                REDELIVERED,
                CHANNELS_OPENED,
                CHANNELS_CLOSED,
            ]
            .map(|name| metrics::counter!(name)),
        }
    }
}

impl Tally {
    /// Adds the counts to the registry and starts again from zero.
    pub fn flush(&mut self, to: &Counters) {
        let t = std::mem::take(self);
        let delivered =
            t.consume_auto_ack + t.consume_manual_ack + t.get_auto_ack + t.get_manual_ack;
        let counts = [
            t.received,
            t.received_confirm,
            t.routed,
            t.unroutable_dropped,
            t.unroutable_returned,
            t.confirmed,
            delivered,
            t.consume_auto_ack,
            t.consume_manual_ack,
            t.get_auto_ack,
            t.get_manual_ack,
            t.acknowledged,
            t.redelivered,
            t.channels_opened,
            t.channels_closed,
        ];
        for (c, n) in to.handles.iter().zip(counts) {
            if n > 0 {
                c.increment(n);
            }
        }
    }
}
