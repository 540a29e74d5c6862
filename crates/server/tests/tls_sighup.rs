//! SIGHUP to the binary (issue 11 item 3): with `[tls]`, it re-reads the certificate files (new
//! wss/https connections get the new certificate, an open wss session keeps working, a bad file
//! is logged and the old certificate stays); without `[tls]` it is logged and changes nothing.
//! In neither case does it end the process (SIGHUP's default action would).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callgate_tests::tls::{https_post, TestCa, WssClient};
use callgate_tests::Client;
use serde_json::{json, Value};

/// The binary with a config file in its own directory, its JSON log collected; killed on drop.
struct Callgate {
    child: Child,
    log: Arc<Mutex<Vec<Value>>>,
    dir: PathBuf,
}

impl Callgate {
    fn start(name: &str, extra: impl FnOnce(&Path) -> String) -> Callgate {
        let dir = std::env::temp_dir().join(format!("callgate-{name}-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("callgate.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nws_bind = \"127.0.0.1:0\"\nhttp_bind = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\n\
                 [sip]\nbind = \"127.0.0.1:0\"\n[log]\nformat = \"json\"\n{}",
                extra(&dir)
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_callgate"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the callgate binary starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (out, sink) = (child.stdout.take().unwrap(), log.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line).unwrap_or(Value::String(line));
                sink.lock().unwrap().push(v);
            }
        });
        Callgate { child, log, dir }
    }

    /// The fields of the `nth` (from 1) log line whose message is `message`; bounded wait.
    async fn wait_log(&self, message: &str, nth: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found =
                self.log.lock().unwrap().iter().filter(|l| l["fields"]["message"] == message).nth(nth - 1).cloned();
            if let Some(l) = found {
                return l["fields"].clone();
            }
            assert!(Instant::now() < deadline, "no log line {message:?} #{nth}: {:#?}", self.log.lock().unwrap());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn hangup(&self) {
        let kill = Command::new("kill").arg("-HUP").arg(self.child.id().to_string()).status().unwrap();
        assert!(kill.success());
    }

    fn assert_running(&mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "callgate exited after SIGHUP");
    }
}

impl Drop for Callgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn addr(fields: &Value, key: &str) -> SocketAddr {
    fields[key].as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{key} in {fields}"))
}

#[tokio::test]
async fn sighup_reloads_the_certificate_keeps_open_connections_and_survives_bad_files() {
    let ca = TestCa::new();
    let (one, two) = (ca.issue("callgate one"), ca.issue("callgate two"));
    let mut paths = None;
    let mut callgate = Callgate::start("tls-sighup", |dir| {
        let (c, k) = one.write(dir, "server");
        let text = format!(
            "[tls]\nwss_bind = \"127.0.0.1:0\"\nhttps_bind = \"127.0.0.1:0\"\ncert = \"{}\"\nkey = \"{}\"\n",
            c.display(),
            k.display()
        );
        paths = Some((c, k));
        text
    });
    let (cert, _key) = paths.unwrap();
    let started = callgate.wait_log("callgate started", 1).await;
    let (wss, https) = (addr(&started, "wss_addr"), addr(&started, "https_addr"));
    let mut old = WssClient::connect(&ca, wss).await;
    assert_eq!(old.cert, one.der);
    old.send("connection", json!({"clientVersion": "2.0"})).await;
    assert_eq!(old.expect("getUserData").await["status"], "ESTABLISHED");

    two.write(cert.parent().unwrap(), "server");
    callgate.hangup();
    callgate.wait_log("TLS certificate reloaded", 1).await;
    assert_eq!(WssClient::connect(&ca, wss).await.cert, two.der, "new wss connections get the new certificate");
    assert_eq!(https_post(&ca, https, "/apps/EchoApp/connect", "{}").await.2, two.der);
    old.send("sendData", json!({"operationId": "op-1", "payload": {"x": 1}})).await;
    assert_eq!(old.expect("DataStatusEvent").await["status"], "ACCEPTED", "the session opened before SIGHUP goes on");

    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n").unwrap();
    callgate.hangup();
    let failed = callgate.wait_log("TLS certificate reload failed; the previous certificate stays in use", 1).await;
    assert!(failed["error"].as_str().unwrap().contains("server.crt"), "the error names the file: {failed}");
    callgate.assert_running();
    assert_eq!(WssClient::connect(&ca, wss).await.cert, two.der, "the previous certificate stays");
    old.send("sendData", json!({"operationId": "op-2", "payload": {"x": 2}})).await;
    assert_eq!(old.expect("DataStatusEvent").await["status"], "ACCEPTED");
}

#[tokio::test]
async fn sighup_without_tls_is_logged_and_changes_nothing() {
    let mut callgate = Callgate::start("sighup-plain", |_| String::new());
    let started = callgate.wait_log("callgate started", 1).await;
    assert_eq!(started["wss_addr"], "", "no TLS listener by default");
    callgate.hangup();
    callgate.wait_log("SIGHUP: no [tls] listener configured, nothing to reload", 1).await;
    callgate.assert_running();
    let (_c, user) = Client::establish_at(addr(&started, "ws_addr"), json!({"clientVersion": "2.0"})).await;
    assert_eq!(user["status"], "ESTABLISHED");
}
