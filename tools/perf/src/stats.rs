//! Counters shared by every connection task, and the latency histogram.
//!
//! Tasks add to the counters once per batch (a filled write buffer, a decoded read), never
//! once per message, so the atomics cost nothing measurable. Each consumer keeps its own
//! histogram (no sharing on the hot path); they are merged at the end.

use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use crate::conn::{err, Result};

#[derive(Default)]
pub struct Stats {
    pub published: AtomicU64,
    pub confirmed: AtomicU64,
    pub nacked: AtomicU64,
    pub delivered: AtomicU64,
    /// The longest confirm wait (ns) since the last snapshot.
    pub confirm_max_ns: AtomicU64,
}

/// A point-in-time copy of [`Stats`].
#[derive(Clone, Copy, Default, Debug)]
pub struct Snapshot {
    pub published: u64,
    pub confirmed: u64,
    pub nacked: u64,
    pub delivered: u64,
    /// The longest confirm wait (ns) since the snapshot before (per-second lines).
    pub confirm_max_ns: u64,
}

impl Stats {
    /// The counters now; takes the longest confirm wait, so each snapshot has its own.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            published: self.published.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
            nacked: self.nacked.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            confirm_max_ns: self.confirm_max_ns.swap(0, Ordering::Relaxed),
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// Latencies in nanoseconds, 1 ns to 10 minutes, 3 significant digits (about 50 KiB).
pub fn new_histogram() -> Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3)
        .map_err(|e| err(format!("cannot make a histogram: {e}")))
}
