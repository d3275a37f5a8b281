//! The HTML pages. Templates live in `assets/` so they read (and diff) as plain HTML/CSS/JS.

use crate::common::escape_html;

const CHAT_TEMPLATE: &str = include_str!("assets/chat.html");
const LOGIN_TEMPLATE: &str = include_str!("assets/login.html");
const STYLE: &str = include_str!("assets/app.css");
const SCRIPT: &str = include_str!("assets/app.js");

/// Text of the rate-limit error, as chatgpt.com words it.
pub const RATE_LIMIT_MESSAGE: &str = "You've reached our limit of messages per hour. Please try again later.";

/// Text of the generic mid-stream failure.
pub const GENERIC_ERROR_MESSAGE: &str = "Something went wrong while generating the response. If this issue persists please contact us through our help center at help.openai.com.";

/// The logged-in chat page for a session labelled `label`.
pub(crate) fn chat_page(label: &str) -> String {
    let shown = if label.trim().is_empty() { "ChatGPT user" } else { label.trim() };
    let initial: String = shown.chars().next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
    // The label goes in last, so a label that looks like a placeholder stays literal text.
    CHAT_TEMPLATE
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT)
        .replace("{{USER_INITIAL}}", &escape_html(&initial))
        .replace("{{USER_LABEL}}", &escape_html(shown))
}

/// The logged-out page: no composer, a "Log in" button.
pub(crate) fn login_wall() -> String {
    LOGIN_TEMPLATE.replace("{{STYLE}}", STYLE)
}

/// Where the "Log in" button leads. Sessions are made by the admin API, never here.
pub(crate) fn auth_page() -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en-US\"><head><meta charset=\"utf-8\"><title>Log in - OpenAI</title>\
         <style>{STYLE}</style></head><body><div class=\"auth-card\"><h1>Welcome back</h1>\
         <form onsubmit=\"return false\"><input type=\"email\" name=\"email\" placeholder=\"Email address\" autocomplete=\"email\">\
         <button type=\"submit\" class=\"btn-primary\" disabled>Continue</button></form>\
         <p class=\"muted\">This is the aap simulator: sessions come from <code>POST /__sim/sessions</code>.</p>\
         </div></body></html>"
    )
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
        let page = chat_page("<b>ops</b> {{STYLE}}");
        assert!(page.contains("id=\"prompt-textarea\""));
        assert!(page.contains("contenteditable=\"true\""));
        assert!(page.contains("data-testid=\"send-button\""));
        assert!(page.contains("data-testid=\"create-new-chat-button\" href=\"/\""));
        assert!(page.contains("&lt;b&gt;ops&lt;/b&gt; {{STYLE}}"));
        assert_eq!(page.matches("{{").count(), 1);
        assert!(page.contains("<title>ChatGPT</title>"));
    }

    #[test]
    fn login_wall_has_no_composer() {
        let page = login_wall();
        assert!(page.contains("data-testid=\"login-button\""));
        assert!(!page.contains("id=\"prompt-textarea\""));
        assert!(!page.contains("contenteditable"));
        assert!(page.contains("<title>ChatGPT</title>"));
    }
}
