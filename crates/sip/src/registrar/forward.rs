//! Rewriting a message for forwarding (RFC 3261 §16.6, §16.7): a request gets our Via on top
//! (its former top Via stamped with `received`/`rport`), a new Request-URI, Max-Forwards minus
//! one, our Record-Route, and loses the Route that named us; a response loses its top Via (ours).
//! Every other header and the body go through as received.

use bytes::{BufMut, Bytes, BytesMut};
use std::net::SocketAddr;

use crate::lex::ListIter;
use crate::message::Message;
use crate::name::HeaderName;

/// What changes in a forwarded request.
pub(crate) struct RequestEdit<'a> {
    pub uri: &'a str,
    /// Our Via value (`SIP/2.0/UDP host:port;branch=...`).
    pub via: &'a str,
    pub record_route: Option<&'a str>,
    /// Remove the first Route value (it named us).
    pub drop_first_route: bool,
    pub max_forwards: u8,
    /// Where the request came from, for its top Via's `received`/`rport`.
    pub source: SocketAddr,
}

fn put_header(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

/// The elements of a list header value, trimmed.
fn elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    ListIter::new(value).map(move |(a, b)| &value[a..b]).filter(|e| !e.is_empty())
}

/// Writes each element of the list header `value` on a line of its own. The first element of
/// this header in the whole message (`*first` is shared by its repeated header lines) is given to
/// `first_as` instead, which returns its replacement, or `None` to drop it.
fn put_elements(
    out: &mut BytesMut,
    name: &[u8],
    value: &[u8],
    first: &mut bool,
    first_as: impl Fn(&[u8]) -> Option<Vec<u8>>,
) {
    for el in elements(value) {
        if std::mem::take(first) {
            if let Some(replaced) = first_as(el) {
                put_header(out, name, &replaced);
            }
        } else {
            put_header(out, name, el);
        }
    }
}

fn finish(mut out: BytesMut, msg: &Message) -> Bytes {
    let body = msg.body();
    put_header(&mut out, b"Content-Length", body.len().to_string().as_bytes());
    out.put_slice(b"\r\n");
    out.put_slice(body);
    out.freeze()
}

/// The request `msg` as it leaves us.
pub(crate) fn request(msg: &Message, method: &str, e: &RequestEdit<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(msg.as_bytes().len() + 200);
    out.put_slice(method.as_bytes());
    out.put_slice(b" ");
    out.put_slice(e.uri.as_bytes());
    out.put_slice(b" SIP/2.0\r\n");
    put_header(&mut out, b"Via", e.via.as_bytes());
    if let Some(rr) = e.record_route {
        put_header(&mut out, b"Record-Route", rr.as_bytes());
    }
    let mut first_via = true;
    let mut first_route = e.drop_first_route;
    let mut max_forwards = false;
    for h in msg.headers() {
        let value = h.value_unfolded();
        match h.name() {
            HeaderName::Via => put_elements(&mut out, b"Via", &value, &mut first_via, |el| {
                Some(crate::ua::request::stamped_via(&String::from_utf8_lossy(el), e.source).into_bytes())
            }),
            HeaderName::Route => put_elements(&mut out, b"Route", &value, &mut first_route, |_| None),
            HeaderName::MaxForwards => {
                if !max_forwards {
                    max_forwards = true;
                    put_header(&mut out, b"Max-Forwards", e.max_forwards.to_string().as_bytes());
                }
            }
            HeaderName::ContentLength => {}
            _ => put_header(&mut out, h.name_bytes(), &value),
        }
    }
    if !max_forwards {
        put_header(&mut out, b"Max-Forwards", e.max_forwards.to_string().as_bytes());
    }
    finish(out, msg)
}

/// The response `msg` without its top Via.
pub(crate) fn response(msg: &Message) -> Bytes {
    let mut out = BytesMut::with_capacity(msg.as_bytes().len());
    let head = msg.as_bytes();
    let line_end = memchr::memmem::find(head, b"\r\n").map_or(head.len(), |i| i + 2);
    out.put_slice(&head[..line_end]);
    let mut first_via = true;
    for h in msg.headers() {
        let value = h.value_unfolded();
        match h.name() {
            HeaderName::Via => put_elements(&mut out, b"Via", &value, &mut first_via, |_| None),
            HeaderName::ContentLength => {}
            _ => put_header(&mut out, h.name_bytes(), &value),
        }
    }
    finish(out, msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_datagram;

    #[test]
    fn a_forwarded_request_has_our_via_and_record_route_and_loses_our_route() {
        let msg = parse_datagram(Bytes::from_static(
            b"INVITE sip:1002@callgate.local SIP/2.0\r\n\
v: SIP/2.0/UDP 10.0.0.1:30000;branch=z9hG4bKa;rport, SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKb\r\n\
Route: <sip:127.0.0.1:5060;lr>, <sip:10.0.0.7;lr>\r\n\
Max-Forwards: 70\r\n\
From: <sip:1001@callgate.local>;tag=1\r\n\
To: <sip:1002@callgate.local>\r\n\
i: c1\r\n\
CSeq: 1 INVITE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n",
        ))
        .unwrap();
        let out = request(
            &msg,
            "INVITE",
            &RequestEdit {
                uri: "sip:1002@127.0.0.1:30000",
                via: "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKcgp1",
                record_route: Some("<sip:127.0.0.1:5060;lr>"),
                drop_first_route: true,
                max_forwards: 69,
                source: "127.0.0.1:30000".parse().unwrap(),
            },
        );
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(
            text,
            "INVITE sip:1002@127.0.0.1:30000 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKcgp1\r\n\
Record-Route: <sip:127.0.0.1:5060;lr>\r\n\
Via: SIP/2.0/UDP 10.0.0.1:30000;branch=z9hG4bKa;received=127.0.0.1;rport=30000\r\n\
Via: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKb\r\n\
Route: <sip:10.0.0.7;lr>\r\n\
Max-Forwards: 69\r\n\
From: <sip:1001@callgate.local>;tag=1\r\n\
To: <sip:1002@callgate.local>\r\n\
i: c1\r\n\
CSeq: 1 INVITE\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\r\nv=0\n"
        );
        let back = parse_datagram(out).unwrap();
        assert!(back.validate().is_ok());
    }

    #[test]
    fn a_forwarded_response_loses_its_top_via_only() {
        let msg = parse_datagram(Bytes::from_static(
            b"SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKcgp1, SIP/2.0/UDP 10.0.0.1:30000;branch=z9hG4bKa;rport=30000\r\n\
From: <sip:1001@callgate.local>;tag=1\r\n\
To: <sip:1002@callgate.local>;tag=2\r\n\
Call-ID: c1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n",
        ))
        .unwrap();
        let out = response(&msg);
        let back = parse_datagram(out).unwrap();
        assert_eq!(back.vias().count(), 1);
        assert_eq!(back.via().unwrap().branch, Some("z9hG4bKa"));
        assert_eq!(back.status().unwrap().as_u16(), 180);
        assert!(back.validate().is_ok());
    }
}
