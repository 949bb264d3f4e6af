//! Benchmark 1, cold start through the process runtime: sequential
//! `POST /v1/functions/noop:invoke` of a no-op STDIO function (`cat` echoing `{}`), each
//! a fresh watchdog and `cat` process, against two floors measured in the same rounds:
//! the same watchdog run directly (no control plane) and `GET /healthz` on the same
//! server (the HTTP round trip).

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

/// What the cold-start benchmark measured.
#[derive(Debug)]
pub struct ColdStart {
    /// One per variant: [`DIRECT`], [`HEALTHZ`], [`INVOKE`].
    pub summaries: Vec<Summary>,
    /// Invocations per measured round.
    pub per_round: usize,
    /// Invocations the bench made (warm-up included).
    pub sent: u64,
    /// Processes of the server still running after it stopped.
    pub left_behind: usize,
}

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
    let mut sent = 0u64;
    let summaries = {
        let server = &server;
        let sent = &mut sent;
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
                let expect = Expect {
                    status: StatusCode::OK,
                    body: Some(r#""status":"success""#),
                };
                *sent += count(warm) as u64;
                measured(rt, server, &invoke, count(warm), expect)
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
        sent,
        left_behind,
    })
}

/// The value of the Prometheus sample `name{labels}` in a text exposition.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}
