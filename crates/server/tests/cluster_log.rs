//! A cluster node names itself in every log line (issue 12 item 7, docs/cluster.md): the real
//! binary with `[cluster]` against a real `nats-server -js` (Debian's, `make deps`), in JSON and
//! in text; a single node's lines stay as they were.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the child on drop (and removes `dir`, if any).
struct Reaped(Child, Option<std::path::PathBuf>);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        if let Some(d) = &self.1 {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn nats() -> (Reaped, u16) {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("callgate-log-nats-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nats-server runs (make deps installs it)");
    let nats = Reaped(child, Some(dir));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nats-server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (nats, port)
}

/// Runs the binary with `extra` config until its "callgate started" line (bounded), then stops
/// it; returns every line it wrote up to then.
fn log_lines(name: &str, extra: &str) -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("callgate-log-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("callgate.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nws_bind = \"127.0.0.1:0\"\nhttp_bind = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\n\
             [sip]\nbind = \"127.0.0.1:0\"\n[registrar]\nbind = \"127.0.0.1:0\"\n{extra}"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_callgate"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the callgate binary starts");
    let out = child.stdout.take().unwrap();
    let _child = Reaped(child, Some(dir));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).unwrap_or_else(|_| panic!("no \"callgate started\" line: {lines:#?}"));
        let started = line.contains("callgate started");
        lines.push(line);
        if started {
            return lines;
        }
    }
}

#[test]
fn a_cluster_nodes_every_log_line_names_the_node() {
    let (_nats, port) = nats();
    let cluster = format!("[cluster]\nnats_url = \"nats://127.0.0.1:{port}\"\n");

    let lines = log_lines("json", &format!("[log]\nformat = \"json\"\n{cluster}"));
    let parsed: Vec<serde_json::Value> =
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect();
    let started = parsed.last().unwrap();
    let node = started["fields"]["node_id"].as_str().expect("the start line names the node id").to_string();
    assert!(node.contains('@'), "{node}");
    assert!(parsed.len() >= 2, "{lines:#?}");
    for l in &parsed {
        assert_eq!(l["node"], node.as_str(), "{l}");
        assert!(l["fields"]["message"].is_string() && l["level"].is_string(), "still the JSON format: {l}");
    }

    let lines = log_lines("text", &cluster);
    let node = lines
        .last()
        .unwrap()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("node_id="))
        .unwrap()
        .trim_matches('"')
        .to_string();
    for l in &lines {
        assert!(l.starts_with(&format!("node={node} ")), "{l}\nlast: {}", lines.last().unwrap());
    }
}

#[test]
fn a_single_nodes_log_lines_have_no_node_field() {
    let lines = log_lines("single", "[log]\nformat = \"json\"\n");
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert!(v.get("node").is_none(), "{l}");
    }
    assert!(!log_lines("single-text", "").iter().any(|l| l.starts_with("node=")));
}
