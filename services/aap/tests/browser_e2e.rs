//! End to end through real Chromium: the platform, the assistant simulators, and aap-bot
//! driving a headless Chromium through chromedriver.

mod common;

use std::process::Stdio;
use std::time::Duration;

use aap_proto::v1::answer_event::Event;
use aap_proto::v1::{CreateAccountRequest, MatchKind};
use aap_simulator::{Simulator, SimulatorConfig, Site};
use common::*;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::watch;

async fn simulator(config: SimulatorConfig) -> Simulator {
    site_simulator(Site::ChatGpt, config).await
}

async fn site_simulator(site: Site, config: SimulatorConfig) -> Simulator {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind simulator");
    Simulator::start(listener, site, config).await.expect("simulator")
}

/// The plan the test accounts and bots of a site serve.
fn plan_of(site: Site) -> &'static str {
    if site == Site::ChatGpt { "Plus" } else { "Pro" }
}

async fn add_account(app: &TestApp, sim: &Simulator, label: &str) {
    let state = sim.create_session(label).await.storage_state_json;
    app.sessions(OPERATOR)
        .create_account(CreateAccountRequest {
            assistant: sim.site().id().into(),
            plan: plan_of(sim.site()).into(),
            label: label.into(),
            storage_state_json: state,
            ..CreateAccountRequest::default()
        })
        .await
        .expect("account created");
}

/// Runs an in-process bot until the returned sender says stop; join the handle to wait for it.
fn start_bot(app: &TestApp, sim: &Simulator, name: &str) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let site = sim.site();
    let config =
        aap_bot::BotConfig::grpc(&app.grpc_url, BOT, name, site.id(), plan_of(site)).with_assistant_url(&sim.base_url);
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
    let bot = start_bot(&app, &sim, "e2e-bot");

    let prompt = "What are the best laptops under $1,000?";
    // As an operator, who sees which bot and account answered.
    let request = aap_proto::v1::AskRequest { include_html: true, ..ask_text(prompt, &["chatgpt"]) };
    let events = ask_as(&app, OPERATOR, request).await;
    stop_bot(bot).await;

    let expected = aap_simulator::answer_for(prompt, true);
    let answer = first_answer(&events);
    assert_eq!(answer.assistant, "chatgpt");
    // innerText separates paragraphs with a blank line; the simulator's plain text does not.
    let lines = |t: &str| t.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(
        lines(&answer.response_text),
        lines(&expected.plain_text()),
        "the whole answer, not the half before the pause"
    );
    let listed = aap_simulator::chatgpt_more_sources(prompt);
    assert_eq!(answer.citations.len(), expected.citations.len() + listed.len(), "cited, then listed");
    for (got, want) in answer.citations.iter().zip(expected.citations.iter().chain(&listed)) {
        assert_eq!(got.url, want.url);
        assert!(!got.url.contains("utm_"), "{}", got.url);
    }
    let kinds: Vec<i32> = answer.citations.iter().map(|c| c.kind).collect();
    let inline = aap_proto::v1::CitationKind::Inline as i32;
    let listed_kind = aap_proto::v1::CitationKind::Listed as i32;
    assert_eq!(kinds.iter().filter(|k| **k == inline).count(), expected.citations.len(), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == listed_kind).count(), listed.len(), "{kinds:?}");
    // Who captured it, with what, from which account.
    assert_eq!((answer.bot_id.as_str(), answer.account_label.as_str()), ("e2e-bot", "sim-1"));
    assert!(!answer.account_id.is_empty());
    let capture = answer.capture.clone().expect("capture");
    assert_eq!(capture.model, "gpt-5");
    assert_eq!(capture.web_search, Some(true));
    let manifest = aap_bot::Manifest::load("chatgpt", None).expect("manifest");
    assert_eq!((capture.adapter_version, capture.adapter_fingerprint), (manifest.version, manifest.fingerprint));
    assert!(capture.time_to_first_token.is_some() && capture.time_to_complete.is_some());
    assert!(capture.response_html.contains("webpage-citation-pill"));
    // How it was read, and what the assistant's own stream said, survive the whole path: the
    // bot, Submit, the results stream, the ingest, PostgreSQL, and the Ask stream.
    assert!(capture.finish_signals.len() >= 2, "two signals ended it: {:?}", capture.finish_signals);
    assert!(capture.finish_signals.iter().any(|s| s == "stream-done"), "{:?}", capture.finish_signals);
    assert!(capture.missing_roles.is_empty() && !capture.read_by_fallback, "{:?}", capture.missing_roles);
    assert!((capture.confidence - 1.0).abs() < 1e-6, "{}", capture.confidence);
    let both = aap_proto::v1::CitationOrigin::Both as i32;
    assert!(answer.citations.iter().all(|c| c.found_in == both), "page and stream agree: {:?}", answer.citations);
    assert_eq!(answer.search_queries, aap_simulator::chatgpt_search_queries(prompt), "the query fan-out");
    let products: Vec<&str> = answer.products.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(products, aap_simulator::chatgpt_products(prompt), "the products it showed");
    assert!(!products.is_empty(), "a shopping prompt shows products");
    assert_eq!(sim.stats().answers_total, 1);
    // Asked in a temporary chat: nothing the account asked before shaped it.
    assert_eq!(sim.stats().site_event(aap_simulator::CHATGPT_TEMPORARY_CHAT_EVENT), 1);

    let again = ask(&app, ask_text(prompt, &["chatgpt"])).await;
    assert!(matches!(&again[0], Event::Matched(m) if m.r#match == MatchKind::Exact as i32));
    assert!(again.iter().any(|e| matches!(e, Event::Cached(a) if a.response_text == answer.response_text)));
    assert!(!again.iter().any(|e| matches!(e, Event::Scheduled(_))), "nothing scheduled the second time");
    assert_eq!(sim.stats().answers_total, 1, "the assistant was asked once");
    sim.shutdown().await;
}

/// A site whose answer carries more than the platform takes (Perplexity's look-alike with
/// `[[oversized]]`: 70 products, the first with every field past its bound, and a prompt of
/// some 1,300 characters shown whole as its search queries): the bot fits them and the answer
/// lands; before, the platform refused the whole answer for one field.
#[tokio::test]
async fn an_answer_whose_metadata_runs_past_the_platforms_bounds_lands_fitted() {
    use aap_proto::limits::{MAX_NAME_CHARS, MAX_PRODUCTS, MAX_QUERY_CHARS, MAX_TITLE_CHARS};
    let app = spawn_app().await;
    let sim = site_simulator(Site::Perplexity, SimulatorConfig::default()).await;
    add_account(&app, &sim, "perplexity-1").await;
    let bot = start_bot(&app, &sim, "oversized-bot");

    let prompt = format!(
        "Which standing desk suits a small flat? {} [[oversized]]",
        "It should be sturdy, quiet, easy to assemble and fit under a sloped ceiling. ".repeat(16)
    );
    assert!(prompt.chars().count() > MAX_QUERY_CHARS + 100, "its query runs past the bound");
    let events = within("the oversized answer", 3, ask_as(&app, OPERATOR, ask_text(&prompt, &["perplexity"]))).await;
    stop_bot(bot).await;

    assert!(matches!(events.last(), Some(Event::Completed(c)) if c.answered == 1 && c.failed == 0), "{events:?}");
    let answer = first_answer(&events);
    let expected = aap_simulator::answer_for(&prompt, true);
    let words = |t: &str| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(words(&answer.response_text), words(&expected.plain_text()), "the whole answer");
    assert_eq!(answer.products.len(), MAX_PRODUCTS, "the first 64 of 70");
    let first = &answer.products[0];
    let chars = |t: &str| t.chars().count();
    assert_eq!(chars(&first.name), MAX_TITLE_CHARS);
    assert!(first.name.starts_with("Oversized Ultra") && first.name.ends_with('…'), "{}", first.name);
    assert_eq!(first.url, "", "a link past the bound is left out, the product kept");
    assert_eq!((chars(&first.price), chars(&first.merchant)), (MAX_NAME_CHARS, MAX_NAME_CHARS));
    assert!(first.merchant.starts_with("Bell\u{FFFD}Merchant\u{FFFD}"), "{}", first.merchant);
    let names: Vec<&str> = answer.products[1..].iter().map(|p| p.name.as_str()).collect();
    let plain: Vec<String> = (2..=MAX_PRODUCTS).map(|n| format!("Plain product {n}")).collect();
    assert_eq!(names, plain, "the others as shown, in order");
    assert!(!answer.search_queries.is_empty());
    for query in &answer.search_queries {
        assert!(chars(query) <= MAX_QUERY_CHARS, "{} characters", chars(query));
    }
    assert!(answer.search_queries.iter().any(|q| q.ends_with('…')), "{:?}", answer.search_queries);
    sim.shutdown().await;
}

/// Tells a bot of [`start_bot`] to stop and waits until it has (within 2 minutes).
async fn stop_bot((stop, bot): (watch::Sender<bool>, tokio::task::JoinHandle<()>)) {
    stop.send(true).expect("stop bot");
    within("the bot stops", 2, bot).await.expect("bot stopped cleanly");
}

/// Awaits `future`, or fails the test saying what never happened (a guard against a hang, not
/// a speed check: the limits are minutes).
async fn within<T>(what: &str, minutes: u64, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(minutes * 60), future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: nothing after {minutes} min"),
    }
}

#[tokio::test]
async fn a_bot_killed_mid_task_loses_nothing_and_the_answer_lands_once() {
    let started = std::time::Instant::now();
    let step = |what: &str| eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
    let app = spawn_app().await;
    // The simulated assistant holds its first answer back for ten minutes, so the first bot is
    // surely mid-task when it is killed, however slow this machine is.
    let held = SimulatorConfig { first_token_delay_ms: 600_000, ..SimulatorConfig::default() };
    let sim = simulator(held).await;
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
    step("doomed bot started");
    let stream = within("ask", 2, app.answers().ask(ask_text("Which e-bike is best for commuting?", &["chatgpt"])))
        .await
        .expect("ask")
        .into_inner();
    let waiting = tokio::spawn(collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))));
    step("asked");

    // Mid-task: the evaluation is claimed and a session leased; no answer can come while the
    // assistant holds it back, so wherever the bot is in its work, it holds the task unanswered.
    within("the first bot claims the task and leases a session", 3, async {
        loop {
            let (claimed, leased): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM evaluations WHERE status = 'claimed' AND claimed_by = 'doomed'), \
                        (SELECT count(*) FROM session_leases WHERE bot_id = 'doomed')",
            )
            .fetch_one(&app.pool)
            .await
            .expect("count");
            if claimed == 1 && leased == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await; // typing, or waiting for the held answer
    step("claimed; killing the bot's process group");
    let pid = i32::try_from(doomed.id().expect("pid")).expect("pid fits");
    assert!(pid > 1, "a real process group, never -1 (every process)");
    // SAFETY: kill(2) with a negative pid signals exactly that process group: the bot, its
    // chromedriver and its Chromium, started with process_group(0) above.
    #[allow(unsafe_code)]
    let killed = unsafe { libc::kill(-pid, libc::SIGKILL) };
    assert_eq!(killed, 0, "kill: {}", std::io::Error::last_os_error());
    within("the killed bot is reaped", 1, doomed.wait()).await.expect("reaped");
    step("killed");

    sim.set_config(SimulatorConfig::default());
    let bot = start_bot(&app, &sim, "survivor");
    let events = within("the answer after redelivery", 5, waiting).await.expect("stream");
    step("answered");
    stop_bot(bot).await;

    assert_eq!(events.iter().filter(|e| matches!(e, Event::Answer(_))).count(), 1, "{events:?}");
    assert!(matches!(events.last(), Some(Event::Completed(c)) if c.answered == 1));
    assert_eq!(app.count("answers").await, 1);
    let (attempts, answered_by): (i32, String) =
        sqlx::query_as("SELECT e.attempts, a.bot_id FROM evaluations e JOIN answers a ON a.evaluation_id = e.id")
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(attempts, 2, "delivered again after the kill");
    assert_eq!(answered_by, "survivor");
    sim.shutdown().await;
}

#[tokio::test]
async fn one_prompt_is_answered_by_all_four_assistants_at_once() {
    let app = spawn_app().await;
    let mut sims = Vec::new();
    let mut bots = Vec::new();
    for site in Site::ALL {
        let sim = site_simulator(site, SimulatorConfig::default()).await;
        add_account(&app, &sim, &format!("{site}-1")).await;
        bots.push(start_bot(&app, &sim, &format!("{site}-bot")));
        sims.push(sim);
    }

    // No targets: every assistant the platform serves.
    let prompt = "Which project management tool suits a remote team of ten?";
    let events = within("answers from all four", 5, ask_as(&app, OPERATOR, ask_text(prompt, &[]))).await;
    for bot in bots {
        stop_bot(bot).await;
    }

    let answers: Vec<&aap_proto::v1::Answer> = events
        .iter()
        .filter_map(|e| match e {
            Event::Answer(a) => Some(a),
            _ => None,
        })
        .collect();
    let mut assistants: Vec<&str> = answers.iter().map(|a| a.assistant.as_str()).collect();
    assistants.sort();
    assert_eq!(assistants, ["chatgpt", "claude", "google-ai-overview", "perplexity"], "{events:?}");
    assert!(matches!(events.last(), Some(Event::Completed(c)) if c.answered == 4 && c.failed == 0));
    let expected = aap_simulator::answer_for(prompt, true);
    let words = |t: &str| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    for answer in &answers {
        assert_eq!(
            words(&answer.response_text),
            words(&expected.plain_text()),
            "{}: the whole answer",
            answer.assistant
        );
        assert!(!answer.citations.is_empty(), "{}: citations", answer.assistant);
        assert!(answer.citations.iter().all(|c| !c.url.contains("utm_") && !c.url.contains("/url?")), "{answer:?}");
        let capture = answer.capture.as_ref().expect("capture");
        let manifest = aap_bot::Manifest::load(&answer.assistant, None).expect("manifest");
        assert_eq!(capture.adapter_version, manifest.version, "{}", answer.assistant);
        assert_eq!(answer.account_label, format!("{}-1", answer.assistant));
    }
    for sim in sims {
        assert_eq!(sim.stats().answers_total, 1, "{} was asked once", sim.site());
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn the_ask_stream_shows_the_answer_growing_while_the_assistant_types_and_stores_only_the_answer() {
    let app = spawn_app().await;
    // An assistant that types for seconds: the bot reports about every 500 ms.
    let sim =
        simulator(SimulatorConfig { chunk_delay_ms: 100, words_per_chunk: 2, ..SimulatorConfig::default() }).await;
    add_account(&app, &sim, "sim-1").await;
    let bot = start_bot(&app, &sim, "typing-bot");

    let prompt = "Which robot vacuum handles pet hair best?";
    let events = within("the answer", 5, ask(&app, ask_text(prompt, &["chatgpt"]))).await;
    stop_bot(bot).await;

    let answer_at = events.iter().position(|e| matches!(e, Event::Answer(_))).expect("an answer");
    let partials: Vec<(usize, &aap_proto::v1::PartialAnswer)> = events
        .iter()
        .enumerate()
        .filter_map(|(at, e)| if let Event::Partial(p) = e { Some((at, p)) } else { None })
        .collect();
    assert!(partials.len() >= 2, "the answer grew on the stream: {events:?}");
    assert!(partials.iter().all(|(at, _)| *at < answer_at), "every partial before the answer");
    let answer = first_answer(&events);
    assert!(partials.iter().all(|(_, p)| p.evaluation_id == answer.evaluation_id && p.assistant == "chatgpt"));
    let lengths: Vec<usize> = partials.iter().map(|(_, p)| p.text.chars().count()).collect();
    assert!(lengths.windows(2).all(|w| w[0] <= w[1]), "the text so far only grows: {lengths:?}");
    // Each partial starts as the answer does (the page's text so far, before tidying).
    let words = |t: &str| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let first_word = words(&answer.response_text).first().cloned().expect("answer text");
    assert!(partials.iter().all(|(_, p)| p.text.starts_with(&first_word)), "{first_word}: {partials:?}");
    assert!(matches!(events.last(), Some(Event::Completed(c)) if c.answered == 1));
    // Only the final answer is stored.
    assert_eq!(app.count("answers").await, 1);
    let (stored,): (String,) =
        sqlx::query_as("SELECT response_text FROM answers").fetch_one(&app.pool).await.expect("row");
    assert_eq!(stored, answer.response_text);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_prompt_longer_than_googles_search_box_fails_there_at_once_and_is_answered_elsewhere() {
    let app = spawn_app().await;
    let chatgpt = site_simulator(Site::ChatGpt, SimulatorConfig::default()).await;
    let google = site_simulator(Site::GoogleAiOverview, SimulatorConfig::default()).await;
    add_account(&app, &chatgpt, "chatgpt-1").await;
    add_account(&app, &google, "google-1").await;
    let bots = [start_bot(&app, &chatgpt, "chatgpt-bot"), start_bot(&app, &google, "google-bot")];

    let prompt = format!(
        "Which standing desk suits a small flat? {}",
        "It should be sturdy, quiet, easy to assemble and fit under a sloped ceiling. ".repeat(28)
    );
    let length = prompt.trim().chars().count();
    assert!(length > 2048, "{length} characters: more than Google's box takes");
    let request = ask_text(&prompt, &["chatgpt", "google-ai-overview"]);
    let events = within("an answer and a refusal", 3, ask_as(&app, OPERATOR, request)).await;
    for bot in bots {
        stop_bot(bot).await;
    }

    assert!(matches!(events.last(), Some(Event::Completed(c)) if c.answered == 1 && c.failed == 1), "{events:?}");
    assert_eq!(first_answer(&events).assistant, "chatgpt");
    let failed = first_failed(&events);
    assert_eq!(failed.assistant, "google-ai-overview");
    assert_eq!(
        failed.reason,
        format!(
            "prompt-refused: the assistant does not take the prompt: the prompt has {length} characters; the search box takes at most 2048"
        ),
        "the class first; no attempts, no evidence: nothing was opened"
    );
    assert!(!failed.will_retry);
    assert_eq!(google.stats().answers_total, 0, "Google never searched it");
    chatgpt.shutdown().await;
    google.shutdown().await;
}

/// An answer Claude stopped at its length limit (the look-alike's `[[cut-short]]`: two thirds
/// of the answer, the stream's stop reason `max_tokens`, the page's "This response paused ..."
/// and Continue button): the bot hands in what the page showed, marked, and the mark survives
/// the whole path: Submit, the results stream, the ingest, PostgreSQL, the Ask stream, and the
/// exact-hit cache serving it again.
#[tokio::test]
async fn an_answer_the_assistant_cut_short_lands_marked_and_is_served_so_again() {
    let app = spawn_app().await;
    let claude = site_simulator(Site::Claude, SimulatorConfig::default()).await;
    add_account(&app, &claude, "claude-1").await;
    let bot = start_bot(&app, &claude, "claude-bot");

    let prompt = "List every laptop worth buying this year [[cut-short]]";
    let events = within("an answer", 3, ask(&app, ask_text(prompt, &["claude"]))).await;
    stop_bot(bot).await;

    let answer = first_answer(&events);
    let capture = answer.capture.clone().expect("capture");
    assert!(capture.cut_short, "marked cut short: {capture:?}");
    assert!((capture.confidence - 0.7).abs() < 1e-6, "0.3 lower for the cut: {}", capture.confidence);
    let flat = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    let whole = flat(&aap_simulator::answer_for(prompt, true).plain_text());
    let text = flat(&answer.response_text);
    assert!(whole.starts_with(&text) && text.len() < whole.len(), "the start of the answer:\n{text}\n---\n{whole}");
    assert!(!answer.response_text.contains("max length"), "the notice is no part of the answer");

    let again = ask(&app, ask_text(prompt, &["claude"])).await;
    let cached = cached_answer(&again);
    assert!(cached.capture.expect("capture").cut_short, "the cache serves the mark too");
    assert_eq!(claude.stats().answers_total, 1, "asked once");
    claude.shutdown().await;
}

/// A document Claude writes beside its answer (a file it creates, edits and presents, the message
/// holding only its card), and a canvas ChatGPT writes and updates, are stored as part of the
/// answer, after its text, as last edited.
#[tokio::test]
async fn a_document_written_beside_the_answer_is_stored_with_the_answer() {
    let app = spawn_app().await;
    for (site, target, prompt) in [
        (Site::Claude, "claude", "Write a buyer's guide to e-bikes [[document]]"),
        (Site::ChatGpt, "chatgpt", "Write a buyer's guide to cargo bikes [[document]]"),
    ] {
        let sim = site_simulator(site, SimulatorConfig::default()).await;
        add_account(&app, &sim, &format!("{target}-1")).await;
        let bot = start_bot(&app, &sim, &format!("{target}-bot"));
        let events = within("an answer", 3, ask(&app, ask_text(prompt, &[target]))).await;
        stop_bot(bot).await;

        let answer = first_answer(&events);
        let (old, new) = aap_simulator::DOCUMENT_EDIT;
        let document = aap_simulator::document_for(prompt).1.replace(old, new);
        let flat = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
        let own = flat(&aap_simulator::answer_for(prompt, true).plain_text());
        let text = flat(&answer.response_text);
        let read = flat(&aap_bot::markdown::markdown_to_text(&document));
        assert_eq!(text, format!("{own} {read}"), "{target}: the answer's text, then the document's");
        assert!(answer.response_markdown.ends_with(document.trim()), "{target}: {}", answer.response_markdown);
        let capture = answer.capture.expect("capture");
        assert!(capture.missing_roles.is_empty() && (capture.confidence - 1.0).abs() < 1e-6, "{target}: {capture:?}");
        sim.shutdown().await;
    }
}

/// An account at its hourly budget is not lent: the bot that took the next task holds it (its
/// claim heartbeated) and asks for a lease again, rather than handing it back to burn an attempt
/// at every bot in turn; once the budget frees up (here: the hour moved on), the task is answered
/// on its first attempt, and the customer's stream saw no failure but was told what the task
/// waited for.
#[tokio::test]
async fn a_task_waits_for_an_account_at_its_hourly_budget_and_is_answered_on_its_first_attempt() {
    let budget = [("chatgpt".to_owned(), 1)].into();
    let app = spawn_app_with(Options { hourly_prompts: budget, ..Options::default() }).await;
    let chatgpt = simulator(SimulatorConfig::default()).await;
    add_account(&app, &chatgpt, "chatgpt-1").await;
    let bot = start_bot(&app, &chatgpt, "budgeted-bot");
    first_answer(
        &within("the first answer", 3, ask(&app, ask_text("Which kettles boil fastest?", &["chatgpt"]))).await,
    );

    let stream = app.answers().ask(ask_text("Which toasters brown evenly?", &["chatgpt"])).await.expect("ask");
    let waiting = tokio::spawn(collect(stream.into_inner().map(|r| r.map(|r| r.event.unwrap_or_default()))));
    // The bot took the task and is refused leases (the account is at its budget), twice at least.
    let refused = || {
        let scrape = aap_telemetry::exposition::Scrape::parse(&aap_telemetry::metrics::encode()).expect("a scrape");
        scrape.value("aap_bot_session_leases_total", &[("assistant", "chatgpt"), ("outcome", "refused")]).unwrap_or(0.0)
    };
    within("two refused leases", 1, async {
        while refused() < 2.0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let (status, attempts): (String, i32) =
        sqlx::query_as("SELECT status, attempts FROM evaluations ORDER BY id DESC LIMIT 1")
            .fetch_one(&app.pool)
            .await
            .expect("the second evaluation");
    assert_eq!((status.as_str(), attempts), ("claimed", 1), "held by the bot, one attempt");

    // The hour moves on: the account's budget is back, and the held task is answered.
    sqlx::query("UPDATE session_leases SET leased_at = leased_at - interval '61 minutes'")
        .execute(&app.pool)
        .await
        .expect("an hour on");
    let events = within("the second answer", 3, waiting).await.expect("stream");
    stop_bot(bot).await;
    first_answer(&events);
    assert!(!events.iter().any(|e| matches!(e, Event::Failed(_))), "no attempt burnt: {events:?}");
    // The customer's stream said why the task waited, and until when (the platform's words).
    let told = events
        .iter()
        .find_map(|e| match e {
            Event::Progress(p) if !p.waiting.is_empty() => Some(p),
            _ => None,
        })
        .expect("a progress event saying what the task waits for");
    assert!(told.waiting.contains("hourly budget") && told.waiting.contains("frees up"), "{told:?}");
    let until = told.waiting_until.as_ref().expect("until when").seconds;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() as i64;
    assert!(until > now + 30 * 60 && until <= now + 3600, "the next account frees up within the hour: {told:?}");
    let (attempts,): (i32,) = sqlx::query_as("SELECT attempts FROM evaluations ORDER BY id DESC LIMIT 1")
        .fetch_one(&app.pool)
        .await
        .expect("the second evaluation");
    assert_eq!(attempts, 1, "answered on its first attempt");
    chatgpt.shutdown().await;
}

/// The operator's watch of `assistant`'s cooling accounts.
async fn watch_cooling(app: &TestApp, assistant: &str) -> tonic::Streaming<aap_proto::v1::WatchAccountsResponse> {
    let watch = aap_proto::v1::WatchAccountsRequest {
        assistant: assistant.into(),
        statuses: vec![aap_proto::v1::AccountStatus::Cooling as i32],
        ..Default::default()
    };
    app.sessions(OPERATOR).watch_accounts(watch).await.expect("watch").into_inner()
}

/// The first account `cooling` shows (within 3 minutes).
async fn first_cooling(cooling: &mut tonic::Streaming<aap_proto::v1::WatchAccountsResponse>) -> aap_proto::v1::Account {
    within("the account cools down", 3, async {
        loop {
            let update = cooling.next().await.expect("the watch goes on").expect("an update");
            if let Some(account) = update.accounts.into_iter().next() {
                break account;
            }
        }
    })
    .await
}

/// The answer an Ask's events served from the cache.
fn cached_answer(events: &[Event]) -> aap_proto::v1::Answer {
    events
        .iter()
        .find_map(|e| match e {
            Event::Cached(a) => Some(a.clone()),
            _ => None,
        })
        .expect("a cached answer")
}

/// chatgpt.com answering with another model once the plan's limit for its own is used up: the
/// answer lands marked `model_fallback` (served so again from the cache, stale, and asked
/// again), and the account rests until the time the site's stream gives for the plan's model
/// (5 hours on, on a round ten minutes), so the next tasks go to accounts on the plan's model.
#[tokio::test]
async fn an_answer_from_another_model_lands_marked_and_the_account_rests_until_the_plans_model_is_back() {
    let app = spawn_app().await;
    let chatgpt = site_simulator(Site::ChatGpt, SimulatorConfig::default()).await;
    add_account(&app, &chatgpt, "chatgpt-1").await;
    let mut cooling = watch_cooling(&app, "chatgpt").await;
    let asked = chrono::Utc::now();
    let bot = start_bot(&app, &chatgpt, "chatgpt-bot");
    let prompt = "Which e-bikes are worth buying this year? [[model-fallback]]";
    let events = within("an answer", 3, ask(&app, ask_text(prompt, &["chatgpt"]))).await;
    let account = first_cooling(&mut cooling).await;
    stop_bot(bot).await;

    let answer = first_answer(&events);
    let capture = answer.capture.clone().expect("capture");
    assert!(capture.model_fallback, "marked: {capture:?}");
    assert_eq!(capture.model, "gpt-5-mini", "the model that answered");
    assert!((capture.confidence - 1.0).abs() < 1e-6, "the text is whole: {}", capture.confidence);
    let flat = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(flat(&answer.response_text), flat(&aap_simulator::answer_for(prompt, true).plain_text()));

    let until = account.cooldown_until.expect("cooling until");
    let until = chrono::DateTime::from_timestamp(until.seconds, 0).expect("a time");
    let ahead = until - asked;
    assert!(
        ahead <= chrono::Duration::minutes(311) && ahead >= chrono::Duration::minutes(299),
        "cooling until {until}, {ahead} after the Ask: not the time of the plan's model"
    );
    assert_eq!(until.timestamp() % 600, 0, "{until}");
    assert!(account.cooldown_reason.contains("another model answered"), "{}", account.cooldown_reason);
    let scrape = aap_telemetry::exposition::Scrape::parse(&aap_telemetry::metrics::encode()).expect("a scrape");
    let read = [("assistant", "chatgpt"), ("source", "stream")];
    assert!(scrape.value("aap_bot_limit_lifts_read_total", &read).unwrap_or(0.0) >= 1.0);
    let marked = [("assistant", "chatgpt")];
    assert!(scrape.value("aap_bot_answers_model_fallback_total", &marked).unwrap_or(0.0) >= 1.0);

    // Asked again: served at once, marked and stale, and asked again (the plan's answer is
    // wanted); the refresh waits, as the only account rests until the plan's model is back.
    let mut again = app.answers().ask(ask_text(prompt, &["chatgpt"])).await.expect("ask").into_inner();
    let mut seen = Vec::new();
    while !seen.iter().any(|e| matches!(e, Event::Scheduled(_))) {
        let next = within("the refresh scheduled", 1, again.message()).await.expect("an event").expect("no end yet");
        seen.push(next.event.and_then(|e| e.event).expect("an event"));
    }
    let cached = cached_answer(&seen);
    assert!(cached.stale, "another model's answer is not the plan's: {cached:?}");
    assert!(cached.capture.expect("capture").model_fallback, "the cache serves the mark too");
    assert_eq!(chatgpt.stats().answers_total, 1, "asked once: the account rests");
    chatgpt.shutdown().await;
}

/// A rate-limited account rests until the hour the site's banner names (claude.ai's "You are out
/// of free messages until 2:10 PM"), not for the platform's 30 minutes: the bot reads the time in
/// the page's own zone and hands it back with the lease.
#[tokio::test]
async fn a_rate_limited_account_rests_until_the_hour_the_site_names() {
    let app = spawn_app().await;
    let claude = site_simulator(Site::Claude, SimulatorConfig::default()).await;
    add_account(&app, &claude, "claude-1").await;
    let mut cooling = watch_cooling(&app, "claude").await;
    let asked = chrono::Utc::now();
    let bot = start_bot(&app, &claude, "claude-bot");
    let _events = app.answers().ask(ask_text("Weather tomorrow? [[rate-limit]]", &["claude"])).await.expect("ask");
    let account = first_cooling(&mut cooling).await;
    stop_bot(bot).await;

    let until = account.cooldown_until.expect("cooling until");
    let until = chrono::DateTime::from_timestamp(until.seconds, 0).expect("a time");
    // The look-alike's limit resets 5 hours on, on a round ten minutes, and its banner says when.
    let ahead = until - asked;
    assert!(
        ahead <= chrono::Duration::minutes(301) && ahead > chrono::Duration::minutes(289),
        "cooling until {until}, {ahead} after the Ask: not the site's hour"
    );
    assert_eq!(until.timestamp() % 600, 0, "{until}");
    assert!(account.cooldown_reason.contains("out of free messages until"), "{}", account.cooldown_reason);
    assert_eq!(account.rate_limits, 1);
    // Read from the site's 429, as the bot's metric says (the bot runs in this process).
    let scrape = aap_telemetry::exposition::Scrape::parse(&aap_telemetry::metrics::encode()).expect("a scrape");
    let read = [("assistant", "claude"), ("source", "refusal")];
    assert!(scrape.value("aap_bot_limit_lifts_read_total", &read).unwrap_or(0.0) >= 1.0);
    claude.shutdown().await;
}
