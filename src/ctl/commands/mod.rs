//! What each command does, one module per concept, each owning its part of the command tree
//! and the management API calls rabbitmqadmin makes for it; and [`Out`], where they print.

pub mod access;
mod columns;
pub mod definitions;
pub mod diagnostics;
pub mod limits;
pub mod policies;
pub mod topology;

use std::io::Write;

use serde_json::Value;

use super::cli::Command;
use super::client::{Client, CtlError};
use super::format::{column_cell, table};

pub(super) fn execute(c: &Client, command: &Command, o: &mut Out<'_>) -> Result<(), CtlError> {
    match command {
        Command::Access(a) => access::execute(c, a, o),
        Command::Limits(l) => limits::execute(c, l, o),
        Command::Policies(p) => policies::execute(c, p, o),
        Command::Definitions(d) => definitions::execute(c, d, o),
        Command::Topology(t) => topology::execute(c, t, o),
        Command::Diagnostics(d) => diagnostics::execute(c, d, o),
        // Answered before a client is made (it needs no API).
        Command::Completion { .. } => Ok(()),
    }
}

/// Where a command writes: the informational line (unless quiet, or JSON), then its results
/// as a table or, with `--formatter json`, a JSON list of objects.
pub(super) struct Out<'a> {
    pub out: &'a mut dyn Write,
    pub quiet: bool,
    pub headers: bool,
    pub json: bool,
}

impl Out<'_> {
    /// The informational first line; rabbitmqctl prints none with `--formatter json`, so
    /// the output stays one JSON document.
    fn info(&mut self, line: &str) -> Result<(), CtlError> {
        if self.quiet || self.json {
            return Ok(());
        }
        writeln!(self.out, "{line}").map_err(CtlError::Output)
    }

    fn line(&mut self, line: &str) -> Result<(), CtlError> {
        writeln!(self.out, "{line}").map_err(CtlError::Output)
    }

    fn write(&mut self, text: &str) -> Result<(), CtlError> {
        self.out
            .write_all(text.as_bytes())
            .map_err(CtlError::Output)
    }

    /// A table of text cells (in JSON, each cell a string).
    fn table(&mut self, header: &[&str], rows: &[Vec<String>]) -> Result<(), CtlError> {
        let values: Vec<Vec<Value>> = rows
            .iter()
            .map(|r| r.iter().cloned().map(Value::String).collect())
            .collect();
        self.records(header, &values)
    }

    /// A table of API values: each cell printed as rabbitmqctl prints that column, or the
    /// values themselves in JSON.
    fn records(&mut self, header: &[&str], rows: &[Vec<Value>]) -> Result<(), CtlError> {
        let text = if self.json {
            json_records(header, rows)
        } else {
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    header
                        .iter()
                        .zip(r)
                        .map(|(col, v)| column_cell(col, v))
                        .collect()
                })
                .collect();
            table(header, &cells, self.headers)
        };
        self.write(&text)
    }
}

/// rabbitmqctl's JSON formatter: `[`, one object per line (keys in column order), `]`.
pub(crate) fn json_records(header: &[&str], rows: &[Vec<Value>]) -> String {
    let lines: Vec<String> = rows
        .iter()
        .map(|r| {
            // By hand: serde_json's map (no `preserve_order`) would sort the keys.
            let fields: Vec<String> = header
                .iter()
                .zip(r)
                .map(|(col, v)| format!("{}:{v}", Value::String((*col).to_string())))
                .collect();
            format!("{{{}}}", fields.join(","))
        })
        .collect();
    if lines.is_empty() {
        return "[]\n".to_string();
    }
    format!("[\n{}\n]\n", lines.join(",\n"))
}

/// GET a list endpoint.
pub(super) fn list(c: &Client, path: &str) -> Result<Vec<Value>, CtlError> {
    match c.get(path)? {
        Value::Array(items) => Ok(items),
        other => Err(CtlError::BadResponse {
            method: "GET",
            path: path.to_string(),
            reason: format!("expected a JSON list, got {}", kind_of(&other)),
        }),
    }
}

pub(super) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

pub(super) fn no_such_vhost(e: CtlError, vhost: &str) -> CtlError {
    if e.is_not_found() {
        CtlError::NoSuchVhost(vhost.to_string())
    } else {
        e
    }
}
