//! Manifest text (JSON or YAML) through everything a deploy checks before it touches
//! the store: parsing, field problems, chains, schemas, the content hash.
#![no_main]

use gantry::registry::{catalog, content_hash, manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = manifest::parse_manifest(text) {
        let _ = manifest::problems(&spec);
        let _ = content_hash(&spec);
    }
    // The API path: the text as a JSON value, then the checks of a deploy.
    if let Ok(value) = manifest::manifest_to_json(text) {
        if let Ok(spec) = catalog::check_definition(&value, catalog::DEFAULT_MAX_CHAINS) {
            let _ = content_hash(&spec);
        }
    }
});
