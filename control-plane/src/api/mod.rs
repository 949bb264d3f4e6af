//! The HTTP API: [`app`] builds the router over an [`AppState`], [`run`] serves it on a
//! listener until a shutdown future resolves. One file per resource; [`guard`] checks
//! every request first.

mod deliveries;
pub mod error;
mod error_code;
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
pub mod openapi;
mod openapi_actions;
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
use axum::routing::post;
use axum::Router;
use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{ApiError, ApiErrorCode};
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
    let (router, _) = routes(state.max_report_bytes).split_for_parts();
    let router = router.merge(ui::router());
    let guard = middleware::from_fn_with_state(state.clone(), guard::guard);
    finish(router, state).layer(guard)
}

/// Every route with its OpenAPI operation: the router and [`openapi::document`] are
/// both built from here, so the document cannot miss a route. The `POST`
/// `name:action` routes have one handler each and are documented action by action in
/// [`openapi`].
fn routes(max_report_bytes: usize) -> OpenApiRouter<Arc<AppState>> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(functions::create, functions::list))
        .routes(routes!(
            functions::get,
            functions::replace,
            functions::delete
        ))
        .route("/functions/{name}", post(invoke::action))
        .routes(routes!(functions::versions))
        .routes(routes!(deliveries::key))
        .routes(routes!(deliveries::list))
        .route("/deliveries/{id}", post(deliveries::action))
        .routes(routes!(function_logs::logs))
        .routes(routes!(stats::stats))
        .routes(routes!(executions::list))
        .routes(routes!(deliveries::execution, executions::delete))
        .route("/executions/{id}", post(executions::action))
        .routes(routes!(logs::logs))
        .routes(routes!(executions::chain))
        .routes(routes!(events::publish))
        .routes(routes!(nodes::list))
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::revoke))
        .routes(routes!(secrets::list))
        .routes(routes!(secrets::get, secrets::put, secrets::delete))
        .routes(routes!(openapi::serve));
    OpenApiRouter::new()
        .nest("/v1/internal", internal_routes(max_report_bytes))
        .nest("/v1", v1)
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
}

/// The router of the listener instances reach on the Docker network: the callback and
/// payload routes only, never the API.
pub fn internal_app(state: Arc<AppState>) -> Router {
    let guard = middleware::from_fn_with_state(state.clone(), guard::guard_internal);
    let (internal, _) = OpenApiRouter::new()
        .nest("/v1/internal", internal_routes(state.max_report_bytes))
        .split_for_parts();
    finish(internal, state).layer(guard)
}

fn internal_routes(max_report_bytes: usize) -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::new()
        .route("/executions/{id}", post(internal::action))
        .routes(routes!(internal::payload))
        // A result as large as the largest output must get through.
        .layer(DefaultBodyLimit::max(max_report_bytes))
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
                    ApiErrorCode::MethodNotAllowed,
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
