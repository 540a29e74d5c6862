//! Dispatcher throughput against a loopback echo backend, 64 requests in flight.
//!
//! Arms (same body, same URL, same backend, same client runtime):
//! - `raw_hyper_util` (baseline): a bare `hyper_util::client::legacy::Client` POSTs the body and
//!   collects the answer body. Same connector settings as the dispatcher (TCP_NODELAY, idle pool
//!   of 256 per host), so the difference is the dispatcher's own code.
//! - `raw_plus_parse_answer` (decomposition): the baseline, then
//!   `callgate_hooks::dispatch::parse_answer` on the collected body, i.e. the dispatcher's answer
//!   handling alone without its other machinery.
//! - `raw_plus_validate_object` (what-if): the baseline, then a check that the body is a JSON
//!   object without building it (`serde::de::IgnoredAny`), i.e. what a lazily parsed answer would
//!   cost under `restPolicy=NOTIFY`, where the answer's fields are never used.
//! - `dispatcher_post`: `callgate_hooks::Dispatcher::post` (in-flight semaphore, timeout, retry
//!   loop, headers, body limit, answer parsed into a JSON object).
//! - `engine_invoke`: `HookEngine::invoke` end to end (restExclude serialisation, dispatch,
//!   decision, OVERWRITE data rule, metrics macros without a recorder, i.e. no-ops). `invoke`
//!   mutates the data it is given, but the echo answers `callee` with the value it already has,
//!   so each request takes a data map from a small pool and puts it back unchanged: no clone.
//!
//! Layout on the 2-core machine: the echo backend runs on its own thread with a current-thread
//! runtime (one core), the client side on criterion's thread with another current-thread runtime
//! (the other core). Every task of the client side (hyper connection tasks included) runs on that
//! one thread, so its CPU time per request is the client's cost; it is printed after the criterion
//! run as a second, less noisy view of the same ratio.
//!
//! Run: `cargo bench -p callgate-benches --bench dispatcher`
//! Profile one arm: `DISPATCHER_NO_CPU_VIEW=1 perf record -g <bench binary> --bench --profile-time 10 dispatcher_post`

use std::cell::RefCell;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use callgate_benches::CALL_HOOK_BODY;
use callgate_hooks::{
    App, AppConfig, Dispatcher, DispatcherConfig, HookEngine, HookMethod, Origin, RestClientConfig, Verdict,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::stream::{self, StreamExt};
use http::{header, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Map, Value};

/// Requests in flight at any time.
const IN_FLIGHT: usize = 64;
/// Requests per criterion iteration.
const PER_ITER: usize = 1024;

/// Starts the echo backend on its own thread and runtime: `200` with the request body, keep-alive.
fn start_echo_backend() -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("echo-backend".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("backend runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the echo backend");
                tx.send(listener.local_addr().expect("local addr")).expect("report the address");
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .keep_alive(true)
                            .serve_connection(TokioIo::new(stream), service_fn(echo))
                            .await;
                    });
                }
            });
        })
        .expect("spawn the echo backend thread");
    rx.recv().expect("echo backend address")
}

async fn echo(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = req.into_body().collect().await?.to_bytes();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(body))
        .expect("valid response"))
}

/// Everything the three arms share.
struct Setup {
    app: App,
    dispatcher: Dispatcher,
    engine: HookEngine,
    raw: Client<HttpConnector, Full<Bytes>>,
    uri: Uri,
    body: Bytes,
    /// Call data maps for `engine_invoke`, one per request in flight.
    data_pool: RefCell<Vec<Map<String, Value>>>,
    rcc: RestClientConfig,
}

impl Setup {
    fn new(backend: SocketAddr) -> Setup {
        let cfg = AppConfig { url: format!("http://{backend}/rest"), ..Default::default() };
        let app = App::new("bench", &cfg, false, 512).expect("valid app");
        let dcfg = DispatcherConfig::default();
        let dispatcher = Dispatcher::new(dcfg.clone()).expect("dispatcher");
        let engine = HookEngine::new(Dispatcher::new(dcfg.clone()).expect("dispatcher"), false);
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        let raw = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(dcfg.pool_max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(conn);
        let uri = app.uri(HookMethod::Call).clone();
        let data = match serde_json::from_str::<Value>(CALL_HOOK_BODY).expect("valid JSON") {
            Value::Object(m) => m,
            _ => unreachable!("the body is an object"),
        };
        let (rcc, warnings) = RestClientConfig::parse(Some(&serde_json::json!({
            "call": {"restOnError": "FAIL", "restPolicy": "OVERWRITE", "restOverwrite": "callee"}
        })));
        assert!(warnings.is_empty(), "{warnings:?}");
        let data_pool = RefCell::new(vec![data; IN_FLIGHT]);
        Setup { app, dispatcher, engine, raw, uri, body: Bytes::from_static(CALL_HOOK_BODY.as_bytes()), data_pool, rcc }
    }

    async fn raw_one(&self) -> usize {
        self.raw_collect().await.len()
    }

    async fn raw_collect(&self) -> Bytes {
        let req = Request::post(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(self.body.clone()))
            .expect("valid request");
        let resp = self.raw.request(req).await.expect("raw request");
        assert_eq!(resp.status(), StatusCode::OK);
        resp.into_body().collect().await.expect("raw body").to_bytes()
    }

    async fn raw_parse_one(&self) -> usize {
        let bytes = self.raw_collect().await;
        callgate_hooks::dispatch::parse_answer(&bytes).expect("an object").len()
    }

    async fn raw_validate_one(&self) -> usize {
        let bytes = self.raw_collect().await;
        validate_object(&bytes);
        bytes.len()
    }

    async fn dispatcher_one(&self) -> usize {
        let answer =
            self.dispatcher.post(&self.app, HookMethod::Call, self.body.clone()).await.expect("dispatcher post");
        answer.len()
    }

    /// The dispatcher as the engine uses it under the default policy (NOTIFY): the answer is
    /// checked to be one JSON object and nothing of it is built.
    async fn dispatcher_notify_one(&self) -> usize {
        let answer = self
            .dispatcher
            .post_for(&self.app, HookMethod::Call, self.body.clone(), callgate_hooks::dispatch::AnswerUse::Validate)
            .await
            .expect("dispatcher post");
        answer.len() + 1
    }

    async fn engine_one(&self) -> usize {
        let mut data = self.data_pool.borrow_mut().pop().expect("one map per request in flight");
        let inv = self
            .engine
            .invoke(&self.app, &self.rcc, HookMethod::Call, Origin::Client, &mut data, "bench-session")
            .await;
        assert!(matches!(inv.verdict, Verdict::Proceed(_)), "{inv:?}");
        let n = data.len();
        self.data_pool.borrow_mut().push(data);
        n
    }

    /// Runs `n` requests of `arm` with [`IN_FLIGHT`] of them in flight.
    async fn run(&self, arm: Arm, n: usize) -> usize {
        self.run_with(arm, n, IN_FLIGHT).await
    }

    /// Runs `n` requests of `arm` with `in_flight` (at most [`IN_FLIGHT`]) of them in flight.
    async fn run_with(&self, arm: Arm, n: usize, in_flight: usize) -> usize {
        stream::iter(0..n)
            .map(|_| async move {
                match arm {
                    Arm::Raw => self.raw_one().await,
                    Arm::RawParse => self.raw_parse_one().await,
                    Arm::RawValidate => self.raw_validate_one().await,
                    Arm::Dispatcher => self.dispatcher_one().await,
                    Arm::DispatcherNotify => self.dispatcher_notify_one().await,
                    Arm::Engine => self.engine_one().await,
                }
            })
            .buffer_unordered(in_flight.min(IN_FLIGHT))
            .fold(0usize, |acc, x| async move { acc + x })
            .await
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arm {
    Raw,
    RawParse,
    RawValidate,
    Dispatcher,
    DispatcherNotify,
    Engine,
}

impl Arm {
    const ALL: [Arm; 6] =
        [Arm::Raw, Arm::RawParse, Arm::RawValidate, Arm::Dispatcher, Arm::DispatcherNotify, Arm::Engine];

    fn name(self) -> &'static str {
        match self {
            Arm::Raw => "raw_hyper_util",
            Arm::RawParse => "raw_plus_parse_answer",
            Arm::RawValidate => "raw_plus_validate_object",
            Arm::Dispatcher => "dispatcher_post",
            Arm::DispatcherNotify => "dispatcher_post_notify",
            Arm::Engine => "engine_invoke",
        }
    }
}

/// Checks that `bytes` is empty or one JSON object, without building it.
fn validate_object(bytes: &[u8]) {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct ObjectOnly;
    impl<'de> Visitor<'de> for ObjectOnly {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(())
        }
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    de.deserialize_map(ObjectOnly).expect("a JSON object");
    de.end().expect("nothing after the object");
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("client runtime")
}

fn bench_dispatcher(c: &mut Criterion) {
    let backend = start_echo_backend();
    let rt = client_runtime();
    let setup = Setup::new(backend);
    // Open the keep-alive connections of every client before measuring.
    rt.block_on(async {
        for arm in Arm::ALL {
            setup.run(arm, 4 * IN_FLIGHT).await;
        }
    });
    let mut g = c.benchmark_group("dispatcher_64_in_flight");
    g.throughput(Throughput::Elements(PER_ITER as u64));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(2));
    g.measurement_time(Duration::from_secs(6));
    for arm in Arm::ALL {
        g.bench_function(arm.name(), |b| b.to_async(&rt).iter(|| async { black_box(setup.run(arm, PER_ITER).await) }));
    }
    g.finish();

    cpu_view(&rt, &setup, &Arm::ALL, "no metrics recorder", IN_FLIGHT);
    // One request at a time: nothing is batched, every request pays for waking the client's and
    // the backend's threads (the pattern of a call's hooks, which go one after another; see
    // docs/benchmarks.md, "Call load"). The raw arm is the floor of an HTTP/1.1 hook round trip.
    cpu_view(&rt, &setup, &[Arm::Raw, Arm::DispatcherNotify, Arm::Engine], "no metrics recorder", 1);

    // Supplementary: the server installs a Prometheus recorder, which turns the engine's
    // `metrics::counter!`/`histogram!` calls into real work. Installed once for the rest of the
    // process, so it comes last; only `engine_invoke` records metrics.
    callgate_server::metrics_http::install_recorder();
    let mut g = c.benchmark_group("dispatcher_64_in_flight_prometheus_recorder");
    g.throughput(Throughput::Elements(PER_ITER as u64));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(2));
    g.measurement_time(Duration::from_secs(6));
    g.bench_function("engine_invoke", |b| {
        b.to_async(&rt).iter(|| async { black_box(setup.run(Arm::Engine, PER_ITER).await) })
    });
    g.finish();
    cpu_view(&rt, &setup, &[Arm::Raw, Arm::Engine], "Prometheus recorder installed (as in the server)", IN_FLIGHT);
    metrics_micro();
}

/// What `HookEngine::invoke` records per answered hook (`record_metrics`: one labelled counter,
/// one labelled histogram), timed alone with the server's Prometheus recorder installed.
fn metrics_micro() {
    const N: u32 = 200_000;
    let method = black_box(HookMethod::Call);
    let run = || {
        let t = Instant::now();
        for _ in 0..N {
            let started = Instant::now();
            metrics::counter!("callgate_hook_requests_total", "method" => method.url_name(), "outcome" => "ok")
                .increment(1);
            metrics::histogram!("callgate_hook_duration_seconds", "method" => method.url_name(), "outcome" => "ok")
                .record(started.elapsed().as_secs_f64());
        }
        t.elapsed().as_nanos() as f64 / N as f64
    };
    run(); // registers the metrics
    let mut v: Vec<f64> = (0..5).map(|_| run()).collect();
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    // Histogram samples pile up until someone renders /metrics; drain them as a scrape would.
    callgate_server::metrics_http::install_recorder().run_upkeep();
    println!(
        "metrics per answered hook (counter + histogram + Instant::now/elapsed): {:.0} ns (median of 5 x {N})",
        v[2]
    );
}

/// CPU time of the calling thread (the whole client side runs on it).
fn thread_cpu() -> Duration {
    cpu_clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

/// CPU time of the whole process (client thread + echo backend thread).
fn process_cpu() -> Duration {
    cpu_clock(libc::CLOCK_PROCESS_CPUTIME_ID)
}

fn cpu_clock(clock: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// The same arms once more, interleaved in rounds, reporting wall throughput and CPU time per
/// request of the client thread and of the backend thread. Medians over the rounds.
fn cpu_view(rt: &tokio::runtime::Runtime, setup: &Setup, arms: &[Arm], note: &str, in_flight: usize) {
    if std::env::var_os("DISPATCHER_NO_CPU_VIEW").is_some() {
        return; // e.g. while profiling one arm with `--profile-time`
    }
    // Fewer requests one at a time: each waits for a full round trip.
    let n: usize = if in_flight > 1 { 20_000 } else { 5_000 };
    const ROUNDS: usize = 5;
    assert_eq!(arms[0], Arm::Raw, "the baseline comes first");
    let mut samples: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); arms.len()];
    for _ in 0..ROUNDS {
        for (i, &arm) in arms.iter().enumerate() {
            let (w0, c0, p0) = (Instant::now(), thread_cpu(), process_cpu());
            black_box(rt.block_on(setup.run_with(arm, n, in_flight)));
            let (w, c, p) = (w0.elapsed(), thread_cpu() - c0, process_cpu() - p0);
            let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
            samples[i].push((n as f64 / w.as_secs_f64(), per(c), per(p.saturating_sub(c))));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        v[v.len() / 2]
    };
    let rows: Vec<(f64, f64, f64)> = samples
        .into_iter()
        .map(|s| {
            (
                median(s.iter().map(|x| x.0).collect()),
                median(s.iter().map(|x| x.1).collect()),
                median(s.iter().map(|x| x.2).collect()),
            )
        })
        .collect();
    let (base_rps, base_cpu, _) = rows[0];
    println!();
    println!(
        "dispatcher CPU view ({note}): {ROUNDS} interleaved rounds of {n} requests, {in_flight} in flight, medians"
    );
    println!(
        "{:<16} {:>10} {:>8} {:>15} {:>9} {:>16}",
        "arm", "req/s", "ratio", "client µs/req", "ratio", "backend µs/req"
    );
    for (arm, (rps, cpu, backend)) in arms.iter().zip(rows) {
        println!(
            "{:<26} {:>10.0} {:>7.3}x {:>15.2} {:>8.3}x {:>16.2}",
            arm.name(),
            rps,
            rps / base_rps,
            cpu,
            cpu / base_cpu,
            backend
        );
    }
    println!("(throughput ratio: higher is better; client CPU ratio: lower is better; baseline = raw_hyper_util)");
}

criterion_group!(benches, bench_dispatcher);
criterion_main!(benches);
