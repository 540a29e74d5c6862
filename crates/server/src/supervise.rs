//! Supervision of the parts the server cannot run without: the SIP driver
//! (`callgate_sip::transport::Endpoint`) and the media task (`callgate_media::MediaEndpoint`).
//! Each publishes a panic message on a `watch` channel (and the SIP driver's task ends in a
//! panic if the driver itself panicked). The [`Supervisor`] logs a panic at `error`, counts it
//! in `/metrics` (`callgate_sip_driver_panics_total`, `callgate_media_task_panics_total`) and
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
}
