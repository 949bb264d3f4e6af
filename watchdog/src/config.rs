//! The watchdog's configuration: every environment variable of the watchdog contract, parsed and
//! checked once at start. A bad value is a [`ConfigError`] naming the variable (exit 64).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use gantry_protocol::env::{self, defaults};
use hyper::Uri;

use crate::identity::RunAs;

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

/// Reads variables by name; empty values count as unset.
struct Vars<F>(F);

impl<F: Fn(&'static str) -> Result<Option<String>, ConfigError>> Vars<F> {
    fn get(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        Ok((self.0)(var)?.filter(|value| !value.trim().is_empty()))
    }

    fn number<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: T,
        expected: &'static str,
    ) -> Result<T, ConfigError> {
        match self.get(var)? {
            None => Ok(default),
            Some(value) => value.trim().parse().map_err(|_| ConfigError::BadNumber {
                var,
                value,
                expected,
            }),
        }
    }

    fn millis(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.number(var, default, "a whole number of milliseconds")
            .map(Duration::from_millis)
    }

    fn positive_millis(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        let value = self.millis(var, default)?;
        if value.is_zero() {
            return Err(ConfigError::BadNumber {
                var,
                value: "0".into(),
                expected: "a positive number of milliseconds",
            });
        }
        Ok(value)
    }

    /// A value the watchdog sends in a header (a token, a trace id), trimmed: a control
    /// character in it would make every request carrying it unbuildable.
    fn header_text(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(var)? {
            Some(value) if !is_header_text(value.trim()) => Err(ConfigError::Invalid {
                var,
                reason: "contains a control character; it is sent as an HTTP header".into(),
            }),
            value => Ok(value.map(|value| value.trim().to_owned())),
        }
    }

    fn url(&self, var: &'static str) -> Result<Option<Uri>, ConfigError> {
        self.get(var)?
            .map(|value| parse_http_url(var, value))
            .transpose()
    }
}

fn parse_http_url(var: &'static str, value: String) -> Result<Uri, ConfigError> {
    let bad = |reason| ConfigError::BadUrl {
        var,
        value: value.clone(),
        reason,
    };
    let uri: Uri = value.trim().parse().map_err(|_| bad("is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "uses https, which the watchdog does not speak (it has no TLS to stay small); use http inside the cluster",
            ))
        }
        _ => return Err(bad("is not an absolute http:// URL")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    Ok(uri)
}

fn parse_mode(
    vars: &Vars<impl Fn(&'static str) -> Result<Option<String>, ConfigError>>,
) -> Result<Mode, ConfigError> {
    let value = vars
        .get(env::EXECUTION_MODE)?
        .unwrap_or_else(|| defaults::EXECUTION_MODE.into());
    match value.trim().to_ascii_uppercase().as_str() {
        "HTTP" => Ok(Mode::Http),
        "STDIO" => Ok(Mode::Stdio),
        "FILE" => Ok(Mode::File),
        "WARM" => Ok(Mode::Warm),
        _ => Err(ConfigError::NotOneOf {
            var: env::EXECUTION_MODE,
            value,
            allowed: "HTTP, STDIO, FILE, WARM",
        }),
    }
}

fn parse_warm_runtime(value: Option<String>) -> Result<WarmRuntime, ConfigError> {
    let value = value.unwrap_or_else(|| defaults::WARM_RUNTIME.into());
    match value.trim().to_ascii_uppercase().as_str() {
        "HTTP" => Ok(WarmRuntime::Http),
        "STDIO" => Ok(WarmRuntime::Stdio),
        "FILE" => Ok(WarmRuntime::File),
        _ => Err(ConfigError::NotOneOf {
            var: env::WARM_RUNTIME,
            value,
            allowed: "HTTP, STDIO, FILE",
        }),
    }
}

/// Splits a command with shell-style quoting (`sh -c 'a b'` is three words).
pub fn parse_command(value: &str) -> Result<CommandLine, ConfigError> {
    let var = env::WATCHDOG_CMD;
    let mut words = shlex::split(value).ok_or(ConfigError::BadCommand {
        var,
        reason: "unbalanced quotes or a trailing backslash",
    })?;
    if words.is_empty() {
        return Err(ConfigError::BadCommand {
            var,
            reason: "the command is empty",
        });
    }
    let program = words.remove(0);
    if program.is_empty() {
        return Err(ConfigError::BadCommand {
            var,
            reason: "the program name is empty",
        });
    }
    Ok(CommandLine {
        program,
        args: words,
    })
}

/// Whether `value` can be sent as an HTTP header value: no control characters but tab.
pub fn is_header_text(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b >= b' ' && b != 0x7f))
}

/// Whether `name` can be an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
fn is_variable_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// SECRET_FILES as given: its entries in order (of a key given twice, the last value
/// is the one written, as in any JSON object).
struct SecretEntries(Vec<(String, Secret)>);

impl<'de> serde::Deserialize<'de> for SecretEntries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = SecretEntries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of names to string values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<SecretEntries, A::Error> {
                let mut entries = Vec::new();
                while let Some((name, value)) = map.next_entry::<String, String>()? {
                    entries.push((name, Secret(value)));
                }
                Ok(SecretEntries(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// Parses SECRET_FILES, a JSON object of variable names to string values. Errors name
/// the variable and, at most, a key: never a value.
fn parse_secret_files(value: Option<String>) -> Result<Vec<(String, Secret)>, ConfigError> {
    let var = env::SECRET_FILES;
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let SecretEntries(entries) =
        serde_json::from_slice(value.as_bytes()).map_err(|err| ConfigError::Invalid {
            var,
            reason: format!(
                "is not a JSON object of names to string values (line {} column {})",
                err.line(),
                err.column()
            ),
        })?;
    // The watchdog sets these itself, or keeps them from the function.
    let taken = [
        env::EXECUTION_ID,
        env::TRACE_ID,
        env::TRACEPARENT,
        env::TRACESTATE,
        env::PORT,
        env::INPUT_FILE,
        env::OUTPUT_FILE,
    ];
    for (name, _) in &entries {
        let reason = if !is_variable_name(name) {
            "is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
        } else if taken.contains(&name.as_str()) || env::WATCHDOG_ONLY.contains(&name.as_str()) {
            "is a watchdog variable and cannot name a secret file"
        } else {
            continue;
        };
        return Err(ConfigError::Invalid {
            var,
            reason: format!("{name:?} {reason}"),
        });
    }
    Ok(entries)
}

fn is_local_host(uri: &Uri) -> bool {
    matches!(
        uri.host(),
        Some("127.0.0.1" | "localhost" | "0.0.0.0" | "[::1]" | "::1")
    )
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
