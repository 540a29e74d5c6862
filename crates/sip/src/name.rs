//! Header names: the canonical spelling, the compact forms (RFC 3261 §7.3.3 and the extensions
//! that define one), and case-insensitive recognition without allocation.

use std::fmt;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident = $text:literal $(, compact $c:literal)? $(, list $list:ident)? ;)*) => {
        /// A header name. Known headers are recognised whatever their case and in their compact
        /// form; anything else is [`HeaderName::Other`], whose spelling stays in the message.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// A header this crate has no name for; compare it by its text.
            Other,
        }

        impl HeaderName {
            /// Every known name, in declaration order (not [`HeaderName::Other`]).
            pub const ALL: &'static [HeaderName] = &[$(HeaderName::$variant,)*];

            /// The canonical spelling (`Call-ID`, `WWW-Authenticate`); `""` for `Other`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(HeaderName::$variant => $text,)*
                    HeaderName::Other => "",
                }
            }

            /// The compact form, if the header has one (`v` for Via).
            pub const fn compact(self) -> Option<u8> {
                match self {
                    $($(HeaderName::$variant => Some($c),)?)*
                    _ => None,
                }
            }

            /// Whether the grammar allows several comma-separated values on one line
            /// (`Via: a, b`), so that [`crate::Message::header_values`] splits them.
            pub const fn is_list(self) -> bool {
                match self {
                    $($(HeaderName::$variant => { let _ = stringify!($list); true })?)*
                    _ => false,
                }
            }
        }
    };
}

header_names! {
    Via = "Via", compact b'v', list yes;
    From = "From", compact b'f';
    To = "To", compact b't';
    CallId = "Call-ID", compact b'i';
    CSeq = "CSeq";
    Contact = "Contact", compact b'm', list yes;
    MaxForwards = "Max-Forwards";
    ContentLength = "Content-Length", compact b'l';
    ContentType = "Content-Type", compact b'c';
    Route = "Route", list yes;
    RecordRoute = "Record-Route", list yes;
    Expires = "Expires";
    MinExpires = "Min-Expires";
    WwwAuthenticate = "WWW-Authenticate";
    ProxyAuthenticate = "Proxy-Authenticate";
    Authorization = "Authorization";
    ProxyAuthorization = "Proxy-Authorization";
    AuthenticationInfo = "Authentication-Info";
    Supported = "Supported", compact b'k', list yes;
    Require = "Require", list yes;
    ProxyRequire = "Proxy-Require", list yes;
    Unsupported = "Unsupported", list yes;
    Allow = "Allow", list yes;
    Accept = "Accept", list yes;
    AcceptEncoding = "Accept-Encoding", list yes;
    AcceptLanguage = "Accept-Language", list yes;
    Subject = "Subject", compact b's';
    ContentEncoding = "Content-Encoding", compact b'e', list yes;
    ContentLanguage = "Content-Language", list yes;
    ContentDisposition = "Content-Disposition";
    Event = "Event", compact b'o';
    AllowEvents = "Allow-Events", compact b'u', list yes;
    SubscriptionState = "Subscription-State";
    ReferTo = "Refer-To", compact b'r';
    ReferredBy = "Referred-By", compact b'b';
    SessionExpires = "Session-Expires", compact b'x';
    MinSe = "Min-SE";
    AcceptContact = "Accept-Contact", compact b'a', list yes;
    RejectContact = "Reject-Contact", compact b'j', list yes;
    RequestDisposition = "Request-Disposition", compact b'd', list yes;
    Identity = "Identity", compact b'y';
    IdentityInfo = "Identity-Info", compact b'n';
    UserAgent = "User-Agent";
    Server = "Server";
    Date = "Date";
    RetryAfter = "Retry-After";
    Warning = "Warning", list yes;
    Timestamp = "Timestamp";
    Organization = "Organization";
    Priority = "Priority";
    InReplyTo = "In-Reply-To", list yes;
    ReplyTo = "Reply-To";
    ErrorInfo = "Error-Info", list yes;
    AlertInfo = "Alert-Info", list yes;
    CallInfo = "Call-Info", list yes;
    MimeVersion = "MIME-Version";
    Path = "Path", list yes;
    ServiceRoute = "Service-Route", list yes;
    RAck = "RAck";
    RSeq = "RSeq";
    Replaces = "Replaces";
    Reason = "Reason", list yes;
    Privacy = "Privacy";
    PAssertedIdentity = "P-Asserted-Identity", list yes;
    PPreferredIdentity = "P-Preferred-Identity", list yes;
}

/// Longest known name ("P-Preferred-Identity" is 20).
const MAX_LEN: usize = 24;

/// Compact forms, indexed by the lower-case letter.
static COMPACT: [HeaderName; 26] = {
    let mut t = [HeaderName::Other; 26];
    let mut i = 0;
    while i < HeaderName::ALL.len() {
        if let Some(c) = HeaderName::ALL[i].compact() {
            t[(c - b'a') as usize] = HeaderName::ALL[i];
        }
        i += 1;
    }
    t
};

impl HeaderName {
    /// Recognises a header name, in any case, full or compact; `Other` when unknown.
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        if name.len() == 1 {
            let c = name[0].to_ascii_lowercase();
            return if c.is_ascii_lowercase() { COMPACT[(c - b'a') as usize] } else { HeaderName::Other };
        }
        if name.len() > MAX_LEN {
            return HeaderName::Other;
        }
        // Nearly everyone writes the canonical spelling: match it as it is first.
        match name {
            b"Via" => return HeaderName::Via,
            b"From" => return HeaderName::From,
            b"To" => return HeaderName::To,
            b"Call-ID" => return HeaderName::CallId,
            b"CSeq" => return HeaderName::CSeq,
            b"Contact" => return HeaderName::Contact,
            b"Max-Forwards" => return HeaderName::MaxForwards,
            b"Content-Length" => return HeaderName::ContentLength,
            b"Content-Type" => return HeaderName::ContentType,
            b"Route" => return HeaderName::Route,
            b"Record-Route" => return HeaderName::RecordRoute,
            b"Expires" => return HeaderName::Expires,
            b"Min-Expires" => return HeaderName::MinExpires,
            b"WWW-Authenticate" => return HeaderName::WwwAuthenticate,
            b"Proxy-Authenticate" => return HeaderName::ProxyAuthenticate,
            b"Authorization" => return HeaderName::Authorization,
            b"Proxy-Authorization" => return HeaderName::ProxyAuthorization,
            b"Authentication-Info" => return HeaderName::AuthenticationInfo,
            b"Supported" => return HeaderName::Supported,
            b"Require" => return HeaderName::Require,
            b"Proxy-Require" => return HeaderName::ProxyRequire,
            b"Unsupported" => return HeaderName::Unsupported,
            b"Allow" => return HeaderName::Allow,
            b"Accept" => return HeaderName::Accept,
            b"Accept-Encoding" => return HeaderName::AcceptEncoding,
            b"Accept-Language" => return HeaderName::AcceptLanguage,
            b"Subject" => return HeaderName::Subject,
            b"Content-Encoding" => return HeaderName::ContentEncoding,
            b"Content-Language" => return HeaderName::ContentLanguage,
            b"Content-Disposition" => return HeaderName::ContentDisposition,
            b"Event" => return HeaderName::Event,
            b"Allow-Events" => return HeaderName::AllowEvents,
            b"Subscription-State" => return HeaderName::SubscriptionState,
            b"Refer-To" => return HeaderName::ReferTo,
            b"Referred-By" => return HeaderName::ReferredBy,
            b"Session-Expires" => return HeaderName::SessionExpires,
            b"Min-SE" => return HeaderName::MinSe,
            b"Accept-Contact" => return HeaderName::AcceptContact,
            b"Reject-Contact" => return HeaderName::RejectContact,
            b"Request-Disposition" => return HeaderName::RequestDisposition,
            b"Identity" => return HeaderName::Identity,
            b"Identity-Info" => return HeaderName::IdentityInfo,
            b"User-Agent" => return HeaderName::UserAgent,
            b"Server" => return HeaderName::Server,
            b"Date" => return HeaderName::Date,
            b"Retry-After" => return HeaderName::RetryAfter,
            b"Warning" => return HeaderName::Warning,
            b"Timestamp" => return HeaderName::Timestamp,
            b"Organization" => return HeaderName::Organization,
            b"Priority" => return HeaderName::Priority,
            b"In-Reply-To" => return HeaderName::InReplyTo,
            b"Reply-To" => return HeaderName::ReplyTo,
            b"Error-Info" => return HeaderName::ErrorInfo,
            b"Alert-Info" => return HeaderName::AlertInfo,
            b"Call-Info" => return HeaderName::CallInfo,
            b"MIME-Version" => return HeaderName::MimeVersion,
            b"Path" => return HeaderName::Path,
            b"Service-Route" => return HeaderName::ServiceRoute,
            b"RAck" => return HeaderName::RAck,
            b"RSeq" => return HeaderName::RSeq,
            b"Replaces" => return HeaderName::Replaces,
            b"Reason" => return HeaderName::Reason,
            b"Privacy" => return HeaderName::Privacy,
            b"P-Asserted-Identity" => return HeaderName::PAssertedIdentity,
            b"P-Preferred-Identity" => return HeaderName::PPreferredIdentity,
            _ => {}
        }
        // Lower-case into a stack buffer, then one `match`, which the compiler turns into a
        // switch on the length and a few comparisons. Generated from the list above; the tests
        // check every name in every case.
        let mut buf = [0u8; MAX_LEN];
        for (d, c) in buf.iter_mut().zip(name) {
            *d = c.to_ascii_lowercase();
        }
        match &buf[..name.len()] {
            b"via" => HeaderName::Via,
            b"from" => HeaderName::From,
            b"to" => HeaderName::To,
            b"call-id" => HeaderName::CallId,
            b"cseq" => HeaderName::CSeq,
            b"contact" => HeaderName::Contact,
            b"max-forwards" => HeaderName::MaxForwards,
            b"content-length" => HeaderName::ContentLength,
            b"content-type" => HeaderName::ContentType,
            b"route" => HeaderName::Route,
            b"record-route" => HeaderName::RecordRoute,
            b"expires" => HeaderName::Expires,
            b"min-expires" => HeaderName::MinExpires,
            b"www-authenticate" => HeaderName::WwwAuthenticate,
            b"proxy-authenticate" => HeaderName::ProxyAuthenticate,
            b"authorization" => HeaderName::Authorization,
            b"proxy-authorization" => HeaderName::ProxyAuthorization,
            b"authentication-info" => HeaderName::AuthenticationInfo,
            b"supported" => HeaderName::Supported,
            b"require" => HeaderName::Require,
            b"proxy-require" => HeaderName::ProxyRequire,
            b"unsupported" => HeaderName::Unsupported,
            b"allow" => HeaderName::Allow,
            b"accept" => HeaderName::Accept,
            b"accept-encoding" => HeaderName::AcceptEncoding,
            b"accept-language" => HeaderName::AcceptLanguage,
            b"subject" => HeaderName::Subject,
            b"content-encoding" => HeaderName::ContentEncoding,
            b"content-language" => HeaderName::ContentLanguage,
            b"content-disposition" => HeaderName::ContentDisposition,
            b"event" => HeaderName::Event,
            b"allow-events" => HeaderName::AllowEvents,
            b"subscription-state" => HeaderName::SubscriptionState,
            b"refer-to" => HeaderName::ReferTo,
            b"referred-by" => HeaderName::ReferredBy,
            b"session-expires" => HeaderName::SessionExpires,
            b"min-se" => HeaderName::MinSe,
            b"accept-contact" => HeaderName::AcceptContact,
            b"reject-contact" => HeaderName::RejectContact,
            b"request-disposition" => HeaderName::RequestDisposition,
            b"identity" => HeaderName::Identity,
            b"identity-info" => HeaderName::IdentityInfo,
            b"user-agent" => HeaderName::UserAgent,
            b"server" => HeaderName::Server,
            b"date" => HeaderName::Date,
            b"retry-after" => HeaderName::RetryAfter,
            b"warning" => HeaderName::Warning,
            b"timestamp" => HeaderName::Timestamp,
            b"organization" => HeaderName::Organization,
            b"priority" => HeaderName::Priority,
            b"in-reply-to" => HeaderName::InReplyTo,
            b"reply-to" => HeaderName::ReplyTo,
            b"error-info" => HeaderName::ErrorInfo,
            b"alert-info" => HeaderName::AlertInfo,
            b"call-info" => HeaderName::CallInfo,
            b"mime-version" => HeaderName::MimeVersion,
            b"path" => HeaderName::Path,
            b"service-route" => HeaderName::ServiceRoute,
            b"rack" => HeaderName::RAck,
            b"rseq" => HeaderName::RSeq,
            b"replaces" => HeaderName::Replaces,
            b"reason" => HeaderName::Reason,
            b"privacy" => HeaderName::Privacy,
            b"p-asserted-identity" => HeaderName::PAssertedIdentity,
            b"p-preferred-identity" => HeaderName::PPreferredIdentity,
            _ => HeaderName::Other,
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderName::Other => f.write_str("extension"),
            known => f.write_str(known.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_name_is_recognised_in_any_case() {
        for &h in HeaderName::ALL {
            assert_eq!(HeaderName::from_bytes(h.as_str().as_bytes()), h);
            assert_eq!(HeaderName::from_bytes(h.as_str().to_uppercase().as_bytes()), h);
            assert_eq!(HeaderName::from_bytes(h.as_str().to_lowercase().as_bytes()), h);
        }
    }

    #[test]
    fn compact_forms_map_to_the_canonical_header() {
        let table: &[(&[u8], HeaderName)] = &[
            (b"i", HeaderName::CallId),
            (b"m", HeaderName::Contact),
            (b"F", HeaderName::From),
            (b"t", HeaderName::To),
            (b"V", HeaderName::Via),
            (b"l", HeaderName::ContentLength),
            (b"c", HeaderName::ContentType),
            (b"k", HeaderName::Supported),
            (b"s", HeaderName::Subject),
            (b"e", HeaderName::ContentEncoding),
            (b"o", HeaderName::Event),
            (b"r", HeaderName::ReferTo),
            (b"b", HeaderName::ReferredBy),
            (b"x", HeaderName::SessionExpires),
            (b"u", HeaderName::AllowEvents),
            (b"a", HeaderName::AcceptContact),
            (b"j", HeaderName::RejectContact),
            (b"d", HeaderName::RequestDisposition),
            (b"y", HeaderName::Identity),
            (b"n", HeaderName::IdentityInfo),
            (b"z", HeaderName::Other),
            (b"1", HeaderName::Other),
        ];
        for (name, want) in table {
            assert_eq!(HeaderName::from_bytes(name), *want, "{:?}", name);
        }
    }

    #[test]
    fn unknown_and_near_miss_names_are_other() {
        for name in [&b"C%6Fntact"[..], b"Contacts", b"Vi", b"", b"X-Call-ID", &[0xff; 30]] {
            assert_eq!(HeaderName::from_bytes(name), HeaderName::Other);
        }
    }
}
