//! `watchdog`: the entrypoint of every Gantry function image. Configuration comes from
//! the environment; see `watchdog --help`.

use gantry_watchdog::config::Config;
use gantry_watchdog::exit_code;

const HELP: &str = "\
watchdog: runs a function and reports its result (Gantry).

Configured only through the environment:
  EXECUTION_MODE        HTTP | STDIO | FILE | WARM                    [HTTP]
  WATCHDOG_CMD          the function's command, shell-style quoting   [java -jar /app/app.jar]
  EXECUTION_ID          the execution being run (one-shot modes)
  CALLBACK_URL          result goes to {CALLBACK_URL}/{EXECUTION_ID}:complete;
                        unset: the result is printed on stdout
  CALLBACK_TOKEN        bearer token for the callback and PAYLOAD_URL
  INVOCATION_PAYLOAD    input JSON (one-shot modes)                   [null]
  PAYLOAD_URL           GET the input here instead (large inputs)
  TIMEOUT_MS            per invocation; then the process group is stopped [30000]
  KILL_GRACE_MS         SIGTERM-to-SIGKILL grace                      [2000]
  RUNTIME_URL           HTTP runtime endpoint    [http://127.0.0.1:8080/invoke, WARM: :8081]
  HEALTH_URL            HTTP runtime health      [/health on RUNTIME_URL's host]
  READY_TIMEOUT_MS      HTTP runtime start limit                      [10000]
  INPUT_FILE            FILE mode input path                          [/tmp/input.json]
  OUTPUT_FILE           FILE mode output path                         [/tmp/output.json]
  WARM_HOST, WARM_PORT  WARM listen address (port 0: any free port)   [0.0.0.0, 8080]
  WARM_RUNTIME          HTTP (long-lived) | STDIO | FILE (per call)   [HTTP]
  WARM_CONCURRENCY      invocations at once; past it, 429             [1]
  WARM_IDLE_TIMEOUT_MS  exit after this long idle (0: never)          [300000]
  WARM_MAX_INVOCATIONS  exit after this many (0: unlimited)           [0]
  MAX_OUTPUT_BYTES      larger output fails with OUTPUT_TOO_LARGE     [6291456]
  TRACE_ID              forwarded as X-Trace-Id
  TRACEPARENT           W3C trace context, with TRACESTATE; headers over HTTP
  RUN_AS                run the function as UID[:GID] or NAME[:GROUP]
  WARM_TOKEN            WARM: /invoke needs Authorization: Bearer WARM_TOKEN
  SECRET_FILES          {\"VAR\":\"secret\"}: the function gets VAR=SECRETS_DIR/VAR
  SECRETS_DIR           mode 0400 files, owned by RUN_AS              [/run/secrets]
  CGROUP_PROCS          cgroup.procs files to join before anything runs, one a line
The function never sees CALLBACK_TOKEN, WARM_TOKEN, INVOCATION_PAYLOAD,
PAYLOAD_URL, RUN_AS, SECRET_FILES, SECRETS_DIR or CGROUP_PROCS.

Flags: --help, --version, --features (what this build supports, one a line).

WARM mode serves GET /health and POST /invoke with
  {\"execution_id\", \"payload\", \"trace_id\"?, \"timeout_ms\"?, \"callback_url\"?}
or the raw payload with an X-Execution-Id header; the answer is the result report.
A request's timeout is capped at TIMEOUT_MS; its callback_url (X-Callback-Url) must
equal CALLBACK_URL.

Exit codes: 0 success, 1 function failed, 64 bad configuration,
            70 internal error, 75 result could not be delivered to CALLBACK_URL.
";

fn main() {
    // Before anything else: the function, even under the same uid, must not read our
    // memory or environment (/proc/<pid>/environ, /mem, /fd) nor ptrace us.
    if let Err(errno) = nix::sys::prctl::set_dumpable(false) {
        // Described by std (libc's strerror), not nix, whose table would cost 10 KB.
        let err = std::io::Error::from_raw_os_error(errno as i32);
        eprintln!("watchdog: PR_SET_DUMPABLE failed: {err}; the function may read the watchdog's environment");
    }
    match std::env::args().nth(1).as_deref() {
        None => {}
        Some("-h" | "--help") => {
            print!("{HELP}");
            return;
        }
        Some("-V" | "--version") => {
            println!("watchdog {}", env!("CARGO_PKG_VERSION"));
            return;
        }
        Some("--features") => {
            println!("{}", gantry_protocol::env::FEATURE_CGROUP_PROCS);
            return;
        }
        Some(other) => {
            eprintln!("watchdog: unexpected argument {other:?}; configuration comes from the environment (see --help)");
            std::process::exit(exit_code::CONFIG);
        }
    }
    // Before the function can start anything: everything must run in its cgroup.
    if let Err(err) = gantry_watchdog::cgroup::join_from_env() {
        eprintln!("watchdog: cannot join the instance's cgroup ({err}); the function was not run");
        std::process::exit(exit_code::INTERNAL);
    }
    // The shipped build aborts on panic, and as a container's PID 1 the watchdog ignores
    // SIGABRT: musl's abort() then crashes on purpose, which shows as a SIGSEGV (exit
    // 139). Exit with the internal-error code instead, after the usual panic message.
    let report_panic = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report_panic(info);
        std::process::exit(exit_code::INTERNAL);
    }));
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("watchdog: invalid configuration: {err}");
            std::process::exit(exit_code::CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("watchdog: cannot start the async runtime: {err}");
            std::process::exit(exit_code::INTERNAL);
        }
    };
    let code = runtime.block_on(gantry_watchdog::run(config));
    // Exit without waiting on the runtime's background threads; all output is flushed.
    std::process::exit(code);
}
