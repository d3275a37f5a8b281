//! The seed's HTTP polling API, byte for byte: `POST {api}/evaluations/api/v1/poll`, then
//! `POST {results-api}/evaluations/api/v1/submit` or `.../release`.

use std::time::Duration;

use chrono::SecondsFormat;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{SourceError, Submission, Task, with_retries};

/// Where and how to poll.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Base URL the bot polls, e.g. `http://backend:8000`.
    pub api_url: String,
    /// Base URL the bot submits and releases to.
    pub results_api_url: String,
    /// The seed's assistant name, e.g. `ChatGPT`.
    pub assistant_name: String,
    /// The seed's plan name, e.g. `Plus`.
    pub plan_name: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<SecretString>,
    /// Time-out of a poll.
    pub api_timeout: Duration,
    /// Time-out of one submit or release try.
    pub submit_timeout: Duration,
    /// Tries of a submit or release.
    pub submit_retry_attempts: u32,
    /// Whom to trust and which client certificate to present on `https://` URLs.
    pub tls: aap_tls::ClientTls,
}

/// A client of the seed's API.
pub struct HttpSource {
    client: reqwest::Client,
    options: HttpOptions,
}

#[derive(Debug, Serialize)]
struct PollBody<'a> {
    assistant_name: &'a str,
    plan_name: &'a str,
}

#[derive(Debug, Default, Deserialize)]
struct PollReply {
    #[serde(default)]
    evaluation_id: Option<i64>,
    #[serde(default)]
    prompt_id: Option<i64>,
    #[serde(default)]
    prompt_text: Option<String>,
}

#[derive(Debug, Serialize)]
struct SubmitBody<'a> {
    evaluation_id: i64,
    answer: SubmitAnswer<'a>,
}

#[derive(Debug, Serialize)]
struct SubmitAnswer<'a> {
    response: &'a str,
    citations: Vec<SeedCitation<'a>>,
    timestamp: String,
}

#[derive(Debug, Serialize)]
struct SeedCitation<'a> {
    url: &'a str,
    text: &'a str,
}

#[derive(Debug, Serialize)]
struct ReleaseBody<'a> {
    evaluation_id: i64,
    mark_as_failed: bool,
    failure_reason: &'a str,
}

impl HttpSource {
    /// A client for `options`; TLS on `https://` URLs.
    pub fn new(options: HttpOptions) -> Result<HttpSource, SourceError> {
        let mut builder = reqwest::Client::builder().user_agent(concat!("aap-bot/", env!("CARGO_PKG_VERSION")));
        for url in [&options.api_url, &options.results_api_url] {
            if let Some(config) = options.tls.for_url(url)? {
                builder = builder.use_preconfigured_tls(config);
            }
        }
        Ok(HttpSource { client: builder.build()?, options })
    }

    fn url(base: &str, endpoint: &str) -> String {
        format!("{}/evaluations/api/v1/{endpoint}", base.trim_end_matches('/'))
    }

    async fn post<B: Serialize>(&self, url: &str, body: &B, timeout: Duration) -> Result<String, SourceError> {
        let mut request = self.client.post(url).json(body).timeout(timeout);
        if let Some(token) = &self.options.token {
            request = request.bearer_auth(token.expose_secret());
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            return Err(SourceError::Status { status: status.as_u16(), body: text });
        }
        Ok(text)
    }

    /// Claims the next prompt; `None` when the queue is empty (the all-null reply).
    pub async fn poll(&self) -> Result<Option<Task>, SourceError> {
        let body = PollBody { assistant_name: &self.options.assistant_name, plan_name: &self.options.plan_name };
        let url = Self::url(&self.options.api_url, "poll");
        let text = self.post(&url, &body, self.options.api_timeout).await?;
        // An empty body counts as "nothing waits", as does the all-null object.
        let reply: PollReply = if text.trim().is_empty() {
            PollReply::default()
        } else {
            serde_json::from_str(&text).map_err(|error| SourceError::Status {
                status: 200,
                body: format!("unreadable poll reply ({error}): {text}"),
            })?
        };
        let (Some(evaluation_id), Some(prompt_text)) = (reply.evaluation_id, reply.prompt_text) else {
            return Ok(None);
        };
        Ok(Some(Task {
            evaluation_id,
            prompt_id: reply.prompt_id,
            prompt_text,
            attempt: 0,
            max_attempts: 0,
            trace_context: Default::default(),
        }))
    }

    /// Submits the answer with its citations (`text` is the citation's title).
    pub async fn submit(&self, task: &Task, submission: &Submission<'_>) -> Result<(), SourceError> {
        let captured = submission.captured;
        let body = SubmitBody {
            evaluation_id: task.evaluation_id,
            answer: SubmitAnswer {
                response: &captured.response_text,
                citations: captured
                    .citations
                    .iter()
                    .map(|citation| SeedCitation { url: &citation.url, text: &citation.title })
                    .collect(),
                timestamp: submission.captured_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            },
        };
        let url = Self::url(&self.options.results_api_url, "submit");
        let options = &self.options;
        with_retries("submit", options.submit_retry_attempts, options.submit_timeout, || {
            self.post(&url, &body, options.submit_timeout)
        })
        .await
        .map(drop)
    }

    /// Releases the task: failed for good when `mark_as_failed`, back to the queue otherwise.
    pub async fn release(&self, task: &Task, mark_as_failed: bool, reason: &str) -> Result<(), SourceError> {
        let body = ReleaseBody { evaluation_id: task.evaluation_id, mark_as_failed, failure_reason: reason };
        let url = Self::url(&self.options.results_api_url, "release");
        let options = &self.options;
        with_retries("release", options.submit_retry_attempts, options.submit_timeout, || {
            self.post(&url, &body, options.submit_timeout)
        })
        .await
        .map(drop)
    }
}
