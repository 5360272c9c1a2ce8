//! The command tree: rabbitmqctl's command names, argument order and `-p VHOST`, and the
//! connection settings (flags or `WARREN_*` environment), accepted before or after the
//! command.

use clap::{Parser, Subcommand};

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
pub(super) const VHOST_COLUMNS: [&str; 5] = [
    "name",
    "description",
    "tags",
    "tracing",
    "default_queue_type",
];
