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
        .find(|l| l.starts_with(warren::metrics::CONNECTIONS_OPENED))
        .unwrap_or_else(|| panic!("no {} in {body}", warren::metrics::CONNECTIONS_OPENED));
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
