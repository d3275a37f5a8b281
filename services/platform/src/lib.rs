//! What every service of the platform shares: the assistants it serves, authentication, the
//! database pool and migrations, NATS stream names, telemetry and metrics, the server's health and
//! reflection, and the local real components (PostgreSQL, NATS) for development and tests.

pub mod admin;
pub mod assistants;
pub mod auth;
pub mod corked;
pub mod db;
pub mod input;
pub mod local;
pub mod metrics;
pub mod nats;
pub mod principals;
pub mod server;
pub mod telemetry;
