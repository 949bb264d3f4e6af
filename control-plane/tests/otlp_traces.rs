//! Spans over OTLP/HTTP with the real server: a receiver in the test decodes what
//! `gantry serve --otlp-endpoint` exports. A three-function chain is one trace, each
//! execution's spans under its `gantry.execution` span and each child's under its
//! parent's; a receiver that never answers (or is down) slows no call and its spans are
//! counted as dropped; a stop exports what is still queued; warm calls show their
//! instance (cold, then warm) and an enqueued call its admission and queue wait; a
//! caller's `traceparent` parents the request span and its "not sampled" is honoured.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;
use support::{invoke_full, serve_exits, stdio_function, warm_function, Server, ServerOptions};
use tokio::net::TcpListener;

/// What the receiver got: each span with its resource's `service.name`.
type Received = Arc<Mutex<Vec<(String, Span)>>>;

/// An OTLP/HTTP receiver on a free port: its base URL and what it received.
async fn receiver() -> (String, Received) {
    receiver_answering_after(Duration::ZERO).await
}

/// A receiver that answers each export `delay` after it came.
async fn receiver_answering_after(delay: Duration) -> (String, Received) {
    let received = Received::default();
    let slow = move |state: State<Received>, body: Bytes| async move {
        tokio::time::sleep(delay).await;
        take(state, body).await
    };
    let app = Router::new()
        .route("/v1/traces", post(slow))
        .with_state(received.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

async fn take(State(received): State<Received>, body: Bytes) -> (StatusCode, Vec<u8>) {
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut spans = received.lock().unwrap();
    for resource in request.resource_spans {
        let attributes = resource.resource.map(|r| r.attributes).unwrap_or_default();
        let service = text(&attributes, "service.name").unwrap_or_default();
        for scope in resource.scope_spans {
            spans.extend(scope.spans.into_iter().map(|span| (service.clone(), span)));
        }
    }
    let answer = ExportTraceServiceResponse::default().encode_to_vec();
    (StatusCode::OK, answer)
}

fn value<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a Any> {
    let found = attributes.iter().find(|attribute| attribute.key == key)?;
    found.value.as_ref()?.value.as_ref()
}

fn text(attributes: &[KeyValue], key: &str) -> Option<String> {
    match value(attributes, key)? {
        Any::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

fn attr(span: &Span, key: &str) -> String {
    text(&span.attributes, key).unwrap_or_default()
}

/// Waits until the receiver holds `count` spans named `name`; answers all it holds.
async fn wait_spans(received: &Received, name: &str, count: usize) -> Vec<(String, Span)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = received.lock().unwrap().clone();
        if spans.iter().filter(|(_, span)| span.name == name).count() >= count {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "{count} {name} spans never came; got {:?}",
            spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn echo(name: &str, extra: serde_json::Value) -> serde_json::Value {
    stdio_function(name, "python3 echo.py", extra)
}

fn options(endpoint: &str, env: &[(&str, &str)]) -> ServerOptions {
    ServerOptions {
        args: vec!["--otlp-endpoint".into(), endpoint.into()],
        env: env
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        ..ServerOptions::default()
    }
}

/// Waits until `gantry_spans_dropped_total` is above zero.
async fn wait_dropped(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = server.metrics_text().await;
        let dropped: u64 = metrics
            .lines()
            .find_map(|line| line.strip_prefix("gantry_spans_dropped_total "))
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0);
        if dropped > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no span was counted as dropped");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Calls `name` `count` times; each answers 200 within 5 s.
async fn call_promptly(server: &Server, name: &str, count: u32) {
    for call in 0..count {
        let began = Instant::now();
        let (status, body) = server.invoke(name, json!({"call": call})).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "call {call} took {:?}",
            began.elapsed()
        );
    }
}

#[tokio::test]
async fn a_chain_of_three_is_one_trace_with_children_under_their_parent() {
    let (endpoint, received) = receiver().await;
    let env = [
        ("OTEL_SERVICE_NAME", "gantry-under-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let server = Server::start_with(options(&endpoint, &env)).await;
    server.deploy(echo("report", json!({}))).await;
    let to_report = json!({"chains": [{"target": "report"}]});
    server.deploy(echo("enrich", to_report)).await;
    let to_enrich = json!({"chains": [{"target": "enrich"}]});
    server.deploy(echo("intake", to_enrich)).await;
    let (status, body) = server.invoke("intake", json!({"id": 7})).await;
    assert_eq!(status, 200, "{body}");
    let root = body["executionId"].as_str().unwrap().to_owned();

    // The report's execution span ends the chain; the record follows it in the batch.
    let spans = wait_spans(&received, "gantry.execution", 3).await;
    let spans: Vec<Span> = spans
        .into_iter()
        .map(|(service, span)| {
            assert_eq!(service, "gantry-under-test", "{}", span.name);
            span
        })
        .collect();
    let traces: BTreeSet<_> = spans.iter().map(|span| span.trace_id.clone()).collect();
    assert_eq!(traces.len(), 1, "one trace for the whole chain");
    assert_eq!(spans[0].trace_id.len(), 16);

    let named = |name: &'static str| spans.iter().filter(move |span| span.name == name);
    let executions: BTreeMap<String, &Span> = named("gantry.execution")
        .map(|span| (attr(span, "gantry.function"), span))
        .collect();
    let functions: Vec<_> = executions.keys().cloned().collect();
    assert_eq!(functions, ["enrich", "intake", "report"]);
    for span in executions.values() {
        assert_eq!(attr(span, "gantry.execution.status"), "success");
        assert_eq!(span.span_id.len(), 8);
    }
    let (intake, enrich, report) = (
        executions["intake"],
        executions["enrich"],
        executions["report"],
    );
    assert_eq!(attr(intake, "gantry.execution.id"), root);
    // The trace and the execution's span are the ones its function was handed.
    let record = server.execution(&root).await;
    let traceparent = record["traceparent"].as_str().unwrap().to_owned();
    let fields: Vec<&str> = traceparent.split('-').collect();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    assert_eq!(fields[1], hex(&intake.trace_id), "{traceparent}");
    assert_eq!(fields[2], hex(&intake.span_id), "{traceparent}");

    // The request is the root; the first execution hangs from it, each child from its
    // parent's execution span.
    let requests: Vec<&Span> = named("gantry.invoke").collect();
    assert_eq!(requests.len(), 1);
    assert!(
        requests[0].parent_span_id.is_empty(),
        "the request is the root"
    );
    assert_eq!(attr(requests[0], "gantry.execution.id"), root);
    assert_eq!(intake.parent_span_id, requests[0].span_id);
    assert_eq!(enrich.parent_span_id, intake.span_id);
    assert_eq!(report.parent_span_id, enrich.span_id);
    assert_eq!(attr(enrich, "gantry.parent.id"), root);
    assert_eq!(attr(enrich, "gantry.execution.trigger"), "chain");

    // Each execution's own work is under its execution span, named by its id.
    for execution in executions.values() {
        let id = attr(execution, "gantry.execution.id");
        let mine: BTreeSet<&str> = spans
            .iter()
            .filter(|span| span.parent_span_id == execution.span_id)
            .filter(|span| span.name != "gantry.execution")
            .map(|span| {
                assert_eq!(attr(span, "gantry.execution.id"), id, "{}", span.name);
                span.name.as_str()
            })
            .collect();
        for name in [
            "gantry.queue_wait",
            "gantry.claim",
            "gantry.instance.start",
            "gantry.run",
            "gantry.record",
        ] {
            assert!(mine.contains(name), "{name} of {id}: {mine:?}");
        }
    }
    let admissions: Vec<&Span> = named("gantry.admission").collect();
    assert_eq!(
        admissions.len(),
        1,
        "only the call is admitted; chains are not"
    );
    assert_eq!(admissions[0].parent_span_id, intake.span_id);
    for run in named("gantry.run") {
        assert_eq!(attr(run, "gantry.execution.status"), "success");
        assert!(!attr(run, "gantry.instance.id").is_empty());
        assert_eq!(
            value(&run.attributes, "gantry.execution.attempt"),
            Some(&Any::IntValue(1))
        );
    }
    for start in named("gantry.instance.start") {
        assert_eq!(
            value(&start.attributes, "gantry.cold_start"),
            Some(&Any::BoolValue(true)),
            "a STDIO function starts an instance per execution"
        );
    }
}

#[tokio::test]
async fn warm_calls_show_their_instance_and_an_enqueued_call_its_queue() {
    let (endpoint, received) = receiver().await;
    let server =
        Server::start_with(options(&endpoint, &[("OTEL_BSP_SCHEDULE_DELAY", "100")])).await;
    let warm = json!({"min_instances": 0});
    server.deploy(warm_function("hot", warm, json!({}))).await;
    let mut ids = Vec::new();
    for (call, expected) in [(1, "true"), (2, "false")] {
        let (status, cold, body) = invoke_full(&server, "hot", json!({"n": call})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(cold.as_deref(), Some(expected));
        ids.push(body["executionId"].as_str().unwrap().to_owned());
    }
    let queued = server.enqueue("hot", json!({"n": 3})).await;
    server.wait_terminal(&queued, Duration::from_secs(30)).await;
    let spans = wait_spans(&received, "gantry.execution", 3).await;
    let of = |id: &str, name: &str| -> Vec<Span> {
        spans
            .iter()
            .map(|(_, span)| span)
            .filter(|span| span.name == name && attr(span, "gantry.execution.id") == id)
            .cloned()
            .collect()
    };
    for (id, cold) in [(&ids[0], true), (&ids[1], false)] {
        let [execution] = &of(id, "gantry.execution")[..] else {
            panic!("one execution span for {id}");
        };
        let [request] = &of(id, "gantry.invoke")[..] else {
            panic!("one request span for {id}");
        };
        assert_eq!(execution.parent_span_id, request.span_id);
        assert_eq!(execution.trace_id, request.trace_id);
        // A cold call waited for its instance to start; a warm one took an idle one at
        // once, which is no span of its own: its run names the instance.
        let starts = of(id, "gantry.instance.start");
        if cold {
            let [start] = &starts[..] else {
                panic!("one instance span for {id}");
            };
            assert_eq!(start.parent_span_id, execution.span_id);
            assert_eq!(
                value(&start.attributes, "gantry.cold_start"),
                Some(&Any::BoolValue(true))
            );
        } else {
            assert!(starts.is_empty(), "a warm hit starts nothing: {starts:?}");
        }
        let [run] = &of(id, "gantry.run")[..] else {
            panic!("one run span for {id}");
        };
        assert_eq!(run.parent_span_id, execution.span_id);
        assert_eq!(
            value(&run.attributes, "gantry.cold_start"),
            Some(&Any::BoolValue(cold))
        );
        assert!(!attr(run, "gantry.instance.id").is_empty());
        assert_eq!(of(id, "gantry.record").len(), 1);
        assert!(
            of(id, "gantry.claim").is_empty(),
            "a sync warm call is not claimed"
        );
    }
    assert_ne!(
        of(&ids[0], "gantry.execution")[0].trace_id,
        of(&ids[1], "gantry.execution")[0].trace_id,
        "two calls, two traces"
    );
    for name in [
        "gantry.enqueue",
        "gantry.admission",
        "gantry.queue_wait",
        "gantry.claim",
        "gantry.run",
    ] {
        assert_eq!(of(&queued, name).len(), 1, "{name} of the enqueued call");
    }
}

/// `:invoke` of `name` with a caller's `traceparent` (and an `Idempotency-Key` when
/// given): the execution's id.
async fn invoke_traced(
    server: &Server,
    name: &str,
    traceparent: &str,
    key: Option<&str>,
) -> String {
    let mut request = server
        .request(
            reqwest::Method::POST,
            &format!("/v1/functions/{name}:invoke"),
        )
        .header("traceparent", traceparent)
        .json(&json!({}));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let (status, _, body) = server.call(request).await;
    assert_eq!(status, 200, "{body}");
    body["executionId"].as_str().unwrap().to_owned()
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn a_callers_span_is_the_parent_and_its_sampling_decision_holds() {
    let (endpoint, received) = receiver().await;
    let server =
        Server::start_with(options(&endpoint, &[("OTEL_BSP_SCHEDULE_DELAY", "100")])).await;
    server.deploy(echo("steady", json!({}))).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = |span: &str, flags: &str| format!("00-{trace}-{span}-{flags}");
    let unsampled = invoke_traced(&server, "steady", &parent("b7ad6b7169203331", "00"), None).await;
    let sampled = invoke_traced(
        &server,
        "steady",
        &parent("00f067aa0ba902b7", "01"),
        Some("once"),
    )
    .await;
    // The same key from another trace is answered with the first execution.
    let other = "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01";
    let replayed = invoke_traced(&server, "steady", other, Some("once")).await;
    assert_eq!(replayed, sampled);

    let spans = wait_spans(&received, "gantry.invoke", 2).await;
    let of = |id: &str| -> Vec<&Span> {
        spans
            .iter()
            .map(|(_, span)| span)
            .filter(|span| attr(span, "gantry.execution.id") == id)
            .collect()
    };
    let requests: Vec<&Span> = of(&sampled)
        .into_iter()
        .filter(|span| span.name == "gantry.invoke")
        .collect();
    assert_eq!(requests.len(), 2, "the call and its replay");
    for request in &requests {
        assert_eq!(request.trace_id, hex_bytes(trace), "the execution's trace");
    }
    let parents: BTreeSet<Vec<u8>> = requests
        .iter()
        .map(|span| span.parent_span_id.clone())
        .collect();
    // The call hangs from its caller's span; the replay, whose caller is in another
    // trace, is a root of the execution's trace rather than a child of a foreign span.
    let expected: BTreeSet<Vec<u8>> = [hex_bytes("00f067aa0ba902b7"), Vec::new()].into();
    assert_eq!(parents, expected);
    // The unsampled call ended first; nothing of it may come, even after the others.
    assert!(
        of(&unsampled).is_empty(),
        "a caller that does not sample gets no spans: {:?}",
        of(&unsampled)
            .iter()
            .map(|span| &span.name)
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_receiver_that_never_answers_slows_no_call() {
    // Takes connections and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let env = [
        ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
        ("OTEL_BSP_SCHEDULE_DELAY", "50"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "60000"),
    ];
    let mut server = Server::start_with(options(&endpoint, &env)).await;
    server.deploy(echo("steady", json!({}))).await;
    call_promptly(&server, "steady", 5).await;
    wait_dropped(&server).await;
    // The stop waits for the export no longer than its flush limit.
    let began = Instant::now();
    assert_eq!(server.stop().await, Some(0));
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "the stop took {:?}",
        began.elapsed()
    );
}

#[tokio::test]
async fn an_endpoint_that_is_not_an_http_or_https_url_is_a_bad_setting() {
    for (args, env) in [
        (&["--otlp-endpoint", "collector:4318"][..], &[][..]),
        (
            &[][..],
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://collector:4318")][..],
        ),
    ] {
        let (code, stderr) = serve_exits(args, env).await;
        assert_eq!(code, Some(64), "{stderr}");
        assert!(
            stderr.contains("OTEL_EXPORTER_OTLP_ENDPOINT (--otlp-endpoint)"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn a_receiver_that_is_down_costs_the_spans_not_the_calls() {
    // A port nothing listens on any more.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let endpoint = format!("http://{address}");
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "50")];
    let server = Server::start_with(options(&endpoint, &env)).await;
    server.deploy(echo("steady", json!({}))).await;
    call_promptly(&server, "steady", 3).await;
    wait_dropped(&server).await;
    let stderr = server.stderr();
    assert!(
        stderr.contains(&format!("cannot export spans to {endpoint}")),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_stop_exports_the_spans_still_queued() {
    let (endpoint, received) = receiver().await;
    let env = [("OTEL_BSP_SCHEDULE_DELAY", "600000")];
    let mut server = Server::start_with(options(&endpoint, &env)).await;
    server.deploy(echo("steady", json!({}))).await;
    call_promptly(&server, "steady", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        received.lock().unwrap().is_empty(),
        "a batch is not due for ten minutes"
    );
    assert_eq!(server.stop().await, Some(0));
    let spans = wait_spans(&received, "gantry.execution", 1).await;
    assert!(spans.iter().any(|(_, span)| span.name == "gantry.invoke"));
}

/// Spans in one export request at most, in the batching tests.
const BATCH: usize = 5;

/// A server exporting to `endpoint` in batches of [`BATCH`], with a schedule delay of ten
/// minutes, after two calls: their spans make some whole batches and a part one.
async fn two_calls_in_small_batches(endpoint: &str) -> Server {
    let batch = BATCH.to_string();
    let env = [
        ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", batch.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
    ];
    let server = Server::start_with(options(endpoint, &env)).await;
    server.deploy(echo("steady", json!({}))).await;
    call_promptly(&server, "steady", 2).await;
    server
}

/// Waits for both calls' spans, and checks a part batch is among them.
async fn both_calls_with_a_part_batch(received: &Received) -> usize {
    let spans = wait_spans(received, "gantry.execution", 2).await;
    assert_ne!(
        spans.len() % BATCH,
        0,
        "two calls' spans ({}) should leave a part batch for the stop to send",
        spans.len()
    );
    spans.len()
}

#[tokio::test]
async fn whole_batches_go_at_once_and_a_part_batch_waits_for_the_delay() {
    let (endpoint, received) = receiver().await;
    let mut server = two_calls_in_small_batches(&endpoint).await;
    // Not ten minutes: a whole batch needs no delay.
    wait_spans(&received, "gantry.execution", 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before_stop = received.lock().unwrap().len();
    assert_eq!(
        before_stop % BATCH,
        0,
        "only whole batches go before the delay"
    );
    assert_eq!(server.stop().await, Some(0));
    assert!(before_stop < both_calls_with_a_part_batch(&received).await);
}

#[tokio::test]
async fn a_stop_while_whole_batches_go_out_still_sends_the_part_batch() {
    // Each whole batch is answered 600 ms after it came, so the stop comes while they go.
    let (endpoint, received) = receiver_answering_after(Duration::from_millis(600)).await;
    let mut server = two_calls_in_small_batches(&endpoint).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.stop().await, Some(0));
    both_calls_with_a_part_batch(&received).await;
}
