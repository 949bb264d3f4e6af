//! JSON Schema checks: schemas are compiled once per function version, inputs are checked
//! before anything starts and outputs when an execution completes.

use serde_json::Value;

/// Most violations listed in one answer.
const MAX_VIOLATIONS: usize = 20;

/// A compiled JSON Schema.
#[derive(Debug)]
pub struct CompiledSchema {
    validator: jsonschema::Validator,
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
            let path = err.instance_path.as_str();
            let path = if path.is_empty() { "/" } else { path };
            format!("{field} is not a valid JSON Schema: at {path}: {err}")
        })?;
        jsonschema::validator_for(schema)
            .map(|validator| CompiledSchema { validator })
            .map_err(|err| format!("{field} is not a valid JSON Schema: {err}"))
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
                let path = err.instance_path.as_str();
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
}
