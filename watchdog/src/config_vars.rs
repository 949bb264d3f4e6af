//! Reading single variables of the watchdog contract and checking their values: numbers,
//! durations, URLs, header-safe text, the command line and the secret files' list.

use std::time::Duration;

use gantry_protocol::env::{self, defaults};
use hyper::Uri;

use super::{CommandLine, ConfigError, Mode, Secret, WarmRuntime};

/// Reads variables by name; empty values count as unset.
pub(super) struct Vars<F>(pub(super) F);

impl<F: Fn(&'static str) -> Result<Option<String>, ConfigError>> Vars<F> {
    pub(super) fn get(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        Ok((self.0)(var)?.filter(|value| !value.trim().is_empty()))
    }

    pub(super) fn number<T: std::str::FromStr>(
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

    pub(super) fn millis(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.number(var, default, "a whole number of milliseconds")
            .map(Duration::from_millis)
    }

    pub(super) fn positive_millis(
        &self,
        var: &'static str,
        default: u64,
    ) -> Result<Duration, ConfigError> {
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
    pub(super) fn header_text(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        match self.get(var)? {
            Some(value) if !is_header_text(value.trim()) => Err(ConfigError::Invalid {
                var,
                reason: "contains a control character; it is sent as an HTTP header".into(),
            }),
            value => Ok(value.map(|value| value.trim().to_owned())),
        }
    }

    pub(super) fn url(&self, var: &'static str) -> Result<Option<Uri>, ConfigError> {
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

pub(super) fn parse_mode(
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

pub(super) fn parse_warm_runtime(value: Option<String>) -> Result<WarmRuntime, ConfigError> {
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
pub(super) fn parse_secret_files(
    value: Option<String>,
) -> Result<Vec<(String, Secret)>, ConfigError> {
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

pub(super) fn is_local_host(uri: &Uri) -> bool {
    matches!(
        uri.host(),
        Some("127.0.0.1" | "localhost" | "0.0.0.0" | "[::1]" | "::1")
    )
}
