//! `GET /v1/openapi.json` and `gantry openapi`: the same OpenAPI 3.1 document, served
//! without a token, and one that matches the router both ways: every documented
//! operation reaches a handler, and every method a documented path answers is
//! documented.

mod support;

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::{error_code, error_message, gantry_bin, Server};

/// The methods the router may answer on a path (HEAD follows GET in axum).
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// A path of the document with its parameters filled: names and ids that exist
/// nowhere, so no request changes anything.
fn concrete(path: &str) -> String {
    path.replace("{name}", "no-such-thing")
        .replace("{id}", "00000000-0000-7000-8000-000000000000")
}

/// The document's paths with the methods of each.
fn operations(document: &Value) -> Vec<(String, BTreeSet<String>)> {
    document["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .map(|(path, item)| {
            let methods = METHODS
                .iter()
                .filter(|method| item.get(**method).is_some())
                .map(|method| method.to_string())
                .collect();
            (path.clone(), methods)
        })
        .collect()
}

/// Whether an answer came from the router's fallbacks (no route, or no such method on
/// a route) rather than from a handler.
fn from_fallback(status: StatusCode, body: &Value) -> bool {
    (status == StatusCode::NOT_FOUND && error_message(body) == "no such route")
        || (status == StatusCode::METHOD_NOT_ALLOWED
            && error_message(body).contains(" is not allowed on "))
}

#[tokio::test]
async fn the_served_document_is_the_printed_one_and_needs_no_token() {
    let server = Server::start().await;
    let response = server.get_open("/v1/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let served: Value = response.json().await.unwrap();

    let printed = std::process::Command::new(gantry_bin())
        .arg("openapi")
        .env_remove("GANTRY_TOKEN")
        .output()
        .expect("run gantry openapi");
    assert!(printed.status.success(), "{printed:?}");
    let printed: Value = serde_json::from_slice(&printed.stdout).expect("JSON on stdout");
    assert_eq!(served, printed);

    assert_eq!(served["openapi"], "3.1.0");
    // Every operation has an id of its own (generators name their methods after them).
    let mut ids = BTreeSet::new();
    for (path, methods) in operations(&served) {
        for method in methods {
            let id = served["paths"][&path][&method]["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        }
    }
}

#[tokio::test]
async fn every_reference_resolves_and_every_path_parameter_is_declared() {
    let server = Server::start().await;
    let document: Value = server
        .get_open("/v1/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let text = document.to_string();
    for reference in text.split("\"$ref\":\"").skip(1) {
        let target = reference.split('"').next().unwrap();
        let pointer = target.strip_prefix('#').expect("local references only");
        assert!(
            document.pointer(pointer).is_some(),
            "{target} does not resolve"
        );
    }
    for (path, methods) in operations(&document) {
        let templated: BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split('}').next())
            .collect();
        for method in methods {
            let declared: BTreeSet<&str> = document["paths"][&path][&method]["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|param| param["in"] == "path")
                .filter_map(|param| param["name"].as_str())
                .collect();
            assert_eq!(declared, templated, "{method} {path}");
            // Every operation names the error shape for the answers it does not list.
            assert!(
                document["paths"][&path][&method]["responses"]["default"].is_object(),
                "{method} {path} has no default answer"
            );
        }
    }
}

#[tokio::test]
async fn every_documented_operation_reaches_a_handler_and_nothing_else_does() {
    let server = Server::start().await;
    let document: Value = server
        .get_open("/v1/openapi.json")
        .await
        .json()
        .await
        .unwrap();
    let operations = operations(&document);
    assert!(operations.len() > 20, "{operations:?}");
    for (path, methods) in &operations {
        let url = concrete(path);
        for method in METHODS {
            let request = server
                .request(
                    Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                    &url,
                )
                .header("content-type", "application/json")
                .body("{}");
            let (status, _, body) = server.call(request).await;
            if methods.contains(method) {
                assert!(
                    !from_fallback(status, &body),
                    "documented {method} {path} reaches no handler: {status} {body}"
                );
                assert!(status.as_u16() < 500, "{method} {path}: {status} {body}");
            } else {
                // A handler may refuse a method itself (`name:action` takes POST), but
                // only with 405: a method that works must be documented.
                assert_eq!(
                    status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "undocumented {method} {path} answered {status} {body}"
                );
                assert_eq!(error_code(&body), "METHOD_NOT_ALLOWED");
            }
        }
    }
}
