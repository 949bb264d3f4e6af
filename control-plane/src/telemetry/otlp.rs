//! The export side: the SDK's batch span processor in front of the OTLP/HTTP (protobuf)
//! exporter, behind a gate that keeps the processor's queue from overflowing and counts
//! every span that never reaches the receiver.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use prometheus_client::metrics::counter::Counter;
use tokio::runtime::Handle;

use super::{TelemetryError, TracingSettings};

/// Where spans go: a bounded queue and the thread that exports it in batches.
pub(super) struct Pipeline {
    processor: BatchSpanProcessor,
    /// Spans handed to the processor and not yet taken by an export.
    pending: Arc<AtomicUsize>,
    max_queue: usize,
    dropped: Counter,
    /// Names Gantry as the spans' source.
    pub(super) scope: InstrumentationScope,
}

impl Pipeline {
    /// Builds the exporter and starts the processor's thread; exports run on `runtime`.
    pub(super) fn start(
        settings: &TracingSettings,
        dropped: Counter,
        runtime: Handle,
    ) -> Result<Pipeline, TelemetryError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(traces_url(&settings.endpoint)?)
            .with_timeout(settings.export_timeout)
            .build()
            .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
        let pending = Arc::new(AtomicUsize::new(0));
        let exporter = Counted {
            inner: exporter,
            pending: pending.clone(),
            dropped: dropped.clone(),
            runtime,
            endpoint: settings.endpoint.clone(),
            failing: AtomicBool::new(false),
        };
        let config = BatchConfigBuilder::default()
            .with_max_queue_size(settings.max_queue)
            .with_max_export_batch_size(settings.max_queue.min(512))
            .build();
        let mut processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(config)
            .build();
        processor.set_resource(
            &Resource::builder_empty()
                .with_service_name(settings.service_name.clone())
                .build(),
        );
        Ok(Pipeline {
            processor,
            pending,
            max_queue: settings.max_queue,
            dropped,
            scope: InstrumentationScope::builder("gantry")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        })
    }

    /// Queues `span` for export, or drops and counts it when the queue is full. Never
    /// waits.
    pub(super) fn submit(&self, span: SpanData) {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= self.max_queue {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            self.dropped.inc();
            return;
        }
        self.processor.on_end(span);
    }

    /// Exports what is queued and stops the processor, within `limit`. Blocks.
    pub(super) fn shutdown(&self, limit: Duration) -> Result<(), TelemetryError> {
        self.processor
            .shutdown_with_timeout(limit)
            .map_err(|err| TelemetryError::Shutdown(err.to_string()))
    }
}

/// `endpoint` with the traces path: an `http://` base URL gets `/v1/traces`, a URL that
/// ends with it already is kept.
pub(super) fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let host = trimmed.strip_prefix("http://").unwrap_or_default();
    if host.is_empty() || host.starts_with('/') {
        return Err(TelemetryError::BadEndpoint(endpoint.to_owned()));
    }
    if trimmed.ends_with("/v1/traces") {
        Ok(trimmed.to_owned())
    } else {
        Ok(format!("{trimmed}/v1/traces"))
    }
}

/// The OTLP exporter, counting what each batch takes off the queue and what a failed
/// export loses, and running its HTTP client on the server's runtime (the processor's
/// own thread has none).
#[derive(Debug)]
struct Counted {
    inner: opentelemetry_otlp::SpanExporter,
    pending: Arc<AtomicUsize>,
    dropped: Counter,
    runtime: Handle,
    /// For the warning when exports start failing.
    endpoint: String,
    /// Whether the last export failed: a warning is logged once per run of failures.
    failing: AtomicBool,
}

impl SpanExporter for Counted {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let count = batch.len();
        self.pending.fetch_sub(count, Ordering::Relaxed);
        let export = InRuntime {
            runtime: self.runtime.clone(),
            future: Box::pin(self.inner.export(batch)),
        };
        async move {
            let result = export.await;
            let failed = result.is_err();
            if failed {
                self.dropped.inc_by(count as u64);
            }
            if self.failing.swap(failed, Ordering::Relaxed) != failed {
                match &result {
                    Err(err) => tracing::warn!(
                        "cannot export spans to {}, dropping them until it answers: {err}",
                        self.endpoint
                    ),
                    Ok(()) => tracing::info!("exporting spans to {} again", self.endpoint),
                }
            }
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A future polled inside `runtime`'s context, so the Tokio-based client it drives finds
/// its reactor and timers from any thread.
struct InRuntime<F> {
    runtime: Handle,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for InRuntime<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let _entered = this.runtime.enter();
        this.future.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_added_once() {
        let url = |text: &str| traces_url(text).unwrap();
        assert_eq!(
            url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            url("http://collector:4318/"),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
        for bad in [
            "",
            "127.0.0.1:4318",
            "https://c:4318",
            "http://",
            "http:///x",
        ] {
            assert!(traces_url(bad).is_err(), "{bad:?}");
        }
    }
}
