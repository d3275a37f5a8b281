//! The answers service's metrics: Asks by how their prompt was found, with the time to their
//! first event, and the streams open.

use std::sync::LazyLock;

use aap_platform::metrics::prometheus_client::metrics::gauge::Gauge;
use aap_platform::metrics::prometheus_client::metrics::histogram::Histogram;
use aap_platform::metrics::{self, Counters, Gauges, Histograms};
use aap_proto::v1::MatchKind;

struct Metrics {
    first_event: Histograms,
    streams_open: Gauges,
    partials_dropped: Counters,
    similar_vetoed: Counters,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    first_event: metrics::histogram(
        "answers_ask_first_event_seconds",
        "Time from an Ask's arrival to its first event, by how the prompt was found (match: exact, similar, new, \
         by_id, or suggested when similar prompts were offered instead); its _count is the Asks answered.",
        metrics::FAST_SECONDS,
    ),
    streams_open: metrics::gauge("answers_streams_open", "Ask and Watch streams open now, by rpc (ask, watch)."),
    similar_vetoed: metrics::counter(
        "answers_similar_vetoed",
        "Stored prompts above the similarity threshold that the near-miss guard held apart from the asked one, \
         by category (numbers, years, counts, negation, direction, order, entities).",
    ),
    partials_dropped: metrics::counter(
        "partials_dropped",
        "Partial answers a stream following the prompt did not send, by reason: slow_client (its client had \
         not read the events before; the next partial holds the whole text so far), behind (the stream fell \
         behind the replica's partials of the prompt).",
    ),
});

/// The `match` label of an Ask.
pub(crate) fn match_label(kind: MatchKind) -> &'static str {
    match kind {
        MatchKind::Exact => "exact",
        MatchKind::Similar => "similar",
        MatchKind::New => "new",
        MatchKind::ById => "by_id",
        MatchKind::Unspecified => "unspecified",
    }
}

/// The `match` label of an Ask answered with suggestions.
pub(crate) const SUGGESTED: &str = "suggested";

/// Every `match` label an Ask can have.
const MATCH_LABELS: [&str; 5] = ["exact", "similar", "new", "by_id", SUGGESTED];
/// The `rpc` label of streams counted open.
const STREAM_RPCS: [&str; 2] = ["ask", "watch"];

/// Makes the answers families appear in scrapes from the start, each match kind at zero.
pub fn register() {
    LazyLock::force(&FIRST_EVENT);
    LazyLock::force(&STREAMS_OPEN);
    for category in crate::guard::Category::ALL {
        let _ = METRICS.similar_vetoed.get_or_create(&metrics::labels([("category", category.as_str())]));
    }
    for reason in ["slow_client", "behind"] {
        let _ = METRICS.partials_dropped.get_or_create(&metrics::labels([("reason", reason)]));
    }
}

/// Counts a near prompt the guard held apart.
pub(crate) fn similar_vetoed(category: &'static str) {
    METRICS.similar_vetoed.get_or_create(&metrics::labels([("category", category)])).inc();
}

/// Counts partial answers a stream did not send.
pub(crate) fn partials_dropped(reason: &'static str, count: u64) {
    METRICS.partials_dropped.get_or_create(&metrics::labels([("reason", reason)])).inc_by(count);
}

/// The series of one label value, looked up among those kept (no label set built and hashed:
/// an exact hit is a few microseconds of work, and these are on every one), else made.
fn series<M: Clone>(kept: &[(&'static str, M)], value: &'static str, make: impl FnOnce() -> M) -> M {
    match kept.iter().find(|(kept, _)| *kept == value) {
        Some((_, series)) => series.clone(),
        None => make(),
    }
}

fn first_event(kind: &str) -> Histogram {
    METRICS.first_event.get_or_create(&metrics::labels([("match", kind)])).clone()
}

fn streams_open(rpc: &str) -> Gauge {
    METRICS.streams_open.get_or_create(&metrics::labels([("rpc", rpc)])).clone()
}

/// The first-event series of every match kind, the ones [`register`] makes.
static FIRST_EVENT: LazyLock<Vec<(&'static str, Histogram)>> =
    LazyLock::new(|| MATCH_LABELS.iter().map(|kind| (*kind, first_event(kind))).collect());

/// The open-streams series of Ask and Watch.
static STREAMS_OPEN: LazyLock<Vec<(&'static str, Gauge)>> =
    LazyLock::new(|| STREAM_RPCS.iter().map(|rpc| (*rpc, streams_open(rpc))).collect());

pub(crate) fn ask_answered(matched: &'static str, elapsed: std::time::Duration) {
    series(&FIRST_EVENT, matched, || first_event(matched)).observe(elapsed.as_secs_f64());
}

/// Counts a stream as open until the guard is dropped (with the stream).
pub(crate) fn stream_opened(rpc: &'static str) -> StreamGuard {
    let open = series(&STREAMS_OPEN, rpc, || streams_open(rpc));
    open.inc();
    StreamGuard { open }
}

/// Held by an open stream; dropping it counts the stream as closed.
pub(crate) struct StreamGuard {
    open: Gauge,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.open.dec();
    }
}
