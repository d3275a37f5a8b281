//! Wires every service of the platform into one process: gRPC (answers, sessions, evaluations,
//! health, reflection) behind the auth layer, the seed's HTTP API, the scheduler with its
//! reaper, and the ingest. `aap serve`, `aap dev` and the end-to-end tests all start it here.

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
use aap_proto::v1::remote_login_service_server::RemoteLoginServiceServer;
use aap_proto::v1::session_service_server::SessionServiceServer;
use aap_sessions::SessionsConfig;
use aap_tls::ServerTls;
use anyhow::Context as _;
use axum::extract::ConnectInfo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;

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
}

/// A running platform; dropping it does not stop it, [`Platform::shutdown`] does.
pub struct Platform {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Where the operators' web console listens, when it was given a listener.
    pub console_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<anyhow::Result<()>>,
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    // An error means the sender is gone: stop as well.
    let _ = rx.wait_for(|stop| *stop).await;
}

impl Platform {
    /// Connects to PostgreSQL and NATS, migrates, and serves gRPC on `grpc` and the seed's
    /// HTTP API on `http`. Health reports SERVING once both are reachable.
    pub async fn start(config: PlatformConfig, grpc: TcpListener, http: TcpListener) -> anyhow::Result<Platform> {
        Platform::start_with_console(config, grpc, http, None).await
    }

    /// As [`Platform::start`], and serves the operators' web console (and its gRPC-web) on
    /// `console` when given.
    pub async fn start_with_console(
        config: PlatformConfig,
        grpc: TcpListener,
        http: TcpListener,
        console: Option<TcpListener>,
    ) -> anyhow::Result<Platform> {
        let Some(session_key) = &config.sessions.key else {
            anyhow::bail!(
                "no session key: set AAP_SESSION_KEY (64 hex digits or base64 of 32 bytes, e.g. `openssl rand -hex 32`) \
                 or AAP_SESSION_KEY_FILE"
            );
        };
        tracing::info!(key_id = session_key.id(), "session states encrypted at rest");
        // Read before anything connects: a bad certificate or key stops the start at once.
        let tls = config.tls.as_ref().map(ServerTls::load).transpose().context("server tls")?;
        let grpc_addr = grpc.local_addr()?;
        let http_addr = http.local_addr()?;
        let pool = aap_platform::db::connect_and_migrate(&config.database_url, 20).await.context("database")?;
        let client =
            aap_platform::nats::connect(&config.nats_url, "aap-platform", &config.nats_access).await.context("nats")?;
        let queue = Arc::new(
            Queue::new(client.clone(), Topology::new(config.nats_prefix.clone())).await.context("nats streams")?,
        );
        let embedder = aap_embedding::Embedder::load(&config.model_dir)
            .with_context(|| format!("embedding model in {}", config.model_dir.display()))?;

        let principals = Principals::load(pool.clone(), &config.tokens).await.context("token table")?;
        let gateway = Gateway::new(pool.clone(), queue.clone(), config.gateway.clone());
        let answers = Answers::new(pool.clone(), embedder, queue.clone(), config.answers.clone());
        let directory = aap_sessions::SessionDirectory::new(pool.clone(), config.sessions.clone());
        // Rows stored before encryption at rest (migration 0004) are sealed before anything is lent.
        directory.seal_plaintext_rows().await.context("encrypting plain-text session states")?;
        let evidence = aap_sessions::EvidenceLocker::new(pool.clone(), config.sessions.evidence);
        let sessions = aap_sessions::grpc::SessionGrpc::with_evidence(directory, evidence);
        let directory = aap_sessions::SessionDirectory::new(pool.clone(), config.sessions.clone());
        let remote_logins = crate::logins::RemoteLoginGrpc::server(directory, config.remote_logins.clone());
        // The console's gRPC-web reaches the same services (one remote-login manager for both).
        let console_routes = tonic::service::Routes::new(
            SessionServiceServer::new(sessions.clone()).max_decoding_message_size(limits::SESSIONS),
        )
        .add_service(remote_logins.clone())
        .add_service(
            AdminServiceServer::new(AdminGrpc::new(principals.clone())).max_decoding_message_size(limits::ADMIN),
        );

        let (stop, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let (health, health_service) = tonic_health::server::health_reporter();
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            server = server.tls_config(tls.grpc()).context("grpc tls")?;
        }
        let router = server
            // Outermost, so refused calls are traced too and every handler runs in the span.
            .layer(aap_platform::telemetry::GrpcTraceLayer)
            // Metrics: every call, refused ones too, by service, method and code.
            .layer(aap_platform::metrics::GrpcMetricsLayer)
            .layer(AuthLayer::new(principals.clone()))
            .add_service(health_service)
            .add_service(aap_platform::server::reflection_v1()?)
            .add_service(aap_platform::server::reflection_v1alpha()?)
            .add_service(
                AnswersServiceServer::new(AnswersGrpc::new(answers)).max_decoding_message_size(limits::ANSWERS),
            )
            .add_service(
                EvaluationServiceServer::new(EvaluationGrpc::new(gateway.clone()))
                    .max_decoding_message_size(limits::EVALUATIONS),
            )
            .add_service(SessionServiceServer::new(sessions).max_decoding_message_size(limits::SESSIONS))
            .add_service(remote_logins)
            .add_service(
                AdminServiceServer::new(AdminGrpc::new(principals.clone())).max_decoding_message_size(limits::ADMIN),
            );
        let shutdown = stopped(stop_rx.clone());
        tasks.spawn(async move {
            router.serve_with_incoming_shutdown(TcpListenerStream::new(grpc), shutdown).await.context("grpc server")
        });

        let http_auth = aap_evaluations::http::HttpAuth {
            principals: principals.clone(),
            token_less: config.seed_http_networks.clone(),
        };
        let router = aap_evaluations::http::router(gateway, http_auth);
        let shutdown = stopped(stop_rx.clone());
        match &tls {
            Some(tls) => {
                let listener = tls.listener(http);
                // The API reads the peer as axum's SocketAddr connect info, whatever the listener.
                let app = router
                    .layer(axum::middleware::map_request(|mut request: axum::extract::Request| async move {
                        let peer = request.extensions().get::<ConnectInfo<aap_tls::PeerAddr>>().map(|info| info.0.0);
                        if let Some(peer) = peer {
                            request.extensions_mut().insert(ConnectInfo(peer));
                        }
                        request
                    }))
                    .into_make_service_with_connect_info::<aap_tls::PeerAddr>();
                tasks.spawn(async move {
                    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("http server")
                })
            }
            None => tasks.spawn(async move {
                let app = router.into_make_service_with_connect_info::<SocketAddr>();
                axum::serve(http, app).with_graceful_shutdown(shutdown).await.context("http server")
            }),
        };

        let console_addr = match console {
            Some(listener) => {
                let addr = listener.local_addr()?;
                let app = crate::console::router(principals.clone(), console_routes, tls.is_some());
                let shutdown = stopped(stop_rx.clone());
                match &tls {
                    Some(tls) => {
                        let listener = tls.listener(listener);
                        tasks.spawn(async move {
                            axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("console server")
                        });
                    }
                    None => {
                        tasks.spawn(async move {
                            axum::serve(listener, app).with_graceful_shutdown(shutdown).await.context("console server")
                        });
                    }
                }
                Some(addr)
            }
            None => None,
        };

        let shutdown = stopped(stop_rx.clone());
        tasks.spawn(async move {
            principals.keep_fresh(shutdown).await;
            Ok(())
        });

        let (p, q, tick, timeouts) = (pool.clone(), queue.clone(), config.scheduler_tick, config.timeouts);
        let shutdown = stopped(stop_rx.clone());
        tasks.spawn(async move {
            aap_evaluations::scheduler::run(p, q, tick, timeouts, shutdown).await;
            Ok(())
        });

        // Metrics: the gauges of shared state, read where the scheduler runs (one process).
        crate::metrics::register_all();
        let (p, q, every) = (pool.clone(), queue.clone(), config.scheduler_tick.max(Duration::from_millis(100)));
        let shutdown = stopped(stop_rx.clone());
        tasks.spawn(async move {
            crate::metrics::collect_gauges(p, q, every, shutdown).await;
            Ok(())
        });

        let (p, q) = (pool.clone(), queue.clone());
        let shutdown = stopped(stop_rx.clone());
        tasks.spawn(async move { aap_evaluations::ingest::run(p, q, shutdown).await.context("ingest") });

        let shutdown = stopped(stop_rx);
        tasks.spawn(async move {
            watch_health(health, pool, client, shutdown).await;
            Ok(())
        });

        let transport = match &tls {
            None => "plain text",
            Some(tls) if tls.mutual() => "tls, client certificates required",
            Some(_) => "tls",
        };
        tracing::info!(%grpc_addr, %http_addr, console = ?console_addr, transport, nats = %config.nats_access.describe(), "platform serving");
        if tls.is_none() && !(grpc_addr.ip().is_loopback() && http_addr.ip().is_loopback()) {
            tracing::warn!("serving plain text beyond loopback: give --tls-cert and --tls-key to encrypt it");
        }
        Ok(Platform { grpc_addr, http_addr, console_addr, stop, tasks })
    }

    /// Metrics: serves `GET /metrics` (Prometheus text, every metric of this process) on
    /// `listener` until the platform stops; returns its address.
    pub fn serve_metrics(&mut self, listener: TcpListener) -> anyhow::Result<SocketAddr> {
        let addr = listener.local_addr()?;
        let shutdown = stopped(self.stop.subscribe());
        self.tasks
            .spawn(async move { aap_platform::metrics::serve(listener, shutdown).await.context("metrics server") });
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

/// Keeps health in step with the database and NATS: SERVING while both answer.
async fn watch_health(
    health: tonic_health::server::HealthReporter,
    pool: sqlx::PgPool,
    client: async_nats::Client,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut last = None;
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let db_ok = sqlx::query("SELECT 1").execute(&pool).await.is_ok();
        let nats_ok = client.connection_state() == async_nats::connection::State::Connected;
        let serving = db_ok && nats_ok;
        if last != Some(serving) {
            if serving {
                health.set_serving::<AnswersServiceServer<AnswersGrpc>>().await;
                health.set_serving::<EvaluationServiceServer<EvaluationGrpc>>().await;
                health.set_serving::<SessionServiceServer<aap_sessions::grpc::SessionGrpc>>().await;
                health.set_serving::<RemoteLoginServiceServer<crate::logins::RemoteLoginGrpc>>().await;
                health.set_service_status("", tonic_health::ServingStatus::Serving).await;
            } else {
                tracing::warn!(db_ok, nats_ok, "not serving");
                health.set_not_serving::<AnswersServiceServer<AnswersGrpc>>().await;
                health.set_not_serving::<EvaluationServiceServer<EvaluationGrpc>>().await;
                health.set_not_serving::<SessionServiceServer<aap_sessions::grpc::SessionGrpc>>().await;
                health.set_not_serving::<RemoteLoginServiceServer<crate::logins::RemoteLoginGrpc>>().await;
                health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
            }
            last = Some(serving);
        }
    }
}
