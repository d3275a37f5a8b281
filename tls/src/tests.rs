use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::testing::TestCa;
use crate::{ClientTls, ServerTls, TlsError};

struct Pki {
    _dir: tempfile::TempDir,
    ca: TestCa,
    other: TestCa,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("temp dir");
    let ca = TestCa::new(dir.path(), "main");
    let other = TestCa::new(dir.path(), "other");
    Pki { _dir: dir, ca, other }
}

fn client(ca: &TestCa, identity: Option<&crate::testing::Issued>) -> ClientTls {
    ClientTls {
        ca_cert: Some(ca.cert.clone()),
        client_cert: identity.map(|i| i.cert.clone()),
        client_key: identity.map(|i| i.key.clone()),
    }
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_naming_both_files() {
    let pki = pki();
    let (server, stranger) = (pki.ca.server("server"), pki.ca.server("stranger"));
    let tls = ServerTls { cert: server.cert.clone(), key: stranger.key.clone(), client_ca: None };
    let error = tls.load().expect_err("mismatched key");
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&*server.cert.to_string_lossy()), "{message}");
    assert!(message.contains(&*stranger.key.to_string_lossy()), "{message}");

    let bot = pki.ca.client("bot");
    let half = ClientTls { client_key: Some(stranger.key), ..client(&pki.ca, Some(&bot)) };
    assert!(matches!(half.rustls_config(), Err(TlsError::KeyMismatch { .. })));
}

#[test]
fn missing_and_misplaced_files_are_refused_saying_which_and_why() {
    let pki = pki();
    let server = pki.ca.server("server");
    let missing = pki.ca.cert.with_file_name("nowhere.pem");

    let tls = ServerTls { cert: missing.clone(), key: server.key.clone(), client_ca: None };
    let error = tls.load().expect_err("missing certificate");
    assert!(matches!(&error, TlsError::Read { what: "certificate", .. }), "{error:?}");
    assert!(error.to_string().contains("nowhere.pem"), "{error}");

    // The key where the certificate belongs, and the other way round.
    let swapped = ServerTls { cert: server.key.clone(), key: server.cert.clone(), client_ca: None };
    assert!(matches!(swapped.load(), Err(TlsError::NoCertificate { .. })));
    let no_key = ServerTls { cert: server.cert.clone(), key: server.cert.clone(), client_ca: None };
    assert!(matches!(no_key.load(), Err(TlsError::NoKey { .. })));
    let bad_ca = ServerTls {
        client_ca: Some(server.key.clone()),
        ..ServerTls { cert: server.cert, key: server.key, client_ca: None }
    };
    assert!(matches!(bad_ca.load(), Err(TlsError::NoCertificate { what: "client CA bundle", .. })));

    let no_ca = ClientTls { ca_cert: Some(missing), ..ClientTls::default() };
    assert!(matches!(no_ca.rustls_config(), Err(TlsError::Read { what: "CA bundle", .. })));
}

#[test]
fn a_client_certificate_needs_its_key() {
    let pki = pki();
    let bot = pki.ca.client("bot");
    let half = ClientTls { client_key: None, ..client(&pki.ca, Some(&bot)) };
    assert!(matches!(half.rustls_config(), Err(TlsError::HalfIdentity)));
}

#[test]
fn tls_files_for_a_plain_url_are_refused_and_https_gets_a_config() {
    let pki = pki();
    let tls = client(&pki.ca, None);
    assert!(matches!(tls.for_url("http://platform:8000"), Err(TlsError::PlainUrl { .. })));
    let endpoint = tonic::transport::Endpoint::from_static("http://platform:50051");
    assert!(matches!(tls.endpoint(endpoint), Err(TlsError::PlainUrl { .. })));
    assert!(tls.for_url("HTTPS://platform:8000").expect("https").is_some());
    assert!(ClientTls::default().for_url("http://platform:8000").expect("plain").is_none());
    let endpoint = tonic::transport::Endpoint::from_static("https://platform:50051");
    assert!(tls.endpoint(endpoint).is_ok());
}

/// Serves one HTTP route over [`crate::TlsListener`] with client certificates required.
async fn mutual_http_server(pki: &Pki) -> std::net::SocketAddr {
    let server = pki.ca.server("server");
    let tls =
        ServerTls { cert: server.cert, key: server.key, client_ca: Some(pki.ca.cert.clone()) }.load().expect("load");
    assert!(tls.mutual());
    let listener = tls.listener(TcpListener::bind("127.0.0.1:0").await.expect("bind"));
    let addr = axum::serve::Listener::local_addr(&listener).expect("addr");
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello over tls" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A GET / over TLS with `tls`; the response, or the error of the handshake or exchange.
async fn get(addr: std::net::SocketAddr, tls: &ClientTls) -> std::io::Result<String> {
    let config = tls.rustls_config().expect("client config");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut stream = connector.connect(name, tcp).await?;
    stream.write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response)
}

#[tokio::test]
async fn the_http_listener_serves_clients_with_a_certificate_and_refuses_the_rest() {
    let pki = pki();
    let addr = mutual_http_server(&pki).await;
    let bot = pki.ca.client("bot");

    let response = get(addr, &client(&pki.ca, Some(&bot))).await.expect("served");
    assert!(response.starts_with("HTTP/1.1 200") && response.ends_with("hello over tls"), "{response}");

    // TLS 1.3: the client finishes first and learns of the refusal when it reads.
    let refused = get(addr, &client(&pki.ca, None)).await;
    assert!(refused.as_ref().map_or(true, String::is_empty), "no client certificate: {refused:?}");

    let stranger = pki.other.client("stranger");
    let refused = get(addr, &client(&pki.ca, Some(&stranger))).await;
    assert!(refused.as_ref().map_or(true, String::is_empty), "a certificate of another CA: {refused:?}");

    let error = get(addr, &client(&pki.other, Some(&bot))).await.expect_err("server of an untrusted CA");
    assert!(error.to_string().contains("UnknownIssuer"), "{error}");

    // Plain text on the TLS port: the handshake fails and the connection is dropped unanswered.
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(b"GET / HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").await.expect("write");
    let mut response = Vec::new();
    let _ = tcp.read_to_end(&mut response).await;
    assert!(!String::from_utf8_lossy(&response).contains("hello"), "{response:?}");

    // The listener keeps serving after the refusals.
    assert!(get(addr, &client(&pki.ca, Some(&bot))).await.expect("served again").ends_with("hello over tls"));
}
