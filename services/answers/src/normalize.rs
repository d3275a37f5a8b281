//! The one spelling of a prompt used to find it again: Unicode NFKC, trimmed, runs of white
//! space collapsed to one space, case-folded; and its hash, the exact-match key.

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
