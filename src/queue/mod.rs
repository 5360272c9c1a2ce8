//! A queue: ready messages ([`ready::Ready`], RAM then disk), consumers, and dispatch.
//!
//! Each queue has one owner: a mutex held for a few instructions, never across an `.await`.
//! There is no queue task: whoever changes what can be delivered (a publish, an ack, a new
//! consumer, a qos change, a requeue) runs [`Queue::dispatch`] under that lock, which hands
//! messages to consumers with credit, round-robin, by sending them to the consumer's
//! connection task. That task batches them into socket writes.

pub mod arguments;
pub mod consumer;
pub mod dead_letter;
pub mod page_file;
pub mod ready;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use amq_protocol::types::FieldTable;
use parking_lot::{Mutex, MutexGuard};

use crate::connection::ConnEvent;
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::vhost::VHost;
use arguments::{Overflow, QueueArgs};
use consumer::Consumer;
use dead_letter::{DeadLetter, Reason};
use ready::{Disk, QueuedMessage, Ready};

/// A message's own `expiration` in ms (validated at publish; unparsable = none).
fn message_expiration(m: &Message) -> Option<u64> {
    let raw = m.properties().expiration(m.properties_raw())?;
    arguments::parse_expiration(raw).ok()
}

/// Milliseconds since the Unix epoch (message expiry times; they survive a restart).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Arguments RabbitMQ compares on redeclare (others are ignored, as RabbitMQ does).
const EQUIVALENCE_ARGS: &[&str] = &[
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-expires",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-message-ttl",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
];

struct State {
    store: Ready,
    next_seq: u64,
    consumers: Vec<Arc<Consumer>>,
    /// Round-robin cursor into `consumers`.
    next_consumer: usize,
    had_consumer: bool,
    /// Delivered to ack-mode consumers (or got), not yet settled.
    unacked: usize,
    /// Messages to dead-letter once the lock is released (see [`Queue::unlock`]).
    dead: Vec<DeadLetter>,
    /// When the armed expiry timer fires (ms since the epoch), if one is armed.
    timer_at: Option<u64>,
    /// Last consume, get or declare (for `x-expires`).
    last_used: Instant,
}

pub struct Queue {
    pub name: String,
    /// Names this queue's records in the store (unique, never reused).
    pub qid: u64,
    pub durable: bool,
    /// The connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// `arguments` parsed (checked at declare).
    pub args: QueueArgs,
    /// The vhost, for dead-lettering and `x-expires` (weak: the vhost owns its queues).
    vhost: Weak<VHost>,
    state: Mutex<State>,
    deleted: AtomicBool,
}

/// What [`Queue::publish`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// The queue is gone.
    Refused,
    InMemory,
    /// Sent to the store for durability: a confirm must wait for the sync.
    Written,
}

/// What [`Queue::remove_consumer`] found.
pub struct Removed {
    pub consumer: Arc<Consumer>,
    /// The queue is auto-delete and this was its last consumer.
    pub now_unused: bool,
}

impl Queue {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        durable: bool,
        exclusive_owner: Option<u64>,
        auto_delete: bool,
        arguments: FieldTable,
        args: QueueArgs,
        vhost: Weak<VHost>,
        disk: Disk,
        ram_budget: usize,
    ) -> Arc<Self> {
        let store = Ready::new(disk, ram_budget, args.max_priority);
        let q = Arc::new(Queue {
            name,
            qid: store.disk().qid,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            args,
            vhost,
            state: Mutex::new(State {
                store,
                next_seq: 0,
                consumers: Vec::new(),
                next_consumer: 0,
                had_consumer: false,
                unacked: 0,
                dead: Vec::new(),
                timer_at: None,
                last_used: Instant::now(),
            }),
            deleted: AtomicBool::new(false),
        });
        if let Some(ms) = q.args.expires {
            q.watch_expires(Duration::from_millis(ms));
        }
        q
    }

    /// Fills a queue created at start with what the store had for it.
    pub fn restore(self: &Arc<Self>, r: crate::store::recovery::RecoveredQueue) {
        let mut st = self.state.lock();
        st.next_seq = r.next_seq;
        st.store.restore(r.head, r.tail, r.delivered);
        self.arm_expiry(&mut st);
        self.unlock(st);
    }

    /// Releases the lock, then dead-letters what was collected under it.
    fn unlock(&self, mut st: MutexGuard<'_, State>) {
        let dead = std::mem::take(&mut st.dead);
        drop(st);
        if !dead.is_empty() {
            if let Some(v) = self.vhost.upgrade() {
                v.dead_letter(dead);
            }
        }
    }

    /// Queues `m` for dead-lettering (or drops it: no dead-letter exchange).
    fn dead_letter(&self, st: &mut State, message: Arc<Message>, reason: Reason) {
        if let Some(exchange) = &self.args.dead_letter_exchange {
            st.dead.push(DeadLetter {
                message,
                reason,
                queue: self.name.clone(),
                exchange: exchange.clone(),
                routing_key: self.args.dead_letter_routing_key.clone(),
            });
        }
    }

    /// A consume, get or redeclare: the queue is in use (`x-expires`).
    pub fn touch(&self) {
        self.state.lock().last_used = Instant::now();
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// 405 unless `connection` may use this queue.
    pub fn check_exclusive(&self, connection: u64) -> AmqpResult<()> {
        match self.exclusive_owner {
            Some(owner) if owner != connection => Err(AmqpError::resource_locked(format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost",
                self.name
            ))),
            _ => Ok(()),
        }
    }

    /// A non-passive redeclare must name the same owner: exclusive from its owner, or
    /// non-exclusive for a shared queue; anything else is 405, as in RabbitMQ.
    pub fn check_exclusive_strict(&self, exclusive: bool, connection: u64) -> AmqpResult<()> {
        if self.exclusive_owner == exclusive.then_some(connection) {
            return Ok(());
        }
        Err(AmqpError::resource_locked(format!(
            "cannot obtain exclusive access to locked queue '{}' in vhost. It could be \
             originally declared on another connection or the exclusive property value does \
             not match that of the original declaration.",
            self.name
        )))
    }

    /// Whether a redeclare is equivalent; the error text is RabbitMQ's.
    /// (Exclusivity is checked apart, with [`Queue::check_exclusive_strict`].)
    pub fn equivalent(
        &self,
        durable: bool,
        exclusive: bool,
        auto_delete: bool,
        arguments: &FieldTable,
    ) -> Result<(), String> {
        let checks = [
            ("durable", self.durable, durable && !exclusive),
            ("auto_delete", self.auto_delete, auto_delete),
        ];
        for (name, current, received) in checks {
            if current != received {
                return Err(format!(
                    "inequivalent arg '{name}' for queue '{}': received '{received}' but current is '{current}'",
                    self.name
                ));
            }
        }
        for key in EQUIVALENCE_ARGS {
            let a = crate::args::get(&self.arguments, key);
            let b = crate::args::get(arguments, key);
            let same = match (a, b) {
                (None, None) => true,
                (Some(x), Some(y)) => crate::args::loosely_equal(x, y),
                _ => false,
            };
            if !same {
                return Err(format!(
                    "inequivalent arg '{key}' for queue '{}': received {b:?} but current is {a:?}",
                    self.name
                ));
            }
        }
        Ok(())
    }

    pub fn message_count(&self) -> u32 {
        self.state.lock().store.len() as u32
    }

    pub fn consumer_count(&self) -> u32 {
        self.state.lock().consumers.len() as u32
    }

    pub fn unacked_count(&self) -> u32 {
        self.state.lock().unacked as u32
    }

    /// Enqueues a routed message.
    ///
    /// A persistent message in a durable queue is sent to the store's writer here, under the
    /// queue's lock: before any consumer can see it, so its write precedes any ack's delete.
    /// It does not dispatch: the publishing connection calls [`Queue::poke`] once its batch
    /// of input is handled, so a burst of publishes reaches each consumer as one event.
    pub fn publish(self: &Arc<Self>, message: Arc<Message>) -> Enqueued {
        let persist = self.durable && message.is_persistent();
        let ttl = match (self.args.message_ttl, message_expiration(&message)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut st = self.state.lock();
        // Checked under the lock: a deleted queue's records are gone; none may follow.
        if self.is_deleted() {
            return Enqueued::Refused;
        }
        if self.args.overflow != Overflow::DropHead && self.would_overflow(&st, &message) {
            if self.args.overflow == Overflow::RejectPublishDlx {
                self.dead_letter(&mut st, message, Reason::Maxlen);
            }
            self.unlock(st);
            return Enqueued::Refused;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let expires_at = ttl.map_or(0, |t| now_ms().saturating_add(t).max(1));
        if persist {
            st.store.disk().put(seq, message.clone(), true, expires_at);
        }
        st.store.push(QueuedMessage {
            seq,
            message,
            redelivered: false,
            on_disk: persist,
            expires_at,
            deliveries: 0,
        });
        if self.args.overflow == Overflow::DropHead {
            while self.over_limit(&st) {
                let Some(m) = st.store.pop() else { break };
                st.store.settle(&m);
                self.dead_letter(&mut st, m.message, Reason::Maxlen);
            }
        }
        if expires_at != 0 {
            self.arm_expiry(&mut st);
        }
        self.unlock(st);
        if persist {
            Enqueued::Written
        } else {
            Enqueued::InMemory
        }
    }

    fn over_limit(&self, st: &State) -> bool {
        self.args
            .max_length
            .is_some_and(|n| st.store.len() as u64 > n)
            || self
                .args
                .max_length_bytes
                .is_some_and(|n| st.store.bytes() as u64 > n)
    }

    fn would_overflow(&self, st: &State, m: &Message) -> bool {
        self.args
            .max_length
            .is_some_and(|n| st.store.len() as u64 >= n)
            || self
                .args
                .max_length_bytes
                .is_some_and(|n| (st.store.bytes() + m.size()) as u64 > n)
    }

    /// The next live message: expired ones met on the way are dead-lettered. The clock is
    /// read only for messages that can expire (most never do).
    fn pop_live(&self, st: &mut State) -> Option<QueuedMessage> {
        loop {
            let m = st.store.pop()?;
            if m.expires_at != 0 && m.expires_at < now_ms() {
                st.store.settle(&m);
                self.dead_letter(st, m.message, Reason::Expired);
                continue;
            }
            return Some(m);
        }
    }

    /// Makes sure a timer fires when the message at the head expires.
    fn arm_expiry(self: &Arc<Self>, st: &mut State) {
        let Some(at) = st.store.front_expiry() else {
            return;
        };
        if st.timer_at.is_some_and(|t| t <= at) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.timer_at = Some(at);
        let q = Arc::downgrade(self);
        rt.spawn(async move {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            if let Some(q) = q.upgrade() {
                q.expire_due(at);
            }
        });
    }

    /// A timer fired: expire what is due at the head, re-arm for what comes next.
    fn expire_due(self: &Arc<Self>, at: u64) {
        let mut st = self.state.lock();
        if st.timer_at == Some(at) {
            st.timer_at = None;
        }
        let now = now_ms();
        while st.store.front_expiry().is_some_and(|e| e <= now) {
            let Some(m) = st.store.pop() else { break };
            st.store.settle(&m);
            self.dead_letter(&mut st, m.message, Reason::Expired);
        }
        self.arm_expiry(&mut st);
        self.unlock(st);
    }

    /// Deletes the queue once it has been unused (no consumers, no get, no redeclare) for
    /// `expires`, as `x-expires` asks.
    fn watch_expires(self: &Arc<Self>, expires: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let q = Arc::downgrade(self);
        rt.spawn(async move {
            let mut wait = expires;
            loop {
                tokio::time::sleep(wait).await;
                let Some(q) = q.upgrade() else { return };
                if q.is_deleted() {
                    return;
                }
                let idle = {
                    let st = q.state.lock();
                    st.consumers.is_empty().then(|| st.last_used.elapsed())
                };
                match idle {
                    Some(idle) if idle >= expires => {
                        if let Some(v) = q.vhost.upgrade() {
                            v.delete_queue(&q);
                        }
                        return;
                    }
                    Some(idle) => wait = expires - idle,
                    None => wait = expires,
                }
            }
        });
    }

    /// basic.get: the next ready message and how many remain. `ack` = the client will settle it.
    pub fn get(&self, ack: bool) -> Option<(QueuedMessage, u32)> {
        let mut st = self.state.lock();
        st.last_used = Instant::now();
        let got = self.pop_live(&mut st);
        if let Some(m) = &got {
            if ack {
                st.unacked += 1;
                if self.durable && m.on_disk {
                    st.store.disk().store.delivered(self.qid, m.seq);
                }
            } else {
                st.store.settle(m);
            }
        }
        let remaining = st.store.len() as u32;
        self.unlock(st);
        got.map(|m| (m, remaining))
    }

    /// Settles delivered messages for good (ack, or reject/nack without requeue).
    pub fn settle<'a>(self: &Arc<Self>, messages: impl IntoIterator<Item = &'a QueuedMessage>) {
        let mut st = self.state.lock();
        let mut n = 0;
        for m in messages {
            st.store.settle(m);
            n += 1;
        }
        st.unacked = st.unacked.saturating_sub(n);
        self.dispatch(&mut st);
        self.unlock(st);
    }

    /// Rejected without requeue: settled, and dead-lettered (reason `rejected`).
    pub fn reject(self: &Arc<Self>, messages: Vec<QueuedMessage>) {
        let mut st = self.state.lock();
        st.unacked = st.unacked.saturating_sub(messages.len());
        for m in messages {
            st.store.settle(&m);
            self.dead_letter(&mut st, m.message, Reason::Rejected);
        }
        self.dispatch(&mut st);
        self.unlock(st);
    }

    /// Gives delivered messages back in their original places, marked redelivered; a
    /// message past the queue's `x-delivery-limit` is dead-lettered instead.
    pub fn requeue(self: &Arc<Self>, messages: impl IntoIterator<Item = QueuedMessage>) {
        if self.is_deleted() {
            return;
        }
        let mut st = self.state.lock();
        for mut m in messages {
            m.redelivered = true;
            m.deliveries = m.deliveries.saturating_add(1);
            st.unacked = st.unacked.saturating_sub(1);
            if self
                .args
                .delivery_limit
                .is_some_and(|l| m.deliveries as u64 > l)
            {
                st.store.settle(&m);
                self.dead_letter(&mut st, m.message, Reason::DeliveryLimit);
                continue;
            }
            st.store.requeue(m);
        }
        self.dispatch(&mut st);
        self.unlock(st);
    }

    /// Deliveries that never reached their client (the channel or consumer was gone): put
    /// back as they were.
    pub fn undeliver(self: &Arc<Self>, messages: Vec<QueuedMessage>, consumer: &Consumer) {
        consumer.release(messages.len() as u32);
        if self.is_deleted() {
            return;
        }
        let mut st = self.state.lock();
        if !consumer.no_ack {
            st.unacked = st.unacked.saturating_sub(messages.len());
        }
        for m in messages {
            st.store.requeue(m);
        }
        self.dispatch(&mut st);
        self.unlock(st);
    }

    /// Runs dispatch (after credit was freed elsewhere, e.g. a channel-wide qos change).
    pub fn poke(self: &Arc<Self>) {
        let mut st = self.state.lock();
        self.dispatch(&mut st);
        self.unlock(st);
    }

    pub fn add_consumer(self: &Arc<Self>, c: Arc<Consumer>) -> AmqpResult<()> {
        let mut st = self.state.lock();
        if st.consumers.iter().any(|x| x.exclusive) {
            return Err(AmqpError::access_refused(format!(
                "queue '{}' in vhost has an exclusive consumer",
                self.name
            )));
        }
        if c.exclusive && !st.consumers.is_empty() {
            return Err(AmqpError::access_refused(format!(
                "cannot obtain exclusive access to queue '{}', it already has consumers",
                self.name
            )));
        }
        // Highest priority first; among equals, in order of arrival.
        let at = st.consumers.partition_point(|x| x.priority >= c.priority);
        st.consumers.insert(at, c);
        st.had_consumer = true;
        st.last_used = Instant::now();
        self.dispatch(&mut st);
        self.unlock(st);
        Ok(())
    }

    pub fn remove_consumer(&self, connection_id: u64, channel: u16, tag: &str) -> Option<Removed> {
        let mut st = self.state.lock();
        let i = st.consumers.iter().position(|c| {
            c.connection_id == connection_id && c.channel == channel && c.tag == tag
        })?;
        let consumer = st.consumers.remove(i);
        consumer.cancel();
        if st.next_consumer > i {
            st.next_consumer -= 1;
        }
        st.last_used = Instant::now();
        Some(Removed {
            consumer,
            now_unused: self.auto_delete && st.had_consumer && st.consumers.is_empty(),
        })
    }

    /// Body bytes of ready messages in RAM and in all.
    pub fn ready_bytes(&self) -> (usize, usize) {
        let st = self.state.lock();
        (st.store.bytes_in_ram(), st.store.bytes())
    }

    pub fn purge(&self) -> u32 {
        self.state.lock().store.purge() as u32
    }

    /// Marks the queue deleted and empties it; returns the ready count and the consumers
    /// (to be told with basic.cancel).
    pub fn delete_contents(&self) -> (u32, Vec<Arc<Consumer>>) {
        let mut st = self.state.lock();
        self.deleted.store(true, Ordering::Release);
        let n = st.store.discard() as u32;
        let consumers = std::mem::take(&mut st.consumers);
        for c in &consumers {
            c.cancel();
        }
        (n, consumers)
    }

    /// Hands ready messages to consumers with credit, one each in turn, then sends each
    /// consumer's share to its connection as one event.
    fn dispatch(self: &Arc<Self>, st: &mut State) {
        // Single active consumer: only the first registered one gets messages.
        let n = if self.args.single_active_consumer {
            st.consumers.len().min(1)
        } else {
            st.consumers.len()
        };
        if n == 0 || st.store.is_empty() {
            return;
        }
        // One slot per consumer that gets something (usually one).
        let mut batches: Vec<(usize, Vec<QueuedMessage>)> = Vec::new();
        let mut delivered_up_to = None;
        while !st.store.is_empty() {
            let Some(i) = pick_consumer(st, n) else {
                break;
            };
            let Some(m) = self.pop_live(st) else {
                // Credit was taken for a message that turned out expired: give it back.
                st.consumers[i].release(1);
                break;
            };
            if st.consumers[i].no_ack {
                st.store.settle(&m);
            } else {
                st.unacked += 1;
                if m.on_disk {
                    delivered_up_to = Some(m.seq);
                }
            }
            match batches.iter_mut().find(|(c, _)| *c == i) {
                Some((_, ms)) => ms.push(m),
                None => batches.push((i, vec![m])),
            }
        }
        if let (true, Some(seq)) = (self.durable, delivered_up_to) {
            st.store.disk().store.delivered(self.qid, seq);
        }
        for (i, messages) in batches {
            let consumer = st.consumers[i].clone();
            let event = ConnEvent::Deliver {
                queue: self.clone(),
                consumer: consumer.clone(),
                messages,
            };
            if let Err(tokio::sync::mpsc::error::SendError(event)) = consumer.events.send(event) {
                // The connection is gone (its cleanup removes the consumer): take them back.
                consumer.cancel();
                if let ConnEvent::Deliver { messages, .. } = event {
                    consumer.release(messages.len() as u32);
                    if !consumer.no_ack {
                        st.unacked = st.unacked.saturating_sub(messages.len());
                    }
                    for m in messages {
                        st.store.requeue(m);
                    }
                }
            }
        }
    }
}

/// The consumer the next message goes to, its credit taken: round-robin among the highest
/// priority consumers that have credit (consumers are kept sorted by priority), lower ones
/// only when every higher one is full. `None` if nobody has credit.
fn pick_consumer(st: &mut State, n: usize) -> Option<usize> {
    let mut start = 0;
    while start < n {
        let p = st.consumers[start].priority;
        let end = (start..n)
            .find(|&i| st.consumers[i].priority != p)
            .unwrap_or(n);
        let len = end - start;
        for k in 0..len {
            let i = start + (st.next_consumer + k) % len;
            if st.consumers[i].try_acquire() {
                st.next_consumer = st.next_consumer.wrapping_add(k + 1);
                return Some(i);
            }
        }
        start = end;
    }
    None
}
