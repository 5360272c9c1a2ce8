//! Queues, exchanges, bindings, connections, channels and consumers: rabbitmqctl's list
//! commands with their info items, and purge_queue, delete_queue and close_connection.

use clap::builder::PossibleValuesParser;
use clap::Subcommand;
use serde_json::Value;

use super::columns::{Items, BINDINGS, CHANNELS, CONNECTIONS, CONSUMERS, EXCHANGES, QUEUES};
use super::{list, no_such_vhost, Out};
use crate::ctl::client::{api_path, Client, CtlError};

fn items(i: &'static Items) -> PossibleValuesParser {
    PossibleValuesParser::new(i.all.iter().copied())
}

/// Queues, exchanges, bindings, connections, channels and consumers.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum TopologyCommand {
    /// List a vhost's queues: the info items given (default: name messages).
    #[command(name = "list_queues")]
    ListQueues {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        #[arg(value_parser = items(&QUEUES), value_delimiter = ',')]
        columns: Vec<String>,
    },
    /// List a vhost's exchanges (default: name type).
    #[command(name = "list_exchanges")]
    ListExchanges {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        #[arg(value_parser = items(&EXCHANGES), value_delimiter = ',')]
        columns: Vec<String>,
    },
    /// List a vhost's bindings.
    #[command(name = "list_bindings")]
    ListBindings {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        #[arg(value_parser = items(&BINDINGS), value_delimiter = ',')]
        columns: Vec<String>,
    },
    /// List all connections (default: user peer_host peer_port state).
    #[command(name = "list_connections")]
    ListConnections {
        #[arg(value_parser = items(&CONNECTIONS), value_delimiter = ',')]
        columns: Vec<String>,
    },
    /// List all channels (default: pid user consumer_count messages_unacknowledged).
    #[command(name = "list_channels")]
    ListChannels {
        #[arg(value_parser = items(&CHANNELS), value_delimiter = ',')]
        columns: Vec<String>,
    },
    /// List a vhost's consumers.
    #[command(name = "list_consumers")]
    ListConsumers {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        #[arg(value_parser = items(&CONSUMERS), value_delimiter = ',')]
        columns: Vec<String>,
    },
    /// Close a connection (named as list_connections name shows it), telling the client why.
    #[command(name = "close_connection")]
    CloseConnection {
        connection_name: String,
        explanation: String,
    },
    /// Remove a queue's ready messages.
    #[command(name = "purge_queue")]
    PurgeQueue {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        queue: String,
    },
    /// Delete a queue.
    #[command(name = "delete_queue")]
    DeleteQueue {
        #[arg(short = 'p', long = "vhost", default_value = "/")]
        vhost: String,
        queue: String,
        /// Only if it has no messages.
        #[arg(short = 'e', long)]
        if_empty: bool,
        /// Only if it has no consumers (no `-u`: that is the global --username).
        #[arg(long)]
        if_unused: bool,
    },
}

pub(super) fn execute(
    c: &Client,
    command: &TopologyCommand,
    o: &mut Out<'_>,
) -> Result<(), CtlError> {
    match command {
        TopologyCommand::ListQueues { vhost, columns } => {
            o.info(&format!("Listing queues for vhost {vhost} ..."))?;
            listing(c, o, &QUEUES, &["queues", vhost], Some(vhost), columns)
        }
        TopologyCommand::ListExchanges { vhost, columns } => {
            o.info(&format!("Listing exchanges for vhost {vhost} ..."))?;
            listing(
                c,
                o,
                &EXCHANGES,
                &["exchanges", vhost],
                Some(vhost),
                columns,
            )
        }
        TopologyCommand::ListBindings { vhost, columns } => {
            o.info(&format!("Listing bindings for vhost {vhost}..."))?;
            listing(c, o, &BINDINGS, &["bindings", vhost], Some(vhost), columns)
        }
        TopologyCommand::ListConnections { columns } => {
            o.info("Listing connections ...")?;
            listing(c, o, &CONNECTIONS, &["connections"], None, columns)
        }
        TopologyCommand::ListChannels { columns } => {
            o.info("Listing channels ...")?;
            listing(c, o, &CHANNELS, &["channels"], None, columns)
        }
        TopologyCommand::ListConsumers { vhost, columns } => {
            o.info(&format!("Listing consumers in vhost {vhost} ..."))?;
            listing(
                c,
                o,
                &CONSUMERS,
                &["consumers", vhost],
                Some(vhost),
                columns,
            )
        }
        TopologyCommand::CloseConnection {
            connection_name,
            explanation,
        } => {
            o.info(&format!(
                "Closing connection {connection_name}, reason: {explanation}..."
            ))?;
            c.delete_with(
                &api_path(&["connections", connection_name]),
                ("X-Reason", explanation),
            )
            .map_err(|e| {
                if e.is_not_found() {
                    CtlError::NoSuchConnection(connection_name.clone())
                } else {
                    e
                }
            })
        }
        TopologyCommand::PurgeQueue { vhost, queue } => {
            o.info(&format!("Purging queue '{queue}' in vhost '{vhost}' ..."))?;
            c.delete(&api_path(&["queues", vhost, queue, "contents"]))
                .map_err(|e| no_such_queue(e, vhost, queue))
        }
        TopologyCommand::DeleteQueue {
            vhost,
            queue,
            if_empty,
            if_unused,
        } => delete_queue(c, o, vhost, queue, *if_empty, *if_unused),
    }
}

/// A list command: GET the objects, print the chosen items of each.
fn listing(
    c: &Client,
    o: &mut Out<'_>,
    items: &Items,
    path: &[&str],
    vhost: Option<&str>,
    asked: &[String],
) -> Result<(), CtlError> {
    let objects = list(c, &api_path(path)).map_err(|e| match vhost {
        Some(v) => no_such_vhost(e, v),
        None => e,
    })?;
    let columns = items.chosen(asked);
    let rows: Vec<Vec<Value>> = objects
        .iter()
        .map(|obj| {
            let mut row = items.row(obj, &columns);
            // Bindings' sources are always exchanges; the API does not say so.
            for (col, v) in columns.iter().zip(row.iter_mut()) {
                if *col == "source_kind" && v.is_null() {
                    *v = Value::String("exchange".to_string());
                }
            }
            row
        })
        .collect();
    o.records(&columns, &rows)
}

fn delete_queue(
    c: &Client,
    o: &mut Out<'_>,
    vhost: &str,
    queue: &str,
    if_empty: bool,
    if_unused: bool,
) -> Result<(), CtlError> {
    let mut conditions = Vec::new();
    if if_empty {
        conditions.push("if queue is empty ");
    }
    if if_unused {
        conditions.push("if queue is unused ");
    }
    o.info(&format!(
        "Deleting queue '{queue}' on vhost '{vhost}' {}...",
        conditions.join("and ")
    ))?;
    let path = api_path(&["queues", vhost, queue]);
    // Read first: for the count rabbitmqctl reports, which the DELETE does not answer.
    let before = c.get(&path).map_err(|e| no_such_queue(e, vhost, queue))?;
    let ready = before
        .get("messages_ready")
        .or_else(|| before.get("messages"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut query = Vec::new();
    if if_empty {
        query.push("if-empty=true");
    }
    if if_unused {
        query.push("if-unused=true");
    }
    let target = if query.is_empty() {
        path
    } else {
        format!("{path}?{}", query.join("&"))
    };
    c.delete(&target)
        .map_err(|e| no_such_queue(e, vhost, queue))?;
    o.line(&format!(
        "Queue was successfully deleted with {ready} ready messages"
    ))
}

fn no_such_queue(e: CtlError, vhost: &str, queue: &str) -> CtlError {
    if e.is_not_found() {
        CtlError::NoSuchQueue {
            vhost: vhost.to_string(),
            name: queue.to_string(),
        }
    } else {
        e
    }
}
