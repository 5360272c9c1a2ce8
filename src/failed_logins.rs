//! Failed logins per peer address, and how long the next refusal waits, so that guessing
//! passwords is slow: without it one client had ~2,600 wrong passwords a second answered,
//! 0.1 ms each. RabbitMQ does not slow refusals; its answers (403 and the text) are unchanged
//! here, they only come later.
//!
//! Each failure from an address within [`WINDOW`] of its last adds [`STEP`] to the wait, up
//! to [`MAX_DELAY`]; an address quiet for a window starts over. The table is bounded
//! ([`MAX_ADDRESSES`]): when full, quiet addresses are dropped, and an address that still
//! finds no room waits the longest (many addresses failing at once is itself a sign).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What each recent failure adds to the wait.
pub const STEP: Duration = Duration::from_millis(100);
/// The longest a refusal waits (well inside the handshake timeout).
pub const MAX_DELAY: Duration = Duration::from_secs(1);
/// How long an address's failures are remembered after its last.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most.
pub const MAX_ADDRESSES: usize = 65_536;

#[derive(Default)]
pub struct FailedLogins {
    by_address: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    /// Address → (failures in a row, time of the last).
    map: HashMap<IpAddr, (u32, Instant)>,
    /// The last sweep of a full table: at most one a second, so that a flood of new
    /// addresses does not cost a walk of the table each.
    swept: Option<Instant>,
}

impl FailedLogins {
    /// Counts a failed login from `ip` at `now`; returns how long its refusal waits.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> Duration {
        let mut table = self.by_address.lock();
        let Table { map, swept } = &mut *table;
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
            if !matches!(swept, Some(at) if now.duration_since(*at) < Duration::from_secs(1)) {
                *swept = Some(now);
                map.retain(|_, (_, last)| now.duration_since(*last) < WINDOW);
            }
            if map.len() >= MAX_ADDRESSES {
                return MAX_DELAY;
            }
        }
        let entry = map.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= WINDOW {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        STEP.saturating_mul(entry.0).min(MAX_DELAY)
    }

    /// Addresses remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_address.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(n))
    }

    #[test]
    fn the_wait_grows_per_failure_up_to_its_bound_and_resets_after_a_quiet_window() {
        let f = FailedLogins::default();
        let t = Instant::now();
        assert_eq!(f.failed(ip(1), t), STEP);
        assert_eq!(f.failed(ip(1), t), STEP * 2);
        assert_eq!(
            f.failed(ip(2), t),
            STEP,
            "another address has its own count"
        );
        for _ in 0..100 {
            f.failed(ip(1), t);
        }
        assert_eq!(f.failed(ip(1), t), MAX_DELAY);
        assert_eq!(f.failed(ip(1), t + WINDOW), STEP);
    }

    #[test]
    fn the_table_is_bounded_and_a_full_one_drops_quiet_addresses() {
        let f = FailedLogins::default();
        let t = Instant::now();
        for n in 0..MAX_ADDRESSES as u32 {
            f.failed(ip(n), t);
        }
        assert_eq!(f.len(), MAX_ADDRESSES);
        assert_eq!(
            f.failed(ip(u32::MAX), t),
            MAX_DELAY,
            "no room: the longest wait"
        );
        assert_eq!(f.len(), MAX_ADDRESSES);
        assert_eq!(
            f.failed(ip(u32::MAX), t + WINDOW),
            STEP,
            "quiet ones dropped"
        );
        assert_eq!(f.len(), 1);
    }
}
