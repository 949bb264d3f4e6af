//! What a schema may cost. A schema is checked against every input or output, so one a
//! deployer writes must not be able to make a check run forever or blow up: references
//! must be local (`#/...`) and must not loop, the schema is at most 64 KiB, and the
//! number of subschemas a check can visit, once every reference is expanded in place,
//! is bounded (nested references multiply: 30 levels of `allOf` over two references
//! are 2^30 subschemas).

use std::collections::{HashMap, HashSet};

use percent_encoding::percent_decode_str;
use serde_json::Value;

/// Largest schema, serialized.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;
/// Most subschemas one check may visit with every reference expanded.
pub const MAX_EXPANDED_NODES: u64 = 20_000;
/// Deepest nesting of a schema.
pub const MAX_DEPTH: usize = 64;

/// Keywords whose targets are resolved at validation time by name or by scope; they are
/// refused because their cost cannot be bounded here.
const DYNAMIC_KEYWORDS: &[&str] = &["$dynamicRef", "$recursiveRef"];

/// Checks `schema` (the value of manifest field `field`); the error names the place.
pub fn check(field: &str, schema: &Value) -> Result<(), String> {
    let size = serde_json::to_vec(schema)
        .map(|bytes| bytes.len())
        .unwrap_or(usize::MAX);
    if size > MAX_SCHEMA_BYTES {
        return Err(format!(
            "{field} is {size} bytes; a schema is at most {MAX_SCHEMA_BYTES} bytes"
        ));
    }
    let mut walk = Walk {
        field,
        root: schema,
        cost: HashMap::new(),
        open: HashSet::new(),
    };
    let expanded = walk.node("", schema, 0)?;
    if expanded > MAX_EXPANDED_NODES {
        return Err(format!(
            "{field} would visit more than {MAX_EXPANDED_NODES} subschemas on every check once its references are expanded (nested references multiply); simplify it"
        ));
    }
    Ok(())
}

/// The expansion of one schema: the cost of each pointer, memoized, and the pointers
/// being expanded (a reference back to one of them is a cycle).
struct Walk<'a> {
    field: &'a str,
    root: &'a Value,
    cost: HashMap<String, u64>,
    open: HashSet<String>,
}

impl<'a> Walk<'a> {
    /// The number of nodes under `value` (at `pointer`), references expanded.
    fn node(&mut self, pointer: &str, value: &'a Value, depth: usize) -> Result<u64, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "{} nests deeper than {MAX_DEPTH} levels (references followed) at {}",
                self.field,
                place(pointer)
            ));
        }
        if let Some(cost) = self.cost.get(pointer) {
            return Ok(*cost);
        }
        let mut cost: u64 = 1;
        match value {
            Value::Object(map) => {
                for keyword in DYNAMIC_KEYWORDS {
                    if map.contains_key(*keyword) {
                        return Err(format!(
                            "{}: {keyword} at {} is not supported; use a local $ref",
                            self.field,
                            place(pointer)
                        ));
                    }
                }
                if let Some(reference) = map.get("$ref") {
                    cost = cost.saturating_add(self.reference(pointer, reference, depth)?);
                }
                for (key, child) in map {
                    if key == "$ref" {
                        continue;
                    }
                    let child_pointer = format!("{pointer}/{}", escape(key));
                    cost = cost.saturating_add(self.node(&child_pointer, child, depth + 1)?);
                }
            }
            Value::Array(items) => {
                for (index, child) in items.iter().enumerate() {
                    let child_pointer = format!("{pointer}/{index}");
                    cost = cost.saturating_add(self.node(&child_pointer, child, depth + 1)?);
                }
            }
            _ => {}
        }
        self.cost.insert(pointer.to_owned(), cost);
        Ok(cost)
    }

    /// The cost of what the `$ref` at `pointer` names.
    fn reference(&mut self, pointer: &str, reference: &Value, depth: usize) -> Result<u64, String> {
        let at = place(&format!("{pointer}/$ref"));
        let Some(text) = reference.as_str() else {
            return Err(format!("{}: $ref at {at} must be a string", self.field));
        };
        let Some(fragment) = text.strip_prefix('#') else {
            return Err(format!(
                "{}: $ref {text:?} at {at} is not local; only references into the schema itself (#/...) are allowed",
                self.field
            ));
        };
        if !(fragment.is_empty() || fragment.starts_with('/')) {
            return Err(format!(
                "{}: $ref {text:?} at {at} names an anchor; use a JSON pointer (#/...)",
                self.field
            ));
        }
        let target_pointer = percent_decode_str(fragment)
            .decode_utf8_lossy()
            .into_owned();
        let Some(target) = self.root.pointer(&target_pointer) else {
            return Err(format!(
                "{}: $ref {text:?} at {at} points at nothing in the schema",
                self.field
            ));
        };
        if !self.open.insert(pointer.to_owned()) {
            // Already expanding this node: the reference led back to it.
            return Err(self.cycle(text, &at));
        }
        // A target that contains the referring node loops too: expanding it reaches the
        // same $ref again.
        let inside =
            pointer == target_pointer || pointer.starts_with(&format!("{target_pointer}/"));
        let result = if inside || self.open.contains(&target_pointer) {
            Err(self.cycle(text, &at))
        } else {
            self.node(&target_pointer, target, depth + 1)
        };
        self.open.remove(pointer);
        result
    }

    fn cycle(&self, text: &str, at: &str) -> String {
        format!(
            "{}: $ref {text:?} at {at} leads back to itself (a reference cycle); recursive schemas are not accepted",
            self.field
        )
    }
}

/// A JSON pointer for messages (`/` for the root).
fn place(pointer: &str) -> String {
    if pointer.is_empty() {
        "/".to_owned()
    } else {
        pointer.to_owned()
    }
}

/// A key as a JSON pointer token.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problem(schema: Value) -> String {
        check("input_schema", &schema).unwrap_err()
    }

    #[test]
    fn ordinary_schemas_pass() {
        let schema = json!({
            "$defs": {"id": {"type": "integer", "minimum": 1}, "ids": {"type": "array", "items": {"$ref": "#/$defs/id"}}},
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/ids"}, "b": {"$ref": "#/$defs/id"}, "c~/d": {"type": "string"}},
            "required": ["a"]
        });
        check("input_schema", &schema).unwrap();
        check("input_schema", &json!(true)).unwrap();
        check("input_schema", &json!({"$ref": "#"})).unwrap_err();
    }

    #[test]
    fn reference_cycles_are_refused_with_their_place() {
        let cyclic = json!({"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"});
        let message = problem(cyclic);
        assert!(message.contains("reference cycle"), "{message}");
        assert!(message.contains("/$defs/"), "{message}");
        let tree = json!({"$defs": {"node": {"type": "object", "properties": {"children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}}}, "$ref": "#/$defs/node"});
        assert!(problem(tree).contains("reference cycle"));
        assert!(problem(json!({"properties": {"self": {"$ref": "#"}}})).contains("cycle"));
    }

    #[test]
    fn exponential_expansion_is_refused() {
        let mut defs = serde_json::Map::new();
        defs.insert("d0".into(), json!({"type": "string"}));
        // 2^16 subschemas, yet only 48 levels deep.
        for level in 1..=16 {
            let below = format!("#/$defs/d{}", level - 1);
            defs.insert(
                format!("d{level}"),
                json!({"allOf": [{"$ref": below}, {"$ref": below}]}),
            );
        }
        let schema = json!({"$defs": defs.clone(), "$ref": "#/$defs/d16"});
        let message = problem(schema);
        assert!(message.contains("subschemas"), "{message}");
        // A chain of references is fine while it stays shallow.
        let schema = json!({"$defs": {"a": {"not": {"$ref": "#/$defs/b"}}, "b": {"not": {"$ref": "#/$defs/c"}}, "c": {}}});
        check("input_schema", &schema).unwrap();
    }

    #[test]
    fn remote_anchor_dynamic_and_missing_references_are_refused() {
        for (schema, expected) in [
            (json!({"$ref": "https://example.com/s.json"}), "not local"),
            (json!({"$ref": "#thing"}), "anchor"),
            (json!({"$ref": "#/$defs/none"}), "points at nothing"),
            (json!({"$dynamicRef": "#meta"}), "not supported"),
            (json!({"$ref": 3}), "must be a string"),
        ] {
            let message = problem(schema.clone());
            assert!(message.contains(expected), "{schema}: {message}");
        }
    }

    #[test]
    fn size_and_depth_are_bounded() {
        let big = json!({"enum": ["x".repeat(MAX_SCHEMA_BYTES)]});
        assert!(problem(big).contains("bytes"));
        let mut deep = json!({"type": "string"});
        for _ in 0..(MAX_DEPTH + 2) {
            deep = json!({"not": deep});
        }
        assert!(problem(deep).contains("deeper"));
    }
}
