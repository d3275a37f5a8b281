//! The sessions domain: accounts, the rotation that lends them, and what a return does to an
//! account. Knows nothing of gRPC; [`crate::grpc`] adapts it.

use std::fmt;
use std::time::Duration;

use aap_platform::assistants::{self, ANY_PLAN};
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::{self, AccountReturn, NewAccountRow, Store};

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
}

impl Default for SessionsConfig {
    fn default() -> SessionsConfig {
        SessionsConfig {
            per_session_runs: 10,
            lease_ttl: Duration::from_secs(15 * 60),
            rate_limit_cooldown: Duration::from_secs(30 * 60),
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
    #[error("every account of {target} is leased, cooling down or expired{}", next_free(.next_free_at))]
    Exhausted {
        /// What the lease asked for.
        target: LeaseTarget,
        /// When the first leased or cooling account frees up, when known.
        next_free_at: Option<DateTime<Utc>>,
    },
    /// No account has this id.
    #[error("account {0} not found")]
    AccountNotFound(Uuid),
    /// No lease has this id.
    #[error("lease {0} not found")]
    LeaseNotFound(Uuid),
    /// The lease was returned before; a return is applied once.
    #[error("lease {0} was already returned")]
    LeaseAlreadyReturned(Uuid),
    /// The database failed; the cause is for the logs, not for the caller.
    #[error("session store failed: {0}")]
    Database(#[from] sqlx::Error),
}

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
        invalid(field, format!("unknown assistant {value:?}, expected one of {}", known.join(", ")))
    })
}

fn parse_id(field: &'static str, value: &str) -> SessionResult<Uuid> {
    Uuid::parse_str(value.trim()).map_err(|_| invalid(field, format!("{value:?} is not a uuid")))
}

/// An account's plan as the operator spells it ("Plus"), trimmed; `any` is refused because
/// leases use it to mean every plan.
fn parse_account_plan(plan: &str) -> SessionResult<&str> {
    let plan = plan.trim();
    if plan.is_empty() {
        return Err(invalid("plan", "is required"));
    }
    if assistants::normalize_plan(plan) == ANY_PLAN {
        return Err(invalid("plan", format!("{ANY_PLAN:?} is reserved for leases of any plan")));
    }
    Ok(plan)
}

/// Checks that a storage state is a Playwright storage-state document: a JSON object with a
/// `cookies` array. The document is kept as sent, byte for byte.
fn check_storage_state(field: &'static str, json: &str) -> SessionResult<()> {
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|error| invalid(field, format!("not JSON: {error}")))?;
    let Some(object) = value.as_object() else {
        return Err(invalid(field, "must be a JSON object"));
    };
    match object.get("cookies") {
        Some(serde_json::Value::Array(_)) => Ok(()),
        _ => Err(invalid(field, "must have a \"cookies\" array (Playwright storage state)")),
    }
}

/// Whether an account can be lent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    /// Lent in rotation.
    Active,
    /// Rate limited: lent again after its cool-down.
    Cooling,
    /// Its login expired: never lent until an operator replaces its session state.
    Expired,
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
}

/// A session lent to a bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Hand this back to [`SessionDirectory::return_lease`].
    pub id: Uuid,
    pub account_id: Uuid,
    /// The account's plan, as the operator spells it.
    pub plan: String,
    /// The account's Playwright storage state, as stored.
    pub storage_state_json: String,
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
}

impl LeaseOutcome {
    fn as_str(self) -> &'static str {
        match self {
            LeaseOutcome::Ok => "ok",
            LeaseOutcome::Expired => "expired",
            LeaseOutcome::RateLimited => "rate_limited",
        }
    }
}

/// The account's stored status after a return, and the cool-down to start, if any.
///
/// An expired account stays expired whatever the return says: only a new login revives it. A
/// login wall seen on an older session state than the account now holds (the operator has
/// logged in again meanwhile) says nothing about the new login.
fn settle(
    stored: AccountStatus,
    outcome: LeaseOutcome,
    lease_of_current_state: bool,
    cooldown: Duration,
) -> (AccountStatus, Option<Duration>) {
    match (stored, outcome) {
        (AccountStatus::Expired, _) => (AccountStatus::Expired, None),
        (_, LeaseOutcome::Expired) if lease_of_current_state => (AccountStatus::Expired, None),
        (_, LeaseOutcome::Expired) | (_, LeaseOutcome::Ok) => (stored, None),
        (_, LeaseOutcome::RateLimited) => (AccountStatus::Cooling, Some(cooldown)),
    }
}

/// The accounts bots log in with, and their rotation.
///
/// Session states are stored as sent, in plain text: encryption at rest is not implemented yet,
/// so the database must be treated as holding live logins.
#[derive(Debug, Clone)]
pub struct SessionDirectory {
    store: Store,
    config: SessionsConfig,
}

impl SessionDirectory {
    /// A directory over the tables of the platform's migrations in `pool`.
    pub fn new(pool: PgPool, config: SessionsConfig) -> SessionDirectory {
        SessionDirectory { store: Store::new(pool), config }
    }

    /// The settings it lends with.
    pub fn config(&self) -> &SessionsConfig {
        &self.config
    }

    /// Adds an active account.
    #[tracing::instrument(skip_all, fields(assistant = new.assistant, plan = new.plan, label = new.label))]
    pub async fn create_account(&self, new: NewAccount<'_>) -> SessionResult<Account> {
        let assistant = parse_assistant("assistant", new.assistant)?;
        let plan = parse_account_plan(new.plan)?;
        check_storage_state("storage_state_json", new.storage_state_json)?;
        let plan_key = assistants::normalize_plan(plan);
        let row = NewAccountRow {
            id: Uuid::new_v4(),
            assistant,
            plan,
            plan_key: &plan_key,
            label: new.label.trim(),
            storage_state: new.storage_state_json,
        };
        let account = self.store.insert_account(&row).await?;
        tracing::info!(account_id = %account.id, "account created");
        Ok(account)
    }

    /// Every account, or one assistant's when `assistant` is not empty.
    #[tracing::instrument(skip(self))]
    pub async fn list_accounts(&self, assistant: &str) -> SessionResult<Vec<Account>> {
        let assistant = match assistant.trim() {
            "" => None,
            assistant => Some(parse_assistant("assistant", assistant)?),
        };
        Ok(self.store.list_accounts(assistant).await?)
    }

    /// Replaces an account's session state after a fresh login and makes it active again.
    #[tracing::instrument(skip(self, storage_state_json))]
    pub async fn update_session_state(&self, account_id: &str, storage_state_json: &str) -> SessionResult<Account> {
        let id = parse_id("account_id", account_id)?;
        check_storage_state("storage_state_json", storage_state_json)?;
        let account =
            self.store.replace_storage_state(id, storage_state_json).await?.ok_or(SessionError::AccountNotFound(id))?;
        tracing::info!("session state replaced");
        Ok(account)
    }

    /// Lends the account of the target leased least recently among those neither held, cooling
    /// nor expired. Concurrent leases never get the same account: each locks the row it takes
    /// and skips rows others hold locked.
    #[tracing::instrument(skip(self))]
    pub async fn lease(&self, assistant: &str, plan: &str, bot_id: &str) -> SessionResult<Lease> {
        let target = LeaseTarget::parse(assistant, plan)?;
        let plan_key = target.plan_key();
        let mut tx = self.store.begin().await?;
        let Some(account) = store::pick_account(&mut tx, target.assistant, plan_key.as_deref()).await? else {
            tx.rollback().await?;
            let availability = self.store.availability(target.assistant, plan_key.as_deref()).await?;
            return Err(if availability.accounts == 0 {
                SessionError::NoAccount { target }
            } else {
                SessionError::Exhausted { target, next_free_at: availability.next_free_at }
            });
        };
        let lease_id = Uuid::new_v4();
        let max_runs = self.config.per_session_runs;
        let expires_at =
            store::open_lease(&mut tx, &account, lease_id, bot_id.trim(), max_runs, self.config.lease_ttl).await?;
        tx.commit().await?;
        tracing::info!(%lease_id, account_id = %account.id, "session leased");
        Ok(Lease {
            id: lease_id,
            account_id: account.id,
            plan: account.plan,
            storage_state_json: account.storage_state,
            max_runs,
            expires_at,
        })
    }

    /// Takes a lease back: records the runs, frees the account and applies the outcome
    /// (expired: retired; rate limited: cools down). A lease is returned once; a lapsed lease
    /// may still be returned, and then leaves its account's newer lease alone.
    #[tracing::instrument(skip(self, detail))]
    pub async fn return_lease(
        &self,
        lease_id: &str,
        outcome: LeaseOutcome,
        runs: u32,
        detail: &str,
    ) -> SessionResult<Account> {
        let lease_id = parse_id("lease_id", lease_id)?;
        let mut tx = self.store.begin().await?;
        let lease = store::lock_lease(&mut tx, lease_id).await?.ok_or(SessionError::LeaseNotFound(lease_id))?;
        if lease.returned_at.is_some() {
            return Err(SessionError::LeaseAlreadyReturned(lease_id));
        }
        let stored = store::lock_account(&mut tx, lease.account_id).await?;
        let current_state = lease.state_version == stored.state_version;
        let (status, cooldown) = settle(stored.status, outcome, current_state, self.config.rate_limit_cooldown);
        store::close_lease(&mut tx, lease_id, outcome.as_str(), runs, detail).await?;
        let change = AccountReturn { account_id: lease.account_id, lease_id, runs, status, cooldown };
        let account = store::apply_return(&mut tx, &change).await?;
        tx.commit().await?;
        tracing::info!(account_id = %account.id, status = ?account.status, "session returned");
        Ok(account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(60);

    #[test]
    fn expired_accounts_stay_expired_whatever_the_return_says() {
        for outcome in [LeaseOutcome::Ok, LeaseOutcome::RateLimited, LeaseOutcome::Expired] {
            assert_eq!(settle(AccountStatus::Expired, outcome, true, COOL), (AccountStatus::Expired, None));
        }
    }

    #[test]
    fn a_login_wall_on_an_older_state_leaves_the_new_login_alone() {
        assert_eq!(settle(AccountStatus::Active, LeaseOutcome::Expired, false, COOL), (AccountStatus::Active, None));
        assert_eq!(settle(AccountStatus::Active, LeaseOutcome::Expired, true, COOL), (AccountStatus::Expired, None));
    }

    #[test]
    fn rate_limits_start_a_cool_down_and_ok_keeps_the_status() {
        assert_eq!(
            settle(AccountStatus::Active, LeaseOutcome::RateLimited, true, COOL),
            (AccountStatus::Cooling, Some(COOL))
        );
        assert_eq!(settle(AccountStatus::Cooling, LeaseOutcome::Ok, true, COOL), (AccountStatus::Cooling, None));
        assert_eq!(settle(AccountStatus::Active, LeaseOutcome::Ok, true, COOL), (AccountStatus::Active, None));
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
        assert!(check_storage_state("s", r#"{"cookies": [], "origins": []}"#).is_ok());
        for bad in ["", "[]", "{}", r#"{"cookies": {}}"#, "{not json"] {
            assert!(check_storage_state("s", bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn account_plans_keep_their_spelling_but_not_any() {
        assert_eq!(parse_account_plan(" Plus ").ok(), Some("Plus"));
        assert!(parse_account_plan("  ").is_err());
        assert!(parse_account_plan("ANY").is_err());
    }
}
