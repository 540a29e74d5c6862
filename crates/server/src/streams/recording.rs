//! Recording of published streams (`publishStream {record: true}`): the `[recording]` policy
//! (directory, size and age limits), the file's name (`recordName`, which the SDK's
//! `getRecordInfo()` returns), the writer's reports turned into statuses, and the download route
//! `GET /client/records/{recordName}` (where the SDK's Stream Recording demo page links to).
//!
//! The media itself is written by `callgate_media::record` (WebM: VP8 + Opus, on a thread of
//! its own). A write error or a codec WebM cannot carry ends the stream `FAILED` with
//! `Recording failed: …`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use callgate_hooks::{HookMethod, Origin};
use callgate_media::record::{RecordReport, RecordSpec, RecordSummary, DEFAULT_QUEUE};
use callgate_media::PeerId;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tower_service::Service;

use super::{end_stream, Ending, Streams};
use crate::config::RecordingSection;
use crate::party::Party;

/// `info` of a `record: true` publish when `[recording] enabled = false`.
pub const RECORDING_DISABLED: &str = "Recording is disabled on this server";

/// How long a download of a recording that is still being finalized waits for it.
const FINALIZE_WAIT: Duration = Duration::from_secs(10);

/// The `[recording]` policy and the recordings in progress.
pub struct Recordings {
    pub enabled: bool,
    pub dir: PathBuf,
    pub max_bytes: u64,
    pub max_age: Option<Duration>,
    pub queue: usize,
    pub download: bool,
    /// recordName -> `true` once finalized (or failed): downloads wait for it.
    active: Mutex<HashMap<String, watch::Receiver<bool>>>,
}

/// A recording about to start: the file is created, the media task is not yet told.
pub struct Started {
    pub record_name: String,
    spec: RecordSpec,
    done: watch::Sender<bool>,
}

impl Recordings {
    pub fn from_config(c: &RecordingSection) -> Recordings {
        Recordings {
            enabled: c.enabled,
            dir: PathBuf::from(&c.dir),
            max_bytes: c.max_bytes,
            max_age: (c.max_age_s > 0).then(|| Duration::from_secs(c.max_age_s)),
            queue: if c.queue_packets == 0 { DEFAULT_QUEUE } else { c.queue_packets },
            download: c.download,
            active: Mutex::new(HashMap::new()),
        }
    }

    /// Creates the file of a new recording of stream `name` (the directory too). `Err` is the
    /// client's `info`.
    pub fn create(&self, name: &str) -> Result<Started, String> {
        let record_name = record_name(name, SystemTime::now());
        let path = self.dir.join(&record_name);
        let file = std::fs::create_dir_all(&self.dir)
            .map_err(|e| format!("cannot create the directory {}: {e}", self.dir.display()))
            .and_then(|()| {
                std::fs::File::create_new(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))
            });
        let file = match file {
            Ok(f) => f,
            Err(why) => {
                tracing::warn!(stream = name, error = %why, "recording not started");
                metrics::counter!("callgate_recordings_total", "result" => "failed").increment(1);
                return Err(format!("Recording failed: {why}"));
            }
        };
        let (done, rx) = watch::channel(false);
        self.active.lock().insert(record_name.clone(), rx);
        Ok(Started { record_name, spec: RecordSpec { file, path, queue: self.queue }, done })
    }

    /// Deletes recordings older than `max_age`, then the oldest while the directory holds more
    /// than `max_bytes` (recordings in progress are kept). Returns how many were deleted.
    pub fn enforce_limits(&self) -> usize {
        if self.max_age.is_none() && self.max_bytes == 0 {
            return 0;
        }
        let active: Vec<String> = self.active.lock().keys().cloned().collect();
        let Ok(rd) = std::fs::read_dir(&self.dir) else { return 0 };
        let mut files: Vec<(SystemTime, u64, PathBuf)> = rd
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                if !is_record_name(&name) || active.contains(&name) {
                    return None;
                }
                let m = e.metadata().ok().filter(|m| m.is_file())?;
                Some((m.modified().unwrap_or(UNIX_EPOCH), m.len(), e.path()))
            })
            .collect();
        files.sort();
        let now = SystemTime::now();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        let mut deleted = 0;
        for (mtime, len, path) in files {
            let too_old = self.max_age.is_some_and(|a| now.duration_since(mtime).unwrap_or_default() > a);
            let too_big = self.max_bytes > 0 && total > self.max_bytes;
            if !too_old && !too_big {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    total -= len;
                    deleted += 1;
                    metrics::counter!("callgate_recordings_deleted_total").increment(1);
                    tracing::info!(path = %path.display(), bytes = len, too_old, "recording deleted ([recording] limits)");
                }
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "recording could not be deleted"),
            }
        }
        deleted
    }

    /// The file of `record_name`, once it is finalized (waits up to [`FINALIZE_WAIT`] for one
    /// still being written). `None`: no such recording.
    async fn finished_file(&self, record_name: &str) -> Option<PathBuf> {
        if !is_record_name(record_name) {
            return None;
        }
        let waiting = self.active.lock().get(record_name).cloned();
        if let Some(mut rx) = waiting {
            let _ = tokio::time::timeout(FINALIZE_WAIT, rx.wait_for(|done| *done)).await;
        }
        let path = self.dir.join(record_name);
        path.is_file().then_some(path)
    }
}

/// `<stream name>-<UTC yyyymmddhhmmss>-<ms>.webm`, the name reduced to `[A-Za-z0-9_-]` (at most
/// 64 characters) so that it is a plain file name and a plain URL path segment.
pub fn record_name(stream: &str, now: SystemTime) -> String {
    let clean: String = stream
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .take(64)
        .collect();
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (days, secs) = (since.as_secs() / 86_400, since.as_secs() % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{clean}-{y:04}{m:02}{d:02}{:02}{:02}{:02}-{:03}.webm",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        since.subsec_millis()
    )
}

/// A name [`record_name`] could have made: no path separators, no leading dot, `.webm`.
fn is_record_name(n: &str) -> bool {
    n.len() <= 128
        && n.ends_with(".webm")
        && !n.starts_with('.')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm;
/// hand-written to avoid a date crate for one timestamp in a file name).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Tells the media task to record publisher `peer` of stream `id` (`name`, owned by `owner`),
/// and watches the writer's reports: each becomes a `RecordingStatusEvent` to the owner's
/// backend; `Failed` also ends the stream `FAILED` (`Recording failed: …`); the end applies the
/// limits. `Err` (the media task refused) is the client's `info`.
pub(super) async fn start(
    streams: &Arc<Streams>,
    owner: Arc<Party>,
    id: Arc<str>,
    name: String,
    peer: PeerId,
    rec: Started,
) -> Result<(), String> {
    let Started { record_name, spec, done } = rec;
    let (tx, rx) = mpsc::unbounded_channel();
    if let Err(e) = streams.media.record(peer, spec, tx).await {
        finished(streams, &record_name, &done);
        return Err(format!("Recording failed: {e}"));
    }
    tracing::info!(stream = &*id, record_name, "recording");
    let w = Watch { streams: Arc::downgrade(streams), owner, id, name, peer, record_name, done };
    tokio::spawn(w.run(rx));
    Ok(())
}

/// What the task that watches one recording's reports needs.
struct Watch {
    streams: Weak<Streams>,
    owner: Arc<Party>,
    id: Arc<str>,
    name: String,
    peer: PeerId,
    record_name: String,
    done: watch::Sender<bool>,
}

impl Watch {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<RecordReport>) {
        while let Some(report) = rx.recv().await {
            let Some(streams) = self.streams.upgrade() else { return };
            match report {
                RecordReport::Started => self.event("STARTED", "", None),
                RecordReport::Failed(why) => {
                    let info = format!("Recording failed: {why}");
                    end_stream(&streams, &self.id, Some(self.peer), Ending::MediaFailed(&info), Origin::Client);
                    // Nothing was written (no keyframe ever came): no empty file is left.
                    if let Some(rec) = &streams.recordings {
                        let path = rec.dir.join(&self.record_name);
                        if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                    self.event("FAILED", &info, None);
                    finished(&streams, &self.record_name, &self.done);
                    return;
                }
                RecordReport::Finished(s) => {
                    self.event("FINISHED", "", Some(&s));
                    finished(&streams, &self.record_name, &self.done);
                    return;
                }
            }
        }
        // The writer ended without a word (the media task stopped).
        if let Some(streams) = self.streams.upgrade() {
            finished(&streams, &self.record_name, &self.done);
        }
    }

    /// `RecordingStatusEvent` to the owner's backend (docs/hooks.md §10).
    fn event(&self, status: &str, info: &str, s: Option<&RecordSummary>) {
        let mut m = Map::new();
        m.insert("mediaSessionId".into(), Value::from(&*self.id));
        m.insert("name".into(), Value::from(self.name.as_str()));
        m.insert("recordName".into(), Value::from(self.record_name.as_str()));
        m.insert("status".into(), status.into());
        m.insert("info".into(), info.into());
        if let Some(s) = s {
            m.insert("bytes".into(), s.bytes.into());
            m.insert("durationMs".into(), (s.duration.as_millis() as u64).into());
            m.insert("videoFrames".into(), s.video_frames.into());
            m.insert("audioFrames".into(), s.audio_frames.into());
            m.insert("droppedPackets".into(), s.dropped_packets.into());
        }
        tracing::info!(stream = &*self.id, record_name = self.record_name, status, info, "recording status");
        self.owner.raise_event(HookMethod::RecordingStatusEvent, Origin::Client, self.owner.with_context(m), None);
    }
}

/// The publish failed before the media task was told: the (empty) file goes.
pub(super) fn abandon(streams: &Arc<Streams>, rec: Started) {
    let _ = std::fs::remove_file(&rec.spec.path);
    finished(streams, &rec.record_name, &rec.done);
}

/// The recording is over: downloads stop waiting, the limits apply (off the async threads).
fn finished(streams: &Arc<Streams>, record_name: &str, done: &watch::Sender<bool>) {
    let Some(rec) = streams.recordings.clone() else { return };
    rec.active.lock().remove(record_name);
    done.send_replace(true);
    tokio::task::spawn_blocking(move || rec.enforce_limits());
}

/// `GET /client/records/{recordName}` on the HTTP port: the recorded file (`video/webm`, with
/// range requests for players), once finalized; 404 for anything else. No credentials, as on
/// WCS: the SDK's demo page links to it directly (`[recording] download = false` turns it off).
pub fn router<S: Clone + Send + Sync + 'static>(streams: Arc<Streams>) -> Router<S> {
    Router::new().route("/client/records/{name}", get(download)).with_state(streams)
}

async fn download(State(streams): State<Arc<Streams>>, UrlPath(name): UrlPath<String>, req: Request) -> Response {
    let Some(rec) = streams.recordings.as_ref().filter(|r| r.download) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Some(path) = rec.finished_file(&name).await else {
        return (StatusCode::NOT_FOUND, "no such recording").into_response();
    };
    let mut serve = tower_http::services::ServeFile::new_with_mime(&path, &"video/webm".parse().expect("a MIME type"));
    match serve.call(req).await {
        Ok(mut r) => {
            r.headers_mut().insert(header::CACHE_CONTROL, "no-store".parse().expect("a header value"));
            r.into_response()
        }
        Err(e) => {
            tracing::warn!(path = %Path::new(&path).display(), error = %e, "recording not served");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_are_plain_file_names() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_927_005_123); // 2025-12-05 09:30:05.123 UTC
        assert_eq!(record_name("cam1", t), "cam1-20251205093005-123.webm");
        assert_eq!(record_name("../a b/ü", t), "___a_b__-20251205093005-123.webm");
        assert!(is_record_name(&record_name("x", t)));
        for bad in ["../x.webm", ".hidden.webm", "a/b.webm", "a.mp4", "a%2fb.webm"] {
            assert!(!is_record_name(bad), "{bad}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
