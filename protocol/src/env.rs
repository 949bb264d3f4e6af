//! Names and defaults of the watchdog's environment variables.

/// `HTTP`, `STDIO`, `FILE` or `WARM`.
pub const EXECUTION_MODE: &str = "EXECUTION_MODE";
/// The user's command, parsed with shell-style quoting.
pub const WATCHDOG_CMD: &str = "WATCHDOG_CMD";
/// Id of the execution a one-shot watchdog runs.
pub const EXECUTION_ID: &str = "EXECUTION_ID";
/// Base URL the result is posted to (`{CALLBACK_URL}/{EXECUTION_ID}:complete`).
pub const CALLBACK_URL: &str = "CALLBACK_URL";
/// Bearer token sent on the callback and on the payload fetch.
pub const CALLBACK_TOKEN: &str = "CALLBACK_TOKEN";
/// The input JSON for one-shot modes.
pub const INVOCATION_PAYLOAD: &str = "INVOCATION_PAYLOAD";
/// Where to GET the input when it is too large for the environment.
pub const PAYLOAD_URL: &str = "PAYLOAD_URL";
/// Per-invocation timeout in milliseconds.
pub const TIMEOUT_MS: &str = "TIMEOUT_MS";
/// Milliseconds between SIGTERM and SIGKILL when a process group is stopped.
pub const KILL_GRACE_MS: &str = "KILL_GRACE_MS";
/// Where an HTTP runtime takes invocations.
pub const RUNTIME_URL: &str = "RUNTIME_URL";
/// Where an HTTP runtime reports readiness (derived from RUNTIME_URL when unset).
pub const HEALTH_URL: &str = "HEALTH_URL";
/// How long an HTTP runtime may take to become healthy.
pub const READY_TIMEOUT_MS: &str = "READY_TIMEOUT_MS";
/// FILE mode: where the payload is written.
pub const INPUT_FILE: &str = "INPUT_FILE";
/// FILE mode: where the result is read from.
pub const OUTPUT_FILE: &str = "OUTPUT_FILE";
/// WARM mode: the port the watchdog listens on.
pub const WARM_PORT: &str = "WARM_PORT";
/// WARM mode: the address the watchdog listens on.
pub const WARM_HOST: &str = "WARM_HOST";
/// WARM mode: exit cleanly after this long without an invocation (0 disables).
pub const WARM_IDLE_TIMEOUT_MS: &str = "WARM_IDLE_TIMEOUT_MS";
/// WARM mode: exit cleanly after this many invocations (0 = unlimited).
pub const WARM_MAX_INVOCATIONS: &str = "WARM_MAX_INVOCATIONS";
/// WARM mode: `HTTP` keeps a runtime alive; `STDIO` or `FILE` spawn a process per call.
pub const WARM_RUNTIME: &str = "WARM_RUNTIME";
/// WARM mode: invocations in flight at once; past it, 429.
pub const WARM_CONCURRENCY: &str = "WARM_CONCURRENCY";
/// Largest output accepted, in bytes.
pub const MAX_OUTPUT_BYTES: &str = "MAX_OUTPUT_BYTES";
/// Trace id forwarded as `X-Trace-Id`.
pub const TRACE_ID: &str = "TRACE_ID";
/// W3C `traceparent` the invocation runs under: passed to the function in its
/// environment and as the `traceparent` header to HTTP runtimes.
pub const TRACEPARENT: &str = "TRACEPARENT";
/// W3C `tracestate` passed along with `TRACEPARENT` (the `tracestate` header).
pub const TRACESTATE: &str = "TRACESTATE";
/// Set by the watchdog for an HTTP runtime: the port it must listen on.
pub const PORT: &str = "PORT";
/// The user the function's processes run as: `UID`, `UID:GID`, `NAME` or `NAME:GROUP`
/// (names from the image's `/etc/passwd` and `/etc/group`). Needs a root watchdog unless
/// it names the watchdog's own uid.
pub const RUN_AS: &str = "RUN_AS";
/// WARM mode: the bearer token `POST /invoke` must carry (`Authorization: Bearer ...`).
pub const WARM_TOKEN: &str = "WARM_TOKEN";
/// A JSON object `{"VAR_NAME": "secret value", ...}`: each value is written to
/// `SECRETS_DIR/VAR_NAME` (mode 0400, owned by the RUN_AS user) and the function gets
/// `VAR_NAME=<that path>` instead of the value.
pub const SECRET_FILES: &str = "SECRET_FILES";
/// The directory SECRET_FILES are written to.
pub const SECRETS_DIR: &str = "SECRETS_DIR";
/// `cgroup.procs` files, one path a line, that the watchdog writes `0` (itself) into
/// before it does anything else, so that it and everything it starts run in that cgroup.
/// A file it cannot write stops it before the function runs.
pub const CGROUP_PROCS: &str = "CGROUP_PROCS";

/// What `watchdog --features` prints, one a line: it honours [`CGROUP_PROCS`].
pub const FEATURE_CGROUP_PROCS: &str = "cgroup-procs";

/// Variables meant for the watchdog alone: credentials, the input (which the function
/// gets on stdin, in INPUT_FILE or over HTTP) and the watchdog's own set-up. They are
/// removed from the environment of every process the watchdog starts for the function.
pub const WATCHDOG_ONLY: &[&str] = &[
    CALLBACK_TOKEN,
    WARM_TOKEN,
    INVOCATION_PAYLOAD,
    PAYLOAD_URL,
    RUN_AS,
    SECRET_FILES,
    SECRETS_DIR,
    CGROUP_PROCS,
];

/// Defaults, in the units of their variables.
pub mod defaults {
    /// Default execution mode.
    pub const EXECUTION_MODE: &str = "HTTP";
    /// Default user command.
    pub const WATCHDOG_CMD: &str = "java -jar /app/app.jar";
    /// Default input.
    pub const INVOCATION_PAYLOAD: &str = "null";
    /// Default per-invocation timeout.
    pub const TIMEOUT_MS: u64 = 30_000;
    /// Default grace between SIGTERM and SIGKILL.
    pub const KILL_GRACE_MS: u64 = 2_000;
    /// Default runtime URL in HTTP mode.
    pub const RUNTIME_URL: &str = "http://127.0.0.1:8080/invoke";
    /// Default runtime URL in WARM mode (so it never collides with WARM_PORT).
    pub const WARM_RUNTIME_URL: &str = "http://127.0.0.1:8081/invoke";
    /// Default readiness timeout.
    pub const READY_TIMEOUT_MS: u64 = 10_000;
    /// Default FILE-mode input path.
    pub const INPUT_FILE: &str = "/tmp/input.json";
    /// Default FILE-mode output path.
    pub const OUTPUT_FILE: &str = "/tmp/output.json";
    /// Default WARM listen port.
    pub const WARM_PORT: u16 = 8080;
    /// Default WARM listen address.
    pub const WARM_HOST: &str = "0.0.0.0";
    /// Default WARM idle timeout.
    pub const WARM_IDLE_TIMEOUT_MS: u64 = 300_000;
    /// Default WARM invocation cap (unlimited).
    pub const WARM_MAX_INVOCATIONS: u64 = 0;
    /// Default WARM runtime kind.
    pub const WARM_RUNTIME: &str = "HTTP";
    /// Default WARM concurrency.
    pub const WARM_CONCURRENCY: usize = 1;
    /// Default output cap: 6 MiB.
    pub const MAX_OUTPUT_BYTES: usize = 6 * 1024 * 1024;
    /// Default directory of SECRET_FILES.
    pub const SECRETS_DIR: &str = "/run/secrets";
}
