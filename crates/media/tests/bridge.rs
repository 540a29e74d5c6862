//! The call bridge over real UDP on 127.0.0.1: a browser leg (a str0m peer offering Opus and
//! PCMU, as Chromium does) and a plain RTP peer standing for the SIP side. Audio must flow both
//! ways with the G.711 payloads unchanged, and DTMF must reach the RTP peer as RFC 4733 events.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callgate_media::bridge::{RtpLatching, G711};
use callgate_media::rtp::{self, RtpHeader};
use callgate_media::{MediaConfig, MediaEndpoint, MediaError};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

async fn endpoint() -> MediaEndpoint {
    MediaEndpoint::start(MediaConfig { bind: "127.0.0.1:0".parse().unwrap(), ..Default::default() }).await.unwrap()
}

#[derive(Default)]
struct BrowserSeen {
    connected: AtomicBool,
    frames: AtomicU64,
    payload_ok: AtomicBool,
    /// A frame of 0x33 bytes (what [`foreign_rtp`] sends) reached the browser.
    foreign: AtomicBool,
}

/// A browser call leg: sendrecv audio, Opus first then PCMU; sends 160-byte PCMU frames of
/// 0x11 every 20 ms once connected, records what it receives.
async fn browser() -> (String, mpsc::UnboundedSender<String>, Arc<BrowserSeen>) {
    let (socket, local, mut rtc) = browser_rtc().await;
    let mut api = rtc.sdp_api();
    let mid = api.add_media(MediaKind::Audio, Direction::SendRecv, Some("call".into()), None, None);
    let (offer, pending) = api.apply().unwrap();
    let (atx, arx) = mpsc::unbounded_channel::<String>();
    let seen = Arc::new(BrowserSeen::default());
    run_browser(socket, local, rtc, Some(mid), Some(pending), arx, seen.clone());
    (offer.to_sdp_string(), atx, seen)
}

/// A browser answering the server's offer (an incoming call): returns its answer.
async fn answering_browser(offer: &str) -> (String, Arc<BrowserSeen>) {
    let (socket, local, mut rtc) = browser_rtc().await;
    let answer = rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(offer).unwrap()).unwrap();
    let (_atx, arx) = mpsc::unbounded_channel::<String>();
    let seen = Arc::new(BrowserSeen::default());
    run_browser(socket, local, rtc, None, None, arx, seen.clone());
    (answer.to_sdp_string(), seen)
}

async fn browser_rtc() -> (UdpSocket, SocketAddr, Rtc) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut rtc = Rtc::builder()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .clear_codecs()
        .enable_opus(true, false)
        .enable_pcmu(true, false)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    (socket, local, rtc)
}

/// Drives a browser `Rtc`: sends 0x11 PCMU frames on its audio m-line (`mid`, or the first
/// audio one) every 20 ms once connected; applies an answer from `arx` to `pending`.
fn run_browser(
    socket: UdpSocket,
    local: SocketAddr,
    mut rtc: Rtc,
    mid: Option<Mid>,
    pending: Option<SdpPendingOffer>,
    mut arx: mpsc::UnboundedReceiver<String>,
    st: Arc<BrowserSeen>,
) {
    tokio::spawn(async move {
        let mut pending = pending;
        let mut mid = mid;
        let mut buf = vec![0u8; 2048];
        let mut next = Instant::now();
        let mut n: u64 = 0;
        loop {
            let timeout = loop {
                match rtc.poll_output() {
                    Ok(Output::Timeout(t)) => break t,
                    Ok(Output::Transmit(t)) => {
                        let _ = socket.send_to(&t.contents, t.destination).await;
                    }
                    Ok(Output::Event(Event::Connected)) => st.connected.store(true, Ordering::Relaxed),
                    Ok(Output::Event(Event::MediaAdded(m))) if mid.is_none() && m.kind == MediaKind::Audio => {
                        mid = Some(m.mid)
                    }
                    Ok(Output::Event(Event::MediaData(d))) => {
                        st.frames.fetch_add(1, Ordering::Relaxed);
                        if d.data.iter().all(|b| *b == 0x22) && d.data.len() == 160 {
                            st.payload_ok.store(true, Ordering::Relaxed);
                        }
                        if d.data.contains(&0x33) {
                            st.foreign.store(true, Ordering::Relaxed);
                        }
                    }
                    Ok(Output::Event(_)) => {}
                    Err(_) => return,
                }
            };
            let connected = st.connected.load(Ordering::Relaxed);
            let wake = if connected { timeout.min(next) } else { timeout };
            tokio::select! {
                r = socket.recv_from(&mut buf) => {
                    let Ok((len, src)) = r else { continue };
                    if let Ok(recv) = Receive::new(Protocol::Udp, src, local, &buf[..len]) {
                        let _ = rtc.handle_input(Input::Receive(Instant::now(), recv));
                    }
                }
                Some(sdp) = arx.recv() => {
                    let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
                    rtc.sdp_api().accept_answer(pending.take().unwrap(), answer).unwrap();
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if connected && now >= next {
                        if let Some(w) = mid.and_then(|m| rtc.writer(m)) {
                            let pt = w.payload_params().next().unwrap().pt();
                            let _ = w.write(pt, now, MediaTime::new(n * 160, Frequency::new(8000).unwrap()), vec![0x11u8; 160]);
                        }
                        n += 1;
                        next = now + Duration::from_millis(20);
                        continue; // drain after the write before the next input
                    }
                    let _ = rtc.handle_input(Input::Timeout(now));
                }
            }
        }
    });
}

#[derive(Default)]
struct SipSeen {
    audio: u64,
    audio_payload_ok: bool,
    last_audio_seq: Option<u16>,
    events: Vec<(u8, bool)>,
    from: Option<SocketAddr>,
}

/// The SIP side: answers with PCMU + telephone-event 101, sends 0x22 PCMU frames every 20 ms
/// to `to` once told where, records what it gets.
async fn sip_peer() -> (SocketAddr, mpsc::UnboundedSender<SocketAddr>, Arc<Mutex<SipSeen>>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let (ttx, mut trx) = mpsc::unbounded_channel::<SocketAddr>();
    let seen = Arc::new(Mutex::new(SipSeen::default()));
    let st = seen.clone();
    tokio::spawn(async move {
        let mut to: Option<SocketAddr> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut seq: u16 = 100;
        let mut buf = vec![0u8; 2048];
        loop {
            tokio::select! {
                t = trx.recv() => match t { Some(t) => to = Some(t), None => return },
                _ = tick.tick() => if let Some(to) = to {
                    seq = seq.wrapping_add(1);
                    let h = RtpHeader { marker: false, pt: 0, seq, ts: u32::from(seq) * 160, ssrc: 0x5151 };
                    let _ = socket.send_to(&rtp::write(&h, &[0x22u8; 160]), to).await;
                },
                r = socket.recv_from(&mut buf) => {
                    let Ok((n, src)) = r else { continue };
                    let Some((h, payload)) = rtp::parse(&buf[..n]) else { continue };
                    let mut s = st.lock().unwrap();
                    s.from = Some(src);
                    match h.pt {
                        0 => {
                            s.audio += 1;
                            s.audio_payload_ok = payload.len() == 160 && payload.iter().all(|b| *b == 0x11);
                            s.last_audio_seq = Some(h.seq);
                        }
                        101 => s.events.push((payload[0], payload[1] & 0x80 != 0)),
                        _ => {}
                    }
                }
            }
        }
    });
    (addr, ttx, seen)
}

async fn wait(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn audio_flows_both_ways_unchanged_and_dtmf_goes_out_as_rfc4733() {
    let media = endpoint().await;
    let (offer, answer_tx, browser_seen) = browser().await;
    let id = media.next_peer_id();
    let (events, _events_rx) = mpsc::unbounded_channel();
    let b = media.bridge(id, offer, events).await.unwrap();
    assert_eq!(b.codec, G711::Pcmu, "the browser's G.711 (it offered Opus first)");
    assert!(!b.webrtc_answer.contains("opus"), "no transcoding: the browser gets G.711 only\n{}", b.webrtc_answer);
    assert!(b.webrtc_answer.contains("PCMU/8000"));
    // The SIP SDP: plain RTP/AVP at the media address, PCMU + telephone-event.
    assert!(b.sip_sdp.contains("c=IN IP4 127.0.0.1\r\n"), "{}", b.sip_sdp);
    let m = b.sip_sdp.lines().find(|l| l.starts_with("m=audio ")).unwrap();
    let rtp_port: u16 = m.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(m.ends_with("RTP/AVP 0 101"), "{m}");
    assert_ne!(rtp_port, media.bound_addr.port(), "the SIP side has its own RTP port");

    let (sip_addr, sip_to, sip_seen) = sip_peer().await;
    let sip_answer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        sip_addr.port()
    );
    media.bridge_remote(id, sip_answer).await.unwrap();
    answer_tx.send(b.webrtc_answer.clone()).unwrap();
    sip_to.send(SocketAddr::new("127.0.0.1".parse().unwrap(), rtp_port)).unwrap();

    wait("the browser leg to connect", || browser_seen.connected.load(Ordering::Relaxed)).await;
    // Browser -> SIP: PCMU payloads unchanged, from the bridge's RTP port.
    wait("25 audio packets at the SIP peer", || sip_seen.lock().unwrap().audio >= 25).await;
    {
        let s = sip_seen.lock().unwrap();
        assert!(s.audio_payload_ok, "the browser's G.711 bytes reach the SIP side unchanged");
        assert_eq!(s.from.unwrap().port(), rtp_port, "sent from the port in the SIP SDP (symmetric RTP)");
    }
    // SIP -> browser.
    wait("25 audio frames in the browser", || browser_seen.frames.load(Ordering::Relaxed) >= 25).await;
    assert!(browser_seen.payload_ok.load(Ordering::Relaxed), "the SIP side's G.711 bytes reach the browser unchanged");

    // DTMF from the client's sendDtmf: RFC 4733 events 1 then 11 (#), each ended three times.
    media.send_dtmf(id, "1#".into()).await.unwrap();
    wait("both DTMF events ended", || sip_seen.lock().unwrap().events.iter().filter(|(_, end)| *end).count() >= 6)
        .await;
    let events = sip_seen.lock().unwrap().events.clone();
    let firsts: Vec<u8> = events.iter().map(|(e, _)| *e).fold(Vec::new(), |mut v, e| {
        if v.last() != Some(&e) {
            v.push(e);
        }
        v
    });
    assert_eq!(firsts, [1, 11], "{events:?}");
    assert_eq!(events.iter().filter(|(e, end)| *e == 1 && *end).count(), 3);
    assert!(matches!(media.send_dtmf(id, "x".into()).await, Err(MediaError::Negotiation(_))));
    media.close(id);
}

#[tokio::test]
async fn no_common_g711_means_transcoding_required() {
    let media = endpoint().await;
    let opus_only = {
        let mut rtc = Rtc::builder()
            .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
            .clear_codecs()
            .enable_opus(true, false)
            .build(Instant::now());
        let mut api = rtc.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendRecv, None, None, None);
        api.apply().unwrap().0.to_sdp_string()
    };
    let (events, _rx) = mpsc::unbounded_channel();
    let id = media.next_peer_id();
    assert_eq!(media.bridge(id, opus_only, events.clone()).await.unwrap_err(), MediaError::TranscodingRequired);
    // The browser takes PCMU, the SIP side only PCMA: refused too.
    let (offer, _atx, _seen) = browser().await;
    let id = media.next_peer_id();
    media.bridge(id, offer, events).await.unwrap();
    let pcma = "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 5000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n";
    assert_eq!(media.bridge_remote(id, pcma.into()).await.unwrap_err(), MediaError::TranscodingRequired);
    let unknown = media.next_peer_id();
    assert!(matches!(media.bridge_remote(unknown, pcma.into()).await, Err(MediaError::NotFound(_))));
}

/// An incoming SIP call: the SIP offer (PCMA first, telephone-event as 96) picks the codec;
/// the server makes the WebRTC offer (G.711 only, actpass, ICE-lite), the browser answers, and
/// audio flows both ways; the SIP answer keeps the offerer's telephone-event payload type.
#[tokio::test]
async fn incoming_call_leg_offers_the_sip_sides_g711_and_carries_audio_both_ways() {
    let media = endpoint().await;
    let (sip_addr, sip_to, sip_seen) = sip_peer().await;
    let sip_offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 8 96\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\n",
        sip_addr.port()
    );
    let id = media.next_peer_id();
    let (events, _events_rx) = mpsc::unbounded_channel();
    let b = media.incoming_bridge(id, sip_offer, events).await.unwrap();
    assert_eq!(b.codec, G711::Pcmu);
    let o = &b.webrtc_offer;
    assert!(o.contains("a=setup:actpass"), "{o}");
    assert!(o.contains("a=ice-lite"), "{o}");
    assert!(o.contains("PCMU/8000") && !o.contains("opus") && !o.contains("PCMA"), "G.711 of the SIP side only\n{o}");
    assert!(o.contains("a=sendrecv") && !o.contains("m=video"), "{o}");
    let m = b.sip_answer.lines().find(|l| l.starts_with("m=audio ")).unwrap();
    assert!(m.ends_with("RTP/AVP 0 96"), "the offerer's telephone-event payload type: {m}");
    let rtp_port: u16 = m.split_whitespace().nth(1).unwrap().parse().unwrap();

    // The browser answers; a second answer to the same offer is refused.
    let (answer, browser_seen) = answering_browser(o).await;
    media.bridge_answer(id, answer.clone()).await.unwrap();
    assert!(media.bridge_answer(id, answer).await.is_err(), "one answer per offer");
    sip_to.send(SocketAddr::new("127.0.0.1".parse().unwrap(), rtp_port)).unwrap();

    wait("the browser leg to connect", || browser_seen.connected.load(Ordering::Relaxed)).await;
    wait("25 audio packets at the SIP peer", || sip_seen.lock().unwrap().audio >= 25).await;
    assert!(sip_seen.lock().unwrap().audio_payload_ok, "browser G.711 reaches the SIP side unchanged");
    wait("25 audio frames in the browser", || browser_seen.frames.load(Ordering::Relaxed) >= 25).await;
    assert!(browser_seen.payload_ok.load(Ordering::Relaxed), "SIP G.711 reaches the browser unchanged");
    media.close(id);
}

#[tokio::test]
async fn incoming_call_without_g711_is_refused() {
    let media = endpoint().await;
    let g729 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let (events, _rx) = mpsc::unbounded_channel();
    let id = media.next_peer_id();
    assert_eq!(media.incoming_bridge(id, g729.into(), events).await.unwrap_err(), MediaError::TranscodingRequired);
    assert!(matches!(media.bridge_answer(id, "v=0\r\n".into()).await, Err(MediaError::NotFound(_))));
}

/// A plain RTP sender whose address is in no SDP: sends `n` PCMU packets of 0x33 to `to`, 5 ms
/// apart, and returns its address.
async fn foreign_rtp(to: SocketAddr, n: u16) -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for seq in 0..n {
        let h = RtpHeader { marker: false, pt: 0, seq: 5000 + seq, ts: u32::from(seq) * 160, ssrc: 0x6666 };
        socket.send_to(&rtp::write(&h, &[0x33u8; 160]), to).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    socket.local_addr().unwrap()
}

fn sip_answer(sip_addr: SocketAddr) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        sip_addr.port()
    )
}

/// The RTP address of a bridge (its SIP SDP).
fn rtp_addr(sip_sdp: &str) -> SocketAddr {
    let m = sip_sdp.lines().find(|l| l.starts_with("m=audio ")).unwrap();
    SocketAddr::new("127.0.0.1".parse().unwrap(), m.split_whitespace().nth(1).unwrap().parse().unwrap())
}

/// Default latching ("sdp"): RTP only from the address in the SIP side's SDP reaches the browser.
#[tokio::test]
async fn rtp_from_an_address_not_in_the_sip_sdp_is_not_forwarded() {
    let media = endpoint().await;
    let (offer, answer_tx, browser_seen) = browser().await;
    let id = media.next_peer_id();
    let (events, _events_rx) = mpsc::unbounded_channel();
    let b = media.bridge(id, offer, events).await.unwrap();
    let rtp_at = rtp_addr(&b.sip_sdp);
    let (sip_addr, sip_to, sip_seen) = sip_peer().await;
    media.bridge_remote(id, sip_answer(sip_addr)).await.unwrap();
    answer_tx.send(b.webrtc_answer.clone()).unwrap();
    wait("the browser leg to connect", || browser_seen.connected.load(Ordering::Relaxed)).await;
    // Someone else sends first (before the SIP side starts), then the real SIP side.
    foreign_rtp(rtp_at, 20).await;
    sip_to.send(rtp_at).unwrap();
    wait("25 audio frames in the browser", || browser_seen.frames.load(Ordering::Relaxed) >= 25).await;
    assert!(browser_seen.payload_ok.load(Ordering::Relaxed), "the SIP side's audio reaches the browser");
    assert!(!browser_seen.foreign.load(Ordering::Relaxed), "RTP from a foreign address reached the browser");
    assert_eq!(media.stats(id).await.unwrap().rtp_dropped, 20, "each foreign packet is counted");
    // The browser's audio still goes to the SDP address only.
    wait("audio at the SIP side", || sip_seen.lock().unwrap().audio >= 5).await;
    media.close(id);
}

/// `rtp_latching = "first_packet"` (SIP peers behind NAT): the SDP names an address that never
/// sends; the first RTP packet's source is latched, gets the browser's audio, and is the only
/// source taken afterwards.
#[tokio::test]
async fn with_first_packet_latching_the_first_source_is_latched() {
    let media = MediaEndpoint::start(MediaConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        rtp_latching: RtpLatching::FirstPacket,
        ..Default::default()
    })
    .await
    .unwrap();
    let (offer, answer_tx, browser_seen) = browser().await;
    let id = media.next_peer_id();
    let (events, _events_rx) = mpsc::unbounded_channel();
    let b = media.bridge(id, offer, events).await.unwrap();
    let rtp_at = rtp_addr(&b.sip_sdp);
    // The SDP's address (the SIP peer's private one): bound, silent.
    let private = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    media.bridge_remote(id, sip_answer(private.local_addr().unwrap())).await.unwrap();
    answer_tx.send(b.webrtc_answer.clone()).unwrap();
    wait("the browser leg to connect", || browser_seen.connected.load(Ordering::Relaxed)).await;
    // The SIP peer as seen through its NAT: another address, which sends first.
    let (_nat_addr, sip_to, sip_seen) = sip_peer().await;
    sip_to.send(rtp_at).unwrap();
    wait("25 audio frames in the browser", || browser_seen.frames.load(Ordering::Relaxed) >= 25).await;
    assert!(browser_seen.payload_ok.load(Ordering::Relaxed), "the latched source's audio reaches the browser");
    wait("the browser's audio at the latched source", || sip_seen.lock().unwrap().audio >= 5).await;
    // A third address after the latch: dropped.
    foreign_rtp(rtp_at, 20).await;
    let before = browser_seen.frames.load(Ordering::Relaxed);
    wait("25 more frames", || browser_seen.frames.load(Ordering::Relaxed) >= before + 25).await;
    assert!(!browser_seen.foreign.load(Ordering::Relaxed), "RTP from a third address reached the browser");
    assert_eq!(media.stats(id).await.unwrap().rtp_dropped, 20);
    media.close(id);
}
