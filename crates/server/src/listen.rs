//! The accept loop of both TCP ports (WebSocket, HTTP): HTTP/1.1 with a bound on reading a
//! request head.
//!
//! `axum::serve` gives hyper no timer, so hyper's header-read timeout never ran: a client could
//! hold a connection (and its task) forever by sending half a request line, or nothing at all
//! (slowloris). Here every connection gets `server.header_read_timeout_ms` to deliver a complete
//! request head; hyper restarts that bound whenever a keep-alive connection goes idle after an
//! answer, so it is also the idle timeout of keep-alive connections, and a request body may not
//! pause longer than that between its bytes either. A connection upgraded to a
//! WebSocket leaves hyper: the session's login deadline and pings bound it from then on.
//!
//! Every accepted socket has TCP_NODELAY: the signalling is small messages, often several in a
//! row, which Nagle's algorithm would hold back until the peer's (delayed) ACK.
//!
//! The TLS listeners (`[tls]`, wss:// and https://) are the same loop with a rustls handshake
//! first, bounded by the same timeout: a client that opens TCP and never finishes a
//! ClientHello is closed.

use std::future::Future;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::wire::ConnAddrs;

/// Serves `router` on `listener` until `stop` completes; then stops accepting, lets every
/// connection finish the request it is on, and returns when all have ended. Each request carries
/// `ConnectInfo<ConnAddrs>`. With `tls`, each connection is a TLS handshake first, which must
/// end within `header_read_timeout`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    tls: Option<TlsAcceptor>,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    // A request body must keep coming too: a client that sends a head announcing a body and then
    // stalls between its bytes for this long gets an error answer instead of holding the handler.
    let router = router.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(header_read_timeout));
    // Connections watch `stopping`; each holds a receiver of `open` until it ends.
    let (stopping, stop_rx) = watch::channel(false);
    let (open, open_rx) = watch::channel(());
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: the listener itself is fine; retrying
                    // at once would spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        // Small frames go out at once: without TCP_NODELAY a frame written right after another
        // (`fail` then the close frame of a refused connection, `ring` then `talk`) waited for
        // the client's delayed ACK, up to 40 ms on Linux (docs/benchmarks.md, "Overload").
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%remote, error = %e, "cannot set TCP_NODELAY");
        }
        let local = tcp.local_addr().unwrap_or(remote);
        let svc = TowerToHyperService::new(router.clone().layer(Extension(ConnectInfo(ConnAddrs { remote, local }))));
        let mut stop_rx = stop_rx.clone();
        let open_rx = open_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_conn(tcp, svc, header_read_timeout, &mut stop_rx, remote).await,
                Some(acceptor) => match tokio::time::timeout(header_read_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => serve_conn(stream, svc, header_read_timeout, &mut stop_rx, remote).await,
                    // Scanners and clients that do not trust the certificate: debug, not warn.
                    Ok(Err(e)) => tracing::debug!(%remote, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                },
            }
            drop(open_rx);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    drop(open_rx);
    open.closed().await;
}

/// One connection's HTTP/1.1 (with upgrades) until it ends; shut down gracefully once `stop_rx`
/// turns true.
async fn serve_conn<I, S>(
    io: I,
    svc: S,
    header_read_timeout: Duration,
    stop_rx: &mut watch::Receiver<bool>,
    remote: std::net::SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = axum::response::Response>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let conn = builder.serve_connection(TokioIo::new(io), svc).with_upgrades();
    tokio::pin!(conn);
    let mut draining = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    // A header timeout or a client that went away: nothing to act on.
                    tracing::debug!(%remote, error = %e, "HTTP connection ended with an error");
                }
                break;
            }
            _ = stop_rx.wait_for(|s| *s), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}
