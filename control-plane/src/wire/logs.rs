//! `GET /v1/executions/{id}/logs`: its query, the page of lines, and the data of the
//! follow stream's `end` event (its `log` events carry one [`LogLine`] each).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{ExecutionStatus, LogLine};

/// The query of the logs route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Stream the lines as server-sent events until the execution finishes.
    #[serde(default)]
    pub follow: bool,
    /// Only lines after this sequence number.
    #[serde(default)]
    pub after: u64,
}

/// The captured lines of an execution (without `follow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogPage {
    /// The execution.
    pub execution_id: Uuid,
    /// Its lines, oldest first.
    pub lines: Vec<LogLine>,
}

/// The data of the `end` event that closes a followed log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogEnd {
    /// The execution's final status.
    pub status: ExecutionStatus,
}

/// What `GET /v1/functions/{name}/logs` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FunctionLogsQuery {
    /// The lines of its own this warm instance wrote (lines no execution claims).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// Stream every line the function's executions write from now on, as server-sent
    /// events.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follow: bool,
}

/// A warm instance's own latest lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceLogPage {
    /// The instance.
    pub instance_id: String,
    /// Its lines, oldest first.
    pub lines: Vec<LogLine>,
}
