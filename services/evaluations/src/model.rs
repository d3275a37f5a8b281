//! The evaluation's lifecycle and the messages that travel over JetStream.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where an evaluation is. Stored as lowercase text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Stored; the scheduler has not queued it yet.
    Pending,
    /// On the task stream, waiting for a bot.
    Queued,
    /// A bot holds it until `claim_expires_at`.
    Claimed,
    /// A bot handed in an answer; the ingest has not stored it yet.
    Submitted,
    /// The answer is stored.
    Answered,
    /// Failed for good.
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Queued => "queued",
            Status::Claimed => "claimed",
            Status::Submitted => "submitted",
            Status::Answered => "answered",
            Status::Failed => "failed",
        }
    }

    /// Answered or failed: nothing more will happen.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Answered | Status::Failed)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Status {
    type Err = String;

    fn from_str(s: &str) -> Result<Status, String> {
        Ok(match s {
            "pending" => Status::Pending,
            "queued" => Status::Queued,
            "claimed" => Status::Claimed,
            "submitted" => Status::Submitted,
            "answered" => Status::Answered,
            "failed" => Status::Failed,
            other => return Err(format!("unknown evaluation status {other:?}")),
        })
    }
}

/// A source of an answer, cleaned: tracking parameters removed, domain and position set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Citation {
    pub url: String,
    pub title: String,
    pub domain: String,
    pub position: u32,
    /// Cited in the text or only listed; absent in rows stored before it was recorded.
    #[serde(default, skip_serializing_if = "CitationKind::is_unspecified")]
    pub kind: CitationKind,
    /// Found in the page, the response stream or both; absent when the bot did not say.
    #[serde(default, skip_serializing_if = "CitationOrigin::is_unspecified")]
    pub found_in: CitationOrigin,
}

/// Where a bot found a source (`aap.v1.CitationOrigin`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CitationOrigin {
    /// The bot did not say.
    #[default]
    Unspecified,
    /// Only in the rendered page.
    Page,
    /// Only in the assistant's response stream.
    Stream,
    /// In both.
    Both,
}

impl CitationOrigin {
    fn is_unspecified(&self) -> bool {
        *self == CitationOrigin::Unspecified
    }
}

/// A product the assistant showed with its answer (`aap.v1.Product`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Product {
    pub name: String,
    pub url: String,
    pub price: String,
    pub merchant: String,
    pub position: u32,
}

/// How an answer presented a source (`aap.v1.CitationKind`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CitationKind {
    /// The bot did not say (seed HTTP bots).
    #[default]
    Unspecified,
    /// Cited in the answer text.
    Inline,
    /// Only listed among the sources.
    Listed,
}

impl CitationKind {
    fn is_unspecified(&self) -> bool {
        *self == CitationKind::Unspecified
    }
}

/// A citation as a bot sent it, before cleaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawCitation {
    pub url: String,
    pub title: String,
    pub kind: CitationKind,
    pub found_in: CitationOrigin,
}

/// What kind of result an answer is (`aap.v1.AnswerKind`), as stored in `answers.kind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerKind {
    /// An answer with text.
    #[default]
    Text,
    /// A search without an AI Overview: a result with empty text.
    NoOverview,
}

impl AnswerKind {
    /// The `answers.kind` value.
    pub fn as_str(self) -> &'static str {
        match self {
            AnswerKind::Text => "text",
            AnswerKind::NoOverview => "no_overview",
        }
    }
}

impl FromStr for AnswerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<AnswerKind, String> {
        match s {
            "text" => Ok(AnswerKind::Text),
            "no_overview" => Ok(AnswerKind::NoOverview),
            other => Err(format!("unknown answer kind {other:?}")),
        }
    }
}

/// How a bot captured an answer (`aap.v1.Capture`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Capture {
    pub response_html: String,
    pub model: String,
    pub web_search: Option<bool>,
    pub ttft_ms: Option<i64>,
    pub total_ms: Option<i64>,
    pub adapter_version: String,
    pub adapter_fingerprint: String,
    /// The signals that together said the answer was complete.
    pub finish_signals: Vec<String>,
    /// Manifest roles not found on the page.
    pub missing_roles: Vec<String>,
    /// The text was read from the whole message, not the answer element.
    pub read_by_fallback: bool,
    /// The bot's confidence in the capture, in [0, 1]; `None` when it did not say.
    pub confidence: Option<f32>,
    /// The assistant stopped the answer at its own length limit (the text is all it showed).
    pub cut_short: bool,
    /// Another model than the plan's answered: the account had used up the plan's limit for it.
    pub model_fallback: bool,
}

/// What the task stream carries for one evaluation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskMessage {
    pub evaluation_id: i64,
    pub prompt_id: i64,
    pub assistant: String,
    pub plan: String,
}

/// What the results stream carries from Submit to the ingest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResultMessage {
    pub evaluation_id: i64,
    pub prompt_id: i64,
    pub assistant: String,
    pub plan: String,
    pub response_text: String,
    pub response_markdown: String,
    pub citations: Vec<Citation>,
    pub captured_at: DateTime<Utc>,
    pub bot_id: String,
    pub lease_id: String,
    #[serde(default)]
    pub trace_context: HashMap<String, String>,
    #[serde(default)]
    pub kind: AnswerKind,
    #[serde(default)]
    pub capture: Capture,
    /// The web searches the assistant ran, in order.
    #[serde(default)]
    pub search_queries: Vec<String>,
    /// Products shown with the answer, in order.
    #[serde(default)]
    pub products: Vec<Product>,
    /// The hex SHA-256 of the submit that carried this answer
    /// ([`crate::gateway::submission_digest`]), which its evaluation recorded when it was marked
    /// submitted. The ingest stores the answer only while the evaluation holds this digest (or
    /// none): a result whose submit was told it failed, and then another answer was taken, is
    /// not stored over the one taken. Empty from a producer that sends none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub digest: String,
}

impl ResultMessage {
    /// [`ResultMessage::digest`] as bytes, `None` when the message carries none (or something
    /// that is no SHA-256 in hex, which is then not compared).
    pub fn digest_bytes(&self) -> Option<Vec<u8>> {
        hex::decode(&self.digest).ok().filter(|bytes| bytes.len() == 32)
    }
}

/// `raw` cleaned as a link shown to customers (redirects unwrapped, tracking stripped), or
/// `None` when it is none: no absolute http or https address (blank, `javascript:`, `sandbox:`,
/// words), or an assistant's own page (a chatgpt.com conversation, a google.com search).
fn outside_link(raw: &str) -> Option<String> {
    aap_proto::urls::check_web_url(raw).ok()?;
    Some(aap_proto::urls::clean_url(raw)).filter(|url| !aap_proto::urls::is_assistant_page(url))
}

/// Cleans the citations a bot sent with the contract's rule (`aap_proto::urls`): drops those
/// whose url is no absolute http or https address (blank, `javascript:`, `sandbox:`, words) and
/// the assistants' own pages (a chatgpt.com conversation, a google.com search are never
/// sources), unwraps redirects, strips tracking parameters, fills the domain and renumbers
/// positions in the given order.
pub fn clean_citations(raw: impl IntoIterator<Item = RawCitation>) -> Vec<Citation> {
    raw.into_iter()
        .filter_map(|c| outside_link(&c.url).map(|url| (url, c)))
        .enumerate()
        .map(|(i, (url, c))| {
            let domain = aap_proto::urls::domain_of(&url);
            Citation {
                url,
                title: c.title.trim().to_owned(),
                domain,
                position: i as u32 + 1,
                kind: c.kind,
                found_in: c.found_in,
            }
        })
        .collect()
}

/// Cleans the products a bot sent: blank names dropped, urls cleaned like citations (an
/// assistant's own page is no product link), text trimmed, positions renumbered in order.
pub fn clean_products(raw: impl IntoIterator<Item = Product>) -> Vec<Product> {
    raw.into_iter()
        .filter(|p| !p.name.trim().is_empty())
        .enumerate()
        .map(|(i, p)| {
            Product {
                name: p.name.trim().to_owned(),
                // A product keeps its name without a link that is none (words, `javascript:`).
                url: outside_link(&p.url).unwrap_or_default(),
                price: p.price.trim().to_owned(),
                merchant: p.merchant.trim().to_owned(),
                position: i as u32 + 1,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn citations_lose_tracking_parameters_and_gain_domain_and_position() {
        let raw = |url: &str, title: &str, kind| RawCitation {
            url: url.into(),
            title: title.into(),
            kind,
            found_in: CitationOrigin::Unspecified,
        };
        let cleaned = clean_citations([
            raw("https://www.techradar.com/best/laptops?utm_source=chatgpt.com", " TechRadar ", CitationKind::Inline),
            raw("https://example.com/a?id=3&utm_medium=x&fbclid=1", "Ex", CitationKind::Listed),
            raw("   ", "blank", CitationKind::Inline),
            raw("not a url", "odd", CitationKind::Unspecified),
        ]);
        // The blank url and the words are no links: dropped.
        assert_eq!(cleaned.len(), 2);
        assert_eq!(cleaned[0].url, "https://www.techradar.com/best/laptops");
        assert_eq!(cleaned[0].domain, "techradar.com");
        assert_eq!(cleaned[0].title, "TechRadar");
        assert_eq!(cleaned[1].url, "https://example.com/a?id=3");
        assert_eq!(cleaned[1].position, 2);
        assert_eq!((cleaned[0].kind, cleaned[1].kind), (CitationKind::Inline, CitationKind::Listed));
    }

    #[test]
    fn the_assistants_own_pages_are_never_sources_and_positions_close_up() {
        let raw = |url: &str| RawCitation {
            url: url.into(),
            title: String::new(),
            kind: CitationKind::Inline,
            found_in: CitationOrigin::Both,
        };
        let cleaned = clean_citations([
            raw("https://www.perplexity.ai/search/best-laptops-abc"),
            raw("https://example.com/a?utm_source=perplexity"),
            raw("https://chatgpt.com/c/123"),
            raw("https://www.google.com/search?q=laptops"),
            raw("https://claude.ai/chat/1"),
            raw("https://rtings.com/b"),
        ]);
        let got: Vec<(&str, u32, CitationOrigin)> =
            cleaned.iter().map(|c| (c.url.as_str(), c.position, c.found_in)).collect();
        assert_eq!(
            got,
            vec![("https://example.com/a", 1, CitationOrigin::Both), ("https://rtings.com/b", 2, CitationOrigin::Both)]
        );
    }

    #[test]
    fn products_are_trimmed_cleaned_and_renumbered() {
        let product = |name: &str, url: &str| Product {
            name: name.into(),
            url: url.into(),
            price: " $749.99 ".into(),
            merchant: "Best Buy ".into(),
            position: 9,
        };
        let cleaned = clean_products([
            product(" Acer Swift Go 14 ", "https://shop.example/p?id=1&utm_source=chatgpt.com"),
            product("  ", "https://shop.example/q"),
            product("Dell XPS 13", "https://chatgpt.com/c/1"),
            product("HP Spectre", "javascript:alert(1)"),
            product("Lenovo Yoga", "see the shop"),
            product("Asus Zenbook", "//shop.example/z"),
        ]);
        assert_eq!(cleaned.len(), 5);
        // Kept with their names, without a link that is no web address.
        let links: Vec<(&str, &str)> = cleaned[2..].iter().map(|p| (p.name.as_str(), p.url.as_str())).collect();
        assert_eq!(links, [("HP Spectre", ""), ("Lenovo Yoga", ""), ("Asus Zenbook", "https://shop.example/z")]);
        assert_eq!(
            (cleaned[0].name.as_str(), cleaned[0].url.as_str(), cleaned[0].price.as_str(), cleaned[0].position),
            ("Acer Swift Go 14", "https://shop.example/p?id=1", "$749.99", 1)
        );
        assert_eq!((cleaned[1].url.as_str(), cleaned[1].merchant.as_str(), cleaned[1].position), ("", "Best Buy", 2));
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for s in [Status::Pending, Status::Queued, Status::Claimed, Status::Submitted, Status::Answered, Status::Failed]
        {
            assert_eq!(s.as_str().parse::<Status>(), Ok(s));
        }
        assert!("done".parse::<Status>().is_err());
    }
}
