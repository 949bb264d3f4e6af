//! Spans on their way to the exporter: the buffer each thread's hooks write their spans'
//! protobuf bytes into, and the bounded inbox those bytes are copied into, whole, under
//! one short lock, onto the end of the batch being filled. A full batch is set aside for
//! the exporter and the next one starts. The memory held follows what waits (a bounded
//! channel of span records would reserve a whole queue of them up front and cycle
//! through all of them).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::record::SpanRecord;

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
    pub(super) bytes: Vec<u8>,
    pub(super) spans: usize,
}

/// What an offer did.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Offered {
    /// Spans not taken: the inbox was full or closed.
    pub(super) dropped: usize,
    /// Whether a batch filled up, for the exporter to take.
    pub(super) filled: bool,
}

/// Encoded spans waiting for the exporter: the batch being filled and the full ones.
pub(super) struct Inbox {
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
    /// An empty inbox for at most `max_queue` spans, in batches of `batch`, each with
    /// `head_room` bytes ahead of its spans.
    pub(super) fn new(max_queue: usize, batch: usize, head_room: usize) -> Inbox {
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

    /// Sets the batch being filled aside and starts the next, sized like it with an
    /// eighth to spare: growing a batch under the lock would copy all of it.
    fn seal(&mut self) {
        let len = self.filling.bytes.len();
        let size = (len + len / 8).min(MAX_SIZE_HINT);
        let mut bytes = Vec::with_capacity(size);
        bytes.resize(self.head_room, 0);
        let next = Batch { bytes, spans: 0 };
        self.full
            .push_back(std::mem::replace(&mut self.filling, next));
    }

    /// The next batch to send: the oldest full one, else, when `due`, the one being
    /// filled if it holds any span.
    pub(super) fn next(&mut self, due: bool) -> Option<Batch> {
        if self.full.is_empty() && due && self.filling.spans > 0 {
            self.seal();
        }
        let batch = self.full.pop_front()?;
        self.waiting -= batch.spans;
        Some(batch)
    }

    /// The exporter has stopped: no span is taken from now on. How many were left here,
    /// never to be sent.
    pub(super) fn close(&mut self) -> usize {
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
pub(super) struct SharedInbox(Arc<Mutex<Inbox>>);

impl SharedInbox {
    pub(super) fn new(inbox: Inbox) -> SharedInbox {
        SharedInbox(Arc::new(Mutex::new(inbox)))
    }

    /// The inbox, locked. A hook that panicked while holding it cannot have left it
    /// half-changed (spans are copied in whole, written before the lock is taken), so a
    /// poisoned lock is used as is.
    pub(super) fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Offers the spans `write` writes, into this thread's buffer first, so the lock is
    /// held only while they are copied in.
    pub(super) fn offer_written(&self, write: impl FnOnce(&mut Spans)) -> Offered {
        // Taken out, not borrowed: nothing can find the buffer in use, whatever runs.
        let mut spans = SCRATCH.try_with(RefCell::take).unwrap_or_default();
        write(&mut spans);
        let offered = self.lock().offer(&spans);
        spans.clear();
        let _ = SCRATCH.try_with(|scratch| scratch.replace(spans));
        offered
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{Envelope, Kind};
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
}
