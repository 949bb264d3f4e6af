//! The few pieces of the protobuf wire format the span encoding needs, written through a
//! cursor over bytes set aside beforehand: one bounds check a field, where appending to
//! a `Vec` would check its capacity for every byte and reload it after every write.

/// The protobuf wire types used here.
pub(super) const VARINT: u8 = 0;
pub(super) const FIXED64: u8 = 1;
pub(super) const LEN: u8 = 2;
pub(super) const FIXED32: u8 = 5;

/// Longest varint.
pub(super) const MAX_VARINT: usize = 10;

/// Longest attribute name, checked when a name is built.
pub(super) const MAX_NAME: usize = 32;

/// Most bytes an attribute takes beyond its value's text: the `KeyValue`'s key and
/// length, the name with its key and length, the `AnyValue`'s key and length, and the
/// value's key and its length or number.
pub(super) const MAX_ATTRIBUTE: usize =
    1 + MAX_VARINT + 2 + MAX_NAME + 1 + MAX_VARINT + 1 + MAX_VARINT;

/// An attribute's name and text are short when they add up to fewer bytes than this:
/// then the `KeyValue`'s length, like every length inside it, is one byte.
const SHORT: usize = 0x80 - 6;

/// A varint's size on the wire: 7 bits a byte, at least one byte.
pub(super) fn varint_len(value: u64) -> usize {
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// A length-delimited field's size on the wire, for a one-byte key.
pub(super) fn nested_len(body: usize) -> usize {
    1 + varint_len(body as u64) + body
}

/// A field's key when its number is under 16: one byte.
pub(super) const fn key_byte(field: u32, wire: u8) -> u8 {
    assert!(field < 16);
    (field << 3) as u8 | wire
}

/// An attribute's name as written: the `key` field of a `KeyValue`, its key and length
/// first, built at compile time so that a span copies each name whole.
macro_rules! name {
    ($name:literal) => {{
        const NAME: [u8; $name.len() + 2] = $crate::telemetry::wire::name_field($name);
        &NAME
    }};
}
pub(super) use name;

/// `name` as field 1 of a message, for a name of at most [`MAX_NAME`] bytes.
pub(crate) const fn name_field<const N: usize>(name: &str) -> [u8; N] {
    let text = name.as_bytes();
    assert!(text.len() <= MAX_NAME && N == text.len() + 2);
    let mut out = [0; N];
    out[0] = key_byte(1, LEN);
    out[1] = text.len() as u8;
    let mut at = 0;
    while at < text.len() {
        out[at + 2] = text[at];
        at += 1;
    }
    out
}

/// An attribute value.
#[derive(Clone, Copy)]
pub(super) enum Value<'a> {
    /// UTF-8 text.
    Str(&'a [u8]),
    Int(i64),
    Bool(bool),
}

/// Writes into bytes set aside beforehand.
pub(super) struct Cursor<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl Cursor<'_> {
    /// Appends to `out` what `write` writes, which must be at most `max` bytes: more is a
    /// panic (an index out of bounds), never a wrong encoding.
    pub(super) fn append(out: &mut Vec<u8>, max: usize, write: impl FnOnce(&mut Cursor<'_>)) {
        let start = out.len();
        out.resize(start + max, 0);
        let mut cursor = Cursor {
            buf: &mut out[start..],
            at: 0,
        };
        write(&mut cursor);
        let end = start + cursor.at;
        out.truncate(end);
    }

    #[inline]
    pub(super) fn byte(&mut self, byte: u8) {
        self.buf[self.at] = byte;
        self.at += 1;
    }

    #[inline]
    pub(super) fn bytes(&mut self, bytes: &[u8]) {
        self.buf[self.at..][..bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }

    #[inline]
    pub(super) fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.byte((value as u8) | 0x80);
            value >>= 7;
        }
        self.byte(value as u8);
    }

    #[inline]
    pub(super) fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field << 3 | u32::from(wire)));
    }

    #[inline]
    pub(super) fn bytes_field(&mut self, field: u32, bytes: &[u8]) {
        self.key(field, LEN);
        self.varint(bytes.len() as u64);
        self.bytes(bytes);
    }

    #[inline]
    pub(super) fn varint_field(&mut self, field: u32, value: u64) {
        self.key(field, VARINT);
        self.varint(value);
    }

    /// A `KeyValue` (repeated field `field`, under 16) named by `name` (written by
    /// [`name!`]) with an `AnyValue`.
    #[inline]
    pub(super) fn attribute<const N: usize>(
        &mut self,
        field: u32,
        name: &[u8; N],
        value: Value<'_>,
    ) {
        let key = key_byte(field, LEN);
        // A one-byte number: its key and the number.
        let one_byte = match value {
            Value::Int(number @ 0..0x80) => Some((key_byte(3, VARINT), number as u8)),
            Value::Bool(flag) => Some((key_byte(2, VARINT), u8::from(flag))),
            Value::Int(_) | Value::Str(_) => None,
        };
        match (value, one_byte) {
            // Nearly every attribute is this short: each of its lengths is one byte.
            (Value::Str(text), _) if N + text.len() < SHORT => {
                let any = 2 + text.len();
                self.bytes(&[key, (N + 2 + any) as u8]);
                self.bytes(name);
                let text_len = text.len() as u8;
                self.bytes(&[key_byte(2, LEN), any as u8, key_byte(1, LEN), text_len]);
                self.bytes(text);
            }
            (_, Some((value_key, byte))) if N < SHORT => {
                self.bytes(&[key, (N + 4) as u8]);
                self.bytes(name);
                self.bytes(&[key_byte(2, LEN), 2, value_key, byte]);
            }
            (value, _) => self.any_attribute(key, name, value),
        }
    }

    /// [`attribute`](Self::attribute) for any value.
    fn any_attribute(&mut self, key: u8, name: &[u8], value: Value<'_>) {
        let any = match value {
            Value::Str(text) => nested_len(text.len()),
            // Two's complement, as protobuf's int64 is.
            Value::Int(number) => 1 + varint_len(number as u64),
            Value::Bool(_) => 2,
        };
        self.byte(key);
        self.varint((name.len() + nested_len(any)) as u64);
        self.bytes(name);
        self.byte(key_byte(2, LEN));
        self.varint(any as u64);
        match value {
            Value::Str(text) => self.bytes_field(1, text),
            Value::Bool(flag) => self.varint_field(2, u64::from(flag)),
            Value::Int(number) => self.varint_field(3, number as u64),
        }
    }
}

/// `write`'s bytes, for at most `max` of them.
pub(super) fn written(max: usize, write: impl FnOnce(&mut Cursor<'_>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(max);
    Cursor::append(&mut out, max, write);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_what_is_written() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let out = written(MAX_VARINT, |cursor| cursor.varint(value));
            assert_eq!(out.len(), varint_len(value), "{value}");
        }
    }

    #[test]
    fn an_attribute_stays_within_its_bound_and_a_cursor_keeps_only_what_it_wrote() {
        let text = b"some text";
        let name = name!("a.name");
        let max = MAX_ATTRIBUTE + text.len();
        let mut out = vec![9];
        Cursor::append(&mut out, max, |cursor| {
            cursor.attribute(9, name, Value::Str(text));
        });
        assert!(out.len() - 1 <= max);
        assert_eq!(out[..4], [9, key_byte(9, LEN), 21, key_byte(1, LEN)]);
        assert!(out.ends_with(text));
        let most = written(max, |cursor| cursor.attribute(9, name, Value::Int(-1)));
        assert!(most.len() <= MAX_ATTRIBUTE);
    }

    #[test]
    fn short_attributes_are_written_as_any_attribute_writes_them() {
        let name = name!("gantry.x");
        let long = "y".repeat(200);
        for value in [
            Value::Str(b""),
            Value::Str(b"text"),
            Value::Str(long.as_bytes()),
            Value::Int(0),
            Value::Int(127),
            Value::Int(128),
            Value::Int(-1),
            Value::Bool(true),
            Value::Bool(false),
        ] {
            let max = MAX_ATTRIBUTE + 300;
            let fast = written(max, |cursor| cursor.attribute(9, name, value));
            let general = written(max, |cursor| {
                cursor.any_attribute(key_byte(9, LEN), name, value);
            });
            assert_eq!(fast, general);
        }
    }

    #[test]
    fn writing_past_the_bound_panics_instead_of_writing_elsewhere() {
        let past = std::panic::catch_unwind(|| written(2, |cursor| cursor.bytes(b"abc")));
        assert!(past.is_err());
    }
}
