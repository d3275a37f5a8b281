//! A session's browser in real Chromium: the user agent it presents (header and script agree),
//! no automation tells, its proxy, and headful mode under a private Xvfb. Every test quits its
//! browser, even when it fails.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use aap_bot::browser::{ChromiumVersion, Identity, UserAgent};
use aap_bot::sessions::Lease;
use aap_bot::{Browser, BrowserOptions};
use anyhow::{Context, Result};
use axum::http::HeaderMap;
use futures::FutureExt;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const WINDOWS_UA: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

const PAGE: &str = "<!doctype html><html><head><title>probe</title></head><body>probe</body></html>";

/// Headers of every request the test site received.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

/// A one-page site on 127.0.0.1:0 that remembers the headers it was sent.
async fn site() -> Result<(String, Seen)> {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move |headers: HeaderMap| {
            let record = record.clone();
            async move {
                record.lock().map(|mut seen| seen.push(headers)).ok();
                axum::response::Html(PAGE)
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, seen))
}

fn lease(label: &str, user_agent: &str, proxy: Option<String>) -> Lease {
    Lease {
        id: format!("lease-{label}"),
        label: label.to_owned(),
        storage_state_json: r#"{"cookies": []}"#.to_owned(),
        proxy,
        user_agent: user_agent.to_owned(),
        max_runs: 1,
        expires_at: None,
    }
}

/// Launches a browser with `options`, runs `body`, and always closes the browser.
async fn with_browser(options: BrowserOptions, body: impl AsyncFnOnce(&Browser) -> Result<()>) -> Result<()> {
    let browser = Browser::launch(&options).await.context("launch browser")?;
    let outcome = AssertUnwindSafe(body(&browser)).catch_unwind().await;
    browser.close().await;
    match outcome {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// What the page's scripts see.
async fn navigator(browser: &Browser) -> Result<Value> {
    let script = "return { webdriver: navigator.webdriver, userAgent: navigator.userAgent, \
                  platform: navigator.platform, languages: navigator.languages, \
                  hintsPlatform: navigator.userAgentData ? navigator.userAgentData.platform : null };";
    Ok(browser.driver().execute(script, Vec::new()).await?.json().clone())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default()
}

#[tokio::test]
async fn a_session_browser_shows_the_lease_user_agent_everywhere_and_no_automation_tells() -> Result<()> {
    let (url, seen) = site().await?;
    let options = BrowserOptions::default().for_lease(&lease("account-1", WINDOWS_UA, None));
    assert_eq!(options.user_agent, UserAgent::Exact(WINDOWS_UA.to_owned()));
    with_browser(options, async |browser| {
        assert_eq!(browser.user_agent(), WINDOWS_UA);
        browser.driver().goto(&url).await?;
        let seen_by_js = navigator(browser).await?;
        assert!(matches!(seen_by_js["webdriver"], Value::Bool(false) | Value::Null), "{seen_by_js}");
        assert_eq!(seen_by_js["userAgent"], WINDOWS_UA);
        assert!(!seen_by_js["userAgent"].as_str().unwrap_or_default().contains("Headless"));
        // Scripts and client hints agree with the user agent's platform.
        assert_eq!(seen_by_js["platform"], "Win32");
        assert_eq!(seen_by_js["hintsPlatform"], "Windows");
        assert_eq!(seen_by_js["languages"][0], "en-US");

        let requests = seen.lock().map(|seen| seen.clone()).unwrap_or_default();
        let request = requests.last().context("the site saw no request")?;
        assert_eq!(header(request, "user-agent"), WINDOWS_UA);
        assert!(header(request, "accept-language").starts_with("en-US"), "{request:?}");
        assert_eq!(header(request, "sec-ch-ua-platform"), "\"Windows\"");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_session_without_a_user_agent_gets_one_derived_from_its_account_for_the_installed_chromium() -> Result<()> {
    let (url, seen) = site().await?;
    let options = BrowserOptions::default();
    let installed = ChromiumVersion::of(&options.chromium).await?;
    let expected = Identity::resolve(&UserAgent::Derived("account-7".into()), &installed, &options.accept_language);
    assert!(expected.user_agent.contains(&format!("Chrome/{}.0.0.0", installed.major)), "{}", expected.user_agent);
    with_browser(options.for_lease(&lease("account-7", "", None)), async |browser| {
        assert_eq!(browser.user_agent(), expected.user_agent);
        browser.driver().goto(&url).await?;
        let seen_by_js = navigator(browser).await?;
        assert_eq!(seen_by_js["userAgent"], expected.user_agent.as_str());
        assert_eq!(seen_by_js["platform"], expected.navigator_platform());
        assert!(matches!(seen_by_js["webdriver"], Value::Bool(false) | Value::Null), "{seen_by_js}");
        let requests = seen.lock().map(|seen| seen.clone()).unwrap_or_default();
        assert_eq!(header(requests.last().context("no request")?, "user-agent"), expected.user_agent);
        Ok(())
    })
    .await?;

    // Without a session Chromium still never calls itself headless.
    let (url, seen) = site().await?;
    with_browser(BrowserOptions::default(), async |browser| {
        browser.driver().goto(&url).await?;
        let requests = seen.lock().map(|seen| seen.clone()).unwrap_or_default();
        let ua = header(requests.last().context("no request")?, "user-agent").to_owned();
        assert!(ua.contains("Chrome/") && !ua.contains("Headless"), "{ua}");
        assert_eq!(navigator(browser).await?["userAgent"], ua.as_str());
        Ok(())
    })
    .await
}

/// A stand-in for an HTTP proxy on 127.0.0.1:0: answers every request itself with the probe
/// page and remembers each request line with its User-Agent.
async fn proxy() -> Result<(String, Arc<Mutex<Vec<(String, String)>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let seen: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let Ok(Some(request_line)) = lines.next_line().await else { return };
                let mut user_agent = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("user-agent")
                    {
                        user_agent = value.trim().to_owned();
                    }
                }
                record.lock().map(|mut seen| seen.push((request_line, user_agent))).ok();
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = write.write_all(response.as_bytes()).await;
            });
        }
    });
    Ok((url, seen))
}

#[tokio::test]
async fn a_session_browser_goes_through_the_session_proxy() -> Result<()> {
    let (proxy_url, seen) = proxy().await?;
    let options = BrowserOptions::default().for_lease(&lease("account-2", WINDOWS_UA, Some(proxy_url)));
    with_browser(options, async |browser| {
        // A name no resolver knows: only the proxy can answer it.
        browser.driver().goto("http://assistant.test/").await?;
        assert_eq!(browser.driver().title().await?, "probe");
        let requests = seen.lock().map(|seen| seen.clone()).unwrap_or_default();
        let (line, user_agent) = requests
            .iter()
            .find(|(line, _)| line.starts_with("GET http://assistant.test/"))
            .context(format!("the proxy saw {requests:?}"))?;
        assert!(line.ends_with("HTTP/1.1"), "{line}");
        assert_eq!(user_agent, WINDOWS_UA);
        Ok(())
    })
    .await?;

    // A proxy with credentials is refused before any process starts, without the password.
    let with_credentials = lease("account-3", "", Some("http://bob:hunter2@127.0.0.1:9".into()));
    let refused = Browser::launch(&BrowserOptions::default().for_lease(&with_credentials)).await;
    let error = refused.err().context("a proxy with credentials was accepted")?.to_string();
    assert!(error.contains("credentials") && !error.contains("hunter2"), "{error}");
    Ok(())
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn a_headful_browser_without_a_display_runs_under_its_own_xvfb_and_leaves_no_orphan() -> Result<()> {
    let options = BrowserOptions { headful: true, ..BrowserOptions::default() };
    let found = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(&options.xvfb).is_file()));
    if !found {
        println!("skipped: no {} binary on PATH (apt-get install xvfb)", options.xvfb.display());
        return Ok(());
    }
    let has_display = std::env::var_os("DISPLAY").is_some_and(|display| !display.is_empty());
    let (url, seen) = site().await?;
    let browser = Browser::launch(&options).await.context("launch headful browser")?;
    let own = browser.own_display().map(|(display, pid)| (display.to_owned(), pid));
    let outcome = AssertUnwindSafe(async {
        if let Some((_, Some(pid))) = &own {
            assert!(process_alive(*pid), "Xvfb {pid} is not running");
        }
        browser.driver().goto(&url).await?;
        let seen_by_js = navigator(&browser).await?;
        assert!(matches!(seen_by_js["webdriver"], Value::Bool(false) | Value::Null), "{seen_by_js}");
        let requests = seen.lock().map(|seen| seen.clone()).unwrap_or_default();
        let ua = header(requests.last().context("no request")?, "user-agent").to_owned();
        assert!(!ua.contains("Headless"), "{ua}");
        let width = browser.driver().execute("return window.outerWidth;", Vec::new()).await?.json().clone();
        assert!(width.as_u64().is_some_and(|w| w > 0), "a real window has a width: {width}");
        anyhow::Ok(())
    })
    .catch_unwind()
    .await;
    browser.close().await;
    match outcome {
        Ok(result) => result?,
        Err(panic) => std::panic::resume_unwind(panic),
    }
    if has_display {
        println!("DISPLAY is set: the browser used it, so no Xvfb of its own was started");
        assert!(own.is_none());
        return Ok(());
    }
    let (display, pid) = own.context("no Xvfb started for a headful browser without DISPLAY")?;
    assert!(display.starts_with(':') && display[1..].parse::<u32>().is_ok(), "{display}");
    let pid = pid.context("Xvfb had no pid")?;
    assert!(!process_alive(pid), "Xvfb {pid} outlived its browser");
    Ok(())
}
