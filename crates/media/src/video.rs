//! The video half of a call bridge's SIP side: plain RTP/AVP with the one video codec the
//! browser negotiated (VP8 or H.264, passed through: never transcoded, never re-packetized), on
//! its own RTP port, with RTCP keyframe feedback (RFC 4585 PLI, RFC 5104 FIR) multiplexed on
//! that port (RFC 5761). Pure: packets and SDP text in, packets and SDP text out.
//!
//! ```text
//! browser ══SRTP (str0m, RTP mode)══ bridge peer ══plain RTP══ SIP peer (video port)
//!        RTP packets (payload as is) ->  own SSRC, seq and ts offsets, the SIP side's PT
//!        RTP packets (payload as is) <-  the browser's PT, str0m's SSRC, seq from 1
//!        PLI/FIR from the SIP side   ->  keyframe request to the browser (throttled)
//!        PLI/FIR from the browser    ->  RTCP PLI to the SIP side
//! ```

use std::net::{IpAddr, SocketAddr};

use crate::bridge::RtpLatching;
use crate::rtp::{self, RtpHeader};

/// A video codec a call can carry through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoCodec {
    Vp8,
    H264,
}

impl VideoCodec {
    pub fn name(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "VP8",
            VideoCodec::H264 => "H264",
        }
    }

    fn from_name(name: &str) -> Option<VideoCodec> {
        match name.to_ascii_uppercase().as_str() {
            "VP8" => Some(VideoCodec::Vp8),
            "H264" => Some(VideoCodec::H264),
            _ => None,
        }
    }
}

/// A video codec as one SDP names it: payload type and `a=fmtp` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFormat {
    pub codec: VideoCodec,
    pub pt: u8,
    /// The `a=fmtp:<pt>` value (H.264: `profile-level-id`, `packetization-mode`, ...).
    pub fmtp: Option<String>,
}

impl VideoFormat {
    /// An `a=fmtp` parameter (`key=value`, `;`-separated).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.fmtp.as_deref()?.split(';').find_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
        })
    }
}

/// One `m=` section of an SDP, as far as the bridge reads it.
#[derive(Debug, Default)]
pub(crate) struct Section<'a> {
    pub kind: &'a str,
    pub port: u16,
    pub pts: Vec<u8>,
    pub conn: Option<IpAddr>,
    pub lines: Vec<&'a str>,
}

impl Section<'_> {
    fn attr(&self, name: &str, pt: u8) -> Option<&str> {
        self.lines.iter().find_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (p, v) = rest.split_once(' ')?;
            (p.parse::<u8>().ok()? == pt).then_some(v.trim())
        })
    }

    fn has(&self, line: &str) -> bool {
        self.lines.contains(&line)
    }
}

/// The session-level connection address and the `m=` sections of `sdp`.
pub(crate) fn sections(sdp: &str) -> (Option<IpAddr>, Vec<Section<'_>>) {
    let mut session_conn = None;
    let mut out: Vec<Section> = Vec::new();
    for line in sdp.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            let mut f = m.split_whitespace();
            let kind = f.next().unwrap_or("");
            let port = f.next().and_then(|p| p.split('/').next()?.parse().ok()).unwrap_or(0);
            let pts = f.skip(1).filter_map(|p| p.parse().ok()).collect();
            out.push(Section { kind, port, pts, ..Default::default() });
        } else if let Some(c) = line.strip_prefix("c=IN ") {
            let ip = c.split_whitespace().nth(1).and_then(|a| a.split('/').next()?.parse().ok());
            match out.last_mut() {
                Some(s) => s.conn = ip,
                None => session_conn = ip,
            }
        } else if let Some(s) = out.last_mut() {
            s.lines.push(line);
        }
    }
    (session_conn, out)
}

/// The video codec to carry for an offer: the first payload type of its first active video
/// m-line that is VP8 or H.264 (H.264 with `packetization-mode=1` preferred: FU-A carries
/// frames larger than one packet). `None` when the offer has no such video.
pub fn choose_video(offer: &str) -> Option<VideoFormat> {
    let (_, secs) = sections(offer);
    let video = secs.iter().find(|s| s.kind == "video")?;
    if video.port == 0 {
        return None;
    }
    let formats: Vec<VideoFormat> = video
        .pts
        .iter()
        .filter_map(|&pt| {
            let name = video.attr("a=rtpmap:", pt)?.split('/').next()?;
            let codec = VideoCodec::from_name(name)?;
            Some(VideoFormat { codec, pt, fmtp: video.attr("a=fmtp:", pt).map(str::to_string) })
        })
        .collect();
    let first = formats.first()?;
    if first.codec == VideoCodec::H264 && first.param("packetization-mode") != Some("1") {
        // Another H.264 of the same profile in mode 1, if the offer has one.
        let profile = first.param("profile-level-id").map(str::to_ascii_lowercase);
        if let Some(better) = formats.iter().find(|f| {
            f.codec == VideoCodec::H264
                && f.param("packetization-mode") == Some("1")
                && f.param("profile-level-id").map(str::to_ascii_lowercase) == profile
        }) {
            return Some(better.clone());
        }
    }
    Some(first.clone())
}

/// The answer's refusal of an offer's video m-line (`m=video 0`, RFC 3264 §6), if it has one:
/// for a SIP offer whose video callgate cannot carry.
pub fn refused_video(offer: &str) -> Option<String> {
    let (_, secs) = sections(offer);
    let v = secs.iter().find(|s| s.kind == "video")?;
    let pt = v.pts.first().map_or_else(|| "0".to_string(), |p| p.to_string());
    Some(format!("m=video 0 RTP/AVP {pt}\r\n"))
}

/// What a datagram on the video port was.
#[derive(Debug, PartialEq, Eq)]
pub enum VideoIn<'a> {
    /// Video RTP for the browser: extended sequence number, timestamp, marker, payload.
    Rtp { seq: u64, ts: u32, marker: bool, payload: &'a [u8] },
    /// RTCP asking for a keyframe (PLI or FIR).
    KeyframeRequest,
    /// Anything else (other RTCP, another payload type, a foreign source, junk): dropped.
    Dropped,
}

/// The SIP side's video of one bridge.
#[derive(Debug)]
pub struct VideoLeg {
    /// Our format (the browser's payload type and parameters, or the SIP offer's).
    pub format: VideoFormat,
    /// Our video RTP (and RTCP) address.
    pub local: SocketAddr,
    /// Where video RTP goes, and the one source it is taken from.
    pub remote: Option<SocketAddr>,
    /// Where RTCP goes: the RTP address under rtcp-mux, else `a=rtcp`, else port + 1.
    rtcp_remote: Option<SocketAddr>,
    /// The SIP side's payload type for our codec; `None` while it has not accepted video.
    remote_pt: Option<u8>,
    /// The SIP side offered or answered `a=rtcp-mux`.
    remote_mux: bool,
    latching: RtpLatching,
    sdp_remote: Option<SocketAddr>,
    latched: bool,
    ssrc: u32,
    seq_offset: u16,
    ts_offset: u32,
    /// The SIP side's video SSRC (the media source a PLI names).
    remote_ssrc: Option<u32>,
    rx_seq: Option<u64>,
    pub packets_in: u64,
    pub packets_out: u64,
    pub keyframe_requests_in: u64,
    pub plis_out: u64,
    pub packets_foreign: u64,
}

impl VideoLeg {
    pub fn new(format: VideoFormat, local: SocketAddr, seed: u64, latching: RtpLatching) -> VideoLeg {
        // As for audio: SSRC and offsets only have to differ between streams.
        let mix = (seed ^ 0x5bd1_e995).wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
        VideoLeg {
            format,
            local,
            remote: None,
            rtcp_remote: None,
            remote_pt: None,
            remote_mux: false,
            latching,
            sdp_remote: None,
            latched: false,
            ssrc: (mix >> 32) as u32 | 2,
            seq_offset: mix as u16,
            ts_offset: (mix >> 16) as u32,
            remote_ssrc: None,
            rx_seq: None,
            packets_in: 0,
            packets_out: 0,
            keyframe_requests_in: 0,
            plis_out: 0,
            packets_foreign: 0,
        }
    }

    /// The SIP side's video SSRC, once its first packet arrived.
    pub fn remote_ssrc(&self) -> Option<u32> {
        self.remote_ssrc
    }

    /// The SIP side takes our video (its SDP named our codec on a live m-line).
    pub fn accepted(&self) -> bool {
        self.remote_pt.is_some()
    }

    /// The video m-line of our SDP. `offer`: a fresh offer (video on, rtcp-mux offered). As an
    /// answer it mirrors the SIP offer: `m=video 0` when that offer's video is not ours to take
    /// (RFC 3264 §6), rtcp-mux only if offered (RFC 5761 §5.1.1). `a=rtcp` names the RTP port,
    /// so a peer without rtcp-mux still sends its RTCP where we listen (RFC 3605).
    pub fn sdp_section(&self, offer: bool) -> String {
        let f = &self.format;
        let pt = if offer { f.pt } else { self.remote_pt.unwrap_or(f.pt) };
        if !offer && self.remote_pt.is_none() {
            return format!("m=video 0 RTP/AVP {pt}\r\n");
        }
        let port = self.local.port();
        let mut s = format!("m=video {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {}/90000\r\n", f.codec.name());
        if let Some(fmtp) = &f.fmtp {
            s.push_str(&format!("a=fmtp:{pt} {fmtp}\r\n"));
        }
        s.push_str(&format!("a=rtcp-fb:{pt} nack\r\na=rtcp-fb:{pt} nack pli\r\na=rtcp-fb:{pt} ccm fir\r\n"));
        if offer || self.remote_mux {
            s.push_str("a=rtcp-mux\r\n");
        }
        s.push_str(&format!("a=rtcp:{port}\r\na=sendrecv\r\n"));
        s
    }

    /// Applies the SIP side's SDP: its video address and payload type for our codec. Returns
    /// whether video is on; an SDP without (usable) video turns it off, never fails.
    pub fn apply_remote_sdp(&mut self, sdp: &str) -> bool {
        let (session_conn, secs) = sections(sdp);
        let pt = secs.iter().find(|s| s.kind == "video").filter(|s| s.port != 0).and_then(|v| {
            let named =
                |pt: u8| v.attr("a=rtpmap:", pt).and_then(|r| r.split('/').next()).and_then(VideoCodec::from_name);
            // Our own payload type first, then any of the same codec.
            let pt = std::iter::once(self.format.pt)
                .chain(v.pts.iter().copied())
                .find(|&pt| v.pts.contains(&pt) && named(pt) == Some(self.format.codec))?;
            Some((v, pt))
        });
        let Some((v, pt)) = pt else {
            self.remote_pt = None;
            self.remote = None;
            self.rtcp_remote = None;
            self.latched = false;
            return false;
        };
        let Some(ip) = v.conn.or(session_conn) else {
            self.remote_pt = None;
            return false;
        };
        self.remote_pt = Some(pt);
        self.remote_mux = v.has("a=rtcp-mux");
        if ip.is_unspecified() {
            // RFC 2543 hold: nowhere to send until an SDP gives an address again.
            self.remote = None;
            self.rtcp_remote = None;
            self.sdp_remote = None;
            self.latched = false;
            return true;
        }
        let addr = canonical(SocketAddr::new(ip, v.port));
        let rtcp_port = v
            .lines
            .iter()
            .find_map(|l| l.strip_prefix("a=rtcp:")?.split_whitespace().next()?.parse::<u16>().ok())
            .filter(|p| *p != 0);
        let rtcp_port = if self.remote_mux { v.port } else { rtcp_port.unwrap_or(v.port.wrapping_add(1)) };
        self.rtcp_remote = Some(SocketAddr::new(addr.ip(), rtcp_port));
        if !self.latched || self.sdp_remote != Some(addr) {
            self.remote = Some(addr);
            self.latched = false;
        }
        self.sdp_remote = Some(addr);
        true
    }

    /// A browser video packet (its extended sequence number, timestamp, marker, payload) as an
    /// RTP packet for the SIP side, or `None` while the SIP side takes no video.
    pub fn from_browser(&mut self, seq: u64, ts: u32, marker: bool, payload: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
        let (to, pt) = (self.remote?, self.remote_pt?);
        // The browser's numbering shifted, so its gaps stay visible to the SIP side.
        let h = RtpHeader {
            marker,
            pt,
            seq: (seq as u16).wrapping_add(self.seq_offset),
            ts: ts.wrapping_add(self.ts_offset),
            ssrc: self.ssrc,
        };
        self.packets_out += 1;
        Some((to, rtp::write(&h, payload)))
    }

    /// A datagram on the video port. RTCP (RFC 5761 §4: second byte 192..=223) is taken from
    /// the SIP side's address (any port: without rtcp-mux it comes from its RTCP port); RTP
    /// only from the leg's source (see [`RtpLatching`]).
    pub fn from_sip<'a>(&mut self, src: SocketAddr, buf: &'a [u8]) -> VideoIn<'a> {
        let src = canonical(src);
        if buf.len() >= 8 && buf[0] >> 6 == 2 && (192..=223).contains(&buf[1]) {
            let known = self.remote.is_some_and(|r| r.ip() == src.ip());
            if known && self.remote_pt.is_some() && rtcp_asks_keyframe(buf) {
                self.keyframe_requests_in += 1;
                return VideoIn::KeyframeRequest;
            }
            return VideoIn::Dropped;
        }
        let Some((h, payload)) = rtp::parse(buf) else { return VideoIn::Dropped };
        if self.latching == RtpLatching::FirstPacket && !self.latched && self.remote_pt.is_some() {
            self.remote = Some(src);
            self.latched = true;
        }
        if self.remote != Some(src) {
            self.packets_foreign += 1;
            metrics::counter!("callgate_media_rtp_dropped_total", "why" => "foreign_source").increment(1);
            return VideoIn::Dropped;
        }
        if Some(h.pt) != self.remote_pt || payload.is_empty() {
            return VideoIn::Dropped;
        }
        if self.remote_ssrc != Some(h.ssrc) {
            // A new source starts its own numbering.
            self.remote_ssrc = Some(h.ssrc);
            self.rx_seq = None;
        }
        let seq = extend_seq(self.rx_seq, h.seq);
        if self.rx_seq.is_none_or(|last| seq > last) {
            self.rx_seq = Some(seq);
        }
        self.packets_in += 1;
        VideoIn::Rtp { seq, ts: h.ts, marker: h.marker, payload }
    }

    /// An RTCP PLI for the SIP side (a compound packet: an empty receiver report, then the PLI,
    /// RFC 4585 §6.3.1), or `None` while there is no video source to refresh.
    pub fn pli(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        let (to, media) = (self.rtcp_remote?, self.remote_ssrc?);
        self.remote_pt?;
        let mut p = Vec::with_capacity(20);
        // RR: V=2, RC=0, PT=201, length 1 (words - 1), our SSRC.
        p.extend_from_slice(&[0x80, 201, 0, 1]);
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        // PSFB, FMT=1 (PLI), PT=206, length 2, sender SSRC, media source SSRC.
        p.extend_from_slice(&[0x81, 206, 0, 2]);
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.extend_from_slice(&media.to_be_bytes());
        self.plis_out += 1;
        Some((to, p))
    }
}

/// Whether a (compound) RTCP packet holds a PLI (PSFB FMT 1) or a FIR (PSFB FMT 4). Walks the
/// packets by their length fields; a truncated one ends the walk.
pub fn rtcp_asks_keyframe(buf: &[u8]) -> bool {
    let mut at = 0;
    while let Some(h) = buf.get(at..at + 4) {
        if h[0] >> 6 != 2 {
            return false;
        }
        let len = 4 * (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1);
        if at + len > buf.len() {
            return false;
        }
        let fmt = h[0] & 0x1f;
        if h[1] == 206 && (fmt == 1 || fmt == 4) && len >= 12 {
            return true;
        }
        at += len;
    }
    false
}

/// `seq` extended to 64 bits next to the last extended number seen (RFC 3550 A.1, simplified).
fn extend_seq(last: Option<u64>, seq: u16) -> u64 {
    let Some(last) = last else { return u64::from(seq) };
    let roc = last >> 16;
    let candidates = [roc.wrapping_sub(1), roc, roc + 1].map(|r| (r << 16) | u64::from(seq));
    candidates.into_iter().filter(|c| *c <= u64::MAX >> 1).min_by_key(|c| c.abs_diff(last)).unwrap_or(last)
}

fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\na=rtpmap:111 opus/48000/2\r\n\
        a=rtpmap:0 PCMU/8000\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103\r\na=rtpmap:96 VP8/90000\r\n\
        a=rtpmap:97 rtx/90000\r\na=fmtp:97 apt=96\r\na=rtpmap:102 H264/90000\r\n\
        a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n\
        a=rtpmap:103 H264/90000\r\na=fmtp:103 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n";

    fn leg(sdp_pt: u8) -> VideoLeg {
        let f = VideoFormat { codec: VideoCodec::Vp8, pt: sdp_pt, fmtp: None };
        VideoLeg::new(f, "127.0.0.1:7000".parse().unwrap(), 3, RtpLatching::Sdp)
    }

    #[test]
    fn the_browsers_first_vp8_or_h264_is_chosen() {
        let f = choose_video(CHROME).unwrap();
        assert_eq!((f.codec, f.pt, f.fmtp), (VideoCodec::Vp8, 96, None));
        // H.264 first: mode 1 of the same profile is preferred over mode 0.
        let h264_first = CHROME.replace("96 97 102 103", "102 103 96");
        let f = choose_video(&h264_first).unwrap();
        assert_eq!((f.codec, f.pt, f.param("packetization-mode")), (VideoCodec::H264, 103, Some("1")));
        assert_eq!(f.param("profile-level-id"), Some("42e01f"));
        assert!(choose_video(&CHROME.replace("m=video 9", "m=video 0")).is_none(), "a refused m-line");
        assert!(choose_video("v=0\r\nm=audio 1 RTP/AVP 0\r\n").is_none());
        assert!(choose_video("m=video 5 RTP/AVP 98\r\na=rtpmap:98 VP9/90000\r\n").is_none(), "VP9 is not carried");
        for junk in ["", "m=", "m=video", "m=video x y z\r\na=rtpmap:", "m=video 1 R 1\r\na=rtpmap:1"] {
            let _ = choose_video(junk);
        }
    }

    #[test]
    fn offer_and_answer_sections() {
        let mut l = leg(96);
        let o = l.sdp_section(true);
        assert!(o.starts_with("m=video 7000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"), "{o}");
        assert!(o.contains("a=rtcp-fb:96 nack pli\r\n") && o.contains("a=rtcp-fb:96 ccm fir\r\n"), "{o}");
        assert!(o.contains("a=rtcp-mux\r\na=rtcp:7000\r\na=sendrecv\r\n"), "{o}");
        // Not accepted yet: an answer refuses video.
        assert_eq!(l.sdp_section(false), "m=video 0 RTP/AVP 96\r\n");
        // The SIP side's own payload type for VP8, no rtcp-mux: answered in kind.
        let sip = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 5000 RTP/AVP 0\r\nm=video 5002 RTP/AVP 100\r\n\
                   a=rtpmap:100 vp8/90000\r\n";
        assert!(l.apply_remote_sdp(sip));
        let a = l.sdp_section(false);
        assert!(a.starts_with("m=video 7000 RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\n"), "{a}");
        assert!(!a.contains("rtcp-mux"), "{a}");
        assert_eq!(l.remote, Some("192.0.2.1:5002".parse().unwrap()));
        assert_eq!(l.rtcp_remote, Some("192.0.2.1:5003".parse().unwrap()));
        // Another codec only, or video refused: video is off, not an error.
        assert!(
            !l.apply_remote_sdp("v=0\r\nc=IN IP4 192.0.2.1\r\nm=video 5002 RTP/AVP 98\r\na=rtpmap:98 H264/90000\r\n")
        );
        assert!(!l.accepted() && l.remote.is_none());
        assert!(!l.apply_remote_sdp("v=0\r\nc=IN IP4 192.0.2.1\r\nm=video 0 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"));
        assert!(!l.apply_remote_sdp("garbage"));
    }

    #[test]
    fn video_both_ways_and_keyframe_feedback() {
        let mut l = leg(96);
        assert!(l.from_browser(1, 0, true, &[1]).is_none(), "no SIP side yet");
        let sip = "v=0\r\nm=video 5002 RTP/AVP 96\r\nc=IN IP4 192.0.2.1\r\na=rtpmap:96 VP8/90000\r\na=rtcp-mux\r\n";
        assert!(l.apply_remote_sdp(sip));
        let (to, p1) = l.from_browser(70_000, 1000, false, &[0x10, 1, 2]).unwrap();
        let (_, p2) = l.from_browser(70_002, 4000, true, &[0x00, 3]).unwrap();
        assert_eq!(to, "192.0.2.1:5002".parse().unwrap());
        let (h1, b1) = rtp::parse(&p1).unwrap();
        let (h2, b2) = rtp::parse(&p2).unwrap();
        assert_eq!((h1.pt, h1.ssrc, b1), (96, h2.ssrc, &[0x10, 1, 2][..]));
        assert_eq!((h2.seq.wrapping_sub(h1.seq), h2.ts.wrapping_sub(h1.ts), h2.marker), (2, 3000, true));
        assert_eq!(b2, &[0x00, 3]);
        // No PLI before the SIP side's video SSRC is known.
        assert!(l.pli().is_none());
        let src: SocketAddr = "192.0.2.1:5002".parse().unwrap();
        let pkt = |seq: u16, pt: u8| rtp::write(&RtpHeader { marker: false, pt, seq, ts: 9, ssrc: 77 }, &[5, 6]);
        assert_eq!(
            l.from_sip(src, &pkt(65_535, 96)),
            VideoIn::Rtp { seq: 65_535, ts: 9, marker: false, payload: &[5, 6] }
        );
        assert!(matches!(l.from_sip(src, &pkt(0, 96)), VideoIn::Rtp { seq: 65_536, .. }), "extended past the wrap");
        assert_eq!(l.from_sip(src, &pkt(1, 0)), VideoIn::Dropped, "another payload type");
        assert_eq!(l.from_sip("192.0.2.2:5002".parse().unwrap(), &pkt(2, 96)), VideoIn::Dropped, "foreign");
        assert_eq!(l.packets_foreign, 1);
        // PLI out, to the RTP port (rtcp-mux): RR + PSFB FMT 1 naming the SIP side's SSRC.
        let (to, pli) = l.pli().unwrap();
        assert_eq!(to, src);
        assert_eq!(pli.len(), 20);
        assert_eq!(&pli[8..10], &[0x81, 206]);
        assert_eq!(&pli[16..20], &77u32.to_be_bytes());
        assert!(rtcp_asks_keyframe(&pli));
        // PLI and FIR in, from the SIP side's RTCP port too.
        assert_eq!(l.from_sip("192.0.2.1:5003".parse().unwrap(), &pli), VideoIn::KeyframeRequest);
        let fir = [0x84, 206, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 77, 1, 0, 0, 0];
        assert_eq!(l.from_sip(src, &fir), VideoIn::KeyframeRequest);
        assert_eq!(l.from_sip("198.51.100.1:5003".parse().unwrap(), &fir), VideoIn::Dropped, "from a stranger");
        let rr_only = [0x80, 201, 0, 1, 0, 0, 0, 1];
        assert_eq!(l.from_sip(src, &rr_only), VideoIn::Dropped);
        assert_eq!(l.keyframe_requests_in, 2);
    }

    #[test]
    fn malformed_rtcp_and_rtp_never_panic() {
        assert!(!rtcp_asks_keyframe(&[0x81, 206, 0xff, 0xff, 1, 2]), "length past the end");
        assert!(!rtcp_asks_keyframe(&[0x81, 206, 0, 0]), "too short for a PLI");
        assert!(!rtcp_asks_keyframe(&[]));
        let mut l = leg(96);
        l.apply_remote_sdp("c=IN IP4 192.0.2.1\r\nm=video 5002 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n");
        let src = "192.0.2.1:5002".parse().unwrap();
        for n in 0..40u8 {
            let buf: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37) ^ 0x80).collect();
            let _ = l.from_sip(src, &buf);
            let mut rtcp = buf.clone();
            if rtcp.len() > 2 {
                rtcp[0] = 0x81;
                rtcp[1] = 206;
            }
            let _ = l.from_sip(src, &rtcp);
        }
    }

    #[test]
    fn sequence_extension() {
        assert_eq!(extend_seq(None, 5), 5);
        assert_eq!(extend_seq(Some(65_530), 3), 65_539);
        assert_eq!(extend_seq(Some(65_539), 65_534), 65_534, "a late packet from before the wrap");
        assert_eq!(extend_seq(Some(2), 65_535), 65_535, "no negative numbers");
    }
}
