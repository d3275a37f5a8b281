//! The verdict: what PostgreSQL holds for the run's prompts, against what was asked and what the
//! streams saw; the table; whether anything was lost or answered twice.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::drive::{AskOutcome, Final};

/// The run's evaluations as PostgreSQL has them.
pub struct Stored {
    /// Per evaluation: prompt text, assistant, status, failure reason, answers stored for it.
    pub evaluations: Vec<StoredEvaluation>,
    /// Answers stored per (prompt text, assistant).
    pub answers_per_target: HashMap<(String, String), i64>,
}

#[derive(Debug, sqlx::FromRow)]
pub struct StoredEvaluation {
    pub id: i64,
    pub text: String,
    pub assistant: String,
    pub status: String,
    pub failure_reason: Option<String>,
    /// Deliveries to bots (more than one: a killed bot's or replica's task went out again).
    pub attempts: i32,
    pub answers: i64,
}

/// Reads the run's prompts (their texts start with `prefix`) with evaluations and answers.
pub async fn stored(database_url: &str, prefix: &str) -> anyhow::Result<Stored> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(database_url).await?;
    let pattern = format!("{}%", prefix.replace('%', "\\%").replace('_', "\\_"));
    let evaluations: Vec<StoredEvaluation> = sqlx::query_as(
        "SELECT e.id, p.text, e.assistant, e.status, e.failure_reason, e.attempts,
                (SELECT count(*) FROM answers a WHERE a.evaluation_id = e.id) AS answers
         FROM evaluations e JOIN prompts p ON p.id = e.prompt_id
         WHERE p.text LIKE $1",
    )
    .bind(&pattern)
    .fetch_all(&pool)
    .await?;
    let per_target: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT p.text, a.assistant, count(*) FROM answers a JOIN prompts p ON p.id = a.prompt_id
         WHERE p.text LIKE $1 GROUP BY p.text, a.assistant",
    )
    .bind(&pattern)
    .fetch_all(&pool)
    .await?;
    pool.close().await;
    let answers_per_target = per_target.into_iter().map(|(text, assistant, n)| ((text, assistant), n)).collect();
    Ok(Stored { evaluations, answers_per_target })
}

/// What the ingest replicas logged about the answers they stored.
#[derive(Debug, Default)]
pub struct Ingests {
    /// Results stored (`answer ingested`, `stored: true`) per evaluation.
    pub stored: HashMap<i64, usize>,
    /// Results that came again and changed nothing (`stored: false`).
    pub repeats: usize,
}

/// Reads the `answer ingested` lines of the JSON logs of the processes that run the ingest.
pub fn ingests(logs: &[std::path::PathBuf]) -> anyhow::Result<Ingests> {
    let mut ingests = Ingests::default();
    for path in logs {
        let text = std::fs::read_to_string(path)?;
        for line in text.lines().filter(|line| line.contains("\"answer ingested\"")) {
            let Ok(json) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let Some(id) = json["span"]["evaluation_id"].as_i64() else { continue };
            if json["fields"]["stored"].as_bool() == Some(true) {
                *ingests.stored.entry(id).or_default() += 1;
            } else {
                ingests.repeats += 1;
            }
        }
    }
    Ok(ingests)
}

/// Counts of the run.
#[derive(Debug, Default)]
pub struct Verdict {
    pub asked: usize,
    pub evaluations: usize,
    /// Evaluations delivered to bots more than once.
    pub redelivered: usize,
    pub answered: usize,
    pub failed: BTreeMap<String, usize>,
    /// Asked targets with no terminal evaluation (none at all, or one still in flight), plus
    /// evaluations marked answered with no stored answer.
    pub lost: usize,
    pub lost_examples: Vec<String>,
    /// Targets with more than one stored answer, evaluations with more than one.
    pub duplicated: usize,
    pub duplicate_events: usize,
    /// Evaluations an ingest stored more than once.
    pub duplicate_ingests: usize,
    /// Results delivered to an ingest again, which changed nothing.
    pub repeated_results: usize,
    /// Evaluations in PostgreSQL not answered nor failed at the end.
    pub not_terminal: usize,
    pub wrong_answers: usize,
    /// Final events a stream sent that PostgreSQL does not hold (answered there, failed here).
    pub disagreements: usize,
    pub streams_completed: usize,
    pub streams_resumed: usize,
    pub asks_refused: usize,
    /// Streams that reached `completed` without a final event for every target.
    pub streams_short: usize,
    /// Asks that never reached `completed` within their time-out.
    pub streams_stuck: usize,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    pub per_second: f64,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.duplicate_events == 0
            && self.duplicate_ingests == 0
            && self.not_terminal == 0
            && self.wrong_answers == 0
            && self.disagreements == 0
            && self.streams_short == 0
            && self.streams_stuck == 0
    }
}

/// Compares what was asked and what the streams saw with what PostgreSQL holds.
pub fn verdict(outcomes: &[AskOutcome], stored: &Stored, ingests: &Ingests, driving_started: Instant) -> Verdict {
    let mut verdict = Verdict {
        evaluations: stored.evaluations.len(),
        duplicate_ingests: ingests.stored.values().filter(|n| **n > 1).count(),
        repeated_results: ingests.repeats,
        ..Verdict::default()
    };
    let mut by_target: HashMap<(&str, &str), Vec<&StoredEvaluation>> = HashMap::new();
    for evaluation in &stored.evaluations {
        by_target.entry((evaluation.text.as_str(), evaluation.assistant.as_str())).or_default().push(evaluation);
        verdict.redelivered += usize::from(evaluation.attempts > 1);
        match evaluation.status.as_str() {
            "answered" => {
                verdict.answered += 1;
                if evaluation.answers != 1 {
                    verdict.lost += usize::from(evaluation.answers == 0);
                    verdict.lost_examples.push(format!(
                        "evaluation {} answered with {} stored answers",
                        evaluation.id, evaluation.answers
                    ));
                }
            }
            "failed" => {
                let reason = evaluation.failure_reason.clone().unwrap_or_default();
                *verdict.failed.entry(reason_class(&reason)).or_default() += 1;
            }
            status => {
                verdict.not_terminal += 1;
                verdict.lost_examples.push(format!("evaluation {} still {status}", evaluation.id));
            }
        }
        if evaluation.answers > 1 {
            verdict.duplicated += 1;
        }
    }
    for ((text, assistant), count) in &stored.answers_per_target {
        if *count > 1 {
            verdict.duplicated += 1;
            verdict.lost_examples.push(format!("{count} answers stored for {assistant} on {text:?}"));
        }
    }
    let statuses: HashMap<i64, &str> = stored.evaluations.iter().map(|e| (e.id, e.status.as_str())).collect();
    let mut latencies = Vec::new();
    let mut last_final = driving_started;
    for outcome in outcomes {
        for target in &outcome.targets {
            verdict.asked += 1;
            let evaluations = by_target.get(&(outcome.text.as_str(), target.as_str()));
            let terminal =
                evaluations.is_some_and(|all| all.iter().any(|e| matches!(e.status.as_str(), "answered" | "failed")));
            if !terminal {
                verdict.lost += 1;
                let state = evaluations
                    .map(|all| all.iter().map(|e| format!("{} {}", e.id, e.status)).collect::<Vec<_>>().join(", "))
                    .unwrap_or_else(|| "no evaluation".to_owned());
                verdict.lost_examples.push(format!("{target} on {:?}: {state}", outcome.text));
            }
        }
        verdict.duplicate_events += outcome.duplicate_events as usize;
        verdict.wrong_answers += outcome.wrong_answers as usize;
        verdict.streams_resumed += outcome.broken as usize;
        verdict.asks_refused += outcome.refused as usize;
        if outcome.completed {
            verdict.streams_completed += 1;
            if !outcome.missing_finals.is_empty() {
                verdict.streams_short += 1;
                verdict
                    .lost_examples
                    .push(format!("stream of {:?} completed without {:?}", outcome.text, outcome.missing_finals));
            }
        } else {
            verdict.streams_stuck += 1;
            verdict.lost_examples.push(format!(
                "{:?}: {}",
                outcome.text,
                outcome.gave_up.as_deref().unwrap_or("stuck")
            ));
        }
        latencies.extend(&outcome.latencies);
        if let Some(at) = outcome.finished_at {
            last_final = last_final.max(at);
        }
        for (id, (assistant, seen)) in &outcome.finals {
            let status = statuses.get(id).copied().unwrap_or("missing");
            let agrees = match seen {
                Final::Answered => status == "answered",
                Final::Failed => status == "failed",
            };
            if !agrees {
                verdict.disagreements += 1;
                verdict
                    .lost_examples
                    .push(format!("evaluation {id} ({assistant}): stream said {seen:?}, database {status}"));
            }
        }
    }
    latencies.sort();
    verdict.p50 = percentile(&latencies, 0.50);
    verdict.p99 = percentile(&latencies, 0.99);
    let seconds = last_final.duration_since(driving_started).as_secs_f64();
    let terminal = verdict.answered + verdict.failed.values().sum::<usize>();
    verdict.per_second = if seconds > 0.0 { terminal as f64 / seconds } else { 0.0 };
    verdict
}

/// The failure's class: the reason up to its first colon or parenthesis.
fn reason_class(reason: &str) -> String {
    let end = reason.find([':', '(']).unwrap_or(reason.len());
    let class = reason[..end].trim();
    if class.is_empty() { "(no reason)".to_owned() } else { class.to_owned() }
}

fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[index])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&values, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&values, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn failure_reasons_group_by_their_class() {
        assert_eq!(reason_class("assistant-error: synthetic failure (fail rate 0.02)"), "assistant-error");
        assert_eq!(reason_class("no bot took it within 86400 s"), "no bot took it within 86400 s");
        assert_eq!(reason_class(""), "(no reason)");
    }

    fn evaluation(id: i64, assistant: &str, status: &str, answers: i64) -> StoredEvaluation {
        StoredEvaluation {
            id,
            text: "p".into(),
            assistant: assistant.into(),
            status: status.into(),
            failure_reason: None,
            attempts: 1,
            answers,
        }
    }

    #[test]
    fn a_target_without_a_terminal_evaluation_is_lost_and_a_second_answer_is_a_duplicate() {
        let outcome = AskOutcome {
            text: "p".into(),
            targets: vec!["chatgpt".into(), "claude".into(), "perplexity".into()],
            completed: true,
            ..AskOutcome::default()
        };
        let stored = Stored {
            evaluations: vec![evaluation(1, "chatgpt", "answered", 1), evaluation(2, "claude", "claimed", 0)],
            answers_per_target: HashMap::from([(("p".to_owned(), "chatgpt".to_owned()), 2)]),
        };
        let ingests = Ingests { stored: HashMap::from([(1, 2)]), repeats: 1 };
        let verdict = verdict(&[outcome], &stored, &ingests, Instant::now());
        assert_eq!((verdict.asked, verdict.evaluations, verdict.answered), (3, 2, 1));
        assert_eq!((verdict.not_terminal, verdict.duplicate_ingests, verdict.repeated_results), (1, 1, 1));
        assert_eq!(verdict.lost, 2, "claude in flight, perplexity never created: {:?}", verdict.lost_examples);
        assert_eq!(verdict.duplicated, 1);
        assert!(!verdict.ok());
    }
}
