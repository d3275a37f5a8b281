//! Encryption in transit: PEM files in, rustls configurations out, for the platform's servers
//! and for every client that talks to them.
//!
//! - Servers: [`ServerTls`] names a certificate chain, its key and, for mutual TLS, the CA that
//!   client certificates must chain to. [`ServerTls::load`] reads and checks them once and gives
//!   the gRPC server's config ([`LoadedServerTls::grpc`]) and a TLS listener for axum
//!   ([`LoadedServerTls::listener`]).
//! - Clients: [`ClientTls`] names a CA bundle and, for mutual TLS, a client certificate and key.
//!   It makes a tonic endpoint speak TLS when its URL is `https://` ([`ClientTls::endpoint`]) and
//!   gives a rustls config for HTTP and NATS clients ([`ClientTls::rustls_config`]). Without a
//!   CA bundle the system's certificate authorities are trusted.
//!
//! Every problem with the files (missing, not PEM, no certificate in it, a key that does not
//! belong to the certificate) is a [`TlsError`] naming the file, found when the configuration is
//! loaded rather than at the first connection. The crypto provider is ring throughout.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let server = aap_tls::ServerTls {
//!     cert: "server.crt".into(),
//!     key: "server.key".into(),
//!     client_ca: Some("ca.crt".into()),
//! }
//! .load()?;
//! let grpc = tonic::transport::Server::builder().tls_config(server.grpc())?;
//! let http = server.listener(tokio::net::TcpListener::bind("127.0.0.1:0").await?);
//! # let _ = (grpc, http);
//!
//! let client = aap_tls::ClientTls {
//!     ca_cert: Some("ca.crt".into()),
//!     client_cert: Some("bot.crt".into()),
//!     client_key: Some("bot.key".into()),
//! };
//! let endpoint = client.endpoint(tonic::transport::Endpoint::from_static("https://platform:50051"))?;
//! # let _ = endpoint;
//! # Ok(())
//! # }
//! ```

mod client;
mod pem;
mod server;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use client::ClientTls;
pub use server::{LoadedServerTls, PeerAddr, ServerTls, TlsListener};

/// How long a TLS handshake may take before the connection is dropped (servers and clients).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a TLS configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read the {what} {path}: {source}")]
    Read {
        /// What the file should hold, e.g. "certificate".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("the {what} {path} is not valid PEM: {source}")]
    Pem {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A file meant to hold certificates holds none.
    #[error("no certificate in the {what} {path}: expected PEM blocks `-----BEGIN CERTIFICATE-----`")]
    NoCertificate {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
    },
    /// A CA bundle holds a certificate that cannot be a trust anchor.
    #[error("the {what} {path} holds a certificate that cannot be trusted as a CA: {source}")]
    BadCa {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why rustls refused it.
        #[source]
        source: rustls::Error,
    },
    /// A key file holds no private key.
    #[error(
        "no private key in {path}: expected a PEM block `-----BEGIN PRIVATE KEY-----` (PKCS#8), \
         `-----BEGIN RSA PRIVATE KEY-----` or `-----BEGIN EC PRIVATE KEY-----`"
    )]
    NoKey {
        /// The file.
        path: PathBuf,
    },
    /// The private key is not the certificate's.
    #[error("the private key {key} does not belong to the certificate {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate and key cannot be used together for another reason (e.g. a key type
    /// rustls does not support).
    #[error("cannot use the certificate {cert} with the key {key}: {source}")]
    Identity {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// Why rustls refused them.
        #[source]
        source: rustls::Error,
    },
    /// The client CA bundle cannot check client certificates.
    #[error("cannot check client certificates against {path}: {source}")]
    ClientCa {
        /// The CA bundle.
        path: PathBuf,
        /// Why rustls refused it.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// Only one half of a client identity was given.
    #[error("a client certificate needs its private key and a key its certificate: give both or neither")]
    HalfIdentity,
    /// No CA bundle was given and the system has none.
    #[error(
        "no CA bundle given and the system has no certificate authorities: give the CA that signed the server's certificate"
    )]
    NoSystemRoots,
    /// TLS files were given for a plain-text URL.
    #[error("TLS files are given but {url} is plain text: use https://")]
    PlainUrl {
        /// The URL.
        url: String,
    },
    /// rustls refused the configuration.
    #[error("cannot build the TLS configuration: {0}")]
    Config(#[source] rustls::Error),
    /// tonic refused the configuration (after this crate's own checks passed).
    #[error("cannot configure TLS for gRPC: {0}")]
    Grpc(#[source] tonic::transport::Error),
}

/// The crypto provider of every configuration made here.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
