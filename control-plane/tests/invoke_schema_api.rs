//! JSON Schema on invocations: an input that breaks `input_schema` is refused with a 400
//! listing each violation before anything is stored or started; an output that breaks
//! `output_schema` fails the execution with OUTPUT_SCHEMA_VIOLATION.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::json;
use support::{error_code, error_message, stdio_function, Server};

async fn no_executions(server: &Server) {
    let (status, body) = server.list_executions(&[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["executions"], json!([]), "nothing was stored");
}

#[tokio::test]
async fn input_schema_violations_are_listed_and_nothing_is_stored() {
    let server = Server::start().await;
    let schema = json!({
        "type": "object",
        "required": ["name", "age"],
        "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    });
    server
        .deploy(stdio_function(
            "typed",
            "python3 echo.py",
            json!({"input_schema": schema}),
        ))
        .await;
    let (status, body) = server.invoke("typed", json!({"name": 7, "age": -1})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(error_code(&body), "INVALID_INPUT");
    assert!(
        error_message(&body).contains("input_schema of \"typed\""),
        "{body}"
    );
    let details: Vec<&str> = body["error"]["details"]
        .as_array()
        .expect("details")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(details.len(), 2, "{details:?}");
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("/name: ") && d.contains("string")),
        "{details:?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("/age: ") && d.contains("minimum")),
        "{details:?}"
    );

    let (status, body) = server.invoke("typed", json!({"name": "Ada"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"]["details"][0]
            .as_str()
            .unwrap()
            .contains("\"age\""),
        "{body}"
    );
    let (status, _, body) = server
        .call(
            server
                .request(Method::POST, "/v1/functions/typed:enqueue")
                .json(&json!(3)),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    no_executions(&server).await;

    let (status, body) = server
        .invoke("typed", json!({"name": "Ada", "age": 36}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.assert_no_instances().await;
}

#[tokio::test]
async fn an_output_schema_violation_fails_the_execution() {
    let server = Server::start().await;
    server
        .deploy(stdio_function(
            "strict",
            "python3 echo.py",
            json!({"output_schema": {"type": "object", "required": ["answer"]}}),
        ))
        .await;
    let (status, body) = server.invoke("strict", json!({"n": 1})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["status"], "error");
    assert_eq!(body["error"]["code"], "OUTPUT_SCHEMA_VIOLATION");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"answer\""),
        "{body}"
    );
    let record = server
        .execution(body["executionId"].as_str().unwrap())
        .await;
    assert_eq!(record["status"], "error");
    assert_eq!(
        record["output"],
        json!({"echo": {"n": 1}}),
        "the bad output is kept"
    );
    server.assert_no_instances().await;
}
