//! Video in call bridges over real UDP on 127.0.0.1: a browser leg (a str0m peer with PCMU and
//! VP8, sendrecv audio and video, as the SDK's `hasVideo: true` call offers) and plain RTP
//! sockets standing for the SIP side's audio and video. Video must flow both ways with the VP8
//! payloads unchanged, a PLI from the SIP side must reach the browser as a keyframe request, and
//! the browser's keyframe request must reach the SIP side as an RTCP PLI.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callgate_media::rtp::{self, RtpHeader};
use callgate_media::video::{rtcp_asks_keyframe, VideoCodec};
use callgate_media::{MediaConfig, MediaEndpoint};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);
/// What the browser's video frames carry (after str0m's VP8 payload descriptor).
const BROWSER_FRAME: [u8; 6] = [0xb0, 0x0b, 1, 2, 3, 4];
/// What the SIP side's VP8 packets carry after their one-byte descriptor.
const SIP_FRAME: [u8; 5] = [0x5a, 0x5a, 7, 8, 9];

async fn endpoint() -> MediaEndpoint {
    MediaEndpoint::start(MediaConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        keyframe_request_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await
    .unwrap()
}

#[derive(Default)]
struct BrowserSeen {
    connected: bool,
    audio: u64,
    video: u64,
    video_payload_ok: bool,
    keyframe_requests: u64,
}

/// Asks the browser to send a PLI for its incoming video.
type PliTrigger = mpsc::UnboundedSender<()>;

/// A browser leg: offers (or answers with) PCMU audio and VP8 video, sendrecv; once connected
/// sends a PCMU frame every 20 ms and a VP8 frame every 40 ms; counts what it receives and the
/// keyframe requests it gets.
#[allow(clippy::too_many_arguments)]
fn run_browser(
    socket: UdpSocket,
    local: SocketAddr,
    mut rtc: Rtc,
    mids: (Option<Mid>, Option<Mid>),
    mut pending: Option<SdpPendingOffer>,
    mut answers: mpsc::UnboundedReceiver<String>,
    mut pli: mpsc::UnboundedReceiver<()>,
    st: Arc<Mutex<BrowserSeen>>,
) {
    tokio::spawn(async move {
        let (mut audio_mid, mut video_mid) = mids;
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
                    Ok(Output::Event(Event::Connected)) => st.lock().unwrap().connected = true,
                    Ok(Output::Event(Event::MediaAdded(m))) => match m.kind {
                        MediaKind::Audio => audio_mid = Some(m.mid),
                        MediaKind::Video => video_mid = Some(m.mid),
                    },
                    Ok(Output::Event(Event::MediaData(d))) => {
                        let mut s = st.lock().unwrap();
                        if Some(d.mid) == video_mid {
                            s.video += 1;
                            if d.data.ends_with(&SIP_FRAME) {
                                s.video_payload_ok = true;
                            }
                        } else {
                            s.audio += 1;
                        }
                    }
                    Ok(Output::Event(Event::KeyframeRequest(_))) => st.lock().unwrap().keyframe_requests += 1,
                    Ok(Output::Event(_)) => {}
                    Err(_) => return,
                }
            };
            let connected = st.lock().unwrap().connected;
            let wake = if connected { timeout.min(next) } else { timeout };
            tokio::select! {
                r = socket.recv_from(&mut buf) => {
                    let Ok((len, src)) = r else { continue };
                    if let Ok(recv) = Receive::new(Protocol::Udp, src, local, &buf[..len]) {
                        let _ = rtc.handle_input(Input::Receive(Instant::now(), recv));
                    }
                }
                Some(sdp) = answers.recv() => {
                    let answer = SdpAnswer::from_sdp_string(&sdp).unwrap();
                    rtc.sdp_api().accept_answer(pending.take().unwrap(), answer).unwrap();
                }
                Some(()) = pli.recv() => {
                    if let Some(m) = video_mid {
                        if let Some(rx) = rtc.direct_api().stream_rx_by_mid(m, None) {
                            rx.request_keyframe(KeyframeRequestKind::Pli);
                        }
                    }
                }
                _ = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if connected && now >= next {
                        if let Some(w) = audio_mid.and_then(|m| rtc.writer(m)) {
                            let pt = w.payload_params().next().unwrap().pt();
                            let t = MediaTime::new(n * 160, Frequency::new(8000).unwrap());
                            let _ = w.write(pt, now, t, vec![0x11u8; 160]);
                        }
                        if n % 2 == 0 {
                            if let Some(w) = video_mid.and_then(|m| rtc.writer(m)) {
                                let pt = w.payload_params().next().unwrap().pt();
                                let t = MediaTime::new(n * 1800, Frequency::NINETY_KHZ);
                                let _ = w.write(pt, now, t, BROWSER_FRAME.to_vec());
                            }
                        }
                        n += 1;
                        next = now + Duration::from_millis(20);
                        continue;
                    }
                    let _ = rtc.handle_input(Input::Timeout(now));
                }
            }
        }
    });
}

async fn browser_rtc() -> (UdpSocket, SocketAddr, Rtc) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local = socket.local_addr().unwrap();
    let mut rtc = Rtc::builder()
        .set_crypto_provider(Arc::new(str0m::crypto::from_feature_flags()))
        .clear_codecs()
        .enable_opus(true, false)
        .enable_pcmu(true, false)
        .enable_vp8(true)
        .build(Instant::now());
    rtc.add_local_candidate(Candidate::host(local, "udp").unwrap());
    (socket, local, rtc)
}

struct Browser {
    seen: Arc<Mutex<BrowserSeen>>,
    answers: mpsc::UnboundedSender<String>,
    pli: PliTrigger,
}

/// A calling browser: returns its offer.
async fn calling_browser() -> (String, Browser) {
    let (socket, local, mut rtc) = browser_rtc().await;
    let mut api = rtc.sdp_api();
    let a = api.add_media(MediaKind::Audio, Direction::SendRecv, Some("call".into()), None, None);
    let v = api.add_media(MediaKind::Video, Direction::SendRecv, Some("call".into()), None, None);
    let (offer, pending) = api.apply().unwrap();
    let (answers, arx) = mpsc::unbounded_channel();
    let (pli, prx) = mpsc::unbounded_channel();
    let seen = Arc::new(Mutex::new(BrowserSeen::default()));
    run_browser(socket, local, rtc, (Some(a), Some(v)), Some(pending), arx, prx, seen.clone());
    (offer.to_sdp_string(), Browser { seen, answers, pli })
}

/// A browser answering the server's offer (an incoming call): returns its answer.
async fn answering_browser(offer: &str) -> (String, Browser) {
    let (socket, local, mut rtc) = browser_rtc().await;
    let answer = rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(offer).unwrap()).unwrap();
    let (answers, arx) = mpsc::unbounded_channel();
    let (pli, prx) = mpsc::unbounded_channel();
    let seen = Arc::new(Mutex::new(BrowserSeen::default()));
    run_browser(socket, local, rtc, (None, None), None, arx, prx, seen.clone());
    (answer.to_sdp_string(), Browser { seen, answers, pli })
}

#[derive(Default)]
struct SipSeen {
    audio: u64,
    video: u64,
    video_pt: Option<u8>,
    video_payload_ok: bool,
    plis: u64,
}

/// The SIP side: an audio and a video socket. Once told the bridge's ports it sends PCMU every
/// 20 ms and a one-packet VP8 frame (descriptor 0x10, then [`SIP_FRAME`]) every 40 ms with
/// payload type `pt`; on `pli_tx` it sends an RTCP PLI (RR + PSFB) to the bridge's video port.
struct SipPeer {
    audio: SocketAddr,
    video: SocketAddr,
    to: mpsc::UnboundedSender<(SocketAddr, SocketAddr)>,
    pli: mpsc::UnboundedSender<()>,
    seen: Arc<Mutex<SipSeen>>,
}

async fn sip_peer(pt: u8) -> SipPeer {
    let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let v = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (audio, video) = (a.local_addr().unwrap(), v.local_addr().unwrap());
    let (to, mut to_rx) = mpsc::unbounded_channel::<(SocketAddr, SocketAddr)>();
    let (pli, mut pli_rx) = mpsc::unbounded_channel::<()>();
    let seen = Arc::new(Mutex::new(SipSeen::default()));
    let st = seen.clone();
    tokio::spawn(async move {
        let mut dest: Option<(SocketAddr, SocketAddr)> = None;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut n: u16 = 0;
        let (mut abuf, mut vbuf) = (vec![0u8; 2048], vec![0u8; 2048]);
        loop {
            tokio::select! {
                d = to_rx.recv() => match d { Some(d) => dest = Some(d), None => return },
                Some(()) = pli_rx.recv() => if let Some((_, vto)) = dest {
                    let mut p = vec![0x80, 201, 0, 1, 0, 0, 0x77, 0x77, 0x81, 206, 0, 2, 0, 0, 0x77, 0x77];
                    p.extend_from_slice(&[0, 0, 0, 0]);
                    v.send_to(&p, vto).await.unwrap();
                },
                _ = tick.tick() => if let Some((ato, vto)) = dest {
                    n = n.wrapping_add(1);
                    let h = RtpHeader { marker: false, pt: 0, seq: n, ts: u32::from(n) * 160, ssrc: 0x5151 };
                    let _ = a.send_to(&rtp::write(&h, &[0x22u8; 160]), ato).await;
                    if n % 2 == 0 {
                        let h = RtpHeader { marker: true, pt, seq: n / 2, ts: u32::from(n) * 1800, ssrc: 0x7777 };
                        let mut payload = vec![0x10];
                        payload.extend_from_slice(&SIP_FRAME);
                        let _ = v.send_to(&rtp::write(&h, &payload), vto).await;
                    }
                },
                r = a.recv_from(&mut abuf) => if let Ok((len, _)) = r {
                    if rtp::parse(&abuf[..len]).is_some_and(|(h, p)| h.pt == 0 && p.len() == 160) {
                        st.lock().unwrap().audio += 1;
                    }
                },
                r = v.recv_from(&mut vbuf) => if let Ok((len, _)) = r {
                    let buf = &vbuf[..len];
                    let mut s = st.lock().unwrap();
                    if buf.len() >= 8 && (192..=223).contains(&buf[1]) {
                        if rtcp_asks_keyframe(buf) {
                            s.plis += 1;
                        }
                    } else if let Some((h, p)) = rtp::parse(buf) {
                        s.video += 1;
                        s.video_pt = Some(h.pt);
                        if p.ends_with(&BROWSER_FRAME) {
                            s.video_payload_ok = true;
                        }
                    }
                },
            }
        }
    });
    SipPeer { audio, video, to, pli, seen }
}

/// The port of the `kind` m-line of an SDP.
fn port_of(sdp: &str, kind: &str) -> u16 {
    let m = sdp.lines().find(|l| l.starts_with(&format!("m={kind} "))).unwrap();
    m.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::new("127.0.0.1".parse().unwrap(), port)
}

async fn wait(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Video and audio both ways, then keyframe feedback both ways.
async fn check_flows(media: &MediaEndpoint, id: callgate_media::PeerId, browser: &Browser, sip: &SipPeer, pt: u8) {
    wait("the browser leg to connect", || browser.seen.lock().unwrap().connected).await;
    wait("video at the SIP side", || sip.seen.lock().unwrap().video >= 10).await;
    wait("audio at the SIP side", || sip.seen.lock().unwrap().audio >= 10).await;
    {
        let s = sip.seen.lock().unwrap();
        assert_eq!(s.video_pt, Some(pt), "the SIP side's payload type");
        assert!(s.video_payload_ok, "the browser's VP8 payload reaches the SIP side unchanged");
    }
    wait("video in the browser", || browser.seen.lock().unwrap().video >= 10).await;
    wait("audio in the browser", || browser.seen.lock().unwrap().audio >= 10).await;
    assert!(browser.seen.lock().unwrap().video_payload_ok, "the SIP side's VP8 frames reach the browser");

    // A PLI from the SIP side: the browser is asked for a keyframe.
    tokio::time::sleep(Duration::from_millis(150)).await; // past the throttle of the call's start
    let before = browser.seen.lock().unwrap().keyframe_requests;
    sip.pli.send(()).unwrap();
    wait("the keyframe request in the browser", || browser.seen.lock().unwrap().keyframe_requests > before).await;
    let stats = media.stats(id).await.unwrap();
    assert!(stats.keyframe_requests_in >= 1 && stats.video_in >= 10 && stats.video_out >= 10, "{stats:?}");

    // A PLI from the browser: an RTCP PLI to the SIP side.
    assert_eq!(sip.seen.lock().unwrap().plis, 0);
    browser.pli.send(()).unwrap();
    wait("a PLI at the SIP side", || sip.seen.lock().unwrap().plis >= 1).await;
    assert!(media.stats(id).await.unwrap().plis_out >= 1);
}

#[tokio::test]
async fn outgoing_video_call_relays_vp8_both_ways_with_keyframe_feedback() {
    let media = endpoint().await;
    let (offer, browser) = calling_browser().await;
    let id = media.next_peer_id();
    let (events, _events_rx) = mpsc::unbounded_channel();
    let b = media.bridge(id, offer, events).await.unwrap();
    assert_eq!(b.video, Some(VideoCodec::Vp8));
    assert!(!b.webrtc_answer.contains("m=video 0 "), "{}", b.webrtc_answer);
    let vline = b.sip_sdp.lines().find(|l| l.starts_with("m=video ")).unwrap().to_string();
    let pt: u8 = vline.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(b.sip_sdp.contains(&format!("a=rtpmap:{pt} VP8/90000\r\n")), "{}", b.sip_sdp);
    assert!(b.sip_sdp.contains(&format!("a=rtcp-fb:{pt} nack pli\r\n")), "{}", b.sip_sdp);
    let (audio_port, video_port) = (port_of(&b.sip_sdp, "audio"), port_of(&b.sip_sdp, "video"));
    assert_ne!(audio_port, video_port, "video has its own RTP port");

    // The SIP side answers with its own payload type for VP8 and no rtcp-mux; its `a=rtcp`
    // says where its RTCP goes (its video socket here).
    let sip = sip_peer(100).await;
    let answer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video {} RTP/AVP 100\r\na=rtpmap:100 VP8/90000\r\n\
         a=rtcp:{}\r\n",
        sip.audio.port(),
        sip.video.port(),
        sip.video.port()
    );
    media.bridge_remote(id, answer).await.unwrap();
    browser.answers.send(b.webrtc_answer.clone()).unwrap();
    sip.to.send((local(audio_port), local(video_port))).unwrap();
    check_flows(&media, id, &browser, &sip, 100).await;
    media.close(id);
}

#[tokio::test]
async fn incoming_video_call_offers_the_sip_sides_vp8_to_the_browser() {
    let media = endpoint().await;
    let sip = sip_peer(98).await;
    let offer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video {} RTP/AVP 98 99\r\na=rtpmap:98 VP8/90000\r\n\
         a=rtpmap:99 VP9/90000\r\na=rtcp-fb:98 nack pli\r\na=rtcp-mux\r\n",
        sip.audio.port(),
        sip.video.port()
    );
    let id = media.next_peer_id();
    let (events, _events_rx) = mpsc::unbounded_channel();
    let leg = media.incoming_bridge(id, offer, events).await.unwrap();
    assert_eq!(leg.video, Some(VideoCodec::Vp8));
    assert!(leg.webrtc_offer.contains("a=rtpmap:98 VP8/90000"), "{}", leg.webrtc_offer);
    assert!(!leg.webrtc_offer.contains("VP9"), "{}", leg.webrtc_offer);
    let msids: Vec<&str> = leg.webrtc_offer.lines().filter(|l| l.starts_with("a=msid:")).collect();
    assert_eq!(msids.len(), 2, "{}", leg.webrtc_offer);
    assert_ne!(msids[0], msids[1], "Chromium refuses repeated a=msid lines");
    assert_eq!(msids[0].split(' ').next(), msids[1].split(' ').next(), "one stream for both tracks");
    let vline = leg.sip_answer.lines().find(|l| l.starts_with("m=video ")).unwrap();
    assert!(vline.ends_with(" RTP/AVP 98") && !vline.starts_with("m=video 0 "), "{}", leg.sip_answer);
    assert!(leg.sip_answer.contains("a=rtcp-mux\r\n"), "mux offered, mux answered:\n{}", leg.sip_answer);
    let (answer, browser) = answering_browser(&leg.webrtc_offer).await;
    media.bridge_answer(id, answer).await.unwrap();
    let (audio_port, video_port) = (port_of(&leg.sip_answer, "audio"), port_of(&leg.sip_answer, "video"));
    sip.to.send((local(audio_port), local(video_port))).unwrap();
    check_flows(&media, id, &browser, &sip, 98).await;
    media.close(id);
}

#[tokio::test]
async fn a_sip_offer_with_video_callgate_cannot_carry_is_answered_with_video_refused() {
    let media = endpoint().await;
    let offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video 40002 RTP/AVP 99\r\na=rtpmap:99 VP9/90000\r\n";
    let id = media.next_peer_id();
    let (events, _events_rx) = mpsc::unbounded_channel();
    let leg = media.incoming_bridge(id, offer.into(), events).await.unwrap();
    assert_eq!(leg.video, None);
    assert!(!leg.webrtc_offer.contains("m=video"), "{}", leg.webrtc_offer);
    assert!(leg.sip_answer.ends_with("m=video 0 RTP/AVP 99\r\n"), "{}", leg.sip_answer);
    media.close(id);
}

#[tokio::test]
async fn a_sip_answer_refusing_video_keeps_the_audio() {
    let media = endpoint().await;
    let (offer, browser) = calling_browser().await;
    let id = media.next_peer_id();
    let (events, _events_rx) = mpsc::unbounded_channel();
    let b = media.bridge(id, offer, events).await.unwrap();
    assert_eq!(b.video, Some(VideoCodec::Vp8));
    let sip = sip_peer(96).await;
    let answer = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\nm=video 0 RTP/AVP 96\r\n",
        sip.audio.port()
    );
    media.bridge_remote(id, answer).await.unwrap();
    browser.answers.send(b.webrtc_answer.clone()).unwrap();
    let (audio_port, video_port) = (port_of(&b.sip_sdp, "audio"), port_of(&b.sip_sdp, "video"));
    sip.to.send((local(audio_port), local(video_port))).unwrap();
    wait("audio at the SIP side", || sip.seen.lock().unwrap().audio >= 10).await;
    wait("audio in the browser", || browser.seen.lock().unwrap().audio >= 10).await;
    let stats = media.stats(id).await.unwrap();
    assert_eq!((stats.video_out, stats.video_in), (0, 0), "no video without the SIP side's consent: {stats:?}");
    assert_eq!(sip.seen.lock().unwrap().video, 0);
    assert_eq!(browser.seen.lock().unwrap().video, 0);
    media.close(id);
}
