//! The interruptions real assistant sites put in a browser bot's way (a dialog on arrival, a
//! cookie banner over the composer, `alert()` / `confirm()`, "Leave site?", a new tab that takes
//! the focus), in each site's own words and hooks. The page side is `sites/interrupt.js`, put at
//! the end of every page of the site with the knobs in force ([`inject`]); prompt markers
//! ([`crate::INTERRUPTION_MARKERS`]) are read by that script as the prompt is sent.
//!
//! Evidence: none specific. No public source describing these sites' onboarding dialogs and
//! banners by their markup was found, so they are generic: Radix-style modals (`role=dialog`,
//! `aria-modal`, `data-state=open`, a close button labelled "Close"; ChatGPT's with
//! `data-testid=close-button`) and cookie or privacy notices, each worded and classed in the
//! site's manner. Google's consent dialog (`#W0wltc`, `#L2AGLb`) is not among them: without a
//! Google session it is the consent wall the adapter already knows.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use crate::config::SimulatorConfig;
use crate::site::Site;
use crate::state::SimState;

/// The page script that sets the interruptions off.
const SCRIPT: &str = include_str!("sites/interrupt.js");

/// Where the new tab of `new_window` goes: a page of the site's own origin.
pub const POPUP_PATH: &str = "/__sim/popup";

/// The largest page the injection reads (the site pages are far smaller).
const MAX_PAGE_BYTES: usize = 8 << 20;

/// A site's dialog.
#[derive(Debug, Serialize)]
struct ModalStyle {
    testid: &'static str,
    class: &'static str,
    backdrop_class: &'static str,
    title: &'static str,
    text: &'static str,
    close_label: &'static str,
    close_testid: &'static str,
    close_class: &'static str,
    cta: &'static str,
    cta_class: &'static str,
}

/// A site's banner: its buttons are (label, id) pairs, an empty id for none.
#[derive(Debug, Serialize)]
struct BannerStyle {
    id: &'static str,
    class: &'static str,
    label: &'static str,
    text: &'static str,
    buttons: Vec<(&'static str, &'static str)>,
    button_class: &'static str,
}

/// How a site words and marks up its interruptions.
#[derive(Debug, Serialize)]
struct Style {
    modal: ModalStyle,
    banner: BannerStyle,
    alert_text: &'static str,
    confirm_text: &'static str,
    popup_path: &'static str,
}

fn style(site: Site) -> Style {
    match site {
        Site::ChatGpt => Style {
            modal: ModalStyle {
                testid: "modal-upsell",
                class: "popover bg-token-main-surface-primary rounded-2xl shadow-xl",
                backdrop_class: "fixed inset-0 z-50 bg-black/50",
                title: "Try ChatGPT Plus",
                text: "Get more messages, faster answers and the newest models.",
                close_label: "Close",
                close_testid: "close-button",
                close_class: "text-token-text-secondary",
                cta: "Upgrade to Plus",
                cta_class: "btn btn-primary",
            },
            banner: BannerStyle {
                id: "cookie-banner",
                class: "fixed bottom-0 z-50 bg-token-main-surface-primary",
                label: "Cookie preferences",
                text: "We use cookies to help this site function, understand service usage, and support marketing efforts.",
                buttons: vec![("Manage Cookies", ""), ("Reject non-essential", ""), ("Accept all", "")],
                button_class: "btn btn-secondary",
            },
            alert_text: "Your session has been refreshed.",
            confirm_text: "A new version of ChatGPT is available. Reload now?",
            popup_path: POPUP_PATH,
        },
        Site::Claude => Style {
            modal: ModalStyle {
                testid: "whats-new-dialog",
                class: "bg-bg-100 rounded-2xl border-0.5 border-border-300",
                backdrop_class: "fixed inset-0 z-modal bg-black/40",
                title: "What's new in Claude",
                text: "Claude can now search the web and keep projects in memory.",
                close_label: "Close",
                close_testid: "",
                close_class: "Button_ghost__BUAoh",
                cta: "Try it now",
                cta_class: "Button_primary__x2Hbt",
            },
            banner: BannerStyle {
                id: "",
                class: "fixed bottom-0 inset-x-0 z-50 bg-bg-000",
                label: "Cookie settings",
                text: "We use cookies to deliver and improve our services, analyze site usage, and if you agree, to customize or personalize your experience and market our services to you.",
                buttons: vec![
                    ("Customize cookie settings", ""),
                    ("Reject all cookies", ""),
                    ("Accept all cookies", ""),
                ],
                button_class: "Button_secondary__Teecd",
            },
            alert_text: "Claude was updated. Some features may need a refresh.",
            confirm_text: "Allow Claude to send you notifications?",
            popup_path: POPUP_PATH,
        },
        Site::Perplexity => Style {
            modal: ModalStyle {
                testid: "upsell-modal",
                class: "bg-base rounded-xl shadow-lg",
                backdrop_class: "fixed inset-0 z-40 bg-black/60",
                title: "Upgrade to Perplexity Pro",
                text: "Unlock more Pro searches, advanced models and file uploads.",
                close_label: "Close",
                close_testid: "",
                close_class: "bg-subtle rounded-full",
                cta: "Get Pro",
                cta_class: "bg-super text-white rounded-md",
            },
            banner: BannerStyle {
                id: "",
                class: "fixed bottom-0 inset-x-0 z-30 bg-base",
                label: "Cookie consent",
                text: "Perplexity uses cookies to improve your experience and to analyze traffic.",
                buttons: vec![("Necessary cookies only", ""), ("Accept all cookies", "")],
                button_class: "bg-subtle rounded-md",
            },
            alert_text: "Your Perplexity session was updated.",
            confirm_text: "Make Perplexity your default search engine?",
            popup_path: POPUP_PATH,
        },
        Site::GoogleAiOverview => Style {
            modal: ModalStyle {
                testid: "",
                class: "ZANVJd",
                backdrop_class: "Xm2Lf",
                title: "Try AI Mode",
                text: "Ask anything and get an AI-powered response with links to explore.",
                close_label: "Close",
                close_testid: "",
                close_class: "I6TNTb",
                cta: "Try AI Mode",
                cta_class: "YkKkn",
            },
            // Not the consent dialog's #W0wltc / #L2AGLb: the adapter takes those for the
            // consent wall (no Google session), which they are on the real site.
            banner: BannerStyle {
                id: "CXQnmb",
                class: "gws-notice",
                label: "Privacy reminder",
                text: "A privacy reminder from Google: review your privacy settings and how Google uses cookies.",
                buttons: vec![("Remind me later", ""), ("Review now", "")],
                button_class: "gws-notice-button",
            },
            alert_text: "Your Google search settings were saved.",
            confirm_text: "Make Google your default search engine?",
            popup_path: POPUP_PATH,
        },
    }
}

/// The `<script>` that sets `config`'s interruptions off on a page of `site`.
fn script(site: Site, config: &SimulatorConfig) -> String {
    let settings = serde_json::json!({
        "modal": config.modal,
        "banner": config.banner,
        "alert": config.alert,
        "confirm": config.confirm,
        "beforeunload": config.beforeunload,
        "new_window": config.new_window,
        "sticky": config.sticky,
        "style": style(site),
    });
    // `</` in a JSON string would end the script element early.
    let settings = settings.to_string().replace("</", "<\\/");
    format!("<script>window.aapSimInterruptions = {settings};\n{SCRIPT}</script>")
}

/// Puts the interruption script at the end of every HTML page the site serves (never on
/// `/__sim`). The script only reads the knobs and the prompt's markers: with every knob off and
/// no marker, it does nothing a page can see.
pub(crate) async fn inject(State(state): State<SimState>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/__sim") {
        return next.run(request).await;
    }
    let response = next.run(request).await;
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    if !html {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_PAGE_BYTES).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::warn!(%error, "cannot read a page to add the interruptions to");
            return (StatusCode::INTERNAL_SERVER_ERROR, "page too large").into_response();
        }
    };
    let page = String::from_utf8_lossy(&bytes);
    let script = script(state.site(), &state.config());
    let page = match page.rfind("</body>") {
        Some(end) => format!("{}{script}{}", &page[..end], &page[end..]),
        None => format!("{page}{script}"),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(page))
}

/// `GET /__sim/popup`: the page the new tab of `new_window` shows, the site's upgrade offer.
pub(crate) async fn popup(State(state): State<SimState>) -> Response {
    let title = crate::common::escape_html(state.site().title());
    let mut response = Html(format!(
        "<!DOCTYPE html><html lang=\"en-US\"><head><meta charset=\"utf-8\"><title>{title}: plans</title></head>\
         <body><h1>Upgrade your {title} plan</h1><p>This tab was opened by the page (aap simulator).</p></body></html>"
    ))
    .into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_gets_one_script_with_the_knobs_and_no_consent_ids() {
        for site in Site::ALL {
            let page = script(site, &SimulatorConfig { modal: true, ..SimulatorConfig::default() });
            assert!(page.starts_with("<script>window.aapSimInterruptions = {"));
            assert!(page.contains("\"modal\":true"));
            assert_eq!(page.matches("</script>").count(), 1, "{site}: one script element");
        }
        // The consent wall's ids would read as "no session" to the Google adapter.
        let google = script(Site::GoogleAiOverview, &SimulatorConfig { banner: true, ..SimulatorConfig::default() });
        assert!(!google.contains("L2AGLb") && !google.contains("W0wltc"));
    }
}
