//! `warren ctl`: a rabbitmqctl-compatible command line over the management HTTP API.
//!
//! The commands keep rabbitmqctl's names, argument order and output (an informational first
//! line such as `Adding user "alice" ...`, then tab-separated tables), and each maps to the
//! HTTP calls rabbitmqadmin makes: [`client`] speaks HTTP, [`format`] prints. It works
//! against Warren's management listener and against RabbitMQ's own.

pub mod client;
pub mod format;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde_json::{json, Map, Value};

use client::{api_path, Client, CtlError};
use format::{field, table, tag_list, tags_of};

/// `warren ctl`: manage users, vhosts, permissions and limits over the management HTTP API.
#[derive(Debug, Parser)]
#[command(name = "warren ctl", bin_name = "warren ctl", version)]
pub struct CtlCli {
    /// Management API base URL.
    #[arg(
        long,
        env = "WARREN_MANAGEMENT_URL",
        default_value = "http://localhost:15672",
        global = true
    )]
    pub url: String,
    /// User to log in to the management API as.
    #[arg(
        short = 'u',
        long = "username",
        env = "WARREN_USERNAME",
        default_value = "guest",
        global = true
    )]
    pub login_username: String,
    /// That user's password.
    #[arg(
        long = "password",
        env = "WARREN_PASSWORD",
        default_value = "guest",
        hide_env_values = true,
        hide_default_value = true,
        global = true
    )]
    pub login_password: String,
    /// Suppress informational messages (the first line of each command's output).
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Do not print the header line of a table.
    #[arg(long, global = true)]
    pub no_table_headers: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands, as rabbitmqctl names them.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Command {
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

/// The columns `list_vhosts` knows (rabbitmqctl's vhost info items that the API has).
const VHOST_COLUMNS: [&str; 5] = [
    "name",
    "description",
    "tags",
    "tracing",
    "default_queue_type",
];

/// Runs `warren ctl`: `args` starts at `ctl` (the program name clap skips). Returns the exit
/// code: clap's for usage errors (2; 0 for --help), [`CtlError::exit_code`] for the rest.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match CtlCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // --help and --version come here too, to stdout with 0.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    let mut stdout = std::io::stdout().lock();
    match run(&cli, &mut stdout) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = stdout.flush();
            eprintln!("Error:\n{e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs one parsed command, writing its output to `out`.
pub fn run(cli: &CtlCli, out: &mut dyn Write) -> Result<(), CtlError> {
    let client = Client::new(&cli.url, &cli.login_username, &cli.login_password)?;
    let mut o = Out {
        out,
        quiet: cli.quiet,
        headers: !cli.no_table_headers,
    };
    execute(&client, &cli.command, &mut o)
}

/// Where a command writes: the informational line (unless quiet), then its results.
struct Out<'a> {
    out: &'a mut dyn Write,
    quiet: bool,
    headers: bool,
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

fn execute(c: &Client, command: &Command, o: &mut Out<'_>) -> Result<(), CtlError> {
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
fn parse_limits(definition: &str) -> Result<Map<String, Value>, CtlError> {
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
fn vhost_cell(vhost: &Value, column: &str) -> String {
    match column {
        "tags" => tag_list(vhost.get("tags")),
        // The API leaves a vhost's default queue type out, or says "undefined", when unset.
        "default_queue_type" => match vhost.get(column) {
            None | Some(Value::Null) => "undefined".to_string(),
            Some(v) => format::cell(v),
        },
        "tracing" => match vhost.get(column) {
            None | Some(Value::Null) => "false".to_string(),
            Some(v) => format::cell(v),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<CtlCli, clap::Error> {
        CtlCli::try_parse_from(std::iter::once("ctl").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_tree_is_consistent() {
        <CtlCli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn users() {
        let cli = parse(&["add_user", "alice", "s3cret"]).unwrap();
        assert_eq!(
            cli.command,
            Command::AddUser {
                username: "alice".into(),
                password: Some("s3cret".into()),
                tags: vec![]
            }
        );
        assert_eq!(cli.url, "http://localhost:15672");
        assert_eq!(cli.login_username, "guest");
        assert!(!cli.quiet);
        let cli = parse(&["add_user", "bob", "pw", "--tags", "monitoring,management"]).unwrap();
        assert_eq!(
            cli.command,
            Command::AddUser {
                username: "bob".into(),
                password: Some("pw".into()),
                tags: vec!["monitoring".into(), "management".into()]
            }
        );
        assert_eq!(
            parse(&["set_user_tags", "bob", "a", "b"]).unwrap().command,
            Command::SetUserTags {
                username: "bob".into(),
                tags: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            parse(&["set_user_tags", "bob"]).unwrap().command,
            Command::SetUserTags {
                username: "bob".into(),
                tags: vec![]
            }
        );
        assert!(parse(&["change_password", "bob"]).is_err());
        assert!(parse(&["delete_user"]).is_err());
        assert!(parse(&["addUser", "x", "y"]).is_err());
    }

    #[test]
    fn connection_settings_anywhere() {
        let cli = parse(&[
            "-q",
            "--url",
            "http://127.0.0.1:15673",
            "list_users",
            "-u",
            "admin",
            "--password",
            "pw",
        ])
        .unwrap();
        assert!(cli.quiet);
        assert_eq!(cli.url, "http://127.0.0.1:15673");
        assert_eq!(cli.login_username, "admin");
        assert_eq!(cli.login_password, "pw");
        assert_eq!(cli.command, Command::ListUsers);
    }

    #[test]
    fn the_login_is_not_the_user_managed() {
        // The global --username/--password once shared clap ids with add_user's positionals.
        let cli = parse(&[
            "add_user",
            "alice",
            "pw",
            "-u",
            "admin",
            "--password",
            "root",
        ])
        .unwrap();
        assert_eq!(cli.login_username, "admin");
        assert_eq!(cli.login_password, "root");
        assert_eq!(
            cli.command,
            Command::AddUser {
                username: "alice".into(),
                password: Some("pw".into()),
                tags: vec![]
            }
        );
    }

    #[test]
    fn vhost_defaults_to_slash_and_p_comes_first() {
        assert_eq!(
            parse(&["set_permissions", "bob", ".*", "", "^r"])
                .unwrap()
                .command,
            Command::SetPermissions {
                vhost: "/".into(),
                username: "bob".into(),
                configure: ".*".into(),
                write: "".into(),
                read: "^r".into()
            }
        );
        assert_eq!(
            parse(&["set_permissions", "-p", "prod", "bob", ".*", ".*", ".*"])
                .unwrap()
                .command,
            Command::SetPermissions {
                vhost: "prod".into(),
                username: "bob".into(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into()
            }
        );
        assert_eq!(
            parse(&["clear_topic_permissions", "-p", "v", "bob", "amq.topic"])
                .unwrap()
                .command,
            Command::ClearTopicPermissions {
                vhost: "v".into(),
                username: "bob".into(),
                exchange: Some("amq.topic".into())
            }
        );
        assert_eq!(
            parse(&["list_permissions"]).unwrap().command,
            Command::ListPermissions { vhost: "/".into() }
        );
        assert_eq!(
            parse(&["set_vhost_limits", "-p", "v", r#"{"max-connections": 10}"#])
                .unwrap()
                .command,
            Command::SetVhostLimits {
                vhost: "v".into(),
                definition: r#"{"max-connections": 10}"#.into()
            }
        );
        assert!(parse(&["set_permissions", "bob", ".*", ".*"]).is_err());
    }

    #[test]
    fn vhosts() {
        assert_eq!(
            parse(&[
                "add_vhost",
                "qa",
                "--description",
                "QA",
                "--tags",
                "a,b",
                "--default-queue-type",
                "quorum"
            ])
            .unwrap()
            .command,
            Command::AddVhost {
                vhost: "qa".into(),
                description: Some("QA".into()),
                tags: Some("a,b".into()),
                default_queue_type: Some("quorum".into())
            }
        );
        assert!(parse(&["add_vhost", "qa", "--default-queue-type", "lazy"]).is_err());
        assert_eq!(
            parse(&["list_vhosts", "name", "tracing"]).unwrap().command,
            Command::ListVhosts {
                columns: vec!["name".into(), "tracing".into()]
            }
        );
        let e = parse(&["list_vhosts", "bogus"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn limits() {
        assert_eq!(
            parse(&["clear_user_limits", "bob", "all"]).unwrap().command,
            Command::ClearUserLimits {
                username: "bob".into(),
                limit: "all".into()
            }
        );
        assert!(parse(&["clear_user_limits", "bob"]).is_err());
        assert_eq!(
            parse(&["list_user_limits"]).unwrap().command,
            Command::ListUserLimits {
                user: "guest".into(),
                global: false
            }
        );
        assert_eq!(
            parse(&["list_vhost_limits", "--global"]).unwrap().command,
            Command::ListVhostLimits {
                vhost: "/".into(),
                global: true
            }
        );
        let m = parse_limits(r#"{"max-connections": 10, "max-queues": 5}"#).unwrap();
        assert_eq!(m.get("max-connections"), Some(&json!(10)));
        assert_eq!(m.len(), 2);
        let e = parse_limits("notjson").unwrap_err();
        assert_eq!(e.exit_code(), 65);
        assert!(matches!(parse_limits("[1]"), Err(CtlError::BadJson { .. })));
    }

    #[test]
    fn vhost_cells() {
        let v = json!({"name": "/", "description": "Default virtual host", "tags": [],
                       "tracing": false, "default_queue_type": "undefined"});
        let cells: Vec<String> = VHOST_COLUMNS.iter().map(|c| vhost_cell(&v, c)).collect();
        assert_eq!(
            cells,
            ["/", "Default virtual host", "[]", "false", "undefined"]
        );
        let bare = json!({"name": "x"});
        assert_eq!(vhost_cell(&bare, "default_queue_type"), "undefined");
        assert_eq!(vhost_cell(&bare, "tracing"), "false");
        assert_eq!(vhost_cell(&bare, "description"), "");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(CtlError::NoSuchUser("x".into()).exit_code(), 67);
        assert_eq!(CtlError::NoSuchVhost("x".into()).exit_code(), 65);
        assert_eq!(CtlError::UserExists("x".into()).exit_code(), 70);
        let auth = CtlError::AuthFailed {
            user: "guest".into(),
            reason: "Login failed".into(),
        };
        assert_eq!(auth.exit_code(), 1);
        assert!(auth
            .to_string()
            .contains("authentication failed for user \"guest\""));
    }
}
