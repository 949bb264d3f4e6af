//! The WARM HTTP server: `GET /health` and `POST /invoke` over HTTP/1.1 keep-alive.
//! On shutdown it stops accepting, lets in-flight requests finish, and returns.
//!
//! `/invoke` answers the control plane only: it needs `Authorization: Bearer
//! <WARM_TOKEN>` when WARM_TOKEN is set, a request cannot raise the timeout past
//! TIMEOUT_MS, and the only callback target is CALLBACK_URL.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gantry_protocol::{headers, ApiErrorBody, InvokeEnvelope};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::lifecycle::Refusal;
use super::runtime::RuntimeState;
use super::Warm;
use crate::callback::{self, Callback};
use crate::config::{is_header_text, Secret};
use crate::diag;
use crate::http_client::{read_body, BodyError};
use crate::modes::Invocation;

/// Largest `/invoke` request body accepted.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Accepts connections until shutdown starts, then waits for open requests to finish.
pub async fn run(listener: TcpListener, warm: Arc<Warm>) {
    let shutdown = warm.lifecycle.token();
    let graceful = GracefulShutdown::new();
    let http = http1::Builder::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let warm = Arc::clone(&warm);
                    let service = service_fn(move |request| handle(Arc::clone(&warm), request));
                    let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
                Err(err) => {
                    diag!("accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = shutdown.cancelled() => break,
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

type HttpResponse = Response<Full<Bytes>>;

async fn handle(warm: Arc<Warm>, request: Request<Incoming>) -> Result<HttpResponse, Infallible> {
    let response = match (request.method(), request.uri().path()) {
        (&Method::POST, "/invoke") => invoke(&warm, request).await,
        (&Method::GET, "/health") => health(&warm),
        (_, "/invoke" | "/health") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "use GET /health and POST /invoke",
        ),
        (_, path) => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("no route {path}; the watchdog serves GET /health and POST /invoke"),
        ),
    };
    Ok(response)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    let body = serde_json::to_vec(&ApiErrorBody::new(code, message)).expect("serializes");
    json_response(status, body)
}

/// Body of `GET /health`.
#[derive(serde::Serialize)]
struct Health {
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    in_flight: usize,
    completed: u64,
}

fn health(warm: &Warm) -> HttpResponse {
    let lifecycle = &warm.lifecycle;
    let (status, state, detail) = if lifecycle.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            lifecycle.reason(),
        )
    } else {
        match warm.runtime.as_ref().map(|runtime| runtime.state()) {
            None | Some(RuntimeState::Ready(_)) => (StatusCode::OK, "ok", None),
            Some(RuntimeState::Starting) => (StatusCode::SERVICE_UNAVAILABLE, "starting", None),
            Some(RuntimeState::Failed(error)) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "failed",
                Some(error.to_string()),
            ),
            Some(RuntimeState::Stopped) => (StatusCode::SERVICE_UNAVAILABLE, "stopped", None),
        }
    };
    let body = Health {
        status: state,
        detail,
        in_flight: lifecycle.in_flight(),
        completed: lifecycle.completed(),
    };
    json_response(status, serde_json::to_vec(&body).expect("serializes"))
}

/// The 401 of a request without the right token: it says nothing about the instance.
fn unauthorized() -> HttpResponse {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "UNAUTHORIZED",
        "POST /invoke needs Authorization: Bearer <WARM_TOKEN>",
    );
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Whether `headers` carry `Authorization: Bearer <token>`; the token is compared in
/// constant time.
fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(value) = headers.get("authorization") else {
        return false;
    };
    let value = value.as_bytes();
    match value.split_at_checked(7) {
        Some((scheme, presented)) if scheme.eq_ignore_ascii_case(b"bearer ") => {
            constant_time_eq(presented.trim_ascii(), token.expose().as_bytes())
        }
        _ => false,
    }
}

/// `presented == expected`, in a time that depends on their lengths only, not on where
/// they first differ.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut difference = presented.len() ^ expected.len();
    for (at, byte) in expected.iter().enumerate() {
        difference |= usize::from(presented.get(at).copied().unwrap_or(0) ^ byte);
    }
    std::hint::black_box(difference) == 0
}

async fn invoke(warm: &Warm, request: Request<Incoming>) -> HttpResponse {
    // First of all: a caller without the token reads nothing, takes no capacity and
    // counts as no invocation.
    if let Some(token) = &warm.config.warm_token {
        if !authorized(request.headers(), token) {
            return unauthorized();
        }
    }
    let draining = || {
        let reason = warm.lifecycle.reason().unwrap_or_default();
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SHUTTING_DOWN",
            &format!("the watchdog is shutting down ({reason}) and takes no new invocations"),
        )
    };
    if warm.lifecycle.is_draining() {
        return draining();
    }
    let Ok(_permit) = Arc::clone(&warm.permits).try_acquire_owned() else {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "TOO_MANY_REQUESTS",
            &format!(
                "{} invocation(s) already in flight, the WARM_CONCURRENCY limit",
                warm.config.warm.concurrency
            ),
        );
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    };
    let _in_flight = match warm.lifecycle.begin() {
        Ok(guard) => guard,
        Err(Refusal::Draining) => return draining(),
        Err(Refusal::Exhausted) => {
            let max = warm.config.warm.max_invocations.unwrap_or_default();
            let message = format!(
                "this instance took its WARM_MAX_INVOCATIONS ({max}) invocations and stops after them"
            );
            return error(StatusCode::SERVICE_UNAVAILABLE, "SHUTTING_DOWN", &message);
        }
    };
    let (parts, body) = request.into_parts();
    let body = match read_body(body, MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(BodyError::TooLarge(limit)) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                &format!("the request body exceeds {limit} bytes"),
            )
        }
        Err(err) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &err.to_string()),
    };
    let callback_url = warm.config.callback_url.as_ref().map(Uri::to_string);
    let fixed = Fixed {
        timeout: warm.config.timeout,
        callback_url: callback_url.as_deref(),
    };
    let request = match parse_invoke(&parts.headers, body, &fixed) {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message),
    };
    let report = warm.run(&request.invocation).await.into_report();
    // The call's marked lines go out before its answer.
    crate::logs::flush().await;
    let body = serde_json::to_vec(&report).expect("a report always serializes");
    if let (true, Some(base_url)) = (request.callback, callback_url) {
        let client = warm.client.clone();
        let token = request
            .callback_token
            .or_else(|| warm.config.callback_token.clone());
        let Invocation {
            execution_id,
            trace_id,
            ..
        } = request.invocation.clone();
        warm.background.spawn(async move {
            let target = Callback {
                base_url: &base_url,
                execution_id: &execution_id,
                token: token.as_ref().map(Secret::expose),
                trace_id: trace_id.as_deref(),
            };
            if let Err(err) = callback::deliver(&client, target, &report, callback::RETRY).await {
                diag!("could not deliver the result of {execution_id}: {err}");
            }
        });
    }
    let mut response = json_response(StatusCode::OK, body);
    if let Ok(id) = HeaderValue::from_str(&request.invocation.execution_id) {
        response.headers_mut().insert(headers::EXECUTION_ID, id);
    }
    response
}

/// What a request may not change, fixed when the instance starts.
#[derive(Debug, Clone, Copy)]
pub struct Fixed<'a> {
    /// TIMEOUT_MS: the default timeout and the largest a request may ask for.
    pub timeout: Duration,
    /// CALLBACK_URL: the only callback target.
    pub callback_url: Option<&'a str>,
}

/// An `/invoke` request, parsed.
#[derive(Debug)]
pub struct InvokeRequest {
    /// What to run.
    pub invocation: Invocation,
    /// Whether the result also goes to CALLBACK_URL (the request named it).
    pub callback: bool,
    /// The envelope's `callback_token`, if any.
    pub callback_token: Option<Secret>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|text| Some(text.trim()).filter(|text| !text.is_empty()))
            .map_err(|_| format!("header {name} is not valid text")),
    }
}

/// The request's timeout, capped at TIMEOUT_MS (which it defaults to).
fn check_timeout(
    timeout_ms: Option<u64>,
    ceiling: Duration,
    source: &str,
) -> Result<Duration, String> {
    match timeout_ms {
        None => Ok(ceiling),
        Some(0) => Err(format!(
            "{source} must be a positive number of milliseconds"
        )),
        Some(ms) => Ok(Duration::from_millis(ms).min(ceiling)),
    }
}

/// Whether the request asks for a callback: only to CALLBACK_URL, the target fixed at
/// start (a trailing slash and letter case aside); any other is refused.
fn check_callback_url(
    url: Option<&str>,
    source: &str,
    fixed: Option<&str>,
) -> Result<bool, String> {
    let Some(url) = url else { return Ok(false) };
    let same = |configured: &str| {
        url.trim_end_matches('/')
            .eq_ignore_ascii_case(configured.trim_end_matches('/'))
    };
    match fixed {
        Some(configured) if same(configured) => Ok(true),
        _ => Err(format!(
            "{source} is refused: the callback target is fixed when the instance starts (CALLBACK_URL)"
        )),
    }
}

/// Either the envelope `{execution_id, payload, ...}`, or (with `X-Execution-Id`) the
/// raw payload with `X-Trace-Id`, `X-Timeout-Ms` and `X-Callback-Url` headers. The
/// error is the message of a 400.
pub fn parse_invoke(
    headers: &HeaderMap,
    body: Bytes,
    fixed: &Fixed<'_>,
) -> Result<InvokeRequest, String> {
    if let Some(execution_id) = header(headers, headers::EXECUTION_ID)? {
        let timeout_ms = header(headers, headers::TIMEOUT_MS)?
            .map(|text| {
                text.parse::<u64>().map_err(|_| {
                    format!("header X-Timeout-Ms {text:?} is not a whole number of milliseconds")
                })
            })
            .transpose()?;
        let callback = check_callback_url(
            header(headers, headers::CALLBACK_URL)?,
            "X-Callback-Url",
            fixed.callback_url,
        )?;
        let payload =
            callback::check_payload(body, "the request body").map_err(|error| error.message)?;
        return Ok(InvokeRequest {
            invocation: Invocation {
                execution_id: execution_id.to_owned(),
                trace_id: header(headers, headers::TRACE_ID)?.map(str::to_owned),
                payload,
                timeout: check_timeout(timeout_ms, fixed.timeout, "X-Timeout-Ms")?,
            },
            callback,
            callback_token: None,
        });
    }
    let envelope: InvokeEnvelope = serde_json::from_slice(&body).map_err(|err| {
        format!(
            "the body is not an invoke envelope ({err}); send {{\"execution_id\", \"payload\", ...}} or the raw payload with an X-Execution-Id header"
        )
    })?;
    if envelope.execution_id.trim().is_empty() {
        return Err("execution_id must not be empty".into());
    }
    // Both go out as headers of the callback; a control character would make that
    // request unbuildable after the function ran.
    for (field, value) in [
        ("trace_id", &envelope.trace_id),
        ("callback_token", &envelope.callback_token),
    ] {
        if value.as_deref().is_some_and(|value| !is_header_text(value)) {
            return Err(format!(
                "{field} contains a control character; it is sent as an HTTP header"
            ));
        }
    }
    Ok(InvokeRequest {
        invocation: Invocation {
            execution_id: envelope.execution_id,
            trace_id: envelope.trace_id,
            payload: Bytes::copy_from_slice(envelope.payload.get().as_bytes()),
            timeout: check_timeout(envelope.timeout_ms, fixed.timeout, "timeout_ms")?,
        },
        callback: check_callback_url(
            envelope.callback_url.as_deref(),
            "callback_url",
            fixed.callback_url,
        )?,
        callback_token: envelope.callback_token.map(Secret::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Duration = Duration::from_secs(30);
    const OPEN: Fixed<'static> = Fixed {
        timeout: DEFAULT,
        callback_url: None,
    };

    fn with_callback(url: &str) -> Fixed<'_> {
        Fixed {
            timeout: DEFAULT,
            callback_url: Some(url),
        }
    }

    #[test]
    fn envelope_fields_become_the_invocation() {
        let configured = "http://cp/v1/internal/executions";
        let body = Bytes::from_static(
            br#"{"execution_id":"e1","trace_id":"t","payload":{"n":1},"timeout_ms":250,"callback_url":"http://cp/v1/internal/executions/","callback_token":"tok"}"#,
        );
        let request = parse_invoke(&HeaderMap::new(), body, &with_callback(configured)).unwrap();
        assert_eq!(request.invocation.execution_id, "e1");
        assert_eq!(request.invocation.trace_id.as_deref(), Some("t"));
        assert_eq!(request.invocation.payload, r#"{"n":1}"#);
        assert_eq!(request.invocation.timeout, Duration::from_millis(250));
        assert!(request.callback);
        assert_eq!(request.callback_token, Some(Secret::new("tok")));
        assert!(!format!("{request:?}").contains("tok\""), "{request:?}");
        // Without one in the request, no callback.
        let body = Bytes::from_static(br#"{"execution_id":"e1"}"#);
        let request = parse_invoke(&HeaderMap::new(), body, &with_callback(configured)).unwrap();
        assert!(!request.callback);
        assert_eq!(request.invocation.timeout, DEFAULT);
    }

    #[test]
    fn execution_id_header_makes_the_body_the_raw_payload() {
        let mut headers = HeaderMap::new();
        headers.insert("x-execution-id", HeaderValue::from_static("e2"));
        headers.insert("x-timeout-ms", HeaderValue::from_static("40"));
        let request = parse_invoke(&headers, Bytes::from_static(b"[1,2]"), &OPEN).unwrap();
        assert_eq!(request.invocation.execution_id, "e2");
        assert_eq!(request.invocation.payload, "[1,2]");
        assert_eq!(request.invocation.timeout, Duration::from_millis(40));
        assert!(!request.callback);
        let request = parse_invoke(&headers, Bytes::new(), &OPEN).unwrap();
        assert_eq!(request.invocation.payload, "null");
    }

    #[test]
    fn a_request_timeout_is_capped_at_timeout_ms() {
        let body = Bytes::from_static(br#"{"execution_id":"e","timeout_ms":999999999}"#);
        let request = parse_invoke(&HeaderMap::new(), body, &OPEN).unwrap();
        assert_eq!(request.invocation.timeout, DEFAULT);
        let mut headers = HeaderMap::new();
        headers.insert("x-execution-id", HeaderValue::from_static("e"));
        headers.insert("x-timeout-ms", HeaderValue::from_static("45000"));
        let request = parse_invoke(&headers, Bytes::new(), &OPEN).unwrap();
        assert_eq!(request.invocation.timeout, DEFAULT);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static [u8],
            &'static str,
        );
        let cases: [Case; 6] = [
            (&[], b"{\"payload\":1}", "execution_id"),
            (&[], b"not json", "X-Execution-Id"),
            (&[], b"{\"execution_id\":\"\"}", "must not be empty"),
            (
                &[],
                b"{\"execution_id\":\"e\",\"timeout_ms\":0}",
                "timeout_ms",
            ),
            (&[("x-execution-id", "e")], b"{oops", "not JSON"),
            (
                &[("x-execution-id", "e"), ("x-timeout-ms", "soon")],
                b"1",
                "X-Timeout-Ms",
            ),
        ];
        for (pairs, body, expected) in cases {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            let err = parse_invoke(&headers, Bytes::copy_from_slice(body), &OPEN).unwrap_err();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn callback_url_must_be_http() {
        let configured = "http://cp/v1/internal/executions";
        let body = Bytes::from_static(br#"{"execution_id":"e","callback_url":"ftp://x"}"#);
        let err = parse_invoke(&HeaderMap::new(), body, &with_callback(configured)).unwrap_err();
        assert!(err.contains("callback_url"), "{err}");
    }

    #[test]
    fn control_characters_in_header_bound_fields_are_a_400() {
        let fixed = with_callback("http://cp/v1/internal/executions");
        for field in ["trace_id", "callback_token"] {
            let body = format!(
                r#"{{"execution_id":"e","callback_url":"http://cp/v1/internal/executions","{field}":"a\u0001b"}}"#
            );
            let err = parse_invoke(&HeaderMap::new(), Bytes::from(body), &fixed).unwrap_err();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn only_the_configured_callback_target_is_accepted() {
        let fixed = with_callback("http://cp:8080/v1/internal/executions");
        let envelope =
            |url: &str| Bytes::from(format!(r#"{{"execution_id":"e","callback_url":"{url}"}}"#));
        for same in [
            "http://cp:8080/v1/internal/executions",
            "http://CP:8080/v1/internal/executions/",
        ] {
            let request = parse_invoke(&HeaderMap::new(), envelope(same), &fixed).unwrap();
            assert!(request.callback, "{same}");
        }
        for other in [
            "http://attacker:8080/v1/internal/executions",
            "http://cp:8081/v1/internal/executions",
            "http://cp:8080/v1/internal/other",
            "http://cp/v1/internal/executions",
        ] {
            let err = parse_invoke(&HeaderMap::new(), envelope(other), &fixed).unwrap_err();
            assert!(err.contains("CALLBACK_URL"), "{other}: {err}");
        }
        // The raw form's header follows the same rule.
        let mut headers = HeaderMap::new();
        headers.insert("x-execution-id", HeaderValue::from_static("e"));
        headers.insert(
            "x-callback-url",
            HeaderValue::from_static("http://attacker/v1/internal/executions"),
        );
        let err = parse_invoke(&headers, Bytes::new(), &fixed).unwrap_err();
        assert!(err.contains("X-Callback-Url"), "{err}");
        // Without CALLBACK_URL every request callback is refused.
        let err = parse_invoke(
            &HeaderMap::new(),
            envelope("http://cp:8080/v1/internal/executions"),
            &OPEN,
        )
        .unwrap_err();
        assert!(err.contains("CALLBACK_URL"), "{err}");
    }

    #[test]
    fn the_token_must_match_exactly() {
        let token = Secret::new("s3cret-token");
        let check = |value: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert("authorization", HeaderValue::from_static(value));
            }
            authorized(&headers, &token)
        };
        assert!(check(Some("Bearer s3cret-token")));
        assert!(check(Some("bearer s3cret-token")));
        for refused in [
            None,
            Some(""),
            Some("s3cret-token"),
            Some("Basic s3cret-token"),
            Some("Bearer s3cret-toke"),
            Some("Bearer s3cret-token2"),
            Some("Bearer S3cret-token"),
            Some("Bearer "),
        ] {
            assert!(!check(refused), "{refused:?}");
        }
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"a", b""));
    }
}
