//! Long and deeply nested input: every path must stay linear (a quadratic one would take
//! minutes on these sizes) and answer with a value or an error, never a panic.

use bytes::Bytes;

use crate::{keys, parse_datagram, FramerConfig, HeaderName, StreamFramer};

fn request_with(extra: &str) -> Bytes {
    Bytes::from(format!(
        "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\nFrom: <sip:b@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n{extra}Content-Length: 0\r\n\r\n"
    ))
}

#[test]
fn two_hundred_thousand_contacts_on_one_line() {
    let contacts = vec!["<sip:u@h.example.com>;q=0.5"; 200_000].join(",");
    let m = parse_datagram(request_with(&format!("Contact: {contacts}\r\n"))).unwrap();
    assert_eq!(m.contacts().filter(|c| c.is_ok()).count(), 200_000);
    m.validate().unwrap();
}

#[test]
fn quotes_brackets_and_commas_without_end() {
    for filler in ["\"", "<", ",", "\\\"", "(", ";", "%"] {
        let value = filler.repeat(300_000);
        let raw = request_with(&format!(
            "Contact: {value}\r\nRoute: {value}\r\nRetry-After: 1 {value}\r\nWWW-Authenticate: Digest a={value}\r\n"
        ));
        let m = parse_datagram(raw.clone()).unwrap();
        assert!(m.validate().is_err());
        let _ = m.header_values(HeaderName::Contact).count();
        let _ = crate::bad_request_for(&raw, &m.validate().unwrap_err());
    }
}

#[test]
fn deeply_nested_comment() {
    let nested = format!("{}{}", "(".repeat(500_000), ")".repeat(500_000));
    let m = parse_datagram(request_with(&format!("Retry-After: 5 {nested}\r\n"))).unwrap();
    assert_eq!(m.retry_after().unwrap(), Some(5));
}

#[test]
fn a_hundred_thousand_header_lines_and_folds() {
    let lines = "X-A: 1\r\n \r\n\t2\r\n".repeat(100_000);
    let raw = request_with(&lines);
    let m = parse_datagram(raw.clone()).unwrap();
    assert_eq!(m.header_named("x-a").count(), 100_000);
    assert_eq!(keys::extract(&raw).unwrap().call_id, "c");
}

#[test]
fn a_head_trickling_in_byte_by_byte() {
    let raw = request_with(&"X-Filler: 0123456789abcdef\r\n".repeat(2_000));
    let mut framer = StreamFramer::new(FramerConfig { max_message_size: raw.len() });
    let mut got = 0;
    for b in raw.iter() {
        framer.handle_bytes(&[*b]);
        while framer.poll_message().unwrap().is_some() {
            got += 1;
        }
    }
    assert_eq!(got, 1);
}
