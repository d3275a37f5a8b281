//! What the adapter tests share: a simulator of one site, a real Chromium, and a logged-in
//! session, always cleaned up; adapters loaded from an edited manifest; and the scenarios every
//! site goes through the same way (login walls, a multi-line prompt, an answer without sources),
//! with the failure each prompt must end in.
#![allow(dead_code)]

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::{Duration, Instant};

use aap_bot::{Adapter, AnyAdapter, AskError, Browser, BrowserOptions, Captured, Manifest};
use aap_simulator::{Simulator, SimulatorConfig, Site, answer_for};
use anyhow::{Context, Result};
use futures::FutureExt;

/// A prompt with a new line in it: typed as Shift+Enter, it must reach the site as one prompt.
pub const MULTI_LINE_PROMPT: &str = "Compare two phones:\nPixel and iPhone";

/// [`MULTI_LINE_PROMPT`] as the site receives it: the new line became a space.
pub const MULTI_LINE_AS_SENT: &str = "Compare two phones: Pixel and iPhone";

/// A prompt the simulator answers without any source.
pub const NO_CITATIONS_PROMPT: &str = "Explain photosynthesis simply [[no-citations]]";

/// The simulator's defaults with a 300 ms pause mid-answer: the pause still happens, the test
/// waits less for it.
pub fn short_pause() -> SimulatorConfig {
    SimulatorConfig { pause_ms: 300, ..SimulatorConfig::default() }
}

/// The simulator's defaults, whose pause mid-answer (1.2 s) is longer than a "text unchanged for
/// 1 s" check would wait: an answer read through it must still come back whole.
pub fn long_pause() -> SimulatorConfig {
    let config = SimulatorConfig::default();
    assert!(config.pause_ms > 1000);
    config
}

/// White space runs collapsed to one space, ends trimmed.
pub fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Starts a simulator of `site` and a headless browser, runs `body` with the site's built-in
/// adapter pointed at the simulator, and always quits the browser and stops the simulator, even
/// when `body` panics.
pub async fn with_browser(
    site: Site,
    config: SimulatorConfig,
    body: impl AsyncFnOnce(&Browser, &Simulator, &AnyAdapter) -> Result<()>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, site, config).await?;
    let adapter = AnyAdapter::load(site.id(), None, Some(&sim.base_url))?;
    let browser = Browser::launch(&BrowserOptions::default()).await.context("launch browser")?;
    let outcome = AssertUnwindSafe(body(&browser, &sim, &adapter)).catch_unwind().await;
    browser.close().await;
    sim.shutdown().await;
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Loads a new simulator session (its cookie and localStorage entry) into the browser; returns
/// the session token.
pub async fn log_in(browser: &Browser, sim: &Simulator, label: &str) -> Result<String> {
    let session = sim.create_session(label).await;
    let loaded = browser.load_session(&session.storage_state_json, &sim.base_url).await?;
    assert_eq!(loaded.cookies, 1, "the session cookie is set");
    assert_eq!(loaded.local_storage, 1, "the localStorage entry is set");
    Ok(session.token)
}

/// The built-in manifest of adapter `id` changed by `edit`, written into `dir` as `<id>.toml`
/// and loaded from there for the simulator, as `--adapters-dir` would; `dir` must outlive the
/// adapter's use.
pub fn override_adapter(dir: &Path, sim: &Simulator, id: &str, edit: impl FnOnce(&mut Manifest)) -> Result<AnyAdapter> {
    let mut manifest = Manifest::load(id, None)?;
    edit(&mut manifest);
    let file = format!("{id}.toml");
    std::fs::write(dir.join(&file), toml::to_string(&manifest)?)?;
    let adapter = AnyAdapter::load(id, Some(dir), Some(&sim.base_url))?;
    assert!(adapter.manifest().source.ends_with(&file), "the override is in use");
    Ok(adapter)
}

/// The built-in manifest of adapter `id` with `edit` applied to its parsed form (not its text,
/// whose comments change with every update), written as `<id>.toml` in a fresh directory: a
/// bot's `--adapters-dir`.
pub fn manifest_dir(id: &str, edit: impl FnOnce(&mut Manifest)) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let built_in = Manifest::load(id, None)?;
    let mut manifest = built_in.clone();
    edit(&mut manifest);
    assert_ne!(manifest, built_in, "the edit changed it");
    std::fs::write(dir.path().join(format!("{id}.toml")), toml::to_string(&manifest)?)?;
    Ok(dir)
}

/// Keeps only the first (primary) selector of every role: the manifest as before a redesign.
pub fn primary_selectors_only(manifest: &mut Manifest) {
    for selectors in manifest.selectors.values_mut() {
        selectors.truncate(1);
    }
}

/// Asks `prompt`, which must fail; returns the error.
pub async fn ask_err(browser: &Browser, adapter: &AnyAdapter, prompt: &str) -> Result<AskError> {
    adapter.ask(browser.driver(), prompt).await.err().with_context(|| format!("{prompt:?} must fail"))
}

/// Asks `prompt`, which must meet a login wall.
pub async fn assert_logged_out(browser: &Browser, adapter: &AnyAdapter, prompt: &str) -> Result<()> {
    let error = ask_err(browser, adapter, prompt).await?;
    assert!(matches!(error, AskError::LoggedOut), "{error:?}");
    Ok(())
}

/// Asks `prompt`, which must meet a bot challenge; returns what the adapter read of it.
pub async fn challenge(browser: &Browser, adapter: &AnyAdapter, prompt: &str) -> Result<String> {
    match ask_err(browser, adapter, prompt).await? {
        AskError::Challenge(title) => Ok(title),
        other => panic!("expected Challenge, got {other:?}"),
    }
}

/// Asks `prompt`, which must be rate limited; returns the site's message.
pub async fn rate_limited(browser: &Browser, adapter: &AnyAdapter, prompt: &str) -> Result<String> {
    match ask_err(browser, adapter, prompt).await? {
        AskError::RateLimited(text) => Ok(text),
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

/// A limit worded as no pattern knows (a page in another language): with the manifest's
/// rate-limit patterns removed, the site's HTTP 429 behind the words still makes it `rate-limited`
/// and when it lifts (from the 429, or from the words when it names no time), while an error
/// without a 429 stays the assistant's.
pub async fn a_limit_in_unknown_words_is_told_by_its_429(browser: &Browser, sim: &Simulator, id: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let adapter = override_adapter(dir.path(), sim, id, |manifest| manifest.rate_limit_patterns.clear())?;
    assert!(!adapter.manifest().is_rate_limit("You've reached our limit of messages per hour"));
    let text = rate_limited(browser, &adapter, "Weather tomorrow? [[rate-limit]]").await?;
    let lifts_at = aap_bot::limit_reset::lifts_at(browser.driver(), &text).await.context("no time")?;
    assert!(lifts_at > std::time::SystemTime::now(), "{text}");
    assistant_error(browser, &adapter, "Summarise the news [[error]]").await?;
    Ok(())
}

/// A "too long" refusal worded as no pattern knows (a page in another language): with the
/// manifest's prompt-refused patterns removed, the site's HTTP 413 behind the words still makes it
/// `prompt-refused`, while an error without one stays the assistant's.
pub async fn a_too_long_refusal_in_unknown_words_is_told_by_its_413(
    browser: &Browser,
    sim: &Simulator,
    id: &str,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let adapter = override_adapter(dir.path(), sim, id, |manifest| manifest.prompt_refused_patterns.clear())?;
    let text = prompt_refused(browser, &adapter, "Read this whole book [[too-long]]").await?;
    assert!(!adapter.manifest().is_prompt_refused(&text), "no pattern knows it: {text}");
    assistant_error(browser, &adapter, "Summarise the news [[error]]").await?;
    Ok(())
}

/// Asks `prompt`, which must end in the assistant's own error; returns its text.
pub async fn assistant_error(browser: &Browser, adapter: &AnyAdapter, prompt: &str) -> Result<String> {
    match ask_err(browser, adapter, prompt).await? {
        AskError::Assistant(text) => Ok(text),
        other => panic!("expected Assistant, got {other:?}"),
    }
}

/// Asks `prompt`, which the assistant must refuse for its length; returns what it said.
pub async fn prompt_refused(browser: &Browser, adapter: &AnyAdapter, prompt: &str) -> Result<String> {
    match ask_err(browser, adapter, prompt).await? {
        AskError::PromptRefused(text) => Ok(text),
        other => panic!("expected PromptRefused, got {other:?}"),
    }
}

/// Asks `prompt`, which must time out; returns the deadline it met.
pub async fn timed_out(browser: &Browser, adapter: &AnyAdapter, prompt: &str) -> Result<Duration> {
    match ask_err(browser, adapter, prompt).await? {
        AskError::Timeout(deadline) => Ok(deadline),
        other => panic!("expected Timeout, got {other:?}"),
    }
}

/// Asks `prompt`, which must miss an element; returns the role that had none.
pub async fn selector_missing(browser: &Browser, adapter: &AnyAdapter, prompt: &str) -> Result<&'static str> {
    match ask_err(browser, adapter, prompt).await? {
        AskError::SelectorMissing(role) => Ok(role),
        other => panic!("expected SelectorMissing, got {other:?}"),
    }
}

/// Puts the whole site behind the challenge (left on) and asserts `prompt` meets it.
pub async fn challenge_everywhere(
    browser: &Browser,
    sim: &Simulator,
    adapter: &AnyAdapter,
    prompt: &str,
) -> Result<()> {
    sim.set_config(SimulatorConfig { challenge: true, ..sim.config() });
    challenge(browser, adapter, prompt).await?;
    Ok(())
}

/// The three ways a login wall meets a prompt, each `AskError::LoggedOut`: no session at all, a
/// session the site revoked (logged in as `labels[0]`), and a session that expires as the prompt
/// is sent (`labels[1]`). Returns the token of that last session.
pub async fn login_walls_yield_logged_out(
    browser: &Browser,
    sim: &Simulator,
    adapter: &AnyAdapter,
    labels: [&str; 2],
) -> Result<String> {
    assert_logged_out(browser, adapter, "Hello?").await?;

    let token = log_in(browser, sim, labels[0]).await?;
    sim.expire_session(&token);
    assert_logged_out(browser, adapter, "Hello again?").await?;

    let token = log_in(browser, sim, labels[1]).await?;
    assert_logged_out(browser, adapter, "Still there? [[expire-session]]").await?;
    Ok(token)
}

/// A stalled answer to `prompt`, read by adapter `id` with its answer deadline cut to `secs`:
/// a timeout at that deadline, never the partial answer. Returns that adapter, and the directory
/// its manifest lives in, for what the test asks next.
pub async fn stall_times_out(
    browser: &Browser,
    sim: &Simulator,
    id: &str,
    secs: u64,
    prompt: &str,
) -> Result<(tempfile::TempDir, AnyAdapter)> {
    let dir = tempfile::tempdir()?;
    let adapter = override_adapter(dir.path(), sim, id, |manifest| manifest.timing.answer_deadline_secs = secs)?;
    assert_eq!(timed_out(browser, &adapter, prompt).await?, Duration::from_secs(secs));
    Ok((dir, adapter))
}

/// An answer to `prompt` (marked `[[empty]]`) that finishes by every signal of its site with no
/// text at all, read by adapter `id` with its answer deadline set to `deadline_secs`:
/// [`AskError::EmptyAnswer`], never a timeout at that deadline (an adapter that waited for a
/// first token would end there instead). The site served the empty answer once. Returns that
/// adapter, and the directory its manifest lives in, for what the test asks next.
pub async fn empty_answer_is_empty(
    browser: &Browser,
    sim: &Simulator,
    id: &str,
    deadline_secs: u64,
    prompt: &str,
) -> Result<(tempfile::TempDir, AnyAdapter)> {
    let dir = tempfile::tempdir()?;
    let adapter =
        override_adapter(dir.path(), sim, id, |manifest| manifest.timing.answer_deadline_secs = deadline_secs)?;
    let error = ask_err(browser, &adapter, prompt).await?;
    assert!(matches!(error, AskError::EmptyAnswer), "expected EmptyAnswer, got {error:?}");
    assert_eq!(error.class(), "empty-answer");
    let stats = sim.stats();
    assert_eq!(stats.answers_for_prompt(prompt), 1, "the turn ran to its end");
    assert_eq!(stats.empty_answers_for_prompt(prompt), 1, "without a word");
    Ok((dir, adapter))
}

/// `prompt` asked of the redesigned page by adapter `id` with only its primary selectors (the
/// manifest as before the redesign), its page-load wait set to `page_load_secs` when given: the
/// composer is missing. Returns how long the adapter took to say so.
pub async fn primaries_miss_the_composer(
    browser: &Browser,
    sim: &Simulator,
    id: &str,
    page_load_secs: Option<u64>,
    prompt: &str,
) -> Result<Duration> {
    let dir = tempfile::tempdir()?;
    let adapter = override_adapter(dir.path(), sim, id, |manifest| {
        primary_selectors_only(manifest);
        if let Some(secs) = page_load_secs {
            manifest.timing.page_load_secs = secs;
        }
    })?;
    let started = Instant::now();
    assert_eq!(selector_missing(browser, &adapter, prompt).await?, "composer");
    Ok(started.elapsed())
}

/// Asks [`MULTI_LINE_PROMPT`]: the site gets it once, as one prompt, and its whole answer comes
/// back. Returns the answer for the site's own checks.
pub async fn multi_line_prompt_is_one_prompt(
    browser: &Browser,
    sim: &Simulator,
    adapter: &AnyAdapter,
) -> Result<Captured> {
    let captured = adapter.ask(browser.driver(), MULTI_LINE_PROMPT).await?;
    assert_eq!(collapse(&captured.response_text), collapse(&answer_for(MULTI_LINE_PROMPT, true).plain_text()));
    assert_eq!(sim.stats().answers_for_prompt(MULTI_LINE_AS_SENT), 1);
    Ok(captured)
}

/// A prompt of 5,281 characters (700 words), under the platform's 8,192 bytes: more than a
/// chat composer shows at once, and more than Google's search box takes (2,048).
pub fn long_prompt() -> String {
    format!(
        "Summarise this for a newcomer: {}",
        "the platform answers prompts with what assistants say, citations included, ".repeat(70)
    )
}

/// Asks [`long_prompt`] on a chat site: the site gets it whole and the answer is read whole.
/// Perplexity's look-alike lets it overflow the composer, which scrolls the Submit button out
/// of reach: the bot sends with Enter then.
pub async fn long_prompt_is_answered_whole(browser: &Browser, sim: &Simulator, adapter: &AnyAdapter) -> Result<()> {
    let prompt = long_prompt();
    let captured = adapter.ask(browser.driver(), &prompt).await?;
    assert_eq!(collapse(&captured.response_text), collapse(&answer_for(&prompt, true).plain_text()));
    assert_eq!(sim.stats().answers_for_prompt(&collapse(&prompt)), 1, "the site got the prompt whole");
    Ok(())
}

/// A prompt past the Basic Multilingual Plane (emoji, mathematical letters) beside accents and
/// CJK: WebDriver types it key by key, and the site must get it exactly.
pub const UNICODE_PROMPT: &str =
    "Which phone has the best camera 📷 for travel 😀? Compare 𝔓𝔦𝔵𝔢𝔩 and 日本の機種, café prices";

/// Asks [`UNICODE_PROMPT`]: answered whole, the site got it character for character.
pub async fn unicode_prompt_is_sent_exactly(browser: &Browser, sim: &Simulator, adapter: &AnyAdapter) -> Result<()> {
    let captured = adapter.ask(browser.driver(), UNICODE_PROMPT).await?;
    assert_eq!(collapse(&captured.response_text), collapse(&answer_for(UNICODE_PROMPT, true).plain_text()));
    assert_eq!(sim.stats().answers_for_prompt(UNICODE_PROMPT), 1, "the site got the prompt exactly");
    Ok(())
}

/// A prompt with what typing must not take for keys: tabs (cells pasted from a spreadsheet), a
/// Windows line break, a lone carriage return and U+E007 (WebDriver's Enter key).
pub const KEYS_PROMPT: &str = "Compare these phones:\tPixel\tiPhone\r\nand their prices\rin euros\u{E007} today";

/// [`KEYS_PROMPT`] as every site must get it, white space collapsed: the whole question.
pub const KEYS_PROMPT_AS_SENT: &str = "Compare these phones: Pixel iPhone and their prices in euros today";

/// Asks [`KEYS_PROMPT`]: the site got the whole question once, and its answer came back. Until
/// 2026-12-07 a tab moved the focus out of the composer and only "Compare these phones:" was
/// asked (and answered as if it were the prompt).
pub async fn key_characters_are_typed_as_text(browser: &Browser, sim: &Simulator, adapter: &AnyAdapter) -> Result<()> {
    let captured = adapter.ask(browser.driver(), KEYS_PROMPT).await?;
    assert_eq!(collapse(&captured.response_text), collapse(&answer_for(KEYS_PROMPT_AS_SENT, true).plain_text()));
    let stats = sim.stats();
    assert_eq!(stats.answers_for_prompt(KEYS_PROMPT_AS_SENT), 1, "the whole question: {:?}", stats.by_prompt.keys());
    Ok(())
}

/// A prompt that quotes the words of bot challenges (Cloudflare's, Google's unusual traffic page).
pub const CHALLENGE_WORDS_PROMPT: &str =
    "Just a moment: is \"verify you are human\" or \"our systems have detected unusual traffic\" worse?";

/// Asks [`CHALLENGE_WORDS_PROMPT`]: an answer like any other. Until 2026-12-07 Google's
/// results page, whose title is the query, was taken for a challenge: the account was set aside
/// (CHALLENGED), and the task went from account to account.
pub async fn challenge_words_in_a_prompt_are_no_challenge(
    browser: &Browser,
    sim: &Simulator,
    adapter: &AnyAdapter,
) -> Result<()> {
    let captured = adapter.ask(browser.driver(), CHALLENGE_WORDS_PROMPT).await?;
    assert_eq!(collapse(&captured.response_text), collapse(&answer_for(CHALLENGE_WORDS_PROMPT, true).plain_text()));
    assert_eq!(sim.stats().answers_for_prompt(CHALLENGE_WORDS_PROMPT), 1);
    Ok(())
}

/// A prompt the chat look-alikes stop at their length limit, two thirds of the way.
pub const CUT_SHORT_PROMPT: &str = "List every laptop worth buying this year [[cut-short]]";

/// A prompt quoting claude.ai's notice of an answer cut short: no such notice.
pub const CUT_SHORT_WORDS_PROMPT: &str =
    "Why does Claude say \"This response paused because Claude reached its max length for a message\"?";

/// Asks [`CUT_SHORT_PROMPT`]: the answer as the page showed it (the start of the whole answer,
/// two thirds of it, without the site's notice), marked cut short with confidence 0.3 lower; then
/// [`CUT_SHORT_WORDS_PROMPT`], answered whole and not marked. Returns the cut answer.
pub async fn cut_short_answer_is_marked(browser: &Browser, sim: &Simulator, adapter: &AnyAdapter) -> Result<Captured> {
    let captured = adapter.ask(browser.driver(), CUT_SHORT_PROMPT).await?;
    let whole = collapse(&answer_for(CUT_SHORT_PROMPT, true).plain_text());
    let text = collapse(&captured.response_text);
    assert!(captured.reading.cut_short, "the answer stopped at the site's length limit: {:?}", captured.reading);
    assert!(captured.reading.confidence() <= 0.7 + 1e-6, "{}", captured.reading.confidence());
    assert!(
        !text.is_empty() && text.len() < whole.len() * 5 / 6,
        "two thirds of {} bytes, got {}",
        whole.len(),
        text.len()
    );
    assert!(whole.starts_with(&text), "the start of the whole answer:\n{text}\n---\n{whole}");
    for read in [&captured.response_text, &captured.response_markdown] {
        assert!(!read.to_lowercase().contains("max length"), "the notice is no part of the answer: {read}");
    }
    assert_eq!(sim.stats().answers_for_prompt(CUT_SHORT_PROMPT), 1);

    let quoted = adapter.ask(browser.driver(), CUT_SHORT_WORDS_PROMPT).await?;
    assert!(!quoted.reading.cut_short, "a prompt quoting the notice is no notice");
    assert_eq!(collapse(&quoted.response_text), collapse(&answer_for(CUT_SHORT_WORDS_PROMPT, true).plain_text()));
    Ok(captured)
}

/// Asks [`NO_CITATIONS_PROMPT`]: the whole answer, and no citation. Returns the answer for the
/// site's own checks (what it says about a web search differs by site).
pub async fn answer_without_citations(browser: &Browser, adapter: &AnyAdapter) -> Result<Captured> {
    let captured = adapter.ask(browser.driver(), NO_CITATIONS_PROMPT).await?;
    assert!(captured.citations.is_empty());
    assert_eq!(collapse(&captured.response_text), collapse(&answer_for(NO_CITATIONS_PROMPT, false).plain_text()));
    Ok(captured)
}

/// The answer's first token came before its end.
pub fn assert_first_token_before_end(captured: &Captured) -> Result<()> {
    let ttft = captured.ttft.context("time to first token")?;
    assert!(ttft < captured.total);
    Ok(())
}

/// The site answered `prompt` once, and the session `token` `answers` times in all.
pub fn assert_served(sim: &Simulator, prompt: &str, token: &str, answers: u64) {
    let stats = sim.stats();
    assert_eq!(stats.answers_for_prompt(prompt), 1);
    assert_eq!(stats.answers_for_token(token), answers);
}

/// The site answered nothing and served at least `walls` login walls.
pub fn assert_login_walls_only(sim: &Simulator, walls: u64) {
    let stats = sim.stats();
    assert_eq!(stats.answers_total, 0);
    assert!(stats.login_walls >= walls);
}

/// The session `token` was rate limited `rate_limited` times and shown `errors` errors, and the
/// site answered nothing at all.
pub fn assert_failed_only(sim: &Simulator, token: &str, rate_limited: u64, errors: u64) {
    let stats = sim.stats();
    assert_eq!(stats.by_token[token].rate_limited, rate_limited);
    assert_eq!(stats.by_token[token].errors, errors);
    assert_eq!(stats.answers_total, 0);
}

/// The scenarios of the variant matrix: every adapter reads every page variant of its site in
/// each of them, and must return the full text and the exact citation list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Today's pacing (with a short pause mid-answer).
    Normal,
    /// Every delay four times longer.
    Slow,
    /// The sources list, panel or dialog fills only after the text has finished.
    LateSources,
    /// An answer without any source.
    NoCitations,
}

impl Scenario {
    /// Every scenario, in the order a matrix row runs them.
    pub const ALL: [Scenario; 4] = [Scenario::Normal, Scenario::Slow, Scenario::LateSources, Scenario::NoCitations];

    /// `base` with this scenario's knobs.
    pub fn config(self, base: &SimulatorConfig) -> SimulatorConfig {
        let base = SimulatorConfig { slow: false, late_sources: false, no_citations: false, ..base.clone() };
        match self {
            Scenario::Normal => base,
            Scenario::Slow => SimulatorConfig { slow: true, ..base },
            Scenario::LateSources => SimulatorConfig { late_sources: true, ..base },
            Scenario::NoCitations => SimulatorConfig { no_citations: true, ..base },
        }
    }

    /// Whether the answer has sources in this scenario.
    pub fn cites(self) -> bool {
        self != Scenario::NoCitations
    }

    /// A prompt of its own for `variant`, so every cell of the matrix asks something new (the
    /// site counts answers per prompt).
    pub fn prompt(self, variant: &str) -> String {
        let topic = match self {
            Scenario::Normal => "What are the best laptops under $1,000?",
            Scenario::Slow => "Which running shoes suit flat feet?",
            Scenario::LateSources => "How do heat pumps work in cold climates?",
            Scenario::NoCitations => "Which CRM is best for a five-person startup?",
        };
        format!("{topic} ({variant})")
    }
}

/// One row of the variant matrix: a simulator of `site` serving `variant` (from `base`), one
/// browser, one session, and `check` run for every [`Scenario`] in turn with the prompt asked and
/// the answer read. A failure names the variant and the scenario.
pub async fn variant_row(
    site: Site,
    variant: &str,
    base: SimulatorConfig,
    check: impl AsyncFn(&Simulator, Scenario, &str, Captured) -> Result<()>,
) -> Result<()> {
    let config = SimulatorConfig { variant: variant.to_owned(), ..base };
    with_browser(site, config.clone(), async |browser, sim, adapter| {
        log_in(browser, sim, &format!("matrix-{variant}")).await?;
        for scenario in Scenario::ALL {
            sim.set_config(scenario.config(&config));
            let prompt = scenario.prompt(variant);
            let captured = adapter
                .ask(browser.driver(), &prompt)
                .await
                .with_context(|| format!("{} variant {variant}, {scenario:?}: ask", site.id()))?;
            check(sim, scenario, &prompt, captured)
                .await
                .with_context(|| format!("{} variant {variant}, {scenario:?}", site.id()))?;
        }
        Ok(())
    })
    .await
}
