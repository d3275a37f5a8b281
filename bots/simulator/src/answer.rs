//! Deterministic answers: the same prompt always yields the same text, markdown and citations.
//!
//! The generator is seeded by a SHA-256 of the prompt (markers removed, white space collapsed),
//! fed into a local SplitMix64 so the output never changes with a `rand` upgrade.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Per-prompt markers the simulator understands, written anywhere in the prompt text.
pub const MARKER_NO_CITATIONS: &str = "[[no-citations]]";
/// Marker: answer with the rate-limit error instead of an answer.
pub const MARKER_RATE_LIMIT: &str = "[[rate-limit]]";
/// Marker: multiply every delay by `SimulatorConfig::slow_factor`.
pub const MARKER_SLOW: &str = "[[slow]]";
/// Marker: start answering, then fail mid-stream with the generic error.
pub const MARKER_ERROR: &str = "[[error]]";
/// Marker: revoke the asking session; the page falls back to the login wall.
pub const MARKER_EXPIRE_SESSION: &str = "[[expire-session]]";

/// Marker: the site answers with its bot challenge (Cloudflare "Just a moment...").
pub const MARKER_CHALLENGE: &str = "[[challenge]]";
/// Marker: the answer stops a third of the way and never completes (`SimulatorConfig::stall_ms`).
pub const MARKER_STALL: &str = "[[stall]]";
/// Marker: a reasoning model thinks (a visible "Thinking" phase with a pause) before answering.
pub const MARKER_THINKING: &str = "[[thinking]]";
/// Marker: ChatGPT shows two responses and asks "Which response do you prefer?".
pub const MARKER_AB_TEST: &str = "[[ab-test]]";
/// Marker: Google shows search results without an AI Overview.
pub const MARKER_NO_OVERVIEW: &str = "[[no-overview]]";
/// Marker: the answer finishes normally but carries no text at all (the turn completes, its
/// finish signals show, the answer block stays empty), as the real sites occasionally do.
pub const MARKER_EMPTY: &str = "[[empty]]";
/// Marker: the answer's metadata runs past the platform's bounds, as a real site's may
/// (Perplexity: its response stream carries 70 products, the first with a name, a link, a price
/// and a merchant each longer than the platform takes, control characters in them); what a bot
/// must fit before it submits, or the whole answer is refused.
pub const MARKER_OVERSIZED: &str = "[[oversized]]";
/// Marker: the chat sites refuse the prompt for its length, whatever its length, with their own
/// error (ChatGPT's 413 "The message you submitted was too long...", Claude's "Your message will
/// exceed the length limit for this chat..."); Perplexity and Google answer as usual.
pub const MARKER_TOO_LONG: &str = "[[too-long]]";
/// Marker: the chat sites stop the answer at their length limit, two thirds of the way: Claude's
/// stream ends with `stop_reason` `max_tokens` and its page shows "This response paused because
/// Claude reached its max length for a message..." with a Continue button; ChatGPT's finishes
/// with `finish_details` of type `max_tokens`. Perplexity and Google answer as usual.
pub const MARKER_CUT_SHORT: &str = "[[cut-short]]";
/// Marker: Claude declines the prompt under its usage policy a third of the way: its stream ends
/// with `stop_reason` `refusal`, its page takes the words back and says it is "unable to respond
/// to this request, which appears to violate our Usage Policy". The other sites answer as usual.
pub const MARKER_REFUSAL: &str = "[[refusal]]";
/// Marker: ChatGPT answers with another model (`gpt-5-mini`) than the plan's (`gpt-5`), the
/// account's limit for it used up: the answer's `model_slug` is the other model, the stream's
/// `conversation_detail_metadata` lists the plan's model in `model_limits` with its
/// `resets_after` (5 hours on, on a round ten minutes), and the page shows "You've hit the Free
/// plan limit for GPT-5. Responses will use another model until your limit resets after
/// 9:40 PM." above the composer. The other sites answer as usual.
pub const MARKER_MODEL_FALLBACK: &str = "[[model-fallback]]";
/// Marker: Claude and ChatGPT write a document beside the answer, as claude.ai and chatgpt.com
/// do for a guide or a report, edited once ("Status: draft" becomes "Status: checked") before
/// the text. Claude's stream creates a file under `/mnt/user-data/outputs/` (`create_file`),
/// edits it (`str_replace`) and presents it (`present_files`), and its page shows the file's card
/// in the message, the text in neither the message nor the page; ChatGPT's stream writes a canvas
/// (`canmore.create_textdoc`, `canmore.update_textdoc`) and its page shows the canvas card, the
/// guide rendered in it, above the message. With `[[empty]]` the document is the whole answer.
/// The other sites answer as usual. The document is [`document_for`].
pub const MARKER_DOCUMENT: &str = "[[document]]";

/// Marker: an onboarding / upsell dialog opens over the page while the answer streams (the page
/// itself sees it in the composer on send, as it does every interruption marker).
pub const MARKER_MODAL: &str = "[[modal]]";
/// Marker: a cookie / notice banner covers the bottom of the page while the answer streams.
pub const MARKER_BANNER: &str = "[[banner]]";
/// Marker: the page calls `alert()` while the answer streams.
pub const MARKER_ALERT: &str = "[[alert]]";
/// Marker: the page calls `confirm()` while the answer streams.
pub const MARKER_CONFIRM: &str = "[[confirm]]";
/// Marker: leaving the page after this prompt asks "Leave site?" (`beforeunload`).
pub const MARKER_BEFOREUNLOAD: &str = "[[beforeunload]]";
/// Marker: the page opens a new tab that takes the focus as the prompt is sent.
pub const MARKER_NEW_WINDOW: &str = "[[new-window]]";
/// Marker: the dialog and the banner of this prompt cannot be closed.
pub const MARKER_STICKY: &str = "[[sticky]]";

/// The interruption markers, which only the page script reads (see `interrupt.js`).
pub const INTERRUPTION_MARKERS: [&str; 7] =
    [MARKER_MODAL, MARKER_BANNER, MARKER_ALERT, MARKER_CONFIRM, MARKER_BEFOREUNLOAD, MARKER_NEW_WINDOW, MARKER_STICKY];

const ALL_MARKERS: [&str; 17] = [
    MARKER_NO_CITATIONS,
    MARKER_RATE_LIMIT,
    MARKER_SLOW,
    MARKER_ERROR,
    MARKER_EXPIRE_SESSION,
    MARKER_CHALLENGE,
    MARKER_STALL,
    MARKER_THINKING,
    MARKER_AB_TEST,
    MARKER_NO_OVERVIEW,
    MARKER_EMPTY,
    MARKER_OVERSIZED,
    MARKER_TOO_LONG,
    MARKER_CUT_SHORT,
    MARKER_REFUSAL,
    MARKER_MODEL_FALLBACK,
    MARKER_DOCUMENT,
];

/// Private-use characters chatgpt.com streams around an inline citation
/// (`\u{e200}cite\u{e202}turn0search3\u{e201}`); the page swaps them for pills.
const CITE_OPEN: char = '\u{e200}';
const CITE_SEP: char = '\u{e202}';
const CITE_CLOSE: char = '\u{e201}';

/// The failure markers found in one prompt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PromptFlags {
    /// `[[no-citations]]`
    pub no_citations: bool,
    /// `[[rate-limit]]`
    pub rate_limit: bool,
    /// `[[slow]]`
    pub slow: bool,
    /// `[[error]]`
    pub error: bool,
    /// `[[expire-session]]`
    pub expire_session: bool,
    /// `[[challenge]]`
    pub challenge: bool,
    /// `[[stall]]`
    pub stall: bool,
    /// `[[thinking]]`
    pub thinking: bool,
    /// `[[ab-test]]`
    pub ab_test: bool,
    /// `[[no-overview]]`
    pub no_overview: bool,
    /// `[[empty]]`
    pub empty: bool,
    /// `[[too-long]]`
    pub too_long: bool,
    /// `[[cut-short]]`
    pub cut_short: bool,
    /// `[[refusal]]`
    pub refusal: bool,
    /// `[[model-fallback]]`
    pub model_fallback: bool,
    /// `[[document]]`
    pub document: bool,
}

impl PromptFlags {
    /// Reads the markers out of a prompt.
    pub fn parse(prompt: &str) -> Self {
        Self {
            no_citations: prompt.contains(MARKER_NO_CITATIONS),
            rate_limit: prompt.contains(MARKER_RATE_LIMIT),
            slow: prompt.contains(MARKER_SLOW),
            error: prompt.contains(MARKER_ERROR),
            expire_session: prompt.contains(MARKER_EXPIRE_SESSION),
            challenge: prompt.contains(MARKER_CHALLENGE),
            stall: prompt.contains(MARKER_STALL),
            thinking: prompt.contains(MARKER_THINKING),
            ab_test: prompt.contains(MARKER_AB_TEST),
            no_overview: prompt.contains(MARKER_NO_OVERVIEW),
            empty: prompt.contains(MARKER_EMPTY),
            too_long: prompt.contains(MARKER_TOO_LONG),
            cut_short: prompt.contains(MARKER_CUT_SHORT),
            refusal: prompt.contains(MARKER_REFUSAL),
            model_fallback: prompt.contains(MARKER_MODEL_FALLBACK),
            document: prompt.contains(MARKER_DOCUMENT),
        }
    }
}

/// The document Claude (or ChatGPT) writes beside its answer for `prompt` (`[[document]]`): its path under
/// `/mnt/user-data/outputs/` and its markdown as first written (the line "Status: draft", which
/// an edit turns into "Status: checked"; [`DOCUMENT_EDIT`]).
pub fn document_for(prompt: &str) -> (String, String) {
    let question = strip_markers(prompt);
    let answer = answer_for(prompt, true);
    let picks: String =
        answer.citations.iter().map(|c| format!("- **{}**: see [{}]({})\n", c.title, c.domain, c.url)).collect();
    let markdown = format!(
        "# A buyer's guide: {question}\n\nStatus: draft\n\n\
         This guide weighs what reviewers agree on and where they differ.\n\n## Picks\n\n{picks}\n\
         | What | Why |\n|------|-----|\n| Range | The first thing *owners* regret |\n"
    );
    (format!("/mnt/user-data/outputs/{}.md", slug_of(&question)), markdown)
}

/// The one edit made to the document (Claude's `str_replace`, ChatGPT's canvas update whose
/// pattern matches only itself): `(old, new)`.
pub const DOCUMENT_EDIT: (&str, &str) = ("Status: draft", "Status: checked");

/// Collapses white space runs to one space and trims: the key under which stats count a prompt.
pub fn normalize_prompt(prompt: &str) -> String {
    prompt.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The prompt without any simulator marker, normalised: what seeds the answer.
pub fn strip_markers(prompt: &str) -> String {
    let mut text = prompt.to_owned();
    for marker in ALL_MARKERS.iter().chain(&INTERRUPTION_MARKERS) {
        text = text.replace(marker, " ");
    }
    normalize_prompt(&text)
}

/// One source the answer cites, as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Citation {
    /// Canonical URL of the source, without tracking parameters.
    pub url: String,
    /// The pill's `href`: `url` plus `utm_source=chatgpt.com`, as chatgpt.com links it.
    pub href: String,
    /// Page title shown in the Sources panel.
    pub title: String,
    /// Host without `www.`: the text of the inline pill.
    pub domain: String,
}

/// A generated answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Answer {
    /// The answer as markdown (headings, lists, bold) with citations left out.
    pub markdown: String,
    /// Sources in order of first appearance; empty when citations are off.
    pub citations: Vec<Citation>,
    /// What the server streams: `markdown` with the private-use citation markers inline.
    #[serde(skip)]
    pub(crate) stream_text: String,
}

impl Answer {
    /// An answer without a word and without sources: what an `[[empty]]` turn streams.
    pub(crate) fn empty() -> Answer {
        Answer { markdown: String::new(), citations: Vec::new(), stream_text: String::new() }
    }

    /// The answer as plain text: markdown syntax removed, one line per block, citations left out.
    /// Close to what `innerText` of `div.markdown` gives once the pills are removed.
    pub fn plain_text(&self) -> String {
        self.markdown
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| {
                let line = line.trim_start_matches('#').trim_start();
                let line = line.strip_prefix("- ").unwrap_or(line);
                line.replace("**", "")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The text the server streams, split into the chunks it sends (each ends at a word boundary,
    /// so a citation marker is never cut in two).
    pub(crate) fn chunks(&self, words_per_chunk: usize) -> Vec<String> {
        let words_per_chunk = words_per_chunk.max(1);
        let mut chunks = Vec::new();
        let mut current = String::new();
        let mut words = 0;
        for piece in self.stream_text.split_inclusive(char::is_whitespace) {
            current.push_str(piece);
            if piece.trim().is_empty() {
                continue;
            }
            words += 1;
            if words == words_per_chunk {
                chunks.push(std::mem::take(&mut current));
                words = 0;
            }
        }
        if !current.is_empty() {
            chunks.push(current);
        }
        chunks
    }
}

/// SplitMix64: tiny, stable across crate upgrades, good enough to pick words.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        (self.next() % n as u64) as usize
    }

    fn range(&mut self, low: usize, high_inclusive: usize) -> usize {
        low + self.below(high_inclusive - low + 1)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Where a source lives: the host and a URL path template (`{slug}`, `{Slug}`, `{n}`, `{id}`).
struct SourceSite {
    host: &'static str,
    path: &'static str,
    title: &'static str,
}

const SITES: &[SourceSite] = &[
    SourceSite { host: "en.wikipedia.org", path: "/wiki/{Slug}", title: "{Topic} - Wikipedia" },
    SourceSite {
        host: "www.nytimes.com",
        path: "/2026/{m}/{d}/technology/{slug}.html",
        title: "What to Know About {Topic} - The New York Times",
    },
    SourceSite {
        host: "www.reddit.com",
        path: "/r/explainlikeimfive/comments/{id}/{slug}/",
        title: "ELI5: {Topic} : r/explainlikeimfive",
    },
    SourceSite {
        host: "www.theverge.com",
        path: "/{n}/{slug}",
        title: "{Topic}: everything you need to know | The Verge",
    },
    SourceSite {
        host: "www.investopedia.com",
        path: "/terms/{c}/{slug}.asp",
        title: "{Topic}: Definition, How It Works, and Examples",
    },
    SourceSite { host: "www.healthline.com", path: "/health/{slug}", title: "{Topic}: Overview, Benefits, and Risks" },
    SourceSite { host: "www.pcmag.com", path: "/picks/the-best-{slug}", title: "The Best {Topic} for 2026 | PCMag" },
    SourceSite {
        host: "www.reuters.com",
        path: "/technology/{slug}-2026-{m}-{d}/",
        title: "{Topic} draws new scrutiny | Reuters",
    },
    SourceSite {
        host: "www.britannica.com",
        path: "/topic/{slug}",
        title: "{Topic} | Definition, History, & Facts | Britannica",
    },
    SourceSite { host: "stackoverflow.com", path: "/questions/{n}/{slug}", title: "{Topic} - Stack Overflow" },
    SourceSite {
        host: "www.techradar.com",
        path: "/best/{slug}",
        title: "The best {topic} in 2026: tested and rated | TechRadar",
    },
    SourceSite { host: "www.youtube.com", path: "/watch?v={id}", title: "{Topic} Explained in 8 Minutes - YouTube" },
    SourceSite {
        host: "www.nerdwallet.com",
        path: "/article/finance/{slug}",
        title: "{Topic}: What It Is and How to Choose - NerdWallet",
    },
    SourceSite { host: "www.bbc.com", path: "/news/articles/c{id}o", title: "{Topic}: what we know so far - BBC News" },
    SourceSite {
        host: "developer.mozilla.org",
        path: "/en-US/docs/Glossary/{Slug}",
        title: "{Topic} - Glossary | MDN",
    },
    SourceSite {
        host: "www.forbes.com",
        path: "/advisor/business/{slug}/",
        title: "{Topic} (2026 Guide) – Forbes Advisor",
    },
    SourceSite {
        host: "www.mayoclinic.org",
        path: "/healthy-lifestyle/{slug}/art-20{n}",
        title: "{Topic} - Mayo Clinic",
    },
    SourceSite {
        host: "www.tomsguide.com",
        path: "/best-picks/best-{slug}",
        title: "Best {topic} 2026: expert tested | Tom's Guide",
    },
    SourceSite { host: "github.com", path: "/topics/{slug}", title: "{topic} · GitHub Topics" },
    SourceSite {
        host: "www.rtings.com",
        path: "/reviews/best/{slug}?sort=score",
        title: "The 6 Best {Topic} of 2026 - RTINGS.com",
    },
];

const OPENERS: &[&str] = &[
    "Here's a clear overview of **{topic}**.",
    "Great question — **{topic}** comes up a lot, so here is the short version.",
    "Below is a practical rundown of **{topic}**.",
    "In short, **{topic}** depends on a few factors worth weighing together.",
];

const CONTEXT: &[&str] = &[
    "Most recent guides agree on the fundamentals, even if they differ on the details.",
    "The landscape has shifted over the past year, so newer sources carry more weight.",
    "Experts tend to frame it around cost, reliability and long-term value.",
    "The details matter, but a handful of points cover most situations.",
];

const HEADINGS: &[&str] = &["Key points", "What to consider", "The essentials", "How it breaks down"];

const TERMS: &[&str] = &[
    "Cost",
    "Performance",
    "Reliability",
    "Availability",
    "Support",
    "Safety",
    "Ease of use",
    "Longevity",
    "Compatibility",
    "Trade-offs",
    "Popularity",
    "Evidence",
];

const CLAIMS: &[&str] = &[
    "prices vary widely, and the mid-range usually offers the best balance",
    "independent testing shows clear differences between the leading options",
    "long-term reliability is where cheaper choices most often fall short",
    "availability differs by region, so check local options first",
    "good documentation and support save time when something goes wrong",
    "reviewers consistently rank it highly for everyday use",
    "the newest options improve on efficiency more than on raw features",
    "it pays to compare at least two or three alternatives side by side",
    "user reports and expert reviews mostly point in the same direction",
    "small differences in the specification rarely matter in practice",
];

const CLOSINGS: &[&str] = &[
    "If you share your budget and priorities, I can narrow this down to one or two options.",
    "Overall, start from your main constraint and let it rule out most of the field.",
    "Want a comparison table of the top choices next?",
    "In practice, any of the well-reviewed options will serve most people well.",
];

/// Builds the answer for a prompt. Pure: the same prompt (markers aside) gives the same answer,
/// and `citations == false` gives the same prose with no sources.
pub fn answer_for(prompt: &str, citations: bool) -> Answer {
    let seed_text = strip_markers(prompt);
    let digest = Sha256::digest(seed_text.as_bytes());
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest[..8]);
    let mut rng = Rng(u64::from_le_bytes(seed));

    let topic = topic_of(&seed_text);
    let slug = slug_of(&topic);
    let sources = pick_sources(&mut rng, &topic, &slug);

    // The prose is drawn first and independently of whether citations are shown, so that
    // `[[no-citations]]` changes only the pills, never the words.
    let opener = rng.pick(OPENERS).replace("{topic}", &topic);
    let context = rng.pick(CONTEXT);
    let heading = rng.pick(HEADINGS);
    let bullet_count = rng.range(3, 5);
    let mut terms: Vec<&str> = TERMS.to_vec();
    let mut claims: Vec<&str> = CLAIMS.to_vec();
    let bullets: Vec<(String, String)> = (0..bullet_count)
        .map(|_| {
            let term = terms.remove(rng.below(terms.len()));
            let claim = claims.remove(rng.below(claims.len()));
            (term.to_owned(), capitalize(claim))
        })
        .collect();
    let closing = rng.pick(CLOSINGS);

    // Sentences that carry a citation, in reading order: context, each bullet, closing.
    let slots = 2 + bullets.len();
    let mut cite_at: Vec<Option<usize>> = vec![None; slots];
    if citations {
        for (index, slot) in spread(sources.len(), slots).into_iter().enumerate() {
            cite_at[slot] = Some(index);
        }
    }

    let mut markdown = String::new();
    let mut stream_text = String::new();
    let mut push = |text: &str, cite: Option<usize>| {
        markdown.push_str(text);
        stream_text.push_str(text);
        if let Some(index) = cite {
            stream_text.push(' ');
            stream_text.push_str(&marker(index));
        }
    };
    push(&format!("{opener} {context}"), cite_at[0]);
    push(&format!("\n\n### {heading}\n\n"), None);
    for (i, (term, claim)) in bullets.iter().enumerate() {
        push(&format!("- **{term}:** {claim}."), cite_at[1 + i]);
        push("\n", None);
    }
    push("\n", None);
    push(closing, cite_at[slots - 1]);

    Answer { markdown, citations: if citations { sources } else { Vec::new() }, stream_text }
}

/// The inline marker for the `index`-th source.
pub(crate) fn marker(index: usize) -> String {
    format!("{CITE_OPEN}cite{CITE_SEP}turn0search{index}{CITE_CLOSE}")
}

/// Spreads `count` citations over `slots` sentences, keeping them in order.
fn spread(count: usize, slots: usize) -> Vec<usize> {
    debug_assert!(count <= slots);
    (0..count).map(|i| i * slots / count.max(1)).collect()
}

fn pick_sources(rng: &mut Rng, topic: &str, slug: &str) -> Vec<Citation> {
    let count = rng.range(2, 5);
    let mut sites: Vec<&SourceSite> = SITES.iter().collect();
    (0..count)
        .map(|_| {
            let site = sites.remove(rng.below(sites.len()));
            let path = site
                .path
                .replace("{slug}", slug)
                .replace("{Slug}", &title_slug(topic))
                .replace("{n}", &format!("{}", 100_000 + rng.below(900_000)))
                .replace("{id}", &base36(rng.next(), 10))
                .replace("{m}", &format!("{:02}", 1 + rng.below(12)))
                .replace("{d}", &format!("{:02}", 1 + rng.below(28)))
                .replace("{c}", &slug.chars().next().unwrap_or('x').to_string());
            let url = format!("https://{}{}", site.host, path);
            let separator = if url.contains('?') { '&' } else { '?' };
            Citation {
                href: format!("{url}{separator}utm_source=chatgpt.com"),
                url,
                title: site.title.replace("{Topic}", &capitalize(topic)).replace("{topic}", topic),
                domain: site.host.trim_start_matches("www.").to_owned(),
            }
        })
        .collect()
}

/// A short topic phrase from the prompt: first sentence, no question mark, no markdown syntax.
fn topic_of(prompt: &str) -> String {
    let cleaned: String = prompt
        .chars()
        .map(|c| if matches!(c, '*' | '#' | '`' | '[' | ']' | '_' | '<' | '>') { ' ' } else { c })
        .collect();
    let cleaned = normalize_prompt(&cleaned);
    let first = cleaned.split(['?', '!', '.']).find(|part| !part.trim().is_empty()).unwrap_or("");
    let first = strip_question_words(first.trim());
    let words: Vec<&str> = first.split_whitespace().take(12).collect();
    let topic = words.join(" ");
    if topic.is_empty() { "your question".to_owned() } else { topic }
}

/// Question openers dropped from the topic, longest first, so "What are the best laptops"
/// reads as "best laptops".
const QUESTION_WORDS: &[&str] = &[
    "can you tell me about",
    "can you explain",
    "please explain",
    "tell me about",
    "what are the",
    "what is the",
    "what's the",
    "which are the",
    "which is the",
    "how can i",
    "how do you",
    "how do i",
    "what are",
    "what is",
    "what's",
    "how does",
    "how do",
    "how to",
    "why does",
    "why do",
    "why is",
    "why are",
    "can you",
    "could you",
    "explain",
    "give me",
    "which",
];

fn strip_question_words(text: &str) -> &str {
    for prefix in QUESTION_WORDS {
        let n = prefix.len();
        let head_matches = text.get(..n).is_some_and(|head| head.eq_ignore_ascii_case(prefix));
        let at_word_end = text.get(n..).is_some_and(|rest| rest.starts_with(' '));
        if head_matches && at_word_end {
            return text[n..].trim_start();
        }
    }
    text
}

fn slug_of(topic: &str) -> String {
    let slug = topic
        .to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .take(8)
        .collect::<Vec<_>>()
        .join("-");
    if slug.is_empty() { "overview".to_owned() } else { slug }
}

fn title_slug(topic: &str) -> String {
    let slug = slug_of(topic).replace('-', "_");
    capitalize(&slug)
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn base36(mut value: u64, len: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..len)
        .map(|_| {
            let digit = DIGITS[(value % 36) as usize] as char;
            value /= 36;
            digit
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_prompt_gives_same_answer_and_markers_do_not_change_the_prose() {
        let a = answer_for("What are the best laptops under $1,000?", true);
        let b = answer_for("What are the best laptops   under $1,000? [[slow]]", true);
        assert_eq!(a, b);
        let c = answer_for("What are the best laptops under $1,000?", false);
        assert_eq!(a.markdown, c.markdown);
        assert!(c.citations.is_empty());
        assert_ne!(a, answer_for("What are the best laptops under $500?", true));
    }

    #[test]
    fn every_citation_is_used_once_in_order_with_utm_source() {
        for prompt in ["best running shoes", "how does TLS work", "早上好", "?", "x"] {
            let answer = answer_for(prompt, true);
            assert!((2..=5).contains(&answer.citations.len()), "{prompt}");
            let mut last = 0;
            for (index, citation) in answer.citations.iter().enumerate() {
                let position = answer.stream_text.find(&marker(index)).expect("marker present");
                assert!(position >= last);
                last = position;
                assert!(citation.href.starts_with(&citation.url));
                assert!(citation.href.ends_with("utm_source=chatgpt.com"));
                assert!(citation.url.starts_with("https://"));
                assert!(!citation.domain.starts_with("www."));
            }
        }
    }

    #[test]
    fn chunks_rebuild_the_stream_and_never_split_a_marker() {
        let answer = answer_for("compare electric cars", true);
        let chunks = answer.chunks(3);
        assert!(chunks.len() > 10);
        assert_eq!(chunks.concat(), answer.stream_text);
        for chunk in &chunks {
            assert_eq!(chunk.matches(CITE_OPEN).count(), chunk.matches(CITE_CLOSE).count());
        }
    }

    #[test]
    fn plain_text_drops_markdown_syntax() {
        let answer = answer_for("compare electric cars", true);
        let text = answer.plain_text();
        assert!(!text.contains("**"));
        assert!(!text.contains("###"));
        assert!(!text.contains(CITE_OPEN));
        assert!(text.lines().count() >= 5);
    }

    #[test]
    fn flags_are_read_from_markers() {
        let flags = PromptFlags::parse("hello [[rate-limit]] [[no-citations]]");
        assert!(flags.rate_limit && flags.no_citations);
        assert!(!flags.slow && !flags.error && !flags.expire_session && !flags.empty);
        assert!(PromptFlags::parse("hello [[empty]]").empty);
        assert_eq!(strip_markers(" a  [[error]]\nb "), "a b");
        assert_eq!(strip_markers("a [[modal]] [[new-window]]b"), "a b");
        assert_eq!(answer_for("hello [[empty]]", true), answer_for("hello", true), "the marker never seeds the answer");
        let empty = Answer::empty();
        assert!(empty.plain_text().is_empty() && empty.citations.is_empty() && empty.chunks(3).is_empty());
        assert_eq!(topic_of("What are the best laptops under $1,000?"), "best laptops under $1,000");
        assert_eq!(topic_of("how to"), "how to");
    }
}
