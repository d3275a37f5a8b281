//! The seed's HTTP polling API, byte for byte: `POST /evaluations/api/v1/poll|submit|release`
//! with the seed's JSON, for bots written to it. A thin adapter over [`Gateway`].

use std::net::SocketAddr;

use aap_platform::auth::{Access, AuthError, Caller, Networks, Role};
use aap_platform::principals::Principals;
use aap_platform::{assistants, input};
use axum::extract::{ConnectInfo, Extension, FromRequest, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::EvalError;
use crate::gateway::{Gateway, Submission, admit_serves, parse_serves};
use crate::model::{AnswerKind, Capture, CitationKind, CitationOrigin, RawCitation};
use crate::store::Holder;

#[derive(Clone)]
struct ApiState {
    gateway: Gateway,
}

/// Who may call the seed's API: bots with a token, and, when an operator allows it, token-less
/// bots from listed networks.
#[derive(Debug, Clone)]
pub struct HttpAuth {
    pub principals: Principals,
    pub token_less: Networks,
}

/// Largest request body the API reads (after the token is checked): the seed's answers are
/// text with citations, far below it.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// The router of the seed's API. Serve it with
/// `into_make_service_with_connect_info::<SocketAddr>()` so token-less networks can be checked.
pub fn router(gateway: Gateway, auth: HttpAuth) -> Router {
    if !auth.token_less.is_empty() {
        tracing::warn!(networks = %auth.token_less, "seed HTTP API admits token-less bots from these networks");
    }
    Router::new()
        .route("/evaluations/api/v1/poll", post(poll))
        .route("/evaluations/api/v1/submit", post(submit))
        .route("/evaluations/api/v1/release", post(release))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(auth, bots_only))
        .layer(axum::middleware::from_fn(traced))
        .with_state(ApiState { gateway })
}

/// Refuses every caller without a bot token before anything reads the body: an unauthenticated
/// request costs no parsing and learns nothing from validation errors. A request without an
/// `Authorization` header from an allowed network acts as that host's bot principal.
async fn bots_only(
    State(auth): State<HttpAuth>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    let token_less = match peer {
        Some(peer) if !request.headers().contains_key(axum::http::header::AUTHORIZATION) => {
            auth.token_less.caller(peer)
        }
        _ => None,
    };
    let caller = match token_less {
        Some(caller) => Ok(caller),
        None => auth
            .principals
            .authorize(request.headers(), Access::Roles(&[Role::Bot]))
            .and_then(|caller| caller.ok_or(AuthError::Missing)),
    };
    match caller {
        Ok(caller) => {
            tracing::Span::current().record("enduser.id", &*caller.principal);
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(error) => ApiError::from(error).into_response(),
    }
}

/// One span per request, a child of the caller's trace when it sends a W3C `traceparent`
/// header (a seed bot that forwards its task's trace), so the HTTP path joins the same trace as
/// the gRPC one.
async fn traced(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        otel.name = %format!("POST {}", request.uri().path()),
        http.route = %request.uri().path(),
        enduser.id = tracing::field::Empty,
    );
    aap_platform::telemetry::set_parent(&span, &aap_platform::telemetry::context_from_headers(request.headers()));
    next.run(request).instrument(span).await
}

/// An error as the seed's API returns it: a status code and `{"detail": "..."}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    detail: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "detail": self.detail }))).into_response()
    }
}

impl From<EvalError> for ApiError {
    fn from(err: EvalError) -> ApiError {
        let status = match &err {
            EvalError::InvalidArgument { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            EvalError::NotFound(_) => StatusCode::NOT_FOUND,
            EvalError::PermissionDenied(_) => StatusCode::FORBIDDEN,
            EvalError::WrongState { .. } => StatusCode::CONFLICT,
            EvalError::Queue(_) => StatusCode::SERVICE_UNAVAILABLE,
            EvalError::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let detail = match &err {
            EvalError::Database(cause) => {
                tracing::error!(error = %cause, "evaluation store failed");
                "internal error".to_owned()
            }
            EvalError::InvalidArgument { field, reason } => format!("invalid {}: {reason}", seed_field(field)),
            _ => err.to_string(),
        };
        ApiError { status, detail }
    }
}

/// The seed's name of a field the gateway refuses (`response_text` is the seed's
/// `answer.response`), so that a 422 names what the bot sent.
fn seed_field(field: &'static str) -> &'static str {
    match field {
        "serves.assistant" => "assistant_name",
        "serves.plan" => "plan_name",
        "response_text" => "answer.response",
        "citations" => "answer.citations",
        "citations.url" => "answer.citations.url",
        "citations.title" => "answer.citations.text",
        "captured_at" => "answer.timestamp",
        other => other,
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> ApiError {
        let status = match err {
            AuthError::Missing | AuthError::Unknown | AuthError::Revoked(_) | AuthError::Expired(_) => {
                StatusCode::UNAUTHORIZED
            }
            AuthError::WrongRole { .. } | AuthError::UnknownMethod => StatusCode::FORBIDDEN,
        };
        ApiError { status, detail: err.to_string() }
    }
}

/// A JSON body as the seed's bots send it, whose rejections (malformed JSON, wrong types,
/// missing fields) answer in the API's error shape, naming the field (`answer.timestamp`). A body without a `Content-Type` is read as
/// JSON (the seed's Python bot may send one); a body declared as something else is 415.
struct SeedJson<T>(T);

impl<S, T> FromRequest<S> for SeedJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared = req.headers().get(axum::http::header::CONTENT_TYPE).map(|v| v.to_str().unwrap_or("").to_owned());
        if let Some(declared) = declared.filter(|d| !d.to_ascii_lowercase().contains("json")) {
            return Err(ApiError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                detail: format!("expected a JSON body, got content type {declared:?}"),
            });
        }
        let body = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError { status: rejection.status(), detail: rejection.body_text() })?;
        let invalid = |detail| ApiError { status: StatusCode::UNPROCESSABLE_ENTITY, detail };
        let mut json = serde_json::Deserializer::from_slice(&body);
        let value = serde_path_to_error::deserialize(&mut json).map_err(|error| {
            let path = error.path().to_string();
            let error = error.into_inner();
            // The field where the body went wrong, as far as it was read: a key never read
            // (serde_path_to_error's "?") is no field, and a body cut short is named by its end.
            let mut known = path.as_str();
            while let Some(rest) = known.strip_suffix('?') {
                known = rest.strip_suffix('.').unwrap_or(rest);
            }
            invalid(if error.is_eof() || known.is_empty() || known == "." {
                format!("invalid JSON body: {error}")
            } else {
                format!("invalid {known}: {error}")
            })
        })?;
        json.end().map_err(|error| invalid(format!("invalid JSON body: {error}")))?;
        Ok(SeedJson(value))
    }
}

/// A timestamp as the seed's bots write it: RFC 3339 with an offset, or Python's `isoformat()`
/// of a naive time (no offset, with or without fractions of a second), which is read as UTC.
fn seed_timestamp<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let text = text.trim();
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
        .map(|naive| naive.and_utc())
        .map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid timestamp {}: expected ISO 8601 such as 2025-12-09T10:35:00Z (no offset: UTC)",
                input::quoted(text)
            ))
        })
}

/// Unknown fields are ignored, here and in every body: the seed's bots may send more.
#[derive(Debug, Deserialize)]
struct PollBody {
    assistant_name: String,
    plan_name: String,
}

/// The seed's poll response; every field null when nothing waits.
#[derive(Debug, Serialize, Default)]
struct PollReply {
    evaluation_id: Option<i64>,
    prompt_id: Option<i64>,
    prompt_text: Option<String>,
    topic_id: Option<i64>,
    claimed_at: Option<String>,
}

async fn poll(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    SeedJson(body): SeedJson<PollBody>,
) -> Result<Json<PollReply>, ApiError> {
    let assistant = assistants::by_seed_name(&body.assistant_name).ok_or_else(|| {
        EvalError::invalid("assistant_name", format!("unknown assistant {}", input::quoted(&body.assistant_name)))
    })?;
    let serves = parse_serves([(assistant.id.to_owned(), body.plan_name)])?;
    admit_serves(&caller, &serves)?;
    // The seed's bots send no id of their own: the principal is the holder.
    let holder = Holder::new(&caller.principal, &caller.principal);
    let ttl = state.gateway.config().poll_claim_ttl;
    let Some(task) = state.gateway.poll(&holder, &serves, ttl).await? else {
        return Ok(Json(PollReply::default()));
    };
    Ok(Json(PollReply {
        evaluation_id: Some(task.evaluation_id),
        prompt_id: Some(task.prompt_id),
        prompt_text: Some(task.prompt_text),
        topic_id: None,
        claimed_at: Some(Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)),
    }))
}

#[derive(Debug, Deserialize)]
struct SubmitBody {
    evaluation_id: i64,
    answer: SubmitAnswer,
}

#[derive(Debug, Deserialize)]
struct SubmitAnswer {
    response: String,
    citations: Vec<SeedCitation>,
    #[serde(deserialize_with = "seed_timestamp")]
    timestamp: DateTime<Utc>,
}

#[derive(Debug, Deserialize)]
struct SeedCitation {
    url: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Serialize)]
struct SubmitReply {
    evaluation_id: i64,
    status: &'static str,
}

async fn submit(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    SeedJson(body): SeedJson<SubmitBody>,
) -> Result<Json<SubmitReply>, ApiError> {
    let submission = Submission {
        evaluation_id: body.evaluation_id,
        response_markdown: String::new(),
        response_text: body.answer.response,
        citations: body
            .answer
            .citations
            .into_iter()
            .map(|c| RawCitation {
                url: c.url,
                title: c.text.unwrap_or_default(),
                kind: CitationKind::Unspecified,
                found_in: CitationOrigin::Unspecified,
            })
            .collect(),
        captured_at: Some(body.answer.timestamp),
        bot_id: String::new(),
        lease_id: String::new(),
        kind: AnswerKind::Text,
        capture: Capture::default(),
        search_queries: Vec::new(),
        products: Vec::new(),
    };
    state.gateway.submit(&caller.principal, submission).await?;
    Ok(Json(SubmitReply { evaluation_id: body.evaluation_id, status: "submitted" }))
}

#[derive(Debug, Deserialize)]
struct ReleaseBody {
    evaluation_id: i64,
    mark_as_failed: bool,
    #[serde(default)]
    failure_reason: Option<String>,
}

#[derive(Debug, Serialize)]
struct ReleaseReply {
    evaluation_id: i64,
    action: &'static str,
}

async fn release(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    SeedJson(body): SeedJson<ReleaseBody>,
) -> Result<Json<ReleaseReply>, ApiError> {
    let reason = body.failure_reason.unwrap_or_default();
    let holder = Holder::new(&caller.principal, "");
    state.gateway.release(body.evaluation_id, body.mark_as_failed, &reason, &holder).await?;
    Ok(Json(ReleaseReply { evaluation_id: body.evaluation_id, action: "released" }))
}
