//! `/v1/functions`: create, list, get, replace, versions and delete, route methods, and
//! executions accepted before a replace or delete (validation: `functions_validation_api`).

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{error_code, error_message, stdio_function, Server, ServerOptions};

fn echo(name: &str) -> Value {
    stdio_function(name, "python3 echo.py", json!({}))
}

#[tokio::test]
async fn create_list_get_and_duplicate() {
    let server = Server::start().await;
    let created = server.deploy(echo("hello")).await;
    assert_eq!(created["name"], "hello");
    assert_eq!(created["version"], 1);
    let hash = created["contentHash"].as_str().expect("contentHash");
    assert!(
        hash.starts_with("sha256:") && hash.len() == 7 + 64,
        "{hash}"
    );
    assert_eq!(created["spec"]["command"], "python3 echo.py");
    assert_eq!(created["spec"]["mode"], "STDIO");
    assert!(created["createdAt"].is_string(), "{created}");

    let (status, _, body) = server
        .call(
            server
                .request(Method::POST, "/v1/functions")
                .json(&echo("hello")),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(error_code(&body), "ALREADY_EXISTS");
    assert!(
        error_message(&body).contains("\"hello\" already exists"),
        "{body}"
    );
    assert!(
        error_message(&body).contains("PUT /v1/functions/hello"),
        "{body}"
    );

    server.deploy(echo("another")).await;
    let (status, _, list) = server
        .call(server.request(Method::GET, "/v1/functions"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["functions"]
        .as_array()
        .expect("functions")
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["another", "hello"], "listed by name: {list}");

    let (status, _, got) = server
        .call(server.request(Method::GET, "/v1/functions/hello"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, created, "get answers what create stored");

    let (status, _, body) = server
        .call(server.request(Method::GET, "/v1/functions/nobody"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "NOT_FOUND");
    assert!(
        error_message(&body).contains("\"nobody\" not found"),
        "{body}"
    );
}

#[tokio::test]
async fn replace_makes_versions_and_identical_replace_changes_nothing() {
    let server = Server::start().await;
    let v1 = server.deploy(echo("svc")).await;
    let mut changed = echo("svc");
    changed["description"] = json!("now with a description");
    let (status, _, v2) = server
        .call(
            server
                .request(Method::PUT, "/v1/functions/svc")
                .json(&changed),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v2}");
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["changed"], true);
    assert_ne!(v2["contentHash"], v1["contentHash"]);

    // The same definition with its keys in another order is the same content.
    let mut reordered = serde_json::Map::new();
    for (key, value) in changed.as_object().unwrap().iter().rev() {
        reordered.insert(key.clone(), value.clone());
    }
    let (status, _, same) = server
        .call(
            server
                .request(Method::PUT, "/v1/functions/svc")
                .json(&reordered),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same["changed"], false);
    assert_eq!(same["version"], 2);
    assert_eq!(same["contentHash"], v2["contentHash"]);

    let (status, _, body) = server
        .call(
            server
                .request(Method::PUT, "/v1/functions/svc")
                .json(&echo("other")),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "BAD_REQUEST");
    assert!(
        error_message(&body).contains("\"other\"") && error_message(&body).contains("\"svc\""),
        "{body}"
    );

    let (status, _, body) = server
        .call(
            server
                .request(Method::PUT, "/v1/functions/ghost")
                .json(&echo("ghost")),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "NOT_FOUND");

    let mut invalid = echo("svc");
    invalid["mode"] = json!("WARM");
    let (status, _, body) = server
        .call(
            server
                .request(Method::PUT, "/v1/functions/svc")
                .json(&invalid),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "INVALID_FUNCTION");
    let (_, _, list) = server
        .call(server.request(Method::GET, "/v1/functions"))
        .await;
    assert_eq!(
        list["functions"][0]["version"], 2,
        "list shows the current version"
    );

    let (status, _, history) = server
        .call(server.request(Method::GET, "/v1/functions/svc/versions"))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let versions = history["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 2, "{history}");
    assert_eq!(versions[0]["version"], 1);
    assert_eq!(versions[0]["contentHash"], v1["contentHash"]);
    assert_eq!(versions[1]["version"], 2);
    assert_eq!(versions[1]["contentHash"], v2["contentHash"]);
    assert_eq!(versions[1]["spec"]["description"], "now with a description");

    let (status, _, body) = server
        .call(server.request(Method::GET, "/v1/functions/ghost/versions"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // The current version is the one that runs.
    let (status, body) = server.invoke("svc", json!({"v": 2})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let execution = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(execution["version"], 2);
    server.assert_no_instances().await;
}

#[tokio::test]
async fn delete_then_get_and_invoke_are_404_and_the_name_can_be_reused() {
    let server = Server::start().await;
    server.deploy(echo("temp")).await;
    let (status, body) = server.invoke("temp", json!("before")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before = body["executionId"].as_str().unwrap().to_owned();
    let (status, _, body) = server
        .call(server.request(Method::DELETE, "/v1/functions/temp"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(body, Value::Null, "204 has no body");

    let (status, _, body) = server
        .call(server.request(Method::GET, "/v1/functions/temp"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = server.invoke("temp", json!(1)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "NOT_FOUND");
    let (status, _, body) = server
        .call(server.request(Method::DELETE, "/v1/functions/temp"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "deleting twice: {body}");
    let (status, _, list) = server
        .call(server.request(Method::GET, "/v1/functions"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["functions"], json!([]));

    let again = server.deploy(echo("temp")).await;
    assert_eq!(again["name"], "temp");
    // Version numbers are never reused: old executions keep pointing at what they ran.
    assert!(again["version"].as_u64().unwrap() > 1, "{again}");
    let old = server.execution(&before).await;
    assert_eq!(old["version"], 1);
    assert_eq!(old["output"], json!({"echo": "before"}));
    let (status, body) = server.invoke("temp", json!({"back": true})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["output"], json!({"echo": {"back": true}}));
    server.assert_no_instances().await;
}

#[tokio::test]
async fn actions_on_function_routes_need_the_right_method() {
    let server = Server::start().await;
    server.deploy(echo("routed")).await;
    let (status, _, body) = server
        .call(server.request(Method::GET, "/v1/functions/routed:invoke"))
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(error_code(&body), "METHOD_NOT_ALLOWED");
    let (status, _, body) = server
        .call(
            server
                .request(Method::POST, "/v1/functions/routed")
                .json(&json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert!(error_message(&body).contains(":invoke"), "{body}");
    // A method a route does not take is answered in the usual error shape too.
    for (method, path, allowed) in [
        (Method::PATCH, "/v1/functions/routed", "PUT"),
        (Method::DELETE, "/v1/executions", "GET"),
        (Method::POST, "/healthz", "GET"),
    ] {
        let (status, headers, body) = server.call(server.request(method.clone(), path)).await;
        assert_eq!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {body}"
        );
        assert_eq!(
            error_code(&body),
            "METHOD_NOT_ALLOWED",
            "{method} {path}: {body}"
        );
        assert!(error_message(&body).contains(path), "{body}");
        let allow = headers["allow"].to_str().unwrap();
        assert!(allow.contains(allowed), "{method} {path}: allow {allow}");
    }
    let (status, _, body) = server
        .call(server.request(Method::GET, "/v1/nothing-here"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "NOT_FOUND");
}

#[tokio::test]
async fn accepted_executions_run_the_version_they_were_accepted_for() {
    let server = Server::start().await;
    let version = |v: &str| {
        stdio_function(
            "pinned",
            "sh -c 'sleep 1; exec python3 env.py'",
            json!({"env": {"V": v}, "concurrency": {"max_in_flight": 1}}),
        )
    };
    server.deploy(version("1")).await;
    let wait = std::time::Duration::from_secs(60);
    let first = server.enqueue("pinned", json!(null)).await;
    server.wait_status(&first, "running", wait).await;
    let queued = server.enqueue("pinned", json!(null)).await;
    let (status, _, body) = server
        .call(
            server
                .request(Method::PUT, "/v1/functions/pinned")
                .json(&version("2")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let newer = server.enqueue("pinned", json!(null)).await;
    // Deleting the function does not drop what was accepted either.
    let (status, _, _) = server
        .call(server.request(Method::DELETE, "/v1/functions/pinned"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for (id, v) in [(&first, "1"), (&queued, "1"), (&newer, "2")] {
        let done = server.wait_terminal(id, wait).await;
        assert_eq!(done["status"], "success", "{done}");
        assert_eq!(done["version"].to_string(), v, "{done}");
        assert_eq!(done["output"]["env"]["V"], v, "{done}");
    }
    server.assert_no_instances().await;
}

#[tokio::test]
async fn settings_the_process_runtime_does_not_apply_come_back_as_warnings() {
    // As on a host without cgroups, where the process runtime cannot enforce limits.
    let server = Server::start_with(ServerOptions {
        env: vec![("GANTRY_TEST_NO_CGROUPS".into(), "1".into())],
        ..ServerOptions::default()
    })
    .await;
    let plain = server
        .deploy(stdio_function("plain", "python3 echo.py", json!({})))
        .await;
    assert!(plain.get("warnings").is_none(), "{plain}");
    let limited = server
        .deploy(stdio_function(
            "limited",
            "python3 echo.py",
            json!({"resources": {"memory_mb": 128, "pids": 10}, "image": "python:3.12-slim"}),
        ))
        .await;
    let warnings: Vec<&str> = limited["warnings"]
        .as_array()
        .expect("warnings")
        .iter()
        .filter_map(|w| w.as_str())
        .collect();
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(
        warnings[0].starts_with("resources.memory_mb is not enforced"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("resources.pids is not enforced"),
        "{warnings:?}"
    );
    assert!(warnings[2].contains("`image` is ignored"), "{warnings:?}");
    // Chains and secrets are acted on: no warning; a secret kept in plain `env` gets one.
    let (status, _, _) = server
        .call(
            server
                .request(Method::PUT, "/v1/secrets/api-token")
                .json(&json!({"value": "tok-123456"})),
        )
        .await;
    assert_eq!(status, 201);
    let chained = server
        .deploy(stdio_function(
            "chained",
            "python3 echo.py",
            json!({"chains": [{"target": "plain"}], "secrets": {"TOKEN": "api-token"},
                   "env": {"DB_PASSWORD": "hunter2"}}),
        ))
        .await;
    let warnings: Vec<String> = serde_json::from_value(chained["warnings"].clone()).unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].starts_with("env.DB_PASSWORD looks like a secret"),
        "{warnings:?}"
    );
    // The function still runs: the warnings are advice, not errors.
    let (status, body) = server.invoke("limited", json!({"n": 1})).await;
    assert_eq!(status, 200, "{body}");
    server.assert_no_instances().await;
}
