//! The raw AMQP client of the tests, for what lapin cannot send or hides: bad input, a
//! prefetch-size, the delivery tags and `multiple` flags of confirms, heartbeats, a client
//! that never reads. A tokio socket: every test that speaks raw frames uses this one.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::time::{Duration, Instant};

use amq_protocol::frame::{gen_frame, parse_frame, AMQPContentHeader, AMQPFrame, WriteContext};
use amq_protocol::protocol::basic::AMQPProperties;
use amq_protocol::protocol::{basic, channel as chan, connection as conn, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::time::timeout;

/// How long one read or write may take before the test fails instead of hanging.
pub use super::STEP;
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

// ---- frames ------------------------------------------------------------------------------

/// The bytes of `f`.
pub fn encode(f: &AMQPFrame) -> Vec<u8> {
    let (buf, _) = gen_frame(f)(WriteContext::from(Vec::new()))
        .unwrap()
        .into_inner();
    buf
}

/// Appends the bytes of `f` to `out`.
pub fn put(f: &AMQPFrame, out: &mut Vec<u8>) {
    out.extend_from_slice(&encode(f));
}

/// A frame written out by hand: type, channel, payload, frame-end.
pub fn raw_frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![kind];
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    v.extend_from_slice(payload);
    v.push(0xCE);
    v
}

/// A method frame's payload: class, method, arguments as bytes.
pub fn method_payload(class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    let mut v = class.to_be_bytes().to_vec();
    v.extend_from_slice(&method.to_be_bytes());
    v.extend_from_slice(args);
    v
}

/// A field table (4-byte length first) nested `depth` deep; with `array`, every level is an
/// array holding the next table.
pub fn nested_table(depth: usize, array: bool) -> Vec<u8> {
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

/// A short string: its length in a byte, then its bytes.
pub fn short(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// The payload of a method that carries a table, the table given as raw bytes:
/// queue.declare, exchange.declare, queue.bind or basic.consume.
pub fn method_with_table(class: u16, method: u16, table: &[u8]) -> Vec<u8> {
    // The short strings after the reserved short, then one octet of bits, then the table.
    let shorts: &[&str] = match (class, method) {
        (50, 10) => &["deep-q"],                    // queue.declare: queue
        (40, 10) => &["deep-x", "direct"],          // exchange.declare: exchange, type
        (50, 20) => &["deep-q", "amq.direct", "k"], // queue.bind: queue, exchange, key
        (60, 20) => &["deep-q", "tag"],             // basic.consume: queue, tag
        _ => unreachable!(),
    };
    let mut a = vec![0, 0];
    for s in shorts {
        a.extend(short(s));
    }
    a.push(0);
    a.extend_from_slice(table);
    method_payload(class, method, &a)
}

/// A connection method (channel 0).
pub fn conn_frame(m: conn::AMQPMethod) -> AMQPFrame {
    AMQPFrame::Method(0, AMQPClass::Connection(m))
}

/// channel.open on `ch`.
pub fn channel_open(ch: u16) -> AMQPFrame {
    AMQPFrame::Method(
        ch,
        AMQPClass::Channel(chan::AMQPMethod::Open(chan::Open {})),
    )
}

/// connection.close 200 "bye", as a client sends it.
pub fn client_close() -> AMQPFrame {
    conn_frame(conn::AMQPMethod::Close(conn::Close {
        reply_code: 200,
        reply_text: "bye".into(),
        class_id: 0,
        method_id: 0,
    }))
}

/// connection.close-ok.
pub fn close_ok() -> AMQPFrame {
    conn_frame(conn::AMQPMethod::CloseOk(conn::CloseOk {}))
}

/// basic.publish on `ch` to the default exchange.
pub fn publish_frame(ch: u16, routing_key: &str) -> AMQPFrame {
    publish_method(ch, "", routing_key, false)
}

pub fn publish_method(ch: u16, exchange: &str, routing_key: &str, mandatory: bool) -> AMQPFrame {
    AMQPFrame::Method(
        ch,
        AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            mandatory,
            immediate: false,
        })),
    )
}

/// A content header of class basic announcing `body_size` bytes, no properties.
pub fn header_frame(ch: u16, body_size: u64) -> AMQPFrame {
    AMQPFrame::Header(
        ch,
        AMQPContentHeader {
            class_id: 60,
            body_size,
            properties: AMQPProperties::default(),
        },
    )
}

/// The frames of one basic.publish on `ch` announcing `announced` bytes of body, and only
/// `body` of them (split into frames of at most 128 KiB), appended to `out`.
pub fn content_frames(
    ch: u16,
    (exchange, key, mandatory): (&str, &str, bool),
    announced: u64,
    body: &[u8],
    out: &mut Vec<u8>,
) {
    put(&publish_method(ch, exchange, key, mandatory), out);
    put(&header_frame(ch, announced), out);
    for part in body.chunks(128 * 1024 - 8) {
        put(&AMQPFrame::Body(ch, part.to_vec()), out);
    }
}

/// The frames of one basic.publish on channel 1 with a small body, appended to `out`.
pub fn publish_frames(exchange: &str, key: &str, body: &[u8], out: &mut Vec<u8>) {
    content_frames(1, (exchange, key, false), body.len() as u64, body, out);
}

/// As [`publish_frames`], mandatory.
pub fn publish_frames_mandatory(exchange: &str, key: &str, body: &[u8], out: &mut Vec<u8>) {
    content_frames(1, (exchange, key, true), body.len() as u64, body, out);
}

/// The client properties the client sends: a product name and the
/// `authentication_failure_close` capability (and no `connection.blocked`).
pub fn client_properties(auth_failure_close: bool) -> FieldTable {
    let mut caps = FieldTable::default();
    caps.insert(
        "authentication_failure_close".into(),
        AMQPValue::Boolean(auth_failure_close),
    );
    let mut p = FieldTable::default();
    p.insert(
        "product".into(),
        AMQPValue::LongString(LongString::from("warren raw test client")),
    );
    p.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    p
}

// ---- the client --------------------------------------------------------------------------

/// What the server sent: a frame, or the end of the stream (EOF or a reset).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one at a time, on a test's stack
pub enum Read {
    Frame(AMQPFrame),
    Closed,
}

/// What a [`Raw`] talks over: a TCP socket, or a TLS session on one (tests/tls.rs).
pub trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Stream for T {}

pub struct Raw {
    s: Box<dyn Stream>,
    buf: Vec<u8>,
    write_timeout: Duration,
}

impl Raw {
    /// A bare socket to `addr`; nothing sent yet.
    pub async fn tcp(addr: impl ToSocketAddrs) -> Raw {
        let s = timeout(STEP, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        s.set_nodelay(true).unwrap();
        Raw::over(s)
    }

    /// A client over `s` (connected, nothing sent yet).
    pub fn over(s: impl Stream + 'static) -> Raw {
        Raw {
            s: Box::new(s),
            buf: Vec::new(),
            write_timeout: STEP,
        }
    }

    /// Sends the protocol header and reads connection.start.
    pub async fn start(addr: impl ToSocketAddrs) -> Raw {
        let mut r = Raw::tcp(addr).await;
        r.write(PROTOCOL_HEADER).await;
        r.expect_start().await;
        r
    }

    /// The whole handshake as guest on "/": start-ok PLAIN, tune-ok, open, open-ok. The
    /// tune-ok is `tune_ok` of the server's limits as they are (RabbitMQ refuses 0, "no
    /// limit", when it has one) without heartbeats.
    pub async fn login_with(
        addr: impl ToSocketAddrs,
        tune_ok: impl FnOnce(conn::TuneOk) -> conn::TuneOk,
    ) -> Raw {
        let mut r = Raw::start(addr).await;
        r.start_ok("guest", false).await;
        r.finish_login(tune_ok).await;
        r
    }

    /// After start-ok: connection.tune answered with `tune_ok` (as in [`Raw::login_with`]),
    /// then open "/" and open-ok.
    pub async fn finish_login(&mut self, tune_ok: impl FnOnce(conn::TuneOk) -> conn::TuneOk) {
        let tune = self.expect_tune().await;
        self.send(&conn_frame(conn::AMQPMethod::TuneOk(tune_ok(
            conn::TuneOk {
                channel_max: tune.channel_max,
                frame_max: tune.frame_max,
                heartbeat: 0,
            },
        ))))
        .await;
        self.send_open("/").await;
        self.expect_open_ok().await;
    }

    /// The handshake with the server's limits and no heartbeats.
    pub async fn login(addr: impl ToSocketAddrs) -> Raw {
        Raw::login_with(addr, |t| t).await
    }

    /// Logged in, with channel 1 open.
    pub async fn open(addr: impl ToSocketAddrs) -> Raw {
        let mut r = Raw::login(addr).await;
        r.open_channel(1).await;
        r
    }

    pub async fn expect_start(&mut self) -> conn::Start {
        match self.next().await {
            Read::Frame(AMQPFrame::Method(
                0,
                AMQPClass::Connection(conn::AMQPMethod::Start(s)),
            )) => s,
            other => panic!("expected connection.start, got {other:?}"),
        }
    }

    pub async fn start_ok(&mut self, password: &str, auth_failure_close: bool) {
        self.send(&conn_frame(conn::AMQPMethod::StartOk(conn::StartOk {
            client_properties: client_properties(auth_failure_close),
            mechanism: "PLAIN".into(),
            response: format!("\0guest\0{password}").into(),
            locale: "en_US".into(),
        })))
        .await;
    }

    pub async fn expect_tune(&mut self) -> conn::Tune {
        match self.next().await {
            Read::Frame(AMQPFrame::Method(0, AMQPClass::Connection(conn::AMQPMethod::Tune(t)))) => {
                t
            }
            other => panic!("expected connection.tune, got {other:?}"),
        }
    }

    pub async fn send_open(&mut self, vhost: &str) {
        self.send(&conn_frame(conn::AMQPMethod::Open(conn::Open {
            virtual_host: vhost.into(),
        })))
        .await;
    }

    pub async fn expect_open_ok(&mut self) {
        match self.next().await {
            Read::Frame(AMQPFrame::Method(
                0,
                AMQPClass::Connection(conn::AMQPMethod::OpenOk(_)),
            )) => {}
            other => panic!("expected connection.open-ok, got {other:?}"),
        }
    }

    /// channel.open on `ch`, and its open-ok.
    pub async fn open_channel(&mut self, ch: u16) {
        self.send(&channel_open(ch)).await;
        match self.next().await {
            Read::Frame(AMQPFrame::Method(c, AMQPClass::Channel(chan::AMQPMethod::OpenOk(_))))
                if c == ch => {}
            other => panic!("expected channel.open-ok on {ch}, got {other:?}"),
        }
    }

    /// Writes `bytes`; fails the test if that takes longer than the write timeout.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.try_write(bytes).await.expect("write");
    }

    pub async fn send(&mut self, f: &AMQPFrame) {
        self.write(&encode(f)).await;
    }

    /// Writes give up after `t` (see [`Raw::try_write`]); [`STEP`] by default.
    pub fn set_write_timeout(&mut self, t: Duration) {
        self.write_timeout = t;
    }

    /// Writes `bytes`; an error (the write timed out: the server is not reading, or the
    /// socket is gone) instead of a panic.
    pub async fn try_write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match timeout(self.write_timeout, self.s.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
        }
    }

    /// Half-closes the socket: the server reads EOF.
    pub async fn shutdown_write(&mut self) {
        self.s.shutdown().await.unwrap();
    }

    /// A whole frame from what was read, if there is one.
    fn take_frame(&mut self) -> Option<AMQPFrame> {
        if self.buf.len() < 7 {
            return None;
        }
        let size =
            u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]]) as usize;
        if self.buf.len() < size + 8 {
            return None;
        }
        let bytes: Vec<u8> = self.buf.drain(..size + 8).collect();
        let (rest, f) = parse_frame(&bytes[..])
            .unwrap_or_else(|e| panic!("unparsable frame {bytes:02x?}: {e:?}"));
        assert!(rest.is_empty());
        Some(f)
    }

    /// The next frame (heartbeats included) or `Closed`, if one comes within `t`.
    pub async fn next_within(&mut self, t: Duration) -> Option<Read> {
        let deadline = Instant::now() + t;
        loop {
            if let Some(f) = self.take_frame() {
                return Some(Read::Frame(f));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let mut chunk = [0u8; 16 * 1024];
            match timeout(left, self.s.read(&mut chunk)).await {
                Err(_) => return None,
                Ok(Ok(0)) | Ok(Err(_)) => return Some(Read::Closed),
                Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next frame (heartbeats included), or `Closed`; fails the test after [`STEP`].
    pub async fn next_raw(&mut self) -> Read {
        match self.next_within(STEP).await {
            None => panic!("nothing from the server in {STEP:?}"),
            Some(Read::Closed) => {
                assert!(
                    self.buf.is_empty(),
                    "stream ended inside a frame: {:02x?}",
                    self.buf
                );
                Read::Closed
            }
            Some(f) => f,
        }
    }

    /// The next frame that is not a heartbeat, or `Closed`.
    pub async fn next(&mut self) -> Read {
        loop {
            match self.next_raw().await {
                Read::Frame(AMQPFrame::Heartbeat) => continue,
                other => return other,
            }
        }
    }

    /// The next frame (heartbeats included); fails the test if the socket closes or nothing
    /// comes within [`STEP`].
    pub async fn recv(&mut self) -> AMQPFrame {
        match self.next_raw().await {
            Read::Frame(f) => f,
            Read::Closed => panic!("server closed the socket"),
        }
    }

    /// The next frame within `t`, or None (nothing came, or the socket closed).
    pub async fn recv_within(&mut self, t: Duration) -> Option<AMQPFrame> {
        match self.next_within(t).await {
            Some(Read::Frame(f)) => Some(f),
            _ => None,
        }
    }

    /// The next frame that is not a heartbeat must be a connection.close; returns it.
    pub async fn expect_close_frame(&mut self) -> conn::Close {
        match self.next().await {
            Read::Frame(AMQPFrame::Method(
                0,
                AMQPClass::Connection(conn::AMQPMethod::Close(c)),
            )) => c,
            other => panic!("expected connection.close, got {other:?}"),
        }
    }

    /// The server must close the connection now: connection.close, which we answer with
    /// close-ok like a client, then the end of the stream. Returns the close.
    pub async fn expect_close(&mut self) -> conn::Close {
        let close = self.expect_close_frame().await;
        // The server may already have hung up (a framing error leaves nothing to wait for).
        let _ = self.try_write(&encode(&close_ok())).await;
        self.expect_eof().await;
        close
    }

    /// Asserts the close names `code` (and its name first in the text) and
    /// `(class_id, method_id)`; returns its text. `case` names what failed, in the panic.
    pub async fn expect_close_with(&mut self, case: &str, code: u16, ids: (u16, u16)) -> String {
        let c = self.expect_close().await;
        assert_eq!(c.reply_code, code, "{case}: {c:?}");
        assert_eq!((c.class_id, c.method_id), ids, "{case}: {c:?}");
        assert!(
            c.reply_text
                .as_str()
                .starts_with(warren_codec::reply::name(code)),
            "{case}: {c:?}"
        );
        c.reply_text.to_string()
    }

    /// Nothing more but the end of the stream (heartbeats aside).
    pub async fn expect_eof(&mut self) {
        match self.next().await {
            Read::Closed => {}
            Read::Frame(f) => panic!("expected the socket to close, got {f:?}"),
        }
    }

    /// Every byte until the server closes the socket; fails the test after [`STEP`].
    pub async fn read_to_close(&mut self) -> Vec<u8> {
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

    /// Reads until the server closes the socket (Ok) or `t` passes (Err), dropping whatever
    /// frames come meanwhile.
    pub async fn wait_eof(&mut self, t: Duration) -> Result<(), ()> {
        let deadline = Instant::now() + t;
        let mut chunk = [0u8; 8192];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match timeout(left, self.s.read(&mut chunk)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
                Ok(Ok(_)) => {}
            }
        }
    }
}
