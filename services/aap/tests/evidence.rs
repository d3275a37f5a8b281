//! Evidence of failed attempts kept by the platform (SessionService ReportEvidence,
//! ListEvidence, GetEvidence), over a real platform: who may report and read it, what is
//! refused, the bounds, and a real browser bot whose failure arrives with its screenshot.

mod common;

use std::time::{Duration, Instant};

use aap_proto::v1::admin_service_client::AdminServiceClient;
use aap_proto::v1::{
    CreateAccountRequest, CreateTokenRequest, EvidenceCase, GetEvidenceRequest, LeaseSessionRequest,
    ListEvidenceRequest, ReportEvidenceRequest, Role,
};
use aap_simulator::{Simulator, SimulatorConfig, Site};
use common::*;
use tonic::Code;
use tonic_types::StatusExt as _;

/// A tiny but real PNG (1×1, grey).
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, 0x00, 0x00, 0x00, 0x3a, 0x7e, 0x9b, 0x55, 0x00, 0x00, 0x00, 0x0a, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x68, 0x00, 0x00, 0x00, 0x82, 0x00, 0x81, 0x4c, 0x17, 0xd7, 0xdf, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

const HTML: &str = "<html><body><h1>Log in to continue</h1></body></html>";

async fn add_account(app: &TestApp, label: &str) -> String {
    let state =
        format!(r#"{{"cookies": [{{"name": "s", "value": "{label}", "domain": ".chatgpt.com", "path": "/"}}]}}"#);
    app.sessions(OPERATOR)
        .create_account(CreateAccountRequest {
            assistant: "chatgpt".into(),
            plan: "Plus".into(),
            label: label.into(),
            storage_state_json: state,
            ..CreateAccountRequest::default()
        })
        .await
        .expect("account created")
        .into_inner()
        .account
        .expect("account")
        .id
}

/// Leases the next chatgpt account as `token`'s principal; returns (lease id, account id).
async fn lease(app: &TestApp, token: &str, bot_id: &str) -> (String, String) {
    let lease = app
        .sessions(token)
        .lease_session(LeaseSessionRequest { assistant: "chatgpt".into(), plan: "Plus".into(), bot_id: bot_id.into() })
        .await
        .expect("leased")
        .into_inner();
    (lease.lease_id, lease.account_id)
}

async fn bot_token(app: &TestApp, principal: &str) -> String {
    let mut admin = AdminServiceClient::with_interceptor(
        app.channel.clone(),
        aap::client::Bearer::new(OPERATOR).expect("operator token"),
    );
    let request = CreateTokenRequest { principal: principal.into(), role: Role::Bot.into(), ..Default::default() };
    admin.create_token(request).await.expect("token").into_inner().token
}

fn report(lease_id: &str, evaluation_id: i64) -> ReportEvidenceRequest {
    ReportEvidenceRequest {
        bot_id: "bot-7".into(),
        lease_id: lease_id.into(),
        assistant: "chatgpt".into(),
        evaluation_id,
        attempt: 1,
        class: "logged-out".into(),
        error: "the assistant shows a login wall".into(),
        url: "https://chatgpt.com/auth/login".into(),
        title: "Log in".into(),
        captured_at: None,
        screenshot_png: PNG.to_vec(),
        html: HTML.into(),
        manifest_version: "2026.11.1".into(),
    }
}

async fn list(app: &TestApp, account_id: &str) -> Result<Vec<EvidenceCase>, tonic::Status> {
    let request = ListEvidenceRequest { account_id: account_id.into(), limit: 0 };
    Ok(app.sessions(OPERATOR).list_evidence(request).await?.into_inner().cases)
}

async fn failures(app: &TestApp, account_id: &str) -> i64 {
    let (failures,): (i64,) = sqlx::query_as("SELECT failures FROM session_accounts WHERE id = $1::uuid")
        .bind(account_id)
        .fetch_one(&app.pool)
        .await
        .expect("account row");
    failures
}

#[tokio::test]
async fn reported_evidence_is_listed_newest_first_and_served_with_its_screenshot_and_html_only_when_asked() {
    let app = spawn_app().await;
    let account_id = add_account(&app, "alice@example.com").await;
    let other_account = add_account(&app, "bob@example.com").await;
    let (lease_id, leased_account) = lease(&app, BOT, "bot-7").await;
    assert_eq!(leased_account, account_id, "the oldest account is lent first");

    let mut bot = app.sessions(BOT);
    let first = bot.report_evidence(report(&lease_id, 41)).await.expect("reported").into_inner().evidence_id;
    let without_lease = ReportEvidenceRequest {
        lease_id: String::new(),
        class: "timeout".into(),
        screenshot_png: Vec::new(),
        captured_at: Some(prost_types::Timestamp { seconds: 1_790_000_000, nanos: 0 }),
        ..report("", 42)
    };
    let second = bot.report_evidence(without_lease).await.expect("reported").into_inner().evidence_id;
    assert_ne!(first, second);

    // Every account's, newest first; one account's; another account has none.
    let all = list(&app, "").await.expect("listed");
    assert_eq!(all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [second.as_str(), first.as_str()]);
    let case = list(&app, &account_id).await.expect("listed").pop().expect("one case");
    assert_eq!(case.id, first);
    assert_eq!(
        (case.account_id.as_str(), case.assistant.as_str(), case.bot_id.as_str(), case.evaluation_id, case.attempt),
        (account_id.as_str(), "chatgpt", "bot-7", 41, 1)
    );
    assert_eq!(
        (case.class.as_str(), case.url.as_str(), case.title.as_str()),
        ("logged-out", "https://chatgpt.com/auth/login", "Log in")
    );
    assert_eq!(
        (case.has_screenshot, case.html_bytes, case.manifest_version.as_str()),
        (true, HTML.len() as u64, "2026.11.1")
    );
    assert!(case.captured_at.is_some(), "the platform's time when the bot gave none");
    assert!(list(&app, &other_account).await.expect("listed").is_empty());
    assert_eq!(all[0].account_id, "", "no lease, no account");
    assert_eq!(all[0].captured_at.map(|t| t.seconds), Some(1_790_000_000), "the bot's time when it gave one");
    assert!(!all[0].has_screenshot);
    assert_eq!(failures(&app, &account_id).await, 1, "counted on the account");
    let account = app
        .sessions(OPERATOR)
        .get_account(aap_proto::v1::GetAccountRequest { account_id: account_id.clone() })
        .await
        .expect("account")
        .into_inner()
        .account
        .expect("account");
    assert_eq!(account.failures, 1, "and shown with it");

    // The screenshot always; the HTML only when asked.
    let mut operator = app.sessions(OPERATOR);
    let got = operator
        .get_evidence(GetEvidenceRequest { evidence_id: first.clone(), include_html: false })
        .await
        .expect("got")
        .into_inner();
    assert_eq!((got.screenshot_png.as_slice(), got.html.as_str()), (PNG, ""));
    assert_eq!(got.case.expect("case").id, first);
    let with_html = operator
        .get_evidence(GetEvidenceRequest { evidence_id: first.clone(), include_html: true })
        .await
        .expect("got")
        .into_inner();
    assert_eq!(with_html.html, HTML);

    // Unknown and malformed ids.
    let unknown = "00000000-0000-4000-8000-000000000000";
    let code = |r: Result<Vec<EvidenceCase>, tonic::Status>| r.map(drop).map_err(|s| s.code());
    assert_eq!(code(list(&app, unknown).await), Err(Code::NotFound));
    assert_eq!(code(list(&app, "not-an-id").await), Err(Code::InvalidArgument));
    let get = |id: &str| GetEvidenceRequest { evidence_id: id.into(), include_html: true };
    assert_eq!(operator.get_evidence(get(unknown)).await.map(drop).map_err(|s| s.code()), Err(Code::NotFound));
    assert_eq!(operator.get_evidence(get("x")).await.map(drop).map_err(|s| s.code()), Err(Code::InvalidArgument));
}

#[tokio::test]
async fn only_the_bot_that_took_the_lease_reports_on_it_and_only_operators_read_evidence() {
    let app = spawn_app().await;
    add_account(&app, "alice@example.com").await;
    let (lease_id, _) = lease(&app, BOT, "bot-7").await;
    let bot_b = bot_token(&app, "bot-b").await;

    let status = app.sessions(&bot_b).report_evidence(report(&lease_id, 1)).await.expect_err("not bot B's lease");
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    let unknown = report("00000000-0000-4000-8000-000000000000", 1);
    assert_eq!(app.sessions(BOT).report_evidence(unknown).await.map(drop).map_err(|s| s.code()), Err(Code::NotFound));
    for token in [CUSTOMER, OPERATOR] {
        let refused = app.sessions(token).report_evidence(report(&lease_id, 1)).await.expect_err("not a bot");
        assert_eq!(refused.code(), Code::PermissionDenied, "{token}: {refused:?}");
    }
    for token in [CUSTOMER, BOT] {
        let refused = app.sessions(token).list_evidence(ListEvidenceRequest::default()).await.expect_err("no");
        assert_eq!(refused.code(), Code::PermissionDenied, "{token}: {refused:?}");
        let get = GetEvidenceRequest { evidence_id: "00000000-0000-4000-8000-000000000000".into(), include_html: true };
        let refused = app.sessions(token).get_evidence(get).await.expect_err("no");
        assert_eq!(refused.code(), Code::PermissionDenied, "{token}: {refused:?}");
    }
    assert_eq!(app.count("session_evidence").await, 0, "nothing refused was kept");
}

#[tokio::test]
async fn bad_reports_are_refused_naming_the_field_and_nothing_is_kept() {
    let app = spawn_app().await;
    add_account(&app, "alice@example.com").await;
    let (lease_id, _) = lease(&app, BOT, "bot-7").await;
    let mut bot = app.sessions(BOT);
    let cases = [
        (
            ReportEvidenceRequest { screenshot_png: b"GIF89a not a png".to_vec(), ..report(&lease_id, 1) },
            "screenshot_png",
        ),
        (
            ReportEvidenceRequest { screenshot_png: [PNG, &vec![0; 4 << 20]].concat(), ..report(&lease_id, 1) },
            "screenshot_png",
        ),
        (ReportEvidenceRequest { html: "x".repeat((2 << 20) + 1), ..report(&lease_id, 1) }, "html"),
        (ReportEvidenceRequest { class: "bored".into(), ..report(&lease_id, 1) }, "class"),
        (ReportEvidenceRequest { error: "a\0b".into(), ..report(&lease_id, 1) }, "error"),
        (ReportEvidenceRequest { bot_id: "bot\u{7}".into(), ..report(&lease_id, 1) }, "bot_id"),
        (ReportEvidenceRequest { bot_id: "bot-7\nbot-8".into(), ..report(&lease_id, 1) }, "bot_id"),
        (ReportEvidenceRequest { assistant: "bard".into(), ..report(&lease_id, 1) }, "assistant"),
        (ReportEvidenceRequest { assistant: "claude".into(), ..report(&lease_id, 1) }, "assistant"),
        (ReportEvidenceRequest { lease_id: "lease-1".into(), ..report(&lease_id, 1) }, "lease_id"),
        (ReportEvidenceRequest { evaluation_id: -3, ..report(&lease_id, 1) }, "evaluation_id"),
        (ReportEvidenceRequest { attempt: 0, ..report(&lease_id, 1) }, "attempt"),
        (
            ReportEvidenceRequest {
                captured_at: Some(prost_types::Timestamp { seconds: 253_402_300_800 * 10, nanos: 0 }),
                ..report(&lease_id, 1)
            },
            "captured_at",
        ),
    ];
    for (request, field) in cases {
        let status = bot.report_evidence(request).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let violations = status.get_details_bad_request().map(|b| b.field_violations).unwrap_or_default();
        assert_eq!(violations.iter().map(|v| v.field.as_str()).collect::<Vec<_>>(), [field], "{status:?}");
    }
    assert_eq!(app.count("session_evidence").await, 0);
}

#[tokio::test]
async fn evidence_is_bounded_per_account_and_overall_dropping_the_oldest() {
    let limits = aap_sessions::EvidenceLimits { per_account: 3, total: 5 };
    let app = spawn_app_with(Options { evidence: limits, ..Options::default() }).await;
    let alice = add_account(&app, "alice@example.com").await;
    let bob = add_account(&app, "bob@example.com").await;
    let (alice_lease, leased) = lease(&app, BOT, "bot-1").await;
    assert_eq!(leased, alice);
    let (bob_lease, leased) = lease(&app, BOT, "bot-2").await;
    assert_eq!(leased, bob);
    let mut bot = app.sessions(BOT);
    let mut sent = Vec::new();
    for evaluation_id in 1..=4 {
        let id = bot.report_evidence(report(&alice_lease, evaluation_id)).await.expect("kept").into_inner();
        sent.push(id.evidence_id);
    }
    let ids = |cases: Vec<EvidenceCase>| cases.into_iter().map(|c| c.evaluation_id).collect::<Vec<_>>();
    assert_eq!(ids(list(&app, &alice).await.expect("listed")), [4, 3, 2], "the oldest of alice's dropped");
    assert_eq!(failures(&app, &alice).await, 4, "every failure counted, kept or not");
    for evaluation_id in 11..=13 {
        bot.report_evidence(report(&bob_lease, evaluation_id)).await.expect("kept");
    }
    assert_eq!(ids(list(&app, "").await.expect("listed")), [13, 12, 11, 4, 3], "the oldest overall dropped");
    assert_eq!(ids(list(&app, &alice).await.expect("listed")), [4, 3]);
    let dropped = GetEvidenceRequest { evidence_id: sent[0].clone(), include_html: false };
    let status = app.sessions(OPERATOR).get_evidence(dropped).await.expect_err("dropped");
    assert_eq!(status.code(), Code::NotFound);
    let limited = ListEvidenceRequest { account_id: String::new(), limit: 2 };
    let cases = app.sessions(OPERATOR).list_evidence(limited).await.expect("listed").into_inner().cases;
    assert_eq!(ids(cases), [13, 12]);
}

#[tokio::test]
async fn deleting_an_account_drops_its_evidence() {
    let app = spawn_app().await;
    let alice = add_account(&app, "alice@example.com").await;
    let (lease_id, _) = lease(&app, BOT, "bot-1").await;
    let mut bot = app.sessions(BOT);
    bot.report_evidence(report(&lease_id, 1)).await.expect("kept");
    bot.report_evidence(report("", 2)).await.expect("kept");
    // A held account cannot be deleted: the bot gives the lease back first.
    let returned = aap_proto::v1::ReturnSessionRequest { lease_id, ..Default::default() };
    app.sessions(BOT).return_session(returned).await.expect("returned");
    let delete = aap_proto::v1::DeleteAccountRequest { account_id: alice.clone() };
    app.sessions(OPERATOR).delete_account(delete).await.expect("deleted");
    assert_eq!(list(&app, &alice).await.map(drop).map_err(|s| s.code()), Err(Code::NotFound));
    let left = list(&app, "").await.expect("listed");
    assert_eq!(left.iter().map(|c| c.evaluation_id).collect::<Vec<_>>(), [2], "only the case without an account");
}

#[tokio::test]
async fn a_browser_bot_meeting_a_login_wall_hands_its_screenshot_to_the_platform() {
    let app = spawn_app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind simulator");
    let sim = Simulator::start(listener, Site::ChatGpt, SimulatorConfig::default()).await.expect("simulator");
    // The expired account is the older: lent first, it shows a login wall; the second answers.
    let expired = sim.create_session("expired").await;
    sim.expire_session(&expired.token);
    let good = sim.create_session("good").await;
    let mut ids = Vec::new();
    for (label, state) in
        [("expired@example.com", expired.storage_state_json), ("good@example.com", good.storage_state_json)]
    {
        let request = CreateAccountRequest {
            assistant: "chatgpt".into(),
            plan: "Plus".into(),
            label: label.into(),
            storage_state_json: state,
            ..CreateAccountRequest::default()
        };
        ids.push(
            app.sessions(OPERATOR)
                .create_account(request)
                .await
                .expect("account")
                .into_inner()
                .account
                .expect("account")
                .id,
        );
    }
    let evidence_dir = tempfile::tempdir().expect("tempdir");
    let mut config = aap_bot::BotConfig::grpc(&app.grpc_url, BOT, "evidence-bot", "chatgpt", "Plus")
        .with_assistant_url(&sim.base_url);
    config.evidence.dir = evidence_dir.path().to_owned();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let bot = tokio::spawn(async move {
        aap_bot::run(config, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })
        .await
        .expect("bot runs");
    });

    let started = Instant::now();
    let events = ask_as(&app, OPERATOR, ask_text("Which CRM is best for a five-person startup?", &["chatgpt"])).await;
    let answer = first_answer(&events);
    assert_eq!(answer.account_id, ids[1], "answered on the good account");
    // Reported before the lease went back; waited for all the same, never slept on.
    let case = loop {
        if let Some(case) = list(&app, &ids[0]).await.expect("listed").pop() {
            break case;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no evidence reached the platform");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.send(true).expect("stop bot");
    bot.await.expect("bot stopped cleanly");
    sim.shutdown().await;

    assert_eq!(
        (case.class.as_str(), case.bot_id.as_str(), case.assistant.as_str()),
        ("logged-out", "evidence-bot", "chatgpt")
    );
    assert_eq!((case.evaluation_id, case.attempt), (answer.evaluation_id, 1));
    assert!(case.has_screenshot && case.html_bytes > 0, "{case:?}");
    assert!(!case.url.is_empty() && !case.manifest_version.is_empty(), "{case:?}");
    let got = app
        .sessions(OPERATOR)
        .get_evidence(GetEvidenceRequest { evidence_id: case.id.clone(), include_html: true })
        .await
        .expect("got")
        .into_inner();
    assert!(got.screenshot_png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG");
    assert!(got.html.contains("<html") || got.html.contains("<body"), "the page's HTML");
    eprintln!("evidence of a login wall: screenshot {} bytes, html {} bytes", got.screenshot_png.len(), got.html.len());
    assert!(list(&app, &ids[1]).await.expect("listed").is_empty(), "nothing failed on the good account");
    assert_eq!(failures(&app, &ids[0]).await, 1);
    // The files on the bot's disk are kept as before.
    let files = std::fs::read_dir(evidence_dir.path()).expect("evidence dir").count();
    assert!(files >= 2, "html, png and note on disk: {files} files");
}
