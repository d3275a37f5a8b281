//! Property tests of the input checks: each states exactly what it accepts, for any text (NUL,
//! every control character, any Unicode, long). `PROPTEST_CASES` sets the number of cases.

use proptest::prelude::*;

use super::*;
use crate::assistants;

/// Text that is likely to hit the edges: control characters (C0, DEL, C1), NUL, white space of
/// every kind, letters of many scripts, and anything.
fn edgy_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\u{0}-\u{1f}\u{7f}-\u{9f} \t\r\na-zA-Z0-9.+_-]{0,40}",
        "[a-zA-Z0-9 ._+-]{0,70}",
        "\\PC{0,70}",
        "[\u{a0}\u{2028}\u{3000}\u{feff}\u{200b}ßİﬁＡ가😀é]{0,10}",
    ]
}

/// A reason reads like the code style asks: lowercase start, no trailing full stop.
fn well_formed(reason: &str) -> bool {
    reason.chars().next().is_some_and(char::is_lowercase) && !reason.ends_with('.')
}

fn is_line_char(c: char) -> bool {
    !c.is_control() || matches!(c, '\t' | '\n' | '\r')
}

fn is_plan_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '+' | '-')
}

proptest! {
    /// `check_text` accepts exactly the text without NUL of at most `max` characters (every
    /// other control character is fine in free text).
    #[test]
    fn check_text_accepts_exactly_nul_free_text_within_the_limit(text in edgy_text(), max in 0usize..80) {
        let expected = !text.contains('\0') && text.chars().count() <= max;
        let result = check_text(&text, max);
        prop_assert_eq!(result.is_ok(), expected, "{:?} (max {}) gave {:?}", text, max, result);
        if let Err(reason) = result {
            prop_assert!(well_formed(&reason), "{:?}", reason);
        }
    }

    /// `check_line` accepts exactly the text whose control characters (Unicode Cc: C0, DEL and
    /// C1, NUL included) are only tab, LF and CR, of at most `max` characters; what it accepts
    /// `check_text` accepts too.
    #[test]
    fn check_line_accepts_exactly_text_without_control_characters_but_tab_and_newlines(
        text in edgy_text(),
        max in 0usize..80,
    ) {
        let expected = text.chars().all(is_line_char) && text.chars().count() <= max;
        let result = check_line(&text, max);
        prop_assert_eq!(result.is_ok(), expected, "{:?} (max {}) gave {:?}", text, max, result);
        if result.is_ok() {
            prop_assert_eq!(check_text(&text, max), Ok(()));
        }
        if let Err(reason) = result {
            prop_assert!(well_formed(&reason), "{:?}", reason);
        }
    }

    /// `check_plan` accepts exactly letters, digits, space, `.`, `_`, `+`, `-` up to
    /// MAX_PLAN_CHARS characters, and what it accepts is a safe NATS subject token once
    /// normalised, and is a valid line.
    #[test]
    fn check_plan_accepts_exactly_plan_characters_and_yields_a_subject_token(plan in edgy_text()) {
        let expected = plan.chars().all(is_plan_char) && plan.chars().count() <= MAX_PLAN_CHARS;
        let result = check_plan(&plan);
        prop_assert_eq!(result.is_ok(), expected, "{:?} gave {:?}", plan, result);
        match result {
            Ok(()) => {
                prop_assert_eq!(check_line(&plan, MAX_PLAN_CHARS), Ok(()));
                let token = assistants::plan_token(&plan);
                prop_assert!(!token.is_empty());
                prop_assert!(token.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')), "{:?}", token);
                prop_assert_eq!(assistants::normalize_plan(&assistants::normalize_plan(&plan)), assistants::normalize_plan(&plan));
            }
            Err(reason) => {
                prop_assert!(well_formed(&reason), "{:?}", reason);
                // The reason quotes one character at most, never the whole input.
                prop_assert!(reason.len() < 120, "{:?}", reason);
            }
        }
    }
}
