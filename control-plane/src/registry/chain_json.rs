//! Reading and writing the JSON form of chains and triggers, the one a user writes.
//! Each `parse` takes the place of its value (`chains[0].condition`) to name in errors;
//! defaults are left out on output, so equal definitions serialize (and hash) the same.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{kind, ChainSpec, Condition, InputMapping, Op, Rule, TriggerSpec, CONDITIONS, OPS};

/// `message` about the place `at` (the message alone at the top).
fn fail(at: &str, message: impl std::fmt::Display) -> String {
    if at.is_empty() {
        message.to_string()
    } else {
        format!("{at}: {message}")
    }
}

/// `at` with `key` appended.
fn field(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

/// The object `value`, whose keys must all be in `known`.
fn object<'a>(
    value: &'a Value,
    at: &str,
    what: &str,
    known: &[&str],
) -> Result<&'a Map<String, Value>, String> {
    let Value::Object(map) = value else {
        return Err(fail(at, format!("expected {what}, got {}", kind(value))));
    };
    match map.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => {
            let known: Vec<String> = known.iter().map(|key| format!("`{key}`")).collect();
            Err(fail(
                at,
                format!(
                    "unknown field `{key}`, expected one of {}",
                    known.join(", ")
                ),
            ))
        }
        None => Ok(map),
    }
}

fn string(map: &Map<String, Value>, key: &str, at: &str, what: &str) -> Result<String, String> {
    match map.get(key) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(fail(
            &field(at, key),
            format!("expected {what}, got {}", kind(other)),
        )),
        None => Err(fail(at, format!("missing field `{key}`"))),
    }
}

impl ChainSpec {
    fn parse(value: &Value, at: &str) -> Result<ChainSpec, String> {
        let known = ["target", "condition", "input", "delay_ms"];
        let map = object(
            value,
            at,
            "a chain object such as {\"target\": \"next\"}",
            &known,
        )?;
        let delay_ms = match map.get("delay_ms") {
            None => 0,
            Some(value) => value.as_u64().ok_or_else(|| {
                fail(
                    &field(at, "delay_ms"),
                    format!("expected a whole number of milliseconds, got {value}"),
                )
            })?,
        };
        Ok(ChainSpec {
            target: string(map, "target", at, "a function name")?,
            condition: match map.get("condition") {
                Some(value) => Condition::parse(value, &field(at, "condition"))?,
                None => Condition::OnSuccess,
            },
            input: match map.get("input") {
                Some(value) => InputMapping::parse(value, &field(at, "input"))?,
                None => InputMapping::FullOutput,
            },
            delay_ms,
        })
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("target".into(), Value::from(self.target.as_str()));
        if self.condition != Condition::OnSuccess {
            map.insert("condition".into(), self.condition.to_json());
        }
        if self.input != InputMapping::FullOutput {
            map.insert("input".into(), self.input.to_json());
        }
        if self.delay_ms != 0 {
            map.insert("delay_ms".into(), Value::from(self.delay_ms));
        }
        Value::Object(map)
    }
}

impl Condition {
    fn parse(value: &Value, at: &str) -> Result<Condition, String> {
        match value {
            Value::String(name) => match name.as_str() {
                "always" => Ok(Condition::Always),
                "on_success" => Ok(Condition::OnSuccess),
                "on_failure" => Ok(Condition::OnFailure),
                "on_timeout" => Ok(Condition::OnTimeout),
                _ => Err(fail(
                    at,
                    format!(
                        "unknown condition {name:?}; use one of {CONDITIONS}, or a rule object"
                    ),
                )),
            },
            Value::Object(_) => Rule::parse(value, at).map(Condition::Rule),
            other => Err(fail(
                at,
                format!(
                    "expected one of {CONDITIONS}, or a rule object, got {}",
                    kind(other)
                ),
            )),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Condition::Always => Value::from("always"),
            Condition::OnSuccess => Value::from("on_success"),
            Condition::OnFailure => Value::from("on_failure"),
            Condition::OnTimeout => Value::from("on_timeout"),
            Condition::Rule(rule) => rule.to_json(),
        }
    }
}

impl Rule {
    fn parse(value: &Value, at: &str) -> Result<Rule, String> {
        let known = ["path", "op", "value", "all", "any", "not"];
        let what =
            "a rule object such as {\"path\": \"output.total\", \"op\": \"gt\", \"value\": 100}";
        let map = object(value, at, what, &known)?;
        let forms: Vec<&str> = ["all", "any", "not"]
            .into_iter()
            .filter(|key| map.contains_key(*key))
            .collect();
        let compare = ["path", "op", "value"]
            .iter()
            .any(|key| map.contains_key(*key));
        if forms.len() + usize::from(compare) != 1 {
            return Err(fail(
                at,
                "a rule has either `path`, `op` and `value`, or exactly one of `all`, `any`, `not`",
            ));
        }
        match forms.first() {
            Some(&"not") => Ok(Rule::Not(Box::new(Rule::parse(
                &map["not"],
                &field(at, "not"),
            )?))),
            Some(&key) => {
                let at = field(at, key);
                let Value::Array(items) = &map[key] else {
                    return Err(fail(
                        &at,
                        format!("expected a list of rules, got {}", kind(&map[key])),
                    ));
                };
                let rules = items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| Rule::parse(item, &format!("{at}[{index}]")))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if key == "all" {
                    Rule::All(rules)
                } else {
                    Rule::Any(rules)
                })
            }
            None => {
                let path = string(
                    map,
                    "path",
                    at,
                    "a dot-separated path such as \"output.total\"",
                )?;
                let op = match map.get("op") {
                    Some(Value::String(name)) => Op::from_name(name).ok_or_else(|| {
                        fail(at, format!("unknown op {name:?}; use one of {OPS}"))
                    })?,
                    Some(other) => {
                        return Err(fail(
                            at,
                            format!("`op` must be one of {OPS}, got {}", kind(other)),
                        ))
                    }
                    None => return Err(fail(at, format!("missing field `op`; use one of {OPS}"))),
                };
                let value = map.get("value").cloned();
                match op.value_problem(value.as_ref()) {
                    Some(problem) => Err(fail(at, problem)),
                    None => Ok(Rule::Compare { path, op, value }),
                }
            }
        }
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        match self {
            Rule::Compare { path, op, value } => {
                map.insert("path".into(), Value::from(path.as_str()));
                map.insert("op".into(), Value::from(op.as_str()));
                if let Some(value) = value {
                    map.insert("value".into(), value.clone());
                }
            }
            Rule::All(rules) => {
                map.insert("all".into(), rules.iter().map(Rule::to_json).collect());
            }
            Rule::Any(rules) => {
                map.insert("any".into(), rules.iter().map(Rule::to_json).collect());
            }
            Rule::Not(rule) => {
                map.insert("not".into(), rule.to_json());
            }
        }
        Value::Object(map)
    }
}

impl Op {
    fn parse(value: &Value, at: &str) -> Result<Op, String> {
        match value {
            Value::String(name) => Op::from_name(name),
            _ => None,
        }
        .ok_or_else(|| fail(at, format!("unknown op {value}; use one of {OPS}")))
    }

    fn to_json(self) -> Value {
        Value::from(self.as_str())
    }
}

impl InputMapping {
    fn parse(value: &Value, at: &str) -> Result<InputMapping, String> {
        let use_one = "use full_output, merge, {\"fields\": {...}} or {\"template\": ...}";
        match value {
            Value::String(name) if name == "full_output" => Ok(InputMapping::FullOutput),
            Value::String(name) if name == "merge" => Ok(InputMapping::Merge),
            Value::String(name) => Err(fail(
                at,
                format!("unknown input mapping {name:?}; {use_one}"),
            )),
            Value::Object(map) if map.len() == 1 => {
                let map = object(value, at, "", &["fields", "template"])?;
                if let Some(template) = map.get("template") {
                    return Ok(InputMapping::Template(template.clone()));
                }
                let at = field(at, "fields");
                let Some(Value::Object(fields)) = map.get("fields") else {
                    return Err(fail(&at, "expected an object of target path: source path"));
                };
                fields
                    .iter()
                    .map(|(to, from)| match from {
                        Value::String(from) => Ok((to.clone(), from.clone())),
                        other => Err(fail(
                            &format!("{at}[{to:?}]"),
                            format!("expected a source path, got {}", kind(other)),
                        )),
                    })
                    .collect::<Result<_, _>>()
                    .map(InputMapping::Fields)
            }
            other => Err(fail(
                at,
                format!("expected a mapping, got {}; {use_one}", kind(other)),
            )),
        }
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        match self {
            InputMapping::FullOutput => return Value::from("full_output"),
            InputMapping::Merge => return Value::from("merge"),
            InputMapping::Fields(fields) => {
                let fields = fields
                    .iter()
                    .map(|(to, from)| (to.clone(), Value::from(from.as_str())));
                map.insert("fields".into(), Value::Object(fields.collect()));
            }
            InputMapping::Template(template) => {
                map.insert("template".into(), template.clone());
            }
        }
        Value::Object(map)
    }
}

impl TriggerSpec {
    fn parse(value: &Value, at: &str) -> Result<TriggerSpec, String> {
        let what = "a trigger object such as {\"type\": \"order.created\"}";
        let map = object(value, at, what, &["type", "condition"])?;
        let condition = match map.get("condition") {
            None => None,
            Some(Value::String(name)) => {
                return Err(fail(&field(at, "condition"), format!("a trigger's condition is a rule object such as {{\"path\": \"data.total\", \"op\": \"gt\", \"value\": 100}}, not {name:?}")))
            }
            Some(value) => Some(Rule::parse(value, &field(at, "condition"))?),
        };
        Ok(TriggerSpec {
            event_type: string(map, "type", at, "an event type")?,
            condition,
        })
    }

    fn to_json(&self) -> Value {
        let mut map = Map::new();
        map.insert("type".into(), Value::from(self.event_type.as_str()));
        if let Some(rule) = &self.condition {
            map.insert("condition".into(), rule.to_json());
        }
        Value::Object(map)
    }
}

/// Serialize and Deserialize through `to_json` and `parse`.
macro_rules! json_form {
    ($($type:ty),*) => {$(
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.to_json().serialize(serializer)
            }
        }
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                <$type>::parse(&Value::deserialize(deserializer)?, "").map_err(D::Error::custom)
            }
        }
    )*};
}
json_form!(ChainSpec, Condition, Rule, Op, InputMapping, TriggerSpec);

/// Reads a manifest's `chains`, naming the place of a problem (`chains[1].condition: …`).
pub fn deserialize_chains<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<ChainSpec>, D::Error> {
    list(deserializer, "chains", ChainSpec::parse)
}

/// Reads a manifest's `triggers`, naming the place of a problem (`triggers[0].type: …`).
pub fn deserialize_triggers<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<TriggerSpec>, D::Error> {
    list(deserializer, "triggers", TriggerSpec::parse)
}

fn list<'de, D: Deserializer<'de>, T>(
    deserializer: D,
    key: &str,
    parse: fn(&Value, &str) -> Result<T, String>,
) -> Result<Vec<T>, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| parse(item, &format!("{key}[{index}]")))
            .collect::<Result<_, _>>()
            .map_err(D::Error::custom),
        other => Err(D::Error::custom(format!(
            "{key}: expected a list, got {}",
            kind(&other)
        ))),
    }
}
