//! ChatGPT (chatgpt.com, or a look-alike at `--assistant-url`).
//!
//! The end of an answer is read from several signals at once, never from a fixed sleep: the stop
//! button is gone, no reasoning model is still thinking, the turn's action bar is present, and
//! the answer's HTML has not changed for the settle window. The stream pauses mid-way (and a
//! reasoning model thinks) for longer than a second, so "text unchanged" on its own would cut
//! answers in half. A turn that finishes by these signals with no text is an empty answer
//! ([`AskError::EmptyAnswer`]), said then rather than at the deadline.
//!
//! Site quirks handled here: the Sources panel (every source, cited ones first, the rest marked
//! as listed only), the "Answer now" button of reasoning models (never clicked), the A/B prompt
//! "Which response do you prefer?" (the first response is preferred and captured, never a mix),
//! whether a web search ran (from the "Searched N sites" line), the Cloudflare challenge, and a
//! missing composer on a loaded page (reported at once as a selector miss).

use std::time::{Duration, Instant};

use serde::Deserialize;
use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;

use super::common::{self, Arrival, Link, PageScript, ProbeFailures, Progress, Source};
use super::{Adapter, AnswerKind, AskError, Captured, Manifest};
use crate::markdown::html_to_markdown;
use aap_proto::urls::clean_url;

const PAGE_JS: &str = concat!(include_str!("dom.js"), include_str!("page.js"));

/// The ChatGPT adapter, driven by its [`Manifest`].
#[derive(Debug, Clone)]
pub struct ChatGpt {
    manifest: Manifest,
    origin: String,
    page: PageScript,
}

#[derive(Debug, Default, Deserialize)]
struct Probe {
    composer: bool,
    login_wall: bool,
    challenge: bool,
    title: String,
    ready: bool,
    stop: bool,
    thinking: bool,
    send_enabled: bool,
    messages: usize,
    last: Option<LastMessage>,
    page_error: Option<String>,
    ab: Option<Comparison>,
}

/// The A/B comparison in the answer's turn.
#[derive(Debug, Default, Deserialize)]
struct Comparison {
    /// The first response's "I prefer this response" is shown and enabled.
    prefer_ready: bool,
}

#[derive(Debug, Default, Deserialize)]
struct LastMessage {
    text_len: usize,
    signature: String,
    action_bar: bool,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Extracted {
    html: String,
    text: String,
    links: Vec<Link>,
    model: Option<String>,
    /// The text of the line that says a web search ran, when the turn shows one.
    search: Option<String>,
    /// The answer is still one side of an A/B comparison.
    comparison: bool,
}

impl ChatGpt {
    /// The roles an answer cannot be read without: the composer, the send control and the assistant's message (its answer element may be missing: read by fallback).
    /// The manifest must list them; every other role is optional and its absence only lowers
    /// the answer's confidence ([`super::Reading::missing`]).
    pub const REQUIRED: &'static [&'static str] = &["composer", "send_button", "assistant_message"];

    /// Every selector role this adapter reads from its manifest.
    pub const ROLES: &'static [&'static str] = &[
        "composer",
        "send_button",
        "stop_button",
        "login_wall",
        "assistant_message",
        "turn",
        "answer_markdown",
        "action_bar",
        "error",
        "citation_link",
        "citation_pill",
        "sources_button",
        "sources_link",
        "sources_title",
        "model_attribute",
        "challenge",
        "thinking",
        "answer_now",
        "search_indicator",
        "ab_comparison",
        "ab_response",
        "ab_prefer",
    ];

    /// An adapter for the site at `origin` (the manifest's `base_url` when `None`).
    pub fn new(manifest: Manifest, origin: Option<&str>) -> ChatGpt {
        let origin = common::origin(&manifest, origin);
        let page = PageScript::new(PAGE_JS, &manifest);
        ChatGpt { manifest, origin, page }
    }

    async fn probe(&self, driver: &WebDriver) -> WebDriverResult<Probe> {
        self.page.read(driver, "probe").await
    }

    /// Whether the probe shows a bot challenge: the challenge role, or a challenge title.
    fn challenged(&self, probe: &Probe) -> Option<AskError> {
        (probe.challenge || self.manifest.is_challenge(&probe.title)).then(|| {
            let title = if probe.title.trim().is_empty() { "bot challenge" } else { probe.title.trim() };
            AskError::Challenge(title.to_owned())
        })
    }

    /// Opens a new conversation and waits for the composer. A login wall means the session is
    /// gone, a challenge page that the client is flagged; a page that has loaded but shows none
    /// of these nor a composer within `missing_after_load_ms` has changed its markup.
    async fn open_new_chat(&self, driver: &WebDriver) -> Result<(), AskError> {
        let grace = self.manifest.option_ms("missing_after_load_ms", 4000);
        let look = move || async move {
            let probe = self.probe(driver).await?;
            Ok(if probe.composer {
                Arrival::Composer
            } else if let Some(challenge) = self.challenged(&probe) {
                Arrival::Blocked(challenge)
            } else if probe.login_wall {
                Arrival::Blocked(AskError::LoggedOut)
            } else {
                Arrival::Waiting { loaded: probe.ready }
            })
        };
        common::open(driver, &self.origin, &self.manifest, grace, look).await
    }

    /// Waits until the answer after `messages_before` is complete, preferring the first
    /// response of an A/B prompt on the way. Returns the time to the first text.
    async fn wait_for_answer(
        &self,
        driver: &WebDriver,
        messages_before: usize,
        sent_at: Instant,
    ) -> Result<Option<Duration>, AskError> {
        let timing = &self.manifest.timing;
        let deadline = sent_at + timing.answer_deadline();
        let prefer_retry = self.manifest.option_ms("prefer_retry_ms", 3000);
        let mut preferred_at: Option<Instant> = None;
        let mut progress = Progress::new(sent_at);
        let mut failures = ProbeFailures::default();
        loop {
            let probe = failures.check(self.probe(driver).await)?;
            let now = Instant::now();
            if let Some(probe) = probe {
                if let Some(challenge) = self.challenged(&probe) {
                    return Err(challenge);
                }
                if probe.login_wall && !probe.composer {
                    return Err(AskError::LoggedOut);
                }
                // Thinking counts as busy: a reasoning model shows nothing new for a while.
                let busy = probe.stop || probe.thinking;
                let answer = probe.last.as_ref().filter(|_| probe.messages > messages_before);
                match answer {
                    Some(last) => {
                        progress.saw(&last.signature, last.text_len, now);
                        if !busy && let Some(error) = last.error.as_deref().filter(|e| !e.is_empty()) {
                            return Err(common::classify(&self.manifest, error));
                        }
                        if let Some(comparison) = &probe.ab
                            && comparison.prefer_ready
                            && !busy
                            && preferred_at.is_none_or(|at| now.duration_since(at) >= prefer_retry)
                        {
                            // The chat waits for a choice: the first response is the one kept.
                            if self.prefer_first(driver).await? {
                                preferred_at = Some(Instant::now());
                            }
                        }
                        let settled = progress.quiet(now) >= timing.settle();
                        if !busy && probe.ab.is_none() && last.action_bar && settled {
                            if last.text_len == 0 {
                                return Err(AskError::EmptyAnswer);
                            }
                            return Ok(progress.ttft());
                        }
                    }
                    None => {
                        if let Some(error) = probe.page_error.as_deref()
                            && !busy
                            && self.manifest.is_rate_limit(error)
                        {
                            return Err(AskError::RateLimited(error.to_owned()));
                        }
                        if !busy && now.duration_since(sent_at) >= timing.first_turn() {
                            let role = if probe.send_enabled { "send_button" } else { "assistant_message" };
                            return Err(AskError::SelectorMissing(role));
                        }
                    }
                }
                if now >= deadline {
                    // Text done long ago and nothing busy, but no action bar: the action bar
                    // selector has drifted, which is worth saying instead of "timeout".
                    let quiet = progress.quiet(now) >= Duration::from_secs(5);
                    if !busy && quiet && answer.is_some_and(|last| last.text_len > 0) {
                        // Likewise a comparison that no click resolved: the prefer button drifted.
                        let role = if probe.ab.is_some() { "ab_prefer" } else { "action_bar" };
                        return Err(AskError::SelectorMissing(role));
                    }
                    return Err(AskError::Timeout(timing.answer_deadline()));
                }
            } else if now >= deadline {
                return Err(AskError::Timeout(timing.answer_deadline()));
            }
            tokio::time::sleep(timing.poll()).await;
        }
    }

    /// Clicks "I prefer this response" under the first response of an A/B prompt. False when
    /// the button went away or re-rendered before the click (the next probe decides again).
    async fn prefer_first(&self, driver: &WebDriver) -> Result<bool, AskError> {
        match self.page.click(driver, "ab_prefer").await {
            Ok(clicked) => {
                if clicked {
                    tracing::info!("the assistant asked which response is preferred; preferred the first");
                }
                Ok(clicked)
            }
            // Covered for a moment by something animating: the next probe decides again.
            Err(AskError::Browser(error))
                if matches!(error.as_inner(), WebDriverErrorInner::ElementClickIntercepted(_)) =>
            {
                tracing::debug!(%error, "the prefer click did not land");
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Every source the Sources panel lists, in its order (cited ones first, then the ones
    /// only listed). `None` when the turn has no Sources button; empty when the panel did not
    /// open in time (best effort: the inline citations stand on their own).
    async fn listed_sources(&self, driver: &WebDriver) -> Option<Vec<Source>> {
        let button = match self.page.element(driver, "sources_button").await {
            Ok(Some(button)) => button,
            Ok(None) => return None,
            Err(error) => {
                tracing::debug!(%error, "no sources button");
                return None;
            }
        };
        if let Err(error) = button.click().await {
            tracing::warn!(%error, "cannot open the sources panel");
            return Some(Vec::new());
        }
        let deadline = Instant::now() + self.manifest.timing.sources_panel();
        let mut previous = 0;
        loop {
            let sources = match self.page.read::<Vec<Source>>(driver, "sources").await {
                Ok(sources) => sources,
                Err(error) => {
                    tracing::debug!(%error, "cannot read the sources panel");
                    Vec::new()
                }
            };
            // Read it once it is there and has stopped growing between two probes.
            if !sources.is_empty() && sources.len() == previous {
                return Some(sources);
            }
            if Instant::now() >= deadline {
                if sources.is_empty() {
                    tracing::warn!("the sources panel showed no links in time");
                }
                return Some(sources);
            }
            previous = sources.len();
            tokio::time::sleep(self.manifest.timing.poll()).await;
        }
    }
}

impl Adapter for ChatGpt {
    fn origin(&self) -> &str {
        &self.origin
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    async fn ask(&self, driver: &WebDriver, prompt: &str) -> Result<Captured, AskError> {
        self.open_new_chat(driver).await?;
        let before = self.probe(driver).await?.messages;
        self.page.type_prompt(driver, prompt).await?;
        let sent_at = Instant::now();
        self.page.send(driver, "send", Duration::from_secs(5), self.manifest.timing.poll()).await?;
        let ttft = self.wait_for_answer(driver, before, sent_at).await?;
        let total = sent_at.elapsed();

        let extracted: Extracted = self.page.extract(driver, "answer_markdown").await?;
        if extracted.comparison {
            // Only reachable when the choice did not take: still the first response alone.
            tracing::warn!("the a/b comparison is still shown; capturing its first response");
        }
        let response_text = common::answer_text(&extracted.text)?;
        let listed = self.listed_sources(driver).await;
        let citations = common::citations(&extracted.links, listed.as_deref().unwrap_or_default(), clean_url);
        let web_search = web_search(extracted.search.as_deref(), !citations.is_empty() || listed.is_some());
        Ok(Captured {
            response_text,
            response_markdown: html_to_markdown(&extracted.html),
            html: extracted.html,
            citations,
            model: extracted.model.filter(|model| !model.is_empty()),
            web_search,
            kind: AnswerKind::Text,
            ttft,
            total,
            reading: Default::default(),
            search_queries: Vec::new(),
            products: Vec::new(),
        })
    }
}

/// Whether a web search ran, from what the page shows: the search line says so; no search line
/// and no sources at all says it did not; sources without a search line leave it open (the
/// line's selector may have drifted).
fn web_search(indicator: Option<&str>, has_sources: bool) -> Option<bool> {
    match indicator {
        Some(_) => Some(true),
        None if !has_sources => Some(false),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pill_that_is_its_own_link_becomes_a_markdown_citation() {
        let html = "<p>Fast. <span class=\"citation-wrapper\"><a data-testid=\"webpage-citation-pill\" \
                    href=\"https://www.wired.com/x?utm_source=chatgpt.com\"><span>wired.com</span></a></span></p>";
        assert_eq!(html_to_markdown(html).trim(), "Fast. ([wired.com](https://www.wired.com/x))");
    }

    #[test]
    fn web_search_is_read_only_from_what_the_page_shows() {
        assert_eq!(web_search(Some("Searched 6 sites"), true), Some(true));
        assert_eq!(web_search(None, false), Some(false));
        assert_eq!(web_search(None, true), None);
    }
}
