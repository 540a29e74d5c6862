//! Applications: `appKey` -> REST URL, optional HTTP Basic credentials, enabled methods.
//!
//! A client names its application with `appKey` in the `connection` message; the application
//! decides where hooks go. A method that is not enabled for the application is not called and the
//! client's data is used as it is (WCS: `add app-rest-method`). Unlike a fresh WCS app (no methods
//! until added in the CLI), an app in callgate's config has every method enabled unless it lists
//! them: a config file is written on purpose, and a silent "nothing is called" is the worse surprise.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderValue, Uri};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::catalogue::{HookKind, HookMethod};

/// The built-in echo application's name in URLs: `/apps/EchoApp/{method}`.
pub const ECHO_APP: &str = "EchoApp";

/// Which methods an application has enabled: `"all"`, `"none"`, or a list of names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum MethodSelection {
    Keyword(String),
    List(Vec<String>),
}

impl Default for MethodSelection {
    fn default() -> Self {
        MethodSelection::Keyword("all".into())
    }
}

/// One application as written in the config file. Its `Debug` does not show the password.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// REST URL; hooks go to `{url}/{method}`.
    pub url: String,
    /// HTTP Basic credentials for the backend (WCS `restUsername` / `restPassword`).
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// Enabled methods (default: all).
    #[serde(default)]
    pub methods: MethodSelection,
    /// Answer timeout of this app's hooks, ms (default: `[hooks] rest_request_timeout`).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Answer timeout per method, ms (`{ connect = 2000, OnDataEvent = 500 }`); wins over `timeout_ms`.
    #[serde(default)]
    pub method_timeout_ms: BTreeMap<String, u64>,
    /// Direct invocations when the backend is unreachable (could not connect, or its circuit
    /// breaker is open): `{ default = "closed", OnDataEvent = "open" }`. `"rest_on_error"` (the
    /// default): the session's `restOnError` decides, as the seed says; `"open"`: the action goes
    /// on; `"closed"`: it is refused.
    #[serde(default)]
    pub on_unreachable: BTreeMap<String, String>,
    /// Other URLs of the same backend, tried in order when the one before is unreachable or its
    /// circuit breaker is open.
    #[serde(default)]
    pub failover_urls: Vec<String>,
}

/// What a direct invocation does when its backend is unreachable (`on_unreachable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnUnreachable {
    /// The session's `restOnError` decides (the seed's rule).
    #[default]
    RestOnError,
    /// Fail open: the action goes on (logged).
    Open,
    /// Fail closed: the action is refused, also under `restOnError=LOG`.
    Closed,
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("methods", &self.methods)
            .field("timeout_ms", &self.timeout_ms)
            .field("method_timeout_ms", &self.method_timeout_ms)
            .field("on_unreachable", &self.on_unreachable)
            .field("failover_urls", &self.failover_urls)
            .finish()
    }
}

/// Why an application's config was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AppConfigError {
    #[error("app {app:?}: invalid REST URL {url:?}: {reason}")]
    BadUrl { app: String, url: String, reason: String },
    #[error("app {app:?}: unknown hook method {method:?} in `methods`")]
    UnknownMethod { app: String, method: String },
    #[error("app {app:?}: `methods` must be \"all\", \"none\" or a list of method names, not {value:?}")]
    BadMethodKeyword { app: String, value: String },
    #[error("app {app:?}: `username` and `password` go together")]
    HalfCredentials { app: String },
    #[error("app {app:?}: `{key}`: {reason}")]
    BadSetting { app: String, key: &'static str, reason: String },
}

/// One URL of an app: its `host:port` (the circuit breaker's key) and each method's URI.
#[derive(Debug)]
pub struct Target {
    pub authority: Arc<str>,
    method_uris: Box<[Uri]>,
}

impl Target {
    pub fn uri(&self, method: HookMethod) -> &Uri {
        &self.method_uris[method.index()]
    }
}

/// A configured application, ready for the dispatcher.
#[derive(Debug)]
pub struct App {
    pub key: Arc<str>,
    pub url: Arc<str>,
    enabled: [bool; HookMethod::COUNT],
    /// `url`, then the `failover_urls`.
    targets: Box<[Target]>,
    /// Per method: its answer timeout, when the app sets one.
    timeouts: [Option<Duration>; HookMethod::COUNT],
    on_unreachable: [OnUnreachable; HookMethod::COUNT],
    basic_auth: Option<HeaderValue>,
    /// Content-Type, Accept, User-Agent and (when configured) Basic auth: the same on every hook.
    request_headers: http::HeaderMap,
    /// When set, hooks are answered in-process by the echo rule instead of an HTTP round trip.
    echo_in_process: bool,
    /// Bounds the requests in flight to this application's backend.
    pub(crate) in_flight: Arc<Semaphore>,
}

impl App {
    /// Builds an application. `echo_in_process` is decided by the caller (the server knows its
    /// own HTTP address and whether the fast path is enabled).
    pub fn new(key: &str, cfg: &AppConfig, echo_in_process: bool, max_in_flight: usize) -> Result<App, AppConfigError> {
        let base = cfg.url.trim_end_matches('/');
        let targets = std::iter::once(&cfg.url)
            .chain(&cfg.failover_urls)
            .map(|url| target(key, url))
            .collect::<Result<Box<[Target]>, _>>()?;
        let enabled = enabled_methods(key, &cfg.methods)?;
        let (timeouts, on_unreachable) = method_settings(key, cfg)?;
        let basic_auth = match (&cfg.username, &cfg.password) {
            (None, None) => None,
            (Some(u), Some(p)) => {
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
                let mut v = HeaderValue::from_str(&format!("Basic {token}")).expect("base64 is a valid header value");
                v.set_sensitive(true);
                Some(v)
            }
            _ => return Err(AppConfigError::HalfCredentials { app: key.into() }),
        };
        Ok(App {
            key: key.into(),
            url: base.into(),
            enabled,
            targets,
            timeouts,
            on_unreachable,
            request_headers: {
                use http::header;
                let mut h = http::HeaderMap::with_capacity(4);
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json;charset=UTF-8"));
                h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
                h.insert(header::USER_AGENT, HeaderValue::from_static(concat!("callgate/", env!("CARGO_PKG_VERSION"))));
                if let Some(b) = &basic_auth {
                    h.insert(header::AUTHORIZATION, b.clone());
                }
                h
            },
            basic_auth,
            echo_in_process,
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        })
    }

    pub fn is_enabled(&self, method: HookMethod) -> bool {
        self.enabled[method.index()]
    }

    pub fn uri(&self, method: HookMethod) -> &Uri {
        self.targets[0].uri(method)
    }

    /// The app's URL, then its failover URLs.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// The app's own answer timeout for `method` (`None`: the dispatcher's).
    pub fn timeout(&self, method: HookMethod) -> Option<Duration> {
        self.timeouts[method.index()]
    }

    pub fn on_unreachable(&self, method: HookMethod) -> OnUnreachable {
        self.on_unreachable[method.index()]
    }

    /// The headers every hook request of this app carries.
    pub fn request_headers(&self) -> &http::HeaderMap {
        &self.request_headers
    }

    pub fn basic_auth(&self) -> Option<&HeaderValue> {
        self.basic_auth.as_ref()
    }

    pub fn echo_in_process(&self) -> bool {
        self.echo_in_process
    }

    /// True when `url` is the built-in EchoApp served at `http_port` on this host.
    pub fn url_is_builtin_echo(url: &str, http_port: u16) -> bool {
        let Ok(u) = url.trim_end_matches('/').parse::<Uri>() else { return false };
        let local = matches!(u.host(), Some("localhost") | Some("127.0.0.1") | Some("[::1]") | Some("::1"));
        let port = u.port_u16().unwrap_or(if u.scheme_str() == Some("https") { 443 } else { 80 });
        u.scheme_str() == Some("http") && local && port == http_port && u.path() == format!("/apps/{ECHO_APP}")
    }
}

/// Parses one URL of an app.
fn target(key: &str, url: &str) -> Result<Target, AppConfigError> {
    let base = url.trim_end_matches('/');
    let bad = |reason: String| AppConfigError::BadUrl { app: key.into(), url: url.to_string(), reason };
    let parsed: Uri = base.parse().map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
    let port = match parsed.scheme_str() {
        Some("http") => 80,
        Some("https") => 443,
        _ => return Err(bad("the scheme must be http or https".into())),
    };
    let Some(host) = parsed.host() else { return Err(bad("no host".into())) };
    let mut method_uris = Vec::with_capacity(HookMethod::COUNT);
    for m in HookMethod::ALL {
        let u: Uri =
            format!("{base}/{}", m.url_name()).parse().map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
        method_uris.push(u);
    }
    let authority = format!("{host}:{}", parsed.port_u16().unwrap_or(port)).into();
    Ok(Target { authority, method_uris: method_uris.into_boxed_slice() })
}

type MethodSettings = ([Option<Duration>; HookMethod::COUNT], [OnUnreachable; HookMethod::COUNT]);

/// `timeout_ms`, `method_timeout_ms` and `on_unreachable`, resolved per method.
fn method_settings(app: &str, cfg: &AppConfig) -> Result<MethodSettings, AppConfigError> {
    let bad = |key: &'static str, reason: String| AppConfigError::BadSetting { app: app.into(), key, reason };
    let method = |key: &'static str, name: &str| {
        HookMethod::from_name(name.trim()).ok_or_else(|| bad(key, format!("unknown hook method {name:?}")))
    };
    let mut timeouts = [None; HookMethod::COUNT];
    if let Some(ms) = cfg.timeout_ms {
        if ms == 0 {
            return Err(bad("timeout_ms", "must be > 0".into()));
        }
        timeouts = [Some(Duration::from_millis(ms)); HookMethod::COUNT];
    }
    for (name, ms) in &cfg.method_timeout_ms {
        if *ms == 0 {
            return Err(bad("method_timeout_ms", format!("{name}: must be > 0")));
        }
        timeouts[method("method_timeout_ms", name)?.index()] = Some(Duration::from_millis(*ms));
    }
    let policy = |name: &str, v: &str| match v.trim().to_ascii_lowercase().as_str() {
        "open" => Ok(OnUnreachable::Open),
        "closed" => Ok(OnUnreachable::Closed),
        "rest_on_error" => Ok(OnUnreachable::RestOnError),
        _ => Err(bad("on_unreachable", format!("{name}: {v:?} is not \"open\", \"closed\" or \"rest_on_error\""))),
    };
    let mut on_unreachable = [OnUnreachable::RestOnError; HookMethod::COUNT];
    if let Some(v) = cfg.on_unreachable.get("default") {
        on_unreachable = [policy("default", v)?; HookMethod::COUNT];
    }
    for (name, v) in cfg.on_unreachable.iter().filter(|(k, _)| k.as_str() != "default") {
        let m = method("on_unreachable", name)?;
        if m.kind() != HookKind::DirectInvocation {
            return Err(bad("on_unreachable", format!("{name} is not a direct invocation")));
        }
        on_unreachable[m.index()] = policy(name, v)?;
    }
    Ok((timeouts, on_unreachable))
}

fn enabled_methods(app: &str, sel: &MethodSelection) -> Result<[bool; HookMethod::COUNT], AppConfigError> {
    match sel {
        MethodSelection::Keyword(k) if k.eq_ignore_ascii_case("all") => Ok([true; HookMethod::COUNT]),
        MethodSelection::Keyword(k) if k.eq_ignore_ascii_case("none") => Ok([false; HookMethod::COUNT]),
        MethodSelection::Keyword(k) => Err(AppConfigError::BadMethodKeyword { app: app.into(), value: k.clone() }),
        MethodSelection::List(names) => {
            let mut on = [false; HookMethod::COUNT];
            for n in names {
                let m = HookMethod::from_name(n.trim())
                    .ok_or_else(|| AppConfigError::UnknownMethod { app: app.into(), method: n.clone() })?;
                on[m.index()] = true;
            }
            Ok(on)
        }
    }
}

/// All applications by `appKey`.
#[derive(Debug, Default, Clone)]
pub struct AppRegistry {
    apps: HashMap<Arc<str>, Arc<App>>,
}

impl AppRegistry {
    pub fn new(apps: impl IntoIterator<Item = App>) -> AppRegistry {
        AppRegistry { apps: apps.into_iter().map(|a| (a.key.clone(), Arc::new(a))).collect() }
    }

    pub fn get(&self, app_key: &str) -> Option<&Arc<App>> {
        self.apps.get(app_key)
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.apps.keys().map(|k| &**k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(url: &str, methods: MethodSelection) -> AppConfig {
        AppConfig { url: url.into(), methods, ..Default::default() }
    }

    #[test]
    fn urls_and_methods() {
        let app = App::new(
            "k",
            &cfg("http://127.0.0.1:9/rest/", MethodSelection::List(vec!["connect".into(), "sendDTMF".into()])),
            false,
            8,
        )
        .unwrap();
        assert_eq!(app.uri(HookMethod::Connect).to_string(), "http://127.0.0.1:9/rest/connect");
        assert_eq!(app.uri(HookMethod::SendDtmf).to_string(), "http://127.0.0.1:9/rest/sendDtmf");
        assert!(app.is_enabled(HookMethod::Connect) && app.is_enabled(HookMethod::SendDtmf));
        assert!(!app.is_enabled(HookMethod::Call));
        let all = App::new("k", &cfg("https://h/x", MethodSelection::default()), false, 8).unwrap();
        assert!(HookMethod::ALL.iter().all(|m| all.is_enabled(*m)));
    }

    #[test]
    fn bad_configs_are_refused() {
        assert!(matches!(
            App::new("k", &cfg("ftp://h/x", MethodSelection::default()), false, 1),
            Err(AppConfigError::BadUrl { .. })
        ));
        assert!(matches!(
            App::new("k", &cfg("not a url", MethodSelection::default()), false, 1),
            Err(AppConfigError::BadUrl { .. })
        ));
        assert!(matches!(
            App::new("k", &cfg("http://h", MethodSelection::List(vec!["cal".into()])), false, 1),
            Err(AppConfigError::UnknownMethod { .. })
        ));
        assert!(matches!(
            App::new("k", &cfg("http://h", MethodSelection::Keyword("some".into())), false, 1),
            Err(AppConfigError::BadMethodKeyword { .. })
        ));
        let half = AppConfig { username: Some("u".into()), ..cfg("http://h", MethodSelection::default()) };
        assert!(matches!(App::new("k", &half, false, 1), Err(AppConfigError::HalfCredentials { .. })));
    }

    #[test]
    fn timeouts_policies_and_failover_urls() {
        let c = AppConfig {
            url: "http://a.example/h".into(),
            failover_urls: vec!["https://b.example/h/".into(), "http://127.0.0.1:9/h".into()],
            timeout_ms: Some(3000),
            method_timeout_ms: [("connect".to_string(), 500)].into(),
            on_unreachable: [("default".to_string(), "open".to_string()), ("call".into(), "CLOSED".into())].into(),
            ..Default::default()
        };
        let app = App::new("k", &c, false, 1).unwrap();
        let hosts: Vec<&str> = app.targets().iter().map(|t| &*t.authority).collect();
        assert_eq!(hosts, ["a.example:80", "b.example:443", "127.0.0.1:9"]);
        assert_eq!(app.targets()[1].uri(HookMethod::Call).to_string(), "https://b.example/h/call");
        assert_eq!(app.timeout(HookMethod::Connect), Some(Duration::from_millis(500)));
        assert_eq!(app.timeout(HookMethod::Call), Some(Duration::from_secs(3)));
        assert_eq!(app.on_unreachable(HookMethod::Call), OnUnreachable::Closed);
        assert_eq!(app.on_unreachable(HookMethod::Hold), OnUnreachable::Open);
        let plain = App::new("k", &cfg("http://h", MethodSelection::default()), false, 1).unwrap();
        assert_eq!((plain.timeout(HookMethod::Call), plain.targets().len()), (None, 1));
        assert_eq!(plain.on_unreachable(HookMethod::Call), OnUnreachable::RestOnError);
        let bad = |c: AppConfig| App::new("k", &c, false, 1).unwrap_err();
        let base = || cfg("http://h", MethodSelection::default());
        assert!(matches!(bad(AppConfig { timeout_ms: Some(0), ..base() }), AppConfigError::BadSetting { .. }));
        assert!(matches!(
            bad(AppConfig { method_timeout_ms: [("nope".to_string(), 1)].into(), ..base() }),
            AppConfigError::BadSetting { .. }
        ));
        assert!(matches!(
            bad(AppConfig { on_unreachable: [("call".to_string(), "maybe".to_string())].into(), ..base() }),
            AppConfigError::BadSetting { .. }
        ));
        assert!(matches!(
            bad(AppConfig { failover_urls: vec!["ftp://x".into()], ..base() }),
            AppConfigError::BadUrl { .. }
        ));
    }

    #[test]
    fn basic_auth_header() {
        let c = AppConfig {
            username: Some("Aladdin".into()),
            password: Some("open sesame".into()),
            ..cfg("http://h", MethodSelection::default())
        };
        let app = App::new("k", &c, false, 1).unwrap();
        assert_eq!(app.basic_auth().unwrap(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        // Neither the config nor the app shows the password (or the header made of it) in Debug.
        let text = format!("{c:?} {app:?}");
        assert!(!text.contains("open sesame") && !text.contains("QWxhZGRpbjpvcGVuIHNlc2FtZQ"), "{text}");
        assert!(text.contains("Aladdin"), "{text}");
    }

    #[test]
    fn builtin_echo_detection() {
        assert!(App::url_is_builtin_echo("http://localhost:8081/apps/EchoApp", 8081));
        assert!(App::url_is_builtin_echo("http://127.0.0.1:8081/apps/EchoApp/", 8081));
        assert!(!App::url_is_builtin_echo("http://localhost:8082/apps/EchoApp", 8081));
        assert!(!App::url_is_builtin_echo("http://example.com:8081/apps/EchoApp", 8081));
        assert!(!App::url_is_builtin_echo("http://localhost:8081/apps/Other", 8081));
    }
}
