//! Source addresses as the platform stores them: tracking parameters removed, domain without `www.`.

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

/// The address without `utm_*` and other tracking parameters; the rest of the query keeps its
/// order. Text that is not an absolute URL comes back trimmed but otherwise unchanged.
pub fn clean_url(raw: &str) -> String {
    let raw = raw.trim();
    let Ok(mut url) = Url::parse(raw) else {
        return raw.to_owned();
    };
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
    // A fragment that only carries a text highlight (`#:~:text=`) is a pointer into the page, not
    // a different page.
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
    fn domain_drops_www_only() {
        assert_eq!(domain_of("https://www.techradar.com/x"), "techradar.com");
        assert_eq!(domain_of("https://news.bbc.co.uk/x"), "news.bbc.co.uk");
        assert_eq!(domain_of("https://wwwx.example/"), "wwwx.example");
        assert_eq!(domain_of("nope"), "");
    }
}
