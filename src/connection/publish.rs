//! Publishing: a message from the wire routed to its queues (or a direct reply-to
//! consumer), a basic.return for a mandatory message that went nowhere, and its confirm
//! recorded (released after the store's sync when it was written: see `confirms`).

use std::sync::Arc;

use warren_codec::{encode, reply, Content, Publish};

use super::channel::{CachedExchange, TxOp};
use super::permit::Kind;
use super::Connection;
use crate::access::Perm;
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::{Exchange, ExchangeKind};
use crate::message::Message;
use crate::metrics::Counter;
use crate::queue::Enqueued;

impl Connection {
    pub(super) fn on_publish(&mut self, ch: u16, p: Publish) -> AmqpResult<()> {
        if p.immediate {
            return Err(AmqpError::not_implemented("immediate=true"));
        }
        let c = self.channel_mut(ch)?;
        c.content.start(p).map_err(AmqpError::from)
    }

    /// A complete message from the wire.
    pub(super) fn publish_content(&mut self, ch: u16, mut content: Content) -> AmqpResult<()> {
        // Every publish counts (one held by a transaction too): an alarm blocks on it.
        self.published_total += 1;
        // Write permission, the exchange, internal, topic permission: RabbitMQ's order,
        // before the properties are looked at.
        let ex = self.publish_exchange(ch, &content)?;
        self.rewrite_reply_to(ch, &mut content)?;
        if let Some(user_id) = content.properties.user_id() {
            if user_id != self.user {
                return Err(AmqpError::precondition_failed(format!(
                    "user_id property set to '{user_id}' but authenticated user was '{}'",
                    self.user
                )));
            }
        }
        if let Some(exp) = content.properties.expiration() {
            crate::queue::arguments::parse_expiration(exp)
                .map_err(|e| AmqpError::precondition_failed(e.to_string()))?;
        }
        let c = self.channel_mut(ch)?;
        let seq = c.confirms.as_mut().map(|c| c.next());
        if c.tx.is_some() {
            // The exchange was checked above (as RabbitMQ does); routing happens at commit.
            if let Some(tx) = self.channel_mut(ch)?.tx.as_mut() {
                tx.push(TxOp::Publish(content));
            }
            return Ok(());
        }
        self.route_and_enqueue(ch, &ex, content, seq)
    }

    /// The exchange a publish names, checked: write permission (403 before 404), then
    /// existence, internal, and the topic permission on the routing key. The channel caches
    /// the exchange with the access generation its permission was checked at, so a
    /// publish to the same exchange costs no regex match until permissions change.
    pub(super) fn publish_exchange(
        &mut self,
        ch: u16,
        content: &Content,
    ) -> AmqpResult<Arc<Exchange>> {
        let name = content.publish.exchange.as_str();
        let generation = self.broker.access_generation();
        let cached = self
            .channels
            .get(&ch)
            .and_then(|c| c.exchange_cache.clone())
            .filter(|e| {
                e.exchange.name == name && e.generation == generation && !e.exchange.is_deleted()
            });
        let entry = match cached {
            Some(e) => e,
            None => {
                self.permit(Perm::Write, Kind::Exchange, name)?;
                let vhost = self.vhost()?;
                let exchange = vhost.exchange_or_404(name)?;
                if exchange.internal {
                    return Err(AmqpError::access_refused(format!(
                        "cannot publish to internal exchange '{name}' in vhost '{}'",
                        vhost.name
                    )));
                }
                let topic_rules = exchange.kind == ExchangeKind::Topic
                    && self.fresh_grants().has_topic_rules(name);
                let e = CachedExchange {
                    exchange,
                    generation: self.permits.grants.generation,
                    topic_rules,
                };
                if let Some(c) = self.channels.get_mut(&ch) {
                    c.exchange_cache = Some(e.clone());
                }
                e
            }
        };
        if entry.topic_rules {
            self.permit_topic(Perm::Write, name, content.publish.routing_key.as_str())?;
        }
        Ok(entry.exchange)
    }

    /// Routes a message, enqueues it, sends a basic.return if it was mandatory and went
    /// nowhere, and records its confirm.
    pub(super) fn route_and_enqueue(
        &mut self,
        ch: u16,
        ex: &Arc<Exchange>,
        content: Content,
        seq: Option<u64>,
    ) -> AmqpResult<()> {
        let vhost = self.vhost()?;
        let name = content.publish.exchange.as_str();
        let mandatory = content.publish.mandatory;
        let default_exchange = name.is_empty();
        let message = Arc::new(Message::from_content(content));
        if default_exchange {
            if let Some(token) = message
                .routing_key()
                .strip_prefix(crate::vhost::reply_to::PREFIX)
            {
                let outcome = Routed {
                    unrouted: !self.send_reply(token, &message),
                    mandatory,
                    ..Routed::default()
                };
                return self.after_route(ch, &message, outcome, seq);
            }
        }
        let mut scratch = std::mem::take(&mut self.route_scratch);
        let headers = || message.headers();
        vhost.route(ex, message.routing_key(), &headers, &mut scratch);
        let message = vhost.route_cc(ex, message, &mut scratch);
        let queues = &scratch.queues;
        let mut outcome = Routed {
            unrouted: queues.is_empty(),
            mandatory,
            ..Routed::default()
        };
        for q in queues {
            match q.publish(message.clone()) {
                Enqueued::Refused => outcome.refused = true,
                Enqueued::Written => outcome.written = true,
                Enqueued::InMemory => {}
            }
            self.poke_later(q.clone());
        }
        self.route_scratch = scratch;
        self.after_route(ch, &message, outcome, seq)
    }

    /// What follows routing: counters, a basic.return for a mandatory message that went
    /// nowhere, and the publish's confirm (waiting for a sync if it was written).
    fn after_route(
        &mut self,
        ch: u16,
        message: &Message,
        outcome: Routed,
        seq: Option<u64>,
    ) -> AmqpResult<()> {
        let Routed {
            unrouted,
            mandatory,
            refused,
            written,
        } = outcome;
        self.tally.add(Counter::Received, 1);
        if seq.is_some() {
            self.tally.add(Counter::ReceivedConfirm, 1);
        }
        if written {
            self.sync.wrote_durably = true;
        }
        if !unrouted {
            self.tally.add(Counter::Routed, 1);
        } else if !mandatory {
            self.tally.add(Counter::UnroutableDropped, 1);
        }
        if unrouted && mandatory {
            self.tally.add(Counter::UnroutableReturned, 1);
            self.flush_confirms(ch);
            encode::basic_return(
                self.out.frames(),
                ch,
                reply::NO_ROUTE,
                "NO_ROUTE",
                message.exchange().as_bytes(),
                message.routing_key().as_bytes(),
            );
            self.out.content(
                ch,
                message.properties_raw(),
                &message.body_bytes(),
                self.frame_max,
            );
        }
        if let Some(seq) = seq {
            // A persistent message is confirmed once this batch's sync is done.
            let wait_for = written.then_some(self.sync.token + 1);
            let c = self.channels.get_mut(&ch).and_then(|c| c.confirms.as_mut());
            if let Some(nack) = c.and_then(|c| c.record(seq, wait_for, refused)) {
                self.flush_confirms(ch);
                encode::basic_nack(self.out.frames(), ch, nack, false);
            }
        }
        Ok(())
    }
}

/// What routing a publish came to.
#[derive(Default)]
struct Routed {
    /// No queue (or reply consumer) took it.
    unrouted: bool,
    mandatory: bool,
    /// A queue refused it (length limit with reject-publish, or deleted).
    refused: bool,
    /// A queue sent it to the store: the confirm waits for the sync.
    written: bool,
}
