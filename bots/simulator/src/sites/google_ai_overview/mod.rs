//! The google.com look-alike: the home page with its search box, the results page (`/search`)
//! whose AI Overview loads deferred from `/async/folsrch`, the consent wall, and the "unusual
//! traffic" page (`/sorry/index`).
//!
//! There is no chat: a question is a search. The results page is served at once with its
//! organic results and no overview; the page script then asks `/async/folsrch` (the name of
//! Google's own deferred call) which either says there is no overview for this search, or opens
//! the AI Overview block in its "Generating" state and streams the text into it. The block shows
//! only its first two blocks until "Show more" is clicked: the rest is in the DOM but
//! `display:none`, so the collapsed text is half an answer. Inline citation chips link through
//! Google's relative redirect (`/url?q=<target>&sa=U...`); the sources list links through the
//! absolute one (`https://www.google.com/url?sa=t...&url=<target>`); the list also holds
//! sources no chip cites, and shows three until "Show all" is clicked.
//!
//! Evidence for the markup (searched 2026-11; repository + file, what it showed):
//! - funkyfunc/fearch `tests/fixtures/google-ai-overview.html` (a captured 2026 page region):
//!   `div#m-x-content` > `div[jsname="V3qe9d"]` with a header holding hidden
//!   `span[jsname="lGsj1"]` "An AI Overview is not available for this search" and
//!   `span[jsname="L1sC6e"]` "Can't generate an AI overview right now. Try again later.",
//!   the heading `div[jsname="cUzNTd"][role="heading"][aria-level="2"]` "AI Overview";
//!   the body `div[jsname="Y0vxu"][jsmodel="k8Azyd E23uIf"][data-complete="true"]` >
//!   `div[data-subtree="aimc"]` > `div[jsname="KFl8ub"][data-container-id="main-col"]` >
//!   `div[data-streaming-container]` with paragraphs `div.n6owBd`, `strong.rQesXe`, inline
//!   chips `span.WBgIic.notranslate > span.NMq1me > a.PMDqCb[aria-label="YouTube - Related
//!   results"]` + `button.vDOt8c` showing the site name (`span.QNca8b`); a right column
//!   `div[data-container-id="rhs-col"]`, an alert `div.qacuz[role="alert"]`, and the loading
//!   ghost `div[jsname="OOSRL"]#folsrch-ghost` with shimmer lines `div.fxhBye`.
//! - damadorPL/ai-overview-extractor `src/auto-expander-overviews.js`,
//!   `src/auto-expander-sources.js`, `src/content-extractor.js`: "Show more" is
//!   `[aria-expanded="false"][aria-controls="m-x-content"]`; the sources are in
//!   `div[data-subtree="msc"]` whose `[role="button"]` ("Show all") must be clicked to list them
//!   all (`ul[class] a[href]`); hidden parts carry `style="display:none"`; source links are
//!   Google `/url?...&url=<target>` redirects.
//! - Aerodynamax/settings-for-google-ai `page/content.js`: the "Generating" preview
//!   `div.hoqQCc.MyTwIe`, the Show more button `[jsaction="trigger.OiPALb"]` (`.clOx1e.sjVJQd >
//!   span`), the collapsed panel `.h7Tj7e`.
//! - A TypeScript SERP parser's `selectors.ts` (confirmed against google.com 2026-09-05):
//!   results `div.tF2Cxc` in `div.MjjYud` under `#rso`, `a.zReHs[jsname="UWckNb"] h3.LC20lb`,
//!   `cite`, snippets `div.VwiC3b`; overview containers `div.YzCcne`, `div.Fzsovc`,
//!   `div[data-subtree="aio"]`, `div#m-x-content`, `div[data-attrid="SGEAnswer"]`; and
//!   r4jiv007/remove_google_ai_overview: `[data-mcpr]`, `.YzCcne`, `[data-async-type="folsrch"]`,
//!   `[jscontroller="EYwa3d"]` (the redesign below uses the `data-subtree="aio"` shape).
//! - Selenium/Playwright/Cypress scripts: the search box `textarea#APjFqb.gLFyf[name="q"]`,
//!   `input[name="btnK"]`; the consent dialog "Before you continue to Google" (`h1.I90TVb`) with
//!   `button#L2AGLb` "Accept all" and `button#W0wltc` "Reject all".
//! - Block detectors in several scrapers: `google.*/sorry/` with "Our systems have detected
//!   unusual traffic from your computer network. This page checks to see if it's really you
//!   sending the requests, and not a robot.", `form#captcha-form`, `div#recaptcha.g-recaptcha`,
//!   "About this page", "IP address", "Time", "URL".
//!
//! Page variants (`SimulatorConfig::variant`), each after a public description (the research
//! notes of 2026-12, docs/selectors/google-ai-overview.md):
//! - `current`: the classic shell above (`#m-x-content`, `jsname` ids, `data-complete`);
//! - `redesign`: `div[data-subtree="aio"][role="region"]`, other classes, the box only `name=q`;
//! - `rhs-direct-links`: fixtures of 2026-09-24 (code index idx:71000273646, idx:65766924948):
//!   `div.YzCcne[jscontroller="EYwa3d"]` > `div[jsname="V3qe9d"]` without `#m-x-content` or
//!   `data-complete`; the notices hidden by a stylesheet class behind an inline `<style>`; a
//!   `[role=progressbar][aria-label=Generating]` while generating; `[data-subtree=aimc]` >
//!   `[data-container-id=main-col]` with `div.n6owBd` paragraphs and favicon pills through
//!   `/url?q=`; source cards `li.h7wxwc div.cRH23c a.vIWmYe` (title `.gpZmoc`, `aria-label`) in
//!   `[data-container-id=rhs-col]` linking straight to the page with `#:~:text=` (or tracking in
//!   the fragment), ending with Google's own "Dive deeper in AI Mode" search link; "Show more"
//!   with an `aria-label` and no `aria-controls`, turned into "Show less"
//!   (`aria-expanded="true"`); a "Good response"/"Bad response" footer once done; and, first on
//!   the page, a People-also-ask item holding an AI answer under the same `aimc`/`main-col`
//!   markers (idx:67398096397);
//! - `inline-chips-only`: the same shell with no sources list at all ("no side 'Show all' panel
//!   this time", idx:71000273646): every source is a pill, and the one no pill cites is nowhere.
//!
//! The deferred body is server-sent events here (the transport is our invention; google.com
//! sends HTML): `start` with the block's sources (`href` as the variant's list or pill links it)
//! and its own links, `chunk`s of text, `done`. `late_sources` fills the page's list 700 ms after
//! the block completed; the events are unchanged.
//!
//! Failure knobs as Google shows them: no session cookie (`__Secure-1PSID`), an expired session
//! or `[[expire-session]]` → the consent wall (the login wall's role); `[[challenge]]` → a
//! redirect to `/sorry/index` (HTTP 429, as Google serves it), `config.challenge` → the shared
//! Cloudflare-style page on every route (the edge in `routes.rs`); `[[rate-limit]]`,
//! `config.rate_limit` and `rate_limit_after` → the block opens with "Can't generate an AI
//! overview right now. Try again later." (the account asked too much: the /sorry page is kept
//! for the challenge, so the two classes stay apart); `[[no-overview]]` → organic results only,
//! with no block at all or, for some prompts ([`declines_visibly`]), a block saying "An AI
//! Overview is not available for this search"; `[[error]]` → the block stops a third of the way
//! with an alert; `[[stall]]` → it stops and never completes; `[[empty]]` (or `config.empty`)
//! → the block opens ("AI Overview", "Generating"), gets no text and no sources, and completes
//! as usual (`data-complete="true"`, the loading ghost gone) with nothing in it, which is not
//! `[[no-overview]]` (no overview for the search, a result of its own kind).

mod page;

use page::Variant;

/// The page variants this look-alike serves (`SimulatorConfig::variant`), today's first.
pub(crate) const VARIANTS: &[&str] = &["current", "redesign", "rhs-direct-links", "inline-chips-only"];

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;

use crate::answer::{Answer, PromptFlags, answer_for, normalize_prompt};
use crate::common::{EventSender, Pacing, event_stream, logged_in, no_store, send_event};
use crate::state::{Outcome, SimState};

/// Text of the block when the account may not have an overview now (the rate limit).
pub(crate) const UNAVAILABLE_MESSAGE: &str = "Can't generate an AI overview right now. Try again later.";

/// Text of the block's header when a search gets no overview by policy.
pub(crate) const NOT_AVAILABLE_MESSAGE: &str = "An AI Overview is not available for this search";

/// Text of the alert when generating fails part of the way.
pub(crate) const ERROR_MESSAGE: &str = "Something went wrong and the AI Overview wasn't generated. Try again later.";

/// The site's routes.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route("/", get(home))
        .route("/ServiceLogin", get(crate::login::login_page).post(crate::login::submit))
        .route("/webhp", get(home))
        .route("/search", get(search))
        .route("/async/folsrch", get(folsrch))
        .route("/consent", get(consent))
        .route("/consent/save", post(consent_save))
        .route("/sorry/index", get(sorry))
        .route("/url", get(url_redirect))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(|| async { (StatusCode::NOT_FOUND, Html(page::not_found())) })
}

type Params = Query<HashMap<String, String>>;

/// Where a request without a valid session goes: the consent wall, back to `continue` after.
fn consent_wall(state: &SimState, continue_to: &str) -> Response {
    state.record_login_wall();
    let target = format!("/consent?continue={}&hl=en", encode_component(continue_to));
    no_store_redirect(&target)
}

fn no_store_redirect(target: &str) -> Response {
    let mut response = Redirect::to(target).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `/` (and `/webhp`): the home page with the search box.
async fn home(State(state): State<SimState>, headers: HeaderMap) -> Response {
    if logged_in(&state, &headers).is_none() {
        return consent_wall(&state, "/?hl=en");
    }
    no_store(page::home(Variant::of(&state.config())))
}

/// `/search?q=...`: the results page. The overview is not in it: the page script loads it.
async fn search(State(state): State<SimState>, headers: HeaderMap, Query(params): Params) -> Response {
    let query = params.get("q").map(String::as_str).unwrap_or_default();
    let here = format!("/search?q={}&hl=en", encode_component(query));
    let Some((token, _label)) = logged_in(&state, &headers) else {
        return consent_wall(&state, &here);
    };
    if query.trim().is_empty() {
        return no_store_redirect("/?hl=en");
    }
    let flags = PromptFlags::parse(query);
    if flags.expire_session {
        state.expire_session(&token);
        return consent_wall(&state, &here);
    }
    if flags.challenge {
        // Google answers a suspicious search with a redirect to its "unusual traffic" page.
        state.record_challenge();
        let target = format!(
            "/sorry/index?continue={}&q={}",
            encode_component(&format!("{}{here}", state.base_url())),
            uuid::Uuid::new_v4().simple()
        );
        return no_store_redirect(&target);
    }
    let config = state.config();
    no_store(page::results(query, &answer_for(query, true), Variant::of(&config), config.late_sources))
}

/// One source as the page script gets it.
#[derive(Debug, Serialize)]
struct SourceOut {
    /// The `turn0search<index>` the answer's marker names.
    index: usize,
    /// Chips link through the relative redirect.
    chip_href: String,
    /// The sources list links through the absolute redirect.
    list_href: String,
    /// What the variant's sources list (or, without one, its pill) links to: the absolute
    /// redirect, or for `rhs-direct-links` the page itself with a text highlight or tracking
    /// in its fragment.
    href: String,
    title: String,
    /// What the chip shows.
    label: String,
    snippet: String,
    /// Cited by a chip in the text (true) or only listed (false).
    inline: bool,
}

/// The sources of `answer` in the order the list shows them: the source no chip cites first,
/// then the cited ones in reading order (Google's list follows its own ranking, not the text).
/// `inline-chips-only` has no list: only the sources a pill cites.
fn sources_of(answer: &Answer, variant: Variant) -> Vec<SourceOut> {
    let count = answer.citations.len();
    let listed_only = |index: usize| count >= 2 && index == count - 1;
    let mut order: Vec<usize> = (0..count).collect();
    if count >= 2 {
        order.rotate_right(1);
    }
    order
        .into_iter()
        .map(|index| {
            let citation = &answer.citations[index];
            // Google adds its own tracking parameter to some targets; a bot must drop it.
            let target = if index % 2 == 0 {
                let separator = if citation.url.contains('?') { '&' } else { '?' };
                format!("{}{separator}srsltid=AfmBOo{index}q7Xv", citation.url)
            } else {
                citation.url.clone()
            };
            let encoded = encode_component(&target);
            let chip_href = format!("/url?q={encoded}&sa=U&ved=2ahUKEwi{index}Qz&usg=AOvVaw{index}");
            let list_href = format!(
                "https://www.google.com/url?sa=t&source=web&rct=j&opi=89978449&url={encoded}&ved=2ahUKEwj{index}QFnoE"
            );
            let href = match variant {
                Variant::Current | Variant::Redesign => list_href.clone(),
                Variant::InlineChipsOnly => chip_href.clone(),
                // The card links the page itself: a text highlight, or tracking in the fragment.
                Variant::RhsDirectLinks if index % 2 == 0 => format!("{target}#utm_source=google&utm_medium=aio"),
                Variant::RhsDirectLinks => {
                    let words: Vec<&str> = citation.title.split_whitespace().take(3).collect();
                    format!("{target}#:~:text={}", encode_component(&words.join(" ")))
                }
            };
            SourceOut {
                index,
                chip_href,
                list_href,
                href,
                title: citation.title.clone(),
                label: citation.domain.clone(),
                snippet: format!("{} covers the essentials, with the details readers ask about most.", citation.domain),
                inline: !listed_only(index),
            }
        })
        .filter(|source| source.inline || variant != Variant::InlineChipsOnly)
        .collect()
}

/// Links the overview shows besides its sources: `rhs-direct-links` ends its list with Google's
/// own "Dive deeper in AI Mode" (another search on the site itself: never a source).
fn own_links(query: &str, variant: Variant) -> Vec<serde_json::Value> {
    if variant != Variant::RhsDirectLinks {
        return Vec::new();
    }
    vec![json!({
        "href": format!("/search?udm=50&q={}&aep=11", encode_component(query)),
        "title": "Dive deeper in AI Mode",
    })]
}

/// `/async/folsrch?q=...`: the deferred AI Overview, as server-sent events: `none` or
/// `declined` (no overview for this search, silently or said in the block), `unavailable` (not
/// now: the rate limit), or `start` (the block opens with its sources), `chunk`s of text, then
/// `done` or `error`.
async fn folsrch(State(state): State<SimState>, headers: HeaderMap, Query(params): Params) -> Response {
    let Some((token, _label)) = logged_in(&state, &headers) else {
        state.record_login_wall();
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "unauthenticated"}))).into_response();
    };
    let query = params.get("q").cloned().unwrap_or_default();
    if query.trim().is_empty() {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "no query"}))).into_response();
    }
    let flags = PromptFlags::parse(&query);
    let config = state.config();
    let over_quota = config.rate_limit_after.is_some_and(|limit| state.answers_of(&token) >= limit);
    let rate_limited = flags.rate_limit || config.rate_limit || over_quota;
    let pacing = Pacing::new(&config, flags, &query);
    let variant = Variant::of(&config);
    let (tx, response) = event_stream();
    tokio::spawn(async move {
        let outcome = if rate_limited {
            deferred(&tx, &pacing, "unavailable", &json!({ "message": UNAVAILABLE_MESSAGE })).await
        } else if flags.no_overview && declines_visibly(&query) {
            deferred(&tx, &pacing, "declined", &json!({ "message": NOT_AVAILABLE_MESSAGE })).await
        } else if flags.no_overview {
            deferred(&tx, &pacing, "none", &json!({})).await
        } else {
            overview(&tx, &pacing, variant, &query).await
        };
        tracing::debug!(?outcome, query = %normalize_prompt(&query), "ai overview stream ended");
        state.record(&token, &query, outcome);
    });
    response
}

/// Whether a search without an overview says so in a block ("An AI Overview is not available
/// for this search") rather than showing none. Google does either; the simulator picks by the
/// prompt, so the same prompt always gets the same page.
pub(crate) fn declines_visibly(query: &str) -> bool {
    answer_for(query, true).citations.len() % 2 == 1
}

/// A one-event answer after the deferred-load delay: `unavailable` counts as a rate-limit
/// refusal, `none` and `declined` (no overview for this search) as a result served.
async fn deferred(tx: &EventSender, pacing: &Pacing, event: &str, data: &serde_json::Value) -> Outcome {
    tokio::time::sleep(pacing.first_token_delay).await;
    if !send_event(tx, Some(event), &data.to_string()).await {
        return Outcome::Interrupted;
    }
    if event == "unavailable" { Outcome::RateLimited } else { Outcome::Answered }
}

async fn overview(tx: &EventSender, pacing: &Pacing, variant: Variant, query: &str) -> Outcome {
    // The block opens (in its "Generating" state) after the deferred-load delay; the text
    // follows after the first-token delay. The block's sources come with it, whenever the page
    // shows them (`late_sources` only delays the page's list).
    tokio::time::sleep(pacing.first_token_delay).await;
    let links = if pacing.answer.citations.is_empty() { Vec::new() } else { own_links(query, variant) };
    let start = json!({ "sources": sources_of(&pacing.answer, variant), "links": links });
    if !send_event(tx, Some("start"), &start.to_string()).await {
        return Outcome::Interrupted;
    }
    let chunks = pacing.chunks();
    let count = chunks.len();
    for (index, chunk) in chunks.iter().enumerate() {
        if pacing.fails_at(index, count) {
            if !send_event(tx, Some("error"), &json!({ "message": ERROR_MESSAGE }).to_string()).await {
                return Outcome::Interrupted;
            }
            return Outcome::Failed;
        }
        if let Some(stall) = pacing.stalls_at(index, count) {
            tokio::time::sleep(stall).await;
            return Outcome::Interrupted;
        }
        pacing.before_chunk(index, count).await;
        if !send_event(tx, Some("chunk"), &json!({ "text": chunk }).to_string()).await {
            return Outcome::Interrupted;
        }
    }
    // An empty overview (`[[empty]]`) had no chunks: the block finishes without a word.
    pacing.before_empty_finish().await;
    if !send_event(tx, Some("done"), "{}").await {
        return Outcome::Interrupted;
    }
    pacing.finished()
}

/// `/consent?continue=...`: "Before you continue to Google", the wall a browser without a
/// Google session meets.
async fn consent(Query(params): Params) -> Response {
    let continue_to = params.get("continue").map_or("/?hl=en", String::as_str);
    no_store(page::consent(safe_path(continue_to)))
}

/// `POST /consent/save`: back to where the browser was going. It makes no session (those come
/// from `POST /__sim/sessions`), so a browser without one lands on the wall again.
async fn consent_save(Query(params): Params) -> Response {
    let continue_to = params.get("continue").map_or("/?hl=en", String::as_str);
    Redirect::to(safe_path(continue_to)).into_response()
}

/// Only a path on this origin: never an open redirect.
fn safe_path(target: &str) -> &str {
    if target.starts_with('/') && !target.starts_with("//") { target } else { "/?hl=en" }
}

/// `/sorry/index`: Google's "unusual traffic" page, served with 429 as Google does.
async fn sorry(Query(params): Params) -> Response {
    let continue_to = params.get("continue").map_or("", String::as_str);
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Html(page::sorry(continue_to))).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `/url?q=<target>` or `/url?url=<target>`: Google's click-through redirect.
async fn url_redirect(Query(params): Params) -> Response {
    let target = params.get("q").or_else(|| params.get("url")).filter(|target| {
        let lower = target.to_ascii_lowercase();
        lower.starts_with("https://") || lower.starts_with("http://")
    });
    match target {
        Some(target) => Redirect::to(target).into_response(),
        None => (StatusCode::BAD_REQUEST, Html(page::not_found())).into_response(),
    }
}

/// Percent-encodes `text` for a query component (everything but the unreserved characters).
pub(crate) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_list_the_uncited_one_first_and_link_through_redirects() {
        let answer = answer_for("best running shoes for flat feet", true);
        let sources = sources_of(&answer, Variant::Current);
        let count = answer.citations.len();
        assert_eq!(sources.len(), count);
        assert_eq!(sources[0].index, count - 1);
        assert!(!sources[0].inline);
        assert!(sources[1..].iter().all(|source| source.inline));
        assert!(sources[1..].iter().map(|source| source.index).eq(0..count - 1));
        for source in &sources {
            assert!(source.chip_href.starts_with("/url?q=https%3A%2F%2F"));
            assert!(source.list_href.starts_with("https://www.google.com/url?sa=t&"));
            assert!(source.list_href.contains("&url=https%3A%2F%2F"));
            assert_eq!(source.href, source.list_href);
        }
        assert!(sources_of(&answer_for("x [[no-citations]]", false), Variant::Current).is_empty());
        // Straight to the page, with a text highlight or tracking in the fragment.
        let direct = sources_of(&answer, Variant::RhsDirectLinks);
        assert!(direct.iter().all(|source| source.href.starts_with("https://") && source.href.contains('#')));
        assert!(direct.iter().any(|source| source.href.contains("#:~:text=")));
        assert!(direct.iter().any(|source| source.href.contains("#utm_source=")));
        // Pills only: the source no pill cites is nowhere.
        let chips = sources_of(&answer, Variant::InlineChipsOnly);
        assert_eq!(chips.len(), count - 1);
        assert!(chips.iter().all(|source| source.inline && source.href == source.chip_href));
    }

    #[test]
    fn components_are_percent_encoded_and_redirects_stay_on_this_origin() {
        assert_eq!(encode_component("a b/c?d=e&f"), "a%20b%2Fc%3Fd%3De%26f");
        assert_eq!(encode_component("é"), "%C3%A9");
        assert_eq!(safe_path("/search?q=x"), "/search?q=x");
        assert_eq!(safe_path("//evil.example/"), "/?hl=en");
        assert_eq!(safe_path("https://evil.example/"), "/?hl=en");
    }
}
