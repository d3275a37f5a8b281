//! Creating the evaluations of an Ask's targets in one statement, on a real PostgreSQL: one
//! live evaluation per target, an answered target left alone unless refreshed, a live one
//! returned as it is, a target named twice counted once. And what the writes return for the
//! announcements: each change a higher revision, the stored answer as a read gives it.

use std::collections::HashMap;

use aap_evaluations::model::{ResultMessage, Status};
use aap_evaluations::store::{self, Wanted};

fn want(assistant: &str, plan: &str, refresh: bool) -> Wanted {
    Wanted { assistant: assistant.into(), plan: plan.into(), refresh }
}

async fn answer(pool: &sqlx::PgPool, evaluation_id: i64, prompt_id: i64, assistant: &str) -> anyhow::Result<()> {
    let result = ResultMessage {
        evaluation_id,
        prompt_id,
        assistant: assistant.into(),
        plan: "any".into(),
        response_text: "an answer".into(),
        captured_at: chrono::Utc::now(),
        ..ResultMessage::default()
    };
    anyhow::ensure!(store::store_answer(pool, &result).await?.inserted, "stored once");
    Ok(())
}

#[tokio::test]
async fn one_statement_creates_what_is_missing_and_returns_what_is_live() -> anyhow::Result<()> {
    let pool = aap_platform::db::connect_and_migrate(&aap_testkit::fresh_database().await, 4).await?;
    let (prompt_id,): (i64,) = sqlx::query_as(
        "INSERT INTO prompts (text, text_hash, embedding) \
         VALUES ('which targets are created at once?', sha256('t'::bytea), array_fill(0.1, ARRAY[384])::vector) \
         RETURNING id",
    )
    .fetch_one(&pool)
    .await?;
    let trace = HashMap::new();
    let mut conn = pool.acquire().await?;

    // Nothing yet: every target is created, chatgpt's once though named twice.
    let first = [want("chatgpt", "any", false), want("claude", "any", false), want("chatgpt", "any", false)];
    let created = store::create_many(&mut conn, prompt_id, &first, 3, &trace).await?;
    let mut names: Vec<(&str, bool)> = created.iter().map(|(row, new)| (row.assistant.as_str(), *new)).collect();
    names.sort();
    assert_eq!(names, [("chatgpt", true), ("claude", true)]);
    assert!(created.iter().all(|(row, _)| row.status() == Status::Pending && row.max_attempts == 3));
    assert!(created.iter().all(|(row, _)| row.prompt_text == "which targets are created at once?"));
    let chatgpt = created.iter().find(|(row, _)| row.assistant == "chatgpt").map(|(row, _)| row.id).unwrap_or(0);
    let claude = created.iter().find(|(row, _)| row.assistant == "claude").map(|(row, _)| row.id).unwrap_or(0);

    // claude answered, chatgpt still live, perplexity new.
    answer(&pool, claude, prompt_id, "claude").await?;
    let again = [want("chatgpt", "any", false), want("claude", "any", false), want("perplexity", "any", false)];
    let mut second = store::create_many(&mut conn, prompt_id, &again, 3, &trace).await?;
    second.sort_by_key(|(row, _)| row.id);
    let seen: Vec<(&str, i64, bool)> = second.iter().map(|(row, new)| (row.assistant.as_str(), row.id, *new)).collect();
    assert_eq!(seen.len(), 2, "the answered target has no live evaluation: {seen:?}");
    assert_eq!((seen[0].0, seen[0].1, seen[0].2), ("chatgpt", chatgpt, false), "the live one, as it is");
    assert_eq!((seen[1].0, seen[1].2), ("perplexity", true));

    // A refresh of the answered target creates a second evaluation beside its answer.
    let refreshed = store::create_many(&mut conn, prompt_id, &[want("claude", "any", true)], 3, &trace).await?;
    assert_eq!(refreshed.len(), 1);
    assert!(refreshed[0].1 && refreshed[0].0.id > claude, "a new evaluation for the refresh: {refreshed:?}");
    // ...and never a second live one: asked again, the refresh is returned as it is.
    let twice = store::create_or_refresh(&mut conn, prompt_id, "claude", "any", 3, &trace, true).await?;
    assert_eq!(twice.map(|(row, new)| (row.id, new)), Some((refreshed[0].0.id, false)));
    assert!(store::create_many(&mut conn, prompt_id, &[], 3, &trace).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn every_change_raises_the_revision_and_a_stored_answer_comes_back_as_a_read_gives_it() -> anyhow::Result<()> {
    let pool = aap_platform::db::connect_and_migrate(&aap_testkit::fresh_database().await, 4).await?;
    let (prompt_id,): (i64,) = sqlx::query_as(
        "INSERT INTO prompts (text, text_hash, embedding) \
         VALUES ('what does a stored answer announce?', sha256('a'::bytea), array_fill(0.1, ARRAY[384])::vector) \
         RETURNING id",
    )
    .fetch_one(&pool)
    .await?;
    let trace = HashMap::from([(
        "traceparent".to_owned(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
    )]);
    let mut conn = pool.acquire().await?;
    let created = store::create_many(&mut conn, prompt_id, &[want("gemini", "any", false)], 3, &trace).await?;
    let row = created.first().map(|(row, _)| row.clone()).ok_or_else(|| anyhow::anyhow!("not created"))?;
    let mut revisions = vec![row.revision];
    let queued = store::mark_queued(&mut conn, &[row.id]).await?;
    anyhow::ensure!(queued.len() == 1 && queued[0].status() == Status::Queued, "queued: {queued:?}");
    revisions.push(queued[0].revision);
    let holder = store::Holder::new("bots", "bot-1");
    let claimed = match store::claim(&pool, row.id, "$JS.ACK.x", &holder, std::time::Duration::from_secs(60)).await? {
        store::ClaimOutcome::Claimed(row) => row,
        other => anyhow::bail!("not claimed: {other:?}"),
    };
    revisions.push(claimed.revision);
    let submitted =
        store::mark_submitted(&pool, row.id, &holder).await?.ok_or_else(|| anyhow::anyhow!("not submitted"))?;
    revisions.push(submitted.revision);
    // An operator's update by hand counts too (the trigger, not the statements, counts).
    sqlx::query("UPDATE evaluations SET failure_reason = 'by hand' WHERE id = $1").bind(row.id).execute(&pool).await?;
    let by_hand = store::evaluation(&pool, row.id).await?.ok_or_else(|| anyhow::anyhow!("gone"))?;
    revisions.push(by_hand.revision);

    let result = ResultMessage {
        evaluation_id: row.id,
        prompt_id,
        assistant: "gemini".into(),
        plan: "any".into(),
        response_text: "stored and announced".into(),
        response_markdown: "**stored** and announced".into(),
        citations: vec![aap_evaluations::model::Citation {
            url: "https://example.com/a".into(),
            title: "A".into(),
            domain: "example.com".into(),
            position: 1,
            kind: aap_evaluations::model::CitationKind::Inline,
            found_in: aap_evaluations::model::CitationOrigin::Page,
        }],
        captured_at: chrono::Utc::now(),
        bot_id: "bot-1".into(),
        ..ResultMessage::default()
    };
    let stored = store::store_answer(&pool, &result).await?;
    let evaluation = stored.evaluation.ok_or_else(|| anyhow::anyhow!("no evaluation returned"))?;
    revisions.push(evaluation.revision);
    assert!(revisions.windows(2).all(|pair| pair[0] < pair[1]), "every change a higher revision: {revisions:?}");

    // What the ingest announces is what a replica would read: the evaluation (but its prompt's
    // text, which stays home) and the answer without its page.
    let read = store::evaluation(&pool, row.id).await?.ok_or_else(|| anyhow::anyhow!("gone"))?;
    use serde_json::to_value as json;
    assert_eq!(json(&evaluation)?, json(&read)?, "the announced evaluation is the stored one");
    assert_eq!(evaluation.status(), Status::Answered);
    assert_eq!(evaluation.trace_context.0, trace);
    let answers = store::current_answers_of_prompt(&pool, prompt_id, false).await?;
    let answer = stored.answer.ok_or_else(|| anyhow::anyhow!("no answer returned"))?;
    assert_eq!(answers.len(), 1);
    assert_eq!(json(&answer)?, json(&answers[0])?, "the announced answer is the one read");
    assert_eq!(answer.citations.0.len(), 1);

    // A redelivery stores and announces nothing.
    let again = store::store_answer(&pool, &result).await?;
    assert!(!again.inserted && again.evaluation.is_none() && again.answer.is_none(), "{again:?}");
    Ok(())
}
