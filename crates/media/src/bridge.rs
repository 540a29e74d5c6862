//! The SIP side of a call bridge: plain RTP/AVP with G.711 (the codec the browser negotiated,
//! so audio is forwarded without transcoding) and RFC 4733 telephone events. Pure: packets and
//! `now` in, packets out.
//!
//! ```text
//! browser ══SRTP (str0m)══ bridge peer ══plain RTP══ SIP peer
//!                 frames (G.711)  <-> payloads (same codec, own SSRC/seq/ts on the SIP side)
//!                                  ->  DTMF as RFC 4733 events (from the client's sendDtmf)
//! ```

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::rtp::{self, RtpHeader};

/// The G.711 variant both legs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum G711 {
    Pcmu,
    Pcma,
}

impl G711 {
    /// The static payload type (RFC 3551).
    pub fn pt(self) -> u8 {
        match self {
            G711::Pcmu => 0,
            G711::Pcma => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            G711::Pcmu => "PCMU",
            G711::Pcma => "PCMA",
        }
    }
}

/// The G.711 codec the browser's offer prefers (the first of PCMU/PCMA in its audio m-line).
pub fn choose_g711(offer: &str) -> Option<G711> {
    g711_in_offer(offer).into_iter().next()
}

/// Whether the offer's (first) audio m-line lists `codec`.
pub fn offers_g711(offer: &str, codec: G711) -> bool {
    g711_in_offer(offer).contains(&codec)
}

/// The G.711 codecs of the offer's audio m-line, in its order.
fn g711_in_offer(offer: &str) -> Vec<G711> {
    let pts: Vec<&str> = offer
        .lines()
        .map(str::trim_end)
        .find_map(|l| l.strip_prefix("m=audio "))
        .map(|m| m.split_whitespace().skip(2).collect())
        .unwrap_or_default();
    let name_of = |pt: &str| {
        offer.lines().map(str::trim_end).find_map(|l| {
            let rest = l.strip_prefix("a=rtpmap:")?;
            let (p, codec) = rest.split_once(' ')?;
            (p == pt).then(|| codec.split('/').next().unwrap_or("").to_ascii_uppercase())
        })
    };
    pts.iter()
        .filter_map(|pt| match name_of(pt).as_deref() {
            Some("PCMU") => Some(G711::Pcmu),
            Some("PCMA") => Some(G711::Pcma),
            // Static payload types may come without an rtpmap line.
            None if *pt == "0" => Some(G711::Pcmu),
            None if *pt == "8" => Some(G711::Pcma),
            _ => None,
        })
        .collect()
}

/// Which source a call leg takes the SIP side's RTP from (`[media] rtp_latching`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtpLatching {
    /// Only the address in the SIP side's SDP (media-level `c=`, else session-level, and the
    /// `m=` port); nothing before that SDP is known. RTP from anywhere else is dropped and
    /// counted, so nobody who can reach the RTP port can talk into a call.
    #[default]
    Sdp,
    /// Symmetric RTP for SIP peers behind NAT, whose SDP carries an address nobody can reach:
    /// the source of the first RTP packet is latched, audio goes there, and from then on only
    /// that source is taken. Whoever sends first wins the latch, hence opt-in. A later SDP with
    /// a different address (a re-INVITE moving the media) latches again.
    FirstPacket,
}

/// Why a SIP-side SDP was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    #[error("the SIP SDP has no usable audio m-line or address")]
    NoAudio,
    #[error("the SIP side does not accept {0}: transcoding required, but disabled")]
    CodecMismatch(&'static str),
    #[error("not a DTMF key: {0:?}")]
    BadDtmf(char),
}

/// Payload type callgate offers for telephone-event.
pub const TELEPHONE_EVENT_PT: u8 = 101;
/// One RFC 4733 event packet per 20 ms (RFC 4733 §2.5.1.2), 160 units at 8 kHz.
const EVENT_STEP: Duration = Duration::from_millis(20);
const EVENT_UNITS: u16 = 160;
/// Tone length and the gap before the next tone.
const TONE: Duration = Duration::from_millis(120);
const GAP: Duration = Duration::from_millis(60);
/// End packets are sent three times (RFC 4733 §2.5.1.4).
const END_REPEATS: u8 = 3;

#[derive(Debug, Clone, Copy)]
struct Tone {
    event: u8,
    ts: u32,
    started: Instant,
    sent: u32,
    ends_sent: u8,
    next: Instant,
}

/// The SIP leg of one bridge.
#[derive(Debug)]
pub struct SipLeg {
    codec: G711,
    /// Our RTP address (in the SDP; the bridge's own socket).
    pub local: SocketAddr,
    /// Where to send, and the one source RTP is taken from: the SIP side's SDP address, or
    /// the first packet's source under [`RtpLatching::FirstPacket`].
    pub remote: Option<SocketAddr>,
    latching: RtpLatching,
    /// The address of the last SIP SDP applied.
    sdp_remote: Option<SocketAddr>,
    /// `FirstPacket`: `remote` is a packet's source, fixed until the SDP moves the media.
    latched: bool,
    remote_te_pt: Option<u8>,
    ssrc: u32,
    seq: u16,
    ts_offset: u32,
    created: Instant,
    last_ts: Option<(u32, Instant)>,
    keys: VecDeque<u8>,
    tone: Option<Tone>,
    idle_until: Option<Instant>,
    /// SIP -> browser: the last RTP timestamp and how many times it wrapped.
    rx_ts: Option<(u32, u64)>,
    pub packets_in: u64,
    pub packets_out: u64,
    /// RTP packets dropped because they came from another source than `remote`.
    pub packets_foreign: u64,
}

impl SipLeg {
    pub fn new(codec: G711, local: SocketAddr, now: Instant, seed: u64, latching: RtpLatching) -> SipLeg {
        // No cryptographic need: SSRC and offsets only have to differ between streams.
        let mix = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (now.elapsed().as_nanos() as u64);
        SipLeg {
            codec,
            local,
            remote: None,
            latching,
            sdp_remote: None,
            latched: false,
            remote_te_pt: Some(TELEPHONE_EVENT_PT),
            ssrc: (mix >> 32) as u32 | 1,
            seq: mix as u16,
            ts_offset: (mix >> 16) as u32,
            created: now,
            last_ts: None,
            keys: VecDeque::new(),
            tone: None,
            idle_until: None,
            rx_ts: None,
            packets_in: 0,
            packets_out: 0,
            packets_foreign: 0,
        }
    }

    pub fn codec(&self) -> G711 {
        self.codec
    }

    /// The SDP for the SIP side (offer or answer): RTP/AVP, the browser's G.711 only (so no
    /// transcoding is ever needed) and telephone-event, at `ip` and the leg's port. Before a
    /// remote SDP is applied it offers telephone-event as [`TELEPHONE_EVENT_PT`]; answering a
    /// SIP offer (after [`SipLeg::apply_remote_sdp`]) it keeps the offerer's payload type, or
    /// leaves telephone-event out when the offer had none (RFC 3264 §6.1).
    pub fn sdp(&self, ip: IpAddr, session_id: u64) -> String {
        use std::fmt::Write as _;
        let (pt, name) = (self.codec.pt(), self.codec.name());
        let fam = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let port = self.local.port();
        let mut s =
            format!("v=0\r\no=callgate {session_id} 1 IN {fam} {ip}\r\ns=callgate\r\nc=IN {fam} {ip}\r\nt=0 0\r\n");
        match self.remote_te_pt {
            Some(te) => {
                let _ = write!(
                    s,
                    "m=audio {port} RTP/AVP {pt} {te}\r\na=rtpmap:{pt} {name}/8000\r\n\
                     a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n"
                );
            }
            None => {
                let _ = write!(s, "m=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {name}/8000\r\n");
            }
        }
        s.push_str("a=ptime:20\r\na=sendrecv\r\n");
        s
    }

    /// Applies the SIP side's SDP (its answer, or its offer): address, port, and that it takes
    /// our codec; its telephone-event payload type if any.
    pub fn apply_remote_sdp(&mut self, sdp: &str) -> Result<(), BridgeError> {
        let mut conn: Option<IpAddr> = None;
        let mut media_conn: Option<IpAddr> = None;
        let mut port: Option<u16> = None;
        let mut pts: Vec<u8> = Vec::new();
        let mut in_audio = false;
        let mut te: Option<u8> = None;
        let mut names: Vec<(u8, String)> = Vec::new();
        for line in sdp.lines().map(str::trim_end) {
            if let Some(c) = line.strip_prefix("c=IN ") {
                let ip = c.split_whitespace().nth(1).and_then(|a| a.parse().ok());
                if port.is_some() && in_audio {
                    media_conn = ip;
                } else if port.is_none() {
                    conn = ip;
                }
            } else if let Some(m) = line.strip_prefix("m=") {
                in_audio = m.starts_with("audio ") && port.is_none();
                if in_audio {
                    let mut f = m.split_whitespace().skip(1);
                    port = f.next().and_then(|p| p.parse().ok());
                    pts = f.skip(1).filter_map(|p| p.parse().ok()).collect();
                }
            } else if let Some(r) = line.strip_prefix("a=rtpmap:") {
                if in_audio {
                    if let Some((pt, name)) = r.split_once(' ') {
                        if let Ok(pt) = pt.parse::<u8>() {
                            names.push((pt, name.split('/').next().unwrap_or("").to_ascii_uppercase()));
                        }
                    }
                }
            }
        }
        let (Some(ip), Some(port)) = (media_conn.or(conn), port.filter(|p| *p != 0)) else {
            return Err(BridgeError::NoAudio);
        };
        let ours = self.codec.pt();
        let named = |pt: u8| names.iter().find(|(p, _)| *p == pt).map(|(_, n)| n.as_str());
        let takes_codec = pts.iter().any(|&pt| pt == ours && named(pt).is_none_or(|n| n == self.codec.name()));
        if !takes_codec {
            return Err(BridgeError::CodecMismatch(self.codec.name()));
        }
        for &pt in &pts {
            if named(pt) == Some("TELEPHONE-EVENT") {
                te = Some(pt);
            }
        }
        self.remote_te_pt = te;
        if ip.is_unspecified() {
            // RFC 2543 hold (`c=IN IP4 0.0.0.0`): nothing to send to, nothing to take from,
            // until an SDP gives an address again.
            self.remote = None;
            self.sdp_remote = None;
            self.latched = false;
            return Ok(());
        }
        let addr = canonical(SocketAddr::new(ip, port));
        // Under `FirstPacket` a latch survives SDP that repeats the address (session refreshes).
        if !self.latched || self.sdp_remote != Some(addr) {
            self.remote = Some(addr);
            self.latched = false;
        }
        self.sdp_remote = Some(addr);
        Ok(())
    }

    fn next_header(&mut self, pt: u8, marker: bool, ts: u32) -> RtpHeader {
        self.seq = self.seq.wrapping_add(1);
        RtpHeader { marker, pt, seq: self.seq, ts, ssrc: self.ssrc }
    }

    /// The SIP-side timestamp for `now` on the audio timeline.
    fn ts_at(&self, now: Instant) -> u32 {
        match self.last_ts {
            Some((ts, at)) => ts.wrapping_add((now.saturating_duration_since(at).as_micros() / 125) as u32),
            None => self.ts_offset.wrapping_add((now.saturating_duration_since(self.created).as_micros() / 125) as u32),
        }
    }

    /// A browser audio frame (G.711 payload, `ts8k` = its RTP time at 8 kHz) as a SIP packet,
    /// or `None` while the SIP address is unknown. Audio pauses while a DTMF tone is sent.
    pub fn from_browser(&mut self, ts8k: u64, payload: &[u8], now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let to = self.remote?;
        let ts = self.ts_offset.wrapping_add(ts8k as u32);
        self.last_ts = Some((ts, now));
        if self.tone.is_some() {
            return None;
        }
        let h = self.next_header(self.codec.pt(), false, ts);
        self.packets_out += 1;
        Some((to, rtp::write(&h, payload)))
    }

    /// A datagram from the SIP side: its G.711 payload and 8 kHz time (extended past wraps) for
    /// the browser. Only RTP from the leg's source is taken (see [`RtpLatching`]); the rest is
    /// counted in `packets_foreign` and dropped.
    pub fn from_sip<'a>(&mut self, src: SocketAddr, buf: &'a [u8]) -> Option<(u64, &'a [u8])> {
        let (h, payload) = rtp::parse(buf)?;
        let src = canonical(src);
        if self.latching == RtpLatching::FirstPacket && !self.latched {
            self.remote = Some(src);
            self.latched = true;
        }
        if self.remote != Some(src) {
            self.packets_foreign += 1;
            metrics::counter!("callgate_media_rtp_dropped_total", "why" => "foreign_source").increment(1);
            tracing::trace!(%src, remote = ?self.remote, "RTP from another source than the SIP side's dropped");
            return None;
        }
        if h.pt != self.codec.pt() || payload.is_empty() {
            return None; // telephone-event, comfort noise, other codecs: not forwarded
        }
        self.packets_in += 1;
        let (last, wraps) = self.rx_ts.unwrap_or((h.ts, 0));
        let wraps = if h.ts < last && last - h.ts > u32::MAX / 2 { wraps + 1 } else { wraps };
        self.rx_ts = Some((h.ts, wraps));
        Some(((wraps << 32) | u64::from(h.ts), payload))
    }

    /// Queues DTMF keys (RFC 4733 events to the SIP side).
    pub fn queue_dtmf(&mut self, keys: &str) -> Result<(), BridgeError> {
        let events: Vec<u8> =
            keys.chars().map(|c| rtp::dtmf_event(c).ok_or(BridgeError::BadDtmf(c))).collect::<Result<_, _>>()?;
        self.keys.extend(events);
        Ok(())
    }

    /// When [`SipLeg::poll_dtmf`] has something to send.
    pub fn next_dtmf_at(&self) -> Option<Instant> {
        if self.remote.is_none() || self.remote_te_pt.is_none() {
            return None;
        }
        match (&self.tone, self.keys.is_empty()) {
            (Some(t), _) => Some(t.next),
            (None, false) => Some(self.idle_until.unwrap_or(self.created)),
            (None, true) => None,
        }
    }

    /// The next due telephone-event packet, if any.
    pub fn poll_dtmf(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        let (to, pt) = (self.remote?, self.remote_te_pt?);
        if self.tone.is_none() {
            if self.idle_until.is_some_and(|t| now < t) {
                return None;
            }
            let event = self.keys.pop_front()?;
            let ts = self.ts_at(now);
            self.tone = Some(Tone { event, ts, started: now, sent: 0, ends_sent: 0, next: now });
        }
        let mut t = self.tone?;
        if now < t.next {
            return None;
        }
        let elapsed_units = (t.sent + 1) * u32::from(EVENT_UNITS);
        let ending = now.saturating_duration_since(t.started) + EVENT_STEP >= TONE;
        let duration = elapsed_units.min(u32::from(u16::MAX)) as u16;
        let payload = rtp::telephone_event(t.event, ending, 10, duration);
        let h = self.next_header(pt, t.sent == 0, t.ts);
        t.next = now + EVENT_STEP;
        if ending {
            t.ends_sent += 1;
        } else {
            t.sent += 1;
        }
        if t.ends_sent >= END_REPEATS {
            self.tone = None;
            self.idle_until = Some(now + GAP);
        } else {
            self.tone = Some(t);
        }
        self.packets_out += 1;
        Some((to, rtp::write(&h, &payload)))
    }
}

/// An IPv4-mapped IPv6 address as its IPv4 address: a socket bound to `[::]` reports IPv4
/// sources as `::ffff:a.b.c.d`, while the SDP names them `IN IP4 a.b.c.d` (or `IN IP6
/// ::ffff:a.b.c.d`); both sides of a latching comparison are canonical.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROMIUM_CALL_OFFER: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n\
        a=rtpmap:111 opus/48000/2\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n";

    fn leg() -> SipLeg {
        leg_latching(RtpLatching::Sdp)
    }

    fn leg_latching(latching: RtpLatching) -> SipLeg {
        SipLeg::new(G711::Pcmu, "10.0.0.1:40000".parse().unwrap(), Instant::now(), 7, latching)
    }

    fn pcmu(seq: u16) -> Vec<u8> {
        rtp::write(&RtpHeader { marker: false, pt: 0, seq, ts: u32::from(seq) * 160, ssrc: 99 }, &[0x7f; 160])
    }

    const SIP_ANSWER: &str = "v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 6000 RTP/AVP 0\r\n";

    #[test]
    fn sdp_latching_takes_rtp_only_from_the_sdp_address() {
        let mut l = leg();
        let (sdp_addr, other) = ("192.0.2.5:6000".parse().unwrap(), "203.0.113.66:6000".parse().unwrap());
        assert!(l.from_sip(sdp_addr, &pcmu(1)).is_none(), "nothing is taken before the SDP");
        assert_eq!(l.remote, None, "a packet teaches no address");
        l.apply_remote_sdp(SIP_ANSWER).unwrap();
        assert!(l.from_sip(other, &pcmu(2)).is_none(), "another address");
        assert!(l.from_sip("192.0.2.5:6002".parse().unwrap(), &pcmu(3)).is_none(), "another port");
        assert!(l.from_sip(sdp_addr, &pcmu(4)).is_some());
        assert_eq!((l.remote, l.packets_in, l.packets_foreign), (Some(sdp_addr), 1, 3));
    }

    #[test]
    fn sdp_latching_matches_ipv4_mapped_sources() {
        let mut l = leg();
        l.apply_remote_sdp(SIP_ANSWER).unwrap();
        // A dual-stack RTP socket (`[::]`) reports the SDP's IPv4 address mapped.
        assert!(l.from_sip("[::ffff:192.0.2.5]:6000".parse().unwrap(), &pcmu(1)).is_some());
        assert!(l.from_sip("[::ffff:192.0.2.6]:6000".parse().unwrap(), &pcmu(2)).is_none());
        assert_eq!((l.packets_in, l.packets_foreign), (1, 1));
        // An SDP naming the mapped form matches the plain IPv4 source; audio goes to IPv4.
        let mut l = leg();
        l.apply_remote_sdp("v=0\r\nc=IN IP6 ::ffff:192.0.2.5\r\nm=audio 6000 RTP/AVP 0\r\n").unwrap();
        assert_eq!(l.remote, Some("192.0.2.5:6000".parse().unwrap()));
        assert!(l.from_sip("192.0.2.5:6000".parse().unwrap(), &pcmu(1)).is_some());
        // First-packet latching stores the canonical source: the next mapped packet matches.
        let mut l = leg_latching(RtpLatching::FirstPacket);
        l.apply_remote_sdp(SIP_ANSWER).unwrap();
        assert!(l.from_sip("[::ffff:203.0.113.9]:7000".parse().unwrap(), &pcmu(1)).is_some());
        assert_eq!(l.remote, Some("203.0.113.9:7000".parse().unwrap()));
        assert!(l.from_sip("203.0.113.9:7000".parse().unwrap(), &pcmu(2)).is_some());
    }

    #[test]
    fn first_packet_latching_takes_the_first_source_until_the_sdp_moves_the_media() {
        let mut l = leg_latching(RtpLatching::FirstPacket);
        let (sdp_addr, nat, other) = (
            "192.0.2.5:6000".parse().unwrap(),
            "198.51.100.9:41000".parse().unwrap(),
            "203.0.113.66:6000".parse().unwrap(),
        );
        l.apply_remote_sdp(SIP_ANSWER).unwrap();
        assert_eq!(l.remote, Some(sdp_addr), "sent to the SDP address until a packet arrives");
        assert!(l.from_sip(nat, &pcmu(1)).is_some(), "the first packet latches its source");
        assert_eq!(l.remote, Some(nat), "and audio goes there");
        assert!(l.from_sip(other, &pcmu(2)).is_none(), "then nobody else is taken");
        assert!(l.from_sip(sdp_addr, &pcmu(3)).is_none());
        assert_eq!(l.packets_foreign, 2);
        l.apply_remote_sdp(SIP_ANSWER).unwrap();
        assert_eq!(l.remote, Some(nat), "the same SDP again keeps the latch");
        l.apply_remote_sdp("v=0\r\nc=IN IP4 192.0.2.8\r\nm=audio 7000 RTP/AVP 0\r\n").unwrap();
        assert_eq!(l.remote, Some("192.0.2.8:7000".parse().unwrap()), "a new address unlatches");
        assert!(l.from_sip(other, &pcmu(4)).is_some(), "and the next packet latches again");
        assert_eq!(l.remote, Some(other));
    }

    #[test]
    fn a_zero_address_holds_and_a_new_address_moves_the_media() {
        let mut l = leg_latching(RtpLatching::FirstPacket);
        let sdp = |c: &str, port: u16| format!("v=0\r\nc=IN IP4 {c}\r\nm=audio {port} RTP/AVP 0\r\n");
        l.apply_remote_sdp(&sdp("192.0.2.7", 6000)).unwrap();
        assert!(l.from_sip("198.51.100.1:7000".parse().unwrap(), &pcmu(1)).is_some(), "latched");
        l.apply_remote_sdp(&sdp("0.0.0.0", 6000)).unwrap();
        assert_eq!(l.remote, None, "0.0.0.0 (RFC 2543 hold): nothing is sent");
        assert!(l.from_browser(160, &[0; 160], Instant::now()).is_none());
        l.apply_remote_sdp(&sdp("192.0.2.9", 6002)).unwrap();
        assert_eq!(l.remote, Some("192.0.2.9:6002".parse().unwrap()), "unhold at a new address");
    }

    #[test]
    fn the_browsers_first_g711_is_chosen() {
        assert_eq!(choose_g711(CHROMIUM_CALL_OFFER), Some(G711::Pcmu));
        assert_eq!(choose_g711("m=audio 9 X 8 0\r\n"), Some(G711::Pcma), "static PTs without rtpmap");
        assert_eq!(choose_g711("m=audio 9 X 111\r\na=rtpmap:111 opus/48000/2\r\n"), None);
        assert_eq!(choose_g711("m=video 9 X 0\r\n"), None);
        assert!(offers_g711(CHROMIUM_CALL_OFFER, G711::Pcma), "PCMA is listed after PCMU");
        assert!(offers_g711("m=audio 9 X 8 0\r\n", G711::Pcmu));
        assert!(!offers_g711("m=audio 9 X 111\r\na=rtpmap:111 opus/48000/2\r\n", G711::Pcmu));
    }

    #[test]
    fn sip_sdp_offers_only_the_browsers_codec_and_telephone_event() {
        let sdp = leg().sdp("10.0.0.1".parse().unwrap(), 42);
        assert!(sdp.contains("c=IN IP4 10.0.0.1\r\n"));
        assert!(sdp.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:0 PCMU/8000\r\n"));
        assert!(sdp.contains("a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"));
        assert!(!sdp.contains("PCMA"));
    }

    #[test]
    fn remote_sdp_sets_the_address_or_refuses_transcoding() {
        let mut l = leg();
        let answer = "v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 6000 RTP/AVP 0 96\r\na=rtpmap:96 telephone-event/8000\r\n";
        l.apply_remote_sdp(answer).unwrap();
        assert_eq!(l.remote, Some("192.0.2.5:6000".parse().unwrap()));
        assert_eq!(l.remote_te_pt, Some(96));
        let pcma_only = "v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 6000 RTP/AVP 8\r\n";
        assert_eq!(leg().apply_remote_sdp(pcma_only), Err(BridgeError::CodecMismatch("PCMU")));
        assert_eq!(leg().apply_remote_sdp("v=0\r\nm=audio 0 RTP/AVP 0\r\n"), Err(BridgeError::NoAudio));
        // A media-level c= wins over the session-level one.
        let mut l = leg();
        l.apply_remote_sdp("v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 7000 RTP/AVP 0\r\nc=IN IP4 198.51.100.1\r\n").unwrap();
        assert_eq!(l.remote, Some("198.51.100.1:7000".parse().unwrap()));
        assert_eq!(l.remote_te_pt, None, "no telephone-event offered: no DTMF events sent");
    }

    #[test]
    fn audio_both_ways_keeps_payloads_and_rewrites_headers() {
        let mut l = leg_latching(RtpLatching::FirstPacket);
        let now = Instant::now();
        assert!(l.from_browser(160, &[0xff; 160], now).is_none(), "no SIP address yet");
        // Symmetric RTP: the first SIP packet teaches the address.
        let sip = rtp::write(&RtpHeader { marker: false, pt: 0, seq: 5, ts: 1000, ssrc: 99 }, &[0x7f; 160]);
        let (ts, payload) = l.from_sip("192.0.2.9:5004".parse().unwrap(), &sip).unwrap();
        assert_eq!((ts, payload.len()), (1000, 160));
        let (to, p1) = l.from_browser(160, &[0xff; 160], now).unwrap();
        let (_, p2) = l.from_browser(320, &[0xfe; 160], now + Duration::from_millis(20)).unwrap();
        assert_eq!(to, "192.0.2.9:5004".parse().unwrap());
        let (h1, b1) = rtp::parse(&p1).unwrap();
        let (h2, b2) = rtp::parse(&p2).unwrap();
        assert_eq!((h1.pt, h1.ssrc), (0, h2.ssrc));
        assert_eq!(h2.seq, h1.seq.wrapping_add(1));
        assert_eq!(h2.ts.wrapping_sub(h1.ts), 160);
        assert_eq!((b1, b2), (&[0xff; 160][..], &[0xfe; 160][..]));
        // Other payload types from SIP are not forwarded; the timestamp is extended past wraps.
        let te = rtp::write(&RtpHeader { marker: false, pt: 101, seq: 6, ts: 1000, ssrc: 99 }, &[1, 2, 3, 4]);
        assert!(l.from_sip("192.0.2.9:5004".parse().unwrap(), &te).is_none());
        let near_wrap = rtp::write(&RtpHeader { marker: false, pt: 0, seq: 7, ts: u32::MAX - 10, ssrc: 99 }, &[1]);
        let wrapped = rtp::write(&RtpHeader { marker: false, pt: 0, seq: 8, ts: 150, ssrc: 99 }, &[1]);
        let src = "192.0.2.9:5004".parse().unwrap();
        let a = l.from_sip(src, &near_wrap).unwrap().0;
        let b = l.from_sip(src, &wrapped).unwrap().0;
        assert_eq!(b - a, 161);
    }

    #[test]
    fn dtmf_is_sent_as_rfc4733_events_with_three_end_packets() {
        let mut l = leg();
        l.apply_remote_sdp(
            "v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n",
        )
        .unwrap();
        assert_eq!(l.queue_dtmf("5x"), Err(BridgeError::BadDtmf('x')));
        l.queue_dtmf("1#").unwrap();
        let mut now = Instant::now();
        let mut packets = Vec::new();
        for _ in 0..100 {
            while let Some((_, p)) = l.poll_dtmf(now) {
                packets.push(p);
            }
            now += Duration::from_millis(5);
        }
        let parsed: Vec<(RtpHeader, Vec<u8>)> =
            packets.iter().map(|p| rtp::parse(p).map(|(h, b)| (h, b.to_vec())).unwrap()).collect();
        for digit in [1u8, 11] {
            let tone: Vec<&(RtpHeader, Vec<u8>)> = parsed.iter().filter(|(_, b)| b[0] == digit).collect();
            assert!(tone.len() >= 5, "digit {digit}: {} packets", tone.len());
            assert!(tone[0].0.marker && tone[1..].iter().all(|(h, _)| !h.marker), "marker on the first packet only");
            assert!(tone.iter().all(|(h, _)| h.pt == 101 && h.ts == tone[0].0.ts), "one timestamp per event");
            let ends: Vec<_> = tone.iter().filter(|(_, b)| b[1] & 0x80 != 0).collect();
            assert_eq!(ends.len(), 3, "three end packets");
            let durations: Vec<u16> = tone.iter().map(|(_, b)| u16::from_be_bytes([b[2], b[3]])).collect();
            assert!(durations.windows(2).all(|w| w[1] >= w[0]), "{durations:?}");
        }
        let seqs: Vec<u16> = parsed.iter().map(|(h, _)| h.seq).collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0].wrapping_add(1)));
        assert!(l.next_dtmf_at().is_none());
    }
}
