//! `aap session ...`: an operator's session files. `capture` opens a visible Chromium on an
//! assistant's login page, waits until the operator has logged in (the adapter's own probe),
//! and writes the seed's session file (Playwright storage state) and/or uploads it as an
//! account: the seed's `scripts/create_session.py`, for all four assistants.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aap_bot::adapter::AnyAdapter;
use aap_bot::browser::{BrowserOptions, ChromiumVersion, Identity, UserAgent};
use aap_proto::v1::CreateAccountRequest;
use aap_proto::v1::session_service_client::SessionServiceClient;
use anyhow::Context as _;
use clap::{Args, Subcommand};

use crate::client::Bearer;

/// Session files and accounts from a terminal.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Opens a visible Chromium at the assistant's login page (needs a desktop: DISPLAY), waits
    /// until you have logged in, then writes the session file (Playwright storage state, as the
    /// seed's bot reads it) and/or uploads it as a new account.
    Capture(CaptureArgs),
    /// Uploads a seed `sessions/` directory: one account per `*.json` storage state, labelled
    /// by its file name, with the `.proxy` and `.user-agent` files beside it. Importing the same
    /// files again changes nothing; a file that is not a storage state, or that the platform
    /// refuses, is reported and skipped (exit status 1 once the others are imported).
    Import(crate::session_import::ImportArgs),
}

/// `aap session capture`.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// The assistant: chatgpt, claude, perplexity or google-ai-overview.
    #[arg(long)]
    pub assistant: String,
    /// The account's name, e.g. the login e-mail; the session file is named after it by default.
    #[arg(long)]
    pub label: String,
    /// The account's plan (for --upload).
    #[arg(long, default_value = "Plus")]
    pub plan: String,
    /// Where to write the session file (mode 0600); `<file>.proxy` and `<file>.user-agent`
    /// are written beside it as the seed's sessions/ directory keeps them. Default without
    /// --upload: sessions/<label>.json.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Create the account on the platform (SessionService.CreateAccount) with the session.
    #[arg(long)]
    pub upload: bool,
    /// Proxy for the browser and the account (`http://`, `https://` or `socks5://` host:port).
    #[arg(long)]
    pub proxy: Option<String>,
    /// User agent for the browser and the account; default: one derived from the label, which
    /// the bots then present too.
    #[arg(long)]
    pub user_agent: Option<String>,
    /// Log in at this origin instead of the real site's (e.g. the simulator's
    /// http://127.0.0.1:8100).
    #[arg(long)]
    pub origin: Option<String>,
    /// Adapter manifests overriding the built-in ones.
    #[arg(long, env = "AAP_BOT_ADAPTERS_DIR")]
    pub adapters_dir: Option<PathBuf>,
    /// Give up when no logged-in page shows within this many minutes.
    #[arg(long, default_value_t = 15)]
    pub timeout_minutes: u64,
    #[arg(long, env = "AAP_CHROMIUM", default_value = "/usr/bin/chromium")]
    pub chromium: PathBuf,
    #[arg(long, env = "AAP_CHROMEDRIVER", default_value = "/usr/bin/chromedriver")]
    pub chromedriver: PathBuf,
    /// The platform's gRPC address (for --upload).
    /// Default: the `AAP_SERVER` in <data dir>/dev.env (`aap dev` writes it), else
    /// http://127.0.0.1:50051.
    #[arg(long, env = "AAP_SERVER")]
    pub server: Option<String>,
    #[command(flatten)]
    pub tls: crate::client::TlsArgs,
    /// Operator token (for --upload); read from <data dir>/dev.env when unset.
    #[arg(long, env = "AAP_OPERATOR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Data dir of `aap dev`, where dev.env holds the dev tokens.
    #[arg(long, env = "AAP_DATA_DIR", default_value = ".aap")]
    pub data_dir: PathBuf,
}

/// Runs an `aap session` command.
pub async fn run(command: SessionCommand) -> anyhow::Result<()> {
    match command {
        SessionCommand::Capture(args) => capture(args).await,
        SessionCommand::Import(args) => crate::session_import::run(args, &mut crate::stdout::stdout()).await,
    }
}

async fn capture(args: CaptureArgs) -> anyhow::Result<()> {
    if std::env::var_os("DISPLAY").is_none_or(|display| display.is_empty()) {
        anyhow::bail!(
            "no display: `aap session capture` opens a visible browser for you to log in, so it runs on a desktop \
             (DISPLAY is unset); on a server, use the console's remote login instead"
        );
    }
    let assistant = args.assistant.trim().to_ascii_lowercase();
    let adapter = AnyAdapter::load(&assistant, args.adapters_dir.as_deref(), args.origin.as_deref())
        .with_context(|| format!("assistant {assistant}"))?;
    let proxy = args.proxy.as_deref().map(str::trim).filter(|proxy| !proxy.is_empty()).map(str::to_owned);
    if let Some(proxy) = &proxy {
        aap_bot::browser::identity::proxy_server(proxy)?;
    }
    let defaults = BrowserOptions::default();
    let user_agent = match args.user_agent.as_deref().map(str::trim).filter(|ua| !ua.is_empty()) {
        Some(user_agent) => user_agent.to_owned(),
        None => {
            let version = ChromiumVersion::of(&args.chromium).await?;
            Identity::resolve(&UserAgent::Derived(args.label.clone()), &version, &defaults.accept_language).user_agent
        }
    };
    let options = BrowserOptions {
        chromium: args.chromium.clone(),
        chromedriver: args.chromedriver.clone(),
        headful: true,
        proxy: proxy.clone(),
        user_agent: UserAgent::Exact(user_agent.clone()),
        ..defaults
    };
    let state = aap_bot::login::capture_login(
        adapter,
        &options,
        Duration::from_millis(500),
        Duration::from_secs(args.timeout_minutes.saturating_mul(60)),
        |url, websocket| {
            tracing::info!(url, devtools = websocket, "log in in the browser window; waiting for the logged-in page");
        },
    )
    .await?;
    let json = aap_bot::login::storage::to_json(&state);
    tracing::info!(cookies = state.cookies.len(), origins = state.origins.len(), "logged in; session captured");

    let output = match (&args.output, args.upload) {
        (Some(output), _) => Some(output.clone()),
        (None, false) => Some(PathBuf::from("sessions").join(format!("{}.json", file_name(&args.label)))),
        (None, true) => None,
    };
    if let Some(output) = &output {
        write_session(output, &json, proxy.as_deref(), &user_agent)?;
        writeln!(crate::stdout::stdout(), "session written to {}", output.display())?;
    }
    if args.upload {
        let token = crate::client::token_or_dev(&args.token, &args.data_dir, "AAP_OPERATOR_TOKEN")?;
        let channel =
            crate::client::channel(&crate::client::server_or_dev(&args.server, &args.data_dir), &args.tls.client_tls())
                .await?;
        let mut sessions = SessionServiceClient::with_interceptor(channel, Bearer::new(&token)?);
        let account = sessions
            .create_account(CreateAccountRequest {
                assistant,
                plan: args.plan.clone(),
                label: args.label.clone(),
                storage_state_json: json,
                proxy: proxy.unwrap_or_default(),
                user_agent,
            })
            .await
            .context("uploading the session")?
            .into_inner()
            .account
            .context("no account in the answer")?;
        writeln!(
            crate::stdout::stdout(),
            "account {} created ({} {}, {})",
            account.id,
            account.assistant,
            account.plan,
            account.label
        )?;
    }
    Ok(())
}

/// A label as a file name: what is not a letter, digit, `.`, `-`, `_` or `@` becomes `_`.
fn file_name(label: &str) -> String {
    let name: String = label
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') { c } else { '_' })
        .collect();
    match name.trim_start_matches('.') {
        "" => "session".to_owned(),
        name => name.to_owned(),
    }
}

/// Writes the session file readable by its owner only (it logs in as the account), and the
/// proxy and user agent beside it as `<stem>.proxy` and `<stem>.user-agent`.
fn write_session(path: &Path, json: &str, proxy: Option<&str>, user_agent: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    write_private(path, json)?;
    if let Some(proxy) = proxy {
        write_private(&path.with_extension("proxy"), &format!("{proxy}\n"))?;
    }
    write_private(&path.with_extension("user-agent"), &format!("{user_agent}\n"))?;
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // An existing file keeps its mode on open: narrow it too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn session_files_are_private_and_named_after_the_label() -> anyhow::Result<()> {
        assert_eq!(file_name("ops 1/../x"), "ops_1_.._x");
        assert_eq!(file_name("ops-1@example.com"), "ops-1@example.com");
        assert_eq!(file_name(".."), "session");
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("sessions/ops-1.json");
        write_session(&path, "{\"cookies\":[],\"origins\":[]}", Some("http://proxy:8080"), "UA/1")?;
        assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read_to_string(dir.path().join("sessions/ops-1.proxy"))?, "http://proxy:8080\n");
        assert_eq!(std::fs::read_to_string(dir.path().join("sessions/ops-1.user-agent"))?, "UA/1\n");
        Ok(())
    }
}
