//! The Google AI Overview adapter against the simulator in a real Chromium.

mod common;

use std::path::Path;
use std::time::Duration;

use aap_bot::{Adapter, AnswerKind, AnyAdapter, AskError, Captured};
use aap_simulator::{Simulator, SimulatorConfig, Site, answer_for};
use anyhow::{Context, Result};
use common::{collapse, log_in};

const ID: &str = "google-ai-overview";
const BUILT_IN: &str = include_str!("../adapters/google-ai-overview.toml");

async fn with_browser(
    config: SimulatorConfig,
    body: impl AsyncFnOnce(&aap_bot::Browser, &Simulator, &AnyAdapter) -> Result<()>,
) -> Result<()> {
    common::with_browser(Site::GoogleAiOverview, config, body).await
}

/// The built-in manifest with `edit` applied, written as an override into `dir` and loaded for
/// the simulator's origin.
fn override_adapter(dir: &Path, sim: &Simulator, edit: impl Fn(&str) -> String) -> Result<AnyAdapter> {
    std::fs::write(dir.join(format!("{ID}.toml")), edit(BUILT_IN))?;
    Ok(AnyAdapter::load(ID, Some(dir), Some(&sim.base_url))?)
}

/// A manifest with only the first (primary) selector of every role, as before any redesign.
fn primary_only(manifest: &str) -> String {
    let mut out = String::new();
    let mut in_selectors = false;
    let mut in_list = false;
    let mut kept = false;
    for line in manifest.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') && !trimmed.contains('=') {
            in_selectors = trimmed == "[selectors]";
        }
        if in_list {
            if trimmed == "]" {
                in_list = false;
                out.push_str(line);
                out.push('\n');
            } else if !kept && trimmed.starts_with('"') {
                kept = true;
                out.push_str(line);
                out.push('\n');
            }
            continue;
        }
        if in_selectors && trimmed.ends_with("= [") && !trimmed.starts_with('#') {
            in_list = true;
            kept = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A prompt whose answer cites at least `count` sources (the list shows three before "Show all").
fn prompt_citing(count: usize) -> Result<&'static str> {
    [
        "What are the best laptops under $1,000?",
        "best running shoes for flat feet",
        "how does TLS work",
        "compare electric cars",
        "Which phone has the best camera in 2026?",
        "is intermittent fasting healthy",
        "how to learn rust quickly",
        "best budget headphones",
    ]
    .into_iter()
    .find(|prompt| answer_for(prompt, true).citations.len() >= count)
    .context("no candidate prompt cites enough sources")
}

/// Two `[[no-overview]]` prompts: one whose page shows no block, one whose block says there is
/// no overview for this search.
fn no_overview_prompts() -> Result<(&'static str, &'static str)> {
    const CANDIDATES: [&str; 6] = [
        "weather in paris tomorrow [[no-overview]]",
        "time in tokyo [[no-overview]]",
        "local time in lima [[no-overview]]",
        "score of the match tonight [[no-overview]]",
        "sunrise in oslo [[no-overview]]",
        "traffic on the a1 [[no-overview]]",
    ];
    let odd = |prompt: &&str| answer_for(prompt, true).citations.len() % 2 == 1;
    let silent = CANDIDATES.iter().find(|prompt| !odd(prompt)).context("no silent candidate")?;
    let said = CANDIDATES.iter().find(|prompt| odd(prompt)).context("no declining candidate")?;
    Ok((silent, said))
}

fn assert_full_answer(captured: &Captured, prompt: &str, citations: bool) {
    let expected = answer_for(prompt, citations);
    assert_eq!(captured.kind, AnswerKind::Text);
    // The whole overview: collapsed, only its first two blocks would show.
    assert_eq!(collapse(&captured.response_text), collapse(&expected.plain_text()));
    assert!(captured.response_text.contains('\n'), "blocks keep their line breaks");
    assert!(!captured.html.contains("display:none"), "nothing of the overview is left hidden");
    assert_eq!(captured.model, None, "google does not name a model");
}

#[tokio::test]
async fn returns_the_expanded_overview_after_the_pause_with_inline_then_listed_citations() -> Result<()> {
    // The default pause (1.2 s) is longer than a "text unchanged for 1 s" check would wait.
    let config = SimulatorConfig::default();
    assert!(config.pause_ms > 1000);
    with_browser(config, async |browser, sim, adapter| {
        let token = log_in(browser, sim, "operator-1").await?;
        let prompt = prompt_citing(4)?;
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_full_answer(&captured, prompt, true);

        // Chips in reading order are inline; the source no chip cites comes last, listed only.
        let expected = answer_for(prompt, true).citations;
        assert_eq!(captured.citations.len(), expected.len());
        for (index, (got, want)) in captured.citations.iter().zip(&expected).enumerate() {
            assert_eq!(got.url, want.url, "redirect unwrapped, srsltid removed");
            assert_eq!(got.domain, want.domain);
            assert_eq!(got.title, want.title, "title from the whole sources list (after show all)");
            assert_eq!(got.position as usize, index + 1);
            assert_eq!(got.inline, index + 1 < expected.len(), "{got:?}");
        }
        for citation in &expected[..expected.len() - 1] {
            assert!(captured.response_markdown.contains(&format!("({})", citation.url)), "markdown links the chip");
        }
        assert!(!captured.response_markdown.contains("/url?"), "{}", captured.response_markdown);
        assert!(!captured.response_markdown.contains("srsltid"));
        assert!(captured.response_markdown.contains("### "), "headings kept: {}", captured.response_markdown);
        assert_eq!(captured.web_search, Some(true), "an overview with sources searched the web");
        let ttft = captured.ttft.context("time to first token")?;
        assert!(ttft < captured.total);

        // A multi-line prompt is one search.
        let prompt = "Compare two phones:\nPixel and iPhone";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_full_answer(&captured, prompt, true);

        // An overview without sources says nothing about a web search.
        let prompt = "Explain photosynthesis simply [[no-citations]]";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_full_answer(&captured, prompt, false);
        assert!(captured.citations.is_empty());
        assert_eq!(captured.web_search, None);

        let stats = sim.stats();
        assert_eq!(stats.answers_for_prompt(prompt_citing(4)?), 1);
        assert_eq!(stats.answers_for_prompt("Compare two phones: Pixel and iPhone"), 1);
        assert_eq!(stats.answers_for_token(&token), 3);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_search_without_an_overview_is_a_result_and_a_late_overview_is_waited_for() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        log_in(browser, sim, "operator-2").await?;
        // Google shows no block at all for some searches and a block saying "An AI Overview is
        // not available for this search" for others (the simulator: an odd number of sources).
        let (silent, said) = no_overview_prompts()?;
        for prompt in [silent, said] {
            let captured = adapter.ask(browser.driver(), prompt).await?;
            assert_eq!(captured.kind, AnswerKind::NoOverview, "{prompt}");
            assert_eq!(captured.response_text, "");
            assert!(captured.citations.is_empty());
            assert_eq!(captured.web_search, None);
            assert_eq!(captured.ttft, None);
        }

        // The block appears 1.5 s after the results and its text 1.5 s later: still inside the
        // deferred-load window, so it is an overview, not "no overview".
        sim.set_config(SimulatorConfig { first_token_delay_ms: 1500, pause_ms: 300, ..SimulatorConfig::default() });
        let prompt = "how do heat pumps work";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_full_answer(&captured, prompt, true);
        assert!(!captured.citations.is_empty());
        assert_eq!(sim.stats().answers_total, 3);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_consent_wall_is_logged_out_and_unusual_traffic_is_a_challenge() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        // No Google session: "Before you continue to Google".
        let error = adapter.ask(browser.driver(), "Hello?").await.err().context("logged out must fail")?;
        assert!(matches!(error, AskError::LoggedOut), "{error:?}");

        let token = log_in(browser, sim, "operator-3").await?;
        // Google's own challenge: the search is redirected to /sorry/index.
        let error = adapter.ask(browser.driver(), "cheap flights [[challenge]]").await.err().context("must fail")?;
        match error {
            AskError::Challenge(text) => assert!(text.contains("unusual traffic"), "{text}"),
            other => panic!("expected Challenge, got {other:?}"),
        }

        // The Cloudflare-style challenge in front of the whole site.
        sim.set_config(SimulatorConfig { challenge: true, pause_ms: 300, ..SimulatorConfig::default() });
        let error = adapter.ask(browser.driver(), "cheap flights").await.err().context("must fail")?;
        assert!(matches!(error, AskError::Challenge(_)), "{error:?}");
        sim.set_config(SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() });

        // A session revoked at the search lands on the consent wall.
        let error =
            adapter.ask(browser.driver(), "still there? [[expire-session]]").await.err().context("must fail")?;
        assert!(matches!(error, AskError::LoggedOut), "{error:?}");
        let stats = sim.stats();
        assert!(stats.by_token[&token].expired);
        assert_eq!(stats.answers_total, 0);
        assert!(stats.login_walls >= 2);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn rate_limit_error_and_stall_end_in_their_classes() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        let token = log_in(browser, sim, "operator-4").await?;
        let error =
            adapter.ask(browser.driver(), "stock prices today [[rate-limit]]").await.err().context("must fail")?;
        match error {
            AskError::RateLimited(text) => assert!(text.contains("right now"), "{text}"),
            other => panic!("expected RateLimited, got {other:?}"),
        }

        // Generating stops a third of the way: the partial text is never an answer.
        let error = adapter.ask(browser.driver(), "history of rome [[error]]").await.err().context("must fail")?;
        match error {
            AskError::Assistant(text) => assert!(text.contains("Something went wrong"), "{text}"),
            other => panic!("expected Assistant, got {other:?}"),
        }

        // A quota: the second search of the session is refused.
        sim.set_config(SimulatorConfig { rate_limit_after: Some(1), pause_ms: 300, ..SimulatorConfig::default() });
        adapter.ask(browser.driver(), "tallest building in europe").await?;
        let error = adapter.ask(browser.driver(), "longest river in asia").await.err().context("must fail")?;
        assert!(matches!(error, AskError::RateLimited(_)), "{error:?}");
        sim.set_config(SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() });

        // A stalled overview ends at the (shortened) deadline.
        let dir = tempfile::tempdir()?;
        let short = override_adapter(dir.path(), sim, |manifest| {
            manifest.replace("answer_deadline_secs = 120", "answer_deadline_secs = 4")
        })?;
        let error =
            short.ask(browser.driver(), "explain quantum computing [[stall]]").await.err().context("must fail")?;
        assert!(matches!(error, AskError::Timeout(_)), "{error:?}");

        // A "Show more" the manifest cannot find: the collapsed half is never returned.
        let blind = override_adapter(dir.path(), sim, |manifest| {
            let mut table: toml::Table = toml::from_str(manifest).unwrap_or_default();
            if let Some(toml::Value::Table(selectors)) = table.get_mut("selectors") {
                selectors.insert("show_more".into(), toml::Value::Array(vec!["div.no-such-control".into()]));
            }
            toml::to_string(&table).unwrap_or_default()
        })?;
        let error = blind.ask(browser.driver(), "how do tides work").await.err().context("must fail")?;
        assert!(matches!(error, AskError::SelectorMissing("show_more")), "{error:?}");

        let stats = sim.stats();
        assert_eq!(stats.by_token[&token].rate_limited, 2);
        assert_eq!(stats.by_token[&token].errors, 1);
        assert_eq!(stats.by_token[&token].answers, 2, "the overview the bot could not expand was served");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_redesign_is_read_through_fallbacks_and_primary_selectors_alone_fail_fast() -> Result<()> {
    let config = SimulatorConfig { redesign: true, pause_ms: 300, ..SimulatorConfig::default() };
    with_browser(config, async |browser, sim, adapter| {
        log_in(browser, sim, "operator-5").await?;
        let prompt = prompt_citing(4)?;
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_full_answer(&captured, prompt, true);
        let expected = answer_for(prompt, true).citations;
        let urls: Vec<&str> = captured.citations.iter().map(|c| c.url.as_str()).collect();
        let want: Vec<&str> = expected.iter().map(|c| c.url.as_str()).collect();
        assert_eq!(urls, want);
        assert!(captured.citations.iter().zip(&expected).all(|(got, want)| got.title == want.title));
        assert_eq!(captured.citations.iter().filter(|c| !c.inline).count(), 1);

        let no_overview = adapter.ask(browser.driver(), "local time in tokyo [[no-overview]]").await?;
        assert_eq!(no_overview.kind, AnswerKind::NoOverview);

        // Only the pre-redesign selectors, and a page-load limit far beyond the test's patience:
        // the missing search box is reported once the page has loaded, not at the limit.
        let dir = tempfile::tempdir()?;
        let primary = override_adapter(dir.path(), sim, |manifest| {
            primary_only(manifest).replace("page_load_secs = 30", "page_load_secs = 600")
        })?;
        let error = tokio::time::timeout(Duration::from_secs(120), primary.ask(browser.driver(), prompt))
            .await
            .context("a selector miss must not wait for the page-load limit")?
            .err()
            .context("must fail")?;
        assert!(matches!(error, AskError::SelectorMissing("composer")), "{error:?}");
        Ok(())
    })
    .await
}

#[test]
fn primary_only_keeps_the_first_selector_of_every_role() -> Result<()> {
    let manifest = aap_bot::Manifest::parse(&primary_only(BUILT_IN), "test")?;
    for (role, selectors) in &manifest.selectors {
        assert_eq!(selectors.len(), 1, "{role}");
    }
    assert_eq!(manifest.selectors("composer"), ["textarea#APjFqb"]);
    assert!(manifest.require(aap_bot::adapter::GoogleAiOverview::ROLES).is_ok());
    Ok(())
}
