//! Benchmark 3, restart with a large backlog: a server is given a million queued
//! executions through `:enqueue` (the same `sink` as benchmark 2, which runs one at a
//! time), killed with SIGKILL and restarted on the same data directory. It measures
//! spawn → listening, listening → the first `:invoke` of another function answered, and
//! listening → every queued execution queued again (`gantry_recovery_active` back to
//! 0), then checks that none was lost and reads the restarted server's peak memory.

use std::time::{Duration, Instant};

use gantry_bench_support::format::{grouped, time};
use hyper::StatusCode;
use serde_json::json;
use tokio::runtime::Runtime;

use crate::client::{self, Call, Expect};
use crate::cold_start::metric;
use crate::server::{self, Server};
use crate::BenchResult;

/// Length of one round of enqueue load while the backlog is filled.
const FILL_ROUND: Duration = Duration::from_secs(10);
/// Keep-alive connections of the fill.
const FILL_CONNECTIONS: usize = 64;
/// Longest wait for the background re-queue to finish.
const REQUEUE_LIMIT: Duration = Duration::from_secs(300);

/// What the restart with a backlog measured.
#[derive(Debug)]
pub struct Backlog {
    /// Executions queued when the server was killed.
    pub queued: u64,
    /// Time it took to enqueue them.
    pub filled_in: Duration,
    /// Spawn → listening of the restarted server.
    pub listening_in: Duration,
    /// Listening → the first `:invoke` of `echo` answered 200.
    pub first_invoke_in: Duration,
    /// That `:invoke`'s own latency.
    pub first_invoke_took: Duration,
    /// Listening → `gantry_recovery_active` 0.
    pub requeued_in: Duration,
    /// Executions the restarted server holds for `sink` once it is done.
    pub held: u64,
    /// Peak resident memory of the restarted server (VmHWM), in bytes.
    pub peak_rss: u64,
    /// Size of the database files at the kill.
    pub db_bytes: u64,
}

/// Fills, kills, restarts and measures, with `target` queued executions.
pub fn run(rt: &Runtime, target: u64) -> BenchResult<Backlog> {
    let data = tempfile::Builder::new()
        .prefix("gantry-bench-backlog-")
        .tempdir()?;
    let server = Server::start("backlog", data.path())?;
    let sink = json!({
        "name": "sink", "mode": "STDIO", "command": "sleep 600",
        "resources": {"timeout_ms": 900_000},
        "concurrency": {"max_in_flight": 1, "max_queue": 10_000_000},
    });
    rt.block_on(server.deploy(sink))?;
    rt.block_on(server.deploy(json!({"name": "echo", "mode": "STDIO", "command": "cat"})))?;
    let started = Instant::now();
    let queued = fill(rt, &server, target)?;
    let filled_in = started.elapsed();
    println!(
        "  {} executions queued in {:.0} s; SIGKILL and restart",
        grouped(queued),
        filled_in.as_secs_f64()
    );
    let db_bytes = crate::enqueue::database_size(data.path());
    server.crash()?;
    let mut restarted = match Server::start("backlog-restarted", data.path()) {
        Ok(restarted) => restarted,
        Err(err) => {
            server::sweep(data.path());
            return Err(err);
        }
    };
    let listening = Instant::now();
    let invoke = Call::post("/v1/functions/echo:invoke", r#"{"ping":1}"#);
    let sent = Instant::now();
    let answer = rt.block_on(invoke.once(restarted.addr))?;
    let (first_invoke_in, first_invoke_took) = (listening.elapsed(), sent.elapsed());
    if answer.status != StatusCode::OK || !answer.text().contains("ping") {
        return Err(format!(
            "`:invoke` of echo after the restart answered {}: {}",
            answer.status,
            answer.text()
        )
        .into());
    }
    let requeued_in = rt.block_on(wait_requeued(&restarted))? + first_invoke_in;
    let metrics = rt.block_on(restarted.get("/metrics"))?.text();
    let held = crate::enqueue::stored(&metrics, "sink");
    if held != queued {
        return Err(format!(
            "{queued} executions were queued before the kill, but the restarted server holds {held}"
        )
        .into());
    }
    let peak_rss = server::peak_rss(restarted.pid())?;
    restarted.stop_and_sweep()?;
    let backlog = Backlog {
        queued,
        filled_in,
        listening_in: restarted.started_in,
        first_invoke_in,
        first_invoke_took,
        requeued_in,
        held,
        peak_rss,
        db_bytes,
    };
    println!(
        "  listening in {:.2} s; first `:invoke` answered {:.0} ms after; all queued again after {:.1} s; peak RSS {} MiB",
        backlog.listening_in.as_secs_f64(),
        backlog.first_invoke_in.as_secs_f64() * 1e3,
        backlog.requeued_in.as_secs_f64(),
        backlog.peak_rss >> 20
    );
    Ok(backlog)
}

/// Enqueues into `sink` in rounds until at least `target` are stored; answers how many.
fn fill(rt: &Runtime, server: &Server, target: u64) -> BenchResult<u64> {
    let enqueue = Call::post("/v1/functions/sink:enqueue", r#"{"n":1}"#);
    let expect = Expect {
        status: StatusCode::ACCEPTED,
        body: None,
    };
    loop {
        let metrics = rt.block_on(server.get("/metrics"))?.text();
        let stored = crate::enqueue::stored(&metrics, "sink");
        if stored >= target {
            return Ok(stored);
        }
        let rate_guess = 10_000u64;
        let round = FILL_ROUND.min(Duration::from_secs((target - stored) / rate_guess + 1));
        rt.block_on(client::load_for(
            server.addr,
            &enqueue,
            FILL_CONNECTIONS,
            round,
            expect,
        ))?;
        println!("    {} queued …", grouped(stored));
    }
}

/// Polls `/metrics` until recovery is done; answers how long that took.
pub async fn wait_requeued(server: &Server) -> BenchResult<Duration> {
    let started = Instant::now();
    loop {
        let metrics = server.get("/metrics").await?.text();
        if metric(&metrics, "gantry_recovery_active") == Some(0.0) {
            return Ok(started.elapsed());
        }
        if started.elapsed() > REQUEUE_LIMIT {
            return Err(format!(
                "recovery still queueing after {REQUEUE_LIMIT:?}; gantry_recovery_requeued {:?}",
                metric(&metrics, "gantry_recovery_requeued_total")
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The benchmark's table, with the target: ready within 1 s of the start.
pub fn table(backlog: &Backlog) -> String {
    let ready = backlog.listening_in + backlog.first_invoke_in;
    let verdict = if ready <= Duration::from_secs(1) {
        "**meets**".to_owned()
    } else {
        format!("**misses** ({:.2} s)", ready.as_secs_f64())
    };
    format!(
        "### 3. Restart with a backlog\n\n\
         `sink` (as in 2) is given {} queued executions through `:enqueue` (in {:.0} s; the database held {} bytes), the server is killed with SIGKILL and started again on the same data directory. Ready means a `:invoke` of another function (`echo`, `cat`) sent as soon as the server listens is answered. Queued executions are queued again in pages in the background, their inputs read only when they run.\n\n\
         | measure | result | target | verdict |\n|---|---|---|---|\n\
         | spawn → listening | {:.2} s | — | — |\n\
         | listening → first `:invoke` of `echo` answered (the call itself: {}) | {} | — | — |\n\
         | spawn → ready | {:.2} s | ≤ 1 s with 1 M queued | {verdict} |\n\
         | listening → every queued execution queued again | {:.1} s | — | — |\n\
         | executions held after the restart | {} of {} | all | {} |\n\
         | peak resident memory of the restarted server | {} MiB | — | — |\n",
        grouped(backlog.queued),
        backlog.filled_in.as_secs_f64(),
        grouped(backlog.db_bytes),
        backlog.listening_in.as_secs_f64(),
        time(backlog.first_invoke_took.as_secs_f64() * 1e6),
        time(backlog.first_invoke_in.as_secs_f64() * 1e6),
        ready.as_secs_f64(),
        backlog.requeued_in.as_secs_f64(),
        grouped(backlog.held),
        grouped(backlog.queued),
        if backlog.held == backlog.queued {
            "**holds**"
        } else {
            "**fails**"
        },
        backlog.peak_rss >> 20,
    )
}
