//! Metric names (constants, used where emitted and where tests and dashboards read them) and
//! the Prometheus exporter. Counters are cheap atomics; label sets stay bounded.

use std::net::SocketAddr;

pub const CONNECTIONS_OPENED: &str = "warren_connections_opened_total";
pub const CONNECTIONS_CLOSED: &str = "warren_connections_closed_total";
pub const CHANNELS_OPENED: &str = "warren_channels_opened_total";
pub const MESSAGES_PUBLISHED: &str = "warren_messages_published_total";
pub const MESSAGES_UNROUTED: &str = "warren_messages_unroutable_total";
pub const MESSAGES_DELIVERED: &str = "warren_messages_delivered_total";
pub const MESSAGES_ACKED: &str = "warren_messages_acknowledged_total";
pub const MESSAGES_REDELIVERED: &str = "warren_messages_redelivered_total";
/// Seconds per store commit (apply + sync), a histogram.
pub const STORE_FLUSH_SECONDS: &str = "warren_store_flush_seconds";
/// Ops (message writes, deletes, definitions) the store writer committed.
pub const STORE_OPS: &str = "warren_store_ops_total";

/// Starts the HTTP exporter (`GET /metrics`) on `addr`.
pub fn install(addr: SocketAddr) -> Result<(), String> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| e.to_string())?;
    for name in [
        CONNECTIONS_OPENED,
        CONNECTIONS_CLOSED,
        CHANNELS_OPENED,
        MESSAGES_PUBLISHED,
        MESSAGES_UNROUTED,
        MESSAGES_DELIVERED,
        MESSAGES_ACKED,
        MESSAGES_REDELIVERED,
    ] {
        metrics::describe_counter!(name, name);
        // Registered at zero so the series exist (and dashboards draw) before any traffic.
        metrics::counter!(name).absolute(0);
    }
    Ok(())
}
