//! Creating the evaluations of an Ask's targets in one statement, on a real PostgreSQL: one
//! live evaluation per target, an answered target left alone unless refreshed, a live one
//! returned as it is, a target named twice counted once. And what the writes return for the
//! announcements: each change a higher revision, the stored answer as a read gives it; a
//! submitted evaluation marked again only with the same answer. And which
//! of an answer's columns ANALYZE reads, and how fast autovacuum goes through the busy tables.

mod common;

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

/// A fresh database with one prompt stored; returns its pool and the prompt's id.
async fn database_with_prompt(text: &str) -> anyhow::Result<(sqlx::PgPool, i64)> {
    let pool = aap_platform::db::connect_and_migrate(&aap_testkit::fresh_database().await, 4).await?;
    let prompt_id = common::insert_prompt(&pool, text).await?;
    Ok((pool, prompt_id))
}

#[tokio::test]
async fn one_statement_creates_what_is_missing_and_returns_what_is_live() -> anyhow::Result<()> {
    let (pool, prompt_id) = database_with_prompt("which targets are created at once?").await?;
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
    let (pool, prompt_id) = database_with_prompt("what does a stored answer announce?").await?;
    let trace = HashMap::from([(
        "traceparent".to_owned(),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
    )]);
    let mut conn = pool.acquire().await?;
    let created = store::create_many(&mut conn, prompt_id, &[want("perplexity", "any", false)], 3, &trace).await?;
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
    let submitted = store::mark_submitted(&pool, row.id, &holder, b"digest")
        .await?
        .ok_or_else(|| anyhow::anyhow!("not submitted"))?;
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

#[tokio::test]
async fn statements_made_together_answer_each_request_in_its_place() -> anyhow::Result<()> {
    let (pool, prompt_id) = database_with_prompt("which requests share a statement?").await?;
    let mut conn = pool.acquire().await?;
    let wanted = [want("chatgpt", "any", false), want("claude", "any", false), want("perplexity", "any", false)];
    let mut created = store::create_many(&mut conn, prompt_id, &wanted, 1, &HashMap::new()).await?;
    created.sort_by_key(|(row, _)| row.id);
    let ids: Vec<i64> = created.iter().map(|(row, _)| row.id).collect();
    anyhow::ensure!(ids.len() == 3, "created {ids:?}");
    store::mark_queued(&mut conn, &ids).await?;

    // Claims: each its own row, as its own bot; an id named twice is claimed by the first
    // only (the second is not in the statement), an unknown id by none.
    let one = store::Holder::new("bots", "bot-1");
    let two = store::Holder::new("bots", "bot-2");
    let claim = |id: i64, holder: &store::Holder, subject: &str| store::ClaimRequest {
        id,
        ack_subject: subject.into(),
        holder: holder.clone(),
        ttl: std::time::Duration::from_secs(60),
    };
    let requests = [
        claim(ids[0], &one, "$JS.ACK.a"),
        claim(ids[1], &two, "$JS.ACK.b"),
        claim(ids[0], &two, "$JS.ACK.c"),
        claim(i64::MAX, &one, "$JS.ACK.d"),
    ];
    let claimed = store::claim_many(&pool, &requests).await?;
    // Who holds each, as "id bot ack-subject".
    let holds = |row: &store::EvaluationRow| {
        format!("{} {} {}", row.id, row.claimed_by.as_deref().unwrap_or("-"), row.ack_subject.as_deref().unwrap_or("-"))
    };
    let seen: Vec<Option<String>> = claimed.iter().map(|row| row.as_ref().map(holds)).collect();
    let expected =
        [Some(format!("{} bot-1 $JS.ACK.a", ids[0])), Some(format!("{} bot-2 $JS.ACK.b", ids[1])), None, None];
    assert_eq!(seen, expected);
    let stored = store::evaluation(&pool, ids[0]).await?.ok_or_else(|| anyhow::anyhow!("gone"))?;
    assert_eq!((stored.claimed_by.as_deref(), stored.attempts), (Some("bot-1"), 1), "claimed once, by the first");
    // Its one attempt spent, a row is claimed by no batch (the claim alone fails it).
    let spent = store::claim_many(&pool, &[claim(ids[0], &two, "$JS.ACK.e")]).await?;
    assert!(matches!(spent.as_slice(), [None]), "{spent:?}");

    // Submits: marked for the holder only.
    let submit = |id: i64| store::SubmitRequest { id, holder: two.clone(), digest: b"digest".to_vec() };
    let marked = store::mark_submitted_many(&pool, &[submit(ids[0]), submit(ids[1])]).await?;
    let marked: Vec<Option<(i64, Status)>> =
        marked.iter().map(|row| row.as_ref().map(|r| (r.id, r.status()))).collect();
    assert_eq!(marked, [None, Some((ids[1], Status::Submitted))], "bot-2 holds only the second");

    // Answers: stored together, each as a read gives it; the same evaluation twice stored once.
    let result = |id: i64, assistant: &str, text: &str| ResultMessage {
        evaluation_id: id,
        prompt_id,
        assistant: assistant.into(),
        plan: "any".into(),
        response_text: text.into(),
        captured_at: chrono::Utc::now(),
        capture: aap_evaluations::model::Capture {
            finish_signals: vec!["stop-button-gone".into(), "text-stable".into()],
            missing_roles: vec!["sources".into()],
            ttft_ms: Some(120),
            cut_short: true,
            model_fallback: true,
            ..Default::default()
        },
        ..ResultMessage::default()
    };
    let (first, second, again) =
        (result(ids[0], "chatgpt", "first"), result(ids[1], "claude", "second"), result(ids[0], "chatgpt", "again"));
    let stored = store::store_answers(&pool, &[&first, &second, &again]).await?;
    assert_eq!(stored.len(), 3);
    let inserted: Vec<Option<bool>> = stored.iter().map(|s| s.as_ref().map(|s| s.inserted)).collect();
    assert_eq!(inserted, [Some(true), Some(true), None], "the repeat is not in the statement");
    let answers = store::current_answers_of_prompt(&pool, prompt_id, false).await?;
    assert_eq!(answers.len(), 2);
    assert!(answers.iter().all(|a| a.cut_short && a.model_fallback), "the marks are stored");
    use serde_json::to_value as json;
    for stored in stored.iter().flatten() {
        let answer = stored.answer.as_ref().ok_or_else(|| anyhow::anyhow!("no answer returned"))?;
        let read = answers.iter().find(|a| a.evaluation_id == answer.evaluation_id);
        assert_eq!(Some(json(answer)?), read.map(json).transpose()?, "stored as a read gives it");
        let evaluation = stored.evaluation.as_ref().ok_or_else(|| anyhow::anyhow!("no evaluation returned"))?;
        assert_eq!(evaluation.status(), Status::Answered);
    }
    assert_eq!(answers.iter().find(|a| a.evaluation_id == ids[0]).map(|a| a.response_text.as_str()), Some("first"));

    // One result the database refuses fails its whole statement (the ingest then stores each
    // alone), and stores nothing of the others.
    let poison = result(ids[2], "perplexity", "a NUL \0 inside");
    let redelivered = result(ids[1], "claude", "second");
    assert!(store::store_answers(&pool, &[&redelivered, &poison]).await.is_err());
    assert!(store::store_answer(&pool, &poison).await.is_err(), "refused alone too");
    assert!(!store::store_answer(&pool, &redelivered).await?.inserted, "alone, the redelivery stores nothing");
    assert_eq!(store::current_answers_of_prompt(&pool, prompt_id, false).await?.len(), 2);
    Ok(())
}

/// An evaluation marked submitted takes again only the answer it was marked with (its digest):
/// a repeat is marked again, another answer is not, until the mark is undone.
#[tokio::test]
async fn a_submitted_evaluation_is_marked_again_only_with_the_same_answer() -> anyhow::Result<()> {
    let (pool, prompt_id) = database_with_prompt("which answer does a submitted evaluation take?").await?;
    let mut conn = pool.acquire().await?;
    let created =
        store::create_many(&mut conn, prompt_id, &[want("chatgpt", "any", false)], 3, &HashMap::new()).await?;
    let id = created.first().map(|(row, _)| row.id).ok_or_else(|| anyhow::anyhow!("not created"))?;
    store::mark_queued(&mut conn, &[id]).await?;
    let holder = store::Holder::new("bots", "bot-1");
    let claimed = store::claim(&pool, id, "$JS.ACK.a", &holder, std::time::Duration::from_secs(60)).await?;
    anyhow::ensure!(matches!(claimed, store::ClaimOutcome::Claimed(_)), "not claimed: {claimed:?}");
    let marked = |digest: &'static [u8]| {
        let (pool, holder) = (pool.clone(), holder.clone());
        async move { anyhow::Ok(store::mark_submitted(&pool, id, &holder, digest).await?.is_some()) }
    };
    let batched = |digest: &[u8]| store::SubmitRequest { id, holder: holder.clone(), digest: digest.to_vec() };
    assert!(marked(b"first").await?, "the claim takes an answer");
    assert!(marked(b"first").await?, "a repeat is marked again");
    assert!(!marked(b"second").await?, "another answer is not");
    assert!(store::mark_submitted_many(&pool, &[batched(b"second")]).await?[0].is_none(), "nor in a batch");
    assert!(store::mark_submitted_many(&pool, &[batched(b"first")]).await?[0].is_some());
    store::unmark_submitted(&pool, id).await?;
    assert!(marked(b"second").await?, "undone, the claim takes an answer again");
    Ok(())
}

/// The ingest stores a result only while its evaluation holds the digest of the submit that
/// carried it, or none: a result whose submit was told it failed (its mark undone), after which
/// another answer was marked, is not stored; the other is. A result that carries no digest, or
/// an evaluation that recorded none, takes the answer as before.
#[tokio::test]
async fn an_evaluation_takes_a_result_only_with_the_digest_it_holds() -> anyhow::Result<()> {
    let (pool, prompt_id) = database_with_prompt("which result does the ingest store?").await?;
    let mut conn = pool.acquire().await?;
    let wanted = [want("chatgpt", "any", false), want("claude", "any", false), want("perplexity", "any", false)];
    let created = store::create_many(&mut conn, prompt_id, &wanted, 3, &HashMap::new()).await?;
    let ids: Vec<i64> = created.iter().map(|(row, _)| row.id).collect();
    store::mark_queued(&mut conn, &ids).await?;
    drop(conn);
    let holder = store::Holder::new("bots", "bot-1");
    for id in &ids {
        let claimed = store::claim(&pool, *id, "$JS.ACK.a", &holder, std::time::Duration::from_secs(60)).await?;
        anyhow::ensure!(matches!(claimed, store::ClaimOutcome::Claimed(_)), "not claimed: {claimed:?}");
    }
    let (first, second) = ([1_u8; 32], [2_u8; 32]);
    let result = |id: i64, text: &str, digest: &[u8]| ResultMessage {
        evaluation_id: id,
        prompt_id,
        assistant: "chatgpt".into(),
        plan: "any".into(),
        response_text: text.into(),
        captured_at: chrono::Utc::now(),
        digest: hex::encode(digest),
        ..ResultMessage::default()
    };
    let status = |id: i64| {
        let pool = pool.clone();
        async move {
            let status: String =
                sqlx::query_scalar("SELECT status FROM evaluations WHERE id = $1").bind(id).fetch_one(&pool).await?;
            anyhow::Ok(status)
        }
    };

    // The first submit was marked, its reply lost and its mark undone; the second was marked.
    let id = ids[0];
    anyhow::ensure!(store::mark_submitted(&pool, id, &holder, &first).await?.is_some());
    store::unmark_submitted(&pool, id).await?;
    anyhow::ensure!(store::mark_submitted(&pool, id, &holder, &second).await?.is_some());
    let taken = store::store_answer(&pool, &result(id, "first", &first)).await?;
    assert!(!taken.inserted && taken.superseded && taken.evaluation.is_none(), "{taken:?}");
    assert_eq!(status(id).await?, "submitted", "the first result changes nothing");
    let taken = store::store_answer(&pool, &result(id, "second", &second)).await?;
    assert!(taken.inserted && !taken.superseded, "{taken:?}");
    assert_eq!(taken.evaluation.map(|row| row.status()), Some(Status::Answered));
    // Delivered again, either changes nothing and is no longer told apart.
    for (text, digest) in [("first", &first), ("second", &second)] {
        let again = store::store_answer(&pool, &result(id, text, digest)).await?;
        assert!(!again.inserted && !again.superseded && again.evaluation.is_none(), "{again:?}");
    }

    // In one statement with others: each result goes by its own evaluation's digest.
    let (marked, undone) = (ids[1], ids[2]);
    anyhow::ensure!(store::mark_submitted(&pool, marked, &holder, &first).await?.is_some());
    anyhow::ensure!(store::mark_submitted(&pool, undone, &holder, &first).await?.is_some());
    store::unmark_submitted(&pool, undone).await?;
    let (wrong, none) = (result(marked, "other", &second), result(undone, "undone, taken", &[]));
    let both = store::store_answers(&pool, &[&wrong, &none]).await?;
    let inserted: Vec<Option<bool>> = both.iter().map(|s| s.as_ref().map(|s| s.inserted)).collect();
    assert_eq!(inserted, [Some(false), Some(true)], "{both:?}");
    assert_eq!(status(marked).await?, "submitted");
    assert_eq!(status(undone).await?, "answered", "a result without a digest is taken");
    // A value that is no SHA-256 in hex is not compared (a producer of another kind).
    let odd = ResultMessage { digest: "not hex".into(), ..result(marked, "odd", &[]) };
    assert!(store::store_answer(&pool, &odd).await?.inserted);
    let texts: Vec<(i64, String)> =
        sqlx::query_as("SELECT evaluation_id, response_text FROM answers ORDER BY evaluation_id")
            .fetch_all(&pool)
            .await?;
    assert_eq!(texts, [(id, "second".to_owned()), (marked, "odd".to_owned()), (undone, "undone, taken".to_owned())]);
    // A result for no evaluation is refused by the database (then retried and dead-lettered by
    // the ingest), not acked as if stored.
    assert!(store::store_answer(&pool, &result(id + 1_000_000, "nobody's", &first)).await.is_err());
    Ok(())
}

/// ANALYZE keeps statistics of an answer's columns that statements find answers by, and
/// gathers none of its payload (migration 0011): a column added later must be put on one side
/// or the other. And an answer is stored into the indexes its lookups need, no more.
#[tokio::test]
async fn answers_keep_statistics_and_indexes_only_of_what_they_are_found_by() -> anyhow::Result<()> {
    let (pool, prompt_id) = database_with_prompt("which columns does ANALYZE read?").await?;
    let mut conn = pool.acquire().await?;
    let wanted = [want("chatgpt", "any", false), want("claude", "any", false)];
    let created = store::create_many(&mut conn, prompt_id, &wanted, 3, &HashMap::new()).await?;
    drop(conn);
    for (row, _) in &created {
        answer(&pool, row.id, prompt_id, &row.assistant).await?;
    }
    sqlx::query("ANALYZE answers").execute(&pool).await?;
    let mut kept: Vec<String> =
        sqlx::query_scalar("SELECT attname::text FROM pg_stats WHERE schemaname = 'public' AND tablename = 'answers'")
            .fetch_all(&pool)
            .await?;
    kept.sort();
    assert_eq!(kept, ["assistant", "evaluation_id", "id", "lease_id", "plan", "prompt_id"]);

    // Each stored answer writes these indexes, one each for the lookups made (migration 0012
    // dropped answers_prompt, the leading column of answers_prompt_target).
    let mut indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = 'public' AND tablename = 'answers'",
    )
    .fetch_all(&pool)
    .await?;
    indexes.sort();
    assert_eq!(indexes, ["answers_evaluation_id_key", "answers_pkey", "answers_prompt_target"]);
    Ok(())
}

/// Autovacuum goes through the tables every evaluation writes at a fifth of its default pace
/// (migration 0013), so its rounds do not take the CPU from waiting answers; the other tables
/// keep the server's setting.
#[tokio::test]
async fn autovacuum_goes_gently_through_the_tables_each_evaluation_writes() -> anyhow::Result<()> {
    let (pool, _) = database_with_prompt("how fast does autovacuum go?").await?;
    let mut set: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT c.relname::text, c.reloptions::text[] FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.reloptions IS NOT NULL",
    )
    .fetch_all(&pool)
    .await?;
    set.sort();
    let gentle = vec!["autovacuum_vacuum_cost_delay=20".to_string()];
    assert_eq!(
        set,
        [("answers".to_string(), gentle.clone()), ("evaluations".into(), gentle.clone()), ("prompts".into(), gentle)]
    );
    Ok(())
}
