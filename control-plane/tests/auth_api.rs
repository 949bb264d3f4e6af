//! API tokens (DESIGN.md §8): with a token every `/v1` route needs it, health and metrics
//! stay open, the callback takes only the execution's own token; without a token the
//! server refuses to listen beyond loopback. Also the other start-up configuration errors.

mod support;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{
    callback_token, error_code, error_message, serve_exits, stdio_function, Server, ServerOptions,
};

const TOKEN: &str = "s3cret-token-for-tests";
const UNKNOWN: &str = "0190a2b4-7c3e-7000-8000-000000000000";

fn v1_routes() -> Vec<(Method, String)> {
    vec![
        (Method::POST, "/v1/functions".into()),
        (Method::GET, "/v1/functions".into()),
        (Method::GET, "/v1/functions/echo".into()),
        (Method::PUT, "/v1/functions/echo".into()),
        (Method::DELETE, "/v1/functions/echo".into()),
        (Method::GET, "/v1/functions/echo/versions".into()),
        (Method::POST, "/v1/functions/echo:invoke".into()),
        (Method::POST, "/v1/functions/echo:enqueue".into()),
        (Method::GET, "/v1/executions".into()),
        (Method::GET, format!("/v1/executions/{UNKNOWN}")),
        (Method::GET, format!("/v1/executions/{UNKNOWN}/logs")),
        (
            Method::GET,
            format!("/v1/executions/{UNKNOWN}/logs?follow=true"),
        ),
        (Method::POST, format!("/v1/executions/{UNKNOWN}:cancel")),
    ]
}

#[tokio::test]
async fn every_v1_route_needs_the_token() {
    let server = Server::start_with(ServerOptions {
        token: Some(TOKEN.into()),
        ..ServerOptions::default()
    })
    .await;
    server
        .deploy(stdio_function("echo", "python3 echo.py", json!({})))
        .await;
    let manifest = stdio_function("echo", "python3 echo.py", json!({"description": "v2"}));
    for (method, path) in v1_routes() {
        let url = format!("{}{path}", server.url);
        let request = || server.client.request(method.clone(), &url).json(&manifest);
        let (status, _, body) = server.call(request()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert_eq!(error_code(&body), "UNAUTHORIZED");
        assert!(
            error_message(&body).contains("Authorization: Bearer"),
            "{body}"
        );
        let (status, _, body) = server
            .call(request().header("Authorization", format!("Basic {TOKEN}")))
            .await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} with Basic: {body}"
        );
        for wrong in ["wrong", "s3cret-token-for-test", "s3cret-token-for-testsX"] {
            let (status, _, body) = server.call(request().bearer_auth(wrong)).await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} with {wrong}: {body}"
            );
            assert_eq!(error_code(&body), "FORBIDDEN");
        }
    }
    let (status, body) = server.invoke("echo", json!({"authorized": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"echo": {"authorized": true}}));
    let (status, list) = server.list_executions(&[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        list["executions"].as_array().unwrap().len(),
        1,
        "refused calls ran nothing"
    );
    let (status, _, versions) = server
        .call(server.request(Method::GET, "/v1/functions/echo/versions"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        versions["versions"].as_array().unwrap().len(),
        1,
        "the PUTs changed nothing"
    );

    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = server.get_open(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path} is open");
    }
    server.assert_no_instances().await;
}

#[tokio::test]
async fn the_api_token_does_not_complete_an_execution() {
    let server = Server::start_with(ServerOptions {
        token: Some(TOKEN.into()),
        ..ServerOptions::default()
    })
    .await;
    server
        .deploy(stdio_function("slow", "sleep 30", json!({})))
        .await;
    let id = server.enqueue("slow", json!(null)).await;
    server
        .wait_status(&id, "running", Duration::from_secs(30))
        .await;
    let token = callback_token(&id).expect("the watchdog holds a CALLBACK_TOKEN");
    assert_ne!(token, TOKEN);
    let url = format!("{}/v1/internal/executions/{id}:complete", server.url);
    let report = json!({"success": true, "output": "forged"});
    let (status, _, body) = server
        .call(server.client.post(&url).bearer_auth(TOKEN).json(&report))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _, body) = server.call(server.client.post(&url).json(&report)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // The execution's own token needs no API token.
    let (status, _, body) = server
        .call(server.client.post(&url).bearer_auth(&token).json(&report))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"applied": true}));
    assert_eq!(server.execution(&id).await["output"], "forged");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn without_a_token_only_loopback_is_allowed() {
    let (code, stderr) = serve_exits(&["--listen", "0.0.0.0:0"], &[]).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("GANTRY_TOKEN"), "{stderr}");
    assert!(stderr.contains("0.0.0.0:0"), "{stderr}");
    let (code, stderr) = serve_exits(&["--listen", "0.0.0.0:0"], &[("GANTRY_TOKEN", "")]).await;
    assert_eq!(code, Some(64), "an empty token is no token: {stderr}");
    assert!(stderr.contains("GANTRY_TOKEN"), "{stderr}");
}

/// Flags, environment, and the variable the error must name.
type Case = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[tokio::test]
async fn bad_settings_exit_64_naming_the_variable() {
    let cases: [Case; 5] = [
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "--watchdog",
                "/nonexistent/watchdog",
            ],
            &[],
            "GANTRY_WATCHDOG",
        ),
        (
            &["--listen", "127.0.0.1:0", "--runtime", "docker"],
            &[],
            "GANTRY_RUNTIME",
        ),
        (
            &["--listen", "127.0.0.1:0", "--log-cap-bytes", "0"],
            &[],
            "GANTRY_LOG_CAP_BYTES",
        ),
        (
            &["--listen", "127.0.0.1:0", "--advertise-url", "ftp://x"],
            &[],
            "GANTRY_ADVERTISE_URL",
        ),
        (
            &["--listen", "127.0.0.1:0"],
            &[("GANTRY_WATCHDOG", "/nonexistent/watchdog")],
            "GANTRY_WATCHDOG",
        ),
    ];
    for (args, env, variable) in cases {
        let (code, stderr) = serve_exits(args, env).await;
        assert_eq!(code, Some(64), "{args:?} {env:?}: {stderr}");
        assert!(stderr.contains(variable), "{args:?} {env:?}: {stderr}");
        assert!(
            stderr.starts_with("gantry serve: "),
            "one readable line: {stderr}"
        );
    }
    let (code, stderr) = serve_exits(
        &[
            "--listen",
            "127.0.0.1:0",
            "--watchdog",
            "/nonexistent/watchdog",
        ],
        &[],
    )
    .await;
    assert_eq!(code, Some(64));
    assert!(stderr.contains("/nonexistent/watchdog"), "{stderr}");
}
