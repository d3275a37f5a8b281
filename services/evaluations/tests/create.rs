//! Creating the evaluations of an Ask's targets in one statement, on a real PostgreSQL: one
//! live evaluation per target, an answered target left alone unless refreshed, a live one
//! returned as it is, a target named twice counted once.

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
    anyhow::ensure!(store::store_answer(pool, &result).await?, "stored once");
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
