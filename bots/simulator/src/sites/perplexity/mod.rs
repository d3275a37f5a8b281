//! The perplexity.ai look-alike: the home/thread page and its streaming
//! `POST /rest/sse/perplexity_ask`.
//!
//! Evidence for the markup (public automation code, searched 2026-11):
//! - A Playwright/camoufox client (`polychat` `PerplexityClient`): types into `#ask-input`, sets
//!   the session cookie `__Secure-next-auth.session-token` on `.perplexity.ai`, finds threads
//!   under `/search/{slug}`.
//! - `Sukarth/perplexity-web-mcp-extension` `js/content.js`: `textarea#ask-input` and the newer
//!   `div#ask-input[contenteditable="true"]`, `button[aria-label="Submit"]`,
//!   `div[data-testid="answer-mode-tabs"]`, answers in `.prose`.
//! - Automation configs and Selenium bots (several): `button[data-testid="submit-button"]`,
//!   `button[data-testid="stop-generating-response-button"]` present while generating (and
//!   `button[aria-label="Stop"]`), `button[data-testid="sidebar-new-thread"]`, answers in
//!   `[id^="markdown-content-"]`, the composer a Lexical editor
//!   (`[contenteditable="true"][data-lexical-editor="true"]`, `role="textbox"`).
//! - `ckep1/pplxport` `pplxport.user.js`: answers in `.prose.text-pretty.dark:prose-invert`,
//!   per-answer `button[aria-label="Copy"]`, `button[data-testid="copy-query-button"]`, query
//!   text in `span[data-lexical-text="true"]`; citations as the old `a.citation[href]` and the
//!   newer `.citation` spans with an `aria-label` and a `.text-3xs` label ("reddit+2").
//! - An answer-tracking write-up (2026-08-11): every inline citation is
//!   `<span class="citation inline" data-pplx-citation data-pplx-citation-url="https://...">`
//!   with no anchor at all; the full source list is on the thread's "Links" tab.
//! - A browser-extension parser for Perplexity: the Links tab is a Radix tab whose trigger has
//!   `aria-controls` ending in `-content-sources` (id `...-trigger-sources`), the list a
//!   `div[role="tabpanel"][data-state="active"]`, one tab set per turn; a "N sources" pill in
//!   older builds.
//!
//! What is ours (no public capture found): the rate-limit sentence, the model label and search
//! steps markup, the turn container's test id, the wire format of the stream (the bot reads
//! only the DOM), `utm_source=perplexity` on source links (so the bot's URL cleaning is tested),
//! and the redesign variant. The redesign swaps every primary hook for another one a manifest
//! can list as a fallback (e.g. the numbered `a.citation` links the site used before).
//!
//! Quirk kept on purpose: the sources the answer cites arrive with the search, before the text;
//! the sources it only lists arrive one by one AFTER the text has finished (stop button gone,
//! actions shown), each in its numbered place in the list, so a bot must watch the list until
//! it stops growing.
//!
//! `[[empty]]`: no search and no chunk; the answer is final at once (stop button gone, actions
//! and model label shown) over an empty `.prose` block.

mod page;

/// The page variants this look-alike serves (`SimulatorConfig::variant`), today's first.
pub(crate) const VARIANTS: &[&str] = &["current", "redesign"];

pub use page::{ERROR_MESSAGE, RATE_LIMIT_MESSAGE};

use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::answer::{Answer, Citation, PromptFlags, answer_for, marker, strip_markers};
use crate::common::{EventSender, Pacing, challenge_page, event_stream, logged_in, no_store, send_event};
use crate::state::{Outcome, SimState};
use page::Variant;

/// The host the challenge page names.
const HOST: &str = "www.perplexity.ai";
/// The query parameter Cloudflare adds when it reloads a page into a challenge.
const CHALLENGE_RETRY_PARAM: &str = "__cf_chl_rt_tk";
/// The model label the answer shows.
const MODEL_LABEL: &str = "Sonar";
/// Gap between two sources that arrive after the answer text (times the slow factor).
const LATE_SOURCE_GAP: Duration = Duration::from_millis(450);
/// Sources listed but not cited: at least and at most this many per citing answer.
const MIN_LISTED: usize = 2;
const MAX_LISTED: usize = 3;

/// The site's routes: pages, the NextAuth session endpoint and the answer stream.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route("/", get(app_page))
        .route("/search/{slug}", get(app_page))
        .route("/api/auth/session", get(auth_session))
        .route("/rest/sse/perplexity_ask", post(perplexity_ask))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(|| async { (StatusCode::NOT_FOUND, Html(page::not_found())) })
}

/// `/` and `/search/{slug}`: the app, the sign-in modal without a valid session, or the
/// challenge (always with the `challenge` knob, and on the reload a mid-session challenge asks
/// for).
async fn app_page(State(state): State<SimState>, uri: Uri, headers: HeaderMap) -> Response {
    let config = state.config();
    let retried = uri
        .query()
        .is_some_and(|query| query.split('&').any(|pair| pair.split('=').next() == Some(CHALLENGE_RETRY_PARAM)));
    if config.challenge || retried {
        return challenge_page(HOST);
    }
    let variant = Variant::from_redesign(config.redesign);
    match logged_in(&state, &headers) {
        Some((_, label)) => no_store(page::app_page(variant, Some(&label))),
        None => {
            state.record_login_wall();
            no_store(page::app_page(variant, None))
        }
    }
}

/// `/api/auth/session`: `{}` when logged out, the user otherwise (as NextAuth answers).
async fn auth_session(State(state): State<SimState>, headers: HeaderMap) -> Response {
    match logged_in(&state, &headers) {
        Some((_, label)) => Json(json!({
            "user": { "name": label, "email": "user@simulator.invalid", "subscription_status": "none" },
            "expires": "2099-01-01T00:00:00.000Z",
        }))
        .into_response(),
        None => Json(json!({})).into_response(),
    }
}

#[derive(Debug, Deserialize)]
struct AskRequest {
    query_str: String,
}

/// One entry of the sources list, numbered as the site numbers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct PaneSource {
    number: usize,
    /// The link as the page shows it (with tracking).
    url: String,
    title: String,
    domain: String,
}

/// What one answer request will stream, fixed when it arrives.
struct Plan {
    pacing: Pacing,
    /// Cited sources, in the order the answer cites them.
    cited: Vec<PaneSource>,
    /// Sources only listed, in the order they arrive (their list order).
    listed: Vec<PaneSource>,
    late_gap: Duration,
}

impl Plan {
    fn new(pacing: Pacing, prompt: &str, slow_factor: u64) -> Plan {
        let (cited, listed) = numbered_sources(prompt, &pacing.answer);
        Plan { pacing, cited, listed, late_gap: LATE_SOURCE_GAP.saturating_mul(slow_factor.max(1) as u32) }
    }

    /// A streamed chunk with the answer's citation markers turned into `[n]`, the site's
    /// numbering.
    fn chunk_text(&self, chunk: &str) -> String {
        let mut text = chunk.to_owned();
        for (index, source) in self.cited.iter().enumerate() {
            text = text.replace(&marker(index), &format!("[{}]", source.number));
        }
        text
    }
}

/// `POST /rest/sse/perplexity_ask` `{"query_str": "..."}`: the answer as server-sent events.
async fn perplexity_ask(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    let config = state.config();
    if config.challenge {
        return challenge_page(HOST);
    }
    let Some((token, _label)) = logged_in(&state, &headers) else {
        state.record_login_wall();
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error_code": "UNAUTHORIZED", "message": "Sign in to continue"})),
        )
            .into_response();
    };
    let prompt = match serde_json::from_slice::<AskRequest>(&body) {
        Ok(request) if !request.query_str.trim().is_empty() => request.query_str,
        Ok(_) => return (StatusCode::BAD_REQUEST, Json(json!({"message": "empty query"}))).into_response(),
        Err(error) => {
            return (StatusCode::BAD_REQUEST, Json(json!({"message": format!("invalid request: {error}")})))
                .into_response();
        }
    };
    let flags = PromptFlags::parse(&prompt);
    if flags.challenge {
        return challenge_page(HOST);
    }
    if flags.expire_session {
        state.expire_session(&token);
        state.record_login_wall();
        return (StatusCode::UNAUTHORIZED, Json(json!({"error_code": "UNAUTHORIZED", "message": "Session expired"})))
            .into_response();
    }
    let over_quota = config.rate_limit_after.is_some_and(|limit| state.answers_of(&token) >= limit);
    if flags.rate_limit || config.rate_limit || over_quota {
        state.record(&token, &prompt, Outcome::RateLimited);
        return (
            StatusCode::TOO_MANY_REQUESTS,
            Json(json!({"error_code": "PRO_SEARCH_LIMIT_REACHED", "message": RATE_LIMIT_MESSAGE})),
        )
            .into_response();
    }

    let slow_factor = if flags.slow || config.slow { config.slow_factor } else { 1 };
    let plan = Plan::new(Pacing::new(&config, flags, &prompt), &prompt, slow_factor);
    let (tx, response) = event_stream();
    tokio::spawn(async move {
        let outcome = produce(&tx, &plan).await;
        tracing::debug!(?outcome, "perplexity answer stream ended");
        state.record(&token, &prompt, outcome);
    });
    response
}

async fn send(tx: &EventSender, payload: serde_json::Value) -> bool {
    send_event(tx, Some("message"), &payload.to_string()).await
}

/// Streams the search, the text, the end of the answer, then the sources that come late.
async fn produce(tx: &EventSender, plan: &Plan) -> Outcome {
    if !plan.cited.is_empty() && !send(tx, json!({"type": "search", "sources": plan.cited})).await {
        return Outcome::Interrupted;
    }
    let chunks = plan.pacing.chunks();
    let count = chunks.len();
    for (index, chunk) in chunks.iter().enumerate() {
        if plan.pacing.fails_at(index, count) {
            send(tx, json!({"type": "error", "message": ERROR_MESSAGE})).await;
            return Outcome::Failed;
        }
        if let Some(stall) = plan.pacing.stalls_at(index, count) {
            // Hold the stream open without a word, until the stall ends or the client leaves.
            tokio::select! {
                () = tokio::time::sleep(stall) => {}
                () = tx.closed() => {}
            }
            return Outcome::Interrupted;
        }
        plan.pacing.before_chunk(index, count).await;
        if !send(tx, json!({"type": "chunk", "text": plan.chunk_text(chunk)})).await {
            return Outcome::Interrupted;
        }
    }
    // An empty answer (`[[empty]]`) had no chunks: it is final without a word.
    plan.pacing.before_empty_finish().await;
    let web_search = !plan.cited.is_empty();
    if !send(tx, json!({"type": "final", "model": MODEL_LABEL, "web_search": web_search})).await {
        return Outcome::Interrupted;
    }
    // The answer is complete; what follows only fills the sources list.
    for source in &plan.listed {
        tokio::time::sleep(plan.late_gap).await;
        if !send(tx, json!({"type": "source", "source": source})).await {
            return plan.pacing.finished();
        }
    }
    send(tx, json!({"type": "done"})).await;
    plan.pacing.finished()
}

/// The sources the answer to `prompt` lists without citing them, in list order (after the
/// answer text has finished, these fill the Links tab). Empty for an answer without citations.
pub fn listed_sources(prompt: &str) -> Vec<Citation> {
    extra_sources(prompt, &answer_for(prompt, true).citations)
}

/// The cited sources (in citing order) and the listed-only ones (in list order), numbered as
/// the site's list shows them: the two kinds interleave (cited, listed, cited, listed, ...).
fn numbered_sources(prompt: &str, answer: &Answer) -> (Vec<PaneSource>, Vec<PaneSource>) {
    let extras = extra_sources(prompt, &answer.citations);
    let mut cited = Vec::new();
    let mut listed = Vec::new();
    let mut number = 0;
    let mut pane = |citation: &Citation| {
        number += 1;
        PaneSource {
            number,
            url: with_tracking(&citation.url),
            title: citation.title.clone(),
            domain: citation.domain.clone(),
        }
    };
    for index in 0..answer.citations.len().max(extras.len()) {
        if let Some(citation) = answer.citations.get(index) {
            cited.push(pane(citation));
        }
        if let Some(citation) = extras.get(index) {
            listed.push(pane(citation));
        }
    }
    (cited, listed)
}

/// Sources the search found but the answer does not cite: drawn like the cited ones from
/// related prompts, on other sites than the cited ones. None when nothing is cited.
fn extra_sources(prompt: &str, cited: &[Citation]) -> Vec<Citation> {
    if cited.is_empty() {
        return Vec::new();
    }
    let base = strip_markers(prompt);
    let mut extras: Vec<Citation> = Vec::new();
    // A full stop first, so the related prompt keeps the topic (its first sentence).
    for salt in ["Related sources", "Further reading", "See also", "More background"] {
        for citation in answer_for(&format!("{base}. {salt}"), true).citations {
            let taken = cited.iter().chain(&extras).any(|other| other.domain == citation.domain);
            if !taken && extras.len() < MAX_LISTED {
                extras.push(citation);
            }
        }
        if extras.len() >= MIN_LISTED {
            break;
        }
    }
    extras
}

/// The link as the page shows it: the source URL with a tracking parameter.
fn with_tracking(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}utm_source=perplexity")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_sources_are_distinct_from_cited_ones_and_interleave_in_the_list() {
        for prompt in ["What are the best laptops under $1,000?", "how does TLS work", "x", "早上好"] {
            let answer = answer_for(prompt, true);
            let (cited, listed) = numbered_sources(prompt, &answer);
            assert_eq!(cited.len(), answer.citations.len());
            assert!((MIN_LISTED..=MAX_LISTED).contains(&listed.len()), "{prompt}: {}", listed.len());
            let mut numbers: Vec<usize> = cited.iter().chain(&listed).map(|s| s.number).collect();
            numbers.sort_unstable();
            assert_eq!(numbers, (1..=cited.len() + listed.len()).collect::<Vec<_>>());
            // The first listed source sits between the first two cited ones.
            assert_eq!(listed[0].number, 2);
            for source in &listed {
                assert!(cited.iter().all(|c| c.domain != source.domain));
                assert!(source.url.ends_with("utm_source=perplexity"));
            }
            let public = listed_sources(prompt);
            assert_eq!(public.len(), listed.len());
            for (citation, source) in public.iter().zip(&listed) {
                assert_eq!(with_tracking(&citation.url), source.url);
                assert_eq!(citation.title, source.title);
            }
        }
        assert!(numbered_sources("x", &answer_for("x", false)).1.is_empty());
    }

    #[test]
    fn chunks_carry_the_site_numbering() {
        let prompt = "compare electric cars";
        let config = crate::config::SimulatorConfig::default();
        let plan = Plan::new(Pacing::new(&config, PromptFlags::parse(prompt), prompt), prompt, 1);
        let text: String = plan.pacing.chunks().iter().map(|chunk| plan.chunk_text(chunk)).collect();
        assert!(!text.contains('\u{e200}'));
        for source in &plan.cited {
            assert!(text.contains(&format!("[{}]", source.number)));
        }
        for source in &plan.listed {
            assert!(!text.contains(&format!("[{}]", source.number)), "listed sources are not cited");
        }
    }
}
