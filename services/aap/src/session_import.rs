//! `aap session import ./sessions --assistant chatgpt --plan Plus`: uploads a seed `sessions/`
//! directory, one account per `*.json` Playwright storage state, labelled by its file name
//! (`alice.json` → `alice`), with the `alice.proxy` and `alice.user-agent` files beside it as
//! the seed's bots read them.
//!
//! Idempotent: an account of the assistant with the same label is left as it is (the platform
//! never hands a stored state back, so the client cannot tell whether it differs); `--replace`
//! stores the file's state on it instead (UpdateSessionState, which makes it active again) and
//! its proxy and user agent when they differ. A file that is not a storage state, or that the
//! platform refuses (a proxy with credentials, a state of another assistant), is reported by
//! name and skipped; the others are imported.

use std::io::Write;
use std::path::{Path, PathBuf};

use aap_proto::v1::{
    Account, CreateAccountRequest, ListAccountsRequest, UpdateAccountRequest, UpdateSessionStateRequest,
};
use anyhow::Context as _;
use clap::Args;
use tonic::Code;

use crate::accounts_cmd::{OperatorConn, SessionClient, shown, status_error};

/// `aap session import`'s arguments.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The seed's sessions directory: `<label>.json` storage states, with `<label>.proxy` and
    /// `<label>.user-agent` beside them (both optional).
    pub dir: PathBuf,
    /// The assistant the sessions log in to (chatgpt, claude, perplexity, google-ai-overview).
    #[arg(long)]
    pub assistant: String,
    /// The accounts' plan, e.g. "Plus".
    #[arg(long)]
    pub plan: String,
    /// Store the file's session state (and proxy and user agent) on an account that already has
    /// its label, instead of leaving it alone. Use it when the files hold fresh logins: the
    /// account becomes active again.
    #[arg(long)]
    pub replace: bool,
    #[command(flatten)]
    pub conn: OperatorConn,
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new account, with its id.
    Created(String),
    /// An account with the label existed and took the file's state (`--replace`).
    Replaced(String),
    /// An account with the label exists and was left alone.
    Exists(String),
    /// Not imported, and why.
    Skipped(String),
}

/// Every file's outcome, by file name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    pub files: Vec<(String, Outcome)>,
}

impl Report {
    fn count(&self, pick: fn(&Outcome) -> bool) -> usize {
        self.files.iter().filter(|(_, outcome)| pick(outcome)).count()
    }

    /// Files not imported.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    /// One line per file, then the summary.
    pub fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        for (file, outcome) in &self.files {
            let file = shown(file);
            match outcome {
                Outcome::Created(id) => writeln!(out, "created    {file}  (account {})", shown(id))?,
                Outcome::Replaced(id) => {
                    writeln!(out, "replaced   {file}  (account {}: session state stored)", shown(id))?
                }
                Outcome::Exists(id) => writeln!(
                    out,
                    "unchanged  {file}  (account {} has this label; --replace stores the file's session state on it)",
                    shown(id)
                )?,
                Outcome::Skipped(why) => writeln!(out, "skipped    {file}: {}", shown(why))?,
            }
        }
        writeln!(
            out,
            "{} created, {} replaced, {} unchanged, {} skipped",
            self.count(|o| matches!(o, Outcome::Created(_))),
            self.count(|o| matches!(o, Outcome::Replaced(_))),
            self.count(|o| matches!(o, Outcome::Exists(_))),
            self.skipped()
        )
    }
}

/// A session file as read from the directory.
struct SessionFile {
    name: String,
    label: String,
    storage_state_json: String,
    proxy: String,
    user_agent: String,
}

/// The first non-empty line of `<stem>.<extension>` beside `session`, empty without the file
/// (as the seed's bots and `aap-bot --sessions-dir` read them).
fn sidecar(session: &Path, extension: &str) -> std::io::Result<String> {
    match std::fs::read_to_string(session.with_extension(extension)) {
        Ok(text) => Ok(text.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or_default().to_owned()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(error) => Err(error),
    }
}

/// Largest session file sent: SessionService reads requests of at most this size, and the
/// file is nearly all of one (a request only a little smaller may still be refused with
/// OUT_OF_RANGE, which skips the file too).
const MAX_FILE_BYTES: u64 = aap_platform::server::limits::SESSIONS as u64;

/// Reads one `*.json` file, or says why it is not a storage state.
fn read_session(path: &Path) -> Result<SessionFile, String> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let label = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let size = std::fs::metadata(path).map_err(|error| format!("cannot read it: {error}"))?.len();
    if size > MAX_FILE_BYTES {
        return Err(format!("is {size} bytes; the platform takes a session state of at most {MAX_FILE_BYTES} bytes"));
    }
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read it: {error}"))?;
    // The platform's own rules: a file it would refuse is named here without a call.
    aap_proto::storage_state::check(&text)
        .map_err(|reason| format!("not a Playwright storage state a bot can load: {reason}"))?;
    let proxy = sidecar(path, "proxy").map_err(|error| format!("cannot read its .proxy file: {error}"))?;
    let user_agent =
        sidecar(path, "user-agent").map_err(|error| format!("cannot read its .user-agent file: {error}"))?;
    Ok(SessionFile { name, label, storage_state_json: text, proxy, user_agent })
}

/// The `*.json` files of `dir`, by name.
fn session_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the sessions directory {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json") && path.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Whether a refusal concerns this file alone (the next file may pass) rather than the whole
/// import (no access, no platform). OUT_OF_RANGE is a request larger than the platform reads:
/// this file's state.
fn refused_for_this_file(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        Code::InvalidArgument | Code::FailedPrecondition | Code::NotFound | Code::AlreadyExists | Code::OutOfRange
    )
}

/// Imports every `*.json` file of `dir` as an account of `assistant` and `plan`.
pub async fn import(
    client: &mut SessionClient,
    dir: &Path,
    assistant: &str,
    plan: &str,
    replace: bool,
) -> anyhow::Result<Report> {
    let files = session_files(dir)?;
    let listed = ListAccountsRequest { assistant: assistant.to_owned(), ..ListAccountsRequest::default() };
    let existing: Vec<Account> = client.list_accounts(listed).await.map_err(status_error)?.into_inner().accounts;
    let mut report = Report::default();
    for path in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let file = match read_session(&path) {
            Ok(file) => file,
            Err(why) => {
                report.files.push((name, Outcome::Skipped(why)));
                continue;
            }
        };
        let outcome = match existing.iter().find(|account| account.label == file.label) {
            None => create(client, &file, assistant, plan).await?,
            Some(account) if !replace => Outcome::Exists(account.id.clone()),
            Some(account) => store_on(client, &file, account).await?,
        };
        report.files.push((file.name, outcome));
    }
    Ok(report)
}

async fn create(
    client: &mut SessionClient,
    file: &SessionFile,
    assistant: &str,
    plan: &str,
) -> anyhow::Result<Outcome> {
    let request = CreateAccountRequest {
        assistant: assistant.to_owned(),
        plan: plan.to_owned(),
        label: file.label.clone(),
        storage_state_json: file.storage_state_json.clone(),
        proxy: file.proxy.clone(),
        user_agent: file.user_agent.clone(),
    };
    match client.create_account(request).await {
        Ok(reply) => Ok(Outcome::Created(reply.into_inner().account.map(|a| a.id).unwrap_or_default())),
        Err(status) if refused_for_this_file(&status) => Ok(Outcome::Skipped(refusal(&status))),
        Err(status) => Err(status_error(status)).with_context(|| format!("importing {}", file.name)),
    }
}

/// Stores a file's state on the account with its label, and its proxy and user agent when
/// they differ from the account's.
async fn store_on(client: &mut SessionClient, file: &SessionFile, account: &Account) -> anyhow::Result<Outcome> {
    // The account shows its proxy as scheme://host:port; a file's proxy with credentials is
    // refused by the platform anyway.
    let proxy = (file.proxy.trim_end_matches('/') != account.proxy).then(|| file.proxy.clone());
    let user_agent = (file.user_agent != account.user_agent).then(|| file.user_agent.clone());
    if proxy.is_some() || user_agent.is_some() {
        let request = UpdateAccountRequest { account_id: account.id.clone(), proxy, user_agent, ..Default::default() };
        if let Err(status) = client.update_account(request).await {
            if refused_for_this_file(&status) {
                return Ok(Outcome::Skipped(refusal(&status)));
            }
            return Err(status_error(status)).with_context(|| format!("importing {}", file.name));
        }
    }
    let request = UpdateSessionStateRequest {
        account_id: account.id.clone(),
        storage_state_json: file.storage_state_json.clone(),
    };
    match client.update_session_state(request).await {
        Ok(_) => Ok(Outcome::Replaced(account.id.clone())),
        Err(status) if refused_for_this_file(&status) => Ok(Outcome::Skipped(refusal(&status))),
        Err(status) => Err(status_error(status)).with_context(|| format!("importing {}", file.name)),
    }
}

/// The platform's words for a refused file.
fn refusal(status: &tonic::Status) -> String {
    format!("refused by the platform ({:?}): {}", status.code(), shown(status.message()))
}

/// Runs `aap session import`, printing a line per file and a summary to `out`; fails (exit
/// status 1) when any file was skipped, after importing the others.
pub async fn run(args: ImportArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let mut client = args.conn.sessions().await?;
    let report = import(&mut client, &args.dir, &args.assistant, &args.plan, args.replace).await?;
    report.print(out)?;
    if report.skipped() > 0 {
        anyhow::bail!("{} of {} files skipped", report.skipped(), report.files.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_storage_states_are_read_with_the_files_beside_them() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("alice.json"), r#"{"cookies": [], "origins": []}"#)?;
        std::fs::write(dir.path().join("alice.proxy"), "\n socks5://10.0.0.7:1080 \n")?;
        std::fs::write(dir.path().join("alice.user-agent"), "Mozilla/5.0 Chrome/156.0.0.0\n")?;
        std::fs::write(dir.path().join("notes.json"), r#"{"hello": "world"}"#)?;
        std::fs::write(dir.path().join("broken.json"), "{not json")?;
        std::fs::write(dir.path().join("cookies.json"), r#"{"cookies":[1,"two",{"name":"x"}],"origins":"notalist"}"#)?;
        std::fs::write(dir.path().join("README.txt"), "not a session")?;
        let files = session_files(dir.path())?;
        let names: Vec<String> =
            files.iter().filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
        assert_eq!(names, ["alice.json", "broken.json", "cookies.json", "notes.json"]);
        let alice = read_session(&files[0]).map_err(anyhow::Error::msg)?;
        assert_eq!((alice.label.as_str(), alice.proxy.as_str()), ("alice", "socks5://10.0.0.7:1080"));
        assert_eq!(alice.user_agent, "Mozilla/5.0 Chrome/156.0.0.0");
        assert!(read_session(&files[1]).is_err_and(|why| why.contains("not JSON")));
        assert!(read_session(&files[2]).is_err_and(|why| why.contains("cookies[0] is not an object")));
        assert!(read_session(&files[3]).is_err_and(|why| why.contains("\"cookies\"")));
        Ok(())
    }

    #[test]
    fn a_file_larger_than_the_platform_reads_is_refused_unread() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let huge = dir.path().join("huge.json");
        std::fs::File::create(&huge)?.set_len(MAX_FILE_BYTES + 1)?;
        let why = read_session(&huge).err().unwrap_or_default();
        assert_eq!(
            why,
            format!("is {} bytes; the platform takes a session state of at most 8388608 bytes", MAX_FILE_BYTES + 1)
        );
        Ok(())
    }
}
