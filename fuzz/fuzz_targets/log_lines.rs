//! A function's output as the control plane splits it into log lines and keeps its last
//! line (the watchdog's report when its callback failed), against a plain reference:
//! lines end at `\n` (a `\r` before it dropped), the last non-blank one is kept whole
//! when it fits the limit.
//!
//! Lines longer than the 16 KiB piece size matter here, so the input is a recipe:
//! triples of (count low byte, count high byte, byte) each writing `count` copies of
//! `byte`. The first byte sets how many bytes each read returns.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use gantry::domain::LogStream;
use gantry::logs::{ExecutionLogs, InstanceLog, LogHub, LogSink, MAX_LINE_BYTES};
use gantry::store::MemoryStore;
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, ReadBuf};

/// The last line is kept up to this many bytes (two and a half pieces).
const LIMIT: usize = 40 * 1024;

/// Hands out `text` at most `step` bytes per read.
struct Trickle<'a> {
    text: &'a [u8],
    step: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let n = self.step.min(buf.remaining()).min(self.text.len());
        buf.put_slice(&self.text[..n]);
        self.text = &self.text[n..];
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
    })
}

/// Whether `line` is blank; one too long to keep is judged by its 16 KiB pieces (all
/// the control plane sees of it).
fn blank(line: &[u8]) -> bool {
    let blank = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().is_empty();
    if line.len() <= LIMIT {
        blank(line)
    } else {
        line.chunks(MAX_LINE_BYTES).all(blank)
    }
}

/// The last non-blank line, if at most `LIMIT` bytes.
fn reference(text: &[u8]) -> Option<String> {
    let mut lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let unterminated = lines.pop().unwrap_or_default();
    let lines = lines
        .into_iter()
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .chain([unterminated]);
    let line = lines.filter(|line| !blank(line)).last()?;
    (line.len() <= LIMIT).then(|| String::from_utf8_lossy(line).into_owned())
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, recipe)) = data.split_first() else {
        return;
    };
    let mut text = Vec::new();
    for triple in recipe.chunks_exact(3) {
        let count = usize::from(u16::from_le_bytes([triple[0], triple[1]]));
        text.extend(std::iter::repeat_n(triple[2], count));
        if text.len() > 128 * 1024 {
            return;
        }
    }
    let step = match step {
        0 => usize::MAX,
        step => usize::from(step) * 257,
    };
    let last = runtime().block_on(async {
        // A warm instance's sink: its unmarked lines are its own.
        let logs = ExecutionLogs {
            function: "fuzz".into(),
            store: Arc::new(MemoryStore::default()),
            hub: Arc::new(LogHub::default()),
            cap_bytes: 1 << 20,
        };
        let sink = LogSink::to_instance("fuzz".into(), InstanceLog::new(logs));
        let sink = sink.keeping_last_line(LIMIT);
        let reader = Trickle { text: &text, step };
        sink.copy_lines(LogStream::Stdout, reader).await
    });
    assert_eq!(last, reference(&text));
});
