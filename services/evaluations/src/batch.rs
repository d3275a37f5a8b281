//! Statements many callers make at once, made together. A request waits only while the batches
//! before it run: a lone caller is served at once, and under load the requests that arrive
//! during one round trip share the next (one statement, one commit, instead of one each).
//!
//! A batch answers each of its requests, or `None` for those it could not: a duplicate, a row
//! in no state for the batched statement, or the whole batch when its statement failed or
//! panicked (one poison request fails them all; the failure is logged). A caller given `None`
//! makes its own statement, which says what is wrong with its request alone.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use futures::FutureExt as _;
use tokio::sync::{Mutex, mpsc, oneshot};

/// A request and where its answer goes.
type Waiting<Req, Resp> = (Req, oneshot::Sender<Option<Resp>>);

type Answers<Resp> = Result<Vec<Option<Resp>>, Box<dyn std::error::Error + Send + Sync>>;

type Run<Req, Resp> = dyn Fn(Vec<Req>) -> Pin<Box<dyn Future<Output = Answers<Resp>> + Send>> + Send + Sync;

/// Runs requests in batches of at most `max`, `workers` batches at a time.
pub struct Batcher<Req, Resp> {
    /// What the batches are of, for `aap_statement_batch_size`.
    name: &'static str,
    workers: usize,
    max: usize,
    run: Arc<Run<Req, Resp>>,
    /// Started on the first call (a Tokio runtime is there then).
    tx: OnceLock<mpsc::Sender<Waiting<Req, Resp>>>,
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// `run` answers a batch: one response per request, in order (`None`: the caller makes
    /// its own statement), or an error, which answers every request `None`.
    pub fn new<F, Fut, E>(name: &'static str, workers: usize, max: usize, run: F) -> Batcher<Req, Resp>
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Option<Resp>>, E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let run = Arc::new(run);
        Batcher {
            name,
            workers: workers.max(1),
            max: max.max(1),
            run: Arc::new(move |batch| {
                let answers = run(batch);
                Box::pin(async move { answers.await.map_err(Into::into) })
            }),
            tx: OnceLock::new(),
        }
    }

    /// Runs `request` in the next batch; `None` when the batch could not answer it (or the
    /// batcher is shutting down).
    pub async fn call(&self, request: Req) -> Option<Resp> {
        let (reply, answer) = oneshot::channel();
        self.sender().send((request, reply)).await.ok()?;
        answer.await.ok().flatten()
    }

    fn sender(&self) -> &mpsc::Sender<Waiting<Req, Resp>> {
        self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(self.max * self.workers * 4);
            let rx = Arc::new(Mutex::new(rx));
            for _ in 0..self.workers {
                tokio::spawn(work(self.name, rx.clone(), self.max, self.run.clone()));
            }
            tx
        })
    }
}

/// One worker: takes the next request and whatever else waits (up to `max`), runs them as
/// one batch, answers each; ends when the batcher is dropped.
async fn work<Req: Send + 'static, Resp: Send + 'static>(
    name: &'static str,
    rx: Arc<Mutex<mpsc::Receiver<Waiting<Req, Resp>>>>,
    max: usize,
    run: Arc<Run<Req, Resp>>,
) {
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(first) => batch.push(first),
                None => return,
            }
            while batch.len() < max {
                match rx.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
        }
        let (requests, replies): (Vec<Req>, Vec<_>) = batch.into_iter().unzip();
        let size = requests.len();
        crate::metrics::batch_size(name, size);
        // A batch that fails or panics answers its callers `None` (each makes its own
        // statement), and the worker goes on.
        let answers = match std::panic::AssertUnwindSafe(run(requests)).catch_unwind().await {
            Ok(Ok(answers)) => answers,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, size, statement = name, "a batched statement failed; each request goes alone");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!(size, statement = name, "a batched statement panicked; each request goes alone");
                Vec::new()
            }
        };
        let mut answers = answers.into_iter();
        for reply in replies {
            let _ = reply.send(answers.next().flatten());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn requests_that_wait_together_share_a_batch_and_each_gets_its_own_answer() {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = batches.clone();
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let batcher: Arc<Batcher<u32, u32>> = Arc::new(Batcher::new("test", 1, 8, move |batch: Vec<u32>| {
            counted.fetch_add(1, Ordering::SeqCst);
            let mut gate = gate_rx.clone();
            async move {
                // The first batch holds the worker until the others are queued.
                let _ = gate.wait_for(|open| *open).await;
                Ok::<_, std::io::Error>(batch.into_iter().map(|n| (n != 13).then_some(n * 10)).collect())
            }
        }));
        let first = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.call(1).await }
        });
        while batches.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = [2, 13, 4]
            .into_iter()
            .map(|n| {
                let batcher = batcher.clone();
                tokio::spawn(async move { batcher.call(n).await })
            })
            .collect();
        while batcher.sender().capacity() > batcher.sender().max_capacity() - 3 {
            tokio::task::yield_now().await;
        }
        gate_tx.send_replace(true);
        assert_eq!(first.await.ok().flatten(), Some(10));
        let mut answers = Vec::new();
        for task in rest {
            answers.push(task.await.ok().flatten());
        }
        assert_eq!(answers, [Some(20), None, Some(40)], "13 is the request the batch cannot answer");
        assert_eq!(batches.load(Ordering::SeqCst), 2, "the three that waited went in one batch");
    }

    #[tokio::test]
    async fn a_batch_that_panics_or_fails_answers_none_and_the_worker_goes_on() {
        let batcher: Batcher<u32, u32> = Batcher::new("test", 1, 4, |batch: Vec<u32>| async move {
            assert!(!batch.contains(&0), "a poison request");
            if batch.contains(&1) {
                return Err(std::io::Error::other("refused"));
            }
            Ok(batch.into_iter().map(Some).collect())
        });
        assert_eq!(batcher.call(0).await, None);
        assert_eq!(batcher.call(1).await, None);
        assert_eq!(batcher.call(5).await, Some(5));
    }
}
