//! Embedding latency on the real model: median ms per single prompt and per prompt in batches
//! of 4, 8, 16 and 32 (a pass of the platform's micro-batching holds 2–14 prompts under 16
//! callers, up to 32 under more). Run with `cargo bench -p aap-embedding`; prints
//! `embed/single median_ms=…` and `embed/batch<N>_per_prompt median_ms=…` for each size.
//!
//! Under `cargo test --all-targets` (no `--bench` argument) each case runs once as a smoke test.

use std::time::Instant;

use aap_embedding::{Embedder, default_model_dir};
use anyhow::Context;

const BATCHES: [usize; 4] = [4, 8, 16, 32];

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

    let mut per_prompt = Vec::new();
    for size in BATCHES {
        let batch: Vec<&str> = PROMPTS.iter().copied().cycle().take(size).collect();
        let mut samples = Vec::with_capacity(batch_runs);
        for _ in 0..batch_runs * 32 / size {
            let start = Instant::now();
            let vectors = embedder.embed_batch(&batch)?;
            samples.push(start.elapsed().as_secs_f64() * 1e3 / size as f64);
            anyhow::ensure!(vectors.len() == size, "a batch of {size} returned {} vectors", vectors.len());
        }
        per_prompt.push((size, samples));
    }

    if !benchmarking {
        // One unwarmed run is no measurement: don't print numbers someone might record.
        println!("embed bench smoke run ok");
        return Ok(());
    }
    println!("embed/single median_ms={:.2}", median_ms(single));
    for (size, samples) in per_prompt {
        println!("embed/batch{size}_per_prompt median_ms={:.2}", median_ms(samples));
    }
    Ok(())
}
