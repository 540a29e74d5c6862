//! [`Fault`]: what exactly was wrong with a piece of a message. A leaf of its own, so the lexer
//! (which reports faults) and [`crate::error`] (whose `ParseError` names a `Method`, which the
//! lexer checks) do not import each other in a circle.

/// What exactly was wrong with a piece of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Fault {
    #[error("empty value")]
    Empty,
    #[error("value ends too early")]
    UnexpectedEnd,
    #[error("unexpected character")]
    UnexpectedChar,
    #[error("unexpected characters after the value")]
    TrailingData,
    #[error("not a token")]
    InvalidToken,
    #[error("unterminated quoted string")]
    UnterminatedQuote,
    #[error("missing '>'")]
    UnterminatedAngle,
    #[error("expected '<'")]
    ExpectedAngle,
    #[error("control character")]
    ControlChar,
    #[error("invalid escape sequence")]
    InvalidEscape,
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("not a number")]
    NotANumber,
    #[error("number out of range")]
    Overflow,
    #[error("invalid host")]
    InvalidHost,
    #[error("invalid port")]
    InvalidPort,
    #[error("invalid IPv6 reference")]
    InvalidIpv6,
    #[error("invalid IP address")]
    InvalidIp,
    #[error("invalid URI scheme")]
    InvalidScheme,
    #[error("invalid user part")]
    InvalidUser,
    #[error("URI headers are not allowed here")]
    HeadersNotAllowed,
    #[error("a URI with ';', ',' or '?' must be enclosed in '<>'")]
    AngleBracketsRequired,
    #[error("white space inside '<>'")]
    SpaceInAngleBrackets,
    #[error("display name is neither tokens nor a quoted string")]
    InvalidDisplayName,
    #[error("empty parameter")]
    EmptyParam,
    #[error("empty list element")]
    EmptyElement,
    #[error("unsupported protocol version")]
    UnsupportedVersion,
    #[error("extra white space")]
    ExtraWhitespace,
    #[error("CR without LF")]
    BareCr,
    #[error("header line without ':'")]
    MissingColon,
    #[error("invalid header name")]
    InvalidName,
    #[error("continuation line without a header")]
    OrphanContinuation,
    #[error("invalid date")]
    InvalidDate,
    #[error("invalid method")]
    InvalidMethod,
    #[error("invalid status code")]
    InvalidStatus,
    #[error("invalid media type")]
    InvalidMediaType,
    #[error("'*' must be the only Contact")]
    WildcardNotAlone,
}
