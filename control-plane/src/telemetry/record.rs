//! One finished span as a hook describes it (ids, a static name, times in nanoseconds,
//! a few typed attributes borrowed from the execution) and its OTLP protobuf encoding.
//! Each hook writes its spans' bytes itself, so the exporter only puts the request's
//! wrappers around a batch of them, without copying it.

use bytes::Bytes;
use uuid::Uuid;

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

/// The protobuf wire types used here.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// Span flags: the W3C sampled bit, and "whether the parent is remote is known".
const SAMPLED: u32 = 0x01;
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;
/// Status codes.
const STATUS_OK: u64 = 1;
const STATUS_ERROR: u64 = 2;

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_len(value: u64) -> usize {
    // 7 bits a byte; at least one byte.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, u64::from(field << 3 | u32::from(wire)));
}

fn bytes_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    key(out, field, LEN);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    key(out, field, VARINT);
    varint(out, value);
}

/// A length-delimited field's size on the wire, for a one-byte key.
fn nested_len(body: usize) -> usize {
    1 + varint_len(body as u64) + body
}

/// An attribute value.
enum Value<'a> {
    /// UTF-8 text.
    Str(&'a [u8]),
    Int(i64),
    Bool(bool),
}

/// A `KeyValue` (repeated field `field`) with an `AnyValue`.
fn attribute(out: &mut Vec<u8>, field: u32, name: &str, value: Value<'_>) {
    let any = match value {
        Value::Str(text) => nested_len(text.len()),
        // Two's complement, as protobuf's int64 is.
        Value::Int(number) => 1 + varint_len(number as u64),
        Value::Bool(_) => 2,
    };
    key(out, field, LEN);
    varint(out, (nested_len(name.len()) + nested_len(any)) as u64);
    bytes_field(out, 1, name.as_bytes());
    key(out, 2, LEN);
    varint(out, any as u64);
    match value {
        Value::Str(text) => bytes_field(out, 1, text),
        Value::Bool(flag) => varint_field(out, 2, u64::from(flag)),
        Value::Int(number) => varint_field(out, 3, number as u64),
    }
}

impl SpanRecord<'_> {
    /// This span as one entry of a `ScopeSpans` message's `spans` field, appended to
    /// `out`: written in place behind room for its length, which is filled in after.
    pub(super) fn write(&self, out: &mut Vec<u8>) {
        key(out, 2, LEN);
        let at = out.len();
        out.extend_from_slice(&[0; SPAN_LEN_ROOM]);
        self.encode(out);
        put_span_len(out, at);
    }

    /// The body of this span's `Span` message, appended to `out`.
    fn encode(&self, out: &mut Vec<u8>) {
        bytes_field(out, 1, &self.trace);
        bytes_field(out, 2, &self.id);
        if let Some(parent) = &self.parent {
            bytes_field(out, 4, parent);
        }
        bytes_field(out, 5, self.name.as_bytes());
        varint_field(out, 6, self.kind as u64);
        key(out, 7, FIXED64);
        out.extend_from_slice(&self.start.to_le_bytes());
        key(out, 8, FIXED64);
        out.extend_from_slice(&self.end.max(self.start).to_le_bytes());
        const ATTRIBUTES: u32 = 9;
        let mut id = [0u8; uuid::fmt::Hyphenated::LENGTH];
        attribute(
            out,
            ATTRIBUTES,
            "gantry.function",
            Value::Str(self.function.as_bytes()),
        );
        let version = Value::Int(i64::from(self.version));
        attribute(out, ATTRIBUTES, "gantry.function.version", version);
        let execution = self.execution.hyphenated().encode_lower(&mut id);
        attribute(
            out,
            ATTRIBUTES,
            "gantry.execution.id",
            Value::Str(execution.as_bytes()),
        );
        let attempt = Value::Int(i64::from(self.attempt));
        attribute(out, ATTRIBUTES, "gantry.execution.attempt", attempt);
        if let Some(trigger) = self.trigger {
            let trigger = Value::Str(trigger.as_bytes());
            attribute(out, ATTRIBUTES, "gantry.execution.trigger", trigger);
        }
        if let Some(parent) = self.parent_execution {
            let parent = parent.hyphenated().encode_lower(&mut id);
            attribute(
                out,
                ATTRIBUTES,
                "gantry.parent.id",
                Value::Str(parent.as_bytes()),
            );
        }
        match &self.place {
            Some(Place::Node(node)) => {
                attribute(out, ATTRIBUTES, "gantry.node", Value::Str(node.as_bytes()));
            }
            Some(Place::Instance { id, cold }) => {
                let instance = Value::Str(id.as_bytes());
                attribute(out, ATTRIBUTES, "gantry.instance.id", instance);
                attribute(out, ATTRIBUTES, "gantry.cold_start", Value::Bool(*cold));
            }
            None => {}
        }
        let mut error = None;
        if let Some(outcome) = &self.outcome {
            let status = Value::Str(outcome.status.as_bytes());
            attribute(out, ATTRIBUTES, "gantry.execution.status", status);
            if let Some(code) = outcome.code {
                let code = Value::Str(code.as_str().as_bytes());
                attribute(out, ATTRIBUTES, "gantry.error.code", code);
            }
            if outcome.failed {
                error = Some(outcome.code.map_or(outcome.status, ErrorCode::as_str));
            }
        }
        // Status: an error with its code as the message, else OK.
        key(out, 15, LEN);
        match error {
            Some(message) => {
                varint(out, (nested_len(message.len()) + 2) as u64);
                bytes_field(out, 2, message.as_bytes());
                varint_field(out, 3, STATUS_ERROR);
            }
            None => {
                varint(out, 2);
                varint_field(out, 3, STATUS_OK);
            }
        }
        let mut flags = SAMPLED | HAS_IS_REMOTE;
        if self.remote_parent {
            flags |= IS_REMOTE;
        }
        key(out, 16, FIXED32);
        out.extend_from_slice(&flags.to_le_bytes());
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

/// Longest varint: room kept for each of the two lengths ahead of the spans.
const MAX_VARINT: usize = 10;

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
        let mut prefix = Vec::with_capacity(MAX_VARINT);
        varint(&mut prefix, len as u64);
        out.splice(at..at + SPAN_LEN_ROOM, prefix);
    }
}

impl Envelope {
    /// The wrappers for spans of service `service`.
    pub(super) fn new(service: &str) -> Envelope {
        let mut attributes = Vec::new();
        let service = Value::Str(service.as_bytes());
        attribute(&mut attributes, 1, "service.name", service);
        let mut resource = Vec::new();
        bytes_field(&mut resource, 1, &attributes);
        let mut body = Vec::new();
        bytes_field(&mut body, 1, b"gantry");
        bytes_field(&mut body, 2, env!("CARGO_PKG_VERSION").as_bytes());
        let mut scope = Vec::new();
        bytes_field(&mut scope, 1, &body);
        Envelope { resource, scope }
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
        let mut head = Vec::with_capacity(head_room);
        key(&mut head, 1, LEN);
        varint(&mut head, resource_spans as u64);
        head.extend_from_slice(&self.resource);
        key(&mut head, 2, LEN);
        varint(&mut head, scope_spans as u64);
        head.extend_from_slice(&self.scope);
        let start = head_room - head.len();
        batch[start..head_room].copy_from_slice(&head);
        Bytes::from(batch).slice(start..)
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
