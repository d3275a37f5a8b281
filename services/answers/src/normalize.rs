//! The one spelling of a prompt used to find it again: Unicode NFKC, trimmed, runs of white
//! space collapsed to one space, case-folded; and its hash, the exact-match key.

use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

/// The normalised text of a prompt.
pub fn normalize(text: &str) -> String {
    let nfkc: String = text.nfkc().collect();
    let collapsed = nfkc.split_whitespace().collect::<Vec<_>>().join(" ");
    caseless::default_case_fold_str(&collapsed)
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
    fn compatibility_forms_and_case_folding_apply() {
        // Full-width letters (NFKC), the ﬁ ligature (NFKC) and ß (case folding to "ss").
        assert_eq!(normalize("ＡＢＣ ﬁle STRAßE"), "abc file strasse");
        assert_ne!(prompt_hash(&normalize("laptops")), prompt_hash(&normalize("laptop")));
    }
}
