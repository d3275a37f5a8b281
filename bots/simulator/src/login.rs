//! A real login on every look-alike: an e-mail and password form, an optional one-time-code
//! step, and on success the same session cookie and localStorage entry that
//! `POST /__sim/sessions` hands out, then a redirect to the app page. Remote login and
//! `aap session capture` are tested against it.
//!
//! The form sits at fixed positions (CSS pixels from the top-left of the viewport) so that a
//! test driving the page through a screencast can click without reading the DOM:
//! [`EMAIL_AT`], [`PASSWORD_AT`], [`SUBMIT_AT`]; the one-time-code step (at
//! `<login path>?step=otp&pending=...`, where a right password with a code redirects) has its
//! field at [`OTP_AT`] and its button at [`SUBMIT_AT`]. A wrong password or code shows the form
//! again with an error (status 401).
//!
//! Logins are registered with `POST /__sim/logins {"email", "password", "otp"?}`; every
//! simulator knows [`DEFAULT_EMAIL`] / [`DEFAULT_PASSWORD`] (no one-time code) from the start.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use crate::common::{escape_html, no_store};
use crate::site::Site;
use crate::state::SimState;

/// The login every simulator accepts from the start.
pub const DEFAULT_EMAIL: &str = "operator@simulator.invalid";
/// The password of [`DEFAULT_EMAIL`].
pub const DEFAULT_PASSWORD: &str = "simulator-password";
/// Centre of the e-mail field (and of the one-time-code field on its step), CSS pixels.
pub const EMAIL_AT: (f64, f64) = (240.0, 140.0);
/// Centre of the password field.
pub const PASSWORD_AT: (f64, f64) = (240.0, 200.0);
/// Centre of the one-time-code field on the second step.
pub const OTP_AT: (f64, f64) = (240.0, 140.0);
/// Centre of the submit button on both steps.
pub const SUBMIT_AT: (f64, f64) = (240.0, 260.0);

/// Registered logins by lowercase e-mail, and one-time-code steps in progress.
#[derive(Debug)]
pub(crate) struct Logins {
    accounts: HashMap<String, Credentials>,
    /// Pending second steps: nonce → lowercase e-mail.
    pending: HashMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Credentials {
    email: String,
    password: String,
    #[serde(default)]
    otp: Option<String>,
}

impl Default for Logins {
    fn default() -> Logins {
        let mut logins = Logins { accounts: HashMap::new(), pending: HashMap::new() };
        logins.register(Credentials {
            email: DEFAULT_EMAIL.to_owned(),
            password: DEFAULT_PASSWORD.to_owned(),
            otp: None,
        });
        logins
    }
}

impl Logins {
    fn register(&mut self, credentials: Credentials) {
        self.accounts.insert(credentials.email.trim().to_lowercase(), credentials);
    }
}

/// `POST /__sim/logins {"email", "password", "otp"?}`: 201; the same e-mail again replaces it.
pub(crate) async fn admin_register(State(state): State<SimState>, body: Bytes) -> Response {
    let credentials = match serde_json::from_slice::<Credentials>(&body) {
        Ok(credentials) if !credentials.email.trim().is_empty() && !credentials.password.is_empty() => credentials,
        Ok(_) => return (StatusCode::BAD_REQUEST, "email and password are required").into_response(),
        Err(error) => return (StatusCode::BAD_REQUEST, format!("invalid login: {error}")).into_response(),
    };
    let email = credentials.email.trim().to_lowercase();
    state.with_logins(|logins| logins.register(credentials));
    (StatusCode::CREATED, Json(serde_json::json!({ "email": email }))).into_response()
}

/// `GET` of the site's login path: the form's first step, or with `?step=otp&pending=N` the
/// one-time-code step the password step redirected to (its address says which step shows).
pub(crate) async fn login_page(State(state): State<SimState>, uri: Uri) -> Response {
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let step = match query.get("pending") {
        Some(nonce) if state.with_logins(|logins| logins.pending.contains_key(nonce)) => Step::Otp(nonce.clone()),
        _ => Step::Password,
    };
    no_store(page(state.site(), step, None))
}

/// `POST` of the site's login path (form-encoded `email` + `password`, or `pending` + `otp`).
pub(crate) async fn submit(State(state): State<SimState>, body: Bytes) -> Response {
    let fields: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| fields.get(name).map(String::as_str).unwrap_or_default();
    let site = state.site();
    let email = if let Some(nonce) = fields.get("pending") {
        let verified = state.with_logins(|logins| {
            let email = logins.pending.get(nonce)?.clone();
            let expected = logins.accounts.get(&email)?.otp.clone()?;
            (expected == field("otp").trim()).then(|| {
                logins.pending.remove(nonce);
                email
            })
        });
        match verified {
            Some(email) => email,
            None => {
                return refused(page(site, Step::Otp(nonce.clone()), Some("That code is not right. Try again.")));
            }
        }
    } else {
        let email = field("email").trim().to_lowercase();
        let known = state.with_logins(|logins| logins.accounts.get(&email).cloned());
        match known {
            Some(credentials) if credentials.password == field("password") => {
                if credentials.otp.is_some() {
                    let nonce = uuid::Uuid::new_v4().simple().to_string();
                    state.with_logins(|logins| logins.pending.insert(nonce.clone(), email.clone()));
                    return Redirect::to(&format!("{}?step=otp&pending={nonce}", site.login_path())).into_response();
                }
                email
            }
            _ => return refused(page(site, Step::Password, Some("Wrong email or password."))),
        }
    };
    let session = state.create_session(&email);
    let (key, value) = site.local_storage_entry();
    let script = format!(
        "localStorage.setItem({}, {}); location.replace({});",
        serde_json::json!(key),
        serde_json::json!(value),
        serde_json::json!(site.app_path())
    );
    let html = format!(
        "<!DOCTYPE html><html lang=\"en-US\"><head><meta charset=\"utf-8\"><title>Signing in - {}</title></head>\
         <body><p>Signing you in...</p><script>{script}</script></body></html>",
        site.title()
    );
    let mut response = no_store(html);
    // The same cookie as the storage state of `POST /__sim/sessions` (Chromium takes a Secure
    // cookie from http://127.0.0.1 and localhost, which count as secure contexts).
    let cookie = format!(
        "{}={}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        site.session_cookie(),
        session.token,
        crate::state::COOKIE_LIFETIME.as_secs()
    );
    match HeaderValue::from_str(&cookie) {
        Ok(cookie) => {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
    response
}

fn refused(html: String) -> Response {
    let mut response = no_store(html);
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
}

enum Step {
    Password,
    /// The one-time-code step of the pending login with this nonce.
    Otp(String),
}

/// A whole login page of `site` at `step`, with `error` shown under the form.
fn page(site: Site, step: Step, error: Option<&str>) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en-US\"><head><meta charset=\"utf-8\"><title>Log in - {title}</title>\
         <style>{STYLE}</style></head><body>{form}</body></html>",
        title = site.title(),
        form = form(site, step, error)
    )
}

/// The form alone, for a site whose own login page wraps it ([`form_fragment`]).
fn form(site: Site, step: Step, error: Option<&str>) -> String {
    let action = site.login_path();
    let error = error.map_or(String::new(), |error| {
        format!("<p id=\"login-error\" role=\"alert\" class=\"sim-login-error\">{}</p>", escape_html(error))
    });
    let fields = match step {
        Step::Password => "<input id=\"email\" class=\"sim-at-1\" type=\"email\" name=\"email\" data-testid=\"email\" \
                           autocomplete=\"email\" placeholder=\"Email address\">\
                           <input id=\"password\" class=\"sim-at-2\" type=\"password\" name=\"password\" \
                           autocomplete=\"current-password\" placeholder=\"Password\">"
            .to_owned(),
        Step::Otp(nonce) => format!(
            "<input type=\"hidden\" name=\"pending\" value=\"{}\">\
             <input id=\"otp\" class=\"sim-at-1\" type=\"text\" name=\"otp\" inputmode=\"numeric\" \
             autocomplete=\"one-time-code\" placeholder=\"Code from your authenticator app\">",
            escape_html(&nonce)
        ),
    };
    format!(
        "<div class=\"sim-login\" role=\"dialog\" aria-modal=\"true\" data-testid=\"login-modal\">\
         <h1 class=\"sim-login-title\">Log in to {title}</h1>\
         <form method=\"post\" action=\"{action}\" data-testid=\"login-form\">{fields}\
         <button id=\"login-submit\" class=\"sim-at-3\" type=\"submit\">Continue</button></form>{error}\
         <a class=\"sim-login-signup\" href=\"{action}?screen_hint=signup\">Sign up</a></div>",
        title = site.title()
    )
}

/// The first step of the form with its style, for a site's own login page (Claude's).
pub(crate) fn form_fragment(site: Site) -> String {
    format!("<style>{STYLE}</style>{}", form(site, Step::Password, None))
}

/// Fixed positions: fields 40 px high, 400 px wide from x = 40 (centres in [`EMAIL_AT`] ...).
const STYLE: &str = ".sim-login{position:fixed;left:0;top:0;width:480px;height:360px;background:#fff;z-index:1000;\
font-family:sans-serif}.sim-login-title{position:absolute;left:40px;top:40px;margin:0;font-size:24px;height:40px}\
.sim-login input,.sim-login button{position:absolute;left:40px;width:400px;height:40px;margin:0;box-sizing:border-box;\
font-size:16px}.sim-at-1{top:120px}.sim-at-2{top:180px}.sim-at-3{top:240px}\
.sim-login-error{position:absolute;left:40px;top:290px;margin:0;color:#b00}\
.sim-login-signup{position:absolute;left:40px;top:320px}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_has_the_markers_each_login_wall_probe_looks_for() {
        let html = page(Site::Claude, Step::Password, Some("<bad>"));
        for marker in [
            "data-testid=\"login-modal\"",
            "data-testid=\"login-form\"",
            "data-testid=\"email\"",
            "type=\"password\"",
            "&lt;bad&gt;",
        ] {
            assert!(html.contains(marker), "{marker}");
        }
        assert!(page(Site::ChatGpt, Step::Password, None).contains("href=\"/auth/login?screen_hint=signup\""));
        assert!(page(Site::ChatGpt, Step::Otp("n1".into()), None).contains("name=\"pending\" value=\"n1\""));
    }
}
