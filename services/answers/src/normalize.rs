//! The one spelling of a prompt used to find it again: Unicode NFKC, trimmed, runs of white
//! space collapsed to one space, case-folded, amounts spelled one way ("$1,000", "$1000",
//! "$1k", "1000 dollars" and "usd 1,000" are all "$1000"); and its hash, the exact-match key.

use std::borrow::Cow;

use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

/// The normalised text of a prompt.
pub fn normalize(text: &str) -> String {
    // ASCII is its own NFKC form and case-folds to lower case: the common prompt skips the
    // Unicode tables (a sixth of an exact hit's CPU in a profile).
    if text.is_ascii() {
        let mut out = String::with_capacity(text.len());
        for word in text.split_whitespace() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
        out.make_ascii_lowercase();
        return out;
    }
    normalize_unicode(text)
}

/// [`normalize`] for any text, through NFKC and full case folding.
pub(crate) fn normalize_unicode(text: &str) -> String {
    let nfkc: String = text.nfkc().collect();
    let collapsed = nfkc.split_whitespace().collect::<Vec<_>>().join(" ");
    // Folding can leave text NFKC would compose ("ß\u{301}" folds to "ss\u{301}", NFKC "sś"):
    // composing once more makes the normal form stable, so normalising it again changes nothing.
    caseless::default_case_fold_str(&collapsed).nfkc().collect()
}

/// The form a prompt is hashed and embedded in: [`normalize`], then every amount in one
/// spelling. Thousands separators go ("10,000" → "10000"), "k", "thousand", "m", "million",
/// "bn" and "billion" multiply ("1.5k" → "1500"; "m" only after a currency, where it cannot be
/// metres), trailing zero decimals go ("1000.00" → "1000"), and a currency named by code or
/// word comes first as its symbol ("1000 usd", "usd 1000", "1000 dollars" → "$1000").
pub fn canonical(text: &str) -> String {
    let normalized = normalize(text);
    if !normalized.bytes().any(|b| b.is_ascii_digit()) {
        return normalized;
    }
    // One pass can leave words a second pass would join ("0bn k" → "0 k" → "0"): repeat to
    // the fixed point, so a canonical text is its own canonical form.
    let mut text = canonical_amounts(&normalized);
    // Most prompts with digits have no amount to respell ("top 10", "in 2026"): a pass that
    // changed nothing is already at the fixed point, and a second one would only repeat it.
    if text == normalized {
        return text;
    }
    for _ in 0..8 {
        let again = canonical_amounts(&text);
        if again == text {
            break;
        }
        text = again;
    }
    text
}

/// Currency symbols, and the codes and words that name them.
const CURRENCIES: &[(&str, &[&str])] = &[
    ("$", &["usd", "dollar", "dollars", "bucks", "us$"]),
    ("€", &["eur", "euro", "euros"]),
    ("£", &["gbp", "sterling"]),
    ("¥", &["jpy", "yen"]),
    ("₹", &["inr", "rupee", "rupees"]),
];

fn currency_symbol(word: &str) -> Option<&'static str> {
    CURRENCIES.iter().find(|(symbol, names)| *symbol == word || names.contains(&word)).map(|(symbol, _)| *symbol)
}

/// Units written glued to a number ("2tb", "256gb", "5km") that are spelled apart.
const GLUED_UNITS: &[&str] = &[
    "tb", "gb", "mb", "kb", "km", "kg", "cm", "mm", "ml", "mg", "mph", "kmh", "hz", "ghz", "mhz", "mp", "mah", "lb",
    "lbs", "ft", "oz", "kw", "kwh", "hp",
];

/// Multipliers spelled after a number; `needs_currency` when the suffix is ambiguous alone.
fn multiplier(word: &str) -> Option<(f64, bool)> {
    match word {
        "k" | "thousand" | "grand" => Some((1e3, false)),
        "m" | "mm" => Some((1e6, true)),
        "mn" | "million" => Some((1e6, false)),
        "b" => Some((1e9, true)),
        "bn" | "billion" => Some((1e9, false)),
        _ => None,
    }
}

/// A number as written: digits with optional thousands separators and decimals.
fn parse_number(core: &str) -> Option<f64> {
    if core.is_empty() || !core.as_bytes()[0].is_ascii_digit() || !core.as_bytes()[core.len() - 1].is_ascii_digit() {
        return None;
    }
    let (int, frac) = match core.split_once('.') {
        Some((int, frac)) if frac.bytes().all(|b| b.is_ascii_digit()) => (int, Some(frac)),
        Some(_) => return None,
        None => (core, None),
    };
    let digits: String = if int.contains(',') {
        let mut groups = int.split(',');
        let first = groups.next()?;
        if first.is_empty() || first.len() > 3 {
            return None;
        }
        let rest: Vec<&str> = groups.collect();
        if rest.iter().any(|g| g.len() != 3) {
            return None;
        }
        std::iter::once(first).chain(rest).collect()
    } else {
        int.to_owned()
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let text = match frac {
        Some(frac) => format!("{digits}.{frac}"),
        None => digits,
    };
    text.parse().ok()
}

/// A number's one spelling: no separators, no trailing zero decimals.
pub(crate) fn format_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        let text = format!("{value:.6}");
        text.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// A word split around the number in it: "($1,000.50?" is ("($", "1,000.50", "?").
fn split_number(word: &str) -> Option<(&str, &str, &str)> {
    let start = word.find(|c: char| c.is_ascii_digit())?;
    let len = word[start..].find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.')).unwrap_or(word.len() - start);
    let mut core = &word[start..start + len];
    // A sentence's full stop or a list's comma is not part of the number.
    core = core.trim_end_matches(['.', ',']);
    let end = start + core.len();
    Some((&word[..start], core, &word[end..]))
}

fn canonical_amounts(normalized: &str) -> String {
    let words: Vec<&str> = normalized.split(' ').collect();
    // Words that are not amounts are borrowed as they are: most of a prompt's words.
    let mut out: Vec<Cow<'_, str>> = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        let word = words[i];
        let Some((prefix, core, suffix)) = split_number(word) else {
            out.push(Cow::Borrowed(word));
            i += 1;
            continue;
        };
        let Some(mut value) = parse_number(core) else {
            out.push(Cow::Borrowed(word));
            i += 1;
            continue;
        };
        // Retirement plans are names, not thousands: "401(k)" is "401k".
        if let Some(plan) = ["401", "403", "457"].iter().find(|plan| core == **plan) {
            let letter = suffix.trim_start_matches('(').chars().next().filter(|c| matches!(c, 'k' | 'b'));
            if let Some(letter) = letter {
                let rest = suffix.trim_start_matches('(')[1..].trim_start_matches(')');
                out.push(Cow::Owned(format!("{prefix}{plan}{letter}{rest}")));
                i += 1;
                continue;
            }
        }
        // A currency written before the number: "$1000", "us$1000", "usd 1000".
        let mut currency = None;
        let mut lead = prefix;
        for (symbol, names) in CURRENCIES {
            if let Some(rest) = prefix.strip_suffix(symbol) {
                currency = Some(*symbol);
                lead = rest;
                break;
            }
            if let Some(name) = names.iter().find(|name| prefix.ends_with(*name)) {
                currency = Some(*symbol);
                lead = &prefix[..prefix.len() - name.len()];
                break;
            }
        }
        if currency.is_none()
            && lead.is_empty()
            && let Some(symbol) = out.last().and_then(|previous| currency_symbol(previous))
        {
            out.pop();
            currency = Some(symbol);
        }
        let mut consumed = 1;
        // A multiplier glued on ("1.5k", "$2m") or as the next word ("2 million").
        let mut tail = suffix;
        let glued = tail.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(tail.len());
        let ends_word = |rest: &str| !rest.starts_with(|c: char| c.is_alphanumeric());
        if let Some((factor, needs_currency)) = multiplier(&tail[..glued]).filter(|_| ends_word(&tail[glued..])) {
            if !needs_currency || currency.is_some() {
                value *= factor;
                tail = &tail[glued..];
            }
        } else if tail.is_empty()
            && let Some((factor, needs_currency)) = words.get(i + 1).and_then(|next| multiplier(next))
            && (!needs_currency || currency.is_some())
        {
            value *= factor;
            consumed += 1;
        }
        // A currency written after the number: "1000 usd", "1000 dollars", "1000$".
        if currency.is_none() {
            let glued = tail.find(|c: char| !(c.is_alphabetic() || "$€£¥₹".contains(c))).unwrap_or(tail.len());
            if let Some(symbol) = currency_symbol(&tail[..glued]).filter(|_| glued > 0 && ends_word(&tail[glued..])) {
                currency = Some(symbol);
                tail = &tail[glued..];
            } else if tail.is_empty()
                && let Some(next) = words.get(i + consumed)
            {
                let bare = next.trim_end_matches(|c: char| c.is_ascii_punctuation());
                if let Some(symbol) = currency_symbol(bare) {
                    currency = Some(symbol);
                    tail = &next[bare.len()..];
                    consumed += 1;
                }
            }
        }
        // A unit glued on is its own word: "2tb" is "2 tb".
        let letters = tail.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(tail.len());
        let spaced = if letters > 0 && GLUED_UNITS.contains(&&tail[..letters]) && ends_word(&tail[letters..]) {
            " "
        } else {
            ""
        };
        out.push(Cow::Owned(format!("{lead}{}{}{spaced}{tail}", currency.unwrap_or(""), format_number(value))));
        i += consumed;
    }
    out.join(" ")
}

/// sha256 of the normalised text: the key exact matches are looked up by.
pub fn prompt_hash(normalized: &str) -> Vec<u8> {
    Sha256::digest(normalized.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_prompt_normalise_alike() {
        let a = normalize("  What are the BEST laptops\tunder $1,000? ");
        let b = normalize("what are the best   laptops under $1,000?");
        assert_eq!(a, "what are the best laptops under $1,000?");
        assert_eq!(a, b);
        assert_eq!(prompt_hash(&a), prompt_hash(&b));
    }

    #[test]
    fn the_ascii_shortcut_normalises_like_the_unicode_path() {
        for text in [
            "  What are the BEST laptops\tunder $1,000? ",
            "a\x0bb\x0cc\r\nd",
            "",
            " \t\n ",
            "ALL-CAPS_with.punct!?;:'\"()[]{}<>~`^|\\/@#%&*+=-0123456789",
            "\x01control\x1fchars\x7f",
        ] {
            assert!(text.is_ascii());
            assert_eq!(normalize(text), normalize_unicode(text), "{text:?}");
        }
    }

    #[test]
    fn amounts_have_one_spelling() {
        let one = canonical("best laptops under $1,000?");
        assert_eq!(one, "best laptops under $1000?");
        for spelling in [
            "Best laptops under $1000?",
            "best laptops under $1k?",
            "best laptops under $1.0k?",
            "best laptops under 1000 dollars?",
            "best laptops under 1,000 USD?",
            "best laptops under USD 1000?",
            "best laptops under $ 1,000.00?",
            "best laptops under 1 thousand dollars?",
        ] {
            assert_eq!(canonical(spelling), one, "{spelling:?}");
        }
        assert_eq!(canonical("a 10,000 step walk"), "a 10000 step walk");
        assert_eq!(canonical("a 1.5k budget"), "a 1500 budget");
        assert_eq!(canonical("€2m or 2 million euros"), "€2000000 or €2000000");
        assert_eq!(canonical("£20 vs 20 gbp"), "£20 vs £20");
        assert_eq!(canonical("in 2025, 2026."), "in 2025, 2026.");
        assert_eq!(canonical("best 2TB drive, 256gb phone, 5km run"), "best 2 tb drive, 256 gb phone, 5 km run");
        assert_eq!(canonical("401(k) or 401k or 403(b)?"), "401k or 401k or 403b?");
    }

    #[test]
    fn what_is_not_an_amount_is_left_alone() {
        // "m" alone may be metres; lists and versions are not thousands.
        assert_eq!(canonical("a 5m cable"), "a 5m cable");
        assert_eq!(canonical("pick 1,2,3"), "pick 1,2,3");
        assert_eq!(canonical("python 3.12 vs 3.13"), "python 3.12 vs 3.13");
        assert_eq!(canonical("ipv4 1.2.3.4"), "ipv4 1.2.3.4");
        assert_eq!(canonical("top 10 laptops"), "top 10 laptops");
        assert_eq!(canonical("no digits at all"), "no digits at all");
        // Amounts differ from each other still.
        assert_ne!(canonical("under $500"), canonical("under $1,000"));
        assert_ne!(canonical("under $500"), canonical("under €500"));
    }

    #[test]
    fn compatibility_forms_and_case_folding_apply() {
        // Full-width letters (NFKC), the ﬁ ligature (NFKC) and ß (case folding to "ss").
        assert_eq!(normalize("ＡＢＣ ﬁle STRAßE"), "abc file strasse");
        assert_ne!(prompt_hash(&normalize("laptops")), prompt_hash(&normalize("laptop")));
    }

    #[test]
    fn a_folded_text_that_composes_normalises_like_its_composed_spelling() {
        // Found by the property test: "ß" + combining acute folded to "ss" + acute and stayed
        // so, while normalising that again composed "sś": two hashes for one prompt.
        assert_eq!(normalize("ß\u{301}"), "sś");
        assert_eq!(normalize("SŚ"), normalize("ß\u{301}"));
        assert_eq!(normalize(&normalize("ß\u{301}")), normalize("ß\u{301}"));
    }
}
