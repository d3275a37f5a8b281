//! nats-server 2.15 with JetStream as a child process.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::LocalError;
use super::process::ManagedChild;
use super::tools::Tools;

/// Beyond this a start is stuck rather than slow (JetStream recovering a large store included).
const STARTUP_LIMIT: Duration = Duration::from_secs(120);

/// The pause between two looks for the ports file while the server starts.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// How to run nats-server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsOptions {
    /// JetStream's store; created when missing, reused otherwise. The generated `nats.conf`
    /// and the ports file live here too.
    pub store_dir: PathBuf,
    /// The client port on 127.0.0.1; `None` lets the OS choose (tests), and [`Nats::url`]
    /// tells which it chose.
    pub port: Option<u16>,
    /// Serve TLS only (a `tls` block), to try clients that verify the server or present a
    /// certificate.
    pub tls: Option<NatsTls>,
    /// Public nkeys (`U...`) of the only users let in; anyone may connect when empty.
    pub nkey_users: Vec<String>,
}

/// The `tls` block of a local nats-server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsTls {
    /// The server's certificate chain (PEM); its names include `127.0.0.1`.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// CA certificates (PEM): when set, every client must present a certificate that chains to
    /// one (`verify: true`).
    pub client_ca_file: Option<PathBuf>,
}

/// A running nats-server with JetStream, listening on 127.0.0.1 only, with every write synced
/// to disk (`sync_interval: always`). Dropping it without [`Nats::stop`] still stops the server.
pub struct Nats {
    child: ManagedChild,
    url: String,
    store_dir: PathBuf,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("pid", &self.child.pid())
            .field("url", &self.url)
            .field("store_dir", &self.store_dir)
            .finish()
    }
}

impl Nats {
    /// Writes the config, starts nats-server and returns once its client port is open.
    #[tracing::instrument(name = "nats_start", skip_all, fields(store_dir = %options.store_dir.display()))]
    pub async fn start(options: NatsOptions) -> Result<Self, LocalError> {
        let program = Tools::find_nats_server()?;
        fs::create_dir_all(&options.store_dir).map_err(LocalError::io("create", &options.store_dir))?;
        let store_dir = fs::canonicalize(&options.store_dir).map_err(LocalError::io("resolve", &options.store_dir))?;
        // The server announces its port in <dir>/nats-server_<pid>.ports once it listens.
        let ports_dir = store_dir.join("ports");
        fs::create_dir_all(&ports_dir).map_err(LocalError::io("create", &ports_dir))?;
        remove_stale_ports_files(&ports_dir)?;

        let config_path = store_dir.join("nats.conf");
        // nats-server keeps JetStream's files in <store_dir>/jetstream.
        let config = config(&store_dir, &options);
        fs::write(&config_path, config).map_err(LocalError::io("write", &config_path))?;

        let mut command = Command::new(program);
        command.arg("--config").arg(&config_path).arg("--ports_file_dir").arg(&ports_dir);
        let child = ManagedChild::spawn("nats-server", command, libc::SIGTERM)?;
        let mut server = Self { child, url: String::new(), store_dir };
        server.url = server.wait_for_port(&ports_dir).await?;
        tracing::info!(pid = server.pid(), url = %server.url, "nats-server ready");
        Ok(server)
    }

    /// The client URL, e.g. `nats://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The JetStream store directory (absolute).
    pub fn store_dir(&self) -> &Path {
        &self.store_dir
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.pid()
    }

    /// Stops the server (SIGTERM) and waits until it has exited.
    pub async fn stop(self) -> Result<(), LocalError> {
        let pid = self.pid();
        let status = self.child.stop().await?;
        tracing::info!(pid, %status, "nats-server stopped");
        Ok(())
    }

    async fn wait_for_port(&mut self, ports_dir: &Path) -> Result<String, LocalError> {
        let suffix = format!("_{}.ports", self.child.pid());
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_exit_status()? {
                return Err(self.child.exited_error(status).await);
            }
            if let Some(url) = read_ports_file(ports_dir, &suffix)? {
                return Ok(url);
            }
            if started.elapsed() > STARTUP_LIMIT {
                return Err(LocalError::NotReady {
                    name: "nats-server",
                    seconds: STARTUP_LIMIT.as_secs(),
                    detail: self.child.recent_output(),
                });
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

/// The server's config: loopback only, JetStream with every write fsynced, messages of up to
/// [`crate::nats::MAX_PAYLOAD`], TLS and users as `options` say.
fn config(store_dir: &Path, options: &NatsOptions) -> String {
    // -1 asks nats-server for a port from the OS.
    let port = options.port.map_or_else(|| "-1".to_owned(), |port| port.to_string());
    let mut config = format!(
        "host: 127.0.0.1\nport: {port}\nmax_payload: {}\njetstream {{\n  store_dir: {}\n  sync_interval: always\n}}\n",
        crate::nats::MAX_PAYLOAD,
        quote(&store_dir.to_string_lossy())
    );
    if let Some(tls) = &options.tls {
        config.push_str(&format!(
            "tls {{\n  cert_file: {}\n  key_file: {}\n",
            quote(&tls.cert_file.to_string_lossy()),
            quote(&tls.key_file.to_string_lossy())
        ));
        if let Some(ca) = &tls.client_ca_file {
            config.push_str(&format!("  ca_file: {}\n  verify: true\n", quote(&ca.to_string_lossy())));
        }
        config.push_str("}\n");
    }
    if !options.nkey_users.is_empty() {
        let users: Vec<String> = options.nkey_users.iter().map(|key| format!("{{ nkey: {} }}", quote(key))).collect();
        config.push_str(&format!("authorization {{\n  users: [{}]\n}}\n", users.join(", ")));
    }
    config
}

/// A JSON string is a valid quoted NATS config string, escapes included.
fn quote(value: &str) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn remove_stale_ports_files(ports_dir: &Path) -> Result<(), LocalError> {
    for entry in fs::read_dir(ports_dir).map_err(LocalError::io("read", ports_dir))? {
        let path = entry.map_err(LocalError::io("read", ports_dir))?.path();
        if path.extension().is_some_and(|extension| extension == "ports") {
            fs::remove_file(&path).map_err(LocalError::io("remove", &path))?;
        }
    }
    Ok(())
}

/// The first client URL from our server's ports file, once it is there and complete.
fn read_ports_file(ports_dir: &Path, suffix: &str) -> Result<Option<String>, LocalError> {
    for entry in fs::read_dir(ports_dir).map_err(LocalError::io("read", ports_dir))? {
        let path = entry.map_err(LocalError::io("read", ports_dir))?.path();
        if !path.file_name().is_some_and(|name| name.to_string_lossy().ends_with(suffix)) {
            continue;
        }
        let contents = match fs::read(&path) {
            Ok(contents) => contents,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(LocalError::Io { action: "read", path, source }),
        };
        // A file caught half-written does not parse yet: look again on the next round.
        let Ok(ports) = serde_json::from_slice::<serde_json::Value>(&contents) else {
            return Ok(None);
        };
        // {"nats":["nats://127.0.0.1:40149"]}: the client listeners, in our case exactly one.
        return Ok(ports["nats"][0].as_str().map(str::to_owned));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> NatsOptions {
        NatsOptions { store_dir: PathBuf::from("/unused"), port: None, tls: None, nkey_users: Vec::new() }
    }

    #[test]
    fn config_quotes_the_store_dir() {
        let config = config(Path::new("/tmp/a \"b\"/js"), &options());
        assert!(config.contains(r#"store_dir: "/tmp/a \"b\"/js""#), "{config}");
        assert!(config.contains("port: -1"), "{config}");
        assert!(!config.contains("tls") && !config.contains("authorization"), "{config}");
    }

    #[test]
    fn config_verifies_clients_and_lets_in_only_the_nkey_users() {
        let tls = NatsTls {
            cert_file: "/t/server.crt".into(),
            key_file: "/t/server.key".into(),
            client_ca_file: Some("/t/ca.crt".into()),
        };
        let options = NatsOptions { tls: Some(tls), nkey_users: vec!["UABC".into(), "UDEF".into()], ..options() };
        let config = config(Path::new("/js"), &options);
        assert!(
            config.contains(
                "tls {\n  cert_file: \"/t/server.crt\"\n  key_file: \"/t/server.key\"\n  ca_file: \"/t/ca.crt\"\n  verify: true\n}\n"
            ),
            "{config}"
        );
        assert!(config.contains("users: [{ nkey: \"UABC\" }, { nkey: \"UDEF\" }]"), "{config}");
    }
}
