//! sled's garbage, collected by the writer.
//!
//! sled frees the nodes a write replaces through crossbeam-epoch, which runs a few bags of
//! deferred frees each time a thread pins, once every thread has moved on. A burst of writes
//! followed by quiet leaves them all waiting: 100,000 queues declared by a pipelining client
//! held 4.5 KB of heap each (6.3 KB in all instead of 1.8) until later writes happened to
//! collect it. So the writer owes two collection rounds per op it applies (each round frees
//! at most 8 bags of 64) and, once it owes [`FROM`] or more, pays [`SLICE`] of them after
//! each commit and between looks at its channel before it blocks. Paying during a burst, not
//! only after it, keeps the allocator from holding the whole burst's garbage at once (that
//! peak is RSS it keeps: 100,000 queues, 3.3 KB each when paid only after, 2.4 KB with this).

/// Rounds owed (4,096 ops) from which the writer pays.
const FROM: usize = 8192;
/// Rounds paid at a time: an op that comes meanwhile waits for one slice only.
const SLICE: usize = 512;

#[derive(Default)]
pub(super) struct Reclaim {
    owed: usize,
}

impl Reclaim {
    /// `ops` were applied.
    pub(super) fn owe(&mut self, ops: usize) {
        self.owed += 2 * ops;
    }

    /// Pays a slice if enough is owed; false if nothing was owed past the mark.
    pub(super) fn pay_slice(&mut self) -> bool {
        if self.owed < FROM {
            return false;
        }
        for _ in 0..SLICE {
            crossbeam_epoch::pin().flush();
        }
        self.owed -= SLICE;
        // Under the mark is what steady traffic leaves, and sled's own pins collect that:
        // only a burst's excess is paid.
        if self.owed < FROM {
            self.owed = 0;
        }
        true
    }
}
