//! Real infrastructure for integration tests: one PostgreSQL + pgvector and one NATS JetStream
//! per test process, shared by all its tests, with a fresh database and fresh stream names per
//! test.
//!
//! ```no_run
//! #[tokio::test]
//! async fn ask_returns_cached_answers_without_scheduling() {
//!     aap_testkit::init_tracing();
//!     let database_url = aap_testkit::fresh_database().await;
//!     let nats_url = aap_testkit::infra().await.nats_url();
//!     let prefix = aap_testkit::fresh_prefix(); // name streams and subjects after it
//!     // ... start the service on 127.0.0.1:0 against database_url and nats_url
//! #   let _ = (database_url, nats_url, prefix);
//! }
//! # fn main() {}
//! ```
//!
//! With `AAP_TEST_DATABASE_URL` (an admin URL, e.g. `postgres://postgres:pw@db:5432/postgres`)
//! and `AAP_TEST_NATS_URL` both set, tests use those servers. Otherwise the first call to
//! [`infra`] starts PostgreSQL and nats-server from the tools of deploy/local/install.sh, in
//! directories under `$TMPDIR/aap-testkit/<pid>-<random>`. They are stopped and their
//! directories removed when the process exits; if it is killed instead, the kernel still stops
//! them (`PR_SET_PDEATHSIG`) and the next test process removes the directories.
//!
//! This works the same under `cargo test` (many tests, each with its own runtime, in one
//! process) and `cargo nextest run` (one process per test).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, OnceLock, mpsc};
use std::time::Duration;

use aap_platform::local::{Nats, NatsOptions, Postgres, PostgresOptions};
use rand::Rng;
use sqlx::{AssertSqlSafe, Connection};
use tokio::sync::{oneshot, watch};

/// Admin URL of an existing PostgreSQL database with pgvector available.
pub const DATABASE_URL_ENV: &str = "AAP_TEST_DATABASE_URL";

/// URL of an existing NATS server with JetStream enabled.
pub const NATS_URL_ENV: &str = "AAP_TEST_NATS_URL";

/// The directory under `std::env::temp_dir()` holding one subdirectory per test process.
pub const SCRATCH_DIR: &str = "aap-testkit";

/// How long the exit hook waits for the servers to stop before the process ends anyway (the
/// death signal still reaches them then).
const EXIT_GRACE: Duration = Duration::from_secs(30);

/// The servers the tests of this process share.
#[derive(Debug)]
pub struct Infra {
    admin_url: url::Url,
    nats_url: String,
}

impl Infra {
    /// A URL with superuser rights for `database` on the shared server (sqlx-compatible).
    pub fn pg_admin_url(&self, database: &str) -> String {
        let mut url = self.admin_url.clone();
        url.set_path(&format!("/{database}"));
        url.to_string()
    }

    /// The shared NATS server's URL, e.g. `nats://127.0.0.1:41234`.
    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }
}

type Started = Option<Result<&'static Infra, String>>;

static INFRA: OnceLock<watch::Receiver<Started>> = OnceLock::new();

/// The servers shared by every test of this process, started on first use.
///
/// # Panics
///
/// When they cannot be started (the message says why, e.g. to run deploy/local/install.sh).
pub async fn infra() -> &'static Infra {
    init_tracing();
    let mut receiver = INFRA.get_or_init(start).clone();
    let started = receiver.wait_for(Option::is_some).await.map(|started| started.clone());
    match started {
        Ok(Some(Ok(infra))) => infra,
        Ok(Some(Err(error))) => panic!("test infrastructure did not start: {error}"),
        Ok(None) | Err(_) => panic!("test infrastructure did not start: its thread ended"),
    }
}

/// Creates an empty database `test_<random>` with the `vector` extension and returns its
/// admin URL. Migrations are the caller's (e.g. `aap_platform::db`).
///
/// # Panics
///
/// When the database cannot be created.
pub async fn fresh_database() -> String {
    let infra = infra().await;
    let name = format!("test_{}", random_alnum(12));
    if let Err(error) = create_database(infra, &name).await {
        panic!("could not create test database {name}: {error}");
    }
    tracing::debug!(database = %name, "created test database");
    infra.pg_admin_url(&name)
}

/// A unique short prefix (`t` + 9 lowercase letters or digits) for one test's NATS stream
/// names and subjects, so tests sharing a server never see each other's messages.
pub fn fresh_prefix() -> String {
    format!("t{}", random_alnum(9))
}

/// Installs a tracing subscriber once per process, writing through the test harness's capture;
/// silent unless `TEST_LOG=1` (`RUST_LOG` then filters, default `info`).
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let wanted = std::env::var("TEST_LOG").is_ok_and(|value| !matches!(value.as_str(), "" | "0" | "false"));
        if !wanted {
            return;
        }
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // Another subscriber already installed by the test itself wins.
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    });
}

async fn create_database(infra: &Infra, name: &str) -> Result<(), sqlx::Error> {
    let mut admin = sqlx::PgConnection::connect(infra.admin_url.as_str()).await?;
    // The name is ours (test_ + lowercase alphanumerics), so it needs no quoting.
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    admin.close().await?;
    let mut database = sqlx::PgConnection::connect(&infra.pg_admin_url(name)).await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS vector").execute(&mut database).await?;
    database.close().await?;
    Ok(())
}

fn random_alnum(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len).map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())])).collect()
}

/// Uses the servers named by the environment, or starts local ones on a dedicated thread.
fn start() -> watch::Receiver<Started> {
    if let (Ok(database_url), Ok(nats_url)) = (std::env::var(DATABASE_URL_ENV), std::env::var(NATS_URL_ENV)) {
        let started = url::Url::parse(&database_url)
            .map(|admin_url| leak(Infra { admin_url, nats_url }))
            .map_err(|error| format!("{DATABASE_URL_ENV} is not a URL: {error}"));
        return watch::channel(Some(started)).1;
    }
    let (sender, receiver) = watch::channel(None);
    let sender = Arc::new(sender);
    let thread_sender = Arc::clone(&sender);
    // The servers die with the thread that spawned them (PR_SET_PDEATHSIG), and each test's
    // own thread and runtime end with the test: this thread lives as long as the process.
    let spawned = std::thread::Builder::new().name("aap-testkit-servers".into()).spawn(move || {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime.block_on(run_servers(&thread_sender)),
            Err(error) => {
                thread_sender.send_replace(Some(Err(format!("could not build a runtime: {error}"))));
            }
        }
    });
    if let Err(error) = spawned {
        sender.send_replace(Some(Err(format!("could not start the servers' thread: {error}"))));
    }
    receiver
}

fn leak(infra: Infra) -> &'static Infra {
    Box::leak(Box::new(infra))
}

/// Asks the servers' thread to stop them; it answers on the channel it is given.
static STOP_AT_EXIT: Mutex<Option<oneshot::Sender<mpsc::Sender<()>>>> = Mutex::new(None);

/// Starts the servers, publishes their URLs, and keeps them until the process exits.
async fn run_servers(sender: &watch::Sender<Started>) {
    let dir = match scratch_dir() {
        Ok(dir) => dir,
        Err(error) => {
            sender.send_replace(Some(Err(error)));
            return;
        }
    };
    let servers = start_servers(&dir).await;
    let (pg, nats) = match servers {
        Ok(servers) => servers,
        Err(error) => {
            let _ = fs::remove_dir_all(&dir);
            sender.send_replace(Some(Err(error)));
            return;
        }
    };
    let admin_url = match url::Url::parse(&pg.url("postgres")) {
        Ok(url) => url,
        Err(error) => {
            sender.send_replace(Some(Err(format!("bad postgres url: {error}"))));
            return;
        }
    };
    let (stop_sender, stop_receiver) = oneshot::channel();
    if let Ok(mut slot) = STOP_AT_EXIT.lock() {
        *slot = Some(stop_sender);
    }
    register_exit_hook();
    tracing::debug!(pg = %admin_url, nats = %nats.url(), dir = %dir.display(), "test servers ready");
    sender.send_replace(Some(Ok(leak(Infra { admin_url, nats_url: nats.url() }))));

    match stop_receiver.await {
        Ok(done) => {
            let _ = nats.stop().await;
            let _ = pg.stop().await;
            let _ = fs::remove_dir_all(&dir);
            let _ = done.send(());
        }
        // Nobody can ask any more: keep serving until the process ends.
        Err(_) => std::future::pending().await,
    }
}

async fn start_servers(dir: &Path) -> Result<(Postgres, Nats), String> {
    let pg = Postgres::start(PostgresOptions { data_dir: dir.join("pg"), persistent: false })
        .await
        .map_err(|error| error_chain(&error))?;
    let nats = Nats::start(NatsOptions { store_dir: dir.join("nats"), port: None, tls: None, nkey_users: Vec::new() })
        .await
        .map_err(|error| error_chain(&error))?;
    Ok((pg, nats))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// `$TMPDIR/aap-testkit/<pid>-<random>`, after removing the directories of processes that are
/// gone (killed before their exit hook ran).
fn scratch_dir() -> Result<PathBuf, String> {
    let root = std::env::temp_dir().join(SCRATCH_DIR);
    fs::create_dir_all(&root).map_err(|error| format!("could not create {}: {error}", root.display()))?;
    // PostgreSQL runs as another user, who must be able to pass through (umask may say no).
    // Only the directory's owner can change it; for anyone else the check in Postgres::start
    // explains the problem.
    let _ = fs::set_permissions(&root, fs::Permissions::from_mode(0o755));
    remove_dead_scratch_dirs(&root);
    let dir = root.join(format!("{}-{}", std::process::id(), random_alnum(6)));
    fs::create_dir(&dir).map_err(|error| format!("could not create {}: {error}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
        .map_err(|error| format!("could not open up {}: {error}", dir.display()))?;
    Ok(dir)
}

fn remove_dead_scratch_dirs(root: &Path) {
    let Ok(entries) = fs::read_dir(root) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let pid = name.to_str().and_then(|name| name.split('-').next()).and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            // Another process may be removing it too.
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Stops the servers and removes their directory when the process exits normally.
extern "C" fn stop_servers_at_exit() {
    let stop = STOP_AT_EXIT.lock().ok().and_then(|mut slot| slot.take());
    let Some(stop) = stop else { return };
    let (done_sender, done_receiver) = mpsc::channel();
    if stop.send(done_sender).is_ok() {
        let _ = done_receiver.recv_timeout(EXIT_GRACE);
    }
}

#[allow(unsafe_code)]
fn register_exit_hook() {
    // SAFETY: atexit(3) only records the function pointer. The handler runs during exit(3),
    // while the servers' thread still runs, and it cannot unwind: it only locks a mutex that
    // tolerates poisoning and waits on channels with a bound.
    let registered = unsafe { libc::atexit(stop_servers_at_exit) };
    if registered != 0 {
        tracing::warn!("could not register the exit hook: servers stop through their death signal");
    }
}

/// A server layer that runs every request as `caller`, for tests of one service without the
/// platform's token table (the auth layer puts the caller there in production).
pub fn as_caller(
    caller: aap_platform::auth::Caller,
) -> tower::util::MapRequestLayer<impl Fn(http::Request<tonic::body::Body>) -> http::Request<tonic::body::Body> + Clone>
{
    tower::util::MapRequestLayer::new(move |mut request: http::Request<tonic::body::Body>| {
        request.extensions_mut().insert(caller.clone());
        request
    })
}

/// A bot principal named `name` that may serve every assistant, for [`as_caller`].
pub fn bot(name: &str) -> aap_platform::auth::Caller {
    aap_platform::auth::Caller::new(name, aap_platform::auth::Role::Bot, Vec::new(), "tok_test".to_owned())
}
