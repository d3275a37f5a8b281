//! Property tests of what the gateway checks before it touches the database: a submission's
//! bounds and what a bot says it serves. A valid generated input is taken; the same input with
//! one field broken (NUL, a control character, one character or item too many, a value out of
//! range) is refused naming exactly that field. `PROPTEST_CASES` sets the number of cases.

use aap_platform::assistants;
use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::*;
use crate::model::{CitationKind, CitationOrigin};

/// Free text as `check_text` takes it: anything but NUL (other control characters included).
fn text(max: usize) -> impl Strategy<Value = String> {
    // Mapped rather than filtered: a filter's rejects add up to proptest's limit in long runs.
    prop::collection::vec(any::<char>().prop_map(|c| if c == '\0' { ' ' } else { c }), 0..max.min(40))
        .prop_map(|chars| chars.into_iter().collect())
}

/// A line as `check_line` takes it: no control characters but tab and new lines.
fn line(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        any::<char>().prop_map(|c| if c.is_control() && !matches!(c, '\t' | '\n' | '\r') { '.' } else { c }),
        0..max.min(30),
    )
    .prop_map(|chars| chars.into_iter().collect())
}

/// A one-line name as `check_one_line` takes it: no control characters, no line breaks.
fn one_line(max: usize) -> impl Strategy<Value = String> {
    line(max).prop_map(|text| text.replace(['\t', '\n', '\r', '\u{2028}', '\u{2029}'], " "))
}

/// A citation url as `check_web_url` takes it: an absolute http or https URL (or
/// protocol-relative), or blank (the citation is dropped).
fn web_url() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ("https?://", "[a-z][a-z0-9]{0,11}(\\.[a-z]{2,6}){0,2}(:[1-9][0-9]{0,3})?", "(/[a-zA-Z0-9._~%-]{0,12}){0,3}", "(\\?[a-z]=[a-z0-9]{0,6})?")
            .prop_map(|(scheme, host, path, query)| format!("{scheme}{host}{path}{query}")),
        1 => "[a-z]{1,8}\\.example/[a-z]{0,8}".prop_map(|rest| format!("//{rest}")),
        1 => "[ \t]{0,3}",
    ]
}

/// A lease id as a submission may carry it: none, or a hyphenated uuid.
fn lease_id() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), any::<u128>().prop_map(|bits| uuid::Uuid::from_u128(bits).to_string())]
}

fn citation() -> impl Strategy<Value = RawCitation> {
    (web_url(), text(MAX_TITLE_CHARS)).prop_map(|(url, title)| RawCitation {
        url,
        title,
        kind: CitationKind::Inline,
        found_in: CitationOrigin::Both,
    })
}

fn product() -> impl Strategy<Value = Product> {
    (line(MAX_TITLE_CHARS), line(MAX_URL_CHARS), line(MAX_NAME_CHARS), line(MAX_NAME_CHARS), any::<u32>())
        .prop_map(|(name, url, price, merchant, position)| Product { name, url, price, merchant, position })
}

/// A time RFC 3339 can write (years 1 to 9999), to the nanosecond.
fn capture_time() -> impl Strategy<Value = DateTime<Utc>> {
    (-62_135_596_800i64..253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(secs, nanos)| DateTime::from_timestamp(secs, nanos).expect("in range"))
}

fn capture() -> impl Strategy<Value = Capture> {
    (
        text(MAX_HTML_CHARS),
        (line(MAX_NAME_CHARS), line(MAX_NAME_CHARS), line(MAX_NAME_CHARS)),
        prop::option::of(0.0f32..=1.0),
        (any::<Option<bool>>(), any::<Option<i64>>(), any::<Option<i64>>(), any::<bool>()),
    )
        .prop_map(
            |(
                response_html,
                (model, adapter_version, adapter_fingerprint),
                confidence,
                (web_search, ttft_ms, total_ms, read_by_fallback),
            )| Capture {
                response_html,
                model,
                web_search,
                ttft_ms,
                total_ms,
                adapter_version,
                adapter_fingerprint,
                finish_signals: Vec::new(),
                missing_roles: Vec::new(),
                read_by_fallback,
                confidence,
                cut_short: false,
                model_fallback: false,
            },
        )
}

/// A submission every check takes.
fn valid_submission() -> impl Strategy<Value = Submission> {
    (
        any::<i64>(),
        (text(MAX_RESPONSE_CHARS), text(MAX_MARKDOWN_CHARS)),
        prop::collection::vec(citation(), 0..4),
        prop::option::of(capture_time()),
        (one_line(MAX_NAME_CHARS), lease_id()),
        capture(),
        prop::collection::vec(line(MAX_QUERY_CHARS), 0..4),
        prop::collection::vec(product(), 0..3),
    )
        .prop_map(
            |(
                evaluation_id,
                (response_text, response_markdown),
                citations,
                captured_at,
                (bot_id, lease_id),
                capture,
                search_queries,
                products,
            )| {
                Submission {
                    evaluation_id,
                    response_text,
                    response_markdown,
                    citations,
                    captured_at,
                    bot_id,
                    lease_id,
                    kind: AnswerKind::Text,
                    capture,
                    search_queries,
                    products,
                }
            },
        )
}

/// How a field is broken.
#[derive(Debug, Clone, Copy)]
enum Break {
    Nul,
    Control,
    TooLong,
}

/// One field broken, or none; the field is named as a refusal must name it.
const FIELDS: &[&str] = &[
    "response_text",
    "response_markdown",
    "bot_id",
    "lease_id",
    "citations",
    "citations.url",
    "citations.title",
    "capture.response_html",
    "capture.model",
    "capture.adapter_version",
    "capture.adapter_fingerprint",
    "capture.confidence",
    "search_queries",
    "products",
    "products.name",
    "products.url",
    "products.price",
    "products.merchant",
    "captured_at",
];

/// Breaks `text` (limit `max` characters): returns whether the break makes it invalid for a
/// check that refuses control characters (`line`) or only NUL.
fn break_text(text: &mut String, max: usize, how: Break, line: bool) -> bool {
    match how {
        Break::Nul => {
            let middle = text.char_indices().nth(text.chars().count() / 2).map_or(text.len(), |(at, _)| at);
            text.insert(middle, '\0');
        }
        Break::Control => text.push('\u{1b}'),
        Break::TooLong => *text = "ü".repeat(max + 1),
    }
    !matches!(how, Break::Control) || line
}

/// Applies the break; `false` when this break leaves the field valid (a control character in
/// free text).
fn break_field(s: &mut Submission, field: &str, how: Break, value: f64) -> bool {
    let first_citation = |s: &mut Submission| {
        if s.citations.is_empty() {
            s.citations.push(RawCitation {
                url: String::new(),
                title: String::new(),
                kind: CitationKind::Unspecified,
                found_in: CitationOrigin::Unspecified,
            });
        }
        s.citations.len() - 1
    };
    let last_product = |s: &mut Submission| {
        if s.products.is_empty() {
            s.products.push(Product::default());
        }
        s.products.len() - 1
    };
    match field {
        "response_text" => break_text(&mut s.response_text, MAX_RESPONSE_CHARS, how, false),
        "response_markdown" => break_text(&mut s.response_markdown, MAX_MARKDOWN_CHARS, how, false),
        "bot_id" => break_text(&mut s.bot_id, MAX_NAME_CHARS, how, true),
        "lease_id" => break_text(&mut s.lease_id, MAX_NAME_CHARS, how, true),
        "citations" => {
            let one = s.citations.first().cloned().unwrap_or(RawCitation {
                url: "https://example.com/".into(),
                title: String::new(),
                kind: CitationKind::Listed,
                found_in: CitationOrigin::Page,
            });
            s.citations = vec![one; MAX_CITATIONS + 1];
            true
        }
        "citations.url" => {
            let i = first_citation(s);
            break_text(&mut s.citations[i].url, MAX_URL_CHARS, how, true)
        }
        "citations.title" => {
            let i = first_citation(s);
            break_text(&mut s.citations[i].title, MAX_TITLE_CHARS, how, false)
        }
        "capture.response_html" => break_text(&mut s.capture.response_html, MAX_HTML_CHARS, how, false),
        "capture.model" => break_text(&mut s.capture.model, MAX_NAME_CHARS, how, true),
        "capture.adapter_version" => break_text(&mut s.capture.adapter_version, MAX_NAME_CHARS, how, true),
        "capture.adapter_fingerprint" => break_text(&mut s.capture.adapter_fingerprint, MAX_NAME_CHARS, how, true),
        "capture.confidence" => {
            // Outside [0, 1]: the generated value when it is, else NaN, an infinity or a value
            // just past either end.
            let edges = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -f32::MIN_POSITIVE, 1.0 + f32::EPSILON];
            let out = value as f32;
            s.capture.confidence =
                Some(if (0.0..=1.0).contains(&out) { edges[(value.to_bits() % 5) as usize] } else { out });
            true
        }
        "search_queries" if matches!(how, Break::TooLong) => {
            s.search_queries = vec!["q".into(); MAX_SEARCH_QUERIES + 1];
            true
        }
        "search_queries" => {
            s.search_queries.push("ok".into());
            let last = s.search_queries.len() - 1;
            break_text(&mut s.search_queries[last], MAX_QUERY_CHARS, how, true)
        }
        "products" => {
            s.products = vec![Product::default(); MAX_PRODUCTS + 1];
            true
        }
        "products.name" => {
            let i = last_product(s);
            break_text(&mut s.products[i].name, MAX_TITLE_CHARS, how, true)
        }
        "products.url" => {
            let i = last_product(s);
            break_text(&mut s.products[i].url, MAX_URL_CHARS, how, true)
        }
        "products.price" => {
            let i = last_product(s);
            break_text(&mut s.products[i].price, MAX_NAME_CHARS, how, true)
        }
        "products.merchant" => {
            let i = last_product(s);
            break_text(&mut s.products[i].merchant, MAX_NAME_CHARS, how, true)
        }
        "captured_at" => {
            // Before year 1 or after 9999: a time RFC 3339 cannot write, nor PostgreSQL always
            // hold. Past chrono's range there is no such time, and none is sent.
            let offset = (value.abs() * 1e9) as i64;
            let secs = if value < 0.0 {
                (-62_135_596_801i64).saturating_sub(offset)
            } else {
                253_402_300_800i64.saturating_add(offset)
            };
            s.captured_at = DateTime::from_timestamp(secs, 0);
            s.captured_at.is_some()
        }
        other => unreachable!("unknown field {other}"),
    }
}

fn field_of(result: &EvalResult<()>) -> Option<&'static str> {
    match result {
        Err(EvalError::InvalidArgument { field, .. }) => Some(field),
        _ => None,
    }
}

proptest! {
    #[test]
    fn a_valid_submission_is_taken(submission in valid_submission()) {
        let result = check_submission(&submission);
        prop_assert!(result.is_ok(), "{:?}", result);
    }

    #[test]
    fn a_submission_with_one_broken_field_is_refused_naming_it(
        submission in valid_submission(),
        field in proptest::sample::select(FIELDS),
        how in prop_oneof![Just(Break::Nul), Just(Break::Control), Just(Break::TooLong)],
        value in any::<f64>(),
    ) {
        let mut submission = submission;
        let broken = break_field(&mut submission, field, how, value);
        let result = check_submission(&submission);
        if broken {
            prop_assert_eq!(field_of(&result), Some(field), "{} broken by {:?}: {:?}", field, how, result);
        } else {
            prop_assert!(result.is_ok(), "{} with {:?} is still valid: {:?}", field, how, result);
        }
    }

    /// What a bot serves: known assistants (any case, padded) with valid plans are taken and
    /// normalised; an unknown assistant is refused naming `serves.assistant`, a bad plan
    /// `serves.plan`, nothing at all `serves`.
    #[test]
    fn serves_are_taken_or_refused_naming_the_field(raw in prop::collection::vec((
        prop_oneof![
            3 => proptest::sample::select(assistants::ASSISTANTS).prop_map(|a| a.id.to_owned()),
            1 => proptest::sample::select(assistants::ASSISTANTS).prop_map(|a| format!(" {} ", a.id.to_uppercase())),
            1 => any::<String>(),
        ],
        prop_oneof![3 => "[a-zA-Z0-9 ._+-]{0,12}", 1 => any::<String>(), 1 => "[a-z]{60,70}"],
    ), 0..5)) {
        let known = |a: &str| assistants::by_id(&a.trim().to_lowercase()).is_some();
        let plan_ok = |p: &str| input::check_plan(p.trim()).is_ok();
        match parse_serves(raw.clone()) {
            Ok(serves) => {
                // Each pair once, in the order first named.
                let mut distinct = Vec::new();
                for (assistant, plan) in &raw {
                    let pair = (assistant.trim().to_lowercase(), assistants::normalize_plan(plan));
                    if !distinct.contains(&pair) {
                        distinct.push(pair);
                    }
                }
                prop_assert_eq!(&serves, &distinct);
                for (assistant, plan) in &serves {
                    prop_assert!(assistants::by_id(assistant).is_some());
                    prop_assert_eq!(&assistants::normalize_plan(plan), plan);
                }
            }
            Err(err) => {
                let expected = match raw.iter().find(|(a, p)| !known(a) || !plan_ok(p)) {
                    None => "serves",
                    Some((_, p)) if !plan_ok(p) => "serves.plan",
                    Some(_) => "serves.assistant",
                };
                prop_assert_eq!(field_of(&Err(err)), Some(expected), "{:?}", raw);
            }
        }
    }
}

/// A bot names at most `MAX_TARGETS` (32) assistant and plan pairs, each a consumer of the
/// tasks stream once a task comes for it; a pair named again counts once.
#[test]
fn serves_name_at_most_32_distinct_pairs() {
    let plans = |n: usize| (0..n).map(|i| ("chatgpt".to_owned(), format!("P{i}"))).collect::<Vec<_>>();
    assert_eq!(parse_serves(plans(32)).map(|serves| serves.len()).ok(), Some(32));
    let refused = parse_serves(plans(33));
    let reason = refused.as_ref().map(|_| String::new()).unwrap_or_else(|err| err.to_string());
    assert_eq!(field_of(&refused.map(|_| ())), Some("serves"));
    assert!(reason.contains("more than 32"), "{reason}");
    let again = parse_serves(std::iter::repeat_n(("chatgpt".to_owned(), "Plus".to_owned()), 100));
    assert_eq!(again.ok(), Some(vec![("chatgpt".to_owned(), assistants::normalize_plan("Plus"))]));
}
