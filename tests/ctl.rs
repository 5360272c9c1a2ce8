//! `warren ctl` end to end: the built binary's commands against a Warren broker's management
//! listener (started in-process), checked through the CLI's own listings and, for passwords,
//! an AMQP login.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Output};

use support::broker::TestBroker;

/// A broker with its management API on a free loopback port.
async fn broker() -> TestBroker {
    TestBroker::start_with(|c| {
        c.management_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

fn mgmt_url(b: &TestBroker) -> String {
    format!(
        "http://{}",
        b.handle.management_addr.expect("management listener")
    )
}

fn amqp_uri(b: &TestBroker, user: &str, password: &str) -> String {
    format!("amqp://{user}:{password}@{}/%2f", b.addr)
}

/// A name no other test (or earlier run) uses.
fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `warren ctl --url URL ARGS...` off the runtime's threads, with no `WARREN_*`
/// connection settings inherited from the environment.
async fn ctl(url: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
    cmd.arg("ctl").arg("--url").arg(url).args(args);
    for v in [
        "WARREN_MANAGEMENT_URL",
        "WARREN_USERNAME",
        "WARREN_PASSWORD",
    ] {
        cmd.env_remove(v);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("run warren ctl"))
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs a command that must succeed; its stdout.
async fn ok(url: &str, args: &[&str]) -> String {
    let o = ctl(url, args).await;
    assert!(
        o.status.success(),
        "warren ctl {args:?} failed ({:?}):\n{}{}",
        o.status.code(),
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs a command that must fail with `code`; its stderr.
async fn fails(url: &str, args: &[&str], code: i32) -> String {
    let o = ctl(url, args).await;
    assert_eq!(
        o.status.code(),
        Some(code),
        "warren ctl {args:?}:\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    stderr(&o)
}

/// The lines of a `-q` listing after its header.
fn rows(listing: &str) -> Vec<String> {
    listing.lines().skip(1).map(str::to_string).collect()
}

async fn can_log_in(uri: &str) -> bool {
    lapin::Connection::connect(uri, lapin::ConnectionProperties::default())
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_tags_and_passwords() {
    let b = broker().await;
    let url = mgmt_url(&b);
    let alice = unique("ctl_alice");

    let out = ok(&url, &["add_user", &alice, "pw1"]).await;
    assert!(
        out.starts_with(&format!("Adding user \"{alice}\" ...\n")),
        "{out}"
    );
    let err = fails(&url, &["add_user", &alice, "pw1"], 70).await;
    assert!(err.contains("already exists"), "{err}");

    let out = ok(
        &url,
        &["set_user_tags", &alice, "monitoring", "policymaker"],
    )
    .await;
    assert_eq!(
        out,
        format!("Setting tags for user \"{alice}\" to [monitoring, policymaker] ...\n")
    );
    let listing = ok(&url, &["-q", "list_users"]).await;
    assert_eq!(listing.lines().next(), Some("user\ttags"), "{listing}");
    assert!(
        rows(&listing).contains(&format!("{alice}\t[monitoring, policymaker]")),
        "{listing}"
    );
    let full = ok(&url, &["list_users"]).await;
    assert!(
        full.starts_with("Listing users ...\nuser\ttags\n"),
        "{full}"
    );

    // set_user_tags kept the password; change_password keeps the tags. (An AMQP login needs
    // access to the vhost.)
    ok(&url, &["set_permissions", &alice, ".*", ".*", ".*"]).await;
    assert!(can_log_in(&amqp_uri(&b, &alice, "pw1")).await);
    ok(&url, &["change_password", &alice, "pw2"]).await;
    assert!(!can_log_in(&amqp_uri(&b, &alice, "pw1")).await);
    assert!(can_log_in(&amqp_uri(&b, &alice, "pw2")).await);
    let listing = ok(&url, &["-q", "list_users"]).await;
    assert!(
        rows(&listing).contains(&format!("{alice}\t[monitoring, policymaker]")),
        "{listing}"
    );

    ok(&url, &["set_user_tags", &alice]).await;
    let listing = ok(&url, &["-q", "list_users"]).await;
    assert!(
        rows(&listing).contains(&format!("{alice}\t[]")),
        "{listing}"
    );

    ok(&url, &["delete_user", &alice]).await;
    let listing = ok(&url, &["-q", "list_users"]).await;
    assert!(
        !rows(&listing)
            .iter()
            .any(|r| r.starts_with(&format!("{alice}\t"))),
        "{listing}"
    );
    let err = fails(&url, &["delete_user", &alice], 67).await;
    assert!(err.contains("does not exist"), "{err}");
    fails(&url, &["change_password", &alice, "x"], 67).await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhosts_and_permissions() {
    let b = broker().await;
    let url = mgmt_url(&b);
    let user = unique("ctl_bob");
    // A vhost with a slash and a space: both must be percent-encoded in the paths.
    let vhost = format!("{} x/y", unique("ctl_v"));
    ok(&url, &["add_user", &user, "pw"]).await;

    let out = ok(&url, &["add_vhost", &vhost, "--description", "made by ctl"]).await;
    assert_eq!(out, format!("Adding vhost \"{vhost}\" ...\n"));
    let listing = ok(&url, &["-q", "list_vhosts"]).await;
    assert_eq!(listing.lines().next(), Some("name"));
    assert!(rows(&listing).contains(&vhost), "{listing}");
    assert!(rows(&listing).contains(&"/".to_string()), "{listing}");
    let listing = ok(&url, &["-q", "list_vhosts", "name", "description"]).await;
    assert!(
        rows(&listing).contains(&format!("{vhost}\tmade by ctl")),
        "{listing}"
    );

    ok(
        &url,
        &["set_permissions", "-p", &vhost, &user, ".*", "^w", "^r"],
    )
    .await;
    let listing = ok(&url, &["-q", "list_permissions", "-p", &vhost]).await;
    assert_eq!(listing.lines().next(), Some("user\tconfigure\twrite\tread"));
    assert!(
        rows(&listing).contains(&format!("{user}\t.*\t^w\t^r")),
        "{listing}"
    );
    let listing = ok(&url, &["-q", "list_user_permissions", &user]).await;
    assert_eq!(
        listing.lines().next(),
        Some("vhost\tconfigure\twrite\tread")
    );
    assert!(
        rows(&listing).contains(&format!("{vhost}\t.*\t^w\t^r")),
        "{listing}"
    );
    // The default vhost is "/".
    ok(&url, &["set_permissions", &user, "", "", ".*"]).await;
    let listing = ok(&url, &["-q", "list_permissions"]).await;
    assert!(
        rows(&listing).contains(&format!("{user}\t\t\t.*")),
        "{listing}"
    );

    ok(&url, &["clear_permissions", "-p", &vhost, &user]).await;
    let listing = ok(&url, &["-q", "list_permissions", "-p", &vhost]).await;
    assert!(
        !rows(&listing)
            .iter()
            .any(|r| r.starts_with(&format!("{user}\t"))),
        "{listing}"
    );
    // Nothing left to clear is no error; a missing user or vhost is.
    ok(&url, &["clear_permissions", "-p", &vhost, &user]).await;
    fails(
        &url,
        &[
            "set_permissions",
            "-p",
            "no such vhost",
            &user,
            ".*",
            ".*",
            ".*",
        ],
        65,
    )
    .await;
    fails(
        &url,
        &["set_permissions", "no_such_user_ctl", ".*", ".*", ".*"],
        67,
    )
    .await;

    // Topic permissions: clearing one exchange keeps the others.
    ok(
        &url,
        &[
            "set_topic_permissions",
            "-p",
            &vhost,
            &user,
            "amq.topic",
            "^a",
            "^b",
        ],
    )
    .await;
    ok(
        &url,
        &[
            "set_topic_permissions",
            "-p",
            &vhost,
            &user,
            "x2",
            "^c",
            "^d",
        ],
    )
    .await;
    let listing = ok(&url, &["-q", "list_topic_permissions", "-p", &vhost]).await;
    assert_eq!(listing.lines().next(), Some("user\texchange\twrite\tread"));
    let mut mine: Vec<String> = rows(&listing)
        .into_iter()
        .filter(|r| r.starts_with(&format!("{user}\t")))
        .collect();
    mine.sort();
    assert_eq!(
        mine,
        [
            format!("{user}\tamq.topic\t^a\t^b"),
            format!("{user}\tx2\t^c\t^d")
        ]
    );
    ok(
        &url,
        &["clear_topic_permissions", "-p", &vhost, &user, "x2"],
    )
    .await;
    let listing = ok(&url, &["-q", "list_topic_permissions", "-p", &vhost]).await;
    let mine: Vec<String> = rows(&listing)
        .into_iter()
        .filter(|r| r.starts_with(&format!("{user}\t")))
        .collect();
    assert_eq!(mine, [format!("{user}\tamq.topic\t^a\t^b")]);
    ok(&url, &["clear_topic_permissions", "-p", &vhost, &user]).await;
    let listing = ok(&url, &["-q", "list_topic_permissions", "-p", &vhost]).await;
    assert!(
        !rows(&listing)
            .iter()
            .any(|r| r.starts_with(&format!("{user}\t"))),
        "{listing}"
    );

    ok(&url, &["delete_vhost", &vhost]).await;
    let listing = ok(&url, &["-q", "list_vhosts"]).await;
    assert!(!rows(&listing).contains(&vhost), "{listing}");
    fails(&url, &["delete_vhost", &vhost], 65).await;
    ok(&url, &["delete_user", &user]).await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits() {
    let b = broker().await;
    let url = mgmt_url(&b);
    let vhost = unique("ctl_lv");
    let user = unique("ctl_lu");
    ok(&url, &["add_vhost", &vhost]).await;
    ok(&url, &["add_user", &user, "pw"]).await;

    // set_vhost_limits replaces the set.
    ok(
        &url,
        &[
            "set_vhost_limits",
            "-p",
            &vhost,
            r#"{"max-connections": 10, "max-queues": 5}"#,
        ],
    )
    .await;
    let out = ok(&url, &["-q", "list_vhost_limits", "-p", &vhost]).await;
    assert_eq!(out, "{\"max-connections\":10,\"max-queues\":5}\n");
    ok(
        &url,
        &["set_vhost_limits", "-p", &vhost, r#"{"max-queues": 7}"#],
    )
    .await;
    let out = ok(&url, &["-q", "list_vhost_limits", "-p", &vhost]).await;
    assert_eq!(out, "{\"max-queues\":7}\n");
    let out = ok(&url, &["-q", "list_vhost_limits", "--global"]).await;
    assert_eq!(out.lines().next(), Some("vhost\tlimits"));
    assert!(
        rows(&out).contains(&format!("{vhost}\t{{\"max-queues\":7}}")),
        "{out}"
    );
    ok(&url, &["clear_vhost_limits", "-p", &vhost]).await;
    let out = ok(&url, &["-q", "list_vhost_limits", "-p", &vhost]).await;
    assert_eq!(out, "\n");
    let err = fails(&url, &["set_vhost_limits", "-p", &vhost, "notjson"], 65).await;
    assert!(err.contains("JSON"), "{err}");

    // set_user_limits adds to the set; clear_user_limits takes one or all.
    ok(&url, &["set_user_limits", &user, r#"{"max-channels": 4}"#]).await;
    ok(
        &url,
        &["set_user_limits", &user, r#"{"max-connections": 2}"#],
    )
    .await;
    let out = ok(&url, &["-q", "list_user_limits", "--user", &user]).await;
    assert_eq!(out, "{\"max-channels\":4,\"max-connections\":2}\n");
    let out = ok(&url, &["-q", "list_user_limits", "--global"]).await;
    assert!(
        rows(&out).contains(&format!(
            "{user}\t{{\"max-channels\":4,\"max-connections\":2}}"
        )),
        "{out}"
    );
    ok(&url, &["clear_user_limits", &user, "max-channels"]).await;
    let out = ok(&url, &["-q", "list_user_limits", "--user", &user]).await;
    assert_eq!(out, "{\"max-connections\":2}\n");
    ok(&url, &["clear_user_limits", &user, "all"]).await;
    let out = ok(&url, &["-q", "list_user_limits", "--user", &user]).await;
    assert_eq!(out, "{}\n");

    ok(&url, &["delete_user", &user]).await;
    ok(&url, &["delete_vhost", &vhost]).await;
    b.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_exit_codes() {
    let b = broker().await;
    let url = mgmt_url(&b);

    let err = fails(&url, &["--password", "wrong", "list_users"], 77).await;
    assert!(
        err.contains("authentication failed for user \"guest\""),
        "{err}"
    );

    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = fails(&format!("http://127.0.0.1:{port}"), &["list_users"], 69).await;
    assert!(err.contains("cannot reach"), "{err}");

    let err = fails("https://127.0.0.1:15671", &["list_users"], 64).await;
    assert!(err.contains("https is not supported"), "{err}");

    fails(&url, &["no_such_command"], 64).await;
    fails(&url, &["add_vhost"], 64).await;
    fails(&url, &["list_vhosts", "bogus"], 64).await;

    // -q drops only the informational line.
    let loud = ok(&url, &["list_users"]).await;
    let quiet = ok(&url, &["-q", "list_users"]).await;
    assert_eq!(loud, format!("Listing users ...\n{quiet}"));
    let headless = ok(&url, &["-q", "--no-table-headers", "list_users"]).await;
    assert_eq!(headless, rows(&quiet).join("\n") + "\n");
    b.handle.shutdown().await;
}
