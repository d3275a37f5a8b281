//! The JetStream side of evaluations: publishing tasks and results, pulling deliveries for
//! bots, and settling deliveries through their reply subjects.
//!
//! A delivery is settled (ack, nak, term, in-progress) by publishing to its reply subject,
//! which is stored with the claim: any gateway replica can settle a task another replica
//! handed out.

use std::collections::HashMap;
use std::time::Duration;

use aap_platform::assistants::plan_token;
use aap_platform::nats::{NatsError, Topology};
use async_nats::jetstream::{self, consumer::PullConsumer, context::PublishAckFuture};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::sync::Arc;

use tokio::sync::{Mutex, Notify, OnceCell};

use crate::model::{ResultMessage, TaskMessage};
use crate::store::{AnswerRow, EvaluationRow};

/// How long JetStream waits before redelivering an unsettled task on its own. The database
/// claim (with heartbeats and the reaper) is the real clock; this backs it up. It is short so
/// that a delivery no claim was written for (its gateway died between the pull and the claim,
/// or the pull's reply came after the gateway stopped waiting) is delivered again within
/// minutes; deliveries whose claim is held are kept alive with in-progress acks: a Claim
/// stream's heartbeats, and the scheduler's [`KEEPALIVE_EVERY`] round over every held claim
/// (polling bots send no heartbeats).
pub const BACKSTOP_ACK_WAIT: Duration = Duration::from_secs(120);

/// How often the scheduler tells JetStream that the deliveries of held claims are in progress.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(30);

/// How long a pull skips an assistant and plan whose tasks' subject was found empty (no
/// consumer is made for it until a task comes). Only the first task of a pair new to this
/// process can wait for it: a claim stream that its signal woke within this time finds it on
/// its next tick.
const EMPTY_RECHECK: Duration = Duration::from_millis(250);

/// Pairs found empty, and pairs with task signals, that a process keeps at most before it
/// lets go of those nobody waits on (a bot may name any plan).
const MAX_EMPTY_REMEMBERED: usize = 10_000;

/// Room left beside a result's JSON in a message for its headers (the Submit's trace context,
/// the Msg-Id) and the server's framing of them.
const RESULT_HEADERS_ROOM: usize = 16 * 1024;

/// A task delivery pulled for a bot.
#[derive(Debug)]
pub struct Delivery {
    pub task: TaskMessage,
    /// Settles this delivery.
    pub ack_subject: String,
}

/// What [`Queue::purge_acked`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purged {
    /// How many messages went.
    pub messages: u64,
    /// The consumers whose subjects were purged. nats-server empties the redelivery queue of
    /// each (what was given back and not yet delivered again), even when no message went.
    pub consumers: Vec<String>,
}

/// How to settle a delivery.
#[derive(Debug, Clone, Copy)]
pub enum Settle {
    /// Done: remove it.
    Ack,
    /// Deliver it again now.
    Nak,
    /// Never deliver it again.
    Term,
    /// Still working: restart the redelivery clock.
    Progress,
}

impl Settle {
    fn payload(self) -> Bytes {
        Bytes::from_static(match self {
            Settle::Ack => b"+ACK",
            Settle::Nak => b"-NAK",
            Settle::Term => b"+TERM",
            Settle::Progress => b"+WPI",
        })
    }
}

/// What an announcement on a prompt's events subject says changed.
#[derive(Debug, Clone)]
pub enum Change {
    /// An evaluation's state only (queued, claimed, submitted, released, failed): its answers
    /// are as they were, so a stream's replica re-reads the evaluations alone.
    State,
    /// Anything, answers included (an answer stored): the prompt is read whole.
    Any,
    /// The evaluations that changed, as they are now, and the answers stored with them: a
    /// replica applies them to what it holds and reads nothing.
    Told(Box<Told>),
}

/// Evaluations as they are now, and answers stored with them (without page HTML).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Told {
    pub evaluations: Vec<EvaluationRow>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<AnswerRow>,
}

/// Longest announcement: answers that would make it longer are left out of it (a replica that
/// hears an evaluation answered without its answer reads the answer).
pub const MAX_TOLD_BYTES: usize = 256 * 1024;

impl Change {
    /// The evaluations as they are now, and the answers stored with them.
    pub fn told(evaluations: Vec<EvaluationRow>, answers: Vec<AnswerRow>) -> Change {
        Change::Told(Box::new(Told { evaluations, answers }))
    }

    /// `state`, `changed` (what every announcement said before there were kinds; anything
    /// unreadable is read as [`Change::Any`]), or the JSON of what is told.
    pub fn payload(&self) -> Bytes {
        let told = match self {
            Change::State => return Bytes::from_static(b"state"),
            Change::Any => return Bytes::from_static(b"changed"),
            Change::Told(told) => told,
        };
        let json = match serde_json::to_vec(told) {
            Ok(json) if json.len() > MAX_TOLD_BYTES && !told.answers.is_empty() => {
                serde_json::to_vec(&Told { evaluations: told.evaluations.clone(), answers: Vec::new() })
            }
            json => json,
        };
        match json {
            Ok(json) => Bytes::from(json),
            Err(err) => {
                tracing::warn!(error = %err, "cannot encode an announcement; it says only that the prompt changed");
                Bytes::from_static(b"changed")
            }
        }
    }

    /// The change an announcement's payload says.
    pub fn of(payload: &[u8]) -> Change {
        if payload == b"state" {
            return Change::State;
        }
        if payload.first() == Some(&b'{') {
            match serde_json::from_slice::<Told>(payload) {
                Ok(told) if !told.evaluations.is_empty() => return Change::Told(Box::new(told)),
                Ok(_) => {}
                Err(err) => tracing::debug!(error = %err, "unreadable announcement; the prompt is read whole"),
            }
        }
        Change::Any
    }
}

/// Publishing and pulling over the platform's streams.
pub struct Queue {
    client: async_nats::Client,
    js: jetstream::Context,
    topology: Topology,
    consumers: Mutex<HashMap<String, PullConsumer>>,
    /// Per task consumer not made yet, when its subject was last found empty: pulls for a
    /// pair without tasks skip it for [`EMPTY_RECHECK`] instead of asking the stream again.
    empty: std::sync::Mutex<HashMap<String, std::time::Instant>>,
    signals: OnceCell<Arc<TaskSignals>>,
    /// Per consumer, the ack floor up to which its stream was last purged.
    purged_to: std::sync::Mutex<HashMap<String, u64>>,
}

/// Per assistant and plan (`chatgpt.plus`), what the claim streams of this process wait on for new tasks.
#[derive(Default)]
struct TaskSignals {
    waiting: std::sync::Mutex<HashMap<String, Arc<Notify>>>,
}

impl TaskSignals {
    fn of(&self, key: &str) -> Arc<Notify> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if waiting.len() >= MAX_EMPTY_REMEMBERED && !waiting.contains_key(key) {
            // Bots may name any plan: keep only the pairs a claim stream still waits on.
            waiting.retain(|_, notify| Arc::strong_count(notify) > 1);
        }
        waiting.entry(key.to_owned()).or_default().clone()
    }
}

/// Hands each signal to as many waiting claim streams as it announces tasks, until the queue
/// is dropped. A claim stream not waiting at that moment finds the task on its next pull.
async fn deliver_signals(mut subscription: async_nats::Subscriber, signals: std::sync::Weak<TaskSignals>) {
    while let Some(message) = subscription.next().await {
        let Some(signals) = signals.upgrade() else { return };
        let mut tokens = message.subject.as_str().rsplit('.');
        let (Some(plan), Some(assistant)) = (tokens.next(), tokens.next()) else { continue };
        let count = std::str::from_utf8(&message.payload).ok().and_then(|c| c.parse::<usize>().ok()).unwrap_or(1);
        let notify = signals.of(&format!("{assistant}.{plan}"));
        // One stored permit covers a burst for claim streams that were busy: they pull again
        // anyway before they wait.
        for _ in 0..count.clamp(1, 1024) {
            notify.notify_one();
        }
    }
}

fn queue_err(err: impl std::fmt::Display) -> crate::EvalError {
    crate::EvalError::Queue(err.to_string())
}

impl Queue {
    /// Connects the queue and makes sure the streams exist, each kept on `replicas` servers of
    /// the NATS cluster (1 on a single server).
    pub async fn new(client: async_nats::Client, topology: Topology, replicas: usize) -> Result<Queue, NatsError> {
        let js = jetstream::new(client.clone());
        aap_platform::nats::ensure_streams(&js, &topology, replicas).await?;
        Ok(Queue {
            client,
            js,
            topology,
            consumers: Mutex::new(HashMap::new()),
            empty: Default::default(),
            signals: OnceCell::new(),
            purged_to: Default::default(),
        })
    }

    /// The stream and subject names.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The core NATS client.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Puts an evaluation on the task stream; a repeat within the de-duplication window is
    /// dropped by JetStream (`Nats-Msg-Id` = `eval-<id>-<attempts>`: an evaluation scheduled
    /// again after an attempt, its submitted answer lost, is a new message).
    pub async fn publish_task(&self, row: &EvaluationRow) -> crate::EvalResult<()> {
        self.send_task(row).await?.await.map_err(queue_err)?;
        Ok(())
    }

    /// Sends an evaluation to the task stream without waiting for JetStream to store it: await
    /// the returned acknowledgement (after sending the rest of a batch, so the stores overlap).
    pub async fn send_task(&self, row: &EvaluationRow) -> crate::EvalResult<PublishAckFuture> {
        let message = TaskMessage {
            evaluation_id: row.id,
            prompt_id: row.prompt_id,
            assistant: row.assistant.clone(),
            plan: row.plan.clone(),
        };
        let payload = serde_json::to_vec(&message).map_err(queue_err)?;
        let mut headers = async_nats::HeaderMap::new();
        for (key, value) in row.trace_context.0.iter() {
            headers.insert(key.as_str(), value.as_str());
        }
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .headers(headers)
            .message_id(format!("eval-{}-{}", row.id, row.attempts));
        let subject = self.topology.task_subject(&row.assistant, &row.plan);
        self.js.send_publish(subject, publish).await.map_err(queue_err)
    }

    /// The most bytes a result's JSON may have to go on the results stream: the NATS server's
    /// largest payload (`max_payload`: [`aap_platform::nats::MAX_PAYLOAD`] on the platform's
    /// servers, 1 MiB by nats-server's default) less room for the headers a result is published
    /// with (its trace, its Msg-Id).
    pub fn result_budget(&self) -> usize {
        self.client.server_info().max_payload.saturating_sub(RESULT_HEADERS_ROOM).max(1)
    }

    /// Puts a submitted result on the results stream (`Nats-Msg-Id` = `result-<evaluation id>`).
    pub async fn publish_result(&self, result: &ResultMessage) -> crate::EvalResult<()> {
        let payload = serde_json::to_vec(result).map_err(queue_err)?;
        self.send_result(result, payload.into()).await?.await.map_err(queue_err)?;
        Ok(())
    }

    /// Puts several submitted results on the result streams, as few messages as the server's
    /// largest payload allows: each a JSON array on [`Topology::results_batch_subject`], on the
    /// result batch stream, where an ingest that reads a message as one result never finds it (a
    /// result alone goes as [`Queue::publish_result`] sends it). With `sync_interval: always`
    /// every stored message is an fsync of its own, taken one after another by the stream:
    /// results submitted together share one. Returns, once JetStream answered for every message,
    /// how each result fared.
    pub async fn publish_results(&self, results: &[Arc<ResultMessage>]) -> Vec<Published> {
        let mut encoded: Vec<Result<Vec<u8>, String>> =
            results.iter().map(|result| serde_json::to_vec(result.as_ref()).map_err(|e| e.to_string())).collect();
        // Half the largest payload: headers and the server's own framing fit beside it.
        let budget = (self.client.server_info().max_payload / 2).max(1);
        let sizes: Vec<usize> = encoded.iter().map(|e| e.as_ref().map_or(0, Vec::len)).collect();
        let mut outcomes: Vec<Published> = Vec::with_capacity(results.len());
        let mut sent = Vec::new();
        for run in runs_within(&sizes, budget) {
            let many = run.len() > 1;
            let alone = (!many).then(|| std::mem::replace(&mut encoded[run.start], Ok(Vec::new())));
            let send = async {
                if let Some(payload) = alone {
                    return self.send_result(&results[run.start], payload.map_err(queue_err)?.into()).await;
                }
                let mut payload = Vec::with_capacity(sizes[run.clone()].iter().map(|size| size + 1).sum::<usize>() + 1);
                payload.push(b'[');
                for (i, result) in encoded[run.clone()].iter().enumerate() {
                    if i > 0 {
                        payload.push(b',');
                    }
                    payload.extend_from_slice(result.as_ref().map_err(queue_err)?);
                }
                payload.push(b']');
                // No trace headers: each result carries the trace of its own Submit.
                let publish = jetstream::message::PublishMessage::build().payload(payload.into());
                self.js.send_publish(self.topology.results_batch_subject(), publish).await.map_err(queue_err)
            };
            let ack = send.await;
            sent.push((run, many, ack));
        }
        for (run, many, ack) in sent {
            let stored = match ack {
                Ok(ack) => ack.await.map(drop).map_err(|e| e.to_string()),
                Err(err) => Err(err.to_string()),
            };
            let outcome = match stored {
                Ok(()) => Published::Stored,
                Err(error) if many => Published::RefusedWithOthers(error),
                Err(error) => Published::RefusedAlone(error),
            };
            outcomes.extend(run.map(|_| outcome.clone()));
        }
        outcomes
    }

    /// Sends one result (encoded) without waiting for JetStream to store it. Its headers carry
    /// the trace of the Submit it came from (what it holds in `trace_context`), not the caller's:
    /// a result may be published by the gateway's publisher, away from its Submit.
    async fn send_result(&self, result: &ResultMessage, payload: Bytes) -> crate::EvalResult<PublishAckFuture> {
        let mut headers = async_nats::HeaderMap::new();
        for (key, value) in &result.trace_context {
            headers.insert(key.as_str(), value.as_str());
        }
        let publish = jetstream::message::PublishMessage::build()
            .payload(payload)
            .headers(headers)
            .message_id(result_message_id(result));
        let subject = self.topology.result_subject(&result.assistant);
        self.js.send_publish(subject, publish).await.map_err(queue_err)
    }

    /// The durable consumer of the tasks of `assistant` on `plan`, made on the first pull that
    /// finds a task for them; `None` while the stream holds none. A bot names the pairs it
    /// serves, so making a consumer for each pair asked would let one bot exhaust the stream's
    /// consumers with made-up plans, and every plan after that would get no tasks.
    async fn task_consumer(&self, assistant: &str, plan: &str) -> crate::EvalResult<Option<PullConsumer>> {
        let name = self.topology.task_consumer(assistant, plan);
        let mut consumers = self.consumers.lock().await;
        if let Some(consumer) = consumers.get(&name) {
            return Ok(Some(consumer.clone()));
        }
        if self.found_empty_lately(&name) {
            return Ok(None);
        }
        let stream = self.js.get_stream(self.topology.tasks_stream()).await.map_err(queue_err)?;
        let subject = self.topology.task_subject(assistant, plan);
        match stream.get_last_raw_message_by_subject(&subject).await {
            Ok(_) => {}
            Err(err) if err.kind() == jetstream::stream::LastRawMessageErrorKind::NoMessageFound => {
                self.remember_empty(name);
                return Ok(None);
            }
            Err(err) => return Err(queue_err(err)),
        }
        let config = jetstream::consumer::pull::Config {
            durable_name: Some(name.clone()),
            filter_subject: self.topology.task_subject(assistant, plan),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: BACKSTOP_ACK_WAIT,
            max_deliver: -1,
            ..Default::default()
        };
        let consumer: PullConsumer = stream.get_or_create_consumer(&name, config).await.map_err(queue_err)?;
        consumers.insert(name, consumer.clone());
        Ok(Some(consumer))
    }

    fn found_empty_lately(&self, name: &str) -> bool {
        let empty = self.empty.lock().unwrap_or_else(|p| p.into_inner());
        empty.get(name).is_some_and(|at| at.elapsed() < EMPTY_RECHECK)
    }

    fn remember_empty(&self, name: String) {
        let mut empty = self.empty.lock().unwrap_or_else(|p| p.into_inner());
        if empty.len() >= MAX_EMPTY_REMEMBERED {
            empty.retain(|_, at| at.elapsed() < EMPTY_RECHECK);
            if empty.len() >= MAX_EMPTY_REMEMBERED {
                empty.clear();
            }
        }
        empty.insert(name, std::time::Instant::now());
    }

    /// Forgets the consumer `name`, so the next pull makes it again (it may have been deleted
    /// on the server, by an operator or a stream's recreation).
    async fn forget_consumer(&self, name: &str) {
        self.consumers.lock().await.remove(name);
    }

    /// Pulls the next waiting task for a bot that serves `serves` ((assistant, plan) pairs;
    /// a bot of a named plan also takes tasks for any plan). Returns at once.
    pub async fn next_delivery(&self, serves: &[(String, String)]) -> crate::EvalResult<Option<Delivery>> {
        for (assistant, plan) in serves {
            let mut plans = vec![plan.as_str()];
            if plan != aap_platform::assistants::ANY_PLAN {
                plans.push(aap_platform::assistants::ANY_PLAN);
            }
            for plan in plans {
                let Some(consumer) = self.task_consumer(assistant, plan).await? else { continue };
                let fetched = match consumer.fetch().max_messages(1).messages().await {
                    Ok(mut batch) => batch.next().await.transpose().map_err(queue_err),
                    Err(err) => Err(queue_err(err)),
                };
                let message = match fetched {
                    Ok(Some(message)) => message,
                    Ok(None) => continue,
                    Err(err) => {
                        self.forget_consumer(&self.topology.task_consumer(assistant, plan)).await;
                        return Err(queue_err(err));
                    }
                };
                let Some(reply) = message.reply.as_ref().map(|s| s.to_string()) else {
                    continue;
                };
                match serde_json::from_slice::<TaskMessage>(&message.payload) {
                    Ok(task) => {
                        let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
                        crate::metrics::task_delivered(&task.assistant, delivered);
                        return Ok(Some(Delivery { task, ack_subject: reply }));
                    }
                    Err(err) => {
                        tracing::error!(error = %err, subject = %message.subject, "unreadable task dropped");
                        self.settle(&reply, Settle::Term).await;
                    }
                }
            }
        }
        Ok(None)
    }

    /// Settles the delivery of a task given back (released, its claim lapsed, its bot gone), as
    /// the row says it is now: TERM when it failed for good; else a NAK, so that JetStream
    /// delivers it again at once, and a signal to its bots.
    pub async fn put_back(&self, row: &EvaluationRow) {
        let Some(subject) = &row.ack_subject else { return };
        if row.status() == crate::model::Status::Failed {
            self.settle(subject, Settle::Term).await;
        } else {
            self.settle(subject, Settle::Nak).await;
            self.signal_tasks(&row.assistant, &row.plan, 1).await;
        }
    }

    /// Settles a delivery by its reply subject. Failures are logged: the database claim and
    /// the reaper recover from a lost settle.
    pub async fn settle(&self, ack_subject: &str, how: Settle) {
        let result = match how {
            // Wait for JetStream to confirm the ack so a finished task is never redelivered.
            Settle::Ack | Settle::Term => {
                self.client.request(ack_subject.to_owned(), how.payload()).await.map(drop).map_err(|e| e.to_string())
            }
            Settle::Nak | Settle::Progress => {
                self.client.publish(ack_subject.to_owned(), how.payload()).await.map_err(|e| e.to_string())
            }
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, ?how, "cannot settle task delivery");
        }
    }

    /// Sends a message that cannot be processed to the dead-letter subject of `what` (the
    /// payload as it was, the reason in the `Aap-Dead-Reason` header), so it can be looked at
    /// and replayed; best effort.
    pub async fn dead_letter(&self, what: &str, payload: Bytes, reason: &str) {
        crate::metrics::dead_lettered(what);
        let subject = self.topology.dead_letter_subject(what);
        let mut headers = async_nats::HeaderMap::new();
        // A header value is one line.
        headers.insert("Aap-Dead-Reason", reason.replace(['\r', '\n'], " ").as_str());
        if let Err(err) = self.client.publish_with_headers(subject, headers, payload).await {
            tracing::warn!(error = %err, "cannot send a message to the dead-letter subject");
        }
    }

    /// Tells every stream waiting on the prompt what changed: best told as the evaluations
    /// are now ([`Change::told`]), so that no replica reads them again.
    pub async fn notify_prompt(&self, prompt_id: i64, change: Change) {
        let subject = self.topology.prompt_events_subject(prompt_id);
        if let Err(err) = self.client.publish(subject, change.payload()).await {
            tracing::warn!(error = %err, prompt_id, "cannot announce prompt change");
        }
    }

    /// Tells the streams of each prompt among `rows` what its evaluations are now: one
    /// announcement per prompt, carrying its rows.
    pub async fn announce(&self, rows: &[EvaluationRow]) {
        let mut prompts: Vec<i64> = rows.iter().map(|row| row.prompt_id).collect();
        prompts.sort_unstable();
        prompts.dedup();
        for prompt_id in prompts {
            let told: Vec<EvaluationRow> = rows.iter().filter(|row| row.prompt_id == prompt_id).cloned().collect();
            self.notify_prompt(prompt_id, Change::told(told, Vec::new())).await;
        }
    }

    /// Removes from the task, the result or the result batch stream (`stream_name`) what the
    /// platform's consumers of it acknowledged, and says how many messages went and whose
    /// subjects. The streams keep limits retention, so an ack removes nothing
    /// (aap_platform::nats::ensure_streams says why); this makes them work queues again: for
    /// each consumer, one purge of its subject up to its ack floor, below which every message
    /// was acked or terminated. Only the platform's consumers count (`tasks-<assistant>-<plan>`
    /// on one task subject each, `ingest` on every result and every batch): an operator's
    /// consumer of any of them sees only what they have not acknowledged.
    pub async fn purge_acked(&self, stream_name: &str) -> crate::EvalResult<Purged> {
        let stream = self.js.get_stream(stream_name).await.map_err(queue_err)?;
        let consumers: Vec<_> = stream.consumers().try_collect().await.map_err(queue_err)?;
        let mut purged = Purged::default();
        for info in consumers {
            let Some(filter) = self.purge_filter(stream_name, &info.name, &info.config) else { continue };
            let floor = info.ack_floor.stream_sequence;
            let key = format!("{stream_name}/{}", info.name);
            let done = self.purged_to.lock().unwrap_or_else(|p| p.into_inner()).get(&key).copied().unwrap_or(0);
            if floor <= done {
                continue;
            }
            // Up to, not including, the given sequence.
            let purge = stream.purge().sequence(floor + 1);
            let response = match filter {
                Some(subject) => purge.filter(subject).await,
                None => purge.await,
            };
            purged.messages += response.map_err(queue_err)?.purged;
            purged.consumers.push(info.name);
            self.purged_to.lock().unwrap_or_else(|p| p.into_inner()).insert(key, floor);
        }
        if purged.messages > 0 {
            crate::metrics::purged(stream_name, purged.messages);
        }
        Ok(purged)
    }

    /// Purges what the platform's consumers of `stream_name` acknowledged every `period`
    /// ([`Queue::purge_acked`]), for as long as it is polled: run beside the work it cleans up
    /// after, so that a slow JetStream (a cluster electing a leader) never holds that work up.
    pub async fn purge_every(self: Arc<Self>, stream_name: String, period: Duration) -> std::convert::Infallible {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(err) = self.purge_acked(&stream_name).await {
                tracing::warn!(error = %err, stream = %stream_name, "purging acknowledged messages failed");
            }
        }
    }

    /// The subject whose acknowledged messages the consumer `name` lets go (`Some(None)`:
    /// every subject of the stream), or `None` when it is not one of the platform's: the
    /// ingest's, or a task consumer named and filtered as [`Topology`] makes them.
    fn purge_filter(
        &self,
        stream_name: &str,
        name: &str,
        config: &jetstream::consumer::Config,
    ) -> Option<Option<String>> {
        let topology = &self.topology;
        if !config.filter_subjects.is_empty() {
            return None;
        }
        let subject = &config.filter_subject;
        if stream_name == topology.results_stream() || stream_name == topology.results_batches_stream() {
            return (name == topology.ingest_consumer() && subject.is_empty()).then_some(None);
        }
        if stream_name != topology.tasks_stream() {
            return None;
        }
        let (assistant, plan) = subject.strip_prefix(&format!("{}.tasks.", topology.prefix()))?.split_once('.')?;
        let ours =
            name == topology.task_consumer(assistant, plan) && *subject == topology.task_subject(assistant, plan);
        ours.then(|| Some(subject.clone()))
    }

    /// Wakes the scheduler: new evaluations are pending.
    pub async fn wake_scheduler(&self) {
        let subject = format!("{}.scheduler.wake", self.topology.prefix());
        if let Err(err) = self.client.publish(subject, Bytes::new()).await {
            tracing::warn!(error = %err, "cannot wake the scheduler");
        }
    }

    /// Subject the scheduler listens on for wake-ups.
    pub fn scheduler_wake_subject(&self) -> String {
        format!("{}.scheduler.wake", self.topology.prefix())
    }

    /// Tells the bots' claim streams on every gateway that `count` tasks for `assistant` on
    /// `plan` wait (a core-NATS message without the tasks themselves: each gateway wakes that
    /// many of its waiting claim streams, which then pull from JetStream).
    pub async fn signal_tasks(&self, assistant: &str, plan: &str, count: usize) {
        let subject = format!("{}.{assistant}.{}", self.task_signal_prefix(), plan_token(plan));
        if let Err(err) = self.client.publish(subject, Bytes::from(count.to_string())).await {
            tracing::warn!(error = %err, "cannot signal new tasks");
        }
    }

    fn task_signal_prefix(&self) -> String {
        format!("{}.signal.tasks", self.topology.prefix())
    }

    /// What a claim stream waits on for tasks of `assistant` on `plan`: one per process, fed by
    /// a single subscription to every assistant's task signals (started on first use).
    pub async fn task_signal(&self, assistant: &str, plan: &str) -> Arc<Notify> {
        let signals = self
            .signals
            .get_or_init(|| async {
                let signals = Arc::new(TaskSignals::default());
                let subject = format!("{}.*.*", self.task_signal_prefix());
                match self.client.subscribe(subject).await {
                    Ok(subscription) => {
                        tokio::spawn(deliver_signals(subscription, Arc::downgrade(&signals)));
                    }
                    Err(err) => tracing::warn!(error = %err, "no task signals; claim streams poll on their tick"),
                }
                signals
            })
            .await;
        signals.of(&format!("{assistant}.{}", plan_token(plan)))
    }

    /// The JetStream context.
    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }
}

/// How a result fared in [`Queue::publish_results`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// JetStream stored the message that carried it.
    Stored,
    /// The message that carried it alone was refused (or not answered): publishing it again
    /// at once would fare no better.
    RefusedAlone(String),
    /// The message that carried it with others was refused: alone, it may yet go.
    RefusedWithOthers(String),
}

/// The places of items of these sizes cut, in order, into runs whose bytes (with a separator
/// each) stay within `budget`; an item larger than the budget is a run of its own.
fn runs_within(sizes: &[usize], budget: usize) -> Vec<std::ops::Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, size) in sizes.iter().enumerate() {
        if i > start && bytes + size + 1 > budget {
            runs.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += size + 1;
    }
    if start < sizes.len() {
        runs.push(start..sizes.len());
    }
    runs
}

/// The Msg-Id a result published alone carries, for JetStream to drop a repeat of it: the
/// evaluation and its answer's digest, so that a repeat of one submit is dropped and another
/// answer (taken after the first submit was told it failed) is not taken for a repeat.
fn result_message_id(result: &ResultMessage) -> String {
    match result.digest.get(..16) {
        Some(digest) => format!("result-{}-{digest}", result.evaluation_id),
        None => format!("result-{}", result.evaluation_id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: i64, status: &str) -> EvaluationRow {
        EvaluationRow {
            id,
            prompt_id: 7,
            prompt_text: "not announced".into(),
            status: status.into(),
            revision: 3,
            ..EvaluationRow::default()
        }
    }

    #[test]
    fn an_announcement_says_its_kind_and_carries_what_it_tells() {
        assert!(matches!(Change::of(&Change::State.payload()), Change::State));
        assert!(matches!(Change::of(&Change::Any.payload()), Change::Any));
        // Anything else (an older replica's, an operator's by hand, a broken one) reads it whole.
        for other in [&b""[..], b"changed", b"{", b"{\"evaluations\":[]}", b"{\"evaluations\":7}"] {
            assert!(matches!(Change::of(other), Change::Any), "{other:?}");
        }
        let answer = AnswerRow { evaluation_id: 1, response_text: "the answer".into(), ..AnswerRow::default() };
        let told = Change::told(vec![row(1, "answered"), row(2, "queued")], vec![answer]);
        let Change::Told(heard) = Change::of(&told.payload()) else { panic!("not told") };
        let rows: Vec<(i64, &str, i64, &str)> =
            heard.evaluations.iter().map(|r| (r.id, r.status.as_str(), r.revision, r.prompt_text.as_str())).collect();
        assert_eq!(rows, [(1, "answered", 3, ""), (2, "queued", 3, "")], "the prompt's text stays home");
        assert_eq!(heard.answers.len(), 1);
        assert_eq!(heard.answers[0].response_text, "the answer");
    }

    #[test]
    fn an_answer_too_long_to_announce_is_left_out_and_the_evaluation_still_told() {
        let long = AnswerRow { evaluation_id: 1, response_text: "x".repeat(MAX_TOLD_BYTES), ..AnswerRow::default() };
        let payload = Change::told(vec![row(1, "answered")], vec![long]).payload();
        assert!(payload.len() < MAX_TOLD_BYTES, "{} bytes", payload.len());
        let Change::Told(heard) = Change::of(&payload) else { panic!("not told") };
        assert_eq!((heard.evaluations.len(), heard.answers.len()), (1, 0));
    }

    #[test]
    fn a_result_alone_is_a_repeat_for_jetstream_only_with_the_same_answer() {
        let result = |digest: &str| ResultMessage { evaluation_id: 42, digest: digest.into(), ..Default::default() };
        let first = hex::encode([1_u8; 32]);
        let second = hex::encode([2_u8; 32]);
        assert_eq!(result_message_id(&result(&first)), "result-42-0101010101010101");
        assert_eq!(result_message_id(&result(&first)), result_message_id(&result(&first)));
        assert_ne!(result_message_id(&result(&first)), result_message_id(&result(&second)));
        // A producer that sends no digest: the evaluation alone, as before.
        assert_eq!(result_message_id(&result("")), "result-42");
    }

    #[test]
    fn results_are_cut_into_runs_within_the_budget_in_order() {
        // Each item counts its size and a separator.
        assert_eq!(runs_within(&[3, 3, 3, 3], 8), [0..2, 2..4]);
        assert_eq!(runs_within(&[3, 3, 3], 100), vec![0..3_usize]);
        // An item larger than the budget goes alone, between the runs around it.
        assert_eq!(runs_within(&[2, 50, 2, 2], 10), [0..1, 1..2, 2..4]);
        assert_eq!(runs_within(&[50], 10), vec![0..1_usize]);
        assert!(runs_within(&[], 10).is_empty());
        // Every item lands in exactly one run, in order.
        let sizes: Vec<usize> = (0..100).map(|i| (i * 37) % 23).collect();
        let runs = runs_within(&sizes, 40);
        let covered: Vec<usize> = runs.iter().flat_map(|run| run.clone()).collect();
        assert_eq!(covered, (0..100).collect::<Vec<_>>());
        for run in &runs {
            let bytes: usize = sizes[run.clone()].iter().map(|size| size + 1).sum();
            assert!(run.len() == 1 || bytes <= 40, "{run:?} holds {bytes} bytes");
        }
    }
}
