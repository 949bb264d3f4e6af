//! A bench stopped by SIGTERM stops the processes it started: this program runs itself
//! as such a bench (`--as-bench`), which starts a `sleep` and waits, then SIGTERMs it
//! and checks that the `sleep` went with it. Its own `main` (no test harness), so the
//! signals are blocked before any thread starts, as in a bench.

use std::io::{BufRead, BufReader};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use gantry_bench_support::children::{spawn, stop_children_on_signal};
use gantry_bench_support::process::is_alive;
use gantry_bench_support::BenchResult;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const AS_BENCH: &str = "--as-bench";

fn main() -> ExitCode {
    let result = if std::env::args().any(|arg| arg == AS_BENCH) {
        run_as_bench()
    } else {
        check()
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stopped_by_signal: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The bench: starts `sleep 300`, says its pid and waits to be stopped.
fn run_as_bench() -> BenchResult<()> {
    stop_children_on_signal()?;
    // A thread started after the signals were blocked, as a bench's runtime would be.
    let worker = std::thread::spawn(|| std::thread::sleep(Duration::from_secs(300)));
    let sleeper = spawn(Command::new("sleep").arg("300").stdin(Stdio::null()))?;
    println!("child {}", sleeper.id());
    let _ = worker.join();
    Err("the bench was not stopped".into())
}

/// Starts the bench, SIGTERMs it once its child runs, and checks both are gone.
fn check() -> BenchResult<()> {
    let mut bench = Command::new(std::env::current_exe()?)
        .arg(AS_BENCH)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(bench.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let sleeper: u32 = line
        .strip_prefix("child ")
        .and_then(|pid| pid.trim().parse().ok())
        .ok_or_else(|| format!("the bench said {line:?}"))?;
    if !is_alive(sleeper) {
        return Err("the bench's child was not running before the signal".into());
    }
    kill(Pid::from_raw(i32::try_from(bench.id())?), Signal::SIGTERM)?;
    let status = bench.wait()?;
    if status.code() != Some(128 + Signal::SIGTERM as i32) {
        return Err(format!("the bench ended with {status}, not 128 + SIGTERM").into());
    }
    // The orphaned `sleep` is reaped by init (or a subreaper) once it dies.
    let started = Instant::now();
    while is_alive(sleeper) {
        if started.elapsed() > Duration::from_secs(10) {
            let _ = kill(Pid::from_raw(i32::try_from(sleeper)?), Signal::SIGKILL);
            return Err(format!("the bench's child {sleeper} outlived it").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    println!("stopped_by_signal: the bench and its child are gone");
    Ok(())
}
