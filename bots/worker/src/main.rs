//! `aap-bot`: parses flags, sets up logging and signals, runs the bot.

use std::sync::Mutex;

use aap_bot::Args;
use anyhow::Context;
use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(&args.log_level, args.log_file.as_deref())?;
    let config = args.into_config()?;
    aap_bot::run(config, aap_bot::shutdown_signal()).await
}

/// Console logs (JSON when not a terminal), plus the same lines in `log_file` when given.
fn init_logging(level: &str, log_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    // "INFO" as the seed spells it, or a full filter such as "aap_bot=debug,info".
    let filter = EnvFilter::try_new(level.to_lowercase()).with_context(|| format!("invalid --log-level {level:?}"))?;
    let json = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = Vec::new();
    let console = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    layers.push(if json { console.json().boxed() } else { console.boxed() });
    if let Some(path) = log_file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("open log file {}", path.display()))?;
        layers.push(tracing_subscriber::fmt::layer().with_ansi(false).with_writer(Mutex::new(file)).boxed());
    }
    tracing_subscriber::registry().with(layers).with(filter).init();
    Ok(())
}
