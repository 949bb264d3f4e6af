//! The checks every request passes before a handler sees it:
//!
//! - the `Host` header names this server (an IP address, `localhost`, the advertised
//!   name or an `--allowed-host`), so a page that rebinds its own DNS name to this
//!   address cannot talk to it;
//! - no browser request from another site: a foreign `Origin`, or `Sec-Fetch-Site`
//!   saying `cross-site`/`same-site`, is refused;
//! - a body is declared `application/json`: a page may send `text/plain` (or a form)
//!   anywhere without asking, but never JSON;
//! - the bearer token grants what the route needs ([`crate::access::policy`]).

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use super::error::ApiErrorCode;
use super::{bearer, ApiError, AppState};
use crate::access::{required_permission, AuthError};

/// The host names requests may carry in `Host` besides IP addresses.
#[derive(Debug, Clone)]
pub struct HostPolicy {
    names: HashSet<String>,
}

impl HostPolicy {
    /// `localhost` and `names` (lowercase, without port). IP addresses are always
    /// allowed: DNS rebinding needs a name.
    pub fn new(names: impl IntoIterator<Item = String>) -> HostPolicy {
        let mut all: HashSet<String> = names
            .into_iter()
            .map(|name| name.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect();
        all.insert("localhost".to_owned());
        HostPolicy { names: all }
    }

    /// Whether a `Host` header value (`name[:port]`, `[v6]:port`) names this server.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host);
        if name.parse::<IpAddr>().is_ok() {
            return true;
        }
        self.names
            .contains(&name.trim_end_matches('.').to_ascii_lowercase())
    }
}

/// The name part of a `Host` value: without the port, and without the brackets of an
/// IPv6 literal.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Runs the checks, then the handler; the caller's principal goes into the request's
/// extensions.
pub async fn guard(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_request(&state, &request)?;
    let headers = request.headers();
    if let Some(permission) = required_permission(request.method(), request.uri().path()) {
        let principal = state
            .credentials
            .authenticate(bearer(headers), permission)
            .map_err(ApiError::from)?;
        request.extensions_mut().insert(principal);
    }
    Ok(next.run(request).await)
}

/// The guard of the listener instances reach (see [`super::internal_app`]): the same
/// checks but no API token, since it serves only routes that check the execution's own
/// token; anything else is a plain 404 that says nothing of an API.
pub async fn guard_internal(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    check_request(&state, &request)?;
    Ok(next.run(request).await)
}

/// The checks that need no credential: Host, the browser's site, the body's type.
fn check_request(state: &AppState, request: &Request) -> Result<(), ApiError> {
    let headers = request.headers();
    check_host(&state.hosts, headers)?;
    check_site(headers)?;
    check_body_type(request.method(), headers)
}

fn check_host(hosts: &HostPolicy, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::HOST) else {
        // Browsers always send Host; a client that does not is not a web page.
        return Ok(());
    };
    let host = value.to_str().unwrap_or_default();
    if hosts.allows(host) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        ApiErrorCode::HostNotAllowed,
        format!(
            "the Host header {host:?} does not name this server; use its address, or start it with --allowed-host NAME"
        ),
    ))
}

fn check_site(headers: &HeaderMap) -> Result<(), ApiError> {
    let refused = |what: String| {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ApiErrorCode::CrossOrigin,
            format!("{what}: this API takes no requests from web pages of other sites"),
        ))
    };
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or_default();
        if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
            return refused(format!("Sec-Fetch-Site is {site:?}"));
        }
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or_default();
    let own = headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .is_some_and(|host| {
            ["http://", "https://"].iter().any(|scheme| {
                origin
                    .strip_prefix(scheme)
                    .is_some_and(|rest| rest.eq_ignore_ascii_case(host))
            })
        });
    if own {
        Ok(())
    } else {
        refused(format!("the Origin {origin:?} is not this server's"))
    }
}

/// A request that may carry a body must declare it JSON; one without a Content-Type
/// must be empty.
fn check_body_type(method: &Method, headers: &HeaderMap) -> Result<(), ApiError> {
    if !matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
        return Ok(());
    }
    let refused = |what: String| {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiErrorCode::UnsupportedMediaType,
            format!("{what}; send the body as `Content-Type: application/json`"),
        ))
    };
    match headers.get(header::CONTENT_TYPE) {
        Some(value) => {
            let text = value.to_str().unwrap_or_default();
            if is_json(text) {
                Ok(())
            } else {
                refused(format!("the Content-Type {text:?} is not JSON"))
            }
        }
        None if has_body(headers) => refused("the body has no Content-Type".to_owned()),
        None => Ok(()),
    }
}

/// `application/json` or `application/<something>+json`, any parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence
            .strip_prefix("application/")
            .is_some_and(|subtype| subtype.ends_with("+json"))
}

fn has_body(headers: &HeaderMap) -> bool {
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    match declared_length {
        Some(length) => length > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> ApiError {
        let message = err.to_string();
        match err {
            AuthError::Missing | AuthError::Invalid => ApiError::new(
                StatusCode::UNAUTHORIZED,
                ApiErrorCode::Unauthorized,
                message,
            )
            .challenge(),
            AuthError::Forbidden { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, ApiErrorCode::Forbidden, message)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hosts_are_addresses_localhost_or_allowed_names() {
        let policy = HostPolicy::new(["gantry.internal".to_owned()]);
        for good in [
            "127.0.0.1:8080",
            "10.1.2.3",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST",
            "gantry.internal:443",
            "Gantry.Internal.",
        ] {
            assert!(policy.allows(good), "{good}");
        }
        for bad in [
            "evil.example:8080",
            "localhost.evil.example",
            "",
            "127.0.0.1.nip.io",
        ] {
            assert!(!policy.allows(bad), "{bad}");
        }
    }

    #[test]
    fn only_the_servers_own_origin_passes() {
        let ok = |pairs: &[(&str, &str)]| check_site(&headers(pairs)).is_ok();
        assert!(ok(&[("host", "127.0.0.1:8080")]));
        assert!(ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080")
        ]));
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(ok(&[("sec-fetch-site", "none")]));
        assert!(!ok(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example")
        ]));
        assert!(!ok(&[("host", "127.0.0.1:8080"), ("origin", "null")]));
        assert!(
            !ok(&[("origin", "http://127.0.0.1:8080")]),
            "no Host to match"
        );
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(!ok(&[("sec-fetch-site", "same-site")]));
    }

    #[test]
    fn bodies_must_be_declared_json() {
        let check = |method: Method, pairs: &[(&str, &str)]| {
            check_body_type(&method, &headers(pairs)).is_ok()
        };
        assert!(check(Method::POST, &[("content-type", "application/json")]));
        assert!(check(
            Method::PUT,
            &[("content-type", "Application/JSON; charset=utf-8")]
        ));
        assert!(check(
            Method::POST,
            &[("content-type", "application/merge-patch+json")]
        ));
        assert!(check(Method::POST, &[]), "no body at all");
        assert!(check(Method::POST, &[("content-length", "0")]));
        assert!(check(Method::GET, &[("content-type", "text/plain")]));
        assert!(!check(Method::POST, &[("content-type", "text/plain")]));
        assert!(!check(
            Method::POST,
            &[("content-type", "application/x-www-form-urlencoded")]
        ));
        assert!(!check(
            Method::POST,
            &[("content-type", "multipart/form-data")]
        ));
        assert!(!check(Method::POST, &[("content-length", "12")]));
        assert!(!check(Method::PUT, &[("transfer-encoding", "chunked")]));
    }
}
