//! The `warren` binary as an operator runs it: flags and environment, the metrics endpoint,
//! and SIGTERM closing every connection with 320 CONNECTION_FORCED before exiting cleanly.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use amq_protocol::frame::{gen_frame, parse_frame, AMQPFrame, WriteContext};
use amq_protocol::protocol::{connection as conn, AMQPClass};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Broker {
    child: Child,
    port: u16,
    metrics_port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_broker() -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let metrics_port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .env("WARREN_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))
        .env("WARREN_DATA_DIR", dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "broker did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    Broker {
        child,
        port,
        metrics_port,
        _dir: dir,
    }
}

fn send(s: &mut TcpStream, frame: &AMQPFrame) {
    let (buf, _) = gen_frame(frame)(WriteContext::from(Vec::new()))
        .unwrap()
        .into_inner();
    s.write_all(&buf).unwrap();
}

/// Reads frames until one parses; `buf` keeps leftovers.
fn recv(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<AMQPFrame> {
    loop {
        if let Ok((rest, f)) = parse_frame(&buf[..]) {
            let used = buf.len() - rest.len();
            buf.drain(..used);
            return Some(f);
        }
        let mut chunk = [0u8; 4096];
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A raw AMQP client through connection.open-ok.
fn open_raw(port: u16) -> (TcpStream, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
    let mut buf = Vec::new();
    assert!(matches!(
        recv(&mut s, &mut buf),
        Some(AMQPFrame::Method(
            0,
            AMQPClass::Connection(conn::AMQPMethod::Start(_))
        ))
    ));
    let m = |c| AMQPFrame::Method(0, AMQPClass::Connection(c));
    send(
        &mut s,
        &m(conn::AMQPMethod::StartOk(conn::StartOk {
            client_properties: Default::default(),
            mechanism: "PLAIN".into(),
            response: "\0guest\0guest".into(),
            locale: "en_US".into(),
        })),
    );
    assert!(matches!(
        recv(&mut s, &mut buf),
        Some(AMQPFrame::Method(
            0,
            AMQPClass::Connection(conn::AMQPMethod::Tune(_))
        ))
    ));
    send(
        &mut s,
        &m(conn::AMQPMethod::TuneOk(conn::TuneOk {
            channel_max: 2047,
            frame_max: 131072,
            heartbeat: 0,
        })),
    );
    send(
        &mut s,
        &m(conn::AMQPMethod::Open(conn::Open {
            virtual_host: "/".into(),
        })),
    );
    assert!(matches!(
        recv(&mut s, &mut buf),
        Some(AMQPFrame::Method(
            0,
            AMQPClass::Connection(conn::AMQPMethod::OpenOk(_))
        ))
    ));
    (s, buf)
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn sigterm_closes_connections_with_320_and_exits_cleanly() {
    let mut b = spawn_broker();
    let (mut s1, mut buf1) = open_raw(b.port);
    let (mut s2, mut buf2) = open_raw(b.port);
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(b.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    for (s, buf) in [(&mut s1, &mut buf1), (&mut s2, &mut buf2)] {
        match recv(s, buf) {
            Some(AMQPFrame::Method(0, AMQPClass::Connection(conn::AMQPMethod::Close(c)))) => {
                assert_eq!(c.reply_code, 320);
                assert!(c.reply_text.as_str().starts_with("CONNECTION_FORCED"));
            }
            other => panic!("expected connection.close 320, got {other:?}"),
        }
        send(
            s,
            &AMQPFrame::Method(
                0,
                AMQPClass::Connection(conn::AMQPMethod::CloseOk(conn::CloseOk {})),
            ),
        );
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(code) = b.child.try_wait().unwrap() {
            assert!(code.success(), "exit status {code}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn metrics_endpoint_counts_connections() {
    let b = spawn_broker();
    let (_s, _buf) = open_raw(b.port);
    let body = http_get(b.metrics_port, "/metrics");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let line = body
        .lines()
        .find(|l| l.starts_with(warren::metrics::Counter::ConnectionsOpened.name()))
        .unwrap_or_else(|| {
            panic!(
                "no {} in {body}",
                warren::metrics::Counter::ConnectionsOpened.name()
            )
        });
    let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(n >= 1.0, "{line}");
}

#[test]
fn bad_listen_address_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["--listen", "not-an-address", "--metrics-listen", "off"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad listen address"), "{err}");
}

#[test]
fn a_damaged_data_directory_is_a_clear_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let sled = dir.path().join("sled");
    std::fs::create_dir_all(&sled).unwrap();
    std::fs::write(sled.join("conf"), b"\xff\xfe not a sled config \x00\x01").unwrap();
    std::fs::write(sled.join("db"), vec![0xA5u8; 4096]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(["--metrics-listen", "off"])
        .env("WARREN_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot open the data directory"), "{err}");
    assert!(err.contains(&sled.display().to_string()), "{err}");
    assert!(!err.contains("panicked"), "{err}");
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
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(["--metrics-listen", "off"])
        .env("WARREN_DATA_DIR", dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another version of Warren"), "{err}");
    assert!(err.contains(&sled_dir.display().to_string()), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The value of the first sample of `name` (exact name, any labels) in a scrape.
fn metric(body: &str, name: &str) -> f64 {
    body.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the scrape:\n{body}"))
}

/// Publish 100, consume and ack 60, get 10, publish 5 unroutable: the counters and gauges on
/// /metrics and /metrics/per-object say exactly that (RabbitMQ's names).
#[tokio::test]
async fn metrics_count_what_happened() {
    use lapin::options::*;
    use lapin::types::FieldTable;
    use lapin::BasicProperties;

    let b = spawn_broker();
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", b.port);
    let conn = lapin::Connection::connect(&uri, lapin::ConnectionProperties::default())
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
    ch.queue_bind(
        "m".into(),
        "amq.direct".into(),
        "m".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    for _ in 0..100 {
        assert!(publish("m").await.unwrap().await.unwrap().is_ack());
    }
    for _ in 0..5 {
        assert!(publish("nowhere").await.unwrap().await.unwrap().is_ack());
    }
    let cch = conn.create_channel().await.unwrap();
    cch.basic_qos(60, BasicQosOptions::default()).await.unwrap();
    let mut consumer = cch
        .basic_consume(
            "m".into(),
            "c".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
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
        c.queue_declare(
            "m".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    }
    let body = http_get(b.metrics_port, "/metrics");
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
    let per = http_get(b.metrics_port, "/metrics/per-object");
    assert!(
        per.contains("rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"m\"} 30"),
        "{per}"
    );
    assert!(http_get(b.metrics_port, "/nope").starts_with("HTTP/1.1 404"));
    // A malformed request gets an answer, not a dead endpoint.
    let mut s = TcpStream::connect(("127.0.0.1", b.metrics_port)).unwrap();
    s.write_all(&[0xff; 20_000]).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert!(http_get(b.metrics_port, "/metrics").starts_with("HTTP/1.1 200"));
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_warren"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--metrics-listen", "off", "--log-format", "json"])
        .env_remove("RUST_LOG")
        .env("WARREN_DATA_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "broker did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 2, "{text}");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert!(v.get("level").is_some() && v.get("fields").is_some(), "{l}");
    }
    assert!(text.contains("listening for AMQP 0-9-1"), "{text}");
}
