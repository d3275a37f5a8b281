//! The scheduler moves pending evaluations onto the task stream; the reaper ends claims that
//! lapsed (a bot that vanished): the task is delivered again, or fails after its last attempt.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt};
use sqlx::PgPool;
use tracing::Instrument;

use crate::EvalResult;
use crate::model::Status;
use crate::queue::{Queue, Settle};
use crate::store;

/// Moves up to one batch of pending evaluations to the task stream; returns how many.
pub async fn schedule_pending(pool: &PgPool, queue: &Queue) -> EvalResult<usize> {
    let mut tx = pool.begin().await?;
    let rows = store::lock_pending(&mut tx, 100).await?;
    // Every task is sent before any acknowledgement is awaited: JetStream stores them together.
    let mut sent = Vec::with_capacity(rows.len());
    for row in &rows {
        let span = tracing::info_span!("schedule", evaluation_id = row.id, assistant = %row.assistant);
        aap_platform::telemetry::set_parent(&span, &row.trace_context.0);
        match queue.send_task(row).instrument(span.clone()).await {
            Ok(ack) => sent.push((row, ack, span)),
            Err(err) => span.in_scope(|| tracing::warn!(error = %err, "cannot queue evaluation")),
        }
    }
    // A failed publish leaves the row pending for the next round; the Msg-Id makes a publish
    // that did land but was not confirmed harmless to repeat.
    let mut queued = Vec::with_capacity(sent.len());
    for (row, ack, span) in sent {
        match ack.await {
            Ok(_) => queued.push(row),
            Err(err) => span.in_scope(|| tracing::warn!(error = %err, "cannot queue evaluation")),
        }
    }
    let ids: Vec<i64> = queued.iter().map(|row| row.id).collect();
    let marked = store::mark_queued(&mut tx, &ids).await?;
    tx.commit().await?;
    signal_each_target(queue, queued.iter().map(|row| (row.assistant.as_str(), row.plan.as_str()))).await;
    queue.announce(&marked).await;
    Ok(queued.len())
}

/// Tells the bots of each assistant and plan how many of `targets` (one per task) are theirs:
/// one signal a pair.
async fn signal_each_target<'a>(queue: &Queue, targets: impl IntoIterator<Item = (&'a str, &'a str)>) {
    let mut per_target: std::collections::BTreeMap<(&str, &str), usize> = Default::default();
    for target in targets {
        *per_target.entry(target).or_default() += 1;
    }
    for ((assistant, plan), count) in per_target {
        queue.signal_tasks(assistant, plan, count).await;
    }
}

/// Ends lapsed claims; returns how many.
pub async fn reap(pool: &PgPool, queue: &Queue) -> EvalResult<usize> {
    let rows = store::reap_lapsed_claims(pool).await?;
    for row in &rows {
        let status = row.status();
        tracing::warn!(evaluation_id = row.id, %status, attempts = row.attempts, "claim lapsed");
        crate::metrics::claim_lapsed(&row.assistant);
        if status == Status::Failed {
            crate::metrics::failed_for_good(&row.assistant, "lapsed");
        }
        queue.put_back(row).await;
    }
    queue.announce(&rows).await;
    Ok(rows.len())
}

/// Tells JetStream that the delivery of every held claim is in progress, so none is delivered
/// again while its bot works (polling bots hold claims for minutes without heartbeats);
/// returns how many.
pub async fn keep_deliveries(pool: &PgPool, queue: &Queue) -> EvalResult<usize> {
    let subjects = store::held_deliveries(pool).await?;
    for subject in &subjects {
        queue.settle(subject, Settle::Progress).await;
    }
    Ok(subjects.len())
}

/// How long an evaluation may wait before it fails with the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Pending or queued without a bot taking it.
    pub queued: Duration,
    /// Submitted without the answer being stored: asked again, or failed after the last attempt.
    pub submitted: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts { queued: Duration::from_secs(24 * 3600), submitted: Duration::from_secs(120) }
    }
}

/// Longest time between two looks for evaluations past their [`Timeouts`].
const EXPIRE_AT_MOST_EVERY: Duration = Duration::from_secs(10);

impl Timeouts {
    /// How often the scheduler looks for evaluations past these timeouts: a tenth of the
    /// shorter one, at least every `tick` and at most every 10 s. The look reads every live
    /// evaluation (and, between vacuums, the dead index entries of those that finished), so at
    /// the default timeouts it runs every 10 s instead of every tick; an evaluation is ended at
    /// most a tenth of its timeout late.
    pub fn check_every(&self, tick: Duration) -> Duration {
        (self.queued.min(self.submitted) / 10).clamp(tick.min(EXPIRE_AT_MOST_EVERY), EXPIRE_AT_MOST_EVERY)
    }
}

/// Ends the waits past `timeouts`, so no stream waits on them forever: a task no bot took
/// fails; a submitted answer that never reached the database is asked again (or fails after
/// the last attempt). Returns how many. A task message still on the stream for one is
/// dropped as stale when delivered.
pub async fn expire(pool: &PgPool, queue: &Queue, timeouts: Timeouts) -> EvalResult<usize> {
    let rows = store::expire_stale(pool, timeouts.queued.as_secs_f64(), timeouts.submitted.as_secs_f64()).await?;
    let mut requeued = 0;
    for row in &rows {
        let reason = row.failure_reason.as_deref().unwrap_or("");
        if row.status() == Status::Pending {
            tracing::warn!(evaluation_id = row.id, assistant = %row.assistant, attempts = row.attempts, reason,
                "submitted answer lost; asking again");
            crate::metrics::submit_lost(&row.assistant);
            // The lost attempt's delivery, if it was never settled, must not bring a second bot.
            if let Some(subject) = &row.ack_subject {
                queue.settle(subject, Settle::Term).await;
            }
            requeued += 1;
        } else {
            tracing::warn!(evaluation_id = row.id, assistant = %row.assistant, plan = %row.plan, reason,
                "evaluation waited too long");
            crate::metrics::failed_for_good(&row.assistant, "timeout");
        }
    }
    queue.announce(&rows).await;
    if requeued > 0 {
        queue.wake_scheduler().await;
    }
    Ok(rows.len())
}

/// Purges the task stream of what the bots acknowledged ([`Queue::purge_acked`]), then puts
/// the tasks given back meanwhile in line for delivery again.
///
/// nats-server empties a consumer's redelivery queue when its subject is purged, whatever the
/// purge's sequence: a task given back (released, its claim lapsed, its bot gone: a NAK) and
/// not yet delivered again was then left pending until JetStream's own ack wait
/// ([`crate::queue::BACKSTOP_ACK_WAIT`], 2 minutes). So after a purge each such task of the
/// consumers purged is NAKed again (a NAK of one still in line changes nothing), and its bots
/// are signalled; those of the other consumers are still in line and left alone. The database
/// is read after the purge: a task given back later is NAKed after it, so never lost to it.
pub async fn purge_tasks(pool: &PgPool, queue: &Queue) -> EvalResult<PurgedTasks> {
    let purged = queue.purge_acked(&queue.topology().tasks_stream()).await?;
    let mut put_back = 0;
    if !purged.consumers.is_empty() {
        let topology = queue.topology();
        let mut waiting = store::handed_back_deliveries(pool).await?;
        waiting.retain(|(_, assistant, plan)| purged.consumers.contains(&topology.task_consumer(assistant, plan)));
        for (subject, _, _) in &waiting {
            queue.settle(subject, Settle::Nak).await;
        }
        signal_each_target(queue, waiting.iter().map(|(_, assistant, plan)| (assistant.as_str(), plan.as_str()))).await;
        put_back = waiting.len();
    }
    Ok(PurgedTasks { messages: purged.messages, put_back })
}

/// What [`purge_tasks`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgedTasks {
    /// Acknowledged tasks removed from the stream.
    pub messages: u64,
    /// Tasks given back and not yet taken again, put in line again after the purge.
    pub put_back: usize,
}

async fn purge_tasks_every(pool: PgPool, queue: Arc<Queue>, period: Duration) -> std::convert::Infallible {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if let Err(err) = purge_tasks(&pool, &queue).await {
            tracing::warn!(error = %err, "purging acknowledged tasks failed");
        }
    }
}

/// Runs the scheduler and the reaper until `shutdown` resolves: on every wake-up and at
/// least every `tick`.
pub async fn run(
    pool: PgPool,
    queue: Arc<Queue>,
    tick: Duration,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    crate::metrics::register();
    // The bots' acknowledged tasks leave the stream together, a purge each tick, not an fsync
    // at each ack; beside the rounds, which a slow purge never holds up.
    let purging = purge_tasks_every(pool.clone(), queue.clone(), tick);
    tokio::select! {
        () = schedule_until(pool, queue, tick, timeouts, shutdown) => {}
        never = purging => match never {},
    }
}

async fn schedule_until(
    pool: PgPool,
    queue: Arc<Queue>,
    tick: Duration,
    timeouts: Timeouts,
    shutdown: impl Future<Output = ()>,
) {
    let mut wakeups = match queue.client().subscribe(queue.scheduler_wake_subject()).await {
        Ok(sub) => Some(sub),
        Err(err) => {
            tracing::warn!(error = %err, "scheduler wake-ups unavailable; ticking only");
            None
        }
    };
    let mut interval = tokio::time::interval(tick);
    let mut kept_at = std::time::Instant::now();
    let expire_every = timeouts.check_every(tick);
    let mut expired_at: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let ticked = tokio::select! {
            _ = &mut shutdown => break,
            _ = interval.tick() => true,
            Some(_) = async { match wakeups.as_mut() { Some(s) => s.next().await, None => None } } => false,
        };
        // The wake-ups that queued up meanwhile (one per Ask that created evaluations) are
        // served by this round: under load one round takes what many Asks created.
        if let Some(wakeups) = wakeups.as_mut() {
            while let Some(Some(_)) = wakeups.next().now_or_never() {}
        }
        loop {
            match schedule_pending(&pool, &queue).await {
                Ok(100..) => continue,
                Ok(_) => break,
                Err(err) => {
                    tracing::warn!(error = %err, "scheduling failed");
                    break;
                }
            }
        }
        // Lapsed claims and long waits are a matter of time: looked for once a tick, not at
        // every wake-up (a tick that is due is taken in turn however many wake-ups wait); long
        // waits at most every [`Timeouts::check_every`].
        if ticked {
            if let Err(err) = reap(&pool, &queue).await {
                tracing::warn!(error = %err, "reaping lapsed claims failed");
            }
            if expired_at.is_none_or(|at| at.elapsed() >= expire_every) {
                expired_at = Some(std::time::Instant::now());
                if let Err(err) = expire(&pool, &queue, timeouts).await {
                    tracing::warn!(error = %err, "expiring evaluations that waited too long failed");
                }
            }
        }
        if kept_at.elapsed() >= crate::queue::KEEPALIVE_EVERY {
            kept_at = std::time::Instant::now();
            if let Err(err) = keep_deliveries(&pool, &queue).await {
                tracing::warn!(error = %err, "keeping the deliveries of held claims alive failed");
            }
        }
    }
    tracing::info!("scheduler stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeouts(queued: u64, submitted: u64) -> Timeouts {
        Timeouts { queued: Duration::from_secs(queued), submitted: Duration::from_secs(submitted) }
    }

    #[test]
    fn long_waits_are_looked_for_at_a_tenth_of_the_shorter_timeout_within_a_tick_and_10_s() {
        let second = Duration::from_secs(1);
        assert_eq!(Timeouts::default().check_every(second), Duration::from_secs(10), "the defaults: 24 h and 120 s");
        assert_eq!(timeouts(3600, 50).check_every(second), Duration::from_secs(5));
        assert_eq!(timeouts(2, 120).check_every(Duration::from_millis(200)), Duration::from_millis(200), "a tick");
        assert_eq!(timeouts(1, 1).check_every(Duration::from_millis(50)), Duration::from_millis(100));
        assert_eq!(timeouts(3600, 3600).check_every(Duration::from_secs(30)), Duration::from_secs(10), "a long tick");
    }
}
