//! A virtual host owns its exchanges, queues and bindings, and routes messages.
//! Lookups go through sharded maps (no global lock); bindings live in each exchange.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use amq_protocol::types::FieldTable;
use dashmap::DashMap;
use tracing::warn;

use crate::error::{AmqpError, AmqpResult};
use crate::exchange::{Binding, Destination, Exchange, ExchangeKind, RouteInput};
use crate::message::Message;
use crate::queue::arguments::QueueArgs;
use crate::queue::consumer::Consumer;
use crate::queue::dead_letter::{self, DeadLetter};
use crate::queue::ready::Disk;
use crate::queue::Queue;
use crate::store::records::{BindingDef, DestKind, ExchangeDef};
use crate::store::recovery::RecoveredQueue;
use crate::store::Store;

/// The exchanges every vhost has; they cannot be declared (other than passively) or deleted.
const BUILTIN: &[(&str, ExchangeKind)] = &[
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
    pub replies: DashMap<String, crate::connection::ReplyTarget>,
}

/// Dead letters waiting to be republished, each with the vhost it dies in.
type DeadLetterQueue = VecDeque<(Arc<VHost>, DeadLetter)>;

thread_local! {
    /// Dead letters waiting on this thread: republishing one can make its target queues
    /// dead-letter more (a length limit); those wait here instead of recursing.
    static DEAD_LETTERS: RefCell<Option<DeadLetterQueue>> = const { RefCell::new(None) };
}

/// Buffers for [`VHost::route`], kept by each connection, and the last route computed: a
/// run of publishes to the same exchange and key (the common case) routes without a lock or
/// a hash while the vhost's generation is unchanged.
#[derive(Default)]
pub struct RouteScratch {
    /// The result: each queue the message reaches, once. Callers read it, never change it.
    pub queues: Vec<Arc<Queue>>,
    exchanges: Vec<Arc<Exchange>>,
    /// What `queues` answers: exchange, routing key, vhost generation.
    key: Option<(Arc<Exchange>, String, u64)>,
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
        };
        for (n, kind) in BUILTIN {
            v.exchanges.insert(
                n.to_string(),
                Exchange::new(
                    v.store.new_id(),
                    n.to_string(),
                    *kind,
                    true,
                    false,
                    false,
                    FieldTable::default(),
                ),
            );
        }
        v
    }

    pub fn exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges.get(name).map(|e| e.clone())
    }

    pub fn queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.get(name).map(|q| q.clone())
    }

    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.iter().map(|q| q.clone()).collect()
    }

    pub fn queue_count(&self) -> usize {
        self.queues.len()
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

    #[allow(clippy::too_many_arguments)]
    pub fn declare_exchange(
        &self,
        name: &str,
        kind: &str,
        passive: bool,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> AmqpResult<Arc<Exchange>> {
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
                    kind,
                    auto_delete,
                    internal,
                    &arguments,
                );
            }
            Exchange::new(
                id,
                name.to_string(),
                kind,
                durable,
                auto_delete,
                internal,
                arguments.clone(),
            )
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

    fn remove_exchange(&self, ex: &Arc<Exchange>) {
        if self
            .exchanges
            .remove_if(&ex.name, |_, e| Arc::ptr_eq(e, ex))
            .is_none()
        {
            return;
        }
        // Marked deleted before its bindings go, so no bind can slip in after.
        ex.unbind_all(|b| {
            if let Some((kind, dest)) = durable_end(ex, &b.destination) {
                self.store
                    .delete_binding(kind, dest, ex.id, &b.routing_key, &b.arguments);
            }
        });
        if ex.durable {
            self.store.delete_exchange(ex.id);
        }
        // Bindings into this exchange (exchange-to-exchange) go with it.
        self.unbind_everywhere(&Destination::Exchange(ex.clone()));
        self.topology_changed();
    }

    /// Removes every binding to `dest`, then auto-deletes exchanges left without bindings.
    fn unbind_everywhere(&self, dest: &Destination) {
        let sources: Vec<Arc<Exchange>> = self.exchanges.iter().map(|e| e.clone()).collect();
        for ex in sources {
            if ex.unbind_destination(dest) > 0 {
                self.maybe_auto_delete(&ex);
            }
        }
    }

    fn maybe_auto_delete(&self, ex: &Arc<Exchange>) {
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
                .map_err(|t| {
                    AmqpError::precondition_failed(format!("{t} in vhost '{}'", self.name))
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
                Queue::new(
                    spec.name.clone(),
                    durable,
                    spec.exclusive.then_some(connection),
                    spec.auto_delete,
                    spec.arguments.clone(),
                    args.clone(),
                    self.me.clone(),
                    self.disk(qid),
                    self.queue_ram_budget,
                )
            })
            .clone();
        if created {
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
        metrics::counter!(crate::metrics::QUEUES_DELETED).increment(1);
        // Marked deleted (under its lock) before its records go, so nothing is written for
        // it after them: no publish enqueues, no bind binds.
        let (messages, consumers) = q.delete_contents();
        self.store.delete_queue(q.qid, q.durable);
        self.unbind_everywhere(&Destination::Queue(q.clone()));
        self.topology_changed();
        Some(DeletedQueue {
            messages,
            consumers,
        })
    }

    pub fn bind(
        &self,
        source: &str,
        dest: Destination,
        key: &str,
        arguments: FieldTable,
    ) -> AmqpResult<()> {
        if source.is_empty() {
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        let ex = self.exchange_or_404(source)?;
        if ex.kind == crate::exchange::ExchangeKind::Headers {
            crate::exchange::headers::validate_binding(&arguments)
                .map_err(AmqpError::precondition_failed)?;
        }
        let stored = durable_end(&ex, &dest);
        let store = &self.store;
        let added = ex.bind(
            Binding {
                destination: dest,
                routing_key: key.to_string(),
                arguments,
            },
            |b| {
                if let Some((kind, dest)) = stored {
                    store.put_binding(kind, dest, ex.id, &b.routing_key, &b.arguments);
                }
            },
        );
        if added {
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
            return Err(AmqpError::access_refused(
                "operation not permitted on the default exchange",
            ));
        }
        // A missing source (or destination, see the callers) makes unbind a no-op, as RabbitMQ.
        let Some(ex) = self.exchange(source) else {
            return Ok(());
        };
        let stored = durable_end(&ex, &dest);
        let store = &self.store;
        let removed = ex.unbind(
            &Binding {
                destination: dest,
                routing_key: key.to_string(),
                arguments,
            },
            |b| {
                if let Some((kind, dest)) = stored {
                    store.delete_binding(kind, dest, ex.id, &b.routing_key, &b.arguments);
                }
            },
        );
        if removed {
            self.topology_changed();
            self.maybe_auto_delete(&ex);
        }
        Ok(())
    }

    /// The queues a message reaches from `ex`, each once, following exchange-to-exchange
    /// bindings (cycles included) once per exchange. `scratch` is reused across publishes so
    /// routing allocates nothing in the steady state.
    pub fn route(
        &self,
        ex: &Arc<Exchange>,
        routing_key: &str,
        headers: &dyn Fn() -> Option<FieldTable>,
        scratch: &mut RouteScratch,
    ) {
        let generation = self.generation.load(Ordering::Acquire);
        if let Some((e, k, g)) = &scratch.key {
            if *g == generation && Arc::ptr_eq(e, ex) && k == routing_key {
                return;
            }
        }
        scratch.key = None;
        scratch.queues.clear();
        scratch.exchanges.clear();
        if ex.name.is_empty() {
            // The default exchange: an implicit binding per queue, keyed by its name.
            if let Some(q) = self.queue(routing_key) {
                scratch.queues.push(q);
            }
            scratch.key = Some((ex.clone(), routing_key.to_string(), generation));
            return;
        }
        let input = RouteInput {
            routing_key,
            headers,
        };
        let RouteScratch {
            queues, exchanges, ..
        } = scratch;
        route_from(ex, &input, queues, exchanges);
        let headers_kind = |xs: &[Arc<Exchange>]| {
            xs.iter()
                .any(|e| e.kind == crate::exchange::ExchangeKind::Headers)
        };
        let mut by_key_only = !headers_kind(exchanges);
        // Unroutable: try the exchange's alternate, then its alternate's, and so on.
        if queues.is_empty() {
            let mut tried = vec![ex.clone()];
            let mut alternate = ex.alternate_exchange();
            while queues.is_empty() {
                let Some(ae) = alternate.and_then(|n| self.exchange(&n)) else {
                    break;
                };
                if tried.iter().any(|t| Arc::ptr_eq(t, &ae)) {
                    break;
                }
                exchanges.clear();
                route_from(&ae, &input, queues, exchanges);
                by_key_only &= !headers_kind(exchanges);
                alternate = ae.alternate_exchange();
                tried.push(ae);
            }
        }
        exchanges.clear();
        if by_key_only {
            scratch.key = Some((ex.clone(), routing_key.to_string(), generation));
        }
    }

    fn disk(&self, qid: u64) -> Disk {
        Disk {
            store: self.store.clone(),
            qid,
        }
    }

    /// Everything recovered for this vhost, rebuilt: durable exchanges (the built-in ones
    /// keep their stored ids, or get their records written now), durable queues with their
    /// messages, and the bindings between them (by id).
    pub fn restore(
        &self,
        exchanges: Vec<ExchangeDef>,
        queues: Vec<RecoveredQueue>,
        bindings: &[BindingDef],
        by_id: &mut HashMap<u64, Destination>,
    ) {
        let mut builtin_restored = Vec::new();
        for d in exchanges {
            let ex = Exchange::new(
                d.id,
                d.name.clone(),
                d.kind,
                true,
                d.auto_delete,
                d.internal,
                d.arguments,
            );
            if BUILTIN.iter().any(|(n, _)| *n == d.name) {
                builtin_restored.push(d.name.clone());
            }
            by_id.insert(d.id, Destination::Exchange(ex.clone()));
            self.exchanges.insert(d.name, ex);
        }
        for (n, kind) in BUILTIN {
            if n.is_empty() || builtin_restored.iter().any(|r| r == n) {
                continue;
            }
            // A new vhost (or one from before built-ins were stored): their ids must be
            // stable, since bindings from them are stored by id.
            if let Some(ex) = self.exchange(n) {
                self.store.put_exchange(
                    ex.id,
                    &self.name,
                    n,
                    *kind,
                    false,
                    false,
                    &FieldTable::default(),
                );
                by_id.insert(ex.id, Destination::Exchange(ex));
            }
        }
        for r in queues {
            let args = QueueArgs::parse(&r.def.arguments).unwrap_or_else(|e| {
                warn!(queue = %r.def.name, "stored arguments no longer valid ({e}): ignored");
                QueueArgs::default()
            });
            let q = Queue::new(
                r.def.name.clone(),
                true,
                None,
                r.def.auto_delete,
                r.def.arguments.clone(),
                args,
                self.me.clone(),
                self.disk(r.def.qid),
                self.queue_ram_budget,
            );
            q.restore(r);
            by_id.insert(q.qid, Destination::Queue(q.clone()));
            self.queues.insert(q.name.clone(), q);
        }
        for d in bindings {
            let (Some(Destination::Exchange(ex)), Some(dest)) =
                (by_id.get(&d.source), by_id.get(&d.dest))
            else {
                continue;
            };
            if !self
                .exchanges
                .get(&ex.name)
                .is_some_and(|e| Arc::ptr_eq(&e, ex))
            {
                continue; // another vhost's
            }
            ex.bind(
                Binding {
                    destination: dest.clone(),
                    routing_key: d.routing_key.clone(),
                    arguments: d.arguments.clone(),
                },
                |_| {},
            );
        }
        self.topology_changed();
    }

    /// Republishes dead letters to their dead-letter exchanges (see `queue::dead_letter`).
    /// Dead letters that this causes (a target queue over its length limit) are queued on
    /// the thread's work list and handled by the outermost call, in order.
    pub fn dead_letter(&self, dead: Vec<DeadLetter>) {
        let Some(me) = self.me.upgrade() else { return };
        let mut dead = Some(dead);
        let nested = DEAD_LETTERS.with(|d| match d.borrow_mut().as_mut() {
            Some(waiting) => {
                waiting.extend(dead.take().into_iter().flatten().map(|x| (me.clone(), x)));
                true
            }
            None => false,
        });
        if nested {
            return;
        }
        let first = dead.take().into_iter().flatten().map(|x| (me.clone(), x));
        DEAD_LETTERS.with(|d| *d.borrow_mut() = Some(first.collect()));
        let mut scratch = RouteScratch::default();
        while let Some((vhost, d)) =
            DEAD_LETTERS.with(|d| d.borrow_mut().as_mut().and_then(VecDeque::pop_front))
        {
            vhost.republish(d, &mut scratch);
        }
        DEAD_LETTERS.with(|d| *d.borrow_mut() = None);
    }

    /// Adds the queues the message's `CC`/`BCC` keys reach from `ex` to `scratch.queues`
    /// (after [`VHost::route`] computed those of its routing key); returns the message to
    /// enqueue (without `BCC`). Without such headers it does nothing.
    pub fn route_cc(
        &self,
        ex: &Arc<Exchange>,
        message: Arc<Message>,
        scratch: &mut RouteScratch,
    ) -> Arc<Message> {
        if !message.properties().has_headers() {
            return message;
        }
        let Some(headers) = message.headers() else {
            return message;
        };
        let keys = dead_letter::cc_keys(&headers);
        if keys.is_empty() {
            return message;
        }
        let mut extra = RouteScratch::default();
        let lazy = || Some(headers.clone());
        for k in &keys {
            self.route(ex, k, &lazy, &mut extra);
            for q in &extra.queues {
                if !scratch.queues.iter().any(|x| Arc::ptr_eq(x, q)) {
                    scratch.queues.push(q.clone());
                }
            }
        }
        // The route now depends on headers: it must not be reused for the next publish.
        scratch.key = None;
        match dead_letter::without_bcc(&message) {
            Some(m) => Arc::new(m),
            None => message,
        }
    }

    fn republish(&self, d: DeadLetter, scratch: &mut RouteScratch) {
        // A missing dead-letter exchange drops the message, as in RabbitMQ.
        let Some(ex) = self.exchange(&d.exchange) else {
            return;
        };
        metrics::counter!(crate::metrics::dead_lettered(d.reason.as_str())).increment(1);
        let now = crate::queue::now_ms() / 1000;
        let Some(m) = dead_letter::rewrite(&d, now) else {
            return;
        };
        let m = Arc::new(m);
        let headers = m.headers();
        let lazy = || headers.clone();
        self.route(&ex, m.routing_key(), &lazy, scratch);
        // With its own routing key (no x-dead-letter-routing-key), its CC keys count too.
        let m = if d.routing_key.is_none() {
            self.route_cc(&ex, m, scratch)
        } else {
            m
        };
        for q in scratch.queues.clone() {
            if dead_letter::is_cycle(headers.as_ref(), &q.name) {
                continue;
            }
            q.publish(m.clone());
            q.poke();
        }
    }

    /// Marks routes computed before now as stale.
    fn topology_changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Deletes the exclusive queues of a closed connection.
    pub fn drop_exclusive_queues(&self, connection: u64) -> Vec<DeletedQueue> {
        let owned: Vec<Arc<Queue>> = self
            .queues
            .iter()
            .filter(|q| q.exclusive_owner == Some(connection))
            .map(|q| q.clone())
            .collect();
        owned.iter().filter_map(|q| self.delete_queue(q)).collect()
    }
}

/// The destination's kind and id if a binding from `ex` to it is durable (both ends are).
fn durable_end(ex: &Exchange, dest: &Destination) -> Option<(DestKind, u64)> {
    if !ex.durable {
        return None;
    }
    match dest {
        Destination::Queue(q) if q.durable => Some((DestKind::Queue, q.qid)),
        Destination::Exchange(e) if e.durable => Some((DestKind::Exchange, e.id)),
        _ => None,
    }
}

/// Routes from `ex` through exchange-to-exchange bindings (each exchange once) into `queues`
/// (each queue once).
fn route_from(
    ex: &Arc<Exchange>,
    input: &RouteInput<'_>,
    queues: &mut Vec<Arc<Queue>>,
    exchanges: &mut Vec<Arc<Exchange>>,
) {
    exchanges.push(ex.clone());
    let mut i = 0;
    while i < exchanges.len() {
        let current = exchanges[i].clone();
        i += 1;
        current.route(input, &mut |d| match d {
            Destination::Queue(q) => {
                if !queues.iter().any(|x| Arc::ptr_eq(x, q)) {
                    queues.push(q.clone());
                }
            }
            Destination::Exchange(e) => {
                if !exchanges.iter().any(|x| Arc::ptr_eq(x, e)) {
                    exchanges.push(e.clone());
                }
            }
        });
    }
}
