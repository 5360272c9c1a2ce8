//! Listeners and the accept loop. SIGTERM/SIGINT (or the handle's `shutdown`) closes every
//! connection with 320 CONNECTION_FORCED, waits for them briefly, and returns. AMQPS
//! listeners (`[tls]`) do the TLS handshake in the connection's task, under its handshake
//! timeout and slot; SIGHUP re-reads their certificates (`tls.rs`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::broker::Broker;
use crate::config::Config;
use crate::connection::Accepted;
use crate::tls::Tls;

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
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
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
    /// The AMQPS listeners' addresses.
    pub tls_addrs: Vec<SocketAddr>,
    tls: Option<Arc<Tls>>,
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

    /// Re-reads the TLS certificate, key and CA files (what SIGHUP does); on an error the
    /// previous ones stay in use. Ok if there is no TLS.
    pub fn reload_tls(&self) -> Result<(), crate::tls::TlsError> {
        self.tls.as_ref().map_or(Ok(()), |t| t.reload())
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
    // Certificates first: a bad file stops the start before anything listens. TLS
    // listeners before the plain ones, so that a plain port accepting means both are up.
    let tls = match &config.tls {
        Some(t) => Some(Arc::new(Tls::new(t.clone())?)),
        None => None,
    };
    let mut listeners = Vec::new();
    if let Some(t) = &tls {
        listeners.extend(
            bind_all(&t.settings().listen)?
                .into_iter()
                .map(|l| (l, Some(t.clone()))),
        );
    }
    let plain = bind_all(&config.listen)?;
    let tls_addrs: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|(l, _)| l.local_addr().ok())
        .collect();
    listeners.extend(plain.into_iter().map(|l| (l, None)));
    let metrics_listen = config.metrics_listen;
    let management_listen = config.management_listen;
    let metrics_tls = tls.clone().filter(|_| config.metrics_tls);
    let (tx, rx) = watch::channel(false);
    let data_dir = config.data_dir.clone();
    let broker = Broker::open(config, rx.clone())?;
    broker.alarms.monitor(data_dir, rx.clone());
    if let Some(addr) = metrics_listen {
        crate::http::serve(addr, Arc::downgrade(&broker), metrics_tls)
            .await
            .map_err(|e| ServerError::Metrics(format!("{addr}: {e}")))?;
    }
    let addrs: Vec<SocketAddr> = listeners
        .iter()
        .filter(|(_, t)| t.is_none())
        .filter_map(|(l, _)| l.local_addr().ok())
        .collect();
    let mut management_addr = None;
    if let Some(addr) = management_listen {
        use crate::http::management::Listener;
        let named = (addrs.iter().map(|&a| Listener {
            protocol: "amqp",
            addr: a,
        }))
        .chain(tls_addrs.iter().map(|&a| Listener {
            protocol: "amqp/ssl",
            addr: a,
        }))
        .collect();
        let local =
            crate::http::management::serve(addr, Arc::downgrade(&broker), rx.clone(), named)
                .await
                .map_err(|e| ServerError::Management(format!("{addr}: {e}")))?;
        management_addr = Some(local);
    }
    for a in &addrs {
        info!(addr = %a, "listening for AMQP 0-9-1");
    }
    for a in &tls_addrs {
        info!(addr = %a, "listening for AMQP 0-9-1 over TLS");
    }
    let done = tokio::spawn(serve(listeners, broker.clone(), rx));
    Ok(ServerHandle {
        addrs,
        management_addr,
        tls_addrs,
        tls,
        broker,
        shutdown: tx,
        done,
    })
}

/// Binds every address; an IPv6 wildcard on a host without IPv6 is not fatal if another of
/// them works.
fn bind_all(addrs: &[SocketAddr]) -> Result<Vec<TcpListener>, ServerError> {
    let mut listeners = Vec::new();
    for &addr in addrs {
        match bind(addr) {
            Ok(l) => listeners.push(l),
            Err(e) if addr.is_ipv6() && addrs.len() > 1 => {
                warn!(%addr, "cannot listen: {e}");
            }
            Err(source) => return Err(ServerError::Listen { addr, source }),
        }
    }
    if listeners.is_empty() {
        return Err(ServerError::NoListener);
    }
    Ok(listeners)
}

/// The TLS handshake of an accepted socket (under the AMQP handshake's deadline and slot),
/// then the connection over it. A failed handshake is the peer's problem: logged, dropped.
async fn serve_tls(
    stream: tokio::net::TcpStream,
    mut accepted: Accepted,
    tls: Arc<Tls>,
    broker: Arc<Broker>,
) {
    let peer = accepted.peer;
    match tokio::time::timeout_at(accepted.deadline, tls.acceptor().accept(stream)).await {
        Ok(Ok(s)) => {
            accepted.peer_cert_login =
                crate::tls::peer_login(&s, broker.config.ssl_cert_login_from);
            crate::connection::serve(s, accepted, broker).await;
        }
        Ok(Err(e)) => info!(%peer, "TLS handshake failed: {e}"),
        Err(_) => info!(%peer, "TLS handshake timed out"),
    }
}

async fn serve(
    listeners: Vec<(TcpListener, Option<Arc<Tls>>)>,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut accepts = JoinSet::new();
    let connections = TaskTracker::new();
    for (l, tls) in listeners {
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
                            // On the socket itself, before any TLS wraps it.
                            let _ = stream.set_nodelay(true);
                            let local = stream.local_addr().unwrap_or(peer);
                            let accepted = Accepted {
                                peer,
                                local,
                                tls: tls.is_some(),
                                handshake: slot,
                                deadline: Instant::now() + b.config.handshake_timeout,
                                peer_cert_login: None,
                            };
                            match &tls {
                                None => {
                                    connections.spawn(crate::connection::serve(stream, accepted, b));
                                }
                                Some(t) => {
                                    connections.spawn(serve_tls(stream, accepted, t.clone(), b));
                                }
                            }
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
    let hangup = hangup_signal();
    let handle = start(config).await?;
    let tls = handle.tls.clone();
    tokio::spawn(async move {
        let Some(mut hangup) = hangup else { return };
        while hangup.recv().await.is_some() {
            match &tls {
                // Errors are logged by the reload; the old certificates stay.
                Some(t) => drop(t.reload()),
                None => info!("SIGHUP: no TLS configured, nothing to reload"),
            }
        }
    });
    signal.await;
    info!("shutting down: closing connections with 320 CONNECTION_FORCED");
    handle.shutdown().await;
    Ok(())
}

/// SIGHUP, installed at once (its default would end the process): certificates are
/// reloaded on it, as `rabbitmqctl` can ask RabbitMQ to.
#[cfg(unix)]
fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            warn!("cannot handle SIGHUP (no certificate reloads): {e}");
            None
        }
    }
}

#[cfg(not(unix))]
fn hangup_signal() -> Option<NoSignal> {
    None
}

#[cfg(not(unix))]
struct NoSignal;

#[cfg(not(unix))]
impl NoSignal {
    async fn recv(&mut self) -> Option<()> {
        None
    }
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
