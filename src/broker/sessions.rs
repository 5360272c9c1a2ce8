//! Open connections by user and vhost: what the connection and channel limits count, and
//! how a deleted vhost or user (or a changed password) closes the connections it had.
//!
//! One mutex: taken at connection.open, channel.open/close and connection end, never on
//! publish or deliver.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// How the broker closes a connection (320 CONNECTION_FORCED with `text`); the connection
/// implements it over its inbox.
pub trait ForceClose: Send + Sync {
    fn force_close(&self, text: String);
}

struct Session {
    user: String,
    vhost: String,
    /// Channels open, as the connection last said (at the end of each input batch).
    channels: u64,
    closer: Arc<dyn ForceClose>,
}

#[derive(Default)]
struct Table {
    by_id: HashMap<u64, Session>,
    per_user: HashMap<String, u64>,
    per_vhost: HashMap<String, u64>,
}

/// A limit that refused a connection or a channel (its RabbitMQ text is the caller's).
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    VhostConnections(u64),
    UserConnections(u64),
}

#[derive(Default)]
pub struct Sessions {
    table: Mutex<Table>,
}

fn bump(m: &mut HashMap<String, u64>, k: &str, up: bool) {
    if up {
        *m.entry(k.to_string()).or_default() += 1;
    } else if let Some(n) = m.get_mut(k) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            m.remove(k);
        }
    }
}

impl Sessions {
    /// Counts connection `id` of `user` on `vhost`, unless a limit is reached.
    pub fn open(
        &self,
        id: u64,
        user: &str,
        vhost: &str,
        limits: (Option<u64>, Option<u64>),
        closer: Arc<dyn ForceClose>,
    ) -> Result<(), Refused> {
        let (vhost_max, user_max) = limits;
        let mut t = self.table.lock();
        if let Some(max) = vhost_max {
            if t.per_vhost.get(vhost).copied().unwrap_or(0) >= max {
                return Err(Refused::VhostConnections(max));
            }
        }
        if let Some(max) = user_max {
            if t.per_user.get(user).copied().unwrap_or(0) >= max {
                return Err(Refused::UserConnections(max));
            }
        }
        bump(&mut t.per_user, user, true);
        bump(&mut t.per_vhost, vhost, true);
        t.by_id.insert(
            id,
            Session {
                user: user.to_string(),
                vhost: vhost.to_string(),
                channels: 0,
                closer,
            },
        );
        Ok(())
    }

    /// Connection `id` ended.
    pub fn close(&self, id: u64) {
        let mut t = self.table.lock();
        if let Some(s) = t.by_id.remove(&id) {
            bump(&mut t.per_user, &s.user, false);
            bump(&mut t.per_vhost, &s.vhost, false);
        }
    }

    /// Connection `id` has `n` channels open.
    pub fn set_channels(&self, id: u64, n: u64) {
        if let Some(s) = self.table.lock().by_id.get_mut(&id) {
            s.channels = n;
        }
    }

    /// The channels `user`'s other connections have open (a limit is checked against
    /// these plus the asking connection's own count, which it knows exactly).
    pub fn user_channels_except(&self, user: &str, id: u64) -> u64 {
        self.table
            .lock()
            .by_id
            .iter()
            .filter(|(i, s)| **i != id && s.user == user)
            .map(|(_, s)| s.channels)
            .sum()
    }

    /// Closes every connection `pick` chooses by (user, vhost); returns how many.
    pub fn force_close(&self, pick: impl Fn(&str, &str) -> bool, text: &str) -> usize {
        let closers: Vec<Arc<dyn ForceClose>> = self
            .table
            .lock()
            .by_id
            .values()
            .filter(|s| pick(&s.user, &s.vhost))
            .map(|s| s.closer.clone())
            .collect();
        // Outside the lock: a closer only queues an event, but keep the lock short anyway.
        for c in &closers {
            c.force_close(text.to_string());
        }
        closers.len()
    }
}
