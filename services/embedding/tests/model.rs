//! Behaviour of the real all-MiniLM-L6-v2 model, found through `default_model_dir()`.
//!
//! The model must be installed (`deploy/local/install.sh`) or `AAP_MODEL_DIR` must point at it;
//! a missing model fails these tests rather than skipping them.

use std::sync::OnceLock;

use aap_embedding::{BatchConfig, BatchError, Batcher, DIMENSIONS, Embedder, cosine, default_model_dir};

const LAPTOPS_1000: &str = "What are the best laptops under $1,000?";
const LAPTOPS_PARAPHRASE: &str = "Which laptops under 1000 dollars are best?";
const LAPTOPS_500: &str = "What are the best laptops under $500?";

/// One model per test binary: loading takes a while and the embedder is shareable.
fn embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        let dir = default_model_dir();
        Embedder::load(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot load the embedding model from {}: {e}\n\
                 install it with deploy/local/install.sh, or set AAP_MODEL_DIR to a directory \
                 with config.json, model.safetensors and tokenizer.json",
                dir.display()
            )
        })
    })
}

fn norm(v: &[f32]) -> f32 {
    v.iter().map(|x| x * x).sum::<f32>().sqrt()
}

#[test]
fn paraphrase_and_near_miss_match_reference_cosines() -> anyhow::Result<()> {
    let e = embedder();
    let base = e.embed(LAPTOPS_1000)?;
    let paraphrase = cosine(&base, &e.embed(LAPTOPS_PARAPHRASE)?);
    let near_miss = cosine(&base, &e.embed(LAPTOPS_500)?);
    assert!((paraphrase - 0.8780).abs() <= 0.002, "paraphrase cosine {paraphrase}");
    assert!((near_miss - 0.8571).abs() <= 0.002, "near-miss cosine {near_miss}");
    Ok(())
}

#[test]
fn embeddings_have_384_dimensions_and_unit_norm() -> anyhow::Result<()> {
    for text in [LAPTOPS_1000, "", "ok", "Ünïcödé ✓ 東京 — emoji 🚀"] {
        let v = embedder().embed(text)?;
        assert_eq!(v.len(), DIMENSIONS, "{text:?}");
        assert!((norm(&v) - 1.0).abs() < 1e-4, "{text:?}: norm {}", norm(&v));
        assert!(v.iter().all(|x| x.is_finite()), "{text:?}");
    }
    Ok(())
}

#[test]
fn identical_texts_have_cosine_one() -> anyhow::Result<()> {
    let e = embedder();
    let a = e.embed(LAPTOPS_PARAPHRASE)?;
    let b = e.embed(LAPTOPS_PARAPHRASE)?;
    assert!((cosine(&a, &b) - 1.0).abs() < 1e-5, "{}", cosine(&a, &b));
    Ok(())
}

#[test]
fn batch_matches_single_embeddings_despite_padding() -> anyhow::Result<()> {
    let e = embedder();
    // Very different lengths, so the short texts carry many padding tokens in the batch.
    let long = "Compare battery life, screen quality, keyboard comfort, weight, ports, \
                price and repairability across the most popular ultrabooks released this year.";
    let texts = [LAPTOPS_1000, "hi", long, LAPTOPS_500];
    let batch = e.embed_batch(&texts)?;
    assert_eq!(batch.len(), texts.len());
    for (text, batched) in texts.iter().zip(&batch) {
        let single = e.embed(text)?;
        let c = cosine(&single, batched);
        assert!(c > 0.9999, "{text:?}: batch vs single cosine {c}");
    }
    assert!(e.embed_batch(&[])?.is_empty());
    Ok(())
}

#[test]
fn prompt_longer_than_256_tokens_is_truncated_not_rejected() -> anyhow::Result<()> {
    let e = embedder();
    let head = "Explain how solid state batteries differ from lithium ion cells.";
    // "word" is a single token, so the filler count is the token count.
    let filler = |n: usize| " word".repeat(n);

    let long = format!("{head}{} cooking pasta", filler(400));
    let v = e.embed(&long)?;
    assert_eq!(v.len(), DIMENSIONS);
    assert!((norm(&v) - 1.0).abs() < 1e-4);
    // Everything past the 256th token is dropped: a different far tail changes nothing.
    let other_tail = format!("{head}{} fixing bicycles", filler(400));
    let c = cosine(&v, &e.embed(&other_tail)?);
    assert!((c - 1.0).abs() < 1e-5, "text past 256 tokens changed the embedding: {c}");

    // Tokens between 128 (the tokenizer.json default) and 256 still count.
    let mid_a = format!("{head}{} cooking pasta", filler(180));
    let mid_b = format!("{head}{} fixing bicycles", filler(180));
    let c = cosine(&e.embed(&mid_a)?, &e.embed(&mid_b)?);
    assert!(c < 0.9999, "text at tokens 128..256 was ignored: cosine {c}");
    Ok(())
}

#[tokio::test]
async fn embed_async_equals_embed() -> anyhow::Result<()> {
    let e = embedder().clone();
    let sync = e.embed(LAPTOPS_500)?;
    let from_async = e.embed_async(LAPTOPS_500.to_owned()).await?;
    assert!(cosine(&sync, &from_async) > 0.9999);
    Ok(())
}

#[tokio::test]
async fn concurrent_prompts_share_passes_and_get_their_own_vectors() -> anyhow::Result<()> {
    let e = embedder().clone();
    let batcher = Batcher::start(e.clone(), BatchConfig { max_batch: 8, max_queue: 64, ..BatchConfig::default() })?;
    let texts: Vec<String> = (0..24).map(|i| format!("Which laptop suits a {i}-person design team?")).collect();
    let vectors = futures::future::try_join_all(texts.iter().map(|t| batcher.embed(t.clone()))).await?;
    for (text, vector) in texts.iter().zip(&vectors) {
        let alone = e.embed(text)?;
        assert!(cosine(&alone, &vector.vector) > 0.9999, "{text}: batched vector differs from its own");
    }
    let (passes, prompts) = batcher.counts();
    assert_eq!(prompts, 24);
    // 24 prompts sent together, at most 8 a pass: fewer passes than prompts, at least 3.
    assert!((3..24).contains(&passes), "{passes} passes for 24 concurrent prompts");
    Ok(())
}

#[tokio::test]
async fn passes_run_side_by_side_on_their_workers_and_each_prompt_gets_its_own_vector() -> anyhow::Result<()> {
    let e = embedder().clone();
    for workers in [1, 2, 3] {
        let config = BatchConfig { max_batch: 4, max_queue: 64, workers, ..BatchConfig::default() };
        let batcher = Batcher::start(e.clone(), config)?;
        assert_eq!(batcher.config().workers, workers);
        let texts: Vec<String> = (0..20).map(|i| format!("Is a {i}-year-old car worth repairing?")).collect();
        let vectors = futures::future::try_join_all(texts.iter().map(|t| batcher.embed(t.clone()))).await?;
        for (text, vector) in texts.iter().zip(&vectors) {
            assert!(cosine(&e.embed(text)?, &vector.vector) > 0.9999, "{workers} workers: {text} got another's vector");
        }
        let (passes, prompts) = batcher.counts();
        assert_eq!(prompts, 20, "{workers} workers");
        assert!((5..=20).contains(&passes), "{workers} workers: {passes} passes of at most 4 for 20 prompts");
    }
    // No workers is one.
    assert_eq!(Batcher::start(e, BatchConfig { workers: 0, ..BatchConfig::default() })?.config().workers, 1);
    Ok(())
}

#[tokio::test]
async fn a_lone_prompt_is_not_held_back_and_equals_embed() -> anyhow::Result<()> {
    let e = embedder().clone();
    let batcher = Batcher::start(e.clone(), BatchConfig::default())?;
    for text in [LAPTOPS_1000, LAPTOPS_500] {
        let embedding = batcher.embed(text.to_owned()).await?;
        assert!(cosine(&e.embed(text)?, &embedding.vector) > 0.9999);
        assert_eq!(embedding.unknown_share, 0.0, "{text}: every word is in the vocabulary");
    }
    assert_eq!(batcher.counts(), (2, 2), "one pass per lone prompt");
    Ok(())
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_and_the_rest_are_answered() -> anyhow::Result<()> {
    let batcher =
        Batcher::start(embedder().clone(), BatchConfig { max_batch: 1, max_queue: 2, ..BatchConfig::default() })?;
    // 40 prompts offered in one go: the thread takes one, two wait, the rest are refused.
    let results = futures::future::join_all((0..40).map(|i| batcher.embed(format!("prompt number {i}")))).await;
    let refused = results.iter().filter(|r| matches!(r, Err(BatchError::Busy { waiting: 2 }))).count();
    let answered = results.iter().filter(|r| matches!(r, Ok(v) if v.vector.len() == DIMENSIONS)).count();
    assert_eq!(refused + answered, 40, "every prompt is either answered or refused: {results:?}");
    assert!(refused >= 30, "only {refused} of 40 refused with a queue of 2");
    assert!(answered >= 2, "only {answered} answered");
    let message = results.iter().find_map(|r| r.as_ref().err()).map(ToString::to_string).unwrap_or_default();
    assert!(message.contains("retry later"), "{message}");
    Ok(())
}

/// Texts the two halves of the thread test embed, alone and as one batch.
const THREAD_TEXTS: [&str; 3] = [LAPTOPS_1000, LAPTOPS_PARAPHRASE, "Is a 12-year-old car worth repairing?"];

/// Marks the child process of [`one_thread_a_pass_embeds_what_every_core_does`].
const THREAD_CHILD: &str = "AAP_EMBEDDING_THREAD_CHILD";

/// The vectors a process embeds, one line each (`v` and the numbers), after the threads of a
/// pass candle reads from its environment (`threads` and the count).
fn thread_report() -> anyhow::Result<String> {
    let e = embedder();
    let mut out = format!("threads {}\n", candle_core::utils::get_num_threads());
    let mut vectors: Vec<Vec<f32>> = THREAD_TEXTS.iter().map(|text| e.embed(text)).collect::<Result<_, _>>()?;
    vectors.extend(e.embed_batch(&THREAD_TEXTS)?);
    for vector in vectors {
        let numbers: Vec<String> = vector.iter().map(f32::to_string).collect();
        out.push_str(&format!("v {}\n", numbers.join(",")));
    }
    Ok(out)
}

/// The child half: run only by [`one_thread_a_pass_embeds_what_every_core_does`], in a process
/// of its own with one thread a pass in its environment.
#[test]
#[ignore = "the child process of one_thread_a_pass_embeds_what_every_core_does"]
fn thread_child_prints_its_vectors() -> anyhow::Result<()> {
    anyhow::ensure!(std::env::var_os(THREAD_CHILD).is_some(), "run by one_thread_a_pass_embeds_what_every_core_does");
    // On a line of its own: the test harness has written the test's name before it.
    print!("\n{}", thread_report()?);
    Ok(())
}

fn parse_report(report: &str) -> anyhow::Result<(usize, Vec<Vec<f32>>)> {
    let mut threads = None;
    let mut vectors = Vec::new();
    for line in report.lines() {
        if let Some(n) = line.strip_prefix("threads ") {
            threads = Some(n.trim().parse()?);
        } else if let Some(numbers) = line.strip_prefix("v ") {
            vectors.push(numbers.split(',').map(str::parse).collect::<Result<Vec<f32>, _>>()?);
        }
    }
    let start: String = report.chars().take(300).collect();
    Ok((threads.ok_or_else(|| anyhow::anyhow!("no threads line in {start:?}…"))?, vectors))
}

/// `aap serve` runs a pass on one thread (`--embedding-threads 1`, set in its environment
/// before it starts): the vectors are the ones a pass over every core makes, so prompts
/// stored either way still match.
#[test]
fn one_thread_a_pass_embeds_what_every_core_does() -> anyhow::Result<()> {
    let mut child = std::process::Command::new(std::env::current_exe()?);
    child.args([
        "--exact",
        "thread_child_prints_its_vectors",
        "--include-ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ]);
    for name in aap_embedding::PASS_THREADS_VARS {
        child.env_remove(name);
    }
    child.envs(aap_embedding::pass_threads_env(1)).env(THREAD_CHILD, "1");
    let output = child.output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "child failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));
    let (child_threads, one_thread) = parse_report(&stdout)?;
    assert_eq!(child_threads, 1, "the child's passes run on one thread");
    let (_, here) = parse_report(&thread_report()?)?;
    assert_eq!(one_thread.len(), 2 * THREAD_TEXTS.len(), "vectors from the child");
    assert_eq!(here.len(), one_thread.len());
    for (index, (a, b)) in here.iter().zip(&one_thread).enumerate() {
        assert_eq!(a.len(), DIMENSIONS);
        let similarity = cosine(a, b);
        assert!(similarity > 0.99999, "vector {index}: cosine {similarity} between one thread and every core");
    }
    Ok(())
}

#[test]
fn the_default_keeps_every_core_busy_with_one_thread_a_pass() {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    assert_eq!(aap_embedding::DEFAULT_PASS_THREADS, 1);
    assert_eq!(aap_embedding::default_workers(1), cores);
    assert_eq!(aap_embedding::default_workers(cores), 1);
    assert_eq!(aap_embedding::default_workers(cores * 2), 1, "never no worker");
    // Candle's own choice (every core in one pass) is one pass at a time, and sets nothing.
    assert_eq!(aap_embedding::default_workers(0), 1);
    assert!(aap_embedding::pass_threads_env(0).is_empty());
    let env = aap_embedding::pass_threads_env(1);
    for name in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
        assert!(env.iter().any(|(n, v)| *n == name && v == "1"), "{name} in {env:?}");
    }
    assert!(env.iter().any(|(n, v)| *n == "TOKENIZERS_PARALLELISM" && v == "false"));
}

#[test]
fn a_batch_of_long_and_short_prompts_in_parts_gives_each_its_own_vector_in_order() -> anyhow::Result<()> {
    let e = embedder();
    // Long texts (truncated at MAX_TOKENS) among short ones: more padded tokens than one pass
    // takes, so the batch runs in parts, shortest first, and comes back in the callers' order.
    let mut texts: Vec<String> = Vec::new();
    for i in 0..24 {
        texts.push(match i % 3 {
            0 => format!("Is a {i}-year-old car worth repairing?"),
            1 => format!("{i} reasons to compare laptops: ").repeat(40),
            _ => format!("What does plan {i} cost in {}?", ["Paris", "Lyon", "Nice"][i % 3]).repeat(6),
        });
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let together = e.embed_batch(&refs)?;
    assert_eq!(together.len(), texts.len());
    for (text, vector) in texts.iter().zip(&together) {
        assert_eq!(vector.len(), DIMENSIONS);
        let alone = e.embed(text)?;
        assert!(cosine(&alone, vector) > 0.9999, "{text:.40}: not its own vector");
    }
    // Two texts differ: their vectors do too (no row was handed to another text).
    assert!(cosine(&together[0], &together[1]) < 0.99);
    Ok(())
}

/// candle-transformers' `BertModel`, which this crate ran before its own encoder: the vectors
/// of `texts` embedded one at a time, mean-pooled over real tokens and scaled to unit length.
fn reference_vectors(texts: &[&str]) -> anyhow::Result<Vec<Vec<f32>>> {
    use candle_core::{DType, Device, Tensor};
    use candle_transformers::models::bert::{BertModel, Config};
    let dir = default_model_dir();
    let config: Config = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    let device = Device::Cpu;
    let vb = candle_nn::VarBuilder::from_buffered_safetensors(
        std::fs::read(dir.join("model.safetensors"))?,
        DType::F32,
        &device,
    )?;
    let model = BertModel::load(vb, &config)?;
    let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).map_err(anyhow::Error::msg)?;
    tokenizer.with_padding(None);
    let truncation = tokenizers::TruncationParams { max_length: 256, ..Default::default() };
    tokenizer.with_truncation(Some(truncation)).map_err(anyhow::Error::msg)?;
    texts
        .iter()
        .map(|text| {
            let encoding = tokenizer.encode(*text, true).map_err(anyhow::Error::msg)?;
            let ids = Tensor::new(encoding.get_ids(), &device)?.unsqueeze(0)?;
            let types = Tensor::new(encoding.get_type_ids(), &device)?.unsqueeze(0)?;
            let hidden = model.forward(&ids, &types, None)?;
            let pooled = hidden.mean(1)?.squeeze(0)?;
            let length = pooled.sqr()?.sum_all()?.sqrt()?;
            Ok(pooled.broadcast_div(&length)?.to_vec1::<f32>()?)
        })
        .collect()
}

#[test]
fn the_encoder_gives_what_candle_transformers_bert_gave() -> anyhow::Result<()> {
    let long = "Which running shoes suit a beginner training for a first marathon in a wet climate? ".repeat(30);
    let texts =
        [LAPTOPS_1000, LAPTOPS_PARAPHRASE, "hi", "Ünïcödé prompts, émojis 🚀 and CJK 東京の天気", long.as_str()];
    let want = reference_vectors(&texts)?;
    // In one batch (padded, in parts) and one at a time.
    let batched = embedder().embed_batch(&texts)?;
    for ((text, want), got) in texts.iter().zip(&want).zip(&batched) {
        let single = embedder().embed(text)?;
        for (how, got) in [("batched", got), ("alone", &single)] {
            let similarity = cosine(want, got);
            let largest = want.iter().zip(got).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(similarity > 0.99999, "{text:.30} {how}: cosine {similarity} with BertModel's");
            assert!(largest < 1e-4, "{text:.30} {how}: a component {largest} off BertModel's");
        }
    }
    Ok(())
}

#[test]
fn what_the_model_cannot_read_is_told_and_embeds_alike() -> anyhow::Result<()> {
    let e = embedder();
    let rockets = "🚀".repeat(40);
    let letters = "a".repeat(8_192);
    let texts = [rockets.as_str(), letters.as_str(), "best pizza 🍕 in Rome", LAPTOPS_1000, "東京のラーメン"];
    let read = e.read_batch(&texts)?;
    let shares: Vec<f32> = read.iter().map(|r| r.unknown_share).collect();
    // Emoji and a word longer than 100 characters are [UNK]; one emoji among four words is a fifth.
    assert_eq!(shares[..2], [1.0, 1.0], "{shares:?}");
    assert!((shares[2] - 0.2).abs() < 1e-6, "{shares:?}");
    assert_eq!(shares[3..], [0.0, 0.0], "{shares:?}");
    let mostly: Vec<bool> = read.iter().map(aap_embedding::Embedding::mostly_unknown).collect();
    assert_eq!(mostly, [true, true, false, false, false]);
    // Why it matters: two unreadable texts look like one, and like nothing readable.
    assert!(cosine(&read[0].vector, &read[1].vector) > 0.99, "{}", cosine(&read[0].vector, &read[1].vector));
    // The vectors are embed_batch's.
    for (vector, embedding) in e.embed_batch(&texts)?.iter().zip(&read) {
        assert_eq!(vector, &embedding.vector);
    }
    assert!(e.read_batch(&[])?.is_empty());
    Ok(())
}
