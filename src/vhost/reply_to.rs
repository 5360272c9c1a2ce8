//! Direct reply-to targets: a reply consumer's token, and where its replies go. The
//! connection that consumes `amq.rabbitmq.reply-to` registers one; a publish to the default
//! exchange with `amq.rabbitmq.reply-to.<token>` is handed to it without a queue.

use std::sync::Arc;

use crate::message::Message;
use crate::queue::consumer::Outbox;

/// The pseudo-queue an RPC client consumes from.
pub const PSEUDO_QUEUE: &str = "amq.rabbitmq.reply-to";
/// Prefix of the routing keys replies are published with.
pub const PREFIX: &str = "amq.rabbitmq.reply-to.";

/// Where replies for one token go.
pub struct ReplyTarget {
    pub outbox: Arc<dyn Outbox>,
    pub channel: u16,
    pub tag: String,
}

impl super::VHost {
    /// Hands a reply to the consumer behind `token`; false if there is none (unroutable).
    pub fn send_reply(&self, token: &str, message: &Arc<Message>) -> bool {
        let Some(t) = self.replies.get(token) else {
            return false;
        };
        t.outbox.reply(t.channel, &t.tag, message.clone())
    }
}
