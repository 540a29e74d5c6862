//! MESSAGE (RFC 3428) outside dialogs, with IMDN delivery-notification requests (RFC 5438)
//! carried in CPIM (RFC 3862).
//!
//! With IMDN asked for, the body goes out as `message/cpim`:
//!
//! ```text
//! From: <sip:3000@pbx.example.com>
//! To: <sip:3001@pbx.example.com>
//! NS: imdn <urn:ietf:params:imdn>
//! imdn.Message-ID: 0f3e7a1c55b2d94e
//! DateTime: 2026-05-01T10:20:30Z
//! imdn.Disposition-Notification: positive-delivery, negative-delivery
//!
//! Content-Type: text/plain;charset=UTF-8
//! Content-Length: 5
//!
//! Hello
//! ```
//!
//! That is the subset of RFC 5438 a sender needs (§6.2: Message-ID, DateTime and the
//! Disposition-Notification header in the CPIM header block, the `imdn` name space). Received
//! CPIM messages are unwrapped and their IMDN headers reported; sending the delivery
//! notifications themselves (`message/imdn+xml`) is left to the application.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::message::Message;
use crate::method::Method;

use super::auth::Creds;
use super::request::ReqSpec;
use super::{Account, ClientAuth, Failure, MsgId, Owner, UaError, UaEvent, UserAgent};
use crate::uri::Uri;

/// The CPIM and IMDN headers of a received `message/cpim` (RFC 3862, RFC 5438).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpimInfo {
    pub from: Option<String>,
    pub to: Option<String>,
    pub datetime: Option<String>,
    /// `imdn.Message-ID`.
    pub message_id: Option<String>,
    /// `imdn.Disposition-Notification` (`positive-delivery, display`...).
    pub disposition_notification: Option<String>,
}

/// `YYYY-MM-DDThh:mm:ssZ` (RFC 3339) for a time since the Unix epoch.
pub(super) fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Wraps a body in CPIM with the IMDN headers that request delivery notifications.
pub(super) fn cpim_with_imdn(
    from: &str,
    to: &str,
    message_id: &str,
    at: SystemTime,
    content_type: &str,
    body: &[u8],
) -> Bytes {
    let mut out = format!(
        "From: <{from}>\r\nTo: <{to}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {message_id}\r\n\
         DateTime: {}\r\nimdn.Disposition-Notification: positive-delivery, negative-delivery\r\n\r\n\
         Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        rfc3339(at),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// Splits `text` at its first empty line: (header lines, rest).
fn split_block(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let crlf = memchr::memmem::find(b, b"\r\n\r\n").map(|i| (i, i + 4));
    let lf = memchr::memmem::find(b, b"\n\n").map(|i| (i, i + 2));
    let (end, rest) = match (crlf, lf) {
        (Some(a), Some(b)) => a.min(b),
        (a, b) => a.or(b)?,
    };
    Some((&b[..end], &b[rest..]))
}

/// Unwraps a `message/cpim` body: its CPIM headers, and the inner content type and body.
pub(super) fn parse_cpim(body: &Bytes) -> Option<(CpimInfo, String, Bytes)> {
    let (cpim_head, rest) = split_block(body)?;
    let mut info = CpimInfo::default();
    for line in String::from_utf8_lossy(cpim_head).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        let value = value.trim().to_owned();
        match name.trim().to_ascii_lowercase().as_str() {
            "from" => info.from = Some(value),
            "to" => info.to = Some(value),
            "datetime" => info.datetime = Some(value),
            "imdn.message-id" => info.message_id = Some(value),
            "imdn.disposition-notification" => info.disposition_notification = Some(value),
            _ => {}
        }
    }
    let (mime_head, inner) = match split_block(rest) {
        Some(x) => x,
        None => (rest, &rest[rest.len()..]),
    };
    let mut content_type = "text/plain".to_owned();
    let mut length = None;
    for line in String::from_utf8_lossy(mime_head).lines() {
        let Some((name, value)) = line.split_once(':') else { continue };
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => content_type = value.trim().to_owned(),
            "content-length" => length = value.trim().parse::<usize>().ok(),
            _ => {}
        }
    }
    let start = body.len() - inner.len();
    let end = length.map_or(body.len(), |l| (start + l).min(body.len()));
    Some((info, content_type, body.slice(start..end)))
}

impl UserAgent {
    /// Sends a MESSAGE from `account` to `to`. With `imdn` (the wall-clock time of sending),
    /// the body is wrapped in CPIM with the RFC 5438 headers asking for delivery
    /// notifications. Event: [`UaEvent::MessageResult`].
    pub fn message(
        &mut self,
        now: Instant,
        account: &Account,
        to: &str,
        content_type: &str,
        body: Bytes,
        imdn: Option<SystemTime>,
    ) -> Result<MsgId, UaError> {
        Uri::parse(to).map_err(|e| UaError::InvalidArgument { what: "recipient URI", why: e.to_string() })?;
        let id = MsgId(self.new_id());
        let (content_type, body) = match imdn {
            Some(at) => {
                let message_id = self.rng.hex(16);
                ("message/cpim".to_owned(), cpim_with_imdn(&account.aor(), to, &message_id, at, content_type, &body))
            }
            None => (content_type.to_owned(), body),
        };
        let spec = ReqSpec {
            method: Method::Message,
            uri: to.to_owned(),
            cseq: self.rng.cseq(),
            routes: Vec::new(),
            from: format!("{};tag={}", account.name_addr(), self.rng.tag()),
            to: format!("<{to}>"),
            call_id: self.rng.call_id(),
            contact: None,
            headers: Vec::new(),
            body: Some((content_type, body)),
            transport: account.transport,
        };
        let creds = Creds { user: account.auth_user().to_owned(), password: account.password.clone() };
        self.start_client(now, Owner::Msg(id), spec, account.next_hop, ClientAuth::new(Some(creds)))?;
        self.pump(now);
        Ok(id)
    }

    pub(super) fn msg_on_response(&mut self, id: MsgId, resp: &Message) {
        let status = resp.status().map_or(0, |s| s.as_u16());
        let result = match status {
            0..=199 => return,
            200..=299 => Ok(status),
            _ => Err(Failure::from_response(resp)),
        };
        self.events.push_back(UaEvent::MessageResult { msg: id, result });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_777_630_830)), "2026-05-01T10:20:30Z");
    }

    #[test]
    fn cpim_round_trip() {
        let at = UNIX_EPOCH + Duration::from_secs(1_777_630_830);
        let b = cpim_with_imdn("sip:a@h", "sip:b@h", "m1", at, "text/plain;charset=UTF-8", b"Hello");
        let text = std::str::from_utf8(&b).unwrap();
        assert!(text.contains("imdn.Disposition-Notification: positive-delivery, negative-delivery\r\n"));
        assert!(text.contains("DateTime: 2026-05-01T10:20:30Z\r\n"));
        let (info, ct, body) = parse_cpim(&b).unwrap();
        assert_eq!(info.message_id.as_deref(), Some("m1"));
        assert_eq!(info.from.as_deref(), Some("<sip:a@h>"));
        assert_eq!(ct, "text/plain;charset=UTF-8");
        assert_eq!(&body[..], b"Hello");
        assert!(parse_cpim(&Bytes::from_static(b"no blank line")).is_none());
        let (_, ct, body) = parse_cpim(&Bytes::from_static(b"From: x\n\nContent-Type: text/html\n\n<b>x</b>")).unwrap();
        assert_eq!((ct.as_str(), &body[..]), ("text/html", &b"<b>x</b>"[..]));
    }
}
