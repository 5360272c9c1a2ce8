//! Resource alarms, as RabbitMQ's: memory above the high watermark, or free disk space under
//! the limit, blocks every connection that publishes (its socket is no longer read; clients
//! with the capability get `connection.blocked`), while consumers go on draining.
//!
//! A monitor task samples the process's resident memory (`/proc/self/status`) every
//! [`MEMORY_EVERY`] and the data directory's free space every [`DISK_EVERY`]; limits are
//! absolute or relative to the machine's RAM (or its cgroup's limit, if lower), as RabbitMQ's
//! `vm_memory_high_watermark` and `disk_free_limit`. Each alarm is logged once when it is
//! raised and once when it clears.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;
use tracing::{info, warn};

/// How often resident memory is sampled.
pub const MEMORY_EVERY: Duration = Duration::from_millis(200);
/// How often free disk space is sampled.
pub const DISK_EVERY: Duration = Duration::from_secs(1);

/// A watermark setting that is not a limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadLimit {
    #[error("{0:?} is not a non-negative number")]
    Negative(String),
    #[error("{0:?} is not a size")]
    NotASize(String),
    #[error("unknown unit {0:?} in {1:?}")]
    Unit(String, String),
    #[error("{0:?} is too large")]
    TooLarge(String),
}

/// A limit in bytes, or a fraction (memory) or multiple (disk) of the machine's RAM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    Relative(f64),
    Absolute(u64),
}

impl Limit {
    /// `0.4` (a number with a decimal point: relative) or `50MB`, `2GiB`, `1048576` (bytes,
    /// with RabbitMQ's units: k/K/KiB, M/MiB, G/GiB, T/TiB are powers of 1024; kB, MB, GB, TB
    /// powers of 1000).
    pub fn parse(s: &str) -> Result<Limit, BadLimit> {
        let s = s.trim();
        if s.contains('.') {
            return match s.parse::<f64>() {
                Ok(f) if f.is_finite() && f >= 0.0 => Ok(Limit::Relative(f)),
                _ => Err(BadLimit::Negative(s.to_string())),
            };
        }
        let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (n, unit) = s.split_at(digits);
        let n: u64 = n.parse().map_err(|_| BadLimit::NotASize(s.to_string()))?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "k" | "K" | "KiB" | "kiB" => 1 << 10,
            "M" | "MiB" => 1 << 20,
            "G" | "GiB" => 1 << 30,
            "T" | "TiB" => 1 << 40,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            other => return Err(BadLimit::Unit(other.to_string(), s.to_string())),
        };
        n.checked_mul(scale)
            .map(Limit::Absolute)
            .ok_or_else(|| BadLimit::TooLarge(s.to_string()))
    }

    /// The limit in bytes for a machine with `ram` bytes.
    pub fn bytes(self, ram: u64) -> u64 {
        match self {
            Limit::Absolute(b) => b,
            Limit::Relative(f) => (ram as f64 * f) as u64,
        }
    }
}

/// RAM the broker may count on: the machine's, or its cgroup's limit if lower.
pub fn total_memory() -> u64 {
    let machine = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kb| kb * 1024);
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .filter_map(|s| s.trim().parse::<u64>().ok())
    .min()
    .unwrap_or(u64::MAX);
    machine.min(cgroup)
}

/// Resident memory of this process (0 where /proc is missing).
pub fn resident_memory() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// mimalloc returns freed memory to the OS only when a later page free, a second
/// (`purge_delay`) after, runs its purge; a broker that went quiet after freeing gigabytes
/// (a drained queue) would keep them resident, and the memory alarm raised. A large block
/// allocated and freed here is such a page free, on whatever thread the monitor runs.
fn nudge_allocator() {
    drop(std::hint::black_box(Vec::<u8>::with_capacity(8 << 20)));
}

/// The alarms' state, and the signal connections watch.
pub struct Alarms {
    memory: AtomicBool,
    disk: AtomicBool,
    /// Raised by hand (tests), with its reason.
    manual: Mutex<Option<String>>,
    memory_limit: AtomicU64,
    disk_limit: AtomicU64,
    signal: watch::Sender<Option<String>>,
}

impl Alarms {
    pub fn new(memory: Limit, disk: Limit) -> Arc<Alarms> {
        let ram = total_memory();
        Arc::new(Alarms {
            memory: AtomicBool::new(false),
            disk: AtomicBool::new(false),
            manual: Mutex::new(None),
            memory_limit: AtomicU64::new(memory.bytes(ram)),
            disk_limit: AtomicU64::new(disk.bytes(ram)),
            signal: watch::channel(None).0,
        })
    }

    /// Starts the monitor task (on the current runtime); it ends with `shutdown`.
    pub fn monitor(self: &Arc<Self>, data_dir: PathBuf, mut shutdown: watch::Receiver<bool>) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(MEMORY_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let disk_every = (DISK_EVERY.as_millis() / MEMORY_EVERY.as_millis()).max(1) as u64;
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.changed() => return,
                }
                nudge_allocator();
                me.check_memory(resident_memory());
                if n % disk_every == 0 {
                    let dir = data_dir.clone();
                    // statvfs can wait on a slow filesystem: not on a runtime thread.
                    let free = tokio::task::spawn_blocking(move || free_space(&dir)).await;
                    if let Ok(Some(free)) = free {
                        me.check_disk(free);
                    }
                }
                n += 1;
            }
        });
    }

    pub fn check_memory(&self, used: u64) {
        let limit = self.memory_limit.load(Ordering::Relaxed);
        self.flip(&self.memory, "memory", used > limit, used, limit);
    }

    pub fn check_disk(&self, free: u64) {
        let limit = self.disk_limit.load(Ordering::Relaxed);
        self.flip(&self.disk, "disk", free < limit, free, limit);
    }

    /// Sets one alarm's state; a change is logged (RabbitMQ's words) and published.
    fn flip(&self, alarm: &AtomicBool, what: &str, raised: bool, value: u64, limit: u64) {
        if alarm.swap(raised, Ordering::AcqRel) == raised {
            return;
        }
        if raised {
            warn!(
                value,
                limit, "{what} resource limit alarm set: publishers are blocked"
            );
        } else {
            info!(value, limit, "{what} resource limit alarm cleared");
        }
        self.publish();
    }

    /// Raises (`Some(reason)`) or clears an alarm by hand (tests and operators).
    pub fn set_manual(&self, reason: Option<String>) {
        *self.manual.lock() = reason;
        self.publish();
    }

    /// The reason connection.blocked carries (RabbitMQ's words), or None if all is clear.
    pub fn reason(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.memory.load(Ordering::Acquire) {
            parts.push("low on memory".to_string());
        }
        if self.disk.load(Ordering::Acquire) {
            parts.push("low on disk".to_string());
        }
        if let Some(m) = self.manual.lock().clone() {
            parts.push(m);
        }
        (!parts.is_empty()).then(|| parts.join(" & "))
    }

    fn publish(&self) {
        let reason = self.reason();
        self.signal.send_if_modified(|r| {
            if *r == reason {
                return false;
            }
            *r = reason;
            true
        });
    }

    pub fn signal(&self) -> watch::Receiver<Option<String>> {
        self.signal.subscribe()
    }

    pub fn memory_alarm(&self) -> bool {
        self.memory.load(Ordering::Acquire)
    }

    pub fn disk_alarm(&self) -> bool {
        self.disk.load(Ordering::Acquire)
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit.load(Ordering::Relaxed)
    }

    pub fn disk_limit(&self) -> u64 {
        self.disk_limit.load(Ordering::Relaxed)
    }
}

/// Bytes free for an unprivileged writer on the filesystem holding `dir`.
pub fn free_space(dir: &Path) -> Option<u64> {
    fs2::available_space(dir).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_as_rabbitmq_writes_them() {
        assert_eq!(Limit::parse("0.4"), Ok(Limit::Relative(0.4)));
        assert_eq!(Limit::parse("1.5"), Ok(Limit::Relative(1.5)));
        assert_eq!(Limit::parse("50MB"), Ok(Limit::Absolute(50_000_000)));
        assert_eq!(Limit::parse("2GiB"), Ok(Limit::Absolute(2 << 30)));
        assert_eq!(Limit::parse("512M"), Ok(Limit::Absolute(512 << 20)));
        assert_eq!(Limit::parse("1048576"), Ok(Limit::Absolute(1 << 20)));
        assert!(Limit::parse("lots").is_err());
        assert!(Limit::parse("5XB").is_err());
        assert!(Limit::parse("-0.5").is_err());
        assert_eq!(Limit::Relative(0.5).bytes(1000), 500);
    }

    #[test]
    fn alarms_raise_and_clear_with_rabbitmqs_reasons() {
        let a = Alarms::new(Limit::Absolute(100), Limit::Absolute(10));
        let mut rx = a.signal();
        a.check_memory(50);
        assert_eq!(a.reason(), None);
        a.check_memory(150);
        assert!(rx.has_changed().unwrap());
        assert_eq!(rx.borrow_and_update().as_deref(), Some("low on memory"));
        a.check_disk(5);
        assert_eq!(a.reason().as_deref(), Some("low on memory & low on disk"));
        a.check_memory(50);
        a.check_disk(50);
        assert_eq!(a.reason(), None);
        assert!(!a.memory_alarm() && !a.disk_alarm());
    }
}
