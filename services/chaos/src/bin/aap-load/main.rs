//! `aap-load`: the platform at its limits, each figure beside the limit it is bound by, measured
//! in the same run on the same machine.
//!
//! Starts PostgreSQL (durable: fsync on), one NATS server with JetStream, one `aap serve` with
//! every service and synthetic bots, then drives them with real gRPC clients over TCP, each
//! caller on a connection of its own:
//! - exact hits (an answered prompt asked again) beside `pgbench -S` at the same client count on
//!   the same PostgreSQL;
//! - similar prompts (embedding and pgvector) beside the embedding model's own single and
//!   batched speed;
//! - idle Watch streams: the platform's CPU and memory while thousands wait;
//! - the pipeline (Ask, queue, synthetic bot, ingest, stream) beside JetStream's publish rate;
//!
//! and prints one table. `just bench load` runs it; docs/performance.md says how to read it.
//! `--parts soak` (`just soak`) runs a steady mix of all of them for minutes or hours instead,
//! sampling what each process holds (docs/operations.md, "Soak").

mod lean;
mod limits;
mod scenarios;
mod soak;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aap_chaos::stack::{self, Database, Replica};
use aap_platform::local::{Nats, NatsOptions};
use anyhow::{Context as _, bail};
use clap::Parser;

use crate::scenarios::Bearer;
use crate::stats::ms;

/// Measures the platform at its limits and prints each figure beside its limit.
#[derive(Debug, Parser)]
#[command(
    name = "aap-load",
    version,
    about = "The load benchmark (just bench load): the platform on this machine, real gRPC clients over TCP, each figure beside its limit measured in the same run (docs/performance.md)",
    long_about = None
)]
struct Args {
    /// Seconds each measurement runs, from 1 to 3,600.
    #[arg(long, default_value_t = 10.0, value_parser = measurement_seconds)]
    seconds: f64,
    /// The CI run: 2 s measurements, 1,000 watches, fewer callers, one trial (overrides the
    /// others).
    #[arg(long)]
    short: bool,
    /// What to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "limits,watch,exact,similar,pipeline")]
    parts: Vec<String>,
    /// Caller counts of the exact-hit measurement.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    exact_callers: Vec<usize>,
    /// Connections that the exact-hit callers also share, in a second row for each caller
    /// count above it, as a gRPC client's calls share a channel (0: a connection per caller
    /// only).
    #[arg(long, default_value_t = 4)]
    exact_connections: usize,
    /// Caller counts of the similar-prompt measurement.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    similar_callers: Vec<usize>,
    /// Trials of the exact-hit and similar rows: each measures the platform and the row's limit
    /// (`pgbench -S`; the model alone) one after the other, in turns; a row gives the medians,
    /// and the ratio's median with its range.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=9))]
    trials: u32,
    /// Idle Watch streams.
    #[arg(long, default_value_t = 10_000)]
    watches: usize,
    /// Customers asking new prompts (of all four assistants) in the pipeline measurement.
    #[arg(long, default_value_t = 64)]
    pipeline_callers: usize,
    /// What the pipeline's Asks ask, comma-separated: `new` prompts (each embedded) and
    /// `stored` ones (asked by id: the pipeline without the model).
    #[arg(long, value_delimiter = ',', default_value = "new,stored", value_parser = ["new", "stored"])]
    pipeline_prompts: Vec<String>,
    /// The paced pipeline (stored prompts, open loop) at this many evaluations a second; 0: the
    /// target, 1,000/s, when the closed loop with stored prompts reached it in the same run, else
    /// half the closed loop's rate (250 when it did not run).
    #[arg(long, default_value_t = 0.0, value_parser = paced_rate)]
    paced_rate: f64,
    /// Synthetic bot processes (one per assistant in turn).
    #[arg(long, default_value_t = 4)]
    bots: usize,
    /// Claim streams per bot process.
    #[arg(long, default_value_t = 32)]
    bot_concurrency: u32,
    /// Directory for the logs and data, and the paced run's paced-timeline.tsv (where in the
    /// run its slow answers were) (default: a new /tmp/aap-load-<time>, removed after a run
    /// that succeeded).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Directory of the `aap` and `aap-bot` binaries (default: this binary's).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Also write the table (markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The soak's length in minutes (`--parts soak`), from 1 to 1,440.
    #[arg(long, default_value_t = 30.0, value_parser = soak_minutes)]
    soak_minutes: f64,
    /// The soak's new prompts, in evaluations a second (an Ask of all four assistants is four).
    #[arg(long, default_value_t = 100.0, value_parser = soak_rate)]
    soak_rate: f64,
    /// The soak's exact hits (a prompt answered earlier in the soak asked again), Asks a second.
    #[arg(long, default_value_t = 200.0, value_parser = soak_rate)]
    soak_exact_rate: f64,
    /// The soak's similar prompts (embedded and searched, suggestions streamed), Asks a second.
    #[arg(long, default_value_t = 2.0, value_parser = soak_rate)]
    soak_similar_rate: f64,
    /// Watch streams the soak opens at each sample on a prompt nothing answers, and cancels at
    /// the next (up to 10,000, what one caller may hold open).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(0..=10_000))]
    soak_watches: u16,
    /// Seconds between two samples of the soak.
    #[arg(long, default_value_t = 10.0, value_parser = measurement_seconds)]
    soak_sample_secs: f64,
    /// Only measure the embedding model, with this many threads a pass (set in the
    /// environment), and print one line: how the limits run each configuration of the model.
    #[arg(long, hide = true)]
    model_threads: Option<usize>,
}

impl Args {
    fn apply_short(&mut self) {
        if self.short {
            self.seconds = 2.0;
            self.watches = self.watches.min(1_000);
            self.exact_callers = vec![1, 16];
            self.trials = 1;
            self.similar_callers = vec![1, 4];
            self.pipeline_callers = self.pipeline_callers.min(16);
            self.bot_concurrency = self.bot_concurrency.min(8);
        }
    }

    fn wants(&self, part: &str) -> bool {
        self.parts.iter().any(|p| p == part)
    }
}

/// `trials` rounds of `measure` (the platform) and `limit` (what bounds it), one after the other,
/// `limit` first in every other round: a slow minute of the machine weighs on both sides of a
/// ratio. Returns each round's measurements and limits, in round order.
async fn in_turns<M, L>(
    trials: u32,
    mut measure: impl AsyncFnMut(u32) -> anyhow::Result<M>,
    mut limit: impl AsyncFnMut() -> anyhow::Result<L>,
) -> anyhow::Result<(Vec<M>, Vec<L>)> {
    let (mut measured, mut limits) = (Vec::new(), Vec::new());
    for trial in 0..trials {
        let limit_first = trial % 2 == 1;
        if limit_first {
            limits.push(limit().await?);
        }
        measured.push(measure(trial).await?);
        if !limit_first {
            limits.push(limit().await?);
        }
    }
    Ok((measured, limits))
}

/// The row of a closed loop measured in rounds: its median Asks/s, p50 and p99 over every
/// round's calls, its limit, and the median of the rounds' ratios with their range.
fn rounds_row(what: String, trials: Vec<scenarios::Run>, limit: String, ratios: &[f64]) -> Row {
    let per_second = stats::median_f64(trials.iter().map(scenarios::Run::per_second).collect());
    let mut all = scenarios::Run::pooled(trials);
    Row {
        what,
        measured: format!("{per_second:.0} Asks/s, p50 {}, p99 {}", ms(all.p50()), ms(all.p99())),
        limit,
        ratio: stats::ratio_of_trials(ratios),
    }
}

/// Rounds of `rows` runs each (a run per layout) as, per layout, its runs in round order.
fn by_layout(rounds: Vec<Vec<scenarios::Run>>, rows: usize) -> Vec<Vec<scenarios::Run>> {
    let mut by_layout: Vec<Vec<scenarios::Run>> = (0..rows).map(|_| Vec::new()).collect();
    for round in rounds {
        for (layout, run) in round.into_iter().enumerate() {
            by_layout[layout].push(run);
        }
    }
    by_layout
}

/// The pipeline's target (issue 11): 1,000 evaluations a second, the callback's p99 within 50 ms.
const PACED_TARGET: f64 = 1000.0;

/// Most evaluations a second the paced run is asked for: a pace set from the command line is
/// one tick of Tokio's timer per Ask, which must stay above zero.
const MAX_PACED_RATE: f64 = 100_000.0;

/// `--paced-rate`: a number of evaluations a second from 0 (the default pace) to
/// [`MAX_PACED_RATE`].
fn paced_rate(text: &str) -> Result<f64, String> {
    number_in(text, 0.0..=MAX_PACED_RATE, "evaluations a second from 0 (half the closed loop's) to")
}

/// `--soak-minutes`: from 1 to a day.
fn soak_minutes(text: &str) -> Result<f64, String> {
    number_in(text, 1.0..=1440.0, "minutes from 1 to")
}

/// A soak's pace: from 0 (none of that part) to 10,000 a second.
fn soak_rate(text: &str) -> Result<f64, String> {
    number_in(text, 0.0..=10_000.0, "a number a second from 0 to")
}

/// The longest measurement: every run of the load client is bounded.
const MAX_SECONDS: f64 = 3600.0;

/// `--seconds`: from 1 to [`MAX_SECONDS`] (a shorter measurement has too few answers to
/// measure, a negative or NaN one is no duration at all).
fn measurement_seconds(text: &str) -> Result<f64, String> {
    number_in(text, 1.0..=MAX_SECONDS, "seconds from 1 to")
}

/// The number `text` holds if it is finite and within `range`; else why not (`wanted` and the
/// range's end, when it is out of range).
fn number_in(text: &str, range: std::ops::RangeInclusive<f64>, wanted: &str) -> Result<f64, String> {
    let n: f64 = text.trim().parse().map_err(|e| format!("not a number: {e}"))?;
    if n.is_finite() && range.contains(&n) { Ok(n) } else { Err(format!("{wanted} {}", range.end())) }
}

/// mimalloc, as `aap` runs on: the client's allocations are taken from the cores it shares with
/// the platform (glibc's malloc and free were 6% of this client under the exact hits).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// One line of the table.
struct Row {
    what: String,
    measured: String,
    limit: String,
    ratio: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = Args::parse();
    args.apply_short();
    if let Some(threads) = args.model_threads {
        let seconds = args.seconds;
        let model = tokio::task::spawn_blocking(move || limits::model(threads, seconds)).await??;
        println!("{}", limits::model_line(&model));
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,aap_load=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let keep = args.run_dir.is_some();
    let run_dir = aap_chaos::run_dir(args.run_dir.as_deref(), "aap-load")?;
    let result = run(&args, &run_dir).await;
    match result {
        Ok(rows) => {
            let table = table(&args, &rows);
            println!("{table}");
            if let Some(out) = &args.out {
                std::fs::write(out, &table).with_context(|| format!("write {}", out.display()))?;
            }
            if !keep {
                let _ = std::fs::remove_dir_all(&run_dir);
            }
            Ok(())
        }
        Err(error) => {
            eprintln!("run dir (logs of every process): {}", run_dir.display());
            Err(error)
        }
    }
}

fn table(args: &Args, rows: &[Row]) -> String {
    let mut out = String::new();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    out.push_str(&format!(
        "\naap-load: {} s per measurement, {cores} cores, {} (client, platform, PostgreSQL, NATS and bots share them)\n\n",
        args.seconds,
        if cfg!(debug_assertions) { "debug build of aap-load" } else { "release build" },
    ));
    out.push_str("| what | measured | limit, same run | ratio |\n| --- | --- | --- | --- |\n");
    for row in rows {
        out.push_str(&format!("| {} | {} | {} | {} |\n", row.what, row.measured, row.limit, row.ratio));
    }
    out
}

async fn run(args: &Args, run_dir: &Path) -> anyhow::Result<Vec<Row>> {
    let bin_dir = aap_chaos::bin_dir(args.bin_dir.as_deref())?;
    let aap = aap_chaos::binary(&bin_dir, "aap")?;
    let aap_bot = aap_chaos::binary(&bin_dir, "aap-bot")?;
    let duration = Duration::from_secs_f64(args.seconds);
    let mut rows = Vec::new();

    let nats =
        Nats::start(NatsOptions { store_dir: run_dir.join("nats"), port: None, tls: None, nkey_users: Vec::new() })
            .await?;
    let mut database = Database::start(run_dir).await?;
    let socket_dir = database.server.as_ref().context("postgres is down")?.socket_dir().to_path_buf();
    let postgres_pid = database.server.as_ref().context("postgres is down")?.pid();

    // The limits, each measured alone before the platform starts.
    let mut jetstream = None;
    if args.wants("limits") {
        tracing::info!("measuring the limits: JetStream publishes, the embedding model");
        let js = limits::jetstream(&nats.url(), args.seconds).await?;
        rows.push(Row {
            what: "JetStream publishes (file storage, 120 B)".into(),
            measured: format!("{:.0}/s one at a time; {:.0}/s pipelined", js.sync_per_second, js.async_per_second),
            limit: format!("{} acks in flight", limits::ASYNC_WINDOW),
            ratio: format!("{:.1}x pipelined/sync", js.async_per_second / js.sync_per_second),
        });
        jetstream = Some(js);
        // The similar rows measure the model again in turns with them, their limit.
        for configuration in &limits::model_limits(args.seconds).await?.configurations {
            let threads = match configuration.threads {
                0 => "a pass over every core".to_owned(),
                1 => "a thread a pass (the platform's default)".to_owned(),
                n => format!("{n} threads a pass"),
            };
            rows.push(Row {
                what: format!("embedding model alone (all-MiniLM-L6-v2, candle), {threads}"),
                measured: configuration.describe(),
                limit: "-".into(),
                ratio: "-".into(),
            });
        }
    }

    let features = stack::ServeFeatures::detect(&aap).await?;
    let secrets = stack::Secrets::generate();
    // The platform's log filter: warnings unless AAP_LOAD_SERVER_LOG says otherwise (e.g.
    // `h2=trace` to see its frames while debugging).
    let server_log = std::env::var("AAP_LOAD_SERVER_LOG").unwrap_or_else(|_| "warn".to_owned());
    let settings = stack::ServeSettings {
        aap: &aap,
        run_dir,
        database_url: database.url()?,
        nats_urls: nats.url(),
        secrets: &secrets,
        claim_ttl_secs: 60,
        max_attempts: 3,
        features: &features,
        stream_replicas: 1,
        log_filter: &server_log,
        // The idle watches are one caller's: it may hold them all, and the setup's streams.
        max_streams_per_caller: Some(args.watches.max(10_000) + 1_000),
    };
    let ports = <[u16; 3]>::try_from(stack::free_ports(3)?).map_err(|_| anyhow::anyhow!("three ports"))?;
    let mut platform: Replica = stack::replica(&settings, "all", "aap", ports)?;
    // The soak reads the platform's gauges (open streams, the answers cache, the pool).
    let metrics_addr = match args.wants("soak") {
        true => Some(format!("127.0.0.1:{}", stack::free_ports(1)?[0])),
        false => None,
    };
    if let Some(addr) = &metrics_addr {
        platform.proc.set_env("AAP_METRICS_ADDR", addr);
    }
    platform.proc.start()?;
    stack::wait_serving(&mut platform, Duration::from_secs(180)).await?;
    let pid = platform.proc.pid().context("aap serve is not running")?;
    let url = platform.url();
    let bearer = Bearer::new(&secrets.customer)?;
    let admin = sqlx::PgPool::connect(&database.url()?).await?;
    let run_tag = chrono::Utc::now().format("%H%M%S").to_string();

    if args.wants("watch") {
        rows.push(watch(args, &url, &bearer, pid, postgres_pid, &run_tag, duration).await?);
    }

    let fleet = stack::FleetSettings {
        aap_bot: &aap_bot,
        run_dir,
        bot_token: &secrets.bot,
        bots: args.bots,
        concurrency: args.bot_concurrency,
        fail_rate: 0.0,
        delay_ms: 0,
    };
    let mut bots = stack::fleet(&fleet, std::slice::from_ref(&url));
    for bot in &mut bots {
        bot.proc.start()?;
    }

    // Both the exact and the similar Asks need the prompt answered first.
    if args.wants("exact") || args.wants("similar") || args.wants("soak") {
        let client = scenarios::connect(&url, &bearer).await?;
        scenarios::ask_answered(client, scenarios::EXACT_PROMPT, "chatgpt").await?;
    }

    if args.wants("exact") {
        sqlx::query("CREATE DATABASE pgbench").execute(&admin).await?;
        limits::pgbench_init(&socket_dir).await?;
        for &callers in &args.exact_callers {
            // A connection each, then (more callers than that) the shared connections.
            let shared = args.exact_connections;
            let layouts: Vec<usize> =
                std::iter::once(callers).chain((shared > 0 && callers > shared).then_some(shared)).collect();
            // Each round measures every layout, then pgbench (the other way round every other).
            let (rounds, pgbench) = in_turns(
                args.trials,
                async |trial| {
                    let mut runs = Vec::new();
                    for &connections in &layouts {
                        tracing::info!(callers, connections, trial, "exact hits");
                        let run =
                            scenarios::closed_loop(&url, &bearer, callers, connections, duration, scenarios::exact_hit)
                                .await?;
                        check_errors("exact hit", &run.first_error, run.errors, run.ok)?;
                        runs.push(run);
                    }
                    Ok(runs)
                },
                async || limits::pgbench(&socket_dir, callers, args.seconds.ceil() as u64).await,
            )
            .await?;
            let runs = by_layout(rounds, layouts.len());
            let pg_tps = stats::median_f64(pgbench.iter().map(|pg| pg.tps).collect());
            let pg_latency = stats::median_f64(pgbench.iter().map(|pg| pg.latency_ms).collect());
            for (&connections, trials) in layouts.iter().zip(runs) {
                let what = if connections == callers {
                    format!("exact hit, {callers} caller{}", plural(callers))
                } else {
                    format!("exact hit, {callers} callers over {connections} connection{}", plural(connections))
                };
                let ratios: Vec<f64> = trials.iter().zip(&pgbench).map(|(run, pg)| run.per_second() / pg.tps).collect();
                let limit = format!("pgbench -S -c {callers}: {pg_tps:.0} tps, {pg_latency:.2} ms");
                rows.push(rounds_row(what, trials, limit, &ratios));
            }
        }
    }

    if args.wants("similar") {
        // In turns with the model alone (each configuration in a process of its own), as the
        // exact rows with pgbench.
        let (rounds, models) = in_turns(
            args.trials,
            async |trial| {
                let mut runs = Vec::new();
                for &callers in &args.similar_callers {
                    tracing::info!(callers, trial, "similar prompts");
                    let run =
                        scenarios::closed_loop(&url, &bearer, callers, callers, duration, scenarios::similar).await?;
                    check_errors("similar prompt", &run.first_error, run.errors, run.ok)?;
                    runs.push(run);
                }
                Ok(runs)
            },
            async || limits::model_limits(args.seconds).await,
        )
        .await?;
        let runs = by_layout(rounds, args.similar_callers.len());
        for (&callers, mut trials) in args.similar_callers.iter().zip(runs) {
            let (limit, ratios) = if callers == 1 {
                let single = stats::median_f64(models.iter().map(limits::ModelLimits::single_ms).collect());
                let ratios = trials
                    .iter_mut()
                    .zip(&models)
                    .map(|(run, m)| m.single_ms() / (run.p50().as_secs_f64() * 1e3))
                    .collect::<Vec<f64>>();
                (format!("model alone, fastest: {single:.1} ms"), ratios)
            } else {
                let most = stats::median_f64(models.iter().map(limits::ModelLimits::batched_per_second).collect());
                let ratios =
                    trials.iter().zip(&models).map(|(run, m)| run.per_second() / m.batched_per_second()).collect();
                (format!("model alone, most: {most:.0} prompts/s in batches of {}", limits::MODEL_BATCH), ratios)
            };
            let what = format!("similar prompt, {callers} caller{}", plural(callers));
            rows.push(rounds_row(what, trials, limit, &ratios));
        }
    }

    if args.wants("pipeline") {
        tracing::info!(callers = args.pipeline_callers, "pipeline");
        // A first round warms the bots' claim streams and the consumers.
        let client = scenarios::connect(&url, &bearer).await?;
        scenarios::ask_answered(client, &format!("load {run_tag} warm-up"), "claude").await?;
        // Prompts stored beforehand, for the pipeline without the model: enough for the closed
        // loop at 4,000 evaluations a second (an Ask asks 4), five times what this machine does.
        let closed_ids = store_prompts(&admin, &run_tag, "stored", (args.seconds * 1000.0).ceil() as i64).await?;
        let wanted = |name: &str| args.pipeline_prompts.iter().any(|wanted| wanted == name);
        let mut sources = Vec::new();
        if wanted("new") {
            sources.push(("new prompts (each embedded)", scenarios::Prompts::New));
        }
        if wanted("stored") {
            sources.push(("stored prompts (asked by id)", scenarios::Prompts::Stored(Arc::new(closed_ids))));
        }
        let mut stored_rate = None;
        for (label, prompts) in sources {
            let stored_prompts = matches!(prompts, scenarios::Prompts::Stored(_));
            let mut run =
                scenarios::pipeline(&url, &bearer, args.pipeline_callers, duration, &run_tag, prompts).await?;
            check_errors("pipeline", &run.first_error, run.errors, run.answered)?;
            check_duplicates("pipeline", &run)?;
            let scenarios::PipelineFigures { per_second, callback_p50, callback_p99, ask_p50, .. } = run.figures();
            if stored_prompts {
                stored_rate = Some(per_second);
            }
            rows.push(Row {
                what: format!(
                    "pipeline, {label}: {} callers x 4 assistants, {} bots x {} claim streams",
                    args.pipeline_callers, args.bots, args.bot_concurrency
                ),
                measured: format!(
                    "{per_second:.0} evaluations/s; submit to answer event p50 {}, p99 {}; Ask to answer p50 {}; {} failed",
                    ms(callback_p50),
                    ms(callback_p99),
                    ms(ask_p50),
                    run.failed
                ),
                limit: match jetstream {
                    Some(js) => format!("target 1,000/s; JetStream {:.0} publishes/s pipelined", js.async_per_second),
                    None => "target 1,000/s".into(),
                },
                ratio: format!("{:.2} of target", per_second / 1000.0),
            });
        }
        if wanted("stored") {
            // The callback's own latency: at a pace the platform keeps up with, an answer
            // waits behind no queue of its own making.
            let (rate, why) = match (args.paced_rate, stored_rate) {
                (rate, _) if rate > 0.0 => (rate, "as asked".to_owned()),
                (_, Some(closed)) if closed >= PACED_TARGET => {
                    (PACED_TARGET, format!("the target; the closed loop did {closed:.0}/s"))
                }
                (_, Some(closed)) => ((closed / 2.0).max(4.0), format!("half of the closed loop's {closed:.0}/s")),
                _ => (250.0, "the default without a closed-loop run".to_owned()),
            };
            tracing::info!(rate, "paced pipeline");
            // An Ask every 4 / rate seconds, each of a prompt of its own, and a margin.
            let wanted = (rate / 4.0 * args.seconds * 1.25).ceil() as i64 + 16;
            let paced_ids = store_prompts(&admin, &run_tag, "paced", wanted).await?;
            let prompts = scenarios::Prompts::Stored(Arc::new(paced_ids));
            let connections = args.pipeline_callers.min(16);
            let started = Instant::now();
            let mut run = scenarios::paced(&url, &bearer, connections, rate, duration, &run_tag, prompts).await?;
            check_errors("paced pipeline", &run.first_error, run.errors, run.answered)?;
            check_duplicates("paced pipeline", &run)?;
            let timeline = run_dir.join("paced-timeline.tsv");
            std::fs::write(&timeline, stats::timeline(started, &run.timeline, Duration::from_millis(100)))
                .with_context(|| format!("writing {}", timeline.display()))?;
            let scenarios::PipelineFigures { per_second, callback_p50, callback_p99, ask_p50, ask_p99 } = run.figures();
            rows.push(Row {
                what: format!(
                    "pipeline, stored prompts, paced (open loop) at {rate:.0} evaluations/s ({why}): {connections} connections, {} bots x {} claim streams",
                    args.bots, args.bot_concurrency
                ),
                measured: format!(
                    "{per_second:.0} evaluations/s answered; submit to answer event p50 {}, p99 {}; Ask to answer p50 {}, p99 {}; {} failed",
                    ms(callback_p50),
                    ms(callback_p99),
                    ms(ask_p50),
                    ms(ask_p99),
                    run.failed
                ),
                limit: "target: submit to answer event p99 50 ms".into(),
                ratio: format!("p99 {:.1}x the target", callback_p99.as_secs_f64() / 0.050),
            });
        }
    }

    if let Some(metrics_addr) = &metrics_addr {
        let processes = soak::Processes {
            platform: pid,
            nats: nats.pid(),
            postgres: postgres_pid,
            bots: bots.iter().filter_map(|bot| bot.proc.pid()).collect(),
        };
        let sources = soak::Sources { metrics_addr, admin: &admin, nats_store: nats.store_dir() };
        rows.extend(soak_rows(args, &url, &bearer, &processes, &sources, &run_tag).await?);
    }

    for bot in &mut bots {
        bot.proc.kill().await;
    }
    platform.proc.kill().await;
    admin.close().await;
    database.stop().await?;
    nats.stop().await?;
    Ok(rows)
}

/// The soak, and its rows: what was asked and settled, each resource's trend, the latencies at
/// its start and end. Its timeline is kept in the temporary directory.
async fn soak_rows(
    args: &Args,
    url: &str,
    bearer: &Bearer,
    processes: &soak::Processes,
    sources: &soak::Sources<'_>,
    run_tag: &str,
) -> anyhow::Result<Vec<Row>> {
    let settings = soak::Settings {
        duration: Duration::from_secs_f64(args.soak_minutes * 60.0),
        rate: args.soak_rate,
        exact_rate: args.soak_exact_rate,
        similar_rate: args.soak_similar_rate,
        watches: usize::from(args.soak_watches),
        sample: Duration::from_secs_f64(args.soak_sample_secs),
    };
    tracing::info!(minutes = args.soak_minutes, "soak");
    let run = soak::run(url, bearer, &settings, processes, sources, run_tag).await?;
    let timeline = std::env::temp_dir().join(format!("aap-soak-{}.tsv", chrono::Utc::now().format("%Y%m%d-%H%M%S")));
    std::fs::write(&timeline, &run.timeline).with_context(|| format!("writing {}", timeline.display()))?;
    eprintln!("soak timeline (a line every {} s): {}", args.soak_sample_secs, timeline.display());

    let mut rows = vec![Row {
        what: format!(
            "soak, {} min: new prompts at {} evaluations/s, exact hits at {}/s, similar prompts at {}/s, {} Watch streams opened and cancelled every {} s",
            args.soak_minutes,
            args.soak_rate,
            args.soak_exact_rate,
            args.soak_similar_rate,
            args.soak_watches,
            args.soak_sample_secs
        ),
        measured: format!(
            "{} evaluations asked, {} answered, {} failed; stored {}, {} not settled, {} answered twice, {} answer events sent twice on a stream{}; {} exact hits, {} similar, {} watches; {} errors{}",
            run.asked,
            run.answered,
            run.failed,
            run.stored,
            run.unsettled,
            run.answered_twice,
            run.duplicate_events,
            run.first_duplicate.as_deref().map(|d| format!(" (first: {d})")).unwrap_or_default(),
            run.exact,
            run.similar,
            run.watches,
            run.errors,
            run.first_error.as_deref().map(|e| format!(" (first: {e})")).unwrap_or_default()
        ),
        limit: "every evaluation settled once".into(),
        ratio: if run.settled_once() { "OK".into() } else { "LOST OR DOUBLED".into() },
    }];
    for &(what, unit, value) in soak::RESOURCES {
        let Some(trend) = soak::trend(&run.samples, value) else { continue };
        rows.push(Row {
            what: format!("soak: {what}"),
            measured: format!(
                "{} early, {} late (medians); {} an hour over the second half (fitted)",
                soak::amount(trend.early, unit, false),
                soak::amount(trend.late, unit, false),
                soak::amount(trend.per_hour, unit, true)
            ),
            limit: "-".into(),
            ratio: if trend.early > 0.0 { format!("{:.2} late/early", trend.late / trend.early) } else { "-".into() },
        });
    }
    // Latencies: early in the soak against late, as the resources' trends take them.
    if let Some((start, end)) = soak::windows(&run.samples) {
        let typical = |part: &[soak::Sample], value: fn(&soak::Sample) -> Duration| {
            let mut values: Vec<Duration> = part.iter().map(value).collect();
            stats::median(&mut values)
        };
        for &(what, value) in soak::LATENCIES {
            let (first, last) = (typical(start, value), typical(end, value));
            rows.push(Row {
                what: format!("soak: {what}, the median of its samples"),
                measured: format!("{} early, {} late", ms(first), ms(last)),
                limit: "-".into(),
                ratio: format!("{:.2} late/early", last.as_secs_f64() / first.as_secs_f64().max(1e-6)),
            });
        }
    }
    if !run.settled_once() {
        for row in &rows {
            eprintln!("| {} | {} | {} | {} |", row.what, row.measured, row.limit, row.ratio);
        }
        bail!(
            "the soak asked {} evaluations, PostgreSQL holds {}: {} not settled, {} answered twice; {} answer events sent twice on a stream",
            run.asked,
            run.stored,
            run.unsettled,
            run.answered_twice,
            run.duplicate_events
        );
    }
    check_errors("soak", &run.first_error, run.errors, run.answered + run.exact + run.similar)?;
    Ok(rows)
}

/// Stores `count` prompts for asks by id and returns their ids. They share one embedding, far
/// from any real prompt's (signs alternate, so its cosine with a sentence's is near 0): they
/// are never matched, and pgvector keeps up to ten equal vectors in one HNSW element, so the
/// index takes them at about 0.4 ms each, against 2.8 ms for random ones (40,000 took 111 s).
async fn store_prompts(admin: &sqlx::PgPool, run_tag: &str, label: &str, count: i64) -> anyhow::Result<Vec<i64>> {
    let ids: Vec<i64> = sqlx::query_scalar(
        "WITH v AS (SELECT array_agg(CASE WHEN x % 2 = 0 THEN 1 ELSE -1 END)::real[]::vector AS e \
                    FROM generate_series(1, 384) x) \
         INSERT INTO prompts (text, text_hash, embedding) \
         SELECT t, sha256(convert_to(t, 'UTF8')), v.e \
         FROM (SELECT 'load ' || $2 || ' ' || $3 || ' prompt ' || g AS t FROM generate_series(1, $1) g) s, v \
         RETURNING id",
    )
    .bind(count)
    .bind(run_tag)
    .bind(label)
    .fetch_all(admin)
    .await?;
    Ok(ids)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// A measurement with failed calls is not a measurement: more than 1% failed stops the run.
fn check_errors(what: &str, first: &Option<String>, errors: usize, ok: usize) -> anyhow::Result<()> {
    if ok == 0 || errors * 100 > ok {
        bail!("{what}: {errors} calls failed, {ok} succeeded; first error: {}", first.as_deref().unwrap_or("-"));
    }
    Ok(())
}

/// An answer sent twice on one stream is a defect, not a figure: it stops the run.
fn check_duplicates(what: &str, run: &scenarios::Pipeline) -> anyhow::Result<()> {
    if run.duplicates > 0 {
        bail!(
            "{what}: {} answer events sent twice on a stream; first: {}",
            run.duplicates,
            run.first_duplicate.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}

/// Idle Watch streams: the platform's CPU and memory at rest with none, then with `watches`.
async fn watch(
    args: &Args,
    url: &str,
    bearer: &Bearer,
    pid: u32,
    postgres_pid: u32,
    run_tag: &str,
    duration: Duration,
) -> anyhow::Result<Row> {
    // A plan no bot serves: the evaluation waits for as long as the streams do.
    let (assistant, plan) = ("chatgpt", "load-idle");
    let client = scenarios::connect(url, bearer).await?;
    let prompt_id =
        scenarios::ask_waiting(client, &format!("load {run_tag} idle watch prompt"), assistant, plan).await?;
    let at_rest = |label: &'static str| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (cpu, database_cpu) = (stats::cpu_time(pid)?, stats::tree_cpu_time(postgres_pid));
        let started = Instant::now();
        tokio::time::sleep(duration).await;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu_share = (stats::cpu_time(pid)? - cpu).as_secs_f64() / elapsed;
        let database_share = stats::tree_cpu_time(postgres_pid).saturating_sub(database_cpu).as_secs_f64() / elapsed;
        tracing::info!(label, cpu_share, database_share, "at rest");
        anyhow::Ok((cpu_share, database_share, stats::rss(pid)?))
    };
    let (cpu_before, pg_before, rss_before) = at_rest("no streams").await?;
    tracing::info!(streams = args.watches, "opening idle watch streams");
    let watches = scenarios::open_watches(url, bearer, prompt_id, assistant, plan, args.watches).await?;
    let opened_in = watches.opened_in;
    let (cpu_after, pg_after, rss_after) = at_rest("streams open").await?;
    let open = watches.open;
    watches.close().await;
    let per_stream = rss_after.saturating_sub(rss_before) as f64 / open as f64;
    Ok(Row {
        what: format!("{open} idle Watch streams (opened in {:.1} s)", opened_in.as_secs_f64()),
        measured: format!(
            "CPU {:.1}% of a core (none open: {:.1}%); RSS {} MB (none open: {} MB, {:.1} KB a stream); PostgreSQL CPU {:.1}% (none open: {:.1}%)",
            cpu_after * 100.0,
            cpu_before * 100.0,
            rss_after / (1 << 20),
            rss_before / (1 << 20),
            per_stream / 1024.0,
            pg_after * 100.0,
            pg_before * 100.0
        ),
        limit: "target: 5% of a core".into(),
        ratio: format!("{:.2} of target", cpu_after / 0.05),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_rate_is_a_finite_number_of_evaluations_within_the_bound() {
        for good in ["0", "350", " 12.5 ", "100000"] {
            assert!(paced_rate(good).is_ok(), "{good:?}");
        }
        for bad in ["-1", "nan", "inf", "1e12", "", "abc", "3\0"] {
            assert!(paced_rate(bad).is_err(), "{bad:?} is refused");
        }
        let parsed = Args::try_parse_from(["aap-load", "--paced-rate", "inf"]);
        assert!(parsed.is_err(), "clap refuses it before anything starts");
    }

    /// A duration the measurements can run for: a negative or NaN one panicked in
    /// `Duration::from_secs_f64`, a zero one failed the pipeline with no figure to show.
    #[test]
    fn a_measurement_lasts_a_bounded_number_of_seconds() {
        for good in ["1", "2", " 10 ", "3600"] {
            assert!(measurement_seconds(good).is_ok(), "{good:?}");
        }
        for bad in ["0", "0.5", "-1", "nan", "inf", "3601", "", "1\0"] {
            assert!(measurement_seconds(bad).is_err(), "{bad:?} is refused");
        }
        assert_eq!(measurement_seconds("-1"), Err("seconds from 1 to 3600".to_string()));
        assert!(Args::try_parse_from(["aap-load", "--seconds=nan"]).is_err(), "refused before anything starts");
        assert_eq!(Args::try_parse_from(["aap-load"]).map(|args| args.seconds).ok(), Some(10.0));
    }

    /// The limit comes after the platform in the first round, before it in the second, after
    /// it in the third; each round's figures come back in round order, per layout.
    #[tokio::test]
    async fn rounds_take_turns_and_come_back_per_layout() -> anyhow::Result<()> {
        let order = std::cell::RefCell::new(Vec::new());
        let (rounds, limits) = in_turns(
            3,
            async |trial| {
                order.borrow_mut().push(format!("platform {trial}"));
                Ok((0..2)
                    .map(|layout| scenarios::Run { ok: 10 * trial as usize + layout, ..Default::default() })
                    .collect())
            },
            async || {
                let mut order = order.borrow_mut();
                order.push("limit".to_owned());
                Ok(order.len())
            },
        )
        .await?;
        let order = order.into_inner();
        assert_eq!(order, ["platform 0", "limit", "limit", "platform 1", "platform 2", "limit"]);
        assert_eq!(limits, [2, 3, 6]);
        let runs = by_layout(rounds, 2);
        let ok: Vec<Vec<usize>> = runs.iter().map(|layout| layout.iter().map(|run| run.ok).collect()).collect();
        assert_eq!(ok, [[0, 10, 20], [1, 11, 21]]);
        Ok(())
    }
}
