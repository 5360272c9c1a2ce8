//! Open connections by user and vhost: what the connection and channel limits count, how
//! a deleted vhost or user (or a changed password) closes the connections it had, and what
//! the management API lists (each connection's details as of its open; its channels and
//! consumers asked of the connection itself, so nothing is kept up to date per message).
//!
//! One mutex: taken at connection.open, channel.open/close and connection end, and by the
//! management API's listings (which copy out and release it), never on publish or deliver.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use amq_protocol::types::FieldTable;
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// How the broker reaches an open connection; the connection implements it over its inbox.
pub trait Control: Send + Sync {
    /// Closes it with 320 CONNECTION_FORCED and `text`.
    fn force_close(&self, text: String);
    /// Asks for its channels as they are now (answered between two batches).
    fn report(&self, reply: oneshot::Sender<Vec<ChannelInfo>>);
}

/// What a connection was at connection.open (it does not change after).
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The listener's address the client reached.
    pub local: SocketAddr,
    pub tls: bool,
    pub user: String,
    pub vhost: String,
    pub auth_mechanism: String,
    pub client_properties: FieldTable,
    pub frame_max: u32,
    pub channel_max: u16,
    pub heartbeat: u16,
    /// Milliseconds since the epoch.
    pub connected_at: u64,
}

impl ConnInfo {
    /// RabbitMQ's connection name: "peer -> local".
    pub fn name(&self) -> String {
        format!("{} -> {}", self.peer, self.local)
    }
}

/// One open channel, as its connection reports it.
#[derive(Debug, Clone, Default)]
pub struct ChannelInfo {
    pub number: u16,
    pub confirm: bool,
    pub transactional: bool,
    /// basic.qos global=false (given to consumers started after it).
    pub prefetch_count: u32,
    /// basic.qos global=true: the channel's shared limit.
    pub global_prefetch_count: u32,
    pub messages_unacknowledged: u64,
    pub messages_unconfirmed: u64,
    pub closing: bool,
    pub consumers: Vec<ConsumerInfo>,
}

#[derive(Debug, Clone)]
pub struct ConsumerInfo {
    pub tag: String,
    pub queue: String,
    pub ack_required: bool,
    pub exclusive: bool,
    pub prefetch_count: u32,
    pub arguments: FieldTable,
}

/// An open connection as the table lists it.
#[derive(Clone)]
pub struct Listed {
    pub id: u64,
    pub info: Arc<ConnInfo>,
    pub channels: u64,
    pub control: Arc<dyn Control>,
}

struct Session {
    info: Arc<ConnInfo>,
    /// Channels open, as the connection last said (at the end of each input batch).
    channels: u64,
    closer: Arc<dyn Control>,
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
    /// Connections opened and closed since start (the overview's churn).
    opened: std::sync::atomic::AtomicU64,
    closed: std::sync::atomic::AtomicU64,
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
        info: Arc<ConnInfo>,
        limits: (Option<u64>, Option<u64>),
        closer: Arc<dyn Control>,
    ) -> Result<(), Refused> {
        let (vhost_max, user_max) = limits;
        let (user, vhost) = (info.user.as_str(), info.vhost.as_str());
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
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        t.by_id.insert(
            id,
            Session {
                info: info.clone(),
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
            bump(&mut t.per_user, &s.info.user, false);
            bump(&mut t.per_vhost, &s.info.vhost, false);
            self.closed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            .filter(|(i, s)| **i != id && s.info.user == user)
            .map(|(_, s)| s.channels)
            .sum()
    }

    /// Closes every connection `pick` chooses by (user, vhost); returns how many.
    pub fn force_close(&self, pick: impl Fn(&str, &str) -> bool, text: &str) -> usize {
        let closers: Vec<Arc<dyn Control>> = self
            .table
            .lock()
            .by_id
            .values()
            .filter(|s| pick(&s.info.user, &s.info.vhost))
            .map(|s| s.closer.clone())
            .collect();
        // Outside the lock: a closer only queues an event, but keep the lock short anyway.
        for c in &closers {
            c.force_close(text.to_string());
        }
        closers.len()
    }
}

impl Sessions {
    /// Every open connection (copied out: the lock is released on return).
    pub fn list(&self) -> Vec<Listed> {
        let t = self.table.lock();
        let mut v: Vec<Listed> = t
            .by_id
            .iter()
            .map(|(&id, s)| Listed {
                id,
                info: s.info.clone(),
                channels: s.channels,
                control: s.closer.clone(),
            })
            .collect();
        drop(t);
        v.sort_by_key(|l| l.id);
        v
    }

    /// Connections opened and closed since start.
    pub fn churn(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.opened.load(Relaxed), self.closed.load(Relaxed))
    }
}
