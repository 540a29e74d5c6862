//! Shared pieces of the benches: realistic hook bodies, and the open-file limit for runs with
//! thousands of sockets.
//!
//! The bodies are what callgate actually sends: the client's data for the action plus the context
//! fields `nodeId`, `appKey`, `sessionId` (spec/rest-hooks.md §1), with WCS-style ids.

/// A `call` hook body as the dispatcher POSTs it (515 bytes, no SDP: `restExclude` took it out).
pub const CALL_HOOK_BODY: &str = concat!(
    r#"{"callId":"b1f3a3c0-8f0e-4c9c-9a0e-2b7d3f1e6a11","callee":"Alice","caller":"Bob","#,
    r#""visibleName":"Bob Smith","hasAudio":true,"hasVideo":false,"status":"PENDING","incoming":false,"#,
    r#""mediaProvider":"WebRTC","isMsrp":false,"sipLogin":"1001","sipDomain":"sip.example.com","#,
    r#""sipOutboundProxy":"sip.example.com","sipPort":5060,"#,
    r#""nodeId":"Hq4qs3E8YRvCpqmDdgVxHQ9smntwobOj@127.0.0.1","appKey":"defaultApp","#,
    r#""sessionId":"/127.0.0.1:53422/127.0.0.1:8080-5e6b1c1a-7c1f-4a5e-9d43-8f0b1b6c2f8e","#,
    r#""custom":{"tenant":"acme","priority":3}}"#
);

/// A `publishStream` hook's data with the client's SDP offer (≈ 1 KiB), before `restExclude`.
pub const PUBLISH_STREAM_DATA: &str = concat!(
    r#"{"mediaSessionId":"8d2c6f4e-3b1a-4f7e-9c2d-5a6b7c8d9e0f","name":"room-42-alice","#,
    r#""published":true,"hasVideo":true,"hasAudio":true,"status":"PENDING","record":false,"#,
    r#""width":1280,"height":720,"bitrate":0,"minBitrate":0,"maxBitrate":2500,"quality":0,"#,
    r#""mediaProvider":"WebRTC","#,
    r#""sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"#,
    r#"a=msid-semantic: WMS stream\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\nc=IN IP4 0.0.0.0\r\n"#,
    r#"a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:Hk2f\r\na=ice-pwd:c2VjcmV0LWljZS1wYXNzd29yZC0x\r\n"#,
    r#"a=fingerprint:sha-256 3A:96:6D:57:B2:C2:C7:61:A0:46:3E:1C:97:39:D3:F7:0A:88:A0:B1:EC:03:FB:10:A5:5D:3A:37:AB:DD:02:AA\r\n"#,
    r#"a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"#,
    r#"a=fmtp:111 minptime=10;useinbandfec=1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\n"#,
    r#"a=mid:1\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack pli\r\n"#,
    r#"a=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n","#,
    r#""nodeId":"Hq4qs3E8YRvCpqmDdgVxHQ9smntwobOj@127.0.0.1","appKey":"defaultApp","#,
    r#""sessionId":"/127.0.0.1:53422/127.0.0.1:8080-5e6b1c1a-7c1f-4a5e-9d43-8f0b1b6c2f8e","#,
    r#""custom":{"tenant":"acme","room":"42"}}"#
);

/// Raises the soft open-file limit to the hard one (inherited by child processes); returns the
/// new soft limit (0 when it cannot be read).
pub fn raise_nofile_limit() -> libc::rlim_t {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    lim.rlim_cur
}
