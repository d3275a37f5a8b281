//! The session pool's metrics: accounts by assistant and status (read from PostgreSQL by
//! [`refresh`]), and the leases granted, refused and returned.
//!
//! [`refresh`] reads shared state, the same from every replica: run it in one process (where
//! the scheduler runs), or a sum over replicas counts it twice.

use std::sync::LazyLock;

use aap_platform::assistants::{self, ASSISTANTS};
use aap_platform::metrics::{self, Counters, Gauges, labels};
use sqlx::PgPool;

use crate::domain::{Lease, LeaseOutcome, SessionError, SessionResult};

struct Metrics {
    accounts: Gauges,
    accounts_leased: Gauges,
    leases: Counters,
    returns: Counters,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    accounts: metrics::gauge(
        "session_accounts",
        "Assistant accounts by assistant and status (active, cooling, challenged, expired, disabled), read from \
         PostgreSQL.",
    ),
    accounts_leased: metrics::gauge(
        "session_accounts_leased",
        "Assistant accounts a bot holds a live lease on, by assistant.",
    ),
    leases: metrics::counter(
        "session_leases",
        "Lease requests by assistant and outcome (granted; no_account: none exists; exhausted: all leased, \
         cooling, expired or disabled; error).",
    ),
    returns: metrics::counter(
        "session_lease_returns",
        "Leases bots returned, by assistant and outcome (ok, expired, rate_limited, challenged).",
    ),
});

const STATUSES: [&str; 5] = ["active", "cooling", "challenged", "expired", "disabled"];

/// Makes the session families appear in scrapes from the start.
pub fn register() {
    LazyLock::force(&METRICS);
}

fn assistant_label(assistant: &str) -> &'static str {
    assistants::by_id(assistant.trim()).map_or("unknown", |known| known.id)
}

pub(crate) fn leased(assistant: &str, result: &SessionResult<Lease>) {
    let outcome = match result {
        Ok(_) => "granted",
        Err(SessionError::NoAccount { .. }) => "no_account",
        Err(SessionError::Exhausted { .. }) => "exhausted",
        Err(_) => "error",
    };
    METRICS.leases.get_or_create(&labels([("assistant", assistant_label(assistant)), ("outcome", outcome)])).inc();
}

pub(crate) fn returned(assistant: &str, outcome: LeaseOutcome) {
    METRICS
        .returns
        .get_or_create(&labels([("assistant", assistant_label(assistant)), ("outcome", outcome.as_str())]))
        .inc();
}

/// Reads accounts by assistant and status, and the leased ones, once (one small query).
pub async fn refresh(pool: &PgPool) -> Result<(), sqlx::Error> {
    let counts = crate::store::account_counts(pool).await?;
    for known in ASSISTANTS {
        for status in STATUSES {
            let count: i64 =
                counts.iter().filter(|c| c.assistant == known.id && c.status == status).map(|c| c.count).sum();
            METRICS.accounts.get_or_create(&labels([("assistant", known.id), ("status", status)])).set(count);
        }
        let leased: i64 = counts.iter().filter(|c| c.assistant == known.id && c.leased).map(|c| c.count).sum();
        METRICS.accounts_leased.get_or_create(&labels([("assistant", known.id)])).set(leased);
    }
    Ok(())
}
