//! The platform's `EvaluationService.Claim` stream, held by a background driver task.
//!
//! The driver says `hello` (one task at a time), hands pushed tasks to the worker, sends
//! `heartbeat` for every task it holds every claim TTL / 3, and `ready` when the worker is done
//! with a task. A broken stream is re-opened with back-off; the gateway hands the tasks of the
//! old stream back to the queue, so nothing is lost. A stream the gateway ends because it stops
//! (UNAVAILABLE) leaves the bot its tasks: the next stream heartbeats them, and they are
//! submitted as any other. A platform that goes on refusing the bot's token (UNAUTHENTICATED,
//! PERMISSION_DENIED) for [`REFUSED_FOR`] stops the driver for good, with the reason.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use aap_proto::v1::claim_request::Msg as ClaimMsg;
use aap_proto::v1::claim_response::Msg as ClaimReply;
use aap_proto::v1::evaluation_service_client::EvaluationServiceClient;
use aap_proto::v1::{
    AnswerKind as ProtoAnswerKind, Capture, Citation as ProtoCitation, CitationKind, CitationOrigin, ClaimHeartbeat,
    ClaimHello, ClaimReady, ClaimRequest, Product as ProtoProduct, ProgressRequest, ReleaseRequest, SubmitRequest,
    Target,
};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

use super::{REFUSED_FOR, SourceError, Submission, Task, with_retries};
use crate::adapter::{AnswerKind, FoundIn};
use crate::grpc::AuthChannel;

/// Heartbeat interval when the gateway's welcome gives no TTL.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);
/// Longest wait before re-opening a broken stream.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Who the bot is and what it serves.
#[derive(Debug, Clone)]
pub struct ClaimOptions {
    /// Bot name in the gateway's logs and in answers' provenance.
    pub bot_id: String,
    /// Lowercase assistant id.
    pub assistant: String,
    /// Plan served.
    pub plan: String,
    /// Time-out of one submit or release try.
    pub submit_timeout: Duration,
    /// Tries of a submit or release.
    pub submit_retry_attempts: u32,
}

enum Control {
    Done(i64),
    Close(oneshot::Sender<()>),
}

/// Tasks from the Claim stream, answers through unary `Submit` / `Release`.
pub struct ClaimSource {
    tasks: mpsc::Receiver<Task>,
    control: mpsc::Sender<Control>,
    client: EvaluationServiceClient<AuthChannel>,
    options: ClaimOptions,
    driver: JoinHandle<()>,
    // Why the driver stopped for good, when the platform refused the token.
    refused: Arc<OnceLock<String>>,
}

impl ClaimSource {
    /// Starts the driver on `channel`; the stream is opened at once and re-opened when broken.
    pub fn start(channel: AuthChannel, options: ClaimOptions) -> ClaimSource {
        let client = EvaluationServiceClient::new(channel);
        let (tasks_tx, tasks) = mpsc::channel(1);
        let (control, control_rx) = mpsc::channel(8);
        let refused = Arc::new(OnceLock::new());
        let driver = Driver {
            client: client.clone(),
            options: options.clone(),
            tasks: tasks_tx,
            control: control_rx,
            held: HashMap::new(),
            queued: VecDeque::new(),
            generation: 0,
            welcomed: false,
            refused_since: None,
            refused: refused.clone(),
        };
        let driver = tokio::spawn(driver.run());
        ClaimSource { tasks, control, client, options, driver, refused }
    }

    /// Waits for the next pushed task; [`SourceError::Refused`] once the platform has refused
    /// the token for [`REFUSED_FOR`].
    pub async fn next(&mut self) -> Result<Task, SourceError> {
        match self.tasks.recv().await {
            Some(task) => Ok(task),
            None => Err(match self.refused.get() {
                Some(reason) => SourceError::Refused(reason.clone()),
                None => SourceError::Closed,
            }),
        }
    }

    /// `Submit` with retries.
    pub async fn submit(&self, task: &Task, submission: &Submission<'_>) -> Result<(), SourceError> {
        let captured = submission.captured;
        let request = SubmitRequest {
            evaluation_id: task.evaluation_id,
            response_text: captured.response_text.clone(),
            response_markdown: captured.response_markdown.clone(),
            citations: captured
                .citations
                .iter()
                .map(|c| ProtoCitation {
                    url: c.url.clone(),
                    title: c.title.clone(),
                    domain: c.domain.clone(),
                    position: c.position,
                    kind: if c.inline { CitationKind::Inline } else { CitationKind::Listed } as i32,
                    found_in: match c.found_in {
                        FoundIn::Page => CitationOrigin::Page,
                        FoundIn::Stream => CitationOrigin::Stream,
                        FoundIn::Both => CitationOrigin::Both,
                    } as i32,
                })
                .collect(),
            captured_at: Some(prost_types::Timestamp {
                seconds: submission.captured_at.timestamp(),
                nanos: submission.captured_at.timestamp_subsec_nanos() as i32,
            }),
            bot_id: self.options.bot_id.clone(),
            lease_id: submission.lease_id.unwrap_or_default().to_owned(),
            kind: match captured.kind {
                AnswerKind::Text => ProtoAnswerKind::Text,
                AnswerKind::NoOverview => ProtoAnswerKind::NoOverview,
            } as i32,
            capture: Some(Capture {
                response_html: captured.html.clone(),
                model: captured.model.clone().unwrap_or_default(),
                web_search: captured.web_search,
                time_to_first_token: captured.ttft.and_then(|d| prost_types::Duration::try_from(d).ok()),
                time_to_complete: prost_types::Duration::try_from(captured.total).ok(),
                adapter_version: submission.adapter_version.to_owned(),
                adapter_fingerprint: submission.adapter_fingerprint.to_owned(),
                finish_signals: captured.reading.finish_signals.clone(),
                missing_roles: captured.reading.missing_roles.clone(),
                read_by_fallback: captured.reading.read_by_fallback,
                confidence: captured.reading.confidence(),
                cut_short: captured.reading.cut_short,
                model_fallback: captured.reading.model_fallback.is_some(),
            }),
            search_queries: captured.search_queries.clone(),
            products: captured
                .products
                .iter()
                .enumerate()
                .map(|(index, p)| ProtoProduct {
                    name: p.name.clone(),
                    url: p.url.clone(),
                    price: p.price.clone(),
                    merchant: p.merchant.clone(),
                    position: index as u32 + 1,
                })
                .collect(),
        };
        let options = &self.options;
        with_retries("submit", options.submit_retry_attempts, options.submit_timeout, || {
            let mut client = self.client.clone();
            let request = with_trace(request.clone(), &task.trace_context);
            async move { client.submit(request).await.map(drop).map_err(SourceError::from) }
        })
        .await
    }

    /// `Progress`, tried once: the next report carries the whole text anyway. Without the
    /// task's trace context, so that a report twice a second does not crowd the prompt's trace.
    pub async fn progress(&self, task: &Task, text: &str) -> Result<bool, SourceError> {
        let request = ProgressRequest {
            evaluation_id: task.evaluation_id,
            bot_id: self.options.bot_id.clone(),
            text: text.to_owned(),
            ..ProgressRequest::default()
        };
        self.send_progress(request).await
    }

    /// `Progress` with what the bot waits for before it can ask `task` (and until when), tried
    /// once.
    pub async fn waiting(&self, task: &Task, waiting: &str, until: Option<SystemTime>) -> Result<bool, SourceError> {
        let request = ProgressRequest {
            evaluation_id: task.evaluation_id,
            bot_id: self.options.bot_id.clone(),
            waiting: waiting.to_owned(),
            waiting_until: until.map(prost_types::Timestamp::from),
            ..ProgressRequest::default()
        };
        self.send_progress(request).await
    }

    async fn send_progress(&self, request: ProgressRequest) -> Result<bool, SourceError> {
        let mut client = self.client.clone();
        let timeout = self.options.submit_timeout;
        match tokio::time::timeout(timeout, client.progress(request)).await {
            Ok(reply) => Ok(reply?.into_inner().held),
            Err(_) => Err(SourceError::Timeout(timeout)),
        }
    }

    /// `Release` with retries.
    pub async fn release(&self, task: &Task, mark_as_failed: bool, reason: &str) -> Result<(), SourceError> {
        release(&self.client, &self.options, task, mark_as_failed, reason).await
    }

    /// Stops heartbeats for `task` and asks for the next one.
    pub async fn finished(&mut self, task: &Task) {
        if self.control.send(Control::Done(task.evaluation_id)).await.is_err() {
            tracing::warn!("claim driver gone; no further tasks");
        }
    }

    /// Hands back tasks delivered but not started, then closes the stream.
    pub async fn close(mut self) {
        self.tasks.close();
        while let Ok(task) = self.tasks.try_recv() {
            hand_back(&self.client, &self.options, &task).await;
        }
        let (done, closed) = oneshot::channel();
        if self.control.send(Control::Close(done)).await.is_ok() {
            let _ = closed.await;
        }
        if let Err(error) = self.driver.await {
            tracing::warn!(%error, "claim driver panicked");
        }
    }
}

/// A request carrying the task's trace context as gRPC metadata (`traceparent`, `tracestate`),
/// so the gateway's span joins the trace that began with the customer's Ask.
fn with_trace<T>(message: T, trace_context: &std::collections::HashMap<String, String>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (key, value) in trace_context {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.to_ascii_lowercase().as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            request.metadata_mut().insert(key, value);
        }
    }
    request
}

async fn release(
    client: &EvaluationServiceClient<AuthChannel>,
    options: &ClaimOptions,
    task: &Task,
    mark_as_failed: bool,
    reason: &str,
) -> Result<(), SourceError> {
    let request = ReleaseRequest {
        evaluation_id: task.evaluation_id,
        mark_as_failed,
        failure_reason: reason.to_owned(),
        bot_id: options.bot_id.clone(),
    };
    with_retries("release", options.submit_retry_attempts, options.submit_timeout, || {
        let mut client = client.clone();
        let request = with_trace(request.clone(), &task.trace_context);
        async move { client.release(request).await.map(drop).map_err(SourceError::from) }
    })
    .await
}

async fn hand_back(client: &EvaluationServiceClient<AuthChannel>, options: &ClaimOptions, task: &Task) {
    let evaluation_id = task.evaluation_id;
    match release(client, options, task, false, "the bot is shutting down").await {
        Ok(()) => tracing::info!(evaluation_id, "task handed back unstarted"),
        // The gateway hands back what a closed stream held anyway.
        Err(error) => tracing::debug!(evaluation_id, %error, "hand back failed"),
    }
}

struct Driver {
    client: EvaluationServiceClient<AuthChannel>,
    options: ClaimOptions,
    tasks: mpsc::Sender<Task>,
    control: mpsc::Receiver<Control>,
    // Tasks pushed to this bot and not yet finished, with the stream generation they came on:
    // only a task of the current stream earns that stream a `ready`.
    held: HashMap<i64, u64>,
    // Pushed tasks not yet taken by the worker.
    queued: VecDeque<Task>,
    generation: u64,
    // Whether the current stream got its welcome: a stream that worked resets the back-off.
    welcomed: bool,
    // Since when every stream was refused for the caller (the token), until one is welcomed.
    refused_since: Option<tokio::time::Instant>,
    refused: Arc<OnceLock<String>>,
}

/// Why a stream session ended.
enum Ended {
    Broken,
    /// The platform refused the caller: the reason.
    Refused(String),
    Closing(Option<oneshot::Sender<()>>),
}

impl Driver {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(500);
        loop {
            self.generation += 1;
            self.welcomed = false;
            let ended = self.session().await;
            if self.welcomed {
                backoff = Duration::from_millis(500);
                self.refused_since = None;
            }
            if let Ended::Refused(reason) = &ended {
                let since = *self.refused_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= REFUSED_FOR {
                    tracing::error!(%reason, "the platform refuses this bot's token; stopping");
                    let _ = self.refused.set(reason.clone());
                    return;
                }
            }
            match ended {
                Ended::Closing(done) => {
                    for task in std::mem::take(&mut self.queued) {
                        hand_back(&self.client, &self.options, &task).await;
                    }
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                Ended::Broken | Ended::Refused(_) => {
                    // Wait before re-opening, but stay responsive to close.
                    tokio::select! {
                        control = self.control.recv() => match control {
                            Some(Control::Close(done)) => {
                                for task in std::mem::take(&mut self.queued) {
                                    hand_back(&self.client, &self.options, &task).await;
                                }
                                let _ = done.send(());
                                return;
                            }
                            Some(Control::Done(id)) => {
                                self.held.remove(&id);
                            }
                            None => return,
                        },
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One stream, from hello until it breaks or the bot closes.
    async fn session(&mut self) -> Ended {
        let (out, out_rx) = mpsc::channel::<ClaimRequest>(8);
        let hello = ClaimRequest {
            msg: Some(ClaimMsg::Hello(ClaimHello {
                bot_id: self.options.bot_id.clone(),
                serves: vec![Target { assistant: self.options.assistant.clone(), plan: self.options.plan.clone() }],
                max_tasks: 1,
            })),
        };
        if out.send(hello).await.is_err() {
            return Ended::Broken;
        }
        let mut client = self.client.clone();
        let opened = tokio::select! {
            opened = client.claim(ReceiverStream::new(out_rx)) => opened,
            control = self.control.recv() => return self.on_close_before_open(control),
        };
        let mut inbound = match opened {
            Ok(response) => response.into_inner(),
            Err(status) => {
                tracing::warn!(error = %status, "cannot open the claim stream");
                return ended_by(status);
            }
        };
        let mut heartbeat_every = DEFAULT_HEARTBEAT;
        let mut ticker = tokio::time::interval(heartbeat_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next_queued = self.queued.front().cloned();
            tokio::select! {
                message = inbound.message() => match message {
                    Ok(Some(reply)) => match reply.msg {
                        Some(ClaimReply::Welcome(welcome)) => {
                            self.welcomed = true;
                            if welcome.claim_ttl_seconds > 0 {
                                heartbeat_every = Duration::from_secs(u64::from(welcome.claim_ttl_seconds)) / 3;
                                heartbeat_every = heartbeat_every.max(Duration::from_millis(500));
                                ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat_every, heartbeat_every);
                                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            }
                            tracing::info!(bot_id = self.options.bot_id, claim_ttl_seconds = welcome.claim_ttl_seconds, "claim stream open");
                        }
                        Some(ClaimReply::Task(task)) => {
                            tracing::info!(evaluation_id = task.evaluation_id, attempt = task.attempt, "task claimed");
                            self.held.insert(task.evaluation_id, self.generation);
                            self.queued.push_back(Task {
                                evaluation_id: task.evaluation_id,
                                prompt_id: Some(task.prompt_id),
                                prompt_text: task.prompt_text,
                                attempt: task.attempt,
                                max_attempts: task.max_attempts,
                                trace_context: task.trace_context,
                            });
                        }
                        None => {}
                    },
                    Ok(None) => {
                        tracing::warn!("claim stream ended by the gateway");
                        return Ended::Broken;
                    }
                    Err(status) => {
                        tracing::warn!(error = %status, "claim stream broken");
                        return ended_by(status);
                    }
                },
                permit = self.tasks.reserve(), if next_queued.is_some() => match permit {
                    Ok(permit) => {
                        if let Some(task) = self.queued.pop_front() {
                            permit.send(task);
                        }
                    }
                    // The worker is gone: close like a shutdown.
                    Err(_) => return Ended::Closing(None),
                },
                control = self.control.recv() => match control {
                    Some(Control::Done(id)) => {
                        if self.held.remove(&id) == Some(self.generation) {
                            let ready = ClaimRequest { msg: Some(ClaimMsg::Ready(ClaimReady { count: 1 })) };
                            if out.send(ready).await.is_err() {
                                return Ended::Broken;
                            }
                        }
                    }
                    Some(Control::Close(done)) => return Ended::Closing(Some(done)),
                    None => return Ended::Closing(None),
                },
                _ = ticker.tick() => {
                    if !self.held.is_empty() {
                        let evaluation_ids: Vec<i64> = self.held.keys().copied().collect();
                        tracing::debug!(?evaluation_ids, "heartbeat");
                        let heartbeat = ClaimRequest { msg: Some(ClaimMsg::Heartbeat(ClaimHeartbeat { evaluation_ids })) };
                        if out.send(heartbeat).await.is_err() {
                            return Ended::Broken;
                        }
                    }
                }
            }
        }
    }

    fn on_close_before_open(&mut self, control: Option<Control>) -> Ended {
        match control {
            Some(Control::Close(done)) => Ended::Closing(Some(done)),
            Some(Control::Done(id)) => {
                self.held.remove(&id);
                // The stream was not open yet: try again at once.
                Ended::Broken
            }
            None => Ended::Closing(None),
        }
    }
}

/// A stream the gateway ended with `status`: refused for the caller, or broken.
fn ended_by(status: tonic::Status) -> Ended {
    match SourceError::Grpc(status).caller_refusal() {
        Some(reason) => Ended::Refused(reason),
        None => Ended::Broken,
    }
}
