//! Embedding latency on the real model: median ms per single prompt and per prompt in a batch
//! of 32. Run with `cargo bench -p aap-embedding`; prints `embed/single median_ms=…` and
//! `embed/batch32_per_prompt median_ms=…`.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) each case runs once as a smoke test.

use std::time::Instant;

use aap_embedding::{Embedder, default_model_dir};
use anyhow::Context;

const BATCH: usize = 32;

/// Varied, realistic prompt lengths (5–25 words) so padding in batches is representative.
const PROMPTS: [&str; 8] = [
    "What are the best laptops under $1,000?",
    "How do I reset my router password?",
    "Summarise the causes of the 2008 financial crisis in three bullet points.",
    "Which programming language should a beginner learn first, and why?",
    "Best hiking trails near Lisbon for a weekend with kids",
    "Compare the iPhone 17 and the Pixel 10 cameras in low light conditions, with sample scenarios.",
    "Is intermittent fasting safe for people with type 2 diabetes?",
    "translate 'good morning' to Japanese",
];

fn median_ms(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let (warmup, single_runs, batch_runs) = if benchmarking { (5, 100, 15) } else { (0, 1, 1) };

    let dir = default_model_dir();
    let embedder = Embedder::load(&dir).with_context(|| {
        format!(
            "loading the model from {} (install it with deploy/local/install.sh or set AAP_MODEL_DIR)",
            dir.display()
        )
    })?;

    for prompt in PROMPTS.iter().cycle().take(warmup) {
        embedder.embed(prompt)?;
    }

    let mut single = Vec::with_capacity(single_runs);
    for prompt in PROMPTS.iter().cycle().take(single_runs) {
        let start = Instant::now();
        embedder.embed(prompt)?;
        single.push(start.elapsed().as_secs_f64() * 1e3);
    }

    let batch: Vec<&str> = PROMPTS.iter().copied().cycle().take(BATCH).collect();
    let mut per_prompt = Vec::with_capacity(batch_runs);
    for _ in 0..batch_runs {
        let start = Instant::now();
        let vectors = embedder.embed_batch(&batch)?;
        per_prompt.push(start.elapsed().as_secs_f64() * 1e3 / BATCH as f64);
        anyhow::ensure!(vectors.len() == BATCH, "batch returned {} vectors", vectors.len());
    }

    if !benchmarking {
        // One unwarmed run is no measurement: don't print numbers someone might record.
        println!("embed bench smoke run ok");
        return Ok(());
    }
    println!("embed/single median_ms={:.2}", median_ms(single));
    println!("embed/batch{BATCH}_per_prompt median_ms={:.2}", median_ms(per_prompt));
    Ok(())
}
