//! The process-wide state: vhosts, the access model (users, permissions, limits), open
//! sessions, connection ids, and the shutdown signal.
//!
//! Files: this one (opening, logins, grants), `boot` (what the config adds at start: the
//! default user, TOML users and vhosts), `admin` (run-time changes to users, vhosts,
//! permissions and limits, each written to the store), `policies` (policies and operator
//! policies set and restored), `definitions` (RabbitMQ's
//! definitions JSON, imported), `export` (and exported), `sessions` (connections by user and vhost).

pub mod admin;
mod boot;
pub mod definitions;
pub mod export;
mod policies;
pub mod sessions;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use parking_lot::RwLock;
use tokio::sync::watch;

use tracing::warn;

use crate::access::{Access, Grants};
use crate::alarms::Alarms;
use crate::config::Config;
use crate::failed_logins::FailedLogins;
use crate::metrics::Counters;
use crate::password::{Algorithm, PasswordHash};
use crate::store::{Store, StoreConfig, StoreError};
use crate::vhost::VHost;
pub use admin::AdminError;
use sessions::Sessions;

pub struct Broker {
    pub config: Config,
    pub store: Arc<Store>,
    vhosts: DashMap<String, Arc<VHost>>,
    /// Users, vhosts' descriptions and limits, permissions: read by logins, connection.open
    /// and connections whose grants are stale; written by the administration calls
    /// (`admin.rs`), which write the store under it (so records keep the order of changes).
    access: RwLock<Access>,
    /// Bumped by every access change: a connection's [`Grants`] older than this are stale.
    access_generation: AtomicU64,
    /// Open connections by user and vhost (limits, forced closes).
    pub sessions: Sessions,
    /// Users who may connect only from a loopback address (`loopback_users`).
    loopback_users: HashSet<String>,
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

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("load_definitions {path}: {reason}")]
    Definitions { path: PathBuf, reason: String },
    #[error("{0}")]
    Boot(String),
}

impl Broker {
    /// Opens the store in the data directory and recovers what it holds, then adds what the
    /// config brings: `load_definitions`, the TOML's vhosts and users, and on a first start
    /// with no users the default user (`boot.rs`).
    pub fn open(config: Config, shutdown: watch::Receiver<bool>) -> Result<Arc<Self>, OpenError> {
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
        let mut access = Access::default();
        boot::read_access(&mut access, &recovered.vhosts, &recovered.access);
        let vhosts = DashMap::new();
        for name in access.vhosts.keys() {
            vhosts.insert(
                name.clone(),
                VHost::new(name, store.clone(), config.queue_ram_bytes),
            );
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
        for v in vhosts.iter() {
            v.restore(
                exchanges.remove(v.key()).unwrap_or_default(),
                queues.remove(v.key()).unwrap_or_default(),
                &recovered.bindings,
                &mut by_id,
            );
        }
        for name in exchanges.keys().chain(queues.keys()) {
            warn!(vhost = %name, "stored entities of a vhost that has no record: not served");
        }
        policies::restore(&vhosts, &recovered.access);
        let alarms = Alarms::new(config.memory_high_watermark, config.disk_free_limit);
        let mut config = config;
        let hashes = config
            .users
            .iter_mut()
            .map(|u| {
                let hash = PasswordHash::new(Algorithm::Sha256, &u.password);
                u.password.clear();
                hash
            })
            .collect();
        let mut loopback_users: HashSet<String> = config.loopback_users.iter().cloned().collect();
        loopback_users.extend(
            config
                .users
                .iter()
                .filter(|u| !u.remote)
                .map(|u| u.name.clone()),
        );
        let broker = Arc::new(Broker {
            config,
            access: RwLock::new(access),
            access_generation: AtomicU64::new(1),
            sessions: Sessions::default(),
            loopback_users,
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
        });
        broker.boot(hashes)?;
        Ok(broker)
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

    /// Checks a username/password from `peer`. An unknown user costs the same hash as a
    /// known one, so the time taken does not tell which names exist.
    pub fn authenticate(&self, name: &str, password: &str, peer: IpAddr) -> Result<(), LoginError> {
        let known = match self.access.read().user(name) {
            Some(u) => u.hash.verify(password),
            None => {
                let _ = absent_user_hash().verify(password);
                false
            }
        };
        if !known {
            return Err(LoginError::BadCredentials);
        }
        self.loopback_check(name, peer)
    }

    fn loopback_check(&self, name: &str, peer: IpAddr) -> Result<(), LoginError> {
        if self.loopback_users.contains(name) && !is_loopback(peer) {
            return Err(LoginError::LoopbackOnly);
        }
        Ok(())
    }

    /// The current access generation (one atomic load: what a connection compares its
    /// grants against before trusting a cached decision).
    pub fn access_generation(&self) -> u64 {
        self.access_generation.load(Ordering::Acquire)
    }

    /// `user`'s rights on `vhost` as of now.
    pub fn grants(&self, user: &str, vhost: &str) -> Arc<Grants> {
        let a = self.access.read();
        // Read under the lock: a change bumps the generation while holding it for writing.
        let generation = self.access_generation();
        Arc::new(a.grants(user, vhost, generation))
    }

    /// A user's limits and the vhost's connection limit, for connection.open.
    pub fn connection_limits(&self, user: &str, vhost: &str) -> (Option<u64>, Option<u64>) {
        let a = self.access.read();
        let v = a
            .vhosts
            .get(vhost)
            .and_then(|v| v.limits.get("max-connections"));
        let u = a.user(user).and_then(|u| u.limits.get("max-connections"));
        (v, u)
    }

    pub fn user_channel_limit(&self, user: &str) -> Option<u64> {
        self.access
            .read()
            .user(user)
            .and_then(|u| u.limits.get("max-channels"))
    }

    pub fn vhost_queue_limit(&self, vhost: &str) -> Option<u64> {
        self.access
            .read()
            .vhosts
            .get(vhost)
            .and_then(|v| v.limits.get("max-queues"))
    }

    /// Checks a login by a verified TLS client certificate's name (SASL EXTERNAL): no
    /// password; the user must exist and may be loopback-only.
    pub fn authenticate_external(&self, name: &str, peer: IpAddr) -> Result<(), LoginError> {
        if self.access.read().user(name).is_none() {
            return Err(LoginError::BadCredentials);
        }
        self.loopback_check(name, peer)
    }

    /// Reads the model (the administration API's listings).
    pub fn read_access<R>(&self, f: impl FnOnce(&Access) -> R) -> R {
        f(&self.access.read())
    }
}

/// A hash no password matches, verified for unknown users (same cost as a real one).
fn absent_user_hash() -> &'static PasswordHash {
    static H: std::sync::OnceLock<PasswordHash> = std::sync::OnceLock::new();
    H.get_or_init(|| PasswordHash::new(Algorithm::Sha256, "\0absent"))
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}
