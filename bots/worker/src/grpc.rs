//! The gRPC channel to the platform, with the bot's bearer token on every call.

use std::time::Duration;

use aap_proto::token::{TokenProblem, bearer_header};
use secrecy::{ExposeSecret, SecretString};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// A channel whose calls carry `authorization: Bearer <token>`.
pub type AuthChannel = InterceptedService<Channel, BearerAuth>;

/// Adds the bearer token to every request.
#[derive(Clone)]
pub struct BearerAuth {
    header: Option<MetadataValue<Ascii>>,
}

impl Interceptor for BearerAuth {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(header) = &self.header {
            request.metadata_mut().insert("authorization", header.clone());
        }
        Ok(request)
    }
}

/// Why the channel could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The URL is not a valid gRPC endpoint.
    #[error("invalid grpc url {url:?}: {source}")]
    Url {
        /// The URL given.
        url: String,
        /// Why it was refused.
        source: tonic::transport::Error,
    },
    /// The token cannot be sent in a header (never says the token itself).
    #[error("the bot token {0}")]
    Token(TokenProblem),
    /// The TLS files cannot be used, or are given for an `http://` URL.
    #[error("tls: {0}")]
    Tls(#[from] aap_tls::TlsError),
}

/// A lazily connected channel to `url`: nothing is dialled until the first call, and a lost
/// connection is re-dialled by the next one. TLS when `url` is `https://`, as `tls` says.
pub fn channel(
    url: &str,
    token: Option<&SecretString>,
    timeout: Duration,
    tls: &aap_tls::ClientTls,
) -> Result<AuthChannel, ChannelError> {
    let endpoint =
        Endpoint::from_shared(url.to_owned()).map_err(|source| ChannelError::Url { url: url.to_owned(), source })?;
    let endpoint = tls
        .endpoint(endpoint)?
        .connect_timeout(timeout)
        .tcp_keepalive(Some(Duration::from_secs(30)))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true);
    let header = token.map(|token| bearer_header(token.expose_secret())).transpose().map_err(ChannelError::Token)?;
    Ok(InterceptedService::new(endpoint.connect_lazy(), BearerAuth { header }))
}
