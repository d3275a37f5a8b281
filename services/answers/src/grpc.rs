//! AnswersService over gRPC: a thin adapter over [`Answers`].

use std::pin::Pin;

use aap_proto::v1::answers_service_server::AnswersService;
use aap_proto::v1::ask_request::Query as ProtoQuery;
use aap_proto::v1::{AskRequest, AskResponse, SimilarPolicy, WatchRequest, WatchResponse};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::{Answers, AnswersError, AskQuery, Policy, Query, parse_targets};

/// The tonic service.
#[derive(Clone)]
pub struct AnswersGrpc {
    answers: Answers,
}

impl AnswersGrpc {
    pub fn new(answers: Answers) -> AnswersGrpc {
        AnswersGrpc { answers }
    }
}

impl From<AnswersError> for Status {
    fn from(err: AnswersError) -> Status {
        match &err {
            AnswersError::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                err.to_string(),
                ErrorDetails::with_bad_request_violation(*field, reason.clone()),
            ),
            AnswersError::PromptNotFound(_) => Status::not_found(err.to_string()),
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

fn invalid(field: &'static str, reason: impl Into<String>) -> Status {
    AnswersError::InvalidArgument { field, reason: reason.into() }.into()
}

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl AnswersService for AnswersGrpc {
    type AskStream = EventStream<AskResponse>;
    type WatchStream = EventStream<WatchResponse>;

    async fn ask(&self, request: Request<AskRequest>) -> Result<Response<Self::AskStream>, Status> {
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
        let query = AskQuery { query, targets, policy, min_similarity: req.min_similarity };
        let events = self.answers.ask(query).await?;
        let stream = ReceiverStream::new(events).map(|event| Ok(AskResponse { event: Some(event) }));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn watch(&self, request: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let req = request.into_inner();
        let targets = req.targets.into_iter().map(|t| (t.assistant, t.plan)).collect();
        let events = self.answers.watch(req.prompt_id, targets).await?;
        let stream = ReceiverStream::new(events).map(|event| Ok(WatchResponse { event: Some(event) }));
        Ok(Response::new(Box::pin(stream)))
    }
}
