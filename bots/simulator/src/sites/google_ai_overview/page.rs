//! The HTML pages. Templates live in `assets/` so they read (and diff) as plain HTML/CSS/JS;
//! the pieces that change with the page variant are built here.

use crate::answer::Answer;
use crate::common::escape_html;
use crate::config::SimulatorConfig;

use super::{NOT_AVAILABLE_MESSAGE, UNAVAILABLE_MESSAGE, encode_component};

const HOME_TEMPLATE: &str = include_str!("assets/home.html");
const RESULTS_TEMPLATE: &str = include_str!("assets/results.html");
const CONSENT_TEMPLATE: &str = include_str!("assets/consent.html");
const SORRY_TEMPLATE: &str = include_str!("assets/sorry.html");
const STYLE: &str = include_str!("assets/app.css");
/// The page script: the helpers all sites share (`window.aapSim`), then this site's own.
const SCRIPT: &str = concat!(include_str!("../common.js"), include_str!("assets/app.js"));

/// Fills `{{KEY}}` placeholders in one pass, so a value (user text among them) is never scanned
/// for placeholders itself. Unknown keys stay as they are.
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + values.iter().map(|(_, value)| value.len()).sum::<usize>());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}").map(|end| (&after[..end], &after[end + 2..])) {
            Some((key, tail)) if values.iter().any(|(name, _)| *name == key) => {
                let value = values.iter().find(|(name, _)| *name == key).map_or("", |(_, value)| value);
                out.push_str(value);
                rest = tail;
            }
            _ => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The page variant served (`SimulatorConfig::variant`); see the module documentation of
/// `sites::google_ai_overview` for the public description each one follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// Today's look-alike: `#m-x-content` with `jsname` ids and `data-complete`.
    Current,
    /// `div[data-subtree=aio][role=region]`, other class names, the search box only `name=q`.
    Redesign,
    /// No `#m-x-content`, no `data-complete`: a progressbar while generating, sources as
    /// `rhs-col` cards linking straight to the page (`#:~:text=`), a People-also-ask decoy.
    RhsDirectLinks,
    /// As `RhsDirectLinks` without any sources list: every source is an inline pill.
    InlineChipsOnly,
}

impl Variant {
    /// The variant `config` asks for (an unknown name is refused when the config is set).
    pub(crate) fn of(config: &SimulatorConfig) -> Variant {
        match config.variant_name() {
            "redesign" => Variant::Redesign,
            "rhs-direct-links" => Variant::RhsDirectLinks,
            "inline-chips-only" => Variant::InlineChipsOnly,
            _ => Variant::Current,
        }
    }

    /// Its name, as `SimulatorConfig::variant` spells it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Variant::Current => "current",
            Variant::Redesign => "redesign",
            Variant::RhsDirectLinks => "rhs-direct-links",
            Variant::InlineChipsOnly => "inline-chips-only",
        }
    }

    /// The variants built from other public descriptions share the People-also-ask decoy.
    fn has_paa_decoy(self) -> bool {
        matches!(self, Variant::RhsDirectLinks | Variant::InlineChipsOnly)
    }
}

/// How long after the overview completes its sources list fills when `late_sources` is on.
const LATE_SOURCES_MS: u64 = 700;

/// A People-also-ask item holding an AI answer of its own (`[data-subtree=aimc]` >
/// `[data-container-id=main-col]`), ahead of the overview: a bot that looks for those document-
/// wide reads this text instead of the overview's.
const PAA_DECOY: &str = "<div class=\"cUnQKe\" data-initq=\"\"><div role=\"heading\" aria-level=\"2\">People also ask</div>\
     <div class=\"related-question-pair\" data-q=\"Is it worth it?\"><div class=\"wQiwMc\" role=\"button\" aria-expanded=\"true\">Is it worth it?</div>\
     <div jsname=\"NRdf4c\" data-subtree=\"aimc\"><div data-container-id=\"main-col\"><div class=\"n6owBd\">\
     This People also ask answer is not the AI Overview.</div></div></div></div></div>";

/// The search box with `query` in it. The classic one is Google's `textarea#APjFqb.gLFyf`; the
/// redesign keeps only `name="q"`.
fn search_box(query: &str, variant: Variant) -> String {
    let value = escape_html(query);
    if variant == Variant::Redesign {
        format!(
            "<textarea class=\"Yv2Qnb\" name=\"q\" rows=\"1\" maxlength=\"2048\" aria-label=\"Search\" \
             autocomplete=\"off\" spellcheck=\"false\">{value}</textarea>"
        )
    } else {
        format!(
            "<textarea jsname=\"yZiJbe\" class=\"gLFyf\" id=\"APjFqb\" name=\"q\" rows=\"1\" maxlength=\"2048\" \
             aria-controls=\"Alh6id\" aria-owns=\"Alh6id\" autofocus=\"\" title=\"Search\" aria-label=\"Search\" \
             aria-autocomplete=\"both\" aria-expanded=\"false\" aria-haspopup=\"false\" autocapitalize=\"off\" \
             autocomplete=\"off\" autocorrect=\"off\" role=\"combobox\" spellcheck=\"false\">{value}</textarea>"
        )
    }
}

/// The logged-in home page.
pub(crate) fn home(variant: Variant) -> String {
    fill(
        HOME_TEMPLATE,
        &[("STYLE", STYLE), ("SCRIPT", SCRIPT), ("VARIANT", variant.name()), ("SEARCH_BOX", &search_box("", variant))],
    )
}

/// One organic result. Classic: `div.MjjYud > div.tF2Cxc` with `a.zReHs[jsname=UWckNb] h3.LC20lb`,
/// `cite` and `div.VwiC3b`; the redesign keeps the `data-hveid` wrapper and the `h3` only.
fn organic(index: usize, url: &str, title: &str, domain: &str, variant: Variant) -> String {
    let url_html = escape_html(url);
    let title = escape_html(title);
    let domain = escape_html(domain);
    let path = url.split_once("://").map_or("", |(_, rest)| rest).split_once('/').map_or("", |(_, path)| path);
    let breadcrumb = path.split(['/', '?']).filter(|part| !part.is_empty()).take(2).collect::<Vec<_>>().join(" › ");
    let cite = escape_html(&format!("https://{domain} › {breadcrumb}"));
    let snippet = format!("{title}. Read what {domain} says, with sources and the latest updates.");
    if variant == Variant::Redesign {
        format!(
            "<div class=\"Ww4FFb\" data-hveid=\"CA{index}QAA\" data-rpos=\"{index}\"><div class=\"Nq9b2\">\
             <a class=\"sR8Ud\" href=\"{url_html}\"><h3 class=\"Xp4Lq\">{title}</h3><span class=\"Rc2Dx\">{cite}</span></a>\
             <div class=\"Jb5Fz\">{snippet}</div></div></div>"
        )
    } else {
        format!(
            "<div class=\"MjjYud\"><div class=\"tF2Cxc\" data-hveid=\"CA{index}QAA\" data-ved=\"2ahUKEwi{index}QFnoE\">\
             <div class=\"yuRUbf\"><div><span jscontroller=\"msmzHf\"><a jsname=\"UWckNb\" class=\"zReHs\" href=\"{url_html}\" \
             data-ved=\"2ahUKEwi{index}QFnoECA\" ping=\"/url?sa=t&amp;source=web&amp;rct=j&amp;url={ping}&amp;ved=2ahUKEwi{index}\">\
             <h3 class=\"LC20lb MBeuO DKV0Md\">{title}</h3><div class=\"notranslate\"><cite class=\"qLRx3b tjvcx\">{cite}</cite></div>\
             </a></span></div></div><div class=\"VwiC3b yXK7lf\" data-sncf=\"1\"><span>{snippet}</span></div></div></div>",
            ping = escape_html(&encode_component(url)),
        )
    }
}

/// The results page for `query`: organic results from the answer's sources, an empty slot the
/// page script fills with the deferred AI Overview, and the script's config (the variant, and
/// how late the sources list fills: 0 unless `late_sources`).
pub(crate) fn results(query: &str, answer: &Answer, variant: Variant, late_sources: bool) -> String {
    // Organic ranking is not the overview's order.
    let results: String = answer
        .citations
        .iter()
        .rev()
        .enumerate()
        .map(|(index, citation)| organic(index + 1, &citation.url, &citation.title, &citation.domain, variant))
        .collect();
    let config = serde_json::json!({
        "q": query,
        "variant": variant.name(),
        "lateSourcesMs": if late_sources { LATE_SOURCES_MS } else { 0 },
        "unavailable": UNAVAILABLE_MESSAGE,
        "notAvailable": NOT_AVAILABLE_MESSAGE,
    });
    // Inside <script>: a "</" in the query must not end the element.
    let config = config.to_string().replace("</", "<\\/");
    fill(
        RESULTS_TEMPLATE,
        &[
            ("STYLE", STYLE),
            ("SCRIPT", SCRIPT),
            ("VARIANT", variant.name()),
            ("CONFIG", &config),
            ("PAA", if variant.has_paa_decoy() { PAA_DECOY } else { "" }),
            ("RESULTS", &results),
            ("SEARCH_BOX", &search_box(query, variant)),
            ("TITLE", &escape_html(query)),
        ],
    )
}

/// "Before you continue to Google": the consent wall, with `continue_to` kept for after.
pub(crate) fn consent(continue_to: &str) -> String {
    fill(CONSENT_TEMPLATE, &[("STYLE", STYLE), ("CONTINUE", &escape_html(&encode_component(continue_to)))])
}

/// Google's "unusual traffic" page for a request that was going to `continue_to`.
pub(crate) fn sorry(continue_to: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs());
    fill(SORRY_TEMPLATE, &[("TIME", &format!("{now}")), ("CONTINUE", &escape_html(continue_to))])
}

/// Google's plain 404 page.
pub(crate) fn not_found() -> String {
    "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Error 404 (Not Found)!!1</title></head>\
     <body><p><b>404.</b> <ins>That’s an error.</ins></p><p>The requested URL was not found on this server. \
     <ins>That’s all we know.</ins></p></body></html>"
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::answer_for;

    #[test]
    fn placeholders_are_filled_once() {
        assert_eq!(fill("a {{X}} b {{Y}} {{Z}}", &[("X", "{{Y}}"), ("Y", "2")]), "a {{Y}} b 2 {{Z}}");
        assert_eq!(fill("{{X", &[("X", "1")]), "{{X");
    }

    #[test]
    fn home_has_the_search_box_of_its_variant() {
        let classic = home(Variant::Current);
        assert!(classic.contains("id=\"APjFqb\""));
        assert!(classic.contains("name=\"q\""));
        assert!(classic.contains("action=\"/search\""));
        let redesign = home(Variant::Redesign);
        assert!(!redesign.contains("APjFqb"));
        assert!(!redesign.contains("class=\"gLFyf\""));
        assert!(redesign.contains("name=\"q\""));
        assert_eq!(redesign.matches("{{").count(), 0);
    }

    #[test]
    fn results_escape_the_query_and_list_organic_results() {
        let query = "<b>laptops</b> {{STYLE}} </script>";
        let answer = answer_for(query, true);
        let page = results(query, &answer, Variant::Current, false);
        assert!(page.contains("&lt;b&gt;laptops&lt;/b&gt; {{STYLE}}"));
        assert!(!page.contains("<b>laptops</b>"));
        assert_eq!(page.matches("class=\"tF2Cxc\"").count(), answer.citations.len());
        assert!(page.contains("id=\"aio-slot\""));
        assert!(!page.contains("related-question-pair"));
        let redesign = results("laptops", &answer_for("laptops", true), Variant::Redesign, false);
        assert!(!redesign.contains("class=\"tF2Cxc\""));
        assert!(!redesign.contains("class=\"MjjYud\""));
        assert!(redesign.contains("data-variant=\"redesign\""));
        // The variants from other descriptions put an AI answer in People also ask, first.
        let decoyed = results("laptops", &answer_for("laptops", true), Variant::RhsDirectLinks, true);
        let decoy = decoyed.find("related-question-pair").unwrap_or(usize::MAX);
        assert!(decoy < decoyed.find("id=\"aio-slot\"").unwrap_or(0));
        assert!(decoyed.contains("\"lateSourcesMs\":700"));
    }

    #[test]
    fn walls_have_their_markers() {
        let consent = consent("/search?q=a&hl=en");
        assert!(consent.contains("Before you continue to Google"));
        assert!(consent.contains("id=\"L2AGLb\""));
        assert!(!consent.contains("<textarea"));
        assert!(consent.contains("continue=%2Fsearch%3Fq%3Da%26hl%3Den"));
        let sorry = sorry("http://127.0.0.1/search?q=a");
        assert!(sorry.contains("Our systems have detected unusual traffic from your computer network"));
        assert!(sorry.contains("id=\"captcha-form\""));
    }
}
