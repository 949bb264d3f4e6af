//! `POST /v1/functions` validation: every bad definition is a 400 INVALID_FUNCTION whose
//! `details` name each problem in words a user can act on; bad JSON is a 400 and an
//! oversized body a 413.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{error_code, error_message, stdio_function, Server, ServerOptions};

fn echo(name: &str) -> Value {
    stdio_function(name, "python3 echo.py", json!({}))
}

/// Deploys `manifest`, asserts 400 INVALID_FUNCTION and answers the details.
async fn rejected(server: &Server, manifest: Value) -> Vec<String> {
    let (status, body) = server.try_deploy(manifest.clone()).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "{manifest} was accepted: {body}"
    );
    assert_eq!(error_code(&body), "INVALID_FUNCTION", "{body}");
    assert!(
        error_message(&body).starts_with("invalid function definition: "),
        "{body}"
    );
    body["error"]["details"]
        .as_array()
        .expect("details list the problems")
        .iter()
        .map(|problem| problem.as_str().expect("problems are sentences").to_owned())
        .collect()
}

fn mentions(problems: &[String], words: &[&str]) -> bool {
    problems
        .iter()
        .any(|problem| words.iter().all(|word| problem.contains(word)))
}

#[tokio::test]
async fn invalid_names_are_rejected_with_the_rule() {
    let server = Server::start().await;
    for name in ["Upper", "-dash", &"a".repeat(64), "under_score", ""] {
        let problems = rejected(&server, echo(name)).await;
        assert!(
            mentions(
                &problems,
                &["name", "is invalid", "lowercase letters, digits and dashes"]
            ),
            "{name:?}: {problems:?}"
        );
    }
    // 63 characters is the longest valid name.
    server.deploy(echo(&"a".repeat(63))).await;
}

#[tokio::test]
async fn missing_fields_unknown_modes_and_typos_are_named() {
    let server = Server::start().await;
    let problems = rejected(&server, json!({"name": "nothing", "mode": "STDIO"})).await;
    assert!(
        mentions(&problems, &["`command` or `image` is required"]),
        "{problems:?}"
    );

    for mode in ["WARM", "bogus"] {
        let mut manifest = echo("moded");
        manifest["mode"] = json!(mode);
        let problems = rejected(&server, manifest).await;
        assert!(
            mentions(
                &problems,
                &["mode: unknown variant", mode, "HTTP", "STDIO", "FILE"]
            ),
            "mode {mode}: {problems:?}"
        );
    }

    let mut typo = echo("typo");
    typo["comand"] = json!("python3 echo.py");
    let problems = rejected(&server, typo).await;
    assert!(
        mentions(&problems, &["unknown field", "comand"]),
        "{problems:?}"
    );

    let problems = rejected(&server, json!({"mode": "STDIO", "command": "true"})).await;
    assert!(
        mentions(&problems, &["missing field", "name"]),
        "{problems:?}"
    );
}

#[tokio::test]
async fn wrong_types_name_their_field() {
    let server = Server::start().await;
    let cases = [
        (
            json!({"resources": {"timeout_ms": "fast"}}),
            "resources: invalid type: string \"fast\", expected u64",
        ),
        (
            json!({"concurrency": {"max_in_flight": -1}}),
            "concurrency: invalid value: integer `-1`",
        ),
        (json!({"env": {"A": 1}}), "env: invalid type: integer `1`"),
        (
            json!({"resources": {"timout_ms": 5}}),
            "resources: unknown field `timout_ms`",
        ),
        (
            json!({"enabled": "yes"}),
            "enabled: invalid type: string \"yes\"",
        ),
    ];
    for (extra, words) in cases {
        let mut manifest = echo("typed");
        for (key, value) in extra.as_object().unwrap() {
            manifest[key] = value.clone();
        }
        let problems = rejected(&server, manifest.clone()).await;
        assert!(mentions(&problems, &[words]), "{manifest}: {problems:?}");
    }
}

#[tokio::test]
async fn bad_schemas_env_paths_and_limits_are_explained() {
    let server = Server::start().await;
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"input_schema": {"type": "nope"}}),
            vec![
                "input_schema is not a valid JSON Schema: at /type: ",
                "\"nope\"",
            ],
        ),
        (
            json!({"output_schema": 7}),
            vec!["output_schema must be a JSON Schema object"],
        ),
        (
            json!({"env": {"EXECUTION_ID": "mine"}}),
            vec!["EXECUTION_ID", "set by Gantry"],
        ),
        (
            json!({"env": {"1BAD": "x"}}),
            vec!["\"1BAD\" is not a valid variable name"],
        ),
        (
            json!({"working_dir": "relative/dir"}),
            vec!["working_dir", "absolute path", "relative/dir"],
        ),
        (
            json!({"working_dir": "/nonexistent/gantry-test-dir"}),
            vec!["working_dir", "not a directory"],
        ),
        (
            json!({"resources": {"timeout_ms": 0}}),
            vec!["resources.timeout_ms must be at least 1"],
        ),
        (
            json!({"resources": {"timeout_ms": 900_001}}),
            vec!["resources.timeout_ms must be at most 900000", "900001"],
        ),
        (
            json!({"concurrency": {"max_in_flight": 0}}),
            vec!["concurrency.max_in_flight must be at least 1"],
        ),
        (json!({"command": ""}), vec!["`command` is empty"]),
        (
            json!({"command": "python3 'echo.py"}),
            vec!["unbalanced quotes"],
        ),
    ];
    for (extra, words) in cases {
        let mut manifest = echo("checked");
        for (key, value) in extra.as_object().unwrap() {
            manifest[key] = value.clone();
        }
        let problems = rejected(&server, manifest.clone()).await;
        assert!(mentions(&problems, &words), "{manifest}: {problems:?}");
    }

    // Every problem of one manifest is listed, not only the first.
    let mut many = echo("Bad Name");
    many["resources"] = json!({"timeout_ms": 0});
    many["concurrency"] = json!({"max_in_flight": 0});
    let problems = rejected(&server, many).await;
    assert_eq!(problems.len(), 3, "{problems:?}");

    let (status, _, list) = server
        .call(server.request(Method::GET, "/v1/functions"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["functions"], json!([]), "nothing invalid was stored");
}

#[tokio::test]
async fn chains_and_triggers_are_checked_at_deploy() {
    let server = Server::start().await;
    server.deploy(echo("next")).await;
    let with = |extra: Value| {
        let mut manifest = echo("chained");
        for (key, value) in extra.as_object().unwrap() {
            manifest[key] = value.clone();
        }
        manifest
    };
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (
            json!({"chains": [{"target": "next"}, {"target": "nope"}]}),
            vec!["chains[1].target \"nope\" is not a deployed function"],
        ),
        (
            json!({"chains": [{"target": "next", "condition": {"path": "output.total", "op": "bigger", "value": 1}}]}),
            vec!["chains[0].condition: unknown op \"bigger\"; use one of eq, ne, gt, gte, lt, lte, exists, in, contains"],
        ),
        (
            json!({"chains": [{"target": "next", "condition": {"any": [{"path": "output.tier", "op": "in", "value": "gold"}]}}]}),
            vec!["chains[0].condition.any[0]: `in` needs a `value` that is a list"],
        ),
        (
            json!({"chains": [{"target": "next", "condition": {"path": "output.x", "op": "eq", "value": 1, "all": []}}]}),
            vec!["chains[0].condition: a rule has either `path`, `op` and `value`, or exactly one of"],
        ),
        (
            json!({"chains": [{"target": "next", "condition": "sometimes"}]}),
            vec!["chains[0].condition: unknown condition \"sometimes\"", "always, on_success, on_failure, on_timeout"],
        ),
        (
            json!({"chains": [{"target": "next", "input": {"template": {"id": "{{output.id"}}}]}),
            vec!["chains[0].input.template.id: placeholder \"{{output.id\" is not closed"],
        ),
        (
            json!({"chains": [{"target": "next", "condition": {"not": {"path": "output..x", "op": "exists"}}}]}),
            vec!["chains[0].condition.not: path \"output..x\" has an empty segment"],
        ),
        (
            json!({"chains": [{"target": "next", "delay": 5}]}),
            vec!["chains[0]: unknown field `delay`", "`delay_ms`"],
        ),
        (
            json!({"triggers": [{"type": "order.created", "condition": "always"}]}),
            vec!["triggers[0].condition: a trigger's condition is a rule object"],
        ),
        (
            json!({"triggers": [{"type": "order.created", "condition": {"path": "data.total", "op": "gt"}}]}),
            vec!["triggers[0].condition: `gt` needs a `value`"],
        ),
    ];
    for (extra, words) in cases {
        let manifest = with(extra);
        let problems = rejected(&server, manifest.clone()).await;
        assert!(mentions(&problems, &words), "{manifest}: {problems:?}");
    }
    // Every unknown target is listed.
    let problems = rejected(
        &server,
        with(json!({"chains": [{"target": "gone"}, {"target": "next"}, {"target": "lost"}]})),
    )
    .await;
    assert_eq!(
        problems,
        [
            "chains[0].target \"gone\" is not a deployed function",
            "chains[2].target \"lost\" is not a deployed function"
        ]
    );

    // A chain to itself is allowed (the depth cap stops it at run time), and what is
    // stored is the definition in its canonical form.
    let chains = json!([
        {"target": "chained", "condition": {"path": "output.again", "op": "eq", "value": true}, "delay_ms": 10},
        {"target": "next", "condition": "on_success", "input": {"template": {"id": "{{output.id}}", "note": "from {{function}}"}}},
        {"target": "next", "condition": "always", "input": {"fields": {"customer.id": "output.id"}}}
    ]);
    let created = server
        .deploy(with(json!({
            "chains": chains,
            "triggers": [{"type": "order.created", "condition": {"path": "data.total", "op": "gte", "value": 100}}]
        })))
        .await;
    assert!(created.get("warnings").is_none(), "{created}");
    let mut canonical = chains.clone();
    canonical[1].as_object_mut().unwrap().remove("condition");
    assert_eq!(created["spec"]["chains"], canonical, "{created}");
    assert_eq!(created["spec"]["triggers"][0]["type"], "order.created");

    // A target deleted since cannot be chained to by a new version.
    let (status, _, _) = server
        .call(server.request(Method::DELETE, "/v1/functions/next"))
        .await;
    assert!(status.is_success(), "{status}");
    let mut again = with(json!({"chains": chains}));
    again["description"] = json!("changed");
    let (status, _, body) = server
        .call(
            server
                .request(Method::PUT, "/v1/functions/chained")
                .json(&again),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["error"]["details"],
        json!([
            "chains[1].target \"next\" is not a deployed function",
            "chains[2].target \"next\" is not a deployed function"
        ]),
        "{body}"
    );
}

#[tokio::test]
async fn an_image_only_function_needs_the_docker_runtime() {
    let server = Server::start().await;
    let problems = rejected(
        &server,
        json!({"name": "boxed", "image": "example/boxed:1", "mode": "STDIO"}),
    )
    .await;
    assert!(
        mentions(&problems, &["`command` is required", "--runtime docker"]),
        "{problems:?}"
    );
}

#[tokio::test]
async fn bad_json_and_oversized_bodies() {
    let server = Server::start_with(ServerOptions {
        args: vec!["--max-body-bytes".into(), "1000".into()],
        ..ServerOptions::default()
    })
    .await;
    let (status, _, body) = server
        .call(
            server
                .request(Method::POST, "/v1/functions")
                .header("content-type", "application/json")
                .body("{\"name\": \"broken\","),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "BAD_REQUEST");
    assert!(error_message(&body).contains("not valid JSON"), "{body}");

    let (status, body) = server.try_deploy(json!([1, 2])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "INVALID_FUNCTION", "{body}");
    assert!(error_message(&body).contains("JSON object"), "{body}");
    assert!(
        error_message(&body).contains("the body is an array"),
        "{body}"
    );

    let mut big = echo("big");
    big["description"] = json!("x".repeat(2_000));
    let (status, body) = server.try_deploy(big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "TOO_LARGE");
    assert!(
        error_message(&body).contains("GANTRY_MAX_BODY_BYTES"),
        "{body}"
    );

    // The same limit holds for invocation inputs.
    server.deploy(echo("small")).await;
    let (status, body) = server.invoke("small", json!("y".repeat(2_000))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(error_code(&body), "TOO_LARGE");
}
