//! The platform's gRPC contract, generated from `proto/aap/v1/*.proto`.
//!
//! Everything lives in [`v1`]: messages, `*_client` and `*_server` modules. The
//! [`FILE_DESCRIPTOR_SET`] feeds server reflection so grpcurl works without proto files.

#![allow(missing_docs)]

pub mod urls;

mod codec;
pub use codec::Codec;

/// Package `aap.v1`.
pub mod v1 {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("aap.v1");
}

/// The failure classes of a bot's attempt that `SessionService.ReportEvidence` takes (those of
/// `aap_bot::AskError::class`); the platform refuses any other, and a bot reports no other.
pub const FAILURE_CLASSES: &[&str] = &[
    "logged-out",
    "challenge",
    "rate-limited",
    "selector-missing",
    "timeout",
    "empty-answer",
    "assistant-error",
    "browser",
];

/// The encoded descriptors of every `aap.v1` file, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("aap_descriptor");
