//! aap-bot: the browser bot of the AI-assistants answers platform.
//!
//! It takes evaluation tasks (from the platform's `EvaluationService.Claim` stream, or the
//! seed's HTTP polling API), asks the assistant in a real Chromium driven through chromedriver,
//! and hands back the answer with its citations, or releases the task with the reason.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = aap_bot::BotConfig::grpc("http://127.0.0.1:50051", "bot-token", "bot-1", "chatgpt", "Plus")
//!     .with_assistant_url("http://127.0.0.1:41234");
//! aap_bot::run(config, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```
//!
//! Modules, from the page up: [`browser`] (Chromium + chromedriver), [`adapter`] (one assistant's
//! page, driven by a selector manifest), [`sessions`] (logged-in sessions), [`source`] (tasks in,
//! answers out); the work loop applies the seed's retry rule.

pub mod adapter;
pub mod browser;
pub mod config;
pub mod evidence;
mod grpc;
pub mod limit_reset;
pub mod login;
pub mod markdown;
pub mod metrics;
pub mod sessions;
pub mod source;
pub mod storage_state;
pub mod synthetic;
mod worker;

use std::future::Future;

use anyhow::Context;
use tokio::sync::watch;

pub use adapter::{
    Adapter, AnswerKind, AnyAdapter, AskError, Captured, ChatGpt, Citation, Fallback, FoundIn, Manifest, Product,
    Reading,
};
pub use browser::{Browser, BrowserError, BrowserOptions};
pub use config::{Args, BotConfig, SessionSourceConfig, TaskSourceConfig};
pub use synthetic::{Engine, EngineKind, SyntheticOptions};

use crate::sessions::Sessions;
use crate::source::{ClaimOptions, ClaimSource, HttpOptions, HttpSource, TaskSource};
use crate::worker::{Worker, WorkerSettings};

/// Loads the adapter for `config.assistant`, logging its manifest version and fingerprint.
pub fn adapter_for(config: &BotConfig) -> anyhow::Result<AnyAdapter> {
    if !adapter::ASSISTANTS.contains(&config.assistant.as_str()) {
        anyhow::bail!(
            "no adapter for assistant {:?} (this bot knows: {})",
            config.assistant,
            adapter::ASSISTANTS.join(", ")
        );
    }
    let mut adapter =
        AnyAdapter::load(&config.assistant, config.adapters_dir.as_deref(), config.assistant_url.as_deref())?;
    if config.keep_history {
        adapter.keep_history();
    }
    let manifest = adapter.manifest();
    tracing::info!(
        assistant = manifest.assistant,
        version = manifest.version,
        fingerprint = manifest.fingerprint,
        source = manifest.source,
        new_chats = manifest.chat_path(),
        "adapter manifest loaded"
    );
    Ok(adapter)
}

/// Runs the bot until `shutdown` resolves, then finishes (or hands back) the tasks in hand,
/// closes the browsers, returns their sessions and ends.
///
/// With `config.concurrency` K > 1 the process runs K workers, each with its own browser,
/// session, task stream and bot id (`<bot_id>-1` ... `<bot_id>-K`): one slow or broken browser
/// never holds up another. A worker that fails for good stops the others, so a supervisor sees
/// the process end.
pub async fn run(config: BotConfig, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let adapter = adapter_for(&config)?;
    let count = config.concurrency.max(1);
    tracing::info!(bot_id = config.bot_id, assistant = config.assistant, plan = config.plan, concurrency = count, engine = ?config.engine, tasks = ?config.tasks, sessions = ?config.sessions, "bot starting");
    metrics::register();

    let (stop, stopped) = watch::channel(false);
    let metrics_server = match config.metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("bind the metrics endpoint on {addr} (--metrics-addr, AAP_BOT_METRICS_ADDR)")
            })?;
            let mut stopped = stopped.clone();
            let shutdown = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            Some(tokio::spawn(aap_telemetry::metrics::serve(listener, shutdown)))
        }
        None => None,
    };
    let sessions = match &config.sessions {
        SessionSourceConfig::Service { url } => {
            let channel = grpc::channel(url, config.token.as_ref(), config.api_timeout, &config.tls)?;
            Sessions::service(channel, &config.assistant, &config.plan, &config.bot_id, config.api_timeout)
        }
        SessionSourceConfig::Dir { path } => Sessions::dir(path, config.per_session_runs),
        SessionSourceConfig::None => Sessions::None,
    };
    let mut workers = tokio::task::JoinSet::new();
    for index in 1..=count {
        let bot_id = if count == 1 { config.bot_id.clone() } else { format!("{}-{index}", config.bot_id) };
        let worker = worker_for(&config, &bot_id, adapter.clone(), sessions.share(&bot_id), stopped.clone())?;
        workers.spawn(tracing::Instrument::instrument(worker.run(), tracing::info_span!("worker", bot_id)));
    }
    tokio::pin!(shutdown);
    let mut result = Ok(());
    let mut stopping = false;
    loop {
        tokio::select! {
            joined = workers.join_next() => match joined {
                None => break,
                Some(outcome) => {
                    let outcome = outcome.map_err(anyhow::Error::from).and_then(|r| r);
                    if let Err(error) = outcome {
                        tracing::error!(%error, "a worker stopped for good; stopping the others");
                        let _ = stop.send(true);
                        if result.is_ok() {
                            result = Err(error);
                        }
                    }
                }
            },
            () = &mut shutdown, if !stopping => {
                tracing::info!("shutdown requested: finishing the tasks in hand");
                stopping = true;
                let _ = stop.send(true);
            }
        }
    }
    let _ = stop.send(true);
    if let Some(server) = metrics_server {
        match server.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "the metrics endpoint failed"),
            Err(error) => tracing::warn!(%error, "the metrics endpoint panicked"),
        }
    }
    result
}

/// One worker: its own task source, a share of the sessions, the adapter.
fn worker_for(
    config: &BotConfig,
    bot_id: &str,
    adapter: AnyAdapter,
    sessions: Sessions,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<Worker<AnyAdapter>> {
    let mut evidence = evidence::Evidence::new(config.evidence.clone());
    let source = match &config.tasks {
        TaskSourceConfig::Grpc { url } => {
            let channel = grpc::channel(url, config.token.as_ref(), config.api_timeout, &config.tls)?;
            // The seed's HTTP API has no place for evidence: only a gRPC bot reports it.
            evidence =
                evidence.reporting_to(evidence::EvidenceReporter::new(channel.clone(), bot_id, config.api_timeout));
            TaskSource::Claim(ClaimSource::start(
                channel,
                ClaimOptions {
                    bot_id: bot_id.to_owned(),
                    assistant: config.assistant.clone(),
                    plan: config.plan.clone(),
                    submit_timeout: config.submit_timeout,
                    submit_retry_attempts: config.submit_retry_attempts,
                },
            ))
        }
        TaskSourceConfig::Http { api_url, results_api_url } => TaskSource::Http(
            HttpSource::new(HttpOptions {
                api_url: api_url.clone(),
                results_api_url: results_api_url.clone(),
                assistant_name: config.assistant_name.clone(),
                plan_name: config.plan.clone(),
                token: config.token.clone(),
                api_timeout: config.api_timeout,
                submit_timeout: config.submit_timeout,
                submit_retry_attempts: config.submit_retry_attempts,
                tls: config.tls.clone(),
            })
            .context("http client")?,
        ),
    };
    let settings = WorkerSettings {
        max_attempts: config.max_attempts,
        poll_retry: config.poll_retry,
        prompt_gap: config.prompt_gap,
        idle_timeout: config.idle_timeout,
        browser: config.browser.clone(),
        shutdown_grace: config.shutdown_grace,
        evidence,
        engine: config.engine,
    };
    Ok(Worker::new(settings, adapter, source, sessions, stopped))
}

/// Resolves on SIGINT or SIGTERM: what every long-running command stops on (a container's stop
/// sends SIGTERM).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
