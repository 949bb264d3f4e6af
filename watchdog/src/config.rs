//! The watchdog's configuration: every environment variable of the watchdog contract, parsed and
//! checked once at start. A bad value is a [`ConfigError`] naming the variable (exit 64).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use gantry_protocol::env::{self, defaults};
use hyper::Uri;

use crate::identity::RunAs;

#[path = "config_vars.rs"]
mod vars;
pub use vars::{is_header_text, parse_command};
use vars::{is_local_host, parse_mode, parse_secret_files, parse_warm_runtime, Vars};

/// A token or secret value. Its `Debug` output is `<redacted>`, and it never appears in
/// an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends or writes it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the watchdog runs the function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Start an HTTP runtime, POST the payload to it once, stop it.
    Http,
    /// Payload on stdin, result on stdout.
    Stdio,
    /// Payload in INPUT_FILE, result in OUTPUT_FILE.
    File,
    /// Serve `/invoke` on WARM_PORT for many invocations.
    Warm,
}

/// What a WARM watchdog runs for each invocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarmRuntime {
    /// One long-lived HTTP runtime, restarted when it dies.
    Http,
    /// A STDIO process per invocation.
    Stdio,
    /// A FILE process per invocation.
    File,
}

/// The user's command, split with shell-style quoting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The executable (looked up on PATH when it has no slash).
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
}

impl CommandLine {
    /// The same command with its program resolved on `PATH` (as `exec` would), so a
    /// watchdog that spawns it per invocation does not search `PATH` every time. A
    /// program with a slash, or not found, is kept as it is: spawning then reports it.
    pub fn resolved(mut self) -> CommandLine {
        if !self.program.contains('/') {
            if let Some(found) = find_on_path(&self.program) {
                self.program = found;
            }
        }
        self
    }
}

fn find_on_path(program: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
        .and_then(|found| found.into_os_string().into_string().ok())
}

impl std::fmt::Display for CommandLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let words = std::iter::once(&self.program).chain(&self.args);
        match shlex::try_join(words.map(String::as_str)) {
            Ok(joined) => f.write_str(&joined),
            Err(_) => f.write_str(&self.program),
        }
    }
}

/// Where the one-shot input comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadSource {
    /// `INVOCATION_PAYLOAD`, as given (checked to be JSON when the run starts).
    Inline(String),
    /// `PAYLOAD_URL`, fetched with the callback token.
    Url(Uri),
}

/// An HTTP runtime: where it takes invocations and reports health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRuntimeConfig {
    /// `RUNTIME_URL`.
    pub invoke_url: Uri,
    /// `HEALTH_URL`, or `/health` on RUNTIME_URL's host.
    pub health_url: Uri,
    /// The port from RUNTIME_URL, handed to the runtime as `PORT`.
    pub port: u16,
    /// `READY_TIMEOUT_MS`.
    pub ready_timeout: Duration,
}

/// WARM-mode settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmConfig {
    /// `WARM_HOST`.
    pub host: IpAddr,
    /// `WARM_PORT` (0 picks a free port, printed at start).
    pub port: u16,
    /// `WARM_IDLE_TIMEOUT_MS`; `None` when 0.
    pub idle_timeout: Option<Duration>,
    /// `WARM_MAX_INVOCATIONS`; `None` when 0.
    pub max_invocations: Option<u64>,
    /// `WARM_RUNTIME`.
    pub runtime: WarmRuntime,
    /// `WARM_CONCURRENCY`.
    pub concurrency: usize,
}

/// Everything the watchdog reads from its environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `EXECUTION_MODE`.
    pub mode: Mode,
    /// `WATCHDOG_CMD`.
    pub command: CommandLine,
    /// `EXECUTION_ID` (`local` when unset and there is no callback).
    pub execution_id: String,
    /// `CALLBACK_URL`.
    pub callback_url: Option<Uri>,
    /// `CALLBACK_TOKEN`.
    pub callback_token: Option<Secret>,
    /// `INVOCATION_PAYLOAD` or `PAYLOAD_URL`.
    pub payload: PayloadSource,
    /// `TIMEOUT_MS`.
    pub timeout: Duration,
    /// `KILL_GRACE_MS`.
    pub kill_grace: Duration,
    /// `RUNTIME_URL`, `HEALTH_URL`, `READY_TIMEOUT_MS`.
    pub http: HttpRuntimeConfig,
    /// `INPUT_FILE`.
    pub input_file: PathBuf,
    /// `OUTPUT_FILE`.
    pub output_file: PathBuf,
    /// WARM settings.
    pub warm: WarmConfig,
    /// `MAX_OUTPUT_BYTES`.
    pub max_output_bytes: usize,
    /// `TRACE_ID`.
    pub trace_id: Option<String>,
    /// `RUN_AS`, resolved to ids (whether the watchdog must switch is decided at start).
    pub run_as: Option<RunAs>,
    /// `WARM_TOKEN`.
    pub warm_token: Option<Secret>,
    /// `SECRET_FILES`: variable names and values, in the order given.
    pub secret_files: Vec<(String, Secret)>,
    /// `SECRETS_DIR`.
    pub secrets_dir: PathBuf,
}

/// A variable that cannot be used. Each variant names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A value outside a fixed set of choices.
    #[error("{var}: {value:?} is not one of {allowed}")]
    NotOneOf {
        /// The variable.
        var: &'static str,
        /// What it held.
        value: String,
        /// The accepted values.
        allowed: &'static str,
    },
    /// A number that does not parse or is out of range.
    #[error("{var}: {value:?} is not {expected}")]
    BadNumber {
        /// The variable.
        var: &'static str,
        /// What it held.
        value: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// A command line that cannot be split.
    #[error("{var}: {reason}")]
    BadCommand {
        /// The variable.
        var: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A URL that is not an absolute `http://` URL.
    #[error("{var}: {value:?} {reason}")]
    BadUrl {
        /// The variable.
        var: &'static str,
        /// What it held.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// A value that is fine alone but conflicts with another variable.
    #[error("{var}: {reason}")]
    Conflict {
        /// The variable.
        var: &'static str,
        /// Why.
        reason: String,
    },
    /// A value that cannot be used, for the reason given.
    #[error("{var}: {reason}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Why (never quoting a secret value).
        reason: String,
    },
    /// A value that is not valid UTF-8.
    #[error("{var}: value is not valid UTF-8")]
    NotUnicode {
        /// The variable.
        var: &'static str,
    },
}

impl ConfigError {
    /// The environment variable at fault.
    pub fn variable(&self) -> &'static str {
        match self {
            ConfigError::NotOneOf { var, .. }
            | ConfigError::BadNumber { var, .. }
            | ConfigError::BadCommand { var, .. }
            | ConfigError::BadUrl { var, .. }
            | ConfigError::Conflict { var, .. }
            | ConfigError::Invalid { var, .. }
            | ConfigError::NotUnicode { var } => var,
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|var| match std::env::var(var) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::NotUnicode { var }),
        })
    }

    /// Reads variables through `lookup` (tests pass a map).
    pub fn from_lookup(
        lookup: impl Fn(&'static str) -> Result<Option<String>, ConfigError>,
    ) -> Result<Config, ConfigError> {
        let vars = Vars(lookup);
        let mode = parse_mode(&vars)?;
        let command = parse_command(
            &vars
                .get(env::WATCHDOG_CMD)?
                .unwrap_or_else(|| defaults::WATCHDOG_CMD.into()),
        )?;
        let callback_url = vars.url(env::CALLBACK_URL)?;
        let execution_id = match vars.get(env::EXECUTION_ID)? {
            Some(id) => id.trim().to_owned(),
            None if callback_url.is_some() && mode != Mode::Warm => {
                return Err(ConfigError::Conflict {
                    var: env::EXECUTION_ID,
                    reason: "required when CALLBACK_URL is set".into(),
                })
            }
            None => "local".into(),
        };
        let payload = match vars.url(env::PAYLOAD_URL)? {
            Some(url) => PayloadSource::Url(url),
            None => PayloadSource::Inline(
                (vars.0)(env::INVOCATION_PAYLOAD)?
                    .filter(|value| !value.trim().is_empty())
                    .unwrap_or_else(|| defaults::INVOCATION_PAYLOAD.into()),
            ),
        };
        let warm_runtime = parse_warm_runtime(vars.get(env::WARM_RUNTIME)?)?;
        let http = {
            let default_url = if mode == Mode::Warm {
                defaults::WARM_RUNTIME_URL
            } else {
                defaults::RUNTIME_URL
            };
            let invoke_url = vars
                .url(env::RUNTIME_URL)?
                .unwrap_or_else(|| Uri::from_static(default_url));
            let health_url = match vars.url(env::HEALTH_URL)? {
                Some(url) => url,
                None => derive_health_url(&invoke_url),
            };
            HttpRuntimeConfig {
                port: invoke_url.port_u16().unwrap_or(80),
                invoke_url,
                health_url,
                ready_timeout: vars
                    .positive_millis(env::READY_TIMEOUT_MS, defaults::READY_TIMEOUT_MS)?,
            }
        };
        let warm = WarmConfig {
            host: vars.number(
                env::WARM_HOST,
                defaults::WARM_HOST.parse().expect("default host is an IP"),
                "an IP address such as 0.0.0.0 or 127.0.0.1",
            )?,
            port: vars.number(
                env::WARM_PORT,
                defaults::WARM_PORT,
                "a port number (0-65535)",
            )?,
            idle_timeout: Some(
                vars.millis(env::WARM_IDLE_TIMEOUT_MS, defaults::WARM_IDLE_TIMEOUT_MS)?,
            )
            .filter(|d| !d.is_zero()),
            max_invocations: Some(vars.number(
                env::WARM_MAX_INVOCATIONS,
                defaults::WARM_MAX_INVOCATIONS,
                "a whole number (0 = unlimited)",
            )?)
            .filter(|n| *n > 0),
            runtime: warm_runtime,
            concurrency: vars.number(
                env::WARM_CONCURRENCY,
                defaults::WARM_CONCURRENCY,
                "a positive whole number",
            )?,
        };
        if warm.concurrency == 0 {
            return Err(ConfigError::BadNumber {
                var: env::WARM_CONCURRENCY,
                value: "0".into(),
                expected: "a positive whole number",
            });
        }
        if mode == Mode::Warm
            && warm.runtime == WarmRuntime::Http
            && warm.port != 0
            && warm.port == http.port
            && is_local_host(&http.invoke_url)
        {
            return Err(ConfigError::Conflict {
                var: env::WARM_PORT,
                reason: format!(
                    "port {} is also RUNTIME_URL's port; the watchdog and the runtime cannot share it (RUNTIME_URL defaults to port 8081 in WARM mode)",
                    warm.port
                ),
            });
        }
        let max_output_bytes = vars.number(
            env::MAX_OUTPUT_BYTES,
            defaults::MAX_OUTPUT_BYTES,
            "a positive number of bytes",
        )?;
        if max_output_bytes == 0 {
            return Err(ConfigError::BadNumber {
                var: env::MAX_OUTPUT_BYTES,
                value: "0".into(),
                expected: "a positive number of bytes",
            });
        }
        let secrets_dir = PathBuf::from(
            vars.get(env::SECRETS_DIR)?
                .unwrap_or_else(|| defaults::SECRETS_DIR.into()),
        );
        if !secrets_dir.is_absolute() {
            return Err(ConfigError::Invalid {
                var: env::SECRETS_DIR,
                reason: format!("{} is not an absolute path", secrets_dir.display()),
            });
        }
        let run_as = vars
            .get(env::RUN_AS)?
            .map(|value| RunAs::parse(&value, crate::identity::read_text))
            .transpose()?;
        Ok(Config {
            mode,
            command,
            execution_id,
            callback_url,
            callback_token: vars.header_text(env::CALLBACK_TOKEN)?.map(Secret),
            payload,
            timeout: vars.positive_millis(env::TIMEOUT_MS, defaults::TIMEOUT_MS)?,
            kill_grace: vars.millis(env::KILL_GRACE_MS, defaults::KILL_GRACE_MS)?,
            http,
            input_file: vars
                .get(env::INPUT_FILE)?
                .unwrap_or_else(|| defaults::INPUT_FILE.into())
                .into(),
            output_file: vars
                .get(env::OUTPUT_FILE)?
                .unwrap_or_else(|| defaults::OUTPUT_FILE.into())
                .into(),
            warm,
            max_output_bytes,
            trace_id: vars.header_text(env::TRACE_ID)?,
            run_as,
            warm_token: vars
                .get(env::WARM_TOKEN)?
                .map(|token| Secret(token.trim().to_owned())),
            secret_files: parse_secret_files(vars.get(env::SECRET_FILES)?)?,
            secrets_dir,
        })
    }
}

/// `/health` on the runtime URL's scheme and authority.
fn derive_health_url(invoke_url: &Uri) -> Uri {
    let mut parts = invoke_url.clone().into_parts();
    parts.path_and_query = Some(hyper::http::uri::PathAndQuery::from_static("/health"));
    Uri::from_parts(parts).expect("an absolute URL with a new path stays valid")
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
