//! The little SDP the user agent needs to know about: the media direction of an offer
//! (RFC 3264 §5.1, RFC 4566 §6), to tell hold from unhold, and rewriting it for a hold or
//! unhold re-offer (RFC 3264 §8.4). Everything else about SDP belongs to the media bridge.

use bytes::Bytes;

/// A media direction attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "a=sendrecv",
            Direction::SendOnly => "a=sendonly",
            Direction::RecvOnly => "a=recvonly",
            Direction::Inactive => "a=inactive",
        }
    }

    fn parse(line: &str) -> Option<Direction> {
        match line.trim_end() {
            "a=sendrecv" => Some(Direction::SendRecv),
            "a=sendonly" => Some(Direction::SendOnly),
            "a=recvonly" => Some(Direction::RecvOnly),
            "a=inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// An offer with this direction puts the offerer's peer on hold (RFC 3264 §8.4): it
    /// will not receive (`sendonly`, `inactive`).
    pub fn is_hold(self) -> bool {
        matches!(self, Direction::SendOnly | Direction::Inactive)
    }
}

/// The direction of the first audio stream (or the first stream): its own attribute, else
/// the session-level one, else `sendrecv` (RFC 4566 §6). A connection address of `0.0.0.0`
/// (RFC 2543 hold) counts as `sendonly`.
pub fn direction(sdp: &[u8]) -> Direction {
    let text = String::from_utf8_lossy(sdp);
    let mut session = None;
    let mut media: Option<Option<Direction>> = None;
    let mut zero_conn = false;
    for line in text.lines() {
        if line.starts_with("m=") {
            if media.is_some() {
                break; // only the first m= section
            }
            media = Some(None);
            continue;
        }
        if line.trim_end() == "c=IN IP4 0.0.0.0" {
            zero_conn = true;
        }
        if let Some(d) = Direction::parse(line) {
            match &mut media {
                None => session = Some(d),
                Some(m) => *m = Some(d),
            }
        }
    }
    let d = media.flatten().or(session).unwrap_or(Direction::SendRecv);
    if zero_conn && d == Direction::SendRecv {
        Direction::SendOnly
    } else {
        d
    }
}

/// The SDP with every direction attribute replaced by `dir`: one in each media section,
/// none at session level. The `o=` line is kept; the user agent raises its version when it
/// sends the result as a new offer (RFC 3264 §8).
pub fn with_direction(sdp: &[u8], dir: Direction) -> Bytes {
    let text = String::from_utf8_lossy(sdp);
    let eol = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let mut out = String::with_capacity(text.len() + 32);
    let mut in_media = false;
    let mut wrote_dir = false;
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if line.starts_with("m=") {
            if in_media && !wrote_dir {
                out.push_str(dir.attribute());
                out.push_str(eol);
            }
            in_media = true;
            wrote_dir = false;
        }
        if Direction::parse(line).is_some() {
            if in_media && !wrote_dir {
                out.push_str(dir.attribute());
                out.push_str(eol);
                wrote_dir = true;
            }
            continue;
        }
        out.push_str(line);
        out.push_str(eol);
    }
    if in_media && !wrote_dir {
        out.push_str(dir.attribute());
        out.push_str(eol);
    }
    Bytes::from(out)
}

/// The session version of the `o=` line (`o=user sess-id sess-version ...`).
pub fn origin_version(sdp: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(sdp).ok()?;
    let origin = text.lines().find_map(|l| l.strip_prefix("o="))?;
    origin.split(' ').nth(2)?.parse().ok()
}

/// The SDP with its `o=` session version set to `version` (unchanged if it has no valid `o=`).
pub fn with_origin_version(sdp: &[u8], version: u64) -> Bytes {
    let text = String::from_utf8_lossy(sdp);
    let mut out = String::with_capacity(text.len() + 4);
    let mut done = false;
    for line in text.split_inclusive('\n') {
        if let (false, Some(rest)) = (done, line.strip_prefix("o=")) {
            let body = rest.trim_end_matches(['\r', '\n']);
            let mut parts: Vec<&str> = body.split(' ').collect();
            if parts.len() == 6 && parts[2].parse::<u64>().is_ok() {
                let v = version.to_string();
                parts[2] = &v;
                out.push_str("o=");
                out.push_str(&parts.join(" "));
                out.push_str(&rest[body.len()..]);
                done = true;
                continue;
            }
        }
        out.push_str(line);
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=sipp 42 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n";

    #[test]
    fn directions() {
        assert_eq!(direction(OFFER.as_bytes()), Direction::SendRecv);
        assert_eq!(direction(b"v=0\r\na=sendonly\r\nm=audio 1 RTP/AVP 0\r\n"), Direction::SendOnly);
        assert_eq!(direction(b"v=0\r\na=sendonly\r\nm=audio 1 RTP/AVP 0\r\na=inactive\r\n"), Direction::Inactive);
        assert_eq!(direction(b"v=0\nc=IN IP4 0.0.0.0\nm=audio 1 RTP/AVP 0\n"), Direction::SendOnly);
        assert_eq!(direction(b""), Direction::SendRecv);
        assert!(Direction::Inactive.is_hold() && !Direction::RecvOnly.is_hold());
    }

    #[test]
    fn rewrite_for_hold_and_back() {
        let held = with_direction(OFFER.as_bytes(), Direction::SendOnly);
        let text = std::str::from_utf8(&held).unwrap();
        assert!(text.contains("o=sipp 42 1 IN IP4"), "{text}");
        assert!(text.contains("a=sendonly\r\n") && !text.contains("sendrecv"), "{text}");
        assert_eq!(direction(&held), Direction::SendOnly);
        let back = with_direction(&held, Direction::SendRecv);
        assert_eq!(direction(&back), Direction::SendRecv);
        // No direction at all: one is added to each media section.
        let two = with_direction(b"v=0\nm=audio 1 RTP/AVP 0\nm=video 2 RTP/AVP 96\n", Direction::Inactive);
        assert_eq!(std::str::from_utf8(&two).unwrap().matches("a=inactive").count(), 2);
    }

    #[test]
    fn origin_versions() {
        assert_eq!(origin_version(OFFER.as_bytes()), Some(1));
        let v7 = with_origin_version(OFFER.as_bytes(), 7);
        assert_eq!(origin_version(&v7), Some(7));
        assert_eq!(v7.len(), OFFER.len());
        assert!(std::str::from_utf8(&v7).unwrap().contains("o=sipp 42 7 IN IP4 127.0.0.1\r\ns=-"));
        assert_eq!(origin_version(b"v=0\r\n"), None);
        assert_eq!(&with_origin_version(b"v=0\r\no=bad\r\n", 3)[..], b"v=0\r\no=bad\r\n");
    }
}
