//! `aap-chaos`: a chaos run that loses nothing.
//!
//! Starts, on this machine, a 3-node NATS cluster, PostgreSQL, two replicas of every service
//! and a fleet of synthetic bots; drives N evaluations through Ask streams while it SIGKILLs
//! random bots every few seconds, kills and restarts one NATS node, restarts PostgreSQL and
//! kills one replica of each service (both replicas in turn); then checks in PostgreSQL that
//! every evaluation is terminal, none is lost and none answered twice, and that every stream
//! that stayed open got every target's final event. Prints the counts and exits non-zero on
//! any loss. `just chaos` runs it; docs/operations.md says how to read the table.

mod check;
mod drive;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use rand::Rng as _;
use tokio::sync::{Mutex, watch};

use aap_chaos::proc;
use aap_chaos::stack::{self, Bot, Database, NatsCluster, Replica};

/// Runs the platform on this machine under chaos and proves that no evaluation is lost or
/// answered twice.
#[derive(Debug, Parser)]
#[command(name = "aap-chaos", version, about, long_about = None)]
struct Args {
    /// Evaluations to drive (Asks × targets per Ask).
    #[arg(default_value_t = 5000)]
    evaluations: usize,
    /// Assistants each Ask targets.
    #[arg(long, default_value_t = 2)]
    targets_per_ask: usize,
    /// Asks open at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Synthetic bot processes (spread over the assistants and the evaluations replicas).
    #[arg(long, default_value_t = 8)]
    bots: usize,
    /// Workers (Claim streams) per bot process.
    #[arg(long, default_value_t = 4)]
    bot_concurrency: u32,
    /// Share of deliveries the synthetic bots fail (class assistant-error), so failures flow too.
    #[arg(long, default_value_t = 0.02)]
    fail_rate: f64,
    /// Milliseconds each synthetic answer takes.
    #[arg(long, default_value_t = 0)]
    bot_delay_ms: u64,
    /// Seconds between two bot kills (SIGKILL, restarted a second later).
    #[arg(long, default_value_t = 3.0)]
    bot_kill_every_secs: f64,
    /// The services' claim TTL: how long a task held by a killed replica's stream waits to be
    /// delivered again.
    #[arg(long, default_value_t = 10)]
    claim_ttl_secs: u64,
    /// Attempts an evaluation gets before it fails.
    #[arg(long, default_value_t = 5)]
    max_attempts: u32,
    /// How long one Ask (with its resumes) may take before it counts as stuck.
    #[arg(long, default_value_t = 600)]
    ask_timeout_secs: u64,
    /// Directory for the logs of every process and the data of PostgreSQL and NATS
    /// (default: a new /tmp/aap-chaos-<time>).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// The big events to cause, comma-separated, from `nats` (kill and restart one node),
    /// `postgres` (restart), `replicas` (kill one replica of each service, then the other),
    /// `rolling` (a rolling restart: every service process in turn stopped with SIGTERM, as an
    /// orchestrator does, started again and waited for before the next; then every bot).
    #[arg(long, value_delimiter = ',', default_value = "nats,postgres,replicas,rolling")]
    events: Vec<String>,
    /// Seconds a process stopped with SIGTERM in the rolling restart has before it is killed
    /// (Kubernetes' default terminationGracePeriodSeconds); one that needs it fails the run.
    #[arg(long, default_value_t = 30)]
    grace_secs: u64,
    /// Directory of the `aap` and `aap-bot` binaries (default: this binary's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

/// Progress fractions of the Asks at which the big events happen, in this order.
const EVENTS: &[(f64, Event)] = &[
    (0.15, Event::NatsNode),
    (0.35, Event::Postgres),
    (0.55, Event::Replicas(0)),
    (0.75, Event::Replicas(1)),
    (0.80, Event::Rolling),
];

#[derive(Debug, Clone, Copy)]
enum Event {
    /// SIGKILL one NATS node, restart it 5 s later.
    NatsNode,
    /// Stop PostgreSQL, start it again on the same data dir 2 s later.
    Postgres,
    /// SIGKILL replica N of every service, restart them 3 s later.
    Replicas(usize),
    /// Every service process in turn: SIGTERM, wait for it to exit, start it again, wait until
    /// it serves; then every bot process in turn.
    Rolling,
}

impl Event {
    /// Its name in `--events`.
    fn name(self) -> &'static str {
        match self {
            Event::NatsNode => "nats",
            Event::Postgres => "postgres",
            Event::Replicas(_) => "replicas",
            Event::Rolling => "rolling",
        }
    }
}

/// Everything the run started, shared by the chaos tasks.
struct Stack {
    nats: Mutex<NatsCluster>,
    database: Mutex<Database>,
    replicas: Vec<Mutex<Replica>>,
    bots: Vec<Mutex<Bot>>,
    kills: std::sync::Mutex<BTreeMap<&'static str, u32>>,
    /// The rolling restart's stops: how long each took, and whether it had to be killed.
    graceful_stops: std::sync::Mutex<Vec<(Duration, bool)>>,
    crashes: std::sync::Mutex<BTreeMap<String, u32>>,
    log: std::sync::Mutex<Vec<String>>,
    started: Instant,
}

impl Stack {
    fn killed(&self, kind: &'static str) {
        *self.kills.lock().unwrap_or_else(|p| p.into_inner()).entry(kind).or_default() += 1;
    }

    /// Stops `proc` with SIGTERM (SIGKILL past `grace`), counting and noting how it went.
    async fn stop_gracefully(&self, proc: &mut proc::Proc, grace: Duration) {
        let (took, killed) = proc.terminate(grace).await;
        self.killed("graceful restarts");
        self.graceful_stops.lock().unwrap_or_else(|p| p.into_inner()).push((took, killed));
        let how = if killed { "did not exit: SIGKILLed" } else { "exited" };
        self.note(format!("SIGTERM {}: {how} after {:.1} s", proc.name, took.as_secs_f64()));
    }

    /// Whether every process the rolling restart stopped exited within its grace.
    fn stops_within_grace(&self) -> bool {
        self.graceful_stops.lock().unwrap_or_else(|p| p.into_inner()).iter().all(|(_, killed)| !killed)
    }

    fn note(&self, line: String) {
        let line = format!("{:>7.1}s  {line}", self.started.elapsed().as_secs_f64());
        tracing::info!("{line}");
        self.log.lock().unwrap_or_else(|p| p.into_inner()).push(line);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let run_dir = aap_chaos::run_dir(args.run_dir.as_deref(), "aap-chaos")?;
    let result = run(&args, &run_dir).await;
    println!("run dir (logs of every process): {}", run_dir.display());
    match result {
        Ok(true) => Ok(()),
        Ok(false) => std::process::exit(1),
        Err(error) => Err(error),
    }
}

/// The whole run; `Ok(false)` when something was lost or answered twice.
async fn run(args: &Args, run_dir: &Path) -> anyhow::Result<bool> {
    let bin_dir = aap_chaos::bin_dir(args.bin_dir.as_deref())?;
    let aap = aap_chaos::binary(&bin_dir, "aap")?;
    let aap_bot = aap_chaos::binary(&bin_dir, "aap-bot")?;
    let features = stack::ServeFeatures::detect(&aap).await?;
    let secrets = stack::Secrets::generate();
    let started = Instant::now();

    let mut nats = NatsCluster::new(run_dir)?;
    nats.start()?;
    nats.wait_ready(Duration::from_secs(60)).await?;
    let database = Database::start(run_dir).await?;
    let database_url = database.url()?;
    tracing::info!(nats = nats.urls(), "nats cluster and postgres ready");

    let settings = stack::ServeSettings {
        aap: &aap,
        run_dir,
        database_url: database_url.clone(),
        nats_urls: nats.urls(),
        secrets: &secrets,
        claim_ttl_secs: args.claim_ttl_secs,
        max_attempts: args.max_attempts,
        features: &features,
        stream_replicas: 3,
        log_filter: "info",
        max_streams_per_caller: None,
    };
    let mut replicas = stack::replicas(&settings)?;
    for replica in &mut replicas {
        replica.proc.start()?;
    }
    for replica in &mut replicas {
        stack::wait_serving(replica, Duration::from_secs(180)).await?;
    }
    let answers_urls: Vec<String> = replicas.iter().filter(|r| r.answers()).map(Replica::url).collect();
    let evaluation_urls: Vec<String> = replicas.iter().filter(|r| r.evaluations()).map(Replica::url).collect();
    let fleet = stack::FleetSettings {
        aap_bot: &aap_bot,
        run_dir,
        bot_token: &secrets.bot,
        bots: args.bots,
        concurrency: args.bot_concurrency,
        fail_rate: args.fail_rate,
        delay_ms: args.bot_delay_ms,
    };
    let mut bots = stack::fleet(&fleet, &evaluation_urls);
    for bot in &mut bots {
        bot.proc.start()?;
    }
    let layout = if features.split { "one service per process" } else { "all services per process" };
    let streams = if features.stream_replicas { "R3 streams" } else { "R1 streams (no --nats-stream-replicas yet)" };
    println!(
        "started in {:.1}s: 3 NATS nodes ({streams}), PostgreSQL, {} service replicas ({layout}), {} synthetic bots",
        started.elapsed().as_secs_f64(),
        replicas.len(),
        bots.len()
    );

    let stack = Arc::new(Stack {
        nats: Mutex::new(nats),
        database: Mutex::new(database),
        replicas: replicas.into_iter().map(Mutex::new).collect(),
        bots: bots.into_iter().map(Mutex::new).collect(),
        kills: Default::default(),
        graceful_stops: Default::default(),
        crashes: Default::default(),
        log: Default::default(),
        started: Instant::now(),
    });
    let done = Arc::new(AtomicBool::new(false));
    let supervisor = tokio::spawn(supervise(stack.clone(), done.clone()));
    let bot_killer = tokio::spawn(kill_bots(stack.clone(), done.clone(), args.bot_kill_every_secs));

    let asks = args.evaluations.div_ceil(args.targets_per_ask.max(1));
    let plan = Arc::new(drive::Plan {
        prefix: format!("chaos {}", chrono::Utc::now().format("%H%M%S")),
        asks,
        targets_per_ask: args.targets_per_ask.clamp(1, stack::ASSISTANTS.len()),
        concurrency: args.concurrency.max(1),
        ask_timeout: Duration::from_secs(args.ask_timeout_secs),
    });
    let started_asks = Arc::new(AtomicUsize::new(0));
    let (gate, gate_rx) = watch::channel(0usize);
    let events: Vec<(f64, Event)> =
        EVENTS.iter().copied().filter(|(_, event)| args.events.contains(&event.name().to_owned())).collect();
    let gate_at: Vec<usize> = events.iter().map(|(at, _)| (asks as f64 * at) as usize).collect();
    let grace = Duration::from_secs(args.grace_secs);
    let chaos = tokio::spawn(chaos(stack.clone(), gate, events, started_asks.clone(), gate_at.clone(), grace));

    let driving_started = Instant::now();
    let outcomes = drive::run(plan.clone(), answers_urls, &secrets.customer, started_asks, gate_rx, gate_at).await?;
    let driving = driving_started.elapsed();
    done.store(true, Ordering::Relaxed);
    chaos.await??;
    bot_killer.await?;
    supervisor.await?;

    let database_url = stack.database.lock().await.url()?;
    let stored = check::stored(&database_url, &plan.prefix).await?;
    let mut ingest_logs = Vec::new();
    for replica in &stack.replicas {
        let replica = replica.lock().await;
        if matches!(replica.service.as_str(), "ingest" | "all") {
            ingest_logs.push(replica.proc.log().to_path_buf());
        }
    }
    let ingests = check::ingests(&ingest_logs)?;
    let verdict = check::verdict(&outcomes, &stored, &ingests, driving_started);
    report(args, asks, &verdict, &stack, driving);

    for bot in &stack.bots {
        bot.lock().await.proc.kill().await;
    }
    for replica in &stack.replicas {
        replica.lock().await.proc.kill().await;
    }
    for node in &mut stack.nats.lock().await.nodes {
        node.proc.kill().await;
    }
    stack.database.lock().await.stop().await?;
    Ok(verdict.ok() && stack.stops_within_grace())
}

/// Restarts whatever ended by itself (a crash), as an orchestrator would, and counts it.
async fn supervise(stack: Arc<Stack>, done: Arc<AtomicBool>) {
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut replicas = Vec::new();
        for replica in &stack.replicas {
            if let Ok(guard) = replica.try_lock() {
                replicas.push(guard);
            }
        }
        let mut bots = Vec::new();
        for bot in &stack.bots {
            if let Ok(guard) = bot.try_lock() {
                bots.push(guard);
            }
        }
        let mut nats = stack.nats.try_lock().ok();
        let mut all: Vec<&mut proc::Proc> = replicas.iter_mut().map(|r| &mut r.proc).collect();
        all.extend(bots.iter_mut().map(|b| &mut b.proc));
        if let Some(nats) = nats.as_mut() {
            all.extend(nats.nodes.iter_mut().map(|n| &mut n.proc));
        }
        for proc in all {
            if let Some(status) = proc.exited() {
                stack.note(format!("{} exited by itself ({status}); restarting it", proc.name));
                *stack.crashes.lock().unwrap_or_else(|p| p.into_inner()).entry(proc.name.clone()).or_default() += 1;
                if let Err(error) = proc.start() {
                    stack.note(format!("cannot restart {}: {error:#}", proc.name));
                }
            }
        }
    }
}

/// SIGKILLs a random bot every `every_secs` and starts it again a second later.
async fn kill_bots(stack: Arc<Stack>, done: Arc<AtomicBool>, every_secs: f64) {
    if stack.bots.is_empty() || every_secs <= 0.0 {
        return;
    }
    let every = Duration::from_secs_f64(every_secs);
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        let index = rand::rng().random_range(0..stack.bots.len());
        let mut bot = stack.bots[index].lock().await;
        bot.proc.kill().await;
        stack.killed("bots");
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Err(error) = bot.proc.start() {
            stack.note(format!("cannot restart {}: {error:#}", bot.proc.name));
        }
    }
}

/// The big events, each once the Asks reach its share; `gate` tells the driver each has begun,
/// so every event happens under load.
async fn chaos(
    stack: Arc<Stack>,
    gate: watch::Sender<usize>,
    events: Vec<(f64, Event)>,
    started_asks: Arc<AtomicUsize>,
    gate_at: Vec<usize>,
    grace: Duration,
) -> anyhow::Result<()> {
    for (index, (_, event)) in events.into_iter().enumerate() {
        // The Asks before this event's share run first (they are held at it until it begins).
        while started_asks.load(Ordering::Relaxed) < gate_at[index] {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        match event {
            Event::NatsNode => {
                let mut nats = stack.nats.lock().await;
                let node = rand::rng().random_range(0..nats.nodes.len());
                nats.nodes[node].proc.kill().await;
                stack.killed("nats nodes");
                stack.note(format!("SIGKILL {}", nats.nodes[node].proc.name));
                gate.send_replace(index + 1);
                tokio::time::sleep(Duration::from_secs(5)).await;
                nats.nodes[node].proc.start()?;
                stack.note(format!("{} started again", nats.nodes[node].proc.name));
            }
            Event::Postgres => {
                let mut database = stack.database.lock().await;
                stack.note("stopping postgres".to_owned());
                gate.send_replace(index + 1);
                database.restart(Duration::from_secs(2)).await?;
                stack.killed("postgres restarts");
                stack.note("postgres started again on the same data dir".to_owned());
            }
            Event::Replicas(which) => {
                // Replica `which` of each service: every other entry, as they were created in pairs.
                let chosen: Vec<&Mutex<Replica>> = stack.replicas.iter().skip(which).step_by(2).collect();
                let mut guards = Vec::new();
                for replica in chosen {
                    let mut replica = replica.lock().await;
                    replica.proc.kill().await;
                    stack.killed("service replicas");
                    stack.note(format!("SIGKILL {}", replica.proc.name));
                    guards.push(replica);
                }
                gate.send_replace(index + 1);
                tokio::time::sleep(Duration::from_secs(3)).await;
                for replica in &mut guards {
                    replica.proc.start()?;
                }
                for replica in &mut guards {
                    stack::wait_serving(replica, Duration::from_secs(180)).await?;
                    stack.note(format!("{} serving again", replica.proc.name));
                }
            }
            Event::Rolling => {
                stack.note("rolling restart: each service process in turn, SIGTERM".to_owned());
                gate.send_replace(index + 1);
                for replica in &stack.replicas {
                    let mut replica = replica.lock().await;
                    stack.stop_gracefully(&mut replica.proc, grace).await;
                    replica.proc.start()?;
                    stack::wait_serving(&mut replica, Duration::from_secs(180)).await?;
                    stack.note(format!("{} serving again", replica.proc.name));
                }
                // Then the bots, as a fleet's rollout does: each finishes or hands back what it
                // holds before it exits.
                for bot in &stack.bots {
                    let mut bot = bot.lock().await;
                    stack.stop_gracefully(&mut bot.proc, grace).await;
                    bot.proc.start()?;
                }
            }
        }
    }
    Ok(())
}

fn report(args: &Args, asks: usize, verdict: &check::Verdict, stack: &Stack, driving: Duration) {
    let ms = |d: Option<Duration>| d.map_or_else(|| "-".to_owned(), |d| format!("{} ms", d.as_millis()));
    let kills = stack.kills.lock().unwrap_or_else(|p| p.into_inner());
    let crashes = stack.crashes.lock().unwrap_or_else(|p| p.into_inner());
    println!();
    println!("chaos events:");
    for line in stack.log.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        println!("  {line}");
    }
    println!();
    println!("chaos run: {} evaluations asked ({asks} Asks x {} targets)", verdict.asked, args.targets_per_ask);
    let row = |name: &str, value: String| println!("  {name:<34} {value}");
    row("evaluations stored", verdict.evaluations.to_string());
    row("delivered to bots more than once", verdict.redelivered.to_string());
    row("answered", verdict.answered.to_string());
    row("failed", verdict.failed.values().sum::<usize>().to_string());
    for (reason, count) in &verdict.failed {
        row(&format!("  {reason}"), count.to_string());
    }
    row("LOST (asked, never answered/failed)", verdict.lost.to_string());
    row("DUPLICATED (answers stored twice)", verdict.duplicated.to_string());
    row("evaluations not terminal", verdict.not_terminal.to_string());
    row("duplicate answer events", verdict.duplicate_events.to_string());
    row("duplicate ingests (stored twice)", verdict.duplicate_ingests.to_string());
    row("results redelivered, no change", verdict.repeated_results.to_string());
    row("wrong answers (text of another)", verdict.wrong_answers.to_string());
    row("stream/database disagreements", verdict.disagreements.to_string());
    row("streams completed", verdict.streams_completed.to_string());
    row("streams short of a target's final", verdict.streams_short.to_string());
    row("streams stuck (no completed)", verdict.streams_stuck.to_string());
    row("streams broken, resumed by Watch", verdict.streams_resumed.to_string());
    row("Ask/Watch calls refused, retried", verdict.asks_refused.to_string());
    let kills = kills.iter().map(|(kind, n)| format!("{kind} {n}")).collect::<Vec<_>>().join(", ");
    row("kills", kills);
    let crashes = if crashes.is_empty() {
        "0".to_owned()
    } else {
        crashes.iter().map(|(name, n)| format!("{name} {n}")).collect::<Vec<_>>().join(", ")
    };
    row("unplanned exits (restarted)", crashes);
    let stops = stack.graceful_stops.lock().unwrap_or_else(|p| p.into_inner());
    if !stops.is_empty() {
        let slowest = stops.iter().map(|(took, _)| *took).max().unwrap_or_default();
        let killed = stops.iter().filter(|(_, killed)| *killed).count();
        row(
            "SIGTERM stops: slowest, past grace",
            format!(
                "{} stops, slowest {:.1} s, {killed} past {} s (SIGKILLed)",
                stops.len(),
                slowest.as_secs_f64(),
                args.grace_secs
            ),
        );
    }
    row("evaluations/s held", format!("{:.1} (driving took {:.1} s)", verdict.per_second, driving.as_secs_f64()));
    row("Ask to answer p50 / p99", format!("{} / {}", ms(verdict.p50), ms(verdict.p99)));
    for example in verdict.lost_examples.iter().take(20) {
        println!("  ! {example}");
    }
    drop(stops);
    if !stack.stops_within_grace() {
        println!("RESULT: FAILED: a service process did not stop within its grace after SIGTERM");
    } else if verdict.ok() {
        println!("RESULT: OK: every evaluation terminal, none lost, none answered twice");
    } else {
        println!("RESULT: FAILED: see the counts and examples above");
    }
}
