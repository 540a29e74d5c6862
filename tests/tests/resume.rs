//! Session resume (`keepAlive` + `authToken`, `[server] keep_alive_grace_ms`): a session that
//! connected with `keepAlive: true` outlives its socket with its published stream and its SIP
//! registration; a new connection carrying its `authToken` resumes it (same session, the
//! connect hook told `resumed: true`, `registered` again); not resumed within the grace it ends
//! as any closed session. Real server, real recording backend, str0m fake browsers with real
//! ICE/DTLS/SRTP, the embedded registrar.

use std::time::Duration;

use callgate_tests::sip_fixtures::{connection, sip_server_toml};
use callgate_tests::streams::{play_msg, publish_msg, start_stream, stream_status};
use callgate_tests::webrtc::FakeBrowser;
use callgate_tests::{http_post, start_server, Backend, Client};
use serde_json::{json, Value};

fn toml(backend: &Backend, grace_ms: u64) -> String {
    format!("[server]\nkeep_alive_grace_ms = {grace_ms}\n{}", sip_server_toml(backend))
}

fn disconnected(backend: &Backend, sid: &str) -> usize {
    backend
        .requests_for("ConnectionStatusEvent")
        .iter()
        .filter(|r| r.body["sessionId"] == sid && r.body["status"] == "DISCONNECTED")
        .count()
}

/// Waits until the backend has `ConnectionStatusEvent DISCONNECTED` of session `sid`.
async fn wait_disconnected(backend: &Backend, sid: &str) {
    backend.wait_for("ConnectionStatusEvent", |b| b["sessionId"] == sid && b["status"] == "DISCONNECTED").await;
}

/// A `keepAlive` session that publishes `cam`, and a player of it on another session whose
/// fake browser receives video.
async fn kept_publisher(
    server: &callgate_server::RunningServer,
) -> (Client, serde_json::Map<String, Value>, FakeBrowser, Client, FakeBrowser) {
    let (mut c, user) = Client::establish(server, connection(json!({"keepAlive": true}))).await;
    let b = FakeBrowser::publisher().await;
    let st = start_stream(&mut c, &b, "publishStream", publish_msg("pub-1", "cam", &b.offer)).await;
    assert_eq!(st["status"], "PUBLISHING", "{st:?}");
    let (mut pc, _) = Client::establish(server, connection(json!({}))).await;
    let p = FakeBrowser::player().await;
    let st = start_stream(&mut pc, &p, "playStream", play_msg("play-1", "cam", &p.offer)).await;
    assert_eq!(st["status"], "PLAYING", "{st:?}");
    p.wait("video at the player", |s| s.video_frames >= 5).await;
    (c, user, b, pc, p)
}

#[tokio::test]
async fn a_kept_session_keeps_its_stream_and_is_resumed_by_its_auth_token() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, 30_000)).await;
    let (c, user, _b, mut pc, p) = kept_publisher(&server).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    let token = user["authToken"].as_str().unwrap().to_string();

    // The socket goes; the session, its stream and the player's media stay.
    drop(c);
    let before = p.stats().video_frames;
    p.wait("video after the publisher's socket went", |s| s.video_frames >= before + 20).await;
    assert_eq!(disconnected(&backend, &sid), 0, "a kept session is not DISCONNECTED");

    // A new connection with the token resumes it: the same session, its own connection object.
    let (mut c2, again) = Client::establish(&server, connection(json!({"authToken": token, "keepAlive": true}))).await;
    assert_eq!(again["sessionId"], sid.as_str(), "{again:?}");
    assert_eq!(again["authToken"], token.as_str());
    assert_eq!(again["resumed"], true);
    let hook = backend.wait_for("connect", |b| b["resumed"] == true).await;
    assert_eq!(hook.body["sessionId"], sid.as_str(), "the connect hook is told which session resumes");
    backend.wait_for("ConnectionStatusEvent", |b| b["sessionId"] == sid.as_str() && b["resumed"] == true).await;

    // The resumed connection owns the stream: it unpublishes, the player is stopped.
    c2.send("unPublishStream", publish_msg("pub-1", "cam", "")).await;
    assert_eq!(stream_status(&mut c2, "pub-1").await["status"], "UNPUBLISHED");
    assert_eq!(stream_status(&mut pc, "play-1").await["status"], "STOPPED");

    // Kept again when its socket goes; REST /connection/terminate ends it at once.
    drop(c2);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(disconnected(&backend, &sid), 0);
    let (status, body) =
        http_post(&server, "/rest-api/connection/terminate", &json!({"sessionId": sid}).to_string(), None).await;
    assert_eq!(status, 200, "{body}");
    wait_disconnected(&backend, &sid).await;
    server.shutdown().await;
}

#[tokio::test]
async fn a_kept_session_not_resumed_in_its_grace_ends_and_its_token_no_longer_resumes() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, 300)).await;
    let (c, user, _b, mut pc, _p) = kept_publisher(&server).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    drop(c);
    assert_eq!(stream_status(&mut pc, "play-1").await["status"], "STOPPED", "the grace ended the stream");
    wait_disconnected(&backend, &sid).await;
    assert_eq!(disconnected(&backend, &sid), 1);

    let mut late = Client::connect(&server).await;
    late.send("connection", connection(json!({"authToken": user["authToken"], "keepAlive": true}))).await;
    let fail = late.expect("fail").await;
    assert_eq!(fail["info"], "No session to resume for this authToken", "{fail:?}");
    late.expect_closed().await;
    server.shutdown().await;
}

#[tokio::test]
async fn without_keep_alive_or_with_no_grace_a_session_ends_with_its_socket() {
    for (keep_alive, grace) in [(false, 30_000), (true, 0)] {
        let backend = Backend::start().await;
        let server = start_server(&toml(&backend, grace)).await;
        let (c, user) = Client::establish(&server, connection(json!({"keepAlive": keep_alive}))).await;
        drop(c);
        let sid = user["sessionId"].as_str().unwrap().to_string();
        wait_disconnected(&backend, &sid).await;
        server.shutdown().await;
    }
}

#[tokio::test]
async fn a_declined_resume_leaves_the_session_kept() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, 30_000)).await;
    let (c, user) = Client::establish(&server, connection(json!({"keepAlive": true}))).await;
    let (sid, token) = (user["sessionId"].clone(), user["authToken"].clone());
    drop(c);
    backend.answer(|method, body| {
        if method == "connect" && body["resumed"] == true && body["custom"]["try"] == 1 {
            callgate_tests::Reply::json(403, json!({"status": 403, "reason": "not now"}))
        } else {
            callgate_tests::Reply::mirror(body)
        }
    });
    let mut first = Client::connect(&server).await;
    first.send("connection", connection(json!({"authToken": token, "keepAlive": true, "custom": {"try": 1}}))).await;
    let fail = first.expect("fail").await;
    assert_eq!(fail["apiMethod"], "ConnectionStatusEvent", "{fail:?}");
    first.expect_closed().await;
    let (_c2, again) =
        Client::establish(&server, connection(json!({"authToken": token, "keepAlive": true, "custom": {"try": 2}})))
            .await;
    assert_eq!(again["sessionId"], sid);
    assert_eq!(disconnected(&backend, sid.as_str().unwrap()), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn a_resumed_session_is_told_its_registration_holds() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, 30_000)).await;
    let account = json!({"sipLogin": "1001", "sipPassword": "pw", "sipDomain": "callgate.local", "sipPort": "5060",
                         "keepAlive": true});
    let (mut c, user) = Client::establish(&server, connection(account)).await;
    assert_eq!(c.expect("registered").await["status"], "REGISTERED");
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (mut c2, again) =
        Client::establish(&server, connection(json!({"authToken": user["authToken"], "keepAlive": true}))).await;
    assert_eq!(again["sipLogin"], "1001", "getUserData carries the kept session's own connection object");
    let reg = c2.expect("registered").await;
    assert_eq!((reg["sipLogin"].as_str(), reg["status"].as_str()), (Some("1001"), Some("REGISTERED")));
    let regs = backend.requests_for("RegistrationStatusEvent");
    assert_eq!(regs.iter().filter(|r| r.body["status"] == "REGISTERED").count(), 1, "one REGISTER, no second hook");
    server.shutdown().await;
}

#[tokio::test]
async fn a_shutdown_ends_a_kept_session_with_disconnected() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, 60_000)).await;
    let (c, user) = Client::establish(&server, connection(json!({"keepAlive": true}))).await;
    drop(c);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let sid = user["sessionId"].as_str().unwrap().to_string();
    assert_eq!(disconnected(&backend, &sid), 0);
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("the shutdown does not wait for the grace");
    assert_eq!(
        disconnected(&backend, &sid),
        1,
        "the kept session's DISCONNECTED is delivered before the shutdown ends"
    );
}

#[tokio::test]
async fn a_resume_while_the_old_socket_still_looks_alive_takes_the_session_over() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, 30_000)).await;
    // The old connection stays open (a half-open socket after a network change looks so).
    let (mut old, user) = Client::establish(&server, connection(json!({"keepAlive": true}))).await;
    let (mut c2, again) =
        Client::establish(&server, connection(json!({"authToken": user["authToken"], "keepAlive": true}))).await;
    assert_eq!(again["sessionId"], user["sessionId"], "the same session");
    old.expect_closed().await;
    let sid = user["sessionId"].as_str().unwrap();
    assert_eq!(disconnected(&backend, sid), 0, "handed over, not ended");
    // The session's frames now reach the new connection.
    let (status, body) = http_post(
        &server,
        "/rest-api/data/send",
        &json!({"sessionId": sid, "operationId": "op-1", "payload": {"to": "new"}}).to_string(),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(c2.expect("OnDataEvent").await["payload"]["to"], "new");
    server.shutdown().await;
}

#[tokio::test]
async fn the_auth_token_is_in_no_rest_view_and_no_filter() {
    let backend = Backend::start().await;
    let server = start_server(&toml(&backend, 30_000)).await;
    let (_c, user) = Client::establish(&server, connection(json!({"keepAlive": true}))).await;
    let sid = user["sessionId"].as_str().unwrap();
    assert!(user["authToken"].is_string(), "the client gets its token");
    let (status, body) =
        http_post(&server, "/rest-api/connection/find", &json!({"sessionId": sid}).to_string(), None).await;
    assert_eq!(status, 200, "{body}");
    let found: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(found[0]["sessionId"], sid);
    assert!(found[0].get("authToken").is_none(), "whoever reads the REST API cannot resume the session: {body}");
    let (status, body) =
        http_post(&server, "/rest-api/connection/find", &json!({"authToken": user["authToken"]}).to_string(), None)
            .await;
    assert_eq!(status, 400, "{body}");
    server.shutdown().await;
}
