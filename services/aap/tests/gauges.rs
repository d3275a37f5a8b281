//! The gauges of shared state are read when scraped, at most once per interval: scrapes closer
//! together show the values read last, scrapes at the same time share one read, and a read that
//! fails leaves the values read before (real PostgreSQL and NATS).
//!
//! One test in its own binary: the gauges are the process's, so another test in the same
//! process would set them too.

use std::sync::Arc;
use std::time::Duration;

use aap::metrics::SharedGauges;
use aap_evaluations::queue::Queue;
use aap_platform::metrics::exposition::Scrape;
use aap_platform::nats::Topology;

/// `aap_evaluations{assistant="chatgpt", state="pending"}` as this process would serve it now.
fn pending_chatgpt() -> anyhow::Result<f64> {
    let scrape = Scrape::parse(&aap_platform::metrics::encode()).map_err(anyhow::Error::msg)?;
    Ok(scrape.value("aap_evaluations", &[("assistant", "chatgpt"), ("state", "pending")]).unwrap_or(0.0))
}

async fn add_pending(pool: &sqlx::PgPool, text: &str) -> anyhow::Result<()> {
    sqlx::query(
        "WITH p AS (INSERT INTO prompts (text, text_hash, embedding) \
                    VALUES ($1, sha256(convert_to($1, 'UTF8')), array_fill(0.1, ARRAY[384])::vector) RETURNING id) \
         INSERT INTO evaluations (prompt_id, assistant, plan, max_attempts) SELECT id, 'chatgpt', 'any', 3 FROM p",
    )
    .bind(text)
    .execute(pool)
    .await?;
    Ok(())
}

#[tokio::test]
async fn shared_gauges_are_read_when_scraped_at_most_once_an_interval() -> anyhow::Result<()> {
    aap::metrics::register_all();
    let pool = aap_platform::db::connect_and_migrate(&aap_testkit::fresh_database().await, 4).await?;
    let infra = aap_testkit::infra().await;
    let client = async_nats::connect(infra.nats_url()).await?;
    let queue = Arc::new(Queue::new(client, Topology::new(aap_testkit::fresh_prefix()), 1).await?);
    let hour = Duration::from_secs(3600);

    add_pending(&pool, "the first pending prompt").await?;
    let gauges = SharedGauges::new(pool.clone(), queue.clone(), hour);
    assert_eq!(pending_chatgpt()?, 0.0, "nothing is read before a scrape");
    assert!(gauges.read().await, "the first scrape reads");
    assert_eq!(pending_chatgpt()?, 1.0);

    // Within the interval a scrape reads nothing and shows what was read.
    add_pending(&pool, "the second pending prompt").await?;
    assert!(!gauges.read().await, "a scrape within the interval reads nothing");
    assert_eq!(pending_chatgpt()?, 1.0);

    // Scrapes at the same time share one read.
    let fresh = SharedGauges::new(pool.clone(), queue.clone(), hour);
    let (a, b, c) = tokio::join!(fresh.read(), fresh.read(), fresh.read());
    assert_eq!([a, b, c].iter().filter(|read| **read).count(), 1, "one read for three scrapes: {a} {b} {c}");
    assert_eq!(pending_chatgpt()?, 2.0);

    // No interval: every scrape reads.
    let every_time = SharedGauges::new(pool.clone(), queue.clone(), Duration::ZERO);
    add_pending(&pool, "the third pending prompt").await?;
    assert!(every_time.read().await);
    assert_eq!(pending_chatgpt()?, 3.0);

    // A database that cannot be read: the scrape returns, with the values read before.
    pool.close().await;
    assert!(every_time.read().await, "a failed read counts as a read");
    assert_eq!(pending_chatgpt()?, 3.0);
    Ok(())
}
