//! The basic class: publish (routing, mandatory returns, confirms), consume and deliveries,
//! get, ack/nack/reject, recover, qos; and the release of a channel's consumers and
//! unacked messages when it closes.

use std::sync::Arc;

use amq_protocol::protocol::{basic, AMQPClass};
use warren_codec::{encode, reply, Content, Publish};

use super::channel::{Channel, ConfirmFrame, TxOp, Unacked};
use super::Connection;
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::queue::consumer::Consumer;
use crate::queue::ready::QueuedMessage;
use crate::queue::{Enqueued, Queue};

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
                .map_err(AmqpError::precondition_failed)?;
        }
        let c = self.channel_mut(ch)?;
        let seq = c.confirms.as_mut().map(|c| c.next());
        if c.tx.is_some() {
            // The exchange is checked now (as RabbitMQ does); routing happens at commit.
            self.vhost()?
                .exchange_or_404(content.publish.exchange.as_str())?;
            if let Some(tx) = self.channel_mut(ch)?.tx.as_mut() {
                tx.push(TxOp::Publish(content));
            }
            return Ok(());
        }
        self.route_and_enqueue(ch, content, seq)
    }

    /// Routes a message, enqueues it, sends a basic.return if it was mandatory and went
    /// nowhere, and records its confirm.
    pub(super) fn route_and_enqueue(
        &mut self,
        ch: u16,
        content: Content,
        seq: Option<u64>,
    ) -> AmqpResult<()> {
        let vhost = self.vhost()?;
        let name = content.publish.exchange.as_str();
        let cached = self
            .channels
            .get(&ch)
            .and_then(|c| c.exchange_cache.clone())
            .filter(|e| e.name == name && !e.is_deleted());
        let ex = match cached {
            Some(e) => e,
            None => {
                let e = vhost.exchange_or_404(name)?;
                if let Some(c) = self.channels.get_mut(&ch) {
                    c.exchange_cache = Some(e.clone());
                }
                e
            }
        };
        if ex.internal {
            return Err(AmqpError::access_refused(format!(
                "cannot publish to internal exchange '{name}' in vhost '{}'",
                vhost.name
            )));
        }
        let mandatory = content.publish.mandatory;
        let default_exchange = name.is_empty();
        let message = Arc::new(Message::from_content(content));
        if default_exchange {
            if let Some(token) = message.routing_key().strip_prefix(super::reply_to::PREFIX) {
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
        vhost.route(&ex, message.routing_key(), &headers, &mut scratch);
        let message = vhost.route_cc(&ex, message, &mut scratch);
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
        self.tally.received += 1;
        if seq.is_some() {
            self.tally.received_confirm += 1;
        }
        if written {
            self.wrote_durably = true;
        }
        if !unrouted {
            self.tally.routed += 1;
        } else if !mandatory {
            self.tally.unroutable_dropped += 1;
        }
        if unrouted && mandatory {
            self.tally.unroutable_returned += 1;
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
            let wait_for = written.then_some(self.sync_token + 1);
            let c = self.channels.get_mut(&ch).and_then(|c| c.confirms.as_mut());
            if let Some(nack) = c.and_then(|c| c.record(seq, wait_for, refused)) {
                self.flush_confirms(ch);
                encode::basic_nack(self.out.frames(), ch, nack, false);
            }
        }
        Ok(())
    }

    /// Writes pending confirms now (before a return or nack, which must not overtake them).
    fn flush_confirms(&mut self, ch: u16) {
        if let Some(c) = self.channels.get_mut(&ch).and_then(|c| c.confirms.as_mut()) {
            if let Some((tag, multiple)) = c.take_pending() {
                encode::basic_ack(self.out.frames(), ch, tag, multiple);
            }
        }
    }

    pub(super) fn on_qos(&mut self, ch: u16, q: warren_codec::Qos) -> AmqpResult<()> {
        if q.prefetch_size != 0 {
            return Err(AmqpError::not_implemented(format!(
                "prefetch_size!=0 ({})",
                q.prefetch_size
            )));
        }
        let c = self.channel_mut(ch)?;
        let prefetch = q.prefetch_count as u32;
        if q.global {
            c.credit
                .prefetch
                .store(prefetch, std::sync::atomic::Ordering::Release);
            // A raised limit may unblock consumers.
            let queues: Vec<Arc<Queue>> = c.consumers.values().map(|(_, q)| q.clone()).collect();
            for q in queues {
                self.poke_later(q);
            }
        } else {
            c.consumer_prefetch = prefetch;
        }
        self.write_method(
            ch,
            &AMQPClass::Basic(basic::AMQPMethod::QosOk(basic::QosOk {})),
        );
        Ok(())
    }

    pub(super) fn on_consume(&mut self, ch: u16, m: basic::Consume) -> AmqpResult<()> {
        if m.queue.as_str() == super::reply_to::PSEUDO_QUEUE {
            return self.consume_replies(ch, &m);
        }
        let q = self.usable_queue(ch, m.queue.as_str())?;
        let tag = if m.consumer_tag.as_str().is_empty() {
            crate::names::consumer_tag()
        } else {
            m.consumer_tag.as_str().to_string()
        };
        let connection_id = self.id;
        let events = self.events_tx.clone();
        let priority = match crate::args::get(&m.arguments, "x-priority") {
            None => 0,
            Some(v) => crate::args::as_i64(v).ok_or_else(|| {
                AmqpError::precondition_failed(format!("invalid arg 'x-priority': {v:?}"))
            })?,
        };
        let c = self.channel_mut(ch)?;
        if c.consumers.contains_key(&tag) {
            return Err(AmqpError::not_allowed(format!(
                "attempt to reuse consumer tag '{tag}'"
            )));
        }
        let consumer = Consumer::new(
            tag.clone(),
            ch,
            connection_id,
            m.no_ack,
            m.exclusive,
            c.consumer_prefetch,
            priority,
            c.credit.clone(),
            events,
        );
        // consume-ok must precede the first delivery: write it before the queue can dispatch.
        let mark = self.out.mark();
        if !m.nowait {
            self.write_method(
                ch,
                &AMQPClass::Basic(basic::AMQPMethod::ConsumeOk(basic::ConsumeOk {
                    consumer_tag: tag.as_str().into(),
                })),
            );
        }
        if let Err(e) = q.add_consumer(consumer.clone()) {
            self.out.truncate(mark);
            return Err(e);
        }
        if let Some(c) = self.channels.get_mut(&ch) {
            c.consumers.insert(tag, (consumer, q));
        }
        Ok(())
    }

    pub(super) fn on_cancel(&mut self, ch: u16, tag: &str, nowait: bool) -> AmqpResult<()> {
        let c = self.channel_mut(ch)?;
        if c.reply_to.as_ref().is_some_and(|(_, t)| t == tag) {
            if let Some((token, _)) = c.reply_to.take() {
                self.drop_replies(&token);
            }
        }
        let c = self.channel_mut(ch)?;
        if let Some((consumer, q)) = c.consumers.remove(tag) {
            self.remove_consumer(&q, &consumer);
        }
        if !nowait {
            self.write_method(
                ch,
                &AMQPClass::Basic(basic::AMQPMethod::CancelOk(basic::CancelOk {
                    consumer_tag: tag.into(),
                })),
            );
        }
        Ok(())
    }

    /// Detaches a consumer from its queue, auto-deleting the queue if it was the last.
    fn remove_consumer(&mut self, q: &Arc<Queue>, consumer: &Consumer) {
        consumer.cancel();
        let removed = q.remove_consumer(consumer.connection_id, consumer.channel, &consumer.tag);
        if removed.is_some_and(|r| r.now_unused) {
            if let Some(v) = self.vhost.clone() {
                self.delete_queue(&v, q);
            }
        }
    }

    /// The broker cancels a consumer (its queue is gone).
    pub(super) fn broker_cancel(&mut self, ch: u16, tag: &str) {
        let Some(c) = self.channels.get_mut(&ch) else {
            return;
        };
        if c.closing || c.consumers.remove(tag).is_none() {
            return;
        }
        if self.caps.consumer_cancel_notify {
            self.write_method(
                ch,
                &AMQPClass::Basic(basic::AMQPMethod::Cancel(basic::Cancel {
                    consumer_tag: tag.into(),
                    nowait: true,
                })),
            );
        }
    }

    pub(super) fn on_get(&mut self, ch: u16, queue: &str, no_ack: bool) -> AmqpResult<()> {
        let q = self.usable_queue(ch, queue)?;
        let Some((m, remaining)) = q.get(!no_ack) else {
            self.write_method(
                ch,
                &AMQPClass::Basic(basic::AMQPMethod::GetEmpty(basic::GetEmpty {})),
            );
            return Ok(());
        };
        let timeout = self.consumer_timeout(&q);
        let c = self.channel_mut(ch)?;
        let tag = c.next_delivery_tag();
        let msg = m.message.clone();
        let redelivered = m.redelivered;
        let deliveries = m.deliveries;
        if !no_ack {
            let u = Unacked {
                tag,
                queue: q,
                message: m,
                consumer: None,
                deadline: None,
            };
            c.push_unacked(u, timeout, std::time::Instant::now());
        }
        encode::get_ok(
            self.out.frames(),
            ch,
            tag,
            redelivered,
            msg.exchange().as_bytes(),
            msg.routing_key().as_bytes(),
            remaining,
        );
        let props = delivery_properties(&msg, deliveries);
        self.out
            .content(ch, &props, &msg.body_bytes(), self.frame_max);
        if no_ack {
            self.tally.get_auto_ack += 1;
        } else {
            self.tally.get_manual_ack += 1;
        }
        self.tally.redelivered += u64::from(redelivered);
        Ok(())
    }

    /// The consumer timeout (ms) for deliveries from `q`: its `x-consumer-timeout`, else
    /// the broker's `consumer_timeout` (None: off).
    fn consumer_timeout(&self, q: &Queue) -> Option<u64> {
        q.args
            .consumer_timeout
            .or(self.broker.config.consumer_timeout)
            .filter(|&ms| ms > 0)
    }

    /// Closes every channel holding a delivery unacked past its consumer timeout, with
    /// RabbitMQ's 406 and words.
    pub(super) fn check_consumer_timeouts(&mut self) {
        let now = std::time::Instant::now();
        let expired: Vec<(u16, u64)> = self
            .channels
            .values_mut()
            .filter(|c| !c.closing)
            .filter_map(|c| c.timed_out(now).map(|ms| (c.id, ms)))
            .collect();
        for (ch, ms) in expired {
            self.close_channel(
                ch,
                AmqpError::precondition_failed(format!(
                    "delivery acknowledgement on channel {ch} timed out. Timeout value used: \
                     {ms} ms. This timeout value can be configured, see consumers doc guide to \
                     learn more"
                )),
            );
        }
    }

    /// Writes deliveries from a queue to the client (or gives them back if they can't go).
    pub(super) fn deliver(
        &mut self,
        queue: Arc<Queue>,
        consumer: Arc<Consumer>,
        messages: Vec<QueuedMessage>,
    ) {
        let ch = consumer.channel;
        let timeout = self.consumer_timeout(&queue);
        let c = match self.channels.get_mut(&ch) {
            Some(c) if !c.closing && !consumer.is_cancelled() => c,
            _ => {
                queue.undeliver(messages, &consumer);
                return;
            }
        };
        let n = messages.len();
        let mut redelivered = 0;
        let (timeout, now) = (timeout, std::time::Instant::now());
        for m in messages {
            redelivered += u64::from(m.redelivered);
            let tag = c.next_delivery_tag();
            encode::deliver(
                self.out.frames(),
                ch,
                consumer.tag.as_bytes(),
                tag,
                m.redelivered,
                m.message.exchange().as_bytes(),
                m.message.routing_key().as_bytes(),
            );
            let props = delivery_properties(&m.message, m.deliveries);
            self.out
                .content(ch, &props, &m.message.body_bytes(), self.frame_max);
            if !consumer.no_ack {
                let u = Unacked {
                    tag,
                    queue: queue.clone(),
                    message: m,
                    consumer: Some(consumer.clone()),
                    deadline: None,
                };
                c.push_unacked(u, timeout, now);
            }
        }
        if consumer.no_ack {
            self.tally.consume_auto_ack += n as u64;
        } else {
            self.tally.consume_manual_ack += n as u64;
        }
        self.tally.redelivered += redelivered;
        if consumer.no_ack {
            // The in-flight window frees as soon as the deliveries are in the write buffer.
            consumer.release(n as u32);
            self.poke_later(queue);
        }
    }

    /// The store synced up to `token`: write the confirms and commit-oks that waited on it.
    pub(super) fn synced(&mut self, token: u64, ok: bool) {
        while self.syncs_waiting.front().is_some_and(|(t, _)| *t <= token) {
            if let Some((_, asked)) = self.syncs_waiting.pop_front() {
                metrics::histogram!(crate::metrics::CONFIRM_LATENCY_SECONDS)
                    .record(asked.elapsed().as_secs_f64());
            }
        }
        let mut frames = Vec::new();
        let mut failed_commit = false;
        for c in self.channels.values_mut() {
            if c.closing {
                continue;
            }
            if let Some(confirms) = c.confirms.as_mut() {
                frames.clear();
                confirms.synced(token, ok, &mut frames);
                for f in &frames {
                    match *f {
                        ConfirmFrame::Ack(tag, multiple) => {
                            encode::basic_ack(self.out.frames(), c.id, tag, multiple)
                        }
                        ConfirmFrame::Nack(tag) => {
                            encode::basic_nack(self.out.frames(), c.id, tag, false)
                        }
                    }
                }
            }
            while c.commits_waiting.front().is_some_and(|&t| t <= token) {
                c.commits_waiting.pop_front();
                if ok {
                    let m = AMQPClass::Tx(amq_protocol::protocol::tx::AMQPMethod::CommitOk(
                        amq_protocol::protocol::tx::CommitOk {},
                    ));
                    if let Err(e) = encode::method(self.out.frames(), c.id, &m) {
                        tracing::warn!("cannot encode commit-ok: {e}");
                    }
                } else {
                    failed_commit = true;
                }
            }
        }
        if failed_commit {
            // 541 is a connection exception in AMQP (and RabbitMQ).
            self.close_connection(&AmqpError::internal_error(
                "the store could not write a transaction's messages",
            ));
        }
    }

    /// Runs the queue's dispatch when the current batch is done.
    pub(super) fn poke_later(&mut self, queue: Arc<Queue>) {
        if !self.to_poke.iter().any(|q| Arc::ptr_eq(q, &queue)) {
            self.to_poke.push(queue);
        }
    }

    pub(super) fn on_ack(&mut self, ch: u16, tag: u64, multiple: bool) -> AmqpResult<()> {
        let c = self.channel_mut(ch)?;
        let acked = c.take_unacked(tag, multiple)?;
        if let Some(tx) = c.tx.as_mut() {
            tx.push(TxOp::Ack(acked));
            return Ok(());
        }
        self.settle(acked);
        self.channel_credit_freed(ch);
        Ok(())
    }

    /// Settling frees channel-wide credit (basic.qos global=true), which consumers of other
    /// queues on the channel may be waiting for: dispatch all of the channel's queues.
    pub(super) fn channel_credit_freed(&mut self, ch: u16) {
        let Some(c) = self.channels.get(&ch) else {
            return;
        };
        if c.credit.prefetch.load(std::sync::atomic::Ordering::Acquire) == 0 {
            return;
        }
        let queues: Vec<Arc<Queue>> = c.consumers.values().map(|(_, q)| q.clone()).collect();
        for q in queues {
            self.poke_later(q);
        }
    }

    pub(super) fn on_reject(
        &mut self,
        ch: u16,
        tag: u64,
        multiple: bool,
        requeue: bool,
    ) -> AmqpResult<()> {
        let c = self.channel_mut(ch)?;
        let deliveries = c.take_unacked(tag, multiple)?;
        if let Some(tx) = c.tx.as_mut() {
            tx.push(TxOp::Reject {
                deliveries,
                requeue,
            });
            return Ok(());
        }
        self.reject(deliveries, requeue);
        self.channel_credit_freed(ch);
        Ok(())
    }

    /// Acked deliveries: credit back to consumers, settled in their queues.
    pub(super) fn settle(&mut self, acked: Vec<Unacked>) {
        self.tally.acknowledged += acked.len() as u64;
        for_each_queue(acked, |q, ds| {
            release_credit(&ds);
            q.settle(ds.iter().map(|d| &d.message));
        });
    }

    /// Rejected deliveries: requeued in place, or dropped.
    pub(super) fn reject(&mut self, deliveries: Vec<Unacked>, requeue: bool) {
        for_each_queue(deliveries, |q, ds| {
            release_credit(&ds);
            if requeue {
                q.requeue(ds.into_iter().map(|d| d.message));
            } else {
                q.reject(ds.into_iter().map(|d| d.message).collect());
            }
        });
    }

    pub(super) fn on_recover(&mut self, ch: u16, requeue: bool, reply: bool) -> AmqpResult<()> {
        if !requeue {
            return Err(AmqpError::not_implemented("requeue=false"));
        }
        let c = self.channel_mut(ch)?;
        let all: Vec<Unacked> = c.unacked.drain(..).collect();
        self.reject(all, true);
        self.channel_credit_freed(ch);
        if reply {
            self.write_method(
                ch,
                &AMQPClass::Basic(basic::AMQPMethod::RecoverOk(basic::RecoverOk {})),
            );
        }
        Ok(())
    }

    /// A channel goes away: its consumers are removed (auto-deleting queues left without
    /// consumers) and its unacked deliveries go back to their queues, in place.
    pub(super) fn release_channel(&mut self, c: &mut Channel) {
        c.content.reset();
        if let Some((token, _)) = c.reply_to.take() {
            self.drop_replies(&token);
        }
        let consumers: Vec<_> = c.consumers.drain().map(|(_, v)| v).collect();
        // Requeue first, so an auto-deleted queue does not swallow them needlessly.
        let mut pending: Vec<Unacked> = c.unacked.drain(..).collect();
        if let Some(tx) = c.tx.as_mut() {
            for op in tx.drain(..) {
                if let TxOp::Ack(d) | TxOp::Reject { deliveries: d, .. } = op {
                    pending.extend(d);
                }
            }
        }
        pending.sort_by_key(|u| u.tag);
        self.reject(pending, true);
        for (consumer, q) in consumers {
            self.remove_consumer(&q, &consumer);
        }
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

/// The properties a delivery carries: as published, plus `x-delivery-count` once the message
/// has been given back before (only then are they re-encoded).
fn delivery_properties(m: &Message, deliveries: u32) -> std::borrow::Cow<'_, [u8]> {
    if deliveries == 0 {
        return std::borrow::Cow::Borrowed(m.properties_raw());
    }
    match crate::queue::dead_letter::with_delivery_count(m.properties_raw(), deliveries) {
        Some(p) => std::borrow::Cow::Owned(p),
        None => std::borrow::Cow::Borrowed(m.properties_raw()),
    }
}

fn release_credit(ds: &[Unacked]) {
    for d in ds {
        if let Some(c) = &d.consumer {
            c.release(1);
        }
    }
}

/// Groups deliveries by queue (keeping their order) and calls `f` once per queue.
fn for_each_queue(deliveries: Vec<Unacked>, mut f: impl FnMut(&Arc<Queue>, Vec<Unacked>)) {
    let mut groups: Vec<(Arc<Queue>, Vec<Unacked>)> = Vec::new();
    for d in deliveries {
        match groups.iter_mut().find(|(q, _)| Arc::ptr_eq(q, &d.queue)) {
            Some((_, v)) => v.push(d),
            None => groups.push((d.queue.clone(), vec![d])),
        }
    }
    for (q, ds) in groups {
        f(&q, ds);
    }
}
