//! Policies and operator policies as rabbitmqctl, the management API and definitions set
//! them: checked (`policy`), then kept, stored and applied by their vhost
//! (`vhost/policies.rs`). A change is durable after [`Broker::sync_store`].

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use tracing::{info, warn};

use super::{AdminError, Broker};
use crate::access::AccessError;
use crate::policy::{Kind, Policy, PolicyRecord};
use crate::store::records::{OPERATOR_POLICY, POLICY};
use crate::vhost::VHost;

impl Broker {
    fn vhost_or_err(&self, name: &str) -> Result<Arc<VHost>, AdminError> {
        self.vhost(name)
            .ok_or_else(|| AccessError::NoSuchVhost(name.to_string()).into())
    }

    /// Adds or replaces a policy (its vhost is `record.vhost`) and applies it to the
    /// vhost's queues and exchanges at once; returns whether it is new.
    pub fn put_policy(&self, kind: Kind, record: PolicyRecord) -> Result<bool, AdminError> {
        let vhost = self.vhost_or_err(&record.vhost)?;
        let p = Policy::new(kind, record)?;
        let (v, n) = (p.record.vhost.clone(), p.record.name.clone());
        let created = vhost.put_policy(p);
        info!(vhost = %v, name = %n, ?kind, "policy set");
        Ok(created)
    }

    /// Removes a policy; `Ok(false)`: there was none of that name.
    pub fn delete_policy(&self, kind: Kind, vhost: &str, name: &str) -> Result<bool, AdminError> {
        let removed = self.vhost_or_err(vhost)?.delete_policy(kind, name);
        if removed {
            info!(vhost = %vhost, name = %name, ?kind, "policy cleared");
        }
        Ok(removed)
    }

    /// Every policy of `kind`, by vhost then priority (the definitions export and
    /// `/api/policies`).
    pub fn policies(&self, kind: Kind) -> Vec<PolicyRecord> {
        let mut vhosts = self.vhosts();
        vhosts.sort_by(|a, b| a.name.cmp(&b.name));
        vhosts
            .iter()
            .flat_map(|v| {
                let set = v.policies();
                set.list(kind)
                    .iter()
                    .map(|p| p.record.clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// Puts the stored policies back into their vhosts and applies them (at start, after the
/// queues and exchanges are restored). A record that does not decode is logged and skipped.
pub(super) fn restore(vhosts: &DashMap<String, Arc<VHost>>, records: &[(u8, Vec<u8>)]) {
    let mut touched: HashMap<String, Arc<VHost>> = HashMap::new();
    for (kind, v) in records {
        let kind = match *kind {
            POLICY => Kind::Policy,
            OPERATOR_POLICY => Kind::Operator,
            _ => continue,
        };
        let decoded = serde_json::from_slice::<PolicyRecord>(v)
            .map_err(|e| e.to_string())
            .and_then(|r| Policy::new(kind, r).map_err(|e| e.to_string()));
        let p = match decoded {
            Ok(p) => p,
            Err(e) => {
                warn!("stored policy unreadable, skipped: {e}");
                continue;
            }
        };
        let Some(vhost) = vhosts.get(&p.record.vhost).map(|v| v.clone()) else {
            warn!(vhost = %p.record.vhost, "stored policy of a vhost that has no record: skipped");
            continue;
        };
        vhost.restore_policy(p);
        touched.insert(vhost.name.clone(), vhost);
    }
    for v in touched.values() {
        v.reapply_policies();
    }
}
