//! HTTP-level tests of the simulator: admin API, login wall, streamed answers, failure knobs.

use aap_simulator::{
    CHALLENGE_TITLE, CHATGPT_ANSWER_NOW_EVENT, CHATGPT_PREFERRED_EVENTS, GENERIC_ERROR_MESSAGE, RATE_LIMIT_MESSAGE,
    SESSION_COOKIE, Simulator, SimulatorConfig, answer_for, chatgpt_more_sources,
};
use anyhow::{Context, Result, ensure};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn fast_config() -> SimulatorConfig {
    SimulatorConfig { first_token_delay_ms: 5, chunk_delay_ms: 1, pause_ms: 20, ..SimulatorConfig::default() }
}

async fn start(config: SimulatorConfig) -> Result<(Simulator, reqwest::Client)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = Simulator::start(listener, aap_simulator::Site::ChatGpt, config).await?;
    Ok((sim, reqwest::Client::new()))
}

fn cookie(token: &str) -> String {
    format!("{SESSION_COOKIE}={token}")
}

/// What one `POST /backend-api/conversation` streamed back.
#[derive(Debug, Default)]
struct Streamed {
    /// The appended text, citation markers included.
    text: String,
    /// `content_references` of the opening message.
    references: Vec<Value>,
    error: Option<String>,
    complete: bool,
    done: bool,
}

async fn ask(client: &reqwest::Client, sim: &Simulator, token: &str, prompt: &str) -> Result<(StatusCode, String)> {
    let response = client
        .post(format!("{}/backend-api/conversation", sim.base_url))
        .header("cookie", cookie(token))
        .json(&json!({
            "action": "next",
            "messages": [{ "id": "m1", "author": { "role": "user" }, "content": { "content_type": "text", "parts": [prompt] } }],
            "parent_message_id": "p1",
            "model": "auto",
        }))
        .send()
        .await?;
    let status = response.status();
    Ok((status, response.text().await?))
}

fn parse_stream(body: &str) -> Result<Streamed> {
    let mut streamed = Streamed::default();
    for event in body.split("\n\n").filter(|event| !event.trim().is_empty()) {
        let data: String = event.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
        if data == "[DONE]" {
            streamed.done = true;
            continue;
        }
        let payload: Value = serde_json::from_str(&data).with_context(|| format!("event data {data:?}"))?;
        match payload.get("type").and_then(Value::as_str) {
            Some("error") => streamed.error = payload["message"].as_str().map(str::to_owned),
            Some("message_stream_complete") => streamed.complete = true,
            _ => {}
        }
        match payload.get("v") {
            Some(Value::String(chunk)) => streamed.text.push_str(chunk),
            Some(Value::Object(header)) if header.contains_key("message") => {
                streamed.references =
                    header["message"]["metadata"]["content_references"].as_array().cloned().unwrap_or_default();
            }
            _ => {}
        }
    }
    Ok(streamed)
}

/// The streamed text with its citation markers (and the space before each) taken out.
fn without_markers(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(" \u{e200}") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('\u{e201}').map_or(rest.len(), |end| start + end + '\u{e201}'.len_utf8());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[tokio::test]
async fn admin_api_makes_sessions_with_a_storage_state_and_expires_them() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let created: Value = client
        .post(format!("{}/__sim/sessions", sim.base_url))
        .json(&json!({"label": "operator-1"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = created["token"].as_str().context("token")?.to_owned();
    let state: Value = serde_json::from_str(created["storage_state_json"].as_str().context("storage state")?)?;
    let cookie_entry = &state["cookies"][0];
    assert_eq!(cookie_entry["name"], SESSION_COOKIE);
    assert_eq!(cookie_entry["value"], token.as_str());
    assert_eq!(cookie_entry["domain"], "127.0.0.1");
    assert_eq!(cookie_entry["secure"], true);
    assert_eq!(cookie_entry["path"], "/");
    assert_eq!(state["origins"][0]["origin"], sim.base_url.as_str());
    assert_eq!(state["origins"][0]["localStorage"].as_array().map(Vec::len), Some(1));

    let page = |token: Option<String>| {
        let request = client.get(format!("{}/?model=auto", sim.base_url));
        let request = match token {
            Some(token) => request.header("cookie", format!("_puid=x; {}", cookie(&token))),
            None => request,
        };
        async move { anyhow::Ok(request.send().await?.text().await?) }
    };
    let chat = page(Some(token.clone())).await?;
    assert!(chat.contains("id=\"prompt-textarea\""));
    assert!(chat.contains("operator-1"));
    let wall = page(None).await?;
    assert!(wall.contains("data-testid=\"login-button\""));
    assert!(!wall.contains("id=\"prompt-textarea\""));

    let expire = client.post(format!("{}/__sim/sessions/{token}/expire", sim.base_url)).send().await?;
    assert_eq!(expire.status(), StatusCode::NO_CONTENT);
    assert!(page(Some(token.clone())).await?.contains("data-testid=\"login-button\""));
    let unknown = client.post(format!("{}/__sim/sessions/nope/expire", sim.base_url)).send().await?;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    let stats: Value = client.get(format!("{}/__sim/stats", sim.base_url)).send().await?.json().await?;
    assert_eq!(stats["by_token"][&token]["label"], "operator-1");
    assert_eq!(stats["by_token"][&token]["expired"], true);
    assert_eq!(stats["login_walls"], 2);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn config_can_be_patched_at_runtime_and_rejects_unknown_fields() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let url = format!("{}/__sim/config", sim.base_url);
    let patched: Value = client
        .put(&url)
        .json(&json!({"pause_ms": 33, "no_citations": true}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    assert_eq!(patched["pause_ms"], 33);
    assert_eq!(patched["no_citations"], true);
    assert_eq!(patched["first_token_delay_ms"], 5, "fields not in the patch keep their value");
    assert_eq!(sim.config().pause_ms, 33);
    let refused = client.put(&url).json(&json!({"pause": 1})).send().await?;
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let current: Value = client.get(&url).send().await?.json().await?;
    assert_eq!(current, patched);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn pages_carry_the_interruption_knobs_in_force_and_the_popup_is_served() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let session = sim.create_session("reader").await;
    let page = |client: reqwest::Client, url: String, token: String| async move {
        client.get(url).header("cookie", cookie(&token)).send().await?.error_for_status()?.text().await
    };
    let off = page(client.clone(), format!("{}/", sim.base_url), session.token.clone()).await?;
    assert!(off.contains("window.aapSimInterruptions = {"), "the script is on every page");
    assert!(off.contains("\"modal\":false") && off.contains("\"new_window\":false"), "all off by default");
    assert_eq!(off.matches("</body>").count(), 1);

    let url = format!("{}/__sim/config", sim.base_url);
    let patch =
        json!({"modal": true, "banner": true, "alert": true, "beforeunload": true, "new_window": true, "sticky": true});
    let patched: Value = client.put(&url).json(&patch).send().await?.error_for_status()?.json().await?;
    for (knob, on) in patch.as_object().context("object")? {
        assert_eq!(&patched[knob], on, "{knob}");
    }
    let on = page(client.clone(), format!("{}/", sim.base_url), session.token.clone()).await?;
    assert!(on.contains("\"modal\":true") && on.contains("\"sticky\":true") && on.contains("\"confirm\":false"));
    assert!(on.contains("close-button"), "ChatGPT's dialog in its own hooks");

    let popup = client.get(format!("{}{}", sim.base_url, aap_simulator::POPUP_PATH)).send().await?;
    assert_eq!(popup.status(), StatusCode::OK);
    assert!(!popup.text().await?.contains("aapSimInterruptions"), "the popup opens nothing more");
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn conversation_streams_the_same_answer_for_the_same_prompt_and_counts_it() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let session = sim.create_session("bot-a").await;
    let prompt = "What are the best laptops under $1,000?";
    let expected = answer_for(prompt, true);

    let mut texts = Vec::new();
    for _ in 0..2 {
        let (status, body) = ask(&client, &sim, &session.token, prompt).await?;
        assert_eq!(status, StatusCode::OK);
        let streamed = parse_stream(&body)?;
        ensure!(streamed.complete && streamed.done && streamed.error.is_none(), "incomplete stream: {body}");
        assert_eq!(without_markers(&streamed.text), expected.markdown);
        assert_eq!(streamed.references.len(), expected.citations.len());
        for (reference, citation) in streamed.references.iter().zip(&expected.citations) {
            assert_eq!(reference["items"][0]["url"], citation.href.as_str());
            assert_eq!(reference["items"][0]["attribution"], citation.domain.as_str());
            let marker = reference["matched_text"].as_str().context("matched_text")?;
            assert!(streamed.text.contains(marker));
        }
        texts.push(streamed.text);
    }
    assert_eq!(texts[0], texts[1]);

    let stats = sim.stats();
    assert_eq!(stats.answers_for_prompt(prompt), 2);
    assert_eq!(stats.answers_for_token(&session.token), 2);
    assert_eq!(stats.answers_total, 2);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn markers_and_knobs_produce_the_failures() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let session = sim.create_session("bot-b").await;

    let (status, body) = ask(&client, &sim, &session.token, "hello [[no-citations]]").await?;
    assert_eq!(status, StatusCode::OK);
    let streamed = parse_stream(&body)?;
    assert!(streamed.references.is_empty());
    assert!(!streamed.text.contains('\u{e200}'));
    assert_eq!(streamed.text, answer_for("hello", false).markdown);

    let (status, body) = ask(&client, &sim, &session.token, "hello [[rate-limit]]").await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(body.contains(RATE_LIMIT_MESSAGE));

    let (status, body) = ask(&client, &sim, &session.token, "hello [[error]]").await?;
    assert_eq!(status, StatusCode::OK);
    let streamed = parse_stream(&body)?;
    assert_eq!(streamed.error.as_deref(), Some(GENERIC_ERROR_MESSAGE));
    assert!(!streamed.complete);

    // A per-session quota: the session already has one answer.
    sim.set_config(SimulatorConfig { rate_limit_after: Some(1), ..sim.config() });
    let (status, _) = ask(&client, &sim, &session.token, "another question").await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let other = sim.create_session("bot-c").await;
    let (status, _) = ask(&client, &sim, &other.token, "another question").await?;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = ask(&client, &sim, &other.token, "bye [[expire-session]]").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = ask(&client, &sim, &other.token, "another question").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the session stays expired");
    let (status, _) = ask(&client, &sim, "not-a-session", "hello").await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let stats = sim.stats();
    let bot_b = &stats.by_token[&session.token];
    assert_eq!((bot_b.answers, bot_b.rate_limited, bot_b.errors), (1, 2, 1));
    assert!(stats.by_token[&other.token].expired);
    assert_eq!(stats.answers_for_prompt("another question"), 1);
    assert_eq!(stats.by_prompt["another question"].rate_limited, 1);
    sim.shutdown().await;
    Ok(())
}

/// Every event's data as JSON, `[DONE]` left out.
fn all_events(body: &str) -> Result<Vec<Value>> {
    body.split("\n\n")
        .filter(|event| !event.trim().is_empty())
        .map(|event| event.lines().filter_map(|line| line.strip_prefix("data: ")).collect::<String>())
        .filter(|data| data != "[DONE]")
        .map(|data| serde_json::from_str(&data).with_context(|| format!("event data {data:?}")))
        .collect()
}

/// The messages the stream opened, in order.
fn opened(events: &[Value]) -> Vec<&Value> {
    events.iter().filter_map(|event| event.get("v")?.get("message")).collect()
}

#[tokio::test]
async fn a_reasoning_answer_thinks_then_searches_then_lists_every_source() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let session = sim.create_session("bot-d").await;
    let prompt = "Plan a week of dinners [[thinking]]";
    let (status, body) = ask(&client, &sim, &session.token, prompt).await?;
    assert_eq!(status, StatusCode::OK);
    let events = all_events(&body)?;
    let messages = opened(&events);
    let kinds: Vec<&str> = messages.iter().map(|m| m["content"]["content_type"].as_str().unwrap_or_default()).collect();
    assert_eq!(kinds, ["thoughts", "reasoning_recap", "text", "text"]);
    assert!(messages[1]["content"]["content"].as_str().is_some_and(|recap| recap.starts_with("Thought for ")));
    assert_eq!(messages[2]["author"]["role"], "tool", "the web search");
    let answer = messages[3];
    assert_eq!(answer["metadata"]["model_slug"], "gpt-5-thinking");
    let expected = answer_for(prompt, true);
    let listed: Vec<String> = answer["metadata"]["search_result_groups"]
        .as_array()
        .context("search results")?
        .iter()
        .filter_map(|group| group["entries"][0]["url"].as_str().map(str::to_owned))
        .collect();
    let wanted: Vec<String> =
        expected.citations.iter().chain(&chatgpt_more_sources(prompt)).map(|c| c.href.clone()).collect();
    assert_eq!(listed, wanted, "cited sources first, then the ones only listed");
    assert_eq!(without_markers(&parse_stream(&body)?.text), expected.markdown);

    // Answers without citations ran no search and list nothing.
    let (_, body) = ask(&client, &sim, &session.token, "hello [[no-citations]]").await?;
    let events = all_events(&body)?;
    assert!(opened(&events).iter().all(|m| m["author"]["role"] == "assistant"));
    assert!(opened(&events).iter().all(|m| m["metadata"]["search_result_groups"].as_array().is_none_or(Vec::is_empty)));

    // "Answer now" is recorded, never acted on by the stream.
    let url = format!("{}/backend-api/conversation/c1/answer_now", sim.base_url);
    assert_eq!(client.post(&url).send().await?.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        client.post(&url).header("cookie", cookie(&session.token)).send().await?.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(sim.stats().site_event(CHATGPT_ANSWER_NOW_EVENT), 1);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_ab_prompt_streams_two_candidates_and_records_the_choice() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let session = sim.create_session("bot-e").await;
    let prompt = "Which city is best for a weekend trip? [[ab-test]]";
    let (_, body) = ask(&client, &sim, &session.token, prompt).await?;
    let events = all_events(&body)?;
    let candidates: Vec<&Value> =
        opened(&events).into_iter().filter(|m| m["metadata"]["paragen_variant_index"].is_u64()).collect();
    assert_eq!(candidates.len(), 2);
    assert_eq!(candidates[0]["metadata"]["model_slug"], "gpt-5");
    assert_eq!(candidates[1]["metadata"]["model_slug"], "gpt-5-experimental");
    let mut texts = [String::new(), String::new()];
    for event in &events {
        let path = event.get("p").and_then(Value::as_str).unwrap_or_default();
        if let (Some(index), Some(chunk)) = (path.strip_prefix("/paragen/"), event.get("v").and_then(Value::as_str)) {
            let index: usize = index.split('/').next().unwrap_or_default().parse()?;
            texts[index].push_str(chunk);
        }
    }
    assert_eq!(without_markers(&texts[0]), answer_for(prompt, true).markdown, "response 1 is the answer");
    assert_ne!(texts[0], texts[1]);
    assert!(events.iter().any(|event| event["type"] == "message_stream_complete"));

    let url = format!("{}/backend-api/conversation/c1/paragen_feedback", sim.base_url);
    let choose = |preferred: Value| {
        client.post(&url).header("cookie", cookie(&session.token)).json(&json!({ "preferred": preferred })).send()
    };
    assert_eq!(choose(json!(3)).await?.status(), StatusCode::BAD_REQUEST);
    assert_eq!(choose(json!(1)).await?.status(), StatusCode::NO_CONTENT);
    let stats = sim.stats();
    assert_eq!((stats.site_event(CHATGPT_PREFERRED_EVENTS[0]), stats.site_event(CHATGPT_PREFERRED_EVENTS[1])), (1, 0));
    assert_eq!(stats.answers_for_prompt(prompt), 1);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn challenges_and_stalls_refuse_or_never_finish_the_answer() -> Result<()> {
    let (sim, client) = start(SimulatorConfig { stall_ms: 300, ..fast_config() }).await?;
    let session = sim.create_session("bot-f").await;

    // A prompt that trips the edge mid-session: the API call gets Cloudflare's page, and so
    // does the reload the app then makes.
    let (status, body) = ask(&client, &sim, &session.token, "news [[challenge]]").await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains(CHALLENGE_TITLE));
    let reload = client
        .get(format!("{}/?__cf_chl_rt_tk=abc", sim.base_url))
        .header("cookie", cookie(&session.token))
        .send()
        .await?;
    assert_eq!(reload.status(), StatusCode::FORBIDDEN);
    assert_eq!(reload.headers().get("cf-mitigated").and_then(|v| v.to_str().ok()), Some("challenge"));
    // The session itself is fine on a plain load.
    let page = client.get(&sim.base_url).header("cookie", cookie(&session.token)).send().await?;
    assert_eq!(page.status(), StatusCode::OK);

    // The knob puts every page and call behind the challenge.
    sim.set_config(SimulatorConfig { challenge: true, ..sim.config() });
    let (status, body) = ask(&client, &sim, &session.token, "news").await?;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains(CHALLENGE_TITLE));
    sim.set_config(SimulatorConfig { challenge: false, ..sim.config() });

    // A stall stops a third of the way and ends without completing.
    let prompt = "Tell me a long story [[stall]]";
    let (status, body) = ask(&client, &sim, &session.token, prompt).await?;
    assert_eq!(status, StatusCode::OK);
    let streamed = parse_stream(&body)?;
    assert!(!streamed.complete && !streamed.done && streamed.error.is_none());
    let full = answer_for(prompt, true);
    assert!(!streamed.text.is_empty() && streamed.text.len() < full.markdown.len());
    let stats = sim.stats();
    assert_eq!(stats.by_prompt[&aap_simulator::normalize_prompt(prompt)].interrupted, 1);
    assert_eq!(stats.answers_total, 0);
    assert!(stats.challenges >= 3);
    sim.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_empty_answer_opens_its_message_and_finishes_without_a_word() -> Result<()> {
    let (sim, client) = start(fast_config()).await?;
    let session = sim.create_session("bot-g").await;
    let prompt = "What are the best laptops under $1,000? [[empty]]";
    let (status, body) = ask(&client, &sim, &session.token, prompt).await?;
    assert_eq!(status, StatusCode::OK);
    let streamed = parse_stream(&body)?;
    ensure!(streamed.complete && streamed.done && streamed.error.is_none(), "an ordinary finish: {body}");
    assert_eq!(streamed.text, "", "not a word");
    assert!(streamed.references.is_empty());
    let events = all_events(&body)?;
    let messages = opened(&events);
    assert_eq!(messages.len(), 1, "the answer's message opens, no search runs: {messages:?}");
    assert_eq!(messages[0]["author"]["role"], "assistant");
    assert!(
        events.iter().any(|event| event["o"] == "patch" && event.to_string().contains("finished_successfully")),
        "the message finishes as usual"
    );

    // The knob does it for every prompt, patched at runtime like the others.
    let url = format!("{}/__sim/config", sim.base_url);
    let patched: Value =
        client.put(&url).json(&json!({"empty": true})).send().await?.error_for_status()?.json().await?;
    assert_eq!(patched["empty"], true);
    let (_, body) = ask(&client, &sim, &session.token, "Explain tides").await?;
    let streamed = parse_stream(&body)?;
    assert!(streamed.complete && streamed.text.is_empty());
    client.put(&url).json(&json!({"empty": false})).send().await?.error_for_status()?;
    let (_, body) = ask(&client, &sim, &session.token, "Explain tides").await?;
    assert_eq!(without_markers(&parse_stream(&body)?.text), answer_for("Explain tides", true).markdown);

    let stats = sim.stats();
    assert_eq!((stats.answers_for_prompt(prompt), stats.empty_answers_for_prompt(prompt)), (1, 1));
    assert_eq!((stats.answers_for_prompt("Explain tides"), stats.empty_answers_for_prompt("Explain tides")), (2, 1));
    let token = &stats.by_token[&session.token];
    assert_eq!((token.answers, token.empty_answers), (3, 2));
    assert_eq!((stats.answers_total, stats.empty_answers_total), (3, 2));
    sim.shutdown().await;
    Ok(())
}
