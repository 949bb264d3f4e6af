//! The trace headers of a request that starts executions: `X-Trace-Id` (the caller's
//! correlation id) and the W3C `traceparent` and `tracestate`.

use axum::http::HeaderMap;
use gantry_protocol::headers;

use super::error::ApiError;
use super::invoke::{text_header, MAX_KEY_LEN};
use crate::domain::TraceContext;

/// Longest `tracestate` taken, all its headers together; a valid one is shortened to
/// 512 characters afterwards, so this only bounds what is read.
const MAX_TRACESTATE_LEN: usize = 8192;

/// What a request says about the trace its executions join.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceHeaders {
    /// `X-Trace-Id`.
    pub trace_id: Option<String>,
    /// A valid `traceparent` (with its `tracestate`); a malformed one is left out, so a
    /// new trace starts.
    pub context: Option<TraceContext>,
}

/// Reads `X-Trace-Id`, `traceparent` and `tracestate`. A header past its size is a 400
/// naming it, like every other; a malformed `traceparent` is ignored, as the W3C
/// specification asks, and a malformed `tracestate` dropped.
pub fn trace_headers(request_headers: &HeaderMap) -> Result<TraceHeaders, ApiError> {
    let trace_id = text_header(request_headers, headers::TRACE_ID)?;
    let traceparent = joined(
        request_headers,
        headers::TRACEPARENT,
        "traceparent",
        MAX_KEY_LEN,
    )?;
    let tracestate = joined(
        request_headers,
        headers::TRACESTATE,
        "tracestate",
        MAX_TRACESTATE_LEN,
    )?;
    // Several traceparent headers are joined with a comma, which no valid one holds.
    let context =
        traceparent.and_then(|parent| TraceContext::parse(&parent, tracestate.as_deref()).ok());
    Ok(TraceHeaders { trace_id, context })
}

/// Every value of `name`, joined with commas as HTTP combines a list header; `None`
/// when there is none or one is not text (malformed, so ignored).
fn joined(
    request_headers: &HeaderMap,
    name: &str,
    shown: &str,
    max: usize,
) -> Result<Option<String>, ApiError> {
    let mut parts = Vec::new();
    let mut len = 0;
    for value in request_headers.get_all(name) {
        len += value.len() + usize::from(!parts.is_empty());
        if len > max {
            return Err(ApiError::bad_request(format!(
                "{shown} must be at most {max} characters"
            )));
        }
        match value.to_str() {
            Ok(text) => parts.push(text),
            Err(_) => return Ok(None),
        }
    }
    Ok((!parts.is_empty()).then(|| parts.join(",")))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_valid_traceparent_and_its_state_are_taken() {
        let read = trace_headers(&headers(&[
            ("traceparent", PARENT),
            ("tracestate", "a=1"),
            ("tracestate", "b=2"),
        ]))
        .unwrap();
        let context = read.context.unwrap();
        assert_eq!(context.traceparent(), PARENT);
        assert_eq!(context.state.as_deref(), Some("a=1,b=2"));
        assert_eq!(read.trace_id, None);
    }

    #[test]
    fn a_malformed_traceparent_is_ignored_not_refused() {
        for bad in [
            "garbage",
            &PARENT.to_uppercase(),
            &PARENT.replace("-01", ""),
        ] {
            let read =
                trace_headers(&headers(&[("traceparent", bad), ("x-trace-id", "t")])).unwrap();
            assert_eq!(read.context, None, "{bad:?}");
            assert_eq!(read.trace_id.as_deref(), Some("t"));
        }
        let twice = headers(&[("traceparent", PARENT), ("traceparent", PARENT)]);
        assert_eq!(trace_headers(&twice).unwrap().context, None);
        let mut opaque = HeaderMap::new();
        opaque.insert("traceparent", HeaderValue::from_bytes(b"00-\xff").unwrap());
        assert_eq!(trace_headers(&opaque).unwrap().context, None);
    }

    #[test]
    fn over_long_headers_are_refused() {
        let long = format!("{PARENT}-{}", "0".repeat(300));
        let err = trace_headers(&headers(&[("traceparent", &long)])).unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
        let state = "k=v,".repeat(2100);
        let err = trace_headers(&headers(&[("traceparent", PARENT), ("tracestate", &state)]))
            .unwrap_err();
        assert_eq!(err.status().as_u16(), 400);
    }
}
