//! The answer's HTML (as the browser serialises `innerHTML`) turned into plain markdown:
//! headings, paragraphs, lists, bold, italics, code, links, quotes and simple tables; and
//! markdown (a document an answer made) turned into the plain text a reader sees of it.
//!
//! The input comes from a browser, so it is well formed: a small tokenizer is enough, and
//! anything it does not know is kept as its text.

use aap_proto::urls::clean_url;

/// Elements without a closing tag.
const VOID: &[&str] =
    &["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"];
/// Elements whose content is never part of the answer.
const SKIPPED: &[&str] = &["script", "style", "svg", "button", "template", "noscript", "textarea", "select"];
/// Elements that start a new block.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "header",
    "footer",
    "main",
    "aside",
    "figure",
    "details",
    "summary",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "ul",
    "ol",
    "li",
    "pre",
    "blockquote",
    "table",
    "hr",
    "dl",
    "dt",
    "dd",
];

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn is_citation_pill(&self) -> bool {
        self.attr("data-testid") == Some("webpage-citation-pill")
    }
}

/// Converts an HTML fragment to markdown. Citation pills become `([name](url))` after the
/// sentence they support; every link loses its tracking parameters.
pub fn html_to_markdown(html: &str) -> String {
    let root = parse(html);
    let mut blocks = Vec::new();
    render_blocks(&root, &mut blocks);
    blocks.retain(|block| !block.trim().is_empty());
    blocks.join("\n\n")
}

// ---- parsing ------------------------------------------------------------------------------------

fn parse(html: &str) -> Vec<Node> {
    // The stack holds open elements; index 0 is a synthetic root.
    let mut stack: Vec<Element> = vec![Element { name: String::new(), attrs: Vec::new(), children: Vec::new() }];
    let mut rest = html;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |end| &after[end + 3..]);
            continue;
        }
        if rest.starts_with("</") {
            let end = rest.find('>').unwrap_or(rest.len());
            let name = rest[2..end].trim().to_ascii_lowercase();
            rest = rest.get(end + 1..).unwrap_or("");
            close(&mut stack, &name);
            continue;
        }
        if rest.starts_with('<') && rest[1..].starts_with(|c: char| c.is_ascii_alphabetic()) {
            let (element, self_closing, after) = parse_tag(rest);
            rest = after;
            if SKIPPED.contains(&element.name.as_str()) && !self_closing {
                // Skip to the matching close tag; skipped elements never nest anything we keep.
                let close_tag = format!("</{}", element.name);
                rest = find_ci(rest, &close_tag)
                    .map_or("", |at| rest[at..].find('>').map_or("", |end| &rest[at + end + 1..]));
                continue;
            }
            if self_closing || VOID.contains(&element.name.as_str()) {
                push(&mut stack, Node::Element(element));
            } else {
                stack.push(element);
            }
            continue;
        }
        // At least the first character is text (a '<' that starts no tag, say).
        let first = rest.chars().next().map_or(1, char::len_utf8);
        let end = rest[first..].find('<').map_or(rest.len(), |at| at + first);
        push(&mut stack, Node::Text(decode_entities(&rest[..end])));
        rest = &rest[end..];
    }
    while stack.len() > 1 {
        if let Some(element) = stack.pop() {
            push(&mut stack, Node::Element(element));
        }
    }
    stack.pop().map(|root| root.children).unwrap_or_default()
}

fn find_ci(haystack: &str, needle: &str) -> Option<usize> {
    haystack.to_ascii_lowercase().find(&needle.to_ascii_lowercase())
}

fn push(stack: &mut [Element], node: Node) {
    if let Some(top) = stack.last_mut() {
        top.children.push(node);
    }
}

/// Closes the innermost open element called `name`, and any left open inside it.
fn close(stack: &mut Vec<Element>, name: &str) {
    let Some(depth) = stack.iter().skip(1).rposition(|element| element.name == name) else {
        return;
    };
    while stack.len() > depth + 1 {
        if let Some(element) = stack.pop() {
            push(stack, Node::Element(element));
        }
    }
}

/// Parses `<name attr="v" ...>` at the start of `input`; returns the element, whether it closed
/// itself, and the text after the tag.
fn parse_tag(input: &str) -> (Element, bool, &str) {
    let bytes = input.as_bytes();
    let mut i = 1;
    while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' && bytes[i] != b'/' {
        i += 1;
    }
    let name = input[1..i].to_ascii_lowercase();
    let mut attrs = Vec::new();
    let mut self_closing = false;
    loop {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= bytes.len() {
            break;
        }
        match bytes[i] {
            b'>' => {
                i += 1;
                break;
            }
            b'/' => {
                self_closing = true;
                i += 1;
                continue;
            }
            _ => {}
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && !matches!(bytes[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let attr_name = input[start..i].to_ascii_lowercase();
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'=' {
            i += 1;
            if i < bytes.len() && (bytes[i] == b'"' || bytes[i] == b'\'') {
                let quote = bytes[i];
                let value_start = i + 1;
                let value_end = input[value_start..].find(quote as char).map_or(input.len(), |at| value_start + at);
                value = decode_entities(&input[value_start..value_end]);
                i = (value_end + 1).min(input.len());
            } else {
                let value_start = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                    i += 1;
                }
                value = decode_entities(&input[value_start..i]);
            }
        }
        if !attr_name.is_empty() {
            attrs.push((attr_name, value));
        } else {
            // A stray character: step over it rather than loop forever.
            i += 1;
        }
    }
    (Element { name, attrs, children: Vec::new() }, self_closing, input.get(i..).unwrap_or(""))
}

fn decode_entities(text: &str) -> String {
    if !text.contains('&') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let Some(end) = rest.find(';').filter(|end| *end <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some('\u{a0}'),
            _ => entity
                .strip_prefix("#x")
                .or_else(|| entity.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| entity.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

// ---- rendering ----------------------------------------------------------------------------------

fn is_block(node: &Node) -> bool {
    matches!(node, Node::Element(element) if BLOCKS.contains(&element.name.as_str()))
}

/// Renders a sequence of nodes as blocks; inline runs between blocks become paragraphs.
fn render_blocks(nodes: &[Node], out: &mut Vec<String>) {
    let mut inline_run = String::new();
    for node in nodes {
        if !is_block(node) {
            inline(node, &mut inline_run);
            continue;
        }
        flush_paragraph(&mut inline_run, out);
        if let Node::Element(element) = node {
            render_block(element, out);
        }
    }
    flush_paragraph(&mut inline_run, out);
}

fn flush_paragraph(run: &mut String, out: &mut Vec<String>) {
    let text = tidy(run);
    if !text.is_empty() {
        out.push(text);
    }
    run.clear();
}

/// Collapses spaces, trims every line, and drops empty lines.
fn tidy(text: &str) -> String {
    text.replace('\u{a0}', " ")
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_block(element: &Element, out: &mut Vec<String>) {
    match element.name.as_str() {
        heading @ ("h1" | "h2" | "h3" | "h4" | "h5" | "h6") => {
            let level = heading[1..].parse::<usize>().unwrap_or(1);
            let text = tidy(&inline_children(&element.children)).replace('\n', " ");
            if !text.is_empty() {
                out.push(format!("{} {text}", "#".repeat(level)));
            }
        }
        "ul" | "ol" => out.push(render_list(element)),
        "li" => {
            let mut item = Vec::new();
            render_blocks(&element.children, &mut item);
            out.push(prefix_item("- ", &item));
        }
        "pre" => {
            let language = find_code_language(element).unwrap_or_default();
            let code = text_content(&element.children);
            out.push(format!("```{language}\n{}\n```", code.trim_end_matches('\n')));
        }
        "blockquote" => {
            let mut inner = Vec::new();
            render_blocks(&element.children, &mut inner);
            let quoted = inner
                .join("\n\n")
                .lines()
                .map(|line| if line.is_empty() { ">".to_owned() } else { format!("> {line}") })
                .collect::<Vec<_>>()
                .join("\n");
            out.push(quoted);
        }
        "table" => out.push(render_table(element)),
        "hr" => out.push("---".to_owned()),
        _ => render_blocks(&element.children, out),
    }
}

fn render_list(list: &Element) -> String {
    let ordered = list.name == "ol";
    let mut number = list.attr("start").and_then(|start| start.parse::<u64>().ok()).unwrap_or(1);
    let mut items = Vec::new();
    for child in &list.children {
        let Node::Element(item) = child else {
            continue;
        };
        let mut blocks = Vec::new();
        if item.name == "li" {
            render_blocks(&item.children, &mut blocks);
        } else {
            render_block(item, &mut blocks);
        }
        let marker = if ordered { format!("{number}. ") } else { "- ".to_owned() };
        number += 1;
        items.push(prefix_item(&marker, &blocks));
    }
    items.join("\n")
}

/// A list item: the marker before its first line, later lines indented to match.
fn prefix_item(marker: &str, blocks: &[String]) -> String {
    let indent = " ".repeat(marker.len());
    let body = blocks.join("\n");
    body.lines()
        .enumerate()
        .map(|(index, line)| if index == 0 { format!("{marker}{line}") } else { format!("{indent}{line}") })
        .collect::<Vec<_>>()
        .join("\n")
}

fn render_table(table: &Element) -> String {
    let mut rows = Vec::new();
    collect_rows(&table.children, &mut rows);
    let Some(width) = rows.iter().map(Vec::len).max() else {
        return String::new();
    };
    let line = |cells: &[String]| {
        let mut padded = cells.to_vec();
        padded.resize(width, String::new());
        format!("| {} |", padded.join(" | "))
    };
    let mut lines = Vec::new();
    for (index, row) in rows.iter().enumerate() {
        lines.push(line(row));
        if index == 0 {
            lines.push(line(&vec!["---".to_owned(); width]));
        }
    }
    lines.join("\n")
}

fn collect_rows(nodes: &[Node], rows: &mut Vec<Vec<String>>) {
    for node in nodes {
        let Node::Element(element) = node else {
            continue;
        };
        if element.name == "tr" {
            let cells = element
                .children
                .iter()
                .filter_map(|cell| match cell {
                    Node::Element(cell) if cell.name == "td" || cell.name == "th" => {
                        Some(tidy(&inline_children(&cell.children)).replace('\n', " ").replace('|', "\\|"))
                    }
                    _ => None,
                })
                .collect();
            rows.push(cells);
        } else {
            collect_rows(&element.children, rows);
        }
    }
}

fn find_code_language(element: &Element) -> Option<String> {
    for child in &element.children {
        if let Node::Element(child) = child {
            let language = child
                .attr("class")
                .and_then(|class| class.split_whitespace().find_map(|c| c.strip_prefix("language-")))
                .map(str::to_owned);
            if language.is_some() {
                return language;
            }
            if let Some(found) = find_code_language(child) {
                return Some(found);
            }
        }
    }
    None
}

fn text_content(nodes: &[Node]) -> String {
    let mut text = String::new();
    for node in nodes {
        match node {
            Node::Text(t) => text.push_str(t),
            Node::Element(element) if element.name == "br" => text.push('\n'),
            Node::Element(element) if SKIPPED.contains(&element.name.as_str()) => {}
            Node::Element(element) => text.push_str(&text_content(&element.children)),
        }
    }
    text
}

fn inline_children(nodes: &[Node]) -> String {
    let mut out = String::new();
    for node in nodes {
        inline(node, &mut out);
    }
    out
}

/// Wraps `inner` in `mark` on both sides, keeping its outer spaces outside the marks.
fn wrap(out: &mut String, mark: &str, inner: &str) {
    let trimmed = inner.trim();
    if trimmed.is_empty() {
        out.push_str(inner);
        return;
    }
    if inner.starts_with(char::is_whitespace) {
        out.push(' ');
    }
    out.push_str(mark);
    out.push_str(trimmed);
    out.push_str(mark);
    if inner.ends_with(char::is_whitespace) {
        out.push(' ');
    }
}

fn inline(node: &Node, out: &mut String) {
    let element = match node {
        Node::Text(text) => {
            // Source line breaks are just spaces in HTML.
            out.push_str(&text.replace(['\n', '\r', '\t'], " "));
            return;
        }
        Node::Element(element) => element,
    };
    if element.is_citation_pill() {
        // The pill is a wrapper around its link, or (after a redesign) the link itself.
        let own_link = (element.name == "a")
            .then(|| element.attr("href"))
            .flatten()
            .map(|href| (tidy(&text_content(&element.children)).replace('\n', " "), href.to_owned()));
        if let Some((text, href)) = own_link.or_else(|| first_link(element)) {
            if !out.ends_with(char::is_whitespace) && !out.is_empty() {
                out.push(' ');
            }
            let label = if text.is_empty() { aap_proto::urls::domain_of(&href) } else { text };
            out.push_str(&format!("([{label}]({}))", clean_url(&href)));
        }
        return;
    }
    match element.name.as_str() {
        name if SKIPPED.contains(&name) => {}
        "br" => out.push('\n'),
        "strong" | "b" => wrap(out, "**", &inline_children(&element.children)),
        "em" | "i" => wrap(out, "*", &inline_children(&element.children)),
        "del" | "s" => wrap(out, "~~", &inline_children(&element.children)),
        "code" => {
            let code = text_content(&element.children);
            if !code.is_empty() {
                out.push('`');
                out.push_str(&code);
                out.push('`');
            }
        }
        "a" => {
            let text = tidy(&inline_children(&element.children)).replace('\n', " ");
            match element.attr("href").filter(|href| !href.is_empty() && !href.starts_with('#')) {
                Some(href) => {
                    let url = clean_url(href);
                    let label = if text.is_empty() { url.clone() } else { text };
                    out.push_str(&format!("[{label}]({url})"));
                }
                None => out.push_str(&text),
            }
        }
        "img" => {}
        _ if BLOCKS.contains(&element.name.as_str()) => {
            // A block inside inline content (a list in a link, say) still reads as text.
            out.push('\n');
            element.children.iter().for_each(|child| inline(child, out));
            out.push('\n');
        }
        // Into the same buffer, so a pill deep inside sees the text before it.
        _ => element.children.iter().for_each(|child| inline(child, out)),
    }
}

fn first_link(element: &Element) -> Option<(String, String)> {
    for child in &element.children {
        if let Node::Element(child) = child {
            if child.name == "a"
                && let Some(href) = child.attr("href")
            {
                let text = tidy(&text_content(&child.children)).replace('\n', " ");
                return Some((text, href.to_owned()));
            }
            if let Some(found) = first_link(child) {
                return Some(found);
            }
        }
    }
    None
}

// ---- markdown to text ----------------------------------------------------------------------------

/// Markdown as the plain text a reader sees of it, as a page's `innerText` gives an answer:
/// headings, quotes, bullets, emphasis, inline code and fences lose their marks, links and
/// images keep their text, a table's rows their cells (between ` | `, its rule row dropped), and
/// horizontal rules go. Numbered items keep their numbers; code in fences is kept as written.
pub fn markdown_to_text(markdown: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            lines.push(line.trim_end().to_owned());
            continue;
        }
        let mut rest = trimmed.trim_end();
        while let Some(quoted) = rest.strip_prefix('>') {
            rest = quoted.trim_start();
        }
        let hashes = rest.bytes().take_while(|b| *b == b'#').count();
        if (1..=6).contains(&hashes) && (rest.len() == hashes || rest[hashes..].starts_with(' ')) {
            rest = rest[hashes..].trim();
        }
        if is_rule(rest) {
            continue;
        }
        for bullet in ["- ", "* ", "+ "] {
            if let Some(item) = rest.strip_prefix(bullet) {
                rest = item.trim_start();
                break;
            }
        }
        let cells;
        if rest.starts_with('|') {
            cells = rest.trim_matches('|').split('|').map(str::trim).collect::<Vec<_>>().join(" | ");
            rest = &cells;
        }
        lines.push(inline_text(rest));
    }
    // Blank lines between blocks stay one.
    let mut text = String::new();
    let mut blank = false;
    for line in lines {
        if line.trim().is_empty() {
            blank = true;
            continue;
        }
        if !text.is_empty() {
            text.push_str(if blank { "\n\n" } else { "\n" });
        }
        blank = false;
        text.push_str(&line);
    }
    text
}

/// A horizontal rule (`---`, `***`, `___`) or a table's rule row (`|---|:--:|`).
fn is_rule(line: &str) -> bool {
    let marks = line.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    marks.len() >= 3
        && (marks.chars().all(|c| c == '-')
            || marks.chars().all(|c| c == '*')
            || marks.chars().all(|c| c == '_')
            || (marks.contains('-') && marks.contains('|') && marks.chars().all(|c| matches!(c, '-' | '|' | ':'))))
}

/// A line's inline markdown as text: `[text](url)` and `![alt](url)` keep their text, `**`,
/// `__`, `~~` and backticks go, and a `*` next to a word (emphasis) goes; `5 * 3` and
/// snake_case stay.
fn inline_text(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    // Where the next `]` and `)` are from each index on: a link is found without scanning the
    // rest of the line again at every `[` (a line of brackets alone stays linear).
    let next = |mark: char| {
        let mut next = vec![usize::MAX; chars.len() + 1];
        for k in (0..chars.len()).rev() {
            next[k] = if chars[k] == mark { k } else { next[k + 1] };
        }
        next
    };
    let (brackets, parens) = (next(']'), next(')'));
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = |k: usize| chars.get(k).copied();
        if (c == '[' || (c == '!' && at(i + 1) == Some('[')))
            && let Some((text, end)) = link_at(&chars, i, &brackets, &parens)
        {
            out.push_str(&inline_text(&text));
            i = end;
            continue;
        }
        let pair = at(i + 1) == Some(c);
        if pair && matches!(c, '*' | '_' | '~') {
            i += 2;
            continue;
        }
        if c == '`' {
            i += 1;
            continue;
        }
        if c == '*' {
            let word_before = i > 0 && !chars[i - 1].is_whitespace();
            let word_after = at(i + 1).is_some_and(|n| !n.is_whitespace());
            if word_before || word_after {
                i += 1;
                continue;
            }
        }
        out.push(c);
        i += 1;
    }
    out
}

/// A link or image starting at `start` (`[` or `![`): its text and the index after its `)`.
/// `brackets` and `parens` give the next `]` and `)` from each index on.
fn link_at(chars: &[char], start: usize, brackets: &[usize], parens: &[usize]) -> Option<(String, usize)> {
    let open = if chars[start] == '!' { start + 1 } else { start };
    let close = *brackets.get(open + 1).filter(|&&k| k != usize::MAX)?;
    if chars.get(close + 1) != Some(&'(') {
        return None;
    }
    let end = *parens.get(close + 2).filter(|&&k| k != usize::MAX)?;
    Some((chars[open + 1..close].iter().collect(), end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_reads_as_the_text_a_reader_sees() {
        let markdown = "# Best e-bikes of 2026\n\n\
            A **short** guide to the *best* picks, from [Bike Radar](https://bikeradar.com/x) and `specs`.\n\n\
            ---\n\n\
            ## The picks\n\n\
            - Rad Power RadCity 5\n\
            * Specialized Turbo Vado\n\
            1. Trek Allant+ 7\n\n\
            > Ride one first.\n\n\
            | Bike | Price |\n\
            |------|:-----:|\n\
            | RadCity | $1,999 |\n\n\
            ![a bike](https://img.example/bike.png)\n\n\
            ```\nlet x = 5 * 3; // **kept**\n```\n\n\
            5 * 3 is 15, and snake_case stays; ~~gone~~ __too__.";
        assert_eq!(
            markdown_to_text(markdown),
            "Best e-bikes of 2026\n\n\
             A short guide to the best picks, from Bike Radar and specs.\n\n\
             The picks\n\n\
             Rad Power RadCity 5\n\
             Specialized Turbo Vado\n\
             1. Trek Allant+ 7\n\n\
             Ride one first.\n\n\
             Bike | Price\n\
             RadCity | $1,999\n\n\
             a bike\n\n\
             let x = 5 * 3; // **kept**\n\n\
             5 * 3 is 15, and snake_case stays; gone too."
        );
    }

    #[test]
    fn markdown_without_marks_or_half_a_link_is_kept() {
        assert_eq!(markdown_to_text("Plain words.\n\n\n\nMore."), "Plain words.\n\nMore.");
        assert_eq!(markdown_to_text("[not a link] and [half](open"), "[not a link] and [half](open");
        assert_eq!(markdown_to_text("#hashtag and #"), "#hashtag and #");
        assert_eq!(markdown_to_text(""), "");
        assert_eq!(markdown_to_text("\u{0}*\u{0}"), "\u{0}\u{0}");
        // A line of brackets with no link (what a hostile document could hold) is read in one
        // pass, each `[` looking up the next `]` rather than scanning the rest again.
        let brackets = "[".repeat(200_000) + "](";
        assert_eq!(markdown_to_text(&brackets), brackets);
        let links = "[a](b)".repeat(50_000);
        assert_eq!(markdown_to_text(&links), "a".repeat(50_000));
    }

    #[test]
    fn headings_paragraphs_lists_and_emphasis() {
        let html = "<h3>Best picks</h3><p>Here are <strong>three</strong> options &amp; a <em>tip</em>:</p>\
                    <ul><li><p><strong>Acer</strong> Swift</p></li><li><p>Dell XPS</p>\
                    <ol start=\"3\"><li>thin</li><li>light</li></ol></li></ul><p>Line one<br>line two</p>";
        assert_eq!(
            html_to_markdown(html),
            "### Best picks\n\nHere are **three** options & a *tip*:\n\n- **Acer** Swift\n- Dell XPS\n  3. thin\n  4. light\n\nLine one\nline two"
        );
    }

    #[test]
    fn links_lose_tracking_and_pills_follow_their_sentence() {
        let html = "<p>Read <a href=\"https://example.com/a?utm_source=chatgpt.com&amp;id=1\">the review</a>.\
                    <span class=\"\" data-state=\"closed\"><span data-testid=\"webpage-citation-pill\">\
                    <a href=\"https://www.techradar.com/best?utm_source=chatgpt.com\" target=\"_blank\">\
                    <span class=\"truncate\">techradar.com</span></a></span></span></p>";
        assert_eq!(
            html_to_markdown(html),
            "Read [the review](https://example.com/a?id=1). ([techradar.com](https://www.techradar.com/best))"
        );
    }

    #[test]
    fn code_tables_quotes_and_skipped_elements() {
        let html = "<pre><code class=\"language-rust\">fn main() {\n  let a = 1 &lt; 2;\n}\n</code></pre>\
                    <table><thead><tr><th>Model</th><th>Price</th></tr></thead>\
                    <tbody><tr><td>A</td><td>$1</td></tr></tbody></table>\
                    <blockquote><p>quoted</p></blockquote><button>Copy</button><svg><path d=\"M0\"/></svg>\
                    <!-- comment --><p>end&nbsp;&#x2014;&#39;ok&#39;</p>";
        assert_eq!(
            html_to_markdown(html),
            "```rust\nfn main() {\n  let a = 1 < 2;\n}\n```\n\n| Model | Price |\n| --- | --- |\n| A | $1 |\n\n> quoted\n\nend \u{2014}'ok'"
        );
    }

    #[test]
    fn unclosed_and_stray_markup_does_not_lose_text() {
        assert_eq!(html_to_markdown("<p>one <b>two</p><p>three"), "one **two**\n\nthree");
        assert_eq!(html_to_markdown("a < b & c"), "a < b & c");
        assert_eq!(html_to_markdown(""), "");
    }
}
