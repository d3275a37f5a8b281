//! The seed's HTTP polling API, byte for byte, over a real platform.

mod common;

use common::*;
use futures::StreamExt;

async fn post(app: &TestApp, path: &str, token: Option<&str>, body: &str) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut request = client
        .post(format!("{}/evaluations/api/v1/{path}", app.http_url))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.expect("http");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn empty_poll_answers_the_seeds_all_null_body() {
    let app = spawn_app().await;
    let (status, body) = post(&app, "poll", Some(BOT), r#"{"assistant_name": "ChatGPT", "plan_name": "Plus"}"#).await;
    assert_eq!(status, 200);
    assert_eq!(body, r#"{"evaluation_id":null,"prompt_id":null,"prompt_text":null,"topic_id":null,"claimed_at":null}"#);
}

#[tokio::test]
async fn a_polling_bot_claims_submits_and_the_answer_streams() {
    let app = spawn_app().await;
    let prompt = "What are the best laptops under $1,000?";
    let stream = app.answers().ask(ask_text(prompt, &["chatgpt"])).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));

    let mut claimed = None;
    for _ in 0..100 {
        let (status, body) =
            post(&app, "poll", Some(BOT), r#"{"assistant_name": "ChatGPT", "plan_name": "Plus"}"#).await;
        assert_eq!(status, 200);
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        if !json["evaluation_id"].is_null() {
            claimed = Some((json, body));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (json, body) = claimed.expect("a task was polled");
    let keys: Vec<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(keys, ["evaluation_id", "prompt_id", "prompt_text", "topic_id", "claimed_at"], "{body}");
    assert_eq!(json["prompt_text"], prompt);
    let claimed_at = json["claimed_at"].as_str().expect("claimed_at");
    assert!(claimed_at.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(claimed_at).is_ok(), "{claimed_at}");
    let id = json["evaluation_id"].as_i64().expect("id");

    let submit = format!(
        r#"{{"evaluation_id": {id}, "answer": {{"response": "Here are excellent laptops under $1,000...",
            "citations": [{{"url": "https://example.com/laptop-review?utm_source=chatgpt.com", "text": "TechRadar: Best Budget Laptops 2025"}}],
            "timestamp": "2025-12-09T10:35:00Z"}}}}"#
    );
    let (status, body) = post(&app, "submit", Some(BOT), &submit).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, format!(r#"{{"evaluation_id":{id},"status":"submitted"}}"#));

    let events = waiting.await.expect("stream");
    let answer = first_answer(&events);
    assert_eq!(answer.response_text, "Here are excellent laptops under $1,000...");
    assert_eq!(answer.citations[0].url, "https://example.com/laptop-review");
    assert_eq!(answer.citations[0].title, "TechRadar: Best Budget Laptops 2025");
    assert_eq!(answer.captured_at.expect("captured_at").seconds, 1_765_276_500);

    // The seed's release of a finished evaluation is refused and changes nothing.
    let (status, _) = post(
        &app,
        "release",
        Some(BOT),
        &format!(r#"{{"evaluation_id": {id}, "mark_as_failed": true, "failure_reason": "x"}}"#),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(app.count("answers").await, 1);
}

#[tokio::test]
async fn release_answers_the_seeds_body() {
    let app = spawn_app().await;
    let _stream = app.answers().ask(ask_text("Best hiking boots?", &["chatgpt"])).await.expect("ask");
    let task = poll_task(&app, "chatgpt", "Plus").await;
    let body = format!(
        r#"{{"evaluation_id": {}, "mark_as_failed": true, "failure_reason": "No citations found after 3 attempts"}}"#,
        task.evaluation_id
    );
    let (status, reply) = post(&app, "release", Some(BOT), &body).await;
    assert_eq!(status, 200);
    assert_eq!(reply, format!(r#"{{"evaluation_id":{},"action":"released"}}"#, task.evaluation_id));
}

#[tokio::test]
async fn bad_requests_are_refused_with_a_detail() {
    let app = spawn_app().await;
    let poll = r#"{"assistant_name": "ChatGPT", "plan_name": "Plus"}"#;
    assert_eq!(post(&app, "poll", None, poll).await.0, 401);
    assert_eq!(post(&app, "poll", Some("nope"), poll).await.0, 401);
    assert_eq!(post(&app, "poll", Some(CUSTOMER), poll).await.0, 403);
    // The token is checked before the body is read: a caller without one learns nothing from
    // validation (401, not 422), whatever it sends.
    for path in ["poll", "submit", "release"] {
        let (status, reply) = post(&app, path, None, "{not json").await;
        assert_eq!(status, 401, "{path}: {reply}");
        assert!(reply.starts_with(r#"{"detail":"#), "{path}: {reply}");
        assert_eq!(post(&app, path, Some(CUSTOMER), "{not json").await.0, 403, "{path}");
    }
    for (path, body) in [
        ("poll", "{not json"),
        ("poll", r#"{"assistant_name": 7, "plan_name": "Plus"}"#),
        ("poll", r#"{"plan_name": "Plus"}"#),
        ("poll", r#"{"assistant_name": "Bard", "plan_name": "Plus"}"#),
        (
            "submit",
            r#"{"evaluation_id": "12", "answer": {"response": "x", "citations": [], "timestamp": "2025-12-09T10:35:00Z"}}"#,
        ),
        ("submit", r#"{"evaluation_id": 12, "answer": {"response": "x", "citations": [], "timestamp": "yesterday"}}"#),
        ("release", r#"{"evaluation_id": 12}"#),
    ] {
        let (status, reply) = post(&app, path, Some(BOT), body).await;
        assert_eq!(status, 422, "{path} {body}: {reply}");
        let json: serde_json::Value = serde_json::from_str(&reply).expect("json error body");
        assert!(json["detail"].is_string(), "{reply}");
    }
    // The detail names the field where the body went wrong, or the place of a body cut short or
    // broken between fields (never a field "?": a body cut inside its second key once said
    // "invalid ?: EOF ...").
    for (body, detail) in [
        (r#"{"assistant_name": 7, "plan_name": "Plus"}"#, "invalid assistant_name: invalid type: integer `7`"),
        (r#"{"assistant_name": "ChatGPT", "pla"#, "invalid JSON body: EOF while parsing a string at line 1 column 34"),
        (r#"{"assistant_name": "ChatGPT", "plan_name": }"#, "invalid plan_name: expected value at line 1 column 44"),
        (r#"{"assistant_name": "ChatGPT", "plan_name": "Plus", 7: 1}"#, "invalid JSON body: key must be a string"),
        ("{not json", "invalid JSON body: key must be a string at line 1 column 2"),
    ] {
        let (status, reply) = post(&app, "poll", Some(BOT), body).await;
        let json: serde_json::Value = serde_json::from_str(&reply).expect("json error body");
        let said = json["detail"].as_str().unwrap_or_default();
        assert!(status == 422 && said.starts_with(detail), "{body}: {status} {reply}");
    }
    let unknown = r#"{"evaluation_id": 424242, "answer": {"response": "x", "citations": [], "timestamp": "2025-12-09T10:35:00Z"}}"#;
    assert_eq!(post(&app, "submit", Some(BOT), unknown).await.0, 404);
    let unknown = r#"{"evaluation_id": 424242, "mark_as_failed": true, "failure_reason": "x"}"#;
    assert_eq!(post(&app, "release", Some(BOT), unknown).await.0, 404);
    assert_eq!(app.count("answers").await, 0);
}

/// A POST as the seed's Python bot may send it: no Content-Type header at all.
async fn post_bare(app: &TestApp, path: &str, body: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}/evaluations/api/v1/{path}", app.http_url))
        .header("authorization", format!("Bearer {BOT}"))
        .body(body.to_owned())
        .send()
        .await
        .expect("http");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

#[tokio::test]
async fn what_the_seeds_python_bot_sends_is_taken_naive_timestamps_extra_fields_no_content_type() {
    let app = spawn_app().await;
    let stream = app.answers().ask(ask_text("Which kettle boils fastest?", &["chatgpt"])).await.expect("ask");
    let waiting = tokio::spawn(collect(stream.into_inner().map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let poll = r#"{"assistant_name": "ChatGPT", "plan_name": "Plus", "bot_version": "1.4.2"}"#;
    let mut id = None;
    for _ in 0..100 {
        let (status, body) = post_bare(&app, "poll", poll).await;
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        if let Some(found) = json["evaluation_id"].as_i64() {
            id = Some(found);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let id = id.expect("a task was polled");
    // Python's datetime.now().isoformat(): no offset, microseconds; read as UTC.
    let submit = format!(
        r#"{{"evaluation_id": {id}, "session_file": "plus-1.json", "answer": {{"response": "The Breville.",
            "citations": [{{"url": "https://example.com/kettles", "text": "Kettles", "rank": 1}}],
            "timestamp": "2025-12-09T10:35:00.123456"}}}}"#
    );
    let (status, reply) = post_bare(&app, "submit", &submit).await;
    assert_eq!((status, reply.as_str()), (200, format!(r#"{{"evaluation_id":{id},"status":"submitted"}}"#).as_str()));
    let events = waiting.await.expect("stream task");
    let answer = first_answer(&events);
    let captured = answer.captured_at.expect("captured_at");
    assert_eq!(
        chrono::DateTime::from_timestamp(captured.seconds, captured.nanos as u32).map(|t| t.to_rfc3339()),
        Some("2025-12-09T10:35:00.123456+00:00".to_owned()),
        "a naive timestamp is UTC"
    );
    // A body declared as something other than JSON is still refused, with a detail.
    let response = reqwest::Client::new()
        .post(format!("{}/evaluations/api/v1/poll", app.http_url))
        .header("authorization", format!("Bearer {BOT}"))
        .header("content-type", "text/plain")
        .body(poll)
        .send()
        .await
        .expect("http");
    assert_eq!(response.status().as_u16(), 415);
    assert!(response.text().await.expect("body").starts_with(r#"{"detail":"#));
}

/// Polls with `post` until a task comes; returns its evaluation id.
async fn poll_seed_task(app: &TestApp, token: Option<&str>) -> i64 {
    for _ in 0..200 {
        let (status, body) = post(app, "poll", token, r#"{"assistant_name": "ChatGPT", "plan_name": "Plus"}"#).await;
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        if let Some(id) = json["evaluation_id"].as_i64() {
            return id;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no task was polled");
}

#[tokio::test]
async fn token_less_seed_bots_are_admitted_from_allowed_networks_only_each_its_own_principal() {
    let allowed = Options {
        seed_http_networks: aap_platform::auth::Networks::parse("10.0.0.0/8, 127.0.0.1").expect("networks"),
        ..Options::default()
    };
    let app = spawn_app_with(allowed).await;
    let stream = app.answers().ask(ask_text("Which tent survives a storm?", &["chatgpt"])).await.expect("ask");
    let waiting = tokio::spawn(collect(stream.into_inner().map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let id = poll_seed_task(&app, None).await;
    let (principal,): (Option<String>,) = sqlx::query_as("SELECT claimed_principal FROM evaluations WHERE id = $1")
        .bind(id)
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert_eq!(principal.as_deref(), Some("seed-127.0.0.1"), "the host is the principal");
    // A token-holding bot is another principal: it cannot answer the host's claim.
    let submit = format!(
        r#"{{"evaluation_id": {id}, "answer": {{"response": "A tunnel tent.", "citations": [], "timestamp": "2026-12-02T10:00:00"}}}}"#
    );
    let (status, body) = post(&app, "submit", Some(BOT), &submit).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post(&app, "submit", None, &submit).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(first_answer(&waiting.await.expect("stream")).response_text, "A tunnel tent.");
    // A wrong token is never excused by the network.
    let (status, _) = post(&app, "poll", Some("wrong"), r#"{"assistant_name": "ChatGPT", "plan_name": "Plus"}"#).await;
    assert_eq!(status, 401);

    let elsewhere = Options {
        seed_http_networks: aap_platform::auth::Networks::parse("10.0.0.0/8").expect("networks"),
        ..Options::default()
    };
    let app = spawn_app_with(elsewhere).await;
    let (status, body) = post(&app, "poll", None, r#"{"assistant_name": "ChatGPT", "plan_name": "Plus"}"#).await;
    assert_eq!(status, 401, "127.0.0.1 is not in 10.0.0.0/8: {body}");
}

#[tokio::test]
async fn a_different_answer_after_one_was_taken_is_a_conflict_and_an_exact_repeat_succeeds() {
    let app = spawn_app().await;
    let stream = app.answers().ask(ask_text("Which headlamp is brightest?", &["chatgpt"])).await.expect("ask");
    let waiting = tokio::spawn(collect(stream.into_inner().map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let id = poll_seed_task(&app, Some(BOT)).await;
    let body = |response: &str, url: &str| {
        format!(
            r#"{{"evaluation_id": {id}, "answer": {{"response": "{response}", "citations": [{{"url": "{url}"}}], "timestamp": "2026-12-02T10:00:00Z"}}}}"#
        )
    };
    let first = body("The Fenix HM75R.", "https://example.com/a");
    let (status, reply) = post(&app, "submit", Some(BOT), &first).await;
    assert_eq!(status, 200, "{reply}");
    for other in [body("The Petzl Swift.", "https://example.com/a"), body("The Fenix HM75R.", "https://example.com/b")]
    {
        let (status, reply) = post(&app, "submit", Some(BOT), &other).await;
        assert_eq!(status, 409, "{reply}");
        assert!(reply.contains("a different answer was submitted already"), "{reply}");
    }
    assert_eq!(first_answer(&waiting.await.expect("stream")).response_text, "The Fenix HM75R.");
    let (status, reply) = post(&app, "submit", Some(BOT), &first).await;
    assert_eq!(status, 200, "the seed bot's retry: {reply}");
    assert_eq!(app.count("answers").await, 1);
}
