//! Supervision (issue 14): a panic in the SIP driver is logged, counted in `/metrics`, reported
//! by `RunningServer::failed`, and the shutdown that follows (what the binary does before it
//! exits with code 70, `crates/server/tests/exit_on_failure.rs`) still hangs up live calls
//! with BYE, because the driver outlives a panic of its user agent.

use std::time::Duration;

use callgate_tests::sip_fixtures::{connection, registrar, sip_server_toml, sipp_uas};
use callgate_tests::{http_post, start_server, Backend, Client};
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
    // The SIP event pump is watched too (its JoinHandle once was dropped: a panic there stopped
    // SIP events silently); supervise.rs unit-tests the watcher with a task that panics.
    let pump = r#"callgate_task_panics_total{task="sip_pump"}"#;
    assert_eq!(counter(&metrics(&server).await, pump), Some(0), "shown from the start");

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

/// Issue 14 item 1 against the whole server, as reported: once a client has registered (so the
/// SIP port is open), one out-of-dialog MESSAGE whose CPIM inner Content-Length is 2^64-1, from
/// any host, panicked the `sip-driver` thread and the node answered nothing more. Now it gets
/// `400 Bad CPIM Body`, OPTIONS is still answered, and no panic is reported.
#[tokio::test]
async fn the_cpim_packet_of_issue_14_gets_400_and_the_sip_side_keeps_answering() {
    let backend = Backend::start().await;
    let server = start_server(&sip_server_toml(&backend)).await;
    let sipp = registrar("secret");
    let fields = json!({"sipLogin": "3000", "sipPassword": "secret", "sipDomain": "127.0.0.1",
                        "sipPort": sipp.local_addr().port().to_string()});
    let (mut c, _) = Client::establish(&server, connection(fields)).await;
    c.expect("registered").await;
    let sip = server.shared.calls.local_addr().expect("the SIP endpoint runs");
    let a = std::net::SocketAddr::new("127.0.0.1".parse().unwrap(), sip.port());
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let p = peer.local_addr().unwrap();
    let cpim = "From: <sip:x@h>\r\nTo: <sip:3000@h>\r\n\r\nContent-Type: text/plain\r\nContent-Length: 18446744073709551615\r\n\r\nHello";
    let message = format!(
        "MESSAGE sip:3000@{a} SIP/2.0\r\nVia: SIP/2.0/UDP {p};branch=z9hG4bKcpim14;rport\r\nFrom: <sip:x@h>;tag=1\r\n\
         To: <sip:3000@{a}>\r\nCall-ID: cpim14\r\nCSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: message/cpim\r\n\
         Content-Length: {}\r\n\r\n{cpim}",
        cpim.len()
    );
    peer.send_to(message.as_bytes(), a).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let (n, _) =
        tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf)).await.expect("an answer").unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 400 Bad CPIM Body\r\n"), "{}", String::from_utf8_lossy(&buf[..n]));
    let options = format!(
        "OPTIONS sip:{a} SIP/2.0\r\nVia: SIP/2.0/UDP {p};branch=z9hG4bKopt14;rport\r\nFrom: <sip:p@h>;tag=2\r\n\
         To: <sip:{a}>\r\nCall-ID: opt14\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    );
    peer.send_to(options.as_bytes(), a).await.unwrap();
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
        .await
        .expect("OPTIONS answered")
        .unwrap();
    assert!(buf[..n].starts_with(b"SIP/2.0 200 OK\r\n"), "{}", String::from_utf8_lossy(&buf[..n]));
    // (Not the process-wide counter: the other test of this binary panics on purpose.)
    assert!(server.shared.supervisor.failure().is_none(), "no panic reported");
    let _ = sipp.wait().await;
    server.shutdown().await;
}
