//! H.264 from RTP (RFC 6184, packetization modes 0 and 1: single NAL unit packets, STAP-A,
//! FU-A) back into access units, and the picture size from an SPS (ITU-T H.264 §7.3.2.1.1).
//! (`crate::source` has the other direction, packetizing for players.)

/// One access unit: its RTP timestamp and NAL units (no start codes, no length prefixes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessUnit {
    pub ts: u32,
    pub nals: Vec<Vec<u8>>,
}

impl AccessUnit {
    /// It holds an IDR slice.
    pub fn is_keyframe(&self) -> bool {
        self.nals.iter().any(|n| nal_type(n) == 5)
    }

    /// Its last SPS and PPS, if it has them.
    pub fn parameter_sets(&self) -> (Option<&[u8]>, Option<&[u8]>) {
        let last = |t: u8| self.nals.iter().rev().find(|n| nal_type(n) == t).map(Vec::as_slice);
        (last(7), last(8))
    }
}

pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// The largest access unit reassembled (a 4K keyframe is a few hundred kilobytes).
pub const MAX_ACCESS_UNIT: usize = 4 << 20;

/// Reassembles access units from RTP packets in sequence order. A missing packet (a gap in the
/// extended sequence numbers) or a broken FU-A drops the access unit it belongs to; the caller
/// skips to the next keyframe.
#[derive(Debug, Default)]
pub struct Depacketizer {
    ts: Option<u32>,
    nals: Vec<Vec<u8>>,
    /// Bytes in `nals` and `fu`: an access unit past [`MAX_ACCESS_UNIT`] is dropped, so a
    /// sender that never ends one (no marker, no new timestamp, no FU-A end) cannot grow it.
    held: usize,
    fu: Option<Vec<u8>>,
    next_seq: Option<u64>,
    broken: bool,
    /// Access units dropped (incomplete).
    pub dropped: u64,
}

impl Depacketizer {
    /// Takes one packet; returns the access units it completes (the previous one when this
    /// packet starts a new timestamp without a marker bit before, and this one at its marker).
    pub fn push(&mut self, seq: u64, ts: u32, marker: bool, payload: &[u8]) -> Vec<AccessUnit> {
        let mut out = Vec::new();
        if self.next_seq.is_some_and(|n| seq < n) {
            return out; // late or duplicate
        }
        let gap = self.next_seq.is_some_and(|n| seq != n);
        self.next_seq = Some(seq + 1);
        if self.ts.is_some_and(|t| t != ts) {
            // A new access unit began without the previous one's marker.
            self.finish(&mut out);
        }
        if gap {
            self.broken = true;
            self.fu = None;
        }
        self.ts = Some(ts);
        self.take(payload);
        if marker {
            self.finish(&mut out);
        }
        out
    }

    fn take(&mut self, p: &[u8]) {
        if self.broken {
            return; // dropped at its end anyway
        }
        self.held += p.len();
        if self.held > MAX_ACCESS_UNIT {
            self.broken = true;
            self.nals = Vec::new();
            self.fu = None;
            return;
        }
        match nal_type(p) {
            1..=23 => self.nals.push(p.to_vec()),
            24 => {
                // STAP-A: 16-bit sizes and NAL units.
                let mut rest = &p[1..];
                while rest.len() >= 2 {
                    let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                    if n == 0 || rest.len() < 2 + n {
                        self.broken = true;
                        return;
                    }
                    self.nals.push(rest[2..2 + n].to_vec());
                    rest = &rest[2 + n..];
                }
            }
            28 if p.len() >= 2 => {
                let (start, end) = (p[1] & 0x80 != 0, p[1] & 0x40 != 0);
                if start {
                    let mut nal = Vec::with_capacity(p.len() * 4);
                    nal.push((p[0] & 0xe0) | (p[1] & 0x1f));
                    nal.extend_from_slice(&p[2..]);
                    self.fu = Some(nal);
                } else if let Some(nal) = self.fu.as_mut() {
                    nal.extend_from_slice(&p[2..]);
                } else {
                    self.broken = true;
                }
                if end {
                    if let Some(nal) = self.fu.take() {
                        self.nals.push(nal);
                    }
                }
            }
            _ => {} // STAP-B, MTAP, FU-B (mode 2), reserved: not sent by browsers
        }
    }

    fn finish(&mut self, out: &mut Vec<AccessUnit>) {
        self.held = 0;
        let nals = std::mem::take(&mut self.nals);
        let broken = std::mem::take(&mut self.broken) || self.fu.take().is_some();
        if let Some(ts) = self.ts.take() {
            if broken {
                self.dropped += 1;
            } else if !nals.is_empty() {
                out.push(AccessUnit { ts, nals });
            }
        }
    }
}

/// An SPS's picture size (cropping applied); `None` for an SPS that cannot be read.
pub fn sps_size(sps: &[u8]) -> Option<(u16, u16)> {
    // Emulation prevention bytes (00 00 03) out.
    let mut rbsp = Vec::with_capacity(sps.len());
    let mut zeros = 0;
    for &b in sps.get(1..)? {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        rbsp.push(b);
    }
    let mut r = Bits { data: &rbsp, pos: 0 };
    let profile = r.bits(8)?;
    r.bits(16)?; // constraint flags, level
    r.ue()?; // seq_parameter_set_id
    let mut chroma = 1;
    if matches!(profile, 100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135) {
        chroma = r.ue()?;
        if chroma == 3 {
            r.bits(1)?; // separate_colour_plane_flag
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bits(1)?; // qpprime_y_zero_transform_bypass_flag
        if r.bits(1)? == 1 {
            for i in 0..if chroma == 3 { 12 } else { 8 } {
                if r.bits(1)? == 1 {
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i64, 8i64);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?;
        }
        1 => {
            r.bits(1)?;
            r.se()?;
            r.se()?;
            for _ in 0..r.ue()?.min(255) {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bits(1)?; // gaps_in_frame_num_value_allowed_flag
    let w_mbs = r.ue()? + 1;
    let h_units = r.ue()? + 1;
    let frame_mbs_only = r.bits(1)?;
    if frame_mbs_only == 0 {
        r.bits(1)?; // mb_adaptive_frame_field_flag
    }
    r.bits(1)?; // direct_8x8_inference_flag
    let (mut cl, mut cr, mut ct, mut cb) = (0, 0, 0, 0);
    if r.bits(1)? == 1 {
        (cl, cr, ct, cb) = (r.ue()?, r.ue()?, r.ue()?, r.ue()?);
    }
    let field = 2 - frame_mbs_only;
    let (cx, cy) = match chroma {
        0 | 3 => (1, field),
        2 => (2, field),
        _ => (2, 2 * field),
    };
    let w = (w_mbs * 16).checked_sub(cx * (cl + cr))?;
    let h = (field * h_units * 16).checked_sub(cy * (ct + cb))?;
    Some((u16::try_from(w).ok()?, u16::try_from(h).ok()?))
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u64> {
        let b = self.data.get(self.pos / 8)?;
        let v = (b >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u64::from(v))
    }
    fn bits(&mut self, n: u32) -> Option<u64> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }
    fn ue(&mut self) -> Option<u64> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        Some((1 << zeros) - 1 + self.bits(zeros)?)
    }
    fn se(&mut self) -> Option<i64> {
        let v = i64::try_from(self.ue()?).ok()?;
        Some(if v % 2 == 1 { (v + 1) / 2 } else { -(v / 2) })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn an_access_unit_that_never_ends_is_dropped_at_its_size_bound() {
        let mut d = Depacketizer::default();
        let mut fu = vec![0x7c, 0x85];
        fu.extend(std::iter::repeat_n(7u8, 1200));
        assert!(d.push(0, 90, false, &fu).is_empty());
        fu[1] = 0x05; // middle fragments, same timestamp, no marker: forever
        for seq in 1..=(MAX_ACCESS_UNIT / 1200 + 10) as u64 {
            assert!(d.push(seq, 90, false, &fu).is_empty());
        }
        assert!(d.held <= MAX_ACCESS_UNIT + 1202 && d.fu.is_none() && d.nals.is_empty(), "{}", d.held);
        // It is dropped when it ends; the next access unit is taken again.
        let seq = (MAX_ACCESS_UNIT / 1200 + 11) as u64;
        let out = d.push(seq, 180, true, &[0x65, 1, 2, 3]);
        assert_eq!(out, vec![AccessUnit { ts: 180, nals: vec![vec![0x65, 1, 2, 3]] }]);
        assert_eq!(d.dropped, 1);
    }

    // Written bit by bit from §7.3.2.1.1 (no VUI): 320x240 constrained baseline, 1280x720 high,
    // 1920x1088 high cropped to 1080.
    pub(crate) const SPS_320: [u8; 8] = [0x67, 0x42, 0xc0, 0x1e, 0xda, 0x05, 0x07, 0xe4];
    const SPS_720P_HIGH: [u8; 10] = [0x67, 0x64, 0x00, 0x1f, 0xac, 0xb4, 0x02, 0x80, 0x2d, 0xc8];
    const SPS_1080P_HIGH: [u8; 11] = [0x67, 0x64, 0x00, 0x28, 0xac, 0xb4, 0x03, 0xc0, 0x11, 0x3f, 0x2a];

    #[test]
    fn sps_sizes() {
        assert_eq!(sps_size(&SPS_320), Some((320, 240)));
        assert_eq!(sps_size(&SPS_720P_HIGH), Some((1280, 720)));
        assert_eq!(sps_size(&SPS_1080P_HIGH), Some((1920, 1080)));
        assert_eq!(sps_size(&[0x67]), None);
        assert_eq!(sps_size(&[]), None);
    }

    #[test]
    fn stap_a_and_fu_a_reassemble_into_one_access_unit() {
        let mut d = Depacketizer::default();
        let sps = [0x67, 1, 2];
        let pps = [0x68, 3];
        let mut stap = vec![24];
        for n in [&sps[..], &pps[..]] {
            stap.extend_from_slice(&(n.len() as u16).to_be_bytes());
            stap.extend_from_slice(n);
        }
        assert!(d.push(10, 900, false, &stap).is_empty());
        assert!(d.push(11, 900, false, &[0x7c, 0x85, 1, 2]).is_empty()); // FU-A start, IDR
        assert!(d.push(12, 900, false, &[0x7c, 0x05, 3]).is_empty());
        let au = d.push(13, 900, true, &[0x7c, 0x45, 4]);
        assert_eq!(au.len(), 1);
        assert_eq!(au[0].nals, vec![sps.to_vec(), pps.to_vec(), vec![0x65, 1, 2, 3, 4]]);
        assert!(au[0].is_keyframe());
        assert_eq!(au[0].parameter_sets(), (Some(&sps[..]), Some(&pps[..])));
        // A P frame in one packet.
        let au = d.push(14, 3900, true, &[0x41, 9, 9]);
        assert_eq!(au, vec![AccessUnit { ts: 3900, nals: vec![vec![0x41, 9, 9]] }]);
        assert!(!au[0].is_keyframe());
    }

    #[test]
    fn a_lost_packet_drops_its_access_unit_only() {
        let mut d = Depacketizer::default();
        assert!(d.push(1, 100, false, &[0x7c, 0x85, 1]).is_empty());
        // seq 2 lost
        assert!(d.push(3, 100, true, &[0x7c, 0x45, 3]).is_empty());
        assert_eq!(d.dropped, 1);
        assert_eq!(d.push(4, 200, true, &[0x41, 1]).len(), 1);
        // No marker on the last one: the next timestamp completes it.
        assert!(d.push(5, 300, false, &[0x41, 2]).is_empty());
        assert_eq!(d.push(6, 400, true, &[0x41, 3]).len(), 2);
        // Late and duplicate packets are ignored; junk never panics.
        assert!(d.push(6, 400, true, &[0x41, 3]).is_empty());
        for junk in [&[][..], &[24, 0], &[24, 0, 9, 1], &[28], &[28, 0x40], &[0xff; 3]] {
            let _ = d.push(d.next_seq.unwrap(), 500, true, junk);
        }
    }
}
