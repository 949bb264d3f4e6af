//! Which permission each route needs. One table, so a new route cannot forget its
//! check: anything not listed needs at least a valid token with the read permission.

use axum::http::Method;
use percent_encoding::percent_decode_str;

use super::Permission;

/// The permission a request for `method` `path` needs; `None` for the routes that are
/// open by design: liveness and readiness probes, and the instances' internal routes,
/// which check each execution's own token instead.
pub fn required_permission(method: &Method, path: &str) -> Option<Permission> {
    // The OpenAPI document is the same for every server of a build (see
    // `api::openapi`): tools fetch it before they hold a token. The console's files hold
    // nothing secret; its pages send a token with each call.
    let console = path == "/ui" || path.starts_with("/ui/");
    if matches!(path, "/healthz" | "/readyz" | "/v1/openapi.json")
        || path.starts_with("/v1/internal/")
        || console
    {
        return None;
    }
    let reading = method == Method::GET || method == Method::HEAD;
    // The router hands handlers percent-decoded segments (`f%3Ascale` is `f:scale`), so
    // the policy judges the decoded ones.
    let decoded: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|segment| percent_decode_str(segment).decode_utf8_lossy().into_owned())
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let permission = match segments.as_slice() {
        ["v1", "tokens", ..] => Permission::Admin,
        ["v1", "secrets", ..] => Permission::Deploy,
        ["v1", "functions", _, "destination-key"] => Permission::Admin,
        _ if reading => Permission::Read,
        ["v1", "functions"] => Permission::Deploy,
        ["v1", "functions", name] if method == Method::POST => action_permission(name),
        ["v1", "functions", _] => Permission::Deploy,
        ["v1", "functions", ..]
        | ["v1", "executions", ..]
        | ["v1", "events"]
        | ["v1", "deliveries", ..] => Permission::Invoke,
        _ => Permission::Read,
    };
    Some(permission)
}

/// `POST /v1/functions/{name}:{action}`: scaling changes the function; invoking and
/// enqueueing run it.
fn action_permission(segment: &str) -> Permission {
    match segment.rsplit_once(':') {
        Some((_, "scale")) => Permission::Deploy,
        _ => Permission::Invoke,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_permission() {
        use Permission::*;
        let cases: &[(Method, &str, Option<Permission>)] = &[
            (Method::GET, "/healthz", None),
            (Method::GET, "/readyz", None),
            (Method::GET, "/v1/openapi.json", None),
            (Method::GET, "/ui", None),
            (Method::GET, "/ui/app.js", None),
            (Method::POST, "/v1/internal/executions/x:complete", None),
            (Method::GET, "/v1/internal/executions/x/payload", None),
            (Method::GET, "/metrics", Some(Read)),
            (Method::GET, "/v1/functions/f/destination-key", Some(Admin)),
            (Method::GET, "/v1/deliveries", Some(Read)),
            (Method::POST, "/v1/deliveries/x:redrive", Some(Invoke)),
            (Method::GET, "/v1/functions", Some(Read)),
            (Method::HEAD, "/v1/functions/f", Some(Read)),
            (Method::GET, "/v1/functions/f/versions", Some(Read)),
            (Method::POST, "/v1/functions", Some(Deploy)),
            (Method::PUT, "/v1/functions/f", Some(Deploy)),
            (Method::DELETE, "/v1/functions/f", Some(Deploy)),
            (Method::POST, "/v1/functions/f:scale", Some(Deploy)),
            (Method::POST, "/v1/functions/f:invoke", Some(Invoke)),
            (Method::POST, "/v1/functions/f:enqueue", Some(Invoke)),
            (Method::GET, "/v1/executions", Some(Read)),
            (Method::GET, "/v1/executions/e/logs", Some(Read)),
            (Method::POST, "/v1/executions/e:cancel", Some(Invoke)),
            (Method::POST, "/v1/executions/e:retry", Some(Invoke)),
            (Method::DELETE, "/v1/executions/e", Some(Invoke)),
            (Method::POST, "/v1/events", Some(Invoke)),
            (Method::GET, "/v1/secrets", Some(Deploy)),
            (Method::PUT, "/v1/secrets/db", Some(Deploy)),
            (Method::DELETE, "/v1/secrets/db", Some(Deploy)),
            (Method::GET, "/v1/tokens", Some(Admin)),
            (Method::GET, "/v1/nodes", Some(Read)),
            (Method::POST, "/v1/tokens", Some(Admin)),
            (Method::DELETE, "/v1/tokens/ci", Some(Admin)),
            (Method::GET, "/v1/nothing", Some(Read)),
            (Method::GET, "/", Some(Read)),
            (Method::POST, "/elsewhere", Some(Read)),
            (Method::POST, "/v1/functions/f%3Ascale", Some(Deploy)),
            (Method::GET, "/v1/%74okens", Some(Admin)),
        ];
        for (method, path, expected) in cases {
            assert_eq!(
                required_permission(method, path),
                *expected,
                "{method} {path}"
            );
        }
    }
}
