//! Remote login end to end: the platform starts a headful Chromium in its own Xvfb on the
//! simulator's login page, the test watches its screencast and drives it over gRPC as the
//! console would, and the captured session is stored encrypted and leased by a bot.
//!
//! The test clicks at the simulator's fixed form positions (`aap_simulator::login::EMAIL_AT`
//! and friends, docs/simulator.md "Login pages") and waits for the one-time-code step by the
//! page address the login reports (`?step=otp`).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aap_proto::v1::admin_service_client::AdminServiceClient;
use aap_proto::v1::remote_login_service_client::RemoteLoginServiceClient;
use aap_proto::v1::send_remote_login_input_request::Input;
use aap_proto::v1::watch_remote_login_response::Event;
use aap_proto::v1::*;
use aap_simulator::login::{DEFAULT_EMAIL, DEFAULT_PASSWORD, EMAIL_AT, OTP_AT, PASSWORD_AT, SUBMIT_AT};
use aap_simulator::{Simulator, SimulatorConfig, Site};
use common::*;
use futures::StreamExt;
use tokio::net::TcpListener;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

type Logins = RemoteLoginServiceClient<InterceptedService<Channel, aap::client::Bearer>>;
type Watch = tonic::Streaming<WatchRemoteLoginResponse>;

/// Generous: a headful Chromium starts in a few seconds, but test binaries share two cores.
const WAIT: Duration = Duration::from_secs(60);

fn logins(app: &TestApp, token: &str) -> Logins {
    RemoteLoginServiceClient::with_interceptor(app.channel.clone(), aap::client::Bearer::new(token).expect("token"))
}

async fn chatgpt_simulator() -> Simulator {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind simulator");
    Simulator::start(listener, Site::ChatGpt, SimulatorConfig::default()).await.expect("simulator")
}

async fn app_for(sim: &Simulator, max: usize, idle: Duration) -> TestApp {
    let remote_logins = aap::logins::RemoteLoginsConfig {
        max,
        idle,
        poll: Duration::from_millis(250),
        origins: BTreeMap::from([(sim.site().id().to_owned(), sim.base_url.clone())]),
        ..aap::logins::RemoteLoginsConfig::default()
    };
    spawn_app_with(Options { remote_logins, ..Options::default() }).await
}

async fn register_login(sim: &Simulator, email: &str, password: &str, otp: Option<&str>) {
    let response = reqwest::Client::new()
        .post(format!("{}/__sim/logins", sim.base_url))
        .json(&serde_json::json!({ "email": email, "password": password, "otp": otp }))
        .send()
        .await
        .expect("register login");
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
}

fn new_account(label: &str) -> StartRemoteLoginRequest {
    StartRemoteLoginRequest {
        assistant: "chatgpt".into(),
        plan: "Plus".into(),
        label: label.into(),
        ..StartRemoteLoginRequest::default()
    }
}

async fn start(client: &mut Logins, request: StartRemoteLoginRequest) -> RemoteLogin {
    client.start_remote_login(request).await.expect("start").into_inner().login.expect("login")
}

async fn watch(client: &mut Logins, login_id: &str) -> Watch {
    client.watch_remote_login(WatchRemoteLoginRequest { login_id: login_id.into() }).await.expect("watch").into_inner()
}

/// What a watcher saw until `until` held for the login (or the stream ended).
#[derive(Default)]
struct Seen {
    last: Option<RemoteLogin>,
    frames: u64,
    first_frame: Option<ScreenFrame>,
    ended: bool,
}

async fn follow(stream: &mut Watch, seen: &mut Seen, until: impl Fn(&RemoteLogin) -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if seen.last.as_ref().is_some_and(&until) {
            return;
        }
        let next = tokio::time::timeout_at(deadline, stream.next()).await.unwrap_or_else(|_| {
            panic!(
                "no such login state within {WAIT:?}; last: {:?}",
                seen.last.as_ref().map(|l| (l.state, &l.url, &l.page, &l.detail))
            )
        });
        match next {
            Some(Ok(WatchRemoteLoginResponse { event: Some(Event::Login(login)) })) => seen.last = Some(login),
            Some(Ok(WatchRemoteLoginResponse { event: Some(Event::Frame(frame)) })) => {
                seen.frames += 1;
                seen.first_frame.get_or_insert(frame);
            }
            Some(Ok(_)) => {}
            Some(Err(status)) => panic!("watch failed: {status}"),
            None => {
                seen.ended = true;
                assert!(seen.last.as_ref().is_some_and(&until), "the stream ended first: {:?}", seen.last);
                return;
            }
        }
    }
}

fn state(login: &RemoteLogin) -> RemoteLoginState {
    RemoteLoginState::try_from(login.state).unwrap_or(RemoteLoginState::Unspecified)
}

async fn send(client: &mut Logins, login_id: &str, input: Input) -> Result<RemoteLogin, tonic::Status> {
    client
        .send_remote_login_input(SendRemoteLoginInputRequest { login_id: login_id.into(), input: Some(input) })
        .await
        .map(|response| response.into_inner().login.expect("login"))
}

fn click((x, y): (f64, f64)) -> Input {
    Input::Mouse(MouseInput { action: MouseAction::Click as i32, x, y, ..MouseInput::default() })
}

fn text(text: &str) -> Input {
    Input::Text(TextInput { text: text.into() })
}

/// Types e-mail and password into the simulator's form, as an operator would.
async fn log_in(client: &mut Logins, login_id: &str, email: &str, password: &str) {
    for input in [click(EMAIL_AT), text(email), click(PASSWORD_AT), text(password), click(SUBMIT_AT)] {
        send(client, login_id, input).await.expect("input taken");
    }
}

/// The session cookie the simulator handed out to `label` (its login e-mail).
fn token_of(sim: &Simulator, label: &str) -> Vec<String> {
    sim.stats().by_token.into_iter().filter(|(_, stats)| stats.label == label).map(|(token, _)| token).collect()
}

/// The processes this test process started (chromedriver, Chromium, Xvfb), by name.
fn descendants() -> Vec<String> {
    let me = std::process::id();
    let mut parents = BTreeMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ...
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        let name = head.split_once('(').map_or("", |(_, name)| name).to_owned();
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or_default();
        let ppid = fields.next().and_then(|ppid| ppid.parse::<u32>().ok()).unwrap_or_default();
        if state != "Z" {
            parents.insert(pid, (ppid, name));
        }
    }
    let is_mine = |mut pid: u32| {
        for _ in 0..64 {
            match parents.get(&pid) {
                Some((ppid, _)) if *ppid == me => return true,
                Some((ppid, _)) if *ppid > 1 => pid = *ppid,
                _ => return false,
            }
        }
        false
    };
    parents.iter().filter(|(pid, _)| is_mine(**pid)).map(|(_, (_, name))| name.clone()).collect()
}

#[tokio::test]
async fn remote_login_stores_an_encrypted_account_that_a_bot_leases_and_answers_with() {
    let sim = chatgpt_simulator().await;
    register_login(&sim, "ops-1@example.com", "pw-ops-1", Some("424242")).await;
    let app = app_for(&sim, 2, Duration::from_secs(600)).await;
    let mut client = logins(&app, OPERATOR);

    let started_at = Instant::now();
    let login = start(&mut client, new_account("ops-1")).await;
    assert_eq!(state(&login), RemoteLoginState::Starting);
    assert_eq!(login.principal, OPERATOR_NAME);
    let mut stream = watch(&mut client, &login.id).await;
    let mut seen = Seen::default();
    follow(&mut stream, &mut seen, |l| state(l) == RemoteLoginState::Waiting && l.page == "login").await;
    let waiting = seen.last.clone().expect("login");
    assert!(waiting.width >= 480 && waiting.height >= 360, "{}x{}", waiting.width, waiting.height);
    assert!(waiting.url.contains("/auth/login"), "{}", waiting.url);
    // A second watcher of the same login sees it too.
    let mut second = watch(&mut client, &login.id).await;
    let mut second_seen = Seen::default();
    follow(&mut second, &mut second_seen, |l| state(l) == RemoteLoginState::Waiting).await;

    log_in(&mut client, &login.id, "ops-1@example.com", "pw-ops-1").await;
    follow(&mut stream, &mut seen, |l| l.url.contains("step=otp")).await;
    for input in [click(OTP_AT), text("424242"), click(SUBMIT_AT)] {
        send(&mut client, &login.id, input).await.expect("input taken");
    }
    follow(&mut stream, &mut seen, |l| state(l) == RemoteLoginState::Stored).await;
    let stored_after = started_at.elapsed();
    let stored = seen.last.clone().expect("login");
    assert!(!stored.account_id.is_empty(), "{stored:?}");
    assert!(seen.frames > 0, "screen frames streamed");
    let frame = seen.first_frame.clone().expect("a frame");
    assert_eq!(&frame.jpeg[..2], &[0xFF, 0xD8], "a JPEG");
    assert_eq!(frame.sequence, 1);
    assert!(frame.width > 0 && frame.height > 0);
    // Both streams end after the final state: nobody hangs.
    assert!(tokio::time::timeout(WAIT, stream.next()).await.expect("stream ends").is_none());
    follow(&mut second, &mut second_seen, |l| state(l) == RemoteLoginState::Stored).await;
    assert!(tokio::time::timeout(WAIT, second.next()).await.expect("second stream ends").is_none());

    // The account is listed, its stored state is sealed: no cookie value in the row's bytes.
    let accounts =
        app.sessions(OPERATOR).list_accounts(ListAccountsRequest::default()).await.expect("list").into_inner().accounts;
    let account = accounts.iter().find(|a| a.id == stored.account_id).expect("account listed");
    assert_eq!(
        (account.assistant.as_str(), account.plan.as_str(), account.label.as_str()),
        ("chatgpt", "Plus", "ops-1")
    );
    let tokens = token_of(&sim, "ops-1@example.com");
    assert_eq!(tokens.len(), 1, "one session from the login page");
    let row: Vec<u8> =
        sqlx::query_scalar("SELECT convert_to(t::text, 'UTF8') FROM session_accounts t WHERE id = $1::uuid")
            .bind(&stored.account_id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT storage_state_sealed FROM session_accounts WHERE id = $1::uuid")
        .bind(&stored.account_id)
        .fetch_one(&app.pool)
        .await
        .expect("sealed");
    for bytes in [&row, &sealed] {
        assert!(!bytes.windows(tokens[0].len()).any(|w| w == tokens[0].as_bytes()), "cookie value stored in clear");
    }
    let listed =
        logins(&app, OPERATOR).list_remote_logins(ListRemoteLoginsRequest {}).await.expect("list").into_inner();
    assert!(listed.logins.iter().any(|l| l.id == login.id && state(l) == RemoteLoginState::Stored));

    // A bot leases it and answers.
    let config =
        aap_bot::BotConfig::grpc(&app.grpc_url, BOT, "login-bot", "chatgpt", "Plus").with_assistant_url(&sim.base_url);
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let bot = tokio::spawn(async move {
        aap_bot::run(config, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await
        .expect("bot runs");
    });
    let events = ask_as(&app, OPERATOR, ask_text("Which laptops are best for students?", &["chatgpt"])).await;
    let answered_after = started_at.elapsed();
    stop.send(true).expect("stop bot");
    bot.await.expect("bot stopped");
    let answer = first_answer(&events);
    assert_eq!(answer.account_id, stored.account_id);
    assert_eq!(answer.account_label, "ops-1");
    assert_eq!(sim.stats().answers_for_token(&tokens[0]), 1, "answered on the captured session");
    println!(
        "remote login: viewport {}x{}, frames {}x{}; stored after {stored_after:?}, answered by a leasing bot after \
         {answered_after:?}",
        waiting.width, waiting.height, frame.width, frame.height
    );
    app.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn refresh_login_replaces_the_session_state_of_an_existing_account() {
    let sim = chatgpt_simulator().await;
    let app = app_for(&sim, 2, Duration::from_secs(600)).await;
    let old = sim.create_session("old-login").await;
    let account = app
        .sessions(OPERATOR)
        .create_account(CreateAccountRequest {
            assistant: "chatgpt".into(),
            plan: "Plus".into(),
            label: "ops-2".into(),
            storage_state_json: old.storage_state_json,
            ..CreateAccountRequest::default()
        })
        .await
        .expect("account")
        .into_inner()
        .account
        .expect("account");
    sim.expire_session(&old.token);

    let mut client = logins(&app, OPERATOR);
    // Naming another assistant than the account's is refused.
    let status = client
        .start_remote_login(StartRemoteLoginRequest {
            account_id: account.id.clone(),
            assistant: "claude".into(),
            ..StartRemoteLoginRequest::default()
        })
        .await
        .expect_err("mismatch");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("assistant"), "{}", status.message());

    let login = start(
        &mut client,
        StartRemoteLoginRequest { account_id: account.id.clone(), ..StartRemoteLoginRequest::default() },
    )
    .await;
    assert_eq!((login.assistant.as_str(), login.label.as_str(), login.plan.as_str()), ("chatgpt", "ops-2", "Plus"));
    let mut stream = watch(&mut client, &login.id).await;
    let mut seen = Seen::default();
    follow(&mut stream, &mut seen, |l| state(l) == RemoteLoginState::Waiting && l.page == "login").await;
    log_in(&mut client, &login.id, DEFAULT_EMAIL, DEFAULT_PASSWORD).await;
    follow(&mut stream, &mut seen, |l| ended(state(l))).await;
    let stored = seen.last.expect("login");
    assert_eq!(state(&stored), RemoteLoginState::Stored, "{}", stored.detail);
    assert_eq!(stored.account_id, account.id, "the same account");

    let accounts = app.sessions(OPERATOR).list_accounts(ListAccountsRequest::default()).await.expect("list");
    assert_eq!(accounts.into_inner().accounts.len(), 1, "no new account");
    let lease = app
        .sessions(BOT)
        .lease_session(LeaseSessionRequest { assistant: "chatgpt".into(), plan: "Plus".into(), bot_id: "b-1".into() })
        .await
        .expect("lease")
        .into_inner();
    assert_eq!(lease.account_id, account.id);
    let new_token = token_of(&sim, DEFAULT_EMAIL);
    assert_eq!(new_token.len(), 1);
    assert!(lease.storage_state_json.contains(&new_token[0]), "the new session is lent");
    assert!(!lease.storage_state_json.contains(&old.token), "the old one is gone");
    let state = aap_bot::storage_state::StorageState::parse(&lease.storage_state_json).expect("a storage state");
    assert!(state.origins.iter().any(|o| o.origin == sim.base_url.trim_end_matches('/')), "localStorage kept");
    app.platform.shutdown().await.expect("shutdown");
}

fn ended(state: RemoteLoginState) -> bool {
    matches!(
        state,
        RemoteLoginState::Stored | RemoteLoginState::Abandoned | RemoteLoginState::Cancelled | RemoteLoginState::Failed
    )
}

#[tokio::test]
async fn an_idle_remote_login_is_abandoned_with_nothing_stored_and_its_browser_gone() {
    let sim = chatgpt_simulator().await;
    let app = app_for(&sim, 2, Duration::from_secs(3)).await;
    let mut client = logins(&app, OPERATOR);
    let login = start(&mut client, new_account("idle")).await;
    let mut stream = watch(&mut client, &login.id).await;
    let mut seen = Seen::default();
    follow(&mut stream, &mut seen, |l| state(l) == RemoteLoginState::Waiting).await;
    let running = descendants();
    assert!(running.iter().any(|name| name.starts_with("chrom")), "{running:?}");
    assert!(running.iter().any(|name| name == "Xvfb"), "its own X server: {running:?}");

    follow(&mut stream, &mut seen, |l| ended(state(l))).await;
    assert_eq!(state(seen.last.as_ref().expect("login")), RemoteLoginState::Abandoned);
    assert!(tokio::time::timeout(WAIT, stream.next()).await.expect("stream ends").is_none());
    let accounts = app.sessions(OPERATOR).list_accounts(ListAccountsRequest::default()).await.expect("list");
    assert!(accounts.into_inner().accounts.is_empty(), "nothing stored");
    let left = descendants();
    assert!(!left.iter().any(|name| name.starts_with("chrom") || name == "Xvfb"), "left running: {left:?}");
    let status = send(&mut client, &login.id, click(EMAIL_AT)).await.expect_err("ended");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    app.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn remote_logins_are_limited_owned_validated_and_cancellable() {
    let sim = chatgpt_simulator().await;
    let app = app_for(&sim, 1, Duration::from_secs(600)).await;
    let mut client = logins(&app, OPERATOR);

    // Bad requests name their field, in the message and a bad-request field violation; what
    // CreateAccount would refuse is refused before a browser starts.
    let headless = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0";
    for (request, code, field) in [
        (StartRemoteLoginRequest { assistant: "bard".into(), ..new_account("x") }, Code::InvalidArgument, "assistant"),
        (StartRemoteLoginRequest { label: String::new(), ..new_account("x") }, Code::InvalidArgument, "label"),
        (
            StartRemoteLoginRequest { proxy: "http://user:secret@proxy.example:8080".into(), ..new_account("x") },
            Code::InvalidArgument,
            "proxy",
        ),
        (
            StartRemoteLoginRequest { user_agent: headless.into(), ..new_account("x") },
            Code::InvalidArgument,
            "user_agent",
        ),
        (StartRemoteLoginRequest { plan: "any".into(), ..new_account("x") }, Code::InvalidArgument, "plan"),
        (
            StartRemoteLoginRequest {
                account_id: uuid::Uuid::new_v4().to_string(),
                ..StartRemoteLoginRequest::default()
            },
            Code::NotFound,
            "account",
        ),
    ] {
        let status = client.start_remote_login(request).await.expect_err("refused");
        assert_eq!(status.code(), code, "{status:?}");
        assert!(status.message().contains(field), "{}", status.message());
        assert!(!status.message().contains("secret"), "no proxy credentials in a response");
        if code == Code::InvalidArgument {
            let violations = status.get_details_bad_request().expect("a bad request detail").field_violations;
            assert_eq!(violations[0].field, field, "{status:?}");
        }
    }
    assert!(client.list_remote_logins(ListRemoteLoginsRequest {}).await.expect("list").into_inner().logins.is_empty());

    let login = start(&mut client, new_account("limited")).await;
    let status = client.start_remote_login(new_account("second")).await.expect_err("over the limit");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    // Another operator sees nothing of it.
    let mut admin =
        AdminServiceClient::with_interceptor(app.channel.clone(), aap::client::Bearer::new(OPERATOR).expect("token"));
    let other_token = admin
        .create_token(CreateTokenRequest {
            principal: "other-operator".into(),
            role: Role::Operator as i32,
            ..CreateTokenRequest::default()
        })
        .await
        .expect("token")
        .into_inner()
        .token;
    let mut other = logins(&app, &other_token);
    let not_found = |result: Result<(), tonic::Status>| {
        assert_eq!(result.expect_err("refused").code(), Code::NotFound);
    };
    not_found(other.watch_remote_login(WatchRemoteLoginRequest { login_id: login.id.clone() }).await.map(drop));
    not_found(send(&mut other, &login.id, click(EMAIL_AT)).await.map(drop));
    not_found(other.cancel_remote_login(CancelRemoteLoginRequest { login_id: login.id.clone() }).await.map(drop));
    assert!(other.list_remote_logins(ListRemoteLoginsRequest {}).await.expect("list").into_inner().logins.is_empty());
    not_found(send(&mut client, "no-such-login", click(EMAIL_AT)).await.map(drop));

    // Input is checked.
    let mut stream = watch(&mut client, &login.id).await;
    let mut seen = Seen::default();
    follow(&mut stream, &mut seen, |l| state(l) == RemoteLoginState::Waiting).await;
    for (input, field) in [
        (text(&"x".repeat(4097)), "text.text"),
        (text("a\0b"), "text.text"),
        (click((f64::NAN, 1.0)), "mouse.x"),
        (
            Input::Key(KeyInput { action: KeyAction::Unspecified as i32, key: "a".into(), ..KeyInput::default() }),
            "key.action",
        ),
    ] {
        let status = send(&mut client, &login.id, input).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(field), "{}", status.message());
        let violations = status.get_details_bad_request().expect("a bad request detail").field_violations;
        assert_eq!(violations[0].field, field, "{status:?}");
    }
    let typed = Input::Key(KeyInput { action: KeyAction::Press as i32, key: "Tab".into(), ..KeyInput::default() });
    send(&mut client, &login.id, typed).await.expect("a key is taken");
    let scrolled = Input::Scroll(ScrollInput { x: 10.0, y: 10.0, delta_y: 100.0, ..ScrollInput::default() });
    send(&mut client, &login.id, scrolled).await.expect("a wheel is taken");

    // Cancel closes it; input after the end is refused; the slot is free again.
    let cancelled = client
        .cancel_remote_login(CancelRemoteLoginRequest { login_id: login.id.clone() })
        .await
        .expect("cancel")
        .into_inner()
        .login
        .expect("login");
    assert_eq!(state(&cancelled), RemoteLoginState::Cancelled);
    follow(&mut stream, &mut seen, |l| ended(state(l))).await;
    assert!(tokio::time::timeout(WAIT, stream.next()).await.expect("stream ends").is_none());
    let status = send(&mut client, &login.id, click(EMAIL_AT)).await.expect_err("ended");
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    let listed = client.list_remote_logins(ListRemoteLoginsRequest {}).await.expect("list").into_inner().logins;
    assert_eq!(listed.len(), 1);
    assert_eq!(state(&listed[0]), RemoteLoginState::Cancelled);
    let next = start(&mut client, new_account("after-cancel")).await;
    client.cancel_remote_login(CancelRemoteLoginRequest { login_id: next.id }).await.expect("cancel");
    let accounts = app.sessions(OPERATOR).list_accounts(ListAccountsRequest::default()).await.expect("list");
    assert!(accounts.into_inner().accounts.is_empty(), "nothing stored");
    app.platform.shutdown().await.expect("shutdown");
}
