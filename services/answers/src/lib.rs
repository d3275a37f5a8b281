//! AnswersService: a customer's prompt is normalised and looked up by hash; a miss is embedded
//! and compared with stored prompts by cosine similarity; what has no answer yet is scheduled
//! on the bot fleet; every answer is streamed as it lands.

pub mod domain;
pub mod grpc;
pub mod guard;
pub mod hub;
pub mod metrics;
pub mod normalize;
pub mod pairs;
pub mod reachability;
pub mod refresh;
pub mod store;

pub use domain::{Answers, AnswersConfig, AnswersError};

#[cfg(test)]
mod props;
