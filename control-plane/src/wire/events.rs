//! `POST /v1/events`: the event published and the functions it started or not.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use crate::dispatch::EventTarget;

/// The body of `POST /v1/events`. `D` is the data: any JSON (`Value` on the server; the
/// CLI sends the user's text as written, so large numbers keep their digits).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRequest<D = Value> {
    /// The event type the functions' triggers match.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The input of every function it starts.
    #[serde(default)]
    #[schema(value_type = Value)]
    pub data: D,
}

/// The answer of `POST /v1/events` (202).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventAnswer {
    /// The event type, trimmed.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The functions that got an execution.
    pub executions: Vec<EventTarget>,
    /// The functions with a matching trigger that refused the event, and why.
    pub refused: Vec<EventTarget>,
}
