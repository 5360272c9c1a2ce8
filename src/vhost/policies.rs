//! A vhost's policies and operator policies: kept, written to the store, and applied to its
//! queues and exchanges at once when they change (and to each new one as it is declared).
//!
//! Lock order: `policy_changes` (one change at a time, so the last change is the one
//! applied), then `policies` (held only to read or replace the set, never while touching a
//! queue), then a `queues`/`exchanges` shard, then a queue's state. A declare reads the set
//! inside its shard lock, and a change iterates the shards after replacing the set, so a
//! queue declared during a change ends up with the new policies either way.

use std::sync::Arc;

use crate::policy::{Applied, Kind, Policy, PolicySet, Target};
use crate::store::records;

use super::VHost;

fn record_kind(kind: Kind) -> u8 {
    match kind {
        Kind::Policy => records::POLICY,
        Kind::Operator => records::OPERATOR_POLICY,
    }
}

impl VHost {
    /// Adds or replaces a policy (written to the store under the set's lock, so records keep
    /// the order of changes) and applies it; returns whether it is new.
    pub fn put_policy(&self, p: Policy) -> bool {
        let _one = self.policy_changes.lock();
        let created = {
            let mut set = self.policies.write();
            let value = serde_json::to_vec(&p.record).unwrap_or_default();
            self.store
                .put_named(record_kind(p.kind), &[&self.name, p.name()], value);
            set.list_mut(p.kind).put(p)
        };
        self.reapply_policies();
        created
    }

    /// Removes a policy and un-applies it; returns whether it was there.
    pub fn delete_policy(&self, kind: Kind, name: &str) -> bool {
        let _one = self.policy_changes.lock();
        let removed = {
            let mut set = self.policies.write();
            let removed = set.list_mut(kind).remove(name);
            if removed {
                self.store
                    .delete_named(record_kind(kind), &[&self.name, name]);
            }
            removed
        };
        if removed {
            self.reapply_policies();
        }
        removed
    }

    /// Policies read back from the store at start (not written again); applied by the next
    /// [`VHost::reapply_policies`].
    pub fn restore_policy(&self, p: Policy) {
        self.policies.write().list_mut(p.kind).put(p);
    }

    /// Deletes every policy record (the vhost is being deleted).
    pub(super) fn delete_policy_records(&self) {
        let set = self.policies.read();
        for kind in [Kind::Policy, Kind::Operator] {
            for p in set.list(kind).iter() {
                self.store
                    .delete_named(record_kind(kind), &[&self.name, p.name()]);
            }
        }
    }

    /// The vhost's policies as they are now.
    pub fn policies(&self) -> PolicySet {
        self.policies.read().clone()
    }

    /// What applies to a queue or exchange named `name` (read at declare).
    pub(super) fn applied(&self, target: Target, name: &str) -> Arc<Applied> {
        self.policies.read().applied(target, name)
    }

    /// Applies the current policies to every queue and exchange.
    pub fn reapply_policies(&self) {
        let set = self.policies();
        for q in self.queues() {
            q.apply_policy(set.applied(Target::Queue, &q.name));
        }
        let exchanges: Vec<_> = self.exchanges.iter().map(|e| e.clone()).collect();
        let mut changed = false;
        for ex in exchanges {
            changed |= ex.apply_policy(set.applied(Target::Exchange, &ex.name));
        }
        if changed {
            // Cached routes may hold the old alternate exchange.
            self.topology_changed();
        }
    }
}
