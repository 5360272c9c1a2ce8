//! Publisher confirms and transaction commits, released after the store's sync: the one
//! place where a confirm waits for the disk.
//!
//! A batch of input that sent persistent messages to the store asks, once it is handled,
//! for a sync token ([`Connection::request_sync`]): the store calls back when everything the
//! batch wrote is durable (or failed: then every confirm that could depend on it is a nack;
//! see `store::writer`), and [`Connection::synced`] writes the confirms and commit-oks that
//! waited on that token, in publish order.

use std::collections::VecDeque;

use amq_protocol::protocol::AMQPClass;
use tokio::time::Instant;
use warren_codec::encode;

use super::{ConnEvent, Connection};
use crate::error::AmqpError;
use crate::metrics::Counter;

/// A connection's sync tokens: what it asked of the store, and when.
#[derive(Default)]
pub(super) struct SyncWaits {
    /// This batch sent persistent messages to the store for a confirm or a commit.
    pub wrote_durably: bool,
    /// The last sync token asked of the store (confirms of this batch wait for the next).
    pub token: u64,
    /// The store's failure epoch when this batch of input began: a store failure after it
    /// fails the batch's confirms.
    pub batch_epoch: u64,
    /// When each sync token was asked for (confirm latency).
    asked: VecDeque<(u64, Instant)>,
}

/// Publisher-confirm bookkeeping: sequence numbers, acks not yet written, and confirms that
/// wait for the store to sync the messages they cover.
#[derive(Default)]
pub struct Confirms {
    /// Sequence number of the last publish (the first is 1).
    pub last_seq: u64,
    /// Highest seq confirmed but not yet written, and how many that covers.
    pending: Option<(u64, u64)>,
    /// Confirms in publish order behind the first one that waits for a sync.
    waiting: VecDeque<Waiting>,
    /// Acks decided since the connection last counted them (metrics).
    pub confirmed: u64,
}

struct Waiting {
    seq: u64,
    /// The connection's sync token that must be durable first (0: none).
    token: u64,
    nack: bool,
}

/// A confirm frame to write: `basic.ack` or `basic.nack` with `(tag, multiple)`.
#[derive(Debug, PartialEq, Eq)]
pub enum ConfirmFrame {
    Ack(u64, bool),
    Nack(u64),
}

impl Confirms {
    pub fn next(&mut self) -> u64 {
        self.last_seq += 1;
        self.last_seq
    }

    /// Records an ack for `seq` (acks are recorded in order).
    fn ack(&mut self, seq: u64) {
        self.confirmed += 1;
        self.pending = Some(match self.pending {
            Some((_, n)) => (seq, n + 1),
            None => (seq, 1),
        });
    }

    /// Records the outcome of publish `seq`: `wait_for` a sync token before it may be
    /// acked, or a nack. Returns a nack to write now (after the pending acks), if any;
    /// everything else is written by [`Confirms::take_pending`] or [`Confirms::synced`].
    pub fn record(&mut self, seq: u64, wait_for: Option<u64>, nack: bool) -> Option<u64> {
        if self.waiting.is_empty() && wait_for.is_none() {
            if nack {
                return Some(seq);
            }
            self.ack(seq);
            return None;
        }
        self.waiting.push_back(Waiting {
            seq,
            token: wait_for.unwrap_or(0),
            nack,
        });
        None
    }

    /// Publishes not confirmed yet (the management API's `messages_unconfirmed`).
    pub fn unconfirmed(&self) -> u64 {
        self.waiting.len() as u64 + self.pending.map_or(0, |(_, n)| n)
    }

    /// The pending acks as one `(tag, multiple)` basic.ack.
    pub fn take_pending(&mut self) -> Option<(u64, bool)> {
        self.pending.take().map(|(seq, n)| (seq, n > 1))
    }

    /// Sync `token` is done (`ok`: durable; otherwise the store failed and what waited on it
    /// is nacked): the confirms now due, in order, runs of acks folded into one.
    pub fn synced(&mut self, token: u64, ok: bool, out: &mut Vec<ConfirmFrame>) {
        let mut run: Option<(u64, u64)> = None;
        while let Some(w) = self.waiting.front() {
            if w.token > token {
                break;
            }
            let nack = w.nack || (!ok && w.token != 0);
            let seq = w.seq;
            self.waiting.pop_front();
            if nack {
                if let Some((last, n)) = run.take() {
                    out.push(ConfirmFrame::Ack(last, n > 1));
                }
                out.push(ConfirmFrame::Nack(seq));
            } else {
                self.confirmed += 1;
                run = Some(run.map_or((seq, 1), |(_, n)| (seq, n + 1)));
            }
        }
        if let Some((last, n)) = run {
            out.push(ConfirmFrame::Ack(last, n > 1));
        }
    }
}

impl Connection {
    /// A batch of input begins: remember the store's failure epoch before it writes.
    pub(super) fn begin_batch(&mut self) {
        self.sync.batch_epoch = self.broker.store.failure_epoch();
    }

    /// The batch is handled: if it wrote durably, ask the store for the next sync token
    /// (after the batch's writes, sent under the queues' locks, so it covers them); then
    /// write the acks that needed no sync.
    pub(super) fn request_sync(&mut self) {
        if std::mem::take(&mut self.sync.wrote_durably) {
            self.sync.token += 1;
            self.sync.asked.push_back((self.sync.token, Instant::now()));
            let (token, to) = (self.sync.token, self.inbox.clone());
            self.broker.store.notify(
                self.sync.batch_epoch,
                Box::new(move |ok| {
                    let _ = to.send(ConnEvent::Durable { token, ok });
                }),
            );
        }
        for ch in self.channels.values_mut() {
            if let Some(c) = ch.confirms.as_mut() {
                if let Some((tag, multiple)) = c.take_pending() {
                    encode::basic_ack(self.out.frames(), ch.id, tag, multiple);
                }
                self.tally
                    .add(Counter::Confirmed, std::mem::take(&mut c.confirmed));
            }
        }
    }

    /// Writes pending confirms now (before a return or nack, which must not overtake them).
    pub(super) fn flush_confirms(&mut self, ch: u16) {
        if let Some(c) = self.channels.get_mut(&ch).and_then(|c| c.confirms.as_mut()) {
            if let Some((tag, multiple)) = c.take_pending() {
                encode::basic_ack(self.out.frames(), ch, tag, multiple);
            }
        }
    }

    /// The store synced up to `token`: write the confirms and commit-oks that waited on it.
    pub(super) fn synced(&mut self, token: u64, ok: bool) {
        while self.sync.asked.front().is_some_and(|(t, _)| *t <= token) {
            if let Some((_, asked)) = self.sync.asked.pop_front() {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_wait_in_order_behind_a_sync() {
        let mut c = Confirms::default();
        assert_eq!(c.record(1, None, false), None);
        assert_eq!(c.record(2, Some(7), false), None);
        // Behind a waiting confirm, even one that needs no sync waits (acks stay in order).
        assert_eq!(c.record(3, None, false), None);
        assert_eq!(c.record(4, None, true), None);
        assert_eq!(c.record(5, Some(8), false), None);
        assert_eq!(c.take_pending(), Some((1, false)));
        let mut out = Vec::new();
        c.synced(6, true, &mut out);
        assert!(out.is_empty());
        c.synced(7, true, &mut out);
        assert_eq!(out, vec![ConfirmFrame::Ack(3, true), ConfirmFrame::Nack(4)]);
        out.clear();
        c.synced(8, false, &mut out);
        assert_eq!(out, vec![ConfirmFrame::Nack(5)]);
        // Nothing waits now: the next outcome goes straight out.
        assert_eq!(c.record(6, None, true), Some(6));
    }
}
