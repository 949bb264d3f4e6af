//! Chain and trigger rules: parsed from JSON (`chains` and `triggers` of a manifest),
//! checked as a deploy checks them, then evaluated against a finished parent or an event.
//! The input is the rules, a NUL byte, then the JSON context.
#![no_main]

use gantry::registry::chain;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (rules, context) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(rules) = serde_json::from_slice::<Value>(rules) else {
        return;
    };
    let context = serde_json::from_slice::<Value>(context).unwrap_or(Value::Null);
    let chains = chain::deserialize_chains(&rules).unwrap_or_default();
    let triggers = chain::deserialize_triggers(&rules).unwrap_or_default();
    let _ = chain::problems(&chains, &triggers);
    for spec in &chains {
        let _ = spec.condition.holds(&context);
        let _ = spec.input.apply(&context);
    }
    let event_type = context.get("type").and_then(Value::as_str).unwrap_or("");
    let event_data = context.get("data").cloned().unwrap_or(Value::Null);
    for trigger in &triggers {
        let _ = trigger.matches(event_type, &event_data);
    }
});
