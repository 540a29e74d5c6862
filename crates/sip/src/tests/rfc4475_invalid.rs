//! RFC 4475 §3.1.2: syntactically invalid messages that must be refused with a structured
//! error, and answered with a 400 naming the problem when they can be.

use bytes::Bytes;

use super::{invalid, wire};
use crate::{bad_request_for, parse_datagram, Fault, Framed, HeaderName, Method, ParseError, StatusCode, StreamFramer};

const SDP: &str =
    "v=0\no=bob 53655765 2353687637 IN IP4 192.0.2.40\ns=-\nc=IN IP4 192.0.2.40\nt=0 0\nm=audio 3456 RTP/AVP 0\n";

/// A valid request whose `{HEADERS}` line is replaced by the case's headers.
fn request(start: &str, headers: &str) -> Bytes {
    wire(&format!(
        "{start}
Max-Forwards: 70
Call-ID: invalid.{n}@example.org
{headers}
Content-Type: application/sdp
Content-Length: {{CL}}

{SDP}",
        n = start.len()
    ))
}

fn assert_header_fault(e: &ParseError, header: HeaderName, fault: Fault) {
    assert!(
        matches!(e, ParseError::Header { header: h, fault: f, .. } if *h == header && *f == fault),
        "expected {header} / {fault:?}, got {e:?}"
    );
}

/// The 400 for `raw`, parsed, checked to answer the request's transaction.
fn answered(raw: &Bytes, err: &ParseError) -> crate::Message {
    let resp = bad_request_for(raw, err).unwrap_or_else(|| panic!("no 400 for {err}"));
    let resp = parse_datagram(resp).unwrap();
    assert_eq!(resp.status(), Some(StatusCode::BAD_REQUEST));
    assert_eq!(resp.reason_phrase().unwrap(), err.reason_phrase().as_bytes());
    assert!(resp.via().is_ok());
    resp
}

/// §3.1.2.1 (badinv01): empty parameters and list elements in Via and Contact.
#[test]
fn extraneous_header_field_separators() {
    let raw = request(
        "INVITE sip:someone@example.org SIP/2.0",
        "To: sip:j.doe@example.org\nFrom: sip:caller@example.net;tag=77123\nCSeq: 8 INVITE\nVia: SIP/2.0/UDP 192.0.2.15;;,;,,\nContact: \"Jo\" <sip:jo@example.org>;;;;",
    );
    let e = invalid(&raw);
    assert_header_fault(&e, HeaderName::Via, Fault::EmptyParam);
    // The top Via cannot be read, so there is no one to answer.
    assert!(bad_request_for(&raw, &e).is_none());
    let m = parse_datagram(raw).unwrap();
    assert!(m.contacts().next().unwrap().is_err());
}

/// §3.1.2.2 (clerr): Content-Length larger than the datagram's body; on a stream the framer
/// waits for the rest instead.
#[test]
fn content_length_larger_than_message() {
    let raw = wire(&format!(
        "INVITE sip:someone@example.org SIP/2.0
Max-Forwards: 80
To: sip:j.doe@example.org
From: sip:caller@example.net;tag=93942
Call-ID: clerr.0ha0isnd@example.org
CSeq: 8 INVITE
Via: SIP/2.0/UDP host5.example.org;branch=z9hG4bK-39234
Content-Type: application/sdp
Content-Length: 9999

{SDP}"
    ));
    let e = invalid(&raw);
    assert_eq!(e, ParseError::BodyTruncated { declared: 9999, available: SDP.len() + 6 });
    answered(&raw, &e);
    let mut framer = StreamFramer::default();
    framer.handle_bytes(&raw);
    assert!(framer.poll_message().unwrap().is_none());
}

/// §3.1.2.3 (ncl): negative Content-Length; fatal on a stream.
#[test]
fn negative_content_length() {
    let raw = request(
        "INVITE sip:someone@example.org SIP/2.0",
        "To: sip:j.doe@example.org\nFrom: sip:caller@example.net;tag=32394\nCSeq: 0 INVITE\nVia: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw\nContent-Length: -999",
    );
    let e = invalid(&raw);
    assert_header_fault(&e, HeaderName::ContentLength, Fault::NotANumber);
    answered(&raw, &e);
    let mut framer = StreamFramer::default();
    framer.handle_bytes(&raw);
    assert!(framer.poll_message().is_err());
}

/// §3.1.2.4 (scalar02): request scalars that overflow: CSeq, Max-Forwards, Expires, Contact
/// expires. Each accessor reports its own; the whole message is answered with 400 for CSeq.
#[test]
fn request_scalar_fields_with_overflow_values() {
    let raw = wire(&format!(
        "REGISTER sip:example.org SIP/2.0
Via: SIP/2.0/TCP host129.example.org;branch=z9hG4bK342sdfoi3
To: <sip:someone@example.org>
From: <sip:someone@example.org>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 1{zeros}
Contact: <sip:someone@host129.example.org>;expires=280297596632815
Content-Length: 0

",
        zeros = "0".repeat(100)
    ));
    let e = invalid(&raw);
    assert_header_fault(&e, HeaderName::CSeq, Fault::Overflow);
    let m = parse_datagram(raw.clone()).unwrap();
    assert_header_fault(&m.max_forwards().unwrap_err(), HeaderName::MaxForwards, Fault::Overflow);
    assert_header_fault(&m.expires().unwrap_err(), HeaderName::Expires, Fault::Overflow);
    assert!(m.contacts().next().unwrap().unwrap().addr().unwrap().expires().is_err());
    let resp = answered(&raw, &e);
    assert_eq!(resp.header(HeaderName::CSeq).unwrap().value(), b"36893488147419103232 REGISTER");
    assert!(resp.to().unwrap().tag().is_some());
}

/// §3.1.2.5 (scalarlg): response scalars that overflow, and a four-digit warning code.
#[test]
fn response_scalar_fields_with_overflow_values() {
    let raw = wire(
        "SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP host129.example.org;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:someone@example.org>
From: <sip:other@example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture \"In Progress\"
Content-Length: 0

",
    );
    let e = invalid(&raw);
    assert_header_fault(&e, HeaderName::CSeq, Fault::Overflow);
    let m = parse_datagram(raw.clone()).unwrap();
    assert_header_fault(&m.retry_after().unwrap_err(), HeaderName::RetryAfter, Fault::Overflow);
    // Responses are never answered.
    assert!(bad_request_for(&raw, &e).is_none());
    let fixed = Bytes::from(
        String::from_utf8_lossy(&raw)
            .replace("9292394834772304023312", "2")
            .replace("949302838503028349304023988", "60"),
    );
    assert_header_fault(&invalid(&fixed), HeaderName::Warning, Fault::InvalidStatus);
}

/// §3.1.2.6 (quotbal): a display name whose quote never closes.
#[test]
fn unterminated_quoted_string_in_display_name() {
    let raw = request(
        "INVITE sip:someone@example.org SIP/2.0",
        "To: \"Mr. J. Doe <sip:j.doe@example.org>\nFrom: sip:caller@example.net;tag=93334\nCSeq: 8 INVITE\nVia: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234",
    );
    assert_header_fault(&invalid(&raw), HeaderName::To, Fault::UnterminatedQuote);
}

/// §3.1.2.7 (ltgtruri): a Request-URI in angle brackets.
#[test]
fn angle_brackets_around_request_uri() {
    let raw = request(
        "INVITE <sip:someone@example.org> SIP/2.0",
        "To: sip:someone@example.org\nFrom: sip:caller@example.net;tag=39291\nCSeq: 1 INVITE\nVia: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKlt",
    );
    let e = invalid(&raw);
    assert_eq!(e, ParseError::RequestUri { at: 7, fault: Fault::InvalidScheme });
    let resp = answered(&raw, &e);
    assert_eq!(resp.reason_phrase().unwrap(), b"Invalid Request-URI: invalid URI scheme");
}

/// §3.1.2.8 (lwsruri): white space inside the Request-URI.
#[test]
fn embedded_white_space_in_request_uri() {
    let raw = request(
        "INVITE sip:someone@example.org; lr SIP/2.0",
        "To: sip:someone@example.org;tag=3xfe-9921883-z9f\nFrom: sip:caller@example.net;tag=231413434\nCSeq: 2130706432 INVITE\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395",
    );
    assert!(matches!(invalid(&raw), ParseError::StartLine { fault: Fault::ExtraWhitespace, .. }));
}

/// §3.1.2.9 (lwsstart): two spaces between start-line elements.
#[test]
fn multiple_spaces_in_request_line() {
    let raw = request(
        "INVITE  sip:someone@example.org  SIP/2.0",
        "To: sip:someone@example.org\nFrom: sip:caller@example.net;tag=8814\nCSeq: 1893884 INVITE\nVia: SIP/2.0/UDP host1.example.org;branch=z9hG4bKkdjuw3923",
    );
    assert_eq!(invalid(&raw), ParseError::StartLine { at: 7, fault: Fault::ExtraWhitespace });
}

/// §3.1.2.10 (trws): spaces after the SIP-Version.
#[test]
fn trailing_spaces_after_version() {
    let raw = request(
        "OPTIONS sip:remote-target@example.org SIP/2.0  ",
        "To: <sip:remote-target@example.org>\nFrom: <sip:local-resource@example.org>;tag=329429089\nCSeq: 238923 OPTIONS\nVia: SIP/2.0/TCP host1.example.org;branch=z9hG4bK299342093",
    );
    assert!(matches!(invalid(&raw), ParseError::StartLine { fault: Fault::ExtraWhitespace, .. }));
}

/// §3.1.2.11 (escruri): escaped headers in the Request-URI.
#[test]
fn escaped_headers_in_request_uri() {
    let raw = request(
        "INVITE sip:someone@example.org?Route=%3Csip:example.org%3E SIP/2.0",
        "To: sip:someone@example.org\nFrom: sip:caller@example.net;tag=341518\nCSeq: 149209342 INVITE\nVia: SIP/2.0/UDP host-of-the-hour.example.org;branch=z9hG4bKkdjuw",
    );
    let e = invalid(&raw);
    assert_eq!(e, ParseError::RequestUri { at: 30, fault: Fault::HeadersNotAllowed });
    answered(&raw, &e);
}

/// §3.1.2.12 (baddate): a Date in a zone other than GMT.
#[test]
fn invalid_time_zone_in_date() {
    let raw = request(
        "INVITE sip:someone@example.org SIP/2.0",
        "To: sip:someone@example.org\nFrom: sip:caller@example.net;tag=2234923\nCSeq: 1392934 INVITE\nVia: SIP/2.0/UDP host.example.org;branch=z9hG4bKkdjuw\nDate: Fri, 01 Jan 2010 16:00:00 EST",
    );
    let e = invalid(&raw);
    assert_header_fault(&e, HeaderName::Date, Fault::InvalidDate);
    answered(&raw, &e);
}

/// §3.1.2.13 (regbadct): a Contact URI with `?headers` not enclosed in `<>`.
#[test]
fn name_addr_uri_not_enclosed() {
    let raw = wire(
        "REGISTER sip:example.org SIP/2.0
To: sip:someone@example.org
From: sip:someone@example.org;tag=998332
Max-Forwards: 70
Call-ID: regbadct.k345asrl3fdbv@192.0.2.1
CSeq: 1 REGISTER
Via: SIP/2.0/UDP 192.0.2.133:5060;branch=z9hG4bKkdjuw
Contact: sip:someone@example.org?Route=%3Csip:sip.example.org%3E
l: 0

",
    );
    assert_header_fault(&invalid(&raw), HeaderName::Contact, Fault::AngleBracketsRequired);
}

/// §3.1.2.14 (badaspec): white space between the brackets and the URI.
#[test]
fn spaces_within_addr_spec() {
    let raw = wire(
        "OPTIONS sip:someone@example.org SIP/2.0
Via: SIP/2.0/UDP host4.example.org:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: \"Bell, Alexander\" <sip:a.g.bell@example.org>;tag=433423
To: \"Watson, Thomas\" < sip:t.watson@example.org >
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

",
    );
    assert_header_fault(&invalid(&raw), HeaderName::To, Fault::SpaceInAngleBrackets);
}

/// §3.1.2.15 (baddn): a display name with a comma, unquoted.
#[test]
fn non_token_characters_in_display_name() {
    let raw = wire(
        "OPTIONS sip:t.watson@example.org SIP/2.0
Via:     SIP/2.0/UDP c.example.org:5060;branch=z9hG4bKkdjuw
Max-Forwards:      70
From:    Bell, Alexander <sip:a.g.bell@example.org>;tag=43
To:      Watson, Thomas <sip:t.watson@example.org>
Call-ID: baddn.31415@c.example.org
Accept: application/sdp
CSeq:    3923239 OPTIONS
l: 0

",
    );
    let e = invalid(&raw);
    assert_header_fault(&e, HeaderName::From, Fault::InvalidDisplayName);
    let resp = answered(&raw, &e);
    // To cannot be read as a name-addr, so no tag is added to it; it is copied as it came.
    assert_eq!(resp.header(HeaderName::To).unwrap().value(), b"Watson, Thomas <sip:t.watson@example.org>");
}

/// §3.1.2.16 (badvers): SIP/7.0.
#[test]
fn unknown_protocol_version() {
    let raw = wire(
        "OPTIONS sip:t.watson@example.org SIP/7.0
Via:     SIP/7.0/UDP c.example.org;branch=z9hG4bKkdjuw
Max-Forwards:     70
From:    A. Bell <sip:a.g.bell@example.org>;tag=qweoiqpe
To:      T. Watson <sip:t.watson@example.org>
Call-ID: badvers.31417@c.example.org
CSeq:    1 OPTIONS
l: 0

",
    );
    assert_eq!(invalid(&raw), ParseError::Version { at: 33 });
    let m = parse_datagram(Bytes::from(String::from_utf8_lossy(&raw).replacen("SIP/7.0\r\n", "SIP/2.0\r\n", 1)));
    assert_header_fault(&m.unwrap().via().unwrap_err(), HeaderName::Via, Fault::UnsupportedVersion);
}

/// §3.1.2.17 (mismatch01): the CSeq method is not the request's.
#[test]
fn start_line_and_cseq_method_mismatch() {
    let raw = wire(
        "OPTIONS sip:someone@example.org SIP/2.0
To: sip:j.doe@example.org
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch01.dj0234sxdfl3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host.example.org;branch=z9hG4bKkdjuw
l: 0

",
    );
    let e = invalid(&raw);
    assert_eq!(e, ParseError::CSeqMethodMismatch { method: Method::Options, cseq: Method::Invite });
    answered(&raw, &e);
}

/// §3.1.2.18 (mismatch02): an unknown method, and a CSeq naming another one.
#[test]
fn unknown_method_with_cseq_mismatch() {
    let raw = request(
        "NEWMETHOD sip:someone@example.org SIP/2.0",
        "To: sip:j.doe@example.org\nFrom: sip:caller@example.net;tag=34525\nCSeq: 8 INVITE\nContact: <sip:caller@host.example.net>\nVia: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw",
    );
    assert_eq!(
        invalid(&raw),
        ParseError::CSeqMethodMismatch { method: Method::Extension("NEWMETHOD".into()), cseq: Method::Invite }
    );
}

/// §3.1.2.19 (bigcode): a status code far past three digits.
#[test]
fn overlarge_response_code() {
    let raw = wire(
        "SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:user@example.com>;tag=39ansfi3
To: <sip:user@example.edu>;tag=902jndnke3
Content-Length: 0
Contact: <sip:user@host105.example.com>

",
    );
    assert_eq!(invalid(&raw), ParseError::StartLine { at: 8, fault: Fault::InvalidStatus });
    assert!(crate::keys::extract(&raw).is_err());
}

/// §3.3.1 (insuf): a request without the headers every request needs.
#[test]
fn missing_required_headers() {
    let raw = wire("INVITE sip:someone@example.org SIP/2.0\nCSeq: 193942 INVITE\nVia: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf\nContent-Type: application/sdp\nl: 0\n\n");
    assert_eq!(invalid(&raw), ParseError::MissingHeader { header: HeaderName::From });
    assert!(bad_request_for(&raw, &ParseError::MissingHeader { header: HeaderName::From }).is_none());
}

/// A broken message on a stream is framed, reported with its bytes, and the next one still arrives.
#[test]
fn invalid_message_on_a_stream_keeps_the_stream_in_step() {
    let bad = request(
        "INVITE  sip:someone@example.org  SIP/2.0",
        "To: sip:someone@example.org\nFrom: sip:caller@example.net;tag=8814\nCSeq: 1893884 INVITE\nVia: SIP/2.0/UDP host1.example.org;branch=z9hG4bKkdjuw3923",
    );
    let good = request(
        "INVITE sip:someone@example.org SIP/2.0",
        "To: sip:someone@example.org\nFrom: sip:caller@example.net;tag=8815\nCSeq: 1893885 INVITE\nVia: SIP/2.0/UDP host1.example.org;branch=z9hG4bKkdjuw3924",
    );
    let mut framer = StreamFramer::default();
    framer.handle_bytes(&bad);
    framer.handle_bytes(b"\r\n\r\n");
    framer.handle_bytes(&good);
    let Some(Framed::Invalid { raw, error }) = framer.poll_message().unwrap() else { panic!() };
    assert_eq!(raw, bad);
    assert!(bad_request_for(&raw, &error).is_some());
    let Some(Framed::Message(m)) = framer.poll_message().unwrap() else { panic!() };
    assert_eq!(m.to_bytes(), good);
    assert!(framer.poll_message().unwrap().is_none());
}
