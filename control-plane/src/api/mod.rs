//! The HTTP API: [`app`] builds the router over an [`AppState`], [`run`] serves it on a
//! listener until a shutdown future resolves. One file per resource; [`guard`] checks
//! every request first.

mod deliveries;
pub mod error;
mod events;
mod executions;
mod forward;
mod function_logs;
mod functions;
pub mod guard;
mod health;
mod internal;
mod invoke;
pub mod listener;
mod logs;
mod nodes;
mod secrets;
mod stats;
mod tokens;
mod trace;
mod ui;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::routing::{delete, get, post};
use axum::Router;
use tokio::net::TcpListener;

pub use error::ApiError;
pub use forward::{Forwarder, FORWARDED_BY, SERVED_BY};
pub use guard::HostPolicy;
pub use internal::parse_report;
pub use invoke::{invoke_headers, InvokeHeaders};
pub use trace::{trace_headers, TraceHeaders};

use crate::access::Credentials;
use crate::dispatch::Dispatcher;
use crate::logs::LogHub;
use crate::metrics::Metrics;
use crate::registry::catalog::Catalog;
use crate::secrets::Vault;
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
    /// The API tokens accepted.
    pub credentials: Arc<Credentials>,
    /// Sealed secrets.
    pub vault: Arc<Vault>,
    /// The names the Host header may carry.
    pub hosts: HostPolicy,
    /// Passes warm calls this node cannot serve now on to other nodes.
    pub forwarder: Forwarder,
    /// Set once start-up recovery is done.
    pub ready: AtomicBool,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Connection bounds of the listeners.
    pub limits: listener::Limits,
    /// Largest result report an instance may post (the largest output and its
    /// envelope), whatever `max_body_bytes` says.
    pub max_report_bytes: usize,
}

/// The router: `/v1` (each route behind the role it needs, see
/// [`crate::access::policy`]), the instances' internal routes (behind each execution's
/// own token), health and metrics. Every request first passes [`guard::guard`].
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
        .route("/functions/{name}/destination-key", get(deliveries::key))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{id}", post(deliveries::action))
        .route("/functions/{name}/logs", get(function_logs::logs))
        .route("/functions/{name}/stats", get(stats::stats))
        .route("/executions", get(executions::list))
        .route(
            "/executions/{id}",
            get(deliveries::execution)
                .post(executions::action)
                .delete(executions::delete),
        )
        .route("/executions/{id}/logs", get(logs::logs))
        .route("/executions/{id}/chain", get(executions::chain))
        .route("/events", post(events::publish))
        .route("/nodes", get(nodes::list))
        .route("/tokens", post(tokens::create).get(tokens::list))
        .route("/tokens/{name}", delete(tokens::revoke))
        .route("/secrets", get(secrets::list))
        .route(
            "/secrets/{name}",
            get(secrets::get).put(secrets::put).delete(secrets::delete),
        );
    let router = Router::new()
        .nest("/v1/internal", internal_routes(&state))
        .nest("/v1", v1)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .merge(ui::router());
    let guard = middleware::from_fn_with_state(state.clone(), guard::guard);
    finish(router, state).layer(guard)
}

/// The router of the listener instances reach on the Docker network: the callback and
/// payload routes only, never the API.
pub fn internal_app(state: Arc<AppState>) -> Router {
    let guard = middleware::from_fn_with_state(state.clone(), guard::guard_internal);
    let internal = Router::new().nest("/v1/internal", internal_routes(&state));
    finish(internal, state).layer(guard)
}

fn internal_routes(state: &AppState) -> Router<Arc<AppState>> {
    Router::new()
        .route("/executions/{id}", post(internal::action))
        .route("/executions/{id}/payload", get(internal::payload))
        // A result as large as the largest output must get through.
        .layer(DefaultBodyLimit::max(state.max_report_bytes))
}

/// The fallbacks and the body limit around `router`.
fn finish(router: Router<Arc<AppState>>, state: Arc<AppState>) -> Router {
    router
        .fallback(|| async { ApiError::not_found("no such route") })
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
    let limits = state.limits;
    listener::serve(listener, app(state), limits, shutdown).await
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
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
