//! API helpers for tests: error fields, callback tokens, listing, logs, metrics, SSE.

#![allow(dead_code)]

use super::*;

/// The `error.code` of an API error body (`""` if there is none).
pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// The `error.message` of an API error body (`""` if there is none).
pub fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// The CALLBACK_TOKEN of running execution `id`, read from its watchdog's environment
/// (the watchdog withholds it from the function, so only the test can get it this way).
pub fn callback_token(id: &str) -> Option<String> {
    let prefix = "CALLBACK_TOKEN=";
    processes_with_env(&format!("EXECUTION_ID={id}"))
        .into_iter()
        .find_map(|(pid, _)| {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            environ.split(|b| *b == 0).find_map(|var| {
                let var = String::from_utf8_lossy(var);
                var.strip_prefix(prefix).map(str::to_owned)
            })
        })
}

impl Server {
    /// `POST /v1/functions` without asserting the outcome.
    pub async fn try_deploy(&self, manifest: Value) -> (StatusCode, Value) {
        let (status, _, body) = self
            .call(self.request(Method::POST, "/v1/functions").json(&manifest))
            .await;
        (status, body)
    }

    /// `GET /v1/executions` with `query`.
    pub async fn list_executions(&self, query: &[(&str, &str)]) -> (StatusCode, Value) {
        let (status, _, body) = self
            .call(self.request(Method::GET, "/v1/executions").query(query))
            .await;
        (status, body)
    }

    /// The stored log lines of execution `id` (`GET /v1/executions/{id}/logs`).
    pub async fn log_lines(&self, id: &str) -> Vec<Value> {
        let (status, _, body) = self
            .call(self.request(Method::GET, &format!("/v1/executions/{id}/logs")))
            .await;
        assert_eq!(status, StatusCode::OK, "get logs failed: {body}");
        body["lines"].as_array().expect("lines").clone()
    }

    /// The text of `GET /metrics`.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .request(Method::GET, "/metrics")
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.expect("read the metrics")
    }

    /// Opens `GET /v1/executions/{id}/logs?follow=true` and asserts an event stream.
    pub async fn follow_logs(&self, id: &str) -> SseStream {
        let response = self
            .request(
                Method::GET,
                &format!("/v1/executions/{id}/logs?follow=true"),
            )
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "content type {content_type}"
        );
        SseStream {
            response,
            buffer: String::new(),
        }
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    /// `event:` (`message` when absent).
    pub event: String,
    /// `data:`, parsed as JSON (a string if it is not JSON).
    pub data: Value,
    /// `id:`, if any.
    pub id: Option<String>,
}

/// A server-sent event stream being read.
pub struct SseStream {
    response: reqwest::Response,
    buffer: String,
}

impl SseStream {
    /// The next event (comments and keep-alives skipped); `None` when the stream ends.
    /// Fails if nothing arrives within `within`.
    pub async fn next_event(&mut self, within: Duration) -> Option<SseEvent> {
        let deadline = Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_sse_block(&block) {
                    return Some(event);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no event within {within:?}; unread: {:?}", self.buffer))
                .expect("read the event stream");
            match chunk {
                Some(bytes) => self
                    .buffer
                    .push_str(&String::from_utf8_lossy(&bytes).replace("\r\n", "\n")),
                None => return None,
            }
        }
    }

    /// Every event until the stream ends (at most `within` in all).
    pub async fn collect(mut self, within: Duration) -> Vec<SseEvent> {
        let deadline = Instant::now() + within;
        let mut events = Vec::new();
        while let Some(event) = self
            .next_event(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            events.push(event);
        }
        events
    }
}

fn parse_sse_block(block: &str) -> Option<SseEvent> {
    let mut event = None;
    let mut data: Vec<&str> = Vec::new();
    let mut id = None;
    for line in block.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => data.push(value),
            "id" => id = Some(value.to_owned()),
            _ => {}
        }
    }
    if event.is_none() && data.is_empty() {
        return None;
    }
    let data = data.join("\n");
    Some(SseEvent {
        event: event.unwrap_or_else(|| "message".into()),
        data: serde_json::from_str(&data).unwrap_or(Value::String(data)),
        id,
    })
}

/// Asserts a finished execution's `status` and `error.code`; answers its error message.
pub fn assert_error<'a>(execution: &'a Value, status: &str, code: &str) -> &'a str {
    assert_eq!(execution["status"], status, "{execution}");
    assert_eq!(execution["error"]["code"], code, "{execution}");
    execution["error"]["message"].as_str().unwrap_or_default()
}

impl Server {
    /// `GET path` without any token (health, readiness, metrics).
    pub async fn get_open(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("the server answers")
    }
}
