//! HTTP surface: the site's own routes ([`crate::sites`]) plus the `/__sim` admin API every
//! site shares.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::common::{challenge_page, session_token};
use crate::sites;
use crate::state::SimState;

/// The full router of the site `state` imitates: its pages and endpoints, and `/__sim`.
pub fn router(state: SimState) -> Router {
    Router::new()
        .route("/__sim/sessions", post(admin_create_session))
        .route("/__sim/sessions/{token}/expire", post(admin_expire_session))
        .route("/__sim/stats", get(admin_stats))
        .route("/__sim/config", get(admin_get_config).put(admin_put_config))
        .route("/__sim/sessions/{token}/challenge", post(admin_challenge_session))
        .route("/__sim/site", get(admin_site))
        .route("/__sim/logins", post(crate::login::admin_register))
        .route(crate::interrupt::POPUP_PATH, get(crate::interrupt::popup))
        .merge(sites::routes(state.site()))
        .layer(middleware::from_fn_with_state(state.clone(), crate::interrupt::inject))
        .layer(middleware::from_fn_with_state(state.clone(), edge))
        .with_state(state)
}

/// The site's edge, in front of every page and endpoint (never `/__sim`): a flagged session, or
/// every client when `config.challenge` is on, gets the bot challenge instead of the site, as
/// Cloudflare serves it.
async fn edge(State(state): State<SimState>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/__sim") {
        return next.run(request).await;
    }
    let flagged = session_token(&state, request.headers()).is_some_and(|token| state.is_challenged(&token));
    if flagged || state.config().challenge {
        state.record_challenge();
        return challenge_page(state.site().title());
    }
    next.run(request).await
}

/// `POST /__sim/sessions/{token}/challenge`: 204, or 404 for an unknown token.
async fn admin_challenge_session(State(state): State<SimState>, Path(token): Path<String>) -> StatusCode {
    if state.challenge_session(&token) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

/// `GET /__sim/site`: which site this instance imitates, e.g. `{"site": "chatgpt"}`.
async fn admin_site(State(state): State<SimState>) -> Response {
    Json(serde_json::json!({ "site": state.site().id(), "base_url": state.base_url() })).into_response()
}

// ---- admin API ------------------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
struct CreateSessionRequest {
    #[serde(default)]
    label: String,
}

/// `POST /__sim/sessions` `{"label": "..."}` → `{"token", "storage_state_json"}`.
async fn admin_create_session(State(state): State<SimState>, body: Bytes) -> Response {
    let request = if body.iter().all(u8::is_ascii_whitespace) {
        CreateSessionRequest::default()
    } else {
        match serde_json::from_slice::<CreateSessionRequest>(&body) {
            Ok(request) => request,
            Err(error) => {
                return (StatusCode::BAD_REQUEST, format!("invalid session request: {error}")).into_response();
            }
        }
    };
    (StatusCode::CREATED, Json(state.create_session(&request.label))).into_response()
}

/// `POST /__sim/sessions/{token}/expire`: 204, or 404 for an unknown token.
async fn admin_expire_session(State(state): State<SimState>, Path(token): Path<String>) -> StatusCode {
    if state.expire_session(&token) { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND }
}

async fn admin_stats(State(state): State<SimState>) -> Response {
    Json(state.stats()).into_response()
}

async fn admin_get_config(State(state): State<SimState>) -> Response {
    Json(state.config()).into_response()
}

/// `PUT /__sim/config`: any subset of the config fields; returns the config now in force.
async fn admin_put_config(State(state): State<SimState>, body: Bytes) -> Response {
    let patch = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(patch) => patch,
        Err(error) => return (StatusCode::BAD_REQUEST, format!("invalid json: {error}")).into_response(),
    };
    match state.patch_config(patch) {
        Ok(config) => Json(config).into_response(),
        Err(error) => (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    }
}
