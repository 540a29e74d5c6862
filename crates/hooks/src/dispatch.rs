//! The HTTP side of hooks: `POST {restUrl}/{method}` with a JSON body.
//!
//! One pooled keep-alive client serves every application (connections are pooled per host, so
//! each backend gets its own keep-alive connections). hyper-util is used directly rather than
//! reqwest: the dispatcher needs nothing reqwest adds, and the bench (`benches/dispatcher.rs`)
//! compares it against a bare hyper-util client, so the gap is our own code only.
//!
//! Rules (spec/rest-hooks.md §1, §5.4):
//! - success is exactly `200` with a JSON object body (an empty body counts as `{}`);
//! - anything else is an [`InteractionError`]: another status (with the backend's custom reason
//!   when the body is exactly `{"status":…,"reason":"…"}`), unreachable, timeout, a body that is
//!   not a JSON object, or one larger than the limit;
//! - a request that could not be sent (connection refused/reset before sending) is retried up to
//!   `retries` times; a request that was sent is never repeated (hooks are not idempotent);
//! - `timeout` bounds the whole hook, waiting for a free in-flight slot included (an app's
//!   `timeout_ms` / `method_timeout_ms` replaces it for that app / method);
//! - an app's `failover_urls` are tried in order when the URL before could not be reached or its
//!   circuit breaker ([`crate::breaker`], per `host:port`) is open; a request that was sent is
//!   never sent to another URL;
//! - optional body signature `Authorization: WCS <hex hmac-md5(body)>` (`rest_hook_send_hash`);
//! - optional Standard Webhooks signature (`webhook_secrets`, see [`crate::webhooks`]): one
//!   `webhook-id` per request, the same on every connect retry of that request; an event's is
//!   its `eventId`, the same on every retry of that event ([`crate::delivery`]).

use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http::{header, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};

use crate::app::App;
use crate::breaker::{BreakerConfig, Breakers};
use crate::catalogue::HookMethod;
use crate::client_config::FieldList;
use crate::webhooks::WebhookKeys;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// Settings of the dispatcher (server config `[hooks]`). Its `Debug` does not show the key.
#[derive(Clone)]
pub struct DispatcherConfig {
    /// `rest_request_timeout`; `None` = no limit.
    pub timeout: Option<Duration>,
    /// `rest_client_request_retry_count`: extra attempts for a request that could not be sent.
    pub retries: u32,
    /// Largest accepted answer body.
    pub max_response_bytes: usize,
    /// `rest_hook_secret_key` when `rest_hook_send_hash` is on.
    pub signing_key: Option<Vec<u8>>,
    /// Idle keep-alive connections kept per backend host.
    pub pool_max_idle_per_host: usize,
    /// Standard Webhooks keys (`webhook_secrets`); empty = no `webhook-*` headers.
    pub webhook_keys: WebhookKeys,
    /// Circuit breakers per backend (off by default).
    pub breaker: BreakerConfig,
}

impl std::fmt::Debug for DispatcherConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DispatcherConfig")
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("signing_key", &self.signing_key.as_ref().map(|_| "<redacted>"))
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("webhook_keys", &self.webhook_keys)
            .field("breaker", &self.breaker)
            .finish()
    }
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            timeout: Some(Duration::from_secs(15)),
            retries: 3,
            max_response_bytes: 1 << 20,
            signing_key: None,
            pool_max_idle_per_host: 256,
            webhook_keys: WebhookKeys::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// A failed interaction with the backend, in the seed's sense.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum InteractionError {
    #[error("backend answered {code} {reason}")]
    Status { code: u16, reason: String, custom_reason: Option<String> },
    #[error("backend did not answer within {0:?}")]
    Timeout(Duration),
    #[error("backend unreachable after {attempts} attempt(s): {cause}")]
    Unreachable { attempts: u32, cause: String },
    #[error("request to the backend failed: {0}")]
    Transport(String),
    #[error("backend answer is not a JSON object: {0}")]
    BadBody(String),
    #[error("backend answer is larger than {0} bytes")]
    TooLarge(usize),
    #[error("too many hook events queued for this session")]
    QueueFull,
}

impl InteractionError {
    /// The `info` the client gets when this error rejects its action: the backend's custom
    /// reason, else the HTTP reason phrase (WCS behaviour), else a plain description.
    pub fn client_info(&self) -> String {
        match self {
            InteractionError::Status { custom_reason: Some(r), .. } => r.clone(),
            InteractionError::Status { reason, code, .. } if reason.is_empty() => format!("HTTP {code}"),
            InteractionError::Status { reason, .. } => reason.clone(),
            InteractionError::Timeout(_) => "Backend timeout".into(),
            InteractionError::Unreachable { .. } => "Backend unreachable".into(),
            InteractionError::Transport(_) => "Backend connection error".into(),
            InteractionError::BadBody(_) => "Backend answer is not a JSON object".into(),
            InteractionError::TooLarge(_) => "Backend answer too large".into(),
            InteractionError::QueueFull => "Backend event queue full".into(),
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            InteractionError::Status { .. } => "status",
            InteractionError::Timeout(_) => "timeout",
            InteractionError::Unreachable { .. } => "unreachable",
            InteractionError::Transport(_) => "transport",
            InteractionError::BadBody(_) => "bad_body",
            InteractionError::TooLarge(_) => "too_large",
            InteractionError::QueueFull => "queue_full",
        }
    }
}

/// Sends hook requests.
#[derive(Clone)]
pub struct Dispatcher {
    client: Client<Connector, Full<Bytes>>,
    cfg: DispatcherConfig,
    breakers: std::sync::Arc<Breakers>,
}

impl Dispatcher {
    pub fn new(cfg: DispatcherConfig) -> Result<Dispatcher, std::io::Error> {
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(std::io::Error::other)?
            .https_or_http()
            .enable_http1()
            .wrap_connector({
                let mut c = HttpConnector::new();
                c.enforce_http(false);
                c.set_nodelay(true);
                c.set_connect_timeout(cfg.timeout);
                c
            });
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        Ok(Dispatcher { client, breakers: std::sync::Arc::new(Breakers::new(cfg.breaker)), cfg })
    }

    pub fn config(&self) -> &DispatcherConfig {
        &self.cfg
    }

    /// POSTs `body` to `{app.url}/{method}` and returns the whole answer object.
    pub async fn post(
        &self,
        app: &App,
        method: HookMethod,
        body: Bytes,
    ) -> Result<Map<String, Value>, InteractionError> {
        self.post_for(app, method, body, AnswerUse::Full).await
    }

    /// POSTs `body` and reads only as much of the answer as `want` needs. The answer is always
    /// checked to be one JSON object (the contract), but under NOTIFY nothing of it is kept and
    /// under OVERWRITE only the `restOverwrite` fields are built: building the whole answer as a
    /// map is most of a hook's client-side cost (docs/benchmarks.md).
    pub async fn post_for(
        &self,
        app: &App,
        method: HookMethod,
        body: Bytes,
        want: AnswerUse<'_>,
    ) -> Result<Map<String, Value>, InteractionError> {
        self.post_with_id(app, method, body, want, None).await
    }

    /// [`Dispatcher::post_for`] whose Standard Webhooks `webhook-id` is `webhook_id` (an event's
    /// `eventId`, the same on each of its retries) instead of a fresh one.
    pub async fn post_with_id(
        &self,
        app: &App,
        method: HookMethod,
        body: Bytes,
        want: AnswerUse<'_>,
        webhook_id: Option<&str>,
    ) -> Result<Map<String, Value>, InteractionError> {
        match app.timeout(method).or(self.cfg.timeout) {
            Some(t) => tokio::time::timeout(t, self.post_unbounded(app, method, body, want, webhook_id))
                .await
                .unwrap_or(Err(InteractionError::Timeout(t))),
            None => self.post_unbounded(app, method, body, want, webhook_id).await,
        }
    }

    async fn post_unbounded(
        &self,
        app: &App,
        method: HookMethod,
        body: Bytes,
        want: AnswerUse<'_>,
        webhook_id: Option<&str>,
    ) -> Result<Map<String, Value>, InteractionError> {
        let _permit =
            app.in_flight.acquire().await.map_err(|_| InteractionError::Transport("dispatcher closed".into()))?;
        let signature = self.cfg.signing_key.as_deref().map(|k| sign(k, &body));
        let mut webhook_headers = http::HeaderMap::new();
        if !self.cfg.webhook_keys.is_empty() {
            let fresh;
            let id = match webhook_id {
                Some(id) => id,
                None => {
                    fresh = format!("msg_{}", uuid::Uuid::new_v4().simple());
                    &fresh
                }
            };
            self.cfg.webhook_keys.sign_into(&mut webhook_headers, id, crate::webhooks::now_unix(), &body);
        }
        let mut last = None;
        for target in app.targets() {
            let probe = match self.breakers.get(&target.authority) {
                None => None,
                Some(b) => match b.admit() {
                    Some(p) => Some(p),
                    None => {
                        let cause = format!("circuit breaker open for {}", target.authority);
                        last = Some(InteractionError::Unreachable { attempts: 0, cause });
                        continue;
                    }
                },
            };
            let r = self.send_to(app, target.uri(method), &body, signature.as_ref(), &webhook_headers, want).await;
            if let Some(p) = probe {
                p.finish(!breaker_failure(&r));
            }
            match r {
                // Not sent: the next URL (failover_urls) may take it.
                Err(e @ InteractionError::Unreachable { .. }) => last = Some(e),
                r => return r,
            }
        }
        Err(last.expect("an app has at least one URL"))
    }

    /// One URL: sends (trying again while the request could not be sent) and reads the answer.
    async fn send_to(
        &self,
        app: &App,
        uri: &http::Uri,
        body: &Bytes,
        signature: Option<&HeaderValue>,
        webhook_headers: &http::HeaderMap,
        want: AnswerUse<'_>,
    ) -> Result<Map<String, Value>, InteractionError> {
        let mut attempt = 0u32;
        let response = loop {
            attempt += 1;
            // The fixed headers are built once per app; per request only the map is cloned.
            let mut req = Request::new(Full::new(body.clone()));
            *req.method_mut() = Method::POST;
            *req.uri_mut() = uri.clone();
            *req.headers_mut() = app.request_headers().clone();
            if let (None, Some(sig)) = (app.basic_auth(), signature) {
                req.headers_mut().insert(header::AUTHORIZATION, sig.clone());
            }
            for (name, value) in webhook_headers {
                req.headers_mut().insert(name.clone(), value.clone());
            }
            match self.client.request(req).await {
                Ok(resp) => break resp,
                Err(e) if e.is_connect() && attempt <= self.cfg.retries => {
                    // Not sent: safe to try again, with a short growing pause.
                    tokio::time::sleep(Duration::from_millis(10 << attempt.min(6))).await;
                    continue;
                }
                Err(e) if e.is_connect() => {
                    return Err(InteractionError::Unreachable { attempts: attempt, cause: error_chain(&e) })
                }
                Err(e) => return Err(InteractionError::Transport(error_chain(&e))),
            }
        };
        let status = response.status();
        // Only a refusal needs the reason phrase: don't build it for every 200.
        let reason = (status != StatusCode::OK).then(|| {
            response
                .extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_string())
        });
        let limit = self.cfg.max_response_bytes;
        let collected = Limited::new(response.into_body(), limit).collect().await;
        let bytes = match collected {
            Ok(c) => c.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return Err(InteractionError::TooLarge(limit))
            }
            Err(e) => return Err(InteractionError::Transport(e.to_string())),
        };
        if let Some(reason) = reason {
            return Err(InteractionError::Status {
                code: status.as_u16(),
                reason,
                custom_reason: crate::rules::custom_reason(&bytes),
            });
        }
        parse_answer_for(&bytes, want)
    }
}

/// What a circuit breaker counts as its backend failing: not reached, connection error,
/// timeout (counted when the timeout drops the probe), 5xx.
fn breaker_failure(r: &Result<Map<String, Value>, InteractionError>) -> bool {
    match r {
        Ok(_) => false,
        Err(InteractionError::Status { code, .. }) => *code >= 500,
        Err(InteractionError::Unreachable { .. } | InteractionError::Transport(_) | InteractionError::Timeout(_)) => {
            true
        }
        Err(_) => false,
    }
}

/// How much of a 200 answer the caller will use.
#[derive(Debug, Clone, Copy)]
pub enum AnswerUse<'a> {
    /// Nothing (NOTIFY): check that it is one JSON object, keep nothing.
    Validate,
    /// Only these fields (OVERWRITE's `restOverwrite`).
    Fields(&'a FieldList),
    /// Everything (`connect`).
    Full,
}

/// Parses a 200 body for `want`: the body must be one JSON object (or empty, treated as `{}`);
/// the returned map holds the fields `want` asks for.
pub fn parse_answer_for(bytes: &[u8], want: AnswerUse<'_>) -> Result<Map<String, Value>, InteractionError> {
    if let AnswerUse::Full = want {
        return parse_answer(bytes);
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let fields = match want {
        AnswerUse::Fields(f) => Some(f),
        _ => None,
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let picked = serde::de::DeserializeSeed::deserialize(PickFields(fields), &mut de)
        .and_then(|m| de.end().map(|()| m))
        .map_err(|e| InteractionError::BadBody(e.to_string()))?;
    Ok(picked)
}

/// Deserialises one JSON object, keeping only the listed fields (none when `None`) and skipping
/// the rest without building it. Written by hand because serde offers no "object with a runtime
/// list of keys" type; `IgnoredAny` does the skipping.
struct PickFields<'a>(Option<&'a FieldList>);

impl<'de> serde::de::DeserializeSeed<'de> for PickFields<'_> {
    type Value = Map<String, Value>;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PickFields<'_> {
    type Value = Map<String, Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = access.next_key::<std::borrow::Cow<'de, str>>()? {
            match self.0 {
                Some(list) if list.contains(&key) => {
                    let v: Value = access.next_value()?;
                    out.insert(key.into_owned(), v);
                }
                _ => {
                    access.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// Parses a 200 body: a JSON object, or nothing at all (treated as `{}`).
pub fn parse_answer(bytes: &[u8]) -> Result<Map<String, Value>, InteractionError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(InteractionError::BadBody(format!("a JSON {}", json_kind(&other)))),
        Err(e) => Err(InteractionError::BadBody(e.to_string())),
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `Authorization: WCS <hex(hmac-md5(key, body))>` (spec/rest-hooks.md §1, S10).
pub fn sign(key: &[u8], body: &[u8]) -> HeaderValue {
    let mut mac = Hmac::<md5::Md5>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    let hex = hex::encode(mac.finalize().into_bytes());
    HeaderValue::from_str(&format!("WCS {hex}")).expect("hex is a valid header value")
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        assert_eq!(parse_answer(b"").unwrap().len(), 0);
        assert_eq!(parse_answer(b" \n").unwrap().len(), 0);
        assert_eq!(parse_answer(br#"{"a":1}"#).unwrap()["a"], 1);
        assert!(matches!(parse_answer(b"[1]"), Err(InteractionError::BadBody(_))));
        assert!(matches!(parse_answer(b"<html>"), Err(InteractionError::BadBody(_))));
        assert!(matches!(parse_answer(b"null"), Err(InteractionError::BadBody(_))));
    }

    #[test]
    fn answers_read_only_what_is_used() {
        let list = FieldList::parse("callee");
        let body = br#"{"callee":"Bob","caller":"me","nested":{"a":[1,2,{"b":null}]},"s":"x\"y"}"#;
        let m = parse_answer_for(body, AnswerUse::Fields(&list)).unwrap();
        assert_eq!(Value::Object(m), serde_json::json!({"callee":"Bob"}));
        assert!(parse_answer_for(body, AnswerUse::Validate).unwrap().is_empty());
        assert_eq!(parse_answer_for(body, AnswerUse::Full).unwrap().len(), 4);
        for bad in [&b"[1]"[..], b"<html>", b"null", b"\"s\"", b"{\"a\":1} trailing", b"{\"a\":", b"5"] {
            for want in [AnswerUse::Validate, AnswerUse::Fields(&list), AnswerUse::Full] {
                assert!(
                    matches!(parse_answer_for(bad, want), Err(InteractionError::BadBody(_))),
                    "{want:?} {:?}",
                    String::from_utf8_lossy(bad)
                );
            }
        }
        assert!(parse_answer_for(b"  ", AnswerUse::Validate).unwrap().is_empty());
    }

    #[test]
    fn signature_matches_rfc2104_vector() {
        // RFC 2104 test vector 2: key "Jefe", data "what do ya want for nothing?".
        let v = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(v, "WCS 750c783e6ab0b503eaa86e310a5db738");
    }

    #[test]
    fn client_info_prefers_custom_reason() {
        let e = InteractionError::Status {
            code: 403,
            reason: "Forbidden".into(),
            custom_reason: Some("Wrong credentials".into()),
        };
        assert_eq!(e.client_info(), "Wrong credentials");
        let e = InteractionError::Status { code: 403, reason: "Forbidden".into(), custom_reason: None };
        assert_eq!(e.client_info(), "Forbidden");
        let e = InteractionError::Status { code: 599, reason: "".into(), custom_reason: None };
        assert_eq!(e.client_info(), "HTTP 599");
    }
}
