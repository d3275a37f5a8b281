//! Adapters: how to ask one assistant in a browser and read its answer back.
//!
//! An adapter only knows the assistant's page. Sessions, retries and task bookkeeping live in the
//! worker; the [`AskError`] class tells the worker what to do next (another session, another
//! attempt, a new browser).

mod chatgpt;
mod claude;
mod common;
mod google_ai_overview;
mod manifest;
mod perplexity;

use std::future::Future;
use std::time::Duration;

use thirtyfour::WebDriver;
use thirtyfour::error::WebDriverError;

pub use chatgpt::ChatGpt;
pub use claude::Claude;
pub use google_ai_overview::GoogleAiOverview;
pub use manifest::{Manifest, ManifestError, Selectors, Timing};
pub use perplexity::Perplexity;

/// The assistants this bot has adapters for, by lowercase id.
pub const ASSISTANTS: &[&str] = &["chatgpt", "claude", "perplexity", "google-ai-overview"];

/// One source the answer cites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Citation {
    /// The source's address without tracking parameters.
    pub url: String,
    /// The page title when the assistant lists it, otherwise the link text.
    pub title: String,
    /// Host of `url` without `www.`.
    pub domain: String,
    /// 1-based order: inline citations first in reading order, then sources only listed.
    pub position: u32,
    /// Cited inline in the answer text (true) or only listed among the sources (false).
    pub inline: bool,
}

/// What kind of result a page gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnswerKind {
    /// An answer with text.
    #[default]
    Text,
    /// The search shows no AI Overview (Google): a result of its own, not a failure.
    NoOverview,
}

/// An answer as read from the page.
#[derive(Debug, Clone, PartialEq)]
pub struct Captured {
    /// What a reader sees (`innerText`), citation pills left out.
    pub response_text: String,
    /// The answer as markdown, links and lists kept, pills as `([name](url))`.
    pub response_markdown: String,
    /// The answer's HTML as the page rendered it.
    pub html: String,
    /// Sources: inline ones in order of first appearance, then listed-only ones; each URL once.
    pub citations: Vec<Citation>,
    /// The model the page says answered, when it says.
    pub model: Option<String>,
    /// Whether the assistant searched the web, when the page says.
    pub web_search: Option<bool>,
    /// A text answer, or a page without one that is still a result (no AI Overview).
    pub kind: AnswerKind,
    /// From the click on send to the first answer text.
    pub ttft: Option<Duration>,
    /// From the click on send to the complete answer.
    pub total: Duration,
}

/// Why no answer came back. Each class leads the worker to a different next step.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// The page shows a login wall: the session's login has expired.
    #[error("the assistant shows a login wall")]
    LoggedOut,
    /// A bot challenge (Cloudflare "Just a moment...", a captcha) instead of the site.
    #[error("the site shows a bot challenge: {0}")]
    Challenge(String),
    /// The assistant refused for too many messages: the account must cool down.
    #[error("the assistant rate limited the account: {0}")]
    RateLimited(String),
    /// An element the adapter needs is not on the page: the selectors need an update.
    #[error("no element for role {0} on the page (the page changed: selectors need an update)")]
    SelectorMissing(&'static str),
    /// The answer did not complete before the deadline.
    #[error("the answer did not complete within {0:?}")]
    Timeout(Duration),
    /// The answer completed with no text.
    #[error("the answer is empty")]
    EmptyAnswer,
    /// The assistant showed an error instead of (or in the middle of) the answer.
    #[error("the assistant failed: {0}")]
    Assistant(String),
    /// The browser or WebDriver failed.
    #[error("browser: {0}")]
    Browser(#[from] WebDriverError),
}

impl AskError {
    /// The failure class, as named in logs, evidence files and release reasons.
    pub fn class(&self) -> &'static str {
        match self {
            AskError::LoggedOut => "logged-out",
            AskError::Challenge(_) => "challenge",
            AskError::RateLimited(_) => "rate-limited",
            AskError::SelectorMissing(_) => "selector-missing",
            AskError::Timeout(_) => "timeout",
            AskError::EmptyAnswer => "empty-answer",
            AskError::Assistant(_) => "assistant-error",
            AskError::Browser(_) => "browser",
        }
    }

    /// Whether the browser must be replaced before the next attempt.
    pub fn browser_broken(&self) -> bool {
        match self {
            AskError::Browser(error) => crate::browser::is_fatal(error),
            _ => false,
        }
    }
}

/// How to ask one assistant.
pub trait Adapter: Send + Sync {
    /// Lowercase assistant id, e.g. `chatgpt`: the manifest's.
    fn assistant(&self) -> &str {
        &self.manifest().assistant
    }

    /// The origin whose cookies and localStorage a session needs, e.g. `https://chatgpt.com`.
    fn origin(&self) -> &str;

    /// The selector manifest in use (its version and fingerprint go with every answer).
    fn manifest(&self) -> &Manifest;

    /// Asks `prompt` in a new conversation and waits for the complete answer.
    fn ask(&self, driver: &WebDriver, prompt: &str) -> impl Future<Output = Result<Captured, AskError>> + Send;
}

/// Any of the bot's adapters, chosen by assistant id at start.
#[derive(Debug, Clone)]
pub enum AnyAdapter {
    /// chatgpt.com
    ChatGpt(ChatGpt),
    /// claude.ai
    Claude(Claude),
    /// perplexity.ai
    Perplexity(Perplexity),
    /// google.com search with its AI Overview
    GoogleAiOverview(GoogleAiOverview),
}

impl AnyAdapter {
    /// The adapter for `assistant` (lowercase id), its manifest from `adapters_dir` when that
    /// holds `<assistant>.toml`, the built-in one otherwise; `origin` replaces the site's origin
    /// (e.g. the simulator's).
    pub fn load(
        assistant: &str,
        adapters_dir: Option<&std::path::Path>,
        origin: Option<&str>,
    ) -> Result<AnyAdapter, ManifestError> {
        let manifest = Manifest::load(assistant, adapters_dir)?;
        Ok(match assistant {
            "chatgpt" => {
                manifest.require(ChatGpt::ROLES)?;
                AnyAdapter::ChatGpt(ChatGpt::new(manifest, origin))
            }
            "claude" => {
                manifest.require(Claude::ROLES)?;
                AnyAdapter::Claude(Claude::new(manifest, origin))
            }
            "perplexity" => {
                manifest.require(Perplexity::ROLES)?;
                AnyAdapter::Perplexity(Perplexity::new(manifest, origin))
            }
            "google-ai-overview" => {
                manifest.require(GoogleAiOverview::ROLES)?;
                AnyAdapter::GoogleAiOverview(GoogleAiOverview::new(manifest, origin))
            }
            other => return Err(ManifestError::Unknown(other.to_owned())),
        })
    }
}

impl Adapter for AnyAdapter {
    fn origin(&self) -> &str {
        match self {
            AnyAdapter::ChatGpt(a) => a.origin(),
            AnyAdapter::Claude(a) => a.origin(),
            AnyAdapter::Perplexity(a) => a.origin(),
            AnyAdapter::GoogleAiOverview(a) => a.origin(),
        }
    }

    fn manifest(&self) -> &Manifest {
        match self {
            AnyAdapter::ChatGpt(a) => a.manifest(),
            AnyAdapter::Claude(a) => a.manifest(),
            AnyAdapter::Perplexity(a) => a.manifest(),
            AnyAdapter::GoogleAiOverview(a) => a.manifest(),
        }
    }

    async fn ask(&self, driver: &WebDriver, prompt: &str) -> Result<Captured, AskError> {
        match self {
            AnyAdapter::ChatGpt(a) => a.ask(driver, prompt).await,
            AnyAdapter::Claude(a) => a.ask(driver, prompt).await,
            AnyAdapter::Perplexity(a) => a.ask(driver, prompt).await,
            AnyAdapter::GoogleAiOverview(a) => a.ask(driver, prompt).await,
        }
    }
}
