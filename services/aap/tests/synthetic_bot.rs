//! The synthetic bot engine against the real platform: Asks answered end to end by `aap-bot`'s
//! synthetic engine, over the Claim stream and over the seed's HTTP API, with no browser and no
//! session account at all.

mod common;

use aap_bot::{BotConfig, SyntheticOptions};
use aap_proto::v1::answer_event::Event;
use common::*;
use tokio::sync::watch;

/// Runs an in-process bot until the returned sender says stop; join the handle to wait for it.
fn start_bot(config: BotConfig) -> (watch::Sender<bool>, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let (stop, mut stopped) = watch::channel(false);
    let handle = tokio::spawn(aap_bot::run(config, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    (stop, handle)
}

#[tokio::test]
async fn a_synthetic_bot_answers_an_ask_over_the_claim_stream_without_browser_or_session() {
    let app = spawn_app().await;
    let config =
        BotConfig::grpc(&app.grpc_url, BOT, "synthetic-claim", "claude", "Pro").synthetic(SyntheticOptions::default());
    let (stop, bot) = start_bot(config);

    let prompt = "Which CRM suits a five-person agency?";
    // As an operator, who sees which bot answered.
    let events = ask_as(&app, OPERATOR, ask_text(prompt, &["claude"])).await;
    let answer = first_answer(&events);
    assert_eq!(answer.assistant, "claude");
    assert_eq!(answer.response_text, format!("synthetic answer from claude to: {prompt}"));
    assert!((1..=2).contains(&answer.citations.len()), "{:?}", answer.citations);
    assert!(answer.citations.iter().all(|c| c.url.starts_with("https://example.com/synthetic/claude/")));
    assert_eq!(answer.bot_id, "synthetic-claim");
    assert_eq!(answer.account_label, "", "no session account was leased");
    let capture = answer.capture.clone().expect("capture");
    assert_eq!((capture.model.as_str(), capture.adapter_version.as_str()), ("synthetic", "synthetic"));
    assert_eq!(capture.finish_signals, ["synthetic"]);
    assert!(matches!(events.last(), Some(Event::Completed(c)) if c.answered == 1 && c.failed == 0), "{events:?}");

    stop.send(true).expect("stop bot");
    bot.await.expect("bot joins").expect("bot stops cleanly");
    assert_eq!(app.count("session_leases").await, 0, "no session lease was taken");
    assert_eq!(app.count("answers").await, 1);
}

#[tokio::test]
async fn a_synthetic_bot_on_the_seed_http_api_answers_and_its_failure_rate_fails_evaluations() {
    let app = spawn_app().await;
    let answering = BotConfig::http(&app.http_url, &app.http_url, "/nonexistent", "perplexity", "Pro")
        .with_token(BOT)
        .with_bot_id("synthetic-http")
        .synthetic(SyntheticOptions::default());
    let (stop, bot) = start_bot(BotConfig { poll_retry: std::time::Duration::from_millis(50), ..answering });

    let prompt = "Is a heat pump worth it in Oslo?";
    let events = ask(&app, ask_text(prompt, &["perplexity"])).await;
    assert_eq!(first_answer(&events).response_text, format!("synthetic answer from perplexity to: {prompt}"));
    stop.send(true).expect("stop bot");
    bot.await.expect("bot joins").expect("bot stops cleanly");

    // Every delivery fails: the evaluation fails for good at once, with the class in its reason.
    let failing = BotConfig::grpc(&app.grpc_url, BOT, "synthetic-failing", "perplexity", "Pro")
        .synthetic(SyntheticOptions { fail_rate: 1.0, ..SyntheticOptions::default() });
    let (stop, bot) = start_bot(failing);
    let events = ask(&app, ask_text("Is a heat pump worth it in Bergen?", &["perplexity"])).await;
    let failed = first_failed(&events);
    assert!(failed.reason.contains("assistant-error: synthetic failure"), "{}", failed.reason);
    assert!(!failed.will_retry, "{failed:?}");
    assert!(matches!(events.last(), Some(Event::Completed(c)) if c.answered == 0 && c.failed == 1), "{events:?}");
    stop.send(true).expect("stop bot");
    bot.await.expect("bot joins").expect("bot stops cleanly");
}

/// A bot whose token the platform refuses (unknown, or of another role) over the Claim stream
/// or the seed's HTTP API stops with the platform's reason once it has been refused for
/// `REFUSED_FOR`, so its supervisor sees it. Before, it warned and tried again forever, alive
/// to every probe and answering nothing.
#[tokio::test]
async fn a_bot_whose_token_is_refused_stops_with_the_reason_instead_of_retrying_forever() {
    let app = spawn_app().await;
    let quick = |config: BotConfig| BotConfig { poll_retry: std::time::Duration::from_millis(200), ..config };
    let bots = [
        (
            "unknown token, claim stream",
            BotConfig::grpc(&app.grpc_url, "aap_not-a-token", "refused-1", "claude", "Pro"),
            "Unauthenticated: unknown bearer token",
        ),
        (
            "customer token, claim stream",
            BotConfig::grpc(&app.grpc_url, CUSTOMER, "refused-2", "claude", "Pro"),
            "PermissionDenied: a customer token cannot call this method",
        ),
        (
            "unknown token, seed http api",
            BotConfig::http(&app.http_url, &app.http_url, "/nonexistent", "claude", "Pro")
                .with_token("aap_not-a-token"),
            "401: unknown bearer token",
        ),
    ];
    let mut running = Vec::new();
    for (what, config, reason) in bots {
        let (stop, bot) = start_bot(quick(config.synthetic(SyntheticOptions::default())));
        running.push((what, reason, stop, bot));
    }
    let limit = aap_bot::source::REFUSED_FOR * 4;
    for (what, reason, _stop, bot) in running {
        let ended = tokio::time::timeout(limit, bot).await;
        let error = match ended {
            Ok(joined) => joined.expect("bot joins").expect_err(what).to_string(),
            Err(_) => panic!("{what}: the bot still runs after {limit:?}"),
        };
        assert!(error.contains("the platform refuses this bot's token (--token, AAP_BOT_TOKEN)"), "{what}: {error}");
        assert!(error.contains(reason), "{what}: {error}");
    }
}
