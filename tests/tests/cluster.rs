//! The cluster directory (`[cluster]`, docs/cluster.md) against a real `nats-server` with
//! JetStream (the Debian package; `make deps` installs it), started by each test on a free
//! 127.0.0.1 port with its own storage directory, and two real callgate nodes in this process.
//!
//! A node that "dies" runs on a tokio runtime of its own, dropped at once: its heartbeat, its
//! NATS connection and its sockets end without any goodbye, as in a `kill -9`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use callgate_tests::sip_fixtures::{connection, sip_server_toml, sipp_uas};
use callgate_tests::webrtc::FakeBrowser;
use callgate_tests::{closed_port, http_get_to, http_post_to, start_server, Backend, Client};
use serde_json::{json, Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upper bound of every wait for the directory to show a change (heartbeats are 100 ms here).
const WAIT: Duration = Duration::from_secs(30);

/// A `nats-server -js` child on 127.0.0.1; killed and its storage removed on drop.
struct Nats {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Nats {
    async fn start() -> Nats {
        Nats::start_on(closed_port().await).await
    }

    /// On `port` (a restart on the port of a stopped one).
    async fn start_on(port: u16) -> Nats {
        let dir = std::env::temp_dir().join(format!("callgate-nats-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run nats-server ({e}): run `make deps` (it installs the Debian package nats-server)")
            });
        let mut nats = Nats { child, port, dir };
        let until = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(status) = nats.child.try_wait().unwrap() {
                panic!("nats-server exited at start ({status}); is port {port} taken?");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return nats;
            }
            assert!(tokio::time::Instant::now() < until, "nats-server did not listen on 127.0.0.1:{port}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node on a tokio runtime of its own (see the module documentation): `rt.shutdown_background()`
/// is its `kill -9`; then `std::mem::forget` the server (nothing of it may run again).
fn killable_node(toml: &str) -> (tokio::runtime::Runtime, callgate_server::RunningServer) {
    let toml = toml.to_string();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let node = rt.block_on(start_server(&toml));
        (rt, node)
    })
    .join()
    .unwrap()
}

fn cluster_toml(nats: &Nats, lease_ms: u64) -> String {
    format!("[cluster]\nnats_url = \"{}\"\nheartbeat_ms = 100\nlease_ms = {lease_ms}\n", nats.url())
}

/// `POST path` on a node's HTTP port: (status, body as JSON, or as a string when it is text).
async fn rest(http: SocketAddr, path: &str, body: &str) -> (u16, Value) {
    let (status, text) = http_post_to(http, path, body, None).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The objects of a `find` answer (none on 404).
async fn found(http: SocketAddr, path: &str, body: &str) -> Vec<Value> {
    match rest(http, path, body).await {
        (200, Value::Array(list)) => list,
        (404, _) => Vec::new(),
        (status, body) => panic!("{path} answered {status}: {body}"),
    }
}

/// Node ids listed by `/rest-api/cluster/nodes`.
async fn node_ids(http: SocketAddr) -> Vec<String> {
    let (status, body) = rest(http, "/rest-api/cluster/nodes", "").await;
    assert_eq!(status, 200, "{body}");
    let mut ids: Vec<String> =
        body.as_array().unwrap().iter().map(|n| n["nodeId"].as_str().unwrap().to_string()).collect();
    ids.sort();
    ids
}

/// Polls `check` until it holds; panics with `what` after [`WAIT`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(tokio::time::Instant::now() < until, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metrics(http: SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(http).await.unwrap();
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn a_session_on_one_node_is_found_from_the_other_and_leaves_with_its_node() {
    let nats = Nats::start().await;
    let a = start_server(&cluster_toml(&nats, 5000)).await;
    let b = start_server(&cluster_toml(&nats, 5000)).await;
    let (a_id, b_id) = (a.shared.node_id.to_string(), b.shared.node_id.to_string());
    let both = sorted(vec![a_id.clone(), b_id.clone()]);

    // Either node lists both, each with its REST address and load.
    for node in [&a, &b] {
        eventually("both nodes are listed", || async { node_ids(node.http_addr).await == both }).await;
    }
    let (_, nodes) = rest(b.http_addr, "/rest-api/cluster/nodes", "").await;
    let a_entry = nodes.as_array().unwrap().iter().find(|n| n["nodeId"] == a_id.as_str()).unwrap().clone();
    assert_eq!(a_entry["restUrl"], format!("http://{}", a.http_addr), "{a_entry}");
    assert_eq!(a_entry["wsUrl"], format!("ws://{}", a.ws_addr), "{a_entry}");
    assert!(a_entry["startedAt"].as_u64().unwrap() > 0 && a_entry["leaseMs"] == 5000, "{a_entry}");
    // The recorder is the process's: another test's scrape may set the gauge in between, so
    // until B's own scrape shows it.
    eventually("callgate_cluster_nodes is 2", || async {
        metrics(b.http_addr).await.lines().any(|l| l == "callgate_cluster_nodes 2")
    })
    .await;

    // A session on A: B's find_all and find show it, with A's nodeId; B's own view stays local.
    let (client, user) = Client::establish(&a, json!({"clientVersion": "2.0", "custom": {"room": "r1"}})).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    eventually("A's session is listed by B", || async {
        found(b.http_addr, "/rest-api/connection/find_all", "").await.iter().any(|s| s["sessionId"] == sid.as_str())
    })
    .await;
    let on_b = found(b.http_addr, "/rest-api/connection/find", &json!({"sessionId": sid}).to_string()).await;
    assert_eq!(on_b.len(), 1, "{on_b:?}");
    assert_eq!(on_b[0]["nodeId"], a_id.as_str(), "{on_b:?}");
    assert_eq!(on_b[0]["custom"], json!({"room": "r1"}), "the find fields travel: {on_b:?}");
    let by_custom =
        found(b.http_addr, "/rest-api/connection/find", &json!({"custom": {"room": "r1"}}).to_string()).await;
    assert_eq!(by_custom.len(), 1, "{by_custom:?}");
    let none = found(b.http_addr, "/rest-api/connection/find", &json!({"custom": {"room": "r2"}}).to_string()).await;
    assert!(none.is_empty(), "a filter that does not match finds nothing: {none:?}");
    // On A itself it is a local object, listed once.
    let on_a = found(a.http_addr, "/rest-api/connection/find_all", "").await;
    assert_eq!(on_a.iter().filter(|s| s["sessionId"] == sid.as_str()).count(), 1, "{on_a:?}");
    // A has no streams or calls: B's find_all of those finds none anywhere.
    assert!(found(b.http_addr, "/rest-api/stream/find_all", "").await.is_empty());
    assert!(found(b.http_addr, "/rest-api/call/find_all", "").await.is_empty());

    // The session ends: its entry is removed by A's next heartbeat.
    drop(client);
    eventually("A's ended session is no longer listed by B", || async {
        !found(b.http_addr, "/rest-api/connection/find_all", "").await.iter().any(|s| s["sessionId"] == sid.as_str())
    })
    .await;

    // A second session, then A shuts down: A's node and session entries are deleted.
    let (_client, user) = Client::establish(&a, json!({"clientVersion": "2.0"})).await;
    let sid2 = user["sessionId"].as_str().unwrap().to_string();
    eventually("A's second session is listed by B", || async {
        found(b.http_addr, "/rest-api/connection/find_all", "").await.iter().any(|s| s["sessionId"] == sid2.as_str())
    })
    .await;
    assert!(a.shutdown().await.complete());
    eventually("B lists itself only", || async { node_ids(b.http_addr).await == [b_id.clone()] }).await;
    assert!(found(b.http_addr, "/rest-api/connection/find_all", "").await.is_empty(), "A's sessions are gone");
    eventually("callgate_cluster_nodes is 1", || async {
        metrics(b.http_addr).await.lines().any(|l| l == "callgate_cluster_nodes 1")
    })
    .await;
    assert!(b.shutdown().await.complete());
}

#[tokio::test]
async fn a_killed_nodes_entries_expire_with_the_lease() {
    let nats = Nats::start().await;
    let toml = cluster_toml(&nats, 1000);
    // Node A on a runtime of its own (see the module documentation).
    let (rt, a) = killable_node(&toml);
    let b = start_server(&toml).await;
    let (a_id, b_id) = (a.shared.node_id.to_string(), b.shared.node_id.to_string());
    let (_client, user) = Client::establish(&a, json!({"clientVersion": "2.0"})).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    eventually("A and its session are listed by B", || async {
        node_ids(b.http_addr).await.contains(&a_id)
            && found(b.http_addr, "/rest-api/connection/find_all", "")
                .await
                .iter()
                .any(|s| s["nodeId"] == a_id.as_str())
    })
    .await;

    // "kill -9": every task of A stops where it is, nothing is deleted.
    rt.shutdown_background();
    eventually("A's entries expired", || async {
        node_ids(b.http_addr).await == [b_id.clone()]
            && !found(b.http_addr, "/rest-api/connection/find_all", "")
                .await
                .iter()
                .any(|s| s["sessionId"] == sid.as_str())
    })
    .await;
    std::mem::forget(a); // its runtime is gone; nothing of it may run again
    assert!(b.shutdown().await.complete());
}

#[tokio::test]
async fn without_nats_find_answers_503_and_the_directory_comes_back_with_nats() {
    let nats = Nats::start().await;
    let port = nats.port;
    let toml = format!("{}request_timeout_ms = 500\n", cluster_toml(&nats, 2000));
    let a = start_server(&toml).await;
    let b = start_server(&toml).await;
    let a_id = a.shared.node_id.to_string();
    let (mut client, user) = Client::establish(&a, json!({"clientVersion": "2.0"})).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    let listed = || async {
        found(b.http_addr, "/rest-api/connection/find_all", "").await.iter().any(|s| s["sessionId"] == sid.as_str())
    };
    eventually("A's session is listed by B", listed).await;

    // NATS stops: B cannot tell what the other nodes hold, and says so.
    drop(nats);
    eventually("B answers 503", || async {
        let (status, body) = rest(b.http_addr, "/rest-api/connection/find_all", "").await;
        status == 503 && body.as_str().is_some_and(|t| t.contains("cluster directory"))
    })
    .await;
    // B's own objects are not the directory's: a find with no remote part still needs it.
    let (status, _) = rest(b.http_addr, "/rest-api/cluster/nodes", "").await;
    assert!(status == 503 || status == 200, "{status}");

    // A new NATS server on the same port, without the old one's buckets (memory storage): the
    // nodes reconnect, make the buckets again and announce what they hold.
    let _nats = Nats::start_on(port).await;
    eventually("A's session is listed by B again", || async {
        let (status, body) = rest(b.http_addr, "/rest-api/connection/find_all", "").await;
        status == 200
            && body.as_array().unwrap().iter().any(|s| s["sessionId"] == sid.as_str() && s["nodeId"] == a_id.as_str())
    })
    .await;
    eventually("both nodes are listed again", || async { node_ids(b.http_addr).await.len() == 2 }).await;
    // Routing recovers too: A answers on its subject again (the client subscribes anew).
    let send = json!({"sessionId": sid, "payload": {"after": "restart"}}).to_string();
    let (status, body) = rest(b.http_addr, "/rest-api/data/send", &send).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(client.expect("OnDataEvent").await["payload"]["after"], "restart");
    assert!(a.shutdown().await.complete());
    assert!(b.shutdown().await.complete());
}

#[tokio::test]
async fn a_node_does_not_start_without_nats_or_with_another_lease() {
    let port = closed_port().await;
    let cfg = callgate_server::config::Config::from_toml(&format!(
        "[server]\nws_bind = \"127.0.0.1:0\"\nhttp_bind = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\n\
         [cluster]\nnats_url = \"nats://127.0.0.1:{port}\"\nrequest_timeout_ms = 2000\n"
    ))
    .unwrap();
    let e = format!("{:#}", callgate_server::start(cfg).await.err().expect("no NATS: the start fails"));
    assert!(e.contains("cannot connect to NATS") && e.contains(&port.to_string()), "{e}");

    let nats = Nats::start().await;
    let first = start_server(&cluster_toml(&nats, 5000)).await;
    let cfg = callgate_server::config::Config::from_toml(&format!(
        "[server]\nws_bind = \"127.0.0.1:0\"\nhttp_bind = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\n{}",
        cluster_toml(&nats, 3000)
    ))
    .unwrap();
    let e = format!("{:#}", callgate_server::start(cfg).await.err().expect("another lease: the start fails"));
    assert!(e.contains("lease_ms") && e.contains("5000"), "{e}");
    assert!(first.shutdown().await.complete());
}

#[tokio::test]
async fn a_single_node_has_no_cluster_route_and_finds_as_before() {
    let server = start_server("").await;
    let (status, body) = rest(server.http_addr, "/rest-api/cluster/nodes", "").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.as_str().unwrap().contains("nats_url"), "{body}");
    let (_client, user) = Client::establish(&server, json!({"clientVersion": "2.0"})).await;
    let all = found(server.http_addr, "/rest-api/connection/find_all", "").await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["sessionId"], user["sessionId"]);
    assert!(server.shared.cluster.is_none());
}

#[test]
fn cluster_keys_are_checked_before_start() {
    use callgate_server::config::Config;
    assert!(Config::from_toml("").unwrap().cluster.nats_url.is_empty(), "single node by default");
    let e = Config::from_toml("[cluster]\nnats_url = \"nats://127.0.0.1:4222\"\nheartbeat_ms = 1000\nlease_ms = 1500")
        .unwrap_err();
    assert!(format!("{e:#}").contains("2 x cluster.heartbeat_ms"), "{e:#}");
    let e = Config::from_toml("[cluster]\nnats_url = \"http://[bad\"").unwrap_err();
    assert!(format!("{e:#}").contains("cluster.nats_url"), "{e:#}");
}

/// The next status event of stream `id` past PENDING, as the client sees it.
async fn stream_status(c: &mut Client, id: &str) -> Map<String, Value> {
    loop {
        let st = c.expect("notifyStreamStatusEvent").await;
        if st["mediaSessionId"] == id && st["status"] != "PENDING" {
            return st;
        }
    }
}

#[tokio::test]
async fn rest_requests_for_another_nodes_objects_are_answered_by_their_owner() {
    let nats = Nats::start().await;
    let backend = Backend::start().await;
    let toml = format!("{}{}", cluster_toml(&nats, 5000), sip_server_toml(&backend));
    let a = start_server(&toml).await;
    let b = start_server(&toml).await;

    // A session and a published stream on A.
    let (mut client, user) = Client::establish(&a, connection(json!({}))).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    let publisher = FakeBrowser::publisher().await;
    client
        .send(
            "publishStream",
            json!({"mediaSessionId": "m1", "name": "cam1", "published": true, "hasVideo": true, "hasAudio": true,
                   "status": "PENDING", "record": false, "mediaProvider": "WebRTC", "sdp": publisher.offer,
                   "bitrate": 0, "minBitrate": 0, "maxBitrate": 0, "custom": {}}),
        )
        .await;
    let answer = loop {
        let (m, data) = client.next().await.expect("open");
        if m == "setRemoteSDP" {
            break data[1].as_str().unwrap().to_string();
        }
    };
    publisher.accept(&answer);
    assert_eq!(stream_status(&mut client, "m1").await["status"], "PUBLISHING");
    // A call placed by A (REST) to a sipp UAS.
    let sipp = sipp_uas("uas_answer_local_bye.xml");
    let startup = json!({"callId": "c1", "callee": "3001", "hasAudio": "true", "sipLogin": "3000",
        "sipPassword": "secret", "sipDomain": "127.0.0.1", "sipOutboundProxy": "127.0.0.1",
        "sipPort": sipp.local_addr().port().to_string(), "appKey": "backendApp", "sipRegisterRequired": "false"});
    assert_eq!(rest(a.http_addr, "/rest-api/call/startup", &startup.to_string()).await.0, 200);
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "c1" && b["status"] == "ESTABLISHED").await;
    eventually("A's session, stream and call are in the directory", || async {
        found(b.http_addr, "/rest-api/connection/find", &json!({"sessionId": sid}).to_string()).await.len() == 1
            && found(b.http_addr, "/rest-api/stream/find", r#"{"name":"cam1"}"#).await.len() == 1
            && found(b.http_addr, "/rest-api/call/find", r#"{"callId":"c1"}"#).await.len() == 1
    })
    .await;

    // `/data/send` to B reaches A's client.
    let send = json!({"sessionId": sid, "operationId": "op1", "payload": {"message": "via B"}});
    let (status, body) = rest(b.http_addr, "/rest-api/data/send", &send.to_string()).await;
    assert_eq!(status, 200, "{body}");
    let ev = client.expect("OnDataEvent").await;
    assert_eq!((ev["payload"]["message"].as_str(), ev["operationId"].as_str()), (Some("via B"), Some("op1")));
    // The owner's refusal comes back as it is: a bad body gets A's 400, an unknown id B's 404.
    let (status, body) = rest(b.http_addr, "/rest-api/data/send", &json!({"sessionId": sid}).to_string()).await;
    assert_eq!((status, body.as_str()), (400, Some("missing field payload")));
    let (status, _) = rest(b.http_addr, "/rest-api/call/hold", r#"{"callId":"nobody"}"#).await;
    assert_eq!(status, 404);

    // `/stream/snapshot` on B is taken on A: this publisher's frames are not real VP8, so A's
    // 409 with the reason comes back (not B's 404).
    let (status, body) = rest(b.http_addr, "/rest-api/stream/snapshot", r#"{"streamName":"cam1"}"#).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.as_str().unwrap().starts_with("Snapshot failed"), "{body}");
    let (status, _) = rest(b.http_addr, "/rest-api/stream/snapshot", r#"{"streamName":"none"}"#).await;
    assert_eq!(status, 404);
    // `/stream/terminate` on B ends A's stream; its client hears it as from A's own REST API.
    let (status, body) = rest(b.http_addr, "/rest-api/stream/terminate", r#"{"name":"cam1"}"#).await;
    assert_eq!(status, 200, "{body}");
    let st = stream_status(&mut client, "m1").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("UNPUBLISHED"), Some("Stopped by rest /terminate")));
    let (status, _) = rest(b.http_addr, "/rest-api/stream/terminate", r#"{"name":"cam1"}"#).await;
    assert_eq!(status, 404, "no node holds it any more");

    // `/call/terminate` on B: A sends the BYE.
    assert_eq!(rest(b.http_addr, "/rest-api/call/terminate", r#"{"callId":"c1"}"#).await.0, 200);
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "c1" && b["status"] == "FINISH").await;
    let outcome = sipp.wait().await;
    outcome.assert_success();
    assert!(outcome.received().iter().any(|m| m.starts_with("BYE ")), "BYE at sipp");

    // `/connection/terminate` on B closes A's client.
    let (status, _) = rest(b.http_addr, "/rest-api/connection/terminate", &json!({"sessionId": sid}).to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(client.expect("fail").await["info"], "Terminated by rest /terminate");
    client.expect_closed().await;
    // Gone from A: whether the directory still names A or no longer does, B answers 404.
    let (status, _) = rest(b.http_addr, "/rest-api/data/send", &send.to_string()).await;
    assert_eq!(status, 404);
    assert!(a.shutdown().await.complete());
    assert!(b.shutdown().await.complete());
}

#[tokio::test]
async fn a_request_for_a_killed_nodes_session_gets_503_until_its_lease_expires() {
    let nats = Nats::start().await;
    let toml = cluster_toml(&nats, 1500);
    let (rt, a) = killable_node(&toml);
    let b = start_server(&toml).await;
    let a_id = a.shared.node_id.to_string();
    let (_client, user) = Client::establish(&a, json!({"clientVersion": "2.0"})).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    let term = json!({"sessionId": sid}).to_string();
    eventually("A's session is listed by B", || async {
        found(b.http_addr, "/rest-api/connection/find", &term).await.len() == 1
    })
    .await;

    rt.shutdown_background();
    // While the directory still names A: 503, naming A.
    let (status, body) = rest(b.http_addr, "/rest-api/connection/terminate", &term).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.as_str().unwrap().contains(&a_id), "{body}");
    // Once A's entries expired: 404.
    eventually("the request for A's session answers 404", || async {
        rest(b.http_addr, "/rest-api/connection/terminate", &term).await.0 == 404
    })
    .await;
    std::mem::forget(a);
    assert!(b.shutdown().await.complete());
}

#[tokio::test]
async fn a_killed_nodes_session_and_stream_end_once_at_the_backend_with_node_lost() {
    let nats = Nats::start().await;
    let backend = Backend::start().await;
    let toml = format!("{}{}", cluster_toml(&nats, 1500), sip_server_toml(&backend));
    let (rt, a) = killable_node(&toml);
    // Two survivors: exactly one of them reports A's objects.
    let b = start_server(&toml).await;
    let c = start_server(&toml).await;
    let a_id = a.shared.node_id.to_string();
    let (mut client, user) = Client::establish(&a, connection(json!({}))).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    let publisher = FakeBrowser::publisher().await;
    client
        .send(
            "publishStream",
            json!({"mediaSessionId": "m1", "name": "cam1", "published": true, "hasVideo": true, "hasAudio": true,
                   "status": "PENDING", "record": false, "mediaProvider": "WebRTC", "sdp": publisher.offer,
                   "bitrate": 0, "minBitrate": 0, "maxBitrate": 0, "custom": {}}),
        )
        .await;
    let answer = loop {
        let (m, data) = client.next().await.expect("open");
        if m == "setRemoteSDP" {
            break data[1].as_str().unwrap().to_string();
        }
    };
    publisher.accept(&answer);
    assert_eq!(stream_status(&mut client, "m1").await["status"], "PUBLISHING");
    // A session on B that ends with B's graceful shutdown: never "Node lost".
    let (_b_client, b_user) = Client::establish(&b, connection(json!({}))).await;
    let b_sid = b_user["sessionId"].as_str().unwrap().to_string();
    for node in [&b, &c] {
        eventually("A's session and stream are in the directory", || async {
            found(node.http_addr, "/rest-api/connection/find", &json!({"sessionId": sid}).to_string()).await.len() == 1
                && found(node.http_addr, "/rest-api/stream/find", r#"{"name":"cam1"}"#).await.len() == 1
        })
        .await;
    }
    // The watchers deliver what the directory holds; a few heartbeats for them to have it.
    tokio::time::sleep(Duration::from_millis(500)).await;

    rt.shutdown_background();
    let node_lost = |method: &'static str, key: &'static str, id: String| {
        let backend = &backend;
        move || -> Vec<Value> {
            backend
                .requests_for(method)
                .into_iter()
                .map(|r| r.body)
                .filter(|b| b[key] == id.as_str() && b["info"] == "Node lost")
                .collect()
        }
    };
    let session_lost = node_lost("ConnectionStatusEvent", "sessionId", sid.clone());
    let stream_lost = node_lost("StreamStatusEvent", "mediaSessionId", "m1".to_string());
    eventually("the backend hears of A's session and stream", || async {
        !session_lost().is_empty() && !stream_lost().is_empty()
    })
    .await;
    // Other survivors had time to report them again (several leases): they did not.
    tokio::time::sleep(Duration::from_millis(4000)).await;
    let (sessions, streams) = (session_lost(), stream_lost());
    assert_eq!((sessions.len(), streams.len()), (1, 1), "exactly once: {sessions:?} {streams:?}");
    for ev in [&sessions[0], &streams[0]] {
        assert_eq!((ev["status"].as_str(), ev["nodeId"].as_str()), (Some("FAILED"), Some(a_id.as_str())), "{ev}");
        assert_eq!(ev["appKey"], "backendApp", "{ev}");
    }
    assert_eq!(streams[0]["name"], "cam1");
    // The stream's end before its session's.
    let order: Vec<String> =
        backend.requests().into_iter().filter(|r| r.body["info"] == "Node lost").map(|r| r.method.clone()).collect();
    assert_eq!(order, ["StreamStatusEvent", "ConnectionStatusEvent"], "{order:?}");

    assert!(b.shutdown().await.complete());
    tokio::time::sleep(Duration::from_millis(3000)).await;
    assert!(
        !backend.requests().iter().any(|r| r.body["sessionId"] == b_sid.as_str() && r.body["info"] == "Node lost"),
        "a node that left is not lost"
    );
    std::mem::forget(a);
    assert!(c.shutdown().await.complete());
}

/// The SDK's `publishStream` / `playStream` payloads (spec/client-protocol.md §3.2).
fn stream_msg(id: &str, name: &str, sdp: &str, published: bool) -> Value {
    json!({"mediaSessionId": id, "name": name, "published": published, "hasVideo": true, "hasAudio": true,
           "status": "PENDING", "record": false, "mediaProvider": "WebRTC", "sdp": sdp,
           "bitrate": 0, "minBitrate": 0, "maxBitrate": 0, "custom": {}})
}

/// A fresh session on `node` that publishes (`published`) or plays `name` as `id` from a fake
/// browser, once its status is PUBLISHING or PLAYING.
async fn stream_on(
    node: &callgate_server::RunningServer,
    id: &str,
    name: &str,
    published: bool,
) -> (Client, FakeBrowser) {
    let browser = if published { FakeBrowser::publisher().await } else { FakeBrowser::player().await };
    stream_with(node, id, name, browser, published).await
}

/// [`stream_on`] with a browser of the caller's.
async fn stream_with(
    node: &callgate_server::RunningServer,
    id: &str,
    name: &str,
    browser: FakeBrowser,
    published: bool,
) -> (Client, FakeBrowser) {
    let (mut client, _) = Client::establish(node, connection(json!({}))).await;
    client
        .send(if published { "publishStream" } else { "playStream" }, stream_msg(id, name, &browser.offer, published))
        .await;
    let answer = loop {
        let (m, data) = client.next().await.expect("open");
        if m == "setRemoteSDP" {
            break data[1].as_str().unwrap().to_string();
        }
        assert_ne!(m, "notifyStreamStatusEvent", "{id}: a status before the answer: {data:?}");
    };
    browser.accept(&answer);
    let st = stream_status(&mut client, id).await;
    assert_eq!(st["status"], if published { "PUBLISHING" } else { "PLAYING" }, "{id}: {st:?}");
    (client, browser)
}

/// Waits until the directory of `node` shows `name` published elsewhere.
async fn listed(node: &callgate_server::RunningServer, name: &str) {
    let filter = json!({"name": name, "published": true}).to_string();
    eventually("the stream is in the directory", || async {
        found(node.http_addr, "/rest-api/stream/find", &filter).await.len() == 1
    })
    .await;
}

#[tokio::test]
async fn a_stream_published_on_one_node_plays_on_the_others_until_it_ends_or_its_node_dies() {
    let nats = Nats::start().await;
    let backend = Backend::start().await;
    let lease = Duration::from_millis(2000);
    let toml = format!("{}{}", cluster_toml(&nats, lease.as_millis() as u64), sip_server_toml(&backend));
    let (rt, a) = killable_node(&toml);
    let b = start_server(&toml).await;
    let c = start_server(&toml).await;

    // Published on A; played on B (twice) and C: each player gets audio and video from A.
    let (mut pub_client, publisher) = stream_on(&a, "m1", "cam1", true).await;
    listed(&b, "cam1").await;
    listed(&c, "cam1").await;
    let (mut b1_client, b1) = stream_on(&b, "b1", "cam1", false).await;
    let (mut b2_client, b2) = stream_on(&b, "b2", "cam1", false).await;
    let (mut c1_client, c1) = stream_on(&c, "c1", "cam1", false).await;
    for p in [&b1, &b2, &c1] {
        p.wait("audio and video from A", |s| s.audio_frames >= 10 && s.video_frames >= 10).await;
    }
    // One pull per node, whatever its number of players; A feeds one relay player per node.
    assert_eq!((b.shared.streams.relay_counts(), c.shared.streams.relay_counts()), ((1, 0), (1, 0)));
    assert_eq!(a.shared.streams.relay_counts(), (0, 2));
    assert_eq!(a.shared.streams.media_players_of("cam1").await, Some(2));
    // A late player's keyframe request reaches the publisher on A (the relay's PLI), once the
    // requests of the first players are older than the media core's keyframe request interval
    // (`MediaConfig::keyframe_request_interval`, 300 ms: closer requests to one publisher are
    // throttled, on B and on A).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = publisher.stats().keyframe_requests;
    let (_b3_client, b3) = stream_on(&b, "b3", "cam1", false).await;
    b3.wait("video", |s| s.video_frames >= 3).await;
    publisher.wait("the late player's keyframe request", |s| s.keyframe_requests > before).await;
    drop((_b3_client, b3));

    // C's last player leaves: C stops pulling, A's relay player for C is gone.
    c1_client.send("stopStream", json!({"mediaSessionId": "c1", "name": "cam1"})).await;
    assert_eq!(stream_status(&mut c1_client, "c1").await["status"], "STOPPED");
    eventually("C's pull is stopped at both ends", || async {
        c.shared.streams.relay_counts() == (0, 0)
            && a.shared.streams.relay_counts() == (0, 1)
            && a.shared.streams.media_players_of("cam1").await == Some(1)
    })
    .await;
    // B keeps its pull while one of its players is left.
    b2_client.send("stopStream", json!({"mediaSessionId": "b2", "name": "cam1"})).await;
    assert_eq!(stream_status(&mut b2_client, "b2").await["status"], "STOPPED");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((b.shared.streams.relay_counts(), a.shared.streams.relay_counts()), ((1, 0), (0, 1)));
    let frames = b1.stats().video_frames;
    b1.wait("more video", |s| s.video_frames > frames + 5).await;

    // Unpublished on A: B's player is STOPPED as a local publisher's would be.
    pub_client.send("unPublishStream", json!({"mediaSessionId": "m1", "name": "cam1"})).await;
    assert_eq!(stream_status(&mut pub_client, "m1").await["status"], "UNPUBLISHED");
    let st = stream_status(&mut b1_client, "b1").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("STOPPED"), Some("Stopped by publisher stop")));
    backend.wait_for("StreamStatusEvent", |e| e["mediaSessionId"] == "b1" && e["status"] == "STOPPED").await;
    eventually("no pull left", || async {
        b.shared.streams.relay_counts() == (0, 0) && a.shared.streams.relay_counts() == (0, 0)
    })
    .await;
    drop((b1, b2, c1, publisher));

    // A stream of A played on B, then A is killed: B's player ends within 2 x lease.
    let (_pub2_client, _publisher2) = stream_on(&a, "m2", "cam2", true).await;
    listed(&b, "cam2").await;
    let (mut b4_client, b4) = stream_on(&b, "b4", "cam2", false).await;
    b4.wait("video from A", |s| s.video_frames >= 10).await;
    // The watchers deliver what the directory holds; a few heartbeats for them to have it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = tokio::time::Instant::now();
    rt.shutdown_background();
    let st = tokio::time::timeout(2 * lease, stream_status(&mut b4_client, "b4"))
        .await
        .unwrap_or_else(|_| panic!("B's player not ended within 2 x lease ({:?})", 2 * lease));
    println!("B's player ended {:?} after A was killed: {st:?}", killed.elapsed());
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("FAILED"), Some("Node lost")), "{st:?}");
    assert_eq!(b.shared.streams.relay_counts(), (0, 0));
    backend.wait_for("StreamStatusEvent", |e| e["mediaSessionId"] == "b4" && e["info"] == "Node lost").await;

    std::mem::forget(a);
    assert!(b.shutdown().await.complete());
    assert!(c.shutdown().await.complete());
}

/// A stream that begins or ends is written to the directory at once (`Cluster::announce_soon`),
/// not at the next heartbeat: with a heartbeat of 20 s, another node finds and plays it, and
/// then sees it gone, long before any periodic beat could have told it.
#[tokio::test]
async fn a_new_stream_is_found_from_another_node_before_the_next_heartbeat() {
    let nats = Nats::start().await;
    let backend = Backend::start().await;
    let toml = format!(
        "[cluster]\nnats_url = \"{}\"\nheartbeat_ms = 20000\nlease_ms = 60000\n{}",
        nats.url(),
        sip_server_toml(&backend)
    );
    let a = start_server(&toml).await;
    let b = start_server(&toml).await;
    // Both nodes have made their first beat (at start), so the next periodic one is ~20 s away.
    eventually("both nodes are in the directory", || async { node_ids(b.http_addr).await.len() == 2 }).await;
    let begun = tokio::time::Instant::now();
    let (mut pub_client, publisher) = stream_on(&a, "m1", "early", true).await;
    let filter = json!({"name": "early", "published": true}).to_string();
    while found(b.http_addr, "/rest-api/stream/find", &filter).await.len() != 1 {
        assert!(begun.elapsed() < Duration::from_secs(10), "B did not find the stream before A's next heartbeat");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_play_client, player) = stream_on(&b, "b1", "early", false).await;
    player.wait("video from A", |s| s.video_frames >= 5).await;
    pub_client.send("unPublishStream", json!({"mediaSessionId": "m1", "name": "early"})).await;
    assert_eq!(stream_status(&mut pub_client, "m1").await["status"], "UNPUBLISHED");
    let ended = tokio::time::Instant::now();
    while !found(b.http_addr, "/rest-api/stream/find", &filter).await.is_empty() {
        assert!(ended.elapsed() < Duration::from_secs(10), "B still lists the stream: the end waited for a heartbeat");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((publisher, player));
    assert!(a.shutdown().await.complete());
    assert!(b.shutdown().await.complete());
}

/// HLS of a stream published on another node: B's muxer pulls it through the one relay of B
/// (as a player of B would), serves its playlist and segments, keeps the relay while it runs
/// and lets it go when idle.
#[tokio::test]
async fn a_stream_published_on_one_node_is_served_as_hls_by_another() {
    let nats = Nats::start().await;
    let backend = Backend::start().await;
    let toml = format!(
        "{}{}[hls]\nsegment_ms = 1000\npart_ms = 250\nidle_timeout_s = 1\n",
        cluster_toml(&nats, 2000),
        sip_server_toml(&backend)
    );
    let a = start_server(&toml).await;
    let b = start_server(&toml).await;
    let (_pub_client, _publisher) =
        stream_with(&a, "m1", "hlscam", FakeBrowser::publisher_real_h264().await, true).await;
    listed(&b, "hlscam").await;

    // B's mirror of the directory (what an HLS request is checked against) trails the
    // directory by a watch event.
    let until = tokio::time::Instant::now() + WAIT;
    let (status, body) = loop {
        let got = http_get_to(b.http_addr, "/hlscam/index.m3u8").await;
        if got.0 != 404 || tokio::time::Instant::now() > until {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let playlist = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(status, 200, "{playlist}");
    assert_eq!(b.shared.streams.relay_counts(), (1, 0), "B pulls the stream once");
    assert_eq!(a.shared.streams.relay_counts(), (0, 1));
    let seg = playlist.lines().find(|l| l.starts_with("seg")).expect("a segment").to_string();
    let (status, body) = http_get_to(b.http_addr, &format!("/hlscam/{seg}")).await;
    assert_eq!(status, 200);
    assert_eq!(&body[4..8], b"moof", "an fMP4 fragment");
    let (status, body) = http_get_to(b.http_addr, "/hlscam/init.mp4").await;
    assert_eq!((status, &body[4..8]), (200, &b"ftyp"[..]));
    // A stream published nowhere is still 404 on B.
    assert_eq!(http_get_to(b.http_addr, "/nowhere/index.m3u8").await.0, 404);

    // No more requests: the idle muxer lets the relay go at both ends.
    eventually("the relay is released", || async {
        b.shared.streams.relay_counts() == (0, 0) && a.shared.streams.relay_counts() == (0, 0)
    })
    .await;
    assert!(a.shutdown().await.complete());
    assert!(b.shutdown().await.complete());
}
