//! Logs and traces: one `init` per process, and the W3C trace context carried across gRPC
//! metadata, NATS headers and task payloads so one trace follows a prompt end to end.
//!
//! The path of one prompt's trace: the client's `traceparent` → [`GrpcTraceLayer`]'s
//! `grpc.request` span around `Ask` → the trace context stored on each evaluation → the
//! scheduler's `schedule` span and the task message's NATS headers → `task.claimed` when a
//! bot takes it (and `Task.trace_context` for the bot) → the bot's `Submit`, whose metadata
//! carries the task's context ([`request_with_context`]) → the result's NATS headers → the
//! ingest's span.
//!
//! The helpers always speak W3C trace context (`traceparent`, `tracestate`), whatever global
//! propagator a process installed: the platform's parts must agree on one format.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Keeps the trace exporter alive; dropping it flushes the spans not yet sent.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            eprintln!("trace export did not shut down cleanly: {err}");
        }
    }
}

/// Errors setting telemetry up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot build the otlp exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
    #[error("a global subscriber is already set: {0}")]
    Subscriber(#[from] tracing_subscriber::util::TryInitError),
}

/// Sets up logging for `service`: `RUST_LOG`-style filtering (`default_filter` when unset),
/// human-readable lines on a terminal, JSON lines otherwise, and OTLP trace export when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(service: &'static str, default_filter: &str) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let fmt_layer = if std::io::stderr().is_terminal() {
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).boxed()
    } else {
        tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).boxed()
    };
    let provider = match std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Some(_) => Some(otlp_provider(service)?),
        None => None,
    };
    let otel_layer = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer(service)));
    tracing_subscriber::registry().with(filter).with(fmt_layer).with(otel_layer).try_init()?;
    Ok(TelemetryGuard { provider })
}

pub use aap_telemetry::traces::{otlp_provider, otlp_provider_to, set_parent};

/// The propagator every helper here uses: W3C trace context.
fn propagator() -> TraceContextPropagator {
    TraceContextPropagator::new()
}

fn to_carrier(context: &opentelemetry::Context) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    propagator().inject_context(context, &mut carrier);
    carrier
}

/// The current span's trace context as W3C headers (`traceparent`, `tracestate`); empty when
/// no span is being exported (no OpenTelemetry layer, or the span is filtered out).
pub fn current_context() -> HashMap<String, String> {
    to_carrier(&tracing::Span::current().context())
}

/// Links `span` to the current span: for work that joins another trace (a bot's poll that
/// claims a task of a prompt's trace) but was caused by the current one.
pub fn link_to_current(span: &tracing::Span) {
    let current = tracing::Span::current().context();
    span.add_link(current.span().span_context().clone());
}

/// Reads the trace context from gRPC metadata or HTTP headers.
pub fn context_from_headers(headers: &http::HeaderMap) -> HashMap<String, String> {
    struct Headers<'a>(&'a http::HeaderMap);
    impl Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0.keys().map(|k| k.as_str()).collect()
        }
    }
    to_carrier(&propagator().extract(&Headers(headers)))
}

/// Writes the current span's trace context into NATS message headers.
pub fn inject_nats_headers(headers: &mut async_nats::HeaderMap) {
    struct Nats<'a>(&'a mut async_nats::HeaderMap);
    impl Injector for Nats<'_> {
        fn set(&mut self, key: &str, value: String) {
            self.0.insert(key, value.as_str());
        }
    }
    propagator().inject_context(&tracing::Span::current().context(), &mut Nats(headers));
}

/// Reads the trace context from NATS message headers.
pub fn context_from_nats_headers(headers: Option<&async_nats::HeaderMap>) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    if let Some(headers) = headers {
        for key in ["traceparent", "tracestate"] {
            if let Some(value) = headers.get(key) {
                carrier.insert(key.to_owned(), value.as_str().to_owned());
            }
        }
    }
    carrier
}

/// Puts the trace context in `carrier` (such as a task's `trace_context`) into gRPC metadata;
/// entries that are not valid metadata are skipped.
pub fn insert_trace_metadata(metadata: &mut tonic::metadata::MetadataMap, carrier: &HashMap<String, String>) {
    for (key, value) in carrier {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            metadata.insert(key, value);
        }
    }
}

/// A gRPC request for `message` that carries the trace context in `carrier`: how a bot makes
/// its `Submit`, `Release` and `Heartbeat` calls part of the task's trace
/// (`client.submit(request_with_context(req, &task.trace_context))`).
pub fn request_with_context<T>(message: T, carrier: &HashMap<String, String>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    insert_trace_metadata(request.metadata_mut(), carrier);
    request
}

/// Tonic interceptor for clients: sends the current trace context as gRPC metadata, unless
/// the request already carries one (set with [`request_with_context`]), which wins.
pub fn inject_grpc_context(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    if request.metadata().contains_key("traceparent") {
        return Ok(request);
    }
    insert_trace_metadata(request.metadata_mut(), &current_context());
    Ok(request)
}

/// Tower layer for gRPC servers: runs every call in a `grpc.request` span (exported as
/// `package.Service/Method`, kind server) whose parent is the W3C trace context of the
/// request's metadata, so handlers' spans and the trace context they store belong to the
/// caller's trace. Health checks are left out: probes would flood the traces.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcTraceLayer;

impl<S> tower::Layer<S> for GrpcTraceLayer {
    type Service = GrpcTraceService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTraceService { inner }
    }
}

/// The service [`GrpcTraceLayer`] wraps around the gRPC router.
#[derive(Debug, Clone)]
pub struct GrpcTraceService<S> {
    inner: S,
}

/// The span of one gRPC call, parented on the caller's trace context.
fn grpc_request_span<B>(request: &http::Request<B>) -> tracing::Span {
    let path = request.uri().path();
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    let span = tracing::info_span!(
        "grpc.request",
        otel.name = %path.trim_start_matches('/'),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        rpc.system = "grpc",
        rpc.service = %service,
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        // The authenticated principal's name (set by the auth layer), never the token.
        enduser.id = tracing::field::Empty,
    );
    set_parent(&span, &context_from_headers(request.headers()));
    span
}

/// Records the status of a call answered without a body (an error, or a refusal): its
/// `grpc-status` comes in the headers. A call with a body reports it in trailers, unseen here.
fn record_grpc_status(span: &tracing::Span, headers: &http::HeaderMap) {
    let Some(code) = headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    span.record("rpc.grpc.status_code", code);
    if code != 0 {
        span.record("otel.status_code", "error");
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcTraceService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path().starts_with("/grpc.health.") {
            return Box::pin(self.inner.call(request));
        }
        let span = grpc_request_span(&request);
        // Handlers run inside the inner future, and some work starts in `call` itself: both
        // run in the span, so the handlers' spans and `current_context()` are its children.
        let future = span.in_scope(|| self.inner.call(request)).instrument(span.clone());
        Box::pin(async move {
            let response = future.await;
            if let Ok(response) = &response {
                record_grpc_status(&span, response.headers());
            }
            response
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer as _, Service as _};

    const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    /// Runs `f` with a subscriber that gives spans OpenTelemetry contexts (nothing exported).
    fn with_otel<T>(f: impl FnOnce() -> T) -> T {
        let provider = SdkTracerProvider::builder().build();
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, f)
    }

    fn trace_id(carrier: &HashMap<String, String>) -> Option<&str> {
        carrier.get("traceparent").and_then(|t| t.split('-').nth(1))
    }

    #[test]
    fn grpc_requests_run_in_a_span_parented_on_the_callers_context() {
        let seen = with_otel(|| {
            let inner = tower::service_fn(|_request: http::Request<()>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(current_context()))
            });
            let mut service = GrpcTraceLayer.layer(inner);
            let request = http::Request::builder()
                .uri("/aap.v1.AnswersService/Ask")
                .header("traceparent", TRACEPARENT)
                .body(())
                .expect("request");
            futures::executor::block_on(service.call(request)).expect("response").into_body()
        });
        assert_eq!(trace_id(&seen), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        // The handler sees the request span, a child of the caller's span, not the caller's.
        assert_ne!(seen.get("traceparent").map(String::as_str), Some(TRACEPARENT));
    }

    #[test]
    fn grpc_requests_without_a_context_start_a_trace() {
        let seen = with_otel(|| {
            let inner = tower::service_fn(|_request: http::Request<()>| async {
                Ok::<_, std::convert::Infallible>(http::Response::new(current_context()))
            });
            let mut service = GrpcTraceLayer.layer(inner);
            let request = http::Request::builder().uri("/aap.v1.EvaluationService/Poll").body(()).expect("request");
            futures::executor::block_on(service.call(request)).expect("response").into_body()
        });
        assert!(trace_id(&seen).is_some_and(|id| id.len() == 32 && id != "4bf92f3577b34da6a3ce929d0e0e4736"));
    }

    #[test]
    fn an_explicit_trace_context_wins_over_the_ambient_one() {
        let carrier = HashMap::from([("traceparent".to_owned(), TRACEPARENT.to_owned())]);
        let request = with_otel(|| {
            let _ambient = tracing::info_span!("bot.work").entered();
            inject_grpc_context(request_with_context((), &carrier)).expect("intercepted")
        });
        let sent = request.metadata().get("traceparent").and_then(|v| v.to_str().ok());
        assert_eq!(sent, Some(TRACEPARENT));
    }

    #[test]
    fn the_ambient_context_is_sent_when_none_is_set() {
        let (request, expected) = with_otel(|| {
            let _ambient = tracing::info_span!("client.call").entered();
            (inject_grpc_context(tonic::Request::new(())).expect("intercepted"), current_context())
        });
        let sent = request.metadata().get("traceparent").and_then(|v| v.to_str().ok());
        assert!(sent.is_some());
        assert_eq!(sent, expected.get("traceparent").map(String::as_str));
    }

    #[test]
    fn trace_context_survives_http_headers_and_nats_headers() {
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", TRACEPARENT.parse().expect("header"));
        let carrier = context_from_headers(&headers);
        assert_eq!(carrier.get("traceparent").map(String::as_str), Some(TRACEPARENT));

        let mut nats = async_nats::HeaderMap::new();
        with_otel(|| {
            let span = tracing::info_span!("publish");
            set_parent(&span, &carrier);
            span.in_scope(|| inject_nats_headers(&mut nats));
        });
        let read = context_from_nats_headers(Some(&nats));
        assert_eq!(trace_id(&read), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
    }
}
