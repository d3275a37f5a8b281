//! HTTP-level tests of the claude.ai look-alike: login redirects, the completion stream and its
//! failure modes (the browser-level behaviour is tested with the bot's adapter).

use aap_simulator::{CHALLENGE_TITLE, Simulator, SimulatorConfig, Site, answer_for};
use anyhow::{Context, Result};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn fast_config() -> SimulatorConfig {
    SimulatorConfig { first_token_delay_ms: 5, chunk_delay_ms: 1, pause_ms: 20, ..SimulatorConfig::default() }
}

async fn start(config: SimulatorConfig) -> Result<(Simulator, reqwest::Client)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, Site::Claude, config).await?;
    // Redirects are part of what is tested: never follow them.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    Ok((sim, client))
}

fn cookie(token: &str) -> String {
    format!("{}={token}", Site::Claude.session_cookie())
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn complete(client: &reqwest::Client, sim: &Simulator, token: &str, prompt: &str) -> Result<reqwest::Response> {
    let url = format!(
        "{}/api/organizations/9b1f3c8e-0000-4000-8000-000000000001/chat_conversations/{}/completion",
        sim.base_url,
        uuid::Uuid::new_v4()
    );
    let request = json!({ "prompt": prompt, "parent_message_uuid": "00000000-0000-4000-8000-000000000000",
        "timezone": "UTC", "rendering_mode": "messages", "attachments": [], "files": [] });
    Ok(client.post(url).header("cookie", cookie(token)).json(&request).send().await?)
}

/// The stream's events (their data), in order; keep-alive comments (`: ping`) have none.
fn parse_events(body: &str) -> Result<Vec<Value>> {
    body.split("\n\n")
        .filter(|event| event.lines().any(|line| line.starts_with("data: ")))
        .map(|event| {
            let data: String = event.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
            serde_json::from_str(&data).with_context(|| format!("event data {data:?}"))
        })
        .collect()
}

fn deltas<'a>(events: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    events.iter().filter(move |event| event["type"] == "content_block_delta" && event["delta"]["type"] == kind)
}

fn block_starts(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|event| event["type"] == "content_block_start").map(|event| &event["content_block"]).collect()
}

#[tokio::test]
async fn logged_out_pages_redirect_to_login_and_the_api_refuses() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let response = client.get(format!("{}/new", sim.base_url)).send().await?;
    assert!(response.status().is_redirection());
    assert_eq!(response.headers()["location"], "/login?returnTo=%2Fnew");

    let login = client.get(format!("{}/login", sim.base_url)).send().await?;
    assert_eq!(login.status(), StatusCode::OK);
    let page = login.text().await?;
    assert!(page.contains("Continue with Google") && !page.contains("contenteditable"));

    let refused = complete(&client, &sim, "not-a-session", "Hello?").await?;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(refused.json::<Value>().await?["error"]["type"], "authentication_error");
    assert_eq!(sim.stats().login_walls, 2);
    sim.shutdown().await;
    Ok(())
}

/// The JSON each tool block streamed in its `input_json_delta` fragments, by block index.
fn tool_json(events: &[Value], index: &Value) -> Result<Value> {
    let text: String = deltas(events, "input_json_delta")
        .filter(|event| &event["index"] == index)
        .filter_map(|event| event["delta"]["partial_json"].as_str())
        .collect();
    serde_json::from_str(&text).with_context(|| format!("tool json {text:?}"))
}

#[tokio::test]
async fn an_answer_streams_thinking_then_the_searches_then_cited_text_in_the_real_shapes() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let session = sim.create_session("ops").await;
    let page = client.get(format!("{}/new", sim.base_url)).header("cookie", cookie(&session.token)).send().await?;
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await?.contains("data-testid=\"chat-input\""));

    let prompt = "What are the best laptops under $1,000? [[thinking]]";
    let response = complete(&client, &sim, &session.token, prompt).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await?;
    assert!(body.contains("\n: ping - "), "keep-alive comments between events");
    let events = parse_events(&body)?;
    let expected = answer_for(prompt, true);

    assert_eq!(events.first().map(|e| &e["type"]), Some(&json!("message_start")));
    let types: Vec<&str> = events.iter().filter_map(|event| event["type"].as_str()).collect();
    assert_eq!(types[types.len() - 3..], ["message_delta", "message_limit", "message_stop"]);
    let starts: Vec<&Value> = events.iter().filter(|event| event["type"] == "content_block_start").collect();
    let kinds: Vec<&str> = starts.iter().filter_map(|start| start["content_block"]["type"].as_str()).collect();
    assert_eq!(
        kinds,
        ["thinking", "tool_use", "tool_result", "tool_use", "tool_result", "tool_use", "tool_result", "text"]
    );
    let thinking: String = deltas(&events, "thinking_delta").filter_map(|d| d["delta"]["thinking"].as_str()).collect();
    assert!(thinking.starts_with("The user asks"));

    // Tool calls start empty: the input and the results stream as input_json_delta fragments.
    let mut queries = Vec::new();
    let mut results = Vec::new();
    for start in &starts {
        let block = &start["content_block"];
        match block["type"].as_str() {
            Some("tool_use") => {
                assert_eq!(block["input"], json!({}));
                assert!(block["start_timestamp"].is_string());
                let input = tool_json(&events, &start["index"])?;
                if block["name"] == "web_search" {
                    queries.push(input["query"].as_str().context("query")?.to_owned());
                } else {
                    assert_eq!(block["name"], "web_fetch");
                    assert_eq!(input["url"], expected.citations[0].url.as_str());
                }
            }
            Some("tool_result") => {
                assert_eq!(block["content"], json!([]));
                assert!(block["tool_use_id"].as_str().is_some_and(|id| id.starts_with("toolu_")));
                if block["name"] == "web_search" {
                    let items = tool_json(&events, &start["index"])?;
                    results.extend(items.as_array().cloned().unwrap_or_default());
                }
            }
            _ => {}
        }
    }
    assert_eq!(queries, ["What are the best laptops under $1,000?", "What are the best laptops under $1,000 2026"]);
    assert!(results.iter().all(|item| item["type"] == "knowledge" && item["is_missing"] == false));
    let urls: Vec<&str> = results.iter().filter_map(|item| item["url"].as_str()).collect();
    // Every cited source but the last is among the results; the last is cited from elsewhere.
    let (last, others) = expected.citations.split_last().context("citations")?;
    for citation in others {
        assert!(urls.contains(&citation.url.as_str()), "{} among the results", citation.url);
    }
    assert!(!urls.contains(&last.url.as_str()));
    assert!(urls.iter().any(|url| url.starts_with("https://claude.ai/share/")), "a share link among the results");
    assert!(urls.iter().any(|url| url.contains("#utm_source=claude.ai")), "tracking in a fragment");

    let text: String = deltas(&events, "text_delta").filter_map(|d| d["delta"]["text"].as_str()).collect();
    assert_eq!(collapse(&text), collapse(&expected.markdown));
    // Each citation opens before the words it backs and closes after them.
    let opened: Vec<(&str, &str)> = deltas(&events, "citation_start_delta")
        .filter_map(|d| Some((d["delta"]["citation"]["uuid"].as_str()?, d["delta"]["citation"]["url"].as_str()?)))
        .collect();
    let closed: Vec<&str> =
        deltas(&events, "citation_end_delta").filter_map(|d| d["delta"]["citation_uuid"].as_str()).collect();
    assert_eq!(opened.iter().map(|(uuid, _)| *uuid).collect::<Vec<_>>(), closed);
    let cited: Vec<String> = opened.iter().map(|(_, url)| url.replace("?utm_source=claude.ai", "")).collect();
    let want: Vec<&str> = expected.citations.iter().map(|c| c.url.as_str()).collect();
    assert_eq!(cited, want, "each source cited once, in reading order");
    let position = |kind: &str, n: usize| {
        events
            .iter()
            .filter(|e| e["delta"]["type"] == kind)
            .nth(n)
            .and_then(|target| events.iter().position(|e| e == target))
    };
    for n in 0..closed.len() {
        let (open, close) =
            (position("citation_start_delta", n).context("start")?, position("citation_end_delta", n).context("end")?);
        assert!(events[open..close].iter().any(|e| e["delta"]["type"] == "text_delta"), "citation {n} spans words");
    }

    // Without citations no search runs.
    let response = complete(&client, &sim, &session.token, "Explain tides [[no-citations]]").await?;
    let events = parse_events(&response.text().await?)?;
    let kinds: Vec<&str> = block_starts(&events).iter().filter_map(|block| block["type"].as_str()).collect();
    assert_eq!(kinds, ["text"]);
    assert_eq!(deltas(&events, "citation_start_delta").count(), 0);
    assert_eq!(sim.stats().answers_for_token(&session.token), 2);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn limits_failures_challenges_and_expiry_answer_as_claude_does() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let session = sim.create_session("ops").await;

    let limited = complete(&client, &sim, &session.token, "Hi [[rate-limit]]").await?;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let header: u64 = limited.headers()["anthropic-ratelimit-unified-reset"].to_str()?.parse()?;
    let error = limited.json::<Value>().await?;
    assert_eq!(error["error"]["type"], "rate_limit_error");
    // As claude.ai sends it: the message is itself JSON, to parse again.
    let limit: Value = serde_json::from_str(error["error"]["message"].as_str().context("message")?)?;
    assert_eq!(limit["type"], "exceeded_limit");
    let resets_at = limit["resetsAt"].as_u64().context("resetsAt")?;
    assert_eq!(resets_at, header);
    assert_eq!(resets_at % 600, 0, "limits reset on a round ten minutes");

    let failed = complete(&client, &sim, &session.token, "News? [[error]]").await?;
    let events = parse_events(&failed.text().await?)?;
    let last = events.last().context("events")?;
    assert_eq!(last["type"], "error");
    assert!(last["error"]["message"].as_str().is_some_and(|m| m.contains("response was interrupted")));

    let challenged = complete(&client, &sim, &session.token, "Hi [[challenge]]").await?;
    assert_eq!(challenged.status(), StatusCode::FORBIDDEN);
    assert_eq!(challenged.headers()["cf-mitigated"], "challenge");
    assert!(challenged.text().await?.contains(CHALLENGE_TITLE));

    let expired = complete(&client, &sim, &session.token, "Hi [[expire-session]]").await?;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    let page = client.get(format!("{}/new", sim.base_url)).header("cookie", cookie(&session.token)).send().await?;
    assert!(page.status().is_redirection(), "the expired session is sent to /login");

    let stats = sim.stats();
    let token = &stats.by_token[&session.token];
    assert_eq!((token.rate_limited, token.errors, token.answers), (1, 1, 0));
    assert_eq!(stats.challenges, 1);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_empty_answer_opens_its_text_block_and_stops_without_a_word() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let session = sim.create_session("ops").await;
    let prompt = "What are the best laptops under $1,000? [[empty]]";
    let response = complete(&client, &sim, &session.token, prompt).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let events = parse_events(&response.text().await?)?;
    let kinds: Vec<&str> = block_starts(&events).iter().filter_map(|block| block["type"].as_str()).collect();
    assert_eq!(kinds, ["text"], "no search, only the (empty) text block");
    assert_eq!(deltas(&events, "text_delta").count(), 0);
    assert_eq!(deltas(&events, "citation_start_delta").count(), 0);
    let types: Vec<&str> = events.iter().filter_map(|event| event["type"].as_str()).collect();
    assert_eq!(
        types,
        [
            "message_start",
            "content_block_start",
            "content_block_stop",
            "message_delta",
            "message_limit",
            "message_stop"
        ]
    );
    assert_eq!(events[3]["delta"]["stop_reason"], "end_turn", "an ordinary end of turn");

    let stats = sim.stats();
    assert_eq!((stats.answers_for_prompt(prompt), stats.empty_answers_for_prompt(prompt)), (1, 1));
    assert_eq!(stats.by_token[&session.token].empty_answers, 1);
    sim.shutdown().await;
    Ok(())
}
