//! Resident memory per idle WebSocket session of the real `callgate` binary.
//!
//! Starts the server binary as a child process (`CALLGATE_BIN`, default
//! `target/release/callgate` of this workspace) with a temporary config on free 127.0.0.1 ports
//! and `defaultApp` on the built-in EchoApp (answered in process: the echo fast path), then:
//!
//! 1. reads the child's `VmRSS` from `/proc/<pid>/status` once it accepts connections;
//! 2. opens 100 sessions, reads `VmRSS` (the slope below starts here, past one-time growth);
//! 3. opens 900 more (1,000 in all). Each session sends
//!    `{"message":"connection","data":[{"appKey":"defaultApp","clientVersion":"2.0"}]}` and waits
//!    for the `getUserData` frame, i.e. it is a fully established session;
//! 4. waits 2 s, checks `callgate_ws_connections` on `/metrics`, reads `VmRSS` again and prints
//!    `(after - before) / 1000` and the slope `(after - at 100) / 900`;
//! 5. closes every session and kills the child.
//!
//! `VmRSS` counts user-space memory only; kernel socket buffers are not in it.
//!
//! A `harness = false` bench binary (built by `cargo bench --no-run`), not a criterion bench:
//! there is nothing to repeat. Bounded by a 60 s overall timeout.
//!
//! Run: `cargo build --release -p callgate-server && cargo bench -p callgate-benches --bench session_memory`
//! (`CALLGATE_BIN=target/debug/callgate` to measure a debug build.) Without `CALLGATE_BIN` and
//! without a release binary, the bench says so and exits successfully, so `cargo bench` as a whole
//! still runs; with `CALLGATE_BIN` set to a missing file it fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use futures_util::SinkExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SESSIONS: usize = 1000;
const FIRST: usize = 100;
const OPEN_CONCURRENCY: usize = 32;
const OVERALL: Duration = Duration::from_secs(60);
const CONNECTION: &str = r#"{"message":"connection","data":[{"appKey":"defaultApp","clientVersion":"2.0"}]}"#;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Kills and reaps the server whatever happens.
struct ChildGuard(std::process::Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    // cargo passes `--bench` (and criterion-style filters); there is nothing to filter.
    let (bin, explicit) = match std::env::var_os("CALLGATE_BIN") {
        Some(p) => (PathBuf::from(p), true),
        None => (Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/callgate"), false),
    };
    if !bin.exists() {
        if explicit {
            eprintln!("session_memory: CALLGATE_BIN={} does not exist", bin.display());
            std::process::exit(1);
        }
        eprintln!(
            "session_memory: SKIPPED: {} does not exist; build it with `cargo build --release -p callgate-server` \
             or point CALLGATE_BIN at a callgate binary",
            bin.display()
        );
        return;
    }
    let nofile = callgate_benches::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let started = Instant::now();
    let outcome = rt.block_on(async { tokio::time::timeout(OVERALL, measure(&bin, nofile)).await });
    match outcome {
        Ok(Ok(())) => println!("session_memory: done in {:.1} s", started.elapsed().as_secs_f64()),
        Ok(Err(e)) => {
            eprintln!("session_memory: FAILED: {e}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("session_memory: FAILED: not done within {OVERALL:?}");
            std::process::exit(1);
        }
    }
    // Dropping the runtime drops the (dropped) future, whose guard killed the child.
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `VmRSS` and `RssAnon` of `pid`, in KiB.
fn rss_kib(pid: u32) -> Result<(u64, u64), String> {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    let field = |name: &str| -> Result<u64, String> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("RssAnon:")?))
}

async fn measure(bin: &Path, nofile: libc::rlim_t) -> Result<(), String> {
    let err = |what: &str| {
        let what = what.to_string();
        move |e: std::io::Error| format!("{what}: {e}")
    };
    let ws_port = free_port().map_err(err("free port"))?;
    let http_port = free_port().map_err(err("free port"))?;
    let dir = std::env::temp_dir().join(format!("callgate-session-memory-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(err("temp dir"))?;
    let config = dir.join("callgate.toml");
    let log = dir.join("callgate.log");
    std::fs::write(
        &config,
        format!(
            "[server]\nws_bind = \"127.0.0.1:{ws_port}\"\nhttp_bind = \"127.0.0.1:{http_port}\"\n\n\
             [apps.defaultApp]\nurl = \"http://127.0.0.1:{http_port}/apps/EchoApp\"\n\n\
             [log]\nfilter = \"warn\"\n"
        ),
    )
    .map_err(err("write config"))?;
    let log_file = std::fs::File::create(&log).map_err(err("log file"))?;
    let mut cmd = Command::new(bin);
    // The server reads CALLGATE_<SECTION>__<KEY> variables as configuration and refuses unknown
    // ones, CALLGATE_BIN included: the child gets none of them, only the temporary config.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CALLGATE_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().map_err(err("log file"))?)
        .stderr(log_file)
        .spawn()
        .map_err(err(&format!("start {}", bin.display())))?;
    let mut child = ChildGuard(child);
    let pid = child.0.id();
    let result = run_sessions(&mut child, pid, ws_port, http_port, bin, nofile).await;
    if result.is_err() {
        let mut text = String::new();
        let _ = std::fs::File::open(&log).and_then(|mut f| f.read_to_string(&mut text));
        let head: Vec<&str> = text.lines().take(30).collect();
        eprintln!("server log (first 30 lines):\n{}", head.join("\n"));
    }
    drop(child);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_sessions(
    child: &mut ChildGuard,
    pid: u32,
    ws_port: u16,
    http_port: u16,
    bin: &Path,
    nofile: libc::rlim_t,
) -> Result<(), String> {
    // Ready when the WebSocket port accepts.
    let ready_by = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(format!("the server exited at start: {status}"));
        }
        if TcpStream::connect(("127.0.0.1", ws_port)).await.is_ok() {
            break;
        }
        if Instant::now() > ready_by {
            return Err("the server did not accept connections within 15 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (before, before_anon) = rss_kib(pid)?;

    let url = format!("ws://127.0.0.1:{ws_port}/");
    let t0 = Instant::now();
    let mut sessions = open_sessions(&url, FIRST).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (at_first, _) = rss_kib(pid)?;
    sessions.extend(open_sessions(&url, SESSIONS - FIRST).await?);
    let open_time = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gauge = ws_connections_gauge(http_port).await;
    let (after, after_anon) = rss_kib(pid)?;

    for ws in sessions.iter_mut() {
        let _ = ws.close(None).await;
    }
    drop(sessions);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let gauge_closed = ws_connections_gauge(http_port).await;
    let (closed, _) = rss_kib(pid)?;

    let per = |a: u64, b: u64, n: usize| (a.saturating_sub(b) as f64) * 1024.0 / n as f64;
    println!("session_memory: binary {}", bin.display());
    println!(
        "session_memory: open-file soft limit {nofile}; {SESSIONS} sessions established in {:.2} s",
        open_time.as_secs_f64()
    );
    if let Some(g) = gauge {
        println!("session_memory: server reports callgate_ws_connections = {g}");
    }
    println!("session_memory: VmRSS before      {before:>8} KiB (RssAnon {before_anon} KiB)");
    println!("session_memory: VmRSS at {FIRST:<5}    {at_first:>8} KiB");
    println!("session_memory: VmRSS at {SESSIONS:<5}    {after:>8} KiB (RssAnon {after_anon} KiB)");
    println!(
        "session_memory: VmRSS all closed  {closed:>8} KiB (2 s after closing; callgate_ws_connections = {})",
        gauge_closed.as_deref().unwrap_or("?")
    );
    println!(
        "session_memory: per session (after - before) / {SESSIONS} = {:.0} bytes; slope (at {SESSIONS} - at {FIRST}) / {} = {:.0} bytes",
        per(after, before, SESSIONS),
        SESSIONS - FIRST,
        per(after, at_first, SESSIONS - FIRST)
    );
    Ok(())
}

/// Opens `n` sessions, [`OPEN_CONCURRENCY`] at a time, each up to its `getUserData` frame.
async fn open_sessions(url: &str, n: usize) -> Result<Vec<Ws>, String> {
    let results: Vec<Result<Ws, String>> =
        stream::iter(0..n).map(|_| open_session(url)).buffer_unordered(OPEN_CONCURRENCY).collect().await;
    results.into_iter().collect()
}

async fn open_session(url: &str) -> Result<Ws, String> {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.map_err(|e| format!("connect {url}: {e}"))?;
    ws.send(Message::text(CONNECTION)).await.map_err(|e| format!("send connection: {e}"))?;
    let deadline = Duration::from_secs(10);
    loop {
        let msg = tokio::time::timeout(deadline, ws.next())
            .await
            .map_err(|_| "no getUserData within 10 s".to_string())?
            .ok_or("closed before getUserData")?
            .map_err(|e| format!("read: {e}"))?;
        let Message::Text(text) = msg else { continue };
        let frame: serde_json::Value =
            serde_json::from_str(text.as_str()).map_err(|e| format!("bad frame {text}: {e}"))?;
        match frame["message"].as_str() {
            Some("getUserData") => return Ok(ws),
            Some("fail") => return Err(format!("connection refused: {text}")),
            _ => continue,
        }
    }
}

/// `callgate_ws_connections` from `/metrics`, to confirm the server holds the sessions.
async fn ws_connections_gauge(http_port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut s = TcpStream::connect(("127.0.0.1", http_port)).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).await.ok()?;
        text.lines()
            .find(|l| l.starts_with("callgate_ws_connections"))
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_string)
    };
    tokio::time::timeout(Duration::from_secs(5), fetch).await.ok().flatten()
}
