//! The answers service's metrics: Asks by how their prompt was found, with the time to their
//! first event, and the streams open.

use std::sync::LazyLock;

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

/// Makes the answers families appear in scrapes from the start, each match kind at zero.
pub fn register() {
    for kind in ["exact", "similar", "new", "by_id", SUGGESTED] {
        let _ = METRICS.first_event.get_or_create(&metrics::labels([("match", kind)]));
    }
    for rpc in ["ask", "watch"] {
        let _ = METRICS.streams_open.get_or_create(&metrics::labels([("rpc", rpc)]));
    }
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

pub(crate) fn ask_answered(matched: &'static str, elapsed: std::time::Duration) {
    METRICS.first_event.get_or_create(&metrics::labels([("match", matched)])).observe(elapsed.as_secs_f64());
}

/// Counts a stream as open until the guard is dropped (with the stream).
pub(crate) fn stream_opened(rpc: &'static str) -> StreamGuard {
    METRICS.streams_open.get_or_create(&metrics::labels([("rpc", rpc)])).inc();
    StreamGuard { rpc }
}

/// Held by an open stream; dropping it counts the stream as closed.
pub(crate) struct StreamGuard {
    rpc: &'static str,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        METRICS.streams_open.get_or_create(&metrics::labels([("rpc", self.rpc)])).dec();
    }
}
