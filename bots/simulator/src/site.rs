//! Which assistant's site a simulator instance imitates.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One of the four assistant sites. Each simulator instance serves one site on its own origin,
/// as the real sites live on their own origins (cookies and localStorage stay apart).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Site {
    /// chatgpt.com
    ChatGpt,
    /// claude.ai
    Claude,
    /// perplexity.ai
    Perplexity,
    /// google.com search with its AI Overview
    GoogleAiOverview,
}

impl Site {
    /// Every site, in the platform's order.
    pub const ALL: [Site; 4] = [Site::ChatGpt, Site::Claude, Site::Perplexity, Site::GoogleAiOverview];

    /// The platform's lowercase assistant id: `chatgpt`, `claude`, `perplexity`,
    /// `google-ai-overview`.
    pub fn id(self) -> &'static str {
        match self {
            Site::ChatGpt => "chatgpt",
            Site::Claude => "claude",
            Site::Perplexity => "perplexity",
            Site::GoogleAiOverview => "google-ai-overview",
        }
    }

    /// The page variants this site serves (`SimulatorConfig::variant`), today's look-alike
    /// first. Each variant after `redesign` follows another public description of the real
    /// site; the site module's doc comment says which.
    pub fn variants(self) -> &'static [&'static str] {
        match self {
            Site::ChatGpt => crate::sites::chatgpt::VARIANTS,
            Site::Claude => crate::sites::claude::VARIANTS,
            Site::Perplexity => crate::sites::perplexity::VARIANTS,
            Site::GoogleAiOverview => crate::sites::google_ai_overview::VARIANTS,
        }
    }

    /// The product name a page shows.
    pub fn title(self) -> &'static str {
        match self {
            Site::ChatGpt => "ChatGPT",
            Site::Claude => "Claude",
            Site::Perplexity => "Perplexity",
            Site::GoogleAiOverview => "Google",
        }
    }

    /// The cookie that carries a logged-in session, named as on the real site.
    pub fn session_cookie(self) -> &'static str {
        match self {
            // Chromium accepts `__Secure-` cookies on http://127.0.0.1 when set with secure: true.
            Site::ChatGpt | Site::Perplexity => "__Secure-next-auth.session-token",
            Site::Claude => "sessionKey",
            Site::GoogleAiOverview => "__Secure-1PSID",
        }
    }

    /// Where the site's login form is (GET shows it, POST submits it), as on the real site where
    /// it has a page of its own (chatgpt.com/auth/login, claude.ai/login).
    pub fn login_path(self) -> &'static str {
        match self {
            Site::ChatGpt => "/auth/login",
            Site::Claude | Site::Perplexity => "/login",
            Site::GoogleAiOverview => "/ServiceLogin",
        }
    }

    /// Where a successful login lands: the page with the composer.
    pub fn app_path(self) -> &'static str {
        match self {
            Site::Claude => "/new",
            Site::ChatGpt | Site::Perplexity | Site::GoogleAiOverview => "/",
        }
    }

    /// One localStorage entry a logged-in profile of the site has (name, value).
    pub fn local_storage_entry(self) -> (&'static str, &'static str) {
        match self {
            Site::ChatGpt => ("oai/apps/hasSeenOnboarding/chat", "true"),
            Site::Claude => ("claude-onboarding-complete", "true"),
            Site::Perplexity => ("pplx.is-onboarded", "true"),
            Site::GoogleAiOverview => ("sb_wiz.zpc.gws-wiz-serp.", "{}"),
        }
    }
}

impl fmt::Display for Site {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// An unknown site name.
#[derive(Debug, thiserror::Error)]
#[error("unknown site {0:?} (known: chatgpt, claude, perplexity, google-ai-overview)")]
pub struct UnknownSite(pub String);

impl FromStr for Site {
    type Err = UnknownSite;

    fn from_str(text: &str) -> Result<Site, UnknownSite> {
        let key = text.trim().to_ascii_lowercase();
        Site::ALL
            .into_iter()
            .find(|site| site.id() == key || site.title().eq_ignore_ascii_case(&key))
            .or(match key.as_str() {
                "google" | "aio" | "google-aio" | "ai-overview" => Some(Site::GoogleAiOverview),
                _ => None,
            })
            .ok_or_else(|| UnknownSite(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_names_parse() -> Result<(), UnknownSite> {
        for site in Site::ALL {
            assert_eq!(site.id().parse::<Site>()?, site);
        }
        assert_eq!("ChatGPT".parse::<Site>()?, Site::ChatGpt);
        assert_eq!("google".parse::<Site>()?, Site::GoogleAiOverview);
        assert!("bard".parse::<Site>().is_err());
        Ok(())
    }
}
