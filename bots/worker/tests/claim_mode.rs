//! The bot on the platform's gRPC API: an in-test EvaluationService + SessionService (the test's
//! counterpart, recording every message) and the simulator in a real Chromium.

mod common;

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aap_bot::BotConfig;
use aap_proto::v1::claim_request::Msg as ClaimMsg;
use aap_proto::v1::claim_response::Msg as ClaimReply;
use aap_proto::v1::evaluation_service_server::{EvaluationService, EvaluationServiceServer};
use aap_proto::v1::session_service_server::{SessionService, SessionServiceServer};
use aap_proto::v1::{
    ClaimHello, ClaimRequest, ClaimResponse, ClaimWelcome, CreateAccountRequest, CreateAccountResponse,
    HeartbeatRequest, HeartbeatResponse, LeaseOutcome, LeaseSessionRequest, LeaseSessionResponse, ListAccountsRequest,
    ListAccountsResponse, PollRequest, PollResponse, ProgressRequest, ProgressResponse, ReleaseRequest,
    ReleaseResponse, ReportEvidenceRequest, ReportEvidenceResponse, ReturnSessionRequest, ReturnSessionResponse,
    SubmitRequest, SubmitResponse, Target, Task, UpdateAccountRequest, UpdateAccountResponse,
    UpdateSessionStateRequest, UpdateSessionStateResponse,
};
use aap_simulator::{Simulator, SimulatorConfig, answer_for};
use anyhow::{Context, Result};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status, Streaming};

#[derive(Debug, Clone)]
enum Event {
    Hello(ClaimHello, Option<String>),
    Ready(u32),
    Heartbeat(Vec<i64>),
    StreamClosed,
    Submit(Box<SubmitRequest>),
    Release(ReleaseRequest),
    Lease(LeaseSessionRequest),
    Return(ReturnSessionRequest),
    Evidence(Box<ReportEvidenceRequest>),
    Progress(ProgressRequest),
}

#[derive(Clone, Default)]
struct Fake {
    events: Arc<Mutex<Vec<Event>>>,
    tasks: Arc<Mutex<VecDeque<Task>>>,
    sessions: Arc<Mutex<VecDeque<String>>>,
    leases: Arc<Mutex<u32>>,
    changed: Arc<Notify>,
    /// Evaluations Progress says are no longer held.
    not_held: Arc<Mutex<HashSet<i64>>>,
    /// Evaluations whose Submit is refused as INVALID_ARGUMENT, with the gateway's reason.
    refused: Arc<Mutex<HashSet<i64>>>,
    /// Claim streams still to end with UNAVAILABLE right after their first task, as the
    /// platform's do when it stops (the bot keeps the task).
    stops_after_a_task: Arc<Mutex<u32>>,
}

/// The reason the gateway gave the probe's bot for an answer it could not take.
const URL_REFUSAL: &str = "invalid citations.url: is 8239 characters; the limit is 4096";

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Fake {
    fn record(&self, event: Event) {
        lock(&self.events).push(event);
        self.changed.notify_waiters();
    }

    fn events(&self) -> Vec<Event> {
        lock(&self.events).clone()
    }

    async fn wait_for(&self, done: impl Fn(&[Event]) -> bool) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(180), async {
            loop {
                let changed = self.changed.notified();
                if done(&lock(&self.events)) {
                    return;
                }
                let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
            }
        })
        .await
        .context("the bot did not get there in time")
    }
}

type ClaimStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<ClaimResponse, Status>> + Send>>;

#[tonic::async_trait]
impl EvaluationService for Fake {
    type ClaimStream = ClaimStream;

    async fn claim(&self, request: Request<Streaming<ClaimRequest>>) -> Result<Response<ClaimStream>, Status> {
        let auth = request.metadata().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut inbound = request.into_inner();
        let hello = match inbound.message().await? {
            Some(ClaimRequest { msg: Some(ClaimMsg::Hello(hello)) }) => hello,
            _ => return Err(Status::invalid_argument("hello first")),
        };
        self.record(Event::Hello(hello.clone(), auth));
        let (tx, rx) = mpsc::channel(8);
        // A one-second claim: heartbeats every third of it.
        let welcome = ClaimResponse { msg: Some(ClaimReply::Welcome(ClaimWelcome { claim_ttl_seconds: 1 })) };
        tx.send(Ok(welcome)).await.map_err(|_| Status::cancelled("gone"))?;
        let fake = self.clone();
        tokio::spawn(async move {
            let mut credit = hello.max_tasks;
            loop {
                while credit > 0 {
                    let Some(task) = lock(&fake.tasks).pop_front() else { break };
                    if tx.send(Ok(ClaimResponse { msg: Some(ClaimReply::Task(task)) })).await.is_err() {
                        return;
                    }
                    credit -= 1;
                    let stopping = {
                        let mut left = lock(&fake.stops_after_a_task);
                        let stopping = *left > 0;
                        *left = left.saturating_sub(1);
                        stopping
                    };
                    if stopping {
                        let _ = tx.send(Err(Status::unavailable("the server is stopping"))).await;
                        fake.record(Event::StreamClosed);
                        return;
                    }
                }
                match inbound.message().await {
                    Ok(Some(ClaimRequest { msg: Some(ClaimMsg::Ready(ready)) })) => {
                        credit += ready.count;
                        fake.record(Event::Ready(ready.count));
                    }
                    Ok(Some(ClaimRequest { msg: Some(ClaimMsg::Heartbeat(beat)) })) => {
                        fake.record(Event::Heartbeat(beat.evaluation_ids));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => {
                        fake.record(Event::StreamClosed);
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn progress(&self, request: Request<ProgressRequest>) -> Result<Response<ProgressResponse>, Status> {
        let request = request.into_inner();
        let held = !lock(&self.not_held).contains(&request.evaluation_id);
        self.record(Event::Progress(request));
        Ok(Response::new(ProgressResponse { held }))
    }

    async fn poll(&self, _: Request<PollRequest>) -> Result<Response<PollResponse>, Status> {
        Err(Status::unimplemented("the bot uses Claim"))
    }

    async fn heartbeat(&self, _: Request<HeartbeatRequest>) -> Result<Response<HeartbeatResponse>, Status> {
        Err(Status::unimplemented("the bot heartbeats on the stream"))
    }

    async fn submit(&self, request: Request<SubmitRequest>) -> Result<Response<SubmitResponse>, Status> {
        let request = request.into_inner();
        let evaluation_id = request.evaluation_id;
        self.record(Event::Submit(Box::new(request)));
        if lock(&self.refused).contains(&evaluation_id) {
            return Err(Status::invalid_argument(URL_REFUSAL));
        }
        Ok(Response::new(SubmitResponse { evaluation_id, status: "submitted".into() }))
    }

    async fn release(&self, request: Request<ReleaseRequest>) -> Result<Response<ReleaseResponse>, Status> {
        let request = request.into_inner();
        let evaluation_id = request.evaluation_id;
        self.record(Event::Release(request));
        Ok(Response::new(ReleaseResponse { evaluation_id, action: "released".into() }))
    }
}

#[tonic::async_trait]
impl SessionService for Fake {
    async fn create_account(
        &self,
        _: Request<CreateAccountRequest>,
    ) -> Result<Response<CreateAccountResponse>, Status> {
        Err(Status::unimplemented("operator call"))
    }

    async fn list_accounts(&self, _: Request<ListAccountsRequest>) -> Result<Response<ListAccountsResponse>, Status> {
        Err(Status::unimplemented("operator call"))
    }

    async fn update_session_state(
        &self,
        _: Request<UpdateSessionStateRequest>,
    ) -> Result<Response<UpdateSessionStateResponse>, Status> {
        Err(Status::unimplemented("operator call"))
    }

    async fn update_account(
        &self,
        _: Request<UpdateAccountRequest>,
    ) -> Result<Response<UpdateAccountResponse>, Status> {
        Err(Status::unimplemented("operator call"))
    }

    async fn lease_session(
        &self,
        request: Request<LeaseSessionRequest>,
    ) -> Result<Response<LeaseSessionResponse>, Status> {
        self.record(Event::Lease(request.into_inner()));
        let Some(storage_state_json) = lock(&self.sessions).pop_front() else {
            return Err(Status::not_found("no account available"));
        };
        let number = {
            let mut leases = lock(&self.leases);
            *leases += 1;
            *leases
        };
        Ok(Response::new(LeaseSessionResponse {
            lease_id: format!("lease-{number}"),
            account_id: format!("account-{number}"),
            plan: "Plus".into(),
            storage_state_json,
            max_runs: 10,
            expires_at: None,
            ..LeaseSessionResponse::default()
        }))
    }

    async fn return_session(
        &self,
        request: Request<ReturnSessionRequest>,
    ) -> Result<Response<ReturnSessionResponse>, Status> {
        self.record(Event::Return(request.into_inner()));
        Ok(Response::new(ReturnSessionResponse { account: None }))
    }

    async fn report_evidence(
        &self,
        request: Request<ReportEvidenceRequest>,
    ) -> Result<Response<ReportEvidenceResponse>, Status> {
        self.record(Event::Evidence(Box::new(request.into_inner())));
        Ok(Response::new(ReportEvidenceResponse { evidence_id: "evidence-1".into() }))
    }

    type WatchAccountsStream =
        futures::stream::BoxStream<'static, Result<aap_proto::v1::WatchAccountsResponse, Status>>;

    async fn watch_accounts(
        &self,
        _: Request<aap_proto::v1::WatchAccountsRequest>,
    ) -> Result<Response<Self::WatchAccountsStream>, Status> {
        Err(Status::unimplemented("operator call"))
    }

    async fn get_account(
        &self,
        _: Request<aap_proto::v1::GetAccountRequest>,
    ) -> Result<Response<aap_proto::v1::GetAccountResponse>, Status> {
        Err(Status::unimplemented("operator call"))
    }

    async fn disable_account(
        &self,
        _: Request<aap_proto::v1::DisableAccountRequest>,
    ) -> Result<Response<aap_proto::v1::DisableAccountResponse>, Status> {
        Err(Status::unimplemented("operator call"))
    }

    async fn enable_account(
        &self,
        _: Request<aap_proto::v1::EnableAccountRequest>,
    ) -> Result<Response<aap_proto::v1::EnableAccountResponse>, Status> {
        Err(Status::unimplemented("operator call"))
    }

    async fn delete_account(
        &self,
        _: Request<aap_proto::v1::DeleteAccountRequest>,
    ) -> Result<Response<aap_proto::v1::DeleteAccountResponse>, Status> {
        Err(Status::unimplemented("operator call"))
    }

    async fn list_leases(
        &self,
        _: Request<aap_proto::v1::ListLeasesRequest>,
    ) -> Result<Response<aap_proto::v1::ListLeasesResponse>, Status> {
        Err(Status::unimplemented("operator call"))
    }

    async fn list_evidence(
        &self,
        _: Request<aap_proto::v1::ListEvidenceRequest>,
    ) -> Result<Response<aap_proto::v1::ListEvidenceResponse>, Status> {
        Err(Status::unimplemented("operator call"))
    }

    async fn get_evidence(
        &self,
        _: Request<aap_proto::v1::GetEvidenceRequest>,
    ) -> Result<Response<aap_proto::v1::GetEvidenceResponse>, Status> {
        Err(Status::unimplemented("operator call"))
    }
}

fn task(evaluation_id: i64, prompt: &str) -> Task {
    Task {
        evaluation_id,
        prompt_id: evaluation_id + 100,
        prompt_text: prompt.into(),
        assistant: "chatgpt".into(),
        plan: "Plus".into(),
        attempt: 1,
        max_attempts: 3,
        ..Task::default()
    }
}

/// The fake platform served over gRPC, and a bot `bot_id` of ChatGPT Plus claiming from it and
/// asking the simulator at `assistant_url`, both running until stopped.
struct Running {
    stop_bot: oneshot::Sender<()>,
    bot: tokio::task::JoinHandle<Result<()>>,
    stop_server: oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    async fn start(fake: &Fake, bot_id: &str, assistant_url: &str) -> Result<Running> {
        Self::start_with(fake, bot_id, assistant_url, None).await
    }

    /// [`Running::start`] with the bot's manifests from `adapters_dir` when given.
    async fn start_with(
        fake: &Fake,
        bot_id: &str,
        assistant_url: &str,
        adapters_dir: Option<&std::path::Path>,
    ) -> Result<Running> {
        let grpc_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let grpc_url = format!("http://{}", grpc_listener.local_addr()?);
        let (stop_server, server_stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(EvaluationServiceServer::new(fake.clone()))
                .add_service(SessionServiceServer::new(fake.clone()))
                .serve_with_incoming_shutdown(TcpListenerStream::new(grpc_listener), async move {
                    let _ = server_stopped.await;
                }),
        );
        let mut config =
            BotConfig::grpc(&grpc_url, "bot-token", bot_id, "ChatGPT", "Plus").with_assistant_url(assistant_url);
        config.adapters_dir = adapters_dir.map(std::path::Path::to_owned);
        let (stop_bot, bot_stopped) = oneshot::channel::<()>();
        let bot = tokio::spawn(aap_bot::run(config, async move {
            let _ = bot_stopped.await;
        }));
        Ok(Running { stop_bot, bot, stop_server, server })
    }

    /// Stops the bot (the server goes on): how its run ended.
    async fn stop_bot(&mut self) -> Result<Result<()>> {
        let (stop, _) = oneshot::channel();
        let _ = std::mem::replace(&mut self.stop_bot, stop).send(());
        (&mut self.bot).await.context("bot panicked")
    }

    async fn stop_server(self) {
        let _ = self.stop_server.send(());
        let _ = self.server.await;
    }
}

/// Runs the bot `bot_id` (its manifests from `adapters_dir` when given) against `fake` and `sim`
/// until `done` holds on what the fake heard (at most 180 s), stops the bot, the fake and the
/// simulator, and returns what the fake heard and the simulator's counters.
async fn run_until(
    fake: &Fake,
    bot_id: &str,
    sim: Simulator,
    adapters_dir: Option<&std::path::Path>,
    done: impl Fn(&[Event]) -> bool,
) -> Result<(Vec<Event>, aap_simulator::SimStats)> {
    let mut running = Running::start_with(fake, bot_id, &sim.base_url, adapters_dir).await?;
    let reached = fake.wait_for(done).await;
    let ran = running.stop_bot().await?;
    running.stop_server().await;
    let stats = sim.stats();
    sim.shutdown().await;
    reached?;
    ran?;
    Ok((fake.events(), stats))
}

/// [`run_until`] the bot has submitted `submits` answers; what the fake heard.
async fn events_once_submitted(fake: &Fake, bot_id: &str, sim: Simulator, submits: usize) -> Result<Vec<Event>> {
    let submitted = |events: &[Event]| events.iter().filter(|e| matches!(e, Event::Submit(_))).count() == submits;
    Ok(run_until(fake, bot_id, sim, None, submitted).await?.0)
}

#[tokio::test]
async fn claims_over_grpc_heartbeats_leases_sessions_and_submits() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, aap_simulator::Site::ChatGpt, SimulatorConfig::default()).await?;
    let expired = sim.create_session("expired").await;
    sim.expire_session(&expired.token);
    let good = sim.create_session("good").await;
    let sim_url = sim.base_url.clone();

    let fake = Fake::default();
    let first = "What are the best laptops under $1,000?";
    let second = "Which e-bikes are best for commuting?";
    lock(&fake.tasks).extend([task(7, first), task(8, second)]);
    lock(&fake.sessions).extend([expired.storage_state_json.clone(), good.storage_state_json.clone()]);

    let mut running = Running::start(&fake, "claim-test-bot", &sim.base_url).await?;
    let submitted_both =
        fake.wait_for(|events| events.iter().filter(|e| matches!(e, Event::Submit(_))).count() == 2).await;
    let ran = running.stop_bot().await?;
    let closed = fake.wait_for(|events| events.iter().any(|e| matches!(e, Event::StreamClosed))).await;
    running.stop_server().await;
    let stats = sim.stats();
    sim.shutdown().await;
    submitted_both?;
    ran?;
    closed?;

    let events = fake.events();
    let Some(Event::Hello(hello, auth)) = events.first() else { panic!("hello first: {events:?}") };
    assert_eq!(auth.as_deref(), Some("Bearer bot-token"));
    assert_eq!(hello.bot_id, "claim-test-bot");
    assert_eq!(hello.serves, vec![Target { assistant: "chatgpt".into(), plan: "Plus".into() }]);
    assert_eq!(hello.max_tasks, 1);

    let position = |wanted: &dyn Fn(&Event) -> bool| events.iter().position(wanted);
    let submit_7 = position(&|e| matches!(e, Event::Submit(s) if s.evaluation_id == 7)).context("submit 7")?;
    let submit_8 = position(&|e| matches!(e, Event::Submit(s) if s.evaluation_id == 8)).context("submit 8")?;
    let heartbeat_7 = position(&|e| matches!(e, Event::Heartbeat(ids) if ids == &[7])).context("heartbeat 7")?;
    let ready = position(&|e| matches!(e, Event::Ready(1))).context("ready")?;
    assert!(heartbeat_7 < submit_7, "the claim is extended while the answer is in progress");
    assert!(submit_7 < ready && ready < submit_8, "the next task only after ready");
    let released: Vec<i64> =
        events.iter().filter_map(|e| if let Event::Release(r) = e { Some(r.evaluation_id) } else { None }).collect();
    assert!(released.is_empty(), "nothing released: {released:?}");

    // The expired session went back as EXPIRED, the good one answered both and went back OK.
    let leases: Vec<&LeaseSessionRequest> =
        events.iter().filter_map(|e| if let Event::Lease(l) = e { Some(l) } else { None }).collect();
    assert_eq!(leases.len(), 2);
    assert!(leases.iter().all(|l| l.assistant == "chatgpt" && l.plan == "Plus" && l.bot_id == "claim-test-bot"));
    let returns: Vec<(String, i32, u32)> = events
        .iter()
        .filter_map(|e| if let Event::Return(r) = e { Some((r.lease_id.clone(), r.outcome, r.runs)) } else { None })
        .collect();
    assert_eq!(
        returns,
        vec![
            ("lease-1".to_owned(), LeaseOutcome::Expired as i32, 1),
            ("lease-2".to_owned(), LeaseOutcome::Ok as i32, 2)
        ]
    );

    // The login wall on the expired session was reported with its lease, a screenshot and the
    // page; the evidence went before the lease went back.
    let reports: Vec<&ReportEvidenceRequest> =
        events.iter().filter_map(|e| if let Event::Evidence(r) = e { Some(r.as_ref()) } else { None }).collect();
    assert_eq!(reports.len(), 1, "one failed attempt, one report: {reports:?}");
    let report = reports[0];
    assert_eq!(
        (report.bot_id.as_str(), report.lease_id.as_str(), report.assistant.as_str(), report.evaluation_id),
        ("claim-test-bot", "lease-1", "chatgpt", 7)
    );
    assert_eq!((report.attempt, report.class.as_str()), (1, "logged-out"));
    assert!(report.screenshot_png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG screenshot");
    assert!(!report.html.is_empty() && report.url.starts_with(&sim_url), "{}", report.url);
    assert!(report.captured_at.is_some() && !report.manifest_version.is_empty());
    let reported = position(&|e| matches!(e, Event::Evidence(_))).context("evidence")?;
    let returned = position(&|e| matches!(e, Event::Return(r) if r.lease_id == "lease-1")).context("return")?;
    assert!(reported < returned, "reported while the lease was held");

    let Event::Submit(submit) = &events[submit_7] else { unreachable!() };
    let expected = answer_for(first, true);
    assert_eq!(submit.bot_id, "claim-test-bot");
    assert_eq!(submit.lease_id, "lease-2");
    assert_eq!(
        submit.response_text.split_whitespace().collect::<Vec<_>>(),
        expected.plain_text().split_whitespace().collect::<Vec<_>>()
    );
    assert!(submit.response_markdown.contains("### "), "markdown keeps headings: {}", submit.response_markdown);
    assert!(submit.captured_at.is_some());
    let citations: Vec<(String, String, String, u32, i32)> = submit
        .citations
        .iter()
        .map(|c| (c.url.clone(), c.title.clone(), c.domain.clone(), c.position, c.kind))
        .collect();
    // Cited sources first, in reading order, then the ones the Sources panel only lists.
    let inline = expected.citations.iter().map(|c| (c, aap_proto::v1::CitationKind::Inline));
    let listed = aap_simulator::chatgpt_more_sources(first);
    let listed = listed.iter().map(|c| (c, aap_proto::v1::CitationKind::Listed));
    let wanted: Vec<(String, String, String, u32, i32)> = inline
        .chain(listed)
        .enumerate()
        .map(|(i, (c, kind))| (c.url.clone(), c.title.clone(), c.domain.clone(), i as u32 + 1, kind as i32))
        .collect();
    assert_eq!(citations, wanted);
    let capture = submit.capture.clone().context("capture")?;
    assert_eq!(capture.model, "gpt-5");
    assert_eq!(capture.web_search, Some(true));
    assert_eq!(capture.adapter_version, aap_bot::Manifest::load("chatgpt", None)?.version);
    assert!(capture.time_to_first_token.is_some() && capture.time_to_complete.is_some());
    assert!(capture.response_html.contains("webpage-citation-pill"), "the page's HTML is kept");

    assert_eq!(stats.answers_for_token(&good.token), 2);
    assert_eq!(stats.answers_for_token(&expired.token), 0);
    Ok(())
}

#[tokio::test]
async fn reports_the_text_so_far_while_the_assistant_types_and_stops_once_the_task_is_not_held() -> Result<()> {
    // An assistant that types for seconds: several reports at one every 500 ms.
    let typing = SimulatorConfig { chunk_delay_ms: 100, words_per_chunk: 2, ..SimulatorConfig::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, aap_simulator::Site::ChatGpt, typing).await?;
    let session = sim.create_session("typing").await;

    let fake = Fake::default();
    let (held, lost) = ("What are the best laptops under $1,000?", "Which e-bikes are best for commuting?");
    lock(&fake.tasks).extend([task(7, held), task(8, lost)]);
    lock(&fake.sessions).push_back(session.storage_state_json.clone());
    // The gateway says task 8 is no longer held (answered elsewhere, or its claim lapsed).
    lock(&fake.not_held).insert(8);

    let events = events_once_submitted(&fake, "typing-bot", sim, 2).await?;
    let reports = |id: i64| -> Vec<(usize, &ProgressRequest)> {
        events
            .iter()
            .enumerate()
            .filter_map(|(at, e)| match e {
                Event::Progress(p) if p.evaluation_id == id => Some((at, p)),
                _ => None,
            })
            .collect()
    };
    let submitted = |id: i64| events.iter().position(|e| matches!(e, Event::Submit(s) if s.evaluation_id == id));

    // While task 7 was typed: reports of the growing text, each one new, all before the answer.
    let typed = reports(7);
    assert!(typed.len() >= 2, "several reports while the assistant typed: {typed:?}");
    let submit_7 = submitted(7).context("submit 7")?;
    assert!(typed.iter().all(|(at, _)| *at < submit_7), "no report after the answer went in");
    assert!(typed.iter().all(|(_, p)| p.bot_id == "typing-bot" && !p.text.trim().is_empty()));
    let lengths: Vec<usize> = typed.iter().map(|(_, p)| p.text.chars().count()).collect();
    assert!(lengths.windows(2).all(|w| w[0] <= w[1]), "the text grows: {lengths:?}");
    assert!(typed.windows(2).all(|w| w[0].1.text != w[1].1.text), "only a changed text is reported");

    // Task 8: the first report heard "no longer held", and the bot stopped reporting; the answer
    // still went in (a report never fails a task; the gateway decides what an answer is worth).
    let stopped = reports(8);
    assert_eq!(stopped.len(), 1, "no report after held=false: {stopped:?}");
    assert!(submitted(8).is_some(), "the task still ended with its answer");
    Ok(())
}

#[tokio::test]
async fn a_claim_stream_the_platform_ends_as_it_stops_is_opened_again_and_the_task_in_hand_answered() -> Result<()> {
    // An assistant that types for seconds, so the task is still in hand on the next stream.
    let typing = SimulatorConfig { chunk_delay_ms: 100, words_per_chunk: 2, ..SimulatorConfig::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, aap_simulator::Site::ChatGpt, typing).await?;
    let session = sim.create_session("drained").await;

    let fake = Fake::default();
    lock(&fake.tasks)
        .extend([task(7, "What are the best laptops under $1,000?"), task(8, "Which kettle boils fastest?")]);
    lock(&fake.sessions).push_back(session.storage_state_json.clone());
    *lock(&fake.stops_after_a_task) = 1;

    let events = events_once_submitted(&fake, "drained-bot", sim, 2).await?;
    let hellos: Vec<usize> =
        events.iter().enumerate().filter(|(_, e)| matches!(e, Event::Hello(..))).map(|(at, _)| at).collect();
    assert_eq!(hellos.len(), 2, "the stream was opened again once: {events:?}");
    let submit_7 = events.iter().position(|e| matches!(e, Event::Submit(s) if s.evaluation_id == 7));
    let submit_7 = submit_7.context("task 7 answered")?;
    let kept_alive = events[hellos[1]..submit_7].iter().any(|e| matches!(e, Event::Heartbeat(ids) if ids.contains(&7)));
    assert!(kept_alive, "task 7's claim is heartbeated on the new stream while it is answered: {events:?}");
    let released: Vec<i64> =
        events.iter().filter_map(|e| if let Event::Release(r) = e { Some(r.evaluation_id) } else { None }).collect();
    assert!(released.is_empty(), "the task in hand is not handed back: {released:?}");
    Ok(())
}

#[tokio::test]
async fn an_answer_the_platform_refuses_fails_its_task_at_once_with_the_reason() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, aap_simulator::Site::ChatGpt, SimulatorConfig::default()).await?;
    let session = sim.create_session("refused").await;

    let fake = Fake::default();
    lock(&fake.tasks)
        .extend([task(7, "What are the best laptops under $1,000?"), task(8, "Which e-bikes are best for commuting?")]);
    lock(&fake.sessions).push_back(session.storage_state_json.clone());
    lock(&fake.refused).insert(7);

    let both_ended = |events: &[Event]| {
        let released_7 = events.iter().any(|e| matches!(e, Event::Release(r) if r.evaluation_id == 7));
        let submitted_8 = events.iter().any(|e| matches!(e, Event::Submit(s) if s.evaluation_id == 8));
        released_7 && submitted_8
    };
    let (events, _) = run_until(&fake, "refused-bot", sim, None, both_ended).await?;

    // One try (a refusal is not retried), then a release that fails the evaluation with the
    // gateway's reason, before the next task: the claim never lapses.
    let position = |wanted: &dyn Fn(&Event) -> bool| events.iter().position(wanted);
    let submits_7 = events.iter().filter(|e| matches!(e, Event::Submit(s) if s.evaluation_id == 7)).count();
    assert_eq!(submits_7, 1, "a refused answer is sent once: {events:?}");
    let released: Vec<&ReleaseRequest> =
        events.iter().filter_map(|e| if let Event::Release(r) = e { Some(r) } else { None }).collect();
    assert_eq!(released.len(), 1, "{released:?}");
    let release = released[0];
    assert_eq!((release.evaluation_id, release.mark_as_failed), (7, true));
    assert_eq!(release.failure_reason, format!("the platform refused the answer: {URL_REFUSAL}"));
    assert_eq!(release.bot_id, "refused-bot");
    let release_7 = position(&|e| matches!(e, Event::Release(_))).context("release 7")?;
    let submit_8 = position(&|e| matches!(e, Event::Submit(s) if s.evaluation_id == 8)).context("submit 8")?;
    assert!(release_7 < submit_8, "the task was given up before the next one was answered");
    Ok(())
}

#[tokio::test]
async fn prompts_the_site_cannot_take_fail_at_once_without_leasing_a_session() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, aap_simulator::Site::ChatGpt, SimulatorConfig::default()).await?;
    let session = sim.create_session("unused").await;
    let fake = Fake::default();
    let long = "Which of these espresso machines suits a small kitchen best of all?";
    // And one with nothing to type (WebDriver's Enter and Tab only): it would wait out the
    // answer deadline for an answer to nothing.
    lock(&fake.tasks).extend([task(9, long), task(10, "\u{E007}\u{E004}")]);
    lock(&fake.sessions).push_back(session.storage_state_json);
    // As an operator sets it once the site caps its messages: 60 characters.
    let adapters = common::manifest_dir("chatgpt", |manifest| {
        manifest.options.insert("max_prompt_chars".to_owned(), toml::Value::Integer(60));
    })?;

    let both_released = |events: &[Event]| events.iter().filter(|e| matches!(e, Event::Release(_))).count() == 2;
    let (events, stats) = run_until(&fake, "refusing-bot", sim, Some(adapters.path()), both_released).await?;

    let released: Vec<&ReleaseRequest> =
        events.iter().filter_map(|e| if let Event::Release(r) = e { Some(r) } else { None }).collect();
    let [release, nothing] = released.as_slice() else { panic!("two releases: {released:?}") };
    assert_eq!((release.evaluation_id, release.mark_as_failed), (9, true));
    assert_eq!((nothing.evaluation_id, nothing.mark_as_failed), (10, true));
    assert_eq!(
        nothing.failure_reason,
        "prompt-refused: the assistant does not take the prompt: the prompt holds nothing to type (only characters WebDriver reads as keys)"
    );
    assert_eq!(
        release.failure_reason,
        format!(
            "prompt-refused: the assistant does not take the prompt: the prompt has {} characters; the site takes at most 60",
            long.chars().count()
        )
    );
    assert!(!events.iter().any(|e| matches!(e, Event::Lease(_) | Event::Evidence(_))), "{events:?}");
    assert!(stats.by_prompt.is_empty(), "nothing was asked");
    Ok(())
}
