//! The schema fuzzer against the real server: `schemathesis` reads `/v1/openapi.json`
//! from a running `gantry serve`, generates requests for every operation (valid and
//! invalid ones), and checks every answer: no 5xx, and status, content type, headers
//! and body as the document says.
//!
//! The run is bounded (a number of examples per operation, a fixed seed, two workers)
//! so it takes a few minutes at most. `schemathesis` comes from PyPI
//! (`scripts/ci-requirements.txt`, which `.ci/run` installs); without it the test fails
//! saying so.

mod support;

use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{fixture, stdio_function, Server, ServerOptions};

/// Examples per operation and phase.
const EXAMPLES: &str = "25";
/// The whole run's bound, far above what it needs on two cores.
const RUN_LIMIT: Duration = Duration::from_secs(540);
/// The checks every answer passes.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance";
/// The server's admin token: in memory only, so no generated request can revoke it.
const TOKEN: &str = "schemathesis-admin-token-0123456789abcdef";

/// The `schemathesis` command line: its script on PATH (`st` is its short name), else
/// its module through `python3` (a user install whose scripts are not on PATH).
fn schemathesis() -> Vec<String> {
    let candidates: [&[&str]; 3] = [
        &["schemathesis"],
        &["st"],
        &["python3", "-m", "schemathesis.cli"],
    ];
    for candidate in candidates {
        let found = std::process::Command::new(candidate[0])
            .args(&candidate[1..])
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if found {
            return candidate.iter().map(|part| part.to_string()).collect();
        }
    }
    panic!(
        "schemathesis is not installed: `pip install -r scripts/ci-requirements.txt` (.ci/run does)"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_conforms_to_the_openapi_document() {
    let st = schemathesis();
    let server = Server::start_with(ServerOptions {
        token: Some(TOKEN.to_owned()),
        ..ServerOptions::default()
    })
    .await;
    // A process-runtime function with an input schema, and one finished execution of
    // it, for the routes that need them (see the config file).
    let schema = json!({
        "type": "object",
        "properties": {"n": {"type": "integer"}},
        "additionalProperties": true
    });
    server
        .deploy(stdio_function(
            "echo",
            "python3 echo.py",
            json!({"input_schema": schema}),
        ))
        .await;
    let (status, answer) = server.invoke("echo", json!({"n": 1})).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let execution = answer["executionId"].as_str().expect("an execution id");

    let work = tempfile::tempdir().expect("temp dir");
    // The document is valid OpenAPI 3.1 by the specification's own schema and rules.
    let document = work.path().join("openapi.json");
    let served = server
        .get_open("/v1/openapi.json")
        .await
        .bytes()
        .await
        .unwrap();
    std::fs::write(&document, &served).unwrap();
    let checked = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator", "--schema", "3.1"])
        .arg(&document)
        .output()
        .expect("run python3");
    assert!(
        checked.status.success(),
        "openapi-spec-validator refuses the document (is it installed? `pip install -r scripts/ci-requirements.txt`):\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    let mut command = tokio::process::Command::new(&st[0]);
    command
        .args(&st[1..])
        .current_dir(work.path())
        .env("GANTRY_ST_FUNCTION", "echo")
        .env("GANTRY_ST_EXECUTION", execution)
        .env("NO_COLOR", "1")
        .arg("--config-file")
        .arg(fixture("schemathesis.toml"))
        .arg("run")
        .arg(format!("{}/v1/openapi.json", server.url))
        .args(["--header", &format!("Authorization: Bearer {TOKEN}")])
        .args(["--checks", CHECKS])
        .args(["--max-examples", EXAMPLES])
        .args(["--seed", "1"])
        // One worker: with two, which thread first meets a strategy depends on
        // scheduling, and hypothesis (which keeps per-thread caches) once failed inside
        // its own code on that path. One is also no slower on two cores.
        .args(["--workers", "1"])
        .args(["--request-timeout", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command.spawn().expect("start schemathesis");
    let output = tokio::time::timeout(RUN_LIMIT, child.wait_with_output())
        .await
        .expect("schemathesis ran past its bound")
        .expect("schemathesis ran");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "schemathesis found answers that break the document:\n{report}\nserver log:\n{}",
        server.stderr()
    );
    assert!(report.contains("Tested:"), "no summary:\n{report}");

    // The run left the server serving.
    let (status, _, _) = server
        .call(server.request(Method::GET, "/v1/functions"))
        .await;
    assert_eq!(status, StatusCode::OK);
}
