//! `aap`: the AI-assistants answers platform in one binary.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use aap::client;
use aap::config::{NatsArgs, ServiceArgs, TlsArgs};
use aap::platform::{Listeners, Platform};
use aap::services::Service;
use aap_proto::v1::{AskRequest, SimilarPolicy, WatchRequest};
use aap_telemetry::memory::Counting;
use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use tokio::net::TcpListener;

/// mimalloc: under the pipeline's load glibc's malloc and free were 12% of `aap serve`'s CPU
/// (docs/performance.md). Counted, so `/metrics` shows the live allocations beside the resident
/// set (`aap_heap_allocated_bytes`: a leak grows it, the allocator's kept pages do not).
#[global_allocator]
static ALLOCATOR: Counting<mimalloc::MiMalloc> = Counting::new(mimalloc::MiMalloc);

/// The AI-assistants answers platform: what ChatGPT, Claude, Perplexity and Google AI Overview
/// answer to a prompt, with citations.
#[derive(Debug, Parser)]
#[command(name = "aap", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the whole platform locally in one terminal: a private PostgreSQL and NATS under
    /// the data dir, every service, the assistant simulator, and browser bots; then asks a
    /// sample prompt. Ctrl-C stops everything.
    Dev(aap::dev::DevArgs),
    /// Serves the platform's services (all, or those of --services) against an existing
    /// PostgreSQL (with pgvector) and NATS JetStream; run as many replicas as you like.
    Serve {
        /// Services this process runs, comma-separated: answers, sessions, evaluations,
        /// scheduler, ingest, console; or `all`. Every process also serves health, reflection
        /// and AdminService on --grpc-addr.
        #[arg(long, env = "AAP_SERVICES", default_value = "all")]
        services: aap::services::Services,
        /// Servers of the NATS cluster that keep each stream the platform creates (3 on a
        /// three-node cluster); an existing stream is changed to this.
        #[arg(long, env = "AAP_NATS_STREAM_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
        nats_stream_replicas: u8,
        /// PostgreSQL URL; for TLS add `?sslmode=verify-full&sslrootcert=/path/ca.pem`.
        #[arg(long, env = "AAP_DATABASE_URL")]
        database_url: String,
        /// NATS URL; `tls://` for TLS, `nats://user:password@host:4222` for a password.
        #[arg(long, env = "AAP_NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
        #[command(flatten)]
        service: ServiceArgs,
        #[command(flatten)]
        tls: TlsArgs,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Asks a prompt and prints each assistant's answer and citations as they arrive.
    Ask(AskArgs),
    /// Follows a stored prompt's evaluations (e.g. after a disconnect).
    Watch {
        /// The prompt's id.
        prompt_id: i64,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Shows how a prompt's answer and its sources changed over time, oldest first.
    History(aap::freshness_cmd::HistoryArgs),
    /// Keeps prompts fresh on a schedule: set, list, delete (operator).
    #[command(subcommand)]
    Refresh(aap::freshness_cmd::RefreshCommand),
    /// Creates, lists and revokes the tokens of customers, bots and operators (operator).
    #[command(subcommand)]
    Token(aap::tokens::TokenCommand),
    /// Lists the assistant accounts, disables, enables and deletes them (operator).
    #[command(subcommand)]
    Accounts(aap::accounts_cmd::AccountsCommand),
    /// Session files of assistant accounts: capture one on a desktop, or bring the seed's
    /// `sessions/` directory to the platform (operator).
    #[command(subcommand)]
    Session(aap::session_cmd::SessionCommand),
    /// Runs a browser bot (the same as `aap-bot`): takes tasks over gRPC or the seed's HTTP API.
    Bot(aap_bot::Args),
    /// Serves the assistant simulators alone, for demos: one origin per site (ChatGPT, Claude,
    /// Perplexity, Google AI Overview) on consecutive ports, each with a demo session printed.
    Simulator {
        /// Address of the first site; the next sites take the following ports (port 0: any).
        #[arg(long, env = "AAP_SIMULATOR_ADDR", default_value = "127.0.0.1:8100")]
        addr: String,
        /// Sites to serve, comma separated (default: all four).
        #[arg(long, value_delimiter = ',')]
        sites: Vec<aap_simulator::Site>,
    },
}

#[derive(Debug, clap::Args)]
struct ConnArgs {
    /// The platform's gRPC address; `https://` for TLS.
    /// Default: the `AAP_SERVER` in <data dir>/dev.env (`aap dev` writes it), else
    /// http://127.0.0.1:50051.
    #[arg(long, env = "AAP_SERVER")]
    server: Option<String>,
    #[command(flatten)]
    tls: client::TlsArgs,
    /// Customer token; read from <data dir>/dev.env when unset.
    #[arg(long, env = "AAP_CUSTOMER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Data dir of `aap dev`, where dev.env holds the dev tokens.
    #[arg(long, env = "AAP_DATA_DIR", default_value = ".aap")]
    data_dir: PathBuf,
}

impl ConnArgs {
    async fn connect(&self) -> anyhow::Result<client::Client> {
        let token = client::token_or_dev(&self.token, &self.data_dir, "AAP_CUSTOMER_TOKEN")?;
        client::connect(&client::server_or_dev(&self.server, &self.data_dir), &token, &self.tls.client_tls()).await
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PolicyArg {
    Suggest,
    Accept,
    ForceNew,
}

#[derive(Debug, clap::Args)]
struct AskArgs {
    /// The prompt.
    #[arg(required_unless_present = "prompt_id")]
    prompt: Option<String>,
    /// Ask by a stored prompt's id instead (e.g. to take a suggestion).
    #[arg(long, conflicts_with = "prompt")]
    prompt_id: Option<i64>,
    /// Assistant to ask, as `id` or `id:plan` (chatgpt, claude, perplexity,
    /// google-ai-overview); repeat for several. Default: every assistant.
    #[arg(long = "target", short = 't')]
    targets: Vec<String>,
    /// What to do when a similar prompt is stored.
    #[arg(long, value_enum, default_value = "suggest")]
    policy: PolicyArg,
    /// Lowest similarity counted as similar, in (0, 1].
    #[arg(long)]
    min_similarity: Option<f64>,
    /// Oldest answer served as current, e.g. 7d: an older one is shown marked stale while a
    /// refresh runs, and the fresh one follows.
    #[arg(long, value_parser = aap::freshness_cmd::parse_duration)]
    max_age: Option<std::time::Duration>,
    /// Also list stored prompts that are near but ask something else (another price, year,
    /// brand…), with why.
    #[arg(long)]
    related: bool,
    #[command(flatten)]
    conn: ConnArgs,
}

/// Runs the command; an error ends the process with one line on stderr naming what is wrong
/// (`error: cannot connect to nats at ...: Connection refused`) and status 1.
fn main() -> ExitCode {
    aap_telemetry::memory::count_heap(&ALLOCATOR);
    let cli = Cli::parse();
    // The embedding model's threads are read from the environment, set before the runtime
    // starts any thread.
    let embedding_threads = match &cli.command {
        Command::Dev(args) => Some(args.service.embedding_threads),
        Command::Serve { service, .. } => Some(service.embedding_threads),
        _ => None,
    };
    if let Some(threads) = embedding_threads {
        set_embedding_threads(threads);
    }
    let ran = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    match ran {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", aap_telemetry::report::one_line(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// [`aap_embedding::set_pass_threads`], from `main` before the runtime starts.
#[allow(unsafe_code)]
fn set_embedding_threads(threads: usize) {
    // SAFETY: called from `main` before the runtime starts: no other thread runs yet.
    unsafe { aap_embedding::set_pass_threads(threads) }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Dev(args) => {
            let _telemetry = aap_platform::telemetry::init("aap-dev", "warn")?;
            aap::dev::run(args).await
        }
        Command::Serve { services, nats_stream_replicas, database_url, nats_url, service, tls, nats } => {
            let _telemetry = aap_platform::telemetry::init("aap", "info")?;
            let grpc = service.bind_grpc().await?;
            // The seed's HTTP API and the console listen only where their services run.
            let http = match services.runs(Service::Evaluations) {
                true => Some(service.bind_http().await?),
                false => None,
            };
            let console = match services.runs(Service::Console) {
                true => service.bind_console().await?,
                false => None,
            };
            let mut config = service.platform(database_url, nats_url);
            config.tls = tls.server_tls();
            config.nats_access = nats.access();
            config.services = services;
            config.stream_replicas = usize::from(nats_stream_replicas);
            let metrics = service.bind_metrics().await?;
            let mut platform = Platform::serve(config, Listeners { grpc, http, console }).await?;
            if let Some(listener) = metrics {
                platform.serve_metrics(listener)?;
            }
            aap_bot::shutdown_signal().await;
            platform.shutdown().await
        }
        Command::Ask(args) => {
            let mut client = args.conn.connect().await?;
            let query = match (args.prompt, args.prompt_id) {
                (_, Some(id)) => aap_proto::v1::ask_request::Query::PromptId(id),
                (Some(text), None) => aap_proto::v1::ask_request::Query::Prompt(text),
                (None, None) => anyhow::bail!("give a prompt or --prompt-id"),
            };
            let policy = match args.policy {
                PolicyArg::Suggest => SimilarPolicy::Suggest,
                PolicyArg::Accept => SimilarPolicy::Accept,
                PolicyArg::ForceNew => SimilarPolicy::ForceNew,
            };
            let request = AskRequest {
                query: Some(query),
                targets: args.targets.iter().map(|t| client::parse_target(t)).collect(),
                policy: policy as i32,
                min_similarity: args.min_similarity,
                include_html: false,
                max_age: args.max_age.map(|age| prost_types::Duration { seconds: age.as_secs() as i64, nanos: 0 }),
                include_related: args.related,
            };
            let stream = client.ask(request).await?.into_inner().map(|r| r.map(|r| r.event.unwrap_or_default()));
            let failed = client::print_events(stream, &mut aap::stdout::stdout()).await?;
            if failed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Watch { prompt_id, conn } => {
            let mut client = conn.connect().await?;
            let stream = client
                .watch(WatchRequest { prompt_id, targets: Vec::new(), include_html: false })
                .await?
                .into_inner()
                .map(|r| r.map(|r| r.event.unwrap_or_default()));
            // As `aap ask`: a script can tell a prompt with a target that failed for good.
            let failed = client::print_events(stream, &mut aap::stdout::stdout()).await?;
            if failed > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::History(args) => aap::freshness_cmd::history(args, &mut aap::stdout::stdout()).await,
        Command::Refresh(command) => aap::freshness_cmd::refresh(command, &mut aap::stdout::stdout()).await,
        Command::Token(command) => aap::tokens::run(command).await,
        Command::Accounts(command) => aap::accounts_cmd::run(command, &mut aap::stdout::stdout()).await,
        Command::Session(command) => {
            let _telemetry = aap_platform::telemetry::init("aap", "info")?;
            aap::session_cmd::run(command).await
        }
        Command::Bot(args) => {
            let _telemetry = aap_platform::telemetry::init("aap-bot", &args.log_level.to_lowercase())?;
            let config = args.into_config()?;
            aap_bot::run(config, aap_bot::shutdown_signal()).await
        }
        Command::Simulator { addr, sites } => {
            let _telemetry = aap_platform::telemetry::init("aap-simulator", "info")?;
            let base: std::net::SocketAddr = addr.parse().with_context(|| format!("--addr {addr}"))?;
            let sites = if sites.is_empty() { aap_simulator::Site::ALL.to_vec() } else { sites };
            let mut sims = Vec::new();
            for (index, site) in sites.into_iter().enumerate() {
                // One origin per site, as on the real web: ports base, base+1, ...
                let port = if base.port() == 0 { 0 } else { base.port() + index as u16 };
                let at = std::net::SocketAddr::new(base.ip(), port);
                let listener = TcpListener::bind(at).await.with_context(|| format!("bind {at}"))?;
                let sim =
                    aap_simulator::Simulator::start(listener, site, aap_simulator::SimulatorConfig::default()).await?;
                let session = sim.create_session("demo").await;
                let mut out = aap::stdout::stdout();
                writeln!(out, "{:<19} {}", site.id(), sim.base_url)?;
                writeln!(out, "  session cookie    {}={}", site.session_cookie(), session.token)?;
                writeln!(out, "  storage state     {}", session.storage_state_json)?;
                sims.push(sim);
            }
            writeln!(
                aap::stdout::stdout(),
                "knobs: curl -X PUT <url>/__sim/config -d '{{\"redesign\": true}}'  (see docs/simulator.md)"
            )?;
            aap_bot::shutdown_signal().await;
            for sim in sims {
                sim.shutdown().await;
            }
            Ok(())
        }
    }
}
