//! Real SIP peers for the tests: sipp running the scenarios of `tests/sipp`, and Kamailio
//! running `tests/kamailio/kamailio.cfg`. Everything is on 127.0.0.1, on ports picked at run
//! time, and every process has a bounded lifetime: sipp gets `-timeout` and `-m`, Kamailio runs
//! under `timeout(1)`, and both are killed when their guard is dropped.
//!
//! ```ignore
//! # async fn demo() {
//! use callgate_tests::peers::{Kamailio, Sipp};
//! // sipp answers whatever calls it; another sipp (or callgate) calls it.
//! let uas = Sipp::scenario("uas_answer_local_bye.xml").spawn().unwrap();
//! let uac = Sipp::scenario("uac_call.xml").remote(uas.local_addr()).service("3001").spawn().unwrap();
//! uac.wait().await.assert_success();
//! uas.wait().await.assert_success();
//! // Kamailio as registrar and proxy, answering OPTIONS before start() returns.
//! let kamailio = Kamailio::new().start().await.unwrap();
//! println!("registrar at {}", kamailio.addr());
//! # }
//! ```
//!
//! A missing `sipp` or `kamailio` is a [`PeerError::Missing`] that says to run `make deps`.

use std::fmt;
use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How long a sipp or Kamailio process gets to bind its port.
const READY_WAIT: Duration = Duration::from_secs(10);

/// Why a peer could not be started.
#[derive(Debug)]
pub enum PeerError {
    /// The program is not installed.
    Missing { program: &'static str, package: &'static str },
    /// Spawning or preparing its files failed.
    Io { what: String, source: std::io::Error },
    /// It exited, or did not bind its port, before it was ready.
    NotReady { program: &'static str, detail: String, log: String },
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Missing { program, package } => {
                write!(f, "`{program}` is not installed: run `make deps` (it installs the Debian package `{package}`)")
            }
            PeerError::Io { what, source } => write!(f, "{what}: {source}"),
            PeerError::NotReady { program, detail, log } => write!(f, "{program} is not ready: {detail}\n{log}"),
        }
    }
}

impl std::error::Error for PeerError {}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PeerError {
    let what = what.into();
    move |source| PeerError::Io { what, source }
}

/// `tests/sipp`, where the scenarios are.
pub fn sipp_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sipp")
}

/// `tests/kamailio/kamailio.cfg`.
pub fn kamailio_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kamailio").join("kamailio.cfg")
}

/// A free UDP port on 127.0.0.1 (bound, then released for the peer to take).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("bind 127.0.0.1:0").port()
}

/// Finds `program` on PATH, then in the sbin directories a user's PATH may lack
/// (Kamailio is `/usr/sbin/kamailio`). `$env_override` wins when set.
fn find_program(program: &'static str, package: &'static str, env_override: &str) -> Result<PathBuf, PeerError> {
    if let Some(p) = std::env::var_os(env_override) {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(PeerError::Missing { program, package })
}

/// A fresh directory for one peer's logs, under the system temp dir.
fn run_dir(label: &str) -> Result<PathBuf, PeerError> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("callgate-peers-{}-{n}-{label}", std::process::id()));
    fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
    Ok(dir)
}

/// Whether something holds UDP `port` on `ip` or 0.0.0.0, read from `/proc/net/udp`
/// (probing with bind() could steal the port from the peer that is about to take it).
fn udp_port_bound(ip: Ipv4Addr, port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/udp") else { return false };
    // The kernel prints the address in host (little-endian) byte order.
    let hex = u32::from_le_bytes(ip.octets());
    let wanted = [format!("{hex:08X}:{port:04X}"), format!("00000000:{port:04X}")];
    table.lines().skip(1).filter_map(|l| l.split_whitespace().nth(1)).any(|local| wanted.iter().any(|w| w == local))
}

/// Set `CALLGATE_KEEP_PEER_LOGS=1` to keep each peer's log directory; by default it is removed
/// once the logs are read (an outcome's report carries them).
fn keep_logs() -> bool {
    std::env::var_os("CALLGATE_KEEP_PEER_LOGS").is_some_and(|v| !v.is_empty() && v != "0")
}

fn remove_run_dir(dir: &Path) {
    if !keep_logs() {
        let _ = fs::remove_dir_all(dir);
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

// ----------------------------------------------------------------------------------------------
// sipp

/// A sipp run to be spawned: the scenario and its command line. Defaults: one call (`-m 1`),
/// `-timeout 30s` (reaching it is a failure), local port picked at spawn.
#[derive(Debug, Clone)]
pub struct Sipp {
    scenario: PathBuf,
    remote: Option<SocketAddr>,
    local_ip: Ipv4Addr,
    local_port: u16,
    service: Option<String>,
    calls: u32,
    timeout: Duration,
    pause: Option<Duration>,
    keys: Vec<(String, String)>,
    auth: Option<(String, String)>,
    extra: Vec<String>,
}

impl Sipp {
    /// A scenario file: relative paths are under `tests/sipp`.
    pub fn scenario(path: impl AsRef<Path>) -> Sipp {
        let path = path.as_ref();
        let scenario = if path.is_absolute() { path.to_path_buf() } else { sipp_dir().join(path) };
        Sipp {
            scenario,
            remote: None,
            local_ip: Ipv4Addr::LOCALHOST,
            local_port: 0,
            service: None,
            calls: 1,
            timeout: Duration::from_secs(30),
            pause: None,
            keys: Vec::new(),
            auth: None,
            extra: Vec::new(),
        }
    }

    /// The peer a UAC scenario sends to (a proxy, or the UA under test).
    pub fn remote(mut self, addr: SocketAddr) -> Sipp {
        self.remote = Some(addr);
        self
    }

    /// The local address (`-i`), 127.0.0.1 by default; another loopback address such as
    /// 127.0.0.2 makes a peer that is not the registrar (Linux routes all of 127/8 to `lo`).
    pub fn local_ip(mut self, ip: Ipv4Addr) -> Sipp {
        self.local_ip = ip;
        self
    }

    /// The local UDP port (`-p`); 0, the default, picks a free one.
    pub fn local_port(mut self, port: u16) -> Sipp {
        self.local_port = port;
        self
    }

    /// `-s`: the user part of the Request-URI in UAC scenarios (`[service]`).
    pub fn service(mut self, user: impl Into<String>) -> Sipp {
        self.service = Some(user.into());
        self
    }

    /// `-m`: sipp exits after this many calls.
    pub fn calls(mut self, n: u32) -> Sipp {
        self.calls = n;
        self
    }

    /// `-timeout` (with `-timeout_error`): sipp fails and exits after this long (rounded up to
    /// whole seconds, sipp's resolution).
    pub fn timeout(mut self, d: Duration) -> Sipp {
        self.timeout = d;
        self
    }

    /// `-d`: the length of each `<pause/>` without its own duration.
    pub fn pause(mut self, d: Duration) -> Sipp {
        self.pause = Some(d);
        self
    }

    /// `-key name value`: the `[name]` keyword of the scenario.
    pub fn key(mut self, name: impl Into<String>, value: impl Into<String>) -> Sipp {
        self.keys.push((name.into(), value.into()));
        self
    }

    /// `-au user -ap password`: the credentials of `[authentication]`.
    pub fn auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Sipp {
        self.auth = Some((user.into(), password.into()));
        self
    }

    /// Any other sipp argument, appended as is.
    pub fn arg(mut self, arg: impl Into<String>) -> Sipp {
        self.extra.push(arg.into());
        self
    }

    fn name(&self) -> String {
        self.scenario.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "sipp".into())
    }

    /// Starts sipp and returns once its SIP port is bound.
    pub fn spawn(self) -> Result<SippProcess, PeerError> {
        let program = find_program("sipp", "sip-tester", "SIPP")?;
        if !self.scenario.is_file() {
            return Err(PeerError::Io {
                what: format!("scenario {}", self.scenario.display()),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let name = self.name();
        let dir = run_dir(&name)?;
        let port = if self.local_port == 0 { free_udp_port() } else { self.local_port };
        let mut cmd = Command::new(program);
        cmd.arg("-sf").arg(&self.scenario);
        if let Some(s) = &self.service {
            cmd.args(["-s", s]);
        }
        if let Some(r) = self.remote {
            cmd.arg(r.to_string());
        }
        // -ci: sipp's control socket would otherwise listen on 0.0.0.0.
        let ip = self.local_ip.to_string();
        cmd.args(["-i", &ip, "-mi", &ip, "-ci", "127.0.0.1", "-nostdin"]);
        cmd.args(["-p", &port.to_string(), "-m", &self.calls.to_string()]);
        // sipp counts -timeout in whole seconds.
        let timeout_s = self.timeout.as_millis().div_ceil(1000).max(1);
        cmd.args(["-timeout", &format!("{timeout_s}s"), "-timeout_error"]);
        cmd.arg("-trace_msg").arg("-message_file").arg(dir.join("messages.log"));
        cmd.arg("-trace_err").arg("-error_file").arg(dir.join("errors.log"));
        cmd.arg("-trace_screen").arg("-screen_file").arg(dir.join("screen.log"));
        if let Some(d) = self.pause {
            cmd.args(["-d", &d.as_millis().to_string()]);
        }
        for (k, v) in &self.keys {
            cmd.args(["-key", k, v]);
        }
        if let Some((u, p)) = &self.auth {
            cmd.args(["-au", u, "-ap", p]);
        }
        cmd.args(&self.extra);
        let stdout = File::create(dir.join("stdout.log")).map_err(io_err("create stdout.log"))?;
        let stderr = File::create(dir.join("stderr.log")).map_err(io_err("create stderr.log"))?;
        cmd.current_dir(&dir).stdin(Stdio::null()).stdout(stdout).stderr(stderr);
        let child = cmd.spawn().map_err(io_err(format!("spawn sipp for {name}")))?;
        let mut process = SippProcess {
            child: Some(child),
            name,
            local_addr: SocketAddr::from((self.local_ip, port)),
            dir,
            deadline: Instant::now() + self.timeout + Duration::from_secs(10),
        };
        process.wait_bound()?;
        Ok(process)
    }
}

/// A running sipp; killed when dropped.
#[derive(Debug)]
pub struct SippProcess {
    child: Option<Child>,
    name: String,
    local_addr: SocketAddr,
    dir: PathBuf,
    /// After this the harness kills sipp even if its own -timeout did not stop it.
    deadline: Instant,
}

impl SippProcess {
    /// Where sipp sends from and listens (127.0.0.1 and its `-p`).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The directory of its logs (`messages.log`, `errors.log`, `stderr.log`, `screen.log`),
    /// removed after [`SippProcess::wait`] unless `CALLGATE_KEEP_PEER_LOGS` is set.
    pub fn log_dir(&self) -> &Path {
        &self.dir
    }

    /// The messages sent and received so far (sipp may not have flushed the last ones).
    pub fn messages(&self) -> Vec<SipMessage> {
        parse_message_log(&read_lossy(&self.dir.join("messages.log")))
    }

    fn wait_bound(&mut self) -> Result<(), PeerError> {
        let until = Instant::now() + READY_WAIT;
        let port = self.local_addr.port();
        loop {
            let ip = match self.local_addr.ip() {
                std::net::IpAddr::V4(ip) => ip,
                std::net::IpAddr::V6(_) => Ipv4Addr::LOCALHOST,
            };
            if udp_port_bound(ip, port) {
                return Ok(());
            }
            let child = self.child.as_mut().expect("child until wait");
            if let Ok(Some(status)) = child.try_wait() {
                return Err(PeerError::NotReady {
                    program: "sipp",
                    detail: format!("{} exited with {status} before binding port {port}", self.name),
                    log: read_lossy(&self.dir.join("stderr.log")),
                });
            }
            if Instant::now() > until {
                return Err(PeerError::NotReady {
                    program: "sipp",
                    detail: format!("{} did not bind port {port} within {READY_WAIT:?}", self.name),
                    log: read_lossy(&self.dir.join("stderr.log")),
                });
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for sipp to exit (it exits after `-m` calls or at `-timeout`) without blocking
    /// the runtime, and collects its logs.
    pub async fn wait(mut self) -> SippOutcome {
        loop {
            if let Some(outcome) = self.poll_exit() {
                return outcome;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`SippProcess::wait`] for code outside a runtime.
    pub fn wait_blocking(mut self) -> SippOutcome {
        loop {
            if let Some(outcome) = self.poll_exit() {
                return outcome;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn poll_exit(&mut self) -> Option<SippOutcome> {
        let child = self.child.as_mut().expect("child until wait");
        let (status, killed) = match child.try_wait() {
            Ok(Some(status)) => (status, false),
            Ok(None) if Instant::now() < self.deadline => return None,
            _ => {
                let _ = child.kill();
                (child.wait().expect("wait for killed sipp"), true)
            }
        };
        self.child = None;
        let outcome = SippOutcome {
            scenario: self.name.clone(),
            status,
            killed,
            stderr: read_lossy(&self.dir.join("stderr.log")),
            errors: read_lossy(&self.dir.join("errors.log")),
            message_log: read_lossy(&self.dir.join("messages.log")),
            dir: keep_logs().then(|| self.dir.clone()),
        };
        remove_run_dir(&self.dir);
        Some(outcome)
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            remove_run_dir(&self.dir);
        }
    }
}

/// How a sipp run ended, with its logs.
#[derive(Debug, Clone)]
pub struct SippOutcome {
    pub scenario: String,
    /// 0: every call succeeded; 1: a call failed; 255: a fatal error (an `<error>` action, a
    /// bad scenario, the global timeout); 97: an internal exit command.
    pub status: ExitStatus,
    /// The harness killed it after its deadline.
    pub killed: bool,
    pub stderr: String,
    /// `-trace_err`: the unexpected messages and failed checks.
    pub errors: String,
    /// `-trace_msg`: every message sent and received.
    pub message_log: String,
    /// Where the logs stay, with `CALLGATE_KEEP_PEER_LOGS` set.
    pub dir: Option<PathBuf>,
}

impl SippOutcome {
    pub fn success(&self) -> bool {
        self.status.success() && !self.killed
    }

    /// The messages sent and received, in order, exactly as on the wire.
    pub fn messages(&self) -> Vec<SipMessage> {
        parse_message_log(&self.message_log)
    }

    /// The messages sipp sent.
    pub fn sent(&self) -> Vec<String> {
        self.messages().into_iter().filter(|m| m.sent).map(|m| m.text).collect()
    }

    /// The messages sipp received.
    pub fn received(&self) -> Vec<String> {
        self.messages().into_iter().filter(|m| !m.sent).map(|m| m.text).collect()
    }

    /// A report of the run for a failed assertion.
    pub fn report(&self) -> String {
        format!(
            "sipp {} exited with {}{}; {}\n--- stderr\n{}\n--- errors\n{}\n--- messages\n{}",
            self.scenario,
            self.status,
            if self.killed { " (killed by the harness at its deadline)" } else { "" },
            match &self.dir {
                Some(d) => format!("logs in {}", d.display()),
                None => "set CALLGATE_KEEP_PEER_LOGS=1 to keep the log files".to_string(),
            },
            self.stderr.trim_end(),
            self.errors.trim_end(),
            self.message_log.trim_end()
        )
    }

    /// Panics with the report unless every call succeeded.
    pub fn assert_success(&self) {
        assert!(self.success(), "expected success: {}", self.report());
    }

    /// Panics with the report if sipp succeeded (for checks that must bite).
    pub fn assert_failure(&self) {
        assert!(!self.success(), "expected a failure: {}", self.report());
    }
}

/// One message of a sipp `-trace_msg` log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMessage {
    /// Sent by sipp (else received).
    pub sent: bool,
    /// The message as on the wire.
    pub text: String,
}

impl SipMessage {
    /// The start line.
    pub fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
}

/// Parses a `-trace_msg` log: each entry is a dashed timestamp line, then
/// `UDP message sent (N bytes):` or `UDP message received [N] bytes :`, a blank line and
/// exactly N bytes of message.
pub fn parse_message_log(log: &str) -> Vec<SipMessage> {
    let mut out = Vec::new();
    let mut rest = log;
    while let Some(pos) = rest.find("UDP message ") {
        rest = &rest[pos..];
        let Some(eol) = rest.find('\n') else { break };
        let header = &rest[..eol];
        let sent = header.starts_with("UDP message sent");
        let len: Option<usize> =
            header.split(|c: char| !c.is_ascii_digit()).find(|s| !s.is_empty()).and_then(|s| s.parse().ok());
        let body_start = eol + 1 + usize::from(rest[eol + 1..].starts_with('\n'));
        match len {
            Some(n) if rest.len() >= body_start + n && rest.is_char_boundary(body_start + n) => {
                out.push(SipMessage { sent, text: rest[body_start..body_start + n].to_string() });
                rest = &rest[body_start + n..];
            }
            _ => rest = &rest[eol..],
        }
    }
    out
}

// ----------------------------------------------------------------------------------------------
// Kamailio

/// A Kamailio to be started: `tests/kamailio/kamailio.cfg` on one UDP port of 127.0.0.1.
#[derive(Debug, Clone)]
pub struct Kamailio {
    config: PathBuf,
    port: u16,
    defines: Vec<String>,
    lifetime: Duration,
}

impl Default for Kamailio {
    fn default() -> Self {
        Kamailio::new()
    }
}

impl Kamailio {
    /// The repository's config, a free port, and a lifetime of 5 minutes.
    pub fn new() -> Kamailio {
        Kamailio { config: kamailio_config(), port: 0, defines: Vec::new(), lifetime: Duration::from_secs(300) }
    }

    pub fn config(mut self, path: impl Into<PathBuf>) -> Kamailio {
        self.config = path.into();
        self
    }

    /// The UDP port; 0, the default, picks a free one.
    pub fn port(mut self, port: u16) -> Kamailio {
        self.port = port;
        self
    }

    /// `-A NAME`: a define of the config (`WITH_SHA256`, `WITH_DEBUG`).
    pub fn define(mut self, name: impl Into<String>) -> Kamailio {
        self.defines.push(name.into());
        self
    }

    /// Digest auth with SHA-256 instead of MD5.
    pub fn sha256(self) -> Kamailio {
        self.define("WITH_SHA256")
    }

    /// Kamailio is stopped by `timeout(1)` after this long, even if the test process dies.
    pub fn lifetime(mut self, d: Duration) -> Kamailio {
        self.lifetime = d;
        self
    }

    /// Starts Kamailio and returns once it answers an OPTIONS on its port.
    pub async fn start(self) -> Result<KamailioProcess, PeerError> {
        let program = find_program("kamailio", "kamailio", "KAMAILIO")?;
        // A port picked here may be taken before Kamailio binds it: then try another one.
        let attempts = if self.port == 0 { 3 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            match self.start_once(&program).await {
                Ok(p) => return Ok(p),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn start_once(&self, program: &Path) -> Result<KamailioProcess, PeerError> {
        let dir = run_dir("kamailio")?;
        let port = if self.port == 0 { free_udp_port() } else { self.port };
        let pidfile = dir.join("kamailio.pid");
        // timeout(1) bounds the lifetime; it leads the process group the guard signals.
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=5s", &format!("{}s", self.lifetime.as_secs().max(1))]);
        cmd.arg(program).arg("-f").arg(&self.config);
        cmd.args(["-l", &format!("udp:127.0.0.1:{port}")]);
        cmd.arg("-P").arg(&pidfile).arg("-Y").arg(&dir).arg("-w").arg(&dir);
        // -E: log to stderr; -DD: stay in the foreground (children are still forked).
        cmd.args(["-E", "-DD", "-m", "64", "-M", "8"]);
        for d in &self.defines {
            cmd.args(["-A", d]);
        }
        let log = File::create(dir.join("kamailio.log")).map_err(io_err("create kamailio.log"))?;
        let log2 = log.try_clone().map_err(io_err("clone kamailio.log"))?;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(io_err("spawn timeout(1) with kamailio"))?;
        let mut process = KamailioProcess { child: Some(child), addr: SocketAddr::from(([127, 0, 0, 1], port)), dir };
        process.wait_ready().await?;
        Ok(process)
    }
}

/// A running Kamailio; stopped (its whole process group) when dropped.
#[derive(Debug)]
pub struct KamailioProcess {
    child: Option<Child>,
    addr: SocketAddr,
    dir: PathBuf,
}

impl KamailioProcess {
    /// Its SIP address: registrar and proxy for `sip:3000@127.0.0.1` and `sip:3001@127.0.0.1`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        read_lossy(&self.dir.join("kamailio.log"))
    }

    /// Its log, pid file and runtime directory; removed on drop unless
    /// `CALLGATE_KEEP_PEER_LOGS` is set.
    pub fn log_dir(&self) -> &Path {
        &self.dir
    }

    fn not_ready(&self, detail: String) -> PeerError {
        PeerError::NotReady { program: "kamailio", detail, log: self.log() }
    }

    async fn wait_ready(&mut self) -> Result<(), PeerError> {
        let until = Instant::now() + READY_WAIT;
        let probe = tokio::net::UdpSocket::bind("127.0.0.1:0").await.map_err(io_err("bind the OPTIONS probe"))?;
        let local = probe.local_addr().map_err(io_err("probe address"))?;
        let mut buf = vec![0u8; 4096];
        for n in 0u32.. {
            if let Ok(Some(status)) = self.child.as_mut().expect("child until drop").try_wait() {
                return Err(self.not_ready(format!("exited with {status} (port {})", self.addr.port())));
            }
            if Instant::now() > until {
                return Err(self.not_ready(format!("no answer to OPTIONS on {} within {READY_WAIT:?}", self.addr)));
            }
            if !udp_port_bound(Ipv4Addr::LOCALHOST, self.addr.port()) {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let options = format!(
                "OPTIONS sip:{addr} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-probe-{n}\r\n\
                 From: <sip:probe@{local}>;tag=probe\r\nTo: <sip:{addr}>\r\nCall-ID: probe-{n}@{local}\r\n\
                 CSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
                addr = self.addr
            );
            probe.send_to(options.as_bytes(), self.addr).await.map_err(io_err("send OPTIONS"))?;
            if let Ok(Ok((len, _))) = tokio::time::timeout(Duration::from_millis(200), probe.recv_from(&mut buf)).await
            {
                if buf[..len].starts_with(b"SIP/2.0 200 ") {
                    return Ok(());
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// Signals the process group led by timeout(1): Kamailio's main process and its children.
    fn signal_group(pid: u32, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{pid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for KamailioProcess {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pid = child.id();
        KamailioProcess::signal_group(pid, "-TERM");
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until && !matches!(child.try_wait(), Ok(Some(_))) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !matches!(child.try_wait(), Ok(Some(_))) {
            KamailioProcess::signal_group(pid, "-KILL");
            let _ = child.wait();
        }
        remove_run_dir(&self.dir);
    }
}
