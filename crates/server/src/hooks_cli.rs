//! `callgate hooks …`: tools for backend authors (docs/rest-api.md).
//!
//! - `callgate hooks schema [METHOD]`: the JSON Schemas of every hook body by kind and method,
//!   and of the answers (`callgate_hooks::schema`).
//! - `callgate hooks test <url> [--app X] [--config F]`: fires every hook at a backend with an
//!   example body (`callgate_hooks::schema::example`), through the server's own hook client (the
//!   same headers, Basic auth or WCS signing, Standard Webhooks signatures, timeout and body limit
//!   as the running server, from the same config), checks each answer against the contract,
//!   prints a table and exits non-zero on a violation.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use callgate_hooks::schema::{self, ExampleContext};
use callgate_hooks::{
    App, Dispatcher, DispatcherConfig, HookKind, HookMethod, InteractionError, RestClientConfig, RestPolicy,
    WebhookKeys,
};
use serde_json::{Map, Value};

use crate::config::Config;

/// Exit code of `hooks test` when the backend broke the contract.
pub const EXIT_VIOLATIONS: i32 = 1;

#[derive(clap::Subcommand, Debug)]
pub enum HooksCommand {
    /// Print the JSON Schemas (draft 2020-12) of every hook body, by kind and method, and of the
    /// answers; or of one method's body.
    Schema {
        /// One method (URL name or alias), e.g. `connect`, `CallStatusEvent`.
        method: Option<String>,
    },
    /// Fire every hook kind at a backend with realistic bodies and check its answers against
    /// the contract; prints a table, exits 1 on a violation.
    Test {
        /// The application's REST URL: hooks go to {url}/{method}.
        url: String,
        /// The appKey put in the bodies; with --config, also the [apps.X] whose credentials and
        /// enabled methods are used.
        #[arg(long, default_value = "defaultApp")]
        app: String,
        /// callgate's config file: [hooks] (timeout, retries, signing) and [apps] as the server
        /// reads them (the embedded defaults and CALLGATE_ variables apply as for the server).
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

/// Runs a `hooks` command; returns the process exit code. `main_config`: callgate's own
/// `--config` (before the command), used when `hooks test` has none of its own.
pub fn run(cmd: HooksCommand, main_config: Option<&std::path::Path>) -> anyhow::Result<i32> {
    match cmd {
        HooksCommand::Schema { method: None } => {
            emit(&(serde_json::to_string_pretty(&schema::document())? + "\n"))?;
            Ok(0)
        }
        HooksCommand::Schema { method: Some(name) } => {
            let m = HookMethod::from_name(&name).with_context(|| format!("unknown hook method {name:?}"))?;
            emit(&(serde_json::to_string_pretty(&schema::request_schema(m))? + "\n"))?;
            Ok(0)
        }
        HooksCommand::Test { url, app, config } => {
            let cfg = Config::load(config.as_deref().or(main_config), "CALLGATE_")?;
            cfg.validate()?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let report = rt.block_on(test_backend(&cfg, &url, &app))?;
            emit(&report.table())?;
            Ok(if report.violations() > 0 { EXIT_VIOLATIONS } else { 0 })
        }
    }
}

/// Writes to stdout; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// How one hook went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered as the contract says.
    Ok,
    /// Refused on purpose (a 4xx to an invocation): allowed, shown for information.
    Refused,
    /// Within the contract, but worth a look.
    Warn,
    /// Not called: the method is not enabled for the app, or DISABLE for the session.
    Skipped,
    /// Against the contract.
    Violation,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Warn => "WARN",
            Outcome::Skipped => "skipped",
            Outcome::Violation => "VIOLATION",
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub method: String,
    pub kind: &'static str,
    pub http: String,
    pub latency: Option<Duration>,
    pub outcome: Outcome,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn violations(&self) -> usize {
        self.rows.iter().filter(|r| r.outcome == Outcome::Violation).count()
    }

    /// The table, the notes and a summary line, as printed.
    pub fn table(&self) -> String {
        let head = ["method", "kind", "http", "ms", "result", "detail"];
        let cells: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.method.clone(),
                    r.kind.to_string(),
                    r.http.clone(),
                    r.latency.map(|d| d.as_millis().to_string()).unwrap_or_else(|| "-".into()),
                    r.outcome.label().to_string(),
                    r.detail.clone(),
                ]
            })
            .collect();
        let mut width = head.map(str::len);
        for c in &cells {
            for (w, v) in width.iter_mut().zip(c) {
                *w = (*w).max(v.chars().count());
            }
        }
        let line = |c: &[String]| {
            let mut s = String::new();
            for (i, v) in c.iter().enumerate() {
                if i + 1 == c.len() {
                    s.push_str(v);
                } else {
                    s.push_str(&format!("{v:<w$}  ", w = width[i]));
                }
            }
            s.trim_end().to_string() + "\n"
        };
        let mut out = line(&head.map(String::from));
        out += &line(&width.map(|w| "-".repeat(w)));
        for c in &cells {
            out += &line(c);
        }
        for n in &self.notes {
            out += &format!("note: {n}\n");
        }
        let count = |o: Outcome| self.rows.iter().filter(|r| r.outcome == o).count();
        out += &format!(
            "{} hooks: {} ok, {} refused, {} warnings, {} skipped, {} violations\n",
            self.rows.len(),
            count(Outcome::Ok),
            count(Outcome::Refused),
            count(Outcome::Warn),
            count(Outcome::Skipped),
            self.violations()
        );
        out
    }
}

fn kind_name(k: HookKind) -> &'static str {
    match k {
        HookKind::Connect => "connect",
        HookKind::DirectInvocation => "direct",
        HookKind::Event => "event",
        HookKind::IncomingInvocation => "incoming",
    }
}

/// Fields callgate keeps whatever an OVERWRITE answer says (docs/hooks.md §6, §10, §12, §14).
fn kept_by_callgate(method: HookMethod) -> &'static [&'static str] {
    use HookMethod as M;
    match method {
        M::Call | M::Answer => &["callId", "incoming"],
        M::PublishStream | M::PlayStream => &["mediaSessionId", "published"],
        M::SendMessage => &["id"],
        M::OnMessageEvent => &["id", "status"],
        _ => &[],
    }
}

/// The application the hooks go to: `url`, with `[apps.<app>]`'s credentials and enabled
/// methods when the config has that app.
fn app_for(cfg: &Config, url: &str, app_key: &str) -> anyhow::Result<App> {
    let mut ac = cfg.apps.get(app_key).cloned().unwrap_or_default();
    ac.url = url.to_string();
    Ok(App::new(app_key, &ac, false, cfg.hooks.max_in_flight_per_app)?)
}

/// Fires every hook at `url` and judges the answers.
pub async fn test_backend(cfg: &Config, url: &str, app_key: &str) -> anyhow::Result<Report> {
    let app = app_for(cfg, url, app_key)?;
    let dcfg = cfg.dispatcher_config();
    let timeout = dcfg.timeout;
    let signed = !dcfg.webhook_keys.is_empty() || dcfg.signing_key.is_some();
    let dispatcher = Dispatcher::new(dcfg.clone()).context("cannot build the hook HTTP client")?;
    let ctx = ExampleContext::new(app_key);
    let mut report = Report::default();
    report.notes.push(format!(
        "POST {}/{{method}}, appKey {app_key}, timeout {}",
        app.url,
        timeout.map(|t| format!("{} ms", t.as_millis())).unwrap_or_else(|| "none".into())
    ));

    // connect first: its answer's restClientConfig governs the other hooks, as in a session.
    let mut rcc = RestClientConfig::default();
    for &method in HookMethod::ALL {
        let mut row = Row {
            method: method.url_name().to_string(),
            kind: kind_name(method.kind()),
            http: "-".into(),
            latency: None,
            outcome: Outcome::Ok,
            detail: String::new(),
        };
        let mc = rcc.method(method).clone();
        if !app.is_enabled(method) {
            row.outcome = Outcome::Skipped;
            row.detail = format!("not in [apps.{app_key}] methods");
            report.rows.push(row);
            continue;
        }
        if method != HookMethod::Connect && mc.rest_policy == RestPolicy::Disable {
            row.outcome = Outcome::Skipped;
            row.detail = "restPolicy DISABLE in the connect answer's restClientConfig".into();
            report.rows.push(row);
            continue;
        }
        let mut body = schema::example(method, &ctx);
        for f in mc.rest_exclude.iter() {
            body.remove(f);
        }
        let bytes = serde_json::to_vec(&body)?;
        let started = Instant::now();
        let result = dispatcher.post(&app, method, bytes.into()).await;
        let elapsed = started.elapsed();
        row.latency = Some(elapsed);
        let mut problems: Vec<String> = Vec::new();
        let mut warnings: Vec<String> = Vec::new();
        match result {
            Ok(answer) => {
                row.http = "200".into();
                if method == HookMethod::Connect {
                    for k in callgate_hooks::rules::CONTEXT_FIELDS {
                        if answer.get(k).is_some_and(|v| Some(v) != body.get(k)) {
                            problems.push(format!("changes {k}, which callgate never takes from a backend"));
                        }
                    }
                    let (parsed, w) = RestClientConfig::parse(answer.get(callgate_hooks::rules::REST_CLIENT_CONFIG));
                    for w in w {
                        problems.push(format!("restClientConfig: {w}"));
                    }
                    problems.extend(overwrite_config_problems(&parsed));
                    if answer.contains_key(callgate_hooks::rules::REST_CLIENT_CONFIG) {
                        row.detail = "restClientConfig read".into();
                    }
                    rcc = parsed;
                } else if mc.rest_policy == RestPolicy::Overwrite {
                    let (applied, ignored) = overwrite_effect(&body, &answer, &mc.rest_overwrite);
                    if !applied.is_empty() {
                        row.detail = format!("OVERWRITE takes {}", applied.join(", "));
                    }
                    if !ignored.is_empty() {
                        warnings
                            .push(format!("changes {} outside restOverwrite: ignored by callgate", ignored.join(", ")));
                    }
                }
            }
            Err(e) => judge_error(method, &e, &mut row, &mut problems),
        }
        if let Some(t) = timeout {
            if elapsed * 2 > t && !problems.iter().any(|p| p.starts_with("no answer")) {
                warnings.push(format!("slow: {} ms of the {} ms timeout", elapsed.as_millis(), t.as_millis()));
            }
        }
        if !problems.is_empty() {
            row.outcome = Outcome::Violation;
            row.detail = join(&row.detail, &problems.join("; "));
        } else if !warnings.is_empty() && row.outcome == Outcome::Ok {
            row.outcome = Outcome::Warn;
        }
        if !warnings.is_empty() {
            row.detail = join(&row.detail, &warnings.join("; "));
        }
        report.rows.push(row);
    }

    if signed {
        report.rows.push(signature_check(&dcfg, &app, &ctx).await?);
    } else {
        report.notes.push(
            "requests were not signed ([hooks] webhook_secrets and rest_hook_send_hash unset): \
             the backend's signature check was not tried"
                .into(),
        );
    }
    Ok(report)
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}; {b}"),
    }
}

/// What a failed interaction means for `method`'s kind.
fn judge_error(method: HookMethod, e: &InteractionError, row: &mut Row, problems: &mut Vec<String>) {
    match e {
        InteractionError::Status { code, reason, custom_reason } => {
            row.http = code.to_string();
            let refusal = (400..500).contains(code);
            match method.kind() {
                HookKind::Event => problems.push(format!(
                    "events cannot be refused: {code} {reason} is an interaction error (an ErrorEvent under restOnError FAIL)"
                )),
                _ if refusal => {
                    row.outcome = Outcome::Refused;
                    row.detail = match custom_reason {
                        Some(r) => format!("the client would get info {r:?}"),
                        None => format!(
                            "the client would get info {:?} (answer {{\"status\":{code},\"reason\":\"…\"}} to give a reason)",
                            e.client_info()
                        ),
                    };
                }
                _ => problems.push(format!(
                    "{code} {reason}: success is exactly 200 with a JSON object; refuse with a 4xx and {{\"status\",\"reason\"}}"
                )),
            }
        }
        InteractionError::Timeout(t) => {
            row.http = "timeout".into();
            problems.push(format!("no answer within the {} ms timeout", t.as_millis()));
        }
        InteractionError::BadBody(why) => {
            row.http = "200".into();
            problems.push(format!("the 200 answer is not a JSON object ({why})"));
        }
        InteractionError::TooLarge(n) => {
            row.http = "200".into();
            problems.push(format!("the answer is over max_response_bytes ({n})"));
        }
        other => {
            row.http = "error".into();
            problems.push(other.to_string());
        }
    }
}

/// `restOverwrite` entries callgate will not honour: context fields and fields it keeps.
fn overwrite_config_problems(rcc: &RestClientConfig) -> Vec<String> {
    let mut out = Vec::new();
    for &m in HookMethod::ALL {
        let mc = rcc.method(m);
        for f in mc.rest_overwrite.iter() {
            if callgate_hooks::rules::CONTEXT_FIELDS.contains(&f) {
                out.push(format!("restClientConfig.{m}.restOverwrite names {f}: context fields are never overwritten"));
            } else if kept_by_callgate(m).contains(&f) {
                out.push(format!("restClientConfig.{m}.restOverwrite names {f}: callgate keeps its own {f}"));
            }
        }
    }
    out
}

/// (fields an OVERWRITE answer changes that callgate takes, those it ignores).
fn overwrite_effect(
    sent: &Map<String, Value>,
    answer: &Map<String, Value>,
    listed: &callgate_hooks::FieldList,
) -> (Vec<String>, Vec<String>) {
    let mut applied = Vec::new();
    let mut ignored = Vec::new();
    for (k, v) in answer {
        if sent.get(k) == Some(v) {
            continue;
        }
        if listed.contains(k) && !callgate_hooks::rules::CONTEXT_FIELDS.contains(&k.as_str()) {
            applied.push(k.clone());
        } else {
            ignored.push(k.clone());
        }
    }
    (applied, ignored)
}

/// One more `ConnectionStatusEvent`, signed with keys the backend does not hold: a backend that
/// verifies signatures refuses it.
async fn signature_check(good: &DispatcherConfig, app: &App, ctx: &ExampleContext) -> anyhow::Result<Row> {
    let mut bad = good.clone();
    let random = || uuid::Uuid::new_v4().as_bytes().to_vec();
    if !good.webhook_keys.is_empty() {
        use base64::Engine as _;
        let secret = format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(random()));
        bad.webhook_keys = WebhookKeys::parse(&[secret]).expect("a well-formed secret");
    }
    if good.signing_key.is_some() {
        bad.signing_key = Some(random());
    }
    let dispatcher = Dispatcher::new(bad)?;
    let method = HookMethod::ConnectionStatusEvent;
    let body = serde_json::to_vec(&schema::example(method, ctx))?;
    let started = Instant::now();
    let result = dispatcher.post(app, method, body.into()).await;
    let mut row = Row {
        method: format!("{} (wrong signature)", method.url_name()),
        kind: "signature",
        http: "200".into(),
        latency: Some(started.elapsed()),
        outcome: Outcome::Ok,
        detail: String::new(),
    };
    match result {
        Ok(_) => {
            row.outcome = Outcome::Violation;
            row.detail =
                "accepted a request whose signature does not verify: the backend does not check signatures".into();
        }
        Err(InteractionError::Status { code, .. }) if (400..500).contains(&code) => {
            row.http = code.to_string();
            row.detail = "refused, as a backend that verifies signatures should".into();
        }
        Err(e) => {
            let mut problems = Vec::new();
            judge_error(method, &e, &mut row, &mut problems);
            row.outcome = Outcome::Warn;
            row.detail = format!("could not tell: {}", problems.join("; "));
        }
    }
    Ok(row)
}
