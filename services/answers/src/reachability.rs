//! The reachability audit: finds the stored prompts the HNSW index cannot reach, so that the
//! similarity search scans them exactly beside it (`store::neighbours`).
//!
//! An HNSW search walks a graph from one entry point. pgvector keeps each element's nearest links
//! and drops the farthest when a list is full, so as a dense cluster of prompts grows (templated
//! prompts, "which CRM fits team 1?", "... team 2?") a prompt near nothing else, or at a
//! cluster's edge, can lose every link that led to it: stored, but never returned, not even for
//! its own text's embedding (docs/matching.md, "Prompts the index cannot reach"). The audit asks
//! the index for each prompt's own embedding, a few a second, in id order, and lists those near
//! nothing else that it misses (`store::audit_reachability`).

use std::time::Duration;

use sqlx::PgPool;

use crate::store;

/// Audits `per_second` prompts a second (in rounds of one second) until the process ends; 0
/// audits none. Every replica runs one; one at a time checks a round (an advisory lock). A
/// sweep checks the prompts stored when it began (those stored since wait for the next, so the
/// first prompts are checked again however fast new ones come), and starts again once a prompt
/// was stored after it: links are lost only when new elements join the graph, so a table nobody
/// adds to costs one lookup of its largest id a second.
pub fn spawn(pool: PgPool, per_second: u32, min_similarity: f64) {
    if per_second == 0 {
        return;
    }
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut after = 0;
        // The largest id when this sweep began: it ends there.
        let mut until = 0;
        // The largest id when the last sweep ended: the next waits for a prompt past it.
        let mut swept_to: Option<i64> = None;
        // Prompts out of reach this sweep that the full list left out.
        let mut unlisted = 0;
        loop {
            ticks.tick().await;
            if after == 0 {
                match store::last_prompt_id(&pool).await {
                    Ok(last) if swept_to.is_none_or(|swept| last > swept) => {
                        swept_to = None;
                        until = last;
                    }
                    Ok(_) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "reachability audit: cannot read the last prompt id");
                        continue;
                    }
                }
            }
            match store::audit_reachability(&pool, after, until, i64::from(per_second), min_similarity).await {
                Ok(audit) if audit.busy => {}
                Ok(audit) => {
                    crate::metrics::reachability_audited(audit.checked, audit.listed);
                    unlisted += audit.unlisted;
                    if !audit.unreachable.is_empty() {
                        tracing::info!(
                            prompts = ?audit.unreachable,
                            listed = audit.listed,
                            "prompts the similarity index cannot reach: searched exactly from now on"
                        );
                    }
                    match audit.last {
                        Some(last) if audit.checked == u64::from(per_second) => after = last,
                        // The end of the table: the next sweep starts from the first prompt.
                        _ => {
                            if unlisted > 0 {
                                tracing::warn!(
                                    unlisted,
                                    max = store::MAX_LISTED,
                                    "more prompts out of the similarity index's reach than the list holds; \
                                     docs/matching.md, \"Prompts the index cannot reach\""
                                );
                            }
                            swept_to = Some(until);
                            after = 0;
                            unlisted = 0;
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "reachability audit: the round failed; the next one tries again"),
            }
        }
    });
}
