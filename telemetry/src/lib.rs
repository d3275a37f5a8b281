//! What the platform and the bots share to be observed, in a crate small enough for both (the
//! bots do not link the platform):
//!
//! - [`memory`]: the process's resident set, live allocations (an allocator wrapper that counts
//!   them), threads and descriptors, as gauges;
//! - [`metrics`]: the process's Prometheus registry (every name prefixed `aap_`), typed metric
//!   families to register in it, and `GET /metrics` on its own listener;
//! - [`exposition`]: a reader of the text format, for tests and tools that check a scrape;
//! - [`http`]: the accept loop of every HTTP/1 server (metrics, the seed's HTTP API, the
//!   console), with bounds on a slow client;
//! - [`traces`]: OTLP/gRPC trace export and W3C trace-context parents for spans;
//! - [`report`]: the one line a process prints when it stops on an error.

pub mod exposition;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod report;
pub mod traces;
