//! Parsing of the policy, definitions, topology and diagnostics commands; their columns, exit
//! codes, the JSON formatter and status's text.
#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::client::CtlError;
use super::commands::definitions::{parse_definitions, DefinitionsCommand};
use super::commands::diagnostics::{status_text, DiagnosticsCommand};
use super::commands::json_records;
use super::commands::policies::{parse_definition, policy_row, PolicyCommand, PolicySpec};
use super::commands::topology::TopologyCommand;
use super::*;

fn parse(args: &[&str]) -> Result<CtlCli, clap::Error> {
    CtlCli::try_parse_from(std::iter::once("ctl").chain(args.iter().copied()))
}

#[test]
fn set_policy_in_rabbitmqctl_order() {
    let cli = parse(&[
        "set_policy",
        "-p",
        "v",
        "--priority",
        "3",
        "--apply-to",
        "queues",
        "p",
        "^a",
        r#"{"max-length":5}"#,
    ])
    .unwrap();
    assert_eq!(
        cli.command,
        Command::Policies(PolicyCommand::SetPolicy(PolicySpec {
            vhost: "v".into(),
            priority: 3,
            apply_to: "queues".into(),
            name: "p".into(),
            pattern: "^a".into(),
            definition: r#"{"max-length":5}"#.into(),
        }))
    );
    let Command::Policies(PolicyCommand::SetOperatorPolicy(spec)) =
        parse(&["set_operator_policy", "o", ".*", "{}"])
            .unwrap()
            .command
    else {
        panic!("not set_operator_policy");
    };
    assert_eq!(
        (spec.vhost.as_str(), spec.priority, spec.apply_to.as_str()),
        ("/", 0, "all")
    );
    assert!(parse(&["set_policy", "--apply-to", "bogus", "p", "x", "{}"]).is_err());
    assert!(parse(&["set_policy", "p", "x"]).is_err());
    assert!(parse(&["clear_policy", "-p", "v", "p"]).is_ok());
    assert!(parse(&["list_operator_policies"]).is_ok());
}

#[test]
fn policy_definitions_and_rows() {
    assert_eq!(parse_definition(r#"{"a":1}"#).unwrap(), json!({"a": 1}));
    assert_eq!(parse_definition("[1]").unwrap_err().exit_code(), 65);
    assert_eq!(parse_definition("nope").unwrap_err().exit_code(), 65);
    let p = json!({"vhost": "/", "name": "p", "pattern": "^a", "apply-to": "queues",
                   "definition": {"max-length": 5}, "priority": 3});
    let row = policy_row(&p);
    assert_eq!(row[4], json!(r#"{"max-length":5}"#));
    assert_eq!(row[5], json!(3));
}

#[test]
fn definitions_commands() {
    assert_eq!(
        parse(&["export_definitions", "-"]).unwrap().command,
        Command::Definitions(DefinitionsCommand::ExportDefinitions {
            path: "-".into(),
            format: "json".into()
        })
    );
    assert!(parse(&["export_definitions", "x", "--format", "erlang"]).is_err());
    assert!(parse(&["import_definitions", "f.json"]).is_ok());
    assert!(parse_definitions(r#"{"users":[]}"#).is_ok());
    assert_eq!(parse_definitions("[]").unwrap_err().exit_code(), 65);
}

#[test]
fn list_columns() {
    assert_eq!(
        parse(&["list_queues", "-p", "v", "name", "messages_ready,consumers"])
            .unwrap()
            .command,
        Command::Topology(TopologyCommand::ListQueues {
            vhost: "v".into(),
            columns: vec!["name".into(), "messages_ready".into(), "consumers".into()]
        })
    );
    // An unknown info item is a usage error, as in rabbitmqctl.
    assert!(parse(&["list_queues", "bogus"]).is_err());
    assert!(parse(&["list_exchanges", "name", "type", "internal"]).is_ok());
    assert!(parse(&["list_bindings", "source_name", "routing_key"]).is_ok());
    assert!(parse(&["list_connections", "name", "peer_host"]).is_ok());
    assert!(parse(&["list_channels", "pid", "prefetch_count"]).is_ok());
    assert!(parse(&["list_consumers", "-p", "v", "queue_name"]).is_ok());
    assert!(parse(&["list_connections", "-p", "v"]).is_err());
    assert_eq!(
        parse(&["delete_queue", "q", "--if-empty", "--if-unused"])
            .unwrap()
            .command,
        Command::Topology(TopologyCommand::DeleteQueue {
            vhost: "/".into(),
            queue: "q".into(),
            if_empty: true,
            if_unused: true
        })
    );
    assert!(parse(&["close_connection", "c"]).is_err());
    assert!(parse(&["purge_queue", "-p", "v", "q"]).is_ok());
}

#[test]
fn diagnostics_commands() {
    assert_eq!(
        parse(&["await_startup", "--timeout", "5"]).unwrap().command,
        Command::Diagnostics(DiagnosticsCommand::AwaitStartup { timeout: 5 })
    );
    for c in [
        "status",
        "ping",
        "check_running",
        "check_local_alarms",
        "check_alarms",
        "check_port_connectivity",
    ] {
        assert!(parse(&[c]).is_ok(), "{c}");
    }
    assert!(parse(&["check_port_listener", "x"]).is_err());
    assert!(parse(&["completion", "bash"]).is_ok());
    assert!(parse(&["completion", "tcsh"]).is_err());
}

#[test]
fn exit_codes_of_the_new_errors() {
    assert_eq!(CtlError::NoSuchParameter.exit_code(), 69);
    assert_eq!(CtlError::CheckFailed("x".into()).exit_code(), 69);
    assert_eq!(CtlError::NoSuchConnection("c".into()).exit_code(), 69);
    assert_eq!(
        CtlError::NoSuchQueue {
            vhost: "/".into(),
            name: "q".into()
        }
        .exit_code(),
        69
    );
    assert_eq!(CtlError::Timeout(1).exit_code(), 75);
    let io = || std::io::Error::other("x");
    assert_eq!(
        CtlError::ReadFile {
            path: "f".into(),
            source: io()
        }
        .exit_code(),
        66
    );
    assert_eq!(
        CtlError::WriteFile {
            path: "f".into(),
            source: io()
        }
        .exit_code(),
        73
    );
    let api = |status| CtlError::Api {
        status,
        method: "GET",
        path: "/".into(),
        reason: "r".into(),
    };
    assert_eq!(api(500).exit_code(), 70);
    assert_eq!(api(403).exit_code(), 77);
    assert_eq!(api(404).exit_code(), 65);
}

#[test]
fn json_formatter_keeps_column_order() {
    let rows = vec![vec![json!("q1"), json!(3)], vec![json!("a"), json!(null)]];
    assert_eq!(
        json_records(&["name", "messages"], &rows),
        "[\n{\"name\":\"q1\",\"messages\":3},\n{\"name\":\"a\",\"messages\":null}\n]\n"
    );
    assert_eq!(json_records(&["name"], &[]), "[]\n");
}

#[test]
fn status_sections() {
    let overview = json!({"node": "warren@h", "product_name": "Warren", "product_version": "0.1",
        "listeners": [{"ip_address": "::", "port": 5672, "protocol": "amqp"}]});
    let node = json!({"os_pid": "42", "uptime": 5000, "mem_used": 1e9, "mem_limit": 2e9,
        "mem_alarm": true, "disk_free_alarm": false, "fd_used": 3, "fd_total": 1024});
    let text = status_text(&overview, &node);
    for want in [
        "OS PID: 42\n",
        "Uptime (seconds): 5\n",
        "Warren version: 0.1\n",
        "memory alarm on node warren@h\n",
        "Total memory used: 1.0000 gb\n",
        "Interface: ::, port: 5672, protocol: amqp\n",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    assert!(status_text(&json!({}), &json!(null)).contains("(none)"));
}
