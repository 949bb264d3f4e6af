//! Secrets: set and listed by name and version only, mapped into a function's
//! environment by its manifest (an unknown name is refused at deploy), hidden as `***`
//! in what the server keeps of a run, effective for new executions and new warm
//! instances at once, never on disk in clear, and unusable with another key.

mod support;

use std::path::Path;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{error_code, error_message, stdio_function, warm_function, Server, ServerOptions};

const FIRST: &str = "s3cr3t-db-pass-9431";
const SECOND: &str = "n3w-db-pass-7702";

/// `PUT /v1/secrets/{name}`; answers status and body.
async fn put_secret(server: &Server, name: &str, value: &str) -> (StatusCode, Value) {
    let (status, _, body) = server
        .call(
            server
                .request(Method::PUT, &format!("/v1/secrets/{name}"))
                .json(&json!({ "value": value })),
        )
        .await;
    (status, body)
}

/// Whether any file under `dir` holds `needle`; answers the first such file.
fn file_holding(dir: &Path, needle: &str) -> Option<String> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.is_dir() {
            if let Some(found) = file_holding(&path, needle) {
                return Some(found);
            }
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
            {
                return Some(path.display().to_string());
            }
        }
    }
    None
}

fn reversed(text: &str) -> String {
    text.chars().rev().collect()
}

/// A function answering the secret mapped to DB_PASSWORD (see secret_echo.py).
fn leaky() -> Value {
    stdio_function(
        "leaky",
        "python3 secret_echo.py",
        json!({"secrets": {"DB_PASSWORD": "db"}}),
    )
}

#[tokio::test]
async fn secrets_reach_the_function_and_never_come_back() {
    let server = Server::start().await;
    let (status, body) = put_secret(&server, "db", FIRST).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"], 1);
    let (status, body) = put_secret(&server, "db", SECOND).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    let (status, body) = put_secret(&server, "db", FIRST).await;
    assert_eq!(
        (status, body["version"].clone()),
        (StatusCode::OK, json!(3))
    );
    for (name, value, code) in [
        ("bad name", "x-123456", "BAD_REQUEST"),
        ("empty", "", "BAD_REQUEST"),
    ] {
        let (status, body) = put_secret(&server, name, value).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(&body), code);
    }

    // Deploys refuse a secret that is not stored, naming the variable and the name.
    let (status, body) = server
        .try_deploy(stdio_function(
            "orphan",
            "python3 secret_echo.py",
            json!({"secrets": {"API_KEY": "nowhere"}}),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let message = error_message(&body);
    assert!(
        message.contains("secrets.API_KEY") && message.contains("\"nowhere\""),
        "{body}"
    );
    // A file secret needs the docker runtime.
    let (status, body) = server
        .try_deploy(stdio_function(
            "filed",
            "python3 secret_echo.py",
            json!({"secrets": {"KEY": {"secret": "db", "file": true}}}),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_message(&body).contains("docker runtime"), "{body}");

    server.deploy(leaky()).await;
    let (status, body) = server.invoke("leaky", json!({"var": "DB_PASSWORD"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let output = &body["output"];
    assert_eq!(
        output["reversed"],
        reversed(FIRST),
        "the function got the value"
    );
    assert_eq!(
        output["value"], "***",
        "the value is hidden in the result: {body}"
    );
    let id = body["executionId"].as_str().unwrap();
    let logs = server.log_lines(id).await;
    let text = serde_json::to_string(&logs).unwrap();
    assert!(text.contains("the secret is ***"), "{text}");
    assert!(!text.contains(FIRST), "{text}");
    for path in [
        "/v1/secrets",
        "/v1/secrets/db",
        "/v1/functions/leaky",
        "/v1/functions/leaky/versions",
    ] {
        let (status, _, body) = server.call(server.request(Method::GET, path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let shown = body.to_string();
        assert!(
            !shown.contains(FIRST) && !shown.contains(SECOND),
            "{path}: {shown}"
        );
    }
    let (_, _, listed) = server
        .call(server.request(Method::GET, "/v1/secrets"))
        .await;
    assert_eq!(listed["secrets"][0]["name"], "db");
    assert_eq!(listed["secrets"][0]["version"], 3);

    // A new value is what the next execution gets.
    put_secret(&server, "db", SECOND).await;
    let (_, body) = server.invoke("leaky", json!({"var": "DB_PASSWORD"})).await;
    assert_eq!(body["output"]["reversed"], reversed(SECOND), "{body}");

    // In use, a secret cannot be deleted; once unused it can, once.
    let (status, _, body) = server
        .call(server.request(Method::DELETE, "/v1/secrets/db"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(error_message(&body).contains("leaky"), "{body}");
    let (status, _, _) = server
        .call(server.request(Method::DELETE, "/v1/functions/leaky"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for expected in [StatusCode::NO_CONTENT, StatusCode::NOT_FOUND] {
        let (status, _, _) = server
            .call(server.request(Method::DELETE, "/v1/secrets/db"))
            .await;
        assert_eq!(status, expected);
    }
    for value in [FIRST, SECOND] {
        assert_eq!(
            file_holding(&server.data_dir, value),
            None,
            "{value} in clear"
        );
    }
    server.assert_no_instances().await;
}

#[tokio::test]
async fn a_new_value_replaces_the_warm_instances_that_use_it() {
    let server = Server::start().await;
    put_secret(&server, "api", FIRST).await;
    server
        .deploy(warm_function(
            "warm-secret",
            json!({"min_instances": 1, "max_instances": 1}),
            json!({"secrets": {"SECRET": "api"}}),
        ))
        .await;
    let (status, body) = server.invoke("warm-secret", json!({"n": 1})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"]["secret_reversed"], reversed(FIRST));
    let first_instance = server
        .execution(body["executionId"].as_str().unwrap())
        .await["instanceId"]
        .clone();

    put_secret(&server, "api", SECOND).await;
    let (status, body) = server.invoke("warm-secret", json!({"n": 2})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["output"]["secret_reversed"],
        reversed(SECOND),
        "{body}"
    );
    let second_instance = server
        .execution(body["executionId"].as_str().unwrap())
        .await["instanceId"]
        .clone();
    assert_ne!(first_instance, second_instance, "the instance was replaced");
}

#[tokio::test]
async fn another_key_is_a_clear_error_not_garbage() {
    let mut server = Server::start().await;
    put_secret(&server, "db", FIRST).await;
    server.deploy(leaky()).await;
    assert_eq!(server.stop().await, Some(0));

    let key_file = server.data_dir.join("secret-key");
    let moved = server.data_dir.join("secret-key.saved");
    std::fs::rename(&key_file, &moved).unwrap();
    let (code, stderr) = server.restart_exits(ServerOptions::default()).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("does not open the stored secrets"),
        "{stderr}"
    );
    assert!(stderr.contains("secret-key"), "{stderr}");
    let (code, stderr) = server
        .restart_exits(ServerOptions {
            env: vec![("GANTRY_SECRET_KEY".into(), "11".repeat(32))],
            ..ServerOptions::default()
        })
        .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("GANTRY_SECRET_KEY"), "{stderr}");

    std::fs::rename(&moved, &key_file).unwrap();
    let again = server.restart(ServerOptions::default()).await;
    let (status, body) = again.invoke("leaky", json!({"var": "DB_PASSWORD"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"]["reversed"], reversed(FIRST));
}
