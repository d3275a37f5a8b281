//! The synthetic engine: answers every task at once with a deterministic answer built from the
//! task, with no browser and no session, so load and chaos runs measure the platform, not
//! Chromium.
//!
//! Tasks still come from the same source as the browser bot's (Claim stream or the seed's HTTP
//! API) and go back through the same submit and release, with the same retries and shutdown
//! behaviour: only the answering is replaced. Every synthetic answer says so where the Submit
//! message allows, so nobody mistakes it for a real one: the model, the adapter version and
//! fingerprint and the finish signal are all `synthetic`, and the citations point at
//! `example.com` (a domain reserved for examples).

use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::adapter::{AnswerKind, Captured, Citation, FoundIn, Reading};
use crate::source::Task;

/// The mark on everything synthetic: model, adapter version and fingerprint, finish signal.
pub const SYNTHETIC: &str = "synthetic";

/// The failure class of a synthetic failure: one of `aap_proto::FAILURE_CLASSES`, as a browser
/// bot's assistant error would be.
pub const FAILURE_CLASS: &str = "assistant-error";

/// How the bot answers tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EngineKind {
    /// A real Chromium on a leased session asks the assistant.
    #[default]
    Browser,
    /// An instant answer built from the task; no browser, no session.
    Synthetic,
}

/// Knobs of the synthetic engine for load tests.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SyntheticOptions {
    /// How long each answer takes (0: at once).
    pub delay: Duration,
    /// Share of deliveries, in [0, 1], released as failed (class `assistant-error`) instead of
    /// answered; which ones is decided by the evaluation id and attempt, so a run repeats.
    pub fail_rate: f64,
}

/// The engine a worker answers with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Engine {
    /// The browser path (adapter, browser, sessions).
    Browser,
    /// The synthetic path.
    Synthetic(SyntheticOptions),
}

/// What the synthetic engine makes of a task: an answer, or the reason of a failure.
pub fn answer(options: &SyntheticOptions, assistant: &str, task: &Task) -> Result<Captured, String> {
    let roll = roll(task);
    if roll < options.fail_rate.clamp(0.0, 1.0) {
        return Err(format!("{FAILURE_CLASS}: synthetic failure (fail rate {})", options.fail_rate));
    }
    let text = format!("synthetic answer from {assistant} to: {}", task.prompt_text);
    // One or two citations, the same for the same evaluation.
    let count = 1 + (roll * 1e6) as u32 % 2;
    let citations: Vec<Citation> = (1..=count)
        .map(|position| Citation {
            url: format!("https://example.com/synthetic/{assistant}/{}/{position}", task.evaluation_id),
            title: format!("Synthetic source {position}"),
            domain: "example.com".to_owned(),
            position,
            inline: position == 1,
            found_in: FoundIn::Page,
        })
        .collect();
    let markdown = format!("{text} ([Synthetic source 1]({}))", citations[0].url);
    Ok(Captured {
        html: format!("<p>{}</p>", escape_html(&text)),
        response_text: text,
        response_markdown: markdown,
        citations,
        model: Some(SYNTHETIC.to_owned()),
        web_search: Some(false),
        kind: AnswerKind::Text,
        ttft: Some(options.delay),
        total: options.delay,
        reading: Reading { finish_signals: vec![SYNTHETIC.to_owned()], ..Reading::default() },
        search_queries: Vec::new(),
        products: Vec::new(),
    })
}

/// A number in [0, 1) fixed by the evaluation and its delivery attempt.
fn roll(task: &Task) -> f64 {
    let digest = Sha256::new()
        .chain_update(task.evaluation_id.to_le_bytes())
        .chain_update(task.attempt.to_le_bytes())
        .finalize();
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(head) >> 11) as f64 / (1u64 << 53) as f64
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(evaluation_id: i64, attempt: u32) -> Task {
        Task {
            evaluation_id,
            prompt_id: Some(7),
            prompt_text: "best <laptops> & more?".to_owned(),
            attempt,
            max_attempts: 3,
            trace_context: Default::default(),
        }
    }

    #[test]
    fn the_answer_is_built_from_the_task_and_marked_synthetic() -> Result<(), String> {
        let captured = answer(&SyntheticOptions::default(), "claude", &task(42, 1))?;
        assert_eq!(captured.response_text, "synthetic answer from claude to: best <laptops> & more?");
        assert_eq!(captured.html, "<p>synthetic answer from claude to: best &lt;laptops&gt; &amp; more?</p>");
        assert!(captured.response_markdown.contains("(https://example.com/synthetic/claude/42/1)"));
        assert_eq!(captured.model.as_deref(), Some(SYNTHETIC));
        assert_eq!(captured.reading.finish_signals, [SYNTHETIC]);
        assert!((1..=2).contains(&captured.citations.len()));
        for (index, citation) in captured.citations.iter().enumerate() {
            assert_eq!(citation.position as usize, index + 1);
            assert_eq!(citation.domain, "example.com");
            assert!(citation.url.starts_with("https://example.com/synthetic/claude/42/"));
        }
        assert_eq!(captured.total, Duration::ZERO);
        Ok(())
    }

    #[test]
    fn the_same_task_gets_the_same_answer_and_tasks_vary_in_citations() -> Result<(), String> {
        let options = SyntheticOptions::default();
        assert_eq!(answer(&options, "chatgpt", &task(5, 1))?, answer(&options, "chatgpt", &task(5, 1))?);
        let counts: std::collections::BTreeSet<usize> = (1..50)
            .map(|id| answer(&options, "chatgpt", &task(id, 1)).map(|c| c.citations.len()))
            .collect::<Result<_, _>>()?;
        assert_eq!(counts.into_iter().collect::<Vec<_>>(), [1, 2]);
        Ok(())
    }

    #[test]
    fn the_fail_rate_fails_about_that_share_with_a_reportable_class() {
        let options = SyntheticOptions { fail_rate: 0.25, ..SyntheticOptions::default() };
        let failures: Vec<String> =
            (1..=4000).filter_map(|id| answer(&options, "perplexity", &task(id, 1)).err()).collect();
        assert!((800..1200).contains(&failures.len()), "{} of 4000 failed", failures.len());
        assert!(aap_proto::FAILURE_CLASSES.contains(&FAILURE_CLASS));
        assert!(failures.iter().all(|reason| reason.starts_with("assistant-error: ")), "{:?}", failures.first());
        // Another delivery of the same evaluation rolls again.
        assert!((1..=4000).any(|id| answer(&options, "perplexity", &task(id, 1)).is_err()
            && answer(&options, "perplexity", &task(id, 2)).is_ok()));
        let never = SyntheticOptions::default();
        assert!((1..=1000).all(|id| answer(&never, "perplexity", &task(id, 1)).is_ok()));
        let always = SyntheticOptions { fail_rate: 1.0, ..never };
        assert!((1..=1000).all(|id| answer(&always, "perplexity", &task(id, 1)).is_err()));
    }
}
