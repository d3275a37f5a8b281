//! The load: closed-loop customers over gRPC, each on its own TCP connection, asking what a
//! scenario asks until its time is up.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aap_proto::v1::answer_event::Event;
use aap_proto::v1::answers_service_client::AnswersServiceClient;
use aap_proto::v1::ask_request::Query;
use aap_proto::v1::{AskRequest, SimilarPolicy, Target, WatchRequest};
use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

pub use aap_chaos::Bearer;

use crate::lean::Lean;
use crate::stats::{median, percentile};

pub type Answers = AnswersServiceClient<InterceptedService<Channel, Bearer>>;

/// A client on a TCP connection of its own.
pub async fn connect(url: &str, bearer: &Bearer) -> anyhow::Result<Answers> {
    let channel = Endpoint::from_shared(url.to_owned())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .with_context(|| format!("connect {url}"))?;
    Ok(AnswersServiceClient::with_interceptor(channel, bearer.clone()).max_decoding_message_size(64 * 1024 * 1024))
}

/// `count` clients, each on a TCP connection of its own.
async fn connect_each(url: &str, bearer: &Bearer, count: usize) -> anyhow::Result<Vec<Answers>> {
    let mut clients = Vec::with_capacity(count);
    for _ in 0..count {
        clients.push(connect(url, bearer).await?);
    }
    Ok(clients)
}

/// The prompt the exact-hit scenario asks, answered before it starts.
pub const EXACT_PROMPT: &str = "What are the best laptops under $1,000?";

/// The `index`th text of the similar scenario: close to [`EXACT_PROMPT`] in meaning, never the
/// same text twice, so every Ask embeds.
pub fn similar_text(index: usize) -> String {
    const FOR: &[&str] =
        &["students", "gamers", "designers", "travel", "coding", "office work", "video editing", "writers", "kids"];
    // Each text is new (no exact hit) and asks the stored prompt's question, so the near-miss
    // guard lets it through: the index is spelled in syllables, since another number would be
    // another question, and single letters make names the guard holds apart ("vw", "hp").
    const SYLLABLES: [&str; 16] =
        ["ka", "lo", "mi", "nu", "pe", "ri", "so", "tu", "va", "fe", "zo", "bi", "du", "ga", "ho", "je"];
    let mut tag = String::new();
    let mut n = index;
    loop {
        tag.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
        if n == 0 {
            break;
        }
    }
    format!("Which are the best laptops under $1,000 for {} (variant {tag})?", FOR[index % FOR.len()])
}

fn target(assistant: &str, plan: &str) -> Target {
    Target { assistant: assistant.to_owned(), plan: plan.to_owned() }
}

/// Calls of one closed-loop run.
#[derive(Debug, Default)]
pub struct Run {
    pub ok: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Run {
    pub fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    pub fn p50(&mut self) -> Duration {
        median(&mut self.latencies)
    }
    pub fn p99(&mut self) -> Duration {
        percentile(&mut self.latencies, 99.0)
    }

    /// The calls of several runs as one (their latencies together, their time summed).
    pub fn pooled(runs: Vec<Run>) -> Run {
        runs.into_iter().fold(Run::default(), |mut all, run| {
            all.ok += run.ok;
            all.errors += run.errors;
            all.first_error = all.first_error.or(run.first_error);
            all.elapsed += run.elapsed;
            all.latencies.extend(run.latencies);
            all
        })
    }
}

/// `callers` customers over `connections` connections (one each when as many), calling `call`
/// back to back for `duration` (with the lean client: lean.rs says why).
pub async fn closed_loop<F, Fut>(
    url: &str,
    bearer: &Bearer,
    callers: usize,
    connections: usize,
    duration: Duration,
    call: F,
) -> anyhow::Result<Run>
where
    F: Fn(Lean, usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), String>> + Send,
{
    let connections = connections.clamp(1, callers.max(1));
    let mut shared = Vec::with_capacity(connections);
    for _ in 0..connections {
        shared.push(Lean::connect(url, bearer).await?);
    }
    // Callers share the connections in turn, their calls multiplexed as a gRPC channel's are.
    let clients: Vec<Lean> = (0..callers).map(|index| shared[index % connections].clone()).collect();
    let counter = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for client in clients {
        let (call, counter) = (call.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut run = Run::default();
            while Instant::now() < deadline {
                let index = counter.fetch_add(1, Ordering::Relaxed);
                let one = Instant::now();
                // No call may hang the run.
                match tokio::time::timeout(Duration::from_secs(30), call(client.clone(), index)).await {
                    Ok(Ok(())) => {
                        run.ok += 1;
                        run.latencies.push(one.elapsed());
                    }
                    Ok(Err(error)) => {
                        run.errors += 1;
                        run.first_error.get_or_insert(error);
                    }
                    Err(_) => {
                        run.errors += 1;
                        run.first_error.get_or_insert("no end within 30 s".to_owned());
                    }
                }
            }
            run
        }));
    }
    let mut total = Run::default();
    for task in tasks {
        let run = task.await?;
        total.ok += run.ok;
        total.errors += run.errors;
        total.latencies.extend(run.latencies);
        if total.first_error.is_none() {
            total.first_error = run.first_error;
        }
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Every event of one Ask, to its end.
async fn ask_to_end(mut client: Answers, request: AskRequest) -> Result<Vec<Event>, String> {
    let mut stream = client.ask(request).await.map_err(|s| format!("{:?}: {}", s.code(), s.message()))?.into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        let event = event.map_err(|s| format!("stream broke: {:?}: {}", s.code(), s.message()))?;
        if let Some(event) = event.event.and_then(|e| e.event) {
            events.push(event);
        }
    }
    Ok(events)
}

/// Asks the answered prompt again; a call counts when its stored answer came back.
pub async fn exact_hit(client: Lean, _index: usize) -> Result<(), String> {
    let request = AskRequest {
        query: Some(Query::Prompt(EXACT_PROMPT.to_owned())),
        targets: vec![target("chatgpt", "")],
        policy: SimilarPolicy::Suggest as i32,
        min_similarity: None,
        include_html: false,
        ..Default::default()
    };
    let events = client.ask(&request).await?;
    let cached = events.iter().any(|e| matches!(e, Event::Cached(_)));
    let completed = events.iter().any(|e| matches!(e, Event::Completed(_)));
    if cached && completed { Ok(()) } else { Err(format!("no cached answer and completed event: {events:?}")) }
}

/// Asks a new text close to the answered prompt; a call counts when it was suggested.
pub async fn similar(client: Lean, index: usize) -> Result<(), String> {
    let request = AskRequest {
        query: Some(Query::Prompt(similar_text(index))),
        targets: vec![target("chatgpt", "")],
        policy: SimilarPolicy::Suggest as i32,
        min_similarity: Some(0.5),
        include_html: false,
        ..Default::default()
    };
    let events = client.ask(&request).await?;
    match events.first() {
        Some(Event::Suggestions(s)) if !s.suggestions.is_empty() => Ok(()),
        other => Err(format!("expected suggestions, got {other:?}")),
    }
}

/// Asks a prompt until it answered; returns the answered prompt's id.
pub async fn ask_answered(client: Answers, text: &str, assistant: &str) -> anyhow::Result<i64> {
    let request = AskRequest {
        query: Some(Query::Prompt(text.to_owned())),
        targets: vec![target(assistant, "")],
        policy: SimilarPolicy::ForceNew as i32,
        min_similarity: None,
        include_html: false,
        ..Default::default()
    };
    let events = tokio::time::timeout(Duration::from_secs(120), ask_to_end(client, request))
        .await?
        .map_err(anyhow::Error::msg)?;
    let prompt_id = events.iter().find_map(|e| match e {
        Event::Matched(m) => Some(m.prompt_id),
        _ => None,
    });
    if !events.iter().any(|e| matches!(e, Event::Answer(_) | Event::Cached(_))) {
        bail!("{text:?} was not answered: {events:?}");
    }
    prompt_id.context("no matched event")
}

/// The pipeline under load: new prompts of every assistant answered by the synthetic bots.
#[derive(Debug, Default)]
pub struct Pipeline {
    pub asks: usize,
    /// Answer events received within the measured window.
    pub answered_in_window: usize,
    pub answered: usize,
    /// Answer events of an evaluation whose answer the same stream had already sent.
    pub duplicates: usize,
    pub first_duplicate: Option<String>,
    pub failed: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub window: Duration,
    /// From the Ask to each answer.
    pub ask_to_answer: Vec<Duration>,
    /// When each answer event arrived, and its callback latency: from the bot's capture (just
    /// before its submit) to the answer on the customer's stream. Its times say where in the run
    /// the slow ones were (`--run-dir`'s paced-timeline.tsv).
    pub timeline: Vec<(Instant, Duration)>,
}

/// What the pipeline's Asks ask.
#[derive(Clone)]
pub enum Prompts {
    /// New texts: each Ask stores its prompt, so the model embeds each.
    New,
    /// Prompts already stored (by id), each asked once: no embedding on the way.
    Stored(Arc<Vec<i64>>),
}

pub async fn pipeline(
    url: &str,
    bearer: &Bearer,
    callers: usize,
    duration: Duration,
    run_tag: &str,
    prompts: Prompts,
) -> anyhow::Result<Pipeline> {
    let clients = connect_each(url, bearer, callers).await?;
    let started = Instant::now();
    let deadline = started + duration;
    let counter = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for client in clients {
        let (counter, run_tag, prompts) = (counter.clone(), run_tag.to_owned(), prompts.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Pipeline::default();
            while Instant::now() < deadline {
                let index = counter.fetch_add(1, Ordering::Relaxed);
                let Some(request) = pipeline_ask(&prompts, &run_tag, index, &mut out) else { break };
                follow_ask(client.clone(), request, deadline, &mut out).await;
            }
            out
        }));
    }
    let mut total = Pipeline { window: duration, ..Pipeline::default() };
    for task in tasks {
        total.add(task.await?);
    }
    Ok(total)
}

/// The pipeline at a set pace (open loop): an Ask of all four assistants every
/// `4 / evaluations_per_second` seconds, whether or not the ones before it are answered, spread
/// over `connections` connections. What an Ask waits for is the platform's own latency, not
/// the queue a closed loop at saturation builds up.
pub async fn paced(
    url: &str,
    bearer: &Bearer,
    connections: usize,
    evaluations_per_second: f64,
    duration: Duration,
    run_tag: &str,
    prompts: Prompts,
) -> anyhow::Result<Pipeline> {
    let clients = connect_each(url, bearer, connections.max(1)).await?;
    let asks_per_second = (evaluations_per_second / aap_chaos::stack::ASSISTANTS.len() as f64).max(0.1);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / asks_per_second));
    // Asks missed while the client was late are sent at once: the pace is kept on average.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let deadline = Instant::now() + duration;
    let mut tasks = tokio::task::JoinSet::new();
    let mut total = Pipeline { window: duration, ..Pipeline::default() };
    for index in 0.. {
        ticks.tick().await;
        if Instant::now() >= deadline {
            break;
        }
        let Some(request) = pipeline_ask(&prompts, run_tag, index, &mut total) else { break };
        let client = clients[index % clients.len()].clone();
        tasks.spawn(async move {
            let mut out = Pipeline::default();
            follow_ask(client, request, deadline, &mut out).await;
            out
        });
    }
    while let Some(part) = tasks.join_next().await {
        total.add(part?);
    }
    Ok(total)
}

/// What a pipeline run's row reports.
pub struct PipelineFigures {
    /// Answers received within the window, a second.
    pub per_second: f64,
    pub callback_p50: Duration,
    pub callback_p99: Duration,
    pub ask_p50: Duration,
    pub ask_p99: Duration,
}

impl Pipeline {
    pub fn figures(&mut self) -> PipelineFigures {
        let mut callback: Vec<Duration> = self.timeline.iter().map(|(_, latency)| *latency).collect();
        PipelineFigures {
            per_second: self.answered_in_window as f64 / self.window.as_secs_f64(),
            callback_p50: median(&mut callback),
            callback_p99: percentile(&mut callback, 99.0),
            ask_p50: median(&mut self.ask_to_answer),
            ask_p99: percentile(&mut self.ask_to_answer, 99.0),
        }
    }

    pub fn add(&mut self, part: Pipeline) {
        self.asks += part.asks;
        self.answered_in_window += part.answered_in_window;
        self.answered += part.answered;
        self.duplicates += part.duplicates;
        if self.first_duplicate.is_none() {
            self.first_duplicate = part.first_duplicate;
        }
        self.failed += part.failed;
        self.errors += part.errors;
        self.ask_to_answer.extend(part.ask_to_answer);
        self.timeline.extend(part.timeline);
        if self.first_error.is_none() {
            self.first_error = part.first_error;
        }
    }
}

/// The `index`th Ask of a pipeline run: a new text, or the `index`th stored prompt (none when
/// they ran out, counted as an error).
fn pipeline_ask(prompts: &Prompts, run_tag: &str, index: usize, out: &mut Pipeline) -> Option<AskRequest> {
    let query = match prompts {
        Prompts::New => Query::Prompt(format!("load {run_tag} pipeline prompt {index}: which CRM fits team {index}?")),
        Prompts::Stored(ids) => match ids.get(index) {
            Some(id) => Query::PromptId(*id),
            None => {
                out.errors += 1;
                out.first_error.get_or_insert(format!("only {} stored prompts", ids.len()));
                return None;
            }
        },
    };
    Some(AskRequest {
        query: Some(query),
        targets: aap_chaos::stack::ASSISTANTS.iter().map(|a| target(a, "")).collect(),
        policy: SimilarPolicy::ForceNew as i32,
        min_similarity: None,
        include_html: false,
        ..Default::default()
    })
}

/// Asks and reads the stream to its end, counting its answers (those before `deadline` as in
/// the window) and how long each took.
pub async fn follow_ask(mut client: Answers, request: AskRequest, deadline: Instant, out: &mut Pipeline) {
    out.asks += 1;
    let asked = Instant::now();
    let mut stream = match client.ask(request).await {
        Ok(stream) => stream.into_inner(),
        Err(status) => {
            out.errors += 1;
            out.first_error.get_or_insert(format!("{:?}: {}", status.code(), status.message()));
            return;
        }
    };
    // The evaluations whose answer this stream has sent.
    let mut answered = std::collections::HashSet::new();
    loop {
        let next = match tokio::time::timeout(Duration::from_secs(60), stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                out.errors += 1;
                out.first_error.get_or_insert("no event for 60 s".to_owned());
                return;
            }
        };
        let event = match next {
            Some(Ok(event)) => event.event.and_then(|e| e.event),
            Some(Err(status)) => {
                out.errors += 1;
                out.first_error.get_or_insert(format!("stream broke: {}", status.message()));
                return;
            }
            None => return,
        };
        match event {
            Some(Event::Answer(answer)) => {
                let (now, received) = (chrono::Utc::now(), Instant::now());
                if !answered.insert(answer.evaluation_id) {
                    out.duplicates += 1;
                    out.first_duplicate.get_or_insert(format!(
                        "evaluation {} ({}, prompt {}) answered twice on one Ask stream, {:?} after the Ask",
                        answer.evaluation_id,
                        answer.assistant,
                        answer.prompt_id,
                        asked.elapsed()
                    ));
                    continue;
                }
                out.answered += 1;
                if received <= deadline {
                    out.answered_in_window += 1;
                }
                out.ask_to_answer.push(asked.elapsed());
                if let Some(at) = answer.captured_at {
                    let captured = chrono::DateTime::from_timestamp(at.seconds, at.nanos.max(0) as u32);
                    if let Some(captured) = captured {
                        out.timeline.push((received, (now - captured).to_std().unwrap_or_default()));
                    }
                }
            }
            Some(Event::Failed(failed)) if !failed.will_retry => out.failed += 1,
            _ => {}
        }
    }
}

/// Idle Watch streams on a prompt nothing answers.
pub struct Watches {
    /// Closing it ends every stream's task.
    pub stop: tokio::sync::watch::Sender<bool>,
    pub open: usize,
    pub opened_in: Duration,
    pub tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Streams per connection (below HTTP/2's usual limit of concurrent streams).
const STREAMS_PER_CONNECTION: usize = 100;

/// Opens `count` Watch streams on `prompt_id` (target `assistant`/`plan`) and waits until each
/// has its first progress event.
pub async fn open_watches(
    url: &str,
    bearer: &Bearer,
    prompt_id: i64,
    assistant: &str,
    plan: &str,
    count: usize,
) -> anyhow::Result<Watches> {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let opened = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(std::sync::Mutex::new(None::<String>));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let connections = count.div_ceil(STREAMS_PER_CONNECTION);
    for connection in 0..connections {
        let client = connect(url, bearer).await?;
        let streams = STREAMS_PER_CONNECTION.min(count - connection * STREAMS_PER_CONNECTION);
        for _ in 0..streams {
            let (mut client, mut stopped, opened, failed) =
                (client.clone(), stopped.clone(), opened.clone(), failed.clone());
            let request = WatchRequest { prompt_id, targets: vec![target(assistant, plan)], include_html: false };
            tasks.push(tokio::spawn(async move {
                let fail = |error: String| {
                    failed.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(error);
                };
                let mut stream = match client.watch(request).await {
                    Ok(stream) => stream.into_inner(),
                    Err(status) => return fail(format!("{:?}: {}", status.code(), status.message())),
                };
                let mut counted = false;
                loop {
                    tokio::select! {
                        next = stream.next() => match next {
                            Some(Ok(event)) => {
                                if !counted && matches!(event.event.and_then(|e| e.event), Some(Event::Progress(_))) {
                                    counted = true;
                                    opened.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Some(Err(status)) => return fail(format!("stream broke: {}", status.message())),
                            None => return fail("stream ended while waiting".to_owned()),
                        },
                        _ = stopped.changed() => return,
                    }
                }
            }));
        }
    }
    let limit = Duration::from_secs(120);
    while opened.load(Ordering::Relaxed) < count {
        if let Some(error) = failed.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            bail!("a Watch stream failed: {error}");
        }
        if started.elapsed() > limit {
            bail!("{} of {count} Watch streams open after {limit:?}", opened.load(Ordering::Relaxed));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Watches { stop, open: count, opened_in: started.elapsed(), tasks })
}

impl Watches {
    pub async fn close(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Asks `text` of `assistant` on `plan` (a plan no bot serves), leaves it waiting; returns the
/// prompt id once its evaluation is scheduled.
pub async fn ask_waiting(client: Answers, text: &str, assistant: &str, plan: &str) -> anyhow::Result<i64> {
    let request = AskRequest {
        query: Some(Query::Prompt(text.to_owned())),
        targets: vec![target(assistant, plan)],
        policy: SimilarPolicy::ForceNew as i32,
        min_similarity: None,
        include_html: false,
        ..Default::default()
    };
    let mut stream = client.clone().ask(request).await?.into_inner();
    let mut prompt_id = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(30), stream.next()).await? {
        match event?.event.and_then(|e| e.event) {
            Some(Event::Matched(m)) => prompt_id = Some(m.prompt_id),
            Some(Event::Scheduled(_)) => return prompt_id.context("scheduled before matched"),
            _ => {}
        }
    }
    bail!("the Ask of {text:?} ended before it was scheduled")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_similar_text_is_new_and_passes_the_near_miss_guard() {
        // A run of 10 s at 16 callers asks some 700 texts: 5,000 are tags of one to four
        // syllables (the letters that came before made "vw" at 593).
        let mut seen = std::collections::HashSet::new();
        for index in 0..5_000 {
            let text = similar_text(index);
            assert!(seen.insert(text.clone()), "{text} twice");
            if let Err(veto) = aap_answers::guard::check(&text, EXACT_PROMPT) {
                panic!("{text}: held apart from the stored prompt: {veto:?}");
            }
        }
    }
}
