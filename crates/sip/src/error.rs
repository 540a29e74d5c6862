//! The crate's one error type, [`ParseError`], and the [`Fault`] it names.
//!
//! Every error says what was wrong ([`Fault`], the header it was in) and where (a byte offset into
//! the message as received, or into the value handed to a standalone parser). Bad input is always
//! an `Err`, never a panic.

pub use crate::fault::Fault;
use crate::method::Method;
use crate::name::HeaderName;

/// A message, or a part of one, that is not valid SIP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// Nothing but line ends (a keep-alive) or nothing at all.
    #[error("empty message")]
    Empty,
    /// The head is not terminated by an empty line (a datagram must hold the whole message).
    #[error("message head is not terminated by an empty line")]
    Incomplete,
    /// Over the configured size limit; on a stream the connection cannot be kept.
    #[error("message of at least {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    /// The start line is not `Method SP Request-URI SP SIP-Version` or `SIP-Version SP code SP reason`.
    #[error("invalid start line at byte {at}: {fault}")]
    StartLine { at: usize, fault: Fault },
    /// A version other than SIP/2.0 in the start line.
    #[error("unsupported SIP version at byte {at}")]
    Version { at: usize },
    /// The Request-URI does not parse, or carries something it must not.
    #[error("invalid Request-URI at byte {at}: {fault}")]
    RequestUri { at: usize, fault: Fault },
    /// A header line that is not `name ":" value`.
    #[error("malformed header line at byte {at}: {fault}")]
    HeaderLine { at: usize, fault: Fault },
    /// A header whose value does not match its grammar.
    #[error("invalid {header} header at byte {at}: {fault}")]
    Header { header: HeaderName, at: usize, fault: Fault },
    /// A header the message must have.
    #[error("missing {header} header")]
    MissingHeader { header: HeaderName },
    /// A header that may appear only once appears again (at byte `at`).
    #[error("{header} header appears more than once (again at byte {at})")]
    DuplicateHeader { header: HeaderName, at: usize },
    /// Content-Length promises more body than the datagram holds (RFC 3261 §18.3).
    #[error("Content-Length is {declared} but only {available} bytes follow the head")]
    BodyTruncated { declared: usize, available: usize },
    /// A message on a stream transport without Content-Length (RFC 3261 §18.3).
    #[error("Content-Length is required on a stream transport")]
    MissingContentLength,
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method {cseq} does not match the request method {method}")]
    CSeqMethodMismatch { method: Method, cseq: Method },
    /// A value handed to a standalone parser (such as `Uri::parse`) is invalid at byte `at`.
    #[error("invalid value at byte {at}: {fault}")]
    Value { at: usize, fault: Fault },
    /// Something handed to the message builder cannot go on the wire.
    #[error("invalid {what} for the message builder: {fault}")]
    Builder { what: &'static str, fault: Fault },
}

impl ParseError {
    /// The header the error is about, if it is about one.
    pub fn header(&self) -> Option<HeaderName> {
        match self {
            ParseError::Header { header, .. }
            | ParseError::MissingHeader { header }
            | ParseError::DuplicateHeader { header, .. } => Some(*header),
            ParseError::BodyTruncated { .. } | ParseError::MissingContentLength => Some(HeaderName::ContentLength),
            ParseError::CSeqMethodMismatch { .. } => Some(HeaderName::CSeq),
            _ => None,
        }
    }

    /// The byte offset the error points at, if it points at one.
    pub fn offset(&self) -> Option<usize> {
        match self {
            ParseError::StartLine { at, .. }
            | ParseError::Version { at }
            | ParseError::RequestUri { at, .. }
            | ParseError::HeaderLine { at, .. }
            | ParseError::Header { at, .. }
            | ParseError::DuplicateHeader { at, .. }
            | ParseError::Value { at, .. } => Some(*at),
            _ => None,
        }
    }

    /// A short reason phrase for a `400 Bad Request` that names the problem, without byte
    /// offsets (which mean nothing to the peer), e.g. `Invalid CSeq header: number out of range`.
    pub fn reason_phrase(&self) -> String {
        match self {
            ParseError::Header { header, fault, .. } => format!("Invalid {header} header: {fault}"),
            ParseError::MissingHeader { header } => format!("Missing {header} header"),
            ParseError::DuplicateHeader { header, .. } => format!("Duplicate {header} header"),
            ParseError::StartLine { fault, .. } => format!("Invalid request line: {fault}"),
            ParseError::Version { .. } => "Unsupported SIP version".to_owned(),
            ParseError::RequestUri { fault, .. } => format!("Invalid Request-URI: {fault}"),
            ParseError::HeaderLine { fault, .. } => format!("Malformed header line: {fault}"),
            ParseError::BodyTruncated { .. } => "Content-Length larger than the body".to_owned(),
            ParseError::MissingContentLength => "Missing Content-Length".to_owned(),
            ParseError::CSeqMethodMismatch { .. } => "CSeq method does not match".to_owned(),
            ParseError::TooLarge { .. } => "Message too large".to_owned(),
            ParseError::Value { fault, .. } | ParseError::Builder { fault, .. } => {
                format!("Bad Request: {fault}")
            }
            ParseError::Empty | ParseError::Incomplete => "Bad Request".to_owned(),
        }
    }
}
