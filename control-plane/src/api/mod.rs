//! The HTTP API (DESIGN.md §3): [`app`] builds the router over an [`AppState`], [`run`]
//! serves it on a listener until a shutdown future resolves. One file per resource.

pub mod error;
mod events;
mod executions;
mod functions;
mod health;
mod internal;
mod invoke;
mod logs;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;

pub use error::ApiError;

use crate::dispatch::Dispatcher;
use crate::logs::LogHub;
use crate::metrics::Metrics;
use crate::registry::catalog::Catalog;
use crate::store::Store;

/// Everything the handlers share.
pub struct AppState {
    /// Durable state.
    pub store: Arc<dyn Store>,
    /// Function definitions.
    pub catalog: Arc<Catalog>,
    /// Runs executions.
    pub dispatcher: Arc<Dispatcher>,
    /// Live logs.
    pub logs: Arc<LogHub>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// API token; `None` serves without authentication (loopback only).
    pub token: Option<String>,
    /// Set once start-up recovery is done.
    pub ready: AtomicBool,
    /// Largest request body.
    pub max_body_bytes: usize,
}

/// The router: `/v1` (behind the token when one is set), the callback routes (behind
/// each execution's own token), health and metrics.
pub fn app(state: Arc<AppState>) -> Router {
    let v1 = Router::new()
        .route("/functions", post(functions::create).get(functions::list))
        .route(
            "/functions/{name}",
            get(functions::get)
                .put(functions::replace)
                .delete(functions::delete)
                .post(invoke::action),
        )
        .route("/functions/{name}/versions", get(functions::versions))
        .route("/executions", get(executions::list))
        .route(
            "/executions/{id}",
            get(executions::get).post(executions::action),
        )
        .route("/executions/{id}/logs", get(logs::logs))
        .route("/executions/{id}/chain", get(executions::chain))
        .route("/events", post(events::publish))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    let internal = Router::new()
        .route("/executions/{id}", post(internal::action))
        .route("/executions/{id}/payload", get(internal::payload));
    Router::new()
        .nest("/v1/internal", internal)
        .nest("/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { ApiError::not_found("no such route; see DESIGN.md §3 for the API") })
        // Every error answers in the usual shape, a wrong method included (axum's own
        // 405 has an empty body); the Allow header is kept.
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "METHOD_NOT_ALLOWED",
                    format!("{method} is not allowed on {}", uri.path()),
                )
            },
        )
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .with_state(state)
}

/// Serves `app(state)` on `listener` until `shutdown` resolves, then finishes the
/// requests in flight.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.token {
        match bearer(request.headers()) {
            None => {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "this server needs an API token: send `Authorization: Bearer TOKEN` (gantry --token or GANTRY_TOKEN)",
                ))
            }
            Some(given) if !same(given, expected) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "FORBIDDEN",
                    "the API token is not valid",
                ))
            }
            Some(_) => {}
        }
    }
    Ok(next.run(request).await)
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Splits `name:action` path segments (`echo:invoke`).
pub(crate) fn split_action(segment: &str) -> (&str, Option<&str>) {
    match segment.rsplit_once(':') {
        Some((name, action)) => (name, Some(action)),
        None => (segment, None),
    }
}

/// Parses an execution id from a path.
pub(crate) fn parse_id(text: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(text)
        .map_err(|_| ApiError::not_found(format!("execution {text:?} not found (ids are UUIDs)")))
}
