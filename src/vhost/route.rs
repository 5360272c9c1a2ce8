//! Routing: the queues a message reaches from an exchange, each once, following
//! exchange-to-exchange bindings, alternate exchanges, and the `CC`/`BCC` headers
//! (RabbitMQ's sender-selected distribution). A connection keeps its [`RouteScratch`], and
//! with it the last route it computed, reused while the vhost's topology is unchanged.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use amq_protocol::types::{AMQPValue, FieldTable};

use super::VHost;
use crate::exchange::{Destination, Exchange, RouteInput};
use crate::message::Message;
use crate::queue::Queue;

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

impl VHost {
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
            let mut tried: HashSet<*const Exchange> = HashSet::from([Arc::as_ptr(ex)]);
            let mut alternate = ex.alternate_exchange();
            while queues.is_empty() {
                let Some(ae) = alternate.and_then(|n| self.exchange(&n)) else {
                    break;
                };
                if !tried.insert(Arc::as_ptr(&ae)) {
                    break;
                }
                exchanges.clear();
                route_from(&ae, &input, queues, exchanges);
                by_key_only &= !headers_kind(exchanges);
                alternate = ae.alternate_exchange();
            }
        }
        exchanges.clear();
        if by_key_only {
            scratch.key = Some((ex.clone(), routing_key.to_string(), generation));
        }
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
        let keys = cc_keys(&headers);
        if keys.is_empty() {
            return message;
        }
        let mut extra = RouteScratch::default();
        let lazy = || Some(headers.clone());
        // The peer chooses how many keys: each key's queues are checked against a set, and a
        // key given twice is routed once.
        let mut seen: HashSet<*const Queue> = scratch.queues.iter().map(Arc::as_ptr).collect();
        let mut done_keys: HashSet<&str> = HashSet::new();
        for k in &keys {
            if !done_keys.insert(k.as_str()) {
                continue;
            }
            self.route(ex, k, &lazy, &mut extra);
            for q in &extra.queues {
                if seen.insert(Arc::as_ptr(q)) {
                    scratch.queues.push(q.clone());
                }
            }
        }
        // The route now depends on headers: it must not be reused for the next publish.
        scratch.key = None;
        match without_bcc(&message) {
            Some(m) => Arc::new(m),
            None => message,
        }
    }
}

/// The keys of the `CC` and `BCC` headers (RabbitMQ's sender-selected distribution).
pub fn cc_keys(headers: &FieldTable) -> Vec<String> {
    let mut keys = Vec::new();
    for h in ["CC", "BCC"] {
        if let Some(AMQPValue::FieldArray(a)) = crate::args::get(headers, h) {
            keys.extend(
                a.as_slice()
                    .iter()
                    .filter_map(crate::args::as_bytes)
                    .map(|b| String::from_utf8_lossy(b).into_owned()),
            );
        }
    }
    keys
}

/// The message without its `BCC` header (recipients must not see it), or `None` if it has
/// none.
fn without_bcc(m: &Message) -> Option<Message> {
    use amq_protocol::protocol::basic::{gen_properties, parse_properties};
    let (_, props) = parse_properties(m.properties_raw()).ok()?;
    let headers = props.headers().clone()?;
    crate::args::get(&headers, "BCC")?;
    let mut kept = FieldTable::default();
    for (k, v) in headers.inner() {
        if k.as_str() != "BCC" {
            kept.insert(k.clone(), v.clone());
        }
    }
    let props = props.with_headers(kept);
    let ctx = amq_protocol::frame::WriteContext::from(Vec::new());
    let (raw, _) = gen_properties(&props)(ctx).ok()?.into_inner();
    Message::from_parts(m.exchange(), m.routing_key(), &raw, m.body())
}

/// Routes from `ex` through exchange-to-exchange bindings (each exchange once) into `queues`
/// (each queue once). Duplicates are found by a scan while the route is short and by a set
/// of addresses past [`SCAN_MAX`], so a fanout to N queues costs O(N).
fn route_from(
    ex: &Arc<Exchange>,
    input: &RouteInput<'_>,
    queues: &mut Vec<Arc<Queue>>,
    exchanges: &mut Vec<Arc<Exchange>>,
) {
    let mut seen_queues = None;
    let mut seen_exchanges = None;
    exchanges.push(ex.clone());
    let mut i = 0;
    while i < exchanges.len() {
        let current = exchanges[i].clone();
        i += 1;
        current.route(input, &mut |d| match d {
            Destination::Queue(q) => {
                if first_visit(queues, &mut seen_queues, q) {
                    queues.push(q.clone());
                }
            }
            Destination::Exchange(e) => {
                if first_visit(exchanges, &mut seen_exchanges, e) {
                    exchanges.push(e.clone());
                }
            }
        });
    }
}

/// Past this many queues (or exchanges) in one route, duplicates are looked up in a set.
const SCAN_MAX: usize = 32;

/// True if `x` is not in `list` yet (which `seen`, once built, mirrors).
fn first_visit<T>(list: &[Arc<T>], seen: &mut Option<HashSet<*const T>>, x: &Arc<T>) -> bool {
    if let Some(set) = seen {
        return set.insert(Arc::as_ptr(x));
    }
    if list.iter().any(|y| Arc::ptr_eq(y, x)) {
        return false;
    }
    if list.len() >= SCAN_MAX {
        let mut set: HashSet<*const T> = list.iter().map(Arc::as_ptr).collect();
        set.insert(Arc::as_ptr(x));
        *seen = Some(set);
    }
    true
}
