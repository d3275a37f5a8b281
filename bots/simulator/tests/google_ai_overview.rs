//! HTTP-level tests of the google.com look-alike: walls, redirects, and the deferred overview
//! stream (`/async/folsrch`).

use aap_simulator::{Simulator, SimulatorConfig, Site, answer_for};
use anyhow::{Context, Result};
use reqwest::StatusCode;
use serde_json::Value;

fn fast_config() -> SimulatorConfig {
    SimulatorConfig { first_token_delay_ms: 5, chunk_delay_ms: 1, pause_ms: 20, ..SimulatorConfig::default() }
}

async fn start(config: SimulatorConfig) -> Result<(Simulator, reqwest::Client)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, Site::GoogleAiOverview, config).await?;
    // Redirects are what these tests look at: never follow them.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    Ok((sim, client))
}

fn cookie(token: &str) -> String {
    format!("{}={token}", Site::GoogleAiOverview.session_cookie())
}

async fn get(client: &reqwest::Client, sim: &Simulator, path: &str, token: Option<&str>) -> Result<reqwest::Response> {
    let mut request = client.get(format!("{}{path}", sim.base_url));
    if let Some(token) = token {
        request = request.header("cookie", cookie(token));
    }
    Ok(request.send().await?)
}

fn location(response: &reqwest::Response) -> String {
    response.headers().get("location").and_then(|value| value.to_str().ok()).unwrap_or_default().to_owned()
}

/// The events of one `/async/folsrch` stream: (event name, data).
async fn overview_events(
    client: &reqwest::Client,
    sim: &Simulator,
    token: &str,
    query: &str,
) -> Result<Vec<(String, Value)>> {
    let path = format!("/async/folsrch?q={}&hl=en", urlencode(query));
    let response = get(client, sim, &path, Some(token)).await?;
    anyhow::ensure!(response.status() == StatusCode::OK, "status {}", response.status());
    let body = response.text().await?;
    body.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let name = event.lines().find_map(|line| line.strip_prefix("event: ")).unwrap_or("message").to_owned();
            let data: String = event.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
            Ok((name, serde_json::from_str(&data).with_context(|| format!("event data {data:?}"))?))
        })
        .collect()
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|byte| if byte.is_ascii_alphanumeric() { (byte as char).to_string() } else { format!("%{byte:02X}") })
        .collect()
}

/// Two `[[no-overview]]` prompts: one whose page shows no block, one whose block says there is
/// no overview for this search.
fn no_overview_prompts() -> Result<(&'static str, &'static str)> {
    const CANDIDATES: [&str; 6] = [
        "time in tokyo [[no-overview]]",
        "weather in paris tomorrow [[no-overview]]",
        "local time in lima [[no-overview]]",
        "score of the match tonight [[no-overview]]",
        "sunrise in oslo [[no-overview]]",
        "traffic on the a1 [[no-overview]]",
    ];
    let odd = |prompt: &&str| answer_for(prompt, true).citations.len() % 2 == 1;
    let silent = CANDIDATES.iter().find(|prompt| !odd(prompt)).context("no silent candidate")?;
    let said = CANDIDATES.iter().find(|prompt| odd(prompt)).context("no declining candidate")?;
    Ok((silent, said))
}

/// Text with the private-use citation markers removed and white space collapsed.
fn without_markers(text: &str) -> String {
    let mut out = String::new();
    let mut in_marker = false;
    for c in text.chars() {
        match c {
            '\u{e200}' => in_marker = true,
            '\u{e201}' => in_marker = false,
            _ if !in_marker => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn walls_and_redirects_answer_as_google_does() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;

    // No session: every page goes to the consent wall, which has no search box.
    let response = get(&client, &sim, "/search?q=laptops&hl=en", None).await?;
    assert!(response.status().is_redirection());
    let wall = location(&response);
    assert!(wall.starts_with("/consent?continue=%2Fsearch%3Fq%3Dlaptops"), "{wall}");
    let page = get(&client, &sim, &wall, None).await?.text().await?;
    assert!(page.contains("Before you continue to Google"));
    assert!(page.contains("id=\"L2AGLb\""));
    assert!(!page.contains("<textarea"));
    // Accepting makes no session: back to where the browser was going, and to the wall again.
    let saved = client.post(format!("{}/consent/save?continue=%2F%3Fhl%3Den", sim.base_url)).send().await?;
    assert_eq!(location(&saved), "/?hl=en");
    assert!(location(&get(&client, &sim, "/?hl=en", None).await?).starts_with("/consent?"));

    let session = sim.create_session("operator").await;
    let token = session.token.as_str();
    let home = get(&client, &sim, "/?hl=en", Some(token)).await?.text().await?;
    assert!(home.contains("id=\"APjFqb\""));
    // The results page has the organic results; the overview is not in it (it loads deferred).
    let results = get(&client, &sim, "/search?q=best+laptops&hl=en", Some(token)).await?.text().await?;
    assert!(results.contains("<title>best laptops - Google Search</title>"));
    assert_eq!(results.matches("class=\"tF2Cxc\"").count(), answer_for("best laptops", true).citations.len());
    assert!(results.contains("<div id=\"aio-slot\" class=\"WYczDe\"></div>"), "the overview's slot is empty");

    // A suspicious search goes to Google's unusual-traffic page, served with 429.
    let response = get(&client, &sim, "/search?q=flights+%5B%5Bchallenge%5D%5D", Some(token)).await?;
    let sorry = location(&response);
    assert!(sorry.starts_with("/sorry/index?continue="), "{sorry}");
    let response = get(&client, &sim, &sorry, Some(token)).await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.text().await?.contains("Our systems have detected unusual traffic from your computer network"));

    // Click-through redirects lead to web pages only.
    let response = get(&client, &sim, "/url?q=https%3A%2F%2Fexample.org%2Fa&sa=U", Some(token)).await?;
    assert_eq!(location(&response), "https://example.org/a");
    let response = get(&client, &sim, "/url?q=javascript%3Aalert(1)", Some(token)).await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // A session revoked at the search: the consent wall from then on.
    let response = get(&client, &sim, "/search?q=x+%5B%5Bexpire-session%5D%5D", Some(token)).await?;
    assert!(location(&response).starts_with("/consent?"));
    assert!(location(&get(&client, &sim, "/?hl=en", Some(token)).await?).starts_with("/consent?"));
    let stats = sim.stats();
    assert!(stats.by_token[token].expired);
    assert_eq!(stats.challenges, 1);
    assert!(stats.login_walls >= 4);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_overview_streams_deferred_and_says_when_there_is_none_or_not_now() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let token = sim.create_session("operator").await.token;

    let query = "how do heat pumps work";
    let events = overview_events(&client, &sim, &token, query).await?;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names.first(), Some(&"start"));
    assert_eq!(names.last(), Some(&"done"));
    let text: String =
        events.iter().filter(|(name, _)| name == "chunk").filter_map(|(_, data)| data["text"].as_str()).collect();
    let expected = answer_for(query, true);
    assert_eq!(without_markers(&text), without_markers(&expected.markdown));
    let sources = events[0].1["sources"].as_array().context("sources")?;
    assert_eq!(sources.len(), expected.citations.len());
    // The list shows the source no chip cites first; chips use the relative redirect.
    assert_eq!(sources[0]["inline"], Value::Bool(false));
    assert!(sources[1..].iter().all(|source| source["inline"] == Value::Bool(true)));
    for source in sources {
        assert!(source["chip_href"].as_str().is_some_and(|href| href.starts_with("/url?q=https%3A%2F%2F")));
        assert!(source["list_href"].as_str().is_some_and(|href| href.starts_with("https://www.google.com/url?")));
    }

    // No overview: silently, or said in the block, by the prompt (an odd number of sources in
    // its answer means the block says so).
    let (silent, said) = no_overview_prompts()?;
    let events = overview_events(&client, &sim, &token, silent).await?;
    assert_eq!(events.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(), ["none"]);
    let events = overview_events(&client, &sim, &token, said).await?;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "declined");
    assert!(events[0].1["message"].as_str().is_some_and(|text| text.contains("not available for this search")));

    let events = overview_events(&client, &sim, &token, "stocks [[rate-limit]]").await?;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "unavailable");
    assert!(events[0].1["message"].as_str().is_some_and(|text| text.contains("right now")));

    let events = overview_events(&client, &sim, &token, "history of rome [[error]]").await?;
    assert_eq!(events.last().map(|(name, _)| name.as_str()), Some("error"));
    assert!(events.iter().any(|(name, _)| name == "chunk"), "it fails part of the way");

    let response = get(&client, &sim, "/async/folsrch?q=x", None).await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let stats = sim.stats();
    assert_eq!(stats.by_token[&token].answers, 3, "an overview and two searches without one");
    assert_eq!(stats.by_token[&token].rate_limited, 1);
    assert_eq!(stats.by_token[&token].errors, 1);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_empty_overview_opens_the_block_and_completes_without_a_word() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let token = sim.create_session("operator").await.token;

    let query = "how do heat pumps work [[empty]]";
    let events = overview_events(&client, &sim, &token, query).await?;
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["start", "done"], "the block opens and completes, with no chunk in between");
    assert_eq!(events[0].1["sources"].as_array().map(Vec::len), Some(0), "and no sources");

    // Not the same as no overview: that one never opens the block's stream.
    let (silent, said) = no_overview_prompts()?;
    for no_overview in [silent, said] {
        let events = overview_events(&client, &sim, &token, &format!("{no_overview} [[empty]]")).await?;
        assert!(events.iter().all(|(name, _)| name != "start"), "{events:?}");
    }

    let stats = sim.stats();
    assert_eq!((stats.answers_for_prompt(query), stats.empty_answers_for_prompt(query)), (1, 1));
    assert_eq!((stats.by_token[&token].answers, stats.by_token[&token].empty_answers), (3, 1));
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_variants_link_their_sources_as_their_descriptions_say() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let token = sim.create_session("operator").await.token;
    let query = "best running shoes for flat feet";
    let expected = answer_for(query, true);
    let count = expected.citations.len();
    anyhow::ensure!(count >= 2, "the query cites at least two sources");

    // rhs-direct-links: cards link the page itself (a text highlight or tracking in the
    // fragment), Google's own "AI Mode" link follows them, People also ask comes first.
    sim.set_config(SimulatorConfig { variant: "rhs-direct-links".into(), late_sources: true, ..fast_config() });
    let page = get(&client, &sim, "/search?q=best+running+shoes&hl=en", Some(&token)).await?.text().await?;
    assert!(page.find("related-question-pair") < page.find("id=\"aio-slot\""), "the decoy comes first");
    assert!(page.contains("\"variant\":\"rhs-direct-links\""));
    assert!(page.contains("\"lateSourcesMs\":700"));
    let events = overview_events(&client, &sim, &token, query).await?;
    let start = &events[0].1;
    let sources = start["sources"].as_array().context("sources")?;
    assert_eq!(sources.len(), count);
    for source in sources {
        let href = source["href"].as_str().unwrap_or_default();
        assert!(href.starts_with("https://") && !href.contains("google.com/url"), "{href}");
        assert!(href.contains("#:~:text=") || href.contains("#utm_source="), "{href}");
    }
    let links = start["links"].as_array().context("links")?;
    assert_eq!(links.len(), 1);
    assert!(links[0]["href"].as_str().is_some_and(|href| href.starts_with("/search?udm=50&q=")));

    // inline-chips-only: no list, so the source no pill cites is nowhere.
    sim.set_config(SimulatorConfig { variant: "inline-chips-only".into(), ..fast_config() });
    let events = overview_events(&client, &sim, &token, query).await?;
    let sources = events[0].1["sources"].as_array().context("sources")?;
    assert_eq!(sources.len(), count - 1);
    assert!(sources.iter().all(|source| source["inline"] == Value::Bool(true)));
    assert!(sources.iter().all(|source| source["href"] == source["chip_href"]));
    let page = get(&client, &sim, "/search?q=shoes&hl=en", Some(&token)).await?.text().await?;
    assert!(page.contains("\"lateSourcesMs\":0"));

    // An unknown variant is refused.
    assert!(SimulatorConfig { variant: "no-such".into(), ..fast_config() }.checked(Site::GoogleAiOverview).is_err());
    sim.shutdown().await;
    Ok(())
}
