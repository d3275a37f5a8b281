//! `aap dev`: the whole platform on one machine, in one process and one terminal.
//!
//! A private PostgreSQL and NATS JetStream keep their data under the data dir (kept across
//! restarts); every service, one simulator per assistant site (ChatGPT, Claude, Perplexity,
//! Google AI Overview) and the browser bots run in this process. Dev tokens are written to
//! `<data dir>/dev.env`. Ctrl-C stops everything in order.

use std::path::{Path, PathBuf};

use aap_platform::local::{Nats, NatsOptions, Postgres, PostgresOptions};
use aap_proto::v1::session_service_client::SessionServiceClient;
use aap_proto::v1::{AskRequest, CreateAccountRequest, ListAccountsRequest, UpdateSessionStateRequest};
use anyhow::Context as _;
use futures::StreamExt;
use rand::distr::{Alphanumeric, SampleString};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::client::{self, Bearer};
use crate::config::ServiceArgs;
use crate::platform::Platform;

/// Settings of `aap dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Where PostgreSQL, NATS and dev.env keep their data.
    #[arg(long, env = "AAP_DATA_DIR", default_value = ".aap")]
    pub data_dir: PathBuf,
    /// Browser bots per assistant, each with its own headless Chromium (opened on the first
    /// task, closed again after the idle timeout).
    #[arg(long, env = "AAP_DEV_BOTS", default_value_t = 2)]
    pub bots: usize,
    /// Assistants to simulate and run bots for (comma separated ids).
    #[arg(
        long,
        env = "AAP_DEV_ASSISTANTS",
        value_delimiter = ',',
        default_value = "chatgpt,claude,perplexity,google-ai-overview"
    )]
    pub assistants: Vec<String>,
    /// Prompt asked once everything is up.
    #[arg(long, default_value = "What are the best laptops under $1,000?")]
    pub sample_prompt: String,
    /// Do not ask the sample prompt.
    #[arg(long)]
    pub no_sample: bool,
    #[command(flatten)]
    pub service: ServiceArgs,
}

/// The dev tokens, one per role.
#[derive(Debug, Clone)]
pub struct DevTokens {
    pub customer: String,
    pub bot: String,
    pub operator: String,
}

/// Reads one value of `<data_dir>/dev.env`.
pub fn read_dev_token(data_dir: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(data_dir.join("dev.env")).ok()?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("export ").or(Some(line.trim())))
        .find_map(|line| line.strip_prefix(key)?.strip_prefix('=').map(|v| v.trim_matches('"').to_owned()))
}

/// Reuses the tokens of an earlier run, or makes new ones, and writes them to dev.env.
fn dev_tokens(data_dir: &Path) -> anyhow::Result<DevTokens> {
    let token = |key: &str, prefix: &str| {
        read_dev_token(data_dir, key)
            .unwrap_or_else(|| format!("{prefix}-{}", Alphanumeric.sample_string(&mut rand::rng(), 32)))
    };
    let tokens = DevTokens {
        customer: token("AAP_CUSTOMER_TOKEN", "cust"),
        bot: token("AAP_BOT_TOKEN", "bot"),
        operator: token("AAP_OPERATOR_TOKEN", "op"),
    };
    let env = format!(
        "# written by `aap dev`: source it to call the local platform\n\
         export AAP_CUSTOMER_TOKEN={}\nexport AAP_BOT_TOKEN={}\nexport AAP_OPERATOR_TOKEN={}\n",
        tokens.customer, tokens.bot, tokens.operator
    );
    std::fs::write(data_dir.join("dev.env"), env).context("write dev.env")?;
    Ok(tokens)
}

/// Adds the platform's gRPC address to dev.env, so the CLI's commands (`aap ask`, `aap
/// token`, ...) reach it once dev.env is sourced, whatever `--grpc-addr` it listens on.
fn write_server(data_dir: &Path, grpc_url: &str) -> anyhow::Result<()> {
    let mut env = std::fs::OpenOptions::new().append(true).open(data_dir.join("dev.env")).context("open dev.env")?;
    std::io::Write::write_all(&mut env, format!("export AAP_SERVER={grpc_url}\n").as_bytes()).context("write dev.env")
}

async fn ensure_database(pg: &Postgres, name: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&pg.url("postgres")).await.context("connect to postgres")?;
    let exists: Option<(i32,)> =
        sqlx::query_as("SELECT 1 FROM pg_database WHERE datname = $1").bind(name).fetch_optional(&mut conn).await?;
    if exists.is_none() {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&mut conn).await?;
    }
    Ok(())
}

/// The plan the dev accounts of a site are on: the tier a customer would pay for.
fn dev_plan(site: aap_simulator::Site) -> &'static str {
    match site {
        aap_simulator::Site::ChatGpt => "Plus",
        aap_simulator::Site::Claude | aap_simulator::Site::Perplexity => "Pro",
        aap_simulator::Site::GoogleAiOverview => "Free",
    }
}

/// Creates (or refreshes, on a restart) one simulator account per bot in SessionService.
async fn register_simulator_sessions(
    grpc: &str,
    operator_token: &str,
    sim: &aap_simulator::Simulator,
    count: usize,
) -> anyhow::Result<()> {
    let channel = tonic::transport::Channel::from_shared(grpc.to_owned())?.connect().await?;
    let mut sessions = SessionServiceClient::with_interceptor(channel, Bearer::new(operator_token)?);
    let assistant = sim.site().id();
    let existing = sessions
        .list_accounts(ListAccountsRequest { assistant: assistant.into(), ..Default::default() })
        .await?
        .into_inner()
        .accounts;
    for i in 1..=count.max(1) {
        let label = format!("simulator-{i}");
        // The simulator's sessions live in its memory: a restart needs fresh ones.
        let state = sim.create_session(&label).await.storage_state_json;
        match existing.iter().find(|a| a.label == label) {
            Some(account) => {
                sessions
                    .update_session_state(UpdateSessionStateRequest {
                        account_id: account.id.clone(),
                        storage_state_json: state,
                    })
                    .await?;
            }
            None => {
                sessions
                    .create_account(CreateAccountRequest {
                        assistant: assistant.into(),
                        plan: dev_plan(sim.site()).into(),
                        label,
                        storage_state_json: state,
                        ..Default::default()
                    })
                    .await?;
            }
        }
    }
    Ok(())
}

/// Runs the dev stack until Ctrl-C.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("create {}", args.data_dir.display()))?;
    let data_dir = std::fs::canonicalize(&args.data_dir)?;
    println!("starting PostgreSQL and NATS under {}", data_dir.display());
    let pg = Postgres::start(PostgresOptions { data_dir: data_dir.join("pg"), persistent: true }).await?;
    let nats =
        Nats::start(NatsOptions { store_dir: data_dir.join("nats"), port: None, tls: None, nkey_users: Vec::new() })
            .await?;
    ensure_database(&pg, "aap").await?;

    let tokens = dev_tokens(&data_dir)?;
    let mut service = args.service.clone();
    // One key for the life of the data dir: the sessions stored under it stay readable.
    if service.session_key.is_none() && service.session_key_file.is_none() {
        let path = data_dir.join("session.key");
        service.session_key = Some(aap_sessions::SessionKey::load_or_create(&path).context("session key")?);
    }
    // One principal per role, named for what it is; `aap token create` adds more.
    service.customer_tokens = vec![format!("dev-customer={}", tokens.customer)];
    service.bot_tokens = vec![format!("dev-bot={}", tokens.bot)];
    service.operator_tokens = vec![format!("dev-operator={}", tokens.operator)];
    // The look-alikes start first: the console's remote logins open their login pages, not the
    // real sites'.
    let sites = args
        .assistants
        .iter()
        .map(|id| id.parse::<aap_simulator::Site>())
        .collect::<Result<Vec<_>, _>>()
        .context("--assistants")?;
    let mut sims = Vec::new();
    for site in &sites {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let sim = aap_simulator::Simulator::start(listener, *site, aap_simulator::SimulatorConfig::default()).await?;
        if service.remote_login_origins.iter().all(|(assistant, _)| assistant != site.id()) {
            service.remote_login_origins.push((site.id().to_owned(), sim.base_url.clone()));
        }
        sims.push(sim);
    }
    let grpc = service.bind_grpc().await?;
    let http = service.bind_http().await?;
    let console = service.bind_console().await?;
    let metrics = service.bind_metrics().await?;
    let mut platform =
        Platform::start_with_console(service.platform(pg.url("aap"), nats.url()), grpc, http, console).await?;
    // The bots run in this process: their metrics are on the same endpoint.
    let metrics_addr = metrics.map(|listener| platform.serve_metrics(listener)).transpose()?;
    let grpc_url = format!("http://{}", platform.grpc_addr);
    write_server(&data_dir, &grpc_url)?;

    for sim in &sims {
        register_simulator_sessions(&grpc_url, &tokens.operator, sim, args.bots).await?;
    }

    let (stop_bots, bots_stopped) = watch::channel(false);
    let mut bots = tokio::task::JoinSet::new();
    for sim in &sims {
        let site = sim.site();
        for i in 1..=args.bots {
            let mut config =
                aap_bot::BotConfig::grpc(&grpc_url, &tokens.bot, &format!("dev-{site}-{i}"), site.id(), dev_plan(site))
                    .with_assistant_url(&sim.base_url);
            config.idle_timeout = Some(std::time::Duration::from_secs(600));
            config.evidence.dir = data_dir.join("evidence");
            let mut stop = bots_stopped.clone();
            bots.spawn(async move {
                let shutdown = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(err) = aap_bot::run(config, shutdown).await {
                    tracing::error!(bot = i, %site, error = %err, "bot stopped");
                }
            });
        }
    }

    println!();
    println!("AI-assistants answers platform, local:");
    println!("  gRPC          {grpc_url}   (grpcurl -plaintext {} list)", platform.grpc_addr);
    println!(
        "  seed HTTP API http://{}/evaluations/api/v1/poll|submit|release",
        platform.http_addr.map_or_else(|| "-".to_owned(), |a| a.to_string())
    );
    if let Some(addr) = platform.console_addr {
        let note =
            if crate::console::built() { "sign in with AAP_OPERATOR_TOKEN" } else { "NOT BUILT: npm ci in console/" };
        println!("  console       http://{addr}   ({note})");
    }
    if let Some(addr) = metrics_addr {
        println!("  metrics       http://{addr}/metrics   (Prometheus; platform and bots)");
    }
    for sim in &sims {
        println!("  {:<13} {}   (simulator, {} bots)", sim.site().id(), sim.base_url, args.bots);
    }
    println!("  evidence      {}   (page HTML + screenshot of failed attempts)", data_dir.join("evidence").display());
    println!("  PostgreSQL    {}", pg.url("aap"));
    println!("  NATS          {}", nats.url());
    println!("  tokens        {}  (source it)", data_dir.join("dev.env").display());
    println!("    AAP_CUSTOMER_TOKEN={}", tokens.customer);
    println!("    AAP_BOT_TOKEN={}", tokens.bot);
    println!("    AAP_OPERATOR_TOKEN={}", tokens.operator);
    println!();

    let sample = async {
        if args.no_sample {
            return Ok::<(), anyhow::Error>(());
        }
        println!("asking the sample prompt: {:?}", args.sample_prompt);
        let mut client = client::connect(&grpc_url, &tokens.customer, &aap_tls::ClientTls::default()).await?;
        let request = AskRequest {
            query: Some(aap_proto::v1::ask_request::Query::Prompt(args.sample_prompt.clone())),
            targets: sites
                .iter()
                .map(|site| aap_proto::v1::Target { assistant: site.id().into(), plan: String::new() })
                .collect(),
            ..Default::default()
        };
        let stream = client.ask(request).await?.into_inner().map(|r| r.map(|r| r.event.unwrap_or_default()));
        client::print_events(stream, &mut std::io::stdout()).await?;
        println!("\nready: `aap ask \"...\"` in another terminal; Ctrl-C stops everything");
        Ok(())
    };
    tokio::select! {
        result = sample => {
            if let Err(err) = result {
                eprintln!("sample prompt failed: {err:#}");
            }
            aap_bot::shutdown_signal().await;
        }
        () = aap_bot::shutdown_signal() => {}
    }

    println!("\nstopping: bots, services, simulators, NATS, PostgreSQL");
    let _ = stop_bots.send(true);
    while bots.join_next().await.is_some() {}
    platform.shutdown().await?;
    for sim in sims {
        sim.shutdown().await;
    }
    nats.stop().await?;
    pg.stop().await?;
    println!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// dev.env holds the tokens, kept across restarts, and the address the platform listens
    /// on this time.
    #[test]
    fn dev_env_keeps_its_tokens_and_says_where_the_platform_listens() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = dev_tokens(dir.path()).expect("tokens");
        write_server(dir.path(), "http://127.0.0.1:51051").expect("server");
        assert_eq!(read_dev_token(dir.path(), "AAP_SERVER").as_deref(), Some("http://127.0.0.1:51051"));
        // A restart on another address: the same tokens, the new address alone.
        let again = dev_tokens(dir.path()).expect("tokens again");
        write_server(dir.path(), "http://127.0.0.1:50051").expect("server again");
        assert_eq!((again.customer, again.bot, again.operator), (first.customer, first.bot, first.operator));
        let text = std::fs::read_to_string(dir.path().join("dev.env")).expect("read");
        assert_eq!(text.matches("AAP_SERVER=").count(), 1, "{text}");
        assert_eq!(read_dev_token(dir.path(), "AAP_SERVER").as_deref(), Some("http://127.0.0.1:50051"));
    }
}
