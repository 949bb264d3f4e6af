//! The watchdog's configuration: environment variables to a `Config` (exit 64 on a bad
//! one, never a panic), and what the watchdog later builds from an accepted config (the
//! callback request's headers and URL) must be buildable.
//!
//! The input is lines; a line's first byte picks the variable, the rest is its value.
//! A line picking no variable is the text of /etc/passwd and /etc/group for `RUN_AS`,
//! which is parsed against that text rather than the machine's.
#![no_main]

use std::collections::HashMap;

use gantry_protocol::env;
use gantry_watchdog::config::{parse_command, Config};
use gantry_watchdog::identity::RunAs;
use libfuzzer_sys::fuzz_target;

const VARS: &[&str] = &[
    env::EXECUTION_MODE,
    env::WATCHDOG_CMD,
    env::EXECUTION_ID,
    env::CALLBACK_URL,
    env::CALLBACK_TOKEN,
    env::INVOCATION_PAYLOAD,
    env::PAYLOAD_URL,
    env::TIMEOUT_MS,
    env::KILL_GRACE_MS,
    env::RUNTIME_URL,
    env::HEALTH_URL,
    env::READY_TIMEOUT_MS,
    env::INPUT_FILE,
    env::OUTPUT_FILE,
    env::WARM_PORT,
    env::WARM_HOST,
    env::WARM_IDLE_TIMEOUT_MS,
    env::WARM_MAX_INVOCATIONS,
    env::WARM_RUNTIME,
    env::WARM_CONCURRENCY,
    env::MAX_OUTPUT_BYTES,
    env::TRACE_ID,
    env::WARM_TOKEN,
    env::SECRET_FILES,
    env::SECRETS_DIR,
    env::RUN_AS,
];

fuzz_target!(|data: &[u8]| {
    let mut vars: HashMap<&'static str, String> = HashMap::new();
    let mut accounts = String::new();
    for line in data.split(|b| *b == b'\n') {
        let Some((pick, value)) = line.split_first() else {
            continue;
        };
        let value = String::from_utf8_lossy(value).into_owned();
        match VARS.get(usize::from(*pick) % (VARS.len() + 1)) {
            Some(var) => {
                vars.insert(var, value);
            }
            None => {
                accounts.push_str(&value);
                accounts.push('\n');
            }
        }
    }
    let _ = parse_command(vars.get(env::WATCHDOG_CMD).map_or("", String::as_str));
    // RUN_AS is parsed here against the input's accounts, not the machine's.
    if let Some(run_as) = vars.remove(env::RUN_AS) {
        let _ = RunAs::parse(&run_as, |_| accounts.clone());
    }
    let Ok(config) = Config::from_lookup(|var| Ok(vars.get(var).cloned())) else {
        return;
    };
    // The callback and payload requests carry these as headers; a value the watchdog
    // accepted must not make building the request fail later.
    if let Some(token) = &config.callback_token {
        let bearer = format!("Bearer {}", token.expose());
        assert!(
            http::HeaderValue::from_str(&bearer).is_ok(),
            "CALLBACK_TOKEN accepted but not a header value: {bearer:?}"
        );
    }
    if let Some(trace) = &config.trace_id {
        assert!(
            http::HeaderValue::from_str(trace).is_ok(),
            "TRACE_ID accepted but not a header value: {trace:?}"
        );
    }
    if let Some(url) = &config.callback_url {
        let _ = gantry_protocol::completion_url(&url.to_string(), &config.execution_id);
    }
});
