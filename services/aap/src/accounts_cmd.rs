//! `aap accounts list|disable|enable|delete`: an operator's view of the assistant accounts from
//! a terminal, over SessionService (ListAccounts, GetAccount, DisableAccount, EnableAccount,
//! DeleteAccount), as grpcurl or the console would call it.

use std::io::Write;
use std::path::PathBuf;

use aap_proto::v1::session_service_client::SessionServiceClient;
use aap_proto::v1::{
    Account, AccountStatus, DeleteAccountRequest, DisableAccountRequest, EnableAccountRequest, ListAccountsRequest,
    UpdateAccountRequest,
};
use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::client::Bearer;

/// A SessionService client that sends the operator's token.
pub type SessionClient = SessionServiceClient<InterceptedService<Channel, Bearer>>;

/// Where the platform is and the operator token to call it with (`aap accounts`,
/// `aap session import`).
#[derive(Debug, Args)]
pub struct OperatorConn {
    /// The platform's gRPC address; `https://` for TLS.
    /// Default: the `AAP_SERVER` in <data dir>/dev.env (`aap dev` writes it), else
    /// http://127.0.0.1:50051.
    #[arg(long, env = "AAP_SERVER")]
    server: Option<String>,
    #[command(flatten)]
    tls: crate::client::TlsArgs,
    /// Operator token; read from <data dir>/dev.env when unset.
    #[arg(long, env = "AAP_OPERATOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Data dir of `aap dev`, where dev.env holds the dev tokens.
    #[arg(long, env = "AAP_DATA_DIR", default_value = ".aap")]
    data_dir: PathBuf,
}

impl OperatorConn {
    /// Connects to SessionService with the operator token.
    pub async fn sessions(&self) -> anyhow::Result<SessionClient> {
        let token = crate::client::token_or_dev(&self.token, &self.data_dir, "AAP_OPERATOR_TOKEN")?;
        let channel =
            crate::client::channel(&crate::client::server_or_dev(&self.server, &self.data_dir), &self.tls.client_tls())
                .await?;
        Ok(SessionServiceClient::with_interceptor(channel, Bearer::new(&token)?))
    }
}

/// What `aap accounts` does.
#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// Lists accounts as a table (or JSON), by assistant, plan and label.
    List {
        /// Only this assistant's (chatgpt, claude, perplexity, google-ai-overview).
        #[arg(long, default_value = "")]
        assistant: String,
        /// Only this plan's (case-insensitive).
        #[arg(long, default_value = "")]
        plan: String,
        /// Only accounts with this status (repeat for several).
        #[arg(long = "status", value_enum)]
        statuses: Vec<StatusArg>,
        /// One JSON document (`{"accounts": [...]}`, the proto's JSON field names) instead of a
        /// table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: OperatorConn,
    },
    /// Takes an account out of rotation; a bot holding it finishes its task first.
    Disable {
        #[command(flatten)]
        account: AccountRef,
        #[command(flatten)]
        conn: OperatorConn,
    },
    /// Puts a disabled account back into rotation.
    Enable {
        #[command(flatten)]
        account: AccountRef,
        #[command(flatten)]
        conn: OperatorConn,
    },
    /// Ends an account's cool-down (a rate limit or a bot challenge) now, so it is lent again at
    /// once: after upgrading its plan, or when the site's limit lifted earlier than it said.
    EndCooldown {
        #[command(flatten)]
        account: AccountRef,
        #[command(flatten)]
        conn: OperatorConn,
    },
    /// Deletes an account with its session state, leases and evidence (refused while a bot
    /// holds it: disable it first, and delete it once the lease is back).
    Delete {
        #[command(flatten)]
        account: AccountRef,
        #[command(flatten)]
        conn: OperatorConn,
    },
}

/// An account by id, or by its label (unique within `--assistant` when given).
#[derive(Debug, Args)]
pub struct AccountRef {
    /// The account's id (as `list` shows it) or its label.
    pub account: String,
    /// With a label: the assistant whose account it is, when labels repeat across assistants.
    #[arg(long, default_value = "")]
    pub assistant: String,
}

/// An account status, as filters name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    Active,
    Cooling,
    Expired,
    Challenged,
    Disabled,
}

impl From<StatusArg> for AccountStatus {
    fn from(status: StatusArg) -> AccountStatus {
        match status {
            StatusArg::Active => AccountStatus::Active,
            StatusArg::Cooling => AccountStatus::Cooling,
            StatusArg::Expired => AccountStatus::Expired,
            StatusArg::Challenged => AccountStatus::Challenged,
            StatusArg::Disabled => AccountStatus::Disabled,
        }
    }
}

fn status_name(status: i32) -> &'static str {
    match AccountStatus::try_from(status) {
        Ok(AccountStatus::Active) => "active",
        Ok(AccountStatus::Cooling) => "cooling",
        Ok(AccountStatus::Expired) => "expired",
        Ok(AccountStatus::Challenged) => "challenged",
        Ok(AccountStatus::Disabled) => "disabled",
        Ok(AccountStatus::Unspecified) | Err(_) => "?",
    }
}

/// Text from the platform as a terminal should show it: every control character escaped
/// (`\u{1b}`, `\n`), so that a value (a bot's cool-down reason, a refusal) can neither clear
/// the screen, set the window title nor pass for another line.
pub fn shown(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// An account's status for people: `cooling until 2026-12-03 05:10 (rate limited: ...)`,
/// `disabled (was expired)`, `active, at its hourly budget (40) until 2026-12-03 05:10`.
pub fn status_text(account: &Account) -> String {
    let status = status_name(account.status);
    let mut text = status.to_owned();
    if account.cooldown_until.is_some() {
        text.push_str(&format!(" until {}", time(account.cooldown_until.as_ref())));
    }
    if account.budget_frees_at.is_some() {
        let (budget, frees_at) = (account.hourly_budget, time(account.budget_frees_at.as_ref()));
        text.push_str(&format!(", at its hourly budget ({budget}) until {frees_at}"));
    }
    if !account.cooldown_reason.is_empty() {
        // Enough for the bot's class and prefix and the site's own words after them.
        let mut chars = account.cooldown_reason.chars();
        let reason: String = chars.by_ref().take(100).collect();
        let more = if chars.next().is_some() { "…" } else { "" };
        text.push_str(&format!(" ({}{more})", shown(&reason)));
    }
    let underlying = status_name(account.underlying_status);
    if status == "disabled" && underlying != "disabled" && underlying != "?" {
        text.push_str(&format!(" (was {underlying})"));
    }
    text
}

/// The host of a proxy shown as `scheme://host:port`.
fn proxy_host(proxy: &str) -> &str {
    if proxy.is_empty() {
        return "-";
    }
    proxy.split_once("://").map_or(proxy, |(_, rest)| rest)
}

/// Prints accounts as a table, one per line.
pub fn print_accounts(out: &mut impl Write, accounts: &[Account]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<36}  {:<18} {:<8} {:<28} {:<44} {:>5} {:<6} {:<22} LAST LEASE",
        "ID", "ASSISTANT", "PLAN", "LABEL", "STATUS", "RUNS", "LEASED", "PROXY"
    )?;
    for account in accounts {
        let last_lease = match &account.last_lease {
            Some(lease) => {
                format!("{} {} {}", time(lease.leased_at.as_ref()), shown(&lease.bot_id), shown(&lease.outcome))
            }
            None => time(account.last_leased_at.as_ref()),
        };
        writeln!(
            out,
            "{:<36}  {:<18} {:<8} {:<28} {:<44} {:>5} {:<6} {:<22} {}",
            shown(&account.id),
            shown(&account.assistant),
            shown(&account.plan),
            shown(&account.label),
            status_text(account),
            account.runs,
            if account.leased { "yes" } else { "no" },
            shown(proxy_host(&account.proxy)),
            last_lease
        )?;
    }
    Ok(())
}

/// An account as JSON, with the proto's field names and statuses as words.
fn account_json(account: &Account) -> serde_json::Value {
    let at = |t: Option<&prost_types::Timestamp>| {
        t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
            .map(|t| serde_json::Value::String(t.to_rfc3339()))
            .unwrap_or(serde_json::Value::Null)
    };
    let last_lease = account.last_lease.as_ref().map(|lease| {
        serde_json::json!({
            "id": lease.id,
            "bot_id": lease.bot_id,
            "principal": lease.principal,
            "leased_at": at(lease.leased_at.as_ref()),
            "expires_at": at(lease.expires_at.as_ref()),
            "returned_at": at(lease.returned_at.as_ref()),
            "outcome": lease.outcome,
            "runs": lease.runs,
            "detail": lease.detail,
        })
    });
    serde_json::json!({
        "id": account.id,
        "assistant": account.assistant,
        "plan": account.plan,
        "label": account.label,
        "status": status_name(account.status),
        "underlying_status": status_name(account.underlying_status),
        "cooldown_until": at(account.cooldown_until.as_ref()),
        "cooldown_reason": account.cooldown_reason,
        "runs": account.runs,
        "rotation_runs": account.rotation_runs,
        "leased": account.leased,
        "last_leased_at": at(account.last_leased_at.as_ref()),
        "last_lease": last_lease,
        "proxy": account.proxy,
        "user_agent": account.user_agent,
        "challenges": account.challenges,
        "last_challenged_at": at(account.last_challenged_at.as_ref()),
        "proxy_challenges": account.proxy_challenges,
        "rate_limits": account.rate_limits,
        "failures": account.failures,
        "prompts_this_hour": account.prompts_this_hour,
        "hourly_budget": account.hourly_budget,
        "budget_frees_at": at(account.budget_frees_at.as_ref()),
        "state_refreshed_at": at(account.state_refreshed_at.as_ref()),
        "created_at": at(account.created_at.as_ref()),
    })
}

/// The id of the account `reference` names: a uuid as it is, else the one account with that
/// label (of `--assistant` when given).
pub async fn resolve(client: &mut SessionClient, reference: &AccountRef) -> anyhow::Result<String> {
    let wanted = reference.account.trim();
    if uuid::Uuid::parse_str(wanted).is_ok() {
        return Ok(wanted.to_owned());
    }
    let request = ListAccountsRequest { assistant: reference.assistant.clone(), ..ListAccountsRequest::default() };
    let accounts = client.list_accounts(request).await.map_err(status_error)?.into_inner().accounts;
    let matches: Vec<&Account> = accounts.iter().filter(|account| account.label == wanted).collect();
    match matches.as_slice() {
        [account] => Ok(account.id.clone()),
        [] => anyhow::bail!("no account has the id or label {wanted:?}"),
        several => anyhow::bail!(
            "{} accounts are labelled {wanted:?} ({}): give its id, or --assistant",
            several.len(),
            several.iter().map(|a| format!("{} {}", shown(&a.assistant), shown(&a.id))).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// A refusal as the operator should read it: the status's code and message.
pub fn status_error(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", status.code(), shown(status.message()))
}

/// Runs one `aap accounts` command, printing to `out`.
pub async fn run(command: AccountsCommand, out: &mut impl Write) -> anyhow::Result<()> {
    match command {
        AccountsCommand::List { assistant, plan, statuses, json, conn } => {
            let statuses = statuses.into_iter().map(|s| AccountStatus::from(s).into()).collect();
            let request = ListAccountsRequest { assistant, plan, statuses };
            let accounts =
                conn.sessions().await?.list_accounts(request).await.map_err(status_error)?.into_inner().accounts;
            if json {
                let document = serde_json::json!({ "accounts": accounts.iter().map(account_json).collect::<Vec<_>>() });
                writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
            } else {
                print_accounts(out, &accounts)?;
            }
        }
        AccountsCommand::Disable { account, conn } => {
            let mut client = conn.sessions().await?;
            let account_id = resolve(&mut client, &account).await?;
            let reply = client.disable_account(DisableAccountRequest { account_id }).await.map_err(status_error)?;
            print_accounts(out, &[reply.into_inner().account.context("no account in the reply")?])?;
        }
        AccountsCommand::Enable { account, conn } => {
            let mut client = conn.sessions().await?;
            let account_id = resolve(&mut client, &account).await?;
            let reply = client.enable_account(EnableAccountRequest { account_id }).await.map_err(status_error)?;
            print_accounts(out, &[reply.into_inner().account.context("no account in the reply")?])?;
        }
        AccountsCommand::EndCooldown { account, conn } => {
            let mut client = conn.sessions().await?;
            let account_id = resolve(&mut client, &account).await?;
            let request = UpdateAccountRequest { account_id, end_cooldown: true, ..Default::default() };
            let reply = client.update_account(request).await.map_err(status_error)?;
            print_accounts(out, &[reply.into_inner().account.context("no account in the reply")?])?;
        }
        AccountsCommand::Delete { account, conn } => {
            let mut client = conn.sessions().await?;
            let account_id = resolve(&mut client, &account).await?;
            client
                .delete_account(DeleteAccountRequest { account_id: account_id.clone() })
                .await
                .map_err(status_error)?;
            writeln!(out, "deleted account {} with its session state, leases and evidence", shown(&account_id))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_as_words_with_their_reasons() {
        let cooling = Account {
            status: AccountStatus::Cooling.into(),
            underlying_status: AccountStatus::Cooling.into(),
            cooldown_until: Some(prost_types::Timestamp { seconds: 1_796_000_000, nanos: 0 }),
            cooldown_reason: "rate-limited: too many requests".into(),
            ..Account::default()
        };
        assert_eq!(status_text(&cooling), "cooling until 2026-11-30 00:53 (rate-limited: too many requests)");
        // A bot's reason: its class and prefix, then the site's words, cut after 100 characters.
        let limited = Account {
            cooldown_reason: "rate-limited: the assistant rate limited the account: You've reached our limit of \
                              messages per hour. Please try again later. [evidence: /var/lib/aap/e42]"
                .into(),
            ..cooling.clone()
        };
        assert_eq!(
            status_text(&limited),
            "cooling until 2026-11-30 00:53 (rate-limited: the assistant rate limited the account: You've reached \
             our limit of messages per hour.…)"
        );
        let disabled = Account {
            status: AccountStatus::Disabled.into(),
            underlying_status: AccountStatus::Expired.into(),
            ..Account::default()
        };
        assert_eq!(status_text(&disabled), "disabled (was expired)");
        let budgeted = Account {
            status: AccountStatus::Active.into(),
            underlying_status: AccountStatus::Active.into(),
            prompts_this_hour: 40,
            hourly_budget: 40,
            budget_frees_at: Some(prost_types::Timestamp { seconds: 1_796_000_000, nanos: 0 }),
            ..Account::default()
        };
        assert_eq!(status_text(&budgeted), "active, at its hourly budget (40) until 2026-11-30 00:53");
        assert_eq!(status_text(&Account { budget_frees_at: None, ..budgeted }), "active");
        assert_eq!(proxy_host("socks5://10.0.0.7:1080"), "10.0.0.7:1080");
        assert_eq!(proxy_host(""), "-");
    }

    #[test]
    fn text_from_the_platform_is_printed_with_its_control_characters_escaped() -> std::io::Result<()> {
        let hostile = Account {
            id: "3f0c".into(),
            assistant: "chatgpt".into(),
            plan: "Plus".into(),
            label: "ops\u{1b}[31m".into(),
            status: AccountStatus::Cooling.into(),
            underlying_status: AccountStatus::Cooling.into(),
            cooldown_reason: "\u{1b}[2J\u{1b}]0;pwned\u{7}rate\nlimited".into(),
            last_lease: Some(aap_proto::v1::Lease {
                bot_id: "bot\u{9b}1".into(),
                outcome: "rate-limited".into(),
                ..aap_proto::v1::Lease::default()
            }),
            ..Account::default()
        };
        let mut out = Vec::new();
        print_accounts(&mut out, &[hostile])?;
        let printed = String::from_utf8_lossy(&out);
        assert!(!printed.trim_end().chars().any(|c| c.is_control() && c != '\n'), "{printed:?}");
        assert_eq!(printed.lines().count(), 2, "one header, one account: {printed}");
        assert!(printed.contains(r"(\u{1b}[2J\u{1b}]0;pwned\u{7}rate\nlimited)"), "{printed}");
        assert!(printed.contains(r"ops\u{1b}[31m") && printed.contains(r"bot\u{9b}1"), "{printed}");
        let refusal = status_error(tonic::Status::not_found("account \u{1b}[2J not found")).to_string();
        assert_eq!(refusal, r"NotFound: account \u{1b}[2J not found");
        Ok(())
    }
}
