//! Admission control (issue 11 item 1, `[limits]`): each limit hit by a real client gets its
//! clear refusal (WebSocket `fail` + close 1013, `FAILED` with the limit as `info`, `503` with
//! `Retry-After` from the REST API and to a SIP INVITE), and what was admitted before keeps
//! working.

use std::net::SocketAddr;
use std::time::Duration;

use callgate_tests::peers::{Sipp, SippProcess};
use callgate_tests::sip_fixtures::{call_msg, connection, registrar, sip_server_toml, sipp_uas};
use callgate_tests::streams::{publish_msg, stream_status};
use callgate_tests::webrtc::FakeBrowser;
use callgate_tests::{http_post, start_server, Backend, Client, WAIT};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

fn app(backend: &Backend) -> String {
    format!("[apps.backendApp]\nurl = \"{}\"\n", backend.url("hooks"))
}

/// A WebSocket to `ws` from the local address `from` (127.0.0.x: several client addresses on
/// one host).
async fn ws_from(
    from: &str,
    ws: SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let tcp = sock.connect(ws).await.expect("tcp connects");
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{ws}/"), tokio_tungstenite::MaybeTlsStream::Plain(tcp))
        .await
        .expect("websocket handshake");
    ws
}

/// A session from `from` that logs in and is answered `ConnectionStatusEvent ESTABLISHED`.
async fn session_from(
    from: &str,
    ws: SocketAddr,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
    use futures_util::SinkExt;
    let mut s = ws_from(from, ws).await;
    let login = json!({"message": "connection", "data": [connection(json!({}))]});
    s.send(Message::Text(login.to_string().into())).await.unwrap();
    let established = tokio::time::timeout(WAIT, async {
        while let Some(Ok(m)) = s.next().await {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["message"] == "getUserData" {
                    return true;
                }
                if v["message"] == "fail" {
                    panic!("refused: {v}");
                }
            }
        }
        false
    })
    .await
    .expect("login answered in time");
    assert!(established, "logged in");
    s
}

/// A connection refused by a limit: the `fail` frame's `info`, then a close frame 1013.
async fn refused_from(from: &str, ws: SocketAddr) -> String {
    let mut s = ws_from(from, ws).await;
    let (info, close) = tokio::time::timeout(WAIT, async {
        let mut info = None;
        while let Some(m) = s.next().await {
            match m.expect("frames arrive") {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(v["message"], "fail", "{v}");
                    assert_eq!(v["data"][0]["apiMethod"], "ConnectionStatusEvent", "{v}");
                    assert_eq!(v["data"][0]["status"], "FAILED", "{v}");
                    info = v["data"][0]["info"].as_str().map(str::to_string);
                }
                Message::Close(f) => return (info, f),
                _ => {}
            }
        }
        (info, None)
    })
    .await
    .expect("refusal in time");
    let close = close.expect("a close frame");
    assert_eq!(close.code, CloseCode::Again, "1013 try again later: {close:?}");
    info.expect("a fail frame before the close")
}

#[tokio::test]
async fn sessions_past_the_limits_get_fail_and_1013_and_admitted_ones_keep_working() {
    let backend = Backend::start().await;
    let server = start_server(&format!("[limits]\nmax_sessions = 3\nmax_sessions_per_ip = 2\n{}", app(&backend))).await;
    let ws = server.ws_addr;
    let a1 = session_from("127.0.0.1", ws).await;
    let _a2 = session_from("127.0.0.1", ws).await;
    let info = refused_from("127.0.0.1", ws).await;
    assert!(info.contains("limit 2") && info.contains("limits.max_sessions_per_ip"), "{info}");
    // Another address is still welcome, up to the total.
    let _b1 = session_from("127.0.0.2", ws).await;
    let info = refused_from("127.0.0.3", ws).await;
    assert!(info.contains("limit 3") && info.contains("limits.max_sessions)"), "{info}");
    // The refused ones never became sessions: the backend heard of three.
    assert_eq!(backend.requests_for("connect").len(), 3);
    assert_eq!(server.shared.sessions.len(), 3);
    // Admitted sessions are undisturbed: the REST API reaches one.
    let (status, list) = http_post(&server, "/rest-api/connection/find_all", "", None).await;
    assert_eq!(status, 200, "{list}");
    let list: Vec<Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(list.len(), 3);
    // A slot comes back when its session ends.
    drop(a1);
    tokio::time::timeout(WAIT, async {
        while server.shared.admission.sessions() != 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the closed session's slot is given back");
    let _a3 = session_from("127.0.0.1", ws).await;
    let metrics = get(server.http_addr, "/metrics").await;
    for what in ["sessions", "sessions_per_ip"] {
        let line = format!("callgate_admission_refused_total{{what=\"{what}\"}} 1");
        assert!(metrics.contains(&line), "{line} in /metrics");
    }
    let shared = server.shared.clone();
    server.shutdown().await;
    assert_eq!(shared.admission.sessions(), 0, "every slot given back at shutdown");
}

/// `GET path` on the HTTP port; the body.
async fn get(http: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out)).await.unwrap().unwrap();
    out
}

/// A raw HTTP request; the status line and headers (lowercased names) and the body.
async fn raw_post(http: SocketAddr, path: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    let mut s = TcpStream::connect(http).await.unwrap();
    s.write_all(
        format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tokio::time::timeout(WAIT, s.read_to_string(&mut out)).await.unwrap().unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    let mut lines = head.lines();
    let status = lines.next().unwrap_or("").split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn startup(call_id: &str, sipp: &SippProcess) -> Value {
    json!({"callId": call_id, "callee": "3001", "sipLogin": "3000", "sipPassword": "secret",
           "sipDomain": "127.0.0.1", "sipPort": sipp.local_addr().port().to_string(), "appKey": "backendApp"})
}

#[tokio::test]
async fn calls_past_max_calls_get_503_failed_and_503_with_retry_after_at_the_caller() {
    let backend = Backend::start().await;
    let toml = format!("[limits]\nmax_calls = 1\nretry_after_s = 7\n{}", sip_server_toml(&backend));
    let server = start_server(&toml).await;
    // One call takes the only place.
    let uas = sipp_uas("uas_answer_local_bye.xml");
    let (status, text) = http_post(&server, "/rest-api/call/startup", &startup("r1", &uas).to_string(), None).await;
    assert_eq!(status, 200, "{text}");
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "r1" && b["status"] == "ESTABLISHED").await;

    // REST: 503 with Retry-After and the limit in the body.
    let (status, headers, body) =
        raw_post(server.http_addr, "/rest-api/call/startup", &startup("r2", &uas).to_string()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(header(&headers, "retry-after"), Some("7"));
    assert!(body.contains("Too many calls (limit 1, limits.max_calls)"), "{body}");

    // A client's call: FAILED with the same reason, to the client and the backend.
    let registrar = registrar("secret");
    let sip = json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
                     "sipPort": registrar.local_addr().port().to_string()});
    let (mut c, _) = Client::establish(&server, connection(sip)).await;
    c.expect("registered").await;
    c.send("call", call_msg("c2", "3001")).await;
    let fin = c.expect("finish").await;
    assert_eq!((fin["callId"].as_str(), fin["status"].as_str()), (Some("c2"), Some("FAILED")), "{fin:?}");
    assert!(fin["info"].as_str().unwrap().contains("limits.max_calls"), "{fin:?}");
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "c2" && b["status"] == "FAILED").await;

    // An incoming INVITE for the registered client: 503 with Retry-After, before any hook.
    let caller = Sipp::scenario("selfcheck/uac_call_expect_reject.xml")
        .remote(server.shared.calls.local_addr().expect("the SIP endpoint runs"))
        .service("3000")
        .timeout(Duration::from_secs(10))
        .spawn()
        .unwrap();
    let outcome = caller.wait().await;
    outcome.assert_success();
    let busy = outcome.received().into_iter().find(|m| m.starts_with("SIP/2.0 5")).expect("a 5xx at the caller");
    assert!(busy.starts_with("SIP/2.0 503 Service Unavailable"), "{busy}");
    assert!(busy.lines().any(|l| l.trim() == "Retry-After: 7"), "{busy}");
    assert!(backend.requests_for("OnCallEvent").is_empty(), "refused before the backend is asked");

    // The admitted call was never disturbed: still ESTABLISHED, and it ends normally.
    let (status, list) = http_post(&server, "/rest-api/call/find", &json!({"callId": "r1"}).to_string(), None).await;
    assert_eq!(status, 200, "{list}");
    assert!(list.contains("ESTABLISHED"), "{list}");
    let (status, _) = http_post(&server, "/rest-api/call/terminate", &json!({"callId": "r1"}).to_string(), None).await;
    assert_eq!(status, 200);
    uas.wait().await.assert_success();
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "r1" && b["status"] == "FINISH").await;
    assert_eq!(server.shared.calls.calls(), 0);
    let metrics = get(server.http_addr, "/metrics").await;
    assert!(metrics.contains("callgate_admission_refused_total{what=\"calls\"} 3"), "REST, client and SIP");
    drop(c);
    let _ = registrar.wait().await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_stream_past_max_streams_fails_with_the_limit_and_the_first_keeps_publishing() {
    let backend = Backend::start().await;
    let server = start_server(&format!("[limits]\nmax_streams = 1\n{}", app(&backend))).await;
    let (mut c, _) = Client::establish(&server, connection(json!({}))).await;
    let b1 = FakeBrowser::publisher().await;
    c.send("publishStream", publish_msg("s1", "one", &b1.offer)).await;
    let answer = loop {
        let (m, data) = c.next().await.expect("open");
        if m == "setRemoteSDP" {
            break data[1].as_str().unwrap().to_string();
        }
    };
    b1.accept(&answer);
    assert_eq!(stream_status(&mut c, "s1").await["status"], "PUBLISHING");
    let b2 = FakeBrowser::publisher().await;
    c.send("publishStream", publish_msg("s2", "two", &b2.offer)).await;
    let st = stream_status(&mut c, "s2").await;
    assert_eq!(st["status"], "FAILED", "{st:?}");
    assert!(st["info"].as_str().unwrap().contains("Too many streams (limit 1, limits.max_streams)"), "{st:?}");
    backend.wait_for("StreamStatusEvent", |b| b["mediaSessionId"] == "s2" && b["status"] == "FAILED").await;
    // The first is undisturbed.
    let (status, list) = http_post(&server, "/rest-api/stream/find_all", "", None).await;
    assert_eq!(status, 200, "{list}");
    let list: Vec<Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!((list[0]["name"].as_str(), list[0]["status"].as_str()), (Some("one"), Some("PUBLISHING")));
    // Use against the limit in /metrics. (The recorder is the process's: another test's server
    // may set the same gauges between this one's setting and rendering them; retry, bounded.)
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let m = get(server.http_addr, "/metrics").await;
        if m.lines().any(|l| l == "callgate_streams 1") && m.lines().any(|l| l == "callgate_limit{what=\"streams\"} 1")
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(b1);
    server.shutdown().await;
}

#[tokio::test]
async fn rest_requests_past_max_rest_in_flight_get_503_and_oversize_bodies_413() {
    let server =
        start_server("[limits]\nmax_rest_in_flight = 1\nmax_rest_body_bytes = 2048\nretry_after_s = 2\n").await;
    // A request whose body never finishes holds the only place.
    let mut slow = TcpStream::connect(server.http_addr).await.unwrap();
    slow.write_all(
        b"POST /rest-api/call/find HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{",
    )
    .await
    .unwrap();
    // Until it is seen in flight, another request may still get through: retry (bounded).
    let deadline = tokio::time::Instant::now() + WAIT;
    let (status, headers, body) = loop {
        let r = raw_post(server.http_addr, "/rest-api/connection/find_all", "").await;
        if r.0 == 503 || tokio::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 503, "{body}");
    assert_eq!(header(&headers, "retry-after"), Some("2"));
    assert!(body.contains("limits.max_rest_in_flight"), "{body}");
    // The slow request ends (its client goes away): the place is free again.
    drop(slow);
    let deadline = tokio::time::Instant::now() + WAIT;
    let status = loop {
        let (s, _, _) = raw_post(server.http_addr, "/rest-api/connection/find_all", "").await;
        if s != 503 || tokio::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 404, "no connection: 404, not 503");
    // A body over the limit: 413; one under it is read.
    let big = format!("{{\"callId\":\"{}\"}}", "x".repeat(4096));
    let (status, _, body) = raw_post(server.http_addr, "/rest-api/call/find", &big).await;
    assert_eq!(status, 413, "{body}");
    let (status, _, _) = raw_post(server.http_addr, "/rest-api/call/find", "{\"callId\":\"x\"}").await;
    assert_eq!(status, 404);
    server.shutdown().await;
}

/// An OPTIONS request of `len` bytes (padded with a body) to the server's SIP address.
fn options_of_len(len: usize, branch: &str) -> Vec<u8> {
    let msg = |pad: usize| {
        format!(
            "OPTIONS sip:probe@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;rport;branch=z9hG4bK{branch}\r\n\
             From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:probe@127.0.0.1>\r\nCall-ID: {branch}\r\n\
             CSeq: 1 OPTIONS\r\nContent-Type: text/plain\r\nContent-Length: {pad}\r\n\r\n{}",
            "x".repeat(pad)
        )
        .into_bytes()
    };
    (0..len).map(msg).find(|m| m.len() == len).expect("a padding of that length")
}

/// `[sip] max_message_bytes`: a UDP request past it gets 513 Message Too Large and is not
/// handled; one at the limit is answered as usual. (The TCP framer's use of the same limit is
/// covered by the sip crate's framer tests: the server has no TCP listener.)
#[tokio::test]
async fn sip_requests_past_max_message_bytes_get_513_message_too_large() {
    let backend = Backend::start().await;
    let toml = sip_server_toml(&backend).replacen("[sip]\n", "[sip]\nmax_message_bytes = 2048\n", 1);
    let server = start_server(&toml).await;
    server.shared.calls.endpoint().await.expect("the SIP endpoint starts");
    let sip = server.shared.calls.local_addr().expect("the SIP endpoint runs");
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let answer = |req: Vec<u8>| {
        let udp = &udp;
        async move {
            let mut buf = vec![0u8; 65_536];
            udp.send_to(&req, sip).await.unwrap();
            let (n, _) = tokio::time::timeout(WAIT, udp.recv_from(&mut buf)).await.expect("an answer").unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        }
    };
    let big = answer(options_of_len(3000, "big")).await;
    assert!(big.starts_with("SIP/2.0 513 Message Too Large\r\n"), "{big}");
    assert!(big.contains("Call-ID: big"), "{big}");
    let fits = answer(options_of_len(2048, "fits")).await;
    assert!(fits.starts_with("SIP/2.0 200 "), "{fits}");
    let _ = server.shutdown().await;
}
