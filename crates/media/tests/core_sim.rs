//! The media core against simulated browsers (str0m `Rtc`s as full-ICE offerers, like Chromium)
//! on a virtual clock and a lossless in-memory network; and the answers to Chromium's real
//! offers (captured from Chromium 156, in `testdata/`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use callgate_media::core::MediaCore;
use callgate_media::{FailReason, MediaConfig, MediaError, MediaEvent, PeerId};
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output, Rtc};

const SERVER: &str = "10.0.0.1:31000";
const CHROMIUM_PUBLISH: &str = include_str!("../testdata/chromium-publish-offer.sdp");
const CHROMIUM_PLAY: &str = include_str!("../testdata/chromium-play-offer.sdp");

fn core() -> MediaCore {
    MediaCore::new(MediaConfig::default(), SERVER.parse().unwrap())
}

/// A browser: a str0m Rtc in full ICE mode (controlling), at `addr`.
struct Browser {
    rtc: Rtc,
    addr: SocketAddr,
    mids: Vec<(MediaKind, Mid)>,
    connected: bool,
    received: Vec<(MediaKind, Vec<u8>)>,
    keyframe_requests: usize,
}

impl Browser {
    fn new(addr: &str, dir: Direction, now: Instant) -> (Browser, String, SdpPendingOffer) {
        Browser::with_mode(addr, dir, now, false)
    }

    /// `rtp_mode`: str0m's RTP mode, the browser writes RTP packets itself.
    fn with_mode(addr: &str, dir: Direction, now: Instant, rtp_mode: bool) -> (Browser, String, SdpPendingOffer) {
        let addr: SocketAddr = addr.parse().unwrap();
        let mut rtc = Rtc::builder()
            .set_crypto_provider(std::sync::Arc::new(str0m::crypto::from_feature_flags()))
            .set_rtp_mode(rtp_mode)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr, "udp").unwrap());
        let mut api = rtc.sdp_api();
        let a = api.add_media(MediaKind::Audio, dir, Some("s".into()), None, None);
        let v = api.add_media(MediaKind::Video, dir, Some("s".into()), None, None);
        let (offer, pending) = api.apply().unwrap();
        let b = Browser {
            rtc,
            addr,
            mids: vec![(MediaKind::Audio, a), (MediaKind::Video, v)],
            connected: false,
            received: vec![],
            keyframe_requests: 0,
        };
        (b, offer.to_sdp_string(), pending)
    }

    fn accept(&mut self, pending: SdpPendingOffer, answer: &str) {
        let answer = SdpAnswer::from_sdp_string(answer).unwrap();
        self.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    }

    fn mid(&self, kind: MediaKind) -> Mid {
        self.mids.iter().find(|(k, _)| *k == kind).unwrap().1
    }
}

/// The server core plus browsers on a virtual network.
struct Sim {
    core: MediaCore,
    browsers: Vec<Browser>,
    now: Instant,
    server: SocketAddr,
    /// Server datagrams dropped on purpose (to simulate a browser that went away).
    cut: Vec<SocketAddr>,
    /// Drop DTLS records (first byte 20..=63, RFC 7983) both ways: ICE works, DTLS never does.
    drop_dtls: bool,
    /// Lose the next RTP packet from this browser address with this payload type (one loss).
    lose_next_rtp: Option<(SocketAddr, u8)>,
    /// Lose the next RTP packet from the server to this browser address with this payload type.
    lose_next_to: Option<(SocketAddr, u8)>,
    /// RTP datagrams from the server to this browser address, kept as sent (SRTP leaves the
    /// header and its extensions in the clear).
    keep_rtp_to: Option<(SocketAddr, Vec<Vec<u8>>)>,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            core: core(),
            browsers: vec![],
            now: Instant::now(),
            server: SERVER.parse().unwrap(),
            cut: vec![],
            drop_dtls: false,
            lose_next_rtp: None,
            lose_next_to: None,
            keep_rtp_to: None,
        }
    }

    /// Runs the network and the clocks for `d` in 5 ms steps.
    fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
            self.now += Duration::from_millis(5);
            self.core.handle_timeout(self.now);
            for b in &mut self.browsers {
                b.rtc.handle_input(Input::Timeout(self.now)).unwrap();
            }
        }
    }

    fn step(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            // Browsers -> server.
            for i in 0..self.browsers.len() {
                loop {
                    let b = &mut self.browsers[i];
                    match b.rtc.poll_output().unwrap() {
                        Output::Timeout(_) => break,
                        Output::Transmit(t) => {
                            moved = true;
                            let dtls = (20..=63).contains(&t.contents[0]);
                            // SRTP leaves the RTP header in the clear: version 2 and the PT.
                            let lost = self.lose_next_rtp.is_some_and(|(addr, pt)| {
                                addr == b.addr
                                    && t.contents.len() > 12
                                    && t.contents[0] >> 6 == 2
                                    && t.contents[1] & 0x7f == pt
                            });
                            if lost {
                                self.lose_next_rtp = None;
                            }
                            let dropped = lost || self.cut.contains(&b.addr) || (self.drop_dtls && dtls);
                            if !dropped {
                                let from = b.addr;
                                self.core.handle_datagram(self.now, from, &t.contents);
                            }
                        }
                        Output::Event(e) => match e {
                            Event::Connected => b.connected = true,
                            Event::KeyframeRequest(_) => b.keyframe_requests += 1,
                            Event::MediaData(d) => {
                                let kind = b.mids.iter().find(|(_, m)| *m == d.mid).unwrap().0;
                                b.received.push((kind, d.data.to_vec()));
                            }
                            _ => {}
                        },
                    }
                }
            }
            // Server -> browsers.
            while let Some(t) = self.core.poll_transmit() {
                moved = true;
                if self.drop_dtls && (20..=63).contains(&t.contents[0]) {
                    continue;
                }
                let c = &t.contents;
                if self.lose_next_to.is_some_and(|(addr, pt)| {
                    addr == t.destination && c.len() > 12 && c[0] >> 6 == 2 && c[1] & 0x7f == pt
                }) {
                    self.lose_next_to = None;
                    continue;
                }
                if let Some((addr, kept)) = &mut self.keep_rtp_to {
                    if *addr == t.destination && c.len() > 12 && c[0] >> 6 == 2 && !(200..=206).contains(&c[1]) {
                        kept.push(c.to_vec());
                    }
                }
                if let Some(b) = self.browsers.iter_mut().find(|b| b.addr == t.destination) {
                    let r = Receive::new(Protocol::Udp, self.server, b.addr, &t.contents).unwrap();
                    b.rtc.handle_input(Input::Receive(self.now, r)).unwrap();
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn events(&mut self) -> Vec<(PeerId, MediaEvent)> {
        std::iter::from_fn(|| self.core.poll_event()).collect()
    }

    fn publish(&mut self, id: PeerId, addr: &str) -> usize {
        self.publish_with(id, addr, false)
    }

    fn publish_with(&mut self, id: PeerId, addr: &str, rtp_mode: bool) -> usize {
        let (mut b, offer, pending) = Browser::with_mode(addr, Direction::SendOnly, self.now, rtp_mode);
        let answer = self.core.add_publisher(id, &offer, self.now).unwrap();
        b.accept(pending, &answer);
        self.browsers.push(b);
        self.browsers.len() - 1
    }

    fn play(&mut self, id: PeerId, source: PeerId, addr: &str) -> Result<usize, MediaError> {
        let (mut b, offer, pending) = Browser::new(addr, Direction::RecvOnly, self.now);
        let answer = self.core.add_player(id, source, &offer, self.now)?;
        b.accept(pending, &answer);
        self.browsers.push(b);
        Ok(self.browsers.len() - 1)
    }

    fn video_pt(&mut self, i: usize) -> u8 {
        let b = &mut self.browsers[i];
        let mid = b.mid(MediaKind::Video);
        *b.rtc.writer(mid).unwrap().payload_params().next().unwrap().pt()
    }

    /// The publisher browser `i` sends one audio frame and one video frame.
    fn send_frames(&mut self, i: usize, n: u32) {
        let b = &mut self.browsers[i];
        for kind in [MediaKind::Audio, MediaKind::Video] {
            let mid = b.mid(kind);
            let w = b.rtc.writer(mid).unwrap();
            let pt = w.payload_params().next().unwrap().pt();
            let (clock, step) = if kind == MediaKind::Audio { (48_000, 960) } else { (90_000, 3000) };
            let t = str0m::media::MediaTime::new(u64::from(n) * step, str0m::media::Frequency::new(clock).unwrap());
            // For VP8 a payload whose first byte has the P bit clear is a keyframe.
            let data = vec![if kind == MediaKind::Video { 0x10 } else { 0xfc }, n as u8, 1, 2, 3, 4, 5, 6];
            w.write(pt, self.now, t, data).unwrap();
        }
    }
}

#[test]
fn publisher_frames_reach_every_connected_player() {
    let mut sim = Sim::new();
    let (pubid, p1, p2) = (PeerId(1), PeerId(2), PeerId(3));
    let publisher = sim.publish(pubid, "10.0.0.2:5000");
    let a = sim.play(p1, pubid, "10.0.0.3:5000").unwrap();
    let b = sim.play(p2, pubid, "10.0.0.4:5000").unwrap();
    sim.run(Duration::from_millis(500));
    let mut connected: Vec<PeerId> =
        sim.events().into_iter().filter(|(_, e)| *e == MediaEvent::Connected).map(|(id, _)| id).collect();
    connected.sort();
    assert_eq!(connected, [pubid, p1, p2], "all three peers connect");
    assert!(sim.browsers.iter().all(|b| b.connected));

    for n in 0..20 {
        sim.send_frames(publisher, n);
        sim.run(Duration::from_millis(20));
    }
    for i in [a, b] {
        let got = &sim.browsers[i].received;
        let audio = got.iter().filter(|(k, _)| *k == MediaKind::Audio).count();
        let video = got.iter().filter(|(k, _)| *k == MediaKind::Video).count();
        assert!(audio >= 18 && video >= 18, "player {i} got {audio} audio and {video} video frames");
        // The bytes are the publisher's, unchanged.
        let (_, first_audio) = got.iter().find(|(k, _)| *k == MediaKind::Audio).unwrap();
        assert_eq!(first_audio[0], 0xfc);
        assert_eq!(&first_audio[2..], &[1, 2, 3, 4, 5, 6]);
        let (_, first_video) = got.iter().find(|(k, _)| *k == MediaKind::Video).unwrap();
        assert_eq!(first_video[0], 0x10, "the VP8 payload descriptor was forwarded, the frame depacketizes");
        assert_eq!(&first_video[2..], &[1, 2, 3, 4, 5, 6]);
    }
    let s = sim.core.stats(pubid).unwrap();
    assert_eq!(s.players, 2);
    assert!(s.frames_in >= 36);
    assert!(sim.core.stats(p1).unwrap().frames_out >= 36);

    // A player that leaves stops getting frames; the other one keeps getting them.
    sim.core.remove(p1);
    let before = (sim.browsers[a].received.len(), sim.browsers[b].received.len());
    for n in 20..30 {
        sim.send_frames(publisher, n);
        sim.run(Duration::from_millis(20));
    }
    assert_eq!(sim.browsers[a].received.len(), before.0);
    assert!(sim.browsers[b].received.len() >= before.1 + 18);
    assert_eq!(sim.core.stats(pubid).unwrap().players, 1);
}

#[test]
fn playing_an_unknown_or_non_publisher_source_is_refused() {
    let mut sim = Sim::new();
    assert_eq!(sim.play(PeerId(9), PeerId(1), "10.0.0.3:5000").unwrap_err(), MediaError::SourceNotFound);
    sim.publish(PeerId(1), "10.0.0.2:5000");
    sim.play(PeerId(2), PeerId(1), "10.0.0.3:5000").unwrap();
    assert_eq!(sim.play(PeerId(3), PeerId(2), "10.0.0.4:5000").unwrap_err(), MediaError::SourceNotFound);
    assert!(matches!(sim.core.add_publisher(PeerId(1), CHROMIUM_PUBLISH, sim.now), Err(MediaError::DuplicatePeer(_))));
    assert!(matches!(sim.core.add_publisher(PeerId(7), "not sdp", sim.now), Err(MediaError::BadOffer(_))));
}

#[test]
fn no_ice_within_the_timeout_fails_with_ice_timeout() {
    let mut sim = Sim::new();
    sim.core.add_publisher(PeerId(1), CHROMIUM_PUBLISH, sim.now).unwrap();
    sim.run(Duration::from_secs(14));
    assert!(sim.events().is_empty());
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.events(), [(PeerId(1), MediaEvent::Failed(FailReason::IceTimeout))]);
    assert!(sim.core.is_empty(), "a failed peer is removed");
}

#[test]
fn a_browser_that_vanishes_after_connecting_fails_with_ice_keep_alive() {
    let mut sim = Sim::new();
    sim.publish(PeerId(1), "10.0.0.2:5000");
    sim.run(Duration::from_millis(300));
    assert_eq!(sim.events(), [(PeerId(1), MediaEvent::Connected)]);
    sim.cut.push("10.0.0.2:5000".parse().unwrap());
    sim.run(Duration::from_secs(60));
    assert_eq!(sim.events(), [(PeerId(1), MediaEvent::Failed(FailReason::IceKeepAlive))]);
}

#[test]
fn stun_from_two_browsers_is_routed_by_ufrag() {
    // Both publishers connect although neither address was known beforehand.
    let mut sim = Sim::new();
    sim.publish(PeerId(1), "10.0.0.2:5000");
    sim.publish(PeerId(2), "10.0.0.3:5000");
    sim.run(Duration::from_millis(300));
    let mut ids: Vec<PeerId> = sim.events().into_iter().map(|(id, _)| id).collect();
    ids.sort();
    assert_eq!(ids, [PeerId(1), PeerId(2)]);
}

fn attr_lines<'a>(sdp: &'a str, prefix: &str) -> Vec<&'a str> {
    sdp.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn answer_to_chromiums_publish_offer_follows_the_checklist() {
    let mut c = core();
    let answer = c.add_publisher(PeerId(1), CHROMIUM_PUBLISH, Instant::now()).unwrap();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert_eq!(attr_lines(&answer, "a=group:BUNDLE"), ["a=group:BUNDLE 0 1"]);
    assert_eq!(attr_lines(&answer, "a=mid:"), ["a=mid:0", "a=mid:1"]);
    assert_eq!(attr_lines(&answer, "a=recvonly").len(), 2, "{answer}");
    assert!(attr_lines(&answer, "a=sendonly").is_empty());
    assert!(attr_lines(&answer, "a=msid:").is_empty(), "the server sends nothing to a publisher");
    assert_eq!(attr_lines(&answer, "a=rtcp-mux").len(), 2);
    assert!(attr_lines(&answer, "a=setup:").iter().all(|l| *l == "a=setup:passive" || *l == "a=setup:active"));
    assert_eq!(attr_lines(&answer, "a=setup:").len(), 2);
    assert!(!attr_lines(&answer, "a=fingerprint:sha-256 ").is_empty());
    let candidates = attr_lines(&answer, "a=candidate:");
    assert!(
        !candidates.is_empty() && candidates.iter().all(|l| l.contains("10.0.0.1 31000 typ host")),
        "{candidates:?}"
    );
    assert!(answer.contains("opus/48000/2"), "{answer}");
    assert!(answer.contains("VP8/90000"), "{answer}");
    assert!(!answer.contains("VP9") && !answer.contains("AV1"), "only codecs forwarded as they are");
    // The browser's send-side bandwidth estimate needs the server's transport-wide feedback.
    assert!(answer.contains("transport-wide-cc"), "{answer}");
}

#[test]
fn answer_to_chromiums_play_offer_sends_audio_and_video_under_one_msid() {
    let mut c = core();
    c.add_publisher(PeerId(1), CHROMIUM_PUBLISH, Instant::now()).unwrap();
    let answer = c.add_player(PeerId(2), PeerId(1), CHROMIUM_PLAY, Instant::now()).unwrap();
    assert_eq!(attr_lines(&answer, "a=group:BUNDLE"), ["a=group:BUNDLE 0 1"]);
    assert_eq!(attr_lines(&answer, "a=sendonly").len(), 2, "{answer}");
    let msids = attr_lines(&answer, "a=msid:");
    assert_eq!(msids.len(), 2, "{answer}");
    let stream_ids: Vec<&str> = msids.iter().map(|l| l["a=msid:".len()..].split(' ').next().unwrap()).collect();
    assert_eq!(stream_ids[0], stream_ids[1], "one stream id for audio and video: {msids:?}");
    let ssrc_msids = attr_lines(&answer, "a=ssrc:").into_iter().filter(|l| l.contains(" msid:")).collect::<Vec<_>>();
    assert!(!ssrc_msids.is_empty());
    assert!(ssrc_msids.iter().all(|l| l.contains(&format!(" msid:{} ", stream_ids[0]))), "{ssrc_msids:?}");
    assert!(answer.contains("a=candidate:"));
    // No bandwidth estimation towards players: no per-packet transport-cc or abs-send-time.
    let extmaps = attr_lines(&answer, "a=extmap:");
    assert!(extmaps.iter().any(|l| l.ends_with("sdes:mid")), "{extmaps:?}");
    assert!(extmaps.iter().any(|l| l.ends_with("ssrc-audio-level")), "{extmaps:?}");
    assert!(extmaps.iter().any(|l| l.ends_with("video-orientation")), "{extmaps:?}");
    assert!(!answer.contains("transport-wide-cc") && !answer.contains("abs-send-time"), "{extmaps:?}");
}

#[test]
fn many_peers_demux_stays_correct() {
    // 1 publisher, 8 players, all connect and all receive.
    let mut sim = Sim::new();
    let publisher = sim.publish(PeerId(100), "10.0.1.1:5000");
    let players: Vec<usize> =
        (0..8).map(|i| sim.play(PeerId(i), PeerId(100), &format!("10.0.2.{}:6000", i + 1)).unwrap()).collect();
    sim.run(Duration::from_millis(500));
    assert_eq!(sim.events().len(), 9);
    for n in 0..5 {
        sim.send_frames(publisher, n);
        sim.run(Duration::from_millis(20));
    }
    let counts: HashMap<usize, usize> = players.iter().map(|&i| (i, sim.browsers[i].received.len())).collect();
    assert!(counts.values().all(|&c| c >= 8), "{counts:?}");
}

#[test]
fn a_player_that_connects_makes_the_publisher_send_a_keyframe() {
    let mut sim = Sim::new();
    let publisher = sim.publish(PeerId(1), "10.0.0.2:5000");
    sim.run(Duration::from_millis(300));
    for n in 0..5 {
        sim.send_frames(publisher, n);
        sim.run(Duration::from_millis(20));
    }
    assert_eq!(sim.browsers[publisher].keyframe_requests, 0);
    let player = sim.play(PeerId(2), PeerId(1), "10.0.0.3:5000").unwrap();
    sim.run(Duration::from_millis(300));
    assert_eq!(sim.browsers[publisher].keyframe_requests, 1, "one PLI when the player connected");

    // The late player's streams start clean: it decodes audio and video from its first packets.
    for n in 5..15 {
        sim.send_frames(publisher, n);
        sim.run(Duration::from_millis(20));
    }
    let got = &sim.browsers[player].received;
    let video: Vec<u8> = got.iter().filter(|(k, _)| *k == MediaKind::Video).map(|(_, d)| d[1]).collect();
    let audio = got.iter().filter(|(k, _)| *k == MediaKind::Audio).count();
    assert!(audio >= 9, "late player got {audio} audio frames");
    assert_eq!(video, (5..15).collect::<Vec<u8>>(), "late player gets every video frame sent after it joined");

    // The player asks for a keyframe (PLI): it reaches the publisher.
    let mid = sim.browsers[player].mid(MediaKind::Video);
    let mut w = sim.browsers[player].rtc.writer(mid).unwrap();
    assert!(w.is_request_keyframe_possible(KeyframeRequestKind::Pli));
    w.request_keyframe(None, KeyframeRequestKind::Pli).unwrap();
    sim.run(Duration::from_millis(100));
    assert_eq!(sim.browsers[publisher].keyframe_requests, 2, "the player's PLI reached the publisher");
}

#[test]
fn a_lost_publisher_video_packet_makes_the_publisher_send_a_keyframe() {
    let mut sim = Sim::new();
    let publisher = sim.publish(PeerId(1), "10.0.0.2:5000");
    let player = sim.play(PeerId(2), PeerId(1), "10.0.0.3:5000").unwrap();
    sim.run(Duration::from_millis(500));
    for n in 0..20 {
        sim.send_frames(publisher, n);
        sim.run(Duration::from_millis(20));
    }
    // Only the join PLI so far: in-order packets are no gap.
    assert_eq!(sim.browsers[publisher].keyframe_requests, 1);
    let pt = sim.video_pt(publisher);
    sim.lose_next_rtp = Some(("10.0.0.2:5000".parse().unwrap(), pt));
    for n in 20..25 {
        sim.send_frames(publisher, n);
        sim.run(Duration::from_millis(20));
    }
    assert!(sim.lose_next_rtp.is_none(), "one video packet was lost");
    assert_eq!(sim.browsers[publisher].keyframe_requests, 2, "the gap made the server ask for a keyframe");
    let video = sim.browsers[player].received.iter().filter(|(k, _)| *k == MediaKind::Video).count();
    assert!(video >= 23, "the player keeps getting video after the loss ({video} frames)");
}

#[test]
fn a_video_packet_lost_towards_a_player_is_repaired_from_its_rtx_cache() {
    let mut sim = Sim::new();
    let publisher = sim.publish(PeerId(1), "10.0.0.2:5000");
    let player = sim.play(PeerId(2), PeerId(1), "10.0.0.3:5000").unwrap();
    sim.run(Duration::from_millis(500));
    for n in 0..20 {
        sim.send_frames(publisher, n);
        sim.run(Duration::from_millis(20));
    }
    // Both sides are str0m with the same codec config: the player's VP8 PT is the publisher's.
    let pt = sim.video_pt(publisher);
    sim.lose_next_to = Some(("10.0.0.3:5000".parse().unwrap(), pt));
    for n in 20..30 {
        sim.send_frames(publisher, n);
        sim.run(Duration::from_millis(20));
    }
    sim.run(Duration::from_millis(500));
    assert!(sim.lose_next_to.is_none(), "one video packet to the player was lost");
    let frames: Vec<u8> =
        sim.browsers[player].received.iter().filter(|(k, _)| *k == MediaKind::Video).map(|(_, d)| d[1]).collect();
    for n in 20..30u8 {
        assert!(frames.contains(&n), "video frame {n} reached the player (NACK answered by RTX): {frames:?}");
    }
    // The publisher was not asked for a keyframe for it: the repair came from the server.
    assert_eq!(sim.browsers[publisher].keyframe_requests, 1);
}

/// The header extension elements of an RTP packet in the one-byte form (RFC 8285): (id, value).
fn rtp_extensions(p: &[u8]) -> Vec<(u8, Vec<u8>)> {
    if p[0] & 0x10 == 0 {
        return vec![];
    }
    let at = 12 + 4 * usize::from(p[0] & 0x0f);
    assert_eq!(&p[at..at + 2], &[0xbe, 0xde], "one-byte form");
    let end = at + 4 + 4 * usize::from(u16::from_be_bytes([p[at + 2], p[at + 3]]));
    let (mut i, mut v) = (at + 4, vec![]);
    while i < end {
        if p[i] == 0 {
            i += 1; // padding
            continue;
        }
        let (id, len) = (p[i] >> 4, usize::from(p[i] & 0x0f) + 1);
        v.push((id, p[i + 1..i + 1 + len].to_vec()));
        i += 1 + len;
    }
    v
}

#[test]
fn video_to_a_player_carries_its_mid_only_until_the_player_reports() {
    // A player's video stream has an RTX SSRC too; the mid (RFC 8843 §9.1) binds the SSRC and
    // is left out once the player's receiver report shows it has been bound (as libwebrtc does).
    let mut sim = Sim::new();
    let publisher = sim.publish(PeerId(1), "10.0.0.2:5000");
    let player = sim.play(PeerId(2), PeerId(1), "10.0.0.3:5000").unwrap();
    sim.keep_rtp_to = Some(("10.0.0.3:5000".parse().unwrap(), vec![]));
    sim.run(Duration::from_millis(500));
    for n in 0..100 {
        sim.send_frames(publisher, n);
        sim.run(Duration::from_millis(30));
    }
    let pt = sim.video_pt(publisher);
    let mid = sim.browsers[player].mid(MediaKind::Video);
    let video: Vec<Vec<u8>> = sim.keep_rtp_to.take().unwrap().1.into_iter().filter(|p| p[1] & 0x7f == pt).collect();
    assert!(video.len() >= 90, "video reached the player: {} packets", video.len());
    let with_mid = |p: &Vec<u8>| rtp_extensions(p).iter().any(|(_, v)| v.as_slice() == mid.as_bytes());
    assert!(with_mid(&video[0]), "the first video packet carries the mid {mid}: {:?}", rtp_extensions(&video[0]));
    let last = video.last().unwrap();
    assert!(!with_mid(last), "3 s on, after the player's reports, no mid: {:?}", rtp_extensions(last));
    assert!(sim.browsers[player].received.iter().filter(|(k, _)| *k == MediaKind::Video).count() >= 90);
}

#[test]
fn a_publisher_packet_too_large_for_a_players_datagram_is_not_passed_on() {
    // A client that ignores the path MTU (str0m's RTP mode writes whatever it is given): a
    // payload over MAX_FORWARDED_PAYLOAD (1,900 bytes) with a player's header and SRTP tag could
    // pass str0m's 2000-byte datagram buffer, whose regular send path panics past it.
    let mut sim = Sim::new();
    let publisher = sim.publish_with(PeerId(1), "10.0.0.2:5000", true);
    let player = sim.play(PeerId(2), PeerId(1), "10.0.0.3:5000").unwrap();
    sim.run(Duration::from_millis(500));
    let mid = sim.browsers[publisher].mid(MediaKind::Video);
    let pt = {
        let rtc = &sim.browsers[publisher].rtc;
        rtc.codec_config().iter().find(|p| p.spec().codec == str0m::format::Codec::Vp8).unwrap().pt()
    };
    for (n, size) in [(1u8, 1200usize), (2, 1900), (3, 1950), (4, 1000)] {
        // A VP8 descriptor (S = 1), then a one-packet keyframe whose second byte is `n`.
        let mut payload = vec![0u8; size];
        payload[..3].copy_from_slice(&[0x10, 0x10, n]);
        let now = sim.now;
        let mut api = sim.browsers[publisher].rtc.direct_api();
        let tx = api.stream_tx_by_mid(mid, None).expect("the publisher's video stream");
        let t = u32::from(n) * 3000;
        tx.write_rtp(str0m::rtp::RtpWrite::new(pt, u64::from(n).into(), t, now, payload).marker(true));
        sim.run(Duration::from_millis(20));
    }
    sim.run(Duration::from_millis(200));
    let frames: Vec<(u8, usize)> = sim.browsers[player]
        .received
        .iter()
        .filter(|(k, _)| *k == MediaKind::Video)
        .map(|(_, d)| (d[1], d.len()))
        .collect();
    // Frame 4 comes after the dropped packet's gap, which the player's depacketizer waits on (a
    // browser would NACK, then ask for a keyframe): it is not what this checks.
    assert_eq!(frames[..2], [(1, 1199), (2, 1899)], "payloads up to 1,900 bytes pass");
    assert!(!frames.iter().any(|(n, _)| *n == 3), "the 1,950-byte payload is dropped: {frames:?}");
}

#[test]
fn chromiums_offer_as_a_call_leg_gets_g711_only_and_a_plain_rtp_sdp() {
    let mut c = core();
    let sip_local: SocketAddr = "10.0.0.1:40002".parse().unwrap();
    let b = c.add_bridge(PeerId(1), CHROMIUM_PUBLISH, sip_local, None, Instant::now()).unwrap();
    assert_eq!(b.codec, callgate_media::bridge::G711::Pcmu);
    let audio = b.webrtc_answer.split("m=video").next().unwrap();
    assert!(audio.contains("m=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"), "PCMU only, no Opus:\n{audio}");
    assert!(b.webrtc_answer.contains("m=video 0 "), "no video port, no video:\n{}", b.webrtc_answer);
    assert!(!b.sip_sdp.contains("m=video"), "{}", b.sip_sdp);
    assert!(
        b.sip_sdp.contains("c=IN IP4 10.0.0.1\r\n") && b.sip_sdp.contains("m=audio 40002 RTP/AVP 0 101\r\n"),
        "{}",
        b.sip_sdp
    );
}

#[test]
fn chromiums_video_call_offer_gets_its_first_video_codec_on_both_legs() {
    let mut c = core();
    let sip_local: SocketAddr = "10.0.0.1:40002".parse().unwrap();
    let video_local: SocketAddr = "10.0.0.1:40004".parse().unwrap();
    let b = c.add_bridge(PeerId(1), CHROMIUM_PUBLISH, sip_local, Some(video_local), Instant::now()).unwrap();
    let video = b.webrtc_answer.split("m=video").nth(1).unwrap();
    assert!(!video.starts_with(" 0 "), "video is taken:\n{}", b.webrtc_answer);
    let chosen = callgate_media::video::choose_video(CHROMIUM_PUBLISH).unwrap();
    let pt = chosen.pt;
    assert!(video.contains(&format!("a=rtpmap:{pt} {}/90000", chosen.codec.name())), "{video}");
    let codecs = video.lines().filter(|l| l.starts_with("a=rtpmap:") && !l.contains(" rtx/")).count();
    assert_eq!(codecs, 1, "one video codec (and its RTX):\n{video}");
    assert_eq!(b.video, Some(chosen.codec));
    let sip_video = b.sip_sdp.split("m=video").nth(1).unwrap();
    assert!(sip_video.starts_with(&format!(" 40004 RTP/AVP {pt}\r\n")), "{}", b.sip_sdp);
    assert!(b.sip_sdp.contains("m=audio 40002 RTP/AVP 0 101\r\n"), "{}", b.sip_sdp);
}

#[test]
fn an_h264_first_offer_carries_that_h264_with_its_parameters() {
    let mut c = core();
    // The browser prefers constrained baseline H.264, packetization mode 1 (PT 108).
    let offer =
        CHROMIUM_PUBLISH.replacen("m=video 9 UDP/TLS/RTP/SAVPF 96 97 ", "m=video 9 UDP/TLS/RTP/SAVPF 108 96 97 ", 1);
    assert_ne!(offer, CHROMIUM_PUBLISH);
    let sip_local: SocketAddr = "10.0.0.1:40002".parse().unwrap();
    let video_local: SocketAddr = "10.0.0.1:40004".parse().unwrap();
    let b = c.add_bridge(PeerId(1), &offer, sip_local, Some(video_local), Instant::now()).unwrap();
    assert_eq!(b.video, Some(callgate_media::video::VideoCodec::H264));
    let video = b.webrtc_answer.split("m=video").nth(1).unwrap();
    assert!(video.contains("a=rtpmap:108 H264/90000"), "{video}");
    assert!(video.contains("profile-level-id=42e01f"), "{video}");
    assert!(!video.contains("VP8"), "{video}");
    let sip_video = b.sip_sdp.split("m=video").nth(1).unwrap();
    assert!(sip_video.starts_with(" 40004 RTP/AVP 108\r\na=rtpmap:108 H264/90000\r\n"), "{}", b.sip_sdp);
    assert!(
        sip_video.contains("a=fmtp:108 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"),
        "{}",
        b.sip_sdp
    );
}

#[test]
fn ice_without_dtls_fails_with_dtls_timeout() {
    let mut sim = Sim::new();
    sim.drop_dtls = true;
    sim.publish(PeerId(1), "10.0.0.2:5000");
    sim.run(Duration::from_secs(14));
    assert!(sim.events().is_empty());
    sim.run(Duration::from_secs(2));
    assert_eq!(sim.events(), [(PeerId(1), MediaEvent::Failed(FailReason::DtlsTimeout))]);
}

/// A STUN binding request (RFC 8489) with USERNAME `<local>:<remote>`, PRIORITY and a
/// MESSAGE-INTEGRITY that is 20 bytes of junk (str0m parses it; no password matches).
fn stun_binding_request(local_ufrag: &str, txid: u8) -> Vec<u8> {
    let username = format!("{local_ufrag}:remote");
    let mut attrs = vec![0x00, 0x06];
    attrs.extend((username.len() as u16).to_be_bytes());
    attrs.extend(username.as_bytes());
    attrs.resize(attrs.len().div_ceil(4) * 4, 0);
    attrs.extend([0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff]);
    attrs.extend([0x00, 0x08, 0x00, 0x14]);
    attrs.extend([0xabu8; 20]);
    let mut m = vec![0x00, 0x01];
    m.extend((attrs.len() as u16).to_be_bytes());
    m.extend([0x21, 0x12, 0xa4, 0x42]);
    m.extend([txid; 12]);
    m.extend(attrs);
    m
}

fn junk_rtp(i: u8) -> Vec<u8> {
    let mut rtp = vec![0x80, 0x6f, 0, i, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
    rtp.extend([0u8; 100]);
    rtp
}

#[test]
fn junk_from_unknown_addresses_is_dropped_without_asking_any_peer() {
    // 1 publisher, 20 players, all connected.
    let mut sim = Sim::new();
    let publisher = sim.publish(PeerId(100), "10.0.1.1:5000");
    let players: Vec<usize> =
        (0..20).map(|i| sim.play(PeerId(i), PeerId(100), &format!("10.0.2.{}:6000", i + 1)).unwrap()).collect();
    sim.run(Duration::from_millis(500));
    assert_eq!(sim.events().len(), 21);
    let before = sim.core.counters();
    // Junk from 100 addresses no STUN check introduced: SRTP-looking, DTLS-looking, RTCP-looking,
    // and STUN binding requests naming no peer's ufrag.
    let mut sent = 0;
    for i in 0..100u16 {
        let from: SocketAddr = format!("198.51.100.{}:{}", i % 200 + 1, 40000 + i).parse().unwrap();
        let rtp = junk_rtp(i as u8);
        let mut dtls = vec![22u8, 0xfe, 0xfd, 0, 0];
        dtls.extend([1u8; 60]);
        let mut rtcp = vec![0x80, 200, 0, 6];
        rtcp.extend([0u8; 24]);
        for junk in [rtp, dtls, rtcp, stun_binding_request("nobody", i as u8)] {
            sim.core.handle_datagram(sim.now, from, &junk);
            sent += 1;
        }
    }
    let after = sim.core.counters();
    assert_eq!(after.peer_probes, before.peer_probes, "no peer was asked about junk from unknown addresses");
    assert_eq!(after.datagrams_dropped - before.datagrams_dropped, sent, "each junk datagram is dropped and counted");
    assert_eq!(after.datagrams_in, before.datagrams_in);
    // The real peers still get media.
    for n in 0..5 {
        sim.send_frames(publisher, n);
        sim.run(Duration::from_millis(20));
    }
    assert!(players.iter().all(|&i| sim.browsers[i].received.len() >= 8));
    // An address that sent junk can still become a peer's once its STUN names a real ufrag.
    sim.play(PeerId(50), PeerId(100), "198.51.100.1:40000").unwrap();
    sim.run(Duration::from_millis(500));
    assert_eq!(sim.events(), [(PeerId(50), MediaEvent::Connected)]);
}

#[test]
fn a_binding_request_that_fails_integrity_does_not_introduce_its_address() {
    let mut c = core();
    let now = Instant::now();
    let answer = c.add_publisher(PeerId(1), CHROMIUM_PUBLISH, now).unwrap();
    let ufrag = answer.lines().find_map(|l| l.trim_end().strip_prefix("a=ice-ufrag:")).unwrap().to_string();
    let from: SocketAddr = "198.51.100.7:4000".parse().unwrap();
    let before = c.counters();
    // It names the peer's ufrag, so it is routed to that peer (one probe), which refuses it.
    c.handle_datagram(now, from, &stun_binding_request(&ufrag, 1));
    let mid = c.counters();
    assert_eq!((mid.peer_probes - before.peer_probes, mid.datagrams_dropped - before.datagrams_dropped), (1, 1));
    assert_eq!(mid.datagrams_in, before.datagrams_in);
    // Its address was not learnt: what follows from there reaches no peer.
    for i in 0..10 {
        c.handle_datagram(now, from, &junk_rtp(i));
    }
    let after = c.counters();
    assert_eq!(after.peer_probes, mid.peer_probes);
    assert_eq!(after.datagrams_dropped - mid.datagrams_dropped, 10);
}

/// An H.264 access unit of a pulled source, packetized as the server's RTSP pull does: a
/// keyframe is SPS, PPS and a 3000-byte IDR (FU-A fragments), a delta frame one small slice.
fn source_frame(key: bool, n: u8) -> callgate_media::core::SourceFrame {
    use callgate_media::source;
    let sps: Vec<u8> = vec![0x67, 0x42, 0xe0, 0x1f, 0xda, 0x02, 0x80];
    let pps: Vec<u8> = vec![0x68, 0xce, 0x3c, 0x80];
    let mut idr = vec![0x65, n];
    idr.extend((0..2998u32).map(|i| (i % 251) as u8 | 1));
    let slice = vec![0x41, n, 7, 7, 7];
    let nals: Vec<&[u8]> = if key { vec![&sps, &pps, &idr] } else { vec![&slice] };
    let payloads = source::packetize_h264(nals, source::MAX_PAYLOAD);
    callgate_media::core::SourceFrame {
        kind: MediaKind::Video,
        ts: 90_000 + 3000 * u32::from(n),
        keyframe: key,
        payloads: payloads.into_iter().map(std::sync::Arc::from).collect(),
    }
}

/// The NAL unit types of an Annex B access unit (str0m hands H.264 frames out in Annex B).
fn nal_types(au: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    let mut i = 0;
    while i + 3 < au.len() {
        if au[i..i + 3] == [0, 0, 1] {
            out.push(au[i + 3] & 0x1f);
            i += 3;
        } else {
            i += 1;
        }
    }
    out
}

#[test]
fn a_pulled_source_feeds_players_and_replays_its_last_keyframe_to_each_new_one() {
    use callgate_media::source::SourceCodec;
    let mut sim = Sim::new();
    let src = PeerId(1);
    assert_eq!(sim.core.add_source(src, &[]), Err(MediaError::NoCommonCodecs));
    sim.core.add_source(src, &[SourceCodec::H264 { profile_level_id: Some(0x42e01f) }]).unwrap();
    assert_eq!(sim.core.add_source(src, &[SourceCodec::Pcmu]), Err(MediaError::DuplicatePeer(src)));
    // The camera is ahead of every player: a keyframe, then delta frames.
    let now = sim.now;
    sim.core.source_frame(src, source_frame(true, 0), now);
    for n in 1..5 {
        sim.core.source_frame(src, source_frame(false, n), now);
    }
    let a = sim.play(PeerId(2), src, "10.0.0.3:5000").unwrap();
    sim.run(Duration::from_millis(500));
    assert!(sim.browsers[a].connected);
    for n in 5..10 {
        let now = sim.now;
        sim.core.source_frame(src, source_frame(false, n), now);
        sim.run(Duration::from_millis(20));
    }
    let video: Vec<&Vec<u8>> =
        sim.browsers[a].received.iter().filter(|(k, _)| *k == MediaKind::Video).map(|(_, d)| d).collect();
    let seen: Vec<(Vec<u8>, usize)> = video.iter().map(|v| (nal_types(v), v.len())).collect();
    assert!(video.len() >= 6, "the cached keyframe and the 5 live frames: {seen:?}");
    assert_eq!(nal_types(video[0]), [7, 8, 5], "the player starts with the cached SPS, PPS, IDR");
    let idr_start = video[0].windows(4).position(|w| w == [0, 0, 1, 0x65]).unwrap() + 3;
    assert_eq!(video[0].len() - idr_start, 3000, "the FU-A fragments reassemble to the whole IDR");
    assert_eq!(nal_types(video[1]), [1], "then the live delta frames");
    assert_eq!(video[1][video[1].len() - 4], 5, "from the first one after the join");

    // Audio the source was not created with, and a frame with no payload, are dropped.
    let now = sim.now;
    sim.core.source_frame(
        src,
        callgate_media::core::SourceFrame {
            kind: MediaKind::Audio,
            ts: 0,
            keyframe: false,
            payloads: vec![std::sync::Arc::from(&[0xffu8; 160][..])],
        },
        now,
    );
    sim.core.source_frame(src, callgate_media::core::SourceFrame { payloads: vec![], ..source_frame(false, 10) }, now);
    sim.run(Duration::from_millis(50));
    assert!(sim.browsers[a].received.iter().all(|(k, _)| *k == MediaKind::Video));
    assert_eq!(sim.core.stats(src).unwrap().players, 1);

    // The source goes: its player stays (the server ends it) and gets nothing more.
    sim.core.remove(src);
    assert!(sim.core.stats(src).is_none());
    let before = sim.browsers[a].received.len();
    let now = sim.now;
    sim.core.source_frame(src, source_frame(true, 11), now);
    sim.run(Duration::from_millis(50));
    assert_eq!(sim.browsers[a].received.len(), before);
    assert!(sim.core.stats(PeerId(2)).is_some());
}
