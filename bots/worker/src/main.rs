//! `aap-bot`: parses flags, sets up logging, trace export and signals, runs the bot.

use std::process::ExitCode;
use std::sync::Mutex;

use aap_bot::Args;
use anyhow::Context;
use clap::Parser;
use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Runs the bot; an error ends the process with one line on stderr naming what is wrong, and
/// status 1, so a supervisor's log says why it stopped.
#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let ran = async {
        let _traces = init_logging(&args.log_level, args.log_file.as_deref())?;
        let config = args.into_config()?;
        aap_bot::run(config, aap_bot::shutdown_signal()).await
    };
    match ran.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", aap_telemetry::report::one_line(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// Console logs (JSON when not a terminal), plus the same lines in `log_file` when given, and
/// OTLP trace export (as the platform's) when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
fn init_logging(level: &str, log_file: Option<&std::path::Path>) -> anyhow::Result<aap_telemetry::traces::ExportGuard> {
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
    let provider = if aap_telemetry::traces::export_requested() {
        Some(aap_telemetry::traces::otlp_provider("aap-bot").context("otlp trace exporter")?)
    } else {
        None
    };
    if let Some(provider) = &provider {
        layers.push(tracing_opentelemetry::layer().with_tracer(provider.tracer("aap-bot")).boxed());
    }
    tracing_subscriber::registry().with(layers).with(filter).init();
    Ok(aap_telemetry::traces::ExportGuard::new(provider))
}
