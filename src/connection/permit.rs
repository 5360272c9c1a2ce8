//! Permission checks where RabbitMQ makes them (its access-control table): the user's
//! [`Grants`] for the connection's vhost, replaced when the broker's access generation has
//! moved, and each decision cached by (permission, name) until then. A refusal is
//! channel.close 403 ACCESS_REFUSED with RabbitMQ's text; checks come before existence
//! checks (403 before 404).
//!
//! The publish path does not come here for a cached exchange: its channel's exchange cache
//! remembers the generation its write permission was checked at (`publish.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use super::Connection;
use crate::access::grants::resource_name;
use crate::access::{Grants, Perm};
use crate::error::{AmqpError, AmqpResult};

/// Decisions kept per connection before the cache starts over (names are peer-chosen).
const MAX_DECISIONS: usize = 256;

/// What a resource is, for the refusal's text.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Queue,
    Exchange,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Queue => "queue",
            Kind::Exchange => "exchange",
        }
    }
}

pub(super) struct Permits {
    pub grants: Arc<Grants>,
    decisions: HashMap<(Perm, String), bool>,
}

impl Permits {
    /// No rights at all (before connection.open).
    pub fn none() -> Permits {
        Permits {
            grants: Arc::new(Grants::new(0, "", "", None, None)),
            decisions: HashMap::new(),
        }
    }

    pub fn new(grants: Arc<Grants>) -> Permits {
        Permits {
            grants,
            decisions: HashMap::new(),
        }
    }
}

impl Connection {
    /// The grants, renewed first if the broker's access model changed since they were made.
    pub(super) fn fresh_grants(&mut self) -> &Grants {
        let now = self.broker.access_generation();
        if self.permits.grants.generation != now {
            if let Some(v) = &self.vhost {
                self.permits = Permits::new(self.broker.grants(&self.user, &v.name));
            }
        }
        &self.permits.grants
    }

    /// 403 unless the user has `perm` on the `kind` named `name`.
    pub(super) fn permit(&mut self, perm: Perm, kind: Kind, name: &str) -> AmqpResult<()> {
        self.fresh_grants();
        let key = (perm, name.to_string());
        let allowed = match self.permits.decisions.get(&key) {
            Some(&d) => d,
            None => {
                let d = self.permits.grants.allows(perm, name);
                if self.permits.decisions.len() >= MAX_DECISIONS {
                    self.permits.decisions.clear();
                }
                self.permits.decisions.insert(key, d);
                d
            }
        };
        if allowed {
            return Ok(());
        }
        Err(AmqpError::access_refused(format!(
            "access to {} '{}' in vhost '{}' refused for user '{}'",
            kind.name(),
            resource_name(name),
            self.vhost_name(),
            self.user
        )))
    }

    /// 403 unless the user's topic permissions on `exchange` (a topic exchange) allow
    /// `perm` (write: publish, read: bind) with routing key `key`.
    pub(super) fn permit_topic(&mut self, perm: Perm, exchange: &str, key: &str) -> AmqpResult<()> {
        if self.fresh_grants().topic_allows(perm, exchange, key) {
            return Ok(());
        }
        Err(AmqpError::access_refused(format!(
            "access to topic '{key}' in exchange '{exchange}' in vhost '{}' refused for user '{}'",
            self.vhost_name(),
            self.user
        )))
    }

    fn vhost_name(&self) -> &str {
        self.vhost.as_ref().map_or("", |v| v.name.as_str())
    }
}
