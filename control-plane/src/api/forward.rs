//! Sync calls of a warm function that this node cannot serve now (no instance here is
//! free and the function's `max_instances` across the cluster lets none start), passed
//! on to a node that runs instances of it (one with a free instance first), with that
//! node's answer passed back.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::error::{ApiError, ApiErrorCode};
use super::AppState;
use crate::cluster::Peer;
use crate::registry::manifest::MAX_TIMEOUT_MS;

/// Marks a call another node passed on: the node taking it serves it itself.
pub const FORWARDED_BY: &str = "x-gantry-forwarded-by";
/// Names the node that served a call passed on to it.
pub const SERVED_BY: &str = "x-gantry-served-by";

/// Request headers passed on: the caller's credentials and what the call asks for.
const PASSED_ON: [&str; 6] = [
    "authorization",
    "content-type",
    "x-trace-id",
    "x-timeout-ms",
    "traceparent",
    "tracestate",
];
/// Answer headers passed back.
const PASSED_BACK: [&str; 6] = [
    "content-type",
    "x-execution-id",
    "x-cold-start",
    "retry-after",
    "traceparent",
    "tracestate",
];
/// A peer that does not accept the connection within this is passed over.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest a passed-on call may take: the longest timeout a function may have, and
/// room for the other node's own queueing.
const CALL_LIMIT: Duration = Duration::from_millis(MAX_TIMEOUT_MS + 60_000);

/// The HTTP client calls are passed on with (keep-alive connections to the peers).
#[derive(Debug, Clone)]
pub struct Forwarder {
    client: reqwest::Client,
    node_id: String,
}

impl Forwarder {
    /// A forwarder for node `node_id`.
    pub fn new(node_id: String) -> Forwarder {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_LIMIT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Forwarder { client, node_id }
    }
}

/// Serves a sync call of warm function `name` on another node when this one cannot now
/// and another runs instances of it. `None`: serve it here (no such node, the call was
/// passed on already, or the other node could not be reached).
pub async fn elsewhere(
    state: &AppState,
    name: &str,
    headers: &HeaderMap,
    input: &Value,
) -> Option<Result<Response, ApiError>> {
    if headers.contains_key(FORWARDED_BY) {
        return None;
    }
    let peer = state.dispatcher.warm_peer(name).await?;
    let forwarder = &state.forwarder;
    let url = format!(
        "{}/v1/functions/{name}:invoke",
        peer.address.trim_end_matches('/')
    );
    let mut request = forwarder
        .client
        .post(url)
        .header(FORWARDED_BY, &forwarder.node_id)
        .body(input.to_string());
    for name in PASSED_ON {
        if let Some(value) = headers.get(name) {
            request = request.header(name, value);
        }
    }
    let answer = match request.send().await {
        Ok(answer) => answer,
        Err(err) if err.is_connect() => {
            tracing::warn!("cannot pass a call on to node {}: {err}", peer.node_id);
            return None;
        }
        Err(err) => return Some(Err(lost(&peer, &err))),
    };
    state.metrics.warm_forwarded(name);
    Some(passed_back(answer, &peer, state.max_report_bytes).await)
}

/// The other node's answer, as this node's (its body at most `limit` bytes).
async fn passed_back(
    mut answer: reqwest::Response,
    peer: &Peer,
    limit: usize,
) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut headers = HeaderMap::new();
    for name in PASSED_BACK {
        if let Some(value) = answer.headers().get(name) {
            headers.insert(HeaderName::from_static(name), value.clone());
        }
    }
    if let Ok(node) = HeaderValue::from_str(&peer.node_id) {
        headers.insert(HeaderName::from_static(SERVED_BY), node);
    }
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await.map_err(|err| lost(peer, &err))? {
        if body.len() + chunk.len() > limit {
            return Err(ApiError::new(
                StatusCode::BAD_GATEWAY,
                ApiErrorCode::BadGateway,
                format!("node {} answered more than {limit} bytes", peer.node_id),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}

/// The call reached the other node but its answer did not come back: it may have run,
/// so it is not run again here.
fn lost(peer: &Peer, err: &reqwest::Error) -> ApiError {
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        ApiErrorCode::NodeUnreachable,
        format!(
            "node {} took the call but its answer did not arrive: {err}",
            peer.node_id
        ),
    )
}
