//! The `aap` binary's library: the platform wired in one process ([`platform::Platform`]), the
//! local development stack (`aap dev`), the customer client (`aap ask`, `aap watch`) and the
//! operator's token administration (`aap token`), accounts from a terminal (`aap accounts`) and
//! the import of the seed's session files (`aap session import`).

pub mod accounts_cmd;
pub mod client;
pub mod config;
pub mod console;
pub mod dev;
pub mod freshness_cmd;
pub mod logins;
pub mod metrics;
pub mod platform;
pub mod services;
pub mod session_cmd;
pub mod session_import;
pub mod stdout;
pub mod tokens;
