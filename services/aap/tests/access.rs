//! Who may do what, over a real platform: every RPC and seed HTTP route × {no token, wrong
//! token, revoked token, customer, bot A, bot B, operator}, on bot A's claims and leases, with
//! the exact status each gets; every refusal leaves the database and the streams as they were.
//! Then tokens made, listed and revoked at run time, bots limited to some assistants, and what
//! customers see of an answer.

mod common;

use std::fmt;
use std::time::Duration;

use aap_proto::v1::admin_service_client::AdminServiceClient;
use aap_proto::v1::answers_service_client::AnswersServiceClient;
use aap_proto::v1::evaluation_service_client::EvaluationServiceClient;
use aap_proto::v1::session_service_client::SessionServiceClient;
use aap_proto::v1::{
    AskRequest, ClaimHello, ClaimRequest, CreateAccountRequest, CreateTokenRequest, DeleteAccountRequest,
    DisableAccountRequest, EnableAccountRequest, GetAccountRequest, GetEvidenceRequest, HeartbeatRequest, LeaseOutcome,
    LeaseSessionRequest, ListAccountsRequest, ListEvidenceRequest, ListLeasesRequest, ListTokensRequest, PollRequest,
    ReleaseRequest, ReportEvidenceRequest, ReturnSessionRequest, RevokeTokenRequest, Role, SubmitRequest, Target,
    UpdateAccountRequest, UpdateSessionStateRequest, WatchAccountsRequest, WatchRequest, WhoAmIRequest,
};
use common::*;
use futures::StreamExt;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Sends `authorization: Bearer <token>` when it has one.
#[derive(Clone)]
struct As(Option<String>);

impl tonic::service::Interceptor for As {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0 {
            request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
        }
        Ok(request)
    }
}

type Chan = InterceptedService<Channel, As>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Nobody,
    Wrong,
    Revoked,
    Customer,
    Operator,
    BotB,
    /// Last: it holds the claims and leases, and its successful calls use them up.
    BotA,
}

const EVERYONE: [Who; 7] = [Who::Nobody, Who::Wrong, Who::Revoked, Who::Customer, Who::Operator, Who::BotB, Who::BotA];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rpc {
    Health,
    UnknownMethod,
    Ask,
    Watch,
    Claim,
    Poll,
    Heartbeat,
    Submit,
    Release,
    CreateAccount,
    ListAccounts,
    UpdateSessionState,
    UpdateAccount,
    LeaseSession,
    ReturnSession,
    ReportEvidence,
    ListEvidence,
    GetEvidence,
    CreateToken,
    ListTokens,
    RevokeToken,
    WhoAmI,
    HttpPoll,
    HttpSubmit,
    HttpRelease,
    WatchAccounts,
    GetAccount,
    DisableAccount,
    EnableAccount,
    DeleteAccount,
    ListLeases,
    ListRemoteLogins,
}

const EVERY_RPC: [Rpc; 32] = [
    Rpc::Health,
    Rpc::UnknownMethod,
    Rpc::Ask,
    Rpc::Watch,
    Rpc::Claim,
    Rpc::Poll,
    Rpc::Heartbeat,
    Rpc::Submit,
    Rpc::Release,
    Rpc::CreateAccount,
    Rpc::ListAccounts,
    Rpc::UpdateSessionState,
    Rpc::UpdateAccount,
    Rpc::LeaseSession,
    Rpc::ReturnSession,
    Rpc::ReportEvidence,
    Rpc::ListEvidence,
    Rpc::GetEvidence,
    Rpc::CreateToken,
    Rpc::ListTokens,
    Rpc::RevokeToken,
    Rpc::WhoAmI,
    Rpc::HttpPoll,
    Rpc::HttpSubmit,
    Rpc::HttpRelease,
    Rpc::WatchAccounts,
    Rpc::GetAccount,
    Rpc::DisableAccount,
    Rpc::EnableAccount,
    Rpc::DeleteAccount,
    Rpc::ListLeases,
    Rpc::ListRemoteLogins,
];

/// The outcome of a call: a gRPC code, or an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Grpc(Code),
    Http(u16),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Grpc(code) => write!(f, "{code:?}"),
            Outcome::Http(status) => write!(f, "HTTP {status}"),
        }
    }
}

impl Outcome {
    fn ok(self) -> bool {
        matches!(self, Outcome::Grpc(Code::Ok) | Outcome::Http(200))
    }
}

/// What each caller must get: the role table, then ownership (bot A holds every claim and
/// lease the calls name).
fn expected(rpc: Rpc, who: Who) -> Outcome {
    use Who::*;
    let http = matches!(rpc, Rpc::HttpPoll | Rpc::HttpSubmit | Rpc::HttpRelease);
    let code = match (rpc, who) {
        (Rpc::Health, _) => Code::Ok,
        (_, Nobody | Wrong | Revoked) => Code::Unauthenticated,
        (Rpc::UnknownMethod, _) => Code::PermissionDenied,
        (Rpc::WhoAmI, _) => Code::Ok,
        (Rpc::Ask | Rpc::Watch, Customer | Operator) => Code::Ok,
        (Rpc::Ask | Rpc::Watch, _) => Code::PermissionDenied,
        (Rpc::Claim | Rpc::Poll | Rpc::LeaseSession | Rpc::HttpPoll, BotA | BotB) => Code::Ok,
        (Rpc::Heartbeat | Rpc::Submit | Rpc::Release | Rpc::ReturnSession | Rpc::ReportEvidence, BotA) => Code::Ok,
        (Rpc::HttpSubmit | Rpc::HttpRelease, BotA) => Code::Ok,
        // Bot B is a bot, but not the holder.
        (
            Rpc::Claim
            | Rpc::Poll
            | Rpc::Heartbeat
            | Rpc::Submit
            | Rpc::Release
            | Rpc::LeaseSession
            | Rpc::ReturnSession
            | Rpc::ReportEvidence
            | Rpc::HttpPoll
            | Rpc::HttpSubmit
            | Rpc::HttpRelease,
            _,
        ) => Code::PermissionDenied,
        (_, Operator) => Code::Ok,
        (_, _) => Code::PermissionDenied,
    };
    if !http {
        return Outcome::Grpc(code);
    }
    Outcome::Http(match code {
        Code::Ok => 200,
        Code::Unauthenticated => 401,
        _ => 403,
    })
}

/// The ids the calls name, all held by bot A.
struct World {
    tokens: Tokens,
    prompt_id: i64,
    /// Claimed by bot A (bot id `bot-a-1`): one per call that uses a claim up.
    heartbeat_eval: i64,
    submit_eval: i64,
    release_eval: i64,
    http_submit_eval: i64,
    http_release_eval: i64,
    /// Bot A's lease, and an account to administer.
    lease_id: String,
    account_id: String,
    /// Evidence bot A reported on its lease.
    evidence_id: String,
    /// An account no bot leases, for the operator's DeleteAccount call.
    spare_account_id: String,
    /// A spare operator-made token the operator's RevokeToken call revokes.
    spare_token_id: String,
}

struct Tokens {
    customer: String,
    bot_a: String,
    bot_b: String,
    revoked: String,
}

impl World {
    fn token(&self, who: Who) -> Option<String> {
        match who {
            Who::Nobody => None,
            Who::Wrong => Some("aap_not-a-token-anyone-was-given".into()),
            Who::Revoked => Some(self.tokens.revoked.clone()),
            Who::Customer => Some(self.tokens.customer.clone()),
            Who::Operator => Some(OPERATOR.into()),
            Who::BotA => Some(self.tokens.bot_a.clone()),
            Who::BotB => Some(self.tokens.bot_b.clone()),
        }
    }
}

fn bot_id(who: Who) -> String {
    if who == Who::BotB { "bot-b-1".into() } else { "bot-a-1".into() }
}

fn storage_state(value: &str) -> String {
    format!(r#"{{"cookies": [{{"name": "session", "value": "{value}", "domain": ".chatgpt.com", "path": "/"}}]}}"#)
}

async fn admin(app: &TestApp, token: &str) -> AdminServiceClient<Chan> {
    AdminServiceClient::with_interceptor(app.channel.clone(), As(Some(token.into())))
}

async fn create_token(app: &TestApp, principal: &str, role: Role, assistants: &[&str]) -> (String, String) {
    let request = CreateTokenRequest {
        principal: principal.into(),
        role: role.into(),
        assistants: assistants.iter().map(|a| (*a).to_owned()).collect(),
        label: "access test".into(),
    };
    let reply = admin(app, OPERATOR).await.create_token(request).await.expect("token created").into_inner();
    (reply.token, reply.info.expect("info").id)
}

fn evaluations(app: &TestApp, token: &str) -> EvaluationServiceClient<Chan> {
    EvaluationServiceClient::with_interceptor(app.channel.clone(), As(Some(token.into())))
}

/// Asks a prompt for chatgpt and has bot A claim its task; returns the evaluation id.
async fn claimed_by_a(app: &TestApp, bot_a: &str, prompt: &str) -> (i64, i64) {
    let stream = app.answers().ask(ask_text(prompt, &["chatgpt"])).await.expect("ask").into_inner();
    drop(stream);
    for _ in 0..400 {
        let request = PollRequest {
            bot_id: "bot-a-1".into(),
            serves: Some(Target { assistant: "chatgpt".into(), plan: String::new() }),
        };
        if let Some(task) = evaluations(app, bot_a).poll(request).await.expect("poll").into_inner().task {
            return (task.evaluation_id, task.prompt_id);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no task for {prompt:?}");
}

async fn world(app: &TestApp) -> World {
    let (customer, _) = create_token(app, "acme", Role::Customer, &[]).await;
    let (bot_a, _) = create_token(app, "bot-a", Role::Bot, &[]).await;
    let (bot_b, _) = create_token(app, "bot-b", Role::Bot, &[]).await;
    let (revoked, revoked_id) = create_token(app, "gone", Role::Customer, &[]).await;
    admin(app, OPERATOR).await.revoke_token(RevokeTokenRequest { id: revoked_id }).await.expect("revoked");
    let (_, spare_token_id) = create_token(app, "spare", Role::Customer, &[]).await;

    let (heartbeat_eval, prompt_id) = claimed_by_a(app, &bot_a, "access: heartbeat").await;
    let (submit_eval, _) = claimed_by_a(app, &bot_a, "access: submit").await;
    let (release_eval, _) = claimed_by_a(app, &bot_a, "access: release").await;
    let (http_submit_eval, _) = claimed_by_a(app, &bot_a, "access: http submit").await;
    let (http_release_eval, _) = claimed_by_a(app, &bot_a, "access: http release").await;

    let mut operator = app.sessions(OPERATOR);
    let mut account_id = String::new();
    for label in ["acct-1", "acct-2", "acct-3"] {
        let request = CreateAccountRequest {
            assistant: "chatgpt".into(),
            plan: "Plus".into(),
            label: label.into(),
            storage_state_json: storage_state(label),
            ..CreateAccountRequest::default()
        };
        account_id = operator.create_account(request).await.expect("account").into_inner().account.expect("account").id;
    }
    // Of a plan no lease here asks for, so no bot takes it.
    let spare = CreateAccountRequest {
        assistant: "chatgpt".into(),
        plan: "Pro".into(),
        label: "spare".into(),
        storage_state_json: storage_state("spare"),
        ..CreateAccountRequest::default()
    };
    let spare_account_id =
        operator.create_account(spare).await.expect("account").into_inner().account.expect("account").id;
    let lease = app
        .sessions(&bot_a)
        .lease_session(LeaseSessionRequest {
            assistant: "chatgpt".into(),
            plan: "Plus".into(),
            bot_id: "bot-a-1".into(),
        })
        .await
        .expect("bot A leases")
        .into_inner();
    let evidence_id = app
        .sessions(&bot_a)
        .report_evidence(evidence_report(&lease.lease_id, "Setup"))
        .await
        .expect("bot A reports evidence")
        .into_inner()
        .evidence_id;
    World {
        tokens: Tokens { customer, bot_a, bot_b, revoked },
        evidence_id,
        prompt_id,
        heartbeat_eval,
        submit_eval,
        release_eval,
        http_submit_eval,
        http_release_eval,
        lease_id: lease.lease_id,
        account_id,
        spare_account_id,
        spare_token_id,
    }
}

fn evidence_report(lease_id: &str, who: &str) -> ReportEvidenceRequest {
    ReportEvidenceRequest {
        bot_id: "bot-a-1".into(),
        lease_id: lease_id.into(),
        assistant: "chatgpt".into(),
        evaluation_id: 1,
        attempt: 1,
        class: "logged-out".into(),
        error: format!("reported by {who}"),
        screenshot_png: b"\x89PNG\r\n\x1a\n".to_vec(),
        ..ReportEvidenceRequest::default()
    }
}

fn code<T>(result: Result<T, tonic::Status>) -> Outcome {
    Outcome::Grpc(match result {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    })
}

async fn http(app: &TestApp, path: &str, token: Option<String>, body: String) -> Outcome {
    let mut request = reqwest::Client::new()
        .post(format!("{}/evaluations/api/v1/{path}", app.http_url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    Outcome::Http(request.send().await.expect("http").status().as_u16())
}

async fn call(app: &TestApp, world: &World, rpc: Rpc, who: Who) -> Outcome {
    let token = world.token(who);
    let chan = || InterceptedService::new(app.channel.clone(), As(token.clone()));
    let answers = || AnswersServiceClient::new(chan());
    let evals = || EvaluationServiceClient::new(chan());
    let sessions = || SessionServiceClient::new(chan());
    let admin = || AdminServiceClient::new(chan());
    match rpc {
        Rpc::Health => {
            let mut health = tonic_health::pb::health_client::HealthClient::new(chan());
            code(health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await)
        }
        Rpc::UnknownMethod => {
            let mut grpc = tonic::client::Grpc::new(chan());
            grpc.ready().await.expect("ready");
            let codec = tonic_prost::ProstCodec::<WhoAmIRequest, aap_proto::v1::WhoAmIResponse>::default();
            let path = tonic::codegen::http::uri::PathAndQuery::from_static("/aap.v1.SecretService/Dump");
            code(grpc.unary(tonic::Request::new(WhoAmIRequest {}), path, codec).await)
        }
        Rpc::Ask => code(answers().ask(ask_text("access: asked", &["chatgpt"])).await),
        Rpc::Watch => code(answers().watch(WatchRequest { prompt_id: world.prompt_id, ..Default::default() }).await),
        Rpc::Claim => {
            let hello = ClaimRequest {
                msg: Some(aap_proto::v1::claim_request::Msg::Hello(ClaimHello {
                    bot_id: bot_id(who),
                    serves: vec![Target { assistant: "claude".into(), plan: String::new() }],
                    max_tasks: 1,
                })),
            };
            // The stream ends (and the session with it) when the reply is dropped.
            code(evals().claim(futures::stream::iter([hello])).await)
        }
        Rpc::Poll => code(
            evals()
                .poll(PollRequest {
                    bot_id: bot_id(who),
                    serves: Some(Target { assistant: "claude".into(), plan: String::new() }),
                })
                .await,
        ),
        Rpc::Heartbeat => {
            code(evals().heartbeat(HeartbeatRequest { evaluation_id: world.heartbeat_eval, bot_id: bot_id(who) }).await)
        }
        Rpc::Submit => code(
            evals()
                .submit(SubmitRequest {
                    evaluation_id: world.submit_eval,
                    response_text: format!("an answer from {who:?}"),
                    bot_id: bot_id(who),
                    ..SubmitRequest::default()
                })
                .await,
        ),
        Rpc::Release => code(
            evals()
                .release(ReleaseRequest {
                    evaluation_id: world.release_eval,
                    mark_as_failed: true,
                    failure_reason: format!("released by {who:?}"),
                    bot_id: bot_id(who),
                })
                .await,
        ),
        Rpc::CreateAccount => code(
            sessions()
                .create_account(CreateAccountRequest {
                    assistant: "claude".into(),
                    plan: "Pro".into(),
                    label: format!("made by {who:?}"),
                    storage_state_json: storage_state("new").replace(".chatgpt.com", ".claude.ai"),
                    ..CreateAccountRequest::default()
                })
                .await,
        ),
        Rpc::ListAccounts => code(sessions().list_accounts(ListAccountsRequest::default()).await),
        Rpc::WatchAccounts => match sessions().watch_accounts(WatchAccountsRequest::default()).await {
            // Admitted: the first list arrives at once.
            Ok(response) => match response.into_inner().next().await {
                Some(Ok(_)) => Outcome::Grpc(Code::Ok),
                Some(Err(status)) => Outcome::Grpc(status.code()),
                None => Outcome::Grpc(Code::Unknown),
            },
            Err(status) => Outcome::Grpc(status.code()),
        },
        Rpc::GetAccount => {
            code(sessions().get_account(GetAccountRequest { account_id: world.account_id.clone() }).await)
        }
        Rpc::DisableAccount => {
            code(sessions().disable_account(DisableAccountRequest { account_id: world.account_id.clone() }).await)
        }
        Rpc::EnableAccount => {
            code(sessions().enable_account(EnableAccountRequest { account_id: world.account_id.clone() }).await)
        }
        Rpc::DeleteAccount => {
            code(sessions().delete_account(DeleteAccountRequest { account_id: world.spare_account_id.clone() }).await)
        }
        Rpc::ListRemoteLogins => code(
            aap_proto::v1::remote_login_service_client::RemoteLoginServiceClient::new(chan())
                .list_remote_logins(aap_proto::v1::ListRemoteLoginsRequest {})
                .await,
        ),
        Rpc::ListLeases => {
            code(sessions().list_leases(ListLeasesRequest { account_id: world.account_id.clone(), limit: 0 }).await)
        }
        Rpc::UpdateSessionState => code(
            sessions()
                .update_session_state(UpdateSessionStateRequest {
                    account_id: world.account_id.clone(),
                    storage_state_json: storage_state("refreshed"),
                })
                .await,
        ),
        Rpc::UpdateAccount => code(
            sessions()
                .update_account(UpdateAccountRequest {
                    account_id: world.account_id.clone(),
                    label: Some(format!("renamed by {who:?}")),
                    ..UpdateAccountRequest::default()
                })
                .await,
        ),
        Rpc::LeaseSession => code(
            sessions()
                .lease_session(LeaseSessionRequest {
                    assistant: "chatgpt".into(),
                    plan: "Plus".into(),
                    bot_id: bot_id(who),
                })
                .await,
        ),
        Rpc::ReturnSession => code(
            sessions()
                .return_session(ReturnSessionRequest {
                    lease_id: world.lease_id.clone(),
                    outcome: LeaseOutcome::Ok.into(),
                    runs: 1,
                    detail: format!("returned by {who:?}"),
                    ..Default::default()
                })
                .await,
        ),
        Rpc::ReportEvidence => {
            code(sessions().report_evidence(evidence_report(&world.lease_id, &format!("{who:?}"))).await)
        }
        Rpc::ListEvidence => code(sessions().list_evidence(ListEvidenceRequest::default()).await),
        Rpc::GetEvidence => code(
            sessions()
                .get_evidence(GetEvidenceRequest { evidence_id: world.evidence_id.clone(), include_html: true })
                .await,
        ),
        Rpc::CreateToken => code(
            admin()
                .create_token(CreateTokenRequest {
                    principal: "made-in-matrix".into(),
                    role: Role::Customer.into(),
                    ..CreateTokenRequest::default()
                })
                .await,
        ),
        Rpc::ListTokens => code(admin().list_tokens(ListTokensRequest::default()).await),
        Rpc::RevokeToken => code(admin().revoke_token(RevokeTokenRequest { id: world.spare_token_id.clone() }).await),
        Rpc::WhoAmI => code(admin().who_am_i(WhoAmIRequest {}).await),
        Rpc::HttpPoll => http(app, "poll", token, r#"{"assistant_name": "Claude", "plan_name": "Pro"}"#.into()).await,
        Rpc::HttpSubmit => {
            let body = format!(
                r#"{{"evaluation_id": {}, "answer": {{"response": "seed answer from {who:?}", "citations": [], "timestamp": "2026-12-02T10:00:00Z"}}}}"#,
                world.http_submit_eval
            );
            http(app, "submit", token, body).await
        }
        Rpc::HttpRelease => {
            let body = format!(r#"{{"evaluation_id": {}, "mark_as_failed": false}}"#, world.http_release_eval);
            http(app, "release", token, body).await
        }
    }
}

/// Everything a call could change: every table's rows, and the task and result streams.
async fn fingerprint(app: &TestApp) -> String {
    let mut parts = Vec::new();
    for table in [
        "prompts",
        "evaluations",
        "answers",
        "session_accounts",
        "session_leases",
        "session_evidence",
        "principals",
        "api_tokens",
    ] {
        let sql = format!("SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '') FROM {table} t");
        let (digest,): (String,) = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(&app.pool).await.expect("digest");
        parts.push(format!("{table}={digest}"));
    }
    let client = async_nats::connect(&app.nats_url).await.expect("nats");
    let js = async_nats::jetstream::new(client);
    let topology = aap_platform::nats::Topology::new(app.nats_prefix.clone());
    for name in [topology.tasks_stream(), topology.results_stream()] {
        let mut stream = js.get_stream(&name).await.expect("stream");
        let state = stream.info().await.expect("info").state.clone();
        parts.push(format!("{name}={}/{}/{}", state.messages, state.first_sequence, state.last_sequence));
    }
    parts.join(" ")
}

/// Waits until nothing moves: two fingerprints in a row, a scheduler tick apart, agree.
async fn quiescent(app: &TestApp) -> String {
    let mut last = fingerprint(app).await;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let now = fingerprint(app).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the platform never settled");
}

#[tokio::test]
async fn every_method_and_route_admits_exactly_its_callers_and_refusals_change_nothing() {
    let app = spawn_app().await;
    let world = world(&app).await;

    // Refusals first, each between two fingerprints of a settled platform; then the calls that
    // succeed, bot A (the holder) last.
    let mut refusals = 0;
    let mut admitted = 0;
    let mut failures = Vec::new();
    quiescent(&app).await;
    for rpc in EVERY_RPC {
        for who in EVERYONE {
            let want = expected(rpc, who);
            if want.ok() {
                continue;
            }
            let before = fingerprint(&app).await;
            let got = call(&app, &world, rpc, who).await;
            let after = fingerprint(&app).await;
            if got != want {
                failures.push(format!("{rpc:?} as {who:?}: got {got}, want {want}"));
            }
            if before != after {
                failures.push(format!("{rpc:?} as {who:?} was refused but changed state:\n  {before}\n  {after}"));
            }
            refusals += 1;
        }
    }
    for rpc in EVERY_RPC {
        for who in EVERYONE {
            let want = expected(rpc, who);
            if !want.ok() {
                continue;
            }
            let got = call(&app, &world, rpc, who).await;
            if got != want {
                failures.push(format!("{rpc:?} as {who:?}: got {got}, want {want}"));
            }
            admitted += 1;
        }
    }
    assert!(failures.is_empty(), "{} of {} cells wrong:\n{}", failures.len(), refusals + admitted, failures.join("\n"));
    assert_eq!(refusals + admitted, EVERY_RPC.len() * EVERYONE.len());
    assert!(refusals > 80 && admitted > 30, "{refusals} refusals, {admitted} admitted");

    // What the admitted calls did is what their holders asked for.
    let status = |id: i64| {
        let pool = app.pool.clone();
        async move {
            let (status, reason): (String, Option<String>) =
                sqlx::query_as("SELECT status, failure_reason FROM evaluations WHERE id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .expect("evaluation");
            (status, reason.unwrap_or_default())
        }
    };
    assert_eq!(status(world.release_eval).await, ("failed".into(), "released by BotA".into()));
    assert_eq!(status(world.http_release_eval).await.0, "queued");
    let (answered_by,): (String,) = sqlx::query_as("SELECT response_text FROM answers WHERE evaluation_id = $1")
        .bind(world.submit_eval)
        .fetch_one(&app.pool)
        .await
        .unwrap_or_else(|_| ("not stored yet".into(),));
    assert!(answered_by == "an answer from BotA" || answered_by == "not stored yet", "{answered_by}");
}

#[tokio::test]
async fn the_same_principal_with_another_bot_id_cannot_touch_a_claim() {
    let app = spawn_app().await;
    let (bot_a, _) = create_token(&app, "bot-a", Role::Bot, &[]).await;
    let (id, _) = claimed_by_a(&app, &bot_a, "two bots, one principal").await;
    let mut client = evaluations(&app, &bot_a);
    let other = HeartbeatRequest { evaluation_id: id, bot_id: "bot-a-2".into() };
    assert_eq!(client.heartbeat(other).await.expect_err("not its claim").code(), Code::PermissionDenied);
    let release = ReleaseRequest { evaluation_id: id, bot_id: "bot-a-2".into(), ..ReleaseRequest::default() };
    assert_eq!(client.release(release).await.expect_err("not its claim").code(), Code::PermissionDenied);
    let own = HeartbeatRequest { evaluation_id: id, bot_id: "bot-a-1".into() };
    assert!(client.heartbeat(own).await.is_ok(), "the holder extends its claim");
    // An id that does not exist is not found.
    let missing = HeartbeatRequest { evaluation_id: 987_654, bot_id: String::new() };
    assert_eq!(client.heartbeat(missing).await.expect_err("no such evaluation").code(), Code::NotFound);
}

#[tokio::test]
async fn tokens_are_made_listed_and_revoked_at_run_time_without_their_secrets() {
    let app = spawn_app().await;
    let (token, id) = create_token(&app, "acme", Role::Customer, &[]).await;
    assert!(token.starts_with("aap_") && token.len() > 40, "{token}");
    let me = admin(&app, &token).await.who_am_i(WhoAmIRequest {}).await.expect("whoami").into_inner();
    assert_eq!((me.principal.as_str(), me.role(), me.token_id.as_str()), ("acme", Role::Customer, id.as_str()));

    let listed =
        admin(&app, OPERATOR).await.list_tokens(ListTokensRequest::default()).await.expect("list").into_inner();
    let names: Vec<&str> = listed.tokens.iter().map(|t| t.principal.as_str()).collect();
    for name in [CUSTOMER_NAME, BOT_NAME, OPERATOR_NAME, "acme"] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let debug = format!("{listed:?}");
    for secret in [token.as_str(), CUSTOMER, BOT, OPERATOR] {
        assert!(!debug.contains(secret), "a listing shows a secret");
    }
    let (hash,): (Vec<u8>,) = sqlx::query_as("SELECT token_hash FROM api_tokens WHERE id = $1")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert_eq!(hash.len(), 32, "only the SHA-256 hash is stored");
    let (plain,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM api_tokens WHERE position($1::bytea in token_hash) > 0")
            .bind(token.as_bytes())
            .fetch_one(&app.pool)
            .await
            .expect("search");
    assert_eq!(plain, 0);

    // The token works until it is revoked, and not a moment after.
    let stream = app.answers_as(&token).ask(ask_text("run-time token", &["chatgpt"])).await;
    assert!(stream.is_ok(), "a new token works at once");
    admin(&app, OPERATOR).await.revoke_token(RevokeTokenRequest { id: id.clone() }).await.expect("revoke");
    let refused = app.answers_as(&token).ask(ask_text("run-time token", &["chatgpt"])).await.expect_err("revoked");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(refused.message().contains(&id), "{}", refused.message());
    let again = admin(&app, OPERATOR).await.revoke_token(RevokeTokenRequest { id: id.clone() }).await;
    assert_eq!(again.expect_err("twice").code(), Code::FailedPrecondition);
    let unknown = admin(&app, OPERATOR).await.revoke_token(RevokeTokenRequest { id: "tok_000000000000".into() }).await;
    assert_eq!(unknown.expect_err("unknown").code(), Code::NotFound);
    let listed = admin(&app, OPERATOR)
        .await
        .list_tokens(ListTokensRequest { principal: "acme".into(), include_revoked: true })
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.tokens.len(), 1);
    assert_eq!(listed.tokens[0].revoked_by, OPERATOR_NAME);

    // One principal, one role; bad names and roles are refused naming the field.
    let mut operator = admin(&app, OPERATOR).await;
    let bot_named_acme = CreateTokenRequest { principal: "acme".into(), role: Role::Bot.into(), ..Default::default() };
    assert_eq!(operator.create_token(bot_named_acme).await.expect_err("role").code(), Code::FailedPrecondition);
    for (principal, role, field) in [
        ("Acme Corp", Role::Customer, "principal"),
        ("ok\0", Role::Customer, "principal"),
        ("ok", Role::Unspecified, "role"),
    ] {
        let request = CreateTokenRequest { principal: principal.into(), role: role.into(), ..Default::default() };
        let status = operator.create_token(request).await.expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains(field), "{}", status.message());
    }

    // The last live operator token cannot be revoked: nobody could make another.
    let operators = operator
        .list_tokens(ListTokensRequest { principal: OPERATOR_NAME.into(), include_revoked: false })
        .await
        .expect("list")
        .into_inner();
    let last = operators.tokens[0].id.clone();
    let status = operator.revoke_token(RevokeTokenRequest { id: last }).await.expect_err("last operator token");
    assert_eq!(status.code(), Code::FailedPrecondition);
}

/// Reads `stream` until it ends: it must end with UNAUTHENTICATED naming token `id`, within 20 s.
async fn ends_unauthenticated<T>(stream: &mut tonic::Streaming<T>, id: &str, what: &str) {
    let status = ends_with(stream, Code::Unauthenticated, what).await;
    assert!(status.message().contains(id), "{what}: {}", status.message());
}

#[tokio::test]
async fn a_revoked_token_ends_the_streams_open_with_it_and_a_bots_tasks_go_back() {
    let app = spawn_app().await;
    let (customer, customer_id) = create_token(&app, "leaving-customer", Role::Customer, &[]).await;
    let (bot, bot_id) = create_token(&app, "leaving-bot", Role::Bot, &["chatgpt"]).await;
    let (operator, operator_id) = create_token(&app, "leaving-operator", Role::Operator, &[]).await;

    let mut accounts = SessionServiceClient::with_interceptor(app.channel.clone(), As(Some(operator)))
        .watch_accounts(WatchAccountsRequest::default())
        .await
        .expect("watch accounts")
        .into_inner();
    let (said, heard) = tokio::sync::mpsc::channel(4);
    let hello = ClaimHello {
        bot_id: "leaving-1".into(),
        serves: vec![Target { assistant: "chatgpt".into(), plan: String::new() }],
        max_tasks: 1,
    };
    said.send(ClaimRequest { msg: Some(aap_proto::v1::claim_request::Msg::Hello(hello)) }).await.expect("hello");
    let mut claim = evaluations(&app, &bot)
        .claim(tokio_stream::wrappers::ReceiverStream::new(heard))
        .await
        .expect("claim")
        .into_inner();
    let mut ask = app
        .answers_as(&customer)
        .ask(ask_text("Which boots keep feet dry, asked by a customer about to be revoked?", &["chatgpt"]))
        .await
        .expect("ask")
        .into_inner();
    // The bot holds the customer's task (after the stream's welcome).
    let task = loop {
        let reply = tokio::time::timeout(Duration::from_secs(30), claim.message()).await;
        match reply.expect("a task in 30 s").expect("claim stream").and_then(|r| r.msg) {
            Some(aap_proto::v1::claim_response::Msg::Task(task)) => break task,
            Some(_) => continue,
            None => panic!("the claim stream ended"),
        }
    };

    // Revoked while open: before, each stream went on (WatchAccounts sent every change to a
    // revoked operator for as long as it stayed connected).
    for id in [&customer_id, &bot_id, &operator_id] {
        admin(&app, OPERATOR).await.revoke_token(RevokeTokenRequest { id: id.clone() }).await.expect("revoke");
    }
    ends_unauthenticated(&mut ask, &customer_id, "the customer's Ask").await;
    ends_unauthenticated(&mut claim, &bot_id, "the bot's Claim").await;
    ends_unauthenticated(&mut accounts, &operator_id, "the operator's WatchAccounts").await;
    // The revoked bot's task goes back to the queue, to a bot that may still take it.
    let again = poll_task(&app, "chatgpt", "").await;
    assert_eq!(again.evaluation_id, task.evaluation_id);
    drop(said);
}

#[tokio::test]
async fn a_bot_limited_to_some_assistants_serves_and_leases_only_those() {
    let app = spawn_app().await;
    let (token, _) = create_token(&app, "claude-fleet", Role::Bot, &["claude"]).await;
    let mut bot = evaluations(&app, &token);
    let poll = |assistant: &str| PollRequest {
        bot_id: "c-1".into(),
        serves: Some(Target { assistant: assistant.into(), plan: String::new() }),
    };
    assert_eq!(bot.poll(poll("chatgpt")).await.expect_err("not its assistant").code(), Code::PermissionDenied);
    assert!(bot.poll(poll("claude")).await.is_ok());
    let hello = ClaimRequest {
        msg: Some(aap_proto::v1::claim_request::Msg::Hello(ClaimHello {
            bot_id: "c-1".into(),
            serves: vec![
                Target { assistant: "claude".into(), plan: String::new() },
                Target { assistant: "perplexity".into(), plan: String::new() },
            ],
            max_tasks: 1,
        })),
    };
    let status = bot.claim(futures::stream::iter([hello])).await.expect_err("one assistant is not its");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert!(status.message().contains("perplexity"), "{}", status.message());
    let lease = LeaseSessionRequest { assistant: "ChatGPT".into(), plan: "Plus".into(), bot_id: "c-1".into() };
    assert_eq!(app.sessions(&token).lease_session(lease).await.expect_err("no").code(), Code::PermissionDenied);
    // Assistants are only for bots.
    let request = CreateTokenRequest {
        principal: "acme".into(),
        role: Role::Customer.into(),
        assistants: vec!["claude".into()],
        ..Default::default()
    };
    let status = admin(&app, OPERATOR).await.create_token(request).await.expect_err("customer with assistants");
    assert_eq!(status.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn customers_see_answers_without_the_fleets_identifiers_operators_see_them() {
    let app = spawn_app().await;
    let stream = app.answers().ask(ask_text("who answered?", &["chatgpt"])).await.expect("ask").into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(&app, "chatgpt", "").await;
    submit(&app, task.evaluation_id, "an answer").await.expect("submitted");
    let events = waiting.await.expect("stream");
    let seen = first_answer(&events);
    assert_eq!((seen.bot_id.as_str(), seen.account_id.as_str(), seen.account_label.as_str()), ("", "", ""));

    let ask =
        AskRequest { policy: aap_proto::v1::SimilarPolicy::Accept.into(), ..ask_text("who answered?", &["chatgpt"]) };
    let stream = app.answers_as(OPERATOR).ask(ask).await.expect("operator asks").into_inner();
    let events = collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))).await;
    let cached = events
        .iter()
        .find_map(|e| match e {
            aap_proto::v1::answer_event::Event::Cached(a) => Some(a.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no cached answer in {events:?}"));
    assert_eq!(cached.bot_id, "test-bot", "operators see which bot answered");
}

#[tokio::test]
async fn requests_over_a_services_limit_are_refused_before_they_are_read() {
    let app = spawn_app().await;
    let huge = "x".repeat(aap_platform::server::limits::ANSWERS + 1);
    let status = app.answers().ask(ask_text(&huge, &["chatgpt"])).await.expect_err("too large");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(status.message().contains("too large"), "{}", status.message());
    assert_eq!(app.count("prompts").await, 0);
    // The seed's HTTP API reads at most 2 MiB, after the token.
    let body = format!(r#"{{"assistant_name": "{}", "plan_name": "Plus"}}"#, "x".repeat(3 << 20));
    let response = reqwest::Client::new()
        .post(format!("{}/evaluations/api/v1/poll", app.http_url))
        .header("authorization", format!("Bearer {BOT}"))
        .body(body)
        .send()
        .await
        .expect("http");
    assert_eq!(response.status().as_u16(), 413);
}

#[tokio::test]
async fn a_caller_holds_at_most_its_share_of_streams_and_a_refused_ask_leaves_nothing_behind() {
    let app = spawn_app_with(Options { max_streams_per_caller: 2, max_streams: 3, ..Options::default() }).await;
    // A plan no bot serves: the streams wait for as long as they are open.
    let waiting = |text: &str| AskRequest {
        targets: vec![Target { assistant: "chatgpt".into(), plan: "nobody-serves".into() }],
        ..ask_text(text, &[])
    };
    let mut first = app.answers().ask(waiting("Which streams are held?")).await.expect("first").into_inner();
    let Some(Ok(matched)) = first.next().await else { panic!("the first Ask's first event") };
    let prompt_id = match matched.event.and_then(|e| e.event) {
        Some(aap_proto::v1::answer_event::Event::Matched(m)) => m.prompt_id,
        other => panic!("matched first: {other:?}"),
    };
    let watch = || WatchRequest { prompt_id, ..WatchRequest::default() };
    let second = app.answers().watch(watch()).await.expect("second").into_inner();

    // The third, an Ask or a Watch, is refused at once, and a refused Ask of a new text stores
    // no prompt and schedules nothing.
    let prompts_before = count_rows(&app, "SELECT count(*) FROM prompts").await;
    let evaluations_before = count_rows(&app, "SELECT count(*) FROM evaluations").await;
    let refused = app.answers().ask(waiting("A text never stored")).await.expect_err("a third stream");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("--max-streams-per-caller"), "{}", refused.message());
    let refused = app.answers().watch(watch()).await.expect_err("a third stream");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(count_rows(&app, "SELECT count(*) FROM prompts").await, prompts_before);
    assert_eq!(count_rows(&app, "SELECT count(*) FROM evaluations").await, evaluations_before);

    // Another caller has a share of its own, until the replica holds all it may.
    let mut other = app.answers_as(OPERATOR).watch(watch()).await.expect("another caller's").into_inner();
    assert!(other.next().await.is_some_and(|event| event.is_ok()), "its stream works");
    let full = app.answers_as(OPERATOR).watch(watch()).await.expect_err("a fourth stream on the replica");
    assert_eq!(full.code(), Code::ResourceExhausted, "{full:?}");
    assert!(full.message().contains("--max-streams)"), "{}", full.message());

    // A stream closed frees its place: once the server has seen it go, a new one is taken.
    drop(second);
    let mut tries = 0;
    let mut reopened = loop {
        match app.answers().watch(watch()).await {
            Ok(stream) => break stream.into_inner(),
            Err(status) if status.code() == Code::ResourceExhausted && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("after a stream closed: {status:?}"),
        }
    };
    assert!(reopened.next().await.is_some_and(|event| event.is_ok()), "the new stream works");
    drop(first);
}

async fn count_rows(app: &TestApp, sql: &'static str) -> i64 {
    let (count,): (i64,) = sqlx::query_as(sql).fetch_one(&app.pool).await.expect("count");
    count
}
