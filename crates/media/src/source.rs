//! Pulled sources (an RTSP camera, `playStream` of an `rtsp://` name): media that comes from the
//! server itself rather than from a browser's `RTCPeerConnection`. Pure: the codecs a source may
//! carry, what a player negotiates for them, and the RFC 6184 packetizer of H.264 access units.
//!
//! Why repacketize rather than pass the camera's RTP packets on: the RTSP client (retina, in the
//! server) depacketizes the camera's RTP into whole access units, checking sequence numbers and
//! fragmentation, and puts SPS/PPS in front of every IDR (a camera often sends them only in its
//! SDP's `sprop-parameter-sets`, which a browser never sees). Packetizing those access units
//! again (single NAL unit packets, FU-A for larger NAL units, RFC 6184 §5.6 and §5.8) gives
//! players packets of a size WebRTC expects (a camera's may be larger than a path MTU after the
//! SRTP overhead), starting with a decodable keyframe, and lets the core keep that keyframe for
//! players that join later. str0m's own frame-mode writer would packetize too, but players run in
//! RTP mode (the core forwards browser publishers' RTP to them), and one player cannot be in both.

use str0m::format::{Codec, CodecSpec, FormatParams, PayloadParams};
pub use str0m::media::MediaKind;
use str0m::media::{Frequency, Pt};

/// The largest RTP payload a source packet gets (the SRTP, RTP header and extension overhead
/// stays well under a 1280-byte IPv6 minimum MTU's remainder).
pub const MAX_PAYLOAD: usize = 1100;

/// A codec a pulled source may forward without transcoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceCodec {
    /// H.264, with the camera's `profile-level-id` (3 bytes) when known.
    H264 {
        profile_level_id: Option<u32>,
    },
    Opus,
    Pcmu,
    Pcma,
}

impl SourceCodec {
    pub fn kind(self) -> MediaKind {
        match self {
            SourceCodec::H264 { .. } => MediaKind::Video,
            _ => MediaKind::Audio,
        }
    }

    /// The RTP clock rate of the codec.
    pub fn clock_rate(self) -> u32 {
        match self {
            SourceCodec::H264 { .. } => 90_000,
            SourceCodec::Opus => 48_000,
            SourceCodec::Pcmu | SourceCodec::Pcma => 8_000,
        }
    }

    /// The payload parameters a player's codec config is matched against
    /// (`CodecConfig::match_params`). The PT is the source's own (never sent: each player
    /// writes its own PT for the matching codec).
    pub fn params(self) -> PayloadParams {
        let (pt, codec, channels, format) = match self {
            SourceCodec::H264 { profile_level_id } => (
                96,
                Codec::H264,
                None,
                FormatParams {
                    level_asymmetry_allowed: Some(true),
                    packetization_mode: Some(1),
                    profile_level_id: Some(profile_level_id.unwrap_or(0x42e01f)),
                    ..Default::default()
                },
            ),
            SourceCodec::Opus => (
                111,
                Codec::Opus,
                Some(2),
                FormatParams { min_p_time: Some(10), use_inband_fec: Some(true), ..Default::default() },
            ),
            // As str0m describes the static payload types (no channel count), which matching compares.
            SourceCodec::Pcmu => (0, Codec::PCMU, None, FormatParams::default()),
            SourceCodec::Pcma => (8, Codec::PCMA, None, FormatParams::default()),
        };
        let clock_rate = Frequency::new(self.clock_rate()).expect("clock rates are not zero");
        PayloadParams::new(Pt::from(pt), None, CodecSpec { codec, clock_rate, channels, format })
    }
}

/// The NAL units of an access unit in 4-byte length-prefixed (AVC) form. A truncated or
/// malformed length ends the list (what came before is kept): a camera's bad data never panics.
pub fn avc_nal_units(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
        let Some(nal) = data.get(4..4 + len) else { break };
        if !nal.is_empty() {
            out.push(nal);
        }
        data = &data[4 + len..];
    }
    out
}

/// The H.264 NAL unit type (RFC 6184 §1.3: the low 5 bits of the first byte).
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// The `profile-level-id` of an SPS NAL unit (its bytes 1-3: profile_idc, constraint flags,
/// level_idc), if it is one.
pub fn sps_profile_level_id(nal: &[u8]) -> Option<u32> {
    (nal_type(nal) == 7 && nal.len() >= 4).then(|| u32::from_be_bytes([0, nal[1], nal[2], nal[3]]))
}

/// RFC 6184 packetization (mode 1, non-interleaved) of one access unit given as NAL units: a NAL
/// unit of at most `max` bytes is one packet (§5.6), a larger one is split into FU-A fragments
/// (§5.8). The caller sets the marker bit on the last packet (the end of the access unit).
pub fn packetize_h264<'a>(nals: impl IntoIterator<Item = &'a [u8]>, max: usize) -> Vec<Vec<u8>> {
    let max = max.max(3);
    let mut out = Vec::new();
    for nal in nals {
        if nal.is_empty() {
            continue;
        }
        if nal.len() <= max {
            out.push(nal.to_vec());
            continue;
        }
        let (header, body) = (nal[0], &nal[1..]);
        let indicator = (header & 0xe0) | 28; // F and NRI of the NAL unit, type FU-A
        let chunks: Vec<&[u8]> = body.chunks(max - 2).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let mut fu = header & 0x1f;
            if i == 0 {
                fu |= 0x80; // S
            }
            if i == last {
                fu |= 0x40; // E
            }
            let mut p = Vec::with_capacity(chunk.len() + 2);
            p.extend_from_slice(&[indicator, fu]);
            p.extend_from_slice(chunk);
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avc(nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for n in nals {
            v.extend_from_slice(&(n.len() as u32).to_be_bytes());
            v.extend_from_slice(n);
        }
        v
    }

    #[test]
    fn length_prefixed_nal_units_are_split_and_bad_lengths_stop_the_list() {
        let sps: &[u8] = &[0x67, 0x42, 0xc0, 0x1e, 0xd9];
        let idr: &[u8] = &[0x65, 1, 2, 3];
        let data = avc(&[sps, idr]);
        assert_eq!(avc_nal_units(&data), vec![sps, idr]);
        let mut bad = data.clone();
        bad.extend_from_slice(&[0, 0, 0, 99, 0x41]); // claims 99 bytes, has 1
        assert_eq!(avc_nal_units(&bad), vec![sps, idr]);
        assert!(avc_nal_units(&[0, 0]).is_empty());
        assert_eq!(sps_profile_level_id(sps), Some(0x42c01e));
        assert_eq!(sps_profile_level_id(idr), None);
        assert_eq!(nal_type(idr), 5);
    }

    #[test]
    fn small_nal_units_are_single_packets_and_large_ones_fu_a_fragments() {
        let sps: &[u8] = &[0x67, 0x42, 0xc0, 0x1e];
        let mut idr = vec![0x65];
        idr.extend((0..25u8).collect::<Vec<_>>());
        let pkts = packetize_h264([sps, &idr[..]], 10);
        assert_eq!(pkts[0], sps, "fits: one packet, the NAL unit as it is");
        let frags = &pkts[1..];
        assert_eq!(frags.len(), 4, "25 body bytes in chunks of 8");
        assert_eq!(frags[0][..2], [0x60 | 28, 0x80 | 5], "NRI kept, type FU-A, S bit and the NAL type");
        assert_eq!(frags[1][1], 5);
        assert_eq!(frags[3][1], 0x40 | 5, "E bit on the last");
        let body: Vec<u8> = frags.iter().flat_map(|f| f[2..].to_vec()).collect();
        assert_eq!(body, idr[1..], "the fragments carry the NAL unit's body in order");
        assert!(frags.iter().all(|f| f.len() <= 10));
    }

    #[test]
    fn params_carry_the_camera_profile_and_packetization_mode_1() {
        let p = SourceCodec::H264 { profile_level_id: Some(0x4d001f) }.params();
        assert_eq!(p.spec().codec, Codec::H264);
        assert_eq!(p.spec().format.profile_level_id, Some(0x4d001f));
        assert_eq!(p.spec().format.packetization_mode, Some(1));
        assert_eq!(SourceCodec::Pcma.params().spec().clock_rate.get(), 8000);
        assert_eq!(SourceCodec::Opus.kind(), MediaKind::Audio);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_fragments_stay_within_the_limit() {
        // xorshift: reproducible pseudo-random access units, lengths and limits.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let len = (next() % 5000) as usize;
            let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            let max = (next() % 1500) as usize;
            let nals = avc_nal_units(&data);
            let pkts = packetize_h264(nals.iter().copied(), max);
            assert!(pkts.iter().all(|p| !p.is_empty() && p.len() <= max.max(3)));
            for n in &nals {
                if let Some(p) = sps_profile_level_id(n) {
                    assert!(p <= 0xff_ffff);
                }
            }
        }
    }

    #[test]
    fn a_players_codec_config_matches_every_source_codec() {
        let mut c = str0m::format::CodecConfig::new_with_defaults();
        c.enable_pcmu(true, false);
        c.enable_pcma(true, false);
        for codec in [
            SourceCodec::H264 { profile_level_id: None },
            SourceCodec::H264 { profile_level_id: Some(0x42c01e) },
            SourceCodec::Opus,
            SourceCodec::Pcmu,
            SourceCodec::Pcma,
        ] {
            let m = c.match_params(codec.params()).unwrap_or_else(|| panic!("{codec:?} matches nothing"));
            assert_eq!(m.spec().codec, codec.params().spec().codec, "{codec:?}");
        }
    }
}
