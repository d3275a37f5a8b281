//! The platform's bounds on what an answer carries, kept by the bot before it submits: the
//! platform refuses the whole answer (INVALID_ARGUMENT, 422 on the seed's HTTP API) for one
//! citation over them, and the answer is what the customer waits for. The bounds are
//! [`aap_proto::limits`], which the platform checks; counted in characters, as it counts them.

pub use aap_proto::limits::{
    MAX_CITATIONS, MAX_HTML_CHARS, MAX_NAME_CHARS, MAX_PRODUCTS, MAX_QUERY_CHARS, MAX_REASON_CHARS, MAX_SEARCH_QUERIES,
    MAX_TITLE_CHARS, MAX_URL_CHARS,
};

use crate::adapter::{Captured, Citation, Product};

/// `captured` as the platform takes it, for every adapter and both sources: its citations,
/// search queries and products fitted ([`fit_citations`], [`fit_search_queries`],
/// [`fit_products`]); the model's name a line of at most [`MAX_NAME_CHARS`]; NUL, which the
/// platform refuses anywhere, dropped from the text, the markdown and the page HTML; page HTML
/// over [`MAX_HTML_CHARS`] left out, logged (a record of the page: the answer is its text,
/// markdown and citations, and a cut document is no record). A text or markdown over its
/// bound is left as it is: the platform refuses it and the task fails with that reason, where
/// a cut answer would pass for a whole one.
pub fn fit_captured(captured: Captured) -> Captured {
    let html = without_nul(captured.html);
    let chars = html.chars().count();
    let html = if chars > MAX_HTML_CHARS {
        tracing::warn!(chars, limit = MAX_HTML_CHARS, "the answer's page html left out: over the platform's limit");
        String::new()
    } else {
        html
    };
    Captured {
        response_text: without_nul(captured.response_text),
        response_markdown: without_nul(captured.response_markdown),
        html,
        citations: fit_citations(captured.citations),
        model: captured.model.map(|model| fit_line(&model, MAX_NAME_CHARS, "model name")),
        search_queries: fit_search_queries(captured.search_queries),
        products: fit_products(captured.products),
        ..captured
    }
}

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
    fitted = first_kept(fitted, MAX_CITATIONS, "citations");
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
    first_kept(queries, MAX_SEARCH_QUERIES, "search queries")
        .iter()
        .map(|query| fit_line(query, MAX_QUERY_CHARS, "search query"))
        .collect()
}

/// Products that fit the platform's bounds, in the given order: the name cut to
/// [`MAX_TITLE_CHARS`] characters, the price and the merchant to [`MAX_NAME_CHARS`] (control
/// characters but tab and line breaks replaced by U+FFFD, `…` last when cut); a URL the
/// platform would refuse left out, the product kept (it links nowhere then: a cut URL is a
/// wrong one); past [`MAX_PRODUCTS`] the rest dropped; logged when anything is cut.
pub fn fit_products(products: Vec<Product>) -> Vec<Product> {
    first_kept(products, MAX_PRODUCTS, "products")
        .into_iter()
        .map(|product| {
            let url = match url_problem(&product.url) {
                None => product.url,
                Some(problem) => {
                    tracing::warn!(
                        url = shortened(&product.url, 200),
                        problem,
                        "product url left out: the platform refuses it"
                    );
                    String::new()
                }
            };
            Product {
                name: fit_line(&product.name, MAX_TITLE_CHARS, "product name"),
                url,
                price: fit_line(&product.price, MAX_NAME_CHARS, "product price"),
                merchant: fit_line(&product.merchant, MAX_NAME_CHARS, "product merchant"),
            }
        })
        .collect()
}

/// The first `max` of `items`; the rest dropped, logged as `what` (the platform refuses the
/// whole answer for one item more).
fn first_kept<T>(mut items: Vec<T>, max: usize, what: &'static str) -> Vec<T> {
    if items.len() > max {
        tracing::warn!(
            count = items.len(),
            kept = max,
            what,
            "dropped: more than the platform takes; the first ones are kept"
        );
        items.truncate(max);
    }
    items
}

/// Why the platform would refuse `url` (its `check_line` with [`MAX_URL_CHARS`]), if it would.
pub(crate) fn url_problem(url: &str) -> Option<String> {
    if let Some(c) = url.chars().find(|c| refused_control(*c)) {
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

/// `value` as a line the platform takes (its `check_line` with `max_chars`): every control
/// character but tab and line breaks replaced by U+FFFD, cut to `max_chars` characters with
/// `…` last when longer, logged as `what` then.
fn fit_line(value: &str, max_chars: usize, what: &'static str) -> String {
    let line = controls_replaced(value);
    let chars = line.chars().count();
    if chars <= max_chars {
        return line;
    }
    tracing::info!(chars, limit = max_chars, what, "cut to the platform's limit");
    shortened(&line, max_chars)
}

/// `value` with every control character but tab and line breaks (what the platform's
/// `check_line` refuses) replaced by U+FFFD.
fn controls_replaced(value: &str) -> String {
    value.chars().map(|c| if refused_control(c) { char::REPLACEMENT_CHARACTER } else { c }).collect()
}

/// Whether the platform's `check_line` refuses `c`: a control character other than tab and the
/// line breaks.
fn refused_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// `value` without NUL; as it is, not copied, when it holds none.
fn without_nul(value: String) -> String {
    if value.contains('\0') { value.replace('\0', "") } else { value }
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

    fn product(name: &str, url: &str, price: &str, merchant: &str) -> Product {
        Product { name: name.to_owned(), url: url.to_owned(), price: price.to_owned(), merchant: merchant.to_owned() }
    }

    /// What the platform's `check_submission` asks of a product (`check_line` of each part).
    fn platform_takes(product: &Product) -> bool {
        let line = |value: &str, max: usize| url_problem(value).is_none() && value.chars().count() <= max;
        line(&product.name, MAX_TITLE_CHARS)
            && line(&product.url, MAX_URL_CHARS)
            && line(&product.price, MAX_NAME_CHARS)
            && line(&product.merchant, MAX_NAME_CHARS)
    }

    #[test]
    fn products_are_fitted_to_the_platforms_bounds() {
        // What the simulator's `[[oversized]]` puts in Perplexity's stream, the first of 70.
        let long_url = format!("https://shop.example.com/p/{}", "x".repeat(5000));
        let oversized = product(
            &format!("Oversized {}", "Ultra 日本 ".repeat(200)),
            &long_url,
            &format!("$1,299.99 {}", "or less ".repeat(40)),
            &format!("Bell\u{7}Merchant\u{1b}[1m {}", "M".repeat(230)),
        );
        assert!(!platform_takes(&oversized), "the platform refuses it as it is");
        let plain =
            |n: usize| product(&format!("Plain {n}"), &format!("https://shop.example.com/{n}"), "$9.99", "Shop");
        let products: Vec<Product> = std::iter::once(oversized.clone()).chain((2..=70).map(plain)).collect();
        let fitted = fit_products(products);
        assert_eq!(fitted.len(), MAX_PRODUCTS);
        assert!(fitted.iter().all(platform_takes), "{fitted:?}");
        let first = &fitted[0];
        assert_eq!(first.name.chars().count(), MAX_TITLE_CHARS);
        assert!(first.name.ends_with('…') && oversized.name.starts_with(first.name.trim_end_matches('…')));
        assert_eq!(first.url, "", "a cut link is a wrong one: left out, the product kept");
        assert_eq!(first.price.chars().count(), MAX_NAME_CHARS);
        assert!(first.merchant.starts_with("Bell\u{FFFD}Merchant\u{FFFD}[1m M"), "{}", first.merchant);
        assert_eq!(first.merchant.chars().count(), MAX_NAME_CHARS);
        // The others as they were, in order, the 64th the last kept.
        assert_eq!(fitted[1], plain(2));
        assert_eq!(fitted[63], plain(64));
        // A link with a control character is left out too; values at the limits stay whole.
        let edge = product(&"é".repeat(MAX_TITLE_CHARS), "https://e.example/\u{1}", &"$".repeat(MAX_NAME_CHARS), "");
        let fitted = fit_products(vec![edge.clone()]);
        assert_eq!(fitted, [Product { url: String::new(), ..edge }]);
    }

    #[test]
    fn a_captured_answer_is_fitted_whole_and_its_text_never_cut() {
        let captured = Captured {
            response_text: "An\0 answer".to_owned(),
            response_markdown: "An\0 **answer**".to_owned(),
            html: "<p>An\0 answer</p>".to_owned(),
            citations: vec![citation(1, "https://example.com/a", &"t".repeat(MAX_TITLE_CHARS + 5))],
            model: Some(format!("gpt\u{1b}-5 {}", "m".repeat(300))),
            web_search: Some(true),
            kind: crate::adapter::AnswerKind::Text,
            ttft: None,
            total: std::time::Duration::from_secs(3),
            reading: crate::adapter::Reading::default(),
            search_queries: vec!["q".repeat(MAX_QUERY_CHARS + 1)],
            products: vec![product(&"p".repeat(MAX_TITLE_CHARS + 1), "https://shop.example.com/p", "$1", "Shop")],
        };
        let fitted = fit_captured(captured.clone());
        assert_eq!((fitted.response_text.as_str(), fitted.response_markdown.as_str()), ("An answer", "An **answer**"));
        assert_eq!(fitted.html, "<p>An answer</p>");
        assert_eq!(fitted.citations[0].title.chars().count(), MAX_TITLE_CHARS);
        let model = fitted.model.as_deref().unwrap_or_default();
        assert!(model.starts_with("gpt\u{FFFD}-5 m") && model.chars().count() == MAX_NAME_CHARS, "{model}");
        assert_eq!(fitted.search_queries[0].chars().count(), MAX_QUERY_CHARS);
        assert_eq!(fitted.products[0].name.chars().count(), MAX_TITLE_CHARS);
        assert_eq!((fitted.web_search, fitted.total), (captured.web_search, captured.total));

        // Page HTML over its bound is left out; the answer's text over its bound is left as it
        // is, for the platform to refuse (a cut answer would pass for a whole one).
        let huge = Captured {
            html: "h".repeat(MAX_HTML_CHARS + 1),
            response_text: "t".repeat(aap_proto::limits::MAX_RESPONSE_CHARS + 1),
            ..captured.clone()
        };
        let fitted = fit_captured(huge.clone());
        assert_eq!(fitted.html, "");
        assert_eq!(fitted.response_text, huge.response_text);
        // Nothing to fit: the same answer back.
        let clean = fit_captured(captured);
        assert_eq!(fit_captured(clean.clone()), clean);
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
