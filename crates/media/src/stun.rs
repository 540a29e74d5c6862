//! Just enough STUN (RFC 8489) to demultiplex: the local ICE ufrag of a binding request.
//!
//! Every peer shares one UDP socket. A browser's first packet is a STUN binding request whose
//! USERNAME is `<our ufrag>:<its ufrag>` (RFC 8445 §7.2.2); the ufrag is unique per peer, so it
//! routes the request in O(1) before the browser's address is known. Integrity is checked by
//! str0m afterwards; this parser only reads.

/// STUN magic cookie (RFC 8489 §5).
const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const HEADER_LEN: usize = 20;
const ATTR_USERNAME: u16 = 0x0006;
const BINDING_REQUEST: [u8; 2] = [0x00, 0x01];

/// True when `buf` looks like a STUN message (RFC 7983 §7: first byte 0..=3, plus the cookie).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] < 4 && buf[4..8] == MAGIC_COOKIE
}

/// The local ufrag of a binding request (message type 0x0001: method Binding, class Request),
/// the only datagram that may introduce a browser's address to the demultiplexer.
pub fn binding_request_ufrag(buf: &[u8]) -> Option<&[u8]> {
    if buf.len() < 2 || buf[..2] != BINDING_REQUEST {
        return None;
    }
    local_ufrag(buf)
}

/// The local part of the USERNAME attribute (`<local>:<remote>`) of a STUN message, if any.
pub fn local_ufrag(buf: &[u8]) -> Option<&[u8]> {
    if !is_stun(buf) {
        return None;
    }
    let body_len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let end = HEADER_LEN.checked_add(body_len)?;
    let body = buf.get(HEADER_LEN..end)?;
    let mut at = 0;
    while at + 4 <= body.len() {
        let typ = u16::from_be_bytes([body[at], body[at + 1]]);
        let len = u16::from_be_bytes([body[at + 2], body[at + 3]]) as usize;
        let value = body.get(at + 4..at + 4 + len)?;
        if typ == ATTR_USERNAME {
            let colon = value.iter().position(|&b| b == b':')?;
            return Some(&value[..colon]);
        }
        // Attributes are padded to 4 bytes (RFC 8489 §14).
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5769 §2.1 sample request: USERNAME "evtj:h6vY".
    const RFC5769_REQUEST: &[u8] = &[
        0x00, 0x01, 0x00, 0x58, 0x21, 0x12, 0xa4, 0x42, 0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87,
        0xdf, 0xae, 0x80, 0x22, 0x00, 0x10, 0x53, 0x54, 0x55, 0x4e, 0x20, 0x74, 0x65, 0x73, 0x74, 0x20, 0x63, 0x6c,
        0x69, 0x65, 0x6e, 0x74, 0x00, 0x24, 0x00, 0x04, 0x6e, 0x00, 0x01, 0xff, 0x80, 0x29, 0x00, 0x08, 0x93, 0x2f,
        0xf9, 0xb1, 0x51, 0x26, 0x3b, 0x36, 0x00, 0x06, 0x00, 0x09, 0x65, 0x76, 0x74, 0x6a, 0x3a, 0x68, 0x36, 0x76,
        0x59, 0x20, 0x20, 0x20, 0x00, 0x08, 0x00, 0x14, 0x9a, 0xea, 0xa7, 0x0c, 0xbf, 0xd8, 0xcb, 0x56, 0x78, 0x1e,
        0xf2, 0xb5, 0xb2, 0xd3, 0xf2, 0x49, 0xc1, 0xb5, 0x71, 0xa2, 0x80, 0x28, 0x00, 0x04, 0xe5, 0x7a, 0x3b, 0xcf,
    ];

    #[test]
    fn reads_the_local_ufrag_of_the_rfc5769_request() {
        assert!(is_stun(RFC5769_REQUEST));
        assert_eq!(local_ufrag(RFC5769_REQUEST), Some(&b"evtj"[..]));
    }

    #[test]
    fn rtp_dtls_and_garbage_are_not_stun() {
        // RTP (first byte 0x80), DTLS handshake (22), too short, wrong cookie.
        let mut rtp = vec![0x80u8, 0x6f, 0, 1];
        rtp.extend([0u8; 20]);
        assert_eq!(local_ufrag(&rtp), None);
        let mut dtls = vec![22u8, 0xfe, 0xfd];
        dtls.extend([0u8; 30]);
        assert_eq!(local_ufrag(&dtls), None);
        assert_eq!(local_ufrag(&RFC5769_REQUEST[..10]), None);
        let mut bad = RFC5769_REQUEST.to_vec();
        bad[5] = 0;
        assert_eq!(local_ufrag(&bad), None);
    }

    #[test]
    fn truncated_or_lying_lengths_never_panic() {
        for cut in 0..RFC5769_REQUEST.len() {
            let _ = local_ufrag(&RFC5769_REQUEST[..cut]);
        }
        let mut lying = RFC5769_REQUEST.to_vec();
        lying[3] = 0xff; // body length beyond the buffer
        assert_eq!(local_ufrag(&lying), None);
        let mut attr_lying = RFC5769_REQUEST.to_vec();
        attr_lying[22] = 0xff; // first attribute claims to be huge
        assert_eq!(local_ufrag(&attr_lying), None);
    }

    #[test]
    fn only_a_binding_request_yields_a_ufrag_to_route_by() {
        assert_eq!(binding_request_ufrag(RFC5769_REQUEST), Some(&b"evtj"[..]));
        // The same message as a binding indication (0x0011) and success response (0x0101).
        for typ in [[0x00, 0x11], [0x01, 0x01]] {
            let mut m = RFC5769_REQUEST.to_vec();
            m[..2].copy_from_slice(&typ);
            assert_eq!(local_ufrag(&m), Some(&b"evtj"[..]));
            assert_eq!(binding_request_ufrag(&m), None);
        }
        assert_eq!(binding_request_ufrag(&[]), None);
    }

    #[test]
    fn username_without_colon_is_ignored() {
        let mut m = vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42];
        m.extend([7u8; 12]);
        m.extend([0x00, 0x06, 0x00, 0x04, b'a', b'b', b'c', b'd']);
        assert_eq!(local_ufrag(&m), None);
    }
}
