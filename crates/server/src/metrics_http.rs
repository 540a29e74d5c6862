//! Prometheus metrics at `GET /metrics` on the HTTP port.
//!
//! Hook latency: `callgate_hook_duration_seconds{method,outcome}` (histogram); outcomes:
//! `callgate_hook_requests_total{method,outcome}`; sessions: `callgate_sessions`,
//! `callgate_ws_connections`; bad client frames: `callgate_client_frame_errors_total` (oversize
//! messages included); clients dropped for not reading: `callgate_ws_write_timeouts_total`; for
//! not logging in: `callgate_ws_login_timeouts_total`; direct invocations refused by
//! `hooks.max_in_flight_per_session`: `callgate_hook_refused_in_flight_total`.
//!
//! Admission (`[limits]`, `admission.rs`): `callgate_limit{what}` (each configured limit, so a
//! dashboard can show use against limit), `callgate_admitted_sessions`, `callgate_calls`,
//! `callgate_streams` (read at scrape time), `callgate_rest_in_flight`, and refusals by kind in
//! `callgate_admission_refused_total{what}`.
//!
//! Cluster (`[cluster]`, `cluster.rs`): `callgate_cluster_nodes` (live nodes as of the last
//! heartbeat), `callgate_cluster_heartbeat_failures_total`.

use std::sync::{Arc, OnceLock};

use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::node::Shared;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once (several servers in one test process share it).
pub fn install_recorder() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("callgate_hook_duration_seconds".into()),
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0],
            )
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics shows only callgate's own recorder");
        }
        handle
    })
}

/// Starts the recorder's upkeep once per process: without it, histogram samples pile up in
/// memory until `/metrics` is scraped, so a server nobody scrapes would grow without bound.
pub fn spawn_upkeep() {
    static STARTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if STARTED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let handle = install_recorder().clone();
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(5));
            handle.run_upkeep();
        })
        .expect("spawning the metrics upkeep thread");
}

pub fn router<S: Clone + Send + Sync + 'static>(shared: Arc<Shared>) -> Router<S> {
    Router::new().route(
        "/metrics",
        get(move || {
            let shared = shared.clone();
            async move {
                scrape_gauges(&shared);
                install_recorder().render()
            }
        }),
    )
}

/// Gauges read at scrape time rather than kept up to date on every change.
fn scrape_gauges(shared: &Shared) {
    let l = &shared.cfg.limits;
    for (what, limit) in [
        ("sessions", l.max_sessions),
        ("sessions_per_ip", l.max_sessions_per_ip),
        ("calls", l.max_calls),
        ("streams", l.max_streams),
        ("rest_in_flight", l.max_rest_in_flight),
    ] {
        metrics::gauge!("callgate_limit", "what" => what).set(limit as f64);
    }
    metrics::gauge!("callgate_streams").set(shared.streams.len() as f64);
    if let Some(r) = shared.calls.registrar() {
        metrics::gauge!("callgate_registrar_contacts").set(r.contacts() as f64);
    }
    if let Some(c) = &shared.cluster {
        metrics::gauge!("callgate_cluster_nodes").set(c.live_nodes() as f64);
    }
}
