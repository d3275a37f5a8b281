//! Looking after accounts over gRPC (what the console and `aap accounts` do): the live list,
//! disable and enable with a lease in flight, delete, the lease history, and why an account
//! cools down.

mod common;

use std::time::Duration;

use aap_proto::v1::{
    AccountStatus, CreateAccountRequest, DeleteAccountRequest, DisableAccountRequest, EnableAccountRequest,
    GetAccountRequest, LeaseOutcome, LeaseSessionRequest, ListAccountsRequest, ListLeasesRequest, ReturnSessionRequest,
    WatchAccountsRequest,
};
use common::*;
use futures::StreamExt;
use tonic::Code;

const STATE: &str = r#"{"cookies": [], "origins": []}"#;

async fn create(app: &TestApp, assistant: &str, plan: &str, label: &str) -> aap_proto::v1::Account {
    app.sessions(OPERATOR)
        .create_account(CreateAccountRequest {
            assistant: assistant.into(),
            plan: plan.into(),
            label: label.into(),
            storage_state_json: STATE.into(),
            ..CreateAccountRequest::default()
        })
        .await
        .expect("account created")
        .into_inner()
        .account
        .expect("account")
}

async fn lease(
    app: &TestApp,
    assistant: &str,
    bot: &str,
) -> Result<aap_proto::v1::LeaseSessionResponse, tonic::Status> {
    app.sessions(BOT)
        .lease_session(LeaseSessionRequest { assistant: assistant.into(), plan: String::new(), bot_id: bot.into() })
        .await
        .map(tonic::Response::into_inner)
}

async fn give_back(
    app: &TestApp,
    lease_id: &str,
    outcome: LeaseOutcome,
    runs: u32,
    detail: &str,
) -> aap_proto::v1::Account {
    app.sessions(BOT)
        .return_session(ReturnSessionRequest {
            lease_id: lease_id.into(),
            outcome: outcome.into(),
            runs,
            detail: detail.into(),
            ..Default::default()
        })
        .await
        .expect("returned")
        .into_inner()
        .account
        .expect("account")
}

async fn get(app: &TestApp, id: &str) -> aap_proto::v1::Account {
    app.sessions(OPERATOR)
        .get_account(GetAccountRequest { account_id: id.into() })
        .await
        .expect("get")
        .into_inner()
        .account
        .expect("account")
}

#[tokio::test]
async fn a_disabled_account_finishes_its_lease_and_is_never_lent_until_enabled() {
    let app = spawn_app().await;
    let account = create(&app, "claude", "Pro", "ops-1").await;
    let held = lease(&app, "claude", "bot-a").await.expect("leased");

    let mut sessions = app.sessions(OPERATOR);
    let disabled = sessions
        .disable_account(DisableAccountRequest { account_id: account.id.clone() })
        .await
        .expect("disabled")
        .into_inner()
        .account
        .expect("account");
    assert_eq!(disabled.status(), AccountStatus::Disabled);
    assert_eq!(disabled.underlying_status(), AccountStatus::Active);
    assert!(disabled.leased, "the lease in flight keeps its account");

    // The bot finishes its task and hands the session back; it stays disabled.
    let back = give_back(&app, &held.lease_id, LeaseOutcome::Ok, 3, "").await;
    assert_eq!(back.status(), AccountStatus::Disabled);
    assert_eq!(back.runs, 3);
    assert_eq!(back.rotation_runs, 3);
    let refused = lease(&app, "claude", "bot-b").await.expect_err("a disabled account is never lent");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{}", refused.message());

    let enabled = sessions
        .enable_account(EnableAccountRequest { account_id: account.id.clone() })
        .await
        .expect("enabled")
        .into_inner()
        .account
        .expect("account");
    assert_eq!(enabled.status(), AccountStatus::Active);
    let again = lease(&app, "claude", "bot-b").await.expect("lent again once enabled");
    assert_eq!(again.account_id, account.id);
}

#[tokio::test]
async fn deleting_an_account_is_refused_while_a_bot_holds_it_and_then_removes_its_history() {
    let app = spawn_app().await;
    let account = create(&app, "perplexity", "Pro", "ops-del").await;
    let held = lease(&app, "perplexity", "bot-a").await.expect("leased");
    let mut sessions = app.sessions(OPERATOR);
    let refused = sessions
        .delete_account(DeleteAccountRequest { account_id: account.id.clone() })
        .await
        .expect_err("a held account is not deleted");
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(refused.message().contains("disable it"), "{}", refused.message());

    give_back(&app, &held.lease_id, LeaseOutcome::Ok, 1, "").await;
    sessions.delete_account(DeleteAccountRequest { account_id: account.id.clone() }).await.expect("deleted");
    let gone = sessions.get_account(GetAccountRequest { account_id: account.id.clone() }).await.expect_err("gone");
    assert_eq!(gone.code(), Code::NotFound);
    let again =
        sessions.delete_account(DeleteAccountRequest { account_id: account.id.clone() }).await.expect_err("gone");
    assert_eq!(again.code(), Code::NotFound);
    assert_eq!(app.count("session_leases").await, 0, "its leases went with it");

    for bad in ["", "not-a-uuid", "\0"] {
        let refused = sessions.get_account(GetAccountRequest { account_id: bad.into() }).await.expect_err("bad id");
        assert_eq!(refused.code(), Code::InvalidArgument, "{bad:?}");
        let refused =
            sessions.disable_account(DisableAccountRequest { account_id: bad.into() }).await.expect_err("bad");
        assert_eq!(refused.code(), Code::InvalidArgument, "{bad:?}");
    }
}

#[tokio::test]
async fn the_lease_history_and_the_last_lease_say_who_held_it_and_how_it_went() {
    let app = spawn_app().await;
    let account = create(&app, "chatgpt", "Plus", "ops-hist").await;
    let first = lease(&app, "chatgpt", "bot-a").await.expect("leased");
    let held = get(&app, &account.id).await;
    let last = held.last_lease.expect("a last lease");
    assert_eq!((last.bot_id.as_str(), last.outcome.as_str(), last.principal.as_str()), ("bot-a", "held", BOT_NAME));

    let cooled = give_back(&app, &first.lease_id, LeaseOutcome::RateLimited, 4, "Too many requests in 1 hour").await;
    assert_eq!(cooled.status(), AccountStatus::Cooling);
    assert_eq!(cooled.cooldown_reason, "Too many requests in 1 hour");
    assert_eq!(cooled.rate_limits, 1);
    assert!(cooled.cooldown_until.is_some());
    let last = cooled.last_lease.expect("last lease");
    assert_eq!((last.outcome.as_str(), last.runs), ("rate-limited", 4));

    let history = app
        .sessions(OPERATOR)
        .list_leases(ListLeasesRequest { account_id: account.id.clone(), limit: 0 })
        .await
        .expect("history")
        .into_inner()
        .leases;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].detail, "Too many requests in 1 hour");
    assert!(history[0].returned_at.is_some());

    let filtered = app
        .sessions(OPERATOR)
        .list_accounts(ListAccountsRequest {
            assistant: String::new(),
            plan: "plus".into(),
            statuses: vec![AccountStatus::Cooling.into()],
        })
        .await
        .expect("list")
        .into_inner()
        .accounts;
    assert_eq!(filtered.len(), 1, "plans compare case-insensitively and the status filter keeps cooling ones");
    let none = app
        .sessions(OPERATOR)
        .list_accounts(ListAccountsRequest { statuses: vec![AccountStatus::Active.into()], ..Default::default() })
        .await
        .expect("list")
        .into_inner()
        .accounts;
    assert!(none.is_empty());
    let bad = app
        .sessions(OPERATOR)
        .list_accounts(ListAccountsRequest { statuses: vec![99], ..Default::default() })
        .await
        .expect_err("unknown status");
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_challenge_reads_as_challenged_with_its_reason() {
    let app = spawn_app().await;
    let account = create(&app, "google-ai-overview", "Free", "ops-ch").await;
    let held = lease(&app, "google-ai-overview", "bot-a").await.expect("leased");
    let back = give_back(&app, &held.lease_id, LeaseOutcome::Challenged, 0, "Just a moment...").await;
    assert_eq!(back.status(), AccountStatus::Challenged);
    assert_eq!(back.cooldown_reason, "Just a moment...");
    assert_eq!(back.challenges, 1);
    let listed = get(&app, &account.id).await;
    assert_eq!(listed.status(), AccountStatus::Challenged);
}

/// The next list of a watch, within `within`.
async fn next_list(
    stream: &mut tonic::Streaming<aap_proto::v1::WatchAccountsResponse>,
    within: Duration,
) -> Vec<aap_proto::v1::Account> {
    tokio::time::timeout(within, stream.next())
        .await
        .expect("the watch sends a list in time")
        .expect("the stream is open")
        .expect("a list")
        .accounts
}

#[tokio::test]
async fn a_watch_sends_the_list_then_every_change_made_anywhere() {
    let app = spawn_app().await;
    let account = create(&app, "chatgpt", "Plus", "watched").await;
    let mut stream = app
        .sessions(OPERATOR)
        .watch_accounts(WatchAccountsRequest { assistant: "chatgpt".into(), ..Default::default() })
        .await
        .expect("watch")
        .into_inner();
    let first = next_list(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].status(), AccountStatus::Active);

    app.sessions(OPERATOR)
        .disable_account(DisableAccountRequest { account_id: account.id.clone() })
        .await
        .expect("off");
    let after = next_list(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(after[0].status(), AccountStatus::Disabled);

    // A change written straight to the database (as another replica would) is heard too.
    sqlx::query("UPDATE session_accounts SET label = 'renamed' WHERE id = $1::uuid")
        .bind(&account.id)
        .execute(&app.pool)
        .await
        .expect("update");
    let renamed = next_list(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(renamed[0].label, "renamed");

    // Another assistant's account is not this watch's business: the next list is the new one.
    create(&app, "claude", "Pro", "other").await;
    create(&app, "chatgpt", "Plus", "second").await;
    let grown = next_list(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(grown.iter().map(|a| a.label.as_str()).collect::<Vec<_>>(), ["renamed", "second"]);

    let bad = app
        .sessions(OPERATOR)
        .watch_accounts(WatchAccountsRequest { assistant: "bard".into(), ..Default::default() })
        .await
        .expect_err("unknown assistant");
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn a_storage_state_that_is_not_one_or_is_another_assistants_is_refused_naming_the_problem() {
    let app = spawn_app().await;
    let claude = r#"{"cookies": [{"name": "sessionKey", "value": "sk-1", "domain": ".claude.ai", "path": "/"}]}"#;
    for (state, says) in [
        ("{not json", "not JSON"),
        (r#"{"origins": []}"#, "must have a \"cookies\" array"),
        ("[]", "must be a JSON object"),
        (claude, "its cookies belong to claude (\"claude.ai\"), not chatgpt"),
    ] {
        let refused = app
            .sessions(OPERATOR)
            .create_account(CreateAccountRequest {
                assistant: "chatgpt".into(),
                plan: "Plus".into(),
                label: "wrong".into(),
                storage_state_json: state.into(),
                ..CreateAccountRequest::default()
            })
            .await
            .expect_err("refused");
        assert_eq!(refused.code(), Code::InvalidArgument, "{state}");
        assert!(
            refused.message().contains("storage_state_json") && refused.message().contains(says),
            "{}",
            refused.message()
        );
    }
    // The same session is Claude's to have; and a refresh of a ChatGPT account with it is refused too.
    create(&app, "claude", "Pro", "right").await;
    let chatgpt = create(&app, "chatgpt", "Plus", "gpt").await;
    let refused = app
        .sessions(OPERATOR)
        .update_session_state(aap_proto::v1::UpdateSessionStateRequest {
            account_id: chatgpt.id,
            storage_state_json: claude.into(),
        })
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(app.count("session_accounts").await, 2);
}
