//! A small Chrome DevTools Protocol client over one page target's websocket: numbered requests
//! answered by id, events broadcast to whoever listens. thirtyfour's CDP goes through
//! chromedriver's `goog/cdp/execute`, which carries no events; a screencast needs them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_websockets::{ClientBuilder, Message};

/// How long one command may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Events buffered per listener; a slower listener skips ahead (screen frames are re-sent).
const EVENT_BUFFER: usize = 64;
/// Screencast frames arrive as base64 in JSON: allow large messages.
const MAX_MESSAGE: usize = 32 * 1024 * 1024;

/// Why a CDP command failed.
#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    /// The DevTools endpoint could not be reached or listed.
    #[error("cannot reach devtools: {0}")]
    Connect(String),
    /// The browser answered the command with an error.
    #[error("{method} failed: {message}")]
    Command {
        /// The method called.
        method: String,
        /// The browser's message.
        message: String,
    },
    /// The connection closed before the answer.
    #[error("devtools connection closed")]
    Closed,
    /// No answer in time.
    #[error("{0} timed out")]
    Timeout(String),
}

/// One CDP event.
#[derive(Debug, Clone, PartialEq)]
pub struct CdpEvent {
    /// E.g. `Page.screencastFrame`.
    pub method: String,
    /// The event's parameters.
    pub params: Value,
}

/// A message from the browser.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    /// The answer to request `id`: its result, or the browser's error message.
    Response { id: u64, result: Result<Value, String> },
    /// An event.
    Event(CdpEvent),
}

/// The text of request `id`.
pub(crate) fn encode_request(id: u64, method: &str, params: Value) -> String {
    json!({ "id": id, "method": method, "params": params }).to_string()
}

/// Reads one message; `None` for what is neither an answer nor an event.
pub(crate) fn parse_incoming(text: &str) -> Option<Incoming> {
    let mut message: serde_json::Map<String, Value> = serde_json::from_str(text).ok()?;
    if let Some(id) = message.get("id").and_then(Value::as_u64) {
        let result = match message.remove("error") {
            Some(error) => Err(error.get("message").and_then(Value::as_str).unwrap_or("unknown error").to_owned()),
            None => Ok(message.remove("result").unwrap_or(Value::Null)),
        };
        return Some(Incoming::Response { id, result });
    }
    let method = message.get("method")?.as_str()?.to_owned();
    let params = message.remove("params").unwrap_or(Value::Null);
    Some(Incoming::Event(CdpEvent { method, params }))
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Result<Value, String>>>>>;

/// A connection to one page target.
pub struct Cdp {
    next_id: AtomicU64,
    outgoing: mpsc::Sender<String>,
    pending: Pending,
    events: broadcast::Sender<CdpEvent>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for Cdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cdp").finish_non_exhaustive()
    }
}

/// The websocket of the first page target of the browser whose DevTools listen at `address`
/// (`host:port`, as chromedriver reports it in `goog:chromeOptions.debuggerAddress`).
pub async fn page_websocket(address: &str) -> Result<String, CdpError> {
    let url = format!("http://{address}/json/list");
    let targets: Vec<Value> = reqwest::get(&url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|error| CdpError::Connect(error.to_string()))?
        .json()
        .await
        .map_err(|error| CdpError::Connect(error.to_string()))?;
    targets
        .iter()
        .find(|target| target["type"] == "page")
        .and_then(|target| target["webSocketDebuggerUrl"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| CdpError::Connect("no page target".to_owned()))
}

impl Cdp {
    /// Connects to a target's websocket (`ws://127.0.0.1:N/devtools/page/ID`).
    pub async fn connect(websocket: &str) -> Result<Cdp, CdpError> {
        let uri = websocket.parse().map_err(|_| CdpError::Connect(format!("invalid websocket url {websocket}")))?;
        let (mut socket, _) = ClientBuilder::from_uri(uri)
            .limits(tokio_websockets::Limits::default().max_payload_len(Some(MAX_MESSAGE)))
            .connect()
            .await
            .map_err(|error| CdpError::Connect(error.to_string()))?;
        let (outgoing, mut to_send) = mpsc::channel::<String>(64);
        let pending: Pending = Arc::default();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let task = {
            let pending = Arc::clone(&pending);
            let events = events.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        text = to_send.recv() => {
                            let Some(text) = text else { break };
                            if socket.send(Message::text(text)).await.is_err() {
                                break;
                            }
                        }
                        message = socket.next() => {
                            let Some(Ok(message)) = message else { break };
                            let Some(text) = message.as_text() else { continue };
                            match parse_incoming(text) {
                                Some(Incoming::Response { id, result }) => {
                                    let waiter = pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                                    if let Some(waiter) = waiter {
                                        let _ = waiter.send(result);
                                    }
                                }
                                // No listener is fine: nobody watches yet.
                                Some(Incoming::Event(event)) => { let _ = events.send(event); }
                                None => {}
                            }
                        }
                    }
                }
                // Every caller still waiting learns that the connection is gone.
                pending.lock().unwrap_or_else(|p| p.into_inner()).clear();
                let _ = socket.close().await;
            })
        };
        Ok(Cdp { next_id: AtomicU64::new(1), outgoing, pending, events, task })
    }

    /// Sends `method` and waits for its result.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, CdpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        if self.outgoing.send(encode_request(id, method, params)).await.is_err() {
            self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            return Err(CdpError::Closed);
        }
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(message))) => Err(CdpError::Command { method: method.to_owned(), message }),
            Ok(Err(_)) => Err(CdpError::Closed),
            Err(_) => {
                self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                Err(CdpError::Timeout(method.to_owned()))
            }
        }
    }

    /// Every event from now on.
    pub fn events(&self) -> broadcast::Receiver<CdpEvent> {
        self.events.subscribe()
    }

    /// Whether the connection is still open.
    pub fn is_open(&self) -> bool {
        !self.task.is_finished()
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_id_method_and_params() -> Result<(), serde_json::Error> {
        let text = encode_request(7, "Page.navigate", json!({ "url": "http://x/" }));
        let value: Value = serde_json::from_str(&text)?;
        assert_eq!(value, json!({ "id": 7, "method": "Page.navigate", "params": { "url": "http://x/" } }));
        Ok(())
    }

    #[test]
    fn answers_events_and_errors_are_told_apart() {
        assert_eq!(
            parse_incoming(r#"{"id":3,"result":{"frameId":"F"}}"#),
            Some(Incoming::Response { id: 3, result: Ok(json!({ "frameId": "F" })) })
        );
        assert_eq!(
            parse_incoming(r#"{"id":4,"error":{"code":-32000,"message":"No node"}}"#),
            Some(Incoming::Response { id: 4, result: Err("No node".to_owned()) })
        );
        assert_eq!(parse_incoming(r#"{"id":5}"#), Some(Incoming::Response { id: 5, result: Ok(Value::Null) }));
        assert_eq!(
            parse_incoming(r#"{"method":"Page.screencastFrame","params":{"sessionId":1}}"#),
            Some(Incoming::Event(CdpEvent {
                method: "Page.screencastFrame".into(),
                params: json!({ "sessionId": 1 })
            }))
        );
        assert_eq!(parse_incoming("not json"), None);
        assert_eq!(parse_incoming(r#"{"params":{}}"#), None);
    }
}
