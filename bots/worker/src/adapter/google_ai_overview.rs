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
//! The overview is not part of the results page: it loads deferred (`/async/folsrch`), shows a
//! "Generating" state, then fills in. Everything of it is read inside its block (the outermost
//! element an `overview` selector matches, else the block around an "AI Overview" heading):
//! People also ask carries AI answers under the same markers. A search is finished when one of
//! these holds:
//! - two independent finish signals hold and the block has not changed for the settle window
//!   ([`common::finished`]): `complete-marker` (`data-complete`), `loading-gone` (the
//!   "Generating" state), `action-bar` (the feedback footer), `stream-done` (the teed deferred
//!   body ended), `quiet-long`; and the block is expanded: "Show more" is clicked as soon as the
//!   page says it is done (not after a settle window of its own), since the collapsed text is
//!   half the answer and text the page keeps hidden is never submitted. A block that finishes
//!   with no text at all is an empty answer ([`AskError::EmptyAnswer`]), not "no overview";
//! - results are loaded and no overview has appeared: once the teed deferred body has ended
//!   without one, or else within the deferred-load window (`[options] overview_wait_ms`): a
//!   result of its own kind, [`AnswerKind::NoOverview`];
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
//! `https://www.google.com/url?...&url=<target>` or straight to the page (often with a
//! `#:~:text=` highlight, which the cleaner drops). Sources only listed follow the inline ones.
//! An overview without a sources list (pills only) is read from its chips alone.
//!
//! The response stream: google.com has no token stream for the overview. Its deferred body is
//! HTML fetched with XHR, which the tee (`tee.js`, event streams only) does not record, so on
//! the real site the page usually stands alone. Whatever the tee did record under
//! `stream_url_parts` is parsed ([`findings`]): server-sent events (the look-alike's transport)
//! or an HTML fragment (Google's). Its sources are merged with the page's; its end is the
//! `stream-done` signal, and says the sources are final, so the bot waits for the page to show
//! them (a list that fills late) instead of a fixed window. Google shows no search queries and
//! no product cards with the overview: `search_queries` and `products` stay empty.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde::Deserialize;
use thirtyfour::prelude::*;
use url::Url;

use super::common::{self, Arrival, Link, PageScript, ProbeFailures, Progress, Source};
use super::stream::{self, Findings, Teed};
use super::{Adapter, AnswerKind, AskError, Captured, Manifest, PageState, Reading, Typing};
use crate::markdown::html_to_markdown;
use aap_proto::urls::{clean_url, domain_of, is_assistant_page};

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
const DEFAULT_STREAM_URL_PARTS: &[&str] = &["/async/folsrch", "/async/folwr", "/async/folif"];

/// The origin relative links in Google's deferred body are Google's own.
const GOOGLE_ORIGIN: &str = "https://www.google.com/";

/// The Google AI Overview adapter, driven by its [`Manifest`].
#[derive(Debug, Clone)]
pub struct GoogleAiOverview {
    pub(super) manifest: Manifest,
    origin: String,
    page: PageScript,
    stream_url_parts: Vec<String>,
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
    /// The tee's deferred bodies (without text), read in the same round trip as the page.
    #[serde(default)]
    teed: Vec<Teed>,
}

/// The AI Overview block as the page shows it.
#[derive(Debug, Default, Deserialize)]
struct Block {
    loading: bool,
    complete: bool,
    /// The feedback footer a finished overview shows.
    #[serde(default)]
    action_bar: bool,
    text_len: usize,
    /// The overview's text so far.
    #[serde(default)]
    text: String,
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
    /// No answer element matched: the text is the block's, less its chrome.
    #[serde(default)]
    by_fallback: bool,
}

/// How a search ended when it did not fail.
enum Waited {
    /// The overview is complete and expanded.
    Overview {
        ttft: Option<Duration>,
        /// The finish signals that held.
        signals: Vec<String>,
    },
    /// The search shows no overview, and what said so.
    NoOverview(Vec<String>),
}

impl GoogleAiOverview {
    /// The roles an answer cannot be read without: the composer, the results (the search ran)
    /// and the AI Overview block. The manifest must list them; every other role is optional and
    /// its absence only lowers the answer's confidence ([`super::Reading::missing`]); without
    /// an `answer` match the block's own text is read ([`super::Reading::read_by_fallback`]).
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
        "action_bar",
        "notice",
        "error",
        "show_more",
        "citation_chip",
        "citation_link",
        "sources_link",
        "sources_item",
        "sources_title",
        "sources_expand",
    ];

    /// An adapter for the site at `origin` (the manifest's `base_url` when `None`).
    pub fn new(manifest: Manifest, origin: Option<&str>) -> GoogleAiOverview {
        let origin = common::origin(&manifest, origin);
        let headings: Vec<String> =
            manifest.option_strings("overview_heading_patterns", &[]).iter().map(|h| h.to_lowercase()).collect();
        let stream_url_parts = manifest.option_strings("stream_url_parts", DEFAULT_STREAM_URL_PARTS);
        let page = PageScript::new(PAGE_JS, &manifest)
            .with_arg(serde_json::json!(headings))
            .with_arg(serde_json::json!(stream_url_parts));
        GoogleAiOverview { manifest, origin, page, stream_url_parts }
    }

    async fn probe(&self, driver: &WebDriver) -> WebDriverResult<Probe> {
        self.page.read(driver, "probe").await
    }

    fn option_ms(&self, name: &str, default: u64) -> Duration {
        self.manifest.option_ms(name, default)
    }

    /// The deferred bodies teed on the results page, without their text. The search opens a new
    /// document whose tee counts from zero, so every response it teed is this search's.
    async fn teed(&self, driver: &WebDriver) -> Vec<Teed> {
        match stream::state(driver, stream::Mark::default(), &self.stream_url_parts).await {
            Ok(teed) => teed,
            Err(error) => {
                tracing::debug!(%error, "cannot read the response tee");
                Vec::new()
            }
        }
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
        // The results page's title is the query, which may quote a challenge's words ("verify
        // you are human"): taken for a challenge, one prompt set every Google account aside.
        if !probe.composer && !probe.results && self.manifest.is_challenge(title) {
            return Some(AskError::Challenge(title.to_owned()));
        }
        if let Some(line) = line {
            return Some(AskError::Challenge(line));
        }
        None
    }

    /// One look at the page on its way to the composer: the composer, a wall (login,
    /// challenge) or neither yet.
    async fn look(&self, driver: &WebDriver) -> WebDriverResult<Arrival> {
        let probe = self.probe(driver).await?;
        Ok(if let Some(error) = self.blocked(&probe) {
            Arrival::Blocked(error)
        } else if probe.composer {
            Arrival::Composer
        } else {
            Arrival::Waiting { loaded: probe.ready }
        })
    }

    /// Opens the home page and waits for the search box. A loaded page without one (and without
    /// a wall) fails fast: the selectors need an update.
    async fn open_search_box(&self, driver: &WebDriver) -> Result<(), AskError> {
        let grace = self.option_ms("selector_grace_ms", DEFAULT_SELECTOR_GRACE_MS);
        let look = move || self.look(driver);
        common::open(driver, &self.origin, &self.manifest, grace, look).await
    }

    /// Types the query into the search box and presses Enter.
    async fn search(&self, driver: &WebDriver, query: &str) -> Result<(), AskError> {
        // A box that kept only the query's start is refused by `type_prompt` (its limit is lower
        // than the manifest says); one that holds something else is not searched either.
        let typed = self.page.type_prompt(driver, query).await?;
        if common::collapse(&typed) != common::collapse(query) {
            return Err(AskError::Assistant(format!("the search box holds {typed:?} instead of the prompt")));
        }
        self.page.press_enter(driver).await
    }

    /// Waits until the search shows a complete, expanded overview or shows none.
    async fn wait_for_overview(
        &self,
        driver: &WebDriver,
        sent_at: Instant,
        typing: &Typing,
    ) -> Result<Waited, AskError> {
        let timing = &self.manifest.timing;
        let deadline = sent_at + timing.answer_deadline();
        let overview_wait = self.option_ms("overview_wait_ms", DEFAULT_OVERVIEW_WAIT_MS);
        let grace = self.option_ms("selector_grace_ms", DEFAULT_SELECTOR_GRACE_MS);
        let expand_wait = self.option_ms("expand_wait_ms", DEFAULT_EXPAND_WAIT_MS);
        let results_path = self.manifest.option_str("results_path", DEFAULT_RESULTS_PATH);
        let mut progress = Progress::new(sent_at);
        let mut results_since: Option<Instant> = None;
        let mut empty_since: Option<Instant> = None;
        let mut ended_without_block: Option<Instant> = None;
        let mut expand_clicks = 0;
        let mut last_click: Option<Instant> = None;
        let mut sources_clicked = false;
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
                        typing.saw(&block.text);
                        if !block.loading
                            && let Some(notice) = block.notice.as_deref().filter(|text| !text.trim().is_empty())
                        {
                            if self.is_no_overview(notice) {
                                return Ok(Waited::NoOverview(vec!["no-overview-notice".to_owned()]));
                            }
                            return Err(common::classify(&self.manifest, notice));
                        }
                        if !block.loading
                            && let Some(error) = block.error.as_deref().filter(|text| !text.trim().is_empty())
                        {
                            return Err(common::classify(&self.manifest, error));
                        }
                        let stream_done = stream::ended(&probe.teed);
                        let signals = [
                            ("complete-marker", block.complete),
                            ("loading-gone", !block.loading),
                            ("action-bar", block.action_bar),
                            ("stream-done", stream_done),
                        ];
                        let page_done = !block.loading && (block.complete || block.action_bar || stream_done);
                        if page_done && block.show_more {
                            // Collapsed and done: open it now, so one settle window covers the
                            // opening too; again if it did not open.
                            if last_click.is_none_or(|at| now.duration_since(at) >= expand_wait) {
                                if expand_clicks >= MAX_EXPAND_CLICKS {
                                    return Err(AskError::SelectorMissing("show_more"));
                                }
                                self.page.click(driver, "show_more").await?;
                                expand_clicks += 1;
                                last_click = Some(now);
                            }
                        }
                        if page_done && !sources_clicked {
                            // "Show all" too, inside the same window. Best effort.
                            sources_clicked = true;
                            if let Err(error) = self.page.click(driver, "sources_expand").await {
                                tracing::debug!(%error, "cannot open the whole sources list");
                            }
                        }
                        if let Some(mut held) = common::finished(&signals, progress.quiet(now), timing.settle())
                            && !block.show_more
                        {
                            if block.hidden_len > 0 {
                                // Text kept hidden and no control known to show it: never submit
                                // half an answer.
                                if progress.quiet(now) >= expand_wait {
                                    return Err(AskError::SelectorMissing("show_more"));
                                }
                            } else if block.text_len == 0 {
                                return Err(AskError::EmptyAnswer);
                            } else {
                                if expand_clicks > 0 {
                                    held.push("show-more-expanded".to_owned());
                                }
                                return Ok(Waited::Overview { ttft: progress.ttft(), signals: held });
                            }
                        }
                        last_block = Some(block);
                    }
                    None if probe.results => {
                        // Results are in; the overview may still come (it loads deferred).
                        let since = *results_since.get_or_insert(now);
                        if now.duration_since(since) >= overview_wait {
                            return Ok(Waited::NoOverview(vec!["overview-wait".to_owned()]));
                        }
                        // The deferred body ended and brought no block: no overview, now.
                        if stream::ended(&probe.teed) {
                            let ended = *ended_without_block.get_or_insert(now);
                            if now.duration_since(ended) >= timing.settle() {
                                return Ok(Waited::NoOverview(vec!["stream-done".to_owned(), "no-block".to_owned()]));
                            }
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
                // Text long done and no loading indicator, but not two signals: the marker
                // selectors have drifted, which is worth saying instead of "timeout".
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

    /// The sources the response tee caught, once its bodies have ended (within the sources
    /// window); empty when the tee caught nothing (google.com's XHR body).
    async fn stream_findings(&self, driver: &WebDriver) -> Findings {
        let deadline = Instant::now() + self.manifest.timing.sources_panel();
        loop {
            let teed = self.teed(driver).await;
            if teed.is_empty() {
                return Findings::default();
            }
            if teed.iter().all(|t| t.done) || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(self.manifest.timing.poll()).await;
        }
        match stream::read(driver, stream::Mark::default(), &self.stream_url_parts).await {
            Ok(teed) => findings(&teed),
            Err(error) => {
                tracing::debug!(%error, "cannot read the teed deferred body");
                Findings::default()
            }
        }
    }

    /// Waits for the page to show its sources. With the stream's sources known (its end says
    /// they are final): until the page shows every one of them, opening "Show all" when it
    /// shows, within the sources window; a list that fills late is waited for, never a fixed
    /// time. Without a stream: "Show all" when it shows, then until the list grows.
    async fn settle_sources(&self, driver: &WebDriver, wanted: &HashSet<String>) {
        let timing = &self.manifest.timing;
        let deadline = Instant::now() + timing.sources_panel();
        let mut clicked = false;
        let mut before: Option<usize> = None;
        loop {
            let shown = self.page_sources(driver).await;
            if !wanted.is_empty() && wanted.iter().all(|url| shown.contains(url)) {
                return;
            }
            if wanted.is_empty() && before.is_some_and(|count| shown.len() > count) {
                return;
            }
            match self.page.click(driver, "sources_expand").await {
                Ok(true) => {
                    clicked = true;
                    before.get_or_insert(shown.len());
                }
                Ok(false) if wanted.is_empty() && !clicked => return,
                Ok(false) => {}
                Err(error) => {
                    tracing::debug!(%error, "cannot open the whole sources list");
                    return;
                }
            }
            if Instant::now() >= deadline {
                tracing::debug!(missing = wanted.len(), "the page did not show every source in time");
                return;
            }
            tokio::time::sleep(timing.poll()).await;
        }
    }

    /// The clean URLs of the chips and listed sources the page shows now.
    async fn page_sources(&self, driver: &WebDriver) -> HashSet<String> {
        let hrefs = match self.page.read::<Vec<String>>(driver, "page_sources").await {
            Ok(hrefs) => hrefs,
            Err(error) => {
                tracing::debug!(%error, "cannot read the shown sources");
                return HashSet::new();
            }
        };
        let page = super::interrupt::current_url(driver, &self.manifest.assistant).await.ok();
        hrefs.iter().map(|href| source_url(href, page.as_ref())).filter(|url| !url.is_empty()).collect()
    }

    /// Whether a notice in the block says this search gets no overview at all.
    fn is_no_overview(&self, text: &str) -> bool {
        let text = text.to_lowercase().replace('\u{2019}', "'");
        let patterns = self.manifest.option_strings("no_overview_patterns", DEFAULT_NO_OVERVIEW_PATTERNS);
        patterns.iter().any(|pattern| text.contains(&pattern.to_lowercase()))
    }

    /// The captured overview from what the page script extracted and what the stream said.
    fn captured(
        &self,
        extracted: Extracted,
        findings: &Findings,
        mut reading: Reading,
        ttft: Option<Duration>,
        total: Duration,
    ) -> Result<Captured, AskError> {
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
        let on_page = common::citations(&extracted.cited, &extracted.sources, |href| source_url(href, page.as_ref()));
        let (mut citations, disagreement) = stream::merge(&on_page, &findings.sources);
        // A pill names the site, not the page: the stream's title is the better one then.
        for citation in &mut citations {
            if citation.title == citation.domain
                && let Some(titled) = findings
                    .sources
                    .iter()
                    .find(|s| clean_url(&s.url) == citation.url && !common::collapse(&s.title).is_empty())
            {
                citation.title = common::collapse(&titled.title);
            }
        }
        if let Some(said) = &disagreement {
            tracing::warn!(disagreement = %said, "the overview's page and its deferred body disagree about the sources");
        }
        reading.disagreement = disagreement;
        reading.read_by_fallback = extracted.by_fallback;
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
            reading,
            search_queries: findings.search_queries.clone(),
            products: findings.clean_products(),
        })
    }
}

impl Adapter for GoogleAiOverview {
    fn origin(&self) -> &str {
        &self.origin
    }

    async fn login_state(&self, driver: &WebDriver) -> WebDriverResult<PageState> {
        Ok(super::page_state(&self.look(driver).await?))
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// A query longer than the search box takes (`max_query_chars`, 2,048 as Google's box has
    /// it, counted as its `maxlength` counts: in UTF-16 code units, an emoji twice): the box
    /// would cut it silently, a different question asked in its place.
    fn refuses(&self, prompt: &str) -> Option<AskError> {
        let limit = self.manifest.option_u64("max_query_chars", DEFAULT_MAX_QUERY_CHARS);
        common::nothing_to_type(prompt)
            .or_else(|| common::over_limit(&one_line(prompt), limit, "the search box", common::Counted::Utf16))
    }

    async fn ask_typing(&self, driver: &WebDriver, prompt: &str, typing: &Typing) -> Result<Captured, AskError> {
        let query = one_line(prompt);
        self.open_search_box(driver).await?;
        self.search(driver, &query).await?;
        let sent_at = Instant::now();
        let (ttft, signals) = match self.wait_for_overview(driver, sent_at, typing).await? {
            Waited::Overview { ttft, signals } => (ttft, signals),
            Waited::NoOverview(signals) => {
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
                    reading: Reading { finish_signals: signals, ..Reading::default() },
                    search_queries: Vec::new(),
                    products: Vec::new(),
                });
            }
        };
        let mut reading = Reading::default();
        if !signals.iter().any(|s| s == "complete-marker" || s == "action-bar") {
            // The page gave no done marker of its own: finished by the loading state, the
            // stream or the quiet alone.
            reading.missing("complete_marker");
            reading.missing("action_bar");
        }
        reading.finish_signals = signals;
        let findings = self.stream_findings(driver).await;
        let wanted: HashSet<String> = findings
            .sources
            .iter()
            .map(|s| clean_url(&s.url))
            .filter(|url| url.starts_with("http") && !is_assistant_page(url))
            .collect();
        self.settle_sources(driver, &wanted).await;
        let total = sent_at.elapsed();
        let extracted = self.page.extract(driver, "answer").await?;
        self.captured(extracted, &findings, reading, ttft, total)
    }
}

/// What the teed deferred bodies say: their sources (inline ones first, in reading order, then
/// the ones only listed) and whether one ran to its end. Two shapes are read:
/// - server-sent events (the look-alike's transport): `start` carries `sources` (`href` or
///   `list_href`/`link`/`url`, `title`, `inline`) and `links` (listed, e.g. Google's own "AI
///   Mode" link, which the merge drops), `done` ends it;
/// - an HTML fragment (google.com's `/async/folsrch` body, idx:56277632383): every web link
///   before the footer, inline when it comes before the sources column (`rhs-col` / `msc`),
///   listed after it (a pill's place is in the text: idx:71000273646); Google's own hosts
///   skipped once redirects are unwrapped.
///
/// Relative links are Google's (`/url?q=`): resolved against google.com and unwrapped.
pub(crate) fn findings(teed: &[Teed]) -> Findings {
    let mut out = Findings::default();
    let mut listed: Vec<(String, String)> = Vec::new();
    for body in teed {
        if body.content_type.contains("event-stream") {
            for (event, value) in stream::json_events(&body.text) {
                match event.as_str() {
                    "start" => {
                        let field = |item: &serde_json::Value, names: &[&str]| {
                            names.iter().find_map(|name| item[*name].as_str().map(str::to_owned)).unwrap_or_default()
                        };
                        for item in value["sources"].as_array().into_iter().flatten() {
                            let url = google_relative(&field(item, &["href", "list_href", "link", "url"]));
                            let title = field(item, &["title"]);
                            if item["inline"].as_bool().unwrap_or(false) {
                                out.source(&url, &title, true);
                            } else {
                                listed.push((url, title));
                            }
                        }
                        for item in value["links"].as_array().into_iter().flatten() {
                            listed.push((google_relative(&field(item, &["href", "url"])), field(item, &["title"])));
                        }
                    }
                    "done" => out.complete = true,
                    _ => {}
                }
            }
        } else if body.content_type.contains("html") || body.text.trim_start().starts_with('<') {
            let side = ["data-container-id=\"rhs-col\"", "data-subtree=\"msc\""]
                .iter()
                .filter_map(|marker| body.text.find(marker))
                .min()
                .unwrap_or(usize::MAX);
            // The footer (privacy, feedback) is no part of the overview (idx:56277632383 drops it).
            let end = body.text.find("data-target-container-id=\"footer-placeholder\"").unwrap_or(body.text.len());
            for anchor in anchors(&body.text[..end]) {
                let url = clean_url(&google_relative(&anchor.href));
                let host = domain_of(&url);
                // Google's own pages (idx:61867061311 skips these hosts); redirects are unwrapped
                // by then, so what is left on them is Google's.
                let own = ["google.com", "gstatic.com", "googleusercontent.com"]
                    .iter()
                    .any(|h| host == *h || host.ends_with(&format!(".{h}")));
                if own || is_assistant_page(&url) {
                    continue;
                }
                let title = anchor.label.trim_end_matches(" - Related results").to_owned();
                if anchor.at < side {
                    out.source(&url, &title, true);
                } else {
                    listed.push((url, title));
                }
            }
            out.complete |= body.done && body.error.is_none();
        }
    }
    for (url, title) in listed {
        out.source(&url, &title, false);
    }
    out
}

/// An href as found in Google's markup, absolute: relative ones are google.com's.
fn google_relative(href: &str) -> String {
    let href = href.trim();
    match Url::parse(GOOGLE_ORIGIN).and_then(|base| base.join(href)) {
        Ok(url) => url.to_string(),
        Err(_) => href.to_owned(),
    }
}

/// One `<a href>` of an HTML fragment: where it starts, its href (entities decoded), and its
/// name (`aria-label`, else its text without tags).
struct Anchor {
    at: usize,
    href: String,
    label: String,
}

/// The links of an HTML fragment, in document order. A small scanner, not a parser: Google's
/// fragments quote their attributes, and only `<a>` tags matter here.
fn anchors(html: &str) -> Vec<Anchor> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(offset) = html[from..].find("<a ") {
        let at = from + offset;
        let Some(tag_len) = html[at..].find('>') else { break };
        let tag = &html[at..at + tag_len];
        let rest = &html[at + tag_len + 1..];
        let inner = rest.find("</a>").map_or("", |end| &rest[..end]);
        from = at + tag_len + 1;
        let Some(href) = attribute(tag, "href") else { continue };
        let label = attribute(tag, "aria-label").filter(|l| !l.trim().is_empty()).unwrap_or_else(|| strip_tags(inner));
        out.push(Anchor { at, href, label: common::collapse(&label) });
    }
    out
}

/// The value of `name="..."` in a start tag, entities decoded.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(decode_entities(&tag[start..end]))
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    decode_entities(&out)
}

fn decode_entities(text: &str) -> String {
    text.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The prompt as one search: its lines as typed ([`common::typed_lines`]) joined by a space
/// (Enter in the box would search).
fn one_line(prompt: &str) -> String {
    let lines = common::typed_lines(prompt);
    lines.iter().map(|line| line.trim()).filter(|line| !line.is_empty()).collect::<Vec<_>>().join(" ")
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

    fn teed(content_type: &str, text: &str) -> Teed {
        Teed {
            seq: 1,
            url: "https://www.google.com/async/folsrch?q=x".into(),
            status: 200,
            content_type: content_type.into(),
            text: text.into(),
            done: true,
            ..Teed::default()
        }
    }

    fn summary(findings: &Findings) -> Vec<(String, &str, bool)> {
        findings.sources.iter().map(|s| (clean_url(&s.url), s.title.as_str(), s.inline)).collect()
    }

    #[test]
    fn the_look_alike_events_give_inline_sources_first_then_listed_ones() {
        // The look-alike's /async/folsrch: the block's sources come with `start`, in the list's
        // order (the one no pill cites first), Google's own "AI Mode" link among the links.
        let body = "event: start\n\
            data: {\"sources\":[{\"index\":2,\"href\":\"https://www.google.com/url?sa=t&url=https%3A%2F%2Fc.example%2F3&ved=x\",\"title\":\"C page\",\"inline\":false},\
            {\"index\":0,\"href\":\"https://a.example/1?srsltid=AfmBOo#utm_source=google&utm_medium=aio\",\"title\":\"A page\",\"inline\":true},\
            {\"index\":1,\"chip_href\":\"/url?q=x\",\"href\":\"/url?q=https%3A%2F%2Fb.example%2F2&sa=U\",\"title\":\"B page\",\"inline\":true}],\
            \"links\":[{\"href\":\"/search?udm=50&q=x\",\"title\":\"Dive deeper in AI Mode\"}]}\n\n\
            event: chunk\ndata: {\"text\":\"Hello \"}\n\n\
            event: done\ndata: {}\n\n";
        let found = findings(&[teed("text/event-stream; charset=utf-8", body)]);
        assert_eq!(
            summary(&found),
            vec![
                ("https://a.example/1".to_owned(), "A page", true),
                ("https://b.example/2".to_owned(), "B page", true),
                ("https://c.example/3".to_owned(), "C page", false),
                ("https://www.google.com/search?udm=50&q=x".to_owned(), "Dive deeper in AI Mode", false),
            ]
        );
        assert!(found.complete);
        assert!(found.search_queries.is_empty() && found.products.is_empty(), "google shows neither");
        // The merge keeps the own page out.
        let (merged, _) = stream::merge(&[], &found.sources);
        assert_eq!(merged.len(), 3);
    }

    #[test]
    fn a_google_fragment_gives_pills_inline_and_cards_listed() {
        // google.com's deferred body as public extractors describe it (idx:56277632383: HTML,
        // answer in the first <section>; idx:71000273646 / idx:65766924948: favicon pills
        // through /url?q=, rhs-col cards `a.vIWmYe` linking the page with #:~:text=).
        let fragment = "<section><div data-subtree=\"aimc\"><div data-container-id=\"main-col\">\
            <div class=\"n6owBd\">Sentence. <span class=\"pill\"><img src=\"https://encrypted-tbn0.gstatic.com/faviconV2?url=https://en.wikipedia.org\">\
            <a href=\"https://www.google.com/url?q=https%3A%2F%2Fen.wikipedia.org%2Fwiki%2FLaptop&amp;sa=U\">Wikipedia</a><span>+2</span></span></div>\
            <div role=\"heading\" aria-level=\"3\">How it works</div><ul><li>bullet</li></ul></div>\
            <div data-container-id=\"rhs-col\"><ul><li class=\"h7wxwc\"><div class=\"cRH23c\" data-src-id=\"0\">\
            <a class=\"vIWmYe\" href=\"https://site.example/page#:~:text=Sentence\" aria-label=\"Page title\">\
            <img src=\"https://encrypted-tbn0.gstatic.com/faviconV2?url=https://site.example\"><span class=\"jdxGff\">Site</span>\
            <span class=\"gpZmoc\">Page title</span></a><span class=\"hxIQcc\">Snippet</span></div></li>\
            <li class=\"h7wxwc\"><a class=\"vIWmYe\" href=\"https://en.wikipedia.org/wiki/Laptop#:~:text=a\" aria-label=\"Laptop - Wikipedia\"></a></li>\
            <li><a href=\"https://support.google.com/websearch/answer/1\">Learn more</a></li></ul></div></div></section>\
            <div data-target-container-id=\"footer-placeholder\"><a href=\"https://policies.google.com/privacy\">Privacy</a></div>";
        let found = findings(&[teed("text/html; charset=UTF-8", fragment)]);
        let summary = summary(&found);
        // The pill names the site; the card's title is the page's (the merge prefers the page's).
        assert_eq!(summary[0], ("https://en.wikipedia.org/wiki/Laptop".to_owned(), "Wikipedia", true));
        assert_eq!(summary[1], ("https://site.example/page".to_owned(), "Page title", false));
        assert_eq!(summary.len(), 2, "google's own links and the footer are no sources: {summary:?}");
        assert!(found.complete);
    }

    #[test]
    fn an_unended_or_foreign_body_says_nothing_complete() {
        let mut open = teed("text/event-stream", "event: start\ndata: {\"sources\":[]}\n\n");
        open.done = false;
        let found = findings(&[open]);
        assert!(!found.complete && found.sources.is_empty());
        assert_eq!(findings(&[teed("application/json", "{\"a\":1}")]), Findings::default());
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

    #[test]
    fn a_query_longer_than_the_search_box_is_refused_before_anything_opens() -> Result<(), super::super::ManifestError>
    {
        let adapter = GoogleAiOverview::new(Manifest::load("google-ai-overview", None)?, None);
        // The box's limit counts the query as typed: one line, characters (not bytes).
        let fits = format!("{}\n\n  {}", "é".repeat(1000), "b".repeat(1047));
        assert_eq!(one_line(&fits).chars().count(), 2048);
        assert!(adapter.refuses(&fits).is_none(), "2,048 characters fit");
        let over = format!("{fits}c");
        match adapter.refuses(&over) {
            Some(AskError::PromptRefused(said)) => {
                assert_eq!(said, "the prompt has 2049 characters; the search box takes at most 2048")
            }
            other => panic!("expected PromptRefused, got {other:?}"),
        }
        // The box's maxlength counts UTF-16 code units: an emoji twice.
        let emoji = format!("{} {}", "😀".repeat(10), "a".repeat(2030));
        assert_eq!((emoji.chars().count(), emoji.encode_utf16().count()), (2041, 2051));
        assert_eq!(
            adapter.refuses(&emoji).map(|e| e.to_string()),
            Some(
                "the assistant does not take the prompt: the prompt has 2041 characters, 2051 as the search box \
                 counts them (a character past U+FFFF, such as an emoji, counts twice); it takes at most 2048"
                    .to_owned()
            )
        );
        // The manifest may set the box's limit.
        let mut manifest = Manifest::load("google-ai-overview", None)?;
        manifest.options.insert("max_query_chars".into(), toml::Value::Integer(10));
        let adapter = GoogleAiOverview::new(manifest, None);
        assert!(adapter.refuses("0123456789").is_none());
        assert_eq!(adapter.refuses("0123456789a").map(|e| e.class()), Some("prompt-refused"));
        Ok(())
    }
}
