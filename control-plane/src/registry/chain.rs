//! Chains and event triggers of a function: their manifest types, rule evaluation and
//! the mapping of a finished execution to the input of the function it chains to; the
//! checks run at deploy ([`problems`]) are in `chain_checks.rs`. Nothing here does I/O.
//!
//! Every type reads and writes the JSON a user writes. Parse errors and [`problems`] name
//! the place they are about (`chains[1].condition.all[0]: …`).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{Map, Value};

#[path = "chain_checks.rs"]
mod checks;
#[path = "chain_json.rs"]
mod json;

pub use checks::problems;
pub use json::{deserialize_chains, deserialize_triggers};

/// Longest accepted `delay_ms` of a chain: one day.
pub const MAX_DELAY_MS: u64 = 24 * 60 * 60 * 1000;

const CONDITIONS: &str = "always, on_success, on_failure, on_timeout";
const OPS: &str = "eq, ne, gt, gte, lt, lte, exists, in, contains";

/// One entry of a manifest's `chains`: run `target` after this function finishes.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainSpec {
    /// The function to run (may be the function itself; the depth cap stops cycles).
    pub target: String,
    /// When the chain fires; `on_success` when absent.
    pub condition: Condition,
    /// What the target gets as input; `full_output` when absent.
    pub input: InputMapping,
    /// Wait before the target runs; 0 when absent.
    pub delay_ms: u64,
}

/// When a chain fires, judged on the finished parent. A cancelled parent fires only
/// `always` chains (and rules that look at its status).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Condition {
    /// `"always"`: whatever the parent's status, `cancelled` included.
    Always,
    /// `"on_success"` (the default): the parent's status is `success`.
    #[default]
    OnSuccess,
    /// `"on_failure"`: the parent's status is `error` or `timeout` (a timeout is a failure).
    OnFailure,
    /// `"on_timeout"`: the parent's status is `timeout`.
    OnTimeout,
    /// A rule over the finished parent (see [`Condition::holds`]).
    Rule(Rule),
}

/// A test over a JSON context: `{"path": "output.total", "op": "gt", "value": 100}`,
/// `{"all": [...]}`, `{"any": [...]}` or `{"not": rule}`.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// Compares the value at `path` with `value` using `op`.
    Compare {
        /// Dot-separated path into the context; numeric segments index arrays.
        path: String,
        /// The comparison.
        op: Op,
        /// What to compare with (optional for `exists` only).
        value: Option<Value>,
    },
    /// Every rule holds (an empty list is a deploy problem).
    All(Vec<Rule>),
    /// At least one rule holds (an empty list is a deploy problem).
    Any(Vec<Rule>),
    /// The rule does not hold.
    Not(Box<Rule>),
}

/// The comparison of a [`Rule::Compare`]. A missing path makes every op false except
/// `ne` and `exists` with `value: false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal (numbers by value: `1` equals `1.0`).
    Eq,
    /// Not equal.
    Ne,
    /// Greater than: numbers by value, strings lexically; false for other types.
    Gt,
    /// Greater than or equal.
    Gte,
    /// Less than.
    Lt,
    /// Less than or equal.
    Lte,
    /// The path exists (`value` true or absent) or does not (`value` false).
    Exists,
    /// The value at the path equals an item of `value` (a list).
    In,
    /// The value at the path is a string containing `value` (a string), or a list with
    /// an item equal to `value`.
    Contains,
}

/// How a chain builds its target's input from the finished parent.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum InputMapping {
    /// `"full_output"` (the default): the parent's output.
    #[default]
    FullOutput,
    /// `"merge"`: the parent's input object with its output object merged over it; the
    /// input when there is no output (a failed parent), else the output alone if either
    /// is not an object.
    Merge,
    /// `{"fields": {"<target path>": "<source path>"}}`: an object built from values of
    /// the context; a missing source leaves its target unset.
    Fields(BTreeMap<String, String>),
    /// `{"template": <JSON>}`: the JSON with `{{path}}` placeholders in its strings
    /// filled. A string that is exactly one placeholder takes the value with its JSON
    /// type (null when missing); in other strings values are written as text (strings
    /// raw, other values as compact JSON, missing ones as nothing). Object keys are kept
    /// as written.
    Template(Value),
}

/// One entry of a manifest's `triggers`: events of type `event_type` start the function.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerSpec {
    /// The event type (`"type"` in JSON), matched exactly.
    pub event_type: String,
    /// A rule over `{"type": ..., "data": ...}` the event must also satisfy.
    pub condition: Option<Rule>,
}

impl Condition {
    /// Whether a chain fires for the finished parent `context` (its "status" field decides
    /// the named kinds; a Rule is evaluated on the whole context).
    pub fn holds(&self, context: &Value) -> bool {
        let status = context.get("status").and_then(Value::as_str);
        match self {
            Condition::Always => true,
            Condition::OnSuccess => status == Some("success"),
            Condition::OnFailure => matches!(status, Some("error" | "timeout")),
            Condition::OnTimeout => status == Some("timeout"),
            Condition::Rule(rule) => rule.holds(context),
        }
    }
}

impl Rule {
    /// Whether the rule holds for `context`.
    pub fn holds(&self, context: &Value) -> bool {
        match self {
            Rule::Compare { path, op, value } => op.holds(lookup(context, path), value.as_ref()),
            Rule::All(rules) => rules.iter().all(|rule| rule.holds(context)),
            Rule::Any(rules) => rules.iter().any(|rule| rule.holds(context)),
            Rule::Not(rule) => !rule.holds(context),
        }
    }
}

impl Op {
    const ALL: [(Op, &'static str); 9] = [
        (Op::Eq, "eq"),
        (Op::Ne, "ne"),
        (Op::Gt, "gt"),
        (Op::Gte, "gte"),
        (Op::Lt, "lt"),
        (Op::Lte, "lte"),
        (Op::Exists, "exists"),
        (Op::In, "in"),
        (Op::Contains, "contains"),
    ];

    /// The op's name in a manifest (`gte`).
    pub fn as_str(self) -> &'static str {
        Op::ALL
            .iter()
            .find(|(op, _)| *op == self)
            .map_or("eq", |(_, name)| name)
    }

    /// The op named `name`.
    pub fn from_name(name: &str) -> Option<Op> {
        Op::ALL
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(op, _)| *op)
    }

    fn holds(self, found: Option<&Value>, value: Option<&Value>) -> bool {
        let Some(found) = found else {
            return match self {
                Op::Ne => true,
                Op::Exists => value == Some(&Value::Bool(false)),
                _ => false,
            };
        };
        let order = value.and_then(|value| compare(found, value));
        match self {
            Op::Eq => value.is_some_and(|value| same(found, value)),
            Op::Ne => !value.is_some_and(|value| same(found, value)),
            Op::Gt => order == Some(Ordering::Greater),
            Op::Gte => matches!(order, Some(Ordering::Greater | Ordering::Equal)),
            Op::Lt => order == Some(Ordering::Less),
            Op::Lte => matches!(order, Some(Ordering::Less | Ordering::Equal)),
            Op::Exists => value != Some(&Value::Bool(false)),
            Op::In => {
                matches!(value, Some(Value::Array(items)) if items.iter().any(|item| same(found, item)))
            }
            Op::Contains => match (found, value) {
                (Value::String(text), Some(Value::String(part))) => text.contains(part.as_str()),
                (Value::Array(items), Some(value)) => items.iter().any(|item| same(item, value)),
                _ => false,
            },
        }
    }

    /// Why `value` does not suit this op, if it does not.
    fn value_problem(self, value: Option<&Value>) -> Option<String> {
        let name = self.as_str();
        match (self, value) {
            (Op::Exists, None | Some(Value::Bool(_))) => None,
            (Op::Exists, Some(other)) => Some(format!(
                "`exists` takes `value` true or false, got {}",
                kind(other)
            )),
            (Op::In, Some(Value::Array(_))) => None,
            (Op::In, other) => Some(format!(
                "`in` needs a `value` that is a list, got {}",
                other.map_or("none", kind)
            )),
            (_, None) => Some(format!("`{name}` needs a `value`")),
            (Op::Gt | Op::Gte | Op::Lt | Op::Lte, Some(other))
                if !(other.is_number() || other.is_string()) =>
            {
                Some(format!(
                    "`{name}` compares numbers or strings; `value` is {}",
                    kind(other)
                ))
            }
            _ => None,
        }
    }
}

/// What `value` is, for messages ("a list").
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Equality of JSON values, numbers by value (`1` equals `1.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => compare(a, b) == Some(Ordering::Equal),
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(key, a)| b.get(key).is_some_and(|b| same(a, b)))
        }
        _ => a == b,
    }
}

/// The order of two numbers or two strings; None for anything else.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                Some(x.cmp(&y))
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                Some(x.cmp(&y))
            } else {
                x.as_f64()?.partial_cmp(&y.as_f64()?)
            }
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// The value at the dot-separated `path` in `context` (`output.items.0.id`; numeric
/// segments index arrays). None when it is missing, or the path or a segment is empty.
pub fn lookup<'a>(context: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(context, |value, segment| match value {
            _ if segment.is_empty() => None,
            Value::Object(map) => map.get(segment),
            Value::Array(items) if segment.bytes().all(|b| b.is_ascii_digit()) => segment
                .parse::<usize>()
                .ok()
                .and_then(|index| items.get(index)),
            _ => None,
        })
}

/// Sets the value at `path` in `root`, making objects of whatever is in the way.
fn set_path(root: &mut Value, path: &str, value: Value) {
    let mut slot = root;
    for segment in path.split('.') {
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(map) = slot else { return };
        slot = map.entry(segment).or_insert(Value::Null);
    }
    *slot = value;
}

impl InputMapping {
    /// The input of a chained function, built from the finished parent `context`.
    pub fn apply(&self, context: &Value) -> Value {
        let output = || context.get("output").cloned().unwrap_or(Value::Null);
        match self {
            InputMapping::FullOutput => output(),
            InputMapping::Merge => match (context.get("input"), context.get("output")) {
                (Some(Value::Object(input)), Some(Value::Object(out))) => {
                    let mut merged = input.clone();
                    merged.extend(out.iter().map(|(key, value)| (key.clone(), value.clone())));
                    Value::Object(merged)
                }
                // A failed parent has no output: its input goes on (on_failure chains).
                (Some(input), None | Some(Value::Null)) => input.clone(),
                _ => output(),
            },
            InputMapping::Fields(fields) => {
                let mut built = Value::Object(Map::new());
                for (to, from) in fields {
                    if let Some(value) = lookup(context, from) {
                        set_path(&mut built, to, value.clone());
                    }
                }
                built
            }
            InputMapping::Template(template) => fill(template, context),
        }
    }
}

/// A part of a template string.
enum Piece<'a> {
    Text(&'a str),
    Placeholder(&'a str),
}

/// Splits a template string into text and (trimmed) placeholder paths.
fn pieces(text: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            pieces.push(Piece::Text(&rest[..start]));
        }
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) if !after[..end].contains("{{") => {
                pieces.push(Piece::Placeholder(after[..end].trim()));
                rest = &after[end + 2..];
            }
            _ => {
                let shown: String = rest[start..].chars().take(40).collect();
                return Err(format!("placeholder {shown:?} is not closed with }}}}"));
            }
        }
    }
    if !rest.is_empty() {
        pieces.push(Piece::Text(rest));
    }
    Ok(pieces)
}

fn fill(template: &Value, context: &Value) -> Value {
    match template {
        Value::String(text) => fill_text(text, context),
        Value::Array(items) => Value::Array(items.iter().map(|item| fill(item, context)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| (key.clone(), fill(value, context)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn fill_text(text: &str, context: &Value) -> Value {
    let Ok(pieces) = pieces(text) else {
        return Value::String(text.to_owned());
    };
    if let [Piece::Placeholder(path)] = pieces.as_slice() {
        return lookup(context, path).cloned().unwrap_or(Value::Null);
    }
    let mut filled = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(text) => filled.push_str(text),
            Piece::Placeholder(path) => match lookup(context, path) {
                Some(Value::String(value)) => filled.push_str(value),
                Some(value) => filled.push_str(&value.to_string()),
                None => {}
            },
        }
    }
    Value::String(filled)
}

impl TriggerSpec {
    /// Whether an event of `event_type` with `data` starts the function.
    pub fn matches(&self, event_type: &str, data: &Value) -> bool {
        self.event_type == event_type
            && self.condition.as_ref().is_none_or(|rule| {
                let mut event = Map::new();
                event.insert("type".into(), Value::from(event_type));
                event.insert("data".into(), data.clone());
                rule.holds(&Value::Object(event))
            })
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
