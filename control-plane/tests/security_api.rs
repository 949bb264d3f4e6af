//! The API against a web page and a token that is too small: the exact requests a page
//! can send (text/plain and form bodies, a foreign Origin, a rebinding Host) are refused
//! even with a valid token and run nothing; each role gets what it grants and a 403
//! naming the role it lacks; tokens are shown once, stored hashed and revoked at once.

mod support;

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{counting_function, error_code, error_message, Server, ServerOptions};

/// Lines in the counting function's file: how often it ran.
fn runs(count_file: &Path) -> usize {
    std::fs::read_to_string(count_file)
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

/// Every file under `dir`, as bytes.
fn all_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path.display().to_string(), bytes));
        }
    }
    out
}

/// Whether any file under `dir` holds `needle`.
fn data_dir_holds(dir: &Path, needle: &str) -> Option<String> {
    all_bytes(dir).into_iter().find_map(|(path, bytes)| {
        bytes
            .windows(needle.len())
            .any(|window| window == needle.as_bytes())
            .then_some(path)
    })
}

#[tokio::test]
async fn what_a_web_page_can_send_is_refused_and_runs_nothing() {
    let server = Server::start().await;
    let temp = support::function_tempdir();
    let count = temp.path().join("count");
    server.deploy(counting_function("probe", &count)).await;
    let port = server.url.rsplit(':').next().unwrap().to_owned();
    let pwned = json!({"name": "pwned", "mode": "STDIO", "command": "sh -c id"}).to_string();

    // The exact cross-site request of the report: a page POSTs text/plain with its own
    // Origin and no token (a browser cannot add one).
    let response = server
        .client
        .post(format!("{}/v1/functions", server.url))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", "http://evil.example")
        .header("sec-fetch-site", "cross-site")
        .body(pwned.clone())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error(), "{}", response.status());

    // Each guard refuses on its own, even with a valid token.
    let with_token = |method: Method, path: &str| server.request(method, path);
    let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
        (
            with_token(Method::POST, "/v1/functions")
                .header("content-type", "text/plain")
                .body(pwned.clone()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            with_token(Method::POST, "/v1/functions")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("name=pwned"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            with_token(Method::POST, "/v1/functions").body(pwned.clone()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            with_token(Method::POST, "/v1/functions/probe:invoke")
                .header("content-type", "text/plain")
                .body("{}"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            with_token(Method::POST, "/v1/functions")
                .header("content-type", "application/json")
                .header("origin", "http://evil.example")
                .body(pwned.clone()),
            StatusCode::FORBIDDEN,
            "CROSS_ORIGIN",
        ),
        (
            with_token(Method::POST, "/v1/functions/probe:invoke")
                .header("origin", "null")
                .json(&json!({})),
            StatusCode::FORBIDDEN,
            "CROSS_ORIGIN",
        ),
        (
            with_token(Method::GET, "/v1/executions").header("sec-fetch-site", "cross-site"),
            StatusCode::FORBIDDEN,
            "CROSS_ORIGIN",
        ),
        // DNS rebinding: the page's own name now points here, so its requests are
        // same-origin for the browser, but they carry the page's Host.
        (
            with_token(Method::GET, "/v1/executions")
                .header("host", format!("evil.example:{port}")),
            StatusCode::FORBIDDEN,
            "HOST_NOT_ALLOWED",
        ),
        (
            with_token(Method::POST, "/v1/functions/probe:invoke")
                .header("host", format!("rebind.evil.example:{port}"))
                .json(&json!({})),
            StatusCode::FORBIDDEN,
            "HOST_NOT_ALLOWED",
        ),
    ];
    for (request, status, code) in cases {
        let (got, _, body) = server.call(request).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(error_code(&body), code, "{body}");
        assert!(body.get("executions").is_none(), "nothing leaks: {body}");
    }
    let (status, _, body) = server
        .call(server.request(Method::GET, "/v1/functions/pwned"))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "nothing was deployed: {body}"
    );
    assert_eq!(runs(&count), 0, "nothing ran");

    // The server's own origin, names it is reached by, and plain clients pass.
    let (status, _, body) = server
        .call(
            with_token(Method::POST, "/v1/functions/probe:invoke")
                .header("origin", &server.url)
                .header("sec-fetch-site", "same-origin")
                .json(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = server
        .call(with_token(Method::GET, "/v1/functions").header("host", format!("localhost:{port}")))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(runs(&count), 1);
    server.assert_no_instances().await;
}

#[tokio::test]
async fn allowed_hosts_extend_what_the_host_header_may_name() {
    let server = Server::start_with(ServerOptions {
        args: vec!["--allowed-host".into(), "gantry.example.test".into()],
        ..ServerOptions::default()
    })
    .await;
    let port = server.url.rsplit(':').next().unwrap().to_owned();
    for (host, status) in [
        (format!("gantry.example.test:{port}"), StatusCode::OK),
        (format!("GANTRY.example.test:{port}"), StatusCode::OK),
        (format!("other.example.test:{port}"), StatusCode::FORBIDDEN),
    ] {
        let (got, _, body) = server
            .call(
                server
                    .request(Method::GET, "/v1/functions")
                    .header("host", &host),
            )
            .await;
        assert_eq!(got, status, "{host}: {body}");
    }
}

/// Creates a token named `name` with `role`; answers its text.
async fn create_token(server: &Server, name: &str, role: &str) -> String {
    let (status, _, body) = server
        .call(
            server
                .request(Method::POST, "/v1/tokens")
                .json(&json!({"name": name, "role": role})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["name"], name);
    assert_eq!(body["role"], role);
    body["token"]
        .as_str()
        .expect("the token is shown once")
        .to_owned()
}

/// Sends `method path` with `token` (and `body` as JSON); answers status and body.
async fn as_token(
    server: &Server,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = server
        .client
        .request(method, format!("{}{path}", server.url))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let (status, _, body) = server.call(request).await;
    (status, body)
}

#[tokio::test]
async fn each_role_gets_what_it_grants_and_a_403_naming_what_it_lacks() {
    let server = Server::start().await;
    let temp = support::function_tempdir();
    let count = temp.path().join("count");
    server.deploy(counting_function("counted", &count)).await;
    let reader = create_token(&server, "reader", "read").await;
    let runner = create_token(&server, "runner", "invoke").await;
    let deployer = create_token(&server, "deployer", "deploy").await;
    let admin = create_token(&server, "second-admin", "admin").await;
    let manifest = |name: &str| counting_function(name, &count);
    let invoke = "/v1/functions/counted:invoke";
    let secret = json!({"value": "v-123456"});
    type Case<'a> = (
        &'a str,
        Method,
        &'a str,
        Option<Value>,
        u16,
        Option<&'a str>,
    );
    let cases: Vec<Case> = vec![
        (&reader, Method::GET, "/v1/functions", None, 200, None),
        (&reader, Method::GET, "/v1/executions", None, 200, None),
        (&reader, Method::GET, "/metrics", None, 200, None),
        (
            &reader,
            Method::POST,
            "/v1/functions",
            Some(manifest("r")),
            403,
            Some("deploy"),
        ),
        (
            &reader,
            Method::POST,
            invoke,
            Some(json!(1)),
            403,
            Some("invoke"),
        ),
        (
            &reader,
            Method::GET,
            "/v1/secrets",
            None,
            403,
            Some("deploy"),
        ),
        (&reader, Method::GET, "/v1/tokens", None, 403, Some("admin")),
        (&runner, Method::POST, invoke, Some(json!(2)), 200, None),
        (
            &runner,
            Method::POST,
            "/v1/functions/counted:enqueue",
            Some(json!(3)),
            202,
            None,
        ),
        (
            &runner,
            Method::GET,
            "/v1/functions/counted",
            None,
            200,
            None,
        ),
        (
            &runner,
            Method::POST,
            "/v1/functions",
            Some(manifest("i")),
            403,
            Some("deploy"),
        ),
        (
            &runner,
            Method::POST,
            "/v1/functions/counted:scale",
            Some(json!({"max_instances": 2})),
            403,
            Some("deploy"),
        ),
        (
            &runner,
            Method::PUT,
            "/v1/secrets/s",
            Some(secret.clone()),
            403,
            Some("deploy"),
        ),
        (
            &runner,
            Method::DELETE,
            "/v1/tokens/reader",
            None,
            403,
            Some("admin"),
        ),
        (
            &deployer,
            Method::POST,
            "/v1/functions",
            Some(manifest("d")),
            201,
            None,
        ),
        (
            &deployer,
            Method::PUT,
            "/v1/secrets/s",
            Some(secret),
            201,
            None,
        ),
        (&deployer, Method::GET, "/v1/secrets", None, 200, None),
        (
            &deployer,
            Method::POST,
            invoke,
            Some(json!(4)),
            403,
            Some("invoke"),
        ),
        (
            &deployer,
            Method::POST,
            "/v1/tokens",
            Some(json!({"name": "x", "role": "admin"})),
            403,
            Some("admin"),
        ),
        (&admin, Method::GET, "/v1/tokens", None, 200, None),
        (&admin, Method::POST, invoke, Some(json!(5)), 200, None),
    ];
    for (token, method, path, body, status, needed) in cases {
        let shown = format!("{method} {path}");
        let (got, answer) = as_token(&server, token, method, path, body).await;
        assert_eq!(got.as_u16(), status, "{shown}: {answer}");
        if let Some(role) = needed {
            assert_eq!(error_code(&answer), "FORBIDDEN", "{shown}");
            assert!(
                error_message(&answer).contains(&format!("needs the role {role}")),
                "{shown}: {answer}"
            );
        }
    }
    // Only the allowed calls ran: one invoke each by runner and admin, one enqueue.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while runs(&count) < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert_eq!(runs(&count), 3);
    let (status, _, body) = server
        .call(server.request(Method::GET, "/v1/functions/r"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn tokens_are_shown_once_stored_hashed_and_revoked_at_once() {
    let server = Server::start().await;
    let ci = create_token(&server, "ci", "invoke").await;
    let idle = create_token(&server, "idle", "read").await;
    for (body, expected) in [
        (json!({"name": "ci", "role": "read"}), StatusCode::CONFLICT),
        (
            json!({"name": "Bad Name", "role": "read"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "x", "role": "root"}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"name": "x"}), StatusCode::BAD_REQUEST),
    ] {
        let (status, _, answer) = server
            .call(server.request(Method::POST, "/v1/tokens").json(&body))
            .await;
        assert_eq!(status, expected, "{body}: {answer}");
    }
    let (status, _) = as_token(&server, &ci, Method::GET, "/v1/functions", None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _, listed) = server.call(server.request(Method::GET, "/v1/tokens")).await;
    assert_eq!(status, StatusCode::OK);
    let text = listed.to_string();
    for secret in [&ci, &idle, server.token.as_ref().unwrap()] {
        assert!(
            !text.contains(secret.as_str()),
            "the list shows a token: {text}"
        );
    }
    let tokens = listed["tokens"].as_array().unwrap();
    let by_name = |name: &str| {
        tokens
            .iter()
            .find(|token| token["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed: {text}"))
            .clone()
    };
    assert_eq!(
        by_name("admin")["role"],
        "admin",
        "the data directory's admin token"
    );
    assert_eq!(by_name("ci")["role"], "invoke");
    assert!(by_name("ci")["lastUsedAt"].is_string(), "{text}");
    assert!(by_name("idle")["lastUsedAt"].is_null(), "{text}");
    assert!(by_name("ci").get("token").is_none() && by_name("ci").get("hash").is_none());

    let (status, _, _) = server
        .call(server.request(Method::DELETE, "/v1/tokens/ci"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = as_token(&server, &ci, Method::GET, "/v1/functions", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked at once: {body}");
    let (status, _, _) = server
        .call(server.request(Method::DELETE, "/v1/tokens/ci"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Only hashes reach the disk (the admin token's own file aside).
    for token in [&ci, &idle] {
        assert_eq!(
            data_dir_holds(&server.data_dir, token),
            None,
            "{token} on disk"
        );
    }
    let holders: Vec<String> = all_bytes(&server.data_dir)
        .into_iter()
        .filter(|(_, bytes)| {
            let admin = server.token.as_ref().unwrap().as_bytes();
            bytes.windows(admin.len()).any(|w| w == admin)
        })
        .map(|(path, _)| path)
        .collect();
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert!(holders[0].ends_with("admin-token"), "{holders:?}");
}

#[tokio::test]
async fn a_restart_keeps_a_working_admin_token_file() {
    let mut server = Server::start().await;
    let first = server.token.clone().unwrap();
    server.stop().await;
    let mut again = server.restart(ServerOptions::default()).await;
    assert_eq!(
        again.token.as_deref(),
        Some(first.as_str()),
        "the same token"
    );
    let (status, _, _) = again.call(again.request(Method::GET, "/v1/tokens")).await;
    assert_eq!(status, StatusCode::OK);
    // Revoked behind the file's back: the next start writes a new admin token there.
    let (status, _, _) = again
        .call(again.request(Method::DELETE, "/v1/tokens/admin"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    again.stop().await;
    let third = again.restart(ServerOptions::default()).await;
    let new = third.token.clone().unwrap();
    assert_ne!(new, first);
    let (status, _, body) = third.call(third.request(Method::GET, "/v1/tokens")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = as_token(&third, &first, Method::GET, "/v1/functions", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
