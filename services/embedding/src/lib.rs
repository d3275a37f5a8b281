//! In-process sentence embeddings with all-MiniLM-L6-v2 (384 dimensions) on candle.
//!
//! The model directory holds `config.json`, `model.safetensors` and `tokenizer.json` as shipped
//! by sentence-transformers; `deploy/local/install.sh` puts it under
//! `/opt/aap/models/all-MiniLM-L6-v2`. Embeddings are mean-pooled over real tokens (padding is
//! masked out) and L2-normalised, so [`cosine`] of two embeddings is also their dot product.
//!
//! ```no_run
//! # fn main() -> Result<(), aap_embedding::EmbedError> {
//! let embedder = aap_embedding::Embedder::load(&aap_embedding::default_model_dir())?;
//! let a = embedder.embed("What are the best laptops under $1,000?")?;
//! let b = embedder.embed("Which laptops under 1000 dollars are best?")?;
//! assert!(aap_embedding::cosine(&a, &b) > 0.8);
//! # Ok(())
//! # }
//! ```

mod batch;
mod bert;

pub use batch::{BatchConfig, BatchError, Batcher};

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{Encoding, PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Length of every embedding vector produced by [`Embedder`].
pub const DIMENSIONS: usize = 384;

/// Longest input in tokens (including `[CLS]`/`[SEP]`); longer prompts are truncated.
///
/// This is sentence-transformers' `max_seq_length` for the model; the tokenizer.json it ships
/// says 128, which would silently drop the tail of medium-length prompts.
pub const MAX_TOKENS: usize = 256;

/// Threads of one forward pass unless told otherwise: one, with a pass per core at once
/// ([`default_workers`]). On 2 cores two one-thread passes at once embedded 201–230 prompts/s,
/// where one pass over both cores did 155–188 (docs/performance.md, "A thread a pass"): candle's
/// threads wait for each other at every operation, spinning, and passes side by side take
/// turns at its one pool of threads.
pub const DEFAULT_PASS_THREADS: usize = 1;

/// The variables [`pass_threads_env`] sets: candle's matrix products (and rayon's pool), its
/// other operations (on its own pool of threads), and the tokenizer (which otherwise hands a
/// batch to rayon's pool). A child given another configuration has them removed first.
pub const PASS_THREADS_VARS: [&str; 3] = ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS", "TOKENIZERS_PARALLELISM"];

/// The environment that gives each forward pass `threads` threads; 0 leaves candle's own
/// choice (a thread per physical core). candle and the tokenizer read it while they run, so it
/// is set before a process starts its threads ([`set_pass_threads`]) or given to a child.
pub fn pass_threads_env(threads: usize) -> Vec<(&'static str, String)> {
    if threads == 0 {
        return Vec::new();
    }
    let [rayon, candle, tokenizer] = PASS_THREADS_VARS;
    vec![(rayon, threads.to_string()), (candle, threads.to_string()), (tokenizer, (threads > 1).to_string())]
}

/// Sets [`pass_threads_env`] in this process.
///
/// # Safety
/// No other thread may be running (one could read the environment meanwhile): call it first
/// in `main`, before an async runtime starts.
#[allow(unsafe_code)]
pub unsafe fn set_pass_threads(threads: usize) {
    for (name, value) in pass_threads_env(threads) {
        // SAFETY: the caller promises this process runs no other thread yet.
        unsafe { std::env::set_var(name, value) };
    }
}

/// Passes at once that keep this machine's cores busy with `threads` threads each (0: candle's
/// choice, all of them in one pass).
pub fn default_workers(threads: usize) -> usize {
    if threads == 0 {
        return 1;
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    (cores / threads).max(1)
}

/// Directory name of the model under the tools directory.
const MODEL_NAME: &str = "all-MiniLM-L6-v2";

/// Where the installer puts the model when neither `AAP_MODEL_DIR` nor `AAP_TOOLS_DIR` is set.
const DEFAULT_TOOLS_DIR: &str = "/opt/aap";

/// Files [`Embedder::load`] reads from the model directory.
const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// Why loading the model or embedding a text failed.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A model file is absent: the model has not been installed where we look.
    #[error("embedding model file {path} is missing: run deploy/local/install.sh or set AAP_MODEL_DIR")]
    MissingModel {
        /// The file that was looked for.
        path: PathBuf,
    },
    /// A model file exists but could not be read.
    #[error("failed to read embedding model file {path}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not a BERT configuration.
    #[error("invalid embedding model config {path}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The tokenizer could not be loaded or could not encode a text.
    #[error("tokenizer failed")]
    Tokenizer(#[source] tokenizers::Error),
    /// Loading the weights or running the model failed.
    #[error("embedding model failed")]
    Model(#[from] candle_core::Error),
    /// The OS refused the thread of a [`Batcher`].
    #[error("cannot start the embedding thread")]
    Thread(#[source] std::io::Error),
    /// The blocking task behind [`Embedder::embed_async`] panicked or was cancelled.
    #[error("embedding task did not complete")]
    Join(#[from] tokio::task::JoinError),
}

/// Result alias for this crate.
pub type EmbedResult<T> = Result<T, EmbedError>;

/// A loaded sentence-embedding model; cheap to clone and safe to share between threads.
///
/// Embedding is CPU-bound: call [`Embedder::embed`] from blocking code, or
/// [`Embedder::embed_async`] from async handlers so the runtime's workers stay free.
#[derive(Clone)]
pub struct Embedder {
    inner: Arc<Inner>,
}

struct Inner {
    model: bert::Bert,
    tokenizer: Tokenizer,
    /// The tokenizer's `[UNK]`: a word the model has no piece for.
    unknown: Option<u32>,
    device: Device,
}

/// A text's embedding and how much of it the model could read.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// Unit length, [`DIMENSIONS`] floats.
    pub vector: Vec<f32>,
    /// The share of the text's embedded tokens (after truncation, without `[CLS]` and `[SEP]`)
    /// that are `[UNK]`, from 0 to 1: an emoji, a symbol outside the vocabulary, a word longer
    /// than 100 characters. Texts the model cannot read all embed to about the same vector
    /// (forty "🚀" and 8,192 letters "a" had cosine 1.000), so a caller should not match them by
    /// similarity above [`MOSTLY_UNKNOWN`].
    pub unknown_share: f32,
}

/// Beyond this share of `[UNK]` tokens an [`Embedding`] says little about its text.
pub const MOSTLY_UNKNOWN: f32 = 0.5;

impl Embedding {
    /// Whether the model could read too little of the text for its vector to mean it.
    pub fn mostly_unknown(&self) -> bool {
        self.unknown_share > MOSTLY_UNKNOWN
    }
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder").field("device", &self.inner.device).finish_non_exhaustive()
    }
}

/// The embedding's metrics: `aap_embedding_seconds` (one forward pass, tokenising included),
/// `aap_embedding_batch_size` (texts per pass) and `aap_embedding_refused_total` (a full queue).
struct Metrics {
    seconds: aap_telemetry::metrics::Histograms,
    batch_size: aap_telemetry::metrics::Histograms,
    refused: aap_telemetry::metrics::Counters,
}

static METRICS: std::sync::LazyLock<Metrics> = std::sync::LazyLock::new(|| Metrics {
    seconds: aap_telemetry::metrics::histogram(
        "embedding_seconds",
        "Time to embed one batch of prompts (tokenising and the model's forward pass).",
        aap_telemetry::metrics::FAST_SECONDS,
    ),
    batch_size: aap_telemetry::metrics::histogram(
        "embedding_batch_size",
        "Prompts embedded in one forward pass.",
        aap_telemetry::metrics::BATCH_SIZES,
    ),
    refused: aap_telemetry::metrics::counter(
        "embedding_refused",
        "Prompts refused because the embedding queue was full (RESOURCE_EXHAUSTED).",
    ),
});

/// Makes the embedding's metric families appear in scrapes before the first embedding.
pub fn register_metrics() {
    std::sync::LazyLock::force(&METRICS);
}

impl Embedder {
    /// Loads the model from `model_dir` (`config.json`, `model.safetensors`, `tokenizer.json`)
    /// onto the CPU.
    ///
    /// Fails with [`EmbedError::MissingModel`] naming the first absent file, so a missing
    /// install is reported as such rather than as an I/O error.
    pub fn load(model_dir: &Path) -> EmbedResult<Embedder> {
        for file in MODEL_FILES {
            let path = model_dir.join(file);
            if !path.is_file() {
                return Err(EmbedError::MissingModel { path });
            }
        }
        let device = Device::Cpu;

        let config_path = model_dir.join("config.json");
        let config_text = read_to_string(&config_path)?;
        let config: bert::Config =
            serde_json::from_str(&config_text).map_err(|source| EmbedError::Config { path: config_path, source })?;

        // Reading into memory instead of mmap keeps the crate free of `unsafe`; the file is
        // ~90 MB and read once per process.
        let weights_path = model_dir.join("model.safetensors");
        let weights = std::fs::read(&weights_path).map_err(|source| EmbedError::Io { path: weights_path, source })?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &device)?;
        let model = bert::Bert::load(vb, &config)?;

        let tokenizer = load_tokenizer(&model_dir.join("tokenizer.json"))?;
        let unknown = tokenizer.token_to_id("[UNK]");

        std::sync::LazyLock::force(&METRICS);
        Ok(Embedder { inner: Arc::new(Inner { model, tokenizer, unknown, device }) })
    }

    /// Embeds one text into a unit-length vector of [`DIMENSIONS`] floats.
    ///
    /// Texts longer than [`MAX_TOKENS`] tokens are truncated, not rejected.
    pub fn embed(&self, text: &str) -> EmbedResult<Vec<f32>> {
        Ok(self.forward(&[text])?.0.squeeze(0)?.to_vec1::<f32>()?)
    }

    /// Embeds several texts in one forward pass; the result is in input order.
    ///
    /// Texts are padded to the longest one in their part of the batch ([`MAX_PASS_TOKENS`])
    /// and the padding is masked out of the pooling, so each vector equals what
    /// [`Embedder::embed`] returns for that text.
    pub fn embed_batch(&self, texts: &[&str]) -> EmbedResult<Vec<Vec<f32>>> {
        Ok(self.read_batch(texts)?.into_iter().map(|embedding| embedding.vector).collect())
    }

    /// [`Embedder::embed_batch`] with how much of each text the model could read.
    pub fn read_batch(&self, texts: &[&str]) -> EmbedResult<Vec<Embedding>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (vectors, unknown) = self.forward(texts)?;
        Ok(vectors
            .to_vec2::<f32>()?
            .into_iter()
            .zip(unknown)
            .map(|(vector, unknown_share)| Embedding { vector, unknown_share })
            .collect())
    }

    /// Embeds one text on tokio's blocking pool; for use inside async handlers.
    pub async fn embed_async(&self, text: String) -> EmbedResult<Vec<f32>> {
        let embedder = self.clone();
        tokio::task::spawn_blocking(move || embedder.embed(&text)).await?
    }

    /// Tokenises `texts` (non-empty) and returns their unit-length embeddings as
    /// `[batch, DIMENSIONS]`, in their order, and each one's [`Embedding::unknown_share`].
    ///
    /// The texts run shortest first, in parts of at most [`MAX_PASS_TOKENS`] padded tokens:
    /// a part pads only to its own longest text, and what a pass holds in memory is bounded
    /// whatever the texts' lengths.
    fn forward(&self, texts: &[&str]) -> EmbedResult<(Tensor, Vec<f32>)> {
        let started = std::time::Instant::now();
        let encodings = self.inner.tokenizer.encode_batch(texts.to_vec(), true).map_err(EmbedError::Tokenizer)?;
        let lengths: Vec<usize> = encodings.iter().map(real_tokens).collect();
        let unknown = encodings.iter().map(|e| unknown_share(e, self.inner.unknown)).collect();
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| lengths[i]);

        let mut parts = Vec::new();
        for part in parts_of(&order, &lengths, MAX_PASS_TOKENS) {
            // Sorted: the part's last text is its longest.
            let tokens = part.last().map_or(1, |&i| lengths[i]);
            let encodings: Vec<&Encoding> = part.iter().map(|&i| &encodings[i]).collect();
            parts.push(self.pass(&encodings, tokens)?);
        }
        let sorted = Tensor::cat(&parts, 0)?;
        // Back to the texts' order: row `i` of the result is `sorted`'s row where text i went.
        let mut place = vec![0u32; texts.len()];
        for (row, &text) in order.iter().enumerate() {
            place[text] = row as u32;
        }
        let embeddings = sorted.index_select(&Tensor::new(place.as_slice(), &self.inner.device)?, 0)?;
        debug_assert_eq!(embeddings.dims(), [texts.len(), DIMENSIONS]);
        METRICS.seconds.get_or_create(&Vec::new()).observe(started.elapsed().as_secs_f64());
        METRICS.batch_size.get_or_create(&Vec::new()).observe(texts.len() as f64);
        Ok((embeddings, unknown))
    }

    /// One forward pass over `encodings`, each cut to its first `tokens` (the padding beyond
    /// the part's longest text dropped): their unit-length embeddings, `[part, DIMENSIONS]`.
    fn pass(&self, encodings: &[&Encoding], tokens: usize) -> EmbedResult<Tensor> {
        let input_ids = self.stack(encodings, tokens, Encoding::get_ids)?;
        let type_ids = self.stack(encodings, tokens, Encoding::get_type_ids)?;
        let mask = self.stack(encodings, tokens, Encoding::get_attention_mask)?;
        let hidden = self.inner.model.forward(&input_ids, &type_ids, &mask)?;
        let pooled = mean_pool(&hidden, &mask)?;
        Ok(l2_normalise(&pooled)?)
    }

    /// Builds a `[part, tokens]` u32 tensor from the first `tokens` of one field of every
    /// encoding (the tokenizer pads them at the end, to the batch's longest).
    fn stack(
        &self,
        encodings: &[&Encoding],
        tokens: usize,
        field: impl Fn(&Encoding) -> &[u32],
    ) -> EmbedResult<Tensor> {
        let rows = encodings
            .iter()
            .map(|e| {
                let values = field(e);
                Tensor::new(&values[..tokens.min(values.len())], &self.inner.device)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Tensor::stack(&rows, 0)?)
    }
}

/// Padded tokens (texts × the longest of them) one forward pass takes at most: 32 prompts of
/// up to 64 tokens run together, longer ones in smaller parts. A batch of 32 prompts of
/// [`MAX_TOKENS`] in one pass held 520 MB more than the model at rest; see docs/performance.md.
pub const MAX_PASS_TOKENS: usize = 2048;

/// The share of an encoding's real tokens, `[CLS]` and `[SEP]` aside, that are `unknown`.
fn unknown_share(encoding: &Encoding, unknown: Option<u32>) -> f32 {
    let Some(unknown) = unknown else { return 0.0 };
    let (mut words, mut unknowns) = (0usize, 0usize);
    let tokens = encoding.get_ids().iter().zip(encoding.get_special_tokens_mask()).zip(encoding.get_attention_mask());
    for ((&id, &special), &real) in tokens {
        if special == 0 && real != 0 {
            words += 1;
            unknowns += usize::from(id == unknown);
        }
    }
    if words == 0 { 0.0 } else { unknowns as f32 / words as f32 }
}

/// An encoding's real tokens (not padding), at least one.
fn real_tokens(encoding: &Encoding) -> usize {
    encoding.get_attention_mask().iter().filter(|&&m| m != 0).count().max(1)
}

/// `order` (texts by length, shortest first) cut into parts, in order, each as long as it
/// can be with its texts × its longest text's `lengths` at most `budget`; a text longer than
/// the budget is a part of its own.
fn parts_of<'a>(order: &'a [usize], lengths: &[usize], budget: usize) -> Vec<&'a [usize]> {
    let mut parts = Vec::new();
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && (end + 1 - start) * lengths[order[end]] <= budget {
            end += 1;
        }
        parts.push(&order[start..end]);
        start = end;
    }
    parts
}

/// Loads tokenizer.json and replaces its padding and truncation settings.
///
/// The shipped file pads every input to a fixed 128 tokens (so a five-word prompt costs as much
/// as a paragraph) and truncates at 128; pad to the longest text in the batch instead and
/// truncate at [`MAX_TOKENS`]. The pad token and id are kept from the file.
fn load_tokenizer(path: &Path) -> EmbedResult<Tokenizer> {
    let mut tokenizer = Tokenizer::from_file(path).map_err(EmbedError::Tokenizer)?;
    let padding = PaddingParams {
        strategy: PaddingStrategy::BatchLongest,
        ..tokenizer.get_padding().cloned().unwrap_or_default()
    };
    let truncation =
        TruncationParams { max_length: MAX_TOKENS, ..tokenizer.get_truncation().cloned().unwrap_or_default() };
    tokenizer.with_padding(Some(padding));
    tokenizer.with_truncation(Some(truncation)).map_err(EmbedError::Tokenizer)?;
    Ok(tokenizer)
}

/// Averages token vectors `[batch, tokens, hidden]` over the tokens whose mask is 1.
fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    // Every row has at least [CLS] and [SEP], so the count is never zero.
    let counts = mask.sum(1)?;
    summed.broadcast_div(&counts)
}

/// Scales every row of `[batch, hidden]` to unit Euclidean length.
fn l2_normalise(x: &Tensor) -> candle_core::Result<Tensor> {
    let norms = x.sqr()?.sum_keepdim(1)?.sqrt()?;
    x.broadcast_div(&norms)
}

fn read_to_string(path: &Path) -> EmbedResult<String> {
    std::fs::read_to_string(path).map_err(|source| EmbedError::Io { path: path.to_owned(), source })
}

/// The model directory to load by default.
///
/// `$AAP_MODEL_DIR` if set, else `$AAP_TOOLS_DIR/models/all-MiniLM-L6-v2`, else
/// `/opt/aap/models/all-MiniLM-L6-v2` (where `deploy/local/install.sh` puts it).
pub fn default_model_dir() -> PathBuf {
    model_dir_from(std::env::var_os("AAP_MODEL_DIR"), std::env::var_os("AAP_TOOLS_DIR"))
}

/// [`default_model_dir`] without the environment, so the precedence can be tested.
fn model_dir_from(model_dir: Option<OsString>, tools_dir: Option<OsString>) -> PathBuf {
    if let Some(dir) = model_dir.filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let tools = tools_dir.filter(|d| !d.is_empty()).map_or_else(|| PathBuf::from(DEFAULT_TOOLS_DIR), PathBuf::from);
    tools.join("models").join(MODEL_NAME)
}

/// Cosine similarity of two vectors, in `[-1, 1]`; 0 when either vector is all zeros.
///
/// For [`Embedder`] outputs (unit length) this equals their dot product.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    debug_assert_eq!(a.len(), b.len(), "cosine of vectors of different lengths");
    let (mut dot, mut norm_a, mut norm_b) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        norm_a += x * x;
        norm_b += y * y;
    }
    let denominator = (norm_a * norm_b).sqrt();
    if denominator == 0.0 {
        return 0.0;
    }
    (dot / denominator).clamp(-1.0, 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_dir_prefers_explicit_dir_then_tools_dir_then_opt() {
        assert_eq!(model_dir_from(Some("/m".into()), Some("/t".into())), PathBuf::from("/m"));
        assert_eq!(model_dir_from(None, Some("/t".into())), PathBuf::from("/t/models/all-MiniLM-L6-v2"));
        assert_eq!(model_dir_from(Some("".into()), None), PathBuf::from("/opt/aap/models/all-MiniLM-L6-v2"));
    }

    #[test]
    fn a_batch_is_cut_into_parts_of_bounded_padded_tokens_shortest_first() {
        // Lengths by text; the order sorts them shortest first.
        let lengths = [10, 300, 64, 64, 5, 64];
        let order = [4, 0, 2, 3, 5, 1];
        let parts = parts_of(&order, &lengths, 128);
        assert_eq!(parts, vec![&[4, 0][..], &[2, 3][..], &[5][..], &[1][..]]);
        for part in &parts {
            let longest = part.iter().map(|&i| lengths[i]).max().unwrap_or(0);
            assert!(part.len() == 1 || part.len() * longest <= 128, "{part:?}");
        }
        // Every text once, in order.
        assert_eq!(parts.concat(), order);
        // 32 prompts of 64 tokens are one part; one token more and they are two.
        let order: Vec<usize> = (0..32).collect();
        assert_eq!(parts_of(&order, &[64; 32], MAX_PASS_TOKENS).len(), 1);
        assert_eq!(parts_of(&order, &[65; 32], MAX_PASS_TOKENS).len(), 2);
        assert!(parts_of(&[], &[], MAX_PASS_TOKENS).is_empty());
    }

    #[test]
    fn cosine_of_orthogonal_parallel_and_zero_vectors() {
        assert_eq!(cosine(&[1.0, 0.0], &[0.0, 2.0]), 0.0);
        assert!((cosine(&[1.0, 2.0], &[2.0, 4.0]) - 1.0).abs() < 1e-6);
        assert!((cosine(&[1.0, 2.0], &[-1.0, -2.0]) + 1.0).abs() < 1e-6);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 1.0]), 0.0);
    }

    #[test]
    fn load_names_the_installer_when_model_is_missing() {
        let dir = std::env::temp_dir().join("aap-embedding-no-model-here");
        let err = Embedder::load(&dir).expect_err("an absent model must not load");
        assert!(matches!(err, EmbedError::MissingModel { .. }));
        assert!(err.to_string().contains("deploy/local/install.sh"), "{err}");
    }

    #[test]
    fn embedder_is_shareable_across_threads() {
        fn assert_traits<T: Clone + Send + Sync + 'static>() {}
        assert_traits::<Embedder>();
    }
}
