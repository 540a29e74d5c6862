//! Plain RTP (RFC 3550 §5.1) for the SIP side of a bridge, and RFC 4733 telephone events.
//! Pure functions on bytes.

/// The fixed header fields callgate reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
}

/// Parses an RTP packet: the header and the payload (after CSRCs and the extension, without
/// padding). `None` for anything that is not RTP version 2, or RTCP (PT 72..=76 with the marker
/// bit, i.e. packet types 200..=204).
pub fn parse(buf: &[u8]) -> Option<(RtpHeader, &[u8])> {
    if buf.len() < 12 || buf[0] >> 6 != 2 || (200..=204).contains(&buf[1]) {
        return None;
    }
    let cc = (buf[0] & 0x0f) as usize;
    let mut at = 12 + 4 * cc;
    if buf[0] & 0x10 != 0 {
        let ext = buf.get(at..at + 4)?;
        at += 4 + 4 * u16::from_be_bytes([ext[2], ext[3]]) as usize;
    }
    let mut end = buf.len();
    if buf[0] & 0x20 != 0 {
        let pad = *buf.last()? as usize;
        end = end.checked_sub(pad)?;
    }
    let payload = buf.get(at..end)?;
    let h = RtpHeader {
        marker: buf[1] & 0x80 != 0,
        pt: buf[1] & 0x7f,
        seq: u16::from_be_bytes([buf[2], buf[3]]),
        ts: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
    };
    Some((h, payload))
}

/// Writes a packet with a 12-byte header (no CSRC, no extension, no padding).
pub fn write(h: &RtpHeader, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + payload.len());
    v.push(0x80);
    v.push((u8::from(h.marker) << 7) | (h.pt & 0x7f));
    v.extend_from_slice(&h.seq.to_be_bytes());
    v.extend_from_slice(&h.ts.to_be_bytes());
    v.extend_from_slice(&h.ssrc.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// RFC 4733 §3.2 event code of a DTMF key.
pub fn dtmf_event(key: char) -> Option<u8> {
    match key.to_ascii_uppercase() {
        c @ '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        c @ 'A'..='D' => Some(12 + (c as u8 - b'A')),
        _ => None,
    }
}

/// RFC 4733 §2.3 payload: event, E bit, volume (dBm0, 0..=63), duration in timestamp units.
pub fn telephone_event(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [event, (u8::from(end) << 7) | (volume & 0x3f), d[0], d[1]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_parse_round_trips() {
        let h = RtpHeader { marker: true, pt: 0, seq: 65535, ts: 0xdead_beef, ssrc: 0x0102_0304 };
        let p = write(&h, &[1, 2, 3]);
        assert_eq!(&p[..2], &[0x80, 0x80]);
        assert_eq!(parse(&p), Some((h, &[1u8, 2, 3][..])));
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        // V=2, P=1, X=1, CC=1; PT 8; one CSRC; a one-word extension; 2 bytes of padding.
        let mut p = vec![0xb1, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];
        p.extend([0, 0, 0, 9]); // CSRC
        p.extend([0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]); // extension header + 1 word
        p.extend([0xd5, 0xd5]); // payload
        p.extend([0, 2]); // padding, count 2
        let (h, payload) = parse(&p).unwrap();
        assert_eq!((h.pt, h.seq, h.ts, h.ssrc), (8, 1, 160, 7));
        assert_eq!(payload, &[0xd5, 0xd5]);
    }

    #[test]
    fn rtcp_short_and_wrong_version_are_not_rtp() {
        assert!(parse(&[0x80, 200, 0, 6, 0, 0, 0, 1, 0, 0, 0, 0]).is_none(), "RTCP SR");
        assert!(parse(&[0x80, 0, 0]).is_none());
        assert!(parse(&[0x40, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]).is_none());
        let mut lying = write(&RtpHeader { marker: false, pt: 0, seq: 1, ts: 1, ssrc: 1 }, &[]);
        lying[0] |= 0x0f; // 15 CSRCs that are not there
        assert!(parse(&lying).is_none());
    }

    #[test]
    fn dtmf_events_follow_rfc4733() {
        assert_eq!(dtmf_event('5'), Some(5));
        assert_eq!(dtmf_event('*'), Some(10));
        assert_eq!(dtmf_event('#'), Some(11));
        assert_eq!(dtmf_event('d'), Some(15));
        assert_eq!(dtmf_event('x'), None);
        assert_eq!(telephone_event(5, true, 10, 800), [5, 0x8a, 0x03, 0x20]);
        assert_eq!(telephone_event(11, false, 10, 160), [11, 0x0a, 0, 160]);
    }
}
