//! ChatGPT (chatgpt.com, or a look-alike at `--assistant-url`).
//!
//! The end of an answer is read from several signals at once, never from a fixed sleep: the stop
//! button is gone, no reasoning model is still thinking, the turn's action bar is present, and
//! the answer's HTML has not changed for the settle window. The stream pauses mid-way (and a
//! reasoning model thinks) for longer than a second, so "text unchanged" on its own would cut
//! answers in half.
//!
//! Site quirks handled here: the Sources panel (every source, cited ones first, the rest marked
//! as listed only), the "Answer now" button of reasoning models (never clicked), the A/B prompt
//! "Which response do you prefer?" (the first response is preferred and captured, never a mix),
//! whether a web search ran (from the "Searched N sites" line), the Cloudflare challenge, and a
//! missing composer on a loaded page (reported at once as a selector miss).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::Deserialize;
use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;

use super::{Adapter, AnswerKind, AskError, Captured, Citation, Manifest};
use crate::markdown::html_to_markdown;
use aap_proto::urls::{clean_url, domain_of};

const PAGE_JS: &str = include_str!("page.js");

/// Consecutive failed page probes tolerated while the page navigates (a script cannot run
/// during a navigation).
const MAX_PROBE_FAILURES: u32 = 50;

/// The ChatGPT adapter, driven by its [`Manifest`].
#[derive(Debug, Clone)]
pub struct ChatGpt {
    manifest: Manifest,
    origin: String,
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

impl ChatGpt {
    /// The selector roles this adapter needs in its manifest.
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
        let origin = origin.unwrap_or(&manifest.base_url).trim_end_matches('/').to_owned();
        ChatGpt { manifest, origin }
    }

    async fn run(&self, driver: &WebDriver, mode: &str) -> WebDriverResult<ScriptRet> {
        driver.execute(PAGE_JS, vec![serde_json::json!(mode), self.manifest.selectors_json()]).await
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
        let url = format!("{}{}", self.origin, self.manifest.new_chat_path);
        driver.goto(url.as_str()).await?;
        let timing = &self.manifest.timing;
        let deadline = Instant::now() + timing.page_load();
        let grace = self.manifest.option_ms("missing_after_load_ms", 4000);
        let mut loaded_at = None;
        let mut failures = 0;
        loop {
            match self.probe(driver).await {
                Ok(probe) if probe.composer => return Ok(()),
                Ok(probe) => {
                    failures = 0;
                    if let Some(challenge) = self.challenged(&probe) {
                        return Err(challenge);
                    }
                    if probe.login_wall {
                        return Err(AskError::LoggedOut);
                    }
                    if probe.ready {
                        let since = *loaded_at.get_or_insert_with(Instant::now);
                        if since.elapsed() >= grace {
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
        let deadline = Instant::now() + Duration::from_secs(5);
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
        let mut ttft = None;
        let mut signature = String::new();
        let mut stable_since = Instant::now();
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
                        if last.signature != signature {
                            signature.clone_from(&last.signature);
                            stable_since = now;
                        }
                        if ttft.is_none() && last.text_len > 0 {
                            ttft = Some(now.duration_since(sent_at));
                        }
                        if !busy && let Some(error) = last.error.as_deref().filter(|e| !e.is_empty()) {
                            return Err(self.classify_error(error));
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
                        let settled = now.duration_since(stable_since) >= timing.settle();
                        if !busy && probe.ab.is_none() && last.action_bar && settled {
                            if last.text_len == 0 {
                                return Err(AskError::EmptyAnswer);
                            }
                            return Ok(ttft);
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
                    let quiet = now.duration_since(stable_since) >= Duration::from_secs(5);
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
        let Some(button) = self.element(driver, "ab_prefer").await? else {
            return Ok(false);
        };
        tracing::info!("the assistant asks which response is preferred; preferring the first");
        match button.click().await {
            Ok(()) => Ok(true),
            // Re-rendered, or covered for a moment by something animating: the next probe
            // decides again.
            Err(error)
                if matches!(
                    error.as_inner(),
                    WebDriverErrorInner::StaleElementReference(_) | WebDriverErrorInner::ElementClickIntercepted(_)
                ) =>
            {
                tracing::debug!(%error, "the prefer click did not land");
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }

    fn classify_error(&self, text: &str) -> AskError {
        if self.manifest.is_rate_limit(text) {
            AskError::RateLimited(text.to_owned())
        } else {
            AskError::Assistant(text.to_owned())
        }
    }

    /// Every source the Sources panel lists, in its order (cited ones first, then the ones
    /// only listed). `None` when the turn has no Sources button; empty when the panel did not
    /// open in time (best effort: the inline citations stand on their own).
    async fn listed_sources(&self, driver: &WebDriver) -> Option<Vec<Source>> {
        let button = match self.element(driver, "sources_button").await {
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
            let sources = match self.run(driver, "sources").await.and_then(|ret| ret.convert::<Vec<Source>>()) {
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
        if extracted.comparison {
            // Only reachable when the choice did not take: still the first response alone.
            tracing::warn!("the a/b comparison is still shown; capturing its first response");
        }
        let response_text = tidy_text(&extracted.text);
        if response_text.is_empty() {
            return Err(AskError::EmptyAnswer);
        }
        let listed = self.listed_sources(driver).await;
        let citations = citations(&extracted.links, listed.as_deref().unwrap_or_default());
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

/// Inline citations in reading order, then the sources only listed, each clean URL once. The
/// title is the one the Sources panel shows, else the link text, else the domain.
fn citations(links: &[Link], listed: &[Source]) -> Vec<Citation> {
    let mut titles = HashMap::new();
    for source in listed {
        let title = collapse(&source.title);
        if !title.is_empty() {
            titles.entry(clean_url(&source.href)).or_insert(title);
        }
    }
    let inline = links.iter().map(|link| (link.href.as_str(), link.text.as_str(), true));
    let only_listed = listed.iter().map(|source| (source.href.as_str(), "", false));
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (href, text, inline) in inline.chain(only_listed) {
        let url = clean_url(href);
        if url.is_empty() || !url.starts_with("http") || !seen.insert(url.clone()) {
            continue;
        }
        let domain = domain_of(&url);
        let title = titles.get(&url).cloned().unwrap_or_else(|| {
            let text = collapse(text);
            if text.is_empty() { domain.clone() } else { text }
        });
        out.push(Citation { url, title, domain, position: out.len() as u32 + 1, inline });
    }
    out
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

    #[test]
    fn citations_are_cleaned_deduplicated_and_numbered_inline_first() {
        let links = vec![
            Link { href: "https://www.techradar.com/a?utm_source=chatgpt.com".into(), text: "techradar.com".into() },
            Link { href: "https://rtings.com/b?utm_source=chatgpt.com".into(), text: " rtings.com ".into() },
            Link { href: "https://www.techradar.com/a?utm_source=chatgpt.com".into(), text: "techradar.com".into() },
            Link { href: "javascript:void(0)".into(), text: "x".into() },
        ];
        let listed = vec![
            Source {
                href: "https://rtings.com/b?utm_source=chatgpt.com".into(),
                title: "Best Laptops - RTINGS".into(),
            },
            Source { href: "https://www.wired.com/c?utm_source=chatgpt.com".into(), title: " Laptops | WIRED ".into() },
            Source { href: "https://www.techradar.com/a".into(), title: String::new() },
            Source { href: "https://cnet.com/d".into(), title: String::new() },
        ];
        let citations = citations(&links, &listed);
        let expected = [
            ("https://www.techradar.com/a", "techradar.com", "techradar.com", true),
            ("https://rtings.com/b", "Best Laptops - RTINGS", "rtings.com", true),
            ("https://www.wired.com/c", "Laptops | WIRED", "wired.com", false),
            ("https://cnet.com/d", "cnet.com", "cnet.com", false),
        ];
        assert_eq!(citations.len(), expected.len());
        for (index, (got, (url, title, domain, inline))) in citations.iter().zip(expected).enumerate() {
            assert_eq!(
                got,
                &Citation {
                    url: url.into(),
                    title: title.into(),
                    domain: domain.into(),
                    position: index as u32 + 1,
                    inline,
                }
            );
        }
    }

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

    #[test]
    fn text_keeps_paragraph_breaks_only() {
        assert_eq!(tidy_text("\n\nHello  \n\n\n\nworld\u{a0}\nagain\n\n"), "Hello\n\nworld\nagain");
    }
}
