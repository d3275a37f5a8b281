//! The Perplexity adapter against the simulator in a real Chromium.

mod common;

use std::path::Path;

use aap_bot::{Adapter, AnyAdapter, AskError, Captured, Manifest};
use aap_simulator::{Simulator, SimulatorConfig, Site, answer_for, perplexity_listed_sources};
use anyhow::{Context, Result};
use common::{collapse, log_in};

async fn with_browser(
    config: SimulatorConfig,
    body: impl AsyncFnOnce(&aap_bot::Browser, &Simulator, &AnyAdapter) -> Result<()>,
) -> Result<()> {
    common::with_browser(Site::Perplexity, config, body).await
}

/// The built-in manifest changed by `edit`, written as `perplexity.toml` into `dir`, loaded
/// for the simulator.
fn override_adapter(dir: &Path, sim: &Simulator, edit: impl FnOnce(&mut Manifest)) -> Result<AnyAdapter> {
    let mut manifest = Manifest::load("perplexity", None)?;
    edit(&mut manifest);
    std::fs::write(dir.join("perplexity.toml"), toml::to_string(&manifest)?)?;
    Ok(AnyAdapter::load("perplexity", Some(dir), Some(&sim.base_url))?)
}

/// Inline citations are the answer's, in reading order; the sources only listed (which arrive
/// after the text) follow; every URL clean, positions 1..n.
fn assert_full_citations(captured: &Captured, prompt: &str) {
    let expected = answer_for(prompt, true);
    let listed = perplexity_listed_sources(prompt);
    assert!(!expected.citations.is_empty() && !listed.is_empty());
    assert_eq!(
        captured.citations.len(),
        expected.citations.len() + listed.len(),
        "every source, the late ones included: {:#?}",
        captured.citations
    );
    let wanted = expected.citations.iter().map(|c| (c, true)).chain(listed.iter().map(|c| (c, false)));
    for (index, (got, (want, inline))) in captured.citations.iter().zip(wanted).enumerate() {
        assert_eq!(got.url, want.url, "tracking removed, order kept");
        assert!(!got.url.contains("utm_"));
        assert_eq!(got.domain, want.domain);
        assert_eq!(got.title, want.title, "title from the sources list");
        assert_eq!(got.inline, inline, "{}", got.url);
        assert_eq!(got.position as usize, index + 1);
    }
    for citation in &expected.citations {
        assert!(captured.response_markdown.contains(&format!("({})", citation.url)), "markdown links the source");
    }
    for citation in &listed {
        assert!(!captured.response_markdown.contains(&citation.url), "listed-only sources are not in the text");
    }
    assert!(!captured.response_markdown.contains("utm_source"));
}

#[tokio::test]
async fn returns_the_full_answer_after_the_pause_with_inline_then_late_listed_sources() -> Result<()> {
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
        assert_full_citations(&captured, prompt);
        assert!(captured.html.contains("data-pplx-citation-url"), "the page's own markup is kept");
        assert_eq!(captured.model.as_deref(), Some("Sonar"));
        assert_eq!(captured.web_search, Some(true));
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
async fn no_citations_answers_have_no_sources_and_multi_line_prompts_are_one_prompt() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        log_in(browser, sim, "operator-2").await?;
        let prompt = "Explain photosynthesis simply [[no-citations]]";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert!(captured.citations.is_empty());
        assert_eq!(collapse(&captured.response_text), collapse(&answer_for(prompt, false).plain_text()));
        // Nothing on the page says whether a search ran: no claim either way.
        assert_eq!(captured.web_search, None);
        assert_eq!(captured.model.as_deref(), Some("Sonar"));

        // A new line in the prompt is typed as Shift+Enter: one prompt, not two.
        let prompt = "Compare two phones:\nPixel and iPhone";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_eq!(collapse(&captured.response_text), collapse(&answer_for(prompt, true).plain_text()));
        assert_full_citations(&captured, prompt);
        let stats = sim.stats();
        assert_eq!(stats.answers_for_prompt("Compare two phones: Pixel and iPhone"), 1);
        assert_eq!(stats.answers_total, 2);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn logged_out_expired_and_expiring_sessions_yield_logged_out() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        // No session at all: the sign-in modal.
        let error = adapter.ask(browser.driver(), "Hello?").await.err().context("logged out must fail")?;
        assert!(matches!(error, AskError::LoggedOut), "{error:?}");

        // A session revoked by the site.
        let token = log_in(browser, sim, "operator-3").await?;
        sim.expire_session(&token);
        let error = adapter.ask(browser.driver(), "Hello again?").await.err().context("expired must fail")?;
        assert!(matches!(error, AskError::LoggedOut), "{error:?}");

        // A session that expires when the prompt is sent: the modal comes back over the thread.
        let token = log_in(browser, sim, "operator-4").await?;
        let error =
            adapter.ask(browser.driver(), "Still there? [[expire-session]]").await.err().context("must fail")?;
        assert!(matches!(error, AskError::LoggedOut), "{error:?}");
        let stats = sim.stats();
        assert!(stats.by_token[&token].expired);
        assert_eq!(stats.answers_total, 0);
        assert!(stats.login_walls >= 3);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn challenges_rate_limits_and_failures_are_classified() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        let token = log_in(browser, sim, "operator-5").await?;

        // A challenge in the middle of a session: the page reloads into it.
        let error = adapter.ask(browser.driver(), "Any news? [[challenge]]").await.err().context("must fail")?;
        match error {
            AskError::Challenge(title) => assert_eq!(title, aap_simulator::CHALLENGE_TITLE),
            other => panic!("expected Challenge, got {other:?}"),
        }

        let error =
            adapter.ask(browser.driver(), "Weather tomorrow? [[rate-limit]]").await.err().context("must fail")?;
        match error {
            AskError::RateLimited(text) => assert_eq!(text, aap_simulator::PERPLEXITY_RATE_LIMIT_MESSAGE),
            other => panic!("expected RateLimited, got {other:?}"),
        }

        let error = adapter.ask(browser.driver(), "Summarise the news [[error]]").await.err().context("must fail")?;
        match error {
            AskError::Assistant(text) => assert_eq!(text, aap_simulator::PERPLEXITY_ERROR_MESSAGE),
            other => panic!("expected Assistant, got {other:?}"),
        }

        // A challenge on every page, from the first load.
        sim.set_config(SimulatorConfig { challenge: true, ..sim.config() });
        let error = adapter.ask(browser.driver(), "Hello?").await.err().context("must fail")?;
        assert!(matches!(error, AskError::Challenge(_)), "{error:?}");

        let stats = sim.stats();
        assert_eq!(stats.by_token[&token].rate_limited, 1);
        assert_eq!(stats.by_token[&token].errors, 1);
        assert_eq!(stats.answers_total, 0);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_stalled_answer_times_out_at_the_deadline() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, stall_ms: 60_000, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, _adapter| {
        log_in(browser, sim, "operator-6").await?;
        let dir = tempfile::tempdir()?;
        let adapter = override_adapter(dir.path(), sim, |manifest| manifest.timing.answer_deadline_secs = 4)?;
        let error = adapter.ask(browser.driver(), "Tell me a long story [[stall]]").await.err().context("must fail")?;
        assert!(matches!(error, AskError::Timeout(deadline) if deadline.as_secs() == 4), "{error:?}");
        assert_eq!(sim.stats().answers_total, 0);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_redesign_is_answered_through_fallbacks_and_fails_fast_without_them() -> Result<()> {
    let config = SimulatorConfig { redesign: true, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        log_in(browser, sim, "operator-7").await?;
        let prompt = "How do heat pumps work?";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_eq!(collapse(&captured.response_text), collapse(&answer_for(prompt, true).plain_text()));
        assert_full_citations(&captured, prompt);
        assert!(!captured.html.contains("data-pplx-citation-url"), "the redesign's chips are links");
        assert_eq!(captured.model.as_deref(), Some("Sonar"));
        assert_eq!(captured.web_search, Some(true));

        // The same page with a manifest that knows only the primary selectors: the composer is
        // missing on a page that has loaded, which is said at once, not after the page-load wait.
        let dir = tempfile::tempdir()?;
        let primary_only = override_adapter(dir.path(), sim, |manifest| {
            for selectors in manifest.selectors.values_mut() {
                selectors.truncate(1);
            }
        })?;
        let error = primary_only.ask(browser.driver(), prompt).await.err().context("must fail")?;
        assert!(matches!(error, AskError::SelectorMissing("composer")), "{error:?}");
        assert_eq!(sim.stats().answers_total, 1);
        Ok(())
    })
    .await
}
