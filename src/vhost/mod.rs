//! A virtual host owns its exchanges, queues and bindings, and routes messages. Lookups go
//! through sharded maps (no global lock); bindings live in each exchange.
//!
//! Files: this one (the maps, declare and delete, bind and unbind, with RabbitMQ's checks),
//! `route` (routing, alternate exchanges, `CC`/`BCC`), `dead_letter` (dead letters
//! republished), `restore` (rebuilt at start), `reply_to` (direct reply-to targets),
//! `bindings` (bind, unbind, the index by destination), `links` (that index's entries) and
//! `policies` (policies and operator policies, applied as they change).

mod bindings;
mod dead_letter;
mod links;
mod policies;
pub mod reply_to;
mod restore;
pub mod route;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use amq_protocol::types::FieldTable;
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};

use crate::error::{AmqpError, AmqpResult};
use crate::exchange::{DestId, Destination, Exchange, ExchangeConfig, ExchangeKind};
use crate::metrics::Counter;
use crate::policy::{PolicySet, Target};
use crate::queue::arguments::QueueArgs;
use crate::queue::consumer::Consumer;
use crate::queue::dead_letter::DeadLetter;
use crate::queue::ready::Disk;
use crate::queue::{Owner, Queue, QueueConfig};
use crate::store::records::DestKind;
use crate::store::Store;
pub use reply_to::ReplyTarget;
pub use route::RouteScratch;

/// The exchanges every vhost has; they cannot be declared (other than passively) or deleted.
pub(crate) const BUILTIN: &[(&str, ExchangeKind)] = &[
    ("", ExchangeKind::Direct),
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

pub struct VHost {
    pub name: String,
    /// Bumped after every change that can alter a route (bind, unbind, queue created or
    /// deleted, exchange deleted), so connections can reuse a route while it is unchanged.
    generation: AtomicU64,
    exchanges: DashMap<String, Arc<Exchange>>,
    queues: DashMap<String, Arc<Queue>>,
    /// Durable definitions are written here as they change (never read back but at start).
    store: Arc<Store>,
    /// RAM each queue may use for ready messages before it pages to disk.
    queue_ram_budget: usize,
    /// Itself, for the queues it creates (they dead-letter through it).
    me: Weak<VHost>,
    /// Direct reply-to consumers by token.
    pub replies: DashMap<String, ReplyTarget>,
    /// The bindings to each destination (see `bindings`).
    bound_to: DashMap<DestId, links::Links>,
    /// Exclusive queues by owning connection, so a close touches only its own.
    exclusive: DashMap<u64, HashMap<u64, Arc<Queue>>>,
    /// Policies and operator policies (`policies.rs`, with the lock order).
    policies: RwLock<PolicySet>,
    /// Held through one policy change and its application.
    policy_changes: Mutex<()>,
    /// Message counts of the vhost's connections (added once per batch), for the rates.
    pub stats: crate::metrics::message_stats::MessageStats,
}

/// An exchange declaration as exchange.declare carries it.
pub struct ExchangeSpec<'a> {
    pub name: &'a str,
    /// The type's name, checked here.
    pub kind: &'a str,
    pub passive: bool,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// A queue declaration as queue.declare carries it.
pub struct QueueSpec {
    pub name: String,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// What a deleted queue leaves to do: the ready count, and consumers to notify.
pub struct DeletedQueue {
    pub messages: u32,
    pub consumers: Vec<Arc<Consumer>>,
}

impl VHost {
    pub fn new(name: &str, store: Arc<Store>, queue_ram_budget: usize) -> Arc<Self> {
        Arc::new_cyclic(|me| Self::build(name, store, queue_ram_budget, me.clone()))
    }

    fn build(name: &str, store: Arc<Store>, queue_ram_budget: usize, me: Weak<VHost>) -> Self {
        let v = VHost {
            name: name.to_string(),
            generation: AtomicU64::new(0),
            exchanges: DashMap::new(),
            queues: DashMap::new(),
            store,
            queue_ram_budget,
            me,
            replies: DashMap::new(),
            bound_to: DashMap::new(),
            exclusive: DashMap::new(),
            policies: RwLock::new(PolicySet::default()),
            policy_changes: Mutex::new(()),
            stats: Default::default(),
        };
        for (n, kind) in BUILTIN {
            let ex = Exchange::new(ExchangeConfig::durable(v.store.new_id(), n, *kind));
            v.exchanges.insert(n.to_string(), ex);
        }
        v
    }

    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges.get(name).map(|e| e.clone())
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.get(name).map(|q| q.clone())
    }

    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges.iter().map(|e| e.clone()).collect()
    }

    /// Whether `name` is one every vhost has (`""` and `amq.*`, not exported).
    pub fn is_builtin_exchange(name: &str) -> bool {
        BUILTIN.iter().any(|(n, _)| *n == name)
    }

    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.iter().map(|q| q.clone()).collect()
    }

    pub fn exchange_or_404(&self, name: &str) -> AmqpResult<Arc<Exchange>> {
        self.exchange(name).ok_or_else(|| {
            AmqpError::not_found(format!("no exchange '{name}' in vhost '{}'", self.name))
        })
    }

    pub fn queue_or_404(&self, name: &str) -> AmqpResult<Arc<Queue>> {
        self.queue(name).ok_or_else(|| {
            AmqpError::not_found(format!("no queue '{name}' in vhost '{}'", self.name))
        })
    }

    pub fn declare_exchange(&self, spec: ExchangeSpec<'_>) -> AmqpResult<Arc<Exchange>> {
        let ExchangeSpec {
            name,
            kind,
            passive,
            durable,
            auto_delete,
            internal,
            arguments,
        } = spec;
        // RabbitMQ's order: the default exchange (even passively), the type, then an existing
        // exchange (amq.* included) need only be equivalent; the prefix bars creating one.
        if name.is_empty() {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        if passive {
            return self.exchange_or_404(name);
        }
        let kind = ExchangeKind::parse(kind).ok_or_else(|| {
            // RabbitMQ 3.10 closes the connection (503); newer versions the channel (406).
            AmqpError::precondition_failed(format!("invalid exchange type '{kind}'"))
        })?;
        if name.starts_with("amq.") && self.exchange(name).is_none() {
            return Err(AmqpError::access_refused(format!(
                "exchange name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        let entry = self.exchanges.entry(name.to_string()).or_insert_with(|| {
            let id = self.store.new_id();
            if durable {
                // Written before the exchange is visible, so it precedes its bindings.
                self.store.put_exchange(
                    id,
                    &self.name,
                    name,
                    kind.as_str(),
                    auto_delete,
                    internal,
                    &arguments,
                );
            }
            let ex = Exchange::new(ExchangeConfig {
                id,
                name: name.to_string(),
                kind,
                durable,
                auto_delete,
                internal,
                arguments: arguments.clone(),
            });
            ex.apply_policy(self.applied(Target::Exchange, name));
            ex
        });
        drop(entry);
        // A new exchange can be another's alternate: cached routes must be recomputed.
        self.topology_changed();
        let entry = self.exchange_or_404(name)?;
        entry
            .equivalent(kind, durable, auto_delete, internal, &arguments)
            .map_err(|t| AmqpError::precondition_failed(format!("{t} in vhost '{}'", self.name)))?;
        Ok(entry.clone())
    }

    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> AmqpResult<()> {
        if name.is_empty() {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        if name.starts_with("amq.") {
            return Err(AmqpError::access_refused(format!(
                "deletion of system exchange '{name}' in vhost '{}' not allowed",
                self.name
            )));
        }
        let Some(ex) = self.exchange(name) else {
            return Ok(()); // idempotent, as RabbitMQ
        };
        if if_unused && ex.has_bindings() {
            return Err(AmqpError::precondition_failed(format!(
                "exchange '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        self.remove_exchange(&ex);
        Ok(())
    }

    pub(crate) fn remove_exchange(&self, ex: &Arc<Exchange>) {
        if self
            .exchanges
            .remove_if(&ex.name, |_, e| Arc::ptr_eq(e, ex))
            .is_none()
        {
            return;
        }
        // Marked deleted before its bindings go, so no bind can slip in after.
        let mut gone = Vec::new();
        ex.unbind_all(|b| {
            if let Some((kind, dest)) = durable_end(ex, &b.destination) {
                self.store
                    .delete_binding(kind, dest, ex.id, &b.routing_key, &b.arguments);
            }
            gone.push(b.id());
        });
        self.forget_bindings_from(ex, &gone);
        if ex.durable {
            self.store.delete_exchange(ex.id);
        }
        // Bindings into this exchange (exchange-to-exchange) go with it.
        self.unbind_all_to(DestId::Exchange(ex.id));
        self.topology_changed();
    }

    pub(crate) fn maybe_auto_delete(&self, ex: &Arc<Exchange>) {
        if ex.auto_delete && !ex.has_bindings() {
            self.remove_exchange(ex);
        }
    }

    /// queue.declare. Exclusivity is checked before anything else (RabbitMQ's errata).
    pub fn declare_queue(
        &self,
        spec: QueueSpec,
        passive: bool,
        connection: u64,
    ) -> AmqpResult<(Arc<Queue>, bool)> {
        if let Some(q) = self.queue(&spec.name) {
            q.check_exclusive(connection)?;
            q.touch();
            if !passive {
                q.check_exclusive_strict(spec.exclusive, connection)?;
                q.equivalent(
                    spec.durable,
                    spec.exclusive,
                    spec.auto_delete,
                    &spec.arguments,
                )
                .map_err(|e| {
                    AmqpError::precondition_failed(format!("{e} in vhost '{}'", self.name))
                })?;
            }
            return Ok((q, false));
        }
        if passive {
            return Err(AmqpError::not_found(format!(
                "no queue '{}' in vhost '{}'",
                spec.name, self.name
            )));
        }
        let args = QueueArgs::parse(&spec.arguments).map_err(|e| {
            AmqpError::precondition_failed(format!("{e} '{}' in vhost '{}'", spec.name, self.name))
        })?;
        let mut created = false;
        let q = self
            .queues
            .entry(spec.name.clone())
            .or_insert_with(|| {
                created = true;
                // An exclusive queue is transient whatever it says (RabbitMQ).
                let durable = spec.durable && !spec.exclusive;
                let qid = self.store.new_id();
                if durable {
                    // Written before the queue is visible, so it precedes its messages and
                    // bindings; keyed by this incarnation's id, so a delete of an earlier
                    // queue of the same name that reaches the store later cannot touch it.
                    self.store.put_queue(
                        qid,
                        &self.name,
                        &spec.name,
                        spec.auto_delete,
                        &spec.arguments,
                    );
                }
                let q = Queue::new(QueueConfig {
                    name: spec.name.clone(),
                    durable,
                    exclusive_owner: spec.exclusive.then_some(connection),
                    auto_delete: spec.auto_delete,
                    arguments: spec.arguments.clone(),
                    args: args.clone(),
                    owner: self.owner(),
                    disk: self.disk(qid),
                    ram_budget: self.queue_ram_budget,
                });
                // Inside the shard's lock: see `policies.rs` on why a change cannot miss it.
                q.apply_policy(self.applied(Target::Queue, &spec.name));
                q
            })
            .clone();
        if created {
            if let Some(owner) = q.exclusive_owner {
                self.exclusive
                    .entry(owner)
                    .or_default()
                    .insert(q.qid, q.clone());
            }
            self.topology_changed(); // the default exchange now reaches it
        } else {
            // Lost a race with another declare: apply the same checks.
            q.check_exclusive(connection)?;
        }
        Ok((q, created))
    }

    /// Deletes a queue (all checks done by the caller); returns what it held.
    pub fn delete_queue(&self, q: &Arc<Queue>) -> Option<DeletedQueue> {
        self.queues.remove_if(&q.name, |_, x| Arc::ptr_eq(x, q))?;
        crate::metrics::count(Counter::QueuesDeleted, 1);
        // Marked deleted (under its lock) before its records go, so nothing is written for
        // it after them: no publish enqueues, no bind binds.
        let (messages, consumers) = q.delete_contents();
        self.store.delete_queue(q.qid, q.durable);
        // Only its own bindings are visited (the index by destination), whatever the count of
        // queues and bindings in the vhost.
        self.unbind_all_to(DestId::Queue(q.qid));
        if let Some(owner) = q.exclusive_owner {
            if let Some(mut owned) = self.exclusive.get_mut(&owner) {
                owned.remove(&q.qid);
            }
            self.exclusive
                .remove_if(&owner, |_, owned| owned.is_empty());
        }
        self.topology_changed();
        Some(DeletedQueue {
            messages,
            consumers,
        })
    }

    fn disk(&self, qid: u64) -> Disk {
        Disk {
            store: self.store.clone(),
            qid,
        }
    }

    /// What the queues it creates hold on to (weak: the vhost owns its queues).
    fn owner(&self) -> Weak<dyn Owner> {
        self.me.clone()
    }

    /// Marks routes computed before now as stale.
    pub(crate) fn topology_changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Deletes every queue and exchange (the vhost itself is being deleted); their
    /// consumers are told, as for a deleted queue.
    pub fn delete_all(&self) {
        self.delete_policy_records();
        for q in self.queues() {
            if let Some(d) = self.delete_queue(&q) {
                for c in d.consumers {
                    c.outbox.cancelled(c.channel, &c.tag);
                }
            }
        }
        let exchanges: Vec<Arc<Exchange>> = self.exchanges.iter().map(|e| e.clone()).collect();
        for ex in exchanges {
            self.remove_exchange(&ex);
        }
    }

    /// Exchanges, the built-in ones included (the management overview's total).
    pub fn exchange_count(&self) -> usize {
        self.exchanges.len()
    }

    /// The number of queues (a vhost's `max-queues` limit counts them).
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Deletes the exclusive queues of a closed connection.
    pub fn drop_exclusive_queues(&self, connection: u64) -> Vec<DeletedQueue> {
        let Some((_, owned)) = self.exclusive.remove(&connection) else {
            return Vec::new();
        };
        owned
            .values()
            .filter_map(|q| self.delete_queue(q))
            .collect()
    }
}

impl Owner for VHost {
    fn dead_letter(&self, dead: Vec<DeadLetter>) {
        VHost::dead_letter(self, dead);
    }

    fn expire(&self, q: &Arc<Queue>) {
        if let Some(d) = self.delete_queue(q) {
            for c in d.consumers {
                c.outbox.cancelled(c.channel, &c.tag);
            }
        }
    }
}

/// The destination's kind and id if a binding from `ex` to it is durable (both ends are).
pub(crate) fn durable_end(ex: &Exchange, dest: &Destination) -> Option<(DestKind, u64)> {
    if !ex.durable {
        return None;
    }
    match dest {
        Destination::Queue(q) if q.durable => Some((DestKind::Queue, q.qid)),
        Destination::Exchange(e) if e.durable => Some((DestKind::Exchange, e.id)),
        _ => None,
    }
}
