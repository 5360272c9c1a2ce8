//! Users, vhosts, permissions and topic permissions: rabbitmqctl's commands for them, and
//! the management API calls rabbitmqadmin makes for each.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use super::{list, no_such_vhost, Out};
use crate::ctl::client::{api_path, Client, CtlError};
use crate::ctl::format::{field, tag_list, tags_of};

/// Users, vhosts and permissions.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum AccessCommand {
    /// Create a user (the password is read from standard input when not given).
    #[command(name = "add_user")]
    AddUser {
        username: String,
        password: Option<String>,
        /// Comma-separated tags (administrator, monitoring, management, policymaker, ...).
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
    },
    /// Delete a user.
    #[command(name = "delete_user")]
    DeleteUser { username: String },
    /// Change a user's password, keeping its tags.
    #[command(name = "change_password")]
    ChangePassword { username: String, password: String },
    /// Replace a user's tags (none given: no tags), keeping its password.
    #[command(name = "set_user_tags")]
    SetUserTags { username: String, tags: Vec<String> },
    /// List users and their tags.
    #[command(name = "list_users")]
    ListUsers,
    /// Create a virtual host.
    #[command(name = "add_vhost")]
    AddVhost {
        vhost: String,
        #[arg(long)]
        description: Option<String>,
        /// Comma-separated tags.
        #[arg(long)]
        tags: Option<String>,
        #[arg(long, value_parser = ["classic", "quorum", "stream"])]
        default_queue_type: Option<String>,
    },
    /// Delete a virtual host and everything in it.
    #[command(name = "delete_vhost")]
    DeleteVhost { vhost: String },
    /// List virtual hosts: the columns given (default: name).
    #[command(name = "list_vhosts")]
    ListVhosts {
        #[arg(value_parser = VHOST_COLUMNS)]
        columns: Vec<String>,
    },
    /// Grant a user configure, write and read permissions (regular expressions) in a vhost.
    #[command(name = "set_permissions")]
    SetPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        username: String,
        configure: String,
        write: String,
        read: String,
    },
    /// Revoke a user's permissions in a vhost.
    #[command(name = "clear_permissions")]
    ClearPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        username: String,
    },
    /// List the permissions in a vhost.
    #[command(name = "list_permissions")]
    ListPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
    /// List a user's permissions in every vhost.
    #[command(name = "list_user_permissions")]
    ListUserPermissions { username: String },
    /// Set a user's topic permissions (write and read regular expressions) on an exchange.
    #[command(name = "set_topic_permissions")]
    SetTopicPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        username: String,
        exchange: String,
        write: String,
        read: String,
    },
    /// Clear a user's topic permissions in a vhost: on one exchange, or on all.
    #[command(name = "clear_topic_permissions")]
    ClearTopicPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        username: String,
        exchange: Option<String>,
    },
    /// List the topic permissions in a vhost.
    #[command(name = "list_topic_permissions")]
    ListTopicPermissions {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
    },
}

/// The columns `list_vhosts` knows (rabbitmqctl's vhost info items that the API has).
pub const VHOST_COLUMNS: [&str; 5] = [
    "name",
    "description",
    "tags",
    "tracing",
    "default_queue_type",
];

pub(super) fn execute(
    c: &Client,
    command: &AccessCommand,
    o: &mut Out<'_>,
) -> Result<(), CtlError> {
    match command {
        AccessCommand::AddUser {
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
        AccessCommand::DeleteUser { username } => {
            o.info(&format!("Deleting user \"{username}\" ..."))?;
            c.delete(&api_path(&["users", username]))
                .map_err(|e| no_such_user(e, username))
        }
        AccessCommand::ChangePassword { username, password } => {
            o.info(&format!("Changing password for user \"{username}\" ..."))?;
            let path = api_path(&["users", username]);
            let user = c.get(&path).map_err(|e| no_such_user(e, username))?;
            let tags = tags_of(user.get("tags")).join(",");
            c.put(&path, &json!({"password": password, "tags": tags}))
        }
        AccessCommand::SetUserTags { username, tags } => {
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
        AccessCommand::ListUsers => {
            o.info("Listing users ...")?;
            let users = list(c, &api_path(&["users"]))?;
            let rows: Vec<Vec<String>> = users
                .iter()
                .map(|u| vec![field(u, "name"), tag_list(u.get("tags"))])
                .collect();
            o.table(&["user", "tags"], &rows)
        }
        AccessCommand::AddVhost {
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
        AccessCommand::DeleteVhost { vhost } => {
            o.info(&format!("Deleting vhost \"{vhost}\" ..."))?;
            c.delete(&api_path(&["vhosts", vhost])).map_err(|e| {
                if e.is_not_found() {
                    CtlError::NoSuchVhost(vhost.clone())
                } else {
                    e
                }
            })
        }
        AccessCommand::ListVhosts { columns } => {
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
        AccessCommand::SetPermissions {
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
        AccessCommand::ClearPermissions { vhost, username } => {
            o.info(&format!(
                "Clearing permissions for user \"{username}\" in vhost \"{vhost}\" ..."
            ))?;
            match c.delete(&api_path(&["permissions", vhost, username])) {
                // Nothing to clear is no error for rabbitmqctl, a missing user or vhost is.
                Err(e) if e.is_not_found() => both_exist(c, vhost, username),
                other => other,
            }
        }
        AccessCommand::ListPermissions { vhost } => {
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
        AccessCommand::ListUserPermissions { username } => {
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
        AccessCommand::SetTopicPermissions {
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
        AccessCommand::ClearTopicPermissions {
            vhost,
            username,
            exchange,
        } => clear_topic_permissions(c, o, vhost, username, exchange.as_deref()),
        AccessCommand::ListTopicPermissions { vhost } => {
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

/// One `list_vhosts` cell.
pub fn vhost_cell(vhost: &Value, column: &str) -> String {
    match column {
        "tags" => tag_list(vhost.get("tags")),
        // The API leaves a vhost's default queue type out, or says "undefined", when unset.
        "default_queue_type" => match vhost.get(column) {
            None | Some(Value::Null) => "undefined".to_string(),
            Some(v) => crate::ctl::format::cell(v),
        },
        "tracing" => match vhost.get(column) {
            None | Some(Value::Null) => "false".to_string(),
            Some(v) => crate::ctl::format::cell(v),
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
pub(super) fn user_missing(c: &Client, e: CtlError, username: &str) -> CtlError {
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
