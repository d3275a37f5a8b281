//! The platform's `/metrics`: scraped over HTTP while Asks go from the scheduler through a
//! bot's claim, a release and a redelivery, submits and the ingest, back to the streams; the
//! counters, histograms and gauges move with the right labels, and the text parses.
//!
//! One test in its own binary: the registry is the process's, so another test in the same
//! process would move the same counters.

mod common;

use std::time::{Duration, Instant};

use aap_platform::metrics::exposition::Scrape;
use aap_proto::v1::answer_event::Event;
use aap_proto::v1::{CreateAccountRequest, LeaseSessionRequest, MatchKind, ReleaseRequest};
use common::*;
use futures::StreamExt;

async fn scrape(url: &str) -> Scrape {
    let response = reqwest::get(url).await.expect("scrape").error_for_status().expect("scrape status");
    let content_type = response.headers()["content-type"].to_str().expect("content type").to_owned();
    assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
    Scrape::parse(&response.text().await.expect("body")).expect("the exposition parses")
}

/// Scrapes until `ready` holds (a bounded wait: a scrape reads the gauges of shared state at
/// most once a scheduler tick).
async fn scrape_until(url: &str, what: &str, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let scrape = scrape(url).await;
        if ready(&scrape) {
            return scrape;
        }
        if Instant::now() > deadline {
            let shown: Vec<String> = scrape
                .samples
                .iter()
                .filter(|s| !s.name.ends_with("_bucket"))
                .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
                .collect();
            panic!("{what}: not seen in /metrics within 30 s; it showed:\n{}", shown.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape.value(name, labels).unwrap_or(0.0)
}

#[tokio::test]
async fn asks_claims_releases_and_answers_move_the_metrics_with_their_labels() {
    let app = spawn_app().await;
    let url = app.metrics_url.clone();

    // Every family is registered from the start, typed, before anything happened; those with a
    // known label set show at zero.
    let start = scrape(&url).await;
    let families = aap_platform::metrics::families();
    for (family, kind) in [
        ("aap_answers_ask_first_event_seconds", "histogram"),
        ("aap_evaluations", "gauge"),
        ("aap_queue_messages", "gauge"),
        ("aap_evaluations_releases", "counter"),
        ("aap_ingest_lag_seconds", "histogram"),
        ("aap_session_accounts", "gauge"),
        ("aap_grpc_server_handled", "counter"),
        ("aap_db_pool_connections", "gauge"),
        ("aap_embedding_seconds", "histogram"),
        ("aap_bot_task_outcomes", "counter"),
    ] {
        assert_eq!(families.get(family).map(String::as_str).or(start.kind(family)), Some(kind), "{family}");
    }
    assert_eq!(start.kind("aap_db_pool_connections"), Some("gauge"), "collected at every scrape");
    assert_eq!(value(&start, "aap_answers_ask_first_event_seconds_count", &[("match", "new")]), 0.0);

    // The session pool: one account, a lease granted, and one refused for want of an account.
    app.sessions(OPERATOR)
        .create_account(CreateAccountRequest {
            assistant: "chatgpt".into(),
            plan: "Plus".into(),
            label: "metrics-1".into(),
            storage_state_json: r#"{"cookies": [], "origins": []}"#.into(),
            ..CreateAccountRequest::default()
        })
        .await
        .expect("account created");
    let lease = |assistant: &str| {
        let mut sessions = app.sessions(BOT);
        let request = LeaseSessionRequest { assistant: assistant.into(), plan: String::new(), bot_id: "m-bot".into() };
        async move { sessions.lease_session(request).await }
    };
    lease("chatgpt").await.expect("lease granted");
    lease("claude").await.expect_err("no claude account");

    // Two new prompts; the bot claims one, so one waits on the queue and one is claimed.
    let asks: Vec<_> = ["How do metrics reach Prometheus?", "Which histogram buckets suit latency?"]
        .into_iter()
        .map(|prompt| {
            let mut answers = app.answers();
            tokio::spawn(async move {
                let stream = answers.ask(ask_text(prompt, &["chatgpt"])).await.expect("ask").into_inner();
                collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))).await
            })
        })
        .collect();
    let first = poll_task(&app, "chatgpt", "").await;
    let consumer = "tasks-chatgpt-any";
    let busy = scrape_until(&url, "one evaluation queued, one claimed, the queue's depth, the pool", |s| {
        value(s, "aap_evaluations", &[("assistant", "chatgpt"), ("state", "queued")]) == 1.0
            && value(s, "aap_evaluations", &[("assistant", "chatgpt"), ("state", "claimed")]) == 1.0
            && value(s, "aap_queue_messages", &[("consumer", consumer), ("state", "pending")]) == 1.0
            && value(s, "aap_queue_messages", &[("consumer", consumer), ("state", "ack_pending")]) == 1.0
            && value(s, "aap_session_accounts", &[("assistant", "chatgpt"), ("status", "active")]) == 1.0
            && value(s, "aap_session_accounts_leased", &[("assistant", "chatgpt")]) == 1.0
    })
    .await;
    assert!(value(&busy, "aap_evaluations_oldest_claim_age_seconds", &[("assistant", "chatgpt")]) > 0.0);
    assert_eq!(value(&busy, "aap_evaluations_oldest_claim_age_seconds", &[("assistant", "claude")]), 0.0);
    assert_eq!(value(&busy, "aap_answers_streams_open", &[("rpc", "ask")]), 2.0);
    assert_eq!(value(&busy, "aap_evaluations", &[("assistant", "claude"), ("state", "queued")]), 0.0);

    // The bot gives the first task back with a timeout; it is delivered again.
    app.evaluations()
        .release(ReleaseRequest {
            evaluation_id: first.evaluation_id,
            mark_as_failed: false,
            failure_reason: "timeout: the answer did not finish in 120 s (after 1 attempts)".into(),
            bot_id: "test-bot".into(),
        })
        .await
        .expect("released");
    for _ in 0..2 {
        let task = poll_task(&app, "chatgpt", "").await;
        submit(&app, task.evaluation_id, &format!("Answer to {}", task.prompt_text)).await.expect("submit");
    }
    let mut prompt_id = 0;
    for ask in asks {
        let events = ask.await.expect("ask task");
        first_answer(&events);
        if let Some(Event::Matched(m)) = events.first() {
            prompt_id = m.prompt_id;
        }
    }

    // Asked again: exactly, and by id.
    let again = ask(&app, ask_text("How do metrics reach Prometheus?", &["chatgpt"])).await;
    assert!(matches!(&again[0], Event::Matched(m) if m.r#match == MatchKind::Exact as i32), "{again:?}");
    let request = aap_proto::v1::AskRequest {
        query: Some(aap_proto::v1::ask_request::Query::PromptId(prompt_id)),
        targets: vec![aap_proto::v1::Target { assistant: "chatgpt".into(), plan: String::new() }],
        ..Default::default()
    };
    let by_id = ask(&app, request.clone()).await;
    assert!(matches!(&by_id[0], Event::Matched(m) if m.r#match == MatchKind::ById as i32), "{by_id:?}");
    // And once more each: now the text as asked and the id are known in memory.
    let again = ask(&app, ask_text("How do metrics reach Prometheus?", &["chatgpt"])).await;
    assert!(matches!(&again[0], Event::Matched(m) if m.r#match == MatchKind::Exact as i32), "{again:?}");
    first_cached(&again);
    first_cached(&ask(&app, request).await);

    let chatgpt = [("assistant", "chatgpt")];
    let done = scrape_until(&url, "the answers stored and the gauges back to zero", |s| {
        value(s, "aap_evaluations_answered_total", &chatgpt) == 2.0
            && value(s, "aap_evaluations", &[("assistant", "chatgpt"), ("state", "claimed")]) == 0.0
            && value(s, "aap_evaluations", &[("assistant", "chatgpt"), ("state", "queued")]) == 0.0
            && value(s, "aap_queue_messages", &[("consumer", consumer), ("state", "ack_pending")]) == 0.0
            && value(s, "aap_answers_streams_open", &[("rpc", "ask")]) == 0.0
            && value(s, "aap_grpc_server_handled_total", &[("method", "Ask"), ("code", "Ok")]) == 6.0
    })
    .await;
    let count = |name: &str, labels: &[(&str, &str)]| value(&done, name, labels);
    // Asks by how their prompt was found, timed to the first event.
    assert_eq!(count("aap_answers_ask_first_event_seconds_count", &[("match", "new")]), 2.0);
    assert_eq!(count("aap_answers_ask_first_event_seconds_count", &[("match", "exact")]), 2.0);
    assert_eq!(count("aap_answers_ask_first_event_seconds_count", &[("match", "by_id")]), 2.0);
    assert_eq!(count("aap_answers_ask_first_event_seconds_count", &[("match", "similar")]), 0.0);
    let inf = [("match", "new"), ("le", "+Inf")];
    assert_eq!(count("aap_answers_ask_first_event_seconds_bucket", &inf), 2.0);
    assert!(count("aap_answers_ask_first_event_seconds_sum", &[("match", "new")]) > 0.0);
    // The exact-hit caches. Texts as asked: the two new ones and the first exact Ask missed (it
    // found its prompt by hash, and remembered the text), the second hit. By hash: the new ones
    // were not stored yet, the first exact Ask read and kept it. By id: read once, then kept.
    let lookups =
        |cache: &str, result: &str| count("aap_answers_cache_lookups_total", &[("cache", cache), ("result", result)]);
    assert_eq!((lookups("asked_as", "hit"), lookups("asked_as", "miss")), (1.0, 3.0));
    assert_eq!((lookups("prompt_hash", "hit"), lookups("prompt_hash", "miss")), (0.0, 3.0));
    assert_eq!((lookups("prompt_id", "hit"), lookups("prompt_id", "miss")), (1.0, 1.0));
    // Settled prompts: one lookup per Ask. The new ones missed; of the four asked again, each
    // one after the first finds the answered prompt kept, unless a late announcement about it
    // (the gateway's of the submit) dropped it just before, which happens once at most.
    let settled = ["hit", "miss", "stale"].map(|result| lookups("settled", result));
    assert_eq!(settled.iter().sum::<f64>(), 6.0, "one per Ask: {settled:?}");
    assert!(settled[0] >= 2.0 && settled[1] >= 2.0 && settled[2] == 0.0, "{settled:?}");
    let entries = |cache: &str| count("aap_answers_cache_entries", &[("cache", cache)]);
    assert_eq!((entries("asked_as"), entries("prompt_hash"), entries("prompt_id")), (1.0, 1.0, 1.0));
    assert!(entries("settled") >= 1.0, "the answered prompt is kept");
    // The pipeline: three claims (one given back and delivered again), two answers through
    // the results stream and the ingest.
    assert_eq!(count("aap_evaluations_claims_total", &chatgpt), 3.0);
    assert_eq!(count("aap_task_redeliveries_total", &chatgpt), 1.0);
    let release = [("assistant", "chatgpt"), ("class", "timeout"), ("outcome", "requeued")];
    assert_eq!(count("aap_evaluations_releases_total", &release), 1.0);
    assert_eq!(count("aap_evaluations_failed_total", &chatgpt), 0.0);
    assert_eq!(count("aap_evaluations_submissions_total", &chatgpt), 2.0);
    assert_eq!(count("aap_ingest_lag_seconds_count", &chatgpt), 2.0);
    assert_eq!(count("aap_ingest_redeliveries_total", &[]), 0.0);
    assert_eq!(count("aap_queue_messages", &[("consumer", "ingest"), ("state", "pending")]), 0.0);
    // Leases.
    assert_eq!(count("aap_session_leases_total", &[("assistant", "chatgpt"), ("outcome", "granted")]), 1.0);
    assert_eq!(count("aap_session_leases_total", &[("assistant", "claude"), ("outcome", "no_account")]), 1.0);
    // gRPC calls by service, method and code, timed.
    let submit_ok = [("service", "aap.v1.EvaluationService"), ("method", "Submit"), ("code", "Ok")];
    assert_eq!(count("aap_grpc_server_handled_total", &submit_ok), 2.0);
    let refused = done
        .matching("aap_grpc_server_handled_total", &[("method", "LeaseSession")])
        .filter(|s| s.label("code") != Some("Ok"))
        .map(|s| s.value)
        .sum::<f64>();
    assert_eq!(refused, 1.0, "the refused lease, by its code");
    let ask_timed = [("service", "aap.v1.AnswersService"), ("method", "Ask")];
    assert_eq!(count("aap_grpc_server_handling_seconds_count", &ask_timed), 6.0);
    // Embedding: the two new prompts (the exact and by-id Asks embed nothing), in one forward
    // pass or two (concurrent Asks share a pass).
    let passes = count("aap_embedding_seconds_count", &[]);
    assert!(passes == 1.0 || passes == 2.0, "{passes} embedding passes for two prompts");
    assert_eq!(count("aap_embedding_batch_size_count", &[]), passes);
    assert_eq!(count("aap_embedding_batch_size_sum", &[]), 2.0);
    assert_eq!(count("aap_embedding_refused_total", &[]), 0.0);
    // The database pool.
    assert_eq!(count("aap_db_pool_max_connections", &[("pool", "platform")]), 20.0);
    assert!(count("aap_db_pool_connections", &[("pool", "platform")]) >= 1.0);
    // A caller cannot grow the label set with made-up paths.
    assert!(done.samples.iter().all(|s| s.label("method").is_none_or(|m| m.len() < 40)));
}

#[tokio::test]
async fn a_settled_prompt_older_than_the_caches_max_age_is_read_again_and_counted_stale() {
    let app = spawn_app_with(Options { cache_max_age: Duration::ZERO, ..Options::default() }).await;
    let prompt = "Is a kept answer ever served past its age?";
    let asking = {
        let mut answers = app.answers();
        tokio::spawn(async move {
            let stream = answers.ask(ask_text(prompt, &["chatgpt"])).await.expect("ask").into_inner();
            collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))).await
        })
    };
    let task = poll_task(&app, "chatgpt", "").await;
    submit(&app, task.evaluation_id, "Never past its age").await.expect("submit");
    first_answer(&asking.await.expect("ask task"));

    // Kept when it settled, but too old at once: each Ask after reads the prompt again, and
    // gets the stored answer from there. Of the two, the second finds it kept (stale) at least:
    // the first may miss if a late announcement (the gateway's of the submit) dropped it.
    for _ in 0..2 {
        let again = ask(&app, ask_text(prompt, &["chatgpt"])).await;
        assert_eq!(first_cached(&again).response_text, "Never past its age");
    }
    let scrape = scrape(&app.metrics_url).await;
    let settled = ["hit", "miss", "stale"]
        .map(|result| value(&scrape, "aap_answers_cache_lookups_total", &[("cache", "settled"), ("result", result)]));
    assert_eq!(settled[0], 0.0, "nothing served from memory past its age: {settled:?}");
    assert!(settled[1] >= 1.0 && settled[2] >= 1.0 && settled[1] + settled[2] == 3.0, "{settled:?}");
}

#[tokio::test]
async fn prompts_the_model_cannot_read_are_counted() {
    let app = spawn_app().await;
    let name = "aap_answers_unreadable_prompts_total";
    assert_eq!(scrape(&app.metrics_url).await.value(name, &[]), Some(0.0), "kept from the start");
    // How each is matched: the first event of its stream (nobody answers them).
    let first_match = |text: &str| {
        let request = aap_proto::v1::AskRequest {
            policy: aap_proto::v1::SimilarPolicy::Accept as i32,
            min_similarity: Some(0.5),
            ..ask_text(text, &["chatgpt"])
        };
        async { first_matched(&app, request).await.r#match }
    };
    for text in ["🚀🚀🚀", "🍕❓", "What are the best laptops under $1,000? 💻"] {
        assert_eq!(first_match(text).await, MatchKind::New as i32, "{text}");
    }
    // Two of the three: the third is readable with one emoji. Asked again, a text is an exact
    // hit, found before anything is embedded, and not counted again.
    assert_eq!(first_match("🚀🚀🚀").await, MatchKind::Exact as i32);
    assert_eq!(scrape(&app.metrics_url).await.value(name, &[]), Some(2.0));
}
