//! The body of `POST /v1/internal/executions/{id}:complete`: anything is a report or a
//! 400, and every report the watchdog can send (a protocol `CompletionReport`) is read.
#![no_main]

use gantry::api::parse_report;
use gantry_protocol::CompletionReport;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_report(data) {
        Ok(_) => {}
        Err(err) => {
            assert_eq!(err.status().as_u16(), 400, "{err:?}");
            assert!(
                serde_json::from_slice::<CompletionReport>(data).is_err(),
                "a report the watchdog could send was refused: {err:?}"
            );
        }
    }
});
