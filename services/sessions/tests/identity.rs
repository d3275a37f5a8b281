//! What an account carries besides its login: a proxy and a user agent that stay with it, the
//! marks of bot challenges, and session state encrypted at rest. A real gRPC server in-process
//! on 127.0.0.1:0 over a fresh PostgreSQL database per test.

use std::time::Duration;

use aap_proto::v1::session_service_client::SessionServiceClient;
use aap_proto::v1::session_service_server::SessionServiceServer;
use aap_proto::v1::{
    Account, AccountStatus, CreateAccountRequest, LeaseOutcome, LeaseSessionRequest, LeaseSessionResponse,
    ListAccountsRequest, ReturnSessionRequest, UpdateAccountRequest, UpdateSessionStateRequest,
};
use aap_sessions::grpc::SessionGrpc;
use aap_sessions::{SessionDirectory, SessionKey, SessionsConfig};
use anyhow::Context as _;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::Code;
use tonic::transport::Channel;
use tonic_types::StatusExt as _;

type Client = SessionServiceClient<Channel>;

const COOKIE: &str = "cookie-value-7f3a9c";
const UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

/// Serves SessionService over `pool` with `config`; the server lives as long as the runtime.
async fn serve(pool: PgPool, config: SessionsConfig) -> anyhow::Result<Client> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tonic::transport::Server::builder()
        .layer(aap_testkit::as_caller(aap_testkit::bot("bot-fleet")))
        .add_service(SessionServiceServer::new(SessionGrpc::new(pool, config)))
        .serve_with_incoming(TcpListenerStream::new(listener));
    tokio::spawn(server);
    let channel = Channel::from_shared(format!("http://{addr}"))?.connect().await?;
    Ok(SessionServiceClient::new(channel))
}

async fn fresh_pool() -> anyhow::Result<PgPool> {
    aap_testkit::init_tracing();
    let database_url = aap_testkit::fresh_database().await;
    aap_platform::db::connect_and_migrate(&database_url, 10).await.context("database")
}

fn storage_state() -> String {
    format!(r#"{{"cookies": [{{"name": "session", "value": "{COOKIE}", "domain": ".chatgpt.com", "path": "/"}}]}}"#)
}

async fn create(client: &mut Client, label: &str, proxy: &str, user_agent: &str) -> anyhow::Result<Account> {
    let request = CreateAccountRequest {
        assistant: "chatgpt".into(),
        plan: "Plus".into(),
        label: label.into(),
        storage_state_json: storage_state(),
        proxy: proxy.into(),
        user_agent: user_agent.into(),
    };
    client.create_account(request).await?.into_inner().account.context("no account in the reply")
}

async fn lease(client: &mut Client) -> Result<LeaseSessionResponse, tonic::Status> {
    let request = LeaseSessionRequest { assistant: "chatgpt".into(), plan: "Plus".into(), bot_id: "bot-1".into() };
    Ok(client.lease_session(request).await?.into_inner())
}

async fn give_back(client: &mut Client, lease_id: &str, outcome: LeaseOutcome) -> anyhow::Result<Account> {
    let request = ReturnSessionRequest {
        lease_id: lease_id.into(),
        outcome: outcome.into(),
        runs: 1,
        detail: "t".into(),
        ..Default::default()
    };
    client.return_session(request).await?.into_inner().account.context("no account in the reply")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

#[tokio::test]
async fn a_proxy_and_user_agent_stay_with_the_account_and_the_proxy_is_never_echoed_with_secrets() -> anyhow::Result<()>
{
    let pool = fresh_pool().await?;
    let mut client = serve(pool, SessionsConfig::default()).await?;
    let created = create(&mut client, "a", "socks5://10.9.8.7:1080", UA).await?;
    assert_eq!(created.proxy, "socks5://10.9.8.7:1080");
    assert_eq!(created.user_agent, UA);

    let held = lease(&mut client).await?;
    assert_eq!(held.proxy, "socks5://10.9.8.7:1080");
    assert_eq!(held.user_agent, UA);
    assert_eq!(held.storage_state_json, storage_state());
    give_back(&mut client, &held.lease_id, LeaseOutcome::Ok).await?;

    // Changing the proxy leaves the user agent; an empty proxy removes it.
    let update = UpdateAccountRequest {
        account_id: created.id.clone(),
        proxy: Some("http://proxy.example:3128".into()),
        ..UpdateAccountRequest::default()
    };
    let updated = client.update_account(update).await?.into_inner().account.context("no account")?;
    assert_eq!((updated.proxy.as_str(), updated.user_agent.as_str()), ("http://proxy.example:3128", UA));
    assert_eq!(lease(&mut client).await.map(|l| (l.proxy, l.lease_id))?.0, "http://proxy.example:3128");

    let update = UpdateAccountRequest {
        account_id: created.id.clone(),
        proxy: Some(String::new()),
        user_agent: Some(String::new()),
        label: Some(" renamed ".into()),
        ..Default::default()
    };
    let cleared = client.update_account(update).await?.into_inner().account.context("no account")?;
    assert_eq!((cleared.proxy.as_str(), cleared.user_agent.as_str(), cleared.label.as_str()), ("", "", "renamed"));
    assert!(cleared.leased, "settings change nothing about the lease");

    // A bad proxy is refused with the field named, and the password never comes back.
    let bad = UpdateAccountRequest {
        account_id: created.id.clone(),
        proxy: Some("http://alice:s3cret@proxy.example:3128".into()),
        ..UpdateAccountRequest::default()
    };
    let status = client.update_account(bad).await.err().context("credentials accepted")?;
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.get_details_bad_request().context("no details")?.field_violations[0].field, "proxy");
    assert!(!format!("{status:?}").contains("s3cret"), "{status:?}");
    assert!(status.message().contains("alice:***@proxy.example:3128"), "{}", status.message());

    let unknown = UpdateAccountRequest { account_id: uuid::Uuid::new_v4().to_string(), ..Default::default() };
    assert_eq!(client.update_account(unknown).await.err().map(|s| s.code()), Some(Code::NotFound));
    Ok(())
}

#[tokio::test]
async fn a_challenge_marks_the_account_and_its_proxy_and_cools_it_down_longer_than_a_rate_limit() -> anyhow::Result<()>
{
    let config = SessionsConfig {
        rate_limit_cooldown: Duration::from_secs(60),
        challenge_cooldown: Duration::from_secs(3600),
        ..SessionsConfig::default()
    };
    let pool = fresh_pool().await?;
    let mut client = serve(pool, config).await?;
    let proxied = create(&mut client, "proxied", "http://proxy.example:3128", "").await?;

    let held = lease(&mut client).await?;
    let challenged = give_back(&mut client, &held.lease_id, LeaseOutcome::Challenged).await?;
    assert_eq!(challenged.status, AccountStatus::Challenged as i32);
    assert_eq!((challenged.challenges, challenged.proxy_challenges), (1, 1));
    let marked_at = challenged.last_challenged_at.context("no last_challenged_at")?;
    let until = challenged.cooldown_until.context("no cooldown_until")?;
    // Measured on the database's clock against the mark it set in the same statement.
    assert!(until.seconds - marked_at.seconds >= 3599, "cool-down of {}s", until.seconds - marked_at.seconds);
    assert_eq!(lease(&mut client).await.err().map(|s| s.code()), Some(Code::ResourceExhausted));

    // A rate limit on another account cools it for the shorter period, with no challenge mark.
    let plain = create(&mut client, "plain", "", "").await?;
    let held = lease(&mut client).await?;
    assert_eq!(held.account_id, plain.id);
    let limited = give_back(&mut client, &held.lease_id, LeaseOutcome::RateLimited).await?;
    let until = limited.cooldown_until.context("no cooldown_until")?.seconds;
    assert!(until - marked_at.seconds < 3000, "rate limit cools for {}s", until - marked_at.seconds);
    assert_eq!((limited.challenges, limited.last_challenged_at), (0, None));

    // The same proxy set again (as an edit form or `aap session import --replace` sends it)
    // keeps its count: the challenges were met through it.
    for same in ["http://proxy.example:3128", " http://PROXY.example:3128/ "] {
        let update = UpdateAccountRequest {
            account_id: proxied.id.clone(),
            proxy: Some(same.into()),
            ..UpdateAccountRequest::default()
        };
        let kept = client.update_account(update).await?.into_inner().account.context("no account")?;
        assert_eq!((kept.challenges, kept.proxy_challenges), (1, 1), "{same:?}");
    }

    // A new proxy starts clean; the account keeps its history.
    let update = UpdateAccountRequest {
        account_id: proxied.id.clone(),
        proxy: Some("socks5://10.0.0.2:1080".into()),
        ..UpdateAccountRequest::default()
    };
    let moved = client.update_account(update).await?.into_inner().account.context("no account")?;
    assert_eq!((moved.challenges, moved.proxy_challenges), (1, 0));
    assert_eq!(moved.status, AccountStatus::Challenged as i32, "a new proxy does not end the cool-down");
    Ok(())
}

#[tokio::test]
async fn session_state_and_proxy_are_stored_encrypted_and_a_wrong_key_is_refused_clearly() -> anyhow::Result<()> {
    let pool = fresh_pool().await?;
    let key = SessionKey::generate();
    let config = SessionsConfig { key: Some(key.clone()), ..SessionsConfig::default() };
    let mut client = serve(pool.clone(), config).await?;
    let created = create(&mut client, "a", "http://10.1.1.1:8080", "").await?;

    let (plain, state, proxy, display): (Option<String>, Vec<u8>, Vec<u8>, String) =
        sqlx::query_as("SELECT storage_state, storage_state_sealed, proxy_sealed, proxy_display FROM session_accounts")
            .fetch_one(&pool)
            .await?;
    assert_eq!(plain, None);
    assert!(!contains(&state, COOKIE), "the cookie is stored in clear");
    assert!(!contains(&state, "cookies"), "the document is stored in clear");
    assert!(!contains(&proxy, "10.1.1.1"), "the proxy is stored in clear");
    assert_eq!(display, "http://10.1.1.1:8080");
    let lent = lease(&mut client).await?;
    assert_eq!(lent.storage_state_json, storage_state());
    give_back(&mut client, &lent.lease_id, LeaseOutcome::Ok).await?;

    // Another key over the same database: listing works, lending fails clearly, never panics.
    let other = SessionKey::generate();
    let mut wrong =
        serve(pool.clone(), SessionsConfig { key: Some(other.clone()), ..SessionsConfig::default() }).await?;
    let listed = wrong.list_accounts(ListAccountsRequest::default()).await?.into_inner().accounts;
    assert_eq!(listed.len(), 1);
    let status = lease(&mut wrong).await.err().context("lent with the wrong key")?;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("cannot be decrypted"), "{}", status.message());
    assert!(status.message().contains(&key.id()) && status.message().contains(&other.id()), "{}", status.message());
    assert!(!status.message().contains(COOKIE));
    // The refused lease left the account free for a server with the right key.
    let after = wrong.list_accounts(ListAccountsRequest::default()).await?.into_inner().accounts;
    assert!(!after[0].leased);
    assert_eq!(lease(&mut client).await?.account_id, created.id);

    // Without any key nothing is stored or lent, and the operator is told what to set.
    let mut keyless = serve(pool, SessionsConfig { key: None, ..SessionsConfig::default() }).await?;
    let status = keyless
        .create_account(CreateAccountRequest {
            assistant: "chatgpt".into(),
            plan: "Plus".into(),
            label: "keyless".into(),
            storage_state_json: storage_state(),
            ..CreateAccountRequest::default()
        })
        .await
        .err()
        .context("stored without a key")?;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(status.message().contains("AAP_SESSION_KEY"), "{}", status.message());
    Ok(())
}

#[tokio::test]
async fn plain_text_rows_from_before_encryption_are_sealed_on_start_and_still_lent() -> anyhow::Result<()> {
    aap_testkit::init_tracing();
    let database_url = aap_testkit::fresh_database().await;
    // The schema as it was before 0004, with an account stored in plain text.
    let old = PgPool::connect(&database_url).await?;
    aap_platform::db::MIGRATOR.run_to(3, &old).await?;
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO session_accounts (id, assistant, plan, plan_key, label, storage_state) \
         VALUES ($1, 'chatgpt', 'Plus', 'plus', 'legacy', $2)",
    )
    .bind(id)
    .bind(storage_state())
    .execute(&old)
    .await?;
    old.close().await;

    let pool = aap_platform::db::connect_and_migrate(&database_url, 10).await?;
    let config = SessionsConfig { key: Some(SessionKey::generate()), ..SessionsConfig::default() };
    let directory = SessionDirectory::new(pool.clone(), config.clone());
    assert_eq!(directory.seal_plaintext_rows().await?, 1);
    assert_eq!(directory.seal_plaintext_rows().await?, 0, "sealing twice changes nothing");

    let (plain, sealed): (Option<String>, Vec<u8>) =
        sqlx::query_as("SELECT storage_state, storage_state_sealed FROM session_accounts WHERE id = $1")
            .bind(id)
            .fetch_one(&pool)
            .await?;
    assert_eq!(plain, None);
    assert!(!contains(&sealed, COOKIE));

    let mut client = serve(pool, config).await?;
    let lent = lease(&mut client).await?;
    assert_eq!((lent.account_id, lent.storage_state_json), (id.to_string(), storage_state()));

    // A fresh login replaces the state sealed as well.
    let update = UpdateSessionStateRequest { account_id: id.to_string(), storage_state_json: storage_state() };
    client.update_session_state(update).await?;
    Ok(())
}
