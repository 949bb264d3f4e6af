//! `/v1/functions`: a function version as answered (with its deploy warnings, whether a
//! replace changed it, and its warm pool), the lists of them, and `:scale`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::pool::{InstanceState, InstanceStatus, PoolStatus};
use crate::registry::manifest::CommandSpec;
use crate::registry::{FunctionSpec, FunctionVersion};

/// One version of a function as the API answers it. `S` is its spec: the server's
/// [`FunctionSpec`]; a client reads it as the JSON sent (`serde_json::Value`), because
/// a newer server's spec may hold fields this build's `FunctionSpec` refuses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionAnswer<S = FunctionSpec> {
    /// The function's name.
    pub name: String,
    /// 1 for the first definition, then one more per change.
    pub version: u32,
    /// `sha256:` and the hex SHA-256 of the canonical JSON of `spec`.
    pub content_hash: String,
    /// The definition.
    pub spec: S,
    /// When this version was stored.
    pub created_at: DateTime<Utc>,
    /// Settings of the spec the server's runtime does not apply (create, replace, scale).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Whether a replace or scale made a new version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<bool>,
    /// The warm pool, for a function that has one (get, scale).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolStatus>,
    /// Its schedules with their next fire times (get).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleStatus>,
}

/// One schedule of a function as `GET /v1/functions/{name}` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleStatus {
    /// The cron expression.
    pub cron: String,
    /// The time zone it is read in.
    pub timezone: String,
    /// Whether missed ticks are each fired after downtime.
    pub catch_up: bool,
    /// The schedule's key (in the idempotency key of the executions it starts).
    pub key: String,
    /// The last tick fired or passed over; absent until a node's scheduler took it up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tick: Option<DateTime<Utc>>,
    /// Its next fire times.
    pub next: Vec<DateTime<Utc>>,
}

impl From<FunctionVersion> for FunctionAnswer {
    fn from(version: FunctionVersion) -> FunctionAnswer {
        FunctionAnswer {
            name: version.name,
            version: version.version,
            content_hash: version.content_hash,
            spec: version.spec,
            created_at: version.created_at,
            warnings: Vec::new(),
            changed: None,
            pool: None,
            schedules: Vec::new(),
        }
    }
}

/// The answer of `GET /v1/functions`: every function's current version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionList<S = FunctionSpec> {
    /// The functions, by name.
    pub functions: Vec<FunctionAnswer<S>>,
}

/// The answer of `GET /v1/functions/{name}/versions`: oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VersionList<S = FunctionSpec> {
    /// Every version.
    pub versions: Vec<FunctionAnswer<S>>,
}

/// The body of `POST /v1/functions/{name}:scale`: the warm pool's new bounds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    /// New `warm.min_instances`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_instances: Option<u32>,
    /// New `warm.max_instances`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_instances: Option<u32>,
}

/// The parts of a spec a client shows in its tables, read one by one from the spec's
/// JSON ([`SpecSummary::of`]) so that fields it does not know, or a part of a shape it
/// does not expect, never hide the rest; every part is optional, as a spec may leave
/// it out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecSummary {
    /// `HTTP`, `STDIO` or `FILE`; absent means `HTTP`.
    pub mode: Option<String>,
    /// The command (process runtime).
    pub command: Option<CommandSpec>,
    /// The image (docker runtime).
    pub image: Option<String>,
    /// `false` for a disabled function.
    pub enabled: Option<bool>,
    /// The warm pool's bounds.
    pub warm: Option<WarmLimits>,
}

/// The bounds of a spec's `warm` section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct WarmLimits {
    /// `min_instances`.
    #[serde(default)]
    pub min_instances: Option<u32>,
    /// `max_instances`.
    #[serde(default)]
    pub max_instances: Option<u32>,
}

impl SpecSummary {
    /// The summary of `spec`, a function spec as JSON; what does not fit is left out.
    pub fn of(spec: &serde_json::Value) -> SpecSummary {
        SpecSummary {
            mode: field(spec, "mode"),
            command: field(spec, "command"),
            image: field(spec, "image"),
            enabled: field(spec, "enabled"),
            warm: field(spec, "warm"),
        }
    }
}

/// The field `key` of `object` as a `T`, or `None` when it is absent or of another shape.
fn field<T: serde::de::DeserializeOwned>(object: &serde_json::Value, key: &str) -> Option<T> {
    object
        .as_object()?
        .get(key)
        .and_then(|value| T::deserialize(value).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn version() -> FunctionVersion {
        serde_json::from_value(json!({
            "name": "echo", "version": 2, "contentHash": "sha256:ab12",
            "spec": {"name": "echo", "command": ["cat"], "mode": "STDIO",
                     "warm": {"min_instances": 1}},
            "createdAt": "2025-03-04T05:06:07.890Z"
        }))
        .unwrap()
    }

    #[test]
    fn a_plain_answer_is_the_stored_version() {
        let version = version();
        let answer = FunctionAnswer::from(version.clone());
        assert_eq!(
            serde_json::to_value(&answer).unwrap(),
            serde_json::to_value(&version).unwrap()
        );
        let mut answer = answer;
        answer.warnings = vec!["resources.cpu is not applied".into()];
        answer.changed = Some(false);
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["warnings"][0], "resources.cpu is not applied");
        assert_eq!(json["changed"], false);
        assert!(json.get("pool").is_none());
    }

    #[test]
    fn a_client_keeps_a_newer_servers_spec_as_sent() {
        let mut json = serde_json::to_value(FunctionAnswer::from(version())).unwrap();
        json["spec"]["from_the_future"] = json!(true);
        json["fromTheFuture"] = json!(1);
        assert!(serde_json::from_value::<FunctionAnswer>(json.clone()).is_err());
        let answer: FunctionAnswer<Value> = serde_json::from_value(json).unwrap();
        assert_eq!(answer.spec["from_the_future"], true);
        let summary = SpecSummary::of(&answer.spec);
        assert_eq!(summary.mode.as_deref(), Some("STDIO"));
        assert_eq!(summary.command.map(|c| c.to_line()).as_deref(), Some("cat"));
        assert_eq!(summary.warm.and_then(|w| w.min_instances), Some(1));
        assert_eq!(summary.enabled, Some(true));
    }

    #[test]
    fn a_summary_skips_parts_of_an_unexpected_shape() {
        let summary = SpecSummary::of(&json!({"mode": 3, "image": "x:1", "enabled": false}));
        assert_eq!(summary.mode, None);
        assert_eq!(summary.image.as_deref(), Some("x:1"));
        assert_eq!(summary.enabled, Some(false));
        assert_eq!(SpecSummary::of(&Value::Null), SpecSummary::default());
    }

    #[test]
    fn a_scale_request_sends_only_the_bounds_given() {
        let request = ScaleRequest {
            min_instances: Some(0),
            max_instances: None,
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"min_instances":0}"#
        );
        let refused = serde_json::from_value::<ScaleRequest>(json!({"min": 1}));
        assert!(refused.is_err());
    }
}
