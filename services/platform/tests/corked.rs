//! A corked connection under a real h2 server over TCP: the flush it holds back after a DATA
//! frame is always followed by the one that writes it (aap_platform::corked), so a response left
//! open after its message still reaches the client. If an h2 upgrade stopped flushing twice,
//! these streams would stall and the tests fail.

use std::time::Duration;

use aap_platform::corked::Corked;
use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};

/// Serves every request with `size` bytes of data, then keeps the stream open (no end, no
/// trailers), on a corked connection.
async fn serve_one_connection(listener: TcpListener, size: usize) {
    let (tcp, _) = listener.accept().await.expect("accept");
    tcp.set_nodelay(true).expect("nodelay");
    let mut connection = h2::server::handshake(Corked::new(tcp)).await.expect("server handshake");
    while let Some(request) = connection.accept().await {
        let (_request, mut respond) = request.expect("request");
        let mut body = respond.send_response(http::Response::new(()), false).expect("response");
        body.send_data(Bytes::from(vec![b'x'; size]), false).expect("data");
        // Held open: nothing more is sent on this stream.
        tokio::spawn(async move {
            let _open = body;
            std::future::pending::<()>().await
        });
    }
}

/// Asks once and reads until `size` bytes came, failing after 30 s without them.
async fn received(size: usize) -> usize {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(serve_one_connection(listener, size));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(tcp).await.expect("client handshake");
    tokio::spawn(connection);
    let mut got = 0;
    let exchange = async {
        let mut client = client.ready().await.expect("ready");
        let request = http::Request::get(format!("http://{addr}/")).body(()).expect("request");
        let (response, _) = client.send_request(request, true).expect("send");
        let mut body = response.await.expect("response").into_body();
        while got < size {
            let chunk = body.data().await.expect("the stream is open").expect("data");
            got += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .unwrap_or_else(|_| panic!("{got} of {size} bytes arrived in 30 s: the rest was held back and never written"));
    got
}

#[tokio::test]
async fn a_message_written_from_where_it_is_reaches_the_client_of_a_stream_left_open() {
    // More than h2 copies into its buffer (256 bytes): written from where it is, then held.
    assert_eq!(received(1000).await, 1000);
}

#[tokio::test]
async fn a_message_of_many_frames_reaches_the_client_of_a_stream_left_open() {
    // Seven 16 KiB frames and flow control's window updates in between: an odd frame is last.
    assert_eq!(received(100_000).await, 100_000);
}

#[tokio::test]
async fn a_message_h2_copies_reaches_the_client_of_a_stream_left_open() {
    assert_eq!(received(100).await, 100);
}
