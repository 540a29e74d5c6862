//! The dead-letter file: events the backend could not be given (retries exhausted, or still
//! queued when the shutdown's deadline passed), one JSON object per line, and [`replay`], which
//! sends them again (`callgate events replay FILE`).
//!
//! A line holds everything needed to send the event again as it was first sent: the app, its
//! URL at the time, the method, the body (with its `sequence` and `eventId`, so that a backend
//! that got the event after all drops the replay as a duplicate), and why it was given up.
//!
//! The file is bounded (`dead_letter_max_bytes`): an event that would make it larger is not
//! written, counted in `callgate_hook_events_dropped_total{reason="dead_letter_full"}` and logged
//! once per burst. It is opened for each line (dead letters are rare), so an operator may move
//! or delete it after a replay and the next line starts a new file.

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::app::{App, AppConfig, AppRegistry};
use crate::catalogue::HookMethod;
use crate::dispatch::{AnswerUse, Dispatcher};

/// One line of the dead-letter file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadEvent {
    /// The app's `appKey`.
    pub app: String,
    /// The app's REST URL when the event was given up (used by a replay when the config it is
    /// given has no such app).
    pub url: String,
    /// The hook method (`CallStatusEvent`, ...).
    pub method: String,
    pub event_id: String,
    pub session_id: String,
    pub sequence: u64,
    /// Attempts made before it was given up (0: still queued at the shutdown's deadline).
    pub attempts: u32,
    /// The last attempt's error.
    pub error: String,
    /// When it was given up, Unix seconds.
    pub dead_at: u64,
    /// The body as sent (after `restExclude`).
    pub body: Map<String, Value>,
}

/// The dead-letter file of a server.
#[derive(Debug)]
pub struct DeadLetter {
    path: PathBuf,
    max_bytes: u64,
    /// Serialises appends (lines from several sessions' workers).
    write: Mutex<()>,
    /// Set while lines are refused (full file, write error): logged once per burst.
    refusing: AtomicBool,
}

impl DeadLetter {
    /// Checks that `path` can be opened for appending (creating it) and returns the file's handle.
    pub fn open(path: &Path, max_bytes: u64) -> io::Result<DeadLetter> {
        std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(DeadLetter { path: path.to_path_buf(), max_bytes, write: Mutex::new(()), refusing: AtomicBool::new(false) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `ev` as one line. False when it was not written (the file would pass
    /// `max_bytes`, or writing failed); the first refusal of a burst is logged.
    ///
    /// Plain blocking file I/O: a line is a few hundred bytes, written only for an event that is
    /// given up, which is rare; a blocking-pool hop per line would cost more than it saves.
    pub fn append(&self, ev: &DeadEvent) -> bool {
        let mut line = match serde_json::to_vec(ev) {
            Ok(l) => l,
            Err(e) => return self.refused(&format!("cannot serialise the event: {e}")),
        };
        line.push(b'\n');
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let result = (|| -> io::Result<bool> {
            let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&self.path)?;
            let size = f.metadata()?.len();
            if size + line.len() as u64 > self.max_bytes {
                return Ok(false);
            }
            f.write_all(&line)?;
            Ok(true)
        })();
        match result {
            Ok(true) => {
                if self.refusing.swap(false, Ordering::Relaxed) {
                    tracing::info!(path = %self.path.display(), "dead-letter file accepts events again");
                }
                true
            }
            Ok(false) => self.refused(&format!("the file would pass dead_letter_max_bytes = {}", self.max_bytes)),
            Err(e) => self.refused(&e.to_string()),
        }
    }

    fn refused(&self, why: &str) -> bool {
        metrics::counter!("callgate_hook_events_dropped_total", "reason" => "dead_letter_full").increment(1);
        if !self.refusing.swap(true, Ordering::Relaxed) {
            tracing::error!(
                path = %self.path.display(),
                reason = why,
                "dead-letter file refuses events; they are lost (counted in callgate_hook_events_dropped_total{{reason=\"dead_letter_full\"}}) until it accepts again"
            );
        }
        false
    }
}

/// What a [`replay`] did.
#[derive(Debug, Default)]
pub struct ReplayReport {
    pub delivered: usize,
    /// `(eventId or "line N", why)` of each event not delivered.
    pub failed: Vec<(String, String)>,
}

/// Sends every event of the dead-letter file at `path` again, in the file's order, once each
/// (the dispatcher's connect-level retry included), with its `eventId` as `webhook-id`.
///
/// An event goes to the app of its `app` key in `apps` (the current config's URL and
/// credentials), else to the URL in its line. Once an event of a session fails, that session's
/// later events are not sent (they fail too): the backend never sees a session's events out of
/// order. The file is not changed; after a replay with failures it can be replayed again (the
/// backend drops what it already has by `eventId`).
pub async fn replay(path: &Path, dispatcher: &Dispatcher, apps: &AppRegistry) -> io::Result<ReplayReport> {
    let file = std::fs::File::open(path)?;
    let mut report = ReplayReport::default();
    let mut broken_sessions: HashSet<String> = HashSet::new();
    let mut by_url: HashMap<(String, String), Arc<App>> = HashMap::new();
    for (n, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let ev: DeadEvent = match serde_json::from_str(&line) {
            Ok(ev) => ev,
            Err(e) => {
                report.failed.push((format!("line {}", n + 1), format!("not a dead-letter line: {e}")));
                continue;
            }
        };
        if broken_sessions.contains(&ev.session_id) {
            report.failed.push((ev.event_id, "held back: an earlier event of its session was not delivered".into()));
            continue;
        }
        let result = async {
            let method = HookMethod::from_name(&ev.method).ok_or_else(|| format!("unknown method {:?}", ev.method))?;
            let app = match apps.get(&ev.app) {
                Some(a) => a.clone(),
                None => match by_url.get(&(ev.app.clone(), ev.url.clone())) {
                    Some(a) => a.clone(),
                    None => {
                        let cfg = AppConfig { url: ev.url.clone(), ..Default::default() };
                        let a = Arc::new(App::new(&ev.app, &cfg, false, 16).map_err(|e| e.to_string())?);
                        by_url.insert((ev.app.clone(), ev.url.clone()), a.clone());
                        a
                    }
                },
            };
            let body = serde_json::to_vec(&ev.body).map_err(|e| e.to_string())?;
            dispatcher
                .post_with_id(&app, method, Bytes::from(body), AnswerUse::Validate, Some(&ev.event_id))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok(()) => report.delivered += 1,
            Err(why) => {
                broken_sessions.insert(ev.session_id.clone());
                report.failed.push((ev.event_id, why));
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u64) -> DeadEvent {
        DeadEvent {
            app: "a".into(),
            url: "http://127.0.0.1:9/h".into(),
            method: "CallStatusEvent".into(),
            event_id: format!("evt_{n}"),
            session_id: "s".into(),
            sequence: n,
            attempts: 3,
            error: "backend unreachable".into(),
            dead_at: 1,
            body: serde_json::json!({"status": "FINISH", "sequence": n}).as_object().unwrap().clone(),
        }
    }

    #[test]
    fn lines_round_trip_and_the_file_is_bounded() {
        let dir = std::env::temp_dir().join(format!("callgate-dl-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dead.jsonl");
        let _ = std::fs::remove_file(&path);
        let one = serde_json::to_vec(&event(1)).unwrap().len() as u64 + 1;
        let dl = DeadLetter::open(&path, one * 2 + one / 2).unwrap();
        assert!(dl.append(&event(1)));
        assert!(dl.append(&event(2)));
        assert!(!dl.append(&event(3)), "a third line would pass the bound");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<DeadEvent> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines, vec![event(1), event(2)]);
        assert!(text.contains("\"eventId\":\"evt_1\"") && text.contains("\"sessionId\":\"s\""), "{text}");
        // Deleted after a replay: the next line starts a new file.
        std::fs::remove_file(&path).unwrap();
        assert!(dl.append(&event(4)));
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_missing_directory_is_an_error_at_open() {
        assert!(DeadLetter::open(Path::new("/nonexistent-dir-callgate/dead.jsonl"), 1024).is_err());
    }
}
