//! EvaluationService over gRPC: a thin adapter over [`Gateway`].

use std::pin::Pin;
use std::time::Duration;

use aap_platform::input;
use aap_proto::v1::claim_request::Msg as ClaimMsg;
use aap_proto::v1::claim_response::Msg as ClaimReply;
use aap_proto::v1::evaluation_service_server::EvaluationService;
use aap_proto::v1::{
    ClaimRequest, ClaimResponse, ClaimWelcome, HeartbeatRequest, HeartbeatResponse, PollRequest, PollResponse,
    ProgressRequest, ProgressResponse, ReleaseRequest, ReleaseResponse, SubmitRequest, SubmitResponse,
};
use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::gateway::{
    ClaimEnd, ClaimInput, Gateway, ProgressReport, Submission, admit_serves, check_bot_id, parse_serves, timestamp,
};
use crate::model::{AnswerKind, Capture, CitationKind, CitationOrigin, Product, RawCitation};
use crate::store::Holder;
use crate::{EvalError, EvalResult};
use aap_proto::v1::{
    AnswerKind as ProtoAnswerKind, CitationKind as ProtoCitationKind, CitationOrigin as ProtoCitationOrigin,
};

/// The tonic service.
#[derive(Clone)]
pub struct EvaluationGrpc {
    gateway: Gateway,
    /// Turns true when the process stops: every open Claim stream then ends.
    stopping: Option<watch::Receiver<bool>>,
}

impl EvaluationGrpc {
    pub fn new(gateway: Gateway) -> EvaluationGrpc {
        EvaluationGrpc { gateway, stopping: None }
    }

    /// Ends every open Claim stream with UNAVAILABLE once `stopping` turns true (or its sender
    /// is gone), leaving each bot the tasks it holds: the server's graceful stop waits for every
    /// call, and a bot's Claim stream lasts as long as the bot. The bot opens its stream again
    /// (on another replica), heartbeats its tasks there and submits them.
    pub fn stopping_with(mut self, stopping: watch::Receiver<bool>) -> EvaluationGrpc {
        self.stopping = Some(stopping);
        self
    }
}

/// How long a stopping Claim stream waits for its bot to read what is sent to it: the tasks
/// pushed before the stop, then the UNAVAILABLE that ends it. A bot that reads nothing for
/// so long keeps its claims until they lapse.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Resolves once `stopping` turns true or its sender is gone; never without one.
async fn stopped(stopping: Option<watch::Receiver<bool>>) {
    match stopping {
        Some(mut stopping) => {
            let _ = stopping.wait_for(|stop| *stop).await;
        }
        None => std::future::pending().await,
    }
}

/// Longest time a capture may report (`capture.time_to_first_token`, `time_to_complete`), in
/// seconds: a year, far beyond any claim, and its milliseconds fit the stored bigint.
const MAX_CAPTURE_SECONDS: i64 = 365 * 24 * 3600;

/// A proto duration as whole milliseconds; a negative one, nanos outside [0, 999,999,999] or one
/// over [`MAX_CAPTURE_SECONDS`] is refused, each with its own reason.
fn parse_millis(field: &'static str, d: Option<prost_types::Duration>) -> EvalResult<Option<i64>> {
    let Some(d) = d else { return Ok(None) };
    let nanos = input::check_nanos(d.nanos).map_err(|reason| EvalError::invalid(field, reason))?;
    if d.seconds < 0 {
        return Err(EvalError::invalid(field, format!("{} seconds is negative", d.seconds)));
    }
    if d.seconds > MAX_CAPTURE_SECONDS {
        return Err(EvalError::invalid(
            field,
            format!("{} seconds is too large; the limit is {MAX_CAPTURE_SECONDS} seconds (a year)", d.seconds),
        ));
    }
    Ok(Some(d.seconds * 1000 + i64::from(nanos / 1_000_000)))
}

fn parse_kind(kind: i32) -> EvalResult<AnswerKind> {
    match ProtoAnswerKind::try_from(kind) {
        Ok(ProtoAnswerKind::Unspecified | ProtoAnswerKind::Text) => Ok(AnswerKind::Text),
        Ok(ProtoAnswerKind::NoOverview) => Ok(AnswerKind::NoOverview),
        Err(_) => Err(EvalError::invalid("kind", format!("unknown answer kind {kind}"))),
    }
}

fn parse_citation(c: aap_proto::v1::Citation) -> EvalResult<RawCitation> {
    let kind = match ProtoCitationKind::try_from(c.kind) {
        Ok(ProtoCitationKind::Unspecified) => CitationKind::Unspecified,
        Ok(ProtoCitationKind::Inline) => CitationKind::Inline,
        Ok(ProtoCitationKind::Listed) => CitationKind::Listed,
        Err(_) => return Err(EvalError::invalid("citations.kind", format!("unknown value {}", c.kind))),
    };
    let found_in = match ProtoCitationOrigin::try_from(c.found_in) {
        Ok(ProtoCitationOrigin::Unspecified) => CitationOrigin::Unspecified,
        Ok(ProtoCitationOrigin::Page) => CitationOrigin::Page,
        Ok(ProtoCitationOrigin::Stream) => CitationOrigin::Stream,
        Ok(ProtoCitationOrigin::Both) => CitationOrigin::Both,
        Err(_) => {
            return Err(EvalError::invalid("citations.found_in", format!("unknown value {}", c.found_in)));
        }
    };
    Ok(RawCitation { url: c.url, title: c.title, kind, found_in })
}

fn parse_product(p: aap_proto::v1::Product) -> Product {
    Product { name: p.name, url: p.url, price: p.price, merchant: p.merchant, position: p.position }
}

/// Signal and role names: short tokens, never free text.
fn parse_names(field: &'static str, names: Vec<String>) -> EvalResult<Vec<String>> {
    if names.len() > 32 {
        return Err(EvalError::invalid(field, "at most 32 names"));
    }
    names
        .into_iter()
        .map(|name| {
            let name = name.trim().to_owned();
            let token = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if token {
                Ok(name)
            } else {
                Err(EvalError::invalid(field, format!("{} is not a name", input::quoted(&name))))
            }
        })
        .collect()
}

fn parse_capture(c: Option<aap_proto::v1::Capture>) -> EvalResult<Capture> {
    let Some(c) = c else { return Ok(Capture::default()) };
    Ok(Capture {
        response_html: c.response_html,
        model: c.model.trim().to_owned(),
        web_search: c.web_search,
        ttft_ms: parse_millis("capture.time_to_first_token", c.time_to_first_token)?,
        total_ms: parse_millis("capture.time_to_complete", c.time_to_complete)?,
        adapter_version: c.adapter_version.trim().to_owned(),
        adapter_fingerprint: c.adapter_fingerprint.trim().to_owned(),
        finish_signals: parse_names("capture.finish_signals", c.finish_signals)?,
        missing_roles: parse_names("capture.missing_roles", c.missing_roles)?,
        read_by_fallback: c.read_by_fallback,
        // 0 is what a bot that does not say sends.
        confidence: (c.confidence != 0.0).then_some(c.confidence),
        cut_short: c.cut_short,
        model_fallback: c.model_fallback,
    })
}

/// A capture time; nanos outside [0, 999,999,999] are refused (as ReportEvidence refuses them),
/// not clamped: `{seconds: 0, nanos: -1}` is no time, and was stored as 1970-01-01.
fn parse_time(t: Option<prost_types::Timestamp>) -> EvalResult<Option<DateTime<Utc>>> {
    t.map(|t| input::check_time(&t).map_err(|reason| EvalError::invalid("captured_at", reason))).transpose()
}

/// A Submit request as the gateway takes it.
pub fn parse_submission(req: SubmitRequest) -> EvalResult<Submission> {
    Ok(Submission {
        evaluation_id: req.evaluation_id,
        response_text: req.response_text,
        response_markdown: req.response_markdown,
        citations: req.citations.into_iter().map(parse_citation).collect::<Result<_, _>>()?,
        captured_at: parse_time(req.captured_at)?,
        bot_id: req.bot_id,
        lease_id: req.lease_id,
        kind: parse_kind(req.kind)?,
        capture: parse_capture(req.capture)?,
        search_queries: req.search_queries,
        products: req.products.into_iter().map(parse_product).collect(),
    })
}

/// The bot id a claim is recorded under: the bot's own, or its principal's name when it sends
/// none.
fn bot_id_or_principal(bot_id: &str, principal: &str) -> String {
    if bot_id.trim().is_empty() { principal.to_owned() } else { bot_id.trim().to_owned() }
}

type ClaimStream = Pin<Box<dyn Stream<Item = Result<ClaimResponse, Status>> + Send>>;

/// What the bot says on its Claim stream after hello, until it closes the stream, breaks it, or
/// sends hello again: that ends the stream with INVALID_ARGUMENT (sent on `replies`), and the
/// session hands back the tasks it holds, as when the bot goes away.
fn claim_inputs(
    inbound: Streaming<ClaimRequest>,
    replies: mpsc::Sender<Result<ClaimResponse, Status>>,
) -> impl Stream<Item = ClaimInput> + Send {
    futures::stream::unfold((inbound, replies), |(mut inbound, replies)| async move {
        loop {
            let msg = match inbound.message().await {
                Ok(Some(request)) => request.msg,
                // A broken inbound stream ends the session like a closed one.
                Ok(None) | Err(_) => return None,
            };
            let input = match msg {
                Some(ClaimMsg::Ready(ready)) => ClaimInput::Ready(ready.count),
                Some(ClaimMsg::Heartbeat(heartbeat)) => ClaimInput::Heartbeat(heartbeat.evaluation_ids),
                Some(ClaimMsg::Hello(_)) => {
                    let refusal = EvalError::invalid("hello", "hello was already sent: send it once, first");
                    // Refused or not (the bot may be gone), the stream ends here.
                    if replies.send(Err(refusal.into())).await.is_err() {
                        tracing::debug!("a claim stream sent hello twice and went away");
                    }
                    return None;
                }
                None => continue,
            };
            return Some((input, (inbound, replies)));
        }
    })
}

#[tonic::async_trait]
impl EvaluationService for EvaluationGrpc {
    type ClaimStream = ClaimStream;

    async fn claim(&self, request: Request<Streaming<ClaimRequest>>) -> Result<Response<ClaimStream>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let mut inbound = request.into_inner();
        let wait = self.gateway.config().hello_timeout;
        let first = tokio::time::timeout(wait, inbound.message()).await.map_err(|_| {
            EvalError::invalid("hello", format!("no hello came in {} s: send hello first", wait.as_secs_f64()))
        })??;
        let hello = match first {
            Some(ClaimRequest { msg: Some(ClaimMsg::Hello(hello)) }) => hello,
            _ => return Err(EvalError::invalid("hello", "the first message of a claim stream must be hello").into()),
        };
        check_bot_id(&hello.bot_id)?;
        let serves = parse_serves(hello.serves.into_iter().map(|t| (t.assistant, t.plan)))?;
        admit_serves(&caller, &serves)?;
        let holder = Holder::new(&caller.principal, &bot_id_or_principal(&hello.bot_id, &caller.principal));
        let (out_tx, out_rx) = mpsc::channel::<Result<ClaimResponse, Status>>(8);
        let welcome = ClaimResponse {
            msg: Some(ClaimReply::Welcome(ClaimWelcome {
                claim_ttl_seconds: self.gateway.config().claim_ttl.as_secs() as u32,
            })),
        };
        out_tx.send(Ok(welcome)).await.map_err(|_| Status::cancelled("client went away"))?;
        let inputs = Box::pin(claim_inputs(inbound, out_tx.clone()));
        let (task_tx, mut task_rx) = mpsc::channel(1);
        let gateway = self.gateway.clone();
        let max_tasks = hello.max_tasks;
        let stop = stopped(self.stopping.clone());
        let stopping = self.stopping.clone();
        let out = out_tx.clone();
        tokio::spawn(async move {
            let session = gateway.run_claim_session(holder, serves, max_tasks, inputs, task_tx, stop);
            // Until the session ends (its sender of tasks with it), or the bot goes away: then the
            // session's next push fails and the task goes back at once.
            let forward = async move {
                let grace_over = async {
                    stopped(stopping).await;
                    tokio::time::sleep(STOP_GRACE).await;
                };
                tokio::pin!(grace_over);
                loop {
                    // The response dropped (its caller's token revoked, the call reset) ends the
                    // session as a bot that went away does, whatever its requests still say.
                    let task = tokio::select! {
                        task = task_rx.recv() => task,
                        () = out.closed() => None,
                    };
                    let Some(task) = task else { break };
                    let reply = ClaimResponse { msg: Some(ClaimReply::Task(task)) };
                    tokio::select! {
                        sent = out.send(Ok(reply)) => if sent.is_err() { break },
                        _ = &mut grace_over => break,
                    }
                }
            };
            let (end, ()) = tokio::join!(session, forward);
            if end == ClaimEnd::Stopping {
                // After the tasks pushed before the stop: the bot has each one it holds.
                let unavailable = Status::unavailable(
                    "the server is stopping: open the claim stream again (another replica takes it); \
                     the tasks it pushed stay yours: heartbeat and submit them there",
                );
                if tokio::time::timeout(STOP_GRACE, out_tx.send(Err(unavailable))).await.is_err() {
                    tracing::info!("a stopping claim stream's bot read nothing for the grace");
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn poll(&self, request: Request<PollRequest>) -> Result<Response<PollResponse>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let req = request.into_inner();
        let target = req.serves.ok_or_else(|| EvalError::invalid("serves", "is required"))?;
        let serves = parse_serves([(target.assistant, target.plan)])?;
        admit_serves(&caller, &serves)?;
        let holder = Holder::new(&caller.principal, &bot_id_or_principal(&req.bot_id, &caller.principal));
        let ttl = self.gateway.config().poll_claim_ttl;
        let task = self.gateway.poll(&holder, &serves, ttl).await?;
        Ok(Response::new(PollResponse { task }))
    }

    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let req = request.into_inner();
        let holder = Holder::new(&caller.principal, &req.bot_id);
        let until = self.gateway.heartbeat(req.evaluation_id, self.gateway.config().claim_ttl, &holder).await?;
        Ok(Response::new(HeartbeatResponse { claim_expires_at: Some(timestamp(until)) }))
    }

    async fn submit(&self, request: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let submission = parse_submission(request.into_inner())?;
        let evaluation_id = submission.evaluation_id;
        self.gateway.submit(&caller.principal, submission).await?;
        Ok(Response::new(SubmitResponse { evaluation_id, status: "submitted".into() }))
    }

    async fn release(&self, request: Request<ReleaseRequest>) -> Result<Response<ReleaseResponse>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let req = request.into_inner();
        let holder = Holder::new(&caller.principal, &req.bot_id);
        self.gateway.release(req.evaluation_id, req.mark_as_failed, &req.failure_reason, &holder).await?;
        Ok(Response::new(ReleaseResponse { evaluation_id: req.evaluation_id, action: "released".into() }))
    }

    async fn progress(&self, request: Request<ProgressRequest>) -> Result<Response<ProgressResponse>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let req = request.into_inner();
        let holder = Holder::new(&caller.principal, &req.bot_id);
        let waiting_until = req
            .waiting_until
            .as_ref()
            .map(input::check_time)
            .transpose()
            .map_err(|reason| EvalError::invalid("waiting_until", reason))?;
        let report = ProgressReport { text: req.text, waiting: req.waiting, waiting_until };
        let held = self.gateway.progress(req.evaluation_id, report, &holder).await?;
        Ok(Response::new(ProgressResponse { held }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(result: EvalResult<impl std::fmt::Debug>) -> String {
        match result {
            Err(EvalError::InvalidArgument { field, reason }) => format!("{field}: {reason}"),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn capture_times_with_nanos_out_of_range_are_refused_not_clamped() {
        let at = |seconds, nanos| Some(prost_types::Timestamp { seconds, nanos });
        assert_eq!(parse_time(None).ok(), Some(None));
        assert!(parse_time(at(1_765_000_000, 999_999_999)).is_ok_and(|t| t.is_some()));
        assert_eq!(reason(parse_time(at(0, -1))), "captured_at: nanos -1 is outside [0, 999999999]");
        assert_eq!(
            reason(parse_time(at(59, 1_500_000_000))),
            "captured_at: nanos 1500000000 is outside [0, 999999999]"
        );
        assert_eq!(reason(parse_time(at(0, 2_000_000_000))), "captured_at: nanos 2000000000 is outside [0, 999999999]");
    }

    #[test]
    fn capture_durations_say_what_is_wrong_with_them() {
        let d = |seconds, nanos| Some(prost_types::Duration { seconds, nanos });
        let field = "capture.time_to_first_token";
        assert_eq!(parse_millis(field, d(1, 500_000_000)).ok(), Some(Some(1500)));
        assert_eq!(parse_millis(field, d(MAX_CAPTURE_SECONDS, 0)).ok(), Some(Some(MAX_CAPTURE_SECONDS * 1000)));
        assert!(reason(parse_millis(field, d(1 << 62, 0))).contains("too large; the limit is 31536000 seconds"));
        assert!(reason(parse_millis(field, d(-1, 0))).contains("negative"));
        assert!(reason(parse_millis(field, d(0, 2_000_000_000))).contains("nanos 2000000000 is outside"));
        assert!(reason(parse_millis(field, d(0, -1))).contains("nanos -1 is outside"));
    }
}
