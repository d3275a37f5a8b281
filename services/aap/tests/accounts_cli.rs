//! The operator's terminal commands against a real platform: `aap session import` (the seed's
//! sessions directory) and `aap accounts list|disable|enable|delete`, run as the `aap` binary;
//! and how any command ends when something is wrong (one line on stderr, never a silent exit).

mod common;

use std::path::Path;

use aap_proto::v1::{CreateAccountRequest, ListAccountsRequest};
use common::*;

const UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

fn state(value: &str) -> String {
    format!(
        r#"{{"cookies": [{{"name": "session", "value": "{value}", "domain": "sessions.example", "path": "/"}}], "origins": []}}"#
    )
}

/// What a run of `aap` said and how it ended.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn aap(app: &TestApp, token: &str, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aap"))
        .args(args)
        .args(["--server", &app.grpc_url, "--token", token])
        .env("AAP_DATA_DIR", "/nonexistent")
        .output()
        .await
        .expect("aap runs");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn import(app: &TestApp, dir: &Path, extra: &[&str]) -> Run {
    let dir = dir.to_str().expect("utf-8 path");
    let mut args = vec!["session", "import", dir, "--assistant", "chatgpt", "--plan", "Plus"];
    args.extend_from_slice(extra);
    aap(app, OPERATOR, &args).await
}

/// Every account row, to tell whether an import changed anything.
async fn accounts_digest(app: &TestApp) -> String {
    let (digest,): (String,) =
        sqlx::query_as("SELECT coalesce(md5(string_agg(t::text, '|' ORDER BY t.id)), '') FROM session_accounts t")
            .fetch_one(&app.pool)
            .await
            .expect("digest");
    digest
}

#[tokio::test]
async fn session_import_uploads_storage_states_once_and_reports_the_files_it_skips() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    write("alice.json", &state("alice-1"));
    write("alice.proxy", "socks5://10.0.0.7:1080\n");
    write("alice.user-agent", &format!("{UA}\n"));
    write("bob.json", &state("bob-1"));
    write("notes.json", r#"{"hello": "not a session"}"#);
    write("carol.json", &state("carol-1"));
    write("carol.proxy", "http://user:secret@proxy.example:8080");
    write("README.md", "the seed's notes");

    let first = import(&app, dir.path(), &[]).await;
    assert!(!first.ok, "skipped files fail the run: {}", first.stdout);
    assert!(first.stdout.contains("created    alice.json"), "{}", first.stdout);
    assert!(first.stdout.contains("created    bob.json"), "{}", first.stdout);
    assert!(first.stdout.contains("skipped    notes.json: not a Playwright storage state"), "{}", first.stdout);
    assert!(
        first.stdout.contains("skipped    carol.json: refused by the platform (InvalidArgument)"),
        "{}",
        first.stdout
    );
    assert!(!first.stdout.contains("secret"), "the proxy's password is not echoed: {}", first.stdout);
    assert!(first.stdout.contains("2 created, 0 replaced, 0 unchanged, 2 skipped"), "{}", first.stdout);
    assert!(first.stderr.contains("2 of 4 files skipped"), "{}", first.stderr);

    let request = ListAccountsRequest { assistant: "chatgpt".into(), ..ListAccountsRequest::default() };
    let accounts = app.sessions(OPERATOR).list_accounts(request).await.expect("listed").into_inner().accounts;
    let labels: Vec<&str> = accounts.iter().map(|a| a.label.as_str()).collect();
    assert_eq!(labels, ["alice", "bob"]);
    assert_eq!((accounts[0].plan.as_str(), accounts[0].proxy.as_str()), ("Plus", "socks5://10.0.0.7:1080"));
    assert_eq!((accounts[0].user_agent.as_str(), accounts[1].proxy.as_str()), (UA, ""));

    // The same files again: nothing changes.
    let before = accounts_digest(&app).await;
    let second = import(&app, dir.path(), &[]).await;
    assert!(second.stdout.contains("0 created, 0 replaced, 2 unchanged, 2 skipped"), "{}", second.stdout);
    assert!(second.stdout.contains("unchanged  alice.json"), "{}", second.stdout);
    assert_eq!(accounts_digest(&app).await, before, "a second import changed nothing");

    // Fresh logins in the files: --replace stores them; the run succeeds once every file passes.
    for name in ["notes.json", "carol.json", "carol.proxy"] {
        std::fs::remove_file(dir.path().join(name)).expect("remove");
    }
    write("alice.json", &state("alice-2"));
    let replaced = import(&app, dir.path(), &["--replace"]).await;
    assert!(replaced.ok, "{}\n{}", replaced.stdout, replaced.stderr);
    assert!(replaced.stdout.contains("0 created, 2 replaced, 0 unchanged, 0 skipped"), "{}", replaced.stdout);
    let (versions,): (Vec<i64>,) =
        sqlx::query_as("SELECT array_agg(state_version ORDER BY label) FROM session_accounts")
            .fetch_one(&app.pool)
            .await
            .expect("versions");
    assert_eq!(versions, [2, 2], "each account took its file's state once");
    let proxies: Vec<String> = app
        .sessions(OPERATOR)
        .list_accounts(ListAccountsRequest::default())
        .await
        .expect("listed")
        .into_inner()
        .accounts
        .into_iter()
        .map(|a| a.proxy)
        .collect();
    assert_eq!(proxies, ["socks5://10.0.0.7:1080", ""], "an unchanged proxy is left alone");

    let missing = import(&app, &dir.path().join("nope"), &[]).await;
    assert!(!missing.ok && missing.stderr.contains("cannot read the sessions directory"), "{}", missing.stderr);
}

/// A storage state of exactly `bytes` bytes: one cookie whose value pads it out.
fn state_of_size(bytes: usize) -> String {
    state(&"v".repeat(bytes - state("").len()))
}

#[tokio::test]
async fn session_import_skips_a_file_larger_than_the_platform_reads_and_imports_the_rest() {
    let app = spawn_app().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).expect("write");
    let limit = aap_platform::server::limits::SESSIONS;
    // Over the limit: never sent. Just under it: the request with its label is over, and the
    // platform refuses it with OUT_OF_RANGE. Both are this file's problem, not the run's.
    write("a-huge.json", &state_of_size(limit + 1_000_000));
    write("b-nearly.json", &state_of_size(limit - 4));
    write("c-good.json", &state("c"));

    let run = import(&app, dir.path(), &[]).await;
    assert!(!run.ok, "skipped files fail the run: {}", run.stdout);
    assert!(run.stdout.contains("skipped    a-huge.json: is 9388608 bytes; the platform takes"), "{}", run.stdout);
    assert!(run.stdout.contains("skipped    b-nearly.json: refused by the platform (OutOfRange)"), "{}", run.stdout);
    assert!(run.stdout.contains("created    c-good.json"), "{}", run.stdout);
    assert!(run.stdout.contains("1 created, 0 replaced, 0 unchanged, 2 skipped"), "{}", run.stdout);
    assert!(run.stderr.contains("2 of 3 files skipped"), "{}", run.stderr);
    let request = ListAccountsRequest { assistant: "chatgpt".into(), ..ListAccountsRequest::default() };
    let accounts = app.sessions(OPERATOR).list_accounts(request).await.expect("listed").into_inner().accounts;
    assert_eq!(accounts.iter().map(|a| a.label.as_str()).collect::<Vec<_>>(), ["c-good"]);
}

#[tokio::test]
async fn accounts_are_listed_disabled_enabled_and_deleted_from_a_terminal() {
    let app = spawn_app().await;
    let mut operator = app.sessions(OPERATOR);
    let mut ids = Vec::new();
    for (assistant, plan, label) in [("chatgpt", "Plus", "alice@example.com"), ("claude", "Pro", "bob@example.com")] {
        let request = CreateAccountRequest {
            assistant: assistant.into(),
            plan: plan.into(),
            label: label.into(),
            storage_state_json: state(label),
            proxy: "http://10.1.2.3:3128".into(),
            ..CreateAccountRequest::default()
        };
        ids.push(operator.create_account(request).await.expect("created").into_inner().account.expect("account").id);
    }

    let table = aap(&app, OPERATOR, &["accounts", "list"]).await;
    assert!(table.ok, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "a header and two accounts: {}", table.stdout);
    assert!(lines[0].starts_with("ID") && lines[0].contains("STATUS") && lines[0].contains("LAST LEASE"));
    assert!(lines[1].contains(&ids[0]) && lines[1].contains("alice@example.com") && lines[1].contains("active"));
    assert!(lines[1].contains("10.1.2.3:3128"), "the proxy host: {}", lines[1]);
    let claude = aap(&app, OPERATOR, &["accounts", "list", "--assistant", "claude"]).await;
    assert!(claude.stdout.contains("bob@example.com") && !claude.stdout.contains("alice"), "{}", claude.stdout);

    let disabled = aap(&app, OPERATOR, &["accounts", "disable", "alice@example.com"]).await;
    assert!(disabled.ok, "{}", disabled.stderr);
    assert!(disabled.stdout.contains("disabled (was active)"), "{}", disabled.stdout);
    let json = aap(&app, OPERATOR, &["accounts", "list", "--status", "disabled", "--json"]).await;
    let document: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    let listed = document["accounts"].as_array().expect("accounts");
    assert_eq!(listed.len(), 1, "{json:?}", json = json.stdout);
    assert_eq!((listed[0]["id"].as_str(), listed[0]["status"].as_str()), (Some(ids[0].as_str()), Some("disabled")));
    assert_eq!(listed[0]["underlying_status"].as_str(), Some("active"));

    let enabled = aap(&app, OPERATOR, &["accounts", "enable", &ids[0]]).await;
    assert!(enabled.ok && enabled.stdout.contains(" active"), "{}{}", enabled.stdout, enabled.stderr);

    // A rate limit the site said lifts in five hours, ended by the operator.
    let lease =
        aap_proto::v1::LeaseSessionRequest { assistant: "claude".into(), plan: "Pro".into(), bot_id: "b".into() };
    let held = app.sessions(BOT).lease_session(lease).await.expect("leased").into_inner();
    let lifts_at = prost_types::Timestamp { seconds: chrono::Utc::now().timestamp() + 5 * 3600, nanos: 0 };
    let back = aap_proto::v1::ReturnSessionRequest {
        lease_id: held.lease_id,
        outcome: aap_proto::v1::LeaseOutcome::RateLimited.into(),
        runs: 1,
        detail: "rate-limited: You are out of free messages until 9:10 PM".into(),
        limit_lifts_at: Some(lifts_at),
    };
    app.sessions(BOT).return_session(back).await.expect("returned");
    let cooling = aap(&app, OPERATOR, &["accounts", "list", "--status", "cooling"]).await;
    assert!(
        cooling.stdout.contains("bob@example.com") && cooling.stdout.contains("cooling until"),
        "{}",
        cooling.stdout
    );
    let ended = aap(&app, OPERATOR, &["accounts", "end-cooldown", "bob@example.com"]).await;
    assert!(ended.ok && ended.stdout.contains(" active"), "{}{}", ended.stdout, ended.stderr);
    assert_eq!(get_status(&app, &ids[1]).await, aap_proto::v1::AccountStatus::Active);

    let deleted = aap(&app, OPERATOR, &["accounts", "delete", "bob@example.com", "--assistant", "claude"]).await;
    assert!(deleted.ok && deleted.stdout.contains(&format!("deleted account {}", ids[1])), "{}", deleted.stderr);
    let left = app.sessions(OPERATOR).list_accounts(ListAccountsRequest::default()).await.expect("list").into_inner();
    assert_eq!(left.accounts.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), [ids[0].as_str()]);

    // Clear refusals, never a panic.
    let unknown = aap(&app, OPERATOR, &["accounts", "disable", "nobody"]).await;
    assert!(!unknown.ok && unknown.stderr.contains("no account has the id or label \"nobody\""), "{}", unknown.stderr);
    let gone = aap(&app, OPERATOR, &["accounts", "delete", &ids[1]]).await;
    assert!(!gone.ok && gone.stderr.contains("NotFound"), "{}", gone.stderr);
    let customer = aap(&app, CUSTOMER, &["accounts", "list"]).await;
    assert!(!customer.ok && customer.stderr.contains("PermissionDenied"), "{}", customer.stderr);
    assert!(!customer.stderr.contains("panicked"), "{}", customer.stderr);
}

/// A command whose reader goes away (`aap accounts list | true`) ends quietly, killed by
/// SIGPIPE as a Unix tool is, never with a panic about the broken pipe.
#[tokio::test]
async fn a_command_whose_reader_went_away_ends_without_a_panic() {
    let app = spawn_app().await;
    let script = format!(
        "'{}' accounts list --server '{}' --token '{}' | true; echo \"status ${{PIPESTATUS[0]}}\" >&2",
        env!("CARGO_BIN_EXE_aap"),
        app.grpc_url,
        OPERATOR
    );
    let output = tokio::process::Command::new("bash")
        .args(["-c", &script])
        .env("AAP_DATA_DIR", "/nonexistent")
        .output()
        .await
        .expect("bash runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked") && !stderr.contains("Broken pipe"), "{stderr}");
    // 141: killed by SIGPIPE (128 + 13); 0 if it finished writing before `true` left.
    assert!(stderr.contains("status 141") || stderr.contains("status 0"), "{stderr}");
}

/// A server that takes the connection, answers something that is not HTTP/2 (a TLS alert, as a
/// TLS port does to `http://`) and closes it while the command still writes: the command says
/// so on one line and exits 1. With SIGPIPE at its default disposition hyper's write to that
/// socket killed it without a word (status 141) in most runs.
#[tokio::test]
async fn a_server_that_closes_mid_write_is_reported_on_one_line_never_a_silent_exit() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            // The first bytes only: the client is still writing the rest when the socket closes.
            let mut preface = [0u8; 100];
            let _ = socket.read(&mut preface).await;
            let _ = socket.write_all(b"\x15\x03\x03\x00\x02\x02\x46").await;
        }
    });
    for _ in 0..10 {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aap"))
            .args(["token", "list", "--server", &server, "--token", OPERATOR])
            .env("AAP_DATA_DIR", "/nonexistent")
            .output()
            .await
            .expect("aap runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{:?}, stderr: {stderr:?}", output.status);
        assert!(stderr.starts_with("error: ") && stderr.trim_end().lines().count() == 1, "{stderr:?}");
    }
}

/// What stops a command is one line naming it, with its cause, never anyhow's "Caused by" list
/// repeating the cause at each level.
#[tokio::test]
async fn an_unreachable_server_is_one_line_with_its_cause() {
    // A port nobody listens on: bound by the OS, then let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind").port();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aap"))
        .args(["ask", "--server", &format!("http://127.0.0.1:{port}"), "--token", "t", "a prompt"])
        .env("AAP_DATA_DIR", "/nonexistent")
        .output()
        .await
        .expect("aap runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with(&format!("error: cannot reach http://127.0.0.1:{port}: ")), "{stderr}");
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
}

/// A token read from a file or a secret often ends in a line break (or CRLF): the command
/// sends it without, as the platform reads its configured tokens.
#[tokio::test]
async fn a_token_with_a_trailing_line_break_is_sent_without_it() {
    let app = spawn_app().await;
    for token in [format!("{OPERATOR}\n"), format!("{OPERATOR}\r\n")] {
        let run = aap(&app, &token, &["token", "whoami"]).await;
        assert!(run.ok && run.stdout.contains(OPERATOR_NAME), "{token:?}: {}{}", run.stdout, run.stderr);
    }
    let run = aap(&app, "two words", &["token", "whoami"]).await;
    assert!(!run.ok && run.stderr.contains("which a header cannot carry"), "{}", run.stderr);
    assert!(!run.stderr.contains("two words"), "the token itself is never said: {}", run.stderr);
}

/// A second `aap serve` on a port another process holds says which listener and which flag, on
/// one line, before it reaches for the database.
#[tokio::test]
async fn a_port_in_use_names_the_listener_and_its_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    for (flag, what) in [("--grpc-addr", "the gRPC server"), ("--http-addr", "the seed's HTTP API")] {
        let other = if flag == "--grpc-addr" { "--http-addr" } else { "--grpc-addr" };
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aap"))
            .args(["serve", "--database-url", "postgres://aap@127.0.0.1:1/aap", flag, &addr, other, "127.0.0.1:0"])
            .args(["--console-addr", "off", "--metrics-addr", "off"])
            .env("AAP_SESSION_KEY", "00".repeat(32))
            .output()
            .await
            .expect("aap runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        let line = stderr.lines().last().unwrap_or_default();
        assert!(line.starts_with(&format!("error: bind {what} on {addr}: ")), "{stderr}");
        assert!(line.contains(&format!("({flag}, ")), "{stderr}");
    }
}

/// `aap watch` exits 1 when a target of the prompt failed for good, as `aap ask` does, so a
/// script can tell; 0 when every target answered.
#[tokio::test]
async fn watch_exits_one_when_a_target_failed_for_good_as_ask_does() {
    let app = spawn_app().await;
    let matched = first_matched(&app, ask_text("Which answers fail for good on a watch?", &["chatgpt"])).await;
    fail_next_task(&app, "chatgpt", "assistant-error: the site failed").await;
    let prompt = matched.prompt_id.to_string();
    let failed = aap(&app, CUSTOMER, &["watch", &prompt]).await;
    assert!(!failed.ok, "a failed target: {}{}", failed.stdout, failed.stderr);
    assert!(failed.stdout.contains("failed"), "{}", failed.stdout);

    let matched = first_matched(&app, ask_text("Which answers arrive on a watch?", &["chatgpt"])).await;
    let task = poll_task(&app, "chatgpt", "").await;
    submit(&app, task.evaluation_id, "An answer.").await.expect("submitted");
    let prompt = matched.prompt_id.to_string();
    // The watch follows the evaluation until the ingest has stored the answer.
    let answered = aap(&app, CUSTOMER, &["watch", &prompt]).await;
    assert!(answered.ok, "every target answered: {}{}", answered.stdout, answered.stderr);
    assert!(answered.stdout.contains("1 answered, 0 failed"), "{}", answered.stdout);
}

async fn get_status(app: &TestApp, id: &str) -> aap_proto::v1::AccountStatus {
    let request = aap_proto::v1::GetAccountRequest { account_id: id.into() };
    app.sessions(OPERATOR).get_account(request).await.expect("got").into_inner().account.expect("account").status()
}
