//! Calls per second through callgate, started over REST (`/rest-api/call/startup`), to a sipp
//! UAS, beside the same load with hooks off and beside sipp UAC -> sipp UAS at the same rate,
//! all in one run (issue 5, "Load"; docs/benchmarks.md, "Call load").
//!
//! One release `callgate` child (`CALLGATE_BIN`, default `<target>/release/callgate`) on free
//! 127.0.0.1 ports, `[log] filter = "warn"`, `[hooks] echo_fast_path = false`, two apps:
//! - `hooked`: the built-in EchoApp **over HTTP** (`http://127.0.0.1:<http port>/apps/EchoApp`),
//!   every method enabled: each call POSTs `call` and four `CallStatusEvent`s (TRYING, RING,
//!   ESTABLISHED, FINISH) to callgate's own HTTP port and waits for the echo;
//! - `unhooked`: the same URL with `methods = "none"` (no hook is sent).
//!
//! Phases, in this order, each a fresh sipp UAS (`tests/sipp/uas_answer_remote_bye.xml -d HOLD`:
//! 100, 180, 200, then BYE after HOLD ms):
//! 1. `sipp UAC -> sipp UAS` (the baseline): `benches/sipp/uac_remote_bye.xml -r RATE -m N`;
//! 2. `callgate, hooks off`: this process POSTs N `/call/startup` (app `unhooked`) at RATE/s,
//!    open loop (hyper-util, keep-alive, up to 1,024 in flight);
//! 3. `callgate, hooks on`: the same with app `hooked`;
//! 4. `callgate, hooks on, EchoApp in a 2nd process`: app `remote`, whose URL is the EchoApp of a
//!    second `callgate` child (so the backend's side of each hook is not callgate's CPU; it is
//!    reported as "backend CPU").
//!
//! Counting: callgate's `/metrics` (`callgate_call_statuses_total{status=...}`, deltas per
//! phase) for ESTABLISHED/FAILED/FINISH, the HTTP status of every startup, and sipp's own
//! `-trace_stat` CSV (`SuccessfulCall(C)`, `FailedCall(C)`) as an independent count. A call
//! counts as failed unless it reached ESTABLISHED. The hook counters
//! (`callgate_hook_requests_total`) prove the hooks really went over HTTP in phase 3 and not at
//! all in phase 2.
//!
//! Rate = calls that completed / (time of the last completion - first start - HOLD): the
//! same definition for all phases; in callgate's phases a completion is a call's FINISH or a
//! hook's end, whichever is later (under load the hooks may lag behind the calls, and a rate
//! whose hooks are still queued is not sustained). Times come from callgate's `/metrics`
//! polled every 50 ms, and for sipp from the UAC's `-trace_stat` rows, one per second, so the
//! baseline's rate is within ~5 % at 20 s. Hook errors (any outcome but `ok` and `not_called`)
//! are counted and reported. CPU: user+system time of callgate, of the sipp UAS (and UAC), and
//! of this driver, from `/proc/<pid>/stat`; context switches of callgate's threads from
//! `/proc/<pid>/task/*/status`.
//!
//! Bounded: N = RATE x SECONDS calls per phase (defaults 1,000/s x 20 s), issuing stops at
//! 2 x SECONDS, draining waits at most 20 s more. Environment: `CALLGATE_LOAD_RATE`,
//! `CALLGATE_LOAD_SECONDS`, `CALLGATE_LOAD_HOLD_MS` (500); `CALLGATE_LOAD_KEEP=1` keeps the
//! callgate log and sipp's statistics.
//!
//! Run: `make load-calls` (builds the release binary first). Without a release binary and
//! without `CALLGATE_BIN`, it prints SKIPPED and exits 0 (so `cargo bench` as a whole runs);
//! without sipp it fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const IN_FLIGHT: usize = 1024;
/// sipp's socket buffers (its default is 64 KiB, which overflows under bursts at these rates).
const SIPP_BUFFER: &str = "4194304";
const DRAIN: Duration = Duration::from_secs(20);
/// Hook counters unchanged this long (and every expected hook over): the phase is done.
const HOOKS_QUIET: Duration = Duration::from_millis(200);
/// Hook counters unchanged this long with hooks still missing: stop waiting for them.
const HOOKS_GIVE_UP: Duration = Duration::from_secs(5);

/// Kills and reaps a child whatever happens.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[derive(Clone, Copy)]
struct Params {
    rate: u64,
    seconds: u64,
    hold_ms: u64,
}

impl Params {
    fn calls(&self) -> u64 {
        self.rate * self.seconds
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).filter(|v| *v > 0).unwrap_or(default)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn main() {
    let (bin, explicit) = match std::env::var_os("CALLGATE_BIN") {
        Some(p) => (PathBuf::from(p), true),
        None => {
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
            (target.join("release/callgate"), false)
        }
    };
    if !bin.exists() {
        if explicit {
            eprintln!("call_load: CALLGATE_BIN={} does not exist", bin.display());
            std::process::exit(1);
        }
        eprintln!(
            "call_load: SKIPPED: {} does not exist; run `make load-calls` (builds it) or set CALLGATE_BIN",
            bin.display()
        );
        return;
    }
    let p = Params {
        rate: env_u64("CALLGATE_LOAD_RATE", 1000),
        seconds: env_u64("CALLGATE_LOAD_SECONDS", 20),
        hold_ms: env_u64("CALLGATE_LOAD_HOLD_MS", 500),
    };
    let nofile = callgate_benches::raise_nofile_limit();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    match rt.block_on(run(&bin, p, nofile)) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("call_load: FAILED: {e}");
            std::process::exit(1);
        }
    }
}

/// What one phase measured.
#[derive(Debug, Default)]
struct Outcome {
    name: &'static str,
    offered: u64,
    established: u64,
    failed: u64,
    rate: f64,
    issue_secs: f64,
    http_errors: u64,
    sipp_ok: u64,
    sipp_failed: u64,
    cpu_callgate: f64,
    cpu_sipp: f64,
    cpu_driver: f64,
    hooks_http: u64,
    hooks_not_called: u64,
    /// Hooks that ended in an interaction error (timeout, refused connection, queue full, ...).
    hook_errors: u64,
    /// Datagrams the kernel dropped on callgate's SIP socket (full receive buffer).
    sip_drops: u64,
    /// CPU seconds of the separate backend process (phase 4).
    cpu_backend: f64,
    /// Context switches of callgate's threads (voluntary + involuntary): each is a worker that
    /// parked and was woken again, the main cost of hand-offs between tasks (docs/benchmarks.md).
    switches_callgate: u64,
}

/// One callgate phase: the app its calls use, and the processes to account.
struct Phase {
    app: &'static str,
    name: &'static str,
    pid: u32,
    sip_port: u16,
    backend_pid: Option<u32>,
}

/// Starts a callgate child with `cfg` (logs to `<dir>/<name>.log`).
fn spawn_callgate(bin: &Path, dir: &Path, name: &str, cfg: &str) -> Result<ChildGuard, String> {
    let cfg_path = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg_path, cfg).map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(&cfg_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    Ok(ChildGuard(child))
}

impl Outcome {
    fn failed_pct(&self) -> f64 {
        100.0 * self.failed as f64 / self.offered.max(1) as f64
    }
}

async fn run(bin: &Path, p: Params, nofile: libc::rlim_t) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("callgate-call-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let (ws, http, sip, media) = (free_tcp()?, free_tcp()?, free_udp()?, free_udp()?);
    // The backend of phase 4: a second callgate serving only its EchoApp.
    let (ws2, http2, media2) = (free_tcp()?, free_tcp()?, free_udp()?);
    let backend_cfg = format!(
        "[server]\nws_bind = \"127.0.0.1:{ws2}\"\nhttp_bind = \"127.0.0.1:{http2}\"\n\
         [media]\nbind = \"127.0.0.1:{media2}\"\n[log]\nfilter = \"warn\"\n"
    );
    let backend = spawn_callgate(bin, &dir, "backend", &backend_cfg)?;
    let backend_pid = backend.0.id();
    let cfg = format!(
        "[server]\nws_bind = \"127.0.0.1:{ws}\"\nhttp_bind = \"127.0.0.1:{http}\"\n\
         [hooks]\necho_fast_path = false\n[media]\nbind = \"127.0.0.1:{media}\"\n\
         [sip]\nbind = \"127.0.0.1:{sip}\"\n[log]\nfilter = \"warn\"\n\
         [apps.hooked]\nurl = \"http://127.0.0.1:{http}/apps/EchoApp\"\n\
         [apps.unhooked]\nurl = \"http://127.0.0.1:{http}/apps/EchoApp\"\nmethods = \"none\"\n\
         [apps.remote]\nurl = \"http://127.0.0.1:{http2}/apps/EchoApp\"\n"
    );
    let callgate = spawn_callgate(bin, &dir, "callgate", &cfg)?;
    let pid = callgate.0.id();
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(IN_FLIGHT)
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http();
    let base = format!("http://127.0.0.1:{http}");
    let up = Instant::now();
    for b in [base.clone(), format!("http://127.0.0.1:{http2}")] {
        while get(&client, &format!("{b}/metrics")).await.is_err() {
            if up.elapsed() > Duration::from_secs(10) {
                return Err(format!("callgate did not serve {b}/metrics within 10 s; see {}", dir.display()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    println!(
        "call_load: {} calls/s x {} s per phase ({} calls), hold {} ms, nofile {nofile}, callgate {}",
        p.rate,
        p.seconds,
        p.calls(),
        p.hold_ms,
        bin.display()
    );
    println!("machine: {} cores, load average {}", cores(), loadavg());
    let baseline = sipp_baseline(p, &dir).await?;
    report(&baseline, None);
    let ph = |app, name| Phase { app, name, pid, sip_port: sip, backend_pid: None };
    let off = callgate_phase(p, &dir, &client, &base, ph("unhooked", "callgate, hooks off")).await?;
    report(&off, Some(&baseline));
    let on = callgate_phase(p, &dir, &client, &base, ph("hooked", "callgate, hooks on (EchoApp over HTTP)")).await?;
    report(&on, Some(&baseline));
    let remote_phase =
        Phase { backend_pid: Some(backend_pid), ..ph("remote", "callgate, hooks on (EchoApp in a 2nd process)") };
    let remote = callgate_phase(p, &dir, &client, &base, remote_phase).await?;
    report(&remote, Some(&baseline));
    drop(backend);
    println!();
    println!("| phase | offered | established | failed % | calls/s | vs baseline | caller CPU µs/call (callgate; sipp UAC in the baseline) | backend CPU µs/call | sipp UAS CPU µs/call | driver CPU µs/call | hooks answered over HTTP | hook errors | context switches/call (callgate; sipp UAC in the baseline) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for o in [&baseline, &off, &on, &remote] {
        println!(
            "| {} | {} | {} | {:.3} | {:.0} | {:.2}x | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} | {:.1} |",
            o.name,
            o.offered,
            o.established,
            o.failed_pct(),
            o.rate,
            o.rate / baseline.rate.max(1e-9),
            o.cpu_callgate * 1e6 / o.established.max(1) as f64,
            o.cpu_backend * 1e6 / o.established.max(1) as f64,
            o.cpu_sipp * 1e6 / o.established.max(1) as f64,
            o.cpu_driver * 1e6 / o.established.max(1) as f64,
            o.hooks_http,
            o.hook_errors,
            o.switches_callgate as f64 / o.established.max(1) as f64
        );
    }
    let cost_rate = 100.0 * (off.rate - on.rate) / off.rate.max(1e-9);
    let per_call = |o: &Outcome| o.cpu_callgate / o.established.max(1) as f64;
    let cost_cpu = 100.0 * (per_call(&on) - per_call(&off)) / per_call(&on).max(1e-12);
    println!();
    println!("hook cost (rate)  = (rate off - rate on) / rate off = {cost_rate:.1} %");
    println!("hook cost (CPU)   = callgate CPU per call: on {:.1} µs, off {:.1} µs; share of the hooked call's CPU spent on hooks = {cost_cpu:.1} %",
        per_call(&on) * 1e6, per_call(&off) * 1e6);
    let cost_remote = 100.0 * (per_call(&remote) - per_call(&off)) / per_call(&remote).max(1e-12);
    println!(
        "hook cost, backend in its own process: callgate CPU per call {:.1} µs (+{:.1} µs, {cost_remote:.1} % of it), \
         backend {:.1} µs per call; rate (off - remote) / off = {:.1} %",
        per_call(&remote) * 1e6,
        (per_call(&remote) - per_call(&off)) * 1e6,
        remote.cpu_backend * 1e6 / remote.established.max(1) as f64,
        100.0 * (off.rate - remote.rate) / off.rate.max(1e-9)
    );
    // The measured rate cannot exceed the offered one; 1 % is the resolution of the
    // completion timestamps (50 ms polls over a 20 s phase, plus the last call's BYE).
    let reached = |o: &Outcome| o.rate >= 0.99 * o.offered as f64 / p.seconds as f64;
    if reached(&on) && reached(&off) {
        println!(
            "both callgate phases carried the offered rate: the rate-based hook cost only says the hooks did not \
             limit it at {} calls/s; raise CALLGATE_LOAD_RATE past saturation to compare the maximum rates",
            p.rate
        );
    }
    println!(
        "targets: >= 1000 calls/s ({}), < 0.1 % failed calls and hook errors ({}), hook cost < 20 % ({})",
        if on.rate >= 990.0 && off.rate >= 990.0 { "met" } else { "MISSED" },
        if [&off, &on, &remote]
            .iter()
            .all(|o| o.failed_pct() < 0.1 && o.hook_errors * 1000 <= o.hooks_http + o.hook_errors)
        {
            "met"
        } else {
            "MISSED"
        },
        if cost_rate < 20.0 { "met by rate" } else { "MISSED by rate" }
    );
    if std::env::var_os("CALLGATE_LOAD_KEEP").is_some() {
        println!("logs and sipp statistics kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

fn report(o: &Outcome, baseline: Option<&Outcome>) {
    println!(
        "{}: offered {}, established {}, failed {} ({:.3} %), {:.0} calls/s{}, issued in {:.2} s, HTTP errors {}, \
         sipp UAS ok {} failed {}, CPU s: callgate {:.2} sipp {:.2} driver {:.2}, hooks over HTTP {}, not called {}, \
         hook errors {}, datagrams dropped on callgate's SIP socket {}",
        o.name,
        o.offered,
        o.established,
        o.failed,
        o.failed_pct(),
        o.rate,
        baseline.map(|b| format!(" ({:.2}x baseline)", o.rate / b.rate.max(1e-9))).unwrap_or_default(),
        o.issue_secs,
        o.http_errors,
        o.sipp_ok,
        o.sipp_failed,
        o.cpu_callgate,
        o.cpu_sipp,
        o.cpu_driver,
        o.hooks_http,
        o.hooks_not_called,
        o.hook_errors,
        o.sip_drops
    );
}

/// A sipp UAS answering every call and hanging up after `hold_ms`; exits after `n` calls.
fn spawn_uas(p: Params, dir: &Path, tag: &str) -> Result<(ChildGuard, u16, PathBuf), String> {
    let port = free_udp()?;
    let stat = dir.join(format!("uas-{tag}.csv"));
    let timeout = p.seconds * 2 + DRAIN.as_secs() + 10;
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(workspace().join("tests/sipp/uas_answer_remote_bye.xml"))
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1", "-ci", "127.0.0.1", "-nostdin", "-buff_size", SIPP_BUFFER])
        .args(["-p", &port.to_string(), "-m", &p.calls().to_string(), "-d", &p.hold_ms.to_string()])
        .args(["-timeout", &format!("{timeout}s"), "-trace_stat", "-fd", "1", "-stf"])
        .arg(&stat)
        .args(["-trace_err", "-error_file"])
        .arg(dir.join(format!("uas-{tag}-errors.log")))
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn sipp (install sip-tester: `make deps`): {e}"))?;
    Ok((ChildGuard(child), port, stat))
}

/// Waits for a child to exit (up to `bound`), then kills it.
async fn wait_exit(c: &mut ChildGuard, bound: Duration) -> Option<Instant> {
    let until = Instant::now() + bound;
    loop {
        if let Ok(Some(_)) = c.0.try_wait() {
            return Some(Instant::now());
        }
        if Instant::now() > until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sipp_baseline(p: Params, dir: &Path) -> Result<Outcome, String> {
    let (mut uas, port, uas_stat) = spawn_uas(p, dir, "baseline")?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let uac_stat = dir.join("uac-baseline.csv");
    let timeout = p.seconds * 2 + DRAIN.as_secs();
    let uas_pid = uas.0.id();
    let (uas_cpu0, self0) = (cpu_secs(uas_pid), cpu_secs(std::process::id()));
    let t0 = Instant::now();
    let uac = Command::new("sipp")
        .arg("-sf")
        .arg(workspace().join("benches/sipp/uac_remote_bye.xml"))
        .args(["-s", "3001", &format!("127.0.0.1:{port}")])
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1", "-ci", "127.0.0.1", "-nostdin", "-buff_size", SIPP_BUFFER])
        .args(["-p", &free_udp()?.to_string(), "-r", &p.rate.to_string(), "-m", &p.calls().to_string()])
        .args(["-l", &(p.rate * (p.hold_ms / 1000 + 5)).to_string()])
        .args(["-timeout", &format!("{timeout}s"), "-trace_stat", "-fd", "1", "-stf"])
        .arg(&uac_stat)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn sipp UAC: {e}"))?;
    let mut uac = ChildGuard(uac);
    let uac_pid = uac.0.id();
    let (mut uac_cpu, mut uac_switches) = (0.0, 0);
    // The UAC's CPU must be read before it is reaped.
    let until = Instant::now() + Duration::from_secs(timeout + 5);
    let done = loop {
        let c = cpu_secs(uac_pid);
        if c > 0.0 {
            uac_cpu = c;
            uac_switches = context_switches(uac_pid).max(uac_switches);
        }
        if let Ok(Some(_)) = uac.0.try_wait() {
            break Instant::now();
        }
        if Instant::now() > until {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let uas_cpu = cpu_secs(uas_pid) - uas_cpu0;
    let driver = cpu_secs(std::process::id()) - self0;
    let _ = wait_exit(&mut uas, Duration::from_secs(5)).await;
    let (ok, failed) = sipp_stats(&uac_stat);
    let (uas_ok, uas_failed) = sipp_stats(&uas_stat);
    // The UAC exits only when its last call is over, and a failed call keeps it until its
    // timeout: take the time its successful calls were all done from its statistics (1 s rows).
    let secs = sipp_done_secs(&uac_stat).unwrap_or_else(|| (done - t0).as_secs_f64()) - p.hold_ms as f64 / 1000.0;
    Ok(Outcome {
        name: "sipp UAC -> sipp UAS (baseline)",
        offered: p.calls(),
        established: ok,
        failed: p.calls().saturating_sub(ok),
        rate: ok as f64 / secs.max(1e-3),
        issue_secs: secs,
        http_errors: failed,
        sipp_ok: uas_ok,
        sipp_failed: uas_failed,
        cpu_callgate: uac_cpu, // the UAC plays callgate's role here
        cpu_sipp: uas_cpu,
        cpu_driver: driver,
        hooks_http: 0,
        hooks_not_called: 0,
        hook_errors: 0,
        sip_drops: 0,
        cpu_backend: 0.0,
        switches_callgate: uac_switches,
    })
}

/// Sum of the samples of `name` whose labels contain every one of `labels`.
fn metric(text: &str, name: &str, labels: &[&str]) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum::<f64>() as u64
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    established: u64,
    failed: u64,
    finished: u64,
    hooks_http: u64,
    hooks_not_called: u64,
    hook_errors: u64,
    /// Every status callgate raised: each queues one `CallStatusEvent` hook.
    statuses: u64,
    /// `call` hooks over (any outcome): one per answered startup.
    call_hooks_done: u64,
    /// `CallStatusEvent` hooks over (any outcome).
    status_hooks_done: u64,
}

impl Counts {
    /// Hooks that are over, whatever their outcome.
    fn hooks_done(&self) -> u64 {
        self.call_hooks_done + self.status_hooks_done
    }
}

async fn counts(client: &HttpClient, base: &str) -> Result<Counts, String> {
    let t = get(client, &format!("{base}/metrics")).await?;
    let st = |s: &str| metric(&t, "callgate_call_statuses_total", &[&format!("status=\"{s}\"")]);
    let hooks = |outcome: &str| {
        metric(&t, "callgate_hook_requests_total", &["method=\"call\"", &format!("outcome=\"{outcome}\"")])
            + metric(
                &t,
                "callgate_hook_requests_total",
                &["method=\"CallStatusEvent\"", &format!("outcome=\"{outcome}\"")],
            )
    };
    let all = |method: &str| metric(&t, "callgate_hook_requests_total", &[&format!("method=\"{method}\"")]);
    let (ok, not_called) = (hooks("ok"), hooks("not_called"));
    Ok(Counts {
        established: st("ESTABLISHED"),
        failed: st("FAILED"),
        finished: st("FINISH"),
        hooks_http: ok,
        hooks_not_called: not_called,
        hook_errors: (all("call") + all("CallStatusEvent")).saturating_sub(ok + not_called),
        statuses: metric(&t, "callgate_call_statuses_total", &[]),
        call_hooks_done: all("call"),
        status_hooks_done: all("CallStatusEvent"),
    })
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

async fn get(client: &HttpClient, url: &str) -> Result<String, String> {
    let req = http::Request::get(url).body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    let body = res.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

async fn callgate_phase(
    p: Params,
    dir: &Path,
    client: &HttpClient,
    base: &str,
    phase: Phase,
) -> Result<Outcome, String> {
    let Phase { app, name, pid, sip_port, backend_pid } = phase;
    let backend_cpu = || backend_pid.map(cpu_secs).unwrap_or(0.0);
    let backend0 = backend_cpu();
    let (mut uas, port, uas_stat) = spawn_uas(p, dir, app)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = counts(client, base).await?;
    let drops0 = udp_drops(sip_port);
    let uas_pid = uas.0.id();
    let (cg0, uas0, self0) = (cpu_secs(pid), cpu_secs(uas_pid), cpu_secs(std::process::id()));
    let switches0 = context_switches(pid);
    let url: http::Uri = format!("{base}/rest-api/call/startup").parse().map_err(|e| format!("{e}"))?;
    let ok = Arc::new(AtomicU64::new(0));
    let http_errors = Arc::new(AtomicU64::new(0));
    let slots = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let n = p.calls();
    let t0 = Instant::now();
    let issue_until = t0 + Duration::from_secs(p.seconds * 2);
    let mut issued = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while issued < n && Instant::now() < issue_until {
        tick.tick().await;
        let due = ((t0.elapsed().as_secs_f64() * p.rate as f64) as u64).min(n);
        while issued < due {
            let Ok(permit) = slots.clone().acquire_owned().await else { break };
            let body = format!(
                r#"{{"callId":"{app}-{issued}","callee":"3001","hasAudio":"true","sipLogin":"load","sipDomain":"127.0.0.1","sipPort":"{port}","appKey":"{app}"}}"#
            );
            let req = http::Request::post(url.clone())
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let (client, ok, errs) = (client.clone(), ok.clone(), http_errors.clone());
            tokio::spawn(async move {
                let _permit = permit;
                match client.request(req).await {
                    Ok(res) if res.status() == http::StatusCode::OK => {
                        let _ = res.into_body().collect().await;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(res) => {
                        let _ = res.into_body().collect().await;
                        errs.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        errs.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            issued += 1;
        }
    }
    let issue_secs = t0.elapsed().as_secs_f64();
    // Every answered startup ends ESTABLISHED then FINISH, or FAILED; wait for that (bounded).
    let drain_until = Instant::now() + DRAIN;
    let mut last = before;
    let mut last_change = Instant::now();
    let mut now_counts;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        now_counts = counts(client, base).await?;
        // Completions only (a call stuck in a timeout must not stretch the measured time), and
        // hooks: a call's last hook (its FINISH event) goes out after the call ended, and under
        // load the hooks may lag behind the calls; the phase is over when they are delivered too.
        if now_counts.finished != last.finished || now_counts.hooks_done() != last.hooks_done() {
            last_change = Instant::now();
        }
        // Every hook is over: one `call` hook per answered startup, one `CallStatusEvent` per status
        // raised. A long quiet spell also ends the wait (a hook that never ends would otherwise
        // hold the phase until the drain deadline; what it left undone shows as a short count).
        let hooks_over = now_counts.call_hooks_done - before.call_hooks_done >= ok.load(Ordering::Relaxed)
            && now_counts.status_hooks_done - before.status_hooks_done >= now_counts.statuses - before.statuses;
        let hooks_quiet = now_counts.hooks_done() == last.hooks_done()
            && (hooks_over || last_change.elapsed() >= HOOKS_GIVE_UP)
            && last_change.elapsed() >= HOOKS_QUIET;
        last = now_counts;
        let answered = ok.load(Ordering::Relaxed) + http_errors.load(Ordering::Relaxed);
        let settled = (now_counts.finished - before.finished) + (now_counts.failed - before.failed);
        if (answered >= issued && settled >= ok.load(Ordering::Relaxed) && hooks_quiet) || Instant::now() > drain_until
        {
            break;
        }
    }
    let (cg, uas_cpu, driver) = (cpu_secs(pid) - cg0, cpu_secs(uas_pid) - uas0, cpu_secs(std::process::id()) - self0);
    let switches = context_switches(pid).saturating_sub(switches0);
    let _ = wait_exit(&mut uas, Duration::from_secs(5)).await;
    let (sipp_ok, sipp_failed) = sipp_stats(&uas_stat);
    let established = now_counts.established - before.established;
    let secs = (last_change - t0).as_secs_f64() - p.hold_ms as f64 / 1000.0;
    // Let the calls table empty before the next phase.
    for _ in 0..100 {
        if get(client, &format!("{base}/rest-api/call/find_all")).await.map(|b| b.trim_start().starts_with('['))
            != Ok(true)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Outcome {
        name,
        offered: n,
        established,
        failed: n.saturating_sub(established),
        rate: (now_counts.finished - before.finished) as f64 / secs.max(1e-3),
        issue_secs,
        http_errors: http_errors.load(Ordering::Relaxed),
        sipp_ok,
        sipp_failed,
        cpu_callgate: cg,
        cpu_sipp: uas_cpu,
        cpu_driver: driver,
        hooks_http: now_counts.hooks_http - before.hooks_http,
        hooks_not_called: now_counts.hooks_not_called - before.hooks_not_called,
        hook_errors: now_counts.hook_errors - before.hook_errors,
        sip_drops: udp_drops(sip_port).saturating_sub(drops0),
        cpu_backend: backend_cpu() - backend0,
        switches_callgate: switches,
    })
}

/// `SuccessfulCall(C)` and `FailedCall(C)` of the last line of a sipp `-trace_stat` CSV.
fn sipp_stats(path: &Path) -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string(path) else { return (0, 0) };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let Some(header) = lines.next() else { return (0, 0) };
    let Some(last) = lines.next_back() else { return (0, 0) };
    let cols: Vec<&str> = header.split(';').collect();
    let vals: Vec<&str> = last.split(';').collect();
    let get = |name: &str| {
        cols.iter().position(|c| *c == name).and_then(|i| vals.get(i)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
    };
    (get("SuccessfulCall(C)"), get("FailedCall(C)"))
}

/// Seconds from the start of a sipp run to the first `-trace_stat` row (one per second) in
/// which `SuccessfulCall(C)` has its final value.
fn sipp_done_secs(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    let rows: Vec<Vec<&str>> = text.lines().filter(|l| !l.trim().is_empty()).map(|l| l.split(';').collect()).collect();
    let (header, rows) = rows.split_first()?;
    let col = |name: &str| header.iter().position(|c| *c == name);
    let (ok_col, now_col, start_col) = (col("SuccessfulCall(C)")?, col("CurrentTime")?, col("StartTime")?);
    // Time fields are "<date>\t<time>\t<epoch seconds>".
    let epoch = |f: &str| f.split_whitespace().last().and_then(|v| v.parse::<f64>().ok());
    let num = |r: &Vec<&str>| r.get(ok_col).and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(0);
    let last = num(rows.last()?);
    let row = rows.iter().find(|r| num(r) == last)?;
    Some(epoch(row.get(now_col)?)? - epoch(row.get(start_col)?)?)
}

/// The `drops` of the UDP sockets bound to 127.0.0.1:`port` (`/proc/net/udp`, last column).
fn udp_drops(port: u16) -> u64 {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some(want.as_str()))
        .filter_map(|l| l.split_whitespace().last().and_then(|d| d.parse::<u64>().ok()))
        .sum()
}

/// Context switches (voluntary + involuntary) of all threads of `pid` now alive
/// (`/proc/<pid>/task/*/status`); the runtime's workers live as long as the process.
fn context_switches(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter(|l| l.starts_with("voluntary_ctxt_switches:") || l.starts_with("nonvoluntary_ctxt_switches:"))
                .filter_map(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<u64>().ok()))
                .collect::<Vec<_>>()
        })
        .sum()
}

/// User + system CPU seconds of `pid` (0 when it is gone).
fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the ')'.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

fn free_tcp() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string())
}

fn free_udp() -> Result<u16, String> {
    std::net::UdpSocket::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string())
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
