//! Perplexity (www.perplexity.ai, or a look-alike at `--assistant-url`).
//!
//! The end of an answer is read from independent signals, never from a fixed sleep
//! ([`common::finished`]): the stop control is gone, the answer's footer (Helpful, Copy) shows
//! in the answer's own turn, and the answer stream (`/rest/sse/perplexity_ask`, teed in the
//! page) has ended; two of them and the settle window, in which the answer's HTML has not
//! changed. The site clears its Stop control (and shows the footer) before the last words land,
//! so while the answer stream is still open the answer is not finished (unless it has been quiet
//! for `open_stream_quiet_ms`). With no text by the end it is an empty answer
//! ([`AskError::EmptyAnswer`]), said then rather than at the deadline.
//!
//! Only the composer, the send control and the answer are required; a page without a turn
//! wrapper, a footer, a sources list or a model label is still read, each missing role noted in
//! [`super::Reading`]. Without any answer element, the last turn's text is the answer (a
//! fallback read).
//!
//! Sources: the stream's `web_results` (the `[n]` markers of its text say which are cited) are
//! merged with the page's chips and its sources list ([`stream::merge`]). The list ("Links" tab,
//! "N sources" context pane) keeps filling after the text is done; once the stream has sent its
//! final frame the list is read as soon as it shows every source the stream named (or when it
//! stopped growing for `sources_settle_ms`); without a stream, once it stopped growing.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use thirtyfour::prelude::*;

use super::common::{self, Arrival, Link, PageScript, ProbeFailures, Progress, Source};
use super::stream::{self, Findings, Mark};
use super::{Adapter, AnswerKind, AskError, Captured, Manifest, PageState, Product, Reading, Typing};
use crate::markdown::html_to_markdown;
use aap_proto::urls::{clean_url, is_assistant_page};

const PAGE_JS: &str = concat!(include_str!("dom.js"), include_str!("perplexity.js"));

/// Defaults of the manifest's `[options]`.
const DEFAULT_SOURCES_SETTLE_MS: u64 = 1500;
const DEFAULT_SELECTOR_GRACE_MS: u64 = 3000;
const DEFAULT_OPEN_STREAM_QUIET_MS: u64 = 10_000;
const DEFAULT_STREAM_URL_PARTS: &[&str] = &["/rest/sse/perplexity_ask"];

/// The Perplexity adapter, driven by its [`Manifest`].
#[derive(Debug, Clone)]
pub struct Perplexity {
    pub(super) manifest: Manifest,
    origin: String,
    page: PageScript,
    stream_url_parts: Vec<String>,
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
    answers: usize,
    turns: usize,
    last: Option<LastAnswer>,
}

#[derive(Debug, Default, Deserialize)]
struct LastAnswer {
    /// Characters of the answer's text (of the turn's, for a fallback read).
    text_len: usize,
    /// The answer's text so far.
    #[serde(default)]
    text: String,
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
    /// No answer element: the text is the turn's, less what is not the answer.
    fallback: bool,
    turn: bool,
}

/// How the wait for an answer ended.
#[derive(Debug)]
struct Finish {
    ttft: Option<Duration>,
    signals: Vec<String>,
    stop_seen: bool,
    action_bar: bool,
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
        "query",
        "action_bar",
        "error",
        "citation_chip",
        "citation_url_attribute",
        "citation_extra",
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
        let patterns = manifest.option_strings("sources_tab_patterns", &[]);
        let page = PageScript::new(PAGE_JS, &manifest).with_arg(serde_json::json!(patterns));
        let stream_url_parts = manifest.option_strings("stream_url_parts", DEFAULT_STREAM_URL_PARTS);
        Perplexity { manifest, origin, page, stream_url_parts }
    }

    fn selector_grace(&self) -> Duration {
        self.manifest.option_ms("selector_grace_ms", DEFAULT_SELECTOR_GRACE_MS)
    }

    fn sources_settle(&self) -> Duration {
        self.manifest.option_ms("sources_settle_ms", DEFAULT_SOURCES_SETTLE_MS)
    }

    /// The settle window once the answer stream has ended: the page has every frame, it only
    /// has to render the last one.
    fn stream_settle(&self) -> Duration {
        common::stream_settle(&self.manifest)
    }

    fn open_stream_quiet(&self) -> Duration {
        self.manifest.option_ms("open_stream_quiet_ms", DEFAULT_OPEN_STREAM_QUIET_MS)
    }

    async fn probe(&self, driver: &WebDriver) -> WebDriverResult<Probe> {
        self.page.read(driver, "probe").await
    }

    /// A challenge or a sign-in modal in place of the site: the attempt cannot go on.
    fn blocked(&self, probe: &Probe) -> Option<AskError> {
        // The title and the page's text only count on a page without a composer or a thread: a
        // thread's title is its question, which may quote a challenge's words.
        let own_page = probe.composer || probe.turns > 0 || probe.answers > 0;
        let challenge_text =
            !own_page && (self.manifest.is_challenge(&probe.title) || self.manifest.is_challenge(&probe.text_head));
        if probe.challenge || challenge_text {
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
        self.manifest
            .option_strings("login_wall_patterns", &[])
            .iter()
            .any(|pattern| text.contains(&pattern.to_lowercase()))
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

    /// Opens a new thread and waits for the composer. A page that has loaded but shows no
    /// composer (and no sign-in modal or challenge) has changed: that is said after the short
    /// selector grace, not after the whole page-load wait.
    async fn open_new_thread(&self, driver: &WebDriver) -> Result<(), AskError> {
        let look = move || self.look(driver);
        common::open(driver, &self.origin, &self.manifest, self.selector_grace(), look).await
    }

    /// Waits until the answer after `before` (answers, turns) is complete.
    async fn wait_for_answer(
        &self,
        driver: &WebDriver,
        before: (usize, usize),
        mark: Mark,
        sent_at: Instant,
        deadline: Instant,
        typing: &Typing,
    ) -> Result<Finish, AskError> {
        let timing = &self.manifest.timing;
        let grace = self.selector_grace();
        let open_stream_quiet = self.open_stream_quiet();
        let stream_settle = self.stream_settle();
        let mut progress = Progress::new(sent_at);
        let mut stop_seen = false;
        let mut failures = ProbeFailures::default();
        loop {
            let probe = failures.check(self.probe(driver).await)?;
            // The stream's state is a cheap extra look; a failed one only means no stream signal.
            let teed = stream::state(driver, mark, &self.stream_url_parts).await.unwrap_or_default();
            let now = Instant::now();
            if let Some(probe) = probe {
                if let Some(error) = self.blocked(&probe) {
                    return Err(error);
                }
                stop_seen |= probe.stop;
                let waited = now.duration_since(sent_at);
                let fresh = probe.answers > before.0 || probe.turns > before.1;
                let stream_done = stream::ended(&teed);
                match probe.last.as_ref().filter(|_| fresh) {
                    Some(last) => {
                        progress.saw(&last.signature, last.text_len, now);
                        typing.saw(&last.text);
                        if !probe.stop
                            && let Some(error) = last.error.as_deref().filter(|e| !e.is_empty())
                        {
                            let parts = &self.stream_url_parts;
                            return Err(common::classify_sent(driver, &self.manifest, error, mark, parts).await);
                        }
                        let quiet = progress.quiet(now);
                        // The site clears its Stop control before the last words: an open stream
                        // still has text to send.
                        let stream_open = teed.iter().any(|t| !t.done);
                        let signals =
                            [("stop-gone", !probe.stop), ("action-bar", last.action_bar), ("stream-done", stream_done)];
                        let settle = if stream_done && !stream_open { stream_settle } else { timing.settle() };
                        if (!stream_open || quiet >= open_stream_quiet)
                            && let Some(signals) = common::finished(&signals, quiet, settle)
                        {
                            if last.text_len == 0 {
                                return Err(AskError::EmptyAnswer);
                            }
                            return Ok(Finish {
                                ttft: progress.ttft(),
                                signals,
                                stop_seen,
                                action_bar: last.action_bar,
                            });
                        }
                    }
                    None if waited >= grace && !probe.composer_text.trim().is_empty() => {
                        // The prompt is still in the composer: the click did not send it.
                        return Err(AskError::SelectorMissing("submit_button"));
                    }
                    // The answer stream has ended, yet the page shows no answer nor turn we know.
                    None if waited >= grace && stream_done => return Err(AskError::SelectorMissing("answer")),
                    None if waited >= timing.first_turn() => return Err(AskError::SelectorMissing("answer")),
                    None => {}
                }
            }
            if now >= deadline {
                return Err(AskError::Timeout(timing.answer_deadline()));
            }
            tokio::time::sleep(timing.poll()).await;
        }
    }

    /// Opens the answer's sources list and reads it once it is complete: as soon as it shows
    /// every source in `expected` (the clean URLs the finished stream named), else once it has
    /// not grown for `sources_settle_ms`. Bounded by `deadline`; best effort beyond that (the
    /// answer itself is complete). `None` when no list could be opened.
    async fn read_sources(
        &self,
        driver: &WebDriver,
        expected: &HashSet<String>,
        deadline: Instant,
    ) -> Result<Option<Vec<Source>>, AskError> {
        let timing = &self.manifest.timing;
        // The control shows with the footer, or (late sources) a moment after it.
        let looked_at = Instant::now();
        loop {
            // A real click: the site's tabs switch on mousedown, which a script click does not
            // send. A control that re-rendered between lookup and click is looked up again.
            if self.page.click(driver, "sources_tab").await? {
                break;
            }
            if looked_at.elapsed() >= timing.sources_panel() || Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(timing.poll()).await;
        }
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
                    return Ok(None);
                }
                // A list not open yet, or a probe failed while the page moved: look again.
                Some(None) | None => {}
            }
            if let Some((sources, changed_at)) = &latest {
                let shown: HashSet<String> = sources.iter().map(|s| clean_url(&s.href)).collect();
                // Every source the finished stream named is listed: nothing more to wait for.
                if !expected.is_empty() && expected.is_subset(&shown) {
                    return Ok(Some(sources.clone()));
                }
                if now.duration_since(*changed_at) >= settle {
                    return Ok(Some(sources.clone()));
                }
            }
            if now >= deadline {
                let sources = latest.map(|(sources, _)| sources).unwrap_or_default();
                tracing::warn!(count = sources.len(), "the sources list was still growing at the deadline");
                return Ok(Some(sources));
            }
            tokio::time::sleep(timing.poll()).await;
        }
    }

    /// What the answer stream said, read back from the tee; nothing when there was none.
    async fn stream_findings(&self, driver: &WebDriver, mark: Mark) -> Findings {
        match stream::read(driver, mark, &self.stream_url_parts).await {
            Ok(teed) => {
                let bodies: Vec<&str> = teed.iter().map(|t| t.text.as_str()).collect();
                parse_stream(&bodies)
            }
            Err(error) => {
                tracing::warn!(%error, "the answer stream could not be read back; the page alone says the sources");
                Findings::default()
            }
        }
    }
}

/// A list of strings from the manifest's `[options]` (empty when absent).
impl Adapter for Perplexity {
    fn origin(&self) -> &str {
        &self.origin
    }

    async fn login_state(&self, driver: &WebDriver) -> WebDriverResult<PageState> {
        Ok(super::page_state(&self.look(driver).await?))
    }

    fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    async fn ask_typing(&self, driver: &WebDriver, prompt: &str, typing: &Typing) -> Result<Captured, AskError> {
        self.open_new_thread(driver).await?;
        let probe = self.probe(driver).await?;
        let before = (probe.answers, probe.turns);
        self.page.type_prompt(driver, prompt).await?;
        let mark = stream::mark(driver).await;
        let sent_at = Instant::now();
        let deadline = sent_at + self.manifest.timing.answer_deadline();
        // Enter in the composer when no Submit button shows up within the selector grace.
        self.page.send(driver, "submit", self.selector_grace(), self.manifest.timing.poll()).await?;
        let finish = self.wait_for_answer(driver, before, mark, sent_at, deadline, typing).await?;
        // The answer as the reader sees it is complete here; the sources list may still grow.
        let total = sent_at.elapsed();

        let mut reading = Reading { finish_signals: finish.signals, ..Reading::default() };
        let extracted: Extracted = self.page.extract(driver, "answer").await?;
        let response_text = common::answer_text(&extracted.text)?;
        reading.read_by_fallback = extracted.fallback;
        if !extracted.turn {
            reading.missing("turn");
        }
        if !finish.action_bar {
            reading.missing("action_bar");
        }
        if !finish.stop_seen {
            reading.missing("stop_button");
        }
        let findings = self.stream_findings(driver, mark).await;
        // The clean URLs the finished stream named: the list is complete once it shows them all.
        let expected: HashSet<String> = if findings.complete {
            findings
                .sources
                .iter()
                .map(|s| clean_url(&s.url))
                .filter(|url| url.starts_with("http") && !is_assistant_page(url))
                .collect()
        } else {
            HashSet::new()
        };
        let sources = if extracted.sources_tab || !findings.sources.is_empty() {
            match self.read_sources(driver, &expected, deadline).await? {
                Some(sources) => sources,
                None => {
                    reading.missing(if extracted.sources_tab { "sources_panel" } else { "sources_tab" });
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let page_citations = common::citations(&extracted.chips, &sources, clean_url);
        let (citations, disagreement) = stream::merge(&page_citations, &findings.sources);
        if let Some(line) = &disagreement {
            tracing::warn!(disagreement = %line, "page and answer stream disagree about the sources");
        }
        reading.disagreement = disagreement;
        // Search steps, sources or the stream's searches mean a web search; their absence does
        // not prove there was none.
        let web_search =
            (extracted.search_steps || !citations.is_empty() || !findings.search_queries.is_empty()).then_some(true);
        Ok(Captured {
            response_text,
            response_markdown: html_to_markdown(&extracted.markdown_html),
            html: extracted.html,
            citations,
            model: extracted.model.map(|model| common::collapse(&model)).filter(|model| !model.is_empty()),
            web_search,
            kind: AnswerKind::Text,
            ttft: finish.ttft,
            total,
            reading,
            search_queries: findings.search_queries.clone(),
            products: findings.clean_products(),
        })
    }
}

/// What Perplexity's answer stream (`POST /rest/sse/perplexity_ask`) said besides the page, from
/// the bodies teed: every frame an `event: message` envelope whose `blocks` are whole blocks
/// (`{"intended_usage", "<kind>_block"}`) or RFC-6902 patches of one (`diff_block`), kept per
/// usage. Sources are the final `web_result_block.web_results` (widgets, images, memories and
/// the like left out), cited ones (`[n]` = entry n-1 in the text of `ask_text` or of the
/// workflow's `WORKFLOW_ITEM_TEXT`) first in citing order; searches from `WORKFLOW_ITEM_QUERIES`,
/// `pro_search_steps` plan steps and the final frame's `text` steps; products from any block
/// whose kind names shopping or products. Complete once a frame says `final_sse_message` with
/// `status` COMPLETED (not `text_completed`, which comes a frame early), or at `end_of_stream`.
pub(super) fn parse_stream(bodies: &[&str]) -> Findings {
    let mut findings = Findings::default();
    let mut blocks: BTreeMap<String, serde_json::Map<String, Value>> = BTreeMap::new();
    let mut step_texts: Vec<String> = Vec::new();
    for body in bodies {
        for event in stream::sse_events(body) {
            if event.event == "end_of_stream" || event.data.trim() == "[DONE]" {
                findings.complete = true;
                continue;
            }
            let Ok(frame) = serde_json::from_str::<Value>(&event.data) else {
                continue;
            };
            if frame["final_sse_message"] == Value::Bool(true) && frame["status"] == "COMPLETED" {
                findings.complete = true;
            }
            if let Some(text) = frame["text"].as_str() {
                step_texts.push(text.to_owned());
            }
            for block in frame["blocks"].as_array().into_iter().flatten() {
                let usage = block["intended_usage"].as_str().unwrap_or_default().to_owned();
                let slot = blocks.entry(usage).or_default();
                if let Some(diff) = block.get("diff_block") {
                    let field = diff["field"].as_str().unwrap_or_default().to_owned();
                    let value = slot.remove(&field).unwrap_or(Value::Null);
                    slot.insert(field, apply_patches(value, &diff["patches"]));
                    continue;
                }
                for (key, value) in block.as_object().into_iter().flatten() {
                    if key.ends_with("_block") {
                        slot.insert(key.clone(), value.clone());
                    }
                }
            }
        }
    }

    // Searches: the workflow's queries, the older plan steps, the final frame's steps.
    for slot in blocks.values() {
        for (kind, block) in slot {
            match kind.as_str() {
                "workflow_block" => {
                    for item in steps_items(block) {
                        if item["type"] == "WORKFLOW_ITEM_QUERIES" {
                            for query in item["payload"]["queries_payload"]["queries"].as_array().into_iter().flatten()
                            {
                                findings.query(query.as_str().unwrap_or_default());
                            }
                        }
                    }
                }
                "plan_block" => {
                    for step in block["steps"].as_array().into_iter().flatten() {
                        for query in step["search_web_content"]["queries"].as_array().into_iter().flatten() {
                            findings.query(query["query"].as_str().or(query.as_str()).unwrap_or_default());
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for text in &step_texts {
        let Ok(Value::Array(steps)) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        for step in steps.iter().filter(|step| step["step_type"] == "SEARCH_WEB") {
            for query in step["content"]["queries"].as_array().into_iter().flatten() {
                findings.query(query["query"].as_str().or(query.as_str()).unwrap_or_default());
            }
        }
    }

    // Sources: the web results, the ones the text cites first, in citing order.
    let results: Vec<&Value> = blocks
        .get("web_results")
        .and_then(|slot| slot.get("web_result_block"))
        .or_else(|| blocks.get("sources_answer_mode").and_then(|slot| slot.get("sources_mode_block")))
        .and_then(|block| block["web_results"].as_array())
        .map(|results| results.iter().collect())
        .unwrap_or_default();
    let text = answer_text(&blocks);
    let is_source = |result: &Value| {
        ["is_navigational", "is_widget", "is_knowledge_card", "is_image", "is_memory", "is_attachment"]
            .iter()
            .all(|flag| result[*flag] != Value::Bool(true))
            && result["url"].as_str().is_some_and(|url| !url.trim().is_empty())
    };
    for number in citation_numbers(&text) {
        if let Some(result) = number.checked_sub(1).and_then(|index| results.get(index)).filter(|r| is_source(r)) {
            findings.source(
                result["url"].as_str().unwrap_or_default(),
                result["name"].as_str().unwrap_or_default(),
                true,
            );
        }
    }
    for result in results.iter().filter(|r| is_source(r)) {
        findings.source(result["url"].as_str().unwrap_or_default(), result["name"].as_str().unwrap_or_default(), false);
    }

    // Products: any block whose kind names shopping or products (no public capture of the shape).
    for slot in blocks.values() {
        for (kind, block) in slot {
            if kind.contains("shopping") || kind.contains("product") {
                for item in
                    ["products", "items", "product_cards"].iter().filter_map(|key| block[*key].as_array()).flatten()
                {
                    findings.product(product_of(item));
                }
            }
        }
    }
    findings
}

/// A product card as a shopping block has it.
fn product_of(item: &Value) -> Product {
    let text = |keys: &[&str]| {
        keys.iter()
            .find_map(|key| match &item[*key] {
                Value::String(text) => Some(text.clone()),
                Value::Number(number) => Some(number.to_string()),
                Value::Object(price) => {
                    price.get("display").or_else(|| price.get("text")).and_then(Value::as_str).map(str::to_owned)
                }
                _ => None,
            })
            .unwrap_or_default()
    };
    Product {
        name: text(&["name", "title"]),
        url: text(&["url", "link"]),
        price: text(&["price", "price_text"]),
        merchant: text(&["merchant", "source", "seller", "brand"]),
    }
}

/// Every item of every step of a workflow block.
fn steps_items(workflow: &Value) -> impl Iterator<Item = &Value> {
    workflow["steps"].as_array().into_iter().flatten().flat_map(|step| step["items"].as_array().into_iter().flatten())
}

/// The answer's markdown: `ask_text` chunks (or its `answer`), else the workflow's text item.
fn answer_text(blocks: &BTreeMap<String, serde_json::Map<String, Value>>) -> String {
    if let Some(markdown) = blocks.get("ask_text").and_then(|slot| slot.get("markdown_block")) {
        let chunks: String = markdown["chunks"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        return if chunks.is_empty() { markdown["answer"].as_str().unwrap_or_default().to_owned() } else { chunks };
    }
    let workflow = blocks.get("workflow_root").and_then(|slot| slot.get("workflow_block")).unwrap_or(&Value::Null);
    steps_items(workflow)
        .find(|item| item["type"] == "WORKFLOW_ITEM_TEXT")
        .map(|item| {
            let payload = &item["payload"]["text_payload"];
            payload["text"].as_str().map(str::to_owned).unwrap_or_else(|| {
                payload["chunks"].as_array().into_iter().flatten().filter_map(Value::as_str).collect()
            })
        })
        .unwrap_or_default()
}

/// The `[n]` citation numbers of a text, in order of first appearance.
fn citation_numbers(text: &str) -> Vec<usize> {
    let mut numbers = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        rest = &rest[open + 1..];
        let Some(close) = rest.find(']') else { break };
        if let Ok(number) = rest[..close].parse::<usize>()
            && !numbers.contains(&number)
        {
            numbers.push(number);
        }
    }
    numbers
}

/// `patches` (RFC-6902 add, replace, remove; the empty path replaces the whole) applied to `doc`.
/// A patch whose path does not lead anywhere is skipped.
fn apply_patches(mut doc: Value, patches: &Value) -> Value {
    for patch in patches.as_array().into_iter().flatten() {
        let op = patch["op"].as_str().unwrap_or_default();
        let path = patch["path"].as_str().unwrap_or_default();
        let value = patch.get("value").cloned().unwrap_or(Value::Null);
        if path.is_empty() {
            if op != "remove" {
                doc = value;
            }
            continue;
        }
        // The parent's pointer is the path up to its last `/`; the last key is unescaped.
        let Some((parent, last)) = path.rsplit_once('/') else { continue };
        let last = last.replace("~1", "/").replace("~0", "~");
        let Some(target) = doc.pointer_mut(parent) else { continue };
        match target {
            Value::Array(items) => {
                let index = if last == "-" { Some(items.len()) } else { last.parse::<usize>().ok() };
                match (op, index) {
                    ("add", Some(index)) if index <= items.len() => items.insert(index, value),
                    ("replace", Some(index)) if index < items.len() => items[index] = value,
                    ("remove", Some(index)) if index < items.len() => {
                        items.remove(index);
                    }
                    _ => {}
                }
            }
            Value::Object(map) => {
                if op == "remove" {
                    map.remove(&last);
                } else {
                    map.insert(last, value);
                }
            }
            _ => {}
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::FoundIn;

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
        assert_eq!(adapter.stream_url_parts, ["/rest/sse/perplexity_ask"]);
        assert!(adapter.is_login_text("Sign in or create an account\nUnlock Pro Search"));
        assert!(!adapter.is_login_text("Share this thread"));
        let patterns = adapter.manifest().option_strings("sources_tab_patterns", &[]);
        assert_eq!(patterns.len(), 3);
        Ok(())
    }

    /// Frames shaped like the 2026-07-31 capture (perplexity-client spike/fixtures): sources
    /// first, text in `ask_text` chunks, web results patched in place while the text streams,
    /// `text_completed` one frame before the final one, then `end_of_stream`.
    const ASK_TEXT_STREAM: &str = concat!(
        "event: message\n",
        r#"data: {"backend_uuid":"b1","status":"PENDING","text_completed":false,"final_sse_message":false,"message_mode":"STREAMING","blocks":[{"intended_usage":"workflow_root","diff_block":{"field":"workflow_block","patches":[{"op":"replace","path":"","value":{"version":"1.0","status":"WORKFLOW_AWAITING_NEXT_STEPS","steps":[{"status":"WORKFLOW_COMPLETED","title":"Searching the web","tool_name":"search_web","items":[{"type":"WORKFLOW_ITEM_QUERIES","payload":{"queries_payload":{"queries":["capital of Australia","why is Canberra capital not Sydney"]}}}]}]}}]}}]}"#,
        "\n\n",
        "event: message\n",
        r#"data: {"backend_uuid":"b1","status":"PENDING","blocks":[{"intended_usage":"web_results","diff_block":{"field":"web_result_block","patches":[{"op":"replace","path":"","value":{"progress":"IN_PROGRESS","web_results":[{"name":"Canberra - Wikipedia","snippet":"","url":"https://en.wikipedia.org/wiki/Canberra","meta_data":{"client":"web"},"is_widget":false,"is_navigational":false},{"name":"Weather","url":"https://weather.example/w","is_widget":true},{"name":"old","url":"https://old.example/x"}]}}]}}]}"#,
        "\n\n",
        "event: message\n",
        r#"data: {"backend_uuid":"b1","status":"PENDING","blocks":[{"intended_usage":"ask_text","diff_block":{"field":"markdown_block","patches":[{"op":"replace","path":"","value":{"progress":"IN_PROGRESS","chunks":["The capital of Australia i"],"chunk_starting_offset":0}}]}}]}"#,
        "\n\n",
        "event: message\n",
        r#"data: {"backend_uuid":"b1","status":"PENDING","blocks":[{"intended_usage":"ask_text","diff_block":{"field":"markdown_block","patches":[{"op":"add","path":"/chunks/1","value":"s **Canberra**, not Syd"}]}},{"intended_usage":"web_results","diff_block":{"field":"web_result_block","patches":[{"op":"replace","path":"/web_results/2/url","value":"https://www.usanalysis.org/capital?utm_source=perplexity"},{"op":"replace","path":"/web_results/2/name","value":"What is the capital"}]}}]}"#,
        "\n\n",
        "event: message\n",
        r#"data: {"backend_uuid":"b1","status":"PENDING","blocks":[{"intended_usage":"ask_text","diff_block":{"field":"markdown_block","patches":[{"op":"add","path":"/chunks/2","value":"ney.[3][1]"}]}}]}"#,
        "\n\n",
        "event: message\n",
        r#"data: {"backend_uuid":"b1","status":"PENDING","text_completed":true,"blocks":[{"intended_usage":"web_results","diff_block":{"field":"web_result_block","patches":[{"op":"add","path":"/web_results/3","value":{"name":"Listed only","url":"https://listed.example/a#utm_source=perplexity&utm_medium=sources"}},{"op":"add","path":"/web_results/-","value":{"name":"Thread","url":"https://www.perplexity.ai/search/abc"}}]}}]}"#,
        "\n\n",
        "event: message\n",
        r#"data: {"backend_uuid":"b1","status":"COMPLETED","final":true,"final_sse_message":true,"text_completed":true,"message_mode":"FULL","text":"[{\"step_type\":\"INITIAL_QUERY\",\"content\":{\"query\":\"capital\"}},{\"step_type\":\"SEARCH_WEB\",\"content\":{\"goal_id\":\"0\",\"queries\":[{\"engine\":\"web\",\"query\":\"australia capital city\",\"limit\":8}]}}]","blocks":[{"intended_usage":"shopping_widgets","shopping_block":{"products":[{"name":"Flag of Australia","url":"https://shop.example/flag?utm_source=perplexity","price":"$12.99","merchant":"FlagShop"}]}}]}"#,
        "\n\n",
        "event: end_of_stream\ndata: {}\n\n",
    );

    fn summary(findings: &Findings) -> Vec<(&str, &str, bool)> {
        findings.sources.iter().map(|s| (s.url.as_str(), s.title.as_str(), s.inline)).collect()
    }

    #[test]
    fn the_ask_text_stream_gives_cited_then_listed_sources_queries_products_and_its_end() {
        let findings = parse_stream(&[ASK_TEXT_STREAM]);
        assert!(findings.complete);
        assert_eq!(
            summary(&findings),
            vec![
                ("https://www.usanalysis.org/capital?utm_source=perplexity", "What is the capital", true),
                ("https://en.wikipedia.org/wiki/Canberra", "Canberra - Wikipedia", true),
                ("https://listed.example/a#utm_source=perplexity&utm_medium=sources", "Listed only", false),
                ("https://www.perplexity.ai/search/abc", "Thread", false),
            ],
            "widgets are no sources; [3] is web_results[2] as patched in place"
        );
        assert_eq!(
            findings.search_queries,
            ["capital of Australia", "why is Canberra capital not Sydney", "australia capital city"]
        );
        assert_eq!(
            findings.clean_products(),
            vec![Product {
                name: "Flag of Australia".into(),
                url: "https://shop.example/flag".into(),
                price: "$12.99".into(),
                merchant: "FlagShop".into(),
            }]
        );
        // Merged with a page that showed one chip and nothing else: the stream fills in, own
        // pages and tracking are left out, and the disagreement is said.
        let page = vec![crate::adapter::Citation {
            url: "https://en.wikipedia.org/wiki/Canberra".into(),
            title: "Canberra".into(),
            domain: "en.wikipedia.org".into(),
            position: 1,
            inline: true,
            found_in: FoundIn::Page,
        }];
        let (merged, disagreement) = stream::merge(&page, &findings.sources);
        let got: Vec<(&str, bool, FoundIn)> = merged.iter().map(|c| (c.url.as_str(), c.inline, c.found_in)).collect();
        assert_eq!(
            got,
            vec![
                ("https://www.usanalysis.org/capital", true, FoundIn::Stream),
                ("https://en.wikipedia.org/wiki/Canberra", true, FoundIn::Both),
                ("https://listed.example/a", false, FoundIn::Stream),
            ]
        );
        assert!(disagreement.is_some());
    }

    #[test]
    fn a_stream_cut_before_its_final_frame_is_not_complete() {
        let cut =
            ASK_TEXT_STREAM.split("event: message\ndata: {\"backend_uuid\":\"b1\",\"status\":\"COMPLETED\"").next();
        let findings = parse_stream(&[cut.unwrap_or_default()]);
        assert!(!findings.complete, "text_completed alone is not the end");
        assert_eq!(findings.sources.len(), 4);
        assert!(findings.products.is_empty());
    }

    /// The 2026-08-04 capture's shape: no ask_text, the text in the workflow's text item; the
    /// older `pro_search_steps` plan block for the searches; `data: [DONE]` as the end.
    #[test]
    fn the_workflow_stream_and_plan_steps_are_read_too() {
        let body = concat!(
            "event: message\n",
            r#"data: {"status":"PENDING","blocks":[{"intended_usage":"pro_search_steps","plan_block":{"steps":[{"step_type":"SEARCH_WEB","search_web_content":{"queries":[{"query":"heat pumps cold"}]}},{"step_type":"READ_RESULTS","read_results_content":{"urls":["https://a.example/1"]}}]}},{"intended_usage":"web_results","web_result_block":{"web_results":[{"name":"A","url":"https://a.example/1"},{"name":"B","url":"https://b.example/2"}]}}]}"#,
            "\n\n",
            "event: message\n",
            r#"data: {"status":"PENDING","blocks":[{"intended_usage":"workflow_root","diff_block":{"field":"workflow_block","patches":[{"op":"replace","path":"","value":{"steps":[]}},{"op":"add","path":"/steps/0","value":{"items":[{"type":"WORKFLOW_ITEM_TEXT","payload":{"text_payload":{"chunks":["Heat pumps move heat.[2]"]}}}]}}]}}]}"#,
            "\n\n",
            "event: message\n",
            r#"data: {"status":"PENDING","blocks":[{"intended_usage":"workflow_root","diff_block":{"field":"workflow_block","patches":[{"op":"add","path":"/steps/0/items/0/payload/text_payload/chunks/1","value":" They work in the cold.[1]"}]}}]}"#,
            "\n\ndata: [DONE]\n\n",
        );
        let findings = parse_stream(&[body]);
        assert!(findings.complete);
        assert_eq!(summary(&findings), vec![("https://b.example/2", "B", true), ("https://a.example/1", "A", true)]);
        assert_eq!(findings.search_queries, ["heat pumps cold"]);
        assert!(parse_stream(&[]).sources.is_empty());
        assert!(!parse_stream(&["data: not json\n\n"]).complete);
    }

    #[test]
    fn patches_add_replace_and_remove_and_skip_what_leads_nowhere() {
        let doc = serde_json::json!({"chunks": ["a"], "meta": {"x": 1}});
        let patches = serde_json::json!([
            {"op": "add", "path": "/chunks/1", "value": "b"},
            {"op": "add", "path": "/chunks/-", "value": "c"},
            {"op": "replace", "path": "/meta/x", "value": 2},
            {"op": "add", "path": "/meta/y~1z", "value": 3},
            {"op": "remove", "path": "/chunks/0"},
            {"op": "add", "path": "/nowhere/deep/1", "value": 9},
            {"op": "add", "path": "/chunks/99", "value": "far"},
        ]);
        assert_eq!(apply_patches(doc, &patches), serde_json::json!({"chunks": ["b", "c"], "meta": {"x": 2, "y/z": 3}}));
        assert_eq!(citation_numbers("a [2] b [10][2] [x] [1"), vec![2, 10]);
    }
}
