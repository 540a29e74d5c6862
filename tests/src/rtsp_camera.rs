//! A real RTSP camera for tests: Debian's GStreamer RTSP server (`tests/rtsp/rtsp_server.py`, a
//! live x264 test picture on 127.0.0.1, optional Basic auth and audio) as a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

/// The camera: the GStreamer RTSP server as a child process, and the client events it printed
/// (read by a thread of its own). Dropping it kills the process.
pub struct Camera {
    pub port: u16,
    events: Arc<Mutex<Vec<String>>>,
    child: Child,
}

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Camera {
    pub async fn start(auth: Option<(&str, &str)>) -> Camera {
        Camera::start_with(auth, &[]).await
    }

    /// `args`: more of the script's options (`--keyint N`, `--port N`).
    pub async fn start_with(auth: Option<(&str, &str)>, args: &[&str]) -> Camera {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/rtsp/rtsp_server.py");
        // Debian's python3 (python3-gi is a Debian package), whatever python3 is first in PATH.
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script);
        if let Some((u, p)) = auth {
            cmd.args(["--user", u, "--password", p]);
        }
        cmd.args(args);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with gir1.2-gst-rtsp-server-1.0 (make deps)");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (port_tx, port_rx) = tokio::sync::oneshot::channel();
        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        std::thread::spawn(move || {
            let first = lines.next().and_then(Result::ok).unwrap_or_default();
            let _ = port_tx.send(first);
            for l in lines.map_while(Result::ok) {
                ev.lock().push(l);
            }
        });
        let first = tokio::time::timeout(Duration::from_secs(20), port_rx)
            .await
            .expect("the RTSP server starts")
            .expect("its first line");
        let port: u16 = first.strip_prefix("PORT ").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{first:?}"));
        Camera { port, events, child }
    }

    pub fn url(&self, userinfo: &str) -> String {
        format!("rtsp://{userinfo}127.0.0.1:{}/test", self.port)
    }

    /// What the server printed about its clients so far (`CONNECTED`, `PLAY`, ...).
    pub fn events(&self) -> Vec<String> {
        self.events.lock().clone()
    }

    pub fn count(&self, event: &str) -> usize {
        self.events.lock().iter().filter(|e| *e == event).count()
    }

    pub async fn wait_for(&self, event: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while self.count(event) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the RTSP server never saw {event}: {:?}",
                self.events.lock()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
