//! The `warren` binary as an operator runs it: flags and environment, the metrics endpoint,
//! and SIGTERM closing every connection with 320 CONNECTION_FORCED before exiting cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::child::{free_port, http_get, run_binary, said, ChildBroker, Spawn};
use support::raw::{close_ok, Raw};

/// A broker with its metrics endpoint on.
async fn spawn_broker() -> ChildBroker {
    ChildBroker::in_temp_dir(Spawn {
        metrics: true,
        ..Spawn::default()
    })
    .await
}

#[tokio::test]
async fn sigterm_closes_connections_with_320_and_exits_cleanly() {
    let mut b = spawn_broker().await;
    let mut r1 = Raw::login(b.addr()).await;
    let mut r2 = Raw::login(b.addr()).await;
    b.sigterm();
    for r in [&mut r1, &mut r2] {
        let c = r.expect_close_frame().await;
        assert_eq!(c.reply_code, 320, "{c:?}");
        assert!(
            c.reply_text.as_str().starts_with("CONNECTION_FORCED"),
            "{c:?}"
        );
        r.send(&close_ok()).await;
    }
    let code = b.wait_exit(Duration::from_secs(10));
    assert!(code.success(), "exit status {code}");
}

#[tokio::test]
async fn metrics_endpoint_counts_connections() {
    let b = spawn_broker().await;
    let _r = Raw::login(b.addr()).await;
    let body = http_get(b.metrics(), "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let name = warren::metrics::Counter::ConnectionsOpened.name();
    let n = metric(&body, name);
    assert!(n >= 1.0, "{name} {n}");
}

/// `warren` with `args` on `data`: it must exit with `code`, its output saying each of
/// `says` and no panic. `case` names the case in a failure.
fn refuses(
    case: &str,
    data: &std::path::Path,
    args: &[&str],
    code: i32,
    says: &[&str],
) -> std::process::Output {
    let out = run_binary(data, args);
    let err = said(&out);
    assert_eq!(out.status.code(), Some(code), "{case}: {err}");
    for s in says {
        assert!(err.contains(s), "{case}: no {s:?} in: {err}");
    }
    assert!(!err.contains("panicked"), "{case}: {err}");
    out
}

#[test]
fn bad_listen_address_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = refuses(
        "--listen not-an-address",
        dir.path(),
        &listen_args("not-an-address"),
        2,
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad listen address"), "{err}");
}

/// A free port to listen on, without metrics, for a broker that must refuse to start.
fn listen_args(port: &str) -> [&str; 4] {
    ["--listen", port, "--metrics-listen", "off"]
}

#[test]
fn a_damaged_data_directory_is_a_clear_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let sled = dir.path().join("sled");
    std::fs::create_dir_all(&sled).unwrap();
    std::fs::write(sled.join("conf"), b"\xff\xfe not a sled config \x00\x01").unwrap();
    std::fs::write(sled.join("db"), vec![0xA5u8; 4096]).unwrap();
    let port = format!("127.0.0.1:{}", free_port());
    refuses(
        "a damaged sled directory",
        dir.path(),
        &listen_args(&port),
        1,
        &[
            "cannot open the data directory",
            &sled.display().to_string(),
        ],
    );
}

#[test]
fn a_data_directory_of_another_store_format_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let sled_dir = dir.path().join("sled");
    {
        // What Warren's first store format left: records, and no format stamp.
        let db = sled::open(&sled_dir).unwrap();
        db.insert(b"q\x01/\x06orders", &b"\0\0\0\0\0\0\0\x01\0\0\0\0\0"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let port = format!("127.0.0.1:{}", free_port());
    refuses(
        "a store of the first format",
        dir.path(),
        &listen_args(&port),
        1,
        &["another version of Warren", &sled_dir.display().to_string()],
    );
}

/// The value of the first sample of `name` (exact name, any labels) in a scrape.
fn metric(body: &str, name: &str) -> f64 {
    support::child::metric(body, name).unwrap_or_else(|| panic!("no {name} in the scrape:\n{body}"))
}

/// Publish 100, consume and ack 60, get 10, publish 5 unroutable: the counters and gauges on
/// /metrics and /metrics/per-object say exactly that (RabbitMQ's names).
#[tokio::test]
async fn metrics_count_what_happened() {
    use lapin::options::*;
    use lapin::types::FieldTable;
    use lapin::BasicProperties;

    let b = spawn_broker().await;
    let conn = lapin::Connection::connect(&b.uri(), lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(
        "m".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let publish = |key: &'static str| {
        ch.basic_publish(
            "amq.direct".into(),
            key.into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
    };
    support::bind(&ch, "m", "amq.direct", "m").await;
    for _ in 0..100 {
        assert!(publish("m").await.unwrap().await.unwrap().is_ack());
    }
    for _ in 0..5 {
        assert!(publish("nowhere").await.unwrap().await.unwrap().is_ack());
    }
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(60, BasicQosOptions::default()).await.unwrap();
    let mut consumer = support::consume(&cch, "m", "c", false).await;
    use futures_lite::StreamExt;
    // Prefetch 60 and no ack before all 60 arrived: exactly 60 are delivered.
    let mut last = None;
    for _ in 0..60 {
        last = Some(consumer.next().await.unwrap().unwrap());
    }
    cch.basic_cancel("c".into(), BasicCancelOptions::default())
        .await
        .unwrap();
    last.unwrap()
        .ack(BasicAckOptions { multiple: true })
        .await
        .unwrap();
    for _ in 0..10 {
        ch.basic_get("m".into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
            .unwrap();
    }
    // A round trip on each channel: everything before it was handled (and counted).
    for c in [&ch, &cch] {
        support::declare_passive(c, "m").await.unwrap();
    }
    let body = http_get(b.metrics(), "/metrics").await;
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    for (name, expected) in [
        ("rabbitmq_global_messages_received_total", 105.0),
        ("rabbitmq_global_messages_received_confirm_total", 105.0),
        ("rabbitmq_global_messages_routed_total", 100.0),
        ("rabbitmq_global_messages_unroutable_dropped_total", 5.0),
        ("rabbitmq_global_messages_unroutable_returned_total", 0.0),
        ("rabbitmq_global_messages_confirmed_total", 105.0),
        ("rabbitmq_global_messages_delivered_total", 70.0),
        (
            "rabbitmq_global_messages_delivered_consume_manual_ack_total",
            60.0,
        ),
        (
            "rabbitmq_global_messages_delivered_get_auto_ack_total",
            10.0,
        ),
        ("rabbitmq_global_messages_acknowledged_total", 60.0),
        ("rabbitmq_connections", 1.0),
        ("rabbitmq_channels", 2.0),
        ("rabbitmq_queues", 1.0),
        ("rabbitmq_consumers", 0.0),
        ("rabbitmq_queue_messages_ready", 30.0),
        ("rabbitmq_queue_messages_unacked", 0.0),
        ("rabbitmq_queues_created_total", 1.0),
        ("rabbitmq_identity_info", 1.0),
        ("rabbitmq_build_info", 1.0),
    ] {
        assert_eq!(metric(&body, name), expected, "{name}");
    }
    assert!(metric(&body, "rabbitmq_process_resident_memory_bytes") > 1e6);
    assert!(metric(&body, "rabbitmq_disk_space_available_bytes") > 0.0);
    let per = http_get(b.metrics(), "/metrics/per-object").await;
    assert!(
        per.contains("rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"m\"} 30"),
        "{per}"
    );
    assert!(http_get(b.metrics(), "/nope")
        .await
        .starts_with("HTTP/1.1 404"));
    // A malformed request gets an answer, not a dead endpoint.
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", b.metrics()))
            .await
            .unwrap();
        s.write_all(&[0xff; 20_000]).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    }
    assert!(http_get(b.metrics(), "/metrics")
        .await
        .starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let mut b = ChildBroker::in_temp_dir(Spawn {
        args: &["--log-format", "json"],
        ..Spawn::default()
    })
    .await;
    b.sigterm();
    b.wait_exit(Duration::from_secs(20));
    let text = std::fs::read_to_string(b.log()).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{text}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v.get("level").is_some() && v.get("fields").is_some(), "{l}");
    }
    assert!(text.contains("listening for AMQP 0-9-1"), "{text}");
}
