//! A real Warren server in-process on a free loopback port, and a lapin connection to it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::net::SocketAddr;

use lapin::{Connection, ConnectionProperties};
use warren::config::Config;
use warren::server::{start, ServerHandle};

/// A running broker; dropped at the end of the test (the runtime ends its tasks).
pub struct TestBroker {
    pub handle: ServerHandle,
    pub addr: SocketAddr,
    pub data_dir: tempfile::TempDir,
    config: Config,
}

impl TestBroker {
    pub async fn start() -> TestBroker {
        Self::start_with(|_| {}).await
    }

    /// Starts a broker after `tweak` adjusts its config.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestBroker {
        let data_dir = tempfile::tempdir().expect("tempdir");
        let mut config = Config {
            listen: vec!["127.0.0.1:0".parse().expect("addr")],
            data_dir: data_dir.path().to_path_buf(),
            metrics_listen: None,
            management_listen: None,
            ..Config::default()
        };
        tweak(&mut config);
        Self::start_in(data_dir, config).await
    }

    /// Starts a broker on an existing data directory (a restart with another config).
    pub async fn start_in_dir(
        data_dir: tempfile::TempDir,
        tweak: impl FnOnce(&mut Config),
    ) -> TestBroker {
        let mut config = Config {
            listen: vec!["127.0.0.1:0".parse().expect("addr")],
            data_dir: data_dir.path().to_path_buf(),
            metrics_listen: None,
            management_listen: None,
            ..Config::default()
        };
        tweak(&mut config);
        Self::start_in(data_dir, config).await
    }

    async fn start_in(data_dir: tempfile::TempDir, config: Config) -> TestBroker {
        let handle = start(config.clone()).await.expect("server starts");
        let addr = handle.addrs[0];
        TestBroker {
            handle,
            addr,
            data_dir,
            config,
        }
    }

    /// A graceful restart on the same data directory (a new port).
    pub async fn restart(self) -> TestBroker {
        let TestBroker {
            handle,
            data_dir,
            config,
            ..
        } = self;
        handle.shutdown().await;
        Self::start_in(data_dir, config).await
    }

    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.uri(), ConnectionProperties::default())
            .await
            .expect("lapin connects")
    }

    /// A new connection and one channel on it.
    pub async fn open(&self) -> (Connection, lapin::Channel) {
        let conn = self.connect().await;
        let ch = conn.create_channel().await.expect("channel opens");
        (conn, ch)
    }
}
