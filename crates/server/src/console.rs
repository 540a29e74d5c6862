//! The console served on the HTTP port (`[console]`, issue 13 item 2): a plain HTML/JS page at
//! `/` (and `/console/`) that uses the official SDK, served from here at
//! `/console/sdk/flashphoner.js` (embedded at build time by `build.rs` from `console/node_modules`:
//! nothing is loaded from elsewhere at run time), and the live hook log at `GET /console/hooks`.
//!
//! | route | what |
//! |---|---|
//! | `/`, `/console`, `/console/` | the page (`console/index.html`) |
//! | `/console/console.js`, `/console/console.css` | its script and style |
//! | `/console/sdk/flashphoner.js` | the SDK's browser bundle; `404` with how to get it when the build had none |
//! | `/console/config.json` | what the page needs: the WebSocket ports, whether the SDK is embedded, how the hook log is protected |
//! | `/console/hooks` | server-sent events: one `hook` event per hook (JSON, [`record_json`]); `lagged` when records were lost |
//!
//! The page, its files and the config hold no data and are served to anyone who reaches the HTTP
//! port (by default loopback only). The hook log shows what the backend receives, so it is
//! guarded ([`Access`]): with `[console] admin_token` set it needs that token (`Authorization:
//! Bearer`, or `?token=` since `EventSource` cannot send headers; `401` otherwise); without one it
//! is open to loopback clients whose `Host` is a loopback name or an address (not a page on a DNS
//! name rebound to this host) while the REST API has no credentials either (the REST API is open
//! to the same clients then, and shows as much); once the REST API has credentials, a feed
//! without a token is off (`403` with the reason). Bodies and answers are masked as the logs are
//! ([`crate::secrets::redact_value`]: `sipPassword`, every password, token, secret and
//! authorization). At most `max_listeners` listen at once (`503` past that); each listener ends
//! when the server shuts down.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use callgate_hooks::{HookFeed, HookRecord};
use futures_util::stream::{self, Stream};
use futures_util::StreamExt as _;
use serde_json::{json, Value};
use tokio::sync::{broadcast::error::RecvError, watch, OwnedSemaphorePermit, Semaphore};

use crate::config::Config;
use crate::secrets::{redact_value, scrub_text};
use crate::wire::ConnAddrs;

const PAGE: &str = include_str!("../../../console/index.html");
const SCRIPT: &str = include_str!("../../../console/console.js");
const STYLE: &str = include_str!("../../../console/console.css");

/// The SDK's browser bundle, when the build found it (`build.rs`).
#[cfg(console_sdk)]
const SDK: Option<&[u8]> = Some(include_bytes!(env!("CALLGATE_CONSOLE_SDK")));
#[cfg(not(console_sdk))]
const SDK: Option<&[u8]> = None;

/// What `/console/sdk/flashphoner.js` says when the build had no SDK.
const NO_SDK: &str = "This callgate was built without the official SDK's browser bundle. Run \
`npm ci --prefix console` in the source tree (make run and make test do), then build again: \
crates/server/build.rs embeds console/node_modules/@flashphoner/websdk/flashphoner.js.";

/// Only the page's own files: no script, style, font or image from elsewhere; WebSockets to
/// any host (the page connects to the server URL its user types); media from the browser.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
media-src 'self' blob: mediastream:; connect-src 'self' ws: wss:";

/// Who may read the hook log (module docs).
#[derive(Clone, Debug)]
pub enum Access {
    /// With this bearer token only.
    Token(Arc<str>),
    /// Loopback clients with a local `Host`, no token.
    Loopback,
    /// Nobody: why.
    Off(&'static str),
}

impl Access {
    pub fn from_config(cfg: &Config) -> Access {
        if !cfg.console.admin_token.is_empty() {
            Access::Token(cfg.console.admin_token.as_str().into())
        } else if cfg.rest_api.requires_auth() {
            Access::Off(
                "the hook log needs [console] admin_token (CALLGATE_CONSOLE__ADMIN_TOKEN) once the REST API has credentials",
            )
        } else {
            Access::Loopback
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Access::Token(_) => "token",
            Access::Loopback => "loopback",
            Access::Off(_) => "off",
        }
    }
}

#[derive(Clone)]
struct Console {
    feed: HookFeed,
    access: Access,
    listeners: Arc<Semaphore>,
    stopping: watch::Receiver<bool>,
    config: Arc<Value>,
}

/// What the console's routes need, from `start()`.
pub struct ConsoleParts {
    pub feed: HookFeed,
    pub ws_addr: SocketAddr,
    pub wss_addr: Option<SocketAddr>,
    /// The server's stopping flag: each hook-log stream ends when it turns true.
    pub stopping: watch::Receiver<bool>,
}

/// The console's routes; empty when `[console] enabled = false`.
pub fn router(cfg: &Config, parts: ConsoleParts) -> Router {
    if !cfg.console.enabled {
        return Router::new();
    }
    let access = Access::from_config(cfg);
    let config = json!({
        "wsPort": parts.ws_addr.port(),
        "wssPort": parts.wss_addr.map(|a| a.port()),
        "sdk": SDK.is_some(),
        "hookLog": access.label(),
        "hookLogReason": match &access { Access::Off(why) => Some(*why), _ => None },
    });
    let state = Console {
        feed: parts.feed,
        access,
        listeners: Arc::new(Semaphore::new(cfg.console.max_listeners)),
        stopping: parts.stopping,
        config: Arc::new(config),
    };
    Router::new()
        .route("/", get(page))
        .route("/console", get(page))
        .route("/console/", get(page))
        .route("/console/console.js", get(|| async { asset("application/javascript; charset=utf-8", SCRIPT) }))
        .route("/console/console.css", get(|| async { asset("text/css; charset=utf-8", STYLE) }))
        .route("/console/sdk/flashphoner.js", get(sdk))
        .route("/console/config.json", get(config_json))
        .route("/console/hooks", get(hooks))
        .with_state(state)
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CONTENT_SECURITY_POLICY, CSP)], PAGE).into_response()
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, kind)], body).into_response()
}

async fn sdk() -> Response {
    match SDK {
        Some(bytes) => ([(header::CONTENT_TYPE, "application/javascript; charset=utf-8")], bytes).into_response(),
        None => (StatusCode::NOT_FOUND, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], NO_SDK).into_response(),
    }
}

async fn config_json(State(c): State<Console>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], c.config.to_string()).into_response()
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], why).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer realm=\"callgate console\""));
    }
    r
}

/// Whether this request may read the hook log: `Err` is the refusal to send.
fn admit(
    access: &Access,
    headers: &HeaderMap,
    query_token: Option<&str>,
    remote: SocketAddr,
) -> Result<(), (StatusCode, &'static str)> {
    match access {
        Access::Off(why) => Err((StatusCode::FORBIDDEN, why)),
        Access::Token(token) => {
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
                .map(str::trim);
            match bearer.or(query_token) {
                Some(t) if crate::rest_api::constant_time_eq(t.as_bytes(), token.as_bytes()) => Ok(()),
                Some(_) => Err((StatusCode::UNAUTHORIZED, "wrong console token")),
                None => Err((
                    StatusCode::UNAUTHORIZED,
                    "the hook log needs the console token: Authorization: Bearer <token> or ?token=<token>",
                )),
            }
        }
        Access::Loopback => {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
            if !remote.ip().is_loopback() {
                Err((
                    StatusCode::FORBIDDEN,
                    "without [console] admin_token the hook log is open to loopback clients only",
                ))
            } else if !host.is_empty() && !crate::rest_api::host_is_local_or_address(host) {
                Err((StatusCode::FORBIDDEN, "unexpected Host for a hook log without a token"))
            } else {
                Ok(())
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct HooksQuery {
    token: Option<String>,
}

async fn hooks(
    State(c): State<Console>,
    ConnectInfo(addrs): ConnectInfo<ConnAddrs>,
    Query(q): Query<HooksQuery>,
    headers: HeaderMap,
) -> Response {
    if let Err((status, why)) = admit(&c.access, &headers, q.token.as_deref(), addrs.remote) {
        tracing::info!(remote = %addrs.remote, %status, why, "console hook log refused");
        return refuse(status, why);
    }
    let Ok(permit) = c.listeners.clone().try_acquire_owned() else {
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "too many hook log listeners ([console] max_listeners)");
    };
    tracing::info!(remote = %addrs.remote, "console hook log opened");
    Sse::new(feed_events(c.feed.subscribe(), c.stopping, permit))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// The hook log as SSE events, until the server stops.
fn feed_events(
    listener: callgate_hooks::FeedListener,
    stopping: watch::Receiver<bool>,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    // First event at once: the client knows the log is open (and the test, that it listens).
    let hello = Event::default().event("open").data("{}");
    stream::once(async move { Ok(hello) }).chain(stream::unfold(
        (listener, stopping, permit),
        |(mut listener, mut stopping, permit)| async move {
            let event = tokio::select! {
                r = listener.recv() => match r {
                    Ok(record) => Event::default().event("hook").data(record_json(&record).to_string()),
                    Err(RecvError::Lagged(n)) => Event::default().event("lagged").data(json!({"missed": n}).to_string()),
                    Err(RecvError::Closed) => return None,
                },
                _ = stopping.wait_for(|s| *s) => return None,
            };
            Some((Ok(event), (listener, stopping, permit)))
        },
    ))
}

/// One hook as the log shows it, secrets masked.
pub fn record_json(r: &HookRecord) -> Value {
    let mut body = r.body.clone();
    redact_value(&mut body);
    let mut answer = r.answer.clone().map(Value::Object);
    if let Some(a) = answer.as_mut() {
        redact_value(a);
    }
    json!({
        "time": r.at.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default(),
        "app": &*r.app,
        "method": r.method.url_name(),
        "session": r.session,
        "backend": if r.http { "http" } else { "in-process" },
        "body": body,
        "status": r.status,
        "answer": answer,
        "error": r.error.as_ref().map(|e| scrub_text(&e.to_string()).into_owned()),
        "latencyMs": (r.latency.as_secs_f64() * 10_000.0).round() / 10.0,
        "attempts": r.attempts,
        "decision": r.decision(),
        "verdict": format!("{:?}", r.verdict),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        pairs.iter().map(|(k, v)| (k.clone(), v.parse().unwrap())).collect()
    }

    #[test]
    fn access_rules() {
        let local: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let far: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let token = Access::Token("t0k".into());
        let bearer = headers(&[(header::AUTHORIZATION, "Bearer t0k")]);
        assert!(admit(&token, &bearer, None, far).is_ok());
        assert!(admit(&token, &HeaderMap::new(), Some("t0k"), far).is_ok());
        assert_eq!(admit(&token, &HeaderMap::new(), Some("t0"), local).unwrap_err().0, StatusCode::UNAUTHORIZED);
        assert_eq!(admit(&token, &HeaderMap::new(), None, local).unwrap_err().0, StatusCode::UNAUTHORIZED);
        let lo = Access::Loopback;
        assert!(admit(&lo, &headers(&[(header::HOST, "127.0.0.1:8081")]), None, local).is_ok());
        assert_eq!(admit(&lo, &HeaderMap::new(), None, far).unwrap_err().0, StatusCode::FORBIDDEN);
        assert_eq!(
            admit(&lo, &headers(&[(header::HOST, "rebound.example:8081")]), None, local).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        assert_eq!(admit(&Access::Off("no"), &bearer, Some("t0k"), local).unwrap_err(), (StatusCode::FORBIDDEN, "no"));
    }

    #[test]
    fn access_from_config() {
        let c = Config::from_toml("").unwrap();
        assert!(matches!(Access::from_config(&c), Access::Loopback));
        let c = Config::from_toml("[rest_api]\ntokens = [\"x\"]").unwrap();
        assert!(matches!(Access::from_config(&c), Access::Off(_)));
        let c = Config::from_toml("[rest_api]\ntokens = [\"x\"]\n[console]\nadmin_token = \"a\"").unwrap();
        assert!(matches!(Access::from_config(&c), Access::Token(t) if &*t == "a"));
    }
}
