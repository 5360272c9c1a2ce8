//! One user's rights in one vhost: a snapshot a connection keeps (and replaces when the
//! broker's access generation moves), so a check takes no lock.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{Pattern, Permission, TopicPermission};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Perm {
    Configure,
    Write,
    Read,
}

/// A topic permission with `{username}` and `{vhost}` expanded and compiled. A pattern that
/// no longer compiles once expanded denies.
#[derive(Debug)]
struct Topic {
    write: Option<Pattern>,
    read: Option<Pattern>,
}

#[derive(Debug)]
pub struct Grants {
    /// The broker's access generation this was made at.
    pub generation: u64,
    /// None: the user has no permissions on the vhost (it may not open it).
    permission: Option<Arc<Permission>>,
    /// By exchange name.
    topics: BTreeMap<String, Topic>,
}

impl Grants {
    pub fn new(
        generation: u64,
        user: &str,
        vhost: &str,
        permission: Option<Arc<Permission>>,
        topics: Option<&BTreeMap<String, TopicPermission>>,
    ) -> Grants {
        let expand =
            |p: &str| Pattern::new(&p.replace("{username}", user).replace("{vhost}", vhost)).ok();
        let topics = topics
            .into_iter()
            .flatten()
            .map(|(x, t)| {
                (
                    x.clone(),
                    Topic {
                        write: expand(&t.write),
                        read: expand(&t.read),
                    },
                )
            })
            .collect();
        Grants {
            generation,
            permission,
            topics,
        }
    }

    /// Whether the user may open the vhost at all (it has a permission entry there).
    pub fn may_open(&self) -> bool {
        self.permission.is_some()
    }

    /// Whether `perm` on the resource `name` is allowed (the default exchange is named
    /// `amq.default`, as RabbitMQ checks it).
    pub fn allows(&self, perm: Perm, name: &str) -> bool {
        let Some(p) = &self.permission else {
            return false;
        };
        let pattern = match perm {
            Perm::Configure => &p.configure,
            Perm::Write => &p.write,
            Perm::Read => &p.read,
        };
        pattern.matches(resource_name(name))
    }

    /// Whether the user has topic permissions on `exchange` (when not, every key is allowed).
    pub fn has_topic_rules(&self, exchange: &str) -> bool {
        self.topics.contains_key(exchange)
    }

    /// Whether `perm` (write: publish, read: bind) with routing key `key` on the topic
    /// exchange `exchange` is allowed. No rule for the exchange allows everything.
    pub fn topic_allows(&self, perm: Perm, exchange: &str, key: &str) -> bool {
        let Some(t) = self.topics.get(exchange) else {
            return true;
        };
        let pattern = match perm {
            Perm::Write => &t.write,
            Perm::Read => &t.read,
            Perm::Configure => return true,
        };
        pattern.as_ref().is_some_and(|p| p.matches(key))
    }
}

/// The name a permission is matched against: the default exchange is `amq.default`.
pub fn resource_name(name: &str) -> &str {
    if name.is_empty() {
        "amq.default"
    } else {
        name
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn each_permission_is_its_own_regex() {
        let p = Arc::new(Permission::new("^cfg", "^w", "^r").unwrap());
        let g = Grants::new(1, "u", "/", Some(p), None);
        assert!(g.may_open());
        assert!(g.allows(Perm::Configure, "cfg-q"));
        assert!(!g.allows(Perm::Configure, "w-q"));
        assert!(g.allows(Perm::Write, "w-x"));
        assert!(!g.allows(Perm::Read, "w-x"));
        assert!(g.allows(Perm::Read, "r"));
        let none = Grants::new(1, "u", "/", None, None);
        assert!(!none.may_open());
        assert!(!none.allows(Perm::Read, "r"));
    }

    #[test]
    fn the_default_exchange_is_amq_default() {
        let p = Arc::new(Permission::new("", "^amq\\.default$", "").unwrap());
        let g = Grants::new(1, "u", "/", Some(p), None);
        assert!(g.allows(Perm::Write, ""));
        assert!(!g.allows(Perm::Write, "x"));
    }

    #[test]
    fn topic_patterns_expand_username_and_vhost() {
        let mut m = BTreeMap::new();
        m.insert(
            "amq.topic".to_string(),
            TopicPermission::new("amq.topic", "^{username}\\.", "^{vhost}\\.").unwrap(),
        );
        let g = Grants::new(1, "alice", "prod", None, Some(&m));
        assert!(g.topic_allows(Perm::Write, "amq.topic", "alice.x"));
        assert!(!g.topic_allows(Perm::Write, "amq.topic", "bob.x"));
        assert!(g.topic_allows(Perm::Read, "amq.topic", "prod.x"));
        assert!(g.topic_allows(Perm::Write, "other", "anything"));
    }
}
