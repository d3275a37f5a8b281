//! Playwright storage state: the logged-in browser state operators upload for an account
//! (`{"cookies": [...], "origins": [{"origin", "localStorage": [{"name", "value"}]}]}`), the
//! format of the seed's session files.
//!
//! One definition for both sides: a bot reads a leased state with [`StorageState::parse`], and
//! the platform and `aap session import` take an uploaded one only when [`check`] passes, which
//! reads it with the same types. A state a bot could not load is refused when it is uploaded,
//! naming what is wrong, rather than failing the first bot that leases it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    /// Parses the JSON text of a storage state, as a bot loads it into its browser.
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

/// Checks an uploaded storage state: one a bot can load ([`StorageState::parse`] reads it) with
/// a `cookies` array (Playwright always writes one; JSON without it is some other document).
/// The reason names the place that is wrong in lowercase words, e.g. `cookies[0] is not a
/// cookie (...): invalid type: integer `1`, ...`; the caller names the field.
pub fn check(json: &str) -> Result<StorageState, String> {
    let value: Value = serde_json::from_str(json).map_err(|error| format!("not JSON: {error}"))?;
    if !value.is_object() {
        return Err("must be a JSON object".to_owned());
    }
    // The text, not the value, as a bot reads it: a repeated key reads differently.
    let state = StorageState::parse(json).map_err(|error| explain(&value, &error))?;
    if !value.get("cookies").is_some_and(Value::is_array) {
        return Err("must have a \"cookies\" array (Playwright storage state)".to_owned());
    }
    Ok(state)
}

const COOKIE: &str = "an object with name and value strings (and optionally domain, path and sameSite strings, \
                      expires a number, httpOnly and secure true or false)";
const ORIGIN: &str = "an object with an origin string and a localStorage array";
const ENTRY: &str = "an object with name and value strings";

/// Where a storage state the parser refused goes wrong, found by reading its parts with the
/// parser's own types; the parser's words when no single part is to blame.
fn explain(value: &Value, error: &serde_json::Error) -> String {
    let Some(object) = value.as_object() else {
        return format!("not a Playwright storage state: {error}");
    };
    if let Some(cookies) = object.get("cookies") {
        let Some(cookies) = cookies.as_array() else {
            return "\"cookies\" must be an array".to_owned();
        };
        for (index, cookie) in cookies.iter().enumerate() {
            if let Err(error) = StoredCookie::deserialize(cookie) {
                return format!("cookies[{index}] is not {COOKIE}: {error}");
            }
        }
    }
    if let Some(origins) = object.get("origins") {
        let Some(origins) = origins.as_array() else {
            return "\"origins\" must be an array".to_owned();
        };
        for (index, origin) in origins.iter().enumerate() {
            if let Some(Value::Array(entries)) = origin.get("localStorage") {
                for (entry_index, entry) in entries.iter().enumerate() {
                    if let Err(error) = StoredEntry::deserialize(entry) {
                        return format!("origins[{index}].localStorage[{entry_index}] is not {ENTRY}: {error}");
                    }
                }
            }
            if let Err(error) = StoredOrigin::deserialize(origin) {
                return format!("origins[{index}] is not {ORIGIN}: {error}");
            }
        }
    }
    format!("not a Playwright storage state: {error}")
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

    #[test]
    fn an_upload_a_bot_could_not_load_is_refused_naming_the_place() {
        assert_eq!(check(STATE).map(|state| state.cookies.len()), Ok(2));
        assert!(check(r#"{"cookies": [], "extra": {"unknown": true}}"#).is_ok(), "unknown fields are ignored");
        let refused = |json: &str| check(json).expect_err(json);
        // The probe's state: the first bad cookie is named.
        let probe = refused(r#"{"cookies":[1,"two",{"name":"x"}],"origins":"notalist"}"#);
        assert!(probe.starts_with("cookies[0] is not an object with name and value strings"), "{probe}");
        let no_value = refused(r#"{"cookies":[{"name":"x"}]}"#);
        assert!(no_value.starts_with("cookies[0] ") && no_value.ends_with("missing field `value`"), "{no_value}");
        assert!(refused(r#"{"cookies":[{"name":"a","value":"b","expires":"soon"}]}"#).starts_with("cookies[0] "));
        assert!(
            refused(r#"{"cookies":[{"name":"a","value":"b"},{"name":"c","value":"d","secure":"yes"}]}"#)
                .starts_with("cookies[1] ")
        );
        assert_eq!(refused(r#"{"cookies":[],"origins":"notalist"}"#), "\"origins\" must be an array");
        assert!(refused(r#"{"cookies":[],"origins":[{"localStorage":[]}]}"#).contains("origins[0] is not"));
        let entry = refused(r#"{"cookies":[],"origins":[{"origin":"o","localStorage":[{"name":"k","value":1}]}]}"#);
        assert!(entry.starts_with("origins[0].localStorage[0] is not"), "{entry}");
        assert_eq!(refused(r#"{"cookies": null}"#), "\"cookies\" must be an array");
        assert!(refused(r#"{"origins": []}"#).contains("\"cookies\" array"));
        assert_eq!(refused("[]"), "must be a JSON object");
        assert!(refused("{not json").starts_with("not JSON: "));
        assert!(refused(r#"{"cookies": [], "cookies": []}"#).starts_with("not a Playwright storage state: duplicate"));
    }
}
