//! `warren ctl` end to end for what this branch's management API serves beyond access:
//! policies, operator policies, definitions export and import, completion, and the exit
//! codes of ping and await_startup when nothing answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::ctl::{broker, ctl_in, mgmt_url, run};

fn free_port_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_and_operator_policies() {
    let b = broker().await;
    let url = mgmt_url(&b);
    run(&url, &["add_vhost", "pv"], 0).await;

    let out = run(
        &url,
        &[
            "set_policy",
            "-p",
            "pv",
            "--priority",
            "3",
            "--apply-to",
            "queues",
            "p1",
            "^a",
            r#"{"max-length":5}"#,
        ],
        0,
    )
    .await;
    assert_eq!(
        out,
        "Setting policy \"p1\" for pattern \"^a\" to \"{\"max-length\":5}\" with priority \"3\" for vhost \"pv\" ...\n"
    );
    let out = run(&url, &["list_policies", "-p", "pv"], 0).await;
    assert_eq!(
        out,
        "Listing policies for vhost \"pv\" ...\nvhost\tname\tpattern\tapply-to\tdefinition\tpriority\npv\tp1\t^a\tqueues\t{\"max-length\":5}\t3\n"
    );
    let out = run(
        &url,
        &["--formatter", "json", "list_policies", "-p", "pv"],
        0,
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["name"], "p1");
    assert_eq!(v[0]["priority"], 3);

    run(
        &url,
        &["set_policy", "-p", "pv", "bad", ".*", "notjson"],
        65,
    )
    .await;
    run(&url, &["clear_policy", "-p", "pv", "p1"], 0).await;
    run(&url, &["clear_policy", "-p", "pv", "p1"], 69).await;
    assert_eq!(
        run(
            &url,
            &["-q", "--no-table-headers", "list_policies", "-p", "pv"],
            0
        )
        .await,
        ""
    );

    run(
        &url,
        &[
            "set_operator_policy",
            "-p",
            "pv",
            "op",
            "^b",
            r#"{"max-length":7}"#,
        ],
        0,
    )
    .await;
    let out = run(&url, &["-q", "list_operator_policies", "-p", "pv"], 0).await;
    assert_eq!(
        out,
        "vhost\tname\tpattern\tapply-to\tdefinition\tpriority\npv\top\t^b\tall\t{\"max-length\":7}\t0\n"
    );
    run(&url, &["clear_operator_policy", "-p", "pv", "op"], 0).await;
    run(&url, &["clear_operator_policy", "-p", "pv", "op"], 69).await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_round_trip() {
    let b = broker().await;
    let url = mgmt_url(&b);
    run(&url, &["add_vhost", "dv"], 0).await;
    run(&url, &["add_user", "duser", "pw"], 0).await;
    run(
        &url,
        &[
            "set_policy",
            "-p",
            "dv",
            "keep",
            "^k",
            r#"{"max-length":9}"#,
        ],
        0,
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("defs.json");
    let file = file.to_str().unwrap();
    let out = run(&url, &["export_definitions", file], 0).await;
    assert!(
        out.starts_with("Exporting definitions in JSON to a file at"),
        "{out}"
    );
    let stdout = run(&url, &["export_definitions", "-"], 0).await;
    let exported: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(exported["policies"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "keep"));

    // Gone, then back from the file; and from stdin.
    run(&url, &["delete_vhost", "dv"], 0).await;
    run(&url, &["delete_user", "duser"], 0).await;
    run(&url, &["import_definitions", file], 0).await;
    let out = run(&url, &["-q", "list_policies", "-p", "dv"], 0).await;
    assert!(
        out.contains("dv\tkeep\t^k\tall\t{\"max-length\":9}\t0"),
        "{out}"
    );
    assert!(run(&url, &["-q", "list_users"], 0)
        .await
        .contains("duser\t"));
    run(&url, &["delete_vhost", "dv"], 0).await;
    let o = ctl_in(&url, &["import_definitions", "-"], Some(stdout)).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(run(&url, &["-q", "list_vhosts"], 0).await.contains("dv\n"));

    run(&url, &["import_definitions", "/nonexistent/defs.json"], 66).await;
    let o = ctl_in(&url, &["import_definitions", "-"], Some("not json".into())).await;
    assert_eq!(o.status.code(), Some(65));
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_scripts() {
    let url = free_port_url();
    let bash = run(&url, &["completion", "bash"], 0).await;
    assert!(bash.contains("complete -F _warren"), "{bash}");
    assert!(bash.contains("list_queues") && bash.contains("set_policy"));
    let zsh = run(&url, &["completion", "zsh"], 0).await;
    assert!(zsh.starts_with("#compdef warren"), "{zsh}");
    let fish = run(&url, &["completion", "fish"], 0).await;
    assert!(fish.contains("complete -c warren"), "{fish}");
    run(&url, &["completion", "tcsh"], 64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_answering_is_69_and_await_startup_times_out_with_75() {
    let url = free_port_url();
    run(&url, &["ping"], 69).await;
    run(&url, &["check_running"], 69).await;
    run(&url, &["await_startup", "--timeout", "1"], 75).await;
}
