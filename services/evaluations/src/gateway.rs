//! The bot gateway's domain: hand out tasks under claims, extend them, take answers and
//! give-ups. The gRPC and HTTP adapters are thin layers over [`Gateway`].

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use aap_platform::auth::Caller;
use aap_platform::{assistants, input, telemetry};
use aap_proto::v1::Task;
use chrono::{DateTime, Datelike as _, Utc};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tracing::Instrument as _;

use crate::batch::Batcher;
use crate::model::{AnswerKind, Capture, Product, RawCitation, ResultMessage, Status, clean_citations, clean_products};
use crate::partial::{self, ClaimChecks, PartialMessage};
use crate::queue::{Published, Queue, Settle};
use crate::store::{self, ClaimOutcome, EvaluationRow, Holder};
use crate::{EvalError, EvalResult};

/// Gateway settings.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Claim of a bot that sends heartbeats (Claim stream, Heartbeat).
    pub claim_ttl: Duration,
    /// Claim of a polling bot (Poll, the seed's HTTP API), which cannot send heartbeats and
    /// must finish within it.
    pub poll_claim_ttl: Duration,
    /// How long a Claim stream may wait for its first message, hello, before it is ended.
    pub hello_timeout: Duration,
    /// How often a Claim stream that can take a task pulls without being signalled (a signal
    /// lost, a delivery JetStream gives out again after its own ack wait).
    pub claim_recheck: Duration,
}

/// How long a new Claim stream waits for its hello: a bot sends it at once, so a stream silent
/// this long is broken (or not a bot), and would otherwise hold a connection's stream forever.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for GatewayConfig {
    fn default() -> GatewayConfig {
        GatewayConfig {
            claim_ttl: Duration::from_secs(60),
            poll_claim_ttl: Duration::from_secs(15 * 60),
            hello_timeout: HELLO_TIMEOUT,
            claim_recheck: Duration::from_millis(500),
        }
    }
}

/// An answer a bot hands in.
#[derive(Debug, Clone)]
pub struct Submission {
    pub evaluation_id: i64,
    pub response_text: String,
    pub response_markdown: String,
    /// In the answer's order.
    pub citations: Vec<RawCitation>,
    pub captured_at: Option<DateTime<Utc>>,
    pub bot_id: String,
    pub lease_id: String,
    pub kind: AnswerKind,
    pub capture: Capture,
    /// The web searches the assistant ran, in order.
    pub search_queries: Vec<String>,
    /// Products shown with the answer, in order (cleaned on submit).
    pub products: Vec<Product>,
}

/// The bounds of an answer: its text, markdown and page HTML, its citations, search queries
/// and products and their parts, short names (model, bot id, lease id, price, merchant). They
/// are [`aap_proto::limits`], which bots fit what they captured to before they submit.
pub use aap_proto::limits::{
    MAX_CITATIONS, MAX_HTML_CHARS, MAX_MARKDOWN_CHARS, MAX_NAME_CHARS, MAX_PRODUCTS, MAX_QUERY_CHARS, MAX_REASON_CHARS,
    MAX_RESPONSE_CHARS, MAX_SEARCH_QUERIES, MAX_TITLE_CHARS, MAX_URL_CHARS, MAX_WAITING_CHARS,
};

/// What a bot reports on a task it holds (`Progress`): the text typed so far, or what it waits
/// for before it can ask and until when.
#[derive(Debug, Clone, Default)]
pub struct ProgressReport {
    pub text: String,
    pub waiting: String,
    pub waiting_until: Option<DateTime<Utc>>,
}

fn check(field: &'static str, result: Result<(), String>) -> EvalResult<()> {
    result.map_err(|reason| EvalError::invalid(field, reason))
}

/// An evaluation id is positive: 0 or less is a caller's mistake, not an unknown evaluation
/// (Progress and Heartbeat; Submit and Release answer NOT_FOUND, as the seed's HTTP API did).
fn check_evaluation_id(evaluation_id: i64) -> EvalResult<()> {
    if evaluation_id <= 0 {
        return Err(EvalError::invalid("evaluation_id", "must be a positive evaluation id"));
    }
    Ok(())
}

/// Bounds everything a submission carries and refuses NUL anywhere: a bot that sends more is
/// broken, an unbounded field would ride along with every cached answer, and a NUL would fail
/// the ingest's write again at every delivery while the evaluation waited.
fn check_submission(submission: &Submission) -> EvalResult<()> {
    check("response_text", input::check_text(&submission.response_text, MAX_RESPONSE_CHARS))?;
    check("response_markdown", input::check_text(&submission.response_markdown, MAX_MARKDOWN_CHARS))?;
    check_bot_id(&submission.bot_id)?;
    check("lease_id", input::check_line(&submission.lease_id, MAX_NAME_CHARS))?;
    check_lease_id(&submission.lease_id)?;
    if submission.citations.len() > MAX_CITATIONS {
        return Err(EvalError::invalid("citations", format!("at most {MAX_CITATIONS} citations")));
    }
    for citation in &submission.citations {
        // One that is no web address is dropped with its citation (`clean_citations`).
        check("citations.url", input::check_line(&citation.url, MAX_URL_CHARS))?;
        check("citations.title", input::check_text(&citation.title, MAX_TITLE_CHARS))?;
    }
    let capture = &submission.capture;
    check("capture.response_html", input::check_text(&capture.response_html, MAX_HTML_CHARS))?;
    check("capture.model", input::check_line(&capture.model, MAX_NAME_CHARS))?;
    check("capture.adapter_version", input::check_line(&capture.adapter_version, MAX_NAME_CHARS))?;
    check("capture.adapter_fingerprint", input::check_line(&capture.adapter_fingerprint, MAX_NAME_CHARS))?;
    if submission.search_queries.len() > MAX_SEARCH_QUERIES {
        return Err(EvalError::invalid("search_queries", format!("at most {MAX_SEARCH_QUERIES} queries")));
    }
    for query in &submission.search_queries {
        check("search_queries", input::check_line(query, MAX_QUERY_CHARS))?;
    }
    if submission.products.len() > MAX_PRODUCTS {
        return Err(EvalError::invalid("products", format!("at most {MAX_PRODUCTS} products")));
    }
    for product in &submission.products {
        check("products.name", input::check_line(&product.name, MAX_TITLE_CHARS))?;
        check("products.url", input::check_line(&product.url, MAX_URL_CHARS))?;
        check("products.price", input::check_line(&product.price, MAX_NAME_CHARS))?;
        check("products.merchant", input::check_line(&product.merchant, MAX_NAME_CHARS))?;
    }
    if let Some(at) = submission.captured_at
        && !(1..=9999).contains(&at.year())
    {
        return Err(EvalError::invalid("captured_at", format!("{at} is outside the years 1 to 9999")));
    }
    if let Some(confidence) = capture.confidence
        && !(0.0..=1.0).contains(&confidence)
    {
        return Err(EvalError::invalid("capture.confidence", format!("{confidence} is outside [0, 1]")));
    }
    Ok(())
}

/// Bytes a result's JSON holds besides its texts (ids, names, times, the trace, the digest, the
/// keys): a bound, so that a result whose texts are small is never encoded to be measured.
const RESULT_FRAME_BYTES: usize = 64 * 1024;

/// `result` as it can go on the results stream, whose messages hold at most `budget` bytes:
/// as it is when it fits; else without the page HTML its bot sent (the answer is what the
/// customer waits for, the page only evidence of it), logged and counted; `INVALID_ARGUMENT`
/// when even that is too large. Before this, a result over the NATS server's `max_payload` was
/// refused by the stream at every try, and the bot was told UNAVAILABLE until its claim lapsed:
/// the answer never came.
pub fn fit_result(mut result: ResultMessage, budget: usize) -> EvalResult<ResultMessage> {
    let encoded = |result: &ResultMessage| -> usize {
        // JSON writes a character as at most 6 bytes (`\u001f`); texts this small fit unread.
        if text_bytes(result).saturating_mul(6).saturating_add(RESULT_FRAME_BYTES) <= budget {
            return 0;
        }
        serde_json::to_vec(result).map_or(usize::MAX, |json| json.len())
    };
    let size = encoded(&result);
    if size <= budget {
        return Ok(result);
    }
    let html = std::mem::take(&mut result.capture.response_html);
    let without = encoded(&result);
    if html.is_empty() || without > budget {
        return Err(EvalError::invalid(
            "response_text",
            format!(
                "the answer is {} bytes as the results stream carries it{}; it takes at most {budget}",
                if html.is_empty() { size } else { without },
                if html.is_empty() { "" } else { " without its page HTML" },
            ),
        ));
    }
    tracing::warn!(
        evaluation_id = result.evaluation_id,
        html_bytes = html.len(),
        with_html = size,
        budget,
        "answer taken without its page HTML: with it, the result is larger than the results stream takes"
    );
    crate::metrics::html_dropped(&result.assistant);
    Ok(result)
}

/// The bytes of a result's texts: what can make it large.
fn text_bytes(result: &ResultMessage) -> usize {
    let citations: usize = result.citations.iter().map(|c| c.url.len() + c.title.len() + c.domain.len()).sum();
    let products: usize =
        result.products.iter().map(|p| p.name.len() + p.url.len() + p.price.len() + p.merchant.len()).sum();
    let queries: usize = result.search_queries.iter().map(String::len).sum();
    let capture = &result.capture;
    let roles: usize = capture.finish_signals.iter().chain(&capture.missing_roles).map(String::len).sum();
    result.response_text.len()
        + result.response_markdown.len()
        + capture.response_html.len()
        + capture.model.len()
        + capture.adapter_version.len()
        + capture.adapter_fingerprint.len()
        + roles
        + citations
        + products
        + queries
        + result.bot_id.len()
        + result.lease_id.len()
}

/// The SHA-256 of everything `submission` carries that ends in the stored answer: its kind,
/// text, markdown, citations, lease, capture, search queries and products, as the bot sent them.
/// Two submits of one evaluation with the same digest hand in the same answer (a repeat of a
/// submit whose reply was lost); any other digest is another answer. `captured_at` is left out:
/// a bot that builds its retry anew may stamp it again, and the answer is the same.
pub fn submission_digest(submission: &Submission) -> Vec<u8> {
    let mut digest = Sha256::new();
    // Each value with its length (or a marker when absent): no two submissions feed the same bytes.
    let mut text = |value: &str| {
        digest.update((value.len() as u64).to_le_bytes());
        digest.update(value.as_bytes());
    };
    text(submission.kind.as_str());
    text(&submission.response_text);
    text(&submission.response_markdown);
    text(&submission.lease_id);
    text(&submission.citations.len().to_string());
    for citation in &submission.citations {
        text(&citation.url);
        text(&citation.title);
        text(&format!("{:?} {:?}", citation.kind, citation.found_in));
    }
    let capture = &submission.capture;
    text(&capture.response_html);
    text(&capture.model);
    text(&capture.adapter_version);
    text(&capture.adapter_fingerprint);
    // A mark added later joins the line only when set: an unmarked answer's digest stays what
    // replicas of before the mark compute, so a submit retried across an upgrade still matches.
    let model_fallback = if capture.model_fallback { " model-fallback" } else { "" };
    text(&format!(
        "{:?} {:?} {:?} {} {:?} {:?} {:?} {}{model_fallback}",
        capture.web_search,
        capture.ttft_ms,
        capture.total_ms,
        capture.read_by_fallback,
        capture.confidence.map(f32::to_bits),
        capture.finish_signals,
        capture.missing_roles,
        capture.cut_short,
    ));
    text(&submission.search_queries.len().to_string());
    for query in &submission.search_queries {
        text(query);
    }
    text(&submission.products.len().to_string());
    for product in &submission.products {
        text(&product.name);
        text(&product.url);
        text(&product.price);
        text(&product.merchant);
        text(&product.position.to_string());
    }
    digest.finalize().to_vec()
}

/// Checks the SessionService lease a submission names: none (empty), or a uuid, as
/// ReportEvidence takes it. Whether the lease exists is not asked: the id only links the answer to
/// the account it was read on, a lease may lapse or its account be deleted while the bot submits,
/// and an answer is worth keeping either way (an unknown lease links it to no account).
///
/// Only the hyphenated form LeaseSession hands out is taken, as sent: the id is stored as text
/// and matched to its lease in that form.
fn check_lease_id(lease_id: &str) -> EvalResult<()> {
    let hyphenated = lease_id.len() == 36 && uuid::Uuid::parse_str(lease_id).is_ok();
    if lease_id.is_empty() || hyphenated {
        return Ok(());
    }
    Err(EvalError::invalid("lease_id", format!("{} is not a uuid", input::quoted(lease_id))))
}

/// Checks the id a bot gives itself (Poll, Claim, Submit, and to name its claim in Heartbeat and
/// Release): one short line, stored with every claim and shown in lists and logs, where a line
/// break could pass for another entry.
pub fn check_bot_id(bot_id: &str) -> EvalResult<()> {
    check("bot_id", input::check_one_line(bot_id, MAX_NAME_CHARS))
}

/// What a bot serves: (assistant id, normalised plan) pairs.
pub type Serves = Vec<(String, String)>;

/// Checks and normalises what a bot says it serves.
pub fn parse_serves(targets: impl IntoIterator<Item = (String, String)>) -> EvalResult<Serves> {
    let mut serves = Vec::new();
    for (assistant, plan) in targets {
        let assistant = assistant.trim().to_lowercase();
        check("serves.plan", input::check_plan(plan.trim()))?;
        if assistants::by_id(&assistant).is_none() {
            return Err(EvalError::invalid(
                "serves.assistant",
                format!("unknown assistant {}", input::quoted(&assistant)),
            ));
        }
        let pair = (assistant, assistants::normalize_plan(&plan));
        if !serves.contains(&pair) {
            serves.push(pair);
        }
        if serves.len() > input::MAX_TARGETS {
            return Err(EvalError::invalid(
                "serves",
                format!("names more than {} assistant and plan pairs", input::MAX_TARGETS),
            ));
        }
    }
    if serves.is_empty() {
        return Err(EvalError::invalid("serves", "name at least one assistant"));
    }
    Ok(serves)
}

/// Refuses to let a bot take tasks of an assistant its principal may not serve.
pub fn admit_serves(caller: &Caller, serves: &Serves) -> EvalResult<()> {
    match serves.iter().find(|(assistant, _)| !caller.may_serve(assistant)) {
        None => Ok(()),
        Some((assistant, _)) => Err(EvalError::PermissionDenied(format!(
            "principal {} may not serve {assistant}; it serves {}",
            caller.principal,
            if caller.assistants.is_empty() { "no assistant".to_owned() } else { caller.assistants.join(", ") }
        ))),
    }
}

/// The bot gateway.
#[derive(Clone)]
pub struct Gateway {
    pool: PgPool,
    queue: Arc<Queue>,
    config: GatewayConfig,
    /// Claims read for partial answers, trusted for a moment.
    claim_checks: Arc<ClaimChecks>,
    /// Claims made together ([`store::claim_many`]).
    claims: Arc<Batcher<store::ClaimRequest, EvaluationRow>>,
    /// Submits marked together ([`store::mark_submitted_many`]).
    submits: Arc<Batcher<store::SubmitRequest, EvaluationRow>>,
    /// Results published together ([`Queue::publish_results`]).
    results: Arc<Batcher<Arc<ResultMessage>, Published>>,
}

/// Statements of one kind that run at once, and the most requests one serves.
const BATCH_WORKERS: usize = 2;
const BATCH_MAX: usize = 64;

/// A batcher of one statement over many requests on `pool`.
fn batcher<Req, F, Fut>(name: &'static str, pool: &PgPool, statement: F) -> Arc<Batcher<Req, EvaluationRow>>
where
    Req: Send + 'static,
    F: Fn(PgPool, Vec<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = sqlx::Result<Vec<Option<EvaluationRow>>>> + Send + 'static,
{
    let pool = pool.clone();
    Arc::new(Batcher::new(name, BATCH_WORKERS, BATCH_MAX, move |batch: Vec<Req>| statement(pool.clone(), batch)))
}

fn to_task(row: &EvaluationRow) -> Task {
    Task {
        evaluation_id: row.id,
        prompt_id: row.prompt_id,
        prompt_text: row.prompt_text.clone(),
        assistant: row.assistant.clone(),
        plan: row.plan.clone(),
        attempt: row.attempts.max(0) as u32,
        max_attempts: row.max_attempts.max(0) as u32,
        claim_expires_at: row.claim_expires_at.map(timestamp),
        trace_context: row.trace_context.0.clone(),
    }
}

/// A chrono time as a protobuf timestamp.
pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

impl Gateway {
    pub fn new(pool: PgPool, queue: Arc<Queue>, config: GatewayConfig) -> Gateway {
        crate::metrics::register();
        let claims = batcher("claim", &pool, |pool, batch: Vec<store::ClaimRequest>| async move {
            store::claim_many(&pool, &batch).await
        });
        let submits = batcher("submit", &pool, |pool, batch: Vec<store::SubmitRequest>| async move {
            store::mark_submitted_many(&pool, &batch).await
        });
        // One publish at a time: the stream stores (and fsyncs) messages one after another, so
        // a second in flight would only split the results waiting into two fsyncs.
        let publisher = queue.clone();
        let results = Arc::new(Batcher::new("publish", 1, BATCH_MAX, move |batch: Vec<Arc<ResultMessage>>| {
            let queue = publisher.clone();
            async move {
                let published = queue.publish_results(&batch).await;
                Ok::<_, crate::EvalError>(published.into_iter().map(Some).collect())
            }
        }));
        Gateway { pool, queue, config, claim_checks: Arc::default(), claims, submits, results }
    }

    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Claims the next waiting task for a bot, or `None` at once when none waits.
    ///
    /// A caller that goes away meanwhile (a Poll whose deadline passed, an HTTP poller that
    /// hung up) drops this future. Dropped halfway, a delivery pulled from JetStream was lost
    /// until JetStream gave it out again on its own (`queue::BACKSTOP_ACK_WAIT`, 120 s), or a
    /// claim made for nobody held the task until it lapsed (15 min for a polling bot). So the
    /// pull and the claim run on a task of their own, and a task claimed for a caller no longer
    /// there goes back to the queue at once, its attempt not counted.
    pub async fn poll(&self, holder: &Holder, serves: &Serves, ttl: Duration) -> EvalResult<Option<Task>> {
        let (gateway, holder, serves) = (self.clone(), holder.clone(), serves.clone());
        let (reply, answer) = tokio::sync::oneshot::channel();
        let polled = async move {
            let polled = gateway.claim_next(&holder, &serves, ttl).await;
            if let Err(Ok(Some(task))) = reply.send(polled) {
                gateway.give_back_unseen(task.evaluation_id, &holder).await;
            }
        };
        let running = tokio::spawn(polled.in_current_span());
        match answer.await {
            Ok(polled) => polled,
            Err(_) => match running.await {
                Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
                _ => Err(EvalError::Queue("the poll ended without an answer".to_owned())),
            },
        }
    }

    /// [`Gateway::poll`]'s work, for a caller that stays to the end (a claim stream's session).
    #[tracing::instrument(name = "poll", skip(self, serves), fields(principal = %holder.principal, bot_id = %holder.bot_id))]
    async fn claim_next(&self, holder: &Holder, serves: &Serves, ttl: Duration) -> EvalResult<Option<Task>> {
        check_bot_id(&holder.bot_id)?;
        // Stale deliveries (answered or failed meanwhile) are settled and skipped; the bound
        // keeps one poll from draining a long backlog of them.
        for _ in 0..32 {
            let Some(delivery) = self.queue.next_delivery(serves).await? else {
                return Ok(None);
            };
            let id = delivery.task.evaluation_id;
            let request =
                store::ClaimRequest { id, ack_subject: delivery.ack_subject.clone(), holder: holder.clone(), ttl };
            let claimed = match self.claims.call(request).await {
                Some(row) => Ok(ClaimOutcome::Claimed(row)),
                // Not claimable now, or the batch failed: alone, which says why.
                None => store::claim(&self.pool, id, &delivery.ack_subject, holder, ttl).await,
            };
            let claimed = match claimed {
                Ok(claimed) => claimed,
                Err(err) => {
                    // Unclaimed, the delivery would wait out the backstop ack wait (2 min) with
                    // the evaluation still queued and nothing to end it: back to the stream now.
                    self.queue.settle(&delivery.ack_subject, Settle::Nak).await;
                    return Err(err.into());
                }
            };
            match claimed {
                ClaimOutcome::Claimed(row) => {
                    crate::metrics::claimed(&row.assistant);
                    // The claim belongs to the prompt's trace (the asker's context stored on the
                    // evaluation), linked to the bot's poll that made it.
                    let span = tracing::info_span!(
                        "task.claimed",
                        evaluation_id = id,
                        attempt = row.attempts,
                        principal = %holder.principal,
                        bot_id = %holder.bot_id
                    );
                    telemetry::set_parent(&span, &row.trace_context.0);
                    telemetry::link_to_current(&span);
                    async {
                        tracing::info!("task claimed");
                        self.queue.announce(std::slice::from_ref(&row)).await;
                    }
                    .instrument(span)
                    .await;
                    return Ok(Some(to_task(&row)));
                }
                ClaimOutcome::Exhausted(row) => {
                    tracing::warn!(evaluation_id = id, "evaluation failed: no attempts left");
                    crate::metrics::failed_for_good(&row.assistant, "exhausted");
                    self.queue.settle(&delivery.ack_subject, Settle::Term).await;
                    self.queue.announce(std::slice::from_ref(&row)).await;
                }
                ClaimOutcome::Stale => {
                    tracing::debug!(evaluation_id = id, "stale task delivery dropped");
                    self.queue.settle(&delivery.ack_subject, Settle::Term).await;
                }
            }
        }
        Ok(None)
    }

    /// Extends the claim `holder` holds on a task; returns its new end.
    pub async fn heartbeat(&self, evaluation_id: i64, ttl: Duration, holder: &Holder) -> EvalResult<DateTime<Utc>> {
        check_bot_id(&holder.bot_id)?;
        check_evaluation_id(evaluation_id)?;
        match store::extend_claim(&self.pool, evaluation_id, ttl, holder).await? {
            Some(row) => {
                if let Some(subject) = &row.ack_subject {
                    self.queue.settle(subject, Settle::Progress).await;
                }
                row.claim_expires_at.ok_or(EvalError::WrongState {
                    id: evaluation_id,
                    status: row.status,
                    what: "cannot extend",
                })
            }
            None => Err(self.state_error(evaluation_id, "cannot extend a claim that is not held", holder).await),
        }
    }

    /// Takes the answer to a task `principal`'s bot (`submission.bot_id`, any of its bots when
    /// empty) claimed: hands it to the ingest over the results stream and settles the task.
    #[tracing::instrument(skip(self, submission), fields(evaluation_id = submission.evaluation_id))]
    pub async fn submit(&self, principal: &str, submission: Submission) -> EvalResult<()> {
        // A caller that goes away (a bot killed mid-call) drops this future. Once the answer is
        // marked submitted its result must still be published (or the mark undone), or the
        // evaluation waits out the submitted timeout: the work runs on a task of its own.
        let gateway = self.clone();
        let principal = principal.to_owned();
        // The caller's span goes along: the result published there carries its trace.
        let stored = async move { gateway.store_submission(&principal, submission).await };
        match tokio::spawn(stored.in_current_span()).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Err(EvalError::Queue("the submit was interrupted by shutdown".into())),
        }
    }

    async fn store_submission(&self, principal: &str, submission: Submission) -> EvalResult<()> {
        let id = submission.evaluation_id;
        match submission.kind {
            AnswerKind::Text if submission.response_text.trim().is_empty() => {
                return Err(EvalError::invalid("response_text", "must not be blank; release the task instead"));
            }
            AnswerKind::NoOverview if !submission.response_text.trim().is_empty() => {
                return Err(EvalError::invalid("response_text", "must be empty for a search without an AI Overview"));
            }
            _ => {}
        }
        check_submission(&submission)?;
        let holder = Holder::new(principal, &submission.bot_id);
        let digest = submission_digest(&submission);
        let request = store::SubmitRequest { id, holder: holder.clone(), digest: digest.clone() };
        let marked = match self.submits.call(request).await {
            Some(row) => Some(row),
            // Not in a state to take it, or the batch failed: alone, which says why.
            None => store::mark_submitted(&self.pool, id, &holder, &digest).await?,
        };
        let Some(row) = marked else {
            return self.refuse_submission(&submission, &digest, &holder).await;
        };
        self.claim_checks.forget(id);
        let markdown = if submission.response_markdown.trim().is_empty() {
            submission.response_text.clone()
        } else {
            submission.response_markdown
        };
        let result = ResultMessage {
            evaluation_id: id,
            prompt_id: row.prompt_id,
            assistant: row.assistant.clone(),
            plan: row.plan.clone(),
            response_text: submission.response_text,
            response_markdown: markdown,
            citations: clean_citations(submission.citations),
            captured_at: submission.captured_at.unwrap_or_else(Utc::now),
            bot_id: if submission.bot_id.trim().is_empty() { principal.to_owned() } else { submission.bot_id },
            lease_id: submission.lease_id,
            trace_context: aap_platform::telemetry::current_context(),
            kind: submission.kind,
            capture: submission.capture,
            search_queries: submission
                .search_queries
                .into_iter()
                .map(|q| q.trim().to_owned())
                .filter(|q| !q.is_empty())
                .collect(),
            products: clean_products(submission.products),
            digest: hex::encode(&digest),
        };
        let result = match fit_result(result, self.queue.result_budget()) {
            Ok(result) => Arc::new(result),
            Err(err) => {
                store::unmark_submitted(&self.pool, id).await?;
                return Err(err);
            }
        };
        // With the results submitted meanwhile; alone again when the message that carried it
        // with others was refused (a message alone refused would fare no better at once).
        let published = match self.results.call(result.clone()).await {
            Some(Published::Stored) => Ok(()),
            Some(Published::RefusedAlone(error)) => Err(EvalError::Queue(error)),
            Some(Published::RefusedWithOthers(_)) | None => self.queue.publish_result(&result).await,
        };
        if let Err(err) = published {
            store::unmark_submitted(&self.pool, id).await?;
            return Err(err);
        }
        if let Some(subject) = &row.ack_subject {
            self.queue.settle(subject, Settle::Ack).await;
        }
        tracing::info!(citations = result.citations.len(), "answer submitted");
        crate::metrics::submitted(&row.assistant);
        self.queue.announce(std::slice::from_ref(&row)).await;
        Ok(())
    }

    /// Why a submit that could not be marked is refused, or `Ok` for a repeat of the answer
    /// stored already (the reply to the first try was lost: the bot's answer is in, once). Any
    /// other answer to an evaluation that took one is refused, said so: never taken and dropped.
    async fn refuse_submission(&self, submission: &Submission, digest: &[u8], holder: &Holder) -> EvalResult<()> {
        let id = submission.evaluation_id;
        let current = store::evaluation(&self.pool, id).await?;
        let Some(row) = current.as_ref().filter(|row| holder.holds(row)) else {
            return Err(refusal(id, current, "cannot take an answer", holder));
        };
        let status = row.status();
        if !matches!(status, Status::Submitted | Status::Answered) {
            return Err(refusal(id, current, "cannot take an answer", holder));
        }
        let (taken, stored_text) = store::taken_answer(&self.pool, id).await?.unwrap_or_default();
        // Answered before digests were recorded: the stored text is all there is to compare.
        let same = match taken {
            Some(taken) => taken == digest,
            None => status == Status::Answered && stored_text.as_deref() == Some(submission.response_text.as_str()),
        };
        if same {
            tracing::info!(%status, "repeated submit of the answer taken already");
            return Ok(());
        }
        Err(EvalError::WrongState { id, status: row.status.clone(), what: "a different answer was submitted already" })
    }

    /// Gives a task `holder` claimed back: failed for good when `fail` (or no attempts are
    /// left), otherwise queued for another bot.
    #[tracing::instrument(skip(self, reason, holder), fields(principal = %holder.principal))]
    pub async fn release(&self, evaluation_id: i64, fail: bool, reason: &str, holder: &Holder) -> EvalResult<Status> {
        check_bot_id(&holder.bot_id)?;
        check("failure_reason", input::check_text(reason, MAX_REASON_CHARS))?;
        let reason = if reason.trim().is_empty() { "released by the bot" } else { reason.trim() };
        let Some(row) = store::release(&self.pool, evaluation_id, fail, reason, holder).await? else {
            return Err(self.state_error(evaluation_id, "cannot be released", holder).await);
        };
        self.claim_checks.forget(evaluation_id);
        let status = row.status();
        crate::metrics::released(&row.assistant, reason, status == Status::Failed);
        self.queue.put_back(&row).await;
        tracing::info!(%status, reason, "task released");
        self.queue.announce(std::slice::from_ref(&row)).await;
        Ok(status)
    }

    /// Hands the text the assistant has typed so far on a task `holder` holds (or what the bot
    /// waits for before it can ask) to the prompt's streams; never stores it. Returns whether the
    /// task is still held (false once it was answered, released or its claim lapsed: the bot
    /// stops reporting).
    pub async fn progress(&self, evaluation_id: i64, report: ProgressReport, holder: &Holder) -> EvalResult<bool> {
        check_bot_id(&holder.bot_id)?;
        check_evaluation_id(evaluation_id)?;
        let ProgressReport { text, waiting, waiting_until } = report;
        check("text", input::check_line(&text, MAX_RESPONSE_CHARS))?;
        check("waiting", input::check_one_line(&waiting, MAX_WAITING_CHARS))?;
        if !waiting.is_empty() && !text.is_empty() {
            return Err(EvalError::invalid("waiting", "comes instead of text: send one or the other".to_owned()));
        }
        if waiting.is_empty() && waiting_until.is_some() {
            return Err(EvalError::invalid("waiting_until", "comes only with waiting".to_owned()));
        }
        let held_by = |row: &EvaluationRow| -> EvalResult<bool> {
            if row.claimed_principal.is_some() && !holder.holds(row) {
                return Err(claimed_by_another(evaluation_id));
            }
            Ok(row.status() == Status::Claimed && row.claim_expires_at.is_some_and(|until| until > Utc::now()))
        };
        // A claim read a moment ago that says "held" is trusted; "not held" and "another bot's"
        // end the bot's reports, so they are only ever said from a fresh read (a heartbeat may
        // have extended the claim, a redelivery handed it over).
        let cached = self.claim_checks.get(evaluation_id);
        let row = match cached {
            Some(row) if matches!(held_by(&row), Ok(true)) => row,
            _ => {
                let row =
                    store::evaluation(&self.pool, evaluation_id).await?.ok_or(EvalError::NotFound(evaluation_id))?;
                self.claim_checks.keep(row.clone());
                row
            }
        };
        let held = held_by(&row)?;
        if held {
            let message = PartialMessage {
                evaluation_id,
                assistant: row.assistant.clone(),
                plan: row.plan.clone(),
                text,
                waiting,
                waiting_until,
            };
            partial::publish(&self.queue, row.prompt_id, &message).await;
        }
        Ok(held)
    }

    /// Why `holder` could not act on evaluation `id`: it does not exist, another bot holds (or
    /// held) its claim, or it is in the wrong state.
    async fn state_error(&self, id: i64, what: &'static str, holder: &Holder) -> EvalError {
        match store::evaluation(&self.pool, id).await {
            Ok(current) => refusal(id, current, what, holder),
            Err(err) => EvalError::Database(err),
        }
    }

    /// Serves one bot's Claim stream until the bot goes away or `stop` resolves: pushes tasks
    /// into `tasks` while the bot has credit, extends claims on heartbeats (a task the bot
    /// heartbeats is held by this stream from then on, wherever it was claimed), and when the
    /// bot goes away hands back the tasks it holds. When the process stops, the bot is alive and
    /// still works on them: its claims are left to it (it heartbeats them on a stream of another
    /// replica, submits there, or lets them lapse) and [`ClaimEnd::Stopping`] is returned.
    pub async fn run_claim_session(
        &self,
        holder: Holder,
        serves: Serves,
        initial_credit: u32,
        mut inbound: impl futures::Stream<Item = ClaimInput> + Unpin + Send,
        tasks: mpsc::Sender<Task>,
        stop: impl std::future::Future<Output = ()> + Send,
    ) -> ClaimEnd {
        let mut credit = initial_credit.max(1);
        let mut held: HashSet<i64> = HashSet::new();
        // The process's task signals wake the session when tasks it serves are queued, so a
        // waiting bot gets one at once rather than at the next tick; a signal wakes as many
        // sessions as it announces tasks, not all of them.
        let mut signals = Vec::new();
        let mut plans: Vec<(String, String)> = Vec::new();
        for (assistant, plan) in serves.iter() {
            // A bot of a named plan also takes tasks for any plan (as `Queue::next_delivery`).
            for plan in [plan.as_str(), assistants::ANY_PLAN] {
                let key = (assistant.clone(), assistants::normalize_plan(plan));
                if !plans.contains(&key) {
                    signals.push(self.queue.task_signal(&key.0, &key.1).await);
                    plans.push(key);
                }
            }
        }
        let mut tick = tokio::time::interval(self.config.claim_recheck);
        let mut end = ClaimEnd::Closed;
        tokio::pin!(stop);
        loop {
            if credit > 0 {
                match self.claim_next(&holder, &serves, self.config.claim_ttl).await {
                    Ok(Some(task)) => {
                        let id = task.evaluation_id;
                        if tasks.send(task).await.is_err() {
                            // The bot went away between the claim and the push.
                            self.give_back_unseen(id, &holder).await;
                            break;
                        }
                        held.insert(id);
                        credit -= 1;
                        continue;
                    }
                    Ok(None) => {}
                    Err(err) => tracing::warn!(error = %err, "cannot pull tasks for a bot"),
                }
            }
            tokio::select! {
                input = inbound.next() => match input {
                    Some(ClaimInput::Ready(n)) => credit = credit.saturating_add(n),
                    Some(ClaimInput::Heartbeat(ids)) => {
                        for id in ids {
                            match self.heartbeat(id, self.config.claim_ttl, &holder).await {
                                // Also a task claimed on a stream of a replica that stopped.
                                Ok(_) => held.insert(id),
                                Err(err) => {
                                    tracing::info!(evaluation_id = id, error = %err, "heartbeat refused");
                                    held.remove(&id)
                                }
                            };
                        }
                    }
                    None => break,
                },
                _ = &mut stop => {
                    end = ClaimEnd::Stopping;
                    break;
                }
                // Nobody takes the session's tasks any more: the bot is gone.
                () = tasks.closed() => break,
                // Only while it can take a task: a signal wakes as many streams as it announces
                // tasks, and one woken without credit would pull nothing, while a stream that
                // could take the task waited for its tick.
                _ = any_signal(&signals), if credit > 0 => {}
                _ = tick.tick() => {}
            }
        }
        match end {
            ClaimEnd::Closed => {
                for id in held {
                    self.hand_back(id, &holder).await;
                }
                tracing::info!(principal = %holder.principal, bot_id = %holder.bot_id, "claim stream closed");
            }
            ClaimEnd::Stopping => tracing::info!(
                principal = %holder.principal,
                bot_id = %holder.bot_id,
                held = held.len(),
                "claim stream ended: the process is stopping; the bot keeps its claims"
            ),
        }
        end
    }

    /// Puts back a task claimed for a bot it never reached (the bot went away first): queued
    /// again at once, its attempt not counted; unless it was finished or taken meanwhile.
    async fn give_back_unseen(&self, id: i64, holder: &Holder) {
        let row = match store::unclaim(&self.pool, id, holder).await {
            Ok(Some(row)) => row,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(evaluation_id = id, error = %err, "cannot give a task back");
                return;
            }
        };
        self.claim_checks.forget(id);
        crate::metrics::released(&row.assistant, "the bot went away before the task reached it", false);
        self.queue.put_back(&row).await;
        tracing::info!(evaluation_id = id, "task given back: its bot went away before it reached it");
        self.queue.announce(std::slice::from_ref(&row)).await;
    }

    /// Returns a task a vanished bot held to the queue, unless it was finished meanwhile.
    async fn hand_back(&self, id: i64, holder: &Holder) {
        match self.release(id, false, "the bot's claim stream closed", holder).await {
            Ok(_) | Err(EvalError::WrongState { .. } | EvalError::NotFound(_) | EvalError::PermissionDenied(_)) => {}
            Err(err) => tracing::warn!(evaluation_id = id, error = %err, "cannot hand a task back"),
        }
    }
}

/// Why `holder` cannot act on evaluation `id`, as it is now (`current`; `None`: no such one).
fn refusal(id: i64, current: Option<EvaluationRow>, what: &'static str, holder: &Holder) -> EvalError {
    match current {
        Some(row) if row.claimed_principal.is_some() && !holder.holds(&row) => claimed_by_another(id),
        Some(row) => EvalError::WrongState { id, status: row.status, what },
        None => EvalError::NotFound(id),
    }
}

/// Another bot holds (or held) the claim on evaluation `id`.
fn claimed_by_another(id: i64) -> EvalError {
    EvalError::PermissionDenied(format!(
        "evaluation {id} is claimed by another bot: only the bot that holds a claim may act on it"
    ))
}

/// Resolves when one of `signals` is notified; never when there are none.
async fn any_signal(signals: &[Arc<tokio::sync::Notify>]) {
    if signals.is_empty() {
        return std::future::pending().await;
    }
    futures::future::select_all(signals.iter().map(|n| Box::pin(n.notified()))).await;
}

/// How a Claim stream's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimEnd {
    /// The bot closed or broke the stream (or went away): what it held was handed back.
    Closed,
    /// The process is stopping: the bot keeps what it holds and opens a stream elsewhere.
    Stopping,
}

/// What a bot says on its Claim stream after `hello`.
#[derive(Debug, Clone)]
pub enum ClaimInput {
    /// It can take this many more tasks.
    Ready(u32),
    /// It still works on these.
    Heartbeat(Vec<i64>),
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CitationKind, CitationOrigin};

    fn submission() -> Submission {
        Submission {
            evaluation_id: 1,
            response_text: "An answer".into(),
            response_markdown: String::new(),
            citations: Vec::new(),
            captured_at: None,
            bot_id: "bot-1".into(),
            lease_id: String::new(),
            kind: AnswerKind::Text,
            capture: Capture::default(),
            search_queries: Vec::new(),
            products: Vec::new(),
        }
    }

    fn cited(url: &str) -> Submission {
        let citation = RawCitation {
            url: url.into(),
            title: String::new(),
            kind: CitationKind::Inline,
            found_in: CitationOrigin::Page,
        };
        Submission { citations: vec![citation], ..submission() }
    }

    fn result(text: &str, html: &str) -> ResultMessage {
        ResultMessage {
            evaluation_id: 7,
            assistant: "chatgpt".into(),
            response_text: text.into(),
            response_markdown: text.into(),
            capture: Capture { response_html: html.into(), ..Capture::default() },
            ..ResultMessage::default()
        }
    }

    fn json_len(result: &ResultMessage) -> usize {
        serde_json::to_vec(result).expect("json").len()
    }

    #[test]
    fn a_result_that_fits_the_results_stream_goes_as_it_is() {
        let small = result("An answer", "<p>An answer</p>");
        let fitted = fit_result(small.clone(), 1024).expect("fits");
        assert_eq!(fitted.capture.response_html, small.capture.response_html);
        // Near the budget it is measured, not guessed: exactly the budget fits.
        let big = result("a", &"\"<p>\"".repeat(50_000));
        let exact = json_len(&big);
        assert_eq!(fit_result(big.clone(), exact).expect("fits").capture.response_html, big.capture.response_html);
    }

    #[test]
    fn a_result_too_large_with_its_page_goes_without_it_and_one_too_large_without_is_refused() {
        let big = result("An answer", &"<div class=\"x\">page</div>".repeat(100_000));
        let without = json_len(&result("An answer", ""));
        let fitted = fit_result(big.clone(), json_len(&big) - 1).expect("taken without its page");
        assert_eq!(fitted.capture.response_html, "", "the page is dropped");
        assert_eq!(fitted.response_text, "An answer", "the answer is kept");
        assert!(json_len(&fitted) < json_len(&big));
        assert!(fit_result(big.clone(), without).is_ok(), "the answer alone at the budget fits");

        match fit_result(big, without - 1) {
            Err(EvalError::InvalidArgument { field, reason }) => {
                assert_eq!(field, "response_text");
                assert!(reason.contains("without its page HTML"), "{reason}");
                assert!(reason.contains(&format!("at most {}", without - 1)), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let long = result(&"é".repeat(200_000), "");
        match fit_result(long.clone(), 100_000) {
            Err(EvalError::InvalidArgument { reason, .. }) => {
                assert!(reason.contains(&format!("is {} bytes", json_len(&long))), "{reason}");
                assert!(!reason.contains("page HTML"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
    }

    fn refused_field(submission: &Submission) -> Option<&'static str> {
        match check_submission(submission) {
            Err(EvalError::InvalidArgument { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn a_lease_id_is_none_or_a_hyphenated_uuid() {
        let uuid = "0f5c7a52-3f0e-4f7a-9a55-5b2d8c1e9f10";
        for ok in ["", uuid] {
            assert_eq!(refused_field(&Submission { lease_id: ok.into(), ..submission() }), None, "{ok:?}");
        }
        for bad in ["not-a-uuid", "0f5c7a523f0e4f7a9a555b2d8c1e9f10", " 0f5c7a52-3f0e-4f7a-9a55-5b2d8c1e9f10"] {
            assert_eq!(
                refused_field(&Submission { lease_id: bad.into(), ..submission() }),
                Some("lease_id"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_citation_that_is_no_web_address_is_dropped_and_its_answer_taken() {
        let ok = ["https://example.com/a", "http://example.com", "//example.com/x", " https://e.example/ "];
        let odd = [
            "  ",
            "not a url",
            "javascript:alert(1)",
            "data:text/html,x",
            "sandbox:/mnt/data/report.csv",
            "/relative/path",
            "ftp://e.example/f",
            "https://",
        ];
        for url in ok.iter().chain(&odd) {
            assert_eq!(refused_field(&cited(url)), None, "{url:?}");
        }
        let kept = crate::model::clean_citations(ok.iter().chain(&odd).flat_map(|url| cited(url).citations));
        let urls: Vec<&str> = kept.iter().map(|c| c.url.as_str()).collect();
        assert_eq!(urls.len(), ok.len(), "{urls:?}");
        assert!(urls.iter().all(|url| url.starts_with("http")), "{urls:?}");
        assert_eq!(kept.iter().map(|c| c.position).collect::<Vec<_>>(), [1, 2, 3, 4], "renumbered");
    }
}
