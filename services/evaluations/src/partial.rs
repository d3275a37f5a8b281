//! Live partial answers: the text an assistant has typed so far (or what the bot waits for before
//! it can ask), reported by the bot that holds the task, checked against its claim and announced
//! to the prompt's streams over core NATS
//! (`<prefix>.events.prompt.<id>.partial`). Nothing here is stored: a partial lost on the way
//! costs a customer one glimpse, and the answer follows anyway.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::queue::Queue;
use crate::store::EvaluationRow;

/// How long a claim read for a partial is trusted before it is read again. A bot reports about
/// twice a second: without this, every report would be a database read. A claim that ended
/// meanwhile on another replica lets a partial or two through; the streams drop those once
/// the answer is told.
pub const CLAIM_CHECK_TTL: Duration = Duration::from_secs(2);

/// Claim checks kept before the expired ones are swept out.
const MAX_CHECKS: usize = 4096;

/// What travels on a prompt's partial subject (JSON, as every message of the platform).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialMessage {
    pub evaluation_id: i64,
    pub assistant: String,
    pub plan: String,
    /// The whole text so far, not a delta; empty with `waiting`.
    pub text: String,
    /// Instead of text: what the bot waits for before it can ask (a free account).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub waiting: String,
    /// With `waiting`: when the bot expects to go on, if it knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl PartialMessage {
    /// Reads one as it travels.
    pub fn decode(payload: &[u8]) -> serde_json::Result<PartialMessage> {
        serde_json::from_slice(payload)
    }
}

/// The claims recently read for partials, by evaluation.
#[derive(Default)]
pub(crate) struct ClaimChecks {
    checked: Mutex<HashMap<i64, (Instant, EvaluationRow)>>,
}

impl ClaimChecks {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Instant, EvaluationRow)>> {
        // Plain data: a panic while it was held leaves nothing half-done worth refusing.
        self.checked.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The row read for `id` within [`CLAIM_CHECK_TTL`], if any.
    pub(crate) fn get(&self, id: i64) -> Option<EvaluationRow> {
        let checked = self.lock();
        let (at, row) = checked.get(&id)?;
        (at.elapsed() < CLAIM_CHECK_TTL).then(|| row.clone())
    }

    /// Keeps the row just read for `id`.
    pub(crate) fn keep(&self, row: EvaluationRow) {
        let mut checked = self.lock();
        if checked.len() >= MAX_CHECKS {
            checked.retain(|_, (at, _)| at.elapsed() < CLAIM_CHECK_TTL);
        }
        if checked.len() < MAX_CHECKS {
            checked.insert(row.id, (Instant::now(), row));
        }
    }

    /// Forgets `id`: this replica just changed its claim (submitted, released).
    pub(crate) fn forget(&self, id: i64) {
        self.lock().remove(&id);
    }
}

/// Announces a partial to every replica following the prompt; best effort.
pub(crate) async fn publish(queue: &Queue, prompt_id: i64, message: &PartialMessage) {
    let payload = match serde_json::to_vec(message) {
        Ok(payload) => Bytes::from(payload),
        Err(err) => {
            tracing::warn!(error = %err, "cannot encode a partial answer");
            return;
        }
    };
    let subject = queue.topology().prompt_partial_subject(prompt_id);
    match queue.client().publish(subject, payload).await {
        Ok(()) => crate::metrics::partial_published(&message.assistant),
        Err(err) => tracing::debug!(error = %err, prompt_id, "cannot announce a partial answer"),
    }
}
