//! What the adapter tests share: a simulator of one site, a real Chromium, and a logged-in
//! session, always cleaned up.
#![allow(dead_code)]

use std::panic::AssertUnwindSafe;

use aap_bot::{AnyAdapter, Browser, BrowserOptions};
use aap_simulator::{Simulator, SimulatorConfig, Site};
use anyhow::{Context, Result};
use futures::FutureExt;

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
