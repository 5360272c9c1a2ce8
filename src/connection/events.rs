//! What other tasks tell a connection: deliveries from queues, broker cancels, direct
//! reply-to messages and the store's sync completions, all through one unbounded channel
//! that the connection's loop drains in batches.

use std::sync::Arc;

use tokio::sync::mpsc;

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
}

/// A connection's event channel, as the queues (and direct reply-to) see it.
pub(super) struct ConnOutbox(pub(super) mpsc::UnboundedSender<ConnEvent>);

impl Outbox for ConnOutbox {
    fn deliver(&self, d: Delivery) -> Result<(), Delivery> {
        match self.0.send(ConnEvent::Deliver(d)) {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendError(ConnEvent::Deliver(d))) => Err(d),
            // What was sent is a Deliver; nothing else can come back.
            Err(_) => Ok(()),
        }
    }

    fn cancelled(&self, channel: u16, tag: &str) {
        let _ = self.0.send(ConnEvent::Cancel {
            channel,
            tag: tag.to_string(),
        });
    }

    fn reply(&self, channel: u16, tag: &str, message: Arc<Message>) -> bool {
        self.0
            .send(ConnEvent::Reply {
                channel,
                tag: tag.to_string(),
                message,
            })
            .is_ok()
    }
}

impl Connection {
    pub(super) fn handle_event(&mut self, e: ConnEvent) {
        match e {
            ConnEvent::Deliver(d) => self.deliver(d.queue, d.consumer, d.messages),
            ConnEvent::Cancel { channel, tag } => self.broker_cancel(channel, &tag),
            ConnEvent::Durable { token, ok } => self.synced(token, ok),
            ConnEvent::Reply {
                channel,
                tag,
                message,
            } => self.deliver_reply(channel, &tag, &message),
        }
    }
}
