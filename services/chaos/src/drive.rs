//! The customers: many concurrent Asks of new prompts, each read to its `completed` event; a
//! stream that breaks (its replica was killed) is resumed with `Watch(prompt_id)` on another
//! replica, as a customer would.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aap_proto::v1::answer_event::Event;
use aap_proto::v1::answers_service_client::AnswersServiceClient;
use aap_proto::v1::ask_request::Query;
use aap_proto::v1::{AskRequest, SimilarPolicy, Target, WatchRequest};
use futures::StreamExt as _;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use aap_chaos::Bearer;

type Answers = AnswersServiceClient<InterceptedService<Channel, Bearer>>;

/// What the run asks.
pub struct Plan {
    /// Prompt texts start with this, so the check finds the run's prompts.
    pub prefix: String,
    pub asks: usize,
    pub targets_per_ask: usize,
    pub concurrency: usize,
    /// How long one Ask (with its resumes) may take before it counts as stuck.
    pub ask_timeout: Duration,
}

impl Plan {
    /// The text and targets of Ask `index`: distinct texts, targets rotating over the assistants.
    pub fn ask(&self, index: usize) -> (String, Vec<String>) {
        let assistants = aap_chaos::stack::ASSISTANTS;
        let targets =
            (0..self.targets_per_ask).map(|k| assistants[(index + k) % assistants.len()].to_owned()).collect();
        (
            format!(
                "{} ask {index}: which {} suits team {} best?",
                self.prefix,
                TOPICS[index % TOPICS.len()],
                index * 7 + 3
            ),
            targets,
        )
    }
}

const TOPICS: &[&str] =
    &["CRM", "laptop", "heat pump", "e-bike", "password manager", "VPN", "standing desk", "note app", "router"];

/// The final word on one evaluation as the streams saw it.
#[derive(Debug, Clone)]
pub enum Final {
    Answered,
    Failed,
}

/// What one Ask saw, over the Ask stream and any Watch that resumed it.
#[derive(Debug, Default)]
pub struct AskOutcome {
    pub text: String,
    pub targets: Vec<String>,
    pub prompt_id: Option<i64>,
    /// Streams that broke before `completed` (each followed by a resume).
    pub broken: u32,
    /// Calls refused at open (the replica or its database down), retried.
    pub refused: u32,
    /// A stream reached `completed`.
    pub completed: bool,
    /// Targets the completing stream gave no final event for.
    pub missing_finals: Vec<String>,
    /// Per evaluation: its final event and its assistant.
    pub finals: HashMap<i64, (String, Final)>,
    /// Answer events beyond the first for one evaluation on one stream, or live answers of an
    /// evaluation on two streams.
    pub duplicate_events: u32,
    /// Answers whose text is not this prompt's synthetic answer for that assistant.
    pub wrong_answers: u32,
    /// From the Ask to each live answer event.
    pub latencies: Vec<Duration>,
    /// When the last final event came.
    pub finished_at: Option<Instant>,
    /// Why the Ask gave up, when it did.
    pub gave_up: Option<String>,
}

/// Drives the plan; `gate(index)` holds Ask `index` back until the chaos it waits for has begun.
pub async fn run(
    plan: Arc<Plan>,
    urls: Vec<String>,
    token: &str,
    started_asks: Arc<AtomicUsize>,
    gate: watch::Receiver<usize>,
    gate_at: Vec<usize>,
) -> anyhow::Result<Vec<AskOutcome>> {
    let bearer = Bearer::new(token)?;
    let clients: Vec<Answers> = urls
        .iter()
        .map(|url| {
            let channel = Channel::from_shared(url.clone())?.connect_timeout(Duration::from_secs(2)).connect_lazy();
            Ok(AnswersServiceClient::with_interceptor(channel, bearer.clone()))
        })
        .collect::<anyhow::Result<_>>()?;
    let clients = Arc::new(clients);
    let outcomes = futures::stream::iter(0..plan.asks)
        .map(|index| {
            let (plan, clients, started_asks, mut gate) =
                (plan.clone(), clients.clone(), started_asks.clone(), gate.clone());
            let needed = gate_at.iter().filter(|at| index >= **at).count();
            async move {
                let _ = gate.wait_for(|fired| *fired >= needed).await;
                started_asks.fetch_add(1, Ordering::Relaxed);
                ask_one(&plan, &clients, index).await
            }
        })
        .buffer_unordered(plan.concurrency)
        .collect()
        .await;
    Ok(outcomes)
}

/// One Ask, resumed with Watch on the next replica whenever its stream breaks.
async fn ask_one(plan: &Plan, clients: &[Answers], index: usize) -> AskOutcome {
    let (text, targets) = plan.ask(index);
    let started = Instant::now();
    let deadline = started + plan.ask_timeout;
    let mut outcome = AskOutcome { text: text.clone(), targets: targets.clone(), ..AskOutcome::default() };
    let mut replica = index % clients.len();
    let mut live_answered: HashMap<i64, u32> = HashMap::new();
    let proto_targets: Vec<Target> =
        targets.iter().map(|a| Target { assistant: a.clone(), plan: String::new() }).collect();
    loop {
        if Instant::now() > deadline {
            outcome.gave_up = Some(format!("no completed event within {:?}", plan.ask_timeout));
            return outcome;
        }
        let mut client = clients[replica].clone();
        let opened = match outcome.prompt_id {
            None => {
                let request = AskRequest {
                    query: Some(Query::Prompt(text.clone())),
                    targets: proto_targets.clone(),
                    policy: SimilarPolicy::ForceNew as i32,
                    min_similarity: None,
                    include_html: false,
                    ..Default::default()
                };
                tokio::time::timeout(Duration::from_secs(30), client.ask(request))
                    .await
                    .map(|r| r.map(|s| s.into_inner().map(|e| e.map(|e| e.event)).boxed()))
            }
            Some(prompt_id) => {
                let request = WatchRequest { prompt_id, targets: proto_targets.clone(), include_html: false };
                tokio::time::timeout(Duration::from_secs(30), client.watch(request))
                    .await
                    .map(|r| r.map(|s| s.into_inner().map(|e| e.map(|e| e.event)).boxed()))
            }
        };
        let mut stream = match opened {
            Ok(Ok(stream)) => stream,
            Ok(Err(_)) | Err(_) => {
                outcome.refused += 1;
                replica = (replica + 1) % clients.len();
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        // This stream's view: evaluations answered on it, targets with a final event on it.
        let mut answered_here: HashMap<i64, u32> = HashMap::new();
        let mut final_targets: Vec<String> = Vec::new();
        let ended = loop {
            let next = match tokio::time::timeout_at(deadline.into(), stream.next()).await {
                Ok(next) => next,
                Err(_) => break false,
            };
            let event = match next {
                Some(Ok(Some(event))) => event,
                Some(Ok(None)) => continue,
                Some(Err(_)) | None => break false,
            };
            let Some(event) = event.event else { continue };
            let (answer, live) = match event {
                Event::Matched(matched) => {
                    outcome.prompt_id = Some(matched.prompt_id);
                    continue;
                }
                Event::Answer(answer) => (answer, true),
                Event::Cached(answer) => (answer, false),
                Event::Failed(failed) if !failed.will_retry => {
                    final_targets.push(failed.assistant.clone());
                    outcome.finals.insert(failed.evaluation_id, (failed.assistant, Final::Failed));
                    outcome.finished_at = Some(Instant::now());
                    continue;
                }
                Event::Completed(_) => break true,
                _ => continue,
            };
            if answer.response_text != format!("synthetic answer from {} to: {text}", answer.assistant) {
                outcome.wrong_answers += 1;
            }
            let here = answered_here.entry(answer.evaluation_id).or_default();
            *here += 1;
            let mut duplicate = *here > 1;
            if live {
                // A live answer is pushed as it lands: twice, even on two streams, is twice.
                let seen = live_answered.entry(answer.evaluation_id).or_default();
                *seen += 1;
                duplicate |= *seen > 1;
                outcome.latencies.push(started.elapsed());
            }
            if duplicate {
                outcome.duplicate_events += 1;
            }
            final_targets.push(answer.assistant.clone());
            outcome.finals.insert(answer.evaluation_id, (answer.assistant, Final::Answered));
            outcome.finished_at = Some(Instant::now());
        };
        if ended {
            outcome.completed = true;
            outcome.missing_finals = targets.iter().filter(|t| !final_targets.contains(t)).cloned().collect();
            return outcome;
        }
        outcome.broken += 1;
        replica = (replica + 1) % clients.len();
    }
}
