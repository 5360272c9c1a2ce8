//! A vhost rebuilt at start from what the store recovered, in one go: exchanges (the
//! built-in ones keep their stored ids), queues with their messages, then the bindings.

use std::collections::HashMap;
use std::sync::Arc;

use amq_protocol::types::FieldTable;
use tracing::warn;

use super::{VHost, BUILTIN};
use crate::exchange::{Binding, Destination, Exchange, ExchangeConfig, ExchangeKind};
use crate::queue::arguments::QueueArgs;
use crate::queue::{Queue, QueueConfig};
use crate::store::records::{BindingDef, ExchangeDef};
use crate::store::recovery::RecoveredQueue;

impl VHost {
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
            let Some(kind) = ExchangeKind::parse(&d.kind) else {
                warn!(exchange = %d.name, kind = %d.kind, "stored exchange of an unknown type: skipped");
                continue;
            };
            let ex = Exchange::new(ExchangeConfig {
                id: d.id,
                name: d.name.clone(),
                kind,
                durable: true,
                auto_delete: d.auto_delete,
                internal: d.internal,
                arguments: d.arguments,
            });
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
                    kind.as_str(),
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
            let q = Queue::new(QueueConfig {
                name: r.def.name.clone(),
                durable: true,
                exclusive_owner: None,
                auto_delete: r.def.auto_delete,
                arguments: r.def.arguments.clone(),
                args,
                owner: self.owner(),
                disk: self.disk(r.def.qid),
                ram_budget: self.queue_ram_budget,
            });
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
            self.link(
                ex,
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
}
