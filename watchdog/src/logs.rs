//! Log forwarding: lines from function processes and the watchdog's own messages are
//! written by one dedicated thread, so a slow reader of our stdout/stderr applies
//! backpressure to the forwarders instead of blocking the async runtime.
//!
//! Lines are never split or merged; a line longer than [`MAX_LINE`] is cut into pieces.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use gantry_protocol::log_tag;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, oneshot};

/// Longest line forwarded in one piece.
pub const MAX_LINE: usize = 64 * 1024;
/// How much of the last stderr line is kept for error messages.
const TAIL_LIMIT: usize = 512;

/// Which of the watchdog's streams a line goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The watchdog's stdout.
    Stdout,
    /// The watchdog's stderr.
    Stderr,
}

/// Which execution forwarded lines belong to (WARM mode marks them, see
/// [`gantry_protocol::log_tag`]); lines marked already keep their mark.
#[derive(Debug, Clone, Default)]
pub enum Attribution {
    /// Lines go out as they are (one-shot modes: all output is the execution's).
    #[default]
    Unmarked,
    /// Every line belongs to this execution (a process started for one call).
    Execution(Arc<str>),
    /// A runtime serving many calls: a line belongs to the call in flight when there
    /// is exactly one.
    InFlight(Arc<InFlight>),
}

impl Attribution {
    /// `line` with the mark of the execution it belongs to, when that is known.
    fn mark(&self, line: Vec<u8>) -> Vec<u8> {
        if log_tag::is_marked(&line) {
            return line;
        }
        match self {
            Attribution::Unmarked => line,
            Attribution::Execution(id) => log_tag::mark(id, &line),
            Attribution::InFlight(calls) => match calls.only() {
                Some(id) => log_tag::mark(&id, &line),
                None => line,
            },
        }
    }
}

/// The executions a long-lived runtime is serving now.
#[derive(Debug, Default)]
pub struct InFlight {
    calls: Mutex<Vec<Arc<str>>>,
}

impl InFlight {
    /// Counts execution `id` in flight until the answer is dropped.
    pub fn enter(self: &Arc<Self>, id: &str) -> InFlightCall {
        let id: Arc<str> = Arc::from(id);
        self.lock().push(id.clone());
        InFlightCall {
            calls: self.clone(),
            id,
        }
    }

    /// The one execution in flight, if exactly one is.
    fn only(&self) -> Option<Arc<str>> {
        match self.lock().as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<str>>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One call counted by [`InFlight::enter`].
#[derive(Debug)]
pub struct InFlightCall {
    calls: Arc<InFlight>,
    id: Arc<str>,
}

impl Drop for InFlightCall {
    fn drop(&mut self) {
        let mut calls = self.calls.lock();
        if let Some(index) = calls.iter().position(|id| Arc::ptr_eq(id, &self.id)) {
            calls.swap_remove(index);
        }
    }
}

enum Message {
    Line(Target, Vec<u8>),
    Flush(oneshot::Sender<()>),
}

fn sink() -> Option<&'static mpsc::Sender<Message>> {
    static SINK: OnceLock<Option<mpsc::Sender<Message>>> = OnceLock::new();
    SINK.get_or_init(|| {
        let (tx, mut rx) = mpsc::channel::<Message>(1024);
        std::thread::Builder::new()
            .name("log-writer".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                while let Some(message) = rx.blocking_recv() {
                    match message {
                        Message::Line(target, line) => write_now(target, &line),
                        Message::Flush(done) => {
                            let _ = std::io::stdout().flush();
                            let _ = done.send(());
                        }
                    }
                }
            })
            // No thread (EAGAIN under a pids limit): lines are written inline instead.
            .ok()
            .map(|_| tx)
    })
    .as_ref()
}

/// Starts the log writer thread now, while the OS still grants threads; a function
/// that forks until its pids limit is reached must not leave the watchdog without
/// one. When it cannot start, output is written directly by the caller.
pub fn start() {
    let _ = sink();
}

fn write_now(target: Target, line: &[u8]) {
    let _ = match target {
        Target::Stdout => std::io::stdout().lock().write_all(line),
        Target::Stderr => std::io::stderr().lock().write_all(line),
    };
}

/// Writes one line (a newline is added when missing), waiting for room in the queue.
pub async fn write_line(target: Target, mut line: Vec<u8>) {
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    match sink() {
        Some(sink) => {
            let _ = sink.send(Message::Line(target, line)).await;
        }
        None => write_now(target, &line),
    }
}

/// A message from the watchdog itself, on stderr, prefixed with `watchdog: `.
pub fn diag(message: std::fmt::Arguments<'_>) {
    let line = format!("watchdog: {message}\n").into_bytes();
    let Some(sink) = sink() else {
        return write_now(Target::Stderr, &line);
    };
    if let Err(mpsc::error::TrySendError::Full(Message::Line(_, line))) =
        sink.try_send(Message::Line(Target::Stderr, line))
    {
        // The queue is full of function output; our own message still gets out.
        write_now(Target::Stderr, &line);
    }
}

/// Logs a watchdog diagnostic on stderr: `diag!("runtime exited with {status}")`.
#[macro_export]
macro_rules! diag {
    ($($arg:tt)*) => { $crate::logs::diag(format_args!($($arg)*)) };
}

/// Waits until every line queued so far has been written.
pub async fn flush() {
    let Some(sink) = sink() else {
        let _ = std::io::stdout().flush();
        return;
    };
    let (done, written) = oneshot::channel();
    if sink.send(Message::Flush(done)).await.is_ok() {
        let _ = written.await;
    }
}

/// Forwards `reader` line by line to `target` until end of file, each line marked as
/// `attribution` says. Returns the last non-empty line (trimmed, at most 512 bytes) for
/// use in error messages.
pub async fn forward_lines(
    mut reader: impl AsyncRead + Unpin,
    target: Target,
    attribution: Attribution,
) -> Option<String> {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8 * 1024];
    let mut last = None;
    loop {
        let read = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if read == 0 {
            if !pending.is_empty() {
                remember(&mut last, &pending);
                write_line(target, attribution.mark(pending)).await;
            }
            return last;
        }
        pending.extend_from_slice(&chunk[..read]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let rest = pending.split_off(end + 1);
            let line = std::mem::replace(&mut pending, rest);
            remember(&mut last, &line);
            write_line(target, attribution.mark(line)).await;
        }
        while pending.len() >= MAX_LINE {
            let rest = pending.split_off(MAX_LINE);
            let piece = std::mem::replace(&mut pending, rest);
            remember(&mut last, &piece);
            write_line(target, attribution.mark(piece)).await;
        }
    }
}

/// Forwards lines already in memory (log lines that preceded a STDIO result).
pub async fn forward_buffer(buffer: &[u8], target: Target, attribution: &Attribution) {
    for line in buffer.split_inclusive(|b| *b == b'\n') {
        if !line.iter().all(u8::is_ascii_whitespace) {
            write_line(target, attribution.mark(line.to_vec())).await;
        }
    }
}

fn remember(last: &mut Option<String>, line: &[u8]) {
    let text = String::from_utf8_lossy(line);
    let text = text.trim();
    if !text.is_empty() {
        let mut end = text.len().min(TAIL_LIMIT);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        *last = Some(text[..end].to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn last_line_is_the_last_non_empty_one() {
        let input: &[u8] = b"first\nTraceback\nValueError: bad\n\n   \n";
        assert_eq!(
            forward_lines(input, Target::Stderr, Attribution::Unmarked)
                .await
                .as_deref(),
            Some("ValueError: bad")
        );
        let unterminated: &[u8] = b"a\nno newline at end";
        assert_eq!(
            forward_lines(unterminated, Target::Stderr, Attribution::Unmarked)
                .await
                .as_deref(),
            Some("no newline at end")
        );
        let empty: &[u8] = b"";
        assert_eq!(
            forward_lines(empty, Target::Stderr, Attribution::Unmarked).await,
            None
        );
    }

    #[tokio::test]
    async fn endless_line_is_cut_into_bounded_pieces() {
        // Two full pieces, then the 10-byte rest at end of file.
        let input = vec![b'x'; MAX_LINE * 2 + 10];
        let last = forward_lines(&input[..], Target::Stderr, Attribution::Unmarked)
            .await
            .unwrap();
        assert_eq!(last.len(), 10);
        // A piece kept for error messages is cut to the tail limit.
        let input = vec![b'y'; MAX_LINE * 2];
        let last = forward_lines(&input[..], Target::Stderr, Attribution::Unmarked)
            .await
            .unwrap();
        assert_eq!(last.len(), TAIL_LIMIT);
    }

    #[test]
    fn lines_are_marked_with_their_execution_or_the_one_call_in_flight() {
        let plain = b"hello\n".to_vec();
        assert_eq!(Attribution::Unmarked.mark(plain.clone()), plain);
        let one = Attribution::Execution(Arc::from("e-1"));
        assert_eq!(one.mark(plain.clone()), log_tag::mark("e-1", b"hello\n"));
        let marked = log_tag::mark("e-2", b"x");
        assert_eq!(one.mark(marked.clone()), marked, "a mark is kept");

        let calls = Arc::new(InFlight::default());
        let runtime = Attribution::InFlight(calls.clone());
        assert_eq!(runtime.mark(plain.clone()), plain, "no call in flight");
        let first = calls.enter("a");
        assert_eq!(runtime.mark(plain.clone()), log_tag::mark("a", b"hello\n"));
        let second = calls.enter("b");
        assert_eq!(runtime.mark(plain.clone()), plain, "two in flight: unknown");
        drop(first);
        assert_eq!(runtime.mark(plain.clone()), log_tag::mark("b", b"hello\n"));
        drop(second);
        assert_eq!(runtime.mark(plain.clone()), plain);
    }
}
