//! ChatGPT (chatgpt.com, or a look-alike at `--assistant-url`).
//!
//! The end of an answer is read from several signals at once, never from a fixed sleep: the stop
//! button is gone, the turn's action bar is present, and the answer's HTML has not changed for
//! the settle window. The stream pauses mid-way for longer than a second, so "text unchanged" on
//! its own would cut answers in half.

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
    stop: bool,
    send_enabled: bool,
    messages: usize,
    last: Option<LastMessage>,
    page_error: Option<String>,
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

    /// Opens a new conversation and waits for the composer; a login wall means the session is
    /// gone.
    async fn open_new_chat(&self, driver: &WebDriver) -> Result<(), AskError> {
        let url = format!("{}{}", self.origin, self.manifest.new_chat_path);
        driver.goto(url.as_str()).await?;
        let timing = &self.manifest.timing;
        let deadline = Instant::now() + timing.page_load();
        let mut failures = 0;
        loop {
            match self.probe(driver).await {
                Ok(probe) if probe.composer => return Ok(()),
                Ok(probe) if probe.login_wall => return Err(AskError::LoggedOut),
                Ok(_) => failures = 0,
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

    /// Waits until the answer after `messages_before` is complete. Returns the time to the first
    /// text.
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
                if probe.login_wall && !probe.composer {
                    return Err(AskError::LoggedOut);
                }
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
                        if !probe.stop
                            && let Some(error) = last.error.as_deref().filter(|e| !e.is_empty())
                        {
                            return Err(self.classify_error(error));
                        }
                        let settled = now.duration_since(stable_since) >= timing.settle();
                        if !probe.stop && last.action_bar && settled {
                            if last.text_len == 0 {
                                return Err(AskError::EmptyAnswer);
                            }
                            return Ok(ttft);
                        }
                    }
                    None => {
                        if let Some(error) = probe.page_error.as_deref()
                            && !probe.stop
                            && self.manifest.is_rate_limit(error)
                        {
                            return Err(AskError::RateLimited(error.to_owned()));
                        }
                        if !probe.stop && now.duration_since(sent_at) >= timing.first_turn() {
                            let role = if probe.send_enabled { "send_button" } else { "assistant_message" };
                            return Err(AskError::SelectorMissing(role));
                        }
                    }
                }
                if now >= deadline {
                    // Text done long ago and no stop button, but no action bar: the action bar
                    // selector has drifted, which is worth saying instead of "timeout".
                    let quiet = now.duration_since(stable_since) >= Duration::from_secs(5);
                    if !probe.stop && quiet && answer.is_some_and(|last| last.text_len > 0) {
                        return Err(AskError::SelectorMissing("action_bar"));
                    }
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

    /// Page titles of the cited sources from the sources list, keyed by clean URL. Best effort:
    /// without the list, citations keep their link text.
    async fn source_titles(&self, driver: &WebDriver) -> HashMap<String, String> {
        let mut titles = HashMap::new();
        let button = match self.element(driver, "sources_button").await {
            Ok(Some(button)) => button,
            Ok(None) => return titles,
            Err(error) => {
                tracing::debug!(%error, "no sources button");
                return titles;
            }
        };
        if let Err(error) = button.click().await {
            tracing::debug!(%error, "cannot open the sources list");
            return titles;
        }
        let deadline = Instant::now() + self.manifest.timing.sources_panel();
        loop {
            let sources = match self.run(driver, "sources").await.and_then(|ret| ret.convert::<Vec<Source>>()) {
                Ok(sources) => sources,
                Err(error) => {
                    tracing::debug!(%error, "cannot read the sources list");
                    Vec::new()
                }
            };
            if !sources.is_empty() {
                for source in sources {
                    let title = collapse(&source.title);
                    if !title.is_empty() {
                        titles.entry(clean_url(&source.href)).or_insert(title);
                    }
                }
                return titles;
            }
            if Instant::now() >= deadline {
                return titles;
            }
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
        let response_text = tidy_text(&extracted.text);
        if response_text.is_empty() {
            return Err(AskError::EmptyAnswer);
        }
        let titles = if extracted.links.is_empty() { HashMap::new() } else { self.source_titles(driver).await };
        let citations = citations(&extracted.links, &titles);
        Ok(Captured {
            response_text,
            response_markdown: html_to_markdown(&extracted.html),
            html: extracted.html,
            citations,
            model: extracted.model.filter(|model| !model.is_empty()),
            web_search: None,
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

/// Sources in order of first appearance, each clean URL once.
fn citations(links: &[Link], titles: &HashMap<String, String>) -> Vec<Citation> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for link in links {
        let url = clean_url(&link.href);
        if url.is_empty() || !url.starts_with("http") || !seen.insert(url.clone()) {
            continue;
        }
        let domain = domain_of(&url);
        let title = titles.get(&url).cloned().unwrap_or_else(|| {
            let text = collapse(&link.text);
            if text.is_empty() { domain.clone() } else { text }
        });
        out.push(Citation { url, title, domain, position: out.len() as u32 + 1, inline: true });
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

    #[test]
    fn citations_are_cleaned_deduplicated_and_numbered() {
        let links = vec![
            Link { href: "https://www.techradar.com/a?utm_source=chatgpt.com".into(), text: "techradar.com".into() },
            Link { href: "https://rtings.com/b?utm_source=chatgpt.com".into(), text: " rtings.com ".into() },
            Link { href: "https://www.techradar.com/a?utm_source=chatgpt.com".into(), text: "techradar.com".into() },
            Link { href: "javascript:void(0)".into(), text: "x".into() },
        ];
        let titles = HashMap::from([("https://rtings.com/b".to_owned(), "Best Laptops - RTINGS".to_owned())]);
        let citations = citations(&links, &titles);
        assert_eq!(
            citations,
            vec![
                Citation {
                    url: "https://www.techradar.com/a".into(),
                    title: "techradar.com".into(),
                    domain: "techradar.com".into(),
                    position: 1,
                    inline: true,
                },
                Citation {
                    url: "https://rtings.com/b".into(),
                    title: "Best Laptops - RTINGS".into(),
                    domain: "rtings.com".into(),
                    position: 2,
                    inline: true,
                },
            ]
        );
    }

    #[test]
    fn text_keeps_paragraph_breaks_only() {
        assert_eq!(tidy_text("\n\nHello  \n\n\n\nworld\u{a0}\nagain\n\n"), "Hello\n\nworld\nagain");
    }
}
