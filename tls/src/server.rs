//! The servers' side: a certificate, its key and, for mutual TLS, the CA of the clients.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::pem::{certificates, identity_error, private_key, read, root_store};
use crate::{HANDSHAKE_TIMEOUT, TlsError, provider};

/// Where a server's certificate and key are, and the CA its clients' certificates must chain to
/// when every client must present one (mutual TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The certificate chain (PEM), the server's own certificate first, then intermediates.
    pub cert: PathBuf,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates (PEM). When set, a client without a certificate that chains to one of
    /// them is refused during the handshake.
    pub client_ca: Option<PathBuf>,
}

impl ServerTls {
    /// Reads and checks the files: certificates parse, the key belongs to the certificate, the
    /// client CA can check certificates.
    pub fn load(&self) -> Result<LoadedServerTls, TlsError> {
        // tonic's server builds its rustls config from the process-wide provider; a process
        // whose dependencies enable a second provider would otherwise panic there. An error only
        // says one is installed already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert_pem = read(&self.cert, "certificate")?;
        let chain = certificates(&cert_pem, &self.cert, "certificate")?;
        let key_pem = read(&self.key, "private key")?;
        let key = private_key(&key_pem, &self.key)?;

        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?;
        let (builder, client_ca_pem) = match &self.client_ca {
            None => (builder.with_no_client_auth(), None),
            Some(path) => {
                let pem = read(path, "client CA bundle")?;
                let roots = root_store(&pem, path, "client CA bundle")?;
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                    .build()
                    .map_err(|source| TlsError::ClientCa { path: path.clone(), source })?;
                (builder.with_client_cert_verifier(verifier), Some(pem))
            }
        };
        let mut http =
            builder.with_single_cert(chain, key).map_err(|error| identity_error(error, &self.cert, &self.key))?;
        // The seed's HTTP API is served over HTTP/1.1 only.
        http.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(LoadedServerTls { cert_pem, key_pem, client_ca_pem, http: TlsAcceptor::from(Arc::new(http)) })
    }
}

/// A checked server configuration, ready for the gRPC server and the HTTP listener.
#[derive(Clone)]
pub struct LoadedServerTls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    client_ca_pem: Option<Vec<u8>>,
    http: TlsAcceptor,
}

impl std::fmt::Debug for LoadedServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedServerTls").field("mutual", &self.mutual()).finish_non_exhaustive()
    }
}

impl LoadedServerTls {
    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.client_ca_pem.is_some()
    }

    /// The configuration for `tonic::transport::Server::tls_config` (HTTP/2 by ALPN).
    pub fn grpc(&self) -> tonic::transport::ServerTlsConfig {
        let config = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(&self.cert_pem, &self.key_pem))
            .timeout(HANDSHAKE_TIMEOUT);
        match &self.client_ca_pem {
            Some(pem) => config.client_ca_root(tonic::transport::Certificate::from_pem(pem)),
            None => config,
        }
    }

    /// A listener for `axum::serve` whose connections are TLS (HTTP/1.1).
    pub fn listener(&self, tcp: TcpListener) -> TlsListener {
        TlsListener { tcp, acceptor: self.http.clone(), handshakes: JoinSet::new() }
    }
}

/// A TCP listener whose connections are TLS, for `axum::serve`. Handshakes run concurrently,
/// each bounded by [`HANDSHAKE_TIMEOUT`], so a slow or silent client holds up no one; a failed
/// handshake (a plain-text client, no or an unknown client certificate) is logged at debug level
/// and the connection dropped.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener").field("tcp", &self.tcp).finish_non_exhaustive()
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                // axum's own accept loop: it retries what a TCP accept can fail with.
                (tcp, peer) = axum::serve::Listener::accept(&mut self.tcp) => {
                    // Small replies go out at once, not after the peer's delayed ACK.
                    let _ = tcp.set_nodelay(true);
                    let acceptor = self.acceptor.clone();
                    self.handshakes.spawn(handshake(acceptor, tcp, peer));
                }
                Some(joined) = self.handshakes.join_next() => {
                    if let Ok(Some(accepted)) = joined {
                        return accepted;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn handshake(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => Some((tls, peer)),
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "tls handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "tls handshake timed out");
            None
        }
    }
}

/// The peer address of a connection a [`TlsListener`] accepted, for
/// `into_make_service_with_connect_info::<PeerAddr>()` (axum's `SocketAddr` connect info is
/// only for plain TCP listeners).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, TlsListener>> for PeerAddr {
    fn connect_info(stream: axum::serve::IncomingStream<'_, TlsListener>) -> PeerAddr {
        PeerAddr(*stream.remote_addr())
    }
}
