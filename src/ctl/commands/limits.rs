//! Vhost and user limits: set, clear and list, as rabbitmqctl replaces vhost limits and
//! merges user limits.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::access::user_missing;
use super::{kind_of, list, no_such_vhost, Out};
use crate::ctl::client::{api_path, Client, CtlError};
use crate::ctl::format::field;

/// Vhost and user limits (the names, all ending in `Limits`, are rabbitmqctl's).
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum LimitsCommand {
    /// Replace a vhost's limits: a JSON object such as '{"max-connections": 10}'.
    #[command(name = "set_vhost_limits")]
    SetVhostLimits {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        definition: String,
    },
    /// Clear all of a vhost's limits.
    #[command(name = "clear_vhost_limits")]
    ClearVhostLimits {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
    /// List a vhost's limits, or every vhost's with --global.
    #[command(name = "list_vhost_limits")]
    ListVhostLimits {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        #[arg(long)]
        global: bool,
    },
    /// Set user limits: a JSON object such as '{"max-connections": 10, "max-channels": 20}'.
    #[command(name = "set_user_limits")]
    SetUserLimits {
        username: String,
        definition: String,
    },
    /// Clear one of a user's limits, or `all`.
    #[command(name = "clear_user_limits")]
    ClearUserLimits { username: String, limit: String },
    /// List a user's limits, or every user's with --global.
    #[command(name = "list_user_limits")]
    ListUserLimits {
        #[arg(long, default_value = "guest")]
        user: String,
        #[arg(long)]
        global: bool,
    },
}

pub(super) fn execute(
    c: &Client,
    command: &LimitsCommand,
    o: &mut Out<'_>,
) -> Result<(), CtlError> {
    match command {
        LimitsCommand::SetVhostLimits { vhost, definition } => {
            o.info(&format!(
                "Setting vhost limits to \"{definition}\" for vhost \"{vhost}\" ..."
            ))?;
            let wanted = parse_limits(definition)?;
            // rabbitmqctl replaces the whole set: the limits not named go, the named ones are
            // put (in that order, so a limit kept is never absent in between).
            for name in current_limits(c, "vhost-limits", "vhost", vhost)?.keys() {
                if !wanted.contains_key(name) {
                    delete_limit(c, "vhost-limits", vhost, name)?;
                }
            }
            for (name, value) in &wanted {
                c.put(
                    &api_path(&["vhost-limits", vhost, name]),
                    &json!({ "value": value }),
                )
                .map_err(|e| no_such_vhost(e, vhost))?;
            }
            Ok(())
        }
        LimitsCommand::ClearVhostLimits { vhost } => {
            o.info(&format!("Clearing vhost \"{vhost}\" limits ..."))?;
            for name in current_limits(c, "vhost-limits", "vhost", vhost)?.keys() {
                delete_limit(c, "vhost-limits", vhost, name)?;
            }
            Ok(())
        }
        LimitsCommand::ListVhostLimits { vhost, global } => {
            if *global {
                o.info("Listing limits for all vhosts ...")?;
                return list_all_limits(c, o, "vhost-limits", "vhost");
            }
            o.info(&format!("Listing limits for vhost \"{vhost}\" ..."))?;
            let limits = current_limits(c, "vhost-limits", "vhost", vhost)?;
            // rabbitmqctl 3.10 prints an empty line for a vhost without limits (and `{}`
            // for a user without).
            if limits.is_empty() {
                o.line("")
            } else {
                o.line(&Value::Object(limits).to_string())
            }
        }
        LimitsCommand::SetUserLimits {
            username,
            definition,
        } => {
            o.info(&format!(
                "Setting user limits to \"{definition}\" for user \"{username}\" ..."
            ))?;
            // rabbitmqctl merges user limits into those set before (unlike vhost limits).
            for (name, value) in &parse_limits(definition)? {
                c.put(
                    &api_path(&["user-limits", username, name]),
                    &json!({ "value": value }),
                )
                .map_err(|e| user_missing(c, e, username))?;
            }
            Ok(())
        }
        LimitsCommand::ClearUserLimits { username, limit } => {
            if limit == "all" {
                o.info(&format!("Clearing all limits for user \"{username}\" ..."))?;
                for name in current_limits(c, "user-limits", "user", username)?.keys() {
                    delete_limit(c, "user-limits", username, name)?;
                }
                Ok(())
            } else {
                o.info(&format!(
                    "Clearing \"{limit}\" limit for user \"{username}\" ..."
                ))?;
                delete_limit(c, "user-limits", username, limit)
            }
        }
        LimitsCommand::ListUserLimits { user, global } => {
            if *global {
                o.info("Listing limits for all users ...")?;
                return list_all_limits(c, o, "user-limits", "user");
            }
            o.info(&format!("Listing limits for user \"{user}\" ..."))?;
            let limits = current_limits(c, "user-limits", "user", user)?;
            o.line(&Value::Object(limits).to_string())
        }
    }
}

/// The limits of one vhost or user: from the list of all (`GET /api/vhost-limits` or
/// `/api/user-limits`, entries `{"vhost" | "user": name, "value": {limit: n}}`).
fn current_limits(
    c: &Client,
    endpoint: &str,
    owner_key: &str,
    owner: &str,
) -> Result<Map<String, Value>, CtlError> {
    let all = list(c, &api_path(&[endpoint]))?;
    let mut limits = Map::new();
    for entry in all {
        if entry.get(owner_key).and_then(Value::as_str) != Some(owner) {
            continue;
        }
        if let Some(Value::Object(values)) = entry.get("value") {
            limits.extend(values.clone());
        }
    }
    Ok(limits)
}

/// DELETE one limit; one that is not set is no error (as for rabbitmqctl).
fn delete_limit(c: &Client, endpoint: &str, owner: &str, name: &str) -> Result<(), CtlError> {
    match c.delete(&api_path(&[endpoint, owner, name])) {
        Err(e) if e.is_not_found() => Ok(()),
        other => other,
    }
}

/// `--global` listings: `vhost\tlimits` (or `user\tlimits`) rows.
fn list_all_limits(
    c: &Client,
    o: &mut Out<'_>,
    endpoint: &str,
    owner_key: &str,
) -> Result<(), CtlError> {
    let all = list(c, &api_path(&[endpoint]))?;
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|e| {
            vec![
                field(e, owner_key),
                e.get("value").map(Value::to_string).unwrap_or_default(),
            ]
        })
        .collect();
    o.table(&[owner_key, "limits"], &rows)
}

/// A limits definition: a JSON object (`{"max-connections": 10}`).
pub(crate) fn parse_limits(definition: &str) -> Result<Map<String, Value>, CtlError> {
    match serde_json::from_str::<Value>(definition) {
        Ok(Value::Object(m)) => Ok(m),
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
