//! What each command does: the management API calls rabbitmqadmin makes for it, and the
//! rabbitmqctl-style lines and tables it prints.

use std::io::Write;

use serde_json::{json, Map, Value};

use super::cli::Command;
use super::client::{api_path, Client, CtlError};
use super::format::{field, table, tag_list, tags_of};

/// Where a command writes: the informational line (unless quiet), then its results.
pub(super) struct Out<'a> {
    pub out: &'a mut dyn Write,
    pub quiet: bool,
    pub headers: bool,
}

impl Out<'_> {
    fn info(&mut self, line: &str) -> Result<(), CtlError> {
        if self.quiet {
            return Ok(());
        }
        writeln!(self.out, "{line}").map_err(CtlError::Output)
    }

    fn line(&mut self, line: &str) -> Result<(), CtlError> {
        writeln!(self.out, "{line}").map_err(CtlError::Output)
    }

    fn table(&mut self, header: &[&str], rows: &[Vec<String>]) -> Result<(), CtlError> {
        self.out
            .write_all(table(header, rows, self.headers).as_bytes())
            .map_err(CtlError::Output)
    }
}

pub(super) fn execute(c: &Client, command: &Command, o: &mut Out<'_>) -> Result<(), CtlError> {
    match command {
        Command::AddUser {
            username,
            password,
            tags,
        } => {
            o.info(&format!("Adding user \"{username}\" ..."))?;
            let password = match password {
                Some(p) => p.clone(),
                None => read_password()?,
            };
            // rabbitmqctl refuses an existing user; the API's PUT would overwrite it.
            match c.get(&api_path(&["users", username])) {
                Ok(_) => return Err(CtlError::UserExists(username.clone())),
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            c.put(
                &api_path(&["users", username]),
                &json!({"password": password, "tags": tags.join(",")}),
            )?;
            o.info(
                "Done. Don't forget to grant the user permissions to some virtual hosts! \
                 See 'warren ctl help set_permissions' to learn more.",
            )
        }
        Command::DeleteUser { username } => {
            o.info(&format!("Deleting user \"{username}\" ..."))?;
            c.delete(&api_path(&["users", username]))
                .map_err(|e| no_such_user(e, username))
        }
        Command::ChangePassword { username, password } => {
            o.info(&format!("Changing password for user \"{username}\" ..."))?;
            let path = api_path(&["users", username]);
            let user = c.get(&path).map_err(|e| no_such_user(e, username))?;
            let tags = tags_of(user.get("tags")).join(",");
            c.put(&path, &json!({"password": password, "tags": tags}))
        }
        Command::SetUserTags { username, tags } => {
            o.info(&format!(
                "Setting tags for user \"{username}\" to [{}] ...",
                tags.join(", ")
            ))?;
            let path = api_path(&["users", username]);
            let user = c.get(&path).map_err(|e| no_such_user(e, username))?;
            // The password stays: sent back as the hash it is stored as.
            let mut body = Map::new();
            for key in ["password_hash", "hashing_algorithm"] {
                if let Some(v) = user.get(key) {
                    body.insert(key.to_string(), v.clone());
                }
            }
            body.insert("tags".to_string(), Value::String(tags.join(",")));
            c.put(&path, &Value::Object(body))
        }
        Command::ListUsers => {
            o.info("Listing users ...")?;
            let users = list(c, &api_path(&["users"]))?;
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| vec![field(u, "name"), tag_list(u.get("tags"))])
                .collect();
            o.table(&["user", "tags"], &rows)
        }
        Command::AddVhost {
            vhost,
            description,
            tags,
            default_queue_type,
        } => {
            o.info(&format!("Adding vhost \"{vhost}\" ..."))?;
            let mut body = Map::new();
            if let Some(d) = description {
                body.insert("description".to_string(), Value::String(d.clone()));
            }
            if let Some(t) = tags {
                body.insert("tags".to_string(), Value::String(t.clone()));
            }
            if let Some(q) = default_queue_type {
                // RabbitMQ 3.11+ (and Warren) read `default_queue_type`; 3.10 reads only
                // `defaultqueuetype`. Each ignores the other key, so both go.
                body.insert("default_queue_type".to_string(), Value::String(q.clone()));
                body.insert("defaultqueuetype".to_string(), Value::String(q.clone()));
            }
            c.put(&api_path(&["vhosts", vhost]), &Value::Object(body))
        }
        Command::DeleteVhost { vhost } => {
            o.info(&format!("Deleting vhost \"{vhost}\" ..."))?;
            c.delete(&api_path(&["vhosts", vhost])).map_err(|e| {
                if e.is_not_found() {
                    CtlError::NoSuchVhost(vhost.clone())
                } else {
                    e
                }
            })
        }
        Command::ListVhosts { columns } => {
            o.info("Listing vhosts ...")?;
            let columns: Vec<&str> = if columns.is_empty() {
                vec!["name"]
            } else {
                columns.iter().map(String::as_str).collect()
            };
            let vhosts = list(c, &api_path(&["vhosts"]))?;
            let rows: Vec<Vec<String>> = vhosts
                .iter()
                .map(|v| columns.iter().map(|col| vhost_cell(v, col)).collect())
                .collect();
            o.table(&columns, &rows)
        }
        Command::SetPermissions {
            vhost,
            username,
            configure,
            write,
            read,
        } => {
            o.info(&format!(
                "Setting permissions for user \"{username}\" in vhost \"{vhost}\" ..."
            ))?;
            c.put(
                &api_path(&["permissions", vhost, username]),
                &json!({"configure": configure, "write": write, "read": read}),
            )
            .map_err(|e| which_is_missing(c, e, vhost, username))
        }
        Command::ClearPermissions { vhost, username } => {
            o.info(&format!(
                "Clearing permissions for user \"{username}\" in vhost \"{vhost}\" ..."
            ))?;
            match c.delete(&api_path(&["permissions", vhost, username])) {
                // Nothing to clear is no error for rabbitmqctl, a missing user or vhost is.
                Err(e) if e.is_not_found() => both_exist(c, vhost, username),
                other => other,
            }
        }
        Command::ListPermissions { vhost } => {
            o.info(&format!("Listing permissions for vhost \"{vhost}\" ..."))?;
            let perms = list(c, &api_path(&["vhosts", vhost, "permissions"]))
                .map_err(|e| no_such_vhost(e, vhost))?;
            let rows: Vec<Vec<String>> = perms
                .iter()
                .map(|p| {
                    ["user", "configure", "write", "read"]
                        .iter()
                        .map(|k| field(p, k))
                        .collect()
                })
                .collect();
            o.table(&["user", "configure", "write", "read"], &rows)
        }
        Command::ListUserPermissions { username } => {
            o.info(&format!("Listing permissions for user \"{username}\" ..."))?;
            let perms = list(c, &api_path(&["users", username, "permissions"]))
                .map_err(|e| no_such_user(e, username))?;
            let rows: Vec<Vec<String>> = perms
                .iter()
                .map(|p| {
                    ["vhost", "configure", "write", "read"]
                        .iter()
                        .map(|k| field(p, k))
                        .collect()
                })
                .collect();
            o.table(&["vhost", "configure", "write", "read"], &rows)
        }
        Command::SetTopicPermissions {
            vhost,
            username,
            exchange,
            write,
            read,
        } => {
            o.info(&format!(
                "Setting topic permissions on \"{exchange}\" for user \"{username}\" in vhost \"{vhost}\" ..."
            ))?;
            c.put(
                &api_path(&["topic-permissions", vhost, username]),
                &json!({"exchange": exchange, "write": write, "read": read}),
            )
            .map_err(|e| which_is_missing(c, e, vhost, username))
        }
        Command::ClearTopicPermissions {
            vhost,
            username,
            exchange,
        } => clear_topic_permissions(c, o, vhost, username, exchange.as_deref()),
        Command::ListTopicPermissions { vhost } => {
            o.info(&format!(
                "Listing topic permissions for vhost \"{vhost}\" ..."
            ))?;
            let perms = list(c, &api_path(&["vhosts", vhost, "topic-permissions"]))
                .map_err(|e| no_such_vhost(e, vhost))?;
            let rows: Vec<Vec<String>> = perms
                .iter()
                .map(|p| {
                    ["user", "exchange", "write", "read"]
                        .iter()
                        .map(|k| field(p, k))
                        .collect()
                })
                .collect();
            o.table(&["user", "exchange", "write", "read"], &rows)
        }
        Command::SetVhostLimits { vhost, definition } => {
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
        Command::ClearVhostLimits { vhost } => {
            o.info(&format!("Clearing vhost \"{vhost}\" limits ..."))?;
            for name in current_limits(c, "vhost-limits", "vhost", vhost)?.keys() {
                delete_limit(c, "vhost-limits", vhost, name)?;
            }
            Ok(())
        }
        Command::ListVhostLimits { vhost, global } => {
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
        Command::SetUserLimits {
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
        Command::ClearUserLimits { username, limit } => {
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
        Command::ListUserLimits { user, global } => {
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

/// One exchange's topic permissions, or all of a user's in the vhost.
fn clear_topic_permissions(
    c: &Client,
    o: &mut Out<'_>,
    vhost: &str,
    username: &str,
    exchange: Option<&str>,
) -> Result<(), CtlError> {
    let path = api_path(&["topic-permissions", vhost, username]);
    let Some(exchange) = exchange else {
        o.info(&format!(
            "Clearing topic permissions for user \"{username}\" in vhost \"{vhost}\" ..."
        ))?;
        return match c.delete(&path) {
            Err(e) if e.is_not_found() => both_exist(c, vhost, username),
            other => other,
        };
    };
    o.info(&format!(
        "Clearing topic permissions on \"{exchange}\" for user \"{username}\" in vhost \"{vhost}\" ..."
    ))?;
    // The management API (RabbitMQ 3.10 too) has no DELETE for one exchange's topic
    // permissions, only for all of a user's in a vhost: so read them, delete them all, and put
    // back those of the other exchanges. Not atomic: a client checked in between sees none.
    let all = list(c, &api_path(&["vhosts", vhost, "topic-permissions"]))
        .map_err(|e| no_such_vhost(e, vhost))?;
    let mine: Vec<&Value> = all
        .iter()
        .filter(|p| p.get("user").and_then(Value::as_str) == Some(username))
        .collect();
    if !mine
        .iter()
        .any(|p| p.get("exchange").and_then(Value::as_str) == Some(exchange))
    {
        // Nothing to clear (rabbitmqctl says nothing either).
        return Ok(());
    }
    c.delete(&path)?;
    for p in mine {
        if p.get("exchange").and_then(Value::as_str) == Some(exchange) {
            continue;
        }
        c.put(
            &path,
            &json!({
                "exchange": field(p, "exchange"),
                "write": field(p, "write"),
                "read": field(p, "read"),
            }),
        )?;
    }
    Ok(())
}

/// GET a list endpoint.
fn list(c: &Client, path: &str) -> Result<Vec<Value>, CtlError> {
    match c.get(path)? {
        Value::Array(items) => Ok(items),
        other => Err(CtlError::BadResponse {
            method: "GET",
            path: path.to_string(),
            reason: format!("expected a JSON list, got {}", kind_of(&other)),
        }),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
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
pub(super) fn parse_limits(definition: &str) -> Result<Map<String, Value>, CtlError> {
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

/// One `list_vhosts` cell.
pub(super) fn vhost_cell(vhost: &Value, column: &str) -> String {
    match column {
        "tags" => tag_list(vhost.get("tags")),
        // The API leaves a vhost's default queue type out, or says "undefined", when unset.
        "default_queue_type" => match vhost.get(column) {
            None | Some(Value::Null) => "undefined".to_string(),
            Some(v) => super::format::cell(v),
        },
        "tracing" => match vhost.get(column) {
            None | Some(Value::Null) => "false".to_string(),
            Some(v) => super::format::cell(v),
        },
        _ => field(vhost, column),
    }
}

fn no_such_user(e: CtlError, username: &str) -> CtlError {
    if e.is_not_found() {
        CtlError::NoSuchUser(username.to_string())
    } else {
        e
    }
}

fn no_such_vhost(e: CtlError, vhost: &str) -> CtlError {
    if e.is_not_found() {
        CtlError::NoSuchVhost(vhost.to_string())
    } else {
        e
    }
}

/// After a PUT of permissions failed with RabbitMQ's 400 `vhost_or_user_not_found`: say which.
fn which_is_missing(c: &Client, e: CtlError, vhost: &str, username: &str) -> CtlError {
    match &e {
        CtlError::Api {
            status: 400 | 404, ..
        } => match both_exist(c, vhost, username) {
            Ok(()) => e,
            Err(missing) => missing,
        },
        _ => e,
    }
}

/// After a PUT for a user failed with a 400 or 404 (RabbitMQ says `no_such_user` as a 400):
/// whether the user is what is missing.
fn user_missing(c: &Client, e: CtlError, username: &str) -> CtlError {
    match &e {
        CtlError::Api {
            status: 400 | 404, ..
        } => match c.get(&api_path(&["users", username])) {
            Err(missing) if missing.is_not_found() => CtlError::NoSuchUser(username.to_string()),
            _ => e,
        },
        _ => e,
    }
}

/// Ok when the user and the vhost exist; else which of them does not.
fn both_exist(c: &Client, vhost: &str, username: &str) -> Result<(), CtlError> {
    c.get(&api_path(&["vhosts", vhost]))
        .map_err(|e| no_such_vhost(e, vhost))?;
    c.get(&api_path(&["users", username]))
        .map_err(|e| no_such_user(e, username))?;
    Ok(())
}

/// add_user without a password: one line of standard input (as rabbitmqctl reads it).
fn read_password() -> Result<String, CtlError> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .map_err(CtlError::Stdin)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
