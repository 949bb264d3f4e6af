//! Benchmark 1, cold start through the process runtime: sequential
//! `POST /v1/functions/noop:invoke` of a no-op STDIO function (`cat` echoing `{}`), each
//! a fresh watchdog and `cat` process, against two floors measured in the same rounds:
//! the same watchdog run directly (no control plane) and `GET /healthz` on the same
//! server (the HTTP round trip).

use std::cell::Cell;
use std::time::{Duration, Instant};

use gantry_bench_support::stats::{interleave, Progress, Sample, Summary, Variant};
use hyper::StatusCode;
use serde_json::json;
use tokio::runtime::Runtime;

use crate::client::{self, Call, Expect};
use crate::server::{self, Server};
use crate::{BenchResult, Settings};

/// Label of the direct-watchdog baseline.
pub const DIRECT: &str = "watchdog run directly";
/// Label of the HTTP baseline.
pub const HEALTHZ: &str = "GET /healthz";
/// Label of the measured variant.
pub const INVOKE: &str = "POST noop:invoke";
/// Label of the same calls each made after the server was left idle.
pub const INVOKE_AFTER_IDLE: &str = "POST noop:invoke after idle";

/// How long the server is left idle before each call of [`INVOKE_AFTER_IDLE`]: long
/// enough for the kernel to have forgotten the last cgroup join.
pub const IDLE: Duration = Duration::from_millis(100);

/// What the cold-start benchmark measured.
#[derive(Debug)]
pub struct ColdStart {
    /// One per variant: [`DIRECT`], [`HEALTHZ`], [`INVOKE`], [`INVOKE_AFTER_IDLE`].
    pub summaries: Vec<Summary>,
    /// Invocations per measured round.
    pub per_round: usize,
    /// Invocations after idle per measured round.
    pub after_idle_per_round: usize,
    /// Invocations the bench made (warm-up included).
    pub sent: u64,
    /// Processes of the server still running after it stopped.
    pub left_behind: usize,
}

/// A successful `:invoke`.
const SUCCESS: Expect = Expect {
    status: StatusCode::OK,
    body: Some(r#""status":"success""#),
};

/// `calls` sequential requests, with the server's CPU time over the round.
fn measured(
    rt: &Runtime,
    server: &Server,
    call: &Call,
    calls: usize,
    expect: Expect,
) -> BenchResult<Sample> {
    let pid = server.pid();
    let (cpu_before, switches_before) = (server::cpu_time(pid)?, server::context_switches(pid)?);
    let mut sample = rt.block_on(client::sequential(server.addr, call, calls, expect))?;
    sample.server_cpu = Some(server::cpu_time(pid)? - cpu_before);
    sample.server_switches = Some(server::context_switches(pid)? - switches_before);
    Ok(sample)
}

/// Runs the comparison on a fresh server.
pub fn run(rt: &Runtime, settings: &Settings) -> BenchResult<ColdStart> {
    let data = tempfile::Builder::new()
        .prefix("gantry-bench-cold-")
        .tempdir()?;
    let mut server = Server::start("cold-start", data.path())?;
    println!(
        "  server {} (pid {}), ready in {:.0} ms",
        server.url,
        server.pid(),
        server.started_in.as_secs_f64() * 1e3
    );
    rt.block_on(server.deploy(json!({"name": "noop", "mode": "STDIO", "command": "cat"})))?;
    let (calls, warm_up) = (settings.invokes, settings.invoke_warm_up);
    println!("  {calls} sequential calls per variant and round, {warm_up} in the warm-up");
    let count = move |warm: bool| if warm { warm_up } else { calls };
    let invoke = Call::post("/v1/functions/noop:invoke", "{}");
    let healthz = Call::get("/healthz");
    let sent = Cell::new(0u64);
    let summaries = {
        let (server, sent, invoke) = (&server, &sent, &invoke);
        let mut variants = [
            Variant::new(DIRECT, move |warm| {
                let started = Instant::now();
                let latencies = (0..count(warm))
                    .map(|_| server::run_watchdog_directly())
                    .collect::<BenchResult<Vec<Duration>>>()?;
                Ok(Sample::timed(latencies, started.elapsed()))
            }),
            Variant::new(HEALTHZ, move |warm| {
                let expect = Expect {
                    status: StatusCode::OK,
                    body: None,
                };
                measured(rt, server, &healthz, count(warm), expect)
            }),
            Variant::new(INVOKE, move |warm| {
                sent.set(sent.get() + count(warm) as u64);
                measured(rt, server, invoke, count(warm), SUCCESS)
            }),
            Variant::new(INVOKE_AFTER_IDLE, move |warm| {
                let calls = if warm { 1 } else { settings.invokes_after_idle };
                sent.set(sent.get() + calls as u64);
                rt.block_on(client::after_idle(
                    server.addr,
                    invoke,
                    calls,
                    SUCCESS,
                    IDLE,
                ))
            }),
        ];
        interleave(settings.invoke_rounds, &mut variants, Progress::Variant)?
    };
    let metrics = rt.block_on(server.get("/metrics"))?.text();
    let server_successes = metric(
        &metrics,
        r#"gantry_invocations_total{function="noop",status="success"}"#,
    )
    .unwrap_or(0.0) as u64;
    let sent = sent.get();
    if server_successes != sent {
        return Err(format!(
            "the bench made {sent} invocations but the server counted {server_successes} successes"
        )
        .into());
    }
    let (_, left_behind) = server.stop_and_sweep()?;
    Ok(ColdStart {
        summaries,
        per_round: calls,
        after_idle_per_round: settings.invokes_after_idle,
        sent,
        left_behind,
    })
}

/// The value of the Prometheus sample `name{labels}` in a text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}
