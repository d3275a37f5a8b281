//! A bot's claims on a real PostgreSQL and NATS: a poll whose caller goes away before its task
//! reaches it (a Poll's deadline passed, an HTTP poller hung up) gives the task back at once,
//! its attempt not counted; a task given back is delivered again even when the stream's
//! acknowledged tasks are purged meanwhile (and only the tasks of the consumers purged are put
//! in line again); a task's signal wakes a Claim stream that can take it, not a busy one; and a
//! heartbeat never shortens a claim.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;

use aap_evaluations::gateway::{ClaimInput, Gateway, GatewayConfig, Serves, parse_serves};
use aap_evaluations::queue::{Queue, Settle};
use aap_evaluations::scheduler;
use aap_evaluations::store::{self, Holder, Wanted};
use aap_platform::nats::Topology;
use aap_proto::v1::Task;
use tokio::sync::mpsc;

/// A gateway on a fresh database and fresh streams, and a queued evaluation of each text by
/// its assistant, on the stream in that order.
async fn gateway_with_tasks(tasks: &[(&str, &str)]) -> anyhow::Result<(Gateway, sqlx::PgPool, Vec<i64>)> {
    configured_gateway_with_tasks(GatewayConfig::default(), tasks).await
}

async fn configured_gateway_with_tasks(
    config: GatewayConfig,
    tasks: &[(&str, &str)],
) -> anyhow::Result<(Gateway, sqlx::PgPool, Vec<i64>)> {
    let pool = aap_platform::db::connect_and_migrate(&aap_testkit::fresh_database().await, 4).await?;
    let infra = aap_testkit::infra().await;
    let client = async_nats::connect(infra.nats_url()).await?;
    let queue = Arc::new(Queue::new(client, Topology::new(aap_testkit::fresh_prefix()), 1).await?);
    let mut ids = Vec::new();
    for (assistant, text) in tasks {
        ids.push(queue_task(&pool, &queue, assistant, text).await?);
    }
    Ok((Gateway::new(pool.clone(), queue, config), pool, ids))
}

/// Creates an evaluation of `text` by `assistant` and puts its task on the stream; its id.
async fn queue_task(pool: &sqlx::PgPool, queue: &Queue, assistant: &str, text: &str) -> anyhow::Result<i64> {
    let prompt_id = common::insert_prompt(pool, text).await?;
    let wanted = [Wanted { assistant: assistant.into(), plan: "any".into(), refresh: false }];
    let mut conn = pool.acquire().await?;
    let created = store::create_many(&mut conn, prompt_id, &wanted, 3, &HashMap::new()).await?;
    let id = created.first().map(|(row, _)| row.id).ok_or_else(|| anyhow::anyhow!("nothing created"))?;
    assert_eq!(scheduler::schedule_pending(pool, queue).await?, 1, "the task is on the stream");
    Ok(id)
}

async fn gateway_with_a_task(text: &str) -> anyhow::Result<(Gateway, sqlx::PgPool, i64)> {
    let (gateway, pool, ids) = gateway_with_tasks(&[("chatgpt", text)]).await?;
    Ok((gateway, pool, ids[0]))
}

fn serving(assistant: &str) -> anyhow::Result<Serves> {
    Ok(parse_serves([(assistant.to_owned(), String::new())])?)
}

fn chatgpt() -> anyhow::Result<Serves> {
    serving("chatgpt")
}

async fn state(pool: &sqlx::PgPool, id: i64) -> anyhow::Result<(String, i32)> {
    Ok(sqlx::query_as("SELECT status, attempts FROM evaluations WHERE id = $1").bind(id).fetch_one(pool).await?)
}

/// Polls for a chatgpt task until one comes (the stream gives a delivery put back at once), for
/// at most 20 s.
async fn polled(gateway: &Gateway, holder: &Holder) -> anyhow::Result<Task> {
    polled_for(gateway, holder, &chatgpt()?).await
}

async fn polled_for(gateway: &Gateway, holder: &Holder, serves: &Serves) -> anyhow::Result<Task> {
    for _ in 0..400 {
        if let Some(task) = gateway.poll(holder, serves, Duration::from_secs(900)).await? {
            return Ok(task);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("no task came in 20 s")
}

#[tokio::test]
async fn a_poll_dropped_while_it_claims_gives_the_task_back_at_once_without_counting_the_attempt() -> anyhow::Result<()>
{
    let (gateway, pool, id) = gateway_with_a_task("which poll went away?").await?;
    // The evaluation's row is locked, so the poll's claim waits for it after its pull.
    let mut lock = pool.begin().await?;
    sqlx::query("SELECT id FROM evaluations WHERE id = $1 FOR UPDATE").bind(id).execute(&mut *lock).await?;
    let caller = {
        let (gateway, holder, serves) = (gateway.clone(), Holder::new("bot-a", "gone"), chatgpt()?);
        tokio::spawn(async move { gateway.poll(&holder, &serves, Duration::from_secs(900)).await })
    };
    let mut waited = 0;
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE 'UPDATE evaluations%'",
        )
        .fetch_one(&pool)
        .await?;
        if waiting > 0 {
            break;
        }
        waited += 1;
        assert!(waited < 400, "the poll's claim never waited for the row");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The caller goes away mid-claim (what tonic and axum do with a call whose client left).
    caller.abort();
    assert!(caller.await.is_err_and(|e| e.is_cancelled()), "the caller was dropped, not finished");
    lock.rollback().await?;

    // The claim made for nobody is undone: queued again, no attempt counted (before, it held the
    // task for the polling bot's 15 minutes; a pull dropped before its claim lost the delivery
    // for JetStream's 2-minute backstop).
    let mut waited = 0;
    while state(&pool, id).await? != ("queued".to_owned(), 0) {
        waited += 1;
        assert!(waited < 400, "not given back: {:?}", state(&pool, id).await?);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let task = polled(&gateway, &Holder::new("bot-b", "here")).await?;
    assert_eq!(task.evaluation_id, id);
    assert_eq!(task.attempt, 1, "the attempt given back did not count");
    assert_eq!(state(&pool, id).await?, ("claimed".to_owned(), 1));
    Ok(())
}

#[tokio::test]
async fn a_task_given_back_is_delivered_again_though_its_subject_was_purged_meanwhile() -> anyhow::Result<()> {
    let (gateway, pool, ids) =
        gateway_with_tasks(&[("chatgpt", "which task is answered?"), ("chatgpt", "which task is given back?")]).await?;
    let holder = Holder::new("bot-a", "both");
    assert_eq!(polled(&gateway, &holder).await?.evaluation_id, ids[0]);
    assert_eq!(polled(&gateway, &holder).await?.evaluation_id, ids[1]);
    // The second is given back (a NAK: JetStream puts it in line for delivery again) ...
    gateway.release(ids[1], false, "the page would not load", &holder).await?;
    // ... and the first one acknowledged (as its answer is taken), so the ack floor moves and the
    // next purge removes it; the ack waits for JetStream, which took the NAK before it.
    let first = store::evaluation(&pool, ids[0]).await?.and_then(|row| row.ack_subject);
    gateway.queue().settle(&first.ok_or_else(|| anyhow::anyhow!("no delivery"))?, Settle::Ack).await;
    let purged = scheduler::purge_tasks(&pool, gateway.queue()).await?;
    assert_eq!((purged.messages, purged.put_back), (1, 1), "the acknowledged task purged, the other put back");
    // nats-server emptied the consumer's redelivery queue with the purge; the task given back
    // is delivered again anyway, now (before, after JetStream's 2-minute ack wait).
    let again = polled(&gateway, &Holder::new("bot-b", "next")).await?;
    assert_eq!(again.evaluation_id, ids[1]);
    assert_eq!(again.attempt, 2);
    Ok(())
}

#[tokio::test]
async fn a_purge_puts_back_only_the_tasks_of_the_consumers_it_purged() -> anyhow::Result<()> {
    let (gateway, pool, ids) = gateway_with_tasks(&[
        ("chatgpt", "which chatgpt task is answered?"),
        ("claude", "which claude task is given back?"),
        ("claude", "which claude task waits?"),
    ])
    .await?;
    let holder = Holder::new("bot-a", "both");
    assert_eq!(polled(&gateway, &holder).await?.evaluation_id, ids[0]);
    assert_eq!(polled_for(&gateway, &holder, &serving("claude")?).await?.evaluation_id, ids[1]);
    gateway.release(ids[1], false, "the page would not load", &holder).await?;
    let chatgpt_delivery = store::evaluation(&pool, ids[0]).await?.and_then(|row| row.ack_subject);
    gateway.queue().settle(&chatgpt_delivery.ok_or_else(|| anyhow::anyhow!("no delivery"))?, Settle::Ack).await;
    // Only chatgpt's subject is purged: claude's task given back is still in its consumer's line
    // and is not NAKed again (after an outage that would be every task waiting, every second).
    let purged = scheduler::purge_tasks(&pool, gateway.queue()).await?;
    assert_eq!((purged.messages, purged.put_back), (1, 0));
    let again = polled_for(&gateway, &Holder::new("bot-b", "next"), &serving("claude")?).await?;
    assert_eq!((again.evaluation_id, again.attempt), (ids[1], 2), "the task given back comes first, once more");
    Ok(())
}

/// A bot's Claim stream on `gateway`, taking `credit` tasks and never asking for more.
fn claim_stream(gateway: &Gateway, bot_id: &str, credit: u32) -> (tokio::task::JoinHandle<()>, mpsc::Receiver<Task>) {
    let (tasks, pushed) = mpsc::channel(8);
    let (gateway, holder) = (gateway.clone(), Holder::new("bots", bot_id));
    let serves = chatgpt().expect("chatgpt is an assistant");
    let session = async move {
        let inputs = futures::stream::pending::<ClaimInput>();
        gateway.run_claim_session(holder, serves, credit, inputs, tasks, std::future::pending()).await;
    };
    (tokio::spawn(session), pushed)
}

async fn pushed(tasks: &mut mpsc::Receiver<Task>) -> anyhow::Result<Task> {
    let next = tokio::time::timeout(Duration::from_secs(20), tasks.recv()).await;
    next.map_err(|_| anyhow::anyhow!("no task pushed in 20 s"))?.ok_or_else(|| anyhow::anyhow!("the stream ended"))
}

#[tokio::test]
async fn a_signal_wakes_a_claim_stream_that_can_take_the_task_not_a_busy_one() -> anyhow::Result<()> {
    // The streams pull on their own only every hour here: a task comes by its signal or not at all.
    let config = GatewayConfig { claim_recheck: Duration::from_secs(3600), ..GatewayConfig::default() };
    let (gateway, pool, ids) =
        configured_gateway_with_tasks(config, &[("chatgpt", "which task keeps a bot busy?")]).await?;
    let (busy, mut busy_tasks) = claim_stream(&gateway, "busy", 1);
    assert_eq!(pushed(&mut busy_tasks).await?.evaluation_id, ids[0], "the busy bot has no credit left");

    // The idle stream's pull (a JetStream request) finds nothing; it then waits for a signal,
    // after the busy one, which waited first.
    let topology = gateway.queue().topology().clone();
    let client = async_nats::connect(aap_testkit::infra().await.nats_url()).await?;
    let mut pulls = client.subscribe(format!("$JS.API.CONSUMER.MSG.NEXT.{}.>", topology.tasks_stream())).await?;
    client.flush().await?;
    let (idle, mut idle_tasks) = claim_stream(&gateway, "idle", 1);
    let pulled = tokio::time::timeout(Duration::from_secs(20), pulls.next()).await;
    assert!(pulled.is_ok_and(|pull| pull.is_some()), "the idle claim stream never pulled");

    // One task, one signal: it goes to the stream that can take it (before, the busy stream
    // took the wake-up and pulled nothing, and the task waited for the idle one's tick).
    let id = queue_task(&pool, gateway.queue(), "chatgpt", "which task goes to the idle bot?").await?;
    assert_eq!(pushed(&mut idle_tasks).await?.evaluation_id, id);
    assert_eq!(state(&pool, id).await?, ("claimed".to_owned(), 1));
    busy.abort();
    idle.abort();
    Ok(())
}

#[tokio::test]
async fn a_heartbeat_extends_a_claim_and_never_shortens_it() -> anyhow::Result<()> {
    let (gateway, pool, id) = gateway_with_a_task("how long is a polled claim?").await?;
    let holder = Holder::new("bot-a", "poller");
    let task = polled(&gateway, &holder).await?;
    assert_eq!(task.evaluation_id, id);
    let expiry = || async {
        let (at,): (chrono::DateTime<chrono::Utc>,) =
            sqlx::query_as("SELECT claim_expires_at FROM evaluations WHERE id = $1").bind(id).fetch_one(&pool).await?;
        anyhow::Ok(at)
    };
    let polled_until = expiry().await?;
    // A heartbeat of 60 s on a claim polled for 15 minutes leaves it as it is.
    let until = gateway.heartbeat(id, Duration::from_secs(60), &holder).await?;
    assert_eq!(until, polled_until, "the heartbeat moved the claim's end");
    assert_eq!(expiry().await?, polled_until);
    // An id that cannot be an evaluation's is the caller's mistake, said so.
    for id in [0, -5] {
        assert!(
            matches!(
                gateway.heartbeat(id, Duration::from_secs(60), &holder).await,
                Err(aap_evaluations::EvalError::InvalidArgument { field: "evaluation_id", .. })
            ),
            "heartbeat of {id}"
        );
    }
    // One longer than what is left extends it.
    let until = gateway.heartbeat(id, Duration::from_secs(3600), &holder).await?;
    assert!(until > polled_until, "{until} is not later than {polled_until}");
    assert_eq!(expiry().await?, until);
    Ok(())
}
