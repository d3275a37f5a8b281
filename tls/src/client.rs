//! The clients' side: whom to trust and, for mutual TLS, who the client is.

use std::path::PathBuf;

use rustls::RootCertStore;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use crate::pem::{certificates, identity_error, private_key, read, root_store};
use crate::{HANDSHAKE_TIMEOUT, TlsError, provider};

/// Whom a client trusts and, for mutual TLS, which certificate it presents. The default trusts
/// the system's certificate authorities and presents none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// CA certificates (PEM) the server's certificate must chain to; the system's when unset.
    pub ca_cert: Option<PathBuf>,
    /// The client's certificate chain (PEM), for servers that require one.
    pub client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub client_key: Option<PathBuf>,
}

/// The files of a [`ClientTls`], read and checked.
struct Loaded {
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    config: rustls::ClientConfig,
}

impl ClientTls {
    /// Whether any file is given.
    pub fn is_configured(&self) -> bool {
        self.ca_cert.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }

    /// `endpoint` as it should be dialled: with TLS when its URL is `https://`, unchanged when it
    /// is `http://` (an error when files are given, so that a configured client never silently
    /// talks in plain text).
    pub fn endpoint(&self, endpoint: Endpoint) -> Result<Endpoint, TlsError> {
        if endpoint.uri().scheme_str() != Some("https") {
            return self.plain(&endpoint.uri().to_string()).map(|()| endpoint);
        }
        let loaded = self.load()?;
        let mut config = ClientTlsConfig::new().timeout(HANDSHAKE_TIMEOUT);
        config = match &loaded.ca_pem {
            Some(pem) => config.ca_certificate(Certificate::from_pem(pem)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = &loaded.identity_pem {
            config = config.identity(Identity::from_pem(cert, key));
        }
        endpoint.tls_config(config).map_err(TlsError::Grpc)
    }

    /// The rustls configuration of an HTTP or NATS client (no ALPN).
    pub fn rustls_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        self.load().map(|loaded| loaded.config)
    }

    /// The rustls configuration for `url` when it is `https://`; `None` for `http://` (an error
    /// when files are given).
    pub fn for_url(&self, url: &str) -> Result<Option<rustls::ClientConfig>, TlsError> {
        let https = url.get(..8).is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"));
        if https { self.rustls_config().map(Some) } else { self.plain(url).map(|()| None) }
    }

    fn plain(&self, url: &str) -> Result<(), TlsError> {
        if self.is_configured() { Err(TlsError::PlainUrl { url: url.to_owned() }) } else { Ok(()) }
    }

    fn load(&self) -> Result<Loaded, TlsError> {
        let (roots, ca_pem) = match &self.ca_cert {
            Some(path) => {
                let pem = read(path, "CA bundle")?;
                (root_store(&pem, path, "CA bundle")?, Some(pem))
            }
            None => (system_roots()?, None),
        };
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_root_certificates(roots);
        let (config, identity_pem) = match (&self.client_cert, &self.client_key) {
            (None, None) => (builder.with_no_client_auth(), None),
            (Some(cert_path), Some(key_path)) => {
                let cert_pem = read(cert_path, "client certificate")?;
                let chain = certificates(&cert_pem, cert_path, "client certificate")?;
                let key_pem = read(key_path, "client key")?;
                let key = private_key(&key_pem, key_path)?;
                let config = builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|error| identity_error(error, cert_path, key_path))?;
                (config, Some((cert_pem, key_pem)))
            }
            _ => return Err(TlsError::HalfIdentity),
        };
        Ok(Loaded { ca_pem, identity_pem, config })
    }
}

/// The system's certificate authorities (what tonic's native roots load too).
fn system_roots() -> Result<RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "a system CA certificate could not be loaded");
    }
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        return Err(TlsError::NoSystemRoots);
    }
    Ok(roots)
}
