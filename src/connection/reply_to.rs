//! Direct reply-to (RabbitMQ's `amq.rabbitmq.reply-to` pseudo-queue): an RPC client consumes
//! from the pseudo-queue (no-ack) and publishes requests with `reply_to` set to it; the broker
//! rewrites that to `amq.rabbitmq.reply-to.<token>`, and a reply published to the default
//! exchange with that routing key goes straight to the client's consumer, with no queue.

use crate::metrics::Counter;
use std::sync::Arc;

use amq_protocol::protocol::basic::{gen_properties, parse_properties};
use amq_protocol::protocol::{basic, AMQPClass};
use bytes::Bytes;
use warren_codec::{encode, Content, Properties};

use super::Connection;
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::vhost::reply_to::{ReplyTarget, PREFIX, PSEUDO_QUEUE};

impl Connection {
    /// basic.consume on the pseudo-queue.
    pub(super) fn consume_replies(&mut self, ch: u16, m: &basic::Consume) -> AmqpResult<()> {
        if !m.no_ack {
            return Err(AmqpError::precondition_failed(
                "reply consumer cannot acknowledge",
            ));
        }
        let vhost = self.vhost()?;
        let tag = if m.consumer_tag.as_str().is_empty() {
            crate::names::consumer_tag()
        } else {
            m.consumer_tag.as_str().to_string()
        };
        let outbox = self.outbox.clone();
        let c = self.channel_mut(ch)?;
        if c.reply_to.is_some() {
            return Err(AmqpError::precondition_failed("reply consumer already set"));
        }
        let token = format!("{:032x}", rand::random::<u128>());
        vhost.replies.insert(
            token.clone(),
            ReplyTarget {
                outbox,
                channel: ch,
                tag: tag.clone(),
            },
        );
        c.reply_to = Some((token, tag.clone()));
        if !m.nowait {
            self.write_method(
                ch,
                &AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: tag.as_str().into(),
                })),
            );
        }
        Ok(())
    }

    /// Forgets the channel's reply consumer (cancel, channel or connection close).
    pub(super) fn drop_replies(&mut self, token: &str) {
        if let Some(v) = &self.vhost {
            v.replies.remove(token);
        }
    }

    /// A request naming the pseudo-queue as its `reply_to`: rewritten to this channel's token.
    pub(super) fn rewrite_reply_to(&mut self, ch: u16, content: &mut Content) -> AmqpResult<()> {
        if content.properties.reply_to() != Some(PSEUDO_QUEUE) {
            return Ok(());
        }
        let token = match self.channels.get(&ch).and_then(|c| c.reply_to.as_ref()) {
            Some((token, _)) => token.clone(),
            None => {
                return Err(AmqpError::precondition_failed(
                    "fast reply consumer does not exist",
                ))
            }
        };
        let reply_to = format!("{PREFIX}{token}");
        let (_, props) = parse_properties(&content.properties.raw()[..])
            .map_err(|_| AmqpError::syntax_error("malformed content header"))?;
        let props = props.with_reply_to(reply_to.as_str().into());
        let ctx = amq_protocol::frame::WriteContext::from(Vec::new());
        let (raw, _) = gen_properties(&props)(ctx)
            .map_err(|_| AmqpError::internal_error("cannot encode properties"))?
            .into_inner();
        content.properties = Properties::parse(Bytes::from(raw))
            .map_err(|_| AmqpError::internal_error("cannot re-read properties"))?;
        Ok(())
    }

    /// A reply to `token`: handed to its consumer's connection. False if nobody waits for it
    /// (the message is then unroutable).
    pub(super) fn send_reply(&self, token: &str, message: &Arc<Message>) -> bool {
        let Some(v) = &self.vhost else { return false };
        v.send_reply(token, message)
    }

    /// Writes a reply to this connection's reply consumer, if it is still there.
    pub(super) fn deliver_reply(&mut self, ch: u16, tag: &str, m: &Message) {
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        if c.closing || !c.reply_to.as_ref().is_some_and(|(_, t)| t == tag) {
            return;
        }
        let delivery_tag = c.next_delivery_tag();
        encode::deliver(
            self.out.frames(),
            ch,
            tag.as_bytes(),
            delivery_tag,
            false,
            m.exchange().as_bytes(),
            m.routing_key().as_bytes(),
        );
        self.out
            .content(ch, m.properties_raw(), &m.body_bytes(), self.frame_max);
        self.tally.add(Counter::DeliveredConsumeAutoAck, 1);
    }
}
