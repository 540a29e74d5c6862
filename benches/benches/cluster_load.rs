//! What the cluster costs (issue 12, "Must show": a bounded load run; docs/benchmarks.md,
//! "Cluster cost"): the same load through one callgate node and through three cluster nodes
//! sharing one `nats-server` (Debian's, JetStream on), in one run, reported as CPU ratios.
//!
//! Each setup (`single`: one release `callgate` without `[cluster]`; `cluster`: three with
//! `[cluster] nats_url`) gets, in this order:
//! 1. `sessions`: SESSIONS WebSocket sessions logged in (app `quiet`: EchoApp, no hooks),
//!    round-robin over the nodes, held open to the end (each answers the server's pings);
//! 2. `idle`: IDLE_S seconds with those sessions and nothing else: the steady cost of being in
//!    the cluster (heartbeats that rewrite every object, the other nodes' watchers);
//! 3. `calls`: CALLS `/rest-api/call/startup` at RATE/s, round-robin over the nodes, to one sipp
//!    UAS (answer, BYE after HOLD_MS), waited for until every call ended (FINISH or FAILED,
//!    summed over the nodes' `/metrics`);
//! 4. `data`: DATA `/rest-api/data/send` to the sessions, each sent to the node **after** the
//!    session's owner (in the cluster every one is routed over NATS to its owner; on one node
//!    all are local), at most 64 in flight.
//!
//! CPU is user + system time from `/proc/<pid>/stat`: callgate's summed over its nodes, and the
//! nats-server's, per phase. The ratio cluster / single is the cluster's cost for the same work
//! (issue 12's target for calls: <= 1.15). Throughput cannot scale on a 2-core machine, and the
//! phases are not timed against each other: every phase's work is fixed and the CPU it took is
//! what is compared.
//!
//! Bounded: every phase has a deadline (calls: issue within 2 x CALLS / RATE s, drain 20 s;
//! data: 60 s). Environment: `CALLGATE_CLUSTER_SESSIONS` (1000), `CALLGATE_CLUSTER_IDLE_S` (20),
//! `CALLGATE_CLUSTER_CALLS` (3000), `CALLGATE_CLUSTER_RATE` (200), `CALLGATE_CLUSTER_HOLD_MS`
//! (500), `CALLGATE_CLUSTER_DATA` (3000). Run: `make load-cluster` (builds the release binary).
//! Without the release binary it prints SKIPPED and exits 0; without nats-server or sipp it
//! fails.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use callgate_benches::{
    callgate_bin, cores, cpu_secs, free_tcp, free_udp, http1, loadavg, metric, raise_nofile_limit, spawn_callgate,
    spawn_sipp_uas, wait_http_up, ChildGuard,
};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

const CLUSTER_NODES: usize = 3;
const DRAIN: Duration = Duration::from_secs(20);
const DATA_BOUND: Duration = Duration::from_secs(60);
const REST_IN_FLIGHT: usize = 64;

#[derive(Clone, Copy)]
struct Params {
    sessions: u64,
    idle_s: u64,
    calls: u64,
    rate: u64,
    hold_ms: u64,
    data: u64,
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let bin = match callgate_bin("cluster_load", "load-cluster") {
        Ok(b) => b,
        Err(true) => std::process::exit(1),
        Err(false) => return,
    };
    let p = Params {
        sessions: env_u64("CALLGATE_CLUSTER_SESSIONS", 1000),
        idle_s: env_u64("CALLGATE_CLUSTER_IDLE_S", 20),
        calls: env_u64("CALLGATE_CLUSTER_CALLS", 3000),
        rate: env_u64("CALLGATE_CLUSTER_RATE", 200).max(1),
        hold_ms: env_u64("CALLGATE_CLUSTER_HOLD_MS", 500),
        data: env_u64("CALLGATE_CLUSTER_DATA", 3000),
    };
    raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    if let Err(e) = rt.block_on(run(&bin, p)) {
        eprintln!("cluster_load: FAILED: {e}");
        std::process::exit(1);
    }
}

/// CPU seconds each phase took: callgate (all nodes) and nats-server.
#[derive(Debug, Default, Clone, Copy)]
struct Cpu {
    callgate: f64,
    nats: f64,
}

#[derive(Debug, Default)]
struct Outcome {
    setup: &'static str,
    nodes: usize,
    sessions: Cpu,
    idle: Cpu,
    calls: Cpu,
    data: Cpu,
    calls_ended_ok: u64,
    calls_failed: u64,
    startup_errors: u64,
    data_ok: u64,
    data_errors: u64,
}

struct Node {
    child: ChildGuard,
    ws: SocketAddr,
    http: SocketAddr,
}

async fn run(bin: &Path, p: Params) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("callgate-cluster-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    println!(
        "cluster_load: {} sessions, {} s idle, {} calls at {}/s (hold {} ms), {} data sends; callgate {}",
        p.sessions,
        p.idle_s,
        p.calls,
        p.rate,
        p.hold_ms,
        p.data,
        bin.display()
    );
    println!("machine: {} cores, load average {}", cores(), loadavg());
    let single = setup(bin, &dir, p, None).await?;
    let nats = Nats::start(&dir)?;
    let cluster = setup(bin, &dir, p, Some(&nats)).await?;
    report(&single, &cluster, p);
    if single.calls_failed + cluster.calls_failed + single.startup_errors + cluster.startup_errors > 0
        || single.data_errors + cluster.data_errors > 0
    {
        return Err(format!("some operations failed (see above); logs in {}", dir.display()));
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// A nats-server with JetStream on a free loopback port (its store in `dir`).
struct Nats {
    child: ChildGuard,
    url: String,
}

impl Nats {
    fn start(dir: &Path) -> Result<Nats, String> {
        let port = free_tcp()?;
        let store = dir.join("nats");
        let log = std::fs::File::create(dir.join("nats.log")).map_err(|e| e.to_string())?;
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(&store)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn nats-server (install it: `make deps`): {e}"))?;
        let until = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > until {
                return Err("nats-server did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Nats { child: ChildGuard(child), url: format!("nats://127.0.0.1:{port}") })
    }
}

fn node_toml(ws: u16, http: u16, media: u16, sip: u16, nats: Option<&str>) -> String {
    let cluster = nats.map(|u| format!("[cluster]\nnats_url = \"{u}\"\n")).unwrap_or_default();
    format!(
        "[server]\nws_bind = \"127.0.0.1:{ws}\"\nhttp_bind = \"127.0.0.1:{http}\"\n\
         [media]\nbind = \"127.0.0.1:{media}\"\n[sip]\nbind = \"127.0.0.1:{sip}\"\n\
         [registrar]\nenabled = false\n[limits]\nmax_sessions_per_ip = 100000\n[log]\nfilter = \"warn\"\n\
         [apps.quiet]\nurl = \"http://127.0.0.1:{http}/apps/EchoApp\"\nmethods = \"none\"\n{cluster}"
    )
}

async fn setup(bin: &Path, dir: &Path, p: Params, nats: Option<&Nats>) -> Result<Outcome, String> {
    let (name, n) = if nats.is_some() { ("cluster", CLUSTER_NODES) } else { ("single", 1) };
    let mut nodes = Vec::new();
    for i in 0..n {
        let (ws, http, media, sip) = (free_tcp()?, free_tcp()?, free_udp()?, free_udp()?);
        let cfg = node_toml(ws, http, media, sip, nats.map(|n| n.url.as_str()));
        let mut child = spawn_callgate(bin, dir, &format!("{name}-{i}"), &cfg)?;
        let http: SocketAddr = ([127, 0, 0, 1], http).into();
        wait_http_up(http, &mut child, Duration::from_secs(15)).await?;
        nodes.push(Node { child, ws: ([127, 0, 0, 1], ws).into(), http });
    }
    let pids: Vec<u32> = nodes.iter().map(|n| n.child.pid()).collect();
    let nats_pid = nats.map(|n| n.child.pid());
    let cpu = || Cpu { callgate: pids.iter().map(|p| cpu_secs(*p)).sum(), nats: nats_pid.map(cpu_secs).unwrap_or(0.0) };
    let delta = |a: Cpu, b: Cpu| Cpu { callgate: b.callgate - a.callgate, nats: b.nats - a.nats };
    let mut out = Outcome { setup: name, nodes: n, ..Outcome::default() };

    // 1. Sessions, held to the end.
    let c0 = cpu();
    let mut sessions = Vec::new();
    for i in 0..p.sessions as usize {
        let owner = i % n;
        sessions.push((owner, open_session(nodes[owner].ws).await?));
    }
    // Announced in the directory by the next heartbeats, before anything is routed to them.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let c1 = cpu();
    out.sessions = delta(c0, c1);

    // 2. Idle.
    tokio::time::sleep(Duration::from_secs(p.idle_s)).await;
    let c2 = cpu();
    out.idle = delta(c1, c2);

    // 3. Calls.
    let uas_port = free_udp()?;
    let _uas = spawn_sipp_uas(dir, uas_port, p.hold_ms, &[])?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ended0 = call_counts(&nodes).await?;
    let c3 = cpu();
    let errors = Arc::new(AtomicU64::new(0));
    let slots = Arc::new(tokio::sync::Semaphore::new(REST_IN_FLIGHT * 4));
    let t0 = Instant::now();
    let issue_until = t0 + Duration::from_secs_f64(2.0 * p.calls as f64 / p.rate as f64 + 1.0);
    let mut issued = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(2));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while issued < p.calls && Instant::now() < issue_until {
        tick.tick().await;
        let due = ((t0.elapsed().as_secs_f64() * p.rate as f64) as u64).min(p.calls);
        while issued < due {
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let http = nodes[issued as usize % n].http;
            let body = format!(
                r#"{{"callId":"{name}-{issued}","callee":"3001","hasAudio":"true","sipLogin":"load","sipDomain":"127.0.0.1","sipPort":"{uas_port}","appKey":"quiet"}}"#
            );
            let errors = errors.clone();
            tokio::spawn(async move {
                let _permit = permit;
                if !matches!(http1(http, "POST", "/rest-api/call/startup", &body).await, Ok(a) if a.status == 200) {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            });
            issued += 1;
        }
    }
    let _ = slots.acquire_many(REST_IN_FLIGHT as u32 * 4).await;
    out.startup_errors = errors.load(Ordering::Relaxed) + (p.calls - issued);
    let expected = issued - out.startup_errors.min(issued);
    let drain_until = Instant::now() + DRAIN;
    let ended = loop {
        let now = call_counts(&nodes).await?;
        let (ok, failed) = (now.0 - ended0.0, now.1 - ended0.1);
        if ok + failed >= expected || Instant::now() > drain_until {
            break (ok, failed);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let c4 = cpu();
    out.calls = delta(c3, c4);
    (out.calls_ended_ok, out.calls_failed) = ended;
    out.calls_failed += expected.saturating_sub(ended.0 + ended.1);

    // 4. Data to the sessions, each through the node after its owner.
    let ids: Vec<(usize, String)> = sessions.iter().map(|(o, s)| (*o, s.id.clone())).collect();
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let slots = Arc::new(tokio::sync::Semaphore::new(REST_IN_FLIGHT));
    let t5 = Instant::now();
    let c5 = cpu();
    for i in 0..p.data {
        if t5.elapsed() > DATA_BOUND {
            break;
        }
        let (owner, id) = &ids[i as usize % ids.len()];
        let http = nodes[(owner + 1) % n].http;
        let body = format!(r#"{{"sessionId":"{id}","operationId":"op-{i}","payload":{{"n":{i}}}}}"#);
        let permit = slots.clone().acquire_owned().await.map_err(|e| e.to_string())?;
        let (ok, bad) = (ok.clone(), bad.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match http1(http, "POST", "/rest-api/data/send", &body).await {
                Ok(a) if a.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                _ => bad.fetch_add(1, Ordering::Relaxed),
            };
        });
    }
    let _ = slots.acquire_many(REST_IN_FLIGHT as u32).await;
    let c6 = cpu();
    out.data = delta(c5, c6);
    out.data_ok = ok.load(Ordering::Relaxed);
    out.data_errors = p.data - out.data_ok;
    // Every data frame reached its session's socket (each reader counts what it got).
    let delivered: u64 = sessions.iter().map(|(_, s)| s.data.load(Ordering::Relaxed)).sum();
    if delivered < out.data_ok {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let delivered: u64 = sessions.iter().map(|(_, s)| s.data.load(Ordering::Relaxed)).sum();
    if delivered != out.data_ok {
        out.data_errors += out.data_ok.abs_diff(delivered);
        println!("{name}: {} data sends answered 200 but {delivered} frames reached the sessions", out.data_ok);
    }
    drop(sessions);
    drop(nodes);
    Ok(out)
}

/// (ended well, failed) calls summed over the nodes' `/metrics`.
async fn call_counts(nodes: &[Node]) -> Result<(u64, u64), String> {
    let (mut ok, mut failed) = (0, 0);
    for n in nodes {
        let t = http1(n.http, "GET", "/metrics", "").await?.body;
        ok += metric(&t, "callgate_call_statuses_total", &["status=\"FINISH\""]) as u64;
        failed += metric(&t, "callgate_call_statuses_total", &["status=\"FAILED\""]) as u64;
    }
    Ok((ok, failed))
}

/// An open session: its id, and how many `OnDataEvent`s its reader saw. Dropping it closes the
/// socket.
struct Session {
    id: String,
    data: Arc<AtomicU64>,
    _reader: AbortOnDrop,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn open_session(ws: SocketAddr) -> Result<Session, String> {
    let (mut socket, _) =
        tokio_tungstenite::connect_async(format!("ws://{ws}/")).await.map_err(|e| format!("ws connect {ws}: {e}"))?;
    let login =
        r#"{"message":"connection","data":[{"appKey":"quiet","mediaProviders":["WebRTC"],"clientVersion":"2.0"}]}"#;
    socket.send(Message::Text(login.into())).await.map_err(|e| e.to_string())?;
    let id = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(m)) = socket.next().await {
            if let Message::Text(t) = m {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
                if v["message"] == "getUserData" {
                    return v["data"][0]["sessionId"].as_str().map(str::to_owned).ok_or("no sessionId".to_string());
                }
            }
        }
        Err("closed before getUserData".to_string())
    })
    .await
    .map_err(|_| "no getUserData within 10 s".to_string())??;
    let data = Arc::new(AtomicU64::new(0));
    let seen = data.clone();
    let reader = tokio::spawn(async move {
        while let Some(Ok(m)) = socket.next().await {
            if let Message::Text(t) = m {
                if t.as_str().contains(r#""message":"ping""#) {
                    let _ = socket.send(Message::Text(r#"{"message":"pong","data":[null]}"#.into())).await;
                } else if t.as_str().contains(r#""message":"OnDataEvent""#) {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    Ok(Session { id, data, _reader: AbortOnDrop(reader) })
}

fn report(single: &Outcome, cluster: &Outcome, p: Params) {
    println!();
    for o in [single, cluster] {
        println!(
            "{} ({} node{}): calls ended {} failed {} startup errors {}; data 200 {} errors {}",
            o.setup,
            o.nodes,
            if o.nodes == 1 { "" } else { "s" },
            o.calls_ended_ok,
            o.calls_failed,
            o.startup_errors,
            o.data_ok,
            o.data_errors
        );
    }
    println!();
    println!("| phase | work | single node, callgate CPU | 3 nodes, callgate CPU (sum) | ratio | nats-server CPU | ratio with NATS |");
    println!("|---|---|---|---|---|---|---|");
    let row = |phase: &str, work: String, per: f64, unit: &str, s: Cpu, c: Cpu| {
        let ratio = c.callgate / s.callgate.max(1e-9);
        let with_nats = (c.callgate + c.nats) / s.callgate.max(1e-9);
        println!(
            "| {phase} | {work} | {:.1} {unit} | {:.1} {unit} | {ratio:.2} | {:.1} {unit} | {with_nats:.2} |",
            s.callgate * per,
            c.callgate * per,
            c.nats * per,
        );
    };
    let per = |n: u64| 1e6 / n.max(1) as f64;
    row("sessions", format!("{} logins", p.sessions), per(p.sessions), "µs/login", single.sessions, cluster.sessions);
    row(
        "idle",
        format!("{} sessions x {} s", p.sessions, p.idle_s),
        per(p.sessions * p.idle_s),
        "µs/session-s",
        single.idle,
        cluster.idle,
    );
    row(
        "calls",
        format!("{} REST calls, hold {} ms", p.calls, p.hold_ms),
        per(p.calls),
        "µs/call",
        single.calls,
        cluster.calls,
    );
    row(
        "data",
        format!("{} /data/send (cluster: all routed)", p.data),
        per(p.data),
        "µs/send",
        single.data,
        cluster.data,
    );
}
