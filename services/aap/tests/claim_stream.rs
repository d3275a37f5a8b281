//! EvaluationService.Claim: tasks pushed to a streaming bot, heartbeats, and a bot that
//! vanishes mid-task.

mod common;

use std::time::Duration;

use aap_proto::v1::answer_event::Event;
use aap_proto::v1::claim_request::Msg;
use aap_proto::v1::claim_response::Msg as Reply;
use aap_proto::v1::{ClaimHeartbeat, ClaimHello, ClaimRequest, ClaimResponse, Target};
use common::*;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

async fn next_reply(replies: &mut tonic::Streaming<ClaimResponse>) -> Reply {
    tokio::time::timeout(Duration::from_secs(60), replies.next())
        .await
        .expect("a reply in time")
        .expect("stream open")
        .expect("reply ok")
        .msg
        .expect("reply body")
}

async fn claim_expiry(app: &TestApp, id: i64) -> chrono::DateTime<chrono::Utc> {
    let (at,): (chrono::DateTime<chrono::Utc>,) =
        sqlx::query_as("SELECT claim_expires_at FROM evaluations WHERE id = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    at
}

#[tokio::test]
async fn a_streaming_bot_gets_tasks_pushed_and_a_vanished_bots_task_is_redelivered() {
    let app = spawn_app().await;
    let (tx, rx) = mpsc::channel(8);
    tx.send(ClaimRequest {
        msg: Some(Msg::Hello(ClaimHello {
            bot_id: "stream-bot".into(),
            serves: vec![Target { assistant: "chatgpt".into(), plan: "Plus".into() }],
            max_tasks: 1,
        })),
    })
    .await
    .expect("hello");
    let mut replies = app.evaluations().claim(ReceiverStream::new(rx)).await.expect("claim").into_inner();
    match next_reply(&mut replies).await {
        Reply::Welcome(w) => assert_eq!(w.claim_ttl_seconds, 60),
        other => panic!("expected welcome, got {other:?}"),
    }

    let stream =
        app.answers().ask(ask_text("Best noise-cancelling headphones?", &["chatgpt"])).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = match next_reply(&mut replies).await {
        Reply::Task(task) => task,
        other => panic!("expected a task, got {other:?}"),
    };
    assert_eq!(task.attempt, 1);

    let before = claim_expiry(&app, task.evaluation_id).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    tx.send(ClaimRequest { msg: Some(Msg::Heartbeat(ClaimHeartbeat { evaluation_ids: vec![task.evaluation_id] })) })
        .await
        .expect("heartbeat");
    let mut extended = false;
    for _ in 0..100 {
        if claim_expiry(&app, task.evaluation_id).await > before {
            extended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(extended, "the heartbeat extended the claim");

    // The bot vanishes mid-task: its stream closes, the task goes back to the queue.
    drop(tx);
    drop(replies);
    let again = poll_task(&app, "chatgpt", "Plus").await;
    assert_eq!(again.evaluation_id, task.evaluation_id);
    assert_eq!(again.attempt, 2);
    submit(&app, again.evaluation_id, "Sony WH-1000XM5").await.expect("submit");
    let events = waiting.await.expect("stream");
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Answer(_))).count(), 1);
    assert_eq!(app.count("answers").await, 1);
}

#[tokio::test]
async fn a_claim_stream_must_start_with_hello_naming_known_assistants() {
    let app = spawn_app().await;
    let (tx, rx) = mpsc::channel(1);
    tx.send(ClaimRequest {
        msg: Some(Msg::Hello(ClaimHello {
            bot_id: "b".into(),
            serves: vec![Target { assistant: "bard".into(), plan: String::new() }],
            max_tasks: 1,
        })),
    })
    .await
    .expect("send");
    let status = app.evaluations().claim(ReceiverStream::new(rx)).await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);

    let (tx, rx) = mpsc::channel(1);
    tx.send(ClaimRequest { msg: Some(Msg::Heartbeat(ClaimHeartbeat { evaluation_ids: vec![1] })) })
        .await
        .expect("send");
    let status = app.evaluations().claim(ReceiverStream::new(rx)).await.expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_claim_stream_without_a_hello_is_ended_after_the_hello_timeout() {
    let app = spawn_app_with(Options { hello_timeout: Duration::from_millis(200), ..Options::default() }).await;
    let (_tx, rx) = mpsc::channel::<ClaimRequest>(1);
    let started = std::time::Instant::now();
    let refused = tokio::time::timeout(Duration::from_secs(30), app.evaluations().claim(ReceiverStream::new(rx)))
        .await
        .expect("the server ended the stream")
        .expect_err("no hello");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("no hello came in 0.2 s"), "{refused:?}");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn a_second_hello_ends_the_claim_stream() {
    let app = spawn_app().await;
    let hello = || ClaimRequest {
        msg: Some(Msg::Hello(ClaimHello {
            bot_id: "twice-bot".into(),
            serves: vec![Target { assistant: "chatgpt".into(), plan: "Plus".into() }],
            max_tasks: 1,
        })),
    };
    let (tx, rx) = mpsc::channel(2);
    tx.send(hello()).await.expect("hello");
    let mut replies = app.evaluations().claim(ReceiverStream::new(rx)).await.expect("claim").into_inner();
    assert!(matches!(next_reply(&mut replies).await, Reply::Welcome(_)));
    tx.send(hello()).await.expect("second hello");
    let refused = tokio::time::timeout(Duration::from_secs(30), replies.next())
        .await
        .expect("the stream ends in time")
        .expect("a status")
        .expect_err("a second hello");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("hello was already sent"), "{refused:?}");
}

#[tokio::test]
async fn a_task_pulled_while_the_database_fails_goes_back_to_the_queue_at_once() {
    let app = spawn_app().await;
    let stream = app.answers().ask(ask_text("Which NAS is quietest?", &["chatgpt"])).await.expect("ask").into_inner();
    let _waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let id = loop {
        let queued: Option<(i64,)> = sqlx::query_as("SELECT id FROM evaluations WHERE status = 'queued'")
            .fetch_optional(&app.pool)
            .await
            .expect("query");
        if let Some((id,)) = queued {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // The claim cannot be written (as while PostgreSQL restarts) after the task was pulled.
    sqlx::query("ALTER TABLE evaluations RENAME TO evaluations_away").execute(&app.pool).await.expect("hide");
    let serves = Some(Target { assistant: "chatgpt".into(), plan: "Plus".into() });
    let refused = app.evaluations().poll(aap_proto::v1::PollRequest { bot_id: "test-bot".into(), serves }).await;
    sqlx::query("ALTER TABLE evaluations_away RENAME TO evaluations").execute(&app.pool).await.expect("restore");
    assert!(refused.is_err(), "the claim failed: {refused:?}");

    // Not after the 2-minute backstop: the next poll gets it.
    let task = poll_task(&app, "chatgpt", "Plus").await;
    assert_eq!(task.evaluation_id, id);
    assert_eq!(task.attempt, 1, "the failed claim did not count as an attempt");
}
