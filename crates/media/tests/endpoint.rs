//! The tokio endpoint on a real socket: what it binds and what its answers advertise.

use callgate_media::{MediaConfig, MediaEndpoint, MediaError};
use tokio::sync::mpsc;

const CHROMIUM_PUBLISH: &str = include_str!("../testdata/chromium-publish-offer.sdp");

#[tokio::test]
async fn answers_carry_the_public_ip_with_the_bound_port() {
    let cfg = MediaConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        public_ip: Some("203.0.113.9".parse().unwrap()),
        ..Default::default()
    };
    let media = MediaEndpoint::start(cfg).await.unwrap();
    assert_eq!(media.advertised_addr.ip().to_string(), "203.0.113.9");
    assert_eq!(media.advertised_addr.port(), media.bound_addr.port());
    let (tx, _rx) = mpsc::unbounded_channel();
    let answer = media.publish(media.next_peer_id(), CHROMIUM_PUBLISH.into(), tx.clone()).await.unwrap();
    let cand: Vec<&str> = answer.lines().filter(|l| l.starts_with("a=candidate:")).collect();
    assert_eq!(cand.len(), 1, "{answer}");
    assert!(cand[0].contains(&format!("203.0.113.9 {} typ host", media.bound_addr.port())), "{}", cand[0]);
    // A play for a peer that is not a publisher is refused.
    let e = media.play(media.next_peer_id(), media.next_peer_id(), CHROMIUM_PUBLISH.into(), tx).await.unwrap_err();
    assert_eq!(e, MediaError::SourceNotFound);
    assert_eq!(media.counters().frames_in, 0);
}
