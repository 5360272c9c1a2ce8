//! The `warren` binary as a child process on a data directory of the test's choosing, for
//! tests that kill it, cut the power under it, restart it, signal it, or run it as an
//! operator does (flags, environment, the metrics endpoint, its exit status and output).
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The broker binary: this build's, or `WARREN_TEST_BIN` (the soak test runs the release
/// build that way).
pub fn binary() -> PathBuf {
    std::env::var_os("WARREN_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_warren")))
}

/// `warren` run to its end with `args`, on the data directory `data`: its exit status and
/// output, for flags and directories it must refuse.
pub fn run_binary(data: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env("WARREN_DATA_DIR", data)
        .env_remove("WARREN_CONFIG")
        .output()
        .unwrap()
}

/// What the broker's stdout and stderr said.
pub fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// How to start a [`ChildBroker`] beyond its data directory and log.
#[derive(Default)]
pub struct Spawn<'a> {
    /// Environment variables set for it (after the harness's own, so they win).
    pub env: &'a [(&'a str, &'a str)],
    /// Command-line arguments after `--listen`.
    pub args: &'a [&'a str],
    /// The metrics endpoint on a free port ([`ChildBroker::metrics_port`]); off otherwise.
    pub metrics: bool,
    /// `ulimit -n` for it.
    pub open_files: Option<u32>,
}

/// The broker as a child process; killed and reaped on drop.
pub struct ChildBroker {
    child: Child,
    pub port: u16,
    /// With [`Spawn::metrics`], the port of its metrics endpoint.
    pub metrics_port: Option<u16>,
    log: PathBuf,
    /// The directory of [`ChildBroker::in_temp_dir`], removed after the broker is reaped.
    scratch: Option<tempfile::TempDir>,
}

impl ChildBroker {
    /// Starts `warren` on `data` (with `env` set), its stdout and stderr appended to `log`,
    /// and waits until it accepts connections (that is, after recovery).
    pub async fn start(data: &Path, log: &Path, env: &[(&str, &str)]) -> ChildBroker {
        Self::spawn(
            data,
            log,
            Spawn {
                env,
                ..Spawn::default()
            },
        )
        .await
    }

    /// As [`ChildBroker::start`], in a fresh temporary directory (data in `data/`, the log
    /// in `broker.log`), removed when the broker is dropped.
    pub async fn in_temp_dir(how: Spawn<'_>) -> ChildBroker {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Self::spawn(
            &dir.path().join("data"),
            &dir.path().join("broker.log"),
            how,
        )
        .await;
        b.scratch = Some(dir);
        b
    }

    /// As [`ChildBroker::start`], as `how` says.
    pub async fn spawn(data: &Path, log: &Path, how: Spawn<'_>) -> ChildBroker {
        let port = free_port();
        let metrics_port = how.metrics.then(free_port);
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = match how.open_files {
            None => Command::new(binary()),
            Some(n) => {
                let mut sh = Command::new("sh");
                sh.arg("-c")
                    .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                    .arg(binary());
                sh
            }
        };
        let metrics = match metrics_port {
            Some(p) => format!("127.0.0.1:{p}"),
            None => "off".to_string(),
        };
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(how.args)
            .env("WARREN_METRICS_LISTEN", metrics)
            .env("WARREN_MANAGEMENT_LISTEN", "off")
            .env("WARREN_DATA_DIR", data)
            .env_remove("WARREN_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, v) in how.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut b = ChildBroker {
            child,
            port,
            metrics_port,
            log: log.to_path_buf(),
            scratch: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if let Some(status) = b.child.try_wait().unwrap() {
                panic!(
                    "broker exited while starting ({status}); log:\n{}",
                    tail(log)
                );
            }
            assert!(
                Instant::now() < deadline,
                "broker did not start listening; log:\n{}",
                tail(log)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        b
    }

    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `127.0.0.1:port`, for a raw client.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The metrics endpoint's port; panics unless started with [`Spawn::metrics`].
    pub fn metrics(&self) -> u16 {
        self.metrics_port
            .expect("started with the metrics endpoint")
    }

    /// SIGTERM (a graceful stop), without waiting.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the broker to exit; panics if it takes over `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "broker did not exit within {limit:?}; log:\n{}",
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the broker");
        self.child.wait().expect("reap the broker");
    }

    /// SIGTERM (a graceful stop) and wait for the exit; panics if it takes over 20 s or
    /// the exit is not a success.
    pub fn stop(mut self) {
        self.sigterm();
        let s = self.wait_exit(Duration::from_secs(20));
        assert!(
            s.success(),
            "broker exited with {s}; log:\n{}",
            tail(&self.log)
        );
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last lines of a broker's log, for failure messages.
pub fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

pub fn assert_no_panic(log: &Path, when: &str) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        !text.contains("panicked"),
        "the broker panicked ({when}); log:\n{}",
        tail(log)
    );
}

/// The resident set size of process `pid`, in bytes (0 if it is gone).
pub fn rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

/// A GET of `path` on `127.0.0.1:port`: the whole response, status line first, or None if
/// the endpoint is not up (or does not answer within 10 s).
pub async fn try_http_get(port: u16, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    })
    .await
    .ok()
    .flatten()
}

/// As [`try_http_get`]; panics if there is no answer.
pub async fn http_get(port: u16, path: &str) -> String {
    try_http_get(port, path)
        .await
        .unwrap_or_else(|| panic!("no answer to GET {path} on port {port}"))
}

/// The value of the first sample of `name` (exact name, any labels) in a scrape.
pub fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
