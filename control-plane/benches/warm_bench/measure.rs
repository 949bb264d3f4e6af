//! The measurement: eight variants in interleaved rounds — the directly started runtime
//! and `noop-warm:invoke`, each at concurrency 1 (sequential calls, bench client) and 32
//! (bench client, timed), and both again through wrk at 1 and 32 — with the CPU time
//! of every process on the server side. Afterwards the server's own counts and pool
//! must agree with what the clients saw.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_bench_support::stats::{interleave, Progress, Sample, Summary, Variant};
use hyper::header::HeaderValue;
use hyper::StatusCode;
use serde_json::Value;
use tokio::runtime::Runtime;

use crate::client::{self, Call, Expect};
use crate::gantry::{self, DirectRuntime, Pool, FUNCTION};
use crate::server::{self, Server};
use crate::{wrk, BenchResult, Settings};

/// The runtime's answer carries this; so does the invoke's `output`.
pub const ANSWER: &str = r#""ok":true"#;
/// The invocation payload.
pub const PAYLOAD: &str = "{}";

/// Variant labels: `[direct, gantry]` per load.
pub const C1: [&str; 2] = ["direct POST /invoke, c=1", "noop-warm:invoke, c=1"];
/// Bench client at the concurrent level.
pub const C32: [&str; 2] = ["direct POST /invoke, c=32", "noop-warm:invoke, c=32"];
/// wrk at concurrency 1.
pub const WRK_C1: [&str; 2] = ["direct, wrk c=1", "noop-warm, wrk c=1"];
/// wrk at the concurrent level.
pub const WRK_C32: [&str; 2] = ["direct, wrk c=32", "noop-warm, wrk c=32"];

/// Server-side CPU of one variant over the measured rounds: `gantry serve` itself and
/// the processes behind it (the warm watchdog and runtime; for the direct variants,
/// the runtime alone).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSplit {
    /// `gantry serve`, all threads.
    pub serve: Duration,
    /// The watchdog and the runtime (or the directly started runtime).
    pub instance: Duration,
    /// Requests completed.
    pub requests: u64,
}

impl CpuSplit {
    /// `gantry serve`'s CPU per request, µs.
    pub fn serve_us(&self) -> f64 {
        self.serve.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }

    /// The instance's (or direct runtime's) CPU per request, µs.
    pub fn instance_us(&self) -> f64 {
        self.instance.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }
}

/// Everything the run measured and checked.
#[derive(Debug)]
pub struct Measured {
    /// One per variant (see the label constants).
    pub summaries: Vec<Summary>,
    /// Server-side CPU by variant label.
    pub cpu: BTreeMap<&'static str, CpuSplit>,
    /// The pool when it was ready, and how long deploy → idle instance took; `None`
    /// when the server has no warm pool (every call a cold start).
    pub pool: Option<(Pool, Duration)>,
    /// The pool after the load.
    pub pool_after: Option<Pool>,
    /// wrk's version, when installed.
    pub wrk: Option<String>,
    /// `noop-warm` invocations the bench's client sent, every answer checked.
    pub checked: u64,
    /// 2xx answers wrk counted for `noop-warm`.
    pub wrk_counted: u64,
    /// Successes the server counted in /metrics.
    pub server_successes: u64,
    /// The server's processes (watchdog, runtime) when the pool was ready, and after.
    pub instances: (Vec<u32>, Vec<u32>),
    /// Of the last execution each c=32 worker got in the last round: how many were
    /// cold starts, of how many read back.
    pub cold_starts: (usize, usize),
    /// The server's SIGTERM stop: how long the exit took and how many of its processes
    /// were still running after it; or why it failed (it is then SIGKILLed, and so
    /// are its processes).
    pub stop: Result<(Duration, usize), String>,
    /// Successful records in the database after a clean stop.
    pub stored: Option<u64>,
}

/// Which side a variant measures.
#[derive(Clone, Copy)]
struct Side<'a> {
    /// 0 for the runtime called directly, 1 for gantry: the index into the labels.
    index: usize,
    /// The server, on the gantry side.
    server: Option<&'a Server>,
    /// The directly started runtime.
    runtime: &'a DirectRuntime,
}

impl Side<'_> {
    fn call(&self) -> Call {
        let path = match self.index {
            0 => "/invoke".to_owned(),
            _ => format!("/v1/functions/{FUNCTION}:invoke"),
        };
        Call::post(path, PAYLOAD)
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.server.map_or(self.runtime.addr, |server| server.addr)
    }

    fn url(&self) -> String {
        format!("http://{}{}", self.addr(), self.call().path)
    }

    /// CPU so far: `gantry serve` and the instance processes (or the runtime). A
    /// process that exits mid-round takes its time with it (one-shot runs only).
    fn cpu(&self, data_dir: &Path) -> (Duration, Duration) {
        let cpu = |pid: u32| server::cpu_time(pid).unwrap_or_default();
        match self.server {
            None => (Duration::ZERO, cpu(self.runtime.pid())),
            Some(server) => (
                cpu(server.pid()),
                gantry::instance_pids(data_dir).into_iter().map(cpu).sum(),
            ),
        }
    }
}

/// Runs the whole comparison on a fresh server and a directly started runtime.
pub fn run(rt: &Runtime, settings: &Settings) -> BenchResult<Measured> {
    let runtime = DirectRuntime::start(rt)?;
    let data = tempfile::Builder::new()
        .prefix("gantry-bench-warm-")
        .tempdir()?;
    let mut server = Server::start("warm", data.path())?;
    println!(
        "  server {} (pid {}); no-op runtime started directly on {} (pid {})",
        server.url,
        server.pid(),
        runtime.addr,
        runtime.pid()
    );
    let pool = rt.block_on(gantry::deploy_and_wait(&server, Duration::from_secs(60)))?;
    match &pool {
        Some((pool, took)) => println!("  pool ready in {took:.2?}: {}", pool.describe()),
        None => println!(
            "  WARNING: GET /v1/functions/{FUNCTION} shows no `pool`: this server has no warm pool, every call is a cold start"
        ),
    }
    let before = gantry::instance_pids(data.path());
    println!("  server's processes: {}", gantry::describe(&before));
    let wrk = wrk::find();
    println!(
        "  {} rounds after a warm-up; c=1: {} sequential calls; c={}: {:?} per load; wrk: {}",
        settings.rounds,
        settings.sequential,
        settings.concurrency,
        settings.duration,
        wrk.as_ref().map_or("not installed".into(), wrk::version)
    );
    let cpu = RefCell::new(BTreeMap::<&'static str, CpuSplit>::new());
    let last_ids = RefCell::new(Vec::<HeaderValue>::new());
    let summaries = {
        let sides = [
            Side {
                index: 0,
                server: None,
                runtime: &runtime,
            },
            Side {
                index: 1,
                server: Some(&server),
                runtime: &runtime,
            },
        ];
        let (cpu, last_ids, data_dir, wrk) = (&cpu, &last_ids, data.path(), &wrk);
        let settings = *settings;
        let expect = Expect {
            status: StatusCode::OK,
            body: Some(ANSWER),
        };
        // One round of `load` on `side`, with the server-side CPU it cost and, for the
        // bench's own client, the client's.
        let measured = move |name: &'static str,
                             side: Side<'_>,
                             warm: bool,
                             load: &dyn Fn() -> BenchResult<Sample>|
              -> BenchResult<Sample> {
            let (serve0, instance0) = side.cpu(data_dir);
            let own0 = server::cpu_time(std::process::id())?;
            let mut sample = load()?;
            let (serve1, instance1) = side.cpu(data_dir);
            let (serve, instance) = (
                serve1.saturating_sub(serve0),
                instance1.saturating_sub(instance0),
            );
            sample.server_cpu = Some(serve + instance);
            if sample.reported.is_none() {
                sample.client_cpu = Some(server::cpu_time(std::process::id())? - own0);
            }
            if !warm {
                let mut cpu = cpu.borrow_mut();
                let split = cpu.entry(name).or_default();
                split.serve += serve;
                split.instance += instance;
                split.requests += sample.count;
            }
            Ok(sample)
        };
        let mut variants = Vec::new();
        for side in sides {
            let name = C1[side.index];
            variants.push(Variant::new(name, move |warm| {
                let calls = if warm {
                    settings.sequential_warm_up
                } else {
                    settings.sequential
                };
                let call = side.call();
                measured(name, side, warm, &|| {
                    rt.block_on(client::sequential(side.addr(), &call, calls, expect))
                })
            }));
        }
        for side in sides {
            let name = C32[side.index];
            variants.push(Variant::new(name, move |warm| {
                let length = settings.length(warm);
                let call = side.call();
                measured(name, side, warm, &|| {
                    let (sample, ids) = rt.block_on(client::load_for(
                        side.addr(),
                        &call,
                        settings.concurrency,
                        length,
                        expect,
                    ))?;
                    if side.index == 1 {
                        *last_ids.borrow_mut() = ids;
                    }
                    Ok(sample)
                })
            }));
        }
        if let Some(wrk) = wrk {
            for (names, concurrency) in [(WRK_C1, 1), (WRK_C32, settings.concurrency)] {
                for side in sides {
                    let name = names[side.index];
                    variants.push(Variant::new(name, move |warm| {
                        let length = settings.length(warm);
                        measured(name, side, warm, &|| {
                            wrk::run(wrk, &side.url(), Some(PAYLOAD), concurrency, length)
                        })
                    }));
                }
            }
        }
        interleave(settings.rounds, &mut variants, Progress::Variant)?
    };
    let rounds = Rounds {
        summaries,
        cpu: cpu.into_inner(),
        last_ids: last_ids.into_inner(),
        before,
    };
    finish(rt, &mut server, data.path(), rounds, pool, wrk)
}

/// What the rounds left for the checks.
struct Rounds {
    summaries: Vec<Summary>,
    cpu: BTreeMap<&'static str, CpuSplit>,
    last_ids: Vec<HeaderValue>,
    before: Vec<u32>,
}

/// Every invocation the clients saw succeed must be a success in the server's own
/// counts, and no other outcome may be counted; then the pool, the processes and the
/// last executions are read back and the server is stopped.
fn finish(
    rt: &Runtime,
    server: &mut Server,
    data_dir: &Path,
    rounds: Rounds,
    pool: Option<(Pool, Duration)>,
    wrk: Option<PathBuf>,
) -> BenchResult<Measured> {
    let sent = |names: [&str; 2]| {
        Summary::find(&rounds.summaries, names[1]).map_or(0, |s| s.total + s.warm_up)
    };
    let checked = sent(C1) + sent(C32);
    let wrk_counted = sent(WRK_C1) + sent(WRK_C32);
    let (server_successes, failures) = rt.block_on(gantry::counted(server))?;
    if !failures.is_empty() {
        return Err(
            format!("the server counted failed {FUNCTION} invocations: {failures:?}").into(),
        );
    }
    if server_successes < checked + wrk_counted {
        return Err(format!(
            "the clients got {checked} + {wrk_counted} (wrk) successful answers but the server counted {server_successes} successes"
        )
        .into());
    }
    let mut cold_starts = (0, 0);
    for id in &rounds.last_ids {
        let record = rt.block_on(execution(server, id.to_str()?))?;
        cold_starts.1 += 1;
        if record.get("coldStart").and_then(Value::as_bool) == Some(true) {
            cold_starts.0 += 1;
        }
    }
    let pool_after = rt.block_on(gantry::pool(server))?;
    let after = gantry::instance_pids(data_dir);
    println!(
        "  checked: {checked} answers of the bench's client, {wrk_counted} 2xx of wrk; the server counted {server_successes} successes and no failure"
    );
    println!(
        "  after the load: pool {}; server's processes: {}; cold starts among the last executions: {} of {}",
        pool_after.as_ref().map_or("none".into(), Pool::describe),
        gantry::describe(&after),
        cold_starts.0,
        cold_starts.1
    );
    let stop = server.stop_and_sweep().map_err(|err| err.to_string());
    if let Err(err) = &stop {
        println!("  FAILED CHECK: stopping the server: {err}");
    }
    // Sync warm calls are written behind their answers: a clean stop must have
    // committed every one the server counted.
    let stored = match &stop {
        Ok(_) => {
            let stored = stored_successes(data_dir)?;
            if stored != server_successes {
                return Err(format!(
                    "the server counted {server_successes} successes but its database holds {stored} after a clean stop"
                )
                .into());
            }
            Some(stored)
        }
        Err(_) => None,
    };
    Ok(Measured {
        summaries: rounds.summaries,
        cpu: rounds.cpu,
        pool,
        pool_after,
        wrk: wrk.as_ref().map(wrk::version),
        checked,
        wrk_counted,
        server_successes,
        instances: (rounds.before, after),
        cold_starts,
        stop,
        stored,
    })
}

/// Successful executions of [`FUNCTION`] in the stopped server's database.
fn stored_successes(data_dir: &Path) -> BenchResult<u64> {
    let db = rusqlite::Connection::open_with_flags(
        data_dir.join("gantry.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let count: i64 = db.query_row(
        "SELECT count(*) FROM executions WHERE function = ?1 AND status = 'success'",
        [FUNCTION],
        |row| row.get(0),
    )?;
    Ok(u64::try_from(count)?)
}

/// `GET /v1/executions/{id}`; a sync warm call's record is written behind its answer,
/// so a missing one is asked for again for up to 5 s.
async fn execution(server: &Server, id: &str) -> BenchResult<Value> {
    let path = format!("/v1/executions/{id}");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match server.get(&path).await {
            Ok(answer) => return answer.json(),
            Err(err) if std::time::Instant::now() > deadline => return Err(err),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}
