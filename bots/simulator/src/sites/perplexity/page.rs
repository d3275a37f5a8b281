//! The HTML pages. Templates live in `assets/` so they read (and diff) as plain HTML/CSS/JS.

use crate::common::escape_html;

const APP_TEMPLATE: &str = include_str!("assets/app.html");
const LOGIN_TEMPLATE: &str = include_str!("assets/login.html");
const STYLE: &str = include_str!("assets/app.css");
/// The page script: the helpers all sites share (`window.aapSim`), then this site's own.
const SCRIPT: &str = concat!(include_str!("../common.js"), include_str!("assets/app.js"));

/// What the site shows when an account is out of Pro searches. The simulator's own wording:
/// no public capture of the exact sentence was found; bots match it by the manifest's
/// `rate_limit_patterns`.
pub const RATE_LIMIT_MESSAGE: &str =
    "You've reached your daily limit of Pro searches. Upgrade to Perplexity Pro for more, or try again in 24 hours.";

/// What the site shows when an answer fails part-way.
pub const ERROR_MESSAGE: &str = "Something went wrong. Please try again later.";

/// Which markup the page is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// The markup public automation finds on perplexity.ai today.
    Current,
    /// Other ids, test ids and classes, as after a redesign.
    Redesign,
    /// steipete/oracle's description (2026-08+): `group/final-text` turns, a Helpful footer, a
    /// context pane of sources, a Stop control that clears before the text settles.
    FinalTextPane,
    /// The 2026-08-11 write-up, pplxport and a tabpanel parser: `.pb-md` turns, no anchors, a
    /// Links tab whose panel id says `citations`.
    CitationsTab,
}

impl Variant {
    /// The variant of a `SimulatorConfig::variant_name`; today's for an unknown name.
    pub(crate) fn named(name: &str) -> Variant {
        match name {
            "redesign" => Variant::Redesign,
            "final-text-context-pane" => Variant::FinalTextPane,
            "citations-tab-span-only" => Variant::CitationsTab,
            _ => Variant::Current,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Variant::Current => "current",
            Variant::Redesign => "redesign",
            Variant::FinalTextPane => "final-text-context-pane",
            Variant::CitationsTab => "citations-tab-span-only",
        }
    }

    fn composer_attrs(self) -> &'static str {
        match self {
            Variant::Current | Variant::FinalTextPane | Variant::CitationsTab => "id=\"ask-input\"",
            Variant::Redesign => "id=\"query-editor\"",
        }
    }

    fn submit_attrs(self) -> &'static str {
        match self {
            Variant::Current => "data-testid=\"submit-button\"",
            Variant::Redesign => "data-testid=\"query-submit\"",
            // aria-label only (oracle; the write-up's build).
            Variant::FinalTextPane | Variant::CitationsTab => "",
        }
    }

    fn login_testid(self) -> &'static str {
        match self {
            Variant::Redesign => "auth-modal",
            _ => "login-modal",
        }
    }

    fn new_thread_testid(self) -> &'static str {
        match self {
            Variant::Redesign => "new-thread-button",
            _ => "sidebar-new-thread",
        }
    }
}

/// The app page (home, or a thread URL, which starts empty: threads are not kept). `account`
/// is the session's label when logged in; without one the sign-in modal covers the page.
/// `late_sources`: the page shows no sources list until an answer is finished.
pub(crate) fn app_page(variant: Variant, late_sources: bool, account: Option<&str>) -> String {
    let modal = login_modal(variant);
    // The template stays in the page either way: the script shows it when a session expires.
    let template = format!("<template id=\"login-modal-template\">{modal}</template>");
    let (account_html, shown_modal) = match account {
        Some(label) => {
            let shown = if label.trim().is_empty() { "Perplexity user" } else { label.trim() };
            let initial: String = shown.chars().next().map(|c| c.to_uppercase().collect()).unwrap_or_default();
            (
                format!(
                    "<div data-testid=\"sidebar-account\" class=\"account\"><span class=\"avatar\" aria-hidden=\"true\">{}</span>\
                     <span class=\"account-name\">{}</span></div>",
                    escape_html(&initial),
                    escape_html(shown)
                ),
                String::new(),
            )
        }
        None => (
            "<button type=\"button\" class=\"btn-primary\">Sign Up</button>\
             <button type=\"button\" class=\"btn-secondary\">Log in</button>"
                .to_owned(),
            modal,
        ),
    };
    // The account label goes in last, so a label that looks like a placeholder stays literal.
    APP_TEMPLATE
        .replace("{{STYLE}}", STYLE)
        .replace("{{SCRIPT}}", SCRIPT)
        .replace("{{TITLE}}", "Perplexity")
        .replace("{{VARIANT}}", variant.name())
        .replace("{{LATE_SOURCES}}", if late_sources { "true" } else { "false" })
        .replace("{{COMPOSER_ATTRS}}", variant.composer_attrs())
        .replace("{{SUBMIT_ATTRS}}", variant.submit_attrs())
        .replace("{{NEW_THREAD_TESTID}}", variant.new_thread_testid())
        .replace("{{LOGIN_MODAL}}", &format!("{template}{shown_modal}"))
        .replace("{{ACCOUNT}}", &account_html)
}

fn login_modal(variant: Variant) -> String {
    LOGIN_TEMPLATE.replace("{{LOGIN_TESTID}}", variant.login_testid())
}

/// A plain not-found page.
pub(crate) fn not_found() -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en-US\"><head><meta charset=\"utf-8\"><title>Page not found | Perplexity</title>\
         <style>{STYLE}</style></head><body><div class=\"notice\"><h1>404</h1><p>This page could not be found.</p>\
         <a href=\"/\">Go home</a></div></body></html>"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_page_has_the_evidenced_hooks_and_escapes_the_label() {
        let page = app_page(Variant::Current, false, Some("<b>ops</b> {{STYLE}}"));
        assert!(page.contains("id=\"ask-input\""));
        assert!(page.contains("contenteditable=\"true\""));
        assert!(page.contains("data-lexical-editor=\"true\""));
        assert!(page.contains("data-testid=\"submit-button\" aria-label=\"Submit\""));
        assert!(page.contains("&lt;b&gt;ops&lt;/b&gt; {{STYLE}}"));
        assert!(page.contains("<title>Perplexity</title>"));
        // Logged in: the modal only lives in its template.
        assert_eq!(page.matches("Sign in or create an account").count(), 1);
        assert!(page.contains("<template id=\"login-modal-template\">"));
    }

    #[test]
    fn logged_out_page_shows_the_sign_in_modal_and_redesign_drops_the_hooks() {
        let page = app_page(Variant::Current, false, None);
        assert_eq!(page.matches("data-testid=\"login-modal\"").count(), 2);
        assert!(page.contains("Sign in or create an account"));

        let redesign = app_page(Variant::Redesign, false, Some("ops"));
        assert!(!redesign.contains("id=\"ask-input\""));
        assert!(!redesign.contains("data-testid=\"submit-button\""));
        assert!(redesign.contains("aria-label=\"Submit\""));
        assert!(redesign.contains("data-variant=\"redesign\""));
        assert!(!redesign.contains("{{"), "every placeholder is filled");

        for variant in ["final-text-context-pane", "citations-tab-span-only"] {
            let page = app_page(Variant::named(variant), true, Some("ops"));
            assert!(page.contains(&format!("data-variant=\"{variant}\"")));
            assert!(page.contains("data-late-sources=\"true\""));
            assert!(page.contains("id=\"ask-input\"") && !page.contains("data-testid=\"submit-button\""));
            assert!(!page.contains("{{"), "every placeholder is filled");
        }
    }
}
