//! One task per client connection. The task reads and decodes frames, runs each channel's
//! state machine, takes deliveries from queues (via [`ConnEvent`]s) and writes everything
//! through one output buffer that is flushed when the batch is done, so many frames go out
//! per syscall.
//!
//! Files: `handshake` (protocol header, start/tune/open, SASL), `channel` (per-channel
//! state), `methods` (channel, exchange, queue, confirm and tx classes), `basic` (publish,
//! consume, deliveries, acks).

mod basic;
mod channel;
mod handshake;
mod methods;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::protocol::{channel as chan, connection as conn, AMQPClass};
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};
use warren_codec::{decode, encode, Frame, Method};

use crate::broker::Broker;
use crate::error::AmqpError;
use crate::queue::consumer::Consumer;
use crate::queue::store::QueuedMessage;
use crate::queue::Queue;
use crate::vhost::VHost;
use channel::Channel;

/// What other tasks tell a connection.
pub enum ConnEvent {
    /// A queue hands messages to one of this connection's consumers (credit already taken).
    Deliver {
        queue: Arc<Queue>,
        consumer: Arc<Consumer>,
        messages: Vec<QueuedMessage>,
    },
    /// The broker cancels a consumer (its queue was deleted).
    Cancel { channel: u16, tag: String },
}

/// Stop taking deliveries while this much output is waiting for the socket.
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// A busy connection reads up to this much at a time.
const READ_CHUNK: usize = 64 * 1024;
/// An idle one starts with this: 1,000 idle connections must not hold 64 MiB of buffers.
const READ_START: usize = 4 * 1024;
/// How long we wait for connection.close-ok after sending connection.close.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// After answering a client's connection.close, how long we keep reading (and discarding)
/// until the client hangs up: RabbitMQ's CLOSING_TIMEOUT (or the heartbeat, if shorter).
const LINGER_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitStartOk,
    AwaitTuneOk,
    AwaitOpen,
    Open,
    /// We sent connection.close: waiting for close-ok.
    Closing,
    /// Done: flush and drop the socket.
    Closed,
}

/// What the client said it can handle (client-properties' capabilities).
#[derive(Debug, Default, Clone, Copy)]
struct ClientCaps {
    consumer_cancel_notify: bool,
    authentication_failure_close: bool,
}

pub struct Connection {
    id: u64,
    broker: Arc<Broker>,
    peer: SocketAddr,
    phase: Phase,
    user: String,
    vhost: Option<Arc<VHost>>,
    caps: ClientCaps,
    frame_max: u32,
    channel_max: u16,
    heartbeat: u16,
    channels: HashMap<u16, Channel>,
    out: BytesMut,
    events_tx: mpsc::UnboundedSender<ConnEvent>,
    /// Queues whose dispatch must run once the current batch is done (credit was freed).
    to_poke: Vec<Arc<Queue>>,
    /// Reused by every publish's routing.
    route_scratch: crate::vhost::RouteScratch,
    /// Messages published in this batch (metrics are bumped once per batch).
    published: u64,
    delivered: u64,
    /// We answered the client's connection.close: don't hang up first (see [`linger`]).
    linger: bool,
}

/// Serves one accepted socket until it closes.
pub async fn serve(stream: TcpStream, peer: SocketAddr, broker: Arc<Broker>) {
    let id = broker.next_connection_id();
    let span = tracing::info_span!("conn", id, %peer);
    async move {
        metrics::counter!(crate::metrics::CONNECTIONS_OPENED).increment(1);
        if let Err(e) = run(stream, peer, broker, id).await {
            debug!("connection ended: {e}");
        }
        metrics::counter!(crate::metrics::CONNECTIONS_CLOSED).increment(1);
    }
    .instrument(span)
    .await
}

async fn run(
    mut stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    id: u64,
) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + broker.config.handshake_timeout;
    let mut header = [0u8; 8];
    match tokio::time::timeout_at(deadline, stream.read_exact(&mut header)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            debug!("no protocol header before the handshake timeout");
            return Ok(());
        }
    }
    if !handshake::protocol_header_ok(&header) {
        // Tell the client what we speak, then hang up (AMQP 0-9-1 §4.2.2).
        debug!(header = ?header, "unsupported protocol header");
        stream.write_all(&warren_codec::PROTOCOL_HEADER).await?;
        let _ = stream.shutdown().await;
        return Ok(());
    }
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let mut c = Connection {
        id,
        peer,
        phase: Phase::AwaitStartOk,
        user: String::new(),
        vhost: None,
        caps: ClientCaps::default(),
        frame_max: broker.config.frame_max,
        channel_max: broker.config.channel_max,
        heartbeat: 0,
        broker,
        channels: HashMap::new(),
        out: BytesMut::new(),
        events_tx,
        to_poke: Vec::new(),
        route_scratch: Default::default(),
        published: 0,
        delivered: 0,
        linger: false,
    };
    c.send_start();
    let result = c.main_loop(&mut stream, &mut events_rx, deadline).await;
    c.cleanup(&mut events_rx);
    if result.is_ok() && c.linger {
        let timeout = match c.heartbeat {
            hb @ 1..=29 => Duration::from_secs(hb as u64),
            _ => LINGER_TIMEOUT,
        };
        linger(&mut stream, timeout, c.broker.shutdown_signal()).await;
    }
    result
}

/// Like RabbitMQ after close-ok, reads and drops whatever the client still sends until it
/// closes the socket. A client may have frames queued behind its connection.close (amqplib
/// sends channel 0 ahead of a channel's pending publishes); hanging up on them would fail
/// its writes (EPIPE) and, with unread input, reset the socket under the close-ok.
async fn linger(
    stream: &mut TcpStream,
    timeout: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let drain = async {
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    tokio::select! {
        _ = tokio::time::timeout(timeout, drain) => {}
        _ = shutdown.changed() => {}
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}

impl Connection {
    async fn main_loop(
        &mut self,
        stream: &mut TcpStream,
        events_rx: &mut mpsc::UnboundedReceiver<ConnEvent>,
        handshake_deadline: Instant,
    ) -> std::io::Result<()> {
        let (mut rd, mut wr) = stream.split();
        let mut inbuf = BytesMut::with_capacity(READ_START);
        let mut events = Vec::with_capacity(256);
        let mut shutdown = self.broker.shutdown_signal();
        let mut last_read = Instant::now();
        let mut last_write = Instant::now();
        // Until tune-ok sets the real interval, the tick only enforces the handshake deadline.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut close_deadline: Option<Instant> = None;
        let mut eof = false;

        loop {
            if self.phase == Phase::Closed && self.out.is_empty() {
                break;
            }
            if self.phase == Phase::Closing && close_deadline.is_none() {
                close_deadline = Some(Instant::now() + CLOSE_TIMEOUT);
            }
            let want_events = self.phase == Phase::Open && self.out.len() < OUTPUT_HIGH_WATER;
            let want_read = !eof && self.phase != Phase::Closed;
            tokio::select! {
                r = wr.write(&self.out), if !self.out.is_empty() => {
                    let n = r?;
                    if n == 0 {
                        return Err(std::io::ErrorKind::WriteZero.into());
                    }
                    self.out.advance(n);
                    last_write = Instant::now();
                }
                r = rd.read_buf(&mut inbuf), if want_read => {
                    if r? == 0 {
                        eof = true;
                        if self.phase != Phase::Closing {
                            debug!("client closed the socket");
                        }
                        self.phase = Phase::Closed;
                        self.out.clear();
                        continue;
                    }
                    last_read = Instant::now();
                    self.process_input(&mut inbuf);
                    // A read that filled the buffer means more is coming: grow to READ_CHUNK.
                    if inbuf.capacity() - inbuf.len() < 1024 {
                        inbuf.reserve(READ_CHUNK.max(inbuf.len()));
                    }
                }
                n = events_rx.recv_many(&mut events, 256), if want_events => {
                    if n == 0 {
                        continue;
                    }
                    for e in events.drain(..) {
                        self.handle_event(e);
                    }
                    self.end_batch();
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if self.phase != Phase::Open && self.phase != Phase::Closing && self.phase != Phase::Closed && now >= handshake_deadline {
                        info!("handshake timed out");
                        return Ok(());
                    }
                    if close_deadline.is_some_and(|d| now >= d) {
                        debug!("no connection.close-ok in time");
                        return Ok(());
                    }
                    if self.heartbeat > 0 {
                        let hb = Duration::from_secs(self.heartbeat as u64);
                        if now.duration_since(last_read) > hb * 2 {
                            warn!(user = %self.user, "missed heartbeats from client, timeout: {}s", self.heartbeat);
                            return Ok(());
                        }
                        if now.duration_since(last_write) >= hb / 2 && self.out.is_empty() {
                            encode::heartbeat(&mut self.out);
                        }
                    }
                }
                _ = shutdown.changed() => {
                    if matches!(self.phase, Phase::Open) {
                        self.close_connection(&AmqpError::connection_forced(
                            "broker forced connection closure with reason 'shutdown'",
                        ));
                    } else if self.phase != Phase::Closing {
                        self.phase = Phase::Closed;
                    }
                }
            }
            if tick.period() != self.tick_period() {
                tick = tokio::time::interval(self.tick_period());
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
        }
        if !self.linger {
            let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
        }
        Ok(())
    }

    /// Timer granularity: a second, finer for sub-2-second heartbeats.
    fn tick_period(&self) -> Duration {
        match self.heartbeat {
            1 => Duration::from_millis(250),
            _ => Duration::from_secs(1),
        }
    }

    /// Decodes and handles every complete frame in `inbuf`.
    fn process_input(&mut self, inbuf: &mut BytesMut) {
        loop {
            if self.phase == Phase::Closed {
                inbuf.clear();
                break;
            }
            match decode::decode_frame(inbuf, self.frame_max) {
                Ok(Some(frame)) => self.handle_frame(frame),
                Ok(None) => break,
                Err(e) => {
                    inbuf.clear();
                    if self.phase == Phase::Closing {
                        self.phase = Phase::Closed;
                    } else {
                        let err = AmqpError::from(e);
                        self.close_connection(&AmqpError {
                            severity: crate::error::Severity::Hard,
                            ..err
                        });
                        // Bytes after a framing error cannot be trusted: stop reading.
                        self.phase = Phase::Closed;
                    }
                    break;
                }
            }
        }
        self.end_batch();
    }

    /// Work deferred to the end of a batch: confirms, dispatch after freed credit, metrics.
    fn end_batch(&mut self) {
        for ch in self.channels.values_mut() {
            if let Some(c) = ch.confirms.as_mut() {
                if let Some((tag, multiple)) = c.take_pending() {
                    encode::basic_ack(&mut self.out, ch.id, tag, multiple);
                }
            }
        }
        for q in std::mem::take(&mut self.to_poke) {
            q.poke();
        }
        if self.published > 0 {
            metrics::counter!(crate::metrics::MESSAGES_PUBLISHED).increment(self.published);
            self.published = 0;
        }
        if self.delivered > 0 {
            metrics::counter!(crate::metrics::MESSAGES_DELIVERED).increment(self.delivered);
            self.delivered = 0;
        }
    }

    fn handle_frame(&mut self, frame: Frame) {
        let result = match frame {
            Frame::Heartbeat(0) => Ok(()),
            // RabbitMQ answers 505 here (the spec says 501).
            Frame::Heartbeat(_) => Err(AmqpError::unexpected_frame("type 8, all octets = <<>>")),
            Frame::Method(0, method) => self.connection_method(method),
            _ if self.phase == Phase::Closing => Ok(()), // dropped until close-ok
            _ if self.phase != Phase::Open => Err(AmqpError::command_invalid(
                "channel frame before the connection was opened",
            )),
            Frame::Method(ch, method) => self.channel_method(ch, method),
            Frame::Header(ch, header) => self.content_header(ch, header),
            Frame::Body(ch, body) => self.content_body(ch, body),
        };
        if let Err(e) = result {
            self.fail(e);
        }
    }

    /// Turns an error into the close it calls for.
    fn fail(&mut self, e: AmqpError) {
        if self.phase == Phase::Closing || self.phase == Phase::Closed {
            return;
        }
        if e.is_hard() {
            self.close_connection(&e);
        } else {
            warn!("channel error: {e}");
        }
    }

    /// Sends connection.close and waits for close-ok (channel frames are dropped meanwhile).
    fn close_connection(&mut self, e: &AmqpError) {
        if e.code == warren_codec::reply::CONNECTION_FORCED {
            info!(user = %self.user, "closing connection: {e}");
        } else {
            warn!(user = %self.user, "connection error: {e}");
        }
        self.write_method(
            0,
            &AMQPClass::Connection(conn::AMQPMethod::Close(conn::Close {
                reply_code: e.code,
                reply_text: e.reply_text().into(),
                class_id: e.class_id,
                method_id: e.method_id,
            })),
        );
        self.release_channels();
        self.phase = Phase::Closing;
    }

    fn connection_method(&mut self, method: Method) -> Result<(), AmqpError> {
        let (class_id, method_id) = (method.class_id(), method.method_id());
        // RabbitMQ's words for any method channel 0 does not expect now.
        let unexpected = |phase: Phase| {
            let state = match phase {
                Phase::AwaitStartOk => "starting",
                Phase::AwaitTuneOk => "tuning",
                Phase::AwaitOpen => "opening",
                _ => "running",
            };
            AmqpError::channel_error(format!("unexpected method in connection state {state}"))
                .on(class_id, method_id)
        };
        let Method::Other(class) = method else {
            return Err(unexpected(self.phase));
        };
        let AMQPClass::Connection(m) = *class else {
            return Err(unexpected(self.phase));
        };
        match (self.phase, m) {
            (Phase::Closing, conn::AMQPMethod::CloseOk(_)) => {
                self.phase = Phase::Closed;
                Ok(())
            }
            (Phase::Closing, conn::AMQPMethod::Close(_)) => {
                // Both sides closed at once.
                self.write_method(
                    0,
                    &AMQPClass::Connection(conn::AMQPMethod::CloseOk(conn::CloseOk {})),
                );
                self.phase = Phase::Closed;
                self.linger = true;
                Ok(())
            }
            (Phase::Closing, _) => Ok(()),
            (_, conn::AMQPMethod::Close(c)) => {
                debug!(code = c.reply_code, text = %c.reply_text, "client closed the connection");
                self.release_channels();
                self.write_method(
                    0,
                    &AMQPClass::Connection(conn::AMQPMethod::CloseOk(conn::CloseOk {})),
                );
                self.phase = Phase::Closed;
                self.linger = true;
                Ok(())
            }
            (Phase::AwaitStartOk, conn::AMQPMethod::StartOk(m)) => self.on_start_ok(m),
            (Phase::AwaitTuneOk, conn::AMQPMethod::TuneOk(m)) => self.on_tune_ok(m),
            (Phase::AwaitOpen, conn::AMQPMethod::Open(m)) => self.on_open(m),
            (Phase::Open, conn::AMQPMethod::Blocked(_) | conn::AMQPMethod::Unblocked(_)) => Ok(()),
            (Phase::Open, conn::AMQPMethod::UpdateSecret(_)) => {
                // Passwords don't expire here, so a new secret changes nothing; RabbitMQ
                // answers the same way for its internal backend.
                self.write_method(
                    0,
                    &AMQPClass::Connection(conn::AMQPMethod::UpdateSecretOk(
                        conn::UpdateSecretOk {},
                    )),
                );
                Ok(())
            }
            (phase, _) => Err(unexpected(phase)),
        }
    }

    fn channel_method(&mut self, ch: u16, method: Method) -> Result<(), AmqpError> {
        let (class_id, method_id) = (method.class_id(), method.method_id());
        let open = self.channels.get(&ch).map(|c| c.closing);
        match (open, &method) {
            (None, Method::Other(c))
                if matches!(**c, AMQPClass::Channel(chan::AMQPMethod::Open(_))) =>
            {
                // The spec (and this project) refuse numbers above channel_max with 504, which
                // also bounds how many are open. (RabbitMQ 3.10 opens any number and refuses
                // the channel_max+1-th open channel with 530.)
                if ch > self.channel_max {
                    return Err(AmqpError::channel_error(format!(
                        "channel number {ch} is higher than the negotiated channel_max ({})",
                        self.channel_max
                    ))
                    .on(class_id, method_id));
                }
                self.channels.insert(ch, Channel::new(ch));
                metrics::counter!(crate::metrics::CHANNELS_OPENED).increment(1);
                self.write_method(
                    ch,
                    &AMQPClass::Channel(chan::AMQPMethod::OpenOk(chan::OpenOk {})),
                );
                return Ok(());
            }
            (None, Method::Other(c))
                if matches!(**c, AMQPClass::Channel(chan::AMQPMethod::CloseOk(_))) =>
            {
                // A late close-ok for a channel already gone: harmless.
                return Ok(());
            }
            (None, _) => {
                return Err(AmqpError::channel_error(format!(
                    "expected 'channel.open' on channel {ch}"
                ))
                .on(class_id, method_id));
            }
            (Some(true), Method::Other(c)) => {
                match **c {
                    AMQPClass::Channel(chan::AMQPMethod::CloseOk(_)) => {
                        self.channels.remove(&ch);
                    }
                    AMQPClass::Channel(chan::AMQPMethod::Close(_)) => {
                        self.write_method(
                            ch,
                            &AMQPClass::Channel(chan::AMQPMethod::CloseOk(chan::CloseOk {})),
                        );
                        self.channels.remove(&ch);
                    }
                    _ => {}
                }
                return Ok(());
            }
            (Some(true), _) => return Ok(()),
            (Some(false), _) => {}
        }
        if let Some(c) = self.channels.get(&ch) {
            if c.content.in_progress() {
                // Names the pending basic.publish, as RabbitMQ does.
                return Err(c.content.out_of_order().into());
            }
        }
        let result = match method {
            Method::Publish(p) => self.on_publish(ch, p),
            Method::Ack(a) => self.on_ack(ch, a.delivery_tag, a.multiple),
            Method::Qos(q) => self.on_qos(ch, q),
            Method::Other(class) => self.dispatch_method(ch, *class),
        };
        match result {
            Err(e) if !e.is_hard() => {
                self.close_channel(ch, e.on(class_id, method_id));
                Ok(())
            }
            other => other.map_err(|e| e.on(class_id, method_id)),
        }
    }

    fn content_header(
        &mut self,
        ch: u16,
        header: warren_codec::ContentHeader,
    ) -> Result<(), AmqpError> {
        let max = self.broker.config.max_message_size;
        let Some(c) = self.channels.get_mut(&ch) else {
            return Err(AmqpError::channel_error(format!(
                "expected 'channel.open' on channel {ch}"
            )));
        };
        if c.closing {
            return Ok(());
        }
        match c.content.header(header, max) {
            Ok(Some(content)) => self.on_content(ch, content),
            Ok(None) => Ok(()),
            Err(e) => self.frame_error_on_channel(ch, e),
        }
    }

    fn content_body(&mut self, ch: u16, body: bytes::Bytes) -> Result<(), AmqpError> {
        let Some(c) = self.channels.get_mut(&ch) else {
            return Err(AmqpError::channel_error(format!(
                "expected 'channel.open' on channel {ch}"
            )));
        };
        if c.closing {
            return Ok(());
        }
        match c.content.body(body) {
            Ok(Some(content)) => self.on_content(ch, content),
            Ok(None) => Ok(()),
            Err(e) => self.frame_error_on_channel(ch, e),
        }
    }

    /// Content errors: 505 closes the connection, an oversized message (406) the channel.
    fn frame_error_on_channel(
        &mut self,
        ch: u16,
        e: warren_codec::FrameError,
    ) -> Result<(), AmqpError> {
        // The codec names basic.publish once content has started (RabbitMQ: none before).
        let e = AmqpError::from(e);
        if e.is_hard() {
            return Err(e);
        }
        if let Some(c) = self.channels.get_mut(&ch) {
            c.content.reset();
        }
        self.close_channel(ch, e);
        Ok(())
    }

    fn on_content(&mut self, ch: u16, content: warren_codec::Content) -> Result<(), AmqpError> {
        match self.publish_content(ch, content) {
            Err(e) if !e.is_hard() => {
                self.close_channel(ch, e.on(60, 40));
                Ok(())
            }
            other => other.map_err(|e| e.on(60, 40)),
        }
    }

    /// Sends channel.close for a soft error and releases the channel's resources now;
    /// frames are dropped until the client's close-ok.
    fn close_channel(&mut self, ch: u16, e: AmqpError) {
        debug!(channel = ch, "channel error: {e}");
        self.write_method(
            ch,
            &AMQPClass::Channel(chan::AMQPMethod::Close(chan::Close {
                reply_code: e.code,
                reply_text: e.reply_text().into(),
                class_id: e.class_id,
                method_id: e.method_id,
            })),
        );
        if let Some(mut c) = self.channels.remove(&ch) {
            self.release_channel(&mut c);
            c.closing = true;
            self.channels.insert(ch, c);
        }
    }

    fn write_method(&mut self, ch: u16, m: &AMQPClass) {
        if let Err(e) = encode::method(&mut self.out, ch, m) {
            warn!("cannot encode {m:?}: {e}");
        }
    }

    /// Releases every channel (connection closing): consumers go, unacked messages return.
    fn release_channels(&mut self) {
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        for id in ids {
            if let Some(mut c) = self.channels.remove(&id) {
                self.release_channel(&mut c);
            }
        }
    }

    fn handle_event(&mut self, e: ConnEvent) {
        match e {
            ConnEvent::Deliver {
                queue,
                consumer,
                messages,
            } => self.deliver(queue, consumer, messages),
            ConnEvent::Cancel { channel, tag } => self.broker_cancel(channel, &tag),
        }
    }

    /// Final cleanup: channels released, exclusive queues deleted, queued events returned.
    fn cleanup(&mut self, events_rx: &mut mpsc::UnboundedReceiver<ConnEvent>) {
        self.release_channels();
        events_rx.close();
        while let Ok(e) = events_rx.try_recv() {
            if let ConnEvent::Deliver {
                queue,
                consumer,
                messages,
            } = e
            {
                queue.undeliver(messages, &consumer);
            }
        }
        if let Some(v) = &self.vhost {
            for d in v.drop_exclusive_queues(self.id) {
                for c in d.consumers {
                    let _ = c.events.send(ConnEvent::Cancel {
                        channel: c.channel,
                        tag: c.tag.clone(),
                    });
                }
            }
        }
        if !self.user.is_empty() {
            info!(user = %self.user, "connection closed");
        }
    }
}
