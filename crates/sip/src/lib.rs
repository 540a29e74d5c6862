//! The SIP message codec of callgate: zero-copy parsing over [`bytes::Bytes`], framing for
//! datagrams and streams, fast transaction keys, typed headers on demand, and a builder.
//!
//! No I/O happens here and nothing here panics on bad input: every malformed message is a
//! [`ParseError`] saying what was wrong and where.
//!
//! # Model
//!
//! A [`Message`] is the received bytes plus an index: the start line and, for each header line,
//! the byte ranges of its name and value. Nothing is copied. Header values keep their folds;
//! typed views ([`Via`], [`NameAddr`], [`CSeq`], [`Challenge`], ...) are parsed when asked for
//! and borrow from the message. [`Message::share`] turns any borrowed part into an owned
//! [`bytes::Bytes`] of the same buffer. Serialising an unchanged message is
//! [`Message::to_bytes`]: the original bytes.
//!
//! # Driving it
//!
//! A UDP datagram is one message ([`parse_datagram`]). A TCP stream goes through a
//! [`StreamFramer`]. For either, a transaction layer can first look a message up by
//! [`keys::extract`], which reads just the five headers it needs; a request that starts a new
//! transaction is then checked whole with [`Message::validate`], and refused with
//! [`bad_request_for`] when that fails.
//!
//! ```
//! use bytes::Bytes;
//! use callgate_sip::{bad_request_for, keys, parse_datagram, Framed, HeaderName, StreamFramer};
//!
//! let datagram = Bytes::from_static(
//!     b"OPTIONS sip:carol@chicago.example.com SIP/2.0\r\n\
//!       Via: SIP/2.0/UDP pc33.example.com;branch=z9hG4bKhjhs8ass877\r\n\
//!       Max-Forwards: 70\r\n\
//!       To: <sip:carol@chicago.example.com>\r\n\
//!       From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
//!       Call-ID: a84b4c76e66710\r\n\
//!       CSeq: 63104 OPTIONS\r\n\
//!       Content-Length: 0\r\n\r\n",
//! );
//!
//! // 1. Cheap keys for the transaction lookup.
//! let k = keys::extract(&datagram).unwrap();
//! assert_eq!(k.branch(), Some("z9hG4bKhjhs8ass877"));
//!
//! // 2. The full message, checked, with typed access.
//! let msg = match parse_datagram(datagram.clone()).and_then(|m| m.validate().map(|()| m)) {
//!     Ok(msg) => msg,
//!     Err(err) => {
//!         if let Some(resp) = bad_request_for(&datagram, &err) { /* send resp */ }
//!         return;
//!     }
//! };
//! assert_eq!(msg.from().unwrap().tag(), Some("1928301774"));
//! assert_eq!(msg.max_forwards().unwrap(), Some(70));
//! assert_eq!(msg.to_bytes(), datagram);
//!
//! // 3. On a stream: push what the socket gave, poll until Ok(None); an Err closes the stream.
//! let mut framer = StreamFramer::default();
//! framer.handle_bytes(&datagram[..40]);
//! assert!(framer.poll_message().unwrap().is_none());
//! framer.handle_bytes(&datagram[40..]);
//! match framer.poll_message() {
//!     Ok(Some(Framed::Message(m))) => assert_eq!(m.header(HeaderName::CallId).unwrap().value(), b"a84b4c76e66710"),
//!     Ok(Some(Framed::Invalid { raw, error })) => { let _ = bad_request_for(&raw, &error); }
//!     Ok(None) => unreachable!(),
//!     Err(_fatal) => { /* close the connection */ }
//! }
//! ```
//!
//! Responses are built with [`MessageBuilder::response_to`]; see [`builder`].
//!
//! # Modules
//!
//! | module | what |
//! |---|---|
//! | [`parse_datagram`], [`Message`] | head index, start line, body by Content-Length |
//! | [`StreamFramer`] | stream framing with a size limit |
//! | [`keys`] | transaction keys without the full parse |
//! | [`typed`] | Via, name-addr (From/To/Contact/Route), CSeq, Call-ID, Content-Type, auth |
//! | [`Uri`] | `sip:`, `sips:`, `tel:`, other schemes |
//! | [`builder`] | building and serialising |
//! | [`txn`] | RFC 3261 §17 transactions (with RFC 6026) as sans-IO machines, and their table |
//! | [`digest`] | Digest authentication responses (MD5, SHA-256, `-sess`, qop=auth) |

mod bad_request;
pub mod builder;
pub mod dialog;
pub mod digest;
mod error;
mod fault;
mod framer;
pub mod keys;
mod lenient;
mod lex;
mod message;
mod method;
mod name;
mod params;
mod parse;
pub mod registrar;
#[cfg(feature = "tokio")]
pub mod transport;
pub mod txn;
pub mod typed;
pub mod ua;
mod uri;
mod validate;

#[cfg(test)]
mod tests;

pub use bad_request::bad_request_for;
pub use builder::MessageBuilder;
pub use error::{Fault, ParseError};
pub use framer::{Framed, FramerConfig, StreamFramer};
pub use keys::TxnKeys;
pub use lex::{unescape, unquote};
pub use message::{HeaderField, Message, StartLine, TypedValues};
pub use method::{Method, StatusCode};
pub use name::HeaderName;
pub use params::{Param, ParamIter, Params};
pub use parse::parse_datagram;
pub use typed::addr::{Contact, NameAddr};
pub use typed::auth::{AuthParams, Challenge, Credentials};
pub use typed::simple::{CSeq, MediaType};
pub use typed::via::{Rport, Via};
pub use uri::{Host, OtherUri, SipUri, TelUri, Uri};
