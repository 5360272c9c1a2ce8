//! Settling deliveries: basic.ack, basic.reject and basic.nack (requeued in place or
//! dead-lettered), basic.recover, and the release of a channel's consumers and unacked
//! messages when it closes.

use std::sync::Arc;

use amq_protocol::protocol::{basic, AMQPClass};

use super::channel::{Channel, TxOp, Unacked};
use super::Connection;
use crate::error::{AmqpError, AmqpResult};
use crate::metrics::Counter;
use crate::queue::Queue;

impl Connection {
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
        self.tally.add(Counter::Acknowledged, acked.len() as u64);
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
