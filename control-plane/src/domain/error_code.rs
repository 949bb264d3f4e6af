//! Why an execution failed: one typed code for what the watchdog reports
//! ([`WatchdogCode`]), what the control plane decides itself, and codes this build does
//! not know (a newer watchdog's), which are kept as sent.

use std::fmt;

use gantry_protocol::ErrorCode as WatchdogCode;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A failure's machine-readable reason.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A code the watchdog reports (`TIMEOUT`, `RUNTIME_CRASHED`, …), which the control
    /// plane also sets when it sees the same failure itself.
    Watchdog(WatchdogCode),
    /// The output did not satisfy the function's `output_schema`.
    OutputSchemaViolation,
    /// A user cancelled the execution.
    Cancelled,
    /// A chain's target function no longer exists.
    ChainTargetMissing,
    /// A chain would have gone deeper than the depth cap.
    ChainDepthExceeded,
    /// The target's queue was full (a chained child, a sync warm call).
    QueueFull,
    /// A chained execution's target is disabled.
    FunctionDisabled,
    /// The instance ran out of its memory limit and was killed.
    OomKilled,
    /// The control plane stopped while the execution ran and its retry policy does not
    /// allow running it again.
    ControlPlaneRestarted,
    /// The node that ran the execution stopped heart-beating (killed, cut off) and its
    /// retry policy does not allow running it again; another node ended it.
    NodeLost,
    /// It waited in the queue past its function's `max_queue_age_ms` (or the server's
    /// `--max-queue-age-ms`) and was ended without running.
    Expired,
    /// A code this build does not know, kept as sent.
    Unknown(String),
}

/// The control plane's own codes, with their wire names.
const OWN: [(ErrorCode, &str); 10] = [
    (ErrorCode::OutputSchemaViolation, "OUTPUT_SCHEMA_VIOLATION"),
    (ErrorCode::Cancelled, "CANCELLED"),
    (ErrorCode::ChainTargetMissing, "CHAIN_TARGET_MISSING"),
    (ErrorCode::ChainDepthExceeded, "CHAIN_DEPTH_EXCEEDED"),
    (ErrorCode::QueueFull, "QUEUE_FULL"),
    (ErrorCode::FunctionDisabled, "FUNCTION_DISABLED"),
    (ErrorCode::OomKilled, "OOM_KILLED"),
    (ErrorCode::ControlPlaneRestarted, "CONTROL_PLANE_RESTARTED"),
    (ErrorCode::NodeLost, "NODE_LOST"),
    (ErrorCode::Expired, "EXPIRED"),
];

impl ErrorCode {
    /// The wire name, e.g. `"TIMEOUT"`.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorCode::Watchdog(code) => code.as_str(),
            ErrorCode::Unknown(name) => name,
            own => OWN
                .iter()
                .find(|(code, _)| code == own)
                .map_or("UNKNOWN", |(_, name)| name),
        }
    }

    /// The code named `name`: a known one, else [`ErrorCode::Unknown`].
    pub fn parse(name: &str) -> ErrorCode {
        if let Ok(code) = name.parse::<WatchdogCode>() {
            return ErrorCode::Watchdog(code);
        }
        OWN.iter().find(|(_, own)| *own == name).map_or_else(
            || ErrorCode::Unknown(name.to_owned()),
            |(code, _)| code.clone(),
        )
    }
}

impl From<WatchdogCode> for ErrorCode {
    fn from(code: WatchdogCode) -> Self {
        ErrorCode::Watchdog(code)
    }
}

impl From<&str> for ErrorCode {
    fn from(name: &str) -> Self {
        ErrorCode::parse(name)
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Ok(ErrorCode::parse(&name))
    }
}

/// The codes by the names the rest of the control plane uses.
pub mod codes {
    use super::{ErrorCode, WatchdogCode};

    /// The output did not satisfy the function's `output_schema`.
    pub const OUTPUT_SCHEMA_VIOLATION: ErrorCode = ErrorCode::OutputSchemaViolation;
    /// A user cancelled the execution.
    pub const CANCELLED: ErrorCode = ErrorCode::Cancelled;
    /// The execution ran past its deadline.
    pub const TIMEOUT: ErrorCode = ErrorCode::Watchdog(WatchdogCode::Timeout);
    /// The instance died without reporting a result.
    pub const RUNTIME_CRASHED: ErrorCode = ErrorCode::Watchdog(WatchdogCode::RuntimeCrashed);
    /// The instance could not be started.
    pub const SPAWN_ERROR: ErrorCode = ErrorCode::Watchdog(WatchdogCode::SpawnError);
    /// A warm instance started but never became ready.
    pub const STARTUP_ERROR: ErrorCode = ErrorCode::Watchdog(WatchdogCode::StartupError);
    /// The function reported a failure.
    pub const FUNCTION_ERROR: ErrorCode = ErrorCode::Watchdog(WatchdogCode::FunctionError);
    /// The output cannot be kept: not JSON the control plane can hold (a number out of
    /// range, nesting too deep).
    pub const INVALID_OUTPUT: ErrorCode = ErrorCode::Watchdog(WatchdogCode::InvalidOutput);
    /// The input was refused (its schema, or unreadable).
    pub const INVALID_INPUT: ErrorCode = ErrorCode::Watchdog(WatchdogCode::InvalidInput);
    /// A chain's target function no longer exists.
    pub const CHAIN_TARGET_MISSING: ErrorCode = ErrorCode::ChainTargetMissing;
    /// A chain would have gone deeper than the depth cap.
    pub const CHAIN_DEPTH_EXCEEDED: ErrorCode = ErrorCode::ChainDepthExceeded;
    /// The target's queue was full.
    pub const QUEUE_FULL: ErrorCode = ErrorCode::QueueFull;
    /// A chained execution's target is disabled.
    pub const FUNCTION_DISABLED: ErrorCode = ErrorCode::FunctionDisabled;
    /// The instance ran out of its memory limit and was killed.
    pub const OOM_KILLED: ErrorCode = ErrorCode::OomKilled;
    /// The control plane stopped while the execution ran.
    pub const CONTROL_PLANE_RESTARTED: ErrorCode = ErrorCode::ControlPlaneRestarted;
    /// The node that ran the execution was lost.
    pub const NODE_LOST: ErrorCode = ErrorCode::NodeLost;
    /// It waited in the queue past its maximum age.
    pub const EXPIRED: ErrorCode = ErrorCode::Expired;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_round_trips_through_its_name() {
        let known = WatchdogCode::ALL
            .into_iter()
            .map(ErrorCode::Watchdog)
            .chain(OWN.iter().map(|(code, _)| code.clone()));
        for code in known {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn an_unknown_code_is_kept_as_sent() {
        let code: ErrorCode = serde_json::from_str("\"FROM_THE_FUTURE\"").unwrap();
        assert_eq!(code, ErrorCode::Unknown("FROM_THE_FUTURE".into()));
        assert_eq!(serde_json::to_string(&code).unwrap(), "\"FROM_THE_FUTURE\"");
        assert_eq!(code, "FROM_THE_FUTURE");
    }
}
