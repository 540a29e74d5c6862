//! A publisher's packets -> fMP4 parts and segments -> the (LL-)HLS media playlist. Pure: packets
//! and their arrival times in, bytes and text out.
//!
//! - **Timeline.** Video decode times are the RTP timestamps (90 kHz, extended past wraps) from
//!   the first keyframe on; Opus's (48 kHz) start at the first audio packet's arrival after that
//!   keyframe's, so both tracks stay as aligned as they arrived (as the recorder does). A
//!   sample's duration is the distance to the next one of its track, so each track is held back
//!   by one sample.
//! - **Parts** (`#EXT-X-PART`, one `moof`+`mdat` each) are cut on the video track (on the audio
//!   track for an audio-only stream) before the frame that would make the part longer than the
//!   part target; a part holds the video frames and the audio frames decoded before its end.
//! - **Segments** end at a keyframe once they are at least the target duration long: a segment is
//!   its parts back to back, and each starts with a keyframe (`#EXT-X-INDEPENDENT-SEGMENTS`).
//!   WebRTC encoders send keyframes only when asked, so the segmenter asks ([`Segmenter::wants_keyframe`])
//!   from 70 % of the target duration on, at most once per part.
//! - **Window**: the last `window` segments are kept (and the one being written); older ones go.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::fmp4::{self, Avc, Run, Sample, FLAGS_NON_SYNC, FLAGS_SYNC};
use super::h264::{nal_type, sps_size, AccessUnit, Depacketizer};

/// `[hls]` as the media crate needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsConfig {
    /// Segment target duration (segments end at the first keyframe past it).
    pub segment: Duration,
    /// LL-HLS part target duration.
    pub part: Duration,
    /// Segments kept in the playlist (and in memory).
    pub window: usize,
}

impl Default for HlsConfig {
    fn default() -> HlsConfig {
        HlsConfig { segment: Duration::from_secs(2), part: Duration::from_millis(500), window: 6 }
    }
}

/// One part: a `moof` + `mdat`.
#[derive(Debug, Clone)]
pub struct Part {
    pub data: Arc<[u8]>,
    pub duration: f64,
    /// It starts with a keyframe (always, for audio only).
    pub independent: bool,
}

/// A segment: its parts (the segment's bytes are theirs back to back).
#[derive(Debug, Clone)]
pub struct Segment {
    pub msn: u64,
    pub duration: f64,
    pub parts: Vec<Part>,
}

impl Segment {
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.parts.iter().map(|p| p.data.len()).sum());
        for p in &self.parts {
            out.extend_from_slice(&p.data);
        }
        out
    }
}

struct Pending {
    dts: i64,
    flags: u32,
    data: Vec<u8>,
}

/// One track's timing and its samples not yet in a part.
struct Track {
    timescale: u32,
    last_ts: Option<u32>,
    ext: i64,
    /// `dts = ext - first + offset`.
    first: Option<i64>,
    offset: i64,
    pending: Option<Pending>,
    queue: Vec<(i64, Sample, Vec<u8>)>,
    last_duration: u32,
}

impl Track {
    fn new(timescale: u32, default_duration: u32) -> Track {
        Track {
            timescale,
            last_ts: None,
            ext: 0,
            first: None,
            offset: 0,
            pending: None,
            queue: Vec::new(),
            last_duration: default_duration,
        }
    }

    /// The extended timestamp of `ts`.
    fn extend(&mut self, ts: u32) -> i64 {
        if let Some(last) = self.last_ts {
            self.ext += i64::from(ts.wrapping_sub(last) as i32);
        }
        self.last_ts = Some(ts);
        self.ext
    }

    fn secs(&self, dts: i64) -> f64 {
        dts as f64 / f64::from(self.timescale)
    }

    /// Queues the held sample with its duration up to `next_dts`, and holds `next` instead.
    fn hold(&mut self, next: Option<Pending>) {
        if let Some(p) = self.pending.take() {
            let d = next.as_ref().map_or(0, |n| n.dts - p.dts);
            let duration = if d > 0 { u32::try_from(d).unwrap_or(u32::MAX) } else { self.last_duration };
            self.last_duration = duration;
            let size = u32::try_from(p.data.len()).unwrap_or(u32::MAX);
            self.queue.push((p.dts, Sample { duration, size, flags: p.flags }, p.data));
        }
        self.pending = next;
    }

    /// The queued samples decoded before `end` (seconds; all with `None`) as a run.
    fn take_run(&mut self, track: u32, end: Option<f64>) -> Run {
        let n = match end {
            None => self.queue.len(),
            Some(end) => self.queue.iter().take_while(|(dts, ..)| self.secs(*dts) < end).count(),
        };
        let mut run = Run { track, ..Default::default() };
        for (i, (dts, s, data)) in self.queue.drain(..n).enumerate() {
            if i == 0 {
                run.base_dts = u64::try_from(dts).unwrap_or(0);
            }
            run.samples.push(s);
            run.data.extend_from_slice(&data);
        }
        run
    }
}

/// What the playlist and segment requests read.
pub struct Segmenter {
    cfg: HlsConfig,
    has_video: bool,
    has_audio: bool,
    depack: Depacketizer,
    init: Option<Arc<[u8]>>,
    avc: Option<Avc>,
    t0: Option<Instant>,
    video: Track,
    audio: Track,
    /// Video frames are dropped until the next keyframe (after a loss).
    need_keyframe: bool,
    /// The segment being written.
    open_msn: u64,
    open_start: f64,
    open_parts: Vec<Part>,
    part_start: f64,
    done: VecDeque<Segment>,
    fragments: u32,
    last_ask: f64,
    /// The publisher should be asked for a keyframe (taken by the caller).
    pub wants_keyframe: bool,
    ended: bool,
    failed: Option<String>,
    target: u64,
    /// Bumped with each new part (and at the end): what blocking requests wait on.
    pub version: u64,
    /// Bytes of the parts held (the window's and the open segment's).
    pub bytes_held: usize,
}

/// The first media sequence number of a new output: the wall clock in milliseconds. Players and
/// caches keep segments by URI (`seg<N>.m4s` is served `max-age=60`), and a stream published
/// again, or served again after its muxer went idle, gets a new muxer: numbering each from 0
/// would hand them the old output's files under the new one's names. Starting each output at
/// the time it starts keeps every output's numbers apart (an output makes one segment per
/// `segment_ms`, far slower than a millisecond per number).
fn first_msn() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Segmenter {
    pub fn new(cfg: HlsConfig, has_audio: bool, has_video: bool) -> Segmenter {
        Segmenter {
            cfg,
            has_video,
            has_audio,
            depack: Depacketizer::default(),
            init: None,
            avc: None,
            t0: None,
            video: Track::new(fmp4::VIDEO_TIMESCALE, 3000),
            audio: Track::new(fmp4::AUDIO_TIMESCALE, 960),
            need_keyframe: true,
            open_msn: first_msn(),
            open_start: 0.0,
            open_parts: Vec::new(),
            part_start: 0.0,
            done: VecDeque::new(),
            fragments: 0,
            last_ask: f64::NEG_INFINITY,
            wants_keyframe: has_video,
            ended: false,
            failed: None,
            target: cfg.segment.as_secs_f64().ceil().max(1.0) as u64,
            version: 0,
            bytes_held: 0,
        }
    }

    /// Nothing more will be written: why.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    pub fn fail(&mut self, why: String) {
        if self.failed.is_none() {
            self.failed = Some(why);
            self.version += 1;
        }
    }

    pub fn ended(&self) -> bool {
        self.ended
    }

    pub fn init(&self) -> Option<Arc<[u8]>> {
        self.init.clone()
    }

    /// Complete segments in the window.
    pub fn segments(&self) -> usize {
        self.done.len()
    }

    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        self.done.iter().find(|s| s.msn == msn)
    }

    pub fn part(&self, msn: u64, index: usize) -> Option<&Part> {
        if msn == self.open_msn && !self.ended {
            return self.open_parts.get(index);
        }
        self.segment(msn).and_then(|s| s.parts.get(index))
    }

    /// A video packet (H.264 RTP payload).
    pub fn video_packet(&mut self, seq: u64, ts: u32, marker: bool, payload: &[u8], arrival: Instant) {
        if self.failed.is_some() || self.ended {
            return;
        }
        let dropped = self.depack.dropped;
        let aus = self.depack.push(seq, ts, marker, payload);
        if self.depack.dropped != dropped {
            self.need_keyframe = true;
            self.wants_keyframe = true;
        }
        for au in aus {
            self.access_unit(au, arrival);
        }
    }

    fn access_unit(&mut self, au: AccessUnit, arrival: Instant) {
        let key = au.is_keyframe();
        if self.init.is_none() {
            let (Some(sps), Some(pps)) = au.parameter_sets() else {
                self.wants_keyframe = true;
                return;
            };
            let Some((width, height)) = sps_size(sps).filter(|_| key) else {
                self.wants_keyframe = true;
                return;
            };
            let avc = Avc { width, height, sps: sps.to_vec(), pps: pps.to_vec() };
            self.init = Some(fmp4::init_segment(Some(&avc), self.has_audio).into());
            self.avc = Some(avc);
            self.t0 = Some(arrival);
        }
        if self.need_keyframe {
            if !key {
                self.wants_keyframe = true;
                return;
            }
            self.need_keyframe = false;
        }
        let ext = self.video.extend(au.ts);
        let first = *self.video.first.get_or_insert(ext);
        let dts = ext - first;
        let mut data = Vec::with_capacity(au.nals.iter().map(|n| n.len() + 4).sum());
        for nal in au.nals.iter().filter(|n| !matches!(nal_type(n), 7..=9)) {
            data.extend_from_slice(&u32::try_from(nal.len()).unwrap_or(0).to_be_bytes());
            data.extend_from_slice(nal);
        }
        let flags = if key { FLAGS_SYNC } else { FLAGS_NON_SYNC };
        self.video.hold(Some(Pending { dts, flags, data }));
        let t = self.video.secs(dts);
        let frame = f64::from(self.video.last_duration) / f64::from(fmp4::VIDEO_TIMESCALE);
        self.cut(t, frame, key);
        if t - self.open_start >= 0.7 * self.cfg.segment.as_secs_f64() && t - self.last_ask >= self.part_secs() {
            self.last_ask = t;
            self.wants_keyframe = true;
        }
    }

    /// An Opus packet.
    pub fn audio_packet(&mut self, ts: u32, payload: &[u8], arrival: Instant) {
        if self.failed.is_some() || self.ended || !self.has_audio {
            return;
        }
        if self.t0.is_none() {
            if self.has_video {
                return; // nothing before the first keyframe
            }
            self.init = Some(fmp4::init_segment(None, true).into());
            self.t0 = Some(arrival);
        }
        let ext = self.audio.extend(ts);
        if self.audio.first.is_none() {
            self.audio.first = Some(ext);
            let since = arrival.saturating_duration_since(self.t0.expect("set above"));
            self.audio.offset = (since.as_secs_f64() * f64::from(fmp4::AUDIO_TIMESCALE)) as i64;
        }
        let dts = ext - self.audio.first.unwrap_or(ext) + self.audio.offset;
        self.audio.hold(Some(Pending { dts, flags: FLAGS_SYNC, data: payload.to_vec() }));
        if !self.has_video {
            let t = self.audio.secs(dts);
            let frame = f64::from(self.audio.last_duration) / f64::from(fmp4::AUDIO_TIMESCALE);
            self.cut(t, frame, true);
        }
    }

    fn part_secs(&self) -> f64 {
        self.cfg.part.as_secs_f64()
    }

    /// A sample starting at `t` (seconds) is held: the queued ones before it may make a part (and
    /// the segment may end before it, when it is a keyframe).
    fn cut(&mut self, t: f64, frame: f64, key: bool) {
        let driver = if self.has_video { &self.video } else { &self.audio };
        if driver.queue.is_empty() {
            return;
        }
        if key && t - self.open_start >= self.cfg.segment.as_secs_f64() - frame / 2.0 {
            self.cut_part(Some(t));
            self.close_segment(t);
        } else if t + frame - self.part_start > self.part_secs() + 1e-6 {
            self.cut_part(Some(t));
        }
    }

    /// The queued samples before `end` (all with `None`) become a part.
    fn cut_part(&mut self, end: Option<f64>) {
        let v = self.video.take_run(fmp4::VIDEO_TRACK, None);
        let a = self.audio.take_run(fmp4::AUDIO_TRACK, if self.has_video { end } else { None });
        if v.samples.is_empty() && a.samples.is_empty() {
            return;
        }
        let end = end.unwrap_or_else(|| {
            let last = |t: &Track, r: &Run| {
                let d: u64 = r.samples.iter().map(|s| u64::from(s.duration)).sum();
                (r.base_dts + d) as f64 / f64::from(t.timescale)
            };
            let ve = if v.samples.is_empty() { 0.0 } else { last(&self.video, &v) };
            let ae = if a.samples.is_empty() { 0.0 } else { last(&self.audio, &a) };
            ve.max(ae)
        });
        let independent = if self.has_video { v.samples.first().is_some_and(|s| s.flags == FLAGS_SYNC) } else { true };
        self.fragments += 1;
        let data: Arc<[u8]> = fmp4::fragment(self.fragments, &[v, a]).into();
        self.bytes_held += data.len();
        metrics::counter!("callgate_hls_bytes_muxed_total").increment(data.len() as u64);
        self.open_parts.push(Part { data, duration: (end - self.part_start).max(0.0), independent });
        self.part_start = end;
        self.version += 1;
    }

    fn close_segment(&mut self, end: f64) {
        if self.open_parts.is_empty() {
            return;
        }
        let duration = end - self.open_start;
        self.target = self.target.max(duration.round() as u64);
        self.done.push_back(Segment { msn: self.open_msn, duration, parts: std::mem::take(&mut self.open_parts) });
        while self.done.len() > self.cfg.window.max(1) {
            if let Some(old) = self.done.pop_front() {
                self.bytes_held -= old.parts.iter().map(|p| p.data.len()).sum::<usize>();
            }
        }
        self.open_msn += 1;
        self.open_start = end;
    }

    /// The stream ended: what is held is written, the playlist gets `#EXT-X-ENDLIST`.
    pub fn end(&mut self) {
        if self.ended {
            return;
        }
        self.video.hold(None);
        self.audio.hold(None);
        self.cut_part(None);
        let end = self.part_start;
        self.close_segment(end);
        self.ended = true;
        self.version += 1;
    }

    /// Whether a blocking playlist request for `msn` (and `part`) can be answered: `None` when
    /// it asks for more than two segments ahead (answered 400, RFC 8216bis §6.2.5.2).
    pub fn has(&self, msn: u64, part: Option<usize>) -> Option<bool> {
        if self.ended || self.failed.is_some() {
            return Some(true);
        }
        if msn > self.open_msn + 2 {
            return None;
        }
        Some(match part {
            // A part index past a complete segment's last part is part 0 of the next segment
            // (RFC 8216bis §6.2.5.2): a player that asks for the part after the last one it has
            // does not know where the segment ended.
            Some(p) if msn < self.open_msn && self.done.iter().any(|s| s.msn == msn && p >= s.parts.len()) => {
                return self.has(msn + 1, Some(0));
            }
            _ if msn < self.open_msn => true,
            Some(p) if msn == self.open_msn => self.open_parts.len() > p,
            _ => false,
        })
    }

    /// The media playlist.
    pub fn playlist(&self) -> String {
        use std::fmt::Write;
        let part = self.part_secs();
        let mut s = String::with_capacity(1024);
        let _ = writeln!(s, "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-TARGETDURATION:{}", self.target);
        if !self.ended {
            let _ = writeln!(s, "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={:.3}", 3.0 * part);
        }
        let _ = writeln!(s, "#EXT-X-PART-INF:PART-TARGET={part:.3}");
        let first = self.done.front().map_or(self.open_msn, |s| s.msn);
        let _ = writeln!(s, "#EXT-X-MEDIA-SEQUENCE:{first}\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"init.mp4\"");
        // Parts are listed for the last segments only (those within three target durations).
        let with_parts = self.done.len().saturating_sub(2);
        let parts = |s: &mut String, msn: u64, parts: &[Part]| {
            for (i, p) in parts.iter().enumerate() {
                let ind = if p.independent { ",INDEPENDENT=YES" } else { "" };
                let _ = writeln!(s, "#EXT-X-PART:DURATION={:.5},URI=\"part{msn}.{i}.m4s\"{ind}", p.duration);
            }
        };
        for (i, seg) in self.done.iter().enumerate() {
            if i >= with_parts {
                parts(&mut s, seg.msn, &seg.parts);
            }
            let _ = writeln!(s, "#EXTINF:{:.5},\nseg{}.m4s", seg.duration, seg.msn);
        }
        if self.ended {
            s.push_str("#EXT-X-ENDLIST\n");
        } else {
            parts(&mut s, self.open_msn, &self.open_parts);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::fmp4::{boxes, find};
    use crate::hls::h264::tests::SPS_320;

    /// 30 fps H.264 (a keyframe with SPS/PPS every `gop` frames, or when asked) and 20 ms Opus,
    /// fed for `secs` seconds of media.
    fn feed(s: &mut Segmenter, secs: u32, gop: Option<u32>, asked_keyframes: bool) {
        let t0 = Instant::now();
        let mut seq = 0u64;
        let mut asked = false;
        for f in 0..secs * 30 {
            let at = t0 + Duration::from_millis(u64::from(f) * 1000 / 30);
            let ts = 1_000_000u32.wrapping_add(f * 3000);
            let key = f == 0 || gop.is_some_and(|g| f % g == 0) || (asked_keyframes && asked);
            asked = false;
            if key {
                let mut stap = vec![24u8];
                for n in [&SPS_320[..], &[0x68, 0xce, 0x3c, 0x80]] {
                    stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
                    stap.extend_from_slice(n);
                }
                s.video_packet(seq, ts, false, &stap, at);
                seq += 1;
                s.video_packet(seq, ts, false, &[0x7c, 0x85, 0xaa, 0xbb], at);
                seq += 1;
                s.video_packet(seq, ts, true, &[0x7c, 0x45, 0xcc], at);
            } else {
                s.video_packet(seq, ts, true, &[0x41, 0x9a, f as u8], at);
            }
            seq += 1;
            asked |= std::mem::take(&mut s.wants_keyframe);
            // Opus: 1.5 packets per video frame.
            for k in 0..3u32 {
                if (f * 3 + k) % 2 == 0 {
                    let n = (f * 3 + k) / 2;
                    s.audio_packet(
                        7u32.wrapping_add(n * 960),
                        &[0xfc, 1, 2],
                        at + Duration::from_millis(u64::from(k) * 10),
                    );
                }
            }
        }
    }

    #[test]
    fn segments_start_at_keyframes_and_parts_stay_under_the_target() {
        let mut s = Segmenter::new(HlsConfig::default(), true, true);
        feed(&mut s, 10, Some(60), false);
        assert!(s.init().is_some());
        assert!(s.segments() >= 4, "{}", s.playlist());
        let pl = s.playlist();
        assert!(pl.contains("#EXT-X-PART-INF:PART-TARGET=0.500"), "{pl}");
        assert!(pl.contains("CAN-BLOCK-RELOAD=YES"), "{pl}");
        assert!(!pl.contains("ENDLIST"));
        for seg in &s.done {
            assert!((seg.duration - 2.0).abs() < 0.01, "keyframe every 2 s: {}", seg.duration);
            assert!(seg.parts[0].independent);
            assert_eq!(seg.parts.len(), 4);
            for p in &seg.parts {
                assert!(p.duration <= 0.5 + 1e-9, "{}", p.duration);
                let top = boxes(&p.data).unwrap();
                assert_eq!(top.len(), 2);
            }
            let bytes = seg.bytes();
            // Video and audio in each fragment, the video run's first sample a sync sample.
            let trafs: Vec<_> =
                boxes(find(&bytes, &[b"moof"]).unwrap()).unwrap().into_iter().filter(|(k, _)| k == b"traf").collect();
            assert_eq!(trafs.len(), 2);
            let trun = find(trafs[0].1, &[b"trun"]).unwrap();
            assert_eq!(&trun[12 + 8..12 + 12], &FLAGS_SYNC.to_be_bytes());
        }
        // Decode times go on without holes across parts: each traf's tfdt = the previous end.
        let mut next = [None::<u64>; 3];
        for seg in &s.done {
            for p in &seg.parts {
                let moof = find(&p.data, &[b"moof"]).unwrap();
                for (_, traf) in boxes(moof).unwrap().into_iter().filter(|(k, _)| k == b"traf") {
                    let track = u32::from_be_bytes(find(traf, &[b"tfhd"]).unwrap()[4..8].try_into().unwrap()) as usize;
                    let dts = u64::from_be_bytes(find(traf, &[b"tfdt"]).unwrap()[4..12].try_into().unwrap());
                    let trun = find(traf, &[b"trun"]).unwrap();
                    let n = u32::from_be_bytes(trun[4..8].try_into().unwrap()) as usize;
                    let dur: u64 = (0..n)
                        .map(|i| u64::from(u32::from_be_bytes(trun[12 + i * 12..16 + i * 12].try_into().unwrap())))
                        .sum();
                    if let Some(want) = next[track] {
                        assert_eq!(dts, want, "track {track}");
                    }
                    next[track] = Some(dts + dur);
                }
            }
        }
    }

    #[test]
    fn the_window_is_bounded_and_old_segments_go() {
        let cfg = HlsConfig { window: 3, ..Default::default() };
        let mut s = Segmenter::new(cfg, true, true);
        feed(&mut s, 20, Some(60), false);
        assert_eq!(s.segments(), 3);
        let first = s.done.front().unwrap().msn;
        assert!(first >= 6, "{first}");
        assert!(s.segment(0).is_none());
        assert!(s.playlist().contains(&format!("#EXT-X-MEDIA-SEQUENCE:{first}")));
        let held: usize = s.done.iter().flat_map(|g| &g.parts).map(|p| p.data.len()).sum::<usize>()
            + s.open_parts.iter().map(|p| p.data.len()).sum::<usize>();
        assert_eq!(s.bytes_held, held);
    }

    #[test]
    fn keyframes_are_asked_for_when_the_encoder_sends_none() {
        let mut s = Segmenter::new(HlsConfig::default(), true, true);
        // Keyframes only when asked (as a WebRTC encoder): segments still end near 2 s.
        feed(&mut s, 10, None, true);
        assert!(s.segments() >= 3, "{}", s.playlist());
        for seg in &s.done {
            assert!(seg.duration >= 2.0 - 0.02 && seg.duration < 2.5, "{}", seg.duration);
        }
    }

    #[test]
    fn blocking_requests_and_the_end() {
        let mut s = Segmenter::new(HlsConfig::default(), true, true);
        feed(&mut s, 5, Some(60), false);
        assert_eq!(s.has(0, None), Some(true));
        assert_eq!(s.has(s.open_msn, None), Some(false));
        assert_eq!(s.has(s.open_msn, Some(0)), Some(!s.open_parts.is_empty()));
        assert_eq!(s.has(s.open_msn, Some(9)), Some(false));
        assert_eq!(s.has(s.open_msn + 3, None), None);
        // The part after a complete segment's last one is the next segment's first.
        let last = s.done.back().expect("a complete segment");
        let (msn, n) = (last.msn, last.parts.len());
        assert_eq!(s.has(msn, Some(n - 1)), Some(true));
        assert_eq!(s.has(msn, Some(n)), s.has(msn + 1, Some(0)));
        assert_eq!(s.has(msn, Some(n)), Some(msn + 1 < s.open_msn || !s.open_parts.is_empty()));
        s.end();
        let pl = s.playlist();
        assert!(pl.ends_with("#EXT-X-ENDLIST\n"), "{pl}");
        assert!(!pl.contains("CAN-BLOCK-RELOAD"));
        assert_eq!(s.has(99, None), Some(true));
    }

    #[test]
    fn audio_only_streams_are_cut_on_audio() {
        let mut s = Segmenter::new(HlsConfig::default(), true, false);
        let t0 = Instant::now();
        for n in 0..500u32 {
            s.audio_packet(n * 960, &[0xfc, 0, 1], t0 + Duration::from_millis(u64::from(n) * 20));
        }
        assert_eq!(s.segments(), 4, "{}", s.playlist());
        let init = s.init().unwrap();
        assert!(find(&init, &[b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"Opus", b"dOps"]).is_some());
    }
}
