//! What makes an account look like one person to the site, besides its cookies: the proxy its
//! browser goes through and the user agent it presents. Both stay with the account.

use url::Url;

/// Longest user agent accepted: real ones are under 200 characters.
const MAX_USER_AGENT: usize = 512;
/// Longest proxy URL accepted; a refusal may quote parts of it, so it must stay short.
const MAX_PROXY_URL: usize = 2048;

/// A proxy URL as an account keeps it: `http://`, `https://` or `socks5://`, a host and a port,
/// nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl(Url);

impl ProxyUrl {
    /// Parses and checks an operator's proxy URL; the reason is safe to show (it never repeats
    /// a password).
    ///
    /// Credentials are refused: Chromium takes a proxy on its command line
    /// (`--proxy-server=`) and has no place there for a user name and password; it would ask for
    /// them in a dialog no bot answers. Use a proxy that admits the bot's address, or a local
    /// forwarder that adds the credentials.
    pub fn parse(text: &str) -> Result<ProxyUrl, String> {
        let text = text.trim();
        if text.len() > MAX_PROXY_URL {
            return Err(format!("longer than {MAX_PROXY_URL} bytes"));
        }
        let url = Url::parse(text).map_err(|error| format!("not a URL ({error})"))?;
        if !matches!(url.scheme(), "http" | "https" | "socks5") {
            return Err(format!("scheme {:?} is not one of http, https, socks5", url.scheme()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err("has no host".to_owned());
        }
        // Written out, not the scheme's default: `url` forgets a default port (`http://p:80`
        // parses with no port), so the text is read, and a proxy on port 80 of whatever host
        // answers is too often a mistake for a URL without one to pass.
        if !has_explicit_port(text) {
            return Err("has no port: write it out, e.g. http://proxy.example:3128".to_owned());
        }
        if url.port_or_known_default() == Some(0) {
            return Err("has port 0, which no proxy listens on".to_owned());
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err("must be scheme://host:port, without a path, query or fragment".to_owned());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!(
                "{} has credentials, which Chromium cannot take on its command line: use a proxy that \
                 admits the bot's address, or a local forwarder that adds them",
                masked(&url)
            ));
        }
        Ok(ProxyUrl(url))
    }

    /// The URL as Chromium's `--proxy-server=` takes it: `scheme://host:port`.
    pub fn as_str(&self) -> String {
        let url = &self.0;
        let host = url.host_str().unwrap_or_default();
        match url.port_or_known_default() {
            Some(port) => format!("{}://{host}:{port}", url.scheme()),
            None => format!("{}://{host}", url.scheme()),
        }
    }

    /// The URL for operators' eyes, any password masked.
    pub fn display(&self) -> String {
        masked(&self.0)
    }
}

/// Whether the authority of `text` (a URL that parsed) ends in `:port`; an IPv6 host's colons
/// sit inside its brackets.
fn has_explicit_port(text: &str) -> bool {
    let rest = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, host_port)| host_port);
    host_port.rsplit_once(':').is_some_and(|(_, port)| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
}

/// `scheme://user:***@host:port`: the password never leaves the service.
fn masked(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().map(|port| format!(":{port}")).unwrap_or_default();
    let user = match (url.username(), url.password()) {
        ("", None) => String::new(),
        (user, None) => format!("{user}@"),
        (user, Some(_)) => format!("{user}:***@"),
    };
    format!("{}://{user}{host}{port}", url.scheme())
}

/// Checks an operator's user agent: one line of printable ASCII, never "Headless" (which gives
/// a headless browser away). Empty is fine: the bot derives one.
pub fn check_user_agent(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.len() > MAX_USER_AGENT {
        return Err(format!("longer than {MAX_USER_AGENT} bytes"));
    }
    if !text.bytes().all(|b| (b' '..=b'~').contains(&b)) {
        return Err("must be one line of printable ASCII".to_owned());
    }
    if text.to_ascii_lowercase().contains("headless") {
        return Err("names a headless browser, which sites refuse".to_owned());
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxies_need_a_known_scheme_a_host_and_a_port() {
        assert_eq!(
            ProxyUrl::parse(" socks5://10.1.2.3:1080 ").map(|p| p.as_str()),
            Ok("socks5://10.1.2.3:1080".into())
        );
        assert_eq!(
            ProxyUrl::parse("http://proxy.example:80").map(|p| p.as_str()),
            Ok("http://proxy.example:80".into())
        );
        assert_eq!(ProxyUrl::parse("http://[::1]:3128").map(|p| p.as_str()), Ok("http://[::1]:3128".into()));
        assert_eq!(
            ProxyUrl::parse("https://p.example:8443/").map(|p| p.display()),
            Ok("https://p.example:8443".into())
        );
        let bad = [
            "",
            "proxy:8080",
            "ftp://p:21",
            "socks5://p",
            "http://p:1/x",
            "http://p:1?a=b",
            "socks4://p:1",
            "http://h",
            "https://h/",
            "http://h:",
            "http://[::1]",
            "http://[::1]/",
            "http://proxy.example:0",
            "socks5://10.0.0.7:00",
        ];
        for bad in bad {
            assert!(ProxyUrl::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn credentials_are_refused_without_repeating_the_password() {
        let Err(reason) = ProxyUrl::parse("http://alice:s3cret@proxy.example:3128") else {
            panic!("credentials accepted");
        };
        assert!(reason.contains("alice:***@proxy.example:3128"), "{reason}");
        assert!(!reason.contains("s3cret"), "{reason}");
    }

    #[test]
    fn user_agents_are_one_printable_line_and_never_headless() {
        let ua =
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
        assert_eq!(check_user_agent(ua).as_deref(), Ok(ua));
        assert_eq!(check_user_agent("").as_deref(), Ok(""));
        assert!(check_user_agent(&ua.replace("Chrome/", "HeadlessChrome/")).is_err());
        assert!(check_user_agent("a\nb").is_err());
        assert!(check_user_agent(&"x".repeat(600)).is_err());
    }
}
