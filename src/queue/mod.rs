//! A queue: ready messages (behind [`store::MessageStore`]), consumers, and dispatch.
//!
//! Each queue has one owner: a mutex held for a few instructions, never across an `.await`.
//! There is no queue task: whoever changes what can be delivered (a publish, an ack, a new
//! consumer, a qos change, a requeue) runs [`Queue::dispatch`] under that lock, which hands
//! messages to consumers with credit, round-robin, by sending them to the consumer's
//! connection task. That task batches them into socket writes.

pub mod consumer;
pub mod store;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;

use crate::connection::ConnEvent;
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use consumer::Consumer;
use store::{MemoryStore, MessageStore, QueuedMessage};

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
    store: Box<dyn MessageStore>,
    next_seq: u64,
    consumers: Vec<Arc<Consumer>>,
    /// Round-robin cursor into `consumers`.
    next_consumer: usize,
    had_consumer: bool,
    /// Delivered to ack-mode consumers (or got), not yet settled.
    unacked: usize,
}

pub struct Queue {
    pub name: String,
    pub durable: bool,
    /// The connection that owns an exclusive queue.
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
    state: Mutex<State>,
    deleted: AtomicBool,
}

/// What [`Queue::remove_consumer`] found.
pub struct Removed {
    pub consumer: Arc<Consumer>,
    /// The queue is auto-delete and this was its last consumer.
    pub now_unused: bool,
}

impl Queue {
    pub fn new(
        name: String,
        durable: bool,
        exclusive_owner: Option<u64>,
        auto_delete: bool,
        arguments: FieldTable,
    ) -> Arc<Self> {
        Arc::new(Queue {
            name,
            durable,
            exclusive_owner,
            auto_delete,
            arguments,
            state: Mutex::new(State {
                store: Box::<MemoryStore>::default(),
                next_seq: 0,
                consumers: Vec::new(),
                next_consumer: 0,
                had_consumer: false,
                unacked: 0,
            }),
            deleted: AtomicBool::new(false),
        })
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

    /// Enqueues a routed message. Returns false if the queue refused it.
    ///
    /// It does not dispatch: the publishing connection calls [`Queue::poke`] once its batch
    /// of input is handled, so a burst of publishes reaches each consumer as one event.
    pub fn publish(self: &Arc<Self>, message: Arc<Message>) -> bool {
        if self.is_deleted() {
            return false;
        }
        let mut st = self.state.lock();
        let seq = st.next_seq;
        st.next_seq += 1;
        st.store.push(QueuedMessage {
            seq,
            message,
            redelivered: false,
        });
        true
    }

    /// basic.get: the next ready message and how many remain. `ack` = the client will settle it.
    pub fn get(&self, ack: bool) -> Option<(QueuedMessage, u32)> {
        let mut st = self.state.lock();
        let m = st.store.pop()?;
        if ack {
            st.unacked += 1;
        } else {
            st.store.settle(m.seq);
        }
        Some((m, st.store.len() as u32))
    }

    /// Settles delivered messages for good (ack, or reject/nack without requeue).
    pub fn settle(self: &Arc<Self>, seqs: &[u64]) {
        let mut st = self.state.lock();
        for &s in seqs {
            st.store.settle(s);
        }
        st.unacked = st.unacked.saturating_sub(seqs.len());
        self.dispatch(&mut st);
    }

    /// Gives delivered messages back in their original places, marked redelivered.
    pub fn requeue(self: &Arc<Self>, messages: impl IntoIterator<Item = QueuedMessage>) {
        if self.is_deleted() {
            return;
        }
        let mut st = self.state.lock();
        for mut m in messages {
            m.redelivered = true;
            st.unacked = st.unacked.saturating_sub(1);
            st.store.requeue(m);
        }
        self.dispatch(&mut st);
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
    }

    /// Runs dispatch (after credit was freed elsewhere, e.g. a channel-wide qos change).
    pub fn poke(self: &Arc<Self>) {
        let mut st = self.state.lock();
        self.dispatch(&mut st);
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
        st.consumers.push(c);
        st.had_consumer = true;
        self.dispatch(&mut st);
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
        Some(Removed {
            consumer,
            now_unused: self.auto_delete && st.had_consumer && st.consumers.is_empty(),
        })
    }

    pub fn purge(&self) -> u32 {
        self.state.lock().store.purge() as u32
    }

    /// Marks the queue deleted and empties it; returns the ready count and the consumers
    /// (to be told with basic.cancel).
    pub fn delete_contents(&self) -> (u32, Vec<Arc<Consumer>>) {
        let mut st = self.state.lock();
        self.deleted.store(true, Ordering::Release);
        let n = st.store.purge() as u32;
        let consumers = std::mem::take(&mut st.consumers);
        for c in &consumers {
            c.cancel();
        }
        (n, consumers)
    }

    /// Hands ready messages to consumers with credit, one each in turn, then sends each
    /// consumer's share to its connection as one event.
    fn dispatch(self: &Arc<Self>, st: &mut State) {
        let n = st.consumers.len();
        if n == 0 || st.store.is_empty() {
            return;
        }
        // One slot per consumer that gets something (usually one).
        let mut batches: Vec<(usize, Vec<QueuedMessage>)> = Vec::new();
        let mut refused = 0;
        while refused < n && !st.store.is_empty() {
            let i = st.next_consumer % n;
            st.next_consumer = (i + 1) % n;
            if !st.consumers[i].try_acquire() {
                refused += 1;
                continue;
            }
            refused = 0;
            let Some(m) = st.store.pop() else { break };
            if st.consumers[i].no_ack {
                st.store.settle(m.seq);
            } else {
                st.unacked += 1;
            }
            match batches.iter_mut().find(|(c, _)| *c == i) {
                Some((_, ms)) => ms.push(m),
                None => batches.push((i, vec![m])),
            }
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
