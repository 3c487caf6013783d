//! The listener: accepts connections, serves each with hyper (HTTP/1.1,
//! with a header-read timeout against slowloris), records the peer address
//! for the rate limits, and shuts down gracefully.

use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt as _;

/// Serves `router` until `shutdown`; then the listener closes (new
/// connections are refused), idle keep-alive connections are closed, and
/// requests in flight get up to `grace` to finish. Requests still running
/// after that are dropped; either way the result is `Ok`, so the process
/// exits 0. A connection that has not sent a request's complete headers
/// `header_read_timeout` after it began sending them is closed.
pub async fn serve_gracefully(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: Duration,
    header_read_timeout: Duration,
) -> std::io::Result<()> {
    // Connections hold a receiver of `stop` (they shut down gracefully when
    // it changes) and a clone of `open` (dropped when they end).
    let (stop_tx, stop_rx) = watch::channel(false);
    let (open_tx, open_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small request and reply bodies: send them at once.
        let _ = stream.set_nodelay(true);
        let service =
            router
                .clone()
                .map_request(move |mut request: axum::http::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    request
                });
        let connection = serve_connection(
            stream,
            TowerToHyperService::new(service),
            header_read_timeout,
            stop_rx.clone(),
            open_rx.clone(),
        );
        tokio::spawn(connection);
    }
    drop(listener);
    drop(open_rx);
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(grace, open_tx.closed()).await;
    if drained.is_err() {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "requests still in flight at the end of the shutdown timeout were dropped"
        );
    }
    Ok(())
}

async fn serve_connection<S>(
    stream: tokio::net::TcpStream,
    service: S,
    header_read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    _open: watch::Receiver<()>,
) where
    S: hyper::service::Service<
            axum::http::Request<Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let mut connection = std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
    let mut stopping = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = stop.changed(), if !stopping => {
                // A dropped sender also means "stop".
                let _ = changed;
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// After a failed accept: connection-level errors (the peer gave up) are
/// nothing; others (out of file descriptors) get a pause, not a spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(200)).await;
}
