//! The OpenAPI operations of the `POST {resource}/{id}:{action}` routes. Each resource
//! has one handler for all its actions (the router matches whole path segments), so
//! the document describes each action here, one operation per action; the drift test
//! (`tests/openapi_api.rs`) checks every one of them reaches its handler.
#![allow(dead_code)] // the functions only carry their annotations

use crate::domain::Execution;
use crate::wire::{
    Accepted, CompletionAnswer, DeliveryInfo, ErrorBody, InvokeAnswer, RetryAnswer, ScaleRequest,
};
use utoipa::openapi::schema::{AnyOfBuilder, Schema};
use utoipa::openapi::{Ref, RefOr};

/// Runs the function and waits for its result.
#[utoipa::path(
    operation_id = "invokeFunction",post, path = "/v1/functions/{name}:invoke", tag = "invoke",
    params(
        ("name" = String, Path, description = "The function's name."),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 256 characters: a repeated call with the same key and input answers the first execution."),
        ("X-Timeout-Ms" = Option<u64>, Header, description = "This call's timeout in milliseconds, instead of the function's."),
        ("X-Trace-Id" = Option<String>, Header, description = "The caller's correlation id (1 to 256 characters)."),
        ("traceparent" = Option<String>, Header, description = "W3C trace context the execution joins; a malformed one is ignored."),
        ("tracestate" = Option<String>, Header, description = "W3C vendor trace state sent with `traceparent`."),
    ),
    request_body(content = serde_json::Value, description = "The function's input: any JSON (an empty body is `null`), checked against its `input_schema`."),
    responses(
        (status = 200, description = "It succeeded.", body = InvokeAnswer, headers(
            ("X-Execution-Id" = String, description = "The execution."),
            ("traceparent" = String, description = "The trace context it ran under."),
            ("X-Cold-Start" = String, description = "`true` when the call waited for its instance to start."))),
        (status = 400, description = "Bad input (`INVALID_INPUT`), body or header (`BAD_REQUEST`, e.g. an `X-Callback-Url`, which is for `:enqueue`).", body = ErrorBody),
        (status = 404, description = "No such function, or an unknown action (`NOT_FOUND`).", body = ErrorBody),
        (status = 409, description = "It was cancelled (an `InvokeAnswer`), the function is disabled (`FUNCTION_DISABLED`) or the idempotency key was used with another input (`IDEMPOTENCY_KEY_REUSED`).", body = InvokeOrError),
        (status = 422, description = "The input is nested too deeply to check (`INPUT_TOO_COMPLEX`).", body = ErrorBody),
        (status = 429, description = "The queue is full (`QUEUE_FULL`) or the rate limit was reached (`RATE_LIMITED`).", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again."))),
        (status = 502, description = "It failed (the `error` says why), or the node that runs its warm pool did not answer (`NODE_UNREACHABLE`).", body = InvokeOrError),
        (status = 504, description = "It timed out.", body = InvokeAnswer),
    ))]
pub fn invoke() {}

/// Queues the function: 202 once the execution is stored.
#[utoipa::path(
    operation_id = "enqueueFunction",post, path = "/v1/functions/{name}:enqueue", tag = "invoke",
    params(
        ("name" = String, Path, description = "The function's name."),
        ("Idempotency-Key" = Option<String>, Header, description = "1 to 256 characters: a repeated call with the same key and input answers the first execution."),
        ("X-Timeout-Ms" = Option<u64>, Header, description = "This call's timeout in milliseconds, instead of the function's."),
        ("X-Callback-Url" = Option<String>, Header, description = "An http(s) URL the final result is POSTed to (signed, with retries)."),
        ("X-Trace-Id" = Option<String>, Header, description = "The caller's correlation id (1 to 256 characters)."),
        ("traceparent" = Option<String>, Header, description = "W3C trace context the execution joins; a malformed one is ignored."),
        ("tracestate" = Option<String>, Header, description = "W3C vendor trace state sent with `traceparent`."),
    ),
    request_body(content = serde_json::Value, description = "The function's input: any JSON (an empty body is `null`), checked against its `input_schema`."),
    responses(
        (status = 202, description = "Stored; it runs when its turn comes.", body = Accepted, headers(
            ("X-Execution-Id" = String, description = "The execution."),
            ("traceparent" = String, description = "The trace context it runs under."))),
        (status = 400, description = "Bad input (`INVALID_INPUT`), body or header (`BAD_REQUEST`).", body = ErrorBody),
        (status = 404, description = "No such function (`NOT_FOUND`).", body = ErrorBody),
        (status = 409, description = "The function is disabled (`FUNCTION_DISABLED`) or the idempotency key was used with another input (`IDEMPOTENCY_KEY_REUSED`).", body = ErrorBody),
        (status = 422, description = "The input is nested too deeply to check (`INPUT_TOO_COMPLEX`).", body = ErrorBody),
        (status = 429, description = "The queue is full (`QUEUE_FULL`) or the rate limit was reached (`RATE_LIMITED`).", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again."))),
    ))]
pub fn enqueue() {}

/// Changes the warm pool's bounds: a new version.
#[utoipa::path(
    operation_id = "scaleFunction",post, path = "/v1/functions/{name}:scale", tag = "functions",
    params(("name" = String, Path, description = "The function's name.")),
    request_body(content = ScaleRequest),
    responses(
        (status = 200, description = "The current version; `changed` says whether it is new.", body = crate::wire::FunctionAnswer),
        (status = 400, description = "Neither bound, or an invalid one (`BAD_REQUEST`, `INVALID_FUNCTION`).", body = ErrorBody),
        (status = 404, description = "No such function (`NOT_FOUND`).", body = ErrorBody),
    ))]
pub fn scale() {}

/// Cancels an execution.
#[utoipa::path(
    operation_id = "cancelExecution",post, path = "/v1/executions/{id}:cancel", tag = "executions",
    params(("id" = String, Path, description = "The execution's id (a UUID).")),
    responses(
        (status = 200, description = "The cancelled execution.", body = Execution),
        (status = 404, description = "No such execution (`NOT_FOUND`).", body = ErrorBody),
        (status = 409, description = "It had already finished (`ALREADY_FINISHED`).", body = ErrorBody),
    ))]
pub fn cancel() {}

/// Re-drives a failed execution as a new one.
#[utoipa::path(
    operation_id = "retryExecution",post, path = "/v1/executions/{id}:retry", tag = "executions",
    params(("id" = String, Path, description = "The execution's id (a UUID).")),
    responses(
        (status = 202, description = "The new execution.", body = RetryAnswer),
        (status = 404, description = "No such execution (`NOT_FOUND`).", body = ErrorBody),
        (status = 409, description = "It did not fail (`CONFLICT`) or was re-driven already (`ALREADY_REDRIVEN`, `details.redrivenBy`).", body = ErrorBody),
        (status = 429, description = "The queue is full (`QUEUE_FULL`) or the rate limit was reached (`RATE_LIMITED`).", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again."))),
    ))]
pub fn retry() {}

/// Sends a failed delivery again.
#[utoipa::path(
    operation_id = "redriveDelivery",post, path = "/v1/deliveries/{id}:redrive", tag = "deliveries",
    params(("id" = String, Path, description = "The delivery's id (a UUID).")),
    responses(
        (status = 200, description = "The delivery, pending again.", body = DeliveryInfo),
        (status = 404, description = "No such delivery (`NOT_FOUND`).", body = ErrorBody),
        (status = 409, description = "It is not failed (`CONFLICT`).", body = ErrorBody),
    ))]
pub fn redrive() {}

/// An instance reports its execution's result.
#[utoipa::path(
    operation_id = "completeExecution",post, path = "/v1/internal/executions/{id}:complete", tag = "internal",
    security(("execution" = [])),
    params(("id" = String, Path, description = "The execution's id (a UUID).")),
    request_body(content = serde_json::Value, description = "The watchdog's completion report."),
    responses(
        (status = 200, description = "`applied` is false when it had already finished.", body = CompletionAnswer),
        (status = 400, description = "A report the server cannot use (`BAD_REQUEST`).", body = ErrorBody),
        (status = 401, description = "No execution token (`UNAUTHORIZED`).", body = ErrorBody),
        (status = 403, description = "Not this execution's token (`FORBIDDEN`).", body = ErrorBody),
        (status = 404, description = "No such execution (`NOT_FOUND`).", body = ErrorBody),
    ))]
pub fn complete() {}

/// The body of the `:invoke` answers that are either the finished execution or an
/// error (409: cancelled, or refused; 502: failed, or its node did not answer). Any of
/// the two, not one of them: a failed execution's `error.code` may also be an API code
/// (`QUEUE_FULL`), so its answer can fit both shapes.
pub struct InvokeOrError;

impl utoipa::PartialSchema for InvokeOrError {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(Ref::from_schema_name("InvokeAnswer"))
            .item(Ref::from_schema_name("ErrorBody"))
            .description(Some(
                "The finished execution (`InvokeAnswer`) or why the call was refused (`ErrorBody`).",
            ))
            .into()
    }
}

impl utoipa::ToSchema for InvokeOrError {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        for (name, schema) in [
            (
                "InvokeAnswer",
                <InvokeAnswer as utoipa::PartialSchema>::schema(),
            ),
            ("ErrorBody", <ErrorBody as utoipa::PartialSchema>::schema()),
        ] {
            schemas.push((name.to_owned(), schema));
        }
        <InvokeAnswer as utoipa::ToSchema>::schemas(schemas);
        <ErrorBody as utoipa::ToSchema>::schemas(schemas);
    }
}
