//! API tokens: every `/v1` route and `/metrics` need one on every listen address,
//! health and readiness stay open, the callback takes only the execution's own token;
//! only `--insecure-no-auth`, on loopback, serves without. Also the other start-up
//! configuration errors.

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
        let (status, headers, body) = server.call(request()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert_eq!(error_code(&body), "UNAUTHORIZED");
        assert_eq!(headers["www-authenticate"], "Bearer");
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
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {wrong}: {body}"
            );
            assert!(error_message(&body).contains("not valid"), "{body}");
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

    for path in ["/healthz", "/readyz"] {
        let response = server.get_open(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path} is open");
    }
    let response = server.get_open("/metrics").await;
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "metrics need a token"
    );
    assert!(server.metrics_text().await.contains("gantry_"));
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
async fn without_credentials_only_an_explicit_loopback_flag_serves() {
    let (code, stderr) = serve_exits(&["--listen", "0.0.0.0:0", "--insecure-no-auth"], &[]).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("GANTRY_INSECURE_NO_AUTH"), "{stderr}");
    assert!(stderr.contains("0.0.0.0:0"), "{stderr}");

    // Beyond loopback the server needs no flag: tokens hold on every address.
    let wide = Server::start_with(ServerOptions {
        args: vec!["--listen".into(), "0.0.0.0:0".into()],
        ..ServerOptions::default()
    })
    .await;
    let response = wide.get_open("/v1/functions").await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, _, _) = wide.call(wide.request(Method::GET, "/v1/functions")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the admin token of its data directory works"
    );

    let open = Server::start_with(ServerOptions {
        args: vec!["--insecure-no-auth".into()],
        ..ServerOptions::default()
    })
    .await;
    assert!(
        open.stderr().contains("WARNING: --insecure-no-auth"),
        "{}",
        open.stderr()
    );
    assert!(
        !open.data_dir.join("admin-token").exists(),
        "no token is made for a server that takes none"
    );
    let response = open.get_open("/v1/functions").await;
    assert_eq!(response.status(), StatusCode::OK);
}

/// Flags, environment, and the variable the error must name.
type Case = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[tokio::test]
async fn bad_settings_exit_64_naming_the_variable() {
    let cases: [Case; 7] = [
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
            &[
                "--listen",
                "127.0.0.1:0",
                "--function-user",
                "no-such-user-here",
            ],
            &[],
            "GANTRY_FUNCTION_USER",
        ),
        (
            &["--listen", "127.0.0.1:0"],
            &[("GANTRY_SECRET_KEY", "not-a-key")],
            "GANTRY_SECRET_KEY",
        ),
        (
            &["--listen", "127.0.0.1:0", "--docker-cpus", "0"],
            &[],
            "GANTRY_DOCKER_CPUS",
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

#[tokio::test]
async fn a_second_server_on_a_data_directory_in_use_exits_64() {
    let mut server = Server::start().await;
    let (code, stderr) = server.restart_exits(ServerOptions::default()).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert!(
        stderr.contains("GANTRY_DATA_DIR") && stderr.contains("in use by another gantry server"),
        "{stderr}"
    );
    let (status, _, _) = server
        .call(server.request(Method::GET, "/v1/functions"))
        .await;
    assert_eq!(status, StatusCode::OK, "the first server serves on");
    server.kill9().await;
    let restarted = server.restart(ServerOptions::default()).await;
    let (status, _, _) = restarted
        .call(restarted.request(Method::GET, "/v1/functions"))
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a killed server leaves no lock behind"
    );
}
