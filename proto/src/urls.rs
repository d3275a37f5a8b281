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

fn is_tracking(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("utm_") || TRACKING_PARAMS.contains(&lower.as_str())
}

/// The destination of a known redirect wrapper, or `None` when `url` is not one.
///
/// Known wrappers: Google's `/url?q=` and `/url?url=` (search results, AI Overview references)
/// on any `google.*` host or a relative `/url?`, and Bing's and DuckDuckGo's `?u=`/`?uddg=` forms.
fn redirect_target(url: &Url) -> Option<String> {
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let host = host.strip_prefix("www.").unwrap_or(&host);
    let google = host.starts_with("google.") || host == "google";
    let param = match url.path() {
        "/url" if google => ["q", "url"].as_slice(),
        "/l/" | "/l.php" if host.ends_with("duckduckgo.com") => ["uddg"].as_slice(),
        _ => return None,
    };
    url.query_pairs()
        .find(|(name, value)| param.contains(&name.as_ref()) && value.starts_with("http"))
        .map(|(_, value)| value.into_owned())
}

/// The address with redirect wrappers unwrapped (up to three levels), `utm_*` and other
/// tracking parameters removed (the rest of the query keeps its order), and a text-highlight
/// fragment (`#:~:text=`) dropped. Text that is not an absolute URL comes back trimmed.
pub fn clean_url(raw: &str) -> String {
    let raw = raw.trim();
    let Ok(mut url) = Url::parse(raw) else {
        return raw.to_owned();
    };
    for _ in 0..3 {
        match redirect_target(&url).and_then(|target| Url::parse(&target).ok()) {
            Some(target) => url = target,
            None => break,
        }
    }
    if url.query().is_some() {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(name, _)| !is_tracking(name))
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
    if url.fragment().is_some_and(|fragment| fragment.starts_with(":~:")) {
        url.set_fragment(None);
    }
    url.to_string()
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
    fn domain_drops_www_only() {
        assert_eq!(domain_of("https://www.techradar.com/x"), "techradar.com");
        assert_eq!(domain_of("https://news.bbc.co.uk/x"), "news.bbc.co.uk");
        assert_eq!(domain_of("https://wwwx.example/"), "wwwx.example");
        assert_eq!(domain_of("nope"), "");
    }
}
