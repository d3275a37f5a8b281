//! The evaluation domain's errors and how they reach gRPC and HTTP callers.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// What can go wrong taking, extending, submitting or releasing an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("evaluation {0} does not exist")]
    NotFound(i64),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("evaluation {id} is {status}: {what}")]
    WrongState { id: i64, status: String, what: &'static str },
    #[error("task queue unavailable: {0}")]
    Queue(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

/// Result of the evaluation domain.
pub type EvalResult<T> = Result<T, EvalError>;

impl EvalError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> EvalError {
        EvalError::InvalidArgument { field, reason: reason.into() }
    }
}

impl From<EvalError> for Status {
    fn from(err: EvalError) -> Status {
        match &err {
            EvalError::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                err.to_string(),
                ErrorDetails::with_bad_request_violation(*field, reason.clone()),
            ),
            EvalError::NotFound(_) => Status::not_found(err.to_string()),
            EvalError::PermissionDenied(_) => Status::permission_denied(err.to_string()),
            EvalError::WrongState { .. } => Status::failed_precondition(err.to_string()),
            EvalError::Queue(_) => {
                tracing::warn!(error = %err, "task queue unavailable");
                Status::unavailable("task queue unavailable, retry shortly")
            }
            EvalError::Database(cause) => {
                tracing::error!(error = %cause, "evaluation store failed");
                Status::internal("internal error")
            }
        }
    }
}
