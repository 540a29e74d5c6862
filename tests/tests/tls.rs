//! The wss:// and https:// listeners (`[tls]`) with a certificate made at test time by a test
//! CA: a `connection` login over wss, REST and the EchoApp over https, the certificate reload
//! (new connections get the new certificate, an open one keeps working, bad files keep the old
//! one), the bounded handshake, the shutdown, and the configuration errors. The SIGHUP path through the
//! binary is crates/server/tests/tls_sighup.rs.

use std::path::{Path, PathBuf};

use callgate_tests::tls::{https_post, TestCa, WssClient};
use callgate_tests::{start_server, Client, WAIT};
use serde_json::json;
use tokio::io::AsyncReadExt;

/// A fresh directory for one test's PEM files.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("callgate-tls-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tls_toml(cert: &Path, key: &Path, extra: &str) -> String {
    format!(
        "[tls]\nwss_bind = \"127.0.0.1:0\"\nhttps_bind = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
        cert.display(),
        key.display()
    )
}

#[tokio::test]
async fn wss_login_and_https_rest_with_a_test_certificate() {
    let dir = temp_dir("serve");
    let ca = TestCa::new();
    let one = ca.issue("callgate one");
    let (cert, key) = one.write(&dir, "server");
    let server = start_server(&tls_toml(&cert, &key, "")).await;
    let (wss, https) = (server.wss_addr.expect("wss bound"), server.https_addr.expect("https bound"));

    let mut c = WssClient::connect(&ca, wss).await;
    assert_eq!(c.cert, one.der);
    c.send("connection", json!({"clientVersion": "2.0", "custom": {"a": 1}})).await;
    let user = c.expect("getUserData").await;
    assert_eq!(user["status"], "ESTABLISHED");
    assert_eq!(user["appKey"], "defaultApp");
    let sid = user["sessionId"].as_str().unwrap().to_string();

    // The REST API over https sees the session made over wss.
    let (status, body, shown) = https_post(&ca, https, "/rest-api/connection/find_all", "{}").await;
    assert_eq!((status, shown), (200, one.der.clone()), "{body}");
    assert!(body.contains(&sid), "find_all lists the wss session: {body}");
    let obj = r#"{"x": [1, 2]}"#;
    let (status, body, _) = https_post(&ca, https, "/apps/EchoApp/connect", obj).await;
    assert_eq!((status, body.as_str()), (200, obj));

    // The plain listeners are unchanged beside them.
    let (_plain, plain_user) = Client::establish(&server, json!({"clientVersion": "2.0"})).await;
    assert_eq!(plain_user["status"], "ESTABLISHED");
    // A client that does not trust the certificate gets no session.
    assert!(TestCa::new().connect(wss).await.is_err(), "a client trusting another CA is refused");
    // The graceful shutdown reaches the wss session as any other, and stops the TLS listeners.
    let outcome = server.shutdown().await;
    assert!(outcome.complete(), "{outcome}");
    let fail = c.expect("fail").await;
    assert_eq!(fail["info"], "Server shutdown");
    assert!(tokio::net::TcpStream::connect(wss).await.is_err(), "the wss port is closed after the shutdown");
    assert!(tokio::net::TcpStream::connect(https).await.is_err(), "the https port is closed after the shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn reload_changes_the_certificate_of_new_connections_only_and_bad_files_keep_the_old() {
    let dir = temp_dir("reload");
    let ca = TestCa::new();
    let (one, two, three) = (ca.issue("callgate one"), ca.issue("callgate two"), ca.issue("callgate three"));
    let (cert, key) = one.write(&dir, "server");
    let server = start_server(&tls_toml(&cert, &key, "")).await;
    let (wss, https) = (server.wss_addr.unwrap(), server.https_addr.unwrap());
    let mut old = WssClient::connect(&ca, wss).await;
    old.send("connection", json!({"clientVersion": "2.0"})).await;
    assert_eq!(old.expect("getUserData").await["status"], "ESTABLISHED");

    two.write(&dir, "server");
    assert!(server.reload_tls(), "a good pair loads");
    assert_eq!(WssClient::connect(&ca, wss).await.cert, two.der, "a new wss connection gets the new certificate");
    assert_eq!(https_post(&ca, https, "/apps/EchoApp/connect", "{}").await.2, two.der);
    // The connection opened before the reload still works.
    old.send("sendData", json!({"operationId": "op-1", "payload": {"x": 1}})).await;
    assert_eq!(old.expect("DataStatusEvent").await["status"], "ACCEPTED");

    // Unparsable, missing, and a key that is not the certificate's: refused, the old one stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    assert!(!server.reload_tls());
    std::fs::remove_file(&cert).unwrap();
    assert!(!server.reload_tls());
    std::fs::write(&cert, &two.cert_pem).unwrap();
    std::fs::write(&key, &three.key_pem).unwrap();
    assert!(!server.reload_tls(), "a key that does not match the certificate is refused");
    assert_eq!(WssClient::connect(&ca, wss).await.cert, two.der, "the previous certificate stays after failed reloads");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_client_that_never_sends_a_client_hello_is_closed() {
    let dir = temp_dir("handshake");
    let ca = TestCa::new();
    let (cert, key) = ca.issue("callgate").write(&dir, "server");
    let server = start_server(&tls_toml(&cert, &key, "[server]\nheader_read_timeout_ms = 300\n")).await;
    for addr in [server.wss_addr.unwrap(), server.https_addr.unwrap()] {
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 16];
        // Bounded wait only: the server closes it (read returns 0 or a reset).
        let n =
            tokio::time::timeout(WAIT, tcp.read(&mut buf)).await.expect("closed by the server within the wait bound");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    }
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn configuration_errors_are_clear() {
    use callgate_server::config::Config;
    let no_files = Config::from_toml("[tls]\nwss_bind = \"127.0.0.1:0\"\n").unwrap_err();
    assert!(format!("{no_files:#}").contains("tls.cert and tls.key"), "{no_files:#}");
    let bad_addr = Config::from_toml("[tls]\nwss_bind = \"nowhere\"\ncert = \"c\"\nkey = \"k\"\n").unwrap_err();
    assert!(format!("{bad_addr:#}").contains("tls.wss_bind"), "{bad_addr:#}");
    let open_https = Config::from_toml("[tls]\nhttps_bind = \"0.0.0.0:0\"\ncert = \"c\"\nkey = \"k\"\n").unwrap_err();
    assert!(format!("{open_https:#}").contains("tls.https_bind"), "{open_https:#}");
    // Off by default: no TLS listener, nothing to reload.
    let plain = Config::from_toml("").unwrap();
    assert!(!plain.tls.enabled());

    let dir = temp_dir("config");
    let missing = dir.join("missing.crt");
    let cfg = Config::from_toml(&format!(
        "[server]\nws_bind = \"127.0.0.1:0\"\nhttp_bind = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\n{}",
        tls_toml(&missing, &dir.join("missing.key"), "")
    ))
    .unwrap();
    let err = callgate_server::start(cfg).await.err().expect("a missing certificate file stops the start");
    assert!(format!("{err:#}").contains("missing.crt"), "the error names the file: {err:#}");
    let _ = std::fs::remove_dir_all(&dir);
}
