//! export_definitions and import_definitions: the broker's definitions (users, vhosts,
//! permissions, policies, topology) as one JSON document, to and from a file or `-`.

use std::io::Read;

use clap::Subcommand;
use serde_json::Value;

use super::Out;
use crate::ctl::client::{api_path, Client, CtlError};

/// Definitions export and import.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum DefinitionsCommand {
    /// Export the definitions to PATH (`-` for standard output).
    #[command(name = "export_definitions")]
    ExportDefinitions {
        path: String,
        /// Only JSON (rabbitmqctl's `erlang` format is not supported).
        #[arg(long, default_value = "json", value_parser = ["json"])]
        format: String,
    },
    /// Import the definitions in PATH (`-` for standard input).
    #[command(name = "import_definitions")]
    ImportDefinitions {
        path: String,
        #[arg(long, default_value = "json", value_parser = ["json"])]
        format: String,
    },
}

pub(super) fn execute(
    c: &Client,
    command: &DefinitionsCommand,
    o: &mut Out<'_>,
) -> Result<(), CtlError> {
    match command {
        DefinitionsCommand::ExportDefinitions { path, .. } => {
            let definitions = c.get(&api_path(&["definitions"]))?;
            let text = format!("{definitions}\n");
            if path == "-" {
                // Nothing else on stdout, so it can be piped.
                return o.write(&text);
            }
            o.info(&format!(
                "Exporting definitions in JSON to a file at \"{path}\" ..."
            ))?;
            std::fs::write(path, text).map_err(|source| CtlError::WriteFile {
                path: path.clone(),
                source,
            })
        }
        DefinitionsCommand::ImportDefinitions { path, .. } => {
            let text = if path == "-" {
                o.info("Importing definitions in JSON from standard input ...")?;
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .map_err(CtlError::Stdin)?;
                s
            } else {
                o.info(&format!(
                    "Importing definitions in JSON from a file at \"{path}\" ..."
                ))?;
                std::fs::read_to_string(path).map_err(|source| CtlError::ReadFile {
                    path: path.clone(),
                    source,
                })?
            };
            let definitions = parse_definitions(&text)?;
            c.post(&api_path(&["definitions"]), &definitions)?;
            o.info("Successfully started definition import. This process is asynchronous and can take some time.")
        }
    }
}

/// A definitions document: a JSON object.
pub(crate) fn parse_definitions(text: &str) -> Result<Value, CtlError> {
    let bad = |reason: String| CtlError::BadJson {
        input: text.chars().take(60).collect(),
        reason,
    };
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(bad("expected a JSON object".to_string())),
        Err(e) => Err(bad(e.to_string())),
    }
}
