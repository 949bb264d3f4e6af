//! Bad input from a token holder costs little: schemas that loop or explode are refused
//! at deploy naming the place, patterns cannot backtrack, and the server's memory stays
//! bounded while it checks hostile inputs.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::{error_message, stdio_function, Server};

/// The server's resident memory, in KiB.
fn rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .expect("VmRSS")
}

#[tokio::test]
async fn schemas_that_loop_or_explode_are_refused_at_deploy() {
    let server = Server::start().await;
    let cyclic = json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"});
    let mut defs = serde_json::Map::new();
    defs.insert("d0".into(), json!({"type": "string"}));
    for level in 1..=16 {
        let below = format!("#/$defs/d{}", level - 1);
        defs.insert(
            format!("d{level}"),
            json!({"allOf": [{"$ref": below}, {"$ref": below}]}),
        );
    }
    let exploding = json!({"$defs": defs, "$ref": "#/$defs/d16"});
    for (field, schema, expected) in [
        ("input_schema", cyclic.clone(), "reference cycle"),
        ("output_schema", cyclic, "reference cycle"),
        ("input_schema", exploding, "subschemas"),
        (
            "input_schema",
            json!({"$ref": "http://169.254.169.254/schema"}),
            "not local",
        ),
    ] {
        let manifest = stdio_function("looped", "cat", json!({ field: schema }));
        let (status, body) = server.try_deploy(manifest).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let message = error_message(&body);
        assert!(
            message.contains(field) && message.contains(expected),
            "{message}"
        );
    }
    let (status, _, _) = server
        .call(server.request(reqwest::Method::GET, "/v1/functions/looped"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was deployed");
}

#[tokio::test]
async fn hostile_inputs_are_checked_quickly_in_bounded_memory() {
    let server = Server::start().await;
    let schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}},
        "required": ["name"]
    });
    server
        .deploy(stdio_function(
            "strict",
            "cat",
            json!({"input_schema": schema}),
        ))
        .await;
    let before = rss_kib(&server);
    // Catastrophic for a backtracking engine; the linear one answers at once.
    let evil = format!("{}!", "a".repeat(50_000));
    for _ in 0..20 {
        let (status, body) = server.invoke("strict", json!({"name": evil})).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(error_message(&body).contains("/name"), "{body}");
    }
    let after = rss_kib(&server);
    assert!(
        after < before + 200 * 1024,
        "the server grew from {before} KiB to {after} KiB"
    );
    let (status, body) = server.invoke("strict", json!({"name": "aaa"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    server.assert_no_instances().await;
}
