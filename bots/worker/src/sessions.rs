//! Where logged-in sessions come from: leases from the platform's `SessionService`, or the
//! seed's directory of Playwright storage-state files rotated round-robin.
//!
//! A session brings its face with it: a proxy and a user agent that stay with it (see
//! [`crate::browser::BrowserOptions::for_lease`]). In a sessions directory they sit next to the
//! storage state, so that re-saving the state (Playwright rewrites the whole JSON) keeps them:
//! `alice.json` with `alice.proxy` (one proxy URL, e.g. `socks5://10.0.0.7:1080`) and
//! `alice.user-agent` (one user agent line), both optional.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aap_proto::v1::session_service_client::SessionServiceClient;
use aap_proto::v1::{LeaseOutcome, LeaseSessionRequest, ReturnSessionRequest};
use tonic::Code;

use crate::grpc::AuthChannel;

/// How long a file-based session rests after a rate limit.
const DIR_COOLDOWN: Duration = Duration::from_secs(15 * 60);
/// How long a file-based session rests after a bot challenge: longer than a rate limit, since a
/// challenged fingerprint or proxy stays suspect for a while.
const DIR_CHALLENGE_COOLDOWN: Duration = Duration::from_secs(60 * 60);

/// A session lent to the bot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// Lease id (SessionService) or file path (directory).
    pub id: String,
    /// The account id (SessionService) or the file name (directory): a name for logs, and the
    /// seed a user agent is derived from when the session names none.
    pub label: String,
    /// Playwright storage state JSON.
    pub storage_state_json: String,
    /// Proxy URL the session's browser goes through; `None`: direct.
    pub proxy: Option<String>,
    /// The session's user agent; empty: derive one from `label`.
    pub user_agent: String,
    /// Evaluations to run on it before handing it back (rotation).
    pub max_runs: u32,
    /// When the lease lapses on the platform's side, if it does.
    pub expires_at: Option<SystemTime>,
}

impl Lease {
    /// Whether the lease has lapsed (or will within `margin`).
    pub fn lapsed(&self, margin: Duration) -> bool {
        self.expires_at.is_some_and(|at| SystemTime::now() + margin >= at)
    }
}

/// How the session fared while the bot held it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Worked; back into rotation.
    Ok,
    /// Showed a login wall: retire it until an operator refreshes it.
    Expired,
    /// Rate limited: let it cool down, until `lifts_at` when the site said when its limit lifts
    /// ([`crate::limit_reset`]), else for the platform's (or the directory's) cool-down.
    RateLimited {
        /// When the site said the limit lifts.
        lifts_at: Option<SystemTime>,
    },
    /// The site showed a bot challenge (Cloudflare or similar): the session and its proxy are
    /// marked and it rests for the challenge cooldown, longer than a rate limit's.
    Challenged,
}

/// Why no session could be had.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No session is free right now (none exist, all leased, cooling or expired).
    #[error("no session available: {0}")]
    NoneAvailable(String),
    /// Every account is busy (leased, cooling, at its hourly budget) and the platform says when
    /// the first frees up: the wait.
    #[error("no session available for {}s: {reason}", .free_in.as_secs())]
    FreeIn {
        /// What the platform said.
        reason: String,
        /// How long until the first account frees up.
        free_in: Duration,
    },
    /// The sessions directory could not be read.
    #[error("cannot read sessions from {path}: {source}")]
    Io {
        /// File or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The SessionService call failed.
    #[error("session service: {0}")]
    Grpc(#[from] tonic::Status),
}

/// The source of sessions.
pub enum Sessions {
    /// Leases from `SessionService`.
    Service(Box<ServiceSessions>),
    /// Files in a directory.
    Dir(DirSessions),
    /// None: the synthetic engine answers without a session.
    None,
}

impl Sessions {
    /// Sessions leased from the platform for `assistant` and `plan`.
    pub fn service(channel: AuthChannel, assistant: &str, plan: &str, bot_id: &str, timeout: Duration) -> Sessions {
        Sessions::Service(Box::new(ServiceSessions {
            client: SessionServiceClient::new(channel),
            assistant: assistant.to_owned(),
            plan: plan.to_owned(),
            bot_id: bot_id.to_owned(),
            timeout,
        }))
    }

    /// Sessions from the `*.json` files in `dir`, each used for `per_session_runs` evaluations
    /// before the next one takes over.
    pub fn dir(dir: impl Into<PathBuf>, per_session_runs: u32) -> Sessions {
        Sessions::Dir(DirSessions {
            dir: dir.into(),
            per_session_runs: per_session_runs.max(1),
            pool: Arc::new(Mutex::new(DirPool::default())),
        })
    }

    /// Another handle on the same sessions, for another worker of this process. Directory
    /// sessions share one pool (a file in use by one browser is never handed to another, and
    /// cool-downs and expiries are seen by all); service sessions are leased per bot id.
    pub fn share(&self, bot_id: &str) -> Sessions {
        match self {
            Sessions::Service(service) => Sessions::Service(Box::new(ServiceSessions {
                client: service.client.clone(),
                assistant: service.assistant.clone(),
                plan: service.plan.clone(),
                bot_id: bot_id.to_owned(),
                timeout: service.timeout,
            })),
            Sessions::Dir(dir) => Sessions::Dir(dir.clone()),
            Sessions::None => Sessions::None,
        }
    }

    /// Whether leases come from the platform's SessionService (their ids are the platform's).
    pub fn is_service(&self) -> bool {
        matches!(self, Sessions::Service(_))
    }

    /// Borrows the next session in rotation.
    pub async fn lease(&mut self) -> Result<Lease, SessionError> {
        match self {
            Sessions::Service(service) => service.lease().await,
            Sessions::Dir(dir) => dir.lease(),
            Sessions::None => Err(SessionError::NoneAvailable("this bot has no session source".to_owned())),
        }
    }

    /// Hands a session back with how it fared and how many evaluations ran on it.
    pub async fn give_back(&mut self, lease: &Lease, outcome: Outcome, runs: u32, detail: &str) {
        match self {
            Sessions::Service(service) => service.give_back(lease, outcome, runs, detail).await,
            Sessions::Dir(dir) => dir.give_back(lease, outcome),
            Sessions::None => {}
        }
    }
}

/// Leases from `SessionService`.
pub struct ServiceSessions {
    client: SessionServiceClient<AuthChannel>,
    assistant: String,
    plan: String,
    bot_id: String,
    timeout: Duration,
}

impl ServiceSessions {
    async fn lease(&mut self) -> Result<Lease, SessionError> {
        let mut request = tonic::Request::new(LeaseSessionRequest {
            assistant: self.assistant.clone(),
            plan: self.plan.clone(),
            bot_id: self.bot_id.clone(),
        });
        request.set_timeout(self.timeout);
        let response = match self.client.lease_session(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::ResourceExhausted => {
                use tonic_types::StatusExt as _;
                let reason = status.message().to_owned();
                let free_in = status.get_details_retry_info().and_then(|info| info.retry_delay);
                return Err(match free_in {
                    Some(free_in) => SessionError::FreeIn { reason, free_in },
                    None => SessionError::NoneAvailable(reason),
                });
            }
            Err(status) if matches!(status.code(), Code::NotFound | Code::FailedPrecondition | Code::Unavailable) => {
                return Err(SessionError::NoneAvailable(status.message().to_owned()));
            }
            Err(status) => return Err(status.into()),
        };
        let expires_at = response.expires_at.and_then(|at| {
            let secs = u64::try_from(at.seconds).ok()?;
            Some(SystemTime::UNIX_EPOCH + Duration::new(secs, u32::try_from(at.nanos).unwrap_or(0)))
        });
        Ok(Lease {
            id: response.lease_id,
            label: response.account_id,
            storage_state_json: response.storage_state_json,
            proxy: Some(response.proxy).filter(|proxy| !proxy.is_empty()),
            user_agent: response.user_agent,
            max_runs: response.max_runs.max(1),
            expires_at,
        })
    }

    async fn give_back(&mut self, lease: &Lease, outcome: Outcome, runs: u32, detail: &str) {
        let (outcome, lifts_at) = match outcome {
            Outcome::Ok => (LeaseOutcome::Ok, None),
            Outcome::Expired => (LeaseOutcome::Expired, None),
            Outcome::RateLimited { lifts_at } => (LeaseOutcome::RateLimited, lifts_at),
            Outcome::Challenged => (LeaseOutcome::Challenged, None),
        };
        let mut request = tonic::Request::new(ReturnSessionRequest {
            lease_id: lease.id.clone(),
            outcome: outcome as i32,
            runs,
            detail: crate::source::limits::fit_detail(detail),
            limit_lifts_at: lifts_at.map(prost_types::Timestamp::from),
        });
        request.set_timeout(self.timeout);
        // A lost return is not fatal: the lease lapses on its own and the account goes back.
        if let Err(status) = self.client.return_session(request).await {
            tracing::warn!(lease = lease.id, error = %status, "returning the session failed");
        }
    }
}

/// Files in a directory, rotated round-robin; clones share one pool.
#[derive(Clone)]
pub struct DirSessions {
    dir: PathBuf,
    per_session_runs: u32,
    pool: Arc<Mutex<DirPool>>,
}

/// What the workers of one process know about the files.
#[derive(Default)]
struct DirPool {
    last: Option<PathBuf>,
    cooling: HashMap<PathBuf, Instant>,
    // The file's modification time when it showed a login wall: a rewritten file is retried.
    expired: HashMap<PathBuf, Option<SystemTime>>,
    // Files leased to a browser of this process right now.
    in_use: HashSet<PathBuf>,
}

impl DirPool {
    fn usable(&self, path: &Path) -> bool {
        if self.in_use.contains(path) || self.cooling.get(path).is_some_and(|until| Instant::now() < *until) {
            return false;
        }
        match self.expired.get(path) {
            Some(mtime) => modified(path) != *mtime,
            None => true,
        }
    }
}

impl DirSessions {
    /// The pool; a poisoned lock only means another worker panicked mid-update.
    fn pool(&self) -> std::sync::MutexGuard<'_, DirPool> {
        self.pool.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn files(&self) -> Result<Vec<PathBuf>, SessionError> {
        let io = |source| SessionError::Io { path: self.dir.clone(), source };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(io)?
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json") && path.is_file())
            .collect();
        files.sort();
        Ok(files)
    }

    fn lease(&mut self) -> Result<Lease, SessionError> {
        let files = self.files()?;
        if files.is_empty() {
            return Err(SessionError::NoneAvailable(format!("no *.json files in {}", self.dir.display())));
        }
        let path = {
            let mut pool = self.pool();
            // The first usable file after the last one used, wrapping around.
            let start = pool.last.as_ref().map_or(0, |last| files.partition_point(|path| path <= last));
            let pick =
                (0..files.len()).map(|offset| &files[(start + offset) % files.len()]).find(|p| pool.usable(p)).cloned();
            let Some(path) = pick else {
                return Err(SessionError::NoneAvailable(format!(
                    "every session in {} is in use, expired or cooling down",
                    self.dir.display()
                )));
            };
            pool.in_use.insert(path.clone());
            pool.expired.remove(&path);
            pool.last = Some(path.clone());
            path
        };
        let read = || -> Result<(String, Option<String>, String), SessionError> {
            let storage_state_json =
                std::fs::read_to_string(&path).map_err(|source| SessionError::Io { path: path.clone(), source })?;
            let proxy = sidecar(&path, "proxy")?;
            let user_agent = sidecar(&path, "user-agent")?.unwrap_or_default();
            Ok((storage_state_json, proxy, user_agent))
        };
        let (storage_state_json, proxy, user_agent) = match read() {
            Ok(read) => read,
            Err(error) => {
                self.pool().in_use.remove(&path);
                return Err(error);
            }
        };
        Ok(Lease {
            id: path.display().to_string(),
            label: path.file_name().map_or_else(String::new, |name| name.to_string_lossy().into_owned()),
            storage_state_json,
            proxy,
            user_agent,
            max_runs: self.per_session_runs,
            expires_at: None,
        })
    }

    fn give_back(&mut self, lease: &Lease, outcome: Outcome) {
        let path = PathBuf::from(&lease.id);
        let mut pool = self.pool();
        pool.in_use.remove(&path);
        match outcome {
            Outcome::Ok => {}
            Outcome::Expired => {
                tracing::warn!(session = lease.label, "session file shows a login wall; skipped until rewritten");
                let mtime = modified(&path);
                pool.expired.insert(path, mtime);
            }
            Outcome::RateLimited { lifts_at } => {
                let cooldown = dir_limit_rest(lifts_at, SystemTime::now());
                tracing::warn!(session = lease.label, ?cooldown, "session file rate limited");
                pool.cooling.insert(path, Instant::now() + cooldown);
            }
            Outcome::Challenged => {
                tracing::warn!(session = lease.label, cooldown = ?DIR_CHALLENGE_COOLDOWN, "session file challenged");
                pool.cooling.insert(path, Instant::now() + DIR_CHALLENGE_COOLDOWN);
            }
        }
    }
}

/// How long a rate-limited session file rests, seen at `now`: until the time the site said its
/// limit lifts when that is a minute to [`crate::limit_reset::MAX_AHEAD`] ahead (as the platform
/// takes it), else [`DIR_COOLDOWN`].
fn dir_limit_rest(lifts_at: Option<SystemTime>, now: SystemTime) -> Duration {
    lifts_at
        .and_then(|at| at.duration_since(now).ok())
        .filter(|ahead| (aap_proto::limits::MIN_LIMIT_REST..=crate::limit_reset::MAX_AHEAD).contains(ahead))
        .unwrap_or(DIR_COOLDOWN)
}

/// The first non-empty line of `<stem>.<extension>` next to a session file, if there is one.
fn sidecar(session: &Path, extension: &str) -> Result<Option<String>, SessionError> {
    let path = session.with_extension(extension);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.lines().map(str::trim).find(|line| !line.is_empty()).map(str::to_owned)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SessionError::Io { path, source }),
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|meta| meta.modified()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn directory_sessions_rotate_and_skip_expired_and_cooling_files() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        for name in ["b.json", "a.json", "c.json", "notes.txt"] {
            std::fs::write(dir.path().join(name), format!("{{\"name\": \"{name}\"}}"))?;
        }
        let mut sessions = Sessions::dir(dir.path(), 3);
        let mut order = Vec::new();
        for _ in 0..4 {
            let lease = sessions.lease().await?;
            assert_eq!(lease.max_runs, 3);
            order.push(lease.label.clone());
            sessions.give_back(&lease, Outcome::Ok, 3, "").await;
        }
        assert_eq!(order, ["a.json", "b.json", "c.json", "a.json"]);

        let b = sessions.lease().await?;
        sessions.give_back(&b, Outcome::Expired, 0, "login wall").await;
        let c = sessions.lease().await?;
        sessions.give_back(&c, Outcome::RateLimited { lifts_at: None }, 1, "limit").await;
        let a = sessions.lease().await?;
        assert_eq!(a.label, "a.json", "b expired and c cooling");
        // Another worker of the process shares the pool: a is in use, so nothing is free.
        let mut other = sessions.share("worker-2");
        assert!(matches!(other.lease().await, Err(SessionError::NoneAvailable(_))), "a in use, b expired, c cooling");
        sessions.give_back(&a, Outcome::Ok, 1, "").await;
        assert_eq!(other.lease().await?.label, "a.json", "free again once given back");

        // An operator rewrites b with a fresh login: it is used again.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.path().join("b.json"), "{\"fresh\": true}")?;
        let filetime = SystemTime::now() + Duration::from_secs(5);
        std::fs::File::options().write(true).open(dir.path().join("b.json"))?.set_modified(filetime)?;
        assert_eq!(sessions.lease().await?.label, "b.json");

        let empty = tempfile::tempdir()?;
        assert!(matches!(Sessions::dir(empty.path(), 1).lease().await, Err(SessionError::NoneAvailable(_))));
        Ok(())
    }

    #[tokio::test]
    async fn a_challenged_session_file_rests_like_a_rate_limited_one() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        for name in ["a.json", "b.json"] {
            std::fs::write(dir.path().join(name), "{\"cookies\": []}")?;
        }
        let mut sessions = Sessions::dir(dir.path(), 1);
        let a = sessions.lease().await?;
        sessions.give_back(&a, Outcome::Challenged, 1, "cloudflare").await;
        for _ in 0..3 {
            let next = sessions.lease().await?;
            assert_eq!(next.label, "b.json", "a is cooling after its challenge");
            sessions.give_back(&next, Outcome::Ok, 1, "").await;
        }
        assert!(DIR_CHALLENGE_COOLDOWN > DIR_COOLDOWN);
        Ok(())
    }

    #[test]
    fn a_rate_limited_session_file_rests_until_the_time_the_site_named() {
        let now = SystemTime::now();
        let hours = |h: u64| Some(now + Duration::from_secs(h * 3600));
        assert_eq!(dir_limit_rest(hours(5), now), Duration::from_secs(5 * 3600));
        assert_eq!(dir_limit_rest(hours(7 * 24), now), Duration::from_secs(7 * 24 * 3600));
        // No time, one past or under a minute ahead, or past 8 days: the directory's own.
        for other in [None, Some(now - Duration::from_secs(60)), Some(now + Duration::from_secs(30)), hours(9 * 24)] {
            assert_eq!(dir_limit_rest(other, now), DIR_COOLDOWN, "{other:?}");
        }
    }

    #[tokio::test]
    async fn a_session_file_brings_its_proxy_and_user_agent_from_files_beside_it()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("alice.json"), "{\"cookies\": []}")?;
        std::fs::write(dir.path().join("alice.proxy"), "\n  socks5://10.0.0.7:1080  \n")?;
        std::fs::write(dir.path().join("alice.user-agent"), "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0\n")?;
        std::fs::write(dir.path().join("bob.json"), "{\"cookies\": []}")?;
        let mut sessions = Sessions::dir(dir.path(), 1);
        let alice = sessions.lease().await?;
        assert_eq!(alice.proxy.as_deref(), Some("socks5://10.0.0.7:1080"));
        assert_eq!(alice.user_agent, "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0.0.0");
        let bob = sessions.lease().await?;
        assert_eq!((bob.label.as_str(), bob.proxy.as_deref(), bob.user_agent.as_str()), ("bob.json", None, ""));
        Ok(())
    }
}
