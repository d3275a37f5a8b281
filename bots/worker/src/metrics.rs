//! The bot's metrics (`aap_bot_*`), in the process's registry: served on `--metrics-addr`, and
//! by the platform's endpoint when bots run inside it (`aap dev`).

use std::sync::LazyLock;
use std::time::Duration;

use aap_telemetry::metrics::{self, Counters, Gauges, Histograms, labels};

use crate::sessions::Outcome;

struct Metrics {
    tasks: Counters,
    in_progress: Gauges,
    outcomes: Counters,
    task_seconds: Histograms,
    attempt_failures: Counters,
    answer_seconds: Histograms,
    browser_starts: Counters,
    browser_restarts: Counters,
    leases: Counters,
    returns: Counters,
    partials: Counters,
    interruptions: Counters,
    cut_short: Counters,
    model_fallback: Counters,
    limit_reads: Counters,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    tasks: metrics::counter("bot_tasks", "Tasks the bot took, by assistant."),
    in_progress: metrics::gauge("bot_tasks_in_progress", "Tasks the bot works on now, by assistant."),
    outcomes: metrics::counter(
        "bot_task_outcomes",
        "How the bot's tasks ended, by assistant and outcome (submitted; failed: released as failed; requeued: \
         handed back for another bot).",
    ),
    task_seconds: metrics::histogram(
        "bot_task_seconds",
        "Time from taking a task to handing in its outcome, by assistant and outcome.",
        metrics::SLOW_SECONDS,
    ),
    attempt_failures: metrics::counter(
        "bot_attempt_failures",
        "Failed attempts by assistant and failure class (logged-out, challenge, rate-limited, selector-missing, \
         timeout, empty-answer, assistant-error, prompt-refused, browser, no-citations).",
    ),
    answer_seconds: metrics::histogram(
        "bot_answer_seconds",
        "Time the assistant took to answer, from sending the prompt to the finished answer, by assistant.",
        metrics::SLOW_SECONDS,
    ),
    browser_starts: metrics::counter(
        "bot_browser_starts",
        "Browsers the bot started, by assistant and result (ok, failed).",
    ),
    browser_restarts: metrics::counter(
        "bot_browser_restarts",
        "Browsers the bot closed because they broke (to start another), by assistant.",
    ),
    leases: metrics::counter(
        "bot_session_leases",
        "Session leases the bot asked for, by assistant and outcome (granted, refused).",
    ),
    returns: metrics::counter(
        "bot_session_returns",
        "Sessions the bot handed back, by assistant and outcome (ok, expired, rate_limited, challenged).",
    ),
    partials: metrics::counter(
        "bot_partials_reported",
        "Reports of an answer's text so far (live partial answers) the gateway took while the bot held the task, \
         by assistant.",
    ),
    interruptions: metrics::counter(
        "bot_interruptions_cleared",
        "Interruptions the bot cleared on the way to an answer, by assistant and kind (dialog: a dialog over the \
         page; cover: a banner or layer over the composer or send control; js-dialog: alert, confirm or leave-site; \
         window: a window the page opened).",
    ),
    cut_short: metrics::counter(
        "bot_answers_cut_short",
        "Answers the assistant stopped at its own length limit (captured as the page showed them, marked \
         cut_short), by assistant.",
    ),
    model_fallback: metrics::counter(
        "bot_answers_model_fallback",
        "Answers the site gave with another model than the plan's, the account's limit for the plan's model used \
         up (captured, marked model_fallback; the account rests until the limit lifts), by assistant.",
    ),
    limit_reads: metrics::counter(
        "bot_limit_lifts_read",
        "Rate limits met, by assistant and where the bot read when the limit lifts (refusal: the site's HTTP 429; \
         words: the limit's message; stream: the site's response stream; none: none said, so the platform's \
         cool-down applies).",
    ),
});

/// Makes the bot's families appear in scrapes from the start, with the process's memory,
/// threads and descriptors.
pub fn register() {
    LazyLock::force(&METRICS);
    aap_telemetry::memory::register();
}

fn assistant(name: &str) -> Vec<(&'static str, String)> {
    labels([("assistant", name)])
}

/// A task being worked on: counted when taken, and as in progress until [`TaskTimer::finish`].
pub(crate) struct TaskTimer {
    assistant: String,
    started: std::time::Instant,
}

pub(crate) fn task_taken(name: &str) -> TaskTimer {
    METRICS.tasks.get_or_create(&assistant(name)).inc();
    METRICS.in_progress.get_or_create(&assistant(name)).inc();
    TaskTimer { assistant: name.to_owned(), started: std::time::Instant::now() }
}

impl TaskTimer {
    pub(crate) fn finish(self, outcome: &'static str) {
        let labels = labels([("assistant", &self.assistant), ("outcome", outcome)]);
        METRICS.outcomes.get_or_create(&labels).inc();
        METRICS.task_seconds.get_or_create(&labels).observe(self.started.elapsed().as_secs_f64());
    }
}

impl Drop for TaskTimer {
    fn drop(&mut self) {
        METRICS.in_progress.get_or_create(&assistant(&self.assistant)).dec();
    }
}

pub(crate) fn attempt_failed(name: &str, class: &str) {
    METRICS.attempt_failures.get_or_create(&labels([("assistant", name), ("class", class)])).inc();
}

pub(crate) fn answered(name: &str, took: Duration, reading: &crate::adapter::Reading) {
    METRICS.answer_seconds.get_or_create(&assistant(name)).observe(took.as_secs_f64());
    if reading.cut_short {
        METRICS.cut_short.get_or_create(&assistant(name)).inc();
    }
    if reading.model_fallback.is_some() {
        METRICS.model_fallback.get_or_create(&assistant(name)).inc();
    }
}

/// A rate limit met, with where the time it lifts was read (`None`: nowhere).
pub(crate) fn limit_read(name: &str, source: Option<crate::limit_reset::Source>) {
    let source = source.map_or("none", crate::limit_reset::Source::as_str);
    METRICS.limit_reads.get_or_create(&labels([("assistant", name), ("source", source)])).inc();
}

pub(crate) fn browser_started(name: &str, ok: bool) {
    let result = if ok { "ok" } else { "failed" };
    METRICS.browser_starts.get_or_create(&labels([("assistant", name), ("result", result)])).inc();
}

pub(crate) fn browser_restarted(name: &str) {
    METRICS.browser_restarts.get_or_create(&assistant(name)).inc();
}

pub(crate) fn lease_asked(name: &str, granted: bool) {
    let outcome = if granted { "granted" } else { "refused" };
    METRICS.leases.get_or_create(&labels([("assistant", name), ("outcome", outcome)])).inc();
}

pub(crate) fn session_returned(name: &str, outcome: Outcome) {
    let outcome = match outcome {
        Outcome::Ok => "ok",
        Outcome::Expired => "expired",
        Outcome::RateLimited { .. } => "rate_limited",
        Outcome::Challenged => "challenged",
    };
    METRICS.returns.get_or_create(&labels([("assistant", name), ("outcome", outcome)])).inc();
}

pub(crate) fn partial_reported(name: &str) {
    METRICS.partials.get_or_create(&assistant(name)).inc();
}

pub(crate) fn interruption_cleared(name: &str, kind: &str) {
    METRICS.interruptions.get_or_create(&labels([("assistant", name), ("kind", kind)])).inc();
}
