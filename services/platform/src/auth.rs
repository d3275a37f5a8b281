//! Bearer-token authentication of named principals with three roles, enforced for every gRPC
//! call by one layer.
//!
//! Who may call a method is decided here, in one table ([`required_access`]), not in the
//! services: customers call AnswersService, bots call EvaluationService and lease sessions,
//! operators administer SessionService and AdminService. Health and reflection need no token;
//! a method the table does not list is denied. What a caller may touch once in (its own claims
//! and leases, the assistants it serves) the services check against the [`Caller`] this layer
//! puts in the request.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tonic::Status;

use crate::principals::Principals;

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

impl Role {
    /// The role's name with its article, for messages: "a bot", "an operator".
    pub fn with_article(self) -> &'static str {
        match self {
            Role::Customer => "a customer",
            Role::Bot => "a bot",
            Role::Operator => "an operator",
        }
    }
}

/// The caller a request was authenticated as; put in the request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The principal's name (`acme`, `bot-eu-7`): what logs and traces show.
    pub principal: Arc<str>,
    pub role: Role,
    /// For a bot: the assistants it may serve; empty means every assistant.
    pub assistants: Arc<[String]>,
    /// The id of the token used (`tok_...`), never the token.
    pub token_id: Arc<str>,
}

impl Caller {
    pub fn new(principal: &str, role: Role, assistants: Vec<String>, token_id: String) -> Caller {
        Caller { principal: principal.into(), role, assistants: assistants.into(), token_id: token_id.into() }
    }

    /// Whether the caller may serve (take tasks of, lease sessions of) `assistant`.
    pub fn may_serve(&self, assistant: &str) -> bool {
        self.role == Role::Bot && (self.assistants.is_empty() || self.assistants.iter().any(|a| a == assistant))
    }

    /// Whether the caller is an operator, who sees answers' internal details.
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token: send `authorization: Bearer <token>`")]
    Missing,
    #[error("unknown bearer token")]
    Unknown,
    #[error("token {0} was revoked")]
    Revoked(String),
    #[error("token {0} expired (a console session's token lasts as long as its sign-in): sign in again")]
    Expired(String),
    #[error("{} token cannot call this method; it needs {need}", .have.with_article())]
    WrongRole { have: Role, need: String },
    #[error("not a method of the platform: the access table does not list it, so nobody may call it")]
    UnknownMethod,
}

impl From<AuthError> for Status {
    fn from(err: AuthError) -> Status {
        match err {
            AuthError::Missing | AuthError::Unknown | AuthError::Revoked(_) | AuthError::Expired(_) => {
                Status::unauthenticated(err.to_string())
            }
            AuthError::WrongRole { .. } | AuthError::UnknownMethod => Status::permission_denied(err.to_string()),
        }
    }
}

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token (health, reflection).
    Public,
    /// Any valid token.
    Authenticated,
    /// A token of one of these roles.
    Roles(&'static [Role]),
    /// Nobody: a path the table does not list.
    Denied,
}

impl Access {
    /// Whether `caller` may call a method with this access.
    pub fn admits(self, caller: &Caller) -> Result<(), AuthError> {
        match self {
            Access::Public | Access::Authenticated => Ok(()),
            Access::Roles(roles) if roles.contains(&caller.role) => Ok(()),
            Access::Roles(roles) => {
                let names: Vec<String> = roles.iter().map(|r| format!("{} token", r.with_article())).collect();
                Err(AuthError::WrongRole { have: caller.role, need: names.join(" or ") })
            }
            Access::Denied => Err(AuthError::UnknownMethod),
        }
    }
}

const CUSTOMER_OR_OPERATOR: &[Role] = &[Role::Customer, Role::Operator];
const BOT: &[Role] = &[Role::Bot];
const OPERATOR: &[Role] = &[Role::Operator];

/// Who may call a gRPC method, by its path (`/package.Service/Method`). One table for the
/// whole platform: customers (and operators) ask, bots take tasks and lease sessions,
/// operators administer. Health and reflection are public; a service this table does not
/// list is denied to everyone.
pub fn required_access(path: &str) -> Access {
    let Some((service, method)) = path.trim_start_matches('/').split_once('/') else {
        return Access::Denied;
    };
    match (service, method) {
        ("grpc.health.v1.Health", _)
        | ("grpc.reflection.v1.ServerReflection", _)
        | ("grpc.reflection.v1alpha.ServerReflection", _) => Access::Public,
        ("aap.v1.AnswersService", "ScheduleRefresh" | "ListRefreshSchedules" | "DeleteRefreshSchedule") => {
            Access::Roles(OPERATOR)
        }
        ("aap.v1.AnswersService", _) => Access::Roles(CUSTOMER_OR_OPERATOR),
        ("aap.v1.EvaluationService", _) => Access::Roles(BOT),
        ("aap.v1.SessionService", "LeaseSession" | "ReturnSession" | "ReportEvidence") => Access::Roles(BOT),
        ("aap.v1.SessionService", _) => Access::Roles(OPERATOR),
        ("aap.v1.RemoteLoginService", _) => Access::Roles(OPERATOR),
        ("aap.v1.AdminService", "WhoAmI") => Access::Authenticated,
        ("aap.v1.AdminService", _) => Access::Roles(OPERATOR),
        _ => Access::Denied,
    }
}

/// The caller a handler runs for: put there by the auth layer on every non-public method.
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Caller, Status> {
    request
        .extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("no authenticated caller: this method needs a bearer token"))
}

/// Networks whose hosts may call the seed's HTTP API without a token, each host a bot
/// principal named after its address (`seed-10.1.2.3`): the seed's own polling bots cannot
/// send one. Empty (the default) admits nobody without a token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Networks(Vec<(IpAddr, u8)>);

impl Networks {
    /// Parses `10.0.0.0/8`, `192.168.1.7` (one host), `fd00::/8`, comma-separated.
    pub fn parse(list: &str) -> Result<Networks, String> {
        let mut networks = Vec::new();
        for item in list.split(',').map(str::trim).filter(|item| !item.is_empty()) {
            let (addr, bits) = item.split_once('/').unwrap_or((item, ""));
            let addr: IpAddr = addr.trim().parse().map_err(|_| format!("{item:?} is not an address or CIDR"))?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let bits = if bits.is_empty() {
                max
            } else {
                bits.trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("{item:?} has a prefix length outside 0..={max}"))?
            };
            networks.push((addr, bits));
        }
        Ok(Networks(networks))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `peer` is in one of the networks (an IPv4-mapped IPv6 peer counts as IPv4).
    pub fn contains(&self, peer: IpAddr) -> bool {
        let peer = match peer {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
            v4 => v4,
        };
        self.0.iter().any(|(net, bits)| match (net, peer) {
            (IpAddr::V4(net), IpAddr::V4(peer)) => prefix_eq(&net.octets(), &peer.octets(), *bits),
            (IpAddr::V6(net), IpAddr::V6(peer)) => prefix_eq(&net.octets(), &peer.octets(), *bits),
            _ => false,
        })
    }

    /// The bot principal a token-less caller from `peer` acts as, when the networks admit it.
    pub fn caller(&self, peer: IpAddr) -> Option<Caller> {
        if !self.contains(peer) {
            return None;
        }
        let name = format!("seed-{peer}").replace(':', "-");
        Some(Caller::new(&name, Role::Bot, Vec::new(), "none (allowed network)".to_owned()))
    }
}

impl fmt::Display for Networks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(|(addr, bits)| format!("{addr}/{bits}")).collect();
        f.write_str(&items.join(","))
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let (whole, rest) = (usize::from(bits / 8), bits % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || (a[whole] ^ b[whole]) & (0xffu8 << (8 - rest)) == 0
}

/// Tower layer that authenticates every gRPC request by [`required_role`].
#[derive(Debug, Clone)]
pub struct AuthLayer {
    principals: Principals,
}

impl AuthLayer {
    pub fn new(principals: Principals) -> AuthLayer {
        AuthLayer { principals }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService { inner, principals: self.principals.clone() }
    }
}

/// The service [`AuthLayer`] wraps around the gRPC router.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    principals: Principals,
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
        let access = required_access(req.uri().path());
        match self.principals.authorize(req.headers(), access) {
            Ok(None) => Box::pin(self.inner.call(req)),
            Ok(Some(caller)) => {
                // The principal, never the token, names the caller in logs and traces.
                tracing::Span::current().record("enduser.id", &*caller.principal);
                let revocable = Revocable::new(self.principals.clone(), caller.clone());
                req.extensions_mut().insert(caller);
                let response = self.inner.call(req);
                Box::pin(async move {
                    let response = response.await?;
                    Ok(response.map(|body| tonic::body::Body::new(revocable.around(body))))
                })
            }
            Err(err) => {
                tracing::info!(path = req.uri().path(), error = %err, "request refused");
                let status = Status::from(err);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// A response body that ends with UNAUTHENTICATED once the token its call came with is revoked
/// (or, a console session's, expires):
/// a revocation applies at once to what is open (an Ask or Watch stream, a bot's Claim stream,
/// an operator's WatchAccounts), not only to the calls after it. The body it wraps is dropped
/// then, as when the client goes away (a Claim stream hands back its bot's tasks). A body that
/// is never idle (an exact hit's events, a unary reply) costs one atomic read a frame; only one
/// that waits registers to be woken by a revocation.
struct Revocable {
    inner: Option<tonic::body::Body>,
    principals: Principals,
    caller: Caller,
    revocations: tokio::sync::watch::Receiver<usize>,
    /// While the body waits: resolves on the next revocation (true) or when none can come.
    waiting: Option<BoxFuture<'static, bool>>,
    /// No revocation can come any more (the table is gone: the process stops).
    deaf: bool,
}

impl Revocable {
    /// Subscribed now, before the handler runs: a revocation from here on ends the response.
    fn new(principals: Principals, caller: Caller) -> Revocable {
        let revocations = principals.revocations();
        Revocable { inner: None, principals, caller, revocations, waiting: None, deaf: false }
    }

    fn around(mut self, body: tonic::body::Body) -> Revocable {
        self.inner = Some(body);
        self
    }

    /// Whether the caller's token is refused now (revoked or expired); marks the revocations
    /// seen.
    fn revoked(&mut self) -> bool {
        self.revocations.borrow_and_update();
        !self.principals.admits(&self.caller)
    }

    /// The trailers that end the call, the body it wrapped dropped.
    fn end(&mut self) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        self.inner = None;
        self.waiting = None;
        let why = match self.principals.refusal(&self.caller) {
            Some(AuthError::Expired(_)) => "expired",
            _ => "was revoked",
        };
        let status = Status::unauthenticated(format!(
            "token {} {why}: the call ends here; call again with a token that is not",
            self.caller.token_id
        ));
        tracing::info!(principal = %self.caller.principal, token_id = %self.caller.token_id, why, "an open call's token is refused now: ended");
        let mut trailers = http::HeaderMap::new();
        Poll::Ready(Some(status.add_header(&mut trailers).map(|()| http_body::Frame::trailers(trailers))))
    }
}

impl http_body::Body for Revocable {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if this.inner.is_none() {
            return Poll::Ready(None);
        }
        if this.revocations.has_changed().unwrap_or(false) && this.revoked() {
            return this.end();
        }
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        match std::pin::Pin::new(inner).poll_frame(cx) {
            Poll::Pending => {}
            ready => return ready,
        }
        // Idle: woken by the next revocation as well as by the body.
        while !this.deaf {
            let waiting = this.waiting.get_or_insert_with(|| {
                let mut revocations = this.revocations.clone();
                Box::pin(async move { revocations.changed().await.is_ok() })
            });
            let Poll::Ready(changed) = waiting.as_mut().poll(cx) else { break };
            this.waiting = None;
            this.deaf = !changed;
            if changed && this.revoked() {
                return this.end();
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(http_body::Body::is_end_stream)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.as_ref().map(http_body::Body::size_hint).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(role: Role, assistants: &[&str]) -> Caller {
        Caller::new("p", role, assistants.iter().map(|a| a.to_string()).collect(), "tok_000000000000".into())
    }

    #[test]
    fn methods_need_the_role_of_their_service() {
        assert_eq!(required_access("/aap.v1.AnswersService/Ask"), Access::Roles(CUSTOMER_OR_OPERATOR));
        assert_eq!(required_access("/aap.v1.AnswersService/History"), Access::Roles(CUSTOMER_OR_OPERATOR));
        assert_eq!(required_access("/aap.v1.AnswersService/ScheduleRefresh"), Access::Roles(OPERATOR));
        assert_eq!(required_access("/aap.v1.AnswersService/DeleteRefreshSchedule"), Access::Roles(OPERATOR));
        assert_eq!(required_access("/aap.v1.EvaluationService/Claim"), Access::Roles(BOT));
        assert_eq!(required_access("/aap.v1.SessionService/LeaseSession"), Access::Roles(BOT));
        assert_eq!(required_access("/aap.v1.SessionService/CreateAccount"), Access::Roles(OPERATOR));
        assert_eq!(required_access("/aap.v1.AdminService/CreateToken"), Access::Roles(OPERATOR));
        assert_eq!(required_access("/aap.v1.AdminService/WhoAmI"), Access::Authenticated);
        assert_eq!(required_access("/grpc.health.v1.Health/Check"), Access::Public);
        assert_eq!(required_access("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"), Access::Public);
        assert_eq!(required_access("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"), Access::Public);
        assert_eq!(required_access("/aap.v1.SecretService/Dump"), Access::Denied);
        assert_eq!(required_access("/grpc.health.v2.Health/Check"), Access::Denied);
        assert_eq!(required_access("nonsense"), Access::Denied);
    }

    #[test]
    fn roles_are_admitted_by_the_table_only() {
        let customer = caller(Role::Customer, &[]);
        assert_eq!(Access::Roles(CUSTOMER_OR_OPERATOR).admits(&customer), Ok(()));
        let refused = Access::Roles(BOT).admits(&customer).expect_err("a customer is no bot");
        assert_eq!(refused, AuthError::WrongRole { have: Role::Customer, need: "a bot token".into() });
        let refused = Access::Roles(OPERATOR).admits(&caller(Role::Bot, &[])).expect_err("a bot is no operator");
        assert_eq!(refused.to_string(), "a bot token cannot call this method; it needs an operator token");
        let refused = Access::Roles(BOT).admits(&caller(Role::Operator, &[])).expect_err("an operator is no bot");
        assert_eq!(refused.to_string(), "an operator token cannot call this method; it needs a bot token");
        assert_eq!(Status::from(refused).code(), tonic::Code::PermissionDenied);
        assert!(Access::Denied.admits(&caller(Role::Operator, &[])).is_err());
        assert_eq!(Status::from(AuthError::Revoked("tok_1".into())).code(), tonic::Code::Unauthenticated);
        assert_eq!(Status::from(AuthError::Unknown).code(), tonic::Code::Unauthenticated);
    }

    #[test]
    fn networks_admit_their_hosts_only() {
        let networks = Networks::parse(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8").expect("valid list");
        assert!(networks.contains("10.200.3.4".parse().expect("ip")));
        assert!(networks.contains("::ffff:10.1.1.1".parse().expect("ip")));
        assert!(networks.contains("192.168.1.7".parse().expect("ip")));
        assert!(!networks.contains("192.168.1.8".parse().expect("ip")));
        assert!(networks.contains("fd12::1".parse().expect("ip")));
        assert!(!networks.contains("fe80::1".parse().expect("ip")));
        let odd = Networks::parse("172.16.0.0/12").expect("valid");
        assert!(odd.contains("172.31.255.255".parse().expect("ip")));
        assert!(!odd.contains("172.32.0.0".parse().expect("ip")));
        assert!(Networks::parse("").expect("empty").is_empty());
        assert!(Networks::default().caller("127.0.0.1".parse().expect("ip")).is_none());
        let caller = networks.caller("10.0.0.5".parse().expect("ip")).expect("admitted");
        assert_eq!((&*caller.principal, caller.role), ("seed-10.0.0.5", Role::Bot));
        assert_eq!(&*networks.caller("fd00::1".parse().expect("ip")).expect("admitted").principal, "seed-fd00--1");
        for bad in ["10.0.0.0/33", "nonsense", "10.0.0.0/x", "::/129"] {
            assert!(Networks::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn bots_serve_their_assistants_only() {
        assert!(caller(Role::Bot, &[]).may_serve("claude"));
        let limited = caller(Role::Bot, &["chatgpt"]);
        assert!(limited.may_serve("chatgpt") && !limited.may_serve("claude"));
        assert!(!caller(Role::Operator, &[]).may_serve("chatgpt"));
    }
}
