//! The answers service's metrics: Asks by how their prompt was found, with the time to their
//! first event, the streams open, and how the replica's exact-hit caches serve.

use std::sync::LazyLock;

use aap_platform::metrics::prometheus_client::metrics::counter::Counter;
use aap_platform::metrics::prometheus_client::metrics::gauge::Gauge;
use aap_platform::metrics::prometheus_client::metrics::histogram::Histogram;
use aap_platform::metrics::{self, Counters, Gauges, Histograms};
use aap_proto::v1::MatchKind;

struct Metrics {
    first_event: Histograms,
    streams_open: Gauges,
    partials_dropped: Counters,
    similar_vetoed: Counters,
    unreadable: Counters,
    reachability_checked: Counters,
    unreachable: Gauges,
    cache_lookups: Counters,
    cache_entries: Gauges,
    cache_bytes: Gauges,
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
    unreadable: metrics::counter(
        "answers_unreadable_prompts",
        "Asked texts the embedding model could mostly not read (more than half of their word pieces unknown: \
         emoji, symbols, words over 100 characters), matched exactly or asked as new, never by similarity.",
    ),
    reachability_checked: metrics::counter(
        "answers_reachability_checked",
        "Stored prompts the reachability audit asked the similarity index for (their own embedding); \
         --similarity-audit-per-second a second over all replicas.",
    ),
    unreachable: metrics::gauge(
        "answers_unreachable_prompts",
        "Stored prompts the similarity index does not return for their own embedding, as the audit last \
         counted them; the similarity search scans them exactly beside the index (docs/matching.md).",
    ),
    cache_lookups: metrics::counter(
        "answers_cache_lookups",
        "Lookups in the replica's memory on the way to an answer, by cache (settled: a prompt's answers once \
         every evaluation is final; prompt_hash: prompts by their canonical text's hash; prompt_id: prompts by id; \
         asked_as: prompts by the text as it was asked) and result (hit; miss: read from the database; stale, \
         settled only: kept but older than its max age or heard before a NATS reconnect, read again).",
    ),
    cache_entries: metrics::gauge(
        "answers_cache_entries",
        "Entries in each of the replica's exact-hit caches now, by cache (settled, prompt_hash, prompt_id, \
         asked_as); each holds at most --answers-cache-entries (10,000), the oldest out first.",
    ),
    cache_bytes: metrics::gauge(
        "answers_cache_bytes",
        "Estimated bytes each of the replica's exact-hit caches holds now (what its entries' strings hold), by \
         cache; each holds at most --answers-cache-mib (32 MiB), the oldest out first.",
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

/// One of the replica's caches on the exact-hit path (hub.rs), the `cache` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cache {
    /// A prompt's snapshot once every evaluation is final.
    Settled = 0,
    /// Prompts by their canonical text's hash.
    PromptHash = 1,
    /// Prompts by id.
    PromptId = 2,
    /// Prompts by the text as it was asked.
    AskedAs = 3,
}

impl Cache {
    const ALL: [Cache; 4] = [Cache::Settled, Cache::PromptHash, Cache::PromptId, Cache::AskedAs];

    fn label(self) -> &'static str {
        match self {
            Cache::Settled => "settled",
            Cache::PromptHash => "prompt_hash",
            Cache::PromptId => "prompt_id",
            Cache::AskedAs => "asked_as",
        }
    }
}

/// What a cache lookup found, the `result` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    Hit = 0,
    Miss = 1,
    /// Kept, but not to be served any more (too old, or heard before a NATS reconnect).
    Stale = 2,
}

impl Lookup {
    const ALL: [Lookup; 3] = [Lookup::Hit, Lookup::Miss, Lookup::Stale];

    fn label(self) -> &'static str {
        match self {
            Lookup::Hit => "hit",
            Lookup::Miss => "miss",
            Lookup::Stale => "stale",
        }
    }
}

/// The lookup series, by cache and result (indexed by their discriminants, the order of `ALL`;
/// kept: they are on every exact hit).
static CACHE_LOOKUPS: LazyLock<[[Counter; 3]; 4]> = LazyLock::new(|| {
    Cache::ALL.map(|cache| {
        Lookup::ALL.map(|result| {
            let labels = metrics::labels([("cache", cache.label()), ("result", result.label())]);
            METRICS.cache_lookups.get_or_create(&labels).clone()
        })
    })
});

/// Counts a lookup in `cache` that found `result`.
pub(crate) fn cache_lookup(cache: Cache, result: Lookup) {
    CACHE_LOOKUPS[cache as usize][result as usize].inc();
}

/// What one cache shows: the entries it holds, and their estimated bytes.
#[derive(Clone, Default)]
pub(crate) struct CacheGauges {
    pub entries: Gauge,
    pub bytes: Gauge,
}

impl CacheGauges {
    /// The series of `cache`.
    pub(crate) fn of(cache: Cache) -> CacheGauges {
        let labels = metrics::labels([("cache", cache.label())]);
        CacheGauges {
            entries: METRICS.cache_entries.get_or_create(&labels).clone(),
            bytes: METRICS.cache_bytes.get_or_create(&labels).clone(),
        }
    }
}

/// Makes the answers families appear in scrapes from the start, each match kind at zero.
pub fn register() {
    LazyLock::force(&FIRST_EVENT);
    LazyLock::force(&STREAMS_OPEN);
    LazyLock::force(&CACHE_LOOKUPS);
    for cache in Cache::ALL {
        let _ = CacheGauges::of(cache);
    }
    for category in crate::guard::Category::ALL {
        let _ = METRICS.similar_vetoed.get_or_create(&metrics::labels([("category", category.as_str())]));
    }
    let _ = METRICS.unreadable.get_or_create(&Vec::new());
    let _ = METRICS.reachability_checked.get_or_create(&Vec::new());
    let _ = METRICS.unreachable.get_or_create(&Vec::new());
    for reason in ["slow_client", "behind"] {
        let _ = METRICS.partials_dropped.get_or_create(&metrics::labels([("reason", reason)]));
    }
}

/// Counts a near prompt the guard held apart.
pub(crate) fn similar_vetoed(category: &'static str) {
    METRICS.similar_vetoed.get_or_create(&metrics::labels([("category", category)])).inc();
}

/// Counts an asked text kept out of the similarity search because the model could not read it.
pub(crate) fn unreadable_prompt() {
    METRICS.unreadable.get_or_create(&Vec::new()).inc();
}

/// Counts a round of the reachability audit: prompts checked, and those listed as unreachable.
pub(crate) fn reachability_audited(checked: u64, listed: i64) {
    METRICS.reachability_checked.get_or_create(&Vec::new()).inc_by(checked);
    METRICS.unreachable.get_or_create(&Vec::new()).set(listed);
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
