//! callgate-media: WebRTC media for callgate on [str0m].
//!
//! - One UDP socket for every peer of the node (ICE-lite, DTLS-SRTP, BUNDLE, rtcp-mux); answers
//!   carry one host candidate (configured, bound, detected, or `public_ip` behind NAT), because the
//!   SDK never trickles.
//! - Publishers (browser sendonly) and players (browser recvonly) as str0m `Rtc`s, all owned by
//!   one task; a publisher's RTP packets are forwarded to its players as they are (payload
//!   shared, header rewritten per player: see [`forward`]), without decoding; a player
//!   that connects or asks for a keyframe makes the publisher get a PLI (FIR if PLI was not
//!   negotiated).
//! - On request only, a snapshot: the publisher's next VP8 keyframe decoded to a PNG off the
//!   media task ([`snapshot`]).
//!
//! [`core::MediaCore`] is the sans-IO part (datagrams and `now` in, datagrams and events out);
//! [`MediaEndpoint`] is the tokio driver that owns the socket.
//!
//! ```no_run
//! # async fn demo(publish_offer: String, play_offer: String) -> Result<(), Box<dyn std::error::Error>> {
//! use callgate_media::{MediaConfig, MediaEndpoint, MediaEvent};
//! let media = MediaEndpoint::start(MediaConfig { bind: "127.0.0.1:0".parse()?, ..Default::default() }).await?;
//! let (events, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let publisher = media.next_peer_id();
//! let answer = media.publish(publisher, publish_offer, events.clone()).await?; // -> setRemoteSDP
//! let player = media.next_peer_id();
//! let play_answer = media.play(player, publisher, play_offer, events).await?;
//! while let Some(ev) = rx.recv().await {
//!     if let MediaEvent::Failed(why) = ev { println!("{why}"); }
//! }
//! # Ok(()) }
//! ```
//!
//! [str0m]: https://github.com/algesten/str0m

pub mod batch;
pub mod bridge;
pub mod config;
pub mod core;
pub mod endpoint;
pub mod forward;
pub mod hls;
pub mod record;
pub mod rtp;
pub mod sdp;
pub mod snapshot;
pub mod source;
pub mod stun;
pub mod transcode;
pub mod video;

use std::sync::{Arc, Once, OnceLock};

pub use config::MediaConfig;
pub use endpoint::{EventSender, MediaEndpoint};

/// A media peer (one browser `RTCPeerConnection`), unique per endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

/// What happens to a peer after its answer was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// ICE and DTLS are up: media flows (publisher) or can be sent (player).
    Connected,
    /// The peer is gone; nothing follows.
    Failed(FailReason),
}

/// Why a peer failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailReason {
    /// No ICE check succeeded within the connect timeout.
    #[error("ICE did not complete within the connect timeout")]
    IceTimeout,
    /// ICE completed but DTLS did not within the connect timeout.
    #[error("DTLS did not complete within the connect timeout")]
    DtlsTimeout,
    /// The DTLS layer reported an error (bad fingerprint, handshake failure, alert).
    #[error("DTLS error: {0}")]
    Dtls(String),
    /// The browser stopped its ICE consent checks after the connection was up.
    #[error("ICE consent checks stopped")]
    IceKeepAlive,
    /// Anything else the WebRTC stack reported as fatal.
    #[error("{0}")]
    Error(String),
}

/// Why a peer could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("the offer is not valid SDP: {0}")]
    BadOffer(String),
    #[error("the offer could not be answered: {0}")]
    Negotiation(String),
    #[error("no common codecs")]
    NoCommonCodecs,
    #[error("the source stream is gone")]
    SourceNotFound,
    #[error("peer {0:?} exists already")]
    DuplicatePeer(PeerId),
    #[error("peer {0:?} does not exist (or is not a bridge)")]
    NotFound(PeerId),
    /// A call leg needs the same G.711 codec on both sides; callgate does not transcode.
    #[error("transcoding required, but disabled")]
    TranscodingRequired,
    #[error("the media endpoint is not running")]
    Stopped,
}

/// The crypto provider for every `Rtc` (aws-lc-rs). Set per instance, so nothing depends on
/// the process default.
pub(crate) fn crypto_provider() -> Arc<str0m::config::CryptoProvider> {
    static P: OnceLock<Arc<str0m::config::CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(str0m::crypto::from_feature_flags())).clone()
}

/// Installs str0m's process-wide default provider once. A second install panics in str0m, and
/// tests start several endpoints in one process, hence the `Once`.
pub fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Someone else (another library) may have installed one already: that is fine too.
        let _ = std::panic::catch_unwind(|| str0m::crypto::from_feature_flags().install_process_default());
    });
}
