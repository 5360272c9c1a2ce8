//! Dispatch: ready messages handed to consumers with credit, round-robin among the highest
//! priority ones, each consumer's share sent to its connection as one delivery.

use std::sync::Arc;

use super::consumer::Delivery;
use super::ready::QueuedMessage;
use super::{Queue, State};
use crate::metrics::message_stats as stats;

impl Queue {
    /// Hands ready messages to consumers with credit, one each in turn, then sends each
    /// consumer's share to its connection as one event.
    pub(super) fn dispatch(self: &Arc<Self>, st: &mut State) {
        // Single active consumer: only the first registered one gets messages.
        let n = if st.args.single_active_consumer {
            st.consumers.len().min(1)
        } else {
            st.consumers.len()
        };
        if n == 0 || st.store.is_empty() {
            return;
        }
        // One slot per consumer that gets something (usually one).
        let mut batches: Vec<(usize, Vec<QueuedMessage>)> = Vec::new();
        let mut delivered_up_to = None;
        let (mut acked, mut no_ack, mut redelivered) = (0, 0, 0);
        while !st.store.is_empty() {
            let Some(i) = pick_consumer(st, n) else {
                break;
            };
            let Some(m) = self.pop_live(st) else {
                // Credit was taken for a message that turned out expired: give it back.
                st.consumers[i].release(1);
                break;
            };
            redelivered += u64::from(m.redelivered);
            if st.consumers[i].no_ack {
                no_ack += 1;
                st.store.settle(&m);
            } else {
                acked += 1;
                st.unacked += 1;
                if m.on_disk {
                    delivered_up_to = Some(m.seq);
                }
            }
            match batches.iter_mut().find(|(c, _)| *c == i) {
                Some((_, ms)) => ms.push(m),
                None => batches.push((i, vec![m])),
            }
        }
        stats::add(&self.stats.deliver, acked);
        stats::add(&self.stats.deliver_no_ack, no_ack);
        stats::add(&self.stats.redeliver, redelivered);
        if let (true, Some(seq)) = (self.durable, delivered_up_to) {
            st.store.disk().store.delivered(self.qid, seq);
        }
        for (i, messages) in batches {
            let consumer = st.consumers[i].clone();
            let d = Delivery {
                queue: self.clone(),
                consumer: consumer.clone(),
                messages,
            };
            if let Err(Delivery { messages, .. }) = consumer.outbox.deliver(d) {
                // The connection is gone (its cleanup removes the consumer): take them back.
                consumer.cancel();
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

/// The consumer the next message goes to, its credit taken: round-robin among the highest
/// priority consumers that have credit (consumers are kept sorted by priority), lower ones
/// only when every higher one is full. `None` if nobody has credit.
fn pick_consumer(st: &mut State, n: usize) -> Option<usize> {
    let mut start = 0;
    while start < n {
        let p = st.consumers[start].priority;
        let end = (start..n)
            .find(|&i| st.consumers[i].priority != p)
            .unwrap_or(n);
        let len = end - start;
        for k in 0..len {
            let i = start + (st.next_consumer + k) % len;
            if st.consumers[i].try_acquire() {
                st.next_consumer = st.next_consumer.wrapping_add(k + 1);
                return Some(i);
            }
        }
        start = end;
    }
    None
}
