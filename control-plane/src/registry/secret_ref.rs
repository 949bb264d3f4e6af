//! The manifest's `secrets` section: which stored secret each environment variable
//! gets, either as its value (`DB_PASSWORD: db-password`) or as the path of a 0400 file
//! holding it (`TLS_KEY: {secret: tls-key, file: true}`).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::manifest::{is_valid_env_name, RESERVED_ENV};
use crate::secrets::check_name;

/// One variable's secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum SecretRef {
    /// The secret's value is the variable's value.
    Value(String),
    /// The secret, and whether the variable holds the path of a file with its value.
    Detailed {
        /// The secret's name.
        secret: String,
        /// `true`: a 0400 file (docker runtime), the variable holds its path.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        file: bool,
    },
}

impl SecretRef {
    /// The stored secret's name.
    pub fn secret(&self) -> &str {
        match self {
            SecretRef::Value(name) | SecretRef::Detailed { secret: name, .. } => name,
        }
    }

    /// Whether the function gets a file rather than the value.
    pub fn as_file(&self) -> bool {
        matches!(self, SecretRef::Detailed { file: true, .. })
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SecretRef, D::Error> {
        let shape = "a secret name, or {secret: NAME, file: true|false}";
        match Value::deserialize(deserializer)? {
            Value::String(name) => Ok(SecretRef::Value(name)),
            Value::Object(mut fields) => {
                let secret = match fields.remove("secret") {
                    Some(Value::String(name)) => name,
                    _ => return Err(serde::de::Error::custom(format!("expected {shape}"))),
                };
                let file = match fields.remove("file") {
                    None => false,
                    Some(Value::Bool(file)) => file,
                    Some(_) => {
                        return Err(serde::de::Error::custom("`file` must be true or false"))
                    }
                };
                if let Some(extra) = fields.keys().next() {
                    return Err(serde::de::Error::custom(format!(
                        "unknown field `{extra}`, expected {shape}"
                    )));
                }
                Ok(SecretRef::Detailed { secret, file })
            }
            _ => Err(serde::de::Error::custom(format!("expected {shape}"))),
        }
    }
}

/// Problems with a `secrets` section beside the manifest's `env`.
pub fn problems(
    secrets: &BTreeMap<String, SecretRef>,
    env: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (var, reference) in secrets {
        if !is_valid_env_name(var) {
            problems.push(format!("secrets: {var:?} is not a valid variable name"));
        } else if RESERVED_ENV.contains(&var.as_str()) {
            problems.push(format!(
                "secrets: {var} is set by Gantry and cannot be overridden"
            ));
        } else if env.contains_key(var) {
            problems.push(format!(
                "secrets.{var}: {var} is also set in `env`; a variable gets one or the other"
            ));
        }
        if let Err(problem) = check_name(reference.secret()) {
            problems.push(format!("secrets.{var}: {problem}"));
        }
    }
    problems
}

/// Variable names that suggest a secret kept in plain `env`.
const SECRET_LIKE: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "API_KEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
];

/// Warnings for `env` variables whose names say they hold a secret: `env` is shown to
/// anyone who can read functions, secrets are not.
pub fn plain_env_warnings(env: &BTreeMap<String, String>) -> Vec<String> {
    env.keys()
        .filter(|var| {
            let upper = var.to_ascii_uppercase();
            SECRET_LIKE.iter().any(|word| upper.contains(word))
        })
        .map(|var| {
            format!(
                "env.{var} looks like a secret: `env` is readable by every token; store it with `gantry secret set` and map it under `secrets`"
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_and_serialize_back() {
        let parsed: BTreeMap<String, SecretRef> = serde_json::from_value(serde_json::json!({
            "DB": "db-pass",
            "KEY": {"secret": "tls", "file": true},
            "PLAIN": {"secret": "p"}
        }))
        .unwrap();
        assert_eq!(parsed["DB"], SecretRef::Value("db-pass".into()));
        assert!(parsed["KEY"].as_file());
        assert!(!parsed["PLAIN"].as_file());
        assert_eq!(parsed["KEY"].secret(), "tls");
        let back = serde_json::to_value(&parsed).unwrap();
        assert_eq!(back["DB"], "db-pass");
        assert_eq!(
            back["KEY"],
            serde_json::json!({"secret": "tls", "file": true})
        );
        assert_eq!(back["PLAIN"], serde_json::json!({"secret": "p"}));
    }

    #[test]
    fn malformed_references_say_what_is_expected() {
        for bad in [
            serde_json::json!(3),
            serde_json::json!({"name": "x"}),
            serde_json::json!({"secret": "x", "file": "yes"}),
            serde_json::json!({"secret": "x", "mode": 1}),
        ] {
            let err = serde_json::from_value::<SecretRef>(bad.clone()).unwrap_err();
            assert!(
                err.to_string().contains("secret") || err.to_string().contains("file"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn section_problems_name_the_variable() {
        let secrets: BTreeMap<String, SecretRef> = [
            ("1BAD", SecretRef::Value("ok".into())),
            ("CALLBACK_TOKEN", SecretRef::Value("ok".into())),
            ("BOTH", SecretRef::Value("ok".into())),
            ("NAME", SecretRef::Value("bad name".into())),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let env = BTreeMap::from([("BOTH".to_owned(), "x".to_owned())]);
        let found = problems(&secrets, &env).join("\n");
        for expected in [
            "\"1BAD\"",
            "CALLBACK_TOKEN is set by Gantry",
            "BOTH is also set",
            "secrets.NAME",
        ] {
            assert!(found.contains(expected), "{expected} in {found}");
        }
        let warnings = plain_env_warnings(&BTreeMap::from([
            ("DB_PASSWORD".to_owned(), "x".to_owned()),
            ("GREETING".to_owned(), "hi".to_owned()),
        ]));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("env.DB_PASSWORD"));
    }
}
