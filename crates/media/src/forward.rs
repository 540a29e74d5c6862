//! RTP-level forwarding state (publisher and player peers run str0m in RTP mode).
//!
//! A publisher's packets come out of str0m as `Event::RtpPacket` (SRTP removed, RTX repairs
//! already folded back onto the main stream, sequence numbers extended to 64 bits). Each player
//! re-sends the same payload (`Arc<[u8]>`, shared, never copied) on its own send stream:
//!
//! - **SSRC**: the player's stream (str0m made it from the player's SDP).
//! - **Payload type**: the player's PT for the publisher's codec (`CodecConfig::match_params`,
//!   the same matching the frame-level writer did), looked up once per (player, publisher PT).
//! - **Sequence numbers**: the publisher's extended numbers shifted by a per-player offset
//!   ([`SeqMap`]), so every player starts at [`FIRST_SEQ`] (ROC 0, as a receiver without
//!   out-of-band signalling expects, RFC 3711 §3.3.1) whenever it joins; a gap in the publisher's
//!   stream stays a gap (the player's decoder sees the loss instead of a silently corrupt frame),
//!   a reordered packet keeps its place, and a packet older than the player's first one is dropped.
//! - **Timestamps, marker bit, payload bytes**: the publisher's, unchanged (a new SSRC may start
//!   at any timestamp; the VP8/H.264 payload descriptors stay valid because nothing is
//!   re-packetized).
//! - **Header extensions**: audio level / voice activity and video orientation are passed on;
//!   str0m adds mid for the player's own negotiation (players' answers carry no transport-cc or
//!   abs-send-time: no bandwidth estimate is made towards players).
//!
//! The core keeps the publisher's per-SSRC last sequence number ([`RxTrack`]) to see gaps: a gap
//! in video makes it ask the publisher for a keyframe (the frame-level path used str0m's
//! `MediaData::contiguous` for that, which RTP mode does not have).

use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::{ExtensionValues, RtpPacket, Ssrc};

/// The first sequence number a player gets on each of its streams.
pub(crate) const FIRST_SEQ: u64 = 1;

/// The largest publisher payload passed on to players. A player's packet is this plus its header
/// (12 bytes, and extensions: mid, rid, audio level, video orientation, abs-send-time, TWCC,
/// under 80 bytes: str0m's `MAX_RTP_OVERHEAD`) plus the 16-byte SRTP tag, which must stay within
/// str0m's 2000-byte datagram buffer (its regular send path panics past it, and its RTX cache
/// indexes packet sizes below it). Browsers keep packets under the path MTU (~1200 bytes).
pub(crate) const MAX_FORWARDED_PAYLOAD: usize = 1_900;

/// A jump this large (either way) between consecutive publisher packets is taken as a restart of
/// the publisher's numbering (the player's numbering continues instead of jumping with it).
const MAX_SEQ_JUMP: u64 = 3000;

/// Publisher side: one per incoming SSRC.
#[derive(Debug)]
pub(crate) struct RxTrack {
    pub ssrc: Ssrc,
    pub kind: MediaKind,
    last_seq: Option<u64>,
}

impl RxTrack {
    pub fn new(ssrc: Ssrc, kind: MediaKind) -> RxTrack {
        RxTrack { ssrc, kind, last_seq: None }
    }

    /// Notes an incoming (extended) sequence number; true when packets before it are missing.
    /// Reordered or repaired packets (older than the newest seen) are not gaps.
    pub fn note_seq(&mut self, seq: u64) -> bool {
        let gap = self.last_seq.is_some_and(|last| seq > last + 1);
        if self.last_seq.is_none_or(|last| seq > last) {
            self.last_seq = Some(seq);
        }
        gap
    }
}

/// Maps the publisher's extended sequence numbers onto one player stream's numbering.
#[derive(Debug, Default)]
pub(crate) struct SeqMap {
    /// Publisher SSRC the offset belongs to.
    src: Option<Ssrc>,
    /// `out = in + offset` (as i128 to stay exact on both sides).
    offset: i128,
    /// Highest number given out so far (`FIRST_SEQ - 1` before the first).
    max_out: u64,
}

impl SeqMap {
    pub fn new() -> SeqMap {
        SeqMap { src: None, offset: 0, max_out: FIRST_SEQ - 1 }
    }

    /// The player's sequence number for the publisher's `seq` on `src`, or `None` for a packet
    /// from before the player's first one.
    pub fn map(&mut self, src: Ssrc, seq: u64) -> Option<u64> {
        let seq = i128::from(seq);
        let restart = match self.src {
            None => true,
            Some(s) if s != src => true,
            Some(_) => (seq + self.offset - i128::from(self.max_out)).unsigned_abs() > u128::from(MAX_SEQ_JUMP),
        };
        if restart {
            self.src = Some(src);
            self.offset = i128::from(self.max_out) + 1 - seq;
        }
        let out = seq + self.offset;
        if out < FIRST_SEQ as i128 {
            return None;
        }
        let out = out as u64;
        self.max_out = self.max_out.max(out);
        Some(out)
    }
}

/// Player side: the rewrite state of one of its send streams (audio or video).
#[derive(Debug)]
pub(crate) struct TxTrack {
    pub mid: Mid,
    /// The player's send stream for `mid`, once looked up (str0m finds a stream by mid with a
    /// scan of all its streams, by SSRC with a map lookup).
    pub ssrc: Option<Ssrc>,
    /// Publisher PT -> this player's PT (`None`: no common codec), learnt on first use.
    pts: Vec<(Pt, Option<Pt>)>,
    pub seq: SeqMap,
}

impl TxTrack {
    pub fn new(mid: Mid) -> TxTrack {
        TxTrack { mid, ssrc: None, pts: Vec::new(), seq: SeqMap::new() }
    }

    /// The player's PT for the publisher's `pt`; `resolve` is called once per publisher PT.
    pub fn pt_for(&mut self, pt: Pt, resolve: impl FnOnce() -> Option<Pt>) -> Option<Pt> {
        if let Some((_, out)) = self.pts.iter().find(|(p, _)| *p == pt) {
            return *out;
        }
        let out = resolve();
        self.pts.push((pt, out));
        out
    }
}

/// The header extension values a player gets from a publisher packet.
pub(crate) fn forwarded_ext_vals(pkt: &RtpPacket) -> ExtensionValues {
    let e = &pkt.header.ext_vals;
    ExtensionValues {
        audio_level: e.audio_level,
        voice_activity: e.voice_activity,
        video_orientation: e.video_orientation,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ssrc(v: u32) -> Ssrc {
        Ssrc::from(v)
    }

    #[test]
    fn a_player_starts_at_the_first_seq_whatever_the_publisher_is_at() {
        let mut m = SeqMap::new();
        let base = 5 * 65_536 + 40_000; // a long-running publisher, ROC 5
        let got: Vec<_> = (0..4).map(|i| m.map(ssrc(7), base + i)).collect();
        assert_eq!(got, [Some(1), Some(2), Some(3), Some(4)]);
    }

    #[test]
    fn gaps_stay_gaps_and_reordered_packets_keep_their_place() {
        let mut m = SeqMap::new();
        assert_eq!(m.map(ssrc(7), 100), Some(1));
        assert_eq!(m.map(ssrc(7), 103), Some(4), "two lost packets stay missing");
        assert_eq!(m.map(ssrc(7), 102), Some(3), "a late packet fills its own slot");
        assert_eq!(m.map(ssrc(7), 104), Some(5));
        assert_eq!(m.map(ssrc(7), 99), None, "older than the player's first packet");
        assert_eq!(m.map(ssrc(7), 105), Some(6));
    }

    #[test]
    fn a_new_publisher_ssrc_or_a_wild_jump_continues_the_players_numbering() {
        let mut m = SeqMap::new();
        assert_eq!(m.map(ssrc(7), 100), Some(1));
        assert_eq!(m.map(ssrc(7), 101), Some(2));
        assert_eq!(m.map(ssrc(8), 60_000), Some(3), "new SSRC");
        assert_eq!(m.map(ssrc(8), 60_001), Some(4));
        assert_eq!(m.map(ssrc(8), 60_001 + 50_000), Some(5), "restart of the numbering");
        assert_eq!(m.map(ssrc(8), 60_001 + 50_001), Some(6));
        // Wrapping past 65535 is handled by str0m's extended numbers: still contiguous.
        let mut m = SeqMap::new();
        assert_eq!(m.map(ssrc(9), 65_535), Some(1));
        assert_eq!(m.map(ssrc(9), 65_536), Some(2));
    }

    #[test]
    fn gaps_are_seen_on_the_publisher_side_but_reordering_is_not_one() {
        let mut t = RxTrack::new(ssrc(9), MediaKind::Video);
        assert!(!t.note_seq(10), "the first packet");
        assert!(!t.note_seq(11));
        assert!(t.note_seq(13), "12 is missing");
        assert!(!t.note_seq(12), "12 arrives late (or repaired by RTX)");
        assert!(!t.note_seq(14));
        assert!(!t.note_seq(14), "a duplicate");
    }

    #[test]
    fn payload_types_are_resolved_once() {
        let mut t = TxTrack::new(Mid::from("1"));
        let mut calls = 0;
        for _ in 0..3 {
            let got = t.pt_for(Pt::from(96), || {
                calls += 1;
                Some(Pt::from(102))
            });
            assert_eq!(got, Some(Pt::from(102)));
        }
        assert_eq!(t.pt_for(Pt::from(45), || None), None);
        assert_eq!(t.pt_for(Pt::from(45), || Some(Pt::from(1))), None, "no common codec is remembered too");
        assert_eq!(calls, 1);
    }
}
