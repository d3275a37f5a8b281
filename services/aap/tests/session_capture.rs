//! `aap session capture` end to end: the real binary opens a visible Chromium on an Xvfb
//! display the test starts, the test logs in through that browser's DevTools (the address the
//! command logs as `devtools=...`), and the command writes the session file and uploads it.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Stdio;
use std::time::Duration;

use aap_bot::login::cdp::Cdp;
use aap_bot::login::{Input, MouseAction, MouseButton};
use aap_proto::v1::ListAccountsRequest;
use aap_simulator::login::{DEFAULT_EMAIL, DEFAULT_PASSWORD, EMAIL_AT, PASSWORD_AT, SUBMIT_AT};
use aap_simulator::{Simulator, SimulatorConfig, Site};
use common::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(60);

/// An Xvfb of the test's own, killed on drop; its display number from `-displayfd`.
async fn xvfb() -> (Child, String) {
    let mut child = Command::new("Xvfb")
        .args(["-displayfd", "1", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("Xvfb is installed");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    let mut reader = BufReader::new(stdout);
    tokio::time::timeout(WAIT, reader.read_line(&mut line)).await.expect("display number in time").expect("read");
    // Keep Xvfb's stdout open for its life.
    tokio::spawn(async move {
        let mut sink = Vec::new();
        let _ = reader.read_to_end(&mut sink).await;
    });
    (child, format!(":{}", line.trim()))
}

fn click((x, y): (f64, f64)) -> Input {
    Input::Mouse { action: MouseAction::Click, x, y, button: MouseButton::Left, click_count: 1 }
}

async fn perform(cdp: &Cdp, input: Input) {
    for (method, params) in input.commands() {
        cdp.call(method, params).await.expect("input taken");
    }
}

#[tokio::test]
async fn capture_writes_a_session_file_the_simulator_accepts_and_uploads_the_account() {
    let sim = Simulator::start(
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        Site::ChatGpt,
        SimulatorConfig::default(),
    )
    .await
    .expect("simulator");
    let app = spawn_app().await;
    let (_xvfb, display) = xvfb().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let output = dir.path().join("sessions/cap-1.json");

    let mut command = Command::new(env!("CARGO_BIN_EXE_aap"));
    command
        .args(["session", "capture", "--assistant", "chatgpt", "--label", "cap-1", "--plan", "Plus", "--upload"])
        .arg("--output")
        .arg(&output)
        .args(["--origin", &sim.base_url, "--server", &app.grpc_url, "--token", OPERATOR])
        .env("DISPLAY", &display)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().expect("aap runs");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let websocket = tokio::time::timeout(WAIT, async {
        while let Some(line) = stderr.next_line().await.expect("stderr") {
            if let Some(at) = line.find("ws://") {
                let rest = &line[at..];
                let end = rest.find(|c: char| c == '"' || c.is_whitespace()).unwrap_or(rest.len());
                return rest[..end].to_owned();
            }
        }
        panic!("aap exited without a devtools address");
    })
    .await
    .expect("devtools address logged");
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });

    let cdp = Cdp::connect(&websocket).await.expect("devtools");
    // The login form is there once its e-mail field is.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let found = cdp
            .call("Runtime.evaluate", serde_json::json!({ "expression": "!!document.querySelector('#email')" }))
            .await
            .ok()
            .and_then(|result| result.pointer("/result/value").and_then(serde_json::Value::as_bool))
            .unwrap_or(false);
        if found {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no login form");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for input in [
        click(EMAIL_AT),
        Input::Text(DEFAULT_EMAIL.into()),
        click(PASSWORD_AT),
        Input::Text(DEFAULT_PASSWORD.into()),
        click(SUBMIT_AT),
    ] {
        perform(&cdp, input).await;
    }
    let status = tokio::time::timeout(WAIT, child.wait()).await.expect("capture finishes").expect("wait");
    assert!(status.success(), "{status:?}");

    // The file: private, a storage state with the simulator's session cookie and localStorage.
    assert_eq!(std::fs::metadata(&output).expect("file").permissions().mode() & 0o777, 0o600);
    let json = std::fs::read_to_string(&output).expect("read");
    let state = aap_bot::storage_state::StorageState::parse(&json).expect("a storage state");
    let cookie = state
        .cookies_for_host("127.0.0.1")
        .find(|cookie| cookie.name == Site::ChatGpt.session_cookie())
        .expect("the session cookie");
    assert_eq!(cookie.http_only, Some(true));
    assert!(
        state.local_storage_for(&sim.base_url).iter().any(|entry| entry.name == Site::ChatGpt.local_storage_entry().0)
    );
    let known = sim.stats().by_token;
    assert_eq!(known.get(&cookie.value).map(|stats| stats.label.as_str()), Some(DEFAULT_EMAIL));
    // The simulator's own session check accepts the cookie.
    let session: serde_json::Value = reqwest::Client::new()
        .get(format!("{}/api/auth/session", sim.base_url))
        .header("cookie", format!("{}={}", cookie.name, cookie.value))
        .send()
        .await
        .expect("session check")
        .json()
        .await
        .expect("json");
    assert_eq!(session["user"]["name"], DEFAULT_EMAIL);
    assert!(dir.path().join("sessions/cap-1.user-agent").exists());

    // --upload created the account.
    let accounts = app.sessions(OPERATOR).list_accounts(ListAccountsRequest::default()).await.expect("list");
    let accounts = accounts.into_inner().accounts;
    assert_eq!(accounts.len(), 1);
    assert_eq!((accounts[0].assistant.as_str(), accounts[0].label.as_str()), ("chatgpt", "cap-1"));
    app.platform.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn capture_without_a_display_says_so() {
    let output = Command::new(env!("CARGO_BIN_EXE_aap"))
        .args(["session", "capture", "--assistant", "chatgpt", "--label", "x"])
        .env_remove("DISPLAY")
        .output()
        .await
        .expect("aap runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no display"), "{stderr}");
}
