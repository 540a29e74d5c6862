//! Textual touches on answers str0m produced, where the client protocol needs more than str0m
//! gives.
//!
//! str0m picks a random msid stream id per m-line it sends on (the play offer is recvonly, so it
//! carries no msid of its own to reuse). The SDK sets `video.srcObject = event.streams[0]` on every
//! `ontrack`, so audio and video must share **one** stream id (spec/client-protocol.md §5.5);
//! otherwise the element shows only the last track.

/// Rewrites every msid stream id in `sdp` (`a=msid:`, `a=ssrc:<n> msid:` and the session-level
/// `a=msid-semantic`) to `stream_id`, keeping track ids. Line endings are kept as CRLF.
pub fn unify_msid(sdp: &str, stream_id: &str) -> String {
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split_terminator('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(rest) = line.strip_prefix("a=msid:") {
            out.push_str("a=msid:");
            out.push_str(stream_id);
            push_track(&mut out, rest);
        } else if let Some((ssrc, rest)) = line.strip_prefix("a=ssrc:").and_then(|r| r.split_once(" msid:")) {
            out.push_str("a=ssrc:");
            out.push_str(ssrc);
            out.push_str(" msid:");
            out.push_str(stream_id);
            push_track(&mut out, rest);
        } else if line.starts_with("a=msid-semantic:") {
            out.push_str("a=msid-semantic: WMS ");
            out.push_str(stream_id);
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

/// Removes the `a=msid:` lines of an answer in which the server sends nothing (publish: every
/// m-line recvonly). str0m echoes the offer's msid there, which names streams the server does
/// not have.
pub fn strip_msid(sdp: &str) -> String {
    let mut out = String::with_capacity(sdp.len());
    for line in sdp.split_terminator('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with("a=msid:") {
            continue;
        }
        if line.starts_with("a=msid-semantic:") {
            out.push_str("a=msid-semantic: WMS\r\n");
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// Appends ` <track>` from `"<stream> <track>"` (nothing when there is no track part).
fn push_track(out: &mut String, stream_and_track: &str) {
    if let Some((_, track)) = stream_and_track.split_once(' ') {
        out.push(' ');
        out.push_str(track);
    }
}

/// The `a=mid` values of `sdp`, in m-line order.
pub fn mids(sdp: &str) -> Vec<&str> {
    sdp.lines().filter_map(|l| l.trim_end().strip_prefix("a=mid:")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_stream_ids_become_one_and_track_ids_stay() {
        let answer = "v=0\r\na=msid-semantic: WMS aaa bbb\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n\
                      a=msid:aaa t1\r\na=ssrc:11 cname:x\r\na=ssrc:11 msid:aaa t1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
                      a=mid:1\r\na=msid:bbb t2\r\na=ssrc:22 msid:bbb t2\r\n";
        let out = unify_msid(answer, "S");
        assert_eq!(
            out,
            "v=0\r\na=msid-semantic: WMS S\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=msid:S t1\r\n\
             a=ssrc:11 cname:x\r\na=ssrc:11 msid:S t1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=msid:S t2\r\n\
             a=ssrc:22 msid:S t2\r\n"
        );
        assert_eq!(mids(&out), ["0", "1"]);
    }

    #[test]
    fn recvonly_answers_lose_their_msids() {
        let answer =
            "v=0\r\na=msid-semantic: WMS aaa\r\nm=audio 9 X 111\r\na=recvonly\r\na=msid:aaa t1\r\na=rtcp-mux\r\n";
        assert_eq!(
            strip_msid(answer),
            "v=0\r\na=msid-semantic: WMS\r\nm=audio 9 X 111\r\na=recvonly\r\na=rtcp-mux\r\n"
        );
    }

    #[test]
    fn lf_only_input_comes_out_crlf_and_unrelated_lines_untouched() {
        let out = unify_msid("v=0\na=ssrc:1 cname:abc\na=rtpmap:111 opus/48000/2\n", "S");
        assert_eq!(out, "v=0\r\na=ssrc:1 cname:abc\r\na=rtpmap:111 opus/48000/2\r\n");
    }
}
