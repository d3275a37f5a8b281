//! The evaluation pipeline's metrics: what the gateway, the scheduler's reaper and the ingest
//! count as they work, and the gauges [`refresh`] reads from PostgreSQL and JetStream
//! (evaluations by state, the oldest claim, queue depth per consumer).
//!
//! [`refresh`] reads shared state, the same from every replica: run it in one process (where
//! the scheduler runs), or a sum over replicas counts it twice.

use std::sync::LazyLock;

use aap_platform::assistants::ASSISTANTS;
use aap_platform::metrics::{self, Counters, Gauges, GaugesF64, Histograms, labels};
use futures::TryStreamExt as _;
use sqlx::PgPool;

use crate::queue::Queue;
use crate::store;

struct Metrics {
    evaluations: Gauges,
    oldest_claim: GaugesF64,
    queue_messages: Gauges,
    claims: Counters,
    task_redeliveries: Counters,
    submissions: Counters,
    releases: Counters,
    failed: Counters,
    lapsed_claims: Counters,
    lost_submits: Counters,
    answered: Counters,
    ingest_lag: Histograms,
    ingest_redeliveries: Counters,
    dead_letters: Counters,
    purged: Counters,
    partials: Counters,
    batch_sizes: Histograms,
    html_dropped: Counters,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    evaluations: metrics::gauge(
        "evaluations",
        "Live evaluations by assistant and state (pending, queued, claimed, submitted), read from PostgreSQL.",
    ),
    oldest_claim: metrics::gauge_f64(
        "evaluations_oldest_claim_age_seconds",
        "Age of the oldest claim a bot holds, by assistant (0 when none is held).",
    ),
    queue_messages: metrics::gauge(
        "queue_messages",
        "Messages of a JetStream consumer by state: pending (not yet delivered) and ack_pending (delivered, \
         not yet settled); consumer is tasks-<assistant>-<plan> or ingest.",
    ),
    claims: metrics::counter("evaluations_claims", "Tasks bots claimed, by assistant."),
    task_redeliveries: metrics::counter(
        "task_redeliveries",
        "Task deliveries that were not the message's first (a lapsed or released claim, a lost settle), by assistant.",
    ),
    submissions: metrics::counter("evaluations_submissions", "Answers bots submitted, by assistant."),
    releases: metrics::counter(
        "evaluations_releases",
        "Tasks bots gave back, by assistant, failure class (the bot's class, no-citations, or other) and \
         outcome (requeued, failed).",
    ),
    failed: metrics::counter(
        "evaluations_failed",
        "Evaluations that failed for good, by assistant and cause (released: the bot gave up; lapsed: the last \
         claim lapsed; exhausted: no attempts left; timeout: waited too long; unstorable: the answer could not \
         be stored).",
    ),
    lapsed_claims: metrics::counter(
        "evaluations_lapsed_claims",
        "Claims the reaper ended because their bot stopped sending heartbeats, by assistant.",
    ),
    lost_submits: metrics::counter(
        "evaluations_lost_submits",
        "Submitted answers that never reached the database within --submitted-timeout-secs (lost between the \
         gateway's mark and the results stream), asked again, by assistant.",
    ),
    answered: metrics::counter("evaluations_answered", "Answers the ingest stored, by assistant."),
    ingest_lag: metrics::histogram(
        "ingest_lag_seconds",
        "Time from a result's publish on the results stream to its storage, by assistant.",
        metrics::FAST_SECONDS,
    ),
    ingest_redeliveries: metrics::counter(
        "ingest_redeliveries",
        "Results the ingest received again (not stored the first time, or their ack was lost).",
    ),
    dead_letters: metrics::counter(
        "dead_letters",
        "Messages sent to a dead-letter subject, by what they were (results).",
    ),
    purged: metrics::counter(
        "queue_purged_messages",
        "Acknowledged messages purged from the task and result streams, by stream (they keep limits retention: \
         an ack removes nothing, a purge a second removes what was acked).",
    ),
    partials: metrics::counter(
        "partials_published",
        "Partial answers (the text typed so far) bots reported on tasks they held and the gateway announced to \
         the prompt's streams over core NATS, by assistant.",
    ),
    html_dropped: metrics::counter(
        "results_html_dropped",
        "Answers taken without the page HTML their bot sent, since with it the result was larger than the results \
         stream takes (the NATS server's max_payload), by assistant.",
    ),
    batch_sizes: metrics::histogram(
        "statement_batch_size",
        "Requests one statement served (claim, submit, store): the ones that arrived while the statement before \
         ran share the next.",
        metrics::BATCH_SIZES,
    ),
});

/// The live states the `aap_evaluations` gauge reports.
const LIVE_STATES: [&str; 4] = ["pending", "queued", "claimed", "submitted"];

/// Makes the pipeline's families appear in scrapes from the start.
pub fn register() {
    LazyLock::force(&METRICS);
}

fn assistant(name: &str) -> Vec<(&'static str, String)> {
    labels([("assistant", name)])
}

pub(crate) fn claimed(name: &str) {
    METRICS.claims.get_or_create(&assistant(name)).inc();
}

pub(crate) fn task_delivered(name: &str, delivered: i64) {
    if delivered > 1 {
        METRICS.task_redeliveries.get_or_create(&assistant(name)).inc();
    }
}

pub(crate) fn submitted(name: &str) {
    METRICS.submissions.get_or_create(&assistant(name)).inc();
}

pub(crate) fn html_dropped(name: &str) {
    METRICS.html_dropped.get_or_create(&assistant(name)).inc();
}

/// The failure class a release reason starts with: the bot's (`timeout: ...`, see
/// `aap_proto::FAILURE_CLASSES`), `no-citations`, or `other`.
pub fn release_class(reason: &str) -> &'static str {
    let head = reason.split(':').next().unwrap_or_default().trim();
    if let Some(class) = aap_proto::FAILURE_CLASSES.iter().find(|class| **class == head) {
        return class;
    }
    if reason.starts_with("No citations found") {
        return "no-citations";
    }
    "other"
}

pub(crate) fn released(name: &str, reason: &str, failed: bool) {
    let outcome = if failed { "failed" } else { "requeued" };
    METRICS
        .releases
        .get_or_create(&labels([("assistant", name), ("class", release_class(reason)), ("outcome", outcome)]))
        .inc();
    if failed {
        failed_for_good(name, "released");
    }
}

pub(crate) fn failed_for_good(name: &str, cause: &'static str) {
    METRICS.failed.get_or_create(&labels([("assistant", name), ("cause", cause)])).inc();
}

pub(crate) fn claim_lapsed(name: &str) {
    METRICS.lapsed_claims.get_or_create(&assistant(name)).inc();
}

pub(crate) fn submit_lost(name: &str) {
    METRICS.lost_submits.get_or_create(&assistant(name)).inc();
}

pub(crate) fn ingested(name: &str, stored: bool, published: Option<async_nats::jetstream::message::Info<'_>>) {
    if let Some(info) = published {
        let lag = (async_nats::datetime::now() - info.published).as_seconds_f64().max(0.0);
        METRICS.ingest_lag.get_or_create(&assistant(name)).observe(lag);
    }
    if stored {
        METRICS.answered.get_or_create(&assistant(name)).inc();
    }
}

pub(crate) fn result_delivered(delivered: i64) {
    if delivered > 1 {
        METRICS.ingest_redeliveries.get_or_create(&Vec::new()).inc();
    }
}

pub(crate) fn dead_lettered(what: &str) {
    METRICS.dead_letters.get_or_create(&labels([("what", what)])).inc();
}

pub(crate) fn purged(stream: &str, messages: u64) {
    METRICS.purged.get_or_create(&labels([("stream", stream)])).inc_by(messages);
}

pub(crate) fn batch_size(statement: &'static str, size: usize) {
    METRICS.batch_sizes.get_or_create(&labels([("statement", statement)])).observe(size as f64);
}

pub(crate) fn partial_published(name: &str) {
    METRICS.partials.get_or_create(&assistant(name)).inc();
}

/// Errors reading the gauges' sources.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot read consumer info: {0}")]
    Queue(String),
}

/// Reads the gauges from their sources once: evaluations by assistant and state and the oldest
/// claim (two small queries over partial indexes), and every task consumer's and the ingest's
/// pending and unacknowledged messages.
pub async fn refresh(pool: &PgPool, queue: &Queue) -> Result<(), RefreshError> {
    let counts = store::live_counts(pool).await?;
    for known in ASSISTANTS {
        for state in LIVE_STATES {
            let count = counts.iter().find(|c| c.0 == known.id && c.1 == state).map_or(0, |c| c.2);
            METRICS.evaluations.get_or_create(&labels([("assistant", known.id), ("state", state)])).set(count);
        }
    }
    let oldest = store::oldest_claims(pool).await?;
    for known in ASSISTANTS {
        let age = oldest.iter().find(|o| o.0 == known.id).map_or(0.0, |o| o.1);
        METRICS.oldest_claim.get_or_create(&assistant(known.id)).set(age);
    }
    let topology = queue.topology();
    // By consumer name: `ingest` reads the result stream and the result batch stream, and its
    // gauge counts both.
    let mut messages: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for stream_name in [topology.tasks_stream(), topology.results_stream(), topology.results_batches_stream()] {
        let stream =
            queue.jetstream().get_stream(&stream_name).await.map_err(|e| RefreshError::Queue(e.to_string()))?;
        let consumers: Vec<_> =
            stream.consumers().try_collect().await.map_err(|e| RefreshError::Queue(e.to_string()))?;
        for info in consumers {
            let counts = messages.entry(info.name.clone()).or_default();
            counts.0 = counts.0.saturating_add(info.num_pending);
            counts.1 = counts.1.saturating_add(info.num_ack_pending as u64);
        }
    }
    for (consumer, (pending, ack_pending)) in messages {
        let (pending, ack_pending) =
            (i64::try_from(pending).unwrap_or(i64::MAX), i64::try_from(ack_pending).unwrap_or(i64::MAX));
        METRICS
            .queue_messages
            .get_or_create(&labels([("consumer", consumer.as_str()), ("state", "pending")]))
            .set(pending);
        METRICS
            .queue_messages
            .get_or_create(&labels([("consumer", consumer.as_str()), ("state", "ack_pending")]))
            .set(ack_pending);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_reasons_are_classed_by_their_leading_failure_class() {
        assert_eq!(release_class("timeout: no answer in 120 s (after 3 attempts) [evidence: x]"), "timeout");
        assert_eq!(release_class("selector-missing: no element for role turn"), "selector-missing");
        assert_eq!(
            release_class("prompt-refused: the assistant does not take the prompt: the prompt has 2100 characters"),
            "prompt-refused"
        );
        assert_eq!(release_class("No citations found after 3 attempts"), "no-citations");
        assert_eq!(release_class("the bot's claim stream closed"), "other");
        assert_eq!(release_class("timeouts: not a class"), "other");
    }
}
