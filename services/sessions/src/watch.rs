//! The stream behind `WatchAccounts`: the list as it is, then the list again whenever it
//! differs, looked at after every change notification ([`crate::changes`]) and at the next
//! moment time alone changes it (a cool-down ending, a lease lapsing), with a sweep at least
//! every [`SWEEP`] in case a notification was missed.

use std::time::Duration;

use chrono::Utc;
use futures::Stream;

use crate::domain::{Account, AccountFilter, SessionDirectory, SessionResult};

/// Longest wait between two looks, whatever happens.
const SWEEP: Duration = Duration::from_secs(30);
/// Shortest time between two looks: a burst of changes costs one query per stream.
const MIN_INTERVAL: Duration = Duration::from_millis(200);

/// When time alone next changes what `accounts` show: the earliest cool-down end or held
/// lease's expiry still to come.
fn next_transition(accounts: &[Account]) -> Option<Duration> {
    let now = Utc::now();
    accounts
        .iter()
        .flat_map(|account| {
            let lease_end = account.last_lease.as_ref().filter(|lease| lease.outcome == "held").map(|l| l.expires_at);
            [account.cooldown_until, lease_end]
        })
        .flatten()
        .filter(|at| *at > now)
        .min()
        .and_then(|at| (at - now).to_std().ok())
}

/// `first`, then every different list `filter` matches. Ends after the first error (the
/// caller sees it and may watch again).
pub(crate) fn accounts(
    directory: SessionDirectory,
    filter: AccountFilter,
    first: Vec<Account>,
) -> impl Stream<Item = SessionResult<Vec<Account>>> + Send + 'static {
    let mut changes = directory.changes().subscribe();
    changes.mark_unchanged();
    let state = State { pending: Some(first), last: Vec::new(), failed: false, changes };
    futures::stream::unfold(state, move |mut state| {
        let directory = directory.clone();
        let filter = filter.clone();
        async move {
            if state.failed {
                return None;
            }
            if let Some(first) = state.pending.take() {
                state.last = first.clone();
                return Some((Ok(first), state));
            }
            loop {
                // A margin past the transition, so the database's clock has passed it too.
                let wait = next_transition(&state.last).map_or(SWEEP, |d| (d + Duration::from_millis(50)).min(SWEEP));
                tokio::select! {
                    changed = state.changes.changed() => {
                        if changed.is_err() {
                            // The listener is gone (the runtime is shutting down): sweep only.
                            tokio::time::sleep(wait).await;
                        }
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
                tokio::time::sleep(MIN_INTERVAL).await;
                state.changes.mark_unchanged();
                match directory.find_accounts(&filter).await {
                    Ok(accounts) if accounts == state.last => continue,
                    Ok(accounts) => {
                        state.last = accounts.clone();
                        return Some((Ok(accounts), state));
                    }
                    Err(error) => {
                        state.failed = true;
                        return Some((Err(error), state));
                    }
                }
            }
        }
    })
}

struct State {
    /// The first list, not sent yet.
    pending: Option<Vec<Account>>,
    /// The list last sent.
    last: Vec<Account>,
    /// An error was sent: the stream ends.
    failed: bool,
    changes: tokio::sync::watch::Receiver<u64>,
}
