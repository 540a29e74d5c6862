//! Overload (issue 11 item 4; docs/benchmarks.md, "Overload"): what a 10x over-capacity flood
//! does to the requests callgate admits, for `/rest-api/call/startup` and for WebSocket
//! connect + login, each against its own unloaded baseline measured in the same run.
//!
//! One release `callgate` child (`CALLGATE_BIN`, default `<target>/release/callgate`) on free
//! 127.0.0.1 ports with `[limits] max_calls = CAPACITY` and `max_sessions = CAPACITY`, `[log]
//! filter = "warn"`, hooks to the built-in EchoApp (answered in process), and a sipp UAS
//! (`tests/sipp/uas_answer_remote_bye.xml`) that answers and hangs up `HOLD` later. A call or a
//! session holds its slot for `HOLD` (1 s), so the capacity is `CAPACITY / HOLD` = 50 new calls
//! (sessions) per second.
//!
//! For each of the two kinds, `CALLGATE_OVERLOAD_ROUNDS` (3) rounds of two phases of
//! `CALLGATE_OVERLOAD_SECONDS` (10 s) each, alternating (so that the machine's noise falls on
//! both; the per-round ratios show how much it moves):
//! 1. unloaded: a steady stream at `STEADY` (20/s, 40 % of the capacity), open loop;
//! 2. flood: the same steady stream, plus a flood at 10x the capacity (500/s) from another
//!    client (for WebSockets from another address, 127.0.0.2, so that the per-address limit is
//!    not what refuses it).
//!
//! A call request is one HTTP/1.1 exchange on a fresh connection (`Connection: close`); its
//! latency runs from `connect` to the end of the answer. A session is a TCP connect, the
//! WebSocket handshake, the `connection` message and its answer: `getUserData` (admitted; the
//! session then stays open for `HOLD` and is closed by the client) or `fail` + a close frame.
//! Refusals must be clear: `503` with `Retry-After` for the REST API, `fail
//! {apiMethod: ConnectionStatusEvent, info: "Too many sessions ..."}` and close code 1013 for a
//! WebSocket. Anything else (another status, a timeout, a refused connection) is an error.
//!
//! Reported per round: the ratio of the flood phase's p99 to the unloaded phase's p99 (admitted
//! requests: all of them, and those of the steady stream) and its median over the rounds; pooled
//! over the rounds: admitted, refused, errors, p50/p99 of admitted requests and of refusals. The
//! refusals the clients saw must equal callgate's `callgate_admission_refused_total`. The target (ratio <= 2) is reported, not asserted:
//! the machine is small and shared, and this process drives the flood on the same two cores.
//! The exit status is 1 when callgate crashed or stopped answering `/metrics`, when a request
//! got an unclear answer or none, when a flood was not refused at all, or when the unloaded
//! phase saw a refusal (the capacity would then be wrong).
//!
//! Bounded: 2 x 3 x 2 phases of 10 s, each followed by at most 20 s of drain (about 2.5 min in
//! all). `CALLGATE_OVERLOAD_KEEP=1` keeps the callgate log. Run: `make overload` (builds the release binary first).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callgate_benches::{
    cores, cpu_secs, free_tcp, free_udp, http1, loadavg, metric, percentile, spawn_callgate, spawn_sipp_uas,
    wait_http_up, ChildGuard,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

const CAPACITY: u64 = 50;
const HOLD: Duration = Duration::from_secs(1);
const STEADY: u64 = 20;
const FLOOD_FACTOR: u64 = 10;
/// No request may take longer than this (an error otherwise).
const REQUEST_BOUND: Duration = Duration::from_secs(10);
const DRAIN: Duration = Duration::from_secs(20);

fn main() {
    let bin = match callgate_benches::callgate_bin("overload", "overload") {
        Ok(b) => b,
        Err(true) => std::process::exit(1),
        Err(false) => return,
    };
    let nofile = callgate_benches::raise_nofile_limit();
    let phase = std::env::var("CALLGATE_OVERLOAD_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v| *v > 0)
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(10));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let rounds =
        std::env::var("CALLGATE_OVERLOAD_ROUNDS").ok().and_then(|v| v.parse().ok()).filter(|v| *v > 0).unwrap_or(3);
    match rt.block_on(run(&bin, phase, rounds, nofile)) {
        Ok(0) => println!("overload: PASSED"),
        Ok(n) => {
            eprintln!("overload: FAILED: {n} problem(s), see above");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("overload: FAILED: {e}");
            std::process::exit(1);
        }
    }
}

#[derive(Debug, Clone)]
enum Outcome {
    Admitted,
    Refused,
    Error(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Call,
    Session,
}

#[derive(Clone)]
struct Target {
    http: SocketAddr,
    ws: SocketAddr,
    sip_port: u16,
}

/// One `/call/startup`: 200 admitted, 503 with `Retry-After` refused, anything else an error.
async fn startup(t: &Target, id: &str) -> Outcome {
    let body = json!({"callId": id, "callee": "3001", "hasAudio": "true", "sipLogin": "load",
                      "sipDomain": "127.0.0.1", "sipPort": t.sip_port.to_string()})
    .to_string();
    match tokio::time::timeout(REQUEST_BOUND, http1(t.http, "POST", "/rest-api/call/startup", &body)).await {
        Err(_) => Outcome::Error("no answer in time".into()),
        Ok(Err(e)) => Outcome::Error(e),
        Ok(Ok(a)) if a.status == 200 => Outcome::Admitted,
        Ok(Ok(a)) if a.status == 503 && a.retry_after.is_some() && a.body.contains("limits.max_calls") => {
            Outcome::Refused
        }
        Ok(Ok(a)) => Outcome::Error(format!("{} (Retry-After {:?}) {}", a.status, a.retry_after, a.body)),
    }
}

/// One session from `from`: admitted (`getUserData`; kept open for `HOLD` in the background),
/// refused (`fail` "Too many sessions" then close 1013), or an error.
async fn session(t: &Target, from: &str) -> Outcome {
    match tokio::time::timeout(REQUEST_BOUND, session_inner(t.ws, from)).await {
        Err(_) => Outcome::Error("no answer in time".into()),
        Ok(o) => o,
    }
}

async fn session_inner(ws_addr: SocketAddr, from: &str) -> Outcome {
    let sock =
        match TcpSocket::new_v4().and_then(|s| s.bind(format!("{from}:0").parse().expect("an address")).map(|()| s)) {
            Ok(s) => s,
            Err(e) => return Outcome::Error(format!("bind {from}: {e}")),
        };
    let tcp = match sock.connect(ws_addr).await {
        Ok(t) => t,
        Err(e) => return Outcome::Error(format!("connect: {e}")),
    };
    let _ = tcp.set_nodelay(true);
    let (mut ws, _) = match tokio_tungstenite::client_async(
        format!("ws://{ws_addr}/"),
        tokio_tungstenite::MaybeTlsStream::Plain(tcp),
    )
    .await
    {
        Ok(w) => w,
        Err(e) => return Outcome::Error(format!("handshake: {e}")),
    };
    let login = json!({"message": "connection", "data": [{"appKey": "defaultApp", "clientVersion": "2.0"}]});
    if let Err(e) = ws.send(Message::Text(login.to_string().into())).await {
        return Outcome::Error(format!("send: {e}"));
    }
    let mut fail_info = None;
    while let Some(m) = ws.next().await {
        match m {
            Ok(Message::Text(t)) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                match v["message"].as_str() {
                    Some("getUserData") => {
                        tokio::spawn(async move {
                            tokio::time::sleep(HOLD).await;
                            let _ = ws.close(None).await;
                            // Read to the server's close (bounded) so that the session ends cleanly.
                            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                                while ws.next().await.is_some() {}
                            })
                            .await;
                        });
                        return Outcome::Admitted;
                    }
                    Some("fail") => fail_info = Some(v["data"][0].clone()),
                    _ => {}
                }
            }
            Ok(Message::Close(frame)) => {
                let clear = fail_info.as_ref().is_some_and(|f| {
                    f["apiMethod"] == "ConnectionStatusEvent"
                        && f["info"].as_str().is_some_and(|i| i.contains("Too many sessions"))
                });
                let code = frame.as_ref().map(|f| f.code);
                return if clear && code == Some(CloseCode::Again) {
                    Outcome::Refused
                } else {
                    Outcome::Error(format!("closed {code:?} after fail {fail_info:?}"))
                };
            }
            Ok(_) => {}
            Err(e) => return Outcome::Error(format!("read: {e}")),
        }
    }
    Outcome::Error(format!("closed without a close frame (fail {fail_info:?})"))
}

type Samples = Arc<Mutex<Vec<(Outcome, f64)>>>;

/// Issues `rate` requests per second for `len`, open loop; returns the (outcome, ms) of each.
async fn stream(
    t: Target,
    kind: Kind,
    rate: u64,
    len: Duration,
    tag: &'static str,
    from: &'static str,
) -> Vec<(Outcome, f64)> {
    let out: Samples = Arc::new(Mutex::new(Vec::new()));
    let n = rate * len.as_secs();
    let t0 = Instant::now();
    let mut issued = 0u64;
    let mut tasks = Vec::with_capacity(n as usize);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while issued < n {
        tick.tick().await;
        let due = ((t0.elapsed().as_secs_f64() * rate as f64) as u64).min(n);
        while issued < due {
            let (t, out) = (t.clone(), out.clone());
            let id = format!("{tag}-{issued}");
            tasks.push(tokio::spawn(async move {
                let start = Instant::now();
                let o = match kind {
                    Kind::Call => startup(&t, &id).await,
                    Kind::Session => session(&t, from).await,
                };
                out.lock().unwrap().push((o, start.elapsed().as_secs_f64() * 1000.0));
            }));
            issued += 1;
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    let v = out.lock().unwrap().clone();
    v
}

#[derive(Default)]
struct Stats {
    sent: usize,
    admitted: Vec<f64>,
    refused: Vec<f64>,
    errors: Vec<String>,
}

fn stats(samples: &[(Outcome, f64)]) -> Stats {
    let mut s = Stats { sent: samples.len(), ..Stats::default() };
    for (o, ms) in samples {
        match o {
            Outcome::Admitted => s.admitted.push(*ms),
            Outcome::Refused => s.refused.push(*ms),
            Outcome::Error(e) => s.errors.push(e.clone()),
        }
    }
    s
}

/// Waits (bounded) until callgate holds no call and no session.
async fn drain(http: SocketAddr) {
    let until = Instant::now() + DRAIN;
    while Instant::now() < until {
        if let Ok(a) = http1(http, "GET", "/metrics", "").await {
            if metric(&a.body, "callgate_calls", &[]) == 0.0
                && metric(&a.body, "callgate_admitted_sessions", &[]) == 0.0
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn refused_total(http: SocketAddr, what: &str) -> f64 {
    match http1(http, "GET", "/metrics", "").await {
        Ok(a) => metric(&a.body, "callgate_admission_refused_total", &[&format!("what=\"{what}\"")]),
        Err(_) => f64::NAN,
    }
}

struct Row {
    kind: &'static str,
    phase: &'static str,
    who: &'static str,
    s: Stats,
    base_p99: Option<f64>,
}

async fn run(bin: &Path, phase: Duration, rounds: u32, nofile: libc::rlim_t) -> Result<usize, String> {
    let dir = std::env::temp_dir().join(format!("callgate-overload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (ws, http, sip, media, uas_port) = (free_tcp()?, free_tcp()?, free_udp()?, free_udp()?, free_udp()?);
    let _uas = spawn_sipp_uas(&dir, uas_port, HOLD.as_millis() as u64, &[])?;
    let cfg = format!(
        "[server]\nws_bind = \"127.0.0.1:{ws}\"\nhttp_bind = \"127.0.0.1:{http}\"\n\
         [media]\nbind = \"127.0.0.1:{media}\"\n[sip]\nbind = \"127.0.0.1:{sip}\"\n[log]\nfilter = \"warn\"\n\
         [limits]\nmax_calls = {CAPACITY}\nmax_sessions = {CAPACITY}\nmax_sessions_per_ip = {CAPACITY}\n"
    );
    let mut callgate: ChildGuard = spawn_callgate(bin, &dir, "callgate", &cfg)?;
    let pid = callgate.pid();
    let t = Target {
        http: format!("127.0.0.1:{http}").parse().map_err(|e| format!("{e}"))?,
        ws: format!("127.0.0.1:{ws}").parse().map_err(|e| format!("{e}"))?,
        sip_port: uas_port,
    };
    wait_http_up(t.http, &mut callgate, Duration::from_secs(15)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let flood = CAPACITY * FLOOD_FACTOR;
    println!(
        "overload: capacity {CAPACITY} calls and {CAPACITY} sessions at once, each held {} ms ({CAPACITY}/s); steady {STEADY}/s, \
         flood {flood}/s, {} s per phase, {rounds} rounds; nofile {nofile}, callgate {}",
        HOLD.as_millis(),
        phase.as_secs(),
        bin.display()
    );
    println!("machine: {} cores, load average {}", cores(), loadavg());
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    let cpu0 = cpu_secs(pid);
    // Per kind: ROUNDS alternations of unloaded and flood (the machine's noise moves p99 between
    // phases; alternating spreads it over both, and the per-round ratios show how much it moves).
    let mut round_ratios: Vec<(&'static str, Vec<(f64, f64)>)> = Vec::new();
    for (kind, name, what) in
        [(Kind::Call, "/call/startup", "calls"), (Kind::Session, "WebSocket connect + login", "sessions")]
    {
        let (mut base, mut steady, mut flooding) = (Stats::default(), Stats::default(), Stats::default());
        let mut ratios = Vec::new();
        for round in 0..rounds {
            // Unloaded.
            let b = stats(&stream(t.clone(), kind, STEADY, phase, "base", "127.0.0.1").await);
            drain(t.http).await;
            let refused0 = refused_total(t.http, what).await;
            // Flood beside the steady stream.
            let st = tokio::spawn(stream(t.clone(), kind, STEADY, phase, "steady", "127.0.0.1"));
            let fl = tokio::spawn(stream(t.clone(), kind, flood, phase, "flood", "127.0.0.2"));
            let st = stats(&st.await.map_err(|e| e.to_string())?);
            let fl = stats(&fl.await.map_err(|e| e.to_string())?);
            drain(t.http).await;
            let refused_counted = refused_total(t.http, what).await - refused0;
            if !b.refused.is_empty() || !b.errors.is_empty() {
                problems.push(format!(
                    "{name}, round {round}, unloaded: {} refused, errors {:?}",
                    b.refused.len(),
                    &b.errors[..b.errors.len().min(5)]
                ));
            }
            for (who, s) in [("steady", &st), ("flood", &fl)] {
                if !s.errors.is_empty() {
                    problems.push(format!(
                        "{name}, round {round}, flood phase, {who}: {} unclear answers, e.g. {:?}",
                        s.errors.len(),
                        &s.errors[..s.errors.len().min(5)]
                    ));
                }
            }
            if fl.refused.is_empty() {
                problems.push(format!("{name}, round {round}: the flood was never refused"));
            }
            let refused_seen = (st.refused.len() + fl.refused.len()) as f64;
            if refused_counted != refused_seen {
                problems.push(format!(
                    "{name}, round {round}: {refused_seen} refusals seen, {refused_counted} counted by callgate"
                ));
            }
            let base_p99 = percentile(&mut b.admitted.clone(), 99.0);
            let all_admitted: Vec<f64> = st.admitted.iter().chain(&fl.admitted).copied().collect();
            let r_all = percentile(&mut all_admitted.clone(), 99.0) / base_p99.max(1e-9);
            let r_steady = percentile(&mut st.admitted.clone(), 99.0) / base_p99.max(1e-9);
            println!(
                "{name}, round {}: unloaded p99 {base_p99:.2} ms; flood: admitted {} (steady {}), refused {} \
                 (callgate counted {refused_counted}), p99 admitted {:.2}x unloaded (steady's {:.2}x)",
                round + 1,
                all_admitted.len(),
                st.admitted.len(),
                refused_seen,
                r_all,
                r_steady
            );
            ratios.push((r_all, r_steady));
            for (acc, x) in [(&mut base, b), (&mut steady, st), (&mut flooding, fl)] {
                acc.sent += x.sent;
                acc.admitted.extend(x.admitted);
                acc.refused.extend(x.refused);
                acc.errors.extend(x.errors);
            }
        }
        let base_p99 = percentile(&mut base.admitted.clone(), 99.0);
        let mut all = Stats { sent: steady.sent + flooding.sent, ..Stats::default() };
        all.admitted = steady.admitted.iter().chain(&flooding.admitted).copied().collect();
        all.refused = steady.refused.iter().chain(&flooding.refused).copied().collect();
        all.errors = steady.errors.iter().chain(&flooding.errors).cloned().collect();
        rows.push(Row { kind: name, phase: "unloaded", who: "steady", s: base, base_p99: None });
        rows.push(Row { kind: name, phase: "10x flood", who: "steady", s: steady, base_p99: Some(base_p99) });
        rows.push(Row { kind: name, phase: "10x flood", who: "flood", s: flooding, base_p99: Some(base_p99) });
        rows.push(Row { kind: name, phase: "10x flood", who: "all", s: all, base_p99: Some(base_p99) });
        round_ratios.push((name, ratios));
    }
    let cpu = cpu_secs(pid) - cpu0;
    let alive = callgate.alive() && matches!(http1(t.http, "GET", "/metrics", "").await, Ok(a) if a.status == 200);
    if !alive {
        problems.push("callgate is not alive (or /metrics does not answer) after the floods".into());
    }
    println!();
    println!("| requests | phase | client | sent | admitted | refused (clear) | errors | admitted p50 ms | admitted p99 ms | p99 / unloaded p99 | refusal p50 ms | refusal p99 ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut ratios = Vec::new();
    for r in &mut rows {
        let p50 = percentile(&mut r.s.admitted, 50.0);
        let p99 = percentile(&mut r.s.admitted, 99.0);
        let ratio = r.base_p99.filter(|_| !r.s.admitted.is_empty()).map(|b| p99 / b.max(1e-9));
        if let (Some(x), "steady" | "all") = (ratio, r.who) {
            ratios.push((r.kind, r.who, x));
        }
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {:.2} | {:.2} |",
            r.kind,
            r.phase,
            r.who,
            r.s.sent,
            r.s.admitted.len(),
            r.s.refused.len(),
            r.s.errors.len(),
            p50,
            p99,
            ratio.map(|x| format!("{x:.2}x")).unwrap_or_else(|| "-".into()),
            percentile(&mut r.s.refused, 50.0),
            percentile(&mut r.s.refused, 99.0)
        );
    }
    println!();
    for (kind, rs) in &round_ratios {
        let mut all: Vec<f64> = rs.iter().map(|r| r.0).collect();
        let mut steady: Vec<f64> = rs.iter().map(|r| r.1).collect();
        let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}x")).collect::<Vec<_>>().join(", ");
        println!(
            "{kind}: p99 of admitted requests / unloaded p99 per round: all {} (median {:.2}x), steady {} (median {:.2}x)",
            list(&all),
            percentile(&mut all, 50.0),
            list(&steady),
            percentile(&mut steady, 50.0)
        );
    }
    for (kind, who, x) in &ratios {
        println!(
            "target p99 of admitted requests ({who}, pooled over the rounds) within 2x of unloaded, {kind}: {x:.2}x ({})",
            if *x <= 2.0 { "met" } else { "MISSED" }
        );
    }
    println!(
        "callgate: alive and answering /metrics after the floods: {}; CPU {cpu:.1} s over the run; load average {}",
        if alive { "yes" } else { "NO" },
        loadavg()
    );
    for p in &problems {
        eprintln!("PROBLEM: {p}");
    }
    drop(callgate);
    if std::env::var_os("CALLGATE_OVERLOAD_KEEP").is_some() || !problems.is_empty() {
        println!("callgate log kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(problems.len())
}
