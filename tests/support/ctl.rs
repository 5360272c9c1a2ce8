//! `warren ctl` run as the built binary against an in-process broker's management
//! listener: the harness of tests/ctl_ops.rs and tests/ctl_topology.rs.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::process::{Command, Output, Stdio};

use super::broker::TestBroker;

/// A broker with its management API on a free loopback port.
pub async fn broker() -> TestBroker {
    TestBroker::start_with(|c| {
        c.management_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await
}

pub fn mgmt_url(b: &TestBroker) -> String {
    format!(
        "http://{}",
        b.handle.management_addr.expect("management listener")
    )
}

/// Runs `warren ctl --url URL ARGS...` (with `stdin` fed in), no `WARREN_*` inherited.
pub async fn ctl_in(url: &str, args: &[&str], stdin: Option<String>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_warren"));
    cmd.arg("ctl").arg("--url").arg(url).args(args);
    for v in [
        "WARREN_MANAGEMENT_URL",
        "WARREN_USERNAME",
        "WARREN_PASSWORD",
    ] {
        cmd.env_remove(v);
    }
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run warren ctl");
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

pub async fn run(url: &str, args: &[&str], code: i32) -> String {
    let o = ctl_in(url, args, None).await;
    assert_eq!(
        o.status.code(),
        Some(code),
        "warren ctl {args:?}:\n{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}
