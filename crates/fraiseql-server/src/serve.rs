//! The listener: accepts TCP connections and serves a router on each, with a deadline on reading
//! a request's headers (`[limits] header_timeout_ms`), so a client that trickles its headers is
//! cut off instead of holding its connection open for ever. Bodies have their own deadline in
//! the handler (`graphql.rs`). Writes have one too ([`StallGuard`]): a client that reads nothing
//! for `[limits] body_timeout_ms` while the server has bytes for it (a subscriber that stopped
//! reading its SSE stream or WebSocket) is disconnected. Written out after `axum::serve`, which
//! sets no header read timeout and exposes no hyper builder to set one on.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

/// The listener's deadlines.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Reading a request's headers.
    pub header: Duration,
    /// A write that makes no progress (the client reads nothing) for this long ends the
    /// connection.
    pub write_stall: Duration,
}

impl Timeouts {
    /// The deadlines `[limits]` sets: `header_timeout_ms`, and `body_timeout_ms` for writes.
    pub fn of(limits: &fraiseql_config::LimitsConfig) -> Self {
        Self {
            header: Duration::from_millis(limits.header_timeout_ms),
            write_stall: Duration::from_millis(limits.body_timeout_ms),
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then waits for the connections'
/// requests in flight to finish (each connection is shut down gracefully).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Connections watch `signal_tx.closed()`: it completes when the shutdown drops `signal_rx`.
    let (signal_tx, signal_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(signal_rx);
    });
    // Every connection holds a `close_rx`; `close_tx.closed()` completes when all have ended.
    let (close_tx, close_rx) = watch::channel(());
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            () = signal_tx.closed() => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                accept_error(e).await;
                continue;
            }
        };
        // No Nagle delay: a response is written as soon as it is ready.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let service = router
            .clone()
            .map_request(|r: http::Request<Incoming>| r.map(Body::new));
        let service = TowerToHyperService::new(service);
        let signal_tx = signal_tx.clone();
        let close_rx = close_rx.clone();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.header);
            let io = StallGuard::new(tcp, timeouts.write_stall);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => log_end(r),
                () = signal_tx.closed() => {
                    conn.as_mut().graceful_shutdown();
                    log_end(conn.await);
                }
            }
            drop(close_rx);
        });
    }
    drop(listener);
    drop(close_rx);
    close_tx.closed().await;
    Ok(())
}

fn log_end(r: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = r {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// After a failed accept: connection-level errors (the peer went away) are ignored; anything else
/// (out of file descriptors) is logged and the loop pauses a second so it does not spin.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A TCP stream whose writes fail once one has made no progress for `limit`: the peer reads
/// nothing (its window is full). Without it such a peer holds its connection, and what the
/// server queued for it, until the kernel gives up (a subscriber that stopped reading).
struct StallGuard {
    tcp: tokio::net::TcpStream,
    limit: Duration,
    /// Armed while a write is pending.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl StallGuard {
    fn new(tcp: tokio::net::TcpStream, limit: Duration) -> Self {
        Self {
            tcp,
            limit,
            stalled: None,
        }
    }

    /// After a pending write: `Err` once the stall outlasted the limit (the timer's wake-up
    /// brings the writer back here).
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client read nothing of what was written to it in time",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl tokio::io::AsyncRead for StallGuard {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for StallGuard {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.tcp).poll_write(cx, buf) {
            Poll::Pending => self.check_stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.check_stall(cx),
            ready => {
                self.stalled = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
