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
//! CPIM messages are unwrapped and their IMDN headers reported.
//!
//! Delivery notifications (RFC 5438 §7.2.1.1) go out with [`UserAgent::send_imdn`]: a MESSAGE
//! whose CPIM wraps a `message/imdn+xml` document (`Content-Disposition: notification`) naming
//! the original `imdn.Message-ID`; [`parse_imdn`] reads one that arrives (the recipient's
//! application finds the message it sent by that id). Display and processing notifications
//! are parsed too but only `delivery-notification` is ever sent.

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

/// Why a received `message/cpim` body is refused (answered `400`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpimError {
    /// The inner `Content-Length` is not a decimal number of bytes.
    #[error("CPIM Content-Length '{0}' is not a number")]
    BadLength(String),
    /// The inner `Content-Length` announces more bytes than the body holds.
    #[error("CPIM Content-Length {declared} exceeds the {available} bytes of the inner body")]
    LengthTooLarge { declared: u64, available: usize },
}

/// Unwraps a `message/cpim` body: its CPIM headers, and the inner content type and body.
/// `Ok(None)` when it has no header block at all (no empty line: not CPIM, delivered as is);
/// an error when its inner `Content-Length` is not a number or points past the body (the
/// length comes from the wire: it is compared, never added to an offset).
pub fn parse_cpim(body: &Bytes) -> Result<Option<(CpimInfo, String, Bytes)>, CpimError> {
    let Some((cpim_head, rest)) = split_block(body) else { return Ok(None) };
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
            "content-length" => {
                let v = value.trim();
                // What we quote back (reason, Warning, log) is short and printable.
                let shown =
                    || v.chars().filter(|c| c.is_ascii_graphic() && !matches!(c, '"' | '\\')).take(32).collect();
                length = Some(v.parse::<u64>().map_err(|_| CpimError::BadLength(shown()))?);
            }
            _ => {}
        }
    }
    let start = body.len() - inner.len();
    let end = match length {
        None => body.len(),
        Some(declared) => match usize::try_from(declared) {
            Ok(l) if l <= inner.len() => start + l,
            _ => return Err(CpimError::LengthTooLarge { declared, available: inner.len() }),
        },
    };
    Ok(Some((info, content_type, body.slice(start..end))))
}

/// The status of an RFC 5438 disposition notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImdnStatus {
    /// `delivery-notification`: `delivered`.
    Delivered,
    /// `delivery-notification`: `failed`.
    Failed,
    /// `forbidden` (any notification kind, §7.2.1.1).
    Forbidden,
    /// `error` (any notification kind).
    Error,
    /// `display-notification`: `displayed`.
    Displayed,
    /// `processing-notification`: `processed`, `stored`, ...
    Processed,
}

impl ImdnStatus {
    /// The element name inside `<status>`.
    pub fn element(self) -> &'static str {
        match self {
            ImdnStatus::Delivered => "delivered",
            ImdnStatus::Failed => "failed",
            ImdnStatus::Forbidden => "forbidden",
            ImdnStatus::Error => "error",
            ImdnStatus::Displayed => "displayed",
            ImdnStatus::Processed => "processed",
        }
    }
}

/// A received `message/imdn+xml` document (RFC 5438 §7.2.1.1), the parts that matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdnNotification {
    /// The `imdn.Message-ID` of the message it is about.
    pub message_id: String,
    pub status: ImdnStatus,
    pub recipient_uri: Option<String>,
}

/// A Message-ID we put on the wire: RFC 5438 §6.3 asks for an unguessable token; we accept
/// 1-128 characters of `[A-Za-z0-9._~+-]` (nothing that could break a CPIM header or XML).
fn valid_message_id(id: &str) -> bool {
    (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._~+-".contains(&b))
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'").replace("&amp;", "&")
}

/// The text of the first `<name>...</name>` (a namespace prefix such as `<imdn:name>` is
/// accepted), trimmed and unescaped.
fn element_text(xml: &str, name: &str) -> Option<String> {
    let mut from = 0;
    while let Some(rel) = xml[from..].find('<') {
        let start = from + rel + 1;
        let end = start + xml[start..].find('>')?;
        let tag = xml[start..end].trim_end_matches('/').trim();
        let local = tag.split_whitespace().next().unwrap_or("");
        let local = local.rsplit(':').next().unwrap_or(local);
        if local == name && !tag.starts_with('/') {
            if xml[start..end].ends_with('/') {
                return Some(String::new());
            }
            let close = xml[end + 1..].find("</")?;
            return Some(xml_unescape(xml[end + 1..end + 1 + close].trim()));
        }
        from = end + 1;
    }
    None
}

/// The `message/imdn+xml` delivery notification for `message_id` (RFC 5438 §7.2.1.1).
/// `datetime` is the original message's `DateTime` when known.
pub fn imdn_xml(message_id: &str, datetime: Option<&str>, recipient: &str, status: ImdnStatus) -> String {
    let kind = match status {
        ImdnStatus::Displayed => "display-notification",
        ImdnStatus::Processed => "processing-notification",
        _ => "delivery-notification",
    };
    let mut x =
        String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\r\n<imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\r\n");
    x.push_str(&format!("<message-id>{}</message-id>\r\n", xml_escape(message_id)));
    if let Some(dt) = datetime {
        x.push_str(&format!("<datetime>{}</datetime>\r\n", xml_escape(dt)));
    }
    x.push_str(&format!(
        "<recipient-uri>{0}</recipient-uri>\r\n<original-recipient-uri>{0}</original-recipient-uri>\r\n",
        xml_escape(recipient)
    ));
    x.push_str(&format!("<{kind}>\r\n<status>\r\n<{}/>\r\n</status>\r\n</{kind}>\r\n</imdn>\r\n", status.element()));
    x
}

/// Reads a `message/imdn+xml` document; `None` when it is not one (no `message-id`, or no
/// status we know).
pub fn parse_imdn(body: &[u8]) -> Option<ImdnNotification> {
    let xml = std::str::from_utf8(body).ok()?;
    let message_id = element_text(xml, "message-id").filter(|m| !m.is_empty())?;
    let status_block = {
        let open = xml.find("status")?;
        &xml[open..]
    };
    let status = [
        ("delivered", ImdnStatus::Delivered),
        ("failed", ImdnStatus::Failed),
        ("forbidden", ImdnStatus::Forbidden),
        ("error", ImdnStatus::Error),
        ("displayed", ImdnStatus::Displayed),
        ("processed", ImdnStatus::Processed),
        ("stored", ImdnStatus::Processed),
    ]
    .into_iter()
    .find(|(name, _)| element_text(status_block, name).is_some())
    .map(|(_, s)| s)?;
    Some(ImdnNotification { message_id, status, recipient_uri: element_text(xml, "recipient-uri") })
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
        match imdn {
            Some(at) => {
                let message_id = self.rng.hex(16);
                self.message_imdn(now, account, to, content_type, body, at, &message_id)
            }
            None => self.send_message(now, account, to, content_type.to_owned(), body),
        }
    }

    /// [`UserAgent::message`] with IMDN, under the caller's `imdn.Message-ID` (so that it can
    /// match the notifications that come back, [`parse_imdn`]).
    #[allow(clippy::too_many_arguments)]
    pub fn message_imdn(
        &mut self,
        now: Instant,
        account: &Account,
        to: &str,
        content_type: &str,
        body: Bytes,
        at: SystemTime,
        message_id: &str,
    ) -> Result<MsgId, UaError> {
        if !valid_message_id(message_id) {
            return Err(UaError::InvalidArgument { what: "imdn.Message-ID", why: format!("{message_id:?}") });
        }
        Uri::parse(to).map_err(|e| UaError::InvalidArgument { what: "recipient URI", why: e.to_string() })?;
        let body = cpim_with_imdn(&account.aor(), to, message_id, at, content_type, &body);
        self.send_message(now, account, to, "message/cpim".to_owned(), body)
    }

    /// Sends an RFC 5438 delivery notification to `to` (the original sender) about the message
    /// `original_id` (its `imdn.Message-ID`; `original_datetime` its `DateTime`, when known):
    /// CPIM (From us, To the sender, a fresh `imdn.Message-ID`) around `message/imdn+xml` with
    /// `Content-Disposition: notification`. Event: [`UaEvent::MessageResult`].
    #[allow(clippy::too_many_arguments)]
    pub fn send_imdn(
        &mut self,
        now: Instant,
        account: &Account,
        to: &str,
        original_id: &str,
        original_datetime: Option<&str>,
        status: ImdnStatus,
        at: SystemTime,
    ) -> Result<MsgId, UaError> {
        Uri::parse(to).map_err(|e| UaError::InvalidArgument { what: "recipient URI", why: e.to_string() })?;
        if original_id.is_empty() || original_id.contains(['\r', '\n']) {
            return Err(UaError::InvalidArgument { what: "original imdn.Message-ID", why: format!("{original_id:?}") });
        }
        let xml = imdn_xml(original_id, original_datetime, &account.aor(), status);
        let body = format!(
            "From: <{from}>\r\nTo: <{to}>\r\nNS: imdn <urn:ietf:params:imdn>\r\nimdn.Message-ID: {id}\r\n\
             DateTime: {dt}\r\n\r\nContent-Type: message/imdn+xml\r\nContent-Disposition: notification\r\n\
             Content-Length: {len}\r\n\r\n{xml}",
            from = account.aor(),
            id = self.rng.hex(16),
            dt = rfc3339(at),
            len = xml.len(),
        );
        self.send_message(now, account, to, "message/cpim".to_owned(), Bytes::from(body))
    }

    fn send_message(
        &mut self,
        now: Instant,
        account: &Account,
        to: &str,
        content_type: String,
        body: Bytes,
    ) -> Result<MsgId, UaError> {
        Uri::parse(to).map_err(|e| UaError::InvalidArgument { what: "recipient URI", why: e.to_string() })?;
        let id = MsgId(self.new_id());
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
        let creds = Creds::of(account);
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
        let (info, ct, body) = parse_cpim(&b).unwrap().unwrap();
        assert_eq!(info.message_id.as_deref(), Some("m1"));
        assert_eq!(info.from.as_deref(), Some("<sip:a@h>"));
        assert_eq!(ct, "text/plain;charset=UTF-8");
        assert_eq!(&body[..], b"Hello");
        assert_eq!(parse_cpim(&Bytes::from_static(b"no blank line")), Ok(None));
        let (_, ct, body) =
            parse_cpim(&Bytes::from_static(b"From: x\n\nContent-Type: text/html\n\n<b>x</b>")).unwrap().unwrap();
        assert_eq!((ct.as_str(), &body[..]), ("text/html", &b"<b>x</b>"[..]));
    }

    /// Issue 14 item 1: the inner Content-Length comes from the wire. `start + l` overflowed
    /// (a panic in debug builds; in release a wrapped end before the start, and a panic in
    /// `Bytes::slice`), which killed the SIP driver.
    #[test]
    fn cpim_lengths_from_the_wire_are_bounded() {
        let cpim = |len: &str| {
            Bytes::from(format!(
                "From: <sip:a@h>\r\n\r\nContent-Type: text/plain\r\nContent-Length: {len}\r\n\r\nHello"
            ))
        };
        assert_eq!(
            parse_cpim(&cpim("18446744073709551615")),
            Err(CpimError::LengthTooLarge { declared: u64::MAX, available: 5 })
        );
        assert_eq!(
            parse_cpim(&cpim("18446744073709551611")),
            Err(CpimError::LengthTooLarge { declared: u64::MAX - 4, available: 5 })
        );
        assert_eq!(parse_cpim(&cpim("6")), Err(CpimError::LengthTooLarge { declared: 6, available: 5 }));
        assert_eq!(
            parse_cpim(&cpim("99999999999999999999999")),
            Err(CpimError::BadLength("99999999999999999999999".into()))
        );
        assert_eq!(parse_cpim(&cpim("-1")), Err(CpimError::BadLength("-1".into())));
        assert_eq!(&parse_cpim(&cpim("5")).unwrap().unwrap().2[..], b"Hello");
        assert_eq!(&parse_cpim(&cpim("3")).unwrap().unwrap().2[..], b"Hel");
        assert_eq!(&parse_cpim(&cpim("0")).unwrap().unwrap().2[..], b"");
        // No inner blank line: the length is checked against nothing left.
        let headless = Bytes::from_static(b"From: x\r\n\r\nContent-Length: 1");
        assert_eq!(parse_cpim(&headless), Err(CpimError::LengthTooLarge { declared: 1, available: 0 }));
    }

    /// RFC 5438 §7.2.1.1's example document, as a peer would send it.
    const RFC5438_DELIVERED: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
        <imdn xmlns=\"urn:ietf:params:xml:ns:imdn\">\n\
          <message-id>34jk324j</message-id>\n\
          <datetime>2008-04-04T12:16:49-05:00</datetime>\n\
          <recipient-uri>im:bob@example.com</recipient-uri>\n\
          <original-recipient-uri>im:bob@example.com</original-recipient-uri>\n\
          <delivery-notification>\n\
            <status>\n\
              <delivered/>\n\
            </status>\n\
          </delivery-notification>\n\
        </imdn>\n";

    #[test]
    fn imdn_documents_parse() {
        let n = parse_imdn(RFC5438_DELIVERED.as_bytes()).unwrap();
        assert_eq!(n.message_id, "34jk324j");
        assert_eq!(n.status, ImdnStatus::Delivered);
        assert_eq!(n.recipient_uri.as_deref(), Some("im:bob@example.com"));
        let forbidden = RFC5438_DELIVERED.replace("<delivered/>", "<forbidden/>");
        assert_eq!(parse_imdn(forbidden.as_bytes()).unwrap().status, ImdnStatus::Forbidden);
        let failed = RFC5438_DELIVERED.replace("<delivered/>", "<failed/>");
        assert_eq!(parse_imdn(failed.as_bytes()).unwrap().status, ImdnStatus::Failed);
        let prefixed = "<i:imdn xmlns:i=\"urn:ietf:params:xml:ns:imdn\"><i:message-id>a&amp;b</i:message-id>\
                        <i:display-notification><i:status><i:displayed/></i:status></i:display-notification></i:imdn>";
        let n = parse_imdn(prefixed.as_bytes()).unwrap();
        assert_eq!((n.message_id.as_str(), n.status), ("a&b", ImdnStatus::Displayed));
        assert!(parse_imdn(
            b"<imdn><delivery-notification><status><delivered/></status></delivery-notification></imdn>"
        )
        .is_none());
        assert!(parse_imdn(RFC5438_DELIVERED.replace("<delivered/>", "<unknown/>").as_bytes()).is_none());
        assert!(parse_imdn(b"not xml at all").is_none());
        assert!(parse_imdn(&[0xff, 0xfe]).is_none());
    }

    #[test]
    fn imdn_documents_round_trip_and_escape() {
        let x = imdn_xml("m<1>", Some("2026-05-01T10:20:30Z"), "sip:b@h", ImdnStatus::Delivered);
        assert!(x.contains("<message-id>m&lt;1&gt;</message-id>"), "{x}");
        assert!(x.contains("<delivery-notification>") && x.contains("<delivered/>"), "{x}");
        let n = parse_imdn(x.as_bytes()).unwrap();
        assert_eq!((n.message_id.as_str(), n.status), ("m<1>", ImdnStatus::Delivered));
        for s in [ImdnStatus::Failed, ImdnStatus::Forbidden, ImdnStatus::Error] {
            let x = imdn_xml("id", None, "sip:b@h", s);
            assert!(!x.contains("<datetime>"));
            assert_eq!(parse_imdn(x.as_bytes()).unwrap().status, s);
        }
    }

    #[test]
    fn message_ids_on_the_wire_are_checked() {
        assert!(valid_message_id("0f3e7a1c55b2d94e"));
        assert!(valid_message_id("4b1c2d3e-aaaa-bbbb-cccc-0123456789ab"));
        assert!(!valid_message_id(""));
        assert!(!valid_message_id("a\r\nDateTime: x"));
        assert!(!valid_message_id("a b"));
        assert!(!valid_message_id(&"a".repeat(129)));
    }
}
