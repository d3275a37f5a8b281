//! The task and result streams over a real NATS server: limits retention, and what the
//! platform's consumers acknowledged purged, so the streams still drain as work queues.

use aap_evaluations::ingest::results_of;
use aap_evaluations::model::ResultMessage;
use aap_evaluations::queue::{Delivery, Published, Purged, Queue, Settle};
use aap_evaluations::store::EvaluationRow;
use aap_platform::nats::Topology;
use async_nats::jetstream::{self, stream};

async fn queue(topology: Topology) -> anyhow::Result<Queue> {
    let infra = aap_testkit::infra().await;
    let client = async_nats::connect(infra.nats_url()).await?;
    Ok(Queue::new(client, topology, 1).await?)
}

fn task(id: i64, assistant: &str) -> EvaluationRow {
    EvaluationRow { id, prompt_id: id, assistant: assistant.into(), plan: String::new(), ..EvaluationRow::default() }
}

async fn messages(queue: &Queue, name: &str) -> anyhow::Result<u64> {
    Ok(queue.jetstream().get_stream(name).await?.info().await?.state.messages)
}

/// The next chatgpt task delivered, which must be there.
async fn deliver(queue: &Queue) -> anyhow::Result<Delivery> {
    let serves = [("chatgpt".to_owned(), String::new())];
    queue.next_delivery(&serves).await?.ok_or_else(|| anyhow::anyhow!("no task delivered"))
}

#[tokio::test]
async fn acknowledged_tasks_are_purged_and_the_others_stay_on_the_stream() -> anyhow::Result<()> {
    let topology = Topology::new(aap_testkit::fresh_prefix());
    let queue = queue(topology.clone()).await?;
    let tasks = topology.tasks_stream();
    let info = queue.jetstream().get_stream(&tasks).await?.info().await?.config.clone();
    assert_eq!(info.retention, stream::RetentionPolicy::Limits);

    for id in 1..=3 {
        queue.publish_task(&task(id, "chatgpt")).await?;
    }
    // Claude's tasks wait for a consumer that does not exist yet; an operator's consumers read
    // and ack them all, which must not let them go: only the platform's consumers count.
    queue.publish_task(&task(4, "claude")).await?;
    let stream = queue.jetstream().get_stream(&tasks).await?;
    let operator: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("operator".into()),
            filter_subject: topology.task_subject("claude", ""),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    // And one on a wildcard subject, named as the platform would name a consumer of it.
    let impostor: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(topology.task_consumer("claude", "*")),
            filter_subject: format!("{}.tasks.claude.*", topology.prefix()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    for consumer in [operator, impostor] {
        let mut batch = consumer.fetch().max_messages(1).messages().await?;
        let seen = futures::StreamExt::next(&mut batch).await.ok_or_else(|| anyhow::anyhow!("nothing seen"))?;
        seen.map_err(|e| anyhow::anyhow!(e))?.double_ack().await.map_err(|e| anyhow::anyhow!(e))?;
    }

    let (first, second, third) = (deliver(&queue).await?, deliver(&queue).await?, deliver(&queue).await?);
    let ids = [first.task.evaluation_id, second.task.evaluation_id, third.task.evaluation_id];
    assert_eq!(ids, [1, 2, 3]);
    queue.settle(&first.ack_subject, Settle::Ack).await;
    queue.settle(&third.ack_subject, Settle::Term).await;
    // Acked, and terminated: nothing goes until the floor passes them, and the second waits.
    let purged = queue.purge_acked(&tasks).await?;
    assert_eq!(purged.messages, 1, "only the first is below the ack floor");
    assert_eq!(purged.consumers, [topology.task_consumer("chatgpt", "")], "the operator's are not the platform's");
    assert_eq!(messages(&queue, &tasks).await?, 3, "the second, the third and claude's stay");
    assert_eq!(queue.purge_acked(&tasks).await?, Purged::default(), "a floor that did not move purges nothing");

    // The second, given back, is delivered again: it was kept.
    queue.settle(&second.ack_subject, Settle::Nak).await;
    let again = deliver(&queue).await?;
    assert_eq!(again.task.evaluation_id, 2);
    queue.settle(&again.ack_subject, Settle::Ack).await;
    assert_eq!(queue.purge_acked(&tasks).await?.messages, 2);
    assert_eq!(messages(&queue, &tasks).await?, 1, "claude's task waits for the platform's consumer");
    assert!(deliver(&queue).await.is_err(), "a purged task was delivered again");
    Ok(())
}

#[tokio::test]
async fn a_work_queue_stream_made_by_an_older_version_is_kept_and_works() -> anyhow::Result<()> {
    let topology = Topology::new(aap_testkit::fresh_prefix());
    let infra = aap_testkit::infra().await;
    let js = jetstream::new(async_nats::connect(infra.nats_url()).await?);
    js.create_stream(stream::Config {
        name: topology.tasks_stream(),
        subjects: vec![format!("{}.tasks.>", topology.prefix())],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await?;

    let queue = queue(topology.clone()).await?;
    let tasks = topology.tasks_stream();
    let config = queue.jetstream().get_stream(&tasks).await?.info().await?.config.clone();
    assert_eq!(config.retention, stream::RetentionPolicy::WorkQueue, "NATS cannot change it; it is kept");
    let results = queue.jetstream().get_stream(topology.results_stream()).await?.info().await?.config.clone();
    assert_eq!(results.retention, stream::RetentionPolicy::Limits, "a new stream takes limits retention");

    queue.publish_task(&task(7, "chatgpt")).await?;
    let delivery = deliver(&queue).await?;
    queue.settle(&delivery.ack_subject, Settle::Ack).await;
    // The ack removed it, as a work queue does; the purge finds nothing left and says so, and
    // whose subject it purged all the same (which empties that consumer's redelivery queue).
    assert_eq!(messages(&queue, &tasks).await?, 0);
    let purged = queue.purge_acked(&tasks).await?;
    assert_eq!((purged.messages, purged.consumers), (0, vec![topology.task_consumer("chatgpt", "")]));
    Ok(())
}

#[tokio::test]
async fn results_published_together_are_one_message_the_ingest_reads_as_each_of_them() -> anyhow::Result<()> {
    let topology = Topology::new(aap_testkit::fresh_prefix());
    let queue = queue(topology.clone()).await?;
    let result = |id: i64, assistant: &str| {
        std::sync::Arc::new(ResultMessage {
            evaluation_id: id,
            prompt_id: 100 + id,
            assistant: assistant.into(),
            response_text: format!("answer {id}"),
            ..ResultMessage::default()
        })
    };
    let (stream, batches) = (topology.results_stream(), topology.results_batches_stream());
    // One result goes as it always went: alone, on its assistant's subject.
    assert_eq!(queue.publish_results(&[result(1, "chatgpt")]).await, [Published::Stored]);
    // Three submitted together are one message on the batch subject, on a stream of its own.
    let three = queue.publish_results(&[result(2, "claude"), result(3, "chatgpt"), result(4, "perplexity")]).await;
    assert_eq!(three, [Published::Stored, Published::Stored, Published::Stored]);
    assert_eq!((messages(&queue, &stream).await?, messages(&queue, &batches).await?), (1, 1));
    let js = queue.jetstream();
    let alone = js.get_stream(&stream).await?.get_raw_message(1).await?;
    assert_eq!(alone.subject.as_str(), topology.result_subject("chatgpt"));
    let together = js.get_stream(&batches).await?.get_raw_message(1).await?;
    assert_eq!(together.subject.as_str(), topology.results_batch_subject());
    let read: Vec<(i64, i64, String, String)> = results_of(&together.payload)?
        .iter()
        .map(|r| (r.evaluation_id, r.prompt_id, r.assistant.clone(), r.response_text.clone()))
        .collect();
    assert_eq!(
        read,
        [
            (2, 102, "claude".to_owned(), "answer 2".to_owned()),
            (3, 103, "chatgpt".to_owned(), "answer 3".to_owned()),
            (4, 104, "perplexity".to_owned(), "answer 4".to_owned()),
        ]
    );
    let single: Vec<i64> = results_of(&alone.payload)?.iter().map(|r| r.evaluation_id).collect();
    assert_eq!(single, [1]);
    Ok(())
}

#[tokio::test]
async fn a_result_too_large_for_the_server_is_refused_alone_and_those_beside_it_are_stored() -> anyhow::Result<()> {
    let topology = Topology::new(aap_testkit::fresh_prefix());
    let queue = queue(topology.clone()).await?;
    let result = |id: i64, text: String| {
        std::sync::Arc::new(ResultMessage {
            evaluation_id: id,
            prompt_id: 100 + id,
            assistant: "claude".into(),
            response_text: text,
            ..ResultMessage::default()
        })
    };
    // Larger than the server takes in one message (NATS' default max_payload is 1 MB).
    let too_large = "x".repeat(queue.client().server_info().max_payload + 1);
    let published =
        queue.publish_results(&[result(1, "before".into()), result(2, too_large), result(3, "after".into())]).await;
    assert_eq!(published[0], Published::Stored);
    assert!(matches!(&published[1], Published::RefusedAlone(_)), "{:?}", published[1]);
    assert_eq!(published[2], Published::Stored);
    // The two that fit were stored, each alone (the large one stood between them).
    assert_eq!(messages(&queue, &topology.results_stream()).await?, 2);
    Ok(())
}
