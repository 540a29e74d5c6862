//! Supervision (issue 14): a panic in the SIP driver is logged, counted in `/metrics`, reported
//! by `RunningServer::failed`, and the shutdown that follows (what the binary does before it
//! exits with code 70, `crates/server/tests/exit_on_failure.rs`) still hangs up live calls
//! with BYE, because the driver outlives a panic of its user agent.

use std::time::Duration;

use callgate_tests::sip_fixtures::{sip_server_toml, sipp_uas};
use callgate_tests::{http_post, start_server, Backend};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn metrics(server: &callgate_server::RunningServer) -> String {
    let mut s = tokio::net::TcpStream::connect(server.http_addr).await.unwrap();
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.http_addr);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await.unwrap().unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

fn counter(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
}

#[tokio::test]
async fn a_sip_driver_panic_is_counted_and_reported_and_the_shutdown_still_byes_calls() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = sipp_uas("uas_answer_local_bye.xml");
    let body = json!({"callId": "p1", "callee": "3001", "hasAudio": "true", "hasVideo": "false",
                      "sipLogin": "3000", "sipAuthenticationName": "3000", "sipPassword": "secret",
                      "sipDomain": "127.0.0.1", "sipOutboundProxy": "127.0.0.1",
                      "sipPort": sipp.local_addr().port().to_string(), "appKey": "backendApp",
                      "sipRegisterRequired": "false"});
    let (status, text) = http_post(&server, "/rest-api/call/startup", &body.to_string(), None).await;
    assert_eq!(status, 200, "{text}");
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "p1" && b["status"] == "ESTABLISHED").await;
    assert_eq!(counter(&metrics(&server).await, "callgate_sip_driver_panics_total"), Some(0), "shown from the start");

    // A bug in the user agent, as a command that panics inside the driver.
    let ua = server.shared.calls.endpoint().await.unwrap();
    assert!(ua.with(|_, _| -> () { panic!("injected by the test") }).await.is_err());
    let failure = tokio::time::timeout(Duration::from_secs(5), server.failed()).await.expect("reported in time");
    assert_eq!(failure.message, "injected by the test");
    assert!(failure.to_string().contains("SIP driver"), "{failure}");
    assert_eq!(counter(&metrics(&server).await, "callgate_sip_driver_panics_total"), Some(1));

    // What the binary does next: shut down, hanging up the call (sipp's scenario waits for the BYE).
    let shared = server.shared.clone();
    server.shutdown().await;
    assert_eq!(shared.calls.calls(), 0, "every call ended within the shutdown");
    sipp.wait().await.assert_success();
    backend.wait_for("CallStatusEvent", |b| b["callId"] == "p1" && b["status"] == "FINISH").await;
}
