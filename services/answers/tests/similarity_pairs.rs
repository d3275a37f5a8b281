//! The labelled pair set (`tests/data/similarity-pairs.tsv`) against the parts of the matching
//! policy that need no model: the guard and the canonical form. `just bench similarity` measures
//! the whole policy, cosine included (docs/matching.md).

use std::collections::BTreeMap;
use std::path::Path;

use aap_answers::guard;
use aap_answers::normalize::{canonical, prompt_hash};
use aap_answers::pairs::{self, Label, Pair, PairCategory};

/// Fewest pairs the set may have, and fewest of each category.
const MIN_PAIRS: usize = 200;
const MIN_PER_CATEGORY: usize = 15;

fn pairs() -> Vec<Pair> {
    pairs::read(Path::new(pairs::FILE)).unwrap_or_else(|e| panic!("{e}"))
}

fn describe(pair: &Pair) -> String {
    format!("line {} [{}] {:?} / {:?}", pair.line, pair.category.as_str(), pair.a, pair.b)
}

fn verdict(result: &Result<(), guard::Veto>) -> String {
    match result {
        Ok(()) => "no veto".into(),
        Err(veto) => format!("{} veto ({})", veto.category.as_str(), veto.reason),
    }
}

#[test]
fn the_pair_file_is_valid_and_covers_every_category() {
    let pairs = pairs();
    assert!(pairs.len() >= MIN_PAIRS, "{} pairs, at least {MIN_PAIRS} wanted", pairs.len());
    let mut counts: BTreeMap<PairCategory, usize> = PairCategory::ALL.into_iter().map(|c| (c, 0)).collect();
    for pair in &pairs {
        *counts.entry(pair.category).or_default() += 1;
    }
    let thin: Vec<String> =
        counts.iter().filter(|(_, n)| **n < MIN_PER_CATEGORY).map(|(c, n)| format!("{}: {n}", c.as_str())).collect();
    assert!(thin.is_empty(), "categories with fewer than {MIN_PER_CATEGORY} pairs: {thin:?}");
}

#[test]
fn the_guard_vetoes_every_different_pair_of_its_categories_with_that_category() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for pair in pairs().iter().filter(|p| p.category.vetoed()) {
        checked += 1;
        let result = guard::check(&pair.a, &pair.b);
        let right = matches!(&result, Err(veto) if veto.category.as_str() == pair.category.as_str());
        if !right {
            failures.push(format!(
                "{}\n    expected a veto in {}, got {}",
                describe(pair),
                pair.category.as_str(),
                verdict(&result)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} different-meaning pairs not vetoed with their category:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_guard_vetoes_no_same_pair() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for pair in pairs().iter().filter(|p| p.label == Label::Same) {
        checked += 1;
        let result = guard::check(&pair.a, &pair.b);
        if result.is_err() {
            failures.push(format!("{}\n    expected no veto, got {}", describe(pair), verdict(&result)));
        }
    }
    assert!(failures.is_empty(), "{} of {checked} same-meaning pairs vetoed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_guard_answers_alike_either_way_round() {
    let mut failures = Vec::new();
    let pairs = pairs();
    for pair in &pairs {
        let forward = guard::check(&pair.a, &pair.b);
        let backward = guard::check(&pair.b, &pair.a);
        if forward.is_ok() != backward.is_ok() {
            failures.push(format!("{}\n    a, b: {}; b, a: {}", describe(pair), verdict(&forward), verdict(&backward)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} pairs judged differently when swapped:\n{}",
        failures.len(),
        pairs.len(),
        failures.join("\n")
    );
}

#[test]
fn spellings_of_one_amount_have_one_canonical_form_and_hash() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for pair in pairs().iter().filter(|p| p.category == PairCategory::NumberFormat) {
        checked += 1;
        let (a, b) = (canonical(&pair.a), canonical(&pair.b));
        if prompt_hash(&a) != prompt_hash(&b) {
            failures.push(format!("{}\n    canonical: {a:?} / {b:?}", describe(pair)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} number-format pairs with two canonical forms:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
