//! Shared pieces of the benches: realistic hook bodies, and the open-file limit for runs with
//! thousands of sockets.
//!
//! The bodies are what callgate actually sends: the client's data for the action plus the context
//! fields `nodeId`, `appKey`, `sessionId` (spec/rest-hooks.md §1), with WCS-style ids.

/// A `call` hook body as the dispatcher POSTs it (515 bytes, no SDP: `restExclude` took it out).
pub const CALL_HOOK_BODY: &str = concat!(
    r#"{"callId":"b1f3a3c0-8f0e-4c9c-9a0e-2b7d3f1e6a11","callee":"Alice","caller":"Bob","#,
    r#""visibleName":"Bob Smith","hasAudio":true,"hasVideo":false,"status":"PENDING","incoming":false,"#,
    r#""mediaProvider":"WebRTC","isMsrp":false,"sipLogin":"1001","sipDomain":"sip.example.com","#,
    r#""sipOutboundProxy":"sip.example.com","sipPort":5060,"#,
    r#""nodeId":"Hq4qs3E8YRvCpqmDdgVxHQ9smntwobOj@127.0.0.1","appKey":"defaultApp","#,
    r#""sessionId":"/127.0.0.1:53422/127.0.0.1:8080-5e6b1c1a-7c1f-4a5e-9d43-8f0b1b6c2f8e","#,
    r#""custom":{"tenant":"acme","priority":3}}"#
);

/// A `publishStream` hook's data with the client's SDP offer (≈ 1 KiB), before `restExclude`.
pub const PUBLISH_STREAM_DATA: &str = concat!(
    r#"{"mediaSessionId":"8d2c6f4e-3b1a-4f7e-9c2d-5a6b7c8d9e0f","name":"room-42-alice","#,
    r#""published":true,"hasVideo":true,"hasAudio":true,"status":"PENDING","record":false,"#,
    r#""width":1280,"height":720,"bitrate":0,"minBitrate":0,"maxBitrate":2500,"quality":0,"#,
    r#""mediaProvider":"WebRTC","#,
    r#""sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n"#,
    r#"a=msid-semantic: WMS stream\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 0 8\r\nc=IN IP4 0.0.0.0\r\n"#,
    r#"a=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:Hk2f\r\na=ice-pwd:c2VjcmV0LWljZS1wYXNzd29yZC0x\r\n"#,
    r#"a=fingerprint:sha-256 3A:96:6D:57:B2:C2:C7:61:A0:46:3E:1C:97:39:D3:F7:0A:88:A0:B1:EC:03:FB:10:A5:5D:3A:37:AB:DD:02:AA\r\n"#,
    r#"a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"#,
    r#"a=fmtp:111 minptime=10;useinbandfec=1\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\nc=IN IP4 0.0.0.0\r\n"#,
    r#"a=mid:1\r\na=sendonly\r\na=rtcp-mux\r\na=rtpmap:96 VP8/90000\r\na=rtcp-fb:96 nack pli\r\n"#,
    r#"a=rtpmap:97 H264/90000\r\na=fmtp:97 profile-level-id=42e01f;packetization-mode=1\r\n","#,
    r#""nodeId":"Hq4qs3E8YRvCpqmDdgVxHQ9smntwobOj@127.0.0.1","appKey":"defaultApp","#,
    r#""sessionId":"/127.0.0.1:53422/127.0.0.1:8080-5e6b1c1a-7c1f-4a5e-9d43-8f0b1b6c2f8e","#,
    r#""custom":{"tenant":"acme","room":"42"}}"#
);

/// Raises the soft open-file limit to the hard one (inherited by child processes); returns the
/// new soft limit (0 when it cannot be read).
pub fn raise_nofile_limit() -> libc::rlim_t {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim = want;
            }
        }
    }
    lim.rlim_cur
}

// ----- the real binary as a child process (soak, overload) -----------------------------------------

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills and reaps a child process whatever happens.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl ChildGuard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Whether the child is still running (false once it exited, whatever the status).
    pub fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `callgate` binary a process bench runs: `CALLGATE_BIN`, else `<target>/release/callgate`.
/// `Err(true)` when `CALLGATE_BIN` names a missing file (the bench fails), `Err(false)` when the
/// default release binary is missing (the bench says SKIPPED and succeeds, so `cargo bench` as a
/// whole runs); the reason is printed either way.
pub fn callgate_bin(bench: &str, make_target: &str) -> Result<PathBuf, bool> {
    let (bin, explicit) = match std::env::var_os("CALLGATE_BIN") {
        Some(p) => (PathBuf::from(p), true),
        None => {
            let target =
                std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace().join("target"));
            (target.join("release/callgate"), false)
        }
    };
    if bin.exists() {
        return Ok(bin);
    }
    if explicit {
        eprintln!("{bench}: CALLGATE_BIN={} does not exist", bin.display());
    } else {
        eprintln!(
            "{bench}: SKIPPED: {} does not exist; run `make {make_target}` (builds it) or set CALLGATE_BIN",
            bin.display()
        );
    }
    Err(explicit)
}

/// Starts `bin --config <dir>/<name>.toml` (written from `cfg`), output to `<dir>/<name>.log`.
/// The child gets no `CALLGATE_*` variable: the server reads them as configuration and refuses
/// unknown ones (`CALLGATE_BIN` included).
pub fn spawn_callgate(bin: &Path, dir: &Path, name: &str, cfg: &str) -> Result<ChildGuard, String> {
    let cfg_path = dir.join(format!("{name}.toml"));
    std::fs::write(&cfg_path, cfg).map_err(|e| format!("write {}: {e}", cfg_path.display()))?;
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CALLGATE_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .arg("--config")
        .arg(&cfg_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
    Ok(ChildGuard(child))
}

/// A sipp UAS on 127.0.0.1:`port` running `tests/sipp/uas_answer_remote_bye.xml`: it answers
/// every INVITE (100, 180, 200) and sends BYE `hold_ms` later, until killed. `extra` is added
/// to the command line (e.g. `["-lost", "20"]`).
pub fn spawn_sipp_uas(dir: &Path, port: u16, hold_ms: u64, extra: &[&str]) -> Result<ChildGuard, String> {
    let child = Command::new("sipp")
        .arg("-sf")
        .arg(workspace().join("tests/sipp/uas_answer_remote_bye.xml"))
        .args(["-i", "127.0.0.1", "-mi", "127.0.0.1", "-ci", "127.0.0.1", "-nostdin", "-buff_size", "4194304"])
        .args(["-p", &port.to_string(), "-d", &hold_ms.to_string()])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("spawn sipp (install sip-tester: `make deps`): {e}"))?;
    Ok(ChildGuard(child))
}

pub fn free_tcp() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string())
}

pub fn free_udp() -> Result<u16, String> {
    std::net::UdpSocket::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| e.to_string())
}

/// `VmRSS` of `pid` in KiB (`/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Open file descriptors of `pid` (`/proc/<pid>/fd`).
pub fn fd_count(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count())
}

/// User + system CPU seconds of `pid` (0 when it is gone).
pub fn cpu_secs(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return 0.0 };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return 0.0 };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz.max(1.0)
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `p`-th percentile (0-100, nearest rank) of `samples` (sorted here); 0 when empty.
pub fn percentile(samples: &mut [f64], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    samples.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Sum of the samples of `name` in a Prometheus text exposition whose labels contain every one
/// of `labels`.
pub fn metric(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// A minimal HTTP/1.1 exchange on a fresh connection (`Connection: close`): status, the
/// `Retry-After` header if any, and the body. Hand-written (no client pool) so that a bench
/// measures exactly one request per connection and owns every socket it opens.
pub async fn http1(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> Result<Http1Answer, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status line in {:?}", head.lines().next()))?;
    let retry_after = head.lines().find_map(|l| {
        l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("retry-after")).map(|(_, v)| v.trim().to_string())
    });
    // Chunked bodies are not decoded: the benches only read short, fixed-length ones.
    Ok(Http1Answer { status, retry_after, body: body.to_string() })
}

/// What [`http1`] read.
#[derive(Debug, Clone)]
pub struct Http1Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: String,
}

/// Waits (bounded) until `GET /metrics` answers 200 on `http`.
pub async fn wait_http_up(http: std::net::SocketAddr, child: &mut ChildGuard, bound: Duration) -> Result<(), String> {
    let until = Instant::now() + bound;
    loop {
        if !child.alive() {
            return Err("callgate exited during start-up".into());
        }
        if matches!(http1(http, "GET", "/metrics", "").await, Ok(a) if a.status == 200) {
            return Ok(());
        }
        if Instant::now() > until {
            return Err(format!("callgate did not serve /metrics within {bound:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
