//! status, await_startup and rabbitmq-diagnostics' ping and health checks, over
//! `/api/overview`, `/api/nodes` and `/api/health/checks/*`: a check that fails exits 69.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use clap::Subcommand;
use serde_json::Value;

use super::{list, Out};
use crate::ctl::client::{api_path, Client, CtlError};
use crate::ctl::format::cell;

/// Node status and health checks.
#[derive(Debug, Subcommand, PartialEq, Eq)]
pub enum DiagnosticsCommand {
    /// The node's name, versions, listeners, memory, file descriptors and alarms.
    #[command(name = "status")]
    Status,
    /// Wait until the management API answers.
    #[command(name = "await_startup")]
    AwaitStartup {
        /// Give up after this many seconds (exit 75).
        #[arg(short = 't', long, default_value_t = 300)]
        timeout: u64,
    },
    /// Whether the node answers at all.
    #[command(name = "ping")]
    Ping,
    /// Whether the node is booted and running.
    #[command(name = "check_running")]
    CheckRunning,
    /// Whether the node has a resource alarm (memory or disk) in effect.
    #[command(name = "check_local_alarms")]
    CheckLocalAlarms,
    /// Whether any node of the cluster has a resource alarm in effect.
    #[command(name = "check_alarms")]
    CheckAlarms,
    /// Whether a TCP connection can be opened to each of the node's listeners.
    #[command(name = "check_port_connectivity")]
    CheckPortConnectivity,
    /// Whether the node has a listener on PORT.
    #[command(name = "check_port_listener")]
    CheckPortListener { port: u16 },
}

pub(super) fn execute(
    c: &Client,
    command: &DiagnosticsCommand,
    o: &mut Out<'_>,
) -> Result<(), CtlError> {
    match command {
        DiagnosticsCommand::Status => status(c, o),
        DiagnosticsCommand::AwaitStartup { timeout } => {
            o.info(&format!(
                "Waiting for the management API at {} to answer ...",
                c.base()
            ))?;
            await_startup(c, Duration::from_secs(*timeout))
        }
        DiagnosticsCommand::Ping => {
            o.info(&format!("Will ping the node at {} ...", c.base()))?;
            c.get(&api_path(&["overview"]))?;
            o.line("Ping succeeded")
        }
        DiagnosticsCommand::CheckRunning => {
            let (name, node) = this_node(c)?;
            o.info(&format!(
                "Checking if RabbitMQ is running on node {name} ..."
            ))?;
            // A node the API lists but says is not running (or says nothing about).
            if node.get("running").and_then(Value::as_bool) == Some(false) {
                return Err(CtlError::CheckFailed(format!(
                    "RabbitMQ on node {name} is not running or has not fully booted yet"
                )));
            }
            o.line(&format!(
                "RabbitMQ on node {name} is fully booted and running"
            ))
        }
        DiagnosticsCommand::CheckLocalAlarms => {
            o.info("Asking the node to report any local resource alarms ...")?;
            health(c, &["health", "checks", "local-alarms"])?;
            o.line("Node reported no local alarms")
        }
        DiagnosticsCommand::CheckAlarms => {
            o.info("Asking the node to report any known resource alarms ...")?;
            health(c, &["health", "checks", "alarms"])?;
            o.line("Node reported no alarms, local or clusterwide")
        }
        DiagnosticsCommand::CheckPortListener { port } => {
            let port_text = port.to_string();
            o.info(&format!(
                "Asking the node if there's an active listener on port {port} ..."
            ))?;
            health(c, &["health", "checks", "port-listener", &port_text])?;
            o.line(&format!("A listener for port {port} is running"))
        }
        DiagnosticsCommand::CheckPortConnectivity => check_port_connectivity(c, o),
    }
}

/// Polls `/api/overview` every half second until it answers; a refused connection or a
/// 503 (a node still booting) is retried, any other error (a refused login) is not.
fn await_startup(c: &Client, timeout: Duration) -> Result<(), CtlError> {
    let deadline = Instant::now() + timeout;
    loop {
        match c.get(&api_path(&["overview"])) {
            Ok(_) => return Ok(()),
            Err(CtlError::Unreachable { .. }) | Err(CtlError::Api { status: 503, .. }) => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(CtlError::Timeout(timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A health check endpoint: 200 passes; its 503 is a failed check with the API's reason.
fn health(c: &Client, segments: &[&str]) -> Result<(), CtlError> {
    match c.get(&api_path(segments)) {
        Ok(_) => Ok(()),
        Err(CtlError::Api {
            status: 503,
            reason,
            ..
        }) => Err(CtlError::CheckFailed(reason)),
        Err(e) => Err(e),
    }
}

/// The node `/api/overview` names, and its `/api/nodes` entry (or `null`).
fn this_node(c: &Client) -> Result<(String, Value), CtlError> {
    let overview = c.get(&api_path(&["overview"]))?;
    let name = overview
        .get("node")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let nodes = list(c, &api_path(&["nodes"]))?;
    let node = nodes
        .into_iter()
        .find(|n| n.get("name").and_then(Value::as_str) == Some(name.as_str()))
        .unwrap_or(Value::Null);
    Ok((name, node))
}

fn status(c: &Client, o: &mut Out<'_>) -> Result<(), CtlError> {
    let overview = c.get(&api_path(&["overview"]))?;
    let name = cell(overview.get("node").unwrap_or(&Value::Null));
    let node = list(c, &api_path(&["nodes"]))?
        .into_iter()
        .find(|n| n.get("name").and_then(Value::as_str) == Some(name.as_str()))
        .unwrap_or(Value::Null);
    if o.json {
        let doc = serde_json::json!({"overview": overview, "node": node});
        return o.line(&doc.to_string());
    }
    o.info(&format!("Status of node {name} ..."))?;
    let text = status_text(&overview, &node);
    o.write(&text)
}

/// rabbitmqctl status's sections, from what the API tells.
pub(crate) fn status_text(overview: &Value, node: &Value) -> String {
    let f = |v: &Value, key: &str| v.get(key).map(cell).unwrap_or_default();
    let mut s = String::from("Runtime\n\n");
    s.push_str(&format!("OS PID: {}\n", f(node, "os_pid")));
    s.push_str(&format!(
        "Uptime (seconds): {}\n",
        node.get("uptime").and_then(Value::as_u64).unwrap_or(0) / 1000
    ));
    let product = match overview.get("product_name").and_then(Value::as_str) {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => "RabbitMQ".to_string(),
    };
    s.push_str(&format!(
        "{product} version: {}\n",
        f(overview, "product_version")
    ));
    s.push_str(&format!("Node name: {}\n", f(overview, "node")));
    let erlang = f(overview, "erlang_version");
    if !erlang.is_empty() {
        s.push_str(&format!("Erlang version: {erlang}\n"));
    }

    s.push_str("\nAlarms\n\n");
    let mut alarms = Vec::new();
    if node.get("mem_alarm").and_then(Value::as_bool) == Some(true) {
        alarms.push("memory");
    }
    if node.get("disk_free_alarm").and_then(Value::as_bool) == Some(true) {
        alarms.push("free disk space");
    }
    if alarms.is_empty() {
        s.push_str("(none)\n");
    }
    for a in alarms {
        s.push_str(&format!("{a} alarm on node {}\n", f(overview, "node")));
    }

    s.push_str("\nMemory\n\n");
    s.push_str(&format!(
        "Total memory used: {} gb\n",
        gb(node.get("mem_used"))
    ));
    s.push_str(&format!(
        "Memory high watermark: {} gb\n",
        gb(node.get("mem_limit"))
    ));

    s.push_str("\nFile Descriptors\n\n");
    s.push_str(&format!(
        "Total: {}, limit: {}\n",
        f(node, "fd_used"),
        f(node, "fd_total")
    ));

    s.push_str("\nListeners\n\n");
    for l in overview
        .get("listeners")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        s.push_str(&format!(
            "Interface: {}, port: {}, protocol: {}\n",
            f(l, "ip_address"),
            f(l, "port"),
            f(l, "protocol")
        ));
    }
    s
}

fn gb(bytes: Option<&Value>) -> String {
    let b = bytes.and_then(Value::as_f64).unwrap_or(0.0);
    format!("{:.4}", b / 1e9)
}

/// Opens a TCP connection to each listener `/api/overview` lists (but clustering's), at
/// the management URL's host when the listener is on every interface.
fn check_port_connectivity(c: &Client, o: &mut Out<'_>) -> Result<(), CtlError> {
    let overview = c.get(&api_path(&["overview"]))?;
    let name = cell(overview.get("node").unwrap_or(&Value::Null));
    o.info(&format!(
        "Testing TCP connections to all active listeners on node {name} ..."
    ))?;
    let host = c.host().to_string();
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for l in overview
        .get("listeners")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if l.get("protocol").and_then(Value::as_str) == Some("clustering") {
            continue;
        }
        let Some(port) = l.get("port").and_then(Value::as_u64) else {
            continue;
        };
        let ip = l.get("ip_address").and_then(Value::as_str).unwrap_or("");
        let target = if ip.is_empty() || ip == "::" || ip == "0.0.0.0" {
            host.as_str()
        } else {
            ip
        };
        if can_connect(target, port) {
            ok.push(port.to_string());
        } else {
            failed.push(port.to_string());
        }
    }
    if !failed.is_empty() {
        return Err(CtlError::CheckFailed(format!(
            "Connection to ports {} on node {name} failed",
            failed.join(", ")
        )));
    }
    o.line(&format!(
        "Successfully connected to ports {} on node {name}.",
        ok.join(", ")
    ))
}

fn can_connect(host: &str, port: u64) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(port) = u16::try_from(port) else {
        return false;
    };
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok())
}
