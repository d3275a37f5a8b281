//! The Claude adapter against the claude.ai look-alike in a real Chromium.

mod common;

use std::time::Duration;

use aap_bot::{Adapter, AnyAdapter, Captured};
use aap_simulator::{Citation, Simulator, SimulatorConfig, Site, answer_for, strip_markers};
use anyhow::{Context, Result};
use common::{
    answer_without_citations, assert_failed_only, assert_login_walls_only, assert_served, assistant_error, challenge,
    challenge_everywhere, collapse, empty_answer_is_empty, log_in, login_walls_yield_logged_out, long_pause,
    multi_line_prompt_is_one_prompt, primaries_miss_the_composer, rate_limited, short_pause, stall_times_out,
};

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
    with_browser(long_pause(), async |browser, sim, adapter| {
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

        assert_served(sim, "What are the best laptops under $1,000?", &token, 2);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn answers_without_a_web_search_and_multi_line_prompts_are_one_prompt() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        log_in(browser, sim, "operator-2").await?;
        let captured = answer_without_citations(browser, adapter).await?;
        assert_eq!(captured.web_search, Some(false), "no search block on the page");

        multi_line_prompt_is_one_prompt(browser, sim, adapter).await?;
        assert_eq!(sim.stats().answers_total, 2);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn the_login_page_yields_logged_out() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        // Each time, claude.ai sends the browser to /login.
        login_walls_yield_logged_out(browser, sim, adapter, ["operator-3", "operator-4"]).await?;
        assert_login_walls_only(sim, 3);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn rate_limits_failures_and_challenges_are_told_apart() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        let token = log_in(browser, sim, "operator-5").await?;
        let text = rate_limited(browser, adapter, "Weather tomorrow? [[rate-limit]]").await?;
        assert!(text.contains("out of free messages until"), "{text}");

        let text = assistant_error(browser, adapter, "Summarise the news [[error]]").await?;
        assert!(text.contains("response was interrupted"), "{text}");

        // A challenge in the middle of a session: the answer request gets Cloudflare's page.
        let title = challenge(browser, adapter, "Any news? [[challenge]]").await?;
        assert!(title.contains("Just a moment"), "{title}");

        // A challenge in place of the whole site.
        challenge_everywhere(browser, sim, adapter, "Hello?").await?;

        // Over the account's quota, the same banner as a marked prompt.
        sim.set_config(SimulatorConfig { challenge: false, rate_limit_after: Some(0), ..sim.config() });
        rate_limited(browser, adapter, "Hello again?").await?;

        assert_failed_only(sim, &token, 2, 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_stalled_answer_times_out_at_the_deadline_and_the_next_answer_completes() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, _adapter| {
        log_in(browser, sim, "operator-6").await?;
        let (_dir, adapter) = stall_times_out(browser, sim, "claude", 5, "Tell me a long story [[stall]]").await?;

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
        let page_load = Duration::from_secs(120);
        let elapsed = primaries_miss_the_composer(browser, sim, "claude", Some(page_load.as_secs()), "Hello?").await?;
        assert!(elapsed < page_load / 2, "failed fast: {elapsed:?}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn an_empty_answer_is_an_empty_answer_not_a_timeout_and_the_next_answer_completes() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, _adapter| {
        let token = log_in(browser, sim, "operator-8").await?;
        // `data-is-streaming` flips to "false" and the action bar shows over an empty markdown
        // block: said once the settle window has passed, long before the deadline.
        let prompt = "What are the best laptops under $1,000? [[empty]]";
        let (_dir, adapter) = empty_answer_is_empty(browser, sim, "claude", 30, prompt).await?;

        let prompt = "What are the best laptops under $1,000?";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_full_answer(&captured, prompt);
        let stats = sim.stats();
        assert_eq!((stats.by_token[&token].answers, stats.by_token[&token].empty_answers), (2, 1));
        Ok(())
    })
    .await
}
