//! Command-line and environment settings shared by `aap serve` and `aap dev`, and those of
//! `aap serve` alone: TLS of its servers and how it reaches NATS.

use std::path::PathBuf;
use std::time::Duration;

use aap_answers::AnswersConfig;
use aap_evaluations::gateway::GatewayConfig;
use aap_platform::auth::{Networks, Role};
use aap_platform::nats::NatsAccess;
use aap_platform::principals::ConfiguredToken;
use aap_sessions::{SessionKey, SessionsConfig};
use aap_tls::{ClientTls, ServerTls};
use clap::Args;
use secrecy::SecretString;

/// Settings of the platform's services.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Address of the gRPC server (AnswersService, SessionService, EvaluationService, health, reflection).
    #[arg(long, env = "AAP_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: String,
    /// Address of the seed's HTTP polling API (/evaluations/api/v1/poll|submit|release).
    #[arg(long, env = "AAP_HTTP_ADDR", default_value = "127.0.0.1:8000")]
    pub http_addr: String,
    /// Address of the operators' web console (and the gRPC-web it calls); `off` serves none.
    #[arg(long, env = "AAP_CONSOLE_ADDR", default_value = "127.0.0.1:8080")]
    pub console_addr: String,
    /// Metrics: address of the Prometheus endpoint (`GET /metrics`, every metric of this
    /// process); `off` serves none.
    #[arg(long, env = "AAP_METRICS_ADDR", default_value = "127.0.0.1:9464", value_parser = check_metrics_addr)]
    pub metrics_addr: String,
    /// Prefix of every NATS stream and subject; environments sharing a NATS server differ in it:
    /// lowercase letters, digits and `-`.
    #[arg(long, env = "AAP_NATS_PREFIX", default_value = "aap", value_parser = nats_prefix)]
    pub nats_prefix: String,
    /// Directory of the all-MiniLM-L6-v2 model (config.json, model.safetensors, tokenizer.json).
    #[arg(long, env = "AAP_MODEL_DIR", default_value_os_t = aap_embedding::default_model_dir())]
    pub model_dir: PathBuf,
    /// Longest prompt accepted, in bytes.
    #[arg(long, env = "AAP_MAX_PROMPT_BYTES", default_value_t = 8 * 1024)]
    pub max_prompt_bytes: usize,
    /// Cosine similarity at or above which a stored prompt counts as similar, in (0, 1].
    #[arg(long, env = "AAP_MIN_SIMILARITY", default_value_t = 0.95, value_parser = similarity)]
    pub min_similarity: f64,
    /// Attempts an evaluation gets (claims that lapse or are released count) before it fails.
    #[arg(long, env = "AAP_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_attempts: u32,
    /// Connections each process keeps to PostgreSQL at most (every service of the process
    /// shares them).
    #[arg(long, env = "AAP_DATABASE_POOL_SIZE", default_value_t = 20)]
    pub database_pool_size: u32,
    /// Prompts that may wait for the embedding model; an Ask beyond that is refused with
    /// RESOURCE_EXHAUSTED instead of queueing without bound.
    #[arg(long, env = "AAP_EMBEDDING_QUEUE", default_value_t = aap_embedding::BatchConfig::default().max_queue)]
    pub embedding_queue: usize,
    /// Entries each of a replica's exact-hit caches holds at most (settled prompts' answers,
    /// prompts by hash, by id, by the text as asked); 0 keeps none, and every Ask reads
    /// PostgreSQL. docs/performance.md, "Exact hits from memory".
    #[arg(long, env = "AAP_ANSWERS_CACHE_ENTRIES", default_value_t = AnswersConfig::default().cache_entries as u32, value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    pub answers_cache_entries: u32,
    /// MiB each of those caches holds at most (estimated from what its entries hold), the
    /// oldest out first: the four together never take more than four times this.
    #[arg(long, env = "AAP_ANSWERS_CACHE_MIB", default_value_t = (AnswersConfig::default().cache_bytes >> 20) as u32, value_parser = clap::value_parser!(u32).range(0..=65_536))]
    pub answers_cache_mib: u32,
    /// Candidates the similarity search (pgvector's HNSW, `hnsw.ef_search`) keeps while it walks
    /// the index: more finds more of the prompts dense clusters of similar prompts hide, and
    /// costs each search in proportion (docs/matching.md, "Prompts the index cannot reach").
    #[arg(long, env = "AAP_SIMILARITY_EF_SEARCH", default_value_t = AnswersConfig::default().ef_search, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub similarity_ef_search: u32,
    /// Stored prompts a second the reachability audit asks the similarity index for (their own
    /// embedding), over all replicas; those it does not find, with nothing near them found
    /// either, are searched exactly beside the index, 256 at most (docs/matching.md, "Prompts
    /// the index cannot reach"). 0 audits none.
    #[arg(long, env = "AAP_SIMILARITY_AUDIT_PER_SECOND", default_value_t = AnswersConfig::default().audit_per_second, value_parser = clap::value_parser!(u32).range(0..=10_000))]
    pub similarity_audit_per_second: u32,
    /// Ask and Watch streams one caller (principal) may hold open on this process at once (each
    /// holds about 30 KB); more are refused with RESOURCE_EXHAUSTED until some close.
    #[arg(long, env = "AAP_MAX_STREAMS_PER_CALLER", default_value_t = AnswersConfig::default().max_streams_per_caller as u32, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_streams_per_caller: u32,
    /// Ask and Watch streams all callers together may hold open on this process at once (about
    /// 30 KB each: size it with the memory the process may take); more are refused with
    /// RESOURCE_EXHAUSTED until some close.
    #[arg(long, env = "AAP_MAX_STREAMS", default_value_t = AnswersConfig::default().max_streams as u32, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_streams: u32,
    /// Oldest answer an Ask that names no `max_age` is served as current, per assistant, e.g.
    /// `chatgpt=7d,claude=7d`: an older answer is streamed marked stale while a refresh is
    /// evaluated. An assistant not listed: answers never go stale.
    #[arg(long, env = "AAP_ANSWER_MAX_AGE", value_delimiter = ',', value_parser = crate::freshness_cmd::parse_assistant_age)]
    pub answer_max_age: Vec<(String, Duration)>,
    /// Most prompts in one forward pass of the embedding model (concurrent Asks share passes).
    #[arg(long, env = "AAP_EMBEDDING_BATCH", default_value_t = aap_embedding::BatchConfig::default().max_batch)]
    pub embedding_batch: usize,
    /// Threads of one forward pass of the embedding model; 0: candle's own choice, a thread per
    /// physical core. One thread a pass, with a pass per core at once, embeds the most prompts a
    /// second (docs/performance.md, "A thread a pass").
    #[arg(long, env = "AAP_EMBEDDING_THREADS", default_value_t = aap_embedding::DEFAULT_PASS_THREADS, value_parser = at_most_threads)]
    pub embedding_threads: usize,
    /// Forward passes of the embedding model that may run at once (default: enough to keep
    /// every core busy, the cores ÷ --embedding-threads).
    #[arg(long, env = "AAP_EMBEDDING_WORKERS", value_parser = at_most_threads)]
    pub embedding_workers: Option<usize>,
    /// Seconds a claim lasts without a heartbeat (Claim stream and Heartbeat).
    #[arg(long, env = "AAP_CLAIM_TTL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub claim_ttl_secs: u64,
    /// Seconds a polling bot (Poll, the seed's HTTP API) has to submit or release; it cannot send heartbeats.
    #[arg(long, env = "AAP_POLL_CLAIM_TTL_SECS", default_value_t = 900, value_parser = clap::value_parser!(u64).range(1..))]
    pub poll_claim_ttl_secs: u64,
    /// Evaluations a bot may run on a leased session before it rotates to the next.
    #[arg(long, env = "AAP_PER_SESSION_RUNS", default_value_t = 10)]
    pub per_session_runs: u32,
    /// Most prompts one account asks in any hour, per assistant, e.g. `chatgpt=40,claude=12`: an
    /// account at its budget is not lent until its oldest lease of the hour leaves the hour, and a
    /// lease grants no more runs than the budget has left. An assistant not listed: no budget.
    #[arg(long, env = "AAP_ACCOUNT_HOURLY_PROMPTS", value_delimiter = ',', value_parser = assistant_count)]
    pub account_hourly_prompts: Vec<(String, u32)>,
    /// Minutes an account rests after a bot challenge (Cloudflare and the like); longer than a
    /// rate limit's rest.
    #[arg(long, env = "AAP_CHALLENGE_COOLDOWN_MINUTES", default_value_t = 60)]
    pub challenge_cooldown_minutes: u64,
    /// Evidence cases of failed bot attempts (screenshot, page HTML) kept per account; a new
    /// one deletes the account's oldest beyond this.
    #[arg(long, env = "AAP_EVIDENCE_PER_ACCOUNT", default_value_t = 100)]
    pub evidence_per_account: u32,
    /// Evidence cases kept overall (up to ~6 MiB each); a new one deletes the oldest beyond this.
    #[arg(long, env = "AAP_EVIDENCE_TOTAL", default_value_t = 2000)]
    pub evidence_total: u32,
    /// Key that encrypts session states and proxy URLs at rest (AES-256-GCM): 32 bytes as 64 hex
    /// digits or base64 (`openssl rand -hex 32`). Keep it: what was stored with it cannot be
    /// read without it. `aap serve` refuses to start without a key; `aap dev` keeps one in
    /// <data dir>/session.key.
    #[arg(long, env = "AAP_SESSION_KEY", hide_env_values = true, value_parser = parse_session_key)]
    pub session_key: Option<SessionKey>,
    /// File holding the session key (hex, base64 or 32 raw bytes), read when --session-key is
    /// not given; e.g. a mounted secret.
    #[arg(long, env = "AAP_SESSION_KEY_FILE", value_parser = read_session_key_file)]
    pub session_key_file: Option<SessionKey>,
    /// An evaluation that no bot takes for this long (none serves its assistant and plan, or the
    /// fleet is down) fails with the reason, so the streams waiting on it end.
    #[arg(long, env = "AAP_QUEUED_TIMEOUT_SECS", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub queued_timeout_secs: u64,
    /// An evaluation whose submitted answer is not stored within this long (lost between the
    /// gateway and the results stream) is asked again, or fails with the reason after its last
    /// attempt.
    #[arg(long, env = "AAP_SUBMITTED_TIMEOUT_SECS", default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    pub submitted_timeout_secs: u64,
    /// Customer tokens (AnswersService), comma-separated, each `principal=token` or a bare
    /// token of the principal `customer`. Recorded as hashes at start; prefer
    /// `aap token create`, which needs no restart.
    #[arg(long, env = "AAP_CUSTOMER_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub customer_tokens: Vec<String>,
    /// Bot tokens (EvaluationService, session leases, the HTTP API), as for customers; a bare
    /// token belongs to the principal `bot`.
    #[arg(long, env = "AAP_BOT_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub bot_tokens: Vec<String>,
    /// Operator tokens (SessionService and AdminService), as for customers; a bare token belongs
    /// to the principal `operator`. The first operator token must come from here.
    #[arg(long, env = "AAP_OPERATOR_TOKENS", value_delimiter = ',', hide_env_values = true)]
    pub operator_tokens: Vec<String>,
    /// Networks (CIDRs or addresses, comma-separated) whose hosts may use the seed's HTTP API
    /// without a token, each as a bot principal named after its address (`seed-10.1.2.3`):
    /// for unmodified seed bots, which cannot send one. Off by default; logged at start.
    #[arg(long, env = "AAP_SEED_HTTP_ALLOW_CIDR", default_value = "", value_parser = parse_networks)]
    pub seed_http_allow_cidr: Networks,
    /// Remote logins (a headful Chromium in its own Xvfb each, about 300 MiB) running at once;
    /// more are refused with RESOURCE_EXHAUSTED.
    #[arg(long, env = "AAP_REMOTE_LOGINS", default_value_t = 2)]
    pub remote_logins: usize,
    /// Seconds without input after which a remote login is abandoned (closed, nothing stored).
    #[arg(long, env = "AAP_REMOTE_LOGIN_IDLE_SECS", default_value_t = 600)]
    pub remote_login_idle_secs: u64,
    /// Where remote logins log in instead of the real site, comma-separated
    /// `assistant=origin` (e.g. `chatgpt=http://127.0.0.1:4101` for the simulator).
    #[arg(long, env = "AAP_REMOTE_LOGIN_ORIGINS", value_delimiter = ',', value_parser = parse_origin)]
    pub remote_login_origins: Vec<(String, String)>,
    /// The Chromium of remote logins.
    #[arg(long, env = "AAP_CHROMIUM", default_value = "/usr/bin/chromium")]
    pub chromium: PathBuf,
    /// chromedriver of the same version as --chromium.
    #[arg(long, env = "AAP_CHROMEDRIVER", default_value = "/usr/bin/chromedriver")]
    pub chromedriver: PathBuf,
    /// The Xvfb binary that gives each remote login its own screen.
    #[arg(long, env = "AAP_XVFB", default_value = "Xvfb")]
    pub xvfb: PathBuf,
}

/// Binds `addr` for `what`; a failure names the address, the cause and the flag that sets it
/// (two processes on one port say "Address already in use" and which flag to change).
async fn bind(addr: &str, what: &str, flag: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|error| anyhow::anyhow!("bind {what} on {addr}: {error} ({flag})"))
}

fn check_metrics_addr(text: &str) -> Result<String, String> {
    aap_platform::metrics::parse_addr(text).map(|_| text.to_owned())
}

fn parse_origin(text: &str) -> Result<(String, String), String> {
    let (assistant, origin) = text.split_once('=').ok_or_else(|| format!("{text:?} is not assistant=origin"))?;
    Ok((assistant.trim().to_ascii_lowercase(), origin.trim().trim_end_matches('/').to_owned()))
}

fn parse_networks(text: &str) -> Result<Networks, String> {
    Networks::parse(text)
}

/// TLS of `aap serve`'s gRPC server and seed HTTP API (both plain text without these).
#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Certificate chain (PEM, the server's certificate first) that the gRPC server and the seed
    /// HTTP API present; with --tls-key both serve TLS only.
    #[arg(long, env = "AAP_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "AAP_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to: with it every gRPC and HTTP
    /// client (bots, customers, operators) must present one (mutual TLS).
    #[arg(long, env = "AAP_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// The servers' TLS, or `None` for plain text.
    pub fn server_tls(&self) -> Option<ServerTls> {
        let (cert, key) = (self.tls_cert.clone()?, self.tls_key.clone()?);
        Some(ServerTls { cert, key, client_ca: self.tls_client_ca.clone() })
    }
}

/// TLS and credentials of `aap serve`'s NATS connection, beyond what --nats-url says (it may
/// carry `user:password@`; `tls://` asks for TLS).
#[derive(Debug, Clone, Default, Args)]
pub struct NatsArgs {
    /// CA certificates (PEM) the NATS server's certificate must chain to (the system's when
    /// absent). Giving it, or a client certificate, requires TLS.
    #[arg(long, env = "AAP_NATS_CA_CERT")]
    pub nats_ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for a NATS server that verifies clients (`verify: true`).
    #[arg(long, env = "AAP_NATS_CLIENT_CERT", requires = "nats_client_key")]
    pub nats_client_cert: Option<PathBuf>,
    /// Private key (PEM) of --nats-client-cert.
    #[arg(long, env = "AAP_NATS_CLIENT_KEY", requires = "nats_client_cert")]
    pub nats_client_key: Option<PathBuf>,
    /// Credentials file (user JWT and nkey seed, as `nsc` writes them) to authenticate with.
    #[arg(long, env = "AAP_NATS_CREDS", conflicts_with = "nats_nkey")]
    pub nats_creds: Option<PathBuf>,
    /// Nkey seed (`SU...`) to authenticate with; its public key is a user of the server.
    #[arg(long, env = "AAP_NATS_NKEY", hide_env_values = true)]
    pub nats_nkey: Option<String>,
}

impl NatsArgs {
    /// How to reach NATS.
    pub fn access(&self) -> NatsAccess {
        NatsAccess {
            tls: ClientTls {
                ca_cert: self.nats_ca_cert.clone(),
                client_cert: self.nats_client_cert.clone(),
                client_key: self.nats_client_key.clone(),
            },
            creds_file: self.nats_creds.clone(),
            nkey_seed: self.nats_nkey.clone().map(SecretString::from),
        }
    }
}

fn parse_session_key(text: &str) -> Result<SessionKey, String> {
    SessionKey::parse(text).map_err(|error| error.to_string())
}

fn read_session_key_file(path: &str) -> Result<SessionKey, String> {
    SessionKey::read_file(std::path::Path::new(path)).map_err(|error| error.to_string())
}

impl ServiceArgs {
    /// Binds the gRPC server's address.
    pub async fn bind_grpc(&self) -> anyhow::Result<tokio::net::TcpListener> {
        bind(&self.grpc_addr, "the gRPC server", "--grpc-addr, AAP_GRPC_ADDR").await
    }

    /// Binds the seed's HTTP API's address.
    pub async fn bind_http(&self) -> anyhow::Result<tokio::net::TcpListener> {
        bind(&self.http_addr, "the seed's HTTP API", "--http-addr, AAP_HTTP_ADDR").await
    }

    /// Binds the console's address; `None` when it is `off` (or empty).
    pub async fn bind_console(&self) -> anyhow::Result<Option<tokio::net::TcpListener>> {
        match self.console_addr.trim() {
            "" | "off" => Ok(None),
            addr => {
                let listener = tokio::net::TcpListener::bind(addr).await.map_err(|error| {
                    anyhow::anyhow!(
                        "bind the console on {addr}: {error} (--console-addr, AAP_CONSOLE_ADDR; `off` serves none)"
                    )
                })?;
                Ok(Some(listener))
            }
        }
    }

    /// Metrics: binds the metrics endpoint's address; `None` when it is `off` (or empty).
    pub async fn bind_metrics(&self) -> anyhow::Result<Option<tokio::net::TcpListener>> {
        Ok(aap_platform::metrics::bind(&self.metrics_addr, "--metrics-addr, AAP_METRICS_ADDR").await?)
    }

    /// The configured tokens of every role.
    pub fn tokens(&self) -> Vec<ConfiguredToken> {
        let roles = [
            (Role::Customer, &self.customer_tokens),
            (Role::Bot, &self.bot_tokens),
            (Role::Operator, &self.operator_tokens),
        ];
        roles
            .into_iter()
            .flat_map(|(role, entries)| entries.iter().filter_map(move |entry| ConfiguredToken::parse(role, entry)))
            .collect()
    }

    /// The platform's configuration for the given database and NATS, served in plain text and
    /// reaching NATS as its URL says.
    pub fn platform(&self, database_url: String, nats_url: String) -> crate::platform::PlatformConfig {
        crate::platform::PlatformConfig {
            database_url,
            nats_url,
            nats_access: NatsAccess::default(),
            tls: None,
            nats_prefix: self.nats_prefix.clone(),
            tokens: self.tokens(),
            seed_http_networks: self.seed_http_allow_cidr.clone(),
            model_dir: self.model_dir.clone(),
            answers: AnswersConfig {
                max_prompt_bytes: self.max_prompt_bytes,
                min_similarity: self.min_similarity,
                max_attempts: self.max_attempts,
                embedding: aap_embedding::BatchConfig {
                    max_batch: self.embedding_batch,
                    max_queue: self.embedding_queue,
                    workers: self
                        .embedding_workers
                        .unwrap_or_else(|| aap_embedding::default_workers(self.embedding_threads)),
                    ..aap_embedding::BatchConfig::default()
                },
                max_age: self.answer_max_age.iter().cloned().collect(),
                cache_entries: self.answers_cache_entries as usize,
                cache_bytes: (self.answers_cache_mib as usize) << 20,
                max_streams_per_caller: self.max_streams_per_caller as usize,
                max_streams: self.max_streams as usize,
                audit_per_second: self.similarity_audit_per_second,
                ef_search: self.similarity_ef_search,
                ..AnswersConfig::default()
            },
            gateway: GatewayConfig {
                claim_ttl: Duration::from_secs(self.claim_ttl_secs),
                poll_claim_ttl: Duration::from_secs(self.poll_claim_ttl_secs),
                ..GatewayConfig::default()
            },
            sessions: SessionsConfig {
                per_session_runs: self.per_session_runs,
                hourly_prompts: self.account_hourly_prompts.iter().cloned().collect(),
                challenge_cooldown: Duration::from_secs(self.challenge_cooldown_minutes.saturating_mul(60)),
                key: self.session_key.clone().or_else(|| self.session_key_file.clone()),
                evidence: aap_sessions::EvidenceLimits {
                    per_account: self.evidence_per_account,
                    total: self.evidence_total,
                },
                ..SessionsConfig::default()
            },
            scheduler_tick: Duration::from_secs(1),
            remote_logins: crate::logins::RemoteLoginsConfig {
                max: self.remote_logins,
                idle: Duration::from_secs(self.remote_login_idle_secs),
                browser: aap_bot::browser::BrowserOptions {
                    chromium: self.chromium.clone(),
                    chromedriver: self.chromedriver.clone(),
                    xvfb: self.xvfb.clone(),
                    ..aap_bot::browser::BrowserOptions::default()
                },
                origins: self.remote_login_origins.iter().cloned().collect(),
                ..crate::logins::RemoteLoginsConfig::default()
            },
            timeouts: aap_evaluations::scheduler::Timeouts {
                queued: Duration::from_secs(self.queued_timeout_secs),
                submitted: Duration::from_secs(self.submitted_timeout_secs),
            },
            services: crate::services::Services::all(),
            stream_replicas: 1,
            database_pool_size: self.database_pool_size.max(1),
        }
    }
}

/// Most threads the embedding model may be given (a pass's, or passes at once): each is an OS
/// thread started at once, and beyond the machine's cores more only wait.
const MAX_EMBEDDING_THREADS: usize = 256;

/// `--embedding-threads` and `--embedding-workers`: 0 to [`MAX_EMBEDDING_THREADS`].
/// A prefix of stream names and subjects (`aap_platform::nats::Topology`): a space, `*` or `>`
/// cannot be in a subject, and streams are named by the prefix in capitals with `-` as `_`, so
/// `AAP`, `a.b` or `a_b` would share the streams of `aap`, `a-b`.
fn nats_prefix(text: &str) -> Result<String, String> {
    match !text.is_empty() && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        true => Ok(text.to_owned()),
        false => Err("lowercase letters, digits and `-` only, e.g. `aap` or `aap-staging`".to_owned()),
    }
}

/// A cosine similarity threshold: above 1 nothing would ever match, at 0 or below everything.
fn similarity(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value > 0.0 && value <= 1.0 => Ok(value),
        Ok(_) => Err("not in (0, 1]: 0.95 matches near-identical prompts only, see docs/matching.md".to_owned()),
        Err(error) => Err(format!("not a number: {error}")),
    }
}

/// `assistant=count`, the count 1 to 10,000 (an hour of prompts).
fn assistant_count(text: &str) -> Result<(String, u32), String> {
    let (assistant, count) = crate::freshness_cmd::assistant_setting(text, "count, e.g. chatgpt=40")?;
    match count.trim().parse::<u32>() {
        Ok(count @ 1..=10_000) => Ok((assistant, count)),
        _ => Err(format!("{count:?} in {text:?} is not a count from 1 to 10000")),
    }
}

fn at_most_threads(text: &str) -> Result<usize, String> {
    let n: usize = text.trim().parse().map_err(|e| format!("not a count: {e}"))?;
    if n <= MAX_EMBEDDING_THREADS { Ok(n) } else { Err(format!("at most {MAX_EMBEDDING_THREADS}")) }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::ServiceArgs;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        service: ServiceArgs,
    }

    fn embedding(args: &[&str]) -> Result<(usize, aap_embedding::BatchConfig), clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("aap").chain(args.iter().copied()))?;
        let config = cli.service.platform("postgres://db".into(), "nats://nats".into());
        Ok((cli.service.embedding_threads, config.answers.embedding))
    }

    #[test]
    fn the_caches_and_stream_limits_default_to_the_services_own_and_refuse_what_is_out_of_range() {
        let answers = |args: &[&str]| -> Result<aap_answers::AnswersConfig, clap::Error> {
            let cli = Cli::try_parse_from(std::iter::once("aap").chain(args.iter().copied()))?;
            Ok(cli.service.platform("postgres://db".into(), "nats://nats".into()).answers)
        };
        let limits = |config: aap_answers::AnswersConfig| {
            (config.cache_entries, config.cache_bytes, config.max_streams_per_caller, config.max_streams)
        };
        let defaults = aap_answers::AnswersConfig::default();
        assert_eq!(
            answers(&[]).ok().map(limits),
            Some((defaults.cache_entries, defaults.cache_bytes, defaults.max_streams_per_caller, defaults.max_streams))
        );
        let set = answers(&[
            "--answers-cache-entries",
            "0",
            "--answers-cache-mib",
            "256",
            "--max-streams-per-caller",
            "5",
            "--max-streams",
            "7",
        ]);
        assert_eq!(set.ok().map(limits), Some((0, 256 << 20, 5, 7)));
        let sessions = |args: &[&str]| -> Result<aap_sessions::SessionsConfig, clap::Error> {
            let cli = Cli::try_parse_from(std::iter::once("aap").chain(args.iter().copied()))?;
            Ok(cli.service.platform("postgres://db".into(), "nats://nats".into()).sessions)
        };
        assert!(sessions(&[]).expect("defaults").hourly_prompts.is_empty(), "no budget unless set");
        let budgets = sessions(&["--account-hourly-prompts", "chatgpt=40, claude = 12"]).expect("budgets");
        let mut budgets: Vec<_> = budgets.hourly_prompts.into_iter().collect();
        budgets.sort();
        assert_eq!(budgets, [("chatgpt".to_owned(), 40), ("claude".to_owned(), 12)]);
        for bad in ["chatgpt", "altavista=3", "chatgpt=0", "chatgpt=-1", "chatgpt=10001", "chatgpt=many"] {
            assert!(sessions(&["--account-hourly-prompts", bad]).is_err(), "{bad:?} accepted");
        }
        for bad in [
            ["--answers-cache-entries", "-1"],
            ["--answers-cache-entries", "10000001"],
            ["--answers-cache-mib", "65537"],
            ["--answers-cache-mib", "lots"],
            ["--max-streams-per-caller", "0"],
            ["--max-streams", "0"],
            ["--max-streams", "-5"],
        ] {
            assert!(answers(&bad).is_err(), "{bad:?} accepted");
        }
    }

    /// Values that would fail every evaluation (no attempt, a claim that lapses at once, a
    /// wait of 0 s), match nothing (a similarity above 1) or name no usable stream (a prefix
    /// with a space: 60 s of "nats streams not ready" before) stop the start.
    #[test]
    fn values_that_would_fail_every_evaluation_are_refused_at_start() {
        let answers = |args: &[&str]| -> Result<aap_answers::AnswersConfig, clap::Error> {
            let cli = Cli::try_parse_from(std::iter::once("aap").chain(args.iter().copied()))?;
            Ok(cli.service.platform("postgres://db".into(), "nats://nats".into()).answers)
        };
        assert_eq!(answers(&["--min-similarity", "0.9"]).ok().map(|a| a.min_similarity), Some(0.9));
        assert_eq!(answers(&["--min-similarity", "1"]).ok().map(|a| a.min_similarity), Some(1.0));
        let prefix = |value: &str| Cli::try_parse_from(["aap", "--nats-prefix", value]).map(|c| c.service.nats_prefix);
        assert_eq!(prefix("aap-staging-2").ok().as_deref(), Some("aap-staging-2"));
        for bad in [
            ["--min-similarity", "2"],
            ["--min-similarity", "0"],
            ["--min-similarity", "95"],
            ["--min-similarity", "NaN"],
            ["--max-attempts", "0"],
            ["--claim-ttl-secs", "0"],
            ["--poll-claim-ttl-secs", "0"],
            ["--queued-timeout-secs", "0"],
            ["--submitted-timeout-secs", "0"],
            ["--nats-prefix", ""],
            ["--nats-prefix", "bad prefix"],
            ["--nats-prefix", "aap>"],
            ["--nats-prefix", "AAP"],
            ["--nats-prefix", "a.b"],
        ] {
            assert!(answers(&bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_embedding_model_runs_a_thread_a_pass_and_a_pass_per_core_unless_told() -> Result<(), clap::Error> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        let (threads, config) = embedding(&[])?;
        assert_eq!((threads, config.workers), (1, cores));
        // Two threads a pass: half as many passes (never none).
        assert_eq!(embedding(&["--embedding-threads", "2"])?.1.workers, (cores / 2).max(1));
        // candle's own choice: one pass over every core.
        assert_eq!(embedding(&["--embedding-threads", "0"])?.1.workers, 1);
        // Workers named are taken as they are.
        assert_eq!(embedding(&["--embedding-threads", "2", "--embedding-workers", "3"])?.1.workers, 3);
        assert_eq!(embedding(&["--embedding-threads", "256", "--embedding-workers", "256"])?.1.workers, 256);
        for bad in ["-1", "abc", "", "1e3", "257", "100000", "99999999999999999999999", "1\u{0}"] {
            assert!(embedding(&["--embedding-threads", bad]).is_err(), "--embedding-threads {bad:?} was taken");
            assert!(embedding(&["--embedding-workers", bad]).is_err(), "--embedding-workers {bad:?} was taken");
        }
        Ok(())
    }
}
