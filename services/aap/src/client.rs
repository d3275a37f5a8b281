//! The customer side of `aap ask` and `aap watch`: streams a prompt's events and prints each
//! assistant's progress, answer and citations as they arrive.

use std::io::Write;
use std::time::Instant;

use aap_proto::v1::answer_event::Event;
use aap_proto::v1::answers_service_client::AnswersServiceClient;
use aap_proto::v1::{Answer, AnswerEvent, EvaluationState, MatchKind};
use anyhow::Context as _;
use futures::{Stream, StreamExt};
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// An AnswersService client that sends a bearer token and the trace context.
pub type Client = AnswersServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` and the current trace context to every call.
#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let mut request = aap_platform::telemetry::inject_grpc_context(request)?;
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
}

impl Bearer {
    pub fn new(token: &str) -> anyhow::Result<Bearer> {
        Ok(Bearer(format!("Bearer {token}").parse().context("token is not valid in a header")?))
    }
}

/// Connects to the platform's gRPC endpoint.
pub async fn connect(server: &str, token: &str) -> anyhow::Result<Client> {
    let channel = Channel::from_shared(server.to_owned())
        .context("server address")?
        .connect()
        .await
        .with_context(|| format!("cannot reach {server}"))?;
    Ok(AnswersServiceClient::with_interceptor(channel, Bearer::new(token)?))
}

fn label(assistant: &str, plan: &str) -> String {
    format!("[{assistant}/{plan}]")
}

fn print_answer(out: &mut impl Write, how: &str, answer: &Answer, started: Instant) -> std::io::Result<()> {
    let model = answer.capture.as_ref().map(|c| c.model.as_str()).filter(|m| !m.is_empty());
    let model = model.map(|m| format!(", {m}")).unwrap_or_default();
    if answer.kind == aap_proto::v1::AnswerKind::NoOverview as i32 {
        writeln!(
            out,
            "{} {how} after {:.1}s: the search shows no AI Overview",
            label(&answer.assistant, &answer.plan),
            started.elapsed().as_secs_f64()
        )?;
        return Ok(());
    }
    writeln!(
        out,
        "{} {how} after {:.1}s ({} citations{model})",
        label(&answer.assistant, &answer.plan),
        started.elapsed().as_secs_f64(),
        answer.citations.len()
    )?;
    for line in answer.response_markdown.lines() {
        writeln!(out, "    {line}")?;
    }
    for c in &answer.citations {
        let listed = if c.kind == aap_proto::v1::CitationKind::Listed as i32 { " [listed only]" } else { "" };
        writeln!(out, "    [{}] {} <{}> ({}){listed}", c.position, c.title, c.url, c.domain)?;
    }
    Ok(())
}

/// Prints a stream's events as they arrive; returns the number of targets that failed.
pub async fn print_events(
    mut events: impl Stream<Item = Result<AnswerEvent, tonic::Status>> + Unpin,
    out: &mut impl Write,
) -> anyhow::Result<u32> {
    let started = Instant::now();
    while let Some(event) = events.next().await {
        let Some(event) = event.context("stream broke")?.event else { continue };
        match event {
            Event::Matched(m) => {
                let how = match MatchKind::try_from(m.r#match) {
                    Ok(MatchKind::Exact) => "asked before (exact match)".to_owned(),
                    Ok(MatchKind::Similar) => format!("similar to a stored prompt (similarity {:.3})", m.similarity),
                    Ok(MatchKind::New) => "new".to_owned(),
                    Ok(MatchKind::ById) => "by id".to_owned(),
                    _ => "matched".to_owned(),
                };
                writeln!(out, "prompt {}: {how}: {:?}", m.prompt_id, m.prompt_text)?;
            }
            Event::Suggestions(s) => {
                writeln!(
                    out,
                    "similar prompts already answered (ask with --prompt-id to take one, or --policy force-new):"
                )?;
                for s in s.suggestions {
                    writeln!(
                        out,
                        "    prompt {} similarity {:.3} answered by [{}]: {:?}",
                        s.prompt_id,
                        s.similarity,
                        s.answered_assistants.join(", "),
                        s.prompt_text
                    )?;
                }
            }
            Event::Scheduled(s) => {
                writeln!(out, "{} scheduled as evaluation {}", label(&s.assistant, &s.plan), s.evaluation_id)?;
            }
            Event::Progress(p) => {
                let state = match EvaluationState::try_from(p.state) {
                    Ok(EvaluationState::Pending) => "pending".to_owned(),
                    Ok(EvaluationState::Queued) => "waiting for a bot".to_owned(),
                    Ok(EvaluationState::Claimed) => format!("a bot is asking (attempt {})", p.attempt),
                    Ok(EvaluationState::Submitted) => "answer submitted, storing".to_owned(),
                    _ => "in progress".to_owned(),
                };
                writeln!(out, "{} {state} ({:.1}s)", label(&p.assistant, &p.plan), started.elapsed().as_secs_f64())?;
            }
            Event::Cached(a) => print_answer(out, "stored answer", &a, started)?,
            Event::Answer(a) => print_answer(out, "answered", &a, started)?,
            Event::Failed(f) => {
                let next = if f.will_retry { "will retry" } else { "gave up" };
                writeln!(out, "{} failed ({next}): {}", label(&f.assistant, &f.plan), f.reason)?;
            }
            Event::Completed(c) => {
                writeln!(
                    out,
                    "completed in {:.1}s: {} answered, {} failed",
                    started.elapsed().as_secs_f64(),
                    c.answered,
                    c.failed
                )?;
                return Ok(c.failed);
            }
        }
        out.flush()?;
    }
    anyhow::bail!("the stream ended before it completed")
}
