//! The sources chatgpt.com lists in its Sources panel beyond the ones the answer cites inline:
//! a search reads more pages than the answer ends up citing, and the panel shows them under
//! "More". Deterministic per prompt, like the answer itself.

use sha2::{Digest, Sha256};

use crate::answer::{Citation, strip_markers};

/// Where a listed-only source lives: host, path template (`{slug}`, `{Slug}`, `{n}`) and title
/// template (`{Topic}`, `{topic}`). None of these hosts is among the answer's citation hosts, so a
/// listed source never repeats a cited one.
const MORE_SITES: &[(&str, &str, &str)] = &[
    ("www.wired.com", "/story/{slug}/", "{Topic}: A Practical Guide | WIRED"),
    ("arstechnica.com", "/information-technology/2026/{n}/{slug}/", "{Topic}, explained - Ars Technica"),
    ("www.cnet.com", "/tech/{slug}/", "{Topic}: What You Need to Know - CNET"),
    ("www.consumerreports.org", "/buying-guides/{slug}/", "{Topic} Buying Guide - Consumer Reports"),
    ("www.zdnet.com", "/article/{slug}/", "The {topic} guide | ZDNET"),
    ("www.quora.com", "/What-is-{Slug}", "What is {topic}? - Quora"),
    ("www.sciencedirect.com", "/topics/{slug}", "{Topic} - an overview | ScienceDirect Topics"),
    ("www.howtogeek.com", "/{n}/{slug}/", "{Topic}: Everything You Should Know - How-To Geek"),
];

/// The sources the Sources panel lists under "More" for `prompt` (markers ignored): 2 to 4,
/// each with its `utm_source=chatgpt.com` link, in the panel's order. The answer's cited
/// sources come from [`crate::answer_for`]; an answer without a search has neither.
pub fn more_sources(prompt: &str) -> Vec<Citation> {
    let seed_text = strip_markers(prompt);
    let digest = Sha256::digest(format!("chatgpt-more-sources\n{seed_text}").as_bytes());
    let mut bytes = digest.iter().copied();
    let mut next = move || usize::from(bytes.next().unwrap_or(0));

    let topic = topic(&seed_text);
    let slug = slug(&topic);
    let count = 2 + next() % 3;
    let mut sites: Vec<&(&str, &str, &str)> = MORE_SITES.iter().collect();
    (0..count)
        .map(|_| {
            let (host, path, title) = sites.remove(next() % sites.len());
            let number = 1000 + next() * 37 + next();
            let path =
                path.replace("{slug}", &slug).replace("{Slug}", &capitalize(&slug)).replace("{n}", &number.to_string());
            let url = format!("https://{host}{path}");
            Citation {
                href: format!("{url}?utm_source=chatgpt.com"),
                url,
                title: title.replace("{Topic}", &capitalize(&topic)).replace("{topic}", &topic),
                domain: host.trim_start_matches("www.").to_owned(),
            }
        })
        .collect()
}

/// A short topic from the prompt: the first sentence, at most eight words.
pub(super) fn topic(prompt: &str) -> String {
    let first = prompt.split(['?', '!', '.', '\n']).find(|part| !part.trim().is_empty()).unwrap_or("");
    let words: Vec<&str> = first.split_whitespace().take(8).collect();
    if words.is_empty() { "this topic".to_owned() } else { words.join(" ") }
}

fn slug(topic: &str) -> String {
    let slug = topic
        .to_lowercase()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|word| !word.is_empty())
        .take(8)
        .collect::<Vec<_>>()
        .join("-");
    if slug.is_empty() { "overview".to_owned() } else { slug }
}

pub(super) fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::answer_for;

    #[test]
    fn more_sources_are_deterministic_distinct_and_never_cited() {
        for prompt in ["What are the best laptops under $1,000?", "how does TLS work", "早上好", "?"] {
            let more = more_sources(prompt);
            assert_eq!(more, more_sources(&format!("{prompt} [[slow]]")), "markers do not change them");
            assert!((2..=4).contains(&more.len()), "{prompt}");
            let cited = answer_for(prompt, true).citations;
            for source in &more {
                assert!(source.href.starts_with(&source.url) && source.href.ends_with("utm_source=chatgpt.com"));
                assert!(!cited.iter().any(|c| c.domain == source.domain), "{prompt}: {}", source.domain);
                assert_eq!(more.iter().filter(|other| other.url == source.url).count(), 1);
            }
        }
    }
}
