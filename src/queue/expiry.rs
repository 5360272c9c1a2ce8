//! Time in a queue: per-message TTL (`x-message-ttl`, `expiration`) applied at the head as
//! RabbitMQ's classic queues do (one timer per queue, armed for the head's expiry), and
//! `x-expires` (a queue unused for that long deletes itself, through its owner).

use std::sync::Arc;
use std::time::Duration;

use super::dead_letter::Reason;
use super::ready::QueuedMessage;
use super::{arguments, Queue, State};
use crate::message::Message;

/// A message's own `expiration` in ms (validated at publish; unparsable = none).
pub(super) fn message_expiration(m: &Message) -> Option<u64> {
    let raw = m.properties().expiration(m.properties_raw())?;
    arguments::parse_expiration(raw).ok()
}

/// Milliseconds since the Unix epoch (message expiry times; they survive a restart).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Queue {
    /// The next live message: expired ones met on the way are dead-lettered. The clock is
    /// read only for messages that can expire (most never do).
    pub(super) fn pop_live(&self, st: &mut State) -> Option<QueuedMessage> {
        loop {
            let m = st.store.pop()?;
            if m.expires_at != 0 && m.expires_at < now_ms() {
                st.store.settle(&m);
                self.dead_letter(st, m.message, Reason::Expired);
                continue;
            }
            return Some(m);
        }
    }

    /// Makes sure a timer fires when the message at the head expires.
    pub(super) fn arm_expiry(self: &Arc<Self>, st: &mut State) {
        let Some(at) = st.store.front_expiry() else {
            return;
        };
        if st.timer_at.is_some_and(|t| t <= at) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.timer_at = Some(at);
        let q = Arc::downgrade(self);
        rt.spawn(async move {
            let wait = at.saturating_sub(now_ms());
            tokio::time::sleep(Duration::from_millis(wait)).await;
            if let Some(q) = q.upgrade() {
                q.expire_due(at);
            }
        });
    }

    /// A timer fired: expire what is due at the head, re-arm for what comes next.
    fn expire_due(self: &Arc<Self>, at: u64) {
        let mut st = self.state.lock();
        if st.timer_at == Some(at) {
            st.timer_at = None;
        }
        let now = now_ms();
        while st.store.front_expiry().is_some_and(|e| e <= now) {
            let Some(m) = st.store.pop() else { break };
            st.store.settle(&m);
            self.dead_letter(&mut st, m.message, Reason::Expired);
        }
        self.arm_expiry(&mut st);
        self.unlock(st);
    }

    /// Deletes the queue once it has been unused (no consumers, no get, no redeclare) for
    /// its `expires` (`x-expires` or a policy's, read afresh each round so a policy change
    /// takes effect), unless a watcher runs already.
    pub(super) fn start_expires_watch(self: &Arc<Self>, st: &mut State) {
        if st.watching_expires || st.args.expires.is_none() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        st.watching_expires = true;
        let q = Arc::downgrade(self);
        rt.spawn(async move {
            let mut wait = Duration::ZERO;
            loop {
                tokio::time::sleep(wait).await;
                let Some(q) = q.upgrade() else { return };
                if q.is_deleted() {
                    return;
                }
                let (expires, idle) = {
                    let mut st = q.state.lock();
                    let Some(ms) = st.args.expires else {
                        st.watching_expires = false;
                        return;
                    };
                    let idle = st.consumers.is_empty().then(|| st.last_used.elapsed());
                    (Duration::from_millis(ms), idle)
                };
                match idle {
                    Some(idle) if idle >= expires => {
                        if let Some(owner) = q.owner.upgrade() {
                            owner.expire(&q);
                        }
                        return;
                    }
                    Some(idle) => wait = expires - idle,
                    None => wait = expires,
                }
            }
        });
    }
}
