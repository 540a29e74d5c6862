//! REST API requests (issue 11 item 3): arbitrary bodies and `Authorization` headers through the
//! real `/rest-api` router (`callgate_server::rest_api::router`: the browser guard, auth, the
//! body limit, the in-flight guard and every handler), called in process with no socket between
//! (`tower::ServiceExt::oneshot`).
//!
//! The node is a real one, started once on ephemeral loopback ports with hooks disabled
//! (`[hooks] disable_rest_requests`: no HTTP leaves the process) and SIP destinations empty
//! (`[sip] allowed_destinations = []`: a `/call/startup` is refused before any INVITE), so the
//! handlers run as in production without sending anything anywhere. One registered party (a
//! REST leg, no client) holds a known `sipPassword`, so `find` filters have data to match.
//!
//! Input: byte 0 picks the route, byte 1 the auth mode (a valid bearer token, none, or a header
//! made of the next `byte 2` input bytes); the rest is the body.
//!
//! Besides "no panic, no hang", it checks:
//! - no credentials: `401`; the valid token: never `401`;
//! - a status among what the API documents (`200`, `400`, `404`, `409`, `413`; `500` and `503`
//!   only from the `/call/*` actions), and a `400` always says why;
//! - a `200` of a `find` is a JSON array of objects;
//! - the party's SIP password is in no answer.
#![no_main]

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use callgate_hooks::RestClientConfig;
use callgate_server::party::Party;
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token-1";
const SESSION: &str = "fuzz-session";
const SECRET: &str = "fuzz-secret-pw-9";

const ROUTES: [(&str, &str); 17] = [
    ("POST", "/rest-api/connection/find"),
    ("POST", "/rest-api/connection/find_all"),
    ("GET", "/rest-api/connection/find_all"),
    ("POST", "/rest-api/connection/terminate"),
    ("POST", "/rest-api/data/send"),
    ("POST", "/rest-api/stream/find"),
    ("GET", "/rest-api/stream/find_all"),
    ("POST", "/rest-api/stream/terminate"),
    ("POST", "/rest-api/call/find"),
    ("POST", "/rest-api/call/find_all"),
    ("POST", "/rest-api/call/terminate"),
    ("POST", "/rest-api/call/startup"),
    ("POST", "/rest-api/call/hold"),
    ("POST", "/rest-api/call/unhold"),
    ("POST", "/rest-api/call/transfer"),
    ("POST", "/rest-api/call/send_dtmf"),
    ("POST", "/rest-api/no/such/route"),
];

struct Node {
    rt: tokio::runtime::Runtime,
    server: callgate_server::RunningServer,
    router: axum::Router,
}

fn node() -> &'static Node {
    static NODE: OnceLock<Node> = OnceLock::new();
    NODE.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let toml = format!(
            "[server]\nws_bind = \"127.0.0.1:0\"\nhttp_bind = \"127.0.0.1:0\"\n[media]\nbind = \"127.0.0.1:0\"\n\
             [sip]\nbind = \"127.0.0.1:0\"\nallowed_destinations = []\n\
             [hooks]\ndisable_rest_requests = true\n[rest_api]\ntokens = [\"{TOKEN}\"]\n\
             [log]\nfilter = \"off\"\n"
        );
        let cfg = callgate_server::config::Config::from_toml(&toml).expect("fuzz config");
        let server = rt.block_on(callgate_server::start(cfg)).expect("the node starts");
        let router = callgate_server::rest_api::router(server.shared.clone());
        Node { rt, server, router }
    })
}

/// The registered party `find` can match (registered again if anything removed it).
fn register_party(n: &Node) {
    let s = &n.server.shared;
    if s.sessions.get(SESSION).is_some() {
        return;
    }
    let Value::Object(data) = serde_json::json!({
        "sessionId": SESSION, "appKey": "defaultApp", "nodeId": &*s.node_id,
        "sipLogin": "3000", "sipPassword": SECRET, "sipDomain": "127.0.0.1", "status": "ESTABLISHED",
        "custom": {"a": [1, "b"]}
    }) else {
        unreachable!()
    };
    let app = s.apps.get("defaultApp").expect("defaultApp").clone();
    let rcc = Arc::new(RestClientConfig::parse(None).0);
    let _guard = n.rt.enter();
    let p = Party::new(s.node.clone(), SESSION.into(), app, rcc, data, None);
    s.sessions.insert(SESSION.into(), Arc::new(p));
}

fuzz_target!(|data: &[u8]| {
    let n = node();
    if data.len() < 2 {
        return;
    }
    let (method, path) = ROUTES[data[0] as usize % ROUTES.len()];
    let mut rest = &data[2..];
    let mut req = http::Request::builder().method(method).uri(path).header("host", "127.0.0.1");
    let mode = data[1] % 3;
    match mode {
        0 => req = req.header("authorization", format!("Bearer {TOKEN}")),
        1 => {}
        _ => {
            let len = rest.first().map_or(0, |l| *l as usize).min(rest.len().saturating_sub(1));
            let value = &rest[1.min(rest.len())..1.min(rest.len()) + len];
            rest = &rest[(1 + len).min(rest.len())..];
            match http::HeaderValue::from_bytes(value) {
                Ok(v) => req = req.header("authorization", v),
                Err(_) => return, // not a header any HTTP parser would hand over
            }
        }
    }
    let req = req.body(Body::from(rest.to_vec())).expect("a request");
    register_party(n);
    let (status, body) = n.rt.block_on(async {
        let resp = n.router.clone().oneshot(req).await.expect("the router is infallible");
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.expect("an answer body").to_bytes();
        (status, body)
    });
    let text = String::from_utf8_lossy(&body);
    assert!(!text.contains(SECRET), "{path}: the SIP password in an answer: {text}");
    match mode {
        1 => assert_eq!(status, 401, "{path}: no credentials"),
        0 => assert_ne!(status, 401, "{path}: the valid token"),
        _ => {}
    }
    if status == 401 {
        return;
    }
    let call_action = path.starts_with("/rest-api/call/") && !path.ends_with("find") && !path.ends_with("find_all");
    // `/call/startup` may also be over `[limits] max_calls` (503) while refused calls end.
    let expected = matches!(status, 200 | 400 | 404 | 409 | 413) || (matches!(status, 500 | 503) && call_action);
    assert!(expected, "{method} {path}: unexpected status {status}: {text}");
    if status == 400 {
        assert!(!text.trim().is_empty(), "{path}: a 400 says why");
    }
    if status == 200 && (path.ends_with("/find") || path.ends_with("/find_all")) {
        let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"));
        let list = v.as_array().unwrap_or_else(|| panic!("{path}: not a list: {text}"));
        assert!(!list.is_empty(), "{path}: an empty list is a 404");
        assert!(list.iter().all(Value::is_object), "{path}: {text}");
        let _ = list.iter().filter_map(Value::as_object).map(Map::len).sum::<usize>();
    }
});
