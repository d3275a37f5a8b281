//! The operators' console in a real headless Chromium (thirtyfour, as the bots drive theirs)
//! against a running platform: sign-in, an account added by a remote login typed THROUGH the
//! console's screencast (clicks on `#screen` mapped to the remote viewport, keys forwarded as
//! TextInput / KeyInput), the new account answering a prompt by an in-process bot, the live
//! list, disable and enable, a failed attempt's screenshot, and no session cookie value in any
//! byte the console sent the browser (a recording TCP relay sits between them).
//!
//! Screenshots for the docs go to `docs/console/*.png` (overwritten each run).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aap_bot::browser::{Browser, BrowserOptions};
use aap_proto::v1::remote_login_service_client::RemoteLoginServiceClient;
use aap_proto::v1::{
    LeaseSessionRequest, ListLeasesRequest, ListRemoteLoginsRequest, ReportEvidenceRequest, ReturnSessionRequest,
};
use aap_simulator::login::{EMAIL_AT, OTP_AT, PASSWORD_AT, SUBMIT_AT};
use aap_simulator::{Simulator, SimulatorConfig, Site};
use common::*;
use futures::FutureExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Generous: a headful Chromium for the login, a headless one for the console and one for the
/// bot share two cores with other tests in CI.
const WAIT: Duration = Duration::from_secs(120);

const LABEL: &str = "console-ops-1";
const EMAIL: &str = "console-ops-1@example.com";
const PASSWORD: &str = "pw-console-ops-1";
const OTP: &str = "424242";
/// The WebDriver code point of the Enter key.
const ENTER: &str = "\u{E007}";

fn screenshot_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/console");
    std::fs::create_dir_all(&dir).expect("docs/console");
    dir.join(name)
}

// ---------------------------------------------------------------------------------------------
// A recording relay: the browser talks to the console through it, and it keeps every byte the
// console sent back, per connection.

/// What the console sent on one connection.
type Recording = Arc<Mutex<Vec<u8>>>;

struct Relay {
    url: String,
    connections: Arc<Mutex<Vec<Recording>>>,
    accept: tokio::task::JoinHandle<()>,
}

async fn relay(target: SocketAddr) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
    let url = format!("http://{}", listener.local_addr().expect("relay address"));
    let connections: Arc<Mutex<Vec<Recording>>> = Arc::default();
    let all = connections.clone();
    let accept = tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            let record: Recording = Arc::default();
            all.lock().expect("relay lock").push(record.clone());
            tokio::spawn(async move {
                let Ok(outbound) = TcpStream::connect(target).await else { return };
                let (mut from_browser, mut to_browser) = inbound.into_split();
                let (mut from_console, mut to_console) = outbound.into_split();
                let up = async {
                    let _ = tokio::io::copy(&mut from_browser, &mut to_console).await;
                    let _ = to_console.shutdown().await;
                };
                let down = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match from_console.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                record.lock().expect("record lock").extend_from_slice(&buf[..n]);
                                if to_browser.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = to_browser.shutdown().await;
                };
                tokio::join!(up, down);
            });
        }
    });
    Relay { url, connections, accept }
}

impl Relay {
    /// Every byte the console sent so far, one buffer per connection.
    fn recorded(&self) -> Vec<Vec<u8>> {
        self.connections.lock().expect("relay lock").iter().map(|c| c.lock().expect("record lock").clone()).collect()
    }
}

/// One HTTP/1.1 response as recorded: its head (status line and headers) and its body with any
/// chunked framing removed (so that a value split by a chunk boundary is still found).
struct Recorded {
    head: String,
    body: Vec<u8>,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The responses of one connection, in order; the last may be cut short (a stream still open).
fn responses(mut raw: &[u8]) -> Vec<Recorded> {
    let mut out = Vec::new();
    while let Some(end) = find(raw, b"\r\n\r\n") {
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        raw = &raw[end + 4..];
        let lower = head.to_ascii_lowercase();
        let status: u16 = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let header = |name: &str| {
            lower.lines().find_map(|line| line.strip_prefix(name).map(|v| v.trim_start_matches(':').trim().to_owned()))
        };
        let mut body = Vec::new();
        if (100..200).contains(&status) || status == 204 || status == 304 {
            // no body
        } else if header("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
            loop {
                let Some(line_end) = find(raw, b"\r\n") else {
                    raw = &[];
                    break;
                };
                let size_text = String::from_utf8_lossy(&raw[..line_end]);
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).unwrap_or(0);
                raw = &raw[line_end + 2..];
                if size == 0 {
                    // No trailers and an empty line, or trailers and an empty line.
                    if raw.starts_with(b"\r\n") {
                        raw = &raw[2..];
                    } else {
                        raw = find(raw, b"\r\n\r\n").map_or(&[][..], |at| &raw[at + 4..]);
                    }
                    break;
                }
                let take = size.min(raw.len());
                body.extend_from_slice(&raw[..take]);
                raw = &raw[take..];
                if take < size {
                    break;
                }
                raw = raw.get(2..).unwrap_or(&[]);
            }
        } else if let Some(length) = header("content-length").and_then(|l| l.parse::<usize>().ok()) {
            let take = length.min(raw.len());
            body.extend_from_slice(&raw[..take]);
            raw = &raw[take..];
        } else {
            body.extend_from_slice(raw);
            raw = &[];
        }
        out.push(Recorded { head, body });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Driving the page. The WebDriver's own types are not named here (thirtyfour is the bot crate's
// dependency): each helper finds its element by a CSS selector in the page and uses it locally.

/// Runs `script` in the page with `args`; its return value as JSON.
async fn js(browser: &Browser, script: &str, args: Vec<Value>) -> Value {
    browser
        .driver()
        .execute(script, args)
        .await
        .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
        .json()
        .clone()
}

/// Polls `condition` (a script body returning a value) until it returns something truthy, and
/// returns that; fails saying `what` did not happen, with the page's text, after [`WAIT`].
async fn wait_for(browser: &Browser, what: &str, condition: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = js(browser, condition, Vec::new()).await;
        let truthy = match &value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        };
        if truthy {
            return value;
        }
        if Instant::now() > deadline {
            let text = js(browser, "return document.body ? document.body.innerText : ''", Vec::new()).await;
            let url = js(browser, "return location.href", Vec::new()).await;
            panic!("{what}: not within {WAIT:?}; page {url}:\n{}", text.as_str().unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for an element matching `selector`.
async fn wait_for_element(browser: &Browser, selector: &str) {
    let script = format!("return document.querySelector({}) !== null", json!(selector));
    wait_for(browser, &format!("{selector} shows"), &script).await;
}

/// A real click (WebDriver Element Click) on the element `selector` matches, once it is there.
async fn click(browser: &Browser, selector: &str) {
    wait_for_element(browser, selector).await;
    let element = browser
        .driver()
        .execute("return document.querySelector(arguments[0])", vec![json!(selector)])
        .await
        .expect("find")
        .element()
        .unwrap_or_else(|e| panic!("{selector}: {e}"));
    element.click().await.unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

/// Types `text` into the element `selector` matches (WebDriver Element Send Keys).
async fn type_into(browser: &Browser, selector: &str, text: &str) {
    wait_for_element(browser, selector).await;
    let element = browser
        .driver()
        .execute("return document.querySelector(arguments[0])", vec![json!(selector)])
        .await
        .expect("find")
        .element()
        .unwrap_or_else(|e| panic!("{selector}: {e}"));
    element.send_keys(text).await.unwrap_or_else(|e| panic!("type into {selector}: {e}"));
}

/// A PNG of the element `selector` matches, as the WebDriver takes it.
async fn element_png(browser: &Browser, selector: &str) -> Vec<u8> {
    wait_for_element(browser, selector).await;
    let element = browser
        .driver()
        .execute("return document.querySelector(arguments[0])", vec![json!(selector)])
        .await
        .expect("find")
        .element()
        .unwrap_or_else(|e| panic!("{selector}: {e}"));
    element.screenshot_as_png().await.unwrap_or_else(|e| panic!("screenshot of {selector}: {e}"))
}

async fn screenshot(browser: &Browser, name: &str) {
    let path = screenshot_path(name);
    browser.driver().screenshot(&path).await.unwrap_or_else(|e| panic!("screenshot {}: {e}", path.display()));
}

/// Where on the page (client CSS pixels) the console's `#screen` shows the remote viewport's
/// point `at`: the inverse of the console's `mapToViewport` (console/src/input.ts): the frame
/// is drawn with `object-fit: contain` in the element's bounding box, centred, and a frame's
/// pixels stand for `viewport.width / frame.width` viewport pixels.
async fn screen_point(browser: &Browser, viewport: (f64, f64), at: (f64, f64)) -> (f64, f64) {
    // A new frame replaces the image's source: wait until one is decoded.
    let box_ = wait_for(
        browser,
        "a frame drawn in #screen",
        "const s = document.querySelector('#screen'); \
         if (!s || !s.complete || !(s.naturalWidth > 0)) return null; \
         const r = s.getBoundingClientRect(); \
         return [r.left, r.top, r.width, r.height, s.naturalWidth, s.naturalHeight];",
    )
    .await;
    let n = |i: usize| box_[i].as_f64().expect("a number");
    let (left, top, width, height, frame_w, frame_h) = (n(0), n(1), n(2), n(3), n(4), n(5));
    let scale = (width / frame_w).min(height / frame_h);
    let (drawn_w, drawn_h) = (frame_w * scale, frame_h * scale);
    let x = left + (width - drawn_w) / 2.0 + at.0 / viewport.0 * drawn_w;
    let y = top + (height - drawn_h) / 2.0 + at.1 / viewport.1 * drawn_h;
    (x, y)
}

/// Clicks the console's screen where it shows the remote page's point `at` (a real pointer
/// move, down and up through WebDriver actions: the console sends MouseInput DOWN and UP).
async fn click_screen(browser: &Browser, viewport: (f64, f64), at: (f64, f64)) {
    let (x, y) = screen_point(browser, viewport, at).await;
    #[allow(clippy::cast_possible_truncation)]
    let (x, y) = (x.round() as i64, y.round() as i64);
    browser
        .driver()
        .action_chain()
        .move_to(x, y)
        .click()
        .perform()
        .await
        .unwrap_or_else(|e| panic!("click the screen at {x},{y}: {e}"));
}

// ---------------------------------------------------------------------------------------------

async fn chatgpt_simulator() -> Simulator {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind simulator");
    Simulator::start(listener, Site::ChatGpt, SimulatorConfig::default()).await.expect("simulator")
}

async fn register_login(sim: &Simulator) {
    let response = reqwest::Client::new()
        .post(format!("{}/__sim/logins", sim.base_url))
        .json(&json!({ "email": EMAIL, "password": PASSWORD, "otp": OTP }))
        .send()
        .await
        .expect("register login");
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
}

/// Runs an in-process gRPC bot for the simulator until the sender says stop.
fn start_bot(app: &TestApp, sim: &Simulator, name: &str) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let config =
        aap_bot::BotConfig::grpc(&app.grpc_url, BOT, name, "chatgpt", "Plus").with_assistant_url(&sim.base_url);
    let (stop, mut stopped) = watch::channel(false);
    let handle = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        aap_bot::run(config, shutdown).await.expect("bot runs");
    });
    (stop, handle)
}

fn since_epoch(t: &prost_types::Timestamp) -> Duration {
    Duration::new(u64::try_from(t.seconds).expect("after 1970"), u32::try_from(t.nanos).expect("nanos"))
}

#[tokio::test]
async fn an_operator_adds_an_account_by_remote_login_in_the_console_and_looks_after_it() {
    assert!(aap::console::built(), "the console was not built into this binary: run npm ci in console/");
    let started = Instant::now();
    let step = |what: &str| eprintln!("[{:>6.1}s] {what}", started.elapsed().as_secs_f64());
    let sim = chatgpt_simulator().await;
    register_login(&sim).await;
    let remote_logins = aap::logins::RemoteLoginsConfig {
        max: 2,
        idle: Duration::from_secs(600),
        poll: Duration::from_millis(250),
        origins: BTreeMap::from([(sim.site().id().to_owned(), sim.base_url.clone())]),
        ..aap::logins::RemoteLoginsConfig::default()
    };
    let app = spawn_app_with(Options { remote_logins, ..Options::default() }).await;
    let relay = relay(app.platform.console_addr.expect("console")).await;
    let browser = Browser::launch(&BrowserOptions::default()).await.expect("headless Chromium and chromedriver");
    step("browser up");
    // Closed whatever happens: a Browser dropped unclosed leaves its Chromium running.
    let outcome = AssertUnwindSafe(drive_the_console(&app, &sim, &relay, &browser, &step)).catch_unwind().await;
    browser.close().await;
    let account_id = outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    step("evidence screenshot shown; browser closed");
    // 6. No session cookie value (nor localStorage value) reached the browser. The stored state,
    // as a bot is lent it:
    let lease = app
        .sessions(BOT)
        .lease_session(LeaseSessionRequest { assistant: "chatgpt".into(), plan: "Plus".into(), bot_id: "scan".into() })
        .await
        .expect("lease the account")
        .into_inner();
    assert_eq!(lease.account_id, account_id);
    app.sessions(BOT)
        .return_session(ReturnSessionRequest { lease_id: lease.lease_id.clone(), ..ReturnSessionRequest::default() })
        .await
        .expect("returned");
    let state: Value = serde_json::from_str(&lease.storage_state_json).expect("a storage state");
    let mut secrets: Vec<String> = Vec::new();
    for cookie in state["cookies"].as_array().expect("cookies") {
        secrets.push(cookie["value"].as_str().expect("value").to_owned());
    }
    for origin in state["origins"].as_array().into_iter().flatten() {
        for item in origin["localStorage"].as_array().into_iter().flatten() {
            // A value like "true" is in any script; its name is the storage state's alone.
            secrets.push(item["value"].as_str().expect("value").to_owned());
            secrets.push(item["name"].as_str().expect("name").to_owned());
        }
    }
    let sim_tokens: Vec<String> =
        sim.stats().by_token.into_iter().filter(|(_, s)| s.label == EMAIL).map(|(token, _)| token).collect();
    assert_eq!(sim_tokens.len(), 1, "one session from the login");
    assert!(secrets.contains(&sim_tokens[0]), "the stored state holds the simulator's session cookie");
    let scanned: Vec<&String> = secrets.iter().filter(|s| s.len() >= 8).collect();

    relay.accept.abort();
    let connections = relay.recorded();
    let all: Vec<Recorded> = connections.iter().flat_map(|c| responses(c)).collect();
    let bytes: usize = connections.iter().map(Vec::len).sum();
    assert!(all.len() > 10, "the relay saw the console's responses: {}", all.len());
    for secret in &scanned {
        for raw in &connections {
            assert!(find(raw, secret.as_bytes()).is_none(), "a console response carried a session value");
        }
        for response in &all {
            assert!(find(&response.body, secret.as_bytes()).is_none(), "a console response carried a session value");
        }
    }
    let without_csp: Vec<&str> = all
        .iter()
        .filter(|r| !r.head.to_ascii_lowercase().contains("content-security-policy: default-src 'self'"))
        .map(|r| r.head.lines().next().unwrap_or_default())
        .collect();
    assert!(without_csp.is_empty(), "responses without the CSP: {without_csp:?}");
    println!(
        "scanned {} responses ({bytes} bytes on {} connections) for {} session values (cookie values, localStorage \
         names and values of 8 characters or more): none found",
        all.len(),
        connections.len(),
        scanned.len()
    );
    step("scanned");
    app.platform.shutdown().await.expect("shutdown");
    sim.shutdown().await;
}

/// Steps 1 to 5 in the browser; the new account's id.
async fn drive_the_console(
    app: &TestApp,
    sim: &Simulator,
    relay: &Relay,
    browser: &Browser,
    step: &(dyn Fn(&str) + Sync),
) -> String {
    let driver = browser.driver();
    // 1. Sign in: a customer is refused, the operator gets the account list.
    driver.goto(format!("{}/", relay.url)).await.expect("open the console");
    wait_for_element(browser, "#token").await;
    screenshot(browser, "sign-in.png").await;
    type_into(browser, "#token", CUSTOMER).await;
    click(browser, "#sign-in").await;
    let refused = wait_for(
        browser,
        "the customer is refused",
        "const e = document.querySelector('#sign-in-error'); return e ? e.textContent : null",
    )
    .await;
    assert!(refused.as_str().unwrap_or_default().contains("for operators"), "{refused}");
    driver.refresh().await.expect("reload");
    type_into(browser, "#token", OPERATOR).await;
    click(browser, "#sign-in").await;
    wait_for_element(browser, "#accounts[aria-busy=false]").await;
    let principal = js(browser, "return document.querySelector('#principal').textContent", Vec::new()).await;
    assert_eq!(principal, OPERATOR_NAME);
    let token_in_page = js(
        browser,
        "return document.cookie + JSON.stringify(Object.assign({}, localStorage, sessionStorage))",
        Vec::new(),
    )
    .await;
    assert!(!token_in_page.as_str().unwrap_or_default().contains(OPERATOR), "the page's scripts cannot read the token");

    step("signed in");
    // 2. Add an account by remote login, typed through the console's screencast.
    let add_clicked = Instant::now();
    let add_clicked_wall = SystemTime::now();
    click(browser, "#add-account").await;
    click(browser, "#new-assistant option[value=chatgpt]").await;
    type_into(browser, "#new-plan", "Plus").await;
    type_into(browser, "#new-label", LABEL).await;
    let start_clicked = Instant::now();
    click(browser, "#start-remote-login").await;
    wait_for_element(browser, "#remote-login[data-state=waiting]").await;
    wait_for(
        browser,
        "a frame drawn in #screen",
        "const s = document.querySelector('#screen'); \
         return !!s && (s.getAttribute('src') || '').startsWith('blob:') && s.complete && s.naturalWidth > 0",
    )
    .await;
    screenshot(browser, "remote-login.png").await;
    // What a bot meeting this login wall would have seen: the evidence screenshot of step 5.
    let login_wall_png = element_png(browser, "#screen").await;
    let login_id = js(browser, "return document.querySelector('#remote-login').dataset.loginId", Vec::new()).await;
    let login_id = login_id.as_str().expect("data-login-id").to_owned();
    // The remote viewport's size, as the console has it (RemoteLogin.width / height).
    let mut logins = RemoteLoginServiceClient::with_interceptor(
        app.channel.clone(),
        aap::client::Bearer::new(OPERATOR).expect("token"),
    );
    let listed = logins.list_remote_logins(ListRemoteLoginsRequest {}).await.expect("list logins").into_inner();
    let login = listed.logins.iter().find(|l| l.id == login_id).expect("the console's login is the operator's");
    assert_eq!((login.assistant.as_str(), login.plan.as_str(), login.label.as_str()), ("chatgpt", "Plus", LABEL));
    let viewport = (f64::from(login.width), f64::from(login.height));

    click_screen(browser, viewport, EMAIL_AT).await;
    wait_for(browser, "the screen has focus", "return document.activeElement?.id === 'screen'").await;
    type_into(browser, "#screen", EMAIL).await;
    click_screen(browser, viewport, PASSWORD_AT).await;
    type_into(browser, "#screen", PASSWORD).await;
    click_screen(browser, viewport, SUBMIT_AT).await;
    // The one-time-code step: its address shows in #login-detail.
    wait_for(
        browser,
        "the one-time-code step",
        "const d = document.querySelector('#login-detail'); return !!d && d.textContent.includes('step=otp')",
    )
    .await;
    click_screen(browser, viewport, OTP_AT).await;
    type_into(browser, "#screen", &format!("{OTP}{ENTER}")).await;
    wait_for_element(browser, "#remote-login[data-state=stored]").await;
    let stored_after_start = start_clicked.elapsed();
    let stored_after_add = add_clicked.elapsed();
    let href = wait_for(
        browser,
        "#open-account",
        "const a = document.querySelector('#open-account'); return a ? a.getAttribute('href') : null",
    )
    .await;
    let account_id = href.as_str().expect("href").trim_start_matches("#/accounts/").to_owned();
    assert!(!account_id.is_empty(), "{href}");
    println!("measured: #start-remote-login → stored {stored_after_start:?} (from #add-account {stored_after_add:?})");

    step("stored");
    // 3. The new account answers a prompt, leased by an in-process bot.
    let bot_id = "console-bot";
    let (stop, bot) = start_bot(app, sim, bot_id);
    let events = ask_as(app, OPERATOR, ask_text("Which laptops are best for students?", &["chatgpt"])).await;
    stop.send(true).expect("stop bot");
    tokio::time::timeout(WAIT, bot).await.expect("the bot stops").expect("bot stopped cleanly");
    let answer = first_answer(&events);
    assert_eq!((answer.account_id.as_str(), answer.account_label.as_str()), (account_id.as_str(), LABEL));
    let leases = app
        .sessions(OPERATOR)
        .list_leases(ListLeasesRequest { account_id: account_id.clone(), limit: 0 })
        .await
        .expect("leases")
        .into_inner()
        .leases;
    let first_lease = leases
        .iter()
        .filter(|l| l.bot_id == bot_id)
        .min_by_key(|l| l.leased_at.map(|t| (t.seconds, t.nanos)))
        .expect("the bot leased the new account");
    let leased_at = since_epoch(first_lease.leased_at.as_ref().expect("leased_at"));
    let added_at = add_clicked_wall.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970");
    println!("measured: #add-account → first lease of the new account {:?}", leased_at.saturating_sub(added_at));

    step("answered");
    // 4. The account list, live: a second tab keeps the list open while the first disables and
    // enables the account.
    click(browser, "#back").await;
    let row = format!("tr[data-testid=account-row][data-label={LABEL}]");
    wait_for_element(browser, &format!("{row}[data-status=active][data-account-id=\"{account_id}\"]")).await;
    wait_for_element(browser, "#accounts[aria-busy=false]").await;
    screenshot(browser, "accounts.png").await;
    let first_tab = driver.window().await.expect("this tab");
    let list_tab = driver.new_tab().await.expect("a second tab");
    driver.switch_to_window(list_tab.clone()).await.expect("to the list tab");
    driver.goto(format!("{}/#/accounts", relay.url)).await.expect("the list in the second tab");
    wait_for_element(browser, &format!("{row}[data-status=active]")).await;
    driver.switch_to_window(first_tab.clone()).await.expect("back to the first tab");

    click(browser, &row).await;
    wait_for_element(browser, &format!("#account[data-account-id=\"{account_id}\"]")).await;
    click(browser, "#disable").await;
    wait_for_element(browser, "#account[data-status=disabled]").await;
    driver.switch_to_window(list_tab.clone()).await.expect("to the list tab");
    wait_for_element(browser, &format!("{row}[data-status=disabled]")).await;
    driver.switch_to_window(first_tab.clone()).await.expect("back to the first tab");
    click(browser, "#enable").await;
    wait_for_element(browser, "#account[data-status=active]").await;
    driver.switch_to_window(list_tab.clone()).await.expect("to the list tab");
    wait_for_element(browser, &format!("{row}[data-status=active]")).await;
    driver.close_window().await.expect("close the list tab");
    driver.switch_to_window(first_tab).await.expect("back to the first tab");

    step("list, disable, enable done");
    // 5. A failed attempt's screenshot: the bot reports one on its lease of the account.
    let png = login_wall_png;
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let evidence_id = app
        .sessions(BOT)
        .report_evidence(ReportEvidenceRequest {
            bot_id: bot_id.into(),
            lease_id: first_lease.id.clone(),
            assistant: "chatgpt".into(),
            evaluation_id: answer.evaluation_id,
            attempt: 1,
            class: "logged-out".into(),
            error: "the assistant shows a login wall".into(),
            url: format!("{}/auth/login", sim.base_url),
            title: "Log in".into(),
            captured_at: None,
            screenshot_png: png,
            html: "<html><body><h1>Log in to continue</h1></body></html>".into(),
            manifest_version: "2026.11.1".into(),
        })
        .await
        .expect("evidence reported")
        .into_inner()
        .evidence_id;
    // The account page loads its evidence when opened: load it again.
    driver.refresh().await.expect("reload the account page");
    let evidence_row = format!("tr[data-testid=evidence-row][data-evidence-id=\"{evidence_id}\"]");
    click(browser, &format!("{evidence_row} .show-screenshot")).await;
    wait_for(
        browser,
        "the evidence screenshot",
        "const i = document.querySelector('img#evidence-screenshot'); return !!i && i.complete && i.naturalWidth > 0",
    )
    .await;
    js(browser, "document.querySelector('#evidence').closest('.card').scrollIntoView()", Vec::new()).await;
    screenshot(browser, "account.png").await;

    account_id
}
