//! Claude (claude.ai, or a look-alike at `--assistant-url`).
//!
//! The end of an answer is read from several signals, never from a fixed sleep: the message
//! container's `data-is-streaming` attribute has flipped from "true" to "false" (the site's own
//! completion signal), the stop button is gone, and the answer's HTML has not changed for the
//! settle window. The stream pauses mid-way (and while the model thinks) for longer than a
//! second, so "text unchanged" on its own would cut answers in half. A message that finishes by
//! these signals with no answer text is an empty answer ([`AskError::EmptyAnswer`]), said then
//! rather than at the deadline.
//!
//! Extended-thinking blocks stream before the answer inside the same message and are left out
//! of the captured text, markdown and HTML. A web search shows a search block whose results
//! list (opened on demand) gives the page titles and the sources only listed, after the ones
//! cited inline.

use std::time::{Duration, Instant};

use serde::Deserialize;
use thirtyfour::prelude::*;

use super::common::{self, Arrival, Link, PageScript, ProbeFailures, Progress, Source};
use super::{Adapter, AnswerKind, AskError, Captured, Manifest};
use crate::markdown::html_to_markdown;
use aap_proto::urls::clean_url;

const PAGE_JS: &str = concat!(include_str!("dom.js"), include_str!("claude.js"));

/// The attribute claude.ai flips from "true" to "false" when a message is complete.
const DEFAULT_STREAMING_ATTRIBUTE: &str = "data-is-streaming";

/// The Claude adapter, driven by its [`Manifest`].
#[derive(Debug, Clone)]
pub struct Claude {
    manifest: Manifest,
    origin: String,
    page: PageScript,
}

#[derive(Debug, Default, Deserialize)]
struct Probe {
    ready: bool,
    title: String,
    text: String,
    challenge: bool,
    composer: bool,
    login_wall: bool,
    stop: bool,
    send_enabled: bool,
    messages: usize,
    last: Option<LastMessage>,
    page_error: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct LastMessage {
    streaming: Option<String>,
    text_len: usize,
    signature: String,
    action_bar: bool,
    error: Option<String>,
}

impl LastMessage {
    /// Whether the page says the message is complete: the streaming attribute reads "false",
    /// or (when no container carries the attribute) the action bar is there.
    fn says_done(&self) -> bool {
        match self.streaming.as_deref() {
            Some(value) => value.eq_ignore_ascii_case("false"),
            None => self.action_bar,
        }
    }

    fn streaming(&self) -> bool {
        self.streaming.as_deref().is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }
}

#[derive(Debug, Deserialize)]
struct Extracted {
    html: String,
    text: String,
    links: Vec<Link>,
    model: Option<String>,
    search: bool,
}

impl Claude {
    /// The roles an answer cannot be read without: the composer, the send control and the assistant's message.
    /// The manifest must list them; every other role is optional and its absence only lowers
    /// the answer's confidence ([`super::Reading::missing`]).
    pub const REQUIRED: &'static [&'static str] = &["composer", "send_button", "message"];

    /// Every selector role this adapter reads from its manifest.
    pub const ROLES: &'static [&'static str] = &[
        "composer",
        "send_button",
        "stop_button",
        "login_wall",
        "challenge",
        "message",
        "turn",
        "answer_markdown",
        "thinking",
        "action_bar",
        "error",
        "citation_link",
        "citation_chip",
        "search_toggle",
        "sources_link",
        "sources_title",
        "model_selector",
    ];

    /// An adapter for the site at `origin` (the manifest's `base_url` when `None`).
    pub fn new(manifest: Manifest, origin: Option<&str>) -> Claude {
        let origin = common::origin(&manifest, origin);
        let mut streaming_attributes: Vec<String> = manifest
            .options
            .get("streaming_attributes")
            .and_then(toml::Value::as_array)
            .map(|names| names.iter().filter_map(toml::Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        if streaming_attributes.is_empty() {
            streaming_attributes.push(DEFAULT_STREAMING_ATTRIBUTE.to_owned());
        }
        // The script reads the attribute names as arguments[2].
        let page = PageScript::new(PAGE_JS, &manifest).with_arg(serde_json::json!(streaming_attributes));
        Claude { manifest, origin, page }
    }

    /// How long a missing element may take to show once the page is loaded.
    fn missing_grace(&self) -> Duration {
        self.manifest.option_ms("missing_grace_ms", 3000)
    }

    async fn probe(&self, driver: &WebDriver) -> WebDriverResult<Probe> {
        self.page.read(driver, "probe").await
    }

    /// A challenge page in place of the site, by its markup, or by its title or text when the
    /// site's composer is not there (a conversation title may well say "just a moment").
    fn challenge_of(&self, probe: &Probe) -> Option<AskError> {
        let by_words =
            !probe.composer && (self.manifest.is_challenge(&probe.title) || self.manifest.is_challenge(&probe.text));
        if probe.challenge || by_words {
            let title = if probe.title.trim().is_empty() { "bot challenge" } else { probe.title.trim() };
            return Some(AskError::Challenge(title.to_owned()));
        }
        None
    }

    /// Opens a new conversation and waits for the composer. The login page means the session
    /// is gone; a loaded page without a composer means the selectors need an update, which is
    /// said after a short grace instead of at the page-load deadline.
    async fn open_new_chat(&self, driver: &WebDriver) -> Result<(), AskError> {
        let look = move || async move {
            let probe = self.probe(driver).await?;
            Ok(if let Some(challenge) = self.challenge_of(&probe) {
                Arrival::Blocked(challenge)
            } else if probe.composer {
                Arrival::Composer
            } else if probe.login_wall {
                Arrival::Blocked(AskError::LoggedOut)
            } else {
                Arrival::Waiting { loaded: probe.ready }
            })
        };
        common::open(driver, &self.origin, &self.manifest, self.missing_grace(), look).await
    }

    /// Waits until the answer after `messages_before` is complete. Returns the time to the first
    /// answer text (thinking does not count).
    async fn wait_for_answer(
        &self,
        driver: &WebDriver,
        messages_before: usize,
        sent_at: Instant,
    ) -> Result<Option<Duration>, AskError> {
        let timing = &self.manifest.timing;
        let deadline = sent_at + timing.answer_deadline();
        let mut progress = Progress::new(sent_at);
        // When the stop button showed without a message container the page could be found.
        let mut orphan_stop_since: Option<Instant> = None;
        let mut failures = ProbeFailures::default();
        loop {
            let probe = failures.check(self.probe(driver).await)?;
            let now = Instant::now();
            if let Some(probe) = probe {
                if let Some(challenge) = self.challenge_of(&probe) {
                    return Err(challenge);
                }
                if probe.login_wall && !probe.composer {
                    return Err(AskError::LoggedOut);
                }
                let answer = probe.last.as_ref().filter(|_| probe.messages > messages_before);
                match answer {
                    Some(last) => {
                        orphan_stop_since = None;
                        progress.saw(&last.signature, last.text_len, now);
                        if !probe.stop
                            && !last.streaming()
                            && let Some(error) = last.error.as_deref().filter(|e| !e.is_empty())
                        {
                            return Err(common::classify(&self.manifest, error));
                        }
                        let settled = progress.quiet(now) >= timing.settle();
                        if last.says_done() && !probe.stop && settled {
                            if last.text_len == 0 {
                                return Err(AskError::EmptyAnswer);
                            }
                            return Ok(progress.ttft());
                        }
                    }
                    None => {
                        if let Some(error) = probe.page_error.as_deref().filter(|e| !e.is_empty())
                            && !probe.stop
                        {
                            return Err(common::classify(&self.manifest, error));
                        }
                        if probe.stop {
                            // Answering, but no message container matches: the page changed.
                            // claude.ai shows the container at once; the grace covers a slow start.
                            let since = *orphan_stop_since.get_or_insert(now);
                            if now.duration_since(since) >= self.manifest.option_ms("message_grace_ms", 10_000) {
                                return Err(AskError::SelectorMissing("message"));
                            }
                        } else if now.duration_since(sent_at) >= timing.first_turn() {
                            let role = if probe.send_enabled { "send_button" } else { "message" };
                            return Err(AskError::SelectorMissing(role));
                        }
                    }
                }
                if now >= deadline {
                    return Err(AskError::Timeout(timing.answer_deadline()));
                }
            } else if now >= deadline {
                return Err(AskError::Timeout(timing.answer_deadline()));
            }
            tokio::time::sleep(timing.poll()).await;
        }
    }

    /// The last answer's search results (`[{href, title}]`), opening the search block when its
    /// list is not rendered yet. Best effort: without the list, citations keep their link text
    /// and no listed-only source is known.
    async fn search_results(&self, driver: &WebDriver) -> Vec<Source> {
        let read = async |driver: &WebDriver| match self.page.read::<Vec<Source>>(driver, "sources").await {
            Ok(sources) => sources,
            Err(error) => {
                tracing::debug!(%error, "cannot read the search results");
                Vec::new()
            }
        };
        let sources: Vec<Source> = read(driver).await;
        if !sources.is_empty() {
            return sources;
        }
        match self.page.click(driver, "search_toggle").await {
            Ok(true) => {}
            Ok(false) => return Vec::new(),
            Err(error) => {
                tracing::debug!(%error, "cannot open the search block");
                return Vec::new();
            }
        }
        let deadline = Instant::now() + self.manifest.timing.sources_panel();
        loop {
            let sources = read(driver).await;
            if !sources.is_empty() || Instant::now() >= deadline {
                return sources;
            }
            tokio::time::sleep(self.manifest.timing.poll()).await;
        }
    }
}

impl Adapter for Claude {
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
        let send_wait = self.manifest.option_ms("send_wait_ms", 5000);
        self.page.send(driver, "send", send_wait, self.manifest.timing.poll()).await?;
        let ttft = self.wait_for_answer(driver, before, sent_at).await?;
        let total = sent_at.elapsed();

        let extracted: Extracted = self.page.extract(driver, "answer_markdown").await?;
        let response_text = common::answer_text(&extracted.text)?;
        let sources = if extracted.search { self.search_results(driver).await } else { Vec::new() };
        let citations = common::citations(&extracted.links, &sources, clean_url);
        Ok(Captured {
            response_text,
            response_markdown: html_to_markdown(&extracted.html),
            html: extracted.html,
            // A search block, or sources cited inline, both show that a web search ran; a
            // complete answer with neither ran without one.
            web_search: Some(extracted.search || !citations.is_empty()),
            citations,
            model: extracted.model.map(|model| common::collapse(&model)).filter(|model| !model.is_empty()),
            kind: AnswerKind::Text,
            ttft,
            total,
            reading: Default::default(),
            search_queries: Vec::new(),
            products: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streaming_attribute_decides_when_present() {
        let message = |streaming: Option<&str>, action_bar: bool| LastMessage {
            streaming: streaming.map(str::to_owned),
            action_bar,
            ..LastMessage::default()
        };
        assert!(message(Some("false"), false).says_done());
        assert!(!message(Some("true"), true).says_done());
        assert!(message(Some("true"), false).streaming());
        assert!(message(None, true).says_done());
        assert!(!message(None, false).says_done());
    }
}
