//! Adapters: how to ask one assistant in a browser and read its answer back.
//!
//! An adapter only knows the assistant's page. Sessions, retries and task bookkeeping live in the
//! worker; the [`AskError`] class tells the worker what to do next (another session, another
//! attempt, a new browser).

mod canvas;
mod chatgpt;
mod claude;
mod common;
mod google_ai_overview;
mod interrupt;
mod manifest;
mod perplexity;
pub mod stream;

use std::future::Future;
use std::time::Duration;

use thirtyfour::WebDriver;
use thirtyfour::error::{WebDriverError, WebDriverResult};
use tokio::sync::watch;

pub use chatgpt::ChatGpt;
pub use claude::Claude;
pub use google_ai_overview::GoogleAiOverview;
pub(crate) use interrupt::answer_js_dialogs;
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
    /// Where the bot found it: the page, the assistant's response stream, or both.
    pub found_in: FoundIn,
}

/// Where a source was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FoundIn {
    /// Only in the rendered page.
    #[default]
    Page,
    /// Only in the assistant's own response stream.
    Stream,
    /// In the page and in the stream alike.
    Both,
}

/// A product the assistant showed with its answer (a shopping card).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Product {
    /// The product's name as shown.
    pub name: String,
    /// Where the card links to, cleaned; empty when it links nowhere.
    pub url: String,
    /// The price as shown, currency included; empty when none.
    pub price: String,
    /// The merchant or brand shown with it; empty when none.
    pub merchant: String,
}

/// How an answer was read: what ended it, what the page lacked, and what did not add up.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reading {
    /// The independent signals that together said the answer was complete (`stop-gone`,
    /// `action-bar`, `stream-done`, `streaming-false`, `quiet-long`, ...), in a fixed order.
    pub finish_signals: Vec<String>,
    /// Manifest roles looked for and not found (the answer was read without them).
    pub missing_roles: Vec<String>,
    /// No answer element matched: the text is the assistant message's, less thinking blocks and
    /// controls.
    pub read_by_fallback: bool,
    /// Where the page and the response stream disagreed about the sources, said in a line;
    /// `None` when they agree or there was no stream to compare with.
    pub disagreement: Option<String>,
    /// The assistant stopped the answer at its own length limit and offered to go on (its
    /// stream's stop reason, or the page's notice): the text is all the page showed.
    pub cut_short: bool,
    /// The site answered with another model than the account's plan answers with, because the
    /// account used up the plan's limit for that model. The text is read whole (no confidence
    /// lost); the account rests until the limit lifts.
    pub model_fallback: Option<Fallback>,
}

/// The site's word that it answered with another model than the plan's, its limit used up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fallback {
    /// What the site said: the page's notice ("You've hit the Plus plan limit for GPT-5.
    /// Responses will use another model until your limit resets after 4:04 PM."), or what its
    /// stream named.
    pub said: String,
    /// When the plan's model is back, when the stream says (`model_limits[].resets_after`); else
    /// read from `said` as a rate limit's words are ([`crate::limit_reset`]).
    pub lifts_at: Option<std::time::SystemTime>,
}

impl Reading {
    /// Notes `role` as missing (once).
    pub fn missing(&mut self, role: &str) {
        if !self.missing_roles.iter().any(|r| r == role) {
            tracing::warn!(role, "no element for an optional role; reading the answer without it");
            self.missing_roles.push(role.to_owned());
        }
    }

    /// How sure the bot is that it read the whole answer and its sources, in [0.1, 1]: 1 when
    /// nothing was missing, 0.1 less per missing role, 0.3 less for a fallback read, 0.2 less
    /// when page and stream disagree, 0.3 less for an answer the assistant cut short.
    pub fn confidence(&self) -> f32 {
        let mut confidence = 1.0 - 0.1 * self.missing_roles.len() as f32;
        if self.read_by_fallback {
            confidence -= 0.3;
        }
        if self.cut_short {
            confidence -= 0.3;
        }
        if self.disagreement.is_some() {
            confidence -= 0.2;
        }
        confidence.clamp(0.1, 1.0)
    }
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
    /// How the answer was read (finish signals, missing roles, fallback, disagreement).
    pub reading: Reading,
    /// The web searches the assistant ran, in order, from its response stream.
    pub search_queries: Vec<String>,
    /// Products the assistant showed, in order.
    pub products: Vec<Product>,
}

/// Where an adapter puts the answer's text so far while the assistant types, for the worker to
/// report (live partial answers). Only the latest text is kept and nothing waits on it, so the
/// wait for the answer never slows down for it; [`Typing::none`] drops it.
#[derive(Debug, Clone, Default)]
pub struct Typing {
    latest: Option<watch::Sender<String>>,
}

impl Typing {
    /// Text goes nowhere.
    pub fn none() -> Typing {
        Typing::default()
    }

    /// Text goes to the receiver, which sees each change (the latest when it looks).
    pub fn channel() -> (Typing, watch::Receiver<String>) {
        let (tx, rx) = watch::channel(String::new());
        (Typing { latest: Some(tx) }, rx)
    }

    /// Takes in the answer's text as the page shows it now; blank text and control characters
    /// (other than tab and new lines, which the platform refuses) are left out.
    pub fn saw(&self, text: &str) {
        let Some(latest) = &self.latest else { return };
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let keep = |c: &char| !c.is_control() || matches!(c, '\t' | '\n' | '\r');
        latest.send_if_modified(|now| {
            if now.chars().eq(text.chars().filter(keep)) {
                return false;
            }
            *now = text.chars().filter(keep).collect();
            true
        });
    }
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
    /// An element the adapter cannot do without (composer, send, the answer) is not on the page:
    /// the selectors need an update. Optional roles never fail an answer ([`Reading::missing`]).
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
    /// The assistant does not take the prompt as it is: longer than its box or its message limit
    /// (the manifest's known limit, checked before anything is opened, or the site's own
    /// "too long" error, by the manifest's `prompt_refused_patterns`), or it declined to answer
    /// it under its usage policy (Claude's stop reason `refusal`, or its page saying so).
    #[error("the assistant does not take the prompt: {0}")]
    PromptRefused(String),
    /// The browser or WebDriver failed (named in one line, without the driver's stack trace;
    /// the reason's class, "browser", says what failed).
    #[error("{}", crate::browser::brief(.0))]
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
            AskError::PromptRefused(_) => "prompt-refused",
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

/// What a page shows, as a remote login or a capture follows the operator's login: the adapter's
/// own probe (the one that decides whether a bot can ask), without navigating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageState {
    /// A login wall or form, or a page of another site the login passes through.
    Login,
    /// The composer, no login wall, no challenge: a session worth storing.
    LoggedIn,
    /// A bot challenge in place of the site.
    Challenge,
    /// None of these yet.
    Loading,
}

impl PageState {
    /// The name the RemoteLogin contract uses: `login`, `logged-in`, `challenge`, `loading`.
    pub fn name(self) -> &'static str {
        match self {
            PageState::Login => "login",
            PageState::LoggedIn => "logged-in",
            PageState::Challenge => "challenge",
            PageState::Loading => "loading",
        }
    }
}

/// What an adapter's look on the way to the composer says about a login.
fn page_state(arrival: &common::Arrival) -> PageState {
    {
        match arrival {
            common::Arrival::Composer => PageState::LoggedIn,
            common::Arrival::Blocked(AskError::LoggedOut) => PageState::Login,
            common::Arrival::Blocked(AskError::Challenge(_)) => PageState::Challenge,
            common::Arrival::Blocked(_) | common::Arrival::Waiting { .. } => PageState::Loading,
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

    /// What the current page shows, by the same probe that opens a conversation; never
    /// navigates. Only meaningful on the assistant's own origin ([`AnyAdapter::login_state`]
    /// checks that).
    fn login_state(&self, driver: &WebDriver) -> impl Future<Output = WebDriverResult<PageState>> + Send;

    /// Why the assistant would not take `prompt` as it is, known before anything is opened: a
    /// prompt with nothing to type, or longer than the manifest's `max_prompt_chars` (no limit
    /// unless set; Google's search box has its own, [`GoogleAiOverview`]). `None` when it may be
    /// asked. [`AnyAdapter`] checks it before every ask, the worker before it leases a session.
    fn refuses(&self, prompt: &str) -> Option<AskError> {
        let limit = self.manifest().option_u64("max_prompt_chars", 0);
        common::nothing_to_type(prompt)
            .or_else(|| common::over_limit(prompt, limit, "the site", common::Counted::Chars))
    }

    /// Asks `prompt` in a new conversation and waits for the complete answer; while the
    /// assistant types, its text so far goes to `typing`.
    fn ask_typing(
        &self,
        driver: &WebDriver,
        prompt: &str,
        typing: &Typing,
    ) -> impl Future<Output = Result<Captured, AskError>> + Send;

    /// Asks `prompt` in a new conversation and waits for the complete answer.
    fn ask(&self, driver: &WebDriver, prompt: &str) -> impl Future<Output = Result<Captured, AskError>> + Send {
        async move { self.ask_typing(driver, prompt, &Typing::none()).await }
    }
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
    /// Starts new conversations at the manifest's `new_chat_path` even when it has a
    /// `private_chat_path`: the site keeps them in the account's history, its memory and its
    /// training (`--keep-history`).
    pub fn keep_history(&mut self) {
        let manifest = match self {
            AnyAdapter::ChatGpt(adapter) => &mut adapter.manifest,
            AnyAdapter::Claude(adapter) => &mut adapter.manifest,
            AnyAdapter::Perplexity(adapter) => &mut adapter.manifest,
            AnyAdapter::GoogleAiOverview(adapter) => &mut adapter.manifest,
        };
        manifest.private_chat_path = None;
    }

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
                manifest.require(ChatGpt::REQUIRED)?;
                AnyAdapter::ChatGpt(ChatGpt::new(manifest, origin))
            }
            "claude" => {
                manifest.require(Claude::REQUIRED)?;
                AnyAdapter::Claude(Claude::new(manifest, origin))
            }
            "perplexity" => {
                manifest.require(Perplexity::REQUIRED)?;
                AnyAdapter::Perplexity(Perplexity::new(manifest, origin))
            }
            "google-ai-overview" => {
                manifest.require(GoogleAiOverview::REQUIRED)?;
                AnyAdapter::GoogleAiOverview(GoogleAiOverview::new(manifest, origin))
            }
            other => return Err(ManifestError::Unknown(other.to_owned())),
        })
    }

    /// The login page: the manifest's `login_url` while the adapter runs against the real
    /// site (`base_url`), otherwise `login_path` on the origin in use (e.g. the simulator's).
    pub fn login_url(&self) -> String {
        let manifest = self.manifest();
        let real_site = self.origin() == manifest.base_url.trim_end_matches('/');
        match &manifest.login_url {
            Some(url) if real_site => url.clone(),
            _ => format!("{}{}", self.origin(), manifest.login_path),
        }
    }

    /// Whether `url` is on the assistant's own origin (scheme, host and port), where the probe
    /// counts; a login passes through other sites (auth.openai.com, accounts.google.com).
    pub fn is_own_origin(&self, url: &str) -> bool {
        let own = url::Url::parse(self.origin()).map(|own| own.origin());
        matches!((url::Url::parse(url).map(|url| url.origin()), own), (Ok(page), Ok(own)) if page == own)
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

    /// The probe's view of the current page, [`PageState::Login`] on any other origin than the
    /// assistant's (the login's pages on other domains).
    async fn login_state(&self, driver: &WebDriver) -> WebDriverResult<PageState> {
        let url = interrupt::current_url(driver, &self.manifest().assistant).await?;
        if !self.is_own_origin(url.as_str()) {
            return Ok(PageState::Login);
        }
        match self {
            AnyAdapter::ChatGpt(a) => a.login_state(driver).await,
            AnyAdapter::Claude(a) => a.login_state(driver).await,
            AnyAdapter::Perplexity(a) => a.login_state(driver).await,
            AnyAdapter::GoogleAiOverview(a) => a.login_state(driver).await,
        }
    }

    fn refuses(&self, prompt: &str) -> Option<AskError> {
        match self {
            AnyAdapter::ChatGpt(a) => a.refuses(prompt),
            AnyAdapter::Claude(a) => a.refuses(prompt),
            AnyAdapter::Perplexity(a) => a.refuses(prompt),
            AnyAdapter::GoogleAiOverview(a) => a.refuses(prompt),
        }
    }

    /// Refuses at once a prompt the assistant would not take ([`Adapter::refuses`]), before any
    /// page opens; asks the site's adapter otherwise.
    async fn ask_typing(&self, driver: &WebDriver, prompt: &str, typing: &Typing) -> Result<Captured, AskError> {
        if let Some(refused) = self.refuses(prompt) {
            return Err(refused);
        }
        match self {
            AnyAdapter::ChatGpt(a) => a.ask_typing(driver, prompt, typing).await,
            AnyAdapter::Claude(a) => a.ask_typing(driver, prompt, typing).await,
            AnyAdapter::Perplexity(a) => a.ask_typing(driver, prompt, typing).await,
            AnyAdapter::GoogleAiOverview(a) => a.ask_typing(driver, prompt, typing).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_drops_for_each_doubt_and_stays_in_range() {
        let whole = Reading::default();
        assert!((whole.confidence() - 1.0).abs() < 1e-6);
        let cut = Reading { cut_short: true, ..Reading::default() };
        assert!((cut.confidence() - 0.7).abs() < 1e-6);
        let mut worst = Reading { cut_short: true, read_by_fallback: true, ..Reading::default() };
        worst.missing("turn");
        worst.disagreement = Some("the page shows fewer sources".into());
        assert!((worst.confidence() - 0.1).abs() < 1e-6, "never below 0.1: {}", worst.confidence());
    }

    #[test]
    fn typing_keeps_the_latest_text_without_blank_reads_or_control_characters() {
        let (typing, mut typed) = Typing::channel();
        typing.saw("  \n ");
        assert!(!typed.has_changed().unwrap_or(true), "a blank read is no text");
        typing.saw(" The best\u{7} laptops\n\tare ");
        assert!(typed.has_changed().unwrap_or(false));
        assert_eq!(*typed.borrow_and_update(), "The best laptops\n\tare");
        typing.saw("The best laptops\n\tare");
        assert!(!typed.has_changed().unwrap_or(true), "the same text again is no change");
        typing.saw("The best laptops\n\tare light");
        assert_eq!(*typed.borrow_and_update(), "The best laptops\n\tare light");
        Typing::none().saw("goes nowhere");
    }
}
