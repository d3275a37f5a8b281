//! One Chromium driven through its own chromedriver: launch, load a session, close.
//!
//! There is no async drop: [`Browser::close`] must be awaited on every path, or Chromium leaks
//! until the process ends. As a last resort, dropping a `Browser` kills chromedriver (and with it
//! the browser it started), its Xvfb if it started one, and removes the profile.
//!
//! Each browser shows one session's face ([`identity`]): the session's proxy
//! (`--proxy-server=`), its user agent (`--user-agent=` for every request, and CDP
//! `Emulation.setUserAgentOverride` so that `navigator.platform`, `navigator.userAgentData`, the
//! `Sec-CH-UA-*` hints and `Accept-Language` agree with it), and no automation tells:
//! `navigator.webdriver` false, no `enable-automation` switch, no automation extension, the
//! `AutomationControlled` Blink feature off, and never "HeadlessChrome" in the user agent.
//!
//! Proxy credentials are not supported: Chromium has no command-line form for them (it would
//! ask in a dialog), so a proxy URL with `user:password@` is refused. Use a proxy that admits
//! the bot's address, or a local forwarder that adds the credentials.

pub mod identity;
mod xvfb;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use thirtyfour::error::WebDriverErrorInner;
use thirtyfour::prelude::*;
use thirtyfour::{ChromiumLikeCapabilities, Cookie, SameSite};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use self::identity::{ChromiumVersion, Identity, UserAgent};
use self::xvfb::Xvfb;
use crate::sessions::Lease;
use crate::storage_state::{StorageState, StoredCookie};

/// Runs before any script of every document: sites read `navigator.webdriver`. With the
/// `AutomationControlled` feature off Chromium already reports `false` natively (a getter no
/// script can tell from a person's browser), so this only acts should that ever change.
const STEALTH_SCRIPT: &str = "if (navigator.webdriver) { Object.defineProperty(Navigator.prototype, 'webdriver', \
                              { get: () => false, configurable: true }); }";

/// Chromium flags for a quiet, container-friendly browser. `--headless=new` is added unless
/// the browser runs headful.
const CHROMIUM_ARGS: &[&str] = &[
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-sync",
    // Without these Debian's Chromium starts chrome_crashpad_handler processes that outlive the
    // browser (reparented to init): orphans after every run.
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-gpu",
    "--disable-blink-features=AutomationControlled",
    // One tab on one site needs few processes: GPU (software compositing) and network run
    // inside the browser process, renderers start without a zygote (possible without the
    // sandbox, which containers cannot give anyway), one renderer process at most, no spare
    // renderer, no per-site process split, no preloaded omnibox popup (a hidden address bar's
    // WebUI, a renderer of its own). From 10 processes to 4 (docs/bots.md, "Memory").
    "--in-process-gpu",
    "--disable-software-rasterizer",
    "--no-zygote",
    "--renderer-process-limit=1",
    "--disable-site-isolation-trials",
    "--enable-features=NetworkServiceInProcess2",
    "--disable-features=site-per-process,IsolateOrigins,SpareRendererForSitePerProcess,BackForwardCache,Translate,\
     OptimizationHints,MediaRouter,DialMediaRouteProvider,AudioServiceOutOfProcess,AutofillServerCommunication,\
     PaintHolding,LensOverlay,GlobalMediaControls,PreloadTopChromeWebUI,WebUIOmniboxPopup,WebUIOmniboxAimPopup",
    "--disable-extensions",
    "--disable-default-apps",
    "--mute-audio",
    "--num-raster-threads=1",
];

/// How to start the browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrowserOptions {
    /// The Chromium binary.
    pub chromium: PathBuf,
    /// The chromedriver binary (same version as Chromium).
    pub chromedriver: PathBuf,
    /// Show a window (under Xvfb in containers) instead of running headless.
    pub headful: bool,
    /// Window size in pixels; sites lay out differently on small screens.
    pub window_size: (u32, u32),
    /// How long chromedriver and the first session may take to start.
    pub startup_timeout: Duration,
    /// More Chromium flags.
    pub extra_args: Vec<String>,
    /// Proxy for every request: `http://`, `https://` or `socks5://` with host and port, no
    /// credentials. `None`: direct.
    pub proxy: Option<String>,
    /// The user agent to present (see [`UserAgent`]).
    pub user_agent: UserAgent,
    /// `Accept-Language` (and `navigator.languages`), e.g. "en-US,en;q=0.9".
    pub accept_language: String,
    /// The Xvfb binary, started when the browser runs headful and `DISPLAY` is not set.
    pub xvfb: PathBuf,
    /// Start a private Xvfb for a headful browser even when `DISPLAY` is set: a remote login's
    /// screen is its own, never the host's desktop.
    pub own_display: bool,
}

impl BrowserOptions {
    /// These options with one session's face: its proxy, and its user agent (the lease's, or
    /// one derived from the lease's account id or file name when the lease names none).
    pub fn for_lease(&self, lease: &Lease) -> BrowserOptions {
        let user_agent = match lease.user_agent.trim() {
            "" => UserAgent::Derived(lease.label.clone()),
            user_agent => UserAgent::Exact(user_agent.to_owned()),
        };
        BrowserOptions { proxy: lease.proxy.clone(), user_agent, ..self.clone() }
    }
}

impl Default for BrowserOptions {
    fn default() -> Self {
        Self {
            chromium: PathBuf::from("/usr/bin/chromium"),
            chromedriver: PathBuf::from("/usr/bin/chromedriver"),
            headful: false,
            window_size: (1280, 900),
            startup_timeout: Duration::from_secs(30),
            extra_args: Vec::new(),
            proxy: None,
            user_agent: UserAgent::Native,
            accept_language: "en-US,en;q=0.9".to_owned(),
            xvfb: PathBuf::from("Xvfb"),
            own_display: false,
        }
    }
}

/// Why the browser could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// chromedriver could not be spawned.
    #[error("cannot start chromedriver {path}: {source}")]
    Spawn {
        /// The binary tried.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// chromedriver started but never said which port it listens on.
    #[error("chromedriver did not report its port: {0}")]
    NoPort(String),
    /// chromedriver exited before it said which port it listens on (how it exited).
    #[error("chromedriver did not report its port: chromedriver exited ({0})")]
    DriverExited(String),
    /// The throwaway profile directory could not be created.
    #[error("cannot create a browser profile directory: {0}")]
    Profile(std::io::Error),
    /// A WebDriver command failed.
    #[error("webdriver: {}", brief(.0))]
    WebDriver(#[from] WebDriverError),
    /// The session's storage state is not valid JSON of the expected shape.
    #[error("invalid storage state: {0}")]
    StorageState(#[from] serde_json::Error),
    /// The origin to load a session for is not an absolute http(s) URL.
    #[error("invalid origin {0:?}")]
    Origin(String),
    /// `chromium --version` did not say a version.
    #[error("cannot tell the chromium version: {0}")]
    Version(String),
    /// The session's proxy URL cannot be used (never repeats a password).
    #[error("unusable proxy: {0}")]
    Proxy(String),
    /// A headful browser needs a display and Xvfb did not give one.
    #[error("no display for a headful browser: {0}")]
    Display(String),
}

/// What [`Browser::load_session`] put into the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionLoaded {
    /// Cookies accepted for the origin's host.
    pub cookies: usize,
    /// localStorage entries set on the origin.
    pub local_storage: usize,
}

/// A running Chromium with its chromedriver and throwaway profile.
pub struct Browser {
    driver: WebDriver,
    chromedriver: Child,
    // Removed when the Browser goes away.
    profile: tempfile::TempDir,
    identity: Identity,
    // Started for a headful browser on a machine without a display; stopped after Chromium.
    xvfb: Option<Xvfb>,
}

impl Browser {
    /// Starts chromedriver on a port the OS picks, then a Chromium session on a fresh profile
    /// with the options' proxy and user agent. A headful browser without `DISPLAY` gets its own
    /// Xvfb.
    pub async fn launch(options: &BrowserOptions) -> Result<Browser, BrowserError> {
        let proxy = options.proxy.as_deref().map(identity::proxy_server).transpose()?;
        let version = ChromiumVersion::of(&options.chromium).await?;
        let identity = Identity::resolve(&options.user_agent, &version, &options.accept_language);
        let needs_display = options.headful
            && (options.own_display || std::env::var_os("DISPLAY").is_none_or(|display| display.is_empty()));
        let xvfb = if needs_display { Some(Xvfb::start(&options.xvfb, options.startup_timeout).await?) } else { None };
        let spawn = || {
            let mut command = Command::new(&options.chromedriver);
            command
                .arg("--port=0")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .kill_on_drop(true);
            if let Some(xvfb) = &xvfb {
                // Chromium inherits it from chromedriver.
                command.env("DISPLAY", xvfb.display());
            }
            command.spawn().map_err(|source| BrowserError::Spawn { path: options.chromedriver.clone(), source })
        };
        // A chromedriver that exits before it says its port (seen once in some thousand
        // launches under a loaded CI machine) is started once more before the launch fails.
        let mut tries_left = 2;
        let (mut chromedriver, port) = loop {
            let mut chromedriver = match spawn() {
                Ok(chromedriver) => chromedriver,
                Err(error) => {
                    stop_xvfb(xvfb).await;
                    return Err(error);
                }
            };
            let port = read_port(&mut chromedriver, options.startup_timeout).await;
            tries_left -= 1;
            match &port {
                Err(BrowserError::DriverExited(how)) if tries_left > 0 => {
                    tracing::warn!(how, "chromedriver exited before it said its port; starting it once more");
                    stop_process(&mut chromedriver).await;
                }
                _ => break (chromedriver, port),
            }
        };
        let started = async {
            let port = port?;
            let profile =
                tempfile::Builder::new().prefix("aap-bot-profile-").tempdir().map_err(BrowserError::Profile)?;
            let driver = new_session(options, port, &profile, &identity, proxy.as_deref()).await?;
            if let Err(error) = apply_identity(&driver, &identity).await {
                let _ = tokio::time::timeout(Duration::from_secs(20), driver.quit()).await;
                return Err(error);
            }
            Ok((port, profile, driver))
        }
        .await;
        let (port, profile, driver) = match started {
            Ok(started) => started,
            Err(error) => {
                stop_process(&mut chromedriver).await;
                stop_xvfb(xvfb).await;
                return Err(error);
            }
        };
        tracing::debug!(
            port,
            profile = %profile.path().display(),
            user_agent = identity.user_agent,
            proxy = proxy.as_deref().unwrap_or(""),
            display = xvfb.as_ref().map_or("", |xvfb| xvfb.display()),
            "browser started"
        );
        Ok(Browser { driver, chromedriver, profile, identity, xvfb })
    }

    /// The WebDriver session, for adapters.
    pub fn driver(&self) -> &WebDriver {
        &self.driver
    }

    /// Where the browser's DevTools listen (`host:port`), as chromedriver reports it.
    pub fn devtools_address(&self) -> Option<String> {
        self.driver
            .capabilities()
            .get("goog:chromeOptions")
            .and_then(|options| options.get("debuggerAddress"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned)
    }

    /// The user agent this browser presents (header and `navigator.userAgent`).
    pub fn user_agent(&self) -> &str {
        &self.identity.user_agent
    }

    /// The face this browser shows: user agent, platform, languages.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The X display of the Xvfb this browser started (`None` headless or on an existing
    /// display) and its process id.
    pub fn own_display(&self) -> Option<(&str, Option<u32>)> {
        self.xvfb.as_ref().map(|xvfb| (xvfb.display(), xvfb.pid()))
    }

    /// Gives memory back between tasks: a critical memory-pressure notification (every
    /// process of the browser purges its caches) and a full garbage collection of the page's
    /// heap. Without it a renderer that answered a dozen prompts holds about 45 MiB more (175
    /// against 129 MiB, docs/bots.md "Memory"). Takes some 40 ms, so the worker calls it after a
    /// task is handed in, never while an answer is read. Best effort: a failure is logged.
    pub async fn trim_memory(&self) {
        let cdp = self.driver.cdp();
        let pressure = serde_json::json!({ "level": "critical" });
        if let Err(error) = cdp.send_raw("Memory.simulatePressureNotification", pressure).await {
            tracing::debug!(%error, "memory pressure notification failed");
        }
        if let Err(error) = cdp.send_raw("HeapProfiler.collectGarbage", serde_json::json!({})).await {
            tracing::debug!(%error, "garbage collection failed");
        }
    }

    /// Quits the WebDriver session (closing Chromium), stops chromedriver and the browser's
    /// Xvfb, and removes the profile. Errors are logged: a browser that will not quit is killed
    /// with its driver.
    pub async fn close(self) {
        let Browser { driver, mut chromedriver, profile, identity: _, xvfb } = self;
        match tokio::time::timeout(Duration::from_secs(20), driver.quit()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "quitting the browser failed; killing chromedriver"),
            Err(_) => tracing::warn!("the browser did not quit in time; killing chromedriver"),
        }
        stop_process(&mut chromedriver).await;
        // After Chromium: an X server gone first would crash it mid-quit.
        stop_xvfb(xvfb).await;
        let path = profile.path().display().to_string();
        if let Err(error) = profile.close() {
            tracing::debug!(%error, path, "browser profile not fully removed");
        }
    }

    /// Puts a logged-in session into the browser: opens `origin` (cookies can only be set on
    /// their own site), adds the cookies for its host, and sets its localStorage.
    pub async fn load_session(&self, storage_state_json: &str, origin: &str) -> Result<SessionLoaded, BrowserError> {
        let state = StorageState::parse(storage_state_json)?;
        let url = url::Url::parse(origin).map_err(|_| BrowserError::Origin(origin.to_owned()))?;
        let host = match url.host_str() {
            Some(host) if matches!(url.scheme(), "http" | "https") => host.to_owned(),
            _ => return Err(BrowserError::Origin(origin.to_owned())),
        };
        let origin = url.origin().ascii_serialization();
        self.driver.goto(origin.as_str()).await?;

        let mut loaded = SessionLoaded::default();
        for stored in state.cookies_for_host(&host) {
            match self.driver.add_cookie(to_cookie(stored, true)).await {
                Ok(()) => loaded.cookies += 1,
                // Chromium refuses some domain spellings (an IP with a leading dot, say) that the
                // page's own host accepts: retry as a host-only cookie.
                Err(error) if !stored.domain.is_empty() => {
                    tracing::debug!(%error, cookie = stored.name, "cookie refused with its domain; retrying host-only");
                    match self.driver.add_cookie(to_cookie(stored, false)).await {
                        Ok(()) => loaded.cookies += 1,
                        Err(error) => tracing::warn!(%error, cookie = stored.name, "cookie refused"),
                    }
                }
                Err(error) => tracing::warn!(%error, cookie = stored.name, "cookie refused"),
            }
        }

        let entries: Vec<serde_json::Value> = state
            .local_storage_for(&origin)
            .into_iter()
            .map(|entry| serde_json::json!([entry.name, entry.value]))
            .collect();
        if !entries.is_empty() {
            let count = entries.len();
            self.driver
                .execute(
                    "for (const [name, value] of arguments[0]) { window.localStorage.setItem(name, value); }",
                    vec![serde_json::Value::Array(entries)],
                )
                .await?;
            loaded.local_storage = count;
        }
        Ok(loaded)
    }
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("profile", &self.profile.path()).finish_non_exhaustive()
    }
}

fn to_cookie(stored: &StoredCookie, with_domain: bool) -> Cookie {
    let mut cookie = Cookie::new(stored.name.clone(), stored.value.clone());
    cookie.set_path(stored.path.clone().unwrap_or_else(|| "/".to_owned()));
    if with_domain && !stored.domain.is_empty() {
        cookie.set_domain(stored.domain.clone());
    }
    // A `__Secure-` cookie is refused unless marked secure; Chromium accepts it on
    // http://localhost and 127.0.0.1, which count as secure contexts.
    cookie.set_secure(stored.secure.unwrap_or(false) || stored.name.starts_with("__Secure-"));
    if let Some(http_only) = stored.http_only {
        cookie.set_http_only(http_only);
    }
    if let Some(expires) = stored.expires.filter(|expires| *expires > 0.0) {
        cookie.set_expiry(expires as i64);
    }
    match stored.same_site.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("strict") => cookie.set_same_site(SameSite::Strict),
        Some("lax") => cookie.set_same_site(SameSite::Lax),
        Some("none") => cookie.set_same_site(SameSite::None),
        _ => {}
    }
    cookie
}

async fn stop_xvfb(xvfb: Option<Xvfb>) {
    if let Some(xvfb) = xvfb {
        xvfb.stop().await;
    }
}

/// Makes scripts and client hints agree with the user agent, hides `navigator.webdriver`, and
/// tees the assistant's response streams ([`crate::adapter::stream`]), for every document this
/// page loads from now on.
async fn apply_identity(driver: &WebDriver, identity: &Identity) -> Result<(), BrowserError> {
    let cdp = driver.cdp();
    cdp.page().add_script_to_evaluate_on_new_document(STEALTH_SCRIPT).await?;
    cdp.page().add_script_to_evaluate_on_new_document(crate::adapter::stream::TEE_SCRIPT).await?;
    cdp.send_raw("Emulation.setUserAgentOverride", identity.user_agent_override()).await?;
    Ok(())
}

/// `Accept-Language` as Chromium's `intl.accept_languages` preference takes it: the
/// languages without their weights.
fn accept_languages_pref(accept_language: &str) -> String {
    accept_language
        .split(',')
        .map(|language| language.split(';').next().unwrap_or_default().trim())
        .filter(|language| !language.is_empty())
        .collect::<Vec<_>>()
        .join(",")
}

async fn new_session(
    options: &BrowserOptions,
    port: u16,
    profile: &tempfile::TempDir,
    identity: &Identity,
    proxy: Option<&str>,
) -> Result<WebDriver, BrowserError> {
    let mut caps = DesiredCapabilities::chrome();
    caps.set_binary(&options.chromium.to_string_lossy())?;
    if !options.headful {
        caps.add_arg("--headless=new")?;
    }
    for arg in CHROMIUM_ARGS {
        caps.add_arg(arg)?;
    }
    caps.add_arg(&format!("--window-size={},{}", options.window_size.0, options.window_size.1))?;
    caps.add_arg(&format!("--user-data-dir={}", profile.path().display()))?;
    // On the command line, so that every request (workers, prefetches, other tabs) carries it.
    caps.add_arg(&format!("--user-agent={}", identity.user_agent))?;
    caps.add_arg(&format!("--lang={}", identity.language()))?;
    if let Some(proxy) = proxy {
        caps.add_arg(&format!("--proxy-server={proxy}"))?;
    }
    for arg in &options.extra_args {
        caps.add_arg(arg)?;
    }
    // Without the switch Chromium shows "controlled by automated test software" and sets
    // navigator.webdriver, both of which sites look for.
    caps.add_exclude_switch("enable-automation")?;
    caps.add_experimental_option("useAutomationExtension", false)?;
    caps.add_experimental_option(
        "prefs",
        serde_json::json!({ "intl.accept_languages": accept_languages_pref(&identity.accept_language) }),
    )?;
    let driver =
        WebDriver::builder(format!("http://127.0.0.1:{port}"), caps).request_timeout(Duration::from_secs(120)).await;
    match driver {
        Ok(driver) => Ok(driver),
        Err(error) => Err(BrowserError::WebDriver(error)),
    }
}

/// Reads "ChromeDriver was started successfully on port N." from chromedriver's stdout, then
/// keeps draining it so chromedriver never blocks on a full pipe.
async fn read_port(chromedriver: &mut Child, timeout: Duration) -> Result<u16, BrowserError> {
    let stdout = chromedriver.stdout.take().ok_or_else(|| BrowserError::NoPort("no stdout pipe".to_owned()))?;
    let mut lines = BufReader::new(stdout).lines();
    let read = async {
        loop {
            match lines.next_line().await {
                Ok(Some(line)) => {
                    if let Some(port) = parse_port(&line) {
                        return Ok(port);
                    }
                }
                Ok(None) => {
                    let status = match chromedriver.try_wait() {
                        Ok(Some(status)) => status.to_string(),
                        _ => "its stdout closed".to_owned(),
                    };
                    return Err(BrowserError::DriverExited(status));
                }
                Err(error) => return Err(BrowserError::NoPort(error.to_string())),
            }
        }
    };
    let port = tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| BrowserError::NoPort(format!("nothing after {timeout:?}")))??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(port)
}

fn parse_port(line: &str) -> Option<u16> {
    let rest = line.split("started successfully on port ").nth(1)?;
    rest.trim().trim_end_matches('.').parse().ok()
}

async fn stop_process(child: &mut Child) {
    if let Err(error) = child.kill().await {
        tracing::debug!(%error, "chromedriver already gone");
    }
}

/// Longest [`brief`] of a WebDriver error, in characters.
pub const BRIEF_CHARS: usize = 400;

/// A WebDriver error in one line, as release reasons (shown to customers), logs and evidence
/// name it: thirtyfour's text without the driver's stack trace (the addresses of an
/// unsymbolised chromedriver, ~1 KB that tells no one anything), its data dump, and the status,
/// state and error-code lines that repeat the message; at most [`BRIEF_CHARS`] characters.
pub fn brief(error: &WebDriverError) -> String {
    let text = error.to_string();
    let mut kept = Vec::new();
    for line in text.lines().map(str::trim) {
        // thirtyfour writes the message, the error code, the data, then the stack trace.
        if line.starts_with("Stacktrace:") || line.starts_with("Data:") {
            break;
        }
        let repeats = ["Status:", "State:", "Error:"].iter().any(|p| line.starts_with(p)) || line == "Additional info:";
        if !line.is_empty() && !repeats {
            kept.push(line);
        }
    }
    let one_line = kept.join(" ").split_whitespace().collect::<Vec<_>>().join(" ");
    match one_line.char_indices().nth(BRIEF_CHARS) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

/// Whether a WebDriver error means the browser or its session is gone, so the browser must be
/// replaced rather than reused.
pub fn is_fatal(error: &WebDriverError) -> bool {
    matches!(
        error.as_inner(),
        WebDriverErrorInner::InvalidSessionId(_)
            | WebDriverErrorInner::SessionNotCreated(_)
            | WebDriverErrorInner::RequestFailed(_)
            | WebDriverErrorInner::NoSuchWindow(_)
            | WebDriverErrorInner::IoError(_)
    ) || error.to_string().contains("session deleted")
        || error.to_string().contains("disconnected")
}

/// For the crate's tests of what the bot does when a page holds a JavaScript dialog open.
#[cfg(test)]
pub(crate) mod testing {
    use std::time::Duration;

    use super::{Browser, BrowserOptions};

    /// A fresh browser on a page of `html` that has opened `alert(text)`, once it is open (at
    /// most 10 s), and what `check` then finds; the browser is closed either way.
    pub(crate) async fn with_a_dialog_open(
        html: &str,
        text: &str,
        check: impl AsyncFnOnce(&thirtyfour::WebDriver) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let browser = Browser::launch(&BrowserOptions::default()).await?;
        let driver = browser.driver();
        let found = async {
            driver.goto(format!("data:text/html,{html}")).await?;
            let alert = format!("setTimeout(() => window.alert({text:?}), 0);");
            driver.execute(alert, vec![]).await?;
            let mut waited = 0;
            while driver.get_alert_text().await.is_err() {
                waited += 1;
                anyhow::ensure!(waited < 200, "the dialog never opened");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            check(driver).await
        }
        .await;
        browser.close().await;
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// chromedriver's reply when a click finds the element hidden, as the probe of 2026-12-06
    /// caught it in a customer's failure reason (with 18 frames of stack trace).
    fn not_interactable() -> WebDriverError {
        let frames: Vec<String> = (0..18).map(|i| format!("#{i} 0x555d16e869be <unknown>")).collect();
        let body = serde_json::json!({"value": {
            "error": "element not interactable",
            "message": "element not interactable\n  (Session info: chrome=156.0.8078.114)",
            "stacktrace": frames.join("\n"),
        }});
        WebDriverError::parse(400, body.to_string())
    }

    #[test]
    fn a_webdriver_error_is_named_in_one_line_without_the_stack_trace() {
        let error = not_interactable();
        assert!(error.to_string().contains("#17 0x555d16e869be"), "thirtyfour's own text has the trace");
        let said = brief(&error);
        assert_eq!(
            said,
            "The element is not interactable: element not interactable (Session info: chrome=156.0.8078.114)"
        );
        let ask = crate::adapter::AskError::Browser(not_interactable());
        assert_eq!(format!("{}: {ask}", ask.class()), format!("browser: {said}"), "said once, not 'browser: browser:'");
        assert_eq!(BrowserError::WebDriver(not_interactable()).to_string(), format!("webdriver: {said}"));
        // The data dump (an alert's text, already in the message) is left out too.
        let body = serde_json::json!({"value": {
            "error": "unexpected alert open",
            "message": "unexpected alert open: {Alert text : Leave site?}",
            "data": {"text": "Leave site?"},
            "stacktrace": "#0 0x1 <unknown>",
        }});
        assert_eq!(
            brief(&WebDriverError::parse(500, body.to_string())),
            "An unexpected alert is currently open: unexpected alert open: {Alert text : Leave site?}"
        );
        // A reply that is not WebDriver's (a proxy's HTML page) is cut to the bound.
        let long = WebDriverError::parse(502, format!("<html>{}</html>", "x".repeat(5000)));
        let cut = brief(&long);
        assert_eq!(cut.chars().count(), BRIEF_CHARS + 1);
        assert!(cut.ends_with('…') && !cut.contains('\n'), "{cut}");
    }

    #[test]
    fn port_line_is_parsed() {
        assert_eq!(parse_port("ChromeDriver was started successfully on port 33705."), Some(33705));
        assert_eq!(parse_port("Starting ChromeDriver 156.0 on port 0"), None);
    }

    #[test]
    fn secure_prefix_forces_the_secure_flag_and_session_cookies_get_no_expiry() {
        let stored = StoredCookie {
            name: "__Secure-next-auth.session-token".into(),
            value: "v".into(),
            domain: ".chatgpt.com".into(),
            expires: Some(-1.0),
            same_site: Some("Lax".into()),
            ..StoredCookie::default()
        };
        let cookie = to_cookie(&stored, true);
        assert_eq!(cookie.secure, Some(true));
        assert_eq!(cookie.expiry, None);
        assert_eq!(cookie.domain.as_deref(), Some(".chatgpt.com"));
        assert_eq!(cookie.same_site, Some(SameSite::Lax));
        assert_eq!(to_cookie(&stored, false).domain, None);
    }
}
