//! `make bench-watchdog`: measures the watchdog against the performance targets — static
//! binary size, idle RSS, WARM HTTP proxy overhead, WARM STDIO per-call latency and
//! one-shot STDIO exec-to-callback time — each against a baseline taken in the same run,
//! prints the report and refreshes the watchdog section of BENCHMARKS.md.
//!
//! Environment: `WATCHDOG_BIN` (the binary to measure; default: the one cargo built),
//! `GANTRY_BENCH_QUICK=1` (few iterations, BENCHMARKS.md left alone),
//! `GANTRY_BENCH_NO_WRITE=1` (report only). `GANTRY_BENCH_ROLE=runtime` is internal: the
//! bench re-executes itself as the HTTP runtime.

#[path = "watchdog_bench/http.rs"]
mod http;
#[path = "watchdog_bench/oneshot.rs"]
mod oneshot;
#[path = "watchdog_bench/procs.rs"]
mod procs;
#[path = "watchdog_bench/report.rs"]
mod report;
#[path = "watchdog_bench/warm.rs"]
mod warm;

use std::process::ExitCode;

use gantry_bench_support::{repository_root, Machine, Options};
use report::{BinarySize, Results};

pub use gantry_bench_support::BenchResult;

/// The invocation payload (small JSON).
pub const PAYLOAD: &[u8] = br#"{"name":"gantry","n":42}"#;
/// The same payload in the `/invoke` envelope.
pub const ENVELOPE: &[u8] = br#"{"execution_id":"bench-exec","payload":{"name":"gantry","n":42}}"#;

/// Iteration counts.
#[derive(Debug)]
pub struct Settings {
    /// Measured rounds per comparison (after one warm-up round).
    pub rounds: usize,
    /// Requests per round at concurrency 1 (HTTP proxy).
    pub c1_requests: usize,
    /// Workers of the concurrent HTTP proxy comparison.
    pub concurrency: usize,
    /// Requests per worker per round at that concurrency.
    pub per_worker: usize,
    /// WARM STDIO calls per round.
    pub stdio_calls: usize,
    /// Rounds of the one-shot comparison.
    pub oneshot_rounds: usize,
    /// One-shot runs per round.
    pub oneshot_runs: usize,
}

impl Settings {
    /// The full counts, or a tenth of them (fewer rounds) for a quick run.
    fn new(options: Options) -> Settings {
        let full = Settings {
            rounds: 15,
            c1_requests: 3000,
            concurrency: 32,
            per_worker: 300,
            stdio_calls: 300,
            oneshot_rounds: 5,
            oneshot_runs: 40,
        };
        options.scale(full, |full| Settings {
            rounds: 3,
            c1_requests: full.c1_requests / 10,
            per_worker: full.per_worker / 10,
            stdio_calls: full.stdio_calls / 10,
            oneshot_rounds: 2,
            oneshot_runs: 10,
            ..full
        })
    }
}

fn binary_size() -> BenchResult<BinarySize> {
    let path = procs::watchdog_bin();
    let bytes = std::fs::read(&path)
        .map_err(|err| format!("cannot read the watchdog binary {}: {err}", path.display()))?;
    Ok(BinarySize {
        path: path
            .strip_prefix(repository_root())
            .unwrap_or(&path)
            .display()
            .to_string(),
        bytes: bytes.len() as u64,
        is_static: !has_interpreter(&bytes),
    })
}

/// Whether an ELF64 image has a PT_INTERP program header (a dynamic loader).
fn has_interpreter(elf: &[u8]) -> bool {
    let read = |at: usize, len: usize| -> u64 {
        elf.get(at..at + len).map_or(0, |bytes| {
            bytes
                .iter()
                .rev()
                .fold(0, |acc, &b| (acc << 8) | u64::from(b))
        })
    };
    let (phoff, phentsize, phnum) = (
        read(0x20, 8) as usize,
        read(0x36, 2) as usize,
        read(0x38, 2),
    );
    (0..phnum as usize).any(|i| read(phoff + i * phentsize, 4) == 3)
}

fn run() -> BenchResult<()> {
    // A bench stopped by a signal stops what it started.
    gantry_bench_support::children::stop_children_on_signal()?;
    let options = Options::from_env();
    let settings = Settings::new(options);
    let machine = Machine::detect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!("watchdog benchmarks: {}", machine.describe());
    println!("children's logs: {}", procs::log_dir().display());

    println!("[1/5] static binary size");
    let size = binary_size()?;
    println!(
        "  {}: {} bytes, static: {}",
        size.path, size.bytes, size.is_static
    );

    println!(
        "[2/5, 3/5] WARM HTTP: idle RSS and proxy overhead against the runtime called directly"
    );
    let http = warm::http_proxy(&rt, &settings)?;

    println!("[4/5] WARM STDIO with `cat`, a process per call");
    let stdio = warm::stdio_cat(&rt, &settings)?;

    println!("[5/5] one-shot STDIO: exec → callback");
    let oneshot = oneshot::stdio_callback(&rt, &settings)?;

    let results = Results {
        size,
        http,
        stdio,
        oneshot,
        rounds: settings.rounds,
    };
    report::SECTION.publish(&report::markdown(&results, &machine), options)
}

fn main() -> ExitCode {
    let outcome = if std::env::var("GANTRY_BENCH_ROLE").as_deref() == Ok("runtime") {
        http::run_runtime()
    } else {
        run().inspect(|()| {
            // The children's logs are only kept to explain a failure.
            let _ = std::fs::remove_dir_all(procs::log_dir());
        })
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("watchdog bench failed: {err}");
            ExitCode::FAILURE
        }
    }
}
