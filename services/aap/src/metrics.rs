//! Metrics wiring of the `aap` binary: the gauges read from shared state (PostgreSQL and
//! JetStream) when scraped, and every crate's families registered so a scrape lists them all
//! from the start.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aap_evaluations::queue::Queue;
use sqlx::PgPool;

/// Registers the metric families of every part of the platform and of the bots, so that each
/// shows in a scrape (and on the dashboard) before its first event, and the process's memory,
/// threads and descriptors.
pub fn register_all() {
    aap_telemetry::memory::register();
    aap_platform::metrics::register();
    aap_answers::metrics::register();
    aap_embedding::register_metrics();
    aap_evaluations::metrics::register();
    aap_sessions::metrics::register();
    aap_bot::metrics::register();
}

/// Longest a scrape waits for the shared gauges; past it the scrape shows the values read last.
const READ_LIMIT: Duration = Duration::from_secs(3);

/// The gauges of shared state: evaluations by state, the oldest claim, queue depth per
/// consumer (`aap_evaluations::metrics::refresh`) and accounts by status
/// (`aap_sessions::metrics::refresh`). They are read when `/metrics` is scraped (at most once
/// per `every`; scrapes closer together show the values read last), not on a timer: a replica
/// nobody scrapes reads nothing. Before, they were read every second whether scraped or not,
/// and under load the count of live evaluations read thousands of dead index entries each time
/// (docs/performance.md).
///
/// The values are the same from every replica: read them in one process only, the one that
/// runs the scheduler, or sums over replicas count them twice.
pub struct SharedGauges {
    pool: PgPool,
    queue: Arc<Queue>,
    every: Duration,
    /// When they were last read (successfully or not); held while a read runs, so scrapes at
    /// the same time share one read.
    read_at: tokio::sync::Mutex<Option<Instant>>,
}

impl SharedGauges {
    pub fn new(pool: PgPool, queue: Arc<Queue>, every: Duration) -> SharedGauges {
        SharedGauges { pool, queue, every, read_at: tokio::sync::Mutex::new(None) }
    }

    /// Reads the gauges unless they were read within `every`; whether it read them. A read
    /// that fails or takes longer than [`READ_LIMIT`] is logged and leaves the values read
    /// before; it counts as a read, so a database that is down is asked at most once per `every`.
    pub async fn read(&self) -> bool {
        let mut read_at = self.read_at.lock().await;
        if read_at.is_some_and(|at| at.elapsed() < self.every) {
            return false;
        }
        *read_at = Some(Instant::now());
        let read = async {
            if let Err(error) = aap_evaluations::metrics::refresh(&self.pool, &self.queue).await {
                tracing::warn!(%error, "cannot read the pipeline's gauges");
            }
            if let Err(error) = aap_sessions::metrics::refresh(&self.pool).await {
                tracing::warn!(%error, "cannot read the session pool's gauges");
            }
        };
        if tokio::time::timeout(READ_LIMIT, read).await.is_err() {
            tracing::warn!(
                limit_secs = READ_LIMIT.as_secs(),
                "the shared gauges were not read in time: the scrape shows the values read before"
            );
        }
        true
    }

    /// What `/metrics` runs before each scrape: [`SharedGauges::read`].
    pub fn before_scrape(self: Arc<Self>) -> aap_platform::metrics::BeforeScrape {
        Arc::new(move || {
            let gauges = self.clone();
            Box::pin(async move {
                gauges.read().await;
            })
        })
    }
}
