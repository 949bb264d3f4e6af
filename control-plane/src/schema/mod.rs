//! JSON Schema checks: schemas are bounded and compiled once per function version
//! ([`bounds`]); inputs are checked before anything starts and outputs when an execution
//! completes, on the blocking pool, a few at a time and within a time limit, so a costly
//! check never holds the async workers.

pub mod bounds;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;

/// Most violations listed in one answer.
const MAX_VIOLATIONS: usize = 20;
/// Longest one check may take, waiting for its turn included.
pub const CHECK_LIMIT: Duration = Duration::from_secs(1);
/// Checks running at once; the others wait (within [`CHECK_LIMIT`]).
const CONCURRENT_CHECKS: usize = 4;

/// A check that did not finish within [`CHECK_LIMIT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("checking against the schema took longer than {} ms", CHECK_LIMIT.as_millis())]
pub struct CheckTooSlow;

/// A compiled JSON Schema.
#[derive(Debug, Clone)]
pub struct CompiledSchema {
    validator: Arc<jsonschema::Validator>,
}

fn check_permits() -> &'static Arc<Semaphore> {
    static PERMITS: std::sync::OnceLock<Arc<Semaphore>> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| Arc::new(Semaphore::new(CONCURRENT_CHECKS)))
}

impl CompiledSchema {
    /// Compiles `schema`, or says why it is not a valid JSON Schema. `field` names the
    /// manifest field in the message (`input_schema`, `output_schema`).
    pub fn compile(field: &str, schema: &Value) -> Result<CompiledSchema, String> {
        if !(schema.is_object() || schema.is_boolean()) {
            return Err(format!("{field} must be a JSON Schema object"));
        }
        jsonschema::meta::validate(schema).map_err(|err| {
            // Name where in the schema the problem is: `"nope" is not valid …` alone
            // does not say which keyword holds "nope".
            let path = err.instance_path().as_str();
            let path = if path.is_empty() { "/" } else { path };
            format!("{field} is not a valid JSON Schema: at {path}: {err}")
        })?;
        bounds::check(field, schema)?;
        jsonschema::options()
            // `pattern`s run on a linear-time engine: no backtracking blow-up.
            .with_pattern_options(jsonschema::PatternOptions::regex().size_limit(1 << 20))
            .build(schema)
            .map(|validator| CompiledSchema {
                validator: Arc::new(validator),
            })
            .map_err(|err| format!("{field} is not a valid JSON Schema: {err}"))
    }

    /// [`CompiledSchema::violations`] of `instance`, off the async workers and within
    /// [`CHECK_LIMIT`].
    pub async fn check(&self, instance: &Value) -> Result<Vec<String>, CheckTooSlow> {
        self.check_within(instance, CHECK_LIMIT).await
    }

    /// [`CompiledSchema::check`] within `limit`.
    pub async fn check_within(
        &self,
        instance: &Value,
        limit: Duration,
    ) -> Result<Vec<String>, CheckTooSlow> {
        let limit = tokio::time::Instant::now() + limit;
        let permit = tokio::time::timeout_at(limit, check_permits().clone().acquire_owned())
            .await
            .map_err(|_| CheckTooSlow)?
            .map_err(|_| CheckTooSlow)?;
        let (schema, instance) = (self.clone(), instance.clone());
        let task = tokio::task::spawn_blocking(move || {
            let violations = schema.violations(&instance);
            drop(permit);
            violations
        });
        match tokio::time::timeout_at(limit, task).await {
            Ok(Ok(violations)) => Ok(violations),
            Ok(Err(err)) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            _ => Err(CheckTooSlow),
        }
    }

    /// Every violation of the schema by `instance` (at most 20), each naming where it is
    /// (`/items/0: "x" is not of type "integer"`); empty when it conforms.
    pub fn violations(&self, instance: &Value) -> Vec<String> {
        if self.validator.is_valid(instance) {
            return Vec::new();
        }
        self.validator
            .iter_errors(instance)
            .take(MAX_VIOLATIONS)
            .map(|err| {
                let path = err.instance_path().as_str();
                let path = if path.is_empty() { "/" } else { path };
                format!("{path}: {err}")
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejects_what_is_not_a_schema() {
        let err = CompiledSchema::compile("input_schema", &json!({"type": "nope"})).unwrap_err();
        assert!(
            err.starts_with("input_schema is not a valid JSON Schema: at /type: "),
            "{err}"
        );
        let err = CompiledSchema::compile("input_schema", &json!(3)).unwrap_err();
        assert!(err.contains("must be a JSON Schema object"), "{err}");
    }

    #[test]
    fn lists_violations_with_their_paths() {
        let schema = json!({
            "type": "object",
            "required": ["n"],
            "properties": {"n": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}
        });
        let compiled = CompiledSchema::compile("input_schema", &schema).unwrap();
        assert!(compiled
            .violations(&json!({"n": 1, "tags": ["a"]}))
            .is_empty());
        let violations = compiled.violations(&json!({"n": "one", "tags": ["a", 2]}));
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert!(
            violations.iter().any(|v| v.starts_with("/n: ")),
            "{violations:?}"
        );
        assert!(
            violations.iter().any(|v| v.starts_with("/tags/1: ")),
            "{violations:?}"
        );
        let missing = compiled.violations(&json!({}));
        assert!(
            missing[0].starts_with("/: ") && missing[0].contains("\"n\""),
            "{missing:?}"
        );
    }

    #[tokio::test]
    async fn checks_run_off_the_workers_and_give_up_at_their_limit() {
        let schema = json!({"type": "array", "uniqueItems": true, "items": {"type": "object"}});
        let compiled = CompiledSchema::compile("input_schema", &schema).unwrap();
        assert!(compiled.check(&json!([{"a": 1}])).await.unwrap().is_empty());
        let large: Vec<Value> = (0..200_000)
            .map(|n| json!({"n": n, "pad": "x".repeat(20)}))
            .collect();
        let slow = compiled
            .check_within(&Value::Array(large), Duration::from_micros(1))
            .await;
        assert_eq!(slow, Err(CheckTooSlow));
    }

    #[test]
    fn patterns_run_in_linear_time() {
        let schema = json!({"type": "string", "pattern": "^(a+)+$"});
        let compiled = CompiledSchema::compile("input_schema", &schema).unwrap();
        let evil = format!("{}!", "a".repeat(100_000));
        assert_eq!(compiled.violations(&json!(evil)).len(), 1);
        // The engine is the linear one: it has no backreferences.
        let back = json!({"type": "string", "pattern": "(a)\\1"});
        let err = CompiledSchema::compile("input_schema", &back).unwrap_err();
        assert!(err.contains("input_schema"), "{err}");
    }
}
