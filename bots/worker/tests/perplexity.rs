//! The Perplexity adapter against the simulator in a real Chromium.

mod common;

use aap_bot::{Adapter, AnyAdapter, Captured};
use aap_simulator::{Simulator, SimulatorConfig, Site, answer_for, perplexity_listed_sources};
use anyhow::Result;
use common::{
    MULTI_LINE_PROMPT, answer_without_citations, assert_failed_only, assert_first_token_before_end,
    assert_login_walls_only, assert_served, assistant_error, challenge, challenge_everywhere, collapse,
    empty_answer_is_empty, log_in, login_walls_yield_logged_out, long_pause, multi_line_prompt_is_one_prompt,
    primaries_miss_the_composer, rate_limited, short_pause, stall_times_out,
};

async fn with_browser(
    config: SimulatorConfig,
    body: impl AsyncFnOnce(&aap_bot::Browser, &Simulator, &AnyAdapter) -> Result<()>,
) -> Result<()> {
    common::with_browser(Site::Perplexity, config, body).await
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
    with_browser(long_pause(), async |browser, sim, adapter| {
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
        assert_first_token_before_end(&captured)?;

        assert_served(sim, prompt, &token, 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn no_citations_answers_have_no_sources_and_multi_line_prompts_are_one_prompt() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        log_in(browser, sim, "operator-2").await?;
        let captured = answer_without_citations(browser, adapter).await?;
        // Nothing on the page says whether a search ran: no claim either way.
        assert_eq!(captured.web_search, None);
        assert_eq!(captured.model.as_deref(), Some("Sonar"));

        let captured = multi_line_prompt_is_one_prompt(browser, sim, adapter).await?;
        assert_full_citations(&captured, MULTI_LINE_PROMPT);
        assert_eq!(sim.stats().answers_total, 2);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn logged_out_expired_and_expiring_sessions_yield_logged_out() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        // The sign-in modal each time; for a session that expires as the prompt is sent, it comes
        // back over the thread.
        let token = login_walls_yield_logged_out(browser, sim, adapter, ["operator-3", "operator-4"]).await?;
        assert!(sim.stats().by_token[&token].expired);
        assert_login_walls_only(sim, 3);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn challenges_rate_limits_and_failures_are_classified() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        let token = log_in(browser, sim, "operator-5").await?;

        // A challenge in the middle of a session: the page reloads into it.
        let title = challenge(browser, adapter, "Any news? [[challenge]]").await?;
        assert_eq!(title, aap_simulator::CHALLENGE_TITLE);

        let text = rate_limited(browser, adapter, "Weather tomorrow? [[rate-limit]]").await?;
        assert_eq!(text, aap_simulator::PERPLEXITY_RATE_LIMIT_MESSAGE);

        let text = assistant_error(browser, adapter, "Summarise the news [[error]]").await?;
        assert_eq!(text, aap_simulator::PERPLEXITY_ERROR_MESSAGE);

        // A challenge on every page, from the first load.
        challenge_everywhere(browser, sim, adapter, "Hello?").await?;

        assert_failed_only(sim, &token, 1, 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_stalled_answer_times_out_at_the_deadline() -> Result<()> {
    let config = SimulatorConfig { stall_ms: 60_000, ..short_pause() };
    with_browser(config, async |browser, sim, _adapter| {
        log_in(browser, sim, "operator-6").await?;
        stall_times_out(browser, sim, "perplexity", 4, "Tell me a long story [[stall]]").await?;
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
        primaries_miss_the_composer(browser, sim, "perplexity", None, prompt).await?;
        assert_eq!(sim.stats().answers_total, 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn an_empty_answer_is_an_empty_answer_not_a_timeout_and_the_next_answer_completes() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, _adapter| {
        let token = log_in(browser, sim, "operator-8").await?;
        // The stop button goes and the actions show over an empty `.prose`: said once the
        // settle window has passed, long before the deadline.
        let prompt = "What are the best laptops under $1,000? [[empty]]";
        let (_dir, adapter) = empty_answer_is_empty(browser, sim, "perplexity", 30, prompt).await?;

        let prompt = "What are the best laptops under $1,000?";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_eq!(collapse(&captured.response_text), collapse(&answer_for(prompt, true).plain_text()));
        assert_full_citations(&captured, prompt);
        let stats = sim.stats();
        assert_eq!((stats.by_token[&token].answers, stats.by_token[&token].empty_answers), (2, 1));
        Ok(())
    })
    .await
}
