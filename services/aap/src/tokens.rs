//! `aap token create|list|revoke|whoami`: an operator's side of AdminService.

use std::io::Write;
use std::path::PathBuf;

use aap_proto::v1::admin_service_client::AdminServiceClient;
use aap_proto::v1::{
    CreateTokenRequest, ListTokensRequest, RevokeTokenRequest, Role as ProtoRole, TokenInfo, WhoAmIRequest,
};
use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};

use crate::client::Bearer;

/// What `aap token` does.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Creates a token for a principal (created on first use) and prints it once, alone on
    /// stdout: `TOKEN=$(aap token create --principal acme --role customer)`.
    Create {
        /// The principal: lowercase letters, digits, `.`, `_`, `-` (e.g. `acme`, `bot-eu-7`).
        #[arg(long)]
        principal: String,
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Bots only: an assistant the principal may serve (repeat); default: every assistant.
        #[arg(long = "assistant")]
        assistants: Vec<String>,
        /// Free text for the operators, e.g. "eu fleet".
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        conn: AdminConn,
    },
    /// Lists tokens (never their secrets).
    List {
        /// Only this principal's tokens.
        #[arg(long, default_value = "")]
        principal: String,
        /// Include revoked tokens, and console sessions that expired.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        conn: AdminConn,
    },
    /// Revokes a token by its id (`tok_...`, as `list` shows); calls with it are refused at once.
    Revoke {
        id: String,
        #[command(flatten)]
        conn: AdminConn,
    },
    /// Shows which principal and role a token belongs to.
    Whoami {
        #[command(flatten)]
        conn: AdminConn,
    },
}

/// A principal's role.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Customer,
    Bot,
    Operator,
}

/// Where the platform is and the token to call it with.
#[derive(Debug, Args)]
pub struct AdminConn {
    /// The platform's gRPC address.
    /// Default: the `AAP_SERVER` in <data dir>/dev.env (`aap dev` writes it), else
    /// http://127.0.0.1:50051.
    #[arg(long, env = "AAP_SERVER")]
    server: Option<String>,
    #[command(flatten)]
    tls: crate::client::TlsArgs,
    /// Operator token (any token for `whoami`); read from <data dir>/dev.env when unset.
    #[arg(long, env = "AAP_OPERATOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Data dir of `aap dev`, where dev.env holds the dev tokens.
    #[arg(long, env = "AAP_DATA_DIR", default_value = ".aap")]
    data_dir: PathBuf,
}

type Client = AdminServiceClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>>;

impl AdminConn {
    async fn connect(&self) -> anyhow::Result<Client> {
        let token = crate::client::token_or_dev(&self.token, &self.data_dir, "AAP_OPERATOR_TOKEN")?;
        let channel =
            crate::client::channel(&crate::client::server_or_dev(&self.server, &self.data_dir), &self.tls.client_tls())
                .await?;
        Ok(AdminServiceClient::with_interceptor(channel, Bearer::new(&token)?))
    }
}

fn role_name(role: i32) -> &'static str {
    match ProtoRole::try_from(role) {
        Ok(ProtoRole::Customer) => "customer",
        Ok(ProtoRole::Bot) => "bot",
        Ok(ProtoRole::Operator) => "operator",
        _ => "?",
    }
}

fn time(t: Option<&prost_types::Timestamp>) -> String {
    t.and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_else(|| "-".to_owned())
}

/// Prints tokens as a table, one per line.
pub fn print_tokens(out: &mut impl Write, tokens: &[TokenInfo]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<17} {:<20} {:<9} {:<22} {:<7} {:<17} {:<17} {:<17} LABEL",
        "ID", "PRINCIPAL", "ROLE", "ASSISTANTS", "SOURCE", "CREATED", "REVOKED", "EXPIRES"
    )?;
    for token in tokens {
        let assistants = if token.assistants.is_empty() { "-".to_owned() } else { token.assistants.join(",") };
        writeln!(
            out,
            "{:<17} {:<20} {:<9} {:<22} {:<7} {:<17} {:<17} {:<17} {}",
            token.id,
            token.principal,
            role_name(token.role),
            assistants,
            token.source,
            time(token.created_at.as_ref()),
            time(token.revoked_at.as_ref()),
            time(token.expires_at.as_ref()),
            token.label
        )?;
    }
    Ok(())
}

/// Runs one `aap token` command.
pub async fn run(command: TokenCommand) -> anyhow::Result<()> {
    let mut stdout = crate::stdout::stdout();
    match command {
        TokenCommand::Create { principal, role, assistants, label, conn } => {
            let role = match role {
                RoleArg::Customer => ProtoRole::Customer,
                RoleArg::Bot => ProtoRole::Bot,
                RoleArg::Operator => ProtoRole::Operator,
            };
            let request = CreateTokenRequest { principal, role: role.into(), assistants, label };
            let reply = conn.connect().await?.create_token(request).await?.into_inner();
            let info = reply.info.context("no token info in the reply")?;
            writeln!(stdout, "{}", reply.token)?;
            eprintln!(
                "created {} for {} ({}); the token above is shown only once: store it now",
                info.id,
                info.principal,
                role_name(info.role)
            );
        }
        TokenCommand::List { principal, all, conn } => {
            let request = ListTokensRequest { principal, include_revoked: all };
            let tokens = conn.connect().await?.list_tokens(request).await?.into_inner().tokens;
            print_tokens(&mut stdout, &tokens)?;
        }
        TokenCommand::Revoke { id, conn } => {
            let reply = conn.connect().await?.revoke_token(RevokeTokenRequest { id }).await?.into_inner();
            let info = reply.info.context("no token info in the reply")?;
            writeln!(stdout, "revoked {} of {} ({})", info.id, info.principal, role_name(info.role))?;
        }
        TokenCommand::Whoami { conn } => {
            let me = conn.connect().await?.who_am_i(WhoAmIRequest {}).await?.into_inner();
            let serves =
                if me.assistants.is_empty() { String::new() } else { format!(", serves {}", me.assistants.join(",")) };
            writeln!(stdout, "{} ({}{serves}) with token {}", me.principal, role_name(me.role), me.token_id)?;
        }
    }
    Ok(())
}
