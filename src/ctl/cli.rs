//! The command tree: rabbitmqctl's command names, argument order and `-p VHOST`, and the
//! connection settings (flags or `WARREN_*` environment), accepted before or after the
//! command.

use clap::{Parser, Subcommand, ValueEnum};

use super::commands::access::AccessCommand;
use super::commands::definitions::DefinitionsCommand;
use super::commands::diagnostics::DiagnosticsCommand;
use super::commands::limits::LimitsCommand;
use super::commands::policies::PolicyCommand;
use super::commands::topology::TopologyCommand;

/// `warren ctl`: manage and inspect a broker over the management HTTP API, as rabbitmqctl.
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
    /// Output format of listings: tab-separated tables, or a JSON list of objects.
    #[arg(long, value_enum, default_value_t = Formatter::Table, global = true)]
    pub formatter: Formatter,
    #[command(subcommand)]
    pub command: Command,
}

/// How listings are printed (rabbitmqctl's `--formatter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Formatter {
    Table,
    Json,
}

/// The commands, as rabbitmqctl and rabbitmq-diagnostics name them; each group is parsed
/// and run by its module in `commands/`.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum Command {
    #[command(flatten)]
    Access(AccessCommand),
    #[command(flatten)]
    Limits(LimitsCommand),
    #[command(flatten)]
    Policies(PolicyCommand),
    #[command(flatten)]
    Definitions(DefinitionsCommand),
    #[command(flatten)]
    Topology(TopologyCommand),
    #[command(flatten)]
    Diagnostics(DiagnosticsCommand),
    /// Print a completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}
