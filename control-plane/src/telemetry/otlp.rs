//! The export side: a bounded inbox of encoded spans that the hooks add to without ever
//! waiting, and one thread of its own that takes it a batch at a time, wraps each batch
//! as one OTLP/HTTP protobuf request and POSTs it, counting every span that never
//! reaches the receiver.
//!
//! The exporter never copies or re-encodes a span: each batch it takes from the
//! [`inbox`](super::inbox) is already its request body, but for the wrappers. Only whole
//! batches are sent until the schedule delay passes, so a busy server sends as few
//! requests as the batch size allows.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::inbox::{self, Batch, Inbox, SharedInbox, Spans};
use super::record::Envelope;
use super::{TelemetryError, TracingSettings};

/// Most bytes of a receiver's answer read (and thrown away) so its connection is kept.
const MAX_ANSWER: usize = 64 * 1024;

/// Where spans go: the inbox, and what wakes and stops the thread that exports it.
pub(super) struct Pipeline {
    inbox: SharedInbox,
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
        // Parsed once: a URL given as text is parsed again by every request.
        let url = traces_url(&settings.endpoint)?;
        let url = reqwest::Url::parse(&url)
            .map_err(|_| TelemetryError::BadEndpoint(settings.endpoint.clone()))?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(settings.headers.clone())
            .connect_timeout(settings.export_timeout)
            .no_proxy()
            .build()
            .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
        let envelope = Envelope::new(&settings.service_name);
        let inbox = Inbox::new(settings.max_queue, settings.batch, envelope.head_room());
        let stage_spans = inbox::stage_spans(settings.max_queue, settings.batch);
        let inbox = SharedInbox::new(inbox, inbox::stage_count(), stage_spans);
        let (stop, stopping) = watch::channel(None);
        let (done, finished) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let exporter = Exporter {
            inbox: inbox.clone(),
            wake: wake.clone(),
            delay: settings.schedule_delay,
            timeout: settings.export_timeout,
            envelope,
            client,
            url,
            endpoint: settings.endpoint.clone(),
            dropped: dropped.clone(),
            failing: false,
            gathered: Instant::now(),
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
            inbox,
            wake,
            dropped,
            stop,
            finished,
        })
    }

    /// Queues the spans `write` writes, or drops and counts those the inbox has no room
    /// for (or all, once the exporter has stopped). The spans are encoded before the
    /// lock is taken, and the exporter holds it only to take a batch, so this never
    /// waits for an export.
    pub(super) fn submit(&self, write: impl FnOnce(&mut Spans)) {
        let offered = self.inbox.offer_written(write);
        if offered.dropped > 0 {
            self.dropped.inc_by(offered.dropped as u64);
        }
        // Wakes the exporter once per full batch, not per span.
        if offered.filled {
            self.wake.notify_one();
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

/// The exporter's thread: takes batches from the inbox and POSTs them, one a request.
struct Exporter {
    inbox: SharedInbox,
    wake: Arc<Notify>,
    delay: Duration,
    timeout: Duration,
    envelope: Envelope,
    client: reqwest::Client,
    url: reqwest::Url,
    /// For the warnings.
    endpoint: String,
    dropped: Counter,
    /// Whether the last export failed: a warning is logged once per run of failures.
    failing: bool,
    /// When the stages were last gathered.
    gathered: Instant,
}

impl Exporter {
    /// Exports whenever a batch is full or the schedule delay has passed, until a stop,
    /// which exports what is left within its time limit. Once it returns, the inbox
    /// takes no more spans and what it still held is counted as dropped.
    async fn run(mut self, mut stop: watch::Receiver<Option<Instant>>) {
        loop {
            let mut waited = false;
            if stop.borrow_and_update().is_none() {
                tokio::select! {
                    () = self.wake.notified() => {}
                    // The delay counts from the last gathering: a busy server that
                    // wakes this thread for every batch still has its stages gathered.
                    () = tokio::time::sleep_until(due_at(self.gathered, self.delay)) => {
                        waited = true;
                    }
                    changed = stop.changed() => {
                        // The pipeline is gone: nothing can be queued any more.
                        if changed.is_err() {
                            break;
                        }
                    }
                }
            }
            // Whole batches go at once; the part batch waits to fill up, unless the
            // schedule delay has passed or a stop wants everything (checked at every
            // batch, so a stop during whole batches gets the part batch too).
            let emptied_for_a_stop = loop {
                let deadline = *stop.borrow();
                let due = waited || deadline.is_some() || self.gathered.elapsed() >= self.delay;
                if due {
                    self.gather();
                }
                let Some(batch) = self.inbox.lock().next(due) else {
                    break deadline.is_some();
                };
                match deadline {
                    Some(deadline) if Instant::now() >= deadline => {
                        self.dropped.inc_by(batch.spans as u64);
                    }
                    _ => self.export(batch, &mut stop).await,
                }
            };
            if emptied_for_a_stop {
                break;
            }
        }
        let left = self.inbox.close();
        self.dropped.inc_by(left as u64);
    }

    /// Moves the spans the stages hold into the inbox, counting those it has no room for.
    fn gather(&mut self) {
        let dropped = self.inbox.gather();
        self.dropped.inc_by(dropped as u64);
        self.gathered = Instant::now();
    }

    /// POSTs `batch`, giving up at the export timeout or a stop's deadline.
    async fn export(&mut self, batch: Batch, stop: &mut watch::Receiver<Option<Instant>>) {
        let count = batch.spans as u64;
        let body = self.envelope.wrap(batch.bytes);
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

/// When the stages gathered at `gathered` are due again, `delay` later: in thirty years
/// when that is past what a clock can hold (the delay is any number of milliseconds).
fn due_at(gathered: Instant, delay: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(30 * 365 * 86_400);
    (gathered.checked_add(delay)).unwrap_or_else(|| gathered + FAR)
}

/// One export request; its answer is read (up to [`MAX_ANSWER`]) so the connection can
/// carry the next.
async fn post(
    client: &reqwest::Client,
    url: &reqwest::Url,
    body: bytes::Bytes,
) -> Result<(), String> {
    let mut response = client
        .post(url.clone())
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
    fn any_schedule_delay_has_a_due_time() {
        let now = Instant::now();
        assert_eq!(
            due_at(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
        assert!(due_at(now, Duration::from_millis(u64::MAX)) > now + Duration::from_secs(86_400));
    }

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
