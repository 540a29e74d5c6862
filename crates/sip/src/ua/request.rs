//! Building what the user agent sends: requests from a [`ReqSpec`] (rebuilt with a new
//! branch, CSeq and credentials when challenged), the ACK of a non-2xx final response
//! (§17.1.1.3), CANCEL (§9.1), and responses with the `received`/`rport` of RFC 3581.

use std::net::SocketAddr;

use bytes::Bytes;

use crate::builder::MessageBuilder;
use crate::error::ParseError;
use crate::message::Message;
use crate::method::{Method, StatusCode};
use crate::name::HeaderName;
use crate::parse::parse_datagram;

use super::types::Transport;

/// Everything about a request but its Via branch and credentials.
#[derive(Debug, Clone)]
pub(crate) struct ReqSpec {
    pub method: Method,
    pub uri: String,
    pub cseq: u32,
    pub routes: Vec<String>,
    /// From value, with our tag.
    pub from: String,
    /// To value (with the remote tag inside a dialog).
    pub to: String,
    pub call_id: String,
    pub contact: Option<String>,
    /// Further headers, in order (name as text, value).
    pub headers: Vec<(String, String)>,
    /// Content type and body.
    pub body: Option<(String, Bytes)>,
    pub transport: Transport,
}

impl ReqSpec {
    /// The request on the wire: `Via` with `branch` and `rport` first, then Max-Forwards,
    /// Route, From, To, Call-ID, CSeq, Contact, credentials, the extra headers, User-Agent.
    pub fn build(
        &self,
        sent_by: &str,
        branch: &str,
        auth: Option<&(HeaderName, String)>,
        user_agent: &str,
    ) -> Result<Message, ParseError> {
        let mut b = MessageBuilder::request(&self.method, &self.uri)
            .header(HeaderName::Via, format!("SIP/2.0/{} {sent_by};branch={branch};rport", self.transport.via_name()))
            .header(HeaderName::MaxForwards, "70");
        for r in &self.routes {
            b = b.header(HeaderName::Route, r);
        }
        b = b
            .header(HeaderName::From, &self.from)
            .header(HeaderName::To, &self.to)
            .header(HeaderName::CallId, &self.call_id)
            .header(HeaderName::CSeq, format!("{} {}", self.cseq, self.method));
        if let Some(c) = &self.contact {
            b = b.header(HeaderName::Contact, c);
        }
        if let Some((name, value)) = auth {
            b = b.header(*name, value);
        }
        for (name, value) in &self.headers {
            b = b.header_named(name, value);
        }
        if !user_agent.is_empty() {
            b = b.header(HeaderName::UserAgent, user_agent);
        }
        if let Some((ct, body)) = &self.body {
            b = b.body(ct, body.clone());
        }
        b.build()
    }
}

/// The ACK for a non-2xx final response to `invite` (§17.1.1.3): the INVITE's Request-URI,
/// top Via, Route, From, Call-ID and CSeq number, and the response's To.
pub(crate) fn ack_for_failure(invite: &Message, response: &Bytes) -> Option<Bytes> {
    let resp = parse_datagram(response.clone()).ok()?;
    let uri = invite.request_uri()?.as_str().to_owned();
    let mut b = MessageBuilder::request(&Method::Ack, &uri)
        .header(HeaderName::Via, invite.header_values(HeaderName::Via).next()?)
        .header(HeaderName::MaxForwards, "70");
    for r in invite.header_all(HeaderName::Route) {
        b = b.header(HeaderName::Route, r.value_unfolded());
    }
    b.header(HeaderName::From, invite.header(HeaderName::From)?.value_unfolded())
        .header(HeaderName::To, resp.header(HeaderName::To)?.value_unfolded())
        .header(HeaderName::CallId, invite.header(HeaderName::CallId)?.value_unfolded())
        .header(HeaderName::CSeq, format!("{} ACK", invite.cseq().ok()?.seq))
        .to_bytes()
        .ok()
}

/// The CANCEL of `invite` (§9.1): same Request-URI, top Via (so the same branch), Route,
/// From, To, Call-ID and CSeq number, method CANCEL.
pub(crate) fn cancel_for(invite: &Message, user_agent: &str) -> Result<Message, ParseError> {
    let uri = invite.request_uri().map(|u| u.as_str().to_owned()).unwrap_or_default();
    let via =
        invite.header_values(HeaderName::Via).next().ok_or(ParseError::MissingHeader { header: HeaderName::Via })?;
    let mut b = MessageBuilder::request(&Method::Cancel, &uri)
        .header(HeaderName::Via, via)
        .header(HeaderName::MaxForwards, "70");
    for r in invite.header_all(HeaderName::Route) {
        b = b.header(HeaderName::Route, r.value_unfolded());
    }
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId] {
        let h = invite.header(name).ok_or(ParseError::MissingHeader { header: name })?;
        b = b.header(name, h.value_unfolded());
    }
    b = b.header(HeaderName::CSeq, format!("{} CANCEL", invite.cseq()?.seq));
    if !user_agent.is_empty() {
        b = b.header(HeaderName::UserAgent, user_agent);
    }
    b.build()
}

/// The top Via value of a request, with `received` and `rport` filled in (RFC 3261 §18.2.1,
/// RFC 3581 §4): `received` when the source address differs from the sent-by host or
/// `rport` was asked for; `rport=<source port>` when it was asked for.
pub(crate) fn stamped_via(value: &str, source: SocketAddr) -> String {
    let Ok(via) = crate::typed::via::Via::parse(value) else { return value.to_owned() };
    let rport = via.rport.is_some();
    let differs = via.host.ip() != Some(source.ip());
    if !rport && !differs {
        return value.to_owned();
    }
    let mut parts: Vec<String> = Vec::new();
    for (i, part) in value.split(';').enumerate() {
        let p = part.trim();
        let name = p.split('=').next().unwrap_or("").trim();
        if i > 0 && (name.eq_ignore_ascii_case("rport") || name.eq_ignore_ascii_case("received")) {
            continue;
        }
        parts.push(if i == 0 { part.trim_end().to_owned() } else { p.to_owned() });
    }
    parts.push(format!("received={}", source.ip()));
    if rport {
        parts.push(format!("rport={}", source.port()));
    }
    parts.join(";")
}

/// Where a response to a request from `source` goes (RFC 3261 §18.2.2, RFC 3581 §4): over a
/// stream, back to the connection; over UDP to the source IP and, with `rport`, the source
/// port, else the Via's sent-by port (5060 when absent).
pub(crate) fn response_destination(req: &Message, source: SocketAddr, transport: Transport) -> SocketAddr {
    if transport.is_reliable() {
        return source;
    }
    match req.via() {
        Ok(v) if v.rport.is_none() => SocketAddr::new(source.ip(), v.port.unwrap_or(5060)),
        _ => source,
    }
}

/// A response to `req`: every Via (the top one stamped), From, To (with `to_tag` when it has
/// none), Call-ID and CSeq (§8.2.6.2). The caller adds Contact, body and the rest.
pub(crate) fn response_to(
    req: &Message,
    status: u16,
    reason: Option<&str>,
    to_tag: Option<&str>,
    source: SocketAddr,
) -> Result<MessageBuilder, ParseError> {
    let status = StatusCode::new(status)
        .ok_or(ParseError::Builder { what: "status code", fault: crate::fault::Fault::InvalidStatus })?;
    let mut b = MessageBuilder::response(status, reason);
    for (i, v) in req.header_values(HeaderName::Via).enumerate() {
        let text = crate::message::unfold(v);
        let text = String::from_utf8_lossy(&text);
        b = if i == 0 {
            b.header(HeaderName::Via, stamped_via(&text, source))
        } else {
            b.header(HeaderName::Via, &*text)
        };
    }
    for name in [HeaderName::From, HeaderName::To, HeaderName::CallId, HeaderName::CSeq] {
        let h = req.header(name).ok_or(ParseError::MissingHeader { header: name })?;
        let mut value = h.value_unfolded().into_owned();
        if name == HeaderName::To {
            if let Some(tag) = to_tag {
                if req.to()?.tag().is_none() {
                    value.extend_from_slice(b";tag=");
                    value.extend_from_slice(tag.as_bytes());
                }
            }
        }
        b = b.header(name, value);
    }
    Ok(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Message {
        parse_datagram(Bytes::from_static(
            b"INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKabc;rport\r\n\
Via: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\n\
Route: <sip:p1;lr>\r\n\
From: <sip:alice@a>;tag=1\r\n\
To: <sip:bob@b>\r\n\
Call-ID: cid\r\n\
CSeq: 7 INVITE\r\n\
Content-Length: 0\r\n\r\n",
        ))
        .unwrap()
    }

    #[test]
    fn spec_builds_a_valid_request() {
        let spec = ReqSpec {
            method: Method::Message,
            uri: "sip:bob@example.com".into(),
            cseq: 3,
            routes: vec!["<sip:p1.example.com;lr>".into()],
            from: "\"Al\" <sip:al@example.com>;tag=x".into(),
            to: "<sip:bob@example.com>".into(),
            call_id: "c1".into(),
            contact: Some("<sip:al@192.0.2.1:5060>".into()),
            headers: vec![("X-Extra".into(), "1".into())],
            body: Some(("text/plain".into(), Bytes::from_static(b"hi"))),
            transport: Transport::Udp,
        };
        let auth = (HeaderName::Authorization, "Digest username=\"al\"".to_owned());
        let m = spec.build("192.0.2.1:5060", "z9hG4bK1", Some(&auth), "callgate").unwrap();
        m.validate().unwrap();
        assert_eq!(m.via().unwrap().branch, Some("z9hG4bK1"));
        assert!(m.via().unwrap().rport.is_some());
        assert_eq!(m.cseq().unwrap().seq, 3);
        assert_eq!(m.body(), b"hi");
        assert_eq!(m.header_named("X-Extra").next().unwrap().value(), b"1");
        assert_eq!(m.authorization().count(), 1);
        assert_eq!(m.max_forwards().unwrap(), Some(70));
    }

    #[test]
    fn ack_and_cancel_follow_the_invite() {
        let inv = invite();
        let resp = Bytes::from_static(
            b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKabc\r\nFrom: <sip:alice@a>;tag=1\r\nTo: <sip:bob@b>;tag=2\r\nCall-ID: cid\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n",
        );
        let ack = parse_datagram(ack_for_failure(&inv, &resp).unwrap()).unwrap();
        ack.validate().unwrap();
        assert_eq!(ack.via().unwrap().branch, Some("z9hG4bKabc"));
        assert_eq!(ack.vias().count(), 1);
        assert_eq!(ack.to().unwrap().tag(), Some("2"));
        assert_eq!(ack.cseq().unwrap().seq, 7);
        assert_eq!(ack.request_uri().unwrap().as_str(), "sip:bob@192.0.2.4");
        assert_eq!(ack.routes().count(), 1);
        let cancel = cancel_for(&inv, "callgate").unwrap();
        cancel.validate().unwrap();
        assert_eq!(cancel.via().unwrap().branch, Some("z9hG4bKabc"));
        assert_eq!(cancel.cseq().unwrap().method, Method::Cancel);
        assert_eq!(cancel.to().unwrap().tag(), None);
        assert!(ack_for_failure(&inv, &Bytes::from_static(b"garbage")).is_none());
    }

    #[test]
    fn responses_stamp_received_and_rport() {
        let inv = invite();
        let src: SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let r = response_to(&inv, 180, None, Some("t1"), src).unwrap().build().unwrap();
        let top = r.via().unwrap();
        assert_eq!(top.received, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(top.rport, Some(crate::Rport::Port(40000)));
        assert_eq!(top.branch, Some("z9hG4bKabc"));
        assert_eq!(r.vias().count(), 2);
        assert_eq!(r.to().unwrap().tag(), Some("t1"));
        assert_eq!(response_destination(&inv, src, Transport::Udp), src);
        // Without rport: the source IP and the Via port.
        let plain = parse_datagram(Bytes::from_static(
            b"OPTIONS sip:x@h SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.9:5062;branch=z9hG4bKo\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:x@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ))
        .unwrap();
        assert_eq!(response_destination(&plain, src, Transport::Udp), "203.0.113.9:5062".parse().unwrap());
        let r = response_to(&plain, 200, None, None, src).unwrap().build().unwrap();
        assert_eq!(r.via().unwrap().received, None, "same host, no rport: Via unchanged");
        assert!(response_to(&plain, 99, None, None, src).is_err());
    }
}
