//! The ChatGPT adapter against the simulator in a real Chromium.

use std::panic::AssertUnwindSafe;

use aap_bot::{Adapter, AskError, Browser, BrowserOptions, ChatGpt, Manifest};
use aap_simulator::{Simulator, SimulatorConfig, answer_for};
use anyhow::{Context, Result};
use futures::FutureExt;

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Starts a simulator and a browser, runs `body`, and always quits the browser and stops the
/// simulator, even when `body` panics.
async fn with_browser(
    config: SimulatorConfig,
    body: impl AsyncFnOnce(&Browser, &Simulator, &ChatGpt) -> Result<()>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, aap_simulator::Site::ChatGpt, config).await?;
    let adapter = ChatGpt::new(Manifest::load("chatgpt", None)?, Some(&sim.base_url));
    let browser = Browser::launch(&BrowserOptions::default()).await.context("launch browser")?;
    let outcome = AssertUnwindSafe(body(&browser, &sim, &adapter)).catch_unwind().await;
    browser.close().await;
    sim.shutdown().await;
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn log_in(browser: &Browser, sim: &Simulator, label: &str) -> Result<String> {
    let session = sim.create_session(label).await;
    let loaded = browser.load_session(&session.storage_state_json, &sim.base_url).await?;
    assert_eq!(loaded.cookies, 1, "the session cookie is set");
    assert_eq!(loaded.local_storage, 1, "the localStorage entry is set");
    Ok(session.token)
}

#[tokio::test]
async fn returns_the_full_answer_after_the_mid_stream_pause_with_clean_citations() -> Result<()> {
    // The default pause (1.2 s) is longer than a "text unchanged for 1 s" check would wait.
    let config = SimulatorConfig::default();
    assert!(config.pause_ms > 1000);
    with_browser(config, async |browser, sim, adapter| {
        let token = log_in(browser, sim, "operator-1").await?;
        let prompt = "What are the best laptops under $1,000?";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        let expected = answer_for(prompt, true);

        assert_eq!(collapse(&captured.response_text), collapse(&expected.plain_text()));
        assert!(captured.response_text.contains('\n'), "paragraphs keep their line breaks");
        assert!(!expected.citations.is_empty());
        assert_eq!(captured.citations.len(), expected.citations.len());
        for (index, (got, want)) in captured.citations.iter().zip(&expected.citations).enumerate() {
            assert_eq!(got.url, want.url, "utm parameters removed");
            assert!(!got.url.contains("utm_"));
            assert_eq!(got.domain, want.domain);
            assert_eq!(got.title, want.title, "title from the sources list");
            assert_eq!(got.position as usize, index + 1);
        }
        for citation in &expected.citations {
            assert!(captured.response_markdown.contains(&format!("({})", citation.url)), "markdown links the source");
        }
        assert!(!captured.response_markdown.contains("utm_source"));
        assert!(captured.html.contains("webpage-citation-pill"));
        assert_eq!(captured.model.as_deref(), Some("gpt-5"));
        let ttft = captured.ttft.context("time to first token")?;
        assert!(ttft < captured.total);

        let stats = sim.stats();
        assert_eq!(stats.answers_for_prompt(prompt), 1);
        assert_eq!(stats.answers_for_token(&token), 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn no_citations_prompt_gives_an_answer_without_citations_and_multi_line_prompts_work() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        log_in(browser, sim, "operator-2").await?;
        let prompt = "Explain photosynthesis simply [[no-citations]]";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert!(captured.citations.is_empty());
        assert_eq!(collapse(&captured.response_text), collapse(&answer_for(prompt, false).plain_text()));

        // A new line in the prompt is typed as Shift+Enter: one prompt, not two.
        let prompt = "Compare two phones:\nPixel and iPhone";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_eq!(collapse(&captured.response_text), collapse(&answer_for(prompt, true).plain_text()));
        let stats = sim.stats();
        assert_eq!(stats.answers_for_prompt("Compare two phones: Pixel and iPhone"), 1);
        assert_eq!(stats.answers_total, 2);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_logged_out_session_yields_logged_out() -> Result<()> {
    with_browser(SimulatorConfig::default(), async |browser, sim, adapter| {
        // No session at all.
        let error = adapter.ask(browser.driver(), "Hello?").await.err().context("logged out must fail")?;
        assert!(matches!(error, AskError::LoggedOut), "{error:?}");

        // A session revoked by the site.
        let token = log_in(browser, sim, "operator-3").await?;
        sim.expire_session(&token);
        let error = adapter.ask(browser.driver(), "Hello again?").await.err().context("expired must fail")?;
        assert!(matches!(error, AskError::LoggedOut), "{error:?}");
        assert_eq!(sim.stats().answers_total, 0);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_session_expiring_at_the_prompt_yields_logged_out() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        log_in(browser, sim, "operator-4").await?;
        let error =
            adapter.ask(browser.driver(), "Still there? [[expire-session]]").await.err().context("must fail")?;
        assert!(matches!(error, AskError::LoggedOut), "{error:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn rate_limit_yields_rate_limited_and_errors_are_reported() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        let token = log_in(browser, sim, "operator-5").await?;
        let error =
            adapter.ask(browser.driver(), "Weather tomorrow? [[rate-limit]]").await.err().context("must fail")?;
        match error {
            AskError::RateLimited(text) => assert!(text.contains("limit of messages"), "{text}"),
            other => panic!("expected RateLimited, got {other:?}"),
        }

        let error = adapter.ask(browser.driver(), "Summarise the news [[error]]").await.err().context("must fail")?;
        match error {
            AskError::Assistant(text) => assert!(text.contains("Something went wrong"), "{text}"),
            other => panic!("expected Assistant, got {other:?}"),
        }
        let stats = sim.stats();
        assert_eq!(stats.by_token[&token].rate_limited, 1);
        assert_eq!(stats.by_token[&token].errors, 1);
        assert_eq!(stats.answers_total, 0);
        Ok(())
    })
    .await
}
