//! Perplexity (www.perplexity.ai, or a look-alike at `--assistant-url`).
//!
//! The end of an answer is read from several signals at once, never from a fixed sleep: the
//! stop button is gone, the answer's actions (Copy) are present, and the answer's HTML has not
//! changed for the settle window. The sources list ("Links" tab) keeps filling after the text is
//! done, so it is opened and watched until its count has not grown for the manifest's
//! `sources_settle_ms`, bounded by the answer deadline. Citations are the inline chips in
//! reading order, then the sources only listed.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Deserialize;
use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;

use super::{Adapter, AnswerKind, AskError, Captured, Citation, Manifest};
use crate::markdown::html_to_markdown;
use aap_proto::urls::{clean_url, domain_of};

const PAGE_JS: &str = include_str!("perplexity.js");

/// Consecutive failed page probes tolerated while the page navigates (a script cannot run
/// during a navigation).
const MAX_PROBE_FAILURES: u32 = 50;

/// Defaults of the manifest's `[options]`.
const DEFAULT_SOURCES_SETTLE_MS: u64 = 1500;
const DEFAULT_SELECTOR_GRACE_MS: u64 = 3000;

/// The Perplexity adapter, driven by its [`Manifest`].
#[derive(Debug, Clone)]
pub struct Perplexity {
    manifest: Manifest,
    origin: String,
}

#[derive(Debug, Default, Deserialize)]
struct Probe {
    ready: bool,
    title: String,
    text_head: String,
    challenge: bool,
    login_wall: bool,
    dialog_text: Option<String>,
    composer: bool,
    composer_text: String,
    stop: bool,
    turns: usize,
    last: Option<LastTurn>,
}

#[derive(Debug, Default, Deserialize)]
struct LastTurn {
    answer: bool,
    text_len: usize,
    signature: String,
    action_bar: bool,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Extracted {
    html: String,
    text: String,
    chips: Vec<Link>,
    markdown_html: String,
    model: Option<String>,
    search_steps: bool,
    sources_tab: bool,
}

/// An inline citation chip: where it points.
#[derive(Debug, Clone, Deserialize)]
struct Link {
    href: String,
}

#[derive(Debug, Clone, Deserialize)]
struct Source {
    href: String,
    title: String,
}

impl Perplexity {
    /// The selector roles this adapter needs in its manifest.
    pub const ROLES: &'static [&'static str] = &[
        "composer",
        "submit_button",
        "stop_button",
        "login_wall",
        "challenge",
        "turn",
        "answer",
        "action_bar",
        "error",
        "citation_chip",
        "citation_url_attribute",
        "sources_tab",
        "sources_panel",
        "sources_link",
        "sources_title",
        "search_steps",
        "model_label",
    ];

    /// An adapter for the site at `origin` (the manifest's `base_url` when `None`).
    pub fn new(manifest: Manifest, origin: Option<&str>) -> Perplexity {
        let origin = origin.unwrap_or(&manifest.base_url).trim_end_matches('/').to_owned();
        Perplexity { manifest, origin }
    }

    fn selector_grace(&self) -> Duration {
        self.manifest.option_ms("selector_grace_ms", DEFAULT_SELECTOR_GRACE_MS)
    }

    fn sources_settle(&self) -> Duration {
        self.manifest.option_ms("sources_settle_ms", DEFAULT_SOURCES_SETTLE_MS)
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

    /// A challenge or a sign-in modal in place of the site: the attempt cannot go on.
    fn blocked(&self, probe: &Probe) -> Option<AskError> {
        // Page text only counts without a composer: a prompt may quote a challenge's words.
        let challenge_text = !probe.composer && self.manifest.is_challenge(&probe.text_head);
        if probe.challenge || self.manifest.is_challenge(&probe.title) || challenge_text {
            let title = probe.title.trim();
            return Some(AskError::Challenge(if title.is_empty() {
                "challenge page".to_owned()
            } else {
                title.to_owned()
            }));
        }
        if probe.login_wall || probe.dialog_text.as_deref().is_some_and(|text| self.is_login_text(text)) {
            return Some(AskError::LoggedOut);
        }
        None
    }

    fn is_login_text(&self, text: &str) -> bool {
        let text = text.to_lowercase();
        self.manifest.options.get("login_wall_patterns").and_then(toml::Value::as_array).is_some_and(|patterns| {
            patterns.iter().filter_map(toml::Value::as_str).any(|pattern| text.contains(&pattern.to_lowercase()))
        })
    }

    /// Opens a new thread and waits for the composer. A page that has loaded but shows no
    /// composer (and no sign-in modal or challenge) has changed: that is said after the short
    /// selector grace, not after the whole page-load wait.
    async fn open_new_thread(&self, driver: &WebDriver) -> Result<(), AskError> {
        let url = format!("{}{}", self.origin, self.manifest.new_chat_path);
        driver.goto(url.as_str()).await?;
        let timing = &self.manifest.timing;
        let deadline = Instant::now() + timing.page_load();
        let mut ready_since: Option<Instant> = None;
        let mut failures = 0;
        loop {
            let now = Instant::now();
            match self.probe(driver).await {
                Ok(probe) => {
                    failures = 0;
                    if let Some(error) = self.blocked(&probe) {
                        return Err(error);
                    }
                    if probe.composer {
                        return Ok(());
                    }
                    if probe.ready {
                        let since = *ready_since.get_or_insert(now);
                        if now.duration_since(since) >= self.selector_grace() {
                            return Err(AskError::SelectorMissing("composer"));
                        }
                    } else {
                        ready_since = None;
                    }
                }
                Err(error) => tolerate(error, &mut failures)?,
            }
            if now >= deadline {
                return Err(match ready_since {
                    Some(_) => AskError::SelectorMissing("composer"),
                    None => AskError::Timeout(timing.page_load()),
                });
            }
            tokio::time::sleep(timing.poll()).await;
        }
    }

    /// Types the prompt into the composer. New lines become Shift+Enter, which starts a new
    /// line instead of sending.
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

    /// Clicks Submit once it is enabled; Enter in the composer when no Submit button shows up
    /// within the selector grace.
    async fn send(&self, driver: &WebDriver) -> Result<(), AskError> {
        let deadline = Instant::now() + self.selector_grace();
        loop {
            if let Some(button) = self.element(driver, "submit").await? {
                match button.click().await {
                    Ok(()) => return Ok(()),
                    // Re-rendered between lookup and click: look it up again.
                    Err(error) if matches!(error.as_inner(), WebDriverErrorInner::StaleElementReference(_)) => {}
                    Err(error) => return Err(error.into()),
                }
            }
            if Instant::now() >= deadline {
                tracing::warn!("no enabled submit button; pressing enter in the composer");
                let composer = self.element(driver, "composer").await?.ok_or(AskError::SelectorMissing("composer"))?;
                composer.send_keys(Key::Enter).await?;
                return Ok(());
            }
            tokio::time::sleep(self.manifest.timing.poll()).await;
        }
    }

    /// Waits until the answer in the turn after `turns_before` is complete. Returns the time to
    /// the first text.
    async fn wait_for_answer(
        &self,
        driver: &WebDriver,
        turns_before: usize,
        sent_at: Instant,
        deadline: Instant,
    ) -> Result<Option<Duration>, AskError> {
        let timing = &self.manifest.timing;
        let grace = self.selector_grace();
        let mut ttft = None;
        let mut signature = String::new();
        let mut stable_since = Instant::now();
        let mut stop_seen = false;
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
                if let Some(error) = self.blocked(&probe) {
                    return Err(error);
                }
                stop_seen |= probe.stop;
                let waited = now.duration_since(sent_at);
                match probe.last.as_ref().filter(|_| probe.turns > turns_before) {
                    Some(last) => {
                        if last.signature != signature {
                            signature.clone_from(&last.signature);
                            stable_since = now;
                        }
                        if ttft.is_none() && last.text_len > 0 {
                            ttft = Some(waited);
                        }
                        if !probe.stop
                            && let Some(error) = last.error.as_deref().filter(|e| !e.is_empty())
                        {
                            return Err(self.classify_error(error));
                        }
                        let quiet = now.duration_since(stable_since);
                        if !probe.stop && last.action_bar && quiet >= timing.settle() {
                            if !last.answer {
                                return Err(AskError::SelectorMissing("answer"));
                            }
                            if last.text_len == 0 {
                                return Err(AskError::EmptyAnswer);
                            }
                            return Ok(ttft);
                        }
                        // The stop button came and went and the text is quiet, yet no actions:
                        // the action bar's selectors have drifted.
                        if stop_seen && !probe.stop && !last.action_bar && last.text_len > 0 && quiet >= grace {
                            return Err(AskError::SelectorMissing("action_bar"));
                        }
                    }
                    None if waited >= grace && probe.stop => return Err(AskError::SelectorMissing("turn")),
                    None if waited >= grace && !probe.composer_text.trim().is_empty() => {
                        // The prompt is still in the composer: the click did not send it.
                        return Err(AskError::SelectorMissing("submit_button"));
                    }
                    None if waited >= timing.first_turn() => return Err(AskError::SelectorMissing("turn")),
                    None => {}
                }
            }
            if now >= deadline {
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

    /// Opens the turn's sources list and reads it once it has stopped growing: the list keeps
    /// filling after the answer text is done. Bounded by `deadline`; best effort beyond that
    /// (the answer itself is complete).
    async fn read_sources(&self, driver: &WebDriver, deadline: Instant) -> Result<Vec<Source>, AskError> {
        let Some(tab) = self.element(driver, "sources_tab").await? else {
            tracing::warn!("the answer shows a sources tab that cannot be clicked");
            return Ok(Vec::new());
        };
        // A real click: the site's tabs switch on mousedown, which a script click does not send.
        match tab.click().await {
            Ok(()) => {}
            Err(error) if matches!(error.as_inner(), WebDriverErrorInner::StaleElementReference(_)) => {
                match self.element(driver, "sources_tab").await? {
                    Some(tab) => tab.click().await?,
                    None => return Ok(Vec::new()),
                }
            }
            Err(error) => return Err(error.into()),
        }
        let timing = &self.manifest.timing;
        let settle = self.sources_settle();
        let opened_at = Instant::now();
        let mut latest: Option<(Vec<Source>, Instant)> = None;
        let mut failures = 0;
        loop {
            let now = Instant::now();
            match self.run(driver, "sources").await.and_then(|ret| ret.convert::<Option<Vec<Source>>>()) {
                Ok(Some(sources)) => {
                    failures = 0;
                    let grew = latest.as_ref().is_none_or(|(seen, _)| seen.len() != sources.len());
                    let changed_at = if grew { now } else { latest.as_ref().map_or(now, |(_, at)| *at) };
                    latest = Some((sources, changed_at));
                }
                Ok(None) => {
                    failures = 0;
                    if latest.is_none() && now.duration_since(opened_at) >= timing.sources_panel() {
                        tracing::warn!("the sources list did not open; citations keep their chips only");
                        return Ok(Vec::new());
                    }
                }
                Err(error) => tolerate(error, &mut failures)?,
            }
            if let Some((sources, changed_at)) = &latest
                && now.duration_since(*changed_at) >= settle
            {
                return Ok(sources.clone());
            }
            if now >= deadline {
                let sources = latest.map(|(sources, _)| sources).unwrap_or_default();
                tracing::warn!(count = sources.len(), "the sources list was still growing at the deadline");
                return Ok(sources);
            }
            tokio::time::sleep(timing.poll()).await;
        }
    }
}

impl Adapter for Perplexity {
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
        self.open_new_thread(driver).await?;
        let before = self.probe(driver).await?.turns;
        self.type_prompt(driver, prompt).await?;
        let sent_at = Instant::now();
        let deadline = sent_at + self.manifest.timing.answer_deadline();
        self.send(driver).await?;
        let ttft = self.wait_for_answer(driver, before, sent_at, deadline).await?;
        // The answer as the reader sees it is complete here; the sources list may still grow.
        let total = sent_at.elapsed();

        let extracted = self.run(driver, "extract").await?;
        if extracted.json().is_null() {
            return Err(AskError::SelectorMissing("answer"));
        }
        let extracted: Extracted = extracted.convert()?;
        let response_text = tidy_text(&extracted.text);
        if response_text.is_empty() {
            return Err(AskError::EmptyAnswer);
        }
        let sources = if extracted.sources_tab {
            self.read_sources(driver, deadline).await?
        } else {
            if !extracted.chips.is_empty() {
                tracing::warn!("citations without a sources tab: titles fall back to domains");
            }
            Vec::new()
        };
        let citations = citations(&extracted.chips, &sources);
        // Only what the page shows: search steps or sources mean a web search; their absence
        // does not prove there was none.
        let web_search = (extracted.search_steps || !citations.is_empty()).then_some(true);
        Ok(Captured {
            response_text,
            response_markdown: html_to_markdown(&extracted.markdown_html),
            html: extracted.html,
            citations,
            model: extracted.model.map(|model| collapse(&model)).filter(|model| !model.is_empty()),
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

/// Inline chips first in reading order, then the sources only listed, in list order; each
/// clean URL once. Titles come from the sources list (chips show a site name or a number, not
/// a title), else the domain.
fn citations(chips: &[Link], sources: &[Source]) -> Vec<Citation> {
    let titles: HashMap<String, String> = sources
        .iter()
        .map(|source| (clean_url(&source.href), collapse(&source.title)))
        .filter(|(url, title)| !url.is_empty() && !title.is_empty())
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let listed = sources.iter().map(|source| (&source.href, false));
    for (href, inline) in chips.iter().map(|chip| (&chip.href, true)).chain(listed) {
        let url = clean_url(href);
        if !url.starts_with("http") || !seen.insert(url.clone()) {
            continue;
        }
        let domain = domain_of(&url);
        let title = titles.get(&url).cloned().unwrap_or_else(|| domain.clone());
        out.push(Citation { url, title, domain, position: out.len() as u32 + 1, inline });
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

    fn link(href: &str) -> Link {
        Link { href: href.to_owned() }
    }

    fn source(href: &str, title: &str) -> Source {
        Source { href: href.to_owned(), title: title.to_owned() }
    }

    #[test]
    fn chips_come_first_in_reading_order_then_sources_only_listed() {
        let chips = vec![
            link("https://www.rtings.com/b?utm_source=perplexity"),
            link("https://en.wikipedia.org/wiki/A?utm_source=perplexity"),
            link("https://www.rtings.com/b?utm_source=perplexity"),
        ];
        let sources = vec![
            source("https://en.wikipedia.org/wiki/A?utm_source=perplexity", "A - Wikipedia"),
            source("https://www.bbc.com/news/x?utm_source=perplexity", " BBC  News "),
            source("https://www.rtings.com/b?utm_source=perplexity", ""),
            source("javascript:void(0)", "nothing"),
        ];
        let got = citations(&chips, &sources);
        let want = vec![
            Citation {
                url: "https://www.rtings.com/b".into(),
                title: "rtings.com".into(),
                domain: "rtings.com".into(),
                position: 1,
                inline: true,
            },
            Citation {
                url: "https://en.wikipedia.org/wiki/A".into(),
                title: "A - Wikipedia".into(),
                domain: "en.wikipedia.org".into(),
                position: 2,
                inline: true,
            },
            Citation {
                url: "https://www.bbc.com/news/x".into(),
                title: "BBC News".into(),
                domain: "bbc.com".into(),
                position: 3,
                inline: false,
            },
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn text_keeps_paragraph_breaks_only() {
        assert_eq!(tidy_text("\n\nHello  \n\n\n\nworld\u{a0}\nagain\n\n"), "Hello\n\nworld\nagain");
    }

    #[test]
    fn built_in_manifest_has_every_role_and_the_options() -> Result<(), crate::adapter::ManifestError> {
        let manifest = Manifest::load("perplexity", None)?;
        manifest.require(Perplexity::ROLES)?;
        assert_eq!(manifest.selectors("composer")[0], "#ask-input");
        assert!(manifest.is_rate_limit(aap_simulator::PERPLEXITY_RATE_LIMIT_MESSAGE));
        assert!(!manifest.is_rate_limit(aap_simulator::PERPLEXITY_ERROR_MESSAGE));
        assert!(manifest.is_challenge(aap_simulator::CHALLENGE_TITLE));
        let adapter = Perplexity::new(manifest, Some("http://127.0.0.1:9/"));
        assert_eq!(adapter.origin(), "http://127.0.0.1:9");
        assert_eq!(adapter.sources_settle(), Duration::from_millis(1500));
        assert!(adapter.is_login_text("Sign in or create an account\nUnlock Pro Search"));
        assert!(!adapter.is_login_text("Share this thread"));
        Ok(())
    }
}
