//! All SQL over `evaluations` and `answers`. Every write is keyed so that a retry or a
//! redelivery changes nothing.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::types::Json;
// Queries built with format! only splice in the constant column lists above, never input.
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use crate::model::{Citation, Product, ResultMessage, Status};

/// One evaluation as stored, with its prompt's text. A prompt's announcements carry its changed
/// evaluations in JSON, without the prompt's text (the replicas have it).
#[derive(Debug, Clone, Default, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct EvaluationRow {
    pub id: i64,
    pub prompt_id: i64,
    #[serde(default, skip_serializing)]
    pub prompt_text: String,
    pub assistant: String,
    pub plan: String,
    pub status: String,
    pub attempts: i32,
    pub max_attempts: i32,
    pub ack_subject: Option<String>,
    pub claim_expires_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    pub trace_context: Json<HashMap<String, String>>,
    pub updated_at: DateTime<Utc>,
    /// The bot id that holds (or last held) the claim.
    pub claimed_by: Option<String>,
    /// The principal whose bot holds (or last held) the claim.
    pub claimed_principal: Option<String>,
    /// How many times the row changed (a trigger counts every update): of two copies of it,
    /// the one with the higher revision is the newer.
    pub revision: i64,
}

impl EvaluationRow {
    /// The stored status; an unknown value is a schema violation and reads as failed.
    pub fn status(&self) -> Status {
        self.status.parse().unwrap_or(Status::Failed)
    }
}

/// A stored answer.
#[derive(Debug, Clone, Default, sqlx::FromRow, serde::Serialize, serde::Deserialize)]
pub struct AnswerRow {
    pub evaluation_id: i64,
    pub prompt_id: i64,
    pub assistant: String,
    pub plan: String,
    pub response_text: String,
    pub response_markdown: String,
    pub citations: Json<Vec<Citation>>,
    pub captured_at: DateTime<Utc>,
    /// `text` or `no_overview`.
    pub kind: String,
    pub response_html: String,
    pub model: String,
    pub web_search: Option<bool>,
    pub ttft_ms: Option<i64>,
    pub total_ms: Option<i64>,
    pub adapter_version: String,
    pub adapter_fingerprint: String,
    pub finish_signals: Vec<String>,
    pub missing_roles: Vec<String>,
    pub read_by_fallback: bool,
    pub confidence: Option<f32>,
    /// The assistant stopped the answer at its own length limit (absent in an answer a replica
    /// before the column told).
    #[serde(default)]
    pub cut_short: bool,
    /// Another model than the plan's answered (absent in an answer a replica before the column
    /// told).
    #[serde(default)]
    pub model_fallback: bool,
    pub search_queries: Json<Vec<String>>,
    pub products: Json<Vec<Product>>,
    pub bot_id: String,
    /// The leased account (its id as text), empty when none was leased.
    pub account_id: String,
    pub account_label: String,
}

const SELECT_EVALUATION: &str = "SELECT e.id, e.prompt_id, p.text AS prompt_text, e.assistant, e.plan, e.status, \
     e.attempts, e.max_attempts, e.ack_subject, e.claim_expires_at, e.failure_reason, \
     e.trace_context, e.updated_at, e.claimed_by, e.claimed_principal, e.revision \
     FROM evaluations e JOIN prompts p ON p.id = e.prompt_id";

const RETURNING_EVALUATION: &str = "RETURNING id, prompt_id, (SELECT text FROM prompts WHERE id = prompt_id) AS prompt_text, \
     assistant, plan, status, attempts, max_attempts, ack_subject, claim_expires_at, failure_reason, \
     trace_context, updated_at, claimed_by, claimed_principal, revision";

/// [`RETURNING_EVALUATION`] of an UPDATE that joins other rows to `evaluations e`.
const RETURNING_EVALUATION_E: &str = "RETURNING e.id, e.prompt_id, (SELECT text FROM prompts WHERE id = e.prompt_id) AS prompt_text, \
     e.assistant, e.plan, e.status, e.attempts, e.max_attempts, e.ack_subject, e.claim_expires_at, e.failure_reason, \
     e.trace_context, e.updated_at, e.claimed_by, e.claimed_principal, e.revision";

/// Who holds a claim, or asks to act on one: the bot's principal, and its bot id when the
/// caller names one (an empty bot id matches any bot of the principal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub principal: String,
    pub bot_id: String,
}

impl Holder {
    pub fn new(principal: &str, bot_id: &str) -> Holder {
        Holder { principal: principal.to_owned(), bot_id: bot_id.trim().to_owned() }
    }

    /// Whether this caller holds the claim recorded on `row`.
    pub fn holds(&self, row: &EvaluationRow) -> bool {
        row.claimed_principal.as_deref() == Some(self.principal.as_str())
            && (self.bot_id.is_empty() || row.claimed_by.as_deref() == Some(self.bot_id.as_str()))
    }
}

/// The condition a claim's holder must meet, with `$p` (principal) and `$b` (bot id) bound.
fn held_by(p: u8, b: u8) -> String {
    format!("claimed_principal = ${p} AND (${b} = '' OR claimed_by = ${b})")
}

/// Creates a pending evaluation for the target unless one is live or answered already.
/// Returns the live evaluation (new or existing) and whether it was created; `None` when the
/// target is answered.
pub async fn create_evaluation(
    conn: &mut PgConnection,
    prompt_id: i64,
    assistant: &str,
    plan: &str,
    max_attempts: i32,
    trace_context: &HashMap<String, String>,
) -> sqlx::Result<Option<(EvaluationRow, bool)>> {
    create_or_refresh(conn, prompt_id, assistant, plan, max_attempts, trace_context, false).await
}

/// [`create_evaluation`], and with `refresh` also for a target answered already: its answer
/// is kept, and the new one supersedes it for serving once stored. Never a second live one.
pub async fn create_or_refresh(
    conn: &mut PgConnection,
    prompt_id: i64,
    assistant: &str,
    plan: &str,
    max_attempts: i32,
    trace_context: &HashMap<String, String>,
    refresh: bool,
) -> sqlx::Result<Option<(EvaluationRow, bool)>> {
    let wanted = [Wanted { assistant: assistant.to_owned(), plan: plan.to_owned(), refresh }];
    Ok(create_many(conn, prompt_id, &wanted, max_attempts, trace_context).await?.pop())
}

/// A target an Ask wants evaluated, and whether its answer (if any) is to be refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub assistant: String,
    pub plan: String,
    pub refresh: bool,
}

/// [`create_or_refresh`] for several targets of one prompt in one statement (a second only
/// when some target has a live evaluation already): the live evaluation of each target
/// (new or existing) and whether it was created; a target answered (and not refreshed) has
/// none. Targets named twice count once.
pub async fn create_many(
    conn: &mut PgConnection,
    prompt_id: i64,
    wanted: &[Wanted],
    max_attempts: i32,
    trace_context: &HashMap<String, String>,
) -> sqlx::Result<Vec<(EvaluationRow, bool)>> {
    let mut assistants: Vec<&str> = Vec::new();
    let mut plans: Vec<&str> = Vec::new();
    let mut refresh: Vec<bool> = Vec::new();
    for target in wanted {
        let seen = assistants.iter().zip(&plans).any(|(a, p)| *a == target.assistant && *p == target.plan);
        if !seen {
            assistants.push(&target.assistant);
            plans.push(&target.plan);
            refresh.push(target.refresh);
        }
    }
    if assistants.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "INSERT INTO evaluations (prompt_id, assistant, plan, max_attempts, trace_context) \
         SELECT $1, w.assistant, w.plan, $4, $5 FROM unnest($2::text[], $3::text[], $6::bool[]) \
             AS w(assistant, plan, refresh) \
         WHERE w.refresh OR NOT EXISTS (SELECT 1 FROM evaluations e WHERE e.prompt_id = $1 \
                                        AND e.assistant = w.assistant AND e.plan = w.plan AND e.status = 'answered') \
         ON CONFLICT (prompt_id, assistant, plan) \
             WHERE status IN ('pending', 'queued', 'claimed', 'submitted') DO NOTHING \
         {RETURNING_EVALUATION}"
    );
    let created: Vec<EvaluationRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(prompt_id)
        .bind(&assistants)
        .bind(&plans)
        .bind(max_attempts)
        .bind(Json(trace_context))
        .bind(&refresh)
        .fetch_all(&mut *conn)
        .await?;
    let mut out: Vec<(EvaluationRow, bool)> = created.into_iter().map(|row| (row, true)).collect();
    if out.len() == assistants.len() {
        return Ok(out);
    }
    // The others are live already (or answered, and then not wanted).
    let sql = format!(
        "{SELECT_EVALUATION} JOIN unnest($2::text[], $3::text[]) AS w(assistant, plan) \
         ON e.assistant = w.assistant AND e.plan = w.plan \
         WHERE e.prompt_id = $1 AND e.status IN ('pending', 'queued', 'claimed', 'submitted')"
    );
    let live: Vec<EvaluationRow> =
        sqlx::query_as(AssertSqlSafe(sql)).bind(prompt_id).bind(&assistants).bind(&plans).fetch_all(&mut *conn).await?;
    for row in live {
        if !out.iter().any(|(created, _)| created.id == row.id) {
            out.push((row, false));
        }
    }
    Ok(out)
}

/// Every evaluation of a prompt, oldest first.
pub async fn evaluations_of_prompt(pool: &PgPool, prompt_id: i64) -> sqlx::Result<Vec<EvaluationRow>> {
    let sql = format!("{SELECT_EVALUATION} WHERE e.prompt_id = $1 ORDER BY e.id");
    sqlx::query_as(AssertSqlSafe(sql)).bind(prompt_id).fetch_all(pool).await
}

/// The evaluations of several prompts, by prompt and id (a replica's sweep of the prompts it
/// follows).
pub async fn evaluations_of_prompts(pool: &PgPool, prompt_ids: &[i64]) -> sqlx::Result<Vec<EvaluationRow>> {
    let sql = format!("{SELECT_EVALUATION} WHERE e.prompt_id = ANY($1) ORDER BY e.prompt_id, e.id");
    sqlx::query_as(AssertSqlSafe(sql)).bind(prompt_ids).fetch_all(pool).await
}

/// The answers of a prompt that serve: the newest for each assistant and plan (the older stay
/// in the history, see [`answers_of_target`]), so a prompt refreshed for years reads as little as
/// one answered once. `response_html` is empty unless `with_html` (pages run to megabytes, and
/// few callers want them).
pub async fn current_answers_of_prompt(pool: &PgPool, prompt_id: i64, with_html: bool) -> sqlx::Result<Vec<AnswerRow>> {
    let html = if with_html { "a.response_html" } else { "''::text AS response_html" };
    let sql = format!(
        "SELECT DISTINCT ON (a.assistant, a.plan) a.evaluation_id, a.prompt_id, a.assistant, a.plan, a.response_text, a.response_markdown, \
         a.citations, a.captured_at, a.kind, {html}, a.model, a.web_search, a.ttft_ms, a.total_ms, \
         a.adapter_version, a.adapter_fingerprint, a.finish_signals, a.missing_roles, a.read_by_fallback, \
         a.confidence, a.cut_short, a.model_fallback, a.search_queries, a.products, a.bot_id, \
         COALESCE(s.id::text, '') AS account_id, COALESCE(s.label, '') AS account_label \
         FROM answers a \
         LEFT JOIN session_leases l ON l.id = CASE WHEN a.lease_id ~ '^[0-9a-fA-F-]{{36}}$' THEN a.lease_id::uuid END \
         LEFT JOIN session_accounts s ON s.id = l.account_id \
         WHERE a.prompt_id = $1 ORDER BY a.assistant, a.plan, a.evaluation_id DESC"
    );
    sqlx::query_as(AssertSqlSafe(sql)).bind(prompt_id).fetch_all(pool).await
}

/// Every answer of a prompt for one assistant (and plan, unless `plan` is `None`), oldest first,
/// at most `limit` of the newest.
pub async fn answers_of_target(
    pool: &PgPool,
    prompt_id: i64,
    assistant: &str,
    plan: Option<&str>,
    with_html: bool,
    limit: i64,
) -> sqlx::Result<Vec<AnswerRow>> {
    let html = if with_html { "a.response_html" } else { "''::text AS response_html" };
    let sql = format!(
        "SELECT * FROM (SELECT a.evaluation_id, a.prompt_id, a.assistant, a.plan, a.response_text, \
         a.response_markdown, a.citations, a.captured_at, a.kind, {html}, a.model, a.web_search, a.ttft_ms, \
         a.total_ms, a.adapter_version, a.adapter_fingerprint, a.finish_signals, a.missing_roles, \
         a.read_by_fallback, a.confidence, a.cut_short, a.model_fallback, a.search_queries, a.products, \
         a.bot_id, COALESCE(s.id::text, '') AS account_id, COALESCE(s.label, '') AS account_label \
         FROM answers a \
         LEFT JOIN session_leases l ON l.id = CASE WHEN a.lease_id ~ '^[0-9a-fA-F-]{{36}}$' THEN a.lease_id::uuid END \
         LEFT JOIN session_accounts s ON s.id = l.account_id \
         WHERE a.prompt_id = $1 AND a.assistant = $2 AND ($3::text IS NULL OR a.plan = $3) \
         ORDER BY a.evaluation_id DESC LIMIT $4) newest ORDER BY evaluation_id"
    );
    sqlx::query_as(AssertSqlSafe(sql)).bind(prompt_id).bind(assistant).bind(plan).bind(limit).fetch_all(pool).await
}

/// The page HTML of one evaluation's answer (empty when none is stored).
pub async fn answer_html(pool: &PgPool, evaluation_id: i64) -> sqlx::Result<String> {
    let html: Option<(String,)> = sqlx::query_as("SELECT response_html FROM answers WHERE evaluation_id = $1")
        .bind(evaluation_id)
        .fetch_optional(pool)
        .await?;
    Ok(html.map(|(html,)| html).unwrap_or_default())
}

/// One evaluation by id.
pub async fn evaluation(pool: &PgPool, id: i64) -> sqlx::Result<Option<EvaluationRow>> {
    let sql = format!("{SELECT_EVALUATION} WHERE e.id = $1");
    sqlx::query_as(AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await
}

/// Locks up to `limit` pending evaluations in `conn`'s transaction for the scheduler.
pub async fn lock_pending(conn: &mut PgConnection, limit: i64) -> sqlx::Result<Vec<EvaluationRow>> {
    let sql =
        format!("{SELECT_EVALUATION} WHERE e.status = 'pending' ORDER BY e.id LIMIT $1 FOR UPDATE OF e SKIP LOCKED");
    sqlx::query_as(AssertSqlSafe(sql)).bind(limit).fetch_all(&mut *conn).await
}

/// Marks evaluations as on the task stream; returns them as they are now.
pub async fn mark_queued(conn: &mut PgConnection, ids: &[i64]) -> sqlx::Result<Vec<EvaluationRow>> {
    let sql = format!(
        "UPDATE evaluations SET status = 'queued', updated_at = now() WHERE id = ANY($1) AND status = 'pending' \
         {RETURNING_EVALUATION}"
    );
    sqlx::query_as(AssertSqlSafe(sql)).bind(ids).fetch_all(&mut *conn).await
}

/// What happened when a bot tried to claim a delivered task.
#[derive(Debug)]
pub enum ClaimOutcome {
    /// The bot holds it now.
    Claimed(EvaluationRow),
    /// It ran out of attempts with this delivery and is now failed.
    Exhausted(EvaluationRow),
    /// It is answered, failed or unknown: the delivery is stale.
    Stale,
}

/// Claims a delivered task for a bot: one more attempt, a claim until now + `ttl`.
///
/// A delivery may reach a bot before the scheduler commits `queued` (it publishes inside its
/// transaction): `pending` is claimable, and the update then waits for that commit.
pub async fn claim(
    pool: &PgPool,
    id: i64,
    ack_subject: &str,
    holder: &Holder,
    ttl: Duration,
) -> sqlx::Result<ClaimOutcome> {
    let sql = format!(
        "UPDATE evaluations SET status = 'claimed', attempts = attempts + 1, ack_subject = $2, \
         claimed_by = $3, claimed_at = now(), claim_expires_at = now() + make_interval(secs => $4), \
         claimed_principal = $5, updated_at = now() \
         WHERE id = $1 AND status IN ('pending', 'queued', 'claimed') AND attempts < max_attempts \
         {RETURNING_EVALUATION}"
    );
    let claimed: Option<EvaluationRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(id)
        .bind(ack_subject)
        .bind(&holder.bot_id)
        .bind(ttl.as_secs_f64())
        .bind(&holder.principal)
        .fetch_optional(pool)
        .await?;
    if let Some(row) = claimed {
        return Ok(ClaimOutcome::Claimed(row));
    }
    let sql = format!(
        "UPDATE evaluations SET status = 'failed', ack_subject = $2, claim_expires_at = NULL, \
         failure_reason = COALESCE(failure_reason, 'no attempts left'), updated_at = now() \
         WHERE id = $1 AND status IN ('queued', 'claimed') AND attempts >= max_attempts \
         {RETURNING_EVALUATION}"
    );
    let exhausted: Option<EvaluationRow> =
        sqlx::query_as(AssertSqlSafe(sql)).bind(id).bind(ack_subject).fetch_optional(pool).await?;
    Ok(exhausted.map_or(ClaimOutcome::Stale, ClaimOutcome::Exhausted))
}

/// A claim one bot asks for ([`claim_many`]).
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub id: i64,
    pub ack_subject: String,
    pub holder: Holder,
    pub ttl: Duration,
}

/// [`claim`] for several deliveries in one statement: the rows claimed, by the request's
/// place (`None`: not claimable now, or named twice; [`claim`] alone says why).
pub async fn claim_many(pool: &PgPool, requests: &[ClaimRequest]) -> sqlx::Result<Vec<Option<EvaluationRow>>> {
    let all: Vec<i64> = requests.iter().map(|r| r.id).collect();
    // An UPDATE joined to a row twice takes either join's values: the second request of an
    // id is not in the statement (it gets `None`).
    let requests = first_of_each(requests, |r| r.id);
    let ids: Vec<i64> = requests.iter().map(|r| r.id).collect();
    let subjects: Vec<&str> = requests.iter().map(|r| r.ack_subject.as_str()).collect();
    let bots: Vec<&str> = requests.iter().map(|r| r.holder.bot_id.as_str()).collect();
    let ttls: Vec<f64> = requests.iter().map(|r| r.ttl.as_secs_f64()).collect();
    let principals: Vec<&str> = requests.iter().map(|r| r.holder.principal.as_str()).collect();
    let sql = format!(
        "UPDATE evaluations e SET status = 'claimed', attempts = e.attempts + 1, ack_subject = c.ack_subject, \
         claimed_by = c.bot_id, claimed_at = now(), claim_expires_at = now() + make_interval(secs => c.ttl), \
         claimed_principal = c.principal, updated_at = now() \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::float8[], $5::text[]) \
             AS c(id, ack_subject, bot_id, ttl, principal) \
         WHERE e.id = c.id AND e.id = ANY($1) AND e.status NOT IN ('submitted', 'answered', 'failed') \
         AND e.attempts < e.max_attempts \
         {RETURNING_EVALUATION_E}"
    );
    let rows: Vec<EvaluationRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(&ids)
        .bind(&subjects)
        .bind(&bots)
        .bind(&ttls)
        .bind(&principals)
        .fetch_all(pool)
        .await?;
    Ok(by_place(&all, rows, |row| row.id))
}

// The batched statements are prepared once per connection, like the others, and PostgreSQL
// keeps one plan for any batch. That plan must look each row up by `e.id = ANY(ids)` in the
// primary key. Two things would lead it elsewhere: an `unnest` of a parameter, which it guesses
// at 100 rows, joined by a hash to every live evaluation; and a status test it can prove implies
// the predicate of the partial index of live rows, which it then scans whole (dead entries and
// all: 30,000 rows, 3.7 ms, in a load run) to AND with the key. So the states a row may be in
// are said as those it may not be in (the table's CHECK names them all), from which nothing
// about the index follows. Under load such scans took 38% of PostgreSQL's CPU; planning each
// batch anew (what the statements did until 2026-12-05) was about a quarter of what was left.

/// The requests whose id no earlier request has.
fn first_of_each<T>(requests: &[T], id: impl Fn(&T) -> i64) -> Vec<&T> {
    let mut seen = std::collections::HashSet::new();
    requests.iter().filter(|request| seen.insert(id(request))).collect()
}

/// Rows returned for requests (by id), each handed to the first request of its id.
fn by_place<T>(ids: &[i64], rows: Vec<T>, id: impl Fn(&T) -> i64) -> Vec<Option<T>> {
    let mut rows: HashMap<i64, T> = rows.into_iter().map(|row| (id(&row), row)).collect();
    ids.iter().map(|wanted| rows.remove(wanted)).collect()
}

/// Extends a claim `holder` holds to now + `ttl`, or leaves it as it is when it ends later
/// already (a polling bot's claim is longer than a heartbeat's: a heartbeat never shortens
/// it). `None` when the evaluation is not claimed by it.
pub async fn extend_claim(
    pool: &PgPool,
    id: i64,
    ttl: Duration,
    holder: &Holder,
) -> sqlx::Result<Option<EvaluationRow>> {
    let sql = format!(
        "UPDATE evaluations SET claim_expires_at = GREATEST(claim_expires_at, now() + make_interval(secs => $2)), \
         updated_at = now() WHERE id = $1 AND status = 'claimed' AND {} {RETURNING_EVALUATION}",
        held_by(3, 4)
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .bind(id)
        .bind(ttl.as_secs_f64())
        .bind(&holder.principal)
        .bind(&holder.bot_id)
        .fetch_optional(pool)
        .await
}

/// Moves an evaluation `holder` claimed (or whose claim lapsed, not yet redelivered) to
/// submitted, recording `digest` ([`crate::gateway::submission_digest`]) of the answer it takes.
/// `None` when it is in no state to take this answer from it.
///
/// A submit the same holder repeats while the evaluation is submitted (its first try was cut
/// off, by a gateway that died between this mark and the results stream, say) is taken again
/// when it carries the same answer (the same digest): the result's Msg-Id and the one answer per
/// evaluation keep the repeat from storing twice. Another answer is not: PostgreSQL evaluates
/// the condition again on the row a concurrent mark committed, so of two different answers
/// submitted at once only one is marked. A row submitted before digests were recorded (NULL)
/// takes a repeat as it did then.
pub async fn mark_submitted(
    pool: &PgPool,
    id: i64,
    holder: &Holder,
    digest: &[u8],
) -> sqlx::Result<Option<EvaluationRow>> {
    let sql = format!(
        "UPDATE evaluations SET status = 'submitted', submitted_digest = $4, claim_expires_at = NULL, \
         updated_at = now() \
         WHERE id = $1 AND (status = 'claimed' OR (status = 'queued' AND attempts > 0) \
             OR (status = 'submitted' AND (submitted_digest IS NULL OR submitted_digest = $4))) AND {} \
         {RETURNING_EVALUATION}",
        held_by(2, 3)
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .bind(id)
        .bind(&holder.principal)
        .bind(&holder.bot_id)
        .bind(digest)
        .fetch_optional(pool)
        .await
}

/// A submit to mark ([`mark_submitted_many`]): the evaluation, who asks, and the digest of the
/// answer it hands in.
#[derive(Debug, Clone)]
pub struct SubmitRequest {
    pub id: i64,
    pub holder: Holder,
    pub digest: Vec<u8>,
}

/// [`mark_submitted`] for several submits in one statement: the rows marked, by the request's
/// place (`None`: not marked, or named twice; [`mark_submitted`] alone says why).
pub async fn mark_submitted_many(
    pool: &PgPool,
    requests: &[SubmitRequest],
) -> sqlx::Result<Vec<Option<EvaluationRow>>> {
    let all: Vec<i64> = requests.iter().map(|r| r.id).collect();
    // An UPDATE joined to a row twice takes either join's values: the second request of an
    // id is not in the statement (alone, it meets the first one's mark).
    let requests = first_of_each(requests, |r| r.id);
    let ids: Vec<i64> = requests.iter().map(|r| r.id).collect();
    let principals: Vec<&str> = requests.iter().map(|r| r.holder.principal.as_str()).collect();
    let bots: Vec<&str> = requests.iter().map(|r| r.holder.bot_id.as_str()).collect();
    let digests: Vec<&[u8]> = requests.iter().map(|r| r.digest.as_slice()).collect();
    let sql = format!(
        "UPDATE evaluations e SET status = 'submitted', submitted_digest = c.digest, claim_expires_at = NULL, \
         updated_at = now() \
         FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bytea[]) AS c(id, principal, bot_id, digest) \
         WHERE e.id = c.id AND e.id = ANY($1) AND e.status NOT IN ('pending', 'answered', 'failed') \
         AND (e.status <> 'queued' OR e.attempts > 0) \
         AND (e.status <> 'submitted' OR e.submitted_digest IS NULL OR e.submitted_digest = c.digest) \
         AND e.claimed_principal = c.principal AND (c.bot_id = '' OR e.claimed_by = c.bot_id) \
         {RETURNING_EVALUATION_E}"
    );
    let rows: Vec<EvaluationRow> = sqlx::query_as(AssertSqlSafe(sql))
        .bind(&ids)
        .bind(&principals)
        .bind(&bots)
        .bind(&digests)
        .fetch_all(pool)
        .await?;
    Ok(by_place(&all, rows, |row| row.id))
}

/// The answer evaluation `id` took: the digest recorded when it was marked submitted (`None`
/// for one submitted before digests were recorded, or never) and the text stored (`None` until
/// the ingest stored it). `None` when there is no such evaluation.
pub async fn taken_answer(pool: &PgPool, id: i64) -> sqlx::Result<Option<(Option<Vec<u8>>, Option<String>)>> {
    sqlx::query_as(
        "SELECT e.submitted_digest, a.response_text FROM evaluations e \
         LEFT JOIN answers a ON a.evaluation_id = e.id WHERE e.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
}

/// Undoes [`mark_submitted`] when the result could not be handed to the results stream.
pub async fn unmark_submitted(pool: &PgPool, id: i64) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE evaluations SET status = 'claimed', submitted_digest = NULL, \
         claim_expires_at = now() + interval '1 minute', updated_at = now() WHERE id = $1 AND status = 'submitted'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(())
}

/// Undoes a claim whose task never reached its bot (the caller went away first): queued
/// again, the attempt not counted. `None` when it is not claimed by `holder`.
pub async fn unclaim(pool: &PgPool, id: i64, holder: &Holder) -> sqlx::Result<Option<EvaluationRow>> {
    let sql = format!(
        "UPDATE evaluations SET status = 'queued', attempts = GREATEST(attempts - 1, 0), claim_expires_at = NULL, \
         updated_at = now() WHERE id = $1 AND status = 'claimed' AND {} {RETURNING_EVALUATION}",
        held_by(2, 3)
    );
    sqlx::query_as(AssertSqlSafe(sql)).bind(id).bind(&holder.principal).bind(&holder.bot_id).fetch_optional(pool).await
}

/// Gives a task `holder` claimed back: failed for good when `fail` or no attempts are left,
/// otherwise queued again. `None` when it is not claimed by it.
pub async fn release(
    pool: &PgPool,
    id: i64,
    fail: bool,
    reason: &str,
    holder: &Holder,
) -> sqlx::Result<Option<EvaluationRow>> {
    let sql = format!(
        "UPDATE evaluations SET \
             status = CASE WHEN $2 OR attempts >= max_attempts THEN 'failed' ELSE 'queued' END, \
             failure_reason = $3, claim_expires_at = NULL, updated_at = now() \
         WHERE id = $1 AND status = 'claimed' AND {} {RETURNING_EVALUATION}",
        held_by(4, 5)
    );
    sqlx::query_as(AssertSqlSafe(sql))
        .bind(id)
        .bind(fail)
        .bind(reason)
        .bind(&holder.principal)
        .bind(&holder.bot_id)
        .fetch_optional(pool)
        .await
}

/// Fails an evaluation whose submitted answer cannot be stored (the ingest gave up on it), so
/// every stream waiting on it ends; returns it, or `None` when it is no longer submitted.
pub async fn fail_unstorable(pool: &PgPool, id: i64, reason: &str) -> sqlx::Result<Option<EvaluationRow>> {
    let sql = format!(
        "UPDATE evaluations SET status = 'failed', failure_reason = $2, claim_expires_at = NULL, \
         updated_at = now() WHERE id = $1 AND status = 'submitted' {RETURNING_EVALUATION}"
    );
    sqlx::query_as(AssertSqlSafe(sql)).bind(id).bind(reason).fetch_optional(pool).await
}

/// Ends the waits that went on too long: an evaluation pending or queued for `queued_secs` (no
/// bot took the task: none serves its assistant and plan, or the fleet is down) fails with the
/// reason; one submitted for `submitted_secs` whose answer never reached the database (its
/// result was lost on the way, by a gateway killed between the mark and the results stream) is
/// asked again, pending for the scheduler, or fails when it had its last attempt. Returns them.
pub async fn expire_stale(pool: &PgPool, queued_secs: f64, submitted_secs: f64) -> sqlx::Result<Vec<EvaluationRow>> {
    let sql = format!(
        "UPDATE evaluations SET claim_expires_at = NULL, updated_at = now(), \
             status = CASE WHEN status = 'submitted' AND attempts < max_attempts THEN 'pending' ELSE 'failed' END, \
             failure_reason = CASE WHEN status = 'submitted' \
                 THEN 'the answer was submitted but not stored within ' || $2::text || ' s' \
                 ELSE 'no bot took the task within ' || $1::text || ' s: does a bot serve ' \
                      || assistant || ' on plan ' || plan || '?' END \
         WHERE (status IN ('pending', 'queued') AND updated_at < now() - make_interval(secs => $1)) \
            OR (status = 'submitted' AND updated_at < now() - make_interval(secs => $2)) \
         {RETURNING_EVALUATION}"
    );
    sqlx::query_as(AssertSqlSafe(sql)).bind(queued_secs).bind(submitted_secs).fetch_all(pool).await
}

/// Ends claims that lapsed: failed when no attempts are left, queued again otherwise.
pub async fn reap_lapsed_claims(pool: &PgPool) -> sqlx::Result<Vec<EvaluationRow>> {
    let sql = format!(
        "UPDATE evaluations SET \
             status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END, \
             failure_reason = 'claim lapsed on attempt ' || attempts || ' of ' || max_attempts \
                              || ': the bot went silent', \
             claim_expires_at = NULL, updated_at = now() \
         WHERE status = 'claimed' AND claim_expires_at < now() {RETURNING_EVALUATION}"
    );
    sqlx::query_as(AssertSqlSafe(sql)).fetch_all(pool).await
}

/// The deliveries of tasks given back and waiting to be delivered again (queued, delivered
/// before): their reply subject, assistant and plan.
pub async fn handed_back_deliveries(pool: &PgPool) -> sqlx::Result<Vec<(String, String, String)>> {
    sqlx::query_as(
        "SELECT ack_subject, assistant, plan FROM evaluations WHERE status = 'queued' AND ack_subject IS NOT NULL",
    )
    .fetch_all(pool)
    .await
}

/// The delivery reply subjects of every claim held now (not lapsed), to keep them alive.
pub async fn held_deliveries(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT ack_subject FROM evaluations \
         WHERE status = 'claimed' AND ack_subject IS NOT NULL AND claim_expires_at > now()",
    )
    .fetch_all(pool)
    .await
}

/// What storing a result did.
#[derive(Debug)]
pub struct Stored {
    /// Whether this call stored the answer (false: a redelivery of one stored before, or an
    /// answer its evaluation did not take, see `superseded`).
    pub inserted: bool,
    /// Whether the evaluation holds the digest of another answer than this one (its submit was
    /// told it failed and another was taken since): this one is not stored.
    pub superseded: bool,
    /// The evaluation as it is now, when this call marked it answered.
    pub evaluation: Option<EvaluationRow>,
    /// The answer as streams are told it (without page HTML), when this call stored it.
    pub answer: Option<AnswerRow>,
}

/// Stores a submitted answer and marks its evaluation answered, once: a redelivered result
/// changes nothing. Returns what it stored, as the prompt's streams are to be told it.
pub async fn store_answer(pool: &PgPool, result: &ResultMessage) -> sqlx::Result<Stored> {
    let mut stored = store_answers(pool, &[result]).await?;
    Ok(stored.pop().flatten().unwrap_or(Stored { inserted: false, superseded: false, evaluation: None, answer: None }))
}

/// [`store_answer`] for several results in one statement (one round trip, one transaction: all
/// are stored or none), by the result's place; a result whose evaluation is named twice is
/// stored by the first (`None` for the others).
pub async fn store_answers(pool: &PgPool, results: &[&ResultMessage]) -> sqlx::Result<Vec<Option<Stored>>> {
    let unique = first_of_each(results, |result| result.evaluation_id);
    let ids: Vec<i64> = unique.iter().map(|result| result.evaluation_id).collect();
    // Per evaluation, the digest of the submit its result came from (NULL: none carried).
    let digests: Vec<Option<Vec<u8>>> = unique.iter().map(|result| result.digest_bytes()).collect();
    let rows: Vec<serde_json::Value> = unique
        .into_iter()
        .map(|result| {
            serde_json::json!({
                "evaluation_id": result.evaluation_id,
                "prompt_id": result.prompt_id,
                "assistant": result.assistant,
                "plan": result.plan,
                "response_text": result.response_text,
                "response_markdown": result.response_markdown,
                "citations": result.citations,
                // Microseconds, PostgreSQL's own precision, cut as a bound timestamp would be.
                "captured_at": result.captured_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "bot_id": result.bot_id,
                "lease_id": result.lease_id,
                "kind": result.kind.as_str(),
                "response_html": result.capture.response_html,
                "model": result.capture.model,
                "web_search": result.capture.web_search,
                "ttft_ms": result.capture.ttft_ms,
                "total_ms": result.capture.total_ms,
                "adapter_version": result.capture.adapter_version,
                "adapter_fingerprint": result.capture.adapter_fingerprint,
                "finish_signals": result.capture.finish_signals,
                "missing_roles": result.capture.missing_roles,
                "read_by_fallback": result.capture.read_by_fallback,
                "confidence": result.capture.confidence,
                "cut_short": result.capture.cut_short,
                "model_fallback": result.capture.model_fallback,
                "search_queries": result.search_queries,
                "products": result.products,
            })
        })
        .collect();
    // One statement, so one round trip and one implicit transaction: the answers and their
    // rows' new status are stored together or not at all, and come back as the replicas'
    // streams are told them (so that none reads them again). The evaluations are looked up by
    // `id = ANY(ids)`, not joined to the recordset, which the planner guesses at 100 rows (a hash
    // join over a scan of every evaluation then costs as much as the lookups).
    //
    // An evaluation takes the answer only while it holds the digest of the submit that carried
    // it (or none): a submit told it failed (its publish unanswered) has its mark undone, and
    // when another answer was marked after it, the first one's message, stored on the stream
    // after all, is not stored over the one whose bot was told it was taken. The answer is
    // inserted only for the evaluations this statement marks answered, which PostgreSQL rechecks
    // on a row a concurrent mark changed (and for an evaluation that does not exist, which the
    // foreign key refuses: such a result is poison, dead-lettered as any the database refuses).
    // Per result: its evaluation id, whether its answer was inserted, whether its evaluation
    // holds another answer's digest, the evaluation and answer.
    type Row = (i64, bool, bool, Option<Json<EvaluationRow>>, Option<Json<AnswerRow>>);
    let stored: Vec<Row> = sqlx::query_as(
        "WITH input AS ( \
             SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(evaluation_id bigint, prompt_id bigint, \
                 assistant text, plan text, response_text text, response_markdown text, citations jsonb, \
                 captured_at timestamptz, bot_id text, lease_id text, kind text, response_html text, model text, \
                 web_search boolean, ttft_ms bigint, total_ms bigint, adapter_version text, \
                 adapter_fingerprint text, finish_signals text[], missing_roles text[], read_by_fallback boolean, \
                 confidence real, cut_short boolean, model_fallback boolean, search_queries jsonb, \
                 products jsonb)), \
         answered AS ( \
             UPDATE evaluations e SET status = 'answered', failure_reason = NULL, updated_at = now() \
             FROM unnest($2::bigint[], $3::bytea[]) AS d(id, digest) \
             WHERE e.id = d.id AND e.id = ANY($2::bigint[]) AND e.status <> 'answered' \
             AND (e.submitted_digest IS NULL OR d.digest IS NULL OR e.submitted_digest = d.digest) \
             RETURNING e.*), \
         stored AS ( \
             INSERT INTO answers (evaluation_id, prompt_id, assistant, plan, response_text, \
             response_markdown, citations, captured_at, bot_id, lease_id, kind, response_html, model, \
             web_search, ttft_ms, total_ms, adapter_version, adapter_fingerprint, finish_signals, missing_roles, \
             read_by_fallback, confidence, cut_short, model_fallback, search_queries, products) \
             SELECT evaluation_id, prompt_id, assistant, plan, response_text, response_markdown, citations, \
             captured_at, bot_id, lease_id, kind, response_html, model, web_search, ttft_ms, total_ms, \
             adapter_version, adapter_fingerprint, finish_signals, missing_roles, read_by_fallback, confidence, \
             COALESCE(cut_short, false), COALESCE(model_fallback, false), search_queries, products \
             FROM input WHERE evaluation_id IN (SELECT id FROM answered) \
             OR NOT EXISTS (SELECT 1 FROM evaluations e WHERE e.id = input.evaluation_id) \
             ON CONFLICT (evaluation_id) DO NOTHING \
             RETURNING evaluation_id, prompt_id, assistant, plan, response_text, response_markdown, citations, \
             captured_at, kind, ''::text AS response_html, model, web_search, ttft_ms, total_ms, adapter_version, \
             adapter_fingerprint, finish_signals, missing_roles, read_by_fallback, confidence, cut_short, \
             model_fallback, search_queries, products, bot_id, lease_id) \
         SELECT i.evaluation_id, \
             EXISTS (SELECT 1 FROM stored st WHERE st.evaluation_id = i.evaluation_id), \
             EXISTS (SELECT 1 FROM evaluations e JOIN unnest($2::bigint[], $3::bytea[]) AS d(id, digest) \
                 ON d.id = e.id WHERE e.id = i.evaluation_id AND e.status <> 'answered' \
                 AND e.submitted_digest <> d.digest) \
                 AND NOT EXISTS (SELECT 1 FROM answered a WHERE a.id = i.evaluation_id), \
             (SELECT to_jsonb(a) FROM answered a WHERE a.id = i.evaluation_id), \
             (SELECT to_jsonb(x) - 'lease_id' FROM ( \
                 SELECT st.*, COALESCE(s.id::text, '') AS account_id, COALESCE(s.label, '') AS account_label \
                 FROM stored st \
                 LEFT JOIN session_leases l \
                     ON l.id = CASE WHEN st.lease_id ~ '^[0-9a-fA-F-]{36}$' THEN st.lease_id::uuid END \
                 LEFT JOIN session_accounts s ON s.id = l.account_id \
                 WHERE st.evaluation_id = i.evaluation_id) x) \
         FROM input i",
    )
    .bind(Json(rows))
    .bind(&ids)
    .bind(&digests)
    .fetch_all(pool)
    .await?;
    let stored: Vec<(i64, Stored)> = stored
        .into_iter()
        .map(|(id, inserted, superseded, evaluation, answer)| {
            let (evaluation, answer) = (evaluation.map(|row| row.0), answer.map(|row| row.0));
            (id, Stored { inserted, superseded, evaluation, answer })
        })
        .collect();
    let all: Vec<i64> = results.iter().map(|result| result.evaluation_id).collect();
    Ok(by_place(&all, stored, |(id, _)| *id).into_iter().map(|row| row.map(|(_, stored)| stored)).collect())
}

/// Live evaluations as (assistant, status, count), for the `aap_evaluations` gauge: only the
/// live states, which the partial index over them answers without reading the finished rows.
pub async fn live_counts(pool: &PgPool) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as(
        "SELECT assistant, status, count(*) FROM evaluations \
         WHERE status IN ('pending', 'queued', 'claimed', 'submitted') GROUP BY assistant, status",
    )
    .fetch_all(pool)
    .await
}

/// The age in seconds of each assistant's oldest held claim, by the database clock.
pub async fn oldest_claims(pool: &PgPool) -> sqlx::Result<Vec<(String, f64)>> {
    sqlx::query_as(
        "SELECT assistant, EXTRACT(EPOCH FROM now() - min(claimed_at))::float8 FROM evaluations \
         WHERE status = 'claimed' AND claimed_at IS NOT NULL GROUP BY assistant",
    )
    .fetch_all(pool)
    .await
}
