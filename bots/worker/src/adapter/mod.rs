//! Adapters: how to ask one assistant in a browser and read its answer back.
//!
//! An adapter only knows the assistant's page. Sessions, retries and task bookkeeping live in the
//! worker; the [`AskError`] class tells the worker what to do next (another session, another
//! attempt, a new browser).

mod chatgpt;
mod manifest;

use std::future::Future;
use std::time::Duration;

use thirtyfour::WebDriver;
use thirtyfour::error::WebDriverError;

pub use chatgpt::ChatGpt;
pub use manifest::{Manifest, ManifestError, Selectors, Timing};

/// One source the answer cites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Citation {
    /// The source's address without tracking parameters.
    pub url: String,
    /// The page title when the assistant lists it, otherwise the link text.
    pub title: String,
    /// Host of `url` without `www.`.
    pub domain: String,
    /// 1-based order of first appearance in the answer.
    pub position: u32,
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
    /// Sources in order of first appearance, each URL once.
    pub citations: Vec<Citation>,
    /// The model the page says answered, when it says.
    pub model: Option<String>,
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
    /// The assistant refused for too many messages: the account must cool down.
    #[error("the assistant rate limited the account: {0}")]
    RateLimited(String),
    /// An element the adapter needs is not on the page: the selectors need an update.
    #[error("no element for role {0} on the page")]
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
    /// Lowercase assistant id, e.g. `chatgpt`.
    fn assistant(&self) -> &str;

    /// The origin whose cookies and localStorage a session needs, e.g. `https://chatgpt.com`.
    fn origin(&self) -> &str;

    /// Asks `prompt` in a new conversation and waits for the complete answer.
    fn ask(&self, driver: &WebDriver, prompt: &str) -> impl Future<Output = Result<Captured, AskError>> + Send;
}
