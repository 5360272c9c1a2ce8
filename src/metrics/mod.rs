//! Metrics: the names ([`names`]: RabbitMQ's `rabbitmq_prometheus` names where a counterpart
//! exists, Warren's own under `warren_`), the per-connection tally flushed once per batch, and
//! the process's recorder. The HTTP endpoint that serves them is in `http`.
//!
//! Counters live in the `metrics` crate's registry (metrics-exporter-prometheus). On the hot
//! path nothing touches it: a connection counts in plain integers ([`Tally`]) and adds them
//! to the registry once per batch. Gauges (connections, queues, depths, memory, disk) are
//! computed when scraped, so they cost nothing between scrapes.

pub mod message_stats;
pub mod names;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

pub use names::{
    count, gauge, Counter, Counters, Tally, CONFIRM_LATENCY_SECONDS, STORE_FLUSH_SECONDS,
};

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
            for c in Counter::ALL {
                metrics::describe_counter!(c.name(), c.name());
                // Registered at zero so the series exist (and dashboards draw) before traffic.
                metrics::counter!(c.name()).absolute(0);
            }
            Ok(handle)
        })
        .as_ref()
        .map_err(Clone::clone)
}
