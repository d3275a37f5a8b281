//! Limits on what callers may send, shared by every service that takes text from outside: no
//! NUL (PostgreSQL cannot store it in text, so it would fail the write and wedge whatever waits
//! on it), no other control characters in short names and prompts, and a bounded length.
//! Each check says what is wrong in lowercase words; the caller names the field.

/// Most targets one Ask may name (4 assistants on a handful of plans each).
pub const MAX_TARGETS: usize = 32;
/// Longest plan name, in characters.
pub const MAX_PLAN_CHARS: usize = 64;

/// Checks free text (an answer, a title, a reason): no NUL, at most `max_chars` characters.
pub fn check_text(value: &str, max_chars: usize) -> Result<(), String> {
    if value.contains('\0') {
        return Err("contains a NUL character (U+0000)".to_owned());
    }
    check_length(value, max_chars)
}

/// Checks a line typed by a person or a short name (a prompt, an id, a label): like
/// [`check_text`], and no control characters other than tab and new lines.
pub fn check_line(value: &str, max_chars: usize) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return Err(format!("contains the control character U+{:04X}", u32::from(c)));
    }
    check_length(value, max_chars)
}

/// Checks a one-line name (an account's label): like [`check_line`], and no line break or tab
/// either, since it is shown on one line (a list, a log field) and a new line there could pass
/// for another entry.
pub fn check_one_line(value: &str, max_chars: usize) -> Result<(), String> {
    if let Some(c) = value.chars().find(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')) {
        return Err(match c {
            '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => "must be one line: it contains a line break".to_owned(),
            c => format!("contains the control character U+{:04X}", u32::from(c)),
        });
    }
    check_length(value, max_chars)
}

/// Checks the `nanos` of a protobuf `Timestamp` or `Duration`: [0, 999,999,999], as both types
/// define it (a negative one is no earlier time, and a second or more is no fraction of one).
/// Returns it as the unsigned count `chrono` and `std::time` take.
pub fn check_nanos(nanos: i32) -> Result<u32, String> {
    u32::try_from(nanos)
        .ok()
        .filter(|nanos| *nanos <= 999_999_999)
        .ok_or_else(|| format!("nanos {nanos} is outside [0, 999999999]"))
}

/// Checks a protobuf `Timestamp` (its `nanos` by [`check_nanos`], its seconds within the years
/// `chrono` has) and returns it as a UTC time.
pub fn check_time(at: &prost_types::Timestamp) -> Result<chrono::DateTime<chrono::Utc>, String> {
    let nanos = check_nanos(at.nanos)?;
    chrono::DateTime::from_timestamp(at.seconds, nanos)
        .ok_or_else(|| format!("seconds {} is outside the years a calendar has", at.seconds))
}

/// Checks a plan name: letters, digits, space, `.`, `_`, `+` and `-`, at most
/// [`MAX_PLAN_CHARS`] characters (it becomes part of a NATS subject, normalised).
pub fn check_plan(plan: &str) -> Result<(), String> {
    if let Some(c) = plan.chars().find(|c| !(c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '+' | '-'))) {
        return Err(format!("may hold letters, digits, space, '.', '_', '+' and '-' only, not {c:?}"));
    }
    check_length(plan, MAX_PLAN_CHARS)
}

/// Whether `value` shows nothing: only white space and characters that are drawn as nothing
/// (zero-width spaces and joiners, the byte-order mark, soft hyphens, direction marks, word
/// joiners, variation selectors, tags, Hangul and Braille blanks). A prompt of them alone is a
/// blank prompt that an assistant would be asked about as if it said something.
pub fn is_blank(value: &str) -> bool {
    value.chars().all(|c| c.is_whitespace() || is_drawn_as_nothing(c))
}

/// Whether a bot would type nothing of `value` but spaces: [`is_blank`], or blank but for
/// characters a browser driver reads as keys (WebDriver's U+E000–U+E05D: Enter, Tab, Backspace,
/// the arrows, ...), which a bot types as spaces. Such a prompt would be taken, queued and then
/// fail at every bot with nothing to type.
pub fn types_as_blank(value: &str) -> bool {
    value.chars().all(|c| c.is_whitespace() || is_drawn_as_nothing(c) || is_webdriver_key(c))
}

/// Whether WebDriver reads `c` as a key rather than a character to type (U+E000–U+E05D, private
/// use code points its Element Send Keys command assigns to keys).
pub fn is_webdriver_key(c: char) -> bool {
    matches!(c, '\u{E000}'..='\u{E05D}')
}

fn is_drawn_as_nothing(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{2800}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Most characters of a caller's value a reason quotes back: enough to recognise it, and a
/// refusal stays far below the size of a gRPC header (it travels in `grpc-message`, and its
/// bad-request detail in another header; one over the peer's limit resets the stream).
pub const MAX_QUOTED_CHARS: usize = 64;

/// `value` quoted for a reason (`"Bard"`), cut to [`MAX_QUOTED_CHARS`] characters, `…` after
/// the quotes when it was longer.
pub fn quoted(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(MAX_QUOTED_CHARS).collect();
    if chars.next().is_some() { format!("{head:?}…") } else { format!("{head:?}") }
}

fn check_length(value: &str, max_chars: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if chars > max_chars {
        return Err(format!("is {chars} characters; the limit is {max_chars}"));
    }
    Ok(())
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_control_characters_and_length_are_refused_with_a_reason() {
        assert_eq!(check_text("fine\n\ttext", 20), Ok(()));
        assert_eq!(check_text("a\0b", 20), Err("contains a NUL character (U+0000)".to_owned()));
        assert_eq!(check_text("héllo", 4), Err("is 5 characters; the limit is 4".to_owned()));
        assert_eq!(check_line("two\nlines\r\n", 20), Ok(()));
        assert_eq!(check_line("bell\u{7}", 20), Err("contains the control character U+0007".to_owned()));
        assert_eq!(check_line("nul\0", 20), Err("contains the control character U+0000".to_owned()));
        assert_eq!(check_nanos(0), Ok(0));
        assert_eq!(check_nanos(999_999_999), Ok(999_999_999));
        assert_eq!(check_nanos(-1), Err("nanos -1 is outside [0, 999999999]".to_owned()));
        assert_eq!(check_nanos(1_000_000_000), Err("nanos 1000000000 is outside [0, 999999999]".to_owned()));
        assert_eq!(check_one_line("alice@example.com", 20), Ok(()));
        assert_eq!(check_one_line("a\nb", 20), Err("must be one line: it contains a line break".to_owned()));
        assert!(check_one_line("a\rb", 20).is_err());
        assert!(check_one_line("a\u{2028}b", 20).is_err_and(|e| e.contains("line break")));
        assert_eq!(check_one_line("a\tb", 20), Err("contains the control character U+0009".to_owned()));
        assert!(check_one_line(&"x".repeat(21), 20).is_err());
        assert_eq!(check_plan("Plus"), Ok(()));
        assert_eq!(check_plan("Team Pro-2.5+"), Ok(()));
        assert!(check_plan("pro.>").is_err_and(|e| e.contains("'>'")));
        assert!(check_plan("p*").is_err());
        assert!(check_plan(&"p".repeat(65)).is_err());
    }

    #[test]
    fn blank_is_what_shows_nothing() {
        for blank in
            ["", " \t\n", "\u{200B}\u{200B}\u{FEFF}", "\u{00A0}\u{3000}\u{2060}\u{00AD}", "\u{200D}\u{FE0F}\u{2800}"]
        {
            assert!(is_blank(blank), "{blank:?}");
        }
        for shown in ["a", "\u{200B}a\u{200B}", "🙂", "\u{0301}", "?"] {
            assert!(!is_blank(shown), "{shown:?}");
        }
    }

    #[test]
    fn webdriver_keys_type_as_blank() {
        for keys in ["\u{E007}", " \u{E000}\u{E05D} ", "\u{E004}\u{200B}\u{E007}\n"] {
            assert!(!is_blank(keys), "{keys:?} shows private use characters");
            assert!(types_as_blank(keys), "{keys:?}");
        }
        for blank in ["", " \t", "\u{200B}"] {
            assert!(types_as_blank(blank), "{blank:?}");
        }
        // Past WebDriver's keys, private use characters are typed as they are (icon fonts).
        for typed in ["\u{E05E}", "\u{F8FF}", "a\u{E007}", "\u{E007}?"] {
            assert!(!types_as_blank(typed), "{typed:?}");
        }
    }

    #[test]
    fn quoted_values_are_cut_to_a_bounded_length() {
        assert_eq!(quoted("Bard"), r#""Bard""#);
        assert_eq!(quoted("a\0b"), r#""a\0b""#);
        let long = quoted(&"é".repeat(100_000));
        assert_eq!(long, format!("{:?}…", "é".repeat(MAX_QUOTED_CHARS)));
    }
}
