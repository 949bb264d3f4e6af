//! W3C trace context (`traceparent` and `tracestate`): parsed strictly, written in
//! version 00, and continued by each execution as a span of its own.

use std::fmt;

/// The `sampled` bit of the trace flags, the only one version 00 defines.
pub const SAMPLED: u8 = 0x01;
/// Most list members a `tracestate` may carry.
pub const MAX_STATE_MEMBERS: usize = 32;
/// Longest `tracestate` kept: the length every participant must pass on whole.
pub const MAX_STATE_LEN: usize = 512;
/// A member longer than this is the first to go when a `tracestate` is too long.
const LONG_MEMBER: usize = 128;
/// Length of a version 00 `traceparent`.
const TRACEPARENT_LEN: usize = 55;

/// Why a `traceparent` is not usable: the caller then starts a new trace.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TraceError {
    /// The version is not two lowercase hex digits, or is `ff`.
    #[error("the traceparent version must be two lowercase hex digits other than ff")]
    Version,
    /// The fields are not `version-traceid-parentid-flags` with the right lengths.
    #[error("a traceparent is version-traceid-parentid-flags (2, 32, 16 and 2 hex digits)")]
    Shape,
    /// A field holds something else than lowercase hex digits.
    #[error("traceparent fields are lowercase hex digits")]
    Hex,
    /// The trace id or the parent span id is all zeros.
    #[error("an all-zero trace id or parent id is invalid")]
    Zero,
}

/// A position in a trace: the trace, the span that is the parent of whatever runs
/// under it, the trace flags and the vendors' `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace every span of one request shares.
    pub trace_id: [u8; 16],
    /// The span this context was handed by (the `parent-id` field).
    pub parent_span_id: [u8; 8],
    /// Trace flags; only [`SAMPLED`] is passed on.
    pub flags: u8,
    /// The `tracestate` list, validated and bounded, if any.
    pub state: Option<String>,
}

impl TraceContext {
    /// Parses a `traceparent` header and, beside it, a `tracestate` (dropped when
    /// malformed, shortened when too long). A version above 00 is read by its first
    /// four fields, as the specification asks of a version 00 participant.
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Result<TraceContext, TraceError> {
        let text = trim_spaces(traceparent);
        if !text.is_ascii() {
            return Err(TraceError::Shape);
        }
        let bytes = text.as_bytes();
        let version = bytes.get(..2).ok_or(TraceError::Shape)?;
        if !version.iter().all(|b| is_lower_hex(*b)) || version == b"ff" {
            return Err(TraceError::Version);
        }
        let fits = match version {
            b"00" => bytes.len() == TRACEPARENT_LEN,
            // A later version may add fields after a dash.
            _ => {
                bytes.len() == TRACEPARENT_LEN
                    || (bytes.len() > TRACEPARENT_LEN && bytes[TRACEPARENT_LEN] == b'-')
            }
        };
        if !fits || [2, 35, 52].iter().any(|&at| bytes[at] != b'-') {
            return Err(TraceError::Shape);
        }
        let trace_id: [u8; 16] = decode_hex(&text[3..35])?;
        let parent_span_id: [u8; 8] = decode_hex(&text[36..52])?;
        let [flags] = decode_hex::<1>(&text[53..55])?;
        if trace_id == [0; 16] || parent_span_id == [0; 8] {
            return Err(TraceError::Zero);
        }
        Ok(TraceContext {
            trace_id,
            parent_span_id,
            flags,
            state: tracestate.and_then(bounded_state),
        })
    }

    /// A new trace, sampled, with a random id (or `trace_id` when it is not all zeros)
    /// and a random span id.
    pub fn root(trace_id: Option<[u8; 16]>) -> TraceContext {
        let trace_id = trace_id
            .filter(|id| *id != [0; 16])
            .unwrap_or_else(|| nonzero(rand::random));
        TraceContext {
            trace_id,
            parent_span_id: nonzero(rand::random),
            flags: SAMPLED,
            state: None,
        }
    }

    /// The context of a span running under this one: the same trace and state, a new
    /// random span id, the flags this version knows.
    pub fn child(&self) -> TraceContext {
        TraceContext {
            trace_id: self.trace_id,
            parent_span_id: nonzero(rand::random),
            flags: self.flags & SAMPLED,
            state: self.state.clone(),
        }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }

    /// The `traceparent` header value, version 00.
    pub fn traceparent(&self) -> String {
        self.encode(&mut [0; TRACEPARENT_LEN]).to_owned()
    }

    /// The version 00 `traceparent`, written into `out` without allocating (every call
    /// formats one for its function and its record).
    fn encode<'a>(&self, out: &'a mut [u8; TRACEPARENT_LEN]) -> &'a str {
        out[..3].copy_from_slice(b"00-");
        // The slices have exactly twice the ids' lengths, so encoding cannot fail.
        let _ = hex::encode_to_slice(self.trace_id, &mut out[3..35]);
        out[35] = b'-';
        let _ = hex::encode_to_slice(self.parent_span_id, &mut out[36..52]);
        out[52] = b'-';
        let _ = hex::encode_to_slice([self.flags], &mut out[53..]);
        // Only ASCII was written.
        std::str::from_utf8(out).unwrap_or_default()
    }

    /// The context an execution runs under: a span below `incoming` when the caller
    /// sent one, else the first span of a new trace. That new trace takes `correlation`
    /// (a caller's `X-Trace-Id`) as its id when it is itself a W3C trace id. Its
    /// `sampled` flag is the head sampler's decision (see [`crate::telemetry::sampler`]).
    pub fn for_execution(
        incoming: Option<&TraceContext>,
        correlation: Option<&str>,
    ) -> TraceContext {
        let mut context = match incoming {
            Some(parent) => parent.child(),
            None => TraceContext::root(correlation.and_then(|id| decode_hex(id).ok())),
        };
        let parent = incoming.map(|parent| parent.flags & SAMPLED != 0);
        if crate::telemetry::sampled(&context.trace_id, parent) {
            context.flags |= SAMPLED;
        } else {
            context.flags &= !SAMPLED;
        }
        context
    }
}

/// A span id derived from `kind` and execution `id`: the same on every node, so a span
/// of an execution (and the `traceparent` its function gets) can be named from its id
/// alone, by its chained children and by the spans exported for it.
pub fn derived_span_id(kind: &[u8], id: uuid::Uuid) -> [u8; 8] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(kind)
        .chain_update(id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    if bytes == [0; 8] {
        bytes[7] = 1;
    }
    bytes
}

/// The id of the span execution `id` runs as.
pub fn execution_span_id(id: uuid::Uuid) -> [u8; 8] {
    derived_span_id(b"execution", id)
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encode(&mut [0; TRACEPARENT_LEN]))
    }
}

/// `text` without the spaces and tabs around it.
fn trim_spaces(text: &str) -> &str {
    let space = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let bytes = text.as_bytes();
    match (bytes.first(), bytes.last()) {
        // The usual case: nothing to trim.
        (Some(first), Some(last)) if !space(first) && !space(last) => text,
        _ => text.trim_matches([' ', '\t']),
    }
}

fn is_lower_hex(byte: u8) -> bool {
    lower_hex_value(byte).is_some()
}

/// Not a lowercase hex digit, in [`HEX_VALUES`].
const NOT_HEX: u8 = 0xff;

/// The value of every byte as a lowercase hex digit, or [`NOT_HEX`]: one load per digit
/// (the span hooks decode a stored context several times per call).
const HEX_VALUES: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut digit = 0;
    while digit < 16 {
        table[b"0123456789abcdef"[digit] as usize] = digit as u8;
        digit += 1;
    }
    table
};

/// The value of one lowercase hex digit.
fn lower_hex_value(byte: u8) -> Option<u8> {
    let value = HEX_VALUES[usize::from(byte)];
    (value != NOT_HEX).then_some(value)
}

/// Exactly `2 * N` lowercase hex digits, checked and decoded in one pass (every span
/// hook decodes its execution's stored context): eight digits at a time when `N` is a
/// multiple of four, as ids are.
fn decode_hex<const N: usize>(text: &str) -> Result<[u8; N], TraceError> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return Err(TraceError::Hex);
    }
    let mut out = [0u8; N];
    if N % 4 == 0 {
        for (bytes, word) in out.chunks_exact_mut(4).zip(digits.chunks_exact(8)) {
            let word = u64::from_le_bytes(word.try_into().map_err(|_| TraceError::Hex)?);
            bytes.copy_from_slice(&decode_word(word).ok_or(TraceError::Hex)?);
        }
        return Ok(out);
    }
    // Any digit that is not one sets a bit of NOT_HEX; it is checked once at the end.
    let mut bad = 0u8;
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let (high, low) = (
            HEX_VALUES[usize::from(pair[0])],
            HEX_VALUES[usize::from(pair[1])],
        );
        bad |= (high | low) & 0xf0;
        *byte = high << 4 | (low & 0x0f);
    }
    if bad != 0 {
        return Err(TraceError::Hex);
    }
    Ok(out)
}

/// The four bytes that eight lowercase hex digits (read as a little-endian word, the
/// first digit lowest) stand for, or `None` when any of them is not one. Each byte of
/// the word is handled in its own lane of the integer operations.
fn decode_word(word: u64) -> Option<[u8; 4]> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    if word & HIGH != 0 {
        return None;
    }
    // For bytes under 0x80, adding 0x80 - `low` sets a byte's high bit exactly when it
    // is at least `low`, and never carries into the next byte.
    let at_least = |low: u8| word + ONES * u64::from(0x80 - low);
    let digits = at_least(b'0') & !at_least(b'9' + 1);
    let letters = at_least(b'a') & !at_least(b'f' + 1);
    if (digits | letters) & HIGH != HIGH {
        return None;
    }
    // A digit's value is its low four bits; a letter's, those plus nine.
    let values = (word & (ONES * 0x0f)) + ((letters & HIGH) >> 7) * 9;
    // Each even digit is the high half of a byte, the odd one after it the low half.
    const EVEN: u64 = 0x00ff_00ff_00ff_00ff;
    let pairs = ((values & EVEN) << 4) | ((values >> 8) & EVEN);
    let pairs = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    let pairs = (pairs | (pairs >> 16)) & 0xffff_ffff;
    Some((pairs as u32).to_le_bytes())
}

/// A random id that is not all zeros (which would be invalid on the wire).
fn nonzero<const N: usize>(random: fn() -> [u8; N]) -> [u8; N] {
    loop {
        let id = random();
        if id != [0; N] {
            return id;
        }
    }
}

/// The `tracestate` to keep: `None` when it is malformed, has more than
/// [`MAX_STATE_MEMBERS`] members, repeats a key or is empty; past [`MAX_STATE_LEN`]
/// characters, members longer than 128 are dropped first, then members from the end,
/// as the specification orders.
pub fn bounded_state(text: &str) -> Option<String> {
    let mut members = Vec::new();
    for member in text.split(',') {
        let member = member.trim_matches([' ', '\t']);
        if member.is_empty() {
            continue;
        }
        let (key, value) = member.split_once('=')?;
        if !valid_key(key) || !valid_value(value) {
            return None;
        }
        if members
            .iter()
            .any(|kept: &&str| kept.split('=').next() == Some(key))
        {
            return None;
        }
        members.push(member);
    }
    if members.is_empty() || members.len() > MAX_STATE_MEMBERS {
        return None;
    }
    let joined_len = |members: &[&str]| {
        members.iter().map(|m| m.len()).sum::<usize>() + members.len().saturating_sub(1)
    };
    if joined_len(&members) > MAX_STATE_LEN {
        members.retain(|member| member.len() <= LONG_MEMBER);
    }
    while joined_len(&members) > MAX_STATE_LEN {
        members.pop();
    }
    (!members.is_empty()).then(|| members.join(","))
}

/// `simple-key` or `tenant-id@system-id`.
fn valid_key(key: &str) -> bool {
    let part = |text: &str, first_digit: bool, max: usize| {
        let bytes = text.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || (first_digit && b.is_ascii_digit()));
        first_ok
            && bytes.len() <= max
            && bytes.iter().all(|b| {
                b.is_ascii_lowercase()
                    || b.is_ascii_digit()
                    || matches!(b, b'_' | b'-' | b'*' | b'/')
            })
    };
    match key.split_once('@') {
        None => part(key, false, 256),
        Some((tenant, system)) => part(tenant, true, 241) && part(system, false, 14),
    }
}

/// 1 to 256 printable ASCII characters but `,` and `=`, not ending in a space.
fn valid_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && !value.ends_with(' ')
        && value
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
}

#[cfg(test)]
#[path = "trace_tests.rs"]
mod tests;
