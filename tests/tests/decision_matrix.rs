//! Every cell of kind x origin x restOnError x restPolicy x outcome, run through the real hook
//! engine against a real HTTP backend on 127.0.0.1, asserted against the seed's table.
//!
//! The expectations below are written from the seed (`shared/seeds/000_*.txt`), not derived from
//! `callgate_hooks::decide`:
//!
//! | restOnError | connect | direct | events | incoming |
//! |---|---|---|---|---|
//! | FAIL | abort, error to client | abort, error to client | continue, ErrorEvent | abort, 403 to initiator, error to client |
//! | LOG  | (abort: documented choice) | continue | continue | continue |
//!
//! plus: REST-API-initiated actions are never aborted; DISABLE (and a method not enabled) means
//! the backend is not called; OVERWRITE copies only `restOverwrite` fields, NOTIFY nothing;
//! connect's answer overrides every field but the context fields; `restExclude` never reaches
//! the backend.

use std::sync::Arc;
use std::time::Duration;

use callgate_hooks::*;
use callgate_tests::{closed_port, Backend, Reply};
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Ok200,
    Deny403Custom,
    Deny403Plain,
    Err500,
    Timeout,
    Refused,
    Garbage,
}

const OUTCOMES: [Outcome; 7] = [
    Outcome::Ok200,
    Outcome::Deny403Custom,
    Outcome::Deny403Plain,
    Outcome::Err500,
    Outcome::Timeout,
    Outcome::Refused,
    Outcome::Garbage,
];

fn method_of(kind: HookKind) -> HookMethod {
    match kind {
        HookKind::Connect => HookMethod::Connect,
        HookKind::DirectInvocation => HookMethod::Call,
        HookKind::Event => HookMethod::CallStatusEvent,
        HookKind::IncomingInvocation => HookMethod::OnCallEvent,
    }
}

/// What the client should see when an outcome is an interaction error.
fn expected_info(o: Outcome) -> &'static str {
    match o {
        Outcome::Ok200 => "",
        Outcome::Deny403Custom => "Bad token",
        Outcome::Deny403Plain => "Forbidden",
        Outcome::Err500 => "Internal Server Error",
        Outcome::Timeout => "Backend timeout",
        Outcome::Refused => "Backend unreachable",
        Outcome::Garbage => "Backend answer is not a JSON object",
    }
}

/// The seed's table, written out.
fn expected_verdict(kind: HookKind, origin: Origin, on_error: RestOnError, policy: RestPolicy, o: Outcome) -> Verdict {
    let policy_applies = kind != HookKind::Connect;
    if policy_applies && policy == RestPolicy::Disable {
        return Verdict::Proceed(DataEffect::Unchanged);
    }
    if o == Outcome::Ok200 {
        return Verdict::Proceed(match (kind, policy) {
            (HookKind::Connect, _) => DataEffect::MergeConnect,
            (_, RestPolicy::Overwrite) => DataEffect::OverwriteListed,
            _ => DataEffect::Unchanged,
        });
    }
    use RestOnError::*;
    match (kind, on_error) {
        (HookKind::Event, Fail) => Verdict::ProceedWithErrorEvent,
        (HookKind::Event, Log) => Verdict::LogAndProceed,
        (_, _) if origin == Origin::RestApi => Verdict::LogAndProceed,
        (HookKind::Connect, _) => Verdict::Reject,
        (HookKind::DirectInvocation, Fail) => Verdict::Reject,
        (HookKind::DirectInvocation, Log) => Verdict::LogAndProceed,
        (HookKind::IncomingInvocation, Fail) => Verdict::RejectInitiator,
        (HookKind::IncomingInvocation, Log) => Verdict::LogAndProceed,
    }
}

fn config_for(method: HookMethod, on_error: RestOnError, policy: RestPolicy) -> RestClientConfig {
    let on = match on_error {
        RestOnError::Fail => "FAIL",
        RestOnError::Log => "LOG",
    };
    let pol = match policy {
        RestPolicy::Notify => "NOTIFY",
        RestPolicy::Overwrite => "OVERWRITE",
        RestPolicy::Disable => "DISABLE",
    };
    let v = json!({ method.url_name(): {"restOnError": on, "restPolicy": pol, "restOverwrite": "callee", "restExclude": "secret"} });
    let (cfg, warnings) = RestClientConfig::parse(Some(&v));
    assert!(warnings.is_empty());
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cell_of_the_decision_table() {
    let backend = Backend::start().await;
    backend.answer(|_, body| {
        let prefix = body["case"].as_str().unwrap_or("");
        match prefix {
            "Ok200" => {
                // A backend that rewrites fields, including context fields it may not change.
                let mut b = body.as_object().unwrap().clone();
                b.insert("callee".into(), "Bob".into());
                b.insert("extra".into(), "added".into());
                b.insert("sessionId".into(), "forged".into());
                Reply::json(200, Value::Object(b))
            }
            "Deny403Custom" => Reply::json(403, json!({"status": 403, "reason": "Bad token"})),
            "Deny403Plain" => Reply::json(403, json!({"status": 403, "reason": "x", "more": 1})),
            "Err500" => Reply::json(500, json!({})),
            "Timeout" => Reply::mirror(body).after(Duration::from_secs(10)),
            "Garbage" => Reply::raw(200, b"<html>not json</html>"),
            other => panic!("unexpected case {other:?}"),
        }
    });
    // 504 hooks at once: a timeout well above their answer time on a loaded 2-core machine
    // (400 ms once timed out a 403 cell during a parallel build), well below the 10 s stall.
    let dispatcher =
        Dispatcher::new(DispatcherConfig { timeout: Some(Duration::from_secs(2)), retries: 1, ..Default::default() })
            .unwrap();
    let engine = HookEngine::new(dispatcher, false);
    let app_cfg = |url: String| AppConfig { url, ..Default::default() };
    let live = Arc::new(App::new("live", &app_cfg(backend.url("h")), false, 1024).unwrap());
    let dead = Arc::new(
        App::new("dead", &app_cfg(format!("http://127.0.0.1:{}/h", closed_port().await)), false, 1024).unwrap(),
    );

    let mut cells = Vec::new();
    for kind in HookKind::ALL {
        for origin in Origin::ALL {
            for on_error in RestOnError::ALL {
                for policy in RestPolicy::ALL {
                    for outcome in OUTCOMES {
                        cells.push((kind, origin, on_error, policy, outcome));
                    }
                }
            }
        }
    }
    assert_eq!(cells.len(), 4 * 3 * 2 * 3 * 7);

    let mut tasks = Vec::new();
    for (i, (kind, origin, on_error, policy, outcome)) in cells.iter().copied().enumerate() {
        let engine = engine.clone();
        let app = if outcome == Outcome::Refused { dead.clone() } else { live.clone() };
        tasks.push(tokio::spawn(async move {
            let method = method_of(kind);
            let cfg = config_for(method, on_error, policy);
            let mut data: Map<String, Value> = json!({
                "case": format!("{outcome:?}"), "cell": i, "callee": "Alice", "secret": "s3cret",
                "sessionId": "session-1", "nodeId": "node", "appKey": "live"
            })
            .as_object()
            .unwrap()
            .clone();
            let inv = engine.invoke(&app, &cfg, method, origin, &mut data, "session-1").await;
            (i, inv, data)
        }));
    }
    let mut failures = Vec::new();
    for t in tasks {
        let (i, inv, data) = t.await.unwrap();
        let (kind, origin, on_error, policy, outcome) = cells[i];
        let method = method_of(kind);
        let want = expected_verdict(kind, origin, on_error, policy, outcome);
        let cell = format!("{kind:?} {origin:?} {on_error:?} {policy:?} {outcome:?}");
        if inv.verdict != want {
            failures.push(format!("{cell}: verdict {:?}, want {want:?}", inv.verdict));
            continue;
        }
        let not_called = kind != HookKind::Connect && policy == RestPolicy::Disable;
        // The info the client would get.
        if !not_called && outcome != Outcome::Ok200 && inv.client_info() != expected_info(outcome) {
            failures.push(format!("{cell}: info {:?}, want {:?}", inv.client_info(), expected_info(outcome)));
        }
        // Data effect.
        let callee = data["callee"].as_str().unwrap();
        let want_callee = match want {
            Verdict::Proceed(DataEffect::OverwriteListed) | Verdict::Proceed(DataEffect::MergeConnect) => "Bob",
            _ => "Alice",
        };
        if callee != want_callee {
            failures.push(format!("{cell}: callee {callee:?}, want {want_callee:?}"));
        }
        if data["sessionId"] != "session-1" {
            failures.push(format!("{cell}: a context field was overwritten"));
        }
        let extra_expected = want == Verdict::Proceed(DataEffect::MergeConnect);
        if data.contains_key("extra") != extra_expected {
            failures.push(format!("{cell}: extra field present = {}", data.contains_key("extra")));
        }
        // What the backend received.
        if outcome != Outcome::Refused {
            let got: Vec<_> = backend.requests().into_iter().filter(|r| r.body["cell"] == i).collect();
            if not_called && !got.is_empty() {
                failures.push(format!("{cell}: backend was called under DISABLE"));
            }
            if !not_called {
                if got.len() != 1 {
                    failures.push(format!("{cell}: backend got {} requests, want 1", got.len()));
                } else {
                    let r = &got[0];
                    if r.method != method.url_name() {
                        failures.push(format!("{cell}: URL method {}", r.method));
                    }
                    // restExclude applies to every method but connect (whose config is not known yet).
                    let secret_sent = r.body.get("secret").is_some();
                    if secret_sent != (kind == HookKind::Connect) {
                        failures.push(format!("{cell}: secret sent = {secret_sent}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cells wrong:\n{}", failures.len(), cells.len(), failures.join("\n"));
}

#[test]
fn pure_decision_matches_the_table_for_every_result() {
    // The same table against the pure function, including NotCalled, without I/O.
    for kind in HookKind::ALL {
        for origin in Origin::ALL {
            for on_error in RestOnError::ALL {
                for policy in RestPolicy::ALL {
                    assert_eq!(
                        decide(kind, origin, on_error, policy, HookResult::NotCalled),
                        Verdict::Proceed(DataEffect::Unchanged)
                    );
                    let ok = expected_verdict(
                        kind,
                        origin,
                        on_error,
                        if kind == HookKind::Connect {
                            policy
                        } else if policy == RestPolicy::Disable {
                            RestPolicy::Notify
                        } else {
                            policy
                        },
                        Outcome::Ok200,
                    );
                    if !(kind != HookKind::Connect && policy == RestPolicy::Disable) {
                        assert_eq!(
                            decide(kind, origin, on_error, policy, HookResult::Answered),
                            ok,
                            "{kind:?} {origin:?} {on_error:?} {policy:?}"
                        );
                        let err = expected_verdict(kind, origin, on_error, policy, Outcome::Err500);
                        assert_eq!(
                            decide(kind, origin, on_error, policy, HookResult::InteractionError),
                            err,
                            "{kind:?} {origin:?} {on_error:?} {policy:?}"
                        );
                    }
                }
            }
        }
    }
}
