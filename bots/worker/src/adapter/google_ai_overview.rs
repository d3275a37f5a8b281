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

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Deserialize;
use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;
use url::Url;

use super::{Adapter, AnswerKind, AskError, Captured, Citation, Manifest};
use crate::markdown::html_to_markdown;
use aap_proto::urls::{clean_url, domain_of};

const PAGE_JS: &str = include_str!("google_ai_overview.js");

/// Consecutive failed page probes tolerated while the page navigates (a script cannot run
/// during a navigation).
const MAX_PROBE_FAILURES: u32 = 50;

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

/// How a search ended when it did not fail.
enum Waited {
    /// The overview is complete and expanded.
    Overview(Option<Duration>),
    /// The search shows no overview.
    NoOverview,
}

impl GoogleAiOverview {
    /// The selector roles this adapter needs in its manifest.
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
        let origin = origin.unwrap_or(&manifest.base_url).trim_end_matches('/').to_owned();
        GoogleAiOverview { manifest, origin }
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
        let url = format!("{}{}", self.origin, self.manifest.new_chat_path);
        driver.goto(url.as_str()).await?;
        let timing = &self.manifest.timing;
        let deadline = Instant::now() + timing.page_load();
        let grace = self.option_ms("selector_grace_ms", DEFAULT_SELECTOR_GRACE_MS);
        let mut ready_since: Option<Instant> = None;
        let mut failures = 0;
        loop {
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
                        let since = *ready_since.get_or_insert_with(Instant::now);
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
        let composer = self.element(driver, "composer").await?.ok_or(AskError::SelectorMissing("composer"))?;
        composer.click().await?;
        composer.clear().await?;
        composer.send_keys(query).await?;
        let typed = self.run(driver, "composer_text").await?.convert::<String>().unwrap_or_default();
        if typed.trim().is_empty() {
            return Err(AskError::SelectorMissing("composer"));
        }
        if collapse(&typed) != collapse(query) {
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
        let mut ttft = None;
        let mut signature = String::new();
        let mut stable_since = Instant::now();
        let mut results_since: Option<Instant> = None;
        let mut empty_since: Option<Instant> = None;
        let mut expand_clicks = 0;
        let mut last_click: Option<Instant> = None;
        let mut last_block: Option<Block> = None;
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
                match probe.overview {
                    Some(block) => {
                        if block.signature != signature {
                            signature.clone_from(&block.signature);
                            stable_since = now;
                        }
                        if ttft.is_none() && block.text_len > 0 {
                            ttft = Some(now.duration_since(sent_at));
                        }
                        let settled = now.duration_since(stable_since) >= timing.settle();
                        if !block.loading
                            && let Some(notice) = block.notice.as_deref().filter(|text| !text.trim().is_empty())
                        {
                            if self.is_no_overview(notice) {
                                return Ok(Waited::NoOverview);
                            }
                            return Err(self.classify(notice));
                        }
                        if !block.loading
                            && let Some(error) = block.error.as_deref().filter(|text| !text.trim().is_empty())
                        {
                            return Err(self.classify(error));
                        }
                        if block.complete && !block.loading && settled {
                            if block.show_more {
                                // Collapsed: what shows is half the overview.
                                if last_click.is_none_or(|at| now.duration_since(at) >= expand_wait) {
                                    if expand_clicks >= MAX_EXPAND_CLICKS {
                                        return Err(AskError::SelectorMissing("show_more"));
                                    }
                                    self.click(driver, "show_more").await?;
                                    expand_clicks += 1;
                                    last_click = Some(now);
                                }
                            } else if block.hidden_len > 0 {
                                // Text kept hidden and no control known to show it: never submit
                                // half an answer.
                                if now.duration_since(stable_since) >= expand_wait {
                                    return Err(AskError::SelectorMissing("show_more"));
                                }
                            } else if block.text_len == 0 {
                                return Err(AskError::EmptyAnswer);
                            } else {
                                return Ok(Waited::Overview(ttft));
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
                let quiet = now.duration_since(stable_since) >= Duration::from_secs(5);
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

    /// Clicks the element the page script returns for `mode`, if it is there.
    async fn click(&self, driver: &WebDriver, mode: &str) -> Result<bool, AskError> {
        let Some(element) = self.element(driver, mode).await? else {
            return Ok(false);
        };
        match element.click().await {
            Ok(()) => Ok(true),
            // Re-rendered between lookup and click: the next probe looks again.
            Err(error) if matches!(error.as_inner(), WebDriverErrorInner::StaleElementReference(_)) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    /// Opens the whole sources list ("Show all"). Best effort: without it, the sources shown
    /// still count.
    async fn expand_sources(&self, driver: &WebDriver) {
        let before = self.sources_count(driver).await;
        match self.click(driver, "sources_expand").await {
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
        match self.run(driver, "sources_count").await.and_then(|ret| ret.convert::<u64>()) {
            Ok(count) => count,
            Err(error) => {
                tracing::debug!(%error, "cannot count the sources");
                0
            }
        }
    }

    fn classify(&self, text: &str) -> AskError {
        if self.manifest.is_rate_limit(text) {
            AskError::RateLimited(text.to_owned())
        } else {
            AskError::Assistant(text.to_owned())
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
        let response_text = tidy_text(&extracted.text);
        if response_text.is_empty() {
            return Err(AskError::EmptyAnswer);
        }
        let page = Url::parse(&extracted.page_url).ok();
        let mut markdown_html = extracted.md_html;
        // Highest index first, so `aap-link-1` never eats the start of `aap-link-12`.
        for (index, href) in extracted.links.iter().enumerate().rev() {
            let url = source_url(href, page.as_ref());
            let escaped = url.replace('&', "&amp;").replace('"', "&quot;");
            markdown_html =
                markdown_html.replace(&format!("href=\"aap-link-{index}\""), &format!("href=\"{escaped}\""));
        }
        let citations = citations(&extracted.cited, &extracted.sources, page.as_ref());
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
        })
    }
}

impl Adapter for GoogleAiOverview {
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
                });
            }
        };
        self.expand_sources(driver).await;
        let total = sent_at.elapsed();
        let extracted = self.run(driver, "extract").await?;
        if extracted.json().is_null() {
            return Err(AskError::SelectorMissing("answer"));
        }
        self.captured(extracted.convert()?, ttft, total)
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

/// Chips in reading order (inline), then the sources only listed; each clean URL once. Titles
/// come from the sources list, else the chip's text, else the domain.
fn citations(cited: &[Link], sources: &[Source], page: Option<&Url>) -> Vec<Citation> {
    let mut titles = HashMap::new();
    let listed: Vec<String> = sources
        .iter()
        .map(|source| {
            let url = source_url(&source.href, page);
            let title = collapse(&source.title);
            if !url.is_empty() && !title.is_empty() {
                titles.entry(url.clone()).or_insert(title);
            }
            url
        })
        .collect();
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let mut push = |url: String, text: &str, inline: bool, out: &mut Vec<Citation>| {
        if url.is_empty() || !seen.insert(url.clone()) {
            return;
        }
        let domain = domain_of(&url);
        let title = titles.get(&url).cloned().unwrap_or_else(|| {
            let text = collapse(text);
            if text.is_empty() { domain.clone() } else { text }
        });
        out.push(Citation { url, title, domain, position: out.len() as u32 + 1, inline });
    };
    for link in cited {
        push(source_url(&link.href, page), &link.text, true, &mut out);
    }
    for (url, source) in listed.into_iter().zip(sources) {
        push(url, &source.title, false, &mut out);
    }
    out
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn first_line(text: &str) -> Option<String> {
    text.lines().map(str::trim).find(|line| !line.is_empty()).map(str::to_owned)
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
        let got = citations(&cited, &sources, page.as_ref());
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
            adapter.classify("Can\u{2019}t generate an AI overview right now. Try again later."),
            AskError::RateLimited(_)
        ));
        assert!(matches!(adapter.classify("Something went wrong"), AskError::Assistant(_)));
        Ok(())
    }

    #[test]
    fn text_keeps_paragraph_breaks_only() {
        assert_eq!(tidy_text("\n\nHello  \n\n\n\nworld\u{a0}\nagain\n\n"), "Hello\n\nworld\nagain");
    }
}
