//! SessionService: the assistant accounts bots log in with, and the leases that lend their
//! sessions in rotation.
//!
//! - [`domain`]: [`SessionDirectory`] creates and lists accounts, replaces session states, and
//!   lends and takes back sessions; it knows nothing of gRPC.
//! - [`evidence`]: [`evidence::EvidenceLocker`] keeps the evidence of failed attempts bots
//!   report (screenshot, HTML, the page's address), bounded per account and overall.
//! - [`grpc`]: [`grpc::SessionGrpc`], the thin tonic adapter.
//! - [`crypto`]: [`SessionKey`], which seals session states and proxy URLs at rest
//!   (AES-256-GCM).
//! - [`identity`]: proxy URLs and user agents, what keeps an account looking like one person.
//! - `store`: every SQL statement, over the tables of
//!   `services/platform/migrations/0002_sessions.sql` and `0004_session_identity.sql` (run by
//!   `aap_platform::db`).
//!
//! ```no_run
//! # async fn serve(pool: sqlx::PgPool) {
//! use aap_proto::v1::session_service_server::SessionServiceServer;
//! let service = SessionServiceServer::new(aap_sessions::grpc::SessionGrpc::new(pool, aap_sessions::SessionsConfig::default()));
//! # let _ = service;
//! # }
//! ```
//!
//! A server must pass its own [`SessionKey`] in [`SessionsConfig::key`] (the default is a random
//! key that dies with the process) and call [`SessionDirectory::seal_plaintext_rows`] once as it
//! starts, to encrypt rows written before encryption at rest.

pub mod changes;
pub mod crypto;
pub mod domain;
pub mod evidence;
pub mod grpc;
pub mod identity;
pub mod metrics;
mod store;
mod watch;

pub use crypto::{KeyError, OpenError, SessionKey};
pub use domain::{
    Account, AccountFilter, AccountStatus, AccountUpdate, Lease, LeaseOutcome, LeaseRecord, LeaseTarget, NewAccount,
    SessionDirectory, SessionError, SessionResult, SessionsConfig, check_new_account,
};
pub use evidence::{EvidenceLimits, EvidenceLocker};
