//! The deploy checks of chains and triggers: targets, rules, field mappings, templates
//! and delays, each problem naming where it is.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{pieces, ChainSpec, Condition, InputMapping, Piece, Rule, TriggerSpec, MAX_DELAY_MS};
use crate::registry::manifest::is_valid_name;

/// Problems of a function's chains and triggers, each naming where it is (`chains[0].condition.all[1]: ...`).
pub fn problems(chains: &[ChainSpec], triggers: &[TriggerSpec]) -> Vec<String> {
    let mut problems = Vec::new();
    for (index, chain) in chains.iter().enumerate() {
        let at = format!("chains[{index}]");
        if !is_valid_name(&chain.target) {
            problems.push(format!(
                "{at}.target {:?} is not a valid function name",
                chain.target
            ));
        }
        if let Condition::Rule(rule) = &chain.condition {
            rule_problems(rule, &format!("{at}.condition"), &mut problems);
        }
        match &chain.input {
            InputMapping::Fields(fields) => {
                field_problems(fields, &format!("{at}.input.fields"), &mut problems)
            }
            InputMapping::Template(template) => {
                template_problems(template, &format!("{at}.input.template"), &mut problems)
            }
            InputMapping::FullOutput | InputMapping::Merge => {}
        }
        if chain.delay_ms > MAX_DELAY_MS {
            problems.push(format!(
                "{at}.delay_ms must be at most {MAX_DELAY_MS} (one day), got {}",
                chain.delay_ms
            ));
        }
    }
    for (index, trigger) in triggers.iter().enumerate() {
        if trigger.event_type.trim().is_empty() {
            problems.push(format!("triggers[{index}].type is empty"));
        }
        if let Some(rule) = &trigger.condition {
            rule_problems(rule, &format!("triggers[{index}].condition"), &mut problems);
        }
    }
    problems
}

/// Why `path` is not a usable path, if it is not.
fn path_problem(path: &str) -> Option<String> {
    if path.is_empty() {
        Some("the path is empty".into())
    } else if path.split('.').any(str::is_empty) {
        Some(format!("path {path:?} has an empty segment"))
    } else {
        None
    }
}

fn rule_problems(rule: &Rule, at: &str, problems: &mut Vec<String>) {
    match rule {
        Rule::Compare { path, op, value } => {
            let found = [path_problem(path), op.value_problem(value.as_ref())];
            problems.extend(
                found
                    .into_iter()
                    .flatten()
                    .map(|problem| format!("{at}: {problem}")),
            );
        }
        Rule::All(rules) | Rule::Any(rules) => {
            let key = if matches!(rule, Rule::All(_)) {
                "all"
            } else {
                "any"
            };
            if rules.is_empty() {
                problems.push(format!("{at}.{key} lists no rules"));
            }
            for (index, rule) in rules.iter().enumerate() {
                rule_problems(rule, &format!("{at}.{key}[{index}]"), problems);
            }
        }
        Rule::Not(rule) => rule_problems(rule, &format!("{at}.not"), problems),
    }
}

fn field_problems(fields: &BTreeMap<String, String>, at: &str, problems: &mut Vec<String>) {
    for (to, from) in fields {
        let at = format!("{at}[{to:?}]");
        if let Some(problem) = path_problem(to) {
            problems.push(format!("{at}: target {problem}"));
        }
        if let Some(problem) = path_problem(from) {
            problems.push(format!("{at}: source {problem}"));
        }
        if let Some(outer) = fields.keys().find(|outer| {
            to.strip_prefix(outer.as_str())
                .is_some_and(|rest| rest.starts_with('.'))
        }) {
            problems.push(format!("{at}: target {to:?} is inside target {outer:?}"));
        }
    }
}

fn template_problems(template: &Value, at: &str, problems: &mut Vec<String>) {
    match template {
        Value::String(text) => match pieces(text) {
            Err(problem) => problems.push(format!("{at}: {problem}")),
            Ok(pieces) => {
                for piece in pieces {
                    if let Piece::Placeholder(path) = piece {
                        if let Some(problem) = path_problem(path) {
                            problems.push(format!("{at}: placeholder {{{{{path}}}}}: {problem}"));
                        }
                    }
                }
            }
        },
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                template_problems(item, &format!("{at}[{index}]"), problems);
            }
        }
        Value::Object(map) => {
            for (key, value) in map {
                template_problems(value, &format!("{at}.{key}"), problems);
            }
        }
        _ => {}
    }
}
