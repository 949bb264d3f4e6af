//! One finished span as a hook describes it (ids, a static name, times in nanoseconds,
//! a few typed attributes borrowed from the execution) and its OTLP protobuf encoding.
//! Each hook writes its spans' bytes itself, so the exporter only puts the request's
//! wrappers around a batch of them, without copying it.

use bytes::Bytes;
use uuid::Uuid;

use super::wire::{
    name, nested_len, written, Cursor, Value, FIXED32, FIXED64, LEN, MAX_ATTRIBUTE, MAX_VARINT,
};
use crate::domain::ErrorCode;

/// The OTLP span kinds Gantry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Work inside the server.
    Internal = 1,
    /// An API request.
    Server = 2,
}

/// Where a span's work happened, beside the execution it belongs to.
#[derive(Debug, Clone, Copy)]
pub(super) enum Place<'a> {
    /// The node that claimed the execution.
    Node(&'a str),
    /// The instance it ran on, and whether that instance was started for it.
    Instance { id: &'a str, cold: bool },
}

/// How the execution (or attempt) a span covers ended.
#[derive(Debug, Clone, Copy)]
pub(super) struct Outcome<'a> {
    /// The execution status's wire name.
    pub status: &'static str,
    /// The failure's code, if any.
    pub code: Option<&'a ErrorCode>,
    /// Whether the span's status is an error.
    pub failed: bool,
}

/// One finished span, borrowing its texts from the execution it belongs to.
#[derive(Debug, Clone, Copy)]
pub(super) struct SpanRecord<'a> {
    pub trace: [u8; 16],
    pub id: [u8; 8],
    /// `None`: a root span.
    pub parent: Option<[u8; 8]>,
    /// Whether the parent is another service's span.
    pub remote_parent: bool,
    pub name: &'static str,
    pub kind: Kind,
    /// Unix time in nanoseconds.
    pub start: u64,
    pub end: u64,
    pub function: &'a str,
    pub version: u32,
    pub execution: Uuid,
    pub attempt: u32,
    pub place: Option<Place<'a>>,
    /// The execution span's trigger.
    pub trigger: Option<&'static str>,
    /// The execution span's parent execution.
    pub parent_execution: Option<Uuid>,
    pub outcome: Option<Outcome<'a>>,
}

/// Span flags: the W3C sampled bit, and "whether the parent is remote is known".
const SAMPLED: u32 = 0x01;
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;
/// Status codes.
const STATUS_OK: u64 = 1;
const STATUS_ERROR: u64 = 2;

/// The `attributes` field of a `Span`.
const ATTRIBUTES: u32 = 9;

/// The most attributes a span carries, for its bound (see [`SpanRecord::attributes`]).
const MOST_ATTRIBUTES: usize = 10;

/// Most bytes of a span beyond its texts: its key and length, its ids, kind, times,
/// status and flags, and its attributes but for their texts (ids written out as text
/// included).
const MAX_SPAN_WRAPPING: usize = 1
    + SPAN_LEN_ROOM
    + 3 * (2 + 16)
    + (1 + MAX_VARINT)
    + 2
    + 2 * 9
    + (2 * (1 + MAX_VARINT) + 2)
    + 5
    + MOST_ATTRIBUTES * MAX_ATTRIBUTE
    + 2 * uuid::fmt::Hyphenated::LENGTH;

impl SpanRecord<'_> {
    /// This span as one entry of a `ScopeSpans` message's `spans` field, appended to
    /// `out`: written in place behind room for its length, which is filled in after.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        let at = out.len() + 1;
        Cursor::append(out, self.max_len(), |cursor| {
            cursor.key(2, LEN);
            cursor.bytes(&[0; SPAN_LEN_ROOM]);
            self.encode(cursor);
        });
        put_span_len(out, at);
    }

    /// The most bytes [`write`](Self::write) may write for this span.
    fn max_len(&self) -> usize {
        let place = match self.place {
            Some(Place::Node(node)) => node.len(),
            Some(Place::Instance { id, .. }) => id.len(),
            None => 0,
        };
        // The status and the error code, each both an attribute and the message.
        let outcome = self.outcome.map_or(0, |outcome| {
            2 * (outcome.status.len() + outcome.code.map_or(0, |code| code.as_str().len()))
        });
        let trigger = self.trigger.map_or(0, str::len);
        MAX_SPAN_WRAPPING + self.name.len() + self.function.len() + place + trigger + outcome
    }

    /// The body of this span's `Span` message.
    fn encode(&self, out: &mut Cursor<'_>) {
        out.bytes_field(1, &self.trace);
        out.bytes_field(2, &self.id);
        if let Some(parent) = &self.parent {
            out.bytes_field(4, parent);
        }
        out.bytes_field(5, self.name.as_bytes());
        out.varint_field(6, self.kind as u64);
        out.key(7, FIXED64);
        out.bytes(&self.start.to_le_bytes());
        out.key(8, FIXED64);
        out.bytes(&self.end.max(self.start).to_le_bytes());
        self.attributes(out);
        let error = self
            .outcome
            .filter(|outcome| outcome.failed)
            .map(|outcome| outcome.code.map_or(outcome.status, ErrorCode::as_str));
        // Status: an error with its code as the message, else OK.
        out.key(15, LEN);
        match error {
            Some(message) => {
                out.varint((nested_len(message.len()) + 2) as u64);
                out.bytes_field(2, message.as_bytes());
                out.varint_field(3, STATUS_ERROR);
            }
            None => {
                out.varint(2);
                out.varint_field(3, STATUS_OK);
            }
        }
        let mut flags = SAMPLED | HAS_IS_REMOTE;
        if self.remote_parent {
            flags |= IS_REMOTE;
        }
        out.key(16, FIXED32);
        out.bytes(&flags.to_le_bytes());
    }

    /// The span's attributes: the execution's, then where and how it ran; at most
    /// [`MOST_ATTRIBUTES`] of them.
    fn attributes(&self, out: &mut Cursor<'_>) {
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        let function = Value::Str(self.function.as_bytes());
        out.attribute(ATTRIBUTES, name!("gantry.function"), function);
        let version = Value::Int(i64::from(self.version));
        out.attribute(ATTRIBUTES, name!("gantry.function.version"), version);
        let execution = self.execution.hyphenated().encode_lower(&mut id);
        let execution = Value::Str(execution.as_bytes());
        out.attribute(ATTRIBUTES, name!("gantry.execution.id"), execution);
        let attempt = Value::Int(i64::from(self.attempt));
        out.attribute(ATTRIBUTES, name!("gantry.execution.attempt"), attempt);
        if let Some(trigger) = self.trigger {
            let trigger = Value::Str(trigger.as_bytes());
            out.attribute(ATTRIBUTES, name!("gantry.execution.trigger"), trigger);
        }
        if let Some(parent) = self.parent_execution {
            let parent = Value::Str(parent.hyphenated().encode_lower(&mut id).as_bytes());
            out.attribute(ATTRIBUTES, name!("gantry.parent.id"), parent);
        }
        match &self.place {
            Some(Place::Node(node)) => {
                let node = Value::Str(node.as_bytes());
                out.attribute(ATTRIBUTES, name!("gantry.node"), node);
            }
            Some(Place::Instance { id, cold }) => {
                let instance = Value::Str(id.as_bytes());
                out.attribute(ATTRIBUTES, name!("gantry.instance.id"), instance);
                out.attribute(ATTRIBUTES, name!("gantry.cold_start"), Value::Bool(*cold));
            }
            None => {}
        }
        if let Some(outcome) = &self.outcome {
            let status = Value::Str(outcome.status.as_bytes());
            out.attribute(ATTRIBUTES, name!("gantry.execution.status"), status);
            if let Some(code) = outcome.code {
                let code = Value::Str(code.as_str().as_bytes());
                out.attribute(ATTRIBUTES, name!("gantry.error.code"), code);
            }
        }
    }
}

/// The wrappers of an `ExportTraceServiceRequest` (one `ResourceSpans` with one
/// `ScopeSpans`) that go around a batch of written spans.
pub(super) struct Envelope {
    /// The `resource` field of the `ResourceSpans` (its `service.name`).
    resource: Vec<u8>,
    /// The `scope` field of the `ScopeSpans` (Gantry and its version).
    scope: Vec<u8>,
}

/// Bytes kept for a span's length: two, the varint of every length from 128 to 16383,
/// which covers every span but one with an unusually long name or id.
const SPAN_LEN_ROOM: usize = 2;

/// Writes the length of the span body that follows the [`SPAN_LEN_ROOM`] bytes at `at`
/// into them; a length that needs another number of bytes moves the body.
fn put_span_len(out: &mut Vec<u8>, at: usize) {
    let len = out.len() - at - SPAN_LEN_ROOM;
    if (128..16_384).contains(&len) {
        // Low seven bits with the continuation bit, then the rest.
        out[at] = (len & 0x7f) as u8 | 0x80;
        out[at + 1] = (len >> 7) as u8;
    } else {
        let prefix = written(MAX_VARINT, |cursor| cursor.varint(len as u64));
        out.splice(at..at + SPAN_LEN_ROOM, prefix);
    }
}

/// The bytes of a length-delimited field `field` (one-byte key) holding `body`.
fn nested(field: u32, body: &[u8]) -> Vec<u8> {
    written(1 + MAX_VARINT + body.len(), |cursor| {
        cursor.bytes_field(field, body);
    })
}

impl Envelope {
    /// The wrappers for spans of service `service`.
    pub(super) fn new(service: &str) -> Envelope {
        let name = name!("service.name");
        let max = MAX_ATTRIBUTE + service.len();
        let service = Value::Str(service.as_bytes());
        let attributes = written(max, |cursor| cursor.attribute(1, name, service));
        let version = env!("CARGO_PKG_VERSION").as_bytes();
        let scope = [nested(1, b"gantry"), nested(2, version)].concat();
        Envelope {
            resource: nested(1, &attributes),
            scope: nested(1, &scope),
        }
    }

    /// The room a batch keeps ahead of its spans for the wrappers, whose lengths are
    /// only known once the spans are written.
    pub(super) fn head_room(&self) -> usize {
        2 * (1 + MAX_VARINT) + self.resource.len() + self.scope.len()
    }

    /// The request that exports the spans written into `batch` behind its
    /// [`head_room`](Envelope::head_room): the wrappers go into the end of that room
    /// and the body starts where they do, so the spans are never copied.
    pub(super) fn wrap(&self, mut batch: Vec<u8>) -> Bytes {
        let head_room = self.head_room();
        debug_assert!(batch.len() >= head_room);
        let spans = batch.len() - head_room;
        let scope_spans = self.scope.len() + spans;
        let resource_spans = self.resource.len() + nested_len(scope_spans);
        let head = written(head_room, |cursor| {
            cursor.key(1, LEN);
            cursor.varint(resource_spans as u64);
            cursor.bytes(&self.resource);
            cursor.key(2, LEN);
            cursor.varint(scope_spans as u64);
            cursor.bytes(&self.scope);
        });
        let start = head_room - head.len();
        batch[start..head_room].copy_from_slice(&head);
        Bytes::from(batch).slice(start..)
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
