//! The storage state of a logged-in browser, written as Playwright writes it
//! (`context.storage_state()`), which the seed's bot and [`StorageState::parse`] read back.

use serde_json::Value;

use crate::storage_state::{StorageState, StoredCookie, StoredEntry, StoredOrigin};

/// A storage state from CDP's cookies (`Storage.getCookies` / `Network.getAllCookies`) and the
/// localStorage read on each origin (origins without entries are left out, as Playwright does).
pub fn from_cdp(cookies: &[Value], local_storage: Vec<(String, Vec<(String, String)>)>) -> StorageState {
    let cookies = cookies
        .iter()
        .filter_map(|cookie| {
            let text = |name: &str| cookie.get(name).and_then(Value::as_str).map(str::to_owned);
            let flag = |name: &str| cookie.get(name).and_then(Value::as_bool).unwrap_or(false);
            let session = flag("session");
            Some(StoredCookie {
                name: text("name")?,
                value: text("value")?,
                domain: text("domain").unwrap_or_default(),
                path: Some(text("path").unwrap_or_else(|| "/".to_owned())),
                expires: Some(if session {
                    -1.0
                } else {
                    cookie.get("expires").and_then(Value::as_f64).unwrap_or(-1.0)
                }),
                http_only: Some(flag("httpOnly")),
                secure: Some(flag("secure")),
                // Chromium treats a cookie without the attribute as Lax; Playwright writes Lax.
                same_site: Some(text("sameSite").unwrap_or_else(|| "Lax".to_owned())),
            })
        })
        .collect();
    let origins = local_storage
        .into_iter()
        .filter(|(_, entries)| !entries.is_empty())
        .map(|(origin, entries)| StoredOrigin {
            origin: origin.trim_end_matches('/').to_owned(),
            local_storage: entries.into_iter().map(|(name, value)| StoredEntry { name, value }).collect(),
        })
        .collect();
    StorageState { cookies, origins }
}

/// The JSON text of `state`, pretty as Playwright saves it.
pub fn to_json(state: &StorageState) -> String {
    serde_json::to_string_pretty(state).unwrap_or_else(|_| "{\"cookies\":[],\"origins\":[]}".to_owned())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn cdp_cookies_and_local_storage_become_a_playwright_storage_state() -> Result<(), serde_json::Error> {
        let cookies = vec![
            json!({ "name": "__Secure-next-auth.session-token", "value": "tok", "domain": "127.0.0.1", "path": "/",
                    "expires": 1.9e9, "size": 3, "httpOnly": true, "secure": true, "session": false, "sameSite": "Lax" }),
            json!({ "name": "oai-did", "value": "d", "domain": ".auth.openai.com", "path": "/", "expires": -1,
                    "httpOnly": false, "secure": false, "session": true }),
            json!({ "value": "nameless" }),
        ];
        let state = from_cdp(
            &cookies,
            vec![
                (
                    "http://127.0.0.1:4000/".to_owned(),
                    vec![("oai/apps/hasSeenOnboarding/chat".to_owned(), "true".to_owned())],
                ),
                ("https://auth.openai.com".to_owned(), vec![]),
            ],
        );
        let written: Value = serde_json::from_str(&to_json(&state))?;
        assert_eq!(
            written,
            json!({
                "cookies": [
                    { "name": "__Secure-next-auth.session-token", "value": "tok", "domain": "127.0.0.1", "path": "/",
                      "expires": 1.9e9, "httpOnly": true, "secure": true, "sameSite": "Lax" },
                    { "name": "oai-did", "value": "d", "domain": ".auth.openai.com", "path": "/", "expires": -1.0,
                      "httpOnly": false, "secure": false, "sameSite": "Lax" },
                ],
                "origins": [{ "origin": "http://127.0.0.1:4000",
                              "localStorage": [{ "name": "oai/apps/hasSeenOnboarding/chat", "value": "true" }] }],
            })
        );
        let parsed = StorageState::parse(&to_json(&state))?;
        assert_eq!(parsed, state);
        assert_eq!(parsed.cookies_for_host("127.0.0.1").count(), 1);
        Ok(())
    }
}
