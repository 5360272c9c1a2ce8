//! Dead letters republished to their dead-letter exchanges, after the queue that produced
//! them has released its lock, one at a time from a per-thread work list: queues that
//! dead-letter into each other neither deadlock nor recurse (see `queue::dead_letter`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

use super::route::RouteScratch;
use super::VHost;
use crate::metrics::Counter;
use crate::queue::dead_letter::{self, DeadLetter};

/// Dead letters waiting to be republished, each with the vhost it dies in.
type DeadLetterQueue = VecDeque<(Arc<VHost>, DeadLetter)>;

thread_local! {
    /// Dead letters waiting on this thread: republishing one can make its target queues
    /// dead-letter more (a length limit); those wait here instead of recursing.
    static DEAD_LETTERS: RefCell<Option<DeadLetterQueue>> = const { RefCell::new(None) };
}

impl VHost {
    /// Republishes dead letters to their dead-letter exchanges (see `queue::dead_letter`).
    /// Dead letters that this causes (a target queue over its length limit) are queued on
    /// the thread's work list and handled by the outermost call, in order.
    pub fn dead_letter(&self, dead: Vec<DeadLetter>) {
        let Some(me) = self.me.upgrade() else { return };
        let mut dead = Some(dead);
        let nested = DEAD_LETTERS.with(|d| match d.borrow_mut().as_mut() {
            Some(waiting) => {
                waiting.extend(dead.take().into_iter().flatten().map(|x| (me.clone(), x)));
                true
            }
            None => false,
        });
        if nested {
            return;
        }
        let first = dead.take().into_iter().flatten().map(|x| (me.clone(), x));
        DEAD_LETTERS.with(|d| *d.borrow_mut() = Some(first.collect()));
        let mut scratch = RouteScratch::default();
        while let Some((vhost, d)) =
            DEAD_LETTERS.with(|d| d.borrow_mut().as_mut().and_then(VecDeque::pop_front))
        {
            vhost.republish(d, &mut scratch);
        }
        DEAD_LETTERS.with(|d| *d.borrow_mut() = None);
    }

    fn republish(&self, d: DeadLetter, scratch: &mut RouteScratch) {
        // A missing dead-letter exchange drops the message, as in RabbitMQ.
        let Some(ex) = self.exchange(&d.exchange) else {
            return;
        };
        crate::metrics::count(Counter::dead_lettered(d.reason.as_str()), 1);
        let now = crate::queue::now_ms() / 1000;
        let Some(m) = dead_letter::rewrite(&d, now) else {
            return;
        };
        let m = Arc::new(m);
        let headers = m.headers();
        let lazy = || headers.clone();
        self.route(&ex, m.routing_key(), &lazy, scratch);
        // With its own routing key (no x-dead-letter-routing-key), its CC keys count too.
        let m = if d.routing_key.is_none() {
            self.route_cc(&ex, m, scratch)
        } else {
            m
        };
        for q in scratch.queues.clone() {
            if dead_letter::is_cycle(headers.as_ref(), &q.name) {
                continue;
            }
            q.publish(m.clone());
            q.poke();
        }
    }
}
