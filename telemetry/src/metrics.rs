//! The process's metrics: one registry that every crate registers its metric families in (each
//! name gets the `aap_` prefix), exposed as Prometheus/OpenMetrics text on `GET /metrics`.
//!
//! A crate keeps its families in a `LazyLock` built with [`counter`], [`gauge`], [`gauge_f64`]
//! or [`histogram`] (each registers what it makes) and records into them where the work
//! happens; a family shows up in a scrape once it was built, with its series once they have a
//! value. Labels are `(name, value)` pairs: keep their values to small sets (assistants,
//! states, failure classes, gRPC methods), never ids or free text.
//!
//! ```
//! use std::sync::LazyLock;
//! use aap_telemetry::metrics::{self, Counters};
//!
//! static TASKS: LazyLock<Counters> = LazyLock::new(|| metrics::counter("demo_tasks", "Tasks taken."));
//! TASKS.get_or_create(&vec![("assistant", "chatgpt".to_owned())]).inc();
//! assert!(metrics::encode().contains(r#"aap_demo_tasks_total{assistant="chatgpt"} 1"#));
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

pub use prometheus_client;
use prometheus_client::collector::Collector;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Metric, Registry};
use tokio::net::TcpListener;

/// A series' labels: `(name, value)` pairs in a fixed order.
pub type Labels = Vec<(&'static str, String)>;
/// Counters by label set (`_total` is appended to the name).
pub type Counters = Family<Labels, Counter>;
/// Integer gauges by label set.
pub type Gauges = Family<Labels, Gauge>;
/// Floating-point gauges by label set (ages in seconds and the like).
pub type GaugesF64 = Family<Labels, Gauge<f64, AtomicU64>>;
/// Histograms by label set, each with the family's buckets.
pub type Histograms = Family<Labels, Histogram, Buckets>;

/// The upper bounds of a histogram family's buckets.
#[derive(Debug, Clone, Copy)]
pub struct Buckets(pub &'static [f64]);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

/// Seconds of work that usually takes milliseconds: a gRPC call, an Ask's first event, an
/// embedding, the ingest's lag.
pub const FAST_SECONDS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Seconds of work that takes seconds to minutes: a bot's answer, a browser's start.
pub const SLOW_SECONDS: &[f64] = &[0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0];
/// Counts of things in a batch (prompts in an embedding batch).
pub const BATCH_SIZES: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];

/// The prefix of every metric of the project.
pub const PREFIX: &str = "aap";

/// The content type of [`encode`]'s text: OpenMetrics 1.0, which Prometheus scrapes as it is.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| Mutex::new(Registry::with_prefix(PREFIX)));

/// Every family registered with [`register`]: full name → type. A family shows in a scrape only
/// once it has a series; this lists it from its registration on.
static FAMILIES: LazyLock<Mutex<BTreeMap<String, String>>> = LazyLock::new(Mutex::default);

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    // A panic while registering leaves the registry as it was: keep serving it.
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    f(&mut registry)
}

/// Registers `metric` as `aap_<name>`. Register each name once per process: a `LazyLock`
/// around the family does that. `help` is a sentence; its full stop is left to the registry,
/// which ends every help text with one (a help ending in its own was shown with two).
pub fn register(name: &str, help: &str, metric: impl Metric) {
    let kind = metric.metric_type().as_str().to_owned();
    FAMILIES.lock().unwrap_or_else(PoisonError::into_inner).insert(format!("{PREFIX}_{name}"), kind);
    let help = help.trim_end().trim_end_matches('.');
    with_registry(|registry| registry.register(name, help, metric));
}

/// Lists a family that a collector encodes (`aap_<name>`, of type `kind`) among [`families`]:
/// a collector's families are otherwise known only from a scrape, and one may be left out of it
/// (a gauge with nothing to report on this platform).
pub(crate) fn declare(name: &str, kind: &str) {
    FAMILIES.lock().unwrap_or_else(PoisonError::into_inner).insert(format!("{PREFIX}_{name}"), kind.to_owned());
}

/// Every family registered so far (full name → `counter`, `gauge`, `histogram`, ...), whether
/// or not it has a series yet; with [`encode`]'s, the families a process can export.
pub fn families() -> BTreeMap<String, String> {
    FAMILIES.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

/// Registers a collector, asked for its metrics at every scrape: for values that are read
/// rather than counted (a pool's connections).
pub fn register_collector(collector: Box<dyn Collector>) {
    with_registry(|registry| registry.register_collector(collector));
}

/// A new counter family registered as `aap_<name>_total`.
pub fn counter(name: &str, help: &str) -> Counters {
    let family = Counters::default();
    register(name, help, family.clone());
    family
}

/// A new integer gauge family registered as `aap_<name>`.
pub fn gauge(name: &str, help: &str) -> Gauges {
    let family = Gauges::default();
    register(name, help, family.clone());
    family
}

/// A new floating-point gauge family registered as `aap_<name>`.
pub fn gauge_f64(name: &str, help: &str) -> GaugesF64 {
    let family = GaugesF64::default();
    register(name, help, family.clone());
    family
}

/// A new histogram family registered as `aap_<name>` (`_bucket`, `_sum`, `_count`).
pub fn histogram(name: &str, help: &str, buckets: &'static [f64]) -> Histograms {
    let family = Histograms::new_with_constructor(Buckets(buckets));
    register(name, help, family.clone());
    family
}

/// A label set from pairs: `labels([("assistant", "chatgpt")])`.
pub fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.into_iter().map(|(name, value)| (name, value.to_owned())).collect()
}

/// Every registered metric in the OpenMetrics text format.
pub fn encode() -> String {
    let mut text = String::new();
    with_registry(|registry| prometheus_client::encoding::text::encode(&mut text, registry))
        .expect("writing to a String cannot fail");
    text
}

/// What a scrape does before the text is written: reads the gauges of state the process does
/// not hold itself (a database's rows, a queue's depth), when someone looks rather than on a
/// timer. It should bound its own time: the scrape waits for it.
pub type BeforeScrape = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The `/metrics` route (and nothing else), for a server of its own or to merge into one.
pub fn router() -> axum::Router {
    router_with(None)
}

/// [`router`], running `before` ahead of every scrape.
pub fn router_with(before: Option<BeforeScrape>) -> axum::Router {
    axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let before = before.clone();
            async move {
                if let Some(before) = before {
                    before().await;
                }
                ([(axum::http::header::CONTENT_TYPE, CONTENT_TYPE)], encode())
            }
        }),
    )
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    serve_with(listener, None, shutdown).await
}

/// [`serve`], running `before` ahead of every scrape. A connection that has not sent a
/// request's headers within [`crate::http::HEADER_READ_TIMEOUT`] is closed.
pub async fn serve_with(
    listener: TcpListener,
    before: Option<BeforeScrape>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_within(listener, before, crate::http::HEADER_READ_TIMEOUT, shutdown).await
}

async fn serve_within(
    listener: TcpListener,
    before: Option<BeforeScrape>,
    header_timeout: std::time::Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "metrics serving on /metrics");
    crate::http::serve_with(listener, router_with(before), None, header_timeout, shutdown).await
}

/// Reads a `--metrics-addr` value: an address to listen on, or `None` for `off` (or empty).
pub fn parse_addr(text: &str) -> Result<Option<SocketAddr>, String> {
    match text.trim() {
        "" | "off" => Ok(None),
        addr => addr
            .parse()
            .map(Some)
            .map_err(|error| format!("{addr:?} is not an address such as 127.0.0.1:9464 or `off`: {error}")),
    }
}

/// Binds the metrics listener for `--metrics-addr` (named `flag` in the error); `None` when
/// the value is `off` (or empty).
pub async fn bind(addr: &str, flag: &str) -> std::io::Result<Option<TcpListener>> {
    let Some(addr) = parse_addr(addr)
        .map_err(|reason| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{flag}: {reason}")))?
    else {
        return Ok(None);
    };
    TcpListener::bind(addr).await.map(Some).map_err(|error| {
        std::io::Error::new(
            error.kind(),
            format!("bind the metrics endpoint on {addr}: {error} ({flag}; `off` serves none)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::*;
    use crate::exposition::Scrape;

    static DEMO_COUNTER: LazyLock<Counters> =
        LazyLock::new(|| counter("test_demo_events", "Events of the unit test, by kind."));
    static DEMO_HISTOGRAM: LazyLock<Histograms> =
        LazyLock::new(|| histogram("test_demo_seconds", "Durations of the unit test.", FAST_SECONDS));

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics_text_that_parses() {
        DEMO_COUNTER.get_or_create(&labels([("kind", "a \"quoted\" one")])).inc_by(3);
        DEMO_HISTOGRAM.get_or_create(&labels([("kind", "x")])).observe(0.02);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/metrics", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, async {
            let _ = stopped.await;
        }));
        let response = reqwest::get(&url).await.expect("scrape");
        assert_eq!(response.headers()["content-type"], CONTENT_TYPE);
        let scrape = Scrape::parse(&response.text().await.expect("body")).expect("parses");
        assert_eq!(scrape.value("aap_test_demo_events_total", &[("kind", "a \"quoted\" one")]), Some(3.0));
        assert_eq!(scrape.kind("aap_test_demo_events"), Some("counter"));
        assert_eq!(scrape.value("aap_test_demo_seconds_count", &[("kind", "x")]), Some(1.0));
        assert_eq!(scrape.value("aap_test_demo_seconds_bucket", &[("kind", "x"), ("le", "0.025")]), Some(1.0));
        assert_eq!(scrape.value("aap_test_demo_seconds_bucket", &[("kind", "x"), ("le", "0.01")]), Some(0.0));
        let text = encode();
        assert!(text.contains("# HELP aap_test_demo_events Events of the unit test, by kind.\n"), "{text}");
        assert!(!text.lines().any(|line| line.starts_with("# HELP") && line.ends_with("..")), "{text}");
        let _ = stop.send(());
        server.await.expect("server task").expect("server");
    }

    /// A scraper that sends half a request, or nothing, is not held: the connection is closed
    /// once the header timeout passes, and a whole scrape is still answered.
    #[tokio::test]
    async fn a_connection_that_sends_no_whole_request_is_closed() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let timeout = std::time::Duration::from_millis(300);
        tokio::spawn(serve_within(listener, None, timeout, std::future::pending()));
        for sent in [&b"GET /metrics HTTP/1.1\r\nhost: x\r\n"[..], b""] {
            let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            tcp.write_all(sent).await.expect("write");
            let mut reply = Vec::new();
            // Bounded, so a server that never closes fails the test instead of hanging it.
            tokio::time::timeout(std::time::Duration::from_secs(20), tcp.read_to_end(&mut reply))
                .await
                .expect("the server closed the connection")
                .expect("read");
            let reply = String::from_utf8_lossy(&reply);
            assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 408"), "{reply}");
        }
        let response = reqwest::get(format!("http://{addr}/metrics")).await.expect("scrape");
        assert_eq!(response.status(), 200);
    }

    static DEMO_GAUGE: LazyLock<Gauges> =
        LazyLock::new(|| gauge("test_demo_read_on_scrape", "A gauge the unit test sets before each scrape."));

    #[tokio::test]
    async fn what_runs_before_a_scrape_is_in_that_scrape() {
        let reads = Arc::new(AtomicU64::new(0));
        let before: BeforeScrape = {
            let reads = reads.clone();
            Arc::new(move || {
                let reads = reads.clone();
                Box::pin(async move {
                    let read = reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    DEMO_GAUGE.get_or_create(&labels([("kind", "x")])).set(i64::try_from(read).unwrap_or(i64::MAX));
                })
            })
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/metrics", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve_with(listener, Some(before), async {
            let _ = stopped.await;
        }));
        assert_eq!(reads.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing is read before a scrape");
        for scrape_number in 1..=2 {
            let text = reqwest::get(&url).await.expect("scrape").text().await.expect("body");
            let scrape = Scrape::parse(&text).expect("parses");
            assert_eq!(scrape.value("aap_test_demo_read_on_scrape", &[("kind", "x")]), Some(f64::from(scrape_number)));
        }
        let _ = stop.send(());
        server.await.expect("server task").expect("server");
    }

    #[test]
    fn metrics_addresses_read_off_as_none() {
        assert_eq!(parse_addr("off"), Ok(None));
        assert_eq!(parse_addr(" "), Ok(None));
        assert_eq!(parse_addr("127.0.0.1:9464"), Ok(Some(SocketAddr::from(([127, 0, 0, 1], 9464)))));
        assert!(parse_addr("localhost").is_err());
    }
}
