//! Message rates, as RabbitMQ's `message_stats` gives them: each count with its
//! `_details: {rate}` (per second). The counts are the vhosts' and queues' own atomics
//! (`metrics::message_stats`); a sampler started with the API reads them every
//! `management_sample_interval` (5 s) and keeps a short history, and a rate is the change
//! between the last two samples. Nothing here touches the hot path: reading an atomic is
//! all a sample costs a queue.
//!
//! Other endpoints call [`Rates::queue_stats`], [`Rates::vhost_stats`] and
//! [`Rates::overview`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{json, Map, Value};

use crate::broker::Broker;
use crate::metrics::message_stats::{MessageStats, STAT_COUNT, STAT_NAMES};
use crate::queue::Queue;
use crate::vhost::VHost;

/// Samples kept per object (RabbitMQ keeps more for its charts; the rate needs two).
const HISTORY: usize = 6;

/// The counts and, for a vhost, its queues' depths: (ready, unacknowledged).
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    counts: [u64; STAT_COUNT],
    depth: [u64; 2],
}

#[derive(Default)]
struct History(VecDeque<Sample>);

impl History {
    fn push(&mut self, s: Sample) {
        if self.0.len() == HISTORY {
            self.0.pop_front();
        }
        self.0.push_back(s);
    }

    /// Per second between the last two samples (0 until there are two).
    fn rates(&self) -> ([f64; STAT_COUNT], [f64; 2]) {
        let mut r = ([0.0; STAT_COUNT], [0.0; 2]);
        let n = self.0.len();
        if n < 2 {
            return r;
        }
        let (a, b) = (&self.0[n - 2], &self.0[n - 1]);
        let secs = b.at.duration_since(a.at).as_secs_f64();
        if secs <= 0.0 {
            return r;
        }
        for i in 0..STAT_COUNT {
            r.0[i] = b.counts[i].saturating_sub(a.counts[i]) as f64 / secs;
        }
        for i in 0..2 {
            r.1[i] = (b.depth[i] as f64 - a.depth[i] as f64) / secs;
        }
        r
    }
}

#[derive(Default)]
struct Histories {
    vhosts: HashMap<String, History>,
    /// By queue id (never reused: a queue made again under the same name starts over).
    queues: HashMap<u64, History>,
}

/// The sampled history of every vhost and queue.
pub struct Rates {
    interval: Duration,
    histories: Mutex<Histories>,
}

/// Rounded as RabbitMQ shows them (one decimal).
fn round(r: f64) -> f64 {
    (r * 10.0).round() / 10.0
}

fn details(rate: f64) -> Value {
    json!({"rate": round(rate)})
}

/// A `message_stats` object: every count, its `_details`, and `deliver_get` (all four ways
/// a message leaves).
fn message_stats(counts: &[u64; STAT_COUNT], rates: &[f64; STAT_COUNT]) -> Value {
    let mut m = Map::new();
    let (mut dg, mut dg_rate) = (0, 0.0);
    for (i, name) in STAT_NAMES.iter().enumerate() {
        m.insert((*name).into(), counts[i].into());
        m.insert(format!("{name}_details"), details(rates[i]));
        if matches!(*name, "deliver" | "deliver_no_ack" | "get" | "get_no_ack") {
            dg += counts[i];
            dg_rate += rates[i];
        }
    }
    m.insert("deliver_get".into(), dg.into());
    m.insert("deliver_get_details".into(), details(dg_rate));
    Value::Object(m)
}

fn depth(q: &Queue) -> [u64; 2] {
    [u64::from(q.message_count()), u64::from(q.unacked_count())]
}

impl Rates {
    pub fn new(interval: Duration) -> Arc<Rates> {
        Arc::new(Rates {
            interval: interval.max(Duration::from_millis(10)),
            histories: Mutex::default(),
        })
    }

    /// Samples every `interval` until the broker is gone or stops.
    pub fn start(
        self: &Arc<Self>,
        broker: Weak<Broker>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let rates = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(rates.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => return,
                }
                let Some(b) = broker.upgrade() else { return };
                rates.sample(&b.vhosts());
            }
        });
    }

    /// Reads every vhost's and queue's counts (the atomics first, then one short lock).
    fn sample(&self, vhosts: &[Arc<VHost>]) {
        let at = Instant::now();
        let mut vs = Vec::with_capacity(vhosts.len());
        let mut qs = Vec::new();
        for v in vhosts {
            let mut total = [0u64; 2];
            for q in v.queues() {
                let d = depth(&q);
                total[0] += d[0];
                total[1] += d[1];
                qs.push((
                    q.qid,
                    Sample {
                        at,
                        counts: q.stats.snapshot(),
                        depth: d,
                    },
                ));
            }
            let counts = v.stats.snapshot();
            vs.push((
                v.name.clone(),
                Sample {
                    at,
                    counts,
                    depth: total,
                },
            ));
        }
        let mut h = self.histories.lock();
        let live: std::collections::HashSet<u64> = qs.iter().map(|(id, _)| *id).collect();
        h.queues.retain(|id, _| live.contains(id));
        h.vhosts.retain(|name, _| vs.iter().any(|(n, _)| n == name));
        for (id, s) in qs {
            h.queues.entry(id).or_default().push(s);
        }
        for (name, s) in vs {
            h.vhosts.entry(name).or_default().push(s);
        }
    }

    fn rates_of(
        &self,
        pick: impl FnOnce(&Histories) -> Option<&History>,
    ) -> ([f64; STAT_COUNT], [f64; 2]) {
        let h = self.histories.lock();
        pick(&h).map_or(([0.0; STAT_COUNT], [0.0; 2]), History::rates)
    }

    /// A queue's `message_stats` (what its publishes, deliveries, gets and acks were).
    pub fn queue_stats(&self, q: &Queue) -> Value {
        let (rates, _) = self.rates_of(|h| h.queues.get(&q.qid));
        message_stats(&q.stats.snapshot(), &rates)
    }

    /// A vhost's `message_stats` (its connections' counts).
    pub fn vhost_stats(&self, v: &VHost) -> Value {
        let (rates, _) = self.rates_of(|h| h.vhosts.get(&v.name));
        message_stats(&v.stats.snapshot(), &rates)
    }

    /// The overview's `message_stats` and `queue_totals` over `vhosts` (the caller's).
    pub fn overview(&self, vhosts: &[Arc<VHost>]) -> (Value, Value) {
        let mut counts = [0u64; STAT_COUNT];
        let mut depth_now = [0u64; 2];
        for v in vhosts {
            add_into(&mut counts, &v.stats);
            for q in v.queues() {
                let d = depth(&q);
                depth_now[0] += d[0];
                depth_now[1] += d[1];
            }
        }
        let mut rates = [0.0; STAT_COUNT];
        let mut depth_rates = [0.0; 2];
        {
            let h = self.histories.lock();
            for v in vhosts {
                if let Some(hist) = h.vhosts.get(&v.name) {
                    let (r, d) = hist.rates();
                    for i in 0..STAT_COUNT {
                        rates[i] += r[i];
                    }
                    depth_rates[0] += d[0];
                    depth_rates[1] += d[1];
                }
            }
        }
        let totals = json!({
            "messages": depth_now[0] + depth_now[1],
            "messages_details": details(depth_rates[0] + depth_rates[1]),
            "messages_ready": depth_now[0],
            "messages_ready_details": details(depth_rates[0]),
            "messages_unacknowledged": depth_now[1],
            "messages_unacknowledged_details": details(depth_rates[1]),
        });
        (message_stats(&counts, &rates), totals)
    }
}

fn add_into(into: &mut [u64; STAT_COUNT], s: &MessageStats) {
    for (i, n) in s.snapshot().iter().enumerate() {
        into[i] += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_is_the_change_per_second_between_the_last_two_samples() {
        let t0 = Instant::now();
        let mut h = History::default();
        assert_eq!(h.rates().0[0], 0.0);
        let mut counts = [0; STAT_COUNT];
        h.push(Sample {
            at: t0,
            counts,
            depth: [10, 0],
        });
        counts[0] = 50;
        h.push(Sample {
            at: t0 + Duration::from_secs(5),
            counts,
            depth: [0, 0],
        });
        let (r, d) = h.rates();
        assert_eq!(r[0], 10.0);
        assert_eq!(d[0], -2.0);
        for _ in 0..10 {
            h.push(Sample {
                at: t0,
                counts,
                depth: [0, 0],
            });
        }
        assert_eq!(h.0.len(), HISTORY);
    }

    #[test]
    fn deliver_get_sums_the_four_ways_out() {
        let mut counts = [0; STAT_COUNT];
        for (i, n) in STAT_NAMES.iter().enumerate() {
            if n.starts_with("deliver") || n.starts_with("get") {
                counts[i] = 1;
            }
        }
        let v = message_stats(&counts, &[0.0; STAT_COUNT]);
        // get_empty is not a message out.
        assert_eq!(v["deliver_get"], 4);
        assert_eq!(v["publish_details"]["rate"], 0.0);
    }
}
