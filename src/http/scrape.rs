//! Gauges computed when Prometheus scrapes: broker-wide on `/metrics`, per queue on
//! `/metrics/per-object` (as RabbitMQ splits them, so that 100k queues don't weigh on every
//! scrape).

use std::fmt::Write;

use crate::broker::Broker;
use crate::metrics::gauge;

/// Appends `# TYPE` and one sample.
fn gauge(out: &mut String, name: &str, labels: &str, value: f64) {
    let _ = writeln!(out, "# TYPE {name} gauge");
    sample(out, name, labels, value);
}

fn sample(out: &mut String, name: &str, labels: &str, value: f64) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// A label value, escaped as the text format wants.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The broker-wide gauges, in Prometheus text format.
pub fn global(b: &Broker) -> String {
    let mut out = String::new();
    let (mut queues, mut consumers, mut ready, mut unacked) = (0u64, 0u64, 0u64, 0u64);
    let (mut ram, mut total) = (0u64, 0u64);
    for v in b.vhosts() {
        for q in v.queues() {
            queues += 1;
            consumers += q.consumer_count() as u64;
            ready += q.message_count() as u64;
            unacked += q.unacked_count() as u64;
            let (r, t) = q.ready_bytes();
            ram += r as u64;
            total += t as u64;
        }
    }
    gauge(
        &mut out,
        gauge::CONNECTIONS,
        "",
        b.connection_count() as f64,
    );
    gauge(&mut out, gauge::CHANNELS, "", b.channel_count() as f64);
    gauge(&mut out, gauge::CONSUMERS, "", consumers as f64);
    gauge(&mut out, gauge::QUEUES, "", queues as f64);
    gauge(&mut out, gauge::QUEUE_MESSAGES_READY, "", ready as f64);
    gauge(&mut out, gauge::QUEUE_MESSAGES_UNACKED, "", unacked as f64);
    gauge(
        &mut out,
        gauge::QUEUE_MESSAGES,
        "",
        (ready + unacked) as f64,
    );
    gauge(
        &mut out,
        gauge::RESIDENT_MEMORY,
        "",
        crate::alarms::resident_memory() as f64,
    );
    gauge(&mut out, gauge::OPEN_FDS, "", open_fds() as f64);
    let disk = fs2::available_space(&b.config.data_dir).unwrap_or(0);
    gauge(&mut out, gauge::DISK_AVAILABLE, "", disk as f64);
    let a = &b.alarms;
    gauge(&mut out, gauge::DISK_LIMIT, "", a.disk_limit() as f64);
    gauge(&mut out, gauge::MEMORY_LIMIT, "", a.memory_limit() as f64);
    gauge(
        &mut out,
        gauge::MEMORY_ALARM,
        "",
        f64::from(u8::from(a.memory_alarm())),
    );
    gauge(
        &mut out,
        gauge::DISK_ALARM,
        "",
        f64::from(u8::from(a.disk_alarm())),
    );
    let node = format!("warren@{}", hostname());
    gauge(
        &mut out,
        gauge::IDENTITY,
        &format!(
            "rabbitmq_node=\"{n}\",rabbitmq_cluster=\"{n}\",rabbitmq_cluster_permanent_id=\"{n}\"",
            n = esc(&node)
        ),
        1.0,
    );
    gauge(
        &mut out,
        gauge::BUILD,
        &format!(
            "rabbitmq_version=\"{v}\",prometheus_plugin_version=\"{v}\",prometheus_client_version=\"metrics-exporter-prometheus\",erlang_version=\"none\",product=\"warren\"",
            v = env!("CARGO_PKG_VERSION")
        ),
        1.0,
    );
    gauge(&mut out, gauge::QUEUE_BYTES_RAM, "", ram as f64);
    gauge(
        &mut out,
        gauge::QUEUE_BYTES_DISK,
        "",
        total.saturating_sub(ram) as f64,
    );
    gauge(
        &mut out,
        gauge::STORE_DISK,
        "",
        b.store.size_on_disk() as f64,
    );
    gauge(&mut out, gauge::STORE_BACKLOG, "", b.store.backlog() as f64);
    out
}

/// Per-queue gauges (labels `vhost`, `queue`).
pub fn per_object(b: &Broker) -> String {
    let names = [
        gauge::QUEUE_MESSAGES_READY,
        gauge::QUEUE_MESSAGES_UNACKED,
        gauge::QUEUE_MESSAGES,
        gauge::QUEUE_CONSUMERS,
        gauge::QUEUE_BYTES,
        gauge::QUEUE_BYTES_RAM,
    ];
    let mut rows: Vec<(String, [f64; 6])> = Vec::new();
    for v in b.vhosts() {
        for q in v.queues() {
            let (ready, unacked) = (q.message_count() as f64, q.unacked_count() as f64);
            let (ram, total) = q.ready_bytes();
            rows.push((
                format!("vhost=\"{}\",queue=\"{}\"", esc(&v.name), esc(&q.name)),
                [
                    ready,
                    unacked,
                    ready + unacked,
                    q.consumer_count() as f64,
                    total as f64,
                    ram as f64,
                ],
            ));
        }
    }
    let mut out = String::new();
    for (i, name) in names.iter().enumerate() {
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, values) in &rows {
            sample(&mut out, name, labels, values[i]);
        }
    }
    out
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}
