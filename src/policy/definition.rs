//! A policy's definition: the JSON object of settings, checked key by key with RabbitMQ's
//! validation texts, and the typed values Warren acts on.
//!
//! Settings Warren accepts but has nothing to do with (mirroring's `ha-*`, `queue-mode`,
//! `queue-version`, the locators, quorum queues' in-memory limits) are kept in the
//! definition, so a RabbitMQ export imports unchanged, and have no effect.

use serde_json::{Map, Value};

/// Which of the two policy kinds a definition belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Set by users with the `policymaker` tag (`/api/policies`).
    Policy,
    /// Set by administrators as bounds (`/api/operator-policies`): only numeric limits.
    Operator,
}

/// The settings Warren acts on. For queues: dead-lettering, TTLs, length limits, overflow,
/// the delivery limit and the consumer timeout; for exchanges: the alternate exchange.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyValues {
    pub dead_letter_exchange: Option<String>,
    pub dead_letter_routing_key: Option<String>,
    /// Milliseconds.
    pub message_ttl: Option<u64>,
    /// Milliseconds unused before the queue is deleted.
    pub expires: Option<u64>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    /// `drop-head`, `reject-publish` or `reject-publish-dlx` (checked).
    pub overflow: Option<String>,
    pub delivery_limit: Option<u64>,
    /// Milliseconds.
    pub consumer_timeout: Option<u64>,
    pub alternate_exchange: Option<String>,
}

/// Settings accepted and kept without effect on a single-node classic broker.
const INERT: &[&str] = &[
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
    "queue-mode",
    "queue-version",
    "queue-master-locator",
    "queue-leader-locator",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "federation-upstream",
    "federation-upstream-set",
];

/// What an operator policy may set (RabbitMQ's list).
const OPERATOR_KEYS: &[&str] = &[
    "expires",
    "message-ttl",
    "max-length",
    "max-length-bytes",
    "delivery-limit",
    "max-in-memory-length",
    "max-in-memory-bytes",
];

/// A value as Erlang prints it in RabbitMQ's validation texts (`<<"abc">>` for a string).
pub fn erlang(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        other => other.to_string(),
    }
}

fn string(v: &Value, what: &str) -> Result<String, String> {
    v.as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("{} is not a valid {what}", erlang(v)))
}

fn at_least(v: &Value, min: u64, what: &str) -> Result<u64, String> {
    v.as_u64()
        .filter(|&n| n >= min)
        .ok_or_else(|| format!("{} is not a valid {what}", erlang(v)))
}

/// Checks a definition; the error is RabbitMQ's text after "Validation failed\n\n".
pub fn validate(kind: Kind, def: &Map<String, Value>) -> Result<PolicyValues, String> {
    if def.is_empty() {
        return Err("no policy provided".into());
    }
    let mut out = PolicyValues::default();
    let mut unknown = Vec::new();
    for (k, v) in def {
        if kind == Kind::Operator && !OPERATOR_KEYS.contains(&k.as_str()) {
            unknown.push(format!("{{<<\"{k}\">>,{}}}", erlang(v)));
            continue;
        }
        match k.as_str() {
            "dead-letter-exchange" => {
                out.dead_letter_exchange = Some(string(v, "dead letter exchange name")?)
            }
            "dead-letter-routing-key" => {
                out.dead_letter_routing_key = Some(string(v, "dead letter routing key")?)
            }
            "message-ttl" => out.message_ttl = Some(at_least(v, 0, "message TTL")?),
            "expires" => out.expires = Some(at_least(v, 1, "queue expiry")?),
            "max-length" => out.max_length = Some(at_least(v, 0, "maximum length")?),
            "max-length-bytes" => {
                out.max_length_bytes = Some(at_least(v, 0, "maximum length in bytes")?)
            }
            "overflow" => match v.as_str() {
                Some(s @ ("drop-head" | "reject-publish" | "reject-publish-dlx")) => {
                    out.overflow = Some(s.to_string())
                }
                _ => return Err(format!("{} is not a valid overflow value", erlang(v))),
            },
            "delivery-limit" => out.delivery_limit = Some(at_least(v, 0, "delivery limit")?),
            "consumer-timeout" => out.consumer_timeout = Some(at_least(v, 1, "consumer timeout")?),
            "alternate-exchange" => {
                out.alternate_exchange = Some(string(v, "alternate exchange name")?)
            }
            k if INERT.contains(&k) => {}
            _ => unknown.push(format!("{{<<\"{k}\">>,{}}}", erlang(v))),
        }
    }
    if !unknown.is_empty() {
        return Err(format!(
            "[{}] are not recognised policy settings",
            unknown.join(",")
        ));
    }
    Ok(out)
}

fn min(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

impl PolicyValues {
    /// A policy's values bounded by an operator policy's: the stricter (smaller) number
    /// wins, as RabbitMQ merges them.
    pub fn bounded_by(&self, op: &PolicyValues) -> PolicyValues {
        PolicyValues {
            message_ttl: min(self.message_ttl, op.message_ttl),
            expires: min(self.expires, op.expires),
            max_length: min(self.max_length, op.max_length),
            max_length_bytes: min(self.max_length_bytes, op.max_length_bytes),
            delivery_limit: min(self.delivery_limit, op.delivery_limit),
            consumer_timeout: min(self.consumer_timeout, op.consumer_timeout),
            ..self.clone()
        }
    }
}

/// The definition a queue or exchange runs with, as the management API reports it
/// (`effective_policy_definition`): the policy's settings, and the operator policy's where
/// it is stricter or the policy is silent.
pub fn merged(policy: Option<&Map<String, Value>>, op: Option<&Map<String, Value>>) -> Value {
    let mut out = policy.cloned().unwrap_or_default();
    for (k, v) in op.into_iter().flatten() {
        let stricter = match (out.get(k).and_then(Value::as_u64), v.as_u64()) {
            (Some(mine), Some(theirs)) => theirs < mine,
            _ => true,
        };
        if stricter {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn rabbitmqs_validation_texts() {
        let cases = [
            (json!({}), "no policy provided"),
            (
                json!({"foo": 1}),
                "[{<<\"foo\">>,1}] are not recognised policy settings",
            ),
            (
                json!({"message-ttl": "abc"}),
                "<<\"abc\">> is not a valid message TTL",
            ),
            (json!({"message-ttl": -1}), "-1 is not a valid message TTL"),
            (
                json!({"overflow": "x"}),
                "<<\"x\">> is not a valid overflow value",
            ),
            (
                json!({"dead-letter-exchange": 5}),
                "5 is not a valid dead letter exchange name",
            ),
            (json!({"expires": 0}), "0 is not a valid queue expiry"),
        ];
        for (d, want) in cases {
            assert_eq!(validate(Kind::Policy, &def(d)).unwrap_err(), want);
        }
        assert_eq!(
            validate(Kind::Operator, &def(json!({"dead-letter-exchange": "x"}))).unwrap_err(),
            "[{<<\"dead-letter-exchange\">>,<<\"x\">>}] are not recognised policy settings"
        );
    }

    #[test]
    fn values_and_inert_settings() {
        let v = validate(
            Kind::Policy,
            &def(
                json!({"max-length": 5, "ha-mode": "all", "overflow": "reject-publish",
                        "dead-letter-exchange": "dlx", "alternate-exchange": "ae"}),
            ),
        )
        .unwrap();
        assert_eq!(v.max_length, Some(5));
        assert_eq!(v.overflow.as_deref(), Some("reject-publish"));
        assert_eq!(v.dead_letter_exchange.as_deref(), Some("dlx"));
        assert_eq!(v.alternate_exchange.as_deref(), Some("ae"));
    }

    #[test]
    fn the_operator_policy_bounds_numbers() {
        let p = validate(
            Kind::Policy,
            &def(json!({"max-length": 10, "message-ttl": 100})),
        )
        .unwrap();
        let op = validate(
            Kind::Operator,
            &def(json!({"max-length": 3, "message-ttl": 1000, "expires": 5000})),
        )
        .unwrap();
        let b = p.bounded_by(&op);
        assert_eq!(
            (b.max_length, b.message_ttl, b.expires),
            (Some(3), Some(100), Some(5000))
        );
        let m = merged(
            Some(&def(json!({"max-length": 10, "message-ttl": 100}))),
            Some(&def(json!({"max-length": 3, "message-ttl": 1000}))),
        );
        assert_eq!(m, json!({"max-length": 3, "message-ttl": 100}));
    }
}
