//! The soak (`just soak`): the platform under a steady mix of what customers and bots do, for
//! minutes or hours, sampled every few seconds. It answers what a short run cannot: whether
//! anything grows that should not (a process's memory, its file descriptors and threads, NATS's
//! store, the open streams), whether answers slow down as the tables and the vector index grow,
//! and whether every evaluation asked was settled exactly once.
//!
//! The mix, each part at its own pace (open loop):
//! - new prompts of all four assistants (embedded, stored, queued, answered by the synthetic
//!   bots), the pipeline;
//! - exact hits: a prompt answered earlier in the soak asked again, any of them, so the
//!   answers cache fills to its bound and misses go to PostgreSQL;
//! - similar prompts (embedded, searched in the growing HNSW index, suggested);
//! - Watch streams opened on a prompt nothing answers, held for one sample, then cancelled.
//!
//! Each sample is a line of the timeline (a TSV kept after the run); the table compares the
//! first samples with the last and fits each resource's growth per hour.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aap_proto::v1::answer_event::Event;
use aap_proto::v1::ask_request::Query;
use aap_proto::v1::{AskRequest, SimilarPolicy, Target};
use aap_telemetry::memory::Process;
use anyhow::{Context as _, bail};
use rand::Rng as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::lean::Lean;
use crate::scenarios::{self, Bearer, Pipeline};
use crate::stats::{self, median, percentile};

/// What the soak asks, and how often.
#[derive(Debug, Clone)]
pub struct Settings {
    pub duration: Duration,
    /// Evaluations a second of new prompts (an Ask of all four assistants is four).
    pub rate: f64,
    /// Exact-hit Asks a second.
    pub exact_rate: f64,
    /// Similar-prompt Asks a second.
    pub similar_rate: f64,
    /// Watch streams opened at each sample and cancelled at the next.
    pub watches: usize,
    /// Time between two samples.
    pub sample: Duration,
}

/// The processes whose resources are sampled.
pub struct Processes {
    pub platform: u32,
    pub nats: u32,
    pub postgres: u32,
    pub bots: Vec<u32>,
}

/// Where the soak reads what the processes report of themselves.
pub struct Sources<'a> {
    /// `host:port` of `aap serve`'s /metrics.
    pub metrics_addr: &'a str,
    pub admin: &'a sqlx::PgPool,
    pub nats_store: &'a Path,
}

/// What happened between two samples.
#[derive(Default)]
struct Window {
    /// New prompts' Asks that ended in it (answers, failures, callback latencies).
    pipeline: Pipeline,
    exact: Vec<Duration>,
    similar: Vec<Duration>,
    /// Exact and similar Asks and Watch streams that failed.
    errors: usize,
    first_error: Option<String>,
}

impl Window {
    fn error(&mut self, error: String) {
        self.errors += 1;
        self.first_error.get_or_insert(error);
    }
}

/// One line of the timeline.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub seconds: f64,
    pub platform_rss: u64,
    /// Bytes `aap serve`'s live allocations hold (`aap_heap_allocated_bytes`): beside its RSS,
    /// it tells a leak (both grow) from the allocator keeping freed pages (the RSS alone grows).
    pub platform_heap: u64,
    pub nats_rss: u64,
    pub bots_rss: u64,
    /// Share of a core each used since the sample before.
    pub platform_cpu: f64,
    pub nats_cpu: f64,
    pub postgres_cpu: f64,
    pub platform_fds: u64,
    pub platform_threads: u64,
    pub database_bytes: u64,
    pub evaluations_dead_rows: u64,
    pub nats_store_bytes: u64,
    pub streams_open: f64,
    pub cache_bytes: f64,
    pub cache_entries: f64,
    pub pool_connections: f64,
    /// Evaluations of new prompts answered since the sample before, a second.
    pub answered_per_second: f64,
    pub callback_p50: Duration,
    pub callback_p99: Duration,
    pub exact_per_second: f64,
    pub exact_p50: Duration,
    pub exact_p99: Duration,
    pub similar_p50: Duration,
    pub errors: usize,
}

const HEADER: &str = "seconds\tplatform_rss_mb\tplatform_heap_mb\tnats_rss_mb\tbots_rss_mb\tplatform_cpu\tnats_cpu\tpostgres_cpu\t\
platform_fds\tplatform_threads\tdatabase_mb\tevaluations_dead_rows\tnats_store_mb\tstreams_open\tcache_mb\t\
cache_entries\tpool_connections\tanswered_per_s\tcallback_p50_ms\tcallback_p99_ms\texact_per_s\texact_p50_ms\t\
exact_p99_ms\tsimilar_p50_ms\terrors\n";

impl Sample {
    fn line(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "{:.0}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:.3}\t{:.3}\t{:.3}\t{}\t{}\t{:.1}\t{}\t{:.1}\t{:.0}\t{:.1}\t{:.0}\t{:.0}\t{:.1}\t{:.1}\t{:.1}\t{:.1}\t{:.2}\t{:.2}\t{:.1}\t{}\n",
            self.seconds,
            mb(self.platform_rss),
            mb(self.platform_heap),
            mb(self.nats_rss),
            mb(self.bots_rss),
            self.platform_cpu,
            self.nats_cpu,
            self.postgres_cpu,
            self.platform_fds,
            self.platform_threads,
            mb(self.database_bytes),
            self.evaluations_dead_rows,
            mb(self.nats_store_bytes),
            self.streams_open,
            self.cache_bytes / (1 << 20) as f64,
            self.cache_entries,
            self.pool_connections,
            self.answered_per_second,
            ms(self.callback_p50),
            ms(self.callback_p99),
            self.exact_per_second,
            ms(self.exact_p50),
            ms(self.exact_p99),
            ms(self.similar_p50),
            self.errors,
        )
    }
}

/// The soak's outcome.
pub struct Soak {
    pub samples: Vec<Sample>,
    pub timeline: String,
    /// Evaluations the new prompts' Asks asked (four an Ask).
    pub asked: usize,
    pub answered: usize,
    pub failed: usize,
    pub exact: usize,
    pub similar: usize,
    pub watches: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    /// Answer events an Ask stream sent again for an evaluation it had sent the answer of.
    pub duplicate_events: usize,
    pub first_duplicate: Option<String>,
    /// The soak's evaluations PostgreSQL holds as not settled once every stream ended.
    pub unsettled: i64,
    /// Its evaluations with more than one answer stored.
    pub answered_twice: i64,
    /// Its evaluations PostgreSQL holds, against `asked`.
    pub stored: i64,
}

impl Soak {
    /// Whether PostgreSQL holds every evaluation asked, each settled with at most one answer,
    /// and no stream sent an answer twice.
    pub fn settled_once(&self) -> bool {
        self.unsettled == 0
            && self.answered_twice == 0
            && self.duplicate_events == 0
            && usize::try_from(self.stored).is_ok_and(|stored| stored == self.asked)
    }
}

/// Runs the soak against `url`; `run_tag` keeps its prompts apart from the rest of the run.
pub async fn run(
    url: &str,
    bearer: &Bearer,
    settings: &Settings,
    processes: &Processes,
    sources: &Sources<'_>,
    run_tag: &str,
) -> anyhow::Result<Soak> {
    let started = Instant::now();
    let deadline = started + settings.duration;
    let mix = Arc::new(Mix {
        deadline,
        run_tag: run_tag.to_owned(),
        window: Mutex::default(),
        answered_prompts: Mutex::default(),
        totals: Mutex::default(),
    });

    // The prompt the Watch streams wait on: a plan no bot serves.
    let (idle_assistant, idle_plan) = ("chatgpt", "soak-idle");
    let idle_prompt = scenarios::ask_waiting(
        scenarios::connect(url, bearer).await?,
        &format!("load {run_tag} soak idle prompt"),
        idle_assistant,
        idle_plan,
    )
    .await?;

    let mut generators = tokio::task::JoinSet::new();
    let clients = {
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(scenarios::connect(url, bearer).await?);
        }
        clients
    };
    generators.spawn(mix.clone().new_prompts(clients, settings.rate));
    generators.spawn(mix.clone().exact_hits(Lean::connect(url, bearer).await?, settings.exact_rate));
    generators.spawn(mix.clone().similar_prompts(Lean::connect(url, bearer).await?, settings.similar_rate));

    let mut samples = Vec::new();
    let mut timeline = String::from(HEADER);
    let mut cpu = CpuTimes::read(processes);
    let mut last = Instant::now();
    let mut watches: Option<scenarios::Watches> = None;
    let (mut errors, mut first_error) = (0, None);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + settings.sample, settings.sample);
    while Instant::now() < deadline {
        ticks.tick().await;
        // The streams opened at the sample before are cancelled; as many are opened again.
        if let Some(open) = watches.take() {
            open.close().await;
        }
        if settings.watches > 0 && Instant::now() + settings.sample <= deadline {
            match scenarios::open_watches(url, bearer, idle_prompt, idle_assistant, idle_plan, settings.watches).await {
                Ok(open) => {
                    lock(&mix.totals).watches += open.open;
                    watches = Some(open);
                }
                Err(error) => lock(&mix.window).error(format!("watches: {error:#}")),
            }
        }
        let elapsed = last.elapsed().as_secs_f64();
        last = Instant::now();
        let seen = std::mem::take(&mut *lock(&mix.window));
        let now = CpuTimes::read(processes);
        if let Some(error) = seen.first_error.as_ref().or(seen.pipeline.first_error.as_ref()) {
            tracing::warn!(%error, "soak: a call failed");
            first_error.get_or_insert_with(|| error.clone());
        }
        let sample = sample(started, elapsed, seen, &cpu, &now, processes, sources).await;
        cpu = now;
        tracing::info!(
            seconds = sample.seconds as u64,
            platform_rss_mb = sample.platform_rss >> 20,
            platform_heap_mb = sample.platform_heap >> 20,
            answered_per_second = sample.answered_per_second as u64,
            callback_p99_ms = sample.callback_p99.as_millis() as u64,
            exact_p99_ms = sample.exact_p99.as_millis() as u64,
            errors = sample.errors,
            "soak sample"
        );
        timeline.push_str(&sample.line());
        errors += sample.errors;
        samples.push(sample);
    }
    if let Some(open) = watches.take() {
        open.close().await;
    }
    while generators.join_next().await.transpose()?.is_some() {}
    let last_window = std::mem::take(&mut *lock(&mix.window));
    let totals = lock(&mix.totals).clone();

    // Every Ask's stream has ended (each with its answers or a failure); what PostgreSQL holds
    // of the soak's evaluations must agree.
    let pattern = format!("load {run_tag} soak prompt %");
    let (stored, unsettled, answered_twice) = settle(sources.admin, &pattern).await?;
    Ok(Soak {
        samples,
        timeline,
        asked: totals.asked,
        // The totals count every Ask as it ends; the windows hold the same Asks for the samples
        // (and the errors, which only they count).
        answered: totals.answered,
        failed: totals.failed,
        exact: totals.exact,
        similar: totals.similar,
        watches: totals.watches,
        errors: errors + last_window.errors + last_window.pipeline.errors,
        first_error: first_error.or(last_window.first_error).or(last_window.pipeline.first_error),
        duplicate_events: totals.duplicates,
        first_duplicate: totals.first_duplicate,
        unsettled,
        answered_twice,
        stored,
    })
}

/// How many evaluations of the soak's prompts PostgreSQL holds, how many of them are not
/// settled (waiting at most 60 s for the last to settle) and how many have two answers or more.
async fn settle(admin: &sqlx::PgPool, pattern: &str) -> anyhow::Result<(i64, i64, i64)> {
    let waited = Instant::now();
    loop {
        let (stored, unsettled): (i64, i64) = sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE e.status NOT IN ('answered', 'failed')) \
             FROM evaluations e JOIN prompts p ON p.id = e.prompt_id WHERE p.text LIKE $1",
        )
        .bind(pattern)
        .fetch_one(admin)
        .await?;
        if unsettled == 0 || waited.elapsed() > Duration::from_secs(60) {
            let twice: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT a.evaluation_id FROM answers a JOIN prompts p ON p.id = a.prompt_id \
                 WHERE p.text LIKE $1 GROUP BY a.evaluation_id HAVING count(*) > 1) twice",
            )
            .bind(pattern)
            .fetch_one(admin)
            .await?;
            return Ok((stored, unsettled, twice));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What the soak's generators share: when to stop, what they saw since the last sample, and
/// the totals.
struct Mix {
    deadline: Instant,
    run_tag: String,
    window: Mutex<Window>,
    /// Indexes of the new prompts whose Asks ended with all four answers: the exact hits'.
    answered_prompts: Mutex<Vec<usize>>,
    totals: Mutex<Totals>,
}

/// Totals over the whole soak, kept by the generators as they go.
#[derive(Default, Clone)]
struct Totals {
    asked: usize,
    answered: usize,
    failed: usize,
    exact: usize,
    similar: usize,
    watches: usize,
    /// Answer events a stream sent twice for one evaluation.
    duplicates: usize,
    first_duplicate: Option<String>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The text of the soak's `index`th new prompt.
fn soak_text(run_tag: &str, index: usize) -> String {
    format!("load {run_tag} soak prompt {index}: which CRM fits team {index}?")
}

fn targets() -> Vec<Target> {
    aap_chaos::stack::ASSISTANTS.iter().map(|a| Target { assistant: (*a).to_owned(), plan: String::new() }).collect()
}

impl Mix {
    /// Calls `start` at `per_second` (missed ticks at once: the pace is kept on average) until
    /// the deadline, each call's future on a task of its own (a `None` skips the tick); then
    /// waits for them all.
    async fn paced<F, Fut>(&self, per_second: f64, mut start: F)
    where
        F: FnMut(usize) -> Option<Fut>,
        Fut: Future<Output = ()> + Send + 'static,
    {
        if per_second <= 0.0 {
            return;
        }
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut calls = tokio::task::JoinSet::new();
        for index in 0.. {
            ticks.tick().await;
            if Instant::now() >= self.deadline {
                break;
            }
            if let Some(call) = start(index) {
                calls.spawn(call);
            }
            // Reap the calls that ended, so the set holds only those in flight.
            while calls.try_join_next().is_some() {}
        }
        while calls.join_next().await.is_some() {}
    }

    /// New prompts of all four assistants at `rate` evaluations a second, over `clients`.
    async fn new_prompts(self: Arc<Self>, clients: Vec<scenarios::Answers>, rate: f64) {
        let asks_per_second = rate / targets().len() as f64;
        self.paced(asks_per_second, |index| {
            let request = AskRequest {
                query: Some(Query::Prompt(soak_text(&self.run_tag, index))),
                targets: targets(),
                policy: SimilarPolicy::ForceNew as i32,
                ..Default::default()
            };
            lock(&self.totals).asked += request.targets.len();
            let (client, mix) = (clients[index % clients.len()].clone(), self.clone());
            Some(async move {
                let mut out = Pipeline::default();
                // Every answer counts, whenever it comes: the soak has no window to be late for.
                let far = Instant::now() + Duration::from_secs(3600);
                scenarios::follow_ask(client, request, far, &mut out).await;
                if out.answered == targets().len() {
                    lock(&mix.answered_prompts).push(index);
                }
                {
                    let mut totals = lock(&mix.totals);
                    totals.answered += out.answered;
                    totals.failed += out.failed;
                    totals.duplicates += out.duplicates;
                    if totals.first_duplicate.is_none() {
                        totals.first_duplicate.clone_from(&out.first_duplicate);
                    }
                }
                lock(&mix.window).pipeline.add(out);
            })
        })
        .await;
    }

    /// Exact hits at `rate` Asks a second: any new prompt of the soak answered so far, by its
    /// text.
    async fn exact_hits(self: Arc<Self>, client: Lean, rate: f64) {
        self.paced(rate, |_| {
            let index = {
                let answered = lock(&self.answered_prompts);
                *answered.get(rand::rng().random_range(0..answered.len().max(1)))?
            };
            let request = AskRequest {
                query: Some(Query::Prompt(soak_text(&self.run_tag, index))),
                targets: targets(),
                policy: SimilarPolicy::Suggest as i32,
                ..Default::default()
            };
            let (client, mix) = (client.clone(), self.clone());
            Some(async move {
                let asked = Instant::now();
                let outcome = client.ask(&request).await;
                let took = asked.elapsed();
                let mut window = lock(&mix.window);
                match outcome {
                    Ok(events) => {
                        let cached = events.iter().filter(|e| matches!(e, Event::Cached(_))).count();
                        if cached == request.targets.len() && matches!(events.last(), Some(Event::Completed(_))) {
                            window.exact.push(took);
                            lock(&mix.totals).exact += 1;
                        } else {
                            window.error(format!("exact hit of prompt {index}: {cached} cached answers: {events:?}"));
                        }
                    }
                    Err(error) => window.error(format!("exact hit: {error}")),
                }
            })
        })
        .await;
    }

    /// Similar prompts at `rate` Asks a second: each text new, each embedded and searched.
    async fn similar_prompts(self: Arc<Self>, client: Lean, rate: f64) {
        self.paced(rate, |index| {
            let (client, mix) = (client.clone(), self.clone());
            Some(async move {
                let asked = Instant::now();
                let outcome = scenarios::similar(client, index).await;
                let took = asked.elapsed();
                let mut window = lock(&mix.window);
                match outcome {
                    Ok(()) => {
                        window.similar.push(took);
                        lock(&mix.totals).similar += 1;
                    }
                    Err(error) => window.error(format!("similar prompt: {error}")),
                }
            })
        })
        .await;
    }
}

/// CPU time each sampled process has used so far.
struct CpuTimes {
    platform: Duration,
    nats: Duration,
    postgres: Duration,
}

impl CpuTimes {
    fn read(processes: &Processes) -> CpuTimes {
        CpuTimes {
            platform: stats::cpu_time(processes.platform).unwrap_or_default(),
            nats: stats::cpu_time(processes.nats).unwrap_or_default(),
            postgres: stats::tree_cpu_time(processes.postgres),
        }
    }
}

async fn sample(
    started: Instant,
    elapsed: f64,
    mut seen: Window,
    before: &CpuTimes,
    now: &CpuTimes,
    processes: &Processes,
    sources: &Sources<'_>,
) -> Sample {
    let share = |after: Duration, before: Duration| after.saturating_sub(before).as_secs_f64() / elapsed.max(1e-3);
    let metrics = metrics(sources.metrics_addr).await.unwrap_or_else(|error| {
        seen.error(format!("metrics: {error:#}"));
        String::new()
    });
    let gauge = |name: &str| metric_sum(&metrics, name);
    let database: Result<(i64, i64), sqlx::Error> = sqlx::query_as(
        "SELECT pg_database_size(current_database()), \
                COALESCE((SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'evaluations'), 0)",
    )
    .fetch_one(sources.admin)
    .await;
    let (database_bytes, dead_rows) = database.unwrap_or_else(|error| {
        seen.error(format!("database size: {error}"));
        (0, 0)
    });
    let mut callback: Vec<Duration> = seen.pipeline.timeline.iter().map(|(_, latency)| *latency).collect();
    let platform = Process::of(processes.platform);
    Sample {
        seconds: started.elapsed().as_secs_f64(),
        platform_rss: platform.resident_bytes.unwrap_or_default(),
        platform_heap: gauge("aap_heap_allocated_bytes") as u64,
        nats_rss: stats::rss(processes.nats).unwrap_or_default(),
        bots_rss: processes.bots.iter().map(|pid| stats::rss(*pid).unwrap_or_default()).sum(),
        platform_cpu: share(now.platform, before.platform),
        nats_cpu: share(now.nats, before.nats),
        postgres_cpu: share(now.postgres, before.postgres),
        platform_fds: platform.open_fds.unwrap_or_default(),
        platform_threads: platform.threads.unwrap_or_default(),
        database_bytes: database_bytes.max(0) as u64,
        evaluations_dead_rows: dead_rows.max(0) as u64,
        nats_store_bytes: directory_bytes(sources.nats_store),
        streams_open: gauge("aap_answers_streams_open"),
        cache_bytes: gauge("aap_answers_cache_bytes"),
        cache_entries: gauge("aap_answers_cache_entries"),
        pool_connections: gauge("aap_db_pool_connections"),
        answered_per_second: seen.pipeline.answered as f64 / elapsed.max(1e-3),
        callback_p50: median(&mut callback),
        callback_p99: percentile(&mut callback, 99.0),
        exact_per_second: seen.exact.len() as f64 / elapsed.max(1e-3),
        exact_p50: median(&mut seen.exact),
        exact_p99: percentile(&mut seen.exact, 99.0),
        similar_p50: median(&mut seen.similar),
        errors: seen.errors + seen.pipeline.errors,
    }
}

/// Bytes of the files under `path`.
fn directory_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(meta) if meta.is_dir() => directory_bytes(&entry.path()),
            Ok(meta) => meta.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The text of `GET /metrics` at `addr` (`host:port`), over a plain HTTP/1.1 connection.
async fn metrics(addr: &str) -> anyhow::Result<String> {
    let read = async {
        let mut tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.write_all(format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
        let mut response = Vec::new();
        tcp.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(Duration::from_secs(5), read).await.context("no answer in 5 s")??;
    let (head, body) = response.split_once("\r\n\r\n").context("no HTTP head")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

/// The sum of every series of metric `name` in a Prometheus text exposition (0 when absent).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            // `name{labels} value` or `name value`, not a longer name that begins with it.
            let value = match rest.chars().next()? {
                '{' => rest.rsplit_once(' ')?.1,
                ' ' => rest.trim(),
                _ => return None,
            };
            value.parse::<f64>().ok()
        })
        .sum()
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// A resource the table shows a trend of: its name, its unit, its value in a sample.
pub type Resource = (&'static str, &'static str, fn(&Sample) -> f64);

/// A latency the table compares at the soak's start and end: its name, its value in a sample.
pub type Latency = (&'static str, fn(&Sample) -> Duration);

/// The resources the table shows a trend of.
pub const RESOURCES: &[Resource] = &[
    ("aap serve RSS", "MB", |s| mb(s.platform_rss)),
    ("aap serve heap in use", "MB", |s| mb(s.platform_heap)),
    ("nats-server RSS", "MB", |s| mb(s.nats_rss)),
    ("the bots' RSS", "MB", |s| mb(s.bots_rss)),
    ("aap serve file descriptors", "", |s| s.platform_fds as f64),
    ("aap serve threads", "", |s| s.platform_threads as f64),
    ("answers cache", "MB", |s| s.cache_bytes / (1 << 20) as f64),
    ("NATS store", "MB", |s| mb(s.nats_store_bytes)),
    ("PostgreSQL database", "MB", |s| mb(s.database_bytes)),
    ("dead rows of evaluations", "", |s| s.evaluations_dead_rows as f64),
];

/// The latencies the table compares at the soak's start and end.
pub const LATENCIES: &[Latency] = &[
    ("callback (submit to answer event) p99", |s| s.callback_p99),
    ("exact hit p99", |s| s.exact_p99),
    ("similar prompt p50", |s| s.similar_p50),
];

/// `value` in `unit` ("MB" with a decimal; a count, such as file descriptors, without); with
/// its sign when `signed`.
pub fn amount(value: f64, unit: &str, signed: bool) -> String {
    match (unit.is_empty(), signed) {
        (true, true) => format!("{value:+.0}"),
        (true, false) => format!("{value:.0}"),
        (false, true) => format!("{value:+.1} {unit}"),
        (false, false) => format!("{value:.1} {unit}"),
    }
}

/// What a resource did over the soak: its typical value early (the median of the samples from a
/// tenth to three tenths of the run: after the warm-up, while caches and pools fill) and late
/// (the median of the last fifth), and its growth an hour fitted (least squares) over the second
/// half, when what fills has filled. Medians, not single samples: some resources rise and fall
/// (autovacuum's dead rows, a garbage-collected heap).
pub struct Trend {
    pub early: f64,
    pub late: f64,
    pub per_hour: f64,
}

/// The samples a trend calls early (from a tenth to three tenths of the run) and late (the last
/// fifth); none with fewer than 10 samples.
pub fn windows(samples: &[Sample]) -> Option<(&[Sample], &[Sample])> {
    let n = samples.len();
    (n >= 10).then(|| (&samples[n / 10..3 * n / 10], &samples[n - n / 5..]))
}

pub fn trend(samples: &[Sample], value: impl Fn(&Sample) -> f64) -> Option<Trend> {
    let (early, late) = windows(samples)?;
    let n = samples.len();
    let median = |part: &[Sample]| {
        let mut values: Vec<f64> = part.iter().map(&value).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let points: Vec<(f64, f64)> = samples[n / 2..].iter().map(|s| (s.seconds / 3600.0, value(s))).collect();
    let count = points.len() as f64;
    let (mean_x, mean_y) =
        (points.iter().map(|p| p.0).sum::<f64>() / count, points.iter().map(|p| p.1).sum::<f64>() / count);
    let covariance: f64 = points.iter().map(|(x, y)| (x - mean_x) * (y - mean_y)).sum();
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    Some(Trend {
        early: median(early),
        late: median(late),
        per_hour: if variance > 0.0 { covariance / variance } else { 0.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sums_add_every_series_of_the_name_and_no_longer_name() {
        let text = "# HELP aap_answers_streams_open Streams.\n\
                    # TYPE aap_answers_streams_open gauge\n\
                    aap_answers_streams_open{rpc=\"ask\"} 3\n\
                    aap_answers_streams_open{rpc=\"watch\"} 100\n\
                    aap_answers_streams_open_total 7\n\
                    aap_answers_cache_bytes 1048576\n";
        assert_eq!(metric_sum(text, "aap_answers_streams_open"), 103.0);
        assert_eq!(metric_sum(text, "aap_answers_cache_bytes"), 1_048_576.0);
        assert_eq!(metric_sum(text, "aap_absent"), 0.0);
    }

    #[test]
    fn a_trend_compares_medians_early_and_late_and_fits_the_second_half() {
        // 20 samples a minute apart: a cache filling for 5 minutes (2 MB a minute), then 1 MB a
        // minute; one spike late that a median ignores.
        let samples: Vec<Sample> = (0..20u64)
            .map(|minute| Sample {
                seconds: minute as f64 * 60.0,
                platform_rss: if minute == 18 {
                    1 << 30
                } else if minute < 5 {
                    (100 + 2 * minute) << 20
                } else {
                    (105 + minute) << 20
                },
                ..Sample::default()
            })
            .collect();
        let rss = trend(&samples, |s| s.platform_rss as f64 / (1 << 20) as f64).expect("enough samples");
        // Early: minutes 2 to 5 (104, 106, 108, 110): the median is the upper middle one.
        assert_eq!(rss.early, 108.0);
        // Late: minutes 16 to 19 (121, 122, spike, 124).
        assert_eq!(rss.late, 124.0);
        let fitted = trend(&samples.iter().filter(|s| s.seconds != 18.0 * 60.0).cloned().collect::<Vec<_>>(), |s| {
            s.platform_rss as f64 / (1 << 20) as f64
        })
        .expect("enough samples");
        assert!((fitted.per_hour - 60.0).abs() < 1e-6, "1 MB a minute is 60 an hour, not {}", fitted.per_hour);
        assert!(trend(&samples[..9], |s| s.seconds).is_none(), "too few samples for a trend");
    }

    #[test]
    fn a_timeline_line_has_a_field_for_each_column() {
        let columns = HEADER.trim_end().split('\t').count();
        assert_eq!(Sample::default().line().trim_end().split('\t').count(), columns);
    }
}
