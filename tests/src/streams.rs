//! The SDK's stream messages and the waits around them, for tests that publish and play with
//! [`crate::webrtc::FakeBrowser`]s over a protocol [`Client`].

use serde_json::{json, Map, Value};

use crate::Client;

/// The SDK's `publishStream` payload (spec/client-protocol.md §3.2).
pub fn publish_msg(id: &str, name: &str, sdp: &str) -> Value {
    json!({"mediaSessionId": id, "name": name, "published": true, "hasVideo": true, "hasAudio": true,
           "status": "PENDING", "record": false, "mediaProvider": "WebRTC", "sdp": sdp,
           "bitrate": 0, "minBitrate": 0, "maxBitrate": 0, "custom": {}})
}

/// The SDK's `playStream` payload.
pub fn play_msg(id: &str, name: &str, sdp: &str) -> Value {
    json!({"mediaSessionId": id, "name": name, "published": false, "hasVideo": true, "hasAudio": true,
           "status": "PENDING", "record": false, "width": 0, "height": 0, "mediaProvider": "WebRTC",
           "sdp": sdp, "bitrate": 0, "minBitrate": 0, "maxBitrate": 0, "quality": 0})
}

/// The next `setRemoteSDP [id, answer, true]` for `id`; returns the answer. A status for `id`
/// before it fails the test.
pub async fn expect_answer(c: &mut Client, id: &str) -> String {
    loop {
        let (m, data) = c.next().await.expect("connection open");
        if m == "notifyStreamStatusEvent" && data[0]["mediaSessionId"] == id {
            panic!("status before the answer: {data:?}");
        }
        if m == "setRemoteSDP" && data[0] == id {
            assert_eq!(data.len(), 3, "{data:?}");
            assert_eq!(data[2], true, "the client made the offer");
            return data[1].as_str().expect("an SDP").to_string();
        }
    }
}

/// The next `notifyStreamStatusEvent` of `id` other than `PENDING`.
pub async fn stream_status(c: &mut Client, id: &str) -> Map<String, Value> {
    loop {
        let st = c.expect("notifyStreamStatusEvent").await;
        if st["mediaSessionId"] == id && st["status"] != "PENDING" {
            return st;
        }
    }
}

/// Sends `msg` (a `publishStream` or `playStream` of `id` carrying `browser`'s offer), gives
/// the browser the answer and returns the stream's first status after it.
pub async fn start_stream(
    c: &mut Client,
    browser: &crate::webrtc::FakeBrowser,
    message: &str,
    msg: Value,
) -> Map<String, Value> {
    let id = msg["mediaSessionId"].as_str().expect("a mediaSessionId").to_string();
    c.send(message, msg).await;
    browser.accept(&expect_answer(c, &id).await);
    stream_status(c, &id).await
}
