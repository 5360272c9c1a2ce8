//! The one harness of the integration tests (each declares `mod support;`):
//! - [`broker`]: Warren in-process on a free port ([`TestBroker`]);
//! - [`child`]: the `warren` binary as a child process ([`child::ChildBroker`]), and running
//!   it to its exit;
//! - [`raw`]: the raw-frame AMQP client ([`raw::Raw`]) and frame builders;
//! - [`lab`]: the crash and power-loss rounds;
//! - here: the broker a lapin test talks to ([`Env`]), unique names, time limits, lapin steps
//!   (publish, declare, bind, consume, drain), and reading AMQP reply codes out of lapin's
//!   errors.
//!
//! By default every [`Env`] test talks to a Warren started in-process ([`TestBroker`]).
//! With `WARREN_REF_URI` set (e.g. `amqp://guest:guest@127.0.0.1:5702/%2f`, a RabbitMQ from
//! `/work/shared/bin/rabbitmq-ref start 5702`), the tests that only need a URI talk to that
//! broker instead, which checks the expectations themselves against the reference.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::AMQPErrorKind;
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ErrorKind,
    PublisherConfirm,
};

pub mod broker;
pub mod child;
pub mod ctl;
pub mod http;
pub mod lab;
pub mod raw;

pub use broker::TestBroker;

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

    /// `host:port` of the broker under test.
    pub fn addr(&self) -> String {
        self.uri
            .rsplit('@')
            .next()
            .and_then(|rest| rest.split('/').next())
            .expect("host:port in the URI")
            .to_string()
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

/// Persistent: delivery mode 2.
pub fn persistent() -> BasicProperties {
    BasicProperties::default().with_delivery_mode(2)
}

/// A durable queue.
pub fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// The environment variable `name` parsed, or `default` if it is unset or does not parse
/// (the knobs of the long tests: rounds, seconds).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
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

/// Asserts that `e` is a channel close (soft error) with `expected`.
#[track_caller]
pub fn assert_soft(e: &lapin::Error, expected: u16) {
    assert_eq!(code(e), Some(expected), "unexpected error: {e:?}");
    assert!(!is_hard(e), "expected a channel error, got {e:?}");
}

/// Asserts that `e` is a connection close (hard error) with `expected`.
#[track_caller]
pub fn assert_hard(e: &lapin::Error, expected: u16) {
    assert_eq!(code(e), Some(expected), "unexpected error: {e:?}");
    assert!(is_hard(e), "expected a connection error, got {e:?}");
}

/// Asserts that `r` failed with a channel close (soft error) with `expected`.
#[track_caller]
pub fn assert_channel_error<T: std::fmt::Debug>(r: lapin::Result<T>, expected: u16) {
    match r {
        Ok(v) => panic!("expected channel error {expected}, got Ok({v:?})"),
        Err(e) => assert_soft(&e, expected),
    }
}

/// Asserts that `r` failed with a connection close (hard error) with `expected`.
#[track_caller]
pub fn assert_connection_error<T: std::fmt::Debug>(r: lapin::Result<T>, expected: u16) {
    match r {
        Ok(v) => panic!("expected connection error {expected}, got Ok({v:?})"),
        Err(e) => assert_hard(&e, expected),
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
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
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
    within(send(ch, exchange, key, body, props)).await;
}

// ---- lapin steps without a time limit (wrap them in `within` where one belongs) ------------

/// basic.publish of `body`; returns the publisher confirm to await (in confirm mode).
pub async fn send(
    ch: &Channel,
    exchange: &str,
    key: &str,
    body: &[u8],
    props: BasicProperties,
) -> PublisherConfirm {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .expect("publish")
}

/// A passive queue.declare of `q`: its counts, or the error (a 404 closes the channel).
pub async fn declare_passive(ch: &Channel, q: &str) -> lapin::Result<lapin::Queue> {
    ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
}

/// The ready messages of `q`, by a passive declare.
pub async fn message_count(ch: &Channel, q: &str) -> u32 {
    declare_passive(ch, q)
        .await
        .unwrap_or_else(|e| panic!("passive declare {q}: {e:?}"))
        .message_count()
}

/// A server-named queue, exclusive to the channel's connection; returns its name.
pub async fn server_named_queue(ch: &Channel) -> String {
    ch.queue_declare(
        "".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("queue.declare")
    .name()
    .as_str()
    .to_string()
}

/// queue.bind of `q` to `exchange` with `key`.
pub async fn bind(ch: &Channel, q: &str, exchange: &str, key: &str) {
    bind_with(ch, q, exchange, key, FieldTable::default()).await;
}

/// queue.bind with binding arguments.
pub async fn bind_with(ch: &Channel, q: &str, exchange: &str, key: &str, args: FieldTable) {
    ch.queue_bind(
        q.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        args,
    )
    .await
    .unwrap_or_else(|e| panic!("bind {q} to {exchange} with {key:?}: {e:?}"));
}

/// queue.unbind of `q` from `exchange` with `key`.
pub async fn unbind(ch: &Channel, q: &str, exchange: &str, key: &str) {
    ch.queue_unbind(q.into(), exchange.into(), key.into(), FieldTable::default())
        .await
        .unwrap_or_else(|e| panic!("unbind {q} from {exchange} with {key:?}: {e:?}"));
}

/// basic.consume of `q` with consumer tag `tag`.
pub async fn consume(ch: &Channel, q: &str, tag: &str, no_ack: bool) -> Consumer {
    ch.basic_consume(
        q.into(),
        tag.into(),
        BasicConsumeOptions {
            no_ack,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap_or_else(|e| panic!("consume {q}: {e:?}"))
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
        FieldTable::default(),
    ))
    .await
    .expect("round trip");
}
