//! Change notifications for live account lists: migration 0007's triggers `pg_notify` on
//! `aap_session_accounts` after every statement that changes an account or a lease, on any
//! replica; one listener per process turns them into a counter that every `WatchAccounts`
//! stream of the process follows (a `watch` channel: a burst of changes wakes a stream once).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::watch;

/// The notification channel the triggers of migration 0007 notify.
pub const CHANNEL: &str = "aap_session_accounts";

/// How long the listener waits before it connects again after a failure.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// The process's view of account changes. Cheap to clone; the listener starts with the first
/// subscriber and lives as long as the runtime.
#[derive(Debug, Clone)]
pub struct Changes {
    pool: PgPool,
    sender: Arc<Mutex<Option<watch::Sender<u64>>>>,
}

impl Changes {
    /// Changes announced through `pool`'s database.
    pub fn new(pool: PgPool) -> Changes {
        Changes { pool, sender: Arc::default() }
    }

    /// A receiver whose value changes after every change to an account or a lease (and after
    /// the listener lost its connection, when changes may have been missed). Must be called
    /// inside a tokio runtime.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        // A poisoned lock only means another subscriber panicked; the sender is still sound.
        let mut sender = self.sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(sender) = sender.as_ref() {
            return sender.subscribe();
        }
        let (tx, rx) = watch::channel(0);
        tokio::spawn(listen(self.pool.clone(), tx.clone()));
        *sender = Some(tx);
        rx
    }
}

/// LISTENs on [`CHANNEL`] and bumps `tx` on every notification, reconnecting after failures.
async fn listen(pool: PgPool, tx: watch::Sender<u64>) {
    loop {
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(CHANNEL).await {
                Ok(()) => {
                    // Anything may have changed while no one listened.
                    tx.send_modify(|n| *n += 1);
                    loop {
                        match listener.try_recv().await {
                            Ok(_) => tx.send_modify(|n| *n += 1),
                            Err(error) => {
                                tracing::warn!(%error, "account change listener lost its connection");
                                break;
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot LISTEN for account changes"),
            },
            Err(error) => tracing::warn!(%error, "cannot connect the account change listener"),
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}
