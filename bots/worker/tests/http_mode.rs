//! The bot in the seed's HTTP polling mode, against an in-test server implementing the seed's
//! three endpoints (the test's counterpart, recording the exact JSON the bot sends) and the
//! simulator in a real Chromium.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aap_bot::BotConfig;
use aap_simulator::{Simulator, SimulatorConfig, answer_for};
use anyhow::{Context, Result};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::{Notify, oneshot};

/// What the seed API saw: (Authorization header, JSON body) per call.
#[derive(Default)]
struct Seen {
    queue: VecDeque<Value>,
    polls: Vec<(Option<String>, Value)>,
    tasks_handed_out: usize,
    submits: Vec<(Option<String>, Value)>,
    releases: Vec<(Option<String>, Value)>,
    /// "task" for each task handed out, "submit" for each submit, in arrival order.
    order: Vec<&'static str>,
    /// When each task was handed out and each submit arrived, in arrival order.
    handed_out_at: Vec<std::time::Instant>,
    submitted_at: Vec<std::time::Instant>,
    /// When set, every submit is refused with 422 and this `detail`, as the platform's seed API
    /// refuses an answer it cannot take.
    refusal: Option<String>,
}

#[derive(Clone, Default)]
struct SeedApi {
    seen: Arc<Mutex<Seen>>,
    changed: Arc<Notify>,
}

impl SeedApi {
    fn with_tasks(tasks: Vec<Value>) -> SeedApi {
        let api = SeedApi::default();
        api.seen.lock().map(|mut seen| seen.queue.extend(tasks)).ok();
        api
    }

    fn seen<T>(&self, read: impl FnOnce(&Seen) -> T) -> T {
        let seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        read(&seen)
    }

    fn record(&self, write: impl FnOnce(&mut Seen) -> Value) -> Json<Value> {
        let reply = {
            let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            write(&mut seen)
        };
        self.changed.notify_waiters();
        Json(reply)
    }

    /// Waits until `done` holds, re-checking on every call the server records.
    async fn wait_for(&self, done: impl Fn(&Seen) -> bool) -> Result<()> {
        tokio::time::timeout(Duration::from_secs(180), async {
            loop {
                let changed = self.changed.notified();
                if self.seen(&done) {
                    return;
                }
                // Also re-check now and then: a notification may race the registration.
                let _ = tokio::time::timeout(Duration::from_millis(200), changed).await;
            }
        })
        .await
        .context("the bot did not get there in time")
    }
}

fn auth(headers: &HeaderMap) -> Option<String> {
    headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

async fn poll(State(api): State<SeedApi>, headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    api.record(|seen| {
        seen.polls.push((auth(&headers), body));
        match seen.queue.pop_front() {
            Some(task) => {
                seen.tasks_handed_out += 1;
                seen.order.push("task");
                seen.handed_out_at.push(std::time::Instant::now());
                task
            }
            None => json!({"evaluation_id": null, "prompt_id": null, "prompt_text": null, "topic_id": null, "claimed_at": null}),
        }
    })
}

async fn submit(State(api): State<SeedApi>, headers: HeaderMap, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let mut status = StatusCode::OK;
    let reply = api.record(|seen| {
        let id = body["evaluation_id"].clone();
        seen.submits.push((auth(&headers), body));
        seen.order.push("submit");
        seen.submitted_at.push(std::time::Instant::now());
        match &seen.refusal {
            Some(detail) => {
                status = StatusCode::UNPROCESSABLE_ENTITY;
                json!({ "detail": detail })
            }
            None => json!({"evaluation_id": id, "status": "submitted"}),
        }
    });
    (status, reply)
}

async fn release(State(api): State<SeedApi>, headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    api.record(|seen| {
        let id = body["evaluation_id"].clone();
        seen.releases.push((auth(&headers), body));
        json!({"evaluation_id": id, "action": "released"})
    })
}

async fn serve(api: SeedApi) -> Result<(String, oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = Router::new()
        .route("/evaluations/api/v1/poll", post(poll))
        .route("/evaluations/api/v1/submit", post(submit))
        .route("/evaluations/api/v1/release", post(release))
        .with_state(api);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((url, stop))
}

fn task(evaluation_id: i64, prompt: &str) -> Value {
    json!({
        "evaluation_id": evaluation_id,
        "prompt_id": evaluation_id + 1000,
        "prompt_text": prompt,
        "topic_id": 1,
        "claimed_at": "2025-12-09T10:30:00Z"
    })
}

/// A sessions directory with one storage-state file per label, in this order.
async fn sessions_dir(sim: &Simulator, labels: &[&str]) -> Result<(tempfile::TempDir, Vec<String>)> {
    let dir = tempfile::tempdir()?;
    let mut tokens = Vec::new();
    for label in labels {
        let session = sim.create_session(label).await;
        std::fs::write(dir.path().join(format!("{label}.json")), &session.storage_state_json)?;
        tokens.push(session.token);
    }
    Ok((dir, tokens))
}

/// Runs the bot until `until` holds on the seed API, then shuts it down and returns its result.
async fn run_bot_until(config: BotConfig, api: &SeedApi, until: impl Fn(&Seen) -> bool) -> Result<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    let bot = tokio::spawn(aap_bot::run(config, async move {
        let _ = stopped.await;
    }));
    let reached = api.wait_for(until).await;
    let _ = stop.send(());
    // The bot quits its browser before returning, whatever happened.
    let ran = bot.await.context("bot task panicked")?;
    reached?;
    ran
}

fn http_config(api_url: &str, dir: &std::path::Path, sim: &Simulator) -> BotConfig {
    let mut config = BotConfig::http(api_url, api_url, dir, "ChatGPT", "Plus")
        .with_assistant_url(&sim.base_url)
        .with_token("seed-token")
        .with_bot_id("http-test-bot");
    config.poll_retry = Duration::from_millis(100);
    config
}

/// One bot in the seed's HTTP mode, set up: a ChatGPT look-alike with a session file per label
/// (in this order), the seed API holding `tasks`, a fresh evidence directory, and the bot's
/// configuration for all of it (a test adjusts `config` before [`Scenario::run_until`]).
struct Scenario {
    sim: Simulator,
    /// The sessions directory; kept alive for the bot.
    _sessions: tempfile::TempDir,
    /// The simulator's token of each session, in the order of the labels.
    tokens: Vec<String>,
    api: SeedApi,
    stop_api: oneshot::Sender<()>,
    evidence: tempfile::TempDir,
    config: BotConfig,
}

/// What a finished [`Scenario`] leaves to check: the simulator's counters, the seed API's record
/// and the evidence directory.
struct Ran {
    stats: aap_simulator::SimStats,
    tokens: Vec<String>,
    api: SeedApi,
    evidence: tempfile::TempDir,
}

impl Scenario {
    async fn start(sim_config: SimulatorConfig, labels: &[&str], tasks: Vec<Value>) -> Result<Scenario> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sim = Simulator::start(listener, aap_simulator::Site::ChatGpt, sim_config).await?;
        let (sessions, tokens) = sessions_dir(&sim, labels).await?;
        let api = SeedApi::with_tasks(tasks);
        let (api_url, stop_api) = serve(api.clone()).await?;
        let evidence = tempfile::tempdir()?;
        let mut config = http_config(&api_url, sessions.path(), &sim);
        config.evidence.dir = evidence.path().to_owned();
        Ok(Scenario { sim, _sessions: sessions, tokens, api, stop_api, evidence, config })
    }

    /// Runs the bot until `until` holds on the seed API, then stops the bot, the API and the
    /// simulator (whatever happened) before reporting the bot's result.
    async fn run_until(self, until: impl Fn(&Seen) -> bool) -> Result<Ran> {
        let Scenario { sim, _sessions, tokens, api, stop_api, evidence, config } = self;
        let result = run_bot_until(config, &api, until).await;
        let _ = stop_api.send(());
        let stats = sim.stats();
        sim.shutdown().await;
        result?;
        Ok(Ran { stats, tokens, api, evidence })
    }
}

#[tokio::test]
async fn polls_answers_through_the_browser_and_submits_the_seed_json() -> Result<()> {
    let prompt = "What are the best laptops under $1,000?";
    let scenario =
        Scenario::start(SimulatorConfig::default(), &["a-expired", "b-good"], vec![task(123, prompt)]).await?;
    // The first session's login has expired: the bot must move on to the second one.
    scenario.sim.expire_session(&scenario.tokens[0]);
    let Ran { stats, tokens, api, .. } = scenario.run_until(|seen| seen.submits.len() == 1).await?;

    let (polls, submits, releases) = api.seen(|s| (s.polls.clone(), s.submits.clone(), s.releases.clone()));
    let (poll_auth, poll_body) = &polls[0];
    assert_eq!(poll_auth.as_deref(), Some("Bearer seed-token"));
    assert_eq!(poll_body, &json!({"assistant_name": "ChatGPT", "plan_name": "Plus"}));
    assert!(releases.is_empty(), "{releases:?}");

    let (submit_auth, body) = &submits[0];
    assert_eq!(submit_auth.as_deref(), Some("Bearer seed-token"));
    let expected = answer_for(prompt, true);
    let timestamp = body["answer"]["timestamp"].as_str().context("timestamp")?;
    assert!(timestamp.ends_with('Z') && chrono_like(timestamp), "{timestamp}");
    let response = body["answer"]["response"].as_str().context("response")?;
    assert_eq!(
        response.split_whitespace().collect::<Vec<_>>(),
        expected.plain_text().split_whitespace().collect::<Vec<_>>()
    );
    // Cited sources, then the ones the Sources panel only lists; the seed's shape has no room
    // for the difference.
    let listed = aap_simulator::chatgpt_more_sources(prompt);
    let citations: Vec<Value> =
        expected.citations.iter().chain(&listed).map(|c| json!({"url": c.url, "text": c.title})).collect();
    assert_eq!(
        body,
        &json!({
            "evaluation_id": 123,
            "answer": {"response": response, "citations": citations, "timestamp": timestamp}
        }),
        "exactly the seed's submit body"
    );

    assert_eq!(stats.answers_for_prompt(prompt), 1);
    assert_eq!(stats.answers_for_token(&tokens[1]), 1, "answered on the second session");
    assert!(stats.login_walls >= 1, "the expired session met the login wall");
    Ok(())
}

/// With a prompt gap, an account's next prompt waits at least the gap after the last one was
/// handed in, and the bot takes no task meanwhile (the task stays with the API for another bot);
/// without one, the next task is asked for at once.
#[tokio::test]
async fn a_prompt_gap_rests_the_account_between_prompts_holding_no_task() -> Result<()> {
    let tasks = || vec![task(1, "Which kettle boils fastest?"), task(2, "Which toaster browns evenly?")];
    let mut scenario = Scenario::start(SimulatorConfig::default(), &["paced"], tasks()).await?;
    let gap = Duration::from_millis(1500);
    scenario.config.prompt_gap = gap;
    let Ran { api, stats, .. } = scenario.run_until(|seen| seen.submits.len() == 2).await?;
    let (handed, submitted) = api.seen(|s| (s.handed_out_at.clone(), s.submitted_at.clone()));
    assert_eq!((handed.len(), submitted.len()), (2, 2));
    let rested = handed[1].duration_since(submitted[0]);
    assert!(rested >= gap, "the second task was taken {rested:?} after the first answer, within the gap");
    assert_eq!(stats.answers_total, 2);
    Ok(())
}

/// `2025-12-09T10:35:00Z`: date, `T`, time to the second, `Z`.
fn chrono_like(timestamp: &str) -> bool {
    let bytes = timestamp.as_bytes();
    timestamp.len() == 20 && bytes[4] == b'-' && bytes[10] == b'T' && bytes[13] == b':' && bytes[19] == b'Z'
}

#[tokio::test]
async fn releases_as_failed_after_max_attempts_and_a_fresh_session_without_citations() -> Result<()> {
    let prompt = "Explain photosynthesis simply [[no-citations]]";
    let sim_config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    let mut scenario = Scenario::start(sim_config, &["a-first", "b-fresh"], vec![task(124, prompt)]).await?;
    scenario.config.max_attempts = 2;
    let Ran { stats, tokens, api, .. } = scenario.run_until(|seen| seen.releases.len() == 1).await?;

    let (submits, releases) = api.seen(|s| (s.submits.clone(), s.releases.clone()));
    assert!(submits.is_empty(), "an answer without citations is never submitted");
    assert_eq!(releases[0].0.as_deref(), Some("Bearer seed-token"));
    assert_eq!(
        releases[0].1,
        json!({"evaluation_id": 124, "mark_as_failed": true, "failure_reason": "No citations found after 3 attempts"})
    );
    // Two attempts in new conversations on the first session, then one on a fresh session.
    assert_eq!(stats.answers_for_token(&tokens[0]), 2);
    assert_eq!(stats.answers_for_token(&tokens[1]), 1);
    Ok(())
}

#[tokio::test]
async fn citations_over_the_platforms_limits_are_fitted_and_the_answer_submitted() -> Result<()> {
    // One 3,000-character word: the simulator names its sources after it, so their titles run
    // to 3,000 characters and more (the platform takes 1,000) and their URLs hold it as a slug.
    let prompt = "é".repeat(3000);
    let scenario = Scenario::start(SimulatorConfig::default(), &["only"], vec![task(128, &prompt)]).await?;
    let Ran { api, .. } = scenario.run_until(|seen| seen.submits.len() == 1).await?;

    let (submits, releases) = api.seen(|s| (s.submits.clone(), s.releases.clone()));
    assert!(releases.is_empty(), "{releases:?}");
    let citations = submits[0].1["answer"]["citations"].as_array().context("citations")?.clone();
    let listed = aap_simulator::chatgpt_more_sources(&prompt);
    let sources: Vec<_> = answer_for(&prompt, true).citations.into_iter().chain(listed).collect();
    assert!(sources.iter().any(|c| c.title.chars().count() > 1000), "the simulator's titles are long");
    assert!(!citations.is_empty(), "the answer keeps its citations");
    for citation in &citations {
        let url = citation["url"].as_str().context("url")?;
        let text = citation["text"].as_str().context("text")?;
        assert!(url.chars().count() <= 4096, "{url}");
        assert!(
            text.chars().count() <= 1000,
            "a title within the platform's limit: {} characters",
            text.chars().count()
        );
        let source = sources.iter().find(|c| c.url == url).with_context(|| format!("a source of the answer: {url}"))?;
        if source.title.chars().count() > 1000 {
            let kept = text.strip_suffix('…').context("a cut title ends in an ellipsis")?;
            assert!(source.title.starts_with(kept), "cut from the start of the title");
        } else {
            assert_eq!(text, source.title);
        }
    }
    Ok(())
}

#[tokio::test]
async fn an_answer_the_seed_api_refuses_fails_its_task_at_once_with_the_reason() -> Result<()> {
    let prompt = "What are the best laptops under $1,000?";
    let scenario = Scenario::start(SimulatorConfig::default(), &["only"], vec![task(129, prompt)]).await?;
    let detail = "invalid answer.citations.url: is 8239 characters; the limit is 4096";
    scenario.api.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).refusal = Some(detail.to_owned());
    let Ran { api, .. } = scenario.run_until(|seen| seen.releases.len() == 1).await?;

    let (submits, releases) = api.seen(|s| (s.submits.clone(), s.releases.clone()));
    assert_eq!(submits.len(), 1, "a refused answer is sent once");
    assert_eq!(
        releases[0].1,
        json!({
            "evaluation_id": 129,
            "mark_as_failed": true,
            "failure_reason": format!("the platform refused the answer: {detail}")
        })
    );
    Ok(())
}

#[tokio::test]
async fn shutdown_finishes_the_task_in_hand() -> Result<()> {
    let prompt = "How do heat pumps work in cold climates? [[slow]]";
    let scenario = Scenario::start(SimulatorConfig::default(), &["only"], vec![task(125, prompt)]).await?;
    // Shut down as soon as the task is handed out, long before the slow answer is complete.
    let Ran { stats, api, .. } = scenario.run_until(|seen| seen.tasks_handed_out == 1).await?;

    let (submits, releases) = api.seen(|s| (s.submits.clone(), s.releases.clone()));
    assert!(releases.is_empty(), "{releases:?}");
    assert_eq!(submits.len(), 1, "the task in hand was finished before the bot stopped");
    assert_eq!(submits[0].1["evaluation_id"], json!(125));
    assert_eq!(stats.answers_for_prompt(prompt), 1);
    Ok(())
}

#[tokio::test]
async fn an_idle_browser_is_closed_and_reopened_on_demand() -> Result<()> {
    let sim_config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    let tasks = vec![task(126, "Best running shoes for beginners?")];
    let Scenario { sim, _sessions, tokens, api, stop_api, evidence: _evidence, mut config } =
        Scenario::start(sim_config, &["a-first", "b-second"], tasks).await?;
    config.idle_timeout = Some(Duration::from_millis(300));
    let (stop, stopped) = oneshot::channel::<()>();
    let bot = tokio::spawn(aap_bot::run(config, async move {
        let _ = stopped.await;
    }));
    let first = api.wait_for(|seen| seen.submits.len() == 1).await;
    // Several idle periods pass with empty polls: the browser closes and hands its session back.
    let idle = api.wait_for(|seen| seen.polls.len() >= 15).await;
    lock_queue(&api, task(127, "Best trail running shoes?"));
    let second = api.wait_for(|seen| seen.submits.len() == 2).await;
    let _ = stop.send(());
    let ran = bot.await.context("bot task panicked")?;
    let _ = stop_api.send(());
    let stats = sim.stats();
    sim.shutdown().await;
    first?;
    idle?;
    second?;
    ran?;

    // With 10 runs per session, only closing the idle browser (and returning its session) moves
    // the second task to the next session in rotation.
    assert_eq!(stats.answers_for_token(&tokens[0]), 1);
    assert_eq!(stats.answers_for_token(&tokens[1]), 1);
    Ok(())
}

fn lock_queue(api: &SeedApi, task: Value) {
    api.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).queue.push_back(task);
}

#[tokio::test]
async fn shutdown_hands_the_task_back_when_the_grace_period_ends() -> Result<()> {
    let tasks = vec![task(128, "Explain tides in detail [[slow]]")];
    let mut scenario = Scenario::start(SimulatorConfig::default(), &["only"], tasks).await?;
    scenario.config.shutdown_grace = Duration::ZERO;
    let Ran { api, .. } = scenario.run_until(|seen| seen.tasks_handed_out == 1).await?;

    let (submits, releases) = api.seen(|s| (s.submits.clone(), s.releases.clone()));
    assert!(submits.is_empty(), "{submits:?}");
    assert_eq!(
        releases.iter().map(|(_, body)| body.clone()).collect::<Vec<_>>(),
        vec![json!({"evaluation_id": 128, "mark_as_failed": false, "failure_reason": "the bot is shutting down"})],
        "back to the queue, not failed"
    );
    Ok(())
}

/// The failure cases kept in `dir`: the file stems of the `.json` notes, sorted.
fn evidence_cases(dir: &std::path::Path) -> Result<Vec<(String, Value)>> {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            let note: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
            let stem = path.with_extension("").display().to_string();
            assert!(std::path::Path::new(&format!("{stem}.html")).is_file(), "page HTML kept for {stem}");
            assert!(std::path::Path::new(&format!("{stem}.png")).is_file(), "screenshot kept for {stem}");
            cases.push((stem, note));
        }
    }
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(cases)
}

/// A manifest override of the built-in ChatGPT manifest ([`common::manifest_dir`]).
fn chatgpt_override(edit: impl FnOnce(&mut aap_bot::Manifest)) -> Result<tempfile::TempDir> {
    common::manifest_dir("chatgpt", edit)
}

#[tokio::test]
async fn a_challenged_session_is_set_aside_and_the_task_answered_on_another_with_evidence() -> Result<()> {
    let tasks = vec![task(130, "Which standing desk is the sturdiest?")];
    let scenario = Scenario::start(SimulatorConfig::default(), &["a-flagged", "b-clean"], tasks).await?;
    scenario.sim.challenge_session(&scenario.tokens[0]);
    let Ran { stats, tokens, api, evidence } = scenario.run_until(|seen| seen.submits.len() == 1).await?;

    assert!(api.seen(|s| s.releases.is_empty()), "answered, not released");
    assert!(stats.challenges >= 1, "the flagged session met the challenge");
    assert_eq!(stats.answers_for_token(&tokens[1]), 1, "answered on the clean session");
    let cases = evidence_cases(evidence.path())?;
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0].1["class"], "challenge");
    assert_eq!(cases[0].1["evaluation_id"], 130);
    assert_eq!(cases[0].1["title"], aap_simulator::CHALLENGE_TITLE);
    let html = std::fs::read_to_string(format!("{}.html", cases[0].0))?;
    assert!(html.contains("Verify you are human"), "the page as the bot saw it");
    Ok(())
}

#[tokio::test]
async fn a_rate_limited_session_cools_down_and_the_next_task_moves_to_another() -> Result<()> {
    // Each session may answer once; the second task finds the first session over its quota.
    let sim_config = SimulatorConfig { rate_limit_after: Some(1), pause_ms: 300, ..SimulatorConfig::default() };
    let tasks = vec![task(140, "Best budget espresso machine?"), task(141, "Best budget grinder?")];
    let scenario = Scenario::start(sim_config, &["a-busy", "b-spare"], tasks).await?;
    let Ran { stats, tokens, api, evidence } = scenario.run_until(|seen| seen.submits.len() == 2).await?;

    assert!(api.seen(|s| s.releases.is_empty()), "both answered");
    let busy = &stats.by_token[&tokens[0]];
    assert_eq!((busy.answers, busy.rate_limited), (1, 1), "{busy:?}");
    assert_eq!(stats.answers_for_token(&tokens[1]), 1, "the second task moved to the spare session");
    let cases = evidence_cases(evidence.path())?;
    assert_eq!(cases.iter().map(|c| c.1["class"].as_str().unwrap_or("")).collect::<Vec<_>>(), ["rate-limited"]);
    Ok(())
}

#[tokio::test]
async fn a_selector_miss_fails_the_task_at_once_and_keeps_evidence() -> Result<()> {
    let tasks = vec![task(150, "Best noise-cancelling headphones?")];
    let mut scenario = Scenario::start(SimulatorConfig::default(), &["only"], tasks).await?;
    // As after a site redesign: the manifest's composer selectors match nothing on the page.
    let adapters = chatgpt_override(|manifest| {
        manifest.selectors.insert("composer".to_owned(), vec!["#composer-after-redesign".to_owned()]);
        manifest.timing.page_load_secs = 3;
    })?;

    scenario.config.max_attempts = 3;
    scenario.config.adapters_dir = Some(adapters.path().to_owned());
    let Ran { stats, api, evidence, .. } = scenario.run_until(|seen| seen.releases.len() == 1).await?;

    let releases = api.seen(|s| s.releases.clone());
    let release = &releases[0].1;
    assert_eq!(release["mark_as_failed"], true, "{release}");
    let reason = release["failure_reason"].as_str().context("reason")?;
    assert!(reason.starts_with("selector-missing: no element for role composer"), "the class first: {reason}");
    let cases = evidence_cases(evidence.path())?;
    assert_eq!(cases.len(), 1, "one attempt, no retries: {cases:?}");
    assert!(reason.ends_with(&format!("[evidence: {}]", cases[0].0)), "the reason names the evidence last: {reason}");
    assert_eq!(cases[0].1["class"], "selector-missing");
    assert_eq!(stats.by_prompt.len(), 0, "nothing was asked");
    Ok(())
}

#[tokio::test]
async fn a_dialog_that_cannot_be_closed_fails_the_task_at_once_as_selector_missing() -> Result<()> {
    let tasks = vec![task(151, "Best noise-cancelling headphones?")];
    // An upsell dialog without a close button that ignores Escape, over every page.
    let sim_config = SimulatorConfig { modal: true, sticky: true, ..SimulatorConfig::default() };
    let mut scenario = Scenario::start(sim_config, &["only"], tasks).await?;
    scenario.config.max_attempts = 3;
    let Ran { stats, api, evidence, .. } = scenario.run_until(|seen| seen.releases.len() == 1).await?;

    let releases = api.seen(|s| s.releases.clone());
    let release = &releases[0].1;
    assert_eq!(release["mark_as_failed"], true, "{release}");
    let reason = release["failure_reason"].as_str().context("reason")?;
    assert!(reason.starts_with("selector-missing: no element for role dismiss"), "the class first: {reason}");
    let cases = evidence_cases(evidence.path())?;
    assert_eq!(cases.len(), 1, "one attempt, no retries: {cases:?}");
    assert!(reason.ends_with(&format!("[evidence: {}]", cases[0].0)), "the reason names the evidence: {reason}");
    assert_eq!(cases[0].1["class"], "selector-missing");
    assert_eq!(stats.by_prompt.len(), 0, "nothing was asked");
    Ok(())
}

#[tokio::test]
async fn a_prompt_longer_than_the_site_takes_fails_at_once_unasked_and_the_next_is_answered() -> Result<()> {
    let long = format!("Which espresso machine {}?", "suits a small kitchen and ".repeat(3));
    let tasks = vec![task(166, &long), task(167, "Best budget grinder?")];
    let mut scenario = Scenario::start(common::short_pause(), &["only"], tasks).await?;
    // As an operator sets it once the site caps its messages: 60 characters.
    let adapters = chatgpt_override(|manifest| {
        manifest.options.insert("max_prompt_chars".to_owned(), toml::Value::Integer(60));
    })?;
    scenario.config.adapters_dir = Some(adapters.path().to_owned());
    let Ran { stats, api, evidence, .. } =
        scenario.run_until(|seen| seen.releases.len() == 1 && seen.submits.len() == 1).await?;

    let release = api.seen(|s| s.releases[0].1.clone());
    assert_eq!((release["evaluation_id"].as_i64(), release["mark_as_failed"].as_bool()), (Some(166), Some(true)));
    let length = long.chars().count();
    assert!(length > 60);
    assert_eq!(
        release["failure_reason"],
        format!(
            "prompt-refused: the assistant does not take the prompt: the prompt has {length} characters; the site takes at most 60"
        ),
        "the class first, no attempts counted, no evidence: nothing was opened"
    );
    assert!(!stats.by_prompt.contains_key(&aap_simulator::normalize_prompt(&long)), "never asked");
    assert!(evidence_cases(evidence.path())?.is_empty());
    assert_eq!(api.seen(|s| s.submits[0].1["evaluation_id"].as_i64()), Some(167), "the bot went on");
    Ok(())
}

#[tokio::test]
async fn the_sites_refusal_of_a_long_prompt_is_tried_again_then_released_with_its_class() -> Result<()> {
    let prompt = "Summarise this whole book for me [[too-long]]";
    let mut scenario = Scenario::start(common::short_pause(), &["a-first", "b-fresh"], vec![task(168, prompt)]).await?;
    scenario.config.max_attempts = 1;
    let Ran { api, evidence, .. } = scenario.run_until(|seen| seen.releases.len() == 1).await?;

    let release = api.seen(|s| s.releases[0].1.clone());
    assert_eq!(release["mark_as_failed"], true, "{release}");
    let reason = release["failure_reason"].as_str().context("reason")?;
    assert!(
        reason.starts_with(
            "prompt-refused: the assistant does not take the prompt: The message you submitted was too long"
        ),
        "{reason}"
    );
    // The site's own refusal may be a glitch of one conversation: one attempt, then one on a
    // fresh session, as for any failure the site reports.
    assert!(reason.contains("(after 2 attempts)"), "{reason}");
    let cases = evidence_cases(evidence.path())?;
    let classes: Vec<&str> = cases.iter().map(|c| c.1["class"].as_str().unwrap_or("")).collect();
    assert_eq!(classes, ["prompt-refused", "prompt-refused"]);
    assert!(api.seen(|s| s.submits.is_empty()));
    Ok(())
}

#[tokio::test]
async fn a_stalled_answer_times_out_under_the_retry_rule_and_each_attempt_keeps_evidence() -> Result<()> {
    let sim_config = SimulatorConfig { stall: true, ..SimulatorConfig::default() };
    let tasks = vec![task(160, "Best trail running shoes?")];
    let mut scenario = Scenario::start(sim_config, &["a-first", "b-fresh"], tasks).await?;
    let adapters = chatgpt_override(|manifest| manifest.timing.answer_deadline_secs = 6)?;
    scenario.config.max_attempts = 1;
    scenario.config.adapters_dir = Some(adapters.path().to_owned());
    let Ran { api, evidence, .. } = scenario.run_until(|seen| seen.releases.len() == 1).await?;

    let release = api.seen(|s| s.releases[0].1.clone());
    assert_eq!(release["mark_as_failed"], true, "{release}");
    let reason = release["failure_reason"].as_str().context("reason")?;
    assert!(reason.starts_with("timeout: ") && reason.contains("did not complete"), "{reason}");
    assert!(reason.contains("after 2 attempts"), "one attempt, then one on a fresh session: {reason}");
    let cases = evidence_cases(evidence.path())?;
    assert_eq!(cases.iter().map(|c| c.1["class"].as_str().unwrap_or("")).collect::<Vec<_>>(), ["timeout", "timeout"]);
    assert!(api.seen(|s| s.submits.is_empty()), "a half answer is never submitted");
    Ok(())
}

#[tokio::test]
async fn an_empty_answer_is_retried_in_new_conversations_then_on_a_fresh_session_then_released() -> Result<()> {
    let prompt = "Best trail running shoes? [[empty]]";
    let sim_config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    let mut scenario = Scenario::start(sim_config, &["a-first", "b-fresh"], vec![task(165, prompt)]).await?;
    scenario.config.max_attempts = 3;
    let Ran { stats, tokens, api, evidence } = scenario.run_until(|seen| seen.releases.len() == 1).await?;

    assert!(api.seen(|s| s.submits.is_empty()), "an empty answer is never submitted");
    let release = api.seen(|s| s.releases[0].1.clone());
    assert_eq!(release["evaluation_id"], 165);
    assert_eq!(release["mark_as_failed"], true, "{release}");
    let reason = release["failure_reason"].as_str().context("reason")?;
    assert!(reason.starts_with("empty-answer: the answer is empty (after 4 attempts)"), "{reason}");
    assert!(reason.contains("after 4 attempts"), "three attempts, then one on a fresh session: {reason}");
    // Three attempts in new conversations on the first session, then one on a fresh session:
    // each a whole (empty) turn the site served, none abandoned half-way.
    assert_eq!(stats.answers_for_prompt(prompt), 4);
    assert_eq!(stats.empty_answers_for_prompt(prompt), 4);
    let first = &stats.by_token[&tokens[0]];
    let fresh = &stats.by_token[&tokens[1]];
    assert_eq!((first.answers, first.empty_answers, first.interrupted), (3, 3, 0), "{first:?}");
    assert_eq!((fresh.answers, fresh.empty_answers, fresh.interrupted), (1, 1, 0), "{fresh:?}");

    let cases = evidence_cases(evidence.path())?;
    assert_eq!(cases.len(), 4, "one case per attempt: {cases:?}");
    for (index, (_, note)) in cases.iter().enumerate() {
        assert_eq!(note["class"], "empty-answer");
        assert_eq!(note["evaluation_id"], 165);
        assert_eq!(note["attempt"], index + 1);
    }
    let last = &cases[3].0;
    assert!(reason.ends_with(&format!("[evidence: {last}]")), "the reason names the last attempt's evidence: {reason}");
    // What the bot saw: the turn finished (its action bar is there) with nothing in it.
    let html = std::fs::read_to_string(format!("{last}.html"))?;
    assert!(html.contains("copy-turn-action-button"), "the turn had finished");
    Ok(())
}

#[tokio::test]
async fn two_browsers_in_one_process_answer_two_tasks_at_once_on_separate_sessions() -> Result<()> {
    // Slow first tokens: a bot with one browser could not take a second task before submitting
    // the first.
    let sim_config = SimulatorConfig { first_token_delay_ms: 1500, pause_ms: 300, ..SimulatorConfig::default() };
    let tasks = vec![task(170, "Best compact cameras?"), task(171, "Best travel tripods?")];
    let mut scenario = Scenario::start(sim_config, &["a-one", "b-two", "c-three"], tasks).await?;
    scenario.config.concurrency = 2;
    let Ran { stats, tokens, api, .. } = scenario.run_until(|seen| seen.submits.len() == 2).await?;

    assert_eq!(api.seen(|s| s.order.clone()), ["task", "task", "submit", "submit"], "both in flight at once");
    let used: Vec<u64> = tokens.iter().map(|t| stats.answers_for_token(t)).collect();
    assert_eq!(used, [1, 1, 0], "each browser on its own session, never the same one twice at once");
    Ok(())
}

#[tokio::test]
async fn sources_only_the_stream_still_names_are_submitted_and_the_disagreement_keeps_evidence() -> Result<()> {
    let prompt = "Which e-bike is best for a hilly commute?";
    let scenario = Scenario::start(SimulatorConfig::default(), &["only"], vec![task(170, prompt)]).await?;
    // As after a site change that renamed the sources panel: the bot no longer finds the list
    // of sources the answer only lists, but the conversation stream still names them.
    let mut scenario = scenario;
    let adapters = chatgpt_override(|manifest| {
        let panel = "section#sources-after-a-redesign";
        manifest.selectors.insert("sources_panel".to_owned(), vec![panel.to_owned()]);
        manifest.selectors.insert("sources_link".to_owned(), vec![format!("{panel} a[href]")]);
        manifest.timing.sources_panel_ms = 300;
    })?;
    scenario.config.adapters_dir = Some(adapters.path().to_owned());
    let Ran { api, evidence, .. } = scenario.run_until(|seen| seen.submits.len() == 1).await?;

    assert!(api.seen(|s| s.releases.is_empty()), "answered, not released");
    let body = api.seen(|s| s.submits[0].1.clone());
    let urls: Vec<&str> =
        body["answer"]["citations"].as_array().context("citations")?.iter().filter_map(|c| c["url"].as_str()).collect();
    let expected = answer_for(prompt, true);
    let listed = aap_simulator::chatgpt_more_sources(prompt);
    let wanted: Vec<&str> = expected.citations.iter().chain(&listed).map(|c| c.url.as_str()).collect();
    assert_eq!(urls, wanted, "the listed-only sources came from the stream");
    let cases = evidence_cases(evidence.path())?;
    assert_eq!(cases.len(), 1, "{cases:?}");
    assert_eq!(cases[0].1["class"], "sources-disagree");
    let said = cases[0].1["error"].as_str().context("error")?;
    assert!(said.contains(&format!("{} only in the stream", listed.len())), "{said}");
    Ok(())
}

/// An OTLP trace collector that keeps every span it receives, with its service's name.
#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>>,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse>,
        tonic::Status,
    > {
        let mut kept = self.spans.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                kept.extend(scope.spans.into_iter().map(|span| (service.clone(), span)));
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

/// The `aap-bot` binary with `--metrics-addr` and `OTEL_EXPORTER_OTLP_ENDPOINT`: after it
/// answered, its own `/metrics` shows the task, the answer and the browser, and its spans reach
/// the collector when it stops.
#[tokio::test]
async fn the_binary_serves_its_metrics_and_exports_its_traces() -> Result<()> {
    use std::process::Stdio;

    use aap_telemetry::exposition::Scrape;
    use tokio::io::AsyncBufReadExt as _;
    use tokio_stream::wrappers::TcpListenerStream;

    let collector = Collector::default();
    let otlp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let endpoint = format!("http://{}", otlp.local_addr()?);
    let service = opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(
        collector.clone(),
    );
    tokio::spawn(
        tonic::transport::Server::builder().add_service(service).serve_with_incoming(TcpListenerStream::new(otlp)),
    );

    let prompt = "What are the best laptops under $1,000?";
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, aap_simulator::Site::ChatGpt, SimulatorConfig::default()).await?;
    let (sessions, _tokens) = sessions_dir(&sim, &["only"]).await?;
    let api = SeedApi::with_tasks(vec![task(126, prompt)]);
    let (api_url, stop_api) = serve(api.clone()).await?;
    let evidence = tempfile::tempdir()?;
    let sessions_path = sessions.path().display().to_string();
    let evidence_path = evidence.path().display().to_string();
    let mut bot = tokio::process::Command::new(env!("CARGO_BIN_EXE_aap-bot"))
        .args(["--api-url", &api_url, "--sessions-dir", &sessions_path, "--evidence-dir", &evidence_path])
        .args(["--assistant-name", "ChatGPT", "--plan-name", "Plus", "--assistant-url", &sim.base_url])
        .args(["--token", "seed-token", "--bot-id", "binary-bot", "--poll-retry-seconds", "0.1"])
        .args(["--metrics-addr", "127.0.0.1:0"])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    // The bot logs JSON lines; the metrics endpoint's address is in one of them.
    let stderr = bot.stderr.take().context("stderr")?;
    let (found, metrics_addr) = oneshot::channel::<String>();
    tokio::spawn(async move {
        let mut found = Some(found);
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
            if entry["fields"]["message"].as_str().is_some_and(|m| m.starts_with("metrics serving"))
                && let (Some(addr), Some(found)) = (entry["fields"]["addr"].as_str(), found.take())
            {
                let _ = found.send(addr.to_owned());
            }
        }
    });
    let metrics_url = format!(
        "http://{}/metrics",
        tokio::time::timeout(Duration::from_secs(60), metrics_addr).await.context("metrics address logged")??
    );
    api.wait_for(|seen| seen.submits.len() == 1).await?;

    let scrape = async {
        let text = reqwest::get(&metrics_url).await?.error_for_status()?.text().await?;
        Scrape::parse(&text).map_err(anyhow::Error::msg)
    };
    let scrape = scrape.await?;
    let chatgpt = [("assistant", "chatgpt")];
    let value = |name: &str, labels: &[(&str, &str)]| scrape.value(name, labels).unwrap_or(0.0);
    assert_eq!(value("aap_bot_tasks_total", &chatgpt), 1.0);
    let submitted = [("assistant", "chatgpt"), ("outcome", "submitted")];
    // The outcome is counted once the submit returned: wait for it with a bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut outcomes = value("aap_bot_task_outcomes_total", &submitted);
    while outcomes < 1.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let text = reqwest::get(&metrics_url).await?.text().await?;
        outcomes = Scrape::parse(&text)
            .map_err(anyhow::Error::msg)?
            .value("aap_bot_task_outcomes_total", &submitted)
            .unwrap_or(0.0);
    }
    assert_eq!(outcomes, 1.0, "the task counted as submitted");
    assert_eq!(value("aap_bot_answer_seconds_count", &chatgpt), 1.0);
    assert!(value("aap_bot_answer_seconds_sum", &chatgpt) > 0.0);
    assert_eq!(value("aap_bot_browser_starts_total", &[("assistant", "chatgpt"), ("result", "ok")]), 1.0);
    assert_eq!(value("aap_bot_session_leases_total", &[("assistant", "chatgpt"), ("outcome", "granted")]), 1.0);
    assert_eq!(value("aap_bot_attempt_failures_total", &chatgpt), 0.0);
    assert_eq!(scrape.kind("aap_bot_tasks"), Some("counter"));
    assert_eq!(scrape.kind("aap_answers_ask_first_event_seconds"), None, "a bot carries no platform metrics");

    // SIGTERM: the bot stops cleanly, flushing its spans.
    let pid = bot.id().context("bot pid")?.to_string();
    let killed = tokio::process::Command::new("kill").args(["-TERM", &pid]).status().await?;
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(90), bot.wait()).await.context("the bot stops")??;
    assert!(status.success(), "{status}");
    let _ = stop_api.send(());
    sim.shutdown().await;

    let spans = collector.spans.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
    let task_span = spans.iter().find(|(_, span)| span.name == "bot.task").context("a bot.task span was exported")?;
    assert!(task_span.0.contains("aap-bot"), "exported as the aap-bot service: {}", task_span.0);
    let evaluation = task_span.1.attributes.iter().find(|a| a.key == "evaluation_id").and_then(|a| a.value.clone());
    assert!(format!("{evaluation:?}").contains("126"), "{evaluation:?}");
    Ok(())
}
