//! Where tasks come from and where answers go: the platform's `EvaluationService.Claim` stream,
//! or the seed's HTTP polling API.

mod claim;
mod http;
pub mod limits;

use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};

use crate::adapter::Captured;

pub use claim::{ClaimOptions, ClaimSource};
pub use http::{HttpOptions, HttpSource};

/// How long the platform may refuse the bot's token before the bot stops for good, so that a
/// supervisor sees it instead of a bot that looks alive and never works. Longer than the
/// platform's reload of its token table (2 s): a token just made on another replica is known
/// everywhere by then.
pub const REFUSED_FOR: Duration = Duration::from_secs(10);

/// A prompt to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    /// The evaluation to answer.
    pub evaluation_id: i64,
    /// The prompt, when the source says.
    pub prompt_id: Option<i64>,
    /// What to ask.
    pub prompt_text: String,
    /// 1-based delivery attempt (0 when the source does not say).
    pub attempt: u32,
    /// Deliveries allowed before the evaluation fails (0 when the source does not say).
    pub max_attempts: u32,
    /// W3C trace context of the task (`traceparent`, `tracestate`), sent back with Submit and
    /// Release so one trace follows the prompt through the bot; empty when the source has none.
    pub trace_context: std::collections::HashMap<String, String>,
}

/// An answer to hand in.
#[derive(Debug, Clone)]
pub struct Submission<'a> {
    /// What the browser captured.
    pub captured: &'a Captured,
    /// When it was captured.
    pub captured_at: DateTime<Utc>,
    /// The SessionService lease used, if any.
    pub lease_id: Option<&'a str>,
    /// Version of the adapter manifest that read the page.
    pub adapter_version: &'a str,
    /// Fingerprint of that manifest.
    pub adapter_fingerprint: &'a str,
}

/// Why talking to the task source failed.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The HTTP request failed before a response.
    #[error("http request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The HTTP API answered with an error status.
    #[error("http api answered {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The response body (the API's `detail`).
        body: String,
    },
    /// A gRPC call failed.
    #[error("grpc call failed: {0}")]
    Grpc(#[from] tonic::Status),
    /// The claim stream's driver has stopped.
    #[error("the claim stream is closed")]
    Closed,
    /// The platform went on refusing the bot's token for [`REFUSED_FOR`]: the reason it gave.
    #[error("the platform refuses this bot's token (--token, AAP_BOT_TOKEN): {0}")]
    Refused(String),
    /// The call did not finish in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The TLS files cannot be used.
    #[error("tls: {0}")]
    Tls(#[from] aap_tls::TlsError),
}

impl SourceError {
    /// Whether another try may succeed: transport trouble, time-outs, 5xx and 429, or
    /// unavailable gRPC servers. Refusals (4xx, invalid argument, wrong state) are final.
    pub fn retryable(&self) -> bool {
        match self {
            SourceError::Http(_) | SourceError::Timeout(_) => true,
            SourceError::Status { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            SourceError::Grpc(status) => matches!(
                status.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unknown
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Aborted
                    | tonic::Code::Internal
            ),
            SourceError::Closed | SourceError::Refused(_) | SourceError::Tls(_) => false,
        }
    }

    /// The platform's reason when it refused the caller rather than the request (gRPC
    /// UNAUTHENTICATED or PERMISSION_DENIED, HTTP 401 or 403): an unknown, revoked or missing
    /// token, one of another role, or a bot principal that may not serve this assistant.
    pub fn caller_refusal(&self) -> Option<String> {
        match self {
            SourceError::Grpc(status)
                if matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied) =>
            {
                Some(format!("{:?}: {}", status.code(), status.message()))
            }
            SourceError::Status { status: status @ (401 | 403), body } => Some(format!("{status}: {}", detail(body))),
            _ => None,
        }
    }

    /// The platform's reason when it refused a request for what it carries (gRPC
    /// INVALID_ARGUMENT; HTTP 422, or 400, with the reason in the body's `detail`): sent again,
    /// it would be refused again.
    pub fn refusal(&self) -> Option<String> {
        match self {
            SourceError::Grpc(status) if status.code() == tonic::Code::InvalidArgument => {
                Some(status.message().to_owned())
            }
            SourceError::Status { status: 400 | 422, body } => Some(detail(body)),
            _ => None,
        }
    }
}

/// The `detail` of an HTTP API's error body (`{"detail": "..."}`, or the list of problems the
/// seed's FastAPI gives), else the body itself.
fn detail(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(mut reply)) => match reply.remove("detail") {
            Some(serde_json::Value::String(detail)) => detail,
            Some(detail) => detail.to_string(),
            None => body.trim().to_owned(),
        },
        _ => body.trim().to_owned(),
    }
}

/// The task source in use.
pub enum TaskSource {
    /// The seed's HTTP polling API.
    Http(HttpSource),
    /// The platform's Claim stream.
    Claim(ClaimSource),
}

impl TaskSource {
    /// The next task. HTTP polls once and returns `None` when nothing waits; Claim waits until
    /// the gateway pushes one (cancel-safe).
    pub async fn next(&mut self) -> Result<Option<Task>, SourceError> {
        match self {
            TaskSource::Http(http) => http.poll().await,
            TaskSource::Claim(claim) => claim.next().await.map(Some),
        }
    }

    /// Hands in an answer, retrying transient failures.
    pub async fn submit(&self, task: &Task, submission: &Submission<'_>) -> Result<(), SourceError> {
        match self {
            TaskSource::Http(http) => http.submit(task, submission).await,
            TaskSource::Claim(claim) => claim.submit(task, submission).await,
        }
    }

    /// Gives a task back: failed for good when `mark_as_failed`, to the queue otherwise.
    pub async fn release(&self, task: &Task, mark_as_failed: bool, reason: &str) -> Result<(), SourceError> {
        match self {
            TaskSource::Http(http) => http.release(task, mark_as_failed, reason).await,
            TaskSource::Claim(claim) => claim.release(task, mark_as_failed, reason).await,
        }
    }

    /// Whether the source takes the text typed so far (live partial answers): the platform's
    /// gRPC API does, the seed's HTTP API has no such call.
    pub fn takes_progress(&self) -> bool {
        matches!(self, TaskSource::Claim(_))
    }

    /// Reports the answer's text so far on `task`, once, within the submit time-out; `Ok(false)`
    /// once the task is no longer held (stop reporting). Never called for the HTTP API.
    pub async fn progress(&self, task: &Task, text: &str) -> Result<bool, SourceError> {
        match self {
            TaskSource::Http(_) => Ok(false),
            TaskSource::Claim(claim) => claim.progress(task, text).await,
        }
    }

    /// Tells the customers of `task` what the bot waits for before it can ask it, and until
    /// when; `Ok(false)` once the task is no longer held. The HTTP API has no such call.
    pub async fn waiting(&self, task: &Task, waiting: &str, until: Option<SystemTime>) -> Result<bool, SourceError> {
        match self {
            TaskSource::Http(_) => Ok(false),
            TaskSource::Claim(claim) => claim.waiting(task, waiting, until).await,
        }
    }

    /// Says the bot is done with `task` (submitted or released) and can take another.
    pub async fn finished(&mut self, task: &Task) {
        if let TaskSource::Claim(claim) = self {
            claim.finished(task).await;
        }
    }

    /// Stops taking tasks: tasks delivered but not started go back to the queue.
    pub async fn close(self) {
        if let TaskSource::Claim(claim) = self {
            claim.close().await;
        }
    }
}

/// How long a submit or release keeps being tried while the platform cannot be reached, however
/// few tries `--submit-retry-attempts` allows: long enough for a gateway to restart. The answer
/// of a task is the bot's whole work, and a gateway killed after marking it submitted takes it
/// again from the same bot (and only from it) when it is back.
const RETRY_PATIENCE: Duration = Duration::from_secs(30);

/// Runs `call` while it fails with a retryable error, at least `attempts` times and for at
/// least [`RETRY_PATIENCE`], each try bounded by `timeout`, waiting 0.5 s, 1 s, 2 s, ... (at
/// most 10 s) between tries.
async fn with_retries<T, F, Fut>(what: &str, attempts: u32, timeout: Duration, mut call: F) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, SourceError>>,
{
    let attempts = attempts.max(1);
    let started = tokio::time::Instant::now();
    let mut backoff = Duration::from_millis(500);
    let mut attempt = 1;
    loop {
        let result = match tokio::time::timeout(timeout, call()).await {
            Ok(result) => result,
            Err(_) => Err(SourceError::Timeout(timeout)),
        };
        match result {
            Ok(value) => return Ok(value),
            Err(error) if (attempt < attempts || started.elapsed() < RETRY_PATIENCE) && error.retryable() => {
                tracing::warn!(%error, attempt, attempts, "{what} failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    async fn failing_until(succeed_on: u32, attempts: u32, code: tonic::Code) -> (Result<u32, SourceError>, u32) {
        let tries = AtomicU32::new(0);
        let result = with_retries("submit", attempts, Duration::from_secs(5), || {
            let n = tries.fetch_add(1, Ordering::SeqCst) + 1;
            async move { if n >= succeed_on { Ok(n) } else { Err(SourceError::Grpc(tonic::Status::new(code, "down"))) } }
        })
        .await;
        (result, tries.load(Ordering::SeqCst))
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_platform_is_tried_for_the_whole_patience_beyond_the_attempts() {
        // 3 attempts would give up after 1.5 s; a gateway restarting takes longer.
        let started = tokio::time::Instant::now();
        let (result, tries) = failing_until(6, 3, tonic::Code::Unavailable).await;
        assert_eq!(result.expect("answered once the platform is back"), 6);
        assert_eq!(tries, 6);
        assert!(started.elapsed() >= Duration::from_millis(500 + 1000 + 2000 + 4000 + 8000));
        // Down for good: it gives up once the patience is spent, not before.
        let started = tokio::time::Instant::now();
        let (result, tries) = failing_until(u32::MAX, 3, tonic::Code::Unavailable).await;
        assert!(result.is_err());
        assert!(started.elapsed() >= RETRY_PATIENCE, "{:?}", started.elapsed());
        assert!(
            started.elapsed() < RETRY_PATIENCE + Duration::from_secs(11),
            "{:?} after {tries} tries",
            started.elapsed()
        );
    }

    #[test]
    fn a_refused_request_gives_the_platforms_reason_and_other_errors_none() {
        let grpc = |code, message: &str| SourceError::Grpc(tonic::Status::new(code, message));
        let http = |status, body: &str| SourceError::Status { status, body: body.to_owned() };
        let reason = "invalid citations.url: is 8239 characters; the limit is 4096";
        assert_eq!(grpc(tonic::Code::InvalidArgument, reason).refusal().as_deref(), Some(reason));
        let seed = r#"{"detail":"invalid answer.citations.url: is 8239 characters; the limit is 4096"}"#;
        assert_eq!(
            http(422, seed).refusal().as_deref(),
            Some("invalid answer.citations.url: is 8239 characters; the limit is 4096")
        );
        let fastapi = r#"{"detail":[{"loc":["body","answer"],"msg":"field required"}]}"#;
        assert_eq!(
            http(422, fastapi).refusal().as_deref(),
            Some(r#"[{"loc":["body","answer"],"msg":"field required"}]"#)
        );
        assert_eq!(http(400, " not json ").refusal().as_deref(), Some("not json"));
        // Trouble that passes, and refusals of the task's state rather than of the answer.
        assert_eq!(grpc(tonic::Code::Unavailable, "down").refusal(), None);
        assert_eq!(grpc(tonic::Code::FailedPrecondition, "claim lapsed").refusal(), None);
        assert_eq!(http(503, "{}").refusal(), None);
        assert_eq!(http(409, r#"{"detail":"not claimed"}"#).refusal(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_final_at_once() {
        let (result, tries) = failing_until(2, 3, tonic::Code::FailedPrecondition).await;
        assert!(matches!(result, Err(SourceError::Grpc(s)) if s.code() == tonic::Code::FailedPrecondition));
        assert_eq!(tries, 1);
    }
}
