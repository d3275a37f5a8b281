//! Every SQL statement of the sessions service, over the tables of
//! `services/platform/migrations/0002_sessions.sql` and `0004_session_identity.sql`.
//!
//! Session states and proxy URLs arrive here sealed (see [`crate::crypto`]); the store never
//! sees a key.
//!
//! Times come from the database clock (`now()`), so replicas with skewed clocks agree on when a
//! lease lapses or a cool-down ends.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::domain::{Account, AccountStatus, LeaseRecord};

/// The effective status of the row `a`: a cool-down that has passed reads as active, one a bot
/// challenge started as challenged. A macro so that it can be `concat!`ed into static SQL.
macro_rules! effective_status {
    () => {
        "CASE WHEN a.status = 'cooling' AND a.cooldown_until <= now() THEN 'active' \
              WHEN a.status = 'cooling' AND a.cooldown_kind = 'challenged' THEN 'challenged' \
              ELSE a.status END"
    };
}

/// A lease's outcome as clients see it: `held`, `lapsed`, or the return's (`rate-limited`).
macro_rules! lease_outcome {
    () => {
        "CASE WHEN l.returned_at IS NOT NULL THEN replace(l.outcome, '_', '-') \
              WHEN l.expires_at > now() THEN 'held' ELSE 'lapsed' END"
    };
}

/// Selects [`Account`]s as clients see them from a relation `a` of `session_accounts` rows (a
/// CTE over the table, or over an `UPDATE ... RETURNING *`), each with its latest lease: a
/// cool-down that has passed reads as active, a lapsed lease as not leased, a disabled account
/// as disabled.
macro_rules! select_accounts {
    () => {
        concat!(
            "SELECT a.id, a.assistant, a.plan, a.label, a.runs, a.last_leased_at, \
             CASE WHEN a.disabled THEN 'disabled' ELSE ",
            effective_status!(),
            " END AS status, ",
            effective_status!(),
            " AS underlying_status, \
             CASE WHEN a.status = 'cooling' AND a.cooldown_until > now() THEN a.cooldown_until END \
                 AS cooldown_until, \
             CASE WHEN a.status = 'cooling' AND a.cooldown_until > now() THEN a.cooldown_reason ELSE '' END \
                 AS cooldown_reason, \
             (a.lease_id IS NOT NULL AND a.leased_until > now()) AS leased, \
             a.proxy_display, a.user_agent, a.challenges, a.last_challenged_at, a.proxy_challenges, \
             a.rate_limits, a.state_refreshed_at, a.created_at, a.failures, ",
            prompts_in_the_hour!(),
            " AS prompts_this_hour, ",
            budget_frees_at!(),
            " AS hour_frees_at, \
             l.id AS lease_id, l.bot_id AS lease_bot_id, l.principal AS lease_principal, \
             l.leased_at AS lease_leased_at, l.expires_at AS lease_expires_at, \
             l.returned_at AS lease_returned_at, ",
            lease_outcome!(),
            " AS lease_outcome, l.runs AS lease_runs, l.detail AS lease_detail \
             FROM a LEFT JOIN LATERAL \
                 (SELECT * FROM session_leases WHERE account_id = a.id ORDER BY leased_at DESC, id LIMIT 1) l \
                 ON true"
        )
    };
}

/// The prompts account `a` asked, or may still ask, under the leases it was lent in the past
/// hour: a returned lease's runs, an open or lapsed one's `max_runs` (its bot may have used
/// them all). The hour runs from each lease's start.
macro_rules! prompts_in_the_hour {
    () => {
        "(SELECT COALESCE(sum(CASE WHEN l.returned_at IS NULL THEN l.max_runs ELSE COALESCE(l.runs, 0) END), 0)::int8 \
          FROM session_leases l WHERE l.account_id = a.id AND l.leased_at > now() - interval '1 hour')"
    };
}

/// When an account at its hourly budget can ask again: when its oldest lease of the past hour
/// leaves the hour.
macro_rules! budget_frees_at {
    () => {
        "(SELECT min(l.leased_at) + interval '1 hour' FROM session_leases l \
          WHERE l.account_id = a.id AND l.leased_at > now() - interval '1 hour')"
    };
}

/// Accounts a lease may take: active or cooled down, and not held by a live lease. The lease
/// columns live on the account row so that `FOR UPDATE` re-checks them on the version it locks.
macro_rules! leasable {
    () => {
        "NOT disabled AND (status = 'active' OR (status = 'cooling' AND cooldown_until <= now())) \
         AND (lease_id IS NULL OR leased_until <= now())"
    };
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    id: Uuid,
    assistant: String,
    plan: String,
    label: String,
    runs: i64,
    last_leased_at: Option<DateTime<Utc>>,
    status: String,
    underlying_status: String,
    cooldown_until: Option<DateTime<Utc>>,
    cooldown_reason: String,
    leased: bool,
    proxy_display: String,
    user_agent: String,
    challenges: i64,
    last_challenged_at: Option<DateTime<Utc>>,
    proxy_challenges: i64,
    rate_limits: i64,
    failures: i64,
    prompts_this_hour: i64,
    hour_frees_at: Option<DateTime<Utc>>,
    state_refreshed_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    lease_id: Option<Uuid>,
    lease_bot_id: Option<String>,
    lease_principal: Option<String>,
    lease_leased_at: Option<DateTime<Utc>>,
    lease_expires_at: Option<DateTime<Utc>>,
    lease_returned_at: Option<DateTime<Utc>>,
    lease_outcome: Option<String>,
    lease_runs: Option<i64>,
    lease_detail: Option<String>,
}

/// One lease as the history shows it.
#[derive(sqlx::FromRow)]
pub(crate) struct LeaseHistoryRow {
    id: Uuid,
    account_id: Uuid,
    bot_id: String,
    principal: Option<String>,
    leased_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    returned_at: Option<DateTime<Utc>>,
    outcome: String,
    runs: Option<i64>,
    detail: Option<String>,
}

impl From<LeaseHistoryRow> for LeaseRecord {
    fn from(row: LeaseHistoryRow) -> LeaseRecord {
        LeaseRecord {
            id: row.id,
            account_id: row.account_id,
            bot_id: row.bot_id,
            principal: row.principal.unwrap_or_default(),
            leased_at: row.leased_at,
            expires_at: row.expires_at,
            returned_at: row.returned_at,
            outcome: row.outcome,
            runs: row.runs.and_then(|runs| u64::try_from(runs).ok()).unwrap_or_default(),
            detail: row.detail.unwrap_or_default(),
        }
    }
}

impl TryFrom<AccountRow> for Account {
    type Error = sqlx::Error;

    fn try_from(row: AccountRow) -> Result<Account, sqlx::Error> {
        let last_lease = match (row.lease_id, row.lease_leased_at, row.lease_expires_at) {
            (Some(id), Some(leased_at), Some(expires_at)) => Some(LeaseRecord {
                id,
                account_id: row.id,
                bot_id: row.lease_bot_id.unwrap_or_default(),
                principal: row.lease_principal.unwrap_or_default(),
                leased_at,
                expires_at,
                returned_at: row.lease_returned_at,
                outcome: row.lease_outcome.unwrap_or_default(),
                runs: row.lease_runs.and_then(|runs| u64::try_from(runs).ok()).unwrap_or_default(),
                detail: row.lease_detail.unwrap_or_default(),
            }),
            _ => None,
        };
        Ok(Account {
            id: row.id,
            assistant: row.assistant,
            plan: row.plan,
            label: row.label,
            status: parse_status(&row.status)?,
            underlying_status: parse_status(&row.underlying_status)?,
            cooldown_reason: row.cooldown_reason,
            rate_limits: u64::try_from(row.rate_limits).unwrap_or_default(),
            failures: u64::try_from(row.failures).unwrap_or_default(),
            prompts_this_hour: u64::try_from(row.prompts_this_hour).unwrap_or_default(),
            hour_frees_at: row.hour_frees_at,
            rotation_runs: row.lease_runs.and_then(|runs| u64::try_from(runs).ok()).unwrap_or_default(),
            state_refreshed_at: row.state_refreshed_at,
            created_at: row.created_at,
            last_lease,
            // The column only ever grows from zero.
            runs: u64::try_from(row.runs).unwrap_or_default(),
            last_leased_at: row.last_leased_at,
            cooldown_until: row.cooldown_until,
            leased: row.leased,
            proxy: row.proxy_display,
            user_agent: row.user_agent,
            // Counters only ever grow from zero.
            challenges: u64::try_from(row.challenges).unwrap_or_default(),
            last_challenged_at: row.last_challenged_at,
            proxy_challenges: u64::try_from(row.proxy_challenges).unwrap_or_default(),
        })
    }
}

fn parse_status(status: &str) -> Result<AccountStatus, sqlx::Error> {
    match status {
        "active" => Ok(AccountStatus::Active),
        "cooling" => Ok(AccountStatus::Cooling),
        "expired" => Ok(AccountStatus::Expired),
        "challenged" => Ok(AccountStatus::Challenged),
        "disabled" => Ok(AccountStatus::Disabled),
        other => Err(sqlx::Error::Decode(format!("unknown account status {other:?}").into())),
    }
}

/// The column value of a status a return stores: challenged is cooling (with its kind), and
/// disabled is a column of its own, never a status.
fn status_column(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Active | AccountStatus::Disabled => "active",
        AccountStatus::Cooling | AccountStatus::Challenged => "cooling",
        AccountStatus::Expired => "expired",
    }
}

/// A new account's columns, already parsed.
pub(crate) struct NewAccountRow<'a> {
    pub id: Uuid,
    pub assistant: &'a str,
    pub plan: &'a str,
    pub plan_key: &'a str,
    pub label: &'a str,
    pub storage_state_sealed: Vec<u8>,
    pub proxy_sealed: Option<Vec<u8>>,
    pub proxy_display: String,
    pub user_agent: &'a str,
}

/// Settings an operator changes; `None` leaves one alone.
pub(crate) struct AccountSettings<'a> {
    /// The sealed proxy (`None`: no proxy) and its display form.
    pub proxy: Option<(Option<Vec<u8>>, String)>,
    pub user_agent: Option<String>,
    pub label: Option<&'a str>,
    /// End a cool-down now: a cooling account is active again.
    pub end_cooldown: bool,
}

/// The account a lease picked, locked until the transaction ends.
#[derive(sqlx::FromRow)]
pub(crate) struct PickedAccount {
    pub id: Uuid,
    pub plan: String,
    /// Only on rows from before encryption at rest not sealed yet.
    pub storage_state: Option<String>,
    pub storage_state_sealed: Option<Vec<u8>>,
    pub proxy_sealed: Option<Vec<u8>>,
    pub user_agent: String,
    pub state_version: i64,
    /// Prompts the account asked, or may still ask, in the past hour ([`prompts_in_the_hour`]).
    pub asked_in_hour: i64,
}

/// How many accounts match a lease's target, and when the first busy one frees up.
pub(crate) struct Availability {
    pub accounts: i64,
    /// Unknown when every match is expired, or free but locked by a lease in flight.
    pub next_free_at: Option<DateTime<Utc>>,
}

/// A lease as a return sees it, locked until the transaction ends.
#[derive(sqlx::FromRow)]
pub(crate) struct LeaseRow {
    pub account_id: Uuid,
    /// The principal whose bot took the lease; `None` for leases taken before principals.
    pub principal: Option<String>,
    pub state_version: i64,
    pub returned_at: Option<DateTime<Utc>>,
    /// Evaluations the lease allowed (`LeaseSessionResponse.max_runs`).
    pub max_runs: i64,
    /// When it lapses without a return.
    pub expires_at: DateTime<Utc>,
    /// Whether it has lapsed, by the database's clock.
    pub lapsed: bool,
}

/// The stored (not effective) state of an account a return changes, locked until the
/// transaction ends.
pub(crate) struct StoredAccount {
    pub status: AccountStatus,
    pub state_version: i64,
    /// The lease that holds it, or held it last and was not returned.
    pub lease_id: Option<Uuid>,
}

/// What a return writes to its account.
pub(crate) struct AccountReturn<'a> {
    pub account_id: Uuid,
    pub lease_id: Uuid,
    pub runs: u32,
    pub status: AccountStatus,
    /// A cool-down starting now; `None` keeps the account's current one.
    pub cooldown: Option<Duration>,
    /// The session met a bot challenge: count it on the account and on its proxy.
    pub challenged: bool,
    /// The session was rate limited: count it on the account.
    pub rate_limited: bool,
    /// Why a cool-down starts (the bot's detail, cut short).
    pub reason: &'a str,
}

/// What [`Store::delete_account`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Deletion {
    Deleted,
    NotFound,
    /// A live lease holds it.
    Leased,
}

/// The pool and the statements that need no transaction of the caller.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Store {
        Store { pool }
    }

    pub async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    pub async fn insert_account(&self, new: &NewAccountRow<'_>) -> Result<Account, sqlx::Error> {
        let row: AccountRow = sqlx::query_as(concat!(
            "WITH a AS (INSERT INTO session_accounts (id, assistant, plan, plan_key, label, storage_state_sealed, \
                                                      proxy_sealed, proxy_display, user_agent) \
                        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *) ",
            select_accounts!()
        ))
        .bind(new.id)
        .bind(new.assistant)
        .bind(new.plan)
        .bind(new.plan_key)
        .bind(new.label)
        .bind(&new.storage_state_sealed)
        .bind(&new.proxy_sealed)
        .bind(&new.proxy_display)
        .bind(new.user_agent)
        .fetch_one(&self.pool)
        .await?;
        row.try_into()
    }

    /// Every account, or one assistant's (and plan key's), by assistant, plan and age.
    pub async fn list_accounts(
        &self,
        assistant: Option<&str>,
        plan_key: Option<&str>,
    ) -> Result<Vec<Account>, sqlx::Error> {
        let rows: Vec<AccountRow> = sqlx::query_as(concat!(
            "WITH a AS (SELECT * FROM session_accounts \
                        WHERE ($1::text IS NULL OR assistant = $1) AND ($2::text IS NULL OR plan_key = $2)) ",
            select_accounts!(),
            " ORDER BY a.assistant, a.plan_key, a.created_at, a.id"
        ))
        .bind(assistant)
        .bind(plan_key)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Account::try_from).collect()
    }

    /// One account; `None` for an unknown id.
    pub async fn get_account(&self, id: Uuid) -> Result<Option<Account>, sqlx::Error> {
        let row: Option<AccountRow> =
            sqlx::query_as(concat!("WITH a AS (SELECT * FROM session_accounts WHERE id = $1) ", select_accounts!()))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(Account::try_from).transpose()
    }

    /// Takes an account out of rotation, or puts it back; `None` for an unknown id. A lease
    /// that holds it keeps it until returned.
    pub async fn set_disabled(&self, id: Uuid, disabled: bool) -> Result<Option<Account>, sqlx::Error> {
        let row: Option<AccountRow> = sqlx::query_as(concat!(
            "WITH a AS (UPDATE session_accounts SET disabled = $2, updated_at = now() WHERE id = $1 RETURNING *) ",
            select_accounts!()
        ))
        .bind(id)
        .bind(disabled)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Account::try_from).transpose()
    }

    /// Deletes an account no live lease holds, with its leases (and evidence, by cascade).
    pub async fn delete_account(&self, id: Uuid) -> Result<Deletion, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let held: Option<(bool,)> = sqlx::query_as(
            "SELECT (lease_id IS NOT NULL AND leased_until > now()) FROM session_accounts WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let deletion = match held {
            None => Deletion::NotFound,
            Some((true,)) => Deletion::Leased,
            Some((false,)) => {
                sqlx::query("DELETE FROM session_accounts WHERE id = $1").bind(id).execute(&mut *tx).await?;
                Deletion::Deleted
            }
        };
        tx.commit().await?;
        Ok(deletion)
    }

    /// An account's leases, newest first; `None` for an unknown account.
    pub async fn leases(&self, id: Uuid, limit: i64) -> Result<Option<Vec<LeaseRecord>>, sqlx::Error> {
        let exists: Option<(Uuid,)> =
            sqlx::query_as("SELECT id FROM session_accounts WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        if exists.is_none() {
            return Ok(None);
        }
        let rows: Vec<LeaseHistoryRow> = sqlx::query_as(concat!(
            "SELECT l.id, l.account_id, l.bot_id, l.principal, l.leased_at, l.expires_at, l.returned_at, ",
            lease_outcome!(),
            " AS outcome, l.runs, l.detail FROM session_leases l WHERE l.account_id = $1 \
              ORDER BY l.leased_at DESC, l.id LIMIT $2"
        ))
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(rows.into_iter().map(LeaseRecord::from).collect()))
    }

    /// Replaces the (sealed) storage state and makes the account active; `None` for an unknown
    /// id.
    pub async fn replace_storage_state(&self, id: Uuid, sealed: &[u8]) -> Result<Option<Account>, sqlx::Error> {
        let row: Option<AccountRow> = sqlx::query_as(concat!(
            "WITH a AS (UPDATE session_accounts SET storage_state_sealed = $2, storage_state = NULL, \
                            state_version = state_version + 1, status = 'active', cooldown_until = NULL, \
                            cooldown_kind = NULL, cooldown_reason = '', state_refreshed_at = now(), \
                            updated_at = now() \
                        WHERE id = $1 RETURNING *) ",
            select_accounts!()
        ))
        .bind(id)
        .bind(sealed)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Account::try_from).transpose()
    }

    /// Changes an account's settings; `None` for an unknown id. A proxy other than the one it
    /// has (told apart by its display form, `scheme://host:port`: the sealed URL differs with
    /// every nonce) starts with no challenges; the same proxy set again keeps its count.
    pub async fn update_settings(
        &self,
        id: Uuid,
        settings: &AccountSettings<'_>,
    ) -> Result<Option<Account>, sqlx::Error> {
        let (set_proxy, proxy_sealed, proxy_display) = match &settings.proxy {
            Some((sealed, display)) => (true, sealed.as_deref(), Some(display.as_str())),
            None => (false, None, None),
        };
        let row: Option<AccountRow> = sqlx::query_as(concat!(
            "WITH a AS (UPDATE session_accounts SET \
                 proxy_sealed = CASE WHEN $2 THEN $3 ELSE proxy_sealed END, \
                 proxy_display = CASE WHEN $2 THEN $4 ELSE proxy_display END, \
                 proxy_challenges = CASE WHEN $2 AND proxy_display IS DISTINCT FROM $4 THEN 0 \
                                         ELSE proxy_challenges END, \
                 user_agent = COALESCE($5, user_agent), \
                 label = COALESCE($6, label), \
                 status = CASE WHEN $7 AND status = 'cooling' THEN 'active' ELSE status END, \
                 cooldown_until = CASE WHEN $7 AND status = 'cooling' THEN NULL ELSE cooldown_until END, \
                 cooldown_kind = CASE WHEN $7 AND status = 'cooling' THEN NULL ELSE cooldown_kind END, \
                 cooldown_reason = CASE WHEN $7 AND status = 'cooling' THEN '' ELSE cooldown_reason END, \
                 updated_at = now() \
             WHERE id = $1 RETURNING *) ",
            select_accounts!()
        ))
        .bind(id)
        .bind(set_proxy)
        .bind(proxy_sealed)
        .bind(proxy_display)
        .bind(settings.user_agent.as_deref())
        .bind(settings.label)
        .bind(settings.end_cooldown)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Account::try_from).transpose()
    }

    /// The session states still in plain text (rows from before encryption at rest).
    pub async fn plaintext_states(&self) -> Result<Vec<(Uuid, String)>, sqlx::Error> {
        sqlx::query_as("SELECT id, storage_state FROM session_accounts WHERE storage_state IS NOT NULL ORDER BY id")
            .fetch_all(&self.pool)
            .await
    }

    /// Swaps one plain-text state for its sealed form, unless it changed meanwhile; returns
    /// whether it did.
    pub async fn seal_state(&self, id: Uuid, plaintext: &str, sealed: &[u8]) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE session_accounts SET storage_state_sealed = $3, storage_state = NULL \
             WHERE id = $1 AND storage_state = $2",
        )
        .bind(id)
        .bind(plaintext)
        .bind(sealed)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Counts the accounts of an assistant (and plan key) and finds when the first one that is
    /// leased or cooling frees up.
    pub async fn availability(
        &self,
        assistant: &str,
        plan_key: Option<&str>,
        hourly_budget: Option<u32>,
    ) -> Result<Availability, sqlx::Error> {
        let (accounts, next_free_at): (i64, Option<DateTime<Utc>>) = sqlx::query_as(concat!(
            // GREATEST ignores NULLs: an account both cooling and leased frees up at the later.
            "SELECT count(*), \
                    min(GREATEST( \
                        CASE WHEN status = 'cooling' AND cooldown_until > now() THEN cooldown_until END, \
                        CASE WHEN lease_id IS NOT NULL AND leased_until > now() THEN leased_until END, \
                        CASE WHEN $3::int8 IS NOT NULL AND ",
            prompts_in_the_hour!(),
            " >= $3 THEN ",
            budget_frees_at!(),
            " END)) FILTER (WHERE status <> 'expired' AND NOT disabled) \
             FROM session_accounts a WHERE assistant = $1 AND ($2::text IS NULL OR plan_key = $2)",
        ))
        .bind(assistant)
        .bind(plan_key)
        .bind(hourly_budget.map(i64::from))
        .fetch_one(&self.pool)
        .await?;
        Ok(Availability { accounts, next_free_at })
    }
}

/// Locks the leasable account of `assistant` (and `plan_key`) leased least recently, of those
/// that asked fewer than `hourly_budget` prompts in the past hour when there is a budget;
/// accounts other leases are locking are skipped rather than waited for.
pub(crate) async fn pick_account(
    conn: &mut PgConnection,
    assistant: &str,
    plan_key: Option<&str>,
    hourly_budget: Option<u32>,
) -> Result<Option<PickedAccount>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT id, plan, storage_state, storage_state_sealed, proxy_sealed, user_agent, state_version, ",
        prompts_in_the_hour!(),
        " AS asked_in_hour FROM session_accounts a \
         WHERE assistant = $1 AND ($2::text IS NULL OR plan_key = $2) AND ",
        leasable!(),
        " AND ($3::int8 IS NULL OR ",
        prompts_in_the_hour!(),
        " < $3) ORDER BY last_leased_at NULLS FIRST, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
    ))
    .bind(assistant)
    .bind(plan_key)
    .bind(hourly_budget.map(i64::from))
    .fetch_optional(conn)
    .await
}

/// Records a lease of a picked account and marks the account held until the lease lapses;
/// returns when it lapses.
pub(crate) async fn open_lease(
    conn: &mut PgConnection,
    account: &PickedAccount,
    lease_id: Uuid,
    holder: (&str, &str),
    max_runs: u32,
    ttl: Duration,
) -> Result<DateTime<Utc>, sqlx::Error> {
    let (principal, bot_id) = holder;
    let (expires_at,): (DateTime<Utc>,) = sqlx::query_as(
        "INSERT INTO session_leases (id, account_id, bot_id, max_runs, state_version, expires_at, principal) \
         VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6), $7) RETURNING expires_at",
    )
    .bind(lease_id)
    .bind(account.id)
    .bind(bot_id)
    .bind(i64::from(max_runs))
    .bind(account.state_version)
    .bind(ttl.as_secs_f64())
    .bind(principal)
    .fetch_one(&mut *conn)
    .await?;
    // A cooled-down account becomes active again as it is lent.
    sqlx::query(
        "UPDATE session_accounts SET lease_id = $2, leased_until = $3, last_leased_at = now(), \
         status = 'active', cooldown_until = NULL, cooldown_kind = NULL, cooldown_reason = '', \
         updated_at = now() WHERE id = $1",
    )
    .bind(account.id)
    .bind(lease_id)
    .bind(expires_at)
    .execute(conn)
    .await?;
    Ok(expires_at)
}

/// Locks a lease for its return; `None` for an unknown id.
pub(crate) async fn lock_lease(conn: &mut PgConnection, lease_id: Uuid) -> Result<Option<LeaseRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT account_id, principal, state_version, returned_at, max_runs::int8 AS max_runs, expires_at, \
                expires_at <= now() AS lapsed \
         FROM session_leases WHERE id = $1 FOR UPDATE",
    )
    .bind(lease_id)
    .fetch_optional(conn)
    .await
}

/// Locks an account a return is about to change.
pub(crate) async fn lock_account(conn: &mut PgConnection, account_id: Uuid) -> Result<StoredAccount, sqlx::Error> {
    let (status, state_version, lease_id): (String, i64, Option<Uuid>) =
        sqlx::query_as("SELECT status, state_version, lease_id FROM session_accounts WHERE id = $1 FOR UPDATE")
            .bind(account_id)
            .fetch_one(conn)
            .await?;
    Ok(StoredAccount { status: parse_status(&status)?, state_version, lease_id })
}

/// Marks a lease returned with how it went.
pub(crate) async fn close_lease(
    conn: &mut PgConnection,
    lease_id: Uuid,
    outcome: &str,
    runs: u32,
    detail: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE session_leases SET returned_at = now(), outcome = $2, runs = $3, detail = $4 WHERE id = $1")
        .bind(lease_id)
        .bind(outcome)
        .bind(i64::from(runs))
        .bind(detail)
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds a return's runs and status to its account, and frees the account if the returned lease
/// still holds it (the domain returns only a lease that holds its account; the condition keeps
/// another lease's hold even so).
pub(crate) async fn apply_return(conn: &mut PgConnection, change: &AccountReturn<'_>) -> Result<Account, sqlx::Error> {
    let row: AccountRow = sqlx::query_as(concat!(
        "WITH a AS (UPDATE session_accounts SET runs = runs + $3, status = $4, \
             cooldown_until = CASE WHEN $5::float8 IS NULL THEN cooldown_until \
                                   ELSE now() + make_interval(secs => $5) END, \
             cooldown_kind = CASE WHEN $5::float8 IS NULL THEN cooldown_kind \
                                  WHEN $6 THEN 'challenged' ELSE 'rate_limited' END, \
             cooldown_reason = CASE WHEN $5::float8 IS NULL THEN cooldown_reason ELSE $7 END, \
             rate_limits = rate_limits + CASE WHEN $8 THEN 1 ELSE 0 END, \
             lease_id = CASE WHEN lease_id = $2 THEN NULL ELSE lease_id END, \
             leased_until = CASE WHEN lease_id = $2 THEN NULL ELSE leased_until END, \
             challenges = challenges + CASE WHEN $6 THEN 1 ELSE 0 END, \
             last_challenged_at = CASE WHEN $6 THEN now() ELSE last_challenged_at END, \
             proxy_challenges = proxy_challenges + CASE WHEN $6 AND proxy_sealed IS NOT NULL THEN 1 ELSE 0 END, \
             updated_at = now() \
         WHERE id = $1 RETURNING *) ",
        select_accounts!()
    ))
    .bind(change.account_id)
    .bind(change.lease_id)
    .bind(i64::from(change.runs))
    .bind(status_column(change.status))
    .bind(change.cooldown.map(|cooldown| cooldown.as_secs_f64()))
    .bind(change.challenged)
    .bind(change.reason)
    .bind(change.rate_limited)
    .fetch_one(conn)
    .await?;
    row.try_into()
}

/// Accounts of one assistant, status and lease state, for the session pool's gauges.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AccountCount {
    pub assistant: String,
    /// As clients see it: `disabled`, or the effective status.
    pub status: String,
    pub leased: bool,
    pub count: i64,
}

/// Counts accounts by assistant, status (as clients see it) and whether a live lease holds them.
pub(crate) async fn account_counts(pool: &PgPool) -> sqlx::Result<Vec<AccountCount>> {
    const SQL: &str = concat!(
        "SELECT a.assistant, CASE WHEN a.disabled THEN 'disabled' ELSE ",
        effective_status!(),
        " END AS status, (a.lease_id IS NOT NULL AND a.leased_until > now()) AS leased, count(*) AS count \
         FROM session_accounts a GROUP BY 1, 2, 3"
    );
    sqlx::query_as(SQL).fetch_all(pool).await
}
