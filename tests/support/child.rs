//! The `warren` binary as a child process on a data directory of the test's choosing, for
//! tests that kill it, cut the power under it, or restart it.

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// The broker as a child process; killed and reaped on drop.
pub struct ChildBroker {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

impl ChildBroker {
    /// Starts `warren` on `data` (with `env` set), its stdout and stderr appended to `log`,
    /// and waits until it accepts connections (that is, after recovery).
    pub async fn start(data: &Path, log: &Path, env: &[(&str, &str)]) -> ChildBroker {
        let port = free_port();
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("WARREN_METRICS_LISTEN", "off")
            .env("WARREN_DATA_DIR", data)
            .env_remove("WARREN_CONFIG")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut b = ChildBroker {
            child,
            port,
            log: log.to_path_buf(),
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

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the broker");
        self.child.wait().expect("reap the broker");
    }

    /// SIGTERM (a graceful stop) and wait for the exit; panics if it takes over 20 s.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                assert!(
                    s.success(),
                    "broker exited with {s}; log:\n{}",
                    tail(&self.log)
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "broker did not stop on SIGTERM; log:\n{}",
                tail(&self.log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
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
