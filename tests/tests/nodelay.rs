//! Every socket accepted on the WebSocket and HTTP ports has TCP_NODELAY.
//!
//! Found by the overload bench (`benches/benches/overload.rs`, docs/benchmarks.md "Overload"):
//! a WebSocket refused by `[limits]` gets two frames in a row (`fail`, then the close frame), and
//! without TCP_NODELAY the second waited for the client's delayed ACK: 1 % of refusals took
//! ~45 ms instead of ~0.4 ms. The same holds for any two frames sent back to back (`ring` then
//! `talk`, a status then an event). The test reads the option on the server's own socket (the
//! server runs in this process), so it needs no clock.

use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use callgate_tests::start_server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// TCP_NODELAY of this process's socket whose local address is `local` and peer `peer`.
fn nodelay_of(local: SocketAddr, peer: SocketAddr) -> Option<bool> {
    for entry in std::fs::read_dir("/proc/self/fd").expect("/proc/self/fd").flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        // SAFETY: the descriptor is only borrowed long enough to duplicate it; one closed in the
        // meantime makes the duplication fail (or names another file, which the address check
        // below rejects).
        let Ok(owned) = (unsafe { BorrowedFd::borrow_raw(fd) }).try_clone_to_owned() else { continue };
        let sock = std::net::TcpStream::from(owned);
        if sock.local_addr().ok() == Some(local) && sock.peer_addr().ok() == Some(peer) {
            return sock.nodelay().ok();
        }
    }
    None
}

#[tokio::test]
async fn sockets_accepted_on_the_websocket_and_http_ports_have_tcp_nodelay() {
    let server = start_server("").await;

    let tcp = TcpStream::connect(server.ws_addr).await.unwrap();
    let ws_client = tcp.local_addr().unwrap();
    let (_ws, _) = tokio_tungstenite::client_async(
        format!("ws://{}/", server.ws_addr),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    .expect("websocket handshake");
    assert_eq!(nodelay_of(server.ws_addr, ws_client), Some(true), "the WebSocket port's socket");

    let mut http = TcpStream::connect(server.http_addr).await.unwrap();
    let http_client = http.local_addr().unwrap();
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = http.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..n]));
    assert_eq!(nodelay_of(server.http_addr, http_client), Some(true), "the HTTP port's socket");

    server.shutdown().await;
}
