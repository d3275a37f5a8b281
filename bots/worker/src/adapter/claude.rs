//! Claude (claude.ai, or a look-alike at `--assistant-url`).
//!
//! The end of an answer is read from independent signals, never from a fixed sleep, under the
//! two-signal rule ([`common::finished`]): the last message's `data-is-streaming` attribute reads
//! "false" (`streaming-false`; it stays on every finished message), the stop button is gone
//! (`stop-gone`; it also clears between tool phases and can clear before the last words render),
//! the action bar shows (`action-bar`), and the completion stream has ended (`stream-done`). Two
//! of them, and the answer unchanged for the settle window: text that still grows restarts it.
//! The stream pauses mid-way (and while the model thinks) for longer than a second, so "text
//! unchanged" on its own would cut answers in half. A message that finishes by these signals with
//! no answer text is an empty answer ([`AskError::EmptyAnswer`]), said then rather than at the
//! deadline.
//!
//! The answer is the message's markdown blocks (or the containers around them: `.font-claude-
//! response`, `.font-claude-message`, ...), less thinking and tool blocks; with no answer element
//! at all, the message's own text less those is the answer, read by fallback. Only the composer,
//! the send button and the message are required: any other role missing lowers the answer's
//! confidence ([`super::Reading`]) and never fails it.
//!
//! Sources come from the page (inline citation tags, the search block's results list, rows
//! without links matched by title) and from the completion stream the page received (teed by
//! [`super::stream`]): its `web_search` inputs are the search queries, its `tool_result` items
//! the results read, its `citation_start_delta`s the sources cited, in reading order. The two are
//! merged ([`stream::merge`]). claude.ai shows no product cards: `products` stays empty.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::Value;
use thirtyfour::prelude::*;

use super::common::{self, Arrival, Link, PageScript, ProbeFailures, Progress, Source};
use super::stream::{self, Document, Findings, Mark};
use super::{Adapter, AnswerKind, AskError, Captured, Manifest, PageState, Reading, Typing};
use aap_proto::urls::{clean_url, domain_of};

const PAGE_JS: &str = concat!(include_str!("dom.js"), include_str!("claude.js"));

/// The attribute claude.ai flips from "true" to "false" when a message is complete.
const DEFAULT_STREAMING_ATTRIBUTE: &str = "data-is-streaming";

/// The completion endpoint's URL fragment when the manifest names none.
const DEFAULT_STREAM_URL_PART: &str = "/completion";

/// The Claude adapter, driven by its [`Manifest`].
#[derive(Debug, Clone)]
pub struct Claude {
    pub(super) manifest: Manifest,
    origin: String,
    page: PageScript,
    /// Fragments of the completion stream's URL (manifest option `stream_url_parts`).
    stream_url_parts: Vec<String>,
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
    /// The answer's text so far.
    #[serde(default)]
    text: String,
    signature: String,
    action_bar: bool,
    error: Option<String>,
    /// Document cards in the message (an artifact, a presented file): an answer may be one
    /// alone, with no text of its own.
    #[serde(default)]
    documents: usize,
}

impl LastMessage {
    /// The page's own completion signal: the streaming attribute reads "false".
    fn streaming_false(&self) -> bool {
        self.streaming.as_deref().is_some_and(|value| value.eq_ignore_ascii_case("false"))
    }

    fn streaming(&self) -> bool {
        self.streaming.as_deref().is_some_and(|value| value.eq_ignore_ascii_case("true"))
    }

    /// The finish signals of the page, each with whether it holds now.
    fn signals(&self, stop_shown: bool, stream_done: bool) -> [(&'static str, bool); 4] {
        [
            ("streaming-false", self.streaming_false()),
            ("stop-gone", !stop_shown),
            ("action-bar", self.action_bar),
            ("stream-done", stream_done),
        ]
    }
}

#[derive(Debug, Deserialize)]
struct Extracted {
    html: String,
    text: String,
    links: Vec<Link>,
    model: Option<String>,
    search: bool,
    #[serde(default)]
    fallback: bool,
    #[serde(default)]
    documents: usize,
}

/// A search result as the page lists it; `href` is empty for a row without a link.
#[derive(Debug, Clone, Default, Deserialize)]
struct Row {
    href: String,
    title: String,
    #[serde(default)]
    domain: String,
}

/// How an answer finished.
#[derive(Debug)]
struct Finish {
    ttft: Option<Duration>,
    signals: Vec<String>,
    saw_stop: bool,
}

/// What claude.ai's completion stream said: the [`Findings`], and how many distinct results its
/// searches returned (what the page's results list shows once complete).
#[derive(Debug, Default, PartialEq, Eq)]
struct StreamRead {
    findings: Findings,
    results: usize,
}

/// Where claude.ai's computer keeps the files it shares with the user.
const OUTPUTS: &str = "/mnt/user-data/outputs/";

/// Documents as the stream makes and edits them, by artifact id or file path.
#[derive(Debug, Default)]
struct Drafts {
    /// Keys in the order first made.
    order: Vec<String>,
    drafts: HashMap<String, Draft>,
    /// Files the answer presented (`present_files`).
    presented: HashSet<String>,
}

#[derive(Debug, Default)]
struct Draft {
    title: String,
    text: String,
    file: bool,
    /// Edits of it that did not apply (their `old_str` is not in the text the stream gave).
    missed: usize,
}

impl Drafts {
    fn draft(&mut self, key: &str, file: bool) -> &mut Draft {
        if !self.drafts.contains_key(key) {
            self.order.push(key.to_owned());
        }
        self.drafts.entry(key.to_owned()).or_insert_with(|| Draft { file, ..Draft::default() })
    }

    /// An edit that replaces `old_str` by `new_str` once, in a document made before.
    fn replace(&mut self, key: &str, input: &Value) {
        let (Some(old), Some(new)) = (input["old_str"].as_str(), input["new_str"].as_str()) else {
            return;
        };
        match self.drafts.get_mut(key) {
            Some(draft) if !old.is_empty() && draft.text.contains(old) => draft.text = draft.text.replacen(old, new, 1),
            Some(draft) => {
                tracing::debug!(key, "an edit of a document that does not hold its old text");
                draft.missed += 1;
            }
            None => tracing::debug!(key, "an edit of a document whose text the stream did not give"),
        }
    }

    /// An `artifacts` call (claude.ai before files): `create` and `rewrite` give the whole text,
    /// `update` replaces `old_str` by `new_str`.
    fn artifact(&mut self, input: &Value) {
        let key = input["id"].as_str().map(str::trim).filter(|id| !id.is_empty()).unwrap_or("artifact").to_owned();
        match input["command"].as_str().unwrap_or("create") {
            "update" => self.replace(&key, input),
            _ => {
                let Some(text) = input["content"].as_str() else { return };
                let draft = self.draft(&key, false);
                draft.text = text.to_owned();
                if let Some(title) = input["title"].as_str().map(common::collapse).filter(|t| !t.is_empty()) {
                    draft.title = title;
                }
            }
        }
    }

    /// A call of claude.ai's file tools: a file made (`create_file`), edited (`str_replace`) or
    /// shown to the user (`present_files`). Other tools (`bash`, `view`) make nothing readable.
    fn file_tool(&mut self, name: &str, input: &Value) {
        let path = || input["path"].as_str().or(input["file_path"].as_str()).map(str::trim).filter(|p| !p.is_empty());
        match name {
            "create_file" | "file_create" => {
                let (Some(path), Some(text)) = (path(), input["file_text"].as_str().or(input["content"].as_str()))
                else {
                    return;
                };
                let draft = self.draft(path, true);
                draft.text = text.to_owned();
                draft.title = path.rsplit('/').next().unwrap_or(path).to_owned();
            }
            "str_replace" => {
                if let Some(path) = path() {
                    self.replace(path, input);
                }
            }
            "present_files" => {
                let listed = input["filepaths"].as_array().or(input["paths"].as_array());
                self.presented
                    .extend(listed.into_iter().flatten().filter_map(|p| p.as_str()).map(|p| p.trim().to_owned()));
            }
            _ => {}
        }
    }

    /// The documents the user sees: every artifact, and the files presented or put where the
    /// user's files go; those left empty are none. With them, the edits of theirs that did not
    /// apply.
    fn documents(self) -> (Vec<Document>, usize) {
        let Drafts { order, mut drafts, presented } = self;
        let mut missed = 0;
        let documents = order
            .iter()
            .filter_map(|key| {
                let draft = drafts.remove(key)?;
                let shown = !draft.file || presented.contains(key) || key.starts_with(OUTPUTS);
                missed += if shown { draft.missed } else { 0 };
                (shown && !draft.text.trim().is_empty()).then_some(Document { title: draft.title, text: draft.text })
            })
            .collect();
        (documents, missed)
    }
}

/// One content block of the stream while it is open.
#[derive(Debug, Default)]
struct Block {
    kind: String,
    name: String,
    start: Value,
    partial: String,
}

/// Reads claude.ai's completion streams (`bodies`, one per response): the `web_search` queries
/// (a `tool_use` block whose input starts as `{}` and streams as `input_json_delta` fragments),
/// the results (`tool_result` content streamed as one `input_json_delta` holding a JSON array of
/// `knowledge` items), and the sources cited (`citation_start_delta.citation`, in reading
/// order), then the results only listed. Inputs and results given whole at the block's start,
/// and a `citation_end_delta` carrying its citation, are read too. Complete at `message_stop` (or
/// a `message_delta` with a stop reason); cut short when that reason is `max_tokens`, declined
/// when it is `refusal`.
fn read_stream<'a>(bodies: impl IntoIterator<Item = &'a str>) -> StreamRead {
    let mut findings = Findings::default();
    let mut cited: Vec<(String, String)> = Vec::new();
    let mut listed: Vec<(String, String)> = Vec::new();
    let mut drafts = Drafts::default();
    for body in bodies {
        let mut blocks: HashMap<u64, Block> = HashMap::new();
        for (_, event) in stream::json_events(body) {
            let index = event["index"].as_u64().unwrap_or(u64::MAX);
            match event["type"].as_str().unwrap_or_default() {
                "content_block_start" => {
                    let start = event["content_block"].clone();
                    let block = Block {
                        kind: start["type"].as_str().unwrap_or_default().to_owned(),
                        name: start["name"].as_str().unwrap_or_default().to_owned(),
                        start,
                        partial: String::new(),
                    };
                    blocks.insert(index, block);
                }
                "content_block_delta" => {
                    let delta = &event["delta"];
                    match delta["type"].as_str().unwrap_or_default() {
                        "input_json_delta" => {
                            if let Some(block) = blocks.get_mut(&index) {
                                block.partial.push_str(delta["partial_json"].as_str().unwrap_or_default());
                            }
                        }
                        "citation_start_delta" => cited.extend(citation(&delta["citation"])),
                        // An older shape closes the citation with the citation itself.
                        "citation_end_delta" => cited.extend(citation(&delta["citation"])),
                        _ => {}
                    }
                }
                "content_block_stop" => {
                    if let Some(block) = blocks.remove(&index) {
                        let buffered = event["buffered_input"].as_str();
                        finish_block(block, buffered, &mut findings, &mut listed, &mut drafts);
                    }
                }
                "message_stop" => findings.complete = true,
                "message_delta" if event["delta"]["stop_reason"].is_string() => {
                    findings.complete = true;
                    // The model's output limit: claude.ai shows "This response paused ..." and
                    // a Continue button under the text.
                    findings.cut_short |= event["delta"]["stop_reason"] == "max_tokens";
                    // Declined under the usage policy: whatever text came is no answer.
                    findings.declined |= event["delta"]["stop_reason"] == "refusal";
                }
                _ => {}
            }
        }
        // Blocks a cut stream never closed still say what they had.
        let mut open: Vec<(u64, Block)> = blocks.into_iter().collect();
        open.sort_by_key(|(index, _)| *index);
        for (_, block) in open {
            finish_block(block, None, &mut findings, &mut listed, &mut drafts);
        }
    }
    let results = listed.iter().map(|(url, _)| clean_url(url)).collect::<HashSet<_>>().len();
    for (url, title) in cited {
        findings.source(&url, &title, true);
    }
    for (url, title) in listed {
        findings.source(&url, &title, false);
    }
    (findings.documents, findings.document_edits_missed) = drafts.documents();
    StreamRead { findings, results }
}

/// A prompt Claude declined under its usage policy: refused for good on this site, under the
/// retry rule like any refusal (the same prompt is reported to pass on another try).
fn declined_error() -> AskError {
    AskError::PromptRefused(
        "Claude declined to answer it (the stream's stop reason is refusal: its usage policy)".into(),
    )
}

/// The `(url, title)` of a citation object, when it names a web address.
fn citation(value: &Value) -> Option<(String, String)> {
    let url = value["url"].as_str().filter(|url| !url.trim().is_empty())?;
    Some((url.to_owned(), value["title"].as_str().unwrap_or_default().to_owned()))
}

/// A closed block: a `web_search` call's query, a search or fetch result's items, a document
/// made or edited.
fn finish_block(
    block: Block,
    buffered: Option<&str>,
    findings: &mut Findings,
    listed: &mut Vec<(String, String)>,
    drafts: &mut Drafts,
) {
    let streamed = || -> Value {
        let text = if block.partial.trim().is_empty() { buffered.unwrap_or_default() } else { block.partial.as_str() };
        serde_json::from_str(text).unwrap_or(Value::Null)
    };
    // A tool's input, given whole at the block's start or streamed.
    let input = || {
        let given = &block.start["input"];
        if given.as_object().is_some_and(|input| !input.is_empty()) { given.clone() } else { streamed() }
    };
    match block.kind.as_str() {
        "tool_use" if block.name == "artifacts" => drafts.artifact(&input()),
        "tool_use" if ["create_file", "file_create", "str_replace", "present_files"].contains(&block.name.as_str()) => {
            drafts.file_tool(&block.name, &input())
        }
        "tool_use" if block.name == "web_search" => {
            let given = &block.start["input"];
            let input = if given.get("query").is_some() { given.clone() } else { streamed() };
            if let Some(query) = input["query"].as_str() {
                findings.query(query);
            }
        }
        "tool_result" if !block.start["is_error"].as_bool().unwrap_or(false) => {
            let given = &block.start["content"];
            let items =
                if given.as_array().is_some_and(|items| !items.is_empty()) { given.clone() } else { streamed() };
            for item in items.as_array().into_iter().flatten() {
                if item["type"].as_str().is_some_and(|kind| kind != "knowledge") {
                    continue;
                }
                listed.extend(citation(item));
            }
        }
        _ => {}
    }
}

/// The page's search results as sources: a row without a link takes the address of the stream's
/// source with the same title, else of the only one on its domain (the page shows only the title
/// and domain); one the stream does not know is left out.
fn page_sources(rows: &[Row], findings: &Findings) -> Vec<Source> {
    rows.iter()
        .filter_map(|row| {
            let href = if row.href.trim().is_empty() {
                let title = common::collapse(&row.title);
                let domain = row.domain.trim().trim_start_matches("www.").to_lowercase();
                let by_title =
                    findings.sources.iter().find(|s| !title.is_empty() && common::collapse(&s.title) == title);
                let on_domain: Vec<_> = findings
                    .sources
                    .iter()
                    .filter(|s| !domain.is_empty() && domain_of(&clean_url(&s.url)) == domain)
                    .collect();
                let by_domain = (on_domain.len() == 1).then(|| on_domain[0]);
                by_title.or(by_domain)?.url.clone()
            } else {
                row.href.clone()
            };
            Some(Source { href, title: row.title.clone() })
        })
        .collect()
}

/// A citation the page shows only as a tag (its title is the tag's site name or number, not a
/// listed title) takes the stream's title for the same address.
fn stream_titles(citations: &mut [super::Citation], listed: &[Source], findings: &Findings) {
    let listed: HashSet<String> = listed.iter().map(|source| clean_url(&source.href)).collect();
    for citation in citations.iter_mut().filter(|c| !listed.contains(&c.url)) {
        let title = findings
            .sources
            .iter()
            .find(|s| clean_url(&s.url) == citation.url)
            .map(|s| common::collapse(&s.title))
            .filter(|title| !title.is_empty());
        if let Some(title) = title {
            citation.title = title;
        }
    }
}

impl Claude {
    /// The roles an answer cannot be read without: the composer, the send control and the
    /// assistant's message (its answer element may be missing: read by fallback).
    /// The manifest must list them; every other role is optional and its absence only lowers
    /// the answer's confidence ([`super::Reading::missing`]).
    pub const REQUIRED: &'static [&'static str] = &["composer", "send_button", "message"];

    /// Every selector role this adapter reads from its manifest.
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
        "tool_block",
        "action_bar",
        "error",
        "citation_link",
        "citation_chip",
        "search_toggle",
        "sources_link",
        "sources_row",
        "sources_title",
        "sources_domain",
        "model_selector",
        "document_card",
    ];

    /// An adapter for the site at `origin` (the manifest's `base_url` when `None`).
    pub fn new(manifest: Manifest, origin: Option<&str>) -> Claude {
        let origin = common::origin(&manifest, origin);
        let streaming_attributes = manifest.option_strings("streaming_attributes", &[DEFAULT_STREAMING_ATTRIBUTE]);
        let stream_url_parts = manifest.option_strings("stream_url_parts", &[DEFAULT_STREAM_URL_PART]);
        // The script reads the attribute names as arguments[2].
        let page = PageScript::new(PAGE_JS, &manifest).with_arg(serde_json::json!(streaming_attributes));
        Claude { manifest, origin, page, stream_url_parts }
    }

    /// How long a missing element may take to show once the page is loaded.
    fn missing_grace(&self) -> Duration {
        self.manifest.option_ms("missing_grace_ms", 3000)
    }

    async fn probe(&self, driver: &WebDriver) -> WebDriverResult<Probe> {
        self.page.read(driver, "probe").await
    }

    /// A challenge page in place of the site, by its markup, or by its title or text when
    /// neither the site's composer nor a conversation is there (a conversation's title and text
    /// may well say "just a moment").
    fn challenge_of(&self, probe: &Probe) -> Option<AskError> {
        let own_page = probe.composer || probe.messages > 0;
        let by_words =
            !own_page && (self.manifest.is_challenge(&probe.title) || self.manifest.is_challenge(&probe.text));
        if probe.challenge || by_words {
            let title = if probe.title.trim().is_empty() { "bot challenge" } else { probe.title.trim() };
            return Some(AskError::Challenge(title.to_owned()));
        }
        None
    }

    /// One look at the page on its way to the composer: the composer, a wall (login,
    /// challenge) or neither yet.
    async fn look(&self, driver: &WebDriver) -> WebDriverResult<Arrival> {
        let probe = self.probe(driver).await?;
        Ok(if let Some(challenge) = self.challenge_of(&probe) {
            Arrival::Blocked(challenge)
        } else if probe.composer {
            Arrival::Composer
        } else if probe.login_wall {
            Arrival::Blocked(AskError::LoggedOut)
        } else {
            Arrival::Waiting { loaded: probe.ready }
        })
    }

    /// Opens a new conversation and waits for the composer. The login page means the session
    /// is gone; a loaded page without a composer means the selectors need an update, which is
    /// said after a short grace instead of at the page-load deadline.
    async fn open_new_chat(&self, driver: &WebDriver) -> Result<(), AskError> {
        let look = move || self.look(driver);
        common::open(driver, &self.origin, &self.manifest, self.missing_grace(), look).await
    }

    /// Waits until the answer after `messages_before` is complete by the two-signal rule.
    /// Returns the time to the first answer text (thinking does not count) and the signals that
    /// ended the wait.
    async fn wait_for_answer(
        &self,
        driver: &WebDriver,
        messages_before: usize,
        sent_at: Instant,
        mark: Mark,
        typing: &Typing,
    ) -> Result<Finish, AskError> {
        let timing = &self.manifest.timing;
        let deadline = sent_at + timing.answer_deadline();
        let stream_settle = common::stream_settle(&self.manifest);
        let mut progress = Progress::new(sent_at);
        // When the stop button showed without a message container the page could be found.
        let mut orphan_stop_since: Option<Instant> = None;
        let mut saw_stop = false;
        let mut failures = ProbeFailures::default();
        loop {
            let probe = failures.check(self.probe(driver).await)?;
            let now = Instant::now();
            if let Some(probe) = probe {
                if let Some(challenge) = self.challenge_of(&probe) {
                    return Err(challenge);
                }
                if probe.login_wall && !probe.composer {
                    return Err(AskError::LoggedOut);
                }
                saw_stop |= probe.stop;
                let answer = probe.last.as_ref().filter(|_| probe.messages > messages_before);
                match answer {
                    Some(last) => {
                        orphan_stop_since = None;
                        progress.saw(&last.signature, last.text_len, now);
                        typing.saw(&last.text);
                        if !probe.stop
                            && !last.streaming()
                            && let Some(error) = last.error.as_deref().filter(|e| !e.is_empty())
                        {
                            let parts = &self.stream_url_parts;
                            return Err(common::classify_sent(driver, &self.manifest, error, mark, parts).await);
                        }
                        let quiet = progress.quiet(now);
                        // The full settle window outlasts pauses between tool phases; once the
                        // completion stream has ended, only the page's last render is waited for.
                        if quiet >= stream_settle {
                            let stream_done = stream::done(driver, mark, &self.stream_url_parts).await;
                            let settle = if stream_done { stream_settle } else { timing.settle() };
                            let signals = last.signals(probe.stop, stream_done);
                            if let Some(held) = common::finished(&signals, quiet, settle) {
                                if last.text_len == 0 && last.documents == 0 {
                                    return Err(AskError::EmptyAnswer);
                                }
                                return Ok(Finish { ttft: progress.ttft(), signals: held, saw_stop });
                            }
                        }
                    }
                    None => {
                        if let Some(error) = probe.page_error.as_deref().filter(|e| !e.is_empty())
                            && !probe.stop
                        {
                            let parts = &self.stream_url_parts;
                            return Err(common::classify_sent(driver, &self.manifest, error, mark, parts).await);
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

    /// The last answer's search results, opening its search blocks when the list is not
    /// rendered. Waits, up to the sources-panel time, until the list holds `expected` results
    /// (what the finished stream returned) or, without that number, until it holds some and
    /// stops growing: results may reach the page after the answer's finish signals. Best
    /// effort: without the list, citations keep their link text and the stream's sources stand.
    async fn search_results(&self, driver: &WebDriver, expected: Option<usize>) -> Vec<Row> {
        match self.page.read::<usize>(driver, "open_search").await {
            Ok(0) => return Vec::new(),
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(%error, "cannot open the search blocks");
                return Vec::new();
            }
        }
        let timing = &self.manifest.timing;
        let deadline = Instant::now() + timing.sources_panel();
        let mut last_len = 0;
        let mut stable_polls = 0;
        loop {
            let rows: Vec<Row> = match self.page.read(driver, "sources").await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::debug!(%error, "cannot read the search results");
                    Vec::new()
                }
            };
            stable_polls = if rows.len() == last_len { stable_polls + 1 } else { 0 };
            last_len = rows.len();
            // A list that holds some results and stopped growing is complete too: the page may
            // leave out a result the stream named.
            let complete =
                expected.is_some_and(|expected| rows.len() >= expected) || (!rows.is_empty() && stable_polls >= 3);
            if complete || Instant::now() >= deadline {
                return rows;
            }
            tokio::time::sleep(timing.poll()).await;
        }
    }
}

impl Adapter for Claude {
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
        let send_wait = self.manifest.option_ms("send_wait_ms", 5000);
        self.page.send(driver, "send", send_wait, self.manifest.timing.poll()).await?;
        let finish = match self.wait_for_answer(driver, before, sent_at, mark, typing).await {
            Ok(finish) => finish,
            // A turn that ended empty or in an error may be a refusal the page words its own way.
            Err(error @ (AskError::EmptyAnswer | AskError::Assistant(_))) => {
                let teed = stream::read(driver, mark, &self.stream_url_parts).await.unwrap_or_default();
                let declined = read_stream(teed.iter().map(|t| t.text.as_str())).findings.declined;
                return Err(if declined { declined_error() } else { error });
            }
            Err(error) => return Err(error),
        };
        let total = sent_at.elapsed();

        let extracted: Extracted = self.page.extract(driver, "message").await?;
        let teed = match stream::read(driver, mark, &self.stream_url_parts).await {
            Ok(teed) => teed,
            Err(error) => {
                tracing::debug!(%error, "cannot read the response stream");
                Vec::new()
            }
        };
        let StreamRead { findings, results } = read_stream(teed.iter().map(|t| t.text.as_str()));
        if findings.declined {
            // What the page shows is Claude's refusal (or the words before it), not an answer.
            return Err(declined_error());
        }
        // The documents the answer made beside its text (an artifact, a file it presented): the
        // message shows only their cards, and may hold no text of its own.
        let mut reading = Reading::default();
        let cards = vec![Document { title: String::new(), text: String::new() }; extracted.documents];
        let (response_text, response_markdown) =
            common::with_documents(&extracted.text, &extracted.html, &findings, &cards, &mut reading)?;
        let expected = (findings.complete && results > 0).then_some(results);
        let rows = if extracted.search { self.search_results(driver, expected).await } else { Vec::new() };

        let cut_short = common::cut_short(driver, &self.manifest, findings.cut_short, prompt, &response_text).await;
        reading.finish_signals = finish.signals;
        reading.read_by_fallback = extracted.fallback;
        reading.cut_short = cut_short;
        if extracted.fallback {
            tracing::warn!("no answer element in the message; read the message's own text");
        }
        if !finish.saw_stop {
            reading.missing("stop_button");
        }
        if !reading.finish_signals.iter().any(|s| s == "action-bar") {
            reading.missing("action_bar");
        }
        if !findings.search_queries.is_empty() && !extracted.search {
            reading.missing("search_toggle");
        }
        if results > 0 && extracted.search && rows.is_empty() {
            reading.missing("sources_link");
        }
        if extracted.model.is_none() {
            reading.missing("model_selector");
        }

        let sources = page_sources(&rows, &findings);
        let mut page_citations = common::citations(&extracted.links, &sources, clean_url);
        stream_titles(&mut page_citations, &sources, &findings);
        let (citations, disagreement) = stream::merge(&page_citations, &findings.sources);
        reading.disagreement = disagreement;
        Ok(Captured {
            response_text,
            response_markdown,
            html: extracted.html,
            // A search block, a search query in the stream, or sources cited, all show that a
            // web search ran; a complete answer with none ran without one.
            web_search: Some(extracted.search || !findings.search_queries.is_empty() || !citations.is_empty()),
            citations,
            model: extracted.model.map(|model| common::collapse(&model)).filter(|model| !model.is_empty()),
            kind: AnswerKind::Text,
            ttft: finish.ttft,
            total,
            reading,
            search_queries: findings.search_queries.clone(),
            products: findings.clean_products(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::stream::StreamSource;

    #[test]
    fn the_streaming_attribute_is_one_signal_among_four() {
        let message = |streaming: Option<&str>, action_bar: bool| LastMessage {
            streaming: streaming.map(str::to_owned),
            action_bar,
            ..LastMessage::default()
        };
        assert!(message(Some("false"), false).streaming_false());
        assert!(!message(Some("true"), true).streaming_false());
        assert!(message(Some("true"), false).streaming());
        assert!(!message(None, true).streaming_false());
        let held = |signals: [(&'static str, bool); 4]| signals.iter().filter(|(_, on)| *on).count();
        // Finished on today's page: the attribute, no stop button, the action bar, the stream.
        assert_eq!(held(message(Some("false"), true).signals(false, true)), 4);
        // The stop button cleared between tool phases: one signal, not enough.
        assert_eq!(held(message(Some("true"), false).signals(false, false)), 1);
        // No streaming attribute (a page without it): the others still make two.
        assert_eq!(held(message(None, true).signals(false, true)), 3);
    }

    /// Events as claude.ai's completion endpoint sends them (capture of 2026-04-30, trimmed):
    /// `: ping` comments, a web_search whose input streams in fragments, its results as a JSON
    /// string in one fragment, a web_fetch, a text block with citation start/end deltas (one
    /// cited page is in no result list), message_limit before message_stop.
    const CAPTURE: &str = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"chatcompl_012BiyxRQNFEfz6WaPy9578C","type":"message","role":"assistant","model":"","parent_uuid":"019ddeae-a212-75c2-be3a-1077677fc2f6","uuid":"019ddeae-a212-7366-a1fb-b244bdf72756","content":[],"stop_reason":null},"discarded_parent_message_uuid":null}"#,
        "\n\n: ping - 2026-04-30 13:58:28.853253\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":2,"content_block":{"start_timestamp":"2026-04-30T13:58:03.595534Z","stop_timestamp":null,"flags":null,"type":"tool_use","id":"toolu_01PjRjKqddbpjhjYmNGCu2dT","name":"web_search","input":{},"message":"Searching the web","display_content":null}}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"query\":"}}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"\"成都明天天气预报 2"}}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"026年5月1日\"}"}}"#,
        "\n\nevent: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":2,"stop_timestamp":"2026-04-30T13:58:03.595534Z"}"#,
        "\n\nevent: content_block_start\n",
        r#"data: {"type":"content_block_start","index":3,"content_block":{"type":"tool_result","tool_use_id":"toolu_01PjRjKqddbpjhjYmNGCu2dT","name":"web_search","content":[],"is_error":false,"display_content":null}}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"[{\"type\": \"knowledge\", \"title\": \"成都-天气预报\", \"url\": \"https://www.nmc.cn/publish/forecast/ASC/chengdu.html\", \"metadata\": {\"type\": \"webpage_metadata\", \"site_domain\": \"nmc.cn\", \"site_name\": \"NMC\"}, \"is_missing\": false}, {\"type\": \"knowledge\", \"title\": \"Shared chat\", \"url\": \"https://claude.ai/share/0e4c\", \"is_missing\": false}, {\"type\": \"knowledge\", \"title\": \"Chengdu weather\", \"url\": \"https://weather.example/cd#utm_source=claude.ai\", \"is_missing\": false}]"}}"#,
        "\n\nevent: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":3,"stop_timestamp":"2026-04-30T13:58:05.1Z"}"#,
        "\n\nevent: content_block_start\n",
        r#"data: {"type":"content_block_start","index":4,"content_block":{"type":"tool_use","id":"toolu_02","name":"web_fetch","input":{},"message":"Fetching page"}}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":4,"delta":{"type":"input_json_delta","partial_json":"{\"url\":\"https://www.nmc.cn/publish/forecast/ASC/chengdu.html\"}"}}"#,
        "\n\nevent: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":4}"#,
        "\n\nevent: content_block_start\n",
        r#"data: {"type":"content_block_start","index":12,"content_block":{"type":"text","text":"","citations":[]}}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":12,"delta":{"type":"text_delta","text":"1日）天气**\n\n"}}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":12,"delta":{"type":"citation_start_delta","citation":{"uuid":"76049044-7437-4882-a9f5-7776fa63130c","title":"四川五一天气预报2026- 成都本地宝","url":"https://m.cd.bendibao.com/news/207608.shtm","metadata":{"type":"webpage_metadata","site_domain":"bendibao.com"},"origin_tool_name":"web_search","sources":[]}}}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":12,"delta":{"type":"text_delta","text":"明天（5月1日）成都盆"}}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":12,"delta":{"type":"citation_end_delta","citation_uuid":"76049044-7437-4882-a9f5-7776fa63130c"}}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":12,"delta":{"type":"citation_start_delta","citation":{"uuid":"a1","title":"成都-天气预报","url":"https://www.nmc.cn/publish/forecast/ASC/chengdu.html?utm_source=claude.ai"}}}"#,
        "\n\nevent: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":12,"delta":{"type":"citation_end_delta","citation_uuid":"a1"}}"#,
        "\n\nevent: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":12,"stop_timestamp":"2026-04-30T13:58:36.502645Z"}"#,
        "\n\nevent: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null,"stop_details":null}}"#,
        "\n\nevent: message_limit\n",
        r#"data: {"type":"message_limit","message_limit":{"type":"within_limit","resetsAt":null,"remaining":null}}"#,
        "\n\nevent: message_stop\n",
        r#"data: {"type":"message_stop"}"#,
        "\n\n",
    );

    fn streamed(url: &str, title: &str, inline: bool) -> StreamSource {
        StreamSource { url: url.into(), title: title.into(), inline }
    }

    #[test]
    fn the_real_stream_gives_queries_cited_then_listed_sources_and_its_end() {
        let read = read_stream([CAPTURE]);
        assert_eq!(read.findings.search_queries, vec!["成都明天天气预报 2026年5月1日"]);
        assert_eq!(
            read.findings.sources,
            vec![
                streamed("https://m.cd.bendibao.com/news/207608.shtm", "四川五一天气预报2026- 成都本地宝", true),
                streamed(
                    "https://www.nmc.cn/publish/forecast/ASC/chengdu.html?utm_source=claude.ai",
                    "成都-天气预报",
                    true
                ),
                streamed("https://claude.ai/share/0e4c", "Shared chat", false),
                streamed("https://weather.example/cd#utm_source=claude.ai", "Chengdu weather", false),
            ]
        );
        assert_eq!(read.results, 3, "three results listed by the search");
        assert!(read.findings.complete);
        assert!(read.findings.products.is_empty(), "claude.ai shows no product cards");

        // Merged with nothing from the page: the share link is no source, tracking is gone.
        let (citations, _) = stream::merge(&[], &read.findings.sources);
        let urls: Vec<(&str, bool)> = citations.iter().map(|c| (c.url.as_str(), c.inline)).collect();
        assert_eq!(
            urls,
            vec![
                ("https://m.cd.bendibao.com/news/207608.shtm", true),
                ("https://www.nmc.cn/publish/forecast/ASC/chengdu.html", true),
                ("https://weather.example/cd", false),
            ]
        );
    }

    #[test]
    fn a_cut_stream_still_names_what_it_had_and_is_not_complete() {
        let cut = CAPTURE.split("event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2").next();
        let read = read_stream(cut);
        assert_eq!(read.findings.search_queries, vec!["成都明天天气预报 2026年5月1日"]);
        assert!(!read.findings.complete);
        assert_eq!(read_stream([""]), StreamRead::default());
    }

    #[test]
    fn inputs_and_results_given_whole_and_end_deltas_with_citations_are_read_too() {
        let body = concat!(
            r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","name":"web_search","input":{"query":"heat pumps"}}}"#,
            "\n\n",
            r#"data: {"type":"content_block_stop","index":0}"#,
            "\n\n",
            r#"data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_result","name":"web_search","content":[{"type":"knowledge","title":"A","url":"https://a.example/1"}]}}"#,
            "\n\n",
            r#"data: {"type":"content_block_stop","index":1}"#,
            "\n\n",
            r#"data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_result","name":"web_search","is_error":true,"content":[{"type":"text","text":"Error"}]}}"#,
            "\n\n",
            r#"data: {"type":"content_block_delta","index":3,"delta":{"type":"citation_end_delta","citation":{"url":"https://b.example/2","title":"B"}}}"#,
            "\n\n",
            r#"data: {"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#,
            "\n\n",
        );
        let read = read_stream([body]);
        assert_eq!(read.findings.search_queries, vec!["heat pumps"]);
        assert_eq!(
            read.findings.sources,
            vec![streamed("https://b.example/2", "B", true), streamed("https://a.example/1", "A", false)]
        );
        assert!(read.findings.complete);
    }

    /// A tool call as claude.ai streams it: `tool_use` with an empty input, the input in two
    /// `input_json_delta` fragments, the block's end.
    fn tool(index: usize, name: &str, input: &Value) -> String {
        let json = input.to_string();
        let half = json.char_indices().map(|(at, _)| at).find(|&at| at >= json.len() / 2).unwrap_or(0);
        let delta = |part: &str| {
            serde_json::json!({ "type": "content_block_delta", "index": index,
                "delta": { "type": "input_json_delta", "partial_json": part } })
        };
        let start = serde_json::json!({ "type": "content_block_start", "index": index,
            "content_block": { "type": "tool_use", "id": format!("toolu_{index}"), "name": name, "input": {} } });
        let stop = serde_json::json!({ "type": "content_block_stop", "index": index });
        [start, delta(&json[..half]), delta(&json[half..]), stop]
            .iter()
            .map(|event| format!("data: {event}\n\n"))
            .collect()
    }

    /// Documents made beside the text: claude.ai's artifacts (made, rewritten, updated) and the
    /// files it creates, edits and presents; a file kept in its working directory and never
    /// presented is no document, nor is an edit of a text the stream never gave; an edit of a
    /// document that does not hold its old text is counted as missed.
    #[test]
    fn documents_are_read_as_made_edited_and_shown() {
        use serde_json::json;
        let body = [
            tool(
                0,
                "artifacts",
                &json!({ "id": "guide", "command": "create", "title": "E-bike guide",
                "type": "text/markdown", "content": "# E-bikes\n\nStatus: draft" }),
            ),
            tool(
                1,
                "artifacts",
                &json!({ "id": "guide", "command": "update", "old_str": "draft", "new_str": "checked" }),
            ),
            tool(2, "artifacts", &json!({ "id": "table", "command": "create", "title": "Old table", "content": "v1" })),
            tool(
                3,
                "artifacts",
                &json!({ "id": "table", "command": "rewrite", "title": "  Price   table ", "content": "v2" }),
            ),
            tool(4, "create_file", &json!({ "path": "/mnt/user-data/outputs/picks.md", "file_text": "Pick the Vado" })),
            tool(
                5,
                "str_replace",
                &json!({ "path": "/mnt/user-data/outputs/picks.md", "old_str": "Vado", "new_str": "Vado SL" }),
            ),
            tool(6, "create_file", &json!({ "path": "/home/claude/notes.md", "file_text": "scratch" })),
            tool(7, "create_file", &json!({ "path": "/home/claude/report.md", "file_text": "The report" })),
            tool(8, "present_files", &json!({ "filepaths": ["/home/claude/report.md"] })),
            tool(9, "str_replace", &json!({ "path": "/home/claude/unknown.md", "old_str": "a", "new_str": "b" })),
            tool(10, "bash", &json!({ "command": "python make_docx.py" })),
            tool(11, "create_file", &json!({ "path": "/mnt/user-data/outputs/empty.md", "file_text": "  " })),
            // Edits whose old text is not there: of a document (missed), of a scratch file.
            tool(
                12,
                "str_replace",
                &json!({ "path": "/mnt/user-data/outputs/picks.md", "old_str": "Nowhere", "new_str": "x" }),
            ),
            tool(13, "str_replace", &json!({ "path": "/home/claude/notes.md", "old_str": "absent", "new_str": "x" })),
            r#"data: {"type":"message_stop"}"#.to_owned(),
        ]
        .concat();
        let findings = read_stream([body.as_str()]).findings;
        assert_eq!(findings.document_edits_missed, 1);
        let documents = findings.documents;
        let read: Vec<(&str, &str)> = documents.iter().map(|d| (d.title.as_str(), d.text.as_str())).collect();
        assert_eq!(
            read,
            vec![
                ("E-bike guide", "# E-bikes\n\nStatus: checked"),
                ("Price table", "v2"),
                ("picks.md", "Pick the Vado SL"),
                ("report.md", "The report"),
            ]
        );
        // An input given whole at the block's start is read too, and a stream with none has none.
        let whole = r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","name":"artifacts","input":{"id":"a","command":"create","title":"T","content":"Whole"}}}"#;
        let documents = read_stream([whole]).findings.documents;
        assert_eq!(documents, vec![Document { title: "T".into(), text: "Whole".into() }]);
        assert!(read_stream([CAPTURE]).findings.documents.is_empty());
        // Inputs of the wrong shapes make nothing.
        let odd = [
            tool(0, "artifacts", &json!({ "id": 5, "command": "create", "content": 7 })),
            tool(1, "create_file", &json!({ "path": ["x"], "file_text": "t" })),
            tool(2, "present_files", &json!({ "filepaths": "/mnt/user-data/outputs/x" })),
            tool(3, "artifacts", &json!("not an object")),
        ]
        .concat();
        assert!(read_stream([odd.as_str()]).findings.documents.is_empty());
    }

    /// The stop reason `max_tokens` (the model's output limit, where claude.ai offers Continue)
    /// is a complete stream of an answer cut short; `end_turn` is a whole answer.
    #[test]
    fn a_stop_at_the_output_limit_is_an_answer_cut_short() {
        assert!(!read_stream([CAPTURE]).findings.cut_short, "the capture ends its turn");
        let cut = CAPTURE.replace(r#""stop_reason":"end_turn""#, r#""stop_reason":"max_tokens""#);
        assert_ne!(cut, CAPTURE);
        let read = read_stream([cut.as_str()]);
        assert!(read.findings.complete && read.findings.cut_short);
        // A refusal is complete, not cut short, and declined.
        let declined = CAPTURE.replace(r#""stop_reason":"end_turn""#, r#""stop_reason":"refusal""#);
        let read = read_stream([declined.as_str()]);
        assert!(read.findings.complete && read.findings.declined && !read.findings.cut_short);
        assert!(!read_stream([CAPTURE]).findings.declined);
        // Without any stop reason the stream is neither complete nor cut short.
        let open = r#"data: {"type":"message_delta","delta":{"stop_reason":null}}"#;
        let read = read_stream([open]);
        assert!(!read.findings.complete && !read.findings.cut_short);
    }

    #[test]
    fn rows_without_links_take_the_streams_address_by_title() {
        let findings = read_stream([CAPTURE]).findings;
        let rows = vec![
            Row { href: String::new(), title: " 成都-天气预报 ".into(), domain: "nmc.cn".into() },
            Row { href: String::new(), title: "Unknown page".into(), domain: "x.example".into() },
            Row { href: String::new(), title: "Chengdu weather (cut)".into(), domain: "weather.example".into() },
            Row { href: "https://c.example/3".into(), title: "C".into(), domain: String::new() },
        ];
        let sources = page_sources(&rows, &findings);
        let got: Vec<(&str, &str)> = sources.iter().map(|s| (s.href.as_str(), s.title.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("https://www.nmc.cn/publish/forecast/ASC/chengdu.html?utm_source=claude.ai", " 成都-天气预报 "),
                ("https://weather.example/cd#utm_source=claude.ai", "Chengdu weather (cut)"),
                ("https://c.example/3", "C")
            ]
        );
    }
}
