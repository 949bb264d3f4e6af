//! An HTTP receiver on 127.0.0.1 for the destinations and span export tests: it records
//! every POST and answers the statuses a test scripts per path (200 by default); plain or
//! over TLS with a certificate from a certificate authority of the test's own.

// Each test binary that includes this uses part of it.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{self as fs, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// What the receiver got, and the statuses it answers next per path (200 when none).
#[derive(Default)]
struct Inbox {
    received: Mutex<Vec<Received>>,
    answers: Mutex<HashMap<String, VecDeque<u16>>>,
    always: Mutex<HashMap<String, u16>>,
}

/// An HTTP receiver on 127.0.0.1.
pub struct Receiver {
    pub url: String,
    inbox: Arc<Inbox>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        Receiver::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(address: SocketAddr) -> Receiver {
        let inbox = Arc::new(Inbox::default());
        let app = app(&inbox);
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver { url, inbox, task }
    }

    /// A receiver on 127.0.0.1 over TLS with the certificate chain and key in the PEM
    /// files `cert` and `key`; its URL names `localhost`, the name the certificate is for.
    pub async fn start_tls(cert: &fs::Path, key: &fs::Path) -> Receiver {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let inbox = Arc::new(Inbox::default());
        let app = app(&inbox);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "https://localhost:{}",
            listener.local_addr().unwrap().port()
        );
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate ends here.
                    let Ok(tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        let mut app = app.clone();
                        tower_service::Service::call(&mut app, request.map(axum::body::Body::new))
                    });
                    let io = hyper_util::rt::TokioIo::new(tls);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                });
            }
        });
        Receiver { url, inbox, task }
    }

    /// The next answers of `path`.
    pub fn answer(&self, path: &str, statuses: &[u16]) {
        let mut answers = self.inbox.answers.lock().unwrap();
        answers.insert(path.to_owned(), statuses.iter().copied().collect());
    }

    /// `path` always answers `status`.
    pub fn always(&self, path: &str, status: u16) {
        self.inbox
            .always
            .lock()
            .unwrap()
            .insert(path.to_owned(), status);
    }

    pub fn received(&self, path: &str) -> Vec<Received> {
        let received = self.inbox.received.lock().unwrap();
        received
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` got `count` requests.
    pub async fn wait_for(&self, path: &str, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.received(path);
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{path} got {} of {count}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs openssl with `args` in `dir`.
fn openssl(dir: &fs::Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (install it) signs the receiver's certificate");
    assert!(
        output.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A certificate authority (`ca.pem`) and a certificate for `localhost` it signed
/// (`cert.pem`, key `key.pem`), in `dir`: the CA's file and the certificate's.
pub fn certificate(dir: &fs::Path) -> (PathBuf, PathBuf, PathBuf) {
    let rsa = ["-newkey", "rsa:2048", "-nodes"];
    openssl(
        dir,
        &[
            &["req", "-x509"][..],
            &rsa,
            &[
                "-days",
                "1",
                "-subj",
                "/CN=gantry-test-ca",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        ]
        .concat(),
    );
    openssl(
        dir,
        &[
            &["req"][..],
            &rsa,
            &[
                "-subj",
                "/CN=localhost",
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "leaf.ext",
            "-out",
            "cert.pem",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

/// Records every POST into `inbox` and answers as it is scripted.
fn app(inbox: &Arc<Inbox>) -> Router {
    Router::new()
        .route("/{*path}", post(receive))
        .with_state(inbox.clone())
}

async fn receive(
    State(inbox): State<Arc<Inbox>>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    inbox.received.lock().unwrap().push(Received {
        path: path.clone(),
        headers,
        body,
    });
    let next = inbox
        .answers
        .lock()
        .unwrap()
        .get_mut(&path)
        .and_then(VecDeque::pop_front);
    let status = next
        .or_else(|| inbox.always.lock().unwrap().get(&path).copied())
        .unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}
