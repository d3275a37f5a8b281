//! The ChatGPT adapter against the simulator in a real Chromium.

mod common;

use aap_bot::{Adapter, AskError};
use aap_simulator::{SimulatorConfig, Site, answer_for};
use anyhow::{Context, Result};
use common::{collapse, log_in};

async fn with_browser(
    config: SimulatorConfig,
    body: impl AsyncFnOnce(&aap_bot::Browser, &aap_simulator::Simulator, &aap_bot::AnyAdapter) -> Result<()>,
) -> Result<()> {
    common::with_browser(Site::ChatGpt, config, body).await
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
