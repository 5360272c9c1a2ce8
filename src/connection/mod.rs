//! One task per client connection. The task reads and decodes frames, runs each channel's
//! state machine, takes deliveries from queues (via [`ConnEvent`]s) and writes everything
//! through one output buffer that is flushed when the batch is done, so many frames go out
//! per syscall.
//!
//! Files: this one (the task's loop: read, deliveries, write, heartbeats, shutdown),
//! `handshake` (protocol header, start/tune/open, SASL), `frames` (frame dispatch to the
//! connection's or a channel's state machine, errors to closes), `methods` (channel,
//! exchange, queue, confirm and tx classes), `publish` (basic.publish to a routed message),
//! `confirms` (sync waits: where a confirm is released after its sync), `consume`
//! (consumers, deliveries written), `ack` (ack, nack, reject, recover), `reply_to` (direct
//! reply-to), `events` (what queues and the store send it), `flow` (alarm blocking, store
//! back-pressure), `output` (the write buffer), `channel` (per-channel state), `close`
//! (connection and channel close, release of consumers and unacked messages, cleanup),
//! `transport` (the stream it runs over: TCP, or TLS on TCP).

mod ack;
mod channel;
mod close;
mod confirms;
mod consume;
mod events;
mod flow;
mod frames;
mod handshake;
mod methods;
mod output;
mod permit;
mod publish;
mod reply_to;
mod transport;

use crate::metrics::Counter;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::protocol::AMQPClass;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, info, warn, Instrument};
use warren_codec::{decode, encode};

use crate::broker::Broker;
use crate::error::AmqpError;
use crate::queue::consumer::Outbox;
use crate::queue::Queue;
use crate::vhost::VHost;
use channel::Channel;
pub use events::ConnEvent;
use flow::AlarmState;
pub use transport::Transport;

/// Stop taking deliveries while this much output is waiting for the socket.
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// Stop reading the client while this much output is waiting for it (it is not reading).
const OUTPUT_READ_LIMIT: usize = 16 << 20;
/// A busy connection reads up to this much at a time.
const READ_CHUNK: usize = 64 * 1024;
/// A new or idle one starts with this; the handshake's frames fit. Every connection of a burst
/// of opens holds it at once, and the allocator keeps that peak after an idle release: 10,000
/// idle connections cost 10.8 KB of RSS each with 4 KiB, 7.8 KB with 1 KiB.
const READ_START: usize = 1024;
/// A connection silent this long gives its read and write buffers back: 10,000 idle
/// connections hold about 8 KB each instead of 30.
const IDLE_RELEASE: Duration = Duration::from_secs(2);
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
    connection_blocked: bool,
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
    /// By channel number; looked up several times per publish, so hashed as the number itself.
    /// Boxed: a map sized for a few 552-byte channels would cost an idle connection 2 KiB.
    channels: HashMap<u16, Box<Channel>, BuildHasherDefault<channel::ChannelHasher>>,
    out: output::Output,
    /// Where other tasks' events for this connection wait (see `events`).
    inbox: Arc<events::Inbox>,
    /// The same inbox, for consumers and reply targets.
    outbox: Arc<dyn Outbox>,
    /// Queues whose dispatch must run once the current batch is done (credit was freed).
    to_poke: Vec<Arc<Queue>>,
    /// Reused by every publish's routing.
    route_scratch: crate::vhost::RouteScratch,
    /// Sync tokens asked of the store (see `confirms`).
    sync: confirms::SyncWaits,
    /// Counts for the metrics, added to the registry once per batch.
    tally: crate::metrics::Tally,
    counters: Arc<crate::metrics::Counters>,
    /// Channels open at the last batch's end (the broker's gauge has them).
    channels_reported: usize,
    /// Messages published on this connection in all (transactions' included, when received).
    published_total: u64,
    /// Body bytes of messages received in part, over all channels (an upper bound between
    /// recounts: see `frames::count_partial`).
    partial_bytes: usize,
    /// A resource alarm is on (see [`Broker::set_alarm`]); we told the client if it can hear it.
    alarm: AlarmState,
    /// We answered the client's connection.close: don't hang up first (see [`linger`]).
    linger: bool,
    /// Held until connection.open succeeds (see [`Broker::begin_handshake`]).
    handshake: Option<crate::broker::HandshakeSlot>,
    /// Set by a refused login: how long to wait before answering it (`failed_logins`).
    login_delay: Option<Duration>,
    /// The user's rights in the vhost and the decisions taken on them (`permit`).
    permits: permit::Permits,
    /// Counted in the broker's sessions (from connection.open on).
    in_sessions: bool,
    /// The name a verified TLS client certificate gives (EXTERNAL logs in as it).
    peer_cert_login: Option<String>,
    /// What the management API lists: filled in by the handshake, handed to the sessions
    /// table at connection.open (then None).
    info: Option<Box<crate::broker::sessions::ConnInfo>>,
}

/// An accepted socket, as the server hands it over.
pub struct Accepted {
    pub peer: SocketAddr,
    /// The address the client connected to (RabbitMQ's `host`/`port`).
    pub local: SocketAddr,
    pub tls: bool,
    /// Counts it against the broker's limit on connections in their handshake until it opens.
    pub handshake: crate::broker::HandshakeSlot,
    /// When the handshake (TLS's included) must be done.
    pub deadline: Instant,
    /// See [`Connection::peer_cert_login`].
    pub peer_cert_login: Option<String>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        if self.in_sessions {
            self.broker.sessions.close(self.id);
        }
        self.broker.count_channels(-(self.channels_reported as i64));
        self.tally
            .add(Counter::ChannelsClosed, self.channels_reported as u64);
        if let Some(v) = &self.vhost {
            v.stats.add_tally(&self.tally);
        }
        self.tally.flush(&self.counters);
    }
}

/// Serves one accepted socket (TCP, or a TLS session whose handshake is done) until it
/// closes.
pub async fn serve<S: Transport>(stream: S, accepted: Accepted, broker: Arc<Broker>) {
    let id = broker.next_connection_id();
    let peer = accepted.peer;
    let span = tracing::info_span!("conn", id, %peer);
    async move {
        crate::metrics::count(Counter::ConnectionsOpened, 1);
        broker.count_connection(1);
        let b = broker.clone();
        if let Err(e) = run(stream, accepted, broker, id).await {
            debug!("connection ended: {e}");
        }
        crate::metrics::count(Counter::ConnectionsClosed, 1);
        b.count_connection(-1);
    }
    .instrument(span)
    .await
}

async fn run<S: Transport>(
    mut stream: S,
    accepted: Accepted,
    broker: Arc<Broker>,
    id: u64,
) -> std::io::Result<()> {
    let Accepted {
        peer,
        local,
        tls,
        handshake,
        deadline,
        peer_cert_login,
    } = accepted;
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
    let inbox = Arc::new(events::Inbox::default());
    let mut c = Connection {
        id,
        peer,
        phase: Phase::AwaitStartOk,
        user: String::new(),
        vhost: None,
        caps: ClientCaps::default(),
        // Until tune-ok, frames of at most FRAME_MIN_SIZE, as RabbitMQ: a connection that has
        // not logged in can make the broker buffer 8 KiB at most.
        frame_max: handshake::FRAME_MIN_SIZE,
        channel_max: broker.config.channel_max,
        counters: broker.counters(),
        heartbeat: 0,
        broker,
        channels: HashMap::default(),
        out: output::Output::default(),
        outbox: inbox.clone(),
        inbox,
        to_poke: Vec::new(),
        sync: Default::default(),
        route_scratch: Default::default(),
        tally: Default::default(),
        channels_reported: 0,
        published_total: 0,
        partial_bytes: 0,
        alarm: AlarmState::default(),
        linger: false,
        handshake: Some(handshake),
        login_delay: None,
        permits: permit::Permits::none(),
        in_sessions: false,
        peer_cert_login,
        info: Some(Box::new(crate::broker::sessions::ConnInfo {
            peer,
            local,
            tls,
            user: String::new(),
            vhost: String::new(),
            auth_mechanism: String::new(),
            client_properties: Default::default(),
            frame_max: 0,
            channel_max: 0,
            heartbeat: 0,
            connected_at: 0,
        })),
    };
    c.send_start();
    let result = c.main_loop(&mut stream, deadline).await;
    c.cleanup();
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
async fn linger<S: Transport>(
    stream: &mut S,
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
    async fn main_loop<S: Transport>(
        &mut self,
        stream: &mut S,
        handshake_deadline: Instant,
    ) -> std::io::Result<()> {
        let (mut rd, mut wr) = stream.halves();
        // Written but maybe still inside the stream (TLS): flushed before the loop idles.
        let mut unflushed = false;
        let mut inbuf = BytesMut::with_capacity(READ_START);
        // Reads fill the buffer (see the read below): it is READ_CHUNK, not READ_START.
        let mut busy = false;
        // Swapped with the inbox's (see `Inbox::recv`): an idle connection holds neither.
        let mut events = Vec::new();
        let inbox = self.inbox.clone();
        let mut shutdown = self.broker.shutdown_signal();
        let mut alarm = self.broker.alarm_signal();
        let mut last_read = Instant::now();
        let mut last_write = Instant::now();
        // Until tune-ok sets the real interval, the tick only enforces the handshake deadline.
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut close_deadline: Option<Instant> = None;
        let mut eof = false;
        // Set while the store's writer is behind (see `store::BACKLOG_HIGH`): not reading.
        let mut store_flow: Option<tokio::sync::watch::Receiver<bool>> = None;

        loop {
            if self.phase == Phase::Closed && self.out.is_empty() && !unflushed {
                break;
            }
            if self.phase == Phase::Closing && close_deadline.is_none() {
                close_deadline = Some(Instant::now() + CLOSE_TIMEOUT);
            }
            let want_events = self.phase == Phase::Open && self.out.len() < OUTPUT_HIGH_WATER;
            if self.phase == Phase::Open && !self.alarm.seen {
                self.alarm.seen = true;
                let reason = alarm.borrow_and_update().clone();
                self.on_alarm(reason);
            }
            // Like RabbitMQ, an alarm blocks connections that publish; others go on. A client
            // that does not read what we send (returns, confirms, replies) is not read either
            // until its output drains, so it cannot grow our memory without bound.
            let backed_up = self.out.len() >= OUTPUT_READ_LIMIT;
            let paused = store_flow.is_some() || self.alarm.blocked || backed_up;
            let want_read = !eof && self.phase != Phase::Closed && !paused;
            if paused {
                // Not reading is our doing: the client's heartbeats are not missed (a dead peer
                // still shows, as writes that make no progress).
                last_read = Instant::now();
            }
            // What a read may fill (`read_buf` gives an empty buffer 64 bytes).
            let room = (inbuf.capacity() - inbuf.len()).max(64);
            tokio::select! {
                r = std::future::poll_fn(|cx| {
                    if self.out.is_empty() {
                        // Only a buffered transport gets here: push out what it holds.
                        return tokio::io::AsyncWrite::poll_flush(std::pin::Pin::new(&mut wr), cx)
                            .map_ok(|()| None);
                    }
                    // The slices live on the stack during a poll, not in this future (which
                    // every idle connection holds: 1 KiB).
                    let mut slices = [std::io::IoSlice::new(&[]); output::MAX_SLICES];
                    let n = self.out.slices(&mut slices);
                    tokio::io::AsyncWrite::poll_write_vectored(std::pin::Pin::new(&mut wr), cx, &slices[..n])
                        .map_ok(Some)
                }), if !self.out.is_empty() || unflushed => {
                    match r? {
                        Some(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                        Some(n) => {
                            self.out.advance(n);
                            last_write = Instant::now();
                            unflushed = S::BUFFERED;
                        }
                        None => unflushed = false,
                    }
                }
                r = rd.read_buf(&mut inbuf), if want_read => {
                    let n = r?;
                    if n == 0 {
                        eof = true;
                        if self.phase != Phase::Closing {
                            debug!("client closed the socket");
                        }
                        self.phase = Phase::Closed;
                        self.out.clear();
                        continue;
                    }
                    last_read = Instant::now();
                    let published = self.published_total;
                    crate::store::Store::take_sent_here();
                    self.process_input(&mut inbuf);
                    if let Some(wait) = self.login_delay.take() {
                        // Only this connection waits; its refusal goes out after.
                        tokio::time::sleep(wait).await;
                    }
                    if self.published_total != published && self.alarm.active.is_some() {
                        self.block();
                    }
                    // Flow control: a connection whose input added to the store's backlog
                    // (messages, definitions) waits while the writer is far behind.
                    let sent = crate::store::Store::take_sent_here();
                    store_flow = store_flow.or_else(|| self.store_pause(sent));
                    // A read that filled all the room there was means more is coming: the
                    // connection is busy (until an idle release) and reads READ_CHUNK at a
                    // time; before that, READ_START. Not judged by the room left: frames
                    // taken off the front shrink it, and a busy connection would fall back
                    // to reads of a few KiB.
                    busy |= n == room;
                    let spare = inbuf.capacity() - inbuf.len();
                    if busy {
                        if spare < 1024 || (n == room && spare < READ_CHUNK / 2) {
                            inbuf.reserve(READ_CHUNK.max(inbuf.len()));
                        }
                    } else if spare < READ_START {
                        inbuf.reserve(READ_START);
                    }
                }
                () = inbox.recv(&mut events), if want_events => {
                    for e in events.drain(..) {
                        self.handle_event(e);
                    }
                    self.end_batch();
                }
                r = alarm.changed(), if self.alarm.seen => {
                    if r.is_ok() {
                        let reason = alarm.borrow_and_update().clone();
                        self.on_alarm(reason);
                    }
                }
                _ = async {
                    match store_flow.as_mut() {
                        Some(rx) => drop(rx.wait_for(|go| *go).await),
                        None => std::future::pending().await,
                    }
                }, if store_flow.is_some() => {
                    // Paused by us, not silent: don't count it against the client's heartbeat.
                    store_flow = None;
                    last_read = Instant::now();
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    if inbuf.is_empty()
                        && now.duration_since(last_read) >= IDLE_RELEASE
                        && now.duration_since(last_write) >= IDLE_RELEASE
                    {
                        // Polled again, read_buf takes 64 bytes until data comes.
                        inbuf = BytesMut::new();
                        busy = false;
                        self.out.release();
                        events = Vec::new();
                        self.inbox.release();
                    }
                    if self.phase == Phase::Open {
                        self.check_consumer_timeouts();
                    }
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
                        if !self.out.is_empty() && now.duration_since(last_write) > hb * 2 {
                            warn!(user = %self.user, "client has not read for {}s: closing", 2 * self.heartbeat);
                            return Ok(());
                        }
                        if now.duration_since(last_write) >= hb / 2 && self.out.is_empty() {
                            encode::heartbeat(self.out.frames());
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
    pub(super) fn tick_period(&self) -> Duration {
        match self.heartbeat {
            1 => Duration::from_millis(250),
            _ => Duration::from_secs(1),
        }
    }

    /// Decodes and handles every complete frame in `inbuf`.
    pub(super) fn process_input(&mut self, inbuf: &mut BytesMut) {
        // Before any write this batch makes.
        self.begin_batch();
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
    pub(super) fn end_batch(&mut self) {
        self.request_sync();
        for q in std::mem::take(&mut self.to_poke) {
            q.poke();
        }
        // Channels that closed this batch: those open before, plus those opened, minus those
        // open now.
        let open = self.channels.len();
        self.tally.add(
            Counter::ChannelsClosed,
            (self.channels_reported as u64 + self.tally.get(Counter::ChannelsOpened))
                .saturating_sub(open as u64),
        );
        if open != self.channels_reported {
            self.broker
                .count_channels(open as i64 - self.channels_reported as i64);
            self.channels_reported = open;
            if self.in_sessions {
                self.broker.sessions.set_channels(self.id, open as u64);
            }
        }
        if let Some(v) = &self.vhost {
            v.stats.add_tally(&self.tally);
        }
        self.tally.flush(&self.counters);
    }

    pub(super) fn write_method(&mut self, ch: u16, m: &AMQPClass) {
        if let Err(e) = encode::method(self.out.frames(), ch, m) {
            warn!("cannot encode {m:?}: {e}");
        }
    }
}
