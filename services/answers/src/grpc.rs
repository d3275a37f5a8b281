//! AnswersService over gRPC: a thin adapter over [`Answers`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use aap_proto::v1::answer_event::Event;
use aap_proto::v1::answers_service_server::AnswersService;
use aap_proto::v1::ask_request::Query as ProtoQuery;
use aap_proto::v1::{
    AnswerEvent, AskRequest, AskResponse, DeleteRefreshScheduleRequest, DeleteRefreshScheduleResponse, HistoryRequest,
    HistoryResponse, ListRefreshSchedulesRequest, ListRefreshSchedulesResponse, RefreshSchedule,
    ScheduleRefreshRequest, ScheduleRefreshResponse, SimilarPolicy, WatchRequest, WatchResponse,
};
use futures::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{Answers, AnswersError, AskQuery, Policy, Query, parse_targets, timestamp};

/// The tonic service.
#[derive(Clone)]
pub struct AnswersGrpc {
    answers: Answers,
    streams: OpenStreams,
    /// Turns true when the process stops: every open Ask and Watch stream then ends.
    stopping: Option<tokio::sync::watch::Receiver<bool>>,
}

impl AnswersGrpc {
    pub fn new(answers: Answers) -> AnswersGrpc {
        let config = answers.config();
        let streams = OpenStreams::new(config.max_streams_per_caller, config.max_streams);
        AnswersGrpc { answers, streams, stopping: None }
    }

    /// Ends every open Ask and Watch stream with UNAVAILABLE once `stopping` turns true (or its
    /// sender is gone): the server's graceful shutdown waits for every call to end, and these
    /// wait on prompts for as long as their callers like, so a stopping replica waited out each
    /// caller's own deadline (or forever). The caller watches the prompt again on another
    /// replica; its evaluations go on.
    pub fn stopping_with(mut self, stopping: tokio::sync::watch::Receiver<bool>) -> AnswersGrpc {
        self.stopping = Some(stopping);
        self
    }

    /// `stream`, ended with UNAVAILABLE when the process stops first.
    fn until_stopped<T: Send + 'static>(&self, stream: EventStream<T>) -> EventStream<T> {
        let Some(mut stopping) = self.stopping.clone() else { return stream };
        let stopped = async move {
            let _ = stopping.wait_for(|stop| *stop).await;
        };
        Box::pin(UntilStopped { inner: Some(stream), stopped: Box::pin(stopped) })
    }
}

/// A response stream that ends with UNAVAILABLE when `stopped` resolves before it ends.
struct UntilStopped<T> {
    inner: Option<EventStream<T>>,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl<T> Stream for UntilStopped<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else { return std::task::Poll::Ready(None) };
        if let std::task::Poll::Ready(item) = inner.poll_next_unpin(cx) {
            if item.is_none() {
                this.inner = None;
            }
            return std::task::Poll::Ready(item);
        }
        if this.stopped.as_mut().poll(cx).is_ready() {
            this.inner = None;
            return std::task::Poll::Ready(Some(Err(Status::unavailable(
                "the server is shutting down; watch the prompt again (Watch with its prompt_id): its evaluations go on",
            ))));
        }
        std::task::Poll::Pending
    }
}

/// The Ask and Watch streams open on this replica, by caller: one caller may hold at most
/// `per_caller`, and all together at most `total`, so that neither one client opening streams in
/// a loop nor all of them can take more memory than the replica has (about 30 KB a stream).
#[derive(Clone)]
struct OpenStreams {
    per_caller: usize,
    total: usize,
    held: Arc<Mutex<Held>>,
}

#[derive(Default)]
struct Held {
    by_caller: HashMap<Arc<str>, usize>,
    total: usize,
}

impl OpenStreams {
    fn new(per_caller: usize, total: usize) -> OpenStreams {
        OpenStreams { per_caller, total, held: Arc::default() }
    }

    /// A slot for one more stream of `principal`, held until the stream is dropped; refused
    /// with RESOURCE_EXHAUSTED when the caller, or the replica, holds all it may already.
    fn open(&self, principal: &Arc<str>) -> Result<StreamSlot, Status> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let of_caller = held.by_caller.get(principal).copied().unwrap_or(0);
        if of_caller >= self.per_caller {
            return Err(Status::resource_exhausted(format!(
                "{of_caller} Ask and Watch streams are open for this caller on this replica, the most one caller may \
                 hold (--max-streams-per-caller): close some before opening more"
            )));
        }
        if held.total >= self.total {
            return Err(Status::resource_exhausted(format!(
                "{} Ask and Watch streams are open on this replica, the most it holds (--max-streams): retry later, \
                 or on another replica",
                held.total
            )));
        }
        held.by_caller.insert(principal.clone(), of_caller + 1);
        held.total += 1;
        Ok(StreamSlot { streams: self.clone(), principal: principal.clone() })
    }
}

/// One open stream's place in [`OpenStreams`]; dropping it frees the place.
struct StreamSlot {
    streams: OpenStreams,
    principal: Arc<str>,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut held = self.streams.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.total = held.total.saturating_sub(1);
        match held.by_caller.get_mut(&self.principal) {
            Some(count) if *count > 1 => *count -= 1,
            _ => {
                held.by_caller.remove(&self.principal);
            }
        }
    }
}

/// The principal a request comes from (every AnswersService call is authenticated before it
/// reaches the service; a request with no caller, as in-process tests make, counts as one).
fn principal<T>(request: &Request<T>) -> Arc<str> {
    caller(request).map_or_else(|| Arc::from(""), |caller| caller.principal.clone())
}

/// Who the request comes from, as authentication found it.
fn caller<T>(request: &Request<T>) -> Option<&aap_platform::auth::Caller> {
    request.extensions().get::<aap_platform::auth::Caller>()
}

impl From<AnswersError> for Status {
    fn from(err: AnswersError) -> Status {
        match &err {
            AnswersError::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                err.to_string(),
                ErrorDetails::with_bad_request_violation(*field, reason.clone()),
            ),
            AnswersError::PromptNotFound(_) | AnswersError::ScheduleNotFound(_) => Status::not_found(err.to_string()),
            AnswersError::Busy(_) => Status::resource_exhausted(err.to_string()),
            AnswersError::ShuttingDown => Status::unavailable(err.to_string()),
            AnswersError::Embedding(cause) => {
                tracing::error!(error = %cause, "embedding failed");
                Status::internal("internal error")
            }
            AnswersError::Database(cause) => {
                tracing::error!(error = %cause, "answers store failed");
                Status::internal("internal error")
            }
        }
    }
}

/// What a customer sees of an event: answers without the internal identifiers of the fleet
/// (the bot, the leased account and its label, which may be an e-mail address), failures
/// without the bot's evidence reference. Operators see everything.
fn for_caller(mut event: AnswerEvent, operator: bool) -> AnswerEvent {
    if operator {
        return event;
    }
    match &mut event.event {
        Some(Event::Cached(answer) | Event::Answer(answer)) => {
            answer.bot_id.clear();
            answer.account_id.clear();
            answer.account_label.clear();
        }
        Some(Event::Failed(failed)) => {
            if let Some(at) = failed.reason.find(" [evidence: ") {
                failed.reason.truncate(at);
            }
        }
        _ => {}
    }
    event
}

fn is_operator<T>(request: &Request<T>) -> bool {
    caller(request).is_some_and(aap_platform::auth::Caller::is_operator)
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Status {
    AnswersError::InvalidArgument { field, reason: reason.into() }.into()
}

fn schedule_to_proto(s: crate::refresh::Schedule) -> RefreshSchedule {
    RefreshSchedule {
        name: s.name,
        prompt_ids: s.prompt_ids,
        targets: s.targets.0.into_iter().map(|(assistant, plan)| aap_proto::v1::Target { assistant, plan }).collect(),
        every: Some(prost_types::Duration { seconds: s.every_seconds, nanos: 0 }),
        next_run_at: Some(timestamp(s.next_run_at)),
        last_run_at: s.last_run_at.map(timestamp),
        created_by: s.created_by,
    }
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AnswersService for AnswersGrpc {
    type AskStream = EventStream<AskResponse>;
    type WatchStream = EventStream<WatchResponse>;
    type HistoryStream = EventStream<HistoryResponse>;

    async fn ask(&self, request: Request<AskRequest>) -> Result<Response<Self::AskStream>, Status> {
        let operator = is_operator(&request);
        // Before anything is looked up or scheduled: a refused Ask leaves nothing behind.
        let slot = self.streams.open(&principal(&request))?;
        let req = request.into_inner();
        let query = match req.query {
            Some(ProtoQuery::Prompt(text)) => Query::Text(text),
            Some(ProtoQuery::PromptId(id)) => Query::PromptId(id),
            None => return Err(invalid("prompt", "give `prompt` or `prompt_id`")),
        };
        let policy = match SimilarPolicy::try_from(req.policy) {
            Ok(SimilarPolicy::Unspecified | SimilarPolicy::Suggest) => Policy::Suggest,
            Ok(SimilarPolicy::Accept) => Policy::Accept,
            Ok(SimilarPolicy::ForceNew) => Policy::ForceNew,
            Err(_) => return Err(invalid("policy", format!("unknown value {}", req.policy))),
        };
        let targets = parse_targets(req.targets.into_iter().map(|t| (t.assistant, t.plan)))?;
        let query = AskQuery {
            query,
            targets,
            policy,
            min_similarity: req.min_similarity,
            include_html: req.include_html,
            include_related: req.include_related,
            max_age: Answers::check_max_age(req.max_age)?,
        };
        let events = self.answers.ask(query).await?;
        let open = crate::metrics::stream_opened("ask");
        let stream = events.map(move |event| {
            let _open = (&open, &slot);
            Ok(AskResponse { event: Some(for_caller(event, operator)) })
        });
        Ok(Response::new(self.until_stopped(Box::pin(stream))))
    }

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let operator = is_operator(&request);
        let slot = self.streams.open(&principal(&request))?;
        let req = request.into_inner();
        let targets = req.targets.into_iter().map(|t| (t.assistant, t.plan)).collect();
        let events = self.answers.watch(req.prompt_id, targets, req.include_html).await?;
        let open = crate::metrics::stream_opened("watch");
        let stream = events.map(move |event| {
            let _open = (&open, &slot);
            Ok(WatchResponse { event: Some(for_caller(event, operator)) })
        });
        Ok(Response::new(self.until_stopped(Box::pin(stream))))
    }

    async fn schedule_refresh(
        &self,
        request: Request<ScheduleRefreshRequest>,
    ) -> Result<Response<ScheduleRefreshResponse>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let req = request.into_inner();
        let targets = req.targets.into_iter().map(|t| (t.assistant, t.plan)).collect();
        let schedule = crate::refresh::check(&req.name, req.prompt_ids, targets, req.every, req.run_now)?;
        let saved = self.answers.schedule_refresh(schedule, &caller.principal).await?;
        Ok(Response::new(ScheduleRefreshResponse { schedule: Some(schedule_to_proto(saved)) }))
    }

    async fn list_refresh_schedules(
        &self,
        _request: Request<ListRefreshSchedulesRequest>,
    ) -> Result<Response<ListRefreshSchedulesResponse>, Status> {
        let schedules = self.answers.refresh_schedules().await?.into_iter().map(schedule_to_proto).collect();
        Ok(Response::new(ListRefreshSchedulesResponse { schedules }))
    }

    async fn delete_refresh_schedule(
        &self,
        request: Request<DeleteRefreshScheduleRequest>,
    ) -> Result<Response<DeleteRefreshScheduleResponse>, Status> {
        self.answers.delete_refresh_schedule(&request.into_inner().name).await?;
        Ok(Response::new(DeleteRefreshScheduleResponse {}))
    }

    async fn history(&self, request: Request<HistoryRequest>) -> Result<Response<Self::HistoryStream>, Status> {
        let operator = is_operator(&request);
        let req = request.into_inner();
        let target = req.target.unwrap_or_default();
        let entries = self.answers.history(req.prompt_id, &target.assistant, &target.plan, req.include_html).await?;
        let stream = futures::stream::iter(entries.into_iter().map(move |mut entry| {
            // The same view of an answer as on Ask and Watch streams.
            if let Some(answer) = entry.answer.take() {
                let seen = for_caller(AnswerEvent { event: Some(Event::Cached(answer)) }, operator);
                if let Some(Event::Cached(answer)) = seen.event {
                    entry.answer = Some(answer);
                }
            }
            Ok(entry)
        }));
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aap_proto::v1::{Answer, EvaluationFailed, PartialAnswer};

    fn answer() -> AnswerEvent {
        let answer = Answer {
            bot_id: "bot-eu-7".into(),
            account_id: "0b8e".into(),
            account_label: "ops@example.com".into(),
            response_text: "text".into(),
            ..Answer::default()
        };
        AnswerEvent { event: Some(Event::Answer(answer)) }
    }

    #[test]
    fn customers_do_not_see_the_fleets_identifiers() {
        let Some(Event::Answer(seen)) = for_caller(answer(), false).event else { panic!("not an answer") };
        assert_eq!((seen.bot_id.as_str(), seen.account_id.as_str(), seen.account_label.as_str()), ("", "", ""));
        assert_eq!(seen.response_text, "text");
        let Some(Event::Answer(seen)) = for_caller(answer(), true).event else { panic!("not an answer") };
        assert_eq!(seen.account_label, "ops@example.com");
        let failed = AnswerEvent {
            event: Some(Event::Failed(EvaluationFailed {
                reason: "login wall (after 3 attempts) [evidence: chatgpt-42-1]".into(),
                ..EvaluationFailed::default()
            })),
        };
        let Some(Event::Failed(seen)) = for_caller(failed, false).event else { panic!("not a failure") };
        assert_eq!(seen.reason, "login wall (after 3 attempts)");
    }

    #[test]
    fn a_partial_answer_names_no_bot_or_account_and_reaches_customers_whole() {
        let partial = AnswerEvent {
            event: Some(Event::Partial(PartialAnswer {
                evaluation_id: 7,
                assistant: "chatgpt".into(),
                plan: "any".into(),
                text: "The best laptops".into(),
            })),
        };
        // Its every field is the customer's to see: nothing to strip, nothing added.
        assert_eq!(for_caller(partial.clone(), false), partial);
    }
}
