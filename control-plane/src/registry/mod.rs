//! The function registry: manifests, their validation, versions and content hashes.
//!
//! The store keeps every version; this module decides what a valid function is and
//! identifies each definition by the SHA-256 of its canonical JSON.

pub mod catalog;
pub mod chain;
pub mod freshness;
pub mod limits;
pub mod manifest;
pub mod secret_ref;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use manifest::{parse_manifest, FunctionSpec, Mode};
pub use secret_ref::SecretRef;

/// One stored version of a function.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionVersion {
    /// The function's name.
    pub name: String,
    /// 1 for the first definition, then one more per change.
    pub version: u32,
    /// `sha256:` and the hex SHA-256 of the canonical JSON of `spec`.
    pub content_hash: String,
    /// The definition.
    pub spec: FunctionSpec,
    /// When this version was stored.
    pub created_at: DateTime<Utc>,
}

/// The content hash of a definition: SHA-256 over its JSON with object keys sorted, so
/// the same definition always gets the same hash whatever order it was written in.
pub fn content_hash(spec: &FunctionSpec) -> String {
    let value = serde_json::to_value(spec).expect("a function spec serializes");
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
