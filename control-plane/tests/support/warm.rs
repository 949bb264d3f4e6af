//! Warm-pool helpers: a warm function manifest, `:invoke` with its `X-Cold-Start`
//! header, and polling a function's `pool`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::Server;

/// An HTTP-mode warm function running `tests/fixtures/warm_http.py`, with `warm` and
/// `extra` merged into the manifest.
pub fn warm_function(name: &str, warm: Value, extra: Value) -> Value {
    let mut manifest = json!({
        "name": name,
        "mode": "HTTP",
        "command": "python3 warm_http.py",
        "working_dir": format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR")),
        "warm": warm,
    });
    if let (Some(base), Some(extra)) = (manifest.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            base.insert(key.clone(), value.clone());
        }
    }
    manifest
}

/// `:invoke` answering the status, the answer's `header` and the body.
pub async fn invoke_header(
    server: &Server,
    name: &str,
    input: Value,
    header: &str,
) -> (StatusCode, Option<String>, Value) {
    let request = server
        .request(Method::POST, &format!("/v1/functions/{name}:invoke"))
        .json(&input);
    let (status, headers, body) = server.call(request).await;
    let value = headers
        .get(header)
        .map(|value| value.to_str().unwrap().to_owned());
    (status, value, body)
}

/// `:invoke` answering the status, the `X-Cold-Start` header and the body.
pub async fn invoke_full(
    server: &Server,
    name: &str,
    input: Value,
) -> (StatusCode, Option<String>, Value) {
    invoke_header(server, name, input, "x-cold-start").await
}

/// Sends `body` (if any) to `path` and answers status and JSON.
pub async fn send(
    server: &Server,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = server.request(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let (status, _, body) = server.call(request).await;
    (status, body)
}

/// The `pool` of `GET /v1/functions/{name}`.
pub async fn pool(server: &Server, name: &str) -> Value {
    let (status, body) = send(server, Method::GET, &format!("/v1/functions/{name}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["pool"].clone()
}

/// Polls the pool until `check` holds (within 10 s), answering it.
pub async fn wait_pool(
    server: &Server,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pool = pool(server, name).await;
        if check(&pool) {
            return pool;
        }
        assert!(
            Instant::now() < deadline,
            "the pool never got {what}: {pool}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
