//! Why an execution failed: one code per kind of failure, identical in every mode.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The reason an execution failed. Serialized as its `SCREAMING_SNAKE_CASE` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The function's process could not be started (missing executable, permissions).
    SpawnError,
    /// An HTTP runtime did not become healthy in time, or exited before it did.
    StartupError,
    /// The function reported failure: non-zero exit, or a non-2xx answer from its runtime.
    FunctionError,
    /// The invocation ran past its timeout; its whole process group was stopped.
    Timeout,
    /// The output was larger than `MAX_OUTPUT_BYTES`.
    OutputTooLarge,
    /// The output was not JSON (or missing).
    InvalidOutput,
    /// The function's process died (signal, or closed the connection) mid-invocation.
    RuntimeCrashed,
    /// The input could not be read: `INVOCATION_PAYLOAD` is not JSON, or `PAYLOAD_URL` failed.
    InvalidInput,
}

impl ErrorCode {
    /// Every code, in documentation order.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::SpawnError,
        ErrorCode::StartupError,
        ErrorCode::FunctionError,
        ErrorCode::Timeout,
        ErrorCode::OutputTooLarge,
        ErrorCode::InvalidOutput,
        ErrorCode::RuntimeCrashed,
        ErrorCode::InvalidInput,
    ];

    /// The wire name, e.g. `"SPAWN_ERROR"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::SpawnError => "SPAWN_ERROR",
            ErrorCode::StartupError => "STARTUP_ERROR",
            ErrorCode::FunctionError => "FUNCTION_ERROR",
            ErrorCode::Timeout => "TIMEOUT",
            ErrorCode::OutputTooLarge => "OUTPUT_TOO_LARGE",
            ErrorCode::InvalidOutput => "INVALID_OUTPUT",
            ErrorCode::RuntimeCrashed => "RUNTIME_CRASHED",
            ErrorCode::InvalidInput => "INVALID_INPUT",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that names no known [`ErrorCode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownErrorCode(pub String);

impl fmt::Display for UnknownErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown error code {:?}", self.0)
    }
}

impl std::error::Error for UnknownErrorCode {}

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ErrorCode::ALL
            .into_iter()
            .find(|code| code.as_str() == s)
            .ok_or_else(|| UnknownErrorCode(s.to_owned()))
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
        name.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_its_name() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
    }

    #[test]
    fn unknown_code_is_a_deserialization_error() {
        let err = serde_json::from_str::<ErrorCode>("\"NOPE\"").unwrap_err();
        assert!(
            err.to_string().contains("unknown error code \"NOPE\""),
            "{err}"
        );
    }
}
