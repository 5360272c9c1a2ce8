//! An exchange: its declared shape and its bindings, indexed by a router of its type.
//! Bindings sit behind an `RwLock` held only while routing or (un)binding: routing takes
//! the read side, so publishers on different connections route in parallel. A binding's
//! identity (destination, key, arguments) keys a hash map, so bind and unbind cost the same
//! with 10 bindings or a million.

mod dest_set;
pub mod direct;
pub mod fanout;
pub mod headers;
pub mod topic;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use amq_protocol::types::FieldTable;
use parking_lot::RwLock;

use crate::policy::Applied;
use crate::queue::Queue;

/// Where a binding leads.
#[derive(Clone)]
pub enum Destination {
    Queue(Arc<Queue>),
    Exchange(Arc<Exchange>),
}

/// A destination by its incarnation's id (ids are never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DestId {
    Queue(u64),
    Exchange(u64),
}

impl Destination {
    pub fn id(&self) -> DestId {
        match self {
            Destination::Queue(q) => DestId::Queue(q.qid),
            Destination::Exchange(e) => DestId::Exchange(e.id),
        }
    }

    pub fn is_deleted(&self) -> bool {
        match self {
            Destination::Queue(q) => q.is_deleted(),
            Destination::Exchange(e) => e.is_deleted(),
        }
    }
}

/// One binding: destination, key and arguments (all three make its identity).
#[derive(Clone)]
pub struct Binding {
    pub destination: Destination,
    pub routing_key: String,
    pub arguments: FieldTable,
}

/// What makes a binding itself: its destination, key, and arguments (compared loosely, as
/// RabbitMQ does: see `args::canonical`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BindingId {
    pub dest: DestId,
    pub routing_key: String,
    args: Vec<u8>,
}

impl Binding {
    pub fn id(&self) -> BindingId {
        BindingId {
            dest: self.destination.id(),
            routing_key: self.routing_key.clone(),
            args: crate::args::canonical(&self.arguments),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
}

impl ExchangeKind {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

fn new_router(kind: ExchangeKind) -> Box<dyn Router> {
    match kind {
        ExchangeKind::Direct => Box::<direct::DirectRouter>::default(),
        ExchangeKind::Fanout => Box::<fanout::FanoutRouter>::default(),
        ExchangeKind::Topic => Box::<topic::TopicRouter>::default(),
        ExchangeKind::Headers => Box::<headers::HeadersRouter>::default(),
    }
}

/// What a router needs to know about a message.
pub struct RouteInput<'a> {
    pub routing_key: &'a str,
    /// Parsed only when a headers exchange asks for them.
    pub headers: &'a dyn Fn() -> Option<FieldTable>,
}

/// The per-type index over an exchange's bindings.
pub trait Router: Send + Sync {
    fn bind(&mut self, b: &Binding);
    fn unbind(&mut self, b: &Binding);
    fn route(&self, input: &RouteInput<'_>, out: &mut dyn FnMut(&Destination));
}

struct Bindings {
    all: HashMap<BindingId, Binding>,
    router: Box<dyn Router>,
}

pub struct Exchange {
    /// Names this incarnation in the store (unique, never reused).
    pub id: u64,
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    bindings: RwLock<Bindings>,
    /// The policies that apply (an alternate exchange may come from one); replaced when a
    /// policy changes, read only when a message is unroutable here.
    policy: RwLock<Arc<Applied>>,
    deleted: AtomicBool,
}

/// Everything a new exchange is made of.
pub struct ExchangeConfig {
    pub id: u64,
    pub name: String,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

impl ExchangeConfig {
    /// A durable exchange with no flags or arguments (the built-in ones).
    pub fn durable(id: u64, name: &str, kind: ExchangeKind) -> ExchangeConfig {
        ExchangeConfig {
            id,
            name: name.to_string(),
            kind,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::default(),
        }
    }
}

impl Exchange {
    pub fn new(c: ExchangeConfig) -> Arc<Self> {
        let ExchangeConfig {
            id,
            name,
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
        } = c;
        let router = new_router(kind);
        Arc::new(Exchange {
            id,
            name,
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            bindings: RwLock::new(Bindings {
                all: HashMap::new(),
                router,
            }),
            policy: RwLock::new(Applied::none()),
            deleted: AtomicBool::new(false),
        })
    }

    /// Where unroutable messages go: the `alternate-exchange` argument, else a policy's
    /// (the argument wins, as in RabbitMQ).
    pub fn alternate_exchange(&self) -> Option<String> {
        match crate::args::get_str(&self.arguments, "alternate-exchange") {
            Some(b) => Some(String::from_utf8_lossy(b).into_owned()),
            None => self.policy.read().values.alternate_exchange.clone(),
        }
    }

    /// Runs the exchange with the policies that now apply; returns whether that changed
    /// anything (routes cached with the old alternate exchange must then be dropped).
    pub fn apply_policy(&self, applied: Arc<Applied>) -> bool {
        let mut p = self.policy.write();
        if p.same_as(&applied) {
            return false;
        }
        *p = applied;
        true
    }

    /// The policies that apply now.
    pub fn policy(&self) -> Arc<Applied> {
        self.policy.read().clone()
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    /// Adds a binding; false if it already existed, or either end is deleted. `record` runs
    /// under the bindings' lock when the binding was added, so that the store sees the binds
    /// and unbinds of one binding in the order they took effect.
    pub fn bind(&self, b: Binding, record: impl FnOnce(&Binding)) -> bool {
        let id = b.id();
        let mut g = self.bindings.write();
        if self.is_deleted() || b.destination.is_deleted() || g.all.contains_key(&id) {
            return false;
        }
        g.router.bind(&b);
        record(&b);
        g.all.insert(id, b);
        true
    }

    /// Removes a binding; false if there was none. `record` runs under the lock, as in
    /// [`Exchange::bind`].
    pub fn unbind(&self, id: &BindingId, record: impl FnOnce(&Binding)) -> bool {
        let mut g = self.bindings.write();
        let Some(removed) = g.all.remove(id) else {
            return false;
        };
        g.router.unbind(&removed);
        record(&removed);
        true
    }

    /// The exchange is being deleted: every binding from it goes, each passed to `record`
    /// under the lock (no bind can follow: the exchange is marked deleted first).
    pub fn unbind_all(&self, mut record: impl FnMut(&Binding)) {
        self.mark_deleted();
        let mut g = self.bindings.write();
        for (_, b) in g.all.drain() {
            record(&b);
        }
        let kind = self.kind;
        g.router = new_router(kind);
    }

    /// Its bindings at this moment (cloned under the read lock, for listing).
    pub fn bindings(&self) -> Vec<Binding> {
        self.bindings.read().all.values().cloned().collect()
    }

    /// One binding by its identity.
    pub fn binding(&self, id: &BindingId) -> Option<Binding> {
        self.bindings.read().all.get(id).cloned()
    }

    pub fn has_bindings(&self) -> bool {
        !self.bindings.read().all.is_empty()
    }

    pub fn route(&self, input: &RouteInput<'_>, out: &mut dyn FnMut(&Destination)) {
        self.bindings.read().router.route(input, out);
    }

    /// Whether a redeclare with these settings is equivalent (else 406).
    pub fn equivalent(
        &self,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: &FieldTable,
    ) -> Result<(), Inequivalent> {
        if self.kind != kind {
            return Err(Inequivalent::Type {
                exchange: self.name.clone(),
                received: kind.as_str(),
                current: self.kind.as_str(),
            });
        }
        let checks = [
            ("durable", self.durable, durable),
            ("auto_delete", self.auto_delete, auto_delete),
            ("internal", self.internal, internal),
        ];
        for (name, current, received) in checks {
            if current != received {
                return Err(Inequivalent::Flag {
                    exchange: self.name.clone(),
                    name,
                    received,
                    current,
                });
            }
        }
        // Of the arguments, RabbitMQ compares only `alternate-exchange`.
        let key = "alternate-exchange";
        let same = match (
            crate::args::get(&self.arguments, key),
            crate::args::get(arguments, key),
        ) {
            (None, None) => true,
            (Some(a), Some(b)) => crate::args::loosely_equal(a, b),
            _ => false,
        };
        if !same {
            return Err(Inequivalent::AlternateExchange(self.name.clone()));
        }
        Ok(())
    }
}

/// An exchange redeclare that differs (406; the text is RabbitMQ's, completed by the vhost).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Inequivalent {
    #[error("inequivalent arg 'type' for exchange '{exchange}': received '{received}' but current is '{current}'")]
    Type {
        exchange: String,
        received: &'static str,
        current: &'static str,
    },
    #[error("inequivalent arg '{name}' for exchange '{exchange}': received '{received}' but current is '{current}'")]
    Flag {
        exchange: String,
        name: &'static str,
        received: bool,
        current: bool,
    },
    #[error("inequivalent arg 'alternate-exchange' for exchange '{0}'")]
    AlternateExchange(String),
}
