//! One AMQP 0-9-1 client connection, spoken by hand through `warren-codec`: the URI, the
//! handshake (start/tune/open with PLAIN), one channel, and the few synchronous control
//! methods the tool needs (declare, bind, qos, consume, confirm.select, delete, close).
//!
//! Control methods go through amq-protocol's `AMQPClass` and `warren_codec::encode::method`,
//! frames come back through `warren_codec::decode::decode_frame`. The hot paths (publishing
//! and consuming) live in `publisher.rs` and `consumer.rs` and only borrow the socket and
//! buffers from here.

use std::fmt;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren_codec::decode::decode_frame;
use warren_codec::encode;
use warren_codec::protocol::{basic, channel, confirm, connection, exchange, queue};
use warren_codec::types::{AMQPValue, FieldTable, LongString, ShortString};
use warren_codec::{AMQPClass, Frame, Method, PROTOCOL_HEADER};

/// The one channel every connection of the tool uses.
pub const CHANNEL: u16 = 1;
/// The largest frame we accept (and ask for): RabbitMQ's default.
const MAX_FRAME: u32 = 131_072;
/// How much room a read makes in the read buffer.
pub const READ_CHUNK: usize = 256 * 1024;
/// How long a polite close (flush, connection.close, close-ok) may take before we just drop.
/// Generous: the close-ok comes only once the broker has worked through everything we sent
/// before it, which after an unthrottled run can be megabytes of socket buffer; deleting the
/// run's exchange before that would make the broker fail those publishes.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting and the handshake may take. A broker out of file descriptors may
/// accept a socket and never answer (RabbitMQ 3.x waits for a file handle).
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);

/// Every failure of the tool: a message for the user.
#[derive(Debug)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error(format!("i/o: {e}"))
    }
}

impl From<warren_codec::FrameError> for Error {
    fn from(e: warren_codec::FrameError) -> Self {
        Error(format!("bad frame from the broker: {e}"))
    }
}

pub type Result<T> = std::result::Result<T, Error>;

pub fn err(msg: impl Into<String>) -> Error {
    Error(msg.into())
}

/// `amqp://user:pass@host:port/vhost`, percent-decoded.
#[derive(Debug, Clone)]
pub struct Uri {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub pass: String,
    pub vhost: String,
}

impl Uri {
    pub fn parse(s: &str) -> Result<Uri> {
        let rest = s
            .strip_prefix("amqp://")
            .ok_or_else(|| err(format!("{s}: only amqp:// URIs are supported")))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, pass) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((user, pass)) => (percent_decode(user)?, percent_decode(pass)?),
                None => (percent_decode(u)?, String::new()),
            },
            None => ("guest".to_string(), "guest".to_string()),
        };
        // "[::1]:5672", "host:5672", "host"
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| err(format!("{s}: unclosed '[' in host")))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p.parse().map_err(|_| err(format!("{s}: bad port {p:?}")))?,
            None => 5672,
        };
        let host = if host.is_empty() {
            "127.0.0.1".to_string()
        } else {
            host
        };
        // The URI spec makes "amqp://host/" the vhost "", which no broker has by default;
        // like most clients, take an empty path as the default vhost "/".
        let vhost = match percent_decode(path)? {
            v if v.is_empty() => "/".to_string(),
            v => v,
        };
        Ok(Uri {
            host,
            port,
            user,
            pass,
            vhost,
        })
    }
}

fn percent_decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| err(format!("bad percent-escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| err(format!("{s:?} is not UTF-8 once decoded")))
}

/// A connection with one open channel ([`CHANNEL`]).
pub struct Conn {
    pub stream: TcpStream,
    pub rbuf: BytesMut,
    pub wbuf: BytesMut,
    /// Negotiated in connection.tune-ok.
    pub frame_max: u32,
}

impl Conn {
    /// After the socket was readable: reads what is there into `rbuf`; true if anything
    /// was read (false: a spurious wake-up), an error once the broker has closed.
    pub fn read_some(&mut self) -> Result<bool> {
        self.rbuf.reserve(READ_CHUNK);
        match self.stream.try_read_buf(&mut self.rbuf) {
            Ok(0) => Err(err("the broker closed the connection")),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Writes what the socket takes now of the write buffer (after `writable()` said so).
    pub fn write_some(&mut self) -> std::io::Result<()> {
        match self.stream.try_write(&self.wbuf) {
            Ok(n) => {
                bytes::Buf::advance(&mut self.wbuf, n);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Connects, authenticates with PLAIN, opens the vhost and channel 1. Heartbeats are
    /// turned off (tune-ok heartbeat 0) so an idle or busy connection never has to service
    /// a timer.
    pub async fn open(uri: &Uri) -> Result<Conn> {
        tokio::time::timeout(OPEN_TIMEOUT, Self::open_inner(uri))
            .await
            .map_err(|_| {
                err(format!(
                    "no answer from {}:{} within {} s while opening a connection",
                    uri.host,
                    uri.port,
                    OPEN_TIMEOUT.as_secs()
                ))
            })?
    }

    async fn open_inner(uri: &Uri) -> Result<Conn> {
        let stream = TcpStream::connect((uri.host.as_str(), uri.port))
            .await
            .map_err(|e| err(format!("connect {}:{}: {e}", uri.host, uri.port)))?;
        stream.set_nodelay(true)?;
        let mut c = Conn {
            stream,
            rbuf: BytesMut::with_capacity(4096),
            wbuf: BytesMut::with_capacity(4096),
            frame_max: MAX_FRAME,
        };
        c.wbuf.extend_from_slice(&PROTOCOL_HEADER);
        c.flush().await?;

        let start = match c.next_method().await? {
            AMQPClass::Connection(connection::AMQPMethod::Start(s)) => s,
            other => return Err(unexpected("connection.start", &other)),
        };
        let mechanisms = String::from_utf8_lossy(start.mechanisms.as_bytes()).into_owned();
        if !mechanisms.split(' ').any(|m| m == "PLAIN") {
            return Err(err(format!(
                "the broker does not offer PLAIN (offers {mechanisms:?})"
            )));
        }
        let mut caps = FieldTable::default();
        for cap in [
            "publisher_confirms",
            "consumer_cancel_notify",
            "basic.nack",
            "exchange_exchange_bindings",
        ] {
            caps.insert(ShortString::from(cap), AMQPValue::Boolean(true));
        }
        let mut props = FieldTable::default();
        props.insert(
            "product".into(),
            AMQPValue::LongString(LongString::from("warren-perf")),
        );
        props.insert(
            "version".into(),
            AMQPValue::LongString(LongString::from(env!("CARGO_PKG_VERSION"))),
        );
        props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
        let response = format!("\0{}\0{}", uri.user, uri.pass);
        c.send(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::StartOk(connection::StartOk {
                client_properties: props,
                mechanism: "PLAIN".into(),
                response: LongString::from(response),
                locale: "en_US".into(),
            })),
        )
        .await?;

        let tune = match c.next_method().await? {
            AMQPClass::Connection(connection::AMQPMethod::Tune(t)) => t,
            other => return Err(unexpected("connection.tune", &other)),
        };
        let frame_max = match tune.frame_max {
            0 => MAX_FRAME,
            n => n.min(MAX_FRAME),
        };
        let channel_max = match tune.channel_max {
            0 => 2047,
            n => n,
        };
        c.send(
            0,
            &AMQPClass::Connection(connection::AMQPMethod::TuneOk(connection::TuneOk {
                channel_max,
                frame_max,
                heartbeat: 0,
            })),
        )
        .await?;
        c.frame_max = frame_max;
        c.rpc(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Open(connection::Open {
                virtual_host: uri.vhost.as_str().into(),
            })),
            (10, 41),
        )
        .await?;
        c.rpc(
            CHANNEL,
            AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {})),
            (20, 11),
        )
        .await?;
        Ok(c)
    }

    /// Writes out the whole write buffer.
    pub async fn flush(&mut self) -> Result<()> {
        self.stream.write_all(&self.wbuf).await?;
        self.wbuf.clear();
        Ok(())
    }

    /// Encodes one control method and flushes it.
    pub async fn send(&mut self, ch: u16, m: &AMQPClass) -> Result<()> {
        encode::method(&mut self.wbuf, ch, m)?;
        self.flush().await
    }

    /// The next frame, reading as needed.
    async fn read_frame(&mut self) -> Result<Frame> {
        loop {
            if let Some(f) = decode_frame(&mut self.rbuf, self.frame_max)? {
                return Ok(f);
            }
            self.rbuf.reserve(READ_CHUNK.min(self.frame_max as usize));
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(err("the broker closed the connection"));
            }
        }
    }

    /// The next generated method on any channel, skipping heartbeats, content and confirms;
    /// a connection.close or channel.close from the broker is answered and becomes an error.
    async fn next_method(&mut self) -> Result<AMQPClass> {
        loop {
            if let Frame::Method(_, Method::Other(m)) = self.read_frame().await? {
                self.check_close(&m).await?;
                return Ok(*m);
            }
        }
    }

    /// If `m` closes the connection or channel, answers with close-ok and returns the
    /// broker's reason as an error.
    pub async fn check_close(&mut self, m: &AMQPClass) -> Result<()> {
        match m {
            AMQPClass::Connection(connection::AMQPMethod::Close(c)) => {
                let _ = self
                    .send(
                        0,
                        &AMQPClass::Connection(connection::AMQPMethod::CloseOk(
                            connection::CloseOk {},
                        )),
                    )
                    .await;
                Err(err(format!(
                    "the broker closed the connection: {} {}",
                    c.reply_code, c.reply_text
                )))
            }
            AMQPClass::Channel(channel::AMQPMethod::Close(c)) => {
                let _ = self
                    .send(
                        CHANNEL,
                        &AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {})),
                    )
                    .await;
                Err(err(format!(
                    "the broker closed the channel: {} {}",
                    c.reply_code, c.reply_text
                )))
            }
            _ => Ok(()),
        }
    }

    /// Sends requests with up to `window` of them waiting for their reply at once (a
    /// pipelining client): each `(request, expected reply)` in order.
    pub async fn pipeline(
        &mut self,
        requests: impl IntoIterator<Item = (AMQPClass, (u16, u16))>,
        window: usize,
    ) -> Result<()> {
        let mut waiting = std::collections::VecDeque::new();
        for (req, reply) in requests {
            encode::method(&mut self.wbuf, CHANNEL, &req)?;
            waiting.push_back(reply);
            if waiting.len() >= window.max(1) {
                self.flush().await?;
                while waiting.len() >= window.max(1) {
                    self.expect(&mut waiting).await?;
                }
            }
        }
        self.flush().await?;
        while !waiting.is_empty() {
            self.expect(&mut waiting).await?;
        }
        Ok(())
    }

    /// Reads the next reply and checks it is the first one `waiting` expects.
    async fn expect(&mut self, waiting: &mut std::collections::VecDeque<(u16, u16)>) -> Result<()> {
        let m = self.next_method().await?;
        let got = (m.get_amqp_class_id(), m.get_amqp_method_id());
        match waiting.pop_front() {
            Some(want) if want == got => Ok(()),
            want => Err(err(format!("expected {want:?} in reply, got {got:?}"))),
        }
    }

    /// Sends `req` and waits for the method `(class, method)` in reply.
    pub async fn rpc(&mut self, ch: u16, req: AMQPClass, reply: (u16, u16)) -> Result<AMQPClass> {
        self.send(ch, &req).await?;
        loop {
            let m = self.next_method().await?;
            if (m.get_amqp_class_id(), m.get_amqp_method_id()) == reply {
                return Ok(m);
            }
        }
    }

    pub async fn declare_exchange(&mut self, name: &str, kind: &str, durable: bool) -> Result<()> {
        self.rpc(
            CHANNEL,
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(exchange::Declare {
                exchange: name.into(),
                kind: kind.into(),
                durable,
                ..Default::default()
            })),
            (40, 11),
        )
        .await
        .map(drop)
    }

    pub async fn delete_exchange(&mut self, name: &str) -> Result<()> {
        self.rpc(
            CHANNEL,
            AMQPClass::Exchange(exchange::AMQPMethod::Delete(exchange::Delete {
                exchange: name.into(),
                ..Default::default()
            })),
            (40, 21),
        )
        .await
        .map(drop)
    }

    pub async fn declare_queue(
        &mut self,
        name: &str,
        durable: bool,
        arguments: &amq_protocol::types::FieldTable,
    ) -> Result<()> {
        self.rpc(
            CHANNEL,
            AMQPClass::Queue(queue::AMQPMethod::Declare(queue::Declare {
                queue: name.into(),
                durable,
                arguments: arguments.clone(),
                ..Default::default()
            })),
            (50, 11),
        )
        .await
        .map(drop)
    }

    pub async fn bind_queue(&mut self, queue: &str, exchange: &str, key: &str) -> Result<()> {
        self.rpc(
            CHANNEL,
            AMQPClass::Queue(queue::AMQPMethod::Bind(queue::Bind {
                queue: queue.into(),
                exchange: exchange.into(),
                routing_key: key.into(),
                ..Default::default()
            })),
            (50, 21),
        )
        .await
        .map(drop)
    }

    /// Deletes a queue; returns how many messages it held.
    pub async fn delete_queue(&mut self, name: &str) -> Result<u32> {
        match self
            .rpc(
                CHANNEL,
                AMQPClass::Queue(queue::AMQPMethod::Delete(queue::Delete {
                    queue: name.into(),
                    ..Default::default()
                })),
                (50, 41),
            )
            .await?
        {
            AMQPClass::Queue(queue::AMQPMethod::DeleteOk(ok)) => Ok(ok.message_count),
            _ => Ok(0),
        }
    }

    /// Per-consumer prefetch (global = false).
    pub async fn qos(&mut self, prefetch: u16) -> Result<()> {
        self.rpc(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Qos(basic::Qos {
                prefetch_count: prefetch,
                global: false,
            })),
            (60, 11),
        )
        .await
        .map(drop)
    }

    /// Encodes a basic.consume into the write buffer without waiting for its -ok.
    pub fn queue_consume(&mut self, queue: &str, no_ack: bool) -> Result<()> {
        let m = AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
            queue: queue.into(),
            no_ack,
            ..Default::default()
        }));
        encode::method(&mut self.wbuf, CHANNEL, &m)?;
        Ok(())
    }

    pub async fn consume(&mut self, queue: &str, no_ack: bool) -> Result<()> {
        self.rpc(
            CHANNEL,
            AMQPClass::Basic(basic::AMQPMethod::Consume(basic::Consume {
                queue: queue.into(),
                no_ack,
                ..Default::default()
            })),
            (60, 21),
        )
        .await
        .map(drop)
    }

    pub async fn confirm_select(&mut self) -> Result<()> {
        self.rpc(
            CHANNEL,
            AMQPClass::Confirm(confirm::AMQPMethod::Select(confirm::Select {
                nowait: false,
            })),
            (85, 11),
        )
        .await
        .map(drop)
    }

    /// Closes politely (connection.close, wait for close-ok), bounded in time; errors are
    /// ignored because the tool is done with the connection either way. The write buffer
    /// must hold whole frames only: callers flush or clear it first.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            self.flush().await?;
            self.send(
                0,
                &AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                    reply_code: 200,
                    reply_text: "warren-perf done".into(),
                    class_id: 0,
                    method_id: 0,
                })),
            )
            .await?;
            loop {
                if let Frame::Method(0, Method::Other(m)) = self.read_frame().await? {
                    if matches!(
                        *m,
                        AMQPClass::Connection(connection::AMQPMethod::CloseOk(_))
                            | AMQPClass::Connection(connection::AMQPMethod::Close(_))
                    ) {
                        return Ok::<(), Error>(());
                    }
                }
            }
        })
        .await;
    }
}

fn unexpected(wanted: &str, got: &AMQPClass) -> Error {
    err(format!(
        "expected {wanted}, got method {}.{}",
        got.get_amqp_class_id(),
        got.get_amqp_method_id()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_uris() {
        let u = Uri::parse("amqp://guest:gu%40st@127.0.0.1:5752/%2F").unwrap();
        assert_eq!(
            (u.user.as_str(), u.pass.as_str(), u.port),
            ("guest", "gu@st", 5752)
        );
        assert_eq!((u.host.as_str(), u.vhost.as_str()), ("127.0.0.1", "/"));
        let u = Uri::parse("amqp://[::1]:5673/dev").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.vhost.as_str()),
            ("::1", 5673, "dev")
        );
        let u = Uri::parse("amqp://localhost").unwrap();
        assert_eq!(
            (u.port, u.vhost.as_str(), u.user.as_str()),
            (5672, "/", "guest")
        );
        assert!(Uri::parse("http://x").is_err());
        assert!(Uri::parse("amqp://h:notaport/").is_err());
    }
}
