//! A real control-plane stand-in on 127.0.0.1:0: records every callback it receives,
//! answers with scripted statuses, and serves payloads for PAYLOAD_URL behind a token.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tokio::sync::Notify;

/// One callback as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub authorization: Option<String>,
    pub trace_id: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<u16>>,
    payloads: Mutex<HashMap<String, (String, Bytes)>>,
    payload_requests: Mutex<Vec<Option<String>>>,
    arrived: Notify,
}

pub struct CallbackServer {
    /// Base callback URL: `http://127.0.0.1:PORT/v1/internal/executions`.
    pub url: String,
    origin: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn complete(
    State(shared): State<Arc<Shared>>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let body = serde_json::from_slice(&body)
        .unwrap_or(Value::String(String::from_utf8_lossy(&body).into()));
    shared.received.lock().unwrap().push(Received {
        path: format!("/v1/internal/executions/{rest}"),
        authorization: header(&headers, "authorization"),
        trace_id: header(&headers, "x-trace-id"),
        body,
    });
    shared.arrived.notify_waiters();
    let status = shared.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

async fn payload(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Bytes) {
    let authorization = header(&headers, "authorization");
    shared
        .payload_requests
        .lock()
        .unwrap()
        .push(authorization.clone());
    let payloads = shared.payloads.lock().unwrap();
    match payloads.get(&id) {
        Some((token, body)) if authorization.as_deref() == Some(&format!("Bearer {token}")) => {
            (StatusCode::OK, body.clone())
        }
        Some(_) => (
            StatusCode::UNAUTHORIZED,
            Bytes::from_static(b"{\"error\":\"bad token\"}"),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Bytes::from_static(b"{\"error\":\"no such payload\"}"),
        ),
    }
}

impl CallbackServer {
    pub async fn start() -> CallbackServer {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/v1/internal/executions/{*rest}", post(complete))
            .route("/payloads/{id}", get(payload))
            .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        CallbackServer {
            url: format!("{origin}/v1/internal/executions"),
            origin,
            shared,
            server,
        }
    }

    /// The next callbacks get these statuses, in order; afterwards 200.
    pub fn answer_next(&self, statuses: &[u16]) {
        self.shared.script.lock().unwrap().extend(statuses);
    }

    /// Serves `body` at a PAYLOAD_URL that needs `token`; returns the URL.
    pub fn serve_payload(&self, id: &str, token: &str, body: impl Into<Bytes>) -> String {
        self.shared
            .payloads
            .lock()
            .unwrap()
            .insert(id.to_owned(), (token.to_owned(), body.into()));
        format!("{}/payloads/{id}", self.origin)
    }

    /// Authorization headers of the payload requests so far.
    pub fn payload_requests(&self) -> Vec<Option<String>> {
        self.shared.payload_requests.lock().unwrap().clone()
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until at least `count` callbacks arrived.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        let waited = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                let arrived = self.shared.arrived.notified();
                if self.received().len() >= count {
                    return;
                }
                arrived.await;
            }
        })
        .await;
        let received = self.received();
        assert!(
            waited.is_ok(),
            "expected {count} callbacks, got {received:?}"
        );
        received
    }
}

impl Drop for CallbackServer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A URL on which nothing listens (connection refused).
pub fn refusing_url() -> String {
    format!(
        "http://127.0.0.1:{}/v1/internal/executions",
        super::free_port()
    )
}
