//! Live partial answers over real PostgreSQL and NATS: what the gateway's Progress takes and
//! refuses, and how Ask and Watch streams show the text so far until the answer.

mod common;

use std::time::Duration;

use aap_evaluations::partial::PartialMessage;
use aap_proto::v1::answer_event::Event;
use aap_proto::v1::{AnswerEvent, ProgressRequest, ReleaseRequest, WatchRequest};
use common::*;
use futures::{Stream, StreamExt};
use tonic::Code;

type Events = std::pin::Pin<Box<dyn Stream<Item = Event> + Send>>;

/// A stream's events, each unwrapped (a broken stream fails the test).
fn events<T: Send + 'static>(
    stream: tonic::Streaming<T>,
    event: impl Fn(T) -> Option<AnswerEvent> + Send + 'static,
) -> Events {
    Box::pin(stream.map(move |r| event(r.expect("event")).and_then(|e| e.event).expect("event body")))
}

/// The stream's next event (bounded, so a broken test fails rather than hangs).
async fn next(events: &mut Events) -> Event {
    tokio::time::timeout(Duration::from_secs(60), events.next())
        .await
        .expect("an event within a minute")
        .expect("the stream goes on")
}

/// Every event up to the stream's end.
async fn rest(events: &mut Events) -> Vec<Event> {
    let mut all = Vec::new();
    while let Some(e) = tokio::time::timeout(Duration::from_secs(60), events.next()).await.expect("the stream ends") {
        all.push(e);
    }
    all
}

/// Progress as the bot `bot_id`: whether the task is still held, or the refusal's code.
async fn progress(app: &TestApp, evaluation_id: i64, bot_id: &str, text: &str) -> Result<bool, Code> {
    let request =
        ProgressRequest { evaluation_id, bot_id: bot_id.into(), text: text.into(), ..ProgressRequest::default() };
    app.evaluations().progress(request).await.map(|r| r.into_inner().held).map_err(|s| s.code())
}

#[tokio::test]
async fn progress_refuses_bad_input_and_other_bots_and_says_when_the_task_is_no_longer_held() {
    let app = spawn_app().await;
    let _asked = app.answers().ask(ask_text("Which rowing machine is quietest?", &["chatgpt"])).await.expect("ask");
    let task = poll_task(&app, "chatgpt", "").await;
    let id = task.evaluation_id;

    assert_eq!(progress(&app, id, "test-bot", "nul \0 inside").await, Err(Code::InvalidArgument));
    assert_eq!(progress(&app, id, "test-bot", "a bell \u{7}").await, Err(Code::InvalidArgument));
    let huge = "x".repeat(aap_evaluations::gateway::MAX_RESPONSE_CHARS + 1);
    assert_eq!(progress(&app, id, "test-bot", &huge).await, Err(Code::InvalidArgument));
    assert_eq!(progress(&app, id, "bot\u{1b}[31m", "text").await, Err(Code::InvalidArgument));
    assert_eq!(progress(&app, 0, "test-bot", "text").await, Err(Code::InvalidArgument));
    assert_eq!(progress(&app, id + 1000, "test-bot", "text").await, Err(Code::NotFound));
    assert_eq!(progress(&app, id, "another-bot", "text").await, Err(Code::PermissionDenied));
    // Paragraphs and tabs are text, not control characters to refuse.
    assert_eq!(progress(&app, id, "test-bot", "So far:\n\n\tone").await, Ok(true));

    app.evaluations()
        .release(ReleaseRequest { evaluation_id: id, bot_id: "test-bot".into(), ..ReleaseRequest::default() })
        .await
        .expect("release");
    assert_eq!(progress(&app, id, "test-bot", "still typing").await, Ok(false), "released: stop reporting");
    assert_eq!(app.count("answers").await, 0, "a partial is never an answer");
}

#[tokio::test]
async fn ask_and_watch_streams_show_the_text_so_far_until_the_answer_and_nothing_of_it_is_stored() {
    let app = spawn_app().await;
    let prompt = "Which standing desk suits a small flat?";
    let ask = app.answers().ask(ask_text(prompt, &["chatgpt", "claude"])).await.expect("ask").into_inner();
    let mut asked = events(ask, |r| r.event);
    let Event::Matched(matched) = next(&mut asked).await else { panic!("matched first") };
    let prompt_id = matched.prompt_id;
    let chatgpt = poll_task(&app, "chatgpt", "").await;
    let claude = poll_task(&app, "claude", "").await;
    // The first event says the stream follows the prompt, partials included.
    let watch = app.answers().watch(WatchRequest { prompt_id, ..WatchRequest::default() }).await.expect("watch");
    let mut watched = events(watch.into_inner(), |r| r.event);
    assert!(matches!(next(&mut watched).await, Event::Matched(_)));

    let typed = ["The best", "The best standing desks", "The best standing desks for a small flat are"];
    for text in typed {
        assert_eq!(progress(&app, chatgpt.evaluation_id, "test-bot", text).await, Ok(true));
    }
    for (name, stream) in [("ask", &mut asked), ("watch", &mut watched)] {
        let mut seen = Vec::new();
        while seen.len() < typed.len() {
            if let Event::Partial(p) = next(stream).await {
                assert_eq!((p.evaluation_id, p.assistant.as_str()), (chatgpt.evaluation_id, "chatgpt"), "{name}");
                seen.push(p.text);
            }
        }
        assert_eq!(seen, typed, "{name}: each partial is the whole text so far, in order");
    }

    submit(&app, chatgpt.evaluation_id, "The best standing desks for a small flat are compact").await.expect("submit");
    assert_eq!(progress(&app, chatgpt.evaluation_id, "test-bot", "late").await, Ok(false), "answered: not held");
    for stream in [&mut asked, &mut watched] {
        while !matches!(next(stream).await, Event::Answer(_)) {}
    }
    // A late partial of the answered target (another gateway replica may still trust the claim
    // for a moment), then one of the target still typing, in this order on one connection.
    let nats = async_nats::connect(&app.nats_url).await.expect("nats");
    let subject = format!("{}.events.prompt.{prompt_id}.partial", app.nats_prefix);
    let late = PartialMessage {
        evaluation_id: chatgpt.evaluation_id,
        assistant: "chatgpt".into(),
        plan: chatgpt.plan.clone(),
        text: "a late partial".into(),
        ..PartialMessage::default()
    };
    let typing = PartialMessage {
        evaluation_id: claude.evaluation_id,
        assistant: "claude".into(),
        plan: claude.plan.clone(),
        text: "Claude types".into(),
        ..PartialMessage::default()
    };
    for message in [&late, &typing] {
        nats.publish(subject.clone(), serde_json::to_vec(message).expect("json").into()).await.expect("publish");
    }
    nats.flush().await.expect("flush");
    for stream in [&mut asked, &mut watched] {
        let Event::Partial(p) = next(stream).await else { panic!("the partial of the target still typing") };
        assert_eq!((p.assistant.as_str(), p.text.as_str()), ("claude", "Claude types"), "never the late one");
    }

    submit(&app, claude.evaluation_id, "Claude's answer").await.expect("submit");
    for stream in [&mut asked, &mut watched] {
        let tail = rest(stream).await;
        assert!(matches!(tail.last(), Some(Event::Completed(c)) if c.answered == 2), "{tail:?}");
        let last_answer = tail.iter().rposition(|e| matches!(e, Event::Answer(_))).expect("claude's answer");
        assert!(!tail[last_answer..].iter().any(|e| matches!(e, Event::Partial(_))), "{tail:?}");
    }
    // Only the answers are stored: one per evaluation, the final text.
    assert_eq!(app.count("answers").await, 2);
    let (text,): (String,) = sqlx::query_as("SELECT response_text FROM answers WHERE evaluation_id = $1")
        .bind(chatgpt.evaluation_id)
        .fetch_one(&app.pool)
        .await
        .expect("answer");
    assert_eq!(text, "The best standing desks for a small flat are compact");
}

/// Progress with what the bot waits for (and until when) as the bot `bot_id`.
async fn waiting(
    app: &TestApp,
    evaluation_id: i64,
    text: &str,
    waiting: &str,
    until: Option<prost_types::Timestamp>,
) -> Result<bool, Code> {
    let request = ProgressRequest {
        evaluation_id,
        bot_id: "test-bot".into(),
        text: text.into(),
        waiting: waiting.into(),
        waiting_until: until,
    };
    app.evaluations().progress(request).await.map(|r| r.into_inner().held).map_err(|s| s.code())
}

/// A bot that holds a task but cannot ask yet (no account free) says so: the prompt's streams
/// show a progress event with its words and until when, then the text as it types and the
/// answer. A wait given with text, on two lines, past its length, or a time without words, is
/// refused.
#[tokio::test]
async fn a_bot_that_waits_before_it_can_ask_says_so_on_the_prompts_streams() {
    let app = spawn_app().await;
    let ask = app.answers().ask(ask_text("Which kettle is quietest?", &["chatgpt"])).await.expect("ask").into_inner();
    let mut asked = events(ask, |r| r.event);
    assert!(matches!(next(&mut asked).await, Event::Matched(_)));
    let task = poll_task(&app, "chatgpt", "").await;
    let id = task.evaluation_id;

    let said = "no account is free: every account of chatgpt is at its hourly budget; the next frees up at 14:05:00";
    let until = prost_types::Timestamp { seconds: 1_796_000_000, nanos: 0 };
    assert_eq!(waiting(&app, id, "typed", said, None).await, Err(Code::InvalidArgument), "text or a wait");
    assert_eq!(waiting(&app, id, "", "one\ntwo", None).await, Err(Code::InvalidArgument));
    assert_eq!(waiting(&app, id, "", "nul \0", None).await, Err(Code::InvalidArgument));
    let long = "w".repeat(aap_proto::limits::MAX_WAITING_CHARS + 1);
    assert_eq!(waiting(&app, id, "", &long, None).await, Err(Code::InvalidArgument));
    assert_eq!(waiting(&app, id, "", "", Some(until)).await, Err(Code::InvalidArgument), "a time needs its words");
    let bad_nanos = prost_types::Timestamp { seconds: 1, nanos: -1 };
    assert_eq!(waiting(&app, id, "", said, Some(bad_nanos)).await, Err(Code::InvalidArgument));
    assert_eq!(waiting(&app, id, "", said, Some(until)).await, Ok(true));

    let told = loop {
        match next(&mut asked).await {
            Event::Progress(p) if !p.waiting.is_empty() => break p,
            Event::Partial(p) => panic!("a wait is no partial answer: {p:?}"),
            _ => {}
        }
    };
    assert_eq!((told.evaluation_id, told.assistant.as_str(), told.waiting.as_str()), (id, "chatgpt", said));
    assert_eq!((told.state, told.attempt), (aap_proto::v1::EvaluationState::Claimed as i32, 1));
    assert_eq!(told.waiting_until, Some(until));

    assert_eq!(progress(&app, id, "test-bot", "Typing now").await, Ok(true));
    loop {
        if let Event::Partial(p) = next(&mut asked).await {
            assert_eq!(p.text, "Typing now");
            break;
        }
    }
    submit(&app, id, "The quietest kettle").await.expect("submit");
    let tail = rest(&mut asked).await;
    assert!(matches!(tail.last(), Some(Event::Completed(c)) if c.answered == 1), "{tail:?}");
}
