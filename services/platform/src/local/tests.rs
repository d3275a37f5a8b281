//! Runs the real PostgreSQL and nats-server the installer provides.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::Connection;

use super::*;

type TestResult = Result<(), Box<dyn Error>>;

/// A scratch directory unique to this test process and test, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("aap-platform-local-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A process is gone once its /proc entry is, or once it is a zombie nobody reaped.
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the command name, which is in parentheses.
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

/// Polls until every pid is gone; the minute of patience only guards against a hung test.
async fn wait_until_gone(pids: &[u32]) -> Result<(), String> {
    let started = Instant::now();
    while !pids.iter().all(|pid| is_gone(*pid)) {
        if started.elapsed() > Duration::from_secs(60) {
            let alive: Vec<_> = pids.iter().filter(|pid| !is_gone(**pid)).collect();
            return Err(format!("still running: {alive:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

async fn vector_distance(url: &str) -> Result<f64, sqlx::Error> {
    let mut connection = sqlx::PgConnection::connect(url).await?;
    sqlx::query("CREATE EXTENSION IF NOT EXISTS vector").execute(&mut connection).await?;
    let distance: f64 =
        sqlx::query_scalar("SELECT '[1,0]'::vector <=> '[0,1]'::vector").fetch_one(&mut connection).await?;
    connection.close().await?;
    Ok(distance)
}

#[tokio::test]
async fn postgres_serves_pgvector_on_its_socket_only_and_stops() -> TestResult {
    let scratch = Scratch::new("pg-basic");
    let pg = Postgres::start(PostgresOptions { data_dir: scratch.0.join("pg"), persistent: false }).await?;
    assert!(pg.socket_dir().starts_with(pg.data_dir()));
    assert!(pg.url("postgres").contains("host=/"), "{}", pg.url("postgres"));

    assert!((vector_distance(&pg.url("postgres")).await? - 1.0).abs() < 1e-9);
    let mut connection = sqlx::PgConnection::connect(&pg.url("postgres")).await?;
    let listen: String = sqlx::query_scalar("SHOW listen_addresses").fetch_one(&mut connection).await?;
    assert_eq!(listen, "", "postgres must not listen on TCP");
    let lower: String = sqlx::query_scalar("SELECT lower('ÄÖÜ')").fetch_one(&mut connection).await?;
    assert_eq!(lower, "äöü", "the cluster's locale must know Unicode case");
    connection.close().await?;

    let pid = pg.pid();
    pg.stop().await?;
    assert!(is_gone(pid));
    Ok(())
}

#[tokio::test]
async fn persistent_cluster_keeps_data_across_restarts_and_stale_lock_files() -> TestResult {
    let scratch = Scratch::new("pg-persistent");
    let options = PostgresOptions { data_dir: scratch.0.join("pg"), persistent: true };

    let pg = Postgres::start(options.clone()).await?;
    let mut connection = sqlx::PgConnection::connect(&pg.url("postgres")).await?;
    sqlx::query("CREATE TABLE kept (value text)").execute(&mut connection).await?;
    sqlx::query("INSERT INTO kept VALUES ('still here')").execute(&mut connection).await?;
    connection.close().await?;
    pg.stop().await?;

    // A lock file naming a live process that is not postgres (a reused pid after a crash):
    // postgres alone would refuse to start.
    std::fs::write(options.data_dir.join("postmaster.pid"), "1\n")?;

    let pg = Postgres::start(options.clone()).await?;
    let mut connection = sqlx::PgConnection::connect(&pg.url("postgres")).await?;
    let value: String = sqlx::query_scalar("SELECT value FROM kept").fetch_one(&mut connection).await?;
    assert_eq!(value, "still here");
    connection.close().await?;

    let second = Postgres::start(options.clone()).await;
    assert!(
        matches!(second, Err(LocalError::AlreadyRunning { pid, .. }) if pid == pg.pid()),
        "a live cluster must not be started twice: {second:?}"
    );

    // Dropped without stop: the server still shuts down.
    let pid = pg.pid();
    drop(pg);
    wait_until_gone(&[pid]).await?;
    Ok(())
}

#[tokio::test]
async fn nats_reports_its_port_and_keeps_jetstream_on_disk() -> TestResult {
    let scratch = Scratch::new("nats");
    let options = NatsOptions { store_dir: scratch.0.join("nats"), port: None, tls: None, nkey_users: Vec::new() };

    let nats = Nats::start(options.clone()).await?;
    assert!(nats.url().starts_with("nats://127.0.0.1:"), "{}", nats.url());
    let client = async_nats::connect(nats.url()).await?;
    let jetstream = async_nats::jetstream::new(client);
    jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: "KEPT".into(),
            subjects: vec!["kept.>".into()],
            ..Default::default()
        })
        .await?;
    jetstream.publish("kept.one", "hello".into()).await?.await?;
    let first_url = nats.url();
    nats.stop().await?;

    let nats = Nats::start(options).await?;
    let client = async_nats::connect(nats.url()).await?;
    let jetstream = async_nats::jetstream::new(client);
    let mut stream = jetstream.get_stream("KEPT").await?;
    assert_eq!(stream.info().await?.state.messages, 1);
    tracing::debug!(first_url, second_url = nats.url(), "restarted");
    let pid = nats.pid();
    nats.stop().await?;
    assert!(is_gone(pid));
    Ok(())
}

#[tokio::test]
async fn children_die_with_the_thread_that_started_them() -> TestResult {
    let scratch = Scratch::new("orphans");
    let pg_dir = scratch.0.join("pg");
    let nats_dir = scratch.0.join("nats");

    // The servers come back to this thread undropped: only PR_SET_PDEATHSIG can end them.
    let owner = std::thread::spawn(move || -> Result<(Postgres, Nats, Vec<u32>), String> {
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|error| error.to_string())?;
        runtime.block_on(async move {
            let pg = Postgres::start(PostgresOptions { data_dir: pg_dir, persistent: false })
                .await
                .map_err(|error| error.to_string())?;
            let nats = Nats::start(NatsOptions { store_dir: nats_dir, port: None, tls: None, nkey_users: Vec::new() })
                .await
                .map_err(|error| error.to_string())?;
            let mut pids = vec![pg.pid(), nats.pid()];
            pids.extend(children_of(pg.pid()));
            Ok((pg, nats, pids))
        })
    });
    let (pg, nats, pids) = owner.join().map_err(|_| "owner thread panicked")??;
    assert!(pids.len() > 2, "postgres should have started its background processes: {pids:?}");
    wait_until_gone(&pids).await?;

    // Dropping reaps the two exited children rather than signalling a recycled pid.
    let (pg_pid, nats_pid) = (pg.pid(), nats.pid());
    drop(pg);
    drop(nats);
    // Reaping may finish on the runtime's own time (tokio reaps a dropped child in the
    // background): a zombie left for good fails, a moment's delay does not.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for pid in [pg_pid, nats_pid] {
        while Path::new(&format!("/proc/{pid}")).exists() {
            assert!(std::time::Instant::now() < deadline, "pid {pid} was not reaped");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

#[test]
fn installed_tools_are_discovered() -> TestResult {
    let tools = Tools::discover()?;
    assert!(tools.pg_bin.join("postgres").is_file());
    assert!(Path::new(&tools.model_dir).join("model.safetensors").is_file());
    assert!(Tools::pg_lib_dir(&tools.pg_bin).is_dir());
    Ok(())
}
