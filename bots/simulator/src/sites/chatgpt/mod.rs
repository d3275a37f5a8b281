//! The chatgpt.com look-alike: its pages and its streaming `POST /backend-api/conversation`.

mod page;

pub use page::{GENERIC_ERROR_MESSAGE, RATE_LIMIT_MESSAGE};

use std::convert::Infallible;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::answer::{Answer, PromptFlags, answer_for};
use crate::common::{logged_in, no_store};
use crate::config::SimulatorConfig;
use crate::state::{Outcome, SimState};

/// The site's routes: pages and `/backend-api/conversation`.
pub(crate) fn routes() -> Router<SimState> {
    Router::new()
        .route("/", get(home))
        .route("/c/{conversation_id}", get(conversation_page))
        .route("/auth/login", get(auth_login))
        .route("/api/auth/session", get(auth_session))
        .route("/backend-api/conversation", post(conversation))
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .fallback(|| async { (StatusCode::NOT_FOUND, Html(page::not_found())) })
}

fn chat_or_wall(state: &SimState, headers: &HeaderMap) -> Response {
    match logged_in(state, headers) {
        Some((_, label)) => no_store(page::chat_page(&label)),
        None => {
            state.record_login_wall();
            no_store(page::login_wall())
        }
    }
}

/// `/` and `/?model=auto`: the chat page, or the login wall without a valid session.
async fn home(State(state): State<SimState>, headers: HeaderMap) -> Response {
    chat_or_wall(&state, &headers)
}

/// `/c/{id}`: where the browser lands after the first answer; an empty chat page on reload
/// (conversations are not kept).
async fn conversation_page(
    State(state): State<SimState>,
    Path(_conversation_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    chat_or_wall(&state, &headers)
}

async fn auth_login() -> Response {
    no_store(page::auth_page())
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

/// What one answer request will do, fixed when it arrives.
struct Plan {
    answer: Answer,
    first_token_delay: Duration,
    chunk_delay: Duration,
    pause: Duration,
    words_per_chunk: usize,
    fail_mid_stream: bool,
    conversation_id: String,
    message_id: String,
}

impl Plan {
    fn new(config: &SimulatorConfig, flags: PromptFlags, prompt: &str, conversation_id: String) -> Self {
        let factor = if flags.slow || config.slow { config.slow_factor.max(1) } else { 1 };
        let millis = |ms: u64| Duration::from_millis(ms.saturating_mul(factor));
        Self {
            answer: answer_for(prompt, !(flags.no_citations || config.no_citations)),
            first_token_delay: millis(config.first_token_delay_ms),
            chunk_delay: millis(config.chunk_delay_ms),
            pause: millis(config.pause_ms),
            words_per_chunk: config.words_per_chunk,
            fail_mid_stream: flags.error || config.error,
            conversation_id,
            message_id: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// `POST /backend-api/conversation`: streams the answer as server-sent events.
async fn conversation(State(state): State<SimState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some((token, _label)) = logged_in(&state, &headers) else {
        state.record_login_wall();
        return (StatusCode::UNAUTHORIZED, Json(json!({"detail": "Unauthorized"}))).into_response();
    };
    let request: serde_json::Value = match serde_json::from_slice(&body) {
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
    let config = state.config();

    if flags.expire_session {
        state.expire_session(&token);
        state.record_login_wall();
        return (StatusCode::UNAUTHORIZED, Json(json!({"detail": "Your session has expired."}))).into_response();
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
        .and_then(serde_json::Value::as_str)
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let plan = Plan::new(&config, flags, &prompt, conversation_id);
    // Capacity 1: the producer runs at most one event ahead of the socket, so a client that
    // stops or leaves is noticed within a chunk or two.
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(1);
    tokio::spawn(async move {
        let outcome = produce(&tx, &plan).await;
        tracing::debug!(?outcome, conversation_id = %plan.conversation_id, "answer stream ended");
        state.record(&token, &prompt, outcome);
    });

    let mut response = Body::from_stream(ReceiverStream::new(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// The text of the last user message: `messages[-1].content.parts` joined by new lines.
fn prompt_of(request: &serde_json::Value) -> Option<String> {
    let message = request.get("messages")?.as_array()?.last()?;
    let parts = message.get("content")?.get("parts")?.as_array()?;
    let text = parts.iter().filter_map(serde_json::Value::as_str).collect::<Vec<_>>().join("\n");
    if text.trim().is_empty() { None } else { Some(text) }
}

fn sse(event: Option<&str>, data: &str) -> Bytes {
    match event {
        Some(event) => Bytes::from(format!("event: {event}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    }
}

/// Sends one event; false when the client is gone.
async fn send(tx: &mpsc::Sender<Result<Bytes, Infallible>>, event: Option<&str>, data: &str) -> bool {
    tx.send(Ok(sse(event, data))).await.is_ok()
}

async fn produce(tx: &mpsc::Sender<Result<Bytes, Infallible>>, plan: &Plan) -> Outcome {
    tokio::time::sleep(plan.first_token_delay).await;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |since| since.as_secs_f64());
    let references: Vec<serde_json::Value> = plan
        .answer
        .citations
        .iter()
        .enumerate()
        .map(|(index, citation)| {
            json!({
                "matched_text": crate::answer::marker(index),
                "type": "grouped_webpages",
                "items": [{ "title": citation.title, "url": citation.href, "attribution": citation.domain }],
            })
        })
        .collect();
    let header = json!({
        "p": "", "o": "add",
        "v": {
            "message": {
                "id": plan.message_id,
                "author": { "role": "assistant", "name": null, "metadata": {} },
                "create_time": now,
                "content": { "content_type": "text", "parts": [""] },
                "status": "in_progress",
                "metadata": { "content_references": references, "model_slug": "gpt-5", "citations": [] },
                "recipient": "all",
            },
            "conversation_id": plan.conversation_id,
            "error": null,
        },
        "c": 0,
    });
    if !send(tx, Some("delta_encoding"), "\"v1\"").await || !send(tx, Some("delta"), &header.to_string()).await {
        return Outcome::Interrupted;
    }

    let chunks = plan.answer.chunks(plan.words_per_chunk);
    let pause_at = chunks.len() / 2;
    let fail_at = chunks.len() / 3;
    for (index, chunk) in chunks.iter().enumerate() {
        if plan.fail_mid_stream && index == fail_at {
            let error =
                json!({ "type": "error", "message": GENERIC_ERROR_MESSAGE, "conversation_id": plan.conversation_id });
            if !send(tx, None, &error.to_string()).await || !send(tx, None, "[DONE]").await {
                return Outcome::Interrupted;
            }
            return Outcome::Failed;
        }
        if index == pause_at && !plan.pause.is_zero() {
            tokio::time::sleep(plan.pause).await;
        } else if index > 0 {
            tokio::time::sleep(plan.chunk_delay).await;
        }
        // The first append names its operation and path; the rest use the short form.
        let delta = if index == 0 {
            json!({ "p": "/message/content/parts/0", "o": "append", "v": chunk })
        } else {
            json!({ "v": chunk })
        };
        if !send(tx, Some("delta"), &delta.to_string()).await {
            return Outcome::Interrupted;
        }
    }

    let finish = json!({ "p": "", "o": "patch", "v": [
        { "p": "/message/status", "o": "replace", "v": "finished_successfully" },
        { "p": "/message/end_turn", "o": "replace", "v": true },
    ]});
    let complete = json!({ "type": "message_stream_complete", "conversation_id": plan.conversation_id });
    if !send(tx, Some("delta"), &finish.to_string()).await
        || !send(tx, None, &complete.to_string()).await
        || !send(tx, None, "[DONE]").await
    {
        return Outcome::Interrupted;
    }
    Outcome::Answered
}
