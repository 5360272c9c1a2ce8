//! `warren ctl`: a rabbitmqctl-compatible command line over the management HTTP API.
//!
//! The commands keep rabbitmqctl's names, argument order and output (an informational first
//! line such as `Adding user "alice" ...`, then tab-separated tables), and each maps to the
//! HTTP calls rabbitmqadmin makes: [`client`] speaks HTTP, [`format`] prints. It works
//! against Warren's management listener and against RabbitMQ's own.

mod cli;
pub mod client;
mod commands;
mod completion;
pub mod format;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ops;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

pub use cli::{Command, CtlCli, Formatter};
use client::{Client, CtlError, EX_USAGE};
use commands::{execute, Out};

/// Runs `warren ctl`: `args` starts at `ctl` (the program name clap skips). Returns the exit
/// code: 64 for usage errors (rabbitmqctl's; 0 for --help), [`CtlError::exit_code`] for the
/// rest.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let cli = match CtlCli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            // --help and --version come here too, to stdout with 0.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EX_USAGE } else { 0 });
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
    if let Command::Completion { shell } = &cli.command {
        return completion::write(*shell, out);
    }
    let client = Client::new(&cli.url, &cli.login_username, &cli.login_password)?;
    let mut o = Out {
        out,
        quiet: cli.quiet,
        headers: !cli.no_table_headers,
        json: cli.formatter == Formatter::Json,
    };
    execute(&client, &cli.command, &mut o)
}
