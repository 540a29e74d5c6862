//! Configuration: embedded commented defaults (`callgate.toml`) < `--config FILE` < environment
//! (`CALLGATE_<SECTION>__<KEY>`) < flags, validated before any port is bound.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use callgate_hooks::{App, AppConfig, BreakerConfig, DeliveryConfig, DispatcherConfig, WebhookKeys};
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
    pub recording: RecordingSection,
    pub hls: HlsSection,
    pub sip: SipSection,
    pub registrar: RegistrarSection,
    pub xcap: XcapSection,
    pub security: SecuritySection,
    pub limits: LimitsSection,
    pub tls: TlsSection,
    pub cluster: ClusterSection,
    pub console: ConsoleSection,
    pub rooms: RoomsSection,
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
    /// A write to a client that takes longer ends its session (the client stopped reading).
    pub client_write_timeout_ms: u64,
    /// A WebSocket that has not sent `connection` by then is closed ("Login timeout").
    pub login_timeout_ms: u64,
    /// How long a `keepAlive` session outlives its socket, waiting to be resumed by its
    /// `authToken`; 0 = never kept (`session.rs`).
    pub keep_alive_grace_ms: u64,
    /// Every listener (also the TLS handshake of the `[tls]` ones): a request head must arrive within this; also closes idle keep-alive
    /// connections (the wait for the next request's head is bounded the same way) and bounds
    /// each pause within a request body.
    pub header_read_timeout_ms: u64,
    /// SIGTERM/SIGINT: how long the graceful shutdown may take (calls BYEd, sessions closed,
    /// their events delivered) before the process exits anyway, non-zero.
    pub shutdown_timeout_ms: u64,
    /// Runtime worker threads; 0 = tokio's default (one per core, or `TOKIO_WORKER_THREADS`).
    pub worker_threads: usize,
    /// Origins whose pages may open the client WebSocket; empty = any (issue 11). A handshake
    /// with another `Origin` is refused `403`; one without `Origin` (not a browser) is accepted.
    #[serde(deserialize_with = "string_or_list")]
    pub allowed_origins: Vec<String>,
}

/// `[rest_api]`. Its `Debug` does not show the password.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestApiConfig {
    pub auth: bool,
    pub username: String,
    pub password: String,
    /// Bearer tokens (`Authorization: Bearer <token>`), any one of them accepted (issue 11).
    #[serde(deserialize_with = "string_or_list")]
    pub tokens: Vec<String>,
    /// Origins a browser page may call the HTTP port from; empty = none (no CORS headers).
    #[serde(deserialize_with = "string_or_list")]
    pub cors_allow_origin: Vec<String>,
}

impl RestApiConfig {
    /// Whether `/rest-api/*` asks for HTTP Basic credentials: whenever credentials are set
    /// (`auth = false` with credentials is refused at startup). Without credentials the API is
    /// open, which [`Config::validate`] allows only on a loopback bind.
    pub fn requires_auth(&self) -> bool {
        !self.username.is_empty() || !self.tokens.is_empty()
    }

    /// Refuses a REST API that other hosts could reach without credentials (issue 14): anyone
    /// who reaches it could read every connection, end sessions and place SIP calls.
    fn check_exposure(&self, http_bind: SocketAddr) -> anyhow::Result<()> {
        if self.username.is_empty() != self.password.is_empty() {
            bail!("rest_api.username and rest_api.password go together: set both or neither");
        }
        if !self.auth && self.requires_auth() {
            bail!(
                "rest_api.auth = false contradicts rest_api.username/password/tokens: credentials always turn \
                 REST API auth on. Remove auth = false (CALLGATE_REST_API__AUTH) to use them, or remove \
                 the credentials to run the API open (allowed on a loopback server.http_bind only)"
            );
        }
        if http_bind.ip().is_loopback() || self.requires_auth() {
            return Ok(());
        }
        bail!(
            "the REST API on server.http_bind = {http_bind} is reachable from other hosts and has no credentials. \
             Set rest_api.username and rest_api.password (environment: CALLGATE_REST_API__USERNAME and \
             CALLGATE_REST_API__PASSWORD) with rest_api.auth = true, or bind the HTTP port to loopback \
             (--http-bind 127.0.0.1:8081 or CALLGATE_SERVER__HTTP_BIND)"
        );
    }

    /// The CORS origins, checked: `*` alone, or origins such as `https://app.example:8443`.
    fn check_cors(&self) -> anyhow::Result<()> {
        let o = &self.cors_allow_origin;
        if o.iter().any(|v| v == "*") {
            if o.len() > 1 {
                bail!("rest_api.cors_allow_origin: \"*\" cannot be combined with other origins");
            }
            return Ok(());
        }
        for v in o {
            if !is_origin(v) {
                bail!("rest_api.cors_allow_origin: {v:?} is not an origin like \"https://app.example.com:8443\" (scheme://host[:port], no path)");
            }
        }
        Ok(())
    }
}

/// A browser origin: `scheme://host[:port]`, http(s), no path, no trailing slash.
fn is_origin(v: &str) -> bool {
    http::HeaderValue::from_str(v).is_ok()
        && v.parse::<http::Uri>().is_ok_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.host().is_some()
                && u.path_and_query().is_none_or(|p| p.as_str() == "/" || p.as_str().is_empty())
        })
        && !v.ends_with('/')
}

impl std::fmt::Debug for RestApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestApiConfig")
            .field("auth", &self.auth)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("tokens", &format_args!("[{} redacted]", self.tokens.len()))
            .field("cors_allow_origin", &self.cors_allow_origin)
            .finish()
    }
}

/// How a secret shows in `Debug`: whether it is set, never what it is.
pub(crate) fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() {
        ""
    } else {
        "<redacted>"
    }
}

/// A list, or one string holding a comma-separated list (what an environment variable gives).
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let list = match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_string).collect(),
        OneOrMany::Many(v) => v,
    };
    Ok(list.into_iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect())
}

/// `[hooks]`. Its `Debug` does not show the signing key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    pub rest_request_timeout: u64,
    pub rest_client_request_retry_count: u32,
    pub max_in_flight_per_app: usize,
    /// Direct invocations (`sendData`, `call`, ...) one session may have waiting on the backend.
    pub max_in_flight_per_session: usize,
    pub max_response_bytes: usize,
    pub rest_hook_send_hash: bool,
    pub rest_hook_secret_key: String,
    /// Standard Webhooks secrets (`whsec_<base64>`); empty = off.
    pub webhook_secrets: Vec<String>,
    pub disable_rest_requests: bool,
    pub echo_fast_path: bool,
    /// Events (`*StatusEvent`, ...): attempts per event, retry pauses, give-up time, queue bound.
    pub event_attempts: u32,
    pub event_retry_initial_delay_ms: u64,
    pub event_retry_max_delay_ms: u64,
    pub event_retry_total_ms: u64,
    pub event_queue_capacity: usize,
    /// JSON-lines file of events given up; empty = none (they are lost, counted and logged).
    pub dead_letter_file: String,
    pub dead_letter_max_bytes: u64,
    /// Circuit breaker per backend: consecutive failures that open it (0 = off), cool-down.
    pub breaker_failures: u32,
    pub breaker_cooldown_ms: u64,
}

impl std::fmt::Debug for HooksConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HooksConfig")
            .field("rest_request_timeout", &self.rest_request_timeout)
            .field("rest_client_request_retry_count", &self.rest_client_request_retry_count)
            .field("max_in_flight_per_app", &self.max_in_flight_per_app)
            .field("max_in_flight_per_session", &self.max_in_flight_per_session)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("rest_hook_send_hash", &self.rest_hook_send_hash)
            .field("rest_hook_secret_key", &redacted(&self.rest_hook_secret_key))
            .field("webhook_secrets", &format_args!("{} secret(s), redacted", self.webhook_secrets.len()))
            .field("disable_rest_requests", &self.disable_rest_requests)
            .field("echo_fast_path", &self.echo_fast_path)
            .field("event_attempts", &self.event_attempts)
            .field("event_retry_initial_delay_ms", &self.event_retry_initial_delay_ms)
            .field("event_retry_max_delay_ms", &self.event_retry_max_delay_ms)
            .field("event_retry_total_ms", &self.event_retry_total_ms)
            .field("event_queue_capacity", &self.event_queue_capacity)
            .field("dead_letter_file", &self.dead_letter_file)
            .field("dead_letter_max_bytes", &self.dead_letter_max_bytes)
            .field("breaker_failures", &self.breaker_failures)
            .field("breaker_cooldown_ms", &self.breaker_cooldown_ms)
            .finish()
    }
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
    /// `"sdp"` or `"first_packet"`: see `callgate_media::bridge::RtpLatching`.
    pub rtp_latching: String,
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
            rtp_latching: match self.rtp_latching.as_str() {
                "sdp" => callgate_media::bridge::RtpLatching::Sdp,
                "first_packet" => callgate_media::bridge::RtpLatching::FirstPacket,
                other => bail!("media.rtp_latching = {other:?}: expected \"sdp\" or \"first_packet\""),
            },
            ..Default::default()
        })
    }
}

/// `[recording]`: `publishStream {record: true}` (streams/recording.rs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingSection {
    /// `false`: a `record: true` publish FAILS ("Recording is disabled on this server").
    pub enabled: bool,
    /// Where the files go (relative: to the working directory); created when needed.
    pub dir: String,
    /// The directory's recordings may take this many bytes; the oldest are deleted past it
    /// (after each recording). 0 = no limit.
    pub max_bytes: u64,
    /// Recordings older than this many seconds are deleted (after each recording). 0 = kept.
    pub max_age_s: u64,
    /// Packets queued towards a recording's writer before they are dropped (and counted).
    pub queue_packets: usize,
    /// Serve the files at `GET /client/records/{recordName}` on the HTTP port.
    pub download: bool,
}

/// `[hls]`: published streams as (LL-)HLS at `/<stream>/index.m3u8` on the HTTP port
/// (streams/hls.rs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HlsSection {
    pub enabled: bool,
    /// The app whose `playHLS` hook decides each player (an HTTP player has no session).
    pub app_key: String,
    pub segment_ms: u64,
    pub part_ms: u64,
    /// Complete segments kept (in the playlist and in memory) per stream.
    pub window: usize,
    /// A stream's muxer stops after this long without an HLS request.
    pub idle_timeout_s: u64,
    /// An ended stream's last playlist (with `#EXT-X-ENDLIST`) is served this long.
    pub ended_linger_s: u64,
    /// A player's `playHLS` decision is kept this long (its later requests run no hook).
    pub player_cache_s: u64,
    /// How long the first playlist request waits for the first segment.
    pub first_segment_wait_ms: u64,
    /// The `playHLS` hook's restClientConfig entry (no `connect` answer can give one).
    pub rest_on_error: String,
    pub rest_policy: String,
    pub rest_overwrite: String,
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
    /// Out-of-dialog INVITE/MESSAGE sources accepted besides each registration's next hop.
    #[serde(deserialize_with = "string_or_list")]
    pub trusted_networks: Vec<String>,
    /// Where SIP may go (a session's next hop); the backend's `connect` answer may add more.
    #[serde(deserialize_with = "string_or_list")]
    pub allowed_destinations: Vec<String>,
    /// An unanswered incoming call is rejected (480) after this long.
    pub ring_timeout_ms: u64,
    /// An unanswered outgoing call is cancelled (FAILED "Not answered within N s") after this long.
    pub outgoing_ring_timeout_ms: u64,
    /// Longest `sendDtmf` string (and most SIP INFO digits queued for one call).
    pub max_dtmf_digits: usize,
    /// RFC 4028 `Min-SE`, seconds: a peer asking for a shorter session interval gets 422.
    pub session_min_se: u32,
    /// Realms the accounts also answer challenges for (see `UaConfig::digest_realms`).
    #[serde(deserialize_with = "string_or_list")]
    pub digest_realms: Vec<String>,
    /// Largest SIP message taken (UDP: 513 past it; TCP: the connection closes).
    pub max_message_bytes: usize,
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
        c.min_se = self.session_min_se;
        c.digest_realms = self.digest_realms.clone();
        c.max_message_bytes = self.max_message_bytes;
        c.no_answer_timeout = std::time::Duration::from_millis(self.outgoing_ring_timeout_ms);
        c.own_thread = true;
        Ok(c)
    }

    /// Checks the keys of the calls' own rules (the policy lists are checked by
    /// `calls::SipPolicy::from_config`, through `callgate_server::validate`).
    fn check_calls(&self) -> anyhow::Result<()> {
        if !(1000..=600_000).contains(&self.ring_timeout_ms) {
            bail!("sip.ring_timeout_ms must be 1000-600000 (default 90000), got {}", self.ring_timeout_ms);
        }
        if !(1000..=3_600_000).contains(&self.outgoing_ring_timeout_ms) {
            bail!(
                "sip.outgoing_ring_timeout_ms must be 1000-3600000 (default 180000), got {}",
                self.outgoing_ring_timeout_ms
            );
        }
        if !(1..=1000).contains(&self.max_dtmf_digits) {
            bail!("sip.max_dtmf_digits must be 1-1000 (default 32), got {}", self.max_dtmf_digits);
        }
        if !(1..=86_400).contains(&self.session_min_se) {
            bail!("sip.session_min_se must be 1-86400 (default 90), got {}", self.session_min_se);
        }
        if !(1024..=65_535).contains(&self.max_message_bytes) {
            bail!("sip.max_message_bytes must be 1024-65535 (default 65535), got {}", self.max_message_bytes);
        }
        Ok(())
    }
}

/// `[limits]`: admission control (`admission.rs`). Past a limit a new session, call, stream or
/// REST request is refused with a clear reason; nothing already admitted is disturbed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    /// WebSocket connections (logged in or not) at once.
    pub max_sessions: usize,
    /// WebSocket connections at once from one client address.
    pub max_sessions_per_ip: usize,
    /// SIP calls at once (client, REST and incoming).
    pub max_calls: usize,
    /// Published and played streams at once.
    pub max_streams: usize,
    /// `/rest-api/*` requests being handled at once.
    pub max_rest_in_flight: usize,
    /// Largest `/rest-api/*` request body, bytes.
    pub max_rest_body_bytes: usize,
    /// `Retry-After` of a `503`, seconds.
    pub retry_after_s: u32,
}

/// `[cluster]`: membership of a callgate cluster over NATS (docs/cluster.md). An empty
/// `nats_url` (the default) is a single node that needs no NATS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// `nats://host:port` of a NATS server with JetStream; empty = not a cluster member.
    pub nats_url: String,
    /// How often this node renews its directory entries (and announces new, removes ended ones).
    pub heartbeat_ms: u64,
    /// How long an entry lives without renewal (the buckets' `max_age`); the same on every node.
    pub lease_ms: u64,
    /// Bound of the connection at start and of each directory request.
    pub request_timeout_ms: u64,
}

impl ClusterSection {
    /// Whether this node is a cluster member.
    pub fn enabled(&self) -> bool {
        !self.nats_url.trim().is_empty()
    }

    fn check(&self) -> anyhow::Result<()> {
        if !self.enabled() {
            return Ok(());
        }
        for url in self.nats_url.split(',') {
            url.trim().parse::<async_nats::ServerAddr>().with_context(|| {
                format!("cluster.nats_url: {:?} is not a NATS URL like nats://127.0.0.1:4222", url.trim())
            })?;
        }
        if self.heartbeat_ms < 10 || self.request_timeout_ms == 0 {
            bail!("cluster.heartbeat_ms must be >= 10 and cluster.request_timeout_ms > 0");
        }
        // A lease shorter than two heartbeats would expire a live node's entries between beats.
        if self.lease_ms < 2 * self.heartbeat_ms {
            bail!(
                "cluster.lease_ms ({}) must be at least 2 x cluster.heartbeat_ms ({}): entries would expire between renewals",
                self.lease_ms,
                self.heartbeat_ms
            );
        }
        Ok(())
    }
}

impl LimitsSection {
    fn check(&self) -> anyhow::Result<()> {
        for (k, v) in [
            ("max_sessions", self.max_sessions),
            ("max_sessions_per_ip", self.max_sessions_per_ip),
            ("max_calls", self.max_calls),
            ("max_streams", self.max_streams),
            ("max_rest_in_flight", self.max_rest_in_flight),
        ] {
            if v == 0 {
                bail!("limits.{k} must be > 0");
            }
        }
        if self.max_rest_body_bytes < 1024 {
            bail!("limits.max_rest_body_bytes must be >= 1024, got {}", self.max_rest_body_bytes);
        }
        if !(1..=3600).contains(&self.retry_after_s) {
            bail!("limits.retry_after_s must be 1-3600, got {}", self.retry_after_s);
        }
        Ok(())
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

/// `[security]`: what URLs chosen by clients or backends' answers may reach (`netguard.rs`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    /// CIDR ranges (or addresses) of the refused classes (loopback, private, link-local, ...)
    /// that such URLs may reach after all; checked by `callgate_server::validate`.
    #[serde(deserialize_with = "string_or_list")]
    pub allowed_private_ranges: Vec<String>,
}

/// The app clients get without an `appKey`.
pub const DEFAULT_APP: &str = "defaultApp";

/// The URL of this server's EchoApp, as the server itself reaches it: an unspecified bind address
/// (every interface) is reached on loopback.
pub fn echo_app_url(http_addr: SocketAddr) -> String {
    let ip = match http_addr.ip() {
        IpAddr::V4(a) if a.is_unspecified() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(a) if a.is_unspecified() => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/apps/{}", SocketAddr::new(ip, http_addr.port()), callgate_hooks::app::ECHO_APP)
}

/// `[tls]`: the wss:// and https:// listeners (off unless a bind address is set) and their
/// certificate, reloaded on SIGHUP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// WebSocket over TLS (wss://); empty: none. WCS: wss.port = 8443.
    pub wss_bind: String,
    /// The HTTP port's routes over TLS (https://); empty: none. WCS: https.port = 8444.
    pub https_bind: String,
    /// PEM file: the certificate chain, leaf first.
    pub cert: String,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: String,
}

impl TlsSection {
    /// `wss_bind` and `https_bind`, parsed; `None` for an empty one.
    pub fn binds(&self) -> anyhow::Result<(Option<SocketAddr>, Option<SocketAddr>)> {
        let parse = |key: &str, v: &str| -> anyhow::Result<Option<SocketAddr>> {
            let v = v.trim();
            if v.is_empty() {
                return Ok(None);
            }
            v.parse().map(Some).with_context(|| format!("tls.{key} = {v:?} is not an address such as 0.0.0.0:8443"))
        };
        Ok((parse("wss_bind", &self.wss_bind)?, parse("https_bind", &self.https_bind)?))
    }

    /// True when a TLS listener is configured.
    pub fn enabled(&self) -> bool {
        !self.wss_bind.trim().is_empty() || !self.https_bind.trim().is_empty()
    }
}

/// `[registrar]`: the embedded SIP registrar and proxy (docs/registrar.md). Its `Debug`
/// shows the user names, never the passwords.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrarSection {
    pub enabled: bool,
    /// The SIP domain served (and the digest realm).
    pub domain: String,
    pub bind: SocketAddr,
    /// The IP in its Via and Record-Route; empty: the bound IP, or the default route's.
    pub advertised_ip: String,
    /// Static digest credentials, user -> password (phones, and sessions).
    #[serde(default)]
    pub users: BTreeMap<String, String>,
    /// Sessions of this node may register as their own `sipLogin`/`sipPassword` while they last.
    pub session_users: bool,
    pub min_expires: u32,
    pub max_expires: u32,
}

impl std::fmt::Debug for RegistrarSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistrarSection")
            .field("enabled", &self.enabled)
            .field("domain", &self.domain)
            .field("bind", &self.bind)
            .field("advertised_ip", &self.advertised_ip)
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .field("session_users", &self.session_users)
            .field("min_expires", &self.min_expires)
            .field("max_expires", &self.max_expires)
            .finish()
    }
}

/// `[rooms]`: the room app (rooms/, docs/rooms.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsSection {
    /// Sessions of these appKeys use the room app: their `sendData` payloads are room
    /// commands. Empty: no room app.
    pub app_keys: Vec<String>,
    /// Most members of one room; a join past it is refused (`Room <room> is full: N members`).
    #[serde(default = "default_room_members")]
    pub max_members: usize,
}

/// The default of `[rooms] max_members`.
pub const DEFAULT_ROOM_MEMBERS: usize = 100;

fn default_room_members() -> usize {
    DEFAULT_ROOM_MEMBERS
}

/// `[console]`: the page at `/` on the HTTP port and its live hook log (console.rs).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// Serve the console page, the SDK bundle and the hook log; `false`: none of them (404).
    pub enabled: bool,
    /// The hook log's bearer token (`Authorization: Bearer`, or `?token=` for EventSource).
    /// Empty: the log is open to loopback clients only while the REST API has no credentials,
    /// and off (403) otherwise.
    pub admin_token: String,
    /// Hook records kept for a listener that reads slowly; past that it loses the oldest.
    pub feed_capacity: usize,
    /// Hook log connections at once; one more is answered 503.
    pub max_listeners: usize,
}

impl std::fmt::Debug for ConsoleSection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSection")
            .field("enabled", &self.enabled)
            .field("admin_token", &redacted(&self.admin_token))
            .field("feed_capacity", &self.feed_capacity)
            .field("max_listeners", &self.max_listeners)
            .finish()
    }
}

impl RegistrarSection {
    /// The advertised IP, `None` when empty.
    pub fn advertised_ip(&self) -> anyhow::Result<Option<IpAddr>> {
        MediaSection::ip("advertised_ip", &self.advertised_ip)
            .map_err(|e| anyhow::anyhow!("registrar.{}", e.to_string().trim_start_matches("media.")))
    }

    fn check(&self) -> anyhow::Result<()> {
        let d = self.domain.trim();
        let host_char = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
        if d.is_empty() || !d.chars().all(host_char) || d.starts_with(['.', '-']) {
            bail!("registrar.domain must be a host name such as \"callgate.local\", got {:?}", self.domain);
        }
        self.advertised_ip()?;
        if self.min_expires == 0 || self.max_expires < self.min_expires {
            bail!(
                "registrar.min_expires must be > 0 and registrar.max_expires >= min_expires (got {} and {})",
                self.min_expires,
                self.max_expires
            );
        }
        // A SIP user part (RFC 3261 §25.1 unreserved and user-unreserved), no escapes.
        let user_char = |c: char| c.is_ascii_alphanumeric() || "-_.!~*'()&=+$,;?/".contains(c);
        for (user, password) in &self.users {
            if user.is_empty() || !user.chars().all(user_char) {
                bail!("registrar.users: {user:?} is not a SIP user name (letters, digits, -_.!~*'()&=+$,;?/)");
            }
            if password.is_empty() {
                bail!("registrar.users: {user:?} has an empty password");
            }
        }
        Ok(())
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

    /// Checks the keys this module knows the meaning of. What only the modules that use a
    /// section can check (the SIP policy lists, the XCAP base URLs) is checked by
    /// `callgate_server::validate`, which calls this first; `start` runs it before binding.
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
        if s.client_write_timeout_ms == 0 || s.login_timeout_ms == 0 || s.header_read_timeout_ms == 0 {
            bail!(
                "server.client_write_timeout_ms, server.login_timeout_ms and server.header_read_timeout_ms must be > 0"
            );
        }
        if s.shutdown_timeout_ms == 0 {
            bail!("server.shutdown_timeout_ms must be > 0");
        }
        self.rest_api.check_exposure(s.http_bind)?;
        let (wss, https) = self.tls.binds()?;
        if let Some(a) = https {
            // The https listener serves the same REST API.
            self.rest_api.check_exposure(a).context("tls.https_bind serves the REST API too")?;
        }
        if (wss.is_some() || https.is_some()) && (self.tls.cert.trim().is_empty() || self.tls.key.trim().is_empty()) {
            bail!("tls.wss_bind / tls.https_bind need tls.cert and tls.key (PEM files)");
        }
        self.rest_api.check_cors()?;
        if self.recording.enabled && self.recording.dir.trim().is_empty() {
            bail!("recording.dir must name a directory (or set recording.enabled = false)");
        }
        if self.hls.enabled {
            let h = &self.hls;
            if h.part_ms == 0 || h.segment_ms < h.part_ms || h.window == 0 {
                bail!("hls: part_ms must be > 0, segment_ms >= part_ms and window > 0");
            }
            if !h.rest_on_error.eq_ignore_ascii_case("FAIL") && !h.rest_on_error.eq_ignore_ascii_case("LOG") {
                bail!("hls.rest_on_error must be FAIL or LOG");
            }
            if !["NOTIFY", "OVERWRITE", "DISABLE"].iter().any(|p| h.rest_policy.eq_ignore_ascii_case(p)) {
                bail!("hls.rest_policy must be NOTIFY, OVERWRITE or DISABLE");
            }
        }
        if self.console.enabled && (self.console.feed_capacity == 0 || self.console.max_listeners == 0) {
            bail!("console.feed_capacity and console.max_listeners must be > 0 (or console.enabled = false)");
        }
        if self.console.admin_token.trim() != self.console.admin_token {
            bail!("console.admin_token must not begin or end with white space");
        }
        if let Some(v) = s.allowed_origins.iter().find(|v| !is_origin(v)) {
            bail!("server.allowed_origins: {v:?} is not an origin like \"https://app.example.com:8443\" (scheme://host[:port], no path)");
        }
        let h = &self.hooks;
        if h.max_in_flight_per_app == 0 || h.max_response_bytes == 0 || h.max_in_flight_per_session == 0 {
            bail!(
                "hooks.max_in_flight_per_app, hooks.max_in_flight_per_session and hooks.max_response_bytes must be > 0"
            );
        }
        if h.rest_hook_send_hash && h.rest_hook_secret_key.is_empty() {
            bail!("hooks.rest_hook_send_hash = true needs hooks.rest_hook_secret_key");
        }
        WebhookKeys::parse(&h.webhook_secrets).context("hooks.webhook_secrets")?;
        if h.event_attempts == 0 || h.event_queue_capacity == 0 || h.dead_letter_max_bytes == 0 {
            bail!("hooks.event_attempts, hooks.event_queue_capacity and hooks.dead_letter_max_bytes must be > 0");
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
        self.sip.check_calls()?;
        if self.sip.register_expires == 0 || self.sip.user_agent.trim().is_empty() {
            bail!("sip.register_expires must be > 0 and sip.user_agent not empty");
        }
        self.registrar.check()?;
        let (r, u) = (self.registrar.bind, self.sip.bind);
        let overlap = r.ip() == u.ip() || r.ip().is_unspecified() || u.ip().is_unspecified();
        if self.registrar.enabled && r.port() != 0 && r.port() == u.port() && overlap {
            bail!("registrar.bind ({r}) and sip.bind ({u}) would share a UDP port: give one of them another port");
        }
        if self.xcap.timeout_ms == 0 || self.xcap.max_response_bytes == 0 {
            bail!("xcap.timeout_ms and xcap.max_response_bytes must be > 0");
        }
        self.limits.check()?;
        self.cluster.check()?;
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
            // Checked in validate(); a config that was not validated signs with nothing.
            webhook_keys: WebhookKeys::parse(&h.webhook_secrets).unwrap_or_default(),
            breaker: BreakerConfig {
                failures: h.breaker_failures,
                cooldown: Duration::from_millis(h.breaker_cooldown_ms),
            },
        }
    }

    /// The events' retry schedule and queue bound (`[hooks] event_*`).
    pub fn delivery_config(&self) -> DeliveryConfig {
        let h = &self.hooks;
        DeliveryConfig {
            attempts: h.event_attempts,
            initial_delay: Duration::from_millis(h.event_retry_initial_delay_ms),
            max_delay: Duration::from_millis(h.event_retry_max_delay_ms),
            total: Duration::from_millis(h.event_retry_total_ms),
            queue_capacity: h.event_queue_capacity,
        }
    }

    /// Builds the applications once the HTTP address is known (for the EchoApp fast path, and
    /// `defaultApp`, which is this server's EchoApp unless configured).
    pub fn build_apps(&self, http_addr: SocketAddr) -> anyhow::Result<Vec<App>> {
        let own_echo = (!self.apps.contains_key(DEFAULT_APP)).then(|| {
            let url = echo_app_url(http_addr);
            let cfg = AppConfig { url, ..Default::default() };
            (DEFAULT_APP.to_string(), cfg)
        });
        let mut apps: Vec<App> = self
            .apps
            .iter()
            .map(|(key, app)| {
                let echo = self.hooks.echo_fast_path && App::url_is_builtin_echo(&app.url, http_addr.port());
                Ok(App::new(key, app, echo, self.hooks.max_in_flight_per_app)?)
            })
            .collect::<anyhow::Result<_>>()?;
        if let Some((key, app)) = own_echo {
            apps.push(App::new(&key, &app, self.hooks.echo_fast_path, self.hooks.max_in_flight_per_app)?);
        }
        Ok(apps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_are_valid() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.server.ws_bind.port(), 8080);
        assert_eq!(c.server.http_bind, "127.0.0.1:8081".parse().unwrap(), "the REST API is local by default");
        assert_eq!(c.hooks.rest_request_timeout, 15);
        assert_eq!(c.hooks.rest_client_request_retry_count, 3);
        assert_eq!(c.hooks.max_in_flight_per_session, 16);
        let s = &c.server;
        assert_eq!((s.client_write_timeout_ms, s.login_timeout_ms, s.header_read_timeout_ms), (10000, 10000, 10000));
        assert_eq!(s.shutdown_timeout_ms, 5000);
        assert!(c.apps.is_empty(), "defaultApp is derived from the HTTP address");
        let apps = c.build_apps(c.server.http_bind).unwrap();
        assert_eq!((&*apps[0].key, &*apps[0].url), ("defaultApp", "http://127.0.0.1:8081/apps/EchoApp"));
        assert!(apps[0].echo_in_process());
        assert!(c.rest_api.cors_allow_origin.is_empty(), "no CORS by default");
    }

    #[test]
    fn the_registrar_section_is_checked() {
        let c = Config::from_toml("").unwrap();
        let r = &c.registrar;
        assert!(r.enabled && r.session_users && r.users.is_empty());
        assert_eq!((r.domain.as_str(), r.bind), ("callgate.local", "127.0.0.1:5060".parse().unwrap()));
        assert_eq!((r.min_expires, r.max_expires), (60, 3600));
        let c = Config::from_toml("[registrar]\nusers = { \"1001\" = \"s3cret\", alice = \"pw\" }").unwrap();
        assert_eq!(c.registrar.users["1001"], "s3cret");
        let shown = format!("{:?}", c.registrar);
        assert!(shown.contains("1001") && !shown.contains("s3cret"), "{shown}");
        for bad in [
            "[registrar]\ndomain = \"\"",
            "[registrar]\ndomain = \"a b\"",
            "[registrar]\nusers = { \"1001\" = \"\" }",
            "[registrar]\nusers = { \"a@b\" = \"pw\" }",
            "[registrar]\nmin_expires = 0",
            "[registrar]\nmin_expires = 600\nmax_expires = 60",
            "[registrar]\nadvertised_ip = \"0.0.0.0\"",
            "[registrar]\nbind = \"0.0.0.0:30000\"",
            "[registrar]\nbogus = 1",
        ] {
            assert!(Config::from_toml(bad).is_err(), "{bad}");
        }
        assert!(Config::from_toml("[registrar]\nenabled = false\nbind = \"0.0.0.0:30000\"").is_ok());
    }

    #[test]
    fn recording_defaults_and_an_empty_dir() {
        let r = Config::from_toml("").unwrap().recording;
        assert!(r.enabled && r.download);
        assert_eq!((r.dir.as_str(), r.max_bytes, r.max_age_s, r.queue_packets), ("records", 0, 0, 4096));
        let e = Config::from_toml("[recording]\ndir = \" \"").unwrap_err().to_string();
        assert!(e.contains("recording.dir"), "{e}");
        assert!(Config::from_toml("[recording]\ndir = \"\"\nenabled = false").is_ok());
    }

    #[test]
    fn default_app_follows_the_http_address_unless_configured() {
        let c = Config::from_toml("[hooks]\necho_fast_path = false").unwrap();
        for (bind, url) in [
            ("0.0.0.0:28081", "http://127.0.0.1:28081/apps/EchoApp"),
            ("[::]:9000", "http://[::1]:9000/apps/EchoApp"),
            ("10.1.2.3:8081", "http://10.1.2.3:8081/apps/EchoApp"),
            ("[::1]:8081", "http://[::1]:8081/apps/EchoApp"),
        ] {
            assert_eq!(echo_app_url(bind.parse().unwrap()), url);
            let apps = c.build_apps(bind.parse().unwrap()).unwrap();
            assert_eq!(&*apps[0].url, url);
            assert!(!apps[0].echo_in_process(), "echo_fast_path = false is obeyed");
        }
        let mine = Config::from_toml("[apps.defaultApp]\nurl = \"http://backend:3000/hooks\"").unwrap();
        let apps = mine.build_apps("0.0.0.0:28081".parse().unwrap()).unwrap();
        assert_eq!(apps.len(), 1);
        assert_eq!(&*apps[0].url, "http://backend:3000/hooks", "a configured defaultApp is kept");
    }

    #[test]
    fn rest_api_on_other_hosts_needs_credentials() {
        let public = "[server]\nhttp_bind = \"0.0.0.0:8081\"\n";
        let e = Config::from_toml(public).unwrap_err().to_string();
        assert!(e.contains("CALLGATE_REST_API__USERNAME") && e.contains("server.http_bind"), "{e}");
        assert!(Config::from_toml("[server]\nhttp_bind = \"192.0.2.7:8081\"").is_err());
        assert!(Config::from_toml("[server]\nhttp_bind = \"[::]:8081\"").is_err());
        let creds = "[rest_api]\nusername = \"admin\"\npassword = \"pw\"\n";
        let c = Config::from_toml(&format!("{public}{creds}")).unwrap();
        assert!(c.rest_api.requires_auth());
        let off = format!("{public}{creds}auth = false\n");
        assert!(Config::from_toml(&off).unwrap_err().to_string().contains("auth = false"));
        // Loopback may run open (local development, `make run`), or with credentials.
        for bind in ["127.0.0.1:8081", "[::1]:8081", "127.0.0.2:0"] {
            let c = Config::from_toml(&format!("[server]\nhttp_bind = \"{bind}\"")).unwrap();
            assert!(!c.rest_api.requires_auth());
        }
        assert!(Config::from_toml(creds).unwrap().rest_api.requires_auth());
        assert!(Config::from_toml("[rest_api]\nusername = \"admin\"").is_err(), "half credentials");
        // Credentials always mean auth: `auth = false` with them is refused, on loopback too.
        for bind in ["127.0.0.1:8081", "0.0.0.0:8081"] {
            let e = Config::from_toml(&format!("[server]\nhttp_bind = \"{bind}\"\n{creds}auth = false\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("rest_api.auth = false contradicts"), "{bind}: {e}");
        }
        let c = Config::from_toml("[rest_api]\nauth = false").unwrap();
        assert!(!c.rest_api.requires_auth(), "auth = false without credentials: open on loopback");
        assert!(Config::from_toml("[rest_api]\npassword = \"pw\"").is_err(), "half credentials");
    }

    #[test]
    fn cors_origins_are_a_list_or_a_comma_separated_string() {
        let cors = |v: &str| {
            Config::from_toml(&format!("[rest_api]\ncors_allow_origin = {v}")).map(|c| c.rest_api.cors_allow_origin)
        };
        let two = cors("[\"https://a.example\", \"http://b.example:8080\"]").unwrap();
        assert_eq!(two, ["https://a.example", "http://b.example:8080"]);
        let env_style = cors("\"https://a.example, https://c.example\"").unwrap();
        assert_eq!(env_style, ["https://a.example", "https://c.example"]);
        assert!(cors("\"\"").unwrap().is_empty());
        assert_eq!(cors("\"*\"").unwrap(), ["*"]);
        let bad =
            ["[\"*\", \"https://a.example\"]", "\"a.example\"", "\"https://a.example/\"", "\"https://a.example/x\""];
        for bad in bad {
            assert!(cors(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let c = Config::from_toml(
            "[rest_api]\nusername = \"admin\"\npassword = \"rest-pw-1\"\n\
             [hooks]\nrest_hook_send_hash = true\nrest_hook_secret_key = \"hmac-key-2\"\n\
             [apps.a]\nurl = \"http://h/x\"\nusername = \"u\"\npassword = \"app-pw-3\"\n",
        );
        // Basic credentials and signing together are refused; check each on its own.
        assert!(c.is_err());
        let c = Config::from_toml(
            "[rest_api]\nusername = \"admin\"\npassword = \"rest-pw-1\"\n\
             [apps.a]\nurl = \"http://h/x\"\nusername = \"u\"\npassword = \"app-pw-3\"\n",
        )
        .unwrap();
        let signed =
            Config::from_toml("[hooks]\nrest_hook_send_hash = true\nrest_hook_secret_key = \"hmac-key-2\"").unwrap();
        let text = format!("{c:?} {c:#?} {signed:?} {:?}", signed.dispatcher_config());
        // The signing key would show as bytes in a derived Debug.
        let key_bytes = format!("{:?}", "hmac-key-2".as_bytes());
        let key_bytes = key_bytes.trim_matches(|c| c == '[' || c == ']');
        for secret in ["rest-pw-1", "hmac-key-2", "app-pw-3", key_bytes] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(text.contains("admin") && text.contains("<redacted>"), "{text}");
        // The hand-written Debug of [hooks] shows every other field.
        assert!(format!("{:?}", c.hooks).contains("max_in_flight_per_session: 16"), "{:?}", c.hooks);
    }

    #[test]
    fn event_delivery_defaults() {
        let c = Config::from_toml("").unwrap();
        let d = c.delivery_config();
        assert_eq!(d, callgate_hooks::DeliveryConfig::default(), "callgate.toml and the library agree");
        assert_eq!((d.attempts, d.queue_capacity), (12, 1024));
        assert_eq!(c.hooks.dead_letter_file, "", "no dead-letter file unless configured");
        let c = Config::from_toml("[hooks]\nevent_attempts = 3\nevent_retry_max_delay_ms = 700").unwrap();
        assert_eq!((c.delivery_config().attempts, c.delivery_config().max_delay), (3, Duration::from_millis(700)));
    }

    #[test]
    fn bad_values_are_refused_before_binding() {
        assert!(Config::from_toml("[server]\nping_interval_ms = 0").is_err());
        for key in ["client_write_timeout_ms", "login_timeout_ms", "header_read_timeout_ms", "shutdown_timeout_ms"] {
            assert!(Config::from_toml(&format!("[server]\n{key} = 0")).is_err(), "{key}");
        }
        assert!(Config::from_toml("[hooks]\nmax_in_flight_per_session = 0").is_err());
        assert!(Config::from_toml("[hooks]\nevent_attempts = 0").is_err());
        assert!(Config::from_toml("[hooks]\nevent_queue_capacity = 0").is_err());
        assert!(Config::from_toml("[hooks]\ndead_letter_max_bytes = 0").is_err());
        assert!(Config::from_toml("[server]\nnope = 1").is_err());
        assert!(Config::from_toml("[apps.x]\nurl = \"ftp://x\"").is_err());
        assert!(Config::from_toml("[rest_api]\nusername = \"only-the-name\"").is_err());
        assert!(Config::from_toml("[hooks]\nrest_hook_send_hash = true").is_err());
        assert!(Config::from_toml("[hooks]\nwebhook_secrets = [\"not-whsec\"]").is_err());
        assert!(Config::from_toml("[hooks]\nwebhook_secrets = [\"whsec_!!\"]").is_err());
        let c = Config::from_toml("[hooks]\nwebhook_secrets = [\"whsec_AAEC\", \"whsec_AwQF\"]").unwrap();
        assert!(!c.dispatcher_config().webhook_keys.is_empty());
        assert!(!format!("{:?}", c.hooks).contains("whsec_"));
        assert!(Config::from_toml("[media]\npublic_ip = \"not-an-ip\"").is_err());
        assert!(Config::from_toml("[media]\ncandidate_ip = \"0.0.0.0\"").is_err());
        assert!(Config::from_toml("[media]\nkeep_alive_enabled = true\nkeep_alive_interval_ms = 0").is_err());
    }

    #[test]
    fn rtp_latching_defaults_to_the_sdp_address() {
        use callgate_media::bridge::RtpLatching;
        let m = Config::from_toml("").unwrap().media.media_config().unwrap();
        assert_eq!(m.rtp_latching, RtpLatching::Sdp);
        let c = Config::from_toml("[media]\nrtp_latching = \"first_packet\"").unwrap();
        assert_eq!(c.media.media_config().unwrap().rtp_latching, RtpLatching::FirstPacket);
        let bad = Config::from_toml("[media]\nrtp_latching = \"any\"").and_then(|c| c.validate());
        assert!(format!("{:#}", bad.unwrap_err()).contains("rtp_latching"));
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
