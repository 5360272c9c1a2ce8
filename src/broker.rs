//! The process-wide state: users, vhosts, connection ids, and the shutdown signal.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::watch;

use crate::config::{Config, UserConfig};
use crate::vhost::VHost;

pub struct Broker {
    pub config: Config,
    vhosts: DashMap<String, Arc<VHost>>,
    next_connection: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

/// Why a login was refused (each maps to RabbitMQ's 403 text).
#[derive(Debug, PartialEq, Eq)]
pub enum LoginError {
    BadCredentials,
    LoopbackOnly,
}

impl Broker {
    pub fn new(config: Config, shutdown: watch::Receiver<bool>) -> Arc<Self> {
        let vhosts = DashMap::new();
        for name in &config.vhosts {
            vhosts.insert(name.clone(), VHost::new(name));
        }
        Arc::new(Broker {
            config,
            vhosts,
            next_connection: AtomicU64::new(1),
            shutdown,
        })
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
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
        let user = self
            .user(name)
            .filter(|u| u.password == password)
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
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}
