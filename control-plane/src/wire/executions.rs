//! `/v1/executions` and the invoke routes: the listing's query and pages, the answers
//! of `:invoke`, `:enqueue` and `:retry`, and chain trees. A single execution is
//! answered as the domain's [`Execution`].

use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use uuid::Uuid;

pub use crate::dispatch::{ChainNode, ChainPage};
use crate::domain::{Execution, ExecutionError, ExecutionStatus};

/// The query of `GET /v1/executions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExecutionQuery {
    /// Only this function's executions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// Comma-separated statuses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Comma-separated triggers: `api`, `event`, `chain`, `retry`, `schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// Created at or after: RFC 3339 or milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Created before: RFC 3339 or milliseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Only dead-lettered executions (or only others, with `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<bool>,
    /// Page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// A `nextCursor` of an earlier page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// `input`, `output` or both (comma-separated): the payloads to answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<String>,
}

/// The answer of `GET /v1/executions`: newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionPage {
    /// This page's executions.
    pub executions: Vec<ListedExecution>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<Uuid>,
}

/// One execution of a listing: the record without its `input` and `output` unless the
/// query's `include` asked for them, as payloads may be large.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedExecution {
    /// The record (its input `null` when the listing left it out).
    pub record: Execution,
    /// Whether the listing carries the input.
    pub with_input: bool,
    /// Whether the listing carries the output.
    pub with_output: bool,
}

impl Serialize for ListedExecution {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut value = serde_json::to_value(&self.record).map_err(S::Error::custom)?;
        if let Some(fields) = value.as_object_mut() {
            if !self.with_input {
                fields.remove("input");
            }
            if !self.with_output {
                fields.remove("output");
            }
        }
        value.serialize(serializer)
    }
}

/// The record's schema, with `input` and `output` no longer required.
impl utoipa::PartialSchema for ListedExecution {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::{schema::Schema, RefOr};
        let mut schema = <Execution as utoipa::PartialSchema>::schema();
        if let RefOr::T(Schema::Object(object)) = &mut schema {
            object
                .required
                .retain(|field| field != "input" && field != "output");
            object.description =
                Some("An execution; `input` and `output` only with `include`.".to_owned());
        }
        schema
    }
}

impl utoipa::ToSchema for ListedExecution {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        <Execution as utoipa::ToSchema>::schemas(schemas);
    }
}

impl<'de> Deserialize<'de> for ListedExecution {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut fields = serde_json::Map::deserialize(deserializer)?;
        let with_input = fields.contains_key("input");
        let with_output = fields.contains_key("output");
        fields.entry("input").or_insert(Value::Null);
        let record = serde_json::from_value(Value::Object(fields)).map_err(D::Error::custom)?;
        Ok(ListedExecution {
            record,
            with_input,
            with_output,
        })
    }
}

/// The answer of `:enqueue` (202): the execution is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// The new execution.
    pub execution_id: Uuid,
    /// Its status (`queued`, or further along for a repeated idempotency key).
    pub status: ExecutionStatus,
}

/// The answer of `:invoke` once the execution finished: 200 for success, 502 for an
/// error, 504 for a timeout, 409 when cancelled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvokeAnswer {
    /// The execution.
    pub execution_id: Uuid,
    /// Its final status.
    pub status: ExecutionStatus,
    /// The function's output (the user's JSON), on success.
    pub output: Option<Value>,
    /// Why it failed.
    pub error: Option<ExecutionError>,
}

impl From<&Execution> for InvokeAnswer {
    fn from(execution: &Execution) -> InvokeAnswer {
        InvokeAnswer {
            execution_id: execution.id,
            status: execution.status,
            output: execution.output.clone(),
            error: execution.error.clone(),
        }
    }
}

/// The answer of `POST /v1/executions/{id}:retry` (202).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetryAnswer {
    /// The new execution.
    pub execution_id: Uuid,
    /// Its status.
    pub status: ExecutionStatus,
    /// The failed execution it re-drives.
    pub retry_of: Uuid,
}

/// The answer of the watchdog's `POST /v1/internal/executions/{id}:complete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CompletionAnswer {
    /// `false` when the execution was already final: a repeated or late report
    /// changes nothing.
    pub applied: bool,
}

/// The query of `GET /v1/executions/{id}/chain`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChainQuery {
    /// Members per page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// A `nextCursor` of an earlier page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> Value {
        json!({
            "id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "function": "echo", "version": 3,
            "status": "success", "input": {"a": 1}, "output": [2], "error": null,
            "attempt": 1, "parentId": null, "rootId": null, "depth": 0, "trigger": "api",
            "traceId": null, "idempotencyKey": null, "timeoutMs": 30000,
            "createdAt": "2025-01-02T03:04:05Z", "startedAt": null, "finishedAt": null,
            "durationMs": 12, "coldStart": true, "instanceId": null, "exitCode": null,
            "deadLetter": false
        })
    }

    #[test]
    fn a_listing_leaves_out_the_payloads_unless_asked() {
        let record: Execution = serde_json::from_value(record()).unwrap();
        for (with_input, with_output) in [(false, false), (true, false), (false, true)] {
            let listed = ListedExecution {
                record: record.clone(),
                with_input,
                with_output,
            };
            let json = serde_json::to_value(&listed).unwrap();
            let fields = json.as_object().unwrap();
            assert_eq!(fields.contains_key("input"), with_input);
            assert_eq!(fields.contains_key("output"), with_output);
            assert_eq!(fields["function"], "echo");
            let back: ListedExecution = serde_json::from_value(json).unwrap();
            assert_eq!(
                (back.with_input, back.with_output),
                (with_input, with_output)
            );
            assert_eq!(back.record.id, record.id);
        }
    }

    #[test]
    fn fields_from_a_newer_server_are_ignored() {
        let mut listed = record();
        listed["fromTheFuture"] = json!({"x": 1});
        listed.as_object_mut().unwrap().remove("input");
        let page: ExecutionPage = serde_json::from_value(json!({
            "executions": [listed], "nextCursor": null, "total": 1
        }))
        .unwrap();
        assert_eq!(page.executions[0].record.input, Value::Null);
        assert_eq!(page.executions[0].record.output, Some(json!([2])));
        let answer: InvokeAnswer = serde_json::from_value(json!({
            "executionId": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "status": "error",
            "output": null, "error": {"code": "NEW_CODE", "message": "m"}, "extra": 1
        }))
        .unwrap();
        assert_eq!(answer.error.unwrap().code, "NEW_CODE");
    }
}
