//! A bench stopped by SIGTERM stops the processes it started. This program plays three
//! parts: the check (no argument) starts it as a bench (`--as-bench FILE`), which starts
//! it as a server (`--as-server FILE`). The server, like `gantry serve`, leaves its
//! signal mask as it found it and notes the SIGTERM it gets in FILE. The check SIGTERMs
//! the bench, then checks that the server got SIGTERM (not the SIGKILL that follows a
//! grace period) and that both are gone. Its own `main`, as a bench has.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gantry_bench_support::children::{spawn, stop_children_on_signal};
use gantry_bench_support::process::is_alive;
use gantry_bench_support::BenchResult;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const AS_BENCH: &str = "--as-bench";
const AS_SERVER: &str = "--as-server";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [part, noted] if part == AS_BENCH => run_as_bench(noted),
        [part, noted] if part == AS_SERVER => run_as_server(Path::new(noted)),
        _ => check(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("stopped_by_signal: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The bench: starts the server, says its pid once it is ready and waits to be stopped.
fn run_as_bench(noted: &str) -> BenchResult<()> {
    stop_children_on_signal()?;
    // A thread of the bench's own, as its runtime would have.
    let worker = std::thread::spawn(|| std::thread::sleep(Duration::from_secs(300)));
    let mut server = spawn(
        Command::new(std::env::current_exe()?)
            .args([AS_SERVER, noted])
            .stdin(Stdio::null())
            .stdout(Stdio::piped()),
    )?;
    let mut ready = String::new();
    BufReader::new(server.stdout.take().ok_or("no stdout")?).read_line(&mut ready)?;
    println!("child {}", server.id());
    let _ = worker.join();
    Err("the bench was not stopped".into())
}

/// The server: says `ready` once SIGTERM is hooked, writes `TERM` to `noted` when it
/// comes, and exits.
fn run_as_server(noted: &Path) -> BenchResult<()> {
    let terminated = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, terminated.clone())?;
    println!("ready");
    let started = Instant::now();
    while !terminated.load(Ordering::SeqCst) {
        if started.elapsed() > Duration::from_secs(300) {
            return Err("the server was never stopped".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(noted, "TERM")?;
    Ok(())
}

/// Starts the bench, SIGTERMs it once its server runs, and checks both are gone.
fn check() -> BenchResult<()> {
    let noted = std::env::temp_dir().join(format!("stopped-by-signal-{}", std::process::id()));
    let _ = std::fs::remove_file(&noted);
    let mut bench = Command::new(std::env::current_exe()?)
        .arg(AS_BENCH)
        .arg(&noted)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(bench.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    let server: u32 = line
        .strip_prefix("child ")
        .and_then(|pid| pid.trim().parse().ok())
        .ok_or_else(|| format!("the bench said {line:?}"))?;
    if !is_alive(server) {
        return Err("the bench's server was not running before the signal".into());
    }
    kill(Pid::from_raw(i32::try_from(bench.id())?), Signal::SIGTERM)?;
    let status = bench.wait()?;
    if status.code() != Some(128 + Signal::SIGTERM as i32) {
        return Err(format!("the bench ended with {status}, not 128 + SIGTERM").into());
    }
    // The orphaned server is reaped by init (or a subreaper) once it exits.
    let started = Instant::now();
    while is_alive(server) {
        if started.elapsed() > Duration::from_secs(20) {
            let _ = kill(Pid::from_raw(i32::try_from(server)?), Signal::SIGKILL);
            return Err(format!("the bench's server {server} outlived it").into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let note = std::fs::read_to_string(&noted).unwrap_or_default();
    let _ = std::fs::remove_file(&noted);
    if note != "TERM" {
        return Err("the bench's server never got SIGTERM (it was SIGKILLed)".into());
    }
    println!("stopped_by_signal: the bench's server got SIGTERM, and both are gone");
    Ok(())
}
