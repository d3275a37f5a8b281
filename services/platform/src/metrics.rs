//! The platform's metrics: the process's registry and `/metrics` endpoint (from
//! `aap-telemetry`, which the bots share), gRPC calls by service, method and code
//! ([`GrpcMetricsLayer`], next to [`crate::telemetry::GrpcTraceLayer`]), and the database
//! pools' connections ([`watch_pool`]).
//!
//! Every service crate keeps its own families in its `metrics` module; docs/operations.md lists
//! them all.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

pub use aap_telemetry::exposition;
pub use aap_telemetry::metrics::*;
use bytes::Bytes;
use futures::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prost::Message as _;

struct GrpcMetrics {
    handled: Counters,
    seconds: Histograms,
}

static GRPC: LazyLock<GrpcMetrics> = LazyLock::new(|| GrpcMetrics {
    handled: counter(
        "grpc_server_handled",
        "gRPC calls the server finished, by service, method and status code (the stream's end for streams).",
    ),
    seconds: histogram(
        "grpc_server_handling_seconds",
        "Time from a gRPC call's arrival to its last message (a stream's whole life), by service and method.",
        FAST_SECONDS,
    ),
});

/// `package.Service/Method` of every gRPC method this project serves (aap.v1, health and
/// reflection); any other path is counted as `unknown`, so a caller cannot grow the label set.
static KNOWN_METHODS: LazyLock<HashMap<String, Method>> = LazyLock::new(|| {
    let mut known: Vec<String> = [
        "grpc.health.v1.Health/Check",
        "grpc.health.v1.Health/Watch",
        "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    if let Ok(files) = prost_types::FileDescriptorSet::decode(aap_proto::FILE_DESCRIPTOR_SET) {
        for file in files.file {
            let package = file.package.unwrap_or_default();
            for service in file.service {
                let service_name = service.name.unwrap_or_default();
                for method in service.method {
                    known.push(format!("{package}.{service_name}/{}", method.name.unwrap_or_default()));
                }
            }
        }
    }
    known
        .into_iter()
        .filter_map(|path| {
            let (service, method) = path.split_once('/')?;
            let method = Method::new(service, method);
            Some((path, method))
        })
        .collect()
});

/// What any other path is counted as.
static UNKNOWN_METHOD: LazyLock<Method> = LazyLock::new(|| Method::new("unknown", "unknown"));

/// One method's label values and its series, each made on the method's first call and kept:
/// a call finds them by its path instead of building and hashing label sets.
struct Method {
    service: String,
    method: String,
    seconds: OnceLock<Histogram>,
    /// By status code (0 to 16).
    handled: [OnceLock<Counter>; 17],
}

impl Method {
    fn new(service: &str, method: &str) -> Method {
        Method {
            service: service.to_owned(),
            method: method.to_owned(),
            seconds: OnceLock::new(),
            handled: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn labels(&self) -> Labels {
        vec![("service", self.service.clone()), ("method", self.method.clone())]
    }
}

/// Makes the platform's own families (gRPC, database pools) appear in scrapes from the start.
pub fn register() {
    LazyLock::force(&GRPC);
    LazyLock::force(&POOLS);
}

/// Tower layer for gRPC servers: counts every call by service, method and status code
/// (`aap_grpc_server_handled_total`) and times it to its last message
/// (`aap_grpc_server_handling_seconds`). A call whose client went away before the end counts
/// as `Cancelled`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        register();
        GrpcMetricsService { inner }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around the gRPC router.
#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
}

/// One call being measured: recorded once, when its body ends or is dropped.
struct Call {
    method: &'static Method,
    started: Instant,
    /// The status, once headers or trailers told it.
    code: Option<tonic::Code>,
}

impl Call {
    fn new(path: &str) -> Call {
        let path = path.trim_start_matches('/');
        let method = KNOWN_METHODS.get(path).unwrap_or(&UNKNOWN_METHOD);
        Call { method, started: Instant::now(), code: None }
    }

    fn finish(self, code: tonic::Code) {
        let method = self.method;
        // A code outside gRPC's 17 cannot come from tonic; it would be counted as Unknown.
        let (slot, code) = match method.handled.get(code as usize) {
            Some(slot) => (slot, code),
            None => (&method.handled[tonic::Code::Unknown as usize], tonic::Code::Unknown),
        };
        slot.get_or_init(|| {
            let mut labels = method.labels();
            labels.push(("code", format!("{code:?}")));
            GRPC.handled.get_or_create(&labels).clone()
        })
        .inc();
        method
            .seconds
            .get_or_init(|| GRPC.seconds.get_or_create(&method.labels()).clone())
            .observe(self.started.elapsed().as_secs_f64());
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let code = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(tonic::Code::from(code))
}

/// A response body that records its call when the last frame (the trailers) passes, or when
/// it is dropped before that.
struct MeteredBody<B> {
    inner: Pin<Box<B>>,
    call: Option<Call>,
}

impl<B> MeteredBody<B> {
    fn end(&mut self, fallback: tonic::Code) {
        if let Some(call) = self.call.take() {
            let code = call.code.unwrap_or(fallback);
            call.finish(code);
        }
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        self.end(tonic::Code::Cancelled);
    }
}

impl<B> http_body::Body for MeteredBody<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = self.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status)
                    && let Some(call) = self.call.as_mut()
                {
                    call.code = Some(code);
                }
            }
            Poll::Ready(Some(Err(_))) => self.end(tonic::Code::Internal),
            // A body that ends without a status (none in headers or trailers) is unknown.
            Poll::Ready(None) => self.end(tonic::Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcMetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: http_body::Body<Data = Bytes> + Send + 'static,
    R::Error: Into<tonic::codegen::StdError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let mut call = Call::new(request.uri().path());
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A call answered without a body (an error, a refusal) has its status in the headers.
            call.code = grpc_status(response.headers());
            Ok(response.map(|body| tonic::body::Body::new(MeteredBody { inner: Box::pin(body), call: Some(call) })))
        })
    }
}

/// The database pools this process reports (`aap_db_pool_*`), read at every scrape.
#[derive(Debug, Default)]
struct Pools {
    pools: Mutex<Vec<(&'static str, sqlx::PgPool)>>,
}

static POOLS: LazyLock<Arc<Pools>> = LazyLock::new(|| {
    let pools = Arc::new(Pools::default());
    register_collector(Box::new(pools.clone()));
    pools
});

/// Reports `pool`'s connections as `pool="<name>"`: how many are open, idle and in use, and the
/// most it may open. A later pool of the same name takes its place.
pub fn watch_pool(name: &'static str, pool: &sqlx::PgPool) {
    let mut pools = POOLS.pools.lock().unwrap_or_else(PoisonError::into_inner);
    pools.retain(|(known, _)| *known != name);
    pools.push((name, pool.clone()));
}

impl Collector for Pools {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let connections = Gauges::default();
        let max = Gauges::default();
        for (name, pool) in self.pools.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let size = i64::from(pool.size());
            let idle = i64::try_from(pool.num_idle()).unwrap_or(i64::MAX).min(size);
            connections.get_or_create(&labels([("pool", name), ("state", "idle")])).set(idle);
            connections.get_or_create(&labels([("pool", name), ("state", "in_use")])).set(size - idle);
            max.get_or_create(&labels([("pool", name)])).set(i64::from(pool.options().get_max_connections()));
        }
        connections.encode(encoder.encode_descriptor(
            "db_pool_connections",
            "Open connections of a database pool, by state (idle, in_use): in_use near max means callers wait.",
            None,
            connections.metric_type(),
        )?)?;
        max.encode(encoder.encode_descriptor(
            "db_pool_max_connections",
            "The most connections a database pool may open.",
            None,
            max.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Layer as _, Service as _};

    /// Answers every call with `code` in its headers and an empty body.
    struct Answering(tonic::Code);

    impl tower::Service<http::Request<()>> for Answering {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let mut response = http::Response::new(tonic::body::Body::empty());
            response.headers_mut().insert("grpc-status", http::HeaderValue::from(self.0 as i32));
            std::future::ready(Ok(response))
        }
    }

    fn handled(service: &str, method: &str, code: &str) -> u64 {
        let labels = vec![("service", service.to_owned()), ("method", method.to_owned()), ("code", code.to_owned())];
        GRPC.handled.get_or_create(&labels).get()
    }

    /// The calls of `method` timed so far, from the family's exposition.
    fn timed(method: &str) -> u64 {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("t", "timed calls", GRPC.seconds.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        let line = format!("t_count{{service=\"aap.v1.AnswersService\",method=\"{method}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(line.as_str())).map_or(0, |n| n.parse().expect("a count"))
    }

    async fn call(code: tonic::Code, path: &str) {
        let mut service = GrpcMetricsLayer.layer(Answering(code));
        let request = http::Request::builder().uri(path).body(()).expect("request");
        let response = service.call(request).await.expect("response");
        drop(response);
    }

    #[tokio::test]
    async fn calls_are_counted_by_their_method_and_code_and_other_paths_as_unknown() {
        let ask = ("aap.v1.AnswersService", "Ask");
        let before = (
            handled(ask.0, ask.1, "NotFound"),
            handled(ask.0, ask.1, "Ok"),
            handled("unknown", "unknown", "Unavailable"),
        );
        let timed_before = timed("Ask");
        call(tonic::Code::NotFound, "/aap.v1.AnswersService/Ask").await;
        call(tonic::Code::NotFound, "/aap.v1.AnswersService/Ask").await;
        call(tonic::Code::Ok, "/aap.v1.AnswersService/Ask").await;
        call(tonic::Code::Unavailable, "/aap.v1.AnswersService/NoSuchMethod").await;
        call(tonic::Code::Unavailable, "/evil%00/path").await;
        let after = (
            handled(ask.0, ask.1, "NotFound"),
            handled(ask.0, ask.1, "Ok"),
            handled("unknown", "unknown", "Unavailable"),
        );
        assert_eq!((after.0 - before.0, after.1 - before.1), (2, 1));
        assert!(after.2 - before.2 >= 2, "paths not served are counted as unknown");
        assert_eq!(handled("aap.v1.AnswersService", "NoSuchMethod", "Unavailable"), 0, "no series for a caller's path");
        assert_eq!(timed("Ask") - timed_before, 3, "each call timed once");
        assert_eq!(timed("NoSuchMethod"), 0);
    }
}
