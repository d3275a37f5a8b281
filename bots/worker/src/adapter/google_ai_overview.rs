//! Google AI Overview (google.com search, or a look-alike at `--assistant-url`).
//!
//! There is no chat: the adapter asks by searching. It opens the home page and types the prompt
//! into the search box (`textarea[name=q]`), then presses Enter, as a person does. A direct
//! `/search?q=` hit without a home-page visit and without the parameters the box adds is the
//! classic scraper fingerprint that draws Google's "unusual traffic" page sooner, and the box
//! applies Google's own query handling (its 2048-character limit among it). `hl=en` rides on
//! the home page's address (`new_chat_path`) and the form. New lines in a prompt become spaces:
//! a search box has one line, and Enter would search.
//!
//! The overview is not part of the results page: it loads deferred, shows a "Generating" state,
//! then streams. A search is finished when one of these holds:
//! - the overview's completion marker is set, its loading indicator is gone, the block has not
//!   changed for the settle window, and it is expanded ("Show more" is clicked first: the
//!   collapsed text is half the answer, and text the page keeps hidden is never submitted);
//!   a complete block with no text at all is an empty answer ([`AskError::EmptyAnswer`]), not
//!   "no overview";
//! - results are loaded and no overview has appeared within the deferred-load window
//!   (`[options] overview_wait_ms`): a result of its own kind, [`AnswerKind::NoOverview`];
//! - the block says the search gets no overview ("An AI Overview is not available for this
//!   search"): also `NoOverview`.
//!
//! Failures: the consent wall ("Before you continue to Google", shown without a Google session)
//! is the login wall; the "unusual traffic" page (`/sorry/index`) or a Cloudflare-style page is
//! a challenge; "Can't generate an AI overview right now. Try again later." is the rate limit
//! (`rate_limit_patterns`); an alert in the block is the assistant's error.
//!
//! Citations: chips in the text (inline, in reading order) link through Google's relative
//! redirect `/url?q=<target>`, which is resolved against the page and unwrapped here (the URL
//! cleaner only unwraps `google.*` hosts); the sources list links through
//! `https://www.google.com/url?...&url=<target>`. Sources only listed follow the inline ones.

use std::time::{Duration, Instant};

use serde::Deserialize;
use thirtyfour::prelude::*;
use url::Url;

use super::common::{self, Arrival, Link, PageScript, ProbeFailures, Progress, Source};
use super::{Adapter, AnswerKind, AskError, Captured, Manifest};
use crate::markdown::html_to_markdown;
use aap_proto::urls::clean_url;

const PAGE_JS: &str = concat!(include_str!("dom.js"), include_str!("google_ai_overview.js"));

/// Clicks on "Show more" before the control is declared broken.
const MAX_EXPAND_CLICKS: u32 = 3;

/// Defaults of the `[options]` the manifest may set.
const DEFAULT_OVERVIEW_WAIT_MS: u64 = 4000;
const DEFAULT_SELECTOR_GRACE_MS: u64 = 2500;
const DEFAULT_EXPAND_WAIT_MS: u64 = 3000;
const DEFAULT_MAX_QUERY_CHARS: u64 = 2048;
const DEFAULT_RESULTS_PATH: &str = "/search";
const DEFAULT_NO_OVERVIEW_PATTERNS: &[&str] = &["not available for this search"];

/// The Google AI Overview adapter, driven by its [`Manifest`].
#[derive(Debug, Clone)]
pub struct GoogleAiOverview {
    manifest: Manifest,
    origin: String,
    page: PageScript,
}

#[derive(Debug, Default, Deserialize)]
struct Probe {
    ready: bool,
    path: String,
    title: String,
    composer: bool,
    results: bool,
    login_wall: bool,
    challenge: Option<String>,
    body_head: String,
    overview: Option<Block>,
}

/// The AI Overview block as the page shows it.
#[derive(Debug, Default, Deserialize)]
struct Block {
    loading: bool,
    complete: bool,
    text_len: usize,
    /// Text in the answer that the page keeps hidden (a collapsed overview).
    hidden_len: usize,
    signature: String,
    notice: Option<String>,
    error: Option<String>,
    /// A collapsed block's "Show more" control is showing.
    show_more: bool,
}

#[derive(Debug, Deserialize)]
struct Extracted {
    page_url: String,
    html: String,
    md_html: String,
    text: String,
    /// Chips in reading order.
    cited: Vec<Link>,
    /// The hrefs behind the `aap-link-<n>` tokens of `md_html`.
    links: Vec<String>,
    /// The sources list, in its order.
    sources: Vec<Source>,
}

/// How a search ended when it did not fail.
enum Waited {
    /// The overview is complete and expanded.
    Overview(Option<Duration>),
    /// The search shows no overview.
    NoOverview,
}

impl GoogleAiOverview {
    /// The roles an answer cannot be read without: the composer, the send control and the AI Overview block.
    /// The manifest must list them; every other role is optional and its absence only lowers
    /// the answer's confidence ([`super::Reading::missing`]).
    pub const REQUIRED: &'static [&'static str] = &["composer", "results", "overview"];

    /// Every selector role this adapter reads from its manifest.
    pub const ROLES: &'static [&'static str] = &[
        "composer",
        "login_wall",
        "challenge",
        "results",
        "overview",
        "loading",
        "complete_marker",
        "answer",
        "notice",
        "error",
        "show_more",
        "citation_chip",
        "citation_link",
        "sources_link",
        "sources_title",
        "sources_expand",
    ];

    /// An adapter for the site at `origin` (the manifest's `base_url` when `None`).
    pub fn new(manifest: Manifest, origin: Option<&str>) -> GoogleAiOverview {
        let origin = common::origin(&manifest, origin);
        let page = PageScript::new(PAGE_JS, &manifest);
        GoogleAiOverview { manifest, origin, page }
    }

    async fn probe(&self, driver: &WebDriver) -> WebDriverResult<Probe> {
        self.page.read(driver, "probe").await
    }

    fn option_ms(&self, name: &str, default: u64) -> Duration {
        self.manifest.option_ms(name, default)
    }

    /// A wall in place of the page: the consent wall (no Google session) or a bot challenge.
    fn blocked(&self, probe: &Probe) -> Option<AskError> {
        if probe.login_wall {
            return Some(AskError::LoggedOut);
        }
        let title = probe.title.trim();
        let named = |fallback: &str| if title.is_empty() { fallback.to_owned() } else { title.to_owned() };
        // The line of the page that says what it is ("Our systems have detected unusual
        // traffic...", "Verify you are human..."): the best reason to report.
        let line = probe
            .body_head
            .lines()
            .map(str::trim)
            .find(|line| !line.is_empty() && self.manifest.is_challenge(line))
            .map(str::to_owned);
        if let Some(challenge) = &probe.challenge {
            let reason = line.or_else(|| first_line(challenge)).unwrap_or_else(|| named("bot challenge"));
            return Some(AskError::Challenge(reason));
        }
        if probe.path.starts_with("/sorry/") {
            return Some(AskError::Challenge(line.unwrap_or_else(|| named("unusual traffic page"))));
        }
        if self.manifest.is_challenge(title) {
            return Some(AskError::Challenge(title.to_owned()));
        }
        if let Some(line) = line {
            return Some(AskError::Challenge(line));
        }
        None
    }

    /// Opens the home page and waits for the search box. A loaded page without one (and without
    /// a wall) fails fast: the selectors need an update.
    async fn open_search_box(&self, driver: &WebDriver) -> Result<(), AskError> {
        let grace = self.option_ms("selector_grace_ms", DEFAULT_SELECTOR_GRACE_MS);
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
        common::open(driver, &self.origin, &self.manifest, grace, look).await
    }

    /// Types the query into the search box and presses Enter.
    async fn search(&self, driver: &WebDriver, query: &str) -> Result<(), AskError> {
        let limit = self.manifest.option_u64("max_query_chars", DEFAULT_MAX_QUERY_CHARS);
        let length = query.chars().count() as u64;
        if length > limit {
            // The box would cut the prompt silently: a different question, never asked.
            return Err(AskError::Assistant(format!(
                "the prompt has {length} characters; the search box takes at most {limit}"
            )));
        }
        let composer = self.page.composer(driver).await?;
        composer.click().await?;
        composer.clear().await?;
        composer.send_keys(query).await?;
        let typed = self.page.typed(driver).await?;
        if common::collapse(&typed) != common::collapse(query) {
            return Err(AskError::Assistant(format!("the search box holds {typed:?} instead of the prompt")));
        }
        composer.send_keys(Key::Enter).await?;
        Ok(())
    }

    /// Waits until the search shows a complete, expanded overview or shows none.
    async fn wait_for_overview(&self, driver: &WebDriver, sent_at: Instant) -> Result<Waited, AskError> {
        let timing = &self.manifest.timing;
        let deadline = sent_at + timing.answer_deadline();
        let overview_wait = self.option_ms("overview_wait_ms", DEFAULT_OVERVIEW_WAIT_MS);
        let grace = self.option_ms("selector_grace_ms", DEFAULT_SELECTOR_GRACE_MS);
        let expand_wait = self.option_ms("expand_wait_ms", DEFAULT_EXPAND_WAIT_MS);
        let results_path = self.manifest.option_str("results_path", DEFAULT_RESULTS_PATH);
        let mut progress = Progress::new(sent_at);
        let mut results_since: Option<Instant> = None;
        let mut empty_since: Option<Instant> = None;
        let mut expand_clicks = 0;
        let mut last_click: Option<Instant> = None;
        let mut last_block: Option<Block> = None;
        let mut failures = ProbeFailures::default();
        loop {
            let probe = failures.check(self.probe(driver).await)?;
            let now = Instant::now();
            if let Some(probe) = probe {
                if let Some(error) = self.blocked(&probe) {
                    return Err(error);
                }
                match probe.overview {
                    Some(block) => {
                        progress.saw(&block.signature, block.text_len, now);
                        let settled = progress.quiet(now) >= timing.settle();
                        if !block.loading
                            && let Some(notice) = block.notice.as_deref().filter(|text| !text.trim().is_empty())
                        {
                            if self.is_no_overview(notice) {
                                return Ok(Waited::NoOverview);
                            }
                            return Err(common::classify(&self.manifest, notice));
                        }
                        if !block.loading
                            && let Some(error) = block.error.as_deref().filter(|text| !text.trim().is_empty())
                        {
                            return Err(common::classify(&self.manifest, error));
                        }
                        if block.complete && !block.loading && settled {
                            if block.show_more {
                                // Collapsed: what shows is half the overview.
                                if last_click.is_none_or(|at| now.duration_since(at) >= expand_wait) {
                                    if expand_clicks >= MAX_EXPAND_CLICKS {
                                        return Err(AskError::SelectorMissing("show_more"));
                                    }
                                    self.page.click(driver, "show_more").await?;
                                    expand_clicks += 1;
                                    last_click = Some(now);
                                }
                            } else if block.hidden_len > 0 {
                                // Text kept hidden and no control known to show it: never submit
                                // half an answer.
                                if progress.quiet(now) >= expand_wait {
                                    return Err(AskError::SelectorMissing("show_more"));
                                }
                            } else if block.text_len == 0 {
                                return Err(AskError::EmptyAnswer);
                            } else {
                                return Ok(Waited::Overview(progress.ttft()));
                            }
                        }
                        last_block = Some(block);
                    }
                    None if probe.results => {
                        // Results are in; the overview may still come (it loads deferred).
                        let since = *results_since.get_or_insert(now);
                        if now.duration_since(since) >= overview_wait {
                            return Ok(Waited::NoOverview);
                        }
                    }
                    None => {
                        if probe.path == results_path && probe.ready {
                            // A loaded results page with neither results nor an overview.
                            let since = *empty_since.get_or_insert(now);
                            if now.duration_since(since) >= grace {
                                return Err(AskError::SelectorMissing("results"));
                            }
                        } else if probe.path != results_path && now.duration_since(sent_at) >= timing.first_turn() {
                            // Enter in the box never started the search.
                            return Err(AskError::SelectorMissing("composer"));
                        }
                    }
                }
            }
            if now >= deadline {
                // Text long done and no loading indicator, but no completion marker: the marker
                // selector has drifted, which is worth saying instead of "timeout".
                let quiet = progress.quiet(now) >= Duration::from_secs(5);
                if let Some(block) = &last_block
                    && !block.loading
                    && !block.complete
                    && block.text_len > 0
                    && quiet
                {
                    return Err(AskError::SelectorMissing("complete_marker"));
                }
                return Err(AskError::Timeout(timing.answer_deadline()));
            }
            tokio::time::sleep(timing.poll()).await;
        }
    }

    /// Opens the whole sources list ("Show all"). Best effort: without it, the sources shown
    /// still count.
    async fn expand_sources(&self, driver: &WebDriver) {
        let before = self.sources_count(driver).await;
        match self.page.click(driver, "sources_expand").await {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => {
                tracing::debug!(%error, "cannot open the whole sources list");
                return;
            }
        }
        let deadline = Instant::now() + self.manifest.timing.sources_panel();
        while Instant::now() < deadline {
            tokio::time::sleep(self.manifest.timing.poll()).await;
            if self.sources_count(driver).await > before {
                return;
            }
        }
        tracing::debug!("the sources list did not grow after show all");
    }

    async fn sources_count(&self, driver: &WebDriver) -> u64 {
        match self.page.read::<u64>(driver, "sources_count").await {
            Ok(count) => count,
            Err(error) => {
                tracing::debug!(%error, "cannot count the sources");
                0
            }
        }
    }

    /// Whether a notice in the block says this search gets no overview at all.
    fn is_no_overview(&self, text: &str) -> bool {
        let text = text.to_lowercase().replace('\u{2019}', "'");
        let patterns: Vec<String> = match self.manifest.options.get("no_overview_patterns").and_then(|v| v.as_array()) {
            Some(list) => list.iter().filter_map(|v| v.as_str()).map(str::to_lowercase).collect(),
            None => DEFAULT_NO_OVERVIEW_PATTERNS.iter().map(|p| (*p).to_owned()).collect(),
        };
        patterns.iter().any(|pattern| text.contains(pattern.as_str()))
    }

    /// The captured overview from what the page script extracted.
    fn captured(&self, extracted: Extracted, ttft: Option<Duration>, total: Duration) -> Result<Captured, AskError> {
        let response_text = common::answer_text(&extracted.text)?;
        let page = Url::parse(&extracted.page_url).ok();
        let mut markdown_html = extracted.md_html;
        // Highest index first, so `aap-link-1` never eats the start of `aap-link-12`.
        for (index, href) in extracted.links.iter().enumerate().rev() {
            let url = source_url(href, page.as_ref());
            let escaped = url.replace('&', "&amp;").replace('"', "&quot;");
            markdown_html =
                markdown_html.replace(&format!("href=\"aap-link-{index}\""), &format!("href=\"{escaped}\""));
        }
        // Chips and listed links alike go through Google's redirect: unwrapped to their sources.
        let citations = common::citations(&extracted.cited, &extracted.sources, |href| source_url(href, page.as_ref()));
        let web_search = (!citations.is_empty()).then_some(true);
        Ok(Captured {
            response_text,
            response_markdown: html_to_markdown(&markdown_html),
            html: extracted.html,
            citations,
            model: None,
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

impl Adapter for GoogleAiOverview {
    fn origin(&self) -> &str {
        &self.origin
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    async fn ask(&self, driver: &WebDriver, prompt: &str) -> Result<Captured, AskError> {
        let query = one_line(prompt);
        self.open_search_box(driver).await?;
        self.search(driver, &query).await?;
        let sent_at = Instant::now();
        let ttft = match self.wait_for_overview(driver, sent_at).await? {
            Waited::Overview(ttft) => ttft,
            Waited::NoOverview => {
                return Ok(Captured {
                    response_text: String::new(),
                    response_markdown: String::new(),
                    html: String::new(),
                    citations: Vec::new(),
                    model: None,
                    web_search: None,
                    kind: AnswerKind::NoOverview,
                    ttft: None,
                    total: sent_at.elapsed(),
                    reading: Default::default(),
                    search_queries: Vec::new(),
                    products: Vec::new(),
                });
            }
        };
        self.expand_sources(driver).await;
        let total = sent_at.elapsed();
        let extracted = self.page.extract(driver, "answer").await?;
        self.captured(extracted, ttft, total)
    }
}

/// The prompt as one search: lines joined by a space (Enter in the box would search).
fn one_line(prompt: &str) -> String {
    prompt.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ")
}

/// The source a page link points to: Google's click-through redirect (`/url?q=` or
/// `/url?url=`, relative or on the page's own host, which the URL cleaner does not know as
/// Google's when the page is a look-alike) unwrapped, then cleaned. Empty when it is no web
/// address, or another page of the site itself.
fn source_url(href: &str, page: Option<&Url>) -> String {
    let absolute = match page {
        Some(page) => page.join(href.trim()),
        None => Url::parse(href.trim()),
    };
    let Ok(absolute) = absolute else {
        return String::new();
    };
    let same_host = page.is_some_and(|page| page.host_str() == absolute.host_str());
    let url = if same_host {
        // On the site itself only the redirect leads to a source; any other page of the site
        // (another search, "about this result") is none.
        let target = (absolute.path() == "/url").then(|| {
            absolute
                .query_pairs()
                .find(|(name, value)| (name == "q" || name == "url") && value.starts_with("http"))
                .map(|(_, value)| value.into_owned())
        });
        match target.flatten() {
            Some(target) => clean_url(&target),
            None => return String::new(),
        }
    } else {
        clean_url(absolute.as_str())
    };
    if url.starts_with("http://") || url.starts_with("https://") { url } else { String::new() }
}

fn first_line(text: &str) -> Option<String> {
    text.lines().map(str::trim).find(|line| !line.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_are_unwrapped_relative_and_absolute() {
        let page = Url::parse("http://127.0.0.1:4321/search?q=laptops&hl=en").ok();
        assert_eq!(
            source_url(
                "/url?q=https%3A%2F%2Fwww.rtings.com%2Flaptop%3Fsrsltid%3Dabc%26id%3D4&sa=U&ved=2ah",
                page.as_ref()
            ),
            "https://www.rtings.com/laptop?id=4"
        );
        assert_eq!(
            source_url(
                "https://www.google.com/url?sa=t&source=web&rct=j&url=https://en.wikipedia.org/wiki/Laptop&ved=x",
                page.as_ref()
            ),
            "https://en.wikipedia.org/wiki/Laptop"
        );
        let google = Url::parse("https://www.google.com/search?q=x").ok();
        assert_eq!(source_url("/url?q=https://example.org/a&sa=U", google.as_ref()), "https://example.org/a");
        // Not a redirect: another page of the site itself is no source.
        assert_eq!(source_url("/search?q=more", page.as_ref()), "");
        assert_eq!(source_url("https://example.org/b?utm_source=x", page.as_ref()), "https://example.org/b");
        assert_eq!(source_url("javascript:void(0)", page.as_ref()), "");
        assert_eq!(source_url("/url?q=javascript:alert(1)", page.as_ref()), "");
    }

    #[test]
    fn inline_citations_come_first_then_sources_only_listed() {
        let page = Url::parse("http://127.0.0.1:4321/search?q=x").ok();
        let cited = vec![
            Link { href: "/url?q=https://a.example/1&sa=U".into(), text: "a.example".into() },
            Link { href: "/url?q=https://b.example/2%3Fsrsltid%3Dz&sa=U".into(), text: " b.example ".into() },
            Link { href: "/url?q=https://a.example/1&sa=U".into(), text: "a.example".into() },
        ];
        let sources = vec![
            Source { href: "https://www.google.com/url?sa=t&url=https://c.example/3".into(), title: "C page".into() },
            Source { href: "https://www.google.com/url?sa=t&url=https://a.example/1".into(), title: "A page".into() },
        ];
        let got = common::citations(&cited, &sources, |href| source_url(href, page.as_ref()));
        let summary: Vec<(&str, &str, u32, bool)> =
            got.iter().map(|c| (c.url.as_str(), c.title.as_str(), c.position, c.inline)).collect();
        assert_eq!(
            summary,
            vec![
                ("https://a.example/1", "A page", 1, true),
                ("https://b.example/2", "b.example", 2, true),
                ("https://c.example/3", "C page", 3, false),
            ]
        );
        assert_eq!(got[2].domain, "c.example");
    }

    #[test]
    fn prompts_become_one_line_and_notices_are_told_apart() -> Result<(), super::super::ManifestError> {
        assert_eq!(one_line("Compare two phones:\n  Pixel and iPhone\n\n"), "Compare two phones: Pixel and iPhone");
        let adapter = GoogleAiOverview::new(Manifest::load("google-ai-overview", None)?, None);
        assert!(adapter.is_no_overview("An AI Overview is not available for this search"));
        assert!(!adapter.is_no_overview("Can't generate an AI overview right now. Try again later."));
        assert!(matches!(
            common::classify(&adapter.manifest, "Can\u{2019}t generate an AI overview right now. Try again later."),
            AskError::RateLimited(_)
        ));
        assert!(matches!(common::classify(&adapter.manifest, "Something went wrong"), AskError::Assistant(_)));
        Ok(())
    }
}
