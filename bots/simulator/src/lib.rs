//! aap-simulator: local look-alikes of the four assistant sites for tests and demos.
//!
//! Nothing here reaches the real sites. Each [`Simulator`] instance imitates one [`Site`] on its
//! own origin, with the structure its bot adapter finds on the real site (see each module under
//! `sites/`): ChatGPT (chatgpt.com), Claude (claude.ai), Perplexity (perplexity.ai) and Google
//! search with its AI Overview. Every site has a login wall without its session cookie
//! ([`Site::session_cookie`]), streamed answers with a mid-way pause, citations, a rate-limit
//! message, a Cloudflare-style challenge page, and a redesign switch that changes its markup.
//! Answers are deterministic per prompt ([`answer_for`]).
//!
//! Failure knobs live in [`SimulatorConfig`] (at start, or `PUT /__sim/config` at runtime) and
//! in prompt markers (`[[no-citations]]`, `[[rate-limit]]`, `[[slow]]`, `[[error]]`,
//! `[[expire-session]]`, `[[challenge]]`, `[[stall]]`, `[[thinking]]`, `[[ab-test]]`,
//! `[[no-overview]]`, `[[empty]]`, `[[oversized]]`, `[[too-long]]`, `[[cut-short]]`, `[[refusal]]`,
//! `[[model-fallback]]`). `[[empty]]`
//! (or `config.empty`) finishes the answer normally with no text at all: every finish signal
//! shows, the answer block stays empty. `[[too-long]]` has ChatGPT and Claude refuse the prompt
//! for its length with their own errors; `[[cut-short]]` has them stop the answer two thirds of
//! the way at their length limit, as they say it (Claude's notice and Continue button, both
//! sites' stop reason `max_tokens`); `[[refusal]]` has Claude decline the prompt under its usage
//! policy (stop reason `refusal`, the words taken back, the refusal shown); `[[model-fallback]]`
//! has ChatGPT answer with another model than the plan's, its limit used up, as chatgpt.com says
//! it (the stream's `model_limits`, the page's "Responses will use another model until ...").
//! The interruptions real sites put in a bot's way (a dialog, a banner over the composer,
//! `alert()` / `confirm()`, "Leave site?", a new tab that takes the focus, and `sticky` ones
//! that cannot be closed) have knobs of their own and markers ([`INTERRUPTION_MARKERS`]); every
//! page carries the script that sets them off (`sites/interrupt.js`, see `interrupt.rs`).
//!
//! Admin API (no auth: the simulator binds to loopback for tests and the dev stack):
//! - `POST /__sim/sessions` `{"label": "..."}` → `{"token", "storage_state_json"}`
//! - `POST /__sim/sessions/{token}/expire` → 204 (404 if unknown)
//! - `POST /__sim/sessions/{token}/challenge` → 204 (404 if unknown): every later request of
//!   that session gets the bot challenge (`config.challenge` does it for every client)
//! - `GET /__sim/stats` → [`SimStats`]
//! - `GET /__sim/config`, `PUT /__sim/config` (any subset of the fields) → [`SimulatorConfig`]
//! - `GET /__sim/site` → `{"site", "base_url"}`
//! - `POST /__sim/logins` `{"email", "password", "otp"?}` → 201: a login the site's login page
//!   ([`Site::login_path`], see [`login`]) accepts; [`login::DEFAULT_EMAIL`] works from the start
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let sim = aap_simulator::Simulator::start(listener, aap_simulator::Site::ChatGpt, Default::default()).await?;
//! let session = sim.create_session("operator-1").await;
//! // Open sim.base_url in Chromium, add the cookie
//! // (name Site::ChatGpt.session_cookie(), value session.token, secure: true), reload.
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod answer;
mod common;
mod config;
mod interrupt;
pub mod login;
mod routes;
mod site;
mod sites;
mod state;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use answer::{
    Answer, Citation, DOCUMENT_EDIT, INTERRUPTION_MARKERS, MARKER_AB_TEST, MARKER_ALERT, MARKER_BANNER,
    MARKER_BEFOREUNLOAD, MARKER_CHALLENGE, MARKER_CONFIRM, MARKER_DOCUMENT, MARKER_EMPTY, MARKER_ERROR,
    MARKER_EXPIRE_SESSION, MARKER_MODAL, MARKER_NEW_WINDOW, MARKER_NO_CITATIONS, MARKER_NO_OVERVIEW, MARKER_OVERSIZED,
    MARKER_RATE_LIMIT, MARKER_SLOW, MARKER_STALL, MARKER_STICKY, MARKER_THINKING, MARKER_TOO_LONG, PromptFlags,
    answer_for, document_for, normalize_prompt, strip_markers,
};
pub use common::CHALLENGE_TITLE;
pub use config::{ConfigError, SimulatorConfig};
pub use interrupt::POPUP_PATH;
pub use routes::router;
pub use site::{Site, UnknownSite};
pub use sites::{
    CHATGPT_ANSWER_NOW_EVENT, CHATGPT_PREFERRED_EVENTS, CHATGPT_TEMPORARY_CHAT_EVENT, CLAUDE_INCOGNITO_CHAT_EVENT,
    chatgpt_more_sources,
};
pub use sites::{GENERIC_ERROR_MESSAGE, RATE_LIMIT_MESSAGE};
pub use sites::{PERPLEXITY_ERROR_MESSAGE, PERPLEXITY_RATE_LIMIT_MESSAGE, perplexity_listed_sources};
pub use sites::{PerplexityProduct, perplexity_products, perplexity_search_queries};
pub use sites::{chatgpt_is_shopping, chatgpt_products, chatgpt_search_queries};
pub use state::{PromptStats, SESSION_COOKIE, SimSession, SimState, SimStats, TokenStats};

/// How long [`Simulator::shutdown`] lets open answer streams finish before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// A running simulator, served in the background on the listener it was given.
pub struct Simulator {
    /// Origin to open in the browser, e.g. `http://127.0.0.1:41234` (no trailing slash).
    pub base_url: String,
    state: SimState,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<std::io::Result<()>>,
}

impl Simulator {
    /// Serves a look-alike of `site` on `listener` in a background task. Bind `127.0.0.1:0` and
    /// hand the listener over: the simulator is reachable as soon as this returns. A variant
    /// the site does not serve is refused (`InvalidInput`).
    pub async fn start(listener: TcpListener, site: Site, config: SimulatorConfig) -> std::io::Result<Simulator> {
        let config =
            config.checked(site).map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
        let address = listener.local_addr()?;
        let base_url = format!("http://{}", browser_address(address));
        let state = SimState::new(site, base_url.clone(), config);
        let app = routes::router(state.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // A dropped sender means the Simulator is gone: stop as well.
                    let _ = stopped.await;
                })
                .await
        });
        tracing::info!(%base_url, site = site.id(), "simulator listening");
        Ok(Simulator { base_url, state, stop: Some(stop), server })
    }

    /// Makes a logged-in session, as `POST /__sim/sessions` does.
    pub async fn create_session(&self, label: &str) -> SimSession {
        self.state.create_session(label)
    }

    /// Revokes a session: its next page load shows the login wall and its next prompt is
    /// refused with 401. Unknown tokens are ignored.
    pub fn expire_session(&self, token: &str) {
        if !self.state.expire_session(token) {
            tracing::debug!("expire requested for an unknown session token");
        }
    }

    /// Makes the site's edge challenge every later request of this session (a flagged client).
    /// Unknown tokens are ignored.
    pub fn challenge_session(&self, token: &str) {
        if !self.state.challenge_session(token) {
            tracing::debug!("challenge requested for an unknown session token");
        }
    }

    /// What has been served so far.
    pub fn stats(&self) -> SimStats {
        self.state.stats()
    }

    /// The config in force.
    pub fn config(&self) -> SimulatorConfig {
        self.state.config()
    }

    /// Replaces the config; answers already streaming keep their timing.
    pub fn set_config(&self, config: SimulatorConfig) {
        debug_assert!(config.clone().checked(self.site()).is_ok(), "unknown variant {:?}", config.variant_name());
        self.state.set_config(config);
    }

    /// The site this instance imitates.
    pub fn site(&self) -> Site {
        self.state.site()
    }

    /// The shared state, e.g. to mount [`router`] elsewhere.
    pub fn state(&self) -> &SimState {
        &self.state
    }

    /// Stops serving: open answer streams get a short grace period, then are dropped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match tokio::time::timeout(SHUTDOWN_GRACE, &mut self.server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "simulator server failed"),
            Ok(Err(error)) => tracing::warn!(%error, "simulator task panicked"),
            Err(_) => {
                tracing::warn!("simulator did not stop in time; aborting open connections");
                self.server.abort();
            }
        }
    }
}

/// The address a browser should use: a wildcard bind is reached through loopback.
fn browser_address(address: SocketAddr) -> SocketAddr {
    if address.ip().is_unspecified() {
        let loopback = match address.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(loopback, address.port())
    } else {
        address
    }
}
