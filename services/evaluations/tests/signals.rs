//! Task signals over a real NATS server: a signal wakes as many waiting claim streams of a
//! process as it announces tasks, of that assistant and plan only, without the tasks' payloads.

use std::time::Duration;

use aap_evaluations::queue::Queue;
use aap_platform::nats::Topology;
use futures::FutureExt as _;

async fn queue() -> anyhow::Result<Queue> {
    let infra = aap_testkit::infra().await;
    let client = async_nats::connect(infra.nats_url()).await?;
    Ok(Queue::new(client, Topology::new(aap_testkit::fresh_prefix()), 1).await?)
}

/// Waits (bounded) until `future` resolves.
async fn resolves(what: &str, future: impl Future<Output = ()>) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(20), future).await.map_err(|_| anyhow::anyhow!("{what} never woke"))
}

#[tokio::test]
async fn a_signal_wakes_as_many_waiters_as_tasks_of_its_assistant_and_plan() -> anyhow::Result<()> {
    let queue = queue().await?;
    let chatgpt_plus = queue.task_signal("chatgpt", "Plus").await;
    let claude = queue.task_signal("claude", "").await;
    let perplexity = queue.task_signal("perplexity", "Pro").await;
    // The same process shares one Notify per assistant and plan (plans compare normalised).
    assert!(std::sync::Arc::ptr_eq(&chatgpt_plus, &queue.task_signal("chatgpt", " plus ").await));

    // Three claim streams wait for chatgpt/Plus, one for claude, one for perplexity.
    let mut waiting: Vec<_> = (0..3).map(|_| Box::pin(chatgpt_plus.notified())).collect();
    for w in waiting.iter_mut() {
        w.as_mut().enable();
    }
    let mut claude_waiting = Box::pin(claude.notified());
    claude_waiting.as_mut().enable();
    let perplexity_waiting = perplexity.notified();

    queue.signal_tasks("chatgpt", "Plus", 2).await;
    // Signals are handled in order: once the later one has woken its waiter, the first is done.
    queue.signal_tasks("perplexity", "Pro", 1).await;
    resolves("the perplexity waiter", perplexity_waiting).await?;

    let woken = waiting.iter_mut().map(|w| w.as_mut().now_or_never().is_some()).filter(|woke| *woke).count();
    assert_eq!(woken, 2, "two tasks wake two of the three chatgpt/Plus waiters");
    assert!(claude_waiting.as_mut().now_or_never().is_none(), "a chatgpt signal woke a claude waiter");
    Ok(())
}

#[tokio::test]
async fn a_signal_nobody_waits_for_is_kept_once_for_the_next_waiter() -> anyhow::Result<()> {
    let queue = queue().await?;
    let any = queue.task_signal("google-ai-overview", "").await;
    let barrier = queue.task_signal("claude", "").await;
    let mut barrier_waiting = Box::pin(barrier.notified());
    barrier_waiting.as_mut().enable();
    queue.signal_tasks("google-ai-overview", "", 5).await;
    queue.signal_tasks("claude", "", 1).await;
    resolves("the barrier waiter", barrier_waiting).await?;
    // Nobody waited for the five: one permit is kept, so a claim stream that waits next (its
    // pull raced the signal) goes at once instead of at its tick; busy ones pull anyway.
    assert!(any.notified().now_or_never().is_some(), "the signal was lost");
    assert!(any.notified().now_or_never().is_none(), "more than one permit kept");
    Ok(())
}
