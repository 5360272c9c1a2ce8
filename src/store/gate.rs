//! Work sent to the writer and not yet applied, with a high and a low mark. A connection
//! whose input added to a gate that is over its high mark stops reading its socket until
//! the writer has brought the gate under its low mark (see `connection::flow`). The store
//! keeps two: message bytes (RAM waiting for the disk) and definitions (time: every other
//! connection's confirm waits behind the definitions queued ahead of it).

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::watch;

pub(crate) struct Gate {
    pending: AtomicUsize,
    high: usize,
    low: usize,
    /// True while `pending` is under `low`: a paused sender waits for it.
    open: watch::Sender<bool>,
}

impl Gate {
    pub(super) fn new(high: usize, low: usize) -> Self {
        Gate {
            pending: AtomicUsize::new(0),
            high,
            low,
            open: watch::channel(true).0,
        }
    }

    /// A sender's side: `n` more sent.
    pub(super) fn add(&self, n: usize) {
        self.pending.fetch_add(n, Ordering::Relaxed);
    }

    /// The writer's side: `n` applied; opens the gate under the low mark. (Nothing taken
    /// changes nothing: a sender that paused over the mark saw it then, see [`Gate::pause`].)
    pub(super) fn taken(&self, n: usize) {
        if n == 0 {
            return;
        }
        let left = self
            .pending
            .fetch_sub(n, Ordering::Relaxed)
            .saturating_sub(n);
        if left < self.low {
            self.open
                .send_if_modified(|go| !std::mem::replace(go, true));
        }
    }

    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    pub fn over(&self) -> bool {
        self.pending() > self.high
    }

    /// A sender that found the gate over its high mark pauses: the receiver changes (to
    /// true) once the writer has brought it under the low mark.
    pub fn pause(&self) -> watch::Receiver<bool> {
        self.open.send_replace(false);
        // The writer may have gone under the mark just before that send (it only sends when
        // the flag changes): seen here, since its count goes down before it sends.
        if self.pending() < self.low {
            self.open.send_replace(true);
        }
        self.open.subscribe()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::Gate;

    #[test]
    fn a_paused_sender_is_let_go_only_under_the_low_mark() {
        let g = Gate::new(10, 5);
        g.add(11);
        assert!(g.over());
        let rx = g.pause();
        assert!(!*rx.borrow(), "over the high mark: paused");
        g.taken(5);
        assert!(!g.over());
        assert!(!*rx.borrow(), "6 pending is not under the low mark");
        g.taken(2);
        assert!(*rx.borrow(), "4 pending: open");
    }

    #[test]
    fn a_pause_that_comes_after_the_writer_caught_up_is_open_at_once() {
        let g = Gate::new(10, 5);
        g.add(11);
        g.taken(11);
        // The sender saw it over the mark before the writer took it all.
        assert!(*g.pause().borrow());
    }
}
