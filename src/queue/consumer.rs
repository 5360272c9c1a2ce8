//! A consumer as its queue sees it: where to send deliveries (an [`Outbox`] its connection
//! implements: the queue knows nothing of connections), and its credit.
//!
//! Credit is counted with atomics so that whichever task dispatches (a publisher's, or the
//! consumer's own after an ack) can check it without a hop: a consumer may hold up to its
//! `prefetch` unacked messages (global=false qos), and all consumers of a channel together up
//! to the channel's limit (global=true qos). A no-ack consumer has no unacked messages, but
//! its in-flight deliveries (sent to the connection, not yet written) are capped so a slow
//! socket pushes back on the queue instead of growing memory.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use super::ready::QueuedMessage;
use super::Queue;
use crate::message::Message;

/// Messages a queue hands one of its consumers (credit already taken).
pub struct Delivery {
    pub queue: Arc<Queue>,
    pub consumer: Arc<Consumer>,
    pub messages: Vec<QueuedMessage>,
}

/// Where a consumer's deliveries go: its connection, which drains them into its socket.
pub trait Outbox: Send + Sync {
    /// Hands over a batch; gives it back if the connection is gone.
    fn deliver(&self, d: Delivery) -> Result<(), Delivery>;
    /// The broker cancelled the consumer `tag` on `channel` (its queue was deleted).
    fn cancelled(&self, channel: u16, tag: &str);
    /// A direct reply-to message (delivered without a queue) for the reply consumer `tag`
    /// on `channel`; false if the connection is gone.
    fn reply(&self, channel: u16, tag: &str, message: Arc<Message>) -> bool;
}

/// A consumer as basic.consume asks for it.
pub struct ConsumerSpec {
    pub tag: String,
    pub channel: u16,
    pub connection_id: u64,
    pub no_ack: bool,
    pub exclusive: bool,
    /// Per-consumer limit (0 = unlimited).
    pub prefetch: u32,
    /// `x-priority`.
    pub priority: i64,
    pub channel_credit: Arc<ChannelCredit>,
    pub outbox: Arc<dyn Outbox>,
}

/// Deliveries a no-ack consumer may have in flight to its connection.
pub const NO_ACK_WINDOW: u32 = 1024;

/// The channel-wide limit (basic.qos global=true) shared by a channel's consumers.
#[derive(Default)]
pub struct ChannelCredit {
    pub prefetch: AtomicU32,
    pub unacked: AtomicU32,
}

impl ChannelCredit {
    /// Takes one unit if under the limit (0 = unlimited).
    fn try_take(&self) -> bool {
        let limit = self.prefetch.load(Ordering::Relaxed);
        self.unacked
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (limit == 0 || n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn give_back(&self, n: u32) {
        let _ = self
            .unacked
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |x| {
                Some(x.saturating_sub(n))
            });
    }
}

pub struct Consumer {
    pub tag: String,
    pub channel: u16,
    pub connection_id: u64,
    pub no_ack: bool,
    pub exclusive: bool,
    /// Per-consumer limit (0 = unlimited), fixed when the consumer starts, as in RabbitMQ.
    pub prefetch: u32,
    /// `x-priority` of basic.consume: higher gets messages first (RabbitMQ's consumer
    /// priorities).
    pub priority: i64,
    pub channel_credit: Arc<ChannelCredit>,
    pub outbox: Arc<dyn Outbox>,
    outstanding: AtomicU32,
    cancelled: AtomicBool,
}

impl Consumer {
    pub fn new(spec: ConsumerSpec) -> Arc<Self> {
        let ConsumerSpec {
            tag,
            channel,
            connection_id,
            no_ack,
            exclusive,
            prefetch,
            priority,
            channel_credit,
            outbox,
        } = spec;
        Arc::new(Consumer {
            tag,
            channel,
            connection_id,
            no_ack,
            exclusive,
            prefetch,
            priority,
            channel_credit,
            outbox,
            outstanding: AtomicU32::new(0),
            cancelled: AtomicBool::new(false),
        })
    }

    /// Reserves credit for one delivery; called by the queue under its lock.
    pub(crate) fn try_acquire(&self) -> bool {
        if self.cancelled.load(Ordering::Relaxed) {
            return false;
        }
        let n = self.outstanding.load(Ordering::Acquire);
        if self.no_ack {
            if n >= NO_ACK_WINDOW {
                return false;
            }
        } else {
            if self.prefetch != 0 && n >= self.prefetch {
                return false;
            }
            if !self.channel_credit.try_take() {
                return false;
            }
        }
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        true
    }

    /// Returns credit for `n` deliveries (acked, rejected, written for no-ack, or given back).
    pub fn release(&self, n: u32) {
        let _ = self
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |x| {
                Some(x.saturating_sub(n))
            });
        if !self.no_ack {
            self.channel_credit.give_back(n);
        }
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }
}
