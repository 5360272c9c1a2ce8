//! A queue: ready messages ([`ready::Ready`], RAM then disk), consumers, and dispatch.
//!
//! Each queue is guarded by one mutex, held for a few instructions, never across disk I/O or an
//! `.await`. There is no queue task: whoever changes what can be delivered (a publish, an
//! ack, a new consumer, a qos change, a requeue) runs dispatch ([`dispatch`]) under that
//! lock, which hands messages to consumers with credit, round-robin, through each consumer's
//! [`consumer::Outbox`] (its connection drains them into socket writes).
//!
//! A queue knows nothing above it: what it cannot do alone (republish dead letters, delete
//! itself when `x-expires` says so) it asks of its [`Owner`] (the vhost).
//!
//! Files: this one (the queue, publish, get, settle, requeue, consumers), `dispatch`,
//! `expiry` (TTLs and `x-expires`), `equivalence` (redeclares and exclusivity), `ready`
//! (the ready messages, RAM then disk), `pager` (the disk side, run off the lock) and
//! `page_file` (the on-disk tail), `arguments`
//! (x-arguments checked at declare), `policy` (the policies a queue runs with),
//! `consumer` (consumers, credit, the outbox),
//! `dead_letter` (the dead-lettered message and `x-death`).

pub mod arguments;
pub mod consumer;
pub mod dead_letter;
mod dispatch;
pub mod equivalence;
mod expiry;
mod page_file;
mod pager;
mod policy;
pub mod ready;

pub use expiry::now_ms;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use amq_protocol::types::FieldTable;
use parking_lot::{Mutex, MutexGuard};

use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::metrics::message_stats::{self as stats, MessageStats};
use crate::policy::Applied;
use crate::store::recovery::RecoveredQueue;
use arguments::{Overflow, QueueArgs};
use consumer::Consumer;
use dead_letter::{DeadLetter, Reason};
use ready::{Disk, QueuedMessage, Ready};

/// What a queue asks of whoever holds it (the vhost): the queue layer never calls up.
pub trait Owner: Send + Sync {
    /// Republishes dead letters to their dead-letter exchanges.
    fn dead_letter(&self, dead: Vec<DeadLetter>);
    /// `x-expires` ran out: delete the queue.
    fn expire(&self, q: &Arc<Queue>);
}

/// Everything a new queue is made of.
pub struct QueueConfig {
    pub name: String,
    pub durable: bool,
    /// The connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    /// `arguments`, parsed and checked.
    pub args: QueueArgs,
    pub owner: Weak<dyn Owner>,
    pub disk: Disk,
    /// RAM the ready messages may take before the rest goes to disk.
    pub ram_budget: usize,
}

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
    /// What the queue runs with: its arguments met with its policies
    /// ([`QueueArgs::with_policy`]); replaced when a policy changes.
    args: Arc<QueueArgs>,
    /// The policies that apply (reported by the management API).
    applied: Arc<Applied>,
    /// An `x-expires` watcher is running (started by the argument or a policy).
    watching_expires: bool,
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
    /// `arguments` parsed (checked at declare); shared by every queue without any.
    declared: Arc<QueueArgs>,
    /// `x-overflow` was among the arguments (it then wins over a policy's).
    overflow_declared: bool,
    /// The effective consumer timeout in ms (0: none), read on each delivery without the
    /// lock.
    consumer_timeout: AtomicU64,
    /// Dead-lettering and `x-expires` go through it (weak: the owner holds its queues).
    owner: Weak<dyn Owner>,
    state: Mutex<State>,
    deleted: AtomicBool,
    /// Counts for the management API's rates (added under the lock, where the work is).
    pub stats: MessageStats,
}

/// Most queues have no arguments: they share one parsed set instead of 152 bytes each.
fn shared_args(args: QueueArgs) -> Arc<QueueArgs> {
    static NONE: OnceLock<Arc<QueueArgs>> = OnceLock::new();
    let none = NONE.get_or_init(|| Arc::new(QueueArgs::default()));
    if args == **none {
        none.clone()
    } else {
        Arc::new(args)
    }
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

/// A queue's counts at one moment ([`Queue::snapshot`]).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub ready: usize,
    pub unacked: usize,
    /// Body bytes of the ready messages, in RAM and on disk.
    pub ready_bytes: usize,
    /// Body bytes of the ready messages held in RAM.
    pub ram_bytes: usize,
    pub consumers: usize,
    pub exclusive_consumer_tag: Option<String>,
    /// Since the last consume, get or declare.
    pub idle_for: Duration,
}

/// What [`Queue::remove_consumer`] found.
pub struct Removed {
    /// The queue is auto-delete and this was its last consumer.
    pub now_unused: bool,
}

impl Queue {
    pub fn new(c: QueueConfig) -> Arc<Self> {
        let QueueConfig {
            name,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            args,
            owner,
            disk,
            ram_budget,
        } = c;
        let qid = disk.qid;
        let declared = shared_args(args);
        let overflow_declared = crate::args::get(&arguments, "x-overflow").is_some();
        let q = Arc::new_cyclic(|me| Queue {
            name,
            qid,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            owner,
            state: Mutex::new(State {
                store: Ready::new(disk, ram_budget, declared.max_priority, me.clone()),
                next_seq: 0,
                consumers: Vec::new(),
                next_consumer: 0,
                had_consumer: false,
                unacked: 0,
                dead: Vec::new(),
                timer_at: None,
                last_used: Instant::now(),
                args: declared.clone(),
                applied: Applied::none(),
                watching_expires: false,
            }),
            consumer_timeout: AtomicU64::new(declared.consumer_timeout.unwrap_or(0)),
            declared,
            overflow_declared,
            deleted: AtomicBool::new(false),
            stats: MessageStats::default(),
        });
        let mut st = q.state.lock();
        q.start_expires_watch(&mut st);
        drop(st);
        q
    }

    /// Messages read back from disk (on the pager's thread): into the head, then on to
    /// consumers; a drop-head limit and the head's expiry timer see them now.
    fn refilled(self: &Arc<Self>, r: pager::Refill) {
        let mut st = self.state.lock();
        if st.store.refilled(r) {
            self.enforce_drop_head(&mut st);
            self.arm_expiry(&mut st);
            self.dispatch(&mut st);
        }
        self.unlock(st);
    }

    /// `x-overflow: drop-head`: the oldest messages go (dead-lettered) while over a limit.
    /// Those still on disk wait for their refill (a deep queue may be over by one read).
    fn enforce_drop_head(&self, st: &mut State) {
        if st.args.overflow != Overflow::DropHead {
            return;
        }
        while self.over_limit(st) {
            let Some(m) = st.store.pop() else { break };
            st.store.settle(&m);
            self.dead_letter(st, m.message, Reason::Maxlen);
        }
    }

    /// Fills a queue created at start with what the store had for it.
    pub fn restore(self: &Arc<Self>, r: RecoveredQueue) {
        let mut st = self.state.lock();
        st.next_seq = r.next_seq;
        let head = r
            .head
            .into_iter()
            .map(|e| QueuedMessage {
                seq: e.seq,
                message: Arc::new(e.message),
                redelivered: e.redelivered,
                on_disk: true,
                expires_at: e.expires_at,
                deliveries: 0,
            })
            .collect();
        st.store.restore(head, r.tail, r.settled, r.delivered);
        self.arm_expiry(&mut st);
        self.unlock(st);
    }

    /// Releases the lock, then dead-letters what was collected under it.
    fn unlock(&self, mut st: MutexGuard<'_, State>) {
        let dead = std::mem::take(&mut st.dead);
        drop(st);
        if !dead.is_empty() {
            if let Some(owner) = self.owner.upgrade() {
                owner.dead_letter(dead);
            }
        }
    }

    /// Queues `m` for dead-lettering (or drops it: no dead-letter exchange).
    fn dead_letter(&self, st: &mut State, message: Arc<Message>, reason: Reason) {
        if let Some(exchange) = &st.args.dead_letter_exchange {
            let d = DeadLetter {
                message,
                reason,
                queue: self.name.clone(),
                exchange: exchange.clone(),
                routing_key: st.args.dead_letter_routing_key.clone(),
            };
            st.dead.push(d);
        }
    }

    /// A consume, get or redeclare: the queue is in use (`x-expires`).
    pub fn touch(&self) {
        self.state.lock().last_used = Instant::now();
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
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
        let own_ttl = expiry::message_expiration(&message);
        let mut st = self.state.lock();
        // Checked under the lock: a deleted queue's records are gone; none may follow.
        if self.is_deleted() {
            return Enqueued::Refused;
        }
        let ttl = match (st.args.message_ttl, own_ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let overflow = st.args.overflow;
        if overflow != Overflow::DropHead && self.would_overflow(&st, &message) {
            if overflow == Overflow::RejectPublishDlx {
                self.dead_letter(&mut st, message, Reason::Maxlen);
            }
            self.unlock(st);
            return Enqueued::Refused;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        let expires_at = ttl.map_or(0, |t| now_ms().saturating_add(t).max(1));
        if persist {
            st.store.disk().put(seq, message.clone(), expires_at);
        }
        st.store.push(QueuedMessage {
            seq,
            message,
            redelivered: false,
            on_disk: persist,
            expires_at,
            deliveries: 0,
        });
        self.enforce_drop_head(&mut st);
        if expires_at != 0 {
            self.arm_expiry(&mut st);
        }
        stats::add(&self.stats.publish, 1);
        self.unlock(st);
        if persist {
            Enqueued::Written
        } else {
            Enqueued::InMemory
        }
    }

    fn over_limit(&self, st: &State) -> bool {
        st.args
            .max_length
            .is_some_and(|n| st.store.len() as u64 > n)
            || st
                .args
                .max_length_bytes
                .is_some_and(|n| st.store.bytes() as u64 > n)
    }

    fn would_overflow(&self, st: &State, m: &Message) -> bool {
        st.args
            .max_length
            .is_some_and(|n| st.store.len() as u64 >= n)
            || st
                .args
                .max_length_bytes
                .is_some_and(|n| (st.store.bytes() + m.size()) as u64 > n)
    }

    /// basic.get: the next ready message and how many remain. `ack` = the client will settle it.
    ///
    /// If the head is empty while messages are on their way from disk, it waits for them
    /// (with the lock released, off the runtime's worker): a get answers get-empty only
    /// when the queue is.
    pub fn get(&self, ack: bool) -> Option<(QueuedMessage, u32)> {
        const TRIES: usize = 3;
        for attempt in 1..=TRIES {
            let mut st = self.state.lock();
            st.last_used = Instant::now();
            let got = self.pop_live(&mut st);
            if got.is_none() && st.store.refilling() && attempt < TRIES {
                let pager = st.store.pager();
                self.unlock(st);
                if let Some(p) = pager {
                    p.wait_idle(Duration::from_secs(5));
                }
                continue;
            }
            match &got {
                None => stats::add(&self.stats.get_empty, 1),
                Some(m) => {
                    let kind = if ack {
                        &self.stats.get
                    } else {
                        &self.stats.get_no_ack
                    };
                    stats::add(kind, 1);
                    stats::add(&self.stats.redeliver, u64::from(m.redelivered));
                }
            }
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
            return got.map(|m| (m, remaining));
        }
        None
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
        stats::add(&self.stats.ack, n as u64);
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
            if st
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
        st.consumers.remove(i).cancel();
        if st.next_consumer > i {
            st.next_consumer -= 1;
        }
        st.last_used = Instant::now();
        Some(Removed {
            now_unused: self.auto_delete && st.had_consumer && st.consumers.is_empty(),
        })
    }

    /// The counts the management API shows, read under one short lock (no disk I/O).
    pub fn snapshot(&self) -> Snapshot {
        let st = self.state.lock();
        Snapshot {
            ready: st.store.len(),
            unacked: st.unacked,
            ready_bytes: st.store.bytes(),
            ram_bytes: st.store.bytes_in_ram(),
            consumers: st.consumers.len(),
            exclusive_consumer_tag: st
                .consumers
                .iter()
                .find(|c| c.exclusive)
                .map(|c| c.tag.clone()),
            idle_for: st.last_used.elapsed(),
        }
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
}
