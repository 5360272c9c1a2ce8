//! Policies and operator policies (rabbitmqctl's "operator policy overrides"): set, clear and
//! list, over `/api/policies` and `/api/operator-policies`.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::{kind_of, list, no_such_vhost, Out};
use crate::ctl::client::{api_path, Client, CtlError};

/// Policies and operator policies.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum PolicyCommand {
    /// Set a policy: NAME applies DEFINITION (a JSON object) to the objects PATTERN matches.
    #[command(name = "set_policy")]
    SetPolicy(PolicySpec),
    /// Clear a policy.
    #[command(name = "clear_policy")]
    ClearPolicy(PolicyName),
    /// List the policies of a vhost.
    #[command(name = "list_policies")]
    ListPolicies(InVhost),
    /// Set an operator policy (bounds that apply whatever the policy says).
    #[command(name = "set_operator_policy")]
    SetOperatorPolicy(PolicySpec),
    /// Clear an operator policy.
    #[command(name = "clear_operator_policy")]
    ClearOperatorPolicy(PolicyName),
    /// List the operator policies of a vhost.
    #[command(name = "list_operator_policies")]
    ListOperatorPolicies(InVhost),
}

/// set_policy's and set_operator_policy's arguments, in rabbitmqctl's order.
#[derive(Debug, Args, PartialEq, Eq)]
pub struct PolicySpec {
    #[arg(short = 'p', long = "vhost", default_value = "/")]
    pub vhost: String,
    /// Among the policies matching an object, the highest priority wins.
    #[arg(long, default_value_t = 0)]
    pub priority: i64,
    #[arg(long, default_value = "all", value_parser = APPLY_TO)]
    pub apply_to: String,
    pub name: String,
    /// A regular expression over queue or exchange names.
    pub pattern: String,
    /// A JSON object such as '{"max-length": 10}'.
    pub definition: String,
}

#[derive(Debug, Args, PartialEq, Eq)]
pub struct PolicyName {
    #[arg(short = 'p', long = "vhost", default_value = "/")]
    pub vhost: String,
    pub name: String,
}

#[derive(Debug, Args, PartialEq, Eq)]
pub struct InVhost {
    #[arg(short = 'p', long = "vhost", default_value = "/")]
    pub vhost: String,
}

/// What a policy may apply to (RabbitMQ 3.12's list; 3.10 knows the first three).
pub const APPLY_TO: [&str; 6] = [
    "queues",
    "exchanges",
    "all",
    "classic_queues",
    "quorum_queues",
    "streams",
];

/// The columns of list_policies, as rabbitmqctl prints them.
const COLUMNS: [&str; 6] = [
    "vhost",
    "name",
    "pattern",
    "apply-to",
    "definition",
    "priority",
];

/// The two kinds share everything but the endpoint and rabbitmqctl's wording.
#[derive(Clone, Copy)]
struct Kind {
    endpoint: &'static str,
    noun: &'static str,
    plural: &'static str,
}

const POLICY: Kind = Kind {
    endpoint: "policies",
    noun: "policy",
    plural: "policies",
};
const OPERATOR: Kind = Kind {
    endpoint: "operator-policies",
    noun: "operator policy override",
    plural: "operator policy overrides",
};

pub(super) fn execute(
    c: &Client,
    command: &PolicyCommand,
    o: &mut Out<'_>,
) -> Result<(), CtlError> {
    match command {
        PolicyCommand::SetPolicy(spec) => set(c, o, POLICY, spec),
        PolicyCommand::SetOperatorPolicy(spec) => set(c, o, OPERATOR, spec),
        PolicyCommand::ClearPolicy(p) => clear(c, o, POLICY, p),
        PolicyCommand::ClearOperatorPolicy(p) => {
            // rabbitmqctl says "operator policy", not "override", when clearing.
            let kind = Kind {
                noun: "operator policy",
                ..OPERATOR
            };
            clear(c, o, kind, p)
        }
        PolicyCommand::ListPolicies(v) => show(c, o, POLICY, &v.vhost),
        PolicyCommand::ListOperatorPolicies(v) => show(c, o, OPERATOR, &v.vhost),
    }
}

fn set(c: &Client, o: &mut Out<'_>, kind: Kind, spec: &PolicySpec) -> Result<(), CtlError> {
    o.info(&format!(
        "Setting {} \"{}\" for pattern \"{}\" to \"{}\" with priority \"{}\" for vhost \"{}\" ...",
        kind.noun, spec.name, spec.pattern, spec.definition, spec.priority, spec.vhost
    ))?;
    let definition = parse_definition(&spec.definition)?;
    c.put(
        &api_path(&[kind.endpoint, &spec.vhost, &spec.name]),
        &json!({
            "pattern": spec.pattern,
            "definition": definition,
            "priority": spec.priority,
            "apply-to": spec.apply_to,
        }),
    )
    .map_err(|e| no_such_vhost(e, &spec.vhost))
}

fn clear(c: &Client, o: &mut Out<'_>, kind: Kind, p: &PolicyName) -> Result<(), CtlError> {
    o.info(&format!(
        "Clearing {} \"{}\" on vhost \"{}\" ...",
        kind.noun, p.name, p.vhost
    ))?;
    c.delete(&api_path(&[kind.endpoint, &p.vhost, &p.name]))
        .map_err(|e| {
            if e.is_not_found() {
                CtlError::NoSuchParameter
            } else {
                e
            }
        })
}

fn show(c: &Client, o: &mut Out<'_>, kind: Kind, vhost: &str) -> Result<(), CtlError> {
    o.info(&format!(
        "Listing {} for vhost \"{vhost}\" ...",
        kind.plural
    ))?;
    let policies =
        list(c, &api_path(&[kind.endpoint, vhost])).map_err(|e| no_such_vhost(e, vhost))?;
    let rows: Vec<Vec<Value>> = policies.iter().map(policy_row).collect();
    o.records(&COLUMNS, &rows)
}

/// One policy as list_policies prints it; the definition as compact JSON text, in the JSON
/// formatter too (as rabbitmqctl does).
pub(crate) fn policy_row(p: &Value) -> Vec<Value> {
    COLUMNS
        .iter()
        .map(|col| match (*col, p.get(*col)) {
            ("definition", Some(d)) => Value::String(d.to_string()),
            (_, Some(v)) => v.clone(),
            (_, None) => Value::Null,
        })
        .collect()
}

/// A policy definition: a JSON object.
pub(crate) fn parse_definition(definition: &str) -> Result<Value, CtlError> {
    match serde_json::from_str::<Value>(definition) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(other) => Err(CtlError::BadJson {
            input: definition.to_string(),
            reason: format!("expected a JSON object, got {}", kind_of(&other)),
        }),
        Err(e) => Err(CtlError::BadJson {
            input: definition.to_string(),
            reason: e.to_string(),
        }),
    }
}
