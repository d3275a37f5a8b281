//! The platform's gRPC contract, generated from `proto/aap/v1/*.proto`.
//!
//! Everything lives in [`v1`]: messages, `*_client` and `*_server` modules. The
//! [`FILE_DESCRIPTOR_SET`] feeds server reflection so grpcurl works without proto files.

#![allow(missing_docs)]

pub mod storage_state;
pub mod token;
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
    "prompt-refused",
    "browser",
];

/// Bounds of what a bot hands the platform, in characters (Unicode scalar values) or bytes: a
/// submitted answer's citations and a release reason (`check_submission` in
/// services/evaluations), and the evidence of a failed attempt (services/sessions' evidence):
/// the platform refuses a request past them, and a bot fits what it captured to them first.
pub mod limits {
    /// Most citations one answer may carry.
    pub const MAX_CITATIONS: usize = 256;
    /// Longest URL: a citation's, an evidence page's.
    pub const MAX_URL_CHARS: usize = 4096;
    /// Longest title: a citation's (the seed's `text`), an evidence page's.
    pub const MAX_TITLE_CHARS: usize = 1000;
    /// Longest failure reason a bot may give: a release reason, an evidence case's error, the
    /// detail of a returned lease.
    pub const MAX_REASON_CHARS: usize = 4096;
    /// Longest word of what a bot waits for before it can ask (Progress's `waiting`): one line.
    pub const MAX_WAITING_CHARS: usize = 1000;
    /// Largest page HTML of an evidence case, in bytes.
    pub const MAX_EVIDENCE_HTML_BYTES: usize = 2 * 1024 * 1024;
    /// Largest screenshot of an evidence case, in bytes.
    pub const MAX_EVIDENCE_SCREENSHOT_BYTES: usize = 4 * 1024 * 1024;
    /// Most search queries one answer may carry.
    pub const MAX_SEARCH_QUERIES: usize = 64;
    /// Longest search query an answer may carry (an assistant may show a long prompt whole as
    /// its query; a bot cuts it to this).
    pub const MAX_QUERY_CHARS: usize = 1000;
    /// Most products one answer may carry.
    pub const MAX_PRODUCTS: usize = 64;
    /// Longest short name: the model an answer names, a product's price and merchant, a bot
    /// id, a lease id, an adapter's version.
    pub const MAX_NAME_CHARS: usize = 200;
    /// Longest answer text (what a reader sees).
    pub const MAX_RESPONSE_CHARS: usize = 200_000;
    /// Longest answer markdown.
    pub const MAX_MARKDOWN_CHARS: usize = 400_000;
    /// Longest page HTML of an answer (the answer's element as the page rendered it).
    pub const MAX_HTML_CHARS: usize = 4_000_000;
    /// Furthest ahead a returned lease's `limit_lifts_at` may be: a week's limit and a day's
    /// margin. Further is a misreading (a date taken for next year's): the platform refuses it,
    /// and a bot sends none.
    pub const MAX_LIMIT_REST: std::time::Duration = std::time::Duration::from_secs(8 * 24 * 3600);
    /// Nearest a `limit_lifts_at` must be for the account to cool until it: a nearer or past one
    /// is a page still showing a limit that has lifted, so the account gets the usual cool-down.
    pub const MIN_LIMIT_REST: std::time::Duration = std::time::Duration::from_secs(60);
}

/// The encoded descriptors of every `aap.v1` file, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("aap_descriptor");
