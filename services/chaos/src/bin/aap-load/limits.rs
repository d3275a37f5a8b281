//! The limits each figure is compared with, measured in the same run on the same machine:
//! `pgbench -S` on the platform's own PostgreSQL, the embedding model's own throughput, and
//! JetStream's publish rate on the platform's own NATS server.

use std::path::Path;
use std::time::{Duration, Instant};

use aap_platform::local::Tools;
use anyhow::{Context as _, bail};
use async_nats::jetstream;

use crate::stats::median;

/// `pgbench -S` at one client count.
#[derive(Debug, Clone, Copy)]
pub struct Pgbench {
    /// Transactions (one primary-key SELECT each) per second, connection time excluded.
    pub tps: f64,
    /// Mean latency of one transaction.
    pub latency_ms: f64,
}

/// Creates the `pgbench` database next to the platform's and fills it (scale 1: 100,000
/// accounts, the size of a busy prompt table).
pub async fn pgbench_init(socket_dir: &Path) -> anyhow::Result<()> {
    let output = pgbench_command(socket_dir)
        .args(["-i", "-q", "-s", "1", "pgbench"])
        .output()
        .await
        .context("start pgbench -i")?;
    if !output.status.success() {
        bail!("pgbench -i failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// `pgbench -S -c clients -j threads -T seconds` over the same UNIX socket the platform uses.
pub async fn pgbench(socket_dir: &Path, clients: usize, seconds: u64) -> anyhow::Result<Pgbench> {
    let threads = clients.min(2);
    let output = pgbench_command(socket_dir)
        .args(["-S", "-n"])
        .args(["-c", &clients.to_string(), "-j", &threads.to_string(), "-T", &seconds.max(1).to_string()])
        .arg("pgbench")
        .output()
        .await
        .context("start pgbench")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!("pgbench failed: {}{}", stdout, String::from_utf8_lossy(&output.stderr));
    }
    let number_after = |label: &str| -> anyhow::Result<f64> {
        let line =
            stdout.lines().find(|l| l.starts_with(label)).with_context(|| format!("no {label:?} in {stdout}"))?;
        let value = line[label.len()..].split_whitespace().next().context("empty value")?;
        Ok(value.parse()?)
    };
    Ok(Pgbench { tps: number_after("tps = ")?, latency_ms: number_after("latency average = ")? })
}

fn pgbench_command(socket_dir: &Path) -> tokio::process::Command {
    let (bin, lib) = match Tools::find_pg_bin() {
        Ok(dir) => (dir.join("pgbench"), Tools::pg_lib_dir(&dir)),
        Err(_) => ("pgbench".into(), Default::default()),
    };
    let mut command = tokio::process::Command::new(bin);
    command.env("LD_LIBRARY_PATH", lib).env("PGHOST", socket_dir).env("PGUSER", "postgres").env("PGPORT", "5432");
    command
}

/// The embedding model on its own, nothing else running, in one configuration of threads.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    /// Threads of one pass (0: candle's own choice, a thread per physical core).
    pub threads: usize,
    /// Median time of one prompt alone.
    pub single_ms: f64,
    /// Passes at once in the second measurement of each batch size: at least 2, and enough to
    /// keep every core busy (as the platform's embedding workers run them by default).
    pub passes: usize,
    /// Prompts a second by batch size ([`MODEL_BATCH`], then [`SMALLER_BATCH`], what 16
    /// concurrent callers can fill at most): one pass at a time, and [`Model::passes`] at once.
    pub by_batch: [(usize, f64, f64); 2],
}

impl Model {
    /// Prompts a second in batches of [`MODEL_BATCH`], the better of one pass at a time and
    /// several at once.
    pub fn batched_per_second(&self) -> f64 {
        self.by_batch[0].1.max(self.by_batch[0].2)
    }

    /// The row's figures, e.g. "12.0 ms one prompt; batches of 32: 178 prompts/s, 168/s with
    /// 2 passes at once; of 16: 156/s, 139/s".
    pub fn describe(&self) -> String {
        let [(big, big_one, big_several), (small, small_one, small_several)] = self.by_batch;
        format!(
            "{:.1} ms one prompt; batches of {big}: {big_one:.0} prompts/s, {big_several:.0}/s with {} passes at once; \
             of {small}: {small_one:.0}/s, {small_several:.0}/s",
            self.single_ms, self.passes
        )
    }
}

/// The model's limits: the best of every configuration measured (the fastest single prompt,
/// the most prompts a second).
#[derive(Debug, Clone)]
pub struct ModelLimits {
    pub configurations: Vec<Model>,
}

impl ModelLimits {
    pub fn single_ms(&self) -> f64 {
        self.configurations.iter().map(|m| m.single_ms).fold(f64::INFINITY, f64::min)
    }

    pub fn batched_per_second(&self) -> f64 {
        self.configurations.iter().map(Model::batched_per_second).fold(0.0, f64::max)
    }
}

/// The smaller batch size also measured.
pub const SMALLER_BATCH: usize = 16;

/// The batch size of the model's own throughput (the platform's micro-batches hold at most this).
pub const MODEL_BATCH: usize = 32;

/// The threads of a pass measured: candle's own choice (every core in one pass), and one
/// thread a pass (the platform's default, `--embedding-threads 1`).
pub const MODEL_THREADS: [usize; 2] = [0, 1];

/// Measures the model in each of [`MODEL_THREADS`], each in a process of its own (this binary
/// with `--model-threads`): candle reads its threads from the environment.
pub async fn model_limits(seconds: f64) -> anyhow::Result<ModelLimits> {
    let exe = std::env::current_exe().context("find this binary")?;
    let mut configurations = Vec::new();
    for threads in MODEL_THREADS {
        let mut command = tokio::process::Command::new(&exe);
        command.args(["--model-threads", &threads.to_string(), "--seconds", &seconds.to_string()]);
        for name in aap_embedding::PASS_THREADS_VARS {
            command.env_remove(name);
        }
        command.envs(aap_embedding::pass_threads_env(threads));
        let output = command.output().await.context("start the model's measurement")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!("the model's measurement ({threads} threads) failed: {}", String::from_utf8_lossy(&output.stderr));
        }
        configurations.push(parse_model(threads, &stdout)?);
    }
    Ok(ModelLimits { configurations })
}

/// The line `--model-threads` prints: the single prompt's median, the passes, then prompts a
/// second for each batch size, one pass and several.
pub fn model_line(model: &Model) -> String {
    let [(_, a, b), (_, c, d)] = model.by_batch;
    format!("model {} {} {a} {b} {c} {d}", model.single_ms, model.passes)
}

fn parse_model(threads: usize, stdout: &str) -> anyhow::Result<Model> {
    let line = stdout.lines().find(|line| line.starts_with("model ")).context("no model line")?;
    let numbers: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad model line {line:?}"))?;
    let [single_ms, passes, a, b, c, d] = numbers[..] else { bail!("bad model line {line:?}") };
    Ok(Model { threads, single_ms, passes: passes as usize, by_batch: [(MODEL_BATCH, a, b), (SMALLER_BATCH, c, d)] })
}

/// The embedding model on its own in this process, with the threads its environment gives a
/// pass (`threads`, as [`aap_embedding::pass_threads_env`] sets them).
pub fn model(threads: usize, seconds: f64) -> anyhow::Result<Model> {
    let embedder = aap_embedding::Embedder::load(&Tools::find_model_dir()?)?;
    let mut index = 0usize;
    let mut next_text = || {
        index += 1;
        crate::scenarios::similar_text(index)
    };
    embedder.embed(&next_text())?;
    let mut single = Vec::new();
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds / 2.0 || single.len() < 5 {
        let text = next_text();
        let one = Instant::now();
        embedder.embed(&text)?;
        single.push(one.elapsed());
    }
    // Prompts a second in batches of `batch`, `passes` at once (a thread each), for `seconds`:
    // `passes` × `batch` over the median time of a pass. The median, not the mean, because on
    // a shared VM a pass now and then takes twice as long (another VM's burst), and a limit
    // measured over a second or two moved ±20% between runs with it, while the similar rows
    // measured beside it held within 4%.
    let per_second = |batch: usize, passes: usize, seconds: f64| -> anyhow::Result<f64> {
        let started = Instant::now();
        let mut times = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..passes)
                .map(|pass| {
                    let embedder = embedder.clone();
                    scope.spawn(move || -> anyhow::Result<Vec<Duration>> {
                        // Texts of their own per pass, never asked before.
                        let mut index = 1_000_000 * (pass + 1) + batch * 100_000;
                        let mut times = Vec::new();
                        while started.elapsed().as_secs_f64() < seconds || times.len() < 5 {
                            let texts: Vec<String> = (0..batch)
                                .map(|_| {
                                    index += 1;
                                    crate::scenarios::similar_text(index)
                                })
                                .collect();
                            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                            let one = Instant::now();
                            embedder.embed_batch(&refs)?;
                            times.push(one.elapsed());
                        }
                        Ok(times)
                    })
                })
                .collect();
            let mut all = Vec::new();
            for thread in threads {
                all.extend(thread.join().expect("a model thread panicked")?);
            }
            anyhow::Ok(all)
        })?;
        Ok((passes * batch) as f64 / median(&mut times).as_secs_f64())
    };
    let passes = aap_embedding::default_workers(threads).max(2);
    let mut by_batch = [(MODEL_BATCH, 0.0, 0.0), (SMALLER_BATCH, 0.0, 0.0)];
    for (batch, one, several) in &mut by_batch {
        *one = per_second(*batch, 1, seconds / 4.0)?;
        *several = per_second(*batch, passes, seconds / 4.0)?;
    }
    Ok(Model { threads, single_ms: median(&mut single).as_secs_f64() * 1e3, passes, by_batch })
}

/// JetStream publishes a second on the platform's NATS server (file storage, as the task stream).
#[derive(Debug, Clone, Copy)]
pub struct JetStream {
    /// One publish at a time, each waiting for its acknowledgement.
    pub sync_per_second: f64,
    /// Up to [`ASYNC_WINDOW`] acknowledgements outstanding.
    pub async_per_second: f64,
}

/// Publishes in flight in the async measurement.
pub const ASYNC_WINDOW: usize = 256;

pub async fn jetstream(nats_url: &str, seconds: f64) -> anyhow::Result<JetStream> {
    let client = async_nats::connect(nats_url).await?;
    let js = jetstream::new(client);
    let stream = "AAP_LOAD_LIMIT";
    let _ = js.delete_stream(stream).await;
    js.create_stream(jetstream::stream::Config {
        name: stream.to_owned(),
        subjects: vec!["aap-load-limit.>".to_owned()],
        storage: jetstream::stream::StorageType::File,
        ..Default::default()
    })
    .await?;
    // About a task message's size.
    let payload = bytes::Bytes::from(vec![b'x'; 120]);
    let budget = Duration::from_secs_f64(seconds / 2.0);

    let started = Instant::now();
    let mut sync = 0u64;
    while started.elapsed() < budget {
        js.publish("aap-load-limit.sync", payload.clone()).await?.await?;
        sync += 1;
    }
    let sync_per_second = sync as f64 / started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut acks = std::collections::VecDeque::new();
    let mut published = 0u64;
    while started.elapsed() < budget {
        acks.push_back(js.publish("aap-load-limit.async", payload.clone()).await?);
        published += 1;
        if acks.len() >= ASYNC_WINDOW
            && let Some(ack) = acks.pop_front()
        {
            ack.await?;
        }
    }
    for ack in acks {
        ack.await?;
    }
    let async_per_second = published as f64 / started.elapsed().as_secs_f64();
    js.delete_stream(stream).await?;
    Ok(JetStream { sync_per_second, async_per_second })
}
