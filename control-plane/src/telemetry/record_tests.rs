//! The hand-written encoding, read back with the OpenTelemetry protobuf types.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::{span::SpanKind, status::StatusCode, Span};
use prost::Message;

use super::*;
use gantry_protocol::ErrorCode as WatchdogCode;

fn record(name: &'static str) -> SpanRecord<'static> {
    SpanRecord {
        trace: [7; 16],
        id: [8; 8],
        parent: None,
        remote_parent: false,
        name,
        kind: Kind::Internal,
        start: 1_700_000_000_123_456_789,
        end: 1_700_000_000_223_456_789,
        function: "report",
        version: 3,
        execution: Uuid::now_v7(),
        attempt: 2,
        place: None,
        trigger: None,
        parent_execution: None,
        outcome: None,
    }
}

fn value<'a>(span: &'a Span, key: &str) -> Option<&'a Any> {
    let found: &KeyValue = span.attributes.iter().find(|kv| kv.key == key)?;
    found.value.as_ref()?.value.as_ref()
}

fn text(span: &Span, key: &str) -> Option<String> {
    match value(span, key)? {
        Any::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

/// The request that exports `batch`, written as the hooks and the exporter write it.
fn decode(envelope: &Envelope, batch: &[SpanRecord<'_>]) -> ExportTraceServiceRequest {
    let mut bytes = vec![0; envelope.head_room()];
    for span in batch {
        span.write(&mut bytes);
    }
    ExportTraceServiceRequest::decode(&envelope.wrap(bytes)[..]).unwrap()
}

#[test]
fn a_batch_decodes_as_one_resource_and_scope_with_every_span() {
    let long = "x".repeat(300);
    let timeout = ErrorCode::Watchdog(WatchdogCode::Timeout);
    let parent = Uuid::now_v7();
    let mut spans = vec![
        record("gantry.claim"),
        SpanRecord {
            parent: Some([9; 8]),
            remote_parent: true,
            kind: Kind::Server,
            place: Some(Place::Node("node-a")),
            ..record("gantry.invoke")
        },
        SpanRecord {
            place: Some(Place::Instance {
                id: &long,
                cold: true,
            }),
            trigger: Some("chain"),
            parent_execution: Some(parent),
            outcome: Some(Outcome {
                status: "error",
                code: Some(&timeout),
                failed: true,
            }),
            ..record("gantry.execution")
        },
    ];
    spans[0].outcome = Some(Outcome {
        status: "success",
        code: None,
        failed: false,
    });
    let request = decode(&Envelope::new("gantry-under-test"), &spans);
    let [resource] = &request.resource_spans[..] else {
        panic!("one resource: {request:?}");
    };
    let attributes = &resource.resource.as_ref().unwrap().attributes;
    assert_eq!(attributes.len(), 1);
    assert_eq!(attributes[0].key, "service.name");
    let [scope] = &resource.scope_spans[..] else {
        panic!("one scope");
    };
    let named = scope.scope.as_ref().unwrap();
    assert_eq!(named.name, "gantry");
    assert_eq!(named.version, env!("CARGO_PKG_VERSION"));
    let [claim, invoke, execution] = &scope.spans[..] else {
        panic!("three spans: {:?}", scope.spans);
    };

    assert_eq!(claim.name, "gantry.claim");
    assert_eq!(claim.trace_id, vec![7; 16]);
    assert_eq!(claim.span_id, vec![8; 8]);
    assert!(claim.parent_span_id.is_empty(), "a root");
    assert_eq!(claim.kind, SpanKind::Internal as i32);
    assert_eq!(claim.start_time_unix_nano, 1_700_000_000_123_456_789);
    assert_eq!(claim.end_time_unix_nano, 1_700_000_000_223_456_789);
    assert_eq!(claim.flags, 0x101);
    assert_eq!(text(claim, "gantry.function").as_deref(), Some("report"));
    assert_eq!(
        value(claim, "gantry.function.version"),
        Some(&Any::IntValue(3))
    );
    assert_eq!(
        value(claim, "gantry.execution.attempt"),
        Some(&Any::IntValue(2))
    );
    assert_eq!(
        text(claim, "gantry.execution.id"),
        Some(spans[0].execution.to_string())
    );
    assert_eq!(
        text(claim, "gantry.execution.status").as_deref(),
        Some("success")
    );
    let status = claim.status.as_ref().unwrap();
    assert_eq!(status.code, StatusCode::Ok as i32);

    assert_eq!(invoke.parent_span_id, vec![9; 8]);
    assert_eq!(invoke.kind, SpanKind::Server as i32);
    assert_eq!(invoke.flags, 0x301, "the parent is remote");
    assert_eq!(text(invoke, "gantry.node").as_deref(), Some("node-a"));

    assert_eq!(text(execution, "gantry.instance.id"), Some(long));
    assert_eq!(
        value(execution, "gantry.cold_start"),
        Some(&Any::BoolValue(true))
    );
    assert_eq!(
        text(execution, "gantry.execution.trigger").as_deref(),
        Some("chain")
    );
    assert_eq!(
        text(execution, "gantry.parent.id"),
        Some(parent.to_string())
    );
    assert_eq!(
        text(execution, "gantry.error.code").as_deref(),
        Some("TIMEOUT")
    );
    let status = execution.status.as_ref().unwrap();
    assert_eq!(status.code, StatusCode::Error as i32);
    assert_eq!(status.message, "TIMEOUT");
}

#[test]
fn an_end_before_the_start_is_clamped_and_versions_stay_whole() {
    let mut span = record("gantry.run");
    span.end = span.start - 5;
    span.version = u32::MAX;
    let request = decode(&Envelope::new("s"), &[span]);
    let decoded = &request.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(decoded.end_time_unix_nano, decoded.start_time_unix_nano);
    assert_eq!(
        value(decoded, "gantry.function.version"),
        Some(&Any::IntValue(i64::from(u32::MAX)))
    );
}

#[test]
fn a_span_too_long_for_its_two_length_bytes_is_moved_and_still_decodes() {
    let huge = "f".repeat(20_000);
    let batch = [
        record("gantry.run"),
        SpanRecord {
            function: &huge,
            ..record("gantry.record")
        },
        record("gantry.claim"),
    ];
    let request = decode(&Envelope::new("gantry"), &batch);
    let spans = &request.resource_spans[0].scope_spans[0].spans;
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_str()).collect();
    assert_eq!(names, ["gantry.run", "gantry.record", "gantry.claim"]);
    assert_eq!(
        text(&spans[1], "gantry.function").as_deref(),
        Some(huge.as_str())
    );
    assert_eq!(
        text(&spans[2], "gantry.function").as_deref(),
        Some("report")
    );
}

#[test]
fn the_largest_span_stays_within_its_bound() {
    let code = ErrorCode::Watchdog(WatchdogCode::Timeout);
    let id = "i".repeat(200);
    let span = SpanRecord {
        parent: Some([1; 8]),
        remote_parent: true,
        version: u32::MAX,
        attempt: u32::MAX,
        start: u64::MAX,
        end: u64::MAX,
        trigger: Some("schedule"),
        parent_execution: Some(Uuid::now_v7()),
        place: Some(Place::Instance {
            id: &id,
            cold: true,
        }),
        outcome: Some(Outcome {
            status: "timeout",
            code: Some(&code),
            failed: true,
        }),
        ..record("gantry.instance.start")
    };
    let mut out = vec![0; 3];
    span.write(&mut out);
    assert!(out.len() - 3 <= span.max_len(), "{}", out.len());
    // It carries every attribute a span can: the bound counts them all.
    let request = decode(&Envelope::new("s"), &[span]);
    let decoded = &request.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(decoded.attributes.len(), MOST_ATTRIBUTES);
}
