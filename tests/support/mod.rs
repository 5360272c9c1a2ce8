//! Helpers shared by the lapin integration tests (exchanges, queues, basic, confirms_tx,
//! connection): the broker under test, unique names, timeouts, and reading AMQP reply codes
//! out of lapin's errors.
//!
//! By default every test talks to a Warren started in-process ([`crate::common::TestBroker`]).
//! With `WARREN_REF_URI` set (e.g. `amqp://guest:guest@127.0.0.1:5702/%2f`, a RabbitMQ from
//! `/work/shared/bin/rabbitmq-ref start 5702`), the tests that only need a URI talk to that
//! broker instead, which checks the expectations themselves against the reference.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::BasicPublishOptions;
use lapin::protocol::AMQPErrorKind;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ErrorKind};

use crate::common::TestBroker;

pub mod child;
pub mod lab;

/// How long any single step may take before the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(5);

/// The broker a test talks to.
pub struct Env {
    warren: Option<TestBroker>,
    uri: String,
}

impl Env {
    /// Warren in-process, or the broker named by `WARREN_REF_URI`.
    pub async fn start() -> Env {
        match std::env::var("WARREN_REF_URI") {
            Ok(uri) if !uri.is_empty() => Env { warren: None, uri },
            _ => {
                let b = TestBroker::start().await;
                let uri = b.uri();
                Env {
                    warren: Some(b),
                    uri,
                }
            }
        }
    }

    /// True when running against the reference broker rather than Warren.
    pub fn is_ref(&self) -> bool {
        self.warren.is_none()
    }

    pub fn uri(&self) -> &str {
        &self.uri
    }

    pub async fn connect(&self) -> Connection {
        within(Connection::connect(
            &self.uri,
            ConnectionProperties::default(),
        ))
        .await
        .expect("lapin connects")
    }

    /// A new connection and one channel on it.
    pub async fn open(&self) -> (Connection, Channel) {
        let conn = self.connect().await;
        let ch = within(conn.create_channel()).await.expect("channel opens");
        (conn, ch)
    }
}

/// A name no other test (or earlier run against a long-lived reference broker) uses.
pub fn uniq(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() % 1_000_000_000_000)
        .unwrap_or(0);
    format!(
        "test.{prefix}.{}.{nanos}.{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Awaits `f`, failing the test if it takes longer than [`STEP`].
pub async fn within<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(STEP, f)
        .await
        .expect("timed out waiting for the broker")
}

/// The AMQP reply code a lapin error carries (channel or connection close), if any.
pub fn code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        ErrorKind::ProtocolError(p) => Some(p.get_id()),
        _ => None,
    }
}

/// Whether the error closed the connection (true) or only the channel (false).
pub fn is_hard(e: &lapin::Error) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(p) if matches!(p.kind(), AMQPErrorKind::Hard(_)))
}

/// The reply text a lapin error carries.
pub fn text(e: &lapin::Error) -> String {
    match e.kind() {
        ErrorKind::ProtocolError(p) => p.get_message().to_string(),
        other => format!("{other:?}"),
    }
}

/// Asserts that `r` failed with a channel close (soft error) with `expected`.
#[track_caller]
pub fn assert_channel_error<T: std::fmt::Debug>(r: lapin::Result<T>, expected: u16) {
    match r {
        Ok(v) => panic!("expected channel error {expected}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(code(&e), Some(expected), "unexpected error: {e:?}");
            assert!(!is_hard(&e), "expected a channel error, got {e:?}");
        }
    }
}

/// Asserts that `r` failed with a connection close (hard error) with `expected`.
#[track_caller]
pub fn assert_connection_error<T: std::fmt::Debug>(r: lapin::Result<T>, expected: u16) {
    match r {
        Ok(v) => panic!("expected connection error {expected}, got Ok({v:?})"),
        Err(e) => {
            assert_eq!(code(&e), Some(expected), "unexpected error: {e:?}");
            assert!(is_hard(&e), "expected a connection error, got {e:?}");
        }
    }
}

/// The next error event on the connection (a channel or connection close from the broker),
/// for failures of methods that have no reply, like basic.publish or basic.ack.
pub async fn next_error(
    events: &mut (impl futures_lite::Stream<Item = lapin::Event> + Unpin),
) -> lapin::Error {
    within(async {
        loop {
            match events.next().await {
                Some(lapin::Event::Error(e)) => return e,
                Some(_) => continue,
                None => panic!("connection events ended without an error"),
            }
        }
    })
    .await
}

/// The next delivery of a consumer.
pub async fn next_delivery(c: &mut Consumer) -> Delivery {
    within(c.next())
        .await
        .expect("consumer ended")
        .expect("delivery error")
}

/// Asserts that the consumer gets nothing within `ms` milliseconds.
pub async fn assert_no_delivery(c: &mut Consumer, ms: u64) {
    if let Ok(d) = tokio::time::timeout(Duration::from_millis(ms), c.next()).await {
        let d = d.map(|r| r.map(|d| String::from_utf8_lossy(&d.data).into_owned()));
        panic!("expected no delivery, got {d:?}");
    }
}

/// A fresh exclusive queue with a unique name.
pub async fn exclusive_queue(ch: &Channel) -> String {
    let name = uniq("q");
    within(ch.queue_declare(
        name.as_str().into(),
        lapin::options::QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        lapin::types::FieldTable::default(),
    ))
    .await
    .expect("queue.declare");
    name
}

/// Publishes `body` (no confirm wait).
pub async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8]) {
    publish_with(ch, exchange, key, body, BasicProperties::default()).await;
}

pub async fn publish_with(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) {
    within(ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        props,
    ))
    .await
    .expect("publish");
}

/// Fetches every ready message of `queue` with basic.get (no-ack), in order, as strings.
pub async fn drain(ch: &Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let got = within(ch.basic_get(
            queue.into(),
            lapin::options::BasicGetOptions { no_ack: true },
        ))
        .await
        .expect("basic.get");
        match got {
            Some(m) => out.push(String::from_utf8(m.delivery.data.clone()).expect("utf-8 body")),
            None => return out,
        }
    }
}

/// A round trip on `ch` (a passive declare of `amq.direct`), so everything sent before it
/// has been handled by the broker.
pub async fn sync(ch: &Channel) {
    within(ch.exchange_declare(
        "amq.direct".into(),
        lapin::ExchangeKind::Direct,
        lapin::options::ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        lapin::types::FieldTable::default(),
    ))
    .await
    .expect("round trip");
}

/// A raw AMQP client (blocking std socket, for `spawn_blocking`), for what lapin cannot send
/// or hides: a prefetch-size, or the delivery tags and `multiple` flags of confirms.
pub mod raw {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame, WriteContext};
    use amq_protocol::protocol::basic::AMQPProperties;
    use amq_protocol::protocol::{basic, channel as chan, connection as c, AMQPClass};

    pub struct Raw {
        s: TcpStream,
        buf: Vec<u8>,
    }

    impl Raw {
        /// Connects as guest and opens the connection and channel 1.
        pub fn open(addr: &str) -> Raw {
            let mut r = Raw::connect(addr, |t| t);
            r.send(&AMQPFrame::Method(
                1,
                AMQPClass::Channel(chan::AMQPMethod::Open(chan::Open {})),
            ));
            assert!(matches!(
                r.recv(),
                AMQPFrame::Method(1, AMQPClass::Channel(chan::AMQPMethod::OpenOk(_)))
            ));
            r
        }

        /// Connects as guest through connection.open-ok; `tune_ok` turns the server's
        /// connection.tune into the tune-ok sent back.
        pub fn connect(addr: &str, tune_ok: impl FnOnce(c::TuneOk) -> c::TuneOk) -> Raw {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut r = Raw { s, buf: Vec::new() };
            r.s.write_all(b"AMQP\x00\x00\x09\x01").unwrap();
            let m = |m| AMQPFrame::Method(0, AMQPClass::Connection(m));
            assert!(matches!(
                r.recv(),
                AMQPFrame::Method(0, AMQPClass::Connection(c::AMQPMethod::Start(_)))
            ));
            r.send(&m(c::AMQPMethod::StartOk(c::StartOk {
                client_properties: Default::default(),
                mechanism: "PLAIN".into(),
                response: "\0guest\0guest".into(),
                locale: "en_US".into(),
            })));
            let AMQPFrame::Method(0, AMQPClass::Connection(c::AMQPMethod::Tune(tune))) = r.recv()
            else {
                panic!("expected connection.tune");
            };
            // By default the server's limits as they are (RabbitMQ refuses 0, "no limit", when
            // it has one), without heartbeats.
            r.send(&m(c::AMQPMethod::TuneOk(tune_ok(c::TuneOk {
                channel_max: tune.channel_max,
                frame_max: tune.frame_max,
                heartbeat: 0,
            }))));
            r.send(&m(c::AMQPMethod::Open(c::Open {
                virtual_host: "/".into(),
            })));
            assert!(matches!(
                r.recv(),
                AMQPFrame::Method(0, AMQPClass::Connection(c::AMQPMethod::OpenOk(_)))
            ));
            r
        }

        /// Reads until the server closes the socket (Ok) or `timeout` passes (Err), dropping
        /// whatever frames come meanwhile.
        pub fn wait_eof(&mut self, timeout: Duration) -> Result<(), ()> {
            let deadline = std::time::Instant::now() + timeout;
            let mut chunk = [0u8; 8192];
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(());
                }
                self.s.set_read_timeout(Some(left)).unwrap();
                match self.s.read(&mut chunk) {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        return Err(())
                    }
                    Err(_) => return Ok(()), // reset
                }
            }
        }

        /// The next frame within `timeout`, or None.
        pub fn recv_within(&mut self, timeout: Duration) -> Option<AMQPFrame> {
            self.s.set_read_timeout(Some(timeout)).unwrap();
            let deadline = std::time::Instant::now() + timeout;
            let f = loop {
                if let Ok((rest, f)) = parse_frame(&self.buf[..]) {
                    let used = self.buf.len() - rest.len();
                    self.buf.drain(..used);
                    break Some(f);
                }
                if std::time::Instant::now() >= deadline {
                    break None;
                }
                let mut chunk = [0u8; 8192];
                match self.s.read(&mut chunk) {
                    Ok(0) | Err(_) => break None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                }
            };
            self.s
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            f
        }

        pub fn send(&mut self, f: &AMQPFrame) {
            let mut out = Vec::new();
            self.encode(f, &mut out);
            self.send_bytes(&out);
        }

        pub fn encode(&self, f: &AMQPFrame, out: &mut Vec<u8>) {
            let (b, _) = gen_frame(f)(WriteContext::from(Vec::new()))
                .unwrap()
                .into_inner();
            out.extend_from_slice(&b);
        }

        pub fn send_bytes(&mut self, b: &[u8]) {
            self.s.write_all(b).unwrap();
        }

        /// The next frame; panics if the socket closes or nothing comes for 5 s.
        pub fn recv(&mut self) -> AMQPFrame {
            loop {
                if let Ok((rest, f)) = parse_frame(&self.buf[..]) {
                    let used = self.buf.len() - rest.len();
                    self.buf.drain(..used);
                    return f;
                }
                let mut chunk = [0u8; 8192];
                let n = self.s.read(&mut chunk).unwrap();
                assert!(n > 0, "server closed the socket");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }

        /// The frames of one basic.publish on channel 1 with a small body, appended to `out`.
        pub fn publish_frames(&self, exchange: &str, key: &str, body: &[u8], out: &mut Vec<u8>) {
            self.content_frames(1, exchange, key, false, body.len() as u64, body, out);
        }

        /// As [`Raw::publish_frames`], mandatory.
        pub fn publish_frames_mandatory(
            &self,
            exchange: &str,
            key: &str,
            body: &[u8],
            out: &mut Vec<u8>,
        ) {
            self.content_frames(1, exchange, key, true, body.len() as u64, body, out);
        }

        /// A basic.publish on `ch` announcing `announced` bytes of body, and only `body` of
        /// them (split into frames of at most 128 KiB).
        pub fn partial_publish_frames(
            &self,
            ch: u16,
            key: &str,
            announced: u64,
            body: &[u8],
            out: &mut Vec<u8>,
        ) {
            self.content_frames(ch, "", key, false, announced, body, out);
        }

        #[allow(clippy::too_many_arguments)]
        fn content_frames(
            &self,
            ch: u16,
            exchange: &str,
            key: &str,
            mandatory: bool,
            announced: u64,
            body: &[u8],
            out: &mut Vec<u8>,
        ) {
            self.encode(
                &AMQPFrame::Method(
                    ch,
                    AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                        exchange: exchange.into(),
                        routing_key: key.into(),
                        mandatory,
                        immediate: false,
                    })),
                ),
                out,
            );
            self.encode(
                &AMQPFrame::Header(
                    ch,
                    AMQPContentHeader {
                        class_id: 60,
                        body_size: announced,
                        properties: AMQPProperties::default(),
                    },
                ),
                out,
            );
            for part in body.chunks(128 * 1024 - 8) {
                self.encode(&AMQPFrame::Body(ch, part.to_vec()), out);
            }
        }

        /// Socket writes give up after `t` (see [`Raw::try_send_bytes`]).
        pub fn set_write_timeout(&self, t: Option<Duration>) {
            self.s.set_write_timeout(t).unwrap();
        }

        /// Writes `b`; an error (the write timed out: the server is not reading) instead of a
        /// panic.
        pub fn try_send_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
            self.s.write_all(b)
        }
    }
}

impl Env {
    /// `host:port` of the broker under test.
    pub fn addr(&self) -> String {
        self.uri
            .rsplit('@')
            .next()
            .and_then(|rest| rest.split('/').next())
            .expect("host:port in the URI")
            .to_string()
    }
}
