//! Settings of the media endpoint, with safe defaults.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use crate::bridge::RtpLatching;

/// How the endpoint binds and what it advertises.
#[derive(Debug, Clone)]
pub struct MediaConfig {
    /// The one UDP socket every peer shares. WCS uses 31000-32000 for media.
    pub bind: SocketAddr,
    /// The address put into the host candidate. `None`: the bound address, or when that is
    /// unspecified (`0.0.0.0`), the address of the interface that routes outwards.
    pub candidate_ip: Option<IpAddr>,
    /// For servers behind NAT: the public address browsers must send to. It replaces the
    /// candidate address (the port stays the bound one, so the NAT must map it 1:1).
    pub public_ip: Option<IpAddr>,
    /// ICE and DTLS must complete within this time after the answer, or the peer fails
    /// ("Failed by ICE timeout" / "Failed by DTLS error").
    pub connect_timeout: Duration,
    /// Smallest gap between two keyframe requests sent to one publisher.
    pub keyframe_request_interval: Duration,
    /// SO_RCVBUF / SO_SNDBUF of the shared socket. Every peer's traffic queues in this one
    /// socket while the media task writes a frame to hundreds of players; the kernel caps it at
    /// `net.core.rmem_max` / `wmem_max`.
    pub socket_buffer_bytes: usize,
    /// Which source a call leg takes the SIP side's RTP from: the SDP's address (default), or
    /// the first packet's (symmetric RTP, for SIP peers behind NAT).
    pub rtp_latching: RtpLatching,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            bind: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 31000)),
            candidate_ip: None,
            public_ip: None,
            connect_timeout: Duration::from_secs(15),
            keyframe_request_interval: Duration::from_millis(300),
            socket_buffer_bytes: 4 << 20,
            rtp_latching: RtpLatching::Sdp,
        }
    }
}

impl MediaConfig {
    /// The address for the host candidate, given the socket's bound address.
    ///
    /// Every peer gets exactly this one candidate. Because the socket may be bound to `0.0.0.0`
    /// (and the destination address of a datagram is then unknown), every datagram is handed to
    /// str0m as if it arrived on this address — str0m drops STUN that did not arrive on one of
    /// its local candidates.
    pub fn advertised_addr(&self, bound: SocketAddr) -> SocketAddr {
        let ip = self.public_ip.or(self.candidate_ip).unwrap_or_else(|| {
            if bound.ip().is_unspecified() {
                detect_outward_ip().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
            } else {
                bound.ip()
            }
        });
        SocketAddr::new(ip, bound.port())
    }
}

/// The local address the kernel would use towards the outside world. `connect` on a UDP socket
/// only selects a route; no packet is sent.
fn detect_outward_ip() -> Option<IpAddr> {
    let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    s.connect((Ipv4Addr::new(192, 0, 2, 1), 9)).ok()?; // TEST-NET-1 (RFC 5737)
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_address_precedence() {
        let bound: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut c = MediaConfig::default();
        assert_eq!(c.advertised_addr(bound), bound);
        c.candidate_ip = Some("10.1.2.3".parse().unwrap());
        assert_eq!(c.advertised_addr(bound), "10.1.2.3:4000".parse().unwrap());
        c.public_ip = Some("203.0.113.7".parse().unwrap());
        assert_eq!(c.advertised_addr(bound), "203.0.113.7:4000".parse().unwrap());
    }

    #[test]
    fn unspecified_bind_gets_a_concrete_address() {
        let a = MediaConfig::default().advertised_addr("0.0.0.0:5000".parse().unwrap());
        assert!(!a.ip().is_unspecified());
        assert_eq!(a.port(), 5000);
    }
}
