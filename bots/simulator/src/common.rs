//! What every site's handlers share: session cookies, pacing of streamed answers, server-sent
//! events, the bot-challenge page, HTML escaping.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::answer::{Answer, PromptFlags, answer_for};
use crate::config::SimulatorConfig;
use crate::state::{Outcome, SimState};

/// Whether the request's query names the parameter `name` (with any value, or none).
pub(crate) fn has_query_param(uri: &Uri, name: &str) -> bool {
    uri.query().is_some_and(|query| query.split('&').any(|pair| pair.split('=').next() == Some(name)))
}

/// The session token from the `Cookie` headers, if any.
pub(crate) fn session_token(state: &SimState, headers: &HeaderMap) -> Option<String> {
    let name = state.site().session_cookie();
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(cookie, _)| *cookie == name)
        .map(|(_, value)| value.trim().to_owned())
}

/// The session's token and label when the request is logged in.
pub(crate) fn logged_in(state: &SimState, headers: &HeaderMap) -> Option<(String, String)> {
    let token = session_token(state, headers)?;
    let label = state.session_label(&token)?;
    Some((token, label))
}

/// An HTML response the browser must not cache (pages change with the session and the knobs).
pub(crate) fn no_store(html: String) -> Response {
    let mut response = Html(html).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// How one answer request will stream, fixed when it arrives.
#[derive(Debug, Clone)]
pub(crate) struct Pacing {
    /// The deterministic answer (citations removed when asked; no text and no sources at all
    /// when the answer is `empty`).
    pub answer: Answer,
    pub first_token_delay: Duration,
    pub chunk_delay: Duration,
    /// One silent pause half-way through.
    pub pause: Duration,
    pub words_per_chunk: usize,
    /// Fail a third of the way through with the site's error.
    pub fail_mid_stream: bool,
    /// Stop sending a third of the way through and hold the stream open this long, never
    /// completing (`None`: no stall).
    pub stall: Option<Duration>,
    /// The turn finishes normally without a word (`[[empty]]`): no chunks, the first-token
    /// delay before the finish, every finish signal as usual.
    pub empty: bool,
    /// The answer stops at the site's length limit (`[[cut-short]]`): only the first two thirds
    /// of its chunks are sent, then the site's usual finish with its own stop reason.
    pub cut_short: bool,
    /// Claude declines the prompt a third of the way (`[[refusal]]`).
    pub refusal: bool,
}

impl Pacing {
    /// The pacing of `prompt` under `config` and the prompt's markers.
    pub fn new(config: &SimulatorConfig, flags: PromptFlags, prompt: &str) -> Pacing {
        let factor = if flags.slow || config.slow { config.slow_factor.max(1) } else { 1 };
        let millis = |ms: u64| Duration::from_millis(ms.saturating_mul(factor));
        let empty = flags.empty || config.empty;
        let answer =
            if empty { Answer::empty() } else { answer_for(prompt, !(flags.no_citations || config.no_citations)) };
        Pacing {
            answer,
            first_token_delay: millis(config.first_token_delay_ms),
            chunk_delay: millis(config.chunk_delay_ms),
            pause: millis(config.pause_ms),
            words_per_chunk: config.words_per_chunk.max(1),
            fail_mid_stream: flags.error || config.error,
            stall: (flags.stall || config.stall).then(|| Duration::from_millis(config.stall_ms)),
            empty,
            cut_short: flags.cut_short,
            refusal: flags.refusal,
        }
    }

    /// The answer's chunks (the first two thirds of them when the answer is cut short), and
    /// the indexes of the pause, the failure and the stall.
    pub fn chunks(&self) -> Vec<String> {
        let mut chunks = self.answer.chunks(self.words_per_chunk);
        if self.cut_short {
            chunks.truncate((chunks.len() * 2).div_ceil(3));
        }
        chunks
    }

    /// Sleeps before chunk `index` of `count`: the first-token delay, the mid-way pause, or the
    /// chunk delay.
    pub async fn before_chunk(&self, index: usize, count: usize) {
        if index == 0 {
            tokio::time::sleep(self.first_token_delay).await;
        } else if index == count / 2 && !self.pause.is_zero() {
            tokio::time::sleep(self.pause).await;
        } else {
            tokio::time::sleep(self.chunk_delay).await;
        }
    }

    /// Whether chunk `index` of `count` is where the stream fails (`fail_mid_stream`).
    pub fn fails_at(&self, index: usize, count: usize) -> bool {
        self.fail_mid_stream && index == count / 3
    }

    /// Whether chunk `index` of `count` is where the stream stalls.
    pub fn stalls_at(&self, index: usize, count: usize) -> Option<Duration> {
        self.stall.filter(|_| index == count / 3)
    }

    /// Before an empty answer finishes: the wait the first token would have had, so the turn
    /// shows its busy state for a moment before it completes with nothing in it. No wait for an
    /// answer with text (its chunks had their delays).
    pub async fn before_empty_finish(&self) {
        if self.empty {
            tokio::time::sleep(self.first_token_delay).await;
        }
    }

    /// How a stream that ran to its normal end counts: an empty answer is one of its own.
    pub fn finished(&self) -> Outcome {
        if self.empty { Outcome::AnsweredEmpty } else { Outcome::Answered }
    }
}

/// A sender of server-sent events and the response that streams them.
pub(crate) type EventSender = mpsc::Sender<Result<Bytes, Infallible>>;

/// A `text/event-stream` response fed by the returned sender. Capacity 1: the producer runs at
/// most one event ahead of the socket, so a client that leaves is noticed within a chunk or two.
pub(crate) fn event_stream() -> (EventSender, Response) {
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(1);
    let mut response = Body::from_stream(ReceiverStream::new(rx)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    (tx, response)
}

/// Sends one server-sent event (`event:` line only when `event` is given); false when the
/// client is gone.
pub(crate) async fn send_event(tx: &EventSender, event: Option<&str>, data: &str) -> bool {
    let bytes = match event {
        Some(event) => Bytes::from(format!("event: {event}\ndata: {data}\n\n")),
        None => Bytes::from(format!("data: {data}\n\n")),
    };
    tx.send(Ok(bytes)).await.is_ok()
}

/// The title of Cloudflare's interstitial, which bots match on.
pub const CHALLENGE_TITLE: &str = "Just a moment...";

/// A Cloudflare-style bot challenge in place of the site (status 403, as Cloudflare serves it):
/// the title "Just a moment...", a Turnstile widget that never resolves, no composer.
pub(crate) fn challenge_page(host_title: &str) -> Response {
    let host = escape_html(host_title);
    let html = format!(
        "<!DOCTYPE html><html lang=\"en-US\"><head><title>{CHALLENGE_TITLE}</title>\
         <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\">\
         <meta name=\"robots\" content=\"noindex,nofollow\"></head>\
         <body><div class=\"main-wrapper\" role=\"main\"><div class=\"main-content\">\
         <h1 class=\"zone-name-title h1\">{host}</h1>\
         <h2 class=\"h2\" id=\"challenge-running\">Verify you are human by completing the action below.</h2>\
         <div id=\"challenge-stage\"><div class=\"cf-turnstile\" id=\"cf-chl-widget\"></div></div>\
         <div id=\"challenge-body-text\" class=\"core-msg spacer\">{host} needs to review the security of your connection before proceeding.</div>\
         <form id=\"challenge-form\" action=\"/cdn-cgi/challenge-platform/h/g/orchestrate/chl_page/v1\" method=\"POST\"></form>\
         </div></div><div class=\"footer\" role=\"contentinfo\">Performance &amp; security by Cloudflare</div>\
         </body></html>"
    );
    let mut response = (StatusCode::FORBIDDEN, Html(html)).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.headers_mut().insert("cf-mitigated", HeaderValue::from_static("challenge"));
    response
}

/// Text made safe for HTML element content and attribute values.
pub(crate) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
