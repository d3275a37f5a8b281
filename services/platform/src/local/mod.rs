//! The real components of the local stack, run as child processes: PostgreSQL + pgvector and
//! NATS JetStream, from the tools deploy/local/install.sh puts under `/opt/aap`.
//!
//! `aap dev` runs them on persistent directories; `aap-testkit` runs one throwaway pair per test
//! process. Neither ever picks a port: PostgreSQL listens only on a UNIX socket inside its data
//! dir, and nats-server reports the port the OS gave it.
//!
//! Children die with their owner: dropping a [`Postgres`] or [`Nats`] signals the child, and the
//! kernel signals it too when the thread that started it exits (`PR_SET_PDEATHSIG`), so even a
//! killed parent leaves nothing behind. Start them from a thread that lives as long as they
//! should: a tokio worker of the main runtime, never a `spawn_blocking` thread (those exit when
//! idle).
//!
//! ```no_run
//! # async fn demo() -> Result<(), aap_platform::local::LocalError> {
//! use aap_platform::local::{Nats, NatsOptions, Postgres, PostgresOptions};
//! let pg = Postgres::start(PostgresOptions { data_dir: ".aap/pg".into(), persistent: true }).await?;
//! let nats =
//!     Nats::start(NatsOptions { store_dir: ".aap/nats".into(), port: None, tls: None, nkey_users: Vec::new() })
//!         .await?;
//! println!("{} {}", pg.url("postgres"), nats.url());
//! nats.stop().await?;
//! pg.stop().await?;
//! # Ok(())
//! # }
//! ```

mod nats;
mod postgres;
mod process;
#[cfg(test)]
mod tests;
mod tools;

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;

pub use nats::{Nats, NatsOptions, NatsTls};
pub use postgres::{PG_USER, Postgres, PostgresOptions, RUN_AS_USER};
/// For other children that must not outlive their owner (the chaos harness's services and
/// bots): the kernel sends the signal when the spawning thread exits.
pub use process::{die_with_parent_thread, send_signal};
pub use tools::{DEFAULT_TOOLS_DIR, Tools};

/// Why a local component could not be found, started or stopped.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A tool is not where the installer puts it.
    #[error("{tool} not found at {path}: run deploy/local/install.sh (or set {env})")]
    ToolMissing { tool: &'static str, env: &'static str, path: PathBuf },
    /// The unprivileged user PostgreSQL runs as when we are root does not exist.
    #[error("system user {user} not found: run deploy/local/install.sh")]
    UserMissing { user: &'static str },
    /// A directory on the way to the data dir is closed to the user PostgreSQL runs as.
    #[error("user {user} cannot enter {path}: choose a data dir below directories it can search")]
    Unreachable { user: &'static str, path: PathBuf },
    /// The data dir holds files but no PostgreSQL cluster, so initdb would refuse it.
    #[error("{path} is not empty and holds no postgres cluster")]
    NotACluster { path: PathBuf },
    /// A live postmaster already serves the data dir.
    #[error("postgres is already running on {data_dir} (pid {pid})")]
    AlreadyRunning { pid: u32, data_dir: PathBuf },
    /// UNIX socket paths are limited to 107 bytes.
    #[error("socket path {path} is too long for a unix socket: choose a shorter data dir")]
    SocketPathTooLong { path: PathBuf },
    /// A file system operation failed.
    #[error("could not {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A child process could not be started.
    #[error("could not start {name}")]
    Spawn {
        name: &'static str,
        #[source]
        source: io::Error,
    },
    /// Waiting on a child process failed.
    #[error("could not wait for {name}")]
    Wait {
        name: &'static str,
        #[source]
        source: io::Error,
    },
    /// A child process exited when it should not have (or failed, for initdb).
    #[error("{name} exited with {status}: {output}")]
    Failed { name: &'static str, status: ExitStatus, output: String },
    /// A child process kept running but never became ready.
    #[error("{name} was not ready after {seconds}s: {detail}")]
    NotReady { name: &'static str, seconds: u64, detail: String },
}

impl LocalError {
    fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { action, path, source }
    }
}
