//! Spans over OTLP: with `--otlp-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) set, every
//! execution becomes spans in one trace — the API request, admission, queue wait, claim,
//! instance start, run and result record, under one `gantry.execution` span that chained
//! children hang from. Spans are recorded once their work is done, from the times the
//! execution carries, encoded by the hook and appended to a bounded queue: a full queue
//! drops them (and counts them in `gantry_spans_dropped_total`), so export never holds
//! up a call. With no endpoint, nothing is recorded and every hook is one check of an unset
//! cell. Which traces are recorded at all is the head sampler's decision ([`sampler`]).
//!
//! The trace of an execution is its `trace_id` when that is a W3C trace id (32 lowercase
//! hex digits), else a hash of it ([`trace_id`]). The span of an execution has an id
//! derived from the execution's id ([`execution_span_id`]), so a node that records a
//! child (or a later attempt) finds its parent without asking anyone.

mod inbox;
mod otlp;
mod record;
pub mod sampler;
mod spans;
mod wire;

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use sampler::{install_sampler, sampled, Sampler};
pub use spans::{admitted, claimed, instance_started, ran, recorded, request};

use otlp::Pipeline;

/// Spans waiting for export at most, unless `OTEL_BSP_MAX_QUEUE_SIZE` says otherwise.
pub const DEFAULT_MAX_QUEUE: usize = 2048;
/// Most spans a queue may hold, whatever `OTEL_BSP_MAX_QUEUE_SIZE` says.
pub const MAX_QUEUE_LIMIT: usize = 65_536;
/// Spans in one export request at most, unless `OTEL_BSP_MAX_EXPORT_BATCH_SIZE` says
/// otherwise (never more than the queue holds).
pub const DEFAULT_BATCH: usize = 512;
/// The longest wait between exports, unless `OTEL_BSP_SCHEDULE_DELAY` (ms) says
/// otherwise.
pub const DEFAULT_SCHEDULE_DELAY: Duration = Duration::from_secs(5);
/// How long one export may take, unless `OTEL_EXPORTER_OTLP_TIMEOUT` (ms) says otherwise.
pub const DEFAULT_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The process's span pipeline, set once by [`install`]: spans are recorded from code
/// deep in the dispatcher, which would otherwise need it threaded through every call.
static PIPELINE: OnceLock<Pipeline> = OnceLock::new();

/// Why spans cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The endpoint is not an `http://` or `https://` URL.
    #[error("OTEL_EXPORTER_OTLP_ENDPOINT (--otlp-endpoint) must be an http:// or https:// URL without credentials, query or fragment, such as http://127.0.0.1:4318, got {0:?}")]
    BadEndpoint(String),
    /// The sampler's name is none of the known ones.
    #[error("OTEL_TRACES_SAMPLER (--otlp-sampler) must be one of always_on, always_off, traceidratio, parentbased_always_on, parentbased_always_off or parentbased_traceidratio, got {0:?}")]
    BadSampler(String),
    /// The sampling ratio is not a number from 0 to 1.
    #[error("OTEL_TRACES_SAMPLER_ARG (--otlp-sampler-arg) must be a ratio from 0 to 1 such as 0.25, got {0:?}")]
    BadRatio(String),
    /// `OTEL_EXPORTER_OTLP_HEADERS` (or `OTEL_EXPORTER_OTLP_TRACES_HEADERS`) is not a
    /// comma-separated list of `name=value` pairs with valid HTTP header names and values.
    #[error("{variable} must be a comma-separated list of name=value pairs (values percent-encoded), such as authorization=Bearer%20abc,x-tenant=7; entry {entry} is not")]
    BadHeaders {
        /// The variable that holds the list.
        variable: &'static str,
        /// The entry's position, from 1 (its text is not shown: it may hold a secret).
        entry: usize,
    },
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
    /// Spans in one export request at most.
    pub batch: usize,
    /// Longest wait between exports when no batch fills up.
    pub schedule_delay: Duration,
    /// Longest wait for one export.
    pub export_timeout: Duration,
    /// Headers sent with every export (credentials for a hosted collector, usually).
    pub headers: HeaderMap,
}

impl TracingSettings {
    /// Settings for `endpoint` and `service_name`, with the queue size, batch size,
    /// schedule delay and export timeout from the standard `OTEL_BSP_MAX_QUEUE_SIZE`,
    /// `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_SCHEDULE_DELAY` and
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds) when they are set (and positive), and
    /// the headers of `OTEL_EXPORTER_OTLP_TRACES_HEADERS` or else
    /// `OTEL_EXPORTER_OTLP_HEADERS`.
    pub fn new(endpoint: &str, service_name: &str) -> Result<TracingSettings, TelemetryError> {
        let number = |name: &str| {
            std::env::var(name)
                .ok()
                .and_then(|text| text.trim().parse::<u64>().ok())
                .filter(|&n| n > 0)
        };
        let count = |name: &str, default: usize| {
            number(name).map_or(default, |n| {
                usize::try_from(n).map_or(MAX_QUEUE_LIMIT, |n| n.min(MAX_QUEUE_LIMIT))
            })
        };
        let max_queue = count("OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_MAX_QUEUE);
        Ok(TracingSettings {
            endpoint: endpoint.to_owned(),
            service_name: service_name.to_owned(),
            max_queue,
            batch: count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DEFAULT_BATCH).min(max_queue),
            schedule_delay: number("OTEL_BSP_SCHEDULE_DELAY")
                .map_or(DEFAULT_SCHEDULE_DELAY, Duration::from_millis),
            export_timeout: number("OTEL_EXPORTER_OTLP_TIMEOUT")
                .map_or(DEFAULT_EXPORT_TIMEOUT, Duration::from_millis),
            headers: headers_from_env()?,
        })
    }
}

/// The export headers the environment asks for: the traces-only variable wins over the
/// general one, as OpenTelemetry's exporters do.
fn headers_from_env() -> Result<HeaderMap, TelemetryError> {
    for variable in [
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        "OTEL_EXPORTER_OTLP_HEADERS",
    ] {
        if let Ok(list) = std::env::var(variable) {
            return parse_headers(variable, &list);
        }
    }
    Ok(HeaderMap::new())
}

/// `list` (`name=value,name=value`, values percent-encoded) as headers; every value is
/// marked sensitive so that it is never printed.
fn parse_headers(variable: &'static str, list: &str) -> Result<HeaderMap, TelemetryError> {
    let mut headers = HeaderMap::new();
    let entries = list.split(',').filter(|entry| !entry.trim().is_empty());
    for (index, entry) in entries.enumerate() {
        let bad = || TelemetryError::BadHeaders {
            variable,
            entry: index + 1,
        };
        let (name, value) = entry.split_once('=').ok_or_else(bad)?;
        let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
        let value = percent_encoding::percent_decode_str(value.trim())
            .decode_utf8()
            .map_err(|_| bad())?;
        let mut value = HeaderValue::from_str(&value).map_err(|_| bad())?;
        value.set_sensitive(true);
        headers.append(name, value);
    }
    Ok(headers)
}

/// Refuses an endpoint spans cannot be exported to (not an `http://` or `https://` URL).
pub fn check_endpoint(endpoint: &str) -> Result<(), TelemetryError> {
    otlp::traces_url(endpoint).map(drop)
}

/// Starts exporting spans as `settings` say; `dropped` counts the spans that never
/// reach the receiver (queue full, export failed). Exports run on a thread of their own.
pub fn install(settings: &TracingSettings, dropped: Counter) -> Result<(), TelemetryError> {
    let pipeline = Pipeline::start(settings, dropped)?;
    PIPELINE
        .set(pipeline)
        .map_err(|_| TelemetryError::AlreadyInstalled)
}

/// Exports what is queued and stops, waiting at most `limit`. Nothing to do when no
/// span is exported.
pub async fn shutdown(limit: Duration) -> Result<(), TelemetryError> {
    let Some(pipeline) = PIPELINE.get() else {
        return Ok(());
    };
    pipeline.shutdown(limit).await
}

/// Now, when spans are exported: the start of a span that ends later. `None` (and no
/// clock read) when they are not.
pub fn started() -> Option<SystemTime> {
    PIPELINE.get().map(|_| SystemTime::now())
}

/// The trace id for an execution's `trace_id`: itself when it is 32 lowercase hex digits
/// (and not all zero), else the first 16 bytes of its SHA-256.
pub fn trace_id(text: &str) -> [u8; 16] {
    let is_w3c = text.len() == 32
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte));
    let mut bytes = [0u8; 16];
    if is_w3c && hex::decode_to_slice(text, &mut bytes).is_ok() && bytes != [0; 16] {
        return bytes;
    }
    let digest = Sha256::digest(text.as_bytes());
    bytes.copy_from_slice(&digest[..16]);
    bytes
}

/// The id of execution `id`'s `gantry.execution` span.
pub fn execution_span_id(id: Uuid) -> [u8; 8] {
    crate::domain::derived_span_id(b"execution", id)
}

/// The id of the `:invoke`/`:enqueue` request span that created the execution whose own
/// span is `execution_span`: a fixed transform of that id, so each hook that needs it
/// derives it without hashing again. Never that id itself, never all zeros.
pub fn request_span_id(execution_span: [u8; 8]) -> [u8; 8] {
    const MASK: u64 = 0x9e37_79b9_7f4a_7c15;
    let id = u64::from_be_bytes(execution_span) ^ MASK;
    // XOR with a non-zero mask never gives back the input; zero needs one other value.
    if id == 0 { 1u64 } else { id }.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_w3c_trace_id_is_kept() {
        let text = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(hex::encode(trace_id(text)), text);
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
            assert_ne!(id, [0; 16], "{text:?}");
            assert_eq!(id, trace_id(text), "{text:?}");
            assert_ne!(hex::encode(id), text, "{text:?}");
        }
        assert_ne!(trace_id("a"), trace_id("b"));
    }

    #[test]
    fn span_ids_are_stable_and_distinct_per_execution_and_kind() {
        let (one, two) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(execution_span_id(one), execution_span_id(one));
        assert_ne!(execution_span_id(one), execution_span_id(two));
        assert_ne!(execution_span_id(one), [0; 8]);
        let own = execution_span_id(one);
        assert_eq!(request_span_id(own), request_span_id(own));
        assert_ne!(request_span_id(own), own);
        assert_ne!(
            request_span_id(own),
            request_span_id(execution_span_id(two))
        );
        let mask_itself = 0x9e37_79b9_7f4a_7c15u64.to_be_bytes();
        assert_ne!(request_span_id(mask_itself), [0; 8]);
        assert_ne!(request_span_id(mask_itself), mask_itself);
    }

    #[test]
    fn header_lists_are_decoded_and_bad_entries_named_without_their_text() {
        let headers =
            parse_headers("V", " authorization=Bearer%20s3cr%3Dt , x-tenant=7,,").unwrap();
        assert_eq!(headers["authorization"], "Bearer s3cr=t");
        assert!(headers["authorization"].is_sensitive());
        assert_eq!(headers["x-tenant"], "7");
        assert!(parse_headers("V", "").unwrap().is_empty());
        for (list, entry) in [
            ("a=1,secret", 2),
            ("bad name=1", 1),
            ("a=line%0Abreak", 1),
            ("a=%FF", 1),
            ("=1", 1),
        ] {
            let err = parse_headers("V", list).unwrap_err().to_string();
            assert!(err.contains(&format!("entry {entry} ")), "{list}: {err}");
            assert!(!err.contains("secret") && !err.contains("break"), "{err}");
        }
    }

    #[test]
    fn settings_default_to_a_bounded_queue() {
        let settings = TracingSettings::new("http://127.0.0.1:4318", "gantry").unwrap();
        assert!(settings.max_queue > 0);
        assert!(settings.max_queue <= MAX_QUEUE_LIMIT);
        assert!(settings.batch > 0 && settings.batch <= settings.max_queue);
        assert!(settings.schedule_delay > Duration::ZERO);
        assert!(settings.export_timeout > Duration::ZERO);
    }
}
