#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Bad input on raw sockets against a real broker: each case asserts the exact reply (reply
//! code and the class/method it names), that the socket then closes, and that the broker and
//! its other connections carry on untouched.
//!
//! The expected replies are RabbitMQ's, checked against a RabbitMQ node (3.10) and its
//! current source. Where RabbitMQ departs from the AMQP spec, we follow RabbitMQ:
//! - a heartbeat on a non-zero channel is 505 UNEXPECTED_FRAME (the spec says 501);
//! - a method it cannot decode is 501 FRAME_ERROR "cannot decode" (not 502);
//! - channel_max bounds how many channels are open, not their numbers;
//! - a frame's payload may be as large as frame_max itself (RabbitMQ's "fudge").
//!
//! One deliberate difference: an unknown class or method gets a 540 connection.close, where
//! RabbitMQ's reader crashes and drops the socket without a word.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use amq_protocol::frame::{gen_frame, parse_frame, AMQPFrame, WriteContext};
use amq_protocol::protocol::{basic, channel as chan, connection as conn, queue, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use common::TestBroker;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::BasicProperties;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// How long one read may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(5);
const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

// ---- a raw AMQP client -------------------------------------------------------------------

fn encode(f: &AMQPFrame) -> Vec<u8> {
    let (buf, _) = gen_frame(f)(WriteContext::from(Vec::new()))
        .unwrap()
        .into_inner();
    buf
}

/// A frame written out by hand: type, channel, payload, frame-end.
fn raw_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v.push(0xCE);
    v
}

/// A method frame's payload: class, method, arguments as bytes.
fn method_payload(class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    let mut v = class.to_be_bytes().to_vec();
    v.extend_from_slice(&method.to_be_bytes());
    v.extend_from_slice(args);
    v
}

fn conn_frame(m: conn::AMQPMethod) -> AMQPFrame {
    AMQPFrame::Method(0, AMQPClass::Connection(m))
}

fn publish_frame(ch: u16, routing_key: &str) -> AMQPFrame {
    AMQPFrame::Method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: "".into(),
            routing_key: routing_key.into(),
            mandatory: false,
            immediate: false,
        })),
    )
}

fn header_frame(ch: u16, body_size: u64) -> AMQPFrame {
    AMQPFrame::Header(
        ch,
        amq_protocol::frame::AMQPContentHeader {
            class_id: 60,
            body_size,
            properties: Default::default(),
        },
    )
}

fn client_properties(auth_failure_close: bool) -> FieldTable {
    let mut caps = FieldTable::default();
    caps.insert(
        "authentication_failure_close".into(),
        AMQPValue::Boolean(auth_failure_close),
    );
    let mut p = FieldTable::default();
    p.insert(
        "product".into(),
        AMQPValue::LongString(LongString::from("bad_input tests")),
    );
    p.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    p
}

/// What the server sent: a frame, or the end of the stream (EOF or a reset).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one at a time, on a test's stack
enum Read {
    Frame(AMQPFrame),
    Closed,
}

struct Raw {
    s: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr) -> Raw {
        let s = timeout(STEP, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        s.set_nodelay(true).unwrap();
        Raw { s, buf: Vec::new() }
    }

    /// Sends the protocol header and reads connection.start.
    async fn start(addr: SocketAddr) -> Raw {
        let mut r = Raw::connect(addr).await;
        r.write(PROTOCOL_HEADER).await;
        r.expect_start().await;
        r
    }

    /// The whole handshake as guest on "/": start-ok PLAIN, tune-ok (the server's limits
    /// turned by `tune_ok`), open, open-ok.
    async fn open_with(addr: SocketAddr, tune_ok: impl FnOnce(conn::Tune) -> conn::TuneOk) -> Raw {
        let mut r = Raw::start(addr).await;
        r.start_ok("guest", false).await;
        let tune = r.expect_tune().await;
        r.send(&conn_frame(conn::AMQPMethod::TuneOk(tune_ok(tune))))
            .await;
        r.send_open("/").await;
        match r.next().await {
            Read::Frame(AMQPFrame::Method(
                0,
                AMQPClass::Connection(conn::AMQPMethod::OpenOk(_)),
            )) => {}
            other => panic!("expected connection.open-ok, got {other:?}"),
        }
        r
    }

    /// The handshake with the server's limits and no heartbeats.
    async fn open(addr: SocketAddr) -> Raw {
        Raw::open_with(addr, |t| conn::TuneOk {
            channel_max: t.channel_max,
            frame_max: t.frame_max,
            heartbeat: 0,
        })
        .await
    }

    async fn expect_start(&mut self) -> conn::Start {
        match self.next().await {
            Read::Frame(AMQPFrame::Method(
                0,
                AMQPClass::Connection(conn::AMQPMethod::Start(s)),
            )) => s,
            other => panic!("expected connection.start, got {other:?}"),
        }
    }

    async fn start_ok(&mut self, password: &str, auth_failure_close: bool) {
        self.send(&conn_frame(conn::AMQPMethod::StartOk(conn::StartOk {
            client_properties: client_properties(auth_failure_close),
            mechanism: "PLAIN".into(),
            response: format!("\0guest\0{password}").into(),
            locale: "en_US".into(),
        })))
        .await;
    }

    async fn expect_tune(&mut self) -> conn::Tune {
        match self.next().await {
            Read::Frame(AMQPFrame::Method(0, AMQPClass::Connection(conn::AMQPMethod::Tune(t)))) => {
                t
            }
            other => panic!("expected connection.tune, got {other:?}"),
        }
    }

    async fn send_open(&mut self, vhost: &str) {
        self.send(&conn_frame(conn::AMQPMethod::Open(conn::Open {
            virtual_host: vhost.into(),
        })))
        .await;
    }

    async fn open_channel(&mut self, ch: u16) {
        self.send(&AMQPFrame::Method(
            ch,
            AMQPClass::Channel(chan::AMQPMethod::Open(chan::Open {})),
        ))
        .await;
        match self.next().await {
            Read::Frame(AMQPFrame::Method(c, AMQPClass::Channel(chan::AMQPMethod::OpenOk(_))))
                if c == ch => {}
            other => panic!("expected channel.open-ok on {ch}, got {other:?}"),
        }
    }

    async fn write(&mut self, bytes: &[u8]) {
        timeout(STEP, self.s.write_all(bytes))
            .await
            .expect("write in time")
            .expect("write");
    }

    async fn send(&mut self, f: &AMQPFrame) {
        self.write(&encode(f)).await;
    }

    /// The next frame (heartbeats included), or `Closed`; fails the test after [`STEP`].
    async fn next_raw(&mut self) -> Read {
        loop {
            if self.buf.len() >= 7 {
                let size = u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]])
                    as usize;
                if self.buf.len() >= size + 8 {
                    let bytes: Vec<u8> = self.buf.drain(..size + 8).collect();
                    let (rest, f) = parse_frame(&bytes[..])
                        .unwrap_or_else(|e| panic!("unparsable frame {bytes:02x?}: {e:?}"));
                    assert!(rest.is_empty());
                    return Read::Frame(f);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match timeout(STEP, self.s.read(&mut chunk)).await {
                Err(_) => panic!("nothing from the server in {STEP:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => {
                    assert!(
                        self.buf.is_empty(),
                        "stream ended inside a frame: {:02x?}",
                        self.buf
                    );
                    return Read::Closed;
                }
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next frame that is not a heartbeat, or `Closed`.
    async fn next(&mut self) -> Read {
        loop {
            match self.next_raw().await {
                Read::Frame(AMQPFrame::Heartbeat) => continue,
                other => return other,
            }
        }
    }

    /// The server must close the connection now: connection.close, which we answer with
    /// close-ok like a client, then the end of the stream. Returns the close.
    async fn expect_close(&mut self) -> conn::Close {
        let close = match self.next().await {
            Read::Frame(AMQPFrame::Method(
                0,
                AMQPClass::Connection(conn::AMQPMethod::Close(c)),
            )) => c,
            other => panic!("expected connection.close, got {other:?}"),
        };
        // The server may already have hung up (a framing error leaves nothing to wait for).
        let close_ok = encode(&conn_frame(conn::AMQPMethod::CloseOk(conn::CloseOk {})));
        let _ = timeout(STEP, self.s.write_all(&close_ok)).await;
        self.expect_eof().await;
        close
    }

    /// Asserts the close names `code` and `(class_id, method_id)`; returns its text.
    async fn expect_close_with(&mut self, code: u16, ids: (u16, u16)) -> String {
        let c = self.expect_close().await;
        assert_eq!(c.reply_code, code, "{c:?}");
        assert_eq!((c.class_id, c.method_id), ids, "{c:?}");
        assert!(
            c.reply_text
                .as_str()
                .starts_with(warren_codec::reply::name(code)),
            "{c:?}"
        );
        c.reply_text.to_string()
    }

    /// Nothing more but the end of the stream (heartbeats aside).
    async fn expect_eof(&mut self) {
        match self.next().await {
            Read::Closed => {}
            Read::Frame(f) => panic!("expected the socket to close, got {f:?}"),
        }
    }

    /// Every byte until the server closes the socket.
    async fn read_to_close(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 1024];
        loop {
            match timeout(STEP, self.s.read(&mut chunk)).await {
                Err(_) => panic!("the server kept the socket open; read so far {out:02x?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return out,
                Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// The broker still serves: `other`, opened before the bad input, and a new connection both
/// declare a queue, publish to it and get the message back.
async fn assert_still_serving(b: &TestBroker, other: &lapin::Connection) {
    assert!(other.status().connected(), "{:?}", other.status());
    let fresh = timeout(STEP, b.connect()).await.expect("connect in time");
    for (i, c) in [other, &fresh].into_iter().enumerate() {
        let ch = timeout(STEP, c.create_channel()).await.unwrap().unwrap();
        let q = timeout(
            STEP,
            ch.queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    ..Default::default()
                },
                Default::default(),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        let body = format!("still here {i}");
        timeout(
            STEP,
            ch.basic_publish(
                "".into(),
                q.name().as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default(),
            ),
        )
        .await
        .unwrap()
        .unwrap();
        let got = timeout(
            STEP,
            ch.basic_get(q.name().as_str().into(), BasicGetOptions { no_ack: true }),
        )
        .await
        .unwrap()
        .unwrap()
        .expect("the message back");
        assert_eq!(got.delivery.data, body.as_bytes());
    }
    let _ = timeout(STEP, fresh.close(200, "bye".into())).await;
}

/// A broker, and a lapin connection to it opened before any bad input.
async fn setup() -> (TestBroker, lapin::Connection) {
    let b = TestBroker::start().await;
    let other = timeout(STEP, b.connect()).await.expect("connect in time");
    (b, other)
}

// ---- the protocol header -------------------------------------------------------------------

#[tokio::test]
async fn wrong_protocol_header_gets_ours_and_a_closed_socket() {
    let (b, other) = setup().await;
    for header in [
        &b"AMQP\x00\x00\x09\x02"[..],
        b"AMQP\x00\x00\x09\x00",
        b"AMQP\x00\x00\x08\x00",
        b"AMQP\x01\x01\x00\x0a",
        b"HTTP/1.1",
        b"\x16\x03\x01\x02\x00\x01\x00\x01", // a TLS client hello
    ] {
        let mut r = Raw::connect(b.addr).await;
        r.write(header).await;
        assert_eq!(r.read_to_close().await, PROTOCOL_HEADER, "{header:?}");
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn amqp_0_9_header_is_taken_as_0_9_1() {
    let (b, other) = setup().await;
    let mut r = Raw::connect(b.addr).await;
    r.write(b"AMQP\x01\x01\x00\x09").await;
    let start = r.expect_start().await;
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    // And the connection works from there.
    r.start_ok("guest", false).await;
    let tune = r.expect_tune().await;
    r.send(&conn_frame(conn::AMQPMethod::TuneOk(conn::TuneOk {
        channel_max: tune.channel_max,
        frame_max: tune.frame_max,
        heartbeat: 0,
    })))
    .await;
    r.send_open("/").await;
    assert!(matches!(
        r.next().await,
        Read::Frame(AMQPFrame::Method(
            0,
            AMQPClass::Connection(conn::AMQPMethod::OpenOk(_))
        ))
    ));
    r.open_channel(1).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn no_protocol_header_within_the_handshake_timeout_closes_the_socket() {
    let b = TestBroker::start_with(|c| c.handshake_timeout = Duration::from_millis(300)).await;
    let other = timeout(STEP, b.connect()).await.unwrap();

    // Silence.
    let t0 = Instant::now();
    let mut r = Raw::connect(b.addr).await;
    assert_eq!(r.read_to_close().await, b"");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
        "{waited:?}"
    );

    // Half a header.
    let mut r = Raw::connect(b.addr).await;
    r.write(b"AMQ").await;
    assert_eq!(r.read_to_close().await, b"");

    // A header, then nothing: connection.start, then the socket closes.
    let t0 = Instant::now();
    let mut r = Raw::connect(b.addr).await;
    r.write(PROTOCOL_HEADER).await;
    r.expect_start().await;
    r.expect_eof().await;
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());

    assert_still_serving(&b, &other).await;
}

// ---- framing -------------------------------------------------------------------------------

#[tokio::test]
async fn oversized_frame_is_501_before_its_payload_arrives() {
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    // Only the 7-byte header of a method frame one byte over frame_max: the broker answers
    // without waiting for the payload.
    let mut header = vec![1u8, 0, 1];
    header.extend_from_slice(&131_073u32.to_be_bytes());
    r.write(&header).await;
    r.expect_close_with(501, (0, 0)).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn oversized_frame_after_a_lower_negotiated_frame_max_is_501() {
    let (b, other) = setup().await;
    let mut r = Raw::open_with(b.addr, |t| conn::TuneOk {
        channel_max: t.channel_max,
        frame_max: 8192,
        heartbeat: 0,
    })
    .await;
    r.open_channel(1).await;
    r.send(&publish_frame(1, "q")).await;
    r.send(&header_frame(1, 10_000)).await;
    let mut header = vec![3u8, 0, 1];
    header.extend_from_slice(&8193u32.to_be_bytes());
    r.write(&header).await;
    r.expect_close_with(501, (0, 0)).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn payload_as_large_as_frame_max_passes_the_size_check_as_in_rabbitmq() {
    // RabbitMQ tolerates clients that forget the 8 bytes of framing: a payload of frame_max
    // bytes gets through. Sent on a channel with no publish, it then fails as content
    // out of order (505), which shows the frame itself was accepted.
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.write(&raw_frame(3, 1, &vec![0u8; 131_072])).await;
    r.expect_close_with(505, (0, 0)).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn bad_frame_end_is_501() {
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    let mut f = encode(&AMQPFrame::Method(
        1,
        AMQPClass::Channel(chan::AMQPMethod::Open(chan::Open {})),
    ));
    *f.last_mut().unwrap() = 0xCF;
    r.write(&f).await;
    let text = r.expect_close_with(501, (0, 0)).await;
    assert!(text.contains("frame end"), "{text}");
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn unknown_frame_type_is_501() {
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.write(&raw_frame(9, 0, b"")).await;
    r.expect_close_with(501, (0, 0)).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn garbage_after_the_handshake_is_501() {
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.write(b"hello, this is not AMQP at all\r\n").await;
    r.expect_close_with(501, (0, 0)).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn heartbeat_on_a_nonzero_channel_is_505_as_in_rabbitmq() {
    // The spec asks for 501; RabbitMQ answers 505 UNEXPECTED_FRAME, and so do we.
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.send(&AMQPFrame::InvalidHeartbeat(1)).await;
    r.expect_close_with(505, (0, 0)).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn heartbeat_with_a_payload_is_501() {
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.write(&raw_frame(8, 0, b"xx")).await;
    r.expect_close_with(501, (0, 0)).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn truncated_frame_then_eof_just_drops_the_connection() {
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    let f = encode(&publish_frame(1, "q"));
    r.write(&f[..f.len() / 2]).await;
    r.s.shutdown().await.unwrap();
    // No reply at all: the broker just hangs up.
    assert_eq!(r.read_to_close().await, b"");
    assert_still_serving(&b, &other).await;
}

// ---- methods ---------------------------------------------------------------------------

#[tokio::test]
async fn unknown_class_is_540() {
    let (b, other) = setup().await;
    // On an open channel.
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.write(&raw_frame(1, 1, &method_payload(99, 10, b"")))
        .await;
    r.expect_close_with(540, (99, 10)).await;
    // On channel 0.
    let mut r = Raw::open(b.addr).await;
    r.write(&raw_frame(1, 0, &method_payload(99, 10, b"\0\0")))
        .await;
    r.expect_close_with(540, (99, 10)).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn unknown_method_in_a_known_class_is_540() {
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.write(&raw_frame(1, 1, &method_payload(50, 99, b"")))
        .await;
    r.expect_close_with(540, (50, 99)).await;
    // basic has no method 130 either, even on a channel never opened.
    let mut r = Raw::open(b.addr).await;
    r.write(&raw_frame(1, 5, &method_payload(60, 130, b"")))
        .await;
    r.expect_close_with(540, (60, 130)).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn truncated_method_arguments_are_501_naming_the_method() {
    // RabbitMQ: 501 FRAME_ERROR "cannot decode", with the method's ids.
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    // queue.declare whose queue name claims 5 bytes and has 2
    r.write(&raw_frame(1, 1, &method_payload(50, 10, b"\0\0\x05ab")))
        .await;
    r.expect_close_with(501, (50, 10)).await;
    // basic.ack (parsed by hand) without its bits
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.write(&raw_frame(1, 1, &method_payload(60, 80, &[0; 8])))
        .await;
    r.expect_close_with(501, (60, 80)).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn method_on_an_unopened_channel_is_504() {
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.send(&AMQPFrame::Method(
        1,
        AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
            queue: "q".into(),
            ..Default::default()
        })),
    ))
    .await;
    let text = r.expect_close_with(504, (50, 10)).await;
    assert!(text.contains("expected 'channel.open'"), "{text}");
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn second_channel_open_is_504() {
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.send(&AMQPFrame::Method(
        1,
        AMQPClass::Channel(chan::AMQPMethod::Open(chan::Open {})),
    ))
    .await;
    let text = r.expect_close_with(504, (20, 10)).await;
    assert!(text.contains("second 'channel.open'"), "{text}");
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn channel_number_above_channel_max_is_504() {
    // The spec bounds channel numbers by channel_max; RabbitMQ 3.10 would open channel 11 on
    // a connection tuned to 10 and only limits how many are open (530, tests/connection.rs).
    // Warren refuses the number with 504 CHANNEL_ERROR, as the project asks.
    let (b, other) = setup().await;
    for ch in [11, 2048, 65535] {
        let mut r = Raw::open_with(b.addr, |t| conn::TuneOk {
            channel_max: 10,
            frame_max: t.frame_max,
            heartbeat: 0,
        })
        .await;
        r.open_channel(10).await;
        r.send(&AMQPFrame::Method(
            ch,
            AMQPClass::Channel(chan::AMQPMethod::Open(chan::Open {})),
        ))
        .await;
        let text = r.expect_close_with(504, (20, 10)).await;
        assert!(text.contains("channel_max"), "{text}");
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn tune_ok_with_no_limit_is_530() {
    // RabbitMQ refuses frame_max = 0 or channel_max = 0 ("no limit") when it has limits.
    let (b, other) = setup().await;
    for (channel_max, frame_max) in [(0, 131072), (2047, 0)] {
        let mut r = Raw::start(b.addr).await;
        r.start_ok("guest", false).await;
        r.expect_tune().await;
        r.send(&conn_frame(conn::AMQPMethod::TuneOk(conn::TuneOk {
            channel_max,
            frame_max,
            heartbeat: 0,
        })))
        .await;
        let text = r.expect_close_with(530, (10, 30)).await;
        assert!(text.contains("= 0"), "{text}");
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn connection_methods_out_of_place_are_504() {
    // RabbitMQ: CHANNEL_ERROR - unexpected method in connection state running.
    let (b, other) = setup().await;
    let cases: Vec<(AMQPFrame, (u16, u16))> = vec![
        (
            conn_frame(conn::AMQPMethod::CloseOk(conn::CloseOk {})),
            (10, 51),
        ),
        (
            conn_frame(conn::AMQPMethod::Open(conn::Open {
                virtual_host: "/".into(),
            })),
            (10, 40),
        ),
        (
            conn_frame(conn::AMQPMethod::TuneOk(conn::TuneOk {
                channel_max: 10,
                frame_max: 8192,
                heartbeat: 0,
            })),
            (10, 31),
        ),
        // Not a connection method, on channel 0.
        (
            AMQPFrame::Method(0, AMQPClass::Channel(chan::AMQPMethod::Open(chan::Open {}))),
            (20, 10),
        ),
        (
            AMQPFrame::Method(
                0,
                AMQPClass::Basic(basic::AMQPMethod::Ack(basic::Ack {
                    delivery_tag: 1,
                    multiple: false,
                })),
            ),
            (60, 80),
        ),
    ];
    for (frame, ids) in cases {
        let mut r = Raw::open(b.addr).await;
        r.send(&frame).await;
        let text = r.expect_close_with(504, ids).await;
        assert_eq!(
            text, "CHANNEL_ERROR - unexpected method in connection state running",
            "{frame:?}"
        );
    }
    assert_still_serving(&b, &other).await;
}

// ---- content -------------------------------------------------------------------------------

#[tokio::test]
async fn body_before_header_is_505() {
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.send(&publish_frame(1, "q")).await;
    r.send(&AMQPFrame::Body(1, b"hello".to_vec())).await;
    let text = r.expect_close_with(505, (60, 40)).await;
    assert_eq!(
        text,
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead"
    );
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn header_without_a_publish_is_505() {
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.send(&header_frame(1, 5)).await;
    let text = r.expect_close_with(505, (0, 0)).await;
    assert_eq!(
        text,
        "UNEXPECTED_FRAME - expected method frame, got non method frame instead"
    );
    // A lone body frame, likewise.
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.send(&AMQPFrame::Body(1, b"hello".to_vec())).await;
    r.expect_close_with(505, (0, 0)).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn method_in_the_middle_of_content_is_505() {
    let (b, other) = setup().await;
    // Between the publish and its header.
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.send(&publish_frame(1, "q")).await;
    r.send(&AMQPFrame::Method(
        1,
        AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
            prefetch_count: 1,
            global: false,
        })),
    ))
    .await;
    // The close names the publish whose content was cut, as RabbitMQ's does.
    r.expect_close_with(505, (60, 40)).await;
    // Between two body frames.
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.send(&publish_frame(1, "q")).await;
    r.send(&header_frame(1, 10)).await;
    r.send(&AMQPFrame::Body(1, b"12345".to_vec())).await;
    r.send(&publish_frame(1, "q")).await;
    let text = r.expect_close_with(505, (60, 40)).await;
    assert_eq!(
        text,
        "UNEXPECTED_FRAME - expected content body, got non content body frame instead"
    );
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn content_on_another_channel_in_between_is_fine() {
    // Content is assembled per channel: interleaving channels is legal.
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.open_channel(2).await;
    r.send(&publish_frame(1, "nowhere")).await;
    r.send(&publish_frame(2, "nowhere")).await;
    r.send(&header_frame(2, 1)).await;
    r.send(&header_frame(1, 1)).await;
    r.send(&AMQPFrame::Body(1, b"a".to_vec())).await;
    r.send(&AMQPFrame::Body(2, b"b".to_vec())).await;
    // Both channels still work: a round trip on each.
    for ch in [1, 2] {
        r.send(&AMQPFrame::Method(
            ch,
            AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                prefetch_count: 1,
                global: false,
            })),
        ))
        .await;
        assert!(
            matches!(
                r.next().await,
                Read::Frame(AMQPFrame::Method(c, AMQPClass::Basic(basic::AMQPMethod::QosOk(_)))) if c == ch
            ),
            "channel {ch}"
        );
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn body_larger_than_declared_is_501() {
    // RabbitMQ: FRAME_ERROR - content body frame exceeds remaining content size.
    let (b, other) = setup().await;
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.send(&publish_frame(1, "q")).await;
    r.send(&header_frame(1, 5)).await;
    r.send(&AMQPFrame::Body(1, b"hello world".to_vec())).await;
    r.expect_close_with(501, (60, 40)).await;
    assert_still_serving(&b, &other).await;
}

// ---- the handshake -----------------------------------------------------------------------

#[tokio::test]
async fn tune_ok_frame_max_out_of_bounds_is_530() {
    let (b, other) = setup().await;
    for frame_max in [4096u32, 8191, 131_073, u32::MAX] {
        let mut r = Raw::start(b.addr).await;
        r.start_ok("guest", false).await;
        let tune = r.expect_tune().await;
        assert_eq!(tune.frame_max, 131_072);
        r.send(&conn_frame(conn::AMQPMethod::TuneOk(conn::TuneOk {
            channel_max: tune.channel_max,
            frame_max,
            heartbeat: 0,
        })))
        .await;
        // RabbitMQ names connection.tune in this close.
        let text = r.expect_close_with(530, (10, 30)).await;
        assert!(text.contains(&format!("frame_max = {frame_max}")), "{text}");
    }
    // The bounds themselves are fine.
    for frame_max in [8192u32, 131_072] {
        let mut r = Raw::open_with(b.addr, |t| conn::TuneOk {
            channel_max: t.channel_max,
            frame_max,
            heartbeat: 0,
        })
        .await;
        r.open_channel(1).await;
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn tune_ok_channel_max_above_the_servers_is_530() {
    let (b, other) = setup().await;
    let mut r = Raw::start(b.addr).await;
    r.start_ok("guest", false).await;
    let tune = r.expect_tune().await;
    r.send(&conn_frame(conn::AMQPMethod::TuneOk(conn::TuneOk {
        channel_max: tune.channel_max + 1,
        frame_max: tune.frame_max,
        heartbeat: 0,
    })))
    .await;
    r.expect_close_with(530, (10, 30)).await;
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn wrong_password_with_authentication_failure_close_is_403() {
    let (b, other) = setup().await;
    let mut r = Raw::start(b.addr).await;
    r.start_ok("not-the-password", true).await;
    let text = r.expect_close_with(403, (0, 0)).await;
    assert_eq!(
        text,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."
    );
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn wrong_password_without_the_capability_just_closes_the_socket() {
    let (b, other) = setup().await;
    let mut r = Raw::start(b.addr).await;
    r.start_ok("not-the-password", false).await;
    assert_eq!(r.read_to_close().await, b"");
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn unknown_vhost_is_530() {
    let (b, other) = setup().await;
    let mut r = Raw::start(b.addr).await;
    r.start_ok("guest", false).await;
    let tune = r.expect_tune().await;
    r.send(&conn_frame(conn::AMQPMethod::TuneOk(conn::TuneOk {
        channel_max: tune.channel_max,
        frame_max: tune.frame_max,
        heartbeat: 0,
    })))
    .await;
    r.send_open("no-such-vhost").await;
    let text = r.expect_close_with(530, (10, 40)).await;
    assert_eq!(text, "NOT_ALLOWED - vhost no-such-vhost not found");
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn heartbeats_are_sent_and_a_silent_client_is_dropped() {
    let (b, other) = setup().await;
    let mut r = Raw::open_with(b.addr, |t| conn::TuneOk {
        channel_max: t.channel_max,
        frame_max: t.frame_max,
        heartbeat: 1,
    })
    .await;
    // From now on the client says nothing. The broker sends heartbeats (and nothing else),
    // then, after two intervals without a byte from us, drops the socket without a close.
    let t0 = Instant::now();
    let mut beats = 0;
    loop {
        match r.next_raw().await {
            Read::Frame(AMQPFrame::Heartbeat) => beats += 1,
            Read::Frame(f) => panic!("expected only heartbeats, got {f:?}"),
            Read::Closed => break,
        }
    }
    let silent = t0.elapsed();
    assert!(beats >= 1, "no heartbeat in {silent:?}");
    assert!(
        silent >= Duration::from_millis(1500) && silent < Duration::from_millis(4500),
        "dropped after {silent:?}"
    );
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn a_client_that_heartbeats_is_kept() {
    let (b, other) = setup().await;
    let mut r = Raw::open_with(b.addr, |t| conn::TuneOk {
        channel_max: t.channel_max,
        frame_max: t.frame_max,
        heartbeat: 1,
    })
    .await;
    // 3 s of heartbeats only, well past the 2 s the silent client above gets.
    for _ in 0..6 {
        r.send(&AMQPFrame::Heartbeat).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    r.open_channel(1).await;
    assert_still_serving(&b, &other).await;
}

// ---- field tables nested without bound ------------------------------------------------------

/// A field table (4-byte length first) nested `depth` deep; with `array`, every level is an
/// array holding the next table.
fn nested_table(depth: usize, array: bool) -> Vec<u8> {
    let mut inner: Vec<u8> = 0u32.to_be_bytes().to_vec();
    for _ in 1..depth {
        let mut entry = vec![1, b'k'];
        if array {
            entry.push(b'A');
            entry.extend_from_slice(&((inner.len() + 1) as u32).to_be_bytes());
            entry.push(b'F');
        } else {
            entry.push(b'F');
        }
        entry.extend_from_slice(&inner);
        inner = (entry.len() as u32).to_be_bytes().to_vec();
        inner.extend_from_slice(&entry);
    }
    inner
}

fn short(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// The arguments of a method that carries a table, the table given as raw bytes.
fn method_with_table(class: u16, method: u16, table: &[u8]) -> Vec<u8> {
    let mut a = Vec::new();
    match (class, method) {
        // queue.declare: reserved, queue, bits
        (50, 10) => {
            a.extend_from_slice(&[0, 0]);
            a.extend(short("deep-q"));
            a.push(0);
        }
        // exchange.declare: reserved, exchange, type, bits
        (40, 10) => {
            a.extend_from_slice(&[0, 0]);
            a.extend(short("deep-x"));
            a.extend(short("direct"));
            a.push(0);
        }
        // queue.bind: reserved, queue, exchange, key, no-wait
        (50, 20) => {
            a.extend_from_slice(&[0, 0]);
            a.extend(short("deep-q"));
            a.extend(short("amq.direct"));
            a.extend(short("k"));
            a.push(0);
        }
        // basic.consume: reserved, queue, tag, bits
        (60, 20) => {
            a.extend_from_slice(&[0, 0]);
            a.extend(short("deep-q"));
            a.extend(short("tag"));
            a.push(0);
        }
        _ => unreachable!(),
    }
    a.extend_from_slice(table);
    method_payload(class, method, &a)
}

#[tokio::test]
async fn a_table_nested_2500_deep_before_login_is_501_and_the_broker_lives() {
    // The frame that overflowed the stack, before any login: client-properties nested deep.
    // Before tune-ok the broker takes frames of at most 8 KiB (RabbitMQ's FRAME_MIN_SIZE),
    // so the 17 KB one is refused by size, and one that fits (1,100 deep) by depth.
    let (b, other) = setup().await;
    for (depth, text) in [(2_500, "frame too large"), (1_100, "nested deeper than 64")] {
        let mut r = Raw::start(b.addr).await;
        let mut args = nested_table(depth, false);
        args.extend(short("PLAIN"));
        args.extend_from_slice(&11u32.to_be_bytes());
        args.extend_from_slice(b"\0guest\0guest");
        args.extend(short("en_US"));
        r.write(&raw_frame(1, 0, &method_payload(10, 11, &args)))
            .await;
        let close = r.expect_close().await;
        assert_eq!(close.reply_code, 501, "{close:?}");
        assert!(close.reply_text.as_str().contains(text), "{close:?}");
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn deep_tables_in_method_arguments_are_501_and_shallow_ones_pass() {
    let (b, other) = setup().await;
    for (class, method) in [(50, 10), (40, 10), (50, 20), (60, 20)] {
        for array in [false, true] {
            let mut r = Raw::open(b.addr).await;
            r.open_channel(1).await;
            let frame = raw_frame(
                1,
                1,
                &method_with_table(class, method, &nested_table(2_000, array)),
            );
            r.write(&frame).await;
            let text = r.expect_close_with(501, (class, method)).await;
            assert!(
                text.contains("nested deeper than 64"),
                "{class}.{method}: {text}"
            );
        }
    }
    // Nested a little (10 deep, unknown x-arguments are ignored): declared as usual.
    let mut r = Raw::open(b.addr).await;
    r.open_channel(1).await;
    r.write(&raw_frame(
        1,
        1,
        &method_with_table(50, 10, &nested_table(10, false)),
    ))
    .await;
    match r.next().await {
        Read::Frame(AMQPFrame::Method(1, AMQPClass::Queue(queue::AMQPMethod::DeclareOk(_)))) => {}
        other => panic!("expected queue.declare-ok, got {other:?}"),
    }
    assert_still_serving(&b, &other).await;
}

#[tokio::test]
async fn deep_publish_headers_are_refused_even_through_the_default_exchange() {
    let (b, other) = setup().await;
    for array in [false, true] {
        let mut r = Raw::open(b.addr).await;
        r.open_channel(1).await;
        r.send(&publish_frame(1, "nowhere")).await;
        // Content header: class 60, weight 0, body size 0, flags = headers, the table.
        let mut h = vec![0, 60, 0, 0];
        h.extend_from_slice(&0u64.to_be_bytes());
        h.extend_from_slice(&(1u16 << 13).to_be_bytes());
        h.extend_from_slice(&nested_table(2_000, array));
        r.write(&raw_frame(2, 1, &h)).await;
        let c = r.expect_close().await;
        assert_eq!(c.reply_code, 502, "{c:?}");
        assert!(
            c.reply_text.as_str().contains("nested deeper than 64"),
            "{c:?}"
        );
    }
    assert_still_serving(&b, &other).await;
}
