//! Dynamic micro-batching: concurrent callers share the model's forward passes.
//!
//! [`BatchConfig::workers`] threads run the model, each a pass at a time. A worker takes the
//! first waiting prompt and, when its previous pass held more than one prompt (callers are
//! concurrent), collects more for at most [`BatchConfig::max_wait`] or until
//! [`BatchConfig::max_batch`], then embeds them in one pass; while it computes, another worker
//! collects the next batch. Passes side by side keep more cores busy: with one thread a pass
//! ([`crate::DEFAULT_PASS_THREADS`]), two workers on 2 vCPUs embedded 201–230 prompts/s where
//! one did 120–125 (docs/performance.md, "A thread a pass"). `aap serve` runs a worker per core
//! ([`crate::default_workers`]); [`BatchConfig::default`] keeps one, for callers that size it.
//! A lone caller is never held back: with nobody else waiting its prompt runs at once. At most
//! [`BatchConfig::max_queue`] prompts wait; beyond that [`Batcher::embed`] refuses at once with
//! [`BatchError::Busy`] instead of growing a backlog.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::{EmbedError, Embedder, Embedding};

/// How prompts are grouped into forward passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// Most prompts in one forward pass.
    pub max_batch: usize,
    /// Longest a prompt waits for others to join its pass.
    pub max_wait: Duration,
    /// Most prompts waiting for a pass; more are refused.
    pub max_queue: usize,
    /// Passes that may run at once, each on a thread of its own.
    pub workers: usize,
}

impl Default for BatchConfig {
    fn default() -> BatchConfig {
        BatchConfig { max_batch: 32, max_wait: Duration::from_millis(2), max_queue: 512, workers: 1 }
    }
}

/// Why a batched embedding failed.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The queue is full: the model is saturated and the caller should retry later.
    #[error("the embedding model is saturated: {waiting} prompts are waiting (the limit); retry later")]
    Busy {
        /// The queue's bound.
        waiting: usize,
    },
    /// The model failed on the pass that held this prompt.
    #[error("embedding failed: {0}")]
    Failed(String),
    /// The model's thread is gone (the process is shutting down).
    #[error("the embedding thread has stopped")]
    Stopped,
}

struct Job {
    text: String,
    reply: oneshot::Sender<Result<Embedding, BatchError>>,
}

/// Counts since the start: passes run and prompts embedded.
#[derive(Debug, Default)]
struct Counts {
    passes: AtomicU64,
    prompts: AtomicU64,
}

/// A handle to the model's thread; cheap to clone. The thread ends when every handle is gone.
#[derive(Clone)]
pub struct Batcher {
    jobs: SyncSender<Job>,
    config: BatchConfig,
    counts: Arc<Counts>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts the model's threads.
    pub fn start(embedder: Embedder, config: BatchConfig) -> Result<Batcher, EmbedError> {
        let config = BatchConfig {
            max_batch: config.max_batch.max(1),
            max_queue: config.max_queue.max(1),
            max_wait: config.max_wait,
            workers: config.workers.max(1),
        };
        let (jobs, queue) = std::sync::mpsc::sync_channel(config.max_queue);
        let queue = Arc::new(Mutex::new(queue));
        let counts = Arc::new(Counts::default());
        for worker in 0..config.workers {
            let (embedder, queue, counts) = (embedder.clone(), queue.clone(), counts.clone());
            std::thread::Builder::new()
                .name(format!("aap-embedding-{worker}"))
                .spawn(move || run(embedder, config, &queue, &counts))
                .map_err(EmbedError::Thread)?;
        }
        Ok(Batcher { jobs, config, counts })
    }

    /// Embeds `text` in the next forward pass that has room; refuses at once when
    /// [`BatchConfig::max_queue`] prompts already wait.
    pub async fn embed(&self, text: String) -> Result<Embedding, BatchError> {
        let (reply, answer) = oneshot::channel();
        match self.jobs.try_send(Job { text, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                crate::METRICS.refused.get_or_create(&Vec::new()).inc();
                return Err(BatchError::Busy { waiting: self.config.max_queue });
            }
            Err(TrySendError::Disconnected(_)) => return Err(BatchError::Stopped),
        }
        answer.await.map_err(|_| BatchError::Stopped)?
    }

    /// Forward passes run and prompts embedded so far (their ratio is the mean batch size).
    pub fn counts(&self) -> (u64, u64) {
        (self.counts.passes.load(Ordering::Relaxed), self.counts.prompts.load(Ordering::Relaxed))
    }

    /// The settings it runs with.
    pub fn config(&self) -> BatchConfig {
        self.config
    }
}

/// One of the model's threads: one pass per batch until every [`Batcher`] is dropped.
fn run(embedder: Embedder, config: BatchConfig, queue: &Mutex<Receiver<Job>>, counts: &Counts) {
    let mut concurrent = false;
    loop {
        // The queue is this worker's while it collects a batch; the others compute meanwhile.
        let Some(batch) = collect(&queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner()), config, concurrent)
        else {
            return;
        };
        concurrent = batch.len() > 1;
        let texts: Vec<&str> = batch.iter().map(|job| job.text.as_str()).collect();
        let result = embedder.read_batch(&texts);
        counts.passes.fetch_add(1, Ordering::Relaxed);
        counts.prompts.fetch_add(batch.len() as u64, Ordering::Relaxed);
        match result {
            Ok(embeddings) => {
                for (job, embedding) in batch.into_iter().zip(embeddings) {
                    // A caller that went away does not need its vector.
                    let _ = job.reply.send(Ok(embedding));
                }
            }
            Err(err) => {
                let reason = describe(&err);
                for job in batch {
                    let _ = job.reply.send(Err(BatchError::Failed(reason.clone())));
                }
            }
        }
    }
}

/// The next batch: the first prompt to come, whatever waits with it, and, when callers were
/// concurrent last time, those that come within [`BatchConfig::max_wait`]. `None` once every
/// [`Batcher`] is dropped.
fn collect(queue: &Receiver<Job>, config: BatchConfig, concurrent: bool) -> Option<Vec<Job>> {
    let mut batch = vec![queue.recv().ok()?];
    // Whatever already waits joins at once.
    while batch.len() < config.max_batch {
        match queue.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    // Callers were concurrent last time: give them a moment to join.
    if concurrent && batch.len() < config.max_batch {
        let deadline = Instant::now() + config.max_wait;
        while batch.len() < config.max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            match queue.recv_timeout(left) {
                Ok(job) => batch.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
    }
    Some(batch)
}

fn describe(err: &EmbedError) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
