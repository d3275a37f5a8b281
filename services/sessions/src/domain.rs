//! The sessions domain: accounts, the rotation that lends them, and what a return does to an
//! account. Knows nothing of gRPC; [`crate::grpc`] adapts it.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use aap_platform::assistants::{self, ANY_PLAN};
use aap_platform::input;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::crypto::{OpenError, SessionKey};
use crate::identity::{ProxyUrl, check_user_agent};
use crate::store::{self, AccountReturn, AccountSettings, NewAccountRow, PickedAccount, Store};

/// How the service lends sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionsConfig {
    /// Evaluations a bot may run on a leased session before it returns it and leases the next
    /// account (the rotation).
    pub per_session_runs: u32,
    /// How long a lease holds its account without a return; a bot that dies frees its account
    /// after this.
    pub lease_ttl: Duration,
    /// How long a rate-limited account rests before it is lent again.
    pub rate_limit_cooldown: Duration,
    /// How long an account that met a bot challenge (Cloudflare and the like) rests: longer than
    /// a rate limit, since a challenged browser or proxy stays suspect for a while.
    pub challenge_cooldown: Duration,
    /// The key that seals session states and proxy URLs at rest. `None`: every call that
    /// stores or lends a session state fails with FAILED_PRECONDITION until a key is configured.
    pub key: Option<SessionKey>,
    /// How many evidence cases of failed attempts the platform keeps (see [`crate::evidence`]).
    pub evidence: crate::evidence::EvidenceLimits,
    /// Most prompts an account asks in any hour, by assistant id: an account at its budget is not
    /// lent until its oldest lease of the hour leaves the hour, and a lease never grants more
    /// runs than the budget has left. An assistant not listed: no budget (the site's own limit
    /// rests the account).
    pub hourly_prompts: HashMap<String, u32>,
}

impl Default for SessionsConfig {
    fn default() -> SessionsConfig {
        SessionsConfig {
            per_session_runs: 10,
            lease_ttl: Duration::from_secs(15 * 60),
            rate_limit_cooldown: Duration::from_secs(30 * 60),
            challenge_cooldown: Duration::from_secs(60 * 60),
            // A fresh random key: right for tests; a server passes its own key, or what it stored
            // could not be read after a restart.
            key: Some(SessionKey::generate()),
            evidence: crate::evidence::EvidenceLimits::default(),
            hourly_prompts: HashMap::new(),
        }
    }
}

/// The result of every operation of [`SessionDirectory`].
pub type SessionResult<T> = Result<T, SessionError>;

/// Why an operation of [`SessionDirectory`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// A request field is missing or malformed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The request field, as the API names it.
        field: &'static str,
        /// What is wrong with it, for the caller.
        reason: String,
    },
    /// No account of the assistant (and plan) exists at all: an operator must add one.
    #[error("no account of {target} exists")]
    NoAccount {
        /// What the lease asked for.
        target: LeaseTarget,
    },
    /// Accounts exist but none can be lent now.
    #[error(
        "every account of {target} is leased, cooling down, at its hourly budget, expired or disabled{}",
        next_free(.next_free_at)
    )]
    Exhausted {
        /// What the lease asked for.
        target: LeaseTarget,
        /// When the first leased or cooling account frees up, when known.
        next_free_at: Option<DateTime<Utc>>,
    },
    /// No account has this id.
    #[error("account {0} not found")]
    AccountNotFound(Uuid),
    /// A live lease holds the account, so it cannot be deleted now.
    #[error("account {0} is leased to a bot: disable it, and delete it once the lease is back")]
    Leased(Uuid),
    /// No lease has this id.
    #[error("lease {0} not found")]
    LeaseNotFound(Uuid),
    /// The caller does not hold the lease, or may not serve the assistant.
    #[error("{0}")]
    PermissionDenied(String),
    /// The lease was returned before; a return is applied once.
    #[error("lease {0} was already returned")]
    LeaseAlreadyReturned(Uuid),
    /// The lease lapsed before its return: its account went back into rotation and may be lent
    /// to another bot, whose session a late outcome would change, so the return changes nothing.
    #[error(
        "lease {lease_id} lapsed at {} before it was returned: its account may be lent to another bot now, \
         so the return changes nothing; lease a session again",
        .lapsed_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )]
    LeaseLapsed {
        /// The lease.
        lease_id: Uuid,
        /// When it lapsed.
        lapsed_at: DateTime<Utc>,
    },
    /// No session key is configured, so session states can be neither stored nor lent.
    #[error("no session key is configured: set AAP_SESSION_KEY or AAP_SESSION_KEY_FILE")]
    NoKey,
    /// A stored value does not open with the configured key: the key changed, or the row was
    /// altered. Never a panic: the account is unusable until the right key is configured or its
    /// state is replaced.
    #[error(
        "the stored {field} of account {account_id} cannot be decrypted with the configured session key: {cause}; \
         configure the key it was written with, or replace it (UpdateSessionState, UpdateAccount)"
    )]
    Undecryptable {
        /// The account.
        account_id: Uuid,
        /// `session state` or `proxy`.
        field: &'static str,
        /// What went wrong (names key ids, never keys).
        cause: OpenError,
    },
    /// A value too large to encrypt.
    #[error("{0} is too large to store")]
    TooLarge(&'static str),
    /// The database failed; the cause is for the logs, not for the caller.
    #[error("session store failed: {0}")]
    Database(#[from] sqlx::Error),
}

/// Longest account label and bot id, in characters.
const MAX_NAME_CHARS: usize = 200;
/// Longest detail a bot may give with a returned lease (a reason, as a bot fits it).
const MAX_DETAIL_CHARS: usize = aap_proto::limits::MAX_REASON_CHARS;
/// Longest cool-down reason kept on the account (the detail, cut).
const MAX_REASON_CHARS: usize = 200;
/// Most leases a history returns.
pub const MAX_LEASE_HISTORY: u32 = 100;
pub use aap_proto::limits::{MAX_LIMIT_REST, MIN_LIMIT_REST};

fn next_free(at: &Option<DateTime<Utc>>) -> String {
    match at {
        Some(at) => format!("; the next frees up at {}", at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        None => String::new(),
    }
}

fn invalid(field: &'static str, reason: impl Into<String>) -> SessionError {
    SessionError::InvalidArgument { field, reason: reason.into() }
}

/// What a lease asks for: an assistant, and one plan of it or any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTarget {
    /// Lowercase assistant id.
    pub assistant: &'static str,
    /// The plan as asked (trimmed), `None` for any plan.
    pub plan: Option<String>,
}

impl LeaseTarget {
    /// Parses a lease's assistant and plan; an empty plan, or the scheduler's `any`, means any
    /// plan of the assistant.
    pub fn parse(assistant: &str, plan: &str) -> SessionResult<LeaseTarget> {
        let assistant = parse_assistant("assistant", assistant)?;
        let plan = plan.trim();
        input::check_plan(plan).map_err(|reason| invalid("plan", reason))?;
        let plan = (assistants::normalize_plan(plan) != ANY_PLAN).then(|| plan.to_owned());
        Ok(LeaseTarget { assistant, plan })
    }

    /// The plan as accounts are matched on it (lowercase), `None` for any plan.
    fn plan_key(&self) -> Option<String> {
        self.plan.as_deref().map(assistants::normalize_plan)
    }
}

impl fmt::Display for LeaseTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.plan {
            Some(plan) => write!(f, "{} plan {plan:?}", self.assistant),
            None => f.write_str(self.assistant),
        }
    }
}

fn parse_assistant(field: &'static str, value: &str) -> SessionResult<&'static str> {
    assistants::by_id(value).map(|assistant| assistant.id).ok_or_else(|| {
        let known: Vec<&str> = assistants::ASSISTANTS.iter().map(|assistant| assistant.id).collect();
        invalid(field, format!("unknown assistant {}, expected one of {}", input::quoted(value), known.join(", ")))
    })
}

fn parse_id(field: &'static str, value: &str) -> SessionResult<Uuid> {
    Uuid::parse_str(value.trim()).map_err(|_| invalid(field, format!("{} is not a uuid", input::quoted(value))))
}

/// An account's plan as the operator spells it ("Plus"), trimmed: a plan name as evaluations
/// have them (`input::check_plan`); `any` is refused because leases use it to mean every plan.
fn parse_account_plan(plan: &str) -> SessionResult<&str> {
    let plan = plan.trim();
    if plan.is_empty() {
        return Err(invalid("plan", "is required"));
    }
    input::check_plan(plan).map_err(|reason| invalid("plan", reason))?;
    if assistants::normalize_plan(plan) == ANY_PLAN {
        return Err(invalid("plan", format!("{ANY_PLAN:?} is reserved for leases of any plan")));
    }
    Ok(plan)
}

/// Checks that a storage state is a Playwright storage-state document of `assistant`'s that a
/// bot can load (`aap_proto::storage_state::check`, the bot's own types: a JSON object with a
/// `cookies` array of cookies and `origins` of localStorage), not the session of another
/// assistant (cookies of another assistant's domains and none of this one's; cookies of other
/// hosts, e.g. a look-alike on 127.0.0.1 or a single sign-on provider, are the operator's
/// business). The document is kept as sent, byte for byte.
fn check_storage_state(field: &'static str, json: &str, assistant: &str) -> SessionResult<()> {
    let state = aap_proto::storage_state::check(json).map_err(|reason| invalid(field, reason))?;
    let domains: Vec<&str> = state.cookies.iter().map(|cookie| cookie.domain.as_str()).collect();
    let Some(own) = assistants::by_id(assistant) else { return Ok(()) };
    if domains.iter().any(|domain| own.owns_cookie_domain(domain)) {
        return Ok(());
    }
    let other = assistants::ASSISTANTS
        .iter()
        .filter(|other| other.id != own.id)
        .find_map(|other| domains.iter().find(|domain| other.owns_cookie_domain(domain)).map(|d| (other.id, *d)));
    match other {
        Some((other, domain)) => Err(invalid(
            field,
            format!(
                "its cookies belong to {other} ({}), not {assistant} ({}): upload it for {other}",
                input::quoted(domain.trim_start_matches('.')),
                own.session_domains.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// A new account's settings, parsed as [`SessionDirectory::create_account`] stores them.
struct ParsedAccount<'a> {
    assistant: &'static str,
    plan: &'a str,
    label: &'a str,
    proxy: Option<ProxyUrl>,
    user_agent: String,
}

/// Parses everything of a new account but its storage state.
fn parse_new_account<'a>(new: &NewAccount<'a>) -> SessionResult<ParsedAccount<'a>> {
    Ok(ParsedAccount {
        assistant: parse_assistant("assistant", new.assistant)?,
        plan: parse_account_plan(new.plan)?,
        label: parse_label(new.label)?,
        proxy: parse_proxy(new.proxy)?,
        user_agent: check_user_agent(new.user_agent).map_err(|reason| invalid("user_agent", reason))?,
    })
}

/// Checks a new account's assistant, plan, label, proxy and user agent with the rules of
/// [`SessionDirectory::create_account`], before there is a storage state (`storage_state_json`
/// is not looked at): a remote login checks them before its browser starts, so that no operator
/// types a login that could not be stored.
pub fn check_new_account(new: &NewAccount<'_>) -> SessionResult<()> {
    parse_new_account(new).map(drop)
}

/// Checks an account's label: one short line that shows something (operators find the account
/// by it), stored trimmed.
fn parse_label(label: &str) -> SessionResult<&str> {
    let label = label.trim();
    input::check_one_line(label, MAX_NAME_CHARS).map_err(|reason| invalid("label", reason))?;
    if input::is_blank(label) {
        return Err(invalid("label", "is blank: name the account, e.g. by its login e-mail"));
    }
    Ok(label)
}

/// Checks an optional proxy URL; empty means none.
fn parse_proxy(text: &str) -> SessionResult<Option<ProxyUrl>> {
    match text.trim() {
        "" => Ok(None),
        text => ProxyUrl::parse(text).map(Some).map_err(|reason| invalid("proxy", reason)),
    }
}

/// Checks a return's runs against what its lease allowed: a bot rotates once it has run
/// `max_runs` evaluations on a session, so more is a broken count, and would be added to the
/// account's `runs` for good. A lease of 0 runs still lets the bot run one (bots take at least
/// one), so 1 is always accepted.
fn check_runs(runs: u32, max_runs: i64) -> SessionResult<()> {
    let allowed = max_runs.max(1);
    if i64::from(runs) > allowed {
        return Err(invalid("runs", format!("{runs} is more than the lease allowed ({allowed})")));
    }
    Ok(())
}

/// Whether an account can be lent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// Lent in rotation.
    Active,
    /// Rate limited or challenged: lent again after its cool-down.
    Cooling,
    /// Its login expired: never lent until an operator replaces its session state.
    Expired,
    /// Cooling because a bot met a challenge: lent again after its cool-down.
    Challenged,
    /// Taken out of rotation by an operator: never lent until enabled.
    Disabled,
}

impl AccountStatus {
    /// The status's name in filters and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Cooling => "cooling",
            AccountStatus::Expired => "expired",
            AccountStatus::Challenged => "challenged",
            AccountStatus::Disabled => "disabled",
        }
    }
}

/// A lease of an account, as the account's history shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub id: Uuid,
    pub account_id: Uuid,
    pub bot_id: String,
    /// The bot principal that took it; empty for leases from before principals.
    pub principal: String,
    pub leased_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub returned_at: Option<DateTime<Utc>>,
    /// `held`, `lapsed`, `ok`, `expired`, `rate-limited` or `challenged`.
    pub outcome: String,
    /// Evaluations the bot ran on it, as returned.
    pub runs: u64,
    pub detail: String,
}

/// Which accounts a list or a watch shows; empty fields match every account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountFilter {
    /// Lowercase assistant id.
    pub assistant: String,
    /// A plan, compared as leases compare it (trimmed, case-insensitive).
    pub plan: String,
    pub statuses: Vec<AccountStatus>,
}

/// An account as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    /// Lowercase assistant id.
    pub assistant: String,
    /// The operator's spelling, e.g. "Plus".
    pub plan: String,
    /// The operator's name for it, e.g. the login e-mail.
    pub label: String,
    /// Cooling only while the cool-down lasts; after it, active.
    pub status: AccountStatus,
    /// Evaluations bots reported running on it.
    pub runs: u64,
    pub last_leased_at: Option<DateTime<Utc>>,
    /// Set while cooling.
    pub cooldown_until: Option<DateTime<Utc>>,
    /// True while a lease that has not lapsed holds it.
    pub leased: bool,
    /// The proxy for operators' eyes (`scheme://host:port`), empty without one.
    pub proxy: String,
    /// The operator's user agent; empty: the bot derives one from the account id.
    pub user_agent: String,
    /// Bot challenges met on it so far.
    pub challenges: u64,
    pub last_challenged_at: Option<DateTime<Utc>>,
    /// Challenges met since the current proxy was set.
    pub proxy_challenges: u64,
    /// Why it cools down (the returning bot's detail), while cooling or challenged.
    pub cooldown_reason: String,
    /// Rate limits met on it so far.
    pub rate_limits: u64,
    /// Failed attempts bots reported on it (evidence kept or not).
    pub failures: u64,
    /// Evaluations of the latest lease (as returned; 0 while held).
    pub rotation_runs: u64,
    /// The status a disable hides: what enabling brings back. Equal to `status` otherwise.
    pub underlying_status: AccountStatus,
    /// When its session state was stored.
    pub state_refreshed_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    /// The latest lease, held or returned.
    pub last_lease: Option<LeaseRecord>,
    /// Prompts it asked, or may still ask, in the past hour (what an hourly budget counts).
    pub prompts_this_hour: u64,
    /// When the oldest lease of its past hour leaves the hour; `None` without one.
    pub hour_frees_at: Option<DateTime<Utc>>,
}

impl Account {
    /// When it may be lent again while at `budget` prompts an hour; `None` when it is under it
    /// (or there is no budget).
    pub fn budget_frees_at(&self, budget: Option<u32>) -> Option<DateTime<Utc>> {
        let at_budget = budget.is_some_and(|budget| self.prompts_this_hour >= u64::from(budget));
        self.hour_frees_at.filter(|_| at_budget)
    }
}

/// An account for [`SessionDirectory::create_account`], as the operator sent it.
#[derive(Debug, Clone, Copy)]
pub struct NewAccount<'a> {
    /// Lowercase assistant id, e.g. "chatgpt".
    pub assistant: &'a str,
    /// Plan of the account, e.g. "Plus".
    pub plan: &'a str,
    /// The operator's name for it.
    pub label: &'a str,
    /// A Playwright storage-state JSON document.
    pub storage_state_json: &'a str,
    /// `http://`, `https://` or `socks5://` proxy URL; empty: none.
    pub proxy: &'a str,
    /// The user agent to present; empty: the bot derives one.
    pub user_agent: &'a str,
}

/// Changes to an account's settings for [`SessionDirectory::update_account`]; `None` leaves a
/// setting alone.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountUpdate<'a> {
    /// A new proxy URL; empty removes the proxy.
    pub proxy: Option<&'a str>,
    /// A new user agent; empty lets the bot derive one.
    pub user_agent: Option<&'a str>,
    /// A new label.
    pub label: Option<&'a str>,
    /// End the account's cool-down now (rate limit or challenge); its counts stay.
    pub end_cooldown: bool,
}

/// A session lent to a bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Hand this back to [`SessionDirectory::return_lease`].
    pub id: Uuid,
    pub account_id: Uuid,
    /// The account's plan, as the operator spells it.
    pub plan: String,
    /// The account's Playwright storage state, as the operator sent it.
    pub storage_state_json: String,
    /// The account's proxy URL for the browser, `None` without one.
    pub proxy: Option<String>,
    /// The account's user agent; empty: the bot derives one from the account id.
    pub user_agent: String,
    /// Evaluations the bot may run before it returns the session.
    pub max_runs: u32,
    /// When the lease lapses and the account goes back into rotation without a return.
    pub expires_at: DateTime<Utc>,
}

/// How a session fared while a bot held it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseOutcome {
    /// It worked: the account goes back into rotation.
    Ok,
    /// The assistant showed a login wall: the account is retired until its state is replaced.
    Expired,
    /// The assistant refused with too many requests: the account cools down.
    RateLimited,
    /// The site showed a bot challenge: the account and its proxy are marked and the account
    /// cools down for the (longer) challenge cool-down.
    Challenged,
}

impl LeaseOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LeaseOutcome::Ok => "ok",
            LeaseOutcome::Expired => "expired",
            LeaseOutcome::RateLimited => "rate_limited",
            LeaseOutcome::Challenged => "challenged",
        }
    }
}

/// The account's stored status after a return, and the cool-down to start, if any.
///
/// An expired account stays expired whatever the return says: only a new login revives it. A
/// login wall seen on an older session state than the account now holds (the operator has
/// logged in again meanwhile) says nothing about the new login.
/// A rate limit cools the account until the time the site named (`limit_rest`, from
/// [`limit_rest`]), else for the configured cool-down.
fn settle(
    stored: AccountStatus,
    outcome: LeaseOutcome,
    lease_of_current_state: bool,
    limit_rest: Option<Duration>,
    config: &SessionsConfig,
) -> (AccountStatus, Option<Duration>) {
    match (stored, outcome) {
        (AccountStatus::Expired, _) => (AccountStatus::Expired, None),
        (_, LeaseOutcome::Expired) if lease_of_current_state => (AccountStatus::Expired, None),
        (_, LeaseOutcome::Expired) | (_, LeaseOutcome::Ok) => (stored, None),
        (_, LeaseOutcome::RateLimited) => {
            (AccountStatus::Cooling, Some(limit_rest.unwrap_or(config.rate_limit_cooldown)))
        }
        (_, LeaseOutcome::Challenged) => (AccountStatus::Cooling, Some(config.challenge_cooldown)),
    }
}

/// How long a return's `limit_lifts_at` cools its account, seen at `now`: until that time when it
/// is [`MIN_LIMIT_REST`] to [`MAX_LIMIT_REST`] ahead; `None` (the platform's cool-down) when it is
/// absent, past or nearer. Refused with another outcome than a rate limit, or further ahead.
fn limit_rest(
    outcome: LeaseOutcome,
    lifts_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> SessionResult<Option<Duration>> {
    let Some(lifts_at) = lifts_at else { return Ok(None) };
    if outcome != LeaseOutcome::RateLimited {
        return Err(invalid(
            "limit_lifts_at",
            format!("is for a RATE_LIMITED return only; this one is {}", outcome.as_str()),
        ));
    }
    match (lifts_at - now).to_std() {
        Ok(ahead) if ahead > MAX_LIMIT_REST => Err(invalid(
            "limit_lifts_at",
            format!(
                "is {:.1} days ahead ({}); a site's limit lifts within 8 days (a week's limit and a day's margin)",
                ahead.as_secs_f64() / 86_400.0,
                lifts_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
        )),
        Ok(ahead) if ahead >= MIN_LIMIT_REST => Ok(Some(ahead)),
        _ => Ok(None),
    }
}

/// What a sealed column's associated data says: the value belongs to this account and column.
fn seal_context(account_id: Uuid, column: &str) -> String {
    format!("aap.session_accounts.{column}.{account_id}")
}

/// The accounts bots log in with, and their rotation.
///
/// Session states and proxy URLs are stored sealed with the configured [`SessionKey`]
/// (AES-256-GCM); rows from before encryption are sealed by
/// [`SessionDirectory::seal_plaintext_rows`], which the platform runs as it starts.
#[derive(Debug, Clone)]
pub struct SessionDirectory {
    store: Store,
    config: SessionsConfig,
    changes: crate::changes::Changes,
}

impl SessionDirectory {
    /// A directory over the tables of the platform's migrations in `pool`.
    pub fn new(pool: PgPool, config: SessionsConfig) -> SessionDirectory {
        crate::metrics::register();
        let changes = crate::changes::Changes::new(pool.clone());
        SessionDirectory { store: Store::new(pool), config, changes }
    }

    /// The settings it lends with.
    pub fn config(&self) -> &SessionsConfig {
        &self.config
    }

    fn key(&self) -> SessionResult<&SessionKey> {
        self.config.key.as_ref().ok_or(SessionError::NoKey)
    }

    fn seal(&self, account_id: Uuid, column: &'static str, plaintext: &str) -> SessionResult<Vec<u8>> {
        let key = self.key()?;
        let field = if column == "proxy" { "proxy" } else { "storage_state_json" };
        key.seal(plaintext.as_bytes(), &seal_context(account_id, column)).map_err(|_| SessionError::TooLarge(field))
    }

    fn open(&self, account_id: Uuid, column: &'static str, sealed: &[u8]) -> SessionResult<String> {
        let field = if column == "proxy" { "proxy" } else { "session state" };
        let undecryptable = |cause| SessionError::Undecryptable { account_id, field, cause };
        let plaintext = self.key()?.open(sealed, &seal_context(account_id, column)).map_err(undecryptable)?;
        // Only valid UTF-8 was ever sealed; anything else means the row was tampered with.
        String::from_utf8(plaintext).map_err(|_| undecryptable(OpenError::Tampered))
    }

    /// The session state and proxy of a picked account, opened.
    fn open_picked(&self, account: &PickedAccount) -> SessionResult<(String, Option<String>)> {
        let state = match (&account.storage_state_sealed, &account.storage_state) {
            (Some(sealed), _) => self.open(account.id, "storage_state", sealed)?,
            // A row from before encryption that seal_plaintext_rows has not reached yet.
            (None, Some(plain)) => plain.clone(),
            (None, None) => {
                return Err(SessionError::Undecryptable {
                    account_id: account.id,
                    field: "session state",
                    cause: OpenError::Format,
                });
            }
        };
        let proxy = account.proxy_sealed.as_deref().map(|sealed| self.open(account.id, "proxy", sealed)).transpose()?;
        Ok((state, proxy))
    }

    /// Seals the session states still stored in plain text (rows written before encryption at
    /// rest, migration 0004) with the configured key; returns how many it sealed. Idempotent,
    /// and safe to run from several replicas at once.
    #[tracing::instrument(skip(self))]
    pub async fn seal_plaintext_rows(&self) -> SessionResult<u64> {
        let key = self.key()?;
        let mut sealed = 0;
        for (id, plaintext) in self.store.plaintext_states().await? {
            let value = key
                .seal(plaintext.as_bytes(), &seal_context(id, "storage_state"))
                .map_err(|_| SessionError::TooLarge("storage_state_json"))?;
            if self.store.seal_state(id, &plaintext, &value).await? {
                sealed += 1;
            }
        }
        if sealed > 0 {
            tracing::info!(sealed, key_id = key.id(), "plain-text session states encrypted");
        }
        Ok(sealed)
    }

    /// Adds an active account.
    #[tracing::instrument(skip_all, fields(assistant = new.assistant, plan = new.plan, label = new.label))]
    pub async fn create_account(&self, new: NewAccount<'_>) -> SessionResult<Account> {
        let ParsedAccount { assistant, plan, label, proxy, user_agent } = parse_new_account(&new)?;
        check_storage_state("storage_state_json", new.storage_state_json, assistant)?;
        let plan_key = assistants::normalize_plan(plan);
        let id = Uuid::new_v4();
        let proxy_sealed = proxy.as_ref().map(|proxy| self.seal(id, "proxy", &proxy.as_str())).transpose()?;
        let row = NewAccountRow {
            id,
            assistant,
            plan,
            plan_key: &plan_key,
            label,
            storage_state_sealed: self.seal(id, "storage_state", new.storage_state_json)?,
            proxy_sealed,
            proxy_display: proxy.as_ref().map(ProxyUrl::display).unwrap_or_default(),
            user_agent: &user_agent,
        };
        let account = self.store.insert_account(&row).await?;
        tracing::info!(account_id = %account.id, "account created");
        Ok(account)
    }

    /// The platform's budget of prompts an hour for an account of `assistant`, if any.
    pub fn hourly_budget(&self, assistant: &str) -> Option<u32> {
        self.config.hourly_prompts.get(assistant).copied()
    }

    /// Every account, or one assistant's when `assistant` is not empty.
    pub async fn list_accounts(&self, assistant: &str) -> SessionResult<Vec<Account>> {
        self.find_accounts(&AccountFilter { assistant: assistant.to_owned(), ..AccountFilter::default() }).await
    }

    /// The accounts `filter` matches, by assistant, plan and age.
    #[tracing::instrument(skip(self))]
    pub async fn find_accounts(&self, filter: &AccountFilter) -> SessionResult<Vec<Account>> {
        let assistant = match filter.assistant.trim() {
            "" => None,
            assistant => Some(parse_assistant("assistant", assistant)?),
        };
        let plan = filter.plan.trim();
        input::check_plan(plan).map_err(|reason| invalid("plan", reason))?;
        let plan_key = (!plan.is_empty()).then(|| assistants::normalize_plan(plan));
        let mut accounts = self.store.list_accounts(assistant, plan_key.as_deref()).await?;
        if !filter.statuses.is_empty() {
            accounts.retain(|account| filter.statuses.contains(&account.status));
        }
        Ok(accounts)
    }

    /// One account.
    #[tracing::instrument(skip(self))]
    pub async fn get_account(&self, account_id: &str) -> SessionResult<Account> {
        let id = parse_id("account_id", account_id)?;
        self.store.get_account(id).await?.ok_or(SessionError::AccountNotFound(id))
    }

    /// Takes an account out of rotation (`disabled`) or puts it back. A bot holding a lease on
    /// it finishes its task and returns it as usual; it is not lent again while disabled.
    #[tracing::instrument(skip(self))]
    pub async fn set_disabled(&self, account_id: &str, disabled: bool) -> SessionResult<Account> {
        let id = parse_id("account_id", account_id)?;
        let account = self.store.set_disabled(id, disabled).await?.ok_or(SessionError::AccountNotFound(id))?;
        tracing::info!(disabled, "account {}", if disabled { "disabled" } else { "enabled" });
        Ok(account)
    }

    /// Deletes an account with its session state, leases and evidence; one a live lease holds
    /// is refused.
    #[tracing::instrument(skip(self))]
    pub async fn delete_account(&self, account_id: &str) -> SessionResult<()> {
        let id = parse_id("account_id", account_id)?;
        match self.store.delete_account(id).await? {
            store::Deletion::Deleted => {
                tracing::info!("account deleted");
                Ok(())
            }
            store::Deletion::NotFound => Err(SessionError::AccountNotFound(id)),
            store::Deletion::Leased => Err(SessionError::Leased(id)),
        }
    }

    /// An account's leases, newest first, at most `limit` (0: [`MAX_LEASE_HISTORY`]).
    #[tracing::instrument(skip(self))]
    pub async fn leases(&self, account_id: &str, limit: u32) -> SessionResult<Vec<LeaseRecord>> {
        let id = parse_id("account_id", account_id)?;
        let limit = if limit == 0 { MAX_LEASE_HISTORY } else { limit.min(MAX_LEASE_HISTORY) };
        self.store.leases(id, i64::from(limit)).await?.ok_or(SessionError::AccountNotFound(id))
    }

    /// Wakes on every change to an account or a lease, on any replica (PostgreSQL
    /// LISTEN/NOTIFY); see [`crate::changes`].
    pub fn changes(&self) -> crate::changes::Changes {
        self.changes.clone()
    }

    /// Replaces an account's session state after a fresh login and makes it active again.
    #[tracing::instrument(skip(self, storage_state_json))]
    pub async fn update_session_state(&self, account_id: &str, storage_state_json: &str) -> SessionResult<Account> {
        let id = parse_id("account_id", account_id)?;
        let account = self.store.get_account(id).await?.ok_or(SessionError::AccountNotFound(id))?;
        check_storage_state("storage_state_json", storage_state_json, &account.assistant)?;
        let sealed = self.seal(id, "storage_state", storage_state_json)?;
        let account = self.store.replace_storage_state(id, &sealed).await?.ok_or(SessionError::AccountNotFound(id))?;
        tracing::info!("session state replaced");
        Ok(account)
    }

    /// Changes an account's proxy, user agent or label, and ends its cool-down when asked; its
    /// session state, leases and otherwise its status stay as they are. A new proxy starts with
    /// no challenges; the proxy it has, set again, keeps its count.
    #[tracing::instrument(skip(self, update))]
    pub async fn update_account(&self, account_id: &str, update: AccountUpdate<'_>) -> SessionResult<Account> {
        let id = parse_id("account_id", account_id)?;
        let proxy = update.proxy.map(parse_proxy).transpose()?;
        let user_agent =
            update.user_agent.map(check_user_agent).transpose().map_err(|reason| invalid("user_agent", reason))?;
        let proxy = match proxy {
            Some(Some(proxy)) => Some((Some(self.seal(id, "proxy", &proxy.as_str())?), proxy.display())),
            Some(None) => Some((None, String::new())),
            None => None,
        };
        let label = update.label.map(parse_label).transpose()?;
        let settings = AccountSettings { proxy, user_agent, label, end_cooldown: update.end_cooldown };
        let account = self.store.update_settings(id, &settings).await?.ok_or(SessionError::AccountNotFound(id))?;
        tracing::info!(
            proxy = account.proxy,
            user_agent = account.user_agent,
            end_cooldown = update.end_cooldown,
            "account settings changed"
        );
        Ok(account)
    }

    /// Lends the account of the target leased least recently among those neither held, cooling
    /// nor expired. Concurrent leases never get the same account: each locks the row it takes
    /// and skips rows others hold locked.
    #[tracing::instrument(skip(self))]
    pub async fn lease(&self, assistant: &str, plan: &str, bot_id: &str, principal: &str) -> SessionResult<Lease> {
        let result = self.lend(assistant, plan, bot_id, principal).await;
        crate::metrics::leased(assistant, &result);
        result
    }

    /// The body of [`SessionDirectory::lease`].
    async fn lend(&self, assistant: &str, plan: &str, bot_id: &str, principal: &str) -> SessionResult<Lease> {
        let target = LeaseTarget::parse(assistant, plan)?;
        input::check_one_line(bot_id.trim(), MAX_NAME_CHARS).map_err(|reason| invalid("bot_id", reason))?;
        let plan_key = target.plan_key();
        let budget = self.config.hourly_prompts.get(target.assistant).copied();
        let mut tx = self.store.begin().await?;
        let Some(account) = store::pick_account(&mut tx, target.assistant, plan_key.as_deref(), budget).await? else {
            tx.rollback().await?;
            let availability = self.store.availability(target.assistant, plan_key.as_deref(), budget).await?;
            return Err(if availability.accounts == 0 {
                SessionError::NoAccount { target }
            } else {
                SessionError::Exhausted { target, next_free_at: availability.next_free_at }
            });
        };
        // Opened before the lease is recorded: an account whose state cannot be read is refused
        // without a lease to clean up.
        let (storage_state_json, proxy) = match self.open_picked(&account) {
            Ok(opened) => opened,
            Err(error) => {
                tx.rollback().await?;
                tracing::error!(account_id = %account.id, %error, "cannot lend the account");
                return Err(error);
            }
        };
        let lease_id = Uuid::new_v4();
        // No more runs than the account's hourly budget has left (at least one: it was picked
        // below its budget).
        let left = budget.map(|budget| i64::from(budget) - account.asked_in_hour);
        let max_runs = match left {
            Some(left) => self.config.per_session_runs.min(u32::try_from(left.max(1)).unwrap_or(u32::MAX)),
            None => self.config.per_session_runs,
        };
        let expires_at =
            store::open_lease(&mut tx, &account, lease_id, (principal, bot_id.trim()), max_runs, self.config.lease_ttl)
                .await?;
        tx.commit().await?;
        tracing::info!(%lease_id, account_id = %account.id, "session leased");
        Ok(Lease {
            id: lease_id,
            account_id: account.id,
            plan: account.plan,
            storage_state_json,
            proxy,
            user_agent: account.user_agent,
            max_runs,
            expires_at,
        })
    }

    /// Takes a lease back: records the runs, frees the account and applies the outcome
    /// (expired: retired; rate limited: cools down, until `limit_lifts_at` when the site named
    /// that time; challenged: marked, with its proxy, and cools down longer). A lease is returned once, and only while it holds its account: the
    /// return of a lapsed lease is refused and changes nothing, since its account went back into
    /// rotation and may be another bot's now (its history keeps it `lapsed`).
    #[tracing::instrument(skip(self, detail))]
    pub async fn return_lease(
        &self,
        lease_id: &str,
        outcome: LeaseOutcome,
        runs: u32,
        detail: &str,
        limit_lifts_at: Option<DateTime<Utc>>,
        principal: &str,
    ) -> SessionResult<Account> {
        let lease_id = parse_id("lease_id", lease_id)?;
        // Shown to operators (the cool-down reason in the console and `aap accounts list`), so
        // no escape sequence a terminal would act on.
        input::check_line(detail, MAX_DETAIL_CHARS).map_err(|reason| invalid("detail", reason))?;
        let limit_rest = limit_rest(outcome, limit_lifts_at, Utc::now())?;
        let mut tx = self.store.begin().await?;
        let lease = store::lock_lease(&mut tx, lease_id).await?.ok_or(SessionError::LeaseNotFound(lease_id))?;
        if lease.principal.as_deref() != Some(principal) {
            return Err(SessionError::PermissionDenied(format!(
                "lease {lease_id} is held by another bot: only its holder may return it"
            )));
        }
        if lease.returned_at.is_some() {
            return Err(SessionError::LeaseAlreadyReturned(lease_id));
        }
        let stored = store::lock_account(&mut tx, lease.account_id).await?;
        // The account's own hold settles a race with the clock: a return whose transaction began
        // before the lease lapsed still finds the account held by another lease once it locks it.
        if lease.lapsed || stored.lease_id != Some(lease_id) {
            return Err(SessionError::LeaseLapsed { lease_id, lapsed_at: lease.expires_at });
        }
        check_runs(runs, lease.max_runs)?;
        let current_state = lease.state_version == stored.state_version;
        let (status, cooldown) = settle(stored.status, outcome, current_state, limit_rest, &self.config);
        store::close_lease(&mut tx, lease_id, outcome.as_str(), runs, detail).await?;
        let challenged = outcome == LeaseOutcome::Challenged;
        let rate_limited = outcome == LeaseOutcome::RateLimited;
        let reason: String = detail.trim().chars().take(MAX_REASON_CHARS).collect();
        let change = AccountReturn {
            account_id: lease.account_id,
            lease_id,
            runs,
            status,
            cooldown,
            challenged,
            rate_limited,
            reason: &reason,
        };
        let account = store::apply_return(&mut tx, &change).await?;
        tx.commit().await?;
        crate::metrics::returned(&account.assistant, outcome);
        tracing::info!(account_id = %account.id, status = ?account.status, "session returned");
        Ok(account)
    }
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(60);
    const CHALLENGE_COOL: Duration = Duration::from_secs(600);

    fn config() -> SessionsConfig {
        SessionsConfig {
            rate_limit_cooldown: COOL,
            challenge_cooldown: CHALLENGE_COOL,
            key: None,
            ..SessionsConfig::default()
        }
    }

    #[test]
    fn expired_accounts_stay_expired_whatever_the_return_says() {
        let outcomes = [LeaseOutcome::Ok, LeaseOutcome::RateLimited, LeaseOutcome::Expired, LeaseOutcome::Challenged];
        for outcome in outcomes {
            assert_eq!(settle(AccountStatus::Expired, outcome, true, None, &config()), (AccountStatus::Expired, None));
        }
    }

    #[test]
    fn a_login_wall_on_an_older_state_leaves_the_new_login_alone() {
        let config = config();
        assert_eq!(
            settle(AccountStatus::Active, LeaseOutcome::Expired, false, None, &config),
            (AccountStatus::Active, None)
        );
        assert_eq!(
            settle(AccountStatus::Active, LeaseOutcome::Expired, true, None, &config),
            (AccountStatus::Expired, None)
        );
    }

    #[test]
    fn rate_limits_and_challenges_start_their_own_cool_downs_and_ok_keeps_the_status() {
        let config = config();
        assert_eq!(
            settle(AccountStatus::Active, LeaseOutcome::RateLimited, true, None, &config),
            (AccountStatus::Cooling, Some(COOL))
        );
        assert_eq!(
            settle(AccountStatus::Active, LeaseOutcome::Challenged, true, None, &config),
            (AccountStatus::Cooling, Some(CHALLENGE_COOL))
        );
        assert_eq!(
            settle(AccountStatus::Cooling, LeaseOutcome::Ok, true, None, &config),
            (AccountStatus::Cooling, None)
        );
        assert_eq!(settle(AccountStatus::Active, LeaseOutcome::Ok, true, None, &config), (AccountStatus::Active, None));
    }

    #[test]
    fn a_rate_limit_cools_until_the_time_the_site_named_within_bounds() {
        let config = config();
        let now = Utc::now();
        let rest = |outcome, at: Option<DateTime<Utc>>| limit_rest(outcome, at, now);
        let hours = |h: i64| Some(now + chrono::Duration::hours(h));
        assert_eq!(rest(LeaseOutcome::RateLimited, None).ok(), Some(None));
        assert_eq!(rest(LeaseOutcome::RateLimited, hours(5)).ok(), Some(Some(Duration::from_secs(5 * 3600))));
        // A week's limit, to the second; a minute ahead is the nearest taken.
        assert_eq!(rest(LeaseOutcome::RateLimited, hours(7 * 24)).ok(), Some(Some(Duration::from_secs(7 * 86_400))));
        let minute = Some(now + chrono::Duration::seconds(60));
        assert_eq!(rest(LeaseOutcome::RateLimited, minute).ok(), Some(Some(MIN_LIMIT_REST)));
        // Past or nearer than a minute: a page still showing a lifted limit; the platform's own.
        for stale in [hours(-1), Some(now), Some(now + chrono::Duration::seconds(59))] {
            assert_eq!(rest(LeaseOutcome::RateLimited, stale).ok(), Some(None), "{stale:?}");
        }
        // Further than 8 days, or with another outcome: a misreading, refused naming the field.
        for (outcome, at, says) in [
            (LeaseOutcome::RateLimited, hours(8 * 24 + 1), "days ahead"),
            (LeaseOutcome::Ok, hours(1), "RATE_LIMITED return only; this one is ok"),
            (LeaseOutcome::Challenged, hours(1), "this one is challenged"),
        ] {
            match rest(outcome, at) {
                Err(SessionError::InvalidArgument { field: "limit_lifts_at", reason }) => {
                    assert!(reason.contains(says), "{reason}")
                }
                other => panic!("{outcome:?} {at:?}: {other:?}"),
            }
        }
        let five_hours = Some(Duration::from_secs(5 * 3600));
        assert_eq!(
            settle(AccountStatus::Active, LeaseOutcome::RateLimited, true, five_hours, &config),
            (AccountStatus::Cooling, five_hours)
        );
        assert_eq!(
            settle(AccountStatus::Expired, LeaseOutcome::RateLimited, true, five_hours, &config),
            (AccountStatus::Expired, None)
        );
    }

    #[test]
    fn the_default_challenge_cool_down_outlasts_the_rate_limit_one() {
        let config = SessionsConfig::default();
        assert!(config.challenge_cooldown > config.rate_limit_cooldown);
        assert_eq!(config.challenge_cooldown, Duration::from_secs(3600));
    }

    #[test]
    fn lease_targets_treat_empty_and_any_as_every_plan() {
        assert_eq!(LeaseTarget::parse("chatgpt", "").map(|t| t.plan).ok(), Some(None));
        assert_eq!(LeaseTarget::parse("chatgpt", " Any ").map(|t| t.plan).ok(), Some(None));
        let plus = LeaseTarget::parse("chatgpt", " Plus ").ok();
        assert_eq!(plus.as_ref().and_then(LeaseTarget::plan_key).as_deref(), Some("plus"));
        assert!(matches!(
            LeaseTarget::parse("ChatGPT", ""),
            Err(SessionError::InvalidArgument { field: "assistant", .. })
        ));
    }

    #[test]
    fn storage_states_need_an_object_with_a_cookies_array() {
        assert!(check_storage_state("s", r#"{"cookies": [], "origins": []}"#, "chatgpt").is_ok());
        for bad in ["", "[]", "{}", r#"{"cookies": {}}"#, "{not json"] {
            assert!(check_storage_state("s", bad, "chatgpt").is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn a_storage_state_a_bot_could_not_load_is_refused_naming_what_is_wrong() {
        let probe = r#"{"cookies":[1,"two",{"name":"x"}],"origins":"notalist"}"#;
        let Err(SessionError::InvalidArgument { field, reason }) =
            check_storage_state("storage_state_json", probe, "chatgpt")
        else {
            panic!("the probe's storage state was taken");
        };
        assert_eq!(field, "storage_state_json");
        assert!(reason.starts_with("cookies[0] is not an object with name and value strings"), "{reason}");
        let origins = r#"{"cookies":[{"name":"a","value":"b","domain":".chatgpt.com"}],"origins":"notalist"}"#;
        assert!(
            check_storage_state("s", origins, "chatgpt")
                .is_err_and(|e| e.to_string().contains("\"origins\" must be an array"))
        );
    }

    #[test]
    fn another_assistants_session_is_refused_naming_both() {
        let cookie = |domain: &str| format!(r#"{{"cookies": [{{"name": "s", "value": "v", "domain": "{domain}"}}]}}"#);
        let refused = check_storage_state("s", &cookie(".claude.ai"), "chatgpt").expect_err("claude's session");
        assert!(refused.to_string().contains("belong to claude (\"claude.ai\"), not chatgpt"), "{refused}");
        assert!(check_storage_state("s", &cookie("www.google.com"), "perplexity").is_err());
        // Its own domains and subdomains, a look-alike's host, and single sign-on beside its own.
        assert!(check_storage_state("s", &cookie(".chatgpt.com"), "chatgpt").is_ok());
        assert!(check_storage_state("s", &cookie("auth.openai.com"), "chatgpt").is_ok());
        assert!(check_storage_state("s", &cookie("127.0.0.1"), "claude").is_ok());
        assert!(check_storage_state("s", &cookie("notclaude.ai"), "chatgpt").is_ok());
        let sso = r#"{"cookies": [{"name": "a", "value": "1", "domain": ".google.com"},
                                   {"name": "b", "value": "2", "domain": ".chatgpt.com"}]}"#;
        assert!(check_storage_state("s", sso, "chatgpt").is_ok());
    }

    #[test]
    fn a_return_runs_at_most_what_its_lease_allowed() {
        assert!(check_runs(0, 10).is_ok());
        assert!(check_runs(10, 10).is_ok());
        assert!(check_runs(1, 0).is_ok(), "a bot runs at least one evaluation on a lease");
        assert!(matches!(check_runs(11, 10), Err(SessionError::InvalidArgument { field: "runs", .. })));
        assert!(matches!(check_runs(u32::MAX, 10), Err(SessionError::InvalidArgument { field: "runs", .. })));
    }

    #[test]
    fn labels_are_one_line() {
        assert_eq!(parse_label(" alice@example.com ").ok(), Some("alice@example.com"));
        assert!(matches!(parse_label("a\nb"), Err(SessionError::InvalidArgument { field: "label", .. })));
        assert!(matches!(parse_label("a\rb"), Err(SessionError::InvalidArgument { field: "label", .. })));
        for blank in ["", "   ", "\u{200B}\u{FEFF}", " \u{2060}\u{200D} "] {
            assert!(
                matches!(parse_label(blank), Err(SessionError::InvalidArgument { field: "label", .. })),
                "{blank:?}"
            );
        }
    }

    #[test]
    fn account_plans_keep_their_spelling_but_not_any() {
        assert_eq!(parse_account_plan(" Plus ").ok(), Some("Plus"));
        assert!(parse_account_plan("  ").is_err());
        assert!(parse_account_plan("ANY").is_err());
    }
}
