//! The platform's bounds on what an answer carries, kept by the bot before it submits: the
//! platform refuses the whole answer (INVALID_ARGUMENT, 422 on the seed's HTTP API) for one
//! citation over them, and the answer is what the customer waits for. The bounds are
//! [`aap_proto::limits`], which the platform checks; counted in characters, as it counts them.

pub use aap_proto::limits::{
    MAX_CITATIONS, MAX_QUERY_CHARS, MAX_REASON_CHARS, MAX_SEARCH_QUERIES, MAX_TITLE_CHARS, MAX_URL_CHARS,
};

use crate::adapter::Citation;

/// Citations that fit the platform's bounds, in the given order: a title over its bound is
/// cut to it on a character boundary, ending in `…`, and loses any NUL; a citation whose URL is
/// over its bound or holds a control character is dropped (a cut URL is a wrong one), logged;
/// past [`MAX_CITATIONS`] the rest are dropped, logged. Positions are renumbered from 1, as the
/// platform numbers them.
pub fn fit_citations(citations: Vec<Citation>) -> Vec<Citation> {
    let mut fitted: Vec<Citation> = citations
        .into_iter()
        .filter(|citation| match url_problem(&citation.url) {
            None => true,
            Some(problem) => {
                tracing::warn!(
                    position = citation.position,
                    url = shortened(&citation.url, 200),
                    problem,
                    "citation dropped: the platform refuses its url"
                );
                false
            }
        })
        .map(|citation| Citation { title: fit_title(&citation.title), ..citation })
        .collect();
    if fitted.len() > MAX_CITATIONS {
        tracing::warn!(
            citations = fitted.len(),
            kept = MAX_CITATIONS,
            "citations dropped: more than the platform takes; the first ones are kept"
        );
        fitted.truncate(MAX_CITATIONS);
    }
    for (index, citation) in fitted.iter_mut().enumerate() {
        citation.position = index as u32 + 1;
    }
    fitted
}

/// Search queries that fit the platform's bounds, in the given order: a control character but
/// tab and line breaks replaced by U+FFFD, a query over [`MAX_QUERY_CHARS`] cut to it on a
/// character boundary ending in `…` (an assistant may show a long prompt whole as its query:
/// the platform refused the whole answer for it), past [`MAX_SEARCH_QUERIES`] the rest dropped;
/// logged when anything is cut.
pub fn fit_search_queries(queries: Vec<String>) -> Vec<String> {
    if queries.len() > MAX_SEARCH_QUERIES {
        tracing::warn!(
            queries = queries.len(),
            kept = MAX_SEARCH_QUERIES,
            "search queries dropped: more than the platform takes; the first ones are kept"
        );
    }
    queries
        .into_iter()
        .take(MAX_SEARCH_QUERIES)
        .map(|query| {
            let query = controls_replaced(&query);
            let chars = query.chars().count();
            if chars <= MAX_QUERY_CHARS {
                return query;
            }
            tracing::info!(chars, limit = MAX_QUERY_CHARS, "search query cut to the platform's limit");
            shortened(&query, MAX_QUERY_CHARS)
        })
        .collect()
}

/// Why the platform would refuse `url` (its `check_line` with [`MAX_URL_CHARS`]), if it would.
pub(crate) fn url_problem(url: &str) -> Option<String> {
    if let Some(c) = url.chars().find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return Some(format!("contains the control character U+{:04X}", u32::from(c)));
    }
    let chars = url.chars().count();
    (chars > MAX_URL_CHARS).then(|| format!("is {chars} characters; the limit is {MAX_URL_CHARS}"))
}

/// `title` without NUL (the platform refuses it anywhere), cut to [`MAX_TITLE_CHARS`]
/// characters with `…` as the last one when it is longer.
pub(crate) fn fit_title(title: &str) -> String {
    let title = title.replace('\0', "");
    let chars = title.chars().count();
    if chars <= MAX_TITLE_CHARS {
        return title;
    }
    tracing::info!(chars, limit = MAX_TITLE_CHARS, "citation title cut to the platform's limit");
    shortened(&title, MAX_TITLE_CHARS)
}

/// `reason` as the platform takes it in a release: without NUL, at most [`MAX_REASON_CHARS`]
/// characters (the end cut, `…` last).
pub fn fit_reason(reason: &str) -> String {
    shortened(&reason.replace('\0', ""), MAX_REASON_CHARS)
}

/// `detail` as the platform takes it with a returned lease (ReturnSession, shown to operators
/// as the account's cool-down reason): every control character but tab and line breaks (an
/// escape sequence of a page's text, NUL) replaced by U+FFFD, at most [`MAX_REASON_CHARS`]
/// characters (the end cut, `…` last).
pub fn fit_detail(detail: &str) -> String {
    shortened(&controls_replaced(detail), MAX_REASON_CHARS)
}

/// `value` with every control character but tab and line breaks (what the platform's
/// `check_line` refuses) replaced by U+FFFD.
fn controls_replaced(value: &str) -> String {
    value
        .chars()
        .map(|c| if c.is_control() && !matches!(c, '\t' | '\n' | '\r') { char::REPLACEMENT_CHARACTER } else { c })
        .collect()
}

/// `value`, cut to at most `max_chars` characters when it is longer: the start, without the
/// spaces it would end in, then `…`.
fn shortened(value: &str, max_chars: usize) -> String {
    if value.chars().count() <= max_chars {
        return value.to_owned();
    }
    let mut cut: String = value.chars().take(max_chars.saturating_sub(1)).collect();
    cut.truncate(cut.trim_end().len());
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapter::FoundIn;

    fn citation(position: u32, url: &str, title: &str) -> Citation {
        Citation {
            url: url.to_owned(),
            title: title.to_owned(),
            domain: "example.com".to_owned(),
            position,
            inline: true,
            found_in: FoundIn::Page,
        }
    }

    fn urls(citations: &[Citation]) -> Vec<(&str, u32)> {
        citations.iter().map(|c| (c.url.as_str(), c.position)).collect()
    }

    #[test]
    fn search_queries_are_fitted_to_the_platforms_bounds() {
        // Perplexity's look-alike showed a prompt of 1,494 characters whole as its query, and
        // the platform refused the whole answer ("invalid search_queries: is 1494 characters").
        let long = format!("{} 日本", "laptop ".repeat(300));
        let fitted = fit_search_queries(vec!["short one".to_owned(), long.clone(), "a\0b\u{1b}c\td".to_owned()]);
        assert_eq!(fitted.len(), 3);
        assert_eq!(fitted[0], "short one");
        assert_eq!(fitted[1].chars().count(), MAX_QUERY_CHARS);
        assert!(fitted[1].ends_with('…') && long.starts_with(fitted[1].trim_end_matches('…')));
        assert_eq!(fitted[2], "a\u{fffd}b\u{fffd}c\td");
        // What the platform checks (`check_line` with MAX_QUERY_CHARS) holds for every one.
        for query in &fitted {
            assert!(url_problem(query).is_none() && query.chars().count() <= MAX_QUERY_CHARS, "{query:?}");
        }
        let many = fit_search_queries((0..70).map(|i| format!("q{i}")).collect());
        assert_eq!(many.len(), MAX_SEARCH_QUERIES);
        assert_eq!((many[0].as_str(), many[63].as_str()), ("q0", "q63"));
        // A query exactly at the limit is kept whole.
        let edge = "é".repeat(MAX_QUERY_CHARS);
        assert_eq!(fit_search_queries(vec![edge.clone()]), [edge]);
    }

    #[test]
    fn a_title_over_the_limit_is_cut_on_a_character_boundary_with_an_ellipsis() {
        // Claude's page showed a prompt of one 3,000-character word as a citation's title.
        let word = "a".repeat(3000);
        let fitted = fit_citations(vec![citation(1, "https://example.com/a", &word)]);
        assert_eq!(fitted[0].title.chars().count(), MAX_TITLE_CHARS);
        assert_eq!(fitted[0].title, format!("{}…", "a".repeat(MAX_TITLE_CHARS - 1)));

        // Multibyte characters are counted as the platform counts them, in characters, and
        // never split: 3,000 of them are 6,000 to 12,000 bytes.
        for wide in ["é", "日", "😀"] {
            let title = wide.repeat(3000);
            let fitted = fit_citations(vec![citation(1, "https://example.com/a", &title)]);
            let cut = &fitted[0].title;
            assert_eq!(cut.chars().count(), MAX_TITLE_CHARS, "{wide}");
            assert_eq!(*cut, format!("{}…", wide.repeat(MAX_TITLE_CHARS - 1)));
        }
    }

    #[test]
    fn a_title_cut_loses_the_spaces_before_its_ellipsis_and_any_nul() {
        let title = format!("{}{}", "b".repeat(MAX_TITLE_CHARS - 3), " ".repeat(10));
        let fitted = fit_citations(vec![citation(1, "https://example.com/b", &title)]);
        assert_eq!(fitted[0].title, format!("{}…", "b".repeat(MAX_TITLE_CHARS - 3)));
        let fitted = fit_citations(vec![citation(1, "https://example.com/b", "Bad\0 title")]);
        assert_eq!(fitted[0].title, "Bad title");
    }

    #[test]
    fn a_citation_whose_url_is_over_the_limit_is_dropped_and_the_others_kept_renumbered() {
        // ChatGPT's page put an 8,192-byte prompt into a citation's URL: 8,239 characters.
        let long = format!("https://example.com/search?q={}", "x".repeat(8239 - 29));
        assert_eq!(long.chars().count(), 8239);
        let control = "https://example.com/\u{1}bell";
        let fitted = fit_citations(vec![
            citation(1, "https://one.example/", "One"),
            citation(2, &long, "Long"),
            citation(3, control, "Control"),
            citation(4, "https://four.example/", "Four"),
        ]);
        assert_eq!(urls(&fitted), vec![("https://one.example/", 1), ("https://four.example/", 2)]);
        assert_eq!(fitted[1].title, "Four");
    }

    #[test]
    fn values_exactly_at_the_limits_are_kept_as_they_are() {
        let url = format!("https://example.com/{}", "é".repeat(MAX_URL_CHARS - 20));
        assert_eq!(url.chars().count(), MAX_URL_CHARS);
        let title = "日".repeat(MAX_TITLE_CHARS);
        let at_limits = citation(1, &url, &title);
        assert_eq!(fit_citations(vec![at_limits.clone()]), vec![at_limits]);

        let many: Vec<Citation> =
            (1..=MAX_CITATIONS as u32).map(|n| citation(n, &format!("https://e.example/{n}"), "t")).collect();
        assert_eq!(fit_citations(many.clone()), many);
    }

    #[test]
    fn past_the_most_citations_the_first_ones_are_kept() {
        let many: Vec<Citation> =
            (1..=MAX_CITATIONS as u32 + 10).map(|n| citation(n, &format!("https://e.example/{n}"), "t")).collect();
        let fitted = fit_citations(many.clone());
        assert_eq!(fitted, many[..MAX_CITATIONS]);
    }

    #[test]
    fn a_return_detail_fits_the_platform_without_control_characters() {
        assert_eq!(fit_detail("rate limited:\n\ttoo many requests"), "rate limited:\n\ttoo many requests");
        assert_eq!(fit_detail("\u{1b}[2J\u{1b}]0;title\u{7}a\0b"), "\u{FFFD}[2J\u{FFFD}]0;title\u{FFFD}a\u{FFFD}b");
        let long = fit_detail(&format!("\u{1b}{}", "é".repeat(MAX_REASON_CHARS)));
        assert_eq!(long.chars().count(), MAX_REASON_CHARS);
        assert!(long.starts_with('\u{FFFD}') && long.ends_with('…'));
    }

    #[test]
    fn a_release_reason_fits_the_platform() {
        assert_eq!(fit_reason("submit refused: invalid x"), "submit refused: invalid x");
        let long = fit_reason(&"é".repeat(MAX_REASON_CHARS + 1));
        assert_eq!(long.chars().count(), MAX_REASON_CHARS);
        assert!(long.ends_with('…'));
        assert_eq!(fit_reason("a\0b"), "ab");
    }
}
