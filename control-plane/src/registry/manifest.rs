//! The function manifest: its fields, defaults and parsing from YAML or JSON. The
//! checks that turn a bad manifest into a list of readable problems are in
//! `manifest_checks.rs` (see [`problems`]).

use std::collections::BTreeMap;

use gantry_protocol::env;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::chain::{self, ChainSpec, TriggerSpec};
use super::limits::RateLimitSpec;
use super::secret_ref::SecretRef;

#[path = "manifest_checks.rs"]
mod checks;

pub use checks::{is_valid_env_name, is_valid_name, problems};

/// Longest accepted `resources.timeout_ms`: 15 minutes.
pub const MAX_TIMEOUT_MS: u64 = 15 * 60 * 1000;
/// `resources.timeout_ms` when the manifest has none.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// `concurrency.max_in_flight` when the manifest has none.
pub const DEFAULT_MAX_IN_FLIGHT: u32 = 32;
/// `concurrency.max_queue` when the manifest has none.
pub const DEFAULT_MAX_QUEUE: u32 = 1_000;
/// Largest accepted `concurrency.max_queue`.
pub const MAX_QUEUE_LIMIT: u32 = 10_000_000;

/// Environment variables Gantry sets itself; a manifest may not set them.
pub const RESERVED_ENV: &[&str] = &[
    env::EXECUTION_MODE,
    env::WATCHDOG_CMD,
    env::EXECUTION_ID,
    env::CALLBACK_URL,
    env::CALLBACK_TOKEN,
    env::INVOCATION_PAYLOAD,
    env::PAYLOAD_URL,
    env::TIMEOUT_MS,
    env::TRACE_ID,
    env::TRACEPARENT,
    env::TRACESTATE,
    env::RUNTIME_URL,
    env::HEALTH_URL,
    env::INPUT_FILE,
    env::OUTPUT_FILE,
    env::PORT,
    env::WARM_HOST,
    env::WARM_PORT,
    env::WARM_RUNTIME,
    env::WARM_CONCURRENCY,
    env::WARM_IDLE_TIMEOUT_MS,
    env::WARM_MAX_INVOCATIONS,
    env::WARM_TOKEN,
    env::RUN_AS,
    env::SECRET_FILES,
    env::SECRETS_DIR,
    env::CGROUP_PROCS,
    env::MAX_OUTPUT_BYTES,
    crate::runtime::process::OWNER_VAR,
    crate::runtime::process::INSTANCE_VAR,
];

/// How the watchdog talks to the function. Warm instances are asked for
/// with the `warm` section, not with a mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
pub enum Mode {
    /// An HTTP server that takes one POST per invocation.
    #[default]
    #[serde(alias = "http")]
    #[serde(rename = "HTTP")]
    Http,
    /// Payload on stdin, JSON result on stdout.
    #[serde(alias = "stdio")]
    #[serde(rename = "STDIO")]
    Stdio,
    /// Payload in INPUT_FILE, result in OUTPUT_FILE.
    #[serde(alias = "file")]
    #[serde(rename = "FILE")]
    File,
}

impl Mode {
    /// The value of the watchdog's EXECUTION_MODE.
    pub fn as_env(self) -> &'static str {
        match self {
            Mode::Http => "HTTP",
            Mode::Stdio => "STDIO",
            Mode::File => "FILE",
        }
    }
}

/// The user's command: a shell-quoted string or a list of arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum CommandSpec {
    /// `python3 handler.py`, parsed with shell-style quoting.
    Line(String),
    /// `["python3", "handler.py"]`.
    Args(Vec<String>),
}

impl CommandSpec {
    /// The command as one shell-quoted line (the watchdog's WATCHDOG_CMD).
    pub fn to_line(&self) -> String {
        match self {
            CommandSpec::Line(line) => line.clone(),
            CommandSpec::Args(args) => {
                shlex::try_join(args.iter().map(String::as_str)).unwrap_or_else(|_| args.join(" "))
            }
        }
    }
}

/// Warm-pool settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmSpec {
    /// Instances kept running even when idle.
    #[serde(default)]
    pub min_instances: u32,
    /// Most instances at once.
    #[serde(default = "default_max_instances")]
    pub max_instances: u32,
    /// Idle instances above `min_instances` stop after this long.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Recycle an instance after this many invocations (0 = never).
    #[serde(default)]
    pub max_invocations: u64,
    /// Invocations one instance takes at once.
    #[serde(default = "one")]
    pub concurrency_per_instance: u32,
}

impl Default for WarmSpec {
    /// The settings of an empty `warm: {}` section.
    fn default() -> Self {
        WarmSpec {
            min_instances: 0,
            max_instances: default_max_instances(),
            idle_timeout_ms: default_idle_timeout_ms(),
            max_invocations: 0,
            concurrency_per_instance: one(),
        }
    }
}

fn default_max_instances() -> u32 {
    4
}
fn default_idle_timeout_ms() -> u64 {
    300_000
}
fn one() -> u32 {
    1
}

/// Limits of one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// CPU limit in cores (0.5 = half a core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    /// Most processes (pids) at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u64>,
    /// Per-invocation timeout; [`DEFAULT_TIMEOUT_MS`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Retry policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Attempts in all, the first included (1 = no retry).
    #[serde(default = "one")]
    pub max_attempts: u32,
    /// Wait before the first retry.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Factor applied to the wait after each retry.
    #[serde(default = "default_multiplier")]
    pub multiplier: f64,
    /// Longest wait between attempts.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// Which failures retry: error codes (strings) and exit codes (numbers). Empty means
    /// every failure but a schema violation or a cancel.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<Value>,
}

fn default_initial_backoff_ms() -> u64 {
    1_000
}
fn default_multiplier() -> f64 {
    2.0
}
fn default_max_backoff_ms() -> u64 {
    60_000
}

/// Admission limits of one function.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencySpec {
    /// Executions running at once; [`DEFAULT_MAX_IN_FLIGHT`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_in_flight: Option<u32>,
    /// Executions waiting; past it, 429. [`DEFAULT_MAX_QUEUE`] when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue: Option<u32>,
}

/// A function definition as written by the user and stored as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FunctionSpec {
    /// Unique name: lowercase letters, digits and dashes, at most 63 characters.
    pub name: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Container image (docker runtime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Command the watchdog starts (process runtime; overrides the image's command).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandSpec>,
    /// Directory the command runs in (absolute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Extra environment of the function.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// How the watchdog talks to the function.
    #[serde(default)]
    pub mode: Mode,
    /// Instances kept running between calls (a warm pool); absent: one instance per call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm: Option<WarmSpec>,
    /// Limits.
    #[serde(default)]
    pub resources: Resources,
    /// JSON Schema every input must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_schema: Option<Value>,
    /// JSON Schema every output must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// Admission limits.
    #[serde(default)]
    pub concurrency: ConcurrencySpec,
    /// How fast new executions are admitted (a token bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// A due execution that waited longer than this to start ends `EXPIRED`; the
    /// server's `--max-queue-age-ms` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_queue_age_ms: Option<u64>,
    /// Functions run after this one finishes.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "chain::deserialize_chains"
    )]
    #[schema(value_type = Vec<Object>)]
    pub chains: Vec<ChainSpec>,
    /// Event types that start this function.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "chain::deserialize_triggers"
    )]
    #[schema(value_type = Vec<Object>)]
    pub triggers: Vec<TriggerSpec>,
    /// Cron schedules that start this function.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<crate::schedule::ScheduleSpec>,
    /// Environment variable ← stored secret (its value, or a file holding it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, SecretRef>,
    /// How long its finished executions are kept (`3d`, `12h`); the server's
    /// `--retention` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// Where its final results are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destinations: Option<crate::destinations::DestinationsSpec>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// A disabled function rejects invocations.
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl FunctionSpec {
    /// Per-invocation timeout.
    pub fn timeout_ms(&self) -> u64 {
        self.resources.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS)
    }

    /// Executions running at once.
    pub fn max_in_flight(&self) -> u32 {
        self.concurrency
            .max_in_flight
            .unwrap_or(DEFAULT_MAX_IN_FLIGHT)
    }

    /// Executions waiting at once.
    pub fn max_queue(&self) -> u32 {
        self.concurrency.max_queue.unwrap_or(DEFAULT_MAX_QUEUE)
    }

    /// How long its finished executions are kept, when the manifest says.
    pub fn retention_duration(&self) -> Option<std::time::Duration> {
        self.retention
            .as_deref()
            .and_then(|text| crate::retention::parse_duration(text).ok())
    }

    /// Attempts allowed by the retry policy (1 without one).
    pub fn max_attempts(&self) -> u32 {
        self.retry.as_ref().map_or(1, |retry| retry.max_attempts)
    }
}

/// Parses a manifest written as JSON or YAML (JSON is tried first when the text starts
/// with `{`). The error names the field and, for YAML, the line.
pub fn parse_manifest(text: &str) -> Result<FunctionSpec, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|err| format!("invalid manifest: {err}"))
    } else {
        serde_yaml_ng::from_str(text).map_err(|err| format!("invalid manifest: {err}"))
    }
}

/// Parses a manifest the API received as JSON. serde's message for a wrong type does not
/// say where it is (`invalid type: string "fast", expected u64`), so the top-level field
/// holding the problem is put in front (`resources: invalid type: …`).
pub fn from_json(manifest: &Value) -> Result<FunctionSpec, String> {
    let kind = match manifest {
        Value::Object(_) => None,
        Value::Array(_) => Some("an array"),
        Value::String(_) => Some("a string"),
        Value::Number(_) => Some("a number"),
        Value::Bool(_) => Some("a boolean"),
        Value::Null => Some("empty"),
    };
    if let Some(kind) = kind {
        return Err(format!(
            "a function definition is a JSON object with at least `name` and `command` (or `image`); the body is {kind}"
        ));
    }
    let message = match FunctionSpec::deserialize(manifest) {
        Ok(spec) => return Ok(spec),
        Err(err) => err.to_string(),
    };
    let Some(fields) = manifest.as_object() else {
        return Err(message);
    };
    for (key, value) in fields {
        // The field alone, beside a valid name, fails the same way if the problem is in it.
        let mut probe = serde_json::Map::new();
        probe.insert("name".into(), Value::from("probe"));
        probe.insert(key.clone(), value.clone());
        let same = FunctionSpec::deserialize(&Value::Object(probe))
            .err()
            .is_some_and(|err| err.to_string() == message);
        if same {
            // Messages from chains and triggers already start with their place.
            let placed = message
                .strip_prefix(key.as_str())
                .is_some_and(|rest| rest.starts_with(['[', '.', ':']));
            return Err(if placed || message.contains(&format!("`{key}`")) {
                message
            } else {
                format!("{key}: {message}")
            });
        }
    }
    Err(message)
}

/// A manifest value as JSON (for sending to the API), from JSON or YAML text.
pub fn manifest_to_json(text: &str) -> Result<Value, String> {
    if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|err| format!("invalid JSON: {err}"))
    } else {
        serde_yaml_ng::from_str(text).map_err(|err| format!("invalid YAML: {err}"))
    }
}

#[cfg(test)]
#[path = "manifest_tests.rs"]
mod tests;
