//! The chatgpt.com look-alike: its pages and its streaming `POST /backend-api/f/conversation`.
//!
//! Evidence for the markup (searched 2026-11; more in the comment at the top of
//! `assets/chat.html`):
//! - Korner-san/be-visible.ai `worker/lib/chatgpt-batch-executor.js` and
//!   `worker/executors/chatgpt-executor.js` (Playwright against chatgpt.com): the Sources panel
//!   opens from a button whose text is "Sources" and is a `[role="dialog"]` holding
//!   `a[href^="http"]` links and a `button[aria-label="Close"]`; links carry
//!   `?utm_source=chatgpt.com`; the challenge is detected by the title "Just a moment"; the
//!   login wall by a "Log in" button and no `#prompt-textarea`. Its notes
//!   (`docs/browserless/CHATGPT_BROWSERLESS_INTEGRATION_COMPLETE.md`) say the bot "handles
//!   Response 1 vs Response 2 mode (auto-selects Response 1)" and clicks "Sources" to read the
//!   citations panel.
//! - Exported ChatGPT conversations in public repositories show the A/B prompt verbatim:
//!   "You're giving feedback on a new version of ChatGPT." / "Which response do you prefer?
//!   Responses may take a moment to load." then "Response 1" … "I prefer this response" …
//!   "Response 2". A userscript's changelog (guardian `userscript-chatgpt.js`) notes that the
//!   chooser "blocks the chat until someone picks".
//! - A chatgpt.com front-end bundle published in a public repository renders its progress
//!   labels as `div[role="status"][aria-live="polite"]` with a `loading-shimmer-pure-text` span:
//!   the shape used here for "Thinking" and "Searching the web".
//! - The "Thought for Ns" summary, the "Answer now" button of reasoning models and the
//!   "Searched N sites" line are visible texts of today's UI; no public selector for them was
//!   found, so their test ids here are ours (`thinking-status`, `answer-now-button`,
//!   `search-status`, `paragen-*`), and the adapter manifest lists attribute-free fallbacks.
//!
//! Quirks served here, on top of the common ones (login wall, rate limit, error, stall, slow,
//! no citations, challenge on `[[challenge]]` with a reload into Cloudflare's page, redesign):
//! - Every answer with citations comes after a visible web search ("Searching the web", then
//!   "Searched N sites"); its Sources panel lists the cited sources under "Citations" and more
//!   that were read but not cited under "More" ([`more_sources`]).
//! - `[[thinking]]`: a reasoning model (`gpt-5-thinking`) shows "Thinking" with an "Answer now"
//!   button for a while before any text, then "Thought for Ns". A click on "Answer now" is
//!   recorded as the site event [`ANSWER_NOW_EVENT`].
//! - `[[ab-test]]`: two candidate answers side by side, each with "I prefer this response";
//!   the conversation only continues once one is picked (recorded as [`PREFERRED_EVENTS`]).
//!   Response 1 is `answer_for(prompt)`, Response 2 a different answer from another model.
//! - `[[empty]]`: the answer message opens, no text is appended, and it finishes as usual
//!   (`finished_successfully`, the stream's completion, the copy action bar under an empty
//!   `div.markdown`).
//! - `[[model-fallback]]`: the plan's limit for `gpt-5` is used up: `gpt-5-mini` answers, the
//!   stream's `conversation_detail_metadata` lists `gpt-5` in `model_limits` with its
//!   `resets_after`, and the page shows "You've hit the Free plan limit for GPT-5. Responses will
//!   use another model until your limit resets after 9:40 PM." above the composer.
//! - `[[document]]`: before its answer, ChatGPT writes a markdown guide ([`document_for`]) into a
//!   canvas (`canmore.create_textdoc`, its arguments streamed in three appends) and edits it once
//!   (`canmore.update_textdoc`: "Status: draft" becomes "Status: checked"); the turn shows the
//!   canvas card (`div#textdoc-message-<id>`: its name, the guide rendered) above the message.
//!   With `[[empty]]` the canvas is the whole answer.
//! - A temporary chat (`/?temporary-chat=true`, the bots' private conversations): "Temporary
//!   Chat" and a button labelled "Turn off temporary chat" in the header; its requests carry
//!   `"history_and_training_disabled": true` (recorded as [`TEMPORARY_CHAT_EVENT`]).
//! - `late_sources`: the Sources button shows up 1.5 s after the answer has finished and its
//!   action bar shows (idx:66661304277 waits up to 15 s for it on the real site).
//!
//! The answer stream (`POST /backend-api/f/conversation`, also `/backend-api/conversation`)
//! follows public captures (research 2026-12: gpt4free OpenaiChat.py, a 2026-10 SSE protocol
//! note, exported conversations): `delta_encoding` "v1", `resume_conversation_token`,
//! `server_ste_metadata`, an `add` per message (thoughts, reasoning recap, the web tool's message
//! with `search_model_queries`, the answer), text appends whose later frames leave out `p`/`o`,
//! `grouped_webpages` references with `start_idx`/`end_idx`, `search_result_groups`, a
//! `sources_footnote` (with a link back to the conversation, never a source), product markers
//! for shopping prompts ([`is_shopping`], [`products`]), the finish patch with `finish_details`,
//! `message_marker`s, `message_stream_complete` and `[DONE]`. Two shapes ([`Shape`]): references
//! and results in the opening message (the `current` and `redesign` pages), or (the 2026 pages)
//! each marker with its reference in a patch batch, half of them without `p`/`o`, and the
//! results at the end.
//!
//! Page variants ([`VARIANTS`], `config.variant`; `docs/selectors/chatgpt.md` has the detail):
//! - `current`: today's look-alike; `redesign`: renamed test ids and classes.
//! - `thread-flyout` (idx:61241046488, idx:66661304277, idx:54293464671, be-visible's "broken
//!   [role=dialog]"): Sources in `div[data-testid=stage-thread-flyout] >
//!   section[data-testid=screen-threadFlyOut]`, no dialog role and no "Sources" label, titles in
//!   `div.font-semibold`, "More" behind an "N more" button, the utm tag in the links' fragment; a
//!   hover-revealed action bar without role or label; the 2026 stream shape.
//! - `section-turn` (CloakGPT idx:59136628605, steipete/oracle, 10x-chat; be-visible v1-legacy):
//!   `section[data-turn=assistant].agent-turn` turns, `composer-stop-button` labelled "Stop
//!   streaming" next to a "Stop dictation" decoy, `request-placeholder-` ids and `aria-busy`
//!   while streaming, a thinking line without test id (`span.loading-shimmer`), a Sources button
//!   known only by its text opening a `role=dialog` without a label, every source link behind
//!   `chatgpt.com/link?url=`; the 2026 stream shape.

mod fanout;
mod page;
mod sources;

/// The page variants this look-alike serves (`SimulatorConfig::variant`), today's first. What
/// each one follows is in the module comment above and in `docs/selectors/chatgpt.md`.
pub(crate) const VARIANTS: &[&str] = &["current", "redesign", "thread-flyout", "section-turn"];

pub use fanout::{is_shopping, products, search_queries};
pub use page::{GENERIC_ERROR_MESSAGE, RATE_LIMIT_MESSAGE, TOO_LONG_MESSAGE};
pub use sources::more_sources;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::answer::{Answer, Citation, DOCUMENT_EDIT, PromptFlags, answer_for, document_for, marker, strip_markers};
use crate::common::{
    EventSender, Pacing, challenge_page, event_stream, has_query_param, logged_in, no_store, send_event,
};
use crate::config::SimulatorConfig;
use crate::state::{Outcome, SimState};
use page::Variant;

/// The site event recorded when a client clicks "Answer now" while a reasoning model thinks.
pub const ANSWER_NOW_EVENT: &str = "chatgpt.answer_now_clicked";
/// The site event recorded for each prompt asked in a temporary chat (`/?temporary-chat=true`,
/// whose requests carry `"history_and_training_disabled": true`).
pub const TEMPORARY_CHAT_EVENT: &str = "chatgpt.temporary_chat_prompt";
/// The site events recorded when a client prefers Response 1 or Response 2 of an A/B prompt.
pub const PREFERRED_EVENTS: [&str; 2] = ["chatgpt.preferred_response_1", "chatgpt.preferred_response_2"];

/// The `canmore` tool's functions that write a canvas (`[[document]]`).
const CANVAS_CREATE: &str = "canmore.create_textdoc";
const CANVAS_UPDATE: &str = "canmore.update_textdoc";
/// The host the challenge page names.
const HOST: &str = "chatgpt.com";
/// The query parameter Cloudflare adds when it reloads a page into a challenge.
const CHALLENGE_RETRY_PARAM: &str = "__cf_chl_rt_tk";
/// The model of ordinary answers, and of reasoning ones (`[[thinking]]`).
const MODEL: &str = "gpt-5";
const THINKING_MODEL: &str = "gpt-5-thinking";
/// The model that answers once the plan's limit for [`MODEL`] is used up (`[[model-fallback]]`).
const FALLBACK_MODEL: &str = "gpt-5-mini";
/// How long the plan's limit for [`MODEL`] lasts once used up (`[[model-fallback]]`).
const MODEL_LIMIT_RESETS_IN: Duration = Duration::from_secs(5 * 3600);
/// The model behind Response 2 of an A/B prompt.
const CANDIDATE_MODEL: &str = "gpt-5-experimental";
/// Least time a reasoning model thinks before answering (times the slow factor): longer than any
/// reasonable "nothing changed" window, so a bot that waits for quiet stops too early.
const MIN_THINKING: Duration = Duration::from_millis(1500);

/// The site's routes: pages and `/backend-api/...`.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route("/", get(home))
        .route("/c/{conversation_id}", get(conversation_page))
        .route("/auth/login", get(crate::login::login_page).post(crate::login::submit))
        .route("/api/auth/session", get(auth_session))
        .route("/backend-api/conversation", post(conversation))
        .route("/backend-api/f/conversation", post(conversation))
        .route("/backend-api/conversation/{conversation_id}/answer_now", post(answer_now))
        .route("/backend-api/conversation/{conversation_id}/paragen_feedback", post(paragen_feedback))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(|| async { (StatusCode::NOT_FOUND, Html(page::not_found())) })
}

/// The chat page, the login wall without a valid session, or the challenge (the `challenge`
/// knob, or the reload a mid-session challenge asks for).
fn chat_or_wall(state: &SimState, uri: &Uri, headers: &HeaderMap) -> Response {
    let config = state.config();
    let retried = has_query_param(uri, CHALLENGE_RETRY_PARAM);
    if config.challenge || retried {
        state.record_challenge();
        return challenge_page(HOST);
    }
    let variant = Variant::from_name(config.variant_name());
    match logged_in(state, headers) {
        Some((_, label)) => no_store(page::chat_page(variant, &label, config.late_sources)),
        None => {
            state.record_login_wall();
            no_store(page::login_wall(variant))
        }
    }
}

/// `/` and `/?model=auto`.
async fn home(State(state): State<SimState>, uri: Uri, headers: HeaderMap) -> Response {
    chat_or_wall(&state, &uri, &headers)
}

/// `/c/{id}`: where the browser lands after the first answer; an empty chat page on reload
/// (conversations are not kept).
async fn conversation_page(
    State(state): State<SimState>,
    Path(_conversation_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    chat_or_wall(&state, &uri, &headers)
}

/// `/api/auth/session`: `{}` when logged out, the user otherwise (as NextAuth answers).
async fn auth_session(State(state): State<SimState>, headers: HeaderMap) -> Response {
    match logged_in(&state, &headers) {
        Some((token, label)) => Json(json!({
            "user": { "id": format!("user-{}", &token[token.len().saturating_sub(12)..]), "name": label, "email": format!("{}@simulator.invalid", slug_label(&label)) },
            "expires": "2099-01-01T00:00:00.000Z",
            "accessToken": token,
            "authProvider": "simulator",
        }))
        .into_response(),
        None => Json(json!({})).into_response(),
    }
}

fn slug_label(label: &str) -> String {
    let slug: String = label.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    if slug.is_empty() { "user".to_owned() } else { slug }
}

/// `POST /backend-api/conversation/{id}/answer_now`: what the "Answer now" button asks for.
/// Only recorded: a bot must never press it (it trades the reasoning for a quick answer).
async fn answer_now(State(state): State<SimState>, headers: HeaderMap) -> Response {
    if logged_in(&state, &headers).is_none() {
        return (StatusCode::UNAUTHORIZED, Json(json!({"detail": "Unauthorized"}))).into_response();
    }
    state.record_site_event(ANSWER_NOW_EVENT);
    StatusCode::NO_CONTENT.into_response()
}

/// `POST /backend-api/conversation/{id}/paragen_feedback` `{"preferred": 1|2}`: the choice of an
/// A/B prompt.
async fn paragen_feedback(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    if logged_in(&state, &headers).is_none() {
        return (StatusCode::UNAUTHORIZED, Json(json!({"detail": "Unauthorized"}))).into_response();
    }
    let preferred = serde_json::from_slice::<Value>(&body).ok().and_then(|body| body.get("preferred")?.as_u64());
    match preferred {
        Some(choice @ 1..=2) => {
            state.record_site_event(PREFERRED_EVENTS[usize::from(choice == 2)]);
            StatusCode::NO_CONTENT.into_response()
        }
        _ => (StatusCode::BAD_REQUEST, Json(json!({"detail": "preferred must be 1 or 2"}))).into_response(),
    }
}

/// What one answer request will stream, fixed when it arrives.
struct Plan {
    pacing: Pacing,
    conversation_id: String,
    message_id: String,
    model: &'static str,
    /// How long a reasoning model thinks first (`[[thinking]]`).
    thinking: Option<Duration>,
    /// Every source the search read, cited ones first (empty: no search ran).
    searched: Vec<Citation>,
    /// Response 2 of an A/B prompt (`[[ab-test]]`), with the sources its search read.
    candidate: Option<(Answer, Vec<Citation>)>,
    /// The searches the model ran (the query fan-out); empty when no search ran.
    queries: Vec<String>,
    /// How the stream is shaped (the page variant's era of the real site).
    shape: Shape,
    /// When the plan's limit for [`MODEL`] lifts, once used up (`[[model-fallback]]`): another
    /// model answers meanwhile.
    limit_resets: Option<SystemTime>,
    /// The canvas written before the answer (`[[document]]`): its name and first text.
    document: Option<(String, String)>,
}

/// The two stream shapes seen in public captures of chatgpt.com's answer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// The answer message opens with its `content_references` and `search_result_groups` in
    /// its metadata; the tool message carries the legacy `search_queries` besides
    /// `search_model_queries` (gpt4free OpenaiChat.py, Fanout, Mikalis/gptsearches).
    Header,
    /// The 2026-10 captures (idx:71335910185): the message opens with empty metadata; each
    /// citation marker arrives in a patch batch together with its `content_references` entry
    /// (`start_idx`/`end_idx`), half of the batches without `p`/`o`; the search results are
    /// appended at the end; only `search_model_queries` names the searches.
    Patched,
}

impl Shape {
    fn of(variant: &str) -> Shape {
        match variant {
            "thread-flyout" | "section-turn" => Shape::Patched,
            _ => Shape::Header,
        }
    }
}

impl Plan {
    fn new(config: &SimulatorConfig, flags: PromptFlags, prompt: &str, conversation_id: String) -> Plan {
        let mut pacing = Pacing::new(config, flags, prompt);
        let factor = if flags.slow || config.slow { config.slow_factor.max(1) } else { 1 };
        let thinking = MIN_THINKING.max(Duration::from_millis(config.pause_ms)).saturating_mul(factor as u32);
        let searched = searched(&pacing.answer, prompt);
        let candidate = flags.ab_test.then(|| {
            // Another model's take on the same question: different words and sources.
            let other = format!("{} (another take)", strip_markers(prompt));
            let answer = answer_for(&other, !pacing.answer.citations.is_empty());
            let sources = searched_with(&answer, more_sources(prompt));
            (answer, sources)
        });
        // Products ride on a shopping search: the carousel marker ends the streamed text.
        let products = if searched.is_empty() { Vec::new() } else { products(prompt) };
        if !products.is_empty() {
            pacing.answer.stream_text.push_str(&fanout::products_marker(&products));
        }
        Plan {
            conversation_id,
            message_id: uuid::Uuid::new_v4().to_string(),
            model: match (flags.model_fallback, flags.thinking) {
                (true, _) => FALLBACK_MODEL,
                (false, true) => THINKING_MODEL,
                (false, false) => MODEL,
            },
            limit_resets: flags.model_fallback.then(model_limit_resets),
            document: flags.document.then(|| {
                let (_, text) = document_for(prompt);
                let name = text.lines().next().unwrap_or_default().trim_start_matches("# ").to_owned();
                (name, text)
            }),
            thinking: flags.thinking.then_some(thinking),
            queries: if searched.is_empty() { Vec::new() } else { search_queries(prompt) },
            searched,
            candidate,
            shape: Shape::of(config.variant_name()),
            pacing,
        }
    }
}

/// When a limit used up now lifts: [`MODEL_LIMIT_RESETS_IN`] on, rounded up to ten minutes.
fn model_limit_resets() -> SystemTime {
    let at = SystemTime::now() + MODEL_LIMIT_RESETS_IN;
    let seconds = at.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    UNIX_EPOCH + Duration::from_secs(seconds.div_ceil(600) * 600)
}

/// The account's limits after the answer (`conversation_detail_metadata`, as a ChatGPT proxy's
/// tests and a 2026-10 capture's notes show it): `model_limits` lists the models whose limit is
/// used up, with `resets_after`; `intended_default_model_slug` the plan's model and
/// `default_model_slug` the one answering meanwhile.
fn detail_metadata(plan: &Plan) -> Value {
    let limits: Vec<Value> = plan
        .limit_resets
        .map(|at| {
            let at = chrono::DateTime::<chrono::Utc>::from(at);
            json!({ "model_slug": MODEL, "resets_after": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true) })
        })
        .into_iter()
        .collect();
    let default = if plan.limit_resets.is_some() { FALLBACK_MODEL } else { MODEL };
    json!({
        "type": "conversation_detail_metadata",
        "banner_info": null,
        "blocked_features": [],
        "model_limits": limits,
        "limits_progress": [],
        "default_model_slug": default,
        "intended_default_model_slug": MODEL,
        "conversation_id": plan.conversation_id,
    })
}

/// The sources a search read for `answer`: its citations, then the listed-only ones. No
/// citations means no search ran.
fn searched(answer: &Answer, prompt: &str) -> Vec<Citation> {
    if answer.citations.is_empty() { Vec::new() } else { searched_with(answer, more_sources(prompt)) }
}

fn searched_with(answer: &Answer, more: Vec<Citation>) -> Vec<Citation> {
    if answer.citations.is_empty() {
        return Vec::new();
    }
    answer.citations.iter().cloned().chain(more).collect()
}

/// `POST /backend-api/conversation`: streams the answer as server-sent events.
async fn conversation(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    let config = state.config();
    if config.challenge {
        state.record_challenge();
        return challenge_page(HOST);
    }
    let Some((token, _label)) = logged_in(&state, &headers) else {
        state.record_login_wall();
        return (StatusCode::UNAUTHORIZED, Json(json!({"detail": "Unauthorized"}))).into_response();
    };
    let request: Value = match serde_json::from_slice(&body) {
        Ok(value) => value,
        Err(error) => {
            return (StatusCode::BAD_REQUEST, Json(json!({"detail": format!("invalid json: {error}")})))
                .into_response();
        }
    };
    let Some(prompt) = prompt_of(&request) else {
        return (StatusCode::BAD_REQUEST, Json(json!({"detail": "no user message in request"}))).into_response();
    };
    let flags = PromptFlags::parse(&prompt);
    if request.get("history_and_training_disabled") == Some(&Value::Bool(true)) {
        state.record_site_event(TEMPORARY_CHAT_EVENT);
    }

    if flags.challenge {
        // A mid-session challenge: Cloudflare answers the API call itself; the page reloads
        // into the interstitial.
        state.record_challenge();
        return challenge_page(HOST);
    }
    if flags.expire_session {
        state.expire_session(&token);
        state.record_login_wall();
        return (StatusCode::UNAUTHORIZED, Json(json!({"detail": "Your session has expired."}))).into_response();
    }
    if flags.too_long {
        state.record(&token, &prompt, Outcome::Failed);
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(json!({"detail": {"message": TOO_LONG_MESSAGE, "code": "message_length_exceeds_limit"}})),
        )
            .into_response();
    }
    let over_quota = config.rate_limit_after.is_some_and(|limit| state.answers_of(&token) >= limit);
    if flags.rate_limit || config.rate_limit || over_quota {
        state.record(&token, &prompt, Outcome::RateLimited);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"detail": {"message": RATE_LIMIT_MESSAGE, "code": "rate_limit_exceeded", "clears_in": 3600}})),
        )
            .into_response();
    }

    let conversation_id = request
        .get("conversation_id")
        .and_then(Value::as_str)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let plan = Plan::new(&config, flags, &prompt, conversation_id);
    let (tx, response) = event_stream();
    tokio::spawn(async move {
        let outcome = produce(&tx, &plan).await;
        tracing::debug!(?outcome, conversation_id = %plan.conversation_id, "answer stream ended");
        state.record(&token, &prompt, outcome);
    });
    response
}

/// The text of the last user message: `messages[-1].content.parts` joined by new lines.
fn prompt_of(request: &Value) -> Option<String> {
    let message = request.get("messages")?.as_array()?.last()?;
    let parts = message.get("content")?.get("parts")?.as_array()?;
    let text = parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n");
    if text.trim().is_empty() { None } else { Some(text) }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |since| since.as_secs_f64())
}

/// The "add" event that opens a message.
fn add_message(conversation_id: &str, message: Value) -> String {
    json!({ "p": "", "o": "add", "v": { "message": message, "conversation_id": conversation_id, "error": null }, "c": 0 })
        .to_string()
}

/// The `content_references` entry of the `index`-th citation: a `grouped_webpages` reference
/// as exported conversations show it (idx:52810862179), attached to its marker by `matched_text`
/// and by `start_idx`/`end_idx` (offsets of the marker in the text, in characters).
fn reference(index: usize, citation: &Citation, stream_text: &str) -> Value {
    let matched = marker(index);
    let start = stream_text.find(&matched).map_or(0, |at| stream_text[..at].chars().count());
    json!({
        "matched_text": matched,
        "start_idx": start,
        "end_idx": start + matched.chars().count(),
        "type": "grouped_webpages",
        "items": [{
            "title": citation.title,
            "url": citation.href,
            "attribution": citation.domain,
            "snippet": null,
            "pub_date": null,
            "refs": [{ "turn_index": 0, "ref_type": "search", "ref_index": index }],
            "supporting_websites": [],
        }],
        "fallback_items": null,
        "refs": [],
        "alt": format!("([{}]({}))", citation.domain, citation.href),
        "safe_urls": [citation.href],
        "status": "done",
    })
}

/// `search_result_groups`: one group per source the search read, cited ones first.
fn result_groups(searched: &[Citation]) -> Vec<Value> {
    searched
        .iter()
        .enumerate()
        .map(|(index, source)| {
            json!({
                "type": "search_result_group",
                "domain": source.domain,
                "entries": [{
                    "type": "search_result",
                    "url": source.href,
                    "title": source.title,
                    "snippet": format!("{} \u{2014} {}", source.domain, source.title),
                    "attribution": source.domain,
                    "pub_date": null,
                    "ref_id": { "turn_index": 0, "ref_type": "search", "ref_index": index },
                }],
            })
        })
        .collect()
}

/// The opening of an answer message: (in the [`Shape::Header`] shape) its citations as content
/// references and the search results it read, and (for an A/B prompt) which candidate it is.
fn answer_header(
    id: &str,
    answer: &Answer,
    searched: &[Citation],
    model: &str,
    candidate_index: Option<usize>,
    shape: Shape,
) -> Value {
    let (references, groups) = match shape {
        Shape::Header => (
            answer.citations.iter().enumerate().map(|(i, c)| reference(i, c, &answer.stream_text)).collect(),
            result_groups(searched),
        ),
        Shape::Patched => (Vec::new(), Vec::new()),
    };
    let mut metadata = json!({
        "content_references": references,
        "search_result_groups": groups,
        "model_slug": model,
        "message_type": "next",
        "citations": [],
    });
    if let Some(index) = candidate_index {
        metadata["paragen_variant_index"] = json!(index);
    }
    json!({
        "id": id,
        "author": { "role": "assistant", "name": null, "metadata": {} },
        "create_time": now(),
        "content": { "content_type": "text", "parts": [""] },
        "status": "in_progress",
        "end_turn": null,
        "weight": 1.0,
        "metadata": metadata,
        "recipient": "all",
        "channel": "final",
    })
}

async fn delta(tx: &EventSender, data: &str) -> bool {
    send_event(tx, Some("delta"), data).await
}

/// Holds a stalled stream open until `stall` has passed or the client has left, sending
/// nothing: the page shows a stop button and a partial answer that never grows.
async fn hold(tx: &EventSender, stall: Duration) {
    tokio::select! {
        () = tokio::time::sleep(stall) => {}
        () = tx.closed() => {}
    }
}

async fn produce(tx: &EventSender, plan: &Plan) -> Outcome {
    let conversation = plan.conversation_id.as_str();
    let opening = [
        (Some("delta_encoding"), "\"v1\"".to_owned()),
        (None, json!({ "type": "resume_conversation_token", "kind": "conversation", "token": uuid::Uuid::new_v4().to_string(), "conversation_id": conversation }).to_string()),
        (None, json!({ "type": "server_ste_metadata", "metadata": { "is_first_turn": true, "model_slug": plan.model }, "conversation_id": conversation }).to_string()),
    ];
    for (event, data) in opening {
        if !send_event(tx, event, &data).await {
            return Outcome::Interrupted;
        }
    }

    if let Some(thinking) = plan.thinking {
        let thoughts = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "author": { "role": "assistant", "name": null, "metadata": {} },
            "create_time": now(),
            "content": { "content_type": "thoughts", "thoughts": [], "source_analysis_msg_id": plan.message_id },
            "status": "in_progress",
            "metadata": { "model_slug": plan.model, "reasoning_status": "is_reasoning" },
            "recipient": "all",
        });
        if !delta(tx, &add_message(conversation, thoughts)).await {
            return Outcome::Interrupted;
        }
        tokio::select! {
            () = tokio::time::sleep(thinking) => {}
            () = tx.closed() => return Outcome::Interrupted,
        }
        let recap = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "author": { "role": "assistant", "name": null, "metadata": {} },
            "create_time": now(),
            "content": { "content_type": "reasoning_recap", "content": format!("Thought for {}s", thinking.as_secs().max(1)) },
            "status": "finished_successfully",
            "metadata": { "model_slug": plan.model, "reasoning_status": "reasoning_ended", "finished_text": format!("Thought for {}s", thinking.as_secs().max(1)) },
            "recipient": "all",
        });
        if !delta(tx, &add_message(conversation, recap)).await {
            return Outcome::Interrupted;
        }
    }

    if !plan.searched.is_empty() {
        // The web tool's message names the searches it ran (idx:19163455690, idx:52806097256).
        let mut metadata = json!({
            "search_model_queries": { "type": "search_model_queries", "queries": plan.queries },
            "search_turns_count": 1,
            "search_source": "composer_auto",
            "model_slug": plan.model,
        });
        if plan.shape == Shape::Header {
            metadata["search_queries"] =
                plan.queries.iter().map(|q| json!({ "type": "search", "q": q })).collect::<Vec<_>>().into();
        }
        let search = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "author": { "role": "tool", "name": "web.run", "metadata": { "real_author": "tool:web", "source": "sonic_tool" } },
            "create_time": now(),
            "content": { "content_type": "text", "parts": [""] },
            "status": "in_progress",
            "metadata": metadata,
            "recipient": "all",
        });
        if !delta(tx, &add_message(conversation, search)).await {
            return Outcome::Interrupted;
        }
    }

    if let Some((name, text)) = &plan.document
        && !stream_canvas(tx, plan, name, text).await
    {
        return Outcome::Interrupted;
    }

    let outcome = match &plan.candidate {
        None => stream_answer(tx, plan).await,
        Some((answer, searched)) => stream_candidates(tx, plan, answer, searched).await,
    };
    if let Some(outcome) = outcome {
        return outcome;
    }

    let mut closing = Vec::new();
    if plan.candidate.is_none() && !plan.searched.is_empty() {
        if plan.shape == Shape::Patched {
            // The results the search read, all at once at the end.
            closing.push(json!({ "p": "/message/metadata/search_result_groups", "o": "append", "v": result_groups(&plan.searched) }));
        }
        // The footer of sources (a batch without p/o): the cited ones, and a link back to the
        // conversation itself, which is never a source.
        let answer = &plan.pacing.answer;
        let length = answer.stream_text.chars().count();
        let mut sources: Vec<Value> = answer
            .citations
            .iter()
            .map(|c| json!({ "title": c.title, "url": c.href, "attribution": c.domain }))
            .collect();
        sources.push(json!({ "title": "ChatGPT", "url": format!("https://chatgpt.com/c/{conversation}"), "attribution": "ChatGPT" }));
        closing.push(json!({ "v": [{ "p": "/message/metadata/content_references", "o": "append", "v": [{
            "type": "sources_footnote", "matched_text": " ", "start_idx": length, "end_idx": length,
            "has_images": false, "alt": "", "refs": [], "safe_urls": [], "sources": sources,
        }] }] }));
    }
    closing.push(json!({ "p": "", "o": "patch", "v": [
        { "p": "/message/status", "o": "replace", "v": "finished_successfully" },
        { "p": "/message/end_turn", "o": "replace", "v": true },
        { "p": "/message/metadata", "o": "append", "v": finish_metadata(&plan.pacing) },
    ]}));
    for data in closing {
        if !delta(tx, &data.to_string()).await {
            return Outcome::Interrupted;
        }
    }
    let marker = json!({ "type": "message_marker", "conversation_id": conversation, "message_id": plan.message_id, "marker": "last_token", "event": "last" });
    let complete = json!({ "type": "message_stream_complete", "conversation_id": conversation });
    if !send_event(tx, None, &marker.to_string()).await
        || !send_event(tx, None, &complete.to_string()).await
        || !send_event(tx, None, &detail_metadata(plan).to_string()).await
        || !send_event(tx, None, "[DONE]").await
    {
        return Outcome::Interrupted;
    }
    plan.pacing.finished()
}

/// The canvas ChatGPT writes before its answer (`[[document]]`), as the `canmore` tool's calls
/// and replies show in exported conversations (a 2026 exporter's parser): an assistant message to
/// `canmore.create_textdoc` whose code content (`{"name","type","content"}`) streams in three
/// appends, the later two without `p`/`o`; the tool's reply with `metadata.canvas`; then an
/// update (`canmore.update_textdoc`, one Python pattern: [`DOCUMENT_EDIT`]) given whole in its
/// opening, and its reply. False when the client left.
async fn stream_canvas(tx: &EventSender, plan: &Plan, name: &str, text: &str) -> bool {
    let conversation = plan.conversation_id.as_str();
    let id = format!("{:x}", uuid::Uuid::new_v4().as_u128() >> 64);
    let call = |function: &str, arguments: &str| {
        json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "author": { "role": "assistant", "name": null, "metadata": {} },
            "create_time": now(),
            "content": { "content_type": "code", "language": "json", "text": arguments },
            "status": "in_progress",
            "metadata": { "model_slug": plan.model },
            "recipient": function,
            "channel": "commentary",
        })
    };
    let reply = |function: &str, version: u32, said: String| {
        json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "author": { "role": "tool", "name": function, "metadata": {} },
            "create_time": now(),
            "content": { "content_type": "text", "parts": [said] },
            "status": "finished_successfully",
            "metadata": { "canvas": { "textdoc_id": id, "textdoc_type": "document", "version": version, "title": name, "create_source": "model" } },
            "recipient": "all",
        })
    };
    let arguments = json!({ "name": name, "type": "document", "content": text }).to_string();
    let third = arguments.len() / 3;
    let cuts = [0, arguments.floor_char_boundary(third), arguments.floor_char_boundary(2 * third), arguments.len()];
    let mut frames = vec![add_message(conversation, call(CANVAS_CREATE, ""))];
    for (index, pair) in cuts.windows(2).enumerate() {
        let piece = &arguments[pair[0]..pair[1]];
        frames.push(if index == 0 {
            json!({ "p": "/message/content/text", "o": "append", "v": piece }).to_string()
        } else {
            json!({ "v": piece }).to_string()
        });
    }
    frames.push(json!({ "p": "/message/status", "o": "replace", "v": "finished_successfully" }).to_string());
    let created = format!(
        "Successfully created text document '{name}' which will be referenced in all future messages with the unique identifier textdoc_id: '{id}'"
    );
    frames.push(add_message(conversation, reply(CANVAS_CREATE, 1, created)));
    let (old, new) = DOCUMENT_EDIT;
    let update = json!({ "updates": [{ "pattern": old, "multiple": false, "replacement": new }] }).to_string();
    frames.push(add_message(conversation, call(CANVAS_UPDATE, &update)));
    let updated = format!("Successfully updated text document with textdoc_id '{id}'");
    frames.push(add_message(conversation, reply(CANVAS_UPDATE, 2, updated)));
    for frame in frames {
        plan.pacing.before_chunk(1, 3).await;
        if !delta(tx, &frame).await {
            return false;
        }
    }
    true
}

/// The finish patch's metadata: a whole answer stops at its stop token; one cut short
/// (`[[cut-short]]`) at the model's output limit, which the site offers to continue.
fn finish_metadata(pacing: &Pacing) -> Value {
    if pacing.cut_short {
        json!({ "is_complete": false, "finish_details": { "type": "max_tokens" } })
    } else {
        json!({ "is_complete": true, "finish_details": { "type": "stop", "stop_tokens": [200002] } })
    }
}

/// The mid-stream failure or stall at chunk `index` of `count`, if this is where it happens;
/// `Some(outcome)` ends the stream.
async fn fail_or_stall(tx: &EventSender, plan: &Plan, index: usize, count: usize) -> Option<Outcome> {
    if plan.pacing.fails_at(index, count) {
        let error =
            json!({ "type": "error", "message": GENERIC_ERROR_MESSAGE, "conversation_id": plan.conversation_id });
        if !send_event(tx, None, &error.to_string()).await || !send_event(tx, None, "[DONE]").await {
            return Some(Outcome::Interrupted);
        }
        return Some(Outcome::Failed);
    }
    if let Some(stall) = plan.pacing.stalls_at(index, count) {
        hold(tx, stall).await;
        return Some(Outcome::Interrupted);
    }
    None
}

/// One answer: its header with the first chunk, then the rest. `Some(outcome)` when the stream
/// ended early.
async fn stream_answer(tx: &EventSender, plan: &Plan) -> Option<Outcome> {
    let answer = &plan.pacing.answer;
    let header = || answer_header(&plan.message_id, answer, &plan.searched, plan.model, None, plan.shape);
    let chunks = plan.pacing.chunks();
    let count = chunks.len();
    if chunks.is_empty() {
        // An empty answer (`[[empty]]`): the message opens and finishes without a word.
        plan.pacing.before_empty_finish().await;
        if !delta(tx, &add_message(&plan.conversation_id, header())).await {
            return Some(Outcome::Interrupted);
        }
        return None;
    }
    // Whether the last frame named the text's path and operation (later ones inherit them).
    let mut named = false;
    let mut batches = 0usize;
    for (index, chunk) in chunks.iter().enumerate() {
        if let Some(outcome) = fail_or_stall(tx, plan, index, count).await {
            return Some(outcome);
        }
        plan.pacing.before_chunk(index, count).await;
        if index == 0 && !delta(tx, &add_message(&plan.conversation_id, header())).await {
            return Some(Outcome::Interrupted);
        }
        let cited: Vec<usize> = if plan.shape == Shape::Patched { cited_in(chunk) } else { Vec::new() };
        let data = if !cited.is_empty() {
            // The marker and its reference in one batch; every other batch leaves out p/o.
            let references: Vec<Value> = cited
                .iter()
                .filter_map(|&i| answer.citations.get(i).map(|c| reference(i, c, &answer.stream_text)))
                .collect();
            let ops = json!([
                { "p": "/message/content/parts/0", "o": "append", "v": chunk },
                { "p": "/message/metadata/content_references", "o": "append", "v": references },
            ]);
            batches += 1;
            named = false;
            if batches % 2 == 1 { json!({ "p": "", "o": "patch", "v": ops }) } else { json!({ "v": ops }) }
        } else if named {
            json!({ "v": chunk })
        } else {
            named = true;
            json!({ "p": "/message/content/parts/0", "o": "append", "v": chunk })
        };
        if !delta(tx, &data.to_string()).await {
            return Some(Outcome::Interrupted);
        }
        if index == 0 {
            let marker = json!({ "type": "message_marker", "conversation_id": plan.conversation_id, "message_id": plan.message_id, "marker": "user_visible_token", "event": "first" });
            if !send_event(tx, None, &marker.to_string()).await {
                return Some(Outcome::Interrupted);
            }
        }
    }
    None
}

/// The citation indexes whose markers (`\u{e200}cite\u{e202}turn0searchN\u{e201}`) are in `chunk`.
fn cited_in(chunk: &str) -> Vec<usize> {
    chunk
        .split("\u{e200}cite\u{e202}turn0search")
        .skip(1)
        .filter_map(|rest| rest.split('\u{e201}').next()?.parse().ok())
        .collect()
}

/// Both candidates of an A/B prompt, streamed side by side: every append names the candidate
/// it extends (`/paragen/<index>/content/parts/0`).
async fn stream_candidates(
    tx: &EventSender,
    plan: &Plan,
    other: &Answer,
    other_searched: &[Citation],
) -> Option<Outcome> {
    let first = plan.pacing.chunks();
    let second = other.chunks(plan.pacing.words_per_chunk);
    let count = first.len().max(second.len());
    for index in 0..count {
        if let Some(outcome) = fail_or_stall(tx, plan, index, count).await {
            return Some(outcome);
        }
        plan.pacing.before_chunk(index, count).await;
        if index == 0 {
            let headers = [
                answer_header(
                    &plan.message_id,
                    &plan.pacing.answer,
                    &plan.searched,
                    plan.model,
                    Some(0),
                    Shape::Header,
                ),
                answer_header(
                    &uuid::Uuid::new_v4().to_string(),
                    other,
                    other_searched,
                    CANDIDATE_MODEL,
                    Some(1),
                    Shape::Header,
                ),
            ];
            for header in headers {
                if !delta(tx, &add_message(&plan.conversation_id, header)).await {
                    return Some(Outcome::Interrupted);
                }
            }
        }
        for (candidate, chunks) in [&first, &second].into_iter().enumerate() {
            if let Some(chunk) = chunks.get(index) {
                let data = json!({ "p": format!("/paragen/{candidate}/content/parts/0"), "o": "append", "v": chunk });
                if !delta(tx, &data.to_string()).await {
                    return Some(Outcome::Interrupted);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_searches_only_with_citations_and_thinks_only_when_asked() {
        let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
        let prompt = "best hiking boots [[thinking]]";
        let plan = Plan::new(&config, PromptFlags::parse(prompt), prompt, "c".into());
        assert_eq!(plan.model, THINKING_MODEL);
        assert!(plan.thinking.is_some_and(|thinking| thinking >= MIN_THINKING));
        let cited = &plan.pacing.answer.citations;
        assert_eq!(&plan.searched[..cited.len()], cited.as_slice(), "cited sources come first");
        assert_eq!(plan.searched.len(), cited.len() + more_sources(prompt).len());
        assert!(plan.candidate.is_none());

        let prompt = "best hiking boots [[no-citations]] [[ab-test]]";
        let plan = Plan::new(&config, PromptFlags::parse(prompt), prompt, "c".into());
        assert!(plan.searched.is_empty() && plan.thinking.is_none());
        let (other, other_searched) = plan.candidate.expect("an a/b prompt has a second candidate");
        assert_ne!(other.markdown, plan.pacing.answer.markdown);
        assert!(other.citations.is_empty() && other_searched.is_empty());
    }
}
