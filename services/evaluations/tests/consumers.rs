//! The task stream's consumers over a real NATS server: one per assistant and plan that had a
//! task, never one per pair a bot names, so a bot naming made-up plans cannot use up the
//! stream's consumers and leave later plans without tasks.

use std::time::{Duration, Instant};

use aap_evaluations::queue::{Delivery, Queue};
use aap_evaluations::store::EvaluationRow;
use aap_platform::assistants::normalize_plan;
use aap_platform::nats::Topology;
use futures::TryStreamExt as _;

async fn queue(topology: Topology) -> anyhow::Result<Queue> {
    let infra = aap_testkit::infra().await;
    let client = async_nats::connect(infra.nats_url()).await?;
    Ok(Queue::new(client, topology, 1).await?)
}

async fn consumer_names(queue: &Queue) -> anyhow::Result<Vec<String>> {
    let stream = queue.jetstream().get_stream(queue.topology().tasks_stream()).await?;
    let mut names: Vec<String> = stream.consumer_names().try_collect().await?;
    names.sort();
    Ok(names)
}

/// The task a bot serving `serves` pulls next, pulling again (a pair found empty is skipped
/// for a moment) until one comes or 10 s have passed; errors are kept, the last one reported.
async fn delivered(queue: &Queue, serves: &[(String, String)]) -> anyhow::Result<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last_error = None;
    while Instant::now() < deadline {
        match queue.next_delivery(serves).await {
            Ok(Some(delivery)) => return Ok(delivery),
            Ok(None) => {}
            Err(err) => last_error = Some(err.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("no task delivered in 10 s (last error: {last_error:?})")
}

fn task(id: i64, plan: &str) -> EvaluationRow {
    EvaluationRow { id, prompt_id: id, assistant: "chatgpt".into(), plan: plan.into(), ..EvaluationRow::default() }
}

#[tokio::test]
async fn pulls_for_plans_without_tasks_make_no_consumers_and_a_task_still_reaches_its_bot() -> anyhow::Result<()> {
    let topology = Topology::new(aap_testkit::fresh_prefix());
    let queue = queue(topology.clone()).await?;
    // A bot that names 40 plans nobody asked for, over and over: nothing to deliver, and no
    // consumer made for any of them.
    let made_up: Vec<(String, String)> =
        (0..40).map(|i| ("chatgpt".to_owned(), normalize_plan(&format!("P{i}")))).collect();
    for _ in 0..3 {
        assert!(queue.next_delivery(&made_up).await?.is_none());
    }
    assert_eq!(consumer_names(&queue).await?, Vec::<String>::new());

    // A task for one plan: a bot of that plan gets it, and only its pair has a consumer (the
    // bot also pulls tasks for any plan, of which there are none).
    queue.publish_task(&task(1, "Plus")).await?;
    let plus = [("chatgpt".to_owned(), normalize_plan("Plus"))];
    let delivery = delivered(&queue, &plus).await?;
    assert_eq!(delivery.task.evaluation_id, 1);
    assert_eq!(consumer_names(&queue).await?, vec![topology.task_consumer("chatgpt", &normalize_plan("Plus"))]);
    assert!(queue.next_delivery(&made_up).await?.is_none(), "the made-up plans still have nothing");
    assert_eq!(consumer_names(&queue).await?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_consumer_deleted_on_the_server_is_made_again_by_the_next_pulls() -> anyhow::Result<()> {
    let topology = Topology::new(aap_testkit::fresh_prefix());
    let queue = queue(topology.clone()).await?;
    let serves = [("chatgpt".to_owned(), String::new())];
    queue.publish_task(&task(1, "")).await?;
    assert_eq!(delivered(&queue, &serves).await?.task.evaluation_id, 1);
    let name = topology.task_consumer("chatgpt", "");
    assert_eq!(consumer_names(&queue).await?, vec![name.clone()]);

    // An operator removes it (`nats consumer rm`); the next task still reaches the bot.
    let stream = queue.jetstream().get_stream(topology.tasks_stream()).await?;
    stream.delete_consumer(&name).await?;
    assert_eq!(consumer_names(&queue).await?, Vec::<String>::new());
    queue.publish_task(&task(2, "")).await?;
    // The new consumer starts at the subject's first message: the first task, never acked,
    // comes again before the second.
    assert_eq!(delivered(&queue, &serves).await?.task.evaluation_id, 1);
    assert_eq!(delivered(&queue, &serves).await?.task.evaluation_id, 2);
    assert_eq!(consumer_names(&queue).await?, vec![name]);
    Ok(())
}
