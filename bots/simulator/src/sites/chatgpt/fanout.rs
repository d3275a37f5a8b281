//! What chatgpt.com's answer stream says besides the text: the web searches the model ran
//! (`metadata.search_model_queries`, the query fan-out) and, for a shopping-like question, the
//! products it showed (`\u{e200}products\u{e202}{...}\u{e201}` markers in the text). Deterministic
//! per prompt, like the answer itself; markers (`[[...]]`) are ignored.

use sha2::{Digest, Sha256};

use super::sources::{capitalize, topic};
use crate::answer::strip_markers;

/// Whether `prompt` reads like shopping: it mentions "best", "buy", "cheap", "price" or a price
/// (`$`, `€`, `£`). Decided on the prompt alone, so a test knows in advance.
pub fn is_shopping(prompt: &str) -> bool {
    let text = strip_markers(prompt).to_lowercase();
    ["best", "buy", "cheap", "price"].iter().any(|word| text.contains(word)) || text.contains(['$', '€', '£'])
}

/// The searches the model runs for `prompt` when it searches at all: two or three, the first
/// being the question's first words, in the order the stream names them.
pub fn search_queries(prompt: &str) -> Vec<String> {
    let text = strip_markers(prompt);
    let first: String = text.split_whitespace().take(10).collect::<Vec<_>>().join(" ");
    let topic = topic(&text);
    let mut queries = vec![first, format!("{topic} 2026"), format!("{topic} reviews comparison")];
    if seed(&text, "queries").is_multiple_of(2) {
        queries.pop();
    }
    queries.dedup();
    queries
}

/// The products shown for a shopping-like `prompt` (none otherwise): two or three names, in the
/// order of the carousel.
pub fn products(prompt: &str) -> Vec<String> {
    if !is_shopping(prompt) {
        return Vec::new();
    }
    const BRANDS: &[&str] = &["Northwind", "Contoso", "Fabrikam", "Tailspin", "Litware", "Adatum"];
    const MODELS: &[&str] = &["Pro 14", "Air X2", "Max", "Lite 2026", "S7", "Core Plus"];
    let text = strip_markers(prompt);
    let noun = topic(&text)
        .split_whitespace()
        .filter(|word| {
            word.len() > 3
                && !["best", "what", "which", "under", "buy", "cheap"].contains(&word.to_lowercase().as_str())
        })
        .map(|word| word.trim_matches(|c: char| !c.is_alphanumeric()).to_owned())
        .find(|word| !word.is_empty())
        .unwrap_or_else(|| "Pick".to_owned());
    let mut value = seed(&text, "products");
    let count = 2 + (value % 2) as usize;
    (0..count)
        .map(|index| {
            value = value.rotate_left(13) ^ 0x9e37_79b9_7f4a_7c15;
            let brand = BRANDS[(value as usize + index) % BRANDS.len()];
            let model = MODELS[(value >> 8) as usize % MODELS.len()];
            format!("{brand} {} {model}", capitalize(&noun))
        })
        .fold(Vec::new(), |mut names, name| {
            if !names.contains(&name) {
                names.push(name);
            }
            names
        })
}

/// The private-use marker that carries `names` in the streamed text (gpt4free's
/// `products_replacer` reads this shape), with the space before it.
pub(super) fn products_marker(names: &[String]) -> String {
    let selections: Vec<serde_json::Value> = names
        .iter()
        .enumerate()
        .map(|(index, name)| serde_json::json!([format!("turn0product{index}"), name]))
        .collect();
    let body = serde_json::json!({ "selections": selections, "tags": ["top pick", "budget"] });
    format!(" \u{e200}products\u{e202}{body}\u{e201}")
}

fn seed(text: &str, what: &str) -> u64 {
    let digest = Sha256::digest(format!("chatgpt-{what}\n{text}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shopping_prompts_get_products_and_every_search_fans_out() {
        assert!(is_shopping("What are the best laptops under $1,000?"));
        assert!(is_shopping("Where to buy a kettle"));
        assert!(!is_shopping("How do heat pumps work in cold climates?"));
        let names = products("What are the best laptops under $1,000?");
        assert!((2..=3).contains(&names.len()), "{names:?}");
        assert_eq!(names, products("What are the best laptops under $1,000? [[slow]]"));
        assert!(products("How do heat pumps work?").is_empty());
        let queries = search_queries("How do heat pumps work in cold climates?");
        assert!((2..=3).contains(&queries.len()));
        assert_eq!(queries[0], "How do heat pumps work in cold climates?");
        let marker = products_marker(&names);
        assert!(marker.starts_with(" \u{e200}products\u{e202}{") && marker.ends_with("}\u{e201}"));
    }
}
