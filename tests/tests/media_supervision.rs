//! The media task supervised (issue 14): when it panics (debug-build hook
//! `MediaEndpoint::panic_for_test`), the server reports the failure (`RunningServer::failed`,
//! on which the binary exits non-zero: crates/server/tests/exit_on_failure.rs), counts it in
//! `/metrics`, and a publish afterwards fails instead of waiting on a dead task.

use std::time::Duration;

use callgate_tests::webrtc::FakeBrowser;
use callgate_tests::{start_server, Client};
use serde_json::json;

const NO_HOOKS: &str = "[apps.defaultApp]\nurl = \"http://localhost:1/apps/EchoApp\"\nmethods = \"none\"\n";

async fn metrics(server: &callgate_server::RunningServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(server.http_addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.unwrap();
    buf
}

fn counter(text: &str, name: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))?.rsplit(' ').next()?.parse().ok()
}

#[tokio::test]
async fn a_media_task_panic_is_logged_counted_reported_and_publishes_fail() {
    let server = start_server(NO_HOOKS).await;
    assert!(
        counter(&metrics(&server).await, "callgate_media_task_panics_total").is_some(),
        "the counter is there before any panic"
    );
    server.shared.streams.media.panic_for_test().await;
    let failure = tokio::time::timeout(Duration::from_secs(10), server.failed()).await.expect("the panic is reported");
    assert_eq!(failure.component, "the media task");
    assert_eq!(failure.message, "media task panic requested by a test");
    let n = counter(&metrics(&server).await, "callgate_media_task_panics_total");
    assert!(n.is_some_and(|n| n >= 1.0), "{n:?}");
    // No publish is taken by the dead task: it fails at once.
    let (mut c, _) = Client::establish(&server, json!({})).await;
    let b = FakeBrowser::publisher().await;
    c.send(
        "publishStream",
        json!({"mediaSessionId": "pub-1", "name": "cam", "published": true, "hasVideo": true, "hasAudio": true,
               "status": "PENDING", "record": false, "mediaProvider": "WebRTC", "sdp": b.offer}),
    )
    .await;
    let st = c.expect("notifyStreamStatusEvent").await;
    assert_eq!((st["status"].as_str(), st["info"].as_str()), (Some("FAILED"), Some("Failed by error")), "{st:?}");
    server.shutdown().await;
}
