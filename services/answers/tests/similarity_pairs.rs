//! The labelled pair set (`tests/data/similarity-pairs.tsv`) against the parts of the matching
//! policy that need no model: the guard and the canonical form. `just bench similarity` measures
//! the whole policy, cosine included (docs/matching.md).

use std::collections::BTreeMap;
use std::path::Path;

use aap_answers::pairs::{self, Pair, PairCategory};

/// Fewest pairs the set may have, and fewest of each category.
const MIN_PAIRS: usize = 200;
const MIN_PER_CATEGORY: usize = 15;

fn pairs() -> Vec<Pair> {
    pairs::read(Path::new(pairs::FILE)).unwrap_or_else(|e| panic!("{e}"))
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
