//! The ingest: consumes the results stream and stores each answer once, then tells the
//! streams waiting on the prompt.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt;
use sqlx::PgPool;
use tracing::Instrument;

use crate::batch::Batcher;
use crate::model::ResultMessage;
use crate::queue::{Change, Queue};
use crate::store;

/// Deliveries of one result before the ingest gives up on it: a result the database refuses
/// this often will not be stored by trying again, and its evaluation must not wait forever.
pub const MAX_DELIVERIES: u64 = 5;

/// Results one ingest stores at once.
const CONCURRENCY: usize = 32;

/// Errors starting the ingest.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("cannot open the results consumer: {0}")]
    Consumer(String),
}

/// Consumes results until `shutdown` resolves. When the consumer cannot be opened, or its
/// deliveries end (NATS restarted, the stream moved to another server), it is opened again
/// after a pause, so an ingest never stops while the process runs.
pub async fn run(pool: PgPool, queue: Arc<Queue>, shutdown: impl Future<Output = ()>) -> Result<(), IngestError> {
    crate::metrics::register();
    // Stored results leave the stream together, a purge a second, not an fsync at each ack.
    tokio::select! {
        stopped = consume_until(pool, queue.clone(), shutdown) => stopped,
        never = queue.clone().purge_every(queue.topology().results_stream(), PURGE_EVERY) => match never {},
        never = queue.clone().purge_every(queue.topology().results_batches_stream(), PURGE_EVERY) => match never {},
    }
}

async fn consume_until(pool: PgPool, queue: Arc<Queue>, shutdown: impl Future<Output = ()>) -> Result<(), IngestError> {
    tokio::pin!(shutdown);
    let mut pause = Duration::from_millis(200);
    loop {
        let outcome = tokio::select! {
            _ = &mut shutdown => break,
            outcome = consume(&pool, &queue) => outcome,
        };
        match outcome {
            Ok(()) => tracing::warn!("the results consumer's deliveries ended; opening it again"),
            Err(err) => {
                tracing::warn!(error = %err, pause_ms = pause.as_millis() as u64, "results consumer unavailable")
            }
        }
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
    tracing::info!("ingest stopped");
    Ok(())
}

/// How often the ingest purges the results it acknowledged.
const PURGE_EVERY: Duration = Duration::from_secs(1);

/// Opens the durable results consumers, `ingest` of the results stream and of the result batch
/// stream (each shared by every ingest replica: each message goes to one of them), and stores
/// what they deliver until the deliveries of either end.
async fn consume(pool: &PgPool, queue: &Queue) -> Result<(), IngestError> {
    let topology = queue.topology();
    let singles = open(queue, &topology.results_stream()).await?;
    let batches = open(queue, &topology.results_batches_stream()).await?;
    let mut messages = futures::stream::select(ending(singles), ending(batches));
    tracing::info!(consumer = %topology.ingest_consumer(), "ingest consuming results");
    let mut hiccups = 0u32;
    let storer = answer_batcher(pool);
    // Results are stored concurrently, so their commits share PostgreSQL's WAL flushes and the
    // acks overlap; each result is still acked only after its answer is stored.
    let mut storing = futures::stream::FuturesUnordered::new();
    loop {
        let next = tokio::select! {
            biased;
            Some(()) = storing.next(), if !storing.is_empty() => continue,
            next = messages.next(), if storing.len() < CONCURRENCY => next.flatten(),
        };
        let message = match next {
            Some(Ok(message)) => {
                hiccups = 0;
                message
            }
            Some(Err(err)) => {
                hiccups += 1;
                tracing::warn!(error = %err, hiccups, "results stream hiccup");
                if hiccups >= 10 {
                    while storing.next().await.is_some() {}
                    return Err(IngestError::Consumer(format!("{hiccups} errors in a row, the last: {err}")));
                }
                continue;
            }
            None => {
                while storing.next().await.is_some() {}
                return Ok(());
            }
        };
        storing.push(ingest_one(pool, queue, &storer, message));
    }
}

/// The messages the consumer `ingest` of `stream_name` delivers, opened (made on first use).
async fn open(queue: &Queue, stream_name: &str) -> Result<jetstream::consumer::pull::Stream, IngestError> {
    let stream = queue.jetstream().get_stream(stream_name).await.map_err(|e| IngestError::Consumer(e.to_string()))?;
    let name = queue.topology().ingest_consumer();
    let consumer: jetstream::consumer::PullConsumer = stream
        .get_or_create_consumer(
            &name,
            jetstream::consumer::pull::Config {
                durable_name: Some(name.clone()),
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| IngestError::Consumer(e.to_string()))?;
    consumer.messages().await.map_err(|e| IngestError::Consumer(e.to_string()))
}

/// `messages`, each as `Some`, then one `None` when they end: merged with another consumer's,
/// the end of either is seen.
fn ending<S: futures::Stream>(messages: S) -> impl futures::Stream<Item = Option<S::Item>> {
    messages.map(Some).chain(futures::stream::once(std::future::ready(None)))
}

/// Stores the results that wait together in one statement ([`store::store_answers`]); when
/// it fails, each is stored alone, so one the database refuses holds back no other.
fn answer_batcher(pool: &PgPool) -> Batcher<Arc<ResultMessage>, store::Stored> {
    let pool = pool.clone();
    Batcher::new("store", 2, CONCURRENCY, move |batch: Vec<Arc<ResultMessage>>| {
        let pool = pool.clone();
        async move {
            let results: Vec<&ResultMessage> = batch.iter().map(Arc::as_ref).collect();
            store::store_answers(&pool, &results).await
        }
    })
}

/// What a results message carries: one result (a JSON object, as a gateway publishes a result
/// submitted alone), or several (a JSON array, [`Queue::publish_results`]). An element of an
/// array that is no result is left out (and logged), so that it holds back none of the others;
/// a message that is neither is an error.
pub fn results_of(payload: &[u8]) -> serde_json::Result<Vec<Arc<ResultMessage>>> {
    match payload.iter().find(|byte| !byte.is_ascii_whitespace()) {
        Some(b'[') => {
            if let Ok(results) = serde_json::from_slice::<Vec<ResultMessage>>(payload) {
                return Ok(results.into_iter().map(Arc::new).collect());
            }
            // Some element is no result: read them one by one.
            let elements: Vec<serde_json::Value> = serde_json::from_slice(payload)?;
            Ok(elements
                .into_iter()
                .enumerate()
                .filter_map(|(place, element)| match serde_json::from_value::<ResultMessage>(element) {
                    Ok(result) => Some(Arc::new(result)),
                    Err(err) => {
                        tracing::error!(error = %err, place, "unreadable result among several dropped");
                        None
                    }
                })
                .collect())
        }
        _ => Ok(vec![Arc::new(serde_json::from_slice(payload)?)]),
    }
}

/// Stores the results of one delivered message and settles its delivery: acked once every one
/// is stored, delivered again (after a second) when the database refuses one (those stored
/// already change nothing then), and after [`MAX_DELIVERIES`] each result still refused is
/// dead-lettered alone and its evaluation failed.
async fn ingest_one(
    pool: &PgPool,
    queue: &Queue,
    storer: &Batcher<Arc<ResultMessage>, store::Stored>,
    message: jetstream::Message,
) {
    let results = match results_of(&message.payload) {
        Ok(results) => results,
        Err(err) => {
            tracing::error!(error = %err, subject = %message.subject, "unreadable result dropped");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        }
    };
    let delivered = message.info().map(|info| info.delivered).unwrap_or(1);
    // Each result carries the trace of its Submit; the headers, for a result published alone by
    // another producer (or an older gateway) without one.
    let headers = aap_platform::telemetry::context_from_nats_headers(message.headers.as_ref());
    let alone = results.len() == 1;
    let stored = futures::future::join_all(results.iter().map(|result| {
        crate::metrics::result_delivered(delivered);
        let parent = if result.trace_context.is_empty() { &headers } else { &result.trace_context };
        store_told(pool, queue, storer, result, &message, parent)
    }))
    .await;
    let refused: Vec<(&Arc<ResultMessage>, sqlx::Error)> =
        results.iter().zip(stored).filter_map(|(result, stored)| stored.err().map(|err| (result, err))).collect();
    if refused.is_empty() {
        // Told before the ack: the answers are stored, so the customer need not wait for
        // JetStream's confirmation of the ack (a message delivered again because the ack was
        // lost stores nothing and tells only that the prompts changed).
        if let Err(err) = message.double_ack().await {
            tracing::warn!(error = %err, "cannot ack results; they will come again and change nothing");
        }
        return;
    }
    if (delivered as u64) < MAX_DELIVERIES {
        for (result, err) in &refused {
            tracing::warn!(error = %err, delivered, evaluation_id = result.evaluation_id, "cannot store answer; retrying later");
        }
        let _ = message.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        return;
    }
    // Poison: each refused result is dead-lettered alone, its evaluation failed with the reason
    // and the streams waiting on it ended; the message leaves the results stream.
    let mut again = false;
    for (result, err) in refused {
        let reason = format!("the answer could not be stored after {delivered} attempts: {err}");
        tracing::error!(error = %err, delivered, evaluation_id = result.evaluation_id, "result dead-lettered; its evaluation fails");
        let payload = if alone {
            message.payload.clone()
        } else {
            match serde_json::to_vec(result.as_ref()) {
                Ok(payload) => payload.into(),
                Err(_) => message.payload.clone(),
            }
        };
        queue.dead_letter("results", payload, &reason).await;
        match store::fail_unstorable(pool, result.evaluation_id, &reason).await {
            Ok(failed) => {
                crate::metrics::failed_for_good(&result.assistant, "unstorable");
                match failed {
                    Some(row) => queue.announce(&[row]).await,
                    None => queue.notify_prompt(result.prompt_id, Change::State).await,
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, evaluation_id = result.evaluation_id, "cannot fail the evaluation; retrying later");
                again = true;
            }
        }
    }
    let settle = if again { AckKind::Nak(Some(Duration::from_secs(1))) } else { AckKind::Term };
    let _ = message.ack_with(settle).await;
}

/// Stores one result of a delivered message (in the batch of those stored together) and tells
/// the streams waiting on its prompt.
async fn store_told(
    pool: &PgPool,
    queue: &Queue,
    storer: &Batcher<Arc<ResultMessage>, store::Stored>,
    result: &Arc<ResultMessage>,
    message: &jetstream::Message,
    parent: &std::collections::HashMap<String, String>,
) -> sqlx::Result<()> {
    let span = tracing::info_span!("ingest", evaluation_id = result.evaluation_id, assistant = %result.assistant);
    aap_platform::telemetry::set_parent(&span, parent);
    async {
        let stored = match storer.call(result.clone()).await {
            Some(stored) => stored,
            None => store::store_answer(pool, result).await?,
        };
        if stored.superseded {
            // Its submit was told it failed (the stream's reply lost), and the evaluation took
            // another answer since, whose bot was told so: that one is stored, not this.
            tracing::warn!("answer not stored: its evaluation took another one submitted after it");
        } else {
            tracing::info!(stored = stored.inserted, "answer ingested");
        }
        crate::metrics::ingested(&result.assistant, stored.inserted, message.info().ok());
        // The evaluation and the answer as stored, so that no replica reads them again; a
        // redelivery that changed nothing says only that the prompt changed.
        let change = match stored.evaluation {
            Some(row) => Change::told(vec![row], stored.answer.into_iter().collect()),
            None => Change::Any,
        };
        queue.notify_prompt(result.prompt_id, change).await;
        Ok(())
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_read_as_one_result_or_several_and_an_unreadable_one_among_several_holds_back_none() {
        let result = |id: i64| {
            serde_json::json!({
                "evaluation_id": id, "prompt_id": 7, "assistant": "claude", "plan": "", "response_text": "an answer",
                "response_markdown": "", "citations": [], "captured_at": "2026-12-05T10:00:00Z", "bot_id": "b", "lease_id": "",
            })
        };
        let ids = |payload: serde_json::Value| -> Vec<i64> {
            let bytes = serde_json::to_vec(&payload).unwrap_or_default();
            results_of(&bytes).map(|results| results.iter().map(|r| r.evaluation_id).collect()).unwrap_or_default()
        };
        assert_eq!(ids(result(1)), [1]);
        assert_eq!(ids(serde_json::json!([result(1), result(2), result(3)])), [1, 2, 3]);
        // A broken element (no evaluation id, a number for a text, not an object) is left out.
        let mut broken = result(9);
        broken["response_text"] = serde_json::json!(42);
        assert_eq!(ids(serde_json::json!([result(1), {"prompt_id": 7}, broken, "text", result(4)])), [1, 4]);
        assert_eq!(ids(serde_json::json!([])), Vec::<i64>::new());
        // A message that is neither one result nor an array is an error, not an empty batch.
        for payload in [&b"{\"evaluation_id\": 1}"[..], b"not json", b"[1, 2", b""] {
            assert!(results_of(payload).is_err(), "{payload:?}");
        }
        // Leading whitespace before an array is still an array.
        let spaced = format!("  \n[{}]", result(5));
        assert_eq!(results_of(spaced.as_bytes()).map(|r| r.len()).unwrap_or(0), 1);
    }
}
