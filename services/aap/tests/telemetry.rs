//! One OpenTelemetry trace follows a prompt from Ask through the scheduler, the bot's claim
//! and submit, and the ingest, back to the customer's stream: checked with an in-process
//! OTLP/gRPC collector.
//!
//! This file is its own test binary with a single test because it installs the process's
//! global tracing subscriber (an OTLP exporter to the collector it starts).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aap_platform::telemetry;
use aap_proto::v1::SubmitRequest;
use aap_proto::v1::answer_event::Event;
use common::*;
use futures::StreamExt;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// An OTLP trace collector that keeps every span it receives.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let spans = request.into_inner().resource_spans.into_iter().flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
        self.spans.lock().expect("collector lock").extend(spans);
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

impl Collector {
    /// Serves OTLP/gRPC on a port from the OS; returns the endpoint.
    async fn start(&self) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind collector");
        let endpoint = format!("http://{}", listener.local_addr().expect("collector address"));
        let server = tonic::transport::Server::builder().add_service(TraceServiceServer::new(self.clone()));
        tokio::spawn(server.serve_with_incoming(TcpListenerStream::new(listener)));
        endpoint
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("collector lock").clone()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn one_trace_follows_a_prompt_from_ask_through_the_bot_to_the_answer() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let provider = telemetry::otlp_provider_to("aap-test", &endpoint).expect("otlp exporter");
    // The platform's spans (targets `aap*`) and this test's go to the collector; the
    // exporter's own (tonic, h2) do not, or it would trace itself. One global filter: behind
    // per-layer filters (an EnvFilter on the log layer too) spans lost their OpenTelemetry
    // context here.
    let exported = tracing_subscriber::filter::Targets::new()
        .with_target("aap", tracing::Level::INFO)
        .with_target("telemetry", tracing::Level::INFO);
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("aap-test"));
    let logs = std::env::var("TEST_LOG")
        .is_ok_and(|v| !matches!(v.as_str(), "" | "0" | "false"))
        .then(|| tracing_subscriber::fmt::layer().with_test_writer());
    tracing_subscriber::registry().with(exported).with(otel).with(logs).init();
    let app = spawn_app().await;

    // The customer asks inside a trace of its own; the Bearer client sends its traceparent.
    let root = tracing::info_span!("test.ask");
    let root_context = root.context();
    let trace_id = root_context.span().span_context().trace_id().to_string();
    let root_span_id = root_context.span().span_context().span_id().to_string();
    let prompt = "How does one trace follow a prompt through the platform?";
    let stream =
        app.answers().ask(ask_text(prompt, &["chatgpt"])).instrument(root.clone()).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));

    // The bot, outside that trace: it polls, and submits with the task's trace context.
    let task = poll_task(&app, "chatgpt", "").await;
    let task_traceparent = task.trace_context.get("traceparent").cloned().unwrap_or_default();
    assert!(task_traceparent.contains(&trace_id), "task carries the asker's trace: {task_traceparent:?}");
    let submit = SubmitRequest {
        evaluation_id: task.evaluation_id,
        response_text: "Through traceparent headers".into(),
        response_markdown: "Through `traceparent` headers".into(),
        citations: vec![citation("https://www.w3.org/TR/trace-context/", "Trace Context")],
        captured_at: None,
        bot_id: "test-bot".into(),
        lease_id: String::new(),
        ..Default::default()
    };
    app.evaluations().submit(telemetry::request_with_context(submit, &task.trace_context)).await.expect("submit");

    let events = waiting.await.expect("stream task");
    assert!(
        events.iter().any(|e| matches!(e, Event::Answer(a) if a.response_text == "Through traceparent headers")),
        "the answer reaches the stream: {events:?}"
    );
    assert!(matches!(events.last(), Some(Event::Completed(c)) if c.answered == 1), "{events:?}");
    drop(root);

    // Spans end as their work ends (the Ask span with its stream): flush until all arrived.
    let wanted = [
        "test.ask",
        "aap.v1.AnswersService/Ask",
        "follow",
        "schedule",
        "task.claimed",
        "aap.v1.EvaluationService/Submit",
        "submit",
        "ingest",
    ];
    let mut spans = Vec::new();
    for _ in 0..100 {
        // The flush blocks until the export is done, and the exporter's channel runs on this
        // runtime: flush from a blocking thread.
        let flushing = provider.clone();
        tokio::task::spawn_blocking(move || flushing.force_flush()).await.expect("flush task").expect("flush");
        spans = collector.spans();
        let in_trace: Vec<&str> =
            spans.iter().filter(|s| hex(&s.trace_id) == trace_id).map(|s| s.name.as_str()).collect();
        if wanted.iter().all(|w| in_trace.contains(w)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let in_trace = |name: &str| -> &Span {
        spans.iter().find(|s| s.name == name && hex(&s.trace_id) == trace_id).unwrap_or_else(|| {
            let seen: Vec<_> = spans.iter().map(|s| (s.name.as_str(), hex(&s.trace_id))).collect();
            panic!("no span {name:?} in trace {trace_id}; the collector saw {seen:?}")
        })
    };
    let ask = in_trace("aap.v1.AnswersService/Ask");
    let schedule = in_trace("schedule");
    let claimed = in_trace("task.claimed");
    let submit_request = in_trace("aap.v1.EvaluationService/Submit");
    let submit = in_trace("submit");
    let ingest = in_trace("ingest");
    in_trace("follow");

    // Each hop's parent is the span that handed the context on.
    assert_eq!(hex(&ask.parent_span_id), root_span_id, "Ask is a child of the caller's span (gRPC metadata)");
    assert_eq!(schedule.parent_span_id, ask.span_id, "the scheduler resumes the Ask's stored context");
    assert_eq!(claimed.parent_span_id, ask.span_id, "the claim resumes the Ask's stored context");
    assert_eq!(submit_request.parent_span_id, ask.span_id, "Submit carries the task's context (gRPC metadata)");
    assert_eq!(submit.parent_span_id, submit_request.span_id, "the handler runs in the request span");
    assert_eq!(ingest.parent_span_id, submit.span_id, "the ingest resumes the result's context (NATS headers)");

    // The bot's poll was not part of the asker's trace: the claim joined it through the
    // evaluation's stored context, and links back to the poll that made it.
    let linked: Vec<&Span> = claimed
        .links
        .iter()
        .filter_map(|l| spans.iter().find(|s| s.span_id == l.span_id && s.trace_id == l.trace_id))
        .collect();
    assert!(
        linked.iter().any(|s| s.name == "poll" && s.trace_id != ask.trace_id),
        "task.claimed links to the bot's poll in the poll's own trace: {linked:?}"
    );
    let poll = linked.iter().find(|s| s.name == "poll").expect("linked poll");
    assert!(
        spans.iter().any(|s| s.name == "aap.v1.EvaluationService/Poll" && s.span_id == poll.parent_span_id),
        "the poll ran in its gRPC request span"
    );

    // A seed bot on the HTTP API that forwards a trace context joins that trace too.
    let (http_trace, http_parent) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let reply = reqwest::Client::new()
        .post(format!("{}/evaluations/api/v1/poll", app.http_url))
        .bearer_auth(BOT)
        .header("traceparent", format!("00-{http_trace}-{http_parent}-01"))
        .json(&serde_json::json!({"assistant_name": "ChatGPT", "plan_name": "Plus"}))
        .send()
        .await
        .expect("seed poll");
    assert!(reply.status().is_success(), "{reply:?}");
    let mut http_span = None;
    for _ in 0..100 {
        let flushing = provider.clone();
        tokio::task::spawn_blocking(move || flushing.force_flush()).await.expect("flush task").expect("flush");
        http_span = collector
            .spans()
            .into_iter()
            .find(|s| s.name == "POST /evaluations/api/v1/poll" && hex(&s.trace_id) == http_trace);
        if http_span.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let http_span = http_span.expect("the seed HTTP request's span is in the caller's trace");
    assert_eq!(hex(&http_span.parent_span_id), http_parent, "a child of the caller's span (traceparent header)");

    app.platform.shutdown().await.expect("platform stops");
    provider.shutdown().expect("exporter shuts down");
}
