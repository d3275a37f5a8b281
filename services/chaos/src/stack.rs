//! The platform as the run starts it: a 3-node NATS cluster, PostgreSQL, two replicas of every
//! service (`aap serve`) and a fleet of synthetic bots (`aap-bot --engine synthetic`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aap_platform::local::{Postgres, PostgresOptions, Tools};
use anyhow::{Context as _, bail};
use rand::Rng as _;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::proc::Proc;

/// Assistants the bots serve and the Asks target.
pub const ASSISTANTS: &[&str] = &["chatgpt", "claude", "perplexity", "google-ai-overview"];

/// The services a split process runs, as `aap serve --services` names them.
const SERVICES: &[&str] = &["answers", "sessions", "evaluations", "scheduler", "ingest", "console"];

/// Nodes of the NATS cluster.
pub const NATS_NODES: usize = 3;

/// `n` ports the OS says are free now, distinct. The processes of the run are restarted on the
/// same ports (clients and cluster routes know them), so each port is fixed before the first
/// start; the window between this and the child's bind is a few milliseconds. Each is held
/// until all are chosen, so the OS cannot hand one out twice (a NATS client port that was also
/// a node's route port failed a run's start with "attempted to connect to route port").
pub fn free_ports(n: usize) -> anyhow::Result<Vec<u16>> {
    let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0")).collect::<Result<_, _>>()?;
    held.iter().map(|listener| Ok(listener.local_addr()?.port())).collect()
}

/// Secrets of the run, handed to the children through the environment.
pub struct Secrets {
    pub customer: String,
    pub bot: String,
    pub operator: String,
    pub session_key: String,
}

impl Secrets {
    pub fn generate() -> Secrets {
        let random = || hex::encode(rand::rng().random::<[u8; 32]>());
        Secrets { customer: random(), bot: random(), operator: random(), session_key: random() }
    }
}

/// One node of the NATS cluster.
pub struct NatsNode {
    pub proc: Proc,
    pub client_port: u16,
}

/// Three nats-server processes with JetStream, each with its own store, clustered over routes
/// on 127.0.0.1, every write synced (`sync_interval: always`).
pub struct NatsCluster {
    pub nodes: Vec<NatsNode>,
}

impl NatsCluster {
    pub fn new(run_dir: &Path) -> anyhow::Result<NatsCluster> {
        let program = Tools::find_nats_server()?;
        let ports: Vec<(u16, u16)> = free_ports(2 * NATS_NODES)?.chunks(2).map(|pair| (pair[0], pair[1])).collect();
        let mut nodes = Vec::new();
        for (index, (client_port, cluster_port)) in ports.iter().enumerate() {
            let name = format!("nats-{}", index + 1);
            let dir = run_dir.join(&name);
            std::fs::create_dir_all(&dir)?;
            let routes: Vec<String> = ports
                .iter()
                .enumerate()
                .filter(|(other, _)| *other != index)
                .map(|(_, (_, route))| format!("\"nats-route://127.0.0.1:{route}\""))
                .collect();
            let config = format!(
                "server_name: {name}\nhost: 127.0.0.1\nport: {client_port}\nmax_payload: {max_payload}\n\
                 jetstream {{\n  store_dir: {store}\n  sync_interval: always\n}}\n\
                 cluster {{\n  name: aap-chaos\n  host: 127.0.0.1\n  port: {cluster_port}\n  routes: [{routes}]\n}}\n",
                store = serde_quote(&dir.join("store").to_string_lossy()),
                routes = routes.join(", "),
                max_payload = aap_platform::nats::MAX_PAYLOAD,
            );
            let config_path = dir.join("nats.conf");
            std::fs::write(&config_path, config)?;
            let args = vec!["--config".to_owned(), config_path.to_string_lossy().into_owned()];
            nodes.push(NatsNode {
                proc: Proc::new(&name, &program, args, Vec::new(), run_dir),
                client_port: *client_port,
            });
        }
        Ok(NatsCluster { nodes })
    }

    /// Every node's client URL, comma-separated, as `AAP_NATS_URL` takes them.
    pub fn urls(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.client_port)).collect::<Vec<_>>().join(",")
    }

    pub fn start(&mut self) -> anyhow::Result<()> {
        for node in &mut self.nodes {
            node.proc.start()?;
        }
        Ok(())
    }

    /// Waits until JetStream answers through every node (the cluster has a meta leader).
    pub async fn wait_ready(&self, limit: Duration) -> anyhow::Result<()> {
        for node in &self.nodes {
            let url = format!("nats://127.0.0.1:{}", node.client_port);
            wait_for(limit, &format!("JetStream through {url}"), || async {
                let client = async_nats::connect(&url).await.map_err(|e| e.to_string())?;
                let jetstream = async_nats::jetstream::new(client);
                jetstream.query_account().await.map(drop).map_err(|e| e.to_string())
            })
            .await?;
        }
        Ok(())
    }
}

/// A JSON string is a valid quoted NATS config string.
fn serde_quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// PostgreSQL on a data dir of the run, restartable on the same dir.
pub struct Database {
    pub server: Option<Postgres>,
    pub data_dir: PathBuf,
}

impl Database {
    pub async fn start(run_dir: &Path) -> anyhow::Result<Database> {
        let data_dir = run_dir.join("pg");
        let server = Postgres::start(PostgresOptions { data_dir: data_dir.clone(), persistent: true }).await?;
        let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&server.url("postgres")).await?;
        sqlx::query("CREATE DATABASE aap").execute(&mut admin).await?;
        let mut database = <sqlx::PgConnection as sqlx::Connection>::connect(&server.url("aap")).await?;
        // The services would create it too; done once here, no replica races another for it.
        sqlx::query("CREATE EXTENSION IF NOT EXISTS vector").execute(&mut database).await?;
        Ok(Database { server: Some(server), data_dir })
    }

    pub fn url(&self) -> anyhow::Result<String> {
        Ok(self.server.as_ref().context("postgres is down")?.url("aap"))
    }

    /// Stops PostgreSQL (fast shutdown) and starts it again on the same data dir.
    pub async fn restart(&mut self, down_for: Duration) -> anyhow::Result<()> {
        if let Some(server) = self.server.take() {
            server.stop().await?;
        }
        tokio::time::sleep(down_for).await;
        self.server =
            Some(Postgres::start(PostgresOptions { data_dir: self.data_dir.clone(), persistent: true }).await?);
        Ok(())
    }

    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(server) = self.server.take() {
            server.stop().await?;
        }
        Ok(())
    }
}

/// One replica of a service (or of all of them, before `aap serve --services` exists).
pub struct Replica {
    /// The service it runs, or `all`.
    pub service: String,
    pub grpc_port: u16,
    pub proc: Proc,
}

impl Replica {
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    /// Whether it serves customers' Asks.
    pub fn answers(&self) -> bool {
        matches!(self.service.as_str(), "answers" | "all")
    }

    /// Whether bots claim tasks from it.
    pub fn evaluations(&self) -> bool {
        matches!(self.service.as_str(), "evaluations" | "all")
    }
}

/// What `aap serve` of this build supports.
pub struct ServeFeatures {
    /// `--services LIST`: one service per process.
    pub split: bool,
    /// `--nats-stream-replicas N`.
    pub stream_replicas: bool,
}

impl ServeFeatures {
    pub async fn detect(aap: &Path) -> anyhow::Result<ServeFeatures> {
        let output = tokio::process::Command::new(aap).args(["serve", "--help"]).output().await?;
        let help = String::from_utf8_lossy(&output.stdout);
        Ok(ServeFeatures {
            split: help.contains("--services"),
            stream_replicas: help.contains("--nats-stream-replicas"),
        })
    }
}

/// Settings every replica gets.
pub struct ServeSettings<'a> {
    pub aap: &'a Path,
    pub run_dir: &'a Path,
    pub database_url: String,
    pub nats_urls: String,
    pub secrets: &'a Secrets,
    pub claim_ttl_secs: u64,
    pub max_attempts: u32,
    pub features: &'a ServeFeatures,
    /// Servers each stream is kept on (`--nats-stream-replicas`).
    pub stream_replicas: usize,
    /// `RUST_LOG` of the processes.
    pub log_filter: &'a str,
    /// Streams one caller may hold open (`AAP_MAX_STREAMS_PER_CALLER`, and all together 1,000
    /// more, at least the default 20,000: `AAP_MAX_STREAMS`); `None`: the defaults.
    pub max_streams_per_caller: Option<usize>,
}

/// Two replicas of every service (or two all-services processes without the split).
pub fn replicas(settings: &ServeSettings<'_>) -> anyhow::Result<Vec<Replica>> {
    let services: Vec<&str> = if settings.features.split { SERVICES.to_vec() } else { vec!["all"] };
    // Every replica's ports chosen together: chosen one replica at a time, a port let go by
    // one could be handed to the next before either had bound it (a run failed so, its
    // second console's address in use).
    let ports = free_ports(3 * 2 * services.len())?;
    let mut ports = ports.chunks_exact(3).map(<[u16; 3]>::try_from);
    let mut replicas = Vec::new();
    for service in services {
        for index in 1..=2 {
            let Some(Ok(three)) = ports.next() else { anyhow::bail!("three ports a replica") };
            replicas.push(replica(settings, service, &format!("{service}-{index}"), three)?);
        }
    }
    Ok(replicas)
}

/// One `aap serve` process named `name` running `service` (`all`: every service in one) on
/// these gRPC, HTTP and console ports.
pub fn replica(settings: &ServeSettings<'_>, service: &str, name: &str, ports: [u16; 3]) -> anyhow::Result<Replica> {
    let [grpc_port, http_port, console_port] = ports;
    let mut args = vec![
        "serve".to_owned(),
        "--grpc-addr".to_owned(),
        format!("127.0.0.1:{grpc_port}"),
        "--http-addr".to_owned(),
        format!("127.0.0.1:{http_port}"),
    ];
    if service == "console" {
        args.extend(["--console-addr".to_owned(), format!("127.0.0.1:{console_port}")]);
    } else {
        args.extend(["--console-addr".to_owned(), "off".to_owned()]);
    }
    if settings.features.split && service != "all" {
        args.extend(["--services".to_owned(), service.to_owned()]);
    }
    if settings.features.stream_replicas {
        args.extend(["--nats-stream-replicas".to_owned(), settings.stream_replicas.to_string()]);
    }
    let secrets = settings.secrets;
    let mut envs = vec![
        ("AAP_DATABASE_URL".to_owned(), settings.database_url.clone()),
        ("AAP_NATS_URL".to_owned(), settings.nats_urls.clone()),
        ("AAP_SESSION_KEY".to_owned(), secrets.session_key.clone()),
        ("AAP_CUSTOMER_TOKENS".to_owned(), format!("chaos-customer={}", secrets.customer)),
        ("AAP_BOT_TOKENS".to_owned(), format!("chaos-bot={}", secrets.bot)),
        ("AAP_OPERATOR_TOKENS".to_owned(), format!("chaos-operator={}", secrets.operator)),
        ("AAP_CLAIM_TTL_SECS".to_owned(), settings.claim_ttl_secs.to_string()),
        ("AAP_MAX_ATTEMPTS".to_owned(), settings.max_attempts.to_string()),
        ("AAP_METRICS_ADDR".to_owned(), "off".to_owned()),
        ("RUST_LOG".to_owned(), settings.log_filter.to_owned()),
    ];
    if let Some(max) = settings.max_streams_per_caller {
        envs.push(("AAP_MAX_STREAMS_PER_CALLER".to_owned(), max.to_string()));
        envs.push(("AAP_MAX_STREAMS".to_owned(), (max + 1_000).max(20_000).to_string()));
    }
    let proc = Proc::new(name, settings.aap, args, envs, settings.run_dir);
    Ok(Replica { service: service.to_owned(), grpc_port, proc })
}

/// Starts a replica exits with (e.g. JetStream busy electing leaders) before it is restarted,
/// as an orchestrator would; beyond this the run stops.
const START_TRIES: u32 = 5;

/// Waits until the replica's gRPC health says everything it runs is serving; a replica that
/// exits while starting is started again (up to [`START_TRIES`] times).
pub async fn wait_serving(replica: &mut Replica, limit: Duration) -> anyhow::Result<()> {
    let url = replica.url();
    let started = Instant::now();
    let mut tries = 1;
    loop {
        if let Some(status) = replica.proc.exited() {
            if tries >= START_TRIES {
                bail!(
                    "{} exited with {status} while starting; see {}",
                    replica.proc.name,
                    replica.proc.log().display()
                );
            }
            tracing::warn!(replica = replica.proc.name, %status, "exited while starting; starting it again");
            tries += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
            replica.proc.start()?;
            continue;
        }
        if serving(&url).await {
            return Ok(());
        }
        if started.elapsed() > limit {
            bail!("{} not serving after {limit:?}; see {}", replica.proc.name, replica.proc.log().display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn serving(url: &str) -> bool {
    let Ok(endpoint) = tonic::transport::Endpoint::from_shared(url.to_owned()) else { return false };
    let Ok(channel) = endpoint.connect_timeout(Duration::from_secs(1)).connect().await else { return false };
    let mut health = HealthClient::new(channel);
    let check = health.check(HealthCheckRequest { service: String::new() });
    matches!(
        tokio::time::timeout(Duration::from_secs(2), check).await,
        Ok(Ok(response)) if response.get_ref().status == ServingStatus::Serving as i32
    )
}

/// A synthetic bot process.
pub struct Bot {
    pub proc: Proc,
}

/// Settings of the bot fleet.
pub struct FleetSettings<'a> {
    pub aap_bot: &'a Path,
    pub run_dir: &'a Path,
    pub bot_token: &'a str,
    pub bots: usize,
    pub concurrency: u32,
    pub fail_rate: f64,
    pub delay_ms: u64,
}

/// `bots` synthetic bot processes across the assistants, each on one evaluations replica in turn.
pub fn fleet(settings: &FleetSettings<'_>, evaluation_urls: &[String]) -> Vec<Bot> {
    (0..settings.bots)
        .map(|index| {
            let assistant = ASSISTANTS[index % ASSISTANTS.len()];
            let url = &evaluation_urls[index % evaluation_urls.len()];
            let name = format!("bot-{assistant}-{}", index / ASSISTANTS.len() + 1);
            let args = [
                "--engine",
                "synthetic",
                "--grpc-url",
                url,
                "--assistant-name",
                assistant,
                "--plan-name",
                "Plus",
                "--bot-id",
                &name,
                "--concurrency",
                &settings.concurrency.to_string(),
                "--synthetic-fail-rate",
                &settings.fail_rate.to_string(),
                "--synthetic-delay-ms",
                &settings.delay_ms.to_string(),
                "--poll-retry-seconds",
                "0.5",
                "--shutdown-grace-seconds",
                "5",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            let envs = vec![("AAP_BOT_TOKEN".to_owned(), settings.bot_token.to_owned())];
            Bot { proc: Proc::new(&name, settings.aap_bot, args, envs, settings.run_dir) }
        })
        .collect()
}

/// Calls `probe` until it succeeds or `limit` passes.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut probe: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    loop {
        let error = match probe().await {
            Ok(()) => return Ok(()),
            Err(error) => error,
        };
        if started.elapsed() > limit {
            bail!("{what}: not ready after {limit:?}: {error}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
