//! A function's stdout as the watchdog reads it (whole output or last line as JSON), the
//! report it makes of it, and that report read back by the control plane from the
//! watchdog's stdout: whatever the watchdog accepts, the control plane must be able to
//! read (an output it cannot hold becomes INVALID_OUTPUT, never an unreadable report).
//! Also the protocol's report and WARM envelope read straight from the input.
#![no_main]

use gantry::dispatch::CallbackReport;
use gantry_protocol::{CompletionReport, InvokeEnvelope};
use gantry_watchdog::outcome::{parse_output, report_line};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let report = match parse_output(data, "stdout") {
        Ok(parsed) => CompletionReport::success(parsed.value),
        Err(error) => CompletionReport::failure(error),
    };
    let line = report_line(&report);
    assert!(
        !line.contains(&b'\n'),
        "the stdout report spans lines: {:?}",
        String::from_utf8_lossy(&line)
    );
    let read: CallbackReport = match serde_json::from_slice(&line) {
        Ok(read) => read,
        Err(err) => panic!("the control plane cannot read the watchdog's report: {err}"),
    };
    if report.success != read.success {
        let code = read.error.as_ref().map(|error| error.code.to_string());
        assert_eq!(code.as_deref(), Some("INVALID_OUTPUT"));
    }

    // The wire types straight from the input; what parses must round-trip.
    if let Ok(report) = serde_json::from_slice::<CompletionReport>(data) {
        let again = serde_json::to_vec(&report).expect("serializes");
        serde_json::from_slice::<CompletionReport>(&again).expect("round-trips");
    }
    if let Ok(envelope) = serde_json::from_slice::<InvokeEnvelope>(data) {
        let again = serde_json::to_vec(&envelope).expect("serializes");
        serde_json::from_slice::<InvokeEnvelope>(&again).expect("round-trips");
    }
});
