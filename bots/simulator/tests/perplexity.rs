//! HTTP-level tests of the perplexity.ai look-alike: the stream's order (sources only listed
//! come after the answer is final), the login wall, the challenge and the rate limit.

use aap_simulator::{
    CHALLENGE_TITLE, PERPLEXITY_RATE_LIMIT_MESSAGE, Simulator, SimulatorConfig, Site, answer_for,
    perplexity_listed_sources,
};
use anyhow::{Context, Result};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn start(config: SimulatorConfig) -> Result<(Simulator, reqwest::Client)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, Site::Perplexity, config).await?;
    Ok((sim, reqwest::Client::new()))
}

async fn ask(client: &reqwest::Client, sim: &Simulator, token: &str, prompt: &str) -> Result<reqwest::Response> {
    Ok(client
        .post(format!("{}/rest/sse/perplexity_ask", sim.base_url))
        .header("cookie", format!("{}={token}", Site::Perplexity.session_cookie()))
        .json(&json!({ "query_str": prompt, "params": { "mode": "concise" } }))
        .send()
        .await?)
}

/// The JSON payloads of a server-sent event stream, in order.
fn events(body: &str) -> Result<Vec<Value>> {
    body.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let data: String = event.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
            serde_json::from_str(&data).with_context(|| format!("event data {data:?}"))
        })
        .collect()
}

#[tokio::test]
async fn listed_sources_arrive_after_the_final_answer_each_in_its_numbered_place() -> Result<()> {
    let config = SimulatorConfig { first_token_delay_ms: 5, chunk_delay_ms: 1, pause_ms: 20, ..Default::default() };
    let (sim, client) = start(config).await?;
    let session = sim.create_session("ops").await;
    let prompt = "How do heat pumps work?";
    let response = ask(&client, &sim, &session.token, prompt).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let events = events(&response.text().await?)?;
    let kinds: Vec<&str> = events.iter().filter_map(|event| event["type"].as_str()).collect();

    let expected = answer_for(prompt, true);
    let listed = perplexity_listed_sources(prompt);
    assert_eq!(kinds.first(), Some(&"search"), "{kinds:?}");
    let final_at = kinds.iter().position(|kind| *kind == "final").context("a final event")?;
    assert!(kinds[1..final_at].iter().all(|kind| *kind == "chunk"));
    assert_eq!(&kinds[final_at + 1..], [vec!["source"; listed.len()], vec!["done"]].concat().as_slice());

    let cited = events[0]["sources"].as_array().context("search sources")?;
    assert_eq!(cited.len(), expected.citations.len());
    let text: String = events[1..final_at].iter().filter_map(|event| event["text"].as_str()).collect();
    for (source, citation) in cited.iter().zip(&expected.citations) {
        assert!(source["url"].as_str().is_some_and(|url| url.starts_with(&citation.url)));
        assert!(text.contains(&format!("[{}]", source["number"])), "cited in the text");
    }
    for (event, citation) in events[final_at + 1..].iter().zip(&listed) {
        let source = &event["source"];
        assert!(source["url"].as_str().is_some_and(|url| url.starts_with(&citation.url)));
        assert!(!text.contains(&format!("[{}]", source["number"])), "listed only");
    }
    assert_eq!(events[final_at]["model"], "Sonar");
    assert_eq!(sim.stats().answers_for_token(&session.token), 1);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn walls_challenges_and_rate_limits_answer_as_the_site_does() -> Result<()> {
    let (sim, client) = start(SimulatorConfig::default()).await?;

    let page = client.get(&sim.base_url).send().await?.text().await?;
    assert!(page.contains("data-testid=\"login-modal\""), "logged out: the sign-in modal");
    let response = ask(&client, &sim, "no-such-session", "Hello?").await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let session = sim.create_session("ops").await;
    let response = ask(&client, &sim, &session.token, "Hi [[rate-limit]]").await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = response.json().await?;
    assert_eq!(body["message"], PERPLEXITY_RATE_LIMIT_MESSAGE);

    let response = ask(&client, &sim, &session.token, "Hi [[challenge]]").await?;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers().get("cf-mitigated").and_then(|v| v.to_str().ok()), Some("challenge"));
    // The reload the page makes after that lands on the challenge too.
    let page = client.get(format!("{}/search/hi-1?__cf_chl_rt_tk=abc", sim.base_url)).send().await?;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    assert!(page.text().await?.contains(CHALLENGE_TITLE));

    let stats = sim.stats();
    assert_eq!(stats.by_token[&session.token].rate_limited, 1);
    assert!(stats.login_walls >= 2);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_empty_answer_is_final_without_a_word_or_a_source() -> Result<()> {
    let config = SimulatorConfig { first_token_delay_ms: 5, chunk_delay_ms: 1, pause_ms: 20, ..Default::default() };
    let (sim, client) = start(config).await?;
    let session = sim.create_session("ops").await;
    let prompt = "How do heat pumps work? [[empty]]";
    let response = ask(&client, &sim, &session.token, prompt).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let events = events(&response.text().await?)?;
    let kinds: Vec<&str> = events.iter().filter_map(|event| event["type"].as_str()).collect();
    assert_eq!(kinds, ["final", "done"], "no search, no chunk, no late source");
    assert_eq!(events[0]["model"], "Sonar");
    assert_eq!(events[0]["web_search"], false);

    let stats = sim.stats();
    assert_eq!((stats.answers_for_prompt(prompt), stats.empty_answers_for_prompt(prompt)), (1, 1));
    assert_eq!(stats.by_token[&session.token].empty_answers, 1);
    sim.shutdown().await;
    Ok(())
}
