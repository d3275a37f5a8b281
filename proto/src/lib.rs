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

/// Bounds of a submitted answer's citations and of a release reason, in characters (Unicode
/// scalar values): the platform refuses a submission past them (`check_submission` in
/// services/evaluations), and a bot fits what it captured to them before it submits.
pub mod limits {
    /// Most citations one answer may carry.
    pub const MAX_CITATIONS: usize = 256;
    /// Longest citation URL.
    pub const MAX_URL_CHARS: usize = 4096;
    /// Longest citation title (the seed's `text`).
    pub const MAX_TITLE_CHARS: usize = 1000;
    /// Longest failure reason a bot may give.
    pub const MAX_REASON_CHARS: usize = 4096;
}

/// The encoded descriptors of every `aap.v1` file, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("aap_descriptor");
