//! `POST /v1/functions/{name}:invoke` (waits for the result) and `:enqueue` (202 once
//! the execution is on disk).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use gantry_protocol::headers;

use super::error::{ApiError, ApiErrorCode, JsonBody};
use super::trace::{trace_headers, TraceHeaders};
use super::{split_action, AppState};
use crate::dispatch::InvokeRequest;
use crate::domain::{Execution, ExecutionStatus, Trigger};
use crate::registry::manifest::MAX_TIMEOUT_MS;
use crate::wire::{Accepted, InvokeAnswer};

/// `Idempotency-Key`.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// `X-Callback-Url`: where `:enqueue` sends the final result.
const CALLBACK_URL: &str = "x-callback-url";
/// `X-Cold-Start`: whether the call waited for its instance to start.
const COLD_START: &str = "x-cold-start";
/// Longest accepted idempotency key, trace id or `traceparent`.
pub(super) const MAX_KEY_LEN: usize = 256;

/// `POST /v1/functions/{name}:{action}`.
pub async fn action(
    State(state): State<Arc<AppState>>,
    Path(segment): Path<String>,
    request_headers: HeaderMap,
    JsonBody(input): JsonBody,
) -> Result<Response, ApiError> {
    let since = crate::telemetry::started();
    let (name, action) = split_action(&segment);
    let wait = match action {
        Some("invoke") => true,
        Some("enqueue") => false,
        Some("scale") => return super::functions::scale(state, name, input).await,
        Some(other) => {
            return Err(ApiError::not_found(format!(
                "unknown action :{other}; use :invoke, :enqueue or :scale"
            )))
        }
        None => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                ApiErrorCode::MethodNotAllowed,
                format!("POST /v1/functions/{name} is not a route; create with POST /v1/functions or invoke with POST /v1/functions/{name}:invoke"),
            ))
        }
    };
    let InvokeHeaders {
        trace: TraceHeaders {
            trace_id,
            context: trace,
        },
        idempotency_key,
        timeout_ms,
    } = invoke_headers(&request_headers)?;
    let callback_url = callback_header(&request_headers, &state, wait)?;
    if wait && idempotency_key.is_none() {
        let served = super::forward::elsewhere(&state, name, &request_headers, &input).await;
        if let Some(answer) = served {
            return answer;
        }
    }
    // The request's span hangs from the caller's, when it named one (kept only when
    // spans are recorded at all).
    let caller = since.and(trace.clone());
    let request = InvokeRequest {
        function: name.to_owned(),
        input,
        trace_id,
        trace,
        idempotency_key,
        timeout_ms,
        trigger: Trigger::Api,
        callback_url,
    };
    if !wait {
        let accepted = state.dispatcher.submit(request).await?;
        crate::telemetry::request(since, "enqueue", &accepted.execution, caller.as_ref());
        let body = Accepted {
            execution_id: accepted.execution.id,
            status: accepted.execution.status,
        };
        return Ok(with_id(
            (StatusCode::ACCEPTED, Json(body)).into_response(),
            &accepted.execution,
        ));
    }
    let execution = state.dispatcher.invoke(request).await?;
    crate::telemetry::request(since, "invoke", &execution, caller.as_ref());
    let mut response = with_id(sync_answer(&execution), &execution);
    if let Some(cold) = execution.cold_start {
        response.headers_mut().insert(
            HeaderName::from_static(COLD_START),
            HeaderValue::from_static(if cold { "true" } else { "false" }),
        );
    }
    Ok(response)
}

/// `X-Callback-Url` of `:enqueue`: where the final result is POSTed. A URL the address
/// policy refuses, or one on `:invoke` (whose caller gets the result), is a 400.
fn callback_header(
    request_headers: &HeaderMap,
    state: &AppState,
    wait: bool,
) -> Result<Option<String>, ApiError> {
    let Some(value) = request_headers.get(CALLBACK_URL) else {
        return Ok(None);
    };
    let url = value
        .to_str()
        .map_err(|_| ApiError::bad_request("X-Callback-Url must be visible ASCII"))?
        .trim()
        .to_owned();
    if wait {
        return Err(ApiError::bad_request(
            "X-Callback-Url is for :enqueue; :invoke answers the result itself",
        ));
    }
    state
        .catalog
        .destination_policy()
        .check_url(&url)
        .map_err(|err| ApiError::bad_request(format!("X-Callback-Url {err}")))?;
    Ok(Some(url))
}

/// What an invocation's headers ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeHeaders {
    /// `X-Trace-Id`, `traceparent` and `tracestate`.
    pub trace: TraceHeaders,
    /// `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// `X-Timeout-Ms`.
    pub timeout_ms: Option<u64>,
}

/// Reads `X-Trace-Id`, `traceparent`, `tracestate`, `Idempotency-Key` and
/// `X-Timeout-Ms`; a bad one is a 400 naming it (a malformed `traceparent` is ignored).
pub fn invoke_headers(request_headers: &HeaderMap) -> Result<InvokeHeaders, ApiError> {
    Ok(InvokeHeaders {
        trace: trace_headers(request_headers)?,
        idempotency_key: text_header(request_headers, IDEMPOTENCY_KEY)?,
        timeout_ms: timeout_header(request_headers)?,
    })
}

fn sync_answer(execution: &Execution) -> Response {
    let status = match execution.status {
        ExecutionStatus::Success => StatusCode::OK,
        ExecutionStatus::Error => StatusCode::BAD_GATEWAY,
        ExecutionStatus::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ExecutionStatus::Cancelled => StatusCode::CONFLICT,
        // Only when the server shuts down while the call waits.
        _ => {
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ApiErrorCode::ShuttingDown,
                format!(
                    "the server is shutting down; execution {} will be resumed or failed when it restarts",
                    execution.id
                ),
            )
            .into_response()
        }
    };
    (status, Json(InvokeAnswer::from(execution))).into_response()
}

/// Names the execution in the answer's headers: its id and the `traceparent` it runs
/// under, so the caller can join its span.
fn with_id(mut response: Response, execution: &Execution) -> Response {
    let found = [
        (headers::EXECUTION_ID, Some(execution.id.to_string())),
        (headers::TRACEPARENT, execution.traceparent.clone()),
    ];
    for (name, value) in found {
        if let Some(Ok(value)) = value.map(HeaderValue::try_from) {
            response
                .headers_mut()
                .insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// A header as the user wrote it in messages (`x-trace-id` → `X-Trace-Id`).
fn display_name(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

pub(super) fn text_header(
    request_headers: &HeaderMap,
    header: &str,
) -> Result<Option<String>, ApiError> {
    let Some(value) = request_headers.get(header) else {
        return Ok(None);
    };
    let name = display_name(header);
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request(format!("{name} must be visible ASCII")))?
        .trim();
    if text.is_empty() || text.len() > MAX_KEY_LEN {
        return Err(ApiError::bad_request(format!(
            "{name} must be 1 to {MAX_KEY_LEN} characters"
        )));
    }
    Ok(Some(text.to_owned()))
}

fn timeout_header(request_headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(text) = text_header(request_headers, headers::TIMEOUT_MS)? else {
        return Ok(None);
    };
    match text.parse::<u64>() {
        Ok(ms) if (1..=MAX_TIMEOUT_MS).contains(&ms) => Ok(Some(ms)),
        _ => Err(ApiError::bad_request(format!(
            "X-Timeout-Ms must be a whole number of milliseconds between 1 and {MAX_TIMEOUT_MS}, got {text:?}"
        ))),
    }
}
