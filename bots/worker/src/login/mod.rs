//! Logging an assistant account in by hand: a headful Chromium on the assistant's login page,
//! watched through CDP's screencast and driven by forwarded input (remote login), or shown on
//! the operator's own desktop (`aap session capture`). Once the adapter's probe sees a
//! logged-in page on the assistant's own origin, the browser's storage state (cookies of every
//! domain, localStorage of every origin visited) is captured.
//!
//! The browser is started through chromedriver like the bots' ([`Browser`]), so the adapter's
//! page probe runs over WebDriver exactly as when a bot opens a conversation; the screencast and
//! input go over the page's own DevTools websocket ([`cdp::Cdp`]).

pub mod cdp;
pub mod input;
pub mod storage;

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use self::cdp::{Cdp, CdpError, CdpEvent};
pub use self::input::{Input, InvalidInput, KeyAction, MouseAction, MouseButton};
use crate::adapter::{Adapter, AnyAdapter, PageState};
use crate::browser::{Browser, BrowserError, BrowserOptions};
use crate::storage_state::StorageState;

/// JPEG quality of screen frames: legible text at a few tens of KiB a frame.
const FRAME_QUALITY: u32 = 70;

/// Why a login browser failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// The browser did not start.
    #[error(transparent)]
    Browser(#[from] BrowserError),
    /// A DevTools command failed.
    #[error("devtools: {0}")]
    Cdp(#[from] CdpError),
    /// A WebDriver command failed.
    #[error("webdriver: {}", crate::browser::brief(.0))]
    WebDriver(#[from] thirtyfour::error::WebDriverError),
    /// The login has ended; the browser is gone.
    #[error("the login has ended")]
    Ended,
}

/// One screen frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// JPEG bytes.
    pub jpeg: Vec<u8>,
    /// Size in pixels.
    pub width: u32,
    /// Size in pixels.
    pub height: u32,
}

/// A Chromium on an assistant's login page, with its DevTools connection.
pub struct LoginBrowser {
    browser: Browser,
    cdp: Cdp,
    adapter: AnyAdapter,
    viewport: (u32, u32),
    /// Every origin a page of this browser has shown, for their localStorage.
    origins: BTreeSet<String>,
}

impl std::fmt::Debug for LoginBrowser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginBrowser").field("assistant", &self.adapter.assistant()).finish_non_exhaustive()
    }
}

impl LoginBrowser {
    /// Starts a headful browser with `options` (proxy, user agent, display) and connects to its
    /// page over DevTools. Nothing is loaded yet: [`LoginBrowser::open_login_page`].
    pub async fn launch(adapter: AnyAdapter, options: &BrowserOptions) -> Result<LoginBrowser, LoginError> {
        let options = BrowserOptions { headful: true, ..options.clone() };
        let browser = Browser::launch(&options).await?;
        match Self::connect(&browser).await {
            Ok((cdp, viewport)) => Ok(LoginBrowser { browser, cdp, adapter, viewport, origins: BTreeSet::new() }),
            Err(error) => {
                browser.close().await;
                Err(error)
            }
        }
    }

    async fn connect(browser: &Browser) -> Result<(Cdp, (u32, u32)), LoginError> {
        let address = browser
            .devtools_address()
            .ok_or_else(|| CdpError::Connect("chromedriver reported no debuggerAddress".to_owned()))?;
        let cdp = Cdp::connect(&cdp::page_websocket(&address).await?).await?;
        cdp.call("Page.enable", json!({})).await?;
        let size: Vec<u32> =
            browser.driver().execute("return [window.innerWidth, window.innerHeight];", vec![]).await?.convert()?;
        let viewport = match size.as_slice() {
            [width, height] => (*width, *height),
            _ => (0, 0),
        };
        Ok((cdp, viewport))
    }

    /// The browser's DevTools websocket of the page (for tests and `aap session capture`'s
    /// log line).
    pub async fn devtools_websocket(&self) -> Option<String> {
        cdp::page_websocket(&self.browser.devtools_address()?).await.ok()
    }

    /// The viewport in CSS pixels: the coordinate space of input.
    pub fn viewport(&self) -> (u32, u32) {
        self.viewport
    }

    /// The process id of the browser's own Xvfb, when it started one.
    pub fn display_pid(&self) -> Option<u32> {
        self.browser.own_display().and_then(|(_, pid)| pid)
    }

    /// Navigates to the assistant's login page without waiting for it to load.
    pub async fn open_login_page(&self) -> Result<String, LoginError> {
        let url = self.adapter.login_url();
        self.cdp.call("Page.navigate", json!({ "url": url })).await?;
        Ok(url)
    }

    /// DevTools events from now on (screen frames, navigations).
    pub fn events(&self) -> broadcast::Receiver<CdpEvent> {
        self.cdp.events()
    }

    /// Starts streaming the viewport as JPEG frames (`Page.screencastFrame` events, each to be
    /// acknowledged with [`LoginBrowser::ack_frame`] before the next comes).
    pub async fn start_screencast(&self) -> Result<(), LoginError> {
        let (width, height) = self.viewport;
        self.cdp
            .call(
                "Page.startScreencast",
                json!({ "format": "jpeg", "quality": FRAME_QUALITY, "maxWidth": width, "maxHeight": height }),
            )
            .await?;
        Ok(())
    }

    /// Acknowledges a frame so the browser sends the next.
    pub async fn ack_frame(&self, session_id: i64) -> Result<(), LoginError> {
        self.cdp.call("Page.screencastFrameAck", json!({ "sessionId": session_id })).await?;
        Ok(())
    }

    /// Performs one input event on the page.
    pub async fn input(&self, input: &Input) -> Result<(), LoginError> {
        for (method, params) in input.commands() {
            self.cdp.call(method, params).await?;
        }
        Ok(())
    }

    /// Notes a page's origin, whose localStorage the capture then reads.
    pub fn note_url(&mut self, url: &str) {
        if let Ok(url) = url::Url::parse(url)
            && matches!(url.scheme(), "http" | "https")
        {
            self.origins.insert(url.origin().ascii_serialization());
        }
    }

    /// What the page shows now by the adapter's probe, and its address.
    pub async fn look(&mut self) -> Result<(PageState, String), LoginError> {
        let url = self.browser.driver().current_url().await?.to_string();
        self.note_url(&url);
        let state = self.adapter.login_state(self.browser.driver()).await?;
        Ok((state, url))
    }

    /// The storage state: the cookies of every domain (`Network.getAllCookies`) and the
    /// localStorage of each origin a page showed (`DOMStorage.getDOMStorageItems`).
    pub async fn storage_state(&self) -> Result<StorageState, LoginError> {
        let cookies = self.cdp.call("Network.getAllCookies", json!({})).await?;
        let cookies = cookies.get("cookies").and_then(Value::as_array).cloned().unwrap_or_default();
        self.cdp.call("DOMStorage.enable", json!({})).await?;
        let mut local_storage = Vec::new();
        for origin in &self.origins {
            let items = match self.local_storage_of(origin).await {
                Ok(items) => items,
                Err(error) => {
                    tracing::debug!(%error, origin, "cannot read the origin's localStorage");
                    Vec::new()
                }
            };
            local_storage.push((origin.clone(), items));
        }
        Ok(storage::from_cdp(&cookies, local_storage))
    }

    async fn local_storage_of(&self, origin: &str) -> Result<Vec<(String, String)>, CdpError> {
        // Newer Chromium names storage by key (origin + "/"), older by security origin.
        let by_key = json!({ "storageId": { "storageKey": format!("{origin}/"), "isLocalStorage": true } });
        let by_origin = json!({ "storageId": { "securityOrigin": origin, "isLocalStorage": true } });
        let items = match self.cdp.call("DOMStorage.getDOMStorageItems", by_key).await {
            Ok(items) => items,
            Err(_) => self.cdp.call("DOMStorage.getDOMStorageItems", by_origin).await?,
        };
        Ok(items
            .get("entries")
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|entry| Some((entry.get(0)?.as_str()?.to_owned(), entry.get(1)?.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Closes the browser, its chromedriver, its Xvfb and its profile.
    pub async fn close(self) {
        drop(self.cdp);
        self.browser.close().await;
    }
}

/// What the driver of a remote login asks of it.
#[derive(Debug)]
pub enum Command {
    /// Perform this input; the answer says whether the browser took it.
    Input(Input, oneshot::Sender<Result<(), LoginError>>),
    /// Close the browser; nothing is stored.
    Cancel,
}

/// What happens during a remote login, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The browser is up on the login page; input is in this space (CSS pixels).
    Waiting {
        /// Viewport width.
        width: u32,
        /// Viewport height.
        height: u32,
        /// The login page's address.
        url: String,
    },
    /// A new screen frame.
    Frame(Frame),
    /// The probe's look changed.
    Page {
        /// The adapter's view.
        state: PageState,
        /// The page's address.
        url: String,
    },
    /// The probe saw a logged-in page: the storage state is being read.
    Capturing,
}

/// How a remote login ended. The browser is closed in every case.
#[derive(Debug)]
pub enum Ended {
    /// Logged in: the storage state to store.
    LoggedIn(StorageState),
    /// No input for the idle limit.
    Abandoned,
    /// Cancelled (or its driver went away).
    Cancelled,
    /// The browser failed.
    Failed(String),
}

/// How to run one remote login.
#[derive(Debug, Clone)]
pub struct RemoteLoginSpec {
    /// The assistant's adapter (its login page, its probe).
    pub adapter: AnyAdapter,
    /// Browser options with the account's proxy and user agent; `own_display` is forced.
    pub browser: BrowserOptions,
    /// No input for this long abandons the login.
    pub idle: Duration,
    /// How often the page is probed.
    pub poll: Duration,
}

/// Runs one remote login to its end: launches the browser on the login page, streams its
/// screen, performs `commands`, probes the page, and captures the storage state once logged
/// in. `update` hears every step; the browser is closed before this returns.
pub async fn run_remote_login(
    spec: RemoteLoginSpec,
    mut commands: mpsc::Receiver<Command>,
    mut update: impl FnMut(Update) + Send,
) -> Ended {
    let options = BrowserOptions { own_display: true, headful: true, ..spec.browser.clone() };
    let mut browser = match LoginBrowser::launch(spec.adapter.clone(), &options).await {
        Ok(browser) => browser,
        Err(error) => return Ended::Failed(format!("the browser did not start: {error}")),
    };
    let ended = drive(&mut browser, &spec, &mut commands, &mut update).await;
    browser.close().await;
    ended
}

async fn drive(
    browser: &mut LoginBrowser,
    spec: &RemoteLoginSpec,
    commands: &mut mpsc::Receiver<Command>,
    update: &mut (impl FnMut(Update) + Send),
) -> Ended {
    let mut events = browser.events();
    let started = async {
        browser.start_screencast().await?;
        browser.open_login_page().await
    };
    let url = match started.await {
        Ok(url) => url,
        Err(error) => return Ended::Failed(format!("the login page did not open: {error}")),
    };
    let (width, height) = browser.viewport();
    update(Update::Waiting { width, height, url });
    let mut idle_deadline = Instant::now() + spec.idle;
    let mut poll = tokio::time::interval(spec.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_look: Option<(PageState, String)> = None;
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Input(input, reply)) => {
                    idle_deadline = Instant::now() + spec.idle;
                    let _ = reply.send(browser.input(&input).await);
                }
                Some(Command::Cancel) | None => return Ended::Cancelled,
            },
            event = events.recv() => match event {
                Ok(event) => {
                    if let Err(error) = on_event(browser, event, update).await {
                        return Ended::Failed(format!("the screencast failed: {error}"));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ended::Failed("the browser went away".to_owned()),
            },
            _ = poll.tick() => match browser.look().await {
                Ok((PageState::LoggedIn, url)) => {
                    update(Update::Page { state: PageState::LoggedIn, url });
                    update(Update::Capturing);
                    return match browser.storage_state().await {
                        Ok(state) => Ended::LoggedIn(state),
                        Err(error) => Ended::Failed(format!("cannot read the storage state: {error}")),
                    };
                }
                Ok(look) => {
                    if last_look.as_ref() != Some(&look) {
                        update(Update::Page { state: look.0, url: look.1.clone() });
                        last_look = Some(look);
                    }
                }
                // A probe cannot run while the page navigates; a dead browser shows in the
                // screencast's end and in input.
                Err(LoginError::WebDriver(error)) if !crate::browser::is_fatal(&error) => {
                    tracing::debug!(%error, "login page probe failed; retrying");
                }
                Err(error) => return Ended::Failed(format!("the browser failed: {error}")),
            },
            _ = tokio::time::sleep_until(idle_deadline) => return Ended::Abandoned,
        }
    }
}

/// Waits on a visible browser (`aap session capture`, on the operator's desktop) until the
/// operator has logged in, then reads its storage state. `ready` hears the page's DevTools
/// websocket once the login page is asked for. Fails after `timeout`, or when the operator
/// closes the browser. The browser is closed before this returns.
pub async fn capture_login(
    adapter: AnyAdapter,
    options: &BrowserOptions,
    poll: Duration,
    timeout: Duration,
    ready: impl FnOnce(&str, &str),
) -> Result<StorageState, CaptureError> {
    let mut browser = LoginBrowser::launch(adapter, options).await.map_err(CaptureError::Browser)?;
    let captured = async {
        let mut events = browser.events();
        let url = browser.open_login_page().await?;
        let websocket = browser.devtools_websocket().await.unwrap_or_default();
        ready(&url, &websocket);
        let deadline = Instant::now() + timeout;
        let mut poll = tokio::time::interval(poll);
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) if event.method == "Page.frameNavigated" => {
                        if let Some(url) = event.params.pointer("/frame/url").and_then(Value::as_str) {
                            browser.note_url(url);
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Err(CaptureError::Closed),
                },
                _ = poll.tick() => match browser.look().await {
                    Ok((PageState::LoggedIn, _)) => return Ok(browser.storage_state().await?),
                    Ok(_) => {}
                    Err(LoginError::WebDriver(error)) if !crate::browser::is_fatal(&error) => {}
                    Err(_) => return Err(CaptureError::Closed),
                },
                _ = tokio::time::sleep_until(deadline) => return Err(CaptureError::Timeout(timeout)),
            }
        }
    }
    .await;
    browser.close().await;
    captured
}

/// Why `aap session capture` got no session.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The browser did not start or failed.
    #[error(transparent)]
    Browser(#[from] LoginError),
    /// The operator closed the browser before logging in.
    #[error("the browser was closed before the login completed")]
    Closed,
    /// No logged-in page within the time allowed.
    #[error("no logged-in page within {0:?}")]
    Timeout(Duration),
}

/// Forwards a screen frame (and acknowledges it), and notes the origin of every navigation.
async fn on_event(
    browser: &mut LoginBrowser,
    event: CdpEvent,
    update: &mut impl FnMut(Update),
) -> Result<(), LoginError> {
    match event.method.as_str() {
        "Page.screencastFrame" => {
            let session_id = event.params.get("sessionId").and_then(Value::as_i64).unwrap_or_default();
            let data = event.params.get("data").and_then(Value::as_str).unwrap_or_default();
            let metadata = event.params.get("metadata");
            let size =
                |name: &str| metadata.and_then(|m| m.get(name)).and_then(Value::as_f64).map_or(0, |v| v.round() as u32);
            match base64::engine::general_purpose::STANDARD.decode(data) {
                Ok(jpeg) => {
                    let (width, height) = jpeg_size(&jpeg).unwrap_or((size("deviceWidth"), size("deviceHeight")));
                    update(Update::Frame(Frame { jpeg, width, height }));
                }
                Err(error) => tracing::debug!(%error, "screen frame is not base64"),
            }
            browser.ack_frame(session_id).await
        }
        "Page.frameNavigated" => {
            let frame = event.params.get("frame");
            if let Some(url) = frame.and_then(|f| f.get("url")).and_then(Value::as_str) {
                browser.note_url(url);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The pixel size in a JPEG's start-of-frame marker.
pub fn jpeg_size(jpeg: &[u8]) -> Option<(u32, u32)> {
    if jpeg.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut at = 2;
    while at + 9 < jpeg.len() {
        if jpeg[at] != 0xFF {
            return None;
        }
        let marker = jpeg[at + 1];
        let length = u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize;
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            let height = u16::from_be_bytes([jpeg[at + 5], jpeg[at + 6]]) as u32;
            let width = u16::from_be_bytes([jpeg[at + 7], jpeg[at + 8]]) as u32;
            return Some((width, height));
        }
        at += 2 + length;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_size_reads_the_start_of_frame() {
        // SOI, an APP0 of 4 bytes, SOF0 with height 900 and width 1280.
        let jpeg = [
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xC0, 0x00, 0x11, 0x08, 0x03, 0x84, 0x05, 0x00, 0x03,
        ];
        assert_eq!(jpeg_size(&jpeg), Some((1280, 900)));
        assert_eq!(jpeg_size(b"not a jpeg"), None);
    }
}
