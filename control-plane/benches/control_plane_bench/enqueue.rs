//! Benchmark 2, durable enqueue: `POST /v1/functions/sink:enqueue` from concurrent
//! keep-alive clients for a fixed time, counting the 202s (each one answered only after
//! its execution is stored in SQLite), against `GET /healthz` on the same server with
//! the same client and concurrency. `sink` runs one `sleep 600` at a time, so every
//! other execution stays queued. Afterwards the server is killed with SIGKILL, like a
//! crash, and restarted on the same data directory: every accepted execution must be
//! there, and the processes the killed server left must be gone.

use std::path::Path;
use std::time::{Duration, Instant};

use gantry_bench_support::stats::{interleave, Progress, Sample, Summary, Variant};
use hyper::header::HeaderValue;
use hyper::StatusCode;
use serde_json::json;
use tokio::runtime::Runtime;

use crate::client::{self, Call, Expect};
use crate::server::{self, Server};
use crate::wrk;
use crate::{BenchResult, Settings};

/// Label of the HTTP baseline (bench client).
pub const HEALTHZ: &str = "GET /healthz (hyper)";
/// Label of the measured variant (bench client).
pub const ENQUEUE: &str = "POST sink:enqueue (hyper)";
/// Label of the HTTP baseline (wrk).
pub const WRK_HEALTHZ: &str = "GET /healthz (wrk)";
/// Label of the measured variant (wrk).
pub const WRK_ENQUEUE: &str = "POST sink-wrk:enqueue (wrk)";

/// The input of every enqueued execution.
const INPUT: &str = r#"{"n":1}"#;

/// What the durability check after the load found.
#[derive(Debug)]
pub struct Durability {
    /// 202s the bench's client read for `sink` (warm-up included).
    pub accepted: u64,
    /// `sink` executions the restarted server recovered from its store.
    pub recovered: u64,
    /// 2xx that wrk counted for `sink-wrk`, and what the restarted server recovered.
    pub wrk: Option<(u64, u64)>,
    /// Last execution ids the workers were answered, all found queued after the restart.
    pub ids_checked: usize,
    /// Processes (watchdogs and `sleep`) the SIGKILLed server left running; the
    /// restarted server's recovery stopped them all.
    pub orphans: usize,
    /// Spawn → listening of the restarted server (recovery of every queued execution).
    pub restart_in: Duration,
    /// SIGTERM → exit of the restarted server, holding every execution.
    pub stop_in: Duration,
    /// Processes still running after it stopped (killed by the bench).
    pub left_behind: usize,
    /// Size of gantry.db and its WAL after the load.
    pub db_bytes: u64,
    /// Filesystem of the data directory (from /proc/mounts).
    pub filesystem: String,
}

/// What the enqueue benchmark measured.
#[derive(Debug)]
pub struct Enqueue {
    /// One per variant: [`HEALTHZ`], [`ENQUEUE`], and with wrk [`WRK_HEALTHZ`],
    /// [`WRK_ENQUEUE`].
    pub summaries: Vec<Summary>,
    /// Keep-alive connections of each client.
    pub concurrency: usize,
    /// Length of a measured round.
    pub duration: Duration,
    /// wrk's version line, when it took part.
    pub wrk: Option<String>,
    /// The check after the load.
    pub durability: Durability,
}

/// Runs `load` with the server's and the bench's CPU time measured around it.
fn with_cpu(server_pid: u32, load: impl FnOnce() -> BenchResult<Sample>) -> BenchResult<Sample> {
    let own = std::process::id();
    let (server_before, own_before) = (server::cpu_time(server_pid)?, server::cpu_time(own)?);
    let switches_before = server::context_switches(server_pid)?;
    let mut sample = load()?;
    sample.server_cpu = Some(server::cpu_time(server_pid)? - server_before);
    sample.server_switches = Some(server::context_switches(server_pid)? - switches_before);
    sample.client_cpu = Some(server::cpu_time(own)? - own_before);
    Ok(sample)
}

/// Runs the comparison, then the durability check.
pub fn run(rt: &Runtime, settings: &Settings) -> BenchResult<Enqueue> {
    let data = tempfile::Builder::new()
        .prefix("gantry-bench-enqueue-")
        .tempdir()?;
    let server = Server::start("enqueue", data.path())?;
    println!(
        "  server {} (pid {}), data dir {}",
        server.url,
        server.pid(),
        data.path().display()
    );
    let wrk = wrk::find();
    let sink = |name: &str| {
        json!({
            "name": name, "mode": "STDIO", "command": "sleep 600",
            "resources": {"timeout_ms": 900_000},
            "concurrency": {"max_in_flight": 1, "max_queue": 10_000_000},
        })
    };
    rt.block_on(server.deploy(sink("sink")))?;
    if wrk.is_some() {
        rt.block_on(server.deploy(sink("sink-wrk")))?;
    }
    let concurrency = settings.concurrency;
    let length = |warm: bool| {
        if warm {
            settings.enqueue_warm_up
        } else {
            settings.enqueue_duration
        }
    };
    println!(
        "  {concurrency} keep-alive connections, {:?} per round ({:?} warm-up); wrk: {}",
        settings.enqueue_duration,
        settings.enqueue_warm_up,
        wrk.as_ref().map_or("not installed".into(), wrk::version)
    );
    let mut last_ids: Vec<HeaderValue> = Vec::new();
    let summaries = {
        let (server, last_ids, wrk) = (&server, &mut last_ids, &wrk);
        let (addr, pid) = (server.addr, server.pid());
        let healthz = Call::get("/healthz");
        let enqueue = Call::post("/v1/functions/sink:enqueue", INPUT);
        let mut variants = vec![
            Variant::new(HEALTHZ, move |warm| {
                let expect = Expect {
                    status: StatusCode::OK,
                    body: None,
                };
                with_cpu(pid, || {
                    let load = client::load_for(addr, &healthz, concurrency, length(warm), expect);
                    Ok(rt.block_on(load)?.0)
                })
            }),
            Variant::new(ENQUEUE, move |warm| {
                let expect = Expect {
                    status: StatusCode::ACCEPTED,
                    body: None,
                };
                with_cpu(pid, || {
                    let load = client::load_for(addr, &enqueue, concurrency, length(warm), expect);
                    let (sample, ids) = rt.block_on(load)?;
                    last_ids.extend(ids);
                    Ok(sample)
                })
            }),
        ];
        if let Some(wrk) = wrk {
            let healthz = format!("{}/healthz", server.url);
            let enqueue = format!("{}/v1/functions/sink-wrk:enqueue", server.url);
            variants.push(Variant::new(WRK_HEALTHZ, move |warm| {
                with_cpu(pid, || {
                    wrk::run(wrk, &healthz, None, concurrency, length(warm))
                })
            }));
            variants.push(Variant::new(WRK_ENQUEUE, move |warm| {
                with_cpu(pid, || {
                    wrk::run(wrk, &enqueue, Some(INPUT), concurrency, length(warm))
                })
            }));
        }
        interleave(settings.enqueue_rounds, &mut variants, Progress::Variant)?
    };
    let accepted =
        |name: &str| Summary::find(&summaries, name).map(|summary| summary.total + summary.warm_up);
    let accepted_sink = accepted(ENQUEUE).unwrap_or(0);
    let accepted_wrk = accepted(WRK_ENQUEUE);

    println!("  durability: SIGKILL, then a restart on the same data directory");
    let db_bytes = database_size(data.path());
    server.crash()?;
    let orphans = server::marked(data.path());
    let mut restarted = match Server::start("enqueue-restarted", data.path()) {
        Ok(restarted) => restarted,
        Err(err) => {
            server::sweep(data.path());
            return Err(err);
        }
    };
    println!(
        "  restarted in {:.2} s ({} executions accepted before the kill; it left {} processes)",
        restarted.started_in.as_secs_f64(),
        accepted_sink + accepted_wrk.unwrap_or(0),
        orphans.len()
    );
    let survivors: Vec<u32> = orphans
        .iter()
        .copied()
        .filter(|&pid| server::is_alive(pid))
        .collect();
    if !survivors.is_empty() {
        return Err(format!(
            "processes {survivors:?} of the killed server still run after the restart's recovery"
        )
        .into());
    }
    rt.block_on(crate::backlog::wait_requeued(&restarted))?;
    let metrics = rt.block_on(restarted.get("/metrics"))?.text();
    let recovered = stored(&metrics, "sink");
    if recovered != accepted_sink {
        return Err(format!(
            "the client read {accepted_sink} 202s for sink, but after the restart the server holds {recovered} of its executions"
        )
        .into());
    }
    let wrk_counts = match accepted_wrk {
        Some(counted) => {
            let held = stored(&metrics, "sink-wrk");
            // wrk stops without reading the answers in flight: those may be stored too.
            let slack = (settings.enqueue_rounds as u64 + 1) * concurrency as u64;
            if held < counted || held > counted + slack {
                return Err(format!(
                    "wrk counted {counted} 2xx for sink-wrk, but after the restart the server holds {held} of its executions"
                )
                .into());
            }
            Some((counted, held))
        }
        None => None,
    };
    let ids_checked = rt.block_on(check_ids(&restarted, &last_ids))?;
    let (stop_in, left_behind) = restarted.stop_and_sweep()?;
    Ok(Enqueue {
        summaries,
        concurrency,
        duration: settings.enqueue_duration,
        wrk: wrk.as_ref().map(wrk::version),
        durability: Durability {
            accepted: accepted_sink,
            recovered,
            wrk: wrk_counts,
            ids_checked,
            orphans: orphans.len(),
            restart_in: restarted.started_in,
            stop_in,
            left_behind,
            db_bytes,
            filesystem: filesystem(data.path()),
        },
    })
}

/// Executions of `function` a freshly started server holds: queued, running, and those
/// recovery failed (`gantry_invocations_total`).
pub fn stored(metrics: &str, function: &str) -> u64 {
    let gauge = |name: &str| {
        crate::cold_start::metric(metrics, &format!("{name}{{function=\"{function}\"}}"))
            .unwrap_or(0.0)
    };
    let finished: f64 = metrics
        .lines()
        .filter_map(|line| {
            line.strip_prefix(&format!(
                "gantry_invocations_total{{function=\"{function}\","
            ))
        })
        .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    (gauge("gantry_queue_depth") + gauge("gantry_in_flight") + finished) as u64
}

/// Every id must be readable and queued after the restart, and the queued list must
/// answer. Returns how many ids were checked.
async fn check_ids(server: &Server, ids: &[HeaderValue]) -> BenchResult<usize> {
    let started = Instant::now();
    for id in ids {
        let id = id.to_str()?;
        let record = server.get(&format!("/v1/executions/{id}")).await?.json()?;
        let status = record["status"].as_str().unwrap_or_default();
        if status != "queued" {
            return Err(
                format!("execution {id} is {status:?} after the restart, not queued").into(),
            );
        }
    }
    let page = server
        .get("/v1/executions?function=sink&status=queued&limit=1")
        .await?
        .json()?;
    if page["executions"].as_array().map_or(0, Vec::len) != 1 {
        return Err(format!("the queued list after the restart: {page}").into());
    }
    println!(
        "  {} last-accepted ids found queued after the restart ({:.0} ms)",
        ids.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(ids.len())
}

/// Bytes of gantry.db, its WAL and shared-memory file.
pub fn database_size(data_dir: &Path) -> u64 {
    std::fs::read_dir(data_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("gantry.db"))
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len())
        .sum()
}

/// The filesystem type of the mount holding `path`.
fn filesystem(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_, point, kind) = (fields.next()?, fields.next()?, fields.next()?);
            path.starts_with(point)
                .then(|| (point.len(), kind.to_owned()))
        })
        .max()
        .map_or_else(|| "unknown".into(), |(_, kind)| kind)
}
