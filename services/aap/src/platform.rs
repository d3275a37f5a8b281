//! Wires the platform's services into one process: gRPC (answers, sessions, evaluations, admin,
//! health, reflection) behind the auth layer, the seed's HTTP API, the scheduler with its
//! reaper, the ingest and the console; all of them (`aap serve`, `aap dev`, the end-to-end
//! tests) or any subset (`aap serve --services ...`, see [`crate::services`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aap_answers::grpc::AnswersGrpc;
use aap_answers::{Answers, AnswersConfig};
use aap_evaluations::gateway::{Gateway, GatewayConfig};
use aap_evaluations::grpc::EvaluationGrpc;
use aap_evaluations::queue::Queue;
use aap_platform::admin::AdminGrpc;
use aap_platform::auth::{AuthLayer, Networks};
use aap_platform::nats::{NatsAccess, Topology};
use aap_platform::principals::{ConfiguredToken, Principals};
use aap_platform::server::limits;
use aap_proto::v1::admin_service_server::AdminServiceServer;
use aap_proto::v1::answers_service_server::AnswersServiceServer;
use aap_proto::v1::evaluation_service_server::EvaluationServiceServer;
use aap_proto::v1::session_service_server::SessionServiceServer;
use aap_sessions::SessionsConfig;
use aap_tls::ServerTls;
use anyhow::Context as _;
use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::server::TcpIncoming;

use crate::services::{Service, Services};

/// Longest the seed's HTTP API waits for a request to be complete (a submission's body is at
/// most 2 MB): a body that stops coming is answered 408. The console sets none, its gRPC-web
/// streams stay open.
pub const SEED_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Everything the platform needs to run.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// PostgreSQL URL; `sslmode=verify-full&sslrootcert=<ca.pem>` for TLS.
    pub database_url: String,
    pub nats_url: String,
    /// TLS and credentials of the NATS connection beyond what its URL says.
    pub nats_access: NatsAccess,
    /// TLS of the gRPC server and the seed's HTTP API; plain text when `None`.
    pub tls: Option<ServerTls>,
    /// Prefix of every stream and subject ("aap").
    pub nats_prefix: String,
    /// Tokens from the configuration, recorded (hashed) at start next to those made at run time.
    pub tokens: Vec<ConfiguredToken>,
    /// Networks whose bots may use the seed's HTTP API without a token (default: none).
    pub seed_http_networks: Networks,
    pub model_dir: PathBuf,
    pub answers: AnswersConfig,
    pub gateway: GatewayConfig,
    pub sessions: SessionsConfig,
    /// How often the scheduler and reaper run when nothing wakes them.
    pub scheduler_tick: Duration,
    /// How long an evaluation may stay queued, or submitted, before it fails with the reason.
    pub timeouts: aap_evaluations::scheduler::Timeouts,
    /// Remote logins: how many at once, the idle limit, the browser.
    pub remote_logins: crate::logins::RemoteLoginsConfig,
    /// The services this process runs (default: all).
    pub services: Services,
    /// Servers of the NATS cluster that keep each stream the platform creates (1 on one server).
    pub stream_replicas: usize,
    /// Connections to PostgreSQL the process keeps at most.
    pub database_pool_size: u32,
}

/// Where the process listens. A listener the process's services do not use is closed.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC: health, reflection and AdminService always; the gRPC services run here.
    pub grpc: TcpListener,
    /// The seed's HTTP polling API (with the evaluations service).
    pub http: Option<TcpListener>,
    /// The operators' web console (with the console service).
    pub console: Option<TcpListener>,
}

/// A running platform; dropping it does not stop it, [`Platform::shutdown`] does.
pub struct Platform {
    pub grpc_addr: SocketAddr,
    /// Where the seed's HTTP API listens, when this process runs the evaluations service.
    pub http_addr: Option<SocketAddr>,
    /// Where the operators' web console listens, when it was given a listener.
    pub console_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
    /// Read by a scrape of [`Platform::serve_metrics`], when this process runs the scheduler.
    shared_gauges: Option<Arc<crate::metrics::SharedGauges>>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone: stop as well.
    let _ = rx.wait_for(|stop| *stop).await;
}

impl Platform {
    /// Connects to PostgreSQL and NATS, migrates, and serves gRPC on `grpc` and the seed's
    /// HTTP API on `http`. Health reports SERVING once both are reachable.
    pub async fn start(config: PlatformConfig, grpc: TcpListener, http: TcpListener) -> anyhow::Result<Platform> {
        Platform::serve(config, Listeners { grpc, http: Some(http), console: None }).await
    }

    /// As [`Platform::start`], and serves the operators' web console (and its gRPC-web) on
    /// `console` when given.
    pub async fn start_with_console(
        config: PlatformConfig,
        grpc: TcpListener,
        http: TcpListener,
        console: Option<TcpListener>,
    ) -> anyhow::Result<Platform> {
        Platform::serve(config, Listeners { grpc, http: Some(http), console }).await
    }

    /// Runs the services of `config.services` on `listeners`: connects to PostgreSQL (and NATS
    /// when a service needs it), migrates, and serves. Health reports each service SERVING
    /// while what it needs is reachable.
    pub async fn serve(config: PlatformConfig, listeners: Listeners) -> anyhow::Result<Platform> {
        let services = config.services.clone();
        let runs = |service| services.runs(service);
        let needs_key = runs(Service::Sessions) || runs(Service::Console);
        match &config.sessions.key {
            Some(key) => tracing::info!(key_id = key.id(), "session states encrypted at rest"),
            None if needs_key => anyhow::bail!(
                "no session key: set AAP_SESSION_KEY (64 hex digits or base64 of 32 bytes, e.g. `openssl rand -hex 32`) \
                 or AAP_SESSION_KEY_FILE"
            ),
            None => {}
        }
        // Read before anything connects: a bad certificate or key stops the start at once.
        let tls = config.tls.as_ref().map(ServerTls::load).transpose().context("server tls")?;
        let Listeners { grpc, http, console } = listeners;
        let http = http.filter(|_| runs(Service::Evaluations));
        let console = console.filter(|_| runs(Service::Console));
        let grpc_addr = grpc.local_addr()?;
        let http_addr = http.as_ref().map(TcpListener::local_addr).transpose()?;
        // The similarity search's breadth (pgvector's default is 40), on every connection.
        let settings = [("hnsw.ef_search", config.answers.ef_search.to_string())];
        let pool =
            aap_platform::db::connect_and_migrate_with(&config.database_url, config.database_pool_size, &settings)
                .await?;
        let nats = match services.uses_nats() {
            true => {
                let client = aap_platform::nats::connect(&config.nats_url, "aap-platform", &config.nats_access).await?;
                let topology = Topology::new(config.nats_prefix.clone());
                // A cluster that has just started may still be electing its stream leaders: its
                // JetStream requests time out for a while. Try for up to 60 s before giving up.
                let mut tries = 0;
                let queue = loop {
                    match Queue::new(client.clone(), topology.clone(), config.stream_replicas).await {
                        Ok(queue) => break queue,
                        Err(err) if tries < 30 => {
                            tries += 1;
                            tracing::warn!(error = %err, tries, "nats streams not ready; trying again");
                            tokio::time::sleep(Duration::from_secs(2)).await;
                        }
                        Err(err) => return Err(err).context("nats streams"),
                    }
                };
                Some((client, Arc::new(queue)))
            }
            false => None,
        };
        let queue = || nats.as_ref().map(|(_, queue)| queue.clone()).context("nats is connected for this service");
        let principals = Principals::load(pool.clone(), &config.tokens).await.context("token table")?;

        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        let (health, health_service) = tonic_health::server::health_reporter();
        // NOT_SERVING (tonic-health starts "" as SERVING) until the first check of what each
        // service needs; a probe never sees a process ready before it is.
        let not_serving = tonic_health::ServingStatus::NotServing;
        health.set_service_status("", not_serving).await;
        health.set_service_status("aap.v1.AdminService", not_serving).await;
        for name in services.iter().flat_map(Service::health_names) {
            health.set_service_status(*name, not_serving).await;
        }
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            server = server.tls_config(tls.grpc()).context("grpc tls")?;
        }
        let mut router = server
            // Outermost, so refused calls are traced too and every handler runs in the span.
            .layer(aap_platform::telemetry::GrpcTraceLayer)
            // Metrics: every call, refused ones too, by service, method and code.
            .layer(aap_platform::metrics::GrpcMetricsLayer)
            // Inside the metrics: a call past its grpc-timeout is counted, as DEADLINE_EXCEEDED.
            .layer(aap_platform::server::GrpcStatusLayer)
            .layer(AuthLayer::new(principals.clone()))
            .add_service(health_service)
            .add_service(aap_platform::server::reflection_v1()?)
            .add_service(aap_platform::server::reflection_v1alpha()?)
            .add_service(
                AdminServiceServer::new(AdminGrpc::new(principals.clone())).max_decoding_message_size(limits::ADMIN),
            );

        if runs(Service::Answers) {
            let embedder = aap_embedding::Embedder::load(&config.model_dir)
                .with_context(|| format!("embedding model in {}", config.model_dir.display()))?;
            let embedder = aap_embedding::Batcher::start(embedder, config.answers.embedding)?;
            let answers =
                Answers::start(pool.clone(), embedder, queue()?, config.answers.clone()).await.context("answers")?;
            router = router.add_service(
                AnswersServiceServer::new(AnswersGrpc::new(answers).stopping_with(stop_rx.clone()))
                    .max_decoding_message_size(limits::ANSWERS),
            );
        }
        // One remote-login manager for the gRPC service and the console's gRPC-web.
        let mut session_services = None;
        if runs(Service::Sessions) || runs(Service::Console) {
            let directory = aap_sessions::SessionDirectory::new(pool.clone(), config.sessions.clone());
            // Rows stored before encryption at rest (migration 0004) are sealed before anything is lent.
            directory.seal_plaintext_rows().await.context("encrypting plain-text session states")?;
            let evidence = aap_sessions::EvidenceLocker::new(pool.clone(), config.sessions.evidence);
            let sessions = aap_sessions::grpc::SessionGrpc::with_evidence(directory, evidence);
            let directory = aap_sessions::SessionDirectory::new(pool.clone(), config.sessions.clone());
            let remote_logins = crate::logins::RemoteLoginGrpc::server(directory, config.remote_logins.clone());
            session_services = Some((sessions, remote_logins));
        }
        if let (true, Some((sessions, remote_logins))) = (runs(Service::Sessions), &session_services) {
            router = router
                .add_service(SessionServiceServer::new(sessions.clone()).max_decoding_message_size(limits::SESSIONS))
                .add_service(remote_logins.clone());
        }
        let mut gateway = None;
        if runs(Service::Evaluations) {
            let evaluations = Gateway::new(pool.clone(), queue()?, config.gateway.clone());
            router = router.add_service(
                EvaluationServiceServer::new(EvaluationGrpc::new(evaluations.clone()).stopping_with(stop_rx.clone()))
                    .max_decoding_message_size(limits::EVALUATIONS),
            );
            gateway = Some(evaluations);
        }
        let shutdown = stopped(stop_rx.clone());
        let plaintext = tls.is_none();
        tasks.spawn(async move {
            // Nagle's algorithm off: a streamed reply's small frames would otherwise wait for the
            // client's delayed ACK (~40 ms a reply). tonic sets it only on listeners it binds.
            let incoming =
                TcpIncoming::from(grpc).with_nodelay(Some(true)).with_keepalive(Some(Duration::from_secs(60)));
            if plaintext {
                // A response's frames leave in one write, not two (aap_platform::corked).
                let incoming = futures::StreamExt::map(incoming, |tcp| tcp.map(aap_platform::corked::Corked::new));
                router.serve_with_incoming_shutdown(incoming, shutdown).await.context("grpc server")
            } else {
                router.serve_with_incoming_shutdown(incoming, shutdown).await.context("grpc server")
            }
        });

        if let (Some(http), Some(gateway)) = (http, gateway) {
            let http_auth = aap_evaluations::http::HttpAuth {
                principals: principals.clone(),
                token_less: config.seed_http_networks.clone(),
            };
            let router = aap_evaluations::http::router(gateway, http_auth);
            let shutdown = stopped(stop_rx.clone());
            let timeout = Some(SEED_REQUEST_TIMEOUT);
            match &tls {
                Some(tls) => {
                    let listener = tls.listener(http);
                    tasks.spawn(async move {
                        aap_telemetry::http::serve(listener, router, timeout, shutdown).await.context("http server")
                    })
                }
                None => tasks.spawn(async move {
                    let http = http.tap_io(|tcp| {
                        let _ = tcp.set_nodelay(true);
                    });
                    aap_telemetry::http::serve(http, router, timeout, shutdown).await.context("http server")
                }),
            };
        }

        let console_addr = match (console, session_services) {
            (Some(listener), Some((sessions, remote_logins))) => {
                let addr = listener.local_addr()?;
                // The console's gRPC-web reaches the same services.
                let console_routes = tonic::service::Routes::new(
                    SessionServiceServer::new(sessions).max_decoding_message_size(limits::SESSIONS),
                )
                .add_service(remote_logins)
                .add_service(
                    AdminServiceServer::new(AdminGrpc::new(principals.clone()))
                        .max_decoding_message_size(limits::ADMIN),
                );
                let app = crate::console::router(principals.clone(), console_routes, tls.is_some());
                let shutdown = stopped(stop_rx.clone());
                match &tls {
                    Some(tls) => {
                        let listener = tls.listener(listener);
                        tasks.spawn(async move {
                            aap_telemetry::http::serve(listener, app, None, shutdown).await.context("console server")
                        });
                    }
                    None => {
                        let listener = listener.tap_io(|tcp| {
                            let _ = tcp.set_nodelay(true);
                        });
                        tasks.spawn(async move {
                            aap_telemetry::http::serve(listener, app, None, shutdown).await.context("console server")
                        });
                    }
                }
                Some(addr)
            }
            _ => None,
        };

        let shutdown = stopped(stop_rx.clone());
        tasks.spawn(async move {
            principals.keep_fresh(shutdown).await;
            Ok(())
        });

        if runs(Service::Scheduler) {
            let (p, q, tick, timeouts) = (pool.clone(), queue()?, config.scheduler_tick, config.timeouts);
            let shutdown = stopped(stop_rx.clone());
            tasks.spawn(async move {
                aap_evaluations::scheduler::run(p, q, tick, timeouts, shutdown).await;
                Ok(())
            });
        }

        if runs(Service::Ingest) {
            let (p, q) = (pool.clone(), queue()?);
            let shutdown = stopped(stop_rx.clone());
            tasks.spawn(async move { aap_evaluations::ingest::run(p, q, shutdown).await.context("ingest") });
        }

        // Metrics: the gauges of shared state, read where the scheduler runs, when scraped.
        crate::metrics::register_all();
        let shared_gauges = match runs(Service::Scheduler) {
            true => Some(Arc::new(crate::metrics::SharedGauges::new(
                pool.clone(),
                queue()?,
                config.scheduler_tick.max(Duration::from_millis(100)),
            ))),
            false => None,
        };

        let shutdown = stopped(stop_rx);
        let client = nats.map(|(client, _)| client);
        // Health is known before the start returns: a probe right after it sees the truth.
        let mut checked = check_health(&health, &services, &pool, client.as_ref(), None).await;
        let watched = services.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tick.tick() => {}
                }
                checked = check_health(&health, &watched, &pool, client.as_ref(), Some(checked)).await;
            }
            Ok(())
        });

        let transport = match &tls {
            None => "plain text",
            Some(tls) if tls.mutual() => "tls, client certificates required",
            Some(_) => "tls",
        };
        tracing::info!(
            services = %services,
            %grpc_addr,
            http = ?http_addr,
            console = ?console_addr,
            transport,
            nats = %config.nats_access.describe(),
            "platform serving"
        );
        let public = std::iter::once(grpc_addr).chain(http_addr).chain(console_addr).any(|a| !a.ip().is_loopback());
        if tls.is_none() && public {
            tracing::warn!("serving plain text beyond loopback: give --tls-cert and --tls-key to encrypt it");
        }
        Ok(Platform { grpc_addr, http_addr, console_addr, stop, tasks, shared_gauges })
    }

    /// Metrics: serves `GET /metrics` (Prometheus text, every metric of this process) on
    /// `listener` until the platform stops; returns its address. A scrape first reads the
    /// gauges of shared state where the scheduler runs ([`crate::metrics::SharedGauges`]).
    pub fn serve_metrics(&mut self, listener: TcpListener) -> anyhow::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        let shutdown = stopped(self.stop.subscribe());
        let before = self.shared_gauges.clone().map(crate::metrics::SharedGauges::before_scrape);
        self.tasks.spawn(async move {
            aap_platform::metrics::serve_with(listener, before, shutdown).await.context("metrics server")
        });
        Ok(addr)
    }

    /// Stops serving and waits for every part to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        while let Some(joined) = self.tasks.join_next().await {
            joined.context("platform task panicked")??;
        }
        Ok(())
    }
}

/// Sets health from what the database and NATS say now: each service of `services` SERVING
/// while what it needs answers (PostgreSQL, and NATS for those that use it), AdminService while
/// PostgreSQL does, and the whole process ("") while all of them are. Returns what it found;
/// nothing is set when that is `last`.
async fn check_health(
    health: &tonic_health::server::HealthReporter,
    services: &Services,
    pool: &sqlx::PgPool,
    client: Option<&async_nats::Client>,
    last: Option<(bool, bool)>,
) -> (bool, bool) {
    use tonic_health::ServingStatus::{NotServing, Serving};
    let db_ok = sqlx::query("SELECT 1").execute(pool).await.is_ok();
    let nats_ok = client.is_none_or(|c| c.connection_state() == async_nats::connection::State::Connected);
    if last == Some((db_ok, nats_ok)) {
        return (db_ok, nats_ok);
    }
    if !(db_ok && nats_ok) {
        tracing::warn!(db_ok, nats_ok, "not serving");
    }
    for service in services.iter() {
        let serving = db_ok && (nats_ok || !service.uses_nats());
        for name in service.health_names() {
            health.set_service_status(*name, if serving { Serving } else { NotServing }).await;
        }
    }
    health.set_service_status("aap.v1.AdminService", if db_ok { Serving } else { NotServing }).await;
    health.set_service_status("", if db_ok && nats_ok { Serving } else { NotServing }).await;
    (db_ok, nats_ok)
}
