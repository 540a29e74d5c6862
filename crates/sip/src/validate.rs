//! [`Message::validate`]: every typed header checked at once, and the rules that span headers.

use crate::error::{Fault, ParseError};
use crate::message::Message;
use crate::name::HeaderName;
use crate::typed::addr::Contact;
use crate::typed::simple;

impl Message {
    /// Checks the whole message: the headers every request and response must have (Via, From,
    /// To, Call-ID, CSeq; RFC 3261 §8.1.1), the grammar of every header this crate types (each
    /// Via, Contact, Route, Record-Route, the authentication headers, Max-Forwards,
    /// Content-Type, Expires, Retry-After, Date, Warning, Contact `expires`), a request's CSeq
    /// method against its method, and `*` standing alone in Contact.
    ///
    /// Parsing a message checks only its framing and start line, so that a proxy or the key
    /// extraction pays for no more than it reads; a user agent calls this before acting on a
    /// new request and answers a failure with [`crate::bad_request_for`].
    pub fn validate(&self) -> Result<(), ParseError> {
        let mut vias = 0;
        for via in self.vias() {
            via?;
            vias += 1;
        }
        if vias == 0 {
            return Err(ParseError::MissingHeader { header: HeaderName::Via });
        }
        self.from()?;
        self.to()?;
        self.call_id()?;
        let cseq = self.cseq()?;
        if let Some(method) = self.method() {
            if *method != cseq.method {
                return Err(ParseError::CSeqMethodMismatch { method: method.clone(), cseq: cseq.method });
            }
        }
        self.max_forwards()?;
        self.content_type()?;
        self.content_length()?;
        self.expires()?;
        self.retry_after()?;

        let mut contacts = 0;
        let mut wildcard = false;
        for contact in self.contacts() {
            contacts += 1;
            match contact? {
                Contact::Wildcard => wildcard = true,
                Contact::Addr(a) => {
                    a.expires().map_err(|e| ParseError::Header {
                        header: HeaderName::Contact,
                        at: self.offset_of(a.params.as_str().as_bytes()),
                        fault: match e {
                            ParseError::Value { fault, .. } => fault,
                            _ => Fault::Overflow,
                        },
                    })?;
                }
            }
        }
        if wildcard && contacts > 1 {
            return Err(ParseError::Header {
                header: HeaderName::Contact,
                at: self.header(HeaderName::Contact).map_or(0, |h| h.offset()),
                fault: Fault::WildcardNotAlone,
            });
        }
        for r in self.routes().chain(self.record_routes()) {
            r?;
        }
        for c in self.www_authenticate().chain(self.proxy_authenticate()) {
            c?;
        }
        for c in self.authorization().chain(self.proxy_authorization()) {
            c?;
        }
        for h in self.header_all(HeaderName::Date) {
            let text = std::str::from_utf8(h.value()).unwrap_or("");
            simple::check_date(text).map_err(|b| ParseError::Header {
                header: HeaderName::Date,
                at: h.offset() + b.at,
                fault: b.fault,
            })?;
        }
        for h in self.header_all(HeaderName::Warning) {
            for (a, b) in crate::lex::ListIter::new(h.value()) {
                let text = std::str::from_utf8(&h.value()[a..b]).unwrap_or("");
                simple::parse_warning_code(text).map_err(|e| ParseError::Header {
                    header: HeaderName::Warning,
                    at: h.offset() + a + e.at,
                    fault: e.fault,
                })?;
            }
        }
        Ok(())
    }
}
