//! Supervision of the parts the server cannot run without: the SIP driver
//! (`callgate_sip::transport::Endpoint`), the media task (`callgate_media::MediaEndpoint`) and
//! the server's own long-lived tasks (the SIP event pump, [`Supervisor::watch_task`]).
//! The first two publish a panic message on a `watch` channel (and the SIP driver's task ends in
//! a panic if the driver itself panicked); a task is watched through its `JoinHandle`. The
//! [`Supervisor`] logs a panic at `error`, counts it in `/metrics`
//! (`callgate_sip_driver_panics_total`, `callgate_media_task_panics_total`,
//! `callgate_task_panics_total{task="sip_pump"}`, each shown at 0 from the start) and
//! reports the first one through [`Supervisor::failed`]; the binary then shuts down (clients
//! told, calls hung up where the SIP side still works) and exits with [`EXIT_CODE`], so that a
//! process supervisor (systemd, Kubernetes) starts a fresh one. Restarting a part in place would
//! leave every stream, call leg, registration and dialog of the old one dangling: a clean
//! restart of the process is the honest option.

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The process exit code after a supervised part failed (`EX_SOFTWARE`, sysexits.h).
pub const EXIT_CODE: i32 = 70;

/// Which part failed, and its panic message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub component: &'static str,
    pub message: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} panicked: {}", self.component, self.message)
    }
}

/// Collects the panics of the supervised parts. Cheap to clone; clones share the state.
#[derive(Clone)]
pub struct Supervisor {
    failed: Arc<watch::Sender<Option<Failure>>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        Supervisor { failed: Arc::new(watch::channel(None).0) }
    }
}

const SIP_DRIVER: &str = "the SIP driver";
const MEDIA_TASK: &str = "the media task";

/// Panics of the server's own tasks, labelled `task`.
pub const TASK_PANICS: &str = "callgate_task_panics_total";

/// Shows `task`'s panic counter in `/metrics` at 0, before the task even starts.
pub fn register_task(task: &'static str) {
    metrics::counter!(TASK_PANICS, "task" => task).increment(0);
}

impl Supervisor {
    /// Watches the SIP driver: a user-agent panic it caught (`panicked`), or its task ending in
    /// a panic.
    pub fn watch_sip_driver(&self, panicked: watch::Receiver<Option<String>>, task: JoinHandle<()>) {
        self.watch(SIP_DRIVER, "callgate_sip_driver_panics_total", panicked, Some(task));
    }

    /// Watches the media task (`MediaEndpoint::panicked`).
    pub fn watch_media(&self, panicked: watch::Receiver<Option<String>>) {
        self.watch(MEDIA_TASK, "callgate_media_task_panics_total", panicked, None);
    }

    /// Watches one of the server's own tasks (`task` is its metric label, `component` how the
    /// log and the [`Failure`] name it): if it ends in a panic, the panic is logged, counted in
    /// `callgate_task_panics_total{task}` and is the failure, as for the SIP driver. The
    /// returned handle ends when the task has ended, however it ended (a shutdown awaits it).
    pub fn watch_task(&self, task: &'static str, component: &'static str, handle: JoinHandle<()>) -> JoinHandle<()> {
        register_task(task);
        let sup = self.clone();
        tokio::spawn(async move {
            match handle.await {
                Err(e) if e.is_panic() => {
                    metrics::counter!(TASK_PANICS, "task" => task).increment(1);
                    sup.record(component, panic_message(e.into_panic()));
                }
                _ => {}
            }
        })
    }

    /// The first failure, once there is one.
    pub fn failure(&self) -> Option<Failure> {
        self.failed.borrow().clone()
    }

    /// Resolves with the first failure (pending while everything runs).
    pub async fn failed(&self) -> Failure {
        let mut rx = self.failed.subscribe();
        let first = rx.wait_for(|f| f.is_some()).await.ok().and_then(|f| f.clone());
        match first {
            Some(f) => f,
            // The sender lives in `self`: it cannot be dropped while this runs.
            None => std::future::pending().await,
        }
    }

    /// Logs, counts and records a panic of `component` (only the first failure is kept).
    pub fn report(&self, component: &'static str, panics_metric: &'static str, message: String) {
        metrics::counter!(panics_metric).increment(1);
        self.record(component, message);
    }

    /// Logs and records a panic of `component` (only the first failure is kept).
    fn record(&self, component: &'static str, message: String) {
        tracing::error!(
            component,
            panic = %message,
            "{component} panicked; callgate shuts down and exits with code {EXIT_CODE} so that its supervisor restarts it"
        );
        self.failed.send_if_modified(|cur| {
            if cur.is_some() {
                return false;
            }
            *cur = Some(Failure { component, message });
            true
        });
    }

    fn watch(
        &self,
        component: &'static str,
        panics_metric: &'static str,
        mut panicked: watch::Receiver<Option<String>>,
        task: Option<JoinHandle<()>>,
    ) {
        // Registered now, so /metrics shows the counter (at 0) before anything happened.
        metrics::counter!(panics_metric).increment(0);
        let sup = self.clone();
        tokio::spawn(async move {
            let task_end = async {
                match task {
                    Some(t) => match t.await {
                        Err(e) if e.is_panic() => Some(panic_message(e.into_panic())),
                        _ => None,
                    },
                    None => std::future::pending().await,
                }
            };
            let message = tokio::select! {
                p = panicked.wait_for(|p| p.is_some()) => match p {
                    Ok(p) => p.clone(),
                    // The part stopped without a panic (a normal shutdown).
                    Err(_) => None,
                },
                m = task_end => m,
            };
            if let Some(message) = message {
                sup.report(component, panics_metric, message);
            }
        });
    }
}

/// The text of a panic payload (`panic!` gives a `&str` or a `String`).
fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    match p.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p.downcast_ref::<&str>().map_or_else(|| "(no message)".to_string(), |s| s.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_first_panic_is_the_failure() {
        let sup = Supervisor::default();
        let (media_tx, media_rx) = watch::channel(None);
        let (sip_tx, sip_rx) = watch::channel(None);
        sup.watch_media(media_rx);
        sup.watch_sip_driver(sip_rx, tokio::spawn(std::future::pending()));
        assert_eq!(sup.failure(), None);
        media_tx.send_replace(Some("boom".to_string()));
        let f = tokio::time::timeout(Duration::from_secs(5), sup.failed()).await.unwrap();
        assert_eq!(f.to_string(), "the media task panicked: boom");
        sip_tx.send_replace(Some("later".to_string()));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(sup.failure().unwrap().component, MEDIA_TASK, "the first failure stays");
    }

    #[tokio::test]
    async fn a_task_that_ends_in_a_panic_is_a_failure_a_normal_stop_is_not() {
        let sup = Supervisor::default();
        let (_keep, rx) = watch::channel(None);
        sup.watch_sip_driver(rx, tokio::spawn(async {}));
        let (tx, rx) = watch::channel::<Option<String>>(None);
        sup.watch_media(rx);
        drop(tx);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(sup.failure(), None);
        let (_keep2, rx) = watch::channel(None);
        sup.watch_sip_driver(rx, tokio::spawn(async { panic!("driver died") }));
        let f = tokio::time::timeout(Duration::from_secs(5), sup.failed()).await.unwrap();
        assert_eq!(f, Failure { component: SIP_DRIVER, message: "driver died".into() });
    }

    /// Review of issue 14: the SIP event pump's handle was dropped, so a panic in it stopped
    /// SIP events silently. A watched task that panics is the failure; its handle still ends.
    #[tokio::test]
    async fn a_watched_task_that_panics_is_a_failure() {
        let sup = Supervisor::default();
        let done = sup.watch_task("t_ok", "a task", tokio::spawn(async {}));
        tokio::time::timeout(Duration::from_secs(5), done).await.unwrap().unwrap();
        assert_eq!(sup.failure(), None, "a task that ends normally is no failure");
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let watched = sup.watch_task(
            "t_panic",
            "the SIP event pump",
            tokio::spawn(async move {
                let _ = wait.await;
                panic!("pump died")
            }),
        );
        assert_eq!(sup.failure(), None);
        go.send(()).unwrap();
        let f = tokio::time::timeout(Duration::from_secs(5), sup.failed()).await.unwrap();
        assert_eq!(f.to_string(), "the SIP event pump panicked: pump died");
        tokio::time::timeout(Duration::from_secs(5), watched).await.unwrap().unwrap();
    }
}
