//! Upgrades over a real PostgreSQL and NATS (docs/operations.md, "Upgrading").
//!
//! A rolling upgrade: while replicas of a version before 2026-12-05 still run, their ingest
//! shares the results stream's consumer `ingest` with the new ingests, and it reads each message
//! as one result: a message carrying several (what a new gateway publishes for submits made
//! together) it drops as unreadable, and their evaluations wait for the submitted timeout to ask
//! the assistants again. A rollback: an older binary on a database a newer one migrated.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aap_evaluations::model::ResultMessage;
use aap_evaluations::queue::{Published, Queue};
use aap_evaluations::store::{self, Wanted};
use aap_platform::nats::Topology;
use async_nats::jetstream::{self, AckKind};
use futures::StreamExt as _;

/// What the ingest of a version before 2026-12-05 did with the messages of the results stream
/// (d1c4ace, `ingest::ingest_one`), over the consumer it made: each read as one result, stored
/// and acked; one that is not a result terminated ("unreadable result dropped"). Returns the
/// evaluations it stored and the messages it dropped.
async fn old_ingest_drains(pool: &sqlx::PgPool, queue: &Queue) -> anyhow::Result<(Vec<i64>, usize)> {
    let topology = queue.topology();
    let stream = queue.jetstream().get_stream(topology.results_stream()).await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &topology.ingest_consumer(),
            jetstream::consumer::pull::Config {
                durable_name: Some(topology.ingest_consumer()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await?;
    let mut messages = consumer.fetch().max_messages(100).expires(Duration::from_secs(1)).messages().await?;
    let (mut stored, mut dropped) = (Vec::new(), 0);
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| anyhow::anyhow!("{e}"))?;
        match serde_json::from_slice::<ResultMessage>(&message.payload) {
            Ok(result) => {
                store::store_answer(pool, &result).await?;
                stored.push(result.evaluation_id);
                message.double_ack().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
            Err(_) => {
                dropped += 1;
                message.ack_with(AckKind::Term).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            }
        }
    }
    Ok((stored, dropped))
}

#[tokio::test]
async fn results_submitted_together_never_reach_the_ingest_of_a_version_that_reads_one_a_message() -> anyhow::Result<()>
{
    aap_testkit::init_tracing();
    let pool = aap_platform::db::connect_and_migrate(&aap_testkit::fresh_database().await, 4).await?;
    let client = async_nats::connect(aap_testkit::infra().await.nats_url()).await?;
    let queue = Arc::new(Queue::new(client, Topology::new(aap_testkit::fresh_prefix()), 1).await?);

    let prompt_id = common::insert_prompt(&pool, "Which e-bike is best for a hilly commute?").await?;
    let assistants = ["chatgpt", "claude", "perplexity", "google-ai-overview"];
    let wanted: Vec<Wanted> =
        assistants.iter().map(|a| Wanted { assistant: (*a).into(), plan: "any".into(), refresh: false }).collect();
    let created = store::create_many(&mut *pool.acquire().await?, prompt_id, &wanted, 3, &HashMap::new()).await?;
    let results: Vec<Arc<ResultMessage>> = created
        .iter()
        .map(|(row, _)| {
            Arc::new(ResultMessage {
                evaluation_id: row.id,
                prompt_id,
                assistant: row.assistant.clone(),
                plan: row.plan.clone(),
                response_text: format!("{} says ride a mid-drive", row.assistant),
                ..ResultMessage::default()
            })
        })
        .collect();
    // One submitted alone, three together (as a new gateway publishes submits made at once).
    assert_eq!(queue.publish_results(&results[..1]).await, [Published::Stored]);
    assert_eq!(queue.publish_results(&results[1..]).await, [Published::Stored, Published::Stored, Published::Stored]);

    // The old replica's ingest pulls first: it must be handed nothing it cannot read.
    let (stored_by_old, dropped) = old_ingest_drains(&pool, &queue).await?;
    assert_eq!(dropped, 0, "the old ingest dropped results it cannot read (it stored {stored_by_old:?})");
    assert_eq!(stored_by_old, [results[0].evaluation_id], "the result submitted alone is the old ingest's to take");

    // The new ingest stores the rest.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let ingest = tokio::spawn(aap_evaluations::ingest::run(pool.clone(), queue.clone(), async {
        let _ = stopped.await;
    }));
    let ids: Vec<i64> = created.iter().map(|(row, _)| row.id).collect();
    let mut answered: Vec<(i64, String)> = Vec::new();
    for _ in 0..200 {
        answered = sqlx::query_as(
            "SELECT e.id, a.response_text FROM evaluations e JOIN answers a ON a.evaluation_id = e.id \
             WHERE e.id = ANY($1) AND e.status = 'answered' ORDER BY e.id",
        )
        .bind(&ids)
        .fetch_all(&pool)
        .await?;
        if answered.len() == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = stop.send(());
    ingest.await??;
    let expected: Vec<(i64, String)> = results.iter().map(|r| (r.evaluation_id, r.response_text.clone())).collect();
    assert_eq!(answered, expected, "every result stored once, by one ingest or the other");
    Ok(())
}

/// A rollback: the binary of before an upgrade started on the database the upgrade migrated.
/// It must refuse, saying that a newer version migrated it and what to do, not only sqlx's
/// "migration N was previously applied but is missing in the resolved migrations".
#[tokio::test]
async fn a_database_migrated_by_a_newer_version_is_refused_with_what_to_do() -> anyhow::Result<()> {
    let url = aap_testkit::fresh_database().await;
    let pool = aap_platform::db::connect_and_migrate(&url, 2).await?;
    let known: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations").fetch_one(&pool).await?;
    // What the next version's first migration leaves behind.
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES ($1, 'from a newer version', true, '\\x00', 0)",
    )
    .bind(known + 1)
    .execute(&pool)
    .await?;
    pool.close().await;
    let refused = aap_platform::db::connect_and_migrate(&url, 2).await.err().map(|e| e.to_string()).unwrap_or_default();
    let newer = format!("the database was migrated by a newer version of the platform (migration {}", known + 1);
    assert!(refused.starts_with(&newer), "{refused}");
    assert!(refused.contains(&format!("this build's last is {known}")), "{refused}");
    assert!(refused.contains("restore the backup taken before the upgrade"), "{refused}");
    Ok(())
}
