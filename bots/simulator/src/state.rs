//! Shared state: sessions, the live config and the counters tests read back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::answer::normalize_prompt;
use crate::config::{ConfigError, SimulatorConfig};
use crate::site::Site;

/// The session cookie chatgpt.com uses ([`Site::session_cookie`] names every site's). Chromium
/// accepts `__Secure-` cookies on `http://127.0.0.1` as long as they are set with `secure: true`.
pub const SESSION_COOKIE: &str = "__Secure-next-auth.session-token";

/// How long the cookie in a storage state lives (chatgpt.com's session cookie lasts ~30 days).
pub(crate) const COOKIE_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// A logged-in session made by the admin API, ready for a browser profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimSession {
    /// Value of the site's session cookie ([`Site::session_cookie`]).
    pub token: String,
    /// Playwright storage state (JSON text): the cookie for this simulator's origin and one
    /// localStorage entry, the shape operators upload for real accounts.
    pub storage_state_json: String,
}

/// Counters for one session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenStats {
    /// The label given when the session was made.
    pub label: String,
    /// Answers streamed to the end.
    pub answers: u64,
    /// Of `answers`, those that finished without any text (`[[empty]]`).
    #[serde(default)]
    pub empty_answers: u64,
    /// Prompts refused with the rate-limit error.
    pub rate_limited: u64,
    /// Answers that failed mid-stream (`[[error]]`).
    pub errors: u64,
    /// Answers the client stopped or abandoned before the end.
    pub interrupted: u64,
    /// Whether the session has been revoked.
    pub expired: bool,
    /// Whether the site's edge challenges every request of this session (as Cloudflare does to
    /// a flagged client).
    #[serde(default)]
    pub challenged: bool,
}

/// Counters for one prompt (white space collapsed, markers kept).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptStats {
    /// Answers streamed to the end.
    pub answers: u64,
    /// Of `answers`, those that finished without any text (`[[empty]]`).
    #[serde(default)]
    pub empty_answers: u64,
    /// Refusals with the rate-limit error.
    pub rate_limited: u64,
    /// Answers that failed mid-stream.
    pub errors: u64,
    /// Answers stopped or abandoned before the end.
    pub interrupted: u64,
}

/// What the simulator has served so far (`GET /__sim/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Answers streamed to the end, all sessions together.
    pub answers_total: u64,
    /// Of `answers_total`, those that finished without any text (`[[empty]]`).
    #[serde(default)]
    pub empty_answers_total: u64,
    /// Login walls served (pages without a valid session, and refused API calls).
    pub login_walls: u64,
    /// Bot challenges served instead of the site.
    #[serde(default)]
    pub challenges: u64,
    /// Site-specific UI events by name (e.g. `chatgpt.answer_now_clicked`), so tests can check
    /// what a client did on the page that no answer counter shows.
    #[serde(default)]
    pub site_events: BTreeMap<String, u64>,
    /// Per session token.
    pub by_token: BTreeMap<String, TokenStats>,
    /// Per prompt (white space collapsed).
    pub by_prompt: BTreeMap<String, PromptStats>,
}

impl SimStats {
    /// Answers streamed to the end for `prompt` (white space is collapsed before the lookup).
    pub fn answers_for_prompt(&self, prompt: &str) -> u64 {
        self.by_prompt.get(&normalize_prompt(prompt)).map_or(0, |stats| stats.answers)
    }

    /// Answers that finished without any text (`[[empty]]`) for `prompt` (white space is
    /// collapsed before the lookup).
    pub fn empty_answers_for_prompt(&self, prompt: &str) -> u64 {
        self.by_prompt.get(&normalize_prompt(prompt)).map_or(0, |stats| stats.empty_answers)
    }

    /// Answers streamed to the end for the session `token`.
    pub fn answers_for_token(&self, token: &str) -> u64 {
        self.by_token.get(token).map_or(0, |stats| stats.answers)
    }

    /// How often the site-specific event `name` happened (0 when never).
    pub fn site_event(&self, name: &str) -> u64 {
        self.site_events.get(name).copied().unwrap_or(0)
    }
}

/// How one answer attempt ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Answered,
    /// Streamed to the end with no text at all: an answer, and counted as an empty one too.
    AnsweredEmpty,
    RateLimited,
    Failed,
    Interrupted,
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct SimState {
    inner: Arc<Inner>,
}

struct Inner {
    site: Site,
    base_url: String,
    config: RwLock<SimulatorConfig>,
    stats: Mutex<SimStats>,
    logins: Mutex<crate::login::Logins>,
}

/// A poisoned lock only means another handler panicked; the counters stay usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl SimState {
    /// State for a simulator of `site` reachable at `base_url` (e.g. `http://127.0.0.1:4321`).
    pub fn new(site: Site, base_url: impl Into<String>, config: SimulatorConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                site,
                base_url: base_url.into(),
                config: RwLock::new(config),
                stats: Mutex::new(SimStats::default()),
                logins: Mutex::new(crate::login::Logins::default()),
            }),
        }
    }

    /// The site this simulator imitates.
    pub fn site(&self) -> Site {
        self.inner.site
    }

    /// The origin pages are served from.
    pub fn base_url(&self) -> &str {
        &self.inner.base_url
    }

    /// A copy of the live config.
    pub fn config(&self) -> SimulatorConfig {
        self.inner.config.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Replaces the live config; answers already streaming keep their old timing.
    pub fn set_config(&self, config: SimulatorConfig) {
        *self.inner.config.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
    }

    /// Applies a partial config (any subset of the fields, as JSON) atomically; returns the
    /// config now in force.
    pub fn patch_config(&self, patch: serde_json::Value) -> Result<SimulatorConfig, ConfigError> {
        let mut config = self.inner.config.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        *config = config.patched(patch)?.checked(self.inner.site)?;
        Ok(config.clone())
    }

    /// Runs `f` on the registered logins under their lock.
    pub(crate) fn with_logins<T>(&self, f: impl FnOnce(&mut crate::login::Logins) -> T) -> T {
        f(&mut lock(&self.inner.logins))
    }

    /// Makes a new logged-in session.
    pub fn create_session(&self, label: &str) -> SimSession {
        // Shaped like the JWE chatgpt.com puts in its cookie; only its presence in our table counts.
        let token = format!(
            "eyJhbGciOiJkaXIiLCJlbmMiOiJBMjU2R0NNIn0..{}.{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        lock(&self.inner.stats)
            .by_token
            .insert(token.clone(), TokenStats { label: label.to_owned(), ..TokenStats::default() });
        let storage_state_json = self.storage_state(&token).to_string();
        SimSession { token, storage_state_json }
    }

    /// Revokes a session; returns false when the token is unknown.
    pub fn expire_session(&self, token: &str) -> bool {
        match lock(&self.inner.stats).by_token.get_mut(token) {
            Some(session) => {
                session.expired = true;
                true
            }
            None => false,
        }
    }

    /// Makes the site's edge challenge every request of this session; returns false when the
    /// token is unknown.
    pub fn challenge_session(&self, token: &str) -> bool {
        match lock(&self.inner.stats).by_token.get_mut(token) {
            Some(session) => {
                session.challenged = true;
                true
            }
            None => false,
        }
    }

    /// Whether requests of this session get the challenge.
    pub(crate) fn is_challenged(&self, token: &str) -> bool {
        lock(&self.inner.stats).by_token.get(token).is_some_and(|session| session.challenged)
    }

    pub(crate) fn record_challenge(&self) {
        lock(&self.inner.stats).challenges += 1;
    }

    /// Counts one site-specific UI event (see [`SimStats::site_events`]).
    pub(crate) fn record_site_event(&self, name: &str) {
        *lock(&self.inner.stats).site_events.entry(name.to_owned()).or_default() += 1;
    }

    /// A copy of the counters.
    pub fn stats(&self) -> SimStats {
        lock(&self.inner.stats).clone()
    }

    /// The label of the live session `token` names; `None` when the token is unknown or
    /// revoked, or when the `logged_out` knob is on.
    pub(crate) fn session_label(&self, token: &str) -> Option<String> {
        if self.config().logged_out {
            return None;
        }
        lock(&self.inner.stats)
            .by_token
            .get(token)
            .filter(|session| !session.expired)
            .map(|session| session.label.clone())
    }

    /// Answers streamed to the end for `token`, for the `rate_limit_after` quota.
    pub(crate) fn answers_of(&self, token: &str) -> u64 {
        lock(&self.inner.stats).by_token.get(token).map_or(0, |session| session.answers)
    }

    pub(crate) fn record_login_wall(&self) {
        lock(&self.inner.stats).login_walls += 1;
    }

    pub(crate) fn record(&self, token: &str, prompt: &str, outcome: Outcome) {
        let mut stats = lock(&self.inner.stats);
        if matches!(outcome, Outcome::Answered | Outcome::AnsweredEmpty) {
            stats.answers_total += 1;
        }
        if outcome == Outcome::AnsweredEmpty {
            stats.empty_answers_total += 1;
        }
        let prompt_stats = stats.by_prompt.entry(normalize_prompt(prompt)).or_default();
        bump(prompt_stats, outcome);
        if let Some(session) = stats.by_token.get_mut(token) {
            match outcome {
                Outcome::Answered => session.answers += 1,
                Outcome::AnsweredEmpty => {
                    session.answers += 1;
                    session.empty_answers += 1;
                }
                Outcome::RateLimited => session.rate_limited += 1,
                Outcome::Failed => session.errors += 1,
                Outcome::Interrupted => session.interrupted += 1,
            }
        }
    }

    fn storage_state(&self, token: &str) -> serde_json::Value {
        let origin = self.base_url().trim_end_matches('/').to_owned();
        let host = origin
            .split("://")
            .nth(1)
            .and_then(|rest| rest.rsplit_once(':').map(|(host, _port)| host.to_owned()))
            .unwrap_or_else(|| "127.0.0.1".to_owned());
        let expires = SystemTime::now()
            .checked_add(COOKIE_LIFETIME)
            .and_then(|when| when.duration_since(UNIX_EPOCH).ok())
            .map_or(-1, |since| since.as_secs() as i64);
        let (storage_key, storage_value) = self.site().local_storage_entry();
        serde_json::json!({
            "cookies": [{
                "name": self.site().session_cookie(),
                "value": token,
                "domain": host,
                "path": "/",
                "expires": expires,
                "httpOnly": true,
                "secure": true,
                "sameSite": "Lax",
            }],
            "origins": [{
                "origin": origin,
                "localStorage": [{ "name": storage_key, "value": storage_value }],
            }],
        })
    }
}

fn bump(stats: &mut PromptStats, outcome: Outcome) {
    match outcome {
        Outcome::Answered => stats.answers += 1,
        Outcome::AnsweredEmpty => {
            stats.answers += 1;
            stats.empty_answers += 1;
        }
        Outcome::RateLimited => stats.rate_limited += 1,
        Outcome::Failed => stats.errors += 1,
        Outcome::Interrupted => stats.interrupted += 1,
    }
}
