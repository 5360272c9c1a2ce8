//! Consuming: basic.qos, basic.consume and cancel, the deliveries a queue hands over
//! (written to the socket), basic.get, and the consumer timeout.

use std::sync::Arc;

use amq_protocol::protocol::{basic, AMQPClass};
use warren_codec::encode;

use super::channel::Unacked;
use super::Connection;
use crate::error::{AmqpError, AmqpResult};
use crate::message::Message;
use crate::metrics::Counter;
use crate::queue::consumer::{Consumer, ConsumerSpec};
use crate::queue::ready::QueuedMessage;
use crate::queue::Queue;

impl Connection {
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
        if m.queue.as_str() == crate::vhost::reply_to::PSEUDO_QUEUE {
            return self.consume_replies(ch, &m);
        }
        let q = self.usable_queue(ch, m.queue.as_str(), crate::access::Perm::Read)?;
        let tag = if m.consumer_tag.as_str().is_empty() {
            crate::names::consumer_tag()
        } else {
            m.consumer_tag.as_str().to_string()
        };
        let connection_id = self.id;
        let outbox = self.outbox.clone();
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
        let consumer = Consumer::new(ConsumerSpec {
            tag: tag.clone(),
            channel: ch,
            connection_id,
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            prefetch: c.consumer_prefetch,
            priority,
            channel_credit: c.credit.clone(),
            outbox,
        });
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
    pub(super) fn remove_consumer(&mut self, q: &Arc<Queue>, consumer: &Consumer) {
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
        let q = self.usable_queue(ch, queue, crate::access::Perm::Read)?;
        let Some((m, remaining)) = q.get(!no_ack) else {
            if let Some(v) = &self.vhost {
                crate::metrics::message_stats::add(&v.stats.get_empty, 1);
            }
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
            self.tally.add(Counter::DeliveredGetAutoAck, 1);
        } else {
            self.tally.add(Counter::DeliveredGetManualAck, 1);
        }
        self.tally.add(Counter::Redelivered, u64::from(redelivered));
        Ok(())
    }

    /// The consumer timeout (ms) for deliveries from `q`: its `x-consumer-timeout`, else
    /// the broker's `consumer_timeout` (None: off).
    fn consumer_timeout(&self, q: &Queue) -> Option<u64> {
        q.consumer_timeout()
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
            self.tally.add(Counter::DeliveredConsumeAutoAck, n as u64);
        } else {
            self.tally.add(Counter::DeliveredConsumeManualAck, n as u64);
        }
        self.tally.add(Counter::Redelivered, redelivered);
        if consumer.no_ack {
            // The in-flight window frees as soon as the deliveries are in the write buffer.
            consumer.release(n as u32);
            self.poke_later(queue);
        }
    }

    /// Runs the queue's dispatch when the current batch is done.
    pub(super) fn poke_later(&mut self, queue: Arc<Queue>) {
        if !self.to_poke.iter().any(|q| Arc::ptr_eq(q, &queue)) {
            self.to_poke.push(queue);
        }
    }
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
