//! The export side: a bounded inbox of encoded spans that the hooks add to without ever
//! waiting, and one thread of its own that takes it a batch at a time, wraps each batch
//! as one OTLP/HTTP protobuf request and POSTs it, counting every span that never
//! reaches the receiver.
//!
//! A hook writes its spans' protobuf bytes into a buffer of its thread's own, then, under
//! one short lock, copies them onto the end of the batch being filled. A full batch is
//! set aside for the exporter and the next one starts, so the exporter never copies or
//! re-encodes a span: it takes a batch that is already its request body. The memory held
//! follows what waits (a bounded channel of span records would reserve a whole queue of
//! them up front and cycle through all of them). Only whole batches are sent until the
//! schedule delay passes, so a busy server sends as few requests as the batch size
//! allows.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::record::{Envelope, SpanRecord};
use super::{TelemetryError, TracingSettings};

/// Most bytes of a receiver's answer read (and thrown away) so its connection is kept.
const MAX_ANSWER: usize = 64 * 1024;

/// Largest allocation made ahead for a batch: one batch of unusually long spans must not
/// make every later one that large.
const MAX_SIZE_HINT: usize = 4 << 20;

/// A hook's buffer kept for its thread's next hook at most; one that grew past it (a
/// record with many chained children) gives its memory back.
const MAX_SCRATCH: usize = 64 * 1024;

/// The spans one hook writes, before they go into the inbox together.
#[derive(Default)]
pub(super) struct Spans {
    bytes: Vec<u8>,
    /// Where each span ends in `bytes`.
    ends: Vec<usize>,
}

impl Spans {
    /// Writes `span`.
    pub(super) fn push(&mut self, span: &SpanRecord<'_>) {
        span.write(&mut self.bytes);
        self.ends.push(self.bytes.len());
    }

    /// Each span's bytes, in order.
    fn each(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.bytes[start..end])
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
        if self.bytes.capacity() > MAX_SCRATCH {
            *self = Spans::default();
        }
    }
}

thread_local! {
    /// The buffer each thread's hooks write their spans into, kept for the next hook.
    static SCRATCH: RefCell<Spans> = RefCell::new(Spans::default());
}

/// Spans written and taken by the exporter, a batch at a time.
pub(super) struct Batch {
    /// Room for the request's wrappers, then the spans.
    bytes: Vec<u8>,
    spans: usize,
}

/// What an offer did.
#[derive(Debug, PartialEq, Eq)]
struct Offered {
    /// Spans not taken: the inbox was full or closed.
    dropped: usize,
    /// Whether a batch filled up, for the exporter to take.
    filled: bool,
}

/// Encoded spans waiting for the exporter: the batch being filled and the full ones.
struct Inbox {
    filling: Batch,
    /// Full batches, oldest first.
    full: VecDeque<Batch>,
    /// Spans in `filling` and `full`.
    waiting: usize,
    /// Most spans waiting.
    max_queue: usize,
    /// Spans a batch holds.
    batch: usize,
    /// Bytes kept ahead of a batch's spans for the request's wrappers.
    head_room: usize,
    /// False once the exporter has stopped: nothing queued then would ever leave.
    open: bool,
}

impl Inbox {
    fn new(max_queue: usize, batch: usize, head_room: usize) -> Inbox {
        Inbox {
            filling: Batch {
                bytes: vec![0; head_room],
                spans: 0,
            },
            full: VecDeque::new(),
            waiting: 0,
            max_queue,
            batch: batch.max(1),
            head_room,
            open: true,
        }
    }

    /// Adds the spans one hook wrote, each unless the exporter has stopped or
    /// `max_queue` spans wait already.
    fn offer(&mut self, spans: &Spans) -> Offered {
        let mut offered = Offered {
            dropped: 0,
            filled: false,
        };
        for span in spans.each() {
            if !self.open || self.waiting >= self.max_queue {
                offered.dropped += 1;
                continue;
            }
            self.filling.bytes.extend_from_slice(span);
            self.filling.spans += 1;
            self.waiting += 1;
            if self.filling.spans >= self.batch {
                self.seal();
                offered.filled = true;
            }
        }
        offered
    }

    /// Sets the batch being filled aside and starts the next, sized like it.
    fn seal(&mut self) {
        let size = self.filling.bytes.len().min(MAX_SIZE_HINT);
        let mut bytes = Vec::with_capacity(size);
        bytes.resize(self.head_room, 0);
        let next = Batch { bytes, spans: 0 };
        self.full
            .push_back(std::mem::replace(&mut self.filling, next));
    }

    /// The next batch to send: the oldest full one, else, when `due`, the one being
    /// filled if it holds any span.
    fn next(&mut self, due: bool) -> Option<Batch> {
        if self.full.is_empty() && due && self.filling.spans > 0 {
            self.seal();
        }
        let batch = self.full.pop_front()?;
        self.waiting -= batch.spans;
        Some(batch)
    }

    /// The exporter has stopped: no span is taken from now on. How many were left here,
    /// never to be sent.
    fn close(&mut self) -> usize {
        let left = self.waiting;
        *self = Inbox {
            open: false,
            ..Inbox::new(self.max_queue, self.batch, 0)
        };
        left
    }
}

/// The inbox, shared by the hooks and the exporter.
#[derive(Clone)]
struct SharedInbox(Arc<Mutex<Inbox>>);

impl SharedInbox {
    fn new(inbox: Inbox) -> SharedInbox {
        SharedInbox(Arc::new(Mutex::new(inbox)))
    }

    /// The inbox, locked. A hook that panicked while holding it cannot have left it
    /// half-changed (spans are copied in whole, written before the lock is taken), so a
    /// poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

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
        let url = traces_url(&settings.endpoint)?;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(settings.headers.clone())
            .connect_timeout(settings.export_timeout)
            .no_proxy()
            .build()
            .map_err(|err| TelemetryError::Exporter(err.to_string()))?;
        let envelope = Envelope::new(&settings.service_name);
        let inbox = Inbox::new(settings.max_queue, settings.batch, envelope.head_room());
        let inbox = SharedInbox::new(inbox);
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
        // Taken out, not borrowed: nothing can find the buffer in use, whatever runs.
        let mut spans = SCRATCH.try_with(RefCell::take).unwrap_or_default();
        write(&mut spans);
        let offered = self.inbox.lock().offer(&spans);
        if offered.dropped > 0 {
            self.dropped.inc_by(offered.dropped as u64);
        }
        // Wakes the exporter once per full batch, not per span.
        if offered.filled {
            self.wake.notify_one();
        }
        spans.clear();
        let _ = SCRATCH.try_with(|scratch| scratch.replace(spans));
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
    url: String,
    /// For the warnings.
    endpoint: String,
    dropped: Counter,
    /// Whether the last export failed: a warning is logged once per run of failures.
    failing: bool,
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
                    () = tokio::time::sleep(self.delay) => waited = true,
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
                let due = waited || deadline.is_some();
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
        let left = self.inbox.lock().close();
        self.dropped.inc_by(left as u64);
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
    use super::super::record::Kind;
    use super::*;

    fn span(name: &'static str) -> SpanRecord<'static> {
        SpanRecord {
            trace: [1; 16],
            id: [2; 8],
            parent: None,
            remote_parent: false,
            name,
            kind: Kind::Internal,
            start: 1,
            end: 2,
            function: "f",
            version: 1,
            execution: uuid::Uuid::nil(),
            attempt: 1,
            place: None,
            trigger: None,
            parent_execution: None,
            outcome: None,
        }
    }

    /// What one hook writing `count` spans offers.
    fn spans(count: usize) -> Spans {
        let mut spans = Spans::default();
        for _ in 0..count {
            spans.push(&span("gantry.run"));
        }
        spans
    }

    fn offered(dropped: usize, filled: bool) -> Offered {
        Offered { dropped, filled }
    }

    #[test]
    fn spans_fill_batches_of_the_batch_size_and_only_a_due_part_batch_is_taken() {
        let head_room = Envelope::new("s").head_room();
        let mut inbox = Inbox::new(100, 3, head_room);
        assert_eq!(inbox.offer(&spans(2)), offered(0, false));
        assert!(inbox.next(false).is_none(), "a part batch waits");
        // One hook's spans may fill one batch and start the next.
        assert_eq!(inbox.offer(&spans(2)), offered(0, true));
        assert_eq!(inbox.waiting, 4);
        let full = inbox.next(false).expect("a whole batch");
        assert_eq!(full.spans, 3);
        assert_eq!(inbox.waiting, 1);
        assert!(inbox.next(false).is_none());
        let part = inbox.next(true).expect("the part batch, when due");
        assert_eq!(part.spans, 1);
        assert!(inbox.next(true).is_none(), "nothing left");
        assert_eq!(inbox.waiting, 0);
        // Each batch keeps the room for the wrappers, then its spans, whole.
        let one = spans(1).bytes;
        assert_eq!(full.bytes.len(), head_room + 3 * one.len());
        assert_eq!(part.bytes[head_room..], one[..]);
    }

    #[test]
    fn the_bound_counts_every_waiting_span_and_a_closed_inbox_takes_nothing() {
        let mut inbox = Inbox::new(5, 2, 0);
        assert_eq!(inbox.offer(&spans(4)), offered(0, true));
        assert_eq!(inbox.offer(&spans(3)), offered(2, false), "one fits");
        assert_eq!(inbox.offer(&spans(1)), offered(1, false));
        // Taking a batch makes room for its spans.
        assert_eq!(inbox.next(false).map(|batch| batch.spans), Some(2));
        assert_eq!(inbox.offer(&spans(3)), offered(1, true));
        assert_eq!(inbox.waiting, 5);
        assert_eq!(inbox.close(), 5);
        assert_eq!(inbox.offer(&spans(1)), offered(1, false));
        assert!(inbox.next(true).is_none());
    }

    #[test]
    fn a_hooks_buffer_is_cleared_and_gives_back_memory_it_grew_for() {
        let mut spans = spans(3);
        assert_eq!(spans.each().count(), 3);
        spans.clear();
        assert_eq!(spans.each().count(), 0);
        assert!(spans.bytes.capacity() > 0, "kept for the next hook");
        while spans.bytes.len() <= MAX_SCRATCH {
            spans.push(&span("gantry.record"));
        }
        spans.clear();
        assert_eq!(spans.bytes.capacity(), 0);
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
