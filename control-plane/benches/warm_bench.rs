//! `make bench-warm`: the warm-pool performance target — control plane → warm instance
//! → result, p50 overhead ≤ 0.5 ms and ≥ 10k invocations/s on 2 cores. End-to-end
//! `POST /v1/functions/noop-warm:invoke` of a no-op HTTP function kept warm by the
//! release `gantry serve` (process runtime), against `POST /invoke` on the same no-op
//! runtime server started directly, with the same clients, in the same run: latency
//! (p50/p99) at concurrency 1 and throughput at concurrency 1 and 32, from the bench's
//! own hyper client and from wrk (`-t1`) when installed. Every answer is checked; the
//! report goes into the warm-pool section of BENCHMARKS.md. Then the same warm calls on
//! a server exporting its spans over OTLP and on one without (`warm_bench/tracing.rs`,
//! reported by `warm_bench/tracing_report.rs`).
//!
//! The no-op runtime is this program re-executed with `--noop-runtime`: a hyper
//! HTTP/1.1 keep-alive server on one thread answering `POST /invoke` with a small JSON
//! body and `GET /health` with 200 on 127.0.0.1:`PORT` (the watchdog bench's runtime).
//!
//! Environment: `GANTRY_BIN` (default target/release/gantry as cargo built it),
//! `WATCHDOG_BIN` (default target/static/watchdog), `GANTRY_BENCH_QUICK=1` (a short
//! smoke run, BENCHMARKS.md left alone), `GANTRY_BENCH_NO_WRITE=1` (report only).

// The load generator; `after_idle` is not used here.
#[allow(dead_code)]
#[path = "control_plane_bench/client.rs"]
mod client;
#[path = "warm_bench/gantry.rs"]
mod gantry;
#[path = "warm_bench/measure.rs"]
mod measure;
// The watchdog bench's HTTP module, for its no-op runtime server (`run_runtime`) and
// `wait_healthy`; its own load generator is not used here.
#[allow(dead_code)]
#[path = "../../watchdog/benches/watchdog_bench/http.rs"]
mod noop;
#[path = "warm_bench/report.rs"]
mod report;
#[path = "warm_bench/tracing.rs"]
mod tracing;
#[path = "warm_bench/tracing_report.rs"]
mod tracing_report;
// `gantry serve` on port 0 with a data directory; the crash and sweep helpers the
// control-plane bench uses are not needed here.
#[allow(dead_code, unused_imports)]
#[path = "control_plane_bench/server.rs"]
mod server;
#[path = "control_plane_bench/wrk.rs"]
mod wrk;

use std::process::ExitCode;
use std::time::Duration;

use gantry_bench_support::{repository_root, Machine, Options};

pub use gantry_bench_support::BenchResult;

/// The argument that makes this program the no-op runtime server.
pub const NOOP_RUNTIME_ARG: &str = "--noop-runtime";

/// Iteration counts and durations.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Measured rounds (after one warm-up round); every variant runs once per round.
    pub rounds: usize,
    /// Sequential calls per round at concurrency 1 (bench client).
    pub sequential: usize,
    /// Sequential calls in the warm-up round.
    pub sequential_warm_up: usize,
    /// Keep-alive connections of the concurrent load.
    pub concurrency: usize,
    /// Length of one timed load (bench client at concurrency 32, wrk at 1 and 32).
    pub duration: Duration,
    /// Length of a timed load in the warm-up round.
    pub warm_up: Duration,
}

impl Settings {
    /// A recorded run: about two minutes.
    const FULL: Settings = Settings {
        rounds: 5,
        sequential: 3000,
        sequential_warm_up: 500,
        concurrency: 32,
        duration: Duration::from_secs(3),
        warm_up: Duration::from_secs(1),
    };

    /// A smoke run (`GANTRY_BENCH_QUICK`), too short to record.
    const QUICK: Settings = Settings {
        rounds: 2,
        sequential: 200,
        sequential_warm_up: 50,
        duration: Duration::from_secs(1),
        ..Settings::FULL
    };

    /// The length of a timed load: shorter in the warm-up round.
    pub fn length(&self, warm_up: bool) -> Duration {
        if warm_up {
            self.warm_up
        } else {
            self.duration
        }
    }
}

fn run() -> BenchResult<()> {
    // A bench stopped by a signal stops what it started.
    gantry_bench_support::children::stop_children_on_signal()?;
    let options = Options::from_env();
    let settings = options.scale(Settings::FULL, |_| Settings::QUICK);
    let machine = Machine::detect().with_commit(repository_root());
    let load_before = report::load_average();
    println!("warm-pool benchmark: {}", machine.describe());
    println!("load average before: {load_before}");
    server::check_binaries("make bench-warm")?;
    println!(
        "gantry: {}; watchdog: {}; logs: {}",
        server::gantry_bin().display(),
        server::watchdog_bin().display(),
        server::log_dir().display()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let measured = measure::run(&rt, &settings)?;
    println!("tracing on and off: the same calls on a server exporting spans and on one without");
    let traced = tracing::compare(&rt, &settings)?;
    let section = report::markdown(&machine, &load_before, &settings, &measured)?;
    // The comparison goes inside the section, before its end marker.
    let end = report::SECTION.end;
    let tracing = tracing_report::markdown(&traced, &settings)?;
    let section = section.replacen(end, &format!("{tracing}\n{end}"), 1);
    if measured.pool.is_none() {
        // Without a warm pool every call was a cold start: nothing to record.
        println!("\n{section}");
        println!(
            "BENCHMARKS.md left alone: the server has no warm pool (no `pool` in GET /v1/functions/noop-warm)"
        );
        return Ok(());
    }
    report::SECTION.publish(&section, options)?;
    // The report (and its record) stands, but the run is not clean: the server must
    // stop on SIGTERM.
    measured
        .stop
        .map(|_| ())
        .map_err(|err| format!("stopping the server failed after the measurement: {err}").into())
}

/// Prints a failure as `<what> failed: <error>`; the exit code says which it was.
fn exit_code(what: &str, result: BenchResult<()>) -> ExitCode {
    result.map_or_else(
        |err| {
            eprintln!("{what} failed: {err}");
            ExitCode::FAILURE
        },
        |()| ExitCode::SUCCESS,
    )
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(NOOP_RUNTIME_ARG) {
        return exit_code("the no-op runtime", noop::run_runtime());
    }
    let result = run();
    let logs = server::log_dir();
    if result.is_ok() {
        // The logs are only kept to explain a failure.
        let _ = std::fs::remove_dir_all(&logs);
    }
    exit_code(
        &format!("the warm-pool bench (logs: {})", logs.display()),
        result,
    )
}
