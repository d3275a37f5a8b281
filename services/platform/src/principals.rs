//! Named principals and their bearer tokens: who a token belongs to, created, listed and
//! revoked at run time, kept only as hashes.
//!
//! A token is `aap_` and 43 base64url characters (32 random bytes). The platform stores its
//! SHA-256 hash and an id derived from the hash (`tok_` and 12 hex digits) that is safe to
//! show, log and revoke by. Tokens set in the configuration (`AAP_*_TOKENS`) are hashed and
//! recorded at start under their principal, so they are listed and revocable like the others;
//! a revoked configured token stays revoked across restarts.
//!
//! Every replica keeps the table in memory and reloads it every [`REFRESH_EVERY`]; what a
//! replica creates or revokes applies there at once. A presented token is hashed, and its hash
//! found in an index of the known hashes, then compared with the one found in constant time.
//! The index is keyed by SHA-256 digests, so what its lookup's time could say is how close
//! the hash of a guess came to a stored hash, which says nothing about the token; and the time
//! does not grow with the number of tokens (the scan it replaced compared every known hash on
//! every call).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::HeaderMap;
use http::header::AUTHORIZATION;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};
use sqlx::PgPool;
use subtle::ConstantTimeEq as _;

use crate::assistants;
use crate::auth::{Access, AuthError, Caller, Role};
use crate::input;

/// How often every replica reloads the token table (what another replica created or revoked).
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);
/// The prefix of every token the platform makes.
pub const TOKEN_PREFIX: &str = "aap_";
/// Longest token label, in characters.
pub const MAX_LABEL_CHARS: usize = 200;
/// Longest principal name.
pub const MAX_NAME_CHARS: usize = 63;

type Hash = [u8; 32];

/// A token row as the refresh reads it: id, hash, principal, role, assistants, revoked at,
/// expires at.
type TokenRow = (String, Vec<u8>, String, String, Vec<String>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// The label of a console sign-in's token.
pub const CONSOLE_LABEL: &str = "console sign-in";
/// How long a console session's token stays in the table once it has expired or was revoked
/// (so ListTokens with revoked ones shows recent sign-outs), before a sign-in of its principal
/// deletes it; and how many such ended sessions of a principal are kept at most.
const CONSOLE_KEPT_AFTER: &str = "7 days";
const CONSOLE_ENDED_KEPT: i64 = 100;
/// Live console sessions a principal may hold: a sign-in beyond that ends its oldest session,
/// so a script that signs in over and over cannot grow the token table (which every replica
/// reloads every [`REFRESH_EVERY`]) without bound.
pub const MAX_CONSOLE_SESSIONS: i64 = 20;

fn hash(token: &str) -> Hash {
    Sha256::digest(token.as_bytes()).into()
}

/// The id shown for a token: derived from its hash, so it reveals nothing of the secret.
fn token_id(hash: &Hash) -> String {
    format!("tok_{}", hex::encode(&hash[..6]))
}

/// A new random token.
fn mint() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{TOKEN_PREFIX}{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Checks a principal name: lowercase letters, digits, `.`, `_`, `-`, starting with a letter
/// or digit, at most 63 characters (the database checks the same).
pub fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else { return Err("must not be empty".to_owned()) };
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(format!("must start with a lowercase letter or a digit, not {first:?}"));
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))) {
        return Err(format!("may hold lowercase letters, digits, '.', '_' and '-' only, not {c:?}"));
    }
    if name.len() > MAX_NAME_CHARS {
        return Err(format!("is {} characters; the limit is {MAX_NAME_CHARS}", name.len()));
    }
    Ok(())
}

/// The prefix of the names token-less seed hosts act under (`seed-10.0.0.5`, see
/// [`crate::auth::Networks::caller`]).
pub const SEED_HOST_PREFIX: &str = "seed-";

/// Checks the name of a principal a token is made for: [`check_name`], and not a name a
/// token-less seed host acts under (a bot with a token named so would share that host's claims).
pub fn check_new_name(name: &str) -> Result<(), String> {
    check_name(name)?;
    if name.starts_with(SEED_HOST_PREFIX) {
        return Err(format!(
            "names beginning with {SEED_HOST_PREFIX:?} are those token-less seed hosts act under \
             (AAP_SEED_HTTP_ALLOW_CIDR): choose another"
        ));
    }
    Ok(())
}

/// A token from the configuration (`AAP_CUSTOMER_TOKENS` and the like): `name=secret`, or a
/// bare secret, which belongs to the principal named after its role (`customer`, `bot`,
/// `operator`).
#[derive(Clone)]
pub struct ConfiguredToken {
    pub principal: String,
    pub role: Role,
    pub secret: SecretString,
}

impl fmt::Debug for ConfiguredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ConfiguredToken({} as {}, {})",
            self.principal,
            self.role,
            token_id(&hash(self.secret.expose_secret()))
        )
    }
}

impl ConfiguredToken {
    /// Reads one configured entry; `None` for a blank one.
    pub fn parse(role: Role, entry: &str) -> Option<ConfiguredToken> {
        let entry = entry.trim();
        if entry.is_empty() {
            return None;
        }
        let (principal, secret) = match entry.split_once('=') {
            Some((name, secret)) if check_name(name.trim()).is_ok() && !secret.trim().is_empty() => {
                (name.trim().to_owned(), secret.trim())
            }
            _ => (role.to_string(), entry),
        };
        Some(ConfiguredToken { principal, role, secret: SecretString::from(secret.to_owned()) })
    }
}

/// What one known token stands for.
#[derive(Debug, Clone)]
struct Entry {
    hash: Hash,
    caller: Caller,
    revoked: bool,
    /// A console session's end; other tokens do not expire.
    expires_at: Option<DateTime<Utc>>,
}

impl Entry {
    /// Why a call with this token is refused now, if it is.
    fn refusal(&self, now: DateTime<Utc>) -> Option<AuthError> {
        if self.revoked {
            Some(AuthError::Revoked(self.caller.token_id.to_string()))
        } else if self.expires_at.is_some_and(|at| at <= now) {
            Some(AuthError::Expired(self.caller.token_id.to_string()))
        } else {
            None
        }
    }
}

/// Errors administering principals and tokens.
#[derive(Debug, thiserror::Error)]
pub enum PrincipalError {
    #[error("invalid {field}: {reason}")]
    InvalidArgument { field: &'static str, reason: String },
    #[error("token {0} does not exist")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> PrincipalError {
    PrincipalError::InvalidArgument { field, reason: reason.into() }
}

/// A token as listed: everything but the secret.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: String,
    pub principal: String,
    pub role: String,
    pub assistants: Vec<String>,
    pub label: String,
    pub source: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_by: String,
    /// When a console session's token stops working; `None` for every other token.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What CreateToken asks for.
#[derive(Debug, Clone)]
pub struct NewToken<'a> {
    pub principal: &'a str,
    pub role: Role,
    pub assistants: &'a [String],
    pub label: &'a str,
}

const TOKEN_COLUMNS: &str = "t.id, t.principal, p.role, p.assistants, t.label, t.source, t.created_at, \
     t.created_by, t.revoked_at, t.revoked_by, t.expires_at";

/// The principals and tokens the platform accepts. Cheap to clone; clones share the table.
#[derive(Clone)]
pub struct Principals {
    pool: Option<PgPool>,
    table: Arc<RwLock<Table>>,
    /// How many tokens the table holds revoked or expired: bumped when a token is revoked (here,
    /// or by another replica, seen at a reload) or a console session's token expires (seen at
    /// the next reload), so open streams check their caller again.
    revoked: Arc<tokio::sync::watch::Sender<usize>>,
}

/// The tokens in memory, and how many changes this replica made to them: a reload that read the
/// database before the latest change must not undo it (bring back a revoked token, drop a new
/// one).
#[derive(Default)]
struct Table {
    changes: u64,
    entries: Arc<Tokens>,
}

/// The known tokens, indexed by hash and by id.
#[derive(Default)]
struct Tokens {
    entries: Vec<Entry>,
    /// Each hash's entry in `entries`; of two entries with one hash, the later.
    by_hash: HashMap<Hash, usize>,
    /// Each token id's entry in `entries`.
    by_id: HashMap<Arc<str>, usize>,
}

impl Tokens {
    fn new(entries: Vec<Entry>) -> Tokens {
        let by_hash = entries.iter().enumerate().map(|(index, entry)| (entry.hash, index)).collect();
        let by_id = entries.iter().enumerate().map(|(index, entry)| (entry.caller.token_id.clone(), index)).collect();
        Tokens { entries, by_hash, by_id }
    }

    /// How many of the tokens are refused now (revoked or expired).
    fn refused(&self) -> usize {
        let now = Utc::now();
        self.entries.iter().filter(|entry| entry.refusal(now).is_some()).count()
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn find(&self, presented: &Hash) -> Option<&Entry> {
        let entry = &self.entries[*self.by_hash.get(presented)?];
        bool::from(entry.hash.ct_eq(presented)).then_some(entry)
    }
}

impl fmt::Debug for Principals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Principals({} tokens)", self.snapshot().len())
    }
}

fn role_from_db(text: &str) -> Role {
    match text {
        "customer" => Role::Customer,
        "bot" => Role::Bot,
        // The database checks the value; anything else cannot be stored.
        _ => Role::Operator,
    }
}

impl Principals {
    /// A fixed table without a database, for tests and tools: nothing can be created or
    /// revoked.
    pub fn fixed(tokens: &[ConfiguredToken]) -> Principals {
        let entries = tokens
            .iter()
            .map(|t| {
                let hash = hash(t.secret.expose_secret());
                let caller = Caller::new(&t.principal, t.role, Vec::new(), token_id(&hash));
                Entry { hash, caller, revoked: false, expires_at: None }
            })
            .collect();
        let table = Table { changes: 0, entries: Arc::new(Tokens::new(entries)) };
        Principals { pool: None, table: Arc::new(RwLock::new(table)), revoked: Arc::default() }
    }

    /// Records the configured tokens (hashed) under their principals, then loads every token.
    /// Refuses a configuration that gives one token two principals, or a principal two roles.
    pub async fn load(pool: PgPool, configured: &[ConfiguredToken]) -> Result<Principals, PrincipalError> {
        let hashed: Vec<(Hash, &ConfiguredToken)> =
            configured.iter().map(|token| (hash(token.secret.expose_secret()), token)).collect();
        let mut seen: HashMap<Hash, &ConfiguredToken> = HashMap::new();
        for (hash, token) in &hashed {
            check_new_name(&token.principal).map_err(|reason| invalid("principal", reason))?;
            if let Some(other) = seen.insert(*hash, token)
                && (other.principal != token.principal || other.role != token.role)
            {
                return Err(PrincipalError::FailedPrecondition(format!(
                    "token {} is configured for {} ({}) and for {} ({}): give each token one principal",
                    token_id(hash),
                    other.principal,
                    other.role,
                    token.principal,
                    token.role
                )));
            }
        }
        let mut tx = pool.begin().await?;
        for (hash, token) in &hashed {
            ensure_principal(&mut tx, &token.principal, token.role, &[]).await?;
            let id = token_id(hash);
            sqlx::query(
                "INSERT INTO api_tokens (id, principal, token_hash, source, label) \
                 VALUES ($1, $2, $3, 'config', 'configured at start') ON CONFLICT (token_hash) DO NOTHING",
            )
            .bind(&id)
            .bind(&token.principal)
            .bind(&hash[..])
            .execute(&mut *tx)
            .await?;
            let (owner, revoked): (String, Option<DateTime<Utc>>) =
                sqlx::query_as("SELECT principal, revoked_at FROM api_tokens WHERE token_hash = $1")
                    .bind(&hash[..])
                    .fetch_one(&mut *tx)
                    .await?;
            if owner != token.principal {
                return Err(PrincipalError::FailedPrecondition(format!(
                    "configured token {id} for {} is already principal {owner}'s",
                    token.principal
                )));
            }
            if let Some(at) = revoked {
                tracing::warn!(token_id = %id, principal = %owner, revoked_at = %at, "a configured token was revoked: calls with it are refused; remove it from the configuration");
            }
        }
        tx.commit().await?;
        let principals = Principals { pool: Some(pool), table: Arc::default(), revoked: Arc::default() };
        principals.refresh().await?;
        tracing::info!(tokens = principals.snapshot().len(), configured = configured.len(), "token table loaded");
        Ok(principals)
    }

    fn snapshot(&self) -> Arc<Tokens> {
        // A poisoned lock only means a writer panicked mid-swap of an Arc: the value is whole.
        self.table.read().unwrap_or_else(|e| e.into_inner()).entries.clone()
    }

    fn changes(&self) -> u64 {
        self.table.read().unwrap_or_else(|e| e.into_inner()).changes
    }

    /// Applies a change this replica made, under the lock, so concurrent changes all stay.
    fn change(&self, apply: impl FnOnce(&mut Vec<Entry>)) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        let mut entries = table.entries.entries.clone();
        apply(&mut entries);
        table.entries = Arc::new(Tokens::new(entries));
        table.changes += 1;
        self.tell_revoked(&table.entries);
    }

    /// Tells the open streams when the table holds another number of refused tokens.
    fn tell_revoked(&self, tokens: &Tokens) {
        let revoked = tokens.refused();
        self.revoked.send_if_modified(|count| std::mem::replace(count, revoked) != revoked);
    }

    /// Changes each time a token is revoked (here, or on another replica once this one reloads
    /// the table, within [`REFRESH_EVERY`]) or a console session's expires (within
    /// [`REFRESH_EVERY`]): an open stream then asks [`Principals::admits`] whether its caller
    /// may go on.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<usize> {
        self.revoked.subscribe()
    }

    /// Whether the token `caller` came with is still known, not revoked and not expired.
    pub fn admits(&self, caller: &Caller) -> bool {
        self.refusal(caller).is_none()
    }

    /// Why the token `caller` came with is refused now, if it is.
    pub fn refusal(&self, caller: &Caller) -> Option<AuthError> {
        let tokens = self.snapshot();
        match tokens.by_id.get(&caller.token_id) {
            Some(index) => tokens.entries[*index].refusal(Utc::now()),
            None => Some(AuthError::Unknown),
        }
    }

    /// Reloads every token from the database. A reload that overlapped a change made here is
    /// dropped; the next one reads the change.
    pub async fn refresh(&self) -> sqlx::Result<()> {
        let Some(pool) = &self.pool else { return Ok(()) };
        let changes = self.changes();
        let rows: Vec<TokenRow> = sqlx::query_as(
            "SELECT t.id, t.token_hash, t.principal, p.role, p.assistants, t.revoked_at, t.expires_at \
             FROM api_tokens t JOIN principals p ON p.name = t.principal",
        )
        .fetch_all(pool)
        .await?;
        let entries = rows
            .into_iter()
            .filter_map(|(id, hash, principal, role, assistants, revoked, expires_at)| {
                let hash: Hash = hash.try_into().ok()?;
                let caller = Caller::new(&principal, role_from_db(&role), assistants, id);
                Some(Entry { hash, caller, revoked: revoked.is_some(), expires_at })
            })
            .collect();
        self.install(changes, entries);
        Ok(())
    }

    /// Installs what a reload read when this replica had made `changes` changes, unless it has
    /// made another since.
    fn install(&self, changes: u64, entries: Vec<Entry>) {
        let mut table = self.table.write().unwrap_or_else(|e| e.into_inner());
        if table.changes == changes {
            table.entries = Arc::new(Tokens::new(entries));
            self.tell_revoked(&table.entries);
        }
    }

    /// Reloads the table every [`REFRESH_EVERY`] until `shutdown`.
    pub async fn keep_fresh(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => {}
            }
            if let Err(error) = self.refresh().await {
                tracing::warn!(%error, "cannot reload the token table; keeping the last one");
                // Console sessions still expire on time for the open calls.
                let table = self.table.read().unwrap_or_else(|e| e.into_inner());
                self.tell_revoked(&table.entries);
            }
        }
    }

    /// The caller a bearer token in `headers` stands for.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let value = headers.get(AUTHORIZATION).ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::Unknown)?;
        let (scheme, token) = value.split_once(' ').ok_or(AuthError::Missing)?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(AuthError::Missing);
        }
        self.caller_of(token.trim())
    }

    /// The caller a token stands for.
    pub fn caller_of(&self, token: &str) -> Result<Caller, AuthError> {
        let presented = hash(token);
        let table = self.snapshot();
        match table.find(&presented) {
            Some(entry) => match entry.refusal(Utc::now()) {
                Some(refusal) => Err(refusal),
                None => Ok(entry.caller.clone()),
            },
            None => Err(AuthError::Unknown),
        }
    }

    /// Authenticates and checks the caller against what the method needs.
    pub fn authorize(&self, headers: &HeaderMap, access: Access) -> Result<Option<Caller>, AuthError> {
        if access == Access::Public {
            return Ok(None);
        }
        let caller = self.authenticate(headers)?;
        access.admits(&caller)?;
        Ok(Some(caller))
    }

    fn pool(&self) -> Result<&PgPool, PrincipalError> {
        self.pool.as_ref().ok_or_else(|| PrincipalError::FailedPrecondition("this token table is fixed".to_owned()))
    }

    /// Creates a token for a principal (created on first use) and returns the secret, shown
    /// only here.
    pub async fn create_token(&self, by: &Caller, new: NewToken<'_>) -> Result<(String, TokenInfo), PrincipalError> {
        let principal = new.principal.trim();
        check_new_name(principal).map_err(|reason| invalid("principal", reason))?;
        input::check_line(new.label, MAX_LABEL_CHARS).map_err(|reason| invalid("label", reason))?;
        let mut allowed = Vec::new();
        for assistant in new.assistants {
            let id = assistant.trim().to_lowercase();
            if assistants::by_id(&id).is_none() {
                return Err(invalid("assistants", format!("unknown assistant {assistant:?}")));
            }
            if !allowed.contains(&id) {
                allowed.push(id);
            }
        }
        if !allowed.is_empty() && new.role != Role::Bot {
            let article = if new.role == Role::Operator { "an" } else { "a" };
            return Err(invalid(
                "assistants",
                format!("only a bot is limited to assistants, not {article} {}", new.role),
            ));
        }
        allowed.sort();
        let pool = self.pool()?;
        let token = mint();
        let hash = hash(&token);
        let id = token_id(&hash);
        let mut tx = pool.begin().await?;
        ensure_principal(&mut tx, principal, new.role, &allowed).await?;
        sqlx::query(
            "INSERT INTO api_tokens (id, principal, token_hash, source, label, created_by) \
             VALUES ($1, $2, $3, 'admin', $4, $5)",
        )
        .bind(&id)
        .bind(principal)
        .bind(&hash[..])
        .bind(new.label.trim())
        .bind(&*by.principal)
        .execute(&mut *tx)
        .await?;
        let info = token_info(&mut tx, &id).await?.ok_or_else(|| PrincipalError::NotFound(id.clone()))?;
        tx.commit().await?;
        let caller = Caller::new(principal, new.role, info.assistants.clone(), id.clone());
        self.change(|entries| entries.push(Entry { hash, caller, revoked: false, expires_at: None }));
        tracing::info!(token_id = %id, principal, role = %new.role, by = %by.principal, "token created");
        Ok((token, info))
    }

    /// Lists tokens (never their secrets), oldest first.
    pub async fn list_tokens(&self, principal: &str, include_revoked: bool) -> Result<Vec<TokenInfo>, PrincipalError> {
        let principal = principal.trim();
        if !principal.is_empty() {
            check_name(principal).map_err(|reason| invalid("principal", reason))?;
        }
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN principals p ON p.name = t.principal \
             WHERE ($1 = '' OR t.principal = $1) \
             AND ($2 OR (t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > now()))) \
             ORDER BY t.created_at, t.id"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(principal)
            .bind(include_revoked)
            .fetch_all(self.pool()?)
            .await?)
    }

    /// Revokes a token. The last live operator token cannot be revoked: nobody could make
    /// another (console sessions' tokens do not count: they expire within hours).
    pub async fn revoke(&self, by: &Caller, id: &str) -> Result<TokenInfo, PrincipalError> {
        let id = id.trim();
        let well_formed = id.len() == 16 && id.starts_with("tok_") && id[4..].bytes().all(|b| b.is_ascii_hexdigit());
        if !well_formed {
            return Err(invalid("id", "a token id is tok_ and 12 hex digits, as ListTokens shows it"));
        }
        let mut tx = self.pool()?.begin().await?;
        // Serialises revocations, so two operators cannot revoke the last two operator tokens
        // at once.
        sqlx::query("LOCK TABLE api_tokens IN SHARE ROW EXCLUSIVE MODE").execute(&mut *tx).await?;
        let Some(info) = token_info(&mut tx, id).await? else {
            return Err(PrincipalError::NotFound(id.to_owned()));
        };
        if info.revoked_at.is_some() {
            return Err(PrincipalError::FailedPrecondition(format!("token {id} is already revoked")));
        }
        if info.role == "operator" && info.source != "console" {
            let (others,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM api_tokens t JOIN principals p ON p.name = t.principal \
                 WHERE p.role = 'operator' AND t.revoked_at IS NULL AND t.source <> 'console' AND t.id <> $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if others == 0 {
                return Err(PrincipalError::FailedPrecondition(format!(
                    "token {id} is the last live operator token: create another operator token first"
                )));
            }
        }
        sqlx::query("UPDATE api_tokens SET revoked_at = now(), revoked_by = $2 WHERE id = $1")
            .bind(id)
            .bind(&*by.principal)
            .execute(&mut *tx)
            .await?;
        let info = token_info(&mut tx, id).await?.ok_or_else(|| PrincipalError::NotFound(id.to_owned()))?;
        tx.commit().await?;
        self.change(|entries| mark_revoked(entries, &[id]));
        tracing::info!(token_id = %id, principal = %info.principal, by = %by.principal, "token revoked");
        Ok(info)
    }

    /// Opens a console session for an operator who signed in with a token of theirs: a token of
    /// its own (source `console`) for the same principal, which expires after `lasts` and which
    /// [`Principals::close_console_session`] revokes, so the browser never holds the operator's
    /// own token. Deletes the principal's console tokens that ended over a week ago.
    pub async fn open_console_session(
        &self,
        operator: &Caller,
        lasts: Duration,
    ) -> Result<(String, TokenInfo), PrincipalError> {
        if operator.role != Role::Operator {
            return Err(PrincipalError::FailedPrecondition(format!(
                "the console is for operators; {} is {}",
                operator.principal,
                operator.role.with_article()
            )));
        }
        let lasts = chrono::Duration::from_std(lasts).map_err(|_| invalid("lasts", "too long"))?;
        let pool = self.pool()?;
        let token = mint();
        let hash = hash(&token);
        let id = token_id(&hash);
        let mut tx = pool.begin().await?;
        let signed_in_with: Option<(String,)> = sqlx::query_as("SELECT source FROM api_tokens WHERE id = $1")
            .bind(&*operator.token_id)
            .fetch_optional(&mut *tx)
            .await?;
        if signed_in_with.is_some_and(|(source,)| source == "console") {
            // Else a copy of a session's cookie could be made to last for ever.
            return Err(PrincipalError::FailedPrecondition(
                "a console session's token cannot open another session: sign in with an operator token".to_owned(),
            ));
        }
        // With the new one, the newest MAX_CONSOLE_SESSIONS stay.
        let ousted: Vec<(String,)> = sqlx::query_as(
            "UPDATE api_tokens SET revoked_at = now(), revoked_by = $3 WHERE id IN ( \
                 SELECT id FROM api_tokens WHERE principal = $1 AND source = 'console' \
                 AND revoked_at IS NULL AND expires_at > now() \
                 ORDER BY created_at DESC, id OFFSET $2) \
             RETURNING id",
        )
        .bind(&*operator.principal)
        .bind(MAX_CONSOLE_SESSIONS - 1)
        .bind(format!("{} (its oldest of more than {MAX_CONSOLE_SESSIONS} console sessions)", operator.principal))
        .fetch_all(&mut *tx)
        .await?;
        let ended = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM api_tokens WHERE id IN (SELECT id FROM ( \
                 SELECT id, least(revoked_at, expires_at) AS ended, \
                        row_number() OVER (ORDER BY created_at DESC, id) AS newest \
                 FROM api_tokens WHERE principal = $1 AND source = 'console' \
                 AND (revoked_at IS NOT NULL OR expires_at <= now())) e \
             WHERE e.ended < now() - interval '{CONSOLE_KEPT_AFTER}' OR e.newest > $2)"
        )))
        .bind(&*operator.principal)
        .bind(CONSOLE_ENDED_KEPT)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query(
            "INSERT INTO api_tokens (id, principal, token_hash, source, label, created_by, expires_at) \
             VALUES ($1, $2, $3, 'console', $4, $2, now() + $5)",
        )
        .bind(&id)
        .bind(&*operator.principal)
        .bind(&hash[..])
        .bind(CONSOLE_LABEL)
        .bind(lasts)
        .execute(&mut *tx)
        .await?;
        let info = token_info(&mut tx, &id).await?.ok_or_else(|| PrincipalError::NotFound(id.clone()))?;
        tx.commit().await?;
        let caller = Caller::new(&operator.principal, Role::Operator, Vec::new(), id.clone());
        let expires_at = info.expires_at;
        self.change(|entries| {
            mark_revoked(entries, &ousted.iter().map(|(id,)| id.as_str()).collect::<Vec<_>>());
            entries.push(Entry { hash, caller, revoked: false, expires_at });
        });
        for (ousted,) in &ousted {
            tracing::info!(token_id = %ousted, principal = %operator.principal, "console session ended: its principal opened more than {MAX_CONSOLE_SESSIONS}");
        }
        tracing::info!(token_id = %id, principal = %operator.principal, signed_in_with = %operator.token_id, ended_deleted = ended, "console session opened");
        Ok((token, info))
    }

    /// Ends the console session `token` stands for: revokes its token. `None` when `token` is
    /// not a live console session's (an operator's own token, kept in a cookie by an older
    /// console, is left alone: signing out of a browser must not revoke it).
    pub async fn close_console_session(&self, token: &str) -> Result<Option<TokenInfo>, PrincipalError> {
        let hash = hash(token);
        let mut tx = self.pool()?.begin().await?;
        let id: Option<(String,)> = sqlx::query_as(
            "UPDATE api_tokens SET revoked_at = now(), revoked_by = principal \
             WHERE token_hash = $1 AND source = 'console' AND revoked_at IS NULL RETURNING id",
        )
        .bind(&hash[..])
        .fetch_optional(&mut *tx)
        .await?;
        let Some((id,)) = id else { return Ok(None) };
        let info = token_info(&mut tx, &id).await?.ok_or_else(|| PrincipalError::NotFound(id.clone()))?;
        tx.commit().await?;
        self.change(|entries| mark_revoked(entries, &[id.as_str()]));
        tracing::info!(token_id = %id, principal = %info.principal, "console session closed");
        Ok(Some(info))
    }
}

/// Marks the tokens of these ids revoked in this replica's table (after the database says so).
fn mark_revoked(entries: &mut [Entry], ids: &[&str]) {
    for entry in entries.iter_mut().filter(|entry| ids.contains(&&*entry.caller.token_id)) {
        entry.revoked = true;
    }
}

async fn token_info(conn: &mut sqlx::PgConnection, id: &str) -> sqlx::Result<Option<TokenInfo>> {
    let sql =
        format!("SELECT {TOKEN_COLUMNS} FROM api_tokens t JOIN principals p ON p.name = t.principal WHERE t.id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(conn).await
}

/// Creates the principal, or checks that the existing one has this role (and, when given,
/// these assistants).
async fn ensure_principal(
    tx: &mut sqlx::PgConnection,
    name: &str,
    role: Role,
    assistants: &[String],
) -> Result<(), PrincipalError> {
    sqlx::query("INSERT INTO principals (name, role, assistants) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .bind(role.to_string())
        .bind(assistants)
        .execute(&mut *tx)
        .await?;
    let (stored_role, mut stored): (String, Vec<String>) =
        sqlx::query_as("SELECT role, assistants FROM principals WHERE name = $1")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
    if stored_role != role.to_string() {
        return Err(PrincipalError::FailedPrecondition(format!(
            "principal {name} has the role {stored_role}, not {role}: one principal has one role"
        )));
    }
    stored.sort();
    if !assistants.is_empty() && stored != assistants {
        let serves = if stored.is_empty() { "every assistant".to_owned() } else { stored.join(", ") };
        return Err(PrincipalError::FailedPrecondition(format!(
            "principal {name} serves {serves}; a new token cannot change that"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured(principal: &str, role: Role, secret: &str) -> ConfiguredToken {
        ConfiguredToken { principal: principal.to_owned(), role, secret: SecretString::from(secret.to_owned()) }
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, format!("Bearer {token}").parse().expect("header value"));
        headers
    }

    #[test]
    fn configured_entries_name_their_principal_or_take_the_roles_name() {
        let named = ConfiguredToken::parse(Role::Customer, " acme=s3cret ").expect("entry");
        assert_eq!((named.principal.as_str(), named.secret.expose_secret()), ("acme", "s3cret"));
        let bare = ConfiguredToken::parse(Role::Bot, "abc=").expect("entry");
        assert_eq!((bare.principal.as_str(), bare.secret.expose_secret()), ("bot", "abc="));
        let not_a_name = ConfiguredToken::parse(Role::Operator, "Op/1=xyz").expect("entry");
        assert_eq!(not_a_name.principal, "operator");
        assert!(ConfiguredToken::parse(Role::Operator, "  ").is_none());
        assert!(!format!("{named:?}").contains("s3cret"), "{named:?}");
    }

    #[test]
    fn names_are_safe_identifiers() {
        for good in ["acme", "bot-eu-7", "a", "0.x_y", &"a".repeat(63)] {
            assert_eq!(check_name(good), Ok(()), "{good}");
        }
        for bad in ["", "Acme", "-x", "a b", "a/b", "a\0", &"a".repeat(64), "é"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_new_principal_cannot_take_a_seed_hosts_name() {
        let host = crate::auth::Networks::parse("10.0.0.0/8").expect("networks");
        let name = host.caller("10.0.0.1".parse().expect("ip")).expect("admitted").principal;
        assert_eq!(check_name(&name), Ok(()), "the host's name is a name");
        let refused = check_new_name(&name).expect_err("a seed host's name");
        assert!(refused.contains("token-less seed hosts"), "{refused}");
        assert_eq!(check_new_name("seeder"), Ok(()));
        assert!(check_new_name("Seed").is_err());
    }

    #[test]
    fn tokens_authenticate_to_their_principal() {
        let principals = Principals::fixed(&[
            configured("acme", Role::Customer, "c-token"),
            configured("bot-eu-7", Role::Bot, "b-token"),
        ]);
        let caller = principals.authenticate(&bearer("c-token")).expect("known token");
        assert_eq!((&*caller.principal, caller.role), ("acme", Role::Customer));
        assert_eq!(caller.token_id.len(), 16);
        assert!(matches!(principals.authenticate(&bearer("nope")), Err(AuthError::Unknown)));
        assert!(matches!(principals.authenticate(&HeaderMap::new()), Err(AuthError::Missing)));
        let mut lowercase = HeaderMap::new();
        lowercase.insert(AUTHORIZATION, "bearer b-token".parse().expect("header value"));
        assert_eq!(principals.authenticate(&lowercase).map(|c| c.role), Ok(Role::Bot));
        let mut basic = HeaderMap::new();
        basic.insert(AUTHORIZATION, "Basic b-token".parse().expect("header value"));
        assert!(matches!(principals.authenticate(&basic), Err(AuthError::Missing)));
    }

    #[test]
    fn a_reload_read_before_a_change_here_does_not_undo_it() {
        let principals = Principals::fixed(&[configured("acme", Role::Customer, "old")]);
        let stale = principals.snapshot().entries.clone();
        let read_at = principals.changes();
        let hash = hash("new");
        let caller = Caller::new("acme", Role::Customer, Vec::new(), token_id(&hash));
        principals.change(|entries| entries.push(Entry { hash, caller, revoked: false, expires_at: None }));
        principals.install(read_at, stale.clone());
        assert!(principals.caller_of("new").is_ok(), "a stale reload dropped a token made here");
        principals.install(principals.changes(), stale);
        assert!(principals.caller_of("new").is_err(), "a reload after the change is installed");
    }

    #[test]
    fn among_many_tokens_each_finds_its_own_principal() {
        let tokens: Vec<ConfiguredToken> =
            (0..10_000).map(|i| configured(&format!("customer-{i}"), Role::Customer, &format!("secret-{i}"))).collect();
        let principals = Principals::fixed(&tokens);
        for i in [0, 1, 4_321, 9_999] {
            let caller = principals.caller_of(&format!("secret-{i}")).expect("a known token");
            assert_eq!(caller.principal.as_ref(), format!("customer-{i}"));
        }
        assert!(matches!(principals.caller_of("secret-10000"), Err(AuthError::Unknown)));
        assert!(matches!(principals.caller_of(""), Err(AuthError::Unknown)));
        // Revoked here: the index is rebuilt with the change, and the token is refused as revoked.
        let revoked = hash("secret-4321");
        principals.change(|entries| {
            for entry in entries.iter_mut().filter(|entry| entry.hash == revoked) {
                entry.revoked = true;
            }
        });
        assert!(matches!(principals.caller_of("secret-4321"), Err(AuthError::Revoked(_))));
        assert!(principals.caller_of("secret-4320").is_ok());
        // One token configured twice: the later entry is the one that counts, as before.
        let twice = Principals::fixed(&[
            configured("first", Role::Customer, "same"),
            configured("second", Role::Customer, "same"),
        ]);
        assert_eq!(twice.caller_of("same").map(|c| c.principal.to_string()), Ok("second".to_owned()));
    }
    #[test]
    fn minted_tokens_are_long_random_and_prefixed() {
        let (a, b) = (mint(), mint());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 43, "{a}");
        assert_eq!(token_id(&hash(&a)), token_id(&hash(&a)));
        assert!(!token_id(&hash(&a)).contains(&a[4..10]));
    }
}
