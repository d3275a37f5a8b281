//! Claude (claude.ai, or a look-alike at `--assistant-url`).
//!
//! The end of an answer is read from several signals, never from a fixed sleep: the message
//! container's `data-is-streaming` attribute has flipped from "true" to "false" (the site's own
//! completion signal), the stop button is gone, and the answer's HTML has not changed for the
//! settle window. The stream pauses mid-way (and while the model thinks) for longer than a
//! second, so "text unchanged" on its own would cut answers in half.
//!
//! Extended-thinking blocks stream before the answer inside the same message and are left out
//! of the captured text, markdown and HTML. A web search shows a search block whose results
//! list (opened on demand) gives the page titles and the sources only listed, after the ones
//! cited inline.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Deserialize;
use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;

use super::{Adapter, AnswerKind, AskError, Captured, Citation, Manifest};
use crate::markdown::html_to_markdown;
use aap_proto::urls::{clean_url, domain_of};

const PAGE_JS: &str = include_str!("claude.js");

/// Consecutive failed page probes tolerated while the page navigates (a script cannot run
/// during a navigation).
const MAX_PROBE_FAILURES: u32 = 50;

/// The attribute claude.ai flips from "true" to "false" when a message is complete.
const DEFAULT_STREAMING_ATTRIBUTE: &str = "data-is-streaming";

/// The Claude adapter, driven by its [`Manifest`].
#[derive(Debug, Clone)]
pub struct Claude {
    manifest: Manifest,
    origin: String,
    streaming_attributes: Vec<String>,
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

#[derive(Debug, Deserialize)]
struct Link {
    href: String,
    text: String,
}

#[derive(Debug, Deserialize)]
struct Source {
    href: String,
    title: String,
}

impl Claude {
    /// The selector roles this adapter needs in its manifest.
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
        let origin = origin.unwrap_or(&manifest.base_url).trim_end_matches('/').to_owned();
        let mut streaming_attributes: Vec<String> = manifest
            .options
            .get("streaming_attributes")
            .and_then(toml::Value::as_array)
            .map(|names| names.iter().filter_map(toml::Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        if streaming_attributes.is_empty() {
            streaming_attributes.push(DEFAULT_STREAMING_ATTRIBUTE.to_owned());
        }
        Claude { manifest, origin, streaming_attributes }
    }

    /// How long a missing element may take to show once the page is loaded.
    fn missing_grace(&self) -> Duration {
        self.manifest.option_ms("missing_grace_ms", 3000)
    }

    async fn run(&self, driver: &WebDriver, mode: &str) -> WebDriverResult<ScriptRet> {
        let args =
            vec![serde_json::json!(mode), self.manifest.selectors_json(), serde_json::json!(self.streaming_attributes)];
        driver.execute(PAGE_JS, args).await
    }

    async fn probe(&self, driver: &WebDriver) -> WebDriverResult<Probe> {
        self.run(driver, "probe").await?.convert::<Probe>()
    }

    /// The element the page script returned, or `None` for `null`.
    async fn element(&self, driver: &WebDriver, mode: &str) -> WebDriverResult<Option<WebElement>> {
        let ret = self.run(driver, mode).await?;
        if ret.json().is_null() {
            return Ok(None);
        }
        ret.element().map(Some)
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
        let url = format!("{}{}", self.origin, self.manifest.new_chat_path);
        driver.goto(url.as_str()).await?;
        let timing = &self.manifest.timing;
        let deadline = Instant::now() + timing.page_load();
        let mut ready_since: Option<Instant> = None;
        let mut failures = 0;
        loop {
            match self.probe(driver).await {
                Ok(probe) => {
                    failures = 0;
                    if let Some(challenge) = self.challenge_of(&probe) {
                        return Err(challenge);
                    }
                    if probe.composer {
                        return Ok(());
                    }
                    if probe.login_wall {
                        return Err(AskError::LoggedOut);
                    }
                    if probe.ready {
                        let since = *ready_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= self.missing_grace() {
                            return Err(AskError::SelectorMissing("composer"));
                        }
                    }
                }
                Err(error) => tolerate(error, &mut failures)?,
            }
            if Instant::now() >= deadline {
                return Err(AskError::SelectorMissing("composer"));
            }
            tokio::time::sleep(timing.poll()).await;
        }
    }

    /// Types the prompt into the composer. New lines become Shift+Enter, which starts a new
    /// line in the composer instead of sending.
    async fn type_prompt(&self, driver: &WebDriver, prompt: &str) -> Result<(), AskError> {
        let composer = self.element(driver, "composer").await?.ok_or(AskError::SelectorMissing("composer"))?;
        composer.click().await?;
        let mut typing = TypingData::from(String::new());
        for (index, line) in prompt.trim().lines().enumerate() {
            if index > 0 {
                // Null releases Shift so the next line is typed as written.
                typing = typing + Key::Shift + Key::Enter + Key::Null;
            }
            typing = typing + line;
        }
        composer.send_keys(typing).await?;
        let typed = self.run(driver, "composer_text").await?.convert::<String>().unwrap_or_default();
        if typed.trim().is_empty() {
            return Err(AskError::SelectorMissing("composer"));
        }
        Ok(())
    }

    /// Clicks send once it is enabled; Enter in the composer when no send button shows up.
    async fn send(&self, driver: &WebDriver) -> Result<(), AskError> {
        let deadline = Instant::now() + self.manifest.option_ms("send_wait_ms", 5000);
        loop {
            if let Some(button) = self.element(driver, "send").await? {
                match button.click().await {
                    Ok(()) => return Ok(()),
                    // Re-rendered between lookup and click: look it up again.
                    Err(error) if matches!(error.as_inner(), WebDriverErrorInner::StaleElementReference(_)) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            if Instant::now() >= deadline {
                tracing::warn!("no enabled send button; pressing enter in the composer");
                let composer = self.element(driver, "composer").await?.ok_or(AskError::SelectorMissing("composer"))?;
                composer.send_keys(Key::Enter).await?;
                return Ok(());
            }
            tokio::time::sleep(self.manifest.timing.poll()).await;
        }
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
        let mut ttft = None;
        let mut signature = String::new();
        let mut stable_since = Instant::now();
        // When the stop button showed without a message container the page could be found.
        let mut orphan_stop_since: Option<Instant> = None;
        let mut failures = 0;
        loop {
            let probe = match self.probe(driver).await {
                Ok(probe) => {
                    failures = 0;
                    Some(probe)
                }
                Err(error) => {
                    tolerate(error, &mut failures)?;
                    None
                }
            };
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
                        if last.signature != signature {
                            signature.clone_from(&last.signature);
                            stable_since = now;
                        }
                        if ttft.is_none() && last.text_len > 0 {
                            ttft = Some(now.duration_since(sent_at));
                        }
                        if !probe.stop
                            && !last.streaming()
                            && let Some(error) = last.error.as_deref().filter(|e| !e.is_empty())
                        {
                            return Err(self.classify_error(error));
                        }
                        let settled = now.duration_since(stable_since) >= timing.settle();
                        if last.says_done() && !probe.stop && settled {
                            if last.text_len == 0 {
                                return Err(AskError::EmptyAnswer);
                            }
                            return Ok(ttft);
                        }
                    }
                    None => {
                        if let Some(error) = probe.page_error.as_deref().filter(|e| !e.is_empty())
                            && !probe.stop
                        {
                            return Err(self.classify_error(error));
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

    fn classify_error(&self, text: &str) -> AskError {
        if self.manifest.is_rate_limit(text) {
            AskError::RateLimited(text.to_owned())
        } else {
            AskError::Assistant(text.to_owned())
        }
    }

    /// The last answer's search results (`[{href, title}]`), opening the search block when its
    /// list is not rendered yet. Best effort: without the list, citations keep their link text
    /// and no listed-only source is known.
    async fn search_results(&self, driver: &WebDriver) -> Vec<Source> {
        let read =
            async |driver: &WebDriver| match self.run(driver, "sources").await.and_then(|r| r.convert::<Vec<Source>>())
            {
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
        match self.element(driver, "search_toggle").await {
            Ok(Some(toggle)) => {
                if let Err(error) = toggle.click().await {
                    tracing::debug!(%error, "cannot open the search block");
                    return Vec::new();
                }
            }
            Ok(None) => return Vec::new(),
            Err(error) => {
                tracing::debug!(%error, "no search block toggle");
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
    fn assistant(&self) -> &str {
        &self.manifest.assistant
    }

    fn origin(&self) -> &str {
        &self.origin
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    async fn ask(&self, driver: &WebDriver, prompt: &str) -> Result<Captured, AskError> {
        self.open_new_chat(driver).await?;
        let before = self.probe(driver).await?.messages;
        self.type_prompt(driver, prompt).await?;
        let sent_at = Instant::now();
        self.send(driver).await?;
        let ttft = self.wait_for_answer(driver, before, sent_at).await?;
        let total = sent_at.elapsed();

        let extracted = self.run(driver, "extract").await?;
        if extracted.json().is_null() {
            return Err(AskError::SelectorMissing("answer_markdown"));
        }
        let extracted: Extracted = extracted.convert()?;
        let response_text = tidy_text(&extracted.text);
        if response_text.is_empty() {
            return Err(AskError::EmptyAnswer);
        }
        let sources = if extracted.search { self.search_results(driver).await } else { Vec::new() };
        let citations = citations(&extracted.links, &sources);
        Ok(Captured {
            response_text,
            response_markdown: html_to_markdown(&extracted.html),
            html: extracted.html,
            // A search block, or sources cited inline, both show that a web search ran; a
            // complete answer with neither ran without one.
            web_search: Some(extracted.search || !citations.is_empty()),
            citations,
            model: extracted.model.map(|model| collapse(&model)).filter(|model| !model.is_empty()),
            kind: AnswerKind::Text,
            ttft,
            total,
        })
    }
}

/// A probe failure is expected while the page navigates; too many in a row, or a dead
/// browser, end the attempt.
fn tolerate(error: WebDriverError, failures: &mut u32) -> Result<(), AskError> {
    *failures += 1;
    if crate::browser::is_fatal(&error) || *failures > MAX_PROBE_FAILURES {
        return Err(AskError::Browser(error));
    }
    tracing::debug!(%error, "page probe failed; retrying");
    Ok(())
}

/// Inline citations in order of first appearance, then the search results only listed; each
/// clean URL once, numbered from 1. Titles come from the search results where listed.
fn citations(links: &[Link], sources: &[Source]) -> Vec<Citation> {
    let mut titles: HashMap<String, String> = HashMap::new();
    for source in sources {
        let title = collapse(&source.title);
        if !title.is_empty() {
            titles.entry(clean_url(&source.href)).or_insert(title);
        }
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut push = |href: &str, text: &str, inline: bool, out: &mut Vec<Citation>| {
        let url = clean_url(href);
        if url.is_empty() || !url.starts_with("http") || !seen.insert(url.clone()) {
            return;
        }
        let domain = domain_of(&url);
        let title = titles.get(&url).cloned().unwrap_or_else(|| {
            let text = collapse(text);
            if text.is_empty() { domain.clone() } else { text }
        });
        out.push(Citation { url, title, domain, position: out.len() as u32 + 1, inline });
    };
    for link in links {
        push(&link.href, &link.text, true, &mut out);
    }
    for source in sources {
        push(&source.href, &source.title, false, &mut out);
    }
    out
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// innerText with trailing spaces, blank-line runs and the edges trimmed.
fn tidy_text(text: &str) -> String {
    let mut out = Vec::new();
    let mut blank = false;
    for line in text.replace('\u{a0}', " ").lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push(String::new());
            blank = false;
        }
        out.push(line.to_owned());
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(href: &str, text: &str) -> Link {
        Link { href: href.into(), text: text.into() }
    }

    fn source(href: &str, title: &str) -> Source {
        Source { href: href.into(), title: title.into() }
    }

    #[test]
    fn inline_citations_come_first_then_listed_only_sources() {
        let links = vec![
            link("https://www.rtings.com/b?utm_source=claude.ai", "rtings"),
            link("https://en.wikipedia.org/wiki/A", "wikipedia"),
            link("https://www.rtings.com/b", "rtings"),
        ];
        let sources = vec![
            source("https://www.bbc.com/news/x", " What we know - BBC "),
            source("https://en.wikipedia.org/wiki/A", "A - Wikipedia"),
            source("https://www.rtings.com/b", "Best B - RTINGS"),
            source("javascript:void(0)", "nothing"),
        ];
        let got = citations(&links, &sources);
        let summary: Vec<(&str, &str, &str, u32, bool)> =
            got.iter().map(|c| (c.url.as_str(), c.title.as_str(), c.domain.as_str(), c.position, c.inline)).collect();
        assert_eq!(
            summary,
            vec![
                ("https://www.rtings.com/b", "Best B - RTINGS", "rtings.com", 1, true),
                ("https://en.wikipedia.org/wiki/A", "A - Wikipedia", "en.wikipedia.org", 2, true),
                ("https://www.bbc.com/news/x", "What we know - BBC", "bbc.com", 3, false),
            ]
        );
    }

    #[test]
    fn titles_fall_back_to_link_text_then_domain() {
        let got = citations(&[link("https://example.com/a", " Example "), link("https://example.org/b", "")], &[]);
        assert_eq!(got[0].title, "Example");
        assert_eq!(got[1].title, "example.org");
    }

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

    #[test]
    fn text_keeps_paragraph_breaks_only() {
        assert_eq!(tidy_text("\n\nHello  \n\n\n\nworld\u{a0}\nagain\n\n"), "Hello\n\nworld\nagain");
    }
}
