//! `sendXcapRequest`: an HTTP request to an XCAP server (RFC 4825) made for the client, with
//! the session's SIP credentials when the server asks for them, reported as `XcapStatusEvent`
//! (backend) and `notifyXcapResponse` (client).
//!
//! The `xcapObject` fields are UNCONFIRMED in the sources; callgate reads `id` (made when
//! absent), `url` (required), `method` (`GET` (default), `PUT` or `DELETE`), `body` and
//! `contentType` (default `application/xml` when there is a body).
//!
//! **Not an open proxy.** The URL (after the `sendXcapRequest` hook, which may rewrite it under
//! OVERWRITE) must be under one of `[xcap] allowed_base_urls`: same scheme, host and port, and
//! a path that starts with the base's path on a segment boundary. Anything else is `FAILED`
//! `XCAP URL not allowed: <url>` and nothing is sent. Redirects are not followed.
//!
//! **Not a way into the server's network (SSRF).** The host must then also pass
//! [`crate::netguard`]: an IP literal, or every address a name resolves to, outside loopback,
//! private, link-local, CGNAT, multicast and the other internal ranges unless `[security]
//! allowed_private_ranges` lists it, and the connection goes to the checked address. A refused
//! one is `FAILED` `XCAP URL not allowed: <url>: 10.0.0.1 is a private address (not in
//! security.allowed_private_ranges)`, and no connection is attempted.
//!
//! A `401` with `WWW-Authenticate: Digest` (MD5/SHA-256, qop auth) is answered once with the
//! session's `sipAuthenticationName` (else `sipLogin`) and `sipPassword`; `Basic` only over
//! https. The path is normalised (encoded dots decoded, dot segments resolved) before the check.
//!
//! | outcome | `status` | other fields |
//! |---|---|---|
//! | HTTP 2xx | `ACCEPTED` | `httpStatus`, `contentType`, `body` (the answer's, as text) |
//! | HTTP ≥ 300 | `FAILED`, `info: "HTTP 404 Not Found"` | same |
//! | refused hook / URL not allowed / timeout (`[xcap] timeout_ms`) / connection error / answer over `max_response_bytes` | `FAILED` with the reason | — |

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use callgate_hooks::{HookMethod, Origin};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};

use crate::config::{SecuritySection, XcapSection};
use crate::netguard::{self, GuardedConnector};
use crate::party::{Party, SipCredentials};

pub use callgate_proto::info::{XCAP_TIMEOUT as TIMEOUT, XCAP_URL_NOT_ALLOWED as NOT_ALLOWED};
pub use callgate_proto::messages::NOTIFY_XCAP_RESPONSE as CLIENT_MESSAGE;
pub use callgate_proto::status::xcap::{ACCEPTED, FAILED};

type Connector = hyper_rustls::HttpsConnector<GuardedConnector>;

/// One allowed base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    scheme: String,
    host: String,
    port: u16,
    path: String,
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// Scheme, lower-case host, port and path of an absolute http(s) URL without credentials.
fn split(url: &str) -> Result<(String, String, u16, String, http::Uri), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase).ok_or_else(|| format!("{url:?} has no scheme"))?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("{url:?}: only http and https"));
    }
    let auth = uri.authority().ok_or_else(|| format!("{url:?} has no host"))?;
    if auth.as_str().contains('@') {
        return Err(format!("{url:?}: credentials in the URL are not accepted"));
    }
    let host = auth.host().to_ascii_lowercase();
    let port = auth.port_u16().unwrap_or_else(|| default_port(&scheme));
    let path = uri.path().to_string();
    Ok((scheme, host, port, path, uri))
}

impl Base {
    pub fn parse(url: &str) -> Result<Base, String> {
        let (scheme, host, port, path, uri) = split(url)?;
        if uri.query().is_some() {
            return Err(format!("{url:?}: a base URL has no query"));
        }
        // Normalised as the URLs it is compared with are.
        let path = normalise_path(&path).map_err(|e| format!("{url:?}: {e}"))?;
        Ok(Base { scheme, host, port, path })
    }

    /// `path` (normalised by [`normalise_path`]) is under this base.
    fn covers(&self, scheme: &str, host: &str, port: u16, path: &str) -> bool {
        if (scheme, host, port) != (self.scheme.as_str(), self.host.as_str(), self.port) {
            return false;
        }
        let base = self.path.trim_end_matches('/');
        path == base || path.starts_with(&format!("{base}/")) || base.is_empty()
    }
}

/// The path as the XCAP server will read it, so that the allow-list compares what is really
/// asked for: percent-encoded unreserved characters decoded (RFC 3986 §6.2.2.2, so `%2e` is a
/// dot and `.%2e` a `..` segment), then dot segments resolved (§5.2.4). Encoded slashes and
/// backslashes (`%2f`, `%5c`, `\`) are refused: servers disagree on whether they separate
/// segments. So is a dot segment with parameters (`..;x`, `.;`, `..%3Bx`): Tomcat, Jetty and
/// Spring drop the `;` part and resolve what is left as a dot segment, which RFC 3986 does not.
/// Other escapes stay as they are (the server decodes them once, as we would).
fn normalise_path(path: &str) -> Result<String, String> {
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err("a backslash in the path".into()),
            b'%' => {
                let hex = path.get(i + 1..i + 3).ok_or("a truncated percent escape in the path")?;
                let v = u8::from_str_radix(hex, 16).map_err(|_| "a bad percent escape in the path")?;
                if v == b'/' || v == b'\\' {
                    return Err("an encoded slash in the path".into());
                }
                if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') {
                    decoded.push(char::from(v));
                } else {
                    decoded.push('%');
                    decoded.push_str(&hex.to_ascii_uppercase());
                }
                i += 3;
            }
            _ => {
                // Whole characters (the path is a str; `http::Uri` only lets ASCII through).
                let c = path[i..].chars().next().unwrap_or_default();
                decoded.push(c);
                i += c.len_utf8();
            }
        }
    }
    // RFC 3986 §5.2.4 on an absolute path.
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    for (n, seg) in segments.iter().enumerate() {
        let last = n + 1 == segments.len();
        let before_params = seg.split(';').next().unwrap_or_default();
        let before_params = before_params.split("%3B").next().unwrap_or_default();
        if before_params.len() < seg.len() && matches!(before_params, "." | "..") {
            return Err("a dot segment with parameters (;) in the path".into());
        }
        match *seg {
            "." | ".." => {
                if *seg == ".." {
                    out.pop();
                }
                if last {
                    out.push(""); // "/a/b/.." is "/a/"
                }
            }
            s => out.push(s),
        }
    }
    Ok(format!("/{}", out.join("/")))
}

/// The allowed bases of `[xcap] allowed_base_urls`, parsed (`callgate_server::validate` refuses
/// a bad one before any port is bound).
pub fn bases(cfg: &XcapSection) -> anyhow::Result<Vec<Base>> {
    cfg.allowed_base_urls
        .iter()
        .map(|u| Base::parse(u).map_err(|e| anyhow::anyhow!("xcap.allowed_base_urls: {e}")))
        .collect()
}

/// The request URI when `url` is under one of `bases`: the normalised URL, so the request
/// asks for exactly the path that was checked.
pub fn allowed(bases: &[Base], url: &str) -> Result<http::Uri, String> {
    let (scheme, host, port, path, uri) = split(url).map_err(|e| format!("{NOT_ALLOWED}: {e}"))?;
    let path = normalise_path(&path).map_err(|e| format!("{NOT_ALLOWED}: {url}: {e}"))?;
    if !bases.iter().any(|b| b.covers(&scheme, &host, port, &path)) {
        return Err(format!("{NOT_ALLOWED}: {url}"));
    }
    let mut parts = uri.into_parts();
    let pq = match parts.path_and_query.as_ref().and_then(|p| p.query()) {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    parts.path_and_query = Some(pq.parse().map_err(|e| format!("{NOT_ALLOWED}: {url}: {e}"))?);
    http::Uri::from_parts(parts).map_err(|e| format!("{NOT_ALLOWED}: {url}: {e}"))
}

/// `[xcap]` as the node uses it: the allowed bases, parsed once, and the HTTP client whose
/// connector is guarded by `[security]` ([`crate::netguard`]).
pub struct Xcap {
    cfg: XcapSection,
    bases: Vec<Base>,
    client: Client<Connector, Full<Bytes>>,
}

impl Xcap {
    pub fn new(cfg: &XcapSection, security: &SecuritySection) -> anyhow::Result<Xcap> {
        let guard = netguard::Guard::new(&security.allowed_private_ranges)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)?
            .https_or_http()
            .enable_http1()
            .wrap_connector(GuardedConnector::new(guard));
        Ok(Xcap { cfg: cfg.clone(), bases: bases(cfg)?, client: Client::builder(TokioExecutor::new()).build(https) })
    }
}

/// The client-facing text of a failed request: a guard refusal says which address and why.
fn request_failed(url: &http::Uri, e: hyper_util::client::legacy::Error) -> String {
    match netguard::refusal(&e) {
        Some(r) => format!("{NOT_ALLOWED}: {url}: {r}"),
        None => callgate_proto::info::xcap_request_failed(e),
    }
}

struct Answer {
    status: u16,
    reason: String,
    content_type: Option<String>,
    www_authenticate: Vec<String>,
    body: Bytes,
}

async fn request(
    client: &Client<Connector, Full<Bytes>>,
    method: &str,
    uri: &http::Uri,
    body: &Option<(String, Bytes)>,
    authorization: Option<String>,
    max: usize,
) -> Result<Answer, String> {
    let mut b = http::Request::builder()
        .method(method)
        .uri(uri.clone())
        .header(http::header::USER_AGENT, concat!("callgate/", env!("CARGO_PKG_VERSION")));
    if let Some(a) = authorization {
        b = b.header(http::header::AUTHORIZATION, a);
    }
    let payload = match body {
        Some((ct, bytes)) => {
            b = b.header(http::header::CONTENT_TYPE, ct.as_str());
            bytes.clone()
        }
        None => Bytes::new(),
    };
    let req = b.body(Full::new(payload)).map_err(callgate_proto::info::failed_by_error)?;
    let resp = client.request(req).await.map_err(|e| request_failed(uri, e))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = Limited::new(resp.into_body(), max)
        .collect()
        .await
        .map_err(|e| callgate_proto::info::xcap_answer_unreadable(max, e))?
        .to_bytes();
    Ok(Answer {
        status: status.as_u16(),
        reason: status.canonical_reason().unwrap_or("").to_string(),
        content_type: headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string),
        www_authenticate: headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect(),
        body,
    })
}

/// The `Authorization` answering one of `challenges` (Digest preferred, else Basic, which is
/// only sent over https).
fn answer_challenge(
    challenges: &[String],
    user: &str,
    password: &str,
    method: &str,
    uri: &http::Uri,
) -> Option<String> {
    use callgate_sip::digest::{self, Algorithm, DigestChallenge};
    for c in challenges {
        let Ok(ch) = callgate_sip::Challenge::parse(c) else { continue };
        if !ch.is_digest() {
            continue;
        }
        let (Some(realm), Some(nonce)) = (ch.realm(), ch.nonce()) else { continue };
        let Some(algorithm) = Algorithm::parse(ch.algorithm().as_deref()) else { continue };
        let qop_auth = ch.qop_options().any(|q| q.eq_ignore_ascii_case("auth"));
        if !qop_auth && ch.qop_options().next().is_some() {
            continue; // auth-int only
        }
        let dc = DigestChallenge {
            realm: realm.into_owned(),
            nonce: nonce.into_owned(),
            opaque: ch.opaque().map(|o| o.into_owned()),
            algorithm,
            qop_auth,
            stale: false,
        };
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let cnonce = uuid::Uuid::new_v4().simple().to_string();
        return Some(digest::authorization(&dc, user, password, method, path, 1, &cnonce));
    }
    // Basic hands over the password itself: only over TLS. Over http the 401 is the answer.
    let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    if tls && challenges.iter().any(|c| c.trim_start().to_ascii_lowercase().starts_with("basic")) {
        use base64::Engine;
        return Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        ));
    }
    None
}

/// `sendXcapRequest` from the client.
pub fn send(xcap: Arc<Xcap>, ctx: Arc<Party>, obj: Map<String, Value>) {
    tokio::spawn(run(xcap, ctx, obj));
}

fn text(obj: &Map<String, Value>, k: &str) -> Option<String> {
    match obj.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

async fn run(xcap: Arc<Xcap>, ctx: Arc<Party>, obj: Map<String, Value>) {
    let mut data = ctx.with_context(obj);
    let id = text(&data, "id").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    data.insert("id".into(), id.as_str().into());
    let hook = ctx.direct(HookMethod::SendXcapRequest, &mut data).await;
    data.insert("id".into(), id.as_str().into());
    let url = text(&data, "url").unwrap_or_default();
    let method = text(&data, "method").unwrap_or_else(|| "GET".into()).to_ascii_uppercase();
    let mut ev = Map::new();
    for k in ["nodeId", "appKey", "sessionId", "id"] {
        ev.insert(k.into(), data.get(k).cloned().unwrap_or(Value::Null));
    }
    ev.insert("url".into(), url.as_str().into());
    ev.insert("method".into(), method.as_str().into());
    let outcome = match hook {
        Err(why) => Err(why),
        Ok(()) => exchange(&xcap, &ctx, &data, &url, &method).await,
    };
    match outcome {
        Ok(a) => {
            let ok = (200..300).contains(&a.status);
            ev.insert("status".into(), if ok { ACCEPTED } else { FAILED }.into());
            ev.insert(
                "info".into(),
                if ok { String::new() } else { callgate_proto::info::xcap_http_status(a.status, &a.reason) }.into(),
            );
            ev.insert("httpStatus".into(), a.status.into());
            ev.insert("contentType".into(), a.content_type.unwrap_or_default().into());
            ev.insert("body".into(), String::from_utf8_lossy(&a.body).into_owned().into());
        }
        Err(info) => {
            ev.insert("status".into(), FAILED.into());
            ev.insert("info".into(), info.into());
        }
    }
    tracing::info!(session = &*ctx.id, id, url, method, status = ?ev.get("status"), info = ?ev.get("info"), "XCAP request");
    ctx.raise_event(HookMethod::XcapStatusEvent, Origin::Client, ev, Some(CLIENT_MESSAGE));
}

async fn exchange(
    xcap: &Xcap,
    ctx: &Party,
    data: &Map<String, Value>,
    url: &str,
    method: &str,
) -> Result<Answer, String> {
    if url.is_empty() {
        return Err(callgate_proto::info::NO_URL.into());
    }
    if !matches!(method, "GET" | "PUT" | "DELETE") {
        return Err(callgate_proto::info::xcap_method_not_supported(method));
    }
    let cfg = &xcap.cfg;
    let uri = allowed(&xcap.bases, url)?;
    let body = match data.get("body") {
        Some(Value::String(s)) if !s.is_empty() => {
            Some((text(data, "contentType").unwrap_or_else(|| "application/xml".into()), Bytes::from(s.clone())))
        }
        _ => None,
    };
    let creds = SipCredentials::from_connection(&ctx.data_ref());
    let client = &xcap.client;
    let max = cfg.max_response_bytes;
    let work = async {
        let first = request(client, method, &uri, &body, None, max).await?;
        if first.status != 401 {
            return Ok(first);
        }
        let Some(c) = creds.filter(|c| !c.password.is_empty()) else { return Ok(first) };
        let user = c.auth_name.clone().unwrap_or_else(|| c.login.clone());
        match answer_challenge(&first.www_authenticate, &user, &c.password, method, &uri) {
            Some(auth) => request(client, method, &uri, &body, Some(auth), max).await,
            None => Ok(first),
        }
    };
    tokio::time::timeout(Duration::from_millis(cfg.timeout_ms), work).await.map_err(|_| TIMEOUT.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_urls_under_an_allowed_base() {
        let bases = vec![
            Base::parse("http://127.0.0.1:8080/xcap-root/").unwrap(),
            Base::parse("https://XCAP.example.com").unwrap(),
        ];
        let ok = |u: &str| allowed(&bases, u).is_ok();
        assert!(ok("http://127.0.0.1:8080/xcap-root/resource-lists/users/sip:a@b/index"));
        assert!(ok("http://127.0.0.1:8080/xcap-root"));
        assert!(ok("https://xcap.example.com/anything?q=1"));
        assert!(ok("https://xcap.example.com:443/x"));
        assert!(!ok("http://127.0.0.1:8080/xcap-rootless/x"), "segment boundary");
        assert!(!ok("http://127.0.0.1:8080/other"));
        assert!(!ok("http://127.0.0.1:8081/xcap-root/x"), "another port");
        assert!(!ok("https://127.0.0.1:8080/xcap-root/x"), "another scheme");
        assert!(!ok("http://xcap.example.com/x"), "http is not https");
        assert!(!ok("https://xcap.example.com.evil.test/x"));
        assert!(!ok("https://user@xcap.example.com/x"), "userinfo");
        assert!(!ok("http://127.0.0.1:8080/xcap-root/../admin"), "dot segments");
        assert!(!ok("file:///etc/passwd"));
        assert!(!ok("not a url"));
        assert!(allowed(&[], "http://127.0.0.1:8080/xcap-root/x").unwrap_err().starts_with(NOT_ALLOWED));
    }

    /// Issue 14 item 10: encoded dots made `..` segments the check did not see.
    #[test]
    fn encoded_dot_segments_do_not_leave_the_base() {
        let bases = vec![Base::parse("http://127.0.0.1:8080/xcap-root/").unwrap()];
        let ok = |u: &str| allowed(&bases, u).map(|u| u.to_string());
        for bad in [
            "http://127.0.0.1:8080/xcap-root/.%2e/admin",
            "http://127.0.0.1:8080/xcap-root/%2e./admin",
            "http://127.0.0.1:8080/xcap-root/%2E%2e/admin",
            "http://127.0.0.1:8080/xcap-root/x/../../admin",
            "http://127.0.0.1:8080/xcap-root/./.%2E/admin",
            "http://127.0.0.1:8080/xcap-root/..",
            "http://127.0.0.1:8080/xcap-root%2f..%2fadmin",
            "http://127.0.0.1:8080/xcap-root/%2e%2e%2fadmin",
            "http://127.0.0.1:8080/xcap-root/%5c../admin",
            "http://127.0.0.1:8080/xcap-root/%2",
            "http://127.0.0.1:8080/xcap-root/%zz",
            "http://127.0.0.1:8080/%78cap-root/../admin",
            // Path parameters on dot segments (Tomcat, Jetty, Spring resolve `..;x` as `..`).
            "http://127.0.0.1:8080/xcap-root/..;x/admin",
            "http://127.0.0.1:8080/xcap-root/..;/admin",
            "http://127.0.0.1:8080/xcap-root/.;x/../../admin",
            "http://127.0.0.1:8080/xcap-root/%2e%2e;jsessionid=1/admin",
            "http://127.0.0.1:8080/xcap-root/.%2E%3bx/admin",
            "http://127.0.0.1:8080/xcap-root/x/..;",
        ] {
            assert!(ok(bad).is_err(), "{bad} must be refused, got {:?}", ok(bad));
        }
        // What is sent is the normalised URL that was checked.
        assert_eq!(
            ok("http://127.0.0.1:8080/xcap-root/a/./b/../%63%2E%7e/sip:3000@h?q=%2e").unwrap(),
            "http://127.0.0.1:8080/xcap-root/a/c.~/sip:3000@h?q=%2e"
        );
        assert_eq!(ok("http://127.0.0.1:8080/%78cap-root/x").unwrap(), "http://127.0.0.1:8080/xcap-root/x");
        assert_eq!(ok("http://127.0.0.1:8080/xcap-root/a%20b").unwrap(), "http://127.0.0.1:8080/xcap-root/a%20b");
        assert_eq!(
            ok("http://127.0.0.1:8080/xcap-root/a;b/..x;y").unwrap(),
            "http://127.0.0.1:8080/xcap-root/a;b/..x;y"
        );
        assert_eq!(ok("http://127.0.0.1:8080/xcap-root/x/..").unwrap(), "http://127.0.0.1:8080/xcap-root/");
        // A base is normalised the same way.
        let bases = vec![Base::parse("http://h/%7Euser/./xcap/").unwrap()];
        assert!(allowed(&bases, "http://h/~user/xcap/doc").is_ok());
        assert!(allowed(&bases, "http://h/~user/other").is_err());
        assert!(Base::parse("http://h/a%2fb/").is_err());
    }

    #[test]
    fn challenges_are_answered_digest_first() {
        let uri: http::Uri = "http://h/xcap-root/doc?x".parse().unwrap();
        let d = answer_challenge(
            &["Basic realm=\"x\"".into(), "Digest realm=\"xcap\", nonce=\"n1\", qop=\"auth\"".into()],
            "3000",
            "pw",
            "GET",
            &uri,
        )
        .unwrap();
        assert!(
            d.starts_with("Digest username=\"3000\", realm=\"xcap\", nonce=\"n1\", uri=\"/xcap-root/doc?x\""),
            "{d}"
        );
        assert!(d.contains("qop=auth, nc=00000001"), "{d}");
        let tls: http::Uri = "https://h/xcap-root/doc".parse().unwrap();
        let b = answer_challenge(&["Basic realm=\"x\"".into()], "3000", "pw", "GET", &tls).unwrap();
        assert_eq!(b, "Basic MzAwMDpwdw==");
        assert_eq!(
            answer_challenge(&["Basic realm=\"x\"".into()], "3000", "pw", "GET", &uri),
            None,
            "no password in clear over http"
        );
        assert!(answer_challenge(&["Bearer x".into()], "u", "p", "GET", &uri).is_none());
        assert!(answer_challenge(&["Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"".into()], "u", "p", "GET", &uri)
            .is_none());
    }
}
