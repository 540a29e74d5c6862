//! Decision + data rules per hook for a ≈ 1 KiB `publishStream` body, in ns/op.
//!
//! Per hook, callgate does (see `HookEngine::invoke` and the server's `Outbox::send_object`):
//! 1. serialise the body for the backend without `restExclude` (`Excluding`, here `"sdp"`);
//! 2. `decide(kind, origin, restOnError, restPolicy, Answered)`, here `Proceed(OverwriteListed)`;
//! 3. `apply_answer(OverwriteListed, data, answer, restOverwrite)` with the backend's parsed
//!    answer (here `restOverwrite = "name,custom"`);
//! 4. serialise the client frame without `clientExclude` (`frame_text`, here `"nodeId"`).
//!
//! Baselines in the same run: `baseline_to_vec` is one plain `serde_json::to_vec` of the same map
//! (the unavoidable cost of putting the data on a wire once); `baseline_two_to_vec` is two of them
//! (a hook puts the data on two wires: the backend's and the client's).
//!
//! Target (from the issue): `per_hook` < 2 µs for a 1 KiB body.
//!
//! Run: `cargo bench -p callgate-benches --bench rules`

use std::hint::black_box;
use std::time::{Duration, Instant};

use callgate_benches::PUBLISH_STREAM_DATA;
use callgate_hooks::dispatch::parse_answer;
use callgate_hooks::rules::{apply_answer, Excluding};
use callgate_hooks::{decide, DataEffect, HookMethod, HookResult, MethodConfig, Origin, RestClientConfig, Verdict};
use callgate_server::party::frame_text;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use serde_json::{Map, Value};

const METHOD: HookMethod = HookMethod::PublishStream;
/// The client hears of a publishStream in a StreamStatusEvent.
const CLIENT_MESSAGE: &str = "StreamStatusEvent";

fn object(text: &str) -> Map<String, Value> {
    match serde_json::from_str::<Value>(text).expect("valid JSON") {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

/// Steps 1-4 of the module docs for one hook. The two wire texts are dropped inside (as the
/// baselines drop theirs inside the timed region); their lengths are returned.
#[inline(never)]
fn per_hook(data: &mut Map<String, Value>, mc: &MethodConfig, answer: Map<String, Value>) -> (usize, usize) {
    let (body, frame) = per_hook_texts(data, mc, answer);
    (black_box(body).len(), black_box(frame).len())
}

fn per_hook_texts(data: &mut Map<String, Value>, mc: &MethodConfig, answer: Map<String, Value>) -> (Vec<u8>, String) {
    let body = serde_json::to_vec(&Excluding { data, exclude: &mc.rest_exclude }).expect("serialises");
    let verdict = decide(METHOD.kind(), Origin::Client, mc.rest_on_error, mc.rest_policy, HookResult::Answered);
    if let Verdict::Proceed(effect) = verdict {
        apply_answer(effect, data, answer, &mc.rest_overwrite);
    }
    let frame = frame_text(CLIENT_MESSAGE, data, &mc.client_exclude);
    (body, frame)
}

fn bench_rules(c: &mut Criterion) {
    let mut data = object(PUBLISH_STREAM_DATA);
    let data_len = serde_json::to_vec(&data).expect("serialises").len();
    let (rcc, warnings) = RestClientConfig::parse(Some(&serde_json::json!({
        "publishStream": {
            "restExclude": "sdp",
            "clientExclude": "nodeId",
            "restOnError": "FAIL",
            "restPolicy": "OVERWRITE",
            "restOverwrite": "name,custom"
        }
    })));
    assert!(warnings.is_empty(), "{warnings:?}");
    let mc = rcc.method(METHOD).clone();
    assert_eq!(
        decide(METHOD.kind(), Origin::Client, mc.rest_on_error, mc.rest_policy, HookResult::Answered),
        Verdict::Proceed(DataEffect::OverwriteListed)
    );
    // The backend's answer: the body it got (a mirroring backend, as WCS recommends), with the
    // overwritten fields changed.
    let rest_body = serde_json::to_vec(&Excluding { data: &data, exclude: &mc.rest_exclude }).expect("serialises");
    let mut answer = parse_answer(&rest_body).expect("an object");
    answer.insert("name".into(), Value::from("room-42-alice-approved"));
    answer.insert("custom".into(), serde_json::json!({"tenant": "acme", "room": "42", "approved": true}));
    let answer_bytes = serde_json::to_vec(&answer).expect("serialises");
    // What the engine actually receives from the dispatcher under OVERWRITE: only the
    // `restOverwrite` fields are built from the answer (`AnswerUse::Fields`).
    let answer = callgate_hooks::dispatch::parse_answer_for(
        &answer_bytes,
        callgate_hooks::dispatch::AnswerUse::Fields(&mc.rest_overwrite),
    )
    .expect("an object");
    let (body, frame) = per_hook_texts(&mut data, &mc, answer.clone());
    println!(
        "rules: data {data_len} B, backend body {} B, answer {} B, client frame {} B",
        body.len(),
        answer_bytes.len(),
        frame.len()
    );
    assert_eq!(data["name"], "room-42-alice-approved");

    let mut g = c.benchmark_group("rules_1KiB_publishStream");
    g.sample_size(50);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(3));

    g.bench_function("baseline_to_vec", |b| b.iter(|| serde_json::to_vec(black_box(&data)).expect("serialises")));
    g.bench_function("baseline_two_to_vec", |b| {
        b.iter(|| {
            let a = serde_json::to_vec(black_box(&data)).expect("serialises");
            let b = serde_json::to_vec(black_box(&data)).expect("serialises");
            (a, b)
        })
    });
    g.bench_function("per_hook", |b| {
        b.iter_batched(
            || answer.clone(),
            |ans| per_hook(black_box(&mut data), black_box(&mc), ans),
            BatchSize::SmallInput,
        )
    });

    // The steps one by one.
    g.bench_function("step_decide", |b| {
        b.iter(|| {
            decide(
                black_box(METHOD.kind()),
                black_box(Origin::Client),
                black_box(mc.rest_on_error),
                black_box(mc.rest_policy),
                black_box(HookResult::Answered),
            )
        })
    });
    g.bench_function("step_rest_body_excluding", |b| {
        b.iter(|| {
            serde_json::to_vec(&Excluding { data: black_box(&data), exclude: &mc.rest_exclude }).expect("serialises")
        })
    });
    g.bench_function("step_apply_answer_overwrite", |b| {
        b.iter_batched(
            || answer.clone(),
            |ans| apply_answer(DataEffect::OverwriteListed, black_box(&mut data), ans, &mc.rest_overwrite),
            BatchSize::SmallInput,
        )
    });
    // Part of step_apply_answer: the answer is consumed, so what is not copied is dropped there.
    g.bench_function("step_drop_answer", |b| b.iter_batched(|| answer.clone(), drop, BatchSize::SmallInput));
    g.bench_function("step_client_frame", |b| {
        b.iter(|| frame_text(CLIENT_MESSAGE, black_box(&data), &mc.client_exclude))
    });

    // Outside the decision+rules scope, for context: the dispatcher parses every answer.
    g.bench_function("extra_parse_answer", |b| b.iter(|| parse_answer(black_box(&answer_bytes)).expect("an object")));
    // For context: a clone of the whole map (the dispatcher bench's engine arm clones a smaller one per request).
    g.bench_function("extra_clone_data", |b| b.iter(|| black_box(&data).clone()));
    g.finish();

    paired_view(&mut data, &mc, &answer);
}

/// Baselines and `per_hook` once more, interleaved in rounds so that a load change on the
/// machine hits all of them alike; medians of ns/op over the rounds, and the ratios.
fn paired_view(data: &mut Map<String, Value>, mc: &MethodConfig, answer: &Map<String, Value>) {
    const ROUNDS: usize = 15;
    const BATCH: usize = 1000;
    const BATCHES: usize = 20;
    let ops = (BATCH * BATCHES) as f64;
    let (mut one, mut two, mut hook) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..BATCH * BATCHES {
            black_box(serde_json::to_vec(black_box(&*data)).expect("serialises"));
        }
        one.push(t.elapsed().as_nanos() as f64 / ops);
        let t = Instant::now();
        for _ in 0..BATCH * BATCHES {
            black_box(serde_json::to_vec(black_box(&*data)).expect("serialises"));
            black_box(serde_json::to_vec(black_box(&*data)).expect("serialises"));
        }
        two.push(t.elapsed().as_nanos() as f64 / ops);
        let mut spent = Duration::ZERO;
        for _ in 0..BATCHES {
            let answers: Vec<Map<String, Value>> = (0..BATCH).map(|_| answer.clone()).collect();
            let t = Instant::now();
            for a in answers {
                black_box(per_hook(black_box(&mut *data), black_box(mc), a));
            }
            spent += t.elapsed();
        }
        hook.push(spent.as_nanos() as f64 / ops);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        v[v.len() / 2]
    };
    let (one, two, hook) = (median(one), median(two), median(hook));
    println!();
    println!("rules paired view: {ROUNDS} interleaved rounds of {} ops each, medians", BATCH * BATCHES);
    println!("{:<22} {:>10} {:>22}", "arm", "ns/op", "per_hook / arm");
    println!("{:<22} {:>10.0} {:>21.2}x", "baseline_to_vec", one, hook / one);
    println!("{:<22} {:>10.0} {:>21.2}x", "baseline_two_to_vec", two, hook / two);
    println!("{:<22} {:>10.0} {:>22}", "per_hook", hook, "");
    println!("(target: per_hook < 2000 ns for a 1 KiB body)");
}

criterion_group!(benches, bench_rules);
criterion_main!(benches);
