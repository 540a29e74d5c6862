//! Stream recording: a publisher's RTP, as the media core receives it, written to a WebM file
//! (Opus audio, VP8 video) without transcoding.
//!
//! ```text
//!  media task (core.rs, per publisher packet)          writer thread (one per recording)
//!  RecordTap::offer ── bounded sync_channel ──────────> Recording::push
//!   (payload Arc shared, no copy;                        VP8: depacketize (RFC 7741), start at a
//!    a full queue drops and counts, never blocks)             keyframe, drop until the next one after a loss
//!                                                       Opus: one packet = one frame
//!                                                       interleave by time -> libwebm (webm crate)
//!                                                       channel closed (stream ended) -> finalize
//!                                                       -> RecordReport::Finished / Failed
//! ```
//!
//! The muxer is the `webm` crate, a wrapper of libwebm (the muxer of Chromium's MediaRecorder
//! and of libvpx's tools): cues, cluster sizes and the segment duration are written the way
//! players expect, which a hand-written EBML writer would have to get right on its own. libwebm
//! wants timestamps that never go back across tracks, hence the small interleaving buffer
//! ([`HOLD`]) in front of it.
//!
//! H.264 (or any codec but VP8 and Opus) is refused with [`RecordReport::Failed`]
//! ("recording H.264 is not supported"): WebM cannot carry it, and no MP4 writer is wired in.

use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use str0m::format::Codec;
use str0m::media::MediaKind;
use tokio::sync::mpsc::UnboundedSender;
use webm::mux::{AudioCodecId, AudioTrack, Segment, SegmentBuilder, VideoCodecId, VideoTrack};

/// How far (media time) frames are held back to be written in time order across tracks. Audio
/// and video of one browser arrive within a few tens of milliseconds of each other.
pub const HOLD: Duration = Duration::from_millis(500);

/// Packets that may wait for the writer thread before the tap drops (about 10 s of a 30 fps
/// video stream with audio).
pub const DEFAULT_QUEUE: usize = 4096;

/// What to record to.
#[derive(Debug)]
pub struct RecordSpec {
    /// The file, created (and truncated) by the caller: a path that cannot be created fails
    /// before anything is recorded.
    pub file: File,
    /// Where `file` is (for the reports and logs).
    pub path: PathBuf,
    /// Packets queued towards the writer before the tap drops ([`DEFAULT_QUEUE`]).
    pub queue: usize,
}

/// What a recording tells whoever started it (on the channel given to
/// [`crate::MediaEndpoint::record`]).
#[derive(Debug, Clone, PartialEq)]
pub enum RecordReport {
    /// The first frame was written (a VP8 keyframe, or audio for an audio-only stream).
    Started,
    /// Nothing more is written: the codec cannot be recorded, or the file could not be written.
    /// The file is left as far as it was written.
    Failed(String),
    /// The stream ended and the file was finalized.
    Finished(RecordSummary),
}

/// A finished recording.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordSummary {
    pub path: PathBuf,
    pub bytes: u64,
    /// Media time from the first to the last frame written.
    pub duration: Duration,
    pub video_frames: u64,
    pub audio_frames: u64,
    /// Packets the media task dropped because the writer had fallen behind.
    pub dropped_packets: u64,
    /// Video frames not written (incomplete after a loss, or before the first keyframe).
    pub skipped_frames: u64,
}

/// One publisher packet for the writer.
#[derive(Debug, Clone)]
pub struct RecPacket {
    pub kind: MediaKind,
    pub codec: Codec,
    /// Extended (64-bit) sequence number.
    pub seq: u64,
    /// RTP timestamp.
    pub ts: u32,
    pub marker: bool,
    pub payload: Arc<[u8]>,
    pub arrival: Instant,
}

/// The media task's end of a recording: one per publisher being recorded.
pub struct RecordTap {
    tx: SyncSender<RecPacket>,
    dropped: Arc<AtomicU64>,
    dropped_metric: metrics::Counter,
    /// A video packet was dropped: the publisher is asked for a keyframe (the writer skips to it).
    pub wants_keyframe: bool,
}

impl RecordTap {
    /// Hands a packet to the writer; never blocks. `false` once the writer is gone (it failed
    /// or finished): the tap can be dropped.
    pub fn offer(&mut self, pkt: RecPacket) -> bool {
        let video = pkt.kind == MediaKind::Video;
        match self.tx.try_send(pkt) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                self.dropped_metric.increment(1);
                self.wants_keyframe |= video;
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

/// Starts the writer thread for `spec`; `has_video` says whether to wait for a VP8 keyframe
/// before writing anything. Reports go to `reports`.
pub fn start(
    spec: RecordSpec,
    has_audio: bool,
    has_video: bool,
    reports: UnboundedSender<RecordReport>,
) -> io::Result<RecordTap> {
    let (tx, rx) = sync_channel(spec.queue.max(1));
    let dropped = Arc::new(AtomicU64::new(0));
    let d = dropped.clone();
    std::thread::Builder::new().name("callgate-record".into()).spawn(move || {
        let RecordSpec { file, path, .. } = spec;
        let rec = Recording::new(file, path, has_audio, has_video);
        run(rec, rx, d, &reports);
    })?;
    Ok(RecordTap {
        tx,
        dropped,
        dropped_metric: metrics::counter!("callgate_recording_packets_dropped_total"),
        wants_keyframe: false,
    })
}

fn run(
    mut rec: Recording<File>,
    rx: Receiver<RecPacket>,
    dropped: Arc<AtomicU64>,
    reports: &UnboundedSender<RecordReport>,
) {
    let mut started = false;
    while let Ok(pkt) = rx.recv() {
        if let Err(why) = rec.push(&pkt) {
            tracing::warn!(path = %rec.path.display(), error = %why, "recording failed");
            metrics::counter!("callgate_recordings_total", "result" => "failed").increment(1);
            let _ = reports.send(RecordReport::Failed(why));
            return;
        }
        if !started && rec.frames_written() > 0 {
            started = true;
            let _ = reports.send(RecordReport::Started);
        }
    }
    // The tap is gone: the stream ended.
    let path = rec.path.clone();
    match rec.finish(dropped.load(Ordering::Relaxed)) {
        Ok((summary, _file)) => {
            tracing::info!(path = %summary.path.display(), bytes = summary.bytes, duration_ms = summary.duration.as_millis() as u64,
                video_frames = summary.video_frames, audio_frames = summary.audio_frames,
                dropped_packets = summary.dropped_packets, "recording finished");
            metrics::counter!("callgate_recordings_total", "result" => "finished").increment(1);
            let _ = reports.send(RecordReport::Finished(summary));
        }
        Err(why) => {
            tracing::warn!(path = %path.display(), error = %why, "recording could not be finalized");
            metrics::counter!("callgate_recordings_total", "result" => "failed").increment(1);
            let _ = reports.send(RecordReport::Failed(why));
        }
    }
}

/// A `Write + Seek` that keeps the first I/O error, so that a failure libwebm only reports as
/// "false" reaches the client as what it was ("No space left on device").
pub struct Tracked<W> {
    inner: W,
    error: Arc<Mutex<Option<String>>>,
}

impl<W> Tracked<W> {
    fn note<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert_with(|| e.to_string());
        }
        r
    }
}

impl<W: Write> Write for Tracked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}

impl<W: Seek> Seek for Tracked<W> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let r = self.inner.seek(pos);
        self.note(r)
    }
}

/// A frame waiting in the interleaving buffer.
struct Pending {
    ts_ns: u64,
    order: u64,
    video: bool,
    keyframe: bool,
    data: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.ts_ns, self.order) == (o.ts_ns, o.order)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    /// Reversed: the heap's top is the earliest frame.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.ts_ns, o.order).cmp(&(self.ts_ns, self.order))
    }
}

/// RTP timestamps of one track, extended past wraps and made relative to the track's first.
#[derive(Default)]
struct Clock {
    first: Option<(u32, u64)>,
    last: u32,
    cycles: u64,
}

impl Clock {
    /// Nanoseconds of `ts` since the recording's start; `offset_ns` is where the track's first
    /// packet lies on that timeline.
    fn ns(&mut self, ts: u32, hz: u64, offset_ns: u64) -> u64 {
        let (first, base) = *self.first.get_or_insert((ts, offset_ns));
        // A step back by more than half the range is a wrap forwards.
        if ts < self.last && self.last - ts > u32::MAX / 2 {
            self.cycles += 1;
        } else if ts > self.last && ts - self.last > u32::MAX / 2 && self.cycles > 0 {
            // A late packet from before the last wrap.
            let ext = (self.cycles - 1) * (1 << 32) + u64::from(ts);
            return base + ext.saturating_sub(u64::from(first)) * 1_000_000_000 / hz;
        }
        self.last = ts;
        let ext = self.cycles * (1 << 32) + u64::from(ts);
        base + ext.saturating_sub(u64::from(first)) * 1_000_000_000 / hz
    }
}

/// The VP8 frame being put together from its packets.
struct Vp8Frame {
    ts: u32,
    next_seq: u64,
    data: Vec<u8>,
}

/// The muxer once the tracks are known.
struct Muxer<W: Write + Seek> {
    segment: Segment<Tracked<W>>,
    video: Option<VideoTrack>,
    audio: Option<AudioTrack>,
}

/// One recording's state (the writer thread's): depacketizing, timing, interleaving, muxing.
/// Generic over the output so tests can write to memory or to a failing writer.
pub struct Recording<W: Write + Seek> {
    pub path: PathBuf,
    /// The output until the segment is built (at the first keyframe).
    out: Option<W>,
    error: Arc<Mutex<Option<String>>>,
    mux: Option<Muxer<W>>,
    has_audio: bool,
    has_video: bool,
    start: Option<Instant>,
    vclock: Clock,
    aclock: Clock,
    vp8: Option<Vp8Frame>,
    last_vseq: Option<u64>,
    /// After a loss: video frames are skipped until the next keyframe.
    need_keyframe: bool,
    heap: BinaryHeap<Pending>,
    order: u64,
    newest_ns: u64,
    last_written_ns: u64,
    video_frames: u64,
    audio_frames: u64,
    skipped_frames: u64,
}

impl<W: Write + Seek> Recording<W> {
    pub fn new(out: W, path: PathBuf, has_audio: bool, has_video: bool) -> Recording<W> {
        Recording {
            path,
            out: Some(out),
            error: Arc::new(Mutex::new(None)),
            mux: None,
            has_audio,
            has_video,
            start: None,
            vclock: Clock::default(),
            aclock: Clock::default(),
            vp8: None,
            last_vseq: None,
            need_keyframe: true,
            heap: BinaryHeap::new(),
            order: 0,
            newest_ns: 0,
            last_written_ns: 0,
            video_frames: 0,
            audio_frames: 0,
            skipped_frames: 0,
        }
    }

    /// Frames handed to the muxer so far.
    pub fn frames_written(&self) -> u64 {
        self.video_frames + self.audio_frames
    }

    /// Takes one packet. `Err` is final: the codec cannot be recorded or the output failed.
    pub fn push(&mut self, pkt: &RecPacket) -> Result<(), String> {
        match (pkt.kind, pkt.codec) {
            (MediaKind::Video, Codec::Vp8) => self.push_vp8(pkt)?,
            (MediaKind::Audio, Codec::Opus) => self.push_opus(pkt)?,
            (_, codec) => return Err(format!("recording {codec} is not supported (WebM: VP8 and Opus only)")),
        }
        self.write_ready(false)
    }

    fn push_opus(&mut self, pkt: &RecPacket) -> Result<(), String> {
        if !self.has_audio {
            return Ok(());
        }
        if self.mux.is_none() {
            if self.has_video {
                return Ok(()); // the file starts at the first video keyframe
            }
            self.build(None)?;
            self.start = Some(pkt.arrival);
        }
        let offset = self.offset_ns(pkt.arrival);
        let ts_ns = self.aclock.ns(pkt.ts, 48_000, offset);
        self.queue(ts_ns, false, true, pkt.payload.to_vec());
        Ok(())
    }

    fn push_vp8(&mut self, pkt: &RecPacket) -> Result<(), String> {
        if !self.has_video {
            return Ok(());
        }
        // A missing packet (between frames too: a whole frame may be gone) breaks the frames
        // after it until the next keyframe; a late or repeated one is of no use any more.
        if let Some(last) = self.last_vseq {
            if pkt.seq <= last {
                return Ok(());
            }
            if pkt.seq != last + 1 {
                self.vp8 = None;
                self.lost();
            }
        }
        self.last_vseq = Some(pkt.seq);
        let Some((start, payload)) = vp8_payload(&pkt.payload) else {
            self.lost();
            return Ok(());
        };
        if start {
            if self.vp8.take().is_some() {
                // The previous frame never saw its marker: incomplete.
                self.lost();
            }
            self.vp8 = Some(Vp8Frame { ts: pkt.ts, next_seq: pkt.seq, data: Vec::new() });
        }
        let Some(f) = self.vp8.as_mut() else {
            return Ok(()); // the middle of a frame whose start was not seen
        };
        if f.ts != pkt.ts || f.next_seq != pkt.seq {
            self.vp8 = None;
            self.lost();
            return Ok(());
        }
        f.data.extend_from_slice(payload);
        f.next_seq += 1;
        if !pkt.marker {
            return Ok(());
        }
        let Some(f) = self.vp8.take() else { return Ok(()) };
        // RFC 6386 §9.1: the frame tag's lowest bit is 0 for a keyframe.
        let keyframe = f.data.first().is_some_and(|b| b & 1 == 0);
        if keyframe {
            let Some((w, h)) = vp8_keyframe_size(&f.data) else {
                self.skipped_frames += 1;
                return Ok(());
            };
            if self.mux.is_none() {
                self.build(Some((w, h)))?;
                self.start = Some(pkt.arrival);
            }
            self.need_keyframe = false;
        } else if self.need_keyframe || self.mux.is_none() {
            self.skipped_frames += 1;
            return Ok(());
        }
        let offset = self.offset_ns(pkt.arrival);
        let ts_ns = self.vclock.ns(f.ts, 90_000, offset);
        self.queue(ts_ns, true, keyframe, f.data);
        Ok(())
    }

    fn lost(&mut self) {
        self.need_keyframe = true;
        self.skipped_frames += 1;
    }

    /// Where a track that starts now lies on the recording's timeline.
    fn offset_ns(&self, arrival: Instant) -> u64 {
        self.start.map_or(0, |s| arrival.saturating_duration_since(s).as_nanos() as u64)
    }

    fn build(&mut self, video_size: Option<(u32, u32)>) -> Result<(), String> {
        let out = self.out.take().ok_or("the output is gone")?;
        let tracked = Tracked { inner: out, error: self.error.clone() };
        let e = |e: webm::mux::Error| self.io_error(&e.to_string());
        let mut b = SegmentBuilder::new(webm::mux::Writer::new(tracked)).map_err(e)?;
        b = b.set_writing_app(concat!("callgate ", env!("CARGO_PKG_VERSION"))).map_err(e)?;
        let mut video = None;
        if let Some((w, h)) = video_size {
            let (nb, t) = b.add_video_track(w, h, VideoCodecId::VP8, None).map_err(e)?;
            b = nb;
            video = Some(t);
        }
        let mut audio = None;
        if self.has_audio {
            let (nb, t) = b.add_audio_track(48_000, 2, AudioCodecId::Opus, None).map_err(e)?;
            // The Opus identification header WebM players expect as CodecPrivate (RFC 7845
            // §5.1): version 1, 2 channels, pre-skip 0 (WebRTC Opus has none), 48 kHz, gain 0,
            // mapping family 0.
            let mut head = b"OpusHead".to_vec();
            head.extend_from_slice(&[1, 2, 0, 0]);
            head.extend_from_slice(&48_000u32.to_le_bytes());
            head.extend_from_slice(&[0, 0, 0]);
            b = nb.set_codec_private(t, &head).map_err(e)?;
            audio = Some(t);
        }
        self.mux = Some(Muxer { segment: b.build(), video, audio });
        Ok(())
    }

    fn queue(&mut self, ts_ns: u64, video: bool, keyframe: bool, data: Vec<u8>) {
        self.order += 1;
        self.newest_ns = self.newest_ns.max(ts_ns);
        self.heap.push(Pending { ts_ns, order: self.order, video, keyframe, data });
    }

    /// Writes the frames older than [`HOLD`] behind the newest (all of them when `all`).
    fn write_ready(&mut self, all: bool) -> Result<(), String> {
        let hold = HOLD.as_nanos() as u64;
        while let Some(top) = self.heap.peek() {
            if !all && top.ts_ns + hold > self.newest_ns {
                break;
            }
            let f = self.heap.pop().expect("peeked");
            let Some(m) = self.mux.as_mut() else { break };
            // A frame later than HOLD behind the others is written at the last time written.
            let ts = f.ts_ns.max(self.last_written_ns);
            let track = match (f.video, m.video, m.audio) {
                (true, Some(v), _) => u64::from(v),
                (false, _, Some(a)) => u64::from(a),
                _ => continue,
            };
            if m.segment.add_frame(track, &f.data, ts, f.keyframe).is_err() {
                return Err(self.io_error("the WebM muxer refused a frame"));
            }
            self.last_written_ns = ts;
            if f.video {
                self.video_frames += 1;
            } else {
                self.audio_frames += 1;
            }
        }
        Ok(())
    }

    /// The I/O error behind a muxer failure if there was one, else `fallback`.
    fn io_error(&self, fallback: &str) -> String {
        let io = self.error.lock().unwrap_or_else(|p| p.into_inner()).clone();
        format!("cannot write {}: {}", self.path.display(), io.as_deref().unwrap_or(fallback))
    }

    /// Writes what is held back and finalizes the file (cues, duration).
    /// Gives the output back with the summary.
    pub fn finish(mut self, dropped_packets: u64) -> Result<(RecordSummary, W), String> {
        self.write_ready(true)?;
        let duration = Duration::from_nanos(self.last_written_ns);
        let Some(m) = self.mux.take() else {
            return Err(format!("nothing was recorded to {} (no keyframe arrived)", self.path.display()));
        };
        let writer = match m.segment.finalize(None) {
            Ok(w) => w,
            Err(_) => return Err(self.io_error("the WebM muxer could not finalize the file")),
        };
        let mut tracked = writer.into_inner();
        if let Err(e) = tracked.flush() {
            return Err(format!("cannot write {}: {e}", self.path.display()));
        }
        let bytes = tracked.inner.seek(SeekFrom::End(0)).unwrap_or(0);
        if let Some(e) = self.error.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return Err(format!("cannot write {}: {e}", self.path.display()));
        }
        let summary = RecordSummary {
            path: self.path,
            bytes,
            duration,
            video_frames: self.video_frames,
            audio_frames: self.audio_frames,
            dropped_packets,
            skipped_frames: self.skipped_frames,
        };
        Ok((summary, tracked.inner))
    }
}

/// The VP8 payload descriptor (RFC 7741 §4.2) of a packet: whether it starts a frame (S = 1,
/// partition 0) and the VP8 bytes after it. `None` for a packet too short for its descriptor.
pub fn vp8_payload(p: &[u8]) -> Option<(bool, &[u8])> {
    let b0 = *p.first()?;
    let start = b0 & 0x10 != 0 && b0 & 0x07 == 0;
    let mut i = 1;
    if b0 & 0x80 != 0 {
        let x = *p.get(1)?;
        i = 2;
        if x & 0x80 != 0 {
            // PictureID: 7 or 15 bits.
            i += if *p.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if x & 0x40 != 0 {
            i += 1; // TL0PICIDX
        }
        if x & 0x30 != 0 {
            i += 1; // TID / KEYIDX
        }
    }
    if i > p.len() {
        return None;
    }
    Some((start, &p[i..]))
}

/// Width and height of a VP8 keyframe (RFC 6386 §9.1: 3-byte frame tag, start code 9d 01 2a,
/// then 14-bit width and height, little endian). `None` if the start code is missing.
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 10 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u32::from(u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff);
    let h = u32::from(u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff);
    (w > 0 && h > 0).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A VP8 frame of `len` bytes: a keyframe with a real header (size `w`x`h`) or a delta frame.
    pub(crate) fn vp8_frame(key: bool, len: usize, w: u16, h: u16, fill: u8) -> Vec<u8> {
        let mut f = vec![fill; len.max(10)];
        if key {
            f[0] = 0x10; // P = 0 (keyframe), version 0, show_frame
            f[3..6].copy_from_slice(&[0x9d, 0x01, 0x2a]);
            f[6..8].copy_from_slice(&w.to_le_bytes());
            f[8..10].copy_from_slice(&h.to_le_bytes());
        } else {
            f[0] = 0x11; // P = 1
        }
        f
    }

    /// Packetizes a VP8 frame like a browser (descriptor with a 15-bit PictureID), `mtu` bytes
    /// of VP8 per packet.
    fn packetize(frame: &[u8], mtu: usize, pic: u16) -> Vec<Vec<u8>> {
        frame
            .chunks(mtu)
            .enumerate()
            .map(|(i, c)| {
                let s = if i == 0 { 0x10 } else { 0 };
                let mut p = vec![0x80 | s, 0x80, 0x80 | (pic >> 8) as u8 & 0x7f, pic as u8];
                p.extend_from_slice(c);
                p
            })
            .collect()
    }

    struct Feed {
        seq: u64,
        t0: Instant,
    }

    impl Feed {
        fn video(&mut self, rec: &mut Recording<impl Write + Seek>, frame: &[u8], n: u32) -> Result<(), String> {
            let pkts = packetize(frame, 1000, n as u16);
            let last = pkts.len() - 1;
            for (i, p) in pkts.into_iter().enumerate() {
                self.seq += 1;
                rec.push(&RecPacket {
                    kind: MediaKind::Video,
                    codec: Codec::Vp8,
                    seq: self.seq,
                    ts: 1000 + n * 3000,
                    marker: i == last,
                    payload: p.into(),
                    arrival: self.t0 + Duration::from_millis(u64::from(n) * 33),
                })?;
            }
            Ok(())
        }
    }

    fn opus(n: u32, t0: Instant) -> RecPacket {
        RecPacket {
            kind: MediaKind::Audio,
            codec: Codec::Opus,
            seq: u64::from(n),
            ts: 77 + n * 960,
            marker: false,
            payload: vec![0xfc, n as u8, 1, 2, 3].into(),
            arrival: t0 + Duration::from_millis(u64::from(n) * 20),
        }
    }

    #[test]
    fn rtp_timestamps_are_extended_past_the_wrap() {
        let mut c = Clock::default();
        let start = u32::MAX - 899; // 10 ms before the wrap at 90 kHz
        assert_eq!(c.ns(start, 90_000, 5), 5);
        assert_eq!(c.ns(start.wrapping_add(900), 90_000, 0), 5 + 10_000_000);
        assert_eq!(c.ns(start.wrapping_add(1800), 90_000, 0), 5 + 20_000_000);
        // A late packet from before the wrap keeps its place.
        assert_eq!(c.ns(start.wrapping_add(450), 90_000, 0), 5 + 5_000_000);
        assert_eq!(c.ns(start.wrapping_add(2700), 90_000, 0), 5 + 30_000_000);
    }

    #[test]
    fn descriptor_parsing() {
        assert_eq!(vp8_payload(&[0x10, 9, 9]), Some((true, &[9u8, 9][..])));
        assert_eq!(vp8_payload(&[0x00, 9]), Some((false, &[9u8][..])));
        // X, I with a 15-bit PictureID, L, T/K.
        assert_eq!(vp8_payload(&[0x90, 0xf0, 0x81, 0x02, 7, 8, 5]), Some((true, &[5u8][..])));
        // S with a partition index other than 0 does not start a frame.
        assert_eq!(vp8_payload(&[0x11, 5]), Some((false, &[5u8][..])));
        assert_eq!(vp8_payload(&[0x90, 0x80]), None);
        assert_eq!(vp8_keyframe_size(&vp8_frame(true, 20, 640, 360, 0)), Some((640, 360)));
        assert_eq!(vp8_keyframe_size(&[0x10, 1, 2, 3, 4, 5, 6, 7, 8, 9]), None);
    }

    #[test]
    fn vp8_and_opus_are_written_from_the_first_keyframe_and_read_back() {
        let t0 = Instant::now();
        let mut rec = Recording::new(Cursor::new(Vec::new()), "mem.webm".into(), true, true);
        let mut feed = Feed { seq: 100, t0 };
        // A delta frame before any keyframe and audio before it are not written.
        feed.video(&mut rec, &vp8_frame(false, 500, 0, 0, 1), 0).unwrap();
        for n in 0..2 {
            rec.push(&opus(n, t0)).unwrap();
        }
        // 90 video frames (3 s at 30 fps), a keyframe every 30, keyframes span 3 packets.
        for n in 1..=90 {
            let key = n % 30 == 1;
            let f = vp8_frame(key, if key { 2500 } else { 600 }, 320, 240, n as u8);
            feed.video(&mut rec, &f, n).unwrap();
        }
        for n in 2..152 {
            rec.push(&opus(n, t0)).unwrap();
        }
        let (s, out) = rec.finish(0).unwrap();
        assert_eq!(s.video_frames, 90);
        assert!(s.audio_frames >= 145, "{s:?}");
        assert_eq!(s.skipped_frames, 1, "the delta frame before the first keyframe");
        assert_eq!(s.bytes, out.get_ref().len() as u64);
        // Read back: the tracks, their codecs, every frame, the timestamps.
        let mut mkv = matroska_demuxer::MatroskaFile::open(Cursor::new(out.into_inner())).unwrap();
        let v = mkv.tracks().iter().find(|t| t.codec_id() == "V_VP8").expect("a VP8 track");
        let (vn, vw, vh) =
            (v.track_number().get(), v.video().unwrap().pixel_width().get(), v.video().unwrap().pixel_height().get());
        assert_eq!((vw, vh), (320, 240));
        let a = mkv.tracks().iter().find(|t| t.codec_id() == "A_OPUS").expect("an Opus track");
        assert_eq!(&a.codec_private().unwrap()[..8], b"OpusHead");
        let duration_ms = mkv.info().duration().unwrap() * mkv.info().timestamp_scale().get() as f64 / 1e6;
        assert!((2900.0..3100.0).contains(&duration_ms), "duration {duration_ms} ms");
        let mut frame = matroska_demuxer::Frame::default();
        let (mut video, mut keys, mut audio, mut last_ts) = (0, 0, 0, 0);
        while mkv.next_frame(&mut frame).unwrap() {
            assert!(frame.timestamp >= last_ts, "timestamps never go back");
            last_ts = frame.timestamp;
            if frame.track == vn {
                if video == 0 {
                    assert_eq!(frame.data, vp8_frame(true, 2500, 320, 240, 1), "the first keyframe, reassembled");
                }
                video += 1;
                keys += usize::from(frame.is_keyframe == Some(true));
            } else {
                audio += 1;
            }
        }
        assert_eq!((video, keys), (90, 3));
        assert_eq!(audio as u64, s.audio_frames);
    }

    #[test]
    fn a_loss_inside_a_frame_skips_to_the_next_keyframe() {
        let t0 = Instant::now();
        let mut rec = Recording::new(Cursor::new(Vec::new()), "mem.webm".into(), false, true);
        let mut feed = Feed { seq: 1, t0 };
        feed.video(&mut rec, &vp8_frame(true, 2500, 64, 48, 0), 0).unwrap();
        feed.video(&mut rec, &vp8_frame(false, 600, 0, 0, 1), 1).unwrap();
        feed.seq += 1; // one packet lost before frame 2
        feed.video(&mut rec, &vp8_frame(false, 1500, 0, 0, 2), 2).unwrap();
        feed.video(&mut rec, &vp8_frame(false, 600, 0, 0, 3), 3).unwrap();
        feed.video(&mut rec, &vp8_frame(true, 2500, 64, 48, 4), 4).unwrap();
        feed.video(&mut rec, &vp8_frame(false, 600, 0, 0, 5), 5).unwrap();
        let (s, _) = rec.finish(0).unwrap();
        assert_eq!(s.video_frames, 4, "{s:?}"); // 0, 1, 4, 5
    }

    #[test]
    fn h264_is_refused() {
        let mut rec = Recording::new(Cursor::new(Vec::new()), "mem.webm".into(), true, true);
        let mut p = opus(0, Instant::now());
        p.kind = MediaKind::Video;
        p.codec = Codec::H264;
        let e = rec.push(&p).unwrap_err();
        assert!(e.contains("recording H264 is not supported"), "{e}");
    }

    #[test]
    fn a_full_queue_drops_counts_and_asks_for_a_keyframe_without_blocking() {
        let (tx, rx) = sync_channel(2);
        let dropped = Arc::new(AtomicU64::new(0));
        let mut tap =
            RecordTap { tx, dropped: dropped.clone(), dropped_metric: metrics::Counter::noop(), wants_keyframe: false };
        let t0 = Instant::now();
        assert!(tap.offer(opus(0, t0)) && tap.offer(opus(1, t0)));
        assert!(!tap.wants_keyframe);
        assert!(tap.offer(opus(2, t0)), "a full queue is not the writer's end");
        assert_eq!(dropped.load(Ordering::Relaxed), 1);
        assert!(!tap.wants_keyframe, "lost audio needs no keyframe");
        let mut v = opus(3, t0);
        v.kind = MediaKind::Video;
        assert!(tap.offer(v.clone()));
        assert_eq!(dropped.load(Ordering::Relaxed), 2);
        assert!(tap.wants_keyframe, "lost video: the writer skips to the next keyframe");
        assert_eq!(rx.try_iter().map(|p| p.seq).collect::<Vec<_>>(), vec![0, 1]);
        drop(rx);
        assert!(!tap.offer(v), "the writer is gone");
    }

    /// Fails every write after `room` bytes, like a full disk.
    struct Full {
        inner: Cursor<Vec<u8>>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.inner.get_ref().len() + b.len() > self.room {
                return Err(io::Error::from_raw_os_error(28));
            }
            self.inner.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for Full {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.inner.seek(pos)
        }
    }

    #[test]
    fn a_full_disk_is_reported_with_the_os_error() {
        let t0 = Instant::now();
        let out = Full { inner: Cursor::new(Vec::new()), room: 20_000 };
        let mut rec = Recording::new(out, "full.webm".into(), false, true);
        let mut feed = Feed { seq: 1, t0 };
        let mut err = None;
        for n in 0..300 {
            let key = n % 30 == 0;
            if let Err(e) = feed.video(&mut rec, &vp8_frame(key, if key { 2500 } else { 600 }, 64, 48, 0), n) {
                err = Some(e);
                break;
            }
        }
        let e = match err {
            Some(e) => e,
            None => rec.finish(0).map(|_| ()).unwrap_err(),
        };
        assert!(e.contains("No space left on device") && e.contains("full.webm"), "{e}");
    }
}
