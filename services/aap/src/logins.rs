//! Remote logins (RemoteLoginService): a headful Chromium per login on the platform host, in
//! its own Xvfb, whose screen operators watch and drive from the console until the assistant's
//! adapter sees a logged-in page; then its storage state is stored, encrypted, as a new account
//! or as the refreshed session of an existing one. The browser engine is aap-bot's
//! ([`aap_bot::login`]); this module keeps the logins (limits, owners, watchers, idle limit) and
//! stores what they capture through [`SessionDirectory`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use aap_bot::adapter::{ASSISTANTS, AnyAdapter};
use aap_bot::browser::{BrowserOptions, ChromiumVersion, Identity, UserAgent};
use aap_bot::login::{self, Command, Ended, Input, KeyAction, MouseAction, MouseButton, RemoteLoginSpec, Update};
use aap_proto::v1 as pb;
use aap_proto::v1::remote_login_service_server::{RemoteLoginService, RemoteLoginServiceServer};
use aap_sessions::{NewAccount, SessionDirectory, SessionError};
use chrono::{DateTime, Utc};
use futures::Stream;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Largest request RemoteLoginService decodes: input events are small (text at most 4,096
/// characters).
pub const MAX_REQUEST_BYTES: usize = 64 << 10;
/// How long an ended login stays listed.
const KEEP_ENDED: Duration = Duration::from_secs(600);
/// How long CancelRemoteLogin waits for the browser to close.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

/// How remote logins run.
#[derive(Debug, Clone)]
pub struct RemoteLoginsConfig {
    /// Remote logins running at once; more are refused with RESOURCE_EXHAUSTED.
    pub max: usize,
    /// No input for this long abandons a login.
    pub idle: Duration,
    /// How often the page is probed for a logged-in state.
    pub poll: Duration,
    /// Chromium, chromedriver and Xvfb (the account's proxy and user agent are set per login).
    pub browser: BrowserOptions,
    /// Adapter manifests overriding the built-in ones (`--adapters-dir` of the bots).
    pub adapters_dir: Option<PathBuf>,
    /// Assistant id → origin to log in at instead of the real site's (e.g. the simulator's).
    pub origins: BTreeMap<String, String>,
}

impl Default for RemoteLoginsConfig {
    fn default() -> Self {
        Self {
            max: 2,
            idle: Duration::from_secs(600),
            poll: Duration::from_millis(500),
            browser: BrowserOptions::default(),
            adapters_dir: None,
            origins: BTreeMap::new(),
        }
    }
}

/// Why a remote login request failed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// A request field is missing or malformed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field, as named in the request.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// No such login for this caller, or no such account.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The platform runs its maximum of remote logins.
    #[error("the platform already runs {0} remote logins; cancel one or wait")]
    Exhausted(usize),
    /// The login has ended: its browser is closed.
    #[error("the remote login has ended ({0})")]
    Ended(&'static str),
    /// The browser did not take the input.
    #[error("the browser did not take the input: {0}")]
    Browser(String),
    /// The account directory failed.
    #[error(transparent)]
    Sessions(#[from] SessionError),
}

/// The result of a remote login request.
pub type LoginResult<T> = Result<T, LoginError>;

fn invalid(field: &'static str, reason: impl Into<String>) -> LoginError {
    LoginError::InvalidArgument { field, reason: reason.into() }
}

/// Where a remote login is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginState {
    Starting,
    Waiting,
    Capturing,
    Stored,
    Abandoned,
    Cancelled,
    Failed,
}

impl LoginState {
    /// Whether the login is over (its browser closed).
    pub fn ended(self) -> bool {
        matches!(self, LoginState::Stored | LoginState::Abandoned | LoginState::Cancelled | LoginState::Failed)
    }

    fn name(self) -> &'static str {
        match self {
            LoginState::Starting => "starting",
            LoginState::Waiting => "waiting",
            LoginState::Capturing => "capturing",
            LoginState::Stored => "stored",
            LoginState::Abandoned => "abandoned",
            LoginState::Cancelled => "cancelled",
            LoginState::Failed => "failed",
        }
    }
}

/// One remote login as operators see it (no cookie, no proxy credentials).
#[derive(Debug, Clone, PartialEq)]
pub struct LoginInfo {
    pub id: String,
    pub assistant: String,
    pub plan: String,
    pub label: String,
    /// The refreshed account, or once stored the new one.
    pub account_id: String,
    pub state: LoginState,
    pub detail: String,
    pub principal: String,
    pub started_at: DateTime<Utc>,
    pub idle_deadline: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub width: u32,
    pub height: u32,
    pub url: String,
    /// `login`, `logged-in`, `challenge`, `loading`, or empty before the first look.
    pub page: String,
}

/// One screen frame, numbered from 1 per login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenFrame {
    pub jpeg: Vec<u8>,
    pub width: u32,
    pub height: u32,
    pub sequence: u64,
}

/// A login's state (now and its changes), its screen frames from now on, and its last frame.
pub type Watching = (watch::Receiver<LoginInfo>, broadcast::Receiver<Arc<ScreenFrame>>, Option<Arc<ScreenFrame>>);

/// What StartRemoteLogin asks for.
#[derive(Debug, Clone, Default)]
pub struct StartLogin {
    pub assistant: String,
    pub plan: String,
    pub label: String,
    pub proxy: String,
    pub user_agent: String,
    pub account_id: String,
}

struct Entry {
    info: watch::Sender<LoginInfo>,
    frames: broadcast::Sender<Arc<ScreenFrame>>,
    last_frame: Mutex<Option<Arc<ScreenFrame>>>,
    sequence: AtomicU64,
    commands: mpsc::Sender<Command>,
    /// What a new account is stored with (a proxy without credentials: those are refused).
    proxy: String,
    user_agent: String,
}

impl Entry {
    fn info(&self) -> LoginInfo {
        self.info.borrow().clone()
    }
}

struct Inner {
    directory: SessionDirectory,
    config: RemoteLoginsConfig,
    logins: Mutex<HashMap<String, Arc<Entry>>>,
}

/// The platform's remote logins. Cheap to clone.
#[derive(Clone)]
pub struct RemoteLogins {
    inner: Arc<Inner>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn deadline(from: DateTime<Utc>, idle: Duration) -> DateTime<Utc> {
    from + chrono::Duration::from_std(idle).unwrap_or(chrono::Duration::MAX)
}

/// A line of text an operator typed: trimmed, no control characters, at most `max` characters.
fn check_line(field: &'static str, text: &str, max: usize) -> LoginResult<String> {
    let text = text.trim();
    if text.chars().count() > max {
        return Err(invalid(field, format!("longer than {max} characters")));
    }
    if text.chars().any(char::is_control) {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(text.to_owned())
}

impl RemoteLogins {
    /// Remote logins storing into `directory`.
    pub fn new(directory: SessionDirectory, config: RemoteLoginsConfig) -> RemoteLogins {
        RemoteLogins { inner: Arc::new(Inner { directory, config, logins: Mutex::default() }) }
    }

    /// Starts a browser on the assistant's login page for `principal`.
    pub async fn start(&self, principal: &str, request: StartLogin) -> LoginResult<LoginInfo> {
        let mut start = StartLogin {
            assistant: check_line("assistant", &request.assistant, 64)?.to_ascii_lowercase(),
            plan: check_line("plan", &request.plan, 64)?,
            label: check_line("label", &request.label, 200)?,
            proxy: check_line("proxy", &request.proxy, 2048)?,
            user_agent: check_line("user_agent", &request.user_agent, 512)?,
            account_id: check_line("account_id", &request.account_id, 64)?,
        };
        if !start.account_id.is_empty() {
            start = self.refresh_of(start).await?;
        } else {
            if !ASSISTANTS.contains(&start.assistant.as_str()) {
                return Err(invalid("assistant", format!("unknown assistant (known: {})", ASSISTANTS.join(", "))));
            }
            if start.plan.is_empty() {
                return Err(invalid("plan", "is required for a new account"));
            }
            if start.label.is_empty() {
                return Err(invalid("label", "is required for a new account"));
            }
            // CreateAccount's rules, before the operator types a login that could not be stored.
            aap_sessions::check_new_account(&NewAccount {
                assistant: &start.assistant,
                plan: &start.plan,
                label: &start.label,
                storage_state_json: "",
                proxy: &start.proxy,
                user_agent: &start.user_agent,
            })?;
        }
        let proxy = match start.proxy.as_str() {
            "" => None,
            // Chromium's form, credentials refused (the error never repeats them).
            proxy => Some(
                aap_bot::browser::identity::proxy_server(proxy).map_err(|error| invalid("proxy", error.to_string()))?,
            ),
        };
        let config = &self.inner.config;
        let origin = config.origins.get(&start.assistant).map(String::as_str);
        let adapter = AnyAdapter::load(&start.assistant, config.adapters_dir.as_deref(), origin)
            .map_err(|error| invalid("assistant", error.to_string()))?;
        // A new account without a user agent keeps the one its login showed, so the bots that
        // lease it present the face the site saw at login; a refresh shows the bots' face.
        let user_agent = match start.user_agent.as_str() {
            "" if start.account_id.is_empty() => {
                let version = ChromiumVersion::of(&config.browser.chromium)
                    .await
                    .map_err(|error| LoginError::Browser(error.to_string()))?;
                let derived = UserAgent::Derived(start.label.clone());
                let user_agent = Identity::resolve(&derived, &version, &config.browser.accept_language).user_agent;
                start.user_agent = user_agent.clone();
                UserAgent::Exact(user_agent)
            }
            "" => UserAgent::Derived(start.account_id.clone()),
            user_agent => UserAgent::Exact(user_agent.to_owned()),
        };
        let spec = RemoteLoginSpec {
            adapter,
            browser: BrowserOptions { proxy, user_agent, ..config.browser.clone() },
            idle: config.idle,
            poll: config.poll,
        };

        let now = Utc::now();
        let info = LoginInfo {
            id: uuid::Uuid::new_v4().to_string(),
            assistant: start.assistant.clone(),
            plan: start.plan.clone(),
            label: start.label.clone(),
            account_id: start.account_id.clone(),
            state: LoginState::Starting,
            detail: String::new(),
            principal: principal.to_owned(),
            started_at: now,
            idle_deadline: deadline(now, config.idle),
            ended_at: None,
            width: 0,
            height: 0,
            url: String::new(),
            page: String::new(),
        };
        let (commands, commands_rx) = mpsc::channel(16);
        let entry = Arc::new(Entry {
            info: watch::Sender::new(info.clone()),
            frames: broadcast::Sender::new(8),
            last_frame: Mutex::new(None),
            sequence: AtomicU64::new(0),
            commands,
            proxy: start.proxy.clone(),
            user_agent: start.user_agent.clone(),
        });
        {
            let mut logins = lock(&self.inner.logins);
            logins.retain(|_, entry| {
                entry
                    .info
                    .borrow()
                    .ended_at
                    .is_none_or(|ended| Utc::now() - ended < chrono::Duration::from_std(KEEP_ENDED).unwrap_or_default())
            });
            let running = logins.values().filter(|entry| !entry.info.borrow().state.ended()).count();
            if running >= config.max {
                return Err(LoginError::Exhausted(config.max));
            }
            logins.insert(info.id.clone(), Arc::clone(&entry));
        }
        tracing::info!(
            login = info.id,
            assistant = info.assistant,
            principal,
            refresh = !info.account_id.is_empty(),
            "remote login started"
        );
        let this = self.clone();
        tokio::spawn(async move { this.run(entry, spec, commands_rx).await });
        Ok(info)
    }

    /// A refresh: the account's assistant, plan, label, proxy and user agent; what the request
    /// names must be empty or the account's.
    async fn refresh_of(&self, start: StartLogin) -> LoginResult<StartLogin> {
        let id = uuid::Uuid::parse_str(&start.account_id).map_err(|_| invalid("account_id", "not an account id"))?;
        let account = self
            .inner
            .directory
            .list_accounts("")
            .await?
            .into_iter()
            .find(|account| account.id == id)
            .ok_or(LoginError::NotFound("account"))?;
        let same = |field: &'static str, given: &str, own: &str| {
            if given.is_empty() || given.eq_ignore_ascii_case(own) {
                Ok(())
            } else {
                Err(invalid(field, "must be empty or the account's when refreshing a login"))
            }
        };
        same("assistant", &start.assistant, &account.assistant)?;
        same("plan", &start.plan, &account.plan)?;
        same("label", &start.label, &account.label)?;
        same("proxy", &start.proxy, &account.proxy)?;
        same("user_agent", &start.user_agent, &account.user_agent)?;
        Ok(StartLogin {
            assistant: account.assistant,
            plan: account.plan,
            label: account.label,
            proxy: account.proxy,
            user_agent: account.user_agent,
            account_id: account.id.to_string(),
        })
    }

    /// Runs the browser to its end, then stores what it captured.
    async fn run(&self, entry: Arc<Entry>, spec: RemoteLoginSpec, commands: mpsc::Receiver<Command>) {
        let updates = Arc::clone(&entry);
        let engine = tokio::spawn(login::run_remote_login(spec, commands, move |update| apply(&updates, update)));
        let ended = engine.await.unwrap_or_else(|error| Ended::Failed(format!("the login task failed: {error}")));
        let (state, detail, account_id) = match ended {
            Ended::LoggedIn(state) => match self.store(&entry, &login::storage::to_json(&state)).await {
                Ok(account_id) => {
                    (LoginState::Stored, format!("logged in; {} cookies stored", state.cookies.len()), account_id)
                }
                Err(error) => {
                    tracing::warn!(%error, "storing the captured session failed");
                    (LoginState::Failed, format!("the session could not be stored: {error}"), String::new())
                }
            },
            Ended::Abandoned => {
                (LoginState::Abandoned, "no input for the idle limit; nothing stored".to_owned(), String::new())
            }
            Ended::Cancelled => (LoginState::Cancelled, "cancelled; nothing stored".to_owned(), String::new()),
            Ended::Failed(detail) => (LoginState::Failed, detail, String::new()),
        };
        entry.info.send_modify(|info| {
            info.state = state;
            info.detail = detail;
            if !account_id.is_empty() {
                info.account_id = account_id;
            }
            info.ended_at = Some(Utc::now());
        });
        let info = entry.info();
        tracing::info!(login = info.id, state = state.name(), account_id = info.account_id, "remote login ended");
    }

    async fn store(&self, entry: &Entry, storage_state_json: &str) -> LoginResult<String> {
        let directory = &self.inner.directory;
        let info = entry.info();
        let account = if info.account_id.is_empty() {
            directory
                .create_account(NewAccount {
                    assistant: &info.assistant,
                    plan: &info.plan,
                    label: &info.label,
                    storage_state_json,
                    proxy: &entry.proxy,
                    user_agent: &entry.user_agent,
                })
                .await?
        } else {
            directory.update_session_state(&info.account_id, storage_state_json).await?
        };
        Ok(account.id.to_string())
    }

    fn entry(&self, principal: &str, login_id: &str) -> LoginResult<Arc<Entry>> {
        let logins = lock(&self.inner.logins);
        match logins.get(login_id.trim()) {
            Some(entry) if entry.info.borrow().principal == principal => Ok(Arc::clone(entry)),
            _ => Err(LoginError::NotFound("remote login")),
        }
    }

    /// The login's state now, and a receiver of its changes and of its screen frames.
    pub fn watch(&self, principal: &str, login_id: &str) -> LoginResult<Watching> {
        let entry = self.entry(principal, login_id)?;
        // Frames first: none is lost between the last frame read and the subscription.
        let frames = entry.frames.subscribe();
        let last = lock(&entry.last_frame).clone();
        Ok((entry.info.subscribe(), frames, last))
    }

    /// Forwards one input event to the login's page.
    pub async fn input(&self, principal: &str, login_id: &str, input: Input) -> LoginResult<LoginInfo> {
        let entry = self.entry(principal, login_id)?;
        let state = entry.info.borrow().state;
        if state.ended() {
            return Err(LoginError::Ended(state.name()));
        }
        input.validate().map_err(|error| invalid(error.field, error.reason))?;
        let (reply, answer) = oneshot::channel();
        if entry.commands.send(Command::Input(input, reply)).await.is_err() {
            return Err(LoginError::Ended("closing"));
        }
        match answer.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => return Err(LoginError::Browser(error.to_string())),
            Err(_) => return Err(LoginError::Ended("closing")),
        }
        let idle = self.inner.config.idle;
        entry.info.send_modify(|info| info.idle_deadline = deadline(Utc::now(), idle));
        Ok(entry.info())
    }

    /// Closes the login's browser; nothing is stored. An ended login is returned as it is.
    pub async fn cancel(&self, principal: &str, login_id: &str) -> LoginResult<LoginInfo> {
        let entry = self.entry(principal, login_id)?;
        let mut info = entry.info.subscribe();
        if !info.borrow().state.ended() {
            // A closed channel: the engine is already finishing.
            let _ = entry.commands.send(Command::Cancel).await;
            let _ = tokio::time::timeout(CANCEL_WAIT, info.wait_for(|info| info.state.ended())).await;
        }
        Ok(entry.info())
    }

    /// The caller's logins still running and those that ended in the last 10 minutes, newest
    /// first.
    pub fn list(&self, principal: &str) -> Vec<LoginInfo> {
        let keep = chrono::Duration::from_std(KEEP_ENDED).unwrap_or_default();
        let mut logins: Vec<LoginInfo> = lock(&self.inner.logins)
            .values()
            .map(|entry| entry.info())
            .filter(|info| info.principal == principal && info.ended_at.is_none_or(|ended| Utc::now() - ended < keep))
            .collect();
        logins.sort_by_key(|login| std::cmp::Reverse(login.started_at));
        logins
    }
}

/// Applies one step of the engine to the login's state and frames.
fn apply(entry: &Entry, update: Update) {
    match update {
        Update::Waiting { width, height, url } => entry.info.send_modify(|info| {
            info.state = LoginState::Waiting;
            info.width = width;
            info.height = height;
            info.url = url;
        }),
        Update::Frame(frame) => {
            let sequence = entry.sequence.fetch_add(1, Ordering::Relaxed) + 1;
            let frame = Arc::new(ScreenFrame { jpeg: frame.jpeg, width: frame.width, height: frame.height, sequence });
            *lock(&entry.last_frame) = Some(Arc::clone(&frame));
            // No watcher is fine.
            let _ = entry.frames.send(frame);
        }
        Update::Page { state, url } => {
            entry.info.send_if_modified(|info| {
                let page = state.name();
                let changed = info.page != page || info.url != url;
                info.page = page.to_owned();
                info.url = url;
                changed
            });
        }
        Update::Capturing => entry.info.send_modify(|info| info.state = LoginState::Capturing),
    }
}

// ---- gRPC -----------------------------------------------------------------------------------

/// RemoteLoginService over [`RemoteLogins`].
#[derive(Clone)]
pub struct RemoteLoginGrpc {
    logins: RemoteLogins,
}

impl RemoteLoginGrpc {
    /// The service over `logins`.
    pub fn new(logins: RemoteLogins) -> RemoteLoginGrpc {
        RemoteLoginGrpc { logins }
    }

    /// The tonic server of a new [`RemoteLogins`] storing into `directory`, its requests
    /// limited to [`MAX_REQUEST_BYTES`].
    pub fn server(
        directory: SessionDirectory,
        config: RemoteLoginsConfig,
    ) -> RemoteLoginServiceServer<RemoteLoginGrpc> {
        RemoteLoginServiceServer::new(RemoteLoginGrpc::new(RemoteLogins::new(directory, config)))
            .max_decoding_message_size(MAX_REQUEST_BYTES)
    }
}

impl From<LoginError> for Status {
    fn from(error: LoginError) -> Status {
        let message = error.to_string();
        match error {
            LoginError::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                message,
                ErrorDetails::with_bad_request_violation(field, reason),
            ),
            LoginError::NotFound(_) => Status::not_found(message),
            LoginError::Exhausted(_) => Status::resource_exhausted(message),
            LoginError::Ended(_) => Status::failed_precondition(message),
            LoginError::Browser(_) => Status::unavailable(message),
            LoginError::Sessions(error) => Status::from(error),
        }
    }
}

fn timestamp(at: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: at.timestamp(), nanos: at.timestamp_subsec_nanos() as i32 }
}

fn to_proto(info: &LoginInfo) -> pb::RemoteLogin {
    let state = match info.state {
        LoginState::Starting => pb::RemoteLoginState::Starting,
        LoginState::Waiting => pb::RemoteLoginState::Waiting,
        LoginState::Capturing => pb::RemoteLoginState::Capturing,
        LoginState::Stored => pb::RemoteLoginState::Stored,
        LoginState::Abandoned => pb::RemoteLoginState::Abandoned,
        LoginState::Cancelled => pb::RemoteLoginState::Cancelled,
        LoginState::Failed => pb::RemoteLoginState::Failed,
    };
    pb::RemoteLogin {
        id: info.id.clone(),
        assistant: info.assistant.clone(),
        plan: info.plan.clone(),
        label: info.label.clone(),
        account_id: info.account_id.clone(),
        state: state as i32,
        detail: info.detail.clone(),
        principal: info.principal.clone(),
        started_at: Some(timestamp(info.started_at)),
        idle_deadline: Some(timestamp(info.idle_deadline)),
        width: info.width,
        height: info.height,
        url: info.url.clone(),
        page: info.page.clone(),
    }
}

fn frame_event(frame: &ScreenFrame) -> pb::WatchRemoteLoginResponse {
    pb::WatchRemoteLoginResponse {
        event: Some(pb::watch_remote_login_response::Event::Frame(pb::ScreenFrame {
            jpeg: frame.jpeg.clone(),
            width: frame.width,
            height: frame.height,
            sequence: frame.sequence,
        })),
    }
}

fn login_event(info: &LoginInfo) -> pb::WatchRemoteLoginResponse {
    pb::WatchRemoteLoginResponse { event: Some(pb::watch_remote_login_response::Event::Login(to_proto(info))) }
}

/// The domain's input from the request's, or which field is wrong.
fn input_of(request: pb::SendRemoteLoginInputRequest) -> LoginResult<Input> {
    use pb::send_remote_login_input_request::Input as In;
    let input = request.input.ok_or_else(|| invalid("input", "one of mouse, key, text or scroll is required"))?;
    Ok(match input {
        In::Mouse(mouse) => Input::Mouse {
            action: match pb::MouseAction::try_from(mouse.action) {
                Ok(pb::MouseAction::Move) => MouseAction::Move,
                Ok(pb::MouseAction::Down) => MouseAction::Down,
                Ok(pb::MouseAction::Up) => MouseAction::Up,
                Ok(pb::MouseAction::Click) => MouseAction::Click,
                Ok(pb::MouseAction::Unspecified) | Err(_) => return Err(invalid("mouse.action", "is required")),
            },
            x: mouse.x,
            y: mouse.y,
            button: match pb::MouseButton::try_from(mouse.button) {
                Ok(pb::MouseButton::Unspecified | pb::MouseButton::Left) => MouseButton::Left,
                Ok(pb::MouseButton::Middle) => MouseButton::Middle,
                Ok(pb::MouseButton::Right) => MouseButton::Right,
                Ok(pb::MouseButton::None) => MouseButton::None,
                Err(_) => return Err(invalid("mouse.button", "unknown button")),
            },
            click_count: mouse.click_count,
        },
        In::Key(key) => Input::Key {
            action: match pb::KeyAction::try_from(key.action) {
                Ok(pb::KeyAction::Down) => KeyAction::Down,
                Ok(pb::KeyAction::Up) => KeyAction::Up,
                Ok(pb::KeyAction::Press) => KeyAction::Press,
                Ok(pb::KeyAction::Unspecified) | Err(_) => return Err(invalid("key.action", "is required")),
            },
            key: key.key,
            code: key.code,
            modifiers: key.modifiers,
        },
        In::Text(text) => Input::Text(text.text),
        In::Scroll(scroll) => {
            Input::Scroll { x: scroll.x, y: scroll.y, delta_x: scroll.delta_x, delta_y: scroll.delta_y }
        }
    })
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchRemoteLoginResponse, Status>> + Send>>;

#[tonic::async_trait]
impl RemoteLoginService for RemoteLoginGrpc {
    async fn start_remote_login(
        &self,
        request: Request<pb::StartRemoteLoginRequest>,
    ) -> Result<Response<pb::StartRemoteLoginResponse>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let r = request.into_inner();
        let start = StartLogin {
            assistant: r.assistant,
            plan: r.plan,
            label: r.label,
            proxy: r.proxy,
            user_agent: r.user_agent,
            account_id: r.account_id,
        };
        let info = self.logins.start(&caller.principal, start).await?;
        Ok(Response::new(pb::StartRemoteLoginResponse { login: Some(to_proto(&info)) }))
    }

    type WatchRemoteLoginStream = WatchStream;

    async fn watch_remote_login(
        &self,
        request: Request<pb::WatchRemoteLoginRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let (mut info, mut frames, last) = self.logins.watch(&caller.principal, &request.get_ref().login_id)?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let first = info.borrow_and_update().clone();
            if tx.send(Ok(login_event(&first))).await.is_err() || first.state.ended() {
                return;
            }
            if let Some(frame) = last
                && tx.send(Ok(frame_event(&frame))).await.is_err()
            {
                return;
            }
            loop {
                tokio::select! {
                    changed = info.changed() => {
                        let now = info.borrow_and_update().clone();
                        // A closed sender means the login is gone: end the stream either way.
                        if tx.send(Ok(login_event(&now))).await.is_err() || now.state.ended() || changed.is_err() {
                            return;
                        }
                    }
                    frame = frames.recv() => match frame {
                        Ok(frame) => {
                            if tx.send(Ok(frame_event(&frame))).await.is_err() {
                                return;
                            }
                        }
                        // A slow watcher skips frames: the next one shows the screen as it is.
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        // The engine is gone; the state change that follows ends the stream.
                        Err(broadcast::error::RecvError::Closed) => {
                            let _ = info.wait_for(|info| info.state.ended()).await;
                            let now = info.borrow().clone();
                            let _ = tx.send(Ok(login_event(&now))).await;
                            return;
                        }
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx)) as WatchStream))
    }

    async fn send_remote_login_input(
        &self,
        request: Request<pb::SendRemoteLoginInputRequest>,
    ) -> Result<Response<pb::SendRemoteLoginInputResponse>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let request = request.into_inner();
        let login_id = request.login_id.clone();
        // Whose login it is before what is wrong with the input: others learn nothing.
        self.logins.entry(&caller.principal, &login_id)?;
        let input = input_of(request)?;
        let info = self.logins.input(&caller.principal, &login_id, input).await?;
        Ok(Response::new(pb::SendRemoteLoginInputResponse { login: Some(to_proto(&info)) }))
    }

    async fn cancel_remote_login(
        &self,
        request: Request<pb::CancelRemoteLoginRequest>,
    ) -> Result<Response<pb::CancelRemoteLoginResponse>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let info = self.logins.cancel(&caller.principal, &request.get_ref().login_id).await?;
        Ok(Response::new(pb::CancelRemoteLoginResponse { login: Some(to_proto(&info)) }))
    }

    async fn list_remote_logins(
        &self,
        request: Request<pb::ListRemoteLoginsRequest>,
    ) -> Result<Response<pb::ListRemoteLoginsResponse>, Status> {
        let caller = aap_platform::auth::caller(&request)?;
        let logins = self.logins.list(&caller.principal).iter().map(to_proto).collect();
        Ok(Response::new(pb::ListRemoteLoginsResponse { logins }))
    }
}
