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

use crate::domain::{Account, AccountStatus};

/// The columns of an [`Account`] as clients see it: a cool-down that has passed reads as active,
/// a lapsed lease as not leased. A macro so that it can be `concat!`ed into static SQL.
macro_rules! account_columns {
    () => {
        "id, assistant, plan, label, runs, last_leased_at, \
         CASE WHEN status = 'cooling' AND cooldown_until <= now() THEN 'active' ELSE status END AS status, \
         CASE WHEN status = 'cooling' AND cooldown_until > now() THEN cooldown_until END AS cooldown_until, \
         (lease_id IS NOT NULL AND leased_until > now()) AS leased, \
         proxy_display, user_agent, challenges, last_challenged_at, proxy_challenges"
    };
}

/// Accounts a lease may take: active or cooled down, and not held by a live lease. The lease
/// columns live on the account row so that `FOR UPDATE` re-checks them on the version it locks.
macro_rules! leasable {
    () => {
        "(status = 'active' OR (status = 'cooling' AND cooldown_until <= now())) \
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
    cooldown_until: Option<DateTime<Utc>>,
    leased: bool,
    proxy_display: String,
    user_agent: String,
    challenges: i64,
    last_challenged_at: Option<DateTime<Utc>>,
    proxy_challenges: i64,
}

impl TryFrom<AccountRow> for Account {
    type Error = sqlx::Error;

    fn try_from(row: AccountRow) -> Result<Account, sqlx::Error> {
        Ok(Account {
            id: row.id,
            assistant: row.assistant,
            plan: row.plan,
            label: row.label,
            status: parse_status(&row.status)?,
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
        other => Err(sqlx::Error::Decode(format!("unknown account status {other:?}").into())),
    }
}

/// The column value of a status.
fn status_column(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Active => "active",
        AccountStatus::Cooling => "cooling",
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
}

/// The stored (not effective) state of an account a return changes, locked until the
/// transaction ends.
pub(crate) struct StoredAccount {
    pub status: AccountStatus,
    pub state_version: i64,
}

/// What a return writes to its account.
pub(crate) struct AccountReturn {
    pub account_id: Uuid,
    pub lease_id: Uuid,
    pub runs: u32,
    pub status: AccountStatus,
    /// A cool-down starting now; `None` keeps the account's current one.
    pub cooldown: Option<Duration>,
    /// The session met a bot challenge: count it on the account and on its proxy.
    pub challenged: bool,
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
            "INSERT INTO session_accounts (id, assistant, plan, plan_key, label, storage_state_sealed, \
                                           proxy_sealed, proxy_display, user_agent) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING ",
            account_columns!()
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

    /// Every account, or one assistant's, by assistant, plan and age.
    pub async fn list_accounts(&self, assistant: Option<&str>) -> Result<Vec<Account>, sqlx::Error> {
        let rows: Vec<AccountRow> = sqlx::query_as(concat!(
            "SELECT ",
            account_columns!(),
            " FROM session_accounts WHERE $1::text IS NULL OR assistant = $1 \
              ORDER BY assistant, plan_key, created_at, id"
        ))
        .bind(assistant)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Account::try_from).collect()
    }

    /// Replaces the (sealed) storage state and makes the account active; `None` for an unknown
    /// id.
    pub async fn replace_storage_state(&self, id: Uuid, sealed: &[u8]) -> Result<Option<Account>, sqlx::Error> {
        let row: Option<AccountRow> = sqlx::query_as(concat!(
            "UPDATE session_accounts SET storage_state_sealed = $2, storage_state = NULL, \
             state_version = state_version + 1, \
             status = 'active', cooldown_until = NULL, updated_at = now() WHERE id = $1 RETURNING ",
            account_columns!()
        ))
        .bind(id)
        .bind(sealed)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Account::try_from).transpose()
    }

    /// Changes an account's settings; `None` for an unknown id.
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
            "UPDATE session_accounts SET \
                 proxy_sealed = CASE WHEN $2 THEN $3 ELSE proxy_sealed END, \
                 proxy_display = CASE WHEN $2 THEN $4 ELSE proxy_display END, \
                 proxy_challenges = CASE WHEN $2 THEN 0 ELSE proxy_challenges END, \
                 user_agent = COALESCE($5, user_agent), \
                 label = COALESCE($6, label), \
                 updated_at = now() \
             WHERE id = $1 RETURNING ",
            account_columns!()
        ))
        .bind(id)
        .bind(set_proxy)
        .bind(proxy_sealed)
        .bind(proxy_display)
        .bind(settings.user_agent.as_deref())
        .bind(settings.label)
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
    pub async fn availability(&self, assistant: &str, plan_key: Option<&str>) -> Result<Availability, sqlx::Error> {
        let (accounts, next_free_at): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            // GREATEST ignores NULLs: an account both cooling and leased frees up at the later.
            "SELECT count(*), \
                    min(GREATEST( \
                        CASE WHEN status = 'cooling' AND cooldown_until > now() THEN cooldown_until END, \
                        CASE WHEN lease_id IS NOT NULL AND leased_until > now() THEN leased_until END)) \
                        FILTER (WHERE status <> 'expired') \
             FROM session_accounts WHERE assistant = $1 AND ($2::text IS NULL OR plan_key = $2)",
        )
        .bind(assistant)
        .bind(plan_key)
        .fetch_one(&self.pool)
        .await?;
        Ok(Availability { accounts, next_free_at })
    }
}

/// Locks the leasable account of `assistant` (and `plan_key`) leased least recently; accounts
/// other leases are locking are skipped rather than waited for.
pub(crate) async fn pick_account(
    conn: &mut PgConnection,
    assistant: &str,
    plan_key: Option<&str>,
) -> Result<Option<PickedAccount>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT id, plan, storage_state, storage_state_sealed, proxy_sealed, user_agent, state_version \
         FROM session_accounts \
         WHERE assistant = $1 AND ($2::text IS NULL OR plan_key = $2) AND ",
        leasable!(),
        " ORDER BY last_leased_at NULLS FIRST, created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED"
    ))
    .bind(assistant)
    .bind(plan_key)
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
         status = 'active', cooldown_until = NULL, updated_at = now() WHERE id = $1",
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
        "SELECT account_id, principal, state_version, returned_at FROM session_leases WHERE id = $1 FOR UPDATE",
    )
    .bind(lease_id)
    .fetch_optional(conn)
    .await
}

/// Locks an account a return is about to change.
pub(crate) async fn lock_account(conn: &mut PgConnection, account_id: Uuid) -> Result<StoredAccount, sqlx::Error> {
    let (status, state_version): (String, i64) =
        sqlx::query_as("SELECT status, state_version FROM session_accounts WHERE id = $1 FOR UPDATE")
            .bind(account_id)
            .fetch_one(conn)
            .await?;
    Ok(StoredAccount { status: parse_status(&status)?, state_version })
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
/// still holds it (a lapsed lease's account may already be lent to another bot).
pub(crate) async fn apply_return(conn: &mut PgConnection, change: &AccountReturn) -> Result<Account, sqlx::Error> {
    let row: AccountRow = sqlx::query_as(concat!(
        "UPDATE session_accounts SET runs = runs + $3, status = $4, \
             cooldown_until = CASE WHEN $5::float8 IS NULL THEN cooldown_until \
                                   ELSE now() + make_interval(secs => $5) END, \
             lease_id = CASE WHEN lease_id = $2 THEN NULL ELSE lease_id END, \
             leased_until = CASE WHEN lease_id = $2 THEN NULL ELSE leased_until END, \
             challenges = challenges + CASE WHEN $6 THEN 1 ELSE 0 END, \
             last_challenged_at = CASE WHEN $6 THEN now() ELSE last_challenged_at END, \
             proxy_challenges = proxy_challenges + CASE WHEN $6 AND proxy_sealed IS NOT NULL THEN 1 ELSE 0 END, \
             updated_at = now() \
         WHERE id = $1 RETURNING ",
        account_columns!()
    ))
    .bind(change.account_id)
    .bind(change.lease_id)
    .bind(i64::from(change.runs))
    .bind(status_column(change.status))
    .bind(change.cooldown.map(|cooldown| cooldown.as_secs_f64()))
    .bind(change.challenged)
    .fetch_one(conn)
    .await?;
    row.try_into()
}
