//! Clients that misbehave on purpose or by accident (issue 14, items 4, 5, 13 and 14): an
//! oversize message, a client that stops reading, a session that floods hooks, and connections
//! that never finish their headers or their login. Each must end with a clear reason and leave
//! no session behind, without hurting other clients.

use std::time::Duration;

use callgate_tests::{http_post, start_server, Backend, Client, Reply, WAIT};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

fn app_toml(key: &str, url: &str) -> String {
    format!("[apps.{key}]\nurl = \"{url}\"\n")
}

fn connection(app: &str) -> Value {
    json!({"appKey": app, "clientVersion": "2.0", "custom": {}})
}

/// Item 4: a message over `max_client_frame_bytes` gets a Close frame 1009 with a reason, not a
/// dropped TCP connection.
#[tokio::test]
async fn oversize_message_is_closed_with_1009() {
    let server = start_server("").await;
    let url = format!("ws://{}/", server.ws_addr);
    let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
    let (mut sink, mut stream) = ws.split();
    // The sender blocks once the server stops reading; the close frame must still arrive.
    let big = "x".repeat(32 << 20);
    let sender = tokio::spawn(async move {
        let _ = sink.send(Message::Text(big.into())).await;
        sink
    });
    let close = tokio::time::timeout(WAIT, async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Close(f))) => return Ok(f),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("error instead of a close frame: {e}")),
                None => return Err("connection ended without a close frame".to_string()),
            }
        }
    })
    .await
    .expect("the server answers within the wait bound");
    let frame = close.expect("a close frame").expect("the close frame carries a code");
    assert_eq!(frame.code, CloseCode::Size, "{frame:?}");
    assert!(frame.reason.contains("1048576"), "the reason names the limit: {:?}", frame.reason);
    sender.abort();
    server.shutdown().await;
}

/// POSTs `/data/send` with `payload_bytes` of payload until the server answers other than 200
/// (the session is gone) or `max` requests were sent; returns how many were accepted.
async fn flood_data_send(
    server: &callgate_server::RunningServer,
    sid: &str,
    payload_bytes: usize,
    max: usize,
) -> usize {
    let body = json!({"sessionId": sid, "payload": "p".repeat(payload_bytes)}).to_string();
    for i in 0..max {
        if http_post(server, "/rest-api/data/send", &body, None).await.0 != 200 {
            return i;
        }
    }
    max
}

/// The session of a client that stopped reading ended: the backend heard DISCONNECTED and the
/// REST API no longer lists it.
async fn assert_session_gone(server: &callgate_server::RunningServer, backend: &Backend, sid: &str) {
    backend.wait_for("ConnectionStatusEvent", |b| b["status"] == "DISCONNECTED" && b["sessionId"] == sid).await;
    let (status, body) = http_post(server, "/rest-api/connection/find_all", "", None).await;
    assert_eq!(status, 404, "no session is listed any more: {body}");
    assert!(server.shared.sessions.is_empty());
}

/// Item 5: a client that stops reading while the server writes to it is dropped after
/// `client_write_timeout_ms`, and its session is cleaned up.
#[tokio::test]
async fn client_that_stops_reading_is_dropped_after_the_write_timeout() {
    let backend = Backend::start().await;
    let extra = format!("[server]\nclient_write_timeout_ms = 500\n{}", app_toml("backendApp", &backend.url("hooks")));
    let server = start_server(&extra).await;
    let (client, user) = Client::establish(&server, connection("backendApp")).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    // 256 KiB frames until the socket buffers on both sides are full and a write blocks. The
    // outbox (1024 frames) never fills, so only the write timeout can end the session.
    let accepted = flood_data_send(&server, &sid, 256 << 10, 400).await;
    assert!(accepted > 0);
    assert_session_gone(&server, &backend, &sid).await;
    drop(client);
    server.shutdown().await;
}

/// Item 5: a client whose outbox fills is closed without waiting for room in the outbox (the
/// close used to wait for it forever, so the session never ended).
#[tokio::test]
async fn full_outbox_closes_the_session_without_waiting() {
    let backend = Backend::start().await;
    // The write timeout is far beyond the test's bound: only the full outbox may end it.
    let extra = format!(
        "[server]\nclient_send_queue = 4\nclient_write_timeout_ms = 600000\n{}",
        app_toml("backendApp", &backend.url("hooks"))
    );
    let server = start_server(&extra).await;
    let (client, user) = Client::establish(&server, connection("backendApp")).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    flood_data_send(&server, &sid, 256 << 10, 400).await;
    assert_session_gone(&server, &backend, &sid).await;
    drop(client);
    server.shutdown().await;
}

/// Item 13: a session whose backend hangs cannot take every hook permit of its app by flooding
/// `sendData`: past `max_in_flight_per_session` it is refused at once, and other sessions of the
/// same app still connect and send data.
#[tokio::test]
async fn a_flooding_session_is_capped_and_others_still_work() {
    let backend = Backend::start().await;
    backend.answer(|m, req| {
        if m == "OnDataEvent" && req["payload"] == "hang" {
            Reply::mirror(req).after(Duration::from_secs(30))
        } else {
            Reply::mirror(req)
        }
    });
    let extra = format!(
        "[hooks]\nrest_request_timeout = 60\nmax_in_flight_per_app = 8\nmax_in_flight_per_session = 4\n{}",
        app_toml("backendApp", &backend.url("hooks"))
    );
    let server = start_server(&extra).await;
    let (mut flooder, _) = Client::establish(&server, connection("backendApp")).await;
    for i in 0..20 {
        flooder.send("sendData", json!({"operationId": format!("f{i}"), "payload": "hang"})).await;
    }
    // 4 hang at the backend; the other 16 are refused at once, each with its own answer.
    let mut refused = Vec::new();
    for _ in 0..16 {
        let st = flooder.expect("DataStatusEvent").await;
        assert_eq!(st["status"], "FAILED", "{st:?}");
        assert_eq!(st["info"], "Too many requests in flight");
        refused.push(st["operationId"].as_str().unwrap().to_string());
    }
    refused.sort();
    refused.dedup();
    assert_eq!(refused.len(), 16);
    // Another session of the same app is not starved.
    let (mut other, user) = Client::establish(&server, connection("backendApp")).await;
    assert_eq!(user["status"], "ESTABLISHED");
    other.send("sendData", json!({"operationId": "ok-1", "payload": "fine"})).await;
    let st = other.expect("DataStatusEvent").await;
    assert_eq!((st["operationId"].as_str(), st["status"].as_str()), (Some("ok-1"), Some("ACCEPTED")));
    assert_eq!(backend.requests_for("OnDataEvent").iter().filter(|r| r.body["payload"] == "hang").count(), 4);
    server.shutdown().await;
}

/// Reads until the peer closes; panics if it does not within the wait bound.
async fn expect_eof(s: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    let r = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await;
    match r {
        Ok(_) => buf, // EOF or reset: the server let go of the connection
        Err(_) => panic!("{what}: the server kept the connection open; got {:?}", String::from_utf8_lossy(&buf)),
    }
}

/// Item 14: a client that never finishes its request head is disconnected, on both listeners,
/// and an idle keep-alive connection is closed too.
#[tokio::test]
async fn slow_headers_and_idle_keep_alive_are_cut() {
    let server = start_server("[server]\nheader_read_timeout_ms = 300").await;
    for (addr, name) in [(server.http_addr, "HTTP"), (server.ws_addr, "WebSocket")] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        expect_eof(&mut s, &format!("{name} partial headers")).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        expect_eof(&mut s, &format!("{name} silent connection")).await;
    }
    // A request whose body stalls is answered with an error and closed.
    let mut s = TcpStream::connect(server.http_addr).await.unwrap();
    let head =
        format!("POST /apps/EchoApp/connect HTTP/1.1\r\nHost: {}\r\nContent-Length: 100\r\n\r\n", server.http_addr);
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(b"{\"a\"").await.unwrap();
    let answer = expect_eof(&mut s, "stalled body").await;
    assert!(!answer.starts_with(b"HTTP/1.1 2"), "{:?}", String::from_utf8_lossy(&answer));
    // A complete request on a keep-alive connection is answered, then the idle connection ends.
    let mut s = TcpStream::connect(server.http_addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let answer = expect_eof(&mut s, "idle keep-alive").await;
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&answer[..answer.len().min(200)]));
    server.shutdown().await;
}

/// Item 14: a WebSocket that never sends `connection` is closed after `login_timeout_ms` with
/// a clear reason.
#[tokio::test]
async fn websocket_without_login_is_closed() {
    let server = start_server("[server]\nlogin_timeout_ms = 300").await;
    let mut c = Client::connect(&server).await;
    let fail = c.expect("fail").await;
    assert_eq!(fail["apiMethod"], "ConnectionStatusEvent");
    assert_eq!(fail["info"], "Login timeout");
    c.expect_closed().await;
    // A client that logs in on time is not affected.
    let (mut ok, _) = Client::establish(&server, json!({})).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    ok.send("sendData", json!({"operationId": "after", "payload": {}})).await;
    assert_eq!(ok.expect("DataStatusEvent").await["status"], "ACCEPTED");
    server.shutdown().await;
}
