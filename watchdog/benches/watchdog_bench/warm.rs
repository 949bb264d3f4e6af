//! WARM-mode benchmarks: the HTTP proxy (watchdog → runtime) against the same runtime
//! called directly, the watchdog's memory before and after load, and a STDIO process per
//! call (`cat`) against spawning `cat` directly.

use std::process::Command;
use std::time::{Duration, Instant};

use gantry_bench_support::stats::{interleave, Progress, Summary, Variant};
use nix::sched::{sched_getaffinity, sched_setaffinity, CpuSet};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::runtime::Runtime;

use crate::http::{self, Call};
use crate::procs::{self, free_port, local, Guarded, Memory};
use crate::{BenchResult, Settings, ENVELOPE, PAYLOAD};

/// What the WARM HTTP benchmark measured.
#[derive(Debug)]
pub struct HttpProxy {
    /// From spawning the watchdog until its `/health` answered 200 (runtime ready).
    pub ready: Duration,
    /// The watchdog's memory, ready and idle, before any invocation.
    pub idle: Memory,
    /// The watchdog's memory after the concurrency-1 rounds and [`IDLE_AFTER_LOAD`] idle,
    /// and how many invocations it had completed by then.
    pub after_c1: (Memory, u64),
    /// The same after the concurrent rounds too.
    pub after_c32: (Memory, u64),
    /// The runtime called directly (the same program the watchdog runs), idle.
    pub runtime_idle: Memory,
    /// The same after its runtime was killed and restarted, which closes the pooled
    /// connections to it.
    pub after_restart: Memory,
    /// Concurrency 1: `direct`, `watchdog raw`, `watchdog envelope`.
    pub c1: Level,
    /// Concurrency 32: `direct`, `watchdog raw`.
    pub c32: Level,
    /// Concurrency 1 again, with the client, the watchdog and both runtimes on one CPU.
    pub pinned: Level,
    /// From SIGTERM until the watchdog (and its runtime) exited.
    pub stop: Duration,
}

/// One comparison of the proxy against the direct runtime at a given concurrency.
#[derive(Debug)]
pub struct Level {
    /// Workers, each on its own connection.
    pub concurrency: usize,
    /// One per variant.
    pub summaries: Vec<Summary>,
    /// CPU time the watchdog used per invocation it completed, in µs.
    pub watchdog_cpu_us: f64,
    /// CPU time the directly called runtime used per request, in µs.
    pub runtime_cpu_us: f64,
}

/// What the WARM STDIO benchmark measured.
#[derive(Debug)]
pub struct StdioCat {
    /// The watchdog's memory, ready and idle.
    pub idle: Memory,
    /// `cat spawned directly`, `watchdog WARM STDIO`.
    pub c1: Vec<Summary>,
}

/// WARM mode settings; [`WarmWatchdog::start`] adds WARM_PORT.
fn warm_vars(runtime: &str, command: String) -> Vec<(&'static str, String)> {
    vec![
        ("EXECUTION_MODE", "WARM".into()),
        ("WARM_RUNTIME", runtime.into()),
        ("WATCHDOG_CMD", command),
        ("WARM_HOST", "127.0.0.1".into()),
        ("WARM_CONCURRENCY", "64".into()),
        ("WARM_IDLE_TIMEOUT_MS", "0".into()),
    ]
}

/// A started WARM watchdog: its process and address.
struct WarmWatchdog {
    process: Guarded,
    port: u16,
    ready: Duration,
}

impl WarmWatchdog {
    fn start(
        rt: &Runtime,
        name: &str,
        mut vars: Vec<(&'static str, String)>,
    ) -> BenchResult<WarmWatchdog> {
        let port = free_port()?;
        vars.push(("WARM_PORT", port.to_string()));
        let started = Instant::now();
        let mut process = Guarded::spawn(name, &mut procs::watchdog_command(&vars))?;
        rt.block_on(http::wait_healthy(
            local(port),
            Duration::from_secs(15),
            || process.check_alive(),
        ))?;
        Ok(WarmWatchdog {
            process,
            port,
            ready: started.elapsed(),
        })
    }

    /// Stops it with SIGTERM; it must exit 0 and take its children with it.
    fn stop(mut self) -> BenchResult<Duration> {
        let children = procs::children_of(self.process.pid());
        let (status, took) = self.process.stop(Duration::from_secs(10))?;
        if !status.success() {
            return Err(format!("the WARM watchdog exited with {status} on SIGTERM").into());
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while children.iter().any(|&pid| procs::is_alive(pid)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left: Vec<u32> = children
            .into_iter()
            .filter(|&pid| procs::is_alive(pid))
            .collect();
        if !left.is_empty() {
            for &pid in &left {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            return Err(format!("the watchdog left processes {left:?} behind (killed)").into());
        }
        Ok(took)
    }
}

fn settle_and_measure(pid: u32, settle: Duration) -> BenchResult<Memory> {
    std::thread::sleep(settle);
    procs::memory(pid)
}

/// A variant that sends `call` to `port` in rounds of `concurrency` × `per_worker`.
fn load_variant<'a>(
    rt: &'a Runtime,
    name: &'static str,
    port: u16,
    call: Call,
    (concurrency, per_worker): (usize, usize),
    expect: &'static str,
) -> Variant<'a> {
    Variant::new(name, move |_warm_up| {
        rt.block_on(http::load(
            local(port),
            &call,
            concurrency,
            per_worker,
            expect,
        ))
    })
}

const RUNTIME_OK: &str = r#""ok":true"#;
const REPORT_OK: &str = r#""success":true"#;

/// The runtime started directly and a WARM HTTP watchdog running another copy of it.
struct Pair {
    direct: Guarded,
    watchdog: WarmWatchdog,
    ports: Ports,
}

impl Pair {
    fn start(rt: &Runtime, label: &str) -> BenchResult<Pair> {
        let runtime_port = free_port()?;
        let mut direct = Guarded::spawn(
            &format!("runtime-direct{label}"),
            Command::new(std::env::current_exe()?)
                .env("GANTRY_BENCH_ROLE", "runtime")
                .env("PORT", runtime_port.to_string()),
        )?;
        rt.block_on(http::wait_healthy(
            local(runtime_port),
            Duration::from_secs(10),
            || direct.check_alive(),
        ))?;
        let mut vars = warm_vars("HTTP", procs::self_command()?);
        let runtime_url = format!("http://127.0.0.1:{}/invoke", free_port()?);
        vars.push(("RUNTIME_URL", runtime_url));
        vars.push(("GANTRY_BENCH_ROLE", "runtime".into()));
        let watchdog = WarmWatchdog::start(rt, &format!("watchdog-warm-http{label}"), vars)?;
        println!(
            "  WARM HTTP watchdog pid {} ready on :{} in {:.1} ms; runtime called directly on :{runtime_port}",
            watchdog.process.pid(),
            watchdog.port,
            watchdog.ready.as_secs_f64() * 1e3
        );
        let ports = Ports {
            direct: (runtime_port, direct.pid()),
            watchdog: (watchdog.port, watchdog.process.pid()),
        };
        Ok(Pair {
            direct,
            watchdog,
            ports,
        })
    }

    /// Stops both; returns how long the watchdog took to exit on SIGTERM.
    fn stop(mut self) -> BenchResult<Duration> {
        let stop = self.watchdog.stop()?;
        self.direct.stop(Duration::from_secs(5))?;
        Ok(stop)
    }
}

/// The WARM HTTP proxy against the runtime called directly, interleaved.
pub fn http_proxy(rt: &Runtime, settings: &Settings) -> BenchResult<HttpProxy> {
    let Pair {
        direct,
        mut watchdog,
        ports,
    } = Pair::start(rt, "")?;
    let idle = settle_and_measure(watchdog.process.pid(), Duration::from_millis(500))?;
    let runtime_idle = procs::memory(direct.pid())?;
    println!(
        "  idle RSS: watchdog {} KiB, runtime {} KiB",
        idle.rss_kib, runtime_idle.rss_kib
    );

    let c1 = level(rt, settings, ports, (1, settings.c1_requests))?;
    let after_c1 = after_burst(rt, &watchdog)?;
    let c32 = level(
        rt,
        settings,
        ports,
        (settings.concurrency, settings.per_worker),
    )?;
    let after_c32 = after_burst(rt, &watchdog)?;
    let after_restart = after_runtime_restart(rt, &mut watchdog)?;
    let ready = watchdog.ready;
    let stop = Pair {
        direct,
        watchdog,
        ports,
    }
    .stop()?;
    let pinned = pinned_c1(rt, settings)?;
    Ok(HttpProxy {
        ready,
        idle,
        after_c1,
        after_c32,
        after_restart,
        runtime_idle,
        c1,
        c32,
        pinned,
        stop,
    })
}

/// Port and pid of the two targets of a comparison.
#[derive(Debug, Clone, Copy)]
struct Ports {
    direct: (u16, u32),
    watchdog: (u16, u32),
}

/// CPU used so far by the direct runtime and the watchdog, and the watchdog's count of
/// completed invocations.
fn cpu_snapshot(rt: &Runtime, ports: Ports) -> BenchResult<(Duration, Duration, u64)> {
    Ok((
        procs::cpu_time(ports.direct.1)?,
        procs::cpu_time(ports.watchdog.1)?,
        rt.block_on(completed(ports.watchdog.0))?,
    ))
}

/// Interleaved rounds of `direct` and `watchdog raw` (plus `watchdog envelope` at
/// concurrency 1) with `concurrency` workers of `per_worker` requests each.
fn level(
    rt: &Runtime,
    settings: &Settings,
    ports: Ports,
    (concurrency, per_worker): (usize, usize),
) -> BenchResult<Level> {
    println!("  concurrency {concurrency}, {per_worker} requests per worker per round:");
    let shape = (concurrency, per_worker);
    let (direct, watchdog) = (ports.direct.0, ports.watchdog.0);
    let mut variants = vec![
        load_variant(rt, "direct", direct, Call::raw(PAYLOAD), shape, RUNTIME_OK),
        load_variant(
            rt,
            "watchdog raw",
            watchdog,
            Call::raw(PAYLOAD),
            shape,
            REPORT_OK,
        ),
    ];
    if concurrency == 1 {
        let envelope = Call::envelope(ENVELOPE);
        variants.push(load_variant(
            rt,
            "watchdog envelope",
            watchdog,
            envelope,
            shape,
            REPORT_OK,
        ));
    }
    let before = cpu_snapshot(rt, ports)?;
    let summaries = interleave(settings.rounds, &mut variants, Progress::Round)?;
    let after = cpu_snapshot(rt, ports)?;
    // Each round of `load` sends one unmeasured check request, then the measured ones.
    let direct_requests = (settings.rounds + 1) * (concurrency * per_worker + 1);
    let per_call = |used: Duration, calls: f64| used.as_secs_f64() * 1e6 / calls.max(1.0);
    let level = Level {
        concurrency,
        summaries,
        runtime_cpu_us: per_call(after.0 - before.0, direct_requests as f64),
        watchdog_cpu_us: per_call(after.1 - before.1, (after.2 - before.2) as f64),
    };
    println!(
        "  CPU per call: watchdog {:.1} µs per invocation, runtime {:.1} µs per request",
        level.watchdog_cpu_us, level.runtime_cpu_us
    );
    Ok(level)
}

/// How long "idle" lasts before memory is measured after load: past the watchdog's idle
/// connection expiry (5 s, `http_client::IDLE_EXPIRY`) and its pruning interval, so the
/// keep-alive connections of the burst are closed, as in a real idle spell.
pub const IDLE_AFTER_LOAD: Duration = Duration::from_secs(7);

/// The watchdog's memory after [`IDLE_AFTER_LOAD`] of idleness, and its completed invocations.
fn after_burst(rt: &Runtime, watchdog: &WarmWatchdog) -> BenchResult<(Memory, u64)> {
    let memory = settle_and_measure(watchdog.process.pid(), IDLE_AFTER_LOAD)?;
    let invocations = rt.block_on(completed(watchdog.port))?;
    println!(
        "  after {invocations} invocations and {} s idle: watchdog RSS {} KiB (peak {} KiB), {} open sockets",
        IDLE_AFTER_LOAD.as_secs(),
        memory.rss_kib, memory.hwm_kib, memory.sockets
    );
    Ok((memory, invocations))
}

/// Runs this thread on CPU 0 only while it lives; children started meanwhile inherit it.
struct PinnedToCpu0(CpuSet);

impl PinnedToCpu0 {
    fn new() -> BenchResult<PinnedToCpu0> {
        let previous = sched_getaffinity(Pid::from_raw(0))?;
        let mut cpu0 = CpuSet::new();
        cpu0.set(0)?;
        sched_setaffinity(Pid::from_raw(0), &cpu0)?;
        Ok(PinnedToCpu0(previous))
    }
}

impl Drop for PinnedToCpu0 {
    fn drop(&mut self) {
        let _ = sched_setaffinity(Pid::from_raw(0), &self.0);
    }
}

/// The concurrency-1 comparison with a fresh pair and every process on CPU 0: no
/// wake-up crosses CPUs, so what remains is the work each process does.
fn pinned_c1(rt: &Runtime, settings: &Settings) -> BenchResult<Level> {
    println!("  the same at concurrency 1 with every process pinned to CPU 0:");
    let _pinned = PinnedToCpu0::new()?;
    let pair = Pair::start(rt, "-pinned")?;
    let level = level(rt, settings, pair.ports, (1, settings.c1_requests))?;
    pair.stop()?;
    Ok(level)
}

/// SIGKILLs the watchdog's runtime, so the connections pooled to it close, waits until
/// the watchdog has started a new one and is healthy, and measures after 1 s idle.
fn after_runtime_restart(rt: &Runtime, watchdog: &mut WarmWatchdog) -> BenchResult<Memory> {
    let old = procs::children_of(watchdog.process.pid());
    for &pid in &old {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !procs::children_of(watchdog.process.pid())
        .iter()
        .any(|pid| !old.contains(pid))
    {
        watchdog.process.check_alive()?;
        if Instant::now() >= deadline {
            return Err("the watchdog did not restart its killed runtime".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let port = watchdog.port;
    rt.block_on(http::wait_healthy(
        local(port),
        Duration::from_secs(10),
        || watchdog.process.check_alive(),
    ))?;
    let memory = settle_and_measure(watchdog.process.pid(), Duration::from_secs(1))?;
    println!(
        "  after its runtime was killed and restarted, 1 s idle: watchdog RSS {} KiB, {} open sockets",
        memory.rss_kib, memory.sockets
    );
    Ok(memory)
}

/// The `completed` count from the watchdog's `/health`.
async fn completed(port: u16) -> BenchResult<u64> {
    let mut connection = http::connect(local(port)).await?;
    let (_, body) = Call::health().send(&mut connection).await?;
    let health: serde_json::Value = serde_json::from_slice(&body)?;
    health["completed"]
        .as_u64()
        .ok_or_else(|| format!("no completed count in /health: {health}").into())
}

/// WARM STDIO with `cat` per call against spawning `cat` directly, interleaved.
pub fn stdio_cat(rt: &Runtime, settings: &Settings) -> BenchResult<StdioCat> {
    let watchdog =
        WarmWatchdog::start(rt, "watchdog-warm-stdio", warm_vars("STDIO", "cat".into()))?;
    let idle = settle_and_measure(watchdog.process.pid(), Duration::from_millis(300))?;
    println!(
        "  WARM STDIO watchdog pid {} ready on :{}; idle RSS {} KiB; {} calls per round:",
        watchdog.process.pid(),
        watchdog.port,
        idle.rss_kib,
        settings.stdio_calls
    );
    let calls = settings.stdio_calls;
    let c1 = interleave(
        settings.rounds,
        &mut [
            procs::cat_variant(calls),
            load_variant(
                rt,
                "watchdog",
                watchdog.port,
                Call::raw(PAYLOAD),
                (1, calls),
                REPORT_OK,
            ),
        ],
        Progress::Round,
    )?;
    watchdog.stop()?;
    Ok(StdioCat { idle, c1 })
}
