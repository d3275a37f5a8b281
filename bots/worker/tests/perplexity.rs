//! The Perplexity adapter against the simulator in a real Chromium.

mod common;

use std::time::{Duration, Instant};

use aap_bot::{Adapter, AnyAdapter, Captured, FoundIn, Product};
use aap_simulator::{
    Simulator, SimulatorConfig, Site, answer_for, perplexity_listed_sources, perplexity_products,
    perplexity_search_queries,
};
use anyhow::{Context, Result, ensure};
use common::{
    MULTI_LINE_PROMPT, Scenario, answer_without_citations, assert_failed_only, assert_first_token_before_end,
    assert_login_walls_only, assert_served, assistant_error, challenge, challenge_everywhere,
    challenge_words_in_a_prompt_are_no_challenge, collapse, empty_answer_is_empty, key_characters_are_typed_as_text,
    log_in, login_walls_yield_logged_out, long_pause, long_prompt_is_answered_whole, multi_line_prompt_is_one_prompt,
    primaries_miss_the_composer, rate_limited, short_pause, stall_times_out, unicode_prompt_is_sent_exactly,
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
async fn no_citations_answers_have_no_sources_and_multi_line_and_long_prompts_are_one_prompt() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        log_in(browser, sim, "operator-2").await?;
        let captured = answer_without_citations(browser, adapter).await?;
        // Nothing on the page says whether a search ran: no claim either way.
        assert_eq!(captured.web_search, None);
        assert_eq!(captured.model.as_deref(), Some("Sonar"));

        let captured = multi_line_prompt_is_one_prompt(browser, sim, adapter).await?;
        assert_full_citations(&captured, MULTI_LINE_PROMPT);
        // Its look-alike's composer lets the long prompt overflow and scroll the Submit button
        // out of reach: sent with Enter.
        long_prompt_is_answered_whole(browser, sim, adapter).await?;
        unicode_prompt_is_sent_exactly(browser, sim, adapter).await?;
        key_characters_are_typed_as_text(browser, sim, adapter).await?;
        challenge_words_in_a_prompt_are_no_challenge(browser, sim, adapter).await?;
        assert_eq!(sim.stats().answers_total, 6);
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

/// The look-alike's 429 names no time; its words do ("try again in 24 hours").
#[tokio::test]
async fn a_limit_in_words_no_pattern_knows_is_a_rate_limit_by_its_429() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, _adapter| {
        log_in(browser, sim, "operator-429").await?;
        common::a_limit_in_unknown_words_is_told_by_its_429(browser, sim, "perplexity").await
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

/// The variant matrix's check: the full text, the exact citation list (the cited sources inline
/// in citing order, then the listed ones; every URL clean, the own-site link and the widget left
/// out; found in the page and the stream alike), the stream's searches and products, and a
/// reading that missed nothing and disagreed about nothing.
fn check_variant(variant: &'static str) -> impl AsyncFn(&Simulator, Scenario, &str, Captured) -> Result<()> {
    async move |_sim, scenario, prompt, captured| {
        let cites = scenario.cites();
        let expected = answer_for(prompt, cites);
        ensure!(
            collapse(&captured.response_text) == collapse(&expected.plain_text()),
            "text: {:?}",
            captured.response_text
        );
        let listed = if cites { perplexity_listed_sources(prompt) } else { Vec::new() };
        let want: Vec<(String, String, bool, u32, FoundIn)> = expected
            .citations
            .iter()
            .map(|c| (c, true))
            .chain(listed.iter().map(|c| (c, false)))
            .enumerate()
            .map(|(index, (c, inline))| (c.url.clone(), c.title.clone(), inline, index as u32 + 1, FoundIn::Both))
            .collect();
        let got: Vec<(String, String, bool, u32, FoundIn)> = captured
            .citations
            .iter()
            .map(|c| (c.url.clone(), c.title.clone(), c.inline, c.position, c.found_in))
            .collect();
        ensure!(got == want, "citations:\n got {got:?}\nwant {want:?}");
        ensure!(captured.search_queries == perplexity_search_queries(prompt, cites), "{:?}", captured.search_queries);
        let products: Vec<Product> = perplexity_products(prompt)
            .into_iter()
            .map(|p| Product { name: p.name, url: p.url, price: p.price, merchant: p.merchant })
            .collect();
        ensure!(captured.products == products, "products {:#?}", captured.products);
        ensure!(captured.reading.disagreement.is_none(), "{:?}", captured.reading.disagreement);
        ensure!(captured.reading.missing_roles.is_empty(), "missing {:?}", captured.reading.missing_roles);
        ensure!(!captured.reading.read_by_fallback);
        let signals = &captured.reading.finish_signals;
        ensure!(signals.iter().any(|s| s == "stream-done") && signals.len() >= 2, "signals {signals:?}");
        ensure!(captured.web_search == cites.then_some(true), "web search {:?}", captured.web_search);
        let labelled = matches!(variant, "current" | "redesign");
        ensure!(captured.model.as_deref() == labelled.then_some("Sonar"), "model {:?}", captured.model);
        ensure!(!captured.response_markdown.contains("utm_"));
        Ok(())
    }
}

#[tokio::test]
async fn variant_current_reads_every_scenario() -> Result<()> {
    common::variant_row(Site::Perplexity, "current", short_pause(), check_variant("current")).await
}

#[tokio::test]
async fn variant_redesign_reads_every_scenario() -> Result<()> {
    common::variant_row(Site::Perplexity, "redesign", short_pause(), check_variant("redesign")).await
}

/// steipete/oracle's page: no test ids, a `group/final-text` turn, a Helpful footer, the
/// sources in a context pane opened by a "N sources" button, and a Stop control (with the
/// footer) that clears 700 ms before the last words land.
#[tokio::test]
async fn variant_final_text_context_pane_reads_every_scenario() -> Result<()> {
    common::variant_row(
        Site::Perplexity,
        "final-text-context-pane",
        short_pause(),
        check_variant("final-text-context-pane"),
    )
    .await
}

/// No anchors anywhere, the Links panel named `citations`, listed sources as
/// `div[data-pplx-citation-url]`.
#[tokio::test]
async fn variant_citations_tab_span_only_reads_every_scenario() -> Result<()> {
    common::variant_row(
        Site::Perplexity,
        "citations-tab-span-only",
        short_pause(),
        check_variant("citations-tab-span-only"),
    )
    .await
}

/// The failure: the manifest before it (2026.11.1) knows no turn wrapper of the newer
/// pages. The adapter then failed with `selector-missing: no element for role turn`; now it
/// reads the whole answer without the turn (and without the sources control the old manifest
/// cannot find, the stream naming the sources), saying what it missed. The current manifest
/// misses nothing there.
#[tokio::test]
async fn the_old_manifest_misses_the_turn_of_newer_pages_and_degrades_the_new_one_reads_them() -> Result<()> {
    let config = SimulatorConfig { variant: "final-text-context-pane".into(), ..short_pause() };
    with_browser(config, async |browser, sim, adapter| {
        log_in(browser, sim, "old-manifest").await?;
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("perplexity.toml"), include_str!("fixtures/perplexity-2026.11.1.toml"))?;
        let old = AnyAdapter::load("perplexity", Some(dir.path()), Some(&sim.base_url))?;
        assert_eq!(old.manifest().version, "2026.11.1");
        for variant in ["final-text-context-pane", "citations-tab-span-only"] {
            sim.set_config(SimulatorConfig { variant: variant.into(), ..short_pause() });
            let prompt = format!("How do heat pumps work? ({variant}, old manifest)");
            let captured = old.ask(browser.driver(), &prompt).await.with_context(|| format!("{variant}: old"))?;
            assert_eq!(collapse(&captured.response_text), collapse(&answer_for(&prompt, true).plain_text()));
            assert!(captured.reading.missing_roles.contains(&"turn".to_owned()), "{variant}: {:?}", captured.reading);
            let expected = answer_for(&prompt, true).citations.len() + perplexity_listed_sources(&prompt).len();
            assert_eq!(captured.citations.len(), expected, "{variant}: the stream names what the page hid");
            assert!(captured.reading.confidence() < 1.0);

            let prompt = format!("How do heat pumps work? ({variant}, new manifest)");
            let captured = adapter.ask(browser.driver(), &prompt).await?;
            assert!(captured.reading.missing_roles.is_empty(), "{variant}: {:?}", captured.reading);
            assert_eq!(captured.reading.confidence(), 1.0);
        }
        Ok(())
    })
    .await
}

/// The bot's overhead per answer beyond the site's own time, with the look-alike answering
/// instantly (no first-token, chunk or source delays) as the fleet benchmark sets it: from the
/// end of the site's answer stream (the tee's clock) to the answer in hand, there is no fixed
/// wait left (the sources settle alone was 1.5 s). The whole ask is printed too; it also holds
/// the page load and the typing, and measured 0.69-0.76 s on an idle machine.
#[tokio::test]
async fn overhead_per_answer_stays_near_a_second() -> Result<()> {
    let instant = SimulatorConfig { first_token_delay_ms: 0, chunk_delay_ms: 0, pause_ms: 0, ..Default::default() };
    with_browser(instant, async |browser, sim, adapter| {
        log_in(browser, sim, "overhead").await?;
        let (mut whole, mut after_stream) = (Vec::new(), Vec::new());
        for round in 0..4 {
            let prompt = format!("Best instant option number {round} for a small team?");
            let started = Instant::now();
            let captured = adapter.ask(browser.driver(), &prompt).await?;
            let elapsed = started.elapsed();
            let script = "const e = window.__aapTee.read(0).pop(); return Date.now() - e.ended_ms;";
            let since_end: u64 = browser.driver().execute(script, Vec::new()).await?.convert()?;
            assert!(!captured.citations.is_empty());
            if round > 0 {
                whole.push(elapsed);
                after_stream.push(Duration::from_millis(since_end));
            }
        }
        whole.sort();
        after_stream.sort();
        let median = |samples: &[Duration]| samples[samples.len() / 2];
        eprintln!("perplexity: whole ask {whole:?}; after the stream ended {after_stream:?}");
        // Polls, the stream settle (200 ms), extraction and the sources list read; no fixed
        // wait. The bound leaves room for a loaded test host (two cores, browsers in parallel).
        assert!(median(&after_stream) < Duration::from_millis(1200), "after the stream: {after_stream:?}");
        Ok(())
    })
    .await
}
