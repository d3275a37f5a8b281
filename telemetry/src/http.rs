//! The accept loop of the HTTP/1 servers a client on the network reaches (the metrics
//! endpoint, the seed's HTTP API and the console), with bounds on a slow client. `axum::serve`
//! sets no timer, so a connection that sent half its headers, or a body shorter than its
//! `Content-Length`, was held open for good (a hostile probe held them 150 s and more, each a
//! socket and a task): here a request's headers must arrive within [`HEADER_READ_TIMEOUT`]
//! and, where the server sets one, a request must be answered (its body read) within a bound.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::response::IntoResponse as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use tower::ServiceExt as _;

/// Longest a client may take to send a request's headers (HTTP/1), the first request's or,
/// on a kept-alive connection, the next one's.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown`, then waits for the open connections to end.
/// Each request carries its peer as `ConnectInfo<SocketAddr>`. With `request_timeout`, a
/// request whose response is not ready within it (a body that stops coming) is answered 408
/// and its connection closed.
pub async fn serve<L>(
    listener: L,
    router: axum::Router,
    request_timeout: Option<Duration>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    serve_with(listener, router, request_timeout, HEADER_READ_TIMEOUT, shutdown).await
}

pub(crate) async fn serve_with<L>(
    mut listener: L,
    router: axum::Router,
    request_timeout: Option<Duration>,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    // HTTP/1 only, as these servers speak: an HTTP/2-or-1 reader would first wait, with no
    // bound, for the bytes that tell them apart.
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: http::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let response = router.clone().oneshot(request.map(axum::body::Body::new));
            async move {
                let Some(limit) = request_timeout else { return response.await };
                match tokio::time::timeout(limit, response).await {
                    Ok(response) => response,
                    Err(_) => Ok::<_, Infallible>(
                        (
                            http::StatusCode::REQUEST_TIMEOUT,
                            [(http::header::CONNECTION, "close")],
                            axum::Json(serde_json::json!({
                                "detail": format!("the request was not complete within {} s", limit.as_secs())
                            })),
                        )
                            .into_response(),
                    ),
                }
            }
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, %peer, "an HTTP connection ended");
            }
        });
    }
    // No more connections come; those open end as their requests do.
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    async fn server(request_timeout: Option<Duration>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let router = axum::Router::new().route(
            "/echo",
            axum::routing::post(|ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>, body: String| async move {
                format!("{} from {}", body.len(), peer.ip())
            }),
        );
        tokio::spawn(serve_with(listener, router, request_timeout, Duration::from_millis(300), std::future::pending()));
        addr
    }

    /// What the server sends before it closes the connection (empty: closed without a word).
    async fn read_to_close(tcp: &mut TcpStream) -> String {
        let mut reply = Vec::new();
        // Bounded, so a server that never closes fails the test instead of hanging it.
        tokio::time::timeout(Duration::from_secs(20), tcp.read_to_end(&mut reply))
            .await
            .expect("the server closed the connection")
            .expect("read");
        String::from_utf8_lossy(&reply).into_owned()
    }

    #[tokio::test]
    async fn a_whole_request_is_answered_with_its_peer() {
        let addr = server(Some(Duration::from_secs(5))).await;
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello")
            .await
            .expect("write");
        let reply = read_to_close(&mut tcp).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("5 from 127.0.0.1"), "{reply}");
    }

    #[tokio::test]
    async fn half_sent_headers_and_an_idle_connection_are_closed() {
        let addr = server(None).await;
        let mut half = TcpStream::connect(addr).await.expect("connect");
        half.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\n").await.expect("write");
        let reply = read_to_close(&mut half).await;
        assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 408"), "{reply}");
        let mut idle = TcpStream::connect(addr).await.expect("connect");
        let reply = read_to_close(&mut idle).await;
        assert!(reply.is_empty() || reply.starts_with("HTTP/1.1 408"), "{reply}");
    }

    #[tokio::test]
    async fn a_body_shorter_than_its_length_is_answered_408() {
        let addr = server(Some(Duration::from_millis(300))).await;
        let mut tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n45 bytes of 1000")
            .await
            .expect("write");
        let reply = read_to_close(&mut tcp).await;
        assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
        assert!(reply.contains("not complete within"), "{reply}");
    }
}
