//! No log line and no span field carries a token or a session's cookie: a platform runs with
//! every event and span recorded (trace level, span fields included, as an exporter would see
//! them) while tokens and a cookie planted for the purpose cross every path: made at run time,
//! presented right and wrong over gRPC and HTTP, leased, asked, submitted.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use aap_proto::v1::admin_service_client::AdminServiceClient;
use aap_proto::v1::{CreateAccountRequest, CreateTokenRequest, LeaseSessionRequest, Role, WhoAmIRequest};
use common::*;
use futures::StreamExt;

/// Everything the subscriber writes, kept in memory.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

const COOKIE: &str = "planted-cookie-7d2f9a41c3";
const WRONG: &str = "aap_planted-wrong-token-5b8e1f";

#[tokio::test]
async fn no_log_line_or_span_field_names_a_token_or_a_cookie() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(true)
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(captured.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the test's subscriber is the first");

    let app = spawn_app().await;
    let mut admin =
        AdminServiceClient::with_interceptor(app.channel.clone(), aap::client::Bearer::new(OPERATOR).expect("token"));
    let request = CreateTokenRequest { principal: "acme".into(), role: Role::Customer.into(), ..Default::default() };
    let made = admin.create_token(request).await.expect("token").into_inner().token;

    let state = format!(
        r#"{{"cookies": [{{"name": "session", "value": "{COOKIE}", "domain": ".chatgpt.com", "path": "/"}}]}}"#
    );
    let account = CreateAccountRequest {
        assistant: "chatgpt".into(),
        plan: "Plus".into(),
        label: "planted".into(),
        storage_state_json: state,
        ..CreateAccountRequest::default()
    };
    app.sessions(OPERATOR).create_account(account).await.expect("account");
    let lease = LeaseSessionRequest { assistant: "chatgpt".into(), plan: "Plus".into(), bot_id: "test-bot".into() };
    let lent = app.sessions(BOT).lease_session(lease).await.expect("lease").into_inner();
    assert!(lent.storage_state_json.contains(COOKIE), "the bot gets the cookie");

    // Refused calls: a wrong token over gRPC and HTTP, a customer's token where a bot's belongs.
    let mut wrong =
        AdminServiceClient::with_interceptor(app.channel.clone(), aap::client::Bearer::new(WRONG).expect("token"));
    assert!(wrong.who_am_i(WhoAmIRequest {}).await.is_err());
    let response = reqwest::Client::new()
        .post(format!("{}/evaluations/api/v1/poll", app.http_url))
        .header("authorization", format!("Bearer {WRONG}"))
        .body(r#"{"assistant_name": "ChatGPT", "plan_name": "Plus"}"#)
        .send()
        .await
        .expect("http");
    assert_eq!(response.status().as_u16(), 401);
    assert!(app.answers_as(BOT).ask(ask_text("refused", &["chatgpt"])).await.is_err());

    // A prompt asked with the made token, answered end to end.
    let stream = app.answers_as(&made).ask(ask_text("Which tent survives a storm?", &["chatgpt"])).await.expect("ask");
    let waiting = tokio::spawn(collect(stream.into_inner().map(|r| r.map(|r| r.event.unwrap_or_default()))));
    let task = poll_task(&app, "chatgpt", "").await;
    submit(&app, task.evaluation_id, "A tunnel tent.").await.expect("submit");
    first_answer(&waiting.await.expect("stream"));
    app.platform.shutdown().await.expect("shutdown");

    let logs = String::from_utf8(captured.0.lock().expect("log buffer").clone()).expect("utf-8 logs");
    let lines = logs.lines().count();
    assert!(lines > 200, "only {lines} lines were recorded: the subscriber saw too little to prove anything");
    // The principals are named, so the absence of the secrets is not for want of logging callers.
    assert!(logs.contains(r#""enduser.id":"acme""#), "the made token's principal is never named");
    assert!(logs.contains(r#""enduser.id":"test-bot""#), "the bot's principal is never named");
    for (what, secret) in [
        ("the made token", made.as_str()),
        ("the operator token", OPERATOR),
        ("the bot token", BOT),
        ("the customer token", CUSTOMER),
        ("the wrong token", WRONG),
        ("the cookie", COOKIE),
    ] {
        if let Some(line) = logs.lines().find(|line| line.contains(secret)) {
            panic!("{what} is in the logs: {line}");
        }
    }
}
