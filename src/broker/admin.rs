//! Run-time changes to the access model: users, vhosts, permissions, topic permissions and
//! limits, as rabbitmqctl and the management API make them.
//!
//! Each change is made under the access lock, sends its store record while holding it (so
//! records keep the order of the changes), and bumps the access generation (connections'
//! grants go stale). Closing connections, and deleting a vhost's contents, happen after the
//! lock is released. A change is durable after [`Broker::sync_store`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use tracing::info;

use super::Broker;
use crate::access::record::{PermissionRecord, TopicPermissionRecord, UserRecord, VhostRecord};
use crate::access::{
    check_name, Access, AccessError, Limits, Permission, TopicPermission, User, VhostInfo,
    USER_LIMITS, VHOST_LIMITS,
};
use crate::password::PasswordHash;
use crate::store::records::{PERMISSION, TOPIC_PERMISSION, USER};
use crate::vhost::VHost;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminError {
    #[error(transparent)]
    Access(#[from] AccessError),
    /// A policy refused, with RabbitMQ's validation text.
    #[error("Validation failed\n\n{0}\n")]
    Policy(#[from] crate::policy::PolicyError),
}

type AdminResult<T> = Result<T, AdminError>;

/// A user as an administrator changes it: `None` leaves that part as it is.
#[derive(Debug, Default)]
pub struct UserChange {
    pub hash: Option<PasswordHash>,
    pub tags: Option<Vec<String>>,
    pub limits: Option<Limits>,
}

/// A vhost as an administrator describes it: `None` leaves that part as it is.
#[derive(Debug, Default)]
pub struct VhostChange {
    pub description: Option<String>,
    pub tags: Option<Vec<String>>,
    pub default_queue_type: Option<String>,
    pub limits: Option<Limits>,
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Plain strings and maps: serialising cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

impl Broker {
    fn change<R>(&self, f: impl FnOnce(&mut Access) -> AdminResult<R>) -> AdminResult<R> {
        let mut a = self.access.write();
        let r = f(&mut a)?;
        self.access_generation.fetch_add(1, Ordering::AcqRel);
        Ok(r)
    }

    fn write_user(&self, u: &User) {
        self.store
            .put_named(USER, &[&u.name], json(&UserRecord::from_user(u)));
    }

    fn write_vhost(&self, v: &VhostInfo) {
        self.store
            .put_vhost(&v.name, json(&VhostRecord::from_info(v)));
    }

    /// Creates or changes a user; returns whether it was created. A changed password closes
    /// the user's connections.
    pub fn put_user(&self, name: &str, change: UserChange) -> AdminResult<bool> {
        check_name(name)?;
        let (created, rehashed) = self.change(|a| {
            let old = a.users.get(name).cloned();
            let created = old.is_none();
            let rehashed = !created && change.hash.is_some();
            let user = User {
                name: name.to_string(),
                hash: change
                    .hash
                    .or_else(|| old.as_ref().map(|o| o.hash.clone()))
                    // A new user without a password: no PLAIN/AMQPLAIN login.
                    .unwrap_or_else(PasswordHash::none),
                tags: change
                    .tags
                    .or_else(|| old.as_ref().map(|o| o.tags.clone()))
                    .unwrap_or_default(),
                limits: change
                    .limits
                    .or_else(|| old.as_ref().map(|o| o.limits.clone()))
                    .unwrap_or_default(),
            };
            self.write_user(&user);
            a.users.insert(name.to_string(), user.into());
            Ok((created, rehashed))
        })?;
        if rehashed {
            self.sessions.force_close(
                |u, _| u == name,
                &format!("user '{name}' had its password changed"),
            );
        }
        Ok(created)
    }

    pub fn delete_user(&self, name: &str) -> AdminResult<()> {
        self.change(|a| {
            if !a.users.contains_key(name) {
                return Err(AccessError::NoSuchUser(name.to_string()).into());
            }
            let removed = a.remove_user(name);
            self.store.delete_named(USER, &[name]);
            for (v, u) in &removed.permissions {
                self.store.delete_named(PERMISSION, &[v, u]);
            }
            for (v, u, x) in &removed.topics {
                self.store.delete_named(TOPIC_PERMISSION, &[v, u, x]);
            }
            Ok(())
        })?;
        info!(user = %name, "user deleted");
        self.sessions
            .force_close(|u, _| u == name, &format!("user '{name}' is deleted"));
        Ok(())
    }

    /// Creates or describes a vhost; returns whether it was created.
    pub fn put_vhost(&self, name: &str, change: VhostChange) -> AdminResult<bool> {
        check_name(name)?;
        let created = self.change(|a| {
            let old = a.vhosts.get(name).cloned();
            let created = old.is_none();
            let old = old.unwrap_or_else(|| VhostInfo {
                name: name.to_string(),
                ..VhostInfo::default()
            });
            let info = VhostInfo {
                name: name.to_string(),
                description: change.description.unwrap_or(old.description),
                tags: change.tags.unwrap_or(old.tags),
                default_queue_type: change.default_queue_type.or(old.default_queue_type),
                limits: change.limits.unwrap_or(old.limits),
            };
            self.write_vhost(&info);
            a.vhosts.insert(name.to_string(), info);
            Ok(created)
        })?;
        if created {
            let vhost = VHost::new(name, self.store.clone(), self.config.queue_ram_bytes);
            // Writes the built-in exchanges' records: bindings from them are stored by id.
            vhost.restore(Vec::new(), Vec::new(), &[], &mut Default::default());
            self.vhosts.insert(name.to_string(), vhost);
            info!(vhost = %name, "vhost created");
        }
        Ok(created)
    }

    /// Deletes a vhost with everything in it, and closes its connections (320).
    pub fn delete_vhost(&self, name: &str) -> AdminResult<()> {
        self.change(|a| {
            if !a.vhosts.contains_key(name) {
                return Err(AccessError::NoSuchVhost(name.to_string()).into());
            }
            let removed = a.remove_vhost(name);
            for (v, u) in &removed.permissions {
                self.store.delete_named(PERMISSION, &[v, u]);
            }
            for (v, u, x) in &removed.topics {
                self.store.delete_named(TOPIC_PERMISSION, &[v, u, x]);
            }
            Ok(())
        })?;
        self.sessions
            .force_close(|_, v| v == name, &format!("vhost '{name}' is deleted"));
        if let Some((_, vhost)) = self.vhosts.remove(name) {
            vhost.delete_all();
        }
        self.store
            .delete_named(crate::store::records::VHOST, &[name]);
        info!(vhost = %name, "vhost deleted");
        Ok(())
    }

    pub fn set_permissions(
        &self,
        user: &str,
        vhost: &str,
        configure: &str,
        write: &str,
        read: &str,
    ) -> AdminResult<()> {
        let p = Permission::new(configure, write, read).map_err(AccessError::from)?;
        self.change(|a| {
            exists(a, user, vhost)?;
            self.store.put_named(
                PERMISSION,
                &[vhost, user],
                json(&PermissionRecord::from_permission(user, vhost, &p)),
            );
            a.permissions
                .insert((vhost.to_string(), user.to_string()), p.into());
            Ok(())
        })
    }

    pub fn clear_permissions(&self, user: &str, vhost: &str) -> AdminResult<()> {
        self.change(|a| {
            exists(a, user, vhost)?;
            a.permissions.remove(&(vhost.to_string(), user.to_string()));
            self.store.delete_named(PERMISSION, &[vhost, user]);
            Ok(())
        })
    }

    pub fn set_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: &str,
        write: &str,
        read: &str,
    ) -> AdminResult<()> {
        check_name(exchange)?;
        let t = TopicPermission::new(exchange, write, read).map_err(AccessError::from)?;
        self.change(|a| {
            exists(a, user, vhost)?;
            self.store.put_named(
                TOPIC_PERMISSION,
                &[vhost, user, exchange],
                json(&TopicPermissionRecord::from_topic(user, vhost, &t)),
            );
            a.topic_permissions
                .entry((vhost.to_string(), user.to_string()))
                .or_default()
                .insert(exchange.to_string(), t);
            Ok(())
        })
    }

    /// Clears one exchange's topic permission, or (`None`) all of the user's in the vhost.
    pub fn clear_topic_permissions(
        &self,
        user: &str,
        vhost: &str,
        exchange: Option<&str>,
    ) -> AdminResult<()> {
        self.change(|a| {
            exists(a, user, vhost)?;
            let key = (vhost.to_string(), user.to_string());
            let Some(by_exchange) = a.topic_permissions.get_mut(&key) else {
                return Ok(());
            };
            let gone: Vec<String> = match exchange {
                Some(x) => by_exchange
                    .remove(x)
                    .map(|t| t.exchange)
                    .into_iter()
                    .collect(),
                None => std::mem::take(by_exchange).into_keys().collect(),
            };
            for x in &gone {
                self.store.delete_named(TOPIC_PERMISSION, &[vhost, user, x]);
            }
            if by_exchange.is_empty() {
                a.topic_permissions.remove(&key);
            }
            Ok(())
        })
    }

    /// Replaces a vhost's limits (rabbitmqctl set_vhost_limits sets the whole set).
    pub fn set_vhost_limits(&self, vhost: &str, limits: &BTreeMap<String, i64>) -> AdminResult<()> {
        let parsed = parse_limits(VHOST_LIMITS, limits)?;
        self.change(|a| {
            let v = a
                .vhosts
                .get_mut(vhost)
                .ok_or_else(|| AccessError::NoSuchVhost(vhost.to_string()))?;
            v.limits = parsed;
            self.write_vhost(v);
            Ok(())
        })
    }

    /// Replaces a user's limits.
    pub fn set_user_limits(&self, user: &str, limits: &BTreeMap<String, i64>) -> AdminResult<()> {
        let parsed = parse_limits(USER_LIMITS, limits)?;
        self.change(|a| {
            let u = a
                .users
                .get_mut(user)
                .ok_or_else(|| AccessError::NoSuchUser(user.to_string()))?;
            let mut changed = (**u).clone();
            changed.limits = parsed;
            self.write_user(&changed);
            *u = changed.into();
            Ok(())
        })
    }

    /// Waits until every change sent so far is on disk (false: the store failed).
    pub fn sync_store(&self) -> bool {
        self.store.sync()
    }
}

fn exists(a: &Access, user: &str, vhost: &str) -> AdminResult<()> {
    if !a.users.contains_key(user) {
        return Err(AccessError::NoSuchUser(user.to_string()).into());
    }
    if !a.vhosts.contains_key(vhost) {
        return Err(AccessError::NoSuchVhost(vhost.to_string()).into());
    }
    Ok(())
}

fn parse_limits(known: &[&str], given: &BTreeMap<String, i64>) -> AdminResult<Limits> {
    let mut l = Limits::default();
    for (k, v) in given {
        l.set(known, k, *v)?;
    }
    Ok(l)
}
