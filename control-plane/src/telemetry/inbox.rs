//! Spans on their way to the exporter. A hook writes its spans' protobuf bytes into the
//! stage of its thread (there are as many stages as CPUs, each on cache lines of its
//! own), so the server's worker threads do not write the same memory; a stage that
//! holds enough spans moves them, whole, under one short lock, onto the end of the
//! batch being filled in the bounded inbox. A full batch is set aside for the exporter
//! and the next one starts; the exporter gathers what the stages still hold whenever a
//! part batch is due. The memory held follows what waits (a bounded channel of span
//! records would reserve a whole queue of them up front and cycle through all of them).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::record::SpanRecord;

/// Largest allocation made ahead for a batch: one batch of unusually long spans must not
/// make every later one that large.
const MAX_SIZE_HINT: usize = 4 << 20;

/// A stage's buffer kept for its next spans at most; one that grew past it (a record
/// with many chained children) gives its memory back.
const MAX_STAGE_BYTES: usize = 64 * 1024;

/// Most spans a stage gathers before they go into the inbox.
const MAX_STAGE_SPANS: usize = 32;

/// Most stages: threads beyond them share them.
const MAX_STAGES: usize = 64;

/// The spans a stage gathers, before they go into the inbox together.
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

    /// Spans written.
    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Drops the bytes of a span whose writing was cut short (by a panic while the stage
    /// was locked): the next span would otherwise start with them.
    fn drop_partial(&mut self) {
        self.bytes.truncate(self.ends.last().copied().unwrap_or(0));
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
        if self.bytes.capacity() > MAX_STAGE_BYTES {
            *self = Spans::default();
        }
    }
}

/// The stage each new thread takes next (modulo the stages there are).
static NEXT_STAGE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's stage, before the modulo: threads take them in turn as they record
    /// their first span, so the server's worker threads, which record nearly all of
    /// them, each have one of their own.
    static THREAD_STAGE: usize = NEXT_STAGE.fetch_add(1, Ordering::Relaxed);
}

/// This thread's stage among `stages`. Threads beyond the stages share them, and with
/// them the lock: correct, only slower.
fn stage_index(stages: usize) -> usize {
    THREAD_STAGE.try_with(|stage| *stage).unwrap_or(0) % stages
}

/// One stage, alone on its cache lines: the point of stages is that no other thread
/// writes next to it.
#[repr(align(128))]
#[derive(Default)]
struct Stage(Mutex<Spans>);

impl Stage {
    /// The stage's spans, locked. A hook that panicked while writing may have left part
    /// of a span behind: it is dropped, the spans before it are kept.
    fn lock(&self) -> MutexGuard<'_, Spans> {
        self.0.lock().unwrap_or_else(|poisoned| {
            self.0.clear_poison();
            let mut spans = poisoned.into_inner();
            spans.drop_partial();
            spans
        })
    }
}

/// How many spans a stage gathers for a queue of `max_queue` spans in batches of
/// `batch`: at most a sixteenth of a batch, so stages never hold back whole batches, and
/// at most a sixty-fourth of the queue, so that even [`MAX_STAGES`] of them add little to
/// what waits; one (each hook's spans go straight into the inbox) for small queues and
/// batches.
pub(super) fn stage_spans(max_queue: usize, batch: usize) -> usize {
    (batch / 16).min(max_queue / 64).clamp(1, MAX_STAGE_SPANS)
}

/// The stages for this machine: one per CPU (at least one, at most [`MAX_STAGES`]).
pub(super) fn stage_count() -> usize {
    std::thread::available_parallelism().map_or(1, |cpus| cpus.get().min(MAX_STAGES))
}

/// Spans written and taken by the exporter, a batch at a time.
pub(super) struct Batch {
    /// Room for the request's wrappers, then the spans.
    pub(super) bytes: Vec<u8>,
    pub(super) spans: usize,
}

/// What an offer did.
#[derive(Debug, Default, PartialEq, Eq)]
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

/// The inbox and its stages, shared by the hooks and the exporter.
#[derive(Clone)]
pub(super) struct SharedInbox(Arc<Shared>);

struct Shared {
    inbox: Mutex<Inbox>,
    stages: Box<[Stage]>,
    /// Spans a stage gathers before they go into the inbox.
    stage_spans: usize,
}

impl SharedInbox {
    /// `inbox`, fed through `stages` stages of `stage_spans` spans each.
    pub(super) fn new(inbox: Inbox, stages: usize, stage_spans: usize) -> SharedInbox {
        let stages = (0..stages.max(1)).map(|_| Stage::default()).collect();
        SharedInbox(Arc::new(Shared {
            inbox: Mutex::new(inbox),
            stages,
            stage_spans: stage_spans.max(1),
        }))
    }

    /// The inbox, locked. A hook that panicked while holding it cannot have left it
    /// half-changed (spans are copied in whole, written before the lock is taken), so a
    /// poisoned lock is used as is. Taken after a stage's lock, never before.
    pub(super) fn lock(&self) -> MutexGuard<'_, Inbox> {
        self.0.inbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Offers the spans `write` writes into this thread's stage; once the stage holds
    /// enough spans, they go into the inbox together.
    pub(super) fn offer_written(&self, write: impl FnOnce(&mut Spans)) -> Offered {
        let stages = &self.0.stages;
        let mut spans = stages[stage_index(stages.len())].lock();
        write(&mut spans);
        if spans.len() < self.0.stage_spans {
            return Offered::default();
        }
        let offered = self.lock().offer(&spans);
        spans.clear();
        offered
    }

    /// Moves what every stage holds into the inbox; the spans it had no room for.
    pub(super) fn gather(&self) -> usize {
        let mut dropped = 0;
        for stage in &self.0.stages {
            let mut spans = stage.lock();
            if spans.len() > 0 {
                dropped += self.lock().offer(&spans).dropped;
                spans.clear();
            }
        }
        dropped
    }

    /// The exporter has stopped: no span is taken from now on. How many were left in
    /// the stages and the inbox, never to be sent.
    pub(super) fn close(&self) -> usize {
        // The inbox first: what the stages hold, gathered into it then, is dropped and
        // counted, as is what a stage offers later.
        let left = self.lock().close();
        left + self.gather()
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
        while spans.bytes.len() <= MAX_STAGE_BYTES {
            spans.push(&span("gantry.record"));
        }
        spans.clear();
        assert_eq!(spans.bytes.capacity(), 0);
    }

    /// A shared inbox of `max_queue` spans in batches of `batch`, with `stages` stages of
    /// `stage_spans`.
    fn shared(max_queue: usize, batch: usize, stages: usize, stage_spans: usize) -> SharedInbox {
        SharedInbox::new(Inbox::new(max_queue, batch, 0), stages, stage_spans)
    }

    fn offer(inbox: &SharedInbox, count: usize) -> Offered {
        inbox.offer_written(|spans| {
            for _ in 0..count {
                spans.push(&span("gantry.run"));
            }
        })
    }

    #[test]
    fn a_stage_gathers_its_spans_before_they_join_the_inbox() {
        let inbox = shared(100, 4, 1, 3);
        assert_eq!(offer(&inbox, 2), offered(0, false));
        assert_eq!(inbox.lock().waiting, 0, "still in the stage");
        // The third span fills the stage: all three go in, and with a fourth the batch.
        assert_eq!(offer(&inbox, 2), offered(0, true));
        assert_eq!(inbox.lock().waiting, 4);
        assert_eq!(inbox.lock().next(false).map(|batch| batch.spans), Some(4));
        // What a stage holds when a part batch is due is gathered, then taken.
        assert_eq!(offer(&inbox, 1), offered(0, false));
        assert!(inbox.lock().next(true).is_none(), "not in the inbox yet");
        assert_eq!(inbox.gather(), 0);
        assert_eq!(inbox.lock().next(true).map(|batch| batch.spans), Some(1));
        assert_eq!(inbox.gather(), 0, "nothing left to gather");
    }

    #[test]
    fn staged_spans_count_against_the_bound_when_they_join_the_inbox() {
        let inbox = shared(3, 10, 2, 2);
        assert_eq!(offer(&inbox, 5), offered(2, false), "three fit");
        assert_eq!(offer(&inbox, 1), offered(0, false), "staged");
        assert_eq!(inbox.gather(), 1, "the queue is full");
        // A stop drops what the inbox and the stages still hold, and later spans too.
        assert_eq!(offer(&inbox, 1), offered(0, false));
        assert_eq!(inbox.close(), 4);
        assert_eq!(offer(&inbox, 2), offered(2, false));
    }

    #[test]
    fn a_hook_that_panicked_midway_costs_only_its_part_span() {
        let inbox = shared(100, 100, 1, 100);
        offer(&inbox, 1);
        let one = {
            let mut spans = Spans::default();
            spans.push(&span("gantry.run"));
            spans.bytes
        };
        let panicked = std::panic::catch_unwind(|| {
            inbox.offer_written(|spans| {
                spans.bytes.extend_from_slice(b"half a span");
                panic!("cut short");
            })
        });
        assert!(panicked.is_err());
        offer(&inbox, 1);
        inbox.gather();
        let batch = inbox.lock().next(true).expect("both whole spans");
        assert_eq!(batch.spans, 2);
        assert_eq!(batch.bytes, [one.clone(), one].concat());
    }

    #[test]
    fn stages_stay_small_beside_the_batch_and_the_queue() {
        assert_eq!(stage_spans(2048, 512), MAX_STAGE_SPANS);
        assert_eq!(stage_spans(65_536, 65_536), MAX_STAGE_SPANS);
        assert_eq!(stage_spans(2048, 5), 1, "a small batch is never held back");
        assert_eq!(stage_spans(4, 512), 1, "a small queue is never exceeded");
        assert_eq!(stage_spans(640, 512), 10);
        let stages = stage_count();
        assert!((1..=MAX_STAGES).contains(&stages));
        // Every stage full adds at most a sixty-fourth of the queue each.
        for max_queue in [1, 64, 100, 2048, 65_536] {
            let staged = MAX_STAGES * stage_spans(max_queue, max_queue);
            assert!(staged <= max_queue.max(MAX_STAGES), "{max_queue}");
        }
    }
}
