//! Head sampling and https receivers with the real server: a ratio of 0 records no span
//! while calls succeed and functions are told their trace is not sampled; a
//! parent-based sampler follows a caller that samples; bad sampler settings stop the
//! start with a reason; spans reach an https receiver the server trusts (through
//! `SSL_CERT_FILE`), and are dropped, not sent unverified, to one it does not; the
//! headers of `OTEL_EXPORTER_OTLP_HEADERS` go with every export, and a malformed list
//! stops the start without printing what it holds.

mod receiver_support;
mod support;

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use receiver_support::{certificate, Receiver};
use reqwest::Method;
use serde_json::json;
use support::{serve_exits, stdio_function, Server, ServerOptions};

const TRACES: &str = "v1/traces";

fn options(endpoint: &str, env: &[(&str, &str)]) -> ServerOptions {
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    env.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
    ServerOptions {
        args: vec!["--otlp-endpoint".into(), endpoint.into()],
        env,
        ..ServerOptions::default()
    }
}

/// Every span the receiver got.
fn spans(receiver: &Receiver) -> Vec<Span> {
    let mut spans = Vec::new();
    for request in receiver.received(TRACES) {
        let request = ExportTraceServiceRequest::decode(request.body).unwrap();
        for resource in request.resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
    }
    spans
}

fn execution_id(span: &Span) -> Option<&str> {
    let found = span
        .attributes
        .iter()
        .find(|kv| kv.key == "gantry.execution.id")?;
    match found.value.as_ref()?.value.as_ref()? {
        Any::StringValue(id) => Some(id),
        _ => None,
    }
}

/// `:invoke` of the `env` function, with a caller's `traceparent` when given: the
/// execution's id and the `TRACEPARENT` its function saw.
async fn call(server: &Server, traceparent: Option<&str>) -> (String, String) {
    let mut request = server
        .request(Method::POST, "/v1/functions/env:invoke")
        .json(&json!({}));
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let (status, _, body) = server.call(request).await;
    assert_eq!(status, 200, "{body}");
    let seen = body["output"]["env"]["TRACEPARENT"].as_str().unwrap();
    let id = body["executionId"].as_str().unwrap();
    (id.to_owned(), seen.to_owned())
}

async fn deploy_env(server: &Server) {
    let env = stdio_function("env", "python3 env.py", json!({}));
    server.deploy(env).await;
}

/// Waits until the receiver holds a `gantry.execution` span of execution `id`.
async fn wait_execution_span(receiver: &Receiver, id: &str) -> Vec<Span> {
    wait_span(receiver, "gantry.execution", id).await
}

/// Waits until the receiver holds a span named `name` of execution `id`: spans end (and
/// are exported) in their own order, so each one awaited is waited for.
async fn wait_span(receiver: &Receiver, name: &str, id: &str) -> Vec<Span> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = spans(receiver);
        let found = spans
            .iter()
            .any(|span| span.name == name && execution_id(span) == Some(id));
        if found {
            return spans;
        }
        assert!(Instant::now() < deadline, "no {name} span of {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const SAMPLED_CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[tokio::test]
async fn a_ratio_of_zero_records_nothing_and_tells_the_function() {
    let receiver = Receiver::start().await;
    let env = [
        ("OTEL_TRACES_SAMPLER", "traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0"),
    ];
    let mut server = Server::start_with(options(&receiver.url, &env)).await;
    deploy_env(&server).await;
    let (_, seen) = call(&server, None).await;
    assert!(seen.ends_with("-00"), "{seen}");
    // Not parent-based: the ratio decides even for a caller that samples.
    let (_, seen) = call(&server, Some(SAMPLED_CALLER)).await;
    assert!(
        seen.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{seen}"
    );
    assert!(seen.ends_with("-00"), "{seen}");
    // A stop exports whatever is queued: nothing may have been.
    assert_eq!(server.stop().await, Some(0));
    assert!(
        receiver.received(TRACES).is_empty(),
        "spans of unsampled traces: {:?}",
        spans(&receiver)
    );
}

#[tokio::test]
async fn a_parent_based_sampler_follows_a_caller_that_samples() {
    let receiver = Receiver::start().await;
    let env = [
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0.0"),
    ];
    let mut server = Server::start_with(options(&receiver.url, &env)).await;
    deploy_env(&server).await;
    let (unsampled, seen) = call(&server, None).await;
    assert!(seen.ends_with("-00"), "a new trace at ratio 0: {seen}");
    let (sampled, seen) = call(&server, Some(SAMPLED_CALLER)).await;
    assert!(seen.ends_with("-01"), "the caller samples: {seen}");
    wait_execution_span(&receiver, &sampled).await;
    wait_span(&receiver, "gantry.invoke", &sampled).await;
    assert_eq!(server.stop().await, Some(0));
    let spans = spans(&receiver);
    assert!(
        !spans
            .iter()
            .any(|span| execution_id(span) == Some(&unsampled)),
        "the unsampled call got spans"
    );
}

#[tokio::test]
async fn bad_sampler_settings_stop_the_start() {
    for (env, named) in [
        (
            [
                ("OTEL_TRACES_SAMPLER", "sometimes"),
                ("OTEL_TRACES_SAMPLER_ARG", ""),
            ],
            "OTEL_TRACES_SAMPLER (--otlp-sampler)",
        ),
        (
            [
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "1.5"),
            ],
            "OTEL_TRACES_SAMPLER_ARG (--otlp-sampler-arg)",
        ),
        (
            [
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "half"),
            ],
            "OTEL_TRACES_SAMPLER_ARG (--otlp-sampler-arg)",
        ),
    ] {
        let (code, stderr) = serve_exits(&[], &env).await;
        assert_eq!(code, Some(64), "{stderr}");
        assert!(stderr.contains(named), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[tokio::test]
async fn export_headers_from_the_environment_go_with_every_export() {
    let receiver = Receiver::start().await;
    let env = [(
        "OTEL_EXPORTER_OTLP_HEADERS",
        "authorization=Bearer%20collector-token,x-tenant=7",
    )];
    let server = Server::start_with(options(&receiver.url, &env)).await;
    deploy_env(&server).await;
    let (id, _) = call(&server, None).await;
    wait_execution_span(&receiver, &id).await;
    let exports = receiver.received(TRACES);
    assert!(!exports.is_empty());
    for export in exports {
        assert_eq!(export.headers["authorization"], "Bearer collector-token");
        assert_eq!(export.headers["x-tenant"], "7");
    }
}

#[tokio::test]
async fn a_malformed_header_list_stops_the_start_without_showing_it() {
    let args = ["--otlp-endpoint", "http://127.0.0.1:9"];
    for variable in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        let env = [(variable, "x-ok=1,authorization:hunter2")];
        let (code, stderr) = serve_exits(&args, &env).await;
        assert_eq!(code, Some(64), "{stderr}");
        assert!(
            stderr.contains(variable) && stderr.contains("entry 2"),
            "{stderr}"
        );
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

#[tokio::test]
async fn spans_reach_a_trusted_https_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificate(dir.path());
    let receiver = Receiver::start_tls(&cert, &key).await;
    let ca = ca.to_str().unwrap();
    let server = Server::start_with(options(&receiver.url, &[("SSL_CERT_FILE", ca)])).await;
    deploy_env(&server).await;
    let (id, _) = call(&server, None).await;
    let spans = wait_execution_span(&receiver, &id).await;
    assert!(spans.iter().all(|span| span.trace_id.len() == 16));
}

#[tokio::test]
async fn an_untrusted_https_receiver_gets_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificate(dir.path());
    let receiver = Receiver::start_tls(&cert, &key).await;
    let server = Server::start_with(options(&receiver.url, &[])).await;
    deploy_env(&server).await;
    call(&server, None).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = server.metrics_text().await;
        let dropped = metrics
            .lines()
            .find_map(|line| line.strip_prefix("gantry_spans_dropped_total "))
            .and_then(|count| count.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if dropped > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "no span was counted as dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stderr = server.stderr();
    let warning = format!("cannot export spans to {}", receiver.url);
    assert!(stderr.contains(&warning), "{stderr}");
    assert!(receiver.received(TRACES).is_empty());
}
