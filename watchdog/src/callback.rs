//! Talking to the control plane: posting the completion report to
//! `{CALLBACK_URL}/{EXECUTION_ID}:complete` and fetching `PAYLOAD_URL`, both with the
//! callback token and bounded retries with backoff on connection errors and 5xx.

use std::hash::{BuildHasher, RandomState};
use std::time::Duration;

use bytes::Bytes;
use gantry_protocol::{completion_url, headers, CompletionReport, ErrorCode, FunctionError};
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, StatusCode, Uri};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::http_client::HttpClient;
use crate::outcome::preview;

/// Characters kept as they are in an execution id placed in a URL path.
const PATH_SAFE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// Largest payload fetched from PAYLOAD_URL.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

/// How often and how long a request to the control plane is retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait after the first failure; doubled after each further one.
    pub first_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
    /// Limit on each attempt.
    pub attempt_timeout: Duration,
}

/// The policy for callbacks and payload fetches: 6 attempts over about 3 s.
pub const RETRY: RetryPolicy = RetryPolicy {
    attempts: 6,
    first_backoff: Duration::from_millis(100),
    max_backoff: Duration::from_secs(2),
    attempt_timeout: Duration::from_secs(10),
};

impl RetryPolicy {
    /// The wait after failed attempt `attempt` (1-based): exponential, capped, with the
    /// upper half jittered so many watchdogs do not retry in lockstep.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let exponential = self
            .first_backoff
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(self.max_backoff);
        let half = exponential / 2;
        let jitter = RandomState::new().hash_one(attempt) % (half.as_micros() as u64 + 1);
        half + Duration::from_micros(jitter)
    }
}

/// A request to the control plane that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The URL built from the configuration is invalid.
    #[error("invalid URL {url:?}")]
    BadUrl {
        /// The URL.
        url: String,
    },
    /// The control plane answered with a non-retryable status.
    #[error("{url} answered {status}: {body}")]
    Rejected {
        /// The URL.
        url: String,
        /// Its answer.
        status: StatusCode,
        /// The start of the answer's body.
        body: String,
    },
    /// Every attempt failed with a connection error, a timeout or a 5xx.
    #[error("{url} failed {attempts} times; last: {last}")]
    Unreachable {
        /// The URL.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

/// Sends the request `build` makes, retrying per `policy`; returns a 2xx body.
async fn send_with_retry(
    client: &HttpClient,
    url: &Uri,
    policy: RetryPolicy,
    body_limit: usize,
    build: impl Fn() -> Request<Full<Bytes>>,
) -> Result<Bytes, ControlPlaneError> {
    let mut last = String::new();
    let mut attempts = 0;
    for attempt in 1..=policy.attempts {
        if attempt > 1 {
            if crate::supervise::stop_asked() {
                break;
            }
            tokio::time::sleep(policy.backoff(attempt - 1)).await;
        }
        attempts = attempt;
        let answer =
            tokio::time::timeout(policy.attempt_timeout, client.request(build(), body_limit)).await;
        match answer {
            Ok(Ok(reply)) if reply.status.is_success() => return Ok(reply.body),
            Ok(Ok(reply)) if reply.status.is_server_error() => {
                last = format!("{}: {}", reply.status, preview(&reply.body));
            }
            Ok(Ok(reply)) => {
                return Err(ControlPlaneError::Rejected {
                    url: url.to_string(),
                    status: reply.status,
                    body: preview(&reply.body),
                })
            }
            Ok(Err(err)) => last = err.to_string(),
            Err(_) => {
                last = format!(
                    "no answer within {} ms",
                    crate::outcome::millis(policy.attempt_timeout)
                )
            }
        }
    }
    Err(ControlPlaneError::Unreachable {
        url: url.to_string(),
        attempts,
        last,
    })
}

/// Where and how to report one execution. Its `Debug` output leaves out the token.
#[derive(Clone, Copy)]
pub struct Callback<'a> {
    /// `CALLBACK_URL` (or the envelope's `callback_url`).
    pub base_url: &'a str,
    /// The execution.
    pub execution_id: &'a str,
    /// Bearer token.
    pub token: Option<&'a str>,
    /// Forwarded as `X-Trace-Id`.
    pub trace_id: Option<&'a str>,
}

impl std::fmt::Debug for Callback<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callback")
            .field("base_url", &self.base_url)
            .field("execution_id", &self.execution_id)
            .field("token", &self.token.map(|_| "<redacted>"))
            .field("trace_id", &self.trace_id)
            .finish()
    }
}

/// Posts `report` to `{base_url}/{execution_id}:complete`.
pub async fn deliver(
    client: &HttpClient,
    callback: Callback<'_>,
    report: &CompletionReport,
    policy: RetryPolicy,
) -> Result<(), ControlPlaneError> {
    let id = utf8_percent_encode(callback.execution_id, PATH_SAFE).to_string();
    let url_text = completion_url(callback.base_url, &id);
    let url: Uri = url_text
        .parse()
        .map_err(|_| ControlPlaneError::BadUrl { url: url_text })?;
    let body = Bytes::from(serde_json::to_vec(report).expect("a report always serializes"));
    send_with_retry(client, &url, policy, 64 * 1024, || {
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(url.clone())
            .header(CONTENT_TYPE, "application/json");
        if let Some(token) = callback.token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(trace) = callback.trace_id {
            request = request.header(headers::TRACE_ID, trace);
        }
        request
            .body(Full::new(body.clone()))
            .expect("request parts are valid")
    })
    .await
    .map(drop)
}

/// GETs the input from `PAYLOAD_URL`; any failure is INVALID_INPUT.
pub async fn fetch_payload(
    client: &HttpClient,
    url: &Uri,
    token: Option<&str>,
    policy: RetryPolicy,
) -> Result<Bytes, FunctionError> {
    let body = send_with_retry(client, url, policy, MAX_PAYLOAD_BYTES, || {
        let mut request = Request::builder().method(Method::GET).uri(url.clone());
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        request
            .body(Full::default())
            .expect("request parts are valid")
    })
    .await
    .map_err(|err| {
        FunctionError::new(
            ErrorCode::InvalidInput,
            format!("could not fetch the payload from PAYLOAD_URL: {err}"),
        )
    })?;
    check_payload(body, "PAYLOAD_URL")
}

/// Accepts `payload` if it is JSON (empty counts as `null`); else INVALID_INPUT.
pub fn check_payload(payload: Bytes, source: &str) -> Result<Bytes, FunctionError> {
    if payload.trim_ascii().is_empty() {
        return Ok(Bytes::from_static(b"null"));
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(&payload) {
        Ok(_) => Ok(payload),
        Err(err) => Err(FunctionError::new(
            ErrorCode::InvalidInput,
            format!(
                "the payload from {source} is not JSON ({err}): {}",
                preview(&payload)
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_then_caps_with_bounded_jitter() {
        for attempt in 1..=10 {
            let full = RETRY
                .first_backoff
                .saturating_mul(1 << (attempt - 1))
                .min(RETRY.max_backoff);
            let wait = RETRY.backoff(attempt);
            assert!(
                wait >= full / 2 && wait <= full,
                "attempt {attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn payload_must_be_json_and_empty_is_null() {
        assert_eq!(
            check_payload(Bytes::from_static(b" "), "x").unwrap(),
            "null"
        );
        assert_eq!(
            check_payload(Bytes::from_static(b"{\"a\":1}"), "x").unwrap(),
            "{\"a\":1}"
        );
        let err = check_payload(Bytes::from_static(b"{oops"), "INVOCATION_PAYLOAD").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidInput);
        assert!(
            err.message.contains("INVOCATION_PAYLOAD"),
            "{}",
            err.message
        );
    }

    #[test]
    fn execution_ids_are_escaped_in_the_path() {
        let id = utf8_percent_encode("a b/c", PATH_SAFE).to_string();
        assert_eq!(id, "a%20b%2Fc");
        let id = utf8_percent_encode("0193-ab_c.d~", PATH_SAFE).to_string();
        assert_eq!(id, "0193-ab_c.d~");
    }
}
