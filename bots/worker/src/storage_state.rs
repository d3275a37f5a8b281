//! Playwright storage state: the logged-in browser state operators upload for an account
//! (`{"cookies": [...], "origins": [{"origin", "localStorage": [{"name", "value"}]}]}`).

use serde::{Deserialize, Serialize};

/// A parsed storage state.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageState {
    /// Cookies of every site the profile visited.
    #[serde(default)]
    pub cookies: Vec<StoredCookie>,
    /// localStorage per origin.
    #[serde(default)]
    pub origins: Vec<StoredOrigin>,
}

/// One cookie as Playwright saves it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredCookie {
    /// Cookie name.
    pub name: String,
    /// Cookie value.
    pub value: String,
    /// Domain, e.g. `.chatgpt.com` (leading dot: subdomains too).
    #[serde(default)]
    pub domain: String,
    /// Path, `/` when absent.
    #[serde(default)]
    pub path: Option<String>,
    /// Unix seconds; -1 (or absent) for a session cookie.
    #[serde(default)]
    pub expires: Option<f64>,
    /// Not readable from scripts.
    #[serde(default)]
    pub http_only: Option<bool>,
    /// Sent over secure connections only; required for `__Secure-` names.
    #[serde(default)]
    pub secure: Option<bool>,
    /// `Strict`, `Lax` or `None`.
    #[serde(default)]
    pub same_site: Option<String>,
}

/// The localStorage of one origin.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredOrigin {
    /// E.g. `https://chatgpt.com`.
    pub origin: String,
    /// Entries in insertion order.
    #[serde(default)]
    pub local_storage: Vec<StoredEntry>,
}

/// One localStorage entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct StoredEntry {
    /// Key.
    pub name: String,
    /// Value.
    pub value: String,
}

impl StorageState {
    /// Parses the JSON text of a storage state.
    pub fn parse(json: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(json)
    }

    /// The cookies a page on `host` receives: the cookie's domain is the host or, with or
    /// without its leading dot, a parent domain of it.
    pub fn cookies_for_host<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a StoredCookie> + 'a {
        self.cookies.iter().filter(move |cookie| domain_matches(&cookie.domain, host))
    }

    /// The localStorage entries saved for `origin` (compared without a trailing slash).
    pub fn local_storage_for(&self, origin: &str) -> Vec<&StoredEntry> {
        let origin = origin.trim_end_matches('/');
        self.origins
            .iter()
            .filter(|o| o.origin.trim_end_matches('/').eq_ignore_ascii_case(origin))
            .flat_map(|o| o.local_storage.iter())
            .collect()
    }
}

fn domain_matches(cookie_domain: &str, host: &str) -> bool {
    let domain = cookie_domain.trim().trim_start_matches('.').to_ascii_lowercase();
    let host = host.to_ascii_lowercase();
    domain.is_empty() || host == domain || host.ends_with(&format!(".{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = r#"{
        "cookies": [
            {"name": "__Secure-next-auth.session-token", "value": "tok", "domain": ".chatgpt.com",
             "path": "/", "expires": 1798000000.5, "httpOnly": true, "secure": true, "sameSite": "Lax"},
            {"name": "other", "value": "x", "domain": "accounts.google.com", "path": "/", "expires": -1,
             "httpOnly": false, "secure": true, "sameSite": "None"}
        ],
        "origins": [{"origin": "https://chatgpt.com", "localStorage": [{"name": "k", "value": "v"}]}]
    }"#;

    #[test]
    fn picks_the_cookies_and_storage_of_one_site() -> Result<(), serde_json::Error> {
        let state = StorageState::parse(STATE)?;
        let names: Vec<_> = state.cookies_for_host("chatgpt.com").map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["__Secure-next-auth.session-token"]);
        assert_eq!(state.cookies_for_host("auth.chatgpt.com").count(), 1);
        assert_eq!(state.cookies_for_host("notchatgpt.com").count(), 0);
        assert_eq!(state.local_storage_for("https://chatgpt.com/").len(), 1);
        assert!(state.local_storage_for("http://127.0.0.1:9").is_empty());
        assert_eq!(StorageState::parse("{}")?, StorageState::default());
        Ok(())
    }
}
