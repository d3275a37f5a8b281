//! Property tests of what an Ask carries before it reaches the database: the prompt check, its
//! normalisation, the targets and the similarity threshold, for any input. `PROPTEST_CASES`
//! sets the number of cases (`just fuzz` runs many more).

use aap_platform::assistants::{self, ANY_PLAN};
use aap_platform::input;
use proptest::prelude::*;

use crate::domain::{Answers, AnswersError, check_prompt, parse_targets};
use crate::normalize::{normalize, prompt_hash};

/// Prompts: anything, plausible questions with odd white space and case, compatibility forms
/// (full-width, ligatures, ß, Turkish İ, Greek final sigma), control characters, NUL, long.
fn prompt() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        3 => "[ \t\n\r\u{a0}\u{3000}]{0,2}[A-Za-z0-9?$,.' ]{1,60}[ \t\n\r\u{a0}]{0,2}",
        2 => "[a-zA-Z ＡＢＣａｂｃﬁﬂßẞİıΣσς\u{301}\u{345}\u{1e9e}\u{2126}\u{212a}ǅ \t\u{a0}\u{2003}]{0,30}",
        1 => "[\u{0}-\u{1f}\u{7f}-\u{9f}a ]{0,10}",
        // Drawn as nothing, WebDriver's keys (U+E000–U+E05D), and a character either side of them.
        1 => "[\u{200B}\u{FEFF}\u{2060}\u{E000}-\u{E05E}\u{D7FB}a ]{0,6}",
        1 => (1usize..3000).prop_map(|n| "é".repeat(n)),
        1 => "\\PC{0,80}",
    ]
}

fn field(err: &AnswersError) -> Option<&'static str> {
    match err {
        AnswersError::InvalidArgument { field, .. } => Some(field),
        _ => None,
    }
}

fn assistant_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(assistants::ASSISTANTS).prop_map(|a| a.id.to_owned()),
        1 => proptest::sample::select(assistants::ASSISTANTS).prop_map(|a| format!(" {} ", a.id)),
        1 => proptest::sample::select(assistants::ASSISTANTS).prop_map(|a| a.seed_name.to_owned()),
        1 => any::<String>(),
    ]
}

fn plan_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-zA-Z0-9 ._+-]{0,12}",
        1 => Just(ANY_PLAN.to_owned()),
        1 => "[a-z]{0,65}",
        1 => any::<String>(),
    ]
}

proptest! {
    /// The ASCII shortcut gives what NFKC and full case folding give.
    #[test]
    fn ascii_prompts_normalise_as_through_unicode(text in "[\\x00-\\x7f]{0,80}") {
        prop_assert_eq!(normalize(&text), crate::normalize::normalize_unicode(&text), "{:?}", text);
    }

    /// Normalising is a projection: twice is once, and its output has no white space but
    /// single spaces between words; the hash is a sha256.
    #[test]
    fn normalising_twice_changes_nothing(text in prompt()) {
        let once = normalize(&text);
        prop_assert_eq!(normalize(&once), once.clone(), "{:?}", text);
        prop_assert_eq!(once.trim(), once.as_str());
        prop_assert!(!once.contains("  "), "{:?}", once);
        prop_assert!(once.chars().all(|c| c == ' ' || !c.is_whitespace()), "{:?}", once);
        prop_assert_eq!(prompt_hash(&once).len(), 32);
    }

    /// The hashed form is a projection too, for any text and for amounts in any spelling: a
    /// stored prompt's canonical form hashes as the text it came from.
    #[test]
    fn canonical_twice_is_once(text in prop_oneof![
        prompt(),
        "([a-z]{1,6} ){0,3}(\\$|€|£|usd |eur |us\\$)?[0-9]{1,3}(,[0-9]{3}){0,3}(\\.[0-9]{1,2})?(k|m|bn| k| million| thousand| dollars| usd| euros|\\$)?[?.,]?( [a-z0-9,.$]{1,6}){0,3}",
    ]) {
        let once = crate::normalize::canonical(&text);
        prop_assert_eq!(crate::normalize::canonical(&once), once.clone(), "{:?}", text);
        prop_assert_eq!(normalize(&once), once.clone(), "{:?}", text);
    }

    /// Spellings that differ in case (ASCII) or white space are one prompt.
    #[test]
    fn case_and_white_space_do_not_make_another_prompt(words in prop::collection::vec("[a-zA-Z0-9?$,.]{1,8}", 1..8), gaps in prop::collection::vec("[ \t\n\u{a0}\u{3000}]{1,3}", 8)) {
        let plain = words.join(" ");
        let spaced: String = words.iter().zip(&gaps).map(|(w, g)| format!("{g}{}", w.to_uppercase())).collect();
        prop_assert_eq!(normalize(&spaced), normalize(&plain));
        prop_assert_eq!(normalize(&plain), plain.to_lowercase());
    }

    /// The prompt check accepts exactly a trimmed line that is not blank, nor blank but for
    /// WebDriver's keys (no control characters but tab and new lines) within the byte limit,
    /// returns it trimmed, and what it accepts normalises to a non-empty text; a refusal names
    /// `prompt`.
    #[test]
    fn the_prompt_check_accepts_exactly_non_blank_lines_within_the_limit(text in prompt(), max_bytes in 1usize..4000) {
        let trimmed = text.trim();
        let expected = !input::types_as_blank(trimmed) && input::check_line(trimmed, usize::MAX).is_ok() && trimmed.len() <= max_bytes;
        match check_prompt(&text, max_bytes) {
            Ok(checked) => {
                prop_assert!(expected, "{:?} accepted", text);
                prop_assert_eq!(checked, trimmed);
                prop_assert!(!normalize(checked).is_empty(), "{:?} normalises to nothing", checked);
            }
            Err(err) => {
                prop_assert!(!expected, "{:?} refused: {}", text, err);
                prop_assert_eq!(field(&err), Some("prompt"));
            }
        }
    }

    /// Targets: known assistant ids with valid plans are taken (normalised, de-duplicated,
    /// every assistant when none is named); anything else is refused naming `targets`,
    /// `targets.plan` or `targets.assistant`, whichever is wrong.
    #[test]
    fn targets_are_taken_or_refused_naming_the_field(raw in prop::collection::vec((assistant_name(), plan_name()), 0..40)) {
        let known = |a: &str| assistants::by_id(a.trim()).is_some();
        let plan_ok = |p: &str| input::check_plan(p.trim()).is_ok();
        match parse_targets(raw.clone()) {
            Ok(targets) => {
                prop_assert!(raw.len() <= input::MAX_TARGETS);
                prop_assert!(raw.iter().all(|(a, p)| known(a) && plan_ok(p)), "{:?} accepted", raw);
                prop_assert!(!targets.is_empty());
                if raw.is_empty() {
                    prop_assert_eq!(targets.len(), assistants::ASSISTANTS.len());
                }
                for (i, target) in targets.iter().enumerate() {
                    prop_assert!(assistants::by_id(&target.assistant).is_some());
                    prop_assert_eq!(assistants::normalize_plan(&target.plan), target.plan.clone());
                    prop_assert!(!targets[..i].contains(target), "duplicate {:?}", target);
                }
            }
            Err(err) => {
                let field = field(&err);
                let expected = if raw.len() > input::MAX_TARGETS {
                    "targets"
                } else {
                    // The first bad target is reported, its plan before its assistant.
                    let (a, p) = raw.iter().find(|(a, p)| !known(a) || !plan_ok(p)).expect("a bad target");
                    if plan_ok(p) { debug_assert!(!known(a)); "targets.assistant" } else { "targets.plan" }
                };
                prop_assert_eq!(field, Some(expected), "{:?}: {}", raw, err);
            }
        }
    }

    /// The similarity threshold is taken in (0, 1] and refused otherwise (NaN and infinities
    /// included), naming `min_similarity`.
    #[test]
    fn the_similarity_threshold_is_taken_in_the_unit_interval(value in prop_oneof![
        any::<f64>(),
        0.0f64..=1.0,
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
    ]) {
        match Answers::check_min_similarity(Some(value)) {
            Ok(taken) => {
                prop_assert!(value > 0.0 && value <= 1.0, "{} taken", value);
                prop_assert_eq!(taken, Some(value));
            }
            Err(err) => {
                prop_assert!(!(value > 0.0 && value <= 1.0), "{} refused", value);
                prop_assert_eq!(field(&err), Some("min_similarity"));
            }
        }
    }
}
