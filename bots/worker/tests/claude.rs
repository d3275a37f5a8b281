//! The Claude adapter against the claude.ai look-alike in a real Chromium.

mod common;

use std::time::{Duration, Instant};

use aap_bot::{Adapter, AnyAdapter, AskError, Captured, Manifest};
use aap_simulator::{Citation, Simulator, SimulatorConfig, Site, answer_for, strip_markers};
use anyhow::{Context, Result};
use common::{collapse, log_in};

/// What the thinking of a `[[thinking]]` prompt starts with on the page; never in the answer.
const THINKING_OPENING: &str = "The user asks";

async fn with_browser(
    config: SimulatorConfig,
    body: impl AsyncFnOnce(&aap_bot::Browser, &Simulator, &AnyAdapter) -> Result<()>,
) -> Result<()> {
    common::with_browser(Site::Claude, config, body).await
}

/// The text of the last thinking block on the page (`css` selects it), to show it was there.
async fn thinking_on_page(browser: &aap_bot::Browser, css: &str) -> Result<String> {
    let blocks = browser.driver().find_all(thirtyfour::By::Css(css)).await?;
    let last = blocks.last().context("a thinking block on the page")?;
    // textContent: the block is collapsed, so its body has no visible text.
    Ok(last.prop("textContent").await?.unwrap_or_default())
}

/// The search results the look-alike lists without citing them: the sources of a related
/// question ("<prompt> related reading"), minus the cited sites, at most three.
fn listed_only(prompt: &str) -> Vec<Citation> {
    let cited = answer_for(prompt, true).citations;
    answer_for(&format!("{} related reading", strip_markers(prompt)), true)
        .citations
        .into_iter()
        .filter(|source| cited.iter().all(|c| c.url != source.url && c.domain != source.domain))
        .take(3)
        .collect()
}

/// The answer is `answer_for(prompt)`, cited sources inline first, then the listed-only ones.
fn assert_full_answer(captured: &Captured, prompt: &str) {
    let expected = answer_for(prompt, true);
    let listed = listed_only(prompt);
    assert_eq!(collapse(&captured.response_text), collapse(&expected.plain_text()));
    assert!(captured.response_text.contains('\n'), "paragraphs keep their line breaks");
    assert!(!expected.citations.is_empty() && !listed.is_empty());

    let want: Vec<(&str, &str, &str, bool)> = expected
        .citations
        .iter()
        .map(|c| (c, true))
        .chain(listed.iter().map(|c| (c, false)))
        .map(|(c, inline)| (c.url.as_str(), c.title.as_str(), c.domain.as_str(), inline))
        .collect();
    let got: Vec<(&str, &str, &str, bool)> =
        captured.citations.iter().map(|c| (c.url.as_str(), c.title.as_str(), c.domain.as_str(), c.inline)).collect();
    assert_eq!(got, want, "inline citations in reading order, then sources only listed, titles from the list");
    for (index, citation) in captured.citations.iter().enumerate() {
        assert_eq!(citation.position as usize, index + 1);
        assert!(!citation.url.contains("utm_"));
    }
    for citation in &expected.citations {
        assert!(captured.response_markdown.contains(&format!("({})", citation.url)), "markdown links the source");
    }
    assert_eq!(captured.web_search, Some(true), "the page shows a search block");
    assert_eq!(captured.model.as_deref(), Some("Claude Sonnet 4.5"));
    assert!(captured.ttft.is_some_and(|ttft| ttft < captured.total));
}

#[tokio::test]
async fn returns_the_full_answer_after_the_pause_with_inline_then_listed_citations_and_no_thinking() -> Result<()> {
    // The default pause (1.2 s) is longer than a "text unchanged for 1 s" check would wait.
    let config = SimulatorConfig::default();
    assert!(config.pause_ms > 1000);
    with_browser(config, async |browser, sim, adapter| {
        let token = log_in(browser, sim, "operator-1").await?;
        let prompt = "What are the best laptops under $1,000?";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_full_answer(&captured, prompt);
        assert!(captured.html.contains("standard-markdown"));
        assert!(captured.html.contains("group/tag"), "the html keeps the citation tags");
        let url = browser.driver().current_url().await?;
        assert!(url.path().starts_with("/chat/"), "the conversation moved to /chat/<uuid>: {url}");

        // Extended thinking streams first (with its own pause) and stays out of the answer.
        let prompt = "How do heat pumps work in cold climates? [[thinking]]";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_full_answer(&captured, prompt);
        assert!(thinking_on_page(browser, "div.thinking-block").await?.contains(THINKING_OPENING));
        assert!(!captured.response_text.contains(THINKING_OPENING));
        assert!(!captured.response_markdown.contains(THINKING_OPENING));
        assert!(!captured.html.contains(THINKING_OPENING));
        assert!(!captured.html.contains("Thought process"));

        let stats = sim.stats();
        assert_eq!(stats.answers_for_prompt("What are the best laptops under $1,000?"), 1);
        assert_eq!(stats.answers_for_token(&token), 2);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn answers_without_a_web_search_and_multi_line_prompts_are_one_prompt() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        log_in(browser, sim, "operator-2").await?;
        let prompt = "Explain photosynthesis simply [[no-citations]]";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert!(captured.citations.is_empty());
        assert_eq!(captured.web_search, Some(false), "no search block on the page");
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
async fn the_login_page_yields_logged_out() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        // No session at all: claude.ai sends the browser to /login.
        let error = adapter.ask(browser.driver(), "Hello?").await.err().context("logged out must fail")?;
        assert!(matches!(error, AskError::LoggedOut), "{error:?}");

        // A session revoked by the site.
        let token = log_in(browser, sim, "operator-3").await?;
        sim.expire_session(&token);
        let error = adapter.ask(browser.driver(), "Hello again?").await.err().context("expired must fail")?;
        assert!(matches!(error, AskError::LoggedOut), "{error:?}");

        // A session that expires as the prompt is sent.
        log_in(browser, sim, "operator-4").await?;
        let error =
            adapter.ask(browser.driver(), "Still there? [[expire-session]]").await.err().context("must fail")?;
        assert!(matches!(error, AskError::LoggedOut), "{error:?}");
        let stats = sim.stats();
        assert_eq!(stats.answers_total, 0);
        assert!(stats.login_walls >= 3);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn rate_limits_failures_and_challenges_are_told_apart() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        let token = log_in(browser, sim, "operator-5").await?;
        let error =
            adapter.ask(browser.driver(), "Weather tomorrow? [[rate-limit]]").await.err().context("must fail")?;
        match error {
            AskError::RateLimited(text) => assert!(text.contains("out of free messages until"), "{text}"),
            other => panic!("expected RateLimited, got {other:?}"),
        }

        let error = adapter.ask(browser.driver(), "Summarise the news [[error]]").await.err().context("must fail")?;
        match error {
            AskError::Assistant(text) => assert!(text.contains("response was interrupted"), "{text}"),
            other => panic!("expected Assistant, got {other:?}"),
        }

        // A challenge in the middle of a session: the answer request gets Cloudflare's page.
        let error = adapter.ask(browser.driver(), "Any news? [[challenge]]").await.err().context("must fail")?;
        assert!(matches!(&error, AskError::Challenge(title) if title.contains("Just a moment")), "{error:?}");

        // A challenge in place of the whole site.
        sim.set_config(SimulatorConfig { challenge: true, ..sim.config() });
        let error = adapter.ask(browser.driver(), "Hello?").await.err().context("must fail")?;
        assert!(matches!(error, AskError::Challenge(_)), "{error:?}");

        // Over the account's quota, the same banner as a marked prompt.
        sim.set_config(SimulatorConfig { challenge: false, rate_limit_after: Some(0), ..sim.config() });
        let error = adapter.ask(browser.driver(), "Hello again?").await.err().context("must fail")?;
        assert!(matches!(error, AskError::RateLimited(_)), "{error:?}");

        let stats = sim.stats();
        assert_eq!(stats.by_token[&token].rate_limited, 2);
        assert_eq!(stats.by_token[&token].errors, 1);
        assert_eq!(stats.answers_total, 0);
        Ok(())
    })
    .await
}

/// Writes `manifest` as `claude.toml` into `dir` and loads the adapter from there.
fn adapter_from(manifest: &Manifest, dir: &std::path::Path, sim: &Simulator) -> Result<AnyAdapter> {
    std::fs::write(dir.join("claude.toml"), toml::to_string(manifest)?)?;
    Ok(AnyAdapter::load("claude", Some(dir), Some(&sim.base_url))?)
}

#[tokio::test]
async fn a_stalled_answer_times_out_at_the_deadline_and_the_next_answer_completes() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, _adapter| {
        log_in(browser, sim, "operator-6").await?;
        let dir = tempfile::tempdir()?;
        let mut manifest = Manifest::load("claude", None)?;
        manifest.timing.answer_deadline_secs = 5;
        let adapter = adapter_from(&manifest, dir.path(), sim)?;

        let error = adapter.ask(browser.driver(), "Tell me a long story [[stall]]").await.err().context("must fail")?;
        assert!(matches!(error, AskError::Timeout(deadline) if deadline == Duration::from_secs(5)), "{error:?}");

        // The stalled stream never counts as an answer, and the next prompt is answered whole.
        let prompt = "What is a heat pump?";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_eq!(collapse(&captured.response_text), collapse(&answer_for(prompt, true).plain_text()));
        assert_eq!(sim.stats().answers_total, 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_redesign_is_answered_through_fallbacks_and_primary_selectors_alone_fail_fast() -> Result<()> {
    let config = SimulatorConfig { redesign: true, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        log_in(browser, sim, "operator-7").await?;
        let prompt = "What are the best laptops under $1,000? [[thinking]]";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_full_answer(&captured, prompt);
        assert!(captured.html.contains("progressive-markdown"), "the redesign's markup was read");
        assert!(thinking_on_page(browser, "details.reasoning-panel").await?.contains(THINKING_OPENING));
        assert!(!captured.response_text.contains(THINKING_OPENING));
        assert!(!captured.html.contains(THINKING_OPENING));

        // Without fallbacks the composer is not found: said at once, not at the page deadline.
        let dir = tempfile::tempdir()?;
        let mut manifest = Manifest::load("claude", None)?;
        for selectors in manifest.selectors.values_mut() {
            selectors.truncate(1);
        }
        manifest.timing.page_load_secs = 120;
        let primary_only = adapter_from(&manifest, dir.path(), sim)?;
        let started = Instant::now();
        let error = primary_only.ask(browser.driver(), "Hello?").await.err().context("must fail")?;
        assert!(matches!(error, AskError::SelectorMissing("composer")), "{error:?}");
        assert!(started.elapsed() < manifest.timing.page_load() / 2, "failed fast: {:?}", started.elapsed());
        Ok(())
    })
    .await
}
