//! Answer history and freshness end to end over real PostgreSQL, NATS JetStream and gRPC: a
//! stale answer is served at once and refreshed on the same stream, History lists every answer
//! with the sources each added and dropped, a failed refresh leaves the stale answer, and an
//! answer another model than the plan's gave is asked again until the plan's model answers.

mod common;

use aap_proto::v1::answer_event::Event;
use aap_proto::v1::{AskRequest, HistoryRequest, Target};
use common::*;
use futures::StreamExt;
use tonic::Code;
use tonic_types::StatusExt as _;

fn ago(seconds: i64) -> prost_types::Timestamp {
    let at = chrono::Utc::now() - chrono::Duration::seconds(seconds);
    prost_types::Timestamp { seconds: at.timestamp(), nanos: 0 }
}

fn hours(n: i64) -> prost_types::Duration {
    prost_types::Duration { seconds: n * 3600, nanos: 0 }
}

/// Submits `text` citing `urls`, captured `age_seconds` ago.
async fn submit_cited(app: &TestApp, evaluation_id: i64, text: &str, urls: &[&str], age_seconds: i64) {
    app.evaluations()
        .submit(aap_proto::v1::SubmitRequest {
            evaluation_id,
            response_text: text.into(),
            citations: urls.iter().map(|url| citation(url, "Source")).collect(),
            captured_at: Some(ago(age_seconds)),
            bot_id: "test-bot".into(),
            kind: aap_proto::v1::AnswerKind::Text as i32,
            ..Default::default()
        })
        .await
        .expect("submit");
}

fn ask_aged(prompt: &str, max_age: Option<prost_types::Duration>) -> AskRequest {
    AskRequest { max_age, ..ask_text(prompt, &["chatgpt"]) }
}

/// The events of a stream until `completed` (bounded), answering the one task the stream
/// schedules with `answer` when it is given.
async fn ask_and_answer(app: &TestApp, request: AskRequest, answer: Option<(&str, &[&str])>) -> Vec<Event> {
    let stream = app.answers().ask(request).await.expect("ask").into_inner();
    let events = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    if let Some((text, urls)) = answer {
        let task = poll_task(app, "chatgpt", "").await;
        submit_cited(app, task.evaluation_id, text, urls, 0).await;
    }
    events.await.expect("stream")
}

fn answers(events: &[Event]) -> Vec<(&'static str, String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Cached(a) => Some(("cached", a.response_text.clone(), a.stale)),
            Event::Answer(a) => Some(("answer", a.response_text.clone(), a.stale)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_stale_answer_is_served_then_refreshed_on_the_same_stream_and_history_keeps_both() {
    let app = spawn_app().await;
    let prompt = "Which CRM is best for a small agency?";
    // The first answer, captured two hours ago.
    let stream = app.answers().ask(ask_aged(prompt, None)).await.expect("ask").into_inner();
    let first = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(&app, "chatgpt", "").await;
    submit_cited(&app, task.evaluation_id, "HubSpot", &["https://a.example/crm", "https://b.example/crm"], 7200).await;
    let first = first.await.expect("stream");
    let Some(Event::Matched(m)) = first.first() else { panic!("{first:?}") };
    let prompt_id = m.prompt_id;
    assert_eq!(answers(&first), vec![("answer", "HubSpot".to_owned(), false)]);

    // Without a max age it is the answer, whatever its age.
    let plain = ask_and_answer(&app, ask_aged(prompt, None), None).await;
    assert_eq!(answers(&plain), vec![("cached", "HubSpot".to_owned(), false)]);

    // With a max age of one hour: served at once marked stale, a refresh is scheduled, and its
    // answer follows on the same stream.
    let refreshed = ask_and_answer(
        &app,
        ask_aged(prompt, Some(hours(1))),
        Some(("Pipedrive", &["https://b.example/crm", "https://c.example/crm"])),
    )
    .await;
    assert_eq!(
        answers(&refreshed),
        vec![("cached", "HubSpot".to_owned(), true), ("answer", "Pipedrive".to_owned(), false)],
        "{refreshed:?}"
    );
    let scheduled: Vec<_> = refreshed.iter().filter(|e| matches!(e, Event::Scheduled(_))).collect();
    assert_eq!(scheduled.len(), 1, "{refreshed:?}");
    let Some(Event::Completed(done)) = refreshed.last() else { panic!("{refreshed:?}") };
    assert_eq!((done.answered, done.failed), (1, 0));

    // The fresh answer now serves, with or without a max age; nothing more is scheduled.
    for max_age in [None, Some(hours(1))] {
        let again = ask_and_answer(&app, ask_aged(prompt, max_age), None).await;
        assert_eq!(answers(&again), vec![("cached", "Pipedrive".to_owned(), false)]);
        assert!(!again.iter().any(|e| matches!(e, Event::Scheduled(_))));
    }
    assert_eq!(app.count("answers").await, 2, "the older answer is kept");

    // History: both, oldest first, with the sources each added and dropped.
    let history: Vec<_> = app
        .answers()
        .history(HistoryRequest {
            prompt_id,
            target: Some(Target { assistant: "chatgpt".into(), plan: String::new() }),
            include_html: false,
        })
        .await
        .expect("history")
        .into_inner()
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .map(|r| r.expect("entry"))
        .collect();
    let view: Vec<_> = history
        .iter()
        .map(|h| {
            (
                h.answer.as_ref().map(|a| a.response_text.as_str()),
                h.added_urls.clone(),
                h.dropped_urls.clone(),
                h.current,
            )
        })
        .collect();
    assert_eq!(
        view,
        vec![
            (
                Some("HubSpot"),
                vec!["https://a.example/crm".to_owned(), "https://b.example/crm".to_owned()],
                vec![],
                false
            ),
            (
                Some("Pipedrive"),
                vec!["https://c.example/crm".to_owned()],
                vec!["https://a.example/crm".to_owned()],
                true
            ),
        ]
    );
    // A customer sees no fleet identifiers in the history either.
    assert!(history.iter().all(|h| h.answer.as_ref().is_some_and(|a| a.bot_id.is_empty())));
}

#[tokio::test]
async fn watch_reattaches_to_a_refresh_under_way_and_streams_the_fresh_answer() {
    let app = spawn_app().await;
    let prompt = "Which note-taking app syncs best?";
    let stream = app.answers().ask(ask_aged(prompt, None)).await.expect("ask").into_inner();
    let first = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(&app, "chatgpt", "").await;
    submit_cited(&app, task.evaluation_id, "Obsidian", &["https://a.example/notes"], 7200).await;
    let first = first.await.expect("stream");
    let Some(Event::Matched(m)) = first.first() else { panic!("{first:?}") };
    let prompt_id = m.prompt_id;

    // An Ask with a max age of one hour starts a refresh; its caller then loses the stream and,
    // as the docs say, re-attaches with Watch (which has no max age of its own).
    let stream = app.answers().ask(ask_aged(prompt, Some(hours(1)))).await.expect("ask").into_inner();
    let asked = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let refresh = poll_task(&app, "chatgpt", "").await;
    let watch = aap_proto::v1::WatchRequest { prompt_id, ..Default::default() };
    let stream = app.answers().watch(watch).await.expect("watch").into_inner();
    let watched = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    submit_cited(&app, refresh.evaluation_id, "Notion", &["https://b.example/notes"], 0).await;

    let asked = asked.await.expect("ask stream");
    let watched = watched.await.expect("watch stream");
    let expected = vec![("cached", "Obsidian".to_owned(), true), ("answer", "Notion".to_owned(), false)];
    assert_eq!(answers(&asked), expected, "{asked:?}");
    // The Watch waited for the refresh as the Ask did: the old answer marked stale, then the
    // fresh one (it used to end at once with the old answer, the refresh landing unheard).
    assert_eq!(answers(&watched), expected, "{watched:?}");
    assert!(!watched.iter().any(|e| matches!(e, Event::Scheduled(_))), "Watch schedules nothing: {watched:?}");
    let Some(Event::Completed(done)) = watched.last() else { panic!("{watched:?}") };
    assert_eq!((done.answered, done.failed), (1, 0));

    // Once the refresh has landed, a Watch streams the fresh answer alone, not stale.
    let watch = aap_proto::v1::WatchRequest { prompt_id, ..Default::default() };
    let stream = app.answers().watch(watch).await.expect("watch").into_inner();
    let after = collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))).await;
    assert_eq!(answers(&after), vec![("cached", "Notion".to_owned(), false)], "{after:?}");
}

/// Submits `text` as the answer of another model than the plan's (`fallback`: chatgpt.com's
/// "Responses will use another model until your limit resets") or of the plan's own.
async fn submit_from_model(app: &TestApp, evaluation_id: i64, text: &str, fallback: bool) {
    let mut request = submit_request(evaluation_id, text);
    request.capture.as_mut().expect("capture").model_fallback = fallback;
    app.evaluations().submit(request).await.expect("submit");
}

/// The events of a stream until `completed` (bounded), answering the one task it schedules with
/// `text`, from another model than the plan's when `fallback`.
async fn ask_and_answer_from(app: &TestApp, prompt: &str, answer: Option<(&str, bool)>) -> Vec<Event> {
    let stream = app.answers().ask(ask_aged(prompt, None)).await.expect("ask").into_inner();
    let events = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    if let Some((text, fallback)) = answer {
        let task = poll_task(app, "chatgpt", "").await;
        submit_from_model(app, task.evaluation_id, text, fallback).await;
    }
    events.await.expect("stream")
}

/// An answer another model than the plan's gave is never taken for the plan's answer, however
/// fresh and whatever the max age: it is streamed marked stale, and the next Ask serves it at
/// once and asks again, until the plan's model has answered; a Watch meanwhile streams it stale
/// and ends.
#[tokio::test]
async fn an_answer_from_another_model_is_asked_again_until_the_plans_model_answers() {
    let app = spawn_app().await;
    let prompt = "Which standing desk is the sturdiest?";
    let first = ask_and_answer_from(&app, prompt, Some(("The Flexispot E7 (gpt-5-mini)", true))).await;
    assert_eq!(answers(&first), vec![("answer", "The Flexispot E7 (gpt-5-mini)".to_owned(), true)], "{first:?}");
    let Some(Event::Matched(m)) = first.first() else { panic!("{first:?}") };
    let prompt_id = m.prompt_id;
    let Some(Event::Completed(done)) = first.last() else { panic!("{first:?}") };
    assert_eq!((done.answered, done.failed), (1, 0), "it answers the target meanwhile");

    // A Watch, which schedules nothing, streams it stale and ends.
    let watch = aap_proto::v1::WatchRequest { prompt_id, ..Default::default() };
    let stream = app.answers().watch(watch).await.expect("watch").into_inner();
    let watched = collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))).await;
    assert_eq!(answers(&watched), vec![("cached", "The Flexispot E7 (gpt-5-mini)".to_owned(), true)]);

    // Asked again with no max age (the answer is a second old): served at once, stale, and asked
    // again; another model answers again, and that answer is stale too.
    let again = ask_and_answer_from(&app, prompt, Some(("The Uplift V2 (gpt-5-mini)", true))).await;
    assert_eq!(
        answers(&again),
        vec![
            ("cached", "The Flexispot E7 (gpt-5-mini)".to_owned(), true),
            ("answer", "The Uplift V2 (gpt-5-mini)".to_owned(), true)
        ],
        "{again:?}"
    );
    assert_eq!(again.iter().filter(|e| matches!(e, Event::Scheduled(_))).count(), 1, "{again:?}");
    assert!(first_answer(&again).capture.expect("capture").model_fallback);

    // Then the plan's model answers the next refresh: its answer is fresh.
    let plan = ask_and_answer_from(&app, prompt, Some(("The Uplift V2", false))).await;
    assert_eq!(
        answers(&plan),
        vec![("cached", "The Uplift V2 (gpt-5-mini)".to_owned(), true), ("answer", "The Uplift V2".to_owned(), false)],
        "{plan:?}"
    );
    // And serves from then on, nothing more scheduled, kept in memory or read.
    for _ in 0..2 {
        let settled = ask_and_answer_from(&app, prompt, None).await;
        assert_eq!(answers(&settled), vec![("cached", "The Uplift V2".to_owned(), false)], "{settled:?}");
        assert!(!settled.iter().any(|e| matches!(e, Event::Scheduled(_))), "{settled:?}");
    }
    assert_eq!(app.count("answers").await, 3, "every answer is kept");
    assert_eq!(app.count("evaluations").await, 3);
}

#[tokio::test]
async fn a_failed_refresh_leaves_the_stale_answer_as_the_answer() {
    let app = spawn_app().await;
    let prompt = "Is a standing desk worth it?";
    let stream = app.answers().ask(ask_aged(prompt, None)).await.expect("ask").into_inner();
    let first = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(&app, "chatgpt", "").await;
    submit_cited(&app, task.evaluation_id, "Yes, if you alternate", &["https://a.example/desk"], 600).await;
    first.await.expect("stream");

    // max_age zero: every stored answer is stale.
    let stream =
        app.answers().ask(ask_aged(prompt, Some(prost_types::Duration::default()))).await.expect("ask").into_inner();
    let events = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    fail_next_task(&app, "chatgpt", "login wall").await;
    let events = events.await.expect("stream");
    assert_eq!(answers(&events), vec![("cached", "Yes, if you alternate".to_owned(), true)], "{events:?}");
    assert!(events.iter().any(|e| matches!(e, Event::Failed(f) if f.reason.contains("login wall") && !f.will_retry)));
    let Some(Event::Completed(done)) = events.last() else { panic!("{events:?}") };
    assert_eq!((done.answered, done.failed), (1, 0), "the stale answer still answers the target");
}

#[tokio::test]
async fn history_and_max_age_refuse_bad_input() {
    let app = spawn_app().await;
    let history = |prompt_id: i64, assistant: &str, plan: &str| {
        let mut client = app.answers();
        let request = HistoryRequest {
            prompt_id,
            target: Some(Target { assistant: assistant.into(), plan: plan.into() }),
            include_html: false,
        };
        async move {
            let refused = client.history(request).await.map(|_| ()).expect_err("refused");
            let field = refused.get_details_bad_request().and_then(|b| b.field_violations.into_iter().next());
            (refused.code(), field.map(|v| v.field).unwrap_or_default())
        }
    };
    let invalid = |field: &str| (Code::InvalidArgument, field.to_owned());
    assert_eq!(history(42, "chatgpt", "").await, (Code::NotFound, String::new()));
    assert_eq!(history(42, "", "").await, invalid("target.assistant"));
    assert_eq!(history(42, "altavista", "").await, invalid("target.assistant"));
    assert_eq!(history(42, "chatgpt", "pl\0us").await, invalid("target.plan"));
    assert_eq!(
        app.answers().history(HistoryRequest::default()).await.map(|_| ()).expect_err("refused").code(),
        Code::InvalidArgument
    );

    for (max_age, says) in [
        (prost_types::Duration { seconds: -1, nanos: 0 }, "negative"),
        (prost_types::Duration { seconds: 0, nanos: -5 }, "nanos -5 is outside [0, 999999999]"),
        (prost_types::Duration { seconds: 0, nanos: 2_000_000_000 }, "nanos 2000000000 is outside"),
        (prost_types::Duration { seconds: i64::MAX, nanos: 0 }, "the limit is"),
    ] {
        let refused = app.answers().ask(ask_aged("fine prompt", Some(max_age))).await.map(|_| ()).expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{max_age:?}");
        assert!(refused.message().contains("max_age"), "{}", refused.message());
        assert!(refused.message().contains(says), "{max_age:?}: {}", refused.message());
    }
    assert_eq!(app.count("prompts").await, 0, "a refused Ask stores nothing");
}

#[tokio::test]
async fn an_operator_schedules_a_refresh_of_a_prompt_set_and_it_runs() {
    let app = spawn_app().await;
    let prompt = "Which password manager is the most secure?";
    let stream = app.answers().ask(ask_aged(prompt, None)).await.expect("ask").into_inner();
    let first = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(&app, "chatgpt", "").await;
    submit_cited(&app, task.evaluation_id, "Bitwarden", &["https://a.example/pm"], 60).await;
    let first = first.await.expect("stream");
    let Some(Event::Matched(m)) = first.first() else { panic!("{first:?}") };
    let prompt_id = m.prompt_id;

    let request = aap_proto::v1::ScheduleRefreshRequest {
        name: "weekly security".into(),
        prompt_ids: vec![prompt_id, prompt_id],
        targets: vec![Target { assistant: "chatgpt".into(), plan: String::new() }],
        every: Some(hours(24 * 7)),
        run_now: true,
    };
    // Customers may not schedule refreshes; operators may.
    let refused = app.answers().schedule_refresh(request.clone()).await.expect_err("customer refused");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let saved = app
        .answers_as(OPERATOR)
        .schedule_refresh(request)
        .await
        .expect("schedule")
        .into_inner()
        .schedule
        .expect("the saved schedule");
    assert_eq!((saved.name.as_str(), saved.prompt_ids.as_slice()), ("weekly security", &[prompt_id][..]));
    assert_eq!(saved.created_by, OPERATOR_NAME);

    // It runs at once: a refresh task reaches the fleet, and its answer supersedes the first.
    let task = poll_task(&app, "chatgpt", "").await;
    assert_eq!(task.prompt_id, prompt_id);
    submit_cited(&app, task.evaluation_id, "1Password", &["https://b.example/pm"], 0).await;
    // The ingest stores what was submitted after the submit returns: an Ask before that finds
    // the refresh live and gets its answer as it lands (`answer`), not as stored (`cached`).
    let mut stored = app.count("answers").await;
    for _ in 0..200 {
        if stored == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        stored = app.count("answers").await;
    }
    assert_eq!(stored, 2, "the refresh's answer is stored within 10 s");
    let latest = ask_and_answer(&app, ask_aged(prompt, None), None).await;
    assert_eq!(answers(&latest), vec![("cached", "1Password".to_owned(), false)]);
    assert_eq!(app.count("answers").await, 2);

    let listed = app
        .answers_as(OPERATOR)
        .list_refresh_schedules(aap_proto::v1::ListRefreshSchedulesRequest {})
        .await
        .expect("list")
        .into_inner()
        .schedules;
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_run_at.is_some(), "{listed:?}");
    let next = listed[0].next_run_at.expect("next run").seconds;
    let week = chrono::Utc::now().timestamp() + 7 * 24 * 3600;
    assert!((week - 120..=week + 120).contains(&next), "next run in a week: {next} vs {week}");

    // Bad schedules are refused with the field named; deleting twice is NOT_FOUND.
    let bad = [
        (aap_proto::v1::ScheduleRefreshRequest { name: String::new(), ..Default::default() }, "name"),
        (aap_proto::v1::ScheduleRefreshRequest { name: "x".into(), ..Default::default() }, "prompt_ids"),
        (
            aap_proto::v1::ScheduleRefreshRequest {
                name: "x".into(),
                prompt_ids: vec![prompt_id, 0],
                every: Some(hours(1)),
                ..Default::default()
            },
            "invalid prompt_ids: 0 is not a prompt id",
        ),
        (
            aap_proto::v1::ScheduleRefreshRequest {
                name: "x".into(),
                prompt_ids: vec![prompt_id],
                ..Default::default()
            },
            "every",
        ),
        (
            aap_proto::v1::ScheduleRefreshRequest {
                name: "x".into(),
                prompt_ids: vec![prompt_id],
                every: Some(prost_types::Duration { seconds: 59, nanos: 0 }),
                ..Default::default()
            },
            "every",
        ),
        (
            aap_proto::v1::ScheduleRefreshRequest {
                name: "x".into(),
                prompt_ids: vec![prompt_id],
                every: Some(prost_types::Duration { seconds: -3600, nanos: 0 }),
                ..Default::default()
            },
            "-3600s is negative",
        ),
        (
            aap_proto::v1::ScheduleRefreshRequest {
                name: "x".into(),
                prompt_ids: vec![prompt_id],
                every: Some(prost_types::Duration { seconds: 3600, nanos: -5 }),
                ..Default::default()
            },
            "nanos -5 is outside [0, 999999999]",
        ),
        (
            aap_proto::v1::ScheduleRefreshRequest {
                name: "x\0y".into(),
                prompt_ids: vec![prompt_id],
                every: Some(hours(1)),
                ..Default::default()
            },
            "name",
        ),
    ];
    for (request, field) in bad {
        let refused = app.answers_as(OPERATOR).schedule_refresh(request).await.expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{field}: {}", refused.message());
        assert!(refused.message().contains(field), "{field}: {}", refused.message());
    }
    let unknown = aap_proto::v1::ScheduleRefreshRequest {
        name: "ghost".into(),
        prompt_ids: vec![prompt_id + 1000],
        every: Some(hours(1)),
        ..Default::default()
    };
    assert_eq!(app.answers_as(OPERATOR).schedule_refresh(unknown).await.expect_err("refused").code(), Code::NotFound);
    let delete = || aap_proto::v1::DeleteRefreshScheduleRequest { name: "weekly security".into() };
    app.answers_as(OPERATOR).delete_refresh_schedule(delete()).await.expect("delete");
    let again = app.answers_as(OPERATOR).delete_refresh_schedule(delete()).await.expect_err("gone");
    assert_eq!(again.code(), Code::NotFound);
}
