//! What every stream of one replica knows about the prompts it follows, read once and shared.
//!
//! One core-NATS subscription per replica (`<prefix>.events.prompt.>`) hears every prompt's
//! changes. An announcement that tells the changed evaluations as they are now (and the answer
//! stored with them) is applied to the followed prompt's [`Snapshot`] without reading anything;
//! one that says only that something changed re-reads the prompt once (however many streams
//! wait on it). The new snapshot goes to its streams through a `watch` channel. Of what was read
//! and what was heard, each evaluation is kept at its highest revision and each target's newest
//! answer, so announcements that arrive out of order, or during a read, never set a stream back.
//! Nothing re-reads the database per stream: a sweep per replica compares the followed prompts'
//! evaluations with one query, in case an announcement was lost.
//!
//! The same subscription hears the partial answers bots report while an assistant types
//! (`<prefix>.events.prompt.<id>.partial`): a followed prompt's go to its streams through a
//! small `broadcast` channel, where a stream that falls behind loses the oldest (each partial
//! holds the whole text so far, so the next one makes up for it); others are ignored unread.
//!
//! Snapshots in which every evaluation is final are also kept (bounded, oldest out first) for
//! exact hits: answers do not change once stored, so such a prompt is served from memory until
//! an announcement about it arrives, the NATS connection is re-established (announcements may
//! have been missed meanwhile), or the snapshot is `max_age` old. Prompt texts are kept by hash
//! and by id (they never change).

use std::borrow::Cow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use aap_evaluations::model::Status;
use aap_evaluations::partial::PartialMessage;
use aap_evaluations::queue::{Change, Told};
use aap_evaluations::store::{self as evals, AnswerRow, EvaluationRow};
use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::{broadcast, watch};

use crate::metrics::{Cache, CacheGauges, Lookup};
use crate::store::PromptRow;

/// What a prompt's streams are told from: its evaluations and their answers (without page
/// HTML). A re-read after a change of state alone reads the evaluations and keeps the answers
/// read before (shared), unless an evaluation was answered since.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// By id.
    pub rows: Vec<EvaluationRow>,
    /// The newest of each target.
    pub answers: Arc<Vec<AnswerRow>>,
    /// Whether the prompt was read (the default, before any read, knows nothing).
    read: bool,
}

impl Snapshot {
    /// What `self` and `other` (each a view of the prompt at some moment) know together: each
    /// evaluation at its higher revision, each target's newer answer. `None` when that is
    /// `self`. Nothing is known before the first read: merged into the default, `other` is
    /// taken as it is.
    fn merge(&self, other: &Snapshot) -> Option<Snapshot> {
        if !self.read {
            let mut rows = other.rows.clone();
            rows.sort_by_key(|row| row.id);
            return Some(Snapshot { rows, answers: other.answers.clone(), read: other.read });
        }
        let mut rows = Cow::Borrowed(&self.rows);
        if !rows.is_sorted_by_key(|row| row.id) {
            rows.to_mut().sort_by_key(|row| row.id);
        }
        for row in &other.rows {
            match rows.binary_search_by_key(&row.id, |r| r.id) {
                Ok(at) if rows[at].revision < row.revision => {
                    let rows = rows.to_mut();
                    let prompt_text = std::mem::take(&mut rows[at].prompt_text);
                    rows[at] = row.clone();
                    if rows[at].prompt_text.is_empty() {
                        rows[at].prompt_text = prompt_text;
                    }
                }
                Ok(_) => {}
                Err(at) => rows.to_mut().insert(at, row.clone()),
            }
        }
        let mut answers = Cow::Borrowed(self.answers.as_slice());
        for answer in other.answers.iter() {
            match answers.iter().position(|a| a.assistant == answer.assistant && a.plan == answer.plan) {
                Some(at) if answers[at].evaluation_id >= answer.evaluation_id => {}
                Some(at) => answers.to_mut()[at] = answer.clone(),
                None => answers.to_mut().push(answer.clone()),
            }
        }
        let answers = match answers {
            Cow::Borrowed(_) if matches!(rows, Cow::Borrowed(_)) => return None,
            Cow::Borrowed(_) => self.answers.clone(),
            Cow::Owned(answers) => Arc::new(answers),
        };
        Some(Snapshot { rows: rows.into_owned(), answers, read: true })
    }

    /// Roughly the memory the snapshot holds: its rows and answers, with what their strings hold
    /// (a prompt asked for years holds every evaluation it had, each with the prompt's text).
    fn heap_bytes(&self) -> usize {
        let rows: usize = self.rows.iter().map(row_bytes).sum();
        let answers: usize = self.answers.iter().map(answer_bytes).sum();
        size_of::<Snapshot>() + rows + answers
    }

    /// Whether every evaluation is final, so that only a new evaluation can change it.
    fn settled(&self) -> bool {
        !self.rows.is_empty() && self.rows.iter().all(|row| row.status().is_final())
    }

    /// Whether `answers` lack an answer `rows` say is stored: an evaluation answered whose
    /// target's newest answer (all `answers` holds per target) is from an older evaluation.
    fn lacks_answers(rows: &[EvaluationRow], answers: &[AnswerRow]) -> bool {
        rows.iter().filter(|row| row.status() == Status::Answered).any(|row| {
            !answers.iter().any(|a| a.assistant == row.assistant && a.plan == row.plan && a.evaluation_id >= row.id)
        })
    }

    /// The part of the evaluations a change shows in.
    fn fingerprint(rows: &[EvaluationRow]) -> Vec<(i64, String, i32, Option<String>)> {
        rows.iter().map(|r| (r.id, r.status.clone(), r.attempts, r.failure_reason.clone())).collect()
    }
}

/// Settings of the hub.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// How often the replica compares its followed prompts with the database.
    pub sweep_every: Duration,
    /// Settled snapshots and prompt texts kept for exact hits: entries each cache holds at most.
    pub cache_entries: usize,
    /// Bytes each of those caches holds at most (estimated from what its strings hold).
    pub cache_bytes: usize,
    /// Longest a settled snapshot is served from memory.
    pub max_age: Duration,
}

/// Partials one stream may fall behind by before it loses the oldest.
const PARTIALS_BEHIND: usize = 8;

/// One followed prompt: the latest snapshot, whether a re-read is running or wanted, and the
/// partial answers heard for it.
struct Feed {
    tx: watch::Sender<Arc<Snapshot>>,
    reading: AtomicBool,
    dirty: AtomicBool,
    /// The next re-read must read the answers too (a change other than of state alone).
    answers_dirty: AtomicBool,
    partials: broadcast::Sender<Arc<PartialMessage>>,
}

impl Feed {
    /// Hands what was read or heard of the prompt to its streams, merged with what they hold
    /// (nothing older replaces anything newer); returns what they hold now.
    fn hand(&self, incoming: &Snapshot) -> Arc<Snapshot> {
        self.tx.send_if_modified(|current| match current.merge(incoming) {
            Some(merged) => {
                *current = Arc::new(merged);
                true
            }
            None => false,
        });
        self.tx.borrow().clone()
    }
}

/// A settled snapshot kept for exact hits.
struct Kept {
    snapshot: Arc<Snapshot>,
    read_at: Instant,
    /// The NATS connection count when it was read: a reconnect may have lost announcements.
    connects: u64,
}

/// What a cache may hold: entries, and bytes as its weigher estimates them.
#[derive(Debug, Clone, Copy)]
struct Limits {
    entries: usize,
    bytes: usize,
}

/// A map that keeps at most `limits.entries` entries and `limits.bytes` of them (as `weigh`
/// estimates each), dropping the oldest inserted first; an entry larger than all it may hold is
/// not kept. Its gauges show what it holds.
struct Bounded<K, V> {
    map: HashMap<K, (V, usize)>,
    order: VecDeque<K>,
    limits: Limits,
    bytes: usize,
    weigh: fn(&K, &V) -> usize,
    gauges: CacheGauges,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(limits: Limits, weigh: fn(&K, &V) -> usize, gauges: CacheGauges) -> Bounded<K, V> {
        let bounded = Bounded { map: HashMap::new(), order: VecDeque::new(), limits, bytes: 0, weigh, gauges };
        bounded.show();
        bounded
    }

    fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
    {
        self.map.get(key).map(|(value, _)| value)
    }

    fn insert(&mut self, key: K, value: V) {
        let weight = (self.weigh)(&key, &value);
        if self.limits.entries == 0 || weight > self.limits.bytes {
            // Too large to keep: nor is an older value of the key served any longer.
            return self.remove(&key);
        }
        match self.map.insert(key.clone(), (value, weight)) {
            Some((_, before)) => self.bytes -= before,
            None => self.order.push_back(key),
        }
        self.bytes += weight;
        while self.map.len() > self.limits.entries || self.bytes > self.limits.bytes {
            match self.order.pop_front() {
                Some(oldest) => {
                    if let Some((_, weight)) = self.map.remove(&oldest) {
                        self.bytes -= weight;
                    }
                }
                None => break,
            }
        }
        // Removed keys leave their place in `order`; compact it when it has grown far beyond.
        if self.order.len() > 2 * self.limits.entries.max(16) {
            let map = &self.map;
            self.order.retain(|key| map.contains_key(key));
        }
        self.show();
    }

    fn remove(&mut self, key: &K) {
        if let Some((_, weight)) = self.map.remove(key) {
            self.bytes -= weight;
            self.show();
        }
    }

    fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
        self.bytes = 0;
        self.show();
    }

    fn show(&self) {
        self.gauges.entries.set(self.map.len() as i64);
        self.gauges.bytes.set(self.bytes as i64);
    }
}

/// What a map entry costs besides what its key and value hold: the table's slot, the order's.
const ENTRY_BYTES: usize = 64;

/// The estimated size of a kept prompt under a key of `key_bytes`.
fn prompt_bytes(key_bytes: usize, prompt: &PromptRow) -> usize {
    ENTRY_BYTES + key_bytes + size_of::<PromptRow>() + prompt.text.capacity()
}

fn weigh_by_hash(hash: &Vec<u8>, prompt: &PromptRow) -> usize {
    prompt_bytes(hash.capacity(), prompt)
}

fn weigh_by_id(_: &i64, prompt: &PromptRow) -> usize {
    prompt_bytes(size_of::<i64>(), prompt)
}

// A weigher takes the map's key as it is kept: here a `Box<str>`.
#[allow(clippy::borrowed_box)]
fn weigh_by_text(text: &Box<str>, prompt: &PromptRow) -> usize {
    prompt_bytes(text.len(), prompt)
}

fn weigh_kept(_: &i64, kept: &Kept) -> usize {
    ENTRY_BYTES + size_of::<Kept>() + kept.snapshot.heap_bytes()
}

/// The bytes of strings: each one's capacity.
fn strings<'a>(all: impl IntoIterator<Item = &'a String>) -> usize {
    all.into_iter().map(String::capacity).sum()
}

/// The estimated memory of an evaluation row: the struct and what its strings hold.
fn row_bytes(row: &EvaluationRow) -> usize {
    let optional = [&row.ack_subject, &row.failure_reason, &row.claimed_by, &row.claimed_principal];
    let trace: usize = row
        .trace_context
        .0
        .iter()
        .map(|(key, value)| 2 * size_of::<String>() + key.capacity() + value.capacity())
        .sum();
    size_of::<EvaluationRow>()
        + strings([&row.prompt_text, &row.assistant, &row.plan, &row.status])
        + strings(optional.into_iter().flatten())
        + trace
}

/// The estimated memory of an answer: the struct and what its strings, citations and products hold.
fn answer_bytes(answer: &AnswerRow) -> usize {
    let own = [
        &answer.assistant,
        &answer.plan,
        &answer.response_text,
        &answer.response_markdown,
        &answer.kind,
        &answer.response_html,
        &answer.model,
        &answer.adapter_version,
        &answer.adapter_fingerprint,
        &answer.bot_id,
        &answer.account_id,
        &answer.account_label,
    ];
    let lists = [&answer.finish_signals, &answer.missing_roles, &answer.search_queries.0];
    let listed: usize = lists.iter().map(|list| list.len() * size_of::<String>() + strings(list.iter())).sum();
    let citations: usize = answer
        .citations
        .0
        .iter()
        .map(|c| size_of::<aap_evaluations::model::Citation>() + strings([&c.url, &c.title, &c.domain]))
        .sum();
    let products: usize = answer
        .products
        .0
        .iter()
        .map(|p| size_of::<aap_evaluations::model::Product>() + strings([&p.name, &p.url, &p.price, &p.merchant]))
        .sum();
    size_of::<AnswerRow>() + strings(own) + listed + citations + products
}

struct Inner {
    pool: PgPool,
    client: async_nats::Client,
    config: HubConfig,
    /// `<prefix>.events.prompt`: what every subject the hub hears starts with.
    subject_prefix: String,
    feeds: Mutex<HashMap<i64, Weak<Feed>>>,
    settled: Mutex<Bounded<i64, Kept>>,
    prompts: Mutex<Bounded<Vec<u8>, PromptRow>>,
    prompts_by_id: Mutex<Bounded<i64, PromptRow>>,
    /// Prompts by the text they were asked in, as it came (see [`Hub::prompt_asked_as`]).
    prompts_asked_as: Mutex<Bounded<Box<str>, PromptRow>>,
}

/// The longest text [`Hub::remember_asked_as`] keeps, asked or stored: most prompts are
/// shorter, and the cache's memory stays bounded (10,000 entries of two texts of at most 512
/// bytes each, about 10 MB at most).
pub const MAX_ASKED_AS_BYTES: usize = 512;

/// The replica's shared view of the prompts its streams follow; cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

/// A stream's hold on a followed prompt; the prompt stops being followed when the last is
/// dropped.
pub struct Following {
    feed: Arc<Feed>,
}

impl Following {
    /// The prompt's snapshots: the latest at once, then every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.feed.tx.subscribe()
    }

    /// The prompt's latest snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.feed.tx.borrow().clone()
    }

    /// The partial answers heard for the prompt from now on; a receiver that falls behind
    /// by more than a few loses the oldest.
    pub fn partials(&self) -> broadcast::Receiver<Arc<PartialMessage>> {
        self.feed.partials.subscribe()
    }
}

/// The prompt `kept` (the `cache`) holds under `key`, or the one `load` finds, kept from then on
/// (a prompt's text never changes); one not found is looked for again the next time.
async fn remembered<K: Hash + Eq + Clone, F: Future<Output = sqlx::Result<Option<PromptRow>>>>(
    kept: &Mutex<Bounded<K, PromptRow>>,
    cache: Cache,
    key: K,
    load: impl FnOnce() -> F,
) -> sqlx::Result<Option<PromptRow>> {
    if let Some(prompt) = lock(kept).get(&key) {
        crate::metrics::cache_lookup(cache, Lookup::Hit);
        return Ok(Some(prompt.clone()));
    }
    crate::metrics::cache_lookup(cache, Lookup::Miss);
    let found = load().await?;
    if let Some(prompt) = &found {
        lock(kept).insert(key, prompt.clone());
    }
    Ok(found)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind: keep using it.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Hub {
    /// Subscribes to every prompt's announcements and partial answers under `subject_prefix`
    /// (e.g. `aap.events.prompt`) and starts the sweep; both end when the last clone is dropped.
    pub async fn start(
        pool: PgPool,
        client: async_nats::Client,
        subject_prefix: &str,
        config: HubConfig,
    ) -> Result<Hub, async_nats::SubscribeError> {
        let announcements = client.subscribe(format!("{subject_prefix}.>")).await?;
        let limits = Limits { entries: config.cache_entries, bytes: config.cache_bytes };
        let inner = Arc::new(Inner {
            pool,
            client,
            config,
            subject_prefix: subject_prefix.to_owned(),
            feeds: Mutex::new(HashMap::new()),
            settled: Mutex::new(Bounded::new(limits, weigh_kept, CacheGauges::of(Cache::Settled))),
            prompts: Mutex::new(Bounded::new(limits, weigh_by_hash, CacheGauges::of(Cache::PromptHash))),
            prompts_by_id: Mutex::new(Bounded::new(limits, weigh_by_id, CacheGauges::of(Cache::PromptId))),
            prompts_asked_as: Mutex::new(Bounded::new(limits, weigh_by_text, CacheGauges::of(Cache::AskedAs))),
        });
        tokio::spawn(listen(Arc::downgrade(&inner), announcements));
        Ok(Hub { inner })
    }

    /// The stored prompt of a normalised hash, from memory when it was seen before.
    pub async fn prompt_by_hash(&self, hash: &[u8]) -> sqlx::Result<Option<PromptRow>> {
        let load = || crate::store::prompt_by_hash(&self.inner.pool, hash);
        remembered(&self.inner.prompts, Cache::PromptHash, hash.to_vec(), load).await
    }

    /// The stored prompt last found for a text asked exactly so (the same bytes), from memory
    /// only. The text's canonical form and hash are a pure function of it, and a stored prompt
    /// never changes: a text asked again skips both (a tenth of an exact hit's CPU in a profile).
    pub fn prompt_asked_as(&self, text: &str) -> Option<PromptRow> {
        let found = lock(&self.inner.prompts_asked_as).get(text).cloned();
        crate::metrics::cache_lookup(Cache::AskedAs, if found.is_some() { Lookup::Hit } else { Lookup::Miss });
        found
    }

    /// Remembers that `text`, as asked, is `prompt` (found by its canonical form's hash); a text
    /// or a prompt's text longer than [`MAX_ASKED_AS_BYTES`] is not kept.
    pub fn remember_asked_as(&self, text: &str, prompt: &PromptRow) {
        if text.len() <= MAX_ASKED_AS_BYTES && prompt.text.len() <= MAX_ASKED_AS_BYTES {
            lock(&self.inner.prompts_asked_as).insert(text.into(), prompt.clone());
        }
    }

    /// The stored prompt `id`, from memory when it was seen before.
    pub async fn prompt_by_id(&self, id: i64) -> sqlx::Result<Option<PromptRow>> {
        remembered(&self.inner.prompts_by_id, Cache::PromptId, id, || crate::store::prompt_by_id(&self.inner.pool, id))
            .await
    }

    /// Follows `prompt_id`: from now on every announcement about it re-reads it.
    pub fn follow(&self, prompt_id: i64) -> Following {
        let mut feeds = lock(&self.inner.feeds);
        if let Some(feed) = feeds.get(&prompt_id).and_then(Weak::upgrade) {
            return Following { feed };
        }
        let (tx, _) = watch::channel(Arc::new(Snapshot::default()));
        let (partials, _) = broadcast::channel(PARTIALS_BEHIND);
        let feed = Arc::new(Feed {
            tx,
            reading: AtomicBool::new(false),
            dirty: AtomicBool::new(false),
            answers_dirty: AtomicBool::new(false),
            partials,
        });
        feeds.insert(prompt_id, Arc::downgrade(&feed));
        Following { feed }
    }

    /// The prompt's snapshot now, handed to its streams too: from memory when a settled one is
    /// kept and `fresh` is false (then `.1` is true), otherwise read. A lookup in memory is
    /// counted (`aap_answers_cache_lookups_total`, cache `settled`).
    pub async fn read(
        &self,
        prompt_id: i64,
        following: &Following,
        fresh: bool,
    ) -> sqlx::Result<(Arc<Snapshot>, bool)> {
        if !fresh {
            match self.lookup(prompt_id) {
                Ok(snapshot) => {
                    crate::metrics::cache_lookup(Cache::Settled, Lookup::Hit);
                    return Ok((following.feed.hand(&snapshot), true));
                }
                Err(result) => crate::metrics::cache_lookup(Cache::Settled, result),
            }
        }
        let snapshot = self.inner.read(prompt_id).await?;
        Ok((following.feed.hand(&snapshot), false))
    }

    /// Hands evaluations this replica has just written (with their prompt's text) to the
    /// prompt's streams, as an announcement of them would: nothing is read.
    pub fn told(&self, prompt_id: i64, following: &Following, rows: Vec<EvaluationRow>) -> Arc<Snapshot> {
        let snapshot = following.feed.hand(&Snapshot { rows, answers: Arc::default(), read: true });
        self.inner.keep(prompt_id, &snapshot, self.inner.connects());
        snapshot
    }

    /// The prompt's settled snapshot kept in memory, while it may be used (no reconnect to NATS
    /// since it was read, younger than the sweep's max age). Not counted: an Ask served whole
    /// from it counts its hit ([`Hub::served_from_memory`]); one that goes on reads through
    /// [`Hub::read`], which counts.
    pub fn kept(&self, prompt_id: i64) -> Option<Arc<Snapshot>> {
        self.lookup(prompt_id).ok()
    }

    /// Counts an Ask served whole from [`Hub::kept`]'s snapshot, a hit of the settled cache.
    pub fn served_from_memory(&self) {
        crate::metrics::cache_lookup(Cache::Settled, Lookup::Hit);
    }

    /// [`Hub::kept`], or why not: nothing kept (`Miss`), or kept but not to be used (`Stale`).
    fn lookup(&self, prompt_id: i64) -> Result<Arc<Snapshot>, Lookup> {
        let connects = self.inner.connects();
        let settled = lock(&self.inner.settled);
        let kept = settled.get(&prompt_id).ok_or(Lookup::Miss)?;
        let usable = kept.connects == connects && kept.read_at.elapsed() < self.inner.config.max_age;
        usable.then(|| kept.snapshot.clone()).ok_or(Lookup::Stale)
    }
}

impl Inner {
    fn connects(&self) -> u64 {
        self.client.statistics().connects.load(Ordering::Relaxed)
    }

    /// Reads the prompt, and keeps the snapshot for exact hits when it is settled.
    async fn read(&self, prompt_id: i64) -> sqlx::Result<Arc<Snapshot>> {
        self.read_after(prompt_id, None).await
    }

    /// [`Inner::read`]; with `before` (the snapshot before a change of state alone) only the
    /// evaluations are read and `before`'s answers kept, unless the evaluations say an answer
    /// was stored that `before` lacks (the announcement of a stored answer, which reads the
    /// answers anyway, may not have arrived yet).
    async fn read_after(&self, prompt_id: i64, before: Option<&Snapshot>) -> sqlx::Result<Arc<Snapshot>> {
        let connects = self.connects();
        let rows = evals::evaluations_of_prompt(&self.pool, prompt_id).await?;
        let answers = match before {
            Some(before) if !Snapshot::lacks_answers(&rows, &before.answers) => before.answers.clone(),
            _ => Arc::new(evals::current_answers_of_prompt(&self.pool, prompt_id, false).await?),
        };
        let snapshot = Arc::new(Snapshot { rows, answers, read: true });
        self.keep(prompt_id, &snapshot, connects);
        Ok(snapshot)
    }

    /// Keeps a settled snapshot for exact hits (known as of `connects`), and forgets the
    /// prompt's otherwise.
    fn keep(&self, prompt_id: i64, snapshot: &Arc<Snapshot>, connects: u64) {
        let mut settled = lock(&self.settled);
        match snapshot.settled() {
            true => settled.insert(prompt_id, Kept { snapshot: snapshot.clone(), read_at: Instant::now(), connects }),
            false => settled.remove(&prompt_id),
        }
    }

    fn feed(&self, prompt_id: i64) -> Option<Arc<Feed>> {
        let mut feeds = lock(&self.feeds);
        let feed = feeds.get(&prompt_id)?.upgrade();
        if feed.is_none() {
            feeds.remove(&prompt_id);
        }
        feed
    }

    /// A bot reported the text typed so far on one of the prompt's evaluations: hands it to the
    /// prompt's streams, when any follow it.
    fn partial(&self, prompt_id: i64, payload: &[u8]) {
        let Some(feed) = self.feed(prompt_id) else { return };
        match PartialMessage::decode(payload) {
            // No receiver: no stream waits now, and nothing needs keeping for a later one.
            Ok(partial) => drop(feed.partials.send(Arc::new(partial))),
            Err(err) => tracing::debug!(error = %err, prompt_id, "unreadable partial answer ignored"),
        }
    }

    /// Something changed in the prompt: forget what is kept, and bring its streams up to date,
    /// from what the announcement tells when it can, otherwise by reading the prompt again.
    fn changed(self: &Arc<Self>, prompt_id: i64, payload: &[u8]) {
        lock(&self.settled).remove(&prompt_id);
        // Only a followed prompt's announcement is decoded.
        let Some(feed) = self.feed(prompt_id) else { return };
        match Change::of(payload) {
            Change::Told(told) => self.apply(prompt_id, feed, *told),
            Change::State => self.reread(prompt_id, feed, false),
            Change::Any => self.reread(prompt_id, feed, true),
        }
    }

    /// Applies the evaluations and answers an announcement tells, reading nothing, unless the
    /// prompt was not read yet (a read is under way; one more follows it), or the evaluations
    /// say an answer was stored that neither the streams nor the announcement hold (one too
    /// long to announce): then the prompt is read whole.
    fn apply(self: &Arc<Self>, prompt_id: i64, feed: Arc<Feed>, told: Told) {
        let connects = self.connects();
        let current = feed.tx.borrow().clone();
        let prompt_text = current
            .rows
            .first()
            .map(|row| row.prompt_text.clone())
            .or_else(|| lock(&self.prompts_by_id).get(&prompt_id).map(|prompt| prompt.text.clone()));
        let (true, Some(prompt_text)) = (current.read, prompt_text) else {
            return self.reread(prompt_id, feed, true);
        };
        let rows = told
            .evaluations
            .into_iter()
            .filter(|row| row.prompt_id == prompt_id)
            .map(|row| EvaluationRow { prompt_text: prompt_text.clone(), ..row })
            .collect();
        let answers = told.answers.into_iter().filter(|answer| answer.prompt_id == prompt_id).collect();
        let snapshot = feed.hand(&Snapshot { rows, answers: Arc::new(answers), read: true });
        if Snapshot::lacks_answers(&snapshot.rows, &snapshot.answers) {
            return self.reread(prompt_id, feed, true);
        }
        self.keep(prompt_id, &snapshot, connects);
    }

    /// Re-reads a followed prompt (its evaluations alone unless `answers` or an earlier
    /// request wants its answers too); announcements that arrive during a read lead to one
    /// more read after it, not one each.
    fn reread(self: &Arc<Self>, prompt_id: i64, feed: Arc<Feed>, answers: bool) {
        if answers {
            feed.answers_dirty.store(true, Ordering::SeqCst);
        }
        feed.dirty.store(true, Ordering::SeqCst);
        if feed.reading.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = self.clone();
        tokio::spawn(async move {
            loop {
                feed.dirty.store(false, Ordering::SeqCst);
                let whole = feed.answers_dirty.swap(false, Ordering::SeqCst);
                let before = (!whole).then(|| feed.tx.borrow().clone());
                match inner.read_after(prompt_id, before.as_deref()).await {
                    Ok(snapshot) => {
                        feed.hand(&snapshot);
                    }
                    Err(err) => {
                        if whole {
                            feed.answers_dirty.store(true, Ordering::SeqCst);
                        }
                        tracing::warn!(error = %err, prompt_id, "cannot re-read the prompt; the sweep will");
                    }
                }
                feed.reading.store(false, Ordering::SeqCst);
                // Another announcement came during the read, and no other task took it up.
                if !feed.dirty.load(Ordering::SeqCst) || feed.reading.swap(true, Ordering::SeqCst) {
                    break;
                }
            }
        });
    }

    /// Compares every followed prompt's evaluations with the database in one query and
    /// re-reads those that differ from what their streams were told.
    async fn sweep(self: &Arc<Self>, last_connects: &mut u64) {
        let connects = self.connects();
        let reconnected = connects != *last_connects;
        *last_connects = connects;
        if reconnected {
            // Announcements may have been missed while disconnected.
            lock(&self.settled).clear();
        }
        let followed: Vec<(i64, Arc<Feed>)> = {
            let mut feeds = lock(&self.feeds);
            feeds.retain(|_, feed| feed.strong_count() > 0);
            feeds.iter().filter_map(|(id, feed)| Some((*id, feed.upgrade()?))).collect()
        };
        if followed.is_empty() {
            return;
        }
        let ids: Vec<i64> = followed.iter().map(|(id, _)| *id).collect();
        let rows = match evals::evaluations_of_prompts(&self.pool, &ids).await {
            Ok(rows) => rows,
            Err(err) => {
                tracing::warn!(error = %err, "sweep of followed prompts failed");
                return;
            }
        };
        let mut by_prompt: HashMap<i64, Vec<EvaluationRow>> = HashMap::new();
        for row in rows {
            by_prompt.entry(row.prompt_id).or_default().push(row);
        }
        for (id, feed) in followed {
            let now = Snapshot::fingerprint(by_prompt.get(&id).map_or(&[][..], Vec::as_slice));
            let told = Snapshot::fingerprint(&feed.tx.borrow().rows);
            if reconnected || now != told {
                self.reread(id, feed, true);
            }
        }
    }
}

/// What a message under the prompt events prefix says.
#[derive(Debug, PartialEq, Eq)]
enum Announcement {
    /// `<prefix>.<id>`: the prompt's evaluations or answers changed (the payload says how).
    Changed(i64),
    /// `<prefix>.<id>.partial`: a bot's text so far on one of its evaluations.
    Partial(i64),
}

impl Announcement {
    fn of(subject: &str, prefix: &str) -> Option<Announcement> {
        let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
        match rest.split_once('.') {
            None => rest.parse().ok().map(Announcement::Changed),
            Some((id, "partial")) => id.parse().ok().map(Announcement::Partial),
            Some(_) => None,
        }
    }
}

/// Hears announcements and runs the sweep until the hub is dropped.
async fn listen(inner: Weak<Inner>, mut announcements: async_nats::Subscriber) {
    let Some(sweep_every) = inner.upgrade().map(|inner| inner.config.sweep_every) else { return };
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_connects = inner.upgrade().map_or(0, |inner| inner.connects());
    loop {
        tokio::select! {
            message = announcements.next() => {
                let Some(message) = message else { break };
                let Some(inner) = inner.upgrade() else { break };
                match Announcement::of(&message.subject, &inner.subject_prefix) {
                    Some(Announcement::Changed(id)) => inner.changed(id, &message.payload),
                    Some(Announcement::Partial(id)) => inner.partial(id, &message.payload),
                    None => {}
                }
            }
            _ = sweep.tick() => {
                let Some(inner) = inner.upgrade() else { break };
                inner.sweep(&mut last_connects).await;
            }
        }
    }
    tracing::debug!("prompt hub stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_and_partials_are_told_apart_by_subject() {
        let of = |subject| Announcement::of(subject, "t1.events.prompt");
        assert_eq!(of("t1.events.prompt.42"), Some(Announcement::Changed(42)));
        assert_eq!(of("t1.events.prompt.42.partial"), Some(Announcement::Partial(42)));
        assert_eq!(of("t1.events.prompt.42.other"), None);
        assert_eq!(of("t1.events.prompt.x"), None);
        assert_eq!(of("t1.events.prompts.42"), None);
    }

    fn row(id: i64, status: &str, revision: i64) -> EvaluationRow {
        EvaluationRow {
            id,
            prompt_id: 7,
            prompt_text: "the prompt".into(),
            assistant: format!("assistant{id}"),
            plan: "any".into(),
            status: status.into(),
            revision,
            ..EvaluationRow::default()
        }
    }

    fn answer(evaluation_id: i64, assistant: &str, text: &str) -> AnswerRow {
        AnswerRow {
            evaluation_id,
            prompt_id: 7,
            assistant: assistant.into(),
            plan: "any".into(),
            response_text: text.into(),
            ..AnswerRow::default()
        }
    }

    fn snapshot(rows: Vec<EvaluationRow>, answers: Vec<AnswerRow>) -> Snapshot {
        Snapshot { rows, answers: Arc::new(answers), read: true }
    }

    fn states(snapshot: &Snapshot) -> Vec<(i64, &str, i64)> {
        snapshot.rows.iter().map(|r| (r.id, r.status.as_str(), r.revision)).collect()
    }

    #[test]
    fn a_merge_keeps_each_evaluation_at_its_highest_revision_in_whichever_order_they_come() {
        let read = snapshot(vec![row(1, "claimed", 2), row(3, "pending", 0)], vec![]);
        // Heard: 1 submitted (newer), 3 queued (newer), 2 created elsewhere; told without text.
        let heard = snapshot(
            vec![
                row(1, "submitted", 3),
                EvaluationRow { prompt_text: String::new(), ..row(3, "queued", 1) },
                row(2, "queued", 1),
            ],
            vec![],
        );
        let merged = read.merge(&heard).expect("newer");
        assert_eq!(states(&merged), [(1, "submitted", 3), (2, "queued", 1), (3, "queued", 1)]);
        assert!(merged.rows.iter().all(|r| r.prompt_text == "the prompt"), "a told row keeps the text known");
        // The other way round (the read came back after the announcements): the same.
        let other_way = heard.merge(&read).expect("newer");
        assert_eq!(states(&other_way), states(&merged));
        // An older copy changes nothing, and says so.
        assert!(merged.merge(&snapshot(vec![row(1, "claimed", 2)], vec![])).is_none());
        assert!(merged.merge(&merged).is_none());
        // Before the first read nothing is known: what comes is taken as it is.
        let first = Snapshot::default().merge(&read).expect("read");
        assert_eq!(states(&first), states(&read));
    }

    #[test]
    fn a_merge_keeps_each_targets_newest_answer_and_shares_them_when_unchanged() {
        let held = snapshot(vec![row(1, "answered", 4)], vec![answer(1, "assistant1", "first")]);
        let older = snapshot(vec![], vec![answer(0, "assistant1", "older")]);
        assert!(held.merge(&older).is_none(), "an older answer never replaces a newer one");
        let refreshed =
            snapshot(vec![row(5, "answered", 4)], vec![answer(5, "assistant1", "refreshed"), answer(6, "b", "new")]);
        let merged = held.merge(&refreshed).expect("newer");
        let texts: Vec<&str> = merged.answers.iter().map(|a| a.response_text.as_str()).collect();
        assert_eq!(texts, ["refreshed", "new"]);
        // A change of state alone keeps the very answers held (no copy).
        let state = held.merge(&snapshot(vec![row(1, "answered", 5)], vec![])).expect("newer");
        assert!(Arc::ptr_eq(&state.answers, &held.answers));
    }

    /// Entries weigh 10 bytes each, or their value when it is larger.
    fn weigh_value(_: &i64, value: &i64) -> usize {
        (*value as usize).max(10)
    }

    fn bounded(entries: usize, bytes: usize) -> (Bounded<i64, i64>, CacheGauges) {
        let gauges = CacheGauges::default();
        (Bounded::new(Limits { entries, bytes }, weigh_value, gauges.clone()), gauges)
    }

    #[test]
    fn the_bounded_map_drops_the_oldest_first_and_never_grows_past_its_capacity() {
        let (mut map, gauges) = bounded(3, usize::MAX);
        for n in 0..10 {
            map.insert(n, n);
            assert!(map.map.len() <= 3);
            assert_eq!(gauges.entries.get(), map.map.len() as i64, "the gauge shows what it holds");
        }
        assert_eq!((map.get(&9), map.get(&7), map.get(&6)), (Some(&9), Some(&7), None));
        assert_eq!(gauges.bytes.get(), 30);
        map.remove(&8);
        assert_eq!((gauges.entries.get(), gauges.bytes.get()), (2, 20));
        map.remove(&8);
        assert_eq!(gauges.entries.get(), 2, "a key removed twice counts once");
        map.insert(10, 10);
        assert_eq!(map.get(&7), Some(&7), "a removed key frees its place");
        for n in 0..1000 {
            map.remove(&n);
            map.insert(n, n % 10);
        }
        assert!(map.order.len() <= 2 * 16 + 1, "removed keys do not pile up: {}", map.order.len());
        map.clear();
        assert_eq!(map.get(&999), None);
        assert_eq!((gauges.entries.get(), gauges.bytes.get()), (0, 0));
        let (mut none, _) = bounded(0, usize::MAX);
        none.insert(1, 1);
        assert_eq!(none.get(&1), None);
    }

    #[test]
    fn the_bounded_map_never_holds_more_bytes_than_it_may() {
        let (mut map, gauges) = bounded(1000, 100);
        for n in 0..10 {
            map.insert(n, 10);
        }
        assert_eq!((map.map.len(), map.bytes), (10, 100));
        // A large one pushes the oldest out until it fits.
        map.insert(10, 45);
        assert_eq!((map.get(&4), map.get(&5), map.get(&10)), (None, Some(&10), Some(&45)));
        assert_eq!((map.bytes, gauges.bytes.get(), gauges.entries.get()), (95, 95, 6));
        // A new value of a key replaces the old one's weight.
        map.insert(10, 20);
        assert_eq!((map.bytes, map.map.len()), (70, 6));
        // One larger than all the map may hold is not kept, nor is the key's older value.
        map.insert(10, 101);
        assert_eq!((map.get(&10), map.bytes, gauges.bytes.get()), (None, 50, 50));
        for n in 100..1000 {
            map.insert(n, n % 60);
            assert!(map.bytes <= 100 && gauges.bytes.get() == map.bytes as i64);
        }
    }

    #[test]
    fn a_snapshot_weighs_what_its_rows_and_answers_hold() {
        let small = snapshot(vec![row(1, "answered", 1)], vec![answer(1, "chatgpt", "short")]);
        let long_answer = snapshot(vec![row(1, "answered", 1)], vec![answer(1, "chatgpt", &"x".repeat(100_000))]);
        assert!(long_answer.heap_bytes() >= small.heap_bytes() + 99_995);
        // A prompt asked for years: every evaluation it had, each holding the prompt's text.
        let text = "a long prompt ".repeat(500);
        let rows: Vec<EvaluationRow> =
            (1..=1000).map(|id| EvaluationRow { prompt_text: text.clone(), ..row(id, "answered", 1) }).collect();
        let years = snapshot(rows, vec![]);
        assert!(years.heap_bytes() >= 1000 * text.len(), "{}", years.heap_bytes());
        let mut cited = answer(1, "chatgpt", "short");
        cited.citations.0 = (0..50)
            .map(|n| aap_evaluations::model::Citation {
                url: format!("https://example.com/{}", "p".repeat(200 + n)),
                title: "t".repeat(100),
                domain: "example.com".into(),
                position: n as u32,
                kind: Default::default(),
                found_in: Default::default(),
            })
            .collect();
        let with_citations = snapshot(vec![row(1, "answered", 1)], vec![cited]);
        assert!(with_citations.heap_bytes() >= small.heap_bytes() + 50 * 300);
    }
}
