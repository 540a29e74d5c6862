//! RTP-only call legs (calls started through the REST API, no browser): the sans-IO core on a
//! virtual clock, and the endpoint with a real plain-RTP peer on 127.0.0.1.

use std::time::{Duration, Instant};

use callgate_media::bridge::G711;
use callgate_media::core::{MediaCore, Via};
use callgate_media::rtp::{self, RtpHeader};
use callgate_media::{MediaConfig, MediaEndpoint, MediaError, PeerId};

const SIP_ANSWER: &str = "v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 6000 RTP/AVP 0 8 96\r\n\
    a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:96 telephone-event/8000\r\n";

#[test]
fn an_rtp_leg_offers_g711_counts_sip_audio_and_sends_rfc4733_dtmf() {
    let mut core = MediaCore::new(MediaConfig::default(), "10.0.0.1:31000".parse().unwrap());
    let id = PeerId(7);
    let mut now = Instant::now();
    let sdp = core.add_rtp_leg(id, G711::Pcmu, "10.0.0.1:40000".parse().unwrap(), now).unwrap();
    assert!(sdp.contains("c=IN IP4 10.0.0.1\r\n"), "{sdp}");
    assert!(sdp.contains("m=audio 40000 RTP/AVP 0 101\r\n"), "{sdp}");
    assert!(sdp.contains("a=rtpmap:101 telephone-event/8000\r\n"), "{sdp}");
    assert_eq!(
        core.add_rtp_leg(id, G711::Pcmu, "10.0.0.1:40002".parse().unwrap(), now),
        Err(MediaError::DuplicatePeer(id))
    );
    assert_eq!(core.len(), 1);
    // Before the SIP answer: nowhere to send DTMF yet.
    core.send_dtmf(id, "1", now).unwrap();
    assert!(core.poll_transmit().is_none());
    // A SIP side that only takes PCMA is refused (no transcoding).
    let pcma = "v=0\r\nc=IN IP4 192.0.2.5\r\nm=audio 6000 RTP/AVP 8\r\n";
    assert_eq!(core.set_bridge_remote(id, pcma), Err(MediaError::TranscodingRequired));
    core.set_bridge_remote(id, SIP_ANSWER).unwrap();
    // Audio from the SIP side is counted, other payload types are not.
    let src = "192.0.2.5:6000".parse().unwrap();
    for seq in 0..5u16 {
        let pkt = rtp::write(&RtpHeader { marker: false, pt: 0, seq, ts: 160 * u32::from(seq), ssrc: 9 }, &[0xff; 160]);
        core.handle_rtp(id, now, src, &pkt);
    }
    core.handle_rtp(
        id,
        now,
        src,
        &rtp::write(&RtpHeader { marker: false, pt: 96, seq: 6, ts: 0, ssrc: 9 }, &[1, 0, 0, 0]),
    );
    let st = core.stats(id).unwrap();
    assert!(st.connected);
    assert_eq!(st.frames_in, 5);
    // DTMF queued before and after the answer goes out as RFC 4733 events on the leg's socket,
    // driven by the core's timers.
    core.send_dtmf(id, "#", now).unwrap();
    let mut events = Vec::new();
    for _ in 0..200 {
        while let Some(t) = core.poll_transmit() {
            assert_eq!(t.via, Via::Rtp(id));
            assert_eq!(t.destination, src);
            let (h, body) = rtp::parse(&t.contents).unwrap();
            assert_eq!(h.pt, 96, "the SIP side's telephone-event payload type");
            events.push((body[0], body[1] & 0x80 != 0));
        }
        now += Duration::from_millis(5);
        if core.poll_timeout().is_some_and(|t| t <= now) {
            core.handle_timeout(now);
        }
    }
    let ends = |ev: u8| events.iter().filter(|(e, end)| *e == ev && *end).count();
    assert_eq!((ends(1), ends(11)), (3, 3), "both keys, three end packets each: {events:?}");
    assert!(events.iter().position(|e| e.0 == 1) < events.iter().position(|e| e.0 == 11), "in order");
    assert_eq!(core.stats(id).unwrap().frames_out, events.len() as u64);
    assert_eq!(core.send_dtmf(id, "x", now), Err(MediaError::Negotiation("not a DTMF key: 'x'".into())));
    core.remove(id);
    assert!(core.is_empty());
    assert!(core.stats(id).is_none());
    assert_eq!(core.set_bridge_remote(id, SIP_ANSWER), Err(MediaError::NotFound(id)));
}

#[tokio::test]
async fn an_rtp_leg_on_the_endpoint_receives_and_sends_real_udp() {
    let cfg = MediaConfig { bind: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    let media = MediaEndpoint::start(cfg).await.unwrap();
    let id = media.next_peer_id();
    let sdp = media.rtp_leg(id, G711::Pcmu).await.unwrap();
    let port: u16 = sdp
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))
        .and_then(|m| m.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    assert!(sdp.contains("c=IN IP4 127.0.0.1"), "{sdp}");
    let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let answer = format!(
        "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio {} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n",
        peer.local_addr().unwrap().port()
    );
    media.bridge_remote(id, answer).await.unwrap();
    for seq in 0..3u16 {
        let pkt = rtp::write(&RtpHeader { marker: false, pt: 0, seq, ts: 160 * u32::from(seq), ssrc: 5 }, &[0x7f; 160]);
        peer.send_to(&pkt, ("127.0.0.1", port)).await.unwrap();
    }
    media.send_dtmf(id, "5".into()).await.unwrap();
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf)).await.unwrap().unwrap();
    assert_eq!(from.port(), port, "DTMF leaves from the leg's own RTP port");
    let (h, body) = rtp::parse(&buf[..n]).unwrap();
    assert_eq!((h.pt, body[0]), (101, 5));
    // The three audio packets were read by the leg (polled: the reader is another task).
    let deadline = Instant::now() + Duration::from_secs(5);
    while media.stats(id).await.unwrap().frames_in < 3 {
        assert!(Instant::now() < deadline, "audio never counted: {:?}", media.stats(id).await);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    media.close(id);
    let deadline = Instant::now() + Duration::from_secs(5);
    while media.stats(id).await.is_some() {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn an_rtp_leg_feeds_its_sip_audio_to_a_source_until_either_is_removed() {
    use callgate_media::source::SourceCodec;
    let mut core = MediaCore::new(MediaConfig::default(), "10.0.0.1:31000".parse().unwrap());
    let (leg, source, now) = (PeerId(7), PeerId(8), Instant::now());
    assert_eq!(core.feed_source(leg, source), Err(MediaError::SourceNotFound), "the source comes first");
    core.add_source(source, &[SourceCodec::Pcmu]).unwrap();
    // The feed is set before the leg exists (the call's stream is reserved before its leg).
    core.feed_source(leg, source).unwrap();
    core.add_rtp_leg(leg, G711::Pcmu, "10.0.0.1:40000".parse().unwrap(), now).unwrap();
    core.set_bridge_remote(leg, SIP_ANSWER).unwrap();
    let src = "192.0.2.5:6000".parse().unwrap();
    let audio = |seq: u16| {
        rtp::write(&RtpHeader { marker: false, pt: 0, seq, ts: 160 * u32::from(seq), ssrc: 9 }, &[0xff; 160])
    };
    for seq in 0..5u16 {
        core.handle_rtp(leg, now, src, &audio(seq));
    }
    // RTP from another address is not the call's audio: neither counted nor fed.
    core.handle_rtp(leg, now, "192.0.2.9:6000".parse().unwrap(), &audio(5));
    assert_eq!(core.stats(leg).unwrap().frames_in, 5);
    assert_eq!(core.stats(source).unwrap().frames_in, 5, "each packet is one audio frame of the source");
    // The source closed (the stream ended) while the call goes on: its audio goes nowhere.
    core.remove(source);
    core.handle_rtp(leg, now, src, &audio(6));
    assert_eq!(core.stats(leg).unwrap().frames_in, 6);
    core.add_source(source, &[SourceCodec::Pcmu]).unwrap();
    core.handle_rtp(leg, now, src, &audio(7));
    assert_eq!(core.stats(source).unwrap().frames_in, 0, "a new source of the same id is not fed");
}
