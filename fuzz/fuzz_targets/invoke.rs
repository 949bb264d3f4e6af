//! An invocation's headers and body, on both sides: the control plane's `:invoke`
//! (`X-Trace-Id`, `traceparent`, `tracestate`, `Idempotency-Key`, `X-Timeout-Ms`, the
//! JSON body) and a WARM watchdog's `/invoke` (envelope or raw body with
//! `X-Execution-Id`). A refusal is a 400; an accepted trace id, trace context or callback
//! token must be sendable as a header, because all are later put on requests that are
//! built with the assumption they are valid. A trace context read back reads the same.
//!
//! The input is header lines (`name: value`), an empty line, then the body.
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use gantry_watchdog::warm::server::{parse_invoke, Fixed};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &[
    "x-trace-id",
    "idempotency-key",
    "x-timeout-ms",
    "x-execution-id",
    "x-callback-url",
    "traceparent",
    "tracestate",
];

fuzz_target!(|data: &[u8]| {
    let (head, body) = match data.windows(2).position(|pair| pair == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (&b""[..], data),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some((&pick, value)) = line.split_first() else {
            continue;
        };
        let name = HeaderName::from_static(NAMES[usize::from(pick) % NAMES.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }

    match gantry::api::invoke_headers(&headers) {
        Ok(parsed) => {
            if let Some(trace) = &parsed.trace.trace_id {
                assert!(HeaderValue::from_str(trace).is_ok(), "{trace:?}");
            }
            if let Some(context) = &parsed.trace.context {
                let traceparent = context.traceparent();
                let state = context.state.as_deref();
                for value in [Some(traceparent.as_str()), state].into_iter().flatten() {
                    assert!(HeaderValue::from_str(value).is_ok(), "{value:?}");
                }
                let again = gantry::domain::TraceContext::parse(&traceparent, state);
                assert_eq!(again.as_ref(), Ok(context));
            }
        }
        Err(err) => assert_eq!(err.status().as_u16(), 400, "{err:?}"),
    }
    let body = Bytes::copy_from_slice(body);
    let _ = gantry::api::error::parse_json_body(Ok(body.clone()));

    let fixed = Fixed {
        timeout: Duration::from_secs(30),
        callback_url: Some("http://cp:8080/v1/internal/executions"),
    };
    if let Ok(request) = parse_invoke(&headers, body, &fixed) {
        let invocation = &request.invocation;
        for trace in [&invocation.trace_id, &invocation.traceparent, &invocation.tracestate] {
            if let Some(trace) = trace {
                assert!(HeaderValue::from_str(trace).is_ok(), "{trace:?}");
            }
        }
        if let Some(token) = &request.callback_token {
            let bearer = format!("Bearer {}", token.expose());
            assert!(HeaderValue::from_str(&bearer).is_ok(), "{bearer:?}");
        }
        assert!(request.invocation.timeout <= fixed.timeout);
        serde_json::from_slice::<serde::de::IgnoredAny>(&request.invocation.payload)
            .expect("the payload is JSON");
    }
});
