//! The chatgpt.com look-alike's answer stream per page variant: the 2026 shape (what
//! `thread-flyout` and `section-turn` pages read from `/backend-api/f/conversation`) and the
//! older header shape, each with the query fan-out, products for shopping prompts, the sources
//! footnote and its own-site link, and the completion.

use aap_simulator::{
    SESSION_COOKIE, Simulator, SimulatorConfig, Site, answer_for, chatgpt_is_shopping, chatgpt_more_sources,
    chatgpt_products, chatgpt_search_queries,
};
use anyhow::{Context, Result};
use serde_json::{Value, json};

fn quick(variant: &str) -> SimulatorConfig {
    SimulatorConfig {
        first_token_delay_ms: 5,
        chunk_delay_ms: 1,
        pause_ms: 10,
        variant: variant.to_owned(),
        ..SimulatorConfig::default()
    }
}

/// Streams `prompt` from `path` and returns every event's data (`[DONE]` kept as a string).
async fn stream(sim: &Simulator, token: &str, path: &str, prompt: &str) -> Result<Vec<Value>> {
    let body = reqwest::Client::new()
        .post(format!("{}{path}", sim.base_url))
        .header("cookie", format!("{SESSION_COOKIE}={token}"))
        .json(&json!({
            "action": "next",
            "messages": [{ "id": "m1", "author": { "role": "user" }, "content": { "content_type": "text", "parts": [prompt] } }],
            "parent_message_id": "p1",
        }))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    body.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| event.lines().filter_map(|line| line.strip_prefix("data: ")).collect::<String>())
        .map(|data| if data == "[DONE]" { Ok(Value::String(data)) } else { Ok(serde_json::from_str(&data)?) })
        .collect()
}

/// Every operation of the stream, batches flattened, as (path, op, value).
fn operations(events: &[Value]) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    let (mut path, mut op) = (String::new(), String::new());
    for event in events.iter().filter(|e| e.get("v").is_some()) {
        let named = event.get("p").is_some() || event.get("o").is_some();
        let batch = event["v"].as_array().is_some_and(|ops| ops.iter().all(|o| o.get("o").is_some()));
        if let Some(p) = event["p"].as_str() {
            path = p.to_owned();
        }
        if let Some(o) = event["o"].as_str() {
            op = o.to_owned();
        }
        if batch && (!named || op == "patch") {
            for inner in event["v"].as_array().into_iter().flatten() {
                out.push((
                    inner["p"].as_str().unwrap_or_default().to_owned(),
                    inner["o"].as_str().unwrap_or_default().to_owned(),
                    inner["v"].clone(),
                ));
            }
        } else {
            out.push((path.clone(), op.clone(), event["v"].clone()));
        }
    }
    out
}

/// `[[model-fallback]]`: another model writes the answer, and the stream's closing metadata lists
/// the plan's model among those whose limit is used up, with when it lifts (5 hours on, on a round
/// ten minutes).
#[tokio::test]
async fn a_fallback_answer_names_its_model_and_the_plans_model_limit() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, Site::ChatGpt, quick("current")).await?;
    let session = sim.create_session("stream").await;
    let asked = std::time::SystemTime::now();
    let events =
        stream(&sim, &session.token, "/backend-api/f/conversation", "Best e-bikes? [[model-fallback]]").await?;
    let answer = events.iter().find_map(|e| {
        e["v"]["message"].as_object().filter(|m| {
            m["author"]["role"] == "assistant" && m["recipient"] == "all" && m["content"]["content_type"] == "text"
        })
    });
    assert_eq!(answer.expect("the answer's opening")["metadata"]["model_slug"], "gpt-5-mini");
    let detail = events.iter().find(|e| e["type"] == "conversation_detail_metadata").expect("the account's limits");
    assert_eq!(detail["intended_default_model_slug"], "gpt-5");
    assert_eq!(detail["default_model_slug"], "gpt-5-mini");
    let limits = detail["model_limits"].as_array().expect("a list");
    assert_eq!(limits.len(), 1);
    assert_eq!(limits[0]["model_slug"], "gpt-5");
    let resets = chrono::DateTime::parse_from_rfc3339(limits[0]["resets_after"].as_str().expect("a time"))?;
    let ahead = resets.timestamp() - asked.duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    assert!((5 * 3600 - 1..=5 * 3600 + 600).contains(&ahead), "{ahead} s ahead");
    assert_eq!(resets.timestamp() % 600, 0);
    Ok(())
}

#[tokio::test]
async fn the_2026_stream_patches_references_in_batches_and_names_queries_products_and_the_end() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, Site::ChatGpt, quick("thread-flyout")).await?;
    let session = sim.create_session("stream").await;
    let prompt = "What are the best laptops under $1,000?";
    assert!(chatgpt_is_shopping(prompt));
    let events = stream(&sim, &session.token, "/backend-api/f/conversation", prompt).await?;

    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types[..2], ["resume_conversation_token", "server_ste_metadata"]);
    assert!(types.contains(&"message_marker"));
    assert_eq!(types[types.len() - 2..], ["message_stream_complete", "conversation_detail_metadata"]);
    let detail = events.iter().find(|e| e["type"] == "conversation_detail_metadata").expect("the account's limits");
    assert_eq!(detail["model_limits"], serde_json::json!([]), "no limit used up");
    assert_eq!(detail["default_model_slug"], "gpt-5");
    assert_eq!(events.last(), Some(&Value::String("[DONE]".into())));
    // Batches both with p/o and without them, as the 2026-10 captures show.
    let batches = events.iter().filter(|e| e["v"].is_array() && e["v"][0]["o"].is_string());
    let (named, bare): (Vec<&Value>, Vec<&Value>) = batches.partition(|e| e.get("p").is_some());
    assert!(!named.is_empty() && !bare.is_empty(), "{named:?} {bare:?}");

    let ops = operations(&events);
    let text: String = ops
        .iter()
        .filter(|(p, o, v)| p == "/message/content/parts/0" && o == "append" && v.is_string())
        .filter_map(|(_, _, v)| v.as_str())
        .collect();
    let answer = answer_for(prompt, true);
    let references: Vec<&Value> = ops
        .iter()
        .filter(|(p, o, _)| p == "/message/metadata/content_references" && o == "append")
        .flat_map(|(_, _, v)| v.as_array().into_iter().flatten())
        .collect();
    let cited: Vec<&Value> = references.iter().copied().filter(|r| r["type"] == "grouped_webpages").collect();
    assert_eq!(cited.len(), answer.citations.len());
    for (reference, citation) in cited.iter().zip(&answer.citations) {
        let marker = reference["matched_text"].as_str().context("marker")?;
        let start = reference["start_idx"].as_u64().context("start_idx")? as usize;
        let at = text.find(marker).context("the marker is in the text")?;
        assert_eq!(text[..at].chars().count(), start, "start_idx is the marker's place");
        assert_eq!(reference["items"][0]["url"], citation.href.as_str());
    }
    let footnote = references.iter().find(|r| r["type"] == "sources_footnote").context("a sources footnote")?;
    assert!(
        footnote["sources"].as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["url"].as_str().is_some_and(|u| u.starts_with("https://chatgpt.com/c/"))))
    );
    let results: Vec<&str> = ops
        .iter()
        .filter(|(p, _, _)| p == "/message/metadata/search_result_groups")
        .flat_map(|(_, _, v)| v.as_array().into_iter().flatten())
        .filter_map(|group| group["entries"][0]["url"].as_str())
        .collect();
    let wanted: Vec<String> =
        answer.citations.iter().chain(&chatgpt_more_sources(prompt)).map(|c| c.href.clone()).collect();
    assert_eq!(results, wanted);

    // The opening has no references; the tool message names the fan-out only the new way.
    let opened: Vec<&Value> = events.iter().filter_map(|e| e["v"].get("message")).collect();
    let tool = opened.iter().find(|m| m["author"]["role"] == "tool").context("the web tool's message")?;
    assert_eq!(tool["metadata"]["search_model_queries"]["queries"], json!(chatgpt_search_queries(prompt)));
    assert!(tool["metadata"].get("search_queries").is_none());
    let answer_message = opened.last().context("the answer")?;
    assert_eq!(answer_message["metadata"]["content_references"], json!([]));

    // Products ride at the end of the text as one marker.
    let names = chatgpt_products(prompt);
    assert!(!names.is_empty());
    let marker =
        text.split('\u{e200}').find_map(|piece| piece.strip_prefix("products\u{e202}")).context("products marker")?;
    let body: Value = serde_json::from_str(marker.split('\u{e201}').next().unwrap_or_default())?;
    let shown: Vec<&str> = body["selections"].as_array().into_iter().flatten().filter_map(|s| s[1].as_str()).collect();
    assert_eq!(shown, names.iter().map(String::as_str).collect::<Vec<_>>());
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_current_page_keeps_the_header_shape_and_only_shopping_prompts_get_products() -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, Site::ChatGpt, quick("current")).await?;
    let session = sim.create_session("stream").await;
    let prompt = "How do heat pumps work in cold climates?";
    assert!(!chatgpt_is_shopping(prompt) && chatgpt_products(prompt).is_empty());
    let events = stream(&sim, &session.token, "/backend-api/conversation", prompt).await?;
    let opened: Vec<&Value> = events.iter().filter_map(|e| e["v"].get("message")).collect();
    let tool = opened.iter().find(|m| m["author"]["role"] == "tool").context("the web tool's message")?;
    let legacy: Vec<&str> =
        tool["metadata"]["search_queries"].as_array().into_iter().flatten().filter_map(|q| q["q"].as_str()).collect();
    assert_eq!(legacy, chatgpt_search_queries(prompt).iter().map(String::as_str).collect::<Vec<_>>());
    let answer_message = opened.last().context("the answer")?;
    assert_eq!(
        answer_message["metadata"]["content_references"].as_array().map(Vec::len),
        Some(answer_for(prompt, true).citations.len())
    );
    let text: String = events.iter().filter_map(|e| e["v"].as_str()).collect();
    assert!(!text.contains("\u{e200}products"));

    // No search, no fan-out and no products, even for a shopping prompt.
    let events =
        stream(&sim, &session.token, "/backend-api/conversation", "Best kettle to buy [[no-citations]]").await?;
    assert!(
        events.iter().all(|e| !e.to_string().contains("search_model_queries") && !e.to_string().contains("products"))
    );
    sim.shutdown().await;
    Ok(())
}
