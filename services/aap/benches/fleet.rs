//! `just bench` (fleet part): what the platform and the bots add on top of the assistants.
//!
//! 1. Platform overhead per evaluation: a new prompt from Ask to its answer event, with a bot
//!    that answers the instant it gets the task (poll, submit), so what is measured is the
//!    platform's own path: embedding, pgvector lookup, scheduling, JetStream, claim, submit,
//!    results stream, ingest, notification. Also an exact (cached) hit.
//! 2. Bot overhead per evaluation, per assistant: `adapter.ask` in real Chromium against the
//!    simulator set to answer instantly (no first-token delay, no chunk delay, no pause), so the
//!    time is what the bot adds: a new conversation, typing, finish detection (its settle window
//!    included), extraction. Then the same prompts at the simulator's default pacing, for the
//!    share of the bot in a realistic answer.
//! 3. Resident memory per browser: RSS and PSS of the Chromium process tree after the asks.
//!
//! Medians, p95 and ratios are printed; nothing is asserted (machines are noisy). Environment:
//! `AAP_BENCH_ROUNDS` (default 15) asks per measurement.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use aap_bot::{Adapter, AnyAdapter, Browser, BrowserOptions};
use aap_proto::v1::answer_event::Event;
use aap_simulator::{Simulator, SimulatorConfig, Site};
use common::*;

fn rounds() -> usize {
    std::env::var("AAP_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(15).max(3)
}

/// Median and 95th percentile of `samples` (nearest rank).
fn stats(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let rank = |q: f64| samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    (rank(0.5), rank(0.95))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn report(what: &str, samples: &mut [Duration]) -> Duration {
    let (median, p95) = stats(samples);
    println!(
        "{what:<58} median {:>8.1} ms   p95 {:>8.1} ms   p95/median {:>5.2}   (n={})",
        ms(median),
        ms(p95),
        p95.as_secs_f64() / median.as_secs_f64().max(1e-9),
        samples.len()
    );
    median
}

/// Answers every task the moment it arrives, as a bot with no browser would.
fn instant_bot(app: &TestApp) -> tokio::task::JoinHandle<()> {
    let mut evaluations = app.evaluations();
    tokio::spawn(async move {
        loop {
            let reply = evaluations
                .poll(aap_proto::v1::PollRequest {
                    bot_id: "bench-bot".into(),
                    serves: Some(aap_proto::v1::Target { assistant: "chatgpt".into(), plan: "Plus".into() }),
                })
                .await;
            match reply.map(|r| r.into_inner().task) {
                Ok(Some(task)) => {
                    let request = aap_proto::v1::SubmitRequest {
                        evaluation_id: task.evaluation_id,
                        response_text: format!("answer to {}", task.prompt_text),
                        citations: vec![citation("https://example.org/a?utm_source=x", "Example")],
                        bot_id: "bench-bot".into(),
                        ..Default::default()
                    };
                    let _ = evaluations.submit(request).await;
                }
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    })
}

async fn platform_overhead() {
    println!("\n== platform overhead per evaluation (instant bot, real PostgreSQL + NATS) ==");
    let app = spawn_app().await;
    let bot = instant_bot(&app);
    let n = rounds();
    let mut new = Vec::new();
    let mut cached = Vec::new();
    // Distinct topics, so no prompt is a near neighbour of another (each is new).
    let topics = [
        "laptops",
        "espresso machines",
        "running shoes",
        "e-bikes",
        "standing desks",
        "headphones",
        "tents",
        "air purifiers",
        "robot vacuums",
        "monitors",
        "car seats",
        "mattresses",
        "blenders",
        "drones",
        "kayaks",
        "routers",
        "keyboards",
        "cameras",
        "smart watches",
        "office chairs",
        "guitars",
        "telescopes",
    ];
    for round in 0..=n {
        let prompt = format!("Which {} are best value in {}?", topics[round % topics.len()], 2000 + round);
        let started = Instant::now();
        let events = ask(&app, ask_text(&prompt, &["chatgpt"])).await;
        let took = started.elapsed();
        assert!(events.iter().any(|e| matches!(e, Event::Answer(_))), "answered: {events:?}");
        let started = Instant::now();
        let again = ask(&app, ask_text(&prompt, &["chatgpt"])).await;
        let took_cached = started.elapsed();
        assert!(again.iter().any(|e| matches!(e, Event::Cached(_))));
        if round > 0 {
            // Round 0 warms the model and the connections.
            new.push(took);
            cached.push(took_cached);
        }
    }
    bot.abort();
    let new_median = report("new prompt: Ask -> answer event", &mut new);
    let cached_median = report("exact hit: Ask -> cached answer -> completed", &mut cached);
    println!("ratio new / cached (medians): {:.1}", new_median.as_secs_f64() / cached_median.as_secs_f64().max(1e-9));
}

/// Sums VmRSS, Pss and USS (private pages: what the browser alone holds, whatever other
/// browsers run beside it) in kB over the browser processes (chromedriver, Chromium) descending
/// from `root`; other children (the test PostgreSQL and NATS) are left out. PSS shares a library
/// page among all its users, so it drops when other Chromiums run on the machine: measure it on
/// a quiet machine, and read USS as the floor.
fn tree_memory_kb(root: u32) -> (u64, u64, u64, usize) {
    let mut children: std::collections::HashMap<u32, Vec<u32>> = std::collections::HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // The parent pid is the 2nd field after the ")" that ends the command name.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
            if let Some(ppid) = ppid {
                children.entry(ppid).or_default().push(pid);
            }
        }
    }
    let field = |path: String, name: &str| -> u64 {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| {
                text.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    };
    let (mut rss, mut pss, mut uss, mut count) = (0, 0, 0, 0);
    let mut stack = children.get(&root).cloned().unwrap_or_default();
    while let Some(pid) = stack.pop() {
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if name.starts_with("chrom") {
            rss += field(format!("/proc/{pid}/status"), "VmRSS:");
            pss += field(format!("/proc/{pid}/smaps_rollup"), "Pss:");
            uss += field(format!("/proc/{pid}/smaps_rollup"), "Private_Clean:")
                + field(format!("/proc/{pid}/smaps_rollup"), "Private_Dirty:");
            count += 1;
        }
        stack.extend(children.get(&pid).cloned().unwrap_or_default());
    }
    (rss, pss, uss, count)
}

async fn asks(adapter: &AnyAdapter, browser: &Browser, site: Site, n: usize, tag: &str) -> Vec<Duration> {
    let mut samples = Vec::new();
    for round in 0..=n {
        let prompt = format!("Best {tag} option number {round} for a small team?");
        let started = Instant::now();
        match adapter.ask(browser.driver(), &prompt).await {
            Ok(_) if round > 0 => samples.push(started.elapsed()),
            Ok(_) => {}
            Err(error) => eprintln!("{site}: ask failed: {error}"),
        }
        // As the worker does between tasks, outside the measured ask.
        browser.trim_memory().await;
    }
    samples
}

async fn bot_overhead() -> anyhow::Result<()> {
    // Each browser ask takes seconds: at most 10 instant and 5 paced asks per assistant.
    let n = rounds().min(10);
    println!(
        "\n== bot overhead per evaluation (real Chromium, simulator; {n} instant + {} paced asks each) ==",
        n.min(5)
    );
    let instant = SimulatorConfig { first_token_delay_ms: 0, chunk_delay_ms: 0, pause_ms: 0, ..Default::default() };
    for site in Site::ALL {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sim = Simulator::start(listener, site, instant.clone()).await?;
        let adapter = AnyAdapter::load(site.id(), None, Some(&sim.base_url))?;
        let browser = Browser::launch(&BrowserOptions::default()).await?;
        let session = sim.create_session("bench").await;
        browser.load_session(&session.storage_state_json, &sim.base_url).await?;

        let mut overhead = asks(&adapter, &browser, site, n, "instant").await;
        sim.set_config(SimulatorConfig::default());
        let mut paced = asks(&adapter, &browser, site, n.min(5), "paced").await;
        let (rss, pss, uss, processes) = tree_memory_kb(std::process::id());
        browser.close().await;
        sim.shutdown().await;

        if overhead.is_empty() || paced.is_empty() {
            println!("{site}: no successful asks (see errors above)");
            continue;
        }
        let bot = report(&format!("{site}: bot overhead (assistant answers instantly)"), &mut overhead);
        println!("{site}: bot overhead target <= 1000 ms; median is {:.2} x the target", bot.as_secs_f64());
        let total = report(&format!("{site}: whole ask at default simulator pacing"), &mut paced);
        println!(
            "{site}: bot share of a default-paced answer (medians): {:.0}%",
            100.0 * bot.as_secs_f64() / total.as_secs_f64().max(1e-9)
        );
        println!(
            "{site}: browser memory: PSS {:.0} MB (target <= 400 MB), USS {:.0} MB, RSS {:.0} MB over {processes} \
             processes (chromedriver + Chromium)",
            pss as f64 * 1024.0 / 1e6,
            uss as f64 * 1024.0 / 1e6,
            rss as f64 * 1024.0 / 1e6
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter argument (anything else) picks parts by name.
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let wants = |part: &str| filter.is_empty() || filter.iter().any(|f| part.contains(f.as_str()));
    println!("fleet benchmark: {} rounds per measurement (AAP_BENCH_ROUNDS)", rounds());
    if wants("platform") {
        platform_overhead().await;
    }
    if wants("bot") {
        bot_overhead().await?;
    }
    Ok(())
}
