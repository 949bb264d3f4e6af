//! A warm instance's output. A line marked with an execution that runs on the instance
//! (see [`gantry_protocol::log_tag`]) goes to that execution's log; the other lines are
//! the instance's own: the latest are kept for `GET /v1/functions/{name}/logs?instance=`
//! and written to the server's log at a bounded rate.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use gantry_protocol::log_tag;
use uuid::Uuid;

use super::{LogHub, LogSink, LogWriter};
use crate::domain::{LogLine, LogStream};
use crate::store::Store;

/// Lines of its own an instance keeps.
pub const OWN_LINES: usize = 500;
/// Bytes of its own lines an instance keeps (lines are up to 16 KiB each).
pub const OWN_BYTES: usize = 256 * 1024;
/// How long an execution's marked lines are still taken after its call ended: its
/// answer can overtake its last lines, which come through the instance's output.
const LATE_LINES: Duration = Duration::from_secs(1);

/// Where the logs of executions go: opened when their first line comes.
#[derive(Clone)]
pub struct ExecutionLogs {
    /// The function whose executions they are.
    pub function: String,
    /// Where lines are stored.
    pub store: Arc<dyn Store>,
    /// Where followers read them live.
    pub hub: Arc<LogHub>,
    /// Largest log of one execution.
    pub cap_bytes: usize,
}

/// The log of one execution attached to the instance, once it has a line.
type Opened = Option<(LogSink, LogWriter)>;

/// Files the lines of one warm instance.
pub struct InstanceLog {
    logs: ExecutionLogs,
    attached: Mutex<HashMap<Uuid, Opened>>,
    own: Mutex<OwnLines>,
}

/// The instance's own latest lines, and their bytes.
#[derive(Default)]
struct OwnLines {
    lines: VecDeque<LogLine>,
    bytes: usize,
}

impl InstanceLog {
    /// The log of a new instance whose executions' lines go to `logs`.
    pub fn new(logs: ExecutionLogs) -> Arc<InstanceLog> {
        Arc::new(InstanceLog {
            logs,
            attached: Mutex::new(HashMap::new()),
            own: Mutex::new(OwnLines::default()),
        })
    }

    /// Takes execution `id`'s marked lines until the answer is dropped (and a moment
    /// after, for lines still on their way).
    pub fn attach(self: &Arc<Self>, id: Uuid) -> Attached {
        lock(&self.attached).insert(id, None);
        Attached {
            log: self.clone(),
            id,
        }
    }

    /// The instance's own latest lines, oldest first.
    pub fn own_lines(&self) -> Vec<LogLine> {
        lock(&self.own).lines.iter().cloned().collect()
    }

    /// Files one line: to the execution it is marked with when that one is attached,
    /// else to the instance's own lines, answered so the caller can log it too.
    pub fn file(&self, stream: LogStream, line: String) -> Option<(LogStream, String)> {
        let Some((id, text)) = log_tag::split(line.as_bytes()) else {
            return Some(self.keep(stream, line));
        };
        let text = String::from_utf8_lossy(text).into_owned();
        let Ok(id) = Uuid::parse_str(id) else {
            return Some(self.keep(stream, text));
        };
        let mut attached = lock(&self.attached);
        let Some(opened) = attached.get_mut(&id) else {
            drop(attached);
            return Some(self.keep(stream, text));
        };
        let (sink, _) = opened.get_or_insert_with(|| {
            let logs = &self.logs;
            LogSink::start(
                id,
                &logs.function,
                logs.cap_bytes,
                logs.store.clone(),
                logs.hub.clone(),
            )
        });
        sink.line(stream, text);
        None
    }

    fn keep(&self, stream: LogStream, line: String) -> (LogStream, String) {
        let mut own = lock(&self.own);
        let seq = own.lines.back().map_or(1, |last| last.seq + 1);
        own.bytes += line.len();
        while own.lines.len() >= OWN_LINES || own.bytes > OWN_BYTES && !own.lines.is_empty() {
            let Some(oldest) = own.lines.pop_front() else {
                break;
            };
            own.bytes -= oldest.line.len();
        }
        own.lines.push_back(LogLine {
            seq,
            stream,
            time: crate::domain::now(),
            line: line.clone(),
        });
        (stream, line)
    }

    /// Stops taking `id`'s lines; its log is written out and its followers let go.
    fn detach(&self, id: Uuid) {
        let Some(Some((sink, writer))) = lock(&self.attached).remove(&id) else {
            return;
        };
        drop(sink);
        let hub = self.logs.hub.clone();
        tokio::spawn(async move {
            writer.finish().await;
            hub.close(id);
        });
    }
}

impl std::fmt::Debug for InstanceLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceLog")
            .field("attached", &lock(&self.attached).len())
            .field("own", &lock(&self.own).lines.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// An execution attached to an instance's log (see [`InstanceLog::attach`]).
pub struct Attached {
    log: Arc<InstanceLog>,
    id: Uuid,
}

impl Drop for Attached {
    fn drop(&mut self) {
        let (log, id) = (self.log.clone(), self.id);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    tokio::time::sleep(LATE_LINES).await;
                    log.detach(id);
                });
            }
            Err(_) => log.detach(id),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::store::MemoryStore;

    /// An instance log over a memory store.
    pub(in crate::logs) fn instance_log() -> (Arc<InstanceLog>, Arc<MemoryStore>) {
        let store = Arc::new(MemoryStore::default());
        let logs = ExecutionLogs {
            function: "f".into(),
            store: store.clone(),
            hub: Arc::new(LogHub::default()),
            cap_bytes: 1024,
        };
        (InstanceLog::new(logs), store)
    }

    fn marked(id: Uuid, text: &str) -> String {
        String::from_utf8(log_tag::mark(&id.to_string(), text.as_bytes())).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn marked_lines_of_attached_executions_go_to_their_logs() {
        let (log, store) = instance_log();
        let (a, b, stranger) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let attached_a = log.attach(a);
        let attached_b = log.attach(b);
        assert!(log.file(LogStream::Stdout, marked(a, "to a")).is_none());
        assert!(log.file(LogStream::Stderr, marked(b, "to b")).is_none());
        let own = log.file(LogStream::Stdout, marked(stranger, "not running here"));
        assert_eq!(
            own,
            Some((LogStream::Stdout, "not running here".to_owned()))
        );
        assert!(log.file(LogStream::Stderr, "unmarked".to_owned()).is_some());
        drop((attached_a, attached_b));
        // A late line still lands, within the grace.
        assert!(log.file(LogStream::Stdout, marked(a, "late")).is_none());
        tokio::time::sleep(LATE_LINES * 2).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        let lines = |id| {
            let store = store.clone();
            async move {
                let lines = store.read_logs(id, 0, 100).await.unwrap();
                lines.into_iter().map(|l| l.line).collect::<Vec<_>>()
            }
        };
        assert_eq!(lines(a).await, ["to a", "late"]);
        assert_eq!(lines(b).await, ["to b"]);
        assert!(log.file(LogStream::Stdout, marked(a, "too late")).is_some());
        let own: Vec<String> = log.own_lines().into_iter().map(|l| l.line).collect();
        assert_eq!(own, ["not running here", "unmarked", "too late"]);
    }

    #[test]
    fn an_instance_keeps_a_bounded_number_of_bytes_of_its_own() {
        let (log, _) = instance_log();
        let long = "x".repeat(16 * 1024);
        for _ in 0..100 {
            log.file(LogStream::Stdout, long.clone());
        }
        let own = log.own_lines();
        assert_eq!(own.len(), OWN_BYTES / long.len());
        assert_eq!(own.last().unwrap().seq, 100);
    }

    #[test]
    fn an_instance_keeps_its_latest_own_lines() {
        let (log, _) = instance_log();
        for n in 0..OWN_LINES + 5 {
            log.file(LogStream::Stdout, format!("line {n}"));
        }
        let own = log.own_lines();
        assert_eq!(own.len(), OWN_LINES);
        assert_eq!(own[0].line, "line 5");
        assert_eq!(own.last().unwrap().seq, (OWN_LINES + 5) as u64);
    }
}
