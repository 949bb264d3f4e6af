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
use gantry_protocol::{headers, ApiErrorBody};
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
pub use super::request::{parse_invoke, Fixed, InvokeRequest};
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

#[cfg(test)]
mod tests {
    use super::*;

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
