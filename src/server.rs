//! Listeners and the accept loop. SIGTERM/SIGINT (or the handle's `shutdown`) closes every
//! connection with 320 CONNECTION_FORCED, waits for them briefly, and returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::Config;

#[derive(Debug, Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no listener could be opened")]
    NoListener,
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("management API: {0}")]
    Management(String),
    #[error("metrics: {0}")]
    Metrics(String),
    #[error(transparent)]
    Open(#[from] crate::broker::OpenError),
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        let s = TcpSocket::new_v6()?;
        // So that [::]:5672 and 0.0.0.0:5672 can both be bound.
        socket2::SockRef::from(&s).set_only_v6(true)?;
        s
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// A running server, for tests and embedding.
pub struct ServerHandle {
    pub addrs: Vec<SocketAddr>,
    /// Where the management API listens, if it does.
    pub management_addr: Option<SocketAddr>,
    broker: Arc<Broker>,
    shutdown: watch::Sender<bool>,
    done: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// Closes every connection (320) and waits for the accept loops to end.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        // The store closes when the last handle on the broker goes.
        drop(self.broker);
        let _ = self.done.await;
    }

    /// Raises or clears a resource alarm (see [`Broker::set_alarm`]).
    pub fn set_alarm(&self, reason: Option<&str>) {
        self.broker.set_alarm(reason.map(str::to_string));
    }
}

/// A warning logged at most once a second, with how many times it happened since.
#[derive(Default)]
struct Throttled {
    count: u64,
    last: Option<std::time::Instant>,
}

impl Throttled {
    fn note(&mut self, log: impl FnOnce(u64)) {
        self.count += 1;
        if self
            .last
            .map_or(true, |t| t.elapsed() >= Duration::from_secs(1))
        {
            log(self.count);
            self.count = 0;
            self.last = Some(std::time::Instant::now());
        }
    }
}

/// Binds the listeners and serves in the background.
pub async fn start(config: Config) -> Result<ServerHandle, ServerError> {
    // Its name synced too: a data directory that vanishes with the power takes everything.
    crate::store::create_dir_all_synced(&config.data_dir).map_err(|source| {
        ServerError::DataDir {
            path: config.data_dir.clone(),
            source,
        }
    })?;
    let mut listeners = Vec::new();
    for &addr in &config.listen {
        match bind(addr) {
            Ok(l) => listeners.push(l),
            // An IPv6 wildcard on a host without IPv6 is not fatal if another listener works.
            Err(e) if addr.is_ipv6() && config.listen.len() > 1 => {
                warn!(%addr, "cannot listen: {e}");
            }
            Err(source) => return Err(ServerError::Listen { addr, source }),
        }
    }
    if listeners.is_empty() {
        return Err(ServerError::NoListener);
    }
    let metrics_listen = config.metrics_listen;
    let management_listen = config.management_listen;
    let (tx, rx) = watch::channel(false);
    let data_dir = config.data_dir.clone();
    let broker = Broker::open(config, rx.clone())?;
    broker.alarms.monitor(data_dir, rx.clone());
    if let Some(addr) = metrics_listen {
        crate::http::serve(addr, Arc::downgrade(&broker))
            .await
            .map_err(|e| ServerError::Metrics(format!("{addr}: {e}")))?;
    }
    let mut management_addr = None;
    if let Some(addr) = management_listen {
        let local = crate::http::management::serve(addr, Arc::downgrade(&broker), rx.clone())
            .await
            .map_err(|e| ServerError::Management(format!("{addr}: {e}")))?;
        management_addr = Some(local);
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    for a in &addrs {
        info!(addr = %a, "listening for AMQP 0-9-1");
    }
    let done = tokio::spawn(serve(listeners, broker.clone(), rx));
    Ok(ServerHandle {
        addrs,
        management_addr,
        broker,
        shutdown: tx,
        done,
    })
}

async fn serve(
    listeners: Vec<TcpListener>,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut accepts = JoinSet::new();
    let connections = TaskTracker::new();
    for l in listeners {
        let broker = broker.clone();
        let connections = connections.clone();
        let mut stop = shutdown.clone();
        accepts.spawn(async move {
            let mut accept_errors = Throttled::default();
            let mut refused = Throttled::default();
            loop {
                tokio::select! {
                    r = l.accept() => match r {
                        Ok((stream, peer)) => {
                            let b = broker.clone();
                            let Some(slot) = b.begin_handshake() else {
                                // Too many sockets that have not logged in: drop this one.
                                refused.note(|n| warn!(
                                    refused = n,
                                    limit = b.config.max_handshakes,
                                    "too many connections in their handshake: new ones closed"
                                ));
                                drop(stream);
                                continue;
                            };
                            connections.spawn(crate::connection::serve(stream, peer, b, slot));
                        }
                        Err(e) => {
                            // EMFILE and friends: back off rather than spin, log once a second.
                            accept_errors.note(|n| warn!(errors = n, "accept failed: {e}"));
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    _ = stop.changed() => break,
                }
            }
        });
    }
    let _ = shutdown.changed().await;
    while accepts.join_next().await.is_some() {}
    // Connections saw the same signal and are closing with 320; give them a moment.
    connections.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), connections.wait()).await;
    // Everything sent to the store is synced before the process (or a test) goes on.
    let store = broker.store.clone();
    drop(broker);
    let _ = tokio::task::spawn_blocking(move || store.close()).await;
}

/// Runs until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<(), ServerError> {
    // Handlers first: a SIGTERM that arrives while the store recovers or the listeners bind
    // must still mean a graceful stop, not the default (instant) death.
    let signal = shutdown_signal();
    let handle = start(config).await?;
    signal.await;
    info!("shutting down: closing connections with 320 CONNECTION_FORCED");
    handle.shutdown().await;
    Ok(())
}

/// A future that completes on SIGTERM or SIGINT; the handlers are installed at once.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async move {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
