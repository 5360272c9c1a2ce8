//! The metrics endpoint: a small HTTP/1.1 server for Prometheus. `GET /metrics` (counters
//! and histograms from the registry, then broker-wide gauges), `GET /metrics/per-object`
//! (per-queue gauges); anything else is 404 (405 for other methods). Requests are peer
//! input: bounded, parsed without panics, one response per connection. With `metrics_tls`,
//! HTTPS with the `[tls]` certificate (and its reloads).

pub mod management;
pub mod scrape;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::broker::Broker;

/// A request head larger than this is refused.
const MAX_REQUEST: usize = 8 * 1024;

/// Binds `addr` and serves until the broker is gone.
pub async fn serve(
    addr: SocketAddr,
    broker: std::sync::Weak<Broker>,
    tls: Option<Arc<crate::tls::Tls>>,
) -> std::io::Result<SocketAddr> {
    let handle = crate::metrics::recorder().map_err(std::io::Error::other)?;
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    info!(addr = %local, "serving Prometheus metrics on /metrics and /metrics/per-object");
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    warn!("metrics accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(b) = broker.upgrade() else { return };
            let tls = tls.as_ref().map(|t| t.acceptor());
            tokio::spawn(async move {
                let r = match tls {
                    None => respond(stream, &b, handle).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await
                        {
                            Ok(Ok(s)) => respond(s, &b, handle).await,
                            Ok(Err(e)) => Err(e),
                            Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
                        }
                    }
                };
                if let Err(e) = r {
                    debug!("metrics request: {e}");
                }
            });
        }
    });
    Ok(local)
}

async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    b: &Arc<Broker>,
    handle: &metrics_exporter_prometheus::PrometheusHandle,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let head = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                return Ok(true);
            }
            if buf.len() > MAX_REQUEST {
                return Ok(false);
            }
        }
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    if !head {
        return reply(&mut s, "400 Bad Request", "text/plain", "bad request\n").await;
    }
    let line = buf.split(|&c| c == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" && method != "HEAD" {
        return reply(&mut s, "405 Method Not Allowed", "text/plain", "GET only\n").await;
    }
    const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
    match path {
        "/metrics" => {
            let mut body = handle.render();
            body.push_str(&scrape::global(b));
            reply(&mut s, "200 OK", TEXT, &body).await
        }
        "/metrics/per-object" => {
            let body = scrape::per_object(b);
            reply(&mut s, "200 OK", TEXT, &body).await
        }
        _ => reply(&mut s, "404 Not Found", "text/plain", "not found\n").await,
    }
}

async fn reply<S: AsyncWrite + Unpin>(
    s: &mut S,
    status: &str,
    kind: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body.as_bytes()).await?;
    s.shutdown().await
}
