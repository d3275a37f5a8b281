//! The simulator driven by a real Chromium through chromedriver and thirtyfour, the way the bot
//! drives chatgpt.com.

use std::process::Stdio;
use std::time::{Duration, Instant};

use aap_simulator::{
    Answer, CHALLENGE_TITLE, CHATGPT_ANSWER_NOW_EVENT, CHATGPT_PREFERRED_EVENTS, GENERIC_ERROR_MESSAGE,
    RATE_LIMIT_MESSAGE, SESSION_COOKIE, SimSession, Simulator, SimulatorConfig, answer_for, chatgpt_more_sources,
};
use anyhow::{Context, Result, bail, ensure};
use futures::FutureExt;
use thirtyfour::prelude::*;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const CHROMIUM_ARGS: [&str; 9] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-gpu",
    "--window-size=1280,900",
];

const COMPOSER: &str = "#prompt-textarea";
const SEND: &str = "button[data-testid='send-button']";
const STOP: &str = "button[data-testid='stop-button']";
const LAST_TURN: &str = "article[data-testid^='conversation-turn-']:last-of-type";
const WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

/// One chromedriver and one Chromium with a throwaway profile.
struct Browser {
    driver: WebDriver,
    chromedriver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    async fn start() -> Result<Self> {
        let mut chromedriver = Command::new("chromedriver")
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("spawn chromedriver")?;
        let port = match read_port(&mut chromedriver).await {
            Ok(port) => port,
            Err(error) => {
                let _ = chromedriver.kill().await;
                return Err(error);
            }
        };
        let profile = tempfile::tempdir()?;
        let mut caps = DesiredCapabilities::chrome();
        caps.set_binary("/usr/bin/chromium")?;
        for arg in CHROMIUM_ARGS {
            caps.add_arg(arg)?;
        }
        caps.add_arg(&format!("--user-data-dir={}", profile.path().display()))?;
        match WebDriver::new(format!("http://127.0.0.1:{port}"), caps).await {
            Ok(driver) => Ok(Self { driver, chromedriver, _profile: profile }),
            Err(error) => {
                let _ = chromedriver.kill().await;
                Err(error.into())
            }
        }
    }

    async fn close(mut self) {
        if let Err(error) = self.driver.quit().await {
            eprintln!("quitting chromium failed: {error}");
        }
        let _ = self.chromedriver.kill().await;
    }
}

/// Reads "ChromeDriver was started successfully on port N." and keeps draining stdout after.
async fn read_port(chromedriver: &mut Child) -> Result<u16> {
    let stdout = chromedriver.stdout.take().context("chromedriver stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let port = loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .context("chromedriver did not report its port")??
            .context("chromedriver exited before reporting its port")?;
        if let Some(rest) = line.split("started successfully on port ").nth(1) {
            break rest.trim().trim_end_matches('.').parse::<u16>().with_context(|| format!("port in {line:?}"))?;
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(port)
}

/// Starts a simulator and a browser, runs the body, and always quits Chromium and stops both.
macro_rules! with_browser {
    ($config:expr, |$driver:ident, $sim:ident| $body:block) => {{
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let $sim = Simulator::start(listener, aap_simulator::Site::ChatGpt, $config).await?;
        let browser = Browser::start().await?;
        // A failed assert! panics: catch it so Chromium is still quit, then re-raise it.
        let outcome = std::panic::AssertUnwindSafe(async {
            let $driver = &browser.driver;
            let $sim = &$sim;
            let result: Result<()> = $body;
            result
        })
        .catch_unwind()
        .await;
        browser.close().await;
        $sim.shutdown().await;
        match outcome {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }};
}

fn quick_config() -> SimulatorConfig {
    SimulatorConfig { first_token_delay_ms: 150, chunk_delay_ms: 5, pause_ms: 300, ..SimulatorConfig::default() }
}

async fn log_in(driver: &WebDriver, sim: &Simulator, session: &SimSession) -> Result<()> {
    // Cookies can only be set once the browser is on the origin.
    driver.goto(&sim.base_url).await?;
    let mut cookie = Cookie::new(SESSION_COOKIE, session.token.clone());
    cookie.set_path("/");
    cookie.set_secure(true);
    cookie.set_http_only(true);
    driver.add_cookie(cookie).await?;
    driver.goto(format!("{}/?model=auto", sim.base_url)).await?;
    driver.query(By::Css(COMPOSER)).first().await?;
    Ok(())
}

/// Types the prompt and clicks send.
async fn send_prompt(driver: &WebDriver, prompt: &str) -> Result<()> {
    let composer = driver.query(By::Css(COMPOSER)).first().await?;
    let send = driver.find(By::Css(SEND)).await?;
    ensure!(!send.is_enabled().await?, "send button enabled on an empty composer");
    composer.send_keys(prompt).await?;
    let send = driver.query(By::Css(SEND)).and_enabled().first().await?;
    send.click().await?;
    Ok(())
}

/// Waits until the last turn is finished: stop button gone and either the action bar or an
/// error in the turn.
async fn wait_finished(driver: &WebDriver) -> Result<WebElement> {
    driver.query(By::Css(STOP)).wait(WAIT, POLL).wait_until_gone().await?;
    let turn = driver.query(By::Css(LAST_TURN)).first().await?;
    turn.query(By::Css("button[data-testid='copy-turn-action-button']"))
        .or(By::Css(".text-token-text-error"))
        .wait(WAIT, POLL)
        .first()
        .await?;
    driver.query(By::Css(SEND)).first().await?;
    Ok(turn)
}

/// What the bot extracts from an answered turn.
#[derive(Debug, PartialEq)]
struct Extracted {
    /// innerText of `div.markdown` without the pills, white space collapsed.
    prose: String,
    /// (href, text, target) of each pill link.
    pills: Vec<(String, String, String)>,
}

async fn extract(turn: &WebElement) -> Result<Extracted> {
    let markdown = turn.find(By::Css("div[data-message-author-role='assistant'] div.markdown")).await?;
    let mut pills = Vec::new();
    for link in markdown.find_all(By::Css("span[data-testid='webpage-citation-pill'] a")).await? {
        pills.push((
            link.attr("href").await?.unwrap_or_default(),
            link.text().await?,
            link.attr("target").await?.unwrap_or_default(),
        ));
    }
    let prose = turn
        .handle()
        .execute(
            "const copy = arguments[0].cloneNode(true);\
             copy.querySelectorAll('[data-testid=\"webpage-citation-pill\"]').forEach((pill) => pill.remove());\
             document.body.appendChild(copy);\
             const text = copy.innerText;\
             copy.remove();\
             return text;",
            vec![markdown.to_json()?],
        )
        .await?
        .convert::<String>()?;
    Ok(Extracted { prose: collapse(&prose), pills })
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn expected(answer: &Answer) -> Extracted {
    Extracted {
        prose: collapse(&answer.plain_text()),
        pills: answer
            .citations
            .iter()
            .map(|citation| (citation.href.clone(), citation.domain.clone(), "_blank".to_owned()))
            .collect(),
    }
}

#[tokio::test]
async fn login_wall_without_a_session_cookie() -> Result<()> {
    with_browser!(quick_config(), |driver, sim| {
        driver.goto(format!("{}/?model=auto", sim.base_url)).await?;
        assert_eq!(driver.title().await?, "ChatGPT");
        let login = driver.find(By::Css("button[data-testid='login-button']")).await?;
        assert_eq!(login.text().await?, "Log in");
        assert!(driver.find_all(By::Css(COMPOSER)).await?.is_empty());

        // A cookie that names no session is no better than none.
        let mut cookie = Cookie::new(SESSION_COOKIE, "forged");
        cookie.set_path("/");
        cookie.set_secure(true);
        driver.add_cookie(cookie).await?;
        driver.refresh().await?;
        driver.find(By::Css("button[data-testid='login-button']")).await?;
        assert!(driver.find_all(By::Css(COMPOSER)).await?.is_empty());
        assert_eq!(sim.stats().login_walls, 2);
        Ok(())
    })
}

#[tokio::test]
async fn a_prompt_streams_an_answer_with_a_pause_then_citations_and_the_action_bar() -> Result<()> {
    let config = SimulatorConfig { first_token_delay_ms: 300, chunk_delay_ms: 10, pause_ms: 2000, ..quick_config() };
    with_browser!(config, |driver, sim| {
        let session = sim.create_session("operator-1").await;
        log_in(driver, sim, &session).await?;
        assert_eq!(driver.title().await?, "ChatGPT");
        let new_chat = driver.find(By::Css("a[data-testid='create-new-chat-button']")).await?;
        assert_eq!(new_chat.attr("href").await?.as_deref(), Some("/"));

        // The page itself timestamps every change of the answer's length, from before the prompt
        // is sent (browser clock): a WebDriver poll takes hundreds of milliseconds on a loaded
        // machine and would blur the pause it measures.
        driver
            .execute(
                "window.__aapChanges = [];\
                 let last = -1;\
                 const note = () => {\
                   const answer = document.querySelector(\"[data-message-author-role='assistant'] div.markdown\");\
                   const length = answer ? answer.textContent.length : 0;\
                   if (length !== last) { last = length; window.__aapChanges.push([performance.now(), length]); }\
                 };\
                 new MutationObserver(note).observe(document.body, { childList: true, subtree: true, characterData: true });",
                vec![],
            )
            .await?;
        let prompt = "What are the best noise cancelling headphones?";
        send_prompt(driver, prompt).await?;
        let stop = driver.query(By::Css(STOP)).wait(WAIT, POLL).first().await?;
        let user = driver.find(By::Css("[data-message-author-role='user']")).await?;
        assert_eq!(user.text().await?, prompt);
        let article = driver.find(By::Css("article[data-testid='conversation-turn-2']")).await?;
        assert_eq!(article.attr("data-turn").await?.as_deref(), Some("assistant"));
        let markdown = article.find(By::Css("div[data-message-author-role='assistant'] div.markdown")).await?;
        assert!(driver.find_all(By::Css(SEND)).await?.is_empty(), "stop replaces send");

        driver.query(By::Css(STOP)).wait(WAIT, POLL).wait_until_gone().await?;
        let changes: Vec<(f64, u64)> =
            driver.execute("return window.__aapChanges;", vec![]).await?.convert::<Vec<(f64, u64)>>()?;
        // The text grew while streaming, and stalled for over a second at least once between two
        // non-empty states (the mid-stream pause of 2 s) before it was finished.
        let growing: Vec<&(f64, u64)> = changes.iter().filter(|(_, len)| *len > 0).collect();
        assert!(growing.len() >= 3, "text appeared while streaming: {changes:?}");
        let longest_stall = growing.windows(2).map(|w| w[1].0 - w[0].0).fold(0.0, f64::max);
        assert!(longest_stall >= 1000.0, "the stream paused mid-way (longest stall {longest_stall} ms): {changes:?}");
        assert!(matches!(stop.is_present().await, Ok(false) | Err(_)), "the stop button node is gone");

        let turn = wait_finished(driver).await?;
        assert_eq!(turn.attr("data-testid").await?.as_deref(), Some("conversation-turn-2"));
        let answer = answer_for(prompt, true);
        let extracted = extract(&turn).await?;
        assert_eq!(extracted, expected(&answer));
        assert!((2..=5).contains(&extracted.pills.len()));
        assert!(extracted.pills.iter().all(|(href, _, _)| href.contains("utm_source=chatgpt.com")));
        assert!(!markdown.attr("class").await?.unwrap_or_default().contains("streaming-animation"));

        let sources = turn.query(By::Css("button")).with_text("Sources").first().await?;
        sources.click().await?;
        // The panel lists the cited sources, then the ones the search read without citing them.
        let panel_links = driver.query(By::Css("aside[aria-label='Sources'] a")).all_from_selector_required().await?;
        let more = chatgpt_more_sources(prompt);
        let listed: Vec<&aap_simulator::Citation> = answer.citations.iter().chain(&more).collect();
        assert_eq!(panel_links.len(), listed.len());
        for (link, source) in panel_links.iter().zip(&listed) {
            assert_eq!(link.attr("href").await?.as_deref(), Some(source.href.as_str()));
            assert_eq!(link.find(By::Css(".source-title")).await?.text().await?, source.title);
        }
        let headings = driver.find_all(By::Css("aside[aria-label='Sources'] h3")).await?;
        assert_eq!(headings.len(), 2, "Citations and More");
        let status = turn.find(By::Css("[data-testid='search-status']")).await?;
        assert_eq!(status.text().await?, format!("Searched {} sites", listed.len()));
        assert!(driver.current_url().await?.path().starts_with("/c/"));

        let stats = sim.stats();
        assert_eq!(stats.answers_for_prompt(prompt), 1);
        assert_eq!(stats.answers_for_token(&session.token), 1);
        Ok(())
    })
}

#[tokio::test]
async fn the_same_prompt_twice_gives_the_same_answer() -> Result<()> {
    with_browser!(quick_config(), |driver, sim| {
        let session = sim.create_session("operator-2").await;
        log_in(driver, sim, &session).await?;
        let prompt = "How do heat pumps work in cold climates?";
        send_prompt(driver, prompt).await?;
        let first = extract(&wait_finished(driver).await?).await?;

        driver.find(By::Css("a[data-testid='create-new-chat-button']")).await?.click().await?;
        driver.query(By::Css(COMPOSER)).first().await?;
        ensure!(driver.find_all(By::Css(LAST_TURN)).await?.is_empty(), "new chat starts empty");
        send_prompt(driver, prompt).await?;
        let second = extract(&wait_finished(driver).await?).await?;

        assert_eq!(first, second);
        assert_eq!(first, expected(&answer_for(prompt, true)));
        assert_eq!(sim.stats().answers_for_prompt(prompt), 2);

        // A different prompt in the same conversation gives a different answer as turn 4.
        send_prompt(driver, "And in hot climates?").await?;
        let turn = wait_finished(driver).await?;
        assert_eq!(turn.attr("data-testid").await?.as_deref(), Some("conversation-turn-4"));
        assert_ne!(extract(&turn).await?, first);
        Ok(())
    })
}

#[tokio::test]
async fn no_citations_marker_gives_an_answer_without_pills() -> Result<()> {
    with_browser!(quick_config(), |driver, sim| {
        let session = sim.create_session("operator-3").await;
        log_in(driver, sim, &session).await?;
        let prompt = "Explain photosynthesis simply [[no-citations]]";
        send_prompt(driver, prompt).await?;
        let turn = wait_finished(driver).await?;
        let extracted = extract(&turn).await?;
        assert!(extracted.pills.is_empty());
        assert_eq!(extracted, expected(&answer_for(prompt, false)));
        turn.find(By::Css("button[data-testid='copy-turn-action-button']")).await?;
        assert!(turn.query(By::Css("button")).with_text("Sources").nowait().first_opt().await?.is_none());
        assert_eq!(sim.stats().answers_for_prompt(prompt), 1);
        Ok(())
    })
}

#[tokio::test]
async fn rate_limit_and_errors_show_error_text_instead_of_an_answer() -> Result<()> {
    with_browser!(quick_config(), |driver, sim| {
        let session = sim.create_session("operator-4").await;
        log_in(driver, sim, &session).await?;

        send_prompt(driver, "Is it going to rain tomorrow? [[rate-limit]]").await?;
        let turn = wait_finished(driver).await?;
        let error = turn.find(By::Css("div[data-message-author-role='assistant'] div.text-token-text-error")).await?;
        assert_eq!(error.text().await?, RATE_LIMIT_MESSAGE);
        assert!(turn.find_all(By::Css("div.markdown")).await?.is_empty(), "no answer text");
        assert!(turn.find_all(By::Css("[data-testid='copy-turn-action-button']")).await?.is_empty());

        // The same through the runtime knob, for a prompt without marker.
        sim.set_config(SimulatorConfig { rate_limit: true, ..sim.config() });
        send_prompt(driver, "What about the weekend?").await?;
        let turn = wait_finished(driver).await?;
        assert_eq!(turn.find(By::Css(".text-token-text-error")).await?.text().await?, RATE_LIMIT_MESSAGE);
        sim.set_config(SimulatorConfig { rate_limit: false, ..sim.config() });

        send_prompt(driver, "Summarise the news [[error]]").await?;
        let turn = wait_finished(driver).await?;
        assert_eq!(turn.find(By::Css(".text-token-text-error")).await?.text().await?, GENERIC_ERROR_MESSAGE);
        assert!(turn.find_all(By::Css("[data-testid='copy-turn-action-button']")).await?.is_empty());

        let stats = sim.stats();
        let operator = &stats.by_token[&session.token];
        assert_eq!((operator.answers, operator.rate_limited, operator.errors), (0, 2, 1));
        Ok(())
    })
}

#[tokio::test]
async fn an_expired_session_falls_back_to_the_login_wall() -> Result<()> {
    with_browser!(quick_config(), |driver, sim| {
        let session = sim.create_session("operator-5").await;
        log_in(driver, sim, &session).await?;

        // Revoked while the chat page is open: the next prompt sends the browser to the wall.
        sim.expire_session(&session.token);
        send_prompt(driver, "Still there?").await?;
        driver.query(By::Css("button[data-testid='login-button']")).wait(WAIT, POLL).first().await?;
        assert!(driver.find_all(By::Css(COMPOSER)).await?.is_empty());

        // And every page load after that is the wall too.
        driver.goto(format!("{}/?model=auto", sim.base_url)).await?;
        driver.find(By::Css("button[data-testid='login-button']")).await?;
        assert!(driver.find_all(By::Css(COMPOSER)).await?.is_empty());
        assert_eq!(sim.stats().answers_total, 0);

        // A fresh session works again in the same browser.
        let fresh = sim.create_session("operator-5b").await;
        log_in(driver, sim, &fresh).await?;
        Ok(())
    })
}

#[tokio::test]
async fn the_stop_button_ends_the_answer_early() -> Result<()> {
    let config = SimulatorConfig { pause_ms: 2000, ..quick_config() };
    with_browser!(config, |driver, sim| {
        let session = sim.create_session("operator-6").await;
        log_in(driver, sim, &session).await?;
        let prompt = "Write a long history of the bicycle";
        send_prompt(driver, prompt).await?;
        let turn = driver.query(By::Css(LAST_TURN)).first().await?;
        let markdown = turn.find(By::Css("div.markdown")).await?;
        // Stop during the pause, once some text is on screen.
        let deadline = Instant::now() + WAIT;
        while markdown.text().await?.is_empty() {
            ensure!(Instant::now() < deadline, "no text appeared");
            tokio::time::sleep(POLL).await;
        }
        driver.find(By::Css(STOP)).await?.click().await?;
        let turn = wait_finished(driver).await?;
        turn.find(By::Css("button[data-testid='copy-turn-action-button']")).await?;
        let shown = collapse(&markdown.text().await?);
        let full = collapse(&answer_for(prompt, true).plain_text());
        ensure!(shown.len() < full.len(), "the answer was cut short: {shown:?}");

        let deadline = Instant::now() + WAIT;
        loop {
            let stats = sim.stats();
            if stats.by_prompt.get(prompt).is_some_and(|p| p.interrupted == 1) {
                assert_eq!(stats.answers_for_prompt(prompt), 0);
                break;
            }
            if Instant::now() > deadline {
                bail!("the server never saw the stream stop: {stats:?}");
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    })
}

#[tokio::test]
async fn reasoning_ab_and_challenge_quirks_show_and_record_what_the_client_does() -> Result<()> {
    with_browser!(quick_config(), |driver, sim| {
        let session = sim.create_session("operator-7").await;
        log_in(driver, sim, &session).await?;

        // A reasoning model: "Thinking" with "Answer now" before any text; a click is recorded.
        let prompt = "Plan a week of dinners [[thinking]]";
        send_prompt(driver, prompt).await?;
        let thinking = driver.query(By::Css("[data-testid='thinking-status']")).wait(WAIT, POLL).first().await?;
        assert!(thinking.text().await?.contains("Thinking"));
        let turn = driver.query(By::Css(LAST_TURN)).first().await?;
        assert_eq!(turn.find(By::Css("div.markdown")).await?.text().await?, "", "no text while thinking");
        assert_eq!(sim.stats().site_event(CHATGPT_ANSWER_NOW_EVENT), 0);
        driver.find(By::Css("button[data-testid='answer-now-button']")).await?.click().await?;
        let turn = wait_finished(driver).await?;
        let recap = turn.find(By::Css("[data-testid='reasoning-recap-button']")).await?;
        assert!(recap.text().await?.starts_with("Thought for "), "{}", recap.text().await?);
        assert!(turn.find_all(By::Css("[data-testid='answer-now-button']")).await?.is_empty());
        let message = turn.find(By::Css("div[data-message-author-role='assistant']")).await?;
        assert_eq!(message.attr("data-message-model-slug").await?.as_deref(), Some("gpt-5-thinking"));
        assert_eq!(extract(&turn).await?, expected(&answer_for(prompt, true)));
        assert_eq!(sim.stats().site_event(CHATGPT_ANSWER_NOW_EVENT), 1);

        // An A/B prompt: two responses, no action bar and a blocked composer until one is chosen.
        driver.find(By::Css("a[data-testid='create-new-chat-button']")).await?.click().await?;
        driver.query(By::Css(COMPOSER)).first().await?;
        let prompt = "Which city is best for a weekend trip? [[ab-test]]";
        send_prompt(driver, prompt).await?;
        driver.query(By::Css(STOP)).wait(WAIT, POLL).wait_until_gone().await?;
        let turn = driver.query(By::Css(LAST_TURN)).first().await?;
        let comparison = turn.find(By::Css("[data-testid='paragen-comparison']")).await?;
        assert!(comparison.text().await?.contains("Which response do you prefer?"));
        let candidates = comparison.find_all(By::Css("[data-testid^='paragen-response-']")).await?;
        assert_eq!(candidates.len(), 2);
        assert_eq!(extract(&turn).await?, expected(&answer_for(prompt, true)), "response 1 is the answer");
        let first = candidates[0].find(By::Css("div.markdown")).await?.text().await?;
        let second = candidates[1].find(By::Css("div.markdown")).await?.text().await?;
        assert_ne!(collapse(&first), collapse(&second));
        assert!(turn.find_all(By::Css("[data-testid='copy-turn-action-button']")).await?.is_empty());
        let models: Vec<Option<String>> = futures::future::try_join_all(candidates.iter().map(|c| async move {
            c.find(By::Css("[data-message-author-role]")).await?.attr("data-message-model-slug").await
        }))
        .await?;
        assert_eq!(models, vec![Some("gpt-5".to_owned()), Some("gpt-5-experimental".to_owned())]);
        let prefer = candidates[1].find(By::Css("button[data-testid='paragen-prefer-response-button']")).await?;
        prefer.scroll_into_view().await?;
        prefer.click().await?;
        let turn = wait_finished(driver).await?;
        assert!(turn.find_all(By::Css("[data-testid='paragen-comparison']")).await?.is_empty());
        assert_eq!(turn.find_all(By::Css("div[data-message-author-role='assistant']")).await?.len(), 1);
        let kept = turn.find(By::Css("div.markdown")).await?.text().await?;
        assert_eq!(collapse(&kept), collapse(&second), "the chosen response stays");
        let stats = sim.stats();
        assert_eq!(stats.site_event(CHATGPT_PREFERRED_EVENTS[1]), 1);
        assert_eq!(stats.site_event(CHATGPT_PREFERRED_EVENTS[0]), 0);

        // A challenge mid-session: the page reloads into Cloudflare's interstitial.
        send_prompt(driver, "Any news? [[challenge]]").await?;
        let deadline = Instant::now() + WAIT;
        while driver.title().await? != CHALLENGE_TITLE {
            ensure!(Instant::now() < deadline, "the page never showed the challenge");
            tokio::time::sleep(POLL).await;
        }
        driver.find(By::Css("#challenge-form")).await?;
        assert!(driver.find_all(By::Css(COMPOSER)).await?.is_empty());
        assert!(sim.stats().challenges >= 1);
        Ok(())
    })
}

#[tokio::test]
async fn a_redesign_renames_the_test_ids_but_keeps_the_page_working() -> Result<()> {
    let config = SimulatorConfig { redesign: true, ..quick_config() };
    with_browser!(config, |driver, sim| {
        let session = sim.create_session("operator-8").await;
        // The redesigned page has no #prompt-textarea: log in by hand.
        driver.goto(&sim.base_url).await?;
        assert!(driver.find_all(By::Css("button[data-testid='welcome-login-button']")).await?.len() == 1);
        let mut cookie = Cookie::new(SESSION_COOKIE, session.token.clone());
        cookie.set_path("/");
        cookie.set_secure(true);
        driver.add_cookie(cookie).await?;
        driver.goto(&sim.base_url).await?;
        let composer = driver.query(By::Css("div.ProseMirror[contenteditable='true']")).first().await?;
        assert!(driver.find_all(By::Css(COMPOSER)).await?.is_empty());
        assert!(driver.find_all(By::Css(SEND)).await?.is_empty());
        let prompt = "Best budget tablets";
        composer.send_keys(prompt).await?;
        driver.query(By::Css("button[aria-label='Send prompt']")).and_enabled().first().await?.click().await?;
        driver.query(By::Css("button[aria-label='Stop answering']")).wait(WAIT, POLL).first().await?;
        driver.query(By::Css("button[aria-label='Stop answering']")).wait(WAIT, POLL).wait_until_gone().await?;
        let turn = driver.query(By::Css("article[data-turn='assistant']")).first().await?;
        turn.query(By::Css("div[role='group'][aria-label='Response actions']")).wait(WAIT, POLL).first().await?;
        assert!(turn.attr("data-testid").await?.unwrap_or_default().starts_with("chat-turn-"));
        let answer = answer_for(prompt, true);
        let pills = turn.find_all(By::Css("a[data-testid='webpage-citation-pill']")).await?;
        assert_eq!(pills.len(), answer.citations.len());
        assert!(turn.find_all(By::Css("div.markdown")).await?.is_empty());
        let text = turn.find(By::Css("div.prose")).await?.text().await?;
        assert!(collapse(&text).starts_with(&collapse(&answer.plain_text())[..20]));
        turn.find(By::Css("div.web-search-status")).await?;
        assert_eq!(sim.stats().answers_for_prompt(prompt), 1);
        Ok(())
    })
}
