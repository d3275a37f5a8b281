//! NATS JetStream streams and subjects: the one place their names are made.
//!
//! Every name starts from a prefix (`aap` in production, a fresh one per test) so that tests
//! and environments share a server without sharing streams.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use secrecy::{ExposeSecret, SecretString};

use crate::assistants::plan_token;

/// The largest message the platform's NATS servers take (`max_payload`), as `aap dev`, the tests
/// and deploy/ configure them: 8 MiB, nats-server's own largest recommended, against its default
/// of 1 MiB. A result carries its answer's page HTML (up to 4,000,000 characters); one larger
/// than the server takes goes without its page (`aap_evaluations::gateway::fit_result`).
pub const MAX_PAYLOAD: usize = 8 * 1024 * 1024;

/// Errors setting up JetStream.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to nats at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("nats tls: {0}")]
    Tls(#[from] aap_tls::TlsError),
    #[error("cannot read the nats credentials file {path}: {source}")]
    Credentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the nats nkey is not a valid seed (expected `SU...`): {0}")]
    Nkey(#[source] nkeys::error::Error),
    #[error("cannot change the replicas of stream {name}: {source}")]
    Replicas {
        name: String,
        #[source]
        source: jetstream::context::UpdateStreamError,
    },
    #[error("cannot create stream {name}: {source}")]
    Stream {
        name: String,
        #[source]
        source: jetstream::context::CreateStreamError,
    },
}

/// Names of the platform's streams and subjects under one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    prefix: String,
}

impl Topology {
    /// `prefix` is lowercase ASCII letters, digits and '-'; "aap" in production.
    pub fn new(prefix: impl Into<String>) -> Topology {
        Topology { prefix: prefix.into() }
    }

    /// The prefix of every subject.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Stream of evaluation tasks (a work queue: what the bots' consumers acknowledged is purged).
    pub fn tasks_stream(&self) -> String {
        format!("{}_TASKS", self.stream_stem())
    }

    /// Stream of submitted results on their way to the ingest (a work queue: what the ingest
    /// acknowledged is purged).
    pub fn results_stream(&self) -> String {
        format!("{}_RESULTS", self.stream_stem())
    }

    /// Subject of the tasks for one assistant and plan.
    pub fn task_subject(&self, assistant: &str, plan: &str) -> String {
        format!("{}.tasks.{}.{}", self.prefix, assistant, plan_token(plan))
    }

    /// Subject of a submitted result.
    pub fn result_subject(&self, assistant: &str) -> String {
        format!("{}.results.{}", self.prefix, assistant)
    }

    /// Stream of the messages that carry several submitted results
    /// ([`Topology::results_batch_subject`]), beside the results stream rather than on it: the
    /// ingest of a version before 2026-12-05 reads each message of the results stream as one
    /// result and drops any other as unreadable, and during a rolling upgrade it shares that
    /// stream's consumer `ingest` with the new ingests. On a stream of their own, batches reach
    /// only the ingests that read them.
    pub fn results_batches_stream(&self) -> String {
        format!("{}_RESULT_BATCHES", self.stream_stem())
    }

    /// Subject of a message carrying several submitted results (of any assistants, a JSON
    /// array), which a gateway publishes for submits made together: one stored message (one
    /// fsync) instead of one each. On [`Topology::results_batches_stream`].
    pub fn results_batch_subject(&self) -> String {
        format!("{}.batches.results", self.prefix)
    }

    /// Core-NATS subject where a message that cannot be processed goes after its last delivery,
    /// e.g. `aap.dead.results` (attach a stream to `<prefix>.dead.>` to keep them).
    pub fn dead_letter_subject(&self, what: &str) -> String {
        format!("{}.dead.{}", self.prefix, what)
    }

    /// Core-NATS subject where a prompt's changes are announced to waiting streams.
    pub fn prompt_events_subject(&self, prompt_id: i64) -> String {
        format!("{}.{}", self.prompt_events_subject_prefix(), prompt_id)
    }

    /// What every prompt's announcement subject starts with (`<prefix>.events.prompt`).
    pub fn prompt_events_subject_prefix(&self) -> String {
        format!("{}.events.prompt", self.prefix)
    }

    /// Core-NATS subject of the text an assistant has typed so far for one of a prompt's
    /// evaluations (`<prefix>.events.prompt.<id>.partial`): ephemeral, never on a stream.
    pub fn prompt_partial_subject(&self, prompt_id: i64) -> String {
        format!("{}.partial", self.prompt_events_subject(prompt_id))
    }

    /// Durable consumer name for one task subject.
    pub fn task_consumer(&self, assistant: &str, plan: &str) -> String {
        format!("tasks-{}-{}", assistant, plan_token(plan))
    }

    /// Durable consumer of the ingest.
    pub fn ingest_consumer(&self) -> String {
        "ingest".to_owned()
    }

    fn stream_stem(&self) -> String {
        self.prefix.to_uppercase().replace(['-', '.'], "_")
    }
}

/// How a client proves itself to NATS and checks the server, beyond what its URL says (a URL
/// may carry `user:password@`, and `tls://` asks for TLS). The default adds nothing.
#[derive(Debug, Clone, Default)]
pub struct NatsAccess {
    /// Whom to trust and which client certificate to present. Any file given requires TLS,
    /// whatever the URL's scheme.
    pub tls: aap_tls::ClientTls,
    /// A credentials file (user JWT and nkey seed, as `nsc` writes them).
    pub creds_file: Option<PathBuf>,
    /// An nkey seed (`SU...`) whose public key the server lists among its users.
    pub nkey_seed: Option<SecretString>,
}

impl NatsAccess {
    /// What a log line may say about it: TLS, client certificate, and how the client
    /// authenticates (never a secret).
    pub fn describe(&self) -> String {
        let tls = match (self.tls.is_configured(), self.tls.client_cert.is_some()) {
            (false, _) => "tls as the url and server say",
            (true, false) => "tls",
            (true, true) => "mutual tls",
        };
        let auth = match (&self.creds_file, &self.nkey_seed) {
            (Some(_), _) => "credentials file",
            (None, Some(_)) => "nkey",
            (None, None) => "url",
        };
        format!("{tls}, authenticated by {auth}")
    }
}

/// Connects to NATS with a name that shows in the server's connection list, with the TLS and
/// credentials of `access`.
pub async fn connect(url: &str, name: &str, access: &NatsAccess) -> Result<async_nats::Client, NatsError> {
    let mut options = match &access.creds_file {
        Some(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|source| NatsError::Credentials { path: path.clone(), source })?,
        None => async_nats::ConnectOptions::new(),
    };
    if let Some(seed) = &access.nkey_seed {
        // async-nats only says "authentication failed" for a seed that does not parse.
        nkeys::KeyPair::from_seed(seed.expose_secret()).map_err(NatsError::Nkey)?;
        options = options.nkey(seed.expose_secret().to_owned());
    }
    if access.tls.is_configured() {
        options = options.require_tls(true).tls_client_config(access.tls.rustls_config()?);
    }
    // async-nats parses a `&str` as one address: a cluster's list has to be handed over split.
    let client = options
        .name(name)
        .connect(servers(url))
        .await
        .map_err(|source| NatsError::Connect { url: redact(url), source })?;
    let max_payload = client.server_info().max_payload;
    if max_payload < MAX_PAYLOAD {
        tracing::warn!(
            max_payload,
            wanted = MAX_PAYLOAD,
            "the NATS server takes messages smaller than the platform's 8 MiB: an answer whose result is larger is \
             taken without its page HTML (set max_payload: 8388608 in the server's config)"
        );
    }
    Ok(client)
}

/// The servers of `url`: one, or a comma-separated list (the nodes of a cluster).
fn servers(url: &str) -> Vec<&str> {
    url.split(',').map(str::trim).filter(|server| !server.is_empty()).collect()
}

/// `url` (one server or a comma-separated list) with any `user:password@` replaced by `***@`,
/// for error messages and logs.
fn redact(url: &str) -> String {
    let servers = url.split(',').map(|server| {
        let rest_at = server.find("://").map_or(0, |scheme| scheme + 3);
        let authority_end = server[rest_at..].find('/').map_or(server.len(), |end| rest_at + end);
        match server[rest_at..authority_end].rfind('@') {
            Some(at) => format!("{}***{}", &server[..rest_at], &server[rest_at + at..]),
            None => server.to_owned(),
        }
    });
    servers.collect::<Vec<_>>().join(",")
}

/// Creates the task, result and result batch streams if they do not exist (file storage,
/// limits retention, kept on `replicas` servers of a cluster); a stream kept on a different
/// number of servers is changed to `replicas`.
///
/// The streams are work queues all the same: what the platform's consumers acknowledged is
/// purged (`evaluations::queue::Queue::purge_acked`, every second), not removed at each ack.
/// With `sync_interval: always` a work-queue stream's every removal is an fsync of its own, as
/// every store is: an evaluation's task and result cost four, where purged they cost two. A
/// work-queue stream made by an older version is kept as it is (NATS cannot change a stream's
/// retention to or from work queue) and works as before, its acks an fsync each.
pub async fn ensure_streams(js: &jetstream::Context, topology: &Topology, replicas: usize) -> Result<(), NatsError> {
    for (name, subjects) in [
        (topology.tasks_stream(), format!("{}.tasks.>", topology.prefix)),
        (topology.results_stream(), format!("{}.results.>", topology.prefix)),
        (topology.results_batches_stream(), format!("{}.batches.>", topology.prefix)),
    ] {
        let config = stream::Config {
            name: name.clone(),
            subjects: vec![subjects],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            num_replicas: replicas.max(1),
            // Msg-Id de-duplication window: a re-publish of the same task within it is dropped.
            duplicate_window: Duration::from_secs(10 * 60),
            ..Default::default()
        };
        let mut stream = js
            .get_or_create_stream(config.clone())
            .await
            .map_err(|source| NatsError::Stream { name: name.clone(), source })?;
        let Ok(existing) = stream.info().await.map(|info| info.config.clone()) else { continue };
        if existing.retention != config.retention {
            tracing::warn!(
                stream = %name,
                retention = ?existing.retention,
                "the stream keeps the retention it was made with (NATS cannot change it): each ack is \
                 an fsync of its own; delete the stream while no task or result waits to take limits \
                 retention and purged acks"
            );
        }
        if existing.num_replicas != config.num_replicas {
            tracing::info!(stream = %name, from = existing.num_replicas, to = config.num_replicas, "changing the stream's replicas");
            let config = stream::Config { retention: existing.retention, ..config };
            js.update_stream(config).await.map_err(|source| NatsError::Replicas { name, source })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_never_reach_an_error_message() {
        assert_eq!(redact("nats://aap:s3cret@nats:4222"), "nats://***@nats:4222");
        assert_eq!(redact("tls://t0ken@a:4222,nats://b:4222"), "tls://***@a:4222,nats://b:4222");
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(redact("localhost"), "localhost");
    }

    #[test]
    fn a_server_list_is_split_into_its_servers() {
        assert_eq!(servers("nats://a:4222"), ["nats://a:4222"]);
        assert_eq!(
            servers("nats://a:4222, nats://b:4223,,tls://c:4224"),
            ["nats://a:4222", "nats://b:4223", "tls://c:4224"]
        );
    }

    #[tokio::test]
    async fn connect_takes_a_comma_separated_server_list() -> Result<(), Box<dyn std::error::Error>> {
        let scratch = std::env::temp_dir().join(format!("aap-nats-list-{}", std::process::id()));
        let options =
            crate::local::NatsOptions { store_dir: scratch.clone(), port: None, tls: None, nkey_users: Vec::new() };
        let nats = crate::local::Nats::start(options).await?;
        // A dead node first, as when one node of a cluster is down.
        let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let list = format!("nats://127.0.0.1:{dead},{}", nats.url());
        let client = connect(&list, "list-test", &NatsAccess::default()).await?;
        client.flush().await?;
        nats.stop().await?;
        let _ = std::fs::remove_dir_all(scratch);
        Ok(())
    }

    #[test]
    fn names_carry_the_prefix() {
        let t = Topology::new("t1a2");
        assert_eq!(t.tasks_stream(), "T1A2_TASKS");
        assert_eq!(t.task_subject("chatgpt", "Plus"), "t1a2.tasks.chatgpt.plus");
        assert_eq!(t.task_subject("chatgpt", ""), "t1a2.tasks.chatgpt.any");
        assert_eq!(t.prompt_events_subject(7), "t1a2.events.prompt.7");
        assert_eq!(t.prompt_partial_subject(7), "t1a2.events.prompt.7.partial");
    }
}
