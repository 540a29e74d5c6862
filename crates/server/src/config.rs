//! Configuration: embedded commented defaults (`callgate.toml`) < `--config FILE` < environment
//! (`CALLGATE_<SECTION>__<KEY>`) < flags, validated before any port is bound.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use callgate_hooks::{App, AppConfig, DispatcherConfig};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

/// The embedded defaults, also printed by `callgate --print-default-config`.
pub const DEFAULT_CONFIG: &str = include_str!("../callgate.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub rest_api: RestApiConfig,
    pub hooks: HooksConfig,
    pub media: MediaSection,
    pub sip: SipSection,
    pub xcap: XcapSection,
    #[serde(default)]
    pub apps: BTreeMap<String, AppConfig>,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub ws_bind: SocketAddr,
    pub http_bind: SocketAddr,
    pub node_ip: String,
    pub ping_interval_ms: u64,
    pub max_missed_pings: u32,
    pub client_send_queue: usize,
    pub max_client_frame_bytes: usize,
    /// Runtime worker threads; 0 = tokio's default (one per core, or `TOKIO_WORKER_THREADS`).
    pub worker_threads: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestApiConfig {
    pub auth: bool,
    pub username: String,
    pub password: String,
    pub cors_allow_origin: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    pub rest_request_timeout: u64,
    pub rest_client_request_retry_count: u32,
    pub max_in_flight_per_app: usize,
    pub max_response_bytes: usize,
    pub rest_hook_send_hash: bool,
    pub rest_hook_secret_key: String,
    pub disable_rest_requests: bool,
    pub echo_fast_path: bool,
}

/// `[media]`: WebRTC media (one UDP port) and stream keep-alives.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaSection {
    pub bind: SocketAddr,
    pub candidate_ip: String,
    pub public_ip: String,
    pub connect_timeout_ms: u64,
    pub keep_alive_enabled: bool,
    pub keep_alive_interval_ms: u64,
    pub keep_alive_app_keys: Vec<String>,
}

impl MediaSection {
    fn ip(field: &str, v: &str) -> anyhow::Result<Option<IpAddr>> {
        if v.is_empty() {
            return Ok(None);
        }
        let ip: IpAddr = v.parse().with_context(|| format!("media.{field} = {v:?} is not an IP address"))?;
        if ip.is_unspecified() {
            bail!("media.{field} must be a concrete address, not {ip}");
        }
        Ok(Some(ip))
    }

    /// The media endpoint's settings.
    pub fn media_config(&self) -> anyhow::Result<callgate_media::MediaConfig> {
        Ok(callgate_media::MediaConfig {
            bind: self.bind,
            candidate_ip: Self::ip("candidate_ip", &self.candidate_ip)?,
            public_ip: Self::ip("public_ip", &self.public_ip)?,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            ..Default::default()
        })
    }

    /// `Some` when stream keep-alives are on.
    pub fn keep_alive(&self) -> Option<crate::streams::KeepAlive> {
        self.keep_alive_enabled.then(|| crate::streams::KeepAlive {
            interval: Duration::from_millis(self.keep_alive_interval_ms),
            app_keys: self.keep_alive_app_keys.clone(),
        })
    }
}

/// `[sip]`: the SIP user agent (registrations, calls).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipSection {
    pub bind: SocketAddr,
    pub advertised_ip: String,
    pub user_agent: String,
    pub register_expires: u32,
    pub t1_ms: u64,
}

impl SipSection {
    /// The endpoint's settings.
    pub fn endpoint_config(&self) -> anyhow::Result<callgate_sip::transport::EndpointConfig> {
        let mut c = callgate_sip::transport::EndpointConfig::new(self.bind);
        c.advertised_ip = MediaSection::ip("advertised_ip", &self.advertised_ip)
            .map_err(|e| anyhow::anyhow!("sip.{}", e.to_string().trim_start_matches("media.")))?;
        c.user_agent = self.user_agent.clone();
        // RFC 3261 §17: T1 scales every retransmission and transaction timeout (B = F = 64*T1);
        // T2 (4 s) caps the retransmission interval, so T1 may not exceed it.
        if !(1..=4000).contains(&self.t1_ms) {
            anyhow::bail!("sip.t1_ms must be 1-4000 (RFC 3261 T1, default 500), got {}", self.t1_ms);
        }
        c.timers.t1 = std::time::Duration::from_millis(self.t1_ms);
        c.own_thread = true;
        Ok(c)
    }
}

/// `[xcap]`: the HTTP requests `sendXcapRequest` makes for clients.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XcapSection {
    /// Only URLs under one of these bases are fetched (no open proxy).
    pub allowed_base_urls: Vec<String>,
    pub timeout_ms: u64,
    pub max_response_bytes: usize,
}

impl XcapSection {
    /// The allowed bases, parsed.
    pub fn bases(&self) -> anyhow::Result<Vec<crate::xcap::Base>> {
        self.allowed_base_urls
            .iter()
            .map(|u| crate::xcap::Base::parse(u).map_err(|e| anyhow::anyhow!("xcap.allowed_base_urls: {e}")))
            .collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub filter: String,
    pub format: String,
}

impl Config {
    /// Defaults < file < environment. `env` is injectable for tests.
    pub fn load(file: Option<&Path>, env_prefix: &str) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(f) = file {
            if !f.exists() {
                bail!("config file {} does not exist", f.display());
            }
            fig = fig.merge(Toml::file(f));
        }
        // Only `<PREFIX><SECTION>__<KEY>` variables are configuration: an unrelated variable that
        // happens to share the prefix (say CALLGATE_BIN in a test harness) must not stop the server.
        fig = fig.merge(
            Env::prefixed(env_prefix).filter(|k: &figment::value::UncasedStr| k.as_str().contains("__")).split("__"),
        );
        let cfg: Config = fig.extract().context("invalid configuration")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses a complete TOML text over the defaults (used by tests and embedders).
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        let cfg: Config = Figment::from(Toml::string(DEFAULT_CONFIG))
            .merge(Toml::string(text))
            .extract()
            .context("invalid configuration")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks everything that can be checked before binding ports.
    pub fn validate(&self) -> anyhow::Result<()> {
        let s = &self.server;
        if s.ping_interval_ms == 0 {
            bail!("server.ping_interval_ms must be > 0");
        }
        if s.max_missed_pings == 0 {
            bail!("server.max_missed_pings must be > 0");
        }
        if s.client_send_queue == 0 || s.max_client_frame_bytes < 1024 {
            bail!("server.client_send_queue must be > 0 and server.max_client_frame_bytes >= 1024");
        }
        if self.rest_api.auth && (self.rest_api.username.is_empty() || self.rest_api.password.is_empty()) {
            bail!("rest_api.auth = true needs rest_api.username and rest_api.password");
        }
        let h = &self.hooks;
        if h.max_in_flight_per_app == 0 || h.max_response_bytes == 0 {
            bail!("hooks.max_in_flight_per_app and hooks.max_response_bytes must be > 0");
        }
        if h.rest_hook_send_hash && h.rest_hook_secret_key.is_empty() {
            bail!("hooks.rest_hook_send_hash = true needs hooks.rest_hook_secret_key");
        }
        let m = &self.media;
        m.media_config()?;
        if m.connect_timeout_ms == 0 {
            bail!("media.connect_timeout_ms must be > 0");
        }
        if m.keep_alive_enabled && m.keep_alive_interval_ms == 0 {
            bail!("media.keep_alive_interval_ms must be > 0 when media.keep_alive_enabled = true");
        }
        self.sip.endpoint_config()?;
        if self.sip.register_expires == 0 || self.sip.user_agent.trim().is_empty() {
            bail!("sip.register_expires must be > 0 and sip.user_agent not empty");
        }
        self.xcap.bases()?;
        if self.xcap.timeout_ms == 0 || self.xcap.max_response_bytes == 0 {
            bail!("xcap.timeout_ms and xcap.max_response_bytes must be > 0");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("log.format must be \"text\" or \"json\"");
        }
        for (key, app) in &self.apps {
            if h.rest_hook_send_hash && app.username.is_some() {
                bail!("app {key:?}: HTTP Basic credentials and rest_hook_send_hash both use the Authorization header; choose one");
            }
            App::new(key, app, false, 1)?;
        }
        Ok(())
    }

    pub fn dispatcher_config(&self) -> DispatcherConfig {
        let h = &self.hooks;
        DispatcherConfig {
            timeout: (h.rest_request_timeout > 0).then(|| Duration::from_secs(h.rest_request_timeout)),
            retries: h.rest_client_request_retry_count,
            max_response_bytes: h.max_response_bytes,
            signing_key: h.rest_hook_send_hash.then(|| h.rest_hook_secret_key.clone().into_bytes()),
            pool_max_idle_per_host: h.max_in_flight_per_app,
        }
    }

    /// Builds the applications once the HTTP port is known (for the EchoApp fast path).
    pub fn build_apps(&self, http_port: u16) -> anyhow::Result<Vec<App>> {
        self.apps
            .iter()
            .map(|(key, app)| {
                let echo = self.hooks.echo_fast_path && App::url_is_builtin_echo(&app.url, http_port);
                Ok(App::new(key, app, echo, self.hooks.max_in_flight_per_app)?)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.server.ws_bind.port(), 8080);
        assert_eq!(c.server.http_bind.port(), 8081);
        assert_eq!(c.hooks.rest_request_timeout, 15);
        assert_eq!(c.hooks.rest_client_request_retry_count, 3);
        assert_eq!(c.apps["defaultApp"].url, "http://localhost:8081/apps/EchoApp");
        let apps = c.build_apps(8081).unwrap();
        assert!(apps[0].echo_in_process());
    }

    #[test]
    fn bad_values_are_refused_before_binding() {
        assert!(Config::from_toml("[server]\nping_interval_ms = 0").is_err());
        assert!(Config::from_toml("[server]\nnope = 1").is_err());
        assert!(Config::from_toml("[apps.x]\nurl = \"ftp://x\"").is_err());
        assert!(Config::from_toml("[rest_api]\nauth = true").is_err());
        assert!(Config::from_toml("[hooks]\nrest_hook_send_hash = true").is_err());
        assert!(Config::from_toml("[media]\npublic_ip = \"not-an-ip\"").is_err());
        assert!(Config::from_toml("[media]\ncandidate_ip = \"0.0.0.0\"").is_err());
        assert!(Config::from_toml("[media]\nkeep_alive_enabled = true\nkeep_alive_interval_ms = 0").is_err());
    }

    #[test]
    fn media_defaults_and_overrides() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.media.bind.port(), 31000);
        assert!(c.media.keep_alive().is_none());
        let m = c.media.media_config().unwrap();
        assert_eq!((m.candidate_ip, m.public_ip), (None, None));
        let c = Config::from_toml(
            "[media]\nbind = \"127.0.0.1:0\"\npublic_ip = \"203.0.113.9\"\nkeep_alive_enabled = true\nkeep_alive_interval_ms = 500\nkeep_alive_app_keys = [\"a\"]",
        )
        .unwrap();
        let m = c.media.media_config().unwrap();
        assert_eq!(m.public_ip, Some("203.0.113.9".parse().unwrap()));
        assert_eq!(m.advertised_addr("127.0.0.1:4242".parse().unwrap()), "203.0.113.9:4242".parse().unwrap());
        let ka = c.media.keep_alive().unwrap();
        assert_eq!((ka.interval, ka.app_keys), (Duration::from_millis(500), vec!["a".to_string()]));
    }

    #[test]
    fn sip_defaults_and_checks() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.sip.bind.port(), 30000);
        assert_eq!(c.sip.register_expires, 3600);
        assert_eq!(c.sip.endpoint_config().unwrap().user_agent, "callgate");
        assert!(Config::from_toml("[sip]\nadvertised_ip = \"nope\"").is_err());
        assert!(Config::from_toml("[sip]\nregister_expires = 0").is_err());
        assert_eq!(c.sip.endpoint_config().unwrap().timers.t1, Duration::from_millis(500));
        let fast = Config::from_toml("[sip]\nt1_ms = 50").unwrap();
        assert_eq!(fast.sip.endpoint_config().unwrap().timers.t1, Duration::from_millis(50));
        assert!(Config::from_toml("[sip]\nt1_ms = 0").is_err());
        assert!(Config::from_toml("[sip]\nt1_ms = 4001").is_err());
    }

    #[test]
    fn xcap_defaults_and_checks() {
        let c = Config::from_toml("").unwrap();
        assert!(c.xcap.allowed_base_urls.is_empty(), "no XCAP host is allowed by default");
        assert_eq!(c.xcap.timeout_ms, 10000);
        let c = Config::from_toml("[xcap]\nallowed_base_urls = [\"http://127.0.0.1:8080/xcap-root/\"]").unwrap();
        assert_eq!(c.xcap.bases().unwrap().len(), 1);
        assert!(Config::from_toml("[xcap]\nallowed_base_urls = [\"ftp://h/\"]").is_err());
        assert!(Config::from_toml("[xcap]\nallowed_base_urls = [\"http://user:pw@h/\"]").is_err());
        assert!(Config::from_toml("[xcap]\nallowed_base_urls = [\"not a url\"]").is_err());
        assert!(Config::from_toml("[xcap]\ntimeout_ms = 0").is_err());
    }

    #[test]
    // figment's Jail closure must return figment's own (large) error type.
    #[allow(clippy::result_large_err)]
    fn environment_overrides_file() {
        // figment's Jail isolates the environment of this test.
        figment::Jail::expect_with(|jail| {
            jail.create_file("c.toml", "[hooks]\nrest_request_timeout = 7\n")?;
            jail.set_env("CGTEST_HOOKS__REST_CLIENT_REQUEST_RETRY_COUNT", "1");
            jail.set_env("CGTEST_BIN", "/usr/bin/whatever");
            let c = Config::load(Some(Path::new("c.toml")), "CGTEST_").map_err(|e| e.to_string())?;
            assert_eq!(c.hooks.rest_request_timeout, 7);
            assert_eq!(c.hooks.rest_client_request_retry_count, 1);
            Ok(())
        });
    }
}
