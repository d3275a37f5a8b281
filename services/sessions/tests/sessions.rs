//! SessionService end to end: a real gRPC server in-process on 127.0.0.1:0 over a fresh
//! PostgreSQL database per test.

use std::collections::HashSet;
use std::time::Duration;

use aap_proto::v1::session_service_client::SessionServiceClient;
use aap_proto::v1::session_service_server::SessionServiceServer;
use aap_proto::v1::{
    Account, AccountStatus, CreateAccountRequest, LeaseOutcome, LeaseSessionRequest, LeaseSessionResponse,
    ListAccountsRequest, ListLeasesRequest, ReturnSessionRequest, UpdateAccountRequest, UpdateSessionStateRequest,
};
use aap_sessions::SessionsConfig;
use aap_sessions::grpc::SessionGrpc;
use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

type Client = SessionServiceClient<Channel>;

/// Starts SessionService over a fresh, migrated database and connects a client to it. The
/// server lives as long as the test's runtime.
async fn spawn_app(config: SessionsConfig) -> anyhow::Result<Client> {
    Ok(spawn_app_and_pool(config).await?.0)
}

/// [`spawn_app`], with a pool of its database for what a test sets up or reads there.
async fn spawn_app_and_pool(config: SessionsConfig) -> anyhow::Result<(Client, sqlx::PgPool)> {
    aap_testkit::init_tracing();
    let database_url = aap_testkit::fresh_database().await;
    let pool = aap_platform::db::connect_and_migrate(&database_url, 20).await.context("database")?;
    let own = pool.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tonic::transport::Server::builder()
        .layer(aap_testkit::as_caller(aap_testkit::bot("bot-fleet")))
        .add_service(SessionServiceServer::new(SessionGrpc::new(pool, config)))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
    Ok((SessionServiceClient::new(channel), own))
}

fn storage_state(label: &str) -> String {
    format!(
        r#"{{"cookies": [{{"name": "session", "value": "{label}", "domain": "sessions.example", "path": "/"}}], "origins": []}}"#
    )
}

async fn create(client: &mut Client, assistant: &str, plan: &str, label: &str) -> anyhow::Result<Account> {
    let request = CreateAccountRequest {
        assistant: assistant.into(),
        plan: plan.into(),
        label: label.into(),
        storage_state_json: storage_state(label),
        ..CreateAccountRequest::default()
    };
    client.create_account(request).await?.into_inner().account.context("no account in the reply")
}

async fn lease(client: &mut Client, assistant: &str, plan: &str) -> Result<LeaseSessionResponse, tonic::Status> {
    let request = LeaseSessionRequest { assistant: assistant.into(), plan: plan.into(), bot_id: "bot-1".into() };
    Ok(client.lease_session(request).await?.into_inner())
}

async fn give_back(
    client: &mut Client,
    lease_id: &str,
    outcome: LeaseOutcome,
    runs: u32,
) -> Result<Account, tonic::Status> {
    let request = ReturnSessionRequest {
        lease_id: lease_id.into(),
        outcome: outcome.into(),
        runs,
        detail: "test".into(),
        ..Default::default()
    };
    let account = client.return_session(request).await?.into_inner().account;
    account.ok_or_else(|| tonic::Status::internal("no account in the reply"))
}

async fn account(client: &mut Client, id: &str) -> anyhow::Result<Account> {
    let accounts = client.list_accounts(ListAccountsRequest::default()).await?.into_inner().accounts;
    accounts.into_iter().find(|account| account.id == id).context("account not listed")
}

/// Leases until a lease succeeds, or fails after a generous deadline; every refusal on the way
/// must be RESOURCE_EXHAUSTED.
async fn lease_when_free(client: &mut Client, assistant: &str, plan: &str) -> anyhow::Result<LeaseSessionResponse> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match lease(client, assistant, plan).await {
            Ok(lease) => return Ok(lease),
            Err(status) if status.code() == Code::ResourceExhausted => {}
            Err(status) => anyhow::bail!("lease refused with {status:?}"),
        }
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "no account freed up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, tonic::Status>) -> Code {
    match result {
        Ok(value) => panic!("expected an error, got {value:?}"),
        Err(status) => status.code(),
    }
}

fn to_chrono(at: Option<prost_types::Timestamp>) -> Option<chrono::DateTime<chrono::Utc>> {
    at.and_then(|at| chrono::DateTime::from_timestamp(at.seconds, u32::try_from(at.nanos).ok()?))
}

/// An account asks at most its assistant's hourly budget of prompts: a lease grants no more runs
/// than the budget has left; an account at its budget is not lent (RESOURCE_EXHAUSTED, retry
/// when its oldest lease of the hour leaves the hour); a lease not returned counts all its runs;
/// an hour on, the whole budget is back. An assistant without a budget is lent as before.
#[tokio::test]
async fn an_account_asks_at_most_its_hourly_budget_of_prompts() -> anyhow::Result<()> {
    let config = SessionsConfig {
        per_session_runs: 2,
        hourly_prompts: [("chatgpt".to_owned(), 3)].into(),
        ..SessionsConfig::default()
    };
    let (mut client, pool) = spawn_app_and_pool(config).await?;
    let budgeted = create(&mut client, "chatgpt", "plus", "budgeted").await?;
    let unbudgeted = create(&mut client, "claude", "pro", "unbudgeted").await?;
    assert_eq!((budgeted.prompts_this_hour, budgeted.hourly_budget, budgeted.budget_frees_at), (0, 3, None));
    assert_eq!((unbudgeted.prompts_this_hour, unbudgeted.hourly_budget), (0, 0));

    let first = lease(&mut client, "chatgpt", "plus").await?;
    assert_eq!(first.max_runs, 2, "the rotation's runs, within the budget");
    let held = account(&mut client, &budgeted.id).await?;
    assert_eq!((held.prompts_this_hour, held.budget_frees_at), (2, None), "a held lease counts its max_runs");
    give_back(&mut client, &first.lease_id, LeaseOutcome::Ok, 2).await?;
    let second = lease(&mut client, "chatgpt", "plus").await?;
    assert_eq!(second.max_runs, 1, "what the budget has left");
    let returned = give_back(&mut client, &second.lease_id, LeaseOutcome::Ok, 1).await?;
    // At its budget: its status unchanged, the account says when it may be lent again (when the
    // first lease leaves the hour), in every read of it.
    assert_eq!((returned.status, returned.prompts_this_hour), (AccountStatus::Active as i32, 3));
    let frees_at = to_chrono(returned.budget_frees_at).context("at its budget: when it frees up")?;
    let first_leased = to_chrono(account(&mut client, &budgeted.id).await?.last_leased_at).context("leased")?;
    assert!(frees_at > chrono::Utc::now() + chrono::Duration::minutes(55), "{frees_at}");
    assert!(frees_at > first_leased && frees_at <= first_leased + chrono::Duration::hours(1), "{frees_at}");
    let listed = client
        .list_accounts(ListAccountsRequest { assistant: "chatgpt".into(), ..Default::default() })
        .await?
        .into_inner()
        .accounts;
    assert_eq!(
        listed.iter().map(|a| (a.hourly_budget, to_chrono(a.budget_frees_at))).collect::<Vec<_>>(),
        vec![(3, Some(frees_at))]
    );

    let refused = lease(&mut client, "chatgpt", "plus").await.expect_err("at its budget");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("hourly budget"), "{}", refused.message());
    let retry = refused.get_details_retry_info().and_then(|info| info.retry_delay).context("a retry delay")?;
    assert!(
        retry > Duration::from_secs(55 * 60) && retry <= Duration::from_secs(3600),
        "when the first lease leaves the hour: {retry:?}"
    );
    for _ in 0..3 {
        let lease = lease(&mut client, "claude", "pro").await?;
        assert_eq!(lease.max_runs, 2, "no budget for claude");
        give_back(&mut client, &lease.lease_id, LeaseOutcome::Ok, 2).await?;
    }
    let unbudgeted = account(&mut client, &unbudgeted.id).await?;
    assert_eq!((unbudgeted.prompts_this_hour, unbudgeted.hourly_budget, unbudgeted.budget_frees_at), (6, 0, None));

    // An hour on (the leases moved back 61 minutes), the whole budget is back; a lease left
    // open (here lapsed, its bot gone) counts every run it granted.
    sqlx::query("UPDATE session_leases SET leased_at = leased_at - interval '61 minutes'").execute(&pool).await?;
    let freed = account(&mut client, &budgeted.id).await?;
    assert_eq!((freed.prompts_this_hour, freed.budget_frees_at), (0, None));
    let open = lease(&mut client, "chatgpt", "plus").await?;
    assert_eq!(open.max_runs, 2);
    sqlx::query("UPDATE session_accounts SET leased_until = now() - interval '1 second'").execute(&pool).await?;
    sqlx::query("UPDATE session_leases SET expires_at = now() - interval '1 second'").execute(&pool).await?;
    let after_lapse = lease(&mut client, "chatgpt", "plus").await?;
    assert_eq!(after_lapse.max_runs, 1, "the lapsed lease's two runs count");
    Ok(())
}

#[tokio::test]
async fn leases_rotate_round_robin_over_every_account() -> anyhow::Result<()> {
    let mut client = spawn_app(SessionsConfig::default()).await?;
    let mut ids = Vec::new();
    for label in ["a@example.com", "b@example.com", "c@example.com"] {
        ids.push(create(&mut client, "chatgpt", "Plus", label).await?.id);
    }

    let mut lent = Vec::new();
    for _ in 0..6 {
        let lease = lease(&mut client, "chatgpt", "plus").await?;
        assert_eq!(lease.plan, "Plus", "the operator's spelling comes back");
        give_back(&mut client, &lease.lease_id, LeaseOutcome::Ok, 1).await?;
        lent.push(lease.account_id);
    }

    let expected: Vec<String> = ids.iter().chain(ids.iter()).cloned().collect();
    assert_eq!(lent, expected);
    Ok(())
}

#[tokio::test]
async fn a_lease_carries_max_runs_and_the_next_lease_rotates_to_the_next_account() -> anyhow::Result<()> {
    let config = SessionsConfig { per_session_runs: 3, ..SessionsConfig::default() };
    let mut client = spawn_app(config).await?;
    let first = create(&mut client, "claude", "Pro", "first").await?;
    let second = create(&mut client, "claude", "Pro", "second").await?;

    let lease1 = lease(&mut client, "claude", "").await?;
    assert_eq!(lease1.account_id, first.id);
    assert_eq!(lease1.max_runs, 3);
    assert_eq!(lease1.storage_state_json, storage_state("first"), "the state comes back byte for byte");
    let leased = account(&mut client, &first.id).await?;
    assert!(leased.leased);
    assert!(to_chrono(lease1.expires_at) > to_chrono(leased.last_leased_at), "the lease lapses after it starts");

    let returned = give_back(&mut client, &lease1.lease_id, LeaseOutcome::Ok, 3).await?;
    assert_eq!(returned.runs, 3);
    assert!(!returned.leased);
    assert_eq!(returned.status, AccountStatus::Active as i32);

    let lease2 = lease(&mut client, "claude", "PRO").await?;
    assert_eq!(lease2.account_id, second.id);
    assert_ne!(lease2.lease_id, lease1.lease_id);
    Ok(())
}

#[tokio::test]
async fn an_expired_account_is_never_leased_again_until_its_state_is_updated() -> anyhow::Result<()> {
    let mut client = spawn_app(SessionsConfig::default()).await?;
    let stale = create(&mut client, "chatgpt", "Plus", "stale").await?;
    let fresh = create(&mut client, "chatgpt", "Plus", "fresh").await?;

    let first = lease(&mut client, "chatgpt", "Plus").await?;
    assert_eq!(first.account_id, stale.id);
    let retired = give_back(&mut client, &first.lease_id, LeaseOutcome::Expired, 0).await?;
    assert_eq!(retired.status, AccountStatus::Expired as i32);

    for _ in 0..4 {
        let lease = lease(&mut client, "chatgpt", "Plus").await?;
        assert_eq!(lease.account_id, fresh.id);
        give_back(&mut client, &lease.lease_id, LeaseOutcome::Ok, 1).await?;
    }
    let held = lease(&mut client, "chatgpt", "Plus").await?;
    assert_eq!(code(lease(&mut client, "chatgpt", "Plus").await), Code::ResourceExhausted);
    give_back(&mut client, &held.lease_id, LeaseOutcome::Ok, 1).await?;

    let state = storage_state("stale, logged in again");
    let update = UpdateSessionStateRequest { account_id: stale.id.clone(), storage_state_json: state.clone() };
    let revived = client.update_session_state(update).await?.into_inner().account.context("no account")?;
    assert_eq!(revived.status, AccountStatus::Active as i32);
    let lease = lease(&mut client, "chatgpt", "Plus").await?;
    assert_eq!(lease.account_id, stale.id, "least recently leased goes first");
    assert_eq!(lease.storage_state_json, state);
    Ok(())
}

#[tokio::test]
async fn a_login_wall_seen_before_a_fresh_login_leaves_the_account_active() -> anyhow::Result<()> {
    let mut client = spawn_app(SessionsConfig::default()).await?;
    let only = create(&mut client, "perplexity", "Pro", "only").await?;
    let old = lease(&mut client, "perplexity", "").await?;
    let update = UpdateSessionStateRequest { account_id: only.id.clone(), storage_state_json: storage_state("new") };
    client.update_session_state(update).await?;

    let after = give_back(&mut client, &old.lease_id, LeaseOutcome::Expired, 0).await?;
    assert_eq!(after.status, AccountStatus::Active as i32);
    assert_eq!(lease(&mut client, "perplexity", "").await?.storage_state_json, storage_state("new"));
    Ok(())
}

#[tokio::test]
async fn a_rate_limited_account_cools_down_then_comes_back() -> anyhow::Result<()> {
    let config = SessionsConfig { rate_limit_cooldown: Duration::from_secs(2), ..SessionsConfig::default() };
    let mut client = spawn_app(config).await?;
    let only = create(&mut client, "chatgpt", "Plus", "only").await?;

    let first = lease(&mut client, "chatgpt", "Plus").await?;
    let cooling = give_back(&mut client, &first.lease_id, LeaseOutcome::RateLimited, 2).await?;
    assert_eq!(cooling.status, AccountStatus::Cooling as i32);
    let cooldown_until = to_chrono(cooling.cooldown_until).context("cooling without cooldown_until")?;
    assert!(!cooling.leased);

    let refused = lease(&mut client, "chatgpt", "Plus").await;
    // Only a refusal seen wholly inside the cool-down proves anything; this machine's clock is
    // the database's.
    if chrono::Utc::now() < cooldown_until {
        let status = refused.err().context("leased while cooling")?;
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(status.message().contains("next frees up at"), "{}", status.message());
        let retry = status.get_details_retry_info().context("no retry info")?;
        assert!(retry.retry_delay.is_some());
    }

    let again = lease_when_free(&mut client, "chatgpt", "Plus").await?;
    assert_eq!(again.account_id, only.id);
    let back = account(&mut client, &only.id).await?;
    assert_eq!(back.status, AccountStatus::Active as i32);
    assert_eq!(back.cooldown_until, None);
    assert_eq!(back.runs, 2);
    Ok(())
}

/// A return that says when the site's limit lifts cools the account until then; a time the site
/// no longer means (past, under a minute ahead) gets the platform's cool-down; one past 8 days
/// ahead, of another outcome or no time at all is refused naming the field and the lease stays held.
#[tokio::test]
async fn a_rate_limit_cools_the_account_until_the_time_the_site_named() -> anyhow::Result<()> {
    let config = SessionsConfig { rate_limit_cooldown: Duration::from_secs(30 * 60), ..SessionsConfig::default() };
    let mut client = spawn_app(config).await?;
    let alice = create(&mut client, "claude", "Pro", "alice").await?;
    let stamp = |at: chrono::DateTime<chrono::Utc>| prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    };
    let limited = |lease_id: &str, at: Option<prost_types::Timestamp>, outcome: LeaseOutcome| ReturnSessionRequest {
        lease_id: lease_id.into(),
        outcome: outcome.into(),
        runs: 1,
        detail: "rate-limited: You are out of free messages until 2:10 PM".into(),
        limit_lifts_at: at,
    };

    let held = lease(&mut client, "claude", "Pro").await?;
    let now = chrono::Utc::now();
    for (at, outcome, says) in [
        (stamp(now + chrono::Duration::days(9)), LeaseOutcome::RateLimited, "9.0 days ahead"),
        (stamp(now + chrono::Duration::hours(1)), LeaseOutcome::Ok, "RATE_LIMITED return only"),
        (stamp(now + chrono::Duration::hours(1)), LeaseOutcome::Challenged, "RATE_LIMITED return only"),
        (prost_types::Timestamp { seconds: now.timestamp(), nanos: -1 }, LeaseOutcome::RateLimited, "nanos -1"),
        (prost_types::Timestamp { seconds: i64::MAX, nanos: 0 }, LeaseOutcome::RateLimited, "outside the years"),
    ] {
        let status = client.return_session(limited(&held.lease_id, Some(at), outcome)).await.expect_err("taken");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(says), "{}", status.message());
        let violation = status.get_details_bad_request().and_then(|b| b.field_violations.into_iter().next());
        assert_eq!(violation.map(|v| v.field).as_deref(), Some("limit_lifts_at"));
    }
    let still = account(&mut client, &alice.id).await?;
    assert!(still.leased, "a refused return changes nothing");
    assert_eq!((still.status, still.runs), (AccountStatus::Active as i32, 0));

    // Five hours ahead: the account rests until then, not for the platform's 30 minutes.
    let lifts_at = chrono::Utc::now() + chrono::Duration::hours(5);
    let back = client.return_session(limited(&held.lease_id, Some(stamp(lifts_at)), LeaseOutcome::RateLimited)).await?;
    let cooling = back.into_inner().account.context("no account")?;
    assert_eq!(cooling.status, AccountStatus::Cooling as i32);
    let until = to_chrono(cooling.cooldown_until).context("cooling without cooldown_until")?;
    assert!((until - lifts_at).num_seconds().abs() <= 2, "cooling until {until}, the site said {lifts_at}");
    assert_eq!(cooling.cooldown_reason, "rate-limited: You are out of free messages until 2:10 PM");
    assert_eq!(code(lease(&mut client, "claude", "Pro").await), Code::ResourceExhausted);

    // A time already past, or under a minute ahead: the platform's own cool-down.
    let bob = create(&mut client, "chatgpt", "Plus", "bob").await?;
    for stale in [chrono::Duration::minutes(-3), chrono::Duration::seconds(20)] {
        let held = lease_when_free(&mut client, "chatgpt", "Plus").await?;
        assert_eq!(held.account_id, bob.id);
        let at = stamp(chrono::Utc::now() + stale);
        let before = chrono::Utc::now();
        let back = client.return_session(limited(&held.lease_id, Some(at), LeaseOutcome::RateLimited)).await?;
        let until =
            to_chrono(back.into_inner().account.context("no account")?.cooldown_until).context("not cooling")?;
        let rest = until - before;
        assert!(
            (rest - chrono::Duration::minutes(30)).num_seconds().abs() <= 2,
            "{stale}: cooling {rest} instead of the platform's 30 minutes"
        );
        // The next round needs the account lent again: end its cool-down as an operator would.
        let update = UpdateSessionStateRequest { account_id: bob.id.clone(), storage_state_json: storage_state("bob") };
        client.update_session_state(update).await?;
    }
    Ok(())
}

/// An operator ends a cool-down (a rate limit the site named for hours, a challenge) and the
/// account is lent again at once with its counts kept; an expired or active account stays so.
#[tokio::test]
async fn an_operator_ends_a_cool_down_and_the_account_is_lent_at_once() -> anyhow::Result<()> {
    let mut client = spawn_app(SessionsConfig::default()).await?;
    let end = |account_id: &str| UpdateAccountRequest {
        account_id: account_id.into(),
        end_cooldown: true,
        ..Default::default()
    };
    for (outcome, cooling_as) in
        [(LeaseOutcome::RateLimited, AccountStatus::Cooling), (LeaseOutcome::Challenged, AccountStatus::Challenged)]
    {
        let label = format!("{outcome:?}");
        let account = create(&mut client, "claude", "Pro", &label).await?;
        let held = lease(&mut client, "claude", "Pro").await?;
        assert_eq!(held.account_id, account.id);
        let back = give_back(&mut client, &held.lease_id, outcome, 1).await?;
        assert_eq!(back.status, cooling_as as i32);
        assert_eq!(code(lease(&mut client, "claude", "Pro").await), Code::ResourceExhausted);

        let ended = client.update_account(end(&account.id)).await?.into_inner().account.context("no account")?;
        assert_eq!(ended.status, AccountStatus::Active as i32, "{label}");
        assert_eq!((ended.cooldown_until, ended.cooldown_reason.as_str()), (None, ""));
        assert_eq!(
            (ended.rate_limits, ended.challenges),
            if outcome == LeaseOutcome::RateLimited { (1, 0) } else { (0, 1) }
        );
        let again = lease(&mut client, "claude", "Pro").await?;
        assert_eq!(again.account_id, account.id, "{label}: lent again at once");
        give_back(&mut client, &again.lease_id, LeaseOutcome::Expired, 1).await?;
        // Expired: a login wall, which no cool-down's end brings back.
        let expired = client.update_account(end(&account.id)).await?.into_inner().account.context("no account")?;
        assert_eq!(expired.status, AccountStatus::Expired as i32, "{label}");
    }
    // An active account stays active; an unknown one is NOT_FOUND.
    let active = create(&mut client, "chatgpt", "Plus", "active").await?;
    let same = client.update_account(end(&active.id)).await?.into_inner().account.context("no account")?;
    assert_eq!(same.status, AccountStatus::Active as i32);
    let unknown = client.update_account(end("00000000-0000-4000-8000-000000000000")).await;
    assert_eq!(code(unknown), Code::NotFound);
    Ok(())
}

#[tokio::test]
async fn a_late_return_of_a_lapsed_lease_is_refused_and_changes_nothing_on_the_account() -> anyhow::Result<()> {
    let config = SessionsConfig { lease_ttl: Duration::from_millis(500), ..SessionsConfig::default() };
    let mut client = spawn_app(config).await?;
    let only = create(&mut client, "google-ai-overview", "Free", "only").await?;

    let lapsed = lease(&mut client, "google-ai-overview", "").await?;
    let next = lease_when_free(&mut client, "google-ai-overview", "").await?;
    assert_eq!(next.account_id, only.id);
    assert_ne!(next.lease_id, lapsed.lease_id);

    // The first bot comes back with a login wall, then with an ok: neither may touch the account
    // another bot holds now.
    for outcome in [LeaseOutcome::Expired, LeaseOutcome::Ok, LeaseOutcome::Challenged] {
        let refused = give_back(&mut client, &lapsed.lease_id, outcome, 4).await.expect_err("a lapsed lease returned");
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains("lapsed at"), "{}", refused.message());
        assert!(refused.message().contains("may be lent to another bot"), "{}", refused.message());
    }
    let after = account(&mut client, &only.id).await?;
    assert_eq!(after.status, AccountStatus::Active as i32);
    assert_eq!((after.runs, after.challenges, after.cooldown_reason.as_str()), (0, 0, ""));
    assert_eq!(after.last_lease.as_ref().map(|lease| lease.id.as_str()), Some(next.lease_id.as_str()));

    let request = ListLeasesRequest { account_id: only.id.clone(), limit: 0 };
    let leases = client.list_leases(request).await?.into_inner().leases;
    let first = leases.iter().find(|lease| lease.id == lapsed.lease_id).context("the lapsed lease is listed")?;
    assert_eq!((first.outcome.as_str(), first.runs, first.returned_at), ("lapsed", 0, None));
    Ok(())
}

#[tokio::test]
async fn a_lapsed_lease_whose_account_nobody_took_is_refused_too_and_the_account_lent_again() -> anyhow::Result<()> {
    let config = SessionsConfig { lease_ttl: Duration::from_millis(300), ..SessionsConfig::default() };
    let mut client = spawn_app(config).await?;
    let only = create(&mut client, "chatgpt", "Plus", "only").await?;
    let lapsed = lease(&mut client, "chatgpt", "Plus").await?;
    // Waits on the platform's own word that the lease lapsed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while account(&mut client, &only.id).await?.leased {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the lease never lapsed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let refused = give_back(&mut client, &lapsed.lease_id, LeaseOutcome::RateLimited, 1).await;
    assert_eq!(code(refused), Code::FailedPrecondition);
    let after = account(&mut client, &only.id).await?;
    assert_eq!((after.status, after.rate_limits, after.runs), (AccountStatus::Active as i32, 0, 0));
    assert_eq!(lease(&mut client, "chatgpt", "Plus").await?.account_id, only.id);
    Ok(())
}

#[tokio::test]
async fn concurrent_leases_never_hand_out_one_account_twice() -> anyhow::Result<()> {
    let mut client = spawn_app(SessionsConfig::default()).await?;
    for label in ["a", "b", "c"] {
        create(&mut client, "chatgpt", "Plus", label).await?;
    }

    let attempts: Vec<_> = (0..10)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { lease(&mut client, "chatgpt", "Plus").await })
        })
        .collect();
    let mut granted = Vec::new();
    for attempt in futures::future::join_all(attempts).await {
        match attempt? {
            Ok(lease) => granted.push(lease.account_id),
            Err(status) => assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}"),
        }
    }
    assert_eq!(granted.len(), 3, "granted {granted:?}");
    assert_eq!(granted.iter().collect::<HashSet<_>>().len(), 3, "one account lent twice: {granted:?}");
    Ok(())
}

#[tokio::test]
async fn churning_bots_never_hold_one_account_at_once() -> anyhow::Result<()> {
    let mut client = spawn_app(SessionsConfig::default()).await?;
    for label in ["a", "b", "c"] {
        create(&mut client, "chatgpt", "Plus", label).await?;
    }
    let held = std::sync::Arc::new(std::sync::Mutex::new(HashSet::new()));
    let bots: Vec<_> = (0..6)
        .map(|_| {
            let (mut client, held) = (client.clone(), held.clone());
            tokio::spawn(async move {
                let mut leases = 0;
                while leases < 10 {
                    let lease = match lease(&mut client, "chatgpt", "Plus").await {
                        Ok(lease) => lease,
                        Err(status) if status.code() == Code::ResourceExhausted => continue,
                        Err(status) => anyhow::bail!("lease refused with {status:?}"),
                    };
                    let fresh = held.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(lease.account_id.clone());
                    anyhow::ensure!(fresh, "account {} lent while held", lease.account_id);
                    tokio::task::yield_now().await;
                    held.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.remove(&lease.account_id);
                    give_back(&mut client, &lease.lease_id, LeaseOutcome::Ok, 1).await?;
                    leases += 1;
                }
                Ok(())
            })
        })
        .collect();
    for bot in futures::future::join_all(bots).await {
        bot??;
    }
    let accounts = client.list_accounts(ListAccountsRequest::default()).await?.into_inner().accounts;
    assert_eq!(accounts.iter().map(|account| account.runs).sum::<u64>(), 60);
    Ok(())
}

#[tokio::test]
async fn leases_match_plans_ignoring_case_and_tell_missing_from_busy() -> anyhow::Result<()> {
    let mut client = spawn_app(SessionsConfig::default()).await?;
    let plus = create(&mut client, "chatgpt", "Plus", "plus").await?;
    let free = create(&mut client, "chatgpt", "Free", "free").await?;
    create(&mut client, "claude", "Pro", "claude").await?;

    assert_eq!(lease(&mut client, "chatgpt", "pLUS").await?.account_id, plus.id);
    let busy = lease(&mut client, "chatgpt", "Plus").await.err().context("leased twice")?;
    assert_eq!(busy.code(), Code::ResourceExhausted);
    assert_eq!(lease(&mut client, "chatgpt", "any").await?.account_id, free.id);
    assert_eq!(code(lease(&mut client, "chatgpt", "Team").await), Code::FailedPrecondition);
    assert_eq!(code(lease(&mut client, "perplexity", "").await), Code::FailedPrecondition);

    let chatgpt = client
        .list_accounts(ListAccountsRequest { assistant: "chatgpt".into(), ..Default::default() })
        .await?
        .into_inner();
    let labels: HashSet<String> = chatgpt.accounts.into_iter().map(|account| account.label).collect();
    assert_eq!(labels, HashSet::from(["plus".to_owned(), "free".to_owned()]));
    let all = client.list_accounts(ListAccountsRequest::default()).await?.into_inner();
    assert_eq!(all.accounts.len(), 3);
    Ok(())
}

#[tokio::test]
async fn a_storage_state_a_bot_could_not_load_is_refused_on_upload_naming_what_is_wrong() -> anyhow::Result<()> {
    let mut client = spawn_app(SessionsConfig::default()).await?;
    let unloadable = [
        (r#"{"cookies":[1,"two",{"name":"x"}],"origins":"notalist"}"#, "cookies[0] is not an object"),
        (r#"{"cookies":[{"name":"s","value":"v"},{"name":"x"}]}"#, "cookies[1] is not an object"),
        (r#"{"cookies":[{"name":"s","value":"v","expires":"tomorrow"}]}"#, "cookies[0] is not an object"),
        (r#"{"cookies":[],"origins":"notalist"}"#, "\"origins\" must be an array"),
        (r#"{"cookies":[],"origins":[{"origin":"o","localStorage":[{"name":"k"}]}]}"#, "origins[0].localStorage[0]"),
    ];
    for (json, what) in unloadable {
        assert!(aap_proto::storage_state::StorageState::parse(json).is_err(), "a bot reads {json}");
        let request = CreateAccountRequest {
            assistant: "chatgpt".into(),
            plan: "Plus".into(),
            label: "x".into(),
            storage_state_json: json.into(),
            ..CreateAccountRequest::default()
        };
        let status = client.create_account(request).await.err().context("an unloadable state was taken")?;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(what), "{json}: {}", status.message());
        let bad_request = status.get_details_bad_request().context("no bad request details")?;
        assert_eq!(bad_request.field_violations[0].field, "storage_state_json");
    }
    assert!(client.list_accounts(ListAccountsRequest::default()).await?.into_inner().accounts.is_empty());

    let created = create(&mut client, "chatgpt", "Plus", "x").await?;
    for (json, what) in unloadable {
        let update = UpdateSessionStateRequest { account_id: created.id.clone(), storage_state_json: json.into() };
        let status = client.update_session_state(update).await.err().context("an unloadable state was taken")?;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(what), "{json}: {}", status.message());
    }
    // What is taken, a bot loads.
    let leased = lease(&mut client, "chatgpt", "Plus").await?;
    assert!(aap_proto::storage_state::StorageState::parse(&leased.storage_state_json).is_ok());
    Ok(())
}

#[tokio::test]
async fn invalid_input_is_refused_with_the_field_named() -> anyhow::Result<()> {
    let mut client = spawn_app(SessionsConfig::default()).await?;
    let valid = CreateAccountRequest {
        assistant: "chatgpt".into(),
        plan: "Plus".into(),
        label: "x".into(),
        storage_state_json: storage_state("x"),
        ..CreateAccountRequest::default()
    };
    let cases = [
        ("assistant", CreateAccountRequest { assistant: "ChatGPT".into(), ..valid.clone() }),
        ("assistant", CreateAccountRequest { assistant: "bard".into(), ..valid.clone() }),
        ("plan", CreateAccountRequest { plan: " ".into(), ..valid.clone() }),
        ("plan", CreateAccountRequest { plan: "any".into(), ..valid.clone() }),
        ("storage_state_json", CreateAccountRequest { storage_state_json: "{nope".into(), ..valid.clone() }),
        ("storage_state_json", CreateAccountRequest { storage_state_json: "[]".into(), ..valid.clone() }),
        (
            "storage_state_json",
            CreateAccountRequest { storage_state_json: r#"{"origins": []}"#.into(), ..valid.clone() },
        ),
        ("proxy", CreateAccountRequest { proxy: "ftp://proxy.example:21".into(), ..valid.clone() }),
        ("proxy", CreateAccountRequest { proxy: "socks5://proxy.example".into(), ..valid.clone() }),
        ("proxy", CreateAccountRequest { proxy: "http://u:pw@proxy.example:3128".into(), ..valid.clone() }),
        ("proxy", CreateAccountRequest { proxy: "http://h".into(), ..valid.clone() }),
        ("proxy", CreateAccountRequest { proxy: "http://proxy.example:0".into(), ..valid.clone() }),
        ("label", CreateAccountRequest { label: "a\nb".into(), ..valid.clone() }),
        ("label", CreateAccountRequest { label: String::new(), ..valid.clone() }),
        ("label", CreateAccountRequest { label: " \u{200B}\u{200B}\u{FEFF} ".into(), ..valid.clone() }),
        ("user_agent", CreateAccountRequest { user_agent: "HeadlessChrome/156".into(), ..valid.clone() }),
    ];
    for (field, request) in cases {
        let status = client.create_account(request.clone()).await.err().context("accepted")?;
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        let bad_request = status.get_details_bad_request().context("no bad request details")?;
        assert_eq!(bad_request.field_violations[0].field, field, "{request:?}");
    }
    assert!(client.list_accounts(ListAccountsRequest::default()).await?.into_inner().accounts.is_empty());

    let created = create(&mut client, "chatgpt", "Plus", "x").await?;
    assert_eq!(code(lease(&mut client, "bard", "").await), Code::InvalidArgument);
    assert_eq!(
        code(client.list_accounts(ListAccountsRequest { assistant: "bard".into(), ..Default::default() }).await),
        Code::InvalidArgument
    );
    let update = UpdateSessionStateRequest { account_id: created.id.clone(), storage_state_json: "{}".into() };
    assert_eq!(code(client.update_session_state(update).await), Code::InvalidArgument);
    let update = UpdateSessionStateRequest { account_id: "not-a-uuid".into(), storage_state_json: storage_state("y") };
    assert_eq!(code(client.update_session_state(update).await), Code::InvalidArgument);
    let update = UpdateSessionStateRequest {
        account_id: uuid::Uuid::new_v4().to_string(),
        storage_state_json: storage_state("y"),
    };
    assert_eq!(code(client.update_session_state(update).await), Code::NotFound);

    let held = lease(&mut client, "chatgpt", "").await?;
    let bad_outcome = ReturnSessionRequest {
        lease_id: held.lease_id.clone(),
        outcome: 42,
        runs: 1,
        detail: String::new(),
        ..Default::default()
    };
    assert_eq!(code(client.return_session(bad_outcome).await), Code::InvalidArgument);
    assert_eq!(code(give_back(&mut client, "not-a-uuid", LeaseOutcome::Ok, 1).await), Code::InvalidArgument);
    let still = account(&mut client, &created.id).await?;
    assert!(still.leased, "a refused return changes nothing");
    assert_eq!(still.runs, 0);
    Ok(())
}

#[tokio::test]
async fn an_update_with_a_label_of_two_lines_or_a_proxy_without_port_changes_nothing() -> anyhow::Result<()> {
    let mut client = spawn_app(SessionsConfig::default()).await?;
    let created = create(&mut client, "chatgpt", "Plus", "one").await?;
    let cases = [
        ("label", UpdateAccountRequest { label: Some("a\nb".into()), ..UpdateAccountRequest::default() }),
        ("proxy", UpdateAccountRequest { proxy: Some("http://h".into()), ..UpdateAccountRequest::default() }),
        ("label", UpdateAccountRequest { label: Some("\u{200B}\u{2060}".into()), ..UpdateAccountRequest::default() }),
        ("proxy", UpdateAccountRequest { proxy: Some("http://h:0".into()), ..UpdateAccountRequest::default() }),
    ];
    for (field, request) in cases {
        let request = UpdateAccountRequest { account_id: created.id.clone(), ..request };
        let status = client.update_account(request.clone()).await.err().context("accepted")?;
        assert_eq!(status.code(), Code::InvalidArgument, "{request:?}");
        let bad_request = status.get_details_bad_request().context("no bad request details")?;
        assert_eq!(bad_request.field_violations[0].field, field, "{request:?}");
    }
    let after = account(&mut client, &created.id).await?;
    assert_eq!((after.label.as_str(), after.proxy.as_str()), ("one", ""));
    Ok(())
}

#[tokio::test]
async fn a_return_of_more_runs_than_the_lease_allowed_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    let config = SessionsConfig { per_session_runs: 3, ..SessionsConfig::default() };
    let mut client = spawn_app(config).await?;
    let created = create(&mut client, "chatgpt", "Plus", "one").await?;
    let held = lease(&mut client, "chatgpt", "Plus").await?;
    assert_eq!(held.max_runs, 3);
    for runs in [4, u32::MAX] {
        let status = give_back(&mut client, &held.lease_id, LeaseOutcome::Ok, runs).await.err().context("accepted")?;
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        let bad_request = status.get_details_bad_request().context("no bad request details")?;
        assert_eq!(bad_request.field_violations[0].field, "runs");
    }
    let still = account(&mut client, &created.id).await?;
    assert!(still.leased, "a refused return changes nothing");
    assert_eq!((still.runs, still.rotation_runs), (0, 0));
    let returned = give_back(&mut client, &held.lease_id, LeaseOutcome::Ok, 3).await?;
    assert_eq!((returned.runs, returned.rotation_runs), (3, 3));
    Ok(())
}

#[tokio::test]
async fn a_return_detail_with_a_terminal_escape_is_refused_and_the_lease_still_held() -> anyhow::Result<()> {
    let mut client = spawn_app(SessionsConfig::default()).await?;
    let only = create(&mut client, "chatgpt", "Plus", "only").await?;
    let held = lease(&mut client, "chatgpt", "Plus").await?;
    for detail in ["\u{1b}[2Jrate limited", "\u{1b}]0;pwned\u{7}", "a\u{9b}b", "nul\0"] {
        let request = ReturnSessionRequest {
            lease_id: held.lease_id.clone(),
            outcome: LeaseOutcome::RateLimited.into(),
            runs: 1,
            detail: detail.into(),
            ..Default::default()
        };
        let status = client.return_session(request).await.err().context("a control character was taken")?;
        assert_eq!(status.code(), Code::InvalidArgument, "{detail:?}: {status:?}");
        let bad_request = status.get_details_bad_request().context("no bad request details")?;
        assert_eq!(bad_request.field_violations[0].field, "detail");
    }
    let unchanged = account(&mut client, &only.id).await?;
    assert_eq!((unchanged.status, unchanged.leased, unchanged.rate_limits), (AccountStatus::Active as i32, true, 0));

    // Tab and line breaks are text.
    let request = ReturnSessionRequest {
        lease_id: held.lease_id.clone(),
        outcome: LeaseOutcome::RateLimited.into(),
        runs: 1,
        detail: "429:\ttoo many requests\r\ntry later".into(),
        ..Default::default()
    };
    let cooling = client.return_session(request).await?.into_inner().account.context("no account")?;
    assert_eq!(cooling.cooldown_reason, "429:\ttoo many requests\r\ntry later");
    Ok(())
}

#[tokio::test]
async fn returning_an_unknown_lease_is_not_found() -> anyhow::Result<()> {
    let mut client = spawn_app(SessionsConfig::default()).await?;
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_eq!(code(give_back(&mut client, &unknown, LeaseOutcome::Ok, 1).await), Code::NotFound);
    Ok(())
}

#[tokio::test]
async fn a_lease_is_returned_once_and_a_second_return_changes_nothing() -> anyhow::Result<()> {
    let mut client = spawn_app(SessionsConfig::default()).await?;
    let only = create(&mut client, "chatgpt", "Plus", "only").await?;
    let held = lease(&mut client, "chatgpt", "Plus").await?;
    let unspecified = LeaseOutcome::Unspecified;
    let returned = give_back(&mut client, &held.lease_id, unspecified, 5).await?;
    assert_eq!(returned.runs, 5);
    assert_eq!(returned.status, AccountStatus::Active as i32, "unspecified means ok");

    let again = give_back(&mut client, &held.lease_id, LeaseOutcome::Expired, 5).await;
    assert_eq!(code(again), Code::FailedPrecondition);
    let after = account(&mut client, &only.id).await?;
    assert_eq!(after.runs, 5);
    assert_eq!(after.status, AccountStatus::Active as i32);
    Ok(())
}
