//! The Claude adapter against the claude.ai look-alike in a real Chromium.

mod common;

use std::time::Duration;

use aap_bot::{Adapter, AnyAdapter, Captured, FoundIn};
use aap_simulator::{Citation, Simulator, SimulatorConfig, Site, answer_for, strip_markers};
use anyhow::{Context, Result};
use common::{
    Scenario, answer_without_citations, assert_failed_only, assert_login_walls_only, assert_served, assistant_error,
    challenge, challenge_everywhere, challenge_words_in_a_prompt_are_no_challenge, collapse,
    cut_short_answer_is_marked, empty_answer_is_empty, key_characters_are_typed_as_text, log_in,
    login_walls_yield_logged_out, long_pause, long_prompt_is_answered_whole, multi_line_prompt_is_one_prompt,
    primaries_miss_the_composer, prompt_refused, rate_limited, short_pause, stall_times_out,
    unicode_prompt_is_sent_exactly,
};

/// What the thinking of a `[[thinking]]` prompt starts with on the page; never in the answer.
const THINKING_OPENING: &str = "The user asks";

async fn with_browser(
    config: SimulatorConfig,
    body: impl AsyncFnOnce(&aap_bot::Browser, &Simulator, &AnyAdapter) -> Result<()>,
) -> Result<()> {
    common::with_browser(Site::Claude, config, body).await
}

/// The adapter with a manifest whose stream address matches nothing: what the page alone says
/// (its manifest written under `dir`).
fn stream_unread(dir: &std::path::Path, sim: &Simulator) -> Result<AnyAdapter> {
    common::override_adapter(dir, sim, "claude", |manifest| {
        manifest.options.insert("stream_url_parts".into(), toml::Value::from(vec!["/no-such-stream"]));
    })
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
async fn answers_without_a_web_search_and_multi_line_and_long_prompts_are_one_prompt() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        log_in(browser, sim, "operator-2").await?;
        let captured = answer_without_citations(browser, adapter).await?;
        assert_eq!(captured.web_search, Some(false), "no search block on the page");

        multi_line_prompt_is_one_prompt(browser, sim, adapter).await?;
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
async fn an_answer_cut_at_the_length_limit_is_kept_as_shown_and_marked_by_stream_or_page() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        log_in(browser, sim, "operator-9").await?;
        // The stream's stop reason `max_tokens`, and the page's notice with its Continue button.
        cut_short_answer_is_marked(browser, sim, adapter).await?;

        // The page's notice alone (the stream not read: its URL is not the manifest's) says so too.
        let dir = tempfile::tempdir()?;
        let page_only = stream_unread(dir.path(), sim)?;
        let prompt = "Name every phone worth buying [[cut-short]]";
        let captured = page_only.ask(browser.driver(), prompt).await?;
        assert!(captured.reading.cut_short, "the notice on the page: {:?}", captured.reading);
        let notice = browser.driver().find(thirtyfour::By::Css("[data-testid='max-length-notice']")).await?;
        assert!(notice.text().await?.contains("reached its max length for a message"));
        let whole = collapse(&answer_for(prompt, true).plain_text());
        assert!(whole.starts_with(&collapse(&captured.response_text)) && captured.response_text.len() < whole.len());
        // ... and without that notice (the same prompt unmarked) nothing is cut.
        let captured = page_only.ask(browser.driver(), "Name every phone worth buying").await?;
        assert!(!captured.reading.cut_short, "{:?}", captured.reading);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_prompt_claude_declines_is_refused_by_page_or_stream_and_never_answered() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        let token = log_in(browser, sim, "operator-10").await?;
        // The page takes the words back and says why, in words the manifest knows.
        let text = prompt_refused(browser, adapter, "Where can I buy it? [[refusal]]").await?;
        assert!(text.contains("appears to violate our Usage Policy"), "the page's words: {text}");

        // Words the manifest does not know (a site that rewords it): the stream's stop reason.
        let dir = tempfile::tempdir()?;
        let stream_only = common::override_adapter(dir.path(), sim, "claude", |manifest| {
            manifest.prompt_refused_patterns.retain(|pattern| !pattern.contains("usage policy"));
        })?;
        let text = prompt_refused(browser, &stream_only, "Where else can I buy it? [[refusal]]").await?;
        assert_eq!(text, "Claude declined to answer it (the stream's stop reason is refusal: its usage policy)");

        // Nothing of either was taken for an answer; the next prompt is answered whole.
        let captured = stream_only.ask(browser.driver(), "What is a heat pump?").await?;
        assert_eq!(collapse(&captured.response_text), collapse(&answer_for("What is a heat pump?", true).plain_text()));
        let stats = sim.stats();
        assert_eq!((stats.by_token[&token].errors, stats.answers_total), (2, 1));
        Ok(())
    })
    .await
}

/// A document Claude writes beside its answer (a file created, edited once and presented: the
/// message shows only its card) is read from the stream as last edited and follows the answer's
/// text and markdown; a document alone is the whole answer. With the stream not read, the card
/// notes `document_text` missing (the answer is the message's text), and a card alone is no
/// answer.
#[tokio::test]
async fn a_document_beside_the_answer_is_read_from_the_stream_and_follows_its_text() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        log_in(browser, sim, "operator-document").await?;
        let document = |prompt: &str| {
            let (old, new) = aap_simulator::DOCUMENT_EDIT;
            aap_simulator::document_for(prompt).1.replace(old, new)
        };
        let prompt = "Write a buyer's guide to e-bikes [[document]]";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        let own = collapse(&answer_for(prompt, true).plain_text());
        let with_document = format!("{own} {}", collapse(&aap_bot::markdown::markdown_to_text(&document(prompt))));
        assert_eq!(collapse(&captured.response_text), with_document);
        assert!(captured.response_text.contains("Status: checked") && !captured.response_text.contains("draft"));
        assert!(!captured.response_text.contains("Document \u{b7}"), "the card is no text: {}", captured.response_text);
        assert!(captured.response_markdown.ends_with(document(prompt).trim()), "{}", captured.response_markdown);
        assert!(captured.reading.missing_roles.is_empty(), "{:?}", captured.reading);
        let cards = browser.driver().find_all(thirtyfour::By::Css("[data-testid='document-card']")).await?;
        assert_eq!(cards.len(), 1, "the page shows the card");

        // The document alone (no text of its own) is the answer.
        let alone = "Write a buyer's guide to heat pumps [[document]] [[empty]]";
        let captured = adapter.ask(browser.driver(), alone).await?;
        assert_eq!(collapse(&captured.response_text), collapse(&aap_bot::markdown::markdown_to_text(&document(alone))));

        // The stream not read (its URL is not the manifest's): the card says a document's text is
        // missing, and a card alone is no answer.
        let dir = tempfile::tempdir()?;
        let page_only = stream_unread(dir.path(), sim)?;
        let prompt = "Write a buyer's guide to standing desks [[document]]";
        let captured = page_only.ask(browser.driver(), prompt).await?;
        assert_eq!(collapse(&captured.response_text), collapse(&answer_for(prompt, true).plain_text()));
        assert!(captured.reading.missing_roles.contains(&"document_text".to_owned()), "{:?}", captured.reading);
        let error = page_only.ask(browser.driver(), "Write a guide to desks [[document]] [[empty]]").await;
        assert!(matches!(error, Err(aap_bot::AskError::EmptyAnswer)), "{error:?}");
        Ok(())
    })
    .await
}

/// Every conversation is an incognito chat (`/new?incognito`), kept out of the account's history
/// and memory; with `--keep-history` an ordinary one.
#[tokio::test]
async fn conversations_are_incognito_unless_history_is_kept() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        log_in(browser, sim, "operator-incognito").await?;
        let prompt = "Which e-bikes are worth buying this year?";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        assert_eq!(collapse(&captured.response_text), collapse(&answer_for(prompt, true).plain_text()));
        assert_eq!(sim.stats().site_event(aap_simulator::CLAUDE_INCOGNITO_CHAT_EVENT), 1, "an incognito chat");
        assert!(captured.reading.missing_roles.is_empty(), "no sign to look for: {:?}", captured.reading);

        let mut keeping = aap_bot::AnyAdapter::load("claude", None, Some(&sim.base_url))?;
        keeping.keep_history();
        assert_eq!(keeping.manifest().chat_path(), "/new");
        let captured = keeping.ask(browser.driver(), prompt).await?;
        assert_eq!(collapse(&captured.response_text), collapse(&answer_for(prompt, true).plain_text()));
        assert_eq!(sim.stats().site_event(aap_simulator::CLAUDE_INCOGNITO_CHAT_EVENT), 1, "an ordinary chat");
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

/// Errors worded as no pattern knows are told by the site's refusal behind them: a 429 is a rate
/// limit, a 413 a prompt too long.
#[tokio::test]
async fn errors_in_words_no_pattern_knows_are_told_by_their_429_or_413() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, _adapter| {
        log_in(browser, sim, "operator-429").await?;
        common::a_limit_in_unknown_words_is_told_by_its_429(browser, sim, "claude").await?;
        common::a_too_long_refusal_in_unknown_words_is_told_by_its_413(browser, sim, "claude").await
    })
    .await
}

#[tokio::test]
async fn rate_limits_failures_and_challenges_are_told_apart() -> Result<()> {
    with_browser(short_pause(), async |browser, sim, adapter| {
        let token = log_in(browser, sim, "operator-5").await?;
        let asked = std::time::SystemTime::now();
        let text = rate_limited(browser, adapter, "Weather tomorrow? [[rate-limit]]").await?;
        assert!(text.contains("out of free messages until"), "{text}");
        // The banner names the hour the look-alike's limit resets (5 hours on, on a round ten
        // minutes, as its 429 says): read in the page's zone, that is the time.
        let lifts_at = aap_bot::limit_reset::lifts_at(browser.driver(), &text).await.context("no time read")?;
        let ahead = lifts_at.duration_since(asked)?;
        let five_hours = Duration::from_secs(5 * 3600);
        let minutes = Duration::from_secs(60);
        assert!(ahead <= five_hours + minutes && ahead > five_hours - 11 * minutes, "{ahead:?} ahead: {text}");
        assert_eq!(lifts_at.duration_since(std::time::UNIX_EPOCH)?.as_secs() % 600, 0, "{text}");
        // That time came from the 429 behind the banner (`resetsAt`); the banner's words, read in
        // the page's zone, say the same instant.
        use aap_bot::limit_reset::{Said, parse, resolve};
        let Some(Said::Clock(clock)) = parse(&text) else { panic!("no clock time in {text:?}") };
        let by_words = resolve(browser.driver(), &clock, std::time::SystemTime::now()).await;
        assert_eq!(by_words, Some(lifts_at), "{text}");

        let text = assistant_error(browser, adapter, "Summarise the news [[error]]").await?;
        assert!(text.contains("response was interrupted"), "{text}");

        // The API's 413 for a prompt over the model's input, in the page's own words.
        let text = prompt_refused(browser, adapter, "Read this whole book [[too-long]]").await?;
        assert!(text.contains("exceed the length limit for this chat"), "{text}");

        // A challenge in the middle of a session: the answer request gets Cloudflare's page.
        let title = challenge(browser, adapter, "Any news? [[challenge]]").await?;
        assert!(title.contains("Just a moment"), "{title}");

        // A challenge in place of the whole site.
        challenge_everywhere(browser, sim, adapter, "Hello?").await?;

        // Over the account's quota, the same banner as a marked prompt.
        sim.set_config(SimulatorConfig { challenge: false, rate_limit_after: Some(0), ..sim.config() });
        rate_limited(browser, adapter, "Hello again?").await?;

        assert_failed_only(sim, &token, 2, 2);
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

// ---- the variant matrix ---------------------------------------------------------------------

/// The web searches the look-alike runs for `prompt`: the question, then narrowed to this year.
fn expected_queries(prompt: &str) -> Vec<String> {
    let first: String = strip_markers(prompt).chars().take(80).collect();
    let second = format!("{} 2026", first.trim_end_matches(['?', ' ']));
    vec![collapse(&first), collapse(&second)]
}

/// The citations every variant must give for `prompt`: the cited sources inline in reading
/// order, then the ones only listed, each found in the page and in the stream alike, cleaned
/// (the stream's `utm_source` in a query and in a fragment, the share link left out).
fn expected_citations(prompt: &str, cites: bool) -> Vec<(String, String, u32, bool, FoundIn)> {
    if !cites {
        return Vec::new();
    }
    answer_for(prompt, true)
        .citations
        .iter()
        .map(|c| (c, true))
        .chain(listed_only(prompt).iter().map(|c| (c, false)).collect::<Vec<_>>())
        .enumerate()
        .map(|(index, (c, inline))| (c.url.clone(), c.title.clone(), index as u32 + 1, inline, FoundIn::Both))
        .collect()
}

/// What every cell of the matrix checks: the full text, the exact citation list, the queries,
/// no products (claude.ai shows none), no fallback read, nothing missing, page and stream
/// agreeing, and finish signals the variant has.
fn check_variant(variant: &str, scenario: Scenario, prompt: &str, captured: &Captured) -> Result<()> {
    let cites = scenario.cites();
    assert_eq!(collapse(&captured.response_text), collapse(&answer_for(prompt, cites).plain_text()), "the full text");
    let got: Vec<(String, String, u32, bool, FoundIn)> =
        captured.citations.iter().map(|c| (c.url.clone(), c.title.clone(), c.position, c.inline, c.found_in)).collect();
    assert_eq!(got, expected_citations(prompt, cites), "the exact citations");
    let queries = if cites { expected_queries(prompt) } else { Vec::new() };
    assert_eq!(captured.search_queries, queries, "the queries of the stream");
    assert!(captured.products.is_empty());
    assert_eq!(captured.web_search, Some(cites));
    assert_eq!(captured.model.as_deref(), Some("Claude Sonnet 4.5"));
    let reading = &captured.reading;
    assert!(!reading.read_by_fallback, "read by selector");
    assert_eq!(reading.missing_roles, Vec::<String>::new());
    assert_eq!(reading.disagreement, None);
    assert!(reading.finish_signals.len() >= 2, "{:?}", reading.finish_signals);
    let signal = |name: &str| reading.finish_signals.iter().any(|s| s == name);
    assert!(signal("stream-done") && signal("stop-gone"), "{:?}", reading.finish_signals);
    assert_eq!(signal("streaming-false"), variant != "testid-no-streaming-attr", "{:?}", reading.finish_signals);
    assert!(!captured.html.contains(THINKING_OPENING), "no thinking in the answer");
    assert!(captured.ttft.is_some_and(|ttft| ttft < captured.total));
    Ok(())
}

async fn variant_row(variant: &'static str) -> Result<()> {
    common::variant_row(Site::Claude, variant, short_pause(), async |_sim, scenario, prompt, captured| {
        check_variant(variant, scenario, prompt, &captured)
    })
    .await
}

#[tokio::test]
async fn variant_current_reads_every_scenario() -> Result<()> {
    variant_row("current").await
}

#[tokio::test]
async fn variant_redesign_reads_every_scenario() -> Result<()> {
    variant_row("redesign").await
}

/// Thinking on for every answer, its text the message's first `.standard-markdown`; thinking
/// and search share `button.group/status`; result rows without links (addresses from the stream).
#[tokio::test]
async fn variant_timeline_grid_2026_reads_every_scenario() -> Result<()> {
    variant_row("timeline-grid-2026").await
}

/// The answer in `.font-claude-message`, no `.standard-markdown`; plain links as citations.
#[tokio::test]
async fn variant_legacy_font_claude_message_reads_every_scenario() -> Result<()> {
    variant_row("legacy-font-claude-message").await
}

/// No streaming attribute; the stop control clears between tool phases and 1.5 s before the
/// last words render (stop-gone and stream-done hold while the text still grows).
#[tokio::test]
async fn variant_testid_no_streaming_attr_reads_every_scenario() -> Result<()> {
    variant_row("testid-no-streaming-attr").await
}

/// The failure reproduced: on the legacy markup the old manifest's answer selectors
/// (`.standard-markdown`, `.progressive-markdown`) find nothing in the message while the answer
/// is on screen in `.font-claude-message` (the old adapter said `empty-answer`). With those old
/// selectors the answer is now read by fallback; with the new manifest by selector; and with no
/// answer selector matching, the fallback alone gives the exact text.
#[tokio::test]
async fn the_old_manifest_misses_the_legacy_answer_container_and_the_new_one_reads_it() -> Result<()> {
    let config = SimulatorConfig { variant: "legacy-font-claude-message".into(), ..short_pause() };
    with_browser(config, async |browser, sim, adapter| {
        log_in(browser, sim, "operator-9").await?;
        let prompt = "What are the best laptops under $1,000?";
        let captured = adapter.ask(browser.driver(), prompt).await?;
        check_variant("legacy-font-claude-message", Scenario::Normal, prompt, &captured)?;

        // What the old manifest saw on this page: no answer text, the answer on screen.
        let seen = browser
            .driver()
            .execute(
                "const all = document.querySelectorAll('div[data-is-streaming]');\
                 const message = all[all.length - 1];\
                 const old = Array.from(message.querySelectorAll('.standard-markdown, .progressive-markdown'));\
                 return [old.map((b) => b.textContent).join('').trim().length,\
                         message.querySelector('.font-claude-message').innerText];",
                Vec::new(),
            )
            .await?
            .convert::<(usize, String)>()?;
        assert_eq!(seen.0, 0, "the old answer selectors find no text: the old adapter's empty-answer");
        let expected = collapse(&answer_for(prompt, true).plain_text());
        let words: Vec<&str> = expected.split(' ').collect();
        let mut on_screen = seen.1.split_whitespace();
        assert!(words.iter().all(|word| on_screen.any(|w| w == *word)), "the answer is on screen");

        // The old manifest's answer and thinking selectors: read by fallback now, not empty.
        let dir = tempfile::tempdir()?;
        let old = common::override_adapter(dir.path(), sim, "claude", |manifest| {
            let set = |manifest: &mut aap_bot::Manifest, role: &str, list: &[&str]| {
                manifest.selectors.insert(role.to_owned(), list.iter().map(|s| (*s).to_owned()).collect());
            };
            set(manifest, "answer_markdown", &[".standard-markdown", ".progressive-markdown"]);
            set(manifest, "citation_link", &["a[class*='group/tag'][href]", "a[data-testid='citation-link'][href]"]);
        })?;
        let prompt = "Which running shoes suit flat feet?";
        let captured = old.ask(browser.driver(), prompt).await?;
        assert!(captured.reading.read_by_fallback);
        assert!(captured.reading.confidence() < 1.0);
        // The text is there in order; the old manifest cannot tell the citation links from it.
        let expected = collapse(&answer_for(prompt, true).plain_text());
        let read = collapse(&captured.response_text);
        let mut read_words = read.split(' ');
        assert!(expected.split(' ').all(|word| read_words.any(|w| w == word)), "{read}");

        // The new thinking and citation selectors, no answer selector that matches: the
        // fallback alone reads the exact text and the exact sources.
        let dir = tempfile::tempdir()?;
        let fallback = common::override_adapter(dir.path(), sim, "claude", |manifest| {
            manifest.selectors.insert("answer_markdown".to_owned(), vec![".progressive-markdown".to_owned()]);
        })?;
        let prompt = "How do heat pumps work in cold climates?";
        let captured = fallback.ask(browser.driver(), prompt).await?;
        assert!(captured.reading.read_by_fallback);
        assert_eq!(collapse(&captured.response_text), collapse(&answer_for(prompt, true).plain_text()));
        let got: Vec<(String, bool)> = captured.citations.iter().map(|c| (c.url.clone(), c.inline)).collect();
        let want: Vec<(String, bool)> =
            expected_citations(prompt, true).into_iter().map(|(url, _, _, inline, _)| (url, inline)).collect();
        assert_eq!(got, want);
        Ok(())
    })
    .await
}

/// The quirk the testid variant stands for, seen from the page: after the stop control has
/// cleared (the stream over), the answer's text still grows; the adapter above waits for it.
#[tokio::test]
async fn on_the_testid_variant_the_text_still_grows_after_the_stop_control_clears() -> Result<()> {
    let config = SimulatorConfig { variant: "testid-no-streaming-attr".into(), ..short_pause() };
    with_browser(config, async |browser, sim, _adapter| {
        log_in(browser, sim, "operator-10").await?;
        let driver = browser.driver();
        driver.goto(format!("{}/new", sim.base_url)).await?;
        let composer = driver.find(thirtyfour::By::Css("div[data-testid='chat-input']")).await?;
        composer.send_keys("What are the best laptops under $1,000?").await?;
        driver.find(thirtyfour::By::Css("button[data-testid='send-button']")).await?.click().await?;
        let sample = "const body = document.querySelector('[data-testid=assistant-message] .font-claude-response-body');\
                      return [!!document.querySelector('button[data-testid=stop-button]'),\
                              body ? body.textContent.length : 0,\
                              !!document.querySelector('button[data-testid=action-bar-copy]')];";
        let mut cleared_at: Option<usize> = None;
        let mut grew_after_clear = false;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (stop, len, done) = driver.execute(sample, Vec::new()).await?.convert::<(bool, usize, bool)>()?;
            if done {
                break;
            }
            match cleared_at {
                Some(at) if len > at && !stop => grew_after_clear = true,
                _ if !stop && len > 0 => cleared_at = Some(cleared_at.unwrap_or(len)),
                _ => cleared_at = None,
            }
            assert!(std::time::Instant::now() < deadline, "the answer finished");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(grew_after_clear, "text grew while no stop control showed");
        Ok(())
    })
    .await
}
