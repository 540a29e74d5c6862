//! Headers with a short grammar: CSeq, Call-ID, the numeric ones, Content-Type, Retry-After,
//! Date and Warning.

use crate::error::{Fault, ParseError};
use crate::lex::{self, Bad};
use crate::method::Method;
use crate::params::{self, Params};

/// `CSeq: 4711 INVITE`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        parse_cseq(s).map_err(|e| ParseError::Value { at: e.at, fault: e.fault })
    }
}

/// `Content-Type: application/sdp;charset=utf-8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaType<'a> {
    pub mtype: &'a str,
    pub subtype: &'a str,
    pub params: Params<'a>,
}

impl MediaType<'_> {
    /// Case-insensitive comparison with `type/subtype`.
    pub fn is(&self, mtype: &str, subtype: &str) -> bool {
        self.mtype.eq_ignore_ascii_case(mtype) && self.subtype.eq_ignore_ascii_case(subtype)
    }
}

fn bad(at: usize) -> impl Fn(Fault) -> Bad {
    move |fault| Bad::new(at, fault)
}

pub(crate) fn parse_cseq(s: &str) -> Result<CSeq, Bad> {
    let b = s.as_bytes();
    let d0 = lex::skip_lws(b, 0);
    let d1 = lex::skip(b, d0, lex::DIGIT);
    let seq = lex::parse_decimal(&b[d0..d1], u64::from(u32::MAX)).map_err(bad(d0))?;
    let m0 = lex::skip_lws(b, d1);
    if m0 == d1 {
        return Err(Bad::new(d1, Fault::UnexpectedChar));
    }
    let m1 = lex::skip(b, m0, lex::TOKEN);
    let method = Method::from_bytes(&b[m0..m1]).ok_or(Bad::new(m0, Fault::InvalidMethod))?;
    if lex::skip_lws(b, m1) != b.len() {
        return Err(Bad::new(m1, Fault::TrailingData));
    }
    Ok(CSeq { seq: seq as u32, method })
}

/// `callid = word [ "@" word ]`.
pub(crate) fn parse_call_id(s: &str) -> Result<&str, Bad> {
    let b = s.as_bytes();
    let w1 = lex::skip(b, 0, lex::WORD);
    if w1 == 0 {
        return Err(Bad::new(0, Fault::Empty));
    }
    let mut end = w1;
    if b.get(w1) == Some(&b'@') {
        end = lex::skip(b, w1 + 1, lex::WORD);
        if end == w1 + 1 {
            return Err(Bad::new(end, Fault::Empty));
        }
    }
    if end != b.len() {
        return Err(Bad::new(end, Fault::UnexpectedChar));
    }
    Ok(s)
}

/// `1*DIGIT` no larger than `max`, the whole value.
pub(crate) fn parse_number(s: &str, max: u64) -> Result<u64, Bad> {
    lex::parse_decimal(s.as_bytes(), max).map_err(bad(0))
}

/// `m-type SLASH m-subtype *(SEMI m-parameter)`.
pub(crate) fn parse_media_type(s: &str) -> Result<MediaType<'_>, Bad> {
    let b = s.as_bytes();
    let t1 = lex::skip(b, 0, lex::TOKEN);
    let slash = lex::skip_lws(b, t1);
    if t1 == 0 || b.get(slash) != Some(&b'/') {
        return Err(Bad::new(slash, Fault::InvalidMediaType));
    }
    let s0 = lex::skip_lws(b, slash + 1);
    let s1 = lex::skip(b, s0, lex::TOKEN);
    if s1 == s0 {
        return Err(Bad::new(s0, Fault::InvalidMediaType));
    }
    Ok(MediaType {
        mtype: lex::sub(s, 0, t1)?,
        subtype: lex::sub(s, s0, s1)?,
        params: params::parse_header_params(s, s1)?,
    })
}

/// `delta-seconds [ comment ] *( SEMI retry-param )`: the seconds.
pub(crate) fn parse_retry_after(s: &str) -> Result<u32, Bad> {
    let b = s.as_bytes();
    let d1 = lex::skip(b, 0, lex::DIGIT);
    let secs = lex::parse_decimal(&b[..d1], u64::from(u32::MAX)).map_err(bad(0))?;
    let mut i = lex::skip_lws(b, d1);
    if b.get(i) == Some(&b'(') {
        // A comment may nest; a depth counter, not recursion, keeps hostile input cheap.
        let mut depth = 0usize;
        while i < b.len() {
            match b[i] {
                b'(' => depth += 1,
                b')' => depth -= 1,
                b'\\' => i += 1,
                _ => {}
            }
            i += 1;
            if depth == 0 {
                break;
            }
        }
        if depth != 0 {
            return Err(Bad::new(d1, Fault::UnexpectedEnd));
        }
    }
    params::parse_header_params(s, i)?;
    Ok(secs as u32)
}

/// `rfc1123-date`: `Sat, 13 Nov 2010 23:29:00 GMT`; only GMT is allowed (RFC 3261 §20.17).
pub(crate) fn check_date(s: &str) -> Result<(), Bad> {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    let ok = b.len() == 29
        && DAYS.iter().any(|d| d.as_bytes() == &b[0..3])
        && &b[3..5] == b", "
        && digits(5..7)
        && b[7] == b' '
        && MONTHS.iter().any(|m| m.as_bytes() == &b[8..11])
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
        && &b[25..] == b" GMT";
    if ok {
        Ok(())
    } else {
        Err(Bad::new(0, Fault::InvalidDate))
    }
}

/// `warn-code SP warn-agent SP warn-text`: the three-digit code.
pub(crate) fn parse_warning_code(s: &str) -> Result<u16, Bad> {
    let b = s.as_bytes();
    let d1 = lex::skip(b, 0, lex::DIGIT);
    if d1 != 3 || b.get(3) != Some(&b' ') {
        return Err(Bad::new(0, Fault::InvalidStatus));
    }
    Ok(lex::parse_decimal(&b[..3], 999).map_err(bad(0))? as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cseq() {
        assert_eq!(parse_cseq("0009\r\n  INVITE").unwrap(), CSeq { seq: 9, method: Method::Invite });
        let ext = parse_cseq("139122385 !interesting-Method0123456789_*+`.%indeed'~").unwrap();
        assert_eq!(ext.method.as_str(), "!interesting-Method0123456789_*+`.%indeed'~");
        assert_eq!(parse_cseq("36893488147419103232 REGISTER").unwrap_err().fault, Fault::Overflow);
        assert_eq!(parse_cseq("1INVITE").unwrap_err().fault, Fault::UnexpectedChar);
        assert_eq!(parse_cseq("1 INVITE x").unwrap_err().fault, Fault::TrailingData);
        assert_eq!(parse_cseq("INVITE").unwrap_err().fault, Fault::NotANumber);
        assert_eq!(parse_cseq("1 ").unwrap_err().fault, Fault::InvalidMethod);
    }

    #[test]
    fn call_id() {
        assert!(parse_call_id("intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{").is_ok());
        assert!(parse_call_id("a@b@c").is_err());
        assert!(parse_call_id("a b").is_err());
        assert!(parse_call_id("a@").is_err());
        assert!(parse_call_id("").is_err());
    }

    #[test]
    fn media_type_and_numbers() {
        let m = parse_media_type("multipart/mixed;boundary=7a9cbec02ceef655").unwrap();
        assert!(m.is("Multipart", "MIXED"));
        assert_eq!(m.params.value("boundary"), Some("7a9cbec02ceef655"));
        assert!(parse_media_type("application").is_err());
        assert_eq!(parse_number("0150", u64::MAX).unwrap(), 150);
        assert_eq!(parse_number("-999", u64::MAX).unwrap_err().fault, Fault::NotANumber);
    }

    #[test]
    fn retry_after_date_warning() {
        assert_eq!(parse_retry_after("18000;duration=3600").unwrap(), 18000);
        assert_eq!(parse_retry_after("120 (I'm in a (long) meeting)").unwrap(), 120);
        assert_eq!(parse_retry_after("949302838503028349304023988").unwrap_err().fault, Fault::Overflow);
        assert!(parse_retry_after("120 (open").is_err());
        assert!(check_date("Sat, 13 Nov 2010 23:29:00 GMT").is_ok());
        assert!(check_date("Fri, 01 Jan 2010 16:00:00 EST").is_err());
        assert!(check_date("Fri, 01 Jan 2010 16:00:00 GMT ").is_err());
        assert_eq!(parse_warning_code("370 devnull \"Choose a bigger pipe\"").unwrap(), 370);
        assert!(parse_warning_code("1812 overture \"In Progress\"").is_err());
    }
}
