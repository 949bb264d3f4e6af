//! The export side: a bounded inbox of span records that the hooks push to without ever
//! waiting, and one thread of its own that empties it, encodes each batch as one
//! OTLP/HTTP protobuf request and POSTs it, counting every span that never reaches the
//! receiver.
//!
//! The inbox is a vector behind a mutex that the exporter swaps for an empty one: a
//! span costs one short lock and one copy into memory the last batches used, and the
//! memory held follows what waits. (A bounded channel would reserve a whole queue's
//! slots up front, cycle through all of them, and share its counters with the
//! exporter on every span.) Only whole batches are sent until the schedule delay
//! passes, so a busy server sends as few requests as the batch size allows.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::record::{Encoder, SpanRecord};
use super::{TelemetryError, TracingSettings};

/// Most bytes of a receiver's answer read (and thrown away) so its connection is kept.
const MAX_ANSWER: usize = 64 * 1024;

/// Spans waiting for the exporter.
struct Inbox {
    spans: Vec<SpanRecord>,
    /// Spans the exporter took and has not begun to send yet: they count against the
    /// bound too, so a slow receiver cannot make the spans held grow past it.
    backlog: usize,
    /// False once the exporter has stopped: nothing queued then would ever leave.
    open: bool,
}

impl Inbox {
    /// Adds `span` unless the exporter has stopped or `max_queue` spans wait already
    /// (here and in the exporter's backlog); how many are here then.
    fn offer(&mut self, span: SpanRecord, max_queue: usize) -> Option<usize> {
        if !self.open || self.spans.len() + self.backlog >= max_queue {
            return None;
        }
        self.spans.push(span);
        Some(self.spans.len())
    }

    /// Swaps the waiting spans for `empty` (the exporter's vector, emptied), and makes
    /// them the exporter's backlog.
    fn take(&mut self, empty: &mut Vec<SpanRecord>) {
        debug_assert!(empty.is_empty());
        std::mem::swap(&mut self.spans, empty);
        self.backlog = empty.len();
    }

    /// The exporter gives `spans` of its backlog back, to go with later ones.
    fn put_back(&mut self, spans: impl ExactSizeIterator<Item = SpanRecord>) {
        self.backlog = self.backlog.saturating_sub(spans.len());
        self.spans.extend(spans);
    }

    /// The exporter begins to send `count` spans of its backlog.
    fn sending(&mut self, count: usize) {
        self.backlog = self.backlog.saturating_sub(count);
    }

    /// The exporter has stopped: no span is taken from now on. How many were left here,
    /// never to be sent.
    fn close(&mut self) -> usize {
        self.open = false;
        self.backlog = 0;
        std::mem::take(&mut self.spans).len()
    }
}

/// The inbox, shared by the hooks and the exporter.
#[derive(Clone)]
struct SharedInbox(Arc<Mutex<Inbox>>);

impl SharedInbox {
    fn new(capacity: usize) -> SharedInbox {
        SharedInbox(Arc::new(Mutex::new(Inbox {
            spans: Vec::with_capacity(capacity),
            backlog: 0,
            open: true,
        })))
    }

    /// The inbox, locked. A hook that panicked while holding it cannot have left it
    /// half-changed (a push either happened or not), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where spans go: the inbox, and what wakes and stops the thread that exports it.
pub(super) struct Pipeline {
    inbox: SharedInbox,
    /// Most spans the inbox holds.
    max_queue: usize,
    /// The exporter is woken when the inbox holds this many.
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
        let inbox = SharedInbox::new(settings.batch);
        let (stop, stopping) = watch::channel(None);
        let (done, finished) = watch::channel(false);
        let wake = Arc::new(Notify::new());
        let exporter = Exporter {
            inbox: inbox.clone(),
            wake: wake.clone(),
            taken: Vec::with_capacity(settings.batch),
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
            inbox,
            max_queue: settings.max_queue,
            batch: settings.batch,
            wake,
            dropped,
            stop,
            finished,
        })
    }

    /// Queues `span` for export, or drops and counts it when the inbox is full (or the
    /// exporter has stopped). Never waits for an export: the exporter holds the lock
    /// only to swap vectors, give back a part batch and keep its count.
    pub(super) fn submit(&self, span: SpanRecord) {
        let waiting = self.inbox.lock().offer(span, self.max_queue);
        match waiting {
            // Wakes the exporter once per full batch, not per span.
            Some(waiting) if waiting == self.batch => self.wake.notify_one(),
            Some(_) => {}
            None => {
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

/// The exporter's thread: empties the inbox and POSTs what it took, a batch a request.
struct Exporter {
    inbox: SharedInbox,
    wake: Arc<Notify>,
    /// What it took from the inbox last (the vector it swaps in next, once empty).
    taken: Vec<SpanRecord>,
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
    /// Exports whenever a batch is waiting or the schedule delay has passed, until a
    /// stop, which exports what is left within its time limit. Once it returns, the
    /// inbox takes no more spans and what it still held is counted as dropped.
    async fn run(mut self, mut stop: watch::Receiver<Option<Instant>>) {
        loop {
            let mut waited = false;
            if stop.borrow_and_update().is_none() {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(self.delay) => waited = true,
                    changed = stop.changed() => {
                        // The pipeline is gone: nothing can be queued any more.
                        if changed.is_err() {
                            break;
                        }
                    }
                }
            }
            // Whole batches go at once; the rest waits to fill one, unless the schedule
            // delay has passed or a stop wants everything.
            let due = waited || stop.borrow().is_some();
            let at_least = if due { 1 } else { self.batch_size };
            while self.take(at_least) > 0 {
                self.export_taken(&mut stop, due).await;
            }
            // A stop that came during whole batches gets the part batch on the next turn.
            if due && stop.borrow().is_some() {
                break;
            }
        }
        let left = self.inbox.lock().close();
        self.dropped.inc_by(left as u64);
    }

    /// Takes what waits in the inbox if it holds `at_least` spans; how many it took.
    fn take(&mut self, at_least: usize) -> usize {
        let mut inbox = self.inbox.lock();
        if inbox.spans.len() < at_least.max(1) {
            return 0;
        }
        inbox.take(&mut self.taken);
        self.taken.len()
    }

    /// Exports what was taken, a batch a request, and empties it; a part batch at its
    /// end goes back to the inbox unless it is `due`. What is left at a stop's deadline
    /// is dropped.
    async fn export_taken(&mut self, stop: &mut watch::Receiver<Option<Instant>>, due: bool) {
        let mut taken = std::mem::take(&mut self.taken);
        if !due {
            let whole = taken.len() - taken.len() % self.batch_size;
            self.inbox.lock().put_back(taken.drain(whole..));
        }
        for batch in taken.chunks(self.batch_size) {
            self.inbox.lock().sending(batch.len());
            let deadline = *stop.borrow();
            match deadline {
                Some(deadline) if Instant::now() >= deadline => {
                    self.dropped.inc_by(batch.len() as u64);
                }
                _ => self.export(batch, stop).await,
            }
        }
        self.taken = taken;
        self.taken.clear();
        // A backlog grew it: give the memory back rather than keep it for good.
        if self.taken.capacity() > 4 * self.batch_size {
            self.taken.shrink_to(self.batch_size);
        }
    }

    /// POSTs `batch`, giving up at the export timeout or a stop's deadline.
    async fn export(&mut self, batch: &[SpanRecord], stop: &mut watch::Receiver<Option<Instant>>) {
        let count = batch.len() as u64;
        let body = self.encoder.encode(batch);
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
    use super::super::record::{Kind, Text};
    use super::*;

    fn span() -> SpanRecord {
        SpanRecord {
            trace: [1; 16],
            id: [2; 8],
            parent: None,
            remote_parent: false,
            name: "gantry.run",
            kind: Kind::Internal,
            start: 1,
            end: 2,
            function: Text::new("f"),
            version: 1,
            execution: uuid::Uuid::nil(),
            attempt: 1,
            place: None,
            trigger: None,
            parent_execution: None,
            outcome: None,
        }
    }

    #[test]
    fn the_inbox_bound_counts_the_exporters_backlog_and_a_closed_inbox_takes_nothing() {
        let inbox = SharedInbox::new(1);
        let mut inbox = inbox.lock();
        assert_eq!(inbox.offer(span(), 3), Some(1));
        assert_eq!(inbox.offer(span(), 3), Some(2));
        let mut taken = Vec::new();
        inbox.take(&mut taken);
        assert_eq!((taken.len(), inbox.spans.len()), (2, 0));
        // Two taken and not yet being sent: room for one more.
        assert_eq!(inbox.offer(span(), 3), Some(1));
        assert_eq!(inbox.offer(span(), 3), None);
        inbox.sending(1);
        assert_eq!(inbox.offer(span(), 3), Some(2));
        assert_eq!(inbox.offer(span(), 3), None);
        inbox.sending(1);
        assert_eq!(inbox.offer(span(), 3), Some(3));
        assert_eq!(inbox.offer(span(), 3), None);
        // Taking again swaps the emptied vector in and makes the rest the backlog.
        taken.clear();
        inbox.take(&mut taken);
        assert_eq!((taken.len(), inbox.backlog), (3, 3));
        assert_eq!(inbox.offer(span(), 3), None);
        // A part batch given back still counts, now in the inbox.
        inbox.put_back(taken.drain(2..));
        assert_eq!((inbox.spans.len(), inbox.backlog), (1, 2));
        assert_eq!(inbox.offer(span(), 3), None);
        inbox.sending(2);
        assert_eq!(inbox.spans.len(), 1);
        inbox.spans.clear();
        assert_eq!(inbox.offer(span(), 3), Some(1));
        assert_eq!(inbox.close(), 1);
        assert_eq!(inbox.offer(span(), 3), None);
        assert!(inbox.spans.is_empty());
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
