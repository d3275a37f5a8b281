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
mod grpc;
pub mod markdown;
pub mod sessions;
pub mod source;
pub mod storage_state;
mod worker;

use std::future::Future;

use anyhow::Context;
use tokio::sync::watch;

pub use adapter::{Adapter, AnswerKind, AnyAdapter, AskError, Captured, ChatGpt, Citation, Manifest};
pub use browser::{Browser, BrowserError, BrowserOptions};
pub use config::{Args, BotConfig, SessionSourceConfig, TaskSourceConfig};

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
    let adapter = AnyAdapter::load(&config.assistant, config.adapters_dir.as_deref(), config.assistant_url.as_deref())?;
    let manifest = adapter.manifest();
    tracing::info!(
        assistant = manifest.assistant,
        version = manifest.version,
        fingerprint = manifest.fingerprint,
        source = manifest.source,
        "adapter manifest loaded"
    );
    Ok(adapter)
}

/// Runs the bot until `shutdown` resolves, then finishes (or hands back) the task in hand, closes
/// the browser, returns its session and ends.
pub async fn run(config: BotConfig, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
    let adapter = adapter_for(&config)?;
    let source = match &config.tasks {
        TaskSourceConfig::Grpc { url } => {
            let channel = grpc::channel(url, config.token.as_ref(), config.api_timeout)?;
            TaskSource::Claim(ClaimSource::start(
                channel,
                ClaimOptions {
                    bot_id: config.bot_id.clone(),
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
            })
            .context("http client")?,
        ),
    };
    let sessions = match &config.sessions {
        SessionSourceConfig::Service { url } => {
            let channel = grpc::channel(url, config.token.as_ref(), config.api_timeout)?;
            Sessions::service(channel, &config.assistant, &config.plan, &config.bot_id, config.api_timeout)
        }
        SessionSourceConfig::Dir { path } => Sessions::dir(path, config.per_session_runs),
    };
    tracing::info!(bot_id = config.bot_id, assistant = config.assistant, plan = config.plan, tasks = ?config.tasks, sessions = ?config.sessions, "bot starting");

    let (stop, stopped) = watch::channel(false);
    let settings = WorkerSettings {
        max_attempts: config.max_attempts,
        poll_retry: config.poll_retry,
        idle_timeout: config.idle_timeout,
        browser: config.browser.clone(),
        shutdown_grace: config.shutdown_grace,
    };
    let worker = Worker::new(settings, adapter, source, sessions, stopped).run();
    tokio::pin!(worker);
    tokio::pin!(shutdown);
    tokio::select! {
        result = &mut worker => return result,
        () = &mut shutdown => {
            tracing::info!("shutdown requested: finishing the task in hand");
            let _ = stop.send(true);
        }
    }
    worker.await
}
