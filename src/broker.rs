//! The process-wide state: users, vhosts, connection ids, and the shutdown signal.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::watch;

use tracing::warn;

use crate::alarms::Alarms;
use crate::config::{Config, UserConfig};
use crate::failed_logins::FailedLogins;
use crate::metrics::Counters;
use crate::password::{Algorithm, PasswordHash};
use crate::store::{Store, StoreConfig, StoreError};
use crate::vhost::VHost;

pub struct Broker {
    pub config: Config,
    pub store: Arc<Store>,
    vhosts: DashMap<String, Arc<VHost>>,
    next_connection: AtomicU64,
    /// Open connections and channels (for the metrics; changed on open/close only).
    connections: AtomicI64,
    /// Connections that have not finished the handshake (see [`Broker::begin_handshake`]).
    handshaking: Arc<AtomicUsize>,
    channels: AtomicI64,
    shutdown: watch::Receiver<bool>,
    /// Memory and disk alarms: connections that publish are blocked while one is raised.
    pub alarms: Arc<Alarms>,
    /// The metrics' counter handles, shared by every connection (see [`Broker::counters`]).
    counters: std::sync::OnceLock<Arc<Counters>>,
    /// Each configured user's password, hashed at start as RabbitMQ stores it (the config's
    /// plaintext is not kept).
    passwords: HashMap<String, PasswordHash>,
    /// Failed logins per address: how long each refusal waits.
    pub failed_logins: FailedLogins,
}

/// A connection counted as in its handshake; dropping it (open, or gone) uncounts it.
pub struct HandshakeSlot(Arc<AtomicUsize>);

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why a login was refused (each maps to RabbitMQ's 403 text).
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    BadCredentials,
    LoopbackOnly,
}

impl Broker {
    /// Opens the store in the data directory and recovers what it holds.
    ///
    /// Vhosts and users come from the config (the source of truth for who may log in); a
    /// vhost found on disk but no longer configured keeps its records untouched, unserved.
    pub fn open(config: Config, shutdown: watch::Receiver<bool>) -> Result<Arc<Self>, StoreError> {
        // A priority queue keeps all its messages in RAM (it does not page); others their
        // budget.
        let budget = config.queue_ram_bytes;
        let head_budget = move |def: &crate::store::records::QueueDef| {
            let priority = crate::queue::arguments::QueueArgs::parse(&def.arguments)
                .is_ok_and(|a| a.max_priority.is_some());
            if priority {
                usize::MAX
            } else {
                budget
            }
        };
        let (store, recovered) = Store::open(
            &config.data_dir,
            &StoreConfig {
                cache_bytes: config.store_cache_bytes,
            },
            &head_budget,
        )?;
        let vhosts = DashMap::new();
        for name in &config.vhosts {
            store.put_vhost(name);
            vhosts.insert(
                name.clone(),
                VHost::new(name, store.clone(), config.queue_ram_bytes),
            );
        }
        let find = |name: &str| vhosts.get(name).map(|v| v.clone());
        for name in &recovered.vhosts {
            if find(name).is_none() {
                warn!(vhost = %name, "vhost on disk is not in the config: its entities are not served");
            }
        }
        // Grouped by vhost, then each vhost rebuilt in one go.
        let mut exchanges: HashMap<String, Vec<_>> = HashMap::new();
        for x in recovered.exchanges {
            exchanges.entry(x.vhost.clone()).or_default().push(x);
        }
        let mut queues: HashMap<String, Vec<_>> = HashMap::new();
        for q in recovered.queues {
            queues.entry(q.def.vhost.clone()).or_default().push(q);
        }
        let mut by_id = HashMap::new();
        for name in &config.vhosts {
            if let Some(v) = find(name) {
                v.restore(
                    exchanges.remove(name).unwrap_or_default(),
                    queues.remove(name).unwrap_or_default(),
                    &recovered.bindings,
                    &mut by_id,
                );
            }
        }
        let alarms = Alarms::new(config.memory_high_watermark, config.disk_free_limit);
        let mut config = config;
        let passwords = config
            .users
            .iter_mut()
            .map(|u| {
                let hash = PasswordHash::new(Algorithm::Sha256, &u.password);
                u.password.clear();
                (u.name.clone(), hash)
            })
            .collect();
        Ok(Arc::new(Broker {
            config,
            passwords,
            failed_logins: FailedLogins::default(),
            store,
            vhosts,
            next_connection: AtomicU64::new(1),
            connections: AtomicI64::new(0),
            handshaking: Arc::new(AtomicUsize::new(0)),
            channels: AtomicI64::new(0),
            shutdown,
            alarms,
            counters: std::sync::OnceLock::new(),
        }))
    }

    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        self.vhosts.iter().map(|v| v.clone()).collect()
    }

    /// A connection opened (+1) or closed (-1).
    pub fn count_connection(&self, delta: i64) {
        self.connections.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn count_channels(&self, delta: i64) {
        self.channels.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn connection_count(&self) -> i64 {
        self.connections.load(Ordering::Relaxed)
    }

    pub fn channel_count(&self) -> i64 {
        self.channels.load(Ordering::Relaxed)
    }

    /// A socket was accepted: counts it against `max_handshakes` until it opens (or ends);
    /// None if that many are already in their handshake (the socket is to be closed).
    pub fn begin_handshake(&self) -> Option<HandshakeSlot> {
        let n = self.handshaking.fetch_add(1, Ordering::AcqRel);
        if n >= self.config.max_handshakes {
            self.handshaking.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(HandshakeSlot(self.handshaking.clone()))
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Raises (`Some(reason)`) or clears a resource alarm by hand, beside the memory and
    /// disk monitors (see `alarms`). Clients that advertise the `connection.blocked`
    /// capability are told; publishing connections stop being read.
    pub fn set_alarm(&self, reason: Option<String>) {
        self.alarms.set_manual(reason);
    }

    /// The counter handles connections add their tallies to: made by the first connection
    /// (the recorder is installed by then), one set for all (18 handles per connection
    /// would cost each idle one 600 bytes).
    pub fn counters(&self) -> Arc<Counters> {
        self.counters.get_or_init(Arc::default).clone()
    }

    pub fn alarm_signal(&self) -> watch::Receiver<Option<String>> {
        self.alarms.signal()
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.get(name).map(|v| v.clone())
    }

    fn user(&self, name: &str) -> Option<&UserConfig> {
        self.config.users.iter().find(|u| u.name == name)
    }

    /// Checks a username/password from `peer`.
    pub fn authenticate(&self, name: &str, password: &str, peer: IpAddr) -> Result<(), LoginError> {
        let known = self.passwords.get(name).is_some_and(|h| h.verify(password));
        let user = self
            .user(name)
            .filter(|_| known)
            .ok_or(LoginError::BadCredentials)?;
        if !user.remote && !is_loopback(peer) {
            return Err(LoginError::LoopbackOnly);
        }
        Ok(())
    }

    /// Whether `user` may open `vhost`.
    pub fn may_open(&self, user: &str, vhost: &str) -> bool {
        self.user(user)
            .is_some_and(|u| u.vhosts.is_empty() || u.vhosts.iter().any(|v| v == vhost))
    }

    /// Checks a login by a verified TLS client certificate's name (SASL EXTERNAL): no
    /// password; the user must exist and may be loopback-only.
    pub fn authenticate_external(&self, name: &str, peer: IpAddr) -> Result<(), LoginError> {
        let user = self.user(name).ok_or(LoginError::BadCredentials)?;
        if !user.remote && !is_loopback(peer) {
            return Err(LoginError::LoopbackOnly);
        }
        Ok(())
    }
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}
