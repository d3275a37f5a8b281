//! The bot's configuration: [`BotConfig`] built in code (by `aap dev`, tests) or from the
//! command line ([`Args`], the seed's flags plus the platform's).

use std::path::PathBuf;
use std::time::Duration;

use aap_proto::token::{TokenProblem, header_token};
use clap::Parser;
use secrecy::SecretString;

use crate::browser::BrowserOptions;
use crate::evidence::EvidenceOptions;
use crate::synthetic::{Engine, EngineKind, SyntheticOptions};

/// The assistants the bot knows: lowercase id and the seed's name for it.
const ASSISTANTS: &[(&str, &str)] = &[
    ("chatgpt", "ChatGPT"),
    ("claude", "Claude"),
    ("perplexity", "Perplexity"),
    ("google-ai-overview", "Google AI Overview"),
];

/// The lowercase id of an assistant given by id or by the seed's name ("ChatGPT" → "chatgpt").
pub fn assistant_id(name: &str) -> String {
    let name = name.trim();
    ASSISTANTS
        .iter()
        .find(|(id, seed)| id.eq_ignore_ascii_case(name) || seed.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_lowercase(), |(id, _)| (*id).to_owned())
}

/// The seed's name of an assistant given by id or by name ("chatgpt" → "ChatGPT").
pub fn seed_name(name: &str) -> String {
    let name = name.trim();
    ASSISTANTS
        .iter()
        .find(|(id, seed)| id.eq_ignore_ascii_case(name) || seed.eq_ignore_ascii_case(name))
        .map_or_else(|| name.to_owned(), |(_, seed)| (*seed).to_owned())
}

/// Where tasks come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskSourceConfig {
    /// `EvaluationService.Claim` at this gRPC URL.
    Grpc {
        /// E.g. `http://127.0.0.1:50051`.
        url: String,
    },
    /// The seed's HTTP polling API.
    Http {
        /// Base URL of `/evaluations/api/v1/poll`.
        api_url: String,
        /// Base URL of `/evaluations/api/v1/submit` and `/release`.
        results_api_url: String,
    },
}

/// Where logged-in sessions come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSourceConfig {
    /// `SessionService.LeaseSession` at this gRPC URL.
    Service {
        /// E.g. `http://127.0.0.1:50051`.
        url: String,
    },
    /// Playwright storage-state files (`*.json`) in this directory.
    Dir {
        /// The directory.
        path: PathBuf,
    },
    /// None: the synthetic engine answers without a session.
    None,
}

/// Everything the bot needs; see [`crate::run`].
#[derive(Debug, Clone)]
pub struct BotConfig {
    /// Where tasks come from.
    pub tasks: TaskSourceConfig,
    /// Where sessions come from.
    pub sessions: SessionSourceConfig,
    /// Bot token, sent as `authorization: Bearer <token>` to the platform.
    pub token: Option<SecretString>,
    /// Whom to trust and which client certificate to present on `https://` URLs (gRPC and the
    /// seed's HTTP API).
    pub tls: aap_tls::ClientTls,
    /// The bot's name in logs and provenance.
    pub bot_id: String,
    /// Lowercase assistant id, e.g. `chatgpt`.
    pub assistant: String,
    /// The seed's assistant name sent when polling over HTTP, e.g. `ChatGPT`.
    pub assistant_name: String,
    /// Plan served, e.g. `Plus`.
    pub plan: String,
    /// Attempts per prompt (each in a new conversation) before the fresh-session try.
    pub max_attempts: u32,
    /// Evaluations per session before rotating (directory sessions; leases say their own).
    pub per_session_runs: u32,
    /// Wait after an empty poll or a failed call.
    pub poll_retry: Duration,
    /// Least time between two prompts of one session (a random extra of up to as much again is
    /// added each time); zero: none.
    pub prompt_gap: Duration,
    /// Close the browser after this long without work; reopened on demand.
    pub idle_timeout: Option<Duration>,
    /// Time-out of polls and session calls.
    pub api_timeout: Duration,
    /// Tries of a submit or release.
    pub submit_retry_attempts: u32,
    /// Time-out of one submit or release try.
    pub submit_timeout: Duration,
    /// The assistant's origin instead of the manifest's (e.g. the simulator's).
    pub assistant_url: Option<String>,
    /// A directory whose `<assistant>.toml` replaces the built-in selector manifest.
    pub adapters_dir: Option<PathBuf>,
    /// Start conversations the site keeps in the account's history and memory, not its private
    /// ones (the manifest's `private_chat_path`).
    pub keep_history: bool,
    /// How to start Chromium.
    pub browser: BrowserOptions,
    /// On shutdown, how long an answer in progress may still take before the task is handed
    /// back to the queue.
    pub shutdown_grace: Duration,
    /// Browsers (each its own worker, session and task) in this process.
    pub concurrency: u32,
    /// Where and how much evidence of failed attempts to keep.
    pub evidence: EvidenceOptions,
    /// How tasks are answered: a browser, or the synthetic engine (no browser, no session).
    pub engine: Engine,
    /// Where to serve the bot's metrics (`GET /metrics`); none when `None`.
    pub metrics_addr: Option<std::net::SocketAddr>,
}

impl BotConfig {
    fn base(tasks: TaskSourceConfig, sessions: SessionSourceConfig, assistant: &str, plan: &str) -> BotConfig {
        BotConfig {
            tasks,
            sessions,
            token: None,
            tls: aap_tls::ClientTls::default(),
            bot_id: default_bot_id(),
            assistant: assistant_id(assistant),
            assistant_name: seed_name(assistant),
            plan: plan.to_owned(),
            max_attempts: 1,
            per_session_runs: 10,
            poll_retry: Duration::from_secs(5),
            prompt_gap: Duration::ZERO,
            idle_timeout: None,
            api_timeout: Duration::from_secs(30),
            submit_retry_attempts: 3,
            submit_timeout: Duration::from_secs(30),
            assistant_url: None,
            adapters_dir: None,
            keep_history: false,
            browser: BrowserOptions::default(),
            shutdown_grace: Duration::from_secs(60),
            concurrency: 1,
            evidence: EvidenceOptions::default(),
            engine: Engine::Browser,
            metrics_addr: None,
        }
    }

    /// A bot on the platform's gRPC API: tasks from `Claim`, sessions from `SessionService`,
    /// both at `url`. `assistant` is an id or a seed name.
    pub fn grpc(url: &str, token: &str, bot_id: &str, assistant: &str, plan: &str) -> BotConfig {
        let mut config = BotConfig::base(
            TaskSourceConfig::Grpc { url: url.to_owned() },
            SessionSourceConfig::Service { url: url.to_owned() },
            assistant,
            plan,
        );
        config.token = Some(SecretString::from(token.to_owned()));
        config.bot_id = bot_id.to_owned();
        config
    }

    /// A bot on the seed's HTTP API with sessions from a directory, as the seed runs.
    pub fn http(
        api_url: &str,
        results_api_url: &str,
        sessions_dir: impl Into<PathBuf>,
        assistant: &str,
        plan: &str,
    ) -> BotConfig {
        BotConfig::base(
            TaskSourceConfig::Http { api_url: api_url.to_owned(), results_api_url: results_api_url.to_owned() },
            SessionSourceConfig::Dir { path: sessions_dir.into() },
            assistant,
            plan,
        )
    }

    /// Asks the assistant at `url` (e.g. the simulator) instead of its public site.
    pub fn with_assistant_url(mut self, url: &str) -> BotConfig {
        self.assistant_url = Some(url.trim_end_matches('/').to_owned());
        self
    }

    /// Takes sessions from a directory of storage-state files.
    pub fn with_sessions_dir(mut self, dir: impl Into<PathBuf>) -> BotConfig {
        self.sessions = SessionSourceConfig::Dir { path: dir.into() };
        self
    }

    /// Sends `token` as the bearer token.
    pub fn with_token(mut self, token: &str) -> BotConfig {
        self.token = Some(SecretString::from(token.to_owned()));
        self
    }

    /// Trusts and presents what `tls` says on `https://` URLs.
    pub fn with_tls(mut self, tls: aap_tls::ClientTls) -> BotConfig {
        self.tls = tls;
        self
    }

    /// Answers with the synthetic engine: at once, no browser, no session (load and chaos runs).
    pub fn synthetic(mut self, options: SyntheticOptions) -> BotConfig {
        self.engine = Engine::Synthetic(options);
        self.sessions = SessionSourceConfig::None;
        self
    }

    /// Names the bot.
    pub fn with_bot_id(mut self, bot_id: &str) -> BotConfig {
        self.bot_id = bot_id.to_owned();
        self
    }
}

fn default_bot_id() -> String {
    let host = std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()).unwrap_or_else(|| "bot".to_owned());
    format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Why the command line does not make a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Neither a task source nor a session source is usable.
    #[error("{0}")]
    Missing(&'static str),
    /// The token cannot be sent (never says the token itself).
    #[error("--token (AAP_BOT_TOKEN) {0}")]
    Token(TokenProblem),
}

/// The bearer token as [`aap_proto::token::header_token`] reads it: less the white space around
/// it (a token read from a file or a mounted secret often ends in a line break or CRLF).
fn bearer_token(given: &str) -> Result<SecretString, ConfigError> {
    let token = header_token(given).map_err(ConfigError::Token)?;
    Ok(SecretString::from(token.to_owned()))
}

/// `aap-bot`: answers evaluation tasks by asking an AI assistant in a real Chromium.
///
/// Tasks come from the platform's gRPC Claim stream (`--grpc-url`) or from the seed's HTTP
/// polling API (`--api-url`, `--results-api-url`). Sessions come from the platform's
/// SessionService (with `--grpc-url`) or from `--sessions-dir`.
#[derive(Debug, Clone, Parser)]
#[command(name = "aap-bot", version, about, long_about = None)]
pub struct Args {
    /// Directory with session files (Playwright storage-state JSON, one account per file).
    #[arg(long, env = "AAP_BOT_SESSIONS_DIR")]
    pub sessions_dir: Option<PathBuf>,
    /// Base URL of the HTTP API the bot polls for prompts (seed mode).
    #[arg(long, env = "AAP_BOT_API_URL")]
    pub api_url: Option<String>,
    /// Base URL of the HTTP API results go to; --api-url when absent.
    #[arg(long, env = "AAP_BOT_RESULTS_API_URL")]
    pub results_api_url: Option<String>,
    /// Assistant to ask, by the seed's name ("ChatGPT") or id ("chatgpt").
    #[arg(long, env = "AAP_BOT_ASSISTANT_NAME", default_value = "ChatGPT")]
    pub assistant_name: String,
    /// Plan (account tier) to serve.
    #[arg(long, env = "AAP_BOT_PLAN_NAME", default_value = "Plus")]
    pub plan_name: String,
    /// Attempts to get an answer with citations per prompt, a new conversation each time;
    /// then one more on a fresh session.
    #[arg(long, env = "AAP_BOT_MAX_ATTEMPTS", default_value_t = 1)]
    pub max_attempts: u32,
    /// Evaluations per session before rotating to the next (session files).
    #[arg(long, env = "AAP_BOT_PER_SESSION_RUNS", default_value_t = 10)]
    pub per_session_runs: u32,
    /// Seconds to wait when no prompt is available.
    #[arg(long, env = "AAP_BOT_POLL_RETRY_SECONDS", default_value_t = 5.0)]
    pub poll_retry_seconds: f64,
    /// Least seconds between two prompts of one account, each gap with a random extra of up to
    /// as much again, so the account's cadence is not a machine's; the bot takes no task
    /// meanwhile. 0: prompts follow each other as fast as the site answers.
    #[arg(long, env = "AAP_BOT_PROMPT_GAP_SECONDS", default_value_t = 0.0)]
    pub prompt_gap_seconds: f64,
    /// Close the browser after this many minutes without work (never when absent).
    #[arg(long, env = "AAP_BOT_IDLE_TIMEOUT_MINUTES")]
    pub idle_timeout_minutes: Option<f64>,
    /// Time-out of API requests (polls, sessions), in seconds.
    #[arg(long, env = "AAP_BOT_API_TIMEOUT", default_value_t = 30.0)]
    pub api_timeout: f64,
    /// Tries of a result submission.
    #[arg(long, env = "AAP_BOT_SUBMIT_RETRY_ATTEMPTS", default_value_t = 3)]
    pub submit_retry_attempts: u32,
    /// Time-out of one result submission, in seconds.
    #[arg(long, env = "AAP_BOT_SUBMIT_TIMEOUT", default_value_t = 30.0)]
    pub submit_timeout: f64,
    /// Log level (ERROR, WARN, INFO, DEBUG, TRACE) or a tracing filter.
    #[arg(long, env = "AAP_BOT_LOG_LEVEL", default_value = "INFO")]
    pub log_level: String,
    /// Also write logs to this file.
    #[arg(long, env = "AAP_BOT_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// The platform's gRPC URL (`https://` for TLS): tasks from EvaluationService.Claim,
    /// sessions from SessionService (unless --sessions-dir).
    #[arg(long, env = "AAP_BOT_GRPC_URL")]
    pub grpc_url: Option<String>,
    /// Bot token for the platform (Authorization: Bearer).
    #[arg(long, env = "AAP_BOT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// CA certificates (PEM) the platform's certificate must chain to, for `https://` URLs (the
    /// system's when absent).
    #[arg(long, env = "AAP_BOT_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Client certificate (PEM) for a platform that requires one (mutual TLS).
    #[arg(long, env = "AAP_BOT_CLIENT_CERT", requires = "client_key")]
    pub client_cert: Option<PathBuf>,
    /// Private key (PEM) of --client-cert.
    #[arg(long, env = "AAP_BOT_CLIENT_KEY", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
    /// The bot's name in logs and provenance; host name plus a random suffix when absent.
    #[arg(long, env = "AAP_BOT_BOT_ID")]
    pub bot_id: Option<String>,
    /// The assistant's origin instead of its public site, e.g. the simulator's.
    #[arg(long, env = "AAP_BOT_ASSISTANT_URL")]
    pub assistant_url: Option<String>,
    /// Directory with selector manifests (`<assistant>.toml`) replacing the built-in ones.
    #[arg(long, env = "AAP_BOT_ADAPTERS_DIR")]
    pub adapters_dir: Option<PathBuf>,
    /// Ask in conversations the site keeps in the account's history and memory (and may train
    /// on), instead of its private ones (ChatGPT's temporary chat, Claude's incognito chat), where
    /// the account's memory of earlier prompts cannot shape the answer.
    #[arg(long, env = "AAP_BOT_KEEP_HISTORY")]
    pub keep_history: bool,
    /// Show the browser window (needs a display, e.g. Xvfb).
    #[arg(long, env = "AAP_BOT_HEADFUL")]
    pub headful: bool,
    /// The Chromium binary.
    #[arg(long, env = "AAP_BOT_CHROMIUM", default_value = "/usr/bin/chromium")]
    pub chromium: PathBuf,
    /// The chromedriver binary.
    #[arg(long, env = "AAP_BOT_CHROMEDRIVER", default_value = "/usr/bin/chromedriver")]
    pub chromedriver: PathBuf,
    /// Browsers in this process, each with its own session and task (bot ids get `-1`, `-2`, ...).
    #[arg(long, env = "AAP_BOT_CONCURRENCY", default_value_t = 1)]
    pub concurrency: u32,
    /// Directory for evidence of failed attempts (page HTML, screenshot, note).
    #[arg(long, env = "AAP_BOT_EVIDENCE_DIR", default_value = "evidence")]
    pub evidence_dir: PathBuf,
    /// Failure cases of evidence kept; the oldest are deleted first (0: keep none).
    #[arg(long, env = "AAP_BOT_EVIDENCE_MAX_CASES", default_value_t = 100)]
    pub evidence_max_cases: usize,
    /// Page HTML kept per case, in bytes (cut beyond).
    #[arg(long, env = "AAP_BOT_EVIDENCE_MAX_HTML_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub evidence_max_html_bytes: usize,
    /// On SIGINT/SIGTERM, seconds an answer in progress may still take before its task is handed
    /// back to the queue.
    #[arg(long, env = "AAP_BOT_SHUTDOWN_GRACE_SECONDS", default_value_t = 60.0)]
    pub shutdown_grace_seconds: f64,
    /// How tasks are answered: `browser` (a real Chromium on a leased session) or `synthetic`
    /// (an instant answer built from the task, marked `synthetic`, with no browser and no
    /// session: for load and chaos runs that measure the platform).
    #[arg(long, env = "AAP_BOT_ENGINE", value_enum, default_value_t = EngineKind::Browser)]
    pub engine: EngineKind,
    /// Synthetic engine: milliseconds each answer takes.
    #[arg(long, env = "AAP_BOT_SYNTHETIC_DELAY_MS", default_value_t = 0)]
    pub synthetic_delay_ms: u64,
    /// Synthetic engine: share of deliveries in [0, 1] released as failed (class
    /// `assistant-error`) instead of answered.
    #[arg(long, env = "AAP_BOT_SYNTHETIC_FAIL_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub synthetic_fail_rate: f64,
    /// Address of the bot's Prometheus metrics (`GET /metrics`: tasks, outcomes by failure class,
    /// answer time, browsers, leases), e.g. 127.0.0.1:9465; `off` serves none.
    #[arg(long, env = "AAP_BOT_METRICS_ADDR", default_value = "off", value_parser = check_metrics_addr)]
    pub metrics_addr: String,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        _ => Err(format!("{text:?} is not a number in [0, 1]")),
    }
}

fn check_metrics_addr(text: &str) -> Result<String, String> {
    aap_telemetry::metrics::parse_addr(text).map(|_| text.to_owned())
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value.max(0.0)).unwrap_or(Duration::ZERO)
}

impl Args {
    /// The configuration these flags describe.
    pub fn into_config(self) -> Result<BotConfig, ConfigError> {
        let tasks = match (&self.grpc_url, &self.api_url) {
            (Some(url), _) => TaskSourceConfig::Grpc { url: url.clone() },
            (None, Some(api_url)) => TaskSourceConfig::Http {
                api_url: api_url.clone(),
                results_api_url: self.results_api_url.clone().unwrap_or_else(|| api_url.clone()),
            },
            (None, None) => {
                return Err(ConfigError::Missing("give --grpc-url (platform) or --api-url (seed HTTP API)"));
            }
        };
        let synthetic = self.engine == EngineKind::Synthetic;
        let sessions = match (&self.sessions_dir, &self.grpc_url) {
            _ if synthetic => SessionSourceConfig::None,
            (Some(path), _) => SessionSourceConfig::Dir { path: path.clone() },
            (None, Some(url)) => SessionSourceConfig::Service { url: url.clone() },
            (None, None) => return Err(ConfigError::Missing("--sessions-dir is required without --grpc-url")),
        };
        let mut config = BotConfig::base(tasks, sessions, &self.assistant_name, &self.plan_name);
        config.token = self.token.as_deref().map(bearer_token).transpose()?;
        config.tls =
            aap_tls::ClientTls { ca_cert: self.ca_cert, client_cert: self.client_cert, client_key: self.client_key };
        if let Some(bot_id) = self.bot_id {
            config.bot_id = bot_id;
        }
        config.max_attempts = self.max_attempts.max(1);
        config.per_session_runs = self.per_session_runs.max(1);
        config.poll_retry = seconds(self.poll_retry_seconds);
        config.prompt_gap = seconds(self.prompt_gap_seconds);
        config.idle_timeout = self.idle_timeout_minutes.map(|minutes| seconds(minutes * 60.0));
        config.api_timeout = seconds(self.api_timeout);
        config.submit_retry_attempts = self.submit_retry_attempts.max(1);
        config.submit_timeout = seconds(self.submit_timeout);
        config.assistant_url = self.assistant_url.map(|url| url.trim_end_matches('/').to_owned());
        config.adapters_dir = self.adapters_dir;
        config.keep_history = self.keep_history;
        config.browser.headful = self.headful;
        config.browser.chromium = self.chromium;
        config.browser.chromedriver = self.chromedriver;
        config.concurrency = self.concurrency.max(1);
        config.evidence = EvidenceOptions {
            dir: self.evidence_dir,
            max_cases: self.evidence_max_cases,
            max_html_bytes: self.evidence_max_html_bytes,
            ..EvidenceOptions::default()
        };
        config.shutdown_grace = seconds(self.shutdown_grace_seconds);
        if synthetic {
            config.engine = Engine::Synthetic(SyntheticOptions {
                delay: Duration::from_millis(self.synthetic_delay_ms),
                fail_rate: self.synthetic_fail_rate,
            });
        }
        // Checked by clap already.
        config.metrics_addr = aap_telemetry::metrics::parse_addr(&self.metrics_addr).ok().flatten();
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    #[test]
    fn seed_names_and_ids_map_both_ways() {
        assert_eq!(assistant_id("ChatGPT"), "chatgpt");
        assert_eq!(assistant_id("chatgpt"), "chatgpt");
        assert_eq!(seed_name("chatgpt"), "ChatGPT");
        assert_eq!(seed_name("Google AI Overview"), "Google AI Overview");
        assert_eq!(assistant_id("Other"), "other");
    }

    /// A token read from a file or a secret (`AAP_BOT_TOKEN=$(cat token)` keeps no newline, a
    /// Kubernetes secret made `--from-file` does) is sent without its line break; one a header
    /// cannot carry stops the start, naming the flag and never the token.
    #[test]
    fn a_token_with_a_line_break_is_sent_without_it() {
        let config = |token: &str| {
            Args::try_parse_from(["aap-bot", "--api-url", "http://api:8000", "--sessions-dir", "/s", "--token", token])
                .map_err(|error| error.to_string())
                .and_then(|args| args.into_config().map_err(|error| error.to_string()))
        };
        for given in ["aap_s3cr3t\n", "aap_s3cr3t\r\n", " aap_s3cr3t "] {
            let token = config(given).map(|c| c.token.map(|t| t.expose_secret().to_owned()));
            assert_eq!(token, Ok(Some("aap_s3cr3t".to_owned())), "{given:?}");
        }
        for given in ["aap s3cr3t", "aap_s3cr3t\u{e9}", "\n"] {
            let refused = config(given).map(|_| ()).expect_err(given);
            assert!(refused.starts_with("--token (AAP_BOT_TOKEN) "), "{refused}");
            assert!(!refused.contains("s3cr3t"), "the token itself is never said: {refused}");
        }
    }

    #[test]
    fn seed_flags_make_an_http_config_with_the_seed_defaults() -> Result<(), ConfigError> {
        let args = Args::try_parse_from([
            "aap-bot",
            "--sessions-dir",
            "/s",
            "--api-url",
            "http://api:8000",
            "--max-attempts",
            "3",
            "--idle-timeout-minutes",
            "0.5",
        ])
        .map_err(|_| ConfigError::Missing("parse"))?;
        let config = args.into_config()?;
        assert_eq!(
            config.tasks,
            TaskSourceConfig::Http { api_url: "http://api:8000".into(), results_api_url: "http://api:8000".into() }
        );
        assert_eq!(config.sessions, SessionSourceConfig::Dir { path: "/s".into() });
        assert_eq!((config.assistant.as_str(), config.assistant_name.as_str()), ("chatgpt", "ChatGPT"));
        assert_eq!(config.plan, "Plus");
        assert_eq!(config.max_attempts, 3);
        assert_eq!(config.per_session_runs, 10);
        assert_eq!(config.poll_retry, Duration::from_secs(5));
        assert_eq!(config.prompt_gap, Duration::ZERO, "no gap unless asked");
        assert_eq!(config.idle_timeout, Some(Duration::from_secs(30)));
        assert_eq!(config.submit_retry_attempts, 3);
        assert!(!config.browser.headful);
        assert_eq!(config.concurrency, 1);
        assert_eq!(config.evidence.max_cases, 100);
        assert!(!config.keep_history, "private conversations unless asked");
        let keeping =
            Args::try_parse_from(["aap-bot", "--sessions-dir", "/s", "--api-url", "http://api:8000", "--keep-history"])
                .map_err(|_| ConfigError::Missing("parse"))?
                .into_config()?;
        assert!(keeping.keep_history);
        Ok(())
    }

    #[test]
    fn grpc_flags_take_sessions_from_the_service_unless_a_directory_is_given() -> Result<(), ConfigError> {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["aap-bot", "--grpc-url", "http://gw:50051", "--token", "t"];
            argv.extend_from_slice(extra);
            Args::try_parse_from(argv).map_err(|_| ConfigError::Missing("parse"))?.into_config()
        };
        let config = parse(&[])?;
        assert_eq!(config.tasks, TaskSourceConfig::Grpc { url: "http://gw:50051".into() });
        assert_eq!(config.sessions, SessionSourceConfig::Service { url: "http://gw:50051".into() });
        assert_eq!(parse(&["--sessions-dir", "/d"])?.sessions, SessionSourceConfig::Dir { path: "/d".into() });
        assert!(Args::try_parse_from(["aap-bot"]).map_err(|_| ConfigError::Missing("parse"))?.into_config().is_err());
        Ok(())
    }

    #[test]
    fn the_synthetic_engine_needs_no_session_source_and_takes_its_knobs() -> Result<(), ConfigError> {
        let parse = |argv: &[&str]| Args::try_parse_from(argv).map_err(|_| ConfigError::Missing("parse"));
        let browser = parse(&["aap-bot", "--grpc-url", "http://gw:50051"])?.into_config()?;
        assert_eq!(browser.engine, Engine::Browser);
        let argv = ["aap-bot", "--api-url", "http://api:8000", "--engine", "synthetic", "--synthetic-delay-ms", "25"];
        let config = parse(&[&argv[..], &["--synthetic-fail-rate", "0.1"]].concat())?.into_config()?;
        assert_eq!(config.sessions, SessionSourceConfig::None);
        assert_eq!(
            config.engine,
            Engine::Synthetic(SyntheticOptions { delay: Duration::from_millis(25), fail_rate: 0.1 })
        );
        let grpc = parse(&["aap-bot", "--grpc-url", "http://gw:50051", "--engine", "synthetic"])?.into_config()?;
        assert_eq!(grpc.sessions, SessionSourceConfig::None, "no session is leased");
        assert!(
            parse(&["aap-bot", "--api-url", "http://a", "--engine", "synthetic", "--synthetic-fail-rate", "1.5"])
                .is_err()
        );
        assert!(parse(&["aap-bot", "--api-url", "http://a", "--engine", "chrome"]).is_err());
        Ok(())
    }

    #[test]
    fn tls_flags_name_the_ca_and_the_client_certificate_which_needs_its_key() -> Result<(), ConfigError> {
        let base = ["aap-bot", "--grpc-url", "https://gw:50051", "--token", "t"];
        let tls = ["--ca-cert", "/ca.crt", "--client-cert", "/bot.crt", "--client-key", "/bot.key"];
        let args = Args::try_parse_from(base.iter().chain(&tls)).map_err(|_| ConfigError::Missing("parse"))?;
        let config = args.into_config()?;
        let expected = aap_tls::ClientTls {
            ca_cert: Some("/ca.crt".into()),
            client_cert: Some("/bot.crt".into()),
            client_key: Some("/bot.key".into()),
        };
        assert_eq!(config.tls, expected);
        assert_eq!(
            Args::try_parse_from(base).map_err(|_| ConfigError::Missing("parse"))?.into_config()?.tls,
            Default::default()
        );
        assert!(
            Args::try_parse_from(base.iter().chain(&["--client-cert", "/bot.crt"])).is_err(),
            "a certificate without its key"
        );
        Ok(())
    }
}
