//! Bearer-token authentication with three roles, enforced for every gRPC call by one layer.
//!
//! Which role a method needs is decided here, in one table ([`required_role`]), not in the
//! services: customers call AnswersService, bots call EvaluationService and lease sessions,
//! operators administer SessionService. Health and reflection need no token.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};
use tonic::Status;

/// Who a token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Asks prompts (AnswersService).
    Customer,
    /// Takes and answers evaluations, leases sessions (EvaluationService, SessionService leases).
    Bot,
    /// Administers accounts and sessions (SessionService).
    Operator,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Customer => "customer",
            Role::Bot => "bot",
            Role::Operator => "operator",
        })
    }
}

/// The caller a request was authenticated as; put in the request's extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `authorization: Bearer <token>`")]
    Missing,
    #[error("unknown bearer token")]
    Unknown,
    #[error("a {have} token cannot call this method; it needs a {need} token")]
    WrongRole { have: Role, need: Role },
}

impl From<AuthError> for Status {
    fn from(err: AuthError) -> Status {
        match err {
            AuthError::Missing | AuthError::Unknown => Status::unauthenticated(err.to_string()),
            AuthError::WrongRole { .. } => Status::permission_denied(err.to_string()),
        }
    }
}

/// The tokens the platform accepts, each with its role.
#[derive(Clone, Default)]
pub struct Tokens {
    by_token: Arc<HashMap<String, Role>>,
}

impl fmt::Debug for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tokens({} configured)", self.by_token.len())
    }
}

impl Tokens {
    /// Builds the table from the configured secrets of each role; blank tokens are ignored.
    pub fn new<'a>(roles: impl IntoIterator<Item = (Role, &'a [SecretString])>) -> Tokens {
        let mut by_token = HashMap::new();
        for (role, secrets) in roles {
            for secret in secrets {
                let token = secret.expose_secret().trim();
                if !token.is_empty() {
                    by_token.insert(token.to_owned(), role);
                }
            }
        }
        Tokens { by_token: Arc::new(by_token) }
    }

    /// The role of the bearer token in `headers`.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Role, AuthError> {
        let value = headers.get(AUTHORIZATION).ok_or(AuthError::Missing)?;
        let value = value.to_str().map_err(|_| AuthError::Unknown)?;
        let token =
            value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")).ok_or(AuthError::Missing)?.trim();
        self.by_token.get(token).copied().ok_or(AuthError::Unknown)
    }

    /// Authenticates and checks the role against `need`.
    pub fn authorize(&self, headers: &HeaderMap, need: Role) -> Result<Role, AuthError> {
        let have = self.authenticate(headers)?;
        if have == need { Ok(have) } else { Err(AuthError::WrongRole { have, need }) }
    }
}

/// The role a gRPC method needs, by its path (`/package.Service/Method`); `None` for public
/// methods (health, reflection) and for paths no service serves (they answer UNIMPLEMENTED).
pub fn required_role(path: &str) -> Option<Role> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    match (service, method) {
        ("aap.v1.AnswersService", _) => Some(Role::Customer),
        ("aap.v1.EvaluationService", _) => Some(Role::Bot),
        ("aap.v1.SessionService", "LeaseSession" | "ReturnSession") => Some(Role::Bot),
        ("aap.v1.SessionService", _) => Some(Role::Operator),
        _ => None,
    }
}

/// Tower layer that authenticates every gRPC request by [`required_role`].
#[derive(Debug, Clone)]
pub struct AuthLayer {
    tokens: Tokens,
}

impl AuthLayer {
    pub fn new(tokens: Tokens) -> AuthLayer {
        AuthLayer { tokens }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, tokens: self.tokens.clone() }
    }
}

/// The service [`AuthLayer`] wraps around the gRPC router.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    tokens: Tokens,
}

impl<S, B> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let Some(need) = required_role(req.uri().path()) else {
            return Box::pin(self.inner.call(req));
        };
        match self.tokens.authorize(req.headers(), need) {
            Ok(role) => {
                req.extensions_mut().insert(Caller { role });
                Box::pin(self.inner.call(req))
            }
            Err(err) => {
                tracing::info!(path = req.uri().path(), error = %err, "request refused");
                let status = Status::from(err);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        let customer = [SecretString::from("c-token")];
        let bot = [SecretString::from("b-token")];
        let operator = [SecretString::from("o-token")];
        Tokens::new([(Role::Customer, &customer[..]), (Role::Bot, &bot[..]), (Role::Operator, &operator[..])])
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value.parse().expect("header value"));
        headers
    }

    #[test]
    fn methods_need_the_role_of_their_service() {
        assert_eq!(required_role("/aap.v1.AnswersService/Ask"), Some(Role::Customer));
        assert_eq!(required_role("/aap.v1.EvaluationService/Claim"), Some(Role::Bot));
        assert_eq!(required_role("/aap.v1.SessionService/LeaseSession"), Some(Role::Bot));
        assert_eq!(required_role("/aap.v1.SessionService/CreateAccount"), Some(Role::Operator));
        assert_eq!(required_role("/grpc.health.v1.Health/Check"), None);
        assert_eq!(required_role("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), None);
    }

    #[test]
    fn tokens_authenticate_to_their_role_only() {
        let tokens = tokens();
        assert_eq!(tokens.authorize(&headers("Bearer c-token"), Role::Customer), Ok(Role::Customer));
        assert_eq!(tokens.authorize(&HeaderMap::new(), Role::Customer), Err(AuthError::Missing));
        assert_eq!(tokens.authorize(&headers("Bearer nope"), Role::Customer), Err(AuthError::Unknown));
        assert_eq!(tokens.authorize(&headers("Basic c-token"), Role::Customer), Err(AuthError::Missing));
        assert_eq!(
            tokens.authorize(&headers("Bearer b-token"), Role::Customer),
            Err(AuthError::WrongRole { have: Role::Bot, need: Role::Customer })
        );
        assert_eq!(Status::from(AuthError::Unknown).code(), tonic::Code::Unauthenticated);
        let denied = AuthError::WrongRole { have: Role::Bot, need: Role::Operator };
        assert_eq!(Status::from(denied).code(), tonic::Code::PermissionDenied);
    }
}
