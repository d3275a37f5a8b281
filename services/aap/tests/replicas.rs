//! Several processes of the platform against one PostgreSQL and one NATS, each running a subset
//! of the services (`aap serve --services ...`): the scheduler hands each evaluation to the
//! queue once however many run, ingest replicas share one durable consumer and store each
//! answer once, and a stream on one replica hears an answer ingested by another.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use aap::client::Bearer;
use aap::platform::{Listeners, Platform};
use aap::services::{Service, Services};
use aap_proto::v1::answer_event::Event;
use aap_proto::v1::answers_service_client::AnswersServiceClient;
use aap_proto::v1::claim_request::Msg as ClaimMsg;
use aap_proto::v1::claim_response::Msg as ClaimReply;
use aap_proto::v1::evaluation_service_client::EvaluationServiceClient;
use aap_proto::v1::{ClaimHeartbeat, ClaimHello, ClaimRequest, ClaimResponse, PollRequest, SimilarPolicy, Target};
use common::{BOT, CUSTOMER, Options, ask_text, citation, platform_config};
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// One database and one stream prefix that every replica of a test shares.
struct Cluster {
    database_url: String,
    nats_url: String,
    prefix: String,
    pool: sqlx::PgPool,
}

impl Cluster {
    async fn new() -> Cluster {
        aap_testkit::init_tracing();
        let database_url = aap_testkit::fresh_database().await;
        let nats_url = aap_testkit::infra().await.nats_url().to_owned();
        let pool = sqlx::PgPool::connect(&database_url).await.expect("test pool");
        Cluster { database_url, nats_url, prefix: aap_testkit::fresh_prefix(), pool }
    }

    /// Starts a process running `services`, with the seed HTTP API and console listeners only
    /// where `aap serve` would bind them.
    async fn replica(&self, services: &[Service]) -> Replica {
        self.replica_with(services, &Options::default()).await
    }

    async fn replica_with(&self, services: &[Service], options: &Options) -> Replica {
        let services = Services::only(services.iter().copied());
        let mut config =
            platform_config(self.database_url.clone(), self.nats_url.clone(), self.prefix.clone(), options);
        config.services = services.clone();
        let bind = || TcpListener::bind("127.0.0.1:0");
        let listeners = Listeners {
            grpc: bind().await.expect("bind grpc"),
            http: match services.runs(Service::Evaluations) {
                true => Some(bind().await.expect("bind http")),
                false => None,
            },
            console: match services.runs(Service::Console) {
                true => Some(bind().await.expect("bind console")),
                false => None,
            },
        };
        let platform = Platform::serve(config, listeners).await.expect("replica starts");
        let channel = Channel::from_shared(format!("http://{}", platform.grpc_addr))
            .expect("url")
            .connect()
            .await
            .expect("connect");
        Replica { platform, channel }
    }

    async fn count(&self, sql: &str) -> i64 {
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&self.pool).await.expect(sql);
        n
    }

    /// Waits (bounded) until `sql` counts `want`.
    async fn wait_count(&self, sql: &str, want: i64) {
        let mut last = -1;
        for _ in 0..600 {
            last = self.count(sql).await;
            if last == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{sql} counted {last}, not {want}, within 60 s");
    }
}

struct Replica {
    platform: Platform,
    channel: Channel,
}

impl Replica {
    fn answers(&self) -> AnswersServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>> {
        AnswersServiceClient::with_interceptor(self.channel.clone(), Bearer::new(CUSTOMER).expect("token"))
    }

    fn evaluations(&self) -> EvaluationServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>> {
        EvaluationServiceClient::with_interceptor(self.channel.clone(), Bearer::new(BOT).expect("token"))
    }

    async fn health(&self, service: &str) -> Result<ServingStatus, tonic::Code> {
        let reply = HealthClient::new(self.channel.clone())
            .check(HealthCheckRequest { service: service.to_owned() })
            .await
            .map_err(|status| status.code())?;
        Ok(reply.into_inner().status())
    }

    /// Waits (bounded) until health reports `service` SERVING.
    async fn wait_serving(&self, service: &str) {
        for _ in 0..100 {
            if self.health(service).await == Ok(ServingStatus::Serving) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{service:?} is not SERVING: {:?}", self.health(service).await);
    }

    /// Polls until a task for `assistant` comes, then submits an answer for it; returns its id.
    async fn answer_one(&self, assistant: &str) -> i64 {
        let mut bot = self.evaluations();
        for _ in 0..400 {
            let reply = bot
                .poll(PollRequest {
                    bot_id: "test-bot".into(),
                    serves: Some(Target { assistant: assistant.into(), plan: String::new() }),
                })
                .await
                .expect("poll")
                .into_inner();
            let Some(task) = reply.task else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            bot.submit(aap_proto::v1::SubmitRequest {
                evaluation_id: task.evaluation_id,
                response_text: format!("answer to {}", task.prompt_text),
                response_markdown: format!("answer to {}", task.prompt_text),
                citations: vec![citation("https://www.rtings.com/laptop", "RTINGS")],
                bot_id: "test-bot".into(),
                kind: aap_proto::v1::AnswerKind::Text as i32,
                ..Default::default()
            })
            .await
            .expect("submit");
            return task.evaluation_id;
        }
        panic!("no task for {assistant} within 20 s");
    }
}

#[tokio::test]
async fn a_process_serves_only_its_services_and_reports_health_for_each() {
    let cluster = Cluster::new().await;
    let workers = cluster.replica(&[Service::Scheduler, Service::Ingest]).await;
    assert_eq!(workers.platform.http_addr, None, "no seed HTTP API without the evaluations service");
    assert_eq!(workers.platform.console_addr, None, "no console without the console service");
    workers.wait_serving("").await;
    assert_eq!(workers.health("aap.scheduler").await, Ok(ServingStatus::Serving));
    assert_eq!(workers.health("aap.ingest").await, Ok(ServingStatus::Serving));
    assert_eq!(workers.health("aap.v1.AdminService").await, Ok(ServingStatus::Serving));
    assert_eq!(workers.health("aap.v1.AnswersService").await, Err(tonic::Code::NotFound));
    let refused = workers.answers().ask(ask_text("best laptops", &["chatgpt"])).await.expect_err("no answers here");
    assert_eq!(refused.code(), tonic::Code::Unimplemented, "{refused:?}");

    let front = cluster.replica(&[Service::Answers, Service::Evaluations]).await;
    front.wait_serving("aap.v1.AnswersService").await;
    assert_eq!(front.health("aap.v1.EvaluationService").await, Ok(ServingStatus::Serving));
    assert_eq!(front.health("aap.scheduler").await, Err(tonic::Code::NotFound));
    assert!(front.platform.http_addr.is_some(), "the evaluations service brings the seed HTTP API");
    for replica in [workers, front] {
        replica.platform.shutdown().await.expect("clean stop");
    }
}

#[tokio::test]
async fn the_session_services_need_no_nats_and_only_they_need_the_session_key() {
    let cluster = Cluster::new().await;
    let mut config = platform_config(
        cluster.database_url.clone(),
        "nats://127.0.0.1:9".into(),
        cluster.prefix.clone(),
        &Options::default(),
    );
    config.services = Services::only([Service::Sessions, Service::Console]);
    let bind = || TcpListener::bind("127.0.0.1:0");
    let listeners =
        Listeners { grpc: bind().await.expect("grpc"), http: None, console: Some(bind().await.expect("console")) };
    // Nothing listens on port 9: a process that tried NATS would not start.
    let sessions = Platform::serve(config.clone(), listeners).await.expect("sessions start without nats");
    assert!(sessions.console_addr.is_some());
    sessions.shutdown().await.expect("clean stop");

    config.sessions.key = None;
    let listeners = Listeners { grpc: bind().await.expect("grpc"), http: None, console: None };
    let error = Platform::serve(config.clone(), listeners).await.err().expect("sessions refuse to start without a key");
    assert!(error.to_string().contains("AAP_SESSION_KEY"), "{error:#}");

    config.nats_url = cluster.nats_url.clone();
    config.services = Services::only([Service::Ingest]);
    let listeners = Listeners { grpc: bind().await.expect("grpc"), http: None, console: None };
    let ingest = Platform::serve(config, listeners).await.expect("the ingest needs no session key");
    ingest.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn two_schedulers_put_each_evaluation_on_the_queue_once() {
    let cluster = Cluster::new().await;
    // Every task published, as core NATS sees it: a second publish of one evaluation would show
    // here even though JetStream's de-duplication would keep it off the stream.
    let nats = async_nats::connect(&cluster.nats_url).await.expect("nats");
    let mut published = nats.subscribe(format!("{}.tasks.>", cluster.prefix)).await.expect("subscribe");
    let front = cluster.replica(&[Service::Answers]).await;
    const PROMPTS: usize = 40;
    let targets = ["chatgpt", "claude", "perplexity", "google-ai-overview"];
    for n in 0..PROMPTS {
        let mut request = ask_text(&format!("replica scheduling question number {n}"), &targets);
        request.policy = SimilarPolicy::ForceNew as i32;
        // The stream is not followed: the evaluations are created and stay pending.
        drop(front.answers().ask(request).await.expect("ask"));
    }
    let expected = (PROMPTS * targets.len()) as i64;
    cluster.wait_count("SELECT count(*) FROM evaluations WHERE status = 'pending'", expected).await;

    // Both start at once and race for the same rows.
    let (one, two) = tokio::join!(cluster.replica(&[Service::Scheduler]), cluster.replica(&[Service::Scheduler]));
    cluster.wait_count("SELECT count(*) FROM evaluations WHERE status = 'queued'", expected).await;

    let mut seen: HashMap<String, usize> = HashMap::new();
    while seen.values().sum::<usize>() < expected as usize {
        let message = tokio::time::timeout(Duration::from_secs(30), published.next())
            .await
            .expect("every task is published")
            .expect("subscription open");
        let id = message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).map(|v| v.to_string());
        *seen.entry(id.expect("a task carries its Msg-Id")).or_default() += 1;
    }
    // A late duplicate would arrive within a scheduler tick or two (200 ms each).
    let late = tokio::time::timeout(Duration::from_secs(2), published.next()).await;
    assert!(late.is_err(), "a task was published again: {:?}", late.ok().flatten().map(|m| m.headers));
    assert_eq!(seen.len(), expected as usize, "one publish per evaluation");
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");

    let js = async_nats::jetstream::new(nats);
    let mut stream = js
        .get_stream(format!("{}_TASKS", cluster.prefix.to_uppercase().replace('-', "_")))
        .await
        .expect("tasks stream");
    assert_eq!(stream.info().await.expect("info").state.messages, expected as u64);
    for replica in [front, one, two] {
        replica.platform.shutdown().await.expect("clean stop");
    }
}

#[tokio::test]
async fn an_answer_ingested_by_one_replica_reaches_a_stream_waiting_on_another() {
    let cluster = Cluster::new().await;
    let front = cluster.replica(&[Service::Answers]).await;
    let back = cluster.replica(&[Service::Evaluations, Service::Scheduler, Service::Ingest]).await;

    let stream =
        front.answers().ask(ask_text("which replica answers this", &["claude"])).await.expect("ask").into_inner();
    let collected = tokio::spawn(common::collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let evaluation_id = back.answer_one("claude").await;

    let events = collected.await.expect("stream task");
    let answer = common::first_answer(&events);
    assert_eq!(answer.evaluation_id, evaluation_id);
    assert!(answer.response_text.contains("which replica answers this"), "{answer:?}");
    assert!(matches!(events.last(), Some(Event::Completed(_))), "the stream ends complete: {events:?}");
    for replica in [front, back] {
        replica.platform.shutdown().await.expect("clean stop");
    }
}

#[tokio::test]
async fn two_ingests_share_one_consumer_store_each_answer_once_and_survive_one_stopping() {
    let cluster = Cluster::new().await;
    let front = cluster.replica(&[Service::Answers, Service::Evaluations, Service::Scheduler]).await;
    let mut first = Some(cluster.replica(&[Service::Ingest]).await);
    let second = cluster.replica(&[Service::Ingest]).await;

    const EACH: usize = 10;
    let mut submitted = Vec::new();
    for n in 0..2 * EACH {
        let mut request = ask_text(&format!("ingest replicas question {n}"), &["perplexity"]);
        request.policy = SimilarPolicy::ForceNew as i32;
        drop(front.answers().ask(request).await.expect("ask"));
        submitted.push(front.answer_one("perplexity").await);
        if n + 1 == EACH {
            // Half the answers are in; one ingest goes away and the other carries on.
            cluster.wait_count("SELECT count(*) FROM answers", EACH as i64).await;
            let first = first.take().expect("the first ingest runs");
            first.platform.shutdown().await.expect("clean stop");
        }
    }
    cluster.wait_count("SELECT count(*) FROM evaluations WHERE status = 'answered'", 2 * EACH as i64).await;
    assert_eq!(cluster.count("SELECT count(*) FROM answers").await, 2 * EACH as i64);
    assert_eq!(
        cluster.count("SELECT count(DISTINCT evaluation_id) FROM answers").await,
        2 * EACH as i64,
        "one answer per evaluation"
    );

    let nats = async_nats::connect(&cluster.nats_url).await.expect("nats");
    let js = async_nats::jetstream::new(nats);
    let stem = cluster.prefix.to_uppercase().replace('-', "_");
    let mut results = js.get_stream(format!("{stem}_RESULTS")).await.expect("results stream");
    // Every result was acknowledged, and the ingest that runs purges what was (each second);
    // every task too, and the scheduler purges them (each tick).
    let mut tasks = js.get_stream(format!("{stem}_TASKS")).await.expect("tasks stream");
    for (stream, what) in [(&mut results, "results"), (&mut tasks, "tasks")] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut left = u64::MAX;
        while left > 0 && std::time::Instant::now() < deadline {
            left = stream.info().await.expect("info").state.messages;
            if left > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        assert_eq!(left, 0, "the acknowledged {what} were never purged");
    }
    let ingest = results.consumer_info("ingest").await.expect("ingest consumer").clone();
    assert_eq!((ingest.num_pending, ingest.num_ack_pending), (0, 0), "every result was acknowledged");
    let consumers: Vec<String> =
        results.consumer_names().collect::<Vec<_>>().await.into_iter().map(|n| n.expect("name")).collect();
    assert_eq!(consumers, vec!["ingest".to_owned()], "the replicas share one durable consumer");
    for replica in [front, second] {
        replica.platform.shutdown().await.expect("clean stop");
    }
}

/// A bot's Claim stream on `replica`, serving chatgpt: what it sends, what it is told.
async fn open_claim(
    replica: &Replica,
    bot_id: &str,
) -> (tokio::sync::mpsc::Sender<ClaimRequest>, tonic::Streaming<ClaimResponse>) {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let hello = ClaimHello {
        bot_id: bot_id.into(),
        serves: vec![Target { assistant: "chatgpt".into(), plan: String::new() }],
        max_tasks: 1,
    };
    tx.send(ClaimRequest { msg: Some(ClaimMsg::Hello(hello)) }).await.expect("hello");
    let mut replies = replica.evaluations().claim(ReceiverStream::new(rx)).await.expect("claim").into_inner();
    let first = tokio::time::timeout(Duration::from_secs(20), replies.message()).await;
    let welcome = first.expect("a welcome in 20 s").expect("claim stream").and_then(|r| r.msg);
    assert!(matches!(welcome, Some(ClaimReply::Welcome(_))), "{welcome:?}");
    (tx, replies)
}

async fn claim_of(cluster: &Cluster, evaluation_id: i64) -> (String, Option<String>, chrono::DateTime<chrono::Utc>) {
    sqlx::query_as("SELECT status, claimed_by, claim_expires_at FROM evaluations WHERE id = $1")
        .bind(evaluation_id)
        .fetch_one(&cluster.pool)
        .await
        .expect("evaluation")
}

#[tokio::test]
async fn a_stopping_gateway_ends_its_claim_streams_and_its_bots_keep_their_tasks_on_another_replica() {
    let cluster = Cluster::new().await;
    let front = cluster.replica(&[Service::Answers, Service::Scheduler, Service::Ingest]).await;
    let stopping = cluster.replica(&[Service::Evaluations]).await;
    let other = cluster.replica(&[Service::Evaluations]).await;

    let (_said, mut replies) = open_claim(&stopping, "drain-bot").await;
    let mut events = open_ask(&front, "Which tent survives a storm, asked as a gateway stops?", "chatgpt").await;
    let pushed = tokio::time::timeout(Duration::from_secs(30), replies.message()).await;
    let task = match pushed.expect("a task in 30 s").expect("claim stream").and_then(|r| r.msg) {
        Some(ClaimReply::Task(task)) => task,
        other => panic!("expected a task, got {other:?}"),
    };

    // The bot works on its task while the replica it claimed it from stops. Before, the stop
    // waited for the stream for as long as the bot lived (and a stream that ended handed the
    // task back, so another bot asked the assistant again and this bot's answer was refused).
    let stopped = tokio::spawn(stopping.platform.shutdown());
    match tokio::time::timeout(Duration::from_secs(20), replies.message()).await {
        Err(_) => panic!("the claim stream is still open 20 s after its server began to stop"),
        Ok(Ok(Some(reply))) => panic!("nothing more is pushed once the server stops: {reply:?}"),
        Ok(Ok(None)) => panic!("the claim stream ended without a status"),
        Ok(Err(status)) => assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}"),
    }
    let stop = tokio::time::timeout(Duration::from_secs(20), stopped).await;
    stop.expect("the server stopped in 20 s").expect("no panic").expect("a clean stop");
    let (status, holder, expires) = claim_of(&cluster, task.evaluation_id).await;
    assert_eq!((status.as_str(), holder.as_deref()), ("claimed", Some("drain-bot")), "the bot keeps its task");

    // The bot opens its stream on the other replica and heartbeats its task there: held there.
    let (said, _replies) = open_claim(&other, "drain-bot").await;
    let heartbeat = ClaimHeartbeat { evaluation_ids: vec![task.evaluation_id] };
    tokio::time::sleep(Duration::from_millis(1100)).await; // claim times are stored to the second
    said.send(ClaimRequest { msg: Some(ClaimMsg::Heartbeat(heartbeat)) }).await.expect("heartbeat");
    let mut extended = false;
    for _ in 0..200 {
        if claim_of(&cluster, task.evaluation_id).await.2 > expires {
            extended = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(extended, "the other replica took the heartbeat of a task claimed on the stopped one");
    let mut bot = other.evaluations();
    bot.submit(aap_proto::v1::SubmitRequest {
        evaluation_id: task.evaluation_id,
        response_text: "The one with the most guy lines.".into(),
        response_markdown: "The one with the most guy lines.".into(),
        citations: vec![citation("https://www.rtings.com/tent", "RTINGS")],
        bot_id: "drain-bot".into(),
        kind: aap_proto::v1::AnswerKind::Text as i32,
        ..Default::default()
    })
    .await
    .expect("the bot's answer is taken by the other replica");
    let answer = next_matching(&mut events, "the answer", |e| matches!(e, Event::Answer(_))).await;
    let Event::Answer(answer) = answer else { unreachable!() };
    assert_eq!(answer.evaluation_id, task.evaluation_id);
    next_matching(&mut events, "completed", |e| matches!(e, Event::Completed(_))).await;
    assert_eq!(cluster.count("SELECT count(*) FROM answers").await, 1);
    let attempts = format!("SELECT attempts::bigint FROM evaluations WHERE id = {}", task.evaluation_id);
    assert_eq!(cluster.count(&attempts).await, 1, "answered on its first attempt: never handed to another bot");
    for replica in [front, other] {
        replica.platform.shutdown().await.expect("clean stop");
    }
}

/// Transactions committed in the cluster's database so far (a query outside a transaction is
/// one). Backends report them within about a second, idle ones within ten.
async fn transactions(cluster: &Cluster) -> i64 {
    cluster.count("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").await
}

/// A stored answer, written straight to the database: no announcement on NATS, as if the
/// replica had missed it.
async fn store_unannounced(cluster: &Cluster, evaluation_id: i64, text: &str) {
    let (prompt_id, assistant, plan): (i64, String, String) =
        sqlx::query_as("SELECT prompt_id, assistant, plan FROM evaluations WHERE id = $1")
            .bind(evaluation_id)
            .fetch_one(&cluster.pool)
            .await
            .expect("evaluation");
    let result = aap_evaluations::model::ResultMessage {
        evaluation_id,
        prompt_id,
        assistant,
        plan,
        response_text: text.to_owned(),
        response_markdown: text.to_owned(),
        captured_at: chrono::Utc::now(),
        bot_id: "test-bot".into(),
        ..Default::default()
    };
    assert!(aap_evaluations::store::store_answer(&cluster.pool, &result).await.expect("store").inserted, "stored once");
}

type Events = tokio::sync::mpsc::UnboundedReceiver<Event>;

/// Opens an Ask stream whose events arrive on the returned channel.
async fn open_ask(replica: &Replica, prompt: &str, assistant: &str) -> Events {
    let mut stream = replica.answers().ask(ask_text(prompt, &[assistant])).await.expect("ask").into_inner();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(Ok(reply)) = stream.next().await {
            if let Some(event) = reply.event.and_then(|e| e.event) {
                let _ = tx.send(event);
            }
        }
    });
    rx
}

/// The next event of a stream that `matches`, skipping the others (bounded).
async fn next_matching(events: &mut Events, what: &str, mut matches: impl FnMut(&Event) -> bool) -> Event {
    let wait = async {
        while let Some(event) = events.recv().await {
            if matches(&event) {
                return Some(event);
            }
        }
        None
    };
    match tokio::time::timeout(Duration::from_secs(30), wait).await {
        Ok(Some(event)) => event,
        Ok(None) => panic!("the stream ended before {what}"),
        Err(_) => panic!("no {what} within 30 s"),
    }
}

#[tokio::test]
async fn waiting_streams_share_one_read_per_change_and_a_missed_announcement_is_swept_up() {
    let cluster = Cluster::new().await;
    // No scheduler: the evaluations stay pending and every stream waits.
    let front = cluster.replica(&[Service::Answers]).await;
    const STREAMS: usize = 100;
    let prompts = ["which stream reads the database one", "which stream reads the database two"];
    let mut streams: Vec<(usize, Events)> = Vec::new();
    for (n, prompt) in prompts.iter().enumerate() {
        for _ in 0..STREAMS {
            let mut events = open_ask(&front, prompt, "chatgpt").await;
            next_matching(&mut events, "the progress", |e| matches!(e, Event::Progress(_))).await;
            streams.push((n, events));
        }
    }
    let evaluations: Vec<i64> = sqlx::query_as::<_, (i64,)>("SELECT id FROM evaluations ORDER BY id")
        .fetch_all(&cluster.pool)
        .await
        .expect("evaluations")
        .into_iter()
        .map(|(id,)| id)
        .collect();
    assert_eq!(evaluations.len(), 2, "one evaluation per prompt, however many ask");

    // 200 waiting streams, re-reading their prompt every 500 ms each as they once did, would
    // commit about 800 transactions a second; the replica now sweeps them in one query.
    let before = transactions(&cluster).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let idle = transactions(&cluster).await - before;
    println!("{idle} transactions in 12 s while {} streams waited", 2 * STREAMS);
    assert!(idle < 600, "{idle} transactions in 12 s while 200 streams waited");

    // The first prompt's answer is stored with no announcement: the sweep finds it.
    store_unannounced(&cluster, evaluations[0], "found by the sweep").await;
    for (n, events) in streams.iter_mut().filter(|(n, _)| *n == 0) {
        let answer = next_matching(events, "the unannounced answer", |e| matches!(e, Event::Answer(_))).await;
        assert!(matches!(answer, Event::Answer(a) if a.response_text == "found by the sweep"), "prompt {n}");
    }
    // The second one the usual way: stored, then announced.
    store_unannounced(&cluster, evaluations[1], "announced").await;
    let nats = async_nats::connect(&cluster.nats_url).await.expect("nats");
    let subject = format!("{}.events.prompt.", cluster.prefix);
    let (prompt_id,): (i64,) = sqlx::query_as("SELECT prompt_id FROM evaluations WHERE id = $1")
        .bind(evaluations[1])
        .fetch_one(&cluster.pool)
        .await
        .expect("prompt");
    nats.publish(format!("{subject}{prompt_id}"), "changed".into()).await.expect("announce");
    for (_, events) in streams.iter_mut().filter(|(n, _)| *n == 1) {
        let answer = next_matching(events, "the announced answer", |e| matches!(e, Event::Answer(_))).await;
        assert!(matches!(answer, Event::Answer(a) if a.response_text == "announced"));
        next_matching(events, "the end", |e| matches!(e, Event::Completed(_))).await;
    }
    front.platform.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn a_change_of_state_alone_rereads_only_the_evaluations_yet_never_misses_a_stored_answer() {
    let cluster = Cluster::new().await;
    // No sweep within the test: what the streams see comes from announcements alone.
    let announced_only = Options { sweep_every: Duration::from_secs(3600), ..Options::default() };
    let front = cluster.replica_with(&[Service::Answers], &announced_only).await;
    let prompts = ["which state announcement reads answers one", "which state announcement reads answers two"];
    let mut streams = Vec::new();
    for prompt in prompts {
        let mut events = open_ask(&front, prompt, "perplexity").await;
        next_matching(&mut events, "the progress", |e| matches!(e, Event::Progress(_))).await;
        streams.push(events);
    }
    let (first, second): (i64, i64) =
        sqlx::query_as("SELECT min(id), max(id) FROM evaluations").fetch_one(&cluster.pool).await.expect("evaluations");
    let nats = async_nats::connect(&cluster.nats_url).await.expect("nats");
    let announce = async |evaluation_id: i64, change: aap_evaluations::queue::Change| {
        let (prompt_id,): (i64,) = sqlx::query_as("SELECT prompt_id FROM evaluations WHERE id = $1")
            .bind(evaluation_id)
            .fetch_one(&cluster.pool)
            .await
            .expect("prompt");
        let subject = format!("{}.events.prompt.{prompt_id}", cluster.prefix);
        nats.publish(subject, change.payload()).await.expect("announce");
        nats.flush().await.expect("flush");
    };

    // A change of state alone is read and told: the evaluation failed its first attempt.
    sqlx::query("UPDATE evaluations SET attempts = 1, failure_reason = 'told by a state announcement' WHERE id = $1")
        .bind(first)
        .execute(&cluster.pool)
        .await
        .expect("update");
    announce(first, aap_evaluations::queue::Change::State).await;
    let told = next_matching(
        &mut streams[0],
        "the new state",
        |e| matches!(e, Event::Failed(f) if f.reason == "told by a state announcement"),
    )
    .await;
    assert!(matches!(told, Event::Failed(f) if f.will_retry), "a first attempt's failure is retried");

    // An answer stored (its own announcement lost) and then a change of state announced: the
    // evaluations say answered, so the answers are read too and the stream gets the answer.
    store_unannounced(&cluster, second, "read after a state announcement").await;
    announce(second, aap_evaluations::queue::Change::State).await;
    let answer = next_matching(&mut streams[1], "the answer", |e| matches!(e, Event::Answer(_))).await;
    assert!(matches!(answer, Event::Answer(a) if a.response_text == "read after a state announcement"));
    next_matching(&mut streams[1], "the end", |e| matches!(e, Event::Completed(_))).await;

    // The same after a state-only read kept the answers: the first prompt's answer arrives.
    store_unannounced(&cluster, first, "the first prompt's answer").await;
    announce(first, aap_evaluations::queue::Change::State).await;
    let answer = next_matching(&mut streams[0], "the answer", |e| matches!(e, Event::Answer(_))).await;
    assert!(matches!(answer, Event::Answer(a) if a.response_text == "the first prompt's answer"));
    front.platform.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn an_announcement_that_tells_the_evaluation_is_applied_unread_and_an_older_one_never_sets_a_stream_back() {
    use aap_evaluations::queue::Change;
    use aap_evaluations::store::{self, AnswerRow, EvaluationRow};
    let cluster = Cluster::new().await;
    // No sweep: what the stream sees comes from announcements alone.
    let announced_only = Options { sweep_every: Duration::from_secs(3600), ..Options::default() };
    let front = cluster.replica_with(&[Service::Answers], &announced_only).await;
    let mut events = open_ask(&front, "which told announcement is applied unread", "chatgpt").await;
    next_matching(&mut events, "the progress", |e| matches!(e, Event::Progress(_))).await;
    let (id,): (i64,) =
        sqlx::query_as("SELECT id FROM evaluations").fetch_one(&cluster.pool).await.expect("evaluation");
    let stored = store::evaluation(&cluster.pool, id).await.expect("read").expect("stored");
    let nats = async_nats::connect(&cluster.nats_url).await.expect("nats");
    let subject = format!("{}.events.prompt.{}", cluster.prefix, stored.prompt_id);
    let told = |revision: i64, status: &str, attempts: i32, reason: Option<&str>| EvaluationRow {
        revision: stored.revision + revision,
        status: status.into(),
        attempts,
        failure_reason: reason.map(str::to_owned),
        ..stored.clone()
    };
    let announce = async |change: Change| {
        nats.publish(subject.clone(), change.payload()).await.expect("announce");
        nats.flush().await.expect("flush");
    };

    // A state the database does not hold: the stream can only have it from the announcement.
    announce(Change::told(vec![told(10, "queued", 1, Some("told, never stored"))], vec![])).await;
    let failed = next_matching(&mut events, "the told state", |e| matches!(e, Event::Failed(_))).await;
    assert!(matches!(&failed, Event::Failed(f) if f.reason == "told, never stored" && f.will_retry), "{failed:?}");

    // An older revision arrives late, then the answer: the stream goes from the told state to
    // the answer, never back to the older one.
    announce(Change::told(vec![told(5, "queued", 2, Some("older, arrived late"))], vec![])).await;
    let answer = AnswerRow {
        evaluation_id: id,
        prompt_id: stored.prompt_id,
        assistant: stored.assistant.clone(),
        plan: stored.plan.clone(),
        response_text: "the told answer".into(),
        response_markdown: "the told answer".into(),
        kind: "text".into(),
        captured_at: chrono::Utc::now(),
        ..AnswerRow::default()
    };
    announce(Change::told(vec![told(20, "answered", 1, None)], vec![answer])).await;
    let mut seen = Vec::new();
    let end = next_matching(&mut events, "the end", |e| {
        seen.push(format!("{e:?}"));
        matches!(e, Event::Completed(_))
    })
    .await;
    assert!(matches!(&end, Event::Completed(c) if c.answered == 1), "{end:?}");
    assert!(seen.iter().any(|e| e.contains("the told answer")), "the answer came from the announcement: {seen:?}");
    assert!(!seen.iter().any(|e| e.contains("older, arrived late")), "an older revision was told: {seen:?}");
    front.platform.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn an_answer_kept_in_memory_never_hides_a_newer_one_announced_or_not() {
    let cluster = Cluster::new().await;
    let once = Options { max_attempts: 1, ..Options::default() };
    let front = cluster.replica_with(&[Service::Answers], &once).await;
    let back = cluster
        .replica_with(&[Service::Answers, Service::Evaluations, Service::Scheduler, Service::Ingest], &once)
        .await;
    let failed = |e: &Event| matches!(e, Event::Failed(f) if !f.will_retry);

    for (prompt, announced) in [("kept in memory, then answered elsewhere", true), ("kept, then missed", false)] {
        // A failure the front replica keeps in memory: every evaluation of the prompt is final.
        let mut first = open_ask(&front, prompt, "claude").await;
        let mut bot = back.evaluations();
        let task = loop {
            let reply = bot
                .poll(PollRequest {
                    bot_id: "test-bot".into(),
                    serves: Some(Target { assistant: "claude".into(), plan: String::new() }),
                })
                .await
                .expect("poll")
                .into_inner();
            match reply.task {
                Some(task) => break task,
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        bot.release(aap_proto::v1::ReleaseRequest {
            evaluation_id: task.evaluation_id,
            mark_as_failed: true,
            failure_reason: "login-wall: signed out".into(),
            bot_id: "test-bot".into(),
        })
        .await
        .expect("release");
        next_matching(&mut first, "the failure", failed).await;
        // The front replica keeps the settled prompt: a second Ask there is served from memory.
        let mut kept = open_ask(&front, prompt, "claude").await;
        drop(kept.recv().await);

        // A newer answer comes elsewhere: asked and answered on the other replica (announced on
        // NATS), or written straight to the database (no announcement at all).
        let newer = if announced {
            let mut elsewhere = open_ask(&back, prompt, "claude").await;
            let evaluation_id = back.answer_one("claude").await;
            next_matching(&mut elsewhere, "the newer answer", |e| matches!(e, Event::Answer(_))).await;
            evaluation_id
        } else {
            let (prompt_id,): (i64,) = sqlx::query_as("SELECT id FROM prompts WHERE text = $1")
                .bind(prompt)
                .fetch_one(&cluster.pool)
                .await
                .expect("prompt");
            let mut conn = cluster.pool.acquire().await.expect("conn");
            let created =
                aap_evaluations::store::create_evaluation(&mut conn, prompt_id, "claude", "any", 1, &HashMap::new())
                    .await
                    .expect("create")
                    .expect("a new evaluation");
            store_unannounced(&cluster, created.0.id, "a newer answer").await;
            created.0.id
        };

        // A third Ask on the front replica gets the newer answer, and schedules nothing.
        let mut third = open_ask(&front, prompt, "claude").await;
        let cached = next_matching(&mut third, "the cached answer", |e| {
            matches!(e, Event::Cached(_) | Event::Failed(_) | Event::Scheduled(_))
        })
        .await;
        assert!(matches!(&cached, Event::Cached(a) if a.evaluation_id == newer), "announced: {announced}; {cached:?}");
        let (count,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM evaluations e JOIN prompts p ON p.id = e.prompt_id WHERE p.text = $1")
                .bind(prompt)
                .fetch_one(&cluster.pool)
                .await
                .expect("count");
        assert_eq!(count, 2, "the failed evaluation and the newer one, nothing more");
    }
    for replica in [front, back] {
        replica.platform.shutdown().await.expect("clean stop");
    }
}
