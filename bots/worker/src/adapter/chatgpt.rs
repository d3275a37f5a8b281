//! ChatGPT (chatgpt.com, or a look-alike at `--assistant-url`).
//!
//! The end of an answer is read from independent signals, never from a fixed sleep
//! ([`common::finished`]): the stop control is gone with nothing thinking or streaming
//! (`stop-gone`), the turn's action bar is there (`action-bar`), the teed answer stream has ended
//! (`stream-done`), or the answer has not changed for a long while (`quiet-long`); two of them
//! and the settle window with no change. The stream pauses (and a reasoning model thinks) for
//! longer than a second, and the stop control and the action bar each clear or flash early on
//! the real site, so no single signal ends an answer. A turn that finishes with no text is an
//! empty answer ([`AskError::EmptyAnswer`]), said then rather than at the deadline.
//!
//! Degrade, don't fail: only the composer, the send control and the assistant's message are
//! required. A missing turn wrapper, action bar, answer element, Sources button or panel is noted
//! in [`Reading`] and the answer read without it (the whole message's text when no answer
//! element matches).
//!
//! Sources come from the page and from the answer stream (`/backend-api/f/conversation`, delta
//! encoding v1: [`parse_stream`]), merged: the Sources panel (found by its links, else as the
//! open flyout or dialog whatever its label, its button by selector else by its text, its
//! "N more" expanded), and the stream's `content_references`, `search_result_groups` and
//! `sources_footnote`. The stream also names the searches run (`search_model_queries`) and the
//! products shown (private-use product markers in the text).
//!
//! Site quirks handled here: the "Answer now" button of reasoning models (never clicked), the A/B
//! prompt "Which response do you prefer?" (the first response is preferred and captured, never a
//! mix), Sources that show up after the answer, `chatgpt.com/link?url=` redirects, whether a web
//! search ran, the Cloudflare challenge, and a missing composer on a loaded page (reported at
//! once as a selector miss).

use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde_json::Value;
use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;

use super::canvas;
use super::common::{self, Arrival, Link, PageScript, ProbeFailures, Progress, Source};
use super::stream::{self, Document, Findings, Mark, ModelLimit};
use super::{Adapter, AnswerKind, AskError, Captured, Fallback, Manifest, PageState, Product, Reading, Typing};
use crate::markdown::html_to_markdown;
use aap_proto::urls::{clean_url, is_assistant_page};

const PAGE_JS: &str = concat!(include_str!("dom.js"), include_str!("chatgpt.js"));

/// The ChatGPT adapter, driven by its [`Manifest`].
#[derive(Debug, Clone)]
pub struct ChatGpt {
    pub(super) manifest: Manifest,
    origin: String,
    page: PageScript,
    /// URL fragments of the answer stream (`[options] stream_url_parts`).
    stream_url_parts: Vec<String>,
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
    /// A streaming marker (`.streaming-animation`, `aria-busy`, a placeholder id) is on the answer.
    #[serde(default)]
    streaming: bool,
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
    /// The answer's text so far.
    #[serde(default)]
    text: String,
    signature: String,
    action_bar: bool,
    error: Option<String>,
    /// A turn selector matched around the message.
    #[serde(default)]
    turn: bool,
    /// How the turn's Sources button was found: `selector`, `text`, or not at all.
    #[serde(default)]
    sources_button: Option<String>,
    /// Canvas cards in the turn: an answer may be one alone, with no text of its own.
    #[serde(default)]
    documents: usize,
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
    /// No answer element matched: the text is the whole message's.
    #[serde(default)]
    fallback: bool,
    /// The canvas cards in the turn, as the page shows them.
    #[serde(default)]
    documents: Vec<Card>,
}

/// A canvas card: its title and the HTML of its body, empty when the card shows none.
#[derive(Debug, Default, Deserialize)]
struct Card {
    #[serde(default)]
    title: String,
    #[serde(default)]
    html: String,
}

/// What the Sources panel showed.
#[derive(Debug, Default, Deserialize)]
struct Listed {
    /// `link` (a sources_link selector matched), `panel` (the links of the open panel), or none.
    via: Option<String>,
    links: Vec<Source>,
}

impl ChatGpt {
    /// The roles an answer cannot be read without: the composer, the send control and the
    /// assistant's message (its answer element may be missing: read by fallback). The manifest
    /// must list them; every other role is optional and its absence only lowers the answer's
    /// confidence ([`Reading::missing`]).
    pub const REQUIRED: &'static [&'static str] = &["composer", "send_button", "assistant_message"];

    /// Every selector role this adapter reads from its manifest.
    pub const ROLES: &'static [&'static str] = &[
        "composer",
        "send_button",
        "stop_button",
        "login_wall",
        "assistant_message",
        "turn",
        "answer_markdown",
        "answer_noise",
        "streaming_marker",
        "action_bar",
        "error",
        "citation_link",
        "citation_pill",
        "sources_button",
        "sources_panel",
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
        "document_card",
        "document_title",
        "document_body",
    ];

    /// An adapter for the site at `origin` (the manifest's `base_url` when `None`).
    pub fn new(manifest: Manifest, origin: Option<&str>) -> ChatGpt {
        let origin = common::origin(&manifest, origin);
        let page = PageScript::new(PAGE_JS, &manifest);
        let stream_url_parts = manifest.option_strings("stream_url_parts", &["/backend-api/", "/backend-anon/"]);
        ChatGpt { manifest, origin, page, stream_url_parts }
    }

    async fn probe(&self, driver: &WebDriver) -> WebDriverResult<Probe> {
        self.page.read(driver, "probe").await
    }

    /// Whether the probe shows a bot challenge: the challenge role, or a challenge title on a
    /// page without the composer or a conversation (the conversation's title may quote a prompt
    /// about "verify you are human": taken for a challenge, it set the account aside).
    fn challenged(&self, probe: &Probe) -> Option<AskError> {
        let own_page = probe.composer || probe.messages > 0;
        let title = !own_page && self.manifest.is_challenge(&probe.title);
        (probe.challenge || title).then(|| {
            let title = if probe.title.trim().is_empty() { "bot challenge" } else { probe.title.trim() };
            AskError::Challenge(title.to_owned())
        })
    }

    /// One look at the page on its way to the composer: the composer, a wall (login,
    /// challenge) or neither yet.
    async fn look(&self, driver: &WebDriver) -> WebDriverResult<Arrival> {
        let probe = self.probe(driver).await?;
        Ok(if probe.composer {
            Arrival::Composer
        } else if let Some(challenge) = self.challenged(&probe) {
            Arrival::Blocked(challenge)
        } else if probe.login_wall {
            Arrival::Blocked(AskError::LoggedOut)
        } else {
            Arrival::Waiting { loaded: probe.ready }
        })
    }

    /// Opens a new conversation and waits for the composer. A login wall means the session is
    /// gone, a challenge page that the client is flagged; a page that has loaded but shows none
    /// of these nor a composer within `missing_after_load_ms` has changed its markup.
    async fn open_new_chat(&self, driver: &WebDriver) -> Result<(), AskError> {
        let grace = self.manifest.option_ms("missing_after_load_ms", 4000);
        let look = move || self.look(driver);
        common::open(driver, &self.origin, &self.manifest, grace, look).await
    }

    /// Waits until the answer after `messages_before` is complete, preferring the first
    /// response of an A/B prompt on the way. Returns the time to the first text; the signals
    /// that ended the wait and the roles it missed go into `reading`.
    async fn wait_for_answer(
        &self,
        driver: &WebDriver,
        messages_before: usize,
        sent_at: Instant,
        mark: Mark,
        reading: &mut Reading,
        typing: &Typing,
    ) -> Result<Option<Duration>, AskError> {
        let timing = &self.manifest.timing;
        let deadline = sent_at + timing.answer_deadline();
        let prefer_retry = self.manifest.option_ms("prefer_retry_ms", 3000);
        let mut preferred_at: Option<Instant> = None;
        let stream_settle = common::stream_settle(&self.manifest);
        let mut progress = Progress::new(sent_at);
        let mut failures = ProbeFailures::default();
        loop {
            let probe = failures.check(self.probe(driver).await)?;
            let now = Instant::now();
            if let Some(probe) = probe {
                if let Some(challenge) = self.challenged(&probe) {
                    return Err(challenge);
                }
                if probe.login_wall && !probe.composer {
                    return Err(AskError::LoggedOut);
                }
                // Thinking and streaming markers count as busy: a reasoning model shows nothing
                // new for a while, and the stop control may clear before the text is done.
                let busy = probe.stop || probe.thinking || probe.streaming;
                let answer = probe.last.as_ref().filter(|_| probe.messages > messages_before);
                match answer {
                    Some(last) => {
                        progress.saw(&last.signature, last.text_len, now);
                        typing.saw(&last.text);
                        if !busy && let Some(error) = last.error.as_deref().filter(|e| !e.is_empty()) {
                            let parts = &self.stream_url_parts;
                            return Err(common::classify_sent(driver, &self.manifest, error, mark, parts).await);
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
                        let quiet = progress.quiet(now);
                        // The full settle window outlasts the stream's pauses; once the stream
                        // has ended, only the page's last render is waited for.
                        if !busy && probe.ab.is_none() && quiet >= stream_settle {
                            let stream_done = stream::done(driver, mark, &self.stream_url_parts).await;
                            let settle = if stream_done { stream_settle } else { timing.settle() };
                            let signals =
                                [("stop-gone", true), ("action-bar", last.action_bar), ("stream-done", stream_done)];
                            if let Some(held) = common::finished(&signals, quiet, settle) {
                                tracing::debug!(signals = ?held, "the answer is complete");
                                reading.finish_signals = held;
                                if !last.turn {
                                    reading.missing("turn");
                                }
                                if !last.action_bar {
                                    reading.missing("action_bar");
                                }
                                if last.text_len == 0 && last.documents == 0 {
                                    return Err(AskError::EmptyAnswer);
                                }
                                return Ok(progress.ttft());
                            }
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
                    // A comparison no click resolved, with nothing else going on: the prefer
                    // button has drifted, which is worth saying instead of "timeout".
                    let quiet = progress.quiet(now) >= Duration::from_secs(5);
                    if !busy && quiet && probe.ab.is_some() && answer.is_some_and(|last| last.text_len > 0) {
                        return Err(AskError::SelectorMissing("ab_prefer"));
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
        match self.page.click(driver, "ab_prefer").await {
            Ok(clicked) => {
                if clicked {
                    tracing::info!("the assistant asked which response is preferred; preferred the first");
                }
                Ok(clicked)
            }
            // Covered for a moment by something animating: the next probe decides again.
            Err(AskError::Browser(error))
                if matches!(error.as_inner(), WebDriverErrorInner::ElementClickIntercepted(_)) =>
            {
                tracing::debug!(%error, "the prefer click did not land");
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Every source the Sources panel lists, in its order (cited ones first, then the ones
    /// only listed). The Sources button may show up after the answer: it is waited for (up to
    /// `sources_button_wait_ms`) only while sources are `expected` (the stream names some, or
    /// the page cites some); `None` when there is none. Once open, the panel's "N more" are
    /// expanded, and it is read as soon as it lists every source the stream names, else once it
    /// stops growing between two probes (best effort: the inline citations stand on their own).
    async fn listed_sources(
        &self,
        driver: &WebDriver,
        stream_urls: &[String],
        expected: bool,
        reading: &mut Reading,
    ) -> Option<Vec<Source>> {
        let poll = self.manifest.timing.poll();
        let wait = self.manifest.option_ms("sources_button_wait_ms", 8000);
        let started = Instant::now();
        let button = loop {
            let via = match self.probe(driver).await {
                Ok(probe) => probe.last.and_then(|last| last.sources_button),
                Err(error) => {
                    tracing::debug!(%error, "cannot look for the sources button");
                    None
                }
            };
            if let Some(via) = via {
                match self.page.element(driver, "sources_button").await {
                    Ok(Some(button)) => {
                        if via != "selector" {
                            // Found by its text, the designed last resort (no CSS matches a
                            // text): not a missing role, but worth a line.
                            tracing::debug!("the sources button was found by its text only");
                        }
                        break button;
                    }
                    Ok(None) => {}
                    Err(error) => tracing::debug!(%error, "no sources button"),
                }
            }
            if !expected || started.elapsed() >= wait {
                if expected {
                    tracing::warn!("the answer has sources but no sources button showed up");
                    reading.missing("sources_button");
                }
                return None;
            }
            tokio::time::sleep(poll).await;
        };
        if let Err(error) = self.page.click_element(driver, &button).await {
            tracing::warn!(%error, "cannot open the sources panel");
            return Some(Vec::new());
        }
        let deadline = Instant::now() + self.manifest.timing.sources_panel();
        let mut previous = 0;
        loop {
            // Hidden entries first: "N more" shows the rest of the list.
            match self.page.click(driver, "sources_more").await {
                Ok(true) => {
                    tokio::time::sleep(poll).await;
                    continue;
                }
                Ok(false) => {}
                Err(error) => tracing::debug!(%error, "cannot expand the sources panel"),
            }
            let listed = match self.page.read::<Listed>(driver, "sources").await {
                Ok(listed) => listed,
                Err(error) => {
                    tracing::debug!(%error, "cannot read the sources panel");
                    Listed::default()
                }
            };
            let count = listed.links.len();
            let covers_stream = !stream_urls.is_empty() && {
                let shown: Vec<String> = listed.links.iter().map(|s| url_of(&s.href)).collect();
                stream_urls.iter().all(|url| shown.contains(url))
            };
            // Read it once it lists what the stream named, or has stopped growing.
            if covers_stream || (count > 0 && count == previous) || Instant::now() >= deadline {
                match listed.via.as_deref() {
                    Some("link") => {}
                    Some(_) => reading.missing("sources_link"),
                    None => {
                        tracing::warn!("the sources panel showed no links in time");
                        reading.missing("sources_panel");
                    }
                }
                return Some(listed.links);
            }
            previous = count;
            tokio::time::sleep(poll).await;
        }
    }
}

impl Adapter for ChatGpt {
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
        self.open_new_chat(driver).await?;
        let before = self.probe(driver).await?.messages;
        self.page.type_prompt(driver, prompt).await?;
        let mark = stream::mark(driver).await;
        let sent_at = Instant::now();
        self.page.send(driver, "send", Duration::from_secs(5), self.manifest.timing.poll()).await?;
        let mut reading = Reading::default();
        let ttft = self.wait_for_answer(driver, before, sent_at, mark, &mut reading, typing).await?;
        let total = sent_at.elapsed();

        let extracted: Extracted = self.page.extract(driver, "assistant_message").await?;
        if extracted.comparison {
            // Only reachable when the choice did not take: still the first response alone.
            tracing::warn!("the a/b comparison is still shown; capturing its first response");
        }
        if extracted.fallback {
            reading.missing("answer_markdown");
            reading.read_by_fallback = true;
        }
        let findings = match stream::read(driver, mark, &self.stream_url_parts).await {
            Ok(teed) => {
                let bodies: Vec<&str> = teed.iter().map(|t| t.text.as_str()).collect();
                parse_stream(&bodies)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read the answer stream; sources from the page only");
                Findings::default()
            }
        };
        // The canvases the answer wrote beside its text: the turn shows their cards, and the
        // message may hold no text of its own.
        let cards: Vec<Document> = extracted
            .documents
            .iter()
            .map(|card| Document { title: common::collapse(&card.title), text: html_to_markdown(&card.html) })
            .collect();
        let (response_text, response_markdown) =
            common::with_documents(&extracted.text, &extracted.html, &findings, &cards, &mut reading)?;
        let stream_urls: Vec<String> = findings
            .sources
            .iter()
            .map(|s| clean_url(&s.url))
            .filter(|url| url.starts_with("http") && !is_assistant_page(url))
            .collect();
        let expected = !stream_urls.is_empty() || !extracted.links.is_empty();
        let listed = self.listed_sources(driver, &stream_urls, expected, &mut reading).await;
        let page_citations = common::citations(&extracted.links, listed.as_deref().unwrap_or_default(), url_of);
        let (citations, disagreement) = stream::merge(&page_citations, &findings.sources);
        if let Some(disagreement) = &disagreement {
            tracing::warn!(%disagreement, "the page and the answer stream name different sources");
        }
        reading.disagreement = disagreement;
        reading.cut_short = common::cut_short(driver, &self.manifest, findings.cut_short, prompt, &response_text).await;
        common::check_private(driver, &self.manifest, &mut reading).await;
        let stream_said = stream_fallback(&findings);
        reading.model_fallback =
            common::model_fallback(driver, &self.manifest, stream_said, stream_lift(&findings), prompt, &response_text)
                .await;
        let web_search = web_search(
            extracted.search.as_deref(),
            !findings.search_queries.is_empty(),
            !citations.is_empty() || listed.is_some(),
        );
        Ok(Captured {
            response_text,
            response_markdown,
            html: extracted.html,
            citations,
            model: extracted.model.filter(|model| !model.is_empty()),
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

/// A link's clean URL: chatgpt.com's outbound redirect (`/link?url=...`) unwrapped, tracking
/// removed.
fn url_of(href: &str) -> String {
    let unwrapped = url::Url::parse(href).ok().and_then(|url| {
        let host = url.host_str()?.trim_start_matches("www.");
        (host == "chatgpt.com" && url.path() == "/link")
            .then(|| url.query_pairs().find(|(key, _)| key == "url").map(|(_, value)| value.into_owned()))
            .flatten()
    });
    clean_url(unwrapped.as_deref().unwrap_or(href))
}

/// Whether a web search ran: the page's search line or the stream's queries say so; no search
/// line, no query and no sources at all say it did not; sources alone leave it open (the line's
/// selector may have drifted).
fn web_search(indicator: Option<&str>, queried: bool, has_sources: bool) -> Option<bool> {
    match indicator {
        Some(_) => Some(true),
        None if queried => Some(true),
        None if !has_sources => Some(false),
        None => None,
    }
}

/// One message of the stream, as far as sources go.
#[derive(Debug, Default)]
struct StreamMessage {
    /// The assistant's answer (or candidate 0 of an A/B prompt): its sources count.
    answer: bool,
    /// `paragen_variant_index` of an A/B candidate.
    candidate: Option<u64>,
    text: String,
    references: Vec<Value>,
    groups: Vec<Value>,
    /// Older forms: `metadata.citations[].metadata` and `_cite_metadata.metadata_list`.
    cited: Vec<(String, String)>,
    listed: Vec<(String, String)>,
    /// Its `finish_details` said `max_tokens`: the model stopped at its output limit.
    cut_short: bool,
    /// The model that wrote it (`metadata.model_slug`).
    model: Option<String>,
    /// `assistant`, `tool`, ...
    role: String,
    /// Whom an assistant message addresses (`recipient`) or which tool replies (`author.name`).
    function: String,
    /// A code message's text (`content.text`): a tool call's arguments.
    code: String,
    /// A canvas tool's reply (`metadata.canvas`).
    canvas: Option<Value>,
}

/// Reads chatgpt.com's answer stream(s) (`text/event-stream`, "delta encoding" v1): what the
/// text cites (`content_references` of type `grouped_webpages`/`webpage`, attached to their
/// private-use markers), what it only lists (`search_result_groups`, `sources_footnote`,
/// supporting websites), the searches run (`search_model_queries`, or the legacy
/// `search_queries[].q`) and the products shown (`products`, `product`, `product_entity`
/// markers). Delta frames that leave out `p` and `o` inherit the previous frame's; `{"v":[ops]}`
/// is a batch; `/paragen/N/...` is candidate N of an A/B prompt (only candidate 0 counts).
/// Complete at `message_stream_complete` or the message's `finished_successfully`; cut short
/// when the answer's `finish_details` are of type `max_tokens` (the model's output limit, where
/// the site offers to continue: xtekky/gpt4free's web provider continued on it, 2023).
pub(crate) fn parse_stream(bodies: &[&str]) -> Findings {
    let mut findings = Findings::default();
    let mut messages: Vec<StreamMessage> = Vec::new();
    let mut served_by: Option<String> = None;
    for body in bodies {
        let mut path = String::new();
        let mut op = String::new();
        let mut current: Option<usize> = None;
        for (_event, value) in stream::json_events(body) {
            let Value::Object(frame) = &value else { continue };
            if let Some(kind) = frame.get("type").and_then(Value::as_str) {
                match kind {
                    "message_stream_complete" => findings.complete = true,
                    "conversation_detail_metadata" => model_limits(&mut findings, &value),
                    "server_ste_metadata" => {
                        if let Some(model) = value.pointer("/metadata/model_slug").and_then(Value::as_str) {
                            served_by = Some(model.to_owned());
                        }
                    }
                    _ => {}
                }
                continue;
            }
            let Some(v) = frame.get("v") else { continue };
            let named = frame.contains_key("p") || frame.contains_key("o");
            if !named && is_batch(v) {
                apply(&mut findings, &mut messages, &mut current, "", "patch", v);
                continue;
            }
            if let Some(p) = frame.get("p").and_then(Value::as_str) {
                path = p.to_owned();
            }
            if let Some(o) = frame.get("o").and_then(Value::as_str) {
                op = o.to_owned();
            }
            if !named && frame.get("v").is_some_and(|v| v.get("message").is_some()) {
                // An opening without p/o (older streams send the whole message).
                apply(&mut findings, &mut messages, &mut current, "", "add", v);
                continue;
            }
            apply(&mut findings, &mut messages, &mut current, &path, &op, v);
        }
    }
    let answers: Vec<&StreamMessage> =
        messages.iter().filter(|m| m.answer && m.candidate.is_none_or(|index| index == 0)).collect();
    findings.cut_short = answers.iter().any(|message| message.cut_short);
    findings.model = answers.iter().rev().find_map(|message| message.model.clone()).or(served_by);
    for message in &answers {
        let mut cited: Vec<(usize, usize, &Value)> = message
            .references
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                matches!(kind_of(r), "grouped_webpages" | "grouped_webpages_v2" | "webpage" | "webpage_extended")
            })
            .map(|(order, r)| (reference_position(&message.text, r), order, r))
            .collect();
        cited.sort_by_key(|(position, order, _)| (*position, *order));
        for (_, _, reference) in &cited {
            let items = reference.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
            if items.is_empty() {
                findings.source(str_of(reference, "url"), str_of(reference, "title"), true);
            }
            for item in &items {
                findings.source(str_of(item, "url"), str_of(item, "title"), true);
            }
        }
        for (url, title) in &message.cited {
            findings.source(url, title, true);
        }
    }
    for message in &answers {
        for reference in &message.references {
            for item in reference.get("items").and_then(Value::as_array).into_iter().flatten() {
                for site in item.get("supporting_websites").and_then(Value::as_array).into_iter().flatten() {
                    findings.source(str_of(site, "url"), str_of(site, "title"), false);
                }
            }
        }
        for group in &message.groups {
            for entry in group.get("entries").and_then(Value::as_array).into_iter().flatten() {
                findings.source(str_of(entry, "url"), str_of(entry, "title"), false);
            }
        }
        for reference in message.references.iter().filter(|r| kind_of(r).starts_with("sources_footnote")) {
            for source in reference.get("sources").and_then(Value::as_array).into_iter().flatten() {
                findings.source(str_of(source, "url"), str_of(source, "title"), false);
            }
        }
        for (url, title) in &message.listed {
            findings.source(url, title, false);
        }
        for name in product_names(&message.text) {
            findings.product(Product { name, ..Product::default() });
        }
    }
    let calls: Vec<canvas::Call<'_>> = messages
        .iter()
        .filter(|m| m.candidate.is_none_or(|index| index == 0))
        .map(|m| canvas::Call { role: &m.role, function: &m.function, arguments: &m.code, canvas: m.canvas.as_ref() })
        .collect();
    let canvases = canvas::Canvases::replay(&calls);
    findings.document_edits_missed = canvases.missed;
    findings.documents = canvases.documents();
    findings
}

/// Whether `v` is a batch of operations (`[{"p":..,"o":..,"v":..}, ...]`) rather than a value.
fn is_batch(v: &Value) -> bool {
    v.as_array()
        .is_some_and(|ops| !ops.is_empty() && ops.iter().all(|op| op.get("o").is_some() && op.get("p").is_some()))
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn kind_of(reference: &Value) -> &str {
    str_of(reference, "type")
}

/// Where a reference sits in the text: its marker's place (in characters), else its
/// `start_idx`, else at the end.
fn reference_position(text: &str, reference: &Value) -> usize {
    let matched = str_of(reference, "matched_text");
    if !matched.trim().is_empty()
        && let Some(at) = text.find(matched)
    {
        return text[..at].chars().count();
    }
    reference.get("start_idx").and_then(Value::as_u64).map_or(usize::MAX, |at| at as usize)
}

/// One delta operation on the stream's document (`{message, conversation_id, error}`).
fn apply(
    findings: &mut Findings,
    messages: &mut Vec<StreamMessage>,
    current: &mut Option<usize>,
    path: &str,
    op: &str,
    v: &Value,
) {
    if op == "patch" {
        for inner in v.as_array().into_iter().flatten() {
            apply(
                findings,
                messages,
                current,
                str_of(inner, "p"),
                str_of(inner, "o"),
                inner.get("v").unwrap_or(&Value::Null),
            );
        }
        return;
    }
    if path.is_empty() && op == "add" {
        if let Some(message) = v.get("message") {
            messages.push(open_message(findings, message));
            *current = Some(messages.len() - 1);
        }
        return;
    }
    // `/paragen/N/...` addresses candidate N of an A/B prompt, `/message/...` the current one.
    let (target, rest) = match path.strip_prefix("/paragen/") {
        Some(rest) => {
            let (index, rest) = rest.split_once('/').unwrap_or((rest, ""));
            let index: Option<u64> = index.parse().ok();
            (messages.iter().rposition(|m| m.candidate.is_some() && m.candidate == index), format!("/{rest}"))
        }
        None => (*current, path.strip_prefix("/message").map(str::to_owned).unwrap_or_default()),
    };
    let Some(message) = target.and_then(|at| messages.get_mut(at)) else { return };
    match (rest.as_str(), op) {
        ("/content/parts/0", "append") => message.text.push_str(v.as_str().unwrap_or_default()),
        ("/content/parts/0", "replace") => message.text = v.as_str().unwrap_or_default().to_owned(),
        ("/content/text", "append") => message.code.push_str(v.as_str().unwrap_or_default()),
        ("/content/text", "replace") => message.code = v.as_str().unwrap_or_default().to_owned(),
        ("/metadata", "append" | "replace") => read_metadata(findings, message, v),
        ("/metadata/finish_details", "append" | "replace") => message.cut_short = cut_at_limit(v),
        ("/metadata/content_references", "append") => {
            message.references.extend(v.as_array().cloned().unwrap_or_default())
        }
        ("/metadata/content_references", "replace") => message.references = v.as_array().cloned().unwrap_or_default(),
        ("/metadata/search_result_groups", "append") => {
            message.groups.extend(v.as_array().cloned().unwrap_or_default())
        }
        ("/metadata/search_result_groups", "replace") => message.groups = v.as_array().cloned().unwrap_or_default(),
        ("/metadata/search_model_queries" | "/metadata/search_queries", _) => queries(findings, v),
        (rest, "append") => {
            // `/metadata/content_references/N` (merge) and `/N/items` (more items).
            if let Some(tail) = rest.strip_prefix("/metadata/content_references/") {
                let (index, field) = tail.split_once('/').unwrap_or((tail, ""));
                let Some(reference) = index.parse::<usize>().ok().and_then(|i| message.references.get_mut(i)) else {
                    return;
                };
                match (field, reference) {
                    ("", Value::Object(fields)) => {
                        if let Value::Object(more) = v {
                            for (key, value) in more {
                                fields.insert(key.clone(), value.clone());
                            }
                        }
                    }
                    (field, Value::Object(fields)) => {
                        if let Some(Value::Array(list)) = fields.get_mut(field) {
                            list.extend(v.as_array().cloned().unwrap_or_default());
                        } else {
                            fields.insert(field.to_owned(), v.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
        ("/status", "replace") if v.as_str() == Some("finished_successfully") && message.answer => {
            findings.complete = true;
        }
        _ => {}
    }
}

/// A message the stream opens: whether it is the answer, its text so far and its metadata.
fn open_message(findings: &mut Findings, message: &Value) -> StreamMessage {
    let role = message.pointer("/author/role").and_then(Value::as_str).unwrap_or_default();
    let content_type = message.pointer("/content/content_type").and_then(Value::as_str).unwrap_or_default();
    let recipient = message.get("recipient").and_then(Value::as_str).unwrap_or("all");
    let metadata = message.get("metadata").cloned().unwrap_or(Value::Null);
    let mut opened = StreamMessage {
        answer: role == "assistant" && recipient == "all" && matches!(content_type, "text" | "multimodal_text"),
        candidate: metadata.get("paragen_variant_index").and_then(Value::as_u64),
        text: message.pointer("/content/parts/0").and_then(Value::as_str).unwrap_or_default().to_owned(),
        role: role.to_owned(),
        function: if role == "tool" {
            message.pointer("/author/name").and_then(Value::as_str).unwrap_or_default().to_owned()
        } else {
            recipient.to_owned()
        },
        code: message.pointer("/content/text").and_then(Value::as_str).unwrap_or_default().to_owned(),
        ..StreamMessage::default()
    };
    read_metadata(findings, &mut opened, &metadata);
    opened
}

/// What a message's metadata (or a patch of it) says: references, results, searches.
fn read_metadata(findings: &mut Findings, message: &mut StreamMessage, metadata: &Value) {
    if let Some(references) = metadata.get("content_references").and_then(Value::as_array) {
        message.references.extend(references.iter().cloned());
    }
    if let Some(groups) = metadata.get("search_result_groups").and_then(Value::as_array) {
        message.groups.extend(groups.iter().cloned());
    }
    for key in ["search_model_queries", "search_queries"] {
        if let Some(value) = metadata.get(key) {
            queries(findings, value);
        }
    }
    for citation in metadata.get("citations").and_then(Value::as_array).into_iter().flatten() {
        let inner = citation.get("metadata").unwrap_or(citation);
        message.cited.push((str_of(inner, "url").to_owned(), str_of(inner, "title").to_owned()));
    }
    let listed = metadata.pointer("/_cite_metadata/metadata_list").and_then(Value::as_array);
    for entry in listed.into_iter().flatten() {
        message.listed.push((str_of(entry, "url").to_owned(), str_of(entry, "title").to_owned()));
    }
    if let Some(finish) = metadata.get("finish_details") {
        message.cut_short = cut_at_limit(finish);
    }
    if let Some(model) = metadata.get("model_slug").and_then(Value::as_str).filter(|model| !model.is_empty()) {
        message.model = Some(model.to_owned());
    }
    if let Some(canvas) = metadata.get("canvas").filter(|canvas| canvas.is_object()) {
        message.canvas = Some(canvas.clone());
    }
}

/// What `conversation_detail_metadata` says of the account's limits (a ChatGPT reverse proxy's
/// tests of 2026-09, `gpt2agent`; an `/f/conversation` capture's notes of 2026-10):
/// `model_limits` (`[{"model_slug": "gpt-6-pro", "resets_after": "2026-09-20T01:31:58Z"}]`, the
/// models whose plan limit is used up) and `intended_default_model_slug` (the model the plan
/// answers with, where `default_model_slug` is the one it falls back to).
fn model_limits(findings: &mut Findings, frame: &Value) {
    if let Some(intended) = frame.get("intended_default_model_slug").and_then(Value::as_str) {
        findings.intended_model = Some(intended.to_owned()).filter(|model| !model.is_empty());
    }
    for entry in frame.get("model_limits").and_then(Value::as_array).into_iter().flatten() {
        let model = str_of(entry, "model_slug");
        if model.is_empty() {
            continue;
        }
        let lifts_at = entry.get("resets_after").and_then(crate::limit_reset::time_value);
        findings.model_limits.retain(|limit| limit.model != model);
        findings.model_limits.push(ModelLimit { model: model.to_owned(), lifts_at });
    }
}

/// The stream's own word that another model answered: the plan's model
/// (`intended_default_model_slug`) is among those whose limit is used up, and the answer's
/// `model_slug` is another. A limit on a model the plan does not answer with is no fallback.
fn stream_fallback(findings: &Findings) -> Option<Fallback> {
    let intended = findings.intended_model.as_deref()?;
    let answered = findings.model.as_deref().filter(|model| *model != intended)?;
    let limit = findings.model_limits.iter().find(|limit| limit.model == intended)?;
    Some(Fallback {
        said: format!(
            "the plan's model {intended} is at its limit (the answer stream's model_limits); {answered} answered"
        ),
        lifts_at: limit.lifts_at,
    })
}

/// When the plan's model is back, as the stream says: its own limit's time, else the time of the
/// only model listed.
fn stream_lift(findings: &Findings) -> Option<SystemTime> {
    let limits = &findings.model_limits;
    let intended = findings.intended_model.as_deref();
    match limits.iter().find(|limit| Some(limit.model.as_str()) == intended) {
        Some(limit) => limit.lifts_at,
        None if limits.len() == 1 => limits[0].lifts_at,
        None => None,
    }
}

/// Whether `finish_details` say the model stopped at its output limit (`{"type": "max_tokens"}`)
/// rather than at the end of its answer (`stop`) or by the reader's hand (`interrupted`).
fn cut_at_limit(finish: &Value) -> bool {
    str_of(finish, "type") == "max_tokens"
}

/// Search queries in each known form: `{"queries": [...]}`, a bare array of strings, or
/// `[{"q": ...}]`.
fn queries(findings: &mut Findings, value: &Value) {
    let list = value.get("queries").unwrap_or(value);
    for query in list.as_array().into_iter().flatten() {
        match query {
            Value::String(text) => findings.query(text),
            other => findings.query(str_of(other, "q")),
        }
    }
}

/// The product names the text's markers carry: `products` selections (`[[id, name], ...]`),
/// `product` and `product_entity` (`[id, name, ...]`).
fn product_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for piece in text.split('\u{e200}').skip(1) {
        let Some((kind, rest)) = piece.split_once('\u{e202}') else { continue };
        let Some((body, _)) = rest.split_once('\u{e201}') else { continue };
        let Ok(value) = serde_json::from_str::<Value>(body) else { continue };
        match kind {
            "products" => {
                for pick in value.get("selections").and_then(Value::as_array).into_iter().flatten() {
                    if let Some(name) = pick.get(1).and_then(Value::as_str) {
                        names.push(name.to_owned());
                    }
                }
            }
            "product" | "product_entity" => {
                if let Some(name) = value.get(1).and_then(Value::as_str) {
                    names.push(name.to_owned());
                }
            }
            _ => {}
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::stream::StreamSource;
    use std::time::UNIX_EPOCH;

    #[test]
    fn a_pill_that_is_its_own_link_becomes_a_markdown_citation() {
        let html = "<p>Fast. <span class=\"citation-wrapper\"><a data-testid=\"webpage-citation-pill\" \
                    href=\"https://www.wired.com/x?utm_source=chatgpt.com\"><span>wired.com</span></a></span></p>";
        assert_eq!(html_to_markdown(html).trim(), "Fast. ([wired.com](https://www.wired.com/x))");
    }

    #[test]
    fn web_search_is_read_from_the_page_and_the_stream() {
        assert_eq!(web_search(Some("Searched 6 sites"), false, true), Some(true));
        assert_eq!(web_search(None, true, false), Some(true));
        assert_eq!(web_search(None, false, false), Some(false));
        assert_eq!(web_search(None, false, true), None);
    }

    #[test]
    fn redirects_are_unwrapped_and_tracking_dropped() {
        assert_eq!(
            url_of("https://chatgpt.com/link?url=https%3A%2F%2Fsite.example%2Fx%3Futm_source%3Dchatgpt.com"),
            "https://site.example/x"
        );
        assert_eq!(url_of("https://site.example/x#utm_source=chatgpt.com"), "https://site.example/x");
        assert_eq!(url_of("https://chatgpt.com/c/123"), "https://chatgpt.com/c/123");
    }

    fn sources(findings: &Findings) -> Vec<(&str, &str, bool)> {
        findings.sources.iter().map(|s| (s.url.as_str(), s.title.as_str(), s.inline)).collect()
    }

    /// The 2026-10 shape (idx:71335910185, gpt4free OpenaiChat.py, exported conversation JSON):
    /// an opening with empty metadata, text frames that inherit p/o, a batch with p/o and one
    /// without carrying the citation markers and their references, a tool message with
    /// search_model_queries, results and a footnote at the end, product markers split across
    /// frames, and the completion.
    const STREAM_2026: &str = concat!(
        "event: delta_encoding\ndata: \"v1\"\n\n",
        "data: {\"type\":\"resume_conversation_token\",\"conversation_id\":\"c1\",\"token\":\"t\"}\n\n",
        "data: {\"type\":\"server_ste_metadata\",\"metadata\":{\"is_first_turn\":true},\"conversation_id\":\"c1\"}\n\n",
        "event: delta\ndata: {\"p\":\"\",\"o\":\"add\",\"v\":{\"message\":{\"id\":\"t1\",\"author\":{\"role\":\"tool\",\"name\":\"web.run\",\"metadata\":{\"real_author\":\"tool:web\"}},\"content\":{\"content_type\":\"text\",\"parts\":[\"\"]},\"status\":\"in_progress\",\"metadata\":{\"search_model_queries\":{\"type\":\"search_model_queries\",\"queries\":[\"best usb driver\",\"samsung usb driver 2026\"]}},\"recipient\":\"all\"},\"conversation_id\":\"c1\",\"error\":null},\"c\":0}\n\n",
        "event: delta\ndata: {\"p\":\"\",\"o\":\"add\",\"v\":{\"message\":{\"id\":\"m1\",\"author\":{\"role\":\"assistant\",\"name\":null,\"metadata\":{}},\"content\":{\"content_type\":\"text\",\"parts\":[\"\"]},\"status\":\"in_progress\",\"metadata\":{\"model_slug\":\"gpt-5-2-thinking\",\"citations\":[],\"content_references\":[]},\"recipient\":\"all\",\"channel\":\"final\"},\"conversation_id\":\"c1\",\"error\":null},\"c\":0}\n\n",
        "event: delta\ndata: {\"p\":\"/message/content/parts/0\",\"o\":\"append\",\"v\":\"The package is \"}\n\n",
        "event: delta\ndata: {\"v\":\"broken.\"}\n\n",
        "data: {\"type\":\"message_marker\",\"conversation_id\":\"c1\",\"message_id\":\"m1\",\"marker\":\"user_visible_token\",\"event\":\"first\"}\n\n",
        "event: delta\ndata: {\"p\":\"\",\"o\":\"patch\",\"v\":[{\"p\":\"/message/content/parts/0\",\"o\":\"append\",\"v\":\" \u{e200}cite\u{e202}turn0search1\u{e201}\"},{\"p\":\"/message/metadata/content_references\",\"o\":\"append\",\"v\":[{\"matched_text\":\"\u{e200}cite\u{e202}turn0search1\u{e201}\",\"start_idx\":24,\"end_idx\":43,\"type\":\"grouped_webpages\",\"items\":[{\"title\":\"Samsung Android USB Driver\",\"url\":\"https://developer.samsung.com/android-usb-driver?utm_source=chatgpt.com\",\"attribution\":\"Samsung Developer\",\"supporting_websites\":[{\"title\":\"Checksum error\",\"url\":\"https://stackoverflow.com/questions/69140740/x?utm_source=chatgpt.com\",\"attribution\":\"Stack Overflow\"}]}],\"refs\":[],\"status\":\"done\"}]}]}\n\n",
        "event: delta\ndata: {\"p\":\"/message/content/parts/0\",\"o\":\"append\",\"v\":\" Use the newer one\"}\n\n",
        "event: delta\ndata: {\"v\":[{\"p\":\"/message/content/parts/0\",\"o\":\"append\",\"v\":\" \u{e200}cite\u{e202}turn4view0\u{e202}turn0search2\u{e201}.\"},{\"p\":\"/message/metadata/content_references\",\"o\":\"append\",\"v\":[{\"matched_text\":\"\u{e200}cite\u{e202}turn4view0\u{e202}turn0search2\u{e201}\",\"type\":\"grouped_webpages\",\"items\":[{\"title\":\"Chocolatey Software | SAMSUNG USB Driver\",\"url\":\"https://community.chocolatey.org/packages/samsung-usb-driver/1.7.17.0\"}]}]}]}\n\n",
        "event: delta\ndata: {\"p\":\"/message/content/parts/0\",\"o\":\"append\",\"v\":\" \u{e200}products\u{e202}{\\\"selections\\\":[[\\\"turn0product5\\\",\\\"24-Port PoE\"}\n\n",
        "event: delta\ndata: {\"v\":\" Rack Switch\\\"]],\\\"tags\\\":[]}\u{e201} \u{e200}product_entity\u{e202}[\\\"turn0product3\\\",\\\"HPE Aruba 6200F\\\"]\u{e201}\"}\n\n",
        "event: delta\ndata: {\"p\":\"/message/metadata/search_result_groups\",\"o\":\"append\",\"v\":[{\"type\":\"search_result_group\",\"domain\":\"chocolatey.org\",\"entries\":[{\"type\":\"search_result\",\"url\":\"https://community.chocolatey.org/packages/samsung-usb-driver/1.7.23.0?utm_source=chatgpt.com\",\"title\":\"SAMSUNG USB Driver 1.7.23.0\",\"ref_id\":{\"turn_index\":0,\"ref_type\":\"search\",\"ref_index\":0}}]}]}\n\n",
        "event: delta\ndata: {\"v\":[{\"p\":\"/message/metadata/content_references\",\"o\":\"append\",\"v\":[{\"type\":\"sources_footnote\",\"matched_text\":\" \",\"start_idx\":99,\"end_idx\":99,\"sources\":[{\"title\":\"Samsung Android USB Driver\",\"url\":\"https://developer.samsung.com/android-usb-driver?utm_source=chatgpt.com\"},{\"title\":\"ChatGPT\",\"url\":\"https://chatgpt.com/c/c1\"}]}]}]}\n\n",
        "event: delta\ndata: {\"p\":\"\",\"o\":\"patch\",\"v\":[{\"p\":\"/message/status\",\"o\":\"replace\",\"v\":\"finished_successfully\"},{\"p\":\"/message/end_turn\",\"o\":\"replace\",\"v\":true},{\"p\":\"/message/metadata\",\"o\":\"append\",\"v\":{\"is_complete\":true,\"finish_details\":{\"type\":\"stop\"}}}]}\n\n",
        "data: {\"type\":\"message_stream_complete\",\"conversation_id\":\"c1\"}\n\n",
        "data: [DONE]\n\n",
    );

    /// A canvas written and updated before the answer (the `canmore` tool's calls and replies,
    /// as exported conversations show them): its arguments stream on `/message/content/text`,
    /// later frames inheriting p/o; the update is given whole in its opening; the answer's own
    /// text and sources are read as ever.
    #[test]
    fn a_canvas_written_beside_the_answer_is_replayed_from_the_stream() {
        let frame = |value: serde_json::Value| format!("event: delta\ndata: {value}\n\n");
        let add = |message: serde_json::Value| {
            frame(serde_json::json!({ "p": "", "o": "add", "v": { "message": message, "conversation_id": "c1" } }))
        };
        let call = |function: &str, text: &str| {
            add(serde_json::json!({ "author": { "role": "assistant" }, "recipient": function,
                "content": { "content_type": "code", "language": "json", "text": text }, "metadata": {} }))
        };
        let reply = |function: &str| {
            add(serde_json::json!({ "author": { "role": "tool", "name": function }, "recipient": "all",
                "content": { "content_type": "text", "parts": ["Successfully updated"] },
                "metadata": { "canvas": { "textdoc_id": "d1", "textdoc_type": "document", "title": "Guide" } } }))
        };
        let arguments =
            serde_json::json!({ "name": "Guide", "type": "document", "content": "# Guide\n\nStatus: draft" })
                .to_string();
        let (head, tail) = arguments.split_at(20);
        let update =
            serde_json::json!({ "updates": [{ "pattern": "draft", "multiple": false, "replacement": "checked" }] });
        let body = [
            call(canvas::CREATE, ""),
            frame(serde_json::json!({ "p": "/message/content/text", "o": "append", "v": head })),
            frame(serde_json::json!({ "v": tail })),
            reply(canvas::CREATE),
            call(canvas::UPDATE, &update.to_string()),
            reply(canvas::UPDATE),
            add(serde_json::json!({ "author": { "role": "assistant" }, "recipient": "all",
                "content": { "content_type": "text", "parts": [""] }, "metadata": {} })),
            frame(serde_json::json!({ "p": "/message/content/parts/0", "o": "append", "v": "I wrote the guide." })),
            "data: {\"type\":\"message_stream_complete\"}\n\n".to_owned(),
        ]
        .concat();
        let findings = parse_stream(&[body.as_str()]);
        assert_eq!(
            findings.documents,
            vec![Document { title: "Guide".into(), text: "# Guide\n\nStatus: checked".into() }]
        );
        assert_eq!(findings.document_edits_missed, 0);
        assert!(findings.complete);
        // A stream without a canvas has none.
        assert!(parse_stream(&[STREAM_2026]).documents.is_empty());
    }

    #[test]
    fn the_2026_stream_yields_cited_then_listed_sources_queries_and_products() {
        let findings = parse_stream(&[STREAM_2026]);
        assert_eq!(
            sources(&findings),
            vec![
                (
                    "https://developer.samsung.com/android-usb-driver?utm_source=chatgpt.com",
                    "Samsung Android USB Driver",
                    true
                ),
                (
                    "https://community.chocolatey.org/packages/samsung-usb-driver/1.7.17.0",
                    "Chocolatey Software | SAMSUNG USB Driver",
                    true
                ),
                ("https://stackoverflow.com/questions/69140740/x?utm_source=chatgpt.com", "Checksum error", false),
                (
                    "https://community.chocolatey.org/packages/samsung-usb-driver/1.7.23.0?utm_source=chatgpt.com",
                    "SAMSUNG USB Driver 1.7.23.0",
                    false
                ),
                ("https://chatgpt.com/c/c1", "ChatGPT", false),
            ]
        );
        assert_eq!(findings.search_queries, vec!["best usb driver", "samsung usb driver 2026"]);
        let names: Vec<&str> = findings.products.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, vec!["24-Port PoE Rack Switch", "HPE Aruba 6200F"]);
        assert!(findings.complete);

        // Merged with a page that showed the first pill only: the own thread link is dropped,
        // tracking is gone, and the page's missing sources come from the stream.
        let (merged, disagreement) = stream::merge(&[], &findings.sources);
        let urls: Vec<&str> = merged.iter().map(|c| c.url.as_str()).collect();
        assert_eq!(
            urls,
            vec![
                "https://developer.samsung.com/android-usb-driver",
                "https://community.chocolatey.org/packages/samsung-usb-driver/1.7.17.0",
                "https://stackoverflow.com/questions/69140740/x",
                "https://community.chocolatey.org/packages/samsung-usb-driver/1.7.23.0",
            ]
        );
        assert!(disagreement.is_some());
    }

    /// The older shape (gpt4free, our look-alike's "current" page): references and results in
    /// the opening message, legacy search_queries, an A/B prompt whose second candidate's
    /// sources must not count, an error-free finish without message_stream_complete.
    #[test]
    fn the_header_stream_and_ab_candidates_read_candidate_zero_only() {
        let body = concat!(
            "event: delta_encoding\ndata: \"v1\"\n\n",
            "event: delta\ndata: {\"p\":\"\",\"o\":\"add\",\"v\":{\"message\":{\"id\":\"t\",\"author\":{\"role\":\"tool\"},\"content\":{\"content_type\":\"text\",\"parts\":[\"\"]},\"metadata\":{\"search_queries\":[{\"type\":\"search\",\"q\":\"weekend trips\"}]},\"recipient\":\"all\"}}}\n\n",
            "event: delta\ndata: {\"p\":\"\",\"o\":\"add\",\"v\":{\"message\":{\"id\":\"a\",\"author\":{\"role\":\"assistant\"},\"content\":{\"content_type\":\"text\",\"parts\":[\"\"]},\"metadata\":{\"paragen_variant_index\":0,\"content_references\":[{\"matched_text\":\"\u{e200}cite\u{e202}turn0search0\u{e201}\",\"type\":\"grouped_webpages\",\"items\":[{\"title\":\"A\",\"url\":\"https://a.example/1?utm_source=chatgpt.com\"}]}],\"search_result_groups\":[{\"entries\":[{\"url\":\"https://a.example/1?utm_source=chatgpt.com\",\"title\":\"A\"},{\"url\":\"https://b.example/2\",\"title\":\"B\"}]}]},\"recipient\":\"all\"}}}\n\n",
            "event: delta\ndata: {\"p\":\"\",\"o\":\"add\",\"v\":{\"message\":{\"id\":\"b\",\"author\":{\"role\":\"assistant\"},\"content\":{\"content_type\":\"text\",\"parts\":[\"\"]},\"metadata\":{\"paragen_variant_index\":1,\"content_references\":[{\"matched_text\":\"\u{e200}cite\u{e202}turn0search0\u{e201}\",\"type\":\"grouped_webpages\",\"items\":[{\"title\":\"Z\",\"url\":\"https://z.example/9\"}]}]},\"recipient\":\"all\"}}}\n\n",
            "event: delta\ndata: {\"p\":\"/paragen/0/content/parts/0\",\"o\":\"append\",\"v\":\"Go to A \u{e200}cite\u{e202}turn0search0\u{e201}\"}\n\n",
            "event: delta\ndata: {\"p\":\"/paragen/1/content/parts/0\",\"o\":\"append\",\"v\":\"Go to Z \u{e200}cite\u{e202}turn0search0\u{e201}\"}\n\n",
            "event: delta\ndata: {\"p\":\"\",\"o\":\"patch\",\"v\":[{\"p\":\"/message/status\",\"o\":\"replace\",\"v\":\"finished_successfully\"}]}\n\n",
            "data: [DONE]\n\n",
        );
        let findings = parse_stream(&[body]);
        assert_eq!(
            sources(&findings),
            vec![("https://a.example/1?utm_source=chatgpt.com", "A", true), ("https://b.example/2", "B", false)]
        );
        assert_eq!(findings.search_queries, vec!["weekend trips"]);
        assert!(findings.products.is_empty());
        assert!(findings.complete, "the answer's finished_successfully");
    }

    /// A finish of type `max_tokens` on the answer (in a metadata patch, or as its own path) is
    /// an answer cut short; `stop` is not, nor the second candidate's of an A/B prompt.
    #[test]
    fn a_finish_at_the_output_limit_is_an_answer_cut_short() {
        let opening = |index: u64| {
            format!(
                "event: delta\ndata: {{\"p\":\"\",\"o\":\"add\",\"v\":{{\"message\":{{\"id\":\"m{index}\",\"author\":{{\"role\":\"assistant\"}},\"content\":{{\"content_type\":\"text\",\"parts\":[\"Part\"]}},\"metadata\":{{\"paragen_variant_index\":{index}}},\"recipient\":\"all\"}}}}}}\n\n"
            )
        };
        let finish = |path: &str, kind: &str| {
            let (p, v) = match path {
                "/message/metadata" => {
                    (path, format!("{{\"is_complete\":false,\"finish_details\":{{\"type\":\"{kind}\"}}}}"))
                }
                _ => (path, format!("{{\"type\":\"{kind}\"}}")),
            };
            format!(
                "event: delta\ndata: {{\"p\":\"\",\"o\":\"patch\",\"v\":[{{\"p\":\"{p}\",\"o\":\"append\",\"v\":{v}}},{{\"p\":\"/message/status\",\"o\":\"replace\",\"v\":\"finished_successfully\"}}]}}\n\n"
            )
        };
        for path in ["/message/metadata", "/message/metadata/finish_details"] {
            let cut = format!("{}{}", opening(0), finish(path, "max_tokens"));
            let findings = parse_stream(&[&cut]);
            assert!(findings.cut_short && findings.complete, "{path}");
            let whole = format!("{}{}", opening(0), finish(path, "stop"));
            assert!(!parse_stream(&[&whole]).cut_short, "{path}");
        }
        // Only candidate 0 of an A/B prompt counts: the other's limit is not the answer's.
        let other = format!("{}{}{}", opening(0), opening(1), finish("/message/metadata", "max_tokens"));
        assert!(!parse_stream(&[&other]).cut_short);
    }

    /// `conversation_detail_metadata` lists the models whose plan limit is used up: another
    /// model answering while the plan's own is listed is a fallback, with the limit's time; the
    /// plan's model answering, or a limit on a model the plan does not answer with, is none.
    #[test]
    fn the_stream_says_when_another_model_answered_and_until_when() {
        let answer = |model: &str| {
            format!(
                "event: delta\ndata: {{\"p\":\"\",\"o\":\"add\",\"v\":{{\"message\":{{\"id\":\"m1\",\"author\":{{\"role\":\"assistant\"}},\"content\":{{\"content_type\":\"text\",\"parts\":[\"An answer.\"]}},\"metadata\":{{\"model_slug\":\"{model}\"}},\"recipient\":\"all\"}}}}}}\n\n\
                 data: {{\"type\":\"server_ste_metadata\",\"metadata\":{{\"model_slug\":\"{model}\"}}}}\n\n\
                 data: {{\"type\":\"message_stream_complete\",\"conversation_id\":\"c1\"}}\n\n"
            )
        };
        let detail = |limits: &str, intended: &str| {
            format!(
                "data: {{\"type\":\"conversation_detail_metadata\",\"banner_info\":null,\"blocked_features\":[],\"model_limits\":{limits},\"limits_progress\":[{{\"feature_name\":\"deep_research\",\"remaining\":5,\"reset_after\":\"2026-12-20T00:00:00Z\"}}],\"default_model_slug\":\"gpt-5-mini\"{intended},\"conversation_id\":\"c1\"}}\n\ndata: [DONE]\n\n"
            )
        };
        let at = |seconds: u64| Some(UNIX_EPOCH + Duration::from_secs(seconds));
        let limited = r#"[{"model_slug":"gpt-5","resets_after":"2026-12-07T21:40:00Z"}]"#;
        let intended = r#","intended_default_model_slug":"gpt-5""#;

        let findings = parse_stream(&[&format!("{}{}", answer("gpt-5-mini"), detail(limited, intended))]);
        assert_eq!(findings.model.as_deref(), Some("gpt-5-mini"));
        assert_eq!(findings.intended_model.as_deref(), Some("gpt-5"));
        let fallback = stream_fallback(&findings).expect("the plan's model is limited and another answered");
        assert_eq!(fallback.lifts_at, at(1_796_679_600));
        assert!(fallback.said.contains("gpt-5 is at its limit") && fallback.said.contains("gpt-5-mini answered"));
        assert!(findings.complete);

        // The plan's model answered (its last message before the limit): no fallback.
        let last = parse_stream(&[&format!("{}{}", answer("gpt-5"), detail(limited, intended))]);
        assert_eq!(stream_fallback(&last), None);
        // No limits, or one on a model the plan does not answer with: no fallback.
        assert_eq!(
            stream_fallback(&parse_stream(&[&format!("{}{}", answer("gpt-5-mini"), detail("[]", intended))])),
            None
        );
        let other = r#"[{"model_slug":"o3","resets_after":1796680000}]"#;
        let findings = parse_stream(&[&format!("{}{}", answer("gpt-5-mini"), detail(other, intended))]);
        assert_eq!(stream_fallback(&findings), None);
        // Without the plan's model named, the stream's only limit gives the page's notice its time.
        assert_eq!(stream_lift(&findings), at(1_796_680_000));
        let unnamed = parse_stream(&[&format!("{}{}", answer("gpt-5-mini"), detail(limited, ""))]);
        assert_eq!(stream_fallback(&unnamed), None);
        assert_eq!(stream_lift(&unnamed), at(1_796_679_600));
        let two =
            r#"[{"model_slug":"o3","resets_after":1796680000},{"model_slug":"gpt-4.5","resets_after":"garbage"}]"#;
        let two = parse_stream(&[&format!("{}{}", answer("gpt-5-mini"), detail(two, ""))]);
        assert_eq!(two.model_limits.len(), 2);
        assert_eq!(two.model_limits[1].lifts_at, None, "a time that is no time is none");
        assert_eq!(stream_lift(&two), None, "which of two limits is the plan's is not known");
    }

    #[test]
    fn a_stream_without_sources_or_an_unfinished_one_says_so() {
        let findings = parse_stream(&[
            "event: delta\ndata: {\"p\":\"\",\"o\":\"add\",\"v\":{\"message\":{\"author\":{\"role\":\"assistant\"},\"content\":{\"content_type\":\"text\",\"parts\":[\"Hi\"]},\"metadata\":{},\"recipient\":\"all\"}}}\n\ndata: {\"v\":\" there\"}\n\n",
            "data: {\"type\":\"error\",\"message\":\"x\"}\n\ndata: not json\n\n",
        ]);
        assert_eq!(findings.sources, Vec::<StreamSource>::new());
        assert!(findings.search_queries.is_empty() && !findings.complete);
        assert!(parse_stream(&[]).sources.is_empty());
    }
}
