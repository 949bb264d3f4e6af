//! Captured log lines of an execution and the stream each came from.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Which output stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// The instance's stdout.
    Stdout,
    /// The instance's stderr.
    Stderr,
    /// A line written by Gantry itself (truncation notes and the like).
    System,
}

impl LogStream {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::System => "system",
        }
    }

    /// Parses a lowercase name.
    pub fn parse(text: &str) -> Option<LogStream> {
        [LogStream::Stdout, LogStream::Stderr, LogStream::System]
            .into_iter()
            .find(|stream| stream.as_str() == text)
    }
}

/// One captured line of an execution's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// 1, 2, 3… per execution, in arrival order.
    pub seq: u64,
    /// Where it came from.
    pub stream: LogStream,
    /// When it was captured.
    pub time: DateTime<Utc>,
    /// The line, without its newline.
    pub line: String,
}
