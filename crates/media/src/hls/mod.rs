//! HLS output of a publisher: its H.264 and Opus, as the media core receives them, in fMP4
//! (CMAF) segments and LL-HLS parts, held in memory for the HTTP side to serve.
//!
//! ```text
//!  media task (core.rs, per publisher packet)      muxer thread (one per stream served as HLS)
//!  HlsTap::offer ── bounded sync_channel ────────> Segmenter (h264 depacketizing, fmp4 boxes)
//!   (payload Arc shared; a full queue drops,         under HlsOutput's mutex: the HTTP side reads
//!    the segmenter skips to the next keyframe)        the playlist, init, segments and parts there;
//!  wants_keyframe <── AtomicBool ────────────────    `changed` (watch) wakes blocking reloads
//!  HlsOutput::stop / publisher gone ──> the tap is dropped, the thread ends the playlist (ENDLIST)
//! ```
//!
//! Codecs: H.264 (passed through, cut at keyframes) and Opus (one packet per sample, `Opus` +
//! `dOps` sample entry). Any other video codec (VP8 from most browsers) makes the output fail
//! with a reason ([`Segmenter::failed`]): HLS players take H.264, and nothing transcodes here.

pub mod fmp4;
pub mod h264;
pub mod segmenter;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};

use str0m::format::Codec;
use str0m::media::MediaKind;
use tokio::sync::watch;

pub use segmenter::{HlsConfig, Part, Segment, Segmenter};

use crate::record::RecPacket;

/// Packets queued towards a muxer thread before the tap drops (about 10 s of 30 fps video).
pub const QUEUE: usize = 4096;

/// What the HTTP side shares with a muxer thread.
pub struct HlsOutput {
    seg: Mutex<Segmenter>,
    changed: watch::Sender<u64>,
    stop: AtomicBool,
    wants_keyframe: AtomicBool,
    /// Packets dropped because the muxer had fallen behind.
    pub dropped: AtomicU64,
}

impl HlsOutput {
    /// The segmenter (the playlist, init segment, segments and parts), locked briefly.
    pub fn lock(&self) -> MutexGuard<'_, Segmenter> {
        self.seg.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes with each new part, the end and a failure.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// No more packets: the media task drops the tap at the publisher's next packet, and the
    /// thread ends.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The media task's end of an HLS output: one per publisher served as HLS.
pub struct HlsTap {
    tx: SyncSender<RecPacket>,
    out: Arc<HlsOutput>,
}

impl HlsTap {
    /// Hands a packet to the muxer; never blocks. `false` once the output is stopped or its
    /// thread gone: the tap can be dropped.
    pub fn offer(&mut self, pkt: RecPacket) -> bool {
        if self.out.stop.load(Ordering::Relaxed) {
            return false;
        }
        match self.tx.try_send(pkt) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.out.dropped.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("callgate_hls_packets_dropped_total").increment(1);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// The muxer wants a keyframe (taken once).
    pub fn take_wants_keyframe(&self) -> bool {
        self.out.wants_keyframe.swap(false, Ordering::Relaxed)
    }
}

/// Starts a muxer thread for a publisher with these tracks.
pub fn start(cfg: HlsConfig, has_audio: bool, has_video: bool) -> std::io::Result<(HlsTap, Arc<HlsOutput>)> {
    let (tx, rx) = sync_channel::<RecPacket>(QUEUE);
    let out = Arc::new(HlsOutput {
        seg: Mutex::new(Segmenter::new(cfg, has_audio, has_video)),
        changed: watch::channel(0).0,
        stop: AtomicBool::new(false),
        wants_keyframe: AtomicBool::new(has_video),
        dropped: AtomicU64::new(0),
    });
    let o = out.clone();
    std::thread::Builder::new().name("callgate-hls".into()).spawn(move || {
        metrics::gauge!("callgate_hls_muxers").increment(1.0);
        for pkt in rx {
            let mut s = o.lock();
            let before = s.version;
            match (pkt.kind, pkt.codec) {
                (MediaKind::Video, Codec::H264) => {
                    s.video_packet(pkt.seq, pkt.ts, pkt.marker, &pkt.payload, pkt.arrival)
                }
                (MediaKind::Audio, Codec::Opus) => s.audio_packet(pkt.ts, &pkt.payload, pkt.arrival),
                (MediaKind::Video, c) => s.fail(format!("{c} video cannot be carried in HLS (H.264 only)")),
                (MediaKind::Audio, c) => s.fail(format!("{c} audio cannot be carried in HLS (Opus only)")),
            }
            if std::mem::take(&mut s.wants_keyframe) {
                o.wants_keyframe.store(true, Ordering::Relaxed);
            }
            let (version, failed) = (s.version, s.failed().is_some());
            drop(s);
            if version != before {
                o.changed.send_replace(version);
            }
            if failed {
                break;
            }
        }
        let mut s = o.lock();
        s.end();
        let version = s.version;
        drop(s);
        o.changed.send_replace(version);
        metrics::gauge!("callgate_hls_muxers").decrement(1.0);
    })?;
    Ok((HlsTap { tx, out: out.clone() }, out))
}
