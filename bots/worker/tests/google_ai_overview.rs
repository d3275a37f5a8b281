//! The Google AI Overview adapter against the simulator in a real Chromium.

mod common;

use std::path::Path;
use std::time::Duration;

use aap_bot::{Adapter, AnswerKind, AnyAdapter, AskError, Captured, FoundIn, Manifest};
use aap_simulator::{Simulator, SimulatorConfig, Site, answer_for};
use anyhow::{Context, Result};
use common::{
    MULTI_LINE_PROMPT, NO_CITATIONS_PROMPT, Scenario, answer_without_citations, ask_err, assert_first_token_before_end,
    assert_logged_out, assert_login_walls_only, assert_served, assistant_error, challenge, challenge_everywhere,
    challenge_words_in_a_prompt_are_no_challenge, collapse, empty_answer_is_empty, key_characters_are_typed_as_text,
    log_in, long_pause, long_prompt, multi_line_prompt_is_one_prompt, primaries_miss_the_composer,
    primary_selectors_only, rate_limited, selector_missing, short_pause, stall_times_out,
    unicode_prompt_is_sent_exactly, variant_row,
};

const ID: &str = "google-ai-overview";

async fn with_browser(
    config: SimulatorConfig,
    body: impl AsyncFnOnce(&aap_bot::Browser, &Simulator, &AnyAdapter) -> Result<()>,
) -> Result<()> {
    common::with_browser(Site::GoogleAiOverview, config, body).await
}

/// The built-in manifest changed by `edit`, written as an override into `dir` and loaded for
/// the simulator's origin.
fn override_adapter(dir: &Path, sim: &Simulator, edit: impl FnOnce(&mut Manifest)) -> Result<AnyAdapter> {
    common::override_adapter(dir, sim, ID, edit)
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
    with_browser(long_pause(), async |browser, sim, adapter| {
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
        assert_first_token_before_end(&captured)?;

        // A multi-line prompt is one search.
        let captured = multi_line_prompt_is_one_prompt(browser, sim, adapter).await?;
        assert_full_answer(&captured, MULTI_LINE_PROMPT, true);

        // An overview without sources says nothing about a web search.
        let captured = answer_without_citations(browser, adapter).await?;
        assert_full_answer(&captured, NO_CITATIONS_PROMPT, false);
        assert_eq!(captured.web_search, None);

        // A prompt longer than the search box takes (2,048 characters) would be cut by it: a
        // different question. Said at once, nothing searched.
        let error = ask_err(browser, adapter, &long_prompt()).await?;
        assert!(
            matches!(&error, AskError::PromptRefused(said) if said.contains("the search box takes at most 2048")),
            "{error:?}"
        );
        assert_eq!(sim.stats().answers_total, 3, "the long prompt was never searched");

        unicode_prompt_is_sent_exactly(browser, sim, adapter).await?;
        key_characters_are_typed_as_text(browser, sim, adapter).await?;
        challenge_words_in_a_prompt_are_no_challenge(browser, sim, adapter).await?;
        assert_served(sim, prompt_citing(4)?, &token, 6);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_search_without_an_overview_is_a_result_and_a_late_overview_is_waited_for() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
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
        sim.set_config(SimulatorConfig { first_token_delay_ms: 1500, ..short_pause() });
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
    with_browser(short_pause(), async |browser, sim, adapter| {
        // No Google session: "Before you continue to Google".
        assert_logged_out(browser, adapter, "Hello?").await?;

        let token = log_in(browser, sim, "operator-3").await?;
        // Google's own challenge: the search is redirected to /sorry/index.
        let text = challenge(browser, adapter, "cheap flights [[challenge]]").await?;
        assert!(text.contains("unusual traffic"), "{text}");

        // The Cloudflare-style challenge in front of the whole site.
        challenge_everywhere(browser, sim, adapter, "cheap flights").await?;
        sim.set_config(short_pause());

        // A session revoked at the search lands on the consent wall.
        assert_logged_out(browser, adapter, "still there? [[expire-session]]").await?;
        assert!(sim.stats().by_token[&token].expired);
        assert_login_walls_only(sim, 2);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn rate_limit_error_and_stall_end_in_their_classes() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        let token = log_in(browser, sim, "operator-4").await?;
        let text = rate_limited(browser, adapter, "stock prices today [[rate-limit]]").await?;
        assert!(text.contains("right now"), "{text}");

        // Generating stops a third of the way: the partial text is never an answer.
        let text = assistant_error(browser, adapter, "history of rome [[error]]").await?;
        assert!(text.contains("Something went wrong"), "{text}");

        // A quota: the second search of the session is refused.
        sim.set_config(SimulatorConfig { rate_limit_after: Some(1), ..short_pause() });
        adapter.ask(browser.driver(), "tallest building in europe").await?;
        rate_limited(browser, adapter, "longest river in asia").await?;
        sim.set_config(short_pause());

        // A stalled overview ends at the (shortened) deadline.
        let (dir, _short) = stall_times_out(browser, sim, ID, 4, "explain quantum computing [[stall]]").await?;

        // A "Show more" the manifest cannot find: the collapsed half is never returned.
        let blind = override_adapter(dir.path(), sim, |manifest| {
            manifest.selectors.insert("show_more".into(), vec!["div.no-such-control".into()]);
        })?;
        assert_eq!(selector_missing(browser, &blind, "how do tides work").await?, "show_more");

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
    let config = SimulatorConfig { redesign: true, ..short_pause() };
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
        let primaries = primaries_miss_the_composer(browser, sim, ID, Some(600), prompt);
        tokio::time::timeout(Duration::from_secs(120), primaries)
            .await
            .context("a selector miss must not wait for the page-load limit")??;
        Ok(())
    })
    .await
}

#[test]
fn primary_only_keeps_the_first_selector_of_every_role() -> Result<()> {
    let mut manifest = Manifest::load(ID, None)?;
    primary_selectors_only(&mut manifest);
    for (role, selectors) in &manifest.selectors {
        assert_eq!(selectors.len(), 1, "{role}");
    }
    assert_eq!(manifest.selectors("composer"), ["textarea#APjFqb"]);
    assert!(manifest.require(aap_bot::adapter::GoogleAiOverview::ROLES).is_ok());
    Ok(())
}

#[tokio::test]
async fn an_empty_overview_is_an_empty_answer_not_no_overview_nor_a_timeout() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, _adapter| {
        let token = log_in(browser, sim, "operator-8").await?;
        // The block opens and completes (`data-complete`, the loading ghost gone) with no text:
        // an empty answer once the settle window has passed, never "no overview" (a result that
        // would be submitted) and never a wait for the deadline.
        let prompt = "how do heat pumps work [[empty]]";
        let (_dir, adapter) = empty_answer_is_empty(browser, sim, ID, 30, prompt).await?;

        let prompt = "how do heat pumps work";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_full_answer(&captured, prompt, true);
        let stats = sim.stats();
        assert_eq!((stats.by_token[&token].answers, stats.by_token[&token].empty_answers), (2, 1));
        Ok(())
    })
    .await
}

/// What one cell of the variant matrix must return: the whole overview, and exactly the sources
/// the variant shows (inline ones in reading order, then the one only listed; `inline-chips-only`
/// has no list, so no listed-only source), each found in the page and the deferred body alike,
/// with the page's title; the finish signals the variant's page gives; no queries nor products
/// (Google shows neither with an overview).
async fn matrix_check(variant: &str, scenario: Scenario, prompt: &str, captured: Captured) -> Result<()> {
    let expected = answer_for(prompt, scenario.cites());
    assert_full_answer(&captured, prompt, scenario.cites());
    let count = expected.citations.len();
    let listed_only = count >= 2 && variant != "inline-chips-only";
    let shown = if variant == "inline-chips-only" && count >= 2 { count - 1 } else { count };
    let want: Vec<(String, String, bool, u32, FoundIn)> = expected.citations[..shown]
        .iter()
        .enumerate()
        .map(|(index, c)| {
            (c.url.clone(), c.title.clone(), !(listed_only && index + 1 == count), index as u32 + 1, FoundIn::Both)
        })
        .collect();
    let got: Vec<(String, String, bool, u32, FoundIn)> =
        captured.citations.iter().map(|c| (c.url.clone(), c.title.clone(), c.inline, c.position, c.found_in)).collect();
    assert_eq!(got, want);
    assert_eq!(captured.web_search, (count > 0).then_some(true));
    assert_eq!(captured.reading.disagreement, None);
    assert!(!captured.reading.read_by_fallback);
    assert!(captured.reading.missing_roles.is_empty(), "{:?}", captured.reading.missing_roles);
    let signals = &captured.reading.finish_signals;
    let page_marker =
        if variant.starts_with("rhs") || variant.starts_with("inline") { "action-bar" } else { "complete-marker" };
    for signal in [page_marker, "loading-gone", "stream-done"] {
        assert!(signals.iter().any(|s| s == signal), "{signal} in {signals:?}");
    }
    assert!(captured.search_queries.is_empty() && captured.products.is_empty());
    Ok(())
}

async fn matrix_row(variant: &'static str) -> Result<()> {
    variant_row(Site::GoogleAiOverview, variant, short_pause(), async |_sim, scenario, prompt, captured| {
        matrix_check(variant, scenario, prompt, captured).await
    })
    .await
}

#[tokio::test]
async fn variant_current_reads_every_scenario() -> Result<()> {
    matrix_row("current").await
}

#[tokio::test]
async fn variant_redesign_reads_every_scenario() -> Result<()> {
    matrix_row("redesign").await
}

#[tokio::test]
async fn variant_rhs_direct_links_reads_every_scenario() -> Result<()> {
    matrix_row("rhs-direct-links").await
}

#[tokio::test]
async fn variant_inline_chips_only_reads_every_scenario() -> Result<()> {
    matrix_row("inline-chips-only").await
}

#[tokio::test]
async fn the_old_manifest_takes_the_rhs_page_for_no_overview_and_a_missing_answer_selector_reads_the_block()
-> Result<()> {
    let config = SimulatorConfig { variant: "rhs-direct-links".into(), ..short_pause() };
    with_browser(config, async |browser, sim, adapter| {
        log_in(browser, sim, "operator-9").await?;
        let dir = tempfile::tempdir()?;
        // Manifest 2026.11.1's overview selectors: none matches this shell, so the overview on
        // the page reads as "no overview" (the failure).
        let old = override_adapter(dir.path(), sim, |manifest| {
            manifest.selectors.insert(
                "overview".into(),
                [
                    "#m-x-content",
                    "div[data-subtree='aio']",
                    "div[data-attrid='AIOverview']",
                    "div[aria-label='AI Overview'][role='region']",
                ]
                .map(String::from)
                .to_vec(),
            );
            manifest.options.remove("overview_heading_patterns");
        })?;
        let prompt = "how do heat pumps work";
        assert_eq!(old.ask(browser.driver(), prompt).await?.kind, AnswerKind::NoOverview);

        // The heading alone still finds the block.
        let headed = override_adapter(dir.path(), sim, |manifest| {
            manifest.selectors.insert("overview".into(), vec!["div.no-such-block".into()]);
        })?;
        let prompt = "how does a heat pump defrost";
        let captured = headed.ask(browser.driver(), prompt).await?;
        assert_full_answer(&captured, prompt, true);

        // No answer selector matches: the block's own text, less its chrome, flagged.
        let blind = override_adapter(dir.path(), sim, |manifest| {
            manifest.selectors.insert("answer".into(), vec!["div.no-such-answer".into()]);
        })?;
        let prompt = "are heat pumps loud";
        let captured = blind.ask(browser.driver(), prompt).await?;
        assert_eq!(collapse(&captured.response_text), collapse(&answer_for(prompt, true).plain_text()));
        assert!(captured.reading.read_by_fallback);
        assert!(captured.reading.confidence() < 1.0);
        assert!(!captured.response_text.contains("People also ask"), "the decoy is never read");

        // The built-in manifest reads the same page whole, and never the People-also-ask decoy.
        let captured = adapter.ask(browser.driver(), "is a heat pump worth it").await?;
        assert_full_answer(&captured, "is a heat pump worth it", true);
        assert!(!captured.response_text.contains("not the AI Overview"));
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_prompt_the_search_box_would_cut_is_refused_never_searched_as_another_question() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        log_in(browser, sim, "operator-cut").await?;
        // 2,041 characters, 2,051 as the box's maxlength counts them (an emoji twice): refused
        // before anything opens.
        let emoji = format!("Which travel camera is best {} {}?", "😀".repeat(10), "a".repeat(2001));
        assert_eq!((emoji.chars().count(), emoji.encode_utf16().count()), (2041, 2051));
        let error = ask_err(browser, adapter, &emoji).await?;
        assert!(
            matches!(&error, AskError::PromptRefused(said) if said.contains("2051 as the search box counts them")),
            "{error:?}"
        );

        // A manifest that thinks the box takes more than it does: the box keeps the prompt's
        // start, and the bot says so instead of searching a different question.
        let dir = tempfile::tempdir()?;
        let trusting = override_adapter(dir.path(), sim, |manifest| {
            manifest.options.insert("max_query_chars".to_owned(), toml::Value::Integer(4096));
        })?;
        let long = "Which travel camera is best for hiking? ".repeat(60);
        let error = ask_err(browser, &trusting, &long).await?;
        assert!(
            matches!(&error, AskError::PromptRefused(said) if said == "the composer kept 2048 of the prompt's 2399 characters"),
            "{error:?}"
        );
        assert_eq!(sim.stats().answers_total, 0, "nothing was searched");
        Ok(())
    })
    .await
}
