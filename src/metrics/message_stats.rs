//! Message counts per vhost and per queue, for the management API's `message_stats` and
//! their rates: plain relaxed atomics. A queue adds to its own where it already does the
//! work, under its lock (uncontended: the lock is held); a connection adds its batch's
//! tally to its vhost's once per batch, beside the registry's flush.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Counter, Tally};

macro_rules! stats {
    ($($field:ident,)*) => {
        /// One object's counts since it was made (RabbitMQ's `message_stats` names).
        #[derive(Default, Debug)]
        pub struct MessageStats {
            $(pub $field: AtomicU64,)*
        }

        /// The names, in the order [`MessageStats::snapshot`] gives them.
        pub const STAT_NAMES: &[&str] = &[$(stringify!($field),)*];

        impl MessageStats {
            pub fn snapshot(&self) -> [u64; STAT_COUNT] {
                [$(self.$field.load(Ordering::Relaxed),)*]
            }
        }
    };
}

stats! {
    publish,
    confirm,
    return_unroutable,
    drop_unroutable,
    deliver,
    deliver_no_ack,
    get,
    get_no_ack,
    get_empty,
    ack,
    redeliver,
}

pub const STAT_COUNT: usize = 11;

/// Adds `n` (one relaxed add; nothing if zero).
#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    if n > 0 {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

impl MessageStats {
    /// A connection's batch, as its vhost counts it.
    pub fn add_tally(&self, t: &Tally) {
        add(&self.publish, t.get(Counter::Received));
        add(&self.confirm, t.get(Counter::Confirmed));
        add(&self.return_unroutable, t.get(Counter::UnroutableReturned));
        add(&self.drop_unroutable, t.get(Counter::UnroutableDropped));
        add(&self.deliver, t.get(Counter::DeliveredConsumeManualAck));
        add(
            &self.deliver_no_ack,
            t.get(Counter::DeliveredConsumeAutoAck),
        );
        add(&self.get, t.get(Counter::DeliveredGetManualAck));
        add(&self.get_no_ack, t.get(Counter::DeliveredGetAutoAck));
        add(&self.ack, t.get(Counter::Acknowledged));
        add(&self.redeliver, t.get(Counter::Redelivered));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_fields() {
        assert_eq!(STAT_NAMES.len(), STAT_COUNT);
        let s = MessageStats::default();
        let mut t = Tally::default();
        t.add(Counter::Received, 3);
        t.add(Counter::Acknowledged, 2);
        s.add_tally(&t);
        let snap = s.snapshot();
        assert_eq!(
            snap[STAT_NAMES.iter().position(|n| *n == "publish").unwrap()],
            3
        );
        assert_eq!(
            snap[STAT_NAMES.iter().position(|n| *n == "ack").unwrap()],
            2
        );
    }
}
