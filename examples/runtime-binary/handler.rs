//! Example static binary for gantry/runtime-binary: reads the JSON payload on stdin and
//! prints `{"runtime":"binary","bytes":N,"input":<payload>}`. Standard library only, so
//! it builds with plain rustc (see build.sh) into a static musl executable.
use std::io::{Read, Write};

fn main() {
    let mut input = String::new();
    if let Err(err) = std::io::stdin().read_to_string(&mut input) {
        eprintln!("cannot read stdin: {err}");
        std::process::exit(1);
    }
    let payload = match input.trim() {
        "" => "null",
        text => text,
    };
    eprintln!("got {} bytes", input.len());
    if payload.contains("\"fail\"") {
        eprintln!("asked to fail");
        std::process::exit(1);
    }
    let execution_id = std::env::var("EXECUTION_ID").unwrap_or_default();
    let mut out = std::io::stdout().lock();
    // The payload is already JSON; the execution id is an opaque id without quotes.
    let _ = writeln!(
        out,
        "{{\"runtime\":\"binary\",\"execution_id\":\"{}\",\"bytes\":{},\"input\":{}}}",
        execution_id.replace(['"', '\\'], ""),
        input.len(),
        payload
    );
}
