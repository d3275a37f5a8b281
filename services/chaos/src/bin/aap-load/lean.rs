//! A lean gRPC client for the closed-loop rows (exact hits, similar prompts): `Ask` spoken over
//! HTTP/2 with the `h2` crate directly, the way any gRPC client frames it (request HEADERS, one
//! length-prefixed protobuf message, the response's messages, then the `grpc-status` trailers).
//!
//! Why not tonic's client here: on a machine the client shares with the platform, what the client
//! spends is taken from the platform, and the limit beside these rows, `pgbench -S`, is a lean C
//! client. Under 64 callers tonic's client stack (a buffer task per channel, a task spawned per
//! request body, tower layers) took as much CPU as `aap serve` itself (91% of a core against
//! 96%), against pgbench's 29%. The server sees the same HTTP/2 traffic from either; every other
//! row of the run (the setup, the watches, the pipeline) uses tonic's client.

use std::time::Duration;

use aap_proto::v1::answer_event::Event;
use aap_proto::v1::{AskRequest, AskResponse};
use anyhow::Context as _;
use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::header::{AUTHORIZATION, CONTENT_TYPE, TE};
use http::{HeaderMap, HeaderValue, Request, Uri};
use prost::Message as _;

use crate::scenarios::Bearer;

/// One customer's connection: HTTP/2 over its own TCP connection.
#[derive(Clone)]
pub struct Lean {
    send: h2::client::SendRequest<Bytes>,
    ask: Uri,
    authorization: HeaderValue,
}

/// The size of gRPC's message prefix: a compression flag and a 4-byte length.
const PREFIX: usize = 5;

impl Lean {
    /// Connects to `url` (`http://host:port`), the connection driven by a task of its own.
    pub async fn connect(url: &str, bearer: &Bearer) -> anyhow::Result<Lean> {
        let base: Uri = url.parse().with_context(|| format!("url {url}"))?;
        let authority = base.authority().with_context(|| format!("no host in {url}"))?.clone();
        let tcp = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(authority.as_str()))
            .await
            .with_context(|| format!("connect {url}: no answer in 5 s"))?
            .with_context(|| format!("connect {url}"))?;
        tcp.set_nodelay(true)?;
        let (send, connection) = h2::client::handshake(tcp).await.with_context(|| format!("HTTP/2 with {url}"))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "a load connection ended");
            }
        });
        let ask = Uri::builder()
            .scheme(base.scheme_str().unwrap_or("http"))
            .authority(authority)
            .path_and_query("/aap.v1.AnswersService/Ask")
            .build()?;
        Ok(Lean { send, ask, authorization: HeaderValue::from_str(bearer.header())? })
    }

    /// Every event of one Ask, to its end; an error says what broke (the call's status, the
    /// stream, a message that does not decode).
    pub async fn ask(&self, request: &AskRequest) -> Result<Vec<Event>, String> {
        let mut message = BytesMut::with_capacity(PREFIX + request.encoded_len());
        message.put_u8(0);
        message.put_u32(request.encoded_len() as u32);
        request.encode(&mut message).map_err(|e| format!("encode: {e}"))?;
        let mut head = Request::post(self.ask.clone()).body(()).map_err(|e| e.to_string())?;
        let headers = head.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(TE, HeaderValue::from_static("trailers"));
        headers.insert(AUTHORIZATION, self.authorization.clone());

        let mut send = self.send.clone().ready().await.map_err(|e| format!("connection: {e}"))?;
        let (response, mut body_out) = send.send_request(head, false).map_err(|e| format!("send: {e}"))?;
        body_out.send_data(message.freeze(), true).map_err(|e| format!("send: {e}"))?;
        let response = response.await.map_err(|e| format!("response: {e}"))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("HTTP status {}", response.status()));
        }
        // A call refused at once is "trailers only": its status is in the headers.
        grpc_status(response.headers())?;
        let mut body = response.into_body();
        let mut received = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(|e| format!("stream broke: {e}"))?;
            let _ = body.flow_control().release_capacity(chunk.len());
            received.extend_from_slice(&chunk);
        }
        match body.trailers().await.map_err(|e| format!("stream broke: {e}"))? {
            Some(trailers) => grpc_status(&trailers)?,
            None => return Err("the stream ended without grpc-status".to_owned()),
        }
        decode(received.freeze())
    }
}

/// Err with the call's status and message unless `grpc-status` is absent or 0.
fn grpc_status(headers: &HeaderMap) -> Result<(), String> {
    match headers.get("grpc-status").map(|v| v.to_str().unwrap_or("?")) {
        None | Some("0") => Ok(()),
        Some(code) => {
            let message = headers.get("grpc-message").and_then(|v| v.to_str().ok()).unwrap_or("");
            Err(format!("grpc-status {code}: {message}"))
        }
    }
}

/// The events of a response body: length-prefixed `AskResponse` messages, none compressed.
fn decode(mut received: Bytes) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    while !received.is_empty() {
        if received.len() < PREFIX {
            return Err(format!("{} bytes left, less than a message prefix", received.len()));
        }
        let compressed = received.get_u8();
        let len = received.get_u32() as usize;
        if compressed != 0 {
            return Err("a compressed message (none was asked for)".to_owned());
        }
        if received.len() < len {
            return Err(format!("a message of {len} bytes cut at {}", received.len()));
        }
        let message = AskResponse::decode(received.split_to(len)).map_err(|e| format!("decode: {e}"))?;
        if let Some(event) = message.event.and_then(|e| e.event) {
            events.push(event);
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use aap_proto::v1::{AnswerEvent, Completed};

    use super::*;

    fn framed(messages: &[AskResponse]) -> BytesMut {
        let mut out = BytesMut::new();
        for message in messages {
            out.put_u8(0);
            out.put_u32(message.encoded_len() as u32);
            message.encode(&mut out).expect("a BytesMut grows");
        }
        out
    }

    fn completed(prompt_id: i64) -> AskResponse {
        AskResponse {
            event: Some(AnswerEvent {
                event: Some(Event::Completed(Completed { prompt_id, answered: 1, ..Default::default() })),
            }),
        }
    }

    #[test]
    fn decodes_each_length_prefixed_message_in_order() {
        let events = decode(framed(&[completed(7), completed(8)]).freeze()).expect("two whole messages");
        let ids: Vec<i64> = events
            .iter()
            .map(|e| match e {
                Event::Completed(c) => c.prompt_id,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(ids, vec![7, 8]);
    }

    #[test]
    fn a_cut_message_or_prefix_is_an_error_not_a_shorter_answer() {
        let whole = framed(&[completed(7)]);
        let cut = whole.clone().freeze().slice(..whole.len() - 1);
        assert!(decode(cut).expect_err("refused").contains("cut"), "a message missing its last byte");
        let prefix = whole.freeze().slice(..3);
        assert!(decode(prefix).expect_err("refused").contains("prefix"), "three bytes of a prefix");
    }

    #[test]
    fn a_compressed_message_is_refused() {
        let mut message = framed(&[completed(7)]);
        message[0] = 1;
        assert!(decode(message.freeze()).expect_err("refused").contains("compressed"));
    }

    #[test]
    fn a_status_other_than_ok_is_the_error_with_its_message() {
        let mut headers = HeaderMap::new();
        assert_eq!(grpc_status(&headers), Ok(()), "no status yet (the response's headers)");
        headers.insert("grpc-status", HeaderValue::from_static("0"));
        assert_eq!(grpc_status(&headers), Ok(()));
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        headers.insert("grpc-message", HeaderValue::from_static("saturated"));
        assert_eq!(grpc_status(&headers), Err("grpc-status 8: saturated".to_owned()));
    }
}
