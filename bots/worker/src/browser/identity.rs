//! The face a browser shows a site: its user agent, with the platform, client hints and
//! languages that must agree with it, and the proxy it comes through. A session keeps one face
//! for its whole life: a login that changes browser or address between two visits is what
//! bot defences look for.

use std::path::Path;

use sha2::{Digest, Sha256};
use tokio::process::Command;

use super::BrowserError;

/// Which user agent a browser presents.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UserAgent {
    /// Chrome's own user agent for this machine (Linux), never "HeadlessChrome".
    #[default]
    Native,
    /// Exactly this one: the operator's choice for the account.
    Exact(String),
    /// One of the current desktop Chrome user agents for the installed Chromium's major
    /// version, picked deterministically from the seed (the account id): an account always
    /// shows the same one, different accounts spread over several.
    Derived(String),
}

/// The installed Chromium's version, as `chromium --version` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChromiumVersion {
    /// E.g. 156.
    pub major: u32,
    /// E.g. "156.0.8078.79".
    pub full: String,
}

impl ChromiumVersion {
    /// Parses "Chromium 156.0.8078.79 built on Debian ..." (or "Google Chrome 156.0...").
    pub fn parse(text: &str) -> Option<ChromiumVersion> {
        let full = text
            .split_whitespace()
            .find(|word| word.split('.').count() == 4 && word.split('.').all(|part| part.parse::<u32>().is_ok()))?;
        let major = full.split('.').next()?.parse().ok()?;
        Some(ChromiumVersion { major, full: full.to_owned() })
    }

    /// Asks the binary (`<chromium> --version`).
    pub async fn of(chromium: &Path) -> Result<ChromiumVersion, BrowserError> {
        let output = Command::new(chromium)
            .arg("--version")
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| BrowserError::Spawn { path: chromium.to_path_buf(), source })?;
        let text = String::from_utf8_lossy(&output.stdout);
        ChromiumVersion::parse(&text)
            .ok_or_else(|| BrowserError::Version(format!("{}: {:?}", chromium.display(), text.trim())))
    }
}

/// A desktop platform a user agent may claim, and what scripts and client hints must then say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Platform {
    /// The UA's parenthesised platform part.
    ua: &'static str,
    /// `navigator.platform`.
    navigator: &'static str,
    /// `Sec-CH-UA-Platform` / `navigator.userAgentData.platform`.
    hint: &'static str,
    /// `Sec-CH-UA-Platform-Version`.
    hint_version: &'static str,
}

const WINDOWS: Platform =
    Platform { ua: "Windows NT 10.0; Win64; x64", navigator: "Win32", hint: "Windows", hint_version: "10.0.0" };
const MACOS: Platform =
    Platform { ua: "Macintosh; Intel Mac OS X 10_15_7", navigator: "MacIntel", hint: "macOS", hint_version: "14.7.1" };
const LINUX: Platform =
    Platform { ua: "X11; Linux x86_64", navigator: "Linux x86_64", hint: "Linux", hint_version: "" };

/// The platforms derived user agents are spread over, weighted roughly as desktop Chrome's
/// users are (Windows most).
const DERIVED_PLATFORMS: [Platform; 5] = [WINDOWS, WINDOWS, WINDOWS, MACOS, LINUX];

/// Chrome's reduced user agent (every Chrome since 110 sends the minor version as 0.0.0).
fn chrome_user_agent(platform: &Platform, major: u32) -> String {
    format!("Mozilla/5.0 ({}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{major}.0.0.0 Safari/537.36", platform.ua)
}

/// A user agent resolved with everything that must agree with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `User-Agent` header and `navigator.userAgent`.
    pub user_agent: String,
    /// `Accept-Language` and, from it, `navigator.languages`.
    pub accept_language: String,
    platform: Platform,
    /// Major version the user agent claims.
    major: u32,
    /// Full version for the high-entropy client hints.
    full_version: String,
}

impl Identity {
    /// Resolves a [`UserAgent`] choice against the installed Chromium.
    pub fn resolve(choice: &UserAgent, installed: &ChromiumVersion, accept_language: &str) -> Identity {
        let (user_agent, platform) = match choice {
            UserAgent::Native => (chrome_user_agent(&LINUX, installed.major), LINUX),
            UserAgent::Derived(seed) => {
                let digest = Sha256::digest(seed.as_bytes());
                let platform = DERIVED_PLATFORMS[usize::from(digest[0]) % DERIVED_PLATFORMS.len()];
                (chrome_user_agent(&platform, installed.major), platform)
            }
            // A session file may name a headless user agent; sites refuse those on sight.
            UserAgent::Exact(user_agent) => {
                (user_agent.trim().replace("HeadlessChrome/", "Chrome/"), platform_of(user_agent))
            }
        };
        // An operator's user agent may name another Chrome version: the hints follow it.
        let major = claimed_major(&user_agent).unwrap_or(installed.major);
        let full_version = if major == installed.major { installed.full.clone() } else { format!("{major}.0.0.0") };
        Identity { user_agent, accept_language: accept_language.to_owned(), platform, major, full_version }
    }

    /// `navigator.platform` as the user agent implies it.
    pub fn navigator_platform(&self) -> &'static str {
        self.platform.navigator
    }

    /// The first language of `Accept-Language`, for Chromium's `--lang`.
    pub fn language(&self) -> &str {
        self.accept_language.split([',', ';']).next().unwrap_or("en-US").trim()
    }

    /// Parameters of CDP `Emulation.setUserAgentOverride`: the user agent with the platform,
    /// languages and client hints (`navigator.userAgentData`, `Sec-CH-UA-*`) that match it.
    pub fn user_agent_override(&self) -> serde_json::Value {
        let major = self.major.to_string();
        let brands = |version: &str| {
            serde_json::json!([
                {"brand": "Chromium", "version": version},
                {"brand": "Google Chrome", "version": version},
                {"brand": "Not.A/Brand", "version": if version.contains('.') { "99.0.0.0" } else { "99" }},
            ])
        };
        serde_json::json!({
            "userAgent": self.user_agent,
            "acceptLanguage": self.accept_language,
            "platform": self.platform.navigator,
            "userAgentMetadata": {
                "brands": brands(&major),
                "fullVersionList": brands(&self.full_version),
                "fullVersion": self.full_version,
                "platform": self.platform.hint,
                "platformVersion": self.platform.hint_version,
                "architecture": if self.platform == MACOS { "arm" } else { "x86" },
                "model": "",
                "mobile": false,
                "bitness": "64",
                "wow64": false,
            },
        })
    }
}

/// The platform a user agent names; Linux when it names none we know.
fn platform_of(user_agent: &str) -> Platform {
    if user_agent.contains("Windows") {
        WINDOWS
    } else if user_agent.contains("Macintosh") || user_agent.contains("Mac OS X") {
        MACOS
    } else {
        LINUX
    }
}

/// The major version after "Chrome/" in a user agent.
fn claimed_major(user_agent: &str) -> Option<u32> {
    let rest = user_agent.split("Chrome/").nth(1)?;
    rest.split(['.', ' ']).next()?.parse().ok()
}

/// Checks a proxy URL and gives Chromium's `--proxy-server=` value: `http://`, `https://` or
/// `socks5://` with a host and a port. Credentials are refused: Chromium has no command-line
/// form for them and would ask in a dialog no bot answers. The error never repeats a password.
pub fn proxy_server(proxy: &str) -> Result<String, BrowserError> {
    let refuse = |reason: &str| BrowserError::Proxy(reason.to_owned());
    let url = url::Url::parse(proxy.trim()).map_err(|error| refuse(&format!("not a URL ({error})")))?;
    if !matches!(url.scheme(), "http" | "https" | "socks5") {
        return Err(refuse(&format!("scheme {:?} is not one of http, https, socks5", url.scheme())));
    }
    let host = url.host_str().filter(|host| !host.is_empty()).ok_or_else(|| refuse("no host"))?;
    let port = url.port_or_known_default().ok_or_else(|| refuse("no port"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse(&format!(
            "{}://{}:***@{host}:{port} has credentials, which Chromium cannot take on its command line",
            url.scheme(),
            url.username()
        )));
    }
    Ok(format!("{}://{host}:{port}", url.scheme()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installed() -> ChromiumVersion {
        ChromiumVersion { major: 156, full: "156.0.8078.79".into() }
    }

    #[test]
    fn versions_parse_from_what_chromium_prints() {
        assert_eq!(
            ChromiumVersion::parse("Chromium 156.0.8078.79 built on Debian GNU/Linux 12 (bookworm)\n"),
            Some(installed())
        );
        assert_eq!(ChromiumVersion::parse("Google Chrome 131.0.6778.85 ").map(|v| v.major), Some(131));
        assert_eq!(ChromiumVersion::parse("[: 1: unexpected operator"), None);
    }

    #[test]
    fn derived_user_agents_are_stable_per_account_match_the_installed_major_and_never_say_headless() {
        let a = Identity::resolve(&UserAgent::Derived("account-a".into()), &installed(), "en-US,en;q=0.9");
        let again = Identity::resolve(&UserAgent::Derived("account-a".into()), &installed(), "en-US,en;q=0.9");
        assert_eq!(a, again);
        assert!(a.user_agent.contains("Chrome/156.0.0.0"), "{}", a.user_agent);
        let spread: std::collections::HashSet<String> = (0..40)
            .map(|i| Identity::resolve(&UserAgent::Derived(format!("acct-{i}")), &installed(), "en").user_agent)
            .collect();
        assert!(spread.len() >= 2, "every account got the same user agent");
        for ua in &spread {
            assert!(!ua.contains("Headless"));
        }
        let native = Identity::resolve(&UserAgent::Native, &installed(), "en");
        assert_eq!(native.navigator_platform(), "Linux x86_64");
        assert!(!native.user_agent.contains("Headless"));
    }

    #[test]
    fn an_exact_user_agent_brings_its_own_platform_and_version_into_the_hints() {
        let ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/150.0.0.0 Safari/537.36";
        let identity = Identity::resolve(&UserAgent::Exact(ua.into()), &installed(), "de-DE,de;q=0.9");
        assert_eq!(identity.user_agent, ua);
        assert_eq!(identity.navigator_platform(), "MacIntel");
        assert_eq!(identity.language(), "de-DE");
        let params = identity.user_agent_override();
        assert_eq!(params["platform"], "MacIntel");
        assert_eq!(params["acceptLanguage"], "de-DE,de;q=0.9");
        assert_eq!(params["userAgentMetadata"]["platform"], "macOS");
        assert_eq!(params["userAgentMetadata"]["brands"][1]["version"], "150");
        let headless = UserAgent::Exact(ua.replace("Chrome/", "HeadlessChrome/"));
        assert_eq!(Identity::resolve(&headless, &installed(), "en").user_agent, ua);
    }

    #[test]
    fn proxies_become_chromium_arguments_and_credentials_are_refused_without_the_password() {
        assert_eq!(proxy_server("socks5://10.0.0.1:1080").ok().as_deref(), Some("socks5://10.0.0.1:1080"));
        assert_eq!(proxy_server(" http://proxy.example ").ok().as_deref(), Some("http://proxy.example:80"));
        for bad in ["proxy:1", "ftp://p:21", "socks5://p"] {
            assert!(proxy_server(bad).is_err(), "{bad:?}");
        }
        let error = proxy_server("http://bob:hunter2@proxy.example:3128").err().map(|e| e.to_string());
        let error = error.unwrap_or_default();
        assert!(error.contains("bob:***@proxy.example:3128") && !error.contains("hunter2"), "{error}");
    }
}
