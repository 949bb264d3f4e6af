//! JSON Schema acceptance at deploy (`input_schema`, `output_schema`), then a check of
//! an instance against the schema when it was accepted. The input is the schema, a NUL
//! byte, then the instance.
#![no_main]

use gantry::schema::CompiledSchema;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let (schema, instance) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &b"null"[..]),
    };
    let Ok(schema) = serde_json::from_slice::<Value>(schema) else {
        return;
    };
    let Ok(compiled) = CompiledSchema::compile("input_schema", &schema) else {
        return;
    };
    if let Ok(instance) = serde_json::from_slice::<Value>(instance) {
        let _ = compiled.violations(&instance);
    }
});
