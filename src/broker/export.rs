//! The definitions export (`GET /api/definitions[/{vhost}]`, `warren ctl
//! export_definitions`), in the shape RabbitMQ writes: users, vhosts, permissions, topic
//! permissions, parameters (vhost limits, operator policies), policies, queues, exchanges
//! and bindings. Exclusive queues, the built-in exchanges and the default exchange's
//! bindings are left out, as RabbitMQ leaves them; transient queues and exchanges are in
//! (RabbitMQ 3.10.8 exports them too). Importing the result into an empty Warren gives the
//! same topology ([`Broker::import_definitions`]).

use serde_json::{json, Map, Value};

use super::Broker;
use crate::access::record::{PermissionRecord, TopicPermissionRecord, UserRecord, VhostRecord};
use crate::exchange::Destination;
use crate::policy::Kind;
use crate::vhost::VHost;

/// The RabbitMQ release whose definitions format and management API Warren follows.
pub const RABBITMQ_COMPAT_VERSION: &str = "4.0.5";

impl Broker {
    /// Everything (`vhost: None`), or one vhost's part in RabbitMQ's per-vhost shape (no
    /// users, vhosts or permissions, and no `vhost` field on the entities). `None` when
    /// that vhost does not exist.
    pub fn export_definitions(&self, vhost: Option<&str>) -> Option<Value> {
        let mut vhosts = self.vhosts();
        if let Some(only) = vhost {
            vhosts.retain(|v| v.name == only);
            if vhosts.is_empty() {
                return None;
            }
        }
        vhosts.sort_by(|a, b| a.name.cmp(&b.name));
        let mut parameters = Vec::new();
        let mut policies = Vec::new();
        let (mut queues, mut exchanges, mut bindings) = (Vec::new(), Vec::new(), Vec::new());
        for v in &vhosts {
            parameters.extend(self.vhost_parameters(v));
            policies.extend(
                self.policies(Kind::Policy)
                    .into_iter()
                    .filter(|p| p.vhost == v.name)
                    .map(|p| serde_json::to_value(p).unwrap_or_default()),
            );
            topology(v, &mut queues, &mut exchanges, &mut bindings);
        }
        let mut out = Map::new();
        out.insert("rabbit_version".into(), json!(RABBITMQ_COMPAT_VERSION));
        if vhost.is_none() {
            let a = self.access.read();
            out.insert("rabbitmq_version".into(), json!(RABBITMQ_COMPAT_VERSION));
            out.insert("product_name".into(), json!("Warren"));
            out.insert("product_version".into(), json!(env!("CARGO_PKG_VERSION")));
            let users: Vec<UserRecord> =
                a.users.values().map(|u| UserRecord::from_user(u)).collect();
            out.insert("users".into(), json!(users));
            let vs: Vec<VhostRecord> = a.vhosts.values().map(VhostRecord::from_info).collect();
            out.insert("vhosts".into(), json!(vs));
            let perms: Vec<PermissionRecord> = a
                .permissions
                .iter()
                .map(|((v, u), p)| PermissionRecord::from_permission(u, v, p))
                .collect();
            out.insert("permissions".into(), json!(perms));
            let topics: Vec<TopicPermissionRecord> = a
                .topic_permissions
                .iter()
                .flat_map(|((v, u), by_x)| {
                    by_x.values()
                        .map(move |t| TopicPermissionRecord::from_topic(u, v, t))
                })
                .collect();
            out.insert("topic_permissions".into(), json!(topics));
        }
        out.insert("parameters".into(), Value::Array(parameters));
        if vhost.is_none() {
            out.insert("global_parameters".into(), json!([]));
        }
        out.insert("policies".into(), Value::Array(policies));
        out.insert("queues".into(), Value::Array(queues));
        out.insert("exchanges".into(), Value::Array(exchanges));
        out.insert("bindings".into(), Value::Array(bindings));
        if vhost.is_some() {
            // RabbitMQ 3.10.8 keeps `vhost` on parameters and policies here.
            for key in ["queues", "exchanges", "bindings"] {
                if let Some(Value::Array(items)) = out.get_mut(key) {
                    for item in items.iter_mut().filter_map(Value::as_object_mut) {
                        item.remove("vhost");
                    }
                }
            }
        }
        Some(Value::Object(out))
    }

    /// A vhost's runtime parameters: its limits and its operator policies.
    fn vhost_parameters(&self, v: &VHost) -> Vec<Value> {
        let mut out = Vec::new();
        let limits = self.read_access(|a| a.vhosts.get(&v.name).map(|i| i.limits.0.clone()));
        if let Some(l) = limits.filter(|l| !l.is_empty()) {
            out.push(
                json!({"value": l, "vhost": v.name, "component": "vhost-limits", "name": "limits"}),
            );
        }
        for p in v.policies().list(Kind::Operator).iter() {
            let r = &p.record;
            out.push(json!({
                "value": {"pattern": r.pattern, "definition": r.definition,
                          "priority": r.priority, "apply-to": r.apply_to},
                "vhost": r.vhost, "component": "operator_policy", "name": r.name,
            }));
        }
        out
    }
}

fn topology(
    v: &VHost,
    queues: &mut Vec<Value>,
    exchanges: &mut Vec<Value>,
    bindings: &mut Vec<Value>,
) {
    let mut qs = v.queues();
    qs.retain(|q| q.exclusive_owner.is_none() && !q.is_deleted());
    qs.sort_by(|a, b| a.name.cmp(&b.name));
    for q in qs {
        queues.push(json!({
            "name": q.name, "vhost": v.name, "durable": q.durable,
            "auto_delete": q.auto_delete, "arguments": crate::args::table_json(&q.arguments),
        }));
    }
    let mut xs = v.exchanges();
    xs.sort_by(|a, b| a.name.cmp(&b.name));
    for x in &xs {
        if !VHost::is_builtin_exchange(&x.name) && !x.is_deleted() {
            exchanges.push(json!({
                "name": x.name, "vhost": v.name, "type": x.kind.as_str(),
                "durable": x.durable, "auto_delete": x.auto_delete, "internal": x.internal,
                "arguments": crate::args::table_json(&x.arguments),
            }));
        }
        if x.name.is_empty() {
            continue;
        }
        let mut bs: Vec<Value> = x
            .bindings()
            .into_iter()
            .filter_map(|b| {
                let (dest, kind) = match &b.destination {
                    Destination::Queue(q) if q.exclusive_owner.is_none() => {
                        (q.name.clone(), "queue")
                    }
                    Destination::Exchange(e) => (e.name.clone(), "exchange"),
                    Destination::Queue(_) => return None,
                };
                Some(json!({
                    "source": x.name, "vhost": v.name, "destination": dest,
                    "destination_type": kind, "routing_key": b.routing_key,
                    "arguments": crate::args::table_json(&b.arguments),
                }))
            })
            .collect();
        bs.sort_by(|a, b| {
            let key = |v: &Value| (v["destination"].to_string(), v["routing_key"].to_string());
            key(a).cmp(&key(b))
        });
        bindings.extend(bs);
    }
}
