//! What other tasks tell a connection: deliveries from queues, broker cancels, direct
//! reply-to messages and the store's sync completions, all through its [`Inbox`], which the
//! connection's loop drains in batches.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::Connection;
use crate::message::Message;
use crate::queue::consumer::{Delivery, Outbox};

/// What other tasks tell a connection.
pub enum ConnEvent {
    /// A queue hands messages to one of this connection's consumers (credit already taken).
    Deliver(Delivery),
    /// The broker cancels a consumer (its queue was deleted).
    Cancel { channel: u16, tag: String },
    /// A direct reply-to message for one of this connection's reply consumers.
    Reply {
        channel: u16,
        tag: String,
        message: Arc<Message>,
    },
    /// The store synced everything this connection sent before its sync `token`
    /// (`ok` = false: the write failed, and what waited on it is nacked).
    Durable { token: u64, ok: bool },
    /// The broker closes the connection (320): its vhost or user was deleted, or the
    /// user's password changed; or the management API closed it.
    ForceClose(String),
    /// The management API asks for the channels (see [`Connection::report`]).
    Report(tokio::sync::oneshot::Sender<Vec<crate::broker::sessions::ChannelInfo>>),
}

/// A connection's events: other tasks push, the connection's loop takes all there are at
/// once. Not a tokio mpsc: its first block of 32 slots would cost every idle connection
/// 1.5 KiB; this costs an empty `Vec` until something arrives.
#[derive(Default)]
pub(super) struct Inbox {
    queue: Mutex<Pending>,
    /// Woken when `queue` goes from empty to not (a permit is kept if nobody waits).
    ready: Notify,
}

#[derive(Default)]
struct Pending {
    events: Vec<ConnEvent>,
    /// The connection is gone: nothing more is taken.
    closed: bool,
}

impl Inbox {
    /// Queues `e`, or gives it back if the connection is gone.
    pub(super) fn send(&self, e: ConnEvent) -> Result<(), ConnEvent> {
        let mut q = self.queue.lock();
        if q.closed {
            return Err(e);
        }
        let wake = q.events.is_empty();
        q.events.push(e);
        drop(q);
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// Waits until there are events, then swaps them into `into` (empty on entry; its
    /// buffer becomes the inbox's, so the two are reused in turn). Cancel-safe: nothing is
    /// taken until it returns.
    pub(super) async fn recv(&self, into: &mut Vec<ConnEvent>) {
        loop {
            {
                let mut q = self.queue.lock();
                if !q.events.is_empty() {
                    std::mem::swap(&mut q.events, into);
                    return;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Frees an empty inbox's buffer (an idle connection).
    pub(super) fn release(&self) {
        let mut q = self.queue.lock();
        if q.events.is_empty() {
            q.events = Vec::new();
        }
    }

    /// The connection ends: later sends are refused; returns what was still queued.
    pub(super) fn close(&self) -> Vec<ConnEvent> {
        let mut q = self.queue.lock();
        q.closed = true;
        std::mem::take(&mut q.events)
    }
}

/// The inbox as the queues (and direct reply-to) see it.
impl Outbox for Inbox {
    fn deliver(&self, d: Delivery) -> Result<(), Delivery> {
        match self.send(ConnEvent::Deliver(d)) {
            Ok(()) => Ok(()),
            Err(ConnEvent::Deliver(d)) => Err(d),
            // What was sent is a Deliver; nothing else can come back.
            Err(_) => Ok(()),
        }
    }

    fn cancelled(&self, channel: u16, tag: &str) {
        let _ = self.send(ConnEvent::Cancel {
            channel,
            tag: tag.to_string(),
        });
    }

    fn reply(&self, channel: u16, tag: &str, message: Arc<Message>) -> bool {
        self.send(ConnEvent::Reply {
            channel,
            tag: tag.to_string(),
            message,
        })
        .is_ok()
    }
}

impl crate::broker::sessions::Control for Inbox {
    fn force_close(&self, text: String) {
        let _ = self.send(ConnEvent::ForceClose(text));
    }

    fn report(
        &self,
        reply: tokio::sync::oneshot::Sender<Vec<crate::broker::sessions::ChannelInfo>>,
    ) {
        let _ = self.send(ConnEvent::Report(reply));
    }
}

impl Connection {
    pub(super) fn handle_event(&mut self, e: ConnEvent) {
        match e {
            ConnEvent::Deliver(d) => self.deliver(d.queue, d.consumer, d.messages),
            ConnEvent::Cancel { channel, tag } => self.broker_cancel(channel, &tag),
            ConnEvent::Durable { token, ok } => self.synced(token, ok),
            ConnEvent::ForceClose(text) => {
                if self.phase == super::Phase::Open {
                    self.close_connection(&crate::error::AmqpError::connection_forced(text));
                }
            }
            ConnEvent::Reply {
                channel,
                tag,
                message,
            } => self.deliver_reply(channel, &tag, &message),
            ConnEvent::Report(reply) => {
                let _ = reply.send(self.report());
            }
        }
    }
}

impl Connection {
    /// The channels as the management API lists them (asked rarely: copies are fine).
    fn report(&self) -> Vec<crate::broker::sessions::ChannelInfo> {
        use crate::broker::sessions::{ChannelInfo, ConsumerInfo};
        use std::sync::atomic::Ordering;
        let mut v: Vec<ChannelInfo> = self
            .channels
            .values()
            .map(|c| ChannelInfo {
                number: c.id,
                confirm: c.confirms.is_some(),
                transactional: c.tx.is_some(),
                prefetch_count: c.consumer_prefetch,
                global_prefetch_count: c.credit.prefetch.load(Ordering::Relaxed),
                messages_unacknowledged: c.unacked.len() as u64,
                messages_unconfirmed: c.confirms.as_ref().map_or(0, |f| f.unconfirmed()),
                closing: c.closing,
                consumers: c
                    .consumers
                    .iter()
                    .map(|(tag, (consumer, queue))| ConsumerInfo {
                        tag: tag.clone(),
                        queue: queue.name.clone(),
                        ack_required: !consumer.no_ack,
                        exclusive: consumer.exclusive,
                        prefetch_count: consumer.prefetch,
                        // The one consume argument a consumer keeps.
                        arguments: priority_argument(consumer.priority),
                    })
                    .collect(),
            })
            .collect();
        v.sort_by_key(|c| c.number);
        v
    }
}

fn priority_argument(p: i64) -> amq_protocol::types::FieldTable {
    let mut t = amq_protocol::types::FieldTable::default();
    if p != 0 {
        t.insert(
            "x-priority".into(),
            amq_protocol::types::AMQPValue::LongLongInt(p),
        );
    }
    t
}
