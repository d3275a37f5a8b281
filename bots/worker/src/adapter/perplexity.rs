//! Perplexity (www.perplexity.ai, or a look-alike at `--assistant-url`).
//!
//! The end of an answer is read from several signals at once, never from a fixed sleep: the
//! stop button is gone, the answer's actions (Copy) are present, and the answer's HTML has not
//! changed for the settle window; with no text by then it is an empty answer
//! ([`AskError::EmptyAnswer`]), said then rather than at the deadline. The sources list
//! ("Links" tab) keeps filling after the text is done, so it is opened and watched until its
//! count has not grown for the manifest's `sources_settle_ms`, bounded by the answer deadline.
//! Citations are the inline chips in reading order, then the sources only listed.

use std::time::{Duration, Instant};

use serde::Deserialize;
use thirtyfour::prelude::*;

use super::common::{self, Arrival, Link, PageScript, ProbeFailures, Progress, Source};
use super::{Adapter, AnswerKind, AskError, Captured, Manifest};
use crate::markdown::html_to_markdown;
use aap_proto::urls::clean_url;

const PAGE_JS: &str = concat!(include_str!("dom.js"), include_str!("perplexity.js"));

/// Defaults of the manifest's `[options]`.
const DEFAULT_SOURCES_SETTLE_MS: u64 = 1500;
const DEFAULT_SELECTOR_GRACE_MS: u64 = 3000;

/// The Perplexity adapter, driven by its [`Manifest`].
#[derive(Debug, Clone)]
pub struct Perplexity {
    manifest: Manifest,
    origin: String,
    page: PageScript,
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
    /// Inline citation chips: where each points (they show no title).
    chips: Vec<Link>,
    markdown_html: String,
    model: Option<String>,
    search_steps: bool,
    sources_tab: bool,
}

impl Perplexity {
    /// The roles an answer cannot be read without: the composer, the send control and the answer.
    /// The manifest must list them; every other role is optional and its absence only lowers
    /// the answer's confidence ([`super::Reading::missing`]).
    pub const REQUIRED: &'static [&'static str] = &["composer", "submit_button", "answer"];

    /// Every selector role this adapter reads from its manifest.
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
        let origin = common::origin(&manifest, origin);
        let page = PageScript::new(PAGE_JS, &manifest);
        Perplexity { manifest, origin, page }
    }

    fn selector_grace(&self) -> Duration {
        self.manifest.option_ms("selector_grace_ms", DEFAULT_SELECTOR_GRACE_MS)
    }

    fn sources_settle(&self) -> Duration {
        self.manifest.option_ms("sources_settle_ms", DEFAULT_SOURCES_SETTLE_MS)
    }

    async fn probe(&self, driver: &WebDriver) -> WebDriverResult<Probe> {
        self.page.read(driver, "probe").await
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
        let look = move || async move {
            let probe = self.probe(driver).await?;
            Ok(if let Some(error) = self.blocked(&probe) {
                Arrival::Blocked(error)
            } else if probe.composer {
                Arrival::Composer
            } else {
                Arrival::Waiting { loaded: probe.ready }
            })
        };
        common::open(driver, &self.origin, &self.manifest, self.selector_grace(), look).await
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
        let mut progress = Progress::new(sent_at);
        let mut stop_seen = false;
        let mut failures = ProbeFailures::default();
        loop {
            let probe = failures.check(self.probe(driver).await)?;
            let now = Instant::now();
            if let Some(probe) = probe {
                if let Some(error) = self.blocked(&probe) {
                    return Err(error);
                }
                stop_seen |= probe.stop;
                let waited = now.duration_since(sent_at);
                match probe.last.as_ref().filter(|_| probe.turns > turns_before) {
                    Some(last) => {
                        progress.saw(&last.signature, last.text_len, now);
                        if !probe.stop
                            && let Some(error) = last.error.as_deref().filter(|e| !e.is_empty())
                        {
                            return Err(common::classify(&self.manifest, error));
                        }
                        let quiet = progress.quiet(now);
                        if !probe.stop && last.action_bar && quiet >= timing.settle() {
                            if !last.answer {
                                return Err(AskError::SelectorMissing("answer"));
                            }
                            if last.text_len == 0 {
                                return Err(AskError::EmptyAnswer);
                            }
                            return Ok(progress.ttft());
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

    /// Opens the turn's sources list and reads it once it has stopped growing: the list keeps
    /// filling after the answer text is done. Bounded by `deadline`; best effort beyond that
    /// (the answer itself is complete).
    async fn read_sources(&self, driver: &WebDriver, deadline: Instant) -> Result<Vec<Source>, AskError> {
        // A real click: the site's tabs switch on mousedown, which a script click does not send.
        // A tab that re-rendered between lookup and click is looked up once more.
        if !self.page.click(driver, "sources_tab").await? && !self.page.click(driver, "sources_tab").await? {
            tracing::warn!("the answer shows a sources tab that cannot be clicked");
            return Ok(Vec::new());
        }
        let timing = &self.manifest.timing;
        let settle = self.sources_settle();
        let opened_at = Instant::now();
        let mut latest: Option<(Vec<Source>, Instant)> = None;
        let mut failures = ProbeFailures::default();
        loop {
            let now = Instant::now();
            match failures.check(self.page.read::<Option<Vec<Source>>>(driver, "sources").await)? {
                Some(Some(sources)) => {
                    let grew = latest.as_ref().is_none_or(|(seen, _)| seen.len() != sources.len());
                    let changed_at = if grew { now } else { latest.as_ref().map_or(now, |(_, at)| *at) };
                    latest = Some((sources, changed_at));
                }
                Some(None) if latest.is_none() && now.duration_since(opened_at) >= timing.sources_panel() => {
                    tracing::warn!("the sources list did not open; citations keep their chips only");
                    return Ok(Vec::new());
                }
                // A list not open yet, or a probe failed while the page moved: look again.
                Some(None) | None => {}
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
    fn origin(&self) -> &str {
        &self.origin
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    async fn ask(&self, driver: &WebDriver, prompt: &str) -> Result<Captured, AskError> {
        self.open_new_thread(driver).await?;
        let before = self.probe(driver).await?.turns;
        self.page.type_prompt(driver, prompt).await?;
        let sent_at = Instant::now();
        let deadline = sent_at + self.manifest.timing.answer_deadline();
        // Enter in the composer when no Submit button shows up within the selector grace.
        self.page.send(driver, "submit", self.selector_grace(), self.manifest.timing.poll()).await?;
        let ttft = self.wait_for_answer(driver, before, sent_at, deadline).await?;
        // The answer as the reader sees it is complete here; the sources list may still grow.
        let total = sent_at.elapsed();

        let extracted: Extracted = self.page.extract(driver, "answer").await?;
        let response_text = common::answer_text(&extracted.text)?;
        let sources = if extracted.sources_tab {
            self.read_sources(driver, deadline).await?
        } else {
            if !extracted.chips.is_empty() {
                tracing::warn!("citations without a sources tab: titles fall back to domains");
            }
            Vec::new()
        };
        let citations = common::citations(&extracted.chips, &sources, clean_url);
        // Only what the page shows: search steps or sources mean a web search; their absence
        // does not prove there was none.
        let web_search = (extracted.search_steps || !citations.is_empty()).then_some(true);
        Ok(Captured {
            response_text,
            response_markdown: html_to_markdown(&extracted.markdown_html),
            html: extracted.html,
            citations,
            model: extracted.model.map(|model| common::collapse(&model)).filter(|model| !model.is_empty()),
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

#[cfg(test)]
mod tests {
    use super::*;

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
