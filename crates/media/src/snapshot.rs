//! Stream snapshots: the next complete VP8 keyframe of a publisher, decoded to a PNG.
//!
//! ```text
//!  MediaEndpoint::snapshot(publisher, wait)
//!    -> media task: a waiter on the publisher + a keyframe request (PLI/FIR)
//!       the publisher's next video packets -> KeyframeAssembler (RFC 7741, as the recorder)
//!       a complete keyframe -> every waiter gets the frame's bytes (no decoding on the media task)
//!    -> a blocking thread (tokio's pool): VP8 -> RGB (image-webp) -> PNG (png)
//! ```
//!
//! Nothing is decoded unless a snapshot was asked for, and only the one keyframe. The decoder is
//! image-rs's pure-Rust WebP decoder: a lossy WebP's `VP8 ` chunk is exactly a VP8 keyframe
//! (RFC 6386), so the frame is wrapped in a RIFF/WEBP container ([`webp_container`]) and decoded
//! as a still image. H.264 publishers get [`SnapshotError::NoDecoder`]: there is no H.264
//! decoder in the process.

use std::io::Cursor;
use std::time::Duration;

use str0m::format::Codec;
use tokio::sync::oneshot;

use crate::record::{vp8_keyframe_size, vp8_payload};

/// How long the server's snapshots wait for the publisher's next keyframe
/// (`callgate_server::streams::SNAPSHOT_WAIT`).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// The largest picture decoded (width x height): VP8's 14-bit sizes allow 16383 x 16383, i.e.
/// 800 MB of RGB; a browser sends at most 4K. Anything larger is refused before decoding.
pub const MAX_PIXELS: u64 = 4096 * 2304;

/// A decoded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub width: u32,
    pub height: u32,
    /// The PNG file (8-bit RGB).
    pub png: Vec<u8>,
}

/// Why there is no snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// No publisher of that id on this endpoint.
    #[error("the stream is not published here")]
    NotFound,
    /// The publisher sends no video.
    #[error("the stream has no video")]
    NoVideo,
    /// The publisher's video codec has no decoder here (H.264).
    #[error("no decoder for {0} video (snapshots decode VP8 only)")]
    NoDecoder(String),
    /// No complete keyframe arrived in time.
    #[error("no keyframe arrived within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The stream ended before a keyframe arrived.
    #[error("the stream ended before a keyframe arrived")]
    Ended,
    /// The keyframe could not be decoded or encoded.
    #[error("the keyframe could not be decoded: {0}")]
    Decode(String),
    /// The media task is not running.
    #[error("the media endpoint is not running")]
    Stopped,
}

/// What a waiter gets from the media task: a complete VP8 keyframe, or why not.
pub type KeyframeReply = Result<Vec<u8>, SnapshotError>;

/// A publisher's pending snapshots and the keyframe being put together for them (the media
/// task's; exists only while someone waits).
#[derive(Default)]
pub struct KeyframeTap {
    waiters: Vec<oneshot::Sender<KeyframeReply>>,
    frame: Option<Partial>,
    last_seq: Option<u64>,
}

/// The VP8 frame being reassembled.
struct Partial {
    ts: u32,
    next_seq: u64,
    data: Vec<u8>,
}

impl KeyframeTap {
    pub fn add(&mut self, waiter: oneshot::Sender<KeyframeReply>) {
        self.waiters.push(waiter);
    }

    /// Nobody waits any more (each waiter gave up, or got its answer).
    pub fn is_idle(&mut self) -> bool {
        self.waiters.retain(|w| !w.is_closed());
        self.waiters.is_empty()
    }

    /// Answers every waiter with `e`.
    pub fn fail(&mut self, e: SnapshotError) {
        for w in self.waiters.drain(..) {
            let _ = w.send(Err(e.clone()));
        }
    }

    /// Takes one of the publisher's video packets. A packet of another codec than VP8 fails the
    /// waiters ([`SnapshotError::NoDecoder`]); a complete keyframe answers them. Returns
    /// `true` when the tap is done (no waiter left).
    pub fn push(&mut self, codec: Codec, seq: u64, ts: u32, marker: bool, payload: &[u8]) -> bool {
        if codec != Codec::Vp8 {
            self.fail(SnapshotError::NoDecoder(codec.to_string()));
            return true;
        }
        if let Some(frame) = self.assemble(seq, ts, marker, payload) {
            for w in self.waiters.drain(..) {
                let _ = w.send(Ok(frame.clone()));
            }
            return true;
        }
        self.is_idle()
    }

    /// RFC 7741 depacketizing, as the recorder does: a frame starts at S = 1 with partition 0,
    /// ends at the marker bit, its packets have consecutive sequence numbers and one timestamp.
    /// Returns a completed keyframe.
    fn assemble(&mut self, seq: u64, ts: u32, marker: bool, payload: &[u8]) -> Option<Vec<u8>> {
        if self.last_seq.is_some_and(|last| seq <= last) {
            return None; // late or repeated
        }
        self.last_seq = Some(seq);
        let (start, body) = vp8_payload(payload)?;
        if start {
            // A keyframe's frame tag has P = 0 (RFC 6386 §9.1): only those are kept.
            self.frame = body.first().filter(|b| *b & 1 == 0).map(|_| Partial { ts, next_seq: seq, data: Vec::new() });
        }
        let f = self.frame.as_mut()?;
        if f.ts != ts || f.next_seq != seq {
            tracing::debug!(seq, expected = f.next_seq, "snapshot: keyframe incomplete, waiting for the next one");
            self.frame = None; // a packet is missing: wait for the next keyframe
            return None;
        }
        f.data.extend_from_slice(body);
        f.next_seq += 1;
        if !marker {
            return None;
        }
        self.frame.take().map(|f| f.data).filter(|d| vp8_keyframe_size(d).is_some())
    }
}

/// A RIFF/WEBP container holding `frame` as its one `VP8 ` chunk (a simple lossy WebP file:
/// RIFF header, `WEBP`, chunk tag, chunk size, the frame, a pad byte to an even size).
pub fn webp_container(frame: &[u8]) -> Vec<u8> {
    let pad = frame.len() % 2;
    let chunk = 8 + frame.len() + pad;
    let mut out = Vec::with_capacity(12 + chunk);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&((4 + chunk) as u32).to_le_bytes());
    out.extend_from_slice(b"WEBPVP8 ");
    out.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    out.extend_from_slice(frame);
    out.resize(out.len() + pad, 0);
    out
}

/// Decodes a VP8 keyframe to 8-bit RGB: (width, height, pixels row by row).
pub fn decode_vp8_keyframe(frame: &[u8]) -> Result<(u32, u32, Vec<u8>), SnapshotError> {
    let (w, h) = vp8_keyframe_size(frame).ok_or_else(|| SnapshotError::Decode("not a VP8 keyframe".into()))?;
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(SnapshotError::Decode(format!("{w}x{h} is larger than a snapshot may be")));
    }
    let bad = |e: image_webp::DecodingError| SnapshotError::Decode(e.to_string());
    let mut dec = image_webp::WebPDecoder::new(Cursor::new(webp_container(frame))).map_err(bad)?;
    let (dw, dh) = dec.dimensions();
    let size = dec.output_buffer_size().ok_or_else(|| SnapshotError::Decode("the picture is too large".into()))?;
    if dec.has_alpha() || size != dw as usize * dh as usize * 3 {
        return Err(SnapshotError::Decode("unexpected pixel format".into()));
    }
    let mut rgb = vec![0; size];
    dec.read_image(&mut rgb).map_err(bad)?;
    Ok((dw, dh, rgb))
}

/// Encodes 8-bit RGB pixels as a PNG.
pub fn encode_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, SnapshotError> {
    let bad = |e: png::EncodingError| SnapshotError::Decode(format!("PNG: {e}"));
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, width, height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut w = enc.write_header().map_err(bad)?;
    w.write_image_data(rgb).map_err(bad)?;
    w.finish().map_err(bad)?;
    Ok(out)
}

/// A VP8 keyframe to a PNG [`Snapshot`] (CPU-bound: run it off the media task).
pub fn keyframe_to_png(frame: &[u8]) -> Result<Snapshot, SnapshotError> {
    let (width, height, rgb) = decode_vp8_keyframe(frame)?;
    let png = encode_png(width, height, &rgb)?;
    Ok(Snapshot { width, height, png })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Real VP8 keyframes made by libvpx's encoder (testdata/make_vp8_keyframes.sh).
    const KEY_320: &[u8] = include_bytes!("../testdata/keyframe-320x240.vp8");
    const KEY_640: &[u8] = include_bytes!("../testdata/keyframe-640x480.vp8");

    fn png_info(png: &[u8]) -> (u32, u32, Vec<u8>) {
        let mut r = png::Decoder::new(Cursor::new(png)).read_info().expect("a PNG");
        let mut buf = vec![0; r.output_buffer_size().unwrap()];
        let info = r.next_frame(&mut buf).expect("its pixels");
        assert_eq!((info.color_type, info.bit_depth), (png::ColorType::Rgb, png::BitDepth::Eight));
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn a_real_vp8_keyframe_decodes_to_its_size_and_picture() {
        for (frame, size) in [(KEY_320, (320, 240)), (KEY_640, (640, 480))] {
            let snap = keyframe_to_png(frame).expect("decodes");
            assert_eq!((snap.width, snap.height), size);
            let (w, h, rgb) = png_info(&snap.png);
            assert_eq!((w, h), size);
            // The source picture (make_bars_y4m.py): eight vertical bars, white on the left,
            // black on the right, a grey ramp in the bottom quarter. Noise and a lossy encoder
            // allow some slack.
            let px = |x: u32, y: u32| {
                let i = ((y * w + x) * 3) as usize;
                (rgb[i], rgb[i + 1], rgb[i + 2])
            };
            let luma = |(r, g, b): (u8, u8, u8)| (u32::from(r) + u32::from(g) + u32::from(b)) / 3;
            assert!(luma(px(w / 16, h / 3)) > 200, "white bar: {:?}", px(w / 16, h / 3));
            assert!(luma(px(w - w / 16, h / 3)) < 50, "black bar: {:?}", px(w - w / 16, h / 3));
            let (l, r) = (luma(px(4, h - 8)), luma(px(w - 4, h - 8)));
            assert!(l < 60 && r > 190, "the ramp goes from dark to light: {l} .. {r}");
            // The second bar (yellow: no blue) is not grey: colour came through.
            let (r2, g2, b2) = px(w * 3 / 16, h / 3);
            assert!(r2 > 150 && g2 > 150 && b2 < 100, "yellow bar: {:?}", (r2, g2, b2));
        }
    }

    #[test]
    fn decode_cost_of_a_640x480_keyframe() {
        // Printed, never asserted (docs/media.md "Snapshots" quotes it): run with --nocapture.
        keyframe_to_png(KEY_640).unwrap();
        let n = 20;
        let t = Instant::now();
        for _ in 0..n {
            decode_vp8_keyframe(KEY_640).unwrap();
        }
        let decode = t.elapsed() / n;
        let (w, h, rgb) = decode_vp8_keyframe(KEY_640).unwrap();
        let t = Instant::now();
        for _ in 0..n {
            encode_png(w, h, &rgb).unwrap();
        }
        let encode = t.elapsed() / n;
        println!("640x480 VP8 keyframe ({} bytes): decode {decode:?}, PNG encode {encode:?}", KEY_640.len());
    }

    #[test]
    fn not_a_keyframe_or_garbage_is_a_decode_error() {
        let mut delta = KEY_320.to_vec();
        delta[0] |= 1;
        assert!(matches!(keyframe_to_png(&delta), Err(SnapshotError::Decode(_))));
        assert!(matches!(keyframe_to_png(&KEY_320[..40]), Err(SnapshotError::Decode(_))));
        let mut huge = KEY_320.to_vec();
        huge[6..10].copy_from_slice(&[0xff, 0x3f, 0xff, 0x3f]);
        assert!(matches!(keyframe_to_png(&huge), Err(SnapshotError::Decode(_))));
    }

    /// RTP payloads of `frame` as a VP8 packetizer makes them: a 1-byte descriptor (S on the
    /// first), `chunk` bytes each.
    fn packets(frame: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        frame
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| {
                let mut p = vec![if i == 0 { 0x10 } else { 0x00 }];
                p.extend_from_slice(c);
                p
            })
            .collect()
    }

    #[test]
    fn the_tap_answers_with_the_next_complete_keyframe_and_skips_broken_ones() {
        let mut tap = KeyframeTap::default();
        let (tx, mut rx) = oneshot::channel();
        tap.add(tx);
        let mut seq = 100;
        // A delta frame: ignored.
        let mut delta = vec![0x11; 300];
        delta[0] = 0x01;
        assert!(!tap.push(Codec::Vp8, seq, 1, true, &[&[0x10u8][..], &delta].concat()));
        seq += 1;
        // A keyframe with a packet missing: not taken.
        let pk = packets(KEY_320, 1000);
        for (i, p) in pk.iter().enumerate() {
            if i == 1 {
                continue;
            }
            assert!(!tap.push(Codec::Vp8, seq + i as u64, 2, i == pk.len() - 1, p));
        }
        seq += pk.len() as u64;
        assert!(rx.try_recv().is_err());
        // A whole one, with a repeated packet in the middle.
        for (i, p) in pk.iter().enumerate() {
            let done = tap.push(Codec::Vp8, seq + i as u64, 3, i == pk.len() - 1, p);
            assert_eq!(done, i == pk.len() - 1);
            if i == 1 {
                assert!(!tap.push(Codec::Vp8, seq + i as u64, 3, false, p));
            }
        }
        assert_eq!(rx.try_recv().unwrap().unwrap(), KEY_320);
    }

    #[test]
    fn h264_fails_the_waiters_and_a_gone_waiter_leaves_the_tap_idle() {
        let mut tap = KeyframeTap::default();
        let (tx, mut rx) = oneshot::channel();
        tap.add(tx);
        assert!(tap.push(Codec::H264, 1, 1, true, &[0x65, 1, 2]));
        assert!(matches!(rx.try_recv().unwrap(), Err(SnapshotError::NoDecoder(c)) if c.contains("264")));
        let (tx, rx) = oneshot::channel();
        tap.add(tx);
        assert!(!tap.is_idle());
        drop(rx);
        assert!(tap.is_idle());
    }

    #[test]
    fn the_container_is_a_valid_riff() {
        let c = webp_container(&[1, 2, 3]);
        assert_eq!(&c[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(c[4..8].try_into().unwrap()) as usize, c.len() - 8);
        assert_eq!(&c[8..16], b"WEBPVP8 ");
        assert_eq!(u32::from_le_bytes(c[16..20].try_into().unwrap()), 3);
        assert_eq!(c.len() % 2, 0);
    }
}
