//! HTTP-level tests of the perplexity.ai look-alike: the stream in the real site's shapes and
//! order (sources only listed come after the text is complete, before the final frame), the
//! login wall, the challenge and the rate limit.

use aap_simulator::{
    CHALLENGE_TITLE, PERPLEXITY_RATE_LIMIT_MESSAGE, Simulator, SimulatorConfig, Site, answer_for,
    perplexity_listed_sources, perplexity_products, perplexity_search_queries,
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

/// The events of a server-sent event stream, in order: (event name, JSON data).
fn events(body: &str) -> Result<Vec<(String, Value)>> {
    body.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| {
            let name = event.lines().find_map(|line| line.strip_prefix("event: ")).unwrap_or("message").to_owned();
            let data: String = event.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
            let value = serde_json::from_str(&data).with_context(|| format!("event data {data:?}"))?;
            Ok((name, value))
        })
        .collect()
}

/// The usages of the blocks of a frame, diff blocks as `usage~`.
fn usages(frame: &Value) -> Vec<String> {
    frame["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|block| {
            let usage = block["intended_usage"].as_str().unwrap_or_default();
            if block.get("diff_block").is_some() { format!("{usage}~") } else { usage.to_owned() }
        })
        .collect()
}

#[tokio::test]
async fn the_stream_has_the_real_shapes_and_listed_sources_come_after_the_text_before_the_final_frame() -> Result<()> {
    let config = SimulatorConfig { first_token_delay_ms: 5, chunk_delay_ms: 1, pause_ms: 20, ..Default::default() };
    let (sim, client) = start(config).await?;
    let session = sim.create_session("ops").await;
    let prompt = "What are the best heat pumps?";
    let response = ask(&client, &sim, &session.token, prompt).await?;
    assert_eq!(response.status(), StatusCode::OK);
    let events = events(&response.text().await?)?;
    let (last_name, last) = events.last().context("events")?;
    assert_eq!((last_name.as_str(), last), ("end_of_stream", &json!({})));
    let frames: Vec<&Value> = events.iter().filter(|(name, _)| name == "message").map(|(_, frame)| frame).collect();
    assert_eq!(frames.len(), events.len() - 1, "every other event is `message`");
    for frame in &frames {
        assert!(frame["backend_uuid"].is_string() && frame["blocks"].is_array(), "a full envelope every time");
    }

    // The search first: the queries, then the cited sources and a widget.
    assert!(usages(frames[0]).contains(&"workflow_root~".to_owned()));
    let queries = &frames[0]["blocks"][1]["diff_block"]["patches"][0]["value"]["steps"][0]["items"][0];
    assert_eq!(queries["type"], "WORKFLOW_ITEM_QUERIES");
    assert_eq!(queries["payload"]["queries_payload"]["queries"], json!(perplexity_search_queries(prompt, true)));
    assert_eq!(usages(frames[1]), ["web_results~"]);
    let early = &frames[1]["blocks"][0]["diff_block"]["patches"][0]["value"]["web_results"];
    let expected = answer_for(prompt, true);
    let early = early.as_array().context("early results")?;
    assert_eq!(early.len(), expected.citations.len() + 1);
    assert_eq!(early.last().map(|widget| &widget["is_widget"]), Some(&json!(true)));

    // The text: ask_text chunks, `[n]` = web_results[n-1].
    let completed = frames.iter().position(|f| f["text_completed"] == json!(true)).context("text_completed")?;
    let text: String = frames[2..completed]
        .iter()
        .filter(|f| usages(f) == ["ask_text~"])
        .map(|f| {
            let patch = &f["blocks"][0]["diff_block"]["patches"][0];
            patch["value"]["chunks"][0].as_str().or(patch["value"].as_str()).unwrap_or_default().to_owned()
        })
        .collect();
    for (index, (citation, result)) in expected.citations.iter().zip(early).enumerate() {
        assert!(result["url"].as_str().is_some_and(|url| url.starts_with(&citation.url)));
        assert!(text.contains(&format!("[{}]", index + 1)), "cited in the text");
    }
    assert!(usages(frames[completed]).contains(&"pending_followups".to_owned()));
    assert!(frames[..completed].iter().any(|f| usages(f) == ["shopping_widgets"]), "a shopping-like prompt");

    // After the text: the listed sources, appended one frame each, then the final frame.
    let listed = perplexity_listed_sources(prompt);
    let adds = &frames[completed + 1..frames.len() - 1];
    assert_eq!(adds.len(), listed.len() + 1, "the listed sources, then an own-site link");
    for (frame, citation) in adds.iter().zip(&listed) {
        let patch = &frame["blocks"][0]["diff_block"]["patches"][0];
        assert_eq!(patch["op"], "add");
        assert!(
            patch["value"]["url"]
                .as_str()
                .is_some_and(|url| url.starts_with(&citation.url) && url.contains("#utm_source="))
        );
        let index: usize =
            patch["path"].as_str().and_then(|p| p.strip_prefix("/web_results/")).context("path")?.parse()?;
        assert!(index > expected.citations.len(), "appended after the cited ones and the widget");
        assert!(!text.contains(&format!("[{}]", index + 1)), "listed only");
    }
    let own = &adds[listed.len()]["blocks"][0]["diff_block"]["patches"][0]["value"]["url"];
    assert!(own.as_str().is_some_and(|url| url.starts_with("https://www.perplexity.ai/search/")));
    let last = frames.last().context("final frame")?;
    assert_eq!((last["status"].clone(), last["final_sse_message"].clone()), (json!("COMPLETED"), json!(true)));
    assert!(frames[..frames.len() - 1].iter().all(|f| f["final_sse_message"] == json!(false)));
    let products =
        last["blocks"].as_array().context("blocks")?.iter().find(|b| b["intended_usage"] == "shopping_widgets");
    let names: Vec<&str> = products.context("products")?["shopping_block"]["products"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    let wanted: Vec<String> = perplexity_products(prompt).into_iter().map(|p| p.name).collect();
    assert_eq!(names, wanted);
    assert_eq!(last["display_model"], "sonar");
    assert_eq!(sim.stats().answers_for_token(&session.token), 1);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_final_text_variant_streams_the_workflow_text_and_clears_its_stop_one_chunk_early() -> Result<()> {
    let config = SimulatorConfig {
        first_token_delay_ms: 5,
        chunk_delay_ms: 1,
        pause_ms: 20,
        variant: "final-text-context-pane".into(),
        ..Default::default()
    };
    let (sim, client) = start(config).await?;
    let session = sim.create_session("ops").await;
    let prompt = "How do heat pumps work?";
    let events = events(&ask(&client, &sim, &session.token, prompt).await?.text().await?)?;
    let frames: Vec<&Value> = events.iter().filter(|(name, _)| name == "message").map(|(_, frame)| frame).collect();
    assert!(frames.iter().all(|f| !usages(f).iter().any(|u| u.starts_with("ask_text"))), "no ask_text at all");
    let followups =
        frames.iter().position(|f| usages(f).contains(&"pending_followups".to_owned())).context("followups")?;
    let chunks: Vec<usize> = (0..frames.len())
        .filter(|&i| {
            usages(frames[i]) == ["workflow_root~"] && frames[i]["blocks"][0]["diff_block"]["patches"][0]["path"] != ""
        })
        .collect();
    assert_eq!(
        chunks.last().map(|&last| last == followups + 1),
        Some(true),
        "the last chunk lands after the follow-ups"
    );
    let completed = frames.iter().position(|f| f["text_completed"] == json!(true)).context("text_completed")?;
    let item = &frames[completed]["blocks"][0]["workflow_block"]["steps"][1]["items"][0];
    assert_eq!(item["type"], "WORKFLOW_ITEM_TEXT");
    assert!(item["payload"]["text_payload"]["text"].as_str().is_some_and(|text| text.contains("[1]")));
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
    let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["message", "message", "end_of_stream"], "no search, no chunk, no late source");
    assert_eq!(events[0].1["text_completed"], true);
    assert_eq!(events[0].1["blocks"][0]["markdown_block"]["chunks"], json!([]));
    assert_eq!(events[1].1["status"], "COMPLETED");
    assert_eq!(events[1].1["display_model"], "sonar");
    assert!(events.iter().all(|(_, frame)| !usages(frame).iter().any(|u| u.starts_with("web_results"))));

    let stats = sim.stats();
    assert_eq!((stats.answers_for_prompt(prompt), stats.empty_answers_for_prompt(prompt)), (1, 1));
    assert_eq!(stats.by_token[&session.token].empty_answers, 1);
    sim.shutdown().await;
    Ok(())
}
