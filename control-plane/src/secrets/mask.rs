//! [`Masker`]: replaces the values of a function's secrets with `***` in what the
//! server keeps of its runs (log lines, output, error messages).

use std::sync::Arc;

use serde_json::Value;

/// What a masked value becomes.
pub const MASK: &str = "***";
/// Values shorter than this are not masked: hiding every `a` or `42` would destroy the
/// text without protecting anything a value that short could.
pub const MIN_MASKED_LEN: usize = 4;

/// The secret values to hide, longest first (so a value containing another is hidden
/// whole). Cheap to clone; empty when the function has no secrets.
#[derive(Clone, Default)]
pub struct Masker {
    values: Arc<Vec<String>>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} values)", self.values.len())
    }
}

impl Masker {
    /// A masker for `values`; multi-line values are also hidden line by line, since
    /// logs are captured a line at a time.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Masker {
        let mut all: Vec<String> = Vec::new();
        for value in values {
            all.push(value.to_owned());
            if value.contains('\n') {
                all.extend(
                    value
                        .lines()
                        .map(|line| line.trim_end_matches('\r').to_owned()),
                );
            }
        }
        all.retain(|value| value.len() >= MIN_MASKED_LEN);
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        Masker {
            values: Arc::new(all),
        }
    }

    /// Whether there is nothing to hide.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every secret value replaced by `***`.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for value in self.values.iter() {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), MASK);
            }
        }
        out
    }

    /// `value` with every string in it (keys included) masked.
    pub fn json(&self, value: Value) -> Value {
        if self.is_empty() {
            return value;
        }
        match value {
            Value::String(text) => Value::String(self.text(&text)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.json(v)).collect()),
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(key, v)| (self.text(&key), self.json(v)))
                    .collect(),
            ),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_hidden_in_text_and_json() {
        let masker = Masker::new(["hunter22", "hunter22-long", "ab", "line one\nline two"]);
        assert_eq!(
            masker.text("pw=hunter22-long and hunter22, ab"),
            "pw=*** and ***, ab"
        );
        assert_eq!(masker.text("got line two"), "got ***");
        let masked = masker.json(json!({"k": ["x hunter22 y", 3], "hunter22": true}));
        assert_eq!(masked, json!({"k": ["x *** y", 3], "***": true}));
        assert!(Masker::new(["abc"]).is_empty(), "too short to mask");
        assert_eq!(Masker::default().text("hunter22"), "hunter22");
    }
}
