//! The live side of the logs: the lines of running executions, handed to followers of
//! one execution or of every execution of a function as they are written.

use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::domain::LogLine;
use crate::metrics::Metrics;

/// A line of one of a function's executions, for followers of the whole function.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionLine {
    /// The execution that wrote it.
    pub execution_id: Uuid,
    /// The line.
    #[serde(flatten)]
    pub line: LogLine,
}

/// Live log lines of running executions, for followers of one execution or of every
/// execution of a function.
#[derive(Default)]
pub struct LogHub {
    channels: DashMap<Uuid, broadcast::Sender<LogLine>>,
    /// Only functions someone follows have a channel.
    functions: DashMap<String, broadcast::Sender<FunctionLine>>,
    /// Counts the lines the store could not take.
    pub(super) metrics: Option<Arc<Metrics>>,
}

impl LogHub {
    /// A hub that counts the lines the store could not take in `metrics`.
    pub fn with_metrics(metrics: Arc<Metrics>) -> LogHub {
        LogHub {
            channels: DashMap::new(),
            functions: DashMap::new(),
            metrics: Some(metrics),
        }
    }

    /// Subscribes to the lines of a running execution; `None` once it has finished
    /// (everything is in the store by then).
    pub fn subscribe(&self, id: Uuid) -> Option<broadcast::Receiver<LogLine>> {
        self.channels.get(&id).map(|sender| sender.subscribe())
    }

    /// The live channel of execution `id`, opened if need be.
    pub(super) fn open(&self, id: Uuid) -> broadcast::Sender<LogLine> {
        self.channels
            .entry(id)
            .or_insert_with(|| broadcast::channel(1024).0)
            .clone()
    }

    /// Subscribes to the lines every execution of `function` writes from now on.
    pub fn subscribe_function(&self, function: &str) -> broadcast::Receiver<FunctionLine> {
        self.functions
            .entry(function.to_owned())
            .or_insert_with(|| broadcast::channel(1024).0)
            .subscribe()
    }

    /// Hands `lines` of execution `id` to the followers of `function`, if any.
    pub(super) fn publish_function(&self, function: &str, id: Uuid, lines: &[LogLine]) {
        let Some(sender) = self.functions.get(function).map(|entry| entry.clone()) else {
            return;
        };
        if sender.receiver_count() == 0 {
            self.functions
                .remove_if(function, |_, sender| sender.receiver_count() == 0);
            return;
        }
        for line in lines {
            let _ = sender.send(FunctionLine {
                execution_id: id,
                line: line.clone(),
            });
        }
    }

    /// Ends the live stream of an execution: followers see the channel close.
    pub fn close(&self, id: Uuid) {
        self.channels.remove(&id);
    }
}
