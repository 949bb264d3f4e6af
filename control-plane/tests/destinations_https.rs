//! Results delivered over `https`: a receiver this test runs with a certificate from a
//! certificate authority it makes gets the signed result when the server trusts that certificate
//! (`SSL_CERT_FILE` names it), and a server that does not trust it records failed attempts
//! instead of sending the result in the clear or to an unverified peer.

mod receiver_support;
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use receiver_support::{certificate, Receiver};
use serde_json::{json, Value};
use support::{stdio_function, Server, ServerOptions};

fn options(trusted: Option<&Path>) -> ServerOptions {
    let mut options = ServerOptions {
        args: [
            "--allow-private-destinations",
            "--destination-backoff-ms",
            "100",
            "--destination-max-attempts",
            "2",
        ]
        .map(str::to_owned)
        .to_vec(),
        ..ServerOptions::default()
    };
    if let Some(cert) = trusted {
        let cert = cert.to_str().unwrap().to_owned();
        options.env.push(("SSL_CERT_FILE".to_owned(), cert));
    }
    options
}

/// Deploys `hooked` with its success destination at `url`, invokes it and waits until
/// its delivery is final: the delivery.
async fn deliver_once(server: &Server, url: &str) -> Value {
    let destinations = json!({"destinations": {"on_success": {"url": url}}});
    server
        .deploy(stdio_function("hooked", "python3 echo.py", destinations))
        .await;
    let (status, body) = server.invoke("hooked", json!({"n": 1})).await;
    assert_eq!(status, 200, "{body}");
    let id = body["executionId"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let execution = server.execution(&id).await;
        let delivery = execution["deliveries"][0].clone();
        if matches!(delivery["state"].as_str(), Some("delivered" | "failed")) {
            return delivery;
        }
        assert!(Instant::now() < deadline, "never final: {execution}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_trusted_https_receiver_gets_the_result() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificate(dir.path());
    let receiver = Receiver::start_tls(&cert, &key).await;
    let server = Server::start_with(options(Some(&ca))).await;
    let url = format!("{}/done", receiver.url);
    let delivery = deliver_once(&server, &url).await;
    assert_eq!(delivery["state"], "delivered", "{delivery}");
    let received = receiver.received("done");
    assert_eq!(received.len(), 1);
    assert!(received[0].headers.contains_key("x-gantry-signature"));
    let body: Value = serde_json::from_slice(&received[0].body).unwrap();
    assert_eq!(body["status"], "success", "{body}");
}

#[tokio::test]
async fn an_untrusted_certificate_fails_the_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificate(dir.path());
    let receiver = Receiver::start_tls(&cert, &key).await;
    let server = Server::start_with(options(None)).await;
    let url = format!("{}/done", receiver.url);
    let delivery = deliver_once(&server, &url).await;
    assert_eq!(delivery["state"], "failed", "{delivery}");
    let attempts = delivery["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{delivery}");
    assert!(attempts.iter().all(|attempt| attempt["error"].is_string()));
    assert!(receiver.received("done").is_empty());
}
