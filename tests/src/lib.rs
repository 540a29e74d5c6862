//! Test helpers: a real HTTP backend that records what it receives and answers as told, a
//! WebSocket client that speaks the WCS client protocol, and the real server on `127.0.0.1:0`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{json, Map, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub mod peers;
pub mod rtsp_camera;
pub mod sip_fixtures;
pub mod streams;
pub mod tls;
pub mod webrtc;

/// Bound on every wait in the tests.
pub const WAIT: Duration = Duration::from_secs(10);

/// One request the backend received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The last path segment: the hook method name.
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
}

/// How the backend answers one request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    /// `200` with the request body (a mirroring backend).
    pub fn mirror(body: &Value) -> Reply {
        Reply { status: 200, body: serde_json::to_vec(body).unwrap(), delay: Duration::ZERO }
    }
    pub fn json(status: u16, body: Value) -> Reply {
        Reply { status, body: serde_json::to_vec(&body).unwrap(), delay: Duration::ZERO }
    }
    pub fn raw(status: u16, body: &[u8]) -> Reply {
        Reply { status, body: body.to_vec(), delay: Duration::ZERO }
    }
    pub fn after(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

type Rule = Arc<dyn Fn(&str, &Value) -> Reply + Send + Sync>;

struct BackendState {
    log: Mutex<Vec<Recorded>>,
    rule: Mutex<Rule>,
}

/// A real HTTP backend on 127.0.0.1 that records every hook and answers by a rule.
#[derive(Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    state: Arc<BackendState>,
}

impl Backend {
    /// Starts a backend that mirrors every request until told otherwise.
    pub async fn start() -> Backend {
        let state =
            Arc::new(BackendState { log: Mutex::new(Vec::new()), rule: Mutex::new(Arc::new(|_, b| Reply::mirror(b))) });
        let app = axum::Router::new().route("/{*path}", axum::routing::post(handle)).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Backend { addr, state }
    }

    /// The REST URL of an app served by this backend.
    pub fn url(&self, prefix: &str) -> String {
        format!("http://{}/{prefix}", self.addr)
    }

    /// Sets how the backend answers: `rule(method, body)`.
    pub fn answer(&self, rule: impl Fn(&str, &Value) -> Reply + Send + Sync + 'static) {
        *self.state.rule.lock() = Arc::new(rule);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().clone()
    }

    pub fn requests_for(&self, method: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.method == method).collect()
    }

    /// Waits until a request for `method` matching `pred` has arrived.
    pub async fn wait_for(&self, method: &str, pred: impl Fn(&Value) -> bool) -> Recorded {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(r) = self.requests().into_iter().find(|r| r.method == method && pred(&r.body)) {
                return r;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "backend never received {method} matching the predicate; got: {:#?}",
                    self.requests().iter().map(|r| (&r.method, &r.body)).collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn handle(
    State(state): State<Arc<BackendState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let method = path.rsplit('/').next().unwrap_or("").to_string();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.log.lock().push(Recorded { method: method.clone(), path, headers, body: json.clone() });
    let rule = state.rule.lock().clone();
    let reply = rule(&method, &json);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap();
    (status, [("content-type", "application/json")], reply.body).into_response()
}

/// Starts the real server on 127.0.0.1 ephemeral ports (WebSocket, HTTP, the media UDP port
/// and the embedded registrar's, so parallel servers never contend for 5060) with `extra` TOML
/// over the defaults. `defaultApp` is pointed at the server's own EchoApp
/// unless `extra` redefines it.
pub async fn start_server(extra: &str) -> callgate_server::RunningServer {
    let base = "[server]\nws_bind = \"127.0.0.1:0\"\nhttp_bind = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\n\
                [registrar]\nbind = \"127.0.0.1:0\"\n";
    let text = merge_sections(base, extra);
    let cfg = callgate_server::config::Config::from_toml(&text).expect("test config is valid");
    callgate_server::start(cfg).await.expect("server starts")
}

/// Merges the keys of the `[server]`, `[media]` and `[registrar]` sections of `extra` into those
/// of `base` (TOML forbids a section twice); `extra`'s keys win. Other sections of `extra` are
/// appended.
fn merge_sections(base: &str, extra: &str) -> String {
    const MERGED: [&str; 3] = ["[server]", "[media]", "[registrar]"];
    let mut sections: Vec<(String, Vec<String>)> = Vec::new();
    let mut current: Option<usize> = None;
    for line in base.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            sections.push((t.to_string(), Vec::new()));
            current = Some(sections.len() - 1);
        } else if let Some(i) = current {
            sections[i].1.push(line.to_string());
        }
    }
    let key = |l: &str| l.split('=').next().unwrap_or("").trim().to_string();
    let mut rest = String::new();
    let mut target: Option<usize> = None;
    for line in extra.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            target = MERGED.contains(&t).then(|| sections.iter().position(|(h, _)| h == t)).flatten();
            if target.is_some() {
                continue;
            }
        }
        match target {
            Some(i) => {
                let k = key(line);
                if !k.is_empty() {
                    sections[i].1.retain(|l| key(l) != k);
                }
                sections[i].1.push(line.to_string());
            }
            None => {
                rest.push_str(line);
                rest.push('\n');
            }
        }
    }
    let mut out = String::new();
    for (header, lines) in sections {
        out.push_str(&header);
        out.push('\n');
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
    }
    out + &rest
}

/// A WebSocket client speaking the WCS client protocol.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Every frame received, in order, as (message, data).
    pub seen: Vec<(String, Vec<Value>)>,
}

impl Client {
    pub async fn connect(server: &callgate_server::RunningServer) -> Client {
        Client::connect_to(server.ws_addr).await
    }

    /// Connects to the WebSocket port `ws_addr` (a server in another process).
    pub async fn connect_to(ws_addr: SocketAddr) -> Client {
        let url = format!("ws://{ws_addr}/");
        let (ws, _) = tokio_tungstenite::connect_async(url).await.expect("websocket connects");
        Client { ws, seen: Vec::new() }
    }

    pub async fn send(&mut self, message: &str, obj: Value) {
        let text = json!({"message": message, "data": [obj]}).to_string();
        self.ws.send(Message::Text(text.into())).await.expect("send");
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::Text(text.to_string().into())).await.expect("send");
    }

    /// The next frame that is not a ping; `None` when the server closed the connection.
    pub async fn next(&mut self) -> Option<(String, Vec<Value>)> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next()).await.expect("a frame within the wait bound");
            match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return None,
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("server frames are JSON");
                    let message = v["message"].as_str().expect("message is a string").to_string();
                    let data = v["data"].as_array().expect("every server frame carries a data array").clone();
                    self.seen.push((message.clone(), data.clone()));
                    if message == "ping" {
                        continue;
                    }
                    return Some((message, data));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next frame named `message` (others are skipped), as its `data[0]` object.
    pub async fn expect(&mut self, message: &str) -> Map<String, Value> {
        loop {
            match self.next().await {
                Some((m, data)) if m == message => {
                    return data.first().and_then(Value::as_object).cloned().unwrap_or_default()
                }
                Some(_) => continue,
                None => panic!("connection closed before {message}; seen {:?}", self.seen),
            }
        }
    }

    /// Asserts the server closes the connection (after any frames).
    pub async fn expect_closed(&mut self) {
        while self.next().await.is_some() {}
    }

    /// Sends `connection` and waits for `getUserData`.
    pub async fn establish(server: &callgate_server::RunningServer, connection: Value) -> (Client, Map<String, Value>) {
        Client::establish_at(server.ws_addr, connection).await
    }

    /// [`Client::establish`] with the server at `ws_addr`.
    pub async fn establish_at(ws_addr: SocketAddr, connection: Value) -> (Client, Map<String, Value>) {
        let mut c = Client::connect_to(ws_addr).await;
        c.send("connection", connection).await;
        let data = c.expect("getUserData").await;
        (c, data)
    }
}

/// POSTs JSON to the server's HTTP port; returns (status, body text).
pub async fn http_post(
    server: &callgate_server::RunningServer,
    path: &str,
    body: &str,
    auth: Option<&str>,
) -> (u16, String) {
    http_post_to(server.http_addr, path, body, auth).await
}

/// [`http_post`] to the HTTP port `http_addr` (a server in another process).
pub async fn http_post_to(http_addr: SocketAddr, path: &str, body: &str, auth: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(http_addr).await.unwrap();
    let auth_line = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{auth_line}Connection: close\r\n\r\n{body}",
        http_addr,
        body.len()
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut buf)).await.expect("HTTP answer in time").unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// `GET path` on the HTTP port `http_addr` (`Connection: close`): the status and the body's
/// bytes (a `Content-Length` body, as the server's files are sent).
pub async fn http_get_to(http_addr: SocketAddr, path: &str) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(http_addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {http_addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut buf)).await.expect("HTTP answer in time").unwrap();
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block") + 4;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).expect("status line");
    (status, buf[end..].to_vec())
}

/// A port on 127.0.0.1 where nothing listens (bound then released).
pub async fn closed_port() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}
