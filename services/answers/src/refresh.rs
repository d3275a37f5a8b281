//! Refresh schedules: an operator keeps a set of prompts fresh. Every `every`, each prompt of
//! the set gets a refresh evaluation for each target unless one is live; its answer supersedes
//! the one served, and the older stays in the history.
//!
//! Every replica runs the loop; `FOR UPDATE SKIP LOCKED` lets one of them take a due schedule,
//! and the one-live-evaluation index keeps a refresh from being doubled.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aap_evaluations::queue::Queue;
use aap_evaluations::store as evals;
use aap_platform::input;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use tokio::sync::Notify;

use crate::domain::{AnswersError, AnswersResult, Target, parse_targets};

/// Most prompts one schedule keeps fresh.
pub const MAX_PROMPTS: usize = 10_000;
/// Shortest and longest interval.
pub const MIN_EVERY: Duration = Duration::from_secs(60);
pub const MAX_EVERY: Duration = Duration::from_secs(366 * 24 * 3600);

/// A schedule as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Schedule {
    pub name: String,
    pub prompt_ids: Vec<i64>,
    pub targets: Json<Vec<(String, String)>>,
    pub every_seconds: i64,
    pub next_run_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub created_by: String,
}

/// What an operator asks for, validated.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub name: String,
    pub prompt_ids: Vec<i64>,
    pub targets: Vec<Target>,
    pub every: Duration,
    pub run_now: bool,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> AnswersError {
    AnswersError::InvalidArgument { field, reason: reason.into() }
}

/// Checks a schedule's name: 1 to 100 characters of one line.
pub fn check_name(name: &str) -> AnswersResult<String> {
    let name = name.trim();
    if name.is_empty() {
        return Err(invalid("name", "must not be empty"));
    }
    input::check_line(name, 100).map_err(|reason| invalid("name", reason))?;
    Ok(name.to_owned())
}

/// Checks a schedule: name, 1 to 10,000 distinct prompt ids, targets, an interval between a
/// minute and a year.
pub fn check(
    name: &str,
    prompt_ids: Vec<i64>,
    targets: Vec<(String, String)>,
    every: Option<prost_types::Duration>,
    run_now: bool,
) -> AnswersResult<NewSchedule> {
    let name = check_name(name)?;
    let mut ids = prompt_ids;
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Err(invalid("prompt_ids", "name at least one prompt"));
    }
    if ids.len() > MAX_PROMPTS {
        return Err(invalid("prompt_ids", format!("{} prompts; the limit is {MAX_PROMPTS}", ids.len())));
    }
    // Sorted: the first is the smallest. Prompts are numbered from 1, as Ask, Watch and History
    // say of a prompt_id.
    if let Some(id) = ids.first().filter(|id| **id < 1) {
        return Err(invalid("prompt_ids", format!("{id} is not a prompt id: ids start at 1")));
    }
    let targets = parse_targets(targets)?;
    let Some(every) = every else { return Err(invalid("every", "say how often, e.g. 86400s")) };
    let nanos = input::check_nanos(every.nanos).map_err(|reason| invalid("every", reason))?;
    if every.seconds < 0 {
        return Err(invalid("every", format!("{}s is negative: say how often, e.g. 86400s", every.seconds)));
    }
    let every = Duration::new(every.seconds as u64, nanos);
    if !(MIN_EVERY..=MAX_EVERY).contains(&every) {
        return Err(invalid("every", format!("{}s is outside 60s to one year", every.as_secs())));
    }
    Ok(NewSchedule { name, prompt_ids: ids, targets, every, run_now })
}

/// Stores the schedule (replacing the one of that name); fails with NOT_FOUND naming a prompt
/// that does not exist.
pub async fn save(pool: &PgPool, schedule: &NewSchedule, created_by: &str) -> AnswersResult<Schedule> {
    let missing: Vec<i64> = sqlx::query_scalar(
        "SELECT u.id FROM unnest($1::bigint[]) AS u(id) \
         WHERE NOT EXISTS (SELECT 1 FROM prompts p WHERE p.id = u.id) ORDER BY u.id LIMIT 1",
    )
    .bind(&schedule.prompt_ids)
    .fetch_all(pool)
    .await?;
    if let Some(id) = missing.first() {
        return Err(AnswersError::PromptNotFound(*id));
    }
    let targets: Vec<(String, String)> =
        schedule.targets.iter().map(|t| (t.assistant.clone(), t.plan.clone())).collect();
    let first_in = if schedule.run_now { Duration::ZERO } else { schedule.every };
    let row = sqlx::query_as(
        "INSERT INTO refresh_schedules (name, prompt_ids, targets, every_seconds, next_run_at, created_by) \
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5), $6) \
         ON CONFLICT (name) DO UPDATE SET prompt_ids = $2, targets = $3, every_seconds = $4, \
             next_run_at = now() + make_interval(secs => $5), created_by = $6 \
         RETURNING name, prompt_ids, targets, every_seconds, next_run_at, last_run_at, created_by",
    )
    .bind(&schedule.name)
    .bind(&schedule.prompt_ids)
    .bind(Json(targets))
    .bind(schedule.every.as_secs() as i64)
    .bind(first_in.as_secs_f64())
    .bind(created_by)
    .fetch_one(pool)
    .await?;
    Ok(row)
}

/// Every schedule, by name.
pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<Schedule>> {
    sqlx::query_as(
        "SELECT name, prompt_ids, targets, every_seconds, next_run_at, last_run_at, created_by \
         FROM refresh_schedules ORDER BY name",
    )
    .fetch_all(pool)
    .await
}

/// Deletes a schedule; whether there was one.
pub async fn delete(pool: &PgPool, name: &str) -> sqlx::Result<bool> {
    let result = sqlx::query("DELETE FROM refresh_schedules WHERE name = $1").bind(name).execute(pool).await?;
    Ok(result.rows_affected() == 1)
}

/// Runs the schedules that are due, one transaction each; returns the evaluations created.
pub async fn run_due(pool: &PgPool, max_attempts: i32) -> sqlx::Result<u64> {
    let mut created = 0;
    loop {
        let mut tx = pool.begin().await?;
        let due: Option<Schedule> = sqlx::query_as(
            "SELECT name, prompt_ids, targets, every_seconds, next_run_at, last_run_at, created_by \
             FROM refresh_schedules WHERE next_run_at <= now() ORDER BY next_run_at LIMIT 1 \
             FOR UPDATE SKIP LOCKED",
        )
        .fetch_optional(&mut *tx)
        .await?;
        let Some(schedule) = due else { return Ok(created) };
        let targets = parse_targets(schedule.targets.0.iter().cloned()).unwrap_or_default();
        let trace = HashMap::new();
        let mut made = 0;
        let prompt_ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM prompts WHERE id = ANY($1) ORDER BY id")
            .bind(&schedule.prompt_ids)
            .fetch_all(&mut *tx)
            .await?;
        for prompt_id in &prompt_ids {
            for target in &targets {
                // refresh = true also asks a target never answered.
                if let Some((_, true)) = evals::create_or_refresh(
                    &mut tx,
                    *prompt_id,
                    &target.assistant,
                    &target.plan,
                    max_attempts,
                    &trace,
                    true,
                )
                .await?
                {
                    made += 1;
                }
            }
        }
        sqlx::query(
            "UPDATE refresh_schedules SET last_run_at = now(), \
             next_run_at = now() + make_interval(secs => every_seconds) WHERE name = $1",
        )
        .bind(&schedule.name)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(schedule = %schedule.name, evaluations = made, "refresh schedule ran");
        created += made;
    }
}

/// The replica's loop: runs due schedules every `every`, or at once when woken (a schedule
/// saved with `run_now`).
pub fn spawn(pool: PgPool, queue: Arc<Queue>, every: Duration, max_attempts: i32, wake: Arc<Notify>) {
    tokio::spawn(async move {
        loop {
            match run_due(&pool, max_attempts).await {
                Ok(0) => {}
                Ok(_) => queue.wake_scheduler().await,
                Err(err) => tracing::warn!(error = %err, "cannot run the refresh schedules; next round tries again"),
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = wake.notified() => {}
            }
        }
    });
}
