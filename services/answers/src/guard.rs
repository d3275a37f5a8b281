//! The near-miss guard: two prompts close by cosine may still ask different questions, e.g.
//! "laptops under $500" and "laptops under $1,000", "in 2025" and "in 2026", "top 5" and "top
//! 10", "best" and "worst", "is A better than B" and "is B better than A". Before a neighbour
//! counts as similar, the guard compares the two prompts' salient tokens; a conflict vetoes the
//! match whatever the cosine, and says why.
//!
//! It is deterministic and conservative: it never makes two prompts the same, it only holds
//! apart prompts the embedding would merge.

use std::collections::BTreeSet;
use std::fmt;

use crate::normalize::{canonical, format_number};

/// What kind of salient token differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Amounts, prices, quantities, units or currencies.
    Numbers,
    /// Years.
    Years,
    /// Ordinals and counts ("top 5", "second").
    Counts,
    /// Comparatives and direction (under/over, cheapest/most expensive, best/worst).
    Direction,
    /// One prompt negates what the other asks.
    Negation,
    /// An asymmetric comparison with its entities swapped.
    Order,
    /// Named entities: brands, products, places.
    Entities,
}

impl Category {
    /// The category's name in reasons, metrics and the labelled pair set.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Numbers => "numbers",
            Category::Years => "years",
            Category::Counts => "counts",
            Category::Direction => "direction",
            Category::Negation => "negation",
            Category::Order => "order",
            Category::Entities => "entities",
        }
    }

    /// Every category, in the order the guard checks them.
    pub const ALL: [Category; 7] = [
        Category::Numbers,
        Category::Years,
        Category::Counts,
        Category::Negation,
        Category::Direction,
        Category::Order,
        Category::Entities,
    ];
}

/// Why two prompts are not the same question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Veto {
    pub category: Category,
    /// For people: "numbers differ: 500 vs 1000".
    pub reason: String,
}

impl fmt::Display for Veto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// Whether the stored prompt `stored` may answer the asked prompt `asked`: `Err` names the
/// first conflict. Symmetric: the order of the two texts changes the wording of the reason,
/// never the verdict.
pub fn check(asked: &str, stored: &str) -> Result<(), Veto> {
    let a = Features::of(asked);
    let b = Features::of(stored);
    numbers(&a, &b)?;
    negation(&a, &b)?;
    direction(&a, &b)?;
    order(&a, &b)?;
    entities(&a, &b)?;
    Ok(())
}

fn veto(category: Category, reason: String) -> Result<(), Veto> {
    Err(Veto { category, reason })
}

/// A number in a prompt, with what gives it meaning.
#[derive(Debug, Clone, PartialEq)]
struct Number {
    value: f64,
    currency: Option<&'static str>,
    unit: Option<&'static str>,
    kind: NumberKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum NumberKind {
    Amount,
    Year,
    Count,
    /// Part of a product's name: "iPhone 15", "Windows 11".
    Model(String),
}

impl Number {
    fn category(&self) -> Category {
        match self.kind {
            NumberKind::Amount => Category::Numbers,
            NumberKind::Year => Category::Years,
            NumberKind::Count => Category::Counts,
            NumberKind::Model(_) => Category::Entities,
        }
    }
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = format_number(self.value);
        match (&self.kind, self.currency, self.unit) {
            (NumberKind::Count, _, _) => write!(f, "{value}"),
            (NumberKind::Model(name), _, _) => write!(f, "{name} {value}"),
            (_, Some(currency), _) => write!(f, "{currency}{value}"),
            (_, None, Some(unit)) => write!(f, "{value} {unit}"),
            _ => f.write_str(&value),
        }
    }
}

/// What the guard reads off one prompt.
struct Features {
    /// Words and symbols of the canonical text, with "n't" read as "not".
    tokens: Vec<String>,
    numbers: Vec<Number>,
    /// Entity candidates: capitalised mid-sentence, mixed letters and digits, or well known.
    entities: BTreeSet<String>,
}

#[rustfmt::skip]
const NUMBER_WORDS: &[(&str, f64)] = &[
    ("two", 2.0), ("three", 3.0), ("four", 4.0), ("five", 5.0), ("six", 6.0), ("seven", 7.0), ("eight", 8.0),
    ("nine", 9.0), ("ten", 10.0), ("eleven", 11.0), ("twelve", 12.0), ("fifteen", 15.0), ("twenty", 20.0),
    ("thirty", 30.0), ("forty", 40.0), ("fifty", 50.0), ("hundred", 100.0), ("dozen", 12.0),
];

#[rustfmt::skip]
const ORDINAL_WORDS: &[(&str, f64)] = &[
    ("first", 1.0), ("second", 2.0), ("third", 3.0), ("fourth", 4.0), ("fifth", 5.0), ("sixth", 6.0),
    ("seventh", 7.0), ("eighth", 8.0), ("ninth", 9.0), ("tenth", 10.0),
];

/// Units and their spellings; the first is the one shown.
#[rustfmt::skip]
const UNITS: &[&[&str]] = &[
    &["%", "percent", "per cent", "pct"],
    &["tb", "terabyte", "terabytes"],
    &["gb", "gigabyte", "gigabytes", "gig", "gigs"],
    &["mb", "megabyte", "megabytes"],
    &["kb", "kilobyte", "kilobytes"],
    &["hz", "hertz"],
    &["ghz", "gigahertz"],
    &["mp", "megapixel", "megapixels"],
    &["w", "watt", "watts"],
    &["mah"],
    &["inch", "inches", "in", "\""],
    &["ft", "foot", "feet"],
    &["cm", "centimetre", "centimetres", "centimeter", "centimeters"],
    &["mm", "millimetre", "millimetres", "millimeter", "millimeters"],
    &["km", "kilometre", "kilometres", "kilometer", "kilometers"],
    &["mile", "miles", "mi"],
    &["kg", "kilo", "kilos", "kilogram", "kilograms"],
    &["lb", "lbs", "pound", "pounds"],
    &["g", "gram", "grams"],
    &["l", "litre", "litres", "liter", "liters"],
    &["ml", "millilitre", "millilitres", "milliliter", "milliliters"],
    &["mph"],
    &["kmh", "km/h"],
    &["calorie", "calories", "kcal"],
    &["mg", "milligram", "milligrams"],
    &["second", "seconds", "sec", "secs"],
    &["minute", "minutes", "min", "mins"],
    &["hour", "hours", "hr", "hrs", "h"],
    &["day", "days"],
    &["week", "weeks"],
    &["month", "months"],
    &["year", "years", "yr", "yrs"],
    &["person", "people", "persons"],
    &["k"],
];

fn unit_of(word: &str) -> Option<&'static str> {
    UNITS.iter().find(|spellings| spellings.contains(&word)).map(|spellings| spellings[0])
}

/// Words after which a number counts items: "top 5", "best 3".
const COUNT_BEFORE: &[&str] = &["top", "bottom", "best", "worst", "first", "last", "list", "rank", "ranking"];

fn is_superlative(word: &str) -> bool {
    matches!(word, "best" | "worst" | "top" | "most" | "least")
        || (word.len() > 4 && word.ends_with("est") && !matches!(word, "interest" | "forest" | "honest" | "request"))
}

fn currency_of(token: &str) -> Option<&'static str> {
    ["$", "€", "£", "¥", "₹"].into_iter().find(|symbol| *symbol == token)
}

/// The canonical text as tokens: runs of letters and digits (a number keeps its decimal point),
/// currency symbols and "%" on their own; "n't" and "cannot" read as "not".
fn tokenize(canonical: &str) -> Vec<String> {
    let text = canonical.replace('’', "'").replace("n't", " not").replace("cannot", "can not");
    let mut tokens = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let in_number = c == '.'
            && !current.is_empty()
            && current.chars().all(|d| d.is_ascii_digit() || d == '.')
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if c.is_alphanumeric() || in_number {
            current.push(c);
            continue;
        }
        if !current.is_empty() {
            tokens.push(std::mem::take(&mut current));
        }
        if "$€£¥₹%\"".contains(c) {
            tokens.push(c.to_string());
        }
    }
    if !current.is_empty() {
        tokens.push(current);
    }
    // A possessive "'s" is not a word.
    tokens.retain(|t| t != "s");
    tokens
}

fn parse_value(token: &str) -> Option<f64> {
    if token.bytes().all(|b| b.is_ascii_digit() || b == b'.') && token.as_bytes()[0].is_ascii_digit() {
        return token.parse().ok();
    }
    None
}

/// An ordinal written with digits: "1st", "22nd", "3rd", "10th".
fn ordinal_value(token: &str) -> Option<f64> {
    let digits = token.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let suffix = &token[digits.len()..];
    if digits.is_empty() || !matches!(suffix, "st" | "nd" | "rd" | "th") {
        return None;
    }
    parse_value(digits)
}

/// A number glued to its unit: "2tb", "16gb", "65w", "5k".
fn glued_unit(token: &str) -> Option<(f64, &'static str)> {
    let digits = token.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    if digits.is_empty() || digits.len() == token.len() {
        return None;
    }
    Some((parse_value(digits)?, unit_of(&token[digits.len()..])?))
}

impl Features {
    fn of(text: &str) -> Features {
        let canonical = canonical(text);
        let tokens = tokenize(&canonical);
        let entities = entities_of(text, &tokens);
        let numbers = numbers_of(&tokens, &entities);
        Features { tokens, numbers, entities }
    }

    fn has(&self, word: &str) -> bool {
        self.tokens.iter().any(|t| t == word)
    }

    /// Whether the prompt names `entity`: as a word, or as two or three words run together
    /// ("wi fi" names "wifi").
    fn names(&self, entity: &str) -> bool {
        self.has(entity)
            || (2..=3).any(|n| self.tokens.windows(n).any(|w| w.concat() == entity))
            || self.entities.contains(entity)
    }
}

fn numbers_of(tokens: &[String], entities: &BTreeSet<String>) -> Vec<Number> {
    let mut numbers = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let previous = i.checked_sub(1).map(|p| tokens[p].as_str());
        let next = tokens.get(i + 1).map(String::as_str);
        if let Some(value) =
            ordinal_value(token).or_else(|| ORDINAL_WORDS.iter().find(|(word, _)| word == token).map(|(_, v)| *v))
        {
            // "second" is also a unit of time: "30 second" is an amount, read below.
            if !(token == "second" && previous.and_then(parse_value).is_some()) {
                numbers.push(Number { value, currency: None, unit: None, kind: NumberKind::Count });
            }
            continue;
        }
        let (value, mut unit) = if let Some(value) = parse_value(token) {
            (value, None)
        } else if let Some((value, unit)) = glued_unit(token) {
            (value, Some(unit))
        } else if let Some((_, value)) = NUMBER_WORDS.iter().find(|(word, _)| word == token) {
            (*value, None)
        } else {
            continue;
        };
        let currency = previous.and_then(currency_of);
        if unit.is_none() && currency.is_none() {
            unit = next.and_then(unit_of);
        }
        let year = currency.is_none()
            && unit.is_none()
            && value.fract() == 0.0
            && (1900.0..=2100.0).contains(&value)
            && token.len() == 4;
        let count = currency.is_none()
            && unit.is_none()
            && (previous.is_some_and(|p| COUNT_BEFORE.contains(&p)) || next.is_some_and(is_superlative));
        let model = previous.filter(|p| currency.is_none() && unit.is_none() && !year && entities.contains(*p));
        let kind = if let Some(name) = model {
            NumberKind::Model(name.to_owned())
        } else if year {
            NumberKind::Year
        } else if count {
            NumberKind::Count
        } else {
            NumberKind::Amount
        };
        numbers.push(Number { value, currency, unit, kind });
    }
    numbers
}

/// Numbers, years and counts: the same values with the same currencies and units, or a veto
/// naming the ones that differ.
fn numbers(a: &Features, b: &Features) -> Result<(), Veto> {
    let mut left: Vec<&Number> = a.numbers.iter().collect();
    let mut right: Vec<&Number> = b.numbers.iter().collect();
    // Pair off equal values (whatever their currency or unit, compared next).
    let mut conflicts = Vec::new();
    left.retain(|n| {
        if let Some(at) = right.iter().position(|m| m.value == n.value) {
            let m = right.remove(at);
            let currency = matches!((n.currency, m.currency), (Some(x), Some(y)) if x != y);
            let unit = matches!((n.unit, m.unit), (Some(x), Some(y)) if x != y);
            if currency || unit {
                conflicts.push(((*n).clone(), m.clone()));
            }
            false
        } else {
            true
        }
    });
    if left.is_empty() && right.is_empty() {
        if let Some((n, m)) = conflicts.first() {
            let what = if n.currency != m.currency { "currencies" } else { "units" };
            return veto(Category::Numbers, format!("{what} differ: {n} vs {m}"));
        }
        return Ok(());
    }
    // The category of what differs: a year if any year differs, then counts, then amounts.
    let category = left
        .iter()
        .chain(&right)
        .map(|n| n.category())
        .min_by_key(|c| match c {
            Category::Years => 0,
            Category::Counts => 1,
            Category::Numbers => 2,
            _ => 3,
        })
        .unwrap_or(Category::Numbers);
    let list = |numbers: &[&Number]| {
        if numbers.is_empty() {
            "none".to_owned()
        } else {
            numbers.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")
        }
    };
    veto(category, format!("{} differ: {} vs {}", category.as_str(), list(&left), list(&right)))
}

/// Words that negate what they qualify.
const NEGATIONS: &[&str] = &["not", "no", "never", "without", "none", "nothing", "neither", "nor", "non", "nobody"];

fn negation(a: &Features, b: &Features) -> Result<(), Veto> {
    let count = |f: &Features| (0..f.tokens.len()).filter(|i| negates(&f.tokens, *i)).count();
    let (x, y) = (count(a), count(b));
    if (x > 0) != (y > 0) {
        let (negated, word) = if x > 0 { ("asked", first_negation(a)) } else { ("stored", first_negation(b)) };
        return veto(Category::Negation, format!("negation differs: only the {negated} prompt says \"{word}\""));
    }
    Ok(())
}

fn first_negation(f: &Features) -> &str {
    (0..f.tokens.len()).find(|i| negates(&f.tokens, *i)).map(|i| f.tokens[i].as_str()).unwrap_or("not")
}

/// Whether token `i` negates the question, not the asker's own state of mind: "I don't know
/// much about …", "not sure", "no idea" and "not an expert" are filler.
fn negates(tokens: &[String], i: usize) -> bool {
    if !NEGATIONS.contains(&tokens[i].as_str()) {
        return false;
    }
    let next = |k: usize| tokens.get(i + k).map(String::as_str);
    !matches!(
        (tokens[i].as_str(), next(1), next(2)),
        ("not", Some("know" | "sure" | "certain"), _)
            | ("no", Some("idea" | "clue"), _)
            | ("not", Some("an" | "a"), Some("expert" | "pro" | "professional"))
    )
}

/// Opposite poles; a prompt on one pole and the other on the opposite one ask different things.
/// Phrases of several words are matched before single words (and take their words).
#[rustfmt::skip]
const POLES: &[(&str, &[&str], &[&str])] = &[
    ("limit",
        &[
            "under", "below", "less than", "cheaper than", "lower than", "at most", "up to", "no more than",
            "max", "maximum", "beneath", "within", "<",
        ],
        &[
            "over", "above", "more than", "greater than", "at least", "higher than", "exceeding", "minimum",
            "beyond", ">",
        ]),
    ("price",
        &[
            "cheapest", "cheap", "cheaper", "budget", "affordable", "inexpensive", "low cost", "lowest price",
            "least expensive", "low budget",
        ],
        &[
            "most expensive", "expensive", "priciest", "pricey", "premium", "luxury", "high end", "costliest",
            "more expensive",
        ]),
    ("quality",
        &[
            "best", "good", "better", "greatest", "finest", "top rated",
        ],
        &[
            "worst", "bad", "worse", "poorest",
        ]),
    ("speed",
        &[
            "fastest", "fast", "faster", "quickest", "quick", "quicker",
        ],
        &[
            "slowest", "slow", "slower",
        ]),
    ("size",
        &[
            "largest", "biggest", "big", "bigger", "large", "larger",
        ],
        &[
            "smallest", "small", "smaller", "tiny", "compact", "mini",
        ]),
    ("amount",
        &[
            "most", "more", "maximum",
        ],
        &[
            "least", "less", "fewer", "fewest", "minimum",
        ]),
    ("level",
        &[
            "highest", "high", "higher",
        ],
        &[
            "lowest", "low", "lower",
        ]),
    ("merit",
        &[
            "pros", "advantages", "benefits", "upsides", "strengths",
        ],
        &[
            "cons", "disadvantages", "drawbacks", "downsides", "weaknesses", "risks",
        ]),
    ("trend",
        &[
            "increase", "increases", "increasing", "rise", "rises", "rising", "grow", "growing", "growth",
            "gain", "gains", "go up", "goes up", "going up", "went up",
        ],
        &[
            "decrease", "decreases", "decreasing", "fall", "falls", "falling", "drop", "drops", "decline",
            "declining", "shrink", "lose", "losing", "loss", "go down", "goes down", "going down", "went down",
        ]),
    ("time",
        &[
            "before", "prior to",
        ],
        &[
            "after", "following",
        ]),
    ("trade",
        &[
            "buy", "buying", "purchase", "purchasing",
        ],
        &[
            "sell", "selling",
        ]),
    ("tenure",
        &[
            "buy", "buying", "own", "owning",
        ],
        &[
            "rent", "renting", "lease", "leasing",
        ]),
    ("ease",
        &[
            "easiest", "easy", "easier", "simplest", "simple",
        ],
        &[
            "hardest", "hard", "harder", "difficult", "toughest",
        ]),
    ("age",
        &[
            "newest", "newer", "latest",
        ],
        &[
            "oldest", "older",
        ]),
    ("start",
        &[
            "start", "starting", "begin", "beginning",
        ],
        &[
            "stop", "stopping", "quit", "quitting",
        ]),
    ("sex",
        &[
            "men", "man", "male", "mens", "boys", "boy",
        ],
        &[
            "women", "woman", "female", "womens", "girls", "girl",
        ]),
    ("skill",
        &[
            "beginner", "beginners", "novice", "novices", "entry level",
        ],
        &[
            "advanced", "expert", "experts", "professional", "professionals",
        ]),
    ("season",
        &[
            "summer",
        ],
        &[
            "winter",
        ]),
    ("place",
        &[
            "indoor", "indoors", "inside",
        ],
        &[
            "outdoor", "outdoors", "outside",
        ]),
    ("channel",
        &[
            "online",
        ],
        &[
            "offline", "in store", "in person",
        ]),
    ("length",
        &[
            "longest", "long", "longer",
        ],
        &[
            "shortest", "short", "shorter",
        ]),
    ("weight",
        &[
            "heaviest", "heavy", "heavier",
        ],
        &[
            "lightest", "lightweight", "lighter",
        ]),
    ("temperature",
        &[
            "hot", "hottest", "warm", "warmest",
        ],
        &[
            "cold", "coldest", "cool", "coolest",
        ]),
    ("health",
        &[
            "healthy", "healthiest", "safe", "safest", "legal",
        ],
        &[
            "unhealthy", "dangerous", "unsafe", "illegal",
        ]),
    ("sign",
        &[
            "positive",
        ],
        &[
            "negative",
        ]),
    ("flow",
        &[
            "import", "upload", "inbound",
        ],
        &[
            "export", "download", "outbound",
        ]),
    ("light",
        &[
            "day", "daytime", "morning",
        ],
        &[
            "night", "nighttime", "evening",
        ]),
];

/// Which poles of each group a prompt is on: (group, low pole, high pole) per group it touches.
fn poles(f: &Features) -> Vec<(&'static str, Option<&'static str>, Option<&'static str>)> {
    let mut out = Vec::new();
    for (group, low, high) in POLES {
        let mut used = vec![false; f.tokens.len()];
        // Phrases of the other groups that contain a word of this one are read first: "more
        // than" is a limit, not an amount; "most expensive" is a price.
        for (other, other_low, other_high) in POLES {
            if other == group {
                continue;
            }
            for phrase in other_low.iter().chain(other_high.iter()).filter(|p| p.contains(' ')) {
                let words: Vec<&str> = phrase.split(' ').collect();
                for start in 0..f.tokens.len() {
                    let end = start + words.len();
                    if end <= f.tokens.len() && f.tokens[start..end].iter().zip(&words).all(|(t, w)| t == w) {
                        used[start..end].iter_mut().for_each(|u| *u = true);
                    }
                }
            }
        }
        let mut find = |phrases: &[&'static str]| -> Option<&'static str> {
            // Longer phrases first, so "least expensive" is not read as "expensive".
            let mut sorted: Vec<&'static str> = phrases.to_vec();
            sorted.sort_by_key(|p| std::cmp::Reverse(p.split(' ').count()));
            let mut found = None;
            for phrase in sorted {
                let words: Vec<&str> = phrase.split(' ').collect();
                for start in 0..f.tokens.len() {
                    let end = start + words.len();
                    if end <= f.tokens.len()
                        && f.tokens[start..end].iter().zip(&words).all(|(t, w)| t == w)
                        && !used[start..end].iter().any(|u| *u)
                    {
                        used[start..end].iter_mut().for_each(|u| *u = true);
                        found.get_or_insert(phrase);
                    }
                }
            }
            found
        };
        let l = find(low);
        let h = find(high);
        if l.is_some() || h.is_some() {
            out.push((*group, l, h));
        }
    }
    out
}

fn direction(a: &Features, b: &Features) -> Result<(), Veto> {
    let (pa, pb) = (poles(a), poles(b));
    for (group, a_low, a_high) in &pa {
        let Some((_, b_low, b_high)) = pb.iter().find(|(g, _, _)| g == group) else { continue };
        let opposite = match (a_low, a_high, b_low, b_high) {
            (Some(x), None, None, Some(y)) | (None, Some(x), Some(y), None) => Some((x, y)),
            _ => None,
        };
        if let Some((x, y)) = opposite {
            let category = if *group == "sex" { Category::Entities } else { Category::Direction };
            return veto(
                category,
                format!("{} differs: {x} vs {y}", if *group == "sex" { "audience" } else { "direction" }),
            );
        }
    }
    Ok(())
}

/// Words that carry no entity of a comparison.
#[rustfmt::skip]
const STOPWORDS: &[&str] = &[
    "a", "an", "the", "is", "are", "was", "were", "be", "it", "its", "i", "my", "me", "we", "our", "you",
    "your", "should", "would", "could", "can", "do", "does", "did", "to", "from", "than", "for", "of", "on",
    "in", "at", "with", "and", "or", "vs", "versus", "which", "what", "who", "how", "why", "when", "where",
    "better", "worse", "more", "less", "faster", "slower", "cheaper", "safer", "really", "actually", "still",
    "much", "way", "switch", "move", "migrate", "convert", "change", "upgrade", "really", "this", "that",
    "there", "some", "any", "please", "tell", "know", "think", "good", "bad", "best", "choose", "pick",
    "prefer", "use", "using", "over", "into", "rather", "instead", "if", "so", "as", "about", "by", "get",
];

fn is_content(token: &str) -> bool {
    token.chars().any(char::is_alphanumeric) && !STOPWORDS.contains(&token)
}

/// The ordered comparisons in a prompt: (what comes first, what comes second) around "than",
/// "over" (as a preference), "from … to", "to", "into" and "instead of", each side a few
/// content words.
fn comparisons(tokens: &[String]) -> Vec<(&'static str, BTreeSet<String>, BTreeSet<String>)> {
    const WINDOW: usize = 3;
    let side = |range: Box<dyn Iterator<Item = usize> + '_>| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for i in range {
            let t = &tokens[i];
            // A comparison stops at the clause's other markers.
            if matches!(t.as_str(), "than" | "to" | "from" | "into" | "over" | "instead" | "vs" | "versus" | "or") {
                break;
            }
            if is_content(t) && parse_value(t).is_none() {
                out.insert(t.clone());
                if out.len() == WINDOW {
                    break;
                }
            }
        }
        out
    };
    let mut out = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        let marker: &'static str = match token.as_str() {
            "than" => "than",
            "to" => "to",
            "into" => "to",
            "over" => "over",
            "instead" if tokens.get(i + 1).is_some_and(|n| n == "of") => "instead of",
            _ => continue,
        };
        let after = if marker == "instead of" { i + 2 } else { i + 1 };
        let left = side(Box::new((0..i).rev()));
        let right = side(Box::new(after..tokens.len()));
        if !left.is_empty() && !right.is_empty() {
            out.push((marker, left, right));
        }
    }
    out
}

fn order(a: &Features, b: &Features) -> Result<(), Veto> {
    let ca = comparisons(&a.tokens);
    let cb = comparisons(&b.tokens);
    for (marker, a_left, a_right) in &ca {
        for (other, b_left, b_right) in &cb {
            if marker != other {
                continue;
            }
            let first = a_left.iter().find(|p| b_right.contains(*p) && !b_left.contains(*p) && !a_right.contains(*p));
            let second = a_right.iter().find(|q| b_left.contains(*q) && !b_right.contains(*q) && !a_left.contains(*q));
            if let (Some(p), Some(q)) = (first, second) {
                return veto(
                    Category::Order,
                    format!("compared the other way round: {p} {marker} {q} vs {q} {marker} {p}"),
                );
            }
        }
    }
    Ok(())
}

/// Brands, products, services and places a prompt may name in lower case.
#[rustfmt::skip]
const KNOWN_ENTITIES: &[&str] = &[
    // Technology and products.
    "apple", "iphone", "ipad", "macbook", "imac", "mac", "airpods", "samsung", "galaxy", "google", "pixel",
    "android", "ios", "windows", "linux", "ubuntu", "macos", "microsoft", "surface", "xbox", "playstation",
    "ps5", "nintendo", "switch2", "sony", "bose", "sennheiser", "jabra", "beats", "dell", "hp", "lenovo",
    "thinkpad", "asus", "acer", "msi", "razer", "lg", "huawei", "xiaomi", "oneplus", "motorola", "nokia",
    "garmin", "fitbit", "kindle", "amazon", "alexa", "netflix", "spotify", "youtube", "tiktok", "instagram",
    "facebook", "meta", "whatsapp", "telegram", "signal", "slack", "teams", "zoom", "notion", "obsidian",
    "evernote", "trello", "asana", "jira", "salesforce", "hubspot", "shopify", "wordpress", "wix",
    "squarespace", "chatgpt", "openai", "claude", "anthropic", "gemini", "perplexity", "copilot", "bing",
    "chrome", "firefox", "safari", "edge", "nvidia", "amd", "intel", "rtx", "ryzen", "tesla", "toyota",
    "honda", "ford", "bmw", "audi", "mercedes", "volkswagen", "vw", "hyundai", "kia", "nissan", "subaru",
    "mazda", "volvo", "porsche", "rivian", "nike", "adidas", "puma", "reebok", "asics", "hoka", "brooks",
    "ikea", "walmart", "target", "costco", "ebay", "etsy", "paypal", "venmo", "stripe", "visa", "mastercard",
    "amex", "chase", "revolut", "wise", "coinbase", "bitcoin", "ethereum", "solana", "vanguard", "fidelity",
    "robinhood", "python", "rust", "java", "javascript", "typescript", "golang", "kotlin", "swift", "react",
    "vue", "angular", "svelte", "django", "flask", "rails", "postgres", "postgresql", "mysql", "mongodb",
    "redis", "aws", "azure", "gcp", "docker", "kubernetes", "airbnb", "uber", "lyft", "expedia", "booking",
    "duolingo", "peloton", "dyson", "roomba", "nespresso", "keurig", "vitamix", "ninja", "instant", "canon",
    "nikon", "fujifilm", "gopro", "dji", "roku", "hulu", "disney", "hbo", "max", "peacock", "steam", "epic",
    "fortnite", "minecraft", "lego", "ozempic", "wegovy", "ibuprofen", "paracetamol", "tylenol", "advil",
    "aspirin", "vpn", "nordvpn", "expressvpn", "surfshark",
    // Places.
    "paris", "london", "rome", "berlin", "madrid", "barcelona", "lisbon", "amsterdam", "vienna", "prague",
    "dublin", "tokyo", "kyoto", "osaka", "seoul", "beijing", "shanghai", "singapore", "bangkok", "bali",
    "sydney", "melbourne", "dubai", "istanbul", "athens", "cairo", "toronto", "vancouver", "montreal",
    "chicago", "boston", "seattle", "austin", "denver", "miami", "atlanta", "dallas", "houston", "phoenix",
    "portland", "nyc", "la", "sf", "york", "angeles", "francisco", "diego", "vegas", "orleans", "mexico",
    "canada", "usa", "us", "uk", "america", "england", "scotland", "ireland", "wales", "france", "germany",
    "spain", "italy", "portugal", "greece", "netherlands", "belgium", "switzerland", "austria", "sweden",
    "norway", "denmark", "finland", "iceland", "poland", "japan", "china", "korea", "india", "thailand",
    "vietnam", "indonesia", "philippines", "australia", "zealand", "brazil", "argentina", "chile", "peru",
    "colombia", "egypt", "morocco", "kenya", "nigeria", "texas", "california", "florida", "nevada", "arizona",
    "colorado", "washington", "oregon", "utah", "georgia", "ohio", "michigan", "illinois", "massachusetts",
    "virginia", "carolina", "hawaii", "alaska", "europe", "asia", "africa", "tuscany", "provence", "alps",
    "jersey",
];

fn is_entity_word(token: &str) -> bool {
    KNOWN_ENTITIES.contains(&token)
}

/// A token with letters and digits, e.g. "m3", "s24", "rtx4090", "ps5".
fn is_model_name(token: &str) -> bool {
    token.chars().any(|c| c.is_ascii_digit())
        && token.chars().any(|c| c.is_alphabetic())
        && ordinal_value(token).is_none()
        && glued_unit(token).is_none()
}

/// Entity candidates: known names, model names, and words capitalised mid-sentence (unless the
/// prompt capitalises most of its words, as titles do).
fn entities_of(original: &str, tokens: &[String]) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = tokens.iter().filter(|t| is_entity_word(t) || is_model_name(t)).cloned().collect();
    let words: Vec<&str> = original.split_whitespace().collect();
    let capitalised = words.iter().filter(|w| w.chars().next().is_some_and(char::is_uppercase)).count();
    if capitalised * 2 > words.len().max(1) {
        return out;
    }
    let mut sentence_start = true;
    for word in words {
        let trimmed = word.trim_matches(|c: char| !c.is_alphanumeric());
        if !sentence_start && trimmed.chars().next().is_some_and(char::is_uppercase) && trimmed != "I" {
            // "Wi-Fi" is one name, "wifi".
            let joined: String = canonical(trimmed).chars().filter(|c| c.is_alphanumeric()).collect();
            let name = joined.trim_start_matches(|c: char| c.is_ascii_digit());
            let plain = NEGATIONS.contains(&name) || unit_of(name).is_some() || normalize_currency(name);
            if !plain && name.chars().any(char::is_alphabetic) && !joined.chars().all(|c| c.is_ascii_digit()) {
                out.insert(joined);
            }
        }
        sentence_start = word.ends_with(['.', '?', '!', ':']);
    }
    out
}

/// Currency codes and words, which are not names.
fn normalize_currency(word: &str) -> bool {
    matches!(word, "usd" | "eur" | "gbp" | "jpy" | "inr" | "cad" | "aud" | "chf" | "dollars" | "euros")
}

fn entities(a: &Features, b: &Features) -> Result<(), Veto> {
    let missing = |from: &Features, in_other: &Features| -> Vec<String> {
        from.entities.iter().filter(|e| !in_other.names(e)).cloned().collect()
    };
    let (only_a, only_b) = (missing(a, b), missing(b, a));
    if only_a.is_empty() && only_b.is_empty() {
        return Ok(());
    }
    let list = |names: &[String]| if names.is_empty() { "none".to_owned() } else { names.join(", ") };
    veto(Category::Entities, format!("entities differ: {} vs {}", list(&only_a), list(&only_b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vetoed(a: &str, b: &str) -> Option<Veto> {
        let forward = check(a, b).err();
        let backward = check(b, a).err();
        assert_eq!(forward.is_some(), backward.is_some(), "asymmetric verdict for {a:?} / {b:?}");
        forward
    }

    fn assert_vetoed(category: Category, a: &str, b: &str) -> String {
        let veto = vetoed(a, b).unwrap_or_else(|| panic!("not vetoed: {a:?} / {b:?}"));
        assert_eq!(veto.category, category, "{a:?} / {b:?}: {}", veto.reason);
        veto.reason
    }

    fn assert_same(a: &str, b: &str) {
        if let Some(veto) = vetoed(a, b) {
            panic!("vetoed {a:?} / {b:?}: {}", veto.reason);
        }
    }

    #[test]
    fn amounts_that_differ_are_different_questions() {
        let reason = assert_vetoed(Category::Numbers, "best laptops under $500", "best laptops under $1,000");
        assert_eq!(reason, "numbers differ: $500 vs $1000");
        assert_vetoed(Category::Numbers, "2 TB SSD deals", "4 TB SSD deals");
        assert_vetoed(Category::Numbers, "phones with 8gb ram", "phones with 12gb ram");
        assert_vetoed(Category::Numbers, "hotels under €100 a night", "hotels under $100 a night");
        assert_vetoed(Category::Numbers, "best laptops", "best laptops under $1000");
        assert_same("best laptops under $1,000", "Best laptops under $1000?");
        assert_same("best laptops under $1k", "best laptops under 1000 dollars");
    }

    #[test]
    fn years_that_differ_are_different_questions() {
        let reason = assert_vetoed(Category::Years, "best phones in 2025", "best phones in 2026");
        assert_eq!(reason, "years differ: 2025 vs 2026");
        assert_vetoed(Category::Years, "tax brackets 2024", "tax brackets");
        assert_same("best phones of 2025", "which phones are the best in 2025");
    }

    #[test]
    fn counts_and_ordinals_that_differ_are_different_questions() {
        let reason = assert_vetoed(Category::Counts, "top 5 CRM tools", "top 10 CRM tools");
        assert_eq!(reason, "counts differ: 5 vs 10");
        assert_vetoed(Category::Counts, "the 3 best budget phones", "the 5 best budget phones");
        assert_vetoed(Category::Counts, "who was the first president", "who was the second president");
        assert_same("top five CRM tools", "top 5 CRM tools");
        assert_same("the 3 best phones", "the best 3 phones");
    }

    #[test]
    fn opposite_directions_are_different_questions() {
        let reason = assert_vetoed(Category::Direction, "best laptops under $1,000", "best laptops over $1,000");
        assert_eq!(reason, "direction differs: under vs over");
        assert_vetoed(Category::Direction, "cheapest flights to Lisbon", "most expensive flights to Lisbon");
        assert_vetoed(Category::Direction, "best running shoes", "worst running shoes");
        assert_vetoed(Category::Direction, "pros of remote work", "cons of remote work");
        assert_vetoed(Category::Direction, "should I buy bitcoin now", "should I sell bitcoin now");
        assert_vetoed(Category::Direction, "what to do before a marathon", "what to do after a marathon");
        assert_vetoed(Category::Direction, "least expensive cities in Europe", "most expensive cities in Europe");
        assert_same("cheapest flights to Lisbon", "most affordable flights to Lisbon");
        assert_same("laptops under $1000", "laptops below $1000");
    }

    #[test]
    fn negation_on_one_side_only_is_a_different_question() {
        let reason = assert_vetoed(
            Category::Negation,
            "can I take ibuprofen with alcohol",
            "can I not take ibuprofen with alcohol",
        );
        assert!(reason.contains("not"), "{reason}");
        assert_vetoed(Category::Negation, "laptops with a touchscreen", "laptops without a touchscreen");
        assert_vetoed(Category::Negation, "why my iPhone won't charge", "why my iPhone will charge");
        assert_same("why won't my iPhone charge", "why doesn't my iPhone charge");
    }

    #[test]
    fn a_comparison_the_other_way_round_is_a_different_question() {
        let reason = assert_vetoed(Category::Order, "is ChatGPT better than Claude", "is Claude better than ChatGPT");
        assert!(reason.contains("chatgpt than claude"), "{reason}");
        assert_vetoed(Category::Order, "how to switch from Android to iPhone", "how to switch from iPhone to Android");
        assert_vetoed(Category::Order, "convert usd to eur", "convert eur to usd");
        assert_vetoed(Category::Order, "why choose Notion over Obsidian", "why choose Obsidian over Notion");
        assert_same("ChatGPT vs Claude for coding", "Claude vs ChatGPT for coding");
        assert_same("is ChatGPT better than Claude for coding", "for coding, is ChatGPT better than Claude");
    }

    #[test]
    fn other_names_are_different_questions() {
        let reason = assert_vetoed(Category::Entities, "best pizza in Paris", "best pizza in Rome");
        assert_eq!(reason, "entities differ: paris vs rome");
        assert_vetoed(Category::Entities, "iPhone battery life tips", "Pixel battery life tips");
        assert_vetoed(Category::Entities, "best hiking trails near Denver", "best hiking trails near Boulder");
        assert_vetoed(Category::Entities, "is the M3 MacBook Air good", "is the M2 MacBook Air good");
        assert_same("Best Pizza In Paris", "best pizza in paris");
        assert_same("best pizza in Paris?", "where is the best pizza in paris");
    }

    #[test]
    fn paraphrases_pass() {
        assert_same("What are the best noise cancelling headphones?", "best noise-cancelling headphones");
        assert_same("how do I reset my router", "How can I reset my router?");
        assert_same("best laptops for students under $1,000", "best student laptops under $1000");
        assert_same("good budget phones", "affordable phones that are good");
    }
}
