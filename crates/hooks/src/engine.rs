//! The hook engine: one call = config lookup, request, decision, data rules, metrics, log.
//!
//! ```text
//! invoke(app, restClientConfig, method, origin, &mut data)
//!   -> not enabled / DISABLE / hooks off  => NotCalled
//!   -> echo app in process                => Answered(data without restExclude)
//!   -> POST {url}/{method}                => Answered(answer) | InteractionError
//!   -> decide(kind, origin, restOnError, restPolicy, result) => Verdict
//!   -> Proceed(effect): apply_answer(effect, data, answer)
//! ```
//!
//! Events go through [`EventQueue`] instead, which keeps them in order per session and delivers
//! each at least once ([`crate::delivery`]: retries, `sequence`, `eventId`, dead letters).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};

use crate::app::{App, OnUnreachable};
use crate::catalogue::{HookKind, HookMethod};
use crate::client_config::{MethodConfig, RestClientConfig, RestPolicy};
use crate::dead_letter::{DeadEvent, DeadLetter};
use crate::decision::{decide, HookResult, Origin, Verdict};
use crate::delivery::{new_event_id, retryable, DeliveryConfig, EVENT_ID, SEQUENCE};
use crate::dispatch::{AnswerUse, Dispatcher, InteractionError};
use crate::feed::{HookFeed, HookRecord};
use crate::rules::{apply_answer, Excluding};

/// What came of one hook.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub verdict: Verdict,
    /// The interaction error, when there was one.
    pub error: Option<InteractionError>,
    /// `connect` only: the `restClientConfig` value of the answer, taken out of the data.
    pub rest_client_config: Option<Value>,
}

impl Invocation {
    /// The `info` to give the client when the verdict rejects or reports.
    pub fn client_info(&self) -> String {
        self.error.as_ref().map(InteractionError::client_info).unwrap_or_default()
    }
}

/// Shared by all sessions.
#[derive(Clone)]
pub struct HookEngine {
    dispatcher: Dispatcher,
    /// `disable_rest_requests`: no hook is ever sent.
    disabled: bool,
    metrics: Arc<HookMetrics>,
    /// Each event queue's worker holds a receiver until it ends: a server's shutdown waits for
    /// them ([`HookEngine::event_queues_idle`]) so that the last events reach the backend.
    queues: Arc<watch::Sender<()>>,
    delivery: Arc<Delivery>,
    /// The live hook log ([`crate::feed`]); a record is built only while someone listens.
    feed: Option<HookFeed>,
}

/// How events are delivered, shared by every queue of an engine.
struct Delivery {
    cfg: DeliveryConfig,
    dead_letter: Option<DeadLetter>,
    /// Set by [`HookEngine::abandon_events`]: no more attempts, the rest is dead-lettered.
    abandon: watch::Sender<bool>,
}

impl Delivery {
    fn new(cfg: DeliveryConfig, dead_letter: Option<DeadLetter>) -> Delivery {
        Delivery { cfg, dead_letter, abandon: watch::channel(false).0 }
    }
}

/// Resolves once [`HookEngine::abandon_events`] was called (never if the engine is gone).
async fn abandoned(rx: &mut watch::Receiver<bool>) {
    if rx.wait_for(|a| *a).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Every `outcome` label of the hook metrics.
const OUTCOMES: [&str; 10] = [
    "ok",
    "not_called",
    "error",
    "status",
    "timeout",
    "unreachable",
    "transport",
    "bad_body",
    "too_large",
    "queue_full",
];

/// The metric handles of each (method, outcome), made at first use: `counter!`/`histogram!`
/// look the labelled series up in the recorder's map on every call (~0.35 µs per hook with
/// the Prometheus recorder), a cached handle only updates an atomic. Handles bind to the
/// recorder installed when they are made, so the server installs it before the engine.
struct HookMetrics {
    slots: Box<[OnceLock<(metrics::Counter, metrics::Histogram)>]>,
    retries: Box<[OnceLock<metrics::Counter>]>,
}

impl HookMetrics {
    fn new() -> HookMetrics {
        HookMetrics {
            slots: (0..HookMethod::COUNT * OUTCOMES.len()).map(|_| OnceLock::new()).collect(),
            retries: (0..HookMethod::COUNT).map(|_| OnceLock::new()).collect(),
        }
    }

    /// An event's attempt failed and it will be sent again.
    fn retry(&self, method: HookMethod) {
        self.retries[method.index()]
            .get_or_init(|| metrics::counter!("callgate_hook_event_retries_total", "method" => method.url_name()))
            .increment(1);
    }

    fn record(&self, method: HookMethod, outcome: &'static str, elapsed: Option<f64>) {
        let o = OUTCOMES.iter().position(|x| *x == outcome).unwrap_or(2);
        let (counter, histogram) = self.slots[method.index() * OUTCOMES.len() + o].get_or_init(|| {
            let (m, outcome) = (method.url_name(), OUTCOMES[o]);
            (
                metrics::counter!("callgate_hook_requests_total", "method" => m, "outcome" => outcome),
                metrics::histogram!("callgate_hook_duration_seconds", "method" => m, "outcome" => outcome),
            )
        });
        counter.increment(1);
        if let Some(secs) = elapsed {
            histogram.record(secs);
        }
    }
}

impl HookEngine {
    pub fn new(dispatcher: Dispatcher, disabled: bool) -> HookEngine {
        HookEngine {
            dispatcher,
            disabled,
            metrics: Arc::new(HookMetrics::new()),
            queues: Arc::new(watch::channel(()).0),
            delivery: Arc::new(Delivery::new(DeliveryConfig::default(), None)),
            feed: None,
        }
    }

    /// This engine publishing a [`HookRecord`] of every hook it sends (or answers in process)
    /// to `feed` while the feed has listeners.
    pub fn with_feed(mut self, feed: HookFeed) -> HookEngine {
        self.feed = Some(feed);
        self
    }

    /// The feed, when someone listens to it.
    fn listened_feed(&self) -> Option<&HookFeed> {
        self.feed.as_ref().filter(|f| f.listening())
    }

    /// This engine with the events' retry schedule and queue bound `cfg`, and the dead-letter
    /// file for events given up (`None`: such events are lost, counted and logged).
    pub fn with_delivery(mut self, cfg: DeliveryConfig, dead_letter: Option<DeadLetter>) -> HookEngine {
        self.delivery = Arc::new(Delivery::new(cfg, dead_letter));
        self
    }

    pub fn delivery(&self) -> &DeliveryConfig {
        &self.delivery.cfg
    }

    /// The shutdown's deadline has passed: events stop being retried; the one being sent and
    /// every one still queued (or queued later) is written to the dead-letter file at once.
    pub fn abandon_events(&self) {
        self.delivery.abandon.send_replace(true);
    }

    /// Event queues whose worker still runs. A queue's worker ends once every handle of the
    /// queue is gone and every event pushed to it has been sent (or failed).
    pub fn event_queues(&self) -> usize {
        self.queues.receiver_count()
    }

    /// Resolves once no event queue is left (at once when there is none).
    pub async fn event_queues_idle(&self) {
        self.queues.closed().await
    }

    pub fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// Runs the hook `method` for `data` and applies the verdict's data effect to `data`.
    ///
    /// `session` only names the session in the log line of an interaction error.
    pub async fn invoke(
        &self,
        app: &App,
        config: &RestClientConfig,
        method: HookMethod,
        origin: Origin,
        data: &mut Map<String, Value>,
        session: &str,
    ) -> Invocation {
        // restClientConfig arrives in the connect answer, so connect always runs with defaults.
        let mc = if method == HookMethod::Connect { config_default() } else { config.method(method) };
        let started = Instant::now();
        let (result, answer, error) = self.call(app, mc, method, data).await;
        let verdict = decide(method.kind(), origin, mc.rest_on_error, mc.rest_policy, result);
        let verdict = on_unreachable(app, method, origin, error.as_ref(), verdict);
        record_metrics(&self.metrics, method, result, error.as_ref(), started);
        if let Some(e) = &error {
            tracing::warn!(session, app = &*app.key, method = method.url_name(), error = %e, ?verdict, "REST hook interaction error");
        }
        if let Some(feed) = self.listened_feed().filter(|_| result != HookResult::NotCalled) {
            let sent = Sent { app, mc, method, session, data, started, attempts: 1 };
            feed.publish(sent.record(answer.as_ref(), error.as_ref(), verdict));
        }
        let mut rest_client_config = None;
        if let (Verdict::Proceed(effect), Some(mut answer)) = (verdict, answer) {
            if method == HookMethod::Connect {
                rest_client_config = answer.remove(crate::rules::REST_CLIENT_CONFIG);
            }
            apply_answer(effect, data, answer, &mc.rest_overwrite);
        }
        Invocation { verdict, error, rest_client_config }
    }

    /// The request part of a hook, without the decision.
    async fn call(
        &self,
        app: &App,
        mc: &MethodConfig,
        method: HookMethod,
        data: &Map<String, Value>,
    ) -> (HookResult, Option<Map<String, Value>>, Option<InteractionError>) {
        if self.skips(app, mc, method) {
            return (HookResult::NotCalled, None, None);
        }
        self.send(app, mc, method, data, None).await
    }

    /// True when the hook is not sent at all (hooks off, method not enabled, policy DISABLE).
    fn skips(&self, app: &App, mc: &MethodConfig, method: HookMethod) -> bool {
        self.disabled
            || !app.is_enabled(method)
            || (method.kind() != HookKind::Connect && mc.rest_policy == RestPolicy::Disable)
    }

    /// Sends the hook (or answers it in process for the echo app); `webhook_id` as in
    /// [`Dispatcher::post_with_id`].
    async fn send(
        &self,
        app: &App,
        mc: &MethodConfig,
        method: HookMethod,
        data: &Map<String, Value>,
        webhook_id: Option<&str>,
    ) -> (HookResult, Option<Map<String, Value>>, Option<InteractionError>) {
        let want = if method == HookMethod::Connect {
            AnswerUse::Full
        } else if mc.rest_policy == RestPolicy::Overwrite {
            AnswerUse::Fields(&mc.rest_overwrite)
        } else {
            AnswerUse::Validate
        };
        if app.echo_in_process() {
            // The built-in EchoApp mirrors what it receives (the data without restExclude); only
            // the part the decision will use is built.
            let echoed = match want {
                AnswerUse::Full => crate::rules::without(data, &mc.rest_exclude),
                AnswerUse::Fields(f) => f
                    .iter()
                    .filter(|k| !mc.rest_exclude.contains(k))
                    .filter_map(|k| data.get(k).map(|v| (k.to_string(), v.clone())))
                    .collect(),
                AnswerUse::Validate => Map::new(),
            };
            return (HookResult::Answered, Some(echoed), None);
        }
        let body = match serde_json::to_vec(&Excluding { data, exclude: &mc.rest_exclude }) {
            Ok(b) => Bytes::from(b),
            Err(e) => return (HookResult::InteractionError, None, Some(InteractionError::Transport(e.to_string()))),
        };
        match self.dispatcher.post_with_id(app, method, body, want, webhook_id).await {
            Ok(answer) => (HookResult::Answered, Some(answer), None),
            Err(e) => (HookResult::InteractionError, None, Some(e)),
        }
    }
}

impl HookEngine {
    /// One event of a session's queue, delivered at least once (module docs of
    /// [`crate::delivery`]): numbered `*sequence + 1` when it is sent, retried while it may not
    /// have been handled, dead-lettered when given up. The decision is taken on the last attempt.
    async fn deliver(
        &self,
        app: &App,
        config: &RestClientConfig,
        job: &mut EventJob,
        sequence: &mut u64,
        session: &str,
    ) -> Invocation {
        let (method, origin) = (job.method, job.origin);
        let mc = config.method(method);
        let cfg = &self.delivery.cfg;
        if self.skips(app, mc, method) {
            record_metrics(&self.metrics, method, HookResult::NotCalled, None, Instant::now());
            let verdict = decide(method.kind(), origin, mc.rest_on_error, mc.rest_policy, HookResult::NotCalled);
            return Invocation { verdict, error: None, rest_client_config: None };
        }
        *sequence += 1;
        let event_id = new_event_id();
        job.data.insert(SEQUENCE.into(), Value::from(*sequence));
        job.data.insert(EVENT_ID.into(), Value::from(event_id.as_str()));
        let first = Instant::now();
        let mut abandon = self.delivery.abandon.subscribe();
        let mut attempts = 0u32;
        let (result, answer, error) = loop {
            if *abandon.borrow() {
                let e = InteractionError::Transport("not sent: the server shut down with the event queued".into());
                break (HookResult::InteractionError, None, Some(e));
            }
            attempts += 1;
            let started = Instant::now();
            let r = tokio::select! {
                biased;
                r = self.send(app, mc, method, &job.data, Some(&event_id)) => r,
                () = abandoned(&mut abandon) => {
                    let e = InteractionError::Transport("cut at the shutdown's deadline".into());
                    (HookResult::InteractionError, None, Some(e))
                }
            };
            record_metrics(&self.metrics, method, r.0, r.2.as_ref(), started);
            let Some(e) = r.2.as_ref().filter(|e| retryable(e)) else { break r };
            let pause = cfg.pause(attempts);
            if attempts >= cfg.attempts || first.elapsed() + pause > cfg.total || *abandon.borrow() {
                break r;
            }
            self.metrics.retry(method);
            tracing::debug!(session, app = &*app.key, method = method.url_name(), attempt = attempts, error = %e, pause_ms = pause.as_millis() as u64, "event not delivered; retrying");
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = abandoned(&mut abandon) => {}
            }
        };
        let verdict = decide(method.kind(), origin, mc.rest_on_error, mc.rest_policy, result);
        if let Some(feed) = self.listened_feed() {
            let sent = Sent { app, mc, method, session, data: &job.data, started: first, attempts };
            feed.publish(sent.record(answer.as_ref(), error.as_ref(), verdict));
        }
        if let Some(e) = &error {
            if retryable(e) {
                let fate = self.dead_letter(app, mc, job, session, attempts, e);
                tracing::warn!(session, app = &*app.key, method = method.url_name(), event_id, attempts, error = %e, ?verdict, fate, "REST hook event given up");
            } else {
                tracing::warn!(session, app = &*app.key, method = method.url_name(), event_id, error = %e, ?verdict, "REST hook interaction error");
            }
        }
        // shift_remove: the data keeps its field order (the client may get it under OVERWRITE).
        job.data.shift_remove(SEQUENCE);
        job.data.shift_remove(EVENT_ID);
        if let (Verdict::Proceed(effect), Some(answer)) = (verdict, answer) {
            apply_answer(effect, &mut job.data, answer, &mc.rest_overwrite);
        }
        Invocation { verdict, error, rest_client_config: None }
    }

    /// Writes a given-up event to the dead-letter file; says where it went, for the log.
    fn dead_letter(
        &self,
        app: &App,
        mc: &MethodConfig,
        job: &EventJob,
        session: &str,
        attempts: u32,
        e: &InteractionError,
    ) -> &'static str {
        let Some(dl) = &self.delivery.dead_letter else {
            metrics::counter!("callgate_hook_events_dropped_total", "reason" => "no_dead_letter").increment(1);
            return "lost (no dead_letter_file configured)";
        };
        let body = crate::rules::without(&job.data, &mc.rest_exclude);
        let ev = DeadEvent {
            app: app.key.to_string(),
            url: app.url.to_string(),
            method: job.method.url_name().into(),
            event_id: body.get(EVENT_ID).and_then(Value::as_str).unwrap_or_default().into(),
            session_id: session.into(),
            sequence: body.get(SEQUENCE).and_then(Value::as_u64).unwrap_or_default(),
            attempts,
            error: e.to_string(),
            dead_at: crate::webhooks::now_unix(),
            body,
        };
        if dl.append(&ev) {
            metrics::counter!("callgate_hook_events_dead_lettered_total").increment(1);
            "written to the dead-letter file"
        } else {
            "lost (the dead-letter file refused it)"
        }
    }
}

/// The app's `on_unreachable` policy over the seed's verdict: only for a direct invocation of
/// client (or SIP) origin whose backend could not be reached (or whose breaker is open). An
/// action of REST API origin is never refused, so "closed" does not apply to it.
fn on_unreachable(
    app: &App,
    method: HookMethod,
    origin: Origin,
    error: Option<&InteractionError>,
    verdict: Verdict,
) -> Verdict {
    match error {
        Some(InteractionError::Unreachable { .. })
            if method.kind() == HookKind::DirectInvocation && origin != Origin::RestApi =>
        {
            match app.on_unreachable(method) {
                OnUnreachable::RestOnError => verdict,
                OnUnreachable::Open => Verdict::LogAndProceed,
                OnUnreachable::Closed => Verdict::Reject,
            }
        }
        _ => verdict,
    }
}

/// What a [`HookRecord`] says of the request side of a hook.
struct Sent<'a> {
    app: &'a App,
    mc: &'a MethodConfig,
    method: HookMethod,
    session: &'a str,
    data: &'a Map<String, Value>,
    started: Instant,
    attempts: u32,
}

impl Sent<'_> {
    fn record(
        self,
        answer: Option<&Map<String, Value>>,
        error: Option<&InteractionError>,
        verdict: Verdict,
    ) -> HookRecord {
        let http = !self.app.echo_in_process();
        let status = match error {
            Some(InteractionError::Status { code, .. }) => Some(*code),
            Some(_) => None,
            None => http.then_some(200),
        };
        // The body as the backend got it (restExclude applied).
        let body = serde_json::to_value(Excluding { data: self.data, exclude: &self.mc.rest_exclude })
            .unwrap_or_else(|e| Value::String(format!("<body not serialisable: {e}>")));
        HookRecord {
            at: SystemTime::now(),
            app: self.app.key.clone(),
            method: self.method,
            session: self.session.to_string(),
            http,
            body,
            status,
            answer: answer.cloned(),
            error: error.cloned(),
            latency: self.started.elapsed(),
            attempts: self.attempts,
            verdict,
        }
    }
}

fn config_default() -> &'static MethodConfig {
    static D: std::sync::LazyLock<MethodConfig> = std::sync::LazyLock::new(MethodConfig::default);
    &D
}

fn record_metrics(
    m: &HookMetrics,
    method: HookMethod,
    result: HookResult,
    error: Option<&InteractionError>,
    started: Instant,
) {
    let outcome = match (result, error) {
        (HookResult::Answered, _) => "ok",
        (HookResult::NotCalled, _) => "not_called",
        (HookResult::InteractionError, Some(e)) => e.label(),
        (HookResult::InteractionError, None) => "error",
    };
    let elapsed = (result != HookResult::NotCalled).then(|| started.elapsed().as_secs_f64());
    m.record(method, outcome, elapsed);
}

/// What the event queue reports back after an event's hook.
#[derive(Debug)]
pub struct EventDone {
    pub method: HookMethod,
    /// The event data after the data rules (changed only under OVERWRITE).
    pub data: Map<String, Value>,
    pub invocation: Invocation,
}

/// One event to deliver; `then` runs after the hook, in queue order.
pub struct EventJob {
    pub method: HookMethod,
    pub origin: Origin,
    pub data: Map<String, Value>,
    pub then: Box<dyn FnOnce(EventDone) + Send>,
}

/// Delivers a session's events to the backend one at a time, in the order they were raised.
///
/// Dropping the queue lets the worker finish what is queued and stop, so a final
/// `ConnectionStatusEvent DISCONNECTED` still reaches the backend after everything before it.
#[derive(Clone)]
pub struct EventQueue {
    tx: mpsc::Sender<EventJob>,
    config: Arc<RestClientConfig>,
    delivery: Arc<Delivery>,
    /// Set while this queue refuses events (full): the refusals of a burst are logged once.
    dropping: Arc<AtomicBool>,
}

impl EventQueue {
    /// Starts the worker for one session, with the session's `restClientConfig`.
    pub fn spawn(engine: HookEngine, app: Arc<App>, config: Arc<RestClientConfig>, session: Arc<str>) -> EventQueue {
        // Events that may wait per session before new ones are refused: a backend that is down
        // must not make a session grow without bound.
        let (tx, mut rx) = mpsc::channel::<EventJob>(engine.delivery.cfg.queue_capacity.max(1));
        let cfg = config.clone();
        let live = engine.queues.subscribe();
        let delivery = engine.delivery.clone();
        tokio::spawn(async move {
            let mut sequence = 0u64;
            while let Some(mut job) = rx.recv().await {
                let invocation = engine.deliver(&app, &cfg, &mut job, &mut sequence, &session).await;
                (job.then)(EventDone { method: job.method, data: job.data, invocation });
            }
            drop(live);
        });
        EventQueue { tx, config, delivery, dropping: Arc::default() }
    }

    /// Queues an event. When the queue is full, the event is not delivered to the backend and
    /// `then` runs at once with a [`InteractionError::QueueFull`] interaction error; it is counted
    /// in `callgate_hook_events_dropped_total{reason="queue_full"}`, and the first refusal of a
    /// burst (until this queue accepts again) is logged.
    pub fn push(&self, job: EventJob) {
        let refused = self.tx.try_send(job);
        if refused.is_ok() {
            if self.dropping.load(Ordering::Relaxed) && self.dropping.swap(false, Ordering::Relaxed) {
                tracing::info!("event queue accepts events again");
            }
            return;
        }
        if let Err(e) = refused {
            let job = match e {
                mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
            };
            let mc = self.config.method(job.method);
            let verdict =
                decide(job.method.kind(), job.origin, mc.rest_on_error, mc.rest_policy, HookResult::InteractionError);
            metrics::counter!("callgate_hook_requests_total", "method" => job.method.url_name(), "outcome" => "queue_full").increment(1);
            metrics::counter!("callgate_hook_events_dropped_total", "reason" => "queue_full").increment(1);
            if !self.dropping.swap(true, Ordering::Relaxed) {
                tracing::error!(
                    method = job.method.url_name(),
                    capacity = self.delivery.cfg.queue_capacity,
                    "event queue full: events are dropped, not sent to the backend (counted in callgate_hook_events_dropped_total{{reason=\"queue_full\"}}; logged once until this queue accepts again)"
                );
            }
            (job.then)(EventDone {
                method: job.method,
                data: job.data,
                invocation: Invocation { verdict, error: Some(InteractionError::QueueFull), rest_client_config: None },
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AppConfig;
    use crate::dispatch::DispatcherConfig;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn event_queues_idle_waits_for_every_queued_event() {
        // Hooks disabled: each event "completes" without HTTP, after a yield.
        let engine = HookEngine::new(Dispatcher::new(DispatcherConfig::default()).unwrap(), true);
        let cfg = AppConfig { url: "http://127.0.0.1:9/hooks".into(), ..Default::default() };
        let app = Arc::new(App::new("a", &cfg, false, 4).unwrap());
        let rcc = Arc::new(RestClientConfig::default());
        let done = Arc::new(AtomicUsize::new(0));
        let queues: Vec<EventQueue> = (0..3)
            .map(|i| EventQueue::spawn(engine.clone(), app.clone(), rcc.clone(), format!("s{i}").into()))
            .collect();
        assert_eq!(engine.event_queues(), 3);
        for q in &queues {
            for _ in 0..5 {
                let d = done.clone();
                q.push(EventJob {
                    method: HookMethod::ConnectionStatusEvent,
                    origin: Origin::Client,
                    data: Map::new(),
                    then: Box::new(move |_| {
                        d.fetch_add(1, Ordering::SeqCst);
                    }),
                });
            }
        }
        let idle = engine.event_queues_idle();
        tokio::pin!(idle);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut idle).await.is_err(),
            "not idle while the queues have handles"
        );
        drop(queues);
        tokio::time::timeout(Duration::from_secs(5), idle).await.expect("idle once the queues are dropped and drained");
        assert_eq!(done.load(Ordering::SeqCst), 15, "every queued event ran before idle");
        assert_eq!(engine.event_queues(), 0);
    }

    #[tokio::test]
    async fn feed_gets_one_record_per_hook_while_listened() {
        let feed = crate::feed::HookFeed::new(8);
        let dispatcher = Dispatcher::new(DispatcherConfig { retries: 0, ..Default::default() }).unwrap();
        let engine = HookEngine::new(dispatcher, false).with_feed(feed.clone());
        let echo =
            App::new("echo", &AppConfig { url: "http://127.0.0.1:9/hooks".into(), ..Default::default() }, true, 4)
                .unwrap();
        // Port 9 (discard) on loopback: nothing listens, the hook is unreachable.
        let dead =
            App::new("dead", &AppConfig { url: "http://127.0.0.1:9/hooks".into(), ..Default::default() }, false, 4)
                .unwrap();
        let rcc = RestClientConfig::default();
        let mut data = serde_json::json!({"login": "alice"}).as_object().unwrap().clone();
        assert!(!feed.listening());
        engine.invoke(&echo, &rcc, HookMethod::Connect, Origin::Client, &mut data, "s0").await;

        let mut listener = feed.subscribe();
        assert_eq!(feed.listeners(), 1);
        engine.invoke(&echo, &rcc, HookMethod::Connect, Origin::Client, &mut data, "s1").await;
        engine.invoke(&dead, &rcc, HookMethod::Connect, Origin::Client, &mut data, "s2").await;

        let r = listener.recv().await.unwrap();
        assert_eq!((r.session.as_str(), &*r.app, r.method), ("s1", "echo", HookMethod::Connect), "s0 ran unheard");
        assert!(!r.http);
        assert_eq!(r.status, None);
        assert_eq!(r.body["login"], "alice");
        assert_eq!(r.answer.as_ref().unwrap()["login"], "alice");
        assert_eq!((r.decision(), r.attempts), ("ok", 1));
        let r = listener.recv().await.unwrap();
        assert_eq!((r.session.as_str(), &*r.app, r.status), ("s2", "dead", None));
        assert!(matches!(r.error, Some(InteractionError::Unreachable { .. })), "{:?}", r.error);
        assert_eq!(r.decision(), "refused");
        assert!(r.answer.is_none());
        drop(listener);
        assert!(!feed.listening());
    }
}
