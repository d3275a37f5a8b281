//! ChatGPT's canvas: the documents an answer writes beside its text, replayed from the answer
//! stream.
//!
//! chatgpt.com writes a long piece (a guide, a report, a post, a code file) into a "canvas" next
//! to the conversation with its `canmore` tool: the assistant addresses a message to
//! `canmore.create_textdoc` whose code content is a JSON string `{"name", "type", "content"}`
//! (`type` is `document` or `code/<language>`), and rewrites or edits it by addressing one to
//! `canmore.update_textdoc`: `{"updates": [{"pattern", "multiple", "replacement"}]}`, where each
//! pattern is a Python regular expression used with `re.finditer` and each replacement a
//! template for `re.Match.expand` (ChatGPT's published tool instructions, 2024–2026; a 2026
//! conversation exporter replays the same calls with a dot-all regex, `.*` being the usual whole
//! rewrite). The tool's reply message carries `metadata.canvas` (`textdoc_id`, `title`,
//! `textdoc_type`, `is_failure`). The chat shows only the canvas's card
//! (`div[id^="textdoc-message-"]`) and a line or two, or nothing.

use regex::{Captures, Regex, RegexBuilder};
use serde_json::Value;

use super::stream::Document;

/// The tool functions that write a canvas.
pub(super) const CREATE: &str = "canmore.create_textdoc";
pub(super) const UPDATE: &str = "canmore.update_textdoc";

/// A message of the answer's turn as far as the canvas goes.
#[derive(Debug, Default, Clone)]
pub(super) struct Call<'a> {
    /// `assistant` or `tool`.
    pub role: &'a str,
    /// Whom an assistant message addresses (`recipient`), or which tool replies (`author.name`).
    pub function: &'a str,
    /// The call's arguments (a code message's `content.text`).
    pub arguments: &'a str,
    /// The tool reply's `metadata.canvas`.
    pub canvas: Option<&'a Value>,
}

/// The canvases a turn wrote, as last edited.
#[derive(Debug, Default)]
pub(super) struct Canvases {
    /// Each canvas as the tool holds it, in the order first written.
    written: Vec<Written>,
    /// Edits that could not be replayed (a pattern Rust's regex cannot read, no match, no
    /// canvas to edit): the document read may not be the one the page shows.
    pub missed: usize,
}

/// One canvas: its id once the tool's reply names it, its title, its language for a code canvas,
/// and its text as the tool holds it (the updates' patterns apply to that, not to markdown).
#[derive(Debug)]
struct Written {
    id: Option<String>,
    title: String,
    language: Option<String>,
    text: String,
}

impl Canvases {
    /// Replays the turn's calls in order. A call the tool's reply (the next tool message of the
    /// same function) marks `is_failure` changed nothing.
    pub fn replay(calls: &[Call<'_>]) -> Canvases {
        let mut canvases = Canvases::default();
        for (at, call) in calls.iter().enumerate() {
            if call.role != "assistant" || !matches!(call.function, CREATE | UPDATE) {
                continue;
            }
            let reply = calls[at + 1..]
                .iter()
                .find(|next| next.role == "tool" && next.function == call.function)
                .and_then(|next| next.canvas);
            if reply.is_some_and(|canvas| canvas["is_failure"] == Value::Bool(true)) {
                continue;
            }
            let id = reply.and_then(|canvas| canvas["textdoc_id"].as_str()).map(str::to_owned);
            let Ok(arguments) = serde_json::from_str::<Value>(call.arguments) else {
                // A call the stream cut off or never gave: nothing to replay.
                canvases.missed += usize::from(call.function == UPDATE);
                continue;
            };
            if call.function == CREATE {
                canvases.create(id, &arguments, reply);
            } else {
                canvases.update(id.as_deref(), &arguments);
            }
        }
        canvases
    }

    /// The documents, in the order first written; empty ones are none.
    pub fn documents(self) -> Vec<Document> {
        self.written
            .into_iter()
            .filter(|canvas| !canvas.text.trim().is_empty())
            .map(|canvas| Document {
                title: canvas.title,
                text: match canvas.language {
                    Some(language) => fenced(&language, &canvas.text),
                    None => canvas.text,
                },
            })
            .collect()
    }

    fn create(&mut self, id: Option<String>, arguments: &Value, reply: Option<&Value>) {
        let Some(content) = arguments["content"].as_str() else { return };
        let title = arguments["name"]
            .as_str()
            .or(reply.and_then(|canvas| canvas["title"].as_str()))
            .map(super::common::collapse)
            .filter(|title| !title.is_empty())
            .unwrap_or_else(|| "Canvas".to_owned());
        let kind = arguments["type"].as_str().unwrap_or("document");
        let language = kind.strip_prefix("code/").map(str::to_owned);
        self.written.push(Written { id, title, language, text: content.to_owned() });
    }

    /// Applies an update to the canvas its reply names, else to the last one written (the tool
    /// updates "the current textdoc").
    fn update(&mut self, id: Option<&str>, arguments: &Value) {
        let target = id
            .and_then(|id| self.written.iter().rposition(|canvas| canvas.id.as_deref() == Some(id)))
            .or(self.written.len().checked_sub(1));
        let Some(canvas) = target.and_then(|at| self.written.get_mut(at)) else {
            tracing::debug!("a canvas update with no canvas of this turn to apply it to");
            self.missed += 1;
            return;
        };
        for update in arguments["updates"].as_array().into_iter().flatten() {
            match apply(&canvas.text, update) {
                Some(updated) => canvas.text = updated,
                None => {
                    tracing::debug!(pattern = ?update["pattern"], "a canvas update that could not be replayed");
                    self.missed += 1;
                }
            }
        }
    }
}

/// Code in a markdown fence of its language.
fn fenced(language: &str, code: &str) -> String {
    let language: String = language.chars().filter(|c| c.is_ascii_alphanumeric() || "+-_#.".contains(*c)).collect();
    // A fence longer than any run of backticks in the code.
    let longest = code.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{language}\n{}\n{fence}", code.trim_end_matches('\n'))
}

/// One update (`{"pattern", "multiple", "replacement"}`) applied to `text`: the first match of
/// the pattern, or every one with `multiple`, replaced by the expanded template. `None` when the
/// pattern does not compile as a Rust regex (look-arounds, back references), matches nothing, or
/// the template names a group the pattern lacks.
fn apply(text: &str, update: &Value) -> Option<String> {
    let pattern = update["pattern"].as_str()?;
    let template = update["replacement"].as_str().unwrap_or_default();
    let regex = RegexBuilder::new(&python_pattern(pattern)).dot_matches_new_line(true).build().ok()?;
    let limit = if update["multiple"] == Value::Bool(true) { usize::MAX } else { 1 };
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut replaced = 0;
    for captures in regex.captures_iter(text).take(limit) {
        let whole = captures.get(0)?;
        out.push_str(&text[last..whole.start()]);
        out.push_str(&expand(template, &regex, &captures)?);
        last = whole.end();
        replaced += 1;
    }
    if replaced == 0 {
        return None;
    }
    out.push_str(&text[last..]);
    Some(out)
}

/// A Python pattern in Rust's spelling where the two differ only in name: `\Z` (the very end)
/// is Rust's `\z`.
fn python_pattern(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Z') => out.push_str("\\z"),
            Some(next) => {
                out.push('\\');
                out.push(next);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Python's `re.Match.expand`: `\1`..`\99` and `\g<name>` / `\g<1>` are groups (an unmatched
/// group is empty), `\n`, `\t`, `\r`, `\f`, `\v`, `\a`, `\b` and `\\` their characters, another
/// escaped ASCII letter an error, any other escape left as written.
fn expand(template: &str, regex: &Regex, captures: &Captures<'_>) -> Option<String> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.char_indices().peekable();
    let group = |name: &str| -> Option<String> {
        let found = match name.parse::<usize>() {
            Ok(index) if index < captures.len() => captures.get(index),
            Ok(_) => return None,
            Err(_) if regex.capture_names().any(|known| known == Some(name)) => captures.name(name),
            Err(_) => return None,
        };
        Some(found.map_or("", |m| m.as_str()).to_owned())
    };
    while let Some((_, c)) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some((at, next)) = chars.next() else {
            out.push('\\');
            break;
        };
        match next {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            'f' => out.push('\u{c}'),
            'v' => out.push('\u{b}'),
            'a' => out.push('\u{7}'),
            'b' => out.push('\u{8}'),
            '\\' => out.push('\\'),
            'g' => {
                let rest = &template[at + 1..];
                let name = rest.strip_prefix('<')?.split_once('>')?.0;
                out.push_str(&group(name)?);
                for _ in 0..name.chars().count() + 2 {
                    chars.next();
                }
            }
            '1'..='9' => {
                let mut digits = next.to_string();
                if let Some((_, second)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                    digits.push(second);
                    chars.next();
                }
                out.push_str(&group(&digits)?);
            }
            letter if letter.is_ascii_alphabetic() => return None,
            other => {
                out.push('\\');
                out.push(other);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call<'a>(role: &'a str, function: &'a str, arguments: &'a str, canvas: Option<&'a Value>) -> Call<'a> {
        Call { role, function, arguments, canvas }
    }

    fn update(pattern: &str, multiple: bool, replacement: &str) -> Value {
        json!({ "pattern": pattern, "multiple": multiple, "replacement": replacement })
    }

    #[test]
    fn updates_replay_python_patterns_and_templates() {
        let text = "# Guide\n\nStatus: draft\n\nRange first. Range again.";
        let applied = |u: Value| apply(text, &u);
        assert_eq!(applied(update(".*", false, "Whole")).as_deref(), Some("Whole"));
        assert_eq!(
            applied(update("Status: draft", false, "Status: checked")).as_deref(),
            Some("# Guide\n\nStatus: checked\n\nRange first. Range again.")
        );
        assert_eq!(applied(update("Range", false, "Battery")).expect("replayed").matches("Battery").count(), 1);
        assert_eq!(applied(update("Range", true, "Battery")).expect("replayed").matches("Battery").count(), 2);
        assert_eq!(
            applied(update(r"Status: (\w+)", false, r"Status: \1 (was \g<1>)\n")).as_deref(),
            Some("# Guide\n\nStatus: draft (was draft)\n\n\nRange first. Range again.")
        );
        assert_eq!(
            applied(update(r"(?P<word>Guide)\Z|(?P<head># )", false, r"\g<head>\g<word>Buyer's ")).as_deref(),
            Some("# Buyer's Guide\n\nStatus: draft\n\nRange first. Range again.")
        );
        // An escape Python leaves as written stays as written.
        assert!(applied(update(r"again\.", false, r"once\.")).expect("replayed").ends_with(r"Range once\."));
        // What cannot be replayed: a look-ahead, no match, a group the pattern lacks, an escape
        // Python rejects.
        assert_eq!(applied(update(r"Range(?= first)", false, "x")), None);
        assert_eq!(applied(update("Nowhere", false, "x")), None);
        assert_eq!(applied(update("Range", false, r"\2")), None);
        assert_eq!(applied(update("Range", false, r"\g<missing>")), None);
        assert_eq!(applied(update("Range", false, r"\q")), None);
        assert_eq!(applied(json!({ "replacement": "x" })), None);
    }

    #[test]
    fn a_turn_is_replayed_into_its_documents() {
        let created = json!({ "textdoc_id": "doc1", "textdoc_type": "document", "title": "Guide", "version": 1 });
        let updated = json!({ "textdoc_id": "doc1", "version": 2 });
        let code = json!({ "textdoc_id": "doc2", "textdoc_type": "code/python" });
        let failed = json!({ "textdoc_id": "doc1", "is_failure": true });
        let create = json!({ "name": "Cargo e-bikes: a buyer's guide", "type": "document", "content": "# Guide\n\nStatus: draft\n" }).to_string();
        let edit = json!({ "updates": [update("Status: draft", false, "Status: checked")] }).to_string();
        let refused = json!({ "updates": [update(".*", false, "Gone")] }).to_string();
        let script = json!({ "name": "range.py", "type": "code/python", "content": "print('```')\n" }).to_string();
        let rewrite = json!({ "updates": [update(".*", false, "print(42)")] }).to_string();
        let calls = [
            call("assistant", CREATE, &create, None),
            call("tool", CREATE, "", Some(&created)),
            call("assistant", UPDATE, &edit, None),
            call("tool", UPDATE, "", Some(&updated)),
            call("assistant", UPDATE, &refused, None),
            call("tool", UPDATE, "", Some(&failed)),
            call("assistant", CREATE, &script, None),
            call("tool", CREATE, "", Some(&code)),
            call("assistant", UPDATE, &rewrite, None),
            call("assistant", "all", "Here it is.", None),
        ];
        let canvases = Canvases::replay(&calls);
        assert_eq!(canvases.missed, 0);
        let documents = canvases.documents();
        assert_eq!(
            documents,
            vec![
                Document {
                    title: "Cargo e-bikes: a buyer's guide".into(),
                    text: "# Guide\n\nStatus: checked\n".into()
                },
                Document { title: "range.py".into(), text: "```python\nprint(42)\n```".into() },
            ]
        );
        // A code canvas holding a fence gets a longer one, and an update edits the code alone.
        let fenced = Canvases::replay(&calls[6..8]).documents();
        assert_eq!(fenced[0].text, "````python\nprint('```')\n````");
        let edit = json!({ "updates": [update("print", false, "echo")] }).to_string();
        let edited = Canvases::replay(&[calls[6].clone(), calls[7].clone(), call("assistant", UPDATE, &edit, None)]);
        assert_eq!(edited.documents()[0].text, "````python\necho('```')\n````");
    }

    #[test]
    fn what_cannot_be_replayed_is_counted() {
        let edit = json!({ "updates": [update("zz", false, "y")] }).to_string();
        // An update of a canvas an earlier turn made, an update cut off mid-stream, and one
        // whose pattern matches nothing.
        let orphan =
            Canvases::replay(&[call("assistant", UPDATE, &edit, None), call("assistant", UPDATE, "{\"upd", None)]);
        assert_eq!((orphan.missed, orphan.documents()), (2, vec![]));
        let create = json!({ "name": "N", "content": "text" }).to_string();
        let unmatched =
            Canvases::replay(&[call("assistant", CREATE, &create, None), call("assistant", UPDATE, &edit, None)]);
        assert_eq!(unmatched.missed, 1);
        assert_eq!(unmatched.documents(), vec![Document { title: "N".into(), text: "text".into() }]);
        // A create cut off mid-stream or with no content makes nothing, and counts no edit.
        let cut = Canvases::replay(&[call("assistant", CREATE, "{\"name\":\"N\",\"content\":\"te", None)]);
        assert_eq!((cut.missed, cut.documents()), (0, vec![]));
        let odd = json!({ "name": 7, "content": 8 }).to_string();
        assert!(Canvases::replay(&[call("assistant", CREATE, &odd, None)]).documents().is_empty());
    }
}
