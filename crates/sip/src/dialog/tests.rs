use bytes::Bytes;

use super::*;
use crate::parse_datagram;

fn msg(s: &str) -> Message {
    parse_datagram(Bytes::from(s.replace('\n', "\r\n"))).unwrap()
}

fn invite() -> Message {
    msg("INVITE sip:bob@biloxi.example.com SIP/2.0
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8
From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
To: Bob <sip:bob@biloxi.example.com>
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
Contact: <sip:alice@pc33.atlanta.example.com>
Record-Route: <sip:p1.example.com;lr>
Record-Route: <sip:p2.example.com;lr>
Content-Length: 0

")
}

fn response(status: &str, contact: &str, rr: &str) -> Message {
    msg(&format!(
        "SIP/2.0 {status}
Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8
{rr}From: Alice <sip:alice@atlanta.example.com>;tag=1928301774
To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf
Call-ID: a84b4c76e66710
CSeq: 314159 INVITE
{contact}Content-Length: 0

"
    ))
}

#[test]
fn uac_early_then_confirmed_recomputes_route_set_and_target() {
    let early = response("180 Ringing", "", "Record-Route: <sip:old.example.com;lr>\n");
    let mut d = Dialog::new_uac(&invite(), &early).unwrap();
    assert_eq!(d.state, DialogState::Early);
    assert_eq!(d.remote_target, "sip:bob@biloxi.example.com", "no Contact yet: the Request-URI");
    let ok = response(
        "200 OK",
        "Contact: <sip:bob@192.0.2.4:5070;transport=udp>\n",
        "Record-Route: <sip:p2.example.com;lr>,<sip:p1.example.com;lr>\n",
    );
    d.confirm_with(&ok).unwrap();
    assert_eq!(d.state, DialogState::Confirmed);
    assert_eq!(d.route_set, ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]);
    assert_eq!(d.remote_target, "sip:bob@192.0.2.4:5070;transport=udp");
    assert_eq!(d.local_party(), "Alice <sip:alice@atlanta.example.com>;tag=1928301774");
    assert_eq!(d.remote_party(), "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf");
    let r = d.route();
    assert_eq!(r.request_uri, "sip:bob@192.0.2.4:5070;transport=udp");
    assert_eq!(r.next_hop, "sip:p1.example.com;lr");
    assert_eq!(d.id().remote_tag, "a6c85cf");
}

#[test]
fn uac_2xx_without_contact_is_an_error_not_a_panic() {
    let ok = response("200 OK", "", "");
    assert_eq!(Dialog::new_uac(&invite(), &ok), Err(DialogError::NoContact));
    let no_tag = msg("SIP/2.0 200 OK
Via: SIP/2.0/UDP h;branch=z9hG4bK1
From: <sip:a@h>;tag=1
To: <sip:b@h>
Call-ID: c
CSeq: 1 INVITE
Contact: <sip:b@h>
Content-Length: 0

");
    assert_eq!(Dialog::new_uac(&invite(), &no_tag), Err(DialogError::NoTag("To")));
}

#[test]
fn uas_keeps_record_route_order_and_checks_remote_cseq() {
    let req = invite();
    let mut d = Dialog::new_uas(&req, "ourtag", 7).unwrap();
    assert_eq!(d.route_set, ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]);
    assert_eq!(d.remote_target, "sip:alice@pc33.atlanta.example.com");
    assert_eq!(d.local_party(), "Bob <sip:bob@biloxi.example.com>;tag=ourtag");
    assert_eq!(d.remote_party(), "Alice <sip:alice@atlanta.example.com>;tag=1928301774");
    assert_eq!(d.local_tag, "ourtag");
    assert_eq!(d.next_local_seq(), 8);
    let bye = |n: u32, m: &str| {
        msg(&format!(
            "{m} sip:bob@h SIP/2.0
Via: SIP/2.0/UDP h;branch=z9hG4bK{n}
From: <sip:alice@atlanta.example.com>;tag=1928301774
To: <sip:bob@h>;tag=ourtag
Call-ID: a84b4c76e66710
CSeq: {n} {m}
Content-Length: 0

"
        ))
    };
    assert_eq!(d.check_remote_seq(&bye(314159, "BYE")), Err(DialogError::OutOfOrder { got: 314159, last: 314159 }));
    assert!(d.check_remote_seq(&bye(314159, "ACK")).is_ok(), "ACK carries the INVITE's number");
    assert!(d.check_remote_seq(&bye(314160, "BYE")).is_ok());
    assert_eq!(d.remote_seq, Some(314160));
}

#[test]
fn strict_router_puts_the_route_in_the_request_uri() {
    let req = msg("INVITE sip:bob@h SIP/2.0
Via: SIP/2.0/UDP h;branch=z9hG4bK1
From: <sip:a@h>;tag=1
To: <sip:bob@h>
Call-ID: c
CSeq: 1 INVITE
Contact: <sip:a@192.0.2.1>
Record-Route: <sip:strict.example.com;maddr=192.0.2.9>;x=y, <sip:loose.example.com;lr>
Content-Length: 0

");
    let d = Dialog::new_uas(&req, "t", 1).unwrap();
    let r = d.route();
    assert_eq!(r.request_uri, "sip:strict.example.com;maddr=192.0.2.9");
    assert_eq!(r.routes, ["<sip:loose.example.com;lr>", "<sip:a@192.0.2.1>"]);
    assert_eq!(r.next_hop, "sip:strict.example.com;maddr=192.0.2.9");
}

#[test]
fn target_refresh_takes_the_new_contact() {
    let mut d = Dialog::new_uas(&invite(), "t", 1).unwrap();
    let reinvite = msg("INVITE sip:bob@h SIP/2.0
Via: SIP/2.0/UDP h;branch=z9hG4bK2
From: <sip:alice@atlanta.example.com>;tag=1928301774
To: <sip:bob@h>;tag=t
Call-ID: a84b4c76e66710
CSeq: 314160 INVITE
Contact: <sip:alice@192.0.2.77:5090>
Content-Length: 0

");
    d.refresh_target(&reinvite);
    assert_eq!(d.remote_target, "sip:alice@192.0.2.77:5090");
    assert_eq!(d.route_set.len(), 2, "a target refresh keeps the route set");
}
