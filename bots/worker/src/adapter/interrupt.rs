//! Getting through what a site puts in the bot's way, for every adapter alike: JavaScript
//! dialogs (`alert`, `confirm`, "Leave site?"), windows the page opened, and dialogs or banners
//! over the composer and the send control.
//!
//! The adapters' [`super::common::PageScript`] calls [`Guard::clear`] before it types and
//! whenever an action of the bot meets an interruption (a click intercepted, "unexpected alert
//! open", a composer that took no keys while a dialog holds the focus), then tries the action
//! again; after each click or key press it closes any window that click opened (Chromium's
//! popup blocker lets a page open one only from a user's gesture, so nothing else opens them).
//! An overlay that neither the manifest's `dismiss` controls, Escape, nor a control labelled
//! close / not now / reject / accept takes away is a page the manifest does not know:
//! [`AskError::SelectorMissing`] of role `dismiss`, which fails the task at once with an alert.

use std::time::{Duration, Instant};

use serde::Deserialize;
use thirtyfour::error::{WebDriverError, WebDriverErrorInner};
use thirtyfour::prelude::*;

use super::{AskError, Manifest};

/// dom.js, then the blocker finder.
const SCRIPT: &str = concat!(include_str!("dom.js"), include_str!("interrupt.js"));

/// Rounds of dismissing before an overlay counts as one the bot cannot clear.
const MAX_ROUNDS: usize = 4;

/// Longest wait for the page to take a dialog or banner away after a dismiss.
const GONE_WAIT: Duration = Duration::from_millis(1500);

/// JavaScript dialogs answered in a row before the page counts as looping on them.
const MAX_JS_DIALOGS: usize = 10;

/// Something in the way, as the page script reports it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub(super) struct Blocker {
    /// `dialog` (a modal dialog) or `cover` (a fixed layer over the composer or send control).
    pub(super) kind: String,
    /// Its label or first words, for the logs.
    pub(super) text: String,
}

/// Whether `error` may be an interruption the guard can clear: a JavaScript dialog, a click
/// that landed on something over the element, keys an element could not take (a dialog's
/// focus trap).
pub(super) fn is_interruption(error: &WebDriverError) -> bool {
    matches!(
        error.as_inner(),
        WebDriverErrorInner::UnexpectedAlertOpen(_)
            | WebDriverErrorInner::ElementClickIntercepted(_)
            | WebDriverErrorInner::ElementNotInteractable(_)
    )
}

/// An adapter's way through interruptions: its manifest's selectors (`dismiss`, and the
/// composer, send control, sources panel and login wall the blocker finder looks at) and poll.
#[derive(Debug, Clone)]
pub(super) struct Guard {
    assistant: String,
    selectors: serde_json::Value,
    poll: Duration,
}

impl Guard {
    pub(super) fn new(manifest: &Manifest) -> Guard {
        Guard {
            assistant: manifest.assistant.clone(),
            selectors: manifest.selectors_json(),
            poll: manifest.timing.poll(),
        }
    }

    /// Answers open JavaScript dialogs (see [`answer_js_dialogs`]).
    pub(super) async fn answer_js_dialogs(&self, driver: &WebDriver) -> Result<usize, AskError> {
        answer_js_dialogs(driver, &self.assistant).await
    }

    /// Closes the windows the page opened (see [`own_window`]).
    pub(super) async fn own_window(&self, driver: &WebDriver) -> Result<usize, AskError> {
        own_window(driver, &self.assistant).await
    }

    async fn run(&self, driver: &WebDriver, mode: &str) -> WebDriverResult<ScriptRet> {
        driver.execute(SCRIPT, vec![serde_json::json!(mode), self.selectors.clone()]).await
    }

    /// What is in the way now (the page is asked after any JavaScript dialog is answered).
    pub(super) async fn blockers(&self, driver: &WebDriver) -> Result<Vec<Blocker>, AskError> {
        match self.run(driver, "blockers").await {
            Ok(ret) => Ok(ret.convert()?),
            Err(error) if is_interruption(&error) => {
                answer_js_dialogs(driver, &self.assistant).await?;
                Ok(self.run(driver, "blockers").await?.convert()?)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Clears every interruption: answers JavaScript dialogs, goes back to the bot's window
    /// (closing the others), and dismisses dialogs and banners over the page. Returns how many
    /// it cleared; [`AskError::SelectorMissing`] (`dismiss`) when an overlay stays.
    pub(super) async fn clear(&self, driver: &WebDriver) -> Result<usize, AskError> {
        let mut cleared = answer_js_dialogs(driver, &self.assistant).await?;
        cleared += own_window(driver, &self.assistant).await?;
        cleared += self.dismiss_overlays(driver).await?;
        Ok(cleared)
    }

    /// Dismisses dialogs and banners in the way: the manifest's `dismiss` controls first, then
    /// Escape (once, for a dialog), then a control labelled as closing; each dismiss is followed by a wait
    /// (polled) for the page to take the overlay away.
    async fn dismiss_overlays(&self, driver: &WebDriver) -> Result<usize, AskError> {
        let mut cleared = 0;
        let mut escaped = false;
        for _ in 0..MAX_ROUNDS {
            let blockers = self.blockers(driver).await?;
            let Some(blocker) = blockers.first() else {
                return Ok(cleared);
            };
            let how = if self.click(driver, "dismiss_known").await? {
                "manifest"
            } else if !escaped && blocker.kind == "dialog" {
                // Dialogs close on Escape; banners do not, so they go straight to their labels.
                escaped = true;
                driver.action_chain().send_keys(Key::Escape).perform().await?;
                "escape"
            } else if self.click(driver, "dismiss_generic").await? {
                "generic"
            } else {
                tracing::warn!(kind = %blocker.kind, text = %blocker.text, "an overlay the bot cannot dismiss covers the page");
                return Err(AskError::SelectorMissing("dismiss"));
            };
            if self.gone(driver, &blockers).await? {
                tracing::info!(kind = %blocker.kind, text = %blocker.text, how, "dismissed an overlay");
                crate::metrics::interruption_cleared(&self.assistant, &blocker.kind);
                cleared += 1;
            } else {
                tracing::debug!(kind = %blocker.kind, how, "the overlay stayed");
            }
        }
        let left = self.blockers(driver).await?;
        match left.first() {
            None => Ok(cleared),
            Some(blocker) => {
                tracing::warn!(kind = %blocker.kind, text = %blocker.text, "an overlay keeps coming back over the page");
                Err(AskError::SelectorMissing("dismiss"))
            }
        }
    }

    /// Waits (polling, at most [`GONE_WAIT`]) until the page shows other blockers than `before`.
    async fn gone(&self, driver: &WebDriver, before: &[Blocker]) -> Result<bool, AskError> {
        let deadline = Instant::now() + GONE_WAIT;
        loop {
            if self.blockers(driver).await? != before {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Clicks the control the script returns in `mode`; false when there is none or it went
    /// away before the click.
    async fn click(&self, driver: &WebDriver, mode: &str) -> Result<bool, AskError> {
        let ret = self.run(driver, mode).await?;
        if ret.json().is_null() {
            return Ok(false);
        }
        match ret.element()?.click().await {
            Ok(()) => Ok(true),
            Err(error)
                if matches!(
                    error.as_inner(),
                    WebDriverErrorInner::StaleElementReference(_)
                        | WebDriverErrorInner::ElementClickIntercepted(_)
                        | WebDriverErrorInner::ElementNotInteractable(_)
                ) =>
            {
                tracing::debug!(%error, mode, "the dismiss click did not land");
                Ok(false)
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// The page's address. The browser refuses the command while a JavaScript dialog is open (and
/// dismisses it): then the dialogs are answered and it is asked once more.
pub(super) async fn current_url(driver: &WebDriver, assistant: &str) -> WebDriverResult<url::Url> {
    match driver.current_url().await {
        Err(error) if matches!(error.as_inner(), WebDriverErrorInner::UnexpectedAlertOpen(_)) => {
            if let Err(answering) = answer_js_dialogs(driver, assistant).await {
                tracing::debug!(%answering, "cannot answer the javascript dialog");
            }
            driver.current_url().await
        }
        asked => asked,
    }
}

/// Accepts every open JavaScript dialog: OK to an `alert`, OK to a `confirm` (the page goes on
/// as its user would let it), "Leave" to a `beforeunload` (the bot has moved on). Returns how
/// many there were (counted for `assistant`).
pub(crate) async fn answer_js_dialogs(driver: &WebDriver, assistant: &str) -> Result<usize, AskError> {
    let mut answered = 0;
    while answered < MAX_JS_DIALOGS {
        let text = match driver.get_alert_text().await {
            Ok(text) => text,
            Err(error) if matches!(error.as_inner(), WebDriverErrorInner::NoSuchAlert(_)) => return Ok(answered),
            Err(error) => return Err(error.into()),
        };
        match driver.accept_alert().await {
            Ok(()) => {}
            // Gone already (the browser answered it as the command failed): nothing to do.
            Err(error) if matches!(error.as_inner(), WebDriverErrorInner::NoSuchAlert(_)) => return Ok(answered),
            Err(error) => return Err(error.into()),
        }
        tracing::info!(text = %text.chars().take(120).collect::<String>(), "accepted a javascript dialog");
        crate::metrics::interruption_cleared(assistant, "js-dialog");
        answered += 1;
    }
    tracing::warn!("the page keeps opening javascript dialogs");
    Err(AskError::SelectorMissing("dismiss"))
}

/// Closes every window but the bot's own (the one WebDriver is on) and stays on its own; when
/// the page closed that one, goes on in a remaining window. Returns how many it closed (counted
/// for `assistant`). It ends on its own window even when closing another failed: a look on
/// another window finds no answer, and the next call would take that window for the bot's own
/// and close the bot's. A JavaScript dialog open on the bot's page is answered first, and
/// nothing of the windows it closes is read: with such a dialog open, listing the windows while
/// the page's new tab loaded, or reading another tab's title, waited 60–120 s for chromedriver.
pub(super) async fn own_window(driver: &WebDriver, assistant: &str) -> Result<usize, AskError> {
    // A dialog open on the bot's page holds the renderer it shares with a tab it opened: while
    // that tab loads, even the list of windows waited 60–120 s for chromedriver. Answered first.
    answer_js_dialogs(driver, assistant).await?;
    let windows = driver.windows().await?;
    if windows.len() <= 1 {
        return Ok(0);
    }
    let own = match driver.window().await {
        Ok(own) if windows.contains(&own) => own,
        Ok(_) => windows[0].clone(),
        Err(error) if matches!(error.as_inner(), WebDriverErrorInner::NoSuchWindow(_)) => windows[0].clone(),
        Err(error) => return Err(error.into()),
    };
    let mut closed = 0;
    let mut failed = None;
    for window in windows.iter().filter(|window| **window != own) {
        let closing = async {
            driver.switch_to_window(window.clone()).await?;
            driver.close_window().await
        };
        match closing.await {
            Ok(_) => {
                tracing::info!("closed a window the page opened");
                crate::metrics::interruption_cleared(assistant, "window");
                closed += 1;
            }
            Err(error) => {
                failed = Some(error);
                break;
            }
        }
    }
    driver.switch_to_window(own).await?;
    match failed {
        Some(error) => Err(error.into()),
        None => Ok(closed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::browser::testing::with_a_dialog_open;

    /// A click on the bot's page opens a tab (the simulator's upsell page, same origin: the two
    /// share a renderer) and a JavaScript dialog at once (the simulator's `[[new-window]]` and
    /// `[[alert]]`): the tab is closed, the dialog answered and the bot stays on its own page,
    /// soon. Before, with the dialog open while the tab loaded, listing the windows waited
    /// 60–120 s for chromedriver at every look (261 s in this test), and so did reading the other
    /// tab's title ("Timed out receiving message from renderer"); and a failure while on the other tab left the bot
    /// there (its next look found "no element for role answer", the one after that closed the
    /// bot's own tab).
    #[tokio::test]
    async fn a_window_is_closed_past_javascript_dialogs_and_the_bot_stays_on_its_own() -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sim = aap_simulator::Simulator::start(listener, aap_simulator::Site::ChatGpt, Default::default()).await?;
        let browser = crate::browser::Browser::launch(&crate::browser::BrowserOptions::default()).await?;
        let driver = browser.driver();
        let checked = async {
            driver.goto(&sim.base_url).await?;
            let own = driver.window().await?;
            // A control of the page's own (a click is a user gesture: the popup blocker lets it).
            let open = format!(
                "const b = document.createElement('button'); b.id = 'aap-test-open'; b.textContent = 'Upgrade'; \
                 b.style = 'position:fixed;top:0;left:0;z-index:2147483647'; \
                 b.onclick = () => {{ window.open({:?}, '_blank'); setTimeout(() => window.alert('Upgrade now?'), 0); }}; \
                 document.body.appendChild(b);",
                aap_simulator::POPUP_PATH
            );
            driver.execute(open, vec![]).await?;
            driver.find(thirtyfour::By::Id("aap-test-open")).await?.click().await?;
            let mut waited = 0;
            while driver.get_alert_text().await.is_err() {
                waited += 1;
                anyhow::ensure!(waited < 200, "the dialog never opened");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            let started = std::time::Instant::now();
            let mut closed = 0;
            // The browser may list the new tab a moment late: looked at until it is gone.
            while closed == 0 && started.elapsed() < std::time::Duration::from_secs(10) {
                closed += own_window(driver, "chatgpt").await?;
                anyhow::ensure!(driver.window().await? == own, "not on its own window");
            }
            anyhow::ensure!(closed == 1, "the page's tab was closed: {closed}");
            anyhow::ensure!(driver.windows().await? == vec![own], "only the bot's window is left");
            // Not a speed check: every look waited 60–120 s for chromedriver.
            anyhow::ensure!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());
            anyhow::ensure!(driver.current_url().await?.as_str().starts_with(&sim.base_url), "the dialog is answered");
            Ok(())
        }
        .await;
        browser.close().await;
        sim.shutdown().await;
        checked
    }

    /// A dialog opened by the page (as real sites do at any moment) while the bot reads the
    /// page's address: the browser refuses the command and dismisses the dialog, and the
    /// address is read once more (before, the login check failed and Google's relative source
    /// links were dropped).
    #[tokio::test]
    async fn the_address_is_read_past_a_javascript_dialog() -> anyhow::Result<()> {
        with_a_dialog_open("<p>an assistant's page</p>", "Your session was refreshed.", async |driver| {
            let url = current_url(driver, "chatgpt").await?;
            anyhow::ensure!(url.as_str().starts_with("data:text/html,"), "read {url}");
            let left = driver.get_alert_text().await;
            anyhow::ensure!(
                left.as_ref().is_err_and(|e| matches!(e.as_inner(), WebDriverErrorInner::NoSuchAlert(_))),
                "a dialog was left open: {left:?}"
            );
            Ok(())
        })
        .await
    }
}
