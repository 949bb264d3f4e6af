//! A WARM `/invoke` request, parsed: the envelope `{execution_id, payload, ...}` or the
//! raw payload with `X-Execution-Id` and the other headers, checked against what the
//! instance fixed at start (TIMEOUT_MS, CALLBACK_URL).

use std::time::Duration;

use bytes::Bytes;
use gantry_protocol::{headers, InvokeEnvelope};
use hyper::header::HeaderMap;

use crate::callback;
use crate::config::{is_header_text, Secret};
use crate::modes::Invocation;

/// What a request may not change, fixed when the instance starts.
#[derive(Debug, Clone, Copy)]
pub struct Fixed<'a> {
    /// TIMEOUT_MS: the default timeout and the largest a request may ask for.
    pub timeout: Duration,
    /// CALLBACK_URL: the only callback target.
    pub callback_url: Option<&'a str>,
}

/// An `/invoke` request, parsed.
#[derive(Debug)]
pub struct InvokeRequest {
    /// What to run.
    pub invocation: Invocation,
    /// Whether the result also goes to CALLBACK_URL (the request named it).
    pub callback: bool,
    /// The envelope's `callback_token`, if any.
    pub callback_token: Option<Secret>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|text| Some(text.trim()).filter(|text| !text.is_empty()))
            .map_err(|_| format!("header {name} is not valid text")),
    }
}

/// The request's timeout, capped at TIMEOUT_MS (which it defaults to).
fn check_timeout(
    timeout_ms: Option<u64>,
    ceiling: Duration,
    source: &str,
) -> Result<Duration, String> {
    match timeout_ms {
        None => Ok(ceiling),
        Some(0) => Err(format!(
            "{source} must be a positive number of milliseconds"
        )),
        Some(ms) => Ok(Duration::from_millis(ms).min(ceiling)),
    }
}

/// Whether the request asks for a callback: only to CALLBACK_URL, the target fixed at
/// start (a trailing slash and letter case aside); any other is refused.
fn check_callback_url(
    url: Option<&str>,
    source: &str,
    fixed: Option<&str>,
) -> Result<bool, String> {
    let Some(url) = url else { return Ok(false) };
    let same = |configured: &str| {
        url.trim_end_matches('/')
            .eq_ignore_ascii_case(configured.trim_end_matches('/'))
    };
    match fixed {
        Some(configured) if same(configured) => Ok(true),
        _ => Err(format!(
            "{source} is refused: the callback target is fixed when the instance starts (CALLBACK_URL)"
        )),
    }
}

/// Either the envelope `{execution_id, payload, ...}`, or (with `X-Execution-Id`) the
/// raw payload with `X-Trace-Id`, `X-Timeout-Ms` and `X-Callback-Url` headers; the
/// `traceparent` and `tracestate` headers in both forms. The error is the message of a
/// 400.
pub fn parse_invoke(
    headers: &HeaderMap,
    body: Bytes,
    fixed: &Fixed<'_>,
) -> Result<InvokeRequest, String> {
    // The trace context comes as headers in either form, as it does to HTTP runtimes.
    let traceparent = header(headers, headers::TRACEPARENT)?.map(str::to_owned);
    let tracestate = header(headers, headers::TRACESTATE)?.map(str::to_owned);
    if let Some(execution_id) = header(headers, headers::EXECUTION_ID)? {
        let timeout_ms = header(headers, headers::TIMEOUT_MS)?
            .map(|text| {
                text.parse::<u64>().map_err(|_| {
                    format!("header X-Timeout-Ms {text:?} is not a whole number of milliseconds")
                })
            })
            .transpose()?;
        let callback = check_callback_url(
            header(headers, headers::CALLBACK_URL)?,
            "X-Callback-Url",
            fixed.callback_url,
        )?;
        let payload =
            callback::check_payload(body, "the request body").map_err(|error| error.message)?;
        return Ok(InvokeRequest {
            invocation: Invocation {
                execution_id: execution_id.to_owned(),
                trace_id: header(headers, headers::TRACE_ID)?.map(str::to_owned),
                traceparent,
                tracestate,
                payload,
                timeout: check_timeout(timeout_ms, fixed.timeout, "X-Timeout-Ms")?,
            },
            callback,
            callback_token: None,
        });
    }
    let envelope: InvokeEnvelope = serde_json::from_slice(&body).map_err(|err| {
        format!(
            "the body is not an invoke envelope ({err}); send {{\"execution_id\", \"payload\", ...}} or the raw payload with an X-Execution-Id header"
        )
    })?;
    if envelope.execution_id.trim().is_empty() {
        return Err("execution_id must not be empty".into());
    }
    // Both go out as headers of the callback; a control character would make that
    // request unbuildable after the function ran.
    for (field, value) in [
        ("trace_id", &envelope.trace_id),
        ("callback_token", &envelope.callback_token),
    ] {
        if value.as_deref().is_some_and(|value| !is_header_text(value)) {
            return Err(format!(
                "{field} contains a control character; it is sent as an HTTP header"
            ));
        }
    }
    Ok(InvokeRequest {
        invocation: Invocation {
            execution_id: envelope.execution_id,
            trace_id: envelope.trace_id,
            traceparent,
            tracestate,
            payload: Bytes::copy_from_slice(envelope.payload.get().as_bytes()),
            timeout: check_timeout(envelope.timeout_ms, fixed.timeout, "timeout_ms")?,
        },
        callback: check_callback_url(
            envelope.callback_url.as_deref(),
            "callback_url",
            fixed.callback_url,
        )?,
        callback_token: envelope.callback_token.map(Secret::new),
    })
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    const DEFAULT: Duration = Duration::from_secs(30);
    const OPEN: Fixed<'static> = Fixed {
        timeout: DEFAULT,
        callback_url: None,
    };

    fn with_callback(url: &str) -> Fixed<'_> {
        Fixed {
            timeout: DEFAULT,
            callback_url: Some(url),
        }
    }

    #[test]
    fn envelope_fields_become_the_invocation() {
        let configured = "http://cp/v1/internal/executions";
        let body = Bytes::from_static(
            br#"{"execution_id":"e1","trace_id":"t","payload":{"n":1},"timeout_ms":250,"callback_url":"http://cp/v1/internal/executions/","callback_token":"tok"}"#,
        );
        let request = parse_invoke(&HeaderMap::new(), body, &with_callback(configured)).unwrap();
        assert_eq!(request.invocation.execution_id, "e1");
        assert_eq!(request.invocation.trace_id.as_deref(), Some("t"));
        assert_eq!(request.invocation.payload, r#"{"n":1}"#);
        assert_eq!(request.invocation.timeout, Duration::from_millis(250));
        assert!(request.callback);
        assert_eq!(request.callback_token, Some(Secret::new("tok")));
        assert!(!format!("{request:?}").contains("tok\""), "{request:?}");
        // Without one in the request, no callback.
        let body = Bytes::from_static(br#"{"execution_id":"e1"}"#);
        let request = parse_invoke(&HeaderMap::new(), body, &with_callback(configured)).unwrap();
        assert!(!request.callback);
        assert_eq!(request.invocation.timeout, DEFAULT);
    }

    #[test]
    fn the_trace_context_comes_in_headers_with_either_form() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_static(parent));
        headers.insert("tracestate", HeaderValue::from_static("a=1"));
        let body = Bytes::from_static(br#"{"execution_id":"e"}"#);
        let request = parse_invoke(&headers, body, &OPEN).unwrap();
        assert_eq!(request.invocation.traceparent.as_deref(), Some(parent));
        assert_eq!(request.invocation.tracestate.as_deref(), Some("a=1"));
        headers.insert("x-execution-id", HeaderValue::from_static("e"));
        headers.remove("tracestate");
        let request = parse_invoke(&headers, Bytes::new(), &OPEN).unwrap();
        assert_eq!(request.invocation.traceparent.as_deref(), Some(parent));
        assert_eq!(request.invocation.tracestate, None);
    }

    #[test]
    fn execution_id_header_makes_the_body_the_raw_payload() {
        let mut headers = HeaderMap::new();
        headers.insert("x-execution-id", HeaderValue::from_static("e2"));
        headers.insert("x-timeout-ms", HeaderValue::from_static("40"));
        let request = parse_invoke(&headers, Bytes::from_static(b"[1,2]"), &OPEN).unwrap();
        assert_eq!(request.invocation.execution_id, "e2");
        assert_eq!(request.invocation.payload, "[1,2]");
        assert_eq!(request.invocation.timeout, Duration::from_millis(40));
        assert!(!request.callback);
        let request = parse_invoke(&headers, Bytes::new(), &OPEN).unwrap();
        assert_eq!(request.invocation.payload, "null");
    }

    #[test]
    fn a_request_timeout_is_capped_at_timeout_ms() {
        let body = Bytes::from_static(br#"{"execution_id":"e","timeout_ms":999999999}"#);
        let request = parse_invoke(&HeaderMap::new(), body, &OPEN).unwrap();
        assert_eq!(request.invocation.timeout, DEFAULT);
        let mut headers = HeaderMap::new();
        headers.insert("x-execution-id", HeaderValue::from_static("e"));
        headers.insert("x-timeout-ms", HeaderValue::from_static("45000"));
        let request = parse_invoke(&headers, Bytes::new(), &OPEN).unwrap();
        assert_eq!(request.invocation.timeout, DEFAULT);
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        type Case = (
            &'static [(&'static str, &'static str)],
            &'static [u8],
            &'static str,
        );
        let cases: [Case; 6] = [
            (&[], b"{\"payload\":1}", "execution_id"),
            (&[], b"not json", "X-Execution-Id"),
            (&[], b"{\"execution_id\":\"\"}", "must not be empty"),
            (
                &[],
                b"{\"execution_id\":\"e\",\"timeout_ms\":0}",
                "timeout_ms",
            ),
            (&[("x-execution-id", "e")], b"{oops", "not JSON"),
            (
                &[("x-execution-id", "e"), ("x-timeout-ms", "soon")],
                b"1",
                "X-Timeout-Ms",
            ),
        ];
        for (pairs, body, expected) in cases {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, HeaderValue::from_static(value));
            }
            let err = parse_invoke(&headers, Bytes::copy_from_slice(body), &OPEN).unwrap_err();
            assert!(
                err.contains(expected),
                "{err:?} should mention {expected:?}"
            );
        }
    }

    #[test]
    fn callback_url_must_be_http() {
        let configured = "http://cp/v1/internal/executions";
        let body = Bytes::from_static(br#"{"execution_id":"e","callback_url":"ftp://x"}"#);
        let err = parse_invoke(&HeaderMap::new(), body, &with_callback(configured)).unwrap_err();
        assert!(err.contains("callback_url"), "{err}");
    }

    #[test]
    fn control_characters_in_header_bound_fields_are_a_400() {
        let fixed = with_callback("http://cp/v1/internal/executions");
        for field in ["trace_id", "callback_token"] {
            let body = format!(
                r#"{{"execution_id":"e","callback_url":"http://cp/v1/internal/executions","{field}":"a\u0001b"}}"#
            );
            let err = parse_invoke(&HeaderMap::new(), Bytes::from(body), &fixed).unwrap_err();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn only_the_configured_callback_target_is_accepted() {
        let fixed = with_callback("http://cp:8080/v1/internal/executions");
        let envelope =
            |url: &str| Bytes::from(format!(r#"{{"execution_id":"e","callback_url":"{url}"}}"#));
        for same in [
            "http://cp:8080/v1/internal/executions",
            "http://CP:8080/v1/internal/executions/",
        ] {
            let request = parse_invoke(&HeaderMap::new(), envelope(same), &fixed).unwrap();
            assert!(request.callback, "{same}");
        }
        for other in [
            "http://attacker:8080/v1/internal/executions",
            "http://cp:8081/v1/internal/executions",
            "http://cp:8080/v1/internal/other",
            "http://cp/v1/internal/executions",
        ] {
            let err = parse_invoke(&HeaderMap::new(), envelope(other), &fixed).unwrap_err();
            assert!(err.contains("CALLBACK_URL"), "{other}: {err}");
        }
        // The raw form's header follows the same rule.
        let mut headers = HeaderMap::new();
        headers.insert("x-execution-id", HeaderValue::from_static("e"));
        headers.insert(
            "x-callback-url",
            HeaderValue::from_static("http://attacker/v1/internal/executions"),
        );
        let err = parse_invoke(&headers, Bytes::new(), &fixed).unwrap_err();
        assert!(err.contains("X-Callback-Url"), "{err}");
        // Without CALLBACK_URL every request callback is refused.
        let err = parse_invoke(
            &HeaderMap::new(),
            envelope("http://cp:8080/v1/internal/executions"),
            &OPEN,
        )
        .unwrap_err();
        assert!(err.contains("CALLBACK_URL"), "{err}");
    }
}
