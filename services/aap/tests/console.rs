//! The operators' console as a client meets it over HTTP: sign-in into an HttpOnly,
//! SameSite=Strict cookie for operators only, the security headers on every response, gRPC-web
//! authenticated by the cookie alone, requests from other origins refused, and no response that
//! carries a session's cookie values.

mod common;

use aap_proto::v1::admin_service_client::AdminServiceClient;
use aap_proto::v1::{
    CreateAccountRequest, GetAccountRequest, ListAccountsRequest, ListAccountsResponse, ListLeasesRequest,
    WatchAccountsRequest,
};
use common::*;
use prost::Message;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, SET_COOKIE};

/// A planted cookie value: no console response may ever carry it.
const PLANTED: &str = "planted-cookie-value-5f2a9c1e";

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("http client")
}

async fn sign_in(app: &TestApp, token: &str) -> reqwest::Response {
    client()
        .post(format!("{}/console/session", app.console_url))
        .header("content-type", "application/json")
        .body(serde_json::json!({ "token": token }).to_string())
        .send()
        .await
        .expect("sign-in request")
}

/// `GET /console/session` with `cookie`.
async fn session_info(app: &TestApp, cookie: &str) -> reqwest::Response {
    let url = format!("{}/console/session", app.console_url);
    client().get(url).header("cookie", cookie).send().await.expect("session info")
}

/// `DELETE /console/session` with `cookie`.
async fn sign_out(app: &TestApp, cookie: &str) -> reqwest::Response {
    let url = format!("{}/console/session", app.console_url);
    client().delete(url).header("cookie", cookie).send().await.expect("sign out")
}

/// The `name=value` part of a response's Set-Cookie.
fn cookie_of(response: &reqwest::Response) -> String {
    let set = response.headers().get(SET_COOKIE).expect("a cookie is set").to_str().expect("ascii");
    set.split(';').next().expect("name=value").to_owned()
}

/// What a gRPC-web call answered: its status, its messages, and every byte of the response.
struct WebReply {
    code: i32,
    message: String,
    messages: Vec<Vec<u8>>,
    raw: Vec<u8>,
}

/// A gRPC-web call of the console's method `path` (`/aap.v1.X/Method`) with `request` as its
/// one message frame.
fn web_call(app: &TestApp, path: &str, request: &impl Message) -> reqwest::RequestBuilder {
    let payload = request.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
    body.extend_from_slice(&payload);
    client()
        .post(format!("{}{path}", app.console_url))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(body)
}

/// A frame of a gRPC-web response body.
enum Frame {
    Message(Vec<u8>),
    /// The trailers (flag 0x80), as their text.
    Trailers(String),
}

/// Takes the first frame off the front of `buffer` (a flag byte, the length in 4 bytes big-endian,
/// then the frame), or `None` while it has not all arrived.
fn take_frame(buffer: &mut Vec<u8>) -> Option<Frame> {
    let len = u32::from_be_bytes(buffer.get(1..5)?.try_into().expect("4 bytes")) as usize;
    if buffer.len() < 5 + len {
        return None;
    }
    let frame: Vec<u8> = buffer.drain(..5 + len).collect();
    Some(if frame[0] & 0x80 == 0 {
        Frame::Message(frame[5..].to_vec())
    } else {
        Frame::Trailers(String::from_utf8_lossy(&frame[5..]).into_owned())
    })
}

/// The value of `name` in a gRPC-web response's trailers.
fn trailer(trailers: &str, name: &str) -> Option<String> {
    trailers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
    })
}

/// One unary or server-streaming gRPC-web call (`application/grpc-web+proto`), read to the end
/// or until `max_messages` messages arrived.
async fn grpc_web(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
    authorization: Option<&str>,
    request: &impl Message,
    max_messages: usize,
) -> WebReply {
    let mut call = web_call(app, path, request);
    if let Some(cookie) = cookie {
        call = call.header("cookie", cookie);
    }
    if let Some(authorization) = authorization {
        call = call.header("authorization", authorization);
    }
    let mut response = call.send().await.expect("grpc-web request");
    assert_eq!(response.status(), StatusCode::OK, "grpc-web answers 200 whatever the status");
    let header_status =
        response.headers().get("grpc-status").map(|v| v.to_str().expect("ascii").parse().expect("code"));
    let header_message =
        response.headers().get("grpc-message").map(|v| v.to_str().expect("ascii").to_owned()).unwrap_or_default();
    let mut raw = Vec::new();
    let mut unread = Vec::new();
    let mut messages = Vec::new();
    let mut trailers = String::new();
    let read = async {
        while let Some(chunk) = response.chunk().await.expect("body chunk") {
            raw.extend_from_slice(&chunk);
            unread.extend_from_slice(&chunk);
            while let Some(frame) = take_frame(&mut unread) {
                match frame {
                    Frame::Message(message) => messages.push(message),
                    Frame::Trailers(text) => trailers = text,
                }
            }
            if messages.len() >= max_messages || !trailers.is_empty() {
                break;
            }
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), read).await.expect("grpc-web reply within 30 s");
    let code = header_status
        .or_else(|| trailer(&trailers, "grpc-status").map(|c| c.parse().expect("code")))
        .unwrap_or(if messages.len() >= max_messages { 0 } else { -1 });
    let message = percent_decode(&trailer(&trailers, "grpc-message").unwrap_or(header_message));
    WebReply { code, message, messages, raw }
}

/// `grpc-message` is percent-encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes.get(at + 1..at + 3).and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[at], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                at += 3;
            }
            (byte, _) => {
                out.push(byte);
                at += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn storage_state() -> String {
    serde_json::json!({
        "cookies": [{"name": "__Secure-next-auth.session-token", "value": PLANTED, "domain": ".chatgpt.com",
                     "path": "/", "expires": -1, "httpOnly": true, "secure": true, "sameSite": "Lax"}],
        "origins": [{"origin": "https://chatgpt.com", "localStorage": [{"name": "token", "value": PLANTED}]}]
    })
    .to_string()
}

#[tokio::test]
async fn an_operator_signs_in_with_an_http_only_strict_cookie_and_other_roles_are_refused() {
    let app = spawn_app().await;

    let response = sign_in(&app, OPERATOR).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let set = response.headers().get(SET_COOKIE).expect("cookie").to_str().expect("ascii").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attribute), "{attribute} missing from {set:?}");
    }
    let cookie = cookie_of(&response);
    let who = session_info(&app, &cookie).await;
    assert_eq!(who.status(), StatusCode::OK);
    let who: serde_json::Value = who.json().await.expect("json");
    assert_eq!(who["principal"], OPERATOR_NAME);
    assert_eq!(who["role"], "operator");

    for (token, status, says) in [
        (CUSTOMER, StatusCode::FORBIDDEN, "this console is for operators; test-customer is a customer"),
        (BOT, StatusCode::FORBIDDEN, "this console is for operators; test-bot is a bot"),
        ("aap_not-a-token", StatusCode::UNAUTHORIZED, "unknown bearer token"),
    ] {
        let response = sign_in(&app, token).await;
        assert_eq!(response.status(), status, "{token}");
        assert!(response.headers().get(SET_COOKIE).is_none(), "{token} got a cookie");
        let body: serde_json::Value = response.json().await.expect("json error");
        assert_eq!(body["error"], says);
    }
    // Extra or missing fields, and no JSON at all.
    for body in [r#"{"token": "x", "role": "operator"}"#, "{}", "token=x", "\u{0}"] {
        let response = client()
            .post(format!("{}/console/session", app.console_url))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("sign-in");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body:?}");
    }

    let out = sign_out(&app, &cookie).await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert!(out.headers().get(SET_COOKIE).expect("cleared").to_str().expect("ascii").contains("Max-Age=0"));
    let anonymous = client().get(format!("{}/console/session", app.console_url)).send().await.expect("info");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn every_console_response_carries_the_policy_and_refuses_framing() {
    let app = spawn_app().await;
    let cookie = cookie_of(&sign_in(&app, OPERATOR).await);
    let index = client().get(format!("{}/", app.console_url)).send().await.expect("index");
    assert_eq!(index.status(), StatusCode::OK);
    let deep = client().get(format!("{}/accounts/some-id", app.console_url)).send().await.expect("client route");
    assert_eq!(deep.status(), StatusCode::OK, "client-side routes get the index");
    let missing = client().get(format!("{}/assets/nope.js", app.console_url)).send().await.expect("asset");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let session = sign_in(&app, CUSTOMER).await;
    let grpc = client()
        .post(format!("{}/aap.v1.SessionService/ListAccounts", app.console_url))
        .header("content-type", "application/grpc-web+proto")
        .header("cookie", &cookie)
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .expect("grpc-web");
    for response in [&index, &deep, &missing, &session, &grpc] {
        let headers = response.headers();
        let csp = headers.get(CONTENT_SECURITY_POLICY).expect("csp").to_str().expect("ascii");
        assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(headers.get("x-frame-options").expect("frame options"), "DENY");
        assert_eq!(headers.get("x-content-type-options").expect("nosniff"), "nosniff");
        assert_eq!(headers.get("referrer-policy").expect("referrer"), "no-referrer");
    }
    let html = index.text().await.expect("html");
    assert!(html.contains("<div id=\"root\">") || html.contains("console was not built"), "{html}");
    assert!(aap::console::built(), "the console was not built into this binary: run npm ci in console/");
    assert!(!html.contains("<script>") && !html.contains("style=\""), "inline script or style in the index");
}

#[tokio::test]
async fn grpc_web_is_authenticated_by_the_cookie_alone_and_for_operators_only() {
    let app = spawn_app().await;
    let operator = cookie_of(&sign_in(&app, OPERATOR).await);
    let list = ListAccountsRequest::default();
    let path = "/aap.v1.SessionService/ListAccounts";

    let ok = grpc_web(&app, path, Some(&operator), None, &list, 1).await;
    assert_eq!(ok.code, 0, "{}", ok.message);
    ListAccountsResponse::decode(ok.messages[0].as_slice()).expect("a ListAccountsResponse");

    let none = grpc_web(&app, path, None, None, &list, 1).await;
    assert_eq!(none.code, tonic::Code::Unauthenticated as i32, "{}", none.message);
    // A bearer header is not how the console authenticates: it is dropped.
    let header = grpc_web(&app, path, None, Some(&format!("Bearer {OPERATOR}")), &list, 1).await;
    assert_eq!(header.code, tonic::Code::Unauthenticated as i32, "{}", header.message);
    // A cookie made by hand from another role's token is refused, even for that role's methods.
    let customer = format!("aap_console={CUSTOMER}");
    let denied = grpc_web(&app, path, Some(&customer), None, &list, 1).await;
    assert_eq!(denied.code, tonic::Code::PermissionDenied as i32);
    assert!(denied.message.contains("the console is for operators"), "{}", denied.message);
    let bot = format!("aap_console={BOT}");
    let lease =
        aap_proto::v1::LeaseSessionRequest { assistant: "chatgpt".into(), plan: "Plus".into(), bot_id: "b".into() };
    let denied = grpc_web(&app, "/aap.v1.SessionService/LeaseSession", Some(&bot), None, &lease, 1).await;
    assert_eq!(denied.code, tonic::Code::PermissionDenied as i32, "{}", denied.message);
    // Only the console's services are mounted.
    let answers = client()
        .post(format!("{}/aap.v1.AnswersService/Ask", app.console_url))
        .header("content-type", "application/grpc-web+proto")
        .header("cookie", &operator)
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .expect("post");
    assert_eq!(answers.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn requests_from_another_origin_are_refused() {
    let app = spawn_app().await;
    let response = client()
        .post(format!("{}/console/session", app.console_url))
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body(serde_json::json!({ "token": OPERATOR }).to_string())
        .send()
        .await
        .expect("sign-in");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(SET_COOKIE).is_none());
    let same = client()
        .post(format!("{}/console/session", app.console_url))
        .header("origin", &app.console_url)
        .header("content-type", "application/json")
        .body(serde_json::json!({ "token": OPERATOR }).to_string())
        .send()
        .await
        .expect("sign-in");
    assert_eq!(same.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn no_console_response_carries_a_session_cookie_value() {
    let app = spawn_app().await;
    let account = app
        .sessions(OPERATOR)
        .create_account(CreateAccountRequest {
            assistant: "chatgpt".into(),
            plan: "Plus".into(),
            label: "planted".into(),
            storage_state_json: storage_state(),
            proxy: "http://proxy.example:3128".into(),
            ..CreateAccountRequest::default()
        })
        .await
        .expect("account")
        .into_inner()
        .account
        .expect("account");
    let cookie = cookie_of(&sign_in(&app, OPERATOR).await);
    let replies = [
        grpc_web(&app, "/aap.v1.SessionService/ListAccounts", Some(&cookie), None, &ListAccountsRequest::default(), 1)
            .await,
        grpc_web(
            &app,
            "/aap.v1.SessionService/GetAccount",
            Some(&cookie),
            None,
            &GetAccountRequest { account_id: account.id.clone() },
            1,
        )
        .await,
        grpc_web(
            &app,
            "/aap.v1.SessionService/WatchAccounts",
            Some(&cookie),
            None,
            &WatchAccountsRequest::default(),
            1,
        )
        .await,
        grpc_web(
            &app,
            "/aap.v1.SessionService/ListLeases",
            Some(&cookie),
            None,
            &ListLeasesRequest { account_id: account.id.clone(), limit: 0 },
            1,
        )
        .await,
    ];
    for reply in &replies {
        assert_eq!(reply.code, 0, "{}", reply.message);
        let text = String::from_utf8_lossy(&reply.raw);
        assert!(!text.contains(PLANTED), "a console response carried the session's cookie value");
        assert!(!text.contains("__Secure-next-auth"), "a console response carried a cookie name");
    }
    let listed = ListAccountsResponse::decode(replies[0].messages[0].as_slice()).expect("list");
    assert_eq!(listed.accounts.len(), 1);
    assert_eq!(listed.accounts[0].proxy, "http://proxy.example:3128");
}

/// An AdminService client with `token`.
fn admin_client(app: &TestApp, token: &str) -> AdminClient {
    AdminServiceClient::with_interceptor(app.channel.clone(), aap::client::Bearer::new(token).expect("token"))
}

type AdminClient =
    AdminServiceClient<tonic::service::interceptor::InterceptedService<tonic::transport::Channel, aap::client::Bearer>>;

/// The test operator principal's tokens, with the revoked and expired ones or not.
async fn operator_tokens(admin: &mut AdminClient, include_revoked: bool) -> Vec<aap_proto::v1::TokenInfo> {
    let request = aap_proto::v1::ListTokensRequest { principal: OPERATOR_NAME.into(), include_revoked };
    admin.list_tokens(request).await.expect("list tokens").into_inner().tokens
}

/// Reads a gRPC-web response's frames as they come: the messages, then the trailers' status.
struct WebStream {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

enum WebFrame {
    Message,
    /// grpc-status and grpc-message of the trailers.
    End(i32, String),
}

impl WebStream {
    async fn next(&mut self) -> WebFrame {
        loop {
            match take_frame(&mut self.buffer) {
                Some(Frame::Message(_)) => return WebFrame::Message,
                Some(Frame::Trailers(trailers)) => {
                    let code = trailer(&trailers, "grpc-status").map(|c| c.parse().expect("code")).unwrap_or(-1);
                    let message = percent_decode(&trailer(&trailers, "grpc-message").unwrap_or_default());
                    return WebFrame::End(code, message);
                }
                None => {}
            }
            let chunk = tokio::time::timeout(std::time::Duration::from_secs(30), self.response.chunk())
                .await
                .expect("a gRPC-web frame within 30 s")
                .expect("body chunk")
                .expect("the stream ended without trailers");
            self.buffer.extend_from_slice(&chunk);
        }
    }
}

#[tokio::test]
async fn a_console_session_is_a_token_of_its_own_that_signing_out_revokes() {
    let app = spawn_app().await;
    let response = sign_in(&app, OPERATOR).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let cookie = cookie_of(&response);
    let session_token = cookie.strip_prefix("aap_console=").expect("the console's cookie").to_owned();
    assert_ne!(session_token, OPERATOR, "the browser must not keep the operator's own token");
    assert!(session_token.starts_with("aap_"), "{session_token}");

    // The session is a token of the same principal, listed as a console session that expires with
    // the cookie (12 hours).
    let who: serde_json::Value = session_info(&app, &cookie).await.json().await.expect("json");
    assert_eq!(who["principal"], OPERATOR_NAME);
    let session_id = who["token_id"].as_str().expect("token_id").to_owned();
    let mut admin = admin_client(&app, OPERATOR);
    let tokens = operator_tokens(&mut admin, false).await;
    let listed = tokens.iter().find(|t| t.id == session_id).expect("the session's token is listed");
    assert_eq!(listed.source, "console");
    assert_eq!(listed.label, "console sign-in");
    let lasts =
        listed.expires_at.as_ref().expect("expires").seconds - listed.created_at.as_ref().expect("created").seconds;
    assert!((12 * 3600 - 5..=12 * 3600 + 5).contains(&lasts), "lasts {lasts} s");
    assert!(tokens.iter().filter(|t| t.source != "console").all(|t| t.expires_at.is_none()), "{tokens:?}");

    // A session's token cannot sign in again (a copied cookie could then last for ever), nor
    // make the operator's own token revocable as if it were another live operator token.
    let again = sign_in(&app, &session_token).await;
    assert_eq!(again.status(), StatusCode::FORBIDDEN);
    assert!(again.headers().get(SET_COOKIE).is_none());
    let body: serde_json::Value = again.json().await.expect("json");
    assert!(body["error"].as_str().expect("error").contains("cannot open another session"), "{body}");
    let operator_id = tokens.iter().find(|t| t.source == "config").expect("the configured operator token").id.clone();
    let refused = admin
        .revoke_token(aap_proto::v1::RevokeTokenRequest { id: operator_id })
        .await
        .expect_err("the last operator token beside a console session");
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused:?}");

    // An open call of the session (WatchAccounts over gRPC-web) ends when the operator signs out.
    let watch = web_call(&app, "/aap.v1.SessionService/WatchAccounts", &WatchAccountsRequest::default())
        .header("cookie", &cookie)
        .send()
        .await
        .expect("watch accounts");
    let mut watch = WebStream { response: watch, buffer: Vec::new() };
    assert!(matches!(watch.next().await, WebFrame::Message), "the accounts first");

    let out = sign_out(&app, &cookie).await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    loop {
        match watch.next().await {
            WebFrame::Message => continue,
            WebFrame::End(code, message) => {
                assert_eq!(code, tonic::Code::Unauthenticated as i32, "{message}");
                assert!(message.contains(&format!("token {session_id} was revoked: the call ends here")), "{message}");
                break;
            }
        }
    }
    // The copied cookie is worth nothing now, on the console and on the gRPC port.
    let later =
        grpc_web(&app, "/aap.v1.SessionService/ListAccounts", Some(&cookie), None, &ListAccountsRequest::default(), 1)
            .await;
    assert_eq!(later.code, tonic::Code::Unauthenticated as i32, "{}", later.message);
    assert!(later.message.contains("was revoked"), "{}", later.message);
    let info = session_info(&app, &cookie).await;
    assert_eq!(info.status(), StatusCode::UNAUTHORIZED);
    let mut as_session = admin_client(&app, &session_token);
    let refused = as_session.who_am_i(aap_proto::v1::WhoAmIRequest::default()).await.expect_err("revoked");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    // The operator's own token was never touched.
    let me = admin.who_am_i(aap_proto::v1::WhoAmIRequest::default()).await.expect("the operator's token works");
    assert_eq!(me.into_inner().principal, OPERATOR_NAME);
    let revoked = operator_tokens(&mut admin, true).await;
    let ended = revoked.iter().find(|t| t.id == session_id).expect("listed with the revoked");
    assert_eq!(ended.revoked_by, OPERATOR_NAME);
    assert!(ended.revoked_at.is_some());

    // Without a cookie the console says to sign in, not to send an authorization header.
    let anonymous = client().get(format!("{}/console/session", app.console_url)).send().await.expect("info");
    let body: serde_json::Value = anonymous.json().await.expect("json");
    assert_eq!(body["error"], "not signed in to the console: sign in with an operator token");
    let none =
        grpc_web(&app, "/aap.v1.SessionService/ListAccounts", None, None, &ListAccountsRequest::default(), 1).await;
    assert_eq!(none.code, tonic::Code::Unauthenticated as i32);
    assert_eq!(none.message, "not signed in to the console: sign in with an operator token");
}

#[tokio::test]
async fn a_console_session_expires_and_its_open_calls_end() {
    let app = spawn_app().await;
    let principals = aap_platform::principals::Principals::load(app.pool.clone(), &tokens()).await.expect("principals");
    let operator = principals.caller_of(OPERATOR).expect("the operator");
    let (token, info) =
        principals.open_console_session(&operator, std::time::Duration::from_secs(8)).await.expect("a session of 8 s");
    assert_eq!(info.source, "console");
    // The platform's own table reads the new token at its next reload (within 2 s); the call
    // opened with it then ends when it expires.
    let mut admin = admin_client(&app, &token);
    let opened = loop {
        let mut sessions = app.sessions(&token);
        match sessions.watch_accounts(WatchAccountsRequest::default()).await {
            Ok(stream) => break stream.into_inner(),
            Err(status)
                if status.code() == tonic::Code::Unauthenticated && status.message() == "unknown bearer token" =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(status) => panic!("watch accounts with the session's token: {status:?}"),
        }
    };
    let mut opened = opened;
    let status = common::ends_with(&mut opened, tonic::Code::Unauthenticated, "the session's WatchAccounts").await;
    assert!(status.message().contains(&format!("token {} expired: the call ends here", info.id)), "{status:?}");
    let refused = admin.who_am_i(aap_proto::v1::WhoAmIRequest::default()).await.expect_err("expired");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert!(refused.message().contains("expired"), "{refused:?}");
    // Listed no more, except with the revoked and expired ones.
    let mut operator_admin = admin_client(&app, OPERATOR);
    let live = operator_tokens(&mut operator_admin, false).await;
    assert!(live.iter().all(|t| t.id != info.id), "{live:?}");
}

#[tokio::test]
async fn a_principal_holds_at_most_twenty_console_sessions_the_oldest_ends_first() {
    let app = spawn_app().await;
    let max = aap_platform::principals::MAX_CONSOLE_SESSIONS as usize;
    let mut cookies = Vec::new();
    for _ in 0..=max {
        let response = sign_in(&app, OPERATOR).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        cookies.push(cookie_of(&response));
    }
    let oldest = session_info(&app, &cookies[0]).await;
    assert_eq!(oldest.status(), StatusCode::UNAUTHORIZED, "the oldest session ended");
    let said: serde_json::Value = oldest.json().await.expect("json");
    assert!(said["error"].as_str().expect("error").contains("was revoked"), "{said}");
    for cookie in &cookies[1..] {
        assert_eq!(session_info(&app, cookie).await.status(), StatusCode::OK, "{cookie}");
    }
    let mut admin = admin_client(&app, OPERATOR);
    let all = operator_tokens(&mut admin, true).await;
    let console: Vec<_> = all.iter().filter(|t| t.source == "console").collect();
    assert_eq!(console.len(), max + 1);
    let ended: Vec<_> = console.iter().filter(|t| t.revoked_at.is_some()).collect();
    assert_eq!(ended.len(), 1, "{console:?}");
    assert!(ended[0].revoked_by.contains("its oldest of more than 20 console sessions"), "{:?}", ended[0]);

    // Ended sessions are kept for the listing, the newest hundred of them: the table stays
    // bounded however often a script signs in.
    for _ in 0..100 {
        assert_eq!(sign_in(&app, OPERATOR).await.status(), StatusCode::NO_CONTENT);
    }
    let all = operator_tokens(&mut admin, true).await;
    let console: Vec<_> = all.iter().filter(|t| t.source == "console").collect();
    let live = console.iter().filter(|t| t.revoked_at.is_none()).count();
    assert_eq!((console.len(), live), (max + 100, max), "101 ended, the oldest of them deleted");
    assert!(console.iter().all(|t| t.id != ended[0].id), "the oldest ended session was deleted");
}
