//! The customer side of `aap ask` and `aap watch`: streams a prompt's events and prints each
//! assistant's progress, answer and citations as they arrive.

use std::collections::HashMap;
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
    /// `token` as [`aap_proto::token::header_token`] reads it: less the white space around it
    /// (a token read from a file or a secret often ends in a line break or CRLF), and refused,
    /// with why but never the token, when empty or when no header can carry it.
    pub fn new(token: &str) -> anyhow::Result<Bearer> {
        let header =
            aap_proto::token::bearer_header(token).map_err(|problem| anyhow::anyhow!("the token {problem}"))?;
        Ok(Bearer(header))
    }
}

/// The TLS flags of every client command (`aap ask`, `aap watch`, `aap token`).
#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    /// CA certificates (PEM) an `https://` server's certificate must chain to (the system's
    /// when absent).
    #[arg(long, env = "AAP_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
    /// Client certificate (PEM) for a platform that requires one (mutual TLS).
    #[arg(long, env = "AAP_CLIENT_CERT", requires = "client_key")]
    client_cert: Option<std::path::PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, env = "AAP_CLIENT_KEY", requires = "client_cert")]
    client_key: Option<std::path::PathBuf>,
}

impl TlsArgs {
    pub fn client_tls(&self) -> aap_tls::ClientTls {
        aap_tls::ClientTls {
            ca_cert: self.ca_cert.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
        }
    }
}

/// The token given on the command line or in the environment, else the dev token `key` of
/// `aap dev`'s `<data_dir>/dev.env`.
pub fn token_or_dev(token: &Option<String>, data_dir: &std::path::Path, key: &str) -> anyhow::Result<String> {
    match token {
        Some(token) => Ok(token.clone()),
        None => {
            crate::dev::read_dev_token(data_dir, key).with_context(|| format!("no token: set {key} or start `aap dev`"))
        }
    }
}

/// Where a command finds the platform when neither `--server` nor `AAP_SERVER` says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:50051";

/// The server given on the command line or in the environment, else the one `aap dev` wrote to
/// `<data_dir>/dev.env` (it listens where `--grpc-addr` said), else [`DEFAULT_SERVER`].
pub fn server_or_dev(server: &Option<String>, data_dir: &std::path::Path) -> String {
    server
        .clone()
        .or_else(|| crate::dev::read_dev_token(data_dir, "AAP_SERVER"))
        .unwrap_or_else(|| DEFAULT_SERVER.to_owned())
}

/// A channel to the platform's gRPC endpoint: over TLS when `server` is `https://`, trusting
/// and presenting what `tls` says.
pub async fn channel(server: &str, tls: &aap_tls::ClientTls) -> anyhow::Result<Channel> {
    let endpoint = Channel::from_shared(server.to_owned()).context("server address")?;
    tls.endpoint(endpoint).context("tls")?.connect().await.with_context(|| format!("cannot reach {server}"))
}

/// Connects to the platform's gRPC endpoint (see [`channel`]).
pub async fn connect(server: &str, token: &str, tls: &aap_tls::ClientTls) -> anyhow::Result<Client> {
    Ok(AnswersServiceClient::with_interceptor(channel(server, tls).await?, Bearer::new(token)?))
}

/// Near prompts the guard held apart, with why.
fn print_related(out: &mut impl Write, related: &[aap_proto::v1::RelatedPrompt]) -> std::io::Result<()> {
    if related.is_empty() {
        return Ok(());
    }
    writeln!(out, "related, not the same question:")?;
    for r in related {
        writeln!(out, "    prompt {} similarity {:.3}, {}: {:?}", r.prompt_id, r.similarity, r.reason, r.prompt_text)?;
    }
    Ok(())
}

/// A target as written on the command line: `id` or `id:plan`.
pub fn parse_target(raw: &str) -> aap_proto::v1::Target {
    let (assistant, plan) = raw.split_once(':').unwrap_or((raw, ""));
    aap_proto::v1::Target { assistant: assistant.to_owned(), plan: plan.to_owned() }
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
        let found = match aap_proto::v1::CitationOrigin::try_from(c.found_in) {
            Ok(aap_proto::v1::CitationOrigin::Stream) => " [stream only]",
            _ => "",
        };
        writeln!(out, "    [{}] {} <{}> ({}){listed}{found}", c.position, c.title, c.url, c.domain)?;
    }
    if !answer.search_queries.is_empty() {
        writeln!(out, "    searched: {}", answer.search_queries.join(" | "))?;
    }
    for p in &answer.products {
        let price = if p.price.is_empty() { String::new() } else { format!(" {}", p.price) };
        let merchant = if p.merchant.is_empty() { String::new() } else { format!(" at {}", p.merchant) };
        let url = if p.url.is_empty() { String::new() } else { format!(" <{}>", p.url) };
        writeln!(out, "    product {}: {}{price}{merchant}{url}", p.position, p.name)?;
    }
    if let Some(capture) = answer.capture.as_ref() {
        if capture.cut_short {
            writeln!(out, "    cut short: the assistant stopped at its length limit (Continue not pressed)")?;
        }
        if capture.model_fallback {
            writeln!(
                out,
                "    model fallback: the plan's model was limited; another model answered (asked again on the next Ask)"
            )?;
        }
        if !capture.missing_roles.is_empty() || capture.read_by_fallback {
            let fallback = if capture.read_by_fallback { "; text read by fallback" } else { "" };
            writeln!(
                out,
                "    read with confidence {:.1} (missing: {}{fallback})",
                capture.confidence,
                capture.missing_roles.join(", ")
            )?;
        }
    }
    Ok(())
}

/// The last `max` characters of `text` on one line, "…" in front when cut.
fn tail(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let count = flat.chars().count();
    if count <= max {
        return flat;
    }
    let cut: String = flat.chars().skip(count - max).collect();
    format!("…{}", cut.trim_start())
}

/// Most characters of the text so far one `typing` line shows.
const TYPED_CHARS: usize = 100;

/// What a partial adds to the text a target had typed before, on one line: the new words when
/// the text grew at its end (`+ …`), else its tail (the page re-rendered, or it is the first).
fn typed_line(before: Option<&str>, now: &str) -> String {
    match before.and_then(|before| now.strip_prefix(before)) {
        Some(added) if !added.trim().is_empty() => format!("+ {}", tail(added, TYPED_CHARS)),
        _ => tail(now, TYPED_CHARS),
    }
}

/// Prints a stream's events as they arrive; returns the number of targets that failed.
pub async fn print_events(
    mut events: impl Stream<Item = Result<AnswerEvent, tonic::Status>> + Unpin,
    out: &mut impl Write,
) -> anyhow::Result<u32> {
    let started = Instant::now();
    // The text so far of every target typing now: each partial holds the whole of it.
    let mut typed: HashMap<String, String> = HashMap::new();
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
                print_related(out, &m.related)?;
            }
            Event::Suggestions(s) => {
                writeln!(
                    out,
                    "similar prompts already answered (ask with --prompt-id to take one, or --policy force-new):"
                )?;
                for s in &s.suggestions {
                    writeln!(
                        out,
                        "    prompt {} similarity {:.3} answered by [{}]: {:?}",
                        s.prompt_id,
                        s.similarity,
                        s.answered_assistants.join(", "),
                        s.prompt_text
                    )?;
                }
                print_related(out, &s.related)?;
            }
            Event::Scheduled(s) => {
                writeln!(out, "{} scheduled as evaluation {}", label(&s.assistant, &s.plan), s.evaluation_id)?;
            }
            Event::Progress(p) => {
                let state = match EvaluationState::try_from(p.state) {
                    Ok(EvaluationState::Pending) => "pending".to_owned(),
                    Ok(EvaluationState::Queued) => "waiting for a bot".to_owned(),
                    Ok(EvaluationState::Claimed) if !p.waiting.is_empty() => {
                        format!(
                            "a bot holds it and waits (attempt {}): {}",
                            p.attempt,
                            crate::accounts_cmd::shown(&p.waiting)
                        )
                    }
                    Ok(EvaluationState::Claimed) => format!("a bot is asking (attempt {})", p.attempt),
                    Ok(EvaluationState::Submitted) => "answer submitted, storing".to_owned(),
                    _ => "in progress".to_owned(),
                };
                writeln!(out, "{} {state} ({:.1}s)", label(&p.assistant, &p.plan), started.elapsed().as_secs_f64())?;
            }
            Event::Partial(p) => {
                let target = label(&p.assistant, &p.plan);
                let line = typed_line(typed.get(&target).map(String::as_str), &p.text);
                writeln!(
                    out,
                    "{target} typing ({:.1}s, {} chars so far): {line}",
                    started.elapsed().as_secs_f64(),
                    p.text.chars().count(),
                )?;
                typed.insert(target, p.text);
            }
            Event::Cached(a) if a.stale => print_answer(out, "stored answer (stale: a refresh follows)", &a, started)?,
            Event::Cached(a) => print_answer(out, "stored answer", &a, started)?,
            Event::Answer(a) => {
                typed.remove(&label(&a.assistant, &a.plan));
                print_answer(out, "answered", &a, started)?;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use aap_proto::v1::{Capture, Citation, CitationKind, CitationOrigin, Completed, PartialAnswer, Product};

    #[test]
    fn the_server_is_the_flag_else_dev_env_else_the_default() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        assert_eq!(server_or_dev(&None, dir.path()), DEFAULT_SERVER, "no dev.env");
        std::fs::write(
            dir.path().join("dev.env"),
            "export AAP_CUSTOMER_TOKEN=cust-x\nexport AAP_SERVER=http://127.0.0.1:51051\n",
        )?;
        assert_eq!(server_or_dev(&None, dir.path()), "http://127.0.0.1:51051", "aap dev's own address");
        let given = Some("https://platform.example:443".to_owned());
        assert_eq!(server_or_dev(&given, dir.path()), "https://platform.example:443", "the flag wins");
        Ok(())
    }

    #[tokio::test]
    async fn the_answer_grows_on_the_terminal_while_the_assistant_types() -> anyhow::Result<()> {
        let partial = |text: &str| {
            Event::Partial(PartialAnswer {
                evaluation_id: 7,
                assistant: "chatgpt".into(),
                plan: "any".into(),
                text: text.into(),
            })
        };
        let long = format!("The best desks are {}", "very ".repeat(40));
        let events = [
            partial("The best"),
            partial("The best desks are"),
            partial(&long),
            partial("Best desks:\n\n1. Flexispot"),
            Event::Answer(Answer {
                assistant: "chatgpt".into(),
                plan: "any".into(),
                response_text: "Best desks: 1. Flexispot E7".into(),
                ..Answer::default()
            }),
            Event::Completed(Completed { prompt_id: 1, answered: 1, failed: 0 }),
        ];
        let stream = futures::stream::iter(events.map(|e| Ok(AnswerEvent { event: Some(e) })));
        let mut out = Vec::new();
        assert_eq!(print_events(stream, &mut out).await?, 0);
        let text = String::from_utf8(out)?;
        let typing: Vec<&str> = text.lines().filter(|l| l.contains(" typing (")).collect();
        assert_eq!(typing.len(), 4, "{text}");
        // The first shows the text so far, then what each adds, on one line; a text that was
        // re-rendered (not an extension) shows its tail again.
        assert!(typing[0].starts_with("[chatgpt/any] typing (") && typing[0].ends_with("8 chars so far): The best"));
        assert!(typing[1].ends_with("18 chars so far): + desks are"), "{text}");
        assert!(typing[2].ends_with(&format!(
            "{} chars so far): + …{}",
            long.chars().count(),
            "very ".repeat(20).trim()
        )));
        assert!(typing[3].ends_with("chars so far): Best desks: 1. Flexispot"), "{text}");
        assert!(text.contains("[chatgpt/any] answered after"), "{text}");
        Ok(())
    }

    #[test]
    fn an_answer_prints_its_sources_searches_products_and_how_it_was_read() -> anyhow::Result<()> {
        let answer = Answer {
            assistant: "chatgpt".into(),
            plan: "any".into(),
            response_markdown: "Buy the **Air**.".into(),
            citations: vec![
                Citation {
                    url: "https://a.example/1".into(),
                    title: "A".into(),
                    domain: "a.example".into(),
                    position: 1,
                    kind: CitationKind::Inline as i32,
                    found_in: CitationOrigin::Both as i32,
                },
                Citation {
                    url: "https://b.example/2".into(),
                    title: "B".into(),
                    domain: "b.example".into(),
                    position: 2,
                    kind: CitationKind::Listed as i32,
                    found_in: CitationOrigin::Stream as i32,
                },
            ],
            search_queries: vec!["best laptops 2026".into(), "macbook air review".into()],
            products: vec![Product {
                name: "MacBook Air".into(),
                url: "https://shop.example/air".into(),
                price: "$999".into(),
                merchant: "Shop".into(),
                position: 1,
            }],
            capture: Some(Capture {
                model: "gpt-5".into(),
                missing_roles: vec!["turn".into()],
                read_by_fallback: true,
                confidence: 0.6,
                cut_short: true,
                model_fallback: true,
                ..Capture::default()
            }),
            ..Answer::default()
        };
        let mut out = Vec::new();
        print_answer(&mut out, "answered", &answer, Instant::now())?;
        let text = String::from_utf8(out)?;
        assert!(text.contains("[chatgpt/any] answered after"), "{text}");
        assert!(text.contains("(2 citations, gpt-5)"), "{text}");
        assert!(text.contains("    [1] A <https://a.example/1> (a.example)\n"), "{text}");
        assert!(text.contains("    [2] B <https://b.example/2> (b.example) [listed only] [stream only]\n"), "{text}");
        assert!(text.contains("    searched: best laptops 2026 | macbook air review\n"), "{text}");
        assert!(text.contains("    product 1: MacBook Air $999 at Shop <https://shop.example/air>\n"), "{text}");
        assert!(text.contains("    read with confidence 0.6 (missing: turn; text read by fallback)\n"), "{text}");
        assert!(text.contains("    cut short: the assistant stopped at its length limit"), "{text}");
        assert!(text.contains("    model fallback: the plan's model was limited; another model answered (asked again on the next Ask)\n"), "{text}");
        Ok(())
    }
}
