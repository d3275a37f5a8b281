//! Starts the whole platform in-process for a test: a fresh database, fresh stream names,
//! ports from the OS.

#![allow(dead_code)]

use std::time::Duration;

use aap::client::Bearer;
use aap::platform::{Platform, PlatformConfig};
use aap_answers::AnswersConfig;
use aap_evaluations::gateway::GatewayConfig;
use aap_platform::auth::Role;
use aap_platform::principals::ConfiguredToken;
use aap_proto::v1::answer_event::Event;
use aap_proto::v1::answers_service_client::AnswersServiceClient;
use aap_proto::v1::evaluation_service_client::EvaluationServiceClient;
use aap_proto::v1::session_service_client::SessionServiceClient;
use aap_proto::v1::{AnswerEvent, AskRequest, Target};
use futures::StreamExt;
use secrecy::SecretString;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub const CUSTOMER: &str = "test-customer-token";
pub const BOT: &str = "test-bot-token";
pub const OPERATOR: &str = "test-operator-token";

pub type Answers = AnswersServiceClient<InterceptedService<Channel, Bearer>>;
pub type Evaluations = EvaluationServiceClient<InterceptedService<Channel, Bearer>>;
pub type Sessions = SessionServiceClient<InterceptedService<Channel, Bearer>>;

pub struct TestApp {
    pub platform: Platform,
    pub database_url: String,
    pub pool: sqlx::PgPool,
    pub grpc_url: String,
    pub http_url: String,
    /// The operators' web console (and its gRPC-web).
    pub console_url: String,
    /// The metrics endpoint, `http://<addr>/metrics`.
    pub metrics_url: String,
    pub channel: Channel,
    /// The NATS server and the prefix of this app's streams and subjects.
    pub nats_url: String,
    pub nats_prefix: String,
}

/// The principals whose tokens every test app accepts from the start.
pub const CUSTOMER_NAME: &str = "test-customer";
pub const BOT_NAME: &str = "test-bot";
pub const OPERATOR_NAME: &str = "test-operator";

pub fn tokens() -> Vec<ConfiguredToken> {
    let token = |principal: &str, role, secret: &str| ConfiguredToken {
        principal: principal.to_owned(),
        role,
        secret: SecretString::from(secret.to_owned()),
    };
    vec![
        token(CUSTOMER_NAME, Role::Customer, CUSTOMER),
        token(BOT_NAME, Role::Bot, BOT),
        token(OPERATOR_NAME, Role::Operator, OPERATOR),
    ]
}

/// Settings a test may change before the platform starts.
pub struct Options {
    pub max_attempts: u32,
    pub claim_ttl: Duration,
    pub poll_claim_ttl: Duration,
    /// How long a Claim stream may wait for its hello.
    pub hello_timeout: Duration,
    pub queued_timeout: Duration,
    /// A submitted answer not stored by then is asked again (or fails after the last attempt).
    pub submitted_timeout: Duration,
    /// Networks whose bots may use the seed's HTTP API without a token.
    pub seed_http_networks: aap_platform::auth::Networks,
    /// How many evidence cases the platform keeps.
    pub evidence: aap_sessions::EvidenceLimits,
    /// Remote logins: the maximum, the idle limit, the origins (e.g. a simulator's).
    pub remote_logins: aap::logins::RemoteLoginsConfig,
    /// How Asks share the embedding model, and how many may wait for it.
    pub embedding: aap_embedding::BatchConfig,
    /// How often a replica compares the prompts its streams follow with the database (and
    /// refresh schedules are looked at): long, for a test of what announcements alone do.
    pub sweep_every: Duration,
    /// Longest a replica serves a settled prompt's answers from memory.
    pub cache_max_age: Duration,
    /// Ask and Watch streams one caller may hold open at once, and all of them together.
    pub max_streams_per_caller: usize,
    pub max_streams: usize,
    /// Most prompts an account asks in an hour, by assistant (none listed: no budget).
    pub hourly_prompts: std::collections::HashMap<String, u32>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_attempts: 3,
            claim_ttl: Duration::from_secs(60),
            poll_claim_ttl: Duration::from_secs(600),
            hello_timeout: aap_evaluations::gateway::HELLO_TIMEOUT,
            queued_timeout: Duration::from_secs(24 * 3600),
            submitted_timeout: aap_evaluations::scheduler::Timeouts::default().submitted,
            seed_http_networks: aap_platform::auth::Networks::default(),
            evidence: aap_sessions::EvidenceLimits::default(),
            remote_logins: aap::logins::RemoteLoginsConfig::default(),
            embedding: aap_embedding::BatchConfig::default(),
            sweep_every: Duration::from_millis(500),
            cache_max_age: AnswersConfig::default().cache_max_age,
            max_streams_per_caller: AnswersConfig::default().max_streams_per_caller,
            max_streams: AnswersConfig::default().max_streams,
            hourly_prompts: std::collections::HashMap::new(),
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    aap_testkit::init_tracing();
    let database_url = aap_testkit::fresh_database().await;
    let infra = aap_testkit::infra().await;
    let nats_prefix = aap_testkit::fresh_prefix();
    let config = platform_config(database_url.clone(), infra.nats_url().to_owned(), nats_prefix.clone(), &options);
    let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
    let console = TcpListener::bind("127.0.0.1:0").await.expect("bind console");
    let metrics = TcpListener::bind("127.0.0.1:0").await.expect("bind metrics");
    let mut platform = Platform::start_with_console(config, grpc, http, Some(console)).await.expect("platform starts");
    let metrics_url = format!("http://{}/metrics", platform.serve_metrics(metrics).expect("metrics served"));
    let grpc_url = format!("http://{}", platform.grpc_addr);
    let http_url = format!("http://{}", platform.http_addr.expect("the seed api listens"));
    let console_url = format!("http://{}", platform.console_addr.expect("console listens"));
    let channel = Channel::from_shared(grpc_url.clone()).expect("url").connect().await.expect("connect");
    let pool = sqlx::PgPool::connect(&database_url).await.expect("test pool");
    TestApp {
        platform,
        database_url,
        pool,
        grpc_url,
        http_url,
        console_url,
        metrics_url,
        channel,
        nats_url: infra.nats_url().to_owned(),
        nats_prefix,
    }
}

/// The platform's configuration for a test: the test tokens, short ticks, plain text, NATS as
/// its URL says.
pub fn platform_config(
    database_url: String,
    nats_url: String,
    nats_prefix: String,
    options: &Options,
) -> PlatformConfig {
    PlatformConfig {
        database_url,
        nats_url,
        nats_access: aap_platform::nats::NatsAccess::default(),
        tls: None,
        nats_prefix,
        tokens: tokens(),
        seed_http_networks: options.seed_http_networks.clone(),
        model_dir: aap_embedding::default_model_dir(),
        answers: AnswersConfig {
            max_attempts: options.max_attempts,
            refresh_every: options.sweep_every,
            embedding: options.embedding,
            cache_max_age: options.cache_max_age,
            max_streams_per_caller: options.max_streams_per_caller,
            max_streams: options.max_streams,
            ..AnswersConfig::default()
        },
        gateway: GatewayConfig {
            claim_ttl: options.claim_ttl,
            poll_claim_ttl: options.poll_claim_ttl,
            hello_timeout: options.hello_timeout,
            ..GatewayConfig::default()
        },
        sessions: aap_sessions::SessionsConfig {
            evidence: options.evidence,
            hourly_prompts: options.hourly_prompts.clone(),
            ..aap_sessions::SessionsConfig::default()
        },
        scheduler_tick: Duration::from_millis(200),
        remote_logins: options.remote_logins.clone(),
        timeouts: aap_evaluations::scheduler::Timeouts {
            queued: options.queued_timeout,
            submitted: options.submitted_timeout,
        },
        services: aap::services::Services::all(),
        stream_replicas: 1,
        database_pool_size: 20,
    }
}

impl TestApp {
    pub fn answers(&self) -> Answers {
        AnswersServiceClient::with_interceptor(self.channel.clone(), Bearer::new(CUSTOMER).expect("token"))
    }

    pub fn answers_as(&self, token: &str) -> Answers {
        AnswersServiceClient::with_interceptor(self.channel.clone(), Bearer::new(token).expect("token"))
    }

    pub fn evaluations(&self) -> Evaluations {
        EvaluationServiceClient::with_interceptor(self.channel.clone(), Bearer::new(BOT).expect("token"))
    }

    pub fn sessions(&self, token: &str) -> Sessions {
        SessionServiceClient::with_interceptor(self.channel.clone(), Bearer::new(token).expect("token"))
    }

    /// Counts rows of a table (for "nothing was stored" assertions).
    pub async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(&self.pool).await.expect("count");
        n
    }
}

pub fn ask_text(prompt: &str, assistants: &[&str]) -> AskRequest {
    AskRequest {
        query: Some(aap_proto::v1::ask_request::Query::Prompt(prompt.to_owned())),
        targets: assistants.iter().map(|a| Target { assistant: (*a).to_owned(), plan: String::new() }).collect(),
        ..Default::default()
    }
}

/// The first `answer` event of a stream, or a panic naming what came instead.
pub fn first_answer(events: &[Event]) -> aap_proto::v1::Answer {
    events
        .iter()
        .find_map(|e| match e {
            Event::Answer(a) => Some(a.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no answer in {events:?}"))
}

/// The first `cached` event of a stream (an answer stored before the Ask), or a panic naming
/// what came instead.
pub fn first_cached(events: &[Event]) -> aap_proto::v1::Answer {
    events
        .iter()
        .find_map(|e| match e {
            Event::Cached(a) => Some(a.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no cached answer in {events:?}"))
}

/// The first `failed` event of a stream, or a panic naming what came instead.
pub fn first_failed(events: &[Event]) -> aap_proto::v1::EvaluationFailed {
    events
        .iter()
        .find_map(|e| match e {
            Event::Failed(f) => Some(f.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no failure in {events:?}"))
}

/// Reads a stream to its end (bounded by a generous timeout so a broken test fails, never hangs).
pub async fn collect(stream: impl futures::Stream<Item = Result<AnswerEvent, tonic::Status>> + Unpin) -> Vec<Event> {
    let all =
        tokio::time::timeout(Duration::from_secs(120), stream.collect::<Vec<_>>()).await.expect("stream completes");
    all.into_iter().map(|e| e.expect("event").event.expect("event body")).collect()
}

pub async fn ask(app: &TestApp, request: AskRequest) -> Vec<Event> {
    ask_as(app, CUSTOMER, request).await
}

/// Asks and returns how the prompt was matched, the stream's first event; the rest is not read
/// (for prompts nobody answers).
pub async fn first_matched(app: &TestApp, request: AskRequest) -> aap_proto::v1::PromptMatched {
    let mut stream = app.answers().ask(request).await.expect("ask accepted").into_inner();
    match stream.next().await.expect("an event").expect("ok").event.and_then(|e| e.event) {
        Some(Event::Matched(m)) => m,
        other => panic!("expected matched, got {other:?}"),
    }
}

/// Asks with `token` (an operator sees which bot and account answered; a customer does not).
pub async fn ask_as(app: &TestApp, token: &str, request: AskRequest) -> Vec<Event> {
    let stream = app.answers_as(token).ask(request).await.expect("ask accepted").into_inner();
    collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))).await
}

/// Polls over gRPC until a task arrives (the scheduler queues within a tick).
pub async fn poll_task(app: &TestApp, assistant: &str, plan: &str) -> aap_proto::v1::Task {
    let mut bot = app.evaluations();
    for _ in 0..200 {
        let reply = bot
            .poll(aap_proto::v1::PollRequest {
                bot_id: "test-bot".into(),
                serves: Some(Target { assistant: assistant.into(), plan: plan.into() }),
            })
            .await
            .expect("poll")
            .into_inner();
        if let Some(task) = reply.task {
            return task;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no task arrived for {assistant}/{plan}");
}

/// Polls `assistant`'s next task (any plan) as the test bot, and releases it failed for good
/// with `reason`, as a bot whose attempt failed does.
pub async fn fail_next_task(app: &TestApp, assistant: &str, reason: &str) {
    let task = poll_task(app, assistant, "").await;
    app.evaluations()
        .release(aap_proto::v1::ReleaseRequest {
            evaluation_id: task.evaluation_id,
            mark_as_failed: true,
            failure_reason: reason.into(),
            bot_id: "test-bot".into(),
        })
        .await
        .expect("released as failed");
}

pub fn citation(url: &str, title: &str) -> aap_proto::v1::Citation {
    aap_proto::v1::Citation {
        url: url.into(),
        title: title.into(),
        domain: String::new(),
        position: 0,
        kind: aap_proto::v1::CitationKind::Inline as i32,
        found_in: aap_proto::v1::CitationOrigin::Both as i32,
    }
}

pub async fn submit(app: &TestApp, evaluation_id: i64, text: &str) -> Result<(), tonic::Status> {
    app.evaluations().submit(submit_request(evaluation_id, text)).await.map(drop)
}

/// The test bot's answer `text` to an evaluation, with citations, a capture, queries and a
/// product, as [`submit`] sends it.
pub fn submit_request(evaluation_id: i64, text: &str) -> aap_proto::v1::SubmitRequest {
    aap_proto::v1::SubmitRequest {
        evaluation_id,
        response_text: text.into(),
        response_markdown: format!("**{text}**"),
        citations: vec![
            citation("https://www.techradar.com/best/laptops?utm_source=chatgpt.com", "TechRadar"),
            citation("https://www.rtings.com/laptop", "RTINGS"),
        ],
        captured_at: None,
        bot_id: "test-bot".into(),
        lease_id: String::new(),
        kind: aap_proto::v1::AnswerKind::Text as i32,
        capture: Some(aap_proto::v1::Capture {
            response_html: format!("<p><strong>{text}</strong></p>"),
            model: "gpt-5".into(),
            web_search: Some(true),
            time_to_first_token: Some(prost_types::Duration { seconds: 0, nanos: 400_000_000 }),
            time_to_complete: Some(prost_types::Duration { seconds: 2, nanos: 500_000_000 }),
            adapter_version: "2026.11.1".into(),
            adapter_fingerprint: "abcdef012345".into(),
            finish_signals: vec!["stop-gone".into(), "action-bar".into()],
            missing_roles: vec!["turn".into()],
            read_by_fallback: false,
            confidence: 0.9,
            // Stored and served back as sent (tests/platform.rs checks every field).
            cut_short: true,
            // The plan's model: an answer another model gave is asked again (tests/freshness.rs).
            model_fallback: false,
        }),
        search_queries: vec!["best laptops under 1000".into(), "laptop reviews 2026".into()],
        products: vec![aap_proto::v1::Product {
            name: "Acer Swift Go 14".into(),
            url: "https://shop.example/acer?utm_source=chatgpt.com".into(),
            price: "$749.99".into(),
            merchant: "Shop".into(),
            position: 1,
        }],
    }
}

/// `message` as one gRPC frame: no compression, its length, its bytes.
pub fn grpc_frame(message: &impl prost::Message) -> Vec<u8> {
    let bytes = message.encode_to_vec();
    let mut framed = vec![0];
    framed.extend((bytes.len() as u32).to_be_bytes());
    framed.extend(bytes);
    framed
}

/// The status the server ends a call of `path` with, sent as one HTTP/2 request whose body is
/// `body` as it is (framed or not) with `headers` added, by a client that keeps no timer and
/// checks nothing of its own (tonic's client refuses to send what is not a message).
pub async fn raw_grpc(
    app: &TestApp,
    path: &str,
    token: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> tonic::Status {
    let authority = app.grpc_url.trim_start_matches("http://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&authority).await.expect("connect");
    let (mut send, connection) = h2::client::handshake(tcp).await.expect("HTTP/2");
    tokio::spawn(connection);
    let mut head = http::Request::post(format!("{}{path}", app.grpc_url))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("authorization", format!("Bearer {token}"));
    for (name, value) in headers {
        head = head.header(*name, *value);
    }
    let (response, mut sending) = send.send_request(head.body(()).expect("request"), false).expect("send");
    sending.send_data(body.into(), true).expect("body");
    let response = tokio::time::timeout(Duration::from_secs(30), response).await.expect("an answer in 30 s");
    let response = response.expect("response");
    let headers = response.headers().clone();
    let mut received = response.into_body();
    while let Some(data) = received.data().await {
        let data = data.expect("data");
        let _ = received.flow_control().release_capacity(data.len());
    }
    let trailers = received.trailers().await.expect("trailers").unwrap_or(headers);
    tonic::Status::from_header_map(&trailers).expect("a grpc-status")
}

/// Reads `stream` until it ends, which must be with `code` within 20 s; the status it ended with.
pub async fn ends_with<T>(stream: &mut tonic::Streaming<T>, code: tonic::Code, what: &str) -> tonic::Status {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), stream.message()).await {
            Err(_) => panic!("{what}: still open after 20 s"),
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("{what}: ended with OK"),
            Ok(Err(status)) => {
                assert_eq!(status.code(), code, "{what}: {status:?}");
                return status;
            }
        }
    }
}

/// A result PostgreSQL cannot store (a NUL in its text: what a gateway without today's checks
/// let through, or another producer on the results stream) for the task's evaluation, published
/// on the results stream as a gateway would; the evaluation must be marked submitted first.
pub async fn publish_poison_result(app: &TestApp, nats: &async_nats::Client, task: &aap_proto::v1::Task) {
    let poison = serde_json::json!({
        "evaluation_id": task.evaluation_id,
        "prompt_id": task.prompt_id,
        "assistant": task.assistant,
        "plan": task.plan,
        "response_text": "an answer with a NUL \u{0} inside",
        "response_markdown": "",
        "citations": [],
        "captured_at": "2026-12-02T10:00:00Z",
        "bot_id": "bot",
        "lease_id": "",
    });
    async_nats::jetstream::new(nats.clone())
        .publish(
            format!("{}.results.{}", app.nats_prefix, task.assistant),
            serde_json::to_vec(&poison).expect("json").into(),
        )
        .await
        .expect("publish")
        .await
        .expect("stored by the stream");
}
