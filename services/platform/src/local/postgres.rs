//! PostgreSQL + pgvector as a child process on a UNIX socket.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{ConnectOptions, Connection};
use tokio::process::Command;

use super::LocalError;
use super::process::{self, ManagedChild};
use super::tools::Tools;

/// The system user PostgreSQL runs as when we are root (it refuses to run as root).
pub const RUN_AS_USER: &str = "aap";

/// The superuser `initdb` creates; local connections need no password (`--auth=trust`), which
/// is safe because the only way in is a socket inside the data dir.
pub const PG_USER: &str = "postgres";

/// Only names the socket file (`.s.PGSQL.5432`): nothing listens on TCP.
const PORT: u16 = 5432;

/// The socket directory, inside the data dir so that two clusters never share one.
const SOCKET_DIR: &str = "sockets";

/// Beyond this a start is stuck rather than slow (crash recovery of a large cluster included).
const STARTUP_LIMIT: Duration = Duration::from_secs(120);

/// The pause between two connection attempts while the server starts.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The longest path `sockaddr_un` holds, without its terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// How to run a PostgreSQL cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The cluster's directory; created and initialised (initdb) when empty, reused otherwise.
    pub data_dir: PathBuf,
    /// Keep data across crashes (fsync on). Throwaway clusters for tests turn durability off,
    /// which makes them several times faster.
    pub persistent: bool,
}

/// A running PostgreSQL 18 + pgvector server, reachable only through a UNIX socket inside its
/// data dir. Dropping it without [`Postgres::stop`] still shuts the server down.
pub struct Postgres {
    child: ManagedChild,
    data_dir: PathBuf,
    socket_dir: PathBuf,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("pid", &self.child.pid())
            .field("data_dir", &self.data_dir)
            .field("socket_dir", &self.socket_dir)
            .finish()
    }
}

impl Postgres {
    /// Initialises the data dir if it is empty, starts the server (as user `aap` when we are
    /// root) and returns once it accepts connections.
    ///
    /// A `postmaster.pid` left by a killed server does not block the start; a live server on
    /// the same data dir does ([`LocalError::AlreadyRunning`]).
    #[tracing::instrument(name = "postgres_start", skip_all, fields(data_dir = %options.data_dir.display()))]
    pub async fn start(options: PostgresOptions) -> Result<Self, LocalError> {
        let pg_bin = Tools::find_pg_bin()?;
        let lib_dir = Tools::pg_lib_dir(&pg_bin);
        let owner = if process::is_root() { Some(lookup_user(RUN_AS_USER)?) } else { None };

        fs::create_dir_all(&options.data_dir).map_err(LocalError::io("create", &options.data_dir))?;
        let data_dir = fs::canonicalize(&options.data_dir).map_err(LocalError::io("resolve", &options.data_dir))?;
        let socket_dir = data_dir.join(SOCKET_DIR);
        let socket_path = socket_dir.join(format!(".s.PGSQL.{PORT}"));
        if socket_path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(LocalError::SocketPathTooLong { path: socket_path });
        }
        if let Some(owner) = owner {
            check_reachable(&data_dir, owner)?;
            chown(&data_dir, owner)?;
        }

        if !data_dir.join("PG_VERSION").is_file() {
            if fs::read_dir(&data_dir).map_err(LocalError::io("read", &data_dir))?.next().is_some() {
                return Err(LocalError::NotACluster { path: data_dir });
            }
            let mut initdb = command(&pg_bin.join("initdb"), &lib_dir, owner, &data_dir);
            initdb
                .arg("--pgdata")
                .arg(&data_dir)
                .args(["--username", PG_USER, "--auth=trust", "--encoding=UTF8"])
                // Unicode-aware lower()/upper() and code-point order, with no OS locale needed.
                .args(["--locale-provider=builtin", "--builtin-locale=C.UTF-8", "--locale=C"])
                .arg("--no-instructions");
            if !options.persistent {
                initdb.arg("--no-sync");
            }
            tracing::info!("initialising postgres cluster");
            process::run_to_end("initdb", initdb).await?;
        }

        fs::create_dir_all(&socket_dir).map_err(LocalError::io("create", &socket_dir))?;
        if let Some(owner) = owner {
            chown(&socket_dir, owner)?;
        }
        clear_stale_lock(&data_dir, &socket_dir)?;

        let mut postgres = command(&pg_bin.join("postgres"), &lib_dir, owner, &data_dir);
        postgres
            .arg("-D")
            .arg(&data_dir)
            .args(["-c", "listen_addresses="])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", socket_dir.display()))
            .args(["-c", &format!("port={PORT}")])
            // Tests run many services, each with its own pool, in parallel.
            .args(["-c", "max_connections=300"]);
        if !options.persistent {
            postgres.args(["-c", "fsync=off", "-c", "synchronous_commit=off"]);
            postgres.args(["-c", "full_page_writes=off"]);
        }
        // Fast shutdown keeps a persistent cluster clean; a throwaway one may stop at once.
        let stop_signal = if options.persistent { libc::SIGINT } else { libc::SIGQUIT };
        let child = ManagedChild::spawn("postgres", postgres, stop_signal)?;
        let mut server = Self { child, data_dir, socket_dir };
        server.wait_until_ready().await?;
        tracing::info!(pid = server.pid(), socket_dir = %server.socket_dir.display(), "postgres ready");
        Ok(server)
    }

    /// A sqlx (and libpq) URL for `database` as the superuser, e.g.
    /// `postgres://postgres@localhost:5432/app?host=/data/pg/sockets&sslmode=disable`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{PG_USER}@localhost:{PORT}/{}?host={}&sslmode=disable",
            percent_encode(database),
            percent_encode(&self.socket_dir.to_string_lossy()),
        )
    }

    /// The directory holding the server's socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The cluster's data directory (absolute).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Shuts the server down (fast shutdown for a persistent cluster, immediate otherwise) and
    /// waits until it has exited.
    pub async fn stop(self) -> Result<(), LocalError> {
        let pid = self.pid();
        let status = self.child.stop().await?;
        tracing::info!(pid, %status, "postgres stopped");
        Ok(())
    }

    fn connect_options(&self) -> PgConnectOptions {
        // Every field set explicitly: PgConnectOptions::new() would take PGHOST, PGPORT, ...
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(PORT)
            .username(PG_USER)
            .database("postgres")
            .ssl_mode(PgSslMode::Disable)
            .application_name("aap-local")
            .disable_statement_logging()
    }

    /// Polls with a real connection: the server is ready when it serves one, not when its
    /// socket appears.
    async fn wait_until_ready(&mut self) -> Result<(), LocalError> {
        let options = self.connect_options();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_exit_status()? {
                return Err(self.child.exited_error(status).await);
            }
            let error = match sqlx::PgConnection::connect_with(&options).await {
                Ok(connection) => {
                    let _ = connection.close().await;
                    return Ok(());
                }
                Err(error) => error,
            };
            if started.elapsed() > STARTUP_LIMIT {
                return Err(LocalError::NotReady {
                    name: "postgres",
                    seconds: STARTUP_LIMIT.as_secs(),
                    detail: format!("{error}; output: {}", self.child.recent_output()),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// A user's numeric ids.
#[derive(Debug, Clone, Copy)]
struct Owner {
    uid: u32,
    gid: u32,
}

/// A command for a PostgreSQL program, as `owner` when given, with the wheel's libraries.
fn command(program: &Path, lib_dir: &Path, owner: Option<Owner>, cwd: &Path) -> Command {
    let mut command = Command::new(program);
    command
        .env("LD_LIBRARY_PATH", lib_dir)
        // Only messages are localised from the environment: keep them in English and parseable.
        .env("LC_MESSAGES", "C")
        // The caller's directory may be closed to the `aap` user.
        .current_dir(cwd);
    if let Some(owner) = owner {
        command.uid(owner.uid).gid(owner.gid);
    }
    command
}

/// Reads `/etc/passwd` rather than calling getpwnam: system users created by useradd are there.
fn lookup_user(name: &'static str) -> Result<Owner, LocalError> {
    let passwd = fs::read_to_string("/etc/passwd").map_err(LocalError::io("read", "/etc/passwd"))?;
    passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let user = fields.next()?;
            let uid = fields.nth(1)?.parse().ok()?;
            let gid = fields.next()?.parse().ok()?;
            (user == name).then_some(Owner { uid, gid })
        })
        .next()
        .ok_or(LocalError::UserMissing { user: name })
}

/// PostgreSQL runs as `owner`, which must be able to search every directory above its data dir.
fn check_reachable(data_dir: &Path, owner: Owner) -> Result<(), LocalError> {
    for dir in data_dir.ancestors().skip(1) {
        let metadata = fs::metadata(dir).map_err(LocalError::io("inspect", dir))?;
        let mode = metadata.mode();
        let searchable = if metadata.uid() == owner.uid {
            mode & 0o100 != 0
        } else if metadata.gid() == owner.gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !searchable {
            return Err(LocalError::Unreachable { user: RUN_AS_USER, path: dir.to_path_buf() });
        }
    }
    Ok(())
}

fn chown(path: &Path, owner: Owner) -> Result<(), LocalError> {
    std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
        .map_err(LocalError::io("change the owner of", path))
}

/// Removes the lock files of a server that is gone (killed, or its machine rebooted). Postgres
/// does so itself unless the recorded pid now belongs to another live process, which is likely
/// in a container; a live postmaster has its data dir as working directory, which tells them
/// apart.
fn clear_stale_lock(data_dir: &Path, socket_dir: &Path) -> Result<(), LocalError> {
    let pid_file = data_dir.join("postmaster.pid");
    let contents = match fs::read_to_string(&pid_file) {
        Ok(contents) => contents,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(LocalError::Io { action: "read", path: pid_file, source }),
    };
    if let Some(pid) = contents.lines().next().and_then(|line| line.trim().parse::<u32>().ok())
        && fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == data_dir)
    {
        return Err(LocalError::AlreadyRunning { pid, data_dir: data_dir.to_path_buf() });
    }
    tracing::info!(path = %pid_file.display(), "removing the lock file of a stopped postgres");
    let socket = socket_dir.join(format!(".s.PGSQL.{PORT}"));
    let socket_lock = socket_dir.join(format!(".s.PGSQL.{PORT}.lock"));
    for path in [pid_file, socket, socket_lock] {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(LocalError::Io { action: "remove", path, source }),
        }
    }
    Ok(())
}

/// Percent-encodes everything but unreserved characters and `/`, as a URL query value.
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            let _ = write!(encoded, "%{byte:02X}");
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_encode_keeps_paths_readable() {
        assert_eq!(percent_encode("/tmp/a b/sock"), "/tmp/a%20b/sock");
        assert_eq!(percent_encode("db_1"), "db_1");
    }
}
