//! The test kit against the real servers it starts.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aap_testkit::{DATABASE_URL_ENV, NATS_URL_ENV, SCRATCH_DIR};
use anyhow::{Context, Result, ensure};
use async_nats::jetstream;
use sqlx::Connection;

#[tokio::test]
async fn fresh_databases_are_distinct_and_have_pgvector() -> Result<()> {
    aap_testkit::init_tracing();
    let first_url = aap_testkit::fresh_database().await;
    let second_url = aap_testkit::fresh_database().await;
    assert_ne!(first_url, second_url);

    let mut first = sqlx::PgConnection::connect(&first_url).await?;
    let mut second = sqlx::PgConnection::connect(&second_url).await?;
    let first_name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut first).await?;
    let second_name: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut second).await?;
    assert_ne!(first_name, second_name);
    assert!(first_name.starts_with("test_"), "{first_name}");

    for connection in [&mut first, &mut second] {
        let distance: f64 =
            sqlx::query_scalar("SELECT '[1,2,3]'::vector <=> '[1,2,4]'::vector").fetch_one(&mut *connection).await?;
        // 1 - 17 / (sqrt(14) * sqrt(21))
        assert!((distance - 0.008_536).abs() < 1e-5, "cosine distance {distance}");
    }

    sqlx::query("CREATE TABLE only_in_first (id int)").execute(&mut first).await?;
    let visible: bool =
        sqlx::query_scalar("SELECT to_regclass('only_in_first') IS NOT NULL").fetch_one(&mut second).await?;
    assert!(!visible, "a table of one fresh database showed up in another");
    first.close().await?;
    second.close().await?;
    Ok(())
}

#[tokio::test]
async fn jetstream_drops_a_repeated_message_id() -> Result<()> {
    aap_testkit::init_tracing();
    let infra = aap_testkit::infra().await;
    let prefix = aap_testkit::fresh_prefix();
    let client = async_nats::connect(infra.nats_url()).await?;
    let context = jetstream::new(client);
    let mut stream = context
        .create_stream(jetstream::stream::Config {
            name: format!("{prefix}-tasks"),
            subjects: vec![format!("{prefix}.tasks.>")],
            ..Default::default()
        })
        .await?;

    let task =
        || jetstream::message::PublishMessage::build().payload("ask".into()).message_id("evaluation-1-attempt-1");
    let subject = format!("{prefix}.tasks.chatgpt.free");
    let first = context.send_publish(subject.clone(), task()).await?.await?;
    let second = context.send_publish(subject, task()).await?.await?;
    assert!(!first.duplicate);
    assert!(second.duplicate, "the repeated Nats-Msg-Id was stored again");
    assert_eq!(stream.info().await?.state.messages, 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_outlive_the_runtime_that_started_them() -> Result<()> {
    // Ask first from a runtime on a thread that then ends, as a finished test's would.
    let first = std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        anyhow::Ok(runtime.block_on(aap_testkit::infra()).pg_admin_url("postgres"))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the first thread panicked"))??;

    let infra = aap_testkit::infra().await;
    assert_eq!(infra.pg_admin_url("postgres"), first, "one shared infra per process");
    assert!(std::ptr::eq(infra, aap_testkit::infra().await));
    let mut connection = sqlx::PgConnection::connect(&first).await?;
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut connection).await?;
    assert_eq!(one, 1);
    connection.close().await?;
    async_nats::connect(infra.nats_url()).await?.flush().await?;
    Ok(())
}

#[test]
fn prefixes_are_short_lowercase_and_unique() {
    let prefixes: std::collections::HashSet<_> = (0..1000).map(|_| aap_testkit::fresh_prefix()).collect();
    assert_eq!(prefixes.len(), 1000);
    for prefix in prefixes {
        assert_eq!(prefix.len(), 10);
        assert!(prefix.starts_with('t'));
        assert!(prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()), "{prefix}");
    }
}

/// Tells `child_process_reports_its_servers` to run, and how it should end.
const CHILD_ENV: &str = "AAP_TESTKIT_CHILD";
const CHILD_TEST: &str = "child_process_reports_its_servers";
const REPORT: &str = "AAP_TESTKIT_SERVERS";

/// The body of the child processes below; does nothing when run as a test on its own.
#[tokio::test]
async fn child_process_reports_its_servers() -> Result<()> {
    let Some(ending) = std::env::var_os(CHILD_ENV) else { return Ok(()) };
    let _ = aap_testkit::fresh_database().await;
    let servers: Vec<u32> = std::fs::read_dir("/proc/self/task")?
        .flatten()
        .flat_map(|task| children(&task.path().join("children")))
        .collect();
    let background = servers.iter().flat_map(|pid| children(Path::new(&format!("/proc/{pid}/task/{pid}/children"))));
    let pids: Vec<String> = servers.iter().copied().chain(background).map(|pid| pid.to_string()).collect();
    println!("{REPORT} {}", pids.join(" "));
    if ending == "killed" {
        // Wait for the parent's SIGKILL: no destructor or exit hook will run.
        std::future::pending::<()>().await;
    }
    Ok(())
}

#[test]
fn servers_stop_when_the_test_process_exits() -> Result<()> {
    let mut child = ChildGuard(spawn_child("exits")?);
    let pid = child.0.id();
    let pids = read_report(&mut child.0)?;
    let status = child.0.wait()?;
    ensure!(status.success(), "child test failed: {status}");
    // The exit hook stopped and reaped the servers before the process ended.
    let alive: Vec<_> = pids.iter().filter(|pid| !is_gone(**pid)).collect();
    ensure!(alive.is_empty(), "still running after the test process exited: {alive:?}");
    let scratch = std::env::temp_dir().join(SCRATCH_DIR);
    let left: Vec<_> = std::fs::read_dir(&scratch)?
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with(&format!("{pid}-")))
        .collect();
    ensure!(left.is_empty(), "scratch directory left behind: {left:?}");
    Ok(())
}

#[test]
fn servers_die_when_the_test_process_is_killed() -> Result<()> {
    let mut child = ChildGuard(spawn_child("killed")?);
    let pids = read_report(&mut child.0)?;
    child.0.kill()?;
    child.0.wait()?;
    // Only the kernel's parent-death signal can stop them now; the minute is a hang guard.
    let started = Instant::now();
    while !pids.iter().all(|pid| is_gone(*pid)) {
        ensure!(started.elapsed() < Duration::from_secs(60), "servers outlived a killed test: {pids:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Kills the child on every path, so a failed assertion leaks no process.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs this test binary again, for the reporting test only, with local servers forced.
fn spawn_child(ending: &str) -> Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, ending)
        .env_remove(DATABASE_URL_ENV)
        .env_remove(NATS_URL_ENV)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("could not start the child test process")
}

/// The pids the child reports: its servers and PostgreSQL's background processes.
fn read_report(child: &mut Child) -> Result<Vec<u32>> {
    let stdout = child.stdout.take().context("child stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    for line in lines.by_ref() {
        // libtest prints "test <name> ... " on the same line first.
        if let Some((_, pids)) = line?.split_once(REPORT) {
            let pids: Vec<u32> = pids.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
            ensure!(pids.len() > 2, "expected postgres, nats-server and postgres workers: {pids:?}");
            // Keep reading: a closed pipe would fail the child's remaining output.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(pids);
        }
    }
    anyhow::bail!("the child test process reported no servers")
}

fn children(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path).unwrap_or_default().split_whitespace().filter_map(|pid| pid.parse().ok()).collect()
}

/// Gone: no /proc entry, or a zombie (exited, waiting for a reaper).
fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}
