//! RFC 4475 §3.1.1: syntactically valid messages that must parse, with the right values.

use bytes::Bytes;

use super::{valid, wire};
use crate::{parse_datagram, unescape, Contact, HeaderName, Host, Method, StatusCode, Uri};

const SDP: &str = "v=0\no=alice 2890844526 2890844526 IN IP4 192.0.2.70\ns=-\nc=IN IP4 192.0.2.71\nt=0 0\nm=audio 49170 RTP/AVP 0 8\nm=video 51372 RTP/AVP 31\na=rtpmap:31 H261/90000\n";

/// §3.1.1.1 (wsinv): odd case and spacing, folds everywhere, leading zeros, an empty header,
/// unknown headers, compact forms, two Vias on one folded line, escaped quotes.
#[test]
fn short_tortuous_invite() {
    let text = format!(
        "INVITE sip:ivan@relay-one.example.org;oddparam SIP/2.0
TO :
 sip:ivan@relay-one.example.org ;   tag    = 7731900a2
from   : \"M Petrov \\\\\\\"\"       <sip:mpetrov@example.net>
  ;
  tag = 55kdj1
MaX-fOrWaRdS: 0042
Call-ID: tortuous.kkq8h3@192.0.2.77
Content-Length   : {{CL}}
cseq: 0013
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.78;branch=990alkd
s :
OddNewHeader:   odd value
 continued odd value
StrangeHeaderWithStrangeValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:edge.example.org;lr;weird=val;weird-no-val>
v:  SIP  / 2.0  / TCP     twist.example.org   ;
  branch  =   z9hG4bKq2w3e  ,
 SIP  /    2.0   / UDP  192.168.77.9   ; branch=
 z9hG4bK55501
m:\"Quoted \\\"\\\"\" <sip:mpetrov@example.net> ; extra =
      extval ;
  flagparam ; q = 0.25

{SDP}"
    );
    let raw = wire(&text);
    let m = valid(&raw);
    assert_eq!(m.method(), Some(&Method::Invite));
    let Some(Uri::Sip(ruri)) = m.request_uri() else { panic!() };
    assert_eq!((ruri.user, ruri.host), (Some("ivan"), Host::Domain("relay-one.example.org")));
    assert!(ruri.params.contains("oddparam"));

    let to = m.to().unwrap();
    assert_eq!(to.tag(), Some("7731900a2"));
    assert!(!to.bracketed);
    let from = m.from().unwrap();
    assert_eq!(from.display_name_unquoted().unwrap(), "M Petrov \\\"");
    assert_eq!(from.tag(), Some("55kdj1"));
    assert_eq!(m.max_forwards().unwrap(), Some(42));
    assert_eq!(m.call_id().unwrap(), "tortuous.kkq8h3@192.0.2.77");
    assert_eq!(m.content_length().unwrap(), Some(SDP.len() + SDP.matches('\n').count()));
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.seq, cseq.method), (13, Method::Invite));

    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 3);
    assert_eq!((vias[0].transport, vias[0].branch), ("UDP", Some("990alkd")));
    assert_eq!(vias[0].host, Host::Ipv4("192.0.2.78".parse().unwrap()));
    assert_eq!((vias[1].transport, vias[1].branch), ("TCP", Some("z9hG4bKq2w3e")));
    assert_eq!(vias[1].host, Host::Domain("twist.example.org"));
    assert_eq!((vias[2].transport, vias[2].branch), ("UDP", Some("z9hG4bK55501")));

    assert_eq!(m.header(HeaderName::Subject).unwrap().value(), b"");
    let odd = m.header_named("oddnewheader").next().unwrap();
    assert_eq!(odd.name(), HeaderName::Other);
    assert_eq!(odd.value_unfolded().as_ref(), b"odd value continued odd value");
    assert_eq!(m.header_named("StrangeHeaderWithStrangeValue").next().unwrap().value(), b";;,,;;,;");

    let routes: Vec<_> = m.routes().map(Result::unwrap).collect();
    let Uri::Sip(r) = routes[0].uri else { panic!() };
    assert!(r.lr());
    assert_eq!(r.params.value("weird"), Some("val"));
    assert!(r.params.contains("weird-no-val"));

    let contacts: Vec<_> = m.contacts().map(Result::unwrap).collect();
    let c = contacts[0].addr().unwrap();
    assert_eq!(c.display_name_unquoted().unwrap(), "Quoted \"\"");
    assert_eq!(c.params.value("extra"), Some("extval"));
    assert!(c.params.contains("flagparam"));
    assert_eq!(c.q(), Some(0.25));
    assert!(m.content_type().unwrap().unwrap().is("application", "sdp"));
    assert_eq!(m.body(), SDP.replace('\n', "\r\n").as_bytes());
}

/// §3.1.1.2 (intmeth): every character the grammar allows, where it allows it: an extension
/// method full of token characters, reserved characters in user and password, escaped control
/// characters in a quoted string, UTF-8 in a quoted parameter and in an extension header.
#[test]
fn wide_range_of_valid_characters() {
    let method = "!odd-Method0123456789_*+`.%surely'~";
    let user = "1_strange.URI~(for-real!)&isn't+it$/wild?,/;;*";
    let text = format!(
        "{method} sip:{user}:&it+also=1,weird!*pa$$wo~d_too.(isn't-it)@example.org SIP/2.0
Via: SIP/2.0/TCP host7.example.org;branch=z9hG4bK-.!%66*_+`'~
To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F\" <sip:{user}@example.org>
From: tokA~` tokB'+_ tokC*%!.- <sip:plain@example.org>;fromParam''~+*_!.-%=\"работает\";tag=_tok~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}}{{
CSeq: 139122385 {method}
Max-Forwards: 255
extensionHeader-!.%*+_`'~:\u{feff}日本語のテキスト
Content-Length: 0

"
    );
    let raw = wire(&text);
    let m = valid(&raw);
    assert_eq!(m.method().unwrap().as_str(), method);
    assert!(matches!(m.method(), Some(Method::Extension(_))));
    let Some(Uri::Sip(ruri)) = m.request_uri() else { panic!() };
    assert_eq!(ruri.user, Some(user));
    assert_eq!(ruri.password, Some("&it+also=1,weird!*pa$$wo~d_too.(isn't-it)"));

    let to = m.to().unwrap();
    assert_eq!(to.display_name_unquoted().unwrap(), "BEL:\x07 NUL:\x00 DEL:\x7F");
    assert_eq!(to.uri.as_sip().unwrap().user, Some(user));
    let from = m.from().unwrap();
    assert_eq!(from.display_name, Some("tokA~` tokB'+_ tokC*%!.-"));
    assert_eq!(from.params.value("fromParam''~+*_!.-%"), Some("\"работает\""));
    assert_eq!(from.tag(), Some("_tok~1'+`*%!-."));
    assert_eq!(m.call_id().unwrap(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{");
    assert_eq!(m.cseq().unwrap().method.as_str(), method);
    assert_eq!(m.max_forwards().unwrap(), Some(255));
    let ext = m.header_named("EXTENSIONHEADER-!.%*+_`'~").next().unwrap();
    assert_eq!(std::str::from_utf8(ext.value()).unwrap(), "\u{feff}日本語のテキスト");
}

/// §3.1.1.3 (esc01): `%` escapes in user parts and URI parameters, compact `i` and `C`.
#[test]
fn valid_percent_escapes() {
    let text = format!(
        "INVITE sip:sips%3Aann%40example.org@example.net SIP/2.0
To: sip:%6Dark@example.org
From: <sip:With%20some%20spaces@example.net>;tag=4321
Max-Forwards: 61
i: esc01.kj32h4k2jh34
CSeq: 98765 INVITE
Via: SIP/2.0/UDP host9.example.net;branch=z9hG4bKw3e4r
C: application/sdp
Contact:
  <sip:cal%6Cee@host9.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: {{CL}}

{SDP}"
    );
    let m = valid(&wire(&text));
    let Some(Uri::Sip(ruri)) = m.request_uri() else { panic!() };
    assert_eq!(ruri.user_unescaped().unwrap().as_ref(), b"sips:ann@example.org");
    assert_eq!(ruri.host, Host::Domain("example.net"));
    let to = m.to().unwrap();
    assert_eq!(to.uri.as_sip().unwrap().user_unescaped().unwrap().as_ref(), b"mark");
    let from = m.from().unwrap();
    assert_eq!(from.uri.as_sip().unwrap().user_unescaped().unwrap().as_ref(), b"With some spaces");
    let c = m.contacts().next().unwrap().unwrap();
    let u = *c.addr().unwrap().uri.as_sip().unwrap();
    assert_eq!(u.user_unescaped().unwrap().as_ref(), b"callee");
    let names: Vec<_> = u.params.iter().map(|p| unescape(p.name.as_bytes()).into_owned()).collect();
    assert_eq!(names, vec![b"lr".to_vec(), b"name".to_vec()]);
    assert_eq!(unescape(u.params.value("n%61me").unwrap().as_bytes()).as_ref(), b"value%41");
    assert_eq!(m.call_id().unwrap(), "esc01.kj32h4k2jh34");
    assert!(m.content_type().unwrap().unwrap().is("application", "sdp"));
}

/// §3.1.1.4 (escnull): `%00` in user parts.
#[test]
fn escaped_nulls_in_uris() {
    let raw = wire(
        "REGISTER sip:example.org SIP/2.0
To: sip:zero-%00-zero@example.org
From: sip:zero-%00-zero@example.org;tag=5521abc
Max-Forwards: 70
Call-ID: escnull.asd88kj3nmq
CSeq: 77 REGISTER
Via: SIP/2.0/UDP host3.example.org;branch=z9hG4bKzz1
Contact: <sip:%00@host3.example.org>
Contact: <sip:%00%00@host3.example.org>
L:0

",
    );
    let m = valid(&raw);
    let to = m.to().unwrap();
    assert_eq!(to.uri.as_sip().unwrap().user_unescaped().unwrap().as_ref(), b"zero-\0-zero");
    let users: Vec<Vec<u8>> = m
        .contacts()
        .map(|c| c.unwrap().addr().unwrap().uri.as_sip().unwrap().user_unescaped().unwrap().into_owned())
        .collect();
    assert_eq!(users, vec![vec![0], vec![0, 0]]);
    assert_eq!(m.content_length().unwrap(), Some(0));
}

/// §3.1.1.5 (esc02): `%` where it is not an escape: in a method token, a quoted display name,
/// a Via branch, and a header name that only looks like Contact.
#[test]
fn percent_that_is_not_an_escape() {
    let raw = wire(
        "RE%47IST%45R sip:registrar.example.org SIP/2.0
To: \"%Z%45\" <sip:thing@example.org>
From: \"%Z%45\" <sip:thing@example.org>;tag=ab12cd34
Call-ID: esc02.qwe8823kjd
Via: SIP/2.0/TCP host.example.org;branch=z9hG4bK101%fzwq
CSeq: 4567 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias-a@host1.example.org>
C%6Fntact: <sip:alias-b@host2.example.org>
Contact: <sip:alias-c@host3.example.org>
l: 0

",
    );
    let m = valid(&raw);
    assert_eq!(m.method(), Some(&Method::Extension("RE%47IST%45R".into())));
    assert_eq!(m.to().unwrap().display_name_unquoted().unwrap(), "%Z%45");
    assert_eq!(m.via().unwrap().branch, Some("z9hG4bK101%fzwq"));
    assert_eq!(m.contacts().count(), 2);
    assert_eq!(m.header_named("C%6Fntact").count(), 1);
}

/// §3.1.1.6 (lwsdisp): no white space between a token display name and `<`.
#[test]
fn no_space_between_display_name_and_bracket() {
    let raw = wire(
        "OPTIONS sip:someone@example.org SIP/2.0
To: sip:someone@example.org
From: caller<sip:caller@example.org>;tag=88123
Max-Forwards: 70
Call-ID: lwsdisp.9f8e7d@tight.example.org
CSeq: 61 OPTIONS
Via: SIP/2.0/UDP tight.example.org;branch=z9hG4bKtt
l: 0

",
    );
    let m = valid(&raw);
    let from = m.from().unwrap();
    assert_eq!(from.display_name, Some("caller"));
    assert_eq!(from.tag(), Some("88123"));
}

/// §3.1.1.7 (longreq): long values everywhere and 34 Via headers in every spelling.
#[test]
fn long_values_in_header_fields() {
    let long = |unit: &str, n: usize| unit.repeat(n);
    let mut vias = String::new();
    let spellings = ["Via", "v", "V", "ViA", "VIa", "VIA", "via", "viA", "vIa", "vIA", "V ", "v  ", "Via  "];
    for (i, n) in (1..=33).rev().enumerate() {
        vias.push_str(&format!("{}: SIP/2.0/TCP relay{n}.example.org\n", spellings[i % spellings.len()]));
    }
    let branch = format!("z9hG4bK{}end", long("long", 60));
    let text = format!(
        "INVITE sip:someone@example.org SIP/2.0
To: \"An {ext} name\" <sip:someone@example.org:6000;{pname}=short;oddvalue={pval};{pflag}>
F: sip:{caller}@example.net;tag={tag};{hname}={hval};{hflag}
Call-ID: longreq.{callid}
CSeq: 3882340 INVITE
Unknown-{uname}-Name:unknown-{uval};unknown-{uname}-parameter = {uval}
{vias}Via: SIP/2.0/TCP origin.example.org;received=192.0.2.5;branch={branch}
Max-Forwards: 70
Contact: <sip:{caller}@host5.example.net>
Content-Type: application/sdp
l: {{CL}}

{SDP}",
        ext = long("extreme ", 20),
        pname = long("name", 40),
        pval = long("value", 40),
        pflag = long("flag", 40),
        caller = long("lengthycallername", 8),
        tag = long("1298", 50),
        hname = long("param", 30),
        hval = long("val", 50),
        hflag = long("valueless", 20),
        callid = long("really", 30),
        uname = long("Long", 25),
        uval = long("long", 25),
    );
    let m = valid(&wire(&text));
    let vias: Vec<_> = m.vias().map(Result::unwrap).collect();
    assert_eq!(vias.len(), 34);
    assert_eq!(vias[0].host, Host::Domain("relay33.example.org"));
    assert_eq!(vias[32].host, Host::Domain("relay1.example.org"));
    assert_eq!(vias[33].branch, Some(branch.as_str()));
    assert_eq!(vias[33].received, Some("192.0.2.5".parse().unwrap()));
    let to = m.to().unwrap();
    let u = to.uri.as_sip().unwrap();
    assert_eq!(u.port, Some(6000));
    assert!(u.params.contains(&long("flag", 40)));
    assert_eq!(m.from().unwrap().tag(), Some(long("1298", 50).as_str()));
    assert_eq!(m.from().unwrap().params.value(&long("param", 30)), Some(long("val", 50).as_str()));
    assert_eq!(m.call_id().unwrap().len(), "longreq.".len() + 180);
}

/// §3.1.1.8 (dblreq): a datagram carrying a second message after the first one's Content-Length;
/// the extra octets are not part of the message (RFC 3261 §18.3).
#[test]
fn extra_trailing_octets_in_a_datagram() {
    let first = "REGISTER sip:example.org SIP/2.0
To: sip:j.doe@example.org
From: sip:j.doe@example.org;tag=88a7s
Max-Forwards: 8
I: dblreq.9ah3nd0s
Contact: sip:j.doe@host.example.org
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKrr234
Content-Length: 0

";
    let second = format!(
        "INVITE sip:j.doe@example.org SIP/2.0
t: sip:j.doe@example.org
From: sip:caller@example.net;tag=334
Max-Forwards: 8
Call-ID: dblreq.second
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKss
Content-Type: application/sdp
Content-Length: {{CL}}

{SDP}"
    );
    let raw = wire(&format!("{first}{second}"));
    let m = parse_datagram(raw.clone()).unwrap();
    m.validate().unwrap();
    assert_eq!(m.method(), Some(&Method::Register));
    assert_eq!(m.to_bytes(), wire(first));
    assert_eq!(m.body(), b"");
    assert_eq!(m.contacts().count(), 1);
}

/// §3.1.1.9 (semiuri): `;` inside the user part, and a folded list on Accept.
#[test]
fn semicolon_in_the_user_part() {
    let raw = wire(
        "OPTIONS sip:user;par=u%40example.net@example.org SIP/2.0
To: sip:j_user@example.org
From: sip:caller@example.com;tag=99321
Max-Forwards: 3
Call-ID: semiuri.0x7df
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
      multipart/mixed, multipart/signed,
      message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKsemi
l: 0

",
    );
    let m = valid(&raw);
    let Some(Uri::Sip(ruri)) = m.request_uri() else { panic!() };
    assert_eq!(ruri.user, Some("user;par=u%40example.net"));
    assert_eq!(ruri.user_unescaped().unwrap().as_ref(), b"user;par=u@example.net");
    assert!(ruri.params.is_empty());
    assert_eq!(ruri.host, Host::Domain("example.org"));
    let accept: Vec<_> = m.header_values(HeaderName::Accept).collect();
    assert_eq!(accept.len(), 6);
    assert_eq!(accept[5], b"message/sipfrag");
}

/// §3.1.1.10 (transports): known and unknown transports in Via.
#[test]
fn varied_and_unknown_transports() {
    let raw = wire(
        "OPTIONS sip:user@example.org SIP/2.0
To: sip:user@example.org
From: <sip:caller@example.com>;tag=323
Max-Forwards: 70
Call-ID: transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.org;branch=z9hG4bKu
Via: SIP/2.0/SCTP t2.example.org;branch=z9hG4bKs
Via: SIP/2.0/TLS t3.example.org;branch=z9hG4bKt
Via: SIP/2.0/UNKNOWN t4.example.org;branch=z9hG4bKx
Via: SIP/2.0/TCP t5.example.org;branch=z9hG4bKc
l: 0

",
    );
    let m = valid(&raw);
    let transports: Vec<_> = m.vias().map(|v| v.unwrap().transport).collect();
    assert_eq!(transports, vec!["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
}

/// §3.1.1.11 (mpart01): a multipart body with a binary part; the body is opaque bytes.
#[test]
fn multipart_body_with_binary_part() {
    let head = "MESSAGE sip:kumiko@example.org SIP/2.0\r\nTo: <sip:kumiko@example.org>\r\nFrom: <sip:akira@example.net>;tag=a6c\r\nCall-ID: mpart01.kbb3\r\nCSeq: 1 MESSAGE\r\nVia: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKmp\r\nMax-Forwards: 70\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed;boundary=5e2a0b77c1\r\n";
    let mut body = b"--5e2a0b77c1\r\nContent-Type: text/plain\r\n\r\nhello\r\n--5e2a0b77c1\r\nContent-Type: application/octet-stream\r\n\r\n".to_vec();
    body.extend_from_slice(&[0x00, 0xff, 0xfe, 0x0d, 0x0a, 0x0d, 0x0a, 0x80, 0x7f]);
    body.extend_from_slice(b"\r\n--5e2a0b77c1--\r\n");
    let mut raw = format!("{head}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
    raw.extend_from_slice(&body);
    let m = valid(&Bytes::from(raw));
    assert_eq!(m.body(), body.as_slice());
    let ct = m.content_type().unwrap().unwrap();
    assert!(ct.is("multipart", "mixed"));
    assert_eq!(ct.params.value("boundary"), Some("5e2a0b77c1"));
}

/// §3.1.1.12 (unreason): a reason phrase of symbols and UTF-8.
#[test]
fn unusual_reason_phrase() {
    let raw = wire(
        "SIP/2.0 200 = 3**2 * 11**2 и девятьсот девяносто девять
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bKunr
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:user@example.com;tag=11141343
To: sip:user@example.edu;tag=2229
Content-Length: {CL}
Content-Type: application/sdp
Contact: <sip:user@192.0.2.198>

v=0
",
    );
    let m = valid(&raw);
    assert_eq!(m.status(), StatusCode::new(200));
    assert_eq!(std::str::from_utf8(m.reason_phrase().unwrap()).unwrap(), "= 3**2 * 11**2 и девятьсот девяносто девять");
}

/// §3.1.1.13 (noreason): an empty reason phrase after the code's space.
#[test]
fn empty_reason_phrase() {
    let raw = wire(
        "SIP/2.0 100 \nVia: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bKnr\nCall-ID: noreason.asndj203insdf99223ndf\nCSeq: 35 INVITE\nFrom: <sip:user@example.com>;tag=39ansfi3\nTo: <sip:user@example.edu>;tag=902jndnke3\nContent-Length: 0\nContact: <sip:user@host105.example.com>\n\n",
    );
    let m = valid(&raw);
    assert_eq!(m.status(), Some(StatusCode::TRYING));
    assert_eq!(m.reason_phrase(), Some(&b""[..]));
}

/// LF-only line ends throughout (RFC 3261 §7 tolerance), and a message whose only Contact is `*`.
#[test]
fn lf_only_line_ends_and_wildcard_contact() {
    let raw = Bytes::from_static(
        b"REGISTER sip:example.org SIP/2.0\nVia: SIP/2.0/TCP h.example.org;branch=z9hG4bKlf\nTo: <sip:u@example.org>\nFrom: <sip:u@example.org>;tag=lf1\nCall-ID: lf-only\nCSeq: 2 REGISTER\nContact: *\nExpires: 0\nContent-Length: 0\n\n",
    );
    let m = valid(&raw);
    assert_eq!(m.contacts().next().unwrap().unwrap(), Contact::Wildcard);
    assert_eq!(m.expires().unwrap(), Some(0));
}

/// RFC 4475 §3.3.1 (unkscm), §3.3.2 (novelsc): schemes nobody here knows still parse, opaquely.
#[test]
fn unknown_uri_schemes() {
    let raw = wire(
        "OPTIONS nobodyknowsthisscheme:totallyopaquecontent SIP/2.0
To: isbn:2983792873
From: <http://www.example.com>;tag=3234233
Call-ID: unkscm.2987a@example.com
CSeq: 1 OPTIONS
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKunk
Max-Forwards: 70
l: 0

",
    );
    let m = valid(&raw);
    let Some(Uri::Other(o)) = m.request_uri() else { panic!() };
    assert_eq!((o.scheme, o.rest), ("nobodyknowsthisscheme", "totallyopaquecontent"));
    assert!(matches!(m.to().unwrap().uri, Uri::Other(u) if u.scheme == "isbn"));
    assert!(matches!(m.from().unwrap().uri, Uri::Other(u) if u.rest == "//www.example.com"));
}
