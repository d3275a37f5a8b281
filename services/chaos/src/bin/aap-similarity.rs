//! `aap-similarity`: the matching policy measured on the labelled pair set
//! (`services/answers/tests/data/similarity-pairs.tsv`).
//!
//! Every distinct text is embedded once, in its canonical form (what the server hashes and
//! embeds), and each pair is judged as Ask would judge it: merged when the canonical forms are
//! equal (one hash), or when the cosine reaches the threshold and the guard lets it through.
//! Prints precision and recall against the labels, each category, every wrong merge and every
//! missed pair, and a threshold sweep with and without the guard. Fails when a different-meaning
//! pair is merged or recall is under `--min-recall` at the threshold: the set is fixed and the
//! model deterministic, so these are quality targets, not timings. `just bench similarity` runs
//! it; docs/matching.md says how to read it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::PathBuf;

use aap_answers::guard;
use aap_answers::normalize::canonical;
use aap_answers::pairs::{self, Label, Pair, PairCategory};
use anyhow::{Context as _, bail};
use clap::Parser;

/// Measures the matching policy (canonical hash, cosine threshold, guard) on the labelled pairs.
#[derive(Debug, Parser)]
#[command(name = "aap-similarity", version, long_about = None)]
struct Args {
    /// The labelled pair file.
    #[arg(long, default_value = pairs::FILE)]
    pairs: PathBuf,
    /// Similarity at or above which a stored prompt counts as similar (default: the server's,
    /// `AnswersConfig::default().min_similarity`).
    #[arg(long, env = "AAP_MIN_SIMILARITY")]
    threshold: Option<f64>,
    /// Directory of the all-MiniLM-L6-v2 model (config.json, model.safetensors, tokenizer.json),
    /// as `aap serve` finds it.
    #[arg(long, env = "AAP_MODEL_DIR", default_value_os_t = aap_embedding::default_model_dir())]
    model_dir: PathBuf,
    /// Fewest same-meaning pairs merged, as a share, at the threshold.
    #[arg(long, default_value_t = 0.75)]
    min_recall: f64,
    /// Lowest threshold of the sweep.
    #[arg(long, default_value_t = 0.80)]
    sweep_from: f64,
    /// Highest threshold of the sweep.
    #[arg(long, default_value_t = 1.0)]
    sweep_to: f64,
    /// Step of the sweep.
    #[arg(long, default_value_t = 0.01)]
    sweep_step: f64,
    /// Only report: exit 0 even when a target is missed.
    #[arg(long)]
    no_fail: bool,
    /// Also write the report (markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A pair with what the policy sees of it.
struct Judged {
    pair: Pair,
    /// The canonical forms are equal: one hash, an exact match.
    exact: bool,
    cosine: f32,
    veto: Option<guard::Veto>,
}

impl Judged {
    fn merged(&self, threshold: f64, with_guard: bool) -> bool {
        self.exact || (f64::from(self.cosine) >= threshold && (!with_guard || self.veto.is_none()))
    }
}

/// Counts of the policy's verdicts against the labels.
#[derive(Default, Clone, Copy)]
struct Confusion {
    /// Same meaning, merged.
    tp: usize,
    /// Different meaning, merged.
    fp: usize,
    /// Same meaning, not merged.
    fn_: usize,
    /// Different meaning, not merged.
    tn: usize,
}

impl Confusion {
    fn of(judged: &[Judged], threshold: f64, with_guard: bool) -> Confusion {
        let mut c = Confusion::default();
        for j in judged {
            match (j.pair.label, j.merged(threshold, with_guard)) {
                (Label::Same, true) => c.tp += 1,
                (Label::Same, false) => c.fn_ += 1,
                (Label::Different, true) => c.fp += 1,
                (Label::Different, false) => c.tn += 1,
            }
        }
        c
    }

    /// Merged pairs that mean the same; 1 when nothing is merged (no merge was wrong).
    fn precision(self) -> f64 {
        if self.tp + self.fp == 0 { 1.0 } else { self.tp as f64 / (self.tp + self.fp) as f64 }
    }

    /// Same-meaning pairs merged.
    fn recall(self) -> f64 {
        if self.tp + self.fn_ == 0 { 1.0 } else { self.tp as f64 / (self.tp + self.fn_) as f64 }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threshold = args.threshold.unwrap_or_else(|| aap_answers::AnswersConfig::default().min_similarity);
    if !(threshold > 0.0 && threshold <= 1.0) {
        bail!("--threshold {threshold} is outside (0, 1]");
    }
    if !(args.sweep_step > 0.0 && args.sweep_from <= args.sweep_to) {
        bail!("the sweep needs --sweep-from <= --sweep-to and a positive --sweep-step");
    }
    let pairs = pairs::read(&args.pairs)?;
    let embedder = aap_embedding::Embedder::load(&args.model_dir)
        .with_context(|| format!("load the embedding model from {}", args.model_dir.display()))?;

    // One embedding per distinct canonical text, one at a time: batches pad, and padding may
    // move the last bits of a cosine that sits on the threshold.
    let mut embeddings: HashMap<String, Vec<f32>> = HashMap::new();
    for pair in &pairs {
        for text in [&pair.a, &pair.b] {
            if let Entry::Vacant(entry) = embeddings.entry(canonical(text)) {
                let embedding = embedder.embed(entry.key()).with_context(|| format!("embed {:?}", entry.key()))?;
                entry.insert(embedding);
            }
        }
    }
    let judged: Vec<Judged> = pairs
        .into_iter()
        .map(|pair| {
            let (a, b) = (canonical(&pair.a), canonical(&pair.b));
            let cosine = aap_embedding::cosine(&embeddings[&a], &embeddings[&b]);
            let veto = guard::check(&pair.a, &pair.b).err();
            Judged { exact: a == b, cosine, veto, pair }
        })
        .collect();

    let report = report(&args, threshold, embeddings.len(), &judged);
    println!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("write {}", out.display()))?;
    }
    let at = Confusion::of(&judged, threshold, true);
    let mut missed = Vec::new();
    if at.fp > 0 {
        missed.push(format!("{} different-meaning pairs merged (0 allowed)", at.fp));
    }
    if at.recall() < args.min_recall {
        missed.push(format!("recall {:.3} under {:.2}", at.recall(), args.min_recall));
    }
    if !missed.is_empty() {
        let message = format!("at threshold {threshold:.2}: {}", missed.join("; "));
        if args.no_fail {
            eprintln!("aap-similarity: {message} (--no-fail: reported only)");
        } else {
            bail!("{message}");
        }
    }
    Ok(())
}

fn report(args: &Args, threshold: f64, texts: usize, judged: &[Judged]) -> String {
    let mut out = String::new();
    let same = judged.iter().filter(|j| j.pair.label == Label::Same).count();
    let at = Confusion::of(judged, threshold, true);
    out.push_str(&format!(
        "\n## aap-similarity: {} pairs ({same} same, {} different), {texts} distinct canonical texts, all-MiniLM-L6-v2\n\n",
        judged.len(),
        judged.len() - same,
    ));
    out.push_str(&format!(
        "Threshold {threshold:.2}{}. Merged = equal canonical forms, or cosine >= threshold and no guard veto.\n\n",
        if args.threshold.is_some() { "" } else { " (AnswersConfig::default().min_similarity)" },
    ));
    out.push_str(&format!(
        "**precision {:.3}, recall {:.3}**; false merges {} (target 0), recall target {:.2}\n\n",
        at.precision(),
        at.recall(),
        at.fp,
        args.min_recall
    ));
    out.push_str("| label | merged | not merged |\n| --- | ---: | ---: |\n");
    out.push_str(&format!("| same | TP {} | FN {} |\n", at.tp, at.fn_));
    out.push_str(&format!("| different | FP {} | TN {} |\n\n", at.fp, at.tn));

    out.push_str(&format!("### Per category at {threshold:.2}\n\n"));
    out.push_str(
        "Same-meaning categories: recall (merged / pairs). Different-meaning: false merges. \
         Guard vetoes: pairs vetoed, and of those with the pair's own category.\n\n",
    );
    out.push_str(
        "| category | label | pairs | exact | cosine >= t | guard vetoes (own) | merged | rate | cosine min / median / max |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for category in PairCategory::ALL {
        let rows: Vec<&Judged> = judged.iter().filter(|j| j.pair.category == category).collect();
        if rows.is_empty() {
            continue;
        }
        let exact = rows.iter().filter(|j| j.exact).count();
        let close = rows.iter().filter(|j| f64::from(j.cosine) >= threshold).count();
        let vetoed = rows.iter().filter(|j| j.veto.is_some()).count();
        let own =
            rows.iter().filter(|j| j.veto.as_ref().is_some_and(|v| v.category.as_str() == category.as_str())).count();
        let merged = rows.iter().filter(|j| j.merged(threshold, true)).count();
        let rate = merged as f64 / rows.len() as f64;
        let rate = match category.label() {
            Label::Same => format!("recall {rate:.2}"),
            Label::Different => format!("false merges {merged}"),
        };
        let mut cosines: Vec<f32> = rows.iter().map(|j| j.cosine).collect();
        cosines.sort_by(f32::total_cmp);
        out.push_str(&format!(
            "| {} | {} | {} | {exact} | {close} | {vetoed} ({own}) | {merged} | {rate} | {:.3} / {:.3} / {:.3} |\n",
            category.as_str(),
            category.label().as_str(),
            rows.len(),
            cosines[0],
            cosines[cosines.len() / 2],
            cosines[cosines.len() - 1],
        ));
    }

    let wrong: Vec<&Judged> =
        judged.iter().filter(|j| j.pair.label == Label::Different && j.merged(threshold, true)).collect();
    out.push_str(&format!("\n### Different-meaning pairs merged at {threshold:.2}: {}\n\n", wrong.len()));
    if !wrong.is_empty() {
        out.push_str("| line | category | how | cosine | a | b |\n| ---: | --- | --- | ---: | --- | --- |\n");
        for j in wrong {
            out.push_str(&format!(
                "| {} | {} | {} | {:.4} | {} | {} |\n",
                j.pair.line,
                j.pair.category.as_str(),
                if j.exact { "exact" } else { "cosine" },
                j.cosine,
                cell(&j.pair.a),
                cell(&j.pair.b)
            ));
        }
    }

    let mut missed: Vec<&Judged> =
        judged.iter().filter(|j| j.pair.label == Label::Same && !j.merged(threshold, true)).collect();
    missed.sort_by(|x, y| x.pair.category.cmp(&y.pair.category).then(y.cosine.total_cmp(&x.cosine)));
    out.push_str(&format!("\n### Same-meaning pairs not merged at {threshold:.2}: {}\n\n", missed.len()));
    if !missed.is_empty() {
        out.push_str("| line | category | cosine | guard veto | a | b |\n| ---: | --- | ---: | --- | --- | --- |\n");
        for j in missed {
            let veto =
                j.veto.as_ref().map_or_else(String::new, |v| cell(&format!("{}: {}", v.category.as_str(), v.reason)));
            out.push_str(&format!(
                "| {} | {} | {:.4} | {veto} | {} | {} |\n",
                j.pair.line,
                j.pair.category.as_str(),
                j.cosine,
                cell(&j.pair.a),
                cell(&j.pair.b)
            ));
        }
    }

    out.push_str("\n### Threshold sweep\n\n");
    out.push_str(
        "| threshold | with guard: precision | recall | false merges | cosine and hash only: precision | recall | false merges |\n\
         | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let steps = ((args.sweep_to - args.sweep_from) / args.sweep_step).round() as usize;
    for i in 0..=steps {
        // Rounded, so the steps land on the thresholds they name (0.8 + 20 × 0.01 is not 1).
        let t = ((args.sweep_from + i as f64 * args.sweep_step) * 1e9).round() / 1e9;
        let guarded = Confusion::of(judged, t, true);
        let bare = Confusion::of(judged, t, false);
        let mark = if (t - threshold).abs() < args.sweep_step / 2.0 { " ←" } else { "" };
        out.push_str(&format!(
            "| {t:.2}{mark} | {:.3} | {:.3} | {} | {:.3} | {:.3} | {} |\n",
            guarded.precision(),
            guarded.recall(),
            guarded.fp,
            bare.precision(),
            bare.recall(),
            bare.fp,
        ));
    }
    out
}

/// A prompt in a table cell: quoted with escapes, so white space shows, and no `|` breaks the row.
fn cell(text: &str) -> String {
    format!("`{}`", format!("{text:?}").replace('|', "\\|").replace('`', "'"))
}
