//! Who may do what: users (password hash, tags, limits), vhosts' descriptions and limits,
//! permissions per (user, vhost) and topic permissions per (user, vhost, exchange), as
//! RabbitMQ models them. Plain data, no broker state: the broker keeps one [`Access`] behind
//! a lock, writes each change to the store (the records' shapes are in `record`), and hands
//! connections a [`Grants`] snapshot, which they keep until the access generation moves.
//!
//! Files: this one (the model), `pattern` (a permission's regex), `record` (the JSON kept in
//! the store and read from definitions files), `grants` (one user's rights in one vhost).

pub mod grants;
pub mod pattern;
pub mod record;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use grants::{Grants, Perm};
pub use pattern::{BadPattern, Pattern};

use crate::password::PasswordHash;

/// The tags RabbitMQ gives meaning to (others are kept and shown, and mean nothing).
pub const ADMINISTRATOR: &str = "administrator";
pub const MONITORING: &str = "monitoring";
pub const POLICYMAKER: &str = "policymaker";
pub const MANAGEMENT: &str = "management";

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum AccessError {
    #[error("no user '{0}'")]
    NoSuchUser(String),
    #[error("no vhost '{0}'")]
    NoSuchVhost(String),
    #[error(transparent)]
    BadPattern(#[from] BadPattern),
    #[error("unknown limit {0:?}")]
    UnknownLimit(String),
    #[error("name is {0} bytes; 255 at most")]
    NameTooLong(usize),
}

/// Names are AMQP short strings (and the store's keys hold 255 bytes).
pub fn check_name(name: &str) -> Result<(), AccessError> {
    if name.len() > 255 {
        return Err(AccessError::NameTooLong(name.len()));
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub hash: PasswordHash,
    pub tags: Vec<String>,
    pub limits: Limits,
}

impl User {
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VhostInfo {
    pub name: String,
    pub description: String,
    pub tags: Vec<String>,
    pub default_queue_type: Option<String>,
    pub limits: Limits,
}

/// Limits by RabbitMQ's names (`max-connections`, `max-queues`, `max-channels`); a negative
/// value is no limit, as in RabbitMQ.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits(pub BTreeMap<String, i64>);

pub const VHOST_LIMITS: &[&str] = &["max-connections", "max-queues"];
pub const USER_LIMITS: &[&str] = &["max-connections", "max-channels"];

impl Limits {
    /// The limit `name` if it is set and not negative.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.get(name).and_then(|&v| u64::try_from(v).ok())
    }

    /// Sets limits from `known` only.
    pub fn set(&mut self, known: &[&str], name: &str, value: i64) -> Result<(), AccessError> {
        if !known.contains(&name) {
            return Err(AccessError::UnknownLimit(name.to_string()));
        }
        self.0.insert(name.to_string(), value);
        Ok(())
    }
}

/// configure, write and read, each a regex on resource names.
#[derive(Debug, Clone, PartialEq)]
pub struct Permission {
    pub configure: Pattern,
    pub write: Pattern,
    pub read: Pattern,
}

impl Permission {
    pub fn new(configure: &str, write: &str, read: &str) -> Result<Permission, BadPattern> {
        Ok(Permission {
            configure: Pattern::new(configure)?,
            write: Pattern::new(write)?,
            read: Pattern::new(read)?,
        })
    }
}

/// Write and read regexes on routing keys, for one topic exchange. `{username}` and
/// `{vhost}` in a pattern stand for the user's and vhost's names (expanded in [`Grants`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TopicPermission {
    pub exchange: String,
    pub write: String,
    pub read: String,
}

impl TopicPermission {
    /// Checks that both patterns compile once expanded (names do not change syntax much,
    /// but a name with a `(` can: those are refused when the grants are made).
    pub fn new(exchange: &str, write: &str, read: &str) -> Result<TopicPermission, BadPattern> {
        // Checked as they will be matched: with the variables expanded (a bare `{` is a
        // syntax error to the regex crate, a literal to PCRE).
        let expanded = |p: &str| p.replace("{username}", "u").replace("{vhost}", "v");
        Pattern::new(&expanded(write))?;
        Pattern::new(&expanded(read))?;
        Ok(TopicPermission {
            exchange: exchange.to_string(),
            write: write.to_string(),
            read: read.to_string(),
        })
    }
}

/// The whole model. Changed only by the broker, under its lock, which also writes each
/// change to the store.
#[derive(Debug, Default)]
pub struct Access {
    pub users: BTreeMap<String, Arc<User>>,
    pub vhosts: BTreeMap<String, VhostInfo>,
    /// By (vhost, user).
    pub permissions: BTreeMap<(String, String), Arc<Permission>>,
    /// By (vhost, user), then exchange.
    pub topic_permissions: BTreeMap<(String, String), BTreeMap<String, TopicPermission>>,
}

impl Access {
    pub fn user(&self, name: &str) -> Option<&Arc<User>> {
        self.users.get(name)
    }

    /// Removes a user and every permission it had; returns the (vhost, user[, exchange])
    /// keys removed so the caller can delete their records.
    pub fn remove_user(&mut self, name: &str) -> Removed {
        self.users.remove(name);
        self.remove_where(|_, u| u == name)
    }

    pub fn remove_vhost(&mut self, name: &str) -> Removed {
        self.vhosts.remove(name);
        self.remove_where(|v, _| v == name)
    }

    fn remove_where(&mut self, gone: impl Fn(&str, &str) -> bool) -> Removed {
        let mut removed = Removed::default();
        self.permissions.retain(|(v, u), _| {
            let keep = !gone(v, u);
            if !keep {
                removed.permissions.push((v.clone(), u.clone()));
            }
            keep
        });
        self.topic_permissions.retain(|(v, u), by_exchange| {
            let keep = !gone(v, u);
            if !keep {
                for x in by_exchange.keys() {
                    removed.topics.push((v.clone(), u.clone(), x.clone()));
                }
            }
            keep
        });
        removed
    }

    /// One user's rights in one vhost, as of `generation`.
    pub fn grants(&self, user: &str, vhost: &str, generation: u64) -> Grants {
        let key = (vhost.to_string(), user.to_string());
        Grants::new(
            generation,
            user,
            vhost,
            self.permissions.get(&key).cloned(),
            self.topic_permissions.get(&key),
        )
    }

    /// Every (vhost, user) pair's permission, in that order.
    pub fn permission_list(&self) -> impl Iterator<Item = (&str, &str, &Permission)> {
        self.permissions
            .iter()
            .map(|((v, u), p)| (v.as_str(), u.as_str(), &**p))
    }

    pub fn topic_list(&self) -> impl Iterator<Item = (&str, &str, &TopicPermission)> {
        self.topic_permissions
            .iter()
            .flat_map(|((v, u), m)| m.values().map(move |t| (v.as_str(), u.as_str(), t)))
    }
}

/// What removing a user or a vhost took with it.
#[derive(Debug, Default)]
pub struct Removed {
    pub permissions: Vec<(String, String)>,
    pub topics: Vec<(String, String, String)>,
}
