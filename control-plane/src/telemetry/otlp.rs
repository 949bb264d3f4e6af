//! The export side: a bounded queue of span records that the hooks push to without ever
//! waiting, and one thread of its own that drains it in batches, encodes each batch as
//! one OTLP/HTTP protobuf request and POSTs it, counting every span that never reaches
//! the receiver.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::record::{Encoder, SpanRecord};
use super::{TelemetryError, TracingSettings};

/// Most bytes of a receiver's answer read (and thrown away) so its connection is kept.
const MAX_ANSWER: usize = 64 * 1024;

/// Where spans go: the queue, and what wakes and stops the thread that exports it.
pub(super) struct Pipeline {
    queue: SyncSender<SpanRecord>,
    /// Spans queued and not yet taken by the exporter: it is woken when a batch is full.
    pending: Arc<AtomicUsize>,
    batch: usize,
    wake: Arc<Notify>,
    dropped: Counter,
    /// The time a stop may take, once asked for.
    stop: watch::Sender<Option<Instant>>,
    /// Becomes true when the exporter has finished.
    finished: watch::Receiver<bool>,
}

impl Pipeline {
    /// Builds the HTTP client and starts the exporter's thread.
    pub(super) fn start(
        settings: &TracingSettings,
        dropped: Counter,
    ) -> Result<Pipeline, TelemetryError> {
        let url = traces_url(&settings.endpoint)?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(settings.headers.clone())
            .connect_timeout(settings.export_timeout)
            .no_proxy()
            .build()
            .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
        let (queue, taken) = std::sync::mpsc::sync_channel(settings.max_queue);
        let (stop, stopping) = watch::channel(None);
        let (done, finished) = watch::channel(false);
        let pending = Arc::new(AtomicUsize::new(0));
        let wake = Arc::new(Notify::new());
        let exporter = Exporter {
            taken,
            pending: pending.clone(),
            wake: wake.clone(),
            batch: Vec::with_capacity(settings.batch),
            batch_size: settings.batch,
            delay: settings.schedule_delay,
            timeout: settings.export_timeout,
            encoder: Encoder::new(&settings.service_name),
            client,
            url,
            endpoint: settings.endpoint.clone(),
            dropped: dropped.clone(),
            failing: false,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
        std::thread::Builder::new()
            .name("gantry-spans".into())
            .spawn(move || {
                runtime.block_on(exporter.run(stopping));
                let _ = done.send(true);
            })
            .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
        Ok(Pipeline {
            queue,
            pending,
            batch: settings.batch,
            wake,
            dropped,
            stop,
            finished,
        })
    }

    /// Queues `span` for export, or drops and counts it when the queue is full (or the
    /// exporter has stopped). Never waits.
    pub(super) fn submit(&self, span: SpanRecord) {
        // Counted before it is sent, so the exporter never takes it off the count first.
        let waiting = self.pending.fetch_add(1, Ordering::Relaxed) + 1;
        match self.queue.try_send(span) {
            // Wakes the exporter once per full batch, not per span.
            Ok(()) if waiting == self.batch => self.wake.notify_one(),
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                self.dropped.inc();
            }
        }
    }

    /// Exports what is queued and stops the exporter, waiting at most `limit`.
    pub(super) async fn shutdown(&self, limit: Duration) -> Result<(), TelemetryError> {
        let _ = self.stop.send(Some(Instant::now() + limit));
        let mut finished = self.finished.clone();
        // A little past the limit: the exporter gives up at the limit itself.
        let wait = limit + Duration::from_millis(500);
        let finished = tokio::time::timeout(wait, finished.wait_for(|done| *done)).await;
        match finished {
            Ok(_) => Ok(()),
            Err(_) => Err(TelemetryError::Shutdown(format!(
                "still exporting after {limit:?}"
            ))),
        }
    }
}

/// The exporter's thread: takes batches off the queue and POSTs them.
struct Exporter {
    taken: Receiver<SpanRecord>,
    pending: Arc<AtomicUsize>,
    wake: Arc<Notify>,
    batch: Vec<SpanRecord>,
    batch_size: usize,
    delay: Duration,
    timeout: Duration,
    encoder: Encoder,
    client: reqwest::Client,
    url: String,
    /// For the warnings.
    endpoint: String,
    dropped: Counter,
    /// Whether the last export failed: a warning is logged once per run of failures.
    failing: bool,
}

impl Exporter {
    /// Exports a batch whenever one is full or the schedule delay has passed, until a
    /// stop, which exports what is left within its time limit.
    async fn run(mut self, mut stop: watch::Receiver<Option<Instant>>) {
        loop {
            let deadline = *stop.borrow_and_update();
            if deadline.is_none() {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(self.delay) => {}
                    changed = stop.changed() => {
                        // The pipeline is gone: nothing can be queued any more.
                        if changed.is_err() {
                            return;
                        }
                    }
                }
            }
            while self.take() > 0 {
                let deadline = *stop.borrow();
                match deadline {
                    // Out of time: what is left is dropped.
                    Some(deadline) if Instant::now() >= deadline => {
                        self.dropped.inc_by(self.batch.len() as u64);
                        self.batch.clear();
                    }
                    _ => self.export(&mut stop).await,
                }
            }
            if stop.borrow().is_some() {
                return;
            }
        }
    }

    /// Fills the batch from the queue (up to a batch); how many it holds.
    fn take(&mut self) -> usize {
        let before = self.batch.len();
        while self.batch.len() < self.batch_size {
            match self.taken.try_recv() {
                Ok(span) => self.batch.push(span),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        self.pending
            .fetch_sub(self.batch.len() - before, Ordering::Relaxed);
        self.batch.len()
    }

    /// POSTs the batch, giving up at the export timeout or a stop's deadline.
    async fn export(&mut self, stop: &mut watch::Receiver<Option<Instant>>) {
        let count = self.batch.len() as u64;
        let body = self.encoder.encode(&self.batch);
        self.batch.clear();
        let mut limit = Instant::now() + self.timeout;
        if let Some(deadline) = *stop.borrow_and_update() {
            limit = limit.min(deadline);
        }
        let post = post(&self.client, &self.url, body);
        tokio::pin!(post);
        let expiry = tokio::time::sleep_until(limit);
        tokio::pin!(expiry);
        let mut watching = true;
        let result = loop {
            tokio::select! {
                result = &mut post => break result,
                () = &mut expiry => break Err("timed out".to_owned()),
                changed = stop.changed(), if watching => {
                    let deadline = *stop.borrow_and_update();
                    match (changed, deadline) {
                        (Ok(()), Some(deadline)) if deadline < expiry.deadline() => {
                            expiry.as_mut().reset(deadline);
                        }
                        (Ok(()), _) => {}
                        (Err(_), _) => watching = false,
                    }
                }
            }
        };
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!("exporting spans to {} again", self.endpoint);
            }
            Ok(()) => {}
            Err(err) => {
                self.dropped.inc_by(count);
                if !self.failing {
                    self.failing = true;
                    tracing::warn!(
                        "cannot export spans to {}, dropping them until it answers: {err}",
                        self.endpoint
                    );
                }
            }
        }
    }
}

/// One export request; its answer is read (up to [`MAX_ANSWER`]) so the connection can
/// carry the next.
async fn post(client: &reqwest::Client, url: &str, body: bytes::Bytes) -> Result<(), String> {
    let mut response = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
        .body(body)
        .send()
        .await
        .map_err(|err| crate::destinations::describe(&err))?;
    let status = response.status();
    let mut read = 0;
    while read <= MAX_ANSWER {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) | Err(_) => break,
        }
    }
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the receiver answered {status}"))
    }
}

/// `endpoint` with the traces path: an `http://` or `https://` base URL gets
/// `/v1/traces`, a URL that ends with it already is kept.
pub(super) fn traces_url(endpoint: &str) -> Result<String, TelemetryError> {
    let trimmed = endpoint.trim().trim_end_matches('/');
    let bad = || TelemetryError::BadEndpoint(endpoint.to_owned());
    let rest = ["http://", "https://"]
        .iter()
        .find_map(|scheme| trimmed.strip_prefix(scheme))
        .ok_or_else(bad)?;
    let parsed = reqwest::Url::parse(trimmed).map_err(|_| bad())?;
    let host = parsed.host_str().unwrap_or_default();
    if rest.starts_with('/')
        || host.is_empty()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
        || parsed.query().is_some()
        || parsed.fragment().is_some()
    {
        return Err(bad());
    }
    if trimmed.ends_with("/v1/traces") {
        Ok(trimmed.to_owned())
    } else {
        Ok(format!("{trimmed}/v1/traces"))
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
        assert_eq!(
            url("https://otlp.example.com"),
            "https://otlp.example.com/v1/traces"
        );
        assert_eq!(
            url("https://otlp.example.com:443/base/v1/traces/"),
            "https://otlp.example.com:443/base/v1/traces"
        );
        for bad in [
            "",
            "127.0.0.1:4318",
            "ftp://c:4318",
            "HTTPS//c",
            "http://",
            "https://",
            "http:///x",
            "http://user:secret@c:4318",
            "http://c:4318/?x=1",
            "http://c:4318/#top",
            "http://c:99999",
        ] {
            assert!(traces_url(bad).is_err(), "{bad:?}");
        }
    }
}
