//! SIP dialogs (RFC 3261 §12) as plain state: identity, route set, remote target and CSeq
//! numbers, built from the message that creates the dialog and consulted for every request
//! inside it.
//!
//! A [`Dialog`] does no I/O and keeps no timers; the user agent ([`crate::ua`]) owns one per
//! call or subscription and asks it for the Request-URI and Route headers of each in-dialog
//! request ([`Dialog::route`]), the next local CSeq ([`Dialog::next_local_seq`]) and whether a
//! request from the peer is in order ([`Dialog::check_remote_seq`]).
//!
//! ```
//! use bytes::Bytes;
//! use callgate_sip::dialog::Dialog;
//! use callgate_sip::parse_datagram;
//!
//! let invite = parse_datagram(Bytes::from_static(
//!     b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n\
//!       Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
//!       From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
//!       To: Bob <sip:bob@biloxi.example.com>\r\n\
//!       Call-ID: a84b4c76e66710\r\n\
//!       CSeq: 314159 INVITE\r\n\
//!       Contact: <sip:alice@pc33.atlanta.example.com>\r\n\
//!       Content-Length: 0\r\n\r\n")).unwrap();
//! let ok = parse_datagram(Bytes::from_static(
//!     b"SIP/2.0 200 OK\r\n\
//!       Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bKnashds8\r\n\
//!       Record-Route: <sip:p2.example.com;lr>, <sip:p1.example.com;lr>\r\n\
//!       From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n\
//!       To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n\
//!       Call-ID: a84b4c76e66710\r\n\
//!       CSeq: 314159 INVITE\r\n\
//!       Contact: <sip:bob@192.0.2.4>\r\n\
//!       Content-Length: 0\r\n\r\n")).unwrap();
//! let mut d = Dialog::new_uac(&invite, &ok).unwrap();
//! let r = d.route();
//! assert_eq!(r.request_uri, "sip:bob@192.0.2.4");
//! // The UAC reverses the Record-Route set (§12.1.2).
//! assert_eq!(r.routes, ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]);
//! assert_eq!(d.next_local_seq(), 314160);
//! ```

use thiserror::Error;

use crate::error::ParseError;
use crate::message::Message;
use crate::typed::addr::{Contact, NameAddr};
use crate::uri::Uri;

#[cfg(test)]
mod tests;

/// Why a dialog could not be created or a request does not fit it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DialogError {
    #[error("malformed message: {0}")]
    Parse(#[from] ParseError),
    #[error("no Contact to use as the remote target")]
    NoContact,
    #[error("the {0} header has no tag")]
    NoTag(&'static str),
    #[error("CSeq {got} is not above the last one from the peer ({last})")]
    OutOfOrder { got: u32, last: u32 },
}

/// Early (a provisional response with a To tag created it) or confirmed (a 2xx, §12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogState {
    Early,
    Confirmed,
}

/// The dialog ID of §12: Call-ID, local tag, remote tag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
}

/// Where an in-dialog request goes (§12.2.1.1): its Request-URI and Route header values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRoute {
    pub request_uri: String,
    /// Route header values, in order (each a name-addr, `<sip:p1.example.com;lr>`).
    pub routes: Vec<String>,
    /// The URI the request is sent to first: the first Route, or the Request-URI.
    pub next_hop: String,
}

/// One dialog's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// The From value of our requests in this dialog (the local URI with the local tag).
    local_party: String,
    /// The To value of our requests in this dialog (the remote URI with the remote tag).
    remote_party: String,
    /// The last CSeq number we used.
    pub local_seq: u32,
    /// The last CSeq number the peer used (none until its first request).
    pub remote_seq: Option<u32>,
    /// The URI of the peer's Contact.
    pub remote_target: String,
    /// Route set, in the order our requests list it.
    pub route_set: Vec<String>,
    /// The dialog was created over `sips:` (§12.1.1, §12.1.2).
    pub secure: bool,
    pub state: DialogState,
}

/// A name-addr back to text: `"Display" <uri>;params` (header parameters kept, as a Route
/// value needs them).
fn name_addr_text(a: &NameAddr<'_>) -> String {
    let mut s = String::new();
    if let Some(d) = a.display_name {
        s.push_str(d);
        s.push(' ');
    }
    s.push('<');
    s.push_str(a.uri.as_str());
    s.push('>');
    s.push_str(a.params.as_str());
    // Folded parameters keep their line breaks in the message; a header line must not.
    if s.contains(['\r', '\n']) {
        s = s.replace("\r\n", " ").replace(['\r', '\n'], " ");
    }
    s
}

fn first_contact_uri(msg: &Message) -> Result<Option<String>, ParseError> {
    for c in msg.contacts() {
        if let Contact::Addr(a) = c? {
            return Ok(Some(a.uri.as_str().to_owned()));
        }
    }
    Ok(None)
}

fn record_route_values(msg: &Message) -> Result<Vec<String>, ParseError> {
    msg.record_routes().map(|r| r.map(|a| name_addr_text(&a))).collect()
}

fn is_sips(uri: &str) -> bool {
    matches!(Uri::parse(uri), Ok(Uri::Sip(u)) if u.secure)
}

impl Dialog {
    /// The UAC side (§12.1.2): `request` is the INVITE (or SUBSCRIBE, REFER) we sent and
    /// `response` a 1xx with a To tag (early dialog) or a 2xx (confirmed).
    pub fn new_uac(request: &Message, response: &Message) -> Result<Dialog, DialogError> {
        let remote = response.to()?;
        let remote_tag = remote.tag().ok_or(DialogError::NoTag("To"))?.to_owned();
        let local = request.from()?;
        let local_tag = local.tag().ok_or(DialogError::NoTag("From"))?.to_owned();
        let status = response.status().map_or(0, |s| s.as_u16());
        // A 1xx without Contact still makes an early dialog; its target comes with the 2xx.
        let remote_target = match first_contact_uri(response)? {
            Some(t) => t,
            None if status < 200 => request.request_uri().map(|u| u.as_str().to_owned()).unwrap_or_default(),
            None => return Err(DialogError::NoContact),
        };
        let mut route_set = record_route_values(response)?;
        route_set.reverse();
        let secure = request.request_uri().is_some_and(|u| u.as_sip().is_some_and(|s| s.secure));
        Ok(Dialog {
            call_id: request.call_id()?.to_owned(),
            local_tag,
            remote_tag,
            local_party: name_addr_text(&local),
            remote_party: name_addr_text(&remote),
            local_seq: request.cseq()?.seq,
            remote_seq: None,
            remote_target,
            route_set,
            secure,
            state: if status >= 200 { DialogState::Confirmed } else { DialogState::Early },
        })
    }

    /// The UAS side (§12.1.1): `request` is the dialog-creating request from the peer and
    /// `local_tag` the tag our responses put in To. `local_seq` is where our own CSeq numbers
    /// start (any value; §12.1.1 leaves it to the UAS).
    pub fn new_uas(request: &Message, local_tag: &str, local_seq: u32) -> Result<Dialog, DialogError> {
        let remote = request.from()?;
        let remote_tag = remote.tag().ok_or(DialogError::NoTag("From"))?.to_owned();
        let to = request.to()?;
        let mut local_party = name_addr_text(&to);
        if to.tag().is_none() {
            local_party.push_str(";tag=");
            local_party.push_str(local_tag);
        }
        let remote_target = first_contact_uri(request)?.ok_or(DialogError::NoContact)?;
        let secure = request.request_uri().is_some_and(|u| u.as_sip().is_some_and(|s| s.secure));
        Ok(Dialog {
            call_id: request.call_id()?.to_owned(),
            local_tag: to.tag().unwrap_or(local_tag).to_owned(),
            remote_tag,
            local_party,
            remote_party: name_addr_text(&remote),
            local_seq,
            remote_seq: Some(request.cseq()?.seq),
            remote_target,
            route_set: record_route_values(request)?,
            secure,
            state: DialogState::Early,
        })
    }

    /// The UAC side of a dialog that a request from the peer created: a NOTIFY arriving
    /// before the 2xx of our SUBSCRIBE (RFC 6665 §4.1.2.4). `ours` is the SUBSCRIBE we sent,
    /// `theirs` the NOTIFY; the route set is the NOTIFY's Record-Route in order (§12.1.1 rules,
    /// since the NOTIFY is a request).
    pub fn new_from_peer_request(ours: &Message, theirs: &Message) -> Result<Dialog, DialogError> {
        let local = ours.from()?;
        let remote = theirs.from()?;
        Ok(Dialog {
            call_id: ours.call_id()?.to_owned(),
            local_tag: local.tag().ok_or(DialogError::NoTag("From"))?.to_owned(),
            remote_tag: remote.tag().ok_or(DialogError::NoTag("From"))?.to_owned(),
            local_party: name_addr_text(&local),
            remote_party: name_addr_text(&remote),
            local_seq: ours.cseq()?.seq,
            remote_seq: Some(theirs.cseq()?.seq),
            remote_target: first_contact_uri(theirs)?.ok_or(DialogError::NoContact)?,
            route_set: record_route_values(theirs)?,
            secure: is_sips(ours.request_uri().map(|u| u.as_str()).unwrap_or("")),
            state: DialogState::Confirmed,
        })
    }

    pub fn id(&self) -> DialogId {
        DialogId {
            call_id: self.call_id.clone(),
            local_tag: self.local_tag.clone(),
            remote_tag: self.remote_tag.clone(),
        }
    }

    /// From of our requests (local URI with our tag).
    pub fn local_party(&self) -> &str {
        &self.local_party
    }

    /// To of our requests (remote URI with the peer's tag).
    pub fn remote_party(&self) -> &str {
        &self.remote_party
    }

    /// A 2xx arrived for the early dialog (UAC): it is confirmed, and its route set and
    /// target come from the 2xx (§13.2.2.4).
    pub fn confirm_with(&mut self, response: &Message) -> Result<(), DialogError> {
        let mut route_set = record_route_values(response)?;
        route_set.reverse();
        let target = first_contact_uri(response)?.ok_or(DialogError::NoContact)?;
        self.route_set = route_set;
        self.remote_target = target;
        self.state = DialogState::Confirmed;
        Ok(())
    }

    /// The UAS sent its 2xx.
    pub fn confirm(&mut self) {
        self.state = DialogState::Confirmed;
    }

    /// A target refresh (re-INVITE, its 2xx, UPDATE, NOTIFY): the Contact, when present,
    /// replaces the remote target (§12.2). The route set never changes.
    pub fn refresh_target(&mut self, msg: &Message) {
        if let Ok(Some(t)) = first_contact_uri(msg) {
            self.remote_target = t;
        }
    }

    /// The CSeq number for our next request (§12.2.1.1: one above the last).
    pub fn next_local_seq(&mut self) -> u32 {
        self.local_seq = self.local_seq.wrapping_add(1);
        self.local_seq
    }

    /// Checks and records the CSeq of a request from the peer (§12.2.2): ACK and CANCEL carry
    /// the number of the request they belong to and are not checked; any other request must
    /// be above the last one, else the UAS answers `500`.
    pub fn check_remote_seq(&mut self, request: &Message) -> Result<(), DialogError> {
        let cseq = request.cseq()?;
        if matches!(cseq.method, crate::Method::Ack | crate::Method::Cancel) {
            return Ok(());
        }
        if let Some(last) = self.remote_seq {
            if cseq.seq <= last {
                return Err(DialogError::OutOfOrder { got: cseq.seq, last });
            }
        }
        self.remote_seq = Some(cseq.seq);
        Ok(())
    }

    /// The Request-URI and Route headers of a request in this dialog (§12.2.1.1).
    ///
    /// With an empty route set the request goes to the remote target. When the first route
    /// has `;lr` (loose routing) the Request-URI is the remote target and the route set is
    /// listed as is. Otherwise (a strict router) the Request-URI is the first route's URI
    /// without header parameters, the remaining routes follow, and the remote target is
    /// added as the last Route.
    pub fn route(&self) -> RequestRoute {
        let Some(first) = self.route_set.first() else {
            return RequestRoute {
                request_uri: self.remote_target.clone(),
                routes: Vec::new(),
                next_hop: self.remote_target.clone(),
            };
        };
        let first_uri = route_uri(first);
        let loose = match first_uri.as_deref().map(Uri::parse) {
            Some(Ok(Uri::Sip(u))) => u.lr(),
            // Not a SIP URI: treat it as a loose router rather than put it in the Request-URI.
            _ => true,
        };
        if loose {
            RequestRoute {
                request_uri: self.remote_target.clone(),
                routes: self.route_set.clone(),
                next_hop: first_uri.unwrap_or_else(|| self.remote_target.clone()),
            }
        } else {
            let uri = first_uri.unwrap_or_else(|| self.remote_target.clone());
            let mut routes: Vec<String> = self.route_set[1..].to_vec();
            routes.push(format!("<{}>", self.remote_target));
            RequestRoute { request_uri: uri.clone(), routes, next_hop: uri }
        }
    }
}

/// The URI inside a Route value (`<sip:p1;lr>;x=y` gives `sip:p1;lr`).
pub fn route_uri(value: &str) -> Option<String> {
    NameAddr::parse(value).ok().map(|a| a.uri.as_str().to_owned())
}
