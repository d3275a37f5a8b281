//! The work loop: take a task, ask the assistant under the seed's retry rule, hand in the answer
//! or release the task, rotate sessions, close the browser when idle, stop cleanly.
//!
//! The retry rule (as the seed's bot): up to `max_attempts` attempts, each in a new
//! conversation, where an answer without citations counts as a failed attempt; then one more
//! try on a fresh session; then the task is released as failed with the reason.
//!
//! Each failure class has its own consequence:
//! - logged out: the session is retired (EXPIRED) and the attempt repeated on another session;
//! - rate limited: the session cools down (RATE_LIMITED), the attempt moves to another session;
//! - bot challenge: the session and its proxy are marked (CHALLENGED, a longer cool-down), the
//!   attempt moves to another session;
//! - selector missing: the page changed under the adapter; the task fails at once (retrying
//!   cannot help) and the log says which role of which manifest version;
//! - time-out, empty answer, assistant error, broken browser: a failed attempt under the rule.
//!
//! Every failure keeps evidence (HTML, screenshot, note; see [`crate::evidence`]) and the
//! release reason names it; a bot on the platform's gRPC API also reports it to the platform,
//! with the lease it held.

use std::convert::Infallible;
use std::time::{Duration, Instant, SystemTime};

use chrono::Utc;
use tokio::sync::watch;
use tracing::Instrument as _;

use crate::adapter::{Adapter, AskError, Captured, Fallback, Typing};
use crate::browser::{Browser, BrowserOptions};
use crate::evidence::{Case, Evidence};
use crate::limit_reset::Source as LiftSource;
use crate::sessions::{Lease, Outcome, SessionError, Sessions};
use crate::source::{SourceError, Submission, Task, TaskSource, limits};
use crate::synthetic::{self, Engine, SyntheticOptions};

/// Session switches (login walls, rate limits) allowed within one task.
const MAX_SESSION_SWITCHES: u32 = 3;
/// A lease this close to lapsing is renewed before the next task.
const LEASE_MARGIN: Duration = Duration::from_secs(60);
/// Longest a bot holds a task while every session is busy; then it hands the task back (the
/// attempt counted), as it does at once when the platform names no time.
const MAX_SESSION_HOLD: Duration = Duration::from_secs(3600);
/// Shortest pause between two lease requests of a bot holding a task.
const MIN_SESSION_WAIT: Duration = Duration::from_millis(100);

/// How often the text typed so far is reported while it changes (live partial answers).
pub(crate) const REPORT_TYPING_EVERY: Duration = Duration::from_millis(500);

/// What one attempt gave.
enum Attempt {
    /// An answer (with or without citations).
    Answer(Box<Captured>),
    /// The prompt's attempt failed: counts against `max_attempts`. The reason, and the stem of
    /// the evidence kept of it (named last in the release reason, after the attempt count).
    Failed(String, Option<String>),
    /// Retrying cannot help (the page changed under the adapter): the task fails now.
    FailFast(String),
    /// The session is unusable; the attempt did not count.
    Session(Outcome, String),
    /// No session can be had now: the task goes back to the queue, or (claim mode, the platform
    /// saying when an account frees up: the wait and the platform's words) is held while the
    /// lease is asked again.
    NoSession(String, Option<(Duration, String)>),
    /// Shutdown came before the answer: the task goes back to the queue.
    Interrupted,
}

/// `gap` and a random extra of up to `gap` again: a session's prompts at a person's uneven
/// pace rather than a machine's.
fn jittered(gap: Duration) -> Duration {
    let share = (uuid::Uuid::new_v4().as_u128() % 1_000_001) as f64 / 1_000_000.0;
    gap + gap.mul_f64(share)
}

/// A session loaded in the open browser.
struct Active {
    browser: Browser,
    lease: Lease,
    runs: u32,
}

/// Settings the loop needs.
pub(crate) struct WorkerSettings {
    pub max_attempts: u32,
    pub poll_retry: Duration,
    /// Least time between two prompts of one session ([`jittered`]).
    pub prompt_gap: Duration,
    pub idle_timeout: Option<Duration>,
    pub browser: BrowserOptions,
    pub shutdown_grace: Duration,
    pub evidence: Evidence,
    pub engine: Engine,
}

pub(crate) struct Worker<A: Adapter> {
    settings: WorkerSettings,
    adapter: A,
    source: TaskSource,
    sessions: Sessions,
    active: Option<Active>,
    shutdown: watch::Receiver<bool>,
}

/// How a task ended, for the log and the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Handled {
    Submitted,
    Failed(String),
    Requeued(String),
}

impl<A: Adapter> Worker<A> {
    pub(crate) fn new(
        settings: WorkerSettings,
        adapter: A,
        source: TaskSource,
        sessions: Sessions,
        shutdown: watch::Receiver<bool>,
    ) -> Worker<A> {
        Worker { settings, adapter, source, sessions, active: None, shutdown }
    }

    fn stopping(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves once shutdown is asked for (or its sender is gone).
    async fn stopped(shutdown: &mut watch::Receiver<bool>) {
        let _ = shutdown.wait_for(|stop| *stop).await;
    }

    /// Sleeps, waking early on shutdown.
    async fn pause(&mut self, duration: Duration) {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = Self::stopped(&mut shutdown) => {}
        }
    }

    /// Runs until shutdown; the task in hand is finished or released first.
    pub(crate) async fn run(mut self) -> anyhow::Result<()> {
        let mut last_work = Instant::now();
        let mut refused_since: Option<Instant> = None;
        let result = loop {
            if self.stopping() {
                break Ok(());
            }
            let idle_at = match (&self.active, self.settings.idle_timeout) {
                (Some(_), Some(idle)) => Some(last_work + idle),
                _ => None,
            };
            if idle_at.is_some_and(|at| Instant::now() >= at) {
                tracing::info!("idle: closing the browser");
                self.retire(Outcome::Ok, "idle").await;
                continue;
            }
            let next = if matches!(self.source, TaskSource::Claim(_)) {
                // Waiting on the stream is cancel-safe: stop or close the idle browser any time.
                let mut shutdown = self.shutdown.clone();
                let idle = async {
                    match idle_at {
                        Some(at) => tokio::time::sleep_until(at.into()).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    next = self.source.next() => next,
                    _ = Self::stopped(&mut shutdown) => continue,
                    _ = idle => continue,
                }
            } else {
                // A poll is not cancelled: a task it claims must not vanish.
                self.source.next().await
            };
            match next {
                Ok(Some(task)) => {
                    refused_since = None;
                    // The task's work joins the trace of the prompt it answers.
                    let span = tracing::info_span!(
                        "bot.task",
                        evaluation_id = task.evaluation_id,
                        assistant = %self.adapter.assistant()
                    );
                    aap_telemetry::traces::set_parent(&span, &task.trace_context);
                    let timer = crate::metrics::task_taken(self.adapter.assistant());
                    let handled = self.handle(&task).instrument(span).await;
                    timer.finish(match &handled {
                        Handled::Submitted => "submitted",
                        Handled::Failed(_) => "failed",
                        Handled::Requeued(_) => "requeued",
                    });
                    if let Handled::Requeued(_) = handled {
                        // Give other bots (or a freed session) a chance before asking again.
                        self.pause(self.settings.poll_retry).await;
                    }
                    self.source.finished(&task).await;
                    // Off the answer's path: the task is handed in and the next one asked for.
                    if let Some(active) = &self.active {
                        active.browser.trim_memory().await;
                    }
                    // The account rests before its next prompt, holding no task meanwhile.
                    if self.active.is_some() && !self.settings.prompt_gap.is_zero() {
                        let gap = jittered(self.settings.prompt_gap);
                        tracing::debug!(gap_ms = gap.as_millis() as u64, "resting the session before its next prompt");
                        self.pause(gap).await;
                    }
                    last_work = Instant::now();
                }
                Ok(None) => {
                    refused_since = None;
                    self.pause(self.settings.poll_retry).await;
                }
                Err(SourceError::Closed) => break Err(anyhow::anyhow!("the claim stream closed for good")),
                Err(error @ SourceError::Refused(_)) => break Err(error.into()),
                Err(error) => {
                    tracing::warn!(%error, "cannot get a task");
                    // A poll the platform refuses for the token (401, 403) is not tried
                    // forever: after REFUSED_FOR the worker stops, and with it the process.
                    match error.caller_refusal() {
                        Some(reason) => {
                            let since = *refused_since.get_or_insert_with(Instant::now);
                            if since.elapsed() >= crate::source::REFUSED_FOR {
                                break Err(SourceError::Refused(reason).into());
                            }
                        }
                        None => refused_since = None,
                    }
                    self.pause(self.settings.poll_retry).await;
                }
            }
        };
        self.retire(Outcome::Ok, "bot stopping").await;
        self.source.close().await;
        tracing::info!("bot stopped");
        result
    }

    /// Answers one task under the retry rule and hands in the outcome.
    pub(crate) async fn handle(&mut self, task: &Task) -> Handled {
        tracing::info!(prompt_id = ?task.prompt_id, attempt = task.attempt, "task started");
        if let Engine::Synthetic(options) = self.settings.engine {
            return self.synthetic(task, options).await;
        }
        if let Some(refused) = self.adapter.refuses(&task.prompt_text) {
            // Known before anything opens (Google's search box would cut the prompt): no session
            // is leased, no page loaded, and no retry could make it fit.
            crate::metrics::attempt_failed(self.adapter.assistant(), refused.class());
            tracing::warn!(class = refused.class(), %refused, "the assistant does not take the prompt");
            return self.fail(task, &format!("{}: {refused}", refused.class())).await;
        }
        let max_attempts = self.settings.max_attempts.max(1);
        let mut failed_attempts = 0;
        let mut switches = 0;
        let mut fresh_session_tried = false;
        let mut first = true;
        let mut attempt_no = 0;
        let mut waiting_since: Option<Instant> = None;
        // What the task's streams were last told it waits for.
        let mut told_waiting: Option<String> = None;
        loop {
            attempt_no += 1;
            // The first attempt always runs (shutdown gives it a grace period); retries do not.
            if !std::mem::take(&mut first) && self.stopping() {
                return self.requeue(task, "the bot is shutting down").await;
            }
            if failed_attempts >= max_attempts && !fresh_session_tried {
                // The seed's last resort: one more try on another session.
                tracing::info!(failed_attempts, "retrying once on a fresh session");
                self.retire(Outcome::Ok, "fresh session for a retry").await;
                fresh_session_tried = true;
            }
            let reason = match self.attempt(task, attempt_no).await {
                // A search without an AI Overview has nothing to cite: it is a result as it is.
                Attempt::Answer(captured)
                    if !captured.citations.is_empty() || captured.kind == crate::adapter::AnswerKind::NoOverview =>
                {
                    let fallback = captured.reading.model_fallback.clone();
                    let handled = self.submit(task, *captured).await;
                    self.rest_after_fallback(fallback).await;
                    return handled;
                }
                Attempt::Answer(captured) => {
                    crate::metrics::attempt_failed(self.adapter.assistant(), "no-citations");
                    failed_attempts += 1;
                    tracing::info!(failed_attempts, "answer without citations");
                    self.rest_after_fallback(captured.reading.model_fallback).await;
                    format!("No citations found after {failed_attempts} attempts")
                }
                Attempt::Failed(reason, evidence) => {
                    failed_attempts += 1;
                    tracing::warn!(failed_attempts, reason, "attempt failed");
                    with_evidence(format!("{reason} (after {failed_attempts} attempts)"), evidence.as_deref())
                }
                Attempt::Session(outcome, detail) => {
                    switches += 1;
                    tracing::warn!(?outcome, detail, "session unusable; switching");
                    self.retire(outcome, &detail).await;
                    if switches > MAX_SESSION_SWITCHES {
                        return self
                            .requeue(task, &format!("no working session after {switches} tries: {detail}"))
                            .await;
                    }
                    continue;
                }
                Attempt::FailFast(reason) => return self.fail(task, &reason).await,
                // Every account busy, and the platform says when one frees up: the task is held
                // (its claim heartbeated) and the lease asked again, not handed back to burn an
                // attempt at every bot in turn. The seed's HTTP API has no heartbeat: handed back.
                Attempt::NoSession(reason, Some((free_in, said)))
                    if self.source.takes_progress()
                        && waiting_since.get_or_insert_with(Instant::now).elapsed() < MAX_SESSION_HOLD =>
                {
                    // Asked again at the time named, or sooner (an operator may end a cool-down);
                    // never in a tight loop (a time already past, no poll pause configured).
                    let wait = free_in.min(self.settings.poll_retry).max(MIN_SESSION_WAIT);
                    // Logged, and the customers watching the prompt told what the task waits
                    // for, once and again whenever the platform's words change (another time).
                    let waiting = format!("no account is free: {said}");
                    if told_waiting.as_deref() != Some(waiting.as_str()) {
                        tracing::info!(
                            reason,
                            free_in_s = free_in.as_secs(),
                            "every session is busy: holding the task until one frees up"
                        );
                        let until = SystemTime::now() + free_in;
                        if let Err(error) = self.source.waiting(task, &waiting, Some(until)).await {
                            tracing::debug!(%error, "cannot tell the task's streams that it waits");
                        }
                        told_waiting = Some(waiting);
                    }
                    self.pause(wait).await;
                    if self.stopping() {
                        return self.requeue(task, "the bot is shutting down").await;
                    }
                    attempt_no -= 1;
                    continue;
                }
                Attempt::NoSession(reason, _) => return self.requeue(task, &reason).await,
                Attempt::Interrupted => return self.requeue(task, "the bot is shutting down").await,
            };
            if fresh_session_tried {
                return self.fail(task, &reason).await;
            }
        }
    }

    /// After an answer from another model than the plan's (its limit for the plan's model used
    /// up): the account rests until that limit lifts (the stream's time, else the notice's
    /// words, else the platform's cool-down), so the next tasks go to accounts on the plan's
    /// model. The answer itself stands, marked.
    async fn rest_after_fallback(&mut self, fallback: Option<Fallback>) {
        let Some(Fallback { said, lifts_at }) = fallback else { return };
        if self.active.is_none() {
            return;
        }
        let lifts_at = self.limit_lifts(&said, lifts_at).await;
        tracing::warn!(said, "the plan's model is at its limit; the account rests");
        let detail = format!("another model answered: {said}");
        self.retire(Outcome::RateLimited { lifts_at }, &detail).await;
    }

    /// When a limit the site met the session with lifts: the time its stream gave
    /// (`from_stream`, within [`crate::limit_reset::MAX_AHEAD`]), else as the page says it (its
    /// refusal, then the limit's words `said`: [`crate::limit_reset::read`]); counted by where
    /// it was read, and logged.
    async fn limit_lifts(&self, said: &str, from_stream: Option<SystemTime>) -> Option<SystemTime> {
        let read = match (from_stream, self.active.as_ref()) {
            (Some(at), _) => {
                crate::limit_reset::within_reach(at, SystemTime::now(), said).then_some((at, LiftSource::Stream))
            }
            (None, Some(active)) => crate::limit_reset::read(active.browser.driver(), said).await,
            (None, None) => None,
        };
        crate::metrics::limit_read(self.adapter.assistant(), read.map(|(_, source)| source));
        if let Some((at, source)) = read {
            let session = self.active.as_ref().map(|active| active.lease.label.as_str());
            let at = chrono::DateTime::<Utc>::from(at);
            tracing::info!(session, lifts_at = %at.to_rfc3339(), source = source.as_str(), "the site says when its limit lifts");
        }
        read.map(|(at, _)| at)
    }

    /// The synthetic engine's answer: no browser, no session; the delay is cut short by shutdown
    /// only after the grace period, as a browser's answer in progress would be.
    async fn synthetic(&mut self, task: &Task, options: SyntheticOptions) -> Handled {
        if !options.delay.is_zero() {
            let mut shutdown = self.shutdown.clone();
            let grace = self.settings.shutdown_grace;
            tokio::select! {
                _ = tokio::time::sleep(options.delay) => {}
                _ = async { Self::stopped(&mut shutdown).await; tokio::time::sleep(grace).await } => {
                    return self.requeue(task, "the bot is shutting down").await;
                }
            }
        }
        match synthetic::answer(&options, self.adapter.assistant(), task) {
            Ok(captured) => self.submit(task, captured).await,
            Err(reason) => self.fail(task, &reason).await,
        }
    }

    /// Makes sure a browser with a usable session is open.
    async fn ensure_session(&mut self) -> Result<(), Attempt> {
        if let Some(active) = &self.active {
            let rotate = active.runs >= active.lease.max_runs;
            if rotate || active.lease.lapsed(LEASE_MARGIN) {
                let detail = if rotate { "rotation" } else { "lease about to lapse" };
                self.retire(Outcome::Ok, detail).await;
            }
        }
        if self.active.is_some() {
            return Ok(());
        }
        // Whatever the cause, without a session the task is better off with another bot.
        let leased = self.sessions.lease().await;
        crate::metrics::lease_asked(self.adapter.assistant(), leased.is_ok());
        let lease = leased.map_err(|error: SessionError| {
            let free_in = match &error {
                SessionError::FreeIn { free_in, reason } => Some((*free_in, reason.clone())),
                _ => None,
            };
            Attempt::NoSession(error.to_string(), free_in)
        })?;
        let launched = Browser::launch(&self.settings.browser.for_lease(&lease)).await;
        crate::metrics::browser_started(self.adapter.assistant(), launched.is_ok());
        let browser = match launched {
            Ok(browser) => browser,
            Err(error) => {
                crate::metrics::attempt_failed(self.adapter.assistant(), "browser");
                self.give_back(&lease, Outcome::Ok, 0, "browser did not start").await;
                return Err(Attempt::Failed(browser_not_started(&error), None));
            }
        };
        match browser.load_session(&lease.storage_state_json, self.adapter.origin()).await {
            Ok(loaded) => {
                tracing::info!(
                    session = lease.label,
                    cookies = loaded.cookies,
                    local_storage = loaded.local_storage,
                    "session loaded"
                );
                self.active = Some(Active { browser, lease, runs: 0 });
                Ok(())
            }
            Err(error) => {
                browser.close().await;
                let invalid = matches!(error, crate::browser::BrowserError::StorageState(_));
                let outcome = if invalid { Outcome::Expired } else { Outcome::Ok };
                self.give_back(&lease, outcome, 0, &error.to_string()).await;
                Err(Attempt::Failed(format!("cannot load the session: {error}"), None))
            }
        }
    }

    /// One attempt: a new conversation on the current session.
    async fn attempt(&mut self, task: &Task, attempt_no: u32) -> Attempt {
        if let Err(attempt) = self.ensure_session().await {
            return attempt;
        }
        let Some(active) = self.active.as_mut() else {
            return Attempt::NoSession("no session open".to_owned(), None);
        };
        active.runs += 1;
        let session = active.lease.label.clone();
        // The seed's HTTP API takes no reports: the text so far is not even kept.
        let (typing, typed) = match self.source.takes_progress() {
            true => {
                let (typing, typed) = Typing::channel();
                (typing, Some(typed))
            }
            false => (Typing::none(), None),
        };
        let ask = self.adapter.ask_typing(active.browser.driver(), &task.prompt_text, &typing);
        let reporting = report_typing(&self.source, self.adapter.assistant(), task, typed);
        let ask = async {
            tokio::select! {
                result = ask => result,
                never = reporting => match never {},
            }
        };
        let mut shutdown = self.shutdown.clone();
        let grace = self.settings.shutdown_grace;
        let stop = async move {
            Self::stopped(&mut shutdown).await;
            tokio::time::sleep(grace).await;
        };
        let finished = tokio::select! {
            result = ask => Some(result),
            _ = stop => None,
        };
        let Some(result) = finished else {
            tracing::warn!("shutdown grace over; abandoning the answer in progress");
            self.retire(Outcome::Ok, "bot stopping").await;
            return Attempt::Interrupted;
        };
        match result {
            Ok(captured) => {
                let reading = &captured.reading;
                crate::metrics::answered(self.adapter.assistant(), captured.total, reading);
                tracing::info!(
                    session,
                    citations = captured.citations.len(),
                    chars = captured.response_text.len(),
                    model = captured.model.as_deref().unwrap_or(""),
                    ttft_ms = captured.ttft.map(|t| t.as_millis() as u64),
                    total_ms = captured.total.as_millis() as u64,
                    finish_signals = reading.finish_signals.join(","),
                    missing_roles = reading.missing_roles.join(","),
                    read_by_fallback = reading.read_by_fallback,
                    confidence = reading.confidence(),
                    cut_short = reading.cut_short,
                    model_fallback = reading.model_fallback.as_ref().map(|fallback| fallback.said.as_str()),
                    search_queries = captured.search_queries.len(),
                    products = captured.products.len(),
                    "answer captured"
                );
                if let Some(disagreement) = &reading.disagreement {
                    // The answer stands (the merged list keeps both sides); the page is kept so
                    // someone can see which side the selectors missed.
                    let kept = self.keep_evidence(task, attempt_no, "sources-disagree", disagreement).await;
                    tracing::warn!(
                        session,
                        evidence = kept.as_deref().unwrap_or(""),
                        disagreement,
                        "page and response stream disagree about the sources"
                    );
                }
                Attempt::Answer(Box::new(captured))
            }
            Err(error) => {
                crate::metrics::attempt_failed(self.adapter.assistant(), error.class());
                let kept = self.keep_evidence(task, attempt_no, error.class(), &error.to_string()).await;
                // The class first, so reasons group by it; the evidence last.
                let what = format!("{}: {error}", error.class());
                let detail = with_evidence(what.clone(), kept.as_deref());
                tracing::warn!(class = error.class(), session, evidence = kept.as_deref().unwrap_or(""), %error, "attempt failed");
                match error {
                    AskError::LoggedOut => Attempt::Session(Outcome::Expired, detail),
                    AskError::RateLimited(said) => {
                        // The site's words may say when the limit lifts: the account rests till then.
                        let lifts_at = self.limit_lifts(&said, None).await;
                        Attempt::Session(Outcome::RateLimited { lifts_at }, detail)
                    }
                    AskError::Challenge(_) => Attempt::Session(Outcome::Challenged, detail),
                    AskError::SelectorMissing(role) => {
                        let manifest = self.adapter.manifest();
                        tracing::error!(
                            alert = "selector-missing",
                            role,
                            session,
                            manifest_version = manifest.version,
                            manifest_fingerprint = manifest.fingerprint,
                            "the page changed: no element for a role of the adapter manifest; update its selectors"
                        );
                        Attempt::FailFast(detail)
                    }
                    error => {
                        if error.browser_broken() {
                            tracing::warn!(%error, "browser broken; replacing it");
                            crate::metrics::browser_restarted(self.adapter.assistant());
                            self.retire(Outcome::Ok, "browser broken").await;
                        }
                        Attempt::Failed(what, kept)
                    }
                }
            }
        }
    }

    /// Keeps the page of `task`'s attempt as evidence of `class` (see [`crate::evidence`]);
    /// returns its path stem, `None` without a browser or when nothing could be kept.
    async fn keep_evidence(&self, task: &Task, attempt: u32, class: &str, error: &str) -> Option<String> {
        let active = self.active.as_ref()?;
        let manifest = self.adapter.manifest();
        let case = Case {
            lease_id: Some(active.lease.id.as_str()).filter(|_| self.sessions.is_service()),
            evaluation_id: task.evaluation_id,
            attempt,
            class,
            error,
            assistant: self.adapter.assistant(),
            manifest_version: &manifest.version,
            manifest_fingerprint: &manifest.fingerprint,
        };
        self.settings.evidence.keep(active.browser.driver(), case).await
    }

    /// Closes the browser and hands its session back.
    async fn retire(&mut self, outcome: Outcome, detail: &str) {
        if let Some(Active { browser, lease, runs }) = self.active.take() {
            browser.close().await;
            tracing::debug!(session = lease.label, ?outcome, runs, detail, "session handed back");
            self.give_back(&lease, outcome, runs, detail).await;
        }
    }

    /// Hands a session back to where it came from, counted by outcome.
    async fn give_back(&mut self, lease: &Lease, outcome: Outcome, runs: u32, detail: &str) {
        crate::metrics::session_returned(self.adapter.assistant(), outcome);
        self.sessions.give_back(lease, outcome, runs, detail).await;
    }

    /// Hands in `captured` fitted to the platform's bounds ([`limits::fit_captured`]: every
    /// adapter's, both sources'). An answer the platform refuses fails the task at once with its
    /// reason: sent again it would be refused again, and left to lapse its customer would wait
    /// minutes for "the bot went silent".
    async fn submit(&mut self, task: &Task, captured: Captured) -> Handled {
        let captured = limits::fit_captured(captured);
        let lease_id = self.active.as_ref().map(|active| active.lease.id.clone());
        let manifest = self.adapter.manifest();
        let (adapter_version, adapter_fingerprint) = match self.settings.engine {
            Engine::Browser => (manifest.version.as_str(), manifest.fingerprint.as_str()),
            Engine::Synthetic(_) => (synthetic::SYNTHETIC, synthetic::SYNTHETIC),
        };
        let submission = Submission {
            captured: &captured,
            captured_at: Utc::now(),
            lease_id: lease_id.as_deref(),
            adapter_version,
            adapter_fingerprint,
        };
        match self.source.submit(task, &submission).await {
            Ok(()) => {
                tracing::info!(citations = captured.citations.len(), "answer submitted");
                Handled::Submitted
            }
            Err(error) => match error.refusal() {
                Some(refusal) => {
                    tracing::error!(%error, "the platform refused the answer; releasing the task as failed");
                    self.fail(task, &limits::fit_reason(&format!("the platform refused the answer: {refusal}"))).await
                }
                None => {
                    // The claim lapses and the task is delivered again: nothing is lost.
                    tracing::error!(%error, "submit failed; the task will be delivered again");
                    Handled::Requeued(format!("submit failed: {error}"))
                }
            },
        }
    }

    async fn fail(&mut self, task: &Task, reason: &str) -> Handled {
        match self.source.release(task, true, reason).await {
            Ok(()) => tracing::info!(reason, "task released as failed"),
            Err(error) => tracing::error!(%error, reason, "release failed; the claim will lapse"),
        }
        Handled::Failed(reason.to_owned())
    }

    async fn requeue(&mut self, task: &Task, reason: &str) -> Handled {
        match self.source.release(task, false, reason).await {
            Ok(()) => tracing::info!(reason, "task handed back to the queue"),
            Err(error) => tracing::warn!(%error, reason, "hand back failed; the claim will lapse"),
        }
        Handled::Requeued(reason.to_owned())
    }
}

/// Reports the text typed so far on `task` every [`REPORT_TYPING_EVERY`] while it changes, until
/// the task is no longer held or the gateway refuses the report; then (and without `typed`)
/// waits forever: drop it when the answer is in. A report that fails never fails the task.
pub(crate) async fn report_typing(
    source: &TaskSource,
    assistant: &str,
    task: &Task,
    typed: Option<tokio::sync::watch::Receiver<String>>,
) -> Infallible {
    if let Some(mut typed) = typed {
        let mut every = tokio::time::interval(REPORT_TYPING_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            match typed.has_changed() {
                Ok(true) => {}
                Ok(false) => continue,
                // The adapter is done with the page.
                Err(_) => break,
            }
            let text = typed.borrow_and_update().clone();
            match source.progress(task, &text).await {
                Ok(true) => crate::metrics::partial_reported(assistant),
                Ok(false) => {
                    tracing::debug!("the task is no longer held; no more reports of the text so far");
                    break;
                }
                Err(error) if error.retryable() => tracing::debug!(%error, "report of the text so far failed"),
                Err(error) => {
                    tracing::debug!(%error, "report of the text so far refused; no more reports");
                    break;
                }
            }
        }
    }
    std::future::pending().await
}

/// `reason`, then the evidence kept of the attempt as `[evidence: <stem>]` when there is any.
fn with_evidence(reason: String, evidence: Option<&str>) -> String {
    match evidence {
        Some(stem) => format!("{reason} [evidence: {stem}]"),
        None => reason,
    }
}

/// The reason of an attempt whose browser did not start: of the `browser` failure class, as the
/// platform's release metrics and alerts read it (the part before the first colon).
fn browser_not_started(error: &impl std::fmt::Display) -> String {
    format!("browser: did not start: {error}")
}

#[cfg(test)]
mod gap_tests {
    use super::*;

    #[test]
    fn a_gap_is_at_least_its_length_and_at_most_twice_it_and_varies() {
        let gap = Duration::from_secs(20);
        let gaps: Vec<Duration> = (0..200).map(|_| jittered(gap)).collect();
        assert!(gaps.iter().all(|g| *g >= gap && *g <= gap * 2), "{gaps:?}");
        let distinct: std::collections::HashSet<_> = gaps.iter().collect();
        assert!(distinct.len() > 150, "an uneven pace: {} distinct of 200", distinct.len());
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_that_did_not_start_is_of_the_browser_class() {
        let reason = browser_not_started(&"cannot start chromedriver /nope: No such file or directory");
        let class = reason.split(':').next().unwrap_or_default().trim();
        assert_eq!(class, "browser", "{reason}");
        assert!(aap_proto::FAILURE_CLASSES.contains(&class));
    }
}
