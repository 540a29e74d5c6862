//! RFC 4475 §4 (IPv6 references in Request-URI, Via, Contact, `received`) and `tel:` URIs.

use std::net::{IpAddr, Ipv6Addr};

use bytes::Bytes;

use super::{invalid, valid, wire};
use crate::{Fault, Host, ParseError, Uri};

fn register(ruri: &str, via_host: &str, contact: &str) -> Bytes {
    wire(&format!(
        "REGISTER {ruri} SIP/2.0
To: <sip:user@example.com>
From: <sip:user@example.com>;tag=81x2
Via: SIP/2.0/UDP {via_host};branch=z9hG4bKas3-111
Call-ID: SSG9559905523997077@hlau_4100
Max-Forwards: 70
Contact: {contact}
CSeq: 98176 REGISTER
Content-Length: 0

"
    ))
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

/// §4.1 (ipv6-good): IPv6 references in the Request-URI, Via and Contact.
#[test]
fn ipv6_references_everywhere() {
    let m = valid(&register("sip:[2001:db8::10]", "[2001:db8::9:1]", "\"Caller\" <sip:caller@[2001:db8::1]>"));
    let Some(Uri::Sip(ruri)) = m.request_uri() else { panic!() };
    assert_eq!((ruri.host, ruri.port), (Host::Ipv6(v6("2001:db8::10")), None));
    assert_eq!(m.via().unwrap().host, Host::Ipv6(v6("2001:db8::9:1")));
    let c = m.contacts().next().unwrap().unwrap();
    assert_eq!(c.addr().unwrap().uri.as_sip().unwrap().host.to_string(), "[2001:db8::1]");
}

/// §4.2 (ipv6-bad): an IPv6 address without brackets reads as host `2001` and port `db8::10`.
#[test]
fn ipv6_without_brackets_is_refused() {
    let e = invalid(&register("sip:2001:db8::10", "[2001:db8::9:1]", "<sip:caller@[2001:db8::1]>"));
    assert_eq!(e, ParseError::RequestUri { at: 13, fault: Fault::InvalidHost });
}

/// §4.3 (port-ambiguous) and §4.4 (port-unambiguous).
#[test]
fn port_inside_and_outside_the_brackets() {
    let m = valid(&register("sip:[2001:db8::10:5070]", "[2001:db8::9:1]", "<sip:caller@[2001:db8::1]>"));
    let ruri = m.request_uri().unwrap();
    let u = ruri.as_sip().unwrap();
    assert_eq!((u.host, u.port), (Host::Ipv6(v6("2001:db8::10:5070")), None));
    let m = valid(&register("sip:[2001:db8::10]:5070", "[2001:db8::9:1]", "<sip:caller@[2001:db8::1]>"));
    let ruri = m.request_uri().unwrap();
    let u = ruri.as_sip().unwrap();
    assert_eq!((u.host, u.port), (Host::Ipv6(v6("2001:db8::10")), Some(5070)));
}

/// §4.5, §4.6: `received` with and without brackets around the IPv6 address.
#[test]
fn via_received_with_and_without_brackets() {
    for received in ["[2001:db8::9:255]", "2001:db8::9:255"] {
        let via = format!("[2001:db8::9:1];received={received}");
        let m = valid(&register("sip:example.com", &via, "<sip:caller@[2001:db8::1]>"));
        let v = m.via().unwrap();
        assert_eq!(v.received, Some(IpAddr::V6(v6("2001:db8::9:255"))), "{received}");
        assert_eq!(v.branch, Some("z9hG4bKas3-111"));
    }
}

/// §4.9 (mult-ip-in-header): IPv4 and IPv6 in several Vias and in one Contact line.
#[test]
fn several_addresses_in_headers() {
    let raw = wire(
        "BYE sip:user@host.example.net SIP/2.0
Via: SIP/2.0/UDP [2001:db8::9:1]:6050;branch=z9hG4bKas3-111
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKjhja8781hjuaij65144
Via: SIP/2.0/TCP [2001:db8::9:255];branch=z9hG4bK451jj;received=192.0.2.200
Call-ID: 997077@lau_4100
Max-Forwards: 70
CSeq: 89187 BYE
To: sip:user@example.net;tag=9817--94
From: sip:user@example.com;tag=81x2
Contact: <sip:user@[2001:db8::10]>, <sip:user@192.0.2.10>
Content-Length: 0

",
    );
    let m = valid(&raw);
    let hosts: Vec<String> = m.vias().map(|v| v.unwrap().host.to_string()).collect();
    assert_eq!(hosts, vec!["[2001:db8::9:1]", "192.0.2.1", "[2001:db8::9:255]"]);
    assert_eq!(m.via().unwrap().port, Some(6050));
    let contacts: Vec<String> =
        m.contacts().map(|c| c.unwrap().addr().unwrap().uri.as_sip().unwrap().host.to_string()).collect();
    assert_eq!(contacts, vec!["[2001:db8::10]", "192.0.2.10"]);
}

/// §4.11, §4.12, §4.14 valid forms; §4.13 three colons in a row is not an IPv6 address.
#[test]
fn ipv6_grammar_corner_cases() {
    for (host, addr) in [
        ("[::ffff:192.0.2.10]", "::ffff:192.0.2.10"),
        ("[2001:db8::9:1]", "2001:db8::9:1"),
        ("[2001:db8::192.0.2.1]", "2001:db8::192.0.2.1"),
    ] {
        let m = valid(&register("sip:example.com", host, &format!("<sip:user@{host}>")));
        assert_eq!(m.via().unwrap().host, Host::Ipv6(v6(addr)));
    }
    let raw = register("sip:example.com", "[2001:db8:::192.0.2.1]", "<sip:user@[2001:db8::1]>");
    assert!(matches!(invalid(&raw), ParseError::Header { fault: Fault::InvalidIpv6, .. }));
    let raw = register("sip:example.com", "[2001:db8::1]", "<sip:user@[2001:db8:::192.0.2.1]>");
    assert!(matches!(invalid(&raw), ParseError::Header { fault: Fault::InvalidIpv6, .. }));
}

/// `tel:` URIs as Request-URI, in name-addrs with parameters, and bare (where the parameters
/// after it belong to the header).
#[test]
fn tel_uris() {
    let raw = wire(
        "INVITE tel:+1-201-555-0123 SIP/2.0
Via: SIP/2.0/UDP gw.example.com;branch=z9hG4bKtel1
To: tel:+358-555-1234567;tag=tt1
From: \"Desk\" <tel:7042;phone-context=example.com>;tag=ff2
Call-ID: tel-uri-1@gw.example.com
CSeq: 1 INVITE
Contact: <sip:gw@gw.example.com>
P-Asserted-Identity: <tel:+12015550123;ext=44>
Max-Forwards: 70
Content-Length: 0

",
    );
    let m = valid(&raw);
    let Some(Uri::Tel(t)) = m.request_uri() else { panic!() };
    assert_eq!(t.number, "+1-201-555-0123");
    assert!(t.is_global());
    let to = m.to().unwrap();
    let Uri::Tel(t) = to.uri else { panic!() };
    assert_eq!(t.number, "+358-555-1234567");
    assert!(t.params.is_empty());
    assert_eq!(to.tag(), Some("tt1"));
    let from = m.from().unwrap();
    let Uri::Tel(t) = from.uri else { panic!() };
    assert!(!t.is_global());
    assert_eq!(t.phone_context(), Some("example.com"));
    assert_eq!(from.tag(), Some("ff2"));
    let pai = m.header_values(crate::HeaderName::PAssertedIdentity).next().unwrap();
    let a = crate::NameAddr::parse(std::str::from_utf8(pai).unwrap()).unwrap();
    assert_eq!(a.uri.as_tel().unwrap().params.value("ext"), Some("44"));

    let bad = wire("INVITE tel:+ SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\n\n");
    assert!(matches!(invalid(&bad), ParseError::RequestUri { fault: Fault::Empty, .. }));
}
