//! What real sites put in a bot's way (a dialog on arrival, a banner over the composer,
//! `alert()` / `confirm()`, "Leave site?", a new tab that takes the focus), on every site of the
//! simulator in a real Chromium: each is got through and the answer read whole; one the bot
//! cannot clear ends the ask with `selector-missing` (role `dismiss`), soon, never at a deadline.

mod common;

use std::time::{Duration, Instant};

use aap_bot::{Adapter, AnyAdapter, AskError, Browser};
use aap_simulator::{Simulator, SimulatorConfig, Site, answer_for};
use anyhow::{Context, Result};
use common::{collapse, log_in, override_adapter, short_pause, with_browser};
use serde_json::Value;
use thirtyfour::error::WebDriverErrorInner;

/// One interruption and the knob that sets it off.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Modal,
    Banner,
    Alert,
    Confirm,
    BeforeUnload,
    NewWindow,
}

impl Kind {
    /// The page's counter of it (sessionStorage `aap-sim-interruptions`).
    fn name(self) -> &'static str {
        match self {
            Kind::Modal => "modal",
            Kind::Banner => "banner",
            Kind::Alert => "alert",
            Kind::Confirm => "confirm",
            Kind::BeforeUnload => "beforeunload",
            Kind::NewWindow => "new_window",
        }
    }

    fn on(self, config: SimulatorConfig) -> SimulatorConfig {
        match self {
            Kind::Modal => SimulatorConfig { modal: true, ..config },
            Kind::Banner => SimulatorConfig { banner: true, ..config },
            Kind::Alert => SimulatorConfig { alert: true, ..config },
            Kind::Confirm => SimulatorConfig { confirm: true, ..config },
            Kind::BeforeUnload => SimulatorConfig { beforeunload: true, ..config },
            Kind::NewWindow => SimulatorConfig { new_window: true, ..config },
        }
    }
}

/// Runs the test's own `script` on the page. A JavaScript dialog may open after the bot has its
/// answer (a marker's dialog comes 600 ms after it is set off, and Google's page sets it off on
/// arrival): the browser then refuses the script ("unexpected alert open") and dismisses the
/// dialog, so it runs once more.
async fn execute(browser: &Browser, script: &str) -> Result<Value> {
    let driver = browser.driver();
    let ret = match driver.execute(script, vec![]).await {
        Err(error) if matches!(error.as_inner(), WebDriverErrorInner::UnexpectedAlertOpen(_)) => {
            if let Err(error) = driver.accept_alert().await
                && !matches!(error.as_inner(), WebDriverErrorInner::NoSuchAlert(_))
            {
                return Err(error.into());
            }
            driver.execute(script, vec![]).await?
        }
        ran => ran?,
    };
    Ok(ret.json().clone())
}

/// What the pages of this tab set off so far, by kind.
async fn counts(browser: &Browser) -> Result<Value> {
    execute(browser, "return JSON.parse(sessionStorage.getItem('aap-sim-interruptions') || '{}');").await
}

/// Forgets what the profile remembers (a dialog or banner once closed stays closed) and what
/// the tab counted, so the next page shows its interruptions again.
async fn forget(browser: &Browser) -> Result<()> {
    execute(
        browser,
        "localStorage.removeItem('aap-sim-modal-dismissed'); localStorage.removeItem('aap-sim-banner-dismissed'); \
         sessionStorage.removeItem('aap-sim-interruptions');",
    )
    .await?;
    Ok(())
}

/// Asks `prompt` and checks the answer is the simulator's, whole, and that the bot is still on
/// its own window, the only one left.
async fn answered(browser: &Browser, adapter: &AnyAdapter, prompt: &str, what: &str) -> Result<()> {
    let driver = browser.driver();
    let own = driver.window().await?;
    let captured = match adapter.ask(driver, prompt).await {
        Ok(captured) => captured,
        Err(error) => {
            // Where the bot was when it failed: which window, which page.
            let on = driver.window().await;
            let windows = driver.windows().await;
            let url = driver.current_url().await.map(|url| url.to_string());
            return Err(anyhow::Error::new(error)).with_context(|| {
                format!("{what}: {prompt:?} (on window {on:?} of {windows:?}, its own {own:?}, at {url:?})")
            });
        }
    };
    let expected = answer_for(prompt, true);
    assert_eq!(collapse(&captured.response_text), collapse(&expected.plain_text()), "{what}");
    assert!(!captured.citations.is_empty(), "{what}: the sources are read too");
    assert_eq!(driver.windows().await?, vec![own.clone()], "{what}: only the bot's window is left");
    assert_eq!(driver.window().await?, own, "{what}: the bot is on its own window");
    Ok(())
}

/// Asks `prompt`, which must end in `selector-missing` of role `dismiss` well before any
/// deadline of the manifest.
async fn cannot_clear(browser: &Browser, adapter: &AnyAdapter, prompt: &str, what: &str) -> Result<()> {
    let started = Instant::now();
    let error = adapter.ask(browser.driver(), prompt).await.err().with_context(|| format!("{what} must fail"))?;
    assert!(matches!(error, AskError::SelectorMissing("dismiss")), "{what}: {error:?}");
    assert_eq!(error.class(), "selector-missing");
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "{what}: said soon, not at a deadline: {:?}",
        started.elapsed()
    );
    Ok(())
}

/// The knob of `kind` on `site`: got through, the answer read whole, and the interruption was
/// really in the way (the page counted it). "Leave site?" bites when the bot leaves the page for
/// its next conversation, so that one asks twice.
async fn gets_through(site: Site, kind: Kind) -> Result<()> {
    with_browser(site, kind.on(short_pause()), async |browser: &Browser, sim: &Simulator, adapter: &AnyAdapter| {
        log_in(browser, sim, "operator").await?;
        let what = format!("{site} {kind:?}");
        answered(browser, adapter, "Which laptops are best for students?", &what).await?;
        let seen = counts(browser).await?;
        assert!(seen[kind.name()].as_u64().unwrap_or(0) >= 1, "{what}: it was put in the way: {seen}");
        if let Kind::BeforeUnload = kind {
            answered(browser, adapter, "Which tablets are best for students?", &what).await?;
        }
        Ok(())
    })
    .await
}

/// The markers, all in one prompt: each is put in the way while the answer streams.
async fn gets_through_the_markers(site: Site) -> Result<()> {
    // The bot's log with a failure's output (nextest shows it for a failed test only).
    let _ = tracing_subscriber::fmt().with_env_filter("aap_bot=debug").with_test_writer().try_init();
    with_browser(site, short_pause(), async |browser: &Browser, sim: &Simulator, adapter: &AnyAdapter| {
        log_in(browser, sim, "operator").await?;
        let prompt = "Which phones have the best cameras? [[modal]] [[banner]] [[alert]] [[new-window]]";
        answered(browser, adapter, prompt, &format!("{site} markers")).await?;
        let seen = counts(browser).await?;
        for kind in ["modal", "banner", "alert", "new_window"] {
            assert!(seen[kind].as_u64().unwrap_or(0) >= 1, "{site} markers: {kind} was put in the way: {seen}");
        }
        Ok(())
    })
    .await
}

/// A manifest that knows no close control: Escape closes the dialog, and the banner (which
/// Escape does not close) goes by its buttons' labels.
async fn gets_through_without_manifest_controls(site: Site) -> Result<()> {
    with_browser(site, short_pause(), async |browser: &Browser, sim: &Simulator, _: &AnyAdapter| {
        log_in(browser, sim, "operator").await?;
        let dir = tempfile::tempdir()?;
        let blind = override_adapter(dir.path(), sim, site.id(), |manifest| {
            manifest.selectors.insert("dismiss".to_owned(), vec!["#no-such-close-control".to_owned()]);
        })?;
        for kind in [Kind::Modal, Kind::Banner] {
            sim.set_config(kind.on(short_pause()));
            let what = format!("{site} {kind:?} without manifest controls");
            answered(browser, &blind, &format!("Which monitors are best ({})?", kind.name()), &what).await?;
            assert_eq!(counts(browser).await?[kind.name()], 1, "{what}");
            forget(browser).await?;
        }
        Ok(())
    })
    .await
}

/// The dialog and the banner that cannot be closed: `selector-missing` (`dismiss`), soon.
async fn gives_up_on_what_cannot_be_closed(site: Site) -> Result<()> {
    with_browser(site, short_pause(), async |browser: &Browser, sim: &Simulator, adapter: &AnyAdapter| {
        log_in(browser, sim, "operator").await?;
        for kind in [Kind::Modal, Kind::Banner] {
            sim.set_config(SimulatorConfig { sticky: true, ..kind.on(short_pause()) });
            cannot_clear(browser, adapter, "Which keyboards are best?", &format!("{site} sticky {kind:?}")).await?;
        }
        assert_eq!(sim.stats().answers_for_prompt("Which keyboards are best?"), 0, "never asked");
        Ok(())
    })
    .await
}

/// Every test above for one site, as a module named after it.
macro_rules! site_tests {
    ($module:ident, $site:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn gets_through_a_modal_dialog() -> Result<()> {
                gets_through($site, Kind::Modal).await
            }

            #[tokio::test]
            async fn gets_through_a_banner_over_the_composer() -> Result<()> {
                gets_through($site, Kind::Banner).await
            }

            #[tokio::test]
            async fn gets_through_an_alert() -> Result<()> {
                gets_through($site, Kind::Alert).await
            }

            #[tokio::test]
            async fn gets_through_a_confirm() -> Result<()> {
                gets_through($site, Kind::Confirm).await
            }

            #[tokio::test]
            async fn gets_past_leave_site() -> Result<()> {
                gets_through($site, Kind::BeforeUnload).await
            }

            #[tokio::test]
            async fn stays_on_its_window_when_the_page_opens_another() -> Result<()> {
                gets_through($site, Kind::NewWindow).await
            }

            #[tokio::test]
            async fn gets_through_the_markers_mid_answer() -> Result<()> {
                gets_through_the_markers($site).await
            }

            #[tokio::test]
            async fn gets_through_by_escape_and_labels_without_manifest_controls() -> Result<()> {
                gets_through_without_manifest_controls($site).await
            }

            #[tokio::test]
            async fn gives_up_with_selector_missing_on_what_cannot_be_closed() -> Result<()> {
                gives_up_on_what_cannot_be_closed($site).await
            }
        }
    };
}

site_tests!(chatgpt, Site::ChatGpt);
site_tests!(claude, Site::Claude);
site_tests!(perplexity, Site::Perplexity);
site_tests!(google_ai_overview, Site::GoogleAiOverview);
