//! `gantry serve` settings: flags with `GANTRY_*` environment equivalents, and the
//! checks that turn a bad setting into exit code 64 naming the variable.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::TypedValueParser;
use clap::{Args, ValueEnum};

/// Exit code for bad configuration (EX_USAGE).
pub const EXIT_CONFIG: u8 = 64;

/// How the server writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON object per line, for log collectors: every line about an execution
    /// carries its id and trace id.
    Json,
}

/// Where instances run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeKind {
    /// Host processes under the watchdog (no Docker needed).
    Process,
    /// Containers on a Docker engine.
    Docker,
}

/// A database connection URL. It may hold a password: its `Debug` shows none of it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL itself, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> DatabaseUrl {
        DatabaseUrl(url)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = crate::store::postgres::describe_url(&self.0).ok();
        f.debug_tuple("DatabaseUrl")
            .field(&target.as_deref().unwrap_or("(unreadable)"))
            .finish()
    }
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
    /// This node's id (letters, digits, `.`, `_`, `-`; at most 64): the owner of every
    /// execution it claims, shown by `gantry node list`. Default: the data directory's
    /// own id, generated on first start and kept there. Keep it stable across restarts,
    /// and unique among the nodes sharing a database: a restarted node settles what its
    /// id held.
    #[arg(long, env = "GANTRY_NODE_ID")]
    pub node_id: Option<String>,
    /// With --database-url: the http:// URL the other nodes reach this node's API at
    /// (shown by `gantry node list`; a warm call that finds no free instance on its
    /// node goes to a node that has one, at this URL). Default: http:// and the listen
    /// address, which other machines cannot use when listening on 0.0.0.0.
    #[arg(long, env = "GANTRY_NODE_URL", value_name = "URL")]
    pub node_url: Option<String>,
    /// The server log's format on stderr: `text`, or `json` (one object per line, with
    /// the execution id and trace id on every line about an execution). `GANTRY_LOG`
    /// sets the level (`info` by default; for example `warn` or `gantry=debug`).
    #[arg(long, env = "GANTRY_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Keep state in this PostgreSQL database instead of the embedded SQLite one:
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`. Add `?sslmode=require` for TLS,
    /// `?sslmode=prefer` for TLS when the server offers it; without `sslmode` the
    /// connection is plain. The server's certificate is checked against the CA file of
    /// `&sslrootcert=FILE`, or else the system's trusted CAs. The schema is created or upgraded at start.
    /// The data directory still holds this node's own files (owner id, secret key,
    /// scratch files). Prefer the environment variable: a flag's value shows in `ps`.
    #[arg(
        long,
        env = "GANTRY_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<DatabaseUrl>,
    /// Where instances run. `docker` runs functions with an `image` as containers on
    /// the local engine (DOCKER_HOST or /var/run/docker.sock); `command`-only functions
    /// are refused there unless --allow-host-commands.
    #[arg(long, env = "GANTRY_RUNTIME", value_enum, default_value = "process")]
    pub runtime: RuntimeKind,
    /// Serve every request without a token. Only on a loopback address, with a warning
    /// at every start: any local user and any web page's scripts can then reach the API
    /// as far as the other checks let them.
    #[arg(long, env = "GANTRY_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// A host name clients may use in the Host header besides IP addresses, localhost
    /// and the advertised URL's host (repeat, or separate with commas). Requests naming
    /// any other host are refused, which stops DNS-rebinding pages.
    #[arg(
        long = "allowed-host",
        env = "GANTRY_ALLOWED_HOSTS",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,
    /// Process runtime, when the server runs as root: the user functions run as
    /// (`NAME`, `UID` or `UID:GID`). Default: nobody. Ignored when not root (functions
    /// then run as the server's own user).
    #[arg(long, env = "GANTRY_FUNCTION_USER", value_name = "USER")]
    pub function_user: Option<String>,
    /// Docker runtime: also run `command`-only functions, as host processes beside the
    /// containers. Off by default: a deployer could otherwise run host commands.
    #[arg(long, env = "GANTRY_ALLOW_HOST_COMMANDS")]
    pub allow_host_commands: bool,
    /// Docker runtime: the bridge network containers run on, created (with containers
    /// isolated from each other) if missing.
    #[arg(long, env = "GANTRY_DOCKER_NETWORK", default_value = crate::runtime::docker::DEFAULT_NETWORK, value_name = "NAME")]
    pub docker_network: String,
    /// Docker runtime: memory limit of a container whose manifest sets none, in MiB.
    #[arg(long, env = "GANTRY_DOCKER_MEMORY_MB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(6..))]
    pub docker_memory_mb: u64,
    /// Docker runtime: process limit of a container whose manifest sets none.
    #[arg(long, env = "GANTRY_DOCKER_PIDS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub docker_pids: u64,
    /// Docker runtime: CPUs of a container whose manifest sets none.
    #[arg(long, env = "GANTRY_DOCKER_CPUS", default_value_t = 1.0)]
    pub docker_cpus: f64,
    /// Base URL instances use to reach this server (callbacks, large payloads).
    /// Default: http:// and the listen address (127.0.0.1 when listening on all); with
    /// the docker runtime, the gateway of its network (`gantry-net`) and the listen
    /// port, where the server then listens too.
    #[arg(long, env = "GANTRY_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Process runtime: `auto` runs every execution and warm instance in a cgroup of its
    /// own where the host offers cgroups (everything it starts is stopped with it, and
    /// `memory_mb`, `pids` and `cpu` are enforced); `off` never does.
    #[arg(long, env = "GANTRY_CGROUPS", value_enum, default_value = "auto")]
    pub cgroups: crate::runtime::cgroup::CgroupMode,
    /// Process runtime: `auto` turns on the kernel's `favordynmods` cgroup mode for a
    /// cgroup v1 host when the server runs as root with cgroups (by a hierarchy mounted
    /// on /run/gantry-dynmods), so that an instance joins its cgroup in well under a
    /// millisecond instead of waiting about 10 ms for the kernel after every quiet moment
    /// (forks and exits get slightly dearer host-wide); `off` leaves the host as it is.
    #[arg(
        long,
        env = "GANTRY_CGROUP_FAVORDYNMODS",
        value_enum,
        default_value = "auto"
    )]
    pub cgroup_favordynmods: crate::runtime::cgroup_dynmods::DynmodsMode,
    /// Process runtime: memory limit, in MiB, of an execution or warm instance whose
    /// manifest sets none, enforced in its cgroup; 0: none.
    #[arg(long, env = "GANTRY_PROCESS_MEMORY_MB", default_value_t = 256, value_parser = parse_memory_default)]
    pub process_memory_mb: u64,
    /// Process runtime: most processes at once (the watchdog included) of an execution
    /// or warm instance whose manifest sets none, enforced in its cgroup; 0: none (at
    /// most 4194304, the kernel's own ceiling).
    #[arg(long, env = "GANTRY_PROCESS_PIDS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(..=4_194_304))]
    pub process_pids: u64,
    /// The watchdog binary the process runtime starts. Default: `watchdog` next to
    /// this executable, then on PATH.
    #[arg(long, env = "GANTRY_WATCHDOG")]
    pub watchdog: Option<PathBuf>,
    /// Largest captured log of one execution, in bytes; later lines are dropped.
    #[arg(long, env = "GANTRY_LOG_CAP_BYTES", default_value_t = 1024 * 1024)]
    pub log_cap_bytes: usize,
    /// Largest output of a function, in bytes (its watchdog's MAX_OUTPUT_BYTES): a larger
    /// one fails with OUTPUT_TOO_LARGE. Results of this size reach the server whatever
    /// --max-body-bytes says.
    #[arg(long, env = "GANTRY_MAX_OUTPUT_BYTES", default_value_t = 6 * 1024 * 1024, value_parser = clap::value_parser!(u64).range(1024..=1 << 30).map(|n| n as usize))]
    pub max_output_bytes: usize,
    /// Most connections the API listener serves at once; one more is answered 503 and
    /// closed.
    #[arg(long, env = "GANTRY_MAX_CONNECTIONS", default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000).map(|n| n as usize))]
    pub max_connections: usize,
    /// Longest wait for a request's head, in milliseconds: slower clients and
    /// connections idle that long between requests are closed.
    #[arg(long, env = "GANTRY_HEADER_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub header_timeout_ms: u64,
    /// How long finished executions and their logs are kept (`7d`, `12h`, `30m`); a
    /// function's `retention` overrides it. They are deleted in the background.
    #[arg(long, env = "GANTRY_RETENTION", default_value = "7d", value_parser = crate::retention::parse_duration)]
    pub retention: std::time::Duration,
    /// Versions of a function kept (its current one and those unfinished executions run
    /// on are always kept).
    #[arg(long, env = "GANTRY_KEEP_VERSIONS", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_versions: u32,
    /// Time between retention rounds, in milliseconds.
    #[arg(long, env = "GANTRY_PRUNE_INTERVAL_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub prune_interval_ms: u64,
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
    /// A queued execution that waited longer than this (milliseconds, since it became
    /// due: its creation, or its `run_at` when delayed) ends EXPIRED without running,
    /// for functions whose manifest sets no `max_queue_age_ms`. Absent: no limit.
    #[arg(long, env = "GANTRY_MAX_QUEUE_AGE_MS", value_parser = clap::value_parser!(u64).range(1..=crate::registry::limits::MAX_QUEUE_AGE_MS))]
    pub max_queue_age_ms: Option<u64>,
    /// Most chains one function may name: every finished execution can start that many,
    /// so chains multiply along a chain (deploys with more are refused).
    #[arg(long, env = "GANTRY_MAX_CHAINS", default_value_t = crate::registry::catalog::DEFAULT_MAX_CHAINS as u32, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub max_chains: u32,
    /// Export spans over OTLP/HTTP (protobuf) to this receiver, e.g. an OpenTelemetry
    /// Collector or Jaeger at `http://127.0.0.1:4318` (`/v1/traces` is added): each
    /// execution's request, admission, queue wait, claim, instance start, run and record,
    /// chained executions in their parent's trace; `https://` receivers are verified
    /// against the system's certificate authorities. Export never
    /// slows a call: when the bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048) is
    /// full, spans are dropped and counted in `gantry_spans_dropped_total`. Headers for
    /// every export (a hosted collector's credentials) come from
    /// `OTEL_EXPORTER_OTLP_HEADERS`: `name=value,name=value`, values percent-encoded.
    /// Unset: no span is recorded.
    #[arg(
        long = "otlp-endpoint",
        env = "OTEL_EXPORTER_OTLP_ENDPOINT",
        value_name = "URL"
    )]
    pub otlp_endpoint_url: Option<String>,
    /// The `service.name` of the exported spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "gantry")]
    pub otlp_service_name: String,
    /// Which traces are recorded (head sampling): `always_on`, `always_off`,
    /// `traceidratio`, or one of them prefixed `parentbased_`, which follows a caller's
    /// sampled flag when its request has a `traceparent`. Default
    /// `parentbased_always_on`. Decided from the trace id, so every node agrees, and
    /// handed to functions in their `traceparent`'s flags.
    #[arg(
        long = "otlp-sampler",
        env = "OTEL_TRACES_SAMPLER",
        value_name = "NAME"
    )]
    pub otlp_sampler: Option<String>,
    /// The ratio of traces `traceidratio` samples, from 0 to 1 (default 1).
    #[arg(
        long = "otlp-sampler-arg",
        env = "OTEL_TRACES_SAMPLER_ARG",
        value_name = "RATIO"
    )]
    pub otlp_sampler_arg: Option<String>,
    /// Let results be sent to loopback, private (RFC 1918, fc00::/7), link-local
    /// (169.254.0.0/16, cloud metadata), unspecified and multicast addresses. Off by
    /// default: a callback or destination URL must not reach internal services.
    #[arg(long, env = "GANTRY_ALLOW_PRIVATE_DESTINATIONS")]
    pub allow_private_destinations: bool,
    /// The pause after a failed delivery attempt, doubled after each (up to 10 minutes).
    #[arg(long, env = "GANTRY_DESTINATION_BACKOFF_MS", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    pub destination_backoff_ms: u64,
    /// Attempts of a delivery (a round) before it is listed as failed.
    #[arg(long, env = "GANTRY_DESTINATION_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub destination_max_attempts: u32,
}

impl ServeArgs {
    /// The OTLP endpoint spans go to; an empty `OTEL_EXPORTER_OTLP_ENDPOINT` is none.
    pub fn otlp_endpoint(&self) -> Option<&str> {
        let url = self.otlp_endpoint_url.as_deref()?;
        (!url.trim().is_empty()).then_some(url)
    }

    /// The head sampler the flags name.
    pub fn sampler(&self) -> Result<crate::telemetry::Sampler, crate::telemetry::TelemetryError> {
        crate::telemetry::Sampler::parse(
            self.otlp_sampler.as_deref(),
            self.otlp_sampler_arg.as_deref(),
        )
    }
}

/// A default memory limit in MiB: 0 (none) or at least 6, as a manifest's `memory_mb`.
fn parse_memory_default(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(mb) if mb == 0 || mb >= 6 => Ok(mb),
        Ok(_) => Err("must be 0 (no limit) or at least 6".into()),
        Err(err) => Err(err.to_string()),
    }
}
