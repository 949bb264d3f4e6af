//! Captured stdout/stderr of executions: a [`LogSink`] per running execution numbers the
//! lines, enforces the per-execution cap, writes them to the store in batches and
//! publishes them on the [`LogHub`] so `?follow=true` readers see them live.

mod hub;
mod instance;

pub use hub::{FunctionLine, LogHub};
pub use instance::{Attached, ExecutionLogs, InstanceLog, OWN_BYTES, OWN_LINES};

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::domain::{LogLine, LogStream};
use crate::secrets::Masker;
use crate::store::Store;

/// Longest line kept; longer ones are split.
pub const MAX_LINE_BYTES: usize = 16 * 1024;
/// Lines of a warm instance's own output written to the server's log per second.
pub const INSTANCE_LINES_PER_SECOND: usize = 100;
/// Lines written to the store in one call at most.
const BATCH_LINES: usize = 256;

/// Most bytes of log lines [`LogSink::to_stderr`] prints for one run.
pub const STDERR_LOG_CAP: usize = 16 * 1024 * 1024;

/// Where an execution's output goes while it runs. Clone it into every reader; when
/// the last clone is dropped the writer flushes and [`LogSink::finish`] returns.
#[derive(Clone)]
pub struct LogSink {
    sender: mpsc::UnboundedSender<(LogStream, String)>,
    /// Bytes sent so far; past the cap (and one line more, which triggers the writer's
    /// truncation note) lines are dropped here, so a flood never queues up in memory.
    sent: Arc<AtomicUsize>,
    limit: usize,
    /// Hides the function's secret values.
    masker: Masker,
    /// Longest last line [`LogSink::copy_lines`] keeps whole.
    last_line_limit: usize,
}

/// The task that numbers, caps, stores and publishes an execution's lines.
pub struct LogWriter {
    task: JoinHandle<()>,
}

impl LogSink {
    /// Starts capturing the log of execution `id` of `function`, keeping at most
    /// `cap_bytes` of it.
    pub fn start(
        id: Uuid,
        function: &str,
        cap_bytes: usize,
        store: Arc<dyn Store>,
        hub: Arc<LogHub>,
    ) -> (LogSink, LogWriter) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let target = Target {
            id,
            function: function.to_owned(),
            cap_bytes,
            store,
            live: hub.open(id),
            hub,
        };
        let task = tokio::spawn(write_lines(target, receiver));
        let sink = LogSink {
            sender,
            sent: Arc::new(AtomicUsize::new(0)),
            limit: cap_bytes.saturating_add(MAX_LINE_BYTES + 1),
            masker: Masker::default(),
            last_line_limit: MAX_LINE_BYTES,
        };
        (sink, LogWriter { task })
    }

    /// A sink for a warm instance, whose output serves many executions: `log` files
    /// each line under the execution it is marked with, else keeps it as the
    /// instance's own, which also goes to the server's log (target `gantry::instance`,
    /// tagged `instance`) at most [`INSTANCE_LINES_PER_SECOND`] a second (a chatty
    /// instance cannot flood the server's log; what is dropped is counted there).
    pub fn to_instance(instance: String, log: Arc<InstanceLog>) -> LogSink {
        let (sender, mut receiver) = mpsc::unbounded_channel::<(LogStream, String)>();
        tokio::spawn(async move {
            let mut window = tokio::time::Instant::now();
            let (mut written, mut dropped) = (0usize, 0usize);
            while let Some((stream, line)) = receiver.recv().await {
                let Some((stream, line)) = log.file(stream, line) else {
                    continue;
                };
                if window.elapsed() >= std::time::Duration::from_secs(1) {
                    if dropped > 0 {
                        tracing::warn!(target: "gantry::instance", instance = %instance, "{dropped} lines of this instance were dropped (more than {INSTANCE_LINES_PER_SECOND} a second)");
                    }
                    window = tokio::time::Instant::now();
                    (written, dropped) = (0, 0);
                }
                if written >= INSTANCE_LINES_PER_SECOND {
                    dropped += 1;
                    continue;
                }
                written += 1;
                tracing::info!(target: "gantry::instance", instance = %instance, stream = stream.as_str(), "{line}");
            }
        });
        LogSink {
            sender,
            sent: Arc::new(AtomicUsize::new(0)),
            limit: usize::MAX,
            masker: Masker::default(),
            last_line_limit: MAX_LINE_BYTES,
        }
    }

    /// A sink printing each line on this process's stderr (`gantry fn run`), at most
    /// [`STDERR_LOG_CAP`] bytes of them, except the watchdog's report: the command
    /// prints the result itself.
    pub fn to_stderr() -> LogSink {
        let (sender, mut receiver) = mpsc::unbounded_channel::<(LogStream, String)>();
        tokio::spawn(async move {
            // The report is the last line of the watchdog's stdout, so each stdout line
            // waits for the next one before it is shown.
            let mut held: Option<String> = None;
            while let Some((stream, line)) = receiver.recv().await {
                let shown = match stream {
                    LogStream::Stdout => held.replace(line),
                    LogStream::Stderr | LogStream::System => Some(line),
                };
                if let Some(line) = shown {
                    eprintln!("{line}");
                }
            }
            if let Some(line) = held.filter(|line| !is_report(line)) {
                eprintln!("{line}");
            }
        });
        LogSink {
            sender,
            sent: Arc::new(AtomicUsize::new(0)),
            limit: STDERR_LOG_CAP,
            masker: Masker::default(),
            last_line_limit: MAX_LINE_BYTES,
        }
    }

    /// This sink, replacing `masker`'s values with `***` in every line.
    pub fn masked(mut self, masker: Masker) -> LogSink {
        self.masker = masker;
        self
    }

    /// Records one line (without its newline).
    pub fn line(&self, stream: LogStream, line: String) {
        if self.sent.fetch_add(line.len() + 1, Ordering::Relaxed) > self.limit {
            return;
        }
        let line = if self.masker.is_empty() {
            line
        } else {
            self.masker.text(&line)
        };
        // A closed writer means the execution is over; late lines are dropped.
        let _ = self.sender.send((stream, line));
    }

    /// The last whole line [`LogSink::copy_lines`] answers may be up to `limit` bytes
    /// (the watchdog's report, printed when its callback failed, can be as large as the
    /// largest output); the log itself still gets it in pieces of [`MAX_LINE_BYTES`].
    pub fn keeping_last_line(mut self, limit: usize) -> LogSink {
        self.last_line_limit = limit;
        self
    }

    /// Copies `reader` into the log line by line until it closes. Returns the last
    /// non-empty line (whole, up to the sink's last-line limit), which for the
    /// watchdog's stdout may be its report.
    pub async fn copy_lines<R: AsyncRead + Unpin>(
        self,
        stream: LogStream,
        mut reader: R,
    ) -> Option<String> {
        let mut pending: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 8192];
        let mut whole = LastLine::new(self.last_line_limit);
        let mut eof = false;
        while !eof {
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => eof = true,
                Ok(read) => pending.extend_from_slice(&chunk[..read]),
            }
            // Lines are taken from `start` on and the consumed bytes dropped once per
            // read: dropping them per line would copy the rest of the buffer each time.
            let mut start = 0;
            loop {
                let unread = &pending[start..];
                let end = match next_line_end(unread) {
                    Some(end) => end,
                    None if eof && !unread.is_empty() => {
                        let line = unread.len().min(MAX_LINE_BYTES);
                        LineEnd { line, next: line }
                    }
                    None => break,
                };
                let piece = &unread[..end.line];
                whole.push(piece);
                // A piece cut at MAX_LINE_BYTES continues on the next one.
                if end.next > end.line || eof && end.next == unread.len() {
                    whole.end();
                }
                self.line(stream, String::from_utf8_lossy(piece).into_owned());
                start += end.next;
            }
            pending.drain(..start);
        }
        // A stream that ends right after a piece cut at MAX_LINE_BYTES ends its line.
        whole.end();
        whole.last
    }
}

/// The last non-empty line of a stream, whole, if it is at most `limit` bytes.
struct LastLine {
    limit: usize,
    current: Vec<u8>,
    too_long: bool,
    /// Whether a piece of the current line had more than whitespace; decides for a line
    /// too long to keep (a blank line does not replace the last one, however long).
    too_long_text: bool,
    last: Option<String>,
}

impl LastLine {
    fn new(limit: usize) -> LastLine {
        LastLine {
            limit,
            current: Vec::new(),
            too_long: false,
            too_long_text: false,
            last: None,
        }
    }

    fn push(&mut self, piece: &[u8]) {
        self.too_long_text |= !String::from_utf8_lossy(piece).trim().is_empty();
        if self.too_long || self.current.len() + piece.len() > self.limit {
            self.too_long = true;
            self.current = Vec::new();
        } else {
            self.current.extend_from_slice(piece);
        }
    }

    fn end(&mut self) {
        if self.too_long {
            if self.too_long_text {
                self.last = None;
            }
        } else {
            let line = String::from_utf8_lossy(&self.current);
            if !line.trim().is_empty() {
                self.last = Some(line.into_owned());
            }
        }
        self.current.clear();
        self.too_long = false;
        self.too_long_text = false;
    }
}

impl LogWriter {
    /// Waits until every line sent by dropped sinks is stored.
    pub async fn finish(self) {
        let _ = self.task.await;
    }
}

struct LineEnd {
    line: usize,
    next: usize,
}

/// Where the first line of `buf` ends: at a newline, or at [`MAX_LINE_BYTES`]. A line of
/// exactly MAX_LINE_BYTES ends at its own newline (or `\r\n`), which is looked for
/// that far, so it is not followed by an empty line of its own.
fn next_line_end(buf: &[u8]) -> Option<LineEnd> {
    const LOOK: usize = MAX_LINE_BYTES + 2;
    let cut = LineEnd {
        line: MAX_LINE_BYTES,
        next: MAX_LINE_BYTES,
    };
    match buf.iter().take(LOOK).position(|&b| b == b'\n') {
        Some(pos) => {
            let line = if pos > 0 && buf[pos - 1] == b'\r' {
                pos - 1
            } else {
                pos
            };
            Some(if line <= MAX_LINE_BYTES {
                LineEnd {
                    line,
                    next: pos + 1,
                }
            } else {
                cut
            })
        }
        None if buf.len() >= LOOK => Some(cut),
        None => None,
    }
}

/// Where [`write_lines`] writes one execution's lines.
struct Target {
    id: Uuid,
    function: String,
    cap_bytes: usize,
    store: Arc<dyn Store>,
    live: broadcast::Sender<LogLine>,
    hub: Arc<LogHub>,
}

async fn write_lines(target: Target, mut receiver: mpsc::UnboundedReceiver<(LogStream, String)>) {
    let Target {
        id,
        ref function,
        cap_bytes,
        ref store,
        ref live,
        ref hub,
    } = target;
    let metrics = hub.metrics.clone();
    let mut seq = 0u64;
    let mut used = 0usize;
    let mut truncated = false;
    let mut lost = 0usize;
    let mut batch = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        while let Some((stream, line)) = next.take() {
            let (stream, line) = if truncated {
                (None, String::new())
            } else if used + line.len() + 1 > cap_bytes {
                truncated = true;
                let note = format!(
                    "log truncated: this execution's log reached its cap of {cap_bytes} bytes; later lines were dropped"
                );
                (Some(LogStream::System), note)
            } else {
                used += line.len() + 1;
                (Some(stream), line)
            };
            if let Some(stream) = stream {
                seq += 1;
                batch.push(LogLine {
                    seq,
                    stream,
                    time: crate::domain::now(),
                    line,
                });
            }
            if batch.len() < BATCH_LINES {
                next = receiver.try_recv().ok();
            }
        }
        if batch.is_empty() {
            continue;
        }
        if lost > 0 {
            // Say, in the log itself, that lines are missing (their numbers are skipped).
            seq += 1;
            batch.push(lost_note(seq, lost));
        }
        match store.append_logs(id, &batch).await {
            Ok(()) => lost = 0,
            Err(err) => {
                tracing::warn!(execution = %id, "could not store {} log lines: {err}", batch.len());
                lost += batch.len();
                if let Some(metrics) = &metrics {
                    metrics.log_lines_lost(batch.len());
                }
            }
        }
        hub.publish_function(function, id, &batch);
        for line in batch.drain(..) {
            let _ = live.send(line);
        }
    }
    if lost > 0 {
        let _ = store.append_logs(id, &[lost_note(seq + 1, lost)]).await;
    }
}

/// The system line that says `lost` lines could not be stored.
fn lost_note(seq: u64, lost: usize) -> LogLine {
    LogLine {
        seq,
        stream: LogStream::System,
        time: crate::domain::now(),
        line: format!(
            "{lost} earlier log lines could not be stored (the server's store failed) and are missing"
        ),
    }
}

/// Whether `line` is a watchdog's completion report.
fn is_report(line: &str) -> bool {
    serde_json::from_str::<gantry_protocol::CompletionReport>(line).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_long_runs() {
        let end = next_line_end(b"ab\r\ncd").unwrap();
        assert_eq!((end.line, end.next), (2, 4));
        assert!(next_line_end(b"abc").is_none());
        let long = vec![b'x'; MAX_LINE_BYTES + 5];
        let end = next_line_end(&long).unwrap();
        assert_eq!((end.line, end.next), (MAX_LINE_BYTES, MAX_LINE_BYTES));
        // Exactly the limit: the line ends at its newline, with or without \r.
        let mut exact = vec![b'x'; MAX_LINE_BYTES];
        assert!(
            next_line_end(&exact).is_none(),
            "its end has not arrived yet"
        );
        exact.extend_from_slice(b"\r\nnext");
        let end = next_line_end(&exact).unwrap();
        assert_eq!((end.line, end.next), (MAX_LINE_BYTES, MAX_LINE_BYTES + 2));
        exact.remove(MAX_LINE_BYTES);
        let end = next_line_end(&exact).unwrap();
        assert_eq!((end.line, end.next), (MAX_LINE_BYTES, MAX_LINE_BYTES + 1));
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_limit_is_one_line_and_the_last_one() {
        let exact = "x".repeat(MAX_LINE_BYTES);
        for text in [
            format!("a\n{exact}"),
            format!("a\n{exact}\n"),
            format!("a\n{exact}\r\n"),
            format!("a\n{}", "y".repeat(2 * MAX_LINE_BYTES)),
        ] {
            let sink = LogSink::to_instance("test".into(), instance::tests::instance_log().0)
                .keeping_last_line(1 << 20);
            let last = sink.copy_lines(LogStream::Stdout, text.as_bytes()).await;
            let expected = text.trim_end().rsplit('\n').next().unwrap();
            assert_eq!(last.as_deref(), Some(expected), "{}", text.len());
        }
    }

    #[tokio::test]
    async fn the_last_line_is_kept_whole_up_to_its_limit() {
        let report = format!("{{\"output\": \"{}\"}}", "x".repeat(3 * MAX_LINE_BYTES));
        let text = format!("log line\n{report}\n");
        let sink = LogSink::to_instance("test".into(), instance::tests::instance_log().0)
            .keeping_last_line(1 << 20);
        let last = sink.copy_lines(LogStream::Stdout, text.as_bytes()).await;
        assert_eq!(
            last.as_deref(),
            Some(report.as_str()),
            "whole, not its last piece"
        );
        let unterminated = format!("log line\n{report}");
        let sink = LogSink::to_instance("test".into(), instance::tests::instance_log().0)
            .keeping_last_line(1 << 20);
        let last = sink
            .copy_lines(LogStream::Stdout, unterminated.as_bytes())
            .await;
        assert_eq!(last.as_deref(), Some(report.as_str()));
        let sink = LogSink::to_instance("test".into(), instance::tests::instance_log().0)
            .keeping_last_line(MAX_LINE_BYTES);
        let last = sink.copy_lines(LogStream::Stdout, text.as_bytes()).await;
        assert_eq!(last, None, "too long to be kept whole");
        let sink = LogSink::to_instance("test".into(), instance::tests::instance_log().0);
        let last = sink
            .copy_lines(LogStream::Stdout, &b"a\n\nb\n  \n"[..])
            .await;
        assert_eq!(last.as_deref(), Some("b"));
    }
}
