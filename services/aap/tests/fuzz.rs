//! Fuzzing the platform's front doors over real HTTP and gRPC: generated requests (valid ones,
//! valid ones with one field broken, and junk) against a real platform with its own PostgreSQL
//! and NATS. Whatever arrives: never a 5xx or INTERNAL/UNKNOWN, every refusal names its field,
//! and the platform still serves a normal request afterwards.
//!
//! Cases come from a seeded generator (proptest strategies drawn by hand, since the requests are
//! async): `PROPTEST_CASES` sets how many (256 by default), `AAP_FUZZ_SEED` replays a run; a
//! failure prints the seed and the case.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aap_proto::v1::{AskResponse, DeleteRefreshScheduleResponse};
use common::*;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic_types::StatusExt;

/// The run's seed: `AAP_FUZZ_SEED` or the clock.
fn seed() -> u64 {
    std::env::var("AAP_FUZZ_SEED").ok().and_then(|s| s.trim().parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
    })
}

/// A deterministic runner for `seed`, with the case count of `PROPTEST_CASES`.
fn runner(seed: u64) -> TestRunner {
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_le_bytes());
    }
    TestRunner::new_with_rng(Config::default(), TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// Fails the test with one example of each kind of failure of the run (the problem with its
/// numbers and quotes left out) and the seed that replays it; the run goes on after a failure
/// so that one run shows every kind.
fn report(seed: u64, failures: &[String]) {
    if failures.is_empty() {
        return;
    }
    let mut kinds: Vec<(String, &str, usize)> = Vec::new();
    for failure in failures {
        let problem = failure.lines().next().unwrap_or_default().split_once(": ").map_or("", |(_, p)| p);
        let kind: String =
            problem.split(['"', '`']).step_by(2).collect::<String>().replace(|c: char| c.is_ascii_digit(), "");
        let kind: String = kind.chars().take(70).collect();
        match kinds.iter_mut().find(|(k, ..)| *k == kind) {
            Some((_, _, count)) => *count += 1,
            None => kinds.push((kind, failure, 1)),
        }
    }
    let shown: Vec<String> = kinds.iter().map(|(_, example, count)| format!("[{count}x] {example}")).collect();
    panic!(
        "{} failures of {} kinds with seed {seed} (replay: AAP_FUZZ_SEED={seed}); one of each:\n{}",
        failures.len(),
        kinds.len(),
        shown.join("\n")
    );
}

fn draw<S: Strategy>(strategy: &S, runner: &mut TestRunner) -> S::Value {
    strategy.new_tree(runner).expect("strategy draws a value").current()
}

/// Strings that break things: NUL, control characters, lone surrogates cannot be sent (Rust
/// strings are UTF-8), long ones, white space only, anything.
fn junk_string() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[a-zA-Z0-9 ._+-]{0,12}",
        1 => Just(String::new()),
        1 => "[ \t\n\u{a0}]{1,4}",
        1 => "[a-z]{0,4}\u{0}[a-z]{0,4}",
        1 => "[\u{0}-\u{1f}\u{7f}-\u{9f}]{1,4}",
        1 => (1usize..300_000).prop_map(|n| "é".repeat(n / 2)),
    ]
}

// ---------------------------------------------------------------------------------------------
// The seed's HTTP API

/// How the one field of a request body is used: its JSON pointer, the name a refusal must give
/// (the seed's spelling, indices left out), whether it is required, and what JSON it takes.
#[derive(Debug, Clone, Copy)]
struct Field {
    pointer: &'static str,
    name: &'static str,
    required: bool,
    takes: Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Null,
    Bool,
    Int,
    Number,
    String,
    Array,
    Object,
    /// Not JSON at all (a lone surrogate, a number past f64, nesting past serde's limit).
    Invalid,
}

fn kind_of(raw: &str) -> Kind {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Null) => Kind::Null,
        Ok(Value::Bool(_)) => Kind::Bool,
        Ok(Value::Number(n)) if n.is_i64() => Kind::Int,
        Ok(Value::Number(_)) => Kind::Number,
        Ok(Value::String(_)) => Kind::String,
        Ok(Value::Array(_)) => Kind::Array,
        Ok(Value::Object(_)) => Kind::Object,
        Err(_) => Kind::Invalid,
    }
}

const POLL_FIELDS: &[Field] = &[
    Field { pointer: "/assistant_name", name: "assistant_name", required: true, takes: Kind::String },
    Field { pointer: "/plan_name", name: "plan_name", required: true, takes: Kind::String },
];

const SUBMIT_FIELDS: &[Field] = &[
    Field { pointer: "/evaluation_id", name: "evaluation_id", required: true, takes: Kind::Int },
    Field { pointer: "/answer", name: "answer", required: true, takes: Kind::Object },
    Field { pointer: "/answer/response", name: "answer.response", required: true, takes: Kind::String },
    Field { pointer: "/answer/citations", name: "answer.citations", required: true, takes: Kind::Array },
    Field { pointer: "/answer/citations/0", name: "answer.citations", required: true, takes: Kind::Object },
    Field { pointer: "/answer/citations/0/url", name: "answer.citations.url", required: true, takes: Kind::String },
    Field { pointer: "/answer/citations/0/text", name: "answer.citations.text", required: false, takes: Kind::String },
    Field { pointer: "/answer/timestamp", name: "answer.timestamp", required: true, takes: Kind::String },
];

const RELEASE_FIELDS: &[Field] = &[
    Field { pointer: "/evaluation_id", name: "evaluation_id", required: true, takes: Kind::Int },
    Field { pointer: "/mark_as_failed", name: "mark_as_failed", required: true, takes: Kind::Bool },
    Field { pointer: "/failure_reason", name: "failure_reason", required: false, takes: Kind::String },
];

/// JSON text to put in a field's place: every type, edge numbers, strings with NUL and escapes,
/// text that is no JSON, deep nesting, and anything generated.
fn raw_value() -> impl Strategy<Value = String> {
    let fixed = proptest::sample::select(vec![
        "null",
        "true",
        "false",
        "0",
        "-1",
        "1.5",
        "-0.0",
        "9223372036854775807",
        "-9223372036854775808",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "1e308",
        "1e400",
        "\"\"",
        "\"   \"",
        "\"\\u0000\"",
        "\"a\\u0000b\"",
        "\"\\ud800\"",
        "\"\\u001b[31mred\"",
        "\"2025-12-09T10:35:00Z\"",
        "[]",
        "{}",
        "[1,[2,[3]]]",
        "{\"a\":{\"b\":[null,{}]}}",
        "[{\"url\": 7}]",
    ])
    .prop_map(str::to_owned);
    prop_oneof![
        4 => fixed,
        2 => junk_string().prop_map(|s| Value::String(s).to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<f64>().prop_map(|n| serde_json::Number::from_f64(n).map_or("null".to_owned(), |n| n.to_string())),
        1 => (100usize..300).prop_map(|depth| format!("{}{}", "[".repeat(depth), "]".repeat(depth))),
    ]
}

/// A timestamp as the seed's bots write it: RFC 3339 with an offset, or Python's `isoformat()`
/// without one (read as UTC), with or without fractions.
fn valid_timestamp() -> impl Strategy<Value = String> {
    let date = (1i32..10_000, 1u32..13, 1u32..29, 0u32..24, 0u32..60, 0u32..60);
    prop_oneof![
        3 => (date.clone(), prop_oneof![Just("Z"), Just("+00:00"), Just("-05:30"), Just("+14:00"), Just("")])
            .prop_map(|((y, mo, d, h, mi, s), offset)| format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{offset}")),
        1 => date.clone().prop_map(|(y, mo, d, h, mi, s)| format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.123456")),
        1 => date.prop_map(|(y, mo, d, h, mi, s)| format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.123456789")),
    ]
}

/// A timestamp right or wrong: out of range, impossible dates, no time, no date.
fn timestamp() -> impl Strategy<Value = String> {
    prop_oneof![
        1 => valid_timestamp(),
        1 => proptest::sample::select(vec![
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "+10000-01-01T00:00:00",
            "-4714-01-01T00:00:00",
            "-262143-01-01T00:00:00",
            "+262143-12-31T23:59:59",
            "2025-02-30T00:00:00Z",
            "2025-12-09T24:00:00Z",
            "2025-12-09T10:35:60Z",
            "2025-12-09",
            "yesterday",
            "",
        ])
        .prop_map(str::to_owned),
    ]
}

fn seed_name() -> impl Strategy<Value = String> {
    let names = vec!["ChatGPT", "chatgpt", " Claude ", "PERPLEXITY", "Google AI Overview", "google-ai-overview"];
    proptest::sample::select(names).prop_map(str::to_owned)
}

fn valid_poll() -> impl Strategy<Value = Value> {
    (seed_name(), "[a-zA-Z0-9 ._+-]{0,12}")
        .prop_map(|(assistant, plan)| json!({ "assistant_name": assistant, "plan_name": plan }))
}

fn valid_submit() -> impl Strategy<Value = Value> {
    let citation = ("https://[a-z]{1,8}\\.example/[a-z0-9?=&_]{0,12}", prop::option::of("[^\u{0}]{0,12}"))
        .prop_map(|(url, text)| json!({ "url": url, "text": text }));
    (any::<i64>(), "[A-Za-z][^\u{0}]{0,40}", prop::collection::vec(citation, 1..3), valid_timestamp()).prop_map(
        |(id, response, citations, timestamp)| {
            json!({ "evaluation_id": id, "answer": { "response": response, "citations": citations, "timestamp": timestamp } })
        },
    )
}

fn valid_release() -> impl Strategy<Value = Value> {
    (any::<i64>(), any::<bool>(), prop::option::of("[^\u{0}]{0,40}"))
        .prop_map(|(id, fail, reason)| json!({ "evaluation_id": id, "mark_as_failed": fail, "failure_reason": reason }))
}

/// What is done to a valid body.
#[derive(Debug, Clone)]
enum Mutation {
    None,
    /// The field is left out.
    Remove(usize),
    /// The field's value is replaced by this JSON text.
    Replace(usize, String),
    /// An unknown field is added (ignored by the API) with this JSON text.
    Extra(String, String),
}

#[derive(Debug, Clone)]
enum Body {
    /// A valid body of the endpoint, changed by the mutation.
    Json(Value, Mutation),
    /// Anything at all.
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
struct HttpCase {
    endpoint: usize,
    content_type: Option<&'static str>,
    body: Body,
}

const ENDPOINTS: [(&str, &[Field]); 3] =
    [("poll", POLL_FIELDS), ("submit", SUBMIT_FIELDS), ("release", RELEASE_FIELDS)];

fn http_case() -> impl Strategy<Value = HttpCase> {
    let mutation = prop_oneof![
        2 => Just(Mutation::None),
        2 => (0usize..8).prop_map(Mutation::Remove),
        6 => (0usize..8, raw_value()).prop_map(|(i, raw)| Mutation::Replace(i, raw)),
        2 => (0usize..8, timestamp()).prop_map(|(i, t)| Mutation::Replace(i, Value::String(t).to_string())),
        1 => ("x_[a-z_]{0,8}", raw_value()).prop_map(|(name, raw)| Mutation::Extra(name, raw)),
    ];
    let json_body = (0usize..3, mutation).prop_flat_map(|(endpoint, mutation)| {
        let valid = match endpoint {
            0 => valid_poll().boxed(),
            1 => valid_submit().boxed(),
            _ => valid_release().boxed(),
        };
        (Just(endpoint), valid, Just(mutation))
            .prop_map(|(endpoint, valid, mutation)| (endpoint, Body::Json(valid, mutation)))
    });
    let bytes_body = (
        0usize..3,
        prop_oneof![
            2 => prop::collection::vec(any::<u8>(), 0..200),
            2 => "[{}\\[\\]\":,a-z0-9 \\\\]{0,60}".prop_map(String::into_bytes),
            1 => (0usize..3).prop_map(|n| vec![b'{'; n * 100_000]),
            1 => Just(format!("{{\"x\": \"{}\"}}", "a".repeat(2_200_000)).into_bytes()),
        ],
    )
        .prop_map(|(endpoint, bytes)| (endpoint, Body::Bytes(bytes)));
    let content_type = proptest::sample::select(vec![
        Some("application/json"),
        Some("application/json"),
        None,
        Some("application/json; charset=utf-8"),
        Some("APPLICATION/JSON"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ]);
    (prop_oneof![6 => json_body, 1 => bytes_body], content_type).prop_map(|((endpoint, body), content_type)| HttpCase {
        endpoint,
        content_type,
        body,
    })
}

const RAW_MARK: &str = "\u{1}raw\u{1}";

/// The body's bytes, and the field it broke on purpose (as a refusal must name it) with
/// whether a 422 must follow.
fn render(case: &HttpCase) -> (Vec<u8>, Option<(String, bool)>) {
    let (mut value, mutation) = match &case.body {
        Body::Bytes(bytes) => return (bytes.clone(), None),
        Body::Json(value, mutation) => (value.clone(), mutation),
    };
    let fields = ENDPOINTS[case.endpoint].1;
    let mut raw = None;
    let broken = match mutation {
        Mutation::None => None,
        Mutation::Remove(i) => {
            let field = fields[i % fields.len()];
            let (parent, key) = field.pointer.rsplit_once('/').expect("pointer");
            match value.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(key);
                }
                Some(Value::Array(items)) => {
                    items.remove(key.parse::<usize>().expect("index"));
                }
                _ => {}
            }
            // A missing array element is no error; a missing required field is.
            let must = field.required && !key.chars().all(|c| c.is_ascii_digit());
            Some((field.name.to_owned(), must))
        }
        Mutation::Replace(i, text) => {
            let field = fields[i % fields.len()];
            if let Some(slot) = value.pointer_mut(field.pointer) {
                *slot = Value::String(RAW_MARK.to_owned());
                raw = Some(text.clone());
            }
            let kind = kind_of(text);
            let fits = kind == field.takes || (kind == Kind::Null && !field.required);
            raw.as_ref().map(|_| (field.name.to_owned(), !fits))
        }
        Mutation::Extra(name, text) => {
            if let Value::Object(map) = &mut value {
                map.insert(name.clone(), Value::String(RAW_MARK.to_owned()));
                raw = Some(text.clone());
            }
            // Ignored, unless it is no JSON (or nested past the parser's limit).
            Some((name.clone(), false))
        }
    };
    let mut text = value.to_string();
    if let Some(raw) = raw {
        text = text.replacen(&Value::String(RAW_MARK.to_owned()).to_string(), &raw, 1);
    }
    (text.into_bytes(), broken)
}

/// Whether a refusal's detail names `field` ("answer.citations.url"): the whole path (indices
/// such as `[0]` ignored), or, for a missing field, its parent and then the field in backticks.
fn names(detail: &str, field: &str) -> bool {
    let mut plain = String::with_capacity(detail.len());
    let mut in_index = false;
    for c in detail.chars() {
        match c {
            '[' => in_index = true,
            ']' if in_index => in_index = false,
            c if in_index && c.is_ascii_digit() => {}
            c => {
                if in_index {
                    plain.push('[');
                    in_index = false;
                }
                plain.push(c);
            }
        }
    }
    let (parent, leaf) = field.rsplit_once('.').map_or(("", field), |(p, l)| (p, l));
    plain.contains(field) || (plain.contains(&format!("`{leaf}`")) && plain.contains(parent))
}

async fn send(client: &reqwest::Client, app: &TestApp, case: &HttpCase, body: Vec<u8>) -> (u16, String) {
    let path = ENDPOINTS[case.endpoint].0;
    let mut request = client
        .post(format!("{}/evaluations/api/v1/{path}", app.http_url))
        .header("authorization", format!("Bearer {BOT}"))
        .body(body);
    if let Some(content_type) = case.content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.expect("the platform answers");
    let status = response.status().as_u16();
    (status, response.text().await.expect("a body"))
}

/// Checks one reply; the error says what is wrong.
fn check_reply(case: &HttpCase, broken: Option<(String, bool)>, status: u16, reply: &str) -> Result<(), String> {
    if status >= 500 {
        return Err(format!("{status}: {reply}"));
    }
    if status >= 400 {
        let detail = serde_json::from_str::<Value>(reply)
            .ok()
            .and_then(|json| json.get("detail").and_then(Value::as_str).map(str::to_owned))
            .filter(|detail| !detail.is_empty())
            .ok_or_else(|| format!("{status} without a JSON detail: {reply:?}"))?;
        if status == 422
            && let Some((field, _)) = &broken
            && !names(&detail, field)
        {
            return Err(format!("422 does not name {field}: {detail}"));
        }
    }
    let json_body = matches!(case.body, Body::Json(..))
        && !matches!(case.content_type, Some("text/plain" | "application/x-www-form-urlencoded"));
    if json_body {
        match &broken {
            None if status == 422 => return Err(format!("a valid body was refused: {reply}")),
            Some((field, true)) if status != 422 => return Err(format!("{field} broken, yet {status}: {reply}")),
            _ => {}
        }
        if ENDPOINTS[case.endpoint].0 == "poll" && broken.is_none() && status != 200 {
            return Err(format!("a valid poll got {status}: {reply}"));
        }
    }
    Ok(())
}

#[tokio::test]
async fn the_seed_http_api_answers_any_body_without_a_5xx_and_names_the_field_it_refuses() {
    let app = spawn_app().await;
    // Work to find: a queued task per assistant, so polls claim and submits meet real rows.
    for assistant in ["chatgpt", "claude"] {
        let _ = app.answers().ask(ask_text(&format!("Fuzz prompt for {assistant}"), &[assistant])).await.expect("ask");
    }
    let seed = seed();
    let mut runner = runner(seed);
    let cases = runner.config().cases;
    let strategy = http_case();
    let client = reqwest::Client::new();
    let mut statuses: HashMap<u16, u32> = HashMap::new();
    let mut failures = Vec::new();
    for n in 0..cases {
        let case = draw(&strategy, &mut runner);
        let (body, broken) = render(&case);
        let shown_broken = broken.clone();
        let shown = String::from_utf8_lossy(&body).chars().take(600).collect::<String>();
        let (status, reply) = send(&client, &app, &case, body).await;
        *statuses.entry(status).or_default() += 1;
        if let Err(problem) = check_reply(&case, broken, status, &reply) {
            failures.push(format!(
                "case {n}: {problem}\n  POST {} ({:?})\n  body: {shown}\n  broken: {shown_broken:?}",
                ENDPOINTS[case.endpoint].0, case.content_type,
            ));
        }
    }
    eprintln!("seed {seed}: {cases} bodies, statuses {statuses:?}");
    report(seed, &failures);
    // Still serving: a normal poll answers.
    let (status, reply) = send(
        &client,
        &app,
        &HttpCase { endpoint: 0, content_type: Some("application/json"), body: Body::Bytes(Vec::new()) },
        br#"{"assistant_name": "Perplexity", "plan_name": "Pro"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
}

// ---------------------------------------------------------------------------------------------
// gRPC

/// A value picked from what the run has seen (ids of real evaluations, prompts, accounts,
/// leases) or made up.
#[derive(Debug, Clone)]
enum Pick<T> {
    Known(usize),
    Made(T),
}

/// What the run has seen, for requests that name real things.
#[derive(Debug, Default)]
struct Seen {
    evaluations: Vec<i64>,
    prompts: Vec<i64>,
    accounts: Vec<String>,
    leases: Vec<String>,
}

fn pick_id(pick: &Pick<i64>, known: &[i64]) -> i64 {
    match pick {
        Pick::Known(i) if !known.is_empty() => known[i % known.len()],
        Pick::Known(i) => *i as i64,
        Pick::Made(id) => *id,
    }
}

fn pick_text(pick: &Pick<String>, known: &[String]) -> String {
    match pick {
        Pick::Known(i) if !known.is_empty() => known[i % known.len()].clone(),
        Pick::Known(_) => String::new(),
        Pick::Made(text) => text.clone(),
    }
}

fn id_pick() -> impl Strategy<Value = Pick<i64>> {
    prop_oneof![
        3 => any::<usize>().prop_map(Pick::Known),
        1 => any::<i64>().prop_map(Pick::Made),
        1 => (-5i64..5).prop_map(Pick::Made),
    ]
}

fn text_pick() -> impl Strategy<Value = Pick<String>> {
    prop_oneof![
        3 => any::<usize>().prop_map(Pick::Known),
        1 => junk_string().prop_map(Pick::Made),
        // A well-formed id nothing has.
        1 => Just(Pick::Made("00000000-0000-4000-8000-000000000000".to_owned())),
    ]
}

fn assistant() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(vec!["chatgpt", "claude", "perplexity", "google-ai-overview"]).prop_map(str::to_owned),
        1 => junk_string(),
    ]
}

fn plan() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-zA-Z0-9 ._+-]{0,10}", 2 => junk_string()]
}

fn target() -> impl Strategy<Value = aap_proto::v1::Target> {
    (assistant(), plan()).prop_map(|(assistant, plan)| aap_proto::v1::Target { assistant, plan })
}

fn proto_time() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    prop::option::of(prop_oneof![
        (0i64..4_000_000_000, 0i32..1_000_000_000)
            .prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
        (any::<i64>(), any::<i32>()).prop_map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
    ])
}

fn duration() -> impl Strategy<Value = Option<prost_types::Duration>> {
    prop::option::of((any::<i64>(), any::<i32>()).prop_map(|(seconds, nanos)| prost_types::Duration { seconds, nanos }))
}

fn citation_message() -> impl Strategy<Value = aap_proto::v1::Citation> {
    (junk_string(), junk_string(), -1i32..5, -1i32..5).prop_map(|(url, title, kind, found_in)| {
        aap_proto::v1::Citation { url, title, domain: String::new(), position: 0, kind, found_in }
    })
}

fn capture_message() -> impl Strategy<Value = Option<aap_proto::v1::Capture>> {
    prop::option::of(
        (
            (junk_string(), junk_string(), any::<Option<bool>>()),
            (duration(), duration()),
            (junk_string(), junk_string()),
            (prop::collection::vec(junk_string(), 0..3), prop::collection::vec("[a-z.-]{1,8}", 0..3)),
            (any::<bool>(), prop_oneof![any::<f32>(), 0.0f32..=1.0], any::<bool>(), any::<bool>()),
        )
            .prop_map(
                |(
                    (response_html, model, web_search),
                    (time_to_first_token, time_to_complete),
                    (adapter_version, adapter_fingerprint),
                    (finish_signals, missing_roles),
                    (read_by_fallback, confidence, cut_short, model_fallback),
                )| aap_proto::v1::Capture {
                    response_html,
                    model,
                    web_search,
                    time_to_first_token,
                    time_to_complete,
                    adapter_version,
                    adapter_fingerprint,
                    finish_signals,
                    missing_roles,
                    read_by_fallback,
                    confidence,
                    cut_short,
                    model_fallback,
                },
            ),
    )
}

/// One gRPC call with generated fields.
#[derive(Debug, Clone)]
enum Call {
    Ask {
        prompt: Option<Result<String, Pick<i64>>>,
        targets: Vec<aap_proto::v1::Target>,
        policy: i32,
        min_similarity: Option<f64>,
    },
    Watch {
        prompt: Pick<i64>,
        targets: Vec<aap_proto::v1::Target>,
    },
    Poll {
        bot_id: String,
        serves: Option<aap_proto::v1::Target>,
    },
    Claim {
        bot_id: String,
        serves: Vec<aap_proto::v1::Target>,
        max_tasks: u32,
    },
    Heartbeat {
        evaluation: Pick<i64>,
    },
    Submit(Pick<i64>, Box<aap_proto::v1::SubmitRequest>),
    Release {
        evaluation: Pick<i64>,
        fail: bool,
        reason: String,
    },
    CreateAccount(aap_proto::v1::CreateAccountRequest),
    ListAccounts {
        assistant: String,
    },
    UpdateSessionState {
        account: Pick<String>,
        json: String,
    },
    UpdateAccount {
        account: Pick<String>,
        proxy: Option<String>,
        user_agent: Option<String>,
        label: Option<String>,
        end_cooldown: bool,
    },
    Lease {
        assistant: String,
        plan: String,
        bot_id: String,
    },
    Return {
        lease: Pick<String>,
        outcome: i32,
        runs: u32,
        detail: String,
        /// Seconds from now and nanos of `limit_lifts_at`.
        lifts_in: Option<(i64, i32)>,
    },
}

/// A return's `limit_lifts_at` as seconds from now and nanos: near, hours and days ahead, past,
/// past the 8 days taken, and no time a calendar has.
fn lifts_in() -> impl Strategy<Value = (i64, i32)> {
    let nanos = prop_oneof![4 => Just(0), 1 => any::<i32>()];
    let seconds = prop_oneof![
        3 => -120i64..86_400 * 9,
        1 => Just(i64::MAX / 2),
        1 => Just(i64::MIN / 2),
    ];
    (seconds, nanos)
}

fn storage_state() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just(r#"{"cookies": [], "origins": []}"#.to_owned()), 1 => junk_string()]
}

fn call() -> impl Strategy<Value = Call> {
    let ask = (
        prop::option::of(prop_oneof![
            2 => junk_string().prop_map(Ok),
            1 => "[A-Z][a-z]{2,8}( [a-z]{2,8}){1,5}\\?".prop_map(Ok),
            1 => id_pick().prop_map(Err),
        ]),
        prop::collection::vec(target(), 0..3),
        -1i32..5,
        prop::option::of(prop_oneof![any::<f64>(), 0.0f64..=1.0]),
    )
        .prop_map(|(prompt, targets, policy, min_similarity)| Call::Ask {
            prompt,
            targets,
            policy,
            min_similarity,
        });
    let submit = (
        id_pick(),
        (junk_string(), junk_string()),
        prop::collection::vec(citation_message(), 0..3),
        proto_time(),
        (junk_string(), junk_string()),
        -1i32..4,
        capture_message(),
        (
            prop::collection::vec(junk_string(), 0..3),
            prop::collection::vec((junk_string(), junk_string(), any::<u32>()), 0..2),
        ),
    )
        .prop_map(
            |(
                id,
                (response_text, response_markdown),
                citations,
                captured_at,
                (bot_id, lease_id),
                kind,
                capture,
                (search_queries, products),
            )| {
                Call::Submit(
                    id,
                    Box::new(aap_proto::v1::SubmitRequest {
                        evaluation_id: 0,
                        response_text,
                        response_markdown,
                        citations,
                        captured_at,
                        bot_id,
                        lease_id,
                        kind,
                        capture,
                        search_queries,
                        products: products
                            .into_iter()
                            .map(|(name, url, position)| aap_proto::v1::Product {
                                name,
                                url,
                                price: String::new(),
                                merchant: String::new(),
                                position,
                            })
                            .collect(),
                    }),
                )
            },
        );
    // A plausible answer (so that calls get past validation to real and unknown evaluations),
    // with a capture time and kind that may be out of range.
    let plausible_submit = (
        id_pick(),
        "[A-Z][a-z ]{1,30}",
        prop::collection::vec("https://[a-z]{1,8}\\.example/[a-z0-9?=&_]{0,12}", 0..3),
        proto_time(),
        -1i32..3,
    )
        .prop_map(|(id, response_text, urls, captured_at, kind)| {
            let citations = urls.iter().map(|url| citation(url, "A source")).collect();
            let request = aap_proto::v1::SubmitRequest {
                response_text,
                citations,
                captured_at,
                kind,
                bot_id: "fuzz-bot".into(),
                ..Default::default()
            };
            Call::Submit(id, Box::new(request))
        });
    let create = (
        assistant(),
        plan(),
        junk_string(),
        storage_state(),
        prop_oneof![2 => Just(String::new()), 1 => junk_string(), 1 => Just("http://10.0.0.1:3128".to_owned())],
        prop_oneof![2 => Just(String::new()), 1 => junk_string()],
    )
        .prop_map(|(assistant, plan, label, storage_state_json, proxy, user_agent)| {
            Call::CreateAccount(aap_proto::v1::CreateAccountRequest {
                assistant,
                plan,
                label,
                storage_state_json,
                proxy,
                user_agent,
            })
        });
    prop_oneof![
        2 => ask,
        1 => (id_pick(), prop::collection::vec(target(), 0..3)).prop_map(|(prompt, targets)| Call::Watch { prompt, targets }),
        3 => (junk_string(), prop::option::of(target())).prop_map(|(bot_id, serves)| Call::Poll { bot_id, serves }),
        1 => (junk_string(), prop::collection::vec(target(), 0..3), any::<u32>()).prop_map(|(bot_id, serves, max_tasks)| Call::Claim { bot_id, serves, max_tasks }),
        1 => id_pick().prop_map(|evaluation| Call::Heartbeat { evaluation }),
        2 => submit,
        2 => plausible_submit,
        2 => (id_pick(), any::<bool>(), junk_string()).prop_map(|(evaluation, fail, reason)| Call::Release { evaluation, fail, reason }),
        2 => create,
        1 => junk_string().prop_map(|assistant| Call::ListAccounts { assistant }),
        1 => (text_pick(), storage_state()).prop_map(|(account, json)| Call::UpdateSessionState { account, json }),
        1 => ((text_pick(), prop::option::of(junk_string()), prop::option::of(junk_string()), prop::option::of(junk_string())), any::<bool>())
            .prop_map(|((account, proxy, user_agent, label), end_cooldown)| Call::UpdateAccount { account, proxy, user_agent, label, end_cooldown }),
        3 => (assistant(), plan(), junk_string()).prop_map(|(assistant, plan, bot_id)| Call::Lease { assistant, plan, bot_id }),
        2 => (text_pick(), -1i32..6, any::<u32>(), junk_string(), prop::option::of(lifts_in()))
            .prop_map(|(lease, outcome, runs, detail, lifts_in)| Call::Return { lease, outcome, runs, detail, lifts_in }),
    ]
}

/// Runs one call; `Ok(())` when it was taken, the status when it was refused.
async fn run(app: &TestApp, call: &Call, seen: &Arc<Mutex<Seen>>) -> Result<(), tonic::Status> {
    use aap_proto::v1::*;
    let snapshot = |f: &dyn Fn(&Seen) -> Vec<i64>| f(&seen.lock().expect("seen"));
    let texts = |f: &dyn Fn(&Seen) -> Vec<String>| f(&seen.lock().expect("seen"));
    match call.clone() {
        Call::Ask { prompt, targets, policy, min_similarity } => {
            let query = prompt.map(|prompt| match prompt {
                Ok(text) => ask_request::Query::Prompt(text),
                Err(id) => ask_request::Query::PromptId(pick_id(&id, &snapshot(&|s| s.prompts.clone()))),
            });
            let stream = app
                .answers()
                .ask(AskRequest {
                    query,
                    targets,
                    policy,
                    min_similarity,
                    include_html: policy % 2 == 0,
                    include_related: policy % 3 == 0,
                    max_age: None,
                })
                .await?
                .into_inner();
            drop(stream);
        }
        Call::Watch { prompt, targets } => {
            let prompt_id = pick_id(&prompt, &snapshot(&|s| s.prompts.clone()));
            let include_html = prompt_id % 2 == 0;
            drop(app.answers().watch(WatchRequest { prompt_id, targets, include_html }).await?);
        }
        Call::Poll { bot_id, serves } => {
            let reply = app.evaluations().poll(PollRequest { bot_id, serves }).await?.into_inner();
            if let Some(task) = reply.task {
                seen.lock().expect("seen").evaluations.push(task.evaluation_id);
            }
        }
        Call::Claim { bot_id, serves, max_tasks } => {
            let hello = ClaimRequest { msg: Some(claim_request::Msg::Hello(ClaimHello { bot_id, serves, max_tasks })) };
            let mut replies = app.evaluations().claim(tokio_stream::iter(vec![hello])).await?.into_inner();
            // The welcome (or the refusal) comes first; the stream ends with the requests.
            replies.message().await?;
        }
        Call::Heartbeat { evaluation } => {
            let evaluation_id = pick_id(&evaluation, &snapshot(&|s| s.evaluations.clone()));
            app.evaluations().heartbeat(HeartbeatRequest { evaluation_id, bot_id: String::new() }).await?;
        }
        Call::Submit(evaluation, mut request) => {
            request.evaluation_id = pick_id(&evaluation, &snapshot(&|s| s.evaluations.clone()));
            app.evaluations().submit(*request).await?;
        }
        Call::Release { evaluation, fail, reason } => {
            let evaluation_id = pick_id(&evaluation, &snapshot(&|s| s.evaluations.clone()));
            app.evaluations()
                .release(ReleaseRequest {
                    evaluation_id,
                    mark_as_failed: fail,
                    failure_reason: reason,
                    bot_id: String::new(),
                })
                .await?;
        }
        Call::CreateAccount(request) => {
            let account = app.sessions(OPERATOR).create_account(request).await?.into_inner().account.expect("account");
            seen.lock().expect("seen").accounts.push(account.id);
        }
        Call::ListAccounts { assistant } => {
            app.sessions(OPERATOR).list_accounts(ListAccountsRequest { assistant, ..Default::default() }).await?;
        }
        Call::UpdateSessionState { account, json } => {
            let account_id = pick_text(&account, &texts(&|s| s.accounts.clone()));
            app.sessions(OPERATOR)
                .update_session_state(UpdateSessionStateRequest { account_id, storage_state_json: json })
                .await?;
        }
        Call::UpdateAccount { account, proxy, user_agent, label, end_cooldown } => {
            let account_id = pick_text(&account, &texts(&|s| s.accounts.clone()));
            app.sessions(OPERATOR)
                .update_account(UpdateAccountRequest { account_id, proxy, user_agent, label, end_cooldown })
                .await?;
        }
        Call::Lease { assistant, plan, bot_id } => {
            let lease =
                app.sessions(BOT).lease_session(LeaseSessionRequest { assistant, plan, bot_id }).await?.into_inner();
            seen.lock().expect("seen").leases.push(lease.lease_id);
        }
        Call::Return { lease, outcome, runs, detail, lifts_in } => {
            let lease_id = pick_text(&lease, &texts(&|s| s.leases.clone()));
            let limit_lifts_at = lifts_in.map(|(seconds, nanos)| prost_types::Timestamp {
                seconds: chrono::Utc::now().timestamp().saturating_add(seconds),
                nanos,
            });
            app.sessions(BOT)
                .return_session(ReturnSessionRequest { lease_id, outcome, runs, detail, limit_lifts_at })
                .await?;
        }
    }
    Ok(())
}

/// A refusal is one of the codes a caller can act on, never INTERNAL, UNKNOWN or UNAVAILABLE
/// (nothing is down here); INVALID_ARGUMENT carries a bad-request violation naming its field.
fn check_refusal(status: &tonic::Status) -> Result<(), String> {
    match status.code() {
        Code::InvalidArgument => {
            let violations = status.get_details_bad_request().map(|b| b.field_violations).unwrap_or_default();
            match violations.first() {
                Some(violation) if !violation.field.is_empty() && !violation.description.is_empty() => Ok(()),
                _ => Err(format!("INVALID_ARGUMENT without a field violation: {:?}", status.message())),
            }
        }
        // PERMISSION_DENIED: a claim or lease another bot id holds (the fuzz's ids wander).
        Code::NotFound
        | Code::FailedPrecondition
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::OutOfRange => Ok(()),
        code => Err(format!("{code:?}: {:?}", status.message())),
    }
}

#[tokio::test]
async fn every_grpc_refusal_is_one_a_caller_can_act_on_and_names_its_field() {
    let app = spawn_app().await;
    let seen = Arc::new(Mutex::new(Seen::default()));
    // Real things to name: queued tasks of every assistant, accounts of two.
    let events = app.answers().ask(ask_text("Fuzz: which kettle boils fastest?", &[])).await.expect("ask").into_inner();
    drop(events);
    for (assistant, plan) in [("chatgpt", "Plus"), ("claude", "Pro")] {
        let request = aap_proto::v1::CreateAccountRequest {
            assistant: assistant.into(),
            plan: plan.into(),
            label: "fuzz".into(),
            storage_state_json: r#"{"cookies": []}"#.into(),
            proxy: String::new(),
            user_agent: String::new(),
        };
        let account = app.sessions(OPERATOR).create_account(request).await.expect("account").into_inner();
        seen.lock().expect("seen").accounts.push(account.account.expect("account").id);
    }
    let (prompts, evaluations): (Vec<i64>, Vec<i64>) = {
        let rows: Vec<(i64, i64)> =
            sqlx::query_as("SELECT prompt_id, id FROM evaluations").fetch_all(&app.pool).await.expect("evaluations");
        rows.into_iter().unzip()
    };
    {
        let mut seen = seen.lock().expect("seen");
        seen.prompts = prompts;
        seen.evaluations = evaluations;
    }

    let seed = seed();
    let mut runner = runner(seed);
    let cases = runner.config().cases;
    let strategy = call();
    let mut outcomes: HashMap<String, u32> = HashMap::new();
    let mut failures = Vec::new();
    for n in 0..cases {
        let call = draw(&strategy, &mut runner);
        let outcome = run(&app, &call, &seen).await;
        let name = format!("{call:?}").split([' ', '(', '{']).next().unwrap_or_default().to_owned();
        let code = outcome.as_ref().map_or_else(|s| format!("{:?}", s.code()), |_| "Ok".to_owned());
        *outcomes.entry(format!("{name} {code}")).or_default() += 1;
        if let Err(status) = &outcome
            && let Err(problem) = check_refusal(status)
        {
            let shown: String = format!("{call:?}").chars().take(800).collect();
            failures.push(format!("case {n}: {problem}\n  call: {shown}"));
        }
    }
    let mut outcomes: Vec<_> = outcomes.into_iter().collect();
    outcomes.sort();
    eprintln!("seed {seed}: {cases} calls: {outcomes:?}");
    report(seed, &failures);
    // Still serving: a normal Ask is taken.
    let stream = app.answers().ask(ask_text("Fuzz: best hiking boots?", &["chatgpt"])).await;
    assert!(stream.is_ok(), "{stream:?}");
}

// ---------------------------------------------------------------------------------------------
// Regressions the fuzz found

fn violation(status: &tonic::Status) -> (Code, String) {
    let field = status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.into_iter().next())
        .map(|v| v.field)
        .unwrap_or_default();
    (status.code(), field)
}

/// NUL (which PostgreSQL cannot store in text) in a bot id, a plan, a label or a lease's detail
/// reached the database and came back INTERNAL; a capture time past year 9999 was taken, though
/// no protobuf Timestamp or RFC 3339 text can carry it. Each is now refused naming its field.
#[tokio::test]
async fn values_the_database_cannot_store_are_refused_naming_their_field() {
    use aap_proto::v1::*;
    let app = spawn_app().await;
    let _stream = app.answers().ask(ask_text("Which tent survives a storm?", &["chatgpt"])).await.expect("ask");
    // A task waits: claim it and give it back, so that it waits again for the next poll.
    let task = poll_task(&app, "chatgpt", "Plus").await;
    let mut bot = app.evaluations();
    let late = SubmitRequest {
        evaluation_id: task.evaluation_id,
        response_text: "An answer".into(),
        captured_at: Some(prost_types::Timestamp { seconds: 253_402_300_800, nanos: 0 }),
        ..Default::default()
    };
    let refused = bot.submit(late).await.expect_err("year 10000 taken");
    assert_eq!(violation(&refused), (Code::InvalidArgument, "captured_at".to_owned()), "{refused:?}");
    let release = ReleaseRequest {
        evaluation_id: task.evaluation_id,
        mark_as_failed: false,
        failure_reason: String::new(),
        bot_id: String::new(),
    };
    bot.release(release).await.expect("release");
    let serves = Some(Target { assistant: "chatgpt".into(), plan: "Plus".into() });
    let polled = bot.poll(PollRequest { bot_id: "bot\0".into(), serves }).await;
    assert_eq!(polled.map_err(|s| violation(&s)).err(), Some((Code::InvalidArgument, "bot_id".to_owned())));

    let mut operator = app.sessions(OPERATOR);
    let valid = CreateAccountRequest {
        assistant: "chatgpt".into(),
        plan: "Plus".into(),
        label: "main".into(),
        storage_state_json: r#"{"cookies": []}"#.into(),
        proxy: String::new(),
        user_agent: String::new(),
    };
    for (field, request) in [
        ("label", CreateAccountRequest { label: "main\0".into(), ..valid.clone() }),
        ("plan", CreateAccountRequest { plan: "Plus\0".into(), ..valid.clone() }),
    ] {
        let refused = operator.create_account(request).await.expect_err("NUL taken");
        assert_eq!(violation(&refused), (Code::InvalidArgument, field.to_owned()), "{refused:?}");
    }
    let account = operator.create_account(valid).await.expect("account").into_inner().account.expect("account");
    let update = UpdateAccountRequest { account_id: account.id, label: Some("\0".into()), ..Default::default() };
    let refused = operator.update_account(update).await.expect_err("NUL label taken");
    assert_eq!(violation(&refused), (Code::InvalidArgument, "label".to_owned()));

    let mut sessions = app.sessions(BOT);
    for (field, plan, bot_id) in [("plan", "Plus\0", "bot"), ("bot_id", "Plus", "bot\0")] {
        let request = LeaseSessionRequest { assistant: "chatgpt".into(), plan: plan.into(), bot_id: bot_id.into() };
        let refused = sessions.lease_session(request).await.expect_err("NUL taken");
        assert_eq!(violation(&refused), (Code::InvalidArgument, field.to_owned()), "{refused:?}");
    }
    let lease = LeaseSessionRequest { assistant: "chatgpt".into(), plan: "Plus".into(), bot_id: "bot".into() };
    let lease = sessions.lease_session(lease).await.expect("lease").into_inner();
    let back = ReturnSessionRequest {
        lease_id: lease.lease_id.clone(),
        outcome: 0,
        runs: 1,
        detail: "page said \0".into(),
        ..Default::default()
    };
    let refused = sessions.return_session(back).await.expect_err("NUL detail taken");
    assert_eq!(violation(&refused), (Code::InvalidArgument, "detail".to_owned()));
    let back = ReturnSessionRequest {
        lease_id: lease.lease_id,
        outcome: 0,
        runs: 1,
        detail: "fine".into(),
        ..Default::default()
    };
    sessions.return_session(back).await.expect("the lease is still returned once");
}

/// A refusal quoted the caller's value whole: an unknown assistant of 300 kB made a
/// `grpc-message` header past HTTP/2's limit, and the caller saw INTERNAL ("h2 protocol
/// error") instead of INVALID_ARGUMENT.
#[tokio::test]
async fn a_huge_value_is_refused_with_a_short_reason() {
    use aap_proto::v1::*;
    let app = spawn_app().await;
    let huge = "é".repeat(150_000);
    let lease = LeaseSessionRequest { assistant: huge.clone(), plan: String::new(), bot_id: "bot".into() };
    let refused = app.sessions(BOT).lease_session(lease).await.expect_err("taken");
    assert_eq!(violation(&refused), (Code::InvalidArgument, "assistant".to_owned()), "{}", refused.code());
    assert!(refused.message().len() < 1000, "{}", refused.message().len());
    let poll =
        PollRequest { bot_id: "bot".into(), serves: Some(Target { assistant: huge.clone(), plan: String::new() }) };
    let refused = app.evaluations().poll(poll).await.expect_err("taken");
    assert_eq!(violation(&refused), (Code::InvalidArgument, "serves.assistant".to_owned()));
    let refused = app.answers().ask(ask_text("fine prompt", &[&huge])).await.expect_err("taken");
    assert_eq!(violation(&refused), (Code::InvalidArgument, "targets.assistant".to_owned()));
}

/// A codec that sends a request's bytes as they are (what a broken or hostile client puts on the
/// wire) and reads responses as `R`.
struct RawCodec<R>(std::marker::PhantomData<R>);

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl<R: prost::Message + Default + Send + 'static> tonic::codec::Codec for RawCodec<R> {
    type Encode = Vec<u8>;
    type Decode = R;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<R>;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(tonic::codec::BufferSettings::default())
    }
}

/// Requests whose gRPC framing is broken: tonic answers INTERNAL, counted as the server's own
/// failure, for the caller's mistake; the platform says INVALID_ARGUMENT, on a unary call and a
/// streaming one. A compressed message without `grpc-encoding` stays INTERNAL (gRPC's
/// compression spec says so).
#[tokio::test]
async fn requests_whose_grpc_framing_is_broken_are_invalid_argument() {
    let app = spawn_app().await;
    let ask = grpc_frame(&ask_text("Which tent survives a storm?", &["chatgpt"]));
    let cut = ask[..ask.len() - 3].to_vec();
    let whoami = grpc_frame(&aap_proto::v1::WhoAmIRequest {});
    let cases: [(&str, &str, &str, Vec<u8>, Code); 5] = [
        (
            "an Ask whose length prefix promises 3 bytes more",
            "/aap.v1.AnswersService/Ask",
            CUSTOMER,
            cut,
            Code::InvalidArgument,
        ),
        (
            "an Ask of 3 bytes (half a prefix)",
            "/aap.v1.AnswersService/Ask",
            CUSTOMER,
            vec![0, 0, 0],
            Code::InvalidArgument,
        ),
        ("an Ask with no message", "/aap.v1.AnswersService/Ask", CUSTOMER, Vec::new(), Code::InvalidArgument),
        ("a WhoAmI with no message", "/aap.v1.AdminService/WhoAmI", OPERATOR, Vec::new(), Code::InvalidArgument),
        (
            "a compressed WhoAmI without grpc-encoding",
            "/aap.v1.AdminService/WhoAmI",
            OPERATOR,
            [&[1u8][..], &whoami[1..]].concat(),
            Code::Internal,
        ),
    ];
    for (what, path, token, body, code) in cases {
        let told = raw_grpc(&app, path, token, body, &[]).await;
        assert_eq!(told.code(), code, "{what}: {told:?}");
        if code == Code::InvalidArgument {
            assert!(told.message().contains("not a whole gRPC message"), "{what}: {told:?}");
        }
    }
    assert_eq!(app.count("prompts").await, 0, "nothing was stored");
    let fine = raw_grpc(&app, "/aap.v1.AdminService/WhoAmI", OPERATOR, whoami, &[]).await;
    assert_eq!(fine.code(), Code::Ok, "a whole WhoAmI is answered: {fine:?}");
}

/// Requests that are not protobuf of their method (a string that is not UTF-8, a message cut
/// short, garbage) came back INTERNAL, which counts as the server's own failure: they are the
/// caller's error, INVALID_ARGUMENT naming the message, on a unary call and a streaming one.
#[tokio::test]
async fn requests_that_are_not_valid_protobuf_are_invalid_argument() {
    let app = spawn_app().await;
    let raw = |token: &str| {
        let bearer = aap::client::Bearer::new(token).expect("token");
        tonic::client::Grpc::new(InterceptedService::new(app.channel.clone(), bearer))
    };
    let (mut customer, mut operator) = (raw(CUSTOMER), raw(OPERATOR));
    let ask = tonic::codegen::http::uri::PathAndQuery::from_static("/aap.v1.AnswersService/Ask");
    let delete = tonic::codegen::http::uri::PathAndQuery::from_static("/aap.v1.AnswersService/DeleteRefreshSchedule");
    let cases: [(&str, Vec<u8>); 4] = [
        // Field 1 (a string: the prompt, the schedule's name) holding bytes that are not UTF-8.
        ("a prompt that is not UTF-8", vec![0x0a, 0x03, b'a', 0xff, 0xfe]),
        // A NUL encoded in two bytes (modified UTF-8), which UTF-8 forbids.
        ("an overlong NUL", vec![0x0a, 0x02, 0xc0, 0x80]),
        // Field 1 announcing 100 bytes, then the message ends.
        ("a message cut short", vec![0x0a, 0x64, b'a', b'b']),
        ("garbage", vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
    ];
    for (what, bytes) in cases {
        customer.ready().await.expect("ready");
        let streaming = customer
            .server_streaming(
                tonic::Request::new(bytes.clone()),
                ask.clone(),
                RawCodec::<AskResponse>(Default::default()),
            )
            .await;
        let refused = match streaming {
            Err(status) => status,
            Ok(response) => match response.into_inner().message().await {
                Err(status) => status,
                Ok(message) => panic!("{what}: Ask took it: {message:?}"),
            },
        };
        assert_eq!(refused.code(), Code::InvalidArgument, "{what}: {refused:?}");
        assert!(refused.message().contains("not a valid AskRequest"), "{what}: {refused:?}");
        operator.ready().await.expect("ready");
        let unary = operator
            .unary(
                tonic::Request::new(bytes),
                delete.clone(),
                RawCodec::<DeleteRefreshScheduleResponse>(Default::default()),
            )
            .await;
        let refused = unary.expect_err(what);
        assert_eq!(refused.code(), Code::InvalidArgument, "{what}: {refused:?}");
        assert!(refused.message().contains("not a valid DeleteRefreshScheduleRequest"), "{what}: {refused:?}");
    }
    assert_eq!(app.count("prompts").await, 0, "nothing was stored");
    // The platform still serves a normal request.
    let matched = first_matched(&app, ask_text("Which tent survives a storm?", &["chatgpt"])).await;
    assert!(matched.prompt_id > 0);
}
