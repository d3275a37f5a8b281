//! The assistant's own response stream, teed in the page (`tee.js`, injected at document start
//! by [`crate::Browser`]): reading it back, splitting it into server-sent events, and merging
//! the sources it names with the ones the page shows.
//!
//! The page is what a reader sees; the stream is what the site's front end was sent. A source
//! can be in one and not the other (a Sources dialog whose markup changed, a pill the stream
//! never mentioned), so citations are the union, each marked with where it was found, and a
//! disagreement is logged and kept with the answer. The same stream names the web searches the
//! assistant ran and the products it showed, which the page shows partly or not at all.

use serde::Deserialize;
use thirtyfour::prelude::*;

use super::common::collapse;
use super::{Citation, FoundIn, Product};
use aap_proto::urls::{clean_url, domain_of, is_assistant_page};

/// The script every document starts with.
pub const TEE_SCRIPT: &str = include_str!("tee.js");

/// One teed response.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Teed {
    /// Increases with every teed response of the document.
    pub seq: u64,
    /// The response's URL.
    pub url: String,
    /// HTTP status.
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: String,
    /// The body read so far (empty in [`state`]).
    pub text: String,
    /// The body has ended (or failed).
    pub done: bool,
    /// The body was longer than the tee keeps.
    pub truncated: bool,
    /// Why reading failed (an aborted request, say).
    pub error: Option<String>,
    /// Characters read so far ([`state`] only).
    pub len: usize,
}

/// Where the tee stood before a question: responses after it are the answer's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark(u64);

/// The tee's position now; `Mark(0)` when the document has no tee (it never stops an answer).
pub async fn mark(driver: &WebDriver) -> Mark {
    match driver.execute("return window.__aapTee ? window.__aapTee.mark() : 0;", Vec::new()).await {
        Ok(ret) => Mark(ret.convert::<u64>().unwrap_or(0)),
        Err(error) => {
            tracing::debug!(%error, "no response tee in this page");
            Mark(0)
        }
    }
}

/// The responses teed after `mark`, without their text (cheap enough to poll). Responses whose
/// URL contains none of `url_parts` are left out (all are kept when `url_parts` is empty).
pub async fn state(driver: &WebDriver, mark: Mark, url_parts: &[String]) -> WebDriverResult<Vec<Teed>> {
    teed(driver, "state", mark, url_parts).await
}

/// The responses teed after `mark`, with their text, filtered like [`state`].
pub async fn read(driver: &WebDriver, mark: Mark, url_parts: &[String]) -> WebDriverResult<Vec<Teed>> {
    teed(driver, "read", mark, url_parts).await
}

/// Calls the tee's `state` or `read` for the responses after `mark` whose URL contains one of
/// `url_parts` (all when empty); none when the document has no tee.
async fn teed(driver: &WebDriver, method: &str, mark: Mark, url_parts: &[String]) -> WebDriverResult<Vec<Teed>> {
    let script = format!("return window.__aapTee ? window.__aapTee.{method}(arguments[0]) : [];");
    let ret = driver.execute(script.as_str(), vec![serde_json::json!(mark.0)]).await?;
    let teed: Vec<Teed> = ret.convert().unwrap_or_default();
    Ok(teed
        .into_iter()
        .filter(|t| url_parts.is_empty() || url_parts.iter().any(|part| t.url.contains(part.as_str())))
        .collect())
}

/// Whether some answer stream after the mark has ended: an independent finish signal
/// (`stream-done`). An aborted one does not count.
pub fn ended(teed: &[Teed]) -> bool {
    teed.iter().any(|t| t.done && t.error.is_none() && (200..300).contains(&t.status))
}

/// Whether an answer stream teed after `mark` has ended ([`ended`]); false when the page cannot
/// be asked (no tee, a navigation in progress): the `stream-done` signal is then simply absent.
pub async fn done(driver: &WebDriver, mark: Mark, url_parts: &[String]) -> bool {
    match state(driver, mark, url_parts).await {
        Ok(teed) => ended(&teed),
        Err(error) => {
            tracing::debug!(%error, "cannot look at the response tee");
            false
        }
    }
}

/// The HTTP status with which the site's own API last refused a request after `mark` (429 for a
/// usage limit, 413 for a prompt too long; teed with [`crate::limit_reset::refusals`]) whose URL
/// contains one of `url_parts` (any URL when empty): what the attempt met, whatever words the page
/// shows for it.
pub async fn refused(driver: &WebDriver, mark: Mark, url_parts: &[String]) -> Option<u16> {
    let refusals = crate::limit_reset::refusals(driver).await;
    refusals.iter().rev().find_map(|refusal| {
        let ours = url_parts.is_empty() || url_parts.iter().any(|part| refusal.url.contains(part.as_str()));
        (refusal.seq > mark.0 && ours).then_some(refusal.status)
    })
}

/// One server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when absent.
    pub event: String,
    /// The `data:` lines joined with new lines.
    pub data: String,
}

/// Splits an event-stream body into events, as the EventSource standard reads them: fields per
/// line (`field: value`, one leading space dropped), `data` lines joined, comments (`:`) and
/// unknown fields skipped, an event dispatched at a blank line (and at the end of a complete
/// body), CR, LF and CRLF line ends alike. Events without data are dropped.
pub fn sse_events(body: &str) -> Vec<SseEvent> {
    let mut events = Vec::new();
    let mut event = String::new();
    let mut data: Vec<&str> = Vec::new();
    let body = body.strip_prefix('\u{feff}').unwrap_or(body);
    let normalised = body.replace("\r\n", "\n").replace('\r', "\n");
    let dispatch = |event: &mut String, data: &mut Vec<&str>, events: &mut Vec<SseEvent>| {
        if !data.is_empty() {
            let name = if event.is_empty() { "message".to_owned() } else { std::mem::take(event) };
            events.push(SseEvent { event: name, data: data.join("\n") });
        }
        event.clear();
        data.clear();
    };
    for line in normalised.split('\n') {
        if line.is_empty() {
            dispatch(&mut event, &mut data, &mut events);
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value.to_owned(),
            "data" => data.push(value),
            _ => {}
        }
    }
    dispatch(&mut event, &mut data, &mut events);
    events
}

/// The JSON values of the `data` of every event of `body` that parses as JSON (`[DONE]` and
/// other plain-text data are skipped), with the event name.
pub fn json_events(body: &str) -> Vec<(String, serde_json::Value)> {
    sse_events(body)
        .into_iter()
        .filter_map(|e| serde_json::from_str(&e.data).ok().map(|value| (e.event, value)))
        .collect()
}

/// A source as the response stream names it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamSource {
    /// The URL as sent (cleaned when merged).
    pub url: String,
    /// Its title, when the stream gives one.
    pub title: String,
    /// Cited in the text (true) or only among the results the assistant read (false).
    pub inline: bool,
}

/// What an assistant's response stream said besides the text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Findings {
    /// Sources in the order the text cites them, then the ones only listed or read.
    pub sources: Vec<StreamSource>,
    /// The web searches run, in order, each once.
    pub search_queries: Vec<String>,
    /// Products shown, in order.
    pub products: Vec<Product>,
    /// The stream reached its own end marker (`[DONE]`, `message_stop`, a final event).
    pub complete: bool,
    /// The answer ended at the model's output limit (a stop reason or finish of `max_tokens`):
    /// the site offers to continue it.
    pub cut_short: bool,
    /// The model declined to answer under its usage policy (Claude's stop reason `refusal`).
    pub declined: bool,
    /// The model that answered, as the stream names it (chatgpt.com's `model_slug`).
    pub model: Option<String>,
    /// The model the account's plan answers with, as the stream names it (chatgpt.com's
    /// `intended_default_model_slug`).
    pub intended_model: Option<String>,
    /// The models whose plan limit the account has used up (chatgpt.com's `model_limits`).
    pub model_limits: Vec<ModelLimit>,
    /// Documents the answer made beside its text, in the order first made (claude.ai's
    /// artifacts and presented files): the page shows each as a card, its text in a side panel.
    pub documents: Vec<Document>,
    /// Edits of those documents the stream gave but the bot could not replay (an edit of a
    /// text it never got, a pattern it cannot read): a document may not read as the page shows.
    pub document_edits_missed: usize,
}

/// A document an answer made beside its text: a claude.ai artifact (a report, a guide, a table,
/// code), or a file it created and presented. The message shows only a card with its title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its title (an artifact's `title`, a file's name).
    pub title: String,
    /// Its text as last written, markdown for a document.
    pub text: String,
}

/// A model whose plan limit the account has used up, as a response stream names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLimit {
    /// The model's id, e.g. `gpt-5`.
    pub model: String,
    /// When the limit lifts (`resets_after`), when the stream says.
    pub lifts_at: Option<std::time::SystemTime>,
}

impl Findings {
    /// Adds a search query once (blank ones are skipped).
    pub fn query(&mut self, query: &str) {
        let query = collapse(query);
        if !query.is_empty() && !self.search_queries.contains(&query) {
            self.search_queries.push(query);
        }
    }

    /// Adds a source; a URL already there keeps its place, becomes inline if this one is, and
    /// takes this title if it had none.
    pub fn source(&mut self, url: &str, title: &str, inline: bool) {
        let url = url.trim();
        if url.is_empty() {
            return;
        }
        let key = clean_url(url);
        match self.sources.iter_mut().find(|s| clean_url(&s.url) == key) {
            Some(known) => {
                known.inline |= inline;
                if known.title.trim().is_empty() {
                    known.title = title.to_owned();
                }
            }
            None => self.sources.push(StreamSource { url: url.to_owned(), title: title.to_owned(), inline }),
        }
    }

    /// Adds a product once by name (blank names are skipped).
    pub fn product(&mut self, product: Product) {
        if !product.name.trim().is_empty() && !self.products.iter().any(|p| p.name == product.name) {
            self.products.push(product);
        }
    }

    /// Products with clean URLs (an assistant's own page is no product link).
    pub fn clean_products(&self) -> Vec<Product> {
        self.products
            .iter()
            .map(|p| {
                let url = clean_url(&p.url);
                let url = if p.url.trim().is_empty() || is_assistant_page(&url) { String::new() } else { url };
                Product { name: collapse(&p.name), url, price: collapse(&p.price), merchant: collapse(&p.merchant) }
            })
            .collect()
    }
}

/// The page's citations merged with the stream's sources, in reading order, each marked with
/// where it was found; and, when the two disagree, a line saying how.
///
/// Order: the page's inline citations as they read; a source the stream cites inline that the
/// page did not show goes right after the one the stream cited before it. Then the sources only
/// listed, the page's first, then the stream's. A title from the page wins over the stream's;
/// a source the stream cites inline is inline even if the page only listed it.
pub fn merge(page: &[Citation], stream: &[StreamSource]) -> (Vec<Citation>, Option<String>) {
    struct Entry {
        url: String,
        title: String,
        inline: bool,
        page: bool,
        stream: bool,
    }
    let stream: Vec<(String, &StreamSource)> = stream
        .iter()
        .map(|s| (clean_url(&s.url), s))
        .filter(|(url, _)| url.starts_with("http") && !is_assistant_page(url))
        .collect();
    let mut entries: Vec<Entry> = page
        .iter()
        .map(|c| Entry { url: c.url.clone(), title: c.title.clone(), inline: c.inline, page: true, stream: false })
        .collect();
    let mut previous: Option<usize> = None;
    for (url, source) in stream.iter().filter(|(_, s)| s.inline) {
        match entries.iter().position(|e| &e.url == url) {
            Some(at) => {
                let entry = &mut entries[at];
                entry.stream = true;
                if !entry.inline {
                    // Cited in the stream: move it among the inline ones, after the previous.
                    let mut moved = entries.remove(at);
                    moved.inline = true;
                    let to = previous.map_or_else(|| entries.iter().take_while(|e| e.inline).count(), |p| p + 1);
                    let to = to.min(entries.len());
                    entries.insert(to, moved);
                    previous = Some(to);
                } else {
                    previous = Some(at);
                }
            }
            None => {
                let to = previous.map_or(0, |p| p + 1);
                entries.insert(
                    to,
                    Entry { url: url.clone(), title: source.title.clone(), inline: true, page: false, stream: true },
                );
                previous = Some(to);
            }
        }
    }
    for (url, source) in stream.iter().filter(|(_, s)| !s.inline) {
        match entries.iter_mut().find(|e| &e.url == url) {
            Some(entry) => entry.stream = true,
            None => entries.push(Entry {
                url: url.clone(),
                title: source.title.clone(),
                inline: false,
                page: false,
                stream: true,
            }),
        }
    }
    // Inline first in their order, then listed: a move above may have left a listed one early.
    entries.sort_by_key(|e| !e.inline);
    let only_page: Vec<&str> = entries.iter().filter(|e| e.page && !e.stream).map(|e| e.url.as_str()).collect();
    let only_stream: Vec<&str> = entries.iter().filter(|e| e.stream && !e.page).map(|e| e.url.as_str()).collect();
    let disagreement = (!stream.is_empty() && (!only_page.is_empty() || !only_stream.is_empty())).then(|| {
        format!(
            "page and stream disagree: {} only in the page {:?}, {} only in the stream {:?}",
            only_page.len(),
            only_page,
            only_stream.len(),
            only_stream
        )
    });
    let citations = entries
        .into_iter()
        .enumerate()
        .map(|(index, e)| {
            let domain = domain_of(&e.url);
            let title = if collapse(&e.title).is_empty() { domain.clone() } else { collapse(&e.title) };
            let found_in = match (e.page, e.stream) {
                (true, true) => FoundIn::Both,
                (false, true) => FoundIn::Stream,
                _ => FoundIn::Page,
            };
            Citation { url: e.url, title, domain, position: index as u32 + 1, inline: e.inline, found_in }
        })
        .collect();
    (citations, disagreement)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(url: &str, title: &str, inline: bool) -> Citation {
        Citation {
            url: url.into(),
            title: title.into(),
            domain: domain_of(url),
            position: 0,
            inline,
            found_in: FoundIn::Page,
        }
    }

    fn streamed(url: &str, title: &str, inline: bool) -> StreamSource {
        StreamSource { url: url.into(), title: title.into(), inline }
    }

    fn summary(citations: &[Citation]) -> Vec<(&str, &str, u32, bool, FoundIn)> {
        citations.iter().map(|c| (c.url.as_str(), c.title.as_str(), c.position, c.inline, c.found_in)).collect()
    }

    #[test]
    fn events_are_split_as_event_source_reads_them() {
        let body = "event: delta\r\ndata: {\"a\":1}\r\n\r\n: keep-alive\n\ndata: line one\ndata:line two\n\nid: 7\nretry: 10\n\ndata: [DONE]";
        assert_eq!(
            sse_events(body),
            vec![
                SseEvent { event: "delta".into(), data: "{\"a\":1}".into() },
                SseEvent { event: "message".into(), data: "line one\nline two".into() },
                SseEvent { event: "message".into(), data: "[DONE]".into() },
            ]
        );
        let json = json_events(body);
        assert_eq!(json.len(), 1);
        assert_eq!(json[0].0, "delta");
        assert_eq!(json[0].1["a"], 1);
        assert!(sse_events("").is_empty());
    }

    #[test]
    fn agreeing_sources_are_both_and_keep_the_page_order_and_titles() {
        let page_citations = vec![
            page("https://a.example/1", "A page", true),
            page("https://b.example/2", "B page", true),
            page("https://c.example/3", "C page", false),
        ];
        let stream = vec![
            streamed("https://a.example/1?utm_source=chatgpt.com", "A stream", true),
            streamed("https://b.example/2", "", true),
            streamed("https://c.example/3", "C", false),
        ];
        let (merged, disagreement) = merge(&page_citations, &stream);
        assert_eq!(
            summary(&merged),
            vec![
                ("https://a.example/1", "A page", 1, true, FoundIn::Both),
                ("https://b.example/2", "B page", 2, true, FoundIn::Both),
                ("https://c.example/3", "C page", 3, false, FoundIn::Both),
            ]
        );
        assert_eq!(disagreement, None);
    }

    #[test]
    fn sources_only_in_the_stream_take_their_reading_place_and_the_disagreement_is_said() {
        let page_citations = vec![page("https://a.example/1", "A", true), page("https://c.example/3", "C", true)];
        let stream = vec![
            streamed("https://a.example/1", "A", true),
            streamed("https://b.example/2", "B from stream", true),
            streamed("https://c.example/3", "C", true),
            streamed("https://d.example/4", "D listed", false),
            streamed("https://www.perplexity.ai/search/x", "own page", true),
        ];
        let (merged, disagreement) = merge(&page_citations, &stream);
        assert_eq!(
            summary(&merged),
            vec![
                ("https://a.example/1", "A", 1, true, FoundIn::Both),
                ("https://b.example/2", "B from stream", 2, true, FoundIn::Stream),
                ("https://c.example/3", "C", 3, true, FoundIn::Both),
                ("https://d.example/4", "D listed", 4, false, FoundIn::Stream),
            ]
        );
        let said = disagreement.unwrap_or_default();
        assert!(said.contains("0 only in the page") && said.contains("2 only in the stream"), "{said}");
    }

    #[test]
    fn a_source_the_page_only_listed_but_the_stream_cites_becomes_inline() {
        let page_citations = vec![page("https://a.example/1", "A", true), page("https://b.example/2", "B", false)];
        let stream = vec![streamed("https://b.example/2", "", true), streamed("https://a.example/1", "", true)];
        let (merged, _) = merge(&page_citations, &stream);
        assert_eq!(
            summary(&merged),
            vec![
                ("https://a.example/1", "A", 1, true, FoundIn::Both),
                ("https://b.example/2", "B", 2, true, FoundIn::Both)
            ]
        );
    }

    #[test]
    fn without_a_stream_the_page_stands_alone_and_nothing_disagrees() {
        let page_citations = vec![page("https://a.example/1", "A", true)];
        let (merged, disagreement) = merge(&page_citations, &[]);
        assert_eq!(summary(&merged), vec![("https://a.example/1", "A", 1, true, FoundIn::Page)]);
        assert_eq!(disagreement, None);
    }

    #[test]
    fn findings_keep_each_query_source_and_product_once() {
        let mut findings = Findings::default();
        findings.query(" best  laptops 2026 ");
        findings.query("best laptops 2026");
        findings.query("");
        findings.source("https://a.example/1?utm_source=x", "", false);
        findings.source("https://a.example/1", "A", true);
        findings.product(Product {
            name: "Swift Go".into(),
            url: "https://shop.example/p?utm_source=chatgpt.com".into(),
            ..Product::default()
        });
        findings.product(Product { name: "Swift Go".into(), ..Product::default() });
        assert_eq!(findings.search_queries, vec!["best laptops 2026"]);
        assert_eq!(findings.sources, vec![streamed("https://a.example/1?utm_source=x", "A", true)]);
        assert_eq!(findings.clean_products()[0].url, "https://shop.example/p");
        assert_eq!(findings.products.len(), 1);
    }
}
