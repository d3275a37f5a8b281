//! The HTML pages. Templates live in `assets/` so they read (and diff) as plain HTML/CSS/JS.

use crate::common::escape_html;

const CHAT_TEMPLATE: &str = include_str!("assets/chat.html");
const LOGIN_TEMPLATE: &str = include_str!("assets/login.html");
const STYLE: &str = include_str!("assets/app.css");
/// The page script: the helpers all sites share (`window.aapSim`), then this site's own.
const SCRIPT: &str = concat!(include_str!("../common.js"), include_str!("assets/app.js"));

/// Text of the rate-limit error, as chatgpt.com words it.
pub const RATE_LIMIT_MESSAGE: &str = "You've reached our limit of messages per hour. Please try again later.";

/// Text of the 413 for a message over the site's limit (`message_length_exceeds_limit`), as
/// xtekky/gpt4free issues 1521 and 2534 quote it.
pub const TOO_LONG_MESSAGE: &str =
    "The message you submitted was too long, please reload the conversation and submit something shorter.";

/// Text of the generic mid-stream failure.
pub const GENERIC_ERROR_MESSAGE: &str = "Something went wrong while generating the response. If this issue persists please contact us through our help center at help.openai.com.";

/// Which markup the site serves (`config.variant`): today's, the one after a redesign, where
/// test ids and classes changed and only the adapter manifest's fallback selectors still match,
/// and two built from other public descriptions of chatgpt.com (see the module comment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    Classic,
    Redesign,
    /// Sources in the right-hand thread flyout, no dialog role and no "Sources" label.
    ThreadFlyout,
    /// `section` turns, `composer-stop-button`, a Sources button known only by its text that
    /// opens a `role=dialog` without a label, `chatgpt.com/link?url=` redirects.
    SectionTurn,
}

impl Variant {
    /// The variant of `name` (`SimulatorConfig::variant_name`); today's for an unknown name.
    pub(crate) fn from_name(name: &str) -> Variant {
        match name {
            "redesign" => Variant::Redesign,
            "thread-flyout" => Variant::ThreadFlyout,
            "section-turn" => Variant::SectionTurn,
            _ => Variant::Classic,
        }
    }

    /// Names used in the static markup: (ui, composer id, submit button id, send test id,
    /// login test id).
    fn names(self) -> [(&'static str, &'static str); 5] {
        match self {
            Variant::Classic | Variant::ThreadFlyout | Variant::SectionTurn => [
                (
                    "{{UI}}",
                    match self {
                        Variant::ThreadFlyout => "thread-flyout",
                        Variant::SectionTurn => "section-turn",
                        _ => "classic",
                    },
                ),
                ("{{COMPOSER_ID}}", "prompt-textarea"),
                ("{{SUBMIT_ID}}", "composer-submit-button"),
                ("{{SEND_TESTID}}", "send-button"),
                ("{{LOGIN_TESTID}}", "login-button"),
            ],
            Variant::Redesign => [
                ("{{UI}}", "redesign"),
                ("{{COMPOSER_ID}}", "composer-input"),
                ("{{SUBMIT_ID}}", "composer-submit"),
                ("{{SEND_TESTID}}", "composer-send-button"),
                ("{{LOGIN_TESTID}}", "welcome-login-button"),
            ],
        }
    }

    fn apply(self, template: &str) -> String {
        self.names().iter().fold(template.to_owned(), |page, (placeholder, name)| page.replace(placeholder, name))
    }
}

/// The logged-in chat page for a session labelled `label`; `late_sources` makes the Sources
/// button show up only after the answer has finished (`config.late_sources`).
pub(crate) fn chat_page(variant: Variant, label: &str, late_sources: bool) -> String {
    let shown = if label.trim().is_empty() { "ChatGPT user" } else { label.trim() };
    let initial: String = shown.chars().next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    // The label goes in last, so a label that looks like a placeholder stays literal text.
    variant
        .apply(CHAT_TEMPLATE)
        .replace("{{LATE_SOURCES}}", if late_sources { "true" } else { "false" })
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT)
        .replace("{{USER_INITIAL}}", &escape_html(&initial))
        .replace("{{USER_LABEL}}", &escape_html(shown))
}

/// The logged-out page: no composer, a "Log in" button.
pub(crate) fn login_wall(variant: Variant) -> String {
    variant.apply(LOGIN_TEMPLATE).replace("{{STYLE}}", STYLE)
}

/// A plain not-found page.
pub(crate) fn not_found() -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en-US\"><head><meta charset=\"utf-8\"><title>404: This page could not be found</title>\
         <style>{STYLE}</style></head><body><div class=\"auth-card\"><h1>404</h1><p>This page could not be found.</p>\
         <a href=\"/\">Go home</a></div></body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_page_has_the_contract_selectors_and_escapes_the_label() {
        let page = chat_page(Variant::Classic, "<b>ops</b> {{STYLE}}", false);
        assert!(page.contains("id=\"prompt-textarea\""));
        assert!(page.contains("contenteditable=\"true\""));
        assert!(page.contains("data-testid=\"send-button\""));
        assert!(page.contains("data-testid=\"create-new-chat-button\" href=\"/\""));
        assert!(page.contains("&lt;b&gt;ops&lt;/b&gt; {{STYLE}}"));
        assert_eq!(page.matches("{{").count(), 1);
        assert!(page.contains("<title>ChatGPT</title>"));

        // After a redesign the primary selectors of the adapter no longer match.
        let page = chat_page(Variant::Redesign, "ops", false);
        // The evidence comment before <html> quotes the old markup; the page itself must not.
        let page = &page[page.find("<html").unwrap_or(0)..];
        assert!(!page.contains("id=\"prompt-textarea\""));
        assert!(!page.contains("data-testid=\"send-button\""));
        assert!(page.contains("class=\"ProseMirror\""));
        assert!(page.contains("aria-label=\"Send prompt\""));
        assert!(page.contains("data-ui=\"redesign\""));
        assert!(!page.contains("{{"));
    }

    #[test]
    fn login_wall_has_no_composer() {
        assert!(login_wall(Variant::Redesign).contains("data-testid=\"welcome-login-button\""));
        let page = login_wall(Variant::Classic);
        assert!(page.contains("data-testid=\"login-button\""));
        assert!(!page.contains("id=\"prompt-textarea\""));
        assert!(!page.contains("contenteditable"));
        assert!(page.contains("<title>ChatGPT</title>"));
    }
}
