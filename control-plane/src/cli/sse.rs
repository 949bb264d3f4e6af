//! A minimal server-sent events parser for `gantry exec logs --follow`: feed it the
//! response body chunk by chunk, it hands back whole events.
//!
//! Follows the WHATWG event-stream rules that matter here: lines end with `\n`, `\r\n` or
//! `\r` (also when split across chunks); a blank line ends an event; lines starting with
//! `:` are comments; `data` lines accumulate, joined with `\n`; one space after the colon
//! is dropped; `id` and `retry` are ignored; an unfinished event at the end of the
//! stream is discarded.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `message` when the event had none.
    pub event: String,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Incremental parser state.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes not yet forming a complete line.
    pending: Vec<u8>,
    /// The `event:` field of the event being built.
    event: Option<String>,
    /// The `data:` lines of the event being built.
    data: Vec<String>,
    /// Whether the UTF-8 byte-order mark at the very start was handled.
    started: bool,
}

impl SseParser {
    /// A parser at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next chunk of the body; returns the events it completed, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        self.pending.extend_from_slice(chunk);
        if !self.started {
            if self.pending.len() < 3 && b"\xEF\xBB\xBF".starts_with(&self.pending) {
                return Vec::new();
            }
            if self.pending.starts_with(b"\xEF\xBB\xBF") {
                self.pending.drain(..3);
            }
            self.started = true;
        }
        let mut events = Vec::new();
        let mut start = 0;
        let mut i = 0;
        while i < self.pending.len() {
            match self.pending[i] {
                b'\n' => {
                    let line = String::from_utf8_lossy(&self.pending[start..i]).into_owned();
                    self.line(&line, &mut events);
                    i += 1;
                    start = i;
                }
                b'\r' => {
                    if i + 1 == self.pending.len() {
                        // Maybe the first half of `\r\n`: wait for the next chunk.
                        break;
                    }
                    let line = String::from_utf8_lossy(&self.pending[start..i]).into_owned();
                    self.line(&line, &mut events);
                    i += if self.pending[i + 1] == b'\n' { 2 } else { 1 };
                    start = i;
                }
                _ => i += 1,
            }
        }
        self.pending.drain(..start);
        events
    }

    /// The stream ended: returns the last event if the server closed it with a lone `\r`
    /// line ending still pending (anything unterminated is discarded, as the spec says).
    pub fn finish(&mut self) -> Option<SseEvent> {
        if self.pending == b"\r" {
            self.pending.clear();
            let mut events = Vec::new();
            self.line("", &mut events);
            return events.pop();
        }
        None
    }

    /// Handles one complete line.
    fn line(&mut self, line: &str, events: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.event.is_some() || !self.data.is_empty() {
                events.push(SseEvent {
                    event: self.event.take().unwrap_or_else(|| "message".to_string()),
                    data: std::mem::take(&mut self.data).join("\n"),
                });
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => self.data.push(value.to_string()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent {
            event: name.to_string(),
            data: data.to_string(),
        }
    }

    const STREAM: &str = ": keep-alive\n\nevent: log\ndata: {\"seq\":1,\"line\":\"héllo\"}\n\n\
        event: log\r\ndata: {\"seq\":2,\r\ndata:\"line\":\"x\"}\r\n\r\n\
        event: end\rdata: {\"status\":\"success\"}\r\r";

    fn expected() -> Vec<SseEvent> {
        vec![
            event("log", "{\"seq\":1,\"line\":\"héllo\"}"),
            event("log", "{\"seq\":2,\n\"line\":\"x\"}"),
            event("end", "{\"status\":\"success\"}"),
        ]
    }

    #[test]
    fn parses_a_whole_stream() {
        let mut parser = SseParser::new();
        let mut events = parser.feed(STREAM.as_bytes());
        events.extend(parser.finish());
        assert_eq!(events, expected());
    }

    #[test]
    fn same_events_whatever_the_chunking() {
        let bytes = STREAM.as_bytes();
        for size in 1..=bytes.len() {
            let mut parser = SseParser::new();
            let mut events = Vec::new();
            for chunk in bytes.chunks(size) {
                events.extend(parser.feed(chunk));
            }
            events.extend(parser.finish());
            assert_eq!(events, expected(), "chunk size {size}");
        }
        // Every possible split into two parts, including inside `\r\n` and inside a
        // multi-byte character.
        for cut in 0..=bytes.len() {
            let mut parser = SseParser::new();
            let mut events = parser.feed(&bytes[..cut]);
            events.extend(parser.feed(&bytes[cut..]));
            events.extend(parser.finish());
            assert_eq!(events, expected(), "cut at {cut}");
        }
    }

    #[test]
    fn default_event_name_bom_and_odd_fields() {
        let mut parser = SseParser::new();
        let mut events = parser.feed(b"\xEF\xBB");
        events.extend(parser.feed(b"\xBFdata:no space\nid: 7\nretry: 10\ndata\n\n"));
        assert_eq!(events, vec![event("message", "no space\n")]);
    }

    #[test]
    fn unterminated_event_is_dropped_and_empty_events_ignored() {
        let mut parser = SseParser::new();
        assert!(parser.feed(b"\n\n: only a comment\n\n").is_empty());
        assert!(parser.feed(b"event: log\ndata: {}").is_empty());
        assert_eq!(parser.finish(), None);
    }
}
