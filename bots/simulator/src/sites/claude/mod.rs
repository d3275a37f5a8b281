//! The claude.ai look-alike: its pages and its streaming completion endpoint.
//!
//! # Evidence of the real markup (searched 2026-11)
//! - A Chat-to-Markdown MV3 extension's capture spec ("Requirements: Capture Spec", live recon of
//!   signed-in claude.ai, 2026-06-08): new chat at `https://claude.ai/new`, conversations at
//!   `/chat/<uuid>`; the composer is `div[role="textbox"][aria-label="Write your prompt to
//!   Claude"][data-testid="chat-input"]`; user turns carry `data-testid="user-message"` and an
//!   `h2.sr-only` "You said:", answers an `h2.sr-only` "Claude responded:"; the thinking summary
//!   is a clickable button with `role="status"` text right after that label; the action bar is
//!   `[role="group"][aria-label="Message actions"]` (Copy, feedback, Retry); "source links in the
//!   assistant response appear as ordinary anchors styled like citation/source tags"; file upload
//!   `input[data-testid="file-upload"][aria-label="Upload files"]`, "Add files, connectors, and
//!   more"; Cloudflare verification and a Google OAuth login before sign-in.
//! - The same project's Playwright fixtures: `button[data-testid="model-selector-dropdown"]`
//!   with `aria-label="Model: Haiku 4.5"` and the model name as its text,
//!   `button[data-testid="user-menu-button"]` ("Account settings, Free plan"); a logged-out
//!   claude.ai is an email form (`input` "Enter your email", `button[data-testid="continue"]`).
//! - An OB1 capture content script ("DOM signals confirmed ... 2026-05-17"): the assistant turn
//!   is complete when `div[data-is-streaming]` flips to "false"; the answer body is
//!   `div[class*="font-claude-response"]`; `[data-user-message-bubble]`.
//! - A ChatDump-style exporter's Claude parser: answers are `[data-is-streaming] >
//!   .font-claude-response`, the text in `.standard-markdown` blocks, tool-status chips
//!   `button[class*="group/status"]` with a `[class*="truncate"]` label, artifact cards.
//! - A ServiceSelectors table and several extensions: `[data-is-streaming="false"]
//!   .font-claude-message` (the older class name), `[data-is-streaming="true"]` while loading,
//!   `div.ProseMirror[contenteditable="true"]`, `button[aria-label="Send Message"]` (older) and
//!   `button[aria-label="Send message"]` (now); `button[aria-label="Stop response"]` as the stop
//!   control; limit texts "usage limit", "message limit".
//! - agarwalvishal/claude-chat-exporter `claude-chat-exporter.js`: copy buttons
//!   `button[data-testid="action-bar-copy"]`, feedback `button[aria-label="Give positive
//!   feedback"]`, "claude.ai dropped the [role=group][aria-label=Message actions] wrapper" (what
//!   the redesign variant does); `[data-testid="chat-title-button"] .truncate`; its issue #11:
//!   a web search shows "the list of search results" and "the inline citations".
//! - RobertoReale/Claude-Chat-Export-Tool `claude-chat-exporter.js`: the reasoning dropdown is a
//!   `rounded-lg border` box with an `overflow-y-auto` body and a `tabular-nums` timer, inside
//!   the answer container.
//! - Page texts quoted in public repositories: "You are out of free messages until 2:10 PM" +
//!   "Upgrade" above the composer, "Claude is AI and can make mistakes. Please double-check
//!   responses.", `sessionKey` as the session cookie, `lastActiveOrg` and
//!   `/api/organizations/{org}/chat_conversations/{uuid}` as the API.
//!
//! Where the evidence is thin (the exact citation tag and search-result markup, the thinking
//! block's classes) the look-alike follows the descriptions above; the completion stream follows
//! Anthropic's public message-stream events. The bot reads only the DOM.
//!
//! `[[empty]]`: the text block opens and closes without a delta and the message stops as usual
//! (`data-is-streaming` flips to "false", the action bar shows) over an empty markdown block.
//!
//! # The completion stream (research of 2026-12-02, /work/research/claude.md §4)
//! Shaped like a real capture of claude.ai's `/completion` stream (2026-04-30) and clewdr's
//! client: `message_start`; `: ping` comments; per web search a `tool_use` block whose `input`
//! starts as `{}` and streams in `input_json_delta` fragments, then a `tool_result` with
//! `content: []` and the results as ONE `input_json_delta` holding a JSON array of `knowledge`
//! items; two searches (a fan-out) and a `web_fetch`; the text with `citation_start_delta
//! {citation}` before the words a source backs and `citation_end_delta {citation_uuid}` after;
//! `message_delta`, `message_limit`, `message_stop`. The last cited source is in no result list;
//! a claude.ai share link and a `#utm_source=` fragment sit among the results. A 429 carries its
//! reset time in the header `anthropic-ratelimit-unified-reset` and in `error.message`, itself a
//! JSON string. claude.ai shows no product cards, so no products are streamed.
//!
//! # Page variants (`SimulatorConfig::variant`)
//! - `current`: today's look-alike.
//! - `redesign`: other class names and test ids (only fallback selectors work).
//! - `timeline-grid-2026`: the "Enhanced Extractor" DOM verified Feb 2026, the Expand-All
//!   userscript, a payload+DOM exporter and an activity-search helper: `.font-claude-response >
//!   div.grid.grid-rows-[auto_auto]` with `.row-start-1` (thinking and search, each behind a
//!   `button.group/status` toggle and a `grid-template-rows: 0fr` body) and `.row-start-2` (the
//!   answer); extended thinking on for every answer, its text the message's first
//!   `.standard-markdown`; result rows with favicon, title and domain but no link (SaveMyPhind
//!   issue #329); an action bar without `role=group`.
//! - `legacy-font-claude-message`: RobertoReale's and agarwalvishal's exporters (2025-07/08),
//!   10x-chat of 2026-02-21: the answer in `.font-claude-message` without `.standard-markdown`
//!   (the manifest of 2026.11 read it as an empty answer), plain links as citations, a
//!   `transition-all rounded-lg` thinking box, "Send Message", a `.font-claude-response` inside
//!   the model button.
//! - `testid-no-streaming-attr`: the cascades of 10x-chat, the Usage Meter and 11.autoai: the
//!   message is `[data-testid=assistant-message]`, the answer `.font-claude-response-body`, no
//!   `data-is-streaming`; the stop control clears between tool phases and the text renders
//!   smoothly, so it still grows after the stop control cleared.
//!
//! `late_sources`: the search results reach the page 0.9 s after the action bar.

mod page;

/// The page variants this look-alike serves (`SimulatorConfig::variant`), today's first.
pub(crate) const VARIANTS: &[&str] =
    &["current", "redesign", "timeline-grid-2026", "legacy-font-claude-message", "testid-no-streaming-attr"];

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::answer::{Citation, DOCUMENT_EDIT, PromptFlags, answer_for, document_for, strip_markers};
use crate::common::{
    EventSender, Pacing, challenge_page, event_stream, has_query_param, logged_in, no_store, send_event,
};
use crate::state::{Outcome, SimState};

use page::Variant;

/// Text of a mid-stream failure, as claude.ai shows it under the partial answer.
pub(crate) const INTERRUPTED_MESSAGE: &str = "Claude\u{2019}s response was interrupted. This can be caused by network problems or exceeding the maximum conversation length. Please contact support if the issue persists.";

/// How long a free account waits after hitting the limit (the banner names the hour).
const LIMIT_RESET: Duration = Duration::from_secs(5 * 3600);

/// Search results that are listed but not cited inline, at most.
const LISTED_ONLY: usize = 3;

/// The site's routes: pages and the completion endpoint.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route("/", get(home))
        .route("/new", get(new_chat))
        .route("/chat/{conversation_id}", get(conversation_page))
        .route("/login", get(login).post(crate::login::submit))
        .route("/api/organizations/{org}/chat_conversations/{conversation_id}/completion", post(completion))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(|| async { (StatusCode::NOT_FOUND, Html(page::not_found())) })
}

fn variant(state: &SimState) -> Variant {
    Variant::of(&state.config())
}

/// The chat page for a live session; otherwise a redirect to `/login`, as claude.ai sends a
/// logged-out browser there. (A challenge in front of every page is the edge's, in `routes`.)
fn chat_or_login(state: &SimState, headers: &HeaderMap, return_to: &str) -> Response {
    match logged_in(state, headers) {
        Some((token, label)) => {
            no_store(page::chat_page(variant(state), &label, &org_of(&token), state.config().late_sources))
        }
        None => {
            state.record_login_wall();
            Redirect::to(&format!("/login?returnTo={}", percent_encode(return_to))).into_response()
        }
    }
}

/// `/`: a new chat when logged in, the login page otherwise.
async fn home(State(state): State<SimState>, headers: HeaderMap) -> Response {
    if logged_in(&state, &headers).is_some() {
        Redirect::to("/new").into_response()
    } else {
        state.record_login_wall();
        Redirect::to("/login").into_response()
    }
}

/// The site event recorded for each incognito conversation a logged-in client opens
/// (`/new?incognito`, with any value or none).
pub const INCOGNITO_CHAT_EVENT: &str = "claude.incognito_chat_opened";

/// `/new`: a new conversation; `/new?incognito` an incognito one (kept out of the account's
/// history and memory on claude.ai; here only recorded, as [`INCOGNITO_CHAT_EVENT`]).
async fn new_chat(State(state): State<SimState>, uri: Uri, headers: HeaderMap) -> Response {
    if has_query_param(&uri, "incognito") && logged_in(&state, &headers).is_some() {
        state.record_site_event(INCOGNITO_CHAT_EVENT);
    }
    chat_or_login(&state, &headers, "/new")
}

/// `/chat/{uuid}`: where the browser is after the first answer; an empty chat page on reload
/// (conversations are not kept).
async fn conversation_page(
    State(state): State<SimState>,
    Path(conversation_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    chat_or_login(&state, &headers, &format!("/chat/{conversation_id}"))
}

/// `/login`: the login page, whatever the session (claude.ai shows it to anyone who asks).
async fn login(State(state): State<SimState>) -> Response {
    no_store(page::login_page(variant(&state)))
}

/// The organization uuid of a session, stable per token (claude.ai keeps it in `lastActiveOrg`).
fn org_of(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // Version 4, RFC 4122 variant: shaped like the uuids claude.ai uses.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    uuid::Uuid::from_bytes(bytes).to_string()
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// An API error in the shape claude.ai's API answers with.
fn api_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(json!({ "type": "error", "error": { "type": kind, "message": message } }))).into_response()
}

/// `POST /api/organizations/{org}/chat_conversations/{uuid}/completion`: streams the answer as
/// server-sent events shaped like Anthropic's message stream.
async fn completion(
    State(state): State<SimState>,
    Path((_org, conversation_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let config = state.config();
    let Some((token, _label)) = logged_in(&state, &headers) else {
        state.record_login_wall();
        return api_error(StatusCode::UNAUTHORIZED, "authentication_error", "Invalid authorization");
    };
    let request: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => {
            return api_error(StatusCode::BAD_REQUEST, "invalid_request_error", &format!("invalid json: {error}"));
        }
    };
    let Some(prompt) = request.get("prompt").and_then(serde_json::Value::as_str).filter(|p| !p.trim().is_empty())
    else {
        return api_error(StatusCode::BAD_REQUEST, "invalid_request_error", "prompt: field required");
    };
    let prompt = prompt.to_owned();
    let flags = PromptFlags::parse(&prompt);

    if flags.challenge {
        // A challenge mid-session; `config.challenge` is served by the edge in front of the site.
        state.record_challenge();
        return challenge_page(state.site().title());
    }
    if flags.expire_session {
        state.expire_session(&token);
        state.record_login_wall();
        return api_error(StatusCode::UNAUTHORIZED, "authentication_error", "Your session has expired.");
    }
    if flags.too_long {
        // The API's refusal of a prompt over the model's input (the page words it its own way).
        state.record(&token, &prompt, Outcome::Failed);
        return api_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            "prompt is too long: 212345 tokens > 200000 maximum",
        );
    }
    let over_quota = config.rate_limit_after.is_some_and(|limit| state.answers_of(&token) >= limit);
    if flags.rate_limit || config.rate_limit || over_quota {
        state.record(&token, &prompt, Outcome::RateLimited);
        let resets_at = SystemTime::now()
            .checked_add(LIMIT_RESET)
            .and_then(|when| when.duration_since(UNIX_EPOCH).ok())
            // Limits reset on a round ten minutes, as the banner's "until 9:10 PM" shows.
            .map_or(0, |since| since.as_secs() / 600 * 600);
        // claude.ai's 429: `message` is itself a JSON string to parse again, and the reset
        // time is also in a header (clewdr error.rs, 2026-08).
        let message = json!({ "type": "exceeded_limit", "resetsAt": resets_at, "remaining": null,
            "perModelLimit": null })
        .to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("anthropic-ratelimit-unified-reset", resets_at.to_string())],
            Json(json!({ "type": "error", "error": { "type": "rate_limit_error", "message": message } })),
        )
            .into_response();
    }

    // The timeline variant runs with extended thinking on: every answer thinks first.
    let thinking = flags.thinking || (Variant::of(&config) == Variant::TimelineGrid && !flags.empty && !config.empty);
    let plan = Plan::new(Pacing::new(&config, flags, &prompt), thinking, &prompt, conversation_id);
    let (tx, response) = event_stream();
    tokio::spawn(async move {
        let outcome = produce(&tx, &plan).await;
        tracing::debug!(?outcome, conversation_id = %plan.conversation_id, "answer stream ended");
        state.record(&token, &prompt, outcome);
    });
    response
}

/// What one answer request will stream, fixed when it arrives.
struct Plan {
    pacing: Pacing,
    /// Extended thinking before the answer (`[[thinking]]`, or always on the variant that runs
    /// with extended thinking on).
    thinking: Option<String>,
    /// The web searches run, in order (claude.ai fans a question out into several).
    searches: Vec<Search>,
    /// The page read whole with `web_fetch` after searching (the first cited source).
    fetched: Option<Citation>,
    /// The document written beside the answer (`[[document]]`): its path and first text.
    document: Option<(String, String)>,
    conversation_id: String,
}

/// One `web_search` tool call: its query and the `knowledge` items it returned.
struct Search {
    query: String,
    results: Vec<serde_json::Value>,
}

impl Plan {
    fn new(pacing: Pacing, thinking: bool, prompt: &str, conversation_id: String) -> Plan {
        let question = strip_markers(prompt);
        let searches = searches(prompt, &pacing.answer.citations, &conversation_id);
        let fetched = pacing.answer.citations.first().cloned().filter(|_| !searches.is_empty());
        let document = PromptFlags::parse(prompt).document.then(|| document_for(prompt));
        Plan {
            thinking: thinking.then(|| thinking_text(&question)),
            searches,
            fetched,
            document,
            pacing,
            conversation_id,
        }
    }
}

/// The thinking a reasoning model streams before answering. It is never part of the answer.
fn thinking_text(question: &str) -> String {
    format!(
        "The user asks: \u{201c}{question}\u{201d}. A structured overview with recent sources fits best.\n\n\
         Plan the reasoning first: the key factors, then a practical recommendation, each point kept brief."
    )
}

/// The web searches claude.ai runs for `prompt` (a fan-out of two queries): the question as
/// asked, then the question narrowed to this year. Deterministic per prompt.
pub(crate) fn search_queries(prompt: &str) -> [String; 2] {
    let first: String = strip_markers(prompt).chars().take(80).collect();
    let second = format!("{} 2026", first.trim_end_matches(['?', ' ']));
    [first, second]
}

/// Sources only listed among the search results (never cited inline) for `prompt`: drawn as the
/// sources of a related question, without the ones the answer cites. Deterministic per prompt.
pub(crate) fn listed_only_sources(prompt: &str, cited: &[Citation]) -> Vec<Citation> {
    let related = answer_for(&format!("{} related reading", strip_markers(prompt)), true);
    related
        .citations
        .into_iter()
        .filter(|source| cited.iter().all(|c| c.url != source.url && c.domain != source.domain))
        .take(LISTED_ONLY)
        .collect()
}

/// The search results as the search block lists them: one listed-only source first (search
/// order is not citation order), then the cited ones, then the other listed-only ones.
fn search_results(prompt: &str, cited: &[Citation]) -> Vec<Citation> {
    if cited.is_empty() {
        return Vec::new();
    }
    let mut listed = listed_only_sources(prompt, cited).into_iter();
    let mut results: Vec<Citation> = listed.next().into_iter().collect();
    results.extend(cited.iter().cloned());
    results.extend(listed);
    results
}

/// A shared claude.ai conversation a web search may return: the assistant's own page, never a
/// source (a bot must leave it out).
pub(crate) fn own_share_link(conversation_id: &str) -> String {
    format!("https://claude.ai/share/{conversation_id}")
}

/// The searches for `prompt`, shaped like the capture of 2026-04-30: the results split over
/// the two queries, the last cited source in neither (claude.ai cites pages a list did not
/// show), the listed-only sources of the second search with tracking in their fragment, and a
/// claude.ai share link among its results.
fn searches(prompt: &str, cited: &[Citation], conversation_id: &str) -> Vec<Search> {
    let mut results = search_results(prompt, cited);
    if results.is_empty() {
        return Vec::new();
    }
    if cited.len() >= 2
        && let Some(last) = cited.last()
    {
        results.retain(|result| result.url != last.url);
    }
    let split = (1 + cited.len() / 2).min(results.len());
    let second_results = results.split_off(split);
    let [first_query, second_query] = search_queries(prompt);
    let first = Search { query: first_query, results: results.iter().map(|r| result_json(r, &r.url)).collect() };
    let mut second: Vec<serde_json::Value> = second_results
        .iter()
        .map(|r| {
            if cited.iter().any(|c| c.url == r.url) {
                result_json(r, &r.url)
            } else {
                result_json(r, &format!("{}#utm_source=claude.ai&utm_medium=referral", r.url))
            }
        })
        .collect();
    let own = Citation {
        url: own_share_link(conversation_id),
        href: own_share_link(conversation_id),
        title: "Shared conversation | Claude".to_owned(),
        domain: "claude.ai".to_owned(),
    };
    second.push(result_json(&own, &own.url));
    vec![first, Search { query: second_query, results: second }]
}

/// The name claude.ai shows for a site: its registrable label, capitalised.
fn site_name(domain: &str) -> String {
    let parts: Vec<&str> = domain.split('.').filter(|p| !p.is_empty()).collect();
    let label = if parts.len() >= 2 { parts[parts.len() - 2] } else { parts.first().copied().unwrap_or("source") };
    let mut chars = label.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

fn favicon(domain: &str) -> String {
    format!("https://www.google.com/s2/favicons?sz=64&domain={domain}")
}

fn metadata(domain: &str) -> serde_json::Value {
    json!({ "type": "webpage_metadata", "site_domain": domain, "favicon_url": favicon(domain), "site_name": site_name(domain) })
}

/// One search result as a `knowledge` item (capture 2026-04-30), linking to `url`.
fn result_json(citation: &Citation, url: &str) -> serde_json::Value {
    json!({ "type": "knowledge", "title": citation.title, "url": url, "metadata": metadata(&citation.domain), "is_missing": false })
}

/// One piece of a streamed chunk: text, or the citation marker of source `index`.
#[derive(Debug, PartialEq, Eq)]
enum Piece<'a> {
    Text(&'a str),
    Cite(usize),
}

/// Splits a chunk of the answer's stream text at its inline citation markers.
fn pieces(chunk: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = chunk;
    while let Some(open) = rest.find('\u{e200}') {
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open..];
        let Some(close) = after.find('\u{e201}') else {
            // Chunks never split a marker; an unfinished one is left out rather than shown.
            return out;
        };
        let marker = &after[..close];
        let index = marker.rsplit("search").next().and_then(|digits| digits.parse::<usize>().ok());
        if let Some(index) = index {
            out.push(Piece::Cite(index));
        }
        rest = &after[close + '\u{e201}'.len_utf8()..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

/// Where each cited span starts in the answer's text (markers left out): claude.ai opens a
/// citation (`citation_start_delta`) before the words it backs and closes it after them. The
/// span is the sentence before the marker. `(offset, source index)` in text order.
fn citation_starts(stream_text: &str) -> Vec<(usize, usize)> {
    let mut starts = Vec::new();
    let mut plain = String::new();
    let mut floor = 0;
    for piece in pieces(stream_text) {
        match piece {
            Piece::Text(text) => plain.push_str(text),
            Piece::Cite(index) => {
                let body = plain.trim_end();
                let before = body.strip_suffix('.').unwrap_or(body);
                let start = [before.rfind(". ").map(|at| at + 2), before.rfind('\n').map(|at| at + 1)]
                    .into_iter()
                    .flatten()
                    .max()
                    .unwrap_or(0)
                    .max(floor);
                let start = start + plain[start..].len() - plain[start..].trim_start().len();
                starts.push((start.min(plain.len()), index));
                floor = plain.len();
            }
        }
    }
    starts
}

/// An ISO-8601 UTC timestamp with microseconds, as claude.ai's `start_timestamp`s read.
fn timestamp() -> String {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    )
}

async fn event(tx: &EventSender, kind: &str, data: &serde_json::Value) -> bool {
    send_event(tx, Some(kind), &data.to_string()).await
}

/// A keep-alive comment, as claude.ai sends between events (`: ping - <time>`).
async fn ping(tx: &EventSender) -> bool {
    tx.send(Ok(Bytes::from(format!(": ping - {}\n\n", timestamp().replace('T', " ").trim_end_matches('Z')))))
        .await
        .is_ok()
}

/// Sleeps for `duration`, or until the client is gone (then false).
async fn hold(tx: &EventSender, duration: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = tx.closed() => false,
    }
}

async fn block_start(tx: &EventSender, index: usize, mut block: serde_json::Value) -> bool {
    if let Some(fields) = block.as_object_mut() {
        fields.insert("start_timestamp".into(), json!(timestamp()));
        fields.insert("stop_timestamp".into(), serde_json::Value::Null);
        fields.insert("flags".into(), serde_json::Value::Null);
    }
    event(tx, "content_block_start", &json!({ "type": "content_block_start", "index": index, "content_block": block }))
        .await
}

async fn block_delta(tx: &EventSender, index: usize, delta: serde_json::Value) -> bool {
    event(tx, "content_block_delta", &json!({ "type": "content_block_delta", "index": index, "delta": delta })).await
}

async fn block_stop(tx: &EventSender, index: usize) -> bool {
    event(
        tx,
        "content_block_stop",
        &json!({ "type": "content_block_stop", "index": index, "stop_timestamp": timestamp() }),
    )
    .await
}

/// `partial_json` fragments of `input` as claude.ai streams a tool call's input: the tool_use
/// block starts with `input: {}` and the JSON arrives in pieces that only parse together.
fn json_fragments(input: &serde_json::Value) -> Vec<String> {
    let text = input.to_string();
    let cut = text.find(':').map_or(0, |at| at + 1);
    let rest = &text[cut..];
    let mut half = rest.len() / 2;
    while !rest.is_char_boundary(half) {
        half += 1;
    }
    [&text[..cut], &rest[..half], &rest[half..]].into_iter().filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// A tool call and its result, as four-plus events: `tool_use` with an empty input, the input
/// in `input_json_delta` fragments, then `tool_result` with empty content and the results as one
/// `input_json_delta` whose `partial_json` is a JSON array string.
async fn tool_call(
    tx: &EventSender,
    index: &mut usize,
    name: &str,
    input: serde_json::Value,
    results: &[serde_json::Value],
    display: serde_json::Value,
) -> bool {
    let id = format!("toolu_{}", uuid::Uuid::new_v4().simple());
    let message = match name {
        "web_fetch" => "Fetching page",
        "web_search" => "Searching the web",
        "create_file" => "Creating file",
        "str_replace" => "Editing file",
        _ => "Presenting file",
    };
    let start = json!({ "type": "tool_use", "id": id, "name": name, "input": {}, "message": message,
        "integration_name": null, "integration_icon_url": null, "icon_name": "globe", "context": null,
        "display_content": null, "approval_options": null, "approval_key": null, "is_mcp_app": null,
        "mcp_server_url": null });
    if !block_start(tx, *index, start).await {
        return false;
    }
    for fragment in json_fragments(&input) {
        if !block_delta(tx, *index, json!({ "type": "input_json_delta", "partial_json": fragment })).await {
            return false;
        }
    }
    if !block_stop(tx, *index).await {
        return false;
    }
    *index += 1;
    let result = json!({ "type": "tool_result", "tool_use_id": id, "name": name, "content": [], "is_error": false,
        "structured_content": null, "meta": null, "message": null, "integration_name": null,
        "mcp_server_url": null, "integration_icon_url": null, "icon_name": "globe", "display_content": display });
    let items = serde_json::Value::Array(results.to_vec()).to_string();
    let done = block_start(tx, *index, result).await
        && block_delta(tx, *index, json!({ "type": "input_json_delta", "partial_json": items })).await
        && block_stop(tx, *index).await;
    *index += 1;
    done
}

async fn produce(tx: &EventSender, plan: &Plan) -> Outcome {
    let pacing = &plan.pacing;
    let message_id = uuid::Uuid::new_v4().to_string();
    let start = json!({ "type": "message_start", "message": {
        "id": format!("chatcompl_{}", uuid::Uuid::new_v4().simple()), "type": "message", "role": "assistant",
        "model": "", "parent_uuid": uuid::Uuid::new_v4().to_string(), "uuid": message_id, "content": [],
        "stop_reason": null, "stop_sequence": null, "stop_details": null,
        "trace_id": format!("{:032x}", uuid::Uuid::new_v4().as_u128()),
        "request_id": format!("req_{}", uuid::Uuid::new_v4().simple()) },
        "discarded_parent_message_uuid": null });
    if !event(tx, "message_start", &start).await || !ping(tx).await {
        return Outcome::Interrupted;
    }
    let mut index = 0;

    if let Some(thinking) = &plan.thinking {
        let started = json!({ "type": "thinking", "thinking": "", "summaries": [], "cut_off": false });
        if !block_start(tx, index, started).await || !hold(tx, pacing.first_token_delay).await {
            return Outcome::Interrupted;
        }
        let words: Vec<&str> = thinking.split_inclusive(' ').collect();
        for (n, chunk) in words.chunks(pacing.words_per_chunk).enumerate() {
            // A reasoning model goes quiet while it thinks: a pause that is not the end.
            let delay = if n == 2 { pacing.pause } else { pacing.chunk_delay };
            let delta = json!({ "type": "thinking_delta", "thinking": chunk.concat() });
            if !hold(tx, delay).await || !block_delta(tx, index, delta).await {
                return Outcome::Interrupted;
            }
        }
        if !block_stop(tx, index).await {
            return Outcome::Interrupted;
        }
        index += 1;
    }

    for search in &plan.searches {
        let input = json!({ "query": search.query });
        if !tool_call(tx, &mut index, "web_search", input, &search.results, serde_json::Value::Null).await
            || !ping(tx).await
            || !hold(tx, pacing.first_token_delay / 2).await
        {
            return Outcome::Interrupted;
        }
    }
    if let Some(page) = &plan.fetched {
        let display = json!({ "type": "rich_link", "link": { "title": page.title, "subtitles": null, "url": page.url,
            "resource_type": null, "icon_url": favicon(&page.domain), "source": site_name(&page.domain) },
            "is_trusted": false });
        if !tool_call(tx, &mut index, "web_fetch", json!({ "url": page.url }), &[result_json(page, &page.url)], display)
            .await
        {
            return Outcome::Interrupted;
        }
    }

    if let Some((path, text)) = &plan.document {
        // Written, edited once and shown, as claude.ai's file tools do; each tool says what it
        // did in a text result.
        let (old, new) = DOCUMENT_EDIT;
        let calls = [
            ("create_file", json!({ "description": "A buyer's guide", "path": path, "file_text": text })),
            ("str_replace", json!({ "description": "Mark it checked", "path": path, "old_str": old, "new_str": new })),
            ("present_files", json!({ "filepaths": [path] })),
        ];
        for (name, input) in calls {
            let said = [json!({ "type": "text", "text": format!("{name}: done ({path})") })];
            if !tool_call(tx, &mut index, name, input, &said, serde_json::Value::Null).await {
                return Outcome::Interrupted;
            }
        }
    }

    if !block_start(tx, index, json!({ "type": "text", "text": "", "citations": [] })).await {
        return Outcome::Interrupted;
    }
    let starts = citation_starts(&pacing.answer.stream_text);
    let uuids: Vec<String> = pacing.answer.citations.iter().map(|_| uuid::Uuid::new_v4().to_string()).collect();
    let mut next_start = 0;
    let mut offset = 0;
    let chunks = pacing.chunks();
    let count = chunks.len();
    for (n, chunk) in chunks.iter().enumerate() {
        if pacing.fails_at(n, count) {
            let error =
                json!({ "type": "error", "error": { "type": "overloaded_error", "message": INTERRUPTED_MESSAGE } });
            if !event(tx, "error", &error).await {
                return Outcome::Interrupted;
            }
            return Outcome::Failed;
        }
        if let Some(stall) = pacing.stalls_at(n, count) {
            // Never completes: hold the stream open until the stall ends or the client leaves.
            let _ = hold(tx, stall).await;
            return Outcome::Interrupted;
        }
        if pacing.refusal && n == count / 3 {
            // Declined under the usage policy: the stream ends as usual, its stop reason says why.
            let declined = block_stop(tx, index).await
                && event(
                    tx,
                    "message_delta",
                    &json!({ "type": "message_delta",
                        "delta": { "stop_reason": "refusal", "stop_sequence": null, "stop_details": null } }),
                )
                .await
                && event(tx, "message_stop", &json!({ "type": "message_stop" })).await;
            return if declined { Outcome::Failed } else { Outcome::Interrupted };
        }
        pacing.before_chunk(n, count).await;
        let mut deltas = Vec::new();
        for piece in pieces(chunk) {
            match piece {
                Piece::Text(text) => {
                    let mut rest = text;
                    while let Some(&(at, source)) = starts.get(next_start) {
                        if at >= offset + rest.len() {
                            break;
                        }
                        let (before, after) = rest.split_at(at.saturating_sub(offset).min(rest.len()));
                        if !before.is_empty() {
                            deltas.push(json!({ "type": "text_delta", "text": before }));
                        }
                        offset += before.len();
                        deltas.push(citation_start(pacing, &uuids, source));
                        next_start += 1;
                        rest = after;
                    }
                    if !rest.is_empty() {
                        deltas.push(json!({ "type": "text_delta", "text": rest }));
                    }
                    offset += rest.len();
                }
                Piece::Cite(source) => {
                    let Some(uuid) = uuids.get(source) else {
                        continue;
                    };
                    if starts.get(next_start).is_some_and(|&(_, s)| s == source) {
                        deltas.push(citation_start(pacing, &uuids, source));
                        next_start += 1;
                    }
                    deltas.push(json!({ "type": "citation_end_delta", "citation_uuid": uuid }));
                }
            }
        }
        for delta in deltas {
            if !block_delta(tx, index, delta).await {
                return Outcome::Interrupted;
            }
        }
    }

    // An empty answer (`[[empty]]`) had no chunks: the text block opened and ends without a word.
    pacing.before_empty_finish().await;
    // `[[cut-short]]`: the model's output limit, which the page shows with a Continue button.
    let stop_reason = if pacing.cut_short { "max_tokens" } else { "end_turn" };
    let limit = json!({ "type": "message_limit", "message_limit": { "type": "within_limit", "resetsAt": null,
        "remaining": null, "perModelLimit": null, "representativeClaim": "five_hour",
        "overageDisabledReason": "overage_not_provisioned", "overageInUse": false } });
    let done = block_stop(tx, index).await
        && event(
            tx,
            "message_delta",
            &json!({ "type": "message_delta",
                "delta": { "stop_reason": stop_reason, "stop_sequence": null, "stop_details": null } }),
        )
        .await
        && event(tx, "message_limit", &limit).await
        && event(tx, "message_stop", &json!({ "type": "message_stop" })).await;
    if done { pacing.finished() } else { Outcome::Interrupted }
}

/// `citation_start_delta` for source `index` (capture 2026-04-30 shape). The first source is
/// linked with a tracking parameter, as assistants' links often are.
fn citation_start(pacing: &Pacing, uuids: &[String], index: usize) -> serde_json::Value {
    let Some(citation) = pacing.answer.citations.get(index) else {
        return json!({ "type": "flag_delta", "flag": "unknown_citation" });
    };
    let uuid = uuids.get(index).cloned().unwrap_or_default();
    let url = if index == 0 { format!("{}?utm_source=claude.ai", citation.url) } else { citation.url.clone() };
    json!({ "type": "citation_start_delta", "citation": {
        "uuid": uuid, "title": citation.title, "url": url, "metadata": metadata(&citation.domain),
        "origin_tool_name": "web_search",
        "sources": [{ "title": citation.title, "subtitles": null, "url": url, "resource_type": null,
            "icon_url": favicon(&citation.domain), "source": site_name(&citation.domain), "content_body": null,
            "uuid": uuid }] } })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_split_into_text_and_citation_markers() {
        let chunk = format!("works well. {} Next", crate::answer::marker(3));
        assert_eq!(pieces(&chunk), vec![Piece::Text("works well. "), Piece::Cite(3), Piece::Text(" Next")]);
        assert_eq!(pieces("plain"), vec![Piece::Text("plain")]);
        assert_eq!(pieces(&crate::answer::marker(0)), vec![Piece::Cite(0)]);
    }

    #[test]
    fn every_marker_of_an_answer_maps_to_its_citation() {
        let answer = answer_for("best noise cancelling headphones", true);
        let cited: Vec<usize> = answer
            .chunks(3)
            .iter()
            .flat_map(|chunk| {
                pieces(chunk)
                    .into_iter()
                    .filter_map(|p| if let Piece::Cite(i) = p { Some(i) } else { None })
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(cited, (0..answer.citations.len()).collect::<Vec<_>>());
    }

    #[test]
    fn search_lists_cited_and_other_sources_deterministically() {
        let prompt = "What are the best laptops under $1,000?";
        let cited = answer_for(prompt, true).citations;
        let results = search_results(prompt, &cited);
        let listed = listed_only_sources(prompt, &cited);
        assert!(!listed.is_empty());
        assert_eq!(results.len(), cited.len() + listed.len());
        assert_eq!(results[0], listed[0], "a listed-only source leads the search results");
        for source in &listed {
            assert!(cited.iter().all(|c| c.url != source.url));
        }
        assert_eq!(search_results(&format!("{prompt} [[slow]]"), &cited), results);
        assert!(search_results(prompt, &[]).is_empty());
    }

    #[test]
    fn each_citation_opens_at_the_start_of_the_sentence_it_backs() {
        let text = format!(
            "First claim. Second claim here. {}\n- **Term:** third claim. {} More.",
            crate::answer::marker(0),
            crate::answer::marker(1)
        );
        let plain: String =
            pieces(&text).into_iter().filter_map(|p| if let Piece::Text(t) = p { Some(t) } else { None }).collect();
        let starts = citation_starts(&text);
        let spans: Vec<(&str, usize)> = starts.iter().map(|&(at, index)| (&plain[at..], index)).collect();
        assert!(spans[0].0.starts_with("Second claim here."), "{spans:?}");
        assert!(spans[1].0.starts_with("- **Term:** third claim."), "{spans:?}");
        assert_eq!(starts.iter().map(|s| s.1).collect::<Vec<_>>(), vec![0, 1]);
    }

    #[test]
    fn searches_fan_out_leave_the_last_cited_source_to_the_text_and_list_a_share_link() {
        let prompt = "What are the best laptops under $1,000?";
        let cited = answer_for(prompt, true).citations;
        let searches = searches(prompt, &cited, "c0ffee");
        assert_eq!(searches.len(), 2);
        assert_eq!(searches[0].query, "What are the best laptops under $1,000?");
        assert_eq!(searches[1].query, "What are the best laptops under $1,000 2026");
        let urls: Vec<&str> = searches.iter().flat_map(|s| &s.results).filter_map(|r| r["url"].as_str()).collect();
        assert!(!urls.contains(&cited[cited.len() - 1].url.as_str()));
        assert_eq!(urls.last(), Some(&"https://claude.ai/share/c0ffee"));
        let input = json!({ "query": "a \u{e9}t\u{e9} query" });
        let fragments = json_fragments(&input);
        assert_eq!(fragments[0], "{\"query\":");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&fragments.concat()).ok(), Some(input));
        assert!(timestamp().ends_with('Z') && timestamp().len() == 27, "{}", timestamp());
    }

    #[test]
    fn org_ids_are_stable_uuids() {
        let org = org_of("token-a");
        assert_eq!(org, org_of("token-a"));
        assert_ne!(org, org_of("token-b"));
        assert!(uuid::Uuid::parse_str(&org).is_ok());
        assert_eq!(percent_encode("/chat/a b"), "%2Fchat%2Fa%20b");
    }
}
