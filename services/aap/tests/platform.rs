//! The platform end to end over real PostgreSQL, NATS JetStream and gRPC, with the test
//! acting as the bot through the public EvaluationService.

mod common;

use std::time::Duration;

use aap_proto::v1::answer_event::Event;
use aap_proto::v1::{AskRequest, EvaluationState, MatchKind, SimilarPolicy, Target, WatchRequest};
use common::*;
use futures::StreamExt;
use tonic::Code;

fn matched(events: &[Event]) -> &aap_proto::v1::PromptMatched {
    match events.first() {
        Some(Event::Matched(m)) => m,
        other => panic!("first event is not matched: {other:?}"),
    }
}

/// Asks `text` of ChatGPT, answers it as the bot with `answer`; returns the prompt's id.
async fn ask_answered(app: &TestApp, text: &str, answer: &str) -> i64 {
    let stream = app.answers().ask(ask_text(text, &["chatgpt"])).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(app, "chatgpt", "").await;
    submit(app, task.evaluation_id, answer).await.expect("submit");
    matched(&waiting.await.expect("stream")).prompt_id
}

/// The failure that ended a target (not one that will be retried).
fn final_failure(events: &[Event]) -> &aap_proto::v1::EvaluationFailed {
    events
        .iter()
        .find_map(|e| match e {
            Event::Failed(f) if !f.will_retry => Some(f),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no final failure in {events:?}"))
}

fn completed(events: &[Event]) -> &aap_proto::v1::Completed {
    match events.last() {
        Some(Event::Completed(c)) => c,
        other => panic!("last event is not completed: {other:?}"),
    }
}

#[tokio::test]
async fn new_prompt_is_answered_once_and_then_served_from_cache() {
    let app = spawn_app().await;
    let prompt = "What are the best laptops under $1,000?";
    let request = AskRequest { include_html: true, ..ask_text(prompt, &["chatgpt"]) };
    let stream = app.answers().ask(request).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));

    let task = poll_task(&app, "chatgpt", "Plus").await;
    assert_eq!(task.prompt_text, prompt);
    assert_eq!(task.assistant, "chatgpt");
    assert_eq!(task.attempt, 1);
    submit(&app, task.evaluation_id, "Buy the MacBook Air").await.expect("submit");

    let events = waiting.await.expect("stream task");
    assert_eq!(matched(&events).r#match, MatchKind::New as i32);
    assert!(events.iter().any(|e| matches!(e, Event::Scheduled(s) if s.evaluation_id == task.evaluation_id)));
    let answer = first_answer(&events);
    assert_eq!(answer.response_text, "Buy the MacBook Air");
    assert_eq!(answer.citations.len(), 2);
    assert_eq!(answer.citations[0].url, "https://www.techradar.com/best/laptops");
    assert_eq!(answer.citations[0].domain, "techradar.com");
    assert_eq!(answer.citations[1].position, 2);
    assert_eq!(answer.citations[0].kind, aap_proto::v1::CitationKind::Inline as i32);
    assert_eq!(answer.kind, aap_proto::v1::AnswerKind::Text as i32);
    let capture = answer.capture.clone().expect("capture");
    assert_eq!(capture.model, "gpt-5");
    assert_eq!(capture.web_search, Some(true));
    assert_eq!(capture.time_to_first_token, Some(prost_types::Duration { seconds: 0, nanos: 400_000_000 }));
    assert_eq!(capture.time_to_complete, Some(prost_types::Duration { seconds: 2, nanos: 500_000_000 }));
    assert_eq!((capture.adapter_version.as_str(), capture.adapter_fingerprint.as_str()), ("2026.11.1", "abcdef012345"));
    assert_eq!(capture.response_html, "<p><strong>Buy the MacBook Air</strong></p>");
    assert_eq!(capture.finish_signals, vec!["stop-gone", "action-bar"]);
    assert_eq!(capture.missing_roles, vec!["turn"]);
    assert!(!capture.read_by_fallback);
    assert!((capture.confidence - 0.9).abs() < 1e-6);
    assert!(capture.cut_short, "an answer the assistant cut short says so");
    assert!(!capture.model_fallback, "the plan's model answered");
    assert_eq!(answer.citations[0].found_in, aap_proto::v1::CitationOrigin::Both as i32);
    assert_eq!(answer.search_queries, vec!["best laptops under 1000", "laptop reviews 2026"]);
    assert_eq!(answer.products.len(), 1);
    let product = &answer.products[0];
    assert_eq!(
        (product.name.as_str(), product.url.as_str(), product.price.as_str(), product.position),
        ("Acer Swift Go 14", "https://shop.example/acer", "$749.99", 1),
        "product links are cleaned like citations"
    );
    assert_eq!(answer.bot_id, "", "customers do not see which bot answered");
    assert_eq!(answer.account_id, "", "no lease, no account");
    assert_eq!(completed(&events).answered, 1);

    // The same prompt spelled differently: an exact hit, served at once, nothing scheduled.
    let again = ask(&app, ask_text("  what are the BEST laptops under $1,000? ", &["chatgpt"])).await;
    assert_eq!(matched(&again).r#match, MatchKind::Exact as i32);
    assert!(matches!(&again[1], Event::Cached(a) if a.response_text == "Buy the MacBook Air"));
    assert!(!again.iter().any(|e| matches!(e, Event::Scheduled(_))));
    let cached = first_cached(&again);
    assert_eq!(cached.capture.expect("capture").response_html, "", "no page html unless asked for");
    // Asked for, the page comes with the answer kept in memory too.
    let with_html = ask(&app, AskRequest { include_html: true, ..ask_text(prompt, &["chatgpt"]) }).await;
    let capture = first_cached(&with_html).capture.expect("capture");
    assert_eq!(capture.response_html, "<p><strong>Buy the MacBook Air</strong></p>");
    assert!(capture.cut_short, "the exact hit serves the mark too: {capture:?}");
    assert_eq!(app.count("evaluations").await, 1);
    assert_eq!(app.count("answers").await, 1);
}

#[tokio::test]
async fn a_new_prompt_whose_ask_runs_out_of_time_before_its_evaluations_are_made_is_still_asked() {
    let app = spawn_app().await;
    let text = "Which kettles boil fastest, asked by a caller in a hurry?";
    // While the test holds the evaluations table, the Ask stores the prompt and then waits at
    // its first read of the prompt's evaluations, until its deadline ends it on the server.
    let mut lock = app.pool.begin().await.expect("begin");
    sqlx::query("LOCK TABLE evaluations IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.expect("lock");
    // One HTTP/2 request, as any gRPC client frames it: tonic's client would end the call itself
    // when the time is up, as CANCELLED.
    let framed = grpc_frame(&ask_text(text, &["chatgpt"]));
    let ended = raw_grpc(&app, "/aap.v1.AnswersService/Ask", CUSTOMER, framed, &[("grpc-timeout", "2S")]).await;
    // Told by the server (this client keeps no timer of its own): DEADLINE_EXCEEDED, as gRPC
    // says, and counted so (tonic said CANCELLED, "Timeout expired", and the metrics missed it).
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    assert!(ended.message().contains("grpc-timeout 2S"), "{ended:?}");
    let metrics = reqwest::get(&app.metrics_url).await.expect("metrics").text().await.expect("text");
    let counted = metrics.lines().any(|line| {
        line.starts_with("aap_grpc_server_handled_total{")
            && line.contains(r#"method="Ask""#)
            && line.contains(r#"code="DeadlineExceeded""#)
            && line.ends_with(" 1")
    });
    assert!(counted, "the Ask is counted as DEADLINE_EXCEEDED:\n{metrics}");
    let stored: Option<(i64,)> = sqlx::query_as("SELECT id FROM prompts WHERE text = $1")
        .bind(text)
        .fetch_optional(&app.pool)
        .await
        .expect("read");
    let (prompt_id,) = stored.expect("the prompt was stored before the Ask ran out of time");
    lock.rollback().await.expect("unlock");

    // Its evaluations are made all the same (before, the prompt stayed stored and never asked:
    // a Watch of it followed nothing, and similar Asks were pointed at it).
    let mut waited = 0;
    loop {
        let (evaluations,): (i64,) = sqlx::query_as("SELECT count(*) FROM evaluations WHERE prompt_id = $1")
            .bind(prompt_id)
            .fetch_one(&app.pool)
            .await
            .expect("count");
        if evaluations == 1 {
            break;
        }
        waited += 1;
        assert!(waited < 400, "the prompt was never asked of chatgpt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let task = poll_task(&app, "chatgpt", "").await;
    let (asked,): (i64,) = sqlx::query_as("SELECT prompt_id FROM evaluations WHERE id = $1")
        .bind(task.evaluation_id)
        .fetch_one(&app.pool)
        .await
        .expect("read");
    assert_eq!(asked, prompt_id, "its task reached a bot");
}

#[tokio::test]
async fn a_stopping_server_ends_its_open_streams_with_unavailable_and_stops() {
    let app = spawn_app().await;
    let text = "Which sleeping bag is warmest, asked as the server stops?";
    let mut ask = app.answers().ask(ask_text(text, &["chatgpt"])).await.expect("ask").into_inner();
    let first = ask.message().await.expect("first event").and_then(|r| r.event).and_then(|e| e.event);
    let Some(Event::Matched(matched)) = first else { panic!("first event: {first:?}") };
    let watching = WatchRequest { prompt_id: matched.prompt_id, ..Default::default() };
    let mut watch = app.answers().watch(watching).await.expect("watch").into_inner();
    assert!(watch.message().await.expect("watch's first event").is_some());

    // No bot answers: both wait on the prompt, as long as their callers like. The server's
    // graceful stop waits for every call to end; before, it waited for these callers' own
    // deadlines (or for ever).
    let stopping = tokio::spawn(app.platform.shutdown());
    ends_with(&mut ask, Code::Unavailable, "the Ask as the server stops").await;
    ends_with(&mut watch, Code::Unavailable, "the Watch as the server stops").await;
    let stopped = tokio::time::timeout(Duration::from_secs(20), stopping).await;
    stopped.expect("the server stopped").expect("no panic").expect("a clean stop");
    // What was asked goes on: the evaluation waits for a bot of another replica.
    let (status,): (String,) = sqlx::query_as("SELECT status FROM evaluations WHERE prompt_id = $1")
        .bind(matched.prompt_id)
        .fetch_one(&app.pool)
        .await
        .expect("read");
    assert!(["pending", "queued"].contains(&status.as_str()), "{status}");
}

#[tokio::test]
async fn an_assistant_asked_on_any_plan_and_on_a_named_one_is_asked_once_and_answered_once() {
    let app = spawn_app().await;
    let targets = vec![
        Target { assistant: "perplexity".into(), plan: String::new() },
        Target { assistant: "perplexity".into(), plan: "Pro".into() },
    ];
    let request = AskRequest { targets, ..ask_text("Which rain jacket breathes best?", &[]) };
    let stream = app.answers().ask(request).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    // Pro's answer is an answer of any plan too: one evaluation, on Pro (before: two, and the
    // stream gave Pro's answer twice and the other evaluation never).
    let task = poll_task(&app, "perplexity", "Pro").await;
    assert_eq!(app.count("evaluations").await, 1);
    submit(&app, task.evaluation_id, "The one with the best membrane.").await.expect("submit");
    let events = waiting.await.expect("stream");
    let answers: Vec<_> = events.iter().filter(|e| matches!(e, Event::Answer(_) | Event::Cached(_))).collect();
    assert_eq!(answers.len(), 1, "{events:?}");
    assert_eq!((completed(&events).answered, completed(&events).failed), (1, 0));
}

#[tokio::test]
async fn concurrent_asks_of_one_new_prompt_share_one_evaluation() {
    let app = spawn_app().await;
    let prompt = "Which CRM is best for a five-person startup?";
    let mut waiting = Vec::new();
    for _ in 0..5 {
        let mut client = app.answers();
        let request = ask_text(prompt, &["chatgpt"]);
        waiting.push(tokio::spawn(async move {
            let stream = client.ask(request).await.expect("ask").into_inner();
            collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))).await
        }));
    }
    let task = poll_task(&app, "chatgpt", "").await;
    submit(&app, task.evaluation_id, "HubSpot").await.expect("submit");
    for handle in waiting {
        let events = handle.await.expect("stream task");
        let got =
            events.iter().any(|e| matches!(e, Event::Answer(a) | Event::Cached(a) if a.response_text == "HubSpot"));
        assert!(got, "every asker gets the answer: {events:?}");
    }
    assert_eq!(app.count("prompts").await, 1);
    assert_eq!(app.count("evaluations").await, 1);
}

#[tokio::test]
async fn of_concurrent_force_new_asks_of_one_new_text_one_is_told_new_and_the_others_exact() {
    let app = spawn_app().await;
    let prompt = "Which standing desk wobbles least at full height?";
    let mut asking = Vec::new();
    for _ in 0..8 {
        let mut client = app.answers();
        let request = AskRequest { policy: SimilarPolicy::ForceNew as i32, ..ask_text(prompt, &["chatgpt"]) };
        asking.push(tokio::spawn(async move {
            let mut stream = client.ask(request).await.expect("ask").into_inner();
            let first = stream.message().await.expect("first event").and_then(|r| r.event).and_then(|e| e.event);
            let Some(Event::Matched(matched)) = first else { panic!("first event: {first:?}") };
            matched
        }));
    }
    let mut kinds = Vec::new();
    for handle in asking {
        kinds.push(MatchKind::try_from(handle.await.expect("ask task").r#match).expect("a known kind"));
    }
    // One prompt is stored: its Ask is told NEW, every other EXACT (before, all eight were told
    // NEW, "the prompt is new and was stored").
    assert_eq!(app.count("prompts").await, 1);
    assert_eq!(kinds.iter().filter(|k| **k == MatchKind::New).count(), 1, "{kinds:?}");
    assert!(kinds.iter().all(|k| matches!(k, MatchKind::New | MatchKind::Exact)), "{kinds:?}");
}

#[tokio::test]
async fn similar_prompt_is_suggested_accepted_or_forced_new() {
    let app = spawn_app().await;
    let original_id = ask_answered(&app, "What are the best laptops under $1,000?", "MacBook Air").await;

    let near = "Which are the top laptops under $1,000?";
    let mut request = ask_text(near, &["chatgpt"]);
    request.min_similarity = Some(0.8);
    let suggested = ask(&app, request.clone()).await;
    match &suggested[0] {
        Event::Suggestions(s) => {
            assert_eq!(s.suggestions[0].prompt_id, original_id);
            assert!(s.suggestions[0].similarity >= 0.8 && s.suggestions[0].similarity < 1.0);
            assert_eq!(s.suggestions[0].answered_assistants, vec!["chatgpt".to_owned()]);
        }
        other => panic!("expected suggestions, got {other:?}"),
    }
    assert!(matches!(suggested.last(), Some(Event::Completed(_))));
    assert_eq!(app.count("prompts").await, 1, "a suggestion stores nothing");

    request.policy = SimilarPolicy::Accept as i32;
    let accepted = ask(&app, request.clone()).await;
    assert_eq!(matched(&accepted).r#match, MatchKind::Similar as i32);
    assert_eq!(matched(&accepted).prompt_id, original_id);
    assert!(accepted.iter().any(|e| matches!(e, Event::Cached(a) if a.response_text == "MacBook Air")));

    // Taking a suggestion by its id streams its answers.
    let by_id = ask(
        &app,
        AskRequest {
            query: Some(aap_proto::v1::ask_request::Query::PromptId(original_id)),
            targets: vec![Target { assistant: "chatgpt".into(), plan: String::new() }],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(matched(&by_id).r#match, MatchKind::ById as i32);
    assert!(by_id.iter().any(|e| matches!(e, Event::Cached(_))));

    request.policy = SimilarPolicy::ForceNew as i32;
    let mut forced = app.answers().ask(request).await.expect("ask").into_inner();
    let first = forced.next().await.expect("event").expect("ok").event.expect("body");
    match first.event {
        Some(Event::Matched(m)) => {
            assert_eq!(m.r#match, MatchKind::New as i32);
            assert_ne!(m.prompt_id, original_id);
        }
        other => panic!("expected matched, got {other:?}"),
    }
    assert_eq!(app.count("prompts").await, 2);
}

/// Texts the model cannot read embed alike: two different strings of emoji had cosine 1.000.
/// Such a prompt is matched exactly or asked as new, never offered or taken as similar.
#[tokio::test]
async fn a_prompt_the_model_cannot_read_is_never_matched_by_similarity() {
    let app = spawn_app().await;
    // Answered first: the unreadable prompts below leave tasks queued for chatgpt.
    let laptops = ask_answered(&app, "What are the best laptops under $1,000?", "MacBook Air").await;
    let rockets = "🚀".repeat(40);
    let original_id = ask_answered(&app, &rockets, "Liftoff").await;
    for other in ["🍕🍕🍕❓", &"a".repeat(8_192)] {
        let mut request = ask_text(other, &["chatgpt"]);
        request.min_similarity = Some(0.5);
        request.policy = SimilarPolicy::Accept as i32;
        let m = first_matched(&app, request).await;
        assert_eq!(m.r#match, MatchKind::New as i32, "{other:.20}");
        assert_ne!(m.prompt_id, original_id, "{other:.20}");
    }
    assert_eq!(app.count("prompts").await, 4);
    // The same text is still an exact hit, with its answer.
    let again = ask(&app, ask_text(&rockets, &["chatgpt"])).await;
    assert_eq!(matched(&again).r#match, MatchKind::Exact as i32);
    assert_eq!(matched(&again).prompt_id, original_id);
    assert!(again.iter().any(|e| matches!(e, Event::Cached(a) if a.response_text == "Liftoff")));
    // A readable prompt with an emoji in it is matched by similarity as before.
    let mut request = ask_text("Which are the top laptops under $1,000? 💻", &["chatgpt"]);
    request.min_similarity = Some(0.8);
    request.policy = SimilarPolicy::Accept as i32;
    let accepted = ask(&app, request).await;
    assert_eq!(matched(&accepted).r#match, MatchKind::Similar as i32);
    assert_eq!(matched(&accepted).prompt_id, laptops);
}

/// The near-miss guard over gRPC: another amount is held apart (with why) and asked as new, a
/// paraphrase next to it is still suggested, and another spelling of the same amount is an exact
/// hit.
#[tokio::test]
async fn a_near_miss_is_held_apart_with_its_reason_and_amount_spellings_are_one_prompt() {
    let app = spawn_app().await;
    let original_id = ask_answered(&app, "What are the best laptops under $1,000?", "MacBook Air").await;

    // "$1000", "$1k" and "1000 dollars" are the stored prompt itself. Each is asked twice: the
    // second time the replica knows the text as asked (kept up to 512 bytes; the padded one is
    // longer, and is found through its canonical form every time).
    let padded = format!("What are the best laptops{}under $1,000?", " ".repeat(600));
    for spelling in ["what are the best laptops under $1000?", "What are the best laptops under 1000 dollars?", &padded]
    {
        for time in ["first", "again"] {
            let events = ask(&app, ask_text(spelling, &["chatgpt"])).await;
            assert_eq!(matched(&events).r#match, MatchKind::Exact as i32, "{spelling} ({time})");
            assert_eq!(matched(&events).prompt_id, original_id, "{spelling} ({time})");
            assert!(events.iter().any(|e| matches!(e, Event::Cached(a) if a.response_text == "MacBook Air")));
        }
    }

    // Another amount: the embedding calls it near, the guard holds it apart, and it is new.
    let other_amount = "What are the best laptops under $500?";
    let mut request = ask_text(other_amount, &["chatgpt"]);
    request.min_similarity = Some(0.8);
    request.include_related = true;
    let m = first_matched(&app, request).await;
    assert_eq!(m.r#match, MatchKind::New as i32);
    assert_ne!(m.prompt_id, original_id);
    assert_eq!(m.related.len(), 1, "{:?}", m.related);
    assert_eq!(m.related[0].prompt_id, original_id);
    assert_eq!(m.related[0].reason, "numbers differ: $500 vs $1000");
    assert!(m.related[0].similarity >= 0.8);

    // Without `include_related` the first event lists none.
    let mut request = ask_text("What are the best laptops under $2,000?", &["chatgpt"]);
    request.min_similarity = Some(0.8);
    request.policy = SimilarPolicy::Accept as i32;
    let m = first_matched(&app, request).await;
    assert_eq!(m.r#match, MatchKind::New as i32, "ACCEPT does not take a vetoed neighbour");
    assert!(m.related.is_empty());

    // A paraphrase is suggested; the other amounts come with it as related, each with its reason.
    let mut request = ask_text("Which are the top laptops under $1,000?", &["chatgpt"]);
    request.min_similarity = Some(0.8);
    let suggested = ask(&app, request).await;
    let Event::Suggestions(s) = &suggested[0] else { panic!("expected suggestions, got {:?}", suggested[0]) };
    assert_eq!(s.suggestions.iter().map(|s| s.prompt_id).collect::<Vec<_>>(), vec![original_id]);
    let reasons: Vec<&str> = s.related.iter().map(|r| r.reason.as_str()).collect();
    assert!(reasons.contains(&"numbers differ: $1000 vs $500"), "{reasons:?}");
    assert!(reasons.contains(&"numbers differ: $1000 vs $2000"), "{reasons:?}");
    assert_eq!(app.count("prompts").await, 3, "suggestions store nothing");
}

/// Prompts stored before hashes were canonical are rehashed, and then hit exactly by any
/// spelling of their amounts.
#[tokio::test]
async fn prompts_stored_with_the_old_hash_are_rehashed_to_the_canonical_one() {
    let app = spawn_app().await;
    let text = "Cheapest flights to Lisbon under $1,000";
    let old_hash = aap_answers::normalize::prompt_hash(&aap_answers::normalize::normalize(text));
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO prompts (text, text_hash, embedding, hash_version) \
         VALUES ($1, $2, array_fill(0.1, ARRAY[384])::vector, 1) RETURNING id",
    )
    .bind(text)
    .bind(&old_hash)
    .fetch_one(&app.pool)
    .await
    .expect("insert");
    let canonical = |t: &str| aap_answers::normalize::prompt_hash(&aap_answers::normalize::canonical(t));
    // The service's own background pass may have run already: either way none is left at 1.
    aap_answers::store::rehash_prompts(&app.pool, canonical).await.expect("rehash");
    let (hash, version): (Vec<u8>, i16) = sqlx::query_as("SELECT text_hash, hash_version FROM prompts WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert_eq!((hash, version), (canonical("cheapest flights to lisbon under $1000"), 2));
    let request = AskRequest {
        policy: SimilarPolicy::ForceNew as i32,
        ..ask_text("cheapest flights to Lisbon under $1k", &["chatgpt"])
    };
    let m = first_matched(&app, request).await;
    assert_eq!((m.r#match, m.prompt_id), (MatchKind::Exact as i32, id));
}

#[tokio::test]
async fn lapsed_claim_is_delivered_again_and_answered_once() {
    let app = spawn_app_with(Options { poll_claim_ttl: Duration::from_secs(1), ..Options::default() }).await;
    let stream =
        app.answers().ask(ask_text("Best running shoes for flat feet?", &["chatgpt"])).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let first = poll_task(&app, "chatgpt", "").await;
    // The first bot vanishes: its claim lapses and the task comes back as attempt 2.
    let second = poll_task(&app, "chatgpt", "").await;
    assert_eq!(second.evaluation_id, first.evaluation_id);
    assert_eq!(second.attempt, 2);
    submit(&app, second.evaluation_id, "Brooks Adrenaline").await.expect("submit");
    let events = waiting.await.expect("stream");
    assert!(events.iter().any(|e| matches!(e, Event::Failed(f) if f.will_retry)), "the lapse is reported: {events:?}");
    let answers = events.iter().filter(|e| matches!(e, Event::Answer(_))).count();
    assert_eq!(answers, 1);
    assert_eq!(app.count("answers").await, 1);
    // The first bot comes back late: the evaluation is finished.
    let late = submit(&app, first.evaluation_id, "late").await.expect_err("late submit refused");
    assert_eq!(late.code(), Code::FailedPrecondition);
}

/// Marks the evaluation submitted with the test bot's answer `text` ([`submit_request`]) as the
/// gateway does first, and nothing after: a gateway killed between the mark and the results
/// stream.
async fn mark_submitted_then_die(app: &TestApp, evaluation_id: i64, text: &str) {
    let holder = aap_evaluations::store::Holder::new(BOT_NAME, "test-bot");
    let submission = aap_evaluations::grpc::parse_submission(submit_request(evaluation_id, text)).expect("valid");
    let digest = aap_evaluations::gateway::submission_digest(&submission);
    let marked =
        aap_evaluations::store::mark_submitted(&app.pool, evaluation_id, &holder, &digest).await.expect("mark");
    assert!(marked.is_some(), "the test bot holds evaluation {evaluation_id}");
}

#[tokio::test]
async fn a_submit_cut_off_after_the_mark_is_taken_again_from_the_same_bot_once() {
    let app = spawn_app().await;
    let stream = app.answers().ask(ask_text("Is a heat pump worth it?", &["chatgpt"])).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(&app, "chatgpt", "").await;
    mark_submitted_then_die(&app, task.evaluation_id, "Yes, in a mild climate").await;
    // Another bot of the fleet cannot answer it in the meantime.
    let mut other = app.evaluations();
    let refused = other
        .submit(aap_proto::v1::SubmitRequest {
            evaluation_id: task.evaluation_id,
            response_text: "not mine".into(),
            bot_id: "another-bot".into(),
            ..Default::default()
        })
        .await
        .expect_err("another bot's submit");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    // The bot's retry, once a gateway is back, is taken: the answer reaches the stream.
    submit(&app, task.evaluation_id, "Yes, in a mild climate").await.expect("the retried submit is taken");
    let events = waiting.await.expect("stream");
    let answers: Vec<_> = events.iter().filter_map(|e| if let Event::Answer(a) = e { Some(a) } else { None }).collect();
    assert_eq!(answers.len(), 1, "{events:?}");
    assert_eq!(answers[0].response_text, "Yes, in a mild climate");
    assert_eq!(completed(&events).answered, 1);
    // The reply to that retry lost too, the bot tries once more: its answer is in, so it succeeds.
    submit(&app, task.evaluation_id, "Yes, in a mild climate").await.expect("a repeat of the stored answer");
    // A different text for the answered evaluation is refused, and nothing is stored twice.
    let changed = submit(&app, task.evaluation_id, "No").await.expect_err("a second, different answer");
    assert_eq!(changed.code(), Code::FailedPrecondition);
    assert_eq!(app.count("answers").await, 1);
}

/// A submit refused because another answer was taken: FAILED_PRECONDITION, saying so.
fn refused_as_another_answer(result: Result<(), tonic::Status>) {
    let status = result.expect_err("a different answer is refused");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("a different answer was submitted already"), "{status:?}");
}

#[tokio::test]
async fn of_different_answers_submitted_at_once_one_is_taken_and_the_others_refused() {
    let app = spawn_app().await;
    let stream =
        app.answers().ask(ask_text("Which e-bike climbs best?", &["chatgpt"])).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(&app, "chatgpt", "").await;
    // The bot's retries of one answer, and other answers, all at once.
    let texts: Vec<String> =
        (0..20).map(|k| if k % 2 == 0 { "same".to_owned() } else { format!("diff {k}") }).collect();
    let replies = futures::future::join_all(texts.iter().map(|text| submit(&app, task.evaluation_id, text))).await;
    let mut taken: Vec<&str> = Vec::new();
    for (text, reply) in texts.iter().zip(replies) {
        match reply {
            Ok(()) => taken.push(text),
            refused => refused_as_another_answer(refused),
        }
    }
    assert!(!taken.is_empty(), "one answer is taken");
    assert!(taken.iter().all(|text| *text == taken[0]), "only one answer is taken: {taken:?}");
    assert_eq!(taken.len(), texts.iter().filter(|text| *text == taken[0]).count(), "each copy of it: {taken:?}");
    let events = waiting.await.expect("stream");
    assert_eq!(first_answer(&events).response_text, taken[0], "the answer taken is the one stored");
    assert_eq!(app.count("answers").await, 1);
}

#[tokio::test]
async fn a_stored_answer_is_taken_again_only_exactly_as_it_was() {
    let app = spawn_app().await;
    let stream =
        app.answers().ask(ask_text("Is a mesh router worth it?", &["chatgpt"])).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(&app, "chatgpt", "").await;
    let id = task.evaluation_id;
    submit(&app, id, "For a big house, yes").await.expect("submit");
    first_answer(&waiting.await.expect("stream"));
    // The reply was lost: the bot's exact repeat succeeds.
    submit(&app, id, "For a big house, yes").await.expect("an exact repeat");
    // The same text with anything else changed is another answer.
    let mut bot = app.evaluations();
    let same = || submit_request(id, "For a big house, yes");
    let mut other_citations = same();
    other_citations.citations.pop();
    let mut other_markdown = same();
    other_markdown.response_markdown = "*For a big house*, yes".into();
    let mut other_queries = same();
    other_queries.search_queries.push("mesh wifi".into());
    let mut other_capture = same();
    other_capture.capture.as_mut().expect("capture").model = "gpt-5-mini".into();
    let mut whole = same();
    whole.capture.as_mut().expect("capture").cut_short = false;
    let mut fallback = same();
    fallback.capture.as_mut().expect("capture").model_fallback = true;
    for changed in [other_citations, other_markdown, other_queries, other_capture, whole, fallback] {
        refused_as_another_answer(bot.submit(changed).await.map(drop));
    }
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT response_text, jsonb_array_length(citations)::bigint FROM answers WHERE evaluation_id = $1",
    )
    .bind(id)
    .fetch_all(&app.pool)
    .await
    .expect("answers");
    assert_eq!(stored, [("For a big house, yes".to_owned(), 2)], "the first answer, once");
}

/// A submit whose reply from the results stream was lost is told it failed and its mark undone,
/// though its result may be on the stream after all; if the bot then hands in another answer
/// and is told it was taken, the first result, reaching the ingest before it, must not be
/// stored in its place (the bot was told the second one was taken).
#[tokio::test]
async fn a_result_whose_submit_was_told_it_failed_is_not_stored_over_the_answer_taken_after_it() {
    let app = spawn_app().await;
    let assistants = ["chatgpt", "claude", "perplexity"];
    let stream = app.answers().ask(ask_text("Which answer does a lost reply leave?", &assistants)).await.expect("ask");
    let waiting = tokio::spawn(collect(stream.into_inner().map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let [lost, first, second] = [
        poll_task(&app, "chatgpt", "").await,
        poll_task(&app, "claude", "").await,
        poll_task(&app, "perplexity", "").await,
    ];
    // The digests of the two answers (a digest does not name the evaluation): each taken by an
    // evaluation of its own.
    submit(&app, first.evaluation_id, "the first answer").await.expect("submit");
    submit(&app, second.evaluation_id, "the second answer").await.expect("submit");
    let digest = |id: i64| {
        let pool = app.pool.clone();
        async move {
            let digest: Vec<u8> = sqlx::query_scalar("SELECT submitted_digest FROM evaluations WHERE id = $1")
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("digest");
            digest
        }
    };
    let (digest_first, digest_second) = (digest(first.evaluation_id).await, digest(second.evaluation_id).await);
    assert_eq!(digest_first.len(), 32);
    assert_ne!(digest_first, digest_second);

    // The first submit's result went onto the stream, but its reply was lost: the mark was
    // undone and the bot submitted the second answer, marked before the ingest read the first.
    sqlx::query(
        "UPDATE evaluations SET status = 'submitted', submitted_digest = $2, claim_expires_at = NULL WHERE id = $1",
    )
    .bind(lost.evaluation_id)
    .bind(&digest_second)
    .execute(&app.pool)
    .await
    .expect("mark the second answer");
    let nats = async_nats::connect(app.nats_url.as_str()).await.expect("nats");
    let js = async_nats::jetstream::new(nats.clone());
    let result = serde_json::json!({
        "evaluation_id": lost.evaluation_id,
        "prompt_id": lost.prompt_id,
        "assistant": "chatgpt",
        "plan": lost.plan,
        "response_text": "the first answer",
        "response_markdown": "",
        "citations": [],
        "captured_at": "2026-12-05T10:00:00Z",
        "bot_id": "test-bot",
        "lease_id": "",
        "digest": hex::encode(&digest_first),
    });
    let subject = format!("{}.results.chatgpt", app.nats_prefix);
    let ack = js.publish(subject, serde_json::to_vec(&result).expect("json").into()).await.expect("publish");
    let sequence = ack.await.expect("stored by the stream").sequence;
    // The ingest read it (and acked it) before the second answer reaches the stream.
    let topology = aap_platform::nats::Topology::new(app.nats_prefix.clone());
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js
        .get_stream(topology.results_stream())
        .await
        .expect("results stream")
        .get_consumer(&topology.ingest_consumer())
        .await
        .expect("ingest consumer");
    for _ in 0..600 {
        if consumer.info().await.expect("consumer info").ack_floor.stream_sequence >= sequence {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(consumer.info().await.expect("consumer info").ack_floor.stream_sequence >= sequence, "the ingest read it");
    let (status,): (String,) = sqlx::query_as("SELECT status FROM evaluations WHERE id = $1")
        .bind(lost.evaluation_id)
        .fetch_one(&app.pool)
        .await
        .expect("status");
    assert_eq!(status, "submitted", "the first answer was not taken");

    // The second submit (its bot's repeat, as the gateway runs it) is taken and stored.
    submit(&app, lost.evaluation_id, "the second answer").await.expect("the second answer is taken");
    let events = waiting.await.expect("stream");
    let answer = |id: i64| match events.iter().find(|e| matches!(e, Event::Answer(a) if a.evaluation_id == id)) {
        Some(Event::Answer(answer)) => answer.response_text.clone(),
        _ => panic!("no answer to {id}: {events:?}"),
    };
    assert_eq!(answer(lost.evaluation_id), "the second answer", "{events:?}");
    let stored: Vec<String> = sqlx::query_scalar("SELECT response_text FROM answers WHERE evaluation_id = $1")
        .bind(lost.evaluation_id)
        .fetch_all(&app.pool)
        .await
        .expect("answers");
    assert_eq!(stored, ["the second answer"]);
}

#[tokio::test]
async fn the_last_holder_of_a_task_waiting_again_unclaimed_may_still_answer_it() {
    let app = spawn_app().await;
    let stream =
        app.answers().ask(ask_text("Which kayak is most stable?", &["chatgpt"])).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let mut bot = app.evaluations();
    let poll_as = |bot_id: &'static str| {
        let mut bot = app.evaluations();
        async move {
            for _ in 0..200 {
                let serves = Some(Target { assistant: "chatgpt".into(), plan: String::new() });
                let request = aap_proto::v1::PollRequest { bot_id: bot_id.into(), serves };
                if let Some(task) = bot.poll(request).await.expect("poll").into_inner().task {
                    return task;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("no task arrived for {bot_id}");
        }
    };
    let release = |id: i64, bot_id: &str| aap_proto::v1::ReleaseRequest {
        evaluation_id: id,
        mark_as_failed: false,
        failure_reason: "rate limited".into(),
        bot_id: bot_id.into(),
    };
    let task = poll_as("test-bot").await;
    bot.release(release(task.evaluation_id, "test-bot")).await.expect("release");
    // Another bot claims it: the first one's late answer is refused.
    let again = poll_as("other-bot").await;
    assert_eq!((again.evaluation_id, again.attempt), (task.evaluation_id, 2));
    let late = submit(&app, task.evaluation_id, "late").await.expect_err("a claim another bot holds");
    assert_eq!(late.code(), Code::PermissionDenied, "{late:?}");
    // That bot gives it back too; before anyone claims it again, its answer is still taken.
    bot.release(release(task.evaluation_id, "other-bot")).await.expect("release");
    let mut answer = submit_request(task.evaluation_id, "The Old Town Loon");
    answer.bot_id = "other-bot".into();
    bot.submit(answer).await.expect("the last holder's answer");
    let events = waiting.await.expect("stream");
    assert_eq!(first_answer(&events).response_text, "The Old Town Loon");
    assert_eq!(app.count("answers").await, 1);
}

#[tokio::test]
async fn a_submitted_answer_that_never_arrives_is_asked_again_and_answered_once() {
    let app = spawn_app_with(Options { submitted_timeout: Duration::from_secs(1), ..Options::default() }).await;
    let stream = app.answers().ask(ask_text("Do I need a VPN at home?", &["chatgpt"])).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let first = poll_task(&app, "chatgpt", "").await;
    // The gateway died after the mark, and the bot gave up before one was back.
    mark_submitted_then_die(&app, first.evaluation_id, "Lost").await;
    // After the submitted timeout the evaluation is asked again: a new task, attempt 2.
    let second = poll_task(&app, "chatgpt", "").await;
    assert_eq!((second.evaluation_id, second.attempt), (first.evaluation_id, 2));
    submit(&app, second.evaluation_id, "Rarely").await.expect("submit");
    let events = waiting.await.expect("stream");
    let answers = events.iter().filter(|e| matches!(e, Event::Answer(_))).count();
    assert_eq!(answers, 1, "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::Failed(f) if !f.will_retry)), "{events:?}");
    assert_eq!(completed(&events).answered, 1);
    assert_eq!(app.count("answers").await, 1);
}

#[tokio::test]
async fn a_lost_submit_on_the_last_attempt_fails_with_the_reason() {
    let app =
        spawn_app_with(Options { max_attempts: 1, submitted_timeout: Duration::from_secs(1), ..Options::default() })
            .await;
    let stream = app.answers().ask(ask_text("Is Rust hard to learn?", &["chatgpt"])).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(&app, "chatgpt", "").await;
    mark_submitted_then_die(&app, task.evaluation_id, "Lost").await;
    let events = waiting.await.expect("stream");
    let failed = final_failure(&events);
    assert!(failed.reason.contains("submitted but not stored"), "{}", failed.reason);
    assert_eq!(completed(&events).failed, 1);
}

#[tokio::test]
async fn last_attempt_lapsing_fails_the_evaluation_and_tells_the_stream() {
    let app =
        spawn_app_with(Options { max_attempts: 1, poll_claim_ttl: Duration::from_secs(1), ..Options::default() }).await;
    let stream = app.answers().ask(ask_text("Is oat milk healthy?", &["chatgpt"])).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let _task = poll_task(&app, "chatgpt", "").await;
    let events = waiting.await.expect("stream");
    let failed = final_failure(&events);
    assert!(failed.reason.contains("lapsed"), "{}", failed.reason);
    assert_eq!(completed(&events).failed, 1);
}

#[tokio::test]
async fn release_as_failed_ends_the_evaluation_with_the_bots_reason() {
    let app = spawn_app().await;
    let stream =
        app.answers().ask(ask_text("Cheapest flights to Lisbon?", &["chatgpt"])).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(&app, "chatgpt", "").await;
    let mut bot = app.evaluations();
    let reply = bot
        .release(aap_proto::v1::ReleaseRequest {
            evaluation_id: task.evaluation_id,
            mark_as_failed: true,
            failure_reason: "No citations found after 3 attempts".into(),
            ..Default::default()
        })
        .await
        .expect("release")
        .into_inner();
    assert_eq!(reply.action, "released");
    let events = waiting.await.expect("stream");
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Failed(f) if f.reason == "No citations found after 3 attempts" && !f.will_retry)
        )
    );
    // Releasing or submitting a finished evaluation is refused; an unknown one is not found.
    let again = bot
        .release(aap_proto::v1::ReleaseRequest {
            evaluation_id: task.evaluation_id,
            mark_as_failed: true,
            failure_reason: String::new(),
            ..Default::default()
        })
        .await
        .expect_err("second release");
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(submit(&app, task.evaluation_id, "x").await.expect_err("submit").code(), Code::FailedPrecondition);
    assert_eq!(submit(&app, 999_999, "x").await.expect_err("unknown").code(), Code::NotFound);
}

#[tokio::test]
async fn released_task_goes_back_to_the_queue_for_another_bot() {
    let app = spawn_app().await;
    let _stream = app.answers().ask(ask_text("Best budget espresso machine?", &["chatgpt"])).await.expect("ask");
    let task = poll_task(&app, "chatgpt", "").await;
    app.evaluations()
        .release(aap_proto::v1::ReleaseRequest {
            evaluation_id: task.evaluation_id,
            mark_as_failed: false,
            failure_reason: "rate limited".into(),
            ..Default::default()
        })
        .await
        .expect("release");
    let again = poll_task(&app, "chatgpt", "").await;
    assert_eq!(again.evaluation_id, task.evaluation_id);
    assert_eq!(again.attempt, 2);
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let mut client = app.answers();
    let cases: Vec<(AskRequest, &str)> = vec![
        (ask_text("", &["chatgpt"]), "prompt"),
        (ask_text("   \n\t ", &["chatgpt"]), "prompt"),
        // Zero-width spaces and a byte-order mark: nothing shows, so nothing is asked.
        (ask_text("\u{200B}\u{200B}\u{FEFF}", &["chatgpt"]), "prompt"),
        // Keys to a browser (Enter, Tab) and nothing else: every bot would type only spaces.
        (ask_text("\u{E007}\u{E004} \u{E007}", &["chatgpt"]), "nothing a bot can type"),
        (ask_text(&"x".repeat(8 * 1024 + 1), &["chatgpt"]), "prompt"),
        (ask_text("fine prompt", &["bard"]), "assistant"),
        (ask_text("fine prompt", &["ChatGPT"]), "assistant"),
        (AskRequest { min_similarity: Some(0.0), ..ask_text("fine prompt", &[]) }, "min_similarity"),
        (AskRequest { min_similarity: Some(1.5), ..ask_text("fine prompt", &[]) }, "min_similarity"),
        (AskRequest { query: None, ..Default::default() }, "prompt"),
        // Poison: a NUL or another control character in the prompt, a plan that is no name,
        // more targets than there are ways to ask.
        (ask_text("best laptops\0", &["chatgpt"]), "prompt"),
        (ask_text("best\u{1b}[31mlaptops", &["chatgpt"]), "prompt"),
        (
            AskRequest {
                targets: vec![Target { assistant: "chatgpt".into(), plan: "plus.>".into() }],
                ..ask_text("fine prompt", &[])
            },
            "targets.plan",
        ),
        (
            AskRequest {
                targets: vec![Target { assistant: "chatgpt".into(), plan: "p".repeat(65) }],
                ..ask_text("fine prompt", &[])
            },
            "targets.plan",
        ),
        (
            AskRequest {
                targets: vec![Target { assistant: "chatgpt".into(), plan: String::new() }; 33],
                ..ask_text("fine prompt", &[])
            },
            "targets",
        ),
    ];
    for (request, field) in cases {
        let status = client.ask(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{field}: {}", status.message());
    }
    let unknown = AskRequest { query: Some(aap_proto::v1::ask_request::Query::PromptId(42)), ..Default::default() };
    assert_eq!(client.ask(unknown).await.expect_err("unknown id").code(), Code::NotFound);
    let watch = client.watch(WatchRequest { prompt_id: 42, ..Default::default() }).await.expect_err("unknown watch");
    assert_eq!(watch.code(), Code::NotFound);
    assert_eq!(app.count("prompts").await, 0);
    assert_eq!(app.count("evaluations").await, 0);
}

#[tokio::test]
async fn a_missing_or_negative_prompt_id_is_invalid_argument_naming_the_field() {
    use tonic_types::StatusExt as _;
    let app = spawn_app().await;
    let mut client = app.answers();
    // proto3 cannot tell a left-out prompt_id from 0: "prompt 0 does not exist" (NOT_FOUND) sent
    // a caller who forgot the field looking for a prompt instead of at the request.
    let field = |status: tonic::Status| {
        let violation = status.get_details_bad_request().and_then(|b| b.field_violations.into_iter().next());
        (status.code(), violation.map(|v| v.field).unwrap_or_default(), status.message().to_owned())
    };
    for id in [0, -1] {
        let ask = AskRequest { query: Some(aap_proto::v1::ask_request::Query::PromptId(id)), ..Default::default() };
        let watch = WatchRequest { prompt_id: id, ..Default::default() };
        let history = aap_proto::v1::HistoryRequest {
            prompt_id: id,
            target: Some(Target { assistant: "chatgpt".into(), plan: String::new() }),
            include_html: false,
        };
        let refusals = [
            ("ask", field(client.ask(ask).await.map(|_| ()).expect_err("refused"))),
            ("watch", field(client.watch(watch).await.map(|_| ()).expect_err("refused"))),
            ("history", field(client.history(history).await.map(|_| ()).expect_err("refused"))),
        ];
        for (method, (code, field, message)) in refusals {
            assert_eq!((code, field.as_str()), (Code::InvalidArgument, "prompt_id"), "{method} {id}: {message}");
            assert!(message.contains("prompt_id"), "{method} {id}: {message}");
        }
    }
    let watch = client.watch(WatchRequest::default()).await.map(|_| ()).expect_err("refused");
    assert!(watch.message().contains("missing"), "{}", watch.message());
}

#[tokio::test]
async fn a_search_without_an_overview_is_an_answer_of_its_own_kind_and_bad_submissions_are_refused() {
    use aap_proto::v1::{AnswerKind, Capture, SubmitRequest};
    let app = spawn_app().await;
    let stream = app
        .answers()
        .ask(ask_text("cheap flights to lisbon", &["google-ai-overview"]))
        .await
        .expect("ask")
        .into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(&app, "google-ai-overview", "").await;
    let base = SubmitRequest { evaluation_id: task.evaluation_id, bot_id: "test-bot".into(), ..Default::default() };

    let refused = [
        // Text answers need text; a no-overview result has none.
        SubmitRequest { response_text: " ".into(), kind: AnswerKind::Text as i32, ..base.clone() },
        SubmitRequest { response_text: "x".into(), kind: AnswerKind::NoOverview as i32, ..base.clone() },
        SubmitRequest { kind: 42, ..base.clone() },
        SubmitRequest {
            response_text: "x".into(),
            citations: vec![aap_proto::v1::Citation { url: "https://a.example".into(), kind: 9, ..Default::default() }],
            ..base.clone()
        },
        SubmitRequest {
            response_text: "x".into(),
            capture: Some(Capture {
                time_to_complete: Some(prost_types::Duration { seconds: -1, nanos: 0 }),
                ..Default::default()
            }),
            ..base.clone()
        },
        SubmitRequest {
            response_text: "x".into(),
            citations: vec![aap_proto::v1::Citation {
                url: "https://a.example".into(),
                found_in: 7,
                ..Default::default()
            }],
            ..base.clone()
        },
        // What rides along with an answer is bounded and made of names, not free text.
        SubmitRequest { response_text: "x".into(), search_queries: vec!["q".into(); 65], ..base.clone() },
        SubmitRequest { response_text: "x".into(), search_queries: vec!["q".repeat(1001)], ..base.clone() },
        SubmitRequest {
            response_text: "x".into(),
            products: vec![aap_proto::v1::Product { name: "p".into(), ..Default::default() }; 65],
            ..base.clone()
        },
        SubmitRequest {
            response_text: "x".into(),
            capture: Some(Capture { confidence: 1.5, ..Default::default() }),
            ..base.clone()
        },
        SubmitRequest {
            response_text: "x".into(),
            capture: Some(Capture { confidence: f32::NAN, ..Default::default() }),
            ..base.clone()
        },
        SubmitRequest {
            response_text: "x".into(),
            capture: Some(Capture { finish_signals: vec!["stop gone; DROP TABLE".into()], ..Default::default() }),
            ..base.clone()
        },
        SubmitRequest {
            response_text: "x".into(),
            capture: Some(Capture { missing_roles: vec!["turn\u{0}".into()], ..Default::default() }),
            ..base.clone()
        },
    ];
    for request in refused {
        let status = app.evaluations().submit(request.clone()).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}: {status:?}");
    }
    // Poison: a NUL anywhere (PostgreSQL cannot store it: the ingest would fail at every
    // delivery while the stream waited) and oversize fields are refused at Submit, naming the
    // field.
    let cite =
        |url: &str, title: &str| aap_proto::v1::Citation { url: url.into(), title: title.into(), ..Default::default() };
    let text = |t: &str| SubmitRequest { response_text: t.into(), ..base.clone() };
    let poison = [
        ("response_text", text("an answer\0")),
        ("response_text", text(&"x".repeat(200_001))),
        ("response_markdown", SubmitRequest { response_markdown: "**x**\0".into(), ..text("x") }),
        ("citations.title", SubmitRequest { citations: vec![cite("https://a.example", "A\0")], ..text("x") }),
        ("citations.url", SubmitRequest { citations: vec![cite("https://a.example/\0", "A")], ..text("x") }),
        (
            "citations.url",
            SubmitRequest {
                citations: vec![cite(&format!("https://a.example/{}", "x".repeat(4096)), "A")],
                ..text("x")
            },
        ),
        ("citations", SubmitRequest { citations: vec![cite("https://a.example", "A"); 257], ..text("x") }),
        (
            "capture.response_html",
            SubmitRequest {
                capture: Some(Capture { response_html: "<p>\0</p>".into(), ..Default::default() }),
                ..text("x")
            },
        ),
        (
            "capture.model",
            SubmitRequest { capture: Some(Capture { model: "gpt\u{7}".into(), ..Default::default() }), ..text("x") },
        ),
        ("bot_id", SubmitRequest { bot_id: "bot\0".into(), ..text("x") }),
        ("bot_id", SubmitRequest { bot_id: "bot-1\nbot-2".into(), ..text("x") }),
        ("search_queries", SubmitRequest { search_queries: vec!["q\0".into()], ..text("x") }),
        (
            "products.name",
            SubmitRequest {
                products: vec![aap_proto::v1::Product { name: "p\0".into(), ..Default::default() }],
                ..text("x")
            },
        ),
    ];
    for (field, request) in poison {
        let status = app.evaluations().submit(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(status.message().contains(&format!("invalid {field}:")), "{field}: {}", status.message());
    }
    let reason = aap_proto::v1::ReleaseRequest {
        evaluation_id: task.evaluation_id,
        mark_as_failed: true,
        failure_reason: "selector-missing\0".into(),
        ..Default::default()
    };
    let status = app.evaluations().release(reason).await.expect_err("a NUL reason is refused");
    assert!(status.message().contains("invalid failure_reason:"), "{}", status.message());
    assert_eq!(app.count("answers").await, 0, "refusals change nothing");

    let no_overview = SubmitRequest {
        kind: AnswerKind::NoOverview as i32,
        capture: Some(Capture { web_search: Some(false), adapter_version: "1".into(), ..Default::default() }),
        ..base
    };
    app.evaluations().submit(no_overview).await.expect("a no-overview result is accepted");
    let events = waiting.await.expect("stream task");
    let answer = first_answer(&events);
    assert_eq!(answer.kind, AnswerKind::NoOverview as i32);
    assert_eq!(answer.response_text, "");
    assert_eq!(completed(&events).answered, 1);
}

#[tokio::test]
async fn calls_without_the_right_token_are_refused() {
    let app = spawn_app().await;
    let anonymous = aap_proto::v1::answers_service_client::AnswersServiceClient::new(app.channel.clone());
    let status = anonymous.clone().ask(ask_text("hi", &["chatgpt"])).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = app.answers_as("wrong").ask(ask_text("hi", &["chatgpt"])).await.expect_err("bad token");
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = app.answers_as(BOT).ask(ask_text("hi", &["chatgpt"])).await.expect_err("bot token");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = app
        .sessions(BOT)
        .list_accounts(aap_proto::v1::ListAccountsRequest::default())
        .await
        .expect_err("bot cannot administer sessions");
    assert_eq!(status.code(), Code::PermissionDenied);
    let poll = aap_proto::v1::PollRequest {
        bot_id: "b".into(),
        serves: Some(Target { assistant: "chatgpt".into(), plan: String::new() }),
    };
    let status = aap_proto::v1::evaluation_service_client::EvaluationServiceClient::with_interceptor(
        app.channel.clone(),
        aap::client::Bearer::new(CUSTOMER).expect("token"),
    )
    .poll(poll)
    .await
    .expect_err("customer cannot poll");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(app.count("prompts").await, 0);
}

#[tokio::test]
async fn watch_reattaches_to_a_prompt_in_flight() {
    let app = spawn_app().await;
    let mut stream =
        app.answers().ask(ask_text("Best dog food for puppies?", &["chatgpt"])).await.expect("ask").into_inner();
    let first = stream.next().await.expect("event").expect("ok").event.expect("body");
    let prompt_id = match first.event {
        Some(Event::Matched(m)) => m.prompt_id,
        other => panic!("{other:?}"),
    };
    drop(stream); // the client disconnects; the evaluation goes on
    let task = poll_task(&app, "chatgpt", "").await;
    let watch =
        app.answers().watch(WatchRequest { prompt_id, ..Default::default() }).await.expect("watch").into_inner();
    let watching = tokio::spawn(collect(watch.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    submit(&app, task.evaluation_id, "Royal Canin").await.expect("submit");
    let events = watching.await.expect("watch");
    assert!(events.iter().any(|e| matches!(e, Event::Progress(p) if p.state == EvaluationState::Claimed as i32)));
    assert!(events.iter().any(|e| matches!(e, Event::Answer(a) if a.response_text == "Royal Canin")));
    assert_eq!(completed(&events).answered, 1);
}

/// The next message on the dead-letter subscription (within 30 s): its body as JSON, and the
/// reason in its `Aap-Dead-Reason` header.
async fn next_dead_letter(dead: &mut async_nats::Subscriber) -> (serde_json::Value, Option<String>) {
    let letter = tokio::time::timeout(Duration::from_secs(30), dead.next())
        .await
        .expect("a dead letter")
        .expect("subscription open");
    let body = serde_json::from_slice(&letter.payload).expect("a result as JSON");
    let reason = letter.headers.as_ref().and_then(|h| h.get("Aap-Dead-Reason")).map(|v| v.to_string());
    (body, reason)
}

/// Puts `payload` on the results stream as another producer would (not through Submit), once
/// JetStream stored it.
async fn publish_result_message(nats: &async_nats::Client, subject: String, payload: &serde_json::Value) {
    let js = async_nats::jetstream::new(nats.clone());
    js.publish(subject, serde_json::to_vec(payload).expect("json").into())
        .await
        .expect("publish")
        .await
        .expect("stored by the stream");
}

#[tokio::test]
async fn a_result_the_database_refuses_is_dead_lettered_and_its_evaluation_fails_so_streams_end() {
    let app = spawn_app().await;
    let stream = app.answers().ask(ask_text("Which poison pill do bots swallow?", &["chatgpt"])).await.expect("ask");
    let waiting = tokio::spawn(collect(stream.into_inner().map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(&app, "chatgpt", "").await;

    let nats = async_nats::connect(app.nats_url.as_str()).await.expect("nats");
    let mut dead = nats.subscribe(format!("{}.dead.results", app.nats_prefix)).await.expect("subscribe");
    // What Submit does, with an answer PostgreSQL cannot store (a NUL: what a gateway without
    // today's checks let through, or another producer on the results stream).
    sqlx::query("UPDATE evaluations SET status = 'submitted' WHERE id = $1")
        .bind(task.evaluation_id)
        .execute(&app.pool)
        .await
        .expect("mark submitted");
    publish_poison_result(&app, &nats, &task).await;

    // The stream that waited hears the failure and ends.
    let events = waiting.await.expect("stream task");
    let failed = first_failed(&events);
    assert_eq!(failed.evaluation_id, task.evaluation_id);
    assert!(!failed.will_retry);
    assert!(
        failed.reason.starts_with("the answer could not be stored after 5 attempts"),
        "the reason says why: {}",
        failed.reason
    );
    assert!(matches!(events.last(), Some(Event::Completed(_))), "{events:?}");

    // The result itself went to the dead-letter subject, as it was, with the reason.
    let (body, reason) = next_dead_letter(&mut dead).await;
    assert_eq!(body["evaluation_id"], task.evaluation_id);
    assert!(reason.is_some_and(|r| r.contains("could not be stored")));
    assert_eq!(app.count("answers").await, 0);
}

#[tokio::test]
async fn results_published_in_one_message_are_each_stored_and_one_refused_is_dead_lettered_alone() {
    let app = spawn_app().await;
    let stream = app
        .answers()
        .ask(ask_text("Which two bots answer in one message?", &["chatgpt", "claude"]))
        .await
        .expect("ask");
    let waiting = tokio::spawn(collect(stream.into_inner().map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let good = poll_task(&app, "chatgpt", "").await;
    let poison = poll_task(&app, "claude", "").await;

    let nats = async_nats::connect(app.nats_url.as_str()).await.expect("nats");
    let mut dead = nats.subscribe(format!("{}.dead.results", app.nats_prefix)).await.expect("subscribe");
    sqlx::query("UPDATE evaluations SET status = 'submitted' WHERE id = ANY($1)")
        .bind(vec![good.evaluation_id, poison.evaluation_id])
        .execute(&app.pool)
        .await
        .expect("mark submitted");
    let result = |task: &aap_proto::v1::Task, text: &str| {
        serde_json::json!({
            "evaluation_id": task.evaluation_id,
            "prompt_id": task.prompt_id,
            "assistant": task.assistant,
            "plan": task.plan,
            "response_text": text,
            "response_markdown": "",
            "citations": [],
            "captured_at": "2026-12-02T10:00:00Z",
            "bot_id": "bot",
            "lease_id": "",
        })
    };
    // What a gateway publishes for submits made together: one message, a JSON array. The
    // second answer holds a NUL, which PostgreSQL refuses.
    let batch = serde_json::json!([result(&good, "Royal Canin"), result(&poison, "a NUL \u{0} inside")]);
    publish_result_message(&nats, format!("{}.results.batch", app.nats_prefix), &batch).await;

    // The stream hears the answer the database took and the failure of the other, and ends.
    let events = waiting.await.expect("stream task");
    assert!(
        events.iter().any(|e| matches!(e, Event::Answer(a) if a.evaluation_id == good.evaluation_id && a.response_text == "Royal Canin")),
        "{events:?}"
    );
    let failed = first_failed(&events);
    assert_eq!(failed.evaluation_id, poison.evaluation_id);
    assert!(failed.reason.starts_with("the answer could not be stored after 5 attempts"), "{}", failed.reason);
    assert!(matches!(events.last(), Some(Event::Completed(_))), "{events:?}");

    // Only the refused result went to the dead-letter subject: alone, as one result.
    let (body, reason) = next_dead_letter(&mut dead).await;
    assert!(reason.is_some_and(|r| r.contains("could not be stored")));
    assert_eq!(body["evaluation_id"], poison.evaluation_id, "{body}");
    assert_eq!(body["response_text"], "a NUL \u{0} inside");
    let texts: Vec<String> =
        sqlx::query_scalar("SELECT response_text FROM answers").fetch_all(&app.pool).await.expect("answers");
    assert_eq!(texts, ["Royal Canin"]);
    let statuses: Vec<(i64, String)> = sqlx::query_as("SELECT id, status FROM evaluations ORDER BY id")
        .fetch_all(&app.pool)
        .await
        .expect("evaluations");
    let mut expected = vec![(good.evaluation_id, "answered".to_owned()), (poison.evaluation_id, "failed".to_owned())];
    expected.sort();
    assert_eq!(statuses, expected);
}

#[tokio::test]
async fn a_task_no_bot_takes_fails_after_the_queued_timeout_and_the_stream_ends() {
    let app = spawn_app_with(Options { queued_timeout: Duration::from_secs(2), ..Options::default() }).await;
    // No bot serves this plan; without a timeout the stream would wait forever.
    let request = AskRequest {
        targets: vec![Target { assistant: "claude".into(), plan: "Enterprise".into() }],
        ..ask_text("Which plan does nobody serve?", &[])
    };
    let events = ask(&app, request).await;
    let failed = first_failed(&events);
    assert!(!failed.will_retry);
    assert_eq!(
        failed.reason, "no bot took the task within 2 s: does a bot serve claude on plan enterprise?",
        "the reason says what to check"
    );
    assert!(matches!(events.last(), Some(Event::Completed(_))), "{events:?}");
    let status: String = sqlx::query_scalar("SELECT status FROM evaluations").fetch_one(&app.pool).await.expect("row");
    assert_eq!(status, "failed");
}

#[tokio::test]
async fn asks_beyond_the_embedding_queue_are_refused_with_resource_exhausted_and_the_rest_answered() {
    // One prompt a pass and two waiting: a burst of new prompts overflows the model's queue.
    let options = Options {
        embedding: aap_embedding::BatchConfig { max_batch: 1, max_queue: 2, ..Default::default() },
        ..Default::default()
    };
    let app = spawn_app_with(options).await;
    let asks = (0..24).map(|i| {
        let mut client = app.answers();
        async move {
            let request = AskRequest {
                policy: SimilarPolicy::ForceNew as i32,
                ..ask_text(&format!("which standing desk fits office {i}?"), &["chatgpt"])
            };
            // No bot runs: an accepted Ask is read until its evaluation is scheduled.
            let mut stream = client.ask(request).await?.into_inner();
            let mut events = Vec::new();
            while let Some(event) = tokio::time::timeout(Duration::from_secs(60), stream.next()).await.expect("events")
            {
                let event = event?.event.and_then(|e| e.event).expect("event body");
                let scheduled = matches!(event, Event::Scheduled(_));
                events.push(event);
                if scheduled {
                    break;
                }
            }
            Ok::<_, tonic::Status>(events)
        }
    });
    let results = futures::future::join_all(asks).await;
    let mut refused = 0;
    let mut answered_prompts = 0;
    for result in &results {
        match result {
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert!(status.message().contains("retry later"), "{}", status.message());
                refused += 1;
            }
            Ok(events) => {
                // The stream of an accepted Ask is whole: matched, then its evaluation scheduled.
                assert_eq!(matched(events).r#match, MatchKind::New as i32);
                assert!(events.iter().any(|e| matches!(e, Event::Scheduled(_))), "{events:?}");
                answered_prompts += 1;
            }
        }
    }
    assert!(refused > 0, "24 concurrent new prompts never filled a queue of 2");
    assert!(answered_prompts >= 1);
    // A refused Ask stored nothing: only the accepted ones have a prompt.
    assert_eq!(app.count("prompts").await, answered_prompts);
}

#[tokio::test]
async fn the_deliveries_of_held_claims_are_kept_alive_and_only_those() {
    let app = spawn_app().await;
    let _stream = app.answers().ask(ask_text("which e-bike suits hills?", &["chatgpt", "claude"])).await.expect("ask");
    let held = poll_task(&app, "chatgpt", "").await;
    // Claimed by a polling bot (no heartbeats): its delivery is one the scheduler keeps alive.
    let subjects = aap_evaluations::store::held_deliveries(&app.pool).await.expect("held deliveries");
    assert_eq!(subjects.len(), 1, "{subjects:?}");
    let (stored,): (String,) = sqlx::query_as("SELECT ack_subject FROM evaluations WHERE id = $1")
        .bind(held.evaluation_id)
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert_eq!(subjects[0], stored);
    // A lapsed claim is the reaper's, not kept alive.
    sqlx::query("UPDATE evaluations SET claim_expires_at = now() - interval '1 second' WHERE id = $1")
        .bind(held.evaluation_id)
        .execute(&app.pool)
        .await
        .expect("lapse");
    assert!(aap_evaluations::store::held_deliveries(&app.pool).await.expect("held").is_empty());
}

/// Asks `text` of ChatGPT with the page HTML, answers it as the bot with `page` as the page, and
/// returns the answer the stream carried.
async fn answered_with_page(app: &TestApp, text: &str, page: &str) -> aap_proto::v1::Answer {
    let request = AskRequest { include_html: true, ..ask_text(text, &["chatgpt"]) };
    let stream = app.answers().ask(request).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(app, "chatgpt", "").await;
    let mut submit = submit_request(task.evaluation_id, "The answer");
    submit.capture.as_mut().expect("capture").response_html = page.to_owned();
    app.evaluations().submit(submit).await.expect("the answer is taken");
    first_answer(&waiting.await.expect("stream"))
}

#[tokio::test]
async fn a_large_page_comes_back_whole_and_one_larger_than_a_message_is_dropped_not_the_answer() {
    let app = spawn_app().await;
    let dropped = || {
        aap_telemetry::metrics::encode()
            .lines()
            .find(|line| line.starts_with("aap_results_html_dropped_total{assistant=\"chatgpt\"}"))
            .map(|line| line.rsplit(' ').next().unwrap_or_default().to_owned())
    };
    // 3.8 MB of page: nats-server's default largest message (1 MiB) refused it, and the bot was
    // told UNAVAILABLE until its claim lapsed; the platform's servers take 8 MiB.
    let page = format!("<div>{}</div>", "<p class=\"x\">a paragraph of the page</p>".repeat(95_000));
    assert!(page.len() > 3_800_000);
    let answer = answered_with_page(&app, "a prompt whose page is large", &page).await;
    assert_eq!(answer.response_text, "The answer");
    assert!(answer.capture.as_ref().expect("capture").response_html == page, "the page comes back whole");
    assert_eq!(dropped(), None, "nothing dropped");

    // 4,000,000 characters (the most a page may have) of three bytes each: 12 MB, more than a
    // message of the results stream carries. The answer is taken without its page.
    let page = "€".repeat(4_000_000);
    let answer = answered_with_page(&app, "a prompt whose page is larger than a message", &page).await;
    assert_eq!(answer.response_text, "The answer");
    assert_eq!(answer.citations.len(), 2, "the rest of the answer is kept");
    assert_eq!(answer.capture.as_ref().expect("capture").response_html, "", "the page is dropped");
    assert_eq!(dropped().as_deref(), Some("1"), "and counted");
    assert_eq!(app.count("answers").await, 2);
}
