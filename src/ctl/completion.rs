//! `warren ctl completion SHELL`: a completion script for `warren ctl ...`, from the command
//! tree itself (clap_complete), so it never falls behind the commands.

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use super::cli::CtlCli;
use super::client::CtlError;

/// Writes the script for `shell`. It completes the `warren` binary with `ctl` as its
/// subcommand: a script for the name "warren ctl" would not be valid shell.
pub fn write(shell: Shell, out: &mut dyn Write) -> Result<(), CtlError> {
    let mut warren = clap::Command::new("warren")
        .subcommand(CtlCli::command().name("ctl").bin_name("warren ctl"));
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut warren, "warren", &mut buf);
    out.write_all(&buf).map_err(CtlError::Output)
}
