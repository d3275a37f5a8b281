//! What every adapter does the same way: running its page script with the manifest's selectors,
//! tolerating failed probes while a page navigates, opening the page up to its composer, typing
//! and sending a prompt, following an answer while it streams, tidying its text and building its
//! citation list.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde::de::DeserializeOwned;
use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;

use super::interrupt::{Guard, is_interruption};
use super::stream::{Document, Findings, Mark};
use super::{AskError, Citation, Fallback, FoundIn, Manifest, Reading};
use crate::limit_reset::{LIMIT_STATUS, TOO_LONG_STATUS};
use crate::markdown::{html_to_markdown, markdown_to_text};
use aap_proto::urls::{domain_of, is_assistant_page};

/// Consecutive failed page probes tolerated while the page navigates (a script cannot run
/// during a navigation).
const MAX_PROBE_FAILURES: u32 = 50;

/// Tries of one action of the bot (a click, typing the prompt) that met an interruption, each
/// after clearing it.
const MAX_INTERRUPTED_TRIES: usize = 3;

/// The site's origin: `origin` when given (e.g. the simulator's), else the manifest's
/// `base_url`; without a trailing slash, so paths append as they are.
pub(super) fn origin(manifest: &Manifest, origin: Option<&str>) -> String {
    origin.unwrap_or(&manifest.base_url).trim_end_matches('/').to_owned()
}

/// An adapter's page script (`dom.js`, the shared DOM helpers, followed by its own file) and
/// the arguments that follow the mode on every call: the manifest's selectors, then whatever
/// else the script reads.
#[derive(Debug, Clone)]
pub(super) struct PageScript {
    source: &'static str,
    args: Vec<serde_json::Value>,
    guard: Guard,
    windows: WindowCheck,
}

/// How often the page scripts' runs also look for windows the page opened: a window that
/// opened a moment after the click that caused it (the browser lists it a little later) is
/// closed within this, so the bot's tab is not left hidden while it waits for the answer.
const WINDOW_CHECK_EVERY: Duration = Duration::from_secs(1);

/// When the page scripts last looked for other windows. A copy of the adapter (one per worker,
/// each with its own browser) starts its own.
#[derive(Debug)]
struct WindowCheck(std::sync::Mutex<Instant>);

impl WindowCheck {
    fn new() -> WindowCheck {
        WindowCheck(std::sync::Mutex::new(Instant::now()))
    }

    /// Whether a look is due now (and, if so, it counts as done).
    fn due(&self) -> bool {
        let mut last = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.elapsed() < WINDOW_CHECK_EVERY {
            return false;
        }
        *last = Instant::now();
        true
    }
}

impl Clone for WindowCheck {
    fn clone(&self) -> WindowCheck {
        WindowCheck::new()
    }
}

impl PageScript {
    /// `source` called with the mode as `arguments[0]` and `manifest`'s selectors (role → list)
    /// as `arguments[1]`, the convention `dom.js` reads.
    pub(super) fn new(source: &'static str, manifest: &Manifest) -> PageScript {
        PageScript {
            source,
            args: vec![manifest.selectors_json()],
            guard: Guard::new(manifest),
            windows: WindowCheck::new(),
        }
    }

    /// Adds an argument after the selectors (`arguments[2]`, then `[3]`, ...).
    pub(super) fn with_arg(mut self, arg: serde_json::Value) -> PageScript {
        self.args.push(arg);
        self
    }

    /// Runs the script in `mode`. A JavaScript dialog in the way is answered first (the script
    /// runs again once); every [`WINDOW_CHECK_EVERY`] windows the page opened are closed too.
    pub(super) async fn run(&self, driver: &WebDriver, mode: &str) -> WebDriverResult<ScriptRet> {
        if self.windows.due()
            && let Err(error) = self.guard.own_window(driver).await
        {
            tracing::debug!(%error, "cannot look for other windows");
        }
        let mut args = Vec::with_capacity(self.args.len() + 1);
        args.push(serde_json::json!(mode));
        args.extend(self.args.iter().cloned());
        match driver.execute(self.source, args.clone()).await {
            Err(error) if matches!(error.as_inner(), WebDriverErrorInner::UnexpectedAlertOpen(_)) => {
                if let Err(answering) = self.guard.answer_js_dialogs(driver).await {
                    tracing::debug!(%answering, "cannot answer the javascript dialog");
                    return Err(error);
                }
                driver.execute(self.source, args).await
            }
            ran => ran,
        }
    }

    /// Runs one action of the bot on the page (`act`), clearing an interruption it meets and
    /// trying again (at most [`MAX_INTERRUPTED_TRIES`] times); afterwards closes any window the
    /// action opened and stays on the bot's own.
    pub(super) async fn through<T, F, Fut>(&self, driver: &WebDriver, mut act: F) -> Result<T, AskError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AskError>>,
    {
        let mut tries = 0;
        loop {
            tries += 1;
            match act().await {
                Ok(value) => {
                    self.guard.own_window(driver).await?;
                    return Ok(value);
                }
                Err(AskError::Browser(error)) if is_interruption(&error) => {
                    tracing::info!(%error, "an interruption is in the way; clearing it");
                    // An overlay that cannot be cleared ends here (`dismiss`).
                    let cleared = self.guard.clear(driver).await?;
                    // Once more even when nothing was left to clear (the browser answers a
                    // JavaScript dialog as the command fails); then the error stands.
                    if tries >= MAX_INTERRUPTED_TRIES || (cleared == 0 && tries >= 2) {
                        return Err(AskError::Browser(error));
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Clicks `element` as a user would, through interruptions (see [`PageScript::through`]).
    pub(super) async fn click_element(&self, driver: &WebDriver, element: &WebElement) -> Result<(), AskError> {
        self.through(driver, || async { Ok(element.click().await?) }).await
    }

    /// Presses Enter in the composer, through interruptions.
    pub(super) async fn press_enter(&self, driver: &WebDriver) -> Result<(), AskError> {
        self.through(driver, || async { Ok(self.composer(driver).await?.send_keys(Key::Enter).await?) }).await
    }

    /// Runs the script in `mode` and reads what it returns as a `T`.
    pub(super) async fn read<T: DeserializeOwned>(&self, driver: &WebDriver, mode: &str) -> WebDriverResult<T> {
        self.run(driver, mode).await?.convert()
    }

    /// The element the script returns in `mode`, or `None` for `null`.
    pub(super) async fn element(&self, driver: &WebDriver, mode: &str) -> WebDriverResult<Option<WebElement>> {
        let ret = self.run(driver, mode).await?;
        if ret.json().is_null() {
            return Ok(None);
        }
        ret.element().map(Some)
    }

    /// Clicks the element the script returns in `mode`. False when there is none, or when it
    /// re-rendered between lookup and click: the caller looks again when it wants to.
    /// An interruption in the way is cleared and the click tried again.
    pub(super) async fn click(&self, driver: &WebDriver, mode: &str) -> Result<bool, AskError> {
        self.through(driver, || async {
            let Some(element) = self.element(driver, mode).await? else {
                return Ok(false);
            };
            match element.click().await {
                Ok(()) => Ok(true),
                Err(error) if matches!(error.as_inner(), WebDriverErrorInner::StaleElementReference(_)) => Ok(false),
                Err(error) => Err(error.into()),
            }
        })
        .await
    }

    /// The prompt box (mode `composer`).
    pub(super) async fn composer(&self, driver: &WebDriver) -> Result<WebElement, AskError> {
        self.element(driver, "composer").await?.ok_or(AskError::SelectorMissing("composer"))
    }

    /// Types the prompt into the composer, emptied first (a draft the site restored, or what
    /// an interrupted try left), as [`typed_lines`] has it: new lines become Shift+Enter, which
    /// starts a new line in the composer instead of sending, and nothing in the prompt presses
    /// another key. Interruptions are cleared before typing and whenever they get in the way,
    /// including a dialog that took the keys (the composer holds no text). Returns what the
    /// composer holds; a composer that kept only the prompt's start after the last try is
    /// [`AskError::PromptRefused`]: sent, it would ask another question.
    pub(super) async fn type_prompt(&self, driver: &WebDriver, prompt: &str) -> Result<String, AskError> {
        self.guard.clear(driver).await?;
        let lines = typed_lines(prompt);
        let wanted = collapse(&lines.join("\n"));
        let keys = || {
            let mut typing = TypingData::from(String::new());
            for (index, line) in lines.iter().enumerate() {
                if index > 0 {
                    // Null releases Shift so the next line is typed as written.
                    typing = typing + Key::Shift + Key::Enter + Key::Null;
                }
                typing = typing + line.as_str();
            }
            typing
        };
        let mut tries = 0;
        loop {
            tries += 1;
            let typed = self
                .through(driver, || async {
                    let composer = self.composer(driver).await?;
                    composer.click().await?;
                    let held = self.run(driver, "composer_text").await?.convert::<String>().unwrap_or_default();
                    if !held.trim().is_empty() {
                        composer.send_keys(Key::Control + "a" + Key::Null + Key::Backspace).await?;
                    }
                    composer.send_keys(keys()).await?;
                    Ok(self.run(driver, "composer_text").await?.convert::<String>().unwrap_or_default())
                })
                .await?;
            let held = collapse(&typed);
            if held == wanted {
                return Ok(typed);
            }
            // Keys lost to a dialog that took the focus or opened while typing: clear it and
            // type again. A composer that shows the prompt otherwise (its own rendering) is
            // taken as it is after the last try; one that keeps only its start is not.
            tracing::info!(typed = typed.chars().count(), "the composer does not hold the prompt; typing again");
            self.guard.clear(driver).await?;
            if tries >= MAX_INTERRUPTED_TRIES {
                if typed.trim().is_empty() {
                    return Err(AskError::SelectorMissing("composer"));
                }
                if wanted.starts_with(&held) {
                    return Err(AskError::PromptRefused(format!(
                        "the composer kept {} of the prompt's {} characters",
                        held.chars().count(),
                        wanted.chars().count()
                    )));
                }
                return Ok(typed);
            }
        }
    }

    /// Clicks the button the script returns in `mode` once it is enabled, looking again while it
    /// is missing or re-renders; presses Enter in the composer when no click landed within
    /// `wait`, or at once when the button stays out of reach once interruptions are cleared
    /// (WebDriver's "element not interactable": a long prompt that overflowed the composer
    /// scrolled Perplexity's look-alike so that its Submit button sat above the page's top, and
    /// the whole ask failed for it). Enter is the site's own way to send: nothing was clicked.
    pub(super) async fn send(
        &self,
        driver: &WebDriver,
        mode: &str,
        wait: Duration,
        poll: Duration,
    ) -> Result<(), AskError> {
        let deadline = Instant::now() + wait;
        loop {
            match self.click(driver, mode).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(AskError::Browser(error))
                    if matches!(error.as_inner(), WebDriverErrorInner::ElementNotInteractable(_)) =>
                {
                    tracing::warn!(
                        button = mode,
                        error = crate::browser::brief(&error),
                        "the button to send with is out of reach; pressing enter in the composer"
                    );
                    return self.press_enter(driver).await;
                }
                Err(error) => return Err(error),
            }
            if Instant::now() >= deadline {
                tracing::warn!(button = mode, "no enabled button to send with; pressing enter in the composer");
                return self.press_enter(driver).await;
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// The answer the script extracts (mode `extract`); `null` means the element of `role`
    /// holding it is not on the page.
    pub(super) async fn extract<T: DeserializeOwned>(
        &self,
        driver: &WebDriver,
        role: &'static str,
    ) -> Result<T, AskError> {
        let extracted = self.run(driver, "extract").await?;
        if extracted.json().is_null() {
            return Err(AskError::SelectorMissing(role));
        }
        Ok(extracted.convert()?)
    }
}

/// Failed page probes in a row. A failure is expected while the page navigates; too many in a
/// row, or a dead browser, end the attempt.
#[derive(Debug, Default)]
pub(super) struct ProbeFailures(u32);

impl ProbeFailures {
    /// The probe's result, or `None` for a failure tolerated while the page navigates.
    pub(super) fn check<T>(&mut self, result: WebDriverResult<T>) -> Result<Option<T>, AskError> {
        match result {
            Ok(value) => {
                self.0 = 0;
                Ok(Some(value))
            }
            Err(error) => {
                self.0 += 1;
                if crate::browser::is_fatal(&error) || self.0 > MAX_PROBE_FAILURES {
                    return Err(AskError::Browser(error));
                }
                tracing::debug!(%error, "page probe failed; retrying");
                Ok(None)
            }
        }
    }
}

/// What one look at a page on its way to the composer found.
pub(super) enum Arrival {
    /// The composer is there: the page can be asked.
    Composer,
    /// A wall in place of the site (login, challenge): the attempt cannot go on.
    Blocked(AskError),
    /// Neither yet; `loaded` when the document has finished loading.
    Waiting {
        /// `document.readyState` is `complete`.
        loaded: bool,
    },
}

/// Opens the manifest's new-chat page at `origin` and waits for the composer, looking with
/// `look` every poll. A wall ends the wait at once. A page that has loaded but shows no
/// composer for `grace` has changed its markup, which is said then instead of at the page-load
/// deadline; the grace starts again when the page navigates on. A page that never finished
/// loading by the deadline timed out: its markup is unknown, so no selector is blamed.
pub(super) async fn open<F, Fut>(
    driver: &WebDriver,
    origin: &str,
    manifest: &Manifest,
    grace: Duration,
    mut look: F,
) -> Result<(), AskError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = WebDriverResult<Arrival>>,
{
    let url = format!("{origin}{}", manifest.chat_path());
    // A dialog the last page left open ("Leave site?", an alert) is answered first.
    if let Err(error) = driver.goto(url.as_str()).await {
        if !is_interruption(&error) {
            return Err(error.into());
        }
        super::interrupt::answer_js_dialogs(driver, &manifest.assistant).await?;
        driver.goto(url.as_str()).await?;
    }
    let timing = &manifest.timing;
    let deadline = Instant::now() + timing.page_load();
    let mut loaded_since: Option<Instant> = None;
    let mut failures = ProbeFailures::default();
    loop {
        let arrival = failures.check(look().await)?;
        let now = Instant::now();
        match arrival {
            Some(Arrival::Composer) => return Ok(()),
            Some(Arrival::Blocked(error)) => return Err(error),
            Some(Arrival::Waiting { loaded: true }) => {
                let since = *loaded_since.get_or_insert(now);
                if now.duration_since(since) >= grace {
                    return Err(AskError::SelectorMissing("composer"));
                }
            }
            Some(Arrival::Waiting { loaded: false }) => loaded_since = None,
            None => {}
        }
        if now >= deadline {
            return Err(match loaded_since {
                Some(_) => AskError::SelectorMissing("composer"),
                None => AskError::Timeout(timing.page_load()),
            });
        }
        tokio::time::sleep(timing.poll()).await;
    }
}

/// How an answer comes along while it streams: when its rendering last changed, and when its
/// first text showed.
#[derive(Debug)]
pub(super) struct Progress {
    sent_at: Instant,
    signature: String,
    changed_at: Instant,
    ttft: Option<Duration>,
}

impl Progress {
    /// Following the answer to a prompt sent at `sent_at`.
    pub(super) fn new(sent_at: Instant) -> Progress {
        Progress { sent_at, signature: String::new(), changed_at: Instant::now(), ttft: None }
    }

    /// Takes in one look at the answer at `now`: its signature (a hash of its HTML) and the
    /// length of its text.
    pub(super) fn saw(&mut self, signature: &str, text_len: usize, now: Instant) {
        if signature != self.signature {
            self.signature = signature.to_owned();
            self.changed_at = now;
        }
        if self.ttft.is_none() && text_len > 0 {
            self.ttft = Some(now.duration_since(self.sent_at));
        }
    }

    /// How long the answer has not changed at `now`.
    pub(super) fn quiet(&self, now: Instant) -> Duration {
        now.duration_since(self.changed_at)
    }

    /// From the send to the first answer text, once there was text.
    pub(super) fn ttft(&self) -> Option<Duration> {
        self.ttft
    }
}

/// How long an answer must stay unchanged to count as a finish signal of its own
/// (`quiet-long`): four settle windows, at least 3 s, longer than any mid-answer pause a site is
/// known for.
pub(super) fn long_quiet(settle: Duration) -> Duration {
    settle.saturating_mul(4).max(Duration::from_secs(3))
}

/// The settle window once the answer's own stream has ended: `[options] stream_settle_ms`
/// (200 ms), never longer than the manifest's `settle_ms`. With the stream over, only the page's
/// last re-render can still change the answer, so the full window (which must outlast pauses
/// mid-stream) is not needed.
pub(super) fn stream_settle(manifest: &Manifest) -> Duration {
    manifest.option_ms("stream_settle_ms", 200).min(manifest.timing.settle())
}

/// The finish rule every adapter applies: an answer is complete once at least two independent
/// signals say so and it has not changed for the settle window. `signals` are the adapter's
/// (`stop-gone`, `action-bar`, `stream-done`, `streaming-false`, ...), each with whether it
/// holds now; `quiet-long` (no change for [`long_quiet`]) joins them, so a page that lost one
/// of its signals to a redesign still finishes, later. Text that still grows after a stop
/// control cleared restarts the quiet time and is waited for. Returns the signals that held.
pub(super) fn finished(signals: &[(&'static str, bool)], quiet: Duration, settle: Duration) -> Option<Vec<String>> {
    if quiet < settle {
        return None;
    }
    let mut held: Vec<String> = signals.iter().filter(|(_, on)| *on).map(|(name, _)| (*name).to_owned()).collect();
    if quiet >= long_quiet(settle) {
        held.push("quiet-long".to_owned());
    }
    (held.len() >= 2).then_some(held)
}

/// An error the page shows, by its text: the manifest's rate-limit patterns, its patterns of a
/// prompt refused for its length, or the assistant's own failure.
pub(super) fn classify(manifest: &Manifest, text: &str) -> AskError {
    if manifest.is_rate_limit(text) {
        AskError::RateLimited(text.to_owned())
    } else if manifest.is_prompt_refused(text) {
        AskError::PromptRefused(text.to_owned())
    } else {
        AskError::Assistant(text.to_owned())
    }
}

/// [`classify`] for an error the page shows once the prompt was sent (`mark`): when the site's own
/// API refused one of the attempt's requests (a URL with one of `url_parts`), what would be the
/// assistant's error is what the refusal's status says, whatever the words
/// ([`stream::refused`]): HTTP 429 a rate limit, 413 a prompt too long. A page in another
/// language words its errors its own way, and the manifest's patterns are English.
pub(super) async fn classify_sent(
    driver: &WebDriver,
    manifest: &Manifest,
    text: &str,
    mark: Mark,
    url_parts: &[String],
) -> AskError {
    let classified = classify(manifest, text);
    let AskError::Assistant(text) = classified else {
        return classified;
    };
    match super::stream::refused(driver, mark, url_parts).await {
        Some(LIMIT_STATUS) => {
            tracing::info!(
                said = text,
                "the site refused the request with HTTP 429: a rate limit, whatever the page says"
            );
            AskError::RateLimited(text)
        }
        Some(TOO_LONG_STATUS) => {
            tracing::info!(
                said = text,
                "the site refused the request with HTTP 413: a prompt too long, whatever the page says"
            );
            AskError::PromptRefused(text)
        }
        _ => AskError::Assistant(text),
    }
}

/// [`AskError::PromptRefused`] when `prompt` holds nothing to type once typed as
/// [`typed_lines`] has it (WebDriver's key characters only): the composer would stay empty and
/// the attempt wait out its deadline for an answer to nothing.
pub(super) fn nothing_to_type(prompt: &str) -> Option<AskError> {
    typed_lines(prompt).iter().all(|line| line.trim().is_empty()).then(|| {
        AskError::PromptRefused("the prompt holds nothing to type (only characters WebDriver reads as keys)".to_owned())
    })
}

/// How a site counts a prompt against its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Counted {
    /// Characters (Unicode scalar values).
    Chars,
    /// UTF-16 code units, as an HTML `maxlength` does: a character past U+FFFF (an emoji)
    /// counts twice.
    Utf16,
}

/// [`AskError::PromptRefused`] when `prompt` is longer than `limit` (0: no limit) as `what`
/// (the site, its search box) counts it.
pub(super) fn over_limit(prompt: &str, limit: u64, what: &str, counted: Counted) -> Option<AskError> {
    let chars = prompt.chars().count() as u64;
    let length = match counted {
        Counted::Chars => chars,
        Counted::Utf16 => prompt.encode_utf16().count() as u64,
    };
    (limit > 0 && length > limit).then(|| {
        AskError::PromptRefused(if length == chars {
            format!("the prompt has {chars} characters; {what} takes at most {limit}")
        } else {
            format!(
                "the prompt has {chars} characters, {length} as {what} counts them (a character past U+FFFF, \
                 such as an emoji, counts twice); it takes at most {limit}"
            )
        })
    })
}

/// Whether the assistant cut the answer short at its length limit: its stream said so
/// (`stream_said`, a stop reason of `max_tokens`), or the page shows a notice of the manifest's
/// `cut_short_patterns` (claude.ai's "This response paused because Claude reached its max length
/// for a message") more often than the prompt and the answer quote it, so a prompt asking about
/// that notice, and an answer repeating it, are no notice.
pub(super) async fn cut_short(
    driver: &WebDriver,
    manifest: &Manifest,
    stream_said: bool,
    prompt: &str,
    answer: &str,
) -> bool {
    if stream_said {
        tracing::warn!("the assistant stopped the answer at its length limit (its stream says max_tokens)");
        return true;
    }
    if manifest.cut_short_patterns.is_empty() {
        return false;
    }
    let Some(page) = page_text(driver, "a length-limit notice").await else {
        return false;
    };
    let quoted = manifest.cut_short_notices(prompt) + manifest.cut_short_notices(answer);
    let shown = manifest.cut_short_notices(&page) > quoted;
    if shown {
        tracing::warn!("the assistant stopped the answer at its length limit (the page says so)");
    }
    shown
}

/// After an answer in a private conversation ([`Manifest::private_chat_path`]): notes the
/// manifest's `private_marker` role as missing when the page shows none of its elements (the
/// site's sign that the conversation is kept out of the account's history and memory, e.g.
/// chatgpt.com's "Turn off temporary chat"), so an answer the account's memory may have shaped is
/// told apart. Nothing when the conversation is not private or the manifest has no such role.
pub(super) async fn check_private(driver: &WebDriver, manifest: &Manifest, reading: &mut super::Reading) {
    let selectors = manifest.selectors("private_marker");
    if manifest.private_chat_path.is_none() || selectors.is_empty() {
        return;
    }
    let script =
        "return arguments[0].some((s) => { try { return !!document.querySelector(s); } catch (_) { return false; } });";
    match driver.execute(script, vec![serde_json::json!(selectors)]).await.map(|ret| ret.convert::<bool>()) {
        Ok(Ok(true)) => {}
        Ok(_) => {
            tracing::warn!(
                "the page shows no sign of a private conversation: the account's memory may shape the answer"
            );
            reading.missing("private_marker");
        }
        Err(error) => tracing::debug!(%error, "cannot look for the sign of a private conversation"),
    }
}

/// The page's text as a reader sees it (`innerText`); `None`, logged, when it cannot be read.
async fn page_text(driver: &WebDriver, looking_for: &str) -> Option<String> {
    match driver.execute("return document.body ? document.body.innerText : '';", Vec::new()).await {
        Ok(ret) => Some(ret.convert::<String>().unwrap_or_default()),
        Err(error) => {
            tracing::debug!(%error, "cannot read the page's text for {looking_for}");
            None
        }
    }
}

/// Whether the site answered with another model than the plan's, its limit for the plan's model
/// used up: its stream said so (`stream_said`), or the page shows a notice of the manifest's
/// `model_fallback_patterns` (chatgpt.com's "Responses will use another model until your limit
/// resets after 4:04 PM") more often than the prompt and the answer quote it, as for
/// [`cut_short`]. The notice's time is left to [`crate::limit_reset`]; `stream_lift` (the
/// stream's `resets_after`) goes with a notice when the stream gave one.
pub(super) async fn model_fallback(
    driver: &WebDriver,
    manifest: &Manifest,
    stream_said: Option<Fallback>,
    stream_lift: Option<std::time::SystemTime>,
    prompt: &str,
    answer: &str,
) -> Option<Fallback> {
    if let Some(said) = stream_said {
        tracing::warn!(said = said.said, "another model than the plan's answered (its stream says)");
        return Some(said);
    }
    if manifest.model_fallback_patterns.is_empty() {
        return None;
    }
    let page = page_text(driver, "a notice of another model").await?;
    let quoted = manifest.model_fallback_notices(prompt) + manifest.model_fallback_notices(answer);
    if manifest.model_fallback_notices(&page) <= quoted {
        return None;
    }
    let said = manifest.model_fallback_notice(&page).unwrap_or_default();
    tracing::warn!(said, "another model than the plan's answered (the page says)");
    Some(Fallback { said, lifts_at: stream_lift })
}

/// The answer's text as a reader sees it, tidied; [`AskError::EmptyAnswer`] when there is none.
pub(super) fn answer_text(text: &str) -> Result<String, AskError> {
    let text = tidy_text(text);
    if text.is_empty() {
        return Err(AskError::EmptyAnswer);
    }
    Ok(text)
}

/// The answer's text and markdown (from the message's `text` and `html`) with the documents it
/// wrote beside them after (a Claude artifact or presented file, a ChatGPT canvas), each its own
/// paragraphs: in the markdown as written, in the text as the plain text a reader sees of it.
///
/// The documents are the stream's ([`Findings::documents`]); when the stream gave fewer than the
/// page shows `cards` and the page shows every card's text, the page's. A card whose text was
/// read from neither, or a document with an edit the bot could not replay, notes the role
/// `document_text` missing. A message with no text is an answer when it made a document, else
/// [`AskError::EmptyAnswer`].
pub(super) fn with_documents(
    text: &str,
    html: &str,
    findings: &Findings,
    cards: &[Document],
    reading: &mut Reading,
) -> Result<(String, String), AskError> {
    let streamed = &findings.documents;
    let from_page = streamed.len() < cards.len() && cards.iter().all(|card| !card.text.trim().is_empty());
    let documents = if from_page { cards } else { streamed.as_slice() };
    if from_page {
        tracing::info!(cards = cards.len(), streamed = streamed.len(), "documents read from the page's cards");
    }
    let missed = if from_page { 0 } else { findings.document_edits_missed };
    if documents.len() < cards.len() || missed > 0 {
        // A card whose text the stream did not give (not read, or a file it cannot hold), or a
        // document read with an edit it could not replay.
        tracing::warn!(
            cards = cards.len(),
            read = documents.len(),
            edits_missed = missed,
            "the answer shows documents whose text was not read whole"
        );
        reading.missing("document_text");
    }
    let text = if documents.is_empty() || !text.trim().is_empty() { answer_text(text)? } else { String::new() };
    let mut texts = vec![text];
    let mut markdowns = vec![html_to_markdown(html)];
    for document in documents {
        texts.push(markdown_to_text(&document.text));
        markdowns.push(document.text.trim().to_owned());
    }
    let join = |parts: Vec<String>| parts.into_iter().filter(|p| !p.trim().is_empty()).collect::<Vec<_>>().join("\n\n");
    Ok((join(texts), join(markdowns)))
}

/// The prompt's lines as the bot types them: any line break (`\r\n`, `\r`, `\n`) ends a line;
/// a tab, and a character WebDriver reads as a key (U+E000–U+E05D: Enter, Tab, Backspace, ...),
/// become a space, so typing presses no key the prompt does not mean (a tab moved the focus out
/// of the composer and the rest of the prompt was lost; U+E007 would have sent it half-typed);
/// other control characters (the platform takes none) are left out. Only white space differs
/// from the prompt, which the platform's matching ignores.
pub(super) fn typed_lines(prompt: &str) -> Vec<String> {
    let as_typed = |c: char| match c {
        '\t' | '\u{E000}'..='\u{E05D}' => Some(' '),
        c if c.is_control() => None,
        c => Some(c),
    };
    prompt
        .trim()
        .replace("\r\n", "\n")
        .split(['\n', '\r'])
        .map(|line| line.chars().filter_map(as_typed).collect())
        .collect()
}

/// White space runs as one space, the edges trimmed.
pub(super) fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// innerText with trailing spaces, blank-line runs and the edges trimmed.
pub(super) fn tidy_text(text: &str) -> String {
    let mut out = Vec::new();
    let mut blank = false;
    for line in text.replace('\u{a0}', " ").lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank = !out.is_empty();
            continue;
        }
        if blank {
            out.push(String::new());
            blank = false;
        }
        out.push(line.to_owned());
    }
    out.join("\n")
}

/// A link in the answer as the page script reports it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Link {
    /// Where it points, as the page has it.
    pub(super) href: String,
    /// What it shows (empty for chips that show no name).
    #[serde(default)]
    pub(super) text: String,
}

/// A source the page lists, as the page script reports it.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Source {
    /// Where it points, as the page has it.
    pub(super) href: String,
    /// Its title, as listed.
    pub(super) title: String,
}

/// Inline citations in reading order, then the sources only listed, in the list's order; each
/// URL once, numbered from 1, found in the page. `url_of` turns an href into the source's clean
/// URL (anything but a web address is left out, and so are the assistants' own pages: a thread
/// link or a search page is never a source). A title is the first one the list gives the URL,
/// else the link's text, else the domain.
pub(super) fn citations(links: &[Link], sources: &[Source], url_of: impl Fn(&str) -> String) -> Vec<Citation> {
    let listed: Vec<String> = sources.iter().map(|source| url_of(&source.href)).collect();
    let mut titles = HashMap::new();
    for (url, source) in listed.iter().zip(sources) {
        let title = collapse(&source.title);
        if !title.is_empty() {
            titles.entry(url.as_str()).or_insert(title);
        }
    }
    let inline = links.iter().map(|link| (url_of(&link.href), link.text.as_str(), true));
    let only_listed = listed.iter().zip(sources).map(|(url, source)| (url.clone(), source.title.as_str(), false));
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for (url, text, inline) in inline.chain(only_listed) {
        if !url.starts_with("http") || is_assistant_page(&url) || !seen.insert(url.clone()) {
            continue;
        }
        let domain = domain_of(&url);
        let title = titles.get(url.as_str()).cloned().unwrap_or_else(|| {
            let text = collapse(text);
            if text.is_empty() { domain.clone() } else { text }
        });
        out.push(Citation { url, title, domain, position: out.len() as u32 + 1, inline, found_in: FoundIn::Page });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answer's documents follow its text in both the text (as plain text) and the markdown;
    /// a document alone is the whole answer; the page's cards stand in for a stream that gave
    /// fewer, and a card read from neither, or an edit not replayed, is noted.
    #[test]
    fn documents_follow_the_answer_in_its_text_and_markdown() {
        let guide =
            || Document { title: "guide.md".into(), text: "# Guide\n\n**Buy** the [Vado](https://v.example)\n".into() };
        let findings = Findings { documents: vec![guide()], ..Findings::default() };
        let read = |text: &str, html: &str, findings: &Findings, cards: &[Document]| {
            let mut reading = Reading::default();
            let read = with_documents(text, html, findings, cards, &mut reading);
            (read, reading.missing_roles)
        };
        let (answer, missing) = read("Here it is.", "<p>Here it is.</p>", &findings, &[]);
        assert_eq!(
            answer.expect("an answer"),
            (
                "Here it is.\n\nGuide\n\nBuy the Vado".to_owned(),
                "Here it is.\n\n# Guide\n\n**Buy** the [Vado](https://v.example)".to_owned()
            )
        );
        assert!(missing.is_empty());
        let (answer, _) = read(" ", "", &findings, &[]);
        assert_eq!(
            answer.expect("an answer"),
            ("Guide\n\nBuy the Vado".to_owned(), "# Guide\n\n**Buy** the [Vado](https://v.example)".to_owned())
        );
        let (answer, missing) = read("Text", "<p>Text</p>", &Findings::default(), &[]);
        assert_eq!((answer.expect("an answer"), missing.len()), (("Text".to_owned(), "Text".to_owned()), 0));
        // A card whose text neither the stream nor the page gave; alone, an empty answer.
        let blank = Document { title: "Guide".into(), text: String::new() };
        let (answer, missing) = read("Text", "<p>Text</p>", &Findings::default(), std::slice::from_ref(&blank));
        assert_eq!((answer.expect("an answer").0, missing), ("Text".to_owned(), vec!["document_text".to_owned()]));
        let (answer, missing) = read("", "", &Findings::default(), &[blank]);
        assert!(matches!(answer, Err(AskError::EmptyAnswer)));
        assert_eq!(missing, vec!["document_text".to_owned()]);
        // The page's card text when the stream gave none.
        let (answer, missing) = read("", "", &Findings::default(), &[guide()]);
        assert_eq!((answer.expect("an answer").0, missing.len()), ("Guide\n\nBuy the Vado".to_owned(), 0));
        // A document whose edit was not replayed.
        let unsure = Findings { document_edits_missed: 1, ..findings.clone() };
        let (answer, missing) = read("", "", &unsure, &[]);
        assert_eq!(
            (answer.expect("an answer").0, missing),
            ("Guide\n\nBuy the Vado".to_owned(), vec!["document_text".to_owned()])
        );
    }
    use aap_proto::urls::clean_url;

    #[test]
    fn a_prompt_is_typed_without_keys_it_does_not_mean() {
        assert_eq!(
            typed_lines("  a\tb\r\nc\rd\ne\u{E007}f\u{E05D}g\u{E05E}h\u{7}i\u{1b}j\n\nk "),
            ["a b", "c", "d", "e f g\u{E05E}hij", "", "k"]
        );
        assert_eq!(typed_lines("one line"), ["one line"]);
        assert_eq!(typed_lines(""), [""]);
    }

    #[test]
    fn a_prompt_of_key_characters_only_is_refused_and_any_text_is_not() {
        assert!(matches!(nothing_to_type("\u{E007}\u{E004} \u{E000}"), Some(AskError::PromptRefused(_))));
        assert!(nothing_to_type("\u{E007}a").is_none());
        assert!(nothing_to_type("😀").is_none());
    }

    #[test]
    fn a_prompt_over_a_set_limit_is_refused_and_no_limit_refuses_nothing() {
        let over = |prompt: &str, limit, counted| over_limit(prompt, limit, "the box", counted);
        assert!(over(&"x".repeat(100_000), 0, Counted::Chars).is_none(), "0 is no limit");
        assert!(over("ab€", 3, Counted::Chars).is_none(), "characters, not bytes");
        assert!(over("ab€", 3, Counted::Utf16).is_none(), "€ is one UTF-16 unit");
        let said = |error: Option<AskError>| match error {
            Some(AskError::PromptRefused(said)) => said,
            other => panic!("expected PromptRefused, got {other:?}"),
        };
        assert_eq!(said(over("ab€d", 3, Counted::Chars)), "the prompt has 4 characters; the box takes at most 3");
        assert!(over("ab😀", 3, Counted::Chars).is_none());
        assert_eq!(
            said(over("ab😀", 3, Counted::Utf16)),
            "the prompt has 3 characters, 4 as the box counts them (a character past U+FFFF, such as an emoji, \
             counts twice); it takes at most 3"
        );
    }

    #[test]
    fn the_chat_sites_refusals_of_a_long_prompt_are_told_from_their_other_errors()
    -> Result<(), super::super::ManifestError> {
        let chatgpt = Manifest::load("chatgpt", None)?;
        let claude = Manifest::load("claude", None)?;
        let refused = |manifest: &Manifest, text: &str| matches!(classify(manifest, text), AskError::PromptRefused(_));
        assert!(refused(
            &chatgpt,
            "The message you submitted was too long, please reload the conversation and submit something shorter."
        ));
        assert!(refused(&chatgpt, r#"{"detail":{"code":"message_length_exceeds_limit"}}"#));
        assert!(refused(
            &claude,
            "Your message will exceed the length limit for this chat. Try attaching fewer or smaller files or starting a new conversation."
        ));
        // Claude's interrupted answer names "the maximum conversation length" as a cause; it is
        // not a refusal of the prompt, and neither is a rate limit.
        assert!(!refused(
            &claude,
            "Claude\u{2019}s response was interrupted. This can be caused by network problems or exceeding the maximum conversation length."
        ));
        assert!(matches!(classify(&chatgpt, "Too many requests"), AskError::RateLimited(_)));
        assert!(matches!(classify(&chatgpt, "Something went wrong"), AskError::Assistant(_)));
        Ok(())
    }

    fn link(href: &str, text: &str) -> Link {
        Link { href: href.into(), text: text.into() }
    }

    fn source(href: &str, title: &str) -> Source {
        Source { href: href.into(), title: title.into() }
    }

    fn summary(citations: &[Citation]) -> Vec<(&str, &str, &str, u32, bool)> {
        citations.iter().map(|c| (c.url.as_str(), c.title.as_str(), c.domain.as_str(), c.position, c.inline)).collect()
    }

    #[test]
    fn citations_are_cleaned_deduplicated_and_numbered_inline_first() {
        let links = vec![
            link("https://www.techradar.com/a?utm_source=chatgpt.com", "techradar.com"),
            link("https://rtings.com/b?utm_source=chatgpt.com", " rtings.com "),
            link("https://www.techradar.com/a?utm_source=chatgpt.com", "techradar.com"),
            link("javascript:void(0)", "x"),
        ];
        let listed = vec![
            source("https://rtings.com/b?utm_source=chatgpt.com", "Best Laptops - RTINGS"),
            source("https://www.wired.com/c?utm_source=chatgpt.com", " Laptops | WIRED "),
            source("https://www.techradar.com/a", ""),
            source("https://cnet.com/d", ""),
        ];
        assert_eq!(
            summary(&citations(&links, &listed, clean_url)),
            vec![
                ("https://www.techradar.com/a", "techradar.com", "techradar.com", 1, true),
                ("https://rtings.com/b", "Best Laptops - RTINGS", "rtings.com", 2, true),
                ("https://www.wired.com/c", "Laptops | WIRED", "wired.com", 3, false),
                ("https://cnet.com/d", "cnet.com", "cnet.com", 4, false),
            ]
        );
    }

    #[test]
    fn listed_titles_win_over_link_text_and_listed_only_sources_follow() {
        let links = vec![
            link("https://www.rtings.com/b?utm_source=claude.ai", "rtings"),
            link("https://en.wikipedia.org/wiki/A", "wikipedia"),
            link("https://www.rtings.com/b", "rtings"),
        ];
        let sources = vec![
            source("https://www.bbc.com/news/x", " What we know - BBC "),
            source("https://en.wikipedia.org/wiki/A", "A - Wikipedia"),
            source("https://www.rtings.com/b", "Best B - RTINGS"),
            source("javascript:void(0)", "nothing"),
        ];
        assert_eq!(
            summary(&citations(&links, &sources, clean_url)),
            vec![
                ("https://www.rtings.com/b", "Best B - RTINGS", "rtings.com", 1, true),
                ("https://en.wikipedia.org/wiki/A", "A - Wikipedia", "en.wikipedia.org", 2, true),
                ("https://www.bbc.com/news/x", "What we know - BBC", "bbc.com", 3, false),
            ]
        );
    }

    #[test]
    fn titles_fall_back_to_link_text_then_domain() {
        let got =
            citations(&[link("https://example.com/a", " Example "), link("https://example.org/b", "")], &[], clean_url);
        assert_eq!(got[0].title, "Example");
        assert_eq!(got[1].title, "example.org");
    }

    #[test]
    fn chips_without_text_take_the_listed_title_else_the_domain() {
        let chips = vec![
            link("https://www.rtings.com/b?utm_source=perplexity", ""),
            link("https://en.wikipedia.org/wiki/A?utm_source=perplexity", ""),
            link("https://www.rtings.com/b?utm_source=perplexity", ""),
        ];
        let sources = vec![
            source("https://en.wikipedia.org/wiki/A?utm_source=perplexity", "A - Wikipedia"),
            source("https://www.bbc.com/news/x?utm_source=perplexity", " BBC  News "),
            source("https://www.rtings.com/b?utm_source=perplexity", ""),
            source("javascript:void(0)", "nothing"),
        ];
        assert_eq!(
            summary(&citations(&chips, &sources, clean_url)),
            vec![
                ("https://www.rtings.com/b", "rtings.com", "rtings.com", 1, true),
                ("https://en.wikipedia.org/wiki/A", "A - Wikipedia", "en.wikipedia.org", 2, true),
                ("https://www.bbc.com/news/x", "BBC News", "bbc.com", 3, false),
            ]
        );
    }

    #[test]
    fn a_chip_reported_without_text_reads_as_an_empty_one() -> serde_json::Result<()> {
        let chip: Link = serde_json::from_value(serde_json::json!({ "href": "https://a.example/1" }))?;
        assert_eq!((chip.href.as_str(), chip.text.as_str()), ("https://a.example/1", ""));
        Ok(())
    }

    #[test]
    fn two_signals_and_the_settle_window_finish_an_answer() {
        let settle = Duration::from_millis(600);
        let ms = Duration::from_millis;
        // Two signals, not yet settled: text may still grow after the stop control cleared.
        assert_eq!(finished(&[("stop-gone", true), ("action-bar", true)], ms(300), settle), None);
        // One signal, settled: not enough.
        assert_eq!(finished(&[("stop-gone", true), ("action-bar", false)], ms(700), settle), None);
        assert_eq!(
            finished(&[("stop-gone", true), ("action-bar", true), ("stream-done", false)], ms(700), settle),
            Some(vec!["stop-gone".to_owned(), "action-bar".to_owned()])
        );
        // One signal and a long quiet: a page that lost a signal still finishes, later.
        assert_eq!(
            finished(&[("stop-gone", true), ("action-bar", false)], long_quiet(settle), settle),
            Some(vec!["stop-gone".to_owned(), "quiet-long".to_owned()])
        );
        assert_eq!(finished(&[("stop-gone", false)], ms(100_000), settle), None);
        assert_eq!(long_quiet(ms(600)), ms(3000));
        assert_eq!(long_quiet(ms(1000)), ms(4000));
    }

    #[test]
    fn own_pages_are_never_citations() {
        let links = vec![
            link("https://www.perplexity.ai/search/abc", "thread"),
            link("https://a.example/1?utm_source=perplexity", "A"),
        ];
        let got = citations(&links, &[source("https://www.google.com/search?q=x", "search")], clean_url);
        assert_eq!(summary(&got), vec![("https://a.example/1", "A", "a.example", 1, true)]);
        assert_eq!(got[0].found_in, FoundIn::Page);
    }

    #[test]
    fn text_keeps_paragraph_breaks_only() {
        assert_eq!(tidy_text("\n\nHello  \n\n\n\nworld\u{a0}\nagain\n\n"), "Hello\n\nworld\nagain");
        assert!(matches!(answer_text(" \n\u{a0}\n"), Err(AskError::EmptyAnswer)));
    }

    #[test]
    fn progress_restarts_the_quiet_time_on_change_and_keeps_the_first_text_time() {
        let sent_at = Instant::now();
        let mut progress = Progress::new(sent_at);
        let later = |ms| sent_at + Duration::from_millis(ms);
        progress.saw("0:811c9dc5", 0, later(100));
        assert_eq!(progress.ttft(), None);
        progress.saw("5:abc", 5, later(300));
        progress.saw("9:def", 9, later(500));
        progress.saw("9:def", 9, later(900));
        assert_eq!(progress.ttft(), Some(Duration::from_millis(300)));
        assert_eq!(progress.quiet(later(900)), Duration::from_millis(400));
    }
}
