//! What the SIP integration tests (`tests/{calls,rest_calls,messaging}.rs`) share: a server
//! whose SIP port is ephemeral with the recording backend as app `backendApp`, the client's
//! `connection` object, sipp peers, a browser offer for calls, and the statuses the backend saw.

use std::time::Duration;

use serde_json::{json, Value};

use crate::peers::{Sipp, SippProcess};
use crate::Backend;

/// Chromium's real offer (audio with PCMU/PCMA among others). ICE never completes in the
/// tests that use it, which end well before the media connect timeout.
pub const CHROMIUM_OFFER: &str = include_str!("../../crates/media/testdata/chromium-publish-offer.sdp");

/// Server config: the SIP port on 127.0.0.1:0 (the default is 30000) and app `backendApp`
/// whose hooks go to `backend`.
pub fn sip_server_toml(backend: &Backend) -> String {
    format!("[sip]\nbind = \"127.0.0.1:0\"\n[apps.backendApp]\nurl = \"{}\"\n", backend.url("hooks"))
}

/// The SDK's `connection` object for app `backendApp`, with the fields of `sip` added.
pub fn connection(sip: Value) -> Value {
    let mut c = json!({"appKey": "backendApp", "mediaProviders": ["WebRTC"], "clientVersion": "2.0",
                       "clientOSVersion": "5.0", "clientBrowserVersion": "test", "msePacketizationVersion": 2,
                       "custom": {}, "clientInfo": {}});
    for (k, v) in sip.as_object().expect("sip fields are an object") {
        c[k] = v.clone();
    }
    c
}

/// A sipp scenario of `tests/sipp` as a server (15 s timeout).
pub fn sipp_uas(scenario: &str) -> SippProcess {
    Sipp::scenario(scenario).timeout(Duration::from_secs(15)).spawn().expect("sipp starts (run `make deps`)")
}

/// A sipp registrar for user 3000 (realm `callgate.test`, digest with `password`).
pub fn registrar(password: &str) -> SippProcess {
    Sipp::scenario("uas_register_digest.xml")
        .key("user", "3000")
        .key("password", password)
        .key("realm", "callgate.test")
        .key("expires", "120")
        .timeout(Duration::from_secs(15))
        .spawn()
        .expect("sipp starts (run `make deps` if it is missing)")
}

/// A client `call` message with [`CHROMIUM_OFFER`] from 3000 to `callee`.
pub fn call_msg(id: &str, callee: &str) -> Value {
    json!({"callId": id, "incoming": false, "hasVideo": false, "hasAudio": true, "status": "PENDING",
           "mediaProvider": "WebRTC", "sdp": CHROMIUM_OFFER, "caller": "3000", "callee": callee,
           "visibleName": "3000", "custom": {}})
}

/// The `status` of every `hook` request whose `key` field is `id`, in arrival order (e.g. the
/// `CallStatusEvent`s of a call by `callId`).
pub fn hook_statuses(backend: &Backend, hook: &str, key: &str, id: &str) -> Vec<String> {
    backend
        .requests_for(hook)
        .into_iter()
        .filter(|r| r.body[key] == id)
        .map(|r| r.body["status"].as_str().unwrap_or("").to_string())
        .collect()
}

/// A sipp callee that answers with PCMU and then talks: it plays `seconds` of a 440 Hz PCMU tone
/// (a pcap written by `tests/sipp/pcmu_pcap.py`) to the caller's RTP address, and waits for the
/// caller's BYE (`tests/sipp/uas_answer_play_pcap.xml.in`, made concrete in a temporary
/// directory: sipp reads the pcap's path when it loads the scenario).
pub fn sipp_talking_uas(seconds: u32) -> SippProcess {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "callgate-talking-uas-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let sipp = crate::peers::sipp_dir();
    let pcap = dir.join("tone.pcap");
    let made = std::process::Command::new("/usr/bin/python3")
        .arg(sipp.join("pcmu_pcap.py"))
        .arg(&pcap)
        .args(["--seconds", &seconds.to_string()])
        .status()
        .expect("python3 runs");
    assert!(made.success(), "pcmu_pcap.py failed");
    let template = std::fs::read_to_string(sipp.join("uas_answer_play_pcap.xml.in")).expect("the template");
    let scenario = dir.join("uas_answer_play_pcap.xml");
    std::fs::write(&scenario, template.replace("@PCAP@", &pcap.display().to_string())).expect("the scenario");
    Sipp::scenario(&scenario)
        .timeout(Duration::from_secs(u64::from(seconds) + 20))
        .spawn()
        .expect("sipp starts (run `make deps`)")
}
