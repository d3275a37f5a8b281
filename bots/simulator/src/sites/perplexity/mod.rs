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
//! steps markup, the turn container's test id, the shape of a shopping block (only its names are
//! public), `utm_source=perplexity` on source links (so the bot's URL cleaning is tested), and
//! the redesign variant. The redesign swaps every primary hook for another one a manifest can
//! list as a fallback (e.g. the numbered `a.citation` links the site used before).
//!
//! The answer stream follows real captures (perplexity-client `spike/fixtures/*.sse`,
//! 2026-07-31 and 2026-08-04; ak2k/pplx-agent-tools `wire.py`): every frame is
//! `event: message` with a full JSON envelope (`backend_uuid`, `status` PENDING→COMPLETED,
//! `text_completed`, `final_sse_message`, `message_mode`, `blocks`), each block
//! `{"intended_usage", "<kind>_block"}` or a `diff_block` of RFC-6902 patches; the text in
//! `ask_text` `markdown_block.chunks` (2026-07-31) or in a `workflow_root` `WORKFLOW_ITEM_TEXT`
//! payload (2026-08-04, the `final-text-context-pane` variant); sources in
//! `web_result_block.web_results` (`[n]` in the text = entry n-1); the searches in
//! `WORKFLOW_ITEM_QUERIES`, the older `pro_search_steps` plan block (`citations-tab-span-only`)
//! and the final frame's `text` steps; the end a frame with `final_sse_message: true` and
//! `status: "COMPLETED"`, then `event: end_of_stream`. Also in the stream, to be filtered by a
//! reader: a widget result (`is_widget`), an own-site thread link, tracking in a fragment.
//!
//! Variants ([`VARIANTS`]):
//! - `current`: today's look-alike (turn `div[data-testid=thread-turn]`, Radix Answer/Links
//!   tabs, chips `span.citation[data-pplx-citation-url]`, `a[data-testid=source-link]`).
//! - `redesign`: other ids, test ids and classes (`a.citation`, `a.source-card`).
//! - `final-text-context-pane`: steipete/oracle `perplexityDomProvider.ts` (2026-08+): no test
//!   ids, turn `div.group/final-text`, answer `.prose` without id, footer with
//!   `button[aria-label=Helpful]`, a "N sources" button opening `div[data-context-pane=true]` on
//!   `<body>`; the Stop control (and the footer) show/clear ONE chunk before the last text lands.
//! - `citations-tab-span-only`: the 2026-08-11 answer-tracking write-up, pplxport (2026-04-07),
//!   a tabpanel parser: turn `div.pb-md`, no anchors anywhere, the Links tab panel's id says
//!   `citations`, each listed source a `div[data-pplx-citation-url]` with a `.font-display` title.
//!
//! Quirks kept on purpose: the sources the answer cites arrive with the search, before the text;
//! the sources it only lists arrive one by one AFTER the text has finished (stop button gone,
//! actions shown, `text_completed`) and before the stream's final frame, so a bot must watch the
//! list until it stops growing, or until the stream says it is final. With `late_sources` the
//! page shows no sources list at all until the answer is finished, then fills it one entry at a
//! time.
//!
//! `[[empty]]`: no search and no chunk; the answer is final at once (stop button gone, actions
//! and model label shown) over an empty `.prose` block.

mod page;

/// The page variants this look-alike serves (`SimulatorConfig::variant`), today's first.
pub(crate) const VARIANTS: &[&str] = &["current", "redesign", "final-text-context-pane", "citations-tab-span-only"];

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
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::answer::{Answer, Citation, MARKER_OVERSIZED, PromptFlags, answer_for, marker, strip_markers};
use crate::common::{
    EventSender, Pacing, challenge_page, event_stream, has_query_param, logged_in, no_store, send_event,
};
use crate::state::{Outcome, SimState};
use page::Variant;

/// The host the challenge page names.
const HOST: &str = "www.perplexity.ai";
/// The query parameter Cloudflare adds when it reloads a page into a challenge.
const CHALLENGE_RETRY_PARAM: &str = "__cf_chl_rt_tk";
/// The model the stream names (`display_model`); the page labels it "Sonar".
const DISPLAY_MODEL: &str = "sonar";
/// Gap between two sources that arrive after the answer text, in first-token delays (450 ms at
/// the default 250 ms; none when the site answers instantly), times the slow factor.
const LATE_SOURCE_GAP: f64 = 1.8;
/// In `final-text-context-pane`, how long the last chunk lands after the Stop control cleared,
/// in first-token delays (700 ms at the default: longer than a bot's settle window).
const EARLY_STOP_GAP: f64 = 2.8;
/// Sources listed but not cited: at least and at most this many per citing answer.
const MIN_LISTED: usize = 2;
const MAX_LISTED: usize = 3;

/// The site's routes: pages, the NextAuth session endpoint and the answer stream.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route("/", get(app_page))
        .route("/login", get(crate::login::login_page).post(crate::login::submit))
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
    let retried = has_query_param(&uri, CHALLENGE_RETRY_PARAM);
    if config.challenge || retried {
        return challenge_page(HOST);
    }
    let variant = Variant::named(config.variant_name());
    let late = config.late_sources;
    match logged_in(&state, &headers) {
        Some((_, label)) => no_store(page::app_page(variant, late, Some(&label))),
        None => {
            state.record_login_wall();
            no_store(page::app_page(variant, late, None))
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

/// One entry of the stream's `web_results`, numbered as the text cites it (`[number]`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PaneSource {
    number: usize,
    /// The link as the stream and the page have it (with tracking).
    url: String,
    title: String,
    domain: String,
    /// A widget result (weather, stocks): in the stream, never a source.
    widget: bool,
}

impl PaneSource {
    /// The entry as `web_result_block.web_results` carries it.
    fn web_result(&self) -> Value {
        json!({
            "name": self.title,
            "url": self.url,
            "snippet": format!("{} …", self.title),
            "timestamp": null,
            "meta_data": { "citation_domain_name": null, "client": "web", "domain_name": self.domain, "images": [] },
            "is_attachment": false,
            "is_image": false,
            "is_code_interpreter": false,
            "is_knowledge_card": false,
            "is_navigational": false,
            "is_widget": self.widget,
            "is_focused_web": false,
            "is_client_context": false,
            "is_memory": false,
            "is_conversation_history": false,
            "is_conversation_summary": false,
        })
    }
}

/// A product card the answer to a shopping-like prompt shows (`shopping_block`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShoppingProduct {
    /// The product's name.
    pub name: String,
    /// Where the card links to (with tracking in the stream; see [`products`]).
    pub url: String,
    /// The price as shown, currency included.
    pub price: String,
    /// The merchant shown with it.
    pub merchant: String,
}

/// How the stream of one variant is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Text in `ask_text` `markdown_block.chunks`, searches in `WORKFLOW_ITEM_QUERIES`.
    AskText,
    /// Text in the `workflow_root` `WORKFLOW_ITEM_TEXT` payload (the 2026-08-04 capture).
    Workflow,
    /// Text in `ask_text`, searches in the older `pro_search_steps` plan block.
    PlanSteps,
}

/// What one answer request will stream, fixed when it arrives.
struct Plan {
    pacing: Pacing,
    prompt: String,
    /// Cited sources, in the order the answer cites them (numbers 1..).
    cited: Vec<PaneSource>,
    /// A widget result that follows the cited ones in `web_results`.
    widget: Option<PaneSource>,
    /// Sources only listed, in the order they arrive (appended to `web_results`).
    listed: Vec<PaneSource>,
    queries: Vec<String>,
    products: Vec<ShoppingProduct>,
    late_gap: Duration,
    /// The Stop control clears (and the footer shows) one chunk early, this long before the last.
    early_stop: Option<Duration>,
    shape: Shape,
    backend_uuid: String,
}

impl Plan {
    fn new(pacing: Pacing, prompt: &str, variant: Variant) -> Plan {
        let (cited, listed) = numbered_sources(prompt, &pacing.answer);
        let searched = !cited.is_empty();
        let widget = searched.then(|| PaneSource {
            number: cited.len() + 1,
            url: "https://weather.example.com/widget/today".to_owned(),
            title: "Weather today".to_owned(),
            domain: "weather.example.com".to_owned(),
            widget: true,
        });
        let offset = cited.len() + usize::from(widget.is_some());
        let listed = listed.into_iter().map(|source| PaneSource { number: source.number + offset, ..source }).collect();
        // `first_token_delay` has the slow factor in it already.
        let unit = pacing.first_token_delay;
        let empty = pacing.answer.markdown.is_empty();
        Plan {
            queries: if searched { search_queries(prompt, true) } else { Vec::new() },
            products: if empty { Vec::new() } else { stream_products(prompt) },
            prompt: strip_markers(prompt),
            cited,
            widget,
            listed,
            late_gap: unit.mul_f64(LATE_SOURCE_GAP),
            early_stop: (variant == Variant::FinalTextPane).then(|| unit.mul_f64(EARLY_STOP_GAP)),
            shape: match variant {
                Variant::FinalTextPane => Shape::Workflow,
                Variant::CitationsTab => Shape::PlanSteps,
                Variant::Current | Variant::Redesign => Shape::AskText,
            },
            backend_uuid: uuid::Uuid::new_v4().to_string(),
            pacing,
        }
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

    /// Every `web_results` entry known before the text: the cited ones and the widget.
    fn early_results(&self) -> Vec<Value> {
        self.cited.iter().chain(&self.widget).map(PaneSource::web_result).collect()
    }

    fn all_results(&self) -> Vec<Value> {
        self.cited.iter().chain(&self.widget).chain(&self.listed).map(PaneSource::web_result).collect()
    }

    /// One frame: the envelope every frame of the real stream carries, with `blocks`.
    fn frame(&self, cursor: &mut u64, blocks: Vec<Value>) -> Value {
        *cursor += 1;
        json!({
            "backend_uuid": self.backend_uuid,
            "context_uuid": self.backend_uuid,
            "uuid": self.backend_uuid,
            "frontend_uuid": self.backend_uuid,
            "frontend_context_uuid": self.backend_uuid,
            "display_model": DISPLAY_MODEL,
            "user_selected_model": "turbo",
            "mode": "COPILOT",
            "search_mode": "SEARCH",
            "status": "PENDING",
            "text_completed": false,
            "final": false,
            "final_sse_message": false,
            "message_mode": "STREAMING",
            "reconnectable": true,
            "cursor": cursor.to_string(),
            "thread_url_slug": self.backend_uuid,
            "structured_answer_block_usages": [],
            "blocks": blocks,
        })
    }

    /// The workflow's search step: the queries run and the sources found.
    fn search_step(&self) -> Value {
        json!({
            "status": "WORKFLOW_COMPLETED",
            "title": "Searching the web",
            "tool_name": "search_web",
            "icon": "search",
            "items": [
                { "type": "WORKFLOW_ITEM_QUERIES", "payload": { "queries_payload": { "queries": self.queries } } },
                { "type": "WORKFLOW_ITEM_SOURCES", "payload": { "sources_payload": { "sources":
                    self.cited.iter().map(|s| json!({"name": s.title, "url": s.url, "snippet": "",
                        "meta_data": {"domain_name": s.domain}})).collect::<Vec<_>>() } } },
            ],
        })
    }

    /// The blocks announcing the search, before any result.
    fn search_blocks(&self) -> Vec<Value> {
        let mut blocks = vec![json!({
            "intended_usage": "plan",
            "plan_block": { "progress": "IN_PROGRESS", "goals": [{ "description": "Searching the web", "final": false }] },
        })];
        match self.shape {
            Shape::PlanSteps => blocks.push(json!({
                "intended_usage": "pro_search_steps",
                "plan_block": { "progress": "IN_PROGRESS", "steps": [
                    { "step_type": "INITIAL_QUERY", "initial_query_content": { "query": self.prompt } },
                    { "step_type": "SEARCH_WEB", "search_web_content": { "goal_id": "0",
                        "queries": self.queries.iter().map(|q| json!({"engine": "web", "query": q, "limit": 8})).collect::<Vec<_>>() } },
                ] },
            })),
            Shape::AskText | Shape::Workflow => blocks.push(json!({
                "intended_usage": "workflow_root",
                "diff_block": { "field": "workflow_block", "patches": [{ "op": "replace", "path": "", "value": {
                    "version": "1.0", "status": "WORKFLOW_IN_PROGRESS", "steps": [self.search_step()] } }] },
            })),
        }
        blocks.push(json!({
            "intended_usage": "answer_tabs",
            "answer_tabs_block": { "modes": [{ "answer_mode_type": "ANSWER" }, { "answer_mode_type": "SOURCES" }],
                "reformulated_queries": self.queries },
        }));
        blocks
    }

    /// The blocks of a text chunk: the first one starts the text, the others append to it.
    fn chunk_blocks(&self, index: usize, chunk: String) -> Vec<Value> {
        let steps = usize::from(!self.cited.is_empty());
        let patch = match (self.shape, index) {
            (Shape::Workflow, 0) => json!({ "op": "add", "path": format!("/steps/{steps}"), "value": {
                "status": "WORKFLOW_IN_PROGRESS", "title": "Answer", "tool_name": "answer",
                "items": [{ "type": "WORKFLOW_ITEM_TEXT", "payload": { "text_payload": { "chunks": [chunk] } } }] } }),
            (Shape::Workflow, _) => json!({ "op": "add",
                "path": format!("/steps/{steps}/items/0/payload/text_payload/chunks/{index}"), "value": chunk }),
            (_, 0) => json!({ "op": "replace", "path": "", "value": {
                "progress": "IN_PROGRESS", "chunks": [chunk], "chunk_starting_offset": 0 } }),
            (_, _) => json!({ "op": "add", "path": format!("/chunks/{index}"), "value": chunk }),
        };
        let (usage, field) = if self.shape == Shape::Workflow {
            ("workflow_root", "workflow_block")
        } else {
            ("ask_text", "markdown_block")
        };
        vec![json!({ "intended_usage": usage, "diff_block": { "field": field, "patches": [patch] } })]
    }

    /// The whole text as its final block says it.
    fn text_block(&self, chunks: &[String]) -> Value {
        match self.shape {
            Shape::Workflow => {
                let mut steps: Vec<Value> = Vec::new();
                if !self.cited.is_empty() {
                    steps.push(self.search_step());
                }
                steps.push(json!({ "status": "WORKFLOW_COMPLETED", "title": "Answer", "tool_name": "answer",
                    "items": [{ "type": "WORKFLOW_ITEM_TEXT", "payload": { "text_payload": { "text": chunks.concat() } } }] }));
                json!({ "intended_usage": "workflow_root", "workflow_block": {
                    "version": "1.0", "status": "WORKFLOW_COMPLETED", "steps": steps } })
            }
            Shape::AskText | Shape::PlanSteps => json!({ "intended_usage": "ask_text", "markdown_block": {
                "progress": "DONE", "chunks": chunks, "chunk_starting_offset": 0, "answer": chunks.concat() } }),
        }
    }

    fn shopping_block(&self) -> Value {
        json!({ "intended_usage": "shopping_widgets", "shopping_block": { "products": self.products.iter().map(|p| json!({
            "name": p.name, "url": p.url, "price": p.price, "merchant": p.merchant,
        })).collect::<Vec<_>>() } })
    }

    /// The final frame's `text`: the answer's steps as a JSON string, as the real stream ends.
    fn steps_text(&self, chunks: &[String]) -> String {
        let mut steps = vec![json!({"step_type": "INITIAL_QUERY", "content": {"query": self.prompt}})];
        if !self.queries.is_empty() {
            steps.push(json!({"step_type": "SEARCH_WEB", "content": {"goal_id": "0",
                "queries": self.queries.iter().map(|q| json!({"engine": "web", "query": q, "limit": 8})).collect::<Vec<_>>()}}));
            steps.push(json!({"step_type": "SEARCH_RESULTS", "content": {"web_results": self.all_results()}}));
        }
        steps
            .push(json!({"step_type": "FINAL", "content": {"answer": json!({"answer": chunks.concat()}).to_string()}}));
        Value::Array(steps).to_string()
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

    let variant = Variant::named(config.variant_name());
    let plan = Plan::new(Pacing::new(&config, flags, &prompt), &prompt, variant);
    let (tx, response) = event_stream();
    tokio::spawn(async move {
        let outcome = produce(&tx, &plan).await;
        tracing::debug!(?outcome, "perplexity answer stream ended");
        state.record(&token, &prompt, outcome);
    });
    response
}

async fn send(tx: &EventSender, payload: Value) -> bool {
    send_event(tx, Some("message"), &payload.to_string()).await
}

async fn end_of_stream(tx: &EventSender) -> bool {
    send_event(tx, Some("end_of_stream"), "{}").await
}

/// Streams the search, the text, the end of the text, the sources that come late, then the
/// final frame and the end of the stream.
async fn produce(tx: &EventSender, plan: &Plan) -> Outcome {
    let mut cursor = 0;
    if !plan.cited.is_empty() {
        if !send(tx, plan.frame(&mut cursor, plan.search_blocks())).await {
            return Outcome::Interrupted;
        }
        let results = json!({ "intended_usage": "web_results", "diff_block": { "field": "web_result_block",
            "patches": [{ "op": "replace", "path": "", "value": { "progress": "IN_PROGRESS", "web_results": plan.early_results() } }] } });
        if !send(tx, plan.frame(&mut cursor, vec![results])).await {
            return Outcome::Interrupted;
        }
    } else if plan.shape == Shape::Workflow {
        let root = json!({ "intended_usage": "workflow_root", "diff_block": { "field": "workflow_block", "patches": [
            { "op": "replace", "path": "", "value": { "version": "1.0", "status": "WORKFLOW_IN_PROGRESS", "steps": [] } }] } });
        if !send(tx, plan.frame(&mut cursor, vec![root])).await {
            return Outcome::Interrupted;
        }
    }
    let chunks: Vec<String> = plan.pacing.chunks().iter().map(|chunk| plan.chunk_text(chunk)).collect();
    let count = chunks.len();
    let mut followups_sent = false;
    for (index, chunk) in chunks.iter().enumerate() {
        if plan.pacing.fails_at(index, count) {
            let mut frame = plan.frame(&mut cursor, Vec::new());
            frame["status"] = json!("FAILED");
            frame["error_code"] = json!("INTERNAL_ERROR");
            frame["error_message"] = json!(ERROR_MESSAGE);
            send(tx, frame).await;
            end_of_stream(tx).await;
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
        if let Some(gap) = plan.early_stop.filter(|_| index + 1 == count && count > 1) {
            // The page clears its Stop control and shows the footer now; the last words follow.
            if !send(tx, plan.frame(&mut cursor, vec![followups()])).await {
                return Outcome::Interrupted;
            }
            followups_sent = true;
            tokio::time::sleep(gap).await;
        }
        if !send(tx, plan.frame(&mut cursor, plan.chunk_blocks(index, chunk.clone()))).await {
            return Outcome::Interrupted;
        }
    }
    // An empty answer (`[[empty]]`) had no chunks: it is final without a word.
    plan.pacing.before_empty_finish().await;
    if !plan.products.is_empty() && !send(tx, plan.frame(&mut cursor, vec![plan.shopping_block()])).await {
        return Outcome::Interrupted;
    }
    // The text is complete: the page shows the footer and the Submit button.
    let mut blocks = vec![plan.text_block(&chunks)];
    if !followups_sent {
        blocks.push(followups());
    }
    let mut frame = plan.frame(&mut cursor, blocks);
    frame["text_completed"] = json!(true);
    if !send(tx, frame).await {
        return Outcome::Interrupted;
    }
    // What follows only fills the sources list.
    for source in &plan.listed {
        tokio::time::sleep(plan.late_gap).await;
        let add = json!({ "intended_usage": "web_results", "diff_block": { "field": "web_result_block", "patches": [
            { "op": "add", "path": format!("/web_results/{}", source.number - 1), "value": source.web_result() }] } });
        if !send(tx, plan.frame(&mut cursor, vec![add])).await {
            return plan.pacing.finished();
        }
    }
    let mut blocks = vec![plan.text_block(&chunks)];
    if !plan.cited.is_empty() {
        blocks.push(json!({ "intended_usage": "web_results", "web_result_block": { "progress": "DONE", "web_results": plan.all_results() } }));
        blocks.push(json!({ "intended_usage": "plan", "plan_block": { "progress": "DONE", "goals": [{ "description": "Searching the web", "final": true }] } }));
    }
    if !plan.products.is_empty() {
        blocks.push(plan.shopping_block());
    }
    let mut last = plan.frame(&mut cursor, blocks);
    for (field, value) in [
        ("status", json!("COMPLETED")),
        ("text_completed", json!(true)),
        ("final", json!(true)),
        ("final_sse_message", json!(true)),
        ("message_mode", json!("FULL")),
        ("text", json!(plan.steps_text(&chunks))),
        ("related_queries", json!([format!("{} explained", plan.prompt)])),
        ("thread_title", json!(plan.prompt)),
        ("classifier_results", json!({"mhe_predictions": {"shopping_intent": !plan.products.is_empty()}})),
    ] {
        last[field] = value;
    }
    if send(tx, last).await {
        end_of_stream(tx).await;
    }
    plan.pacing.finished()
}

/// The follow-up suggestions block: the page shows the footer when it comes.
fn followups() -> Value {
    json!({ "intended_usage": "pending_followups", "pending_followups_block": { "followups": [] } })
}

/// The sources the answer to `prompt` lists without citing them, in list order (after the
/// answer text has finished, these fill the Links tab). Empty for an answer without citations.
/// The page and the stream also list an own-site thread link, which is never a source.
pub fn listed_sources(prompt: &str) -> Vec<Citation> {
    extra_sources(prompt, &answer_for(prompt, true).citations)
}

/// The web searches the answer to `prompt` runs, in order: none without a search (`cites`
/// false, as an answer without sources).
pub fn search_queries(prompt: &str, cites: bool) -> Vec<String> {
    if !cites {
        return Vec::new();
    }
    let base = strip_markers(prompt).to_lowercase();
    let base = base.trim_end_matches(['?', '!', '.', ' ']).to_owned();
    vec![format!("{base} comparison"), base]
}

/// Whether a prompt reads as shopping: it mentions "best", "buy", a price or a "$".
fn shopping_like(prompt: &str) -> bool {
    let text = strip_markers(prompt).to_lowercase();
    ["best", "buy", "price", "cheap", "$"].iter().any(|word| text.contains(word))
}

/// The product cards the stream of `prompt` carries, links with tracking and the last one a
/// link to the site's own shopping page.
fn stream_products(prompt: &str) -> Vec<ShoppingProduct> {
    if prompt.contains(MARKER_OVERSIZED) {
        return oversized_products();
    }
    if !shopping_like(prompt) {
        return Vec::new();
    }
    let digest = Sha256::digest(strip_markers(prompt).as_bytes());
    let brands = ["Aurora", "Nimbus", "Vertex", "Halcyon", "Kestrel", "Lumen"];
    let merchants = ["Best Buy", "Amazon", "Walmart", "B&H Photo"];
    (0..3)
        .map(|index| {
            let byte = usize::from(digest[index]);
            let name =
                format!("{} {}{}", brands[(byte + index) % brands.len()], ["X", "Pro ", "Go "][index], 10 + byte % 90);
            let slug: String = name.to_lowercase().split_whitespace().collect::<Vec<_>>().join("-");
            let url = if index == 2 {
                format!("https://www.perplexity.ai/shopping/p/{slug}")
            } else {
                format!("https://shop.example.com/p/{slug}?ref=perplexity&utm_source=perplexity&utm_medium=shopping")
            };
            ShoppingProduct {
                name,
                url,
                price: format!("${}.99", 199 + 100 * (byte % 9)),
                merchant: merchants[(byte + index) % merchants.len()].to_owned(),
            }
        })
        .collect()
}

/// What `[[oversized]]` puts in the stream: 70 products (the platform takes 64), the first with
/// a name of 1,500 characters, a link of 5,000, a price of 300 and a merchant of 248 with a
/// bell and an escape in it; the others plain.
fn oversized_products() -> Vec<ShoppingProduct> {
    let first = ShoppingProduct {
        name: format!("Oversized {}", "Ultra ".repeat(250)).chars().take(1500).collect(),
        url: format!("https://shop.example.com/p/{}", "x".repeat(5000 - 26)),
        price: format!("$1,299.99 {}", "or less ".repeat(40)).chars().take(300).collect(),
        merchant: format!("Bell\u{7}Merchant\u{1b}[1m {}", "M".repeat(230)),
    };
    std::iter::once(first)
        .chain((2..=70).map(|n| ShoppingProduct {
            name: format!("Plain product {n}"),
            url: format!("https://shop.example.com/p/plain-{n}"),
            price: format!("${n}.99"),
            merchant: "Shop".to_owned(),
        }))
        .collect()
}

/// The products the answer to `prompt` shows, as a reader should report them: links without
/// tracking, the link to the site's own page left out (empty). None unless the prompt reads as
/// shopping ("best", "buy", a price).
pub fn products(prompt: &str) -> Vec<ShoppingProduct> {
    stream_products(prompt)
        .into_iter()
        .map(|product| {
            let url = if product.url.contains("perplexity.ai") {
                String::new()
            } else {
                product.url.split('?').next().unwrap_or_default().to_owned()
            };
            ShoppingProduct { url, ..product }
        })
        .collect()
}

/// The cited sources (in citing order, numbered from 1) and the listed-only ones (in list
/// order, numbered from 1 among themselves), then an own-site thread link. Cited links carry
/// tracking in the query, listed ones in the fragment.
fn numbered_sources(prompt: &str, answer: &Answer) -> (Vec<PaneSource>, Vec<PaneSource>) {
    let pane = |number: usize, citation: &Citation, url: String| PaneSource {
        number,
        url,
        title: citation.title.clone(),
        domain: citation.domain.clone(),
        widget: false,
    };
    let cited: Vec<PaneSource> = answer
        .citations
        .iter()
        .enumerate()
        .map(|(index, citation)| pane(index + 1, citation, with_tracking(&citation.url)))
        .collect();
    if cited.is_empty() {
        return (cited, Vec::new());
    }
    let mut listed: Vec<PaneSource> = extra_sources(prompt, &answer.citations)
        .iter()
        .enumerate()
        .map(|(index, citation)| pane(index + 1, citation, with_fragment_tracking(&citation.url)))
        .collect();
    let slug: String = strip_markers(prompt)
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(6)
        .collect::<Vec<_>>()
        .join("-");
    listed.push(PaneSource {
        number: listed.len() + 1,
        url: format!("https://www.perplexity.ai/search/{slug}-related?utm_source=copy_output"),
        title: "Related thread | Perplexity".to_owned(),
        domain: "perplexity.ai".to_owned(),
        widget: false,
    });
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

/// The link with tracking in its fragment, as some of the site's list entries have it.
fn with_fragment_tracking(url: &str) -> String {
    format!("{url}#utm_source=perplexity&utm_medium=sources")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_sources_are_distinct_from_cited_ones_and_follow_them_with_an_own_link_last() {
        for prompt in ["What are the best laptops under $1,000?", "how does TLS work", "x", "早上好"] {
            let answer = answer_for(prompt, true);
            let (cited, listed) = numbered_sources(prompt, &answer);
            assert_eq!(cited.len(), answer.citations.len());
            let public = listed_sources(prompt);
            assert!((MIN_LISTED..=MAX_LISTED).contains(&public.len()), "{prompt}: {}", public.len());
            assert_eq!(listed.len(), public.len() + 1, "an own-site link ends the list");
            assert!(listed.last().is_some_and(|own| own.url.starts_with("https://www.perplexity.ai/search/")));
            for (citation, source) in public.iter().zip(&listed) {
                assert!(cited.iter().all(|c| c.domain != source.domain));
                assert_eq!(with_fragment_tracking(&citation.url), source.url);
                assert_eq!(citation.title, source.title);
            }
            for source in &cited {
                assert!(source.url.ends_with("utm_source=perplexity"));
            }
        }
        assert!(numbered_sources("x", &answer_for("x", false)).1.is_empty());
    }

    #[test]
    fn chunks_carry_the_site_numbering_and_web_results_index_it() {
        let prompt = "compare electric cars";
        let config = crate::config::SimulatorConfig::default();
        let plan = Plan::new(Pacing::new(&config, PromptFlags::parse(prompt), prompt), prompt, Variant::Current);
        let text: String = plan.pacing.chunks().iter().map(|chunk| plan.chunk_text(chunk)).collect();
        assert!(!text.contains('\u{e200}'));
        let results = plan.all_results();
        for source in &plan.cited {
            assert!(text.contains(&format!("[{}]", source.number)));
            assert_eq!(results[source.number - 1]["url"], json!(source.url), "[n] is web_results[n-1]");
        }
        for source in &plan.listed {
            assert!(!text.contains(&format!("[{}]", source.number)), "listed sources are not cited");
            assert_eq!(results[source.number - 1]["url"], json!(source.url));
        }
        assert_eq!(results[plan.cited.len()]["is_widget"], json!(true));
    }

    #[test]
    fn queries_and_products_are_decided_by_the_prompt() {
        assert_eq!(search_queries("Best laptops? [[slow]]", true), ["best laptops comparison", "best laptops"]);
        assert!(search_queries("Best laptops?", false).is_empty());
        let products = products("What are the best laptops under $1,000?");
        assert_eq!(products.len(), 3);
        assert!(products[..2].iter().all(|p| p.url.starts_with("https://shop.example.com/p/") && !p.url.contains('?')));
        assert_eq!(products[2].url, "", "the site's own page is no product link");
        assert!(super::products("How do heat pumps work?").is_empty());
    }
}
