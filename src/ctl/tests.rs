//! The command tree's parsing, limits JSON, vhost columns and exit codes.
#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::client::CtlError;
use super::commands::access::{vhost_cell, AccessCommand, VHOST_COLUMNS};
use super::commands::limits::{parse_limits, LimitsCommand};

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
        Command::Access(AccessCommand::AddUser {
            username: "alice".into(),
            password: Some("s3cret".into()),
            tags: vec![]
        })
    );
    assert_eq!(cli.url, "http://localhost:15672");
    assert_eq!(cli.login_username, "guest");
    assert!(!cli.quiet);
    let cli = parse(&["add_user", "bob", "pw", "--tags", "monitoring,management"]).unwrap();
    assert_eq!(
        cli.command,
        Command::Access(AccessCommand::AddUser {
            username: "bob".into(),
            password: Some("pw".into()),
            tags: vec!["monitoring".into(), "management".into()]
        })
    );
    assert_eq!(
        parse(&["set_user_tags", "bob", "a", "b"]).unwrap().command,
        Command::Access(AccessCommand::SetUserTags {
            username: "bob".into(),
            tags: vec!["a".into(), "b".into()]
        })
    );
    assert_eq!(
        parse(&["set_user_tags", "bob"]).unwrap().command,
        Command::Access(AccessCommand::SetUserTags {
            username: "bob".into(),
            tags: vec![]
        })
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
    assert_eq!(cli.command, Command::Access(AccessCommand::ListUsers));
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
        Command::Access(AccessCommand::AddUser {
            username: "alice".into(),
            password: Some("pw".into()),
            tags: vec![]
        })
    );
}

#[test]
fn vhost_defaults_to_slash_and_p_comes_first() {
    assert_eq!(
        parse(&["set_permissions", "bob", ".*", "", "^r"])
            .unwrap()
            .command,
        Command::Access(AccessCommand::SetPermissions {
            vhost: "/".into(),
            username: "bob".into(),
            configure: ".*".into(),
            write: "".into(),
            read: "^r".into()
        })
    );
    assert_eq!(
        parse(&["set_permissions", "-p", "prod", "bob", ".*", ".*", ".*"])
            .unwrap()
            .command,
        Command::Access(AccessCommand::SetPermissions {
            vhost: "prod".into(),
            username: "bob".into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into()
        })
    );
    assert_eq!(
        parse(&["clear_topic_permissions", "-p", "v", "bob", "amq.topic"])
            .unwrap()
            .command,
        Command::Access(AccessCommand::ClearTopicPermissions {
            vhost: "v".into(),
            username: "bob".into(),
            exchange: Some("amq.topic".into())
        })
    );
    assert_eq!(
        parse(&["list_permissions"]).unwrap().command,
        Command::Access(AccessCommand::ListPermissions { vhost: "/".into() })
    );
    assert_eq!(
        parse(&["set_vhost_limits", "-p", "v", r#"{"max-connections": 10}"#])
            .unwrap()
            .command,
        Command::Limits(LimitsCommand::SetVhostLimits {
            vhost: "v".into(),
            definition: r#"{"max-connections": 10}"#.into()
        })
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
        Command::Access(AccessCommand::AddVhost {
            vhost: "qa".into(),
            description: Some("QA".into()),
            tags: Some("a,b".into()),
            default_queue_type: Some("quorum".into())
        })
    );
    assert!(parse(&["add_vhost", "qa", "--default-queue-type", "lazy"]).is_err());
    assert_eq!(
        parse(&["list_vhosts", "name", "tracing"]).unwrap().command,
        Command::Access(AccessCommand::ListVhosts {
            columns: vec!["name".into(), "tracing".into()]
        })
    );
    let e = parse(&["list_vhosts", "bogus"]).unwrap_err();
    assert_eq!(e.exit_code(), 2);
}

#[test]
fn limits() {
    assert_eq!(
        parse(&["clear_user_limits", "bob", "all"]).unwrap().command,
        Command::Limits(LimitsCommand::ClearUserLimits {
            username: "bob".into(),
            limit: "all".into()
        })
    );
    assert!(parse(&["clear_user_limits", "bob"]).is_err());
    assert_eq!(
        parse(&["list_user_limits"]).unwrap().command,
        Command::Limits(LimitsCommand::ListUserLimits {
            user: "guest".into(),
            global: false
        })
    );
    assert_eq!(
        parse(&["list_vhost_limits", "--global"]).unwrap().command,
        Command::Limits(LimitsCommand::ListVhostLimits {
            vhost: "/".into(),
            global: true
        })
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
    assert_eq!(auth.exit_code(), 77);
    assert!(auth
        .to_string()
        .contains("authentication failed for user \"guest\""));
}
