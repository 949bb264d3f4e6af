//! `POST /v1/events`: publish an event; every function whose trigger matches runs, all
//! in one trace (the caller's `traceparent`, else a new one).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::error::{ApiError, JsonBody};
use super::trace::trace_headers;
use super::AppState;
use crate::wire::{EventAnswer, EventRequest};

/// Longest event type.
const MAX_TYPE_LEN: usize = 256;

/// `POST /v1/events` with `{type, data}`: 202 with the executions it started (each
/// stored before the answer) and the matching functions that refused it.
#[utoipa::path(
    operation_id = "publishEvent",post, path = "/events", tag = "events",
    params(("X-Trace-Id" = Option<String>, Header, description = "The caller's correlation id (1 to 256 characters), kept on every execution started."), ("traceparent" = Option<String>, Header, description = "W3C trace context the executions join; a malformed one is ignored."), ("tracestate" = Option<String>, Header, description = "W3C vendor trace state sent with `traceparent`.")),
    request_body(content = EventRequest, description = "The event."),
    responses(
        (status = 202, description = "The executions it started (each stored) and the functions that refused it.", body = EventAnswer),
    ))]
pub async fn publish(
    State(state): State<Arc<AppState>>,
    request_headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let event: EventRequest = serde_json::from_value(body).map_err(|err| {
        ApiError::bad_request(format!(
            "an event is {{\"type\": \"name\", \"data\": <any JSON>}}: {err}"
        ))
    })?;
    let event_type = event.event_type.trim();
    if event_type.is_empty() || event_type.len() > MAX_TYPE_LEN {
        return Err(ApiError::bad_request(format!(
            "type must be 1 to {MAX_TYPE_LEN} characters"
        )));
    }
    let trace = trace_headers(&request_headers)?;
    let targets = state
        .dispatcher
        .publish(event_type, &event.data, trace.trace_id, trace.context)
        .await?;
    let (started, refused): (Vec<_>, Vec<_>) = targets
        .into_iter()
        .partition(|target| target.execution_id.is_some());
    let body = EventAnswer {
        event_type: event_type.to_owned(),
        executions: started,
        refused,
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
