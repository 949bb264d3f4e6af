//! The WARM HTTP server: `GET /health` and `POST /invoke` over HTTP/1.1 keep-alive.
//! On shutdown it stops accepting, lets in-flight requests finish, and returns.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gantry_protocol::{headers, ApiErrorBody, InvokeEnvelope};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
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
use crate::config::Secret;
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

async fn invoke(warm: &Warm, request: Request<Incoming>) -> HttpResponse {
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
    let request = match parse_invoke(&parts.headers, body, warm.config.timeout) {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message),
    };
    let report = warm.run(&request.invocation).await.into_report();
    let body = serde_json::to_vec(&report).expect("a report always serializes");
    if let Some(base_url) = request.callback_url {
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

/// An `/invoke` request, parsed.
#[derive(Debug)]
struct InvokeRequest {
    invocation: Invocation,
    callback_url: Option<String>,
    callback_token: Option<Secret>,
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

fn check_timeout(
    timeout_ms: Option<u64>,
    default: Duration,
    source: &str,
) -> Result<Duration, String> {
    match timeout_ms {
        None => Ok(default),
        Some(0) => Err(format!(
            "{source} must be a positive number of milliseconds"
        )),
        Some(ms) => Ok(Duration::from_millis(ms)),
    }
}

fn check_callback_url(url: Option<&str>, source: &str) -> Result<Option<String>, String> {
    let Some(url) = url else { return Ok(None) };
    match url.parse::<Uri>() {
        Ok(uri) if uri.scheme_str() == Some("http") && uri.host().is_some() => {
            Ok(Some(url.to_owned()))
        }
        _ => Err(format!("{source} {url:?} is not an absolute http:// URL")),
    }
}

/// Either the envelope `{execution_id, payload, ...}`, or (with `X-Execution-Id`) the
/// raw payload with `X-Trace-Id`, `X-Timeout-Ms` and `X-Callback-Url` headers.
fn parse_invoke(
    headers: &HeaderMap,
    body: Bytes,
    default_timeout: Duration,
) -> Result<InvokeRequest, String> {
    if let Some(execution_id) = header(headers, headers::EXECUTION_ID)? {
        let timeout_ms = header(headers, headers::TIMEOUT_MS)?
            .map(|text| {
                text.parse::<u64>().map_err(|_| {
                    format!("header X-Timeout-Ms {text:?} is not a whole number of milliseconds")
                })
            })
            .transpose()?;
        let payload =
            callback::check_payload(body, "the request body").map_err(|error| error.message)?;
        return Ok(InvokeRequest {
            invocation: Invocation {
                execution_id: execution_id.to_owned(),
                trace_id: header(headers, headers::TRACE_ID)?.map(str::to_owned),
                payload,
                timeout: check_timeout(timeout_ms, default_timeout, "X-Timeout-Ms")?,
            },
            callback_url: check_callback_url(
                header(headers, headers::CALLBACK_URL)?,
                "X-Callback-Url",
            )?,
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
    Ok(InvokeRequest {
        invocation: Invocation {
            execution_id: envelope.execution_id,
            trace_id: envelope.trace_id,
            payload: Bytes::copy_from_slice(envelope.payload.get().as_bytes()),
            timeout: check_timeout(envelope.timeout_ms, default_timeout, "timeout_ms")?,
        },
        callback_url: check_callback_url(envelope.callback_url.as_deref(), "callback_url")?,
        callback_token: envelope.callback_token.map(Secret::new),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: Duration = Duration::from_secs(30);

    #[test]
    fn envelope_fields_become_the_invocation() {
        let body = Bytes::from_static(
            br#"{"execution_id":"e1","trace_id":"t","payload":{"n":1},"timeout_ms":250,"callback_url":"http://cp/v1/internal/executions"}"#,
        );
        let request = parse_invoke(&HeaderMap::new(), body, DEFAULT).unwrap();
        assert_eq!(request.invocation.execution_id, "e1");
        assert_eq!(request.invocation.trace_id.as_deref(), Some("t"));
        assert_eq!(request.invocation.payload, r#"{"n":1}"#);
        assert_eq!(request.invocation.timeout, Duration::from_millis(250));
        assert_eq!(
            request.callback_url.as_deref(),
            Some("http://cp/v1/internal/executions")
        );
    }

    #[test]
    fn execution_id_header_makes_the_body_the_raw_payload() {
        let mut headers = HeaderMap::new();
        headers.insert("x-execution-id", HeaderValue::from_static("e2"));
        headers.insert("x-timeout-ms", HeaderValue::from_static("40"));
        let request = parse_invoke(&headers, Bytes::from_static(b"[1,2]"), DEFAULT).unwrap();
        assert_eq!(request.invocation.execution_id, "e2");
        assert_eq!(request.invocation.payload, "[1,2]");
        assert_eq!(request.invocation.timeout, Duration::from_millis(40));
        let request = parse_invoke(&headers, Bytes::new(), DEFAULT).unwrap();
        assert_eq!(request.invocation.payload, "null");
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
            let err = parse_invoke(&headers, Bytes::copy_from_slice(body), DEFAULT).unwrap_err();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn callback_url_must_be_http() {
        let body = Bytes::from_static(br#"{"execution_id":"e","callback_url":"ftp://x"}"#);
        let err = parse_invoke(&HeaderMap::new(), body, DEFAULT).unwrap_err();
        assert!(err.contains("callback_url"), "{err}");
    }
}
