//! Property tests of the URL cleaner: arbitrary text and generated addresses (tracking
//! parameters in every spelling, redirect wrappers nested deeper than anyone sends, odd ports,
//! NUL, other schemes). `PROPTEST_CASES` sets the number of cases (`just fuzz` runs many more).

use base64::Engine as _;
use proptest::prelude::*;

use super::*;

/// A query parameter name: tracking ones in several spellings, and ordinary ones.
fn param_name() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(TRACKING_PARAMS).prop_map(str::to_owned),
        proptest::sample::select(ATTRIBUTION_PARAMS).prop_map(str::to_owned),
        "utm_[a-z]{0,8}",
        "UTM_[A-Z]{1,8}",
        Just("utm%5Fsource".to_owned()),
        Just("GCLID".to_owned()),
        "[a-z]{1,6}",
        ".{0,6}",
    ]
}

/// A parameter value: assistant names (which make attribution parameters tracking), text with
/// separators and escapes, and anything.
fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(ASSISTANT_NAMES).prop_map(|name| format!("{name}.com")),
        "[a-zA-Z0-9]{0,8}",
        "[%&=#?+ ;/:]{0,6}",
        ".{0,10}",
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop::collection::vec((param_name(), param_value(), any::<bool>()), 0..6).prop_map(|pairs| {
        pairs
            .into_iter()
            .map(|(name, value, with_value)| if with_value { format!("{name}={value}") } else { name })
            .collect::<Vec<_>>()
            .join("&")
    })
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(ASSISTANT_HOSTS).prop_map(str::to_owned),
        Just("www.google.com".to_owned()),
        Just("google.co.uk".to_owned()),
        Just("www.bing.com".to_owned()),
        Just("duckduckgo.com".to_owned()),
        Just("l.facebook.com".to_owned()),
        Just("EXAMPLE.com.".to_owned()),
        Just("127.0.0.1".to_owned()),
        Just("[::1]".to_owned()),
        Just("bücher.example".to_owned()),
        "[a-z0-9-]{1,10}(\\.[a-z]{2,4}){0,2}",
        ".{0,8}",
    ]
}

fn port() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(":".to_owned()),
        Just(":0".to_owned()),
        Just(":443".to_owned()),
        Just(":65535".to_owned()),
        Just(":65536".to_owned()),
        Just(":99999999999".to_owned()),
        Just(":-1".to_owned()),
        ":[0-9a-z]{1,6}",
    ]
}

fn scheme() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("https://".to_owned()),
        2 => Just("http://".to_owned()),
        1 => Just("HTTPS://".to_owned()),
        1 => Just("//".to_owned()),
        1 => Just("javascript:".to_owned()),
        1 => Just("sandbox:".to_owned()),
        1 => Just("ftp://".to_owned()),
        1 => Just("httpx://".to_owned()),
        1 => "[a-z]{1,6}:",
    ]
}

/// An address put together from parts, fragments included (tracking pairs, text highlights).
fn address() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just(String::new()),
        Just("#:~:text=best%20laptops".to_owned()),
        query().prop_map(|q| format!("#{q}")),
        "#.{0,8}",
    ];
    (scheme(), host(), port(), "(/[a-zA-Z0-9%._~ -]{0,8}){0,3}", prop::option::of(query()), fragment).prop_map(
        |(scheme, host, port, path, query, fragment)| {
            let query = query.map(|q| format!("?{q}")).unwrap_or_default();
            format!("{scheme}{host}{port}{path}{query}{fragment}")
        },
    )
}

/// `target` inside one of the redirect wrappers the cleaner knows, in the way it is sent: as a
/// percent-encoded parameter, as-is, or base64url for Bing.
fn wrap(target: String, how: u8) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(target.as_bytes()).collect();
    match how % 6 {
        0 => format!("https://www.google.com/url?sa=t&q={encoded}&ved=2a"),
        1 => format!("https://google.de/url?url={target}"),
        2 => format!(
            "https://www.bing.com/ck/a?!&&p=abc&u=a1{}&ntb=1",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&target)
        ),
        3 => format!("https://duckduckgo.com/l/?uddg={encoded}&rut=1"),
        4 => format!("https://l.facebook.com/l.php?u={encoded}&h=AT0"),
        _ => format!("//www.google.com/url?q={encoded}"),
    }
}

/// An address inside up to ten redirect wrappers (far more than the real world nests).
fn wrapped() -> impl Strategy<Value = String> {
    (address(), prop::collection::vec(any::<u8>(), 0..11))
        .prop_map(|(inner, wrappers)| wrappers.into_iter().fold(inner, wrap))
}

/// Anything a bot may hand in as a URL: arbitrary text (NUL, any Unicode), generated and
/// wrapped addresses, with surrounding white space, and very long ones.
fn raw_url() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        3 => address(),
        3 => wrapped(),
        1 => (address(), "[ \t\n\u{0}\u{a0}]{0,3}", "[ \t\n\u{0}\u{a0}]{0,3}").prop_map(|(a, pre, post)| format!("{pre}{a}{post}")),
        1 => (address(), 1usize..2000).prop_map(|(a, n)| format!("{a}{}", "x".repeat(n))),
        1 => (address(), 1usize..50).prop_map(|(a, n)| format!("{a}?{}", "utm_source=chatgpt.com&id=1&".repeat(n))),
    ]
}

fn parses_as_web(url: &str) -> Option<Url> {
    let url = url.trim();
    let parsed = match url.strip_prefix("//") {
        Some(rest) => Url::parse(&format!("https://{rest}")),
        None => Url::parse(url),
    };
    parsed.ok().filter(|u| matches!(u.scheme(), "http" | "https"))
}

proptest! {
    #[test]
    fn cleaning_twice_changes_nothing(raw in raw_url()) {
        let once = clean_url(&raw);
        prop_assert_eq!(clean_url(&once), once.clone(), "raw {:?}", raw);
        prop_assert_eq!(is_assistant_page(&once), is_assistant_page(&clean_url(&once)));
    }

    #[test]
    fn a_web_address_stays_a_web_address_without_tracking(raw in raw_url()) {
        let cleaned = clean_url(&raw);
        match parses_as_web(&raw) {
            Some(_) => {
                let url = Url::parse(&cleaned);
                prop_assert!(url.is_ok(), "{:?} cleaned to {:?}, which does not parse", raw, cleaned);
                let url = url.expect("checked");
                prop_assert!(matches!(url.scheme(), "http" | "https"), "{:?} cleaned to {:?}", raw, cleaned);
                for (name, value) in url.query_pairs() {
                    prop_assert!(!is_tracking(&name, &value), "{:?} kept {}={} in {:?}", raw, name, value, cleaned);
                }
                prop_assert!(!url.fragment().is_some_and(is_tracking_fragment), "{:?} kept the fragment of {:?}", raw, cleaned);
                // Percent-encoding at most triples a byte; IDNA and the scheme of `//` add a little.
                prop_assert!(cleaned.len() <= 4 * raw.len() + 16, "{} bytes grew to {}", raw.len(), cleaned.len());
            }
            // Text that is no web address comes back trimmed, or (another scheme) as the url
            // crate spells it; either way an assistant page, never a source, when it parses.
            None => {
                if Url::parse(raw.trim()).is_err() && !raw.trim().starts_with("//") {
                    prop_assert_eq!(cleaned, raw.trim());
                } else if parses_as_web(&cleaned).is_none() && Url::parse(&cleaned).is_ok() {
                    prop_assert!(is_assistant_page(&cleaned), "{:?}", cleaned);
                }
            }
        }
    }

    #[test]
    fn the_assistants_own_hosts_are_never_sources(
        own in proptest::sample::select(ASSISTANT_HOSTS),
        sub in "([a-z0-9]{1,5}\\.)?",
        rest in "(/[a-zA-Z0-9._-]{0,8}){0,3}(\\?[a-z]{1,4}=[a-z0-9]{0,4})?",
    ) {
        let url = format!("https://{sub}{own}{rest}");
        prop_assert!(is_assistant_page(&clean_url(&url)), "{url}");
    }

    #[test]
    fn domain_and_assistant_page_take_any_text(raw in any::<String>()) {
        let domain = domain_of(&raw);
        prop_assert!(!domain.starts_with("www."));
        let _ = is_assistant_page(&raw);
    }
}

// Regressions the properties found.

#[test]
fn four_nested_wrappers_unwrap_like_one() {
    // Three levels were unwrapped and the fourth kept, so a second cleaning changed the result.
    let target = "https://example.org/a?id=1&utm_source=x";
    let nested = (0..4).fold(target.to_owned(), |inner, _| wrap(inner, 0));
    assert_eq!(clean_url(&nested), "https://example.org/a?id=1");
    // Each encoded wrapper once: Google, Bing, DuckDuckGo, Facebook.
    let nested = [0, 2, 3, 4].into_iter().fold("https://chatgpt.com".to_owned(), wrap);
    assert_eq!(clean_url(&nested), "https://chatgpt.com/");
}

#[test]
fn a_nest_deeper_than_the_limit_stays_wrapped_and_cleaning_it_again_changes_nothing() {
    let nested = (0..=MAX_REDIRECTS).fold("https://example.org/a".to_owned(), |inner, _| wrap(inner, 0));
    let cleaned = clean_url(&nested);
    assert!(cleaned.starts_with("https://www.google.com/url?"), "{cleaned}");
    assert_eq!(clean_url(&cleaned), cleaned);
    assert!(is_assistant_page(&cleaned));
}

#[test]
fn a_wrapper_leading_to_another_scheme_is_not_unwrapped() {
    // Only "http" was checked as a prefix, so `httpx://` (or `https-evil:`) came out as the
    // cleaned address.
    assert_eq!(
        clean_url("https://www.google.com/url?sa=t&q=httpx%3A%2F%2Fchatgpt.com&ved=2a"),
        "https://www.google.com/url?sa=t&q=httpx%3A%2F%2Fchatgpt.com&ved=2a"
    );
}
