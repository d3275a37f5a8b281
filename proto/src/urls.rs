//! Source addresses as the contract defines them (`Citation.url`): redirect wrappers unwrapped,
//! tracking parameters removed; `Citation.domain` is the host without `www.`.
//!
//! Bots clean what they capture and the gateway cleans again what any bot (including the seed's
//! HTTP bots) submits, with these same functions, so a stored URL never depends on who sent it.

use url::Url;

/// Query parameters that only say where a click came from, never which page it is.
const TRACKING_PARAMS: &[&str] = &[
    "gclid",
    "gclsrc",
    "dclid",
    "gbraid",
    "wbraid",
    "fbclid",
    "msclkid",
    "yclid",
    "twclid",
    "ttclid",
    "igshid",
    "mc_cid",
    "mc_eid",
    "_hsenc",
    "_hsmi",
    "mkt_tok",
    "srsltid",
    "ref_src",
    "ref_url",
    "oly_anon_id",
    "oly_enc_id",
    "vero_conv",
    "vero_id",
    "__s",
    "s_cid",
];

/// Parameters that name where a click came from by their value: dropped when the value names
/// an assistant (`ref=chatgpt.com`, `source=perplexity`), kept otherwise (`ref=v2` may be the
/// page itself).
const ATTRIBUTION_PARAMS: &[&str] = &["ref", "source", "src", "via", "referrer"];

/// Names and hosts of the assistants as they appear in attribution values.
const ASSISTANT_NAMES: &[&str] = &["chatgpt", "openai", "perplexity", "claude", "anthropic", "gemini", "copilot"];

fn is_tracking(name: &str, value: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("utm_") || TRACKING_PARAMS.contains(&lower.as_str()) {
        return true;
    }
    let value = value.to_ascii_lowercase();
    ATTRIBUTION_PARAMS.contains(&lower.as_str()) && ASSISTANT_NAMES.iter().any(|name| value.contains(name))
}

/// Hosts (and their subdomains) that are assistants' own apps: a link there is the assistant's
/// page (a conversation, a thread, a share link), never a source it read.
const ASSISTANT_HOSTS: &[&str] = &[
    "chatgpt.com",
    "chat.openai.com",
    "claude.ai",
    "perplexity.ai",
    "pplx.ai",
    "gemini.google.com",
    "copilot.microsoft.com",
];

/// Whether `url` (cleaned) is an assistant's own page rather than a source: chatgpt.com,
/// claude.ai and perplexity.ai pages (threads, share links, sign-in), and search engine result
/// pages (`google.*/search`, an unwrapped `/url` redirect, `bing.com/search`), and addresses
/// of other schemes (`javascript:`, ChatGPT's `sandbox:` files). Text that does not parse as an
/// absolute URL is left to the caller (the gateway keeps it as sent).
pub fn is_assistant_page(url: &str) -> bool {
    let Ok(url) = Url::parse(url.trim()) else {
        return false;
    };
    if !matches!(url.scheme(), "http" | "https") {
        return true;
    }
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    if ASSISTANT_HOSTS.iter().any(|own| host == *own || host.ends_with(&format!(".{own}"))) {
        return true;
    }
    let bare = host.strip_prefix("www.").unwrap_or(host);
    let google = bare.starts_with("google.") || bare == "google";
    let path = url.path();
    (google && matches!(path, "/search" | "/url" | "/sorry/index" | "/webhp" | "/"))
        || (bare == "bing.com" && matches!(path, "/search" | "/ck/a"))
        || (bare == "duckduckgo.com" && matches!(path, "/" | "/l/"))
}

/// The web address (http or https) a known redirect wrapper leads to, or `None` when `url` is
/// not one or leads elsewhere (`javascript:`).
///
/// Known wrappers: Google's `/url?q=` and `/url?url=` (search results, AI Overview references)
/// on any `google.*` host, Bing's `/ck/a?u=a1<base64url>`, DuckDuckGo's `/l/?uddg=` and
/// Facebook's `l.php?u=`.
fn redirect_target(url: &Url) -> Option<Url> {
    let web = |target: &str| Url::parse(target).ok().filter(|t| matches!(t.scheme(), "http" | "https"));
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    let google = host.starts_with("google.") || host == "google";
    let param = match url.path() {
        "/url" if google => ["q", "url"].as_slice(),
        "/ck/a" if host == "bing.com" => {
            return url.query_pairs().find(|(name, _)| name == "u").and_then(|(_, value)| web(&bing_target(&value)?));
        }
        "/l/" | "/l.php" if host.ends_with("duckduckgo.com") => ["uddg"].as_slice(),
        "/l.php" if host.ends_with("facebook.com") => ["u"].as_slice(),
        _ => return None,
    };
    url.query_pairs().filter(|(name, _)| param.contains(&name.as_ref())).find_map(|(_, value)| web(&value))
}

/// Most redirect wrappers unwrapped around one address. Real links nest two at most; a deeper
/// nest is kept as it came (a wrapper, so no source), which keeps cleaning idempotent: whatever
/// the depth, cleaning a cleaned address changes nothing.
const MAX_REDIRECTS: usize = 8;

/// Bing's `u` parameter: `a1` and the target URL in unpadded base64url.
fn bing_target(value: &str) -> Option<String> {
    use base64::Engine as _;
    let encoded = value.strip_prefix("a1")?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')).ok()?;
    String::from_utf8(bytes).ok()
}

/// A fragment made of `name=value` pairs that are all tracking (`#utm_source=x&utm_medium=y`,
/// as some newsletters and assistants append), or a text highlight (`#:~:text=`), or both: it
/// points into the page, not at another page.
fn is_tracking_fragment(fragment: &str) -> bool {
    if fragment.starts_with(":~:") {
        return true;
    }
    let pairs: Vec<&str> = fragment.split(['&', ';']).filter(|pair| !pair.is_empty()).collect();
    !pairs.is_empty()
        && pairs.iter().all(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            name.starts_with(":~:") || is_tracking(name, value)
        })
}

/// The address with redirect wrappers unwrapped (up to [`MAX_REDIRECTS`] levels; a deeper nest
/// stays wrapped), `utm_*` and other tracking parameters removed wherever they sit (query or fragment, any case, percent-encoded
/// names; the rest of the query keeps its order), attribution parameters naming an assistant
/// (`ref=chatgpt.com`) removed, and a text-highlight fragment (`#:~:text=`) dropped. A
/// protocol-relative address (`//host/path`) is read as https. Text that is not an absolute URL
/// comes back trimmed.
pub fn clean_url(raw: &str) -> String {
    let raw = raw.trim();
    let parsed = match raw.strip_prefix("//") {
        Some(rest) => Url::parse(&format!("https://{rest}")),
        None => Url::parse(raw),
    };
    let Ok(mut url) = parsed else {
        return raw.to_owned();
    };
    let mut target = url.clone();
    for depth in 0..=MAX_REDIRECTS {
        match redirect_target(&target) {
            Some(next) if depth < MAX_REDIRECTS => target = next,
            Some(_) => break,
            None => {
                url = target;
                break;
            }
        }
    }
    if url.query().is_some() {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(name, value)| !is_tracking(name, value))
            .map(|(n, v)| (n.into_owned(), v.into_owned()))
            .collect();
        if kept.is_empty() {
            url.set_query(None);
        } else {
            url.query_pairs_mut().clear().extend_pairs(kept);
        }
    }
    // A fragment that only carries a text highlight is a pointer into the page, not a different
    // page.
    if url.fragment().is_some_and(is_tracking_fragment) {
        url.set_fragment(None);
    }
    url.to_string()
}

/// Checks that `raw` is an address a reader can follow: an absolute `http` or `https` URL with a
/// host, surrounding white space aside (a protocol-relative `//host/path` is read as https, as
/// [`clean_url`] reads it). Anything else (`javascript:` or `data:` URLs, a relative path,
/// words) is refused, since citations and evidence are shown as links in the console. The
/// reason names the scheme (cut short), never the whole text.
pub fn check_web_url(raw: &str) -> Result<(), String> {
    let raw = raw.trim();
    let parsed = match raw.strip_prefix("//") {
        Some(rest) => Url::parse(&format!("https://{rest}")),
        None => Url::parse(raw),
    };
    match parsed {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            let scheme: String = url.scheme().chars().take(32).collect();
            Err(format!("is a {scheme}: URL, not an http or https one"))
        }
        Ok(url) if url.host_str().is_none_or(str::is_empty) => Err("has no host".to_owned()),
        Ok(_) => Ok(()),
        Err(error) => Err(format!("is not an absolute http or https URL ({error})")),
    }
}

/// The host of `url` without a leading `www.`; empty when the text has no host.
pub fn domain_of(url: &str) -> String {
    Url::parse(url.trim())
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .map(|host| host.strip_prefix("www.").map(str::to_owned).unwrap_or(host))
        .unwrap_or_default()
}

#[cfg(test)]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utm_and_click_ids_are_removed_and_other_parameters_kept_in_order() {
        assert_eq!(
            clean_url("https://www.techradar.com/best/laptops?utm_source=chatgpt.com"),
            "https://www.techradar.com/best/laptops"
        );
        assert_eq!(
            clean_url("https://shop.example/p?id=7&utm_medium=x&page=2&fbclid=abc&UTM_Campaign=y"),
            "https://shop.example/p?id=7&page=2"
        );
        assert_eq!(clean_url("https://a.example/x#:~:text=laptops"), "https://a.example/x");
        assert_eq!(clean_url("https://a.example/x#section"), "https://a.example/x#section");
        assert_eq!(clean_url("  not a url "), "not a url");
    }

    #[test]
    fn redirect_wrappers_are_unwrapped_before_cleaning() {
        assert_eq!(
            clean_url(
                "https://www.google.com/url?sa=t&source=web&rct=j&url=https://www.rtings.com/laptop%3Futm_source%3Dx%26id%3D4&ved=2a"
            ),
            "https://www.rtings.com/laptop?id=4"
        );
        assert_eq!(clean_url("https://google.de/url?q=https://example.org/a&sa=U"), "https://example.org/a");
        assert_eq!(
            clean_url("https://duckduckgo.com/l/?uddg=https%3A%2F%2Fexample.org%2Fb&rut=1"),
            "https://example.org/b"
        );
        // Not a wrapper: a page on google.com that happens to have a q parameter.
        assert_eq!(clean_url("https://www.google.com/search?q=laptops"), "https://www.google.com/search?q=laptops");
        // A wrapper whose target is not a web address stays as it is (minus tracking).
        assert_eq!(
            clean_url("https://www.google.com/url?q=javascript:alert(1)"),
            "https://www.google.com/url?q=javascript%3Aalert%281%29"
        );
    }

    #[test]
    fn tracking_is_removed_whatever_its_form() {
        // Percent-encoded names, mixed case, a fragment of tracking pairs, attribution values.
        assert_eq!(clean_url("https://a.example/x?utm%5Fsource=chatgpt.com&id=2"), "https://a.example/x?id=2");
        assert_eq!(clean_url("https://a.example/x#utm_source=perplexity&utm_medium=chip"), "https://a.example/x");
        assert_eq!(clean_url("https://a.example/x?ref=chatgpt.com"), "https://a.example/x");
        assert_eq!(clean_url("https://a.example/x?source=Perplexity.AI&page=2"), "https://a.example/x?page=2");
        assert_eq!(clean_url("https://a.example/x?ref=v2"), "https://a.example/x?ref=v2");
        assert_eq!(clean_url("//a.example/x?utm_source=claude.ai"), "https://a.example/x");
        assert_eq!(clean_url("HTTPS://A.EXAMPLE/x?UTM_SOURCE=y"), "https://a.example/x");
        assert_eq!(clean_url("https://a.example/x#:~:text=best%20laptops"), "https://a.example/x");
        // Bing's base64url wrapper, and a wrapper inside a wrapper.
        assert_eq!(
            clean_url(
                "https://www.bing.com/ck/a?!&&p=abc&u=a1aHR0cHM6Ly93d3cucnRpbmdzLmNvbS9sYXB0b3A_dXRtX3NvdXJjZT14&ntb=1"
            ),
            "https://www.rtings.com/laptop"
        );
        assert_eq!(
            clean_url(
                "https://www.google.com/url?q=https%3A%2F%2Fduckduckgo.com%2Fl%2F%3Fuddg%3Dhttps%253A%252F%252Fexample.org%252Fc%253Futm_medium%253Dx"
            ),
            "https://example.org/c"
        );
    }

    #[test]
    fn assistant_pages_are_told_from_sources() {
        for own in [
            "https://www.perplexity.ai/search/best-laptops-Xy1",
            "https://perplexity.ai/page/foo",
            "https://chatgpt.com/c/6767",
            "https://chat.openai.com/share/abc",
            "https://claude.ai/chat/1234",
            "https://www.google.com/search?q=laptops",
            "https://www.google.co.uk/search?q=laptops",
            "https://www.bing.com/search?q=x",
            "javascript:void(0)",
            "sandbox:/mnt/data/file.csv",
        ] {
            assert!(is_assistant_page(own), "{own}");
        }
        for source in [
            "https://www.rtings.com/laptop",
            "https://openai.com/index/gpt-5",
            "https://docs.anthropic.com/en/docs",
            "https://support.google.com/websearch/answer/1",
            "https://blog.perplexity.ai.example.com/x",
            "https://notperplexity.ai/x",
            "not a url",
        ] {
            assert!(!is_assistant_page(source), "{source}");
        }
    }

    #[test]
    fn only_absolute_web_addresses_pass_the_web_url_check() {
        for ok in ["https://example.com/a?b=1", "http://e.example", " https://e.example/ ", "//cdn.example/x"] {
            assert_eq!(check_web_url(ok), Ok(()), "{ok:?}");
        }
        assert_eq!(check_web_url("javascript:alert(1)"), Err("is a javascript: URL, not an http or https one".into()));
        for bad in
            ["not a url", "data:text/html,x", "/relative", "mailto:a@b.example", "https://", "", "file:///etc/passwd"]
        {
            assert!(check_web_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn domain_drops_www_only() {
        assert_eq!(domain_of("https://www.techradar.com/x"), "techradar.com");
        assert_eq!(domain_of("https://news.bbc.co.uk/x"), "news.bbc.co.uk");
        assert_eq!(domain_of("https://wwwx.example/"), "wwwx.example");
        assert_eq!(domain_of("nope"), "");
    }
}
