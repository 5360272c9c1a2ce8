//! Policies and operator policies: named rules per vhost that give queues and exchanges
//! settings by name pattern, as RabbitMQ's do.
//!
//! Resolution (RabbitMQ's): of the policies whose pattern matches a name and whose
//! `apply-to` covers the object, the one with the highest priority applies (ties: the
//! first by name); likewise one operator policy. The two are merged with the stricter
//! number winning ([`PolicyValues::bounded_by`]); how they meet the object's own
//! x-arguments is the queue's and exchange's business (`queue::arguments`).
//!
//! Files: this one (a policy, a vhost's set, what applies to a name), `definition` (the
//! settings, checked with RabbitMQ's texts, and merged).

pub mod definition;

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::access::pattern::Pattern;
pub use definition::{Kind, PolicyValues};

/// What kinds of object a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyTo {
    Queues,
    ClassicQueues,
    QuorumQueues,
    Streams,
    Exchanges,
    All,
}

impl ApplyTo {
    pub fn parse(s: &str) -> Option<ApplyTo> {
        Some(match s {
            "queues" => ApplyTo::Queues,
            "classic_queues" => ApplyTo::ClassicQueues,
            "quorum_queues" => ApplyTo::QuorumQueues,
            "streams" => ApplyTo::Streams,
            "exchanges" => ApplyTo::Exchanges,
            "all" => ApplyTo::All,
            _ => return None,
        })
    }

    fn covers(self, target: Target) -> bool {
        match target {
            // Warren's queues are all classic.
            Target::Queue => matches!(
                self,
                ApplyTo::Queues | ApplyTo::ClassicQueues | ApplyTo::All
            ),
            Target::Exchange => matches!(self, ApplyTo::Exchanges | ApplyTo::All),
        }
    }
}

/// The kind of object a policy is looked up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Queue,
    Exchange,
}

/// A policy as the definitions file and the management API write it (and the store keeps
/// it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PolicyRecord {
    /// Absent in a per-vhost definitions file.
    #[serde(default)]
    pub vhost: String,
    pub name: String,
    pub pattern: String,
    #[serde(rename = "apply-to", default = "default_apply_to")]
    pub apply_to: String,
    pub definition: Map<String, Value>,
    #[serde(default)]
    pub priority: i64,
}

fn default_apply_to() -> String {
    "all".into()
}

/// A policy refused, with RabbitMQ's text (after "Validation failed\n\n").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// A checked policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub kind: Kind,
    pub record: PolicyRecord,
    pattern: Pattern,
    apply_to: ApplyTo,
    pub values: PolicyValues,
}

impl Policy {
    pub fn new(kind: Kind, record: PolicyRecord) -> Result<Policy, PolicyError> {
        let apply_to = ApplyTo::parse(&record.apply_to).ok_or_else(|| {
            PolicyError(format!(
                "apply-to '{}' unrecognised; should be 'queues', 'classic_queues', \
                 'quorum_queues', 'streams', 'exchanges', or 'all'",
                record.apply_to
            ))
        })?;
        let pattern = Pattern::as_written(&record.pattern).map_err(|e| {
            PolicyError(format!(
                "pattern should be regular expression but is invalid: {}",
                e.reason
            ))
        })?;
        let values = definition::validate(kind, &record.definition).map_err(PolicyError)?;
        Ok(Policy {
            kind,
            record,
            pattern,
            apply_to,
            values,
        })
    }

    pub fn name(&self) -> &str {
        &self.record.name
    }

    fn applies(&self, target: Target, name: &str) -> bool {
        self.apply_to.covers(target) && self.pattern.matches(name)
    }
}

/// The policies of one vhost, highest priority first (then by name), of one kind.
#[derive(Debug, Clone, Default)]
pub struct PolicyList {
    sorted: Vec<Arc<Policy>>,
}

impl PolicyList {
    /// Adds or replaces a policy; returns whether it is new.
    pub fn put(&mut self, p: Policy) -> bool {
        let existed = self.remove(p.name());
        let key = |q: &Policy| (std::cmp::Reverse(q.record.priority), q.name().to_string());
        let at = self.sorted.partition_point(|q| key(q) < key(&p));
        self.sorted.insert(at, Arc::new(p));
        !existed
    }

    /// Removes a policy by name; returns whether it was there.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.sorted.len();
        self.sorted.retain(|p| p.name() != name);
        self.sorted.len() != before
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Policy>> {
        self.sorted.iter().find(|p| p.name() == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Policy>> {
        self.sorted.iter()
    }

    fn matching(&self, target: Target, name: &str) -> Option<Arc<Policy>> {
        self.sorted
            .iter()
            .find(|p| p.applies(target, name))
            .cloned()
    }
}

/// A vhost's policies and operator policies.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub policies: PolicyList,
    pub operator: PolicyList,
}

impl PolicySet {
    pub fn list(&self, kind: Kind) -> &PolicyList {
        match kind {
            Kind::Policy => &self.policies,
            Kind::Operator => &self.operator,
        }
    }

    pub fn list_mut(&mut self, kind: Kind) -> &mut PolicyList {
        match kind {
            Kind::Policy => &mut self.policies,
            Kind::Operator => &mut self.operator,
        }
    }

    /// What applies to the object `name` of kind `target`.
    pub fn applied(&self, target: Target, name: &str) -> Arc<Applied> {
        let policy = self.policies.matching(target, name);
        let operator = self.operator.matching(target, name);
        if policy.is_none() && operator.is_none() {
            return Applied::none();
        }
        let values = match (&policy, &operator) {
            (Some(p), Some(o)) => p.values.bounded_by(&o.values),
            (Some(p), None) => p.values.clone(),
            (None, Some(o)) => o.values.clone(),
            (None, None) => PolicyValues::default(),
        };
        Arc::new(Applied {
            policy,
            operator,
            values,
        })
    }
}

/// The policy and operator policy that apply to one queue or exchange, and their merged
/// values.
#[derive(Debug, Default)]
pub struct Applied {
    pub policy: Option<Arc<Policy>>,
    pub operator: Option<Arc<Policy>>,
    pub values: PolicyValues,
}

impl Applied {
    /// Nothing applies (shared: most objects have no policy).
    pub fn none() -> Arc<Applied> {
        static NONE: OnceLock<Arc<Applied>> = OnceLock::new();
        NONE.get_or_init(|| Arc::new(Applied::default())).clone()
    }

    pub fn policy_name(&self) -> Option<&str> {
        self.policy.as_deref().map(Policy::name)
    }

    pub fn operator_name(&self) -> Option<&str> {
        self.operator.as_deref().map(Policy::name)
    }

    /// `effective_policy_definition` as the management API reports it.
    pub fn definition(&self) -> Value {
        definition::merged(
            self.policy.as_deref().map(|p| &p.record.definition),
            self.operator.as_deref().map(|p| &p.record.definition),
        )
    }

    /// Whether two applications would run an object the same way.
    pub fn same_as(&self, other: &Applied) -> bool {
        let name = |p: &Option<Arc<Policy>>| p.as_ref().map(|p| p.record.clone());
        self.values == other.values
            && name(&self.policy) == name(&other.policy)
            && name(&self.operator) == name(&other.operator)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(kind: Kind, name: &str, pattern: &str, apply: &str, prio: i64, def: Value) -> Policy {
        Policy::new(
            kind,
            PolicyRecord {
                vhost: "/".into(),
                name: name.into(),
                pattern: pattern.into(),
                apply_to: apply.into(),
                definition: def.as_object().cloned().unwrap(),
                priority: prio,
            },
        )
        .unwrap()
    }

    #[test]
    fn the_highest_priority_matching_policy_applies() {
        let mut s = PolicySet::default();
        s.policies.put(policy(
            Kind::Policy,
            "low",
            "^a",
            "queues",
            0,
            json!({"max-length": 1}),
        ));
        s.policies.put(policy(
            Kind::Policy,
            "high",
            "^ab",
            "all",
            5,
            json!({"max-length": 2}),
        ));
        s.policies.put(policy(
            Kind::Policy,
            "ex",
            "",
            "exchanges",
            9,
            json!({"alternate-exchange": "ae"}),
        ));
        assert_eq!(s.applied(Target::Queue, "abc").policy_name(), Some("high"));
        assert_eq!(s.applied(Target::Queue, "ax").policy_name(), Some("low"));
        assert_eq!(s.applied(Target::Queue, "zz").policy_name(), None);
        assert_eq!(s.applied(Target::Exchange, "zz").policy_name(), Some("ex"));
        // A changed priority moves it.
        s.policies.put(policy(
            Kind::Policy,
            "low",
            "^a",
            "queues",
            7,
            json!({"max-length": 1}),
        ));
        assert_eq!(s.applied(Target::Queue, "abc").policy_name(), Some("low"));
        assert!(s.policies.remove("low"));
        assert_eq!(s.applied(Target::Queue, "ax").policy_name(), None);
    }

    #[test]
    fn the_operator_policy_bounds_the_policy() {
        let mut s = PolicySet::default();
        s.policies.put(policy(
            Kind::Policy,
            "p",
            "",
            "queues",
            0,
            json!({"max-length": 10}),
        ));
        s.operator.put(policy(
            Kind::Operator,
            "o",
            "",
            "queues",
            0,
            json!({"max-length": 3}),
        ));
        let a = s.applied(Target::Queue, "q");
        assert_eq!(a.values.max_length, Some(3));
        assert_eq!(a.operator_name(), Some("o"));
        assert_eq!(a.definition(), json!({"max-length": 3}));
    }

    #[test]
    fn bad_policies_get_rabbitmqs_texts() {
        let rec = |pattern: &str, apply: &str| PolicyRecord {
            vhost: "/".into(),
            name: "p".into(),
            pattern: pattern.into(),
            apply_to: apply.into(),
            definition: json!({"max-length": 1}).as_object().cloned().unwrap(),
            priority: 0,
        };
        let e = Policy::new(Kind::Policy, rec("^a", "nope")).unwrap_err();
        assert!(e.0.starts_with("apply-to 'nope' unrecognised"), "{e}");
        let e = Policy::new(Kind::Policy, rec("(", "all")).unwrap_err();
        assert!(
            e.0.starts_with("pattern should be regular expression but is invalid"),
            "{e}"
        );
    }
}
