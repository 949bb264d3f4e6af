//! `gantry serve` settings: flags with `GANTRY_*` environment equivalents, and the
//! checks that turn a bad setting into exit code 64 naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

/// Exit code for bad configuration (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

/// Where instances run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// Host processes under the watchdog (no Docker needed).
    Process,
    /// Containers on a Docker engine.
    Docker,
}

/// Flags of `gantry serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, env = "GANTRY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory of the embedded database and per-execution scratch files.
    #[arg(long, env = "GANTRY_DATA_DIR", default_value = "./gantry-data")]
    pub data_dir: PathBuf,
    /// Where instances run. `docker` runs functions with an `image` as containers on
    /// the local engine (DOCKER_HOST or /var/run/docker.sock) and `command`-only ones as
    /// host processes; it needs GANTRY_TOKEN, since containers reach this server.
    #[arg(long, env = "GANTRY_RUNTIME", value_enum, default_value = "process")]
    pub runtime: RuntimeKind,
    /// Base URL instances use to reach this server (callbacks, large payloads).
    /// Default: http:// and the listen address (127.0.0.1 when listening on all); with
    /// the docker runtime, the gateway of its network (`gantry-net`) and the listen
    /// port, where the server then listens too.
    #[arg(long, env = "GANTRY_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// The watchdog binary the process runtime starts. Default: `watchdog` next to
    /// this executable, then on PATH.
    #[arg(long, env = "GANTRY_WATCHDOG")]
    pub watchdog: Option<PathBuf>,
    /// Largest captured log of one execution, in bytes; later lines are dropped.
    #[arg(long, env = "GANTRY_LOG_CAP_BYTES", default_value_t = 1024 * 1024)]
    pub log_cap_bytes: usize,
    /// Largest request body, in bytes (inputs and manifests).
    #[arg(long, env = "GANTRY_MAX_BODY_BYTES", default_value_t = 6 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// How long a stopping server waits for running executions before it stops them
    /// (they are resumed or failed by the next start).
    #[arg(long, env = "GANTRY_SHUTDOWN_GRACE_MS", default_value_t = 10_000)]
    pub shutdown_grace_ms: u64,
    /// Docker runtime: network sandboxes kept started ahead of calls, so a cold start
    /// does not wait for its container's network (needs gantry/watchdog:latest; 0: off).
    #[arg(long, env = "GANTRY_DOCKER_SANDBOXES", default_value_t = 2)]
    pub docker_sandboxes: usize,
    /// Warm pools: time between health checks of a ready instance; three failed checks
    /// in a row replace it.
    #[arg(long, env = "GANTRY_HEALTH_INTERVAL_MS", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..))]
    pub health_interval_ms: u64,
    /// Warm pools: time a new instance has to answer its health check before it counts
    /// as failed to start (STARTUP_ERROR).
    #[arg(long, env = "GANTRY_READY_TIMEOUT_MS", default_value_t = 15_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub ready_timeout_ms: u64,
    /// Deepest chain of executions: a chained execution that would go deeper is recorded
    /// as failed (CHAIN_DEPTH_EXCEEDED) instead of run, which stops cycles.
    #[arg(long, env = "GANTRY_MAX_CHAIN_DEPTH", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_chain_depth: u32,
}
