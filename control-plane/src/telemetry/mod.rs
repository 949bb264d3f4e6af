//! Spans over OTLP: with `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) set, every
//! execution becomes spans in one trace — the API request, admission, queue wait, claim,
//! instance start, run and result record, under one `gantry.execution` span that chained
//! children hang from. Spans are recorded once their work is done, from the times the
//! execution carries, and handed to a bounded batch queue: a full queue drops them (and
//! counts them in `gantry_spans_dropped_total`), so export never holds up a call. With no
//! endpoint, nothing is recorded and every hook is one check of an unset cell.
//!
//! The trace of an execution is its `trace_id` when that is a W3C trace id (32 lowercase
//! hex digits), else a hash of it ([`trace_id`]). The span of an execution has an id
//! derived from the execution's id ([`execution_span_id`]), so a node that records a
//! child (or a later attempt) finds its parent without asking anyone.

mod otlp;
mod spans;

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{SpanId, TraceId};
use prometheus_client::metrics::counter::Counter;
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use spans::{admitted, claimed, instance_started, ran, recorded, request};

use otlp::Pipeline;

/// Spans waiting for export at most, unless `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise.
pub const DEFAULT_MAX_QUEUE: usize = 2048;
/// How long one export may take, unless `OTEL_EXPORTER_OTLP_TIMEOUT` (ms) says otherwise.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The process's span pipeline, set once by [`install`]: spans are recorded from code
/// deep in the dispatcher, which would otherwise need it threaded through every call.
static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

/// Why spans cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The endpoint is not an `http://` URL.
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT (--otlp-endpoint) must be an http:// URL such as http://127.0.0.1:4318, got {0:?}")]
    BadEndpoint(String),
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
    /// This process exports spans already.
    #[error("span export is already set up in this process")]
    AlreadyInstalled,
    /// The exporter did not shut down cleanly (within its time limit).
    #[error("the span exporter did not shut down cleanly: {0}")]
    Shutdown(String),
}

/// Where and as what spans are exported.
#[derive(Debug, Clone)]
pub struct TracingSettings {
    /// The OTLP/HTTP base URL (`/v1/traces` is added unless it is there already).
    pub endpoint: String,
    /// The `service.name` of every span.
    pub service_name: String,
    /// Spans waiting for export at most; more are dropped.
    pub max_queue: usize,
    /// Longest wait for one export.
    pub export_timeout: Duration,
}

impl TracingSettings {
    /// Settings for `endpoint` and `service_name`, with the queue size and export
    /// timeout from the standard `OTEL_BSP_MAX_QUEUE_SIZE` and
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds) when they are set.
    pub fn new(endpoint: &str, service_name: &str) -> TracingSettings {
        let number = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .filter(|&n| n > 0)
        };
        TracingSettings {
            endpoint: endpoint.to_owned(),
            service_name: service_name.to_owned(),
            max_queue: number("OTEL_BSP_MAX_QUEUE_SIZE").map_or(DEFAULT_MAX_QUEUE, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
            export_timeout: number("OTEL_EXPORTER_OTLP_TIMEOUT")
                .map_or(DEFAULT_EXPORT_TIMEOUT, Duration::from_millis),
        }
    }
}

/// Refuses an endpoint spans cannot be exported to (not an `http://` URL).
pub fn check_endpoint(endpoint: &str) -> Result<(), TelemetryError> {
    otlp::traces_url(endpoint).map(drop)
}

/// Starts exporting spans as `settings` say; `dropped` counts the spans that never
/// reach the receiver (queue full, export failed). Call from within the Tokio runtime:
/// exports run on it.
pub fn install(settings: &TracingSettings, dropped: Counter) -> Result<(), TelemetryError> {
    let pipeline = Pipeline::start(settings, dropped, tokio::runtime::Handle::current())?;
    PIPELINE
        .set(pipeline)
        .map_err(|_| TelemetryError::AlreadyInstalled)
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    PIPELINE.get().is_some()
}

/// Exports what is queued and stops, waiting at most `limit`. Nothing to do when no
/// span is exported.
pub async fn shutdown(limit: Duration) -> Result<(), TelemetryError> {
    let Some(pipeline) = PIPELINE.get() else {
        return Ok(());
    };
    let stop = tokio::task::spawn_blocking(move || pipeline.shutdown(limit));
    match tokio::time::timeout(limit + Duration::from_millis(500), stop).await {
        Ok(Ok(result)) => result,
        Ok(Err(err)) => Err(TelemetryError::Shutdown(err.to_string())),
        Err(_) => Err(TelemetryError::Shutdown(format!(
            "still exporting after {limit:?}"
        ))),
    }
}

/// Now, when spans are exported: the start of a span that ends later. `None` (and no
/// clock read) when they are not.
pub fn started() -> Option<SystemTime> {
    PIPELINE.get().map(|_| SystemTime::now())
}

/// The trace id for an execution's `trace_id`: itself when it is 32 lowercase hex digits
/// (and not all zero), else the first 16 bytes of its SHA-256.
pub fn trace_id(text: &str) -> TraceId {
    let is_w3c = text.len() == 32
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    if is_w3c {
        if let Ok(id) = TraceId::from_hex(text) {
            if id != TraceId::INVALID {
                return id;
            }
        }
    }
    let digest = Sha256::digest(text.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    TraceId::from_bytes(bytes)
}

/// The id of execution `id`'s `gantry.execution` span.
pub fn execution_span_id(id: Uuid) -> SpanId {
    derived_span_id(b"execution", id)
}

/// The id of the `:invoke`/`:enqueue` request span that created execution `id`.
pub fn request_span_id(id: Uuid) -> SpanId {
    derived_span_id(b"request", id)
}

fn derived_span_id(kind: &[u8], id: Uuid) -> SpanId {
    SpanId::from_bytes(crate::domain::derived_span_id(kind, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_w3c_trace_id_is_kept() {
        let text = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(trace_id(text).to_string(), text);
    }

    #[test]
    fn other_trace_ids_are_hashed_to_a_stable_valid_id() {
        for text in [
            "order-1234",
            "4BF92F3577B34DA6A3CE929D0E0E4736",
            "00000000000000000000000000000000",
            "4bf92f3577b34da6a3ce929d0e0e473",
            "4bf92f3577b34da6a3ce929d0e0e4736a",
            "",
        ] {
            let id = trace_id(text);
            assert_ne!(id, TraceId::INVALID, "{text:?}");
            assert_eq!(id, trace_id(text), "{text:?}");
            assert_ne!(id.to_string(), text, "{text:?}");
            assert_eq!(id.to_string().len(), 32);
        }
        assert_ne!(trace_id("a"), trace_id("b"));
    }

    #[test]
    fn span_ids_are_stable_and_distinct_per_execution_and_kind() {
        let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(execution_span_id(one), execution_span_id(one));
        assert_ne!(execution_span_id(one), execution_span_id(two));
        assert_ne!(execution_span_id(one), request_span_id(one));
        assert_ne!(execution_span_id(one), SpanId::INVALID);
    }

    #[test]
    fn settings_default_to_a_bounded_queue() {
        let settings = TracingSettings::new("http://127.0.0.1:4318", "gantry");
        assert!(settings.max_queue > 0);
        assert!(settings.export_timeout > Duration::ZERO);
    }
}
