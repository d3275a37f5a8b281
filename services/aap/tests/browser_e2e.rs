//! End to end through real Chromium: the platform, the ChatGPT simulator, and aap-bot driving
//! a headless Chromium through chromedriver.

mod common;

use std::process::Stdio;
use std::time::Duration;

use aap_proto::v1::answer_event::Event;
use aap_proto::v1::{CreateAccountRequest, MatchKind};
use aap_simulator::{Simulator, SimulatorConfig};
use common::*;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

async fn simulator(config: SimulatorConfig) -> Simulator {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind simulator");
    Simulator::start(listener, aap_simulator::Site::ChatGpt, config).await.expect("simulator")
}

async fn add_account(app: &TestApp, sim: &Simulator, label: &str) {
    let state = sim.create_session(label).await.storage_state_json;
    app.sessions(OPERATOR)
        .create_account(CreateAccountRequest {
            assistant: "chatgpt".into(),
            plan: "Plus".into(),
            label: label.into(),
            storage_state_json: state,
        })
        .await
        .expect("account created");
}

/// Runs an in-process bot until the returned sender says stop; join the handle to wait for it.
fn start_bot(app: &TestApp, sim: &Simulator, name: &str) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let config =
        aap_bot::BotConfig::grpc(&app.grpc_url, BOT, name, "chatgpt", "Plus").with_assistant_url(&sim.base_url);
    let (stop, mut stopped) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        aap_bot::run(config, shutdown).await.expect("bot runs");
    });
    (stop, handle)
}

#[tokio::test]
async fn a_browser_bot_answers_a_new_prompt_and_the_second_ask_is_cached() {
    let app = spawn_app().await;
    let sim = simulator(SimulatorConfig::default()).await;
    add_account(&app, &sim, "sim-1").await;
    let (stop, bot) = start_bot(&app, &sim, "e2e-bot");

    let prompt = "What are the best laptops under $1,000?";
    let events = ask(&app, ask_text(prompt, &["chatgpt"])).await;
    stop.send(true).expect("stop bot");
    bot.await.expect("bot stopped cleanly");

    let expected = aap_simulator::answer_for(prompt, true);
    let answer = events
        .iter()
        .find_map(|e| match e {
            Event::Answer(a) => Some(a.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no answer in {events:?}"));
    assert_eq!(answer.assistant, "chatgpt");
    // innerText separates paragraphs with a blank line; the simulator's plain text does not.
    let lines = |t: &str| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        lines(&answer.response_text),
        lines(&expected.plain_text()),
        "the whole answer, not the half before the pause"
    );
    assert_eq!(answer.citations.len(), expected.citations.len());
    for (got, want) in answer.citations.iter().zip(&expected.citations) {
        assert_eq!(got.url, want.url);
        assert!(!got.url.contains("utm_"), "{}", got.url);
    }
    assert_eq!(sim.stats().answers_total, 1);

    let again = ask(&app, ask_text(prompt, &["chatgpt"])).await;
    assert!(matches!(&again[0], Event::Matched(m) if m.r#match == MatchKind::Exact as i32));
    assert!(again.iter().any(|e| matches!(e, Event::Cached(a) if a.response_text == answer.response_text)));
    assert!(!again.iter().any(|e| matches!(e, Event::Scheduled(_))), "nothing scheduled the second time");
    assert_eq!(sim.stats().answers_total, 1, "the assistant was asked once");
    sim.shutdown().await;
}

#[tokio::test]
#[ignore = "hangs after the SIGKILL in its first runs; not yet diagnosed (see the closing note of issue 2)"]
async fn a_bot_killed_mid_task_loses_nothing_and_the_answer_lands_once() {
    let app = spawn_app().await;
    // Slow answers, so the first bot is surely mid-answer when it is killed.
    let sim = simulator(SimulatorConfig { first_token_delay_ms: 3000, ..SimulatorConfig::default() }).await;
    add_account(&app, &sim, "sim-1").await;
    add_account(&app, &sim, "sim-2").await;

    // The first bot is a separate process in its own process group (with its chromedriver and
    // Chromium), killed with SIGKILL: no chance to release anything.
    let mut doomed = tokio::process::Command::new(env!("CARGO_BIN_EXE_aap"))
        .args(["bot", "--grpc-url", &app.grpc_url, "--token", BOT, "--bot-id", "doomed"])
        .args(["--assistant-name", "ChatGPT", "--plan-name", "Plus", "--assistant-url", &sim.base_url])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn bot");
    let stream = app
        .answers()
        .ask(ask_text("Which e-bike is best for commuting?", &["chatgpt"]))
        .await
        .expect("ask")
        .into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));

    let mut claimed = false;
    for _ in 0..600 {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM evaluations WHERE status = 'claimed'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
        if n == 1 {
            claimed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(claimed, "the first bot claimed the task");
    tokio::time::sleep(Duration::from_millis(1500)).await; // it is typing / waiting for the answer
    let pid = doomed.id().expect("pid");
    let killed = std::process::Command::new("kill").args(["-KILL", &format!("-{pid}")]).status().expect("kill");
    assert!(killed.success());
    doomed.wait().await.expect("reaped");

    let (stop, bot) = start_bot(&app, &sim, "survivor");
    let events = waiting.await.expect("stream");
    stop.send(true).expect("stop");
    bot.await.expect("bot stopped");

    assert_eq!(events.iter().filter(|e| matches!(e, Event::Answer(_))).count(), 1, "{events:?}");
    assert!(matches!(events.last(), Some(Event::Completed(c)) if c.answered == 1));
    assert_eq!(app.count("answers").await, 1);
    let (attempts,): (i32,) =
        sqlx::query_as("SELECT attempts FROM evaluations").fetch_one(&app.pool).await.expect("row");
    assert_eq!(attempts, 2, "delivered again after the kill");
    sim.shutdown().await;
}
