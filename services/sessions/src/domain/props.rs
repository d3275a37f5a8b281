//! Property tests of the sessions' input checks, for any text: proxy URLs, user agents,
//! storage states, account plans and lease targets. A refusal names its field and never
//! repeats a proxy password. `PROPTEST_CASES` sets the number of cases.

use proptest::prelude::*;

use super::*;
use crate::identity::{ProxyUrl, check_user_agent};

fn field_of<T>(result: &SessionResult<T>) -> Option<&'static str> {
    match result {
        Err(SessionError::InvalidArgument { field, .. }) => Some(field),
        _ => None,
    }
}

/// A password no generated host or port can contain by chance.
const SECRET: &str = "Pw7xSecretZq";

/// Proxy URLs: put together from schemes, credentials, hosts, ports and tails that are each
/// right or wrong, and arbitrary text.
fn proxy_text() -> impl Strategy<Value = String> {
    let scheme = prop_oneof![
        Just("http://"),
        Just("https://"),
        Just("socks5://"),
        Just("SOCKS5://"),
        Just("socks4://"),
        Just("ftp://"),
        Just(""),
        Just("http:"),
    ];
    let credentials = prop_oneof![
        4 => Just(String::new()),
        1 => Just(format!("alice:{SECRET}@")),
        1 => Just(format!(":{SECRET}@")),
        1 => Just("alice@".to_owned()),
    ];
    let host = prop_oneof![
        Just("proxy.example".to_owned()),
        Just("10.1.2.3".to_owned()),
        Just("[::1]".to_owned()),
        Just("bücher.example".to_owned()),
        Just(String::new()),
        "[a-z0-9.-]{1,12}",
        ".{0,6}",
    ];
    let port = prop_oneof![
        Just(String::new()),
        Just(":0".to_owned()),
        Just(":3128".to_owned()),
        Just(":65535".to_owned()),
        Just(":65536".to_owned()),
        Just(":-1".to_owned()),
        ":[0-9]{1,12}",
    ];
    let tail = prop_oneof![
        4 => Just(String::new()),
        1 => Just("/".to_owned()),
        1 => Just("/path".to_owned()),
        1 => Just("?a=b".to_owned()),
        1 => Just("#frag".to_owned()),
        1 => "[ \t\n\u{0}]{1,2}",
    ];
    prop_oneof![
        4 => (scheme, credentials, host, port, tail)
            .prop_map(|(scheme, credentials, host, port, tail)| format!("{scheme}{credentials}{host}{port}{tail}")),
        1 => any::<String>(),
    ]
}

fn storage_state() -> impl Strategy<Value = String> {
    let json = prop_oneof![
        Just(serde_json::json!({"cookies": [], "origins": []})),
        Just(serde_json::json!({"cookies": [{"name": "a\u{0}", "value": "x"}]})),
        Just(serde_json::json!({"cookies": {}})),
        Just(serde_json::json!({"cookies": null})),
        Just(serde_json::json!({"origins": []})),
        Just(serde_json::json!([{"cookies": []}])),
        Just(serde_json::json!("cookies")),
        Just(serde_json::json!(7)),
        Just(serde_json::json!({"cookies": [1, "two", {"name": "x"}], "origins": "notalist"})),
        Just(serde_json::json!({"cookies": [{"name": "a", "value": "b", "expires": "soon"}]})),
        Just(serde_json::json!({"cookies": [{"name": "a", "value": "b", "domain": null}]})),
        Just(serde_json::json!({"cookies": [], "origins": [{"origin": "o", "localStorage": [{"name": "k"}]}]})),
        Just(serde_json::json!({"cookies": [], "origins": [{"origin": "o", "localStorage": [{"name": "k", "value": "v"}]}]})),
    ]
    .prop_map(|value| value.to_string());
    prop_oneof![3 => json, 1 => any::<String>(), 1 => "[{}\\[\\]\":,a-z0-9 ]{0,30}"]
}

proptest! {
    /// A proxy is taken as `scheme://host:port` that reads back as itself; anything else is
    /// refused with a reason that never holds the password.
    #[test]
    fn proxies_parse_to_scheme_host_port_or_are_refused_without_the_password(text in proxy_text()) {
        match ProxyUrl::parse(&text) {
            Ok(proxy) => {
                let spelled = proxy.as_str();
                let again = ProxyUrl::parse(&spelled);
                prop_assert_eq!(again.as_ref().map(ProxyUrl::as_str), Ok(spelled.clone()), "{:?}", text);
                prop_assert_eq!(again.map(|p| p.display()), Ok(proxy.display()), "{:?}", text);
                let (scheme, rest) = spelled.split_once("://").expect("scheme");
                prop_assert!(matches!(scheme, "http" | "https" | "socks5"), "{}", spelled);
                prop_assert!(!rest.contains(['@', '/', '?', '#']), "{}", spelled);
                prop_assert!(!rest.chars().any(|c| c.is_whitespace() || c.is_control()), "{:?}", spelled);
                let port = rest.rsplit_once(':').map(|(_, port)| port).unwrap_or_default();
                prop_assert!(port.parse::<u16>().is_ok_and(|port| port != 0), "{}", spelled);
                prop_assert!(!proxy.display().contains(SECRET));
            }
            Err(reason) => {
                prop_assert!(!reason.is_empty());
                prop_assert!(!reason.contains(SECRET), "{}", reason);
                // Through the domain, the same refusal names the field.
                prop_assert_eq!(field_of(&parse_proxy(&text)), if text.trim().is_empty() { None } else { Some("proxy") });
            }
        }
    }

    /// A user agent is taken exactly when, trimmed, it is at most 512 bytes of printable ASCII
    /// without "headless"; it is taken trimmed.
    #[test]
    fn user_agents_are_taken_exactly_when_printable_short_and_not_headless(text in prop_oneof![
        any::<String>(),
        "[ -~]{0,40}",
        "[ -~]{0,20}[Hh][Ee][Aa][Dd][Ll][Ee][Ss][Ss][ -~]{0,20}",
        (500usize..530).prop_map(|n| "M".repeat(n)),
    ]) {
        let trimmed = text.trim();
        let expected = trimmed.len() <= 512
            && trimmed.bytes().all(|b| (b' '..=b'~').contains(&b))
            && !trimmed.to_ascii_lowercase().contains("headless");
        match check_user_agent(&text) {
            Ok(taken) => {
                prop_assert!(expected, "{:?} taken", text);
                prop_assert_eq!(taken, trimmed);
            }
            Err(reason) => {
                prop_assert!(!expected, "{:?} refused: {}", text, reason);
                prop_assert!(!reason.is_empty());
            }
        }
    }

    /// A storage state is taken exactly when it is a JSON object with a `cookies` array that a
    /// bot can load (its parser reads it); a refusal names the field it was given.
    #[test]
    fn storage_states_are_taken_exactly_when_an_object_with_a_cookies_array_a_bot_reads(json in storage_state()) {
        let expected = serde_json::from_str::<serde_json::Value>(&json)
            .ok()
            .is_some_and(|value| value.get("cookies").is_some_and(serde_json::Value::is_array) && value.is_object())
            && aap_proto::storage_state::StorageState::parse(&json).is_ok();
        let result = check_storage_state("storage_state_json", &json, "chatgpt");
        prop_assert_eq!(result.is_ok(), expected, "{:?}", json);
        if result.is_err() {
            prop_assert_eq!(field_of(&result), Some("storage_state_json"));
        }
    }

    /// An account plan is taken trimmed when it is a plan name (`input::check_plan`) other than
    /// empty and `any`; a lease target takes a known assistant id and such a plan, empty or
    /// `any` meaning every plan; refusals name `plan` or `assistant`.
    #[test]
    fn plans_and_lease_targets_are_checked_naming_the_field(
        assistant in prop_oneof![
            3 => proptest::sample::select(assistants::ASSISTANTS).prop_map(|a| a.id.to_owned()),
            1 => any::<String>(),
        ],
        plan in prop_oneof![
            3 => "[a-zA-Z0-9 ._+-]{0,12}",
            1 => Just(" Any ".to_owned()),
            1 => any::<String>(),
            1 => "[a-z]{60,70}",
            1 => "[a-z]{0,4}[\u{0}\u{1b}>*][a-z]{0,4}",
        ],
    ) {
        let plan_ok = aap_platform::input::check_plan(plan.trim()).is_ok();
        let any = assistants::normalize_plan(&plan) == ANY_PLAN;
        match parse_account_plan(&plan) {
            Ok(taken) => {
                prop_assert!(plan_ok && !any, "{:?} taken", plan);
                prop_assert_eq!(taken, plan.trim());
            }
            Err(err) => {
                prop_assert!(!plan_ok || any, "{:?} refused: {}", plan, err);
                prop_assert_eq!(field_of::<()>(&Err(err)), Some("plan"));
            }
        }
        let known = assistants::by_id(&assistant).is_some();
        match LeaseTarget::parse(&assistant, &plan) {
            Ok(target) => {
                prop_assert!(known && plan_ok, "{:?} {:?} taken", assistant, plan);
                prop_assert_eq!(target.plan.is_none(), any);
                prop_assert_eq!(target.plan_key().is_some_and(|key| key == ANY_PLAN), false);
            }
            Err(err) => {
                let expected = if known { "plan" } else { "assistant" };
                prop_assert!(!known || !plan_ok, "{:?} {:?} refused: {}", assistant, plan, err);
                prop_assert_eq!(field_of::<()>(&Err(err)), Some(expected));
            }
        }
    }
}
