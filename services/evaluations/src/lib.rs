//! Evaluations: the bot gateway (EvaluationService and the seed's HTTP polling API), the
//! scheduler that queues pending evaluations on JetStream, the reaper of lapsed claims, and
//! the ingest that stores answers once.
//!
//! Lifecycle of an evaluation: pending → queued → claimed → submitted → answered, or failed
//! (released as failed, or out of attempts). See [`model::Status`].

pub mod batch;
pub mod error;
pub mod gateway;
pub mod grpc;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod partial;
pub mod queue;
pub mod scheduler;
pub mod store;

pub use error::{EvalError, EvalResult};
