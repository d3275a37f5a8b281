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

mod page;

/// The page variants this look-alike serves (`SimulatorConfig::variant`), today's first.
pub(crate) const VARIANTS: &[&str] = &["current", "redesign"];

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::answer::{Citation, PromptFlags, answer_for, strip_markers};
use crate::common::{EventSender, Pacing, challenge_page, event_stream, logged_in, no_store, send_event};
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
        .route("/login", get(login))
        .route("/api/organizations/{org}/chat_conversations/{conversation_id}/completion", post(completion))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(|| async { (StatusCode::NOT_FOUND, Html(page::not_found())) })
}

fn variant(state: &SimState) -> Variant {
    Variant::of(state.config().redesign)
}

/// The chat page for a live session; otherwise a redirect to `/login`, as claude.ai sends a
/// logged-out browser there. (A challenge in front of every page is the edge's, in `routes`.)
fn chat_or_login(state: &SimState, headers: &HeaderMap, return_to: &str) -> Response {
    match logged_in(state, headers) {
        Some((token, label)) => no_store(page::chat_page(variant(state), &label, &org_of(&token))),
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

/// `/new`: a new conversation.
async fn new_chat(State(state): State<SimState>, headers: HeaderMap) -> Response {
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
    let over_quota = config.rate_limit_after.is_some_and(|limit| state.answers_of(&token) >= limit);
    if flags.rate_limit || config.rate_limit || over_quota {
        state.record(&token, &prompt, Outcome::RateLimited);
        let resets_at = SystemTime::now()
            .checked_add(LIMIT_RESET)
            .and_then(|when| when.duration_since(UNIX_EPOCH).ok())
            // Limits reset on a round ten minutes, as the banner's "until 9:10 PM" shows.
            .map_or(0, |since| since.as_secs() / 600 * 600);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({ "type": "error", "error": {
                "type": "rate_limit_error", "message": "exceeded_limit", "resets_at": resets_at,
            }})),
        )
            .into_response();
    }

    let plan = Plan::new(Pacing::new(&config, flags, &prompt), flags.thinking, &prompt, conversation_id);
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
    /// Extended thinking before the answer (`[[thinking]]`).
    thinking: Option<String>,
    /// Search results in the order the search block lists them: cited ones and listed-only ones.
    results: Vec<Citation>,
    query: String,
    conversation_id: String,
}

impl Plan {
    fn new(pacing: Pacing, thinking: bool, prompt: &str, conversation_id: String) -> Plan {
        let question = strip_markers(prompt);
        let results = search_results(prompt, &pacing.answer.citations);
        Plan {
            thinking: thinking.then(|| thinking_text(&question)),
            query: question.chars().take(80).collect(),
            results,
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

fn result_json(citation: &Citation) -> serde_json::Value {
    json!({
        "type": "knowledge",
        "title": citation.title,
        "url": citation.url,
        "metadata": { "type": "webpage_metadata", "site_domain": citation.domain, "site_name": citation.domain },
    })
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

async fn event(tx: &EventSender, kind: &str, data: &serde_json::Value) -> bool {
    send_event(tx, Some(kind), &data.to_string()).await
}

/// Sleeps for `duration`, or until the client is gone (then false).
async fn hold(tx: &EventSender, duration: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => true,
        () = tx.closed() => false,
    }
}

async fn produce(tx: &EventSender, plan: &Plan) -> Outcome {
    let pacing = &plan.pacing;
    let message_id = uuid::Uuid::new_v4().to_string();
    let start = json!({ "type": "message_start", "message": {
        "id": format!("chatcompl_{}", uuid::Uuid::new_v4().simple()), "type": "message", "role": "assistant",
        "model": page::MODEL_ID, "uuid": message_id, "content": [], "stop_reason": null,
    }});
    if !event(tx, "message_start", &start).await {
        return Outcome::Interrupted;
    }
    let mut index = 0;

    if let Some(thinking) = &plan.thinking {
        let started = json!({ "type": "content_block_start", "index": index,
            "content_block": { "type": "thinking", "thinking": "", "summaries": [] } });
        if !event(tx, "content_block_start", &started).await || !hold(tx, pacing.first_token_delay).await {
            return Outcome::Interrupted;
        }
        let words: Vec<&str> = thinking.split_inclusive(' ').collect();
        for (n, chunk) in words.chunks(pacing.words_per_chunk).enumerate() {
            // A reasoning model goes quiet while it thinks: a pause that is not the end.
            let delay = if n == 2 { pacing.pause } else { pacing.chunk_delay };
            let delta = json!({ "type": "content_block_delta", "index": index,
                "delta": { "type": "thinking_delta", "thinking": chunk.concat() } });
            if !hold(tx, delay).await || !event(tx, "content_block_delta", &delta).await {
                return Outcome::Interrupted;
            }
        }
        if !event(tx, "content_block_stop", &json!({ "type": "content_block_stop", "index": index })).await {
            return Outcome::Interrupted;
        }
        index += 1;
    }

    if !plan.results.is_empty() {
        let tool = json!({ "type": "content_block_start", "index": index, "content_block": {
            "type": "tool_use", "id": format!("toolu_{}", uuid::Uuid::new_v4().simple()),
            "name": "web_search", "input": { "query": plan.query } } });
        if !event(tx, "content_block_start", &tool).await
            || !event(tx, "content_block_stop", &json!({ "type": "content_block_stop", "index": index })).await
            || !hold(tx, pacing.first_token_delay).await
        {
            return Outcome::Interrupted;
        }
        index += 1;
        let results: Vec<serde_json::Value> = plan.results.iter().map(result_json).collect();
        let result = json!({ "type": "content_block_start", "index": index, "content_block": {
            "type": "tool_result", "name": "web_search", "content": results, "is_error": false } });
        if !event(tx, "content_block_start", &result).await
            || !event(tx, "content_block_stop", &json!({ "type": "content_block_stop", "index": index })).await
        {
            return Outcome::Interrupted;
        }
        index += 1;
    }

    let text_start =
        json!({ "type": "content_block_start", "index": index, "content_block": { "type": "text", "text": "" } });
    if !event(tx, "content_block_start", &text_start).await {
        return Outcome::Interrupted;
    }
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
        pacing.before_chunk(n, count).await;
        for piece in pieces(chunk) {
            let delta = match piece {
                Piece::Text(text) => json!({ "type": "text_delta", "text": text }),
                Piece::Cite(source) => {
                    let Some(citation) = pacing.answer.citations.get(source) else {
                        continue;
                    };
                    json!({ "type": "citation_end_delta", "citation": {
                        "uuid": uuid::Uuid::new_v4().to_string(), "url": citation.url, "title": citation.title,
                        "source_index": source, "metadata": { "site_domain": citation.domain },
                    }})
                }
            };
            let delta = json!({ "type": "content_block_delta", "index": index, "delta": delta });
            if !event(tx, "content_block_delta", &delta).await {
                return Outcome::Interrupted;
            }
        }
    }

    // An empty answer (`[[empty]]`) had no chunks: the text block opened and ends without a word.
    pacing.before_empty_finish().await;
    let done = event(tx, "content_block_stop", &json!({ "type": "content_block_stop", "index": index })).await
        && event(
            tx,
            "message_delta",
            &json!({ "type": "message_delta", "delta": { "stop_reason": "end_turn", "stop_sequence": null } }),
        )
        .await
        && event(tx, "message_stop", &json!({ "type": "message_stop" })).await;
    if done { pacing.finished() } else { Outcome::Interrupted }
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
    fn org_ids_are_stable_uuids() {
        let org = org_of("token-a");
        assert_eq!(org, org_of("token-a"));
        assert_ne!(org, org_of("token-b"));
        assert!(uuid::Uuid::parse_str(&org).is_ok());
        assert_eq!(percent_encode("/chat/a b"), "%2Fchat%2Fa%20b");
    }
}
