//! Evidence of failed bot attempts kept by the platform: what the page showed (screenshot,
//! HTML, address, title) when a bot failed, tied to the account it held, so that an operator
//! sees it whatever host the bot ran on.
//!
//! Bounded: at most [`EvidenceLimits::per_account`] cases per account and
//! [`EvidenceLimits::total`] overall; each report deletes the oldest beyond them. Reports are
//! serialised by a transaction-scoped advisory lock, so the bounds hold exactly under
//! concurrent reports. The table is `services/platform/migrations/0008_evidence.sql`'s.
//!
//! Knows nothing of gRPC; [`crate::grpc`] adapts it.

use aap_platform::{assistants, input};
use chrono::{DateTime, Datelike, Duration, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The failure classes a bot may report.
pub use aap_proto::FAILURE_CLASSES;
use aap_proto::limits;

/// Largest screenshot kept, in bytes.
pub const MAX_SCREENSHOT_BYTES: usize = limits::MAX_EVIDENCE_SCREENSHOT_BYTES;
/// Largest page HTML kept, in bytes (the bot cuts it).
pub const MAX_HTML_BYTES: usize = limits::MAX_EVIDENCE_HTML_BYTES;
/// Most cases a listing returns.
pub const MAX_LIST: u32 = 100;
/// Longest error text, in characters (as a release reason).
const MAX_ERROR_CHARS: usize = limits::MAX_REASON_CHARS;
/// Longest URL, in characters (as a citation's).
const MAX_URL_CHARS: usize = limits::MAX_URL_CHARS;
/// Longest page title, in characters (as a citation's).
const MAX_TITLE_CHARS: usize = limits::MAX_TITLE_CHARS;
/// Longest bot id, lease id and manifest version, in characters.
const MAX_NAME_CHARS: usize = 200;
/// How far ahead of the platform's clock a bot's capture time may be.
const MAX_CLOCK_SKEW: Duration = Duration::hours(24);
/// Every PNG starts with these eight bytes.
const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
/// The advisory lock that serialises reports (bounds exact under concurrency): "aap.evidence".
const REPORT_LOCK: i64 = 0x6161_702e_6576_6964;

/// How many cases the platform keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvidenceLimits {
    /// Cases kept per account (a report on an account deletes its oldest beyond this).
    pub per_account: u32,
    /// Cases kept overall, with or without an account.
    pub total: u32,
}

impl Default for EvidenceLimits {
    fn default() -> EvidenceLimits {
        EvidenceLimits { per_account: 100, total: 2000 }
    }
}

/// The result of every operation of [`EvidenceLocker`].
pub type EvidenceResult<T> = Result<T, EvidenceError>;

/// Why an evidence operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A request field is missing or malformed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The request field, as the API names it.
        field: &'static str,
        /// What is wrong with it, for the caller.
        reason: String,
    },
    /// The lease was taken by another principal, or the caller may not serve the assistant.
    #[error("{0}")]
    PermissionDenied(String),
    /// No lease has this id.
    #[error("lease {0} not found")]
    LeaseNotFound(Uuid),
    /// No account has this id.
    #[error("account {0} not found")]
    AccountNotFound(Uuid),
    /// No case has this id (never reported, or dropped by the bounds).
    #[error("evidence {0} not found")]
    NotFound(Uuid),
    /// The database failed; the cause is for the logs, not for the caller.
    #[error("evidence store failed: {0}")]
    Database(#[from] sqlx::Error),
}

fn invalid(field: &'static str, reason: impl Into<String>) -> EvidenceError {
    EvidenceError::InvalidArgument { field, reason: reason.into() }
}

fn check(field: &'static str, result: Result<(), String>) -> EvidenceResult<()> {
    result.map_err(|reason| invalid(field, reason))
}

fn parse_id(field: &'static str, value: &str) -> EvidenceResult<Uuid> {
    Uuid::parse_str(value.trim()).map_err(|_| invalid(field, format!("{} is not a uuid", input::quoted(value))))
}

/// A failed attempt as a bot reports it.
#[derive(Debug, Clone, Copy)]
pub struct NewEvidence<'a> {
    /// The bot's id; empty: the principal's name.
    pub bot_id: &'a str,
    /// The lease the bot held; empty: none.
    pub lease_id: &'a str,
    /// Lowercase assistant id.
    pub assistant: &'a str,
    pub evaluation_id: i64,
    /// 1-based attempt within the task.
    pub attempt: u32,
    /// One of [`FAILURE_CLASSES`].
    pub class: &'a str,
    pub error: &'a str,
    pub url: &'a str,
    pub title: &'a str,
    /// The bot's clock; `None`: now.
    pub captured_at: Option<DateTime<Utc>>,
    /// PNG; empty: none.
    pub screenshot_png: &'a [u8],
    pub html: &'a str,
    pub manifest_version: &'a str,
}

/// A kept case, without its screenshot and HTML.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EvidenceCase {
    pub id: Uuid,
    /// The account the bot held, if any.
    pub account_id: Option<Uuid>,
    pub assistant: String,
    pub bot_id: String,
    /// The bot principal that reported it.
    pub principal: String,
    pub evaluation_id: i64,
    pub attempt: i32,
    pub class: String,
    pub error: String,
    pub url: String,
    pub title: String,
    pub manifest_version: String,
    pub captured_at: DateTime<Utc>,
    pub reported_at: DateTime<Utc>,
    pub has_screenshot: bool,
    /// Size of the HTML kept.
    pub html_bytes: i64,
}

/// A case with its screenshot, and its HTML when asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceDetail {
    pub case: EvidenceCase,
    /// PNG; empty when none was kept.
    pub screenshot_png: Vec<u8>,
    /// `None` unless asked for.
    pub html: Option<String>,
}

/// The columns of an [`EvidenceCase`]; a macro so that it can be `concat!`ed into static SQL.
macro_rules! case_columns {
    () => {
        "id, account_id, assistant, bot_id, principal, evaluation_id, attempt, class, error, url, title, \
         manifest_version, captured_at, reported_at, screenshot IS NOT NULL AS has_screenshot, \
         octet_length(html)::bigint AS html_bytes"
    };
}

/// Keeps, bounds and serves the evidence bots report.
#[derive(Debug, Clone)]
pub struct EvidenceLocker {
    pool: PgPool,
    limits: EvidenceLimits,
}

impl EvidenceLocker {
    /// A locker over the platform's migrated database in `pool`.
    pub fn new(pool: PgPool, limits: EvidenceLimits) -> EvidenceLocker {
        EvidenceLocker { pool, limits }
    }

    /// The bounds it keeps.
    pub fn limits(&self) -> EvidenceLimits {
        self.limits
    }

    /// Checks and keeps a case; the oldest beyond the bounds are deleted. The account is the
    /// lease's, and the lease must be the reporter's. Returns the case's id.
    ///
    /// Whether `principal` may serve the assistant at all is the caller's check (the gRPC
    /// adapter's, as for leases).
    #[tracing::instrument(skip_all, fields(evaluation_id = new.evaluation_id, class = new.class))]
    pub async fn report(&self, new: NewEvidence<'_>, principal: &str) -> EvidenceResult<Uuid> {
        let checked = check_report(&new, Utc::now())?;
        let bot_id = if new.bot_id.trim().is_empty() { principal } else { new.bot_id.trim() };
        let mut tx = self.pool.begin().await?;
        let account_id = match checked.lease_id {
            None => None,
            Some(lease_id) => {
                let lease = lease_of(&mut tx, lease_id).await?.ok_or(EvidenceError::LeaseNotFound(lease_id))?;
                if lease.principal.as_deref() != Some(principal) {
                    return Err(EvidenceError::PermissionDenied(format!(
                        "lease {lease_id} was taken by another principal: a bot reports evidence of its own leases only"
                    )));
                }
                if lease.assistant != checked.assistant {
                    return Err(invalid(
                        "assistant",
                        format!("lease {lease_id} is of a {} account, not {}", lease.assistant, checked.assistant),
                    ));
                }
                Some(lease.account_id)
            }
        };
        let id = Uuid::new_v4();
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(REPORT_LOCK).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO session_evidence (id, account_id, assistant, bot_id, principal, evaluation_id, attempt, \
                                           class, error, url, title, manifest_version, captured_at, reported_at, \
                                           screenshot, html) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, clock_timestamp(), $14, $15)",
        )
        .bind(id)
        .bind(account_id)
        .bind(checked.assistant)
        .bind(bot_id)
        .bind(principal)
        .bind(new.evaluation_id)
        .bind(checked.attempt)
        .bind(new.class)
        .bind(new.error)
        .bind(new.url)
        .bind(new.title)
        .bind(new.manifest_version)
        .bind(checked.captured_at)
        .bind((!new.screenshot_png.is_empty()).then_some(new.screenshot_png))
        .bind(new.html)
        .execute(&mut *tx)
        .await?;
        let dropped = prune(&mut tx, account_id, self.limits).await?;
        if let Some(account_id) = account_id {
            sqlx::query("UPDATE session_accounts SET failures = failures + 1 WHERE id = $1")
                .bind(account_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        tracing::info!(
            evidence_id = %id,
            account_id = account_id.map(|id| id.to_string()).unwrap_or_default(),
            screenshot_bytes = new.screenshot_png.len(),
            html_bytes = new.html.len(),
            dropped,
            "evidence kept"
        );
        Ok(id)
    }

    /// The newest cases, of one account when `account_id` is not empty; at most `limit`
    /// (0 or more than [`MAX_LIST`]: [`MAX_LIST`]).
    #[tracing::instrument(skip(self))]
    pub async fn list(&self, account_id: &str, limit: u32) -> EvidenceResult<Vec<EvidenceCase>> {
        let limit = if limit == 0 { MAX_LIST } else { limit.min(MAX_LIST) };
        let account_id = match account_id.trim() {
            "" => None,
            id => Some(parse_id("account_id", id)?),
        };
        if let Some(id) = account_id {
            let exists: Option<(i32,)> = sqlx::query_as("SELECT 1 FROM session_accounts WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            if exists.is_none() {
                return Err(EvidenceError::AccountNotFound(id));
            }
        }
        let cases = sqlx::query_as(concat!(
            "SELECT ",
            case_columns!(),
            " FROM session_evidence WHERE $1::uuid IS NULL OR account_id = $1 \
              ORDER BY reported_at DESC, id DESC LIMIT $2"
        ))
        .bind(account_id)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(cases)
    }

    /// One case with its screenshot, and its HTML when `include_html`.
    #[tracing::instrument(skip(self))]
    pub async fn get(&self, evidence_id: &str, include_html: bool) -> EvidenceResult<EvidenceDetail> {
        let id = parse_id("evidence_id", evidence_id)?;
        // The HTML is not even read unless asked for: it is the bulk of a case.
        let row: Option<(Option<Vec<u8>>, Option<String>)> =
            sqlx::query_as("SELECT screenshot, CASE WHEN $2 THEN html END FROM session_evidence WHERE id = $1")
                .bind(id)
                .bind(include_html)
                .fetch_optional(&self.pool)
                .await?;
        let (screenshot, html) = row.ok_or(EvidenceError::NotFound(id))?;
        let case = sqlx::query_as(concat!("SELECT ", case_columns!(), " FROM session_evidence WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(EvidenceError::NotFound(id))?;
        Ok(EvidenceDetail { case, screenshot_png: screenshot.unwrap_or_default(), html })
    }
}

/// What [`check_report`] parsed.
#[derive(Debug, PartialEq, Eq)]
struct CheckedReport {
    assistant: &'static str,
    lease_id: Option<Uuid>,
    attempt: i32,
    captured_at: DateTime<Utc>,
}

/// Checks every field of a report against its bounds; `now` is the platform's clock.
fn check_report(new: &NewEvidence<'_>, now: DateTime<Utc>) -> EvidenceResult<CheckedReport> {
    let assistant = assistants::by_id(new.assistant).map(|assistant| assistant.id).ok_or_else(|| {
        let known: Vec<&str> = assistants::ASSISTANTS.iter().map(|assistant| assistant.id).collect();
        invalid(
            "assistant",
            format!("unknown assistant {}, expected one of {}", input::quoted(new.assistant), known.join(", ")),
        )
    })?;
    check("bot_id", input::check_one_line(new.bot_id.trim(), MAX_NAME_CHARS))?;
    check("lease_id", input::check_line(new.lease_id, MAX_NAME_CHARS))?;
    let lease_id = match new.lease_id.trim() {
        "" => None,
        id => Some(parse_id("lease_id", id)?),
    };
    if new.evaluation_id <= 0 {
        return Err(invalid("evaluation_id", format!("{} is not an evaluation id", new.evaluation_id)));
    }
    let attempt = i32::try_from(new.attempt)
        .ok()
        .filter(|attempt| *attempt >= 1)
        .ok_or_else(|| invalid("attempt", format!("{} is not a 1-based attempt number", new.attempt)))?;
    if !FAILURE_CLASSES.contains(&new.class) {
        return Err(invalid(
            "class",
            format!(
                "unknown failure class {}, expected one of {}",
                input::quoted(new.class),
                FAILURE_CLASSES.join(", ")
            ),
        ));
    }
    check("error", input::check_text(new.error, MAX_ERROR_CHARS))?;
    check("url", input::check_line(new.url, MAX_URL_CHARS))?;
    // Shown to operators as a link; a page that is no web address (about:blank, a browser
    // error page) is reported with an empty url.
    if !new.url.trim().is_empty() {
        check("url", aap_proto::urls::check_web_url(new.url))?;
    }
    check("title", input::check_text(new.title, MAX_TITLE_CHARS))?;
    check("manifest_version", input::check_one_line(new.manifest_version, MAX_NAME_CHARS))?;
    if new.html.len() > MAX_HTML_BYTES {
        return Err(invalid("html", format!("is {} bytes; the limit is {MAX_HTML_BYTES}", new.html.len())));
    }
    check("html", input::check_text(new.html, usize::MAX))?;
    let png = new.screenshot_png;
    if png.len() > MAX_SCREENSHOT_BYTES {
        return Err(invalid("screenshot_png", format!("is {} bytes; the limit is {MAX_SCREENSHOT_BYTES}", png.len())));
    }
    if !png.is_empty() && !png.starts_with(PNG_SIGNATURE) {
        return Err(invalid("screenshot_png", "is not a PNG (no PNG signature)"));
    }
    let captured_at = match new.captured_at {
        None => now,
        Some(at) if at.year() < 2000 || at > now + MAX_CLOCK_SKEW => {
            return Err(invalid(
                "captured_at",
                format!("{} is before 2000 or more than a day ahead of the platform's clock", at.to_rfc3339()),
            ));
        }
        Some(at) => at,
    };
    Ok(CheckedReport { assistant, lease_id, attempt, captured_at })
}

/// A lease as a report sees it.
#[derive(sqlx::FromRow)]
struct LeaseOfReport {
    account_id: Uuid,
    principal: Option<String>,
    assistant: String,
}

async fn lease_of(conn: &mut PgConnection, lease_id: Uuid) -> Result<Option<LeaseOfReport>, sqlx::Error> {
    sqlx::query_as(
        "SELECT l.account_id, l.principal, a.assistant \
         FROM session_leases l JOIN session_accounts a ON a.id = l.account_id WHERE l.id = $1",
    )
    .bind(lease_id)
    .fetch_optional(conn)
    .await
}

/// Deletes the oldest cases beyond the bounds (the account's, then overall); returns how many.
async fn prune(conn: &mut PgConnection, account_id: Option<Uuid>, limits: EvidenceLimits) -> Result<u64, sqlx::Error> {
    let mut dropped = 0;
    if let Some(account_id) = account_id {
        dropped += sqlx::query(
            "DELETE FROM session_evidence WHERE id IN ( \
                 SELECT id FROM session_evidence WHERE account_id = $1 \
                 ORDER BY reported_at DESC, id DESC OFFSET $2)",
        )
        .bind(account_id)
        .bind(i64::from(limits.per_account))
        .execute(&mut *conn)
        .await?
        .rows_affected();
    }
    dropped += sqlx::query(
        "DELETE FROM session_evidence WHERE id IN ( \
             SELECT id FROM session_evidence ORDER BY reported_at DESC, id DESC OFFSET $1)",
    )
    .bind(i64::from(limits.total))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report<'a>() -> NewEvidence<'a> {
        NewEvidence {
            bot_id: "bot-1",
            lease_id: "",
            assistant: "chatgpt",
            evaluation_id: 7,
            attempt: 1,
            class: "logged-out",
            error: "login wall",
            url: "https://chatgpt.com/",
            title: "ChatGPT",
            captured_at: None,
            screenshot_png: b"\x89PNG\r\n\x1a\nrest",
            html: "<html></html>",
            manifest_version: "2026.11.1",
        }
    }

    fn field(result: EvidenceResult<CheckedReport>) -> &'static str {
        match result {
            Err(EvidenceError::InvalidArgument { field, .. }) => field,
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_sound_report_passes_and_takes_the_platforms_time_when_it_has_none() {
        let now = Utc::now();
        let checked = check_report(&report(), now).expect("sound");
        assert_eq!(checked, CheckedReport { assistant: "chatgpt", lease_id: None, attempt: 1, captured_at: now });
        let no_screenshot = NewEvidence { screenshot_png: b"", ..report() };
        assert!(check_report(&no_screenshot, now).is_ok());
    }

    #[test]
    fn bad_fields_are_refused_naming_the_field() {
        let now = Utc::now();
        let long = "x".repeat(MAX_HTML_BYTES + 1);
        let cases: Vec<(NewEvidence<'_>, &str)> = vec![
            (NewEvidence { assistant: "ChatGPT", ..report() }, "assistant"),
            (NewEvidence { bot_id: "bot\u{1}", ..report() }, "bot_id"),
            (NewEvidence { lease_id: "not-a-uuid", ..report() }, "lease_id"),
            (NewEvidence { evaluation_id: 0, ..report() }, "evaluation_id"),
            (NewEvidence { attempt: 0, ..report() }, "attempt"),
            (NewEvidence { class: "sources-disagree", ..report() }, "class"),
            (NewEvidence { error: "a\0b", ..report() }, "error"),
            (NewEvidence { url: "https://x/\u{7}", ..report() }, "url"),
            (NewEvidence { url: "javascript:alert(1)", ..report() }, "url"),
            (NewEvidence { url: "not a url", ..report() }, "url"),
            (NewEvidence { title: "t\0", ..report() }, "title"),
            (NewEvidence { manifest_version: "2026.11.1\nchatgpt 2027.1.1", ..report() }, "manifest_version"),
            (NewEvidence { manifest_version: "2026.11.1\t", ..report() }, "manifest_version"),
            (NewEvidence { manifest_version: "2026\u{1b}[2J", ..report() }, "manifest_version"),
            (NewEvidence { html: &long, ..report() }, "html"),
            (NewEvidence { html: "<p>\0</p>", ..report() }, "html"),
            (NewEvidence { screenshot_png: b"GIF89a", ..report() }, "screenshot_png"),
            (NewEvidence { captured_at: Some(now + Duration::days(2)), ..report() }, "captured_at"),
            (NewEvidence { captured_at: DateTime::from_timestamp(0, 0), ..report() }, "captured_at"),
        ];
        for (new, want) in cases {
            assert_eq!(field(check_report(&new, now)), want);
        }
        let big = vec![0u8; MAX_SCREENSHOT_BYTES + 1];
        assert_eq!(field(check_report(&NewEvidence { screenshot_png: &big, ..report() }, now)), "screenshot_png");
    }
}
