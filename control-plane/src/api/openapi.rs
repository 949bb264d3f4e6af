//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of the whole API, assembled from
//! the handlers' `#[utoipa::path]` annotations and the wire types' schemas (see
//! [`super::routes`]), plus what every operation shares: the bearer scheme, the error
//! answers the guard and the error type give on any route, and their headers.
//!
//! The document is served without a token: it is the same for every server of a build
//! (nothing in it comes from the server's data or configuration), and client generators
//! and schema fuzzers fetch it before they hold one.

use std::sync::{Arc, OnceLock};

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi as _};

use crate::wire::ErrorBody;

/// The name of the bearer security scheme in the document.
pub const BEARER: &str = "bearer";
/// The name of the execution-token scheme of the internal routes.
pub const EXECUTION: &str = "execution";

/// The document's fixed parts: title, tags, the shared schemas, and the `name:action`
/// operations that share one route each (see [`super::openapi_actions`]).
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Gantry",
        description = "The Gantry function platform's HTTP API. Every error answers `{\"error\": {\"code\", \"message\", \"details\"?}}`; `code` is one of the `ApiErrorCode` values.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        super::openapi_actions::invoke,
        super::openapi_actions::enqueue,
        super::openapi_actions::scale,
        super::openapi_actions::cancel,
        super::openapi_actions::retry,
        super::openapi_actions::redrive,
        super::openapi_actions::complete,
    ),
    components(schemas(ErrorBody, super::error::ApiErrorCode, StreamEvent)),
    modifiers(&Shared),
    tags(
        (name = "functions", description = "Deploy, read, scale and remove functions."),
        (name = "invoke", description = "Run functions: wait for the result or queue them."),
        (name = "executions", description = "The record of every run, its logs and chains."),
        (name = "events", description = "Publish events that start functions."),
        (name = "deliveries", description = "Results sent to callback and destination URLs."),
        (name = "access", description = "API tokens and secrets."),
        (name = "cluster", description = "The nodes sharing the store."),
        (name = "meta", description = "Health, metrics and this document."),
        (name = "internal", description = "Called by function instances with their execution's token, not by users."),
    )
)]
struct Fixed;

/// One event of a server-sent event stream (the log routes with `follow=true`), as
/// the stream frames it. The document describes the frames; what `data` holds per
/// `event` is in each route's description.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // only its schema is used
pub struct StreamEvent {
    /// `log` (a line), `end` (the execution finished) or `lagged` (lines were skipped).
    #[schema(pattern = "^(log|end|lagged)$")]
    event: Option<String>,
    /// The event's data: JSON, but for `lagged`, a sentence.
    data: String,
    /// The line's sequence number, on the `log` events of an execution.
    id: Option<String>,
}

/// The whole document, built once.
pub fn document() -> &'static OpenApi {
    static DOCUMENT: OnceLock<OpenApi> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        // The body limit of the internal routes is no part of the document.
        let (_, routed) = super::routes(0).split_for_parts();
        let mut document = Fixed::openapi();
        document.merge(routed);
        Shared.modify(&mut document);
        document
    })
}

/// The document as pretty JSON (what `gantry openapi` prints).
pub fn document_json() -> String {
    document()
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"the document does not serialize: {err}\"}}"))
}

/// Serves the document.
#[utoipa::path(
    operation_id = "getOpenApiDocument",
    get,
    path = "/openapi.json",
    tag = "meta",
    security(()),
    responses((status = 200, description = "This document (OpenAPI 3.1).", content_type = "application/json", body = serde_json::Value)),
)]
pub async fn serve() -> impl IntoResponse {
    static BODY: OnceLock<Arc<str>> = OnceLock::new();
    let body = BODY.get_or_init(|| Arc::from(document_json()));
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

/// Adds what every operation shares. Runs twice (once inside `Fixed::openapi`, once
/// over the merged document); each step is idempotent.
struct Shared;

impl Modify for Shared {
    fn modify(&self, document: &mut OpenApi) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token (`gantry token create`, or the admin token the server prints at first start). Each route needs a role: read, invoke, deploy or admin.",
                    ))
                    .build(),
            ),
        );
        for (name, response) in shared_responses() {
            components
                .responses
                .insert(name.to_owned(), RefOr::T(response));
        }
        components.add_security_scheme(
            EXECUTION,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The token the server gives each execution's instance; only the internal routes take it.",
                    ))
                    .build(),
            ),
        );
        // `error.code` is one of the server's typed codes (the shared wire type keeps it
        // a string, so clients accept codes of newer servers).
        if let Some(RefOr::T(Schema::Object(detail))) = components.schemas.get_mut("ErrorDetail") {
            detail.properties.insert(
                "code".to_owned(),
                RefOr::Ref(Ref::from_schema_name("ApiErrorCode")),
            );
        }
        if document.security.is_none() {
            document.security = Some(vec![SecurityRequirement::new(BEARER, Vec::<String>::new())]);
        }
        for item in document.paths.paths.values_mut() {
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
            ]
            .into_iter()
            .flatten()
            {
                add_shared(operation);
            }
        }
    }
}

/// The answers any operation may give besides its own: the guard's refusals, the
/// store's and the dispatcher's temporary failures, and the catch-all error.
fn add_shared(operation: &mut Operation) {
    let open = operation
        .security
        .as_ref()
        .is_some_and(|requirements| requirements.iter().all(is_empty_requirement));
    let mut shared = vec![
        ("403", "Forbidden"),
        ("500", "Internal"),
        ("503", "Unavailable"),
        ("507", "Full"),
    ];
    if !open {
        shared.push(("401", "Unauthorized"));
    }
    if operation.request_body.is_some() {
        shared.extend([
            ("400", "BadRequest"),
            ("413", "TooLarge"),
            ("415", "UnsupportedMediaType"),
        ]);
    }
    for (status, name) in shared {
        operation
            .responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| RefOr::Ref(Ref::from_response_name(name)));
    }
    operation
        .responses
        .responses
        .entry("default".to_owned())
        .or_insert_with(|| RefOr::Ref(Ref::from_response_name("Error")));
}

fn is_empty_requirement(requirement: &SecurityRequirement) -> bool {
    serde_json::to_value(requirement)
        .is_ok_and(|value| value.as_object().is_some_and(|o| o.is_empty()))
}

/// The error answers shared by reference.
fn shared_responses() -> Vec<(&'static str, Response)> {
    let retry = || {
        HeaderBuilder::new()
            .schema(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            )
            .description(Some("Seconds to wait before trying again."))
            .build()
    };
    let error = |description: &str| {
        ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
    };
    vec![
        ("BadRequest", error("The request is malformed: bad JSON, a body of the wrong shape, a bad header or query parameter (`BAD_REQUEST`, `INVALID_FUNCTION`, `INVALID_INPUT`).").build()),
        ("Unauthorized", error("No token, or one the server does not know (`UNAUTHORIZED`).")
            .header("WWW-Authenticate", HeaderBuilder::new().schema(ObjectBuilder::new().schema_type(Type::String)).description(Some("`Bearer`.")).build())
            .build()),
        ("Forbidden", error("The token's role does not allow this route (`FORBIDDEN`), the Host header names another server (`HOST_NOT_ALLOWED`), or a web page of another site sent it (`CROSS_ORIGIN`).").build()),
        ("TooLarge", error("The body is over the server's limit (`TOO_LARGE`).").build()),
        ("UnsupportedMediaType", error("A body not declared `application/json` (`UNSUPPORTED_MEDIA_TYPE`).").build()),
        ("Internal", error("A failure the caller cannot fix (`INTERNAL`); the server log has the cause.").build()),
        ("Unavailable", error("The store does not answer (`STORE_UNAVAILABLE`), the server is shutting down (`SHUTTING_DOWN`) or serves as many connections as it may (`TOO_MANY_CONNECTIONS`).").header("Retry-After", retry()).build()),
        ("Full", error("The server's disk is full (`INSUFFICIENT_STORAGE`).").header("Retry-After", retry()).build()),
        ("TooMany", error("The function's queue is full (`QUEUE_FULL`) or its rate limit was reached (`RATE_LIMITED`).").header("Retry-After", retry()).build()),
        ("Error", error("Any other error, in the same shape.").build()),
    ]
}
