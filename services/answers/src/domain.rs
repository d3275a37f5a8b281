//! The answers domain: find the prompt (exactly, by similarity or by id), schedule what is
//! missing, and follow the prompt's evaluations until every target has answered or failed.
//!
//! Events are the contract's `AnswerEvent` values: plain data, no transport in them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aap_embedding::{BatchError, Batcher};
use aap_evaluations::model as evals_model;
use aap_evaluations::model::Status;
use aap_evaluations::partial::PartialMessage;
use aap_evaluations::queue::Queue;
use aap_evaluations::store::{self as evals, AnswerRow, EvaluationRow};
use aap_platform::assistants::{self, ANY_PLAN};
use aap_platform::input;
use aap_proto::v1::answer_event::Event;
use aap_proto::v1::{
    Answer, AnswerEvent, AnswerKind, Capture, Citation, CitationKind, CitationOrigin, Completed, EvaluationFailed,
    EvaluationProgress, EvaluationScheduled, EvaluationState, HistoryResponse, MatchKind, PartialAnswer, Product,
    PromptMatched, RelatedPrompt, Suggestion, Suggestions,
};
use sqlx::PgPool;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{broadcast, mpsc};
use tracing::Instrument;

use crate::guard;
use crate::hub::{Following, Hub, HubConfig, Snapshot};
use crate::normalize::{canonical, prompt_hash};
use crate::store::{self, PromptRow};

/// Answers settings.
#[derive(Debug, Clone)]
pub struct AnswersConfig {
    /// Longest prompt accepted, in bytes of UTF-8.
    pub max_prompt_bytes: usize,
    /// Similarity at or above which a stored prompt counts as similar.
    pub min_similarity: f64,
    /// Attempts an evaluation gets before it fails.
    pub max_attempts: u32,
    /// How many similar prompts a suggestion lists at most.
    pub max_suggestions: i64,
    /// How often a replica compares the prompts its streams wait on with the database (one
    /// query for all of them), in case an announcement was lost.
    pub refresh_every: Duration,
    /// Prompts whose settled answers are kept in memory for exact hits, and prompt texts kept
    /// by hash, by id and as asked: entries each of these caches holds at most.
    pub cache_entries: usize,
    /// Bytes each of those caches holds at most, estimated from what its entries' strings hold.
    pub cache_bytes: usize,
    /// Ask and Watch streams one caller (principal) may hold open on a replica at once; more
    /// are refused with RESOURCE_EXHAUSTED.
    pub max_streams_per_caller: usize,
    /// Ask and Watch streams all callers together may hold open on a replica at once; more are
    /// refused with RESOURCE_EXHAUSTED.
    pub max_streams: usize,
    /// Longest a kept answer is served from memory without reading the database again.
    pub cache_max_age: Duration,
    /// How concurrent Asks share the embedding model's forward passes.
    pub embedding: aap_embedding::BatchConfig,
    /// Oldest answer served as current, by assistant id, when an Ask names no `max_age`; an
    /// assistant not listed: answers never go stale.
    pub max_age: HashMap<String, Duration>,
    /// How often a replica looks for refresh schedules that are due.
    pub refresh_schedules_every: Duration,
    /// Candidates pgvector's HNSW search keeps while it walks the graph (`hnsw.ef_search`, set on
    /// every connection): more finds more of the prompts dense clusters hide, and costs each
    /// search in proportion (docs/matching.md).
    pub ef_search: u32,
    /// Stored prompts a second the reachability audit checks against the similarity index
    /// (over all replicas); 0 checks none (`reachability`).
    pub audit_per_second: u32,
}

impl Default for AnswersConfig {
    fn default() -> AnswersConfig {
        AnswersConfig {
            max_prompt_bytes: 8 * 1024,
            min_similarity: 0.95,
            max_attempts: 3,
            max_suggestions: 5,
            refresh_every: Duration::from_secs(2),
            cache_entries: 10_000,
            cache_bytes: 32 << 20,
            max_streams_per_caller: 10_000,
            max_streams: 20_000,
            cache_max_age: Duration::from_secs(60),
            embedding: aap_embedding::BatchConfig::default(),
            max_age: HashMap::new(),
            refresh_schedules_every: Duration::from_secs(10),
            audit_per_second: 10,
            ef_search: 40,
        }
    }
}

/// What can go wrong before a stream starts.
#[derive(Debug, thiserror::Error)]
pub enum AnswersError {
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("prompt {0} does not exist")]
    PromptNotFound(i64),
    #[error("no refresh schedule is named {0:?}")]
    ScheduleNotFound(String),
    #[error("cannot embed the prompt: {0}")]
    Embedding(String),
    /// The embedding model is saturated (its queue is full).
    #[error("{0}")]
    Busy(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The process is stopping: the caller asks again (of another replica).
    #[error("the server is shutting down; ask again")]
    ShuttingDown,
}

/// Result of the answers domain.
pub type AnswersResult<T> = Result<T, AnswersError>;

fn invalid(field: &'static str, reason: impl Into<String>) -> AnswersError {
    AnswersError::InvalidArgument { field, reason: reason.into() }
}

/// A prompt id as a request names it: prompts are numbered from 1, so 0 is a request that left
/// the field out (proto3 cannot tell), which is the caller's mistake to fix, not a prompt to
/// look for.
fn check_prompt_id(id: i64) -> AnswersResult<i64> {
    match id {
        1.. => Ok(id),
        0 => Err(invalid("prompt_id", "is 0 or missing: give a stored prompt's id (Ask's `matched.prompt_id`)")),
        _ => Err(invalid("prompt_id", format!("{id} is not a prompt id: ids start at 1"))),
    }
}

/// What to do with a similar stored prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    #[default]
    Suggest,
    Accept,
    ForceNew,
}

/// What a customer asks.
#[derive(Debug, Clone)]
pub enum Query {
    Text(String),
    PromptId(i64),
}

/// An assistant and a normalised plan ("any" when none was named).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub assistant: String,
    pub plan: String,
}

impl Target {
    /// Whether an evaluation serves this target: same assistant, and same plan unless the
    /// target takes any plan.
    fn covers(&self, row: &EvaluationRow) -> bool {
        row.assistant == self.assistant && (self.plan == ANY_PLAN || row.plan == self.plan)
    }
}

/// Checks and normalises targets; empty means every assistant on any plan.
pub fn parse_targets(raw: impl IntoIterator<Item = (String, String)>) -> AnswersResult<Vec<Target>> {
    let raw: Vec<(String, String)> = raw.into_iter().collect();
    if raw.len() > input::MAX_TARGETS {
        return Err(invalid("targets", format!("{} targets; the limit is {}", raw.len(), input::MAX_TARGETS)));
    }
    let mut targets = Vec::new();
    for (assistant, plan) in raw {
        let target = parse_target(&assistant, &plan, ("targets.assistant", "targets.plan"))?;
        if !targets.contains(&target) {
            targets.push(target);
        }
    }
    if targets.is_empty() {
        targets = assistants::ASSISTANTS
            .iter()
            .map(|a| Target { assistant: a.id.to_owned(), plan: ANY_PLAN.to_owned() })
            .collect();
    }
    drop_covered(&mut targets);
    Ok(targets)
}

/// Drops the any-plan target of an assistant also named on a plan: that plan's answer is an
/// answer of any plan too. Both kept, both were asked, and the stream gave the plan's answer
/// twice (the any-plan target takes the newest answer of any plan) and the other never.
fn drop_covered(targets: &mut Vec<Target>) {
    let named: Vec<String> = targets.iter().filter(|t| t.plan != ANY_PLAN).map(|t| t.assistant.clone()).collect();
    targets.retain(|t| t.plan != ANY_PLAN || !named.contains(&t.assistant));
}

/// Checks and normalises one target; `fields` name its assistant and plan as the request spells
/// them (`targets.*` in an Ask, `target.*` in a History request).
fn parse_target(assistant: &str, plan: &str, fields: (&'static str, &'static str)) -> AnswersResult<Target> {
    let (assistant_field, plan_field) = fields;
    input::check_plan(plan.trim()).map_err(|reason| invalid(plan_field, reason))?;
    let known = assistants::by_id(assistant.trim()).ok_or_else(|| {
        let ids: Vec<_> = assistants::ASSISTANTS.iter().map(|a| a.id).collect();
        invalid(assistant_field, format!("unknown assistant {}; known: {}", input::quoted(assistant), ids.join(", ")))
    })?;
    Ok(Target { assistant: known.id.to_owned(), plan: assistants::normalize_plan(plan) })
}

/// Checks the text of an Ask: not blank, not blank but for WebDriver keys, no control characters
/// but tab and new lines, at most `max_bytes` bytes of UTF-8 once trimmed; returns it trimmed, as
/// it is stored.
pub fn check_prompt(text: &str, max_bytes: usize) -> AnswersResult<&str> {
    let text = text.trim();
    if input::is_blank(text) {
        return Err(invalid("prompt", "must not be empty or blank (white space and invisible characters only)"));
    }
    if input::types_as_blank(text) {
        return Err(invalid(
            "prompt",
            "has nothing a bot can type: besides white space and invisible characters it holds only \
             WebDriver keys (U+E000–U+E05D, such as U+E007 Enter), which bots type as spaces",
        ));
    }
    input::check_line(text, usize::MAX).map_err(|reason| invalid("prompt", reason))?;
    if text.len() > max_bytes {
        return Err(invalid("prompt", format!("is {} bytes; the limit is {max_bytes}", text.len())));
    }
    Ok(text)
}

/// A validated Ask.
#[derive(Debug, Clone)]
pub struct AskQuery {
    pub query: Query,
    pub targets: Vec<Target>,
    pub policy: Policy,
    pub min_similarity: Option<f64>,
    /// Whether answers carry the page's HTML (`capture.response_html`).
    pub include_html: bool,
    /// Whether the first event lists near prompts the guard held apart.
    pub include_related: bool,
    /// Oldest answer served as current; `None`: the server's default for each assistant.
    pub max_age: Option<Duration>,
}

/// Whether a newer answer is wanted for the target: the answer was captured longer than the
/// target's max age (`age`) before `now`, or another model than the plan's gave it (the account
/// had used up the plan's limit for its model): that answer is served, marked, until the plan's
/// model answers, never taken for the plan's answer however fresh.
fn is_stale(answer: &AnswerRow, age: Option<&chrono::Duration>, now: chrono::DateTime<chrono::Utc>) -> bool {
    answer.model_fallback || age.is_some_and(|age| now - answer.captured_at > *age)
}

/// What a target needs before it can be answered: `None` when an evaluation is live or its
/// newest answer is fresh; `Some(false)` a first evaluation; `Some(true)` a refresh of a stale
/// answer.
fn needs_evaluation(
    snapshot: &Snapshot,
    target: &Target,
    max_age: Option<&chrono::Duration>,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<bool> {
    let covering = || snapshot.rows.iter().filter(|r| target.covers(r));
    if covering().any(|r| !r.status().is_final()) {
        return None;
    }
    let newest = covering()
        .filter(|r| r.status() == Status::Answered)
        .filter_map(|r| snapshot.answers.iter().find(|a| a.evaluation_id == r.id))
        .max_by_key(|a| a.evaluation_id);
    match newest {
        None => Some(false),
        Some(answer) if is_stale(answer, max_age, now) => Some(true),
        Some(_) => None,
    }
}

/// Splits the neighbours above the threshold into those the near-miss guard lets through and
/// those it holds apart (related, not the same question), each with the guard's reason.
fn guard_neighbours(asked: &str, neighbours: Vec<store::Neighbour>) -> (Vec<store::Neighbour>, Vec<RelatedPrompt>) {
    let mut near = Vec::new();
    let mut related = Vec::new();
    for neighbour in neighbours {
        match guard::check(asked, &neighbour.text) {
            Ok(()) => near.push(neighbour),
            Err(veto) => {
                crate::metrics::similar_vetoed(veto.category.as_str());
                tracing::debug!(prompt_id = neighbour.id, reason = %veto.reason, "near prompt held apart");
                related.push(RelatedPrompt {
                    prompt_id: neighbour.id,
                    prompt_text: neighbour.text,
                    similarity: neighbour.similarity,
                    reason: veto.reason,
                });
            }
        }
    }
    (near, related)
}

/// The stream of a prompt's events: those known when it was made, then, for a stream that
/// follows its prompt, what its follower (a task of its own) sends; the follower stops when this
/// is dropped.
///
/// The follower's channel carries each event boxed. A Tokio channel allocates its first block of
/// 32 slots with the channel, and an event is about 500 bytes: a channel of events took 16 KB
/// for every open stream before it sent anything, and every exact hit made and dropped one.
/// Boxed, the block is 256 bytes, and a stream whose events are all known (an exact hit,
/// suggestions) has no channel at all.
pub struct Events {
    known: std::vec::IntoIter<AnswerEvent>,
    follower: Option<mpsc::Receiver<Box<AnswerEvent>>>,
}

impl Events {
    /// A stream that holds all of its events already.
    fn known(events: Vec<AnswerEvent>) -> Self {
        Events { known: events.into_iter(), follower: None }
    }

    /// `first`, then what the follower sends on `rx`.
    fn followed(first: AnswerEvent, rx: mpsc::Receiver<Box<AnswerEvent>>) -> Self {
        Events { known: vec![first].into_iter(), follower: Some(rx) }
    }
}

impl futures::Stream for Events {
    type Item = AnswerEvent;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<AnswerEvent>> {
        if let Some(event) = self.known.next() {
            return std::task::Poll::Ready(Some(event));
        }
        match &mut self.follower {
            Some(rx) => rx.poll_recv(cx).map(|event| event.map(|event| *event)),
            None => std::task::Poll::Ready(None),
        }
    }
}

/// The answers service.
#[derive(Clone)]
pub struct Answers {
    pool: PgPool,
    embedder: Batcher,
    queue: Arc<Queue>,
    config: AnswersConfig,
    hub: Hub,
    /// Wakes the replica's refresh-schedule loop.
    refresh_wake: Arc<tokio::sync::Notify>,
}

fn event(e: Event) -> AnswerEvent {
    AnswerEvent { event: Some(e) }
}

pub(crate) fn timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: t.timestamp_subsec_nanos() as i32 }
}

fn to_answer(row: &AnswerRow) -> Answer {
    Answer {
        evaluation_id: row.evaluation_id,
        prompt_id: row.prompt_id,
        assistant: row.assistant.clone(),
        plan: row.plan.clone(),
        response_text: row.response_text.clone(),
        response_markdown: row.response_markdown.clone(),
        citations: row
            .citations
            .0
            .iter()
            .map(|c| Citation {
                url: c.url.clone(),
                title: c.title.clone(),
                domain: c.domain.clone(),
                position: c.position,
                kind: match c.kind {
                    evals_model::CitationKind::Unspecified => CitationKind::Unspecified,
                    evals_model::CitationKind::Inline => CitationKind::Inline,
                    evals_model::CitationKind::Listed => CitationKind::Listed,
                } as i32,
                found_in: match c.found_in {
                    evals_model::CitationOrigin::Unspecified => CitationOrigin::Unspecified,
                    evals_model::CitationOrigin::Page => CitationOrigin::Page,
                    evals_model::CitationOrigin::Stream => CitationOrigin::Stream,
                    evals_model::CitationOrigin::Both => CitationOrigin::Both,
                } as i32,
            })
            .collect(),
        captured_at: Some(timestamp(row.captured_at)),
        kind: match row.kind.parse::<evals_model::AnswerKind>() {
            Ok(evals_model::AnswerKind::NoOverview) => AnswerKind::NoOverview,
            _ => AnswerKind::Text,
        } as i32,
        capture: Some(Capture {
            response_html: row.response_html.clone(),
            model: row.model.clone(),
            web_search: row.web_search,
            time_to_first_token: row.ttft_ms.map(duration_ms),
            time_to_complete: row.total_ms.map(duration_ms),
            adapter_version: row.adapter_version.clone(),
            adapter_fingerprint: row.adapter_fingerprint.clone(),
            finish_signals: row.finish_signals.clone(),
            missing_roles: row.missing_roles.clone(),
            read_by_fallback: row.read_by_fallback,
            confidence: row.confidence.unwrap_or_default(),
            cut_short: row.cut_short,
            model_fallback: row.model_fallback,
        }),
        search_queries: row.search_queries.0.clone(),
        products: row
            .products
            .iter()
            .map(|p| Product {
                name: p.name.clone(),
                url: p.url.clone(),
                price: p.price.clone(),
                merchant: p.merchant.clone(),
                position: p.position,
            })
            .collect(),
        account_id: row.account_id.clone(),
        account_label: row.account_label.clone(),
        bot_id: row.bot_id.clone(),
        stale: false,
    }
}

fn duration_ms(ms: i64) -> prost_types::Duration {
    prost_types::Duration { seconds: ms / 1000, nanos: ((ms % 1000) * 1_000_000) as i32 }
}

fn state_of(status: Status) -> EvaluationState {
    match status {
        Status::Pending => EvaluationState::Pending,
        Status::Queued => EvaluationState::Queued,
        Status::Claimed => EvaluationState::Claimed,
        Status::Submitted => EvaluationState::Submitted,
        Status::Answered => EvaluationState::Answered,
        Status::Failed => EvaluationState::Failed,
    }
}

impl Answers {
    /// The service's configuration.
    pub fn config(&self) -> &AnswersConfig {
        &self.config
    }

    /// The service, listening to every prompt's announcements on NATS.
    pub async fn start(
        pool: PgPool,
        embedder: Batcher,
        queue: Arc<Queue>,
        config: AnswersConfig,
    ) -> Result<Answers, async_nats::SubscribeError> {
        let hub_config = HubConfig {
            sweep_every: config.refresh_every,
            cache_entries: config.cache_entries,
            cache_bytes: config.cache_bytes,
            max_age: config.cache_max_age,
        };
        let subjects = queue.topology().prompt_events_subject_prefix();
        let hub = Hub::start(pool.clone(), queue.client().clone(), &subjects, hub_config).await?;
        crate::metrics::register();
        // Prompts stored before hashes were canonical are rehashed in the background; until then
        // an exact Ask of one finds it by similarity instead.
        let rehash = pool.clone();
        tokio::spawn(async move {
            match store::rehash_prompts(&rehash, |text| prompt_hash(&canonical(text))).await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "prompts rehashed in their canonical form"),
                Err(err) => tracing::warn!(error = %err, "cannot rehash stored prompts; the next start tries again"),
            }
        });
        crate::reachability::spawn(pool.clone(), config.audit_per_second, config.min_similarity);
        let refresh_wake = Arc::new(tokio::sync::Notify::new());
        crate::refresh::spawn(
            pool.clone(),
            queue.clone(),
            config.refresh_schedules_every,
            config.max_attempts as i32,
            refresh_wake.clone(),
        );
        Ok(Answers { pool, embedder, queue, config, hub, refresh_wake })
    }

    /// Validates the similarity threshold: in (0, 1].
    pub fn check_min_similarity(value: Option<f64>) -> AnswersResult<Option<f64>> {
        match value {
            Some(v) if !(v > 0.0 && v <= 1.0) => Err(invalid("min_similarity", format!("{v} is outside (0, 1]"))),
            other => Ok(other),
        }
    }

    /// Answers an Ask: validates, finds or stores the prompt, and returns the event stream.
    pub async fn ask(&self, query: AskQuery) -> AnswersResult<Events> {
        let started = std::time::Instant::now();
        let (events, matched) = self.find_and_follow(query).await?;
        // The stream's first event is on its way: the follower sends it before anything else.
        crate::metrics::ask_answered(matched, started.elapsed());
        Ok(events)
    }

    /// The body of [`Answers::ask`]; also says how the prompt was found (the `match` label).
    async fn find_and_follow(&self, query: AskQuery) -> AnswersResult<(Events, &'static str)> {
        let min_similarity = Self::check_min_similarity(query.min_similarity)?.unwrap_or(self.config.min_similarity);
        let trace = aap_platform::telemetry::current_context();
        let mut related = Vec::new();
        let (prompt, matched) = match query.query {
            Query::PromptId(id) => {
                let id = check_prompt_id(id)?;
                let prompt = self.hub.prompt_by_id(id).await?.ok_or(AnswersError::PromptNotFound(id))?;
                (prompt, (MatchKind::ById, 1.0))
            }
            Query::Text(text) => {
                let text = check_prompt(&text, self.config.max_prompt_bytes)?.to_owned();
                // Asked exactly so before: the prompt it was is remembered.
                if let Some(prompt) = self.hub.prompt_asked_as(&text) {
                    (prompt, (MatchKind::Exact, 1.0))
                } else {
                    // Hashed and embedded in the canonical form: "$1,000" and "$1000" are one prompt.
                    let normalized = canonical(&text);
                    let hash = prompt_hash(&normalized);
                    if let Some(prompt) = self.hub.prompt_by_hash(&hash).await? {
                        self.hub.remember_asked_as(&text, &prompt);
                        (prompt, (MatchKind::Exact, 1.0))
                    } else {
                        let embedding = self.embedder.embed(normalized).await.map_err(|e| match e {
                            BatchError::Busy { .. } => AnswersError::Busy(e.to_string()),
                            other => AnswersError::Embedding(other.to_string()),
                        })?;
                        // A text the model cannot read (emoji, symbols, words longer than
                        // 100 characters) embeds like every other such text: it is matched
                        // exactly or asked as new, never by similarity.
                        let unreadable = embedding.mostly_unknown();
                        if unreadable {
                            tracing::debug!(unknown_share = embedding.unknown_share, "not matched by similarity");
                            crate::metrics::unreadable_prompt();
                        }
                        let embedding = embedding.vector;
                        let neighbours = if query.policy == Policy::ForceNew || unreadable {
                            Vec::new()
                        } else {
                            store::neighbours(
                                &self.pool,
                                embedding.clone(),
                                min_similarity,
                                self.config.max_suggestions,
                            )
                            .await?
                        };
                        // A concurrent Ask of the same text may have stored it since the lookup
                        // above: it then shows up as a neighbour, and is an exact match.
                        let stored_meanwhile =
                            if neighbours.is_empty() { None } else { store::prompt_by_hash(&self.pool, &hash).await? };
                        let (near, held_apart) = guard_neighbours(&text, neighbours);
                        if query.include_related {
                            related = held_apart.clone();
                        }
                        match (stored_meanwhile, near.first(), query.policy) {
                            (Some(prompt), _, _) => (prompt, (MatchKind::Exact, 1.0)),
                            (None, Some(_), Policy::Suggest) => {
                                return Ok((self.suggest(near, held_apart), crate::metrics::SUGGESTED));
                            }
                            (None, Some(best), _) => {
                                let prompt = PromptRow { id: best.id, text: best.text.clone() };
                                (prompt, (MatchKind::Similar, best.similarity))
                            }
                            (None, None, _) => {
                                let mut conn = self.pool.acquire().await?;
                                let (prompt, stored) = store::insert_prompt(&mut conn, &text, &hash, embedding).await?;
                                // Stored by a concurrent Ask of the same text since the lookup
                                // (FORCE_NEW looks for no neighbour): found, not new.
                                (prompt, (if stored { MatchKind::New } else { MatchKind::Exact }, 1.0))
                            }
                        }
                    }
                }
            }
        };
        tracing::info!(prompt_id = prompt.id, matched = ?matched.0, "prompt matched");
        let first = event(Event::Matched(PromptMatched {
            prompt_id: prompt.id,
            r#match: matched.0 as i32,
            similarity: matched.1,
            prompt_text: prompt.text.clone(),
            related,
        }));
        let max_age = self.max_ages(&query.targets, query.max_age);
        let label = crate::metrics::match_label(matched.0);
        if matched.0 != MatchKind::New {
            let events = self.follow(prompt.id, query.targets, Some(trace), first, query.include_html, max_age).await?;
            return Ok((events, label));
        }
        // The new prompt is stored: its evaluations are made even if the caller goes away now
        // (a deadline, a cancel: tonic drops this future), or it would stay stored, never asked,
        // and matched by later Asks as a prompt with nothing to follow.
        let answers = self.clone();
        let follow = async move {
            answers.follow(prompt.id, query.targets, Some(trace), first, query.include_html, max_age).await
        };
        match tokio::spawn(follow.in_current_span()).await {
            Ok(events) => Ok((events?, label)),
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            Err(_) => Err(AnswersError::ShuttingDown),
        }
    }

    /// Follows a known prompt's evaluations without scheduling anything.
    pub async fn watch(
        &self,
        prompt_id: i64,
        targets: Vec<(String, String)>,
        include_html: bool,
    ) -> AnswersResult<Events> {
        let prompt_id = check_prompt_id(prompt_id)?;
        let prompt = self.hub.prompt_by_id(prompt_id).await?.ok_or(AnswersError::PromptNotFound(prompt_id))?;
        let rows = evals::evaluations_of_prompt(&self.pool, prompt_id).await?;
        let targets = if targets.is_empty() {
            let mut seen = Vec::new();
            for row in &rows {
                let t = Target { assistant: row.assistant.clone(), plan: row.plan.clone() };
                if !seen.contains(&t) {
                    seen.push(t);
                }
            }
            drop_covered(&mut seen);
            seen
        } else {
            parse_targets(targets)?
        };
        if let Some(t) = targets.iter().find(|t| !rows.iter().any(|r| t.covers(r))) {
            return Err(invalid(
                "targets",
                format!("prompt {prompt_id} was never asked of {} ({})", t.assistant, t.plan),
            ));
        }
        let first = event(Event::Matched(PromptMatched {
            prompt_id,
            r#match: MatchKind::ById as i32,
            similarity: 1.0,
            prompt_text: prompt.text,
            related: Vec::new(),
        }));
        let max_age = self.max_ages(&targets, None);
        self.follow(prompt_id, targets, None, first, include_html, max_age).await
    }

    /// Every answer the prompt has had for one assistant (on one plan, or every plan when `plan`
    /// is empty or "any"), oldest first, each with the citation URLs it added and dropped since
    /// the one before; the newest is the current one. At most the 1,000 newest.
    pub async fn history(
        &self,
        prompt_id: i64,
        assistant: &str,
        plan: &str,
        include_html: bool,
    ) -> AnswersResult<Vec<HistoryResponse>> {
        if assistant.trim().is_empty() {
            return Err(invalid("target.assistant", "name the assistant whose answers to list"));
        }
        let target = parse_target(assistant, plan, ("target.assistant", "target.plan"))?;
        let prompt_id = check_prompt_id(prompt_id)?;
        self.hub.prompt_by_id(prompt_id).await?.ok_or(AnswersError::PromptNotFound(prompt_id))?;
        let plan = (target.plan != ANY_PLAN).then_some(target.plan.as_str());
        let rows = evals::answers_of_target(&self.pool, prompt_id, &target.assistant, plan, include_html, 1000).await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut before: Vec<String> = Vec::new();
        let last = rows.len().saturating_sub(1);
        for (i, row) in rows.iter().enumerate() {
            let urls: Vec<String> = row.citations.0.iter().map(|c| c.url.clone()).collect();
            let added = urls.iter().filter(|u| !before.contains(u)).cloned().collect();
            let dropped = before.iter().filter(|u| !urls.contains(u)).cloned().collect();
            out.push(HistoryResponse {
                answer: Some(to_answer(row)),
                added_urls: added,
                dropped_urls: dropped,
                current: i == last,
            });
            before = urls;
        }
        Ok(out)
    }

    /// Creates or replaces a refresh schedule; one saved to run now runs at once.
    pub async fn schedule_refresh(
        &self,
        schedule: crate::refresh::NewSchedule,
        created_by: &str,
    ) -> AnswersResult<crate::refresh::Schedule> {
        let saved = crate::refresh::save(&self.pool, &schedule, created_by).await?;
        if schedule.run_now {
            self.refresh_wake.notify_one();
        }
        Ok(saved)
    }

    /// Every refresh schedule, by name.
    pub async fn refresh_schedules(&self) -> AnswersResult<Vec<crate::refresh::Schedule>> {
        Ok(crate::refresh::list(&self.pool).await?)
    }

    /// Deletes a refresh schedule by name.
    pub async fn delete_refresh_schedule(&self, name: &str) -> AnswersResult<()> {
        let name = crate::refresh::check_name(name)?;
        if crate::refresh::delete(&self.pool, &name).await? {
            Ok(())
        } else {
            Err(AnswersError::ScheduleNotFound(name))
        }
    }

    /// Each target's max age: the asked one, else the assistant's default, else none.
    fn max_ages(&self, targets: &[Target], asked: Option<Duration>) -> HashMap<Target, chrono::Duration> {
        targets
            .iter()
            .filter_map(|target| {
                let age = asked.or_else(|| self.config.max_age.get(&target.assistant).copied())?;
                Some((target.clone(), chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX)))
            })
            .collect()
    }

    /// Validates an Ask's max age: not negative, at most a century.
    pub fn check_max_age(value: Option<prost_types::Duration>) -> AnswersResult<Option<Duration>> {
        let Some(value) = value else { return Ok(None) };
        let nanos = input::check_nanos(value.nanos).map_err(|reason| invalid("max_age", reason))?;
        if value.seconds < 0 {
            return Err(invalid("max_age", format!("{}s is negative: a max age is zero or more", value.seconds)));
        }
        const CENTURY: i64 = 100 * 366 * 24 * 3600;
        if value.seconds > CENTURY {
            return Err(invalid(
                "max_age",
                format!("{}s is more than a century; the limit is {CENTURY}s", value.seconds),
            ));
        }
        Ok(Some(Duration::new(value.seconds as u64, nanos)))
    }

    fn suggest(&self, near: Vec<store::Neighbour>, related: Vec<RelatedPrompt>) -> Events {
        let suggestions = Suggestions {
            suggestions: near
                .into_iter()
                .map(|n| Suggestion {
                    prompt_id: n.id,
                    prompt_text: n.text,
                    similarity: n.similarity,
                    answered_assistants: n.answered_assistants,
                })
                .collect(),
            related,
        };
        Events::known(vec![
            event(Event::Suggestions(suggestions)),
            event(Event::Completed(Completed { prompt_id: 0, answered: 0, failed: 0 })),
        ])
    }

    /// A follower of `targets` that has told its client nothing yet.
    fn follower(
        &self,
        targets: Vec<Target>,
        scheduled: Vec<i64>,
        include_html: bool,
        max_age: HashMap<Target, chrono::Duration>,
        follow_refreshes: bool,
    ) -> Follower {
        Follower {
            pool: self.pool.clone(),
            targets,
            scheduled,
            include_html,
            max_age,
            follow_refreshes,
            stale: HashMap::new(),
            sent: HashMap::new(),
            done: HashMap::new(),
        }
    }

    /// Streams the prompt's answers for `targets`: stored ones at once; when `schedule` carries
    /// the asker's trace context, targets with neither an answer nor a live evaluation are
    /// scheduled; then every change until each target has answered or failed. Without it (a
    /// Watch) a stored answer whose refresh is live is stale, and the refresh is followed.
    async fn follow(
        &self,
        prompt_id: i64,
        mut targets: Vec<Target>,
        schedule: Option<HashMap<String, String>>,
        first: AnswerEvent,
        include_html: bool,
        mut max_age: HashMap<Target, chrono::Duration>,
    ) -> AnswersResult<Events> {
        // An exact hit on a prompt kept settled in memory, with nothing to schedule: the whole
        // stream is known, and nothing follows the prompt (no feed made and dropped per Ask).
        if !include_html && let Some(kept) = self.hub.kept(prompt_id) {
            let now = chrono::Utc::now();
            let wanted = schedule.is_some()
                && targets.iter().any(|target| needs_evaluation(&kept, target, max_age.get(target), now).is_some());
            if !wanted {
                let follower = self.follower(targets, Vec::new(), include_html, max_age, schedule.is_none());
                if let Some(events) = settled_events(&follower, &kept, prompt_id) {
                    self.hub.served_from_memory();
                    return Ok(whole_stream(first, events));
                }
                (targets, max_age) = (follower.targets, follower.max_age);
            }
        }
        // Followed before reading, so that no change between the read and the wait is missed.
        let following = self.hub.follow(prompt_id);
        let (snapshot, from_memory) = self.hub.read(prompt_id, &following, false).await?;
        let mut snapshot = snapshot;
        let now = chrono::Utc::now();
        let mut scheduled = Vec::new();
        if let Some(trace) = &schedule {
            let wanted =
                |snapshot: &Snapshot, target: &Target| needs_evaluation(snapshot, target, max_age.get(target), now);
            // Nothing is scheduled on what memory says: another replica may have answered since.
            if from_memory && targets.iter().any(|target| wanted(&snapshot, target).is_some()) {
                snapshot = self.hub.read(prompt_id, &following, true).await?.0;
            }
            let wants: Vec<evals::Wanted> = targets
                .iter()
                .filter_map(|target| {
                    let refresh = wanted(&snapshot, target)?;
                    Some(evals::Wanted { assistant: target.assistant.clone(), plan: target.plan.clone(), refresh })
                })
                .collect();
            if !wants.is_empty() {
                let max_attempts = self.config.max_attempts as i32;
                let mut conn = self.pool.acquire().await?;
                let rows = evals::create_many(&mut conn, prompt_id, &wants, max_attempts, trace).await?;
                drop(conn);
                let mut created_any = false;
                for (row, created) in &rows {
                    let created = *created;
                    let refresh = wants.iter().any(|w| w.refresh && w.assistant == row.assistant && w.plan == row.plan);
                    if refresh && created {
                        tracing::info!(prompt_id, evaluation_id = row.id, assistant = %row.assistant, "stale answer: refresh scheduled");
                    }
                    created_any |= created;
                    scheduled.push(row.id);
                }
                // The streams learn of them as they are (nothing read again); what happens to them
                // next comes in the announcements.
                self.hub.told(prompt_id, &following, rows.into_iter().map(|(row, _)| row).collect());
                if created_any {
                    self.queue.wake_scheduler().await;
                }
            }
        }
        let follower = self.follower(targets, scheduled, include_html, max_age, schedule.is_none());
        // Every target settled already (an exact hit): the whole stream is known now, so it is
        // handed over complete, with no task following the prompt.
        if !include_html
            && follower.scheduled.is_empty()
            && let Some(events) = settled_events(&follower, &following.current(), prompt_id)
        {
            return Ok(whole_stream(first, events));
        }
        let (tx, rx) = mpsc::channel(32);
        // Partials heard from before the first event on: a client that has it misses none.
        let partials = following.partials();
        let span = tracing::info_span!("follow", prompt_id);
        tokio::spawn(follower.run(tx, partials, prompt_id, following).instrument(span));
        Ok(Events::followed(first, rx))
    }
}

/// Every event after the first of a prompt whose every target `snapshot` shows settled
/// (answered, or failed for good): the answers and the end. None while any target is not (the
/// follower, untouched, starts from nothing told).
fn settled_events(follower: &Follower, snapshot: &Snapshot, prompt_id: i64) -> Option<Vec<AnswerEvent>> {
    let mut settled = follower.clone();
    let mut events = settled.diff(&snapshot.rows, &snapshot.answers, true);
    if settled.done.len() != settled.targets.len() {
        return None;
    }
    events.push(settled.completed(prompt_id));
    Some(events)
}

/// A stream that holds all of its events already.
fn whole_stream(first: AnswerEvent, events: Vec<AnswerEvent>) -> Events {
    let mut all = Vec::with_capacity(events.len() + 1);
    all.push(first);
    all.extend(events);
    Events::known(all)
}

/// What a stream has told its client about one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Told {
    status: Status,
    attempts: i32,
    failure_reason: Option<String>,
}

/// Follows one prompt for one stream, from the replica's shared snapshots of it.
#[derive(Clone)]
struct Follower {
    pool: PgPool,
    targets: Vec<Target>,
    /// Evaluations this stream created (announced as scheduled).
    scheduled: Vec<i64>,
    /// Whether answers carry the page's HTML (read for each answer sent).
    include_html: bool,
    /// Oldest answer served as current, per target (none: never stale).
    max_age: HashMap<Target, chrono::Duration>,
    /// Whether a stored answer is stale while a newer evaluation of its target is live, whatever
    /// its age: a Watch re-attaching to an Ask whose refresh is under way (or to a scheduled
    /// refresh) waits for the fresh answer as that Ask did.
    follow_refreshes: bool,
    /// Targets served a stale answer while a refresh is evaluated: the stale answer's evaluation.
    stale: HashMap<Target, i64>,
    sent: HashMap<i64, Told>,
    /// Final outcome per target: true answered, false failed.
    done: HashMap<Target, bool>,
}

impl Follower {
    /// Sends `tx` what changes after the stream's first event (which the stream holds), and the
    /// partials heard on `partials` (subscribed before that first event was made).
    async fn run(
        mut self,
        tx: mpsc::Sender<Box<AnswerEvent>>,
        mut partials: broadcast::Receiver<Arc<PartialMessage>>,
        prompt_id: i64,
        following: Following,
    ) {
        let mut snapshots = following.subscribe();
        let mut initial = true;
        loop {
            let snapshot = snapshots.borrow_and_update().clone();
            let events = self.diff(&snapshot.rows, &snapshot.answers, initial);
            initial = false;
            for mut e in events {
                if self.include_html {
                    self.add_html(&mut e).await;
                }
                if tx.send(Box::new(e)).await.is_err() {
                    // The client went away; its evaluations go on for the next asker.
                    return;
                }
            }
            if self.done.len() == self.targets.len() {
                let _ = tx.send(Box::new(self.completed(prompt_id))).await;
                return;
            }
            // Partials go out between changes, never waiting on the client: a full stream
            // loses them (the next one holds the whole text so far); answers are never lost.
            loop {
                tokio::select! {
                    changed = snapshots.changed() => if changed.is_err() { return } else { break },
                    partial = partials.recv() => match partial {
                        Ok(partial) => {
                            let Some(e) = self.partial(&partial, &snapshots.borrow().rows) else { continue };
                            match tx.try_send(Box::new(e)) {
                                Ok(()) => {}
                                Err(TrySendError::Full(_)) => crate::metrics::partials_dropped("slow_client", 1),
                                Err(TrySendError::Closed(_)) => return,
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => crate::metrics::partials_dropped("behind", n),
                        // The feed lives as long as `following`: not before the stream ends.
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tx.closed() => return,
                }
            }
        }
    }

    /// The event for a partial answer (or, when the bot waits before it can ask, a progress
    /// event saying what for), when it is about the evaluation this stream follows for a target
    /// not told its answer yet; `None` otherwise (late, or another stream's target).
    fn partial(&self, partial: &PartialMessage, rows: &[EvaluationRow]) -> Option<AnswerEvent> {
        let row = rows.iter().find(|r| r.id == partial.evaluation_id && !r.status().is_final())?;
        self.targets.iter().find(|t| t.covers(row) && !self.done.contains_key(*t))?;
        if !partial.waiting.is_empty() {
            return Some(event(Event::Progress(EvaluationProgress {
                evaluation_id: row.id,
                assistant: row.assistant.clone(),
                plan: row.plan.clone(),
                state: EvaluationState::Claimed as i32,
                attempt: row.attempts.max(0) as u32,
                waiting: partial.waiting.clone(),
                waiting_until: partial.waiting_until.map(timestamp),
            })));
        }
        Some(event(Event::Partial(PartialAnswer {
            evaluation_id: row.id,
            assistant: row.assistant.clone(),
            plan: row.plan.clone(),
            text: partial.text.clone(),
        })))
    }

    /// The stream's last event, once every target is done.
    fn completed(&self, prompt_id: i64) -> AnswerEvent {
        let answered = self.done.values().filter(|ok| **ok).count() as u32;
        let failed = self.done.len() as u32 - answered;
        event(Event::Completed(Completed { prompt_id, answered, failed }))
    }

    /// Puts the page's HTML into an answer event.
    async fn add_html(&self, e: &mut AnswerEvent) {
        let Some(Event::Answer(answer) | Event::Cached(answer)) = e.event.as_mut() else { return };
        match evals::answer_html(&self.pool, answer.evaluation_id).await {
            Ok(html) => answer.capture.get_or_insert_default().response_html = html,
            Err(err) => tracing::warn!(error = %err, evaluation_id = answer.evaluation_id, "cannot read the page html"),
        }
    }

    /// The events that bring the client from what it was told to `rows`.
    fn diff(&mut self, rows: &[EvaluationRow], answers: &[AnswerRow], initial: bool) -> Vec<AnswerEvent> {
        let mut out = Vec::new();
        let answers: HashMap<i64, &AnswerRow> = answers.iter().map(|a| (a.evaluation_id, a)).collect();
        for target in &self.targets {
            if self.done.contains_key(target) {
                continue;
            }
            let covering: Vec<&EvaluationRow> = rows.iter().filter(|r| target.covers(r)).collect();
            // The newest answer settles the target, whichever evaluation gave it; an older one
            // stays in the history. One older than the target's max age is sent marked stale, and
            // the stream goes on while a newer evaluation is live (the refresh).
            let newest = covering
                .iter()
                .filter(|r| r.status() == Status::Answered && answers.contains_key(&r.id))
                .max_by_key(|r| r.id);
            if let Some(row) = newest {
                let superseded_stale = self.stale.get(target).is_some_and(|served| *served < row.id);
                if !self.stale.contains_key(target) || superseded_stale {
                    let mut answer = to_answer(answers[&row.id]);
                    let refreshing = covering.iter().any(|r| !r.status().is_final() && r.id > row.id);
                    // A refresh's answer is fresh, unless another model than the plan's gave it.
                    answer.stale = if superseded_stale {
                        answers[&row.id].model_fallback
                    } else {
                        (self.follow_refreshes && refreshing)
                            || is_stale(answers[&row.id], self.max_age.get(target), chrono::Utc::now())
                    };
                    let stale = answer.stale;
                    let stored_before = initial && !self.scheduled.contains(&row.id);
                    out.push(event(if stored_before { Event::Cached(answer) } else { Event::Answer(answer) }));
                    if !(stale && refreshing) {
                        self.done.insert(target.clone(), true);
                        continue;
                    }
                    self.stale.insert(target.clone(), row.id);
                }
            }
            // Otherwise follow the newest evaluation: a live one, or the last that failed.
            let Some(row) = covering.iter().max_by_key(|r| (!r.status().is_final(), r.id)) else {
                continue;
            };
            let now = Told { status: row.status(), attempts: row.attempts, failure_reason: row.failure_reason.clone() };
            let before = self.sent.get(&row.id).cloned();
            if before.is_none() && self.scheduled.contains(&row.id) {
                out.push(event(Event::Scheduled(EvaluationScheduled {
                    evaluation_id: row.id,
                    assistant: row.assistant.clone(),
                    plan: row.plan.clone(),
                })));
            }
            if before.as_ref() == Some(&now) {
                continue;
            }
            let reason_changed =
                now.failure_reason.is_some() && before.as_ref().map(|b| &b.failure_reason) != Some(&now.failure_reason);
            if now.status == Status::Failed {
                out.push(event(Event::Failed(EvaluationFailed {
                    evaluation_id: row.id,
                    assistant: row.assistant.clone(),
                    plan: row.plan.clone(),
                    reason: now.failure_reason.clone().unwrap_or_else(|| "failed".to_owned()),
                    will_retry: false,
                })));
                // A failed refresh leaves the stale answer the target's answer.
                let answered = self.stale.contains_key(target);
                self.done.insert(target.clone(), answered);
            } else if now.status != Status::Answered {
                if reason_changed && !initial {
                    out.push(event(Event::Failed(EvaluationFailed {
                        evaluation_id: row.id,
                        assistant: row.assistant.clone(),
                        plan: row.plan.clone(),
                        reason: now.failure_reason.clone().unwrap_or_default(),
                        will_retry: true,
                    })));
                }
                out.push(event(Event::Progress(EvaluationProgress {
                    evaluation_id: row.id,
                    assistant: row.assistant.clone(),
                    plan: row.plan.clone(),
                    state: state_of(now.status) as i32,
                    attempt: now.attempts.max(0) as u32,
                    ..EvaluationProgress::default()
                })));
            }
            self.sent.insert(row.id, now);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt as _;

    use super::*;

    fn completed(prompt_id: i64) -> AnswerEvent {
        event(Event::Completed(Completed { prompt_id, answered: 0, failed: 0 }))
    }

    #[test]
    fn a_prompt_is_checked_as_a_bot_would_type_it() {
        let refused = |text: &str| match check_prompt(text, 8192) {
            Err(AnswersError::InvalidArgument { field, reason }) => format!("{field}: {reason}"),
            other => panic!("{text:?} taken: {other:?}"),
        };
        assert!(refused(" \u{200B} ").contains("must not be empty or blank"));
        let keys = refused("\u{E007} \u{E004}\u{200B}");
        assert!(keys.starts_with("prompt: has nothing a bot can type"), "{keys}");
        // A key among words is typed as a space, and private use characters past WebDriver's keys
        // (an icon font's) are typed as they are: both are prompts.
        assert_eq!(check_prompt(" best laptops\u{E007} ", 8192).ok(), Some("best laptops\u{E007}"));
        assert_eq!(check_prompt("\u{F8FF}", 8192).ok(), Some("\u{F8FF}"));
    }

    #[tokio::test]
    async fn a_stream_of_known_events_gives_them_in_order_then_ends() {
        let events = whole_stream(completed(1), vec![completed(2), completed(3)]);
        let ids: Vec<i64> = events
            .map(|e| match e.event {
                Some(Event::Completed(c)) => c.prompt_id,
                other => panic!("{other:?}"),
            })
            .collect()
            .await;
        assert_eq!(ids, [1, 2, 3]);
    }

    #[tokio::test]
    async fn a_followed_stream_gives_its_first_event_then_the_followers_and_ends_with_it() {
        let (tx, rx) = mpsc::channel(32);
        let mut events = Events::followed(completed(1), rx);
        tx.send(Box::new(completed(2))).await.expect("open");
        let first = events.next().await.expect("first");
        assert!(matches!(first.event, Some(Event::Completed(Completed { prompt_id: 1, .. }))));
        let second = events.next().await.expect("the follower's");
        assert!(matches!(second.event, Some(Event::Completed(Completed { prompt_id: 2, .. }))));
        drop(tx);
        assert!(events.next().await.is_none(), "the follower is done: so is the stream");
    }

    #[tokio::test]
    async fn the_follower_hears_when_its_stream_is_dropped() {
        let (tx, rx) = mpsc::channel::<Box<AnswerEvent>>(32);
        drop(Events::followed(completed(1), rx));
        tokio::time::timeout(Duration::from_secs(10), tx.closed()).await.expect("told at once");
        assert!(tx.send(Box::new(completed(2))).await.is_err());
    }
}
