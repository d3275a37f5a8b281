//! The HTML pages, in two markup variants: today's claude.ai and a redesign with other test ids
//! and class names. Templates live in `assets/` so they read (and diff) as plain HTML/CSS/JS.

use crate::common::escape_html;

const CHAT_TEMPLATE: &str = include_str!("assets/chat.html");
const LOGIN_TEMPLATE: &str = include_str!("assets/login.html");
const STYLE: &str = include_str!("assets/app.css");
/// The page script: the helpers all sites share (`window.aapSim`), then this site's own.
const SCRIPT: &str = concat!(include_str!("../common.js"), include_str!("assets/app.js"));

/// The model the page says answers (the model selector's text).
pub(crate) const MODEL_LABEL: &str = "Claude Sonnet 4.5";

/// The API id of that model, as the completion request names it.
pub(crate) const MODEL_ID: &str = "claude-sonnet-4-5-20250929";

/// Which markup the pages use (`SimulatorConfig::variant`; the module documentation of
/// `sites::claude` says which public description each one follows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// claude.ai as public automation tools select it today.
    Current,
    /// After a redesign: other test ids and class names, only a bot's fallback selectors work.
    Redesign,
    /// The 2026 two-row grid (`timeline-grid-2026`): thinking and tool blocks in `.row-start-1`
    /// behind `button.group/status` toggles, the answer in `.row-start-2`; the thinking text is
    /// the message's first `.standard-markdown`; search-result rows without links.
    TimelineGrid,
    /// The older markup (`legacy-font-claude-message`): the answer in `.font-claude-message`
    /// without `.standard-markdown`, plain links as citations, "Send Message".
    Legacy,
    /// Test ids and no streaming attribute (`testid-no-streaming-attr`): the message is
    /// `[data-testid=assistant-message]`, the answer `.font-claude-response-body`; the stop
    /// control clears between tool phases and before the text has finished rendering.
    TestIds,
}

impl Variant {
    pub(crate) fn of(config: &crate::SimulatorConfig) -> Variant {
        match config.variant_name() {
            "redesign" => Variant::Redesign,
            "timeline-grid-2026" => Variant::TimelineGrid,
            "legacy-font-claude-message" => Variant::Legacy,
            "testid-no-streaming-attr" => Variant::TestIds,
            _ => Variant::Current,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Variant::Current => "current",
            Variant::Redesign => "redesign",
            Variant::TimelineGrid => "timeline-grid-2026",
            Variant::Legacy => "legacy-font-claude-message",
            Variant::TestIds => "testid-no-streaming-attr",
        }
    }
}

/// The logged-in chat page (`/new` and `/chat/{uuid}`) for a session labelled `label`; `org` is
/// the organization uuid the page's API calls name.
/// `late_sources`: the search results reach the page only after the answer has finished.
pub(crate) fn chat_page(variant: Variant, label: &str, org: &str, late_sources: bool) -> String {
    let shown = if label.trim().is_empty() { "Claude user" } else { label.trim() };
    let initial: String = shown.chars().next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    let config = serde_json::json!({ "variant": variant.name(), "org": org, "model_id": MODEL_ID,
        "late_sources": late_sources });
    // `</` cannot end the inline script early: JSON never needs it unescaped.
    let config = config.to_string().replace("</", "<\\/");
    // The label goes in last, so a label that looks like a placeholder stays literal text.
    CHAT_TEMPLATE
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT)
        .replace("{{VARIANT}}", variant.name())
        .replace("{{COMPOSER}}", composer(variant))
        .replace("{{MODEL_SELECTOR}}", &model_selector(variant))
        .replace("{{CONFIG_JSON}}", &config)
        .replace("{{USER_INITIAL}}", &escape_html(&initial))
        .replace("{{USER_LABEL}}", &escape_html(shown))
}

fn composer(variant: Variant) -> &'static str {
    match variant {
        // Attributes as the capture specs list them: a tiptap/ProseMirror contenteditable,
        // role=textbox, aria-label "Write your prompt to Claude", data-testid "chat-input".
        Variant::Current => {
            "<div contenteditable=\"true\" translate=\"no\" enterkeyhint=\"enter\" tabindex=\"0\" \
             class=\"tiptap ProseMirror\" role=\"textbox\" aria-label=\"Write your prompt to Claude\" \
             aria-multiline=\"true\" data-testid=\"chat-input\"><p data-placeholder=\"How can I help you today?\" \
             class=\"is-empty is-editor-empty\"><br class=\"ProseMirror-trailingBreak\"></p></div>"
        }
        Variant::Redesign => {
            "<div contenteditable=\"true\" translate=\"no\" class=\"ProseMirror\" role=\"textbox\" \
             aria-label=\"Message Claude\" aria-multiline=\"true\"><p data-placeholder=\"Reply to Claude\u{2026}\" \
             class=\"is-empty is-editor-empty\"><br class=\"ProseMirror-trailingBreak\"></p></div>"
        }
        // Enhanced Extractor (Feb 2026): no data-testid on the editor.
        Variant::TimelineGrid => {
            "<div contenteditable=\"true\" translate=\"no\" enterkeyhint=\"enter\" role=\"textbox\" \
             aria-label=\"Write your prompt to Claude\" aria-multiline=\"true\" class=\"tiptap ProseMirror\">\
             <p data-placeholder=\"Reply to Claude\u{2026}\" class=\"is-empty is-editor-empty\">\
             <br class=\"ProseMirror-trailingBreak\"></p></div>"
        }
        // 11.autoai / 10x-chat (2025-10 .. 2026-02): no role, no aria-label.
        Variant::Legacy => {
            "<div contenteditable=\"true\" class=\"ProseMirror break-words\" enterkeyhint=\"enter\" translate=\"no\">\
             <p data-placeholder=\"Message Claude\u{2026}\" class=\"is-empty is-editor-empty\"><br></p></div>"
        }
        Variant::TestIds => {
            "<div contenteditable=\"true\" role=\"textbox\" aria-label=\"Write your prompt to Claude\" \
             data-testid=\"chat-input\" class=\"ProseMirror\"><p data-placeholder=\"How can I help you today?\" \
             class=\"is-empty is-editor-empty\"><br class=\"ProseMirror-trailingBreak\"></p></div>"
        }
    }
}

fn model_selector(variant: Variant) -> String {
    match variant {
        // 11.autoai (2025-10-05): the model name sits in a `.font-claude-response` inside the
        // button, so an unscoped `.font-claude-response` finds the model, not the answer.
        Variant::Legacy => format!(
            "<button type=\"button\" data-testid=\"model-selector-dropdown\" class=\"model-selector\" \
             aria-haspopup=\"menu\" aria-expanded=\"false\"><div class=\"font-claude-response whitespace-nowrap \
             select-none\">{MODEL_LABEL}</div></button>"
        ),
        _ => {
            let testid = if variant == Variant::Redesign { "model-picker" } else { "model-selector-dropdown" };
            format!(
                "<button type=\"button\" data-testid=\"{testid}\" class=\"model-selector\" aria-label=\"Model: {MODEL_LABEL}\" \
                 aria-haspopup=\"menu\" aria-expanded=\"false\"><div class=\"truncate\">{MODEL_LABEL}</div></button>"
            )
        }
    }
}

/// The login page (`/login`): no composer, "Continue with Google" or an email address.
pub(crate) fn login_page(variant: Variant) -> String {
    // The Google button as each variant draws it; the e-mail form is the simulator's working
    // one (crate::login), which also carries the markers the login-wall selectors look for.
    let google = match variant {
        Variant::Current | Variant::TimelineGrid | Variant::Legacy | Variant::TestIds => {
            "<button type=\"button\" data-testid=\"login-with-google\" class=\"btn-google\">Continue with Google</button>"
        }
        Variant::Redesign => {
            "<button type=\"button\" class=\"btn-google\" aria-label=\"Continue with Google\">Continue with Google</button>"
        }
    };
    let form =
        format!("<div class=\"login-form\">{google}{}</div>", crate::login::form_fragment(crate::site::Site::Claude));
    LOGIN_TEMPLATE.replace("{{STYLE}}", STYLE).replace("{{VARIANT}}", variant.name()).replace("{{LOGIN_FORM}}", &form)
}

/// A plain not-found page.
pub(crate) fn not_found() -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en-US\"><head><meta charset=\"utf-8\"><title>Page not found | Claude</title>\
         <style>{STYLE}</style></head><body><main class=\"login\"><div class=\"login-card\"><h1 class=\"login-heading\">404</h1>\
         <p>This page could not be found.</p><a href=\"/new\">Start a new chat</a></div></main></body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_chat_page_has_the_contract_markup_and_escapes_the_label() {
        let page = chat_page(Variant::Current, "<b>ops</b> {{STYLE}}", "org-1", false);
        assert!(page.contains("data-testid=\"chat-input\""));
        assert!(page.contains("aria-label=\"Write your prompt to Claude\""));
        assert!(page.contains("class=\"tiptap ProseMirror\""));
        assert!(page.contains("data-testid=\"model-selector-dropdown\""));
        assert!(page.contains("Claude Sonnet 4.5"));
        assert!(page.contains("href=\"/new\" aria-label=\"New chat\""));
        assert!(page.contains("&lt;b&gt;ops&lt;/b&gt; {{STYLE}}"));
        assert!(page.contains("\"variant\":\"current\""));
        assert!(page.contains("<title>Claude</title>"));
        // Only the label's own braces remain.
        assert_eq!(page.matches("{{").count(), 1);
    }

    #[test]
    fn redesign_drops_the_primary_test_ids() {
        let page = chat_page(Variant::Redesign, "ops", "org-1", false);
        assert!(!page.contains("data-testid=\"chat-input\""));
        assert!(!page.contains("Write your prompt to Claude"));
        assert!(!page.contains("data-testid=\"model-selector-dropdown\""));
        assert!(page.contains("class=\"ProseMirror\""));
        assert!(page.contains("data-testid=\"model-picker\""));
        assert!(page.contains("\"variant\":\"redesign\""));
    }

    #[test]
    fn login_page_has_no_composer() {
        for variant in [Variant::Current, Variant::Redesign] {
            let page = login_page(variant);
            assert!(page.contains("Continue with Google"));
            assert!(page.contains("type=\"email\""));
            assert!(!page.contains("contenteditable"));
        }
        assert!(login_page(Variant::Current).contains("data-testid=\"login-with-google\""));
        assert!(!login_page(Variant::Redesign).contains("data-testid=\"login-with-google\""));
    }
}
