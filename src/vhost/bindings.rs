//! Bindings between a vhost's exchanges and their destinations.
//!
//! An exchange indexes its bindings by source (to route); the vhost also indexes them by
//! destination (`bound_to`), so deleting a queue or exchange visits only its own bindings,
//! not every exchange in the vhost. Lock order: a destination's `bound_to` entry, then the
//! exchange's bindings lock. Bind and unbind take both in that order, so the two indexes
//! agree whenever neither lock is held; deleting an exchange takes only the second, then
//! the first, one after the other (it was marked deleted first, so no bind can follow).

use std::sync::Arc;

use amq_protocol::types::FieldTable;

use super::{durable_end, VHost};
use crate::error::{AmqpError, AmqpResult};
use crate::exchange::{Binding, BindingId, DestId, Destination, Exchange, ExchangeKind};

/// Bindings past which deleting their destination leaves the runtime worker to its other
/// tasks (about 5 ms of work).
const LONG_UNBIND: usize = 10_000;

impl VHost {
    pub fn bind(
        &self,
        source: &str,
        dest: Destination,
        key: &str,
        arguments: FieldTable,
    ) -> AmqpResult<()> {
        let ex = self.source_exchange(source)?;
        if ex.kind == ExchangeKind::Headers {
            crate::exchange::headers::validate_binding(&arguments)
                .map_err(|e| AmqpError::precondition_failed(e.to_string()))?;
        }
        let stored = durable_end(&ex, &dest);
        let binding = Binding {
            destination: dest,
            routing_key: key.to_string(),
            arguments,
        };
        if self.link(&ex, binding, |b| {
            if let Some((kind, dest)) = stored {
                self.store
                    .put_binding(kind, dest, ex.id, &b.routing_key, &b.arguments);
            }
        }) {
            self.topology_changed();
        }
        Ok(())
    }

    pub fn unbind(
        &self,
        source: &str,
        dest: Destination,
        key: &str,
        arguments: FieldTable,
    ) -> AmqpResult<()> {
        if source.is_empty() {
            return Err(default_exchange());
        }
        // A missing source (or destination, see the callers) makes unbind a no-op, as RabbitMQ.
        let Some(ex) = self.exchange(source) else {
            return Ok(());
        };
        let stored = durable_end(&ex, &dest);
        let id = Binding {
            destination: dest,
            routing_key: key.to_string(),
            arguments,
        }
        .id();
        let removed = match self.bound_to.get_mut(&id.dest) {
            Some(mut links) => {
                let removed = ex.unbind(&id, |b| {
                    if let Some((kind, dest)) = stored {
                        self.store
                            .delete_binding(kind, dest, ex.id, &b.routing_key, &b.arguments);
                    }
                });
                if removed {
                    links.remove(&(ex.id, id.clone()));
                }
                removed
            }
            None => false,
        };
        if removed {
            self.bound_to
                .remove_if(&id.dest, |_, links| links.is_empty());
            self.topology_changed();
            self.maybe_auto_delete(&ex);
        }
        Ok(())
    }

    /// The bindings that lead to `dest`, with their source exchanges (for listing): read from
    /// the index by destination, so only its own bindings are visited.
    pub fn bindings_to(&self, dest: DestId) -> Vec<(Arc<Exchange>, Binding)> {
        let links = match self.bound_to.get(&dest) {
            Some(l) => l.to_vec(),
            None => return Vec::new(),
        };
        // The entry is released before the exchanges' locks are taken.
        links
            .into_iter()
            .filter_map(|((_, id), ex)| ex.binding(&id).map(|b| (ex, b)))
            .collect()
    }

    /// Adds a binding to both indexes; false if it was there already or an end is deleted.
    /// `record` runs under the exchange's lock when it was added (see [`Exchange::bind`]).
    pub(super) fn link(
        &self,
        ex: &Arc<Exchange>,
        binding: Binding,
        record: impl FnOnce(&Binding),
    ) -> bool {
        let id = binding.id();
        let dest = id.dest;
        let added = {
            let mut links = self.bound_to.entry(dest).or_default();
            // The destination's deletion takes its entry after marking it deleted; checked
            // under the entry, a bind either lands before that sweep or not at all.
            let added = !binding.destination.is_deleted() && ex.bind(binding, record);
            if added {
                links.insert((ex.id, id), ex.clone());
            }
            added
        };
        if !added {
            self.bound_to.remove_if(&dest, |_, links| links.is_empty());
        }
        added
    }

    /// A destination is being deleted (and is marked so): every binding to it goes, and
    /// auto-delete exchanges left without bindings go too. The store drops its records of
    /// these bindings with the destination's.
    pub(super) fn unbind_all_to(&self, dest: DestId) {
        let Some((_, links)) = self.bound_to.remove(&dest) else {
            return;
        };
        let links = links.into_vec();
        let long = links.len() > LONG_UNBIND;
        let unbind = || {
            for ((_, id), ex) in links {
                if ex.unbind(&id, |_| {}) {
                    self.maybe_auto_delete(&ex);
                }
            }
        };
        // A million bindings take seconds: a publisher on this worker must not wait them out
        // (measured: a confirm held 1.9 s while a queue with 1M bindings was deleted).
        if long {
            crate::offload::off_worker(unbind)
        } else {
            unbind()
        }
    }

    /// `ex` was deleted and its bindings (`gone`) went with it: drop them from the index by
    /// destination.
    pub(super) fn forget_bindings_from(&self, ex: &Arc<Exchange>, gone: &[BindingId]) {
        for id in gone {
            if let Some(mut links) = self.bound_to.get_mut(&id.dest) {
                links.remove(&(ex.id, id.clone()));
            }
            self.bound_to
                .remove_if(&id.dest, |_, links| links.is_empty());
        }
    }

    fn source_exchange(&self, source: &str) -> AmqpResult<Arc<Exchange>> {
        if source.is_empty() {
            return Err(default_exchange());
        }
        self.exchange_or_404(source)
    }
}

fn default_exchange() -> AmqpError {
    AmqpError::access_refused("operation not permitted on the default exchange")
}
