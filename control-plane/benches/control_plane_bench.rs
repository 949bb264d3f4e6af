//! `make bench-control-plane`: measures the control plane against the performance
//! targets — cold start of a no-op STDIO function through the process runtime
//! (end-to-end `:invoke`, ≤ 5 ms p50, back to back and after the server was left idle)
//! and durable enqueue throughput (`:enqueue` → 202, ≥ 20,000/s) — each against
//! baselines taken in the same run — and a restart with a million queued executions
//! (ready ≤ 1 s), prints the report and refreshes the control-plane section of
//! BENCHMARKS.md.
//!
//! It runs the release `gantry serve` (`GANTRY_BIN`; default: the binary cargo built for
//! this bench, target/release/gantry) with the static watchdog (`WATCHDOG_BIN`; default
//! target/static/watchdog). `GANTRY_BENCH_QUICK=1` makes a short smoke run and leaves
//! BENCHMARKS.md alone; `GANTRY_BENCH_NO_WRITE=1` only prints the report.

#[path = "control_plane_bench/backlog.rs"]
mod backlog;
#[path = "control_plane_bench/client.rs"]
mod client;
#[path = "control_plane_bench/cold_start.rs"]
mod cold_start;
#[path = "control_plane_bench/enqueue.rs"]
mod enqueue;
#[path = "control_plane_bench/report.rs"]
mod report;
#[path = "control_plane_bench/server.rs"]
mod server;
#[path = "control_plane_bench/wrk.rs"]
mod wrk;

use std::process::ExitCode;
use std::time::Duration;

use gantry_bench_support::Options;
use report::Conditions;

pub use gantry_bench_support::BenchResult;

/// Iteration counts and durations.
#[derive(Debug)]
pub struct Settings {
    /// Measured rounds of the cold-start comparison (after one warm-up round).
    pub invoke_rounds: usize,
    /// Sequential calls per variant and round.
    pub invokes: usize,
    /// Calls per variant in the warm-up round.
    pub invoke_warm_up: usize,
    /// Calls per round made each after the server was left idle.
    pub invokes_after_idle: usize,
    /// Keep-alive connections of the enqueue load.
    pub concurrency: usize,
    /// Measured rounds of the enqueue comparison (after one warm-up round).
    pub enqueue_rounds: usize,
    /// Length of one variant's measured round.
    pub enqueue_duration: Duration,
    /// Length of one variant's warm-up.
    pub enqueue_warm_up: Duration,
    /// Queued executions of the restart with a backlog.
    pub backlog: u64,
}

impl Settings {
    /// The full counts and durations, or fewer and shorter ones for a quick run.
    fn new(options: Options) -> Settings {
        let full = Settings {
            invoke_rounds: 5,
            invokes: 300,
            invoke_warm_up: 20,
            invokes_after_idle: 40,
            concurrency: 64,
            enqueue_rounds: 3,
            enqueue_duration: Duration::from_secs(5),
            enqueue_warm_up: Duration::from_secs(1),
            backlog: 1_000_000,
        };
        options.scale(full, |full| Settings {
            invoke_rounds: 2,
            invokes: 30,
            invoke_warm_up: 5,
            invokes_after_idle: 5,
            enqueue_rounds: 1,
            enqueue_duration: Duration::from_secs(1),
            backlog: 20_000,
            ..full
        })
    }
}

/// How busy the rest of the machine kept its cores between two readings.
fn print_others(from: &report::CpuUse, to: &report::CpuUse) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (others, steal) = from.others(to, cpus);
    println!(
        "  meanwhile other processes kept {:.0} % of the cores busy; steal {:.0} %",
        others * 100.0,
        steal * 100.0
    );
}

fn run() -> BenchResult<()> {
    // A bench stopped by a signal stops what it started.
    gantry_bench_support::children::stop_children_on_signal()?;
    let options = Options::from_env();
    let settings = Settings::new(options);
    let start = Conditions::detect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    println!("control-plane benchmarks: {}", start.machine.describe());
    println!("load average before: {}", start.load_before);
    println!(
        "gantry: {}; watchdog: {}; servers' logs: {}",
        server::gantry_bin().display(),
        server::watchdog_bin().display(),
        server::log_dir().display()
    );
    server::check_binaries("make bench-control-plane")?;

    println!("[1/3] cold start: `:invoke` of a no-op STDIO function (`cat`)");
    let cold = cold_start::run(&rt, &settings)?;
    let after_cold = report::CpuUse::now();
    print_others(&start.cpu_before, &after_cold);

    println!("[2/3] durable enqueue: `:enqueue` → 202 under load, then a restart");
    let enqueue = enqueue::run(&rt, &settings)?;
    let after_enqueue = report::CpuUse::now();
    print_others(&after_cold, &after_enqueue);

    println!("[3/3] restart with {} queued executions", settings.backlog);
    let backlog = backlog::run(&rt, settings.backlog)?;
    print_others(&after_enqueue, &report::CpuUse::now());

    let (load_after, cpu_after) = (report::load_average(), report::CpuUse::now());
    let section = report::markdown(&start, &cold, &enqueue, &backlog, &load_after, &cpu_after)?;
    report::SECTION.publish(&section, options)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => {
            // The servers' logs are only kept to explain a failure.
            let _ = std::fs::remove_dir_all(server::log_dir());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!(
                "control-plane bench failed: {err}\n(servers' logs: {})",
                server::log_dir().display()
            );
            ExitCode::FAILURE
        }
    }
}
