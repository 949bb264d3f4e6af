//! The two sides of the comparison: the no-op runtime started directly by the bench
//! (`PORT=<free port>`), and `gantry serve` keeping the same runtime warm behind the
//! `noop-warm` function (deployed, then waited for until its pool has an idle
//! instance). Also what the server says afterwards: its pool and its invocation counts.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gantry_bench_support::children;
use gantry_bench_support::format::grouped;
use gantry_bench_support::process::{path_only, terminate};
use serde_json::{json, Value};
use tokio::runtime::Runtime;

use crate::server::{self, Server};
use crate::{noop, BenchResult, NOOP_RUNTIME_ARG};

/// The function's name.
pub const FUNCTION: &str = "noop-warm";

/// The no-op runtime run directly by the bench; SIGTERMed when dropped.
pub struct DirectRuntime {
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl DirectRuntime {
    /// Starts `<this program> --noop-runtime` with only PATH and PORT set, and waits
    /// until `GET /health` answers 200.
    pub fn start(rt: &Runtime) -> BenchResult<DirectRuntime> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        std::fs::create_dir_all(server::log_dir())?;
        let log = std::fs::File::create(server::log_dir().join("noop-direct.log"))?;
        let child = children::spawn(
            path_only(std::env::current_exe()?)
                .arg(NOOP_RUNTIME_ARG)
                .env("PORT", port.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log),
        )?;
        let mut runtime = DirectRuntime {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child: Some(child),
        };
        let addr = runtime.addr;
        rt.block_on(noop::wait_healthy(
            addr,
            Duration::from_secs(10),
            || match runtime.child.as_mut().map(Child::try_wait) {
                Some(Ok(None)) => Ok(()),
                _ => Err("the directly started no-op runtime exited".into()),
            },
        ))?;
        Ok(runtime)
    }

    /// The runtime's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }
}

impl Drop for DirectRuntime {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            if let Err(err) = terminate(child, Duration::from_secs(3), "the no-op runtime") {
                eprintln!("cleanup: {err}");
            }
        }
    }
}

/// The warm function's manifest: this program as an HTTP runtime, one instance kept
/// warm that takes up to 64 invocations at once.
pub fn manifest() -> BenchResult<Value> {
    let exe = std::env::current_exe()?;
    let exe = exe.to_str().ok_or("the bench's path is not UTF-8")?;
    Ok(json!({
        "name": FUNCTION,
        "mode": "HTTP",
        "command": [exe, NOOP_RUNTIME_ARG],
        "warm": {"min_instances": 1, "max_instances": 1, "concurrency_per_instance": 64},
    }))
}

/// The `pool` object of `GET /v1/functions/noop-warm`: instances by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pool {
    /// Instances ready and without work.
    pub idle: u64,
    /// Instances running invocations.
    pub busy: u64,
    /// Instances starting.
    pub starting: u64,
    /// Calls that waited for an instance to start.
    pub cold_starts: u64,
    /// Each instance's id and how many calls it took.
    pub instances: Vec<(String, u64)>,
}

impl Pool {
    /// `1 idle, 0 busy, 0 starting; 0 cold starts; process-123: 4,567 calls`.
    pub fn describe(&self) -> String {
        let instances: Vec<String> = self
            .instances
            .iter()
            .map(|(id, calls)| format!("{id}: {} calls", grouped(*calls)))
            .collect();
        format!(
            "{} idle, {} busy, {} starting; {} cold starts; {}",
            self.idle,
            self.busy,
            self.starting,
            self.cold_starts,
            instances.join(", ")
        )
    }
}

/// The function's pool, or `None` when the server shows none (no warm pool).
pub async fn pool(server: &Server) -> BenchResult<Option<Pool>> {
    let function = server
        .get(&format!("/v1/functions/{FUNCTION}"))
        .await?
        .json()?;
    let Some(pool) = function.get("pool").filter(|pool| !pool.is_null()) else {
        return Ok(None);
    };
    let count = |value: &Value, key: &str| value.get(key).and_then(Value::as_u64).unwrap_or(0);
    let instances = pool.get("instances").and_then(Value::as_array);
    Ok(Some(Pool {
        idle: count(pool, "idle"),
        busy: count(pool, "busy"),
        starting: count(pool, "starting"),
        cold_starts: count(pool, "coldStarts"),
        instances: instances
            .into_iter()
            .flatten()
            .map(|instance| {
                let id = instance.get("id").and_then(Value::as_str).unwrap_or("?");
                (id.to_owned(), count(instance, "invocations"))
            })
            .collect(),
    }))
}

/// Deploys [`FUNCTION`] and waits up to `limit` for an idle instance in its pool.
/// Returns the pool then and how long it took, or `None` when the server has no pool.
pub async fn deploy_and_wait(
    server: &Server,
    limit: Duration,
) -> BenchResult<Option<(Pool, Duration)>> {
    let started = Instant::now();
    server.deploy(manifest()?).await?;
    loop {
        let Some(pool) = pool(server).await? else {
            return Ok(None);
        };
        if pool.idle >= 1 && pool.starting == 0 {
            return Ok(Some((pool, started.elapsed())));
        }
        if started.elapsed() > limit {
            return Err(format!(
                "no idle warm instance within {limit:?}: {}",
                pool.describe()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Finished invocations of [`FUNCTION`] the server counted in /metrics: successes, and
/// every other terminal status with its count.
pub async fn counted(server: &Server) -> BenchResult<(u64, Vec<(String, u64)>)> {
    let metrics = server.get("/metrics").await?.text();
    let prefix = format!("gantry_invocations_total{{function=\"{FUNCTION}\",status=\"");
    let mut successes = 0;
    let mut others = Vec::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(&prefix) else {
            continue;
        };
        let Some((status, value)) = rest.split_once("\"}") else {
            continue;
        };
        let value = value.trim().parse::<f64>()? as u64;
        if status == "success" {
            successes = value;
        } else if value > 0 {
            others.push((status.to_owned(), value));
        }
    }
    Ok((successes, others))
}

/// The value of the unlabelled metric `name` in the server's /metrics (0 when absent).
pub async fn metric(server: &Server, name: &str) -> BenchResult<u64> {
    let metrics = server.get("/metrics").await?.text();
    for line in metrics.lines() {
        if let Some(value) = line
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
        {
            return Ok(value.trim().parse::<f64>()? as u64);
        }
    }
    Ok(0)
}

/// Pids of the processes the server started (watchdogs and runtimes), sorted.
pub fn instance_pids(data_dir: &Path) -> Vec<u32> {
    let mut pids = server::marked(data_dir);
    pids.sort_unstable();
    pids
}

/// `ps`'s line for each pid (command and elapsed time), for the log.
pub fn describe(pids: &[u32]) -> String {
    if pids.is_empty() {
        return "none".into();
    }
    let list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    Command::new("ps")
        .args(["-o", "pid=,etime=,comm=", "-p", &list])
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .replace('\n', "; ")
        })
        .unwrap_or(list)
}
