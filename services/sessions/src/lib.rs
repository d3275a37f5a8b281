//! SessionService: the assistant accounts bots log in with, and the leases that lend their
//! sessions in rotation.
//!
//! - [`domain`]: [`SessionDirectory`] creates and lists accounts, replaces session states, and
//!   lends and takes back sessions; it knows nothing of gRPC.
//! - [`grpc`]: [`grpc::SessionGrpc`], the thin tonic adapter.
//! - `store`: every SQL statement, over the tables of
//!   `services/platform/migrations/0002_sessions.sql` (run by `aap_platform::db`).
//!
//! ```no_run
//! # async fn serve(pool: sqlx::PgPool) {
//! use aap_proto::v1::session_service_server::SessionServiceServer;
//! let service = SessionServiceServer::new(aap_sessions::grpc::SessionGrpc::new(pool, aap_sessions::SessionsConfig::default()));
//! # let _ = service;
//! # }
//! ```
//!
//! Session states are stored unencrypted for now: encryption at rest is out of scope so far.

pub mod domain;
pub mod grpc;
mod store;

pub use domain::{
    Account, AccountStatus, Lease, LeaseOutcome, LeaseTarget, NewAccount, SessionDirectory, SessionError,
    SessionResult, SessionsConfig,
};
