//! Serves an axum [`Router`] over HTTP/1.1 with the limits a server facing the network needs
//! and `axum::serve` does not set: a header read timeout (a connection that sends a partial
//! request head, or stays idle between requests, is closed) and an idle timeout (a
//! connection on which nothing moves while the server waits on the peer is closed). Without
//! them each such connection holds a socket, a task and its buffers for as long as the peer
//! likes. Shutdown is graceful, as with `axum::serve(..).with_graceful_shutdown(..)`.
//!
//! Used by every HTTP server of the project (the indexer's API, the worker's endpoint and
//! metrics), so they all behave the same towards slow or hostile clients.

mod idle;

pub use idle::IdleTimeout;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::io;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long a connection may keep the server waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From when the server starts waiting for a request (a new connection, or the next
    /// request on a kept-alive one) until its whole head has arrived.
    pub header_read: Duration,
    /// Longest time without a byte moving either way while the server waits on the peer
    /// (a request body that stops, a response the client does not read). A handler that
    /// runs longer without writing anything must stream keep-alives.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(120),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops accepting, lets the
/// requests in flight finish and returns once every connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeouts.header_read)
        .keep_alive(true);
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small responses (API pages, SSE events) should leave at once, not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(IdleTimeout::new(stream, timeouts.idle));
        let conn = http.serve_connection(io, TowerToHyperService::new(app.clone()));
        let conn = connections.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                // Timeouts, resets and malformed requests: the peer's problem, not ours.
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    connections.shutdown().await;
    Ok(())
}

/// Errors of `accept` that concern one connection are skipped; others (out of file
/// descriptors) are logged and followed by a pause, so the loop does not spin.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accepting a connection failed; pausing");
    tokio::time::sleep(Duration::from_millis(200)).await;
}
