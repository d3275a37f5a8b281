//! What every gRPC server of the platform registers besides its own services: health and
//! reflection (v1 and v1alpha, so every grpcurl version can list and describe).

use tonic_reflection::server::{v1, v1alpha};

/// Largest request message each service decodes; a larger one is refused with OUT_OF_RANGE
/// (tonic's code for it) before it is read into memory.
pub mod limits {
    /// Asks and watches: a prompt (8 KiB by default) and at most 32 targets.
    pub const ANSWERS: usize = 1 << 20;
    /// Token administration.
    pub const ADMIN: usize = 64 << 10;
    /// Accounts with their session states (cookies and localStorage of every origin).
    pub const SESSIONS: usize = 8 << 20;
    /// Submissions: up to 4,000,000 characters of page HTML, the text, markdown and citations.
    pub const EVALUATIONS: usize = 24 << 20;
}

/// Errors building the reflection services.
pub type ReflectionError = tonic_reflection::server::Error;

fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(aap_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        // google.rpc.BadRequest and the other error details: without them grpcurl and buf curl
        // print an error's field violations as base64 instead of the fields they name.
        .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
}

/// Reflection v1 over the `aap.v1` services and health.
pub fn reflection_v1() -> Result<v1::ServerReflectionServer<impl v1::ServerReflection>, ReflectionError> {
    reflection_builder().build_v1()
}

/// Reflection v1alpha (what older grpcurl builds ask for).
pub fn reflection_v1alpha() -> Result<v1alpha::ServerReflectionServer<impl v1alpha::ServerReflection>, ReflectionError>
{
    reflection_builder().build_v1alpha()
}

/// Tower layer for gRPC servers: what tonic itself answers, told as gRPC says it.
///
/// - A call whose `grpc-timeout` passes before its handler answers is told DEADLINE_EXCEEDED.
///   tonic ends such a call itself, outside every layer, as CANCELLED ("Timeout expired"), and
///   the layers inside never see it end (the metrics did not count it). This one gives up a
///   millisecond before tonic does, so it is always first. Calls without the header (the load
///   client's, most bots') pass through untouched.
/// - A request whose gRPC framing is cut (a length prefix longer than the body: "Unexpected
///   EOF decoding stream.") or that holds no message at all ("Missing request message.") is
///   the caller's mistake, told INVALID_ARGUMENT where tonic says INTERNAL (counted as the
///   server's own failure). A compressed message without `grpc-encoding` stays INTERNAL, as
///   gRPC's compression spec requires.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcStatusLayer;

impl<S> tower::Layer<S> for GrpcStatusLayer {
    type Service = GrpcStatusService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcStatusService { inner }
    }
}

/// What [`GrpcStatusService`] does to an answer that is not past its deadline.
type Told<R, E> = fn(Result<R, E>) -> Result<R, E>;

/// The service [`GrpcStatusLayer`] wraps around the gRPC router.
#[derive(Debug, Clone)]
pub struct GrpcStatusService<S> {
    inner: S,
}

impl<S, B> tower::Service<http::Request<B>> for GrpcStatusService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<
        futures::future::Map<S::Future, Told<S::Response, S::Error>>,
        futures::future::BoxFuture<'static, Result<S::Response, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        use futures::FutureExt as _;
        let header = request.headers().get("grpc-timeout").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let timeout = header.as_deref().and_then(grpc_timeout);
        let future = self.inner.call(request);
        let told: Told<S::Response, S::Error> = |answer| answer.map(invalid_framing_is_invalid_argument);
        let (Some(header), Some(timeout)) = (header, timeout) else {
            return futures::future::Either::Left(future.map(told));
        };
        futures::future::Either::Right(Box::pin(async move {
            let first = timeout.saturating_sub(std::time::Duration::from_millis(1));
            match tokio::time::timeout(first, future).await {
                Ok(answered) => told(answered),
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the call's deadline (grpc-timeout {header}) passed on the server before it was answered"
                ))
                .into_http()),
            }
        }))
    }
}

/// tonic's INTERNAL for a request whose framing is cut or holds no message, as INVALID_ARGUMENT;
/// any other response as it is (one header read unless its status is INTERNAL).
fn invalid_framing_is_invalid_argument(
    response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    if response.headers().get("grpc-status").is_none_or(|code| code != "13") {
        return response;
    }
    let Some(status) = tonic::Status::from_header_map(response.headers()) else { return response };
    let what = match status.message() {
        "Unexpected EOF decoding stream." => "its gRPC framing is cut: a length prefix promises more bytes than came",
        "Missing request message." => "it holds no message: a unary call takes one",
        _ => return response,
    };
    tonic::Status::invalid_argument(format!("the request is not a whole gRPC message: {what}")).into_http()
}

/// A `grpc-timeout` header's duration: at most 8 digits and a unit (H, M, S, m, u, n).
pub fn grpc_timeout(value: &str) -> Option<std::time::Duration> {
    use std::time::Duration;
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = value.split_at_checked(split)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::grpc_timeout;

    #[test]
    fn grpc_timeouts_are_read_as_the_spec_writes_them() {
        assert_eq!(grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout("99999999H"), Some(Duration::from_secs(99_999_999 * 3600)));
        assert_eq!(grpc_timeout("1M"), Some(Duration::from_secs(60)));
        assert_eq!(grpc_timeout("250m"), Some(Duration::from_millis(250)));
        assert_eq!(grpc_timeout("1999u"), Some(Duration::from_micros(1999)));
        assert_eq!(grpc_timeout("0n"), Some(Duration::ZERO));
        for bad in ["", "S", "2", "2s", "123456789S", "-1S", "1.5S", "２S", "2SS", " 2S"] {
            assert_eq!(grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
