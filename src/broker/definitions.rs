//! RabbitMQ's definitions JSON (`rabbitmqctl export_definitions`, the management API's
//! `/api/definitions`): imported at start from `load_definitions`, as RabbitMQ's key of
//! that name does. Users keep their RabbitMQ password hashes; vhosts, permissions, topic
//! permissions, vhost limits (the `vhost-limits` parameter), exchanges, queues and bindings
//! are made as declared, policies and operator policies (the `operator_policy`
//! parameters) set and applied. An entity that cannot be made (an exchange of an unknown type, a queue
//! redeclared with other arguments, a policy Warren refuses) is logged and skipped, and the
//! import goes on. The export is `export.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use tracing::{info, warn};

use super::admin::{UserChange, VhostChange};
use super::{Broker, OpenError};
use crate::access::record::{PermissionRecord, TopicPermissionRecord, UserRecord, VhostRecord};
use crate::exchange::Destination;
use crate::policy::{Kind, PolicyRecord};
use crate::vhost::{ExchangeSpec, QueueSpec};

/// Definitions files are written by operators; past this they are refused unread.
const MAX_FILE: u64 = 256 << 20;

#[derive(Debug, Default, Deserialize)]
pub struct Definitions {
    #[serde(default)]
    pub users: Vec<UserRecord>,
    #[serde(default)]
    pub vhosts: Vec<VhostRecord>,
    #[serde(default)]
    pub permissions: Vec<PermissionRecord>,
    #[serde(default)]
    pub topic_permissions: Vec<TopicPermissionRecord>,
    #[serde(default)]
    pub parameters: Vec<Parameter>,
    #[serde(default)]
    pub policies: Vec<PolicyRecord>,
    #[serde(default)]
    pub exchanges: Vec<ExchangeJson>,
    #[serde(default)]
    pub queues: Vec<QueueJson>,
    #[serde(default)]
    pub bindings: Vec<BindingJson>,
}

#[derive(Debug, Deserialize)]
pub struct Parameter {
    #[serde(default)]
    pub vhost: String,
    pub component: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: serde_json::Value,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub struct ExchangeJson {
    pub name: String,
    /// Absent in a per-vhost file (see [`Definitions::for_vhost`]).
    #[serde(default)]
    pub vhost: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default = "yes")]
    pub durable: bool,
    #[serde(default)]
    pub auto_delete: bool,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct QueueJson {
    pub name: String,
    #[serde(default)]
    pub vhost: String,
    #[serde(default = "yes")]
    pub durable: bool,
    #[serde(default)]
    pub auto_delete: bool,
    /// `classic`, `quorum`, `stream` (RabbitMQ ≥ 3.9 writes it beside `x-queue-type`).
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub struct BindingJson {
    pub source: String,
    #[serde(default)]
    pub vhost: String,
    pub destination: String,
    pub destination_type: String,
    #[serde(default)]
    pub routing_key: String,
    #[serde(default)]
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

impl Definitions {
    /// A per-vhost file (`/api/definitions/{vhost}`): every entity goes to `vhost`, and
    /// what is not per vhost (users, vhosts, permissions) is ignored, as RabbitMQ does.
    pub fn for_vhost(&mut self, vhost: &str) {
        self.users.clear();
        self.vhosts.clear();
        self.permissions.clear();
        self.topic_permissions.clear();
        let v = || vhost.to_string();
        self.parameters.iter_mut().for_each(|p| p.vhost = v());
        self.policies.iter_mut().for_each(|p| p.vhost = v());
        self.exchanges.iter_mut().for_each(|x| x.vhost = v());
        self.queues.iter_mut().for_each(|q| q.vhost = v());
        self.bindings.iter_mut().for_each(|b| b.vhost = v());
    }
}

/// What an import made (and skipped).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Imported {
    pub users: usize,
    pub vhosts: usize,
    pub permissions: usize,
    pub topic_permissions: usize,
    pub exchanges: usize,
    pub queues: usize,
    pub bindings: usize,
    pub policies: usize,
    pub skipped: usize,
}

impl Broker {
    pub(super) fn import_definitions_file(&self, path: &Path) -> Result<Imported, OpenError> {
        let fail = |reason: String| OpenError::Definitions {
            path: path.to_path_buf(),
            reason,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| fail(e.to_string()))?
            .len();
        if len > MAX_FILE {
            return Err(fail(format!("{len} bytes; {MAX_FILE} at most")));
        }
        let text = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
        let defs: Definitions = serde_json::from_slice(&text)
            .map_err(|e| fail(format!("not definitions JSON: {e}")))?;
        let done = self.import_definitions(defs).map_err(fail)?;
        info!(path = %path.display(), ?done, "definitions imported");
        Ok(done)
    }

    /// Imports `defs`; an error is a user or permission the file gets wrong (the import
    /// stops: an access model half-imported is worse than a broker that does not start).
    pub fn import_definitions(&self, defs: Definitions) -> Result<Imported, String> {
        let mut done = Imported::default();
        for v in &defs.vhosts {
            let info = v
                .to_info()
                .map_err(|e| format!("vhost '{}': {e}", v.name))?;
            self.put_vhost(
                &info.name,
                VhostChange {
                    description: Some(info.description),
                    tags: Some(info.tags),
                    default_queue_type: info.default_queue_type,
                    limits: Some(info.limits),
                },
            )
            .map_err(|e| format!("vhost '{}': {e}", v.name))?;
            done.vhosts += 1;
        }
        for u in &defs.users {
            let user = u.to_user().map_err(|e| e.to_string())?;
            self.put_user(
                &user.name,
                UserChange {
                    hash: Some(user.hash),
                    tags: Some(user.tags),
                    limits: Some(user.limits),
                },
            )
            .map_err(|e| format!("user '{}': {e}", u.name))?;
            done.users += 1;
        }
        for p in &defs.permissions {
            self.set_permissions(&p.user, &p.vhost, &p.configure, &p.write, &p.read)
                .map_err(|e| format!("permissions of '{}' in '{}': {e}", p.user, p.vhost))?;
            done.permissions += 1;
        }
        for t in &defs.topic_permissions {
            self.set_topic_permissions(&t.user, &t.vhost, &t.exchange, &t.write, &t.read)
                .map_err(|e| format!("topic permissions of '{}' in '{}': {e}", t.user, t.vhost))?;
            done.topic_permissions += 1;
        }
        for p in defs
            .parameters
            .iter()
            .filter(|p| p.component == "vhost-limits")
        {
            let limits: BTreeMap<String, i64> = serde_json::from_value(p.value.clone())
                .map_err(|e| format!("vhost-limits of '{}': {e}", p.vhost))?;
            self.set_vhost_limits(&p.vhost, &limits)
                .map_err(|e| format!("vhost-limits of '{}': {e}", p.vhost))?;
        }
        let others = defs
            .parameters
            .iter()
            .filter(|p| p.component != "vhost-limits" && p.component != "operator_policy")
            .count();
        if others > 0 {
            warn!(count = others, "runtime parameters in the definitions are not applied (Warren has none of their components)");
        }
        let operator = defs
            .parameters
            .iter()
            .filter(|p| p.component == "operator_policy")
            .map(|p| (Kind::Operator, operator_policy(p)));
        let policies = defs.policies.iter().map(|p| (Kind::Policy, Ok(p.clone())));
        for (kind, record) in policies.chain(operator) {
            match record.map_err(|e| e.to_string()).and_then(|r| {
                let name = r.name.clone();
                self.put_policy(kind, r)
                    .map_err(|e| format!("policy '{name}': {}", e.to_string().trim()))
            }) {
                Ok(_) => done.policies += 1,
                Err(e) => {
                    warn!(?kind, "definitions: policy skipped: {e}");
                    done.skipped += 1;
                }
            }
        }
        for x in &defs.exchanges {
            let Some(vhost) = self.vhost(&x.vhost) else {
                warn!(exchange = %x.name, vhost = %x.vhost, "definitions: exchange of an unknown vhost, skipped");
                done.skipped += 1;
                continue;
            };
            let made = vhost.declare_exchange(ExchangeSpec {
                name: &x.name,
                kind: &x.kind,
                passive: false,
                durable: x.durable,
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: crate::args::table_from_json(&x.arguments),
            });
            match made {
                Ok(_) => done.exchanges += 1,
                Err(e) => {
                    warn!(exchange = %x.name, vhost = %x.vhost, "definitions: exchange skipped: {e}");
                    done.skipped += 1;
                }
            }
        }
        for q in &defs.queues {
            let Some(vhost) = self.vhost(&q.vhost) else {
                warn!(queue = %q.name, vhost = %q.vhost, "definitions: queue of an unknown vhost, skipped");
                done.skipped += 1;
                continue;
            };
            let mut arguments = crate::args::table_from_json(&q.arguments);
            if let Some(kind) = q.kind.as_deref().filter(|k| *k != "classic") {
                if !q.arguments.contains_key("x-queue-type") {
                    arguments.insert(
                        "x-queue-type".into(),
                        crate::args::from_json(&serde_json::Value::String(kind.to_string())),
                    );
                }
            }
            let made = vhost.declare_queue(
                QueueSpec {
                    name: q.name.clone(),
                    durable: q.durable,
                    exclusive: false,
                    auto_delete: q.auto_delete,
                    arguments,
                },
                false,
                0,
            );
            match made {
                Ok(_) => done.queues += 1,
                Err(e) => {
                    warn!(queue = %q.name, vhost = %q.vhost, "definitions: queue skipped: {e}");
                    done.skipped += 1;
                }
            }
        }
        for b in &defs.bindings {
            let made = self
                .vhost(&b.vhost)
                .ok_or("unknown vhost".to_string())
                .and_then(|v| {
                    let dest = match b.destination_type.as_str() {
                        "queue" => v.queue(&b.destination).map(Destination::Queue),
                        "exchange" => v.exchange(&b.destination).map(Destination::Exchange),
                        _ => None,
                    }
                    .ok_or_else(|| format!("no {} '{}'", b.destination_type, b.destination))?;
                    v.bind(
                        &b.source,
                        dest,
                        &b.routing_key,
                        crate::args::table_from_json(&b.arguments),
                    )
                    .map_err(|e| e.to_string())
                });
            match made {
                Ok(()) => done.bindings += 1,
                Err(e) => {
                    warn!(source = %b.source, destination = %b.destination, vhost = %b.vhost, "definitions: binding skipped: {e}");
                    done.skipped += 1;
                }
            }
        }
        Ok(done)
    }
}

/// An `operator_policy` parameter (`{"value": {pattern, definition, priority, apply-to}}`)
/// as a policy record.
fn operator_policy(p: &Parameter) -> Result<PolicyRecord, serde_json::Error> {
    let mut v = p.value.clone();
    if let Some(o) = v.as_object_mut() {
        o.insert("vhost".into(), p.vhost.clone().into());
        o.insert("name".into(), p.name.clone().into());
    }
    serde_json::from_value(v)
}
