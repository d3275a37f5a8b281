//! Metrics wiring of the `aap` binary: the gauges read from shared state (PostgreSQL and
//! JetStream), in one task, and every crate's families registered so a scrape lists them all
//! from the start.

use std::sync::Arc;
use std::time::Duration;

use aap_evaluations::queue::Queue;
use sqlx::PgPool;

/// Registers the metric families of every part of the platform and of the bots, so that each
/// shows in a scrape (and on the dashboard) before its first event.
pub fn register_all() {
    aap_platform::metrics::register();
    aap_answers::metrics::register();
    aap_embedding::register_metrics();
    aap_evaluations::metrics::register();
    aap_sessions::metrics::register();
    aap_bot::metrics::register();
}

/// Reads the pipeline's gauges every `every` until `shutdown`: evaluations by state, the oldest
/// claim, queue depth per consumer (`aap_evaluations::metrics::refresh`) and accounts by status
/// (`aap_sessions::metrics::refresh`).
///
/// The values are the same from every replica: run this in one process only, the one that runs
/// the scheduler, or sums over replicas count them twice.
pub async fn collect_gauges(pool: PgPool, queue: Arc<Queue>, every: Duration, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        if let Err(error) = aap_evaluations::metrics::refresh(&pool, &queue).await {
            tracing::warn!(%error, "cannot read the pipeline's gauges");
        }
        if let Err(error) = aap_sessions::metrics::refresh(&pool).await {
            tracing::warn!(%error, "cannot read the session pool's gauges");
        }
    }
}
