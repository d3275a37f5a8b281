//! The `aap` binary's library: the platform wired in one process ([`platform::Platform`]), the
//! local development stack (`aap dev`), and the customer client (`aap ask`, `aap watch`).

pub mod client;
pub mod config;
pub mod dev;
pub mod platform;
