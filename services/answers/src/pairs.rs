//! The labelled prompt pairs the matching policy is measured on (`tests/data/similarity-pairs.tsv`,
//! docs/matching.md): read and checked here, so the pair test and `aap-similarity` (`just bench
//! similarity`) read the file alike.
//!
//! ```
//! let text = "label\tcategory\ta\tb\nsame\tcase\tBest Pizza\tbest pizza\n";
//! let pairs = aap_answers::pairs::parse(text)?;
//! assert_eq!(pairs[0].category, aap_answers::pairs::PairCategory::Case);
//! # Ok::<(), aap_answers::pairs::PairsError>(())
//! ```

use std::collections::HashMap;
use std::path::Path;

/// The pair file of this crate, where the test and the bench find it by default.
pub const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/similarity-pairs.tsv");

/// The header line the file starts with.
const HEADER: &str = "label\tcategory\ta\tb";

/// Whether one answer serves both prompts of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Label {
    /// The same question: a customer would accept one answer for both.
    Same,
    /// Different questions: answering one with the other's answer is wrong.
    Different,
}

impl Label {
    /// The label as the file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Label::Same => "same",
            Label::Different => "different",
        }
    }
}

/// What a pair exercises: for `different` pairs, the one thing that differs; for `same` pairs,
/// the way the spellings differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PairCategory {
    /// Amounts, prices and quantities ("$500" and "$1,000", "2 TB" and "4 TB").
    Numbers,
    /// Years and dates ("in 2025" and "in 2026").
    Years,
    /// Ordinals and top-N ("top 5" and "top 10", "first" and "second").
    Counts,
    /// Opposite directions ("under" and "over", "pros" and "cons", "buy" and "sell").
    Direction,
    /// One prompt negated ("with" and "without", "can" and "can't").
    Negation,
    /// An asymmetric relation with its entities swapped ("from X to Y" and "from Y to X").
    Order,
    /// Different brands, products, places or people.
    Entities,
    /// Different questions that share words.
    Topic,
    /// Letter case only.
    Case,
    /// Punctuation only.
    Punctuation,
    /// White space only.
    Whitespace,
    /// One amount spelled two ways ("$1,000", "$1k", "1000 dollars").
    NumberFormat,
    /// Clauses reordered, symmetric comparisons swapped ("A vs B" and "B vs A").
    WordOrder,
    /// A word replaced by a synonym ("cheap" and "inexpensive").
    Synonyms,
    /// Politeness and framing added ("please", "in your opinion").
    Filler,
    /// Reworded as a whole.
    Paraphrase,
}

impl PairCategory {
    /// Every category, `different` ones first.
    pub const ALL: [PairCategory; 16] = [
        PairCategory::Numbers,
        PairCategory::Years,
        PairCategory::Counts,
        PairCategory::Direction,
        PairCategory::Negation,
        PairCategory::Order,
        PairCategory::Entities,
        PairCategory::Topic,
        PairCategory::Case,
        PairCategory::Punctuation,
        PairCategory::Whitespace,
        PairCategory::NumberFormat,
        PairCategory::WordOrder,
        PairCategory::Synonyms,
        PairCategory::Filler,
        PairCategory::Paraphrase,
    ];

    /// The category as the file spells it; for the guard's categories, the same spelling as
    /// the guard's own.
    pub fn as_str(self) -> &'static str {
        match self {
            PairCategory::Numbers => "numbers",
            PairCategory::Years => "years",
            PairCategory::Counts => "counts",
            PairCategory::Direction => "direction",
            PairCategory::Negation => "negation",
            PairCategory::Order => "order",
            PairCategory::Entities => "entities",
            PairCategory::Topic => "topic",
            PairCategory::Case => "case",
            PairCategory::Punctuation => "punctuation",
            PairCategory::Whitespace => "whitespace",
            PairCategory::NumberFormat => "number-format",
            PairCategory::WordOrder => "word-order",
            PairCategory::Synonyms => "synonyms",
            PairCategory::Filler => "filler",
            PairCategory::Paraphrase => "paraphrase",
        }
    }

    /// The label every pair of this category has.
    pub fn label(self) -> Label {
        match self {
            PairCategory::Numbers
            | PairCategory::Years
            | PairCategory::Counts
            | PairCategory::Direction
            | PairCategory::Negation
            | PairCategory::Order
            | PairCategory::Entities
            | PairCategory::Topic => Label::Different,
            PairCategory::Case
            | PairCategory::Punctuation
            | PairCategory::Whitespace
            | PairCategory::NumberFormat
            | PairCategory::WordOrder
            | PairCategory::Synonyms
            | PairCategory::Filler
            | PairCategory::Paraphrase => Label::Same,
        }
    }

    /// Whether the guard must veto every pair of this category (with this category): the
    /// `different` ones but topic, which is left to the cosine.
    pub fn vetoed(self) -> bool {
        self.label() == Label::Different && self != PairCategory::Topic
    }

    fn parse(text: &str) -> Option<PairCategory> {
        PairCategory::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// One labelled pair of prompts, as written in the file (escapes resolved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    /// Line number in the file, from 1.
    pub line: usize,
    /// Whether one answer serves both.
    pub label: Label,
    /// What the pair exercises.
    pub category: PairCategory,
    /// The first prompt.
    pub a: String,
    /// The second prompt.
    pub b: String,
}

/// Why the pair file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PairsError {
    /// The file could not be read.
    #[error("cannot read the pair file {path}")]
    Io {
        /// The file.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Rows (or the header) are malformed: every problem, one a line.
    #[error("the pair file is invalid:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

/// Reads and parses a pair file.
pub fn read(path: &Path) -> Result<Vec<Pair>, PairsError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| PairsError::Io { path: path.display().to_string(), source })?;
    parse(&text)
}

/// Parses a pair file: the header, then one pair a line; `#` lines and blank lines are skipped.
///
/// Every row is checked (a known label, a category of that label, texts that are not blank,
/// a and b different, no pair twice in either order) and every problem is reported at once.
pub fn parse(text: &str) -> Result<Vec<Pair>, PairsError> {
    let mut problems = Vec::new();
    let mut pairs = Vec::new();
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    let mut header = false;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() || raw.starts_with('#') {
            continue;
        }
        if !header {
            header = true;
            if raw != HEADER {
                problems.push(format!("line {line}: the header must be {HEADER:?}, found {raw:?}"));
            }
            continue;
        }
        match parse_row(line, raw) {
            Ok(pair) => {
                let key =
                    if pair.a <= pair.b { (pair.a.clone(), pair.b.clone()) } else { (pair.b.clone(), pair.a.clone()) };
                if let Some(first) = seen.insert(key, line) {
                    problems.push(format!("line {line}: the same pair as line {first}"));
                }
                pairs.push(pair);
            }
            Err(problem) => problems.push(format!("line {line}: {problem}")),
        }
    }
    if !header {
        problems.push(format!("no header line {HEADER:?}"));
    }
    if problems.is_empty() { Ok(pairs) } else { Err(PairsError::Invalid(problems)) }
}

fn parse_row(line: usize, raw: &str) -> Result<Pair, String> {
    let fields: Vec<&str> = raw.split('\t').collect();
    let [label, category, a, b] = fields[..] else {
        return Err(format!("{} fields, expected 4 (label, category, a, b)", fields.len()));
    };
    let label = match label {
        "same" => Label::Same,
        "different" => Label::Different,
        other => return Err(format!("unknown label {other:?}, expected same or different")),
    };
    let category = PairCategory::parse(category).ok_or_else(|| format!("unknown category {category:?}"))?;
    if category.label() != label {
        return Err(format!(
            "category {} belongs to {} pairs, not {}",
            category.as_str(),
            category.label().as_str(),
            label.as_str()
        ));
    }
    let a = unescape(a)?;
    let b = unescape(b)?;
    if a.trim().is_empty() || b.trim().is_empty() {
        return Err("a blank prompt".into());
    }
    if a == b {
        return Err("a and b are the same text".into());
    }
    Ok(Pair { line, label, category, a, b })
}

/// Resolves `\t`, `\n`, `\r` and `\\`, the only escapes, so white space can be written visibly.
fn unescape(field: &str) -> Result<String, String> {
    let mut out = String::with_capacity(field.len());
    let mut chars = field.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('\\') => out.push('\\'),
            Some(other) => return Err(format!("unknown escape \\{other} in {field:?}")),
            None => return Err(format!("a lone backslash at the end of {field:?}")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_with_escapes_resolved() {
        let text = "label\tcategory\ta\tb\n# a comment\n\nsame\twhitespace\tbest\\tvpn\\n\tbest vpn\n";
        let pairs = parse(text).expect("valid");
        assert_eq!(pairs.len(), 1);
        assert_eq!(pairs[0].line, 4);
        assert_eq!(pairs[0].a, "best\tvpn\n");
        assert_eq!(pairs[0].label, Label::Same);
    }

    #[test]
    fn every_bad_row_is_reported() {
        let text = "label\tcategory\ta\tb\n\
                    maybe\tcase\tx\ty\n\
                    same\tnumbers\tx\ty\n\
                    same\tcolour\tx\ty\n\
                    same\tcase\tx\tx\n\
                    same\tcase\t \ty\n\
                    same\tcase\tx\n\
                    same\tcase\tx\\q\ty\n\
                    different\ttopic\tp\tq\n\
                    different\ttopic\tq\tp\n";
        let Err(PairsError::Invalid(problems)) = parse(text) else { panic!("accepted") };
        assert_eq!(problems.len(), 8, "{problems:#?}");
        assert!(problems[7].contains("the same pair as line 9"), "{problems:#?}");
    }

    #[test]
    fn the_header_is_required() {
        assert!(parse("same\tcase\tA\ta\n").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn categories_round_trip_and_belong_to_one_label() {
        for category in PairCategory::ALL {
            assert_eq!(PairCategory::parse(category.as_str()), Some(category));
        }
        let vetoed = PairCategory::ALL.iter().filter(|c| c.vetoed()).count();
        assert_eq!(vetoed, 7);
    }
}
