//! Applications: `appKey` -> REST URL, optional HTTP Basic credentials, enabled methods.
//!
//! A client names its application with `appKey` in the `connection` message; the application
//! decides where hooks go. A method that is not enabled for the application is not called and the
//! client's data is used as it is (WCS: `add app-rest-method`). Unlike a fresh WCS app (no methods
//! until added in the CLI), an app in callgate's config has every method enabled unless it lists
//! them: a config file is written on purpose, and a silent "nothing is called" is the worse surprise.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use http::{HeaderValue, Uri};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::catalogue::HookMethod;

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
#[derive(Clone, PartialEq, Eq, Deserialize)]
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
}

impl std::fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("methods", &self.methods)
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
}

/// A configured application, ready for the dispatcher.
#[derive(Debug)]
pub struct App {
    pub key: Arc<str>,
    pub url: Arc<str>,
    enabled: [bool; HookMethod::COUNT],
    method_uris: Box<[Uri]>,
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
        let bad = |reason: String| AppConfigError::BadUrl { app: key.into(), url: cfg.url.clone(), reason };
        let parsed: Uri = base.parse().map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
        match parsed.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(bad("the scheme must be http or https".into())),
        }
        if parsed.host().is_none() {
            return Err(bad("no host".into()));
        }
        let mut method_uris = Vec::with_capacity(HookMethod::COUNT);
        for m in HookMethod::ALL {
            let u: Uri =
                format!("{base}/{}", m.url_name()).parse().map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
            method_uris.push(u);
        }
        let enabled = enabled_methods(key, &cfg.methods)?;
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
            method_uris: method_uris.into_boxed_slice(),
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
        &self.method_uris[method.index()]
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
#[derive(Debug, Default)]
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
        AppConfig { url: url.into(), username: None, password: None, methods }
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
